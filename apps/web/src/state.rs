//! The chat client's state machine: server frames in, view state out.
//!
//! Pure Rust, no browser APIs, so it is unit-tested natively. The UI (`ui/`, wasm only) keeps a
//! [`Chat`] in a signal, feeds it every frame from the socket, and sends the frames it returns.
//! Returning them is the state's one way to emit frames: every transition that may call for
//! frames (a server frame applied, a user's command, a timer) returns them ([`Outgoing`]), marked
//! `#[must_use]`, and the state keeps none queued, so none waits for someone to drain it.
//! Everything a user would notice going wrong lives here: deduplication by message id, unread
//! counts, pending sends and their failures, typing expiry, and the bookkeeping that lets a
//! reconnect rejoin every room with `since` so nothing is lost or shown twice, a refused join
//! shown as such, and what a closed connection means (reconnect, fetch a fresh token first, or
//! stop: see [`Chat::on_socket_closed`]). The token's life is [`Session`]'s.
//!
//! This file holds the state itself and routes each server frame to the part that owns it; the
//! parts follow the data flow, each an `impl Chat` of its own: the connection's life
//! (`connection`: open, welcome, close, reconnect, fresh tokens), the rooms (`rooms`: join,
//! leave, the `joined` answer and its recovery, older pages), our messages (`messages`: sends,
//! their confirmation or failure, re-sends after a reconnect, every message received) and who
//! is there (`presence`: members and typing), and searching the shown room (`search`).

mod changes;
mod compose;
mod connection;
mod messages;
mod presence;
mod rooms;
mod search;

use std::collections::{BTreeMap, VecDeque};

use skat_protocol::{Change, ClientFrame, ErrorCode, ServerFrame};

pub use crate::room::{Pending, ROOM_WINDOW, Room, SentEdit};
pub use crate::session::{Fetched, Session};
pub use search::Search;

/// How long a "typing" notice stays visible without a new typing frame, in ms.
pub const TYPING_VISIBLE_MS: f64 = 4000.0;
/// Minimum interval between two typing frames we send for one room, in ms.
pub const TYPING_THROTTLE_MS: f64 = 2000.0;
/// How long after a `rate_limited` refusal a page of members is asked for again, in ms.
pub const MEMBERS_RETRY_MS: f64 = 1000.0;
/// How old an unconfirmed send may be and still be re-sent by itself after a reconnect: within
/// the server's 2-minute deduplication window (with a margin), a repeat of a send it already
/// stored is answered with the original, never stored twice. An older one is left to the user.
pub const RESEND_WITHIN_MS: f64 = 100_000.0;

/// The state of the WebSocket connection, always shown to the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// Opening the socket or waiting for `welcome`.
    Connecting,
    /// Identified and live.
    Online,
    /// Lost; the next attempt starts after `retry_in_ms`.
    Reconnecting {
        /// Failed attempts so far.
        attempt: u32,
        /// Delay before the next attempt.
        retry_in_ms: u32,
    },
    /// The server refused our identity (signed mode); reconnecting would not help.
    Refused(String),
    /// The application's backend disconnected us (close code 4000), for this reason; the app
    /// does not reconnect by itself.
    Disconnected(String),
    /// The token expired (close code 4001) and there is no token URL to get another from.
    Expired,
}

/// The whole client state.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    /// The name we asked for.
    pub name: String,
    /// The node serving this connection (from `welcome`).
    pub node: Option<String>,
    /// The connection state.
    pub connection: Connection,
    /// Joined rooms by name.
    pub rooms: BTreeMap<String, Room>,
    /// The room on screen.
    pub active: Option<String>,
    /// The latest error not tied to a message, shown in a banner.
    pub notice: Option<String>,
    /// The search of a room, while the user has one open.
    pub search: Option<Search>,
    next_nonce: u64,
    /// Random per page load, so nonces of two tabs never collide.
    nonce_prefix: String,
    /// Counts connections (the connection's generation), to tell sends of an earlier
    /// connection from current ones. Not the server's history epoch (`Room::history_epoch`).
    generation: u64,
    /// Signed mode: the token for `name`, and where fresh ones come from.
    pub session: Session,
    /// Rooms whose `join` awaits its answer, in the order sent: the server answers requests in
    /// order, and a refusal (`forbidden`) does not name its room.
    joining: VecDeque<String>,
}

