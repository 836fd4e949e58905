//! Changes to earlier messages (edit, delete, react) and read markers, as the [`Broker`] trait
//! takes and returns them (issue 22).
//!
//! Why the broker and not the server decides them: whether the target exists and is not
//! deleted, who wrote it and how many distinct reactions it has are the room's state, read and
//! written in one atomic step (under the room's lock in the embedded broker, in one script on
//! Redis), so two nodes cannot race. These types are that step's request and outcome; they live
//! apart from `lib.rs` so the trait's file stays readable.
//!
//! [`Broker`]: crate::Broker

use skat_protocol::{Change, Deleted, Edited, Message, MessageId, Reacted, escaped_len};

/// A change to an earlier message of a room, to be stored by [`Broker::change`](crate::Broker::change);
/// the broker assigns its id and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChange {
    /// The room of the message.
    pub room: String,
    /// The message changed.
    pub target: MessageId,
    /// Who changes it: the author, a moderator, the API's sender (or for a reaction, the user
    /// reacting).
    pub by: String,
    /// What changes.
    pub kind: ChangeKind,
    /// The request's nonce: a retry with the same `(room, by, nonce)` within the dedup window
    /// is [`Changed::Duplicate`], as for `publish` (one key space per user: a nonce names one
    /// request, whatever its kind).
    pub nonce: Option<String>,
    /// Whether `by` must be the target's author (an edit or delete by a user); `false` for a
    /// moderator's or the server API's change. Reactions ignore it: any member reacts.
    pub as_author: bool,
}

/// What a [`NewChange`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// Replace the body (already validated as a `send`'s body).
    Edit {
        /// The new body, whole.
        body: String,
    },
    /// Delete the message: its body is dropped from the server, a tombstone keeps its place.
    Delete,
    /// Add or remove one user's reaction (explicit, not a toggle, so a retry cannot undo it).
    React {
        /// The emoji, already validated ([`validate_emoji`](skat_protocol::validate_emoji)).
        emoji: String,
        /// Add (`true`) or remove (`false`).
        add: bool,
    },
}

/// The key space of a send's nonces (see [`ChangeKind::nonce_space`]).
pub(crate) const SEND_NONCES: &str = "m";

impl ChangeKind {
    /// The key space of this kind's nonces. A nonce names one request per sender, room and
    /// kind of request (a send's are [`SEND_NONCES`]; a reaction's add and remove are two
    /// kinds), so a nonce reused for another kind is a new request: a retry is answered with
    /// what its nonce stored, never with an entry of another kind, nor one made up that was
    /// never stored.
    pub(crate) fn nonce_space(&self) -> &'static str {
        match self {
            Self::Edit { .. } => "e",
            Self::Delete => "d",
            Self::React { add: true, .. } => "r1",
            Self::React { add: false, .. } => "r0",
        }
    }
}

/// Outcome of [`Broker::change`](crate::Broker::change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Stored and delivered to the room's subscriptions; or, for a reaction that repeats the
    /// user's current one (add twice, remove what is not there), nothing stored nor delivered:
    /// the current state, whose `id` is then the target's (no id was assigned).
    New(Change),
    /// A retry of a change already accepted (same room, user and nonce within the dedup
    /// window): nothing was stored or delivered; this is the original.
    Duplicate(Change),
    /// Not allowed by the room's state: nothing was stored.
    Refused(ChangeRefusal),
}

/// Why a change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefusal {
    /// An edit or delete `as_author` of someone else's message.
    #[error("not the message's author")]
    NotAuthor,
    /// The target is not a retained message of the room, or it is deleted.
    #[error("no such message")]
    NoSuchMessage,
    /// The reaction would be the message's 21st distinct emoji
    /// ([`MAX_REACTIONS`](skat_protocol::MAX_REACTIONS)).
    #[error("too many distinct reactions")]
    TooManyReactions,
}

/// A user's read marker in a room, as [`Broker::read`](crate::Broker::read) leaves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadState {
    /// Everything up to this id is read; `None` if the user never marked anything.
    pub id: Option<MessageId>,
    /// Messages after the marker that are not deleted, capped at
    /// [`UNREAD_CAP`](skat_protocol::UNREAD_CAP) ("that many or more").
    pub unread: u32,
}

/// What a client resuming after `since` missed (see [`Broker::recover`](crate::Broker::recover)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The messages after `since`, oldest first, in their current state (their own changes are
    /// in them).
    pub messages: Vec<Message>,
    /// The changes after `since` to messages at or before it, in id order: each change is so
    /// seen exactly once.
    pub changes: Vec<Change>,
}

impl NewChange {
    /// The change as stored under `id` (its time is the id's milliseconds, as for messages);
    /// `count` is a reaction's resulting count.
    pub fn stored_as(self, id: MessageId, count: u32) -> Change {
        let Self {
            room,
            target,
            by,
            kind,
            nonce,
            as_author: _,
        } = self;
        let ts = id.ms;
        match kind {
            ChangeKind::Edit { body } => Change::Edited(Edited {
                room,
                id,
                target,
                by,
                body,
                ts,
                nonce,
            }),
            ChangeKind::Delete => Change::Deleted(Deleted {
                room,
                id,
                target,
                by,
                ts,
                nonce,
            }),
            ChangeKind::React { emoji, add } => Change::Reacted(Reacted {
                room,
                id,
                target,
                user: by,
                emoji,
                add,
                count,
                nonce,
            }),
        }
    }
}

/// The fixed bytes [`change_size`] counts for a change (keys, ids and numbers): more than any
/// change's framing. Public for a backend that counts changes from its stored form.
pub const CHANGE_FRAMING: usize = 120;

/// What a change takes in a recovery's bounds: its strings' escaped bytes plus a fixed 120 for
/// keys, ids and numbers (more than any change's framing). An upper estimate, unlike
/// [`message_size`](skat_protocol::message_size)'s exact count: changes are few next to
/// messages, and a bound that errs high only makes a recovery fall back to the latest page
/// sooner.
pub fn change_size(change: &Change) -> usize {
    let strings = match change {
        Change::Edited(c) => escaped_len(&c.room) + escaped_len(&c.by) + escaped_len(&c.body),
        Change::Deleted(c) => escaped_len(&c.room) + escaped_len(&c.by),
        Change::Reacted(c) => escaped_len(&c.room) + escaped_len(&c.user) + escaped_len(&c.emoji),
        Change::Unknown => 0,
    };
    let nonce = match change {
        Change::Edited(Edited { nonce, .. })
        | Change::Deleted(Deleted { nonce, .. })
        | Change::Reacted(Reacted { nonce, .. }) => nonce.as_deref().map_or(0, escaped_len),
        Change::Unknown => 0,
    };
    CHANGE_FRAMING + strings + nonce
}
