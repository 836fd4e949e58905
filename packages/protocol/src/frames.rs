//! The frame types of protocol v1.
//!
//! The message object is [`Message`] (`message.rs`), the changes to a message that frames and
//! `joined` carry are in `changes.rs`; this file holds the frames themselves and the error codes.
//!
//! Optional fields are omitted from the JSON when absent (never `null`), and unknown fields are
//! ignored when decoding, so that newer peers can add fields without breaking older ones.

use serde::{Deserialize, Serialize};

use crate::changes::{Change, Deleted, Edited, Reacted};
use crate::{Message, MessageId};

/// A frame sent by a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Identifies the user. Must be the first frame of a connection.
    Hello {
        /// Display name: 1–32 letters, digits, `_`, `-` or `.`.
        name: String,
        /// Signed mode: a JWT vouching for `name` (required when the server has a secret);
        /// ignored in anonymous mode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Joins a room; the server answers with [`ServerFrame::Joined`].
    Join {
        /// Room name: 1–64 characters of `a-z`, `0-9`, `_` and `-`.
        room: String,
        /// Id of the last message the client saw, to recover what it missed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        /// The room's `epoch` from the `joined` that `since` belongs to: if the room's history
        /// was lost and restarted since, the server then knows `since` is from another history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// Leaves a room; the server answers with [`ServerFrame::Left`].
    Leave {
        /// Room to leave.
        room: String,
    },
    /// Sends a message to a joined room. The sender receives its own [`ServerFrame::Message`]
    /// (carrying the same nonce) as confirmation.
    Send {
        /// Target room, which the connection must have joined.
        room: String,
        /// Message text: 1–4000 characters, not blank.
        body: String,
        /// Client-chosen correlation id (≤ 64 characters), echoed in the resulting message or error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
        /// The id of the message of the same room this one replies to (as received, like
        /// `since`): the stored message carries it, and clients show a quote of the original.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    /// Replaces the body of one of the user's messages (a moderator's: anyone's). Everyone in
    /// the room receives a [`ServerFrame::Edited`], the sender included: that is its
    /// confirmation.
    Edit {
        /// The message's room, which the connection must have joined.
        room: String,
        /// The message to edit (as received, like `since`).
        id: String,
        /// The new body, whole: the rules of a `send`'s body.
        body: String,
        /// Correlation id (≤ 64 characters), echoed in the `edited` or the error; retries
        /// with the same nonce are carried out once, as sends are.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
    /// Deletes one of the user's messages (a moderator's: anyone's): its body is removed from
    /// the server and a tombstone stays in its place. Confirmed by a [`ServerFrame::Deleted`].
    Delete {
        /// The message's room, which the connection must have joined.
        room: String,
        /// The message to delete (as received).
        id: String,
        /// Correlation id (≤ 64 characters), echoed in the `deleted` or the error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
    /// Adds or removes the user's reaction with one emoji to a message of a joined room.
    /// Confirmed by a [`ServerFrame::Reacted`].
    React {
        /// The message's room, which the connection must have joined.
        room: String,
        /// The message to react to (as received).
        id: String,
        /// One grapheme cluster of at most 32 bytes (see [`validate_emoji`](crate::validate_emoji)).
        emoji: String,
        /// `true` to add the reaction, `false` to take it back: explicit rather than a toggle,
        /// so that a retried request cannot undo itself.
        add: bool,
        /// Correlation id (≤ 64 characters), echoed in the `reacted` or the error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
    /// Moves the user's read marker in a joined room to `id`: everything up to it is read. The
    /// user's connections, on every node, receive a [`ServerFrame::Read`].
    Read {
        /// The room, which the connection must have joined.
        room: String,
        /// The last message read (as received).
        id: String,
    },
    /// Tells the room's other members that the user is typing.
    Typing {
        /// Room the user is typing in.
        room: String,
    },
    /// Asks for a page of older messages.
    History {
        /// Room to page through, which the connection must have joined.
        room: String,
        /// Return messages strictly older than this id; the latest page when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
        /// Page size, 1–100; 50 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Finds messages of a joined room by words, newest first; the server answers with
    /// [`ServerFrame::Search`], or `unsupported` where it keeps no index (a Redis node).
    Search {
        /// Room to search, which the connection must have joined.
        room: String,
        /// Words, not a query language: each is matched as written (quotes, `AND`, `OR`, `*`
        /// are plain text), a message must contain them all, the last one may be a word's start
        /// (see [`search_terms`](crate::search_terms)). At most 256 bytes, no control
        /// characters.
        q: String,
        /// Only messages strictly older than this id: the last id of the previous page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
        /// Page size, 1–50; 20 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Asks for a page of a joined room's members, in name order; the server answers with
    /// [`ServerFrame::Members`]. How a client reads the members `joined` left out.
    Members {
        /// Room whose members to list, which the connection must have joined.
        room: String,
        /// Only members whose names sort after this one: the `next` of the previous page (or
        /// last name of a `joined` that says `more_members`); from the first when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Page size, 1–1000; 1000 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Signed mode: replaces the connection's token with a fresh one for the same user before
    /// the current one expires; the server answers with [`ServerFrame::Refreshed`]. In
    /// anonymous mode the token is ignored and the answer carries no `exp`.
    Refresh {
        /// A JWT for the connection's user.
        token: String,
    },
}

impl ClientFrame {
    /// The frame's `type` tag, as it appears on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Send { .. } => "send",
            Self::Typing { .. } => "typing",
            Self::History { .. } => "history",
            Self::Members { .. } => "members",
            Self::Refresh { .. } => "refresh",
            Self::Edit { .. } => "edit",
            Self::Delete { .. } => "delete",
            Self::React { .. } => "react",
            Self::Read { .. } => "read",
            Self::Search { .. } => "search",
        }
    }
}

/// A frame sent by the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answer to `hello`: the connection is identified.
    Welcome {
        /// The name the connection is known by.
        user: String,
        /// Id of the server node holding this connection.
        node: String,
        /// Protocol version the server speaks.
        protocol: u32,
        /// Signed mode: when the connection's token expires, in Unix seconds. The server closes
        /// the connection then (close code 4001) unless a `refresh` replaced the token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exp: Option<u64>,
    },
    /// Answer to `join`: the connection now receives the room's events.
    Joined {
        /// The room joined.
        room: String,
        /// Users online in the room, on every node, sorted: the first 1000
        /// ([`MAX_MEMBERS_LIMIT`](crate::MAX_MEMBERS_LIMIT)) of them, so the frame stays small
        /// in a huge room.
        members: Vec<String>,
        /// With `recovered`, exactly the messages after `since`; otherwise the latest page
        /// (at most 50). Oldest first.
        messages: Vec<Message>,
        /// Whether `messages` is exactly what the client missed after its `since`.
        recovered: bool,
        /// Identifies the room's history: it changes only if that history is lost and starts
        /// over (a Redis without persistence restarted, an embedded node restarted). Send it
        /// back with `since`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        /// More members follow those in `members`: page through them with `members` requests,
        /// the first with `after` set to the last name of `members`. Omitted when `false`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more_members: bool,
        /// The user's read marker in the room: the last message it marked read, on any
        /// connection. Omitted when it has none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read: Option<MessageId>,
        /// How many messages follow the read marker (all of the room's when there is none),
        /// capped at [`UNREAD_CAP`](crate::UNREAD_CAP), which means "that many or more".
        /// Omitted when 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        unread: u32,
        /// With `recovered`: the changes after `since` to messages at or before it, in log
        /// order (messages after `since` come in their current state, so each change is seen
        /// once). Omitted when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<Change>,
    },
    /// Answer to `leave`: no more events from the room.
    Left {
        /// The room left.
        room: String,
    },
    /// A new message in a joined room.
    Message(Message),
    /// A user came online in, or went offline from, a joined room.
    Presence {
        /// The room.
        room: String,
        /// The user whose presence changed.
        user: String,
        /// `true` when the user came online, `false` when it left.
        online: bool,
    },
    /// A user is typing in a joined room.
    Typing {
        /// The room.
        room: String,
        /// The user typing.
        user: String,
    },
    /// Answer to `history`: a page of older messages.
    History {
        /// The room.
        room: String,
        /// The page, oldest first.
        messages: Vec<Message>,
        /// Whether older messages remain before this page.
        has_more: bool,
    },
    /// Answer to `search`: the messages found, newest first, in their current state.
    Search {
        /// The room.
        room: String,
        /// The request's `q`, as sent.
        q: String,
        /// The messages found, newest first.
        messages: Vec<Message>,
        /// Whether more (older) messages match: ask again with `before` set to the last id.
        has_more: bool,
    },
    /// A message's body was edited.
    Edited(Edited),
    /// A message was deleted.
    Deleted(Deleted),
    /// A reaction to a message was added or removed.
    Reacted(Reacted),
    /// The user's read marker in a room moved (on any of its connections, on any node): sent to
    /// that user's connections only.
    Read {
        /// The room.
        room: String,
        /// The last message read.
        id: MessageId,
        /// How many messages follow it, capped at [`UNREAD_CAP`](crate::UNREAD_CAP).
        unread: u32,
    },
    /// Answer to `members`: a page of a room's members, in name order.
    Members {
        /// The room.
        room: String,
        /// Users online in the room, on every node, sorted, after the request's `after`.
        members: Vec<String>,
        /// Present when more members follow: the `after` of the next request (the last name
        /// of `members`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Answer to `refresh`: the new token now vouches for the connection.
    Refreshed {
        /// Signed mode: when the new token expires, in Unix seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exp: Option<u64>,
    },
    /// A request failed. Unless the server then closes the connection, it stays usable.
    Error {
        /// Stable machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
        /// The nonce of the failed request, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
}

/// For `skip_serializing_if`: a count of zero is omitted.
fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ServerFrame {
    /// Builds an error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>, nonce: Option<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            nonce,
        }
    }
}

/// Stable error codes carried by [`ServerFrame::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON, lacks a field, or has a field of the wrong type.
    BadFrame,
    /// The frame's `type` is not one this server knows.
    UnknownType,
    /// A frame other than `hello` arrived before `hello`.
    HelloRequired,
    /// A second `hello` arrived on an identified connection.
    AlreadyHello,
    /// The name in `hello` breaks the naming rules.
    InvalidName,
    /// The room name breaks the naming rules.
    InvalidRoom,
    /// The message body is empty or blank.
    InvalidBody,
    /// The message body is longer than 4000 characters.
    BodyTooLong,
    /// The nonce is longer than 64 characters.
    InvalidNonce,
    /// A message id (`since`, `before`) is malformed.
    InvalidId,
    /// A `limit` is out of range: 1–100 for `history`, 1–1000 for `members`, 1–50 for `search`.
    InvalidLimit,
    /// The connection has not joined the room.
    NotJoined,
    /// The connection has already joined the room.
    AlreadyJoined,
    /// The connection is in as many rooms as the server allows.
    TooManyRooms,
    /// Too many requests of one kind per second (sends, typing, or joins, history and members
    /// together); slow down and retry.
    RateLimited,
    /// Signed mode: `hello` lacks a valid token for the name (the server then closes the
    /// connection), or a `refresh` token is not valid for the connection's user (the connection
    /// keeps its current token).
    Unauthorized,
    /// The user may not join the room: a private room its token does not name, someone else's
    /// direct messages, or a room outside its token's `rooms`. The room stays unjoined.
    Forbidden,
    /// The broker is unreachable; the request was not carried out and may be retried.
    Unavailable,
    /// An unexpected server-side failure.
    Internal,
    /// An `edit` or `delete` of someone else's message by a user who may not moderate the room.
    NotAuthor,
    /// The message named by an `edit`, `delete` or `react` is not in the room's retained
    /// history (or, for an edit or a reaction, is deleted).
    NoSuchMessage,
    /// A reaction's emoji is not one grapheme cluster of at most 32 bytes without control or
    /// whitespace characters.
    InvalidEmoji,
    /// A reaction would give a message more distinct emoji than
    /// [`MAX_REACTIONS`](crate::MAX_REACTIONS).
    TooManyReactions,
    /// A `send`'s `reply_to` is malformed or not a retained message of the room.
    InvalidReply,
    /// A `search`'s `q` has no word to search for, is longer than 256 bytes, or holds control
    /// characters.
    InvalidQuery,
    /// The server cannot do this here: `search` on a node that keeps no index of its messages
    /// (a Redis node, an embedded node without a data dir).
    Unsupported,
    /// A code this version of the protocol crate does not know (decoding only).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::UnknownType => "unknown_type",
            Self::HelloRequired => "hello_required",
            Self::AlreadyHello => "already_hello",
            Self::InvalidName => "invalid_name",
            Self::InvalidRoom => "invalid_room",
            Self::InvalidBody => "invalid_body",
            Self::BodyTooLong => "body_too_long",
            Self::InvalidNonce => "invalid_nonce",
            Self::InvalidId => "invalid_id",
            Self::InvalidLimit => "invalid_limit",
            Self::NotJoined => "not_joined",
            Self::AlreadyJoined => "already_joined",
            Self::TooManyRooms => "too_many_rooms",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::NotAuthor => "not_author",
            Self::NoSuchMessage => "no_such_message",
            Self::InvalidEmoji => "invalid_emoji",
            Self::TooManyReactions => "too_many_reactions",
            Self::InvalidReply => "invalid_reply",
            Self::InvalidQuery => "invalid_query",
            Self::Unsupported => "unsupported",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