impl Chat {
    /// A fresh state for user `name`; `nonce_prefix` should be random per page load.
    pub fn new(name: impl Into<String>, nonce_prefix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            node: None,
            connection: Connection::Connecting,
            rooms: BTreeMap::new(),
            active: None,
            notice: None,
            search: None,
            next_nonce: 0,
            nonce_prefix: nonce_prefix.into(),
            generation: 0,
            session: Session::default(),
            joining: VecDeque::new(),
        }
    }

    /// The active room, if any.
    pub fn active_room(&self) -> Option<&Room> {
        self.active.as_ref().and_then(|r| self.rooms.get(r))
    }

    /// Applies a frame from the server at time `now` (ms); returns the frames it calls for: after
    /// a `joined`, the re-sends of what an earlier connection left unconfirmed and the next page
    /// of a big room's members; after a `members` page, the next one.
    #[must_use = "the frames it returns are to be sent"]
    pub fn apply(&mut self, frame: ServerFrame, now: f64) -> Vec<ClientFrame> {
        match frame {
            ServerFrame::Welcome {
                user, node, exp, ..
            } => self.on_welcome(user, node, exp, now),
            ServerFrame::Joined {
                room,
                members,
                messages,
                recovered,
                epoch,
                more_members,
                read,
                unread,
                changes,
            } => {
                self.on_recovered_changes(&room, &changes);
                let mut frames = self.on_joined(&room, members, messages, recovered, epoch, now);
                self.on_joined_read(&room, read, unread);
                if more_members {
                    frames.extend(self.read_more_members(&room));
                }
                return frames;
            }
            ServerFrame::Members {
                room,
                members,
                next,
            } => return self.on_members(&room, members, next).into_iter().collect(),
            ServerFrame::Left { .. } => {}
            ServerFrame::Refreshed { exp } => self.session.on_refreshed(exp, now),
            ServerFrame::Message(message) => self.on_message(message, false),
            ServerFrame::Presence { room, user, online } => self.on_presence(&room, user, online),
            ServerFrame::Typing { room, user } => self.on_typing(&room, user, now),
            ServerFrame::History {
                room,
                messages,
                has_more,
            } => self.on_history(&room, messages, has_more),
            ServerFrame::Search {
                room,
                q,
                messages,
                has_more,
            } => self.on_search(&room, &q, messages, has_more),
            ServerFrame::Error {
                code,
                message,
                nonce,
            } => self.on_error(code, message, nonce, now),
            ServerFrame::Edited(edit) => {
                let room = edit.room.clone();
                self.edit_answered(&room, edit.nonce.as_deref());
                self.on_change(&room, &Change::Edited(edit));
            }
            ServerFrame::Deleted(delete) => {
                let room = delete.room.clone();
                self.on_change(&room, &Change::Deleted(delete));
            }
            ServerFrame::Reacted(react) => {
                let room = react.room.clone();
                self.on_change(&room, &Change::Reacted(react));
            }
            ServerFrame::Read { room, id, unread } => self.on_read(&room, id, unread),
        }
        Vec::new()
    }

    /// An error: about one of our edits (its text back in the composer, and a notice), about
    /// one of our sends (kept, with the reason), a refused `refresh` (the old
    /// token stays; tried again later), a refused identity (fetched again from the token URL if
    /// it could help, else final), a refused join (shown in its room), or else a notice.
    fn on_error(&mut self, code: ErrorCode, message: String, nonce: Option<String>, now: f64) {
        if nonce
            .as_deref()
            .is_some_and(|nonce| self.edit_refused(nonce))
        {
            self.notice = Some(format!("Your edit was not saved: {message} ({code})"));
            return;
        }
        let failed = nonce.and_then(|nonce| {
            self.rooms
                .values_mut()
                .find_map(|r| r.pending.iter_mut().find(|p| p.nonce == nonce))
        });
        if let Some(p) = failed {
            p.error = Some(message);
            return;
        }
        match code {
            ErrorCode::Unauthorized if self.connection == Connection::Online => {
                if self.session.refresh_refused(now) {
                    self.notice = Some(format!("Could not renew the session: {message}"));
                } else {
                    self.notice = Some(format!("{message} ({code})"));
                }
            }
            // The server closes the connection next; the next one fetches a fresh token.
            ErrorCode::Unauthorized if self.session.refetch_after_refusal() => {}
            ErrorCode::Unauthorized => self.connection = Connection::Refused(message),
            ErrorCode::Forbidden => {
                self.refuse_join(|label| format!("You don't have access to {label}: {message}"));
            }
            ErrorCode::TooManyRooms => {
                self.refuse_join(|label| format!("Could not join {label}: {message}"));
            }
            // Reading a big room's members: asked again shortly, nothing to tell the user.
            ErrorCode::RateLimited if self.members_refused(now) => {}
            ErrorCode::Unsupported | ErrorCode::InvalidQuery
                if self.search_refused(code, &message) => {}
            _ => self.notice = Some(format!("{message} ({code})")),
        }
    }
}

/// What a transition of the state returns: the frames to send, in order, with whatever else it
/// says (why a send was not made, what a fetched token is for). The UI sends [`frames`] of every
/// value a transition returns, and sends nothing else.
///
/// [`frames`]: Outgoing::frames
pub trait Outgoing {
    /// The frames to send, in order.
    fn frames(&self) -> &[ClientFrame];
}

impl Outgoing for Vec<ClientFrame> {
    fn frames(&self) -> &[ClientFrame] {
        self
    }
}

impl Outgoing for Option<ClientFrame> {
    fn frames(&self) -> &[ClientFrame] {
        self.as_slice()
    }
}

impl<E> Outgoing for Result<ClientFrame, E> {
    fn frames(&self) -> &[ClientFrame] {
        self.as_ref().map_or(&[], std::slice::from_ref)
    }
}

impl Outgoing for Fetched {
    fn frames(&self) -> &[ClientFrame] {
        match self {
            Fetched::Refresh(frame) => std::slice::from_ref(frame),
            Fetched::Connect | Fetched::Keep => &[],
        }
    }
}

/// Why [`Chat::send`] sent nothing, for the composer to tell the user or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// The text is blank.
    Blank,
    /// The connection is not live; `retrying`: whether it comes back by itself (if not, the
    /// header says why).
    Offline {
        /// Whether the app is reconnecting.
        retrying: bool,
    },
    /// The room is not one we are in: unknown, or it refused us.
    NotJoined,
    /// An edit that leaves the text as it is: the edit just ends.
    Unchanged,
    /// The text breaks the protocol's rules (too long...): the notice says why.
    Invalid,
}

/// Reconnect delay: exponential from 500 ms, capped at 30 s, with "equal jitter" (half fixed,
/// half random) so a node restart does not bring every client back at the same instant.
/// `random` is in `[0, 1)`.
pub fn backoff_ms(attempt: u32, random: f64) -> u32 {
    let ceiling = (500.0 * 2f64.powi(attempt.min(16) as i32)).min(30_000.0);
    (ceiling / 2.0 + ceiling / 2.0 * random.clamp(0.0, 1.0)) as u32
}

/// Whether `name` is acceptable to the server, with the reason if not.
pub fn check_name(name: &str) -> Result<(), String> {
    skat_protocol::validate_name(name).map_err(|e| e.message)
}

/// Whether `room` is acceptable to the server, with the reason if not.
pub fn check_room(room: &str) -> Result<(), String> {
    skat_protocol::validate_room(room).map_err(|e| e.message)
}

#[cfg(test)]
// The tests drive the state and look at it, dropping the frames they do not check.
#[allow(unused_must_use)]
mod tests;
