//! The chat client's state machine: server frames in, view state out.
//!
//! Pure Rust, no browser APIs, so it is unit-tested natively. The UI (`ui.rs`, wasm only) keeps a
//! [`Chat`] in a signal, feeds it every frame from the socket, and sends the frames it returns.
//! Everything a user would notice going wrong lives here: deduplication by message id, unread
//! counts, pending sends and their failures, typing expiry, and the bookkeeping that lets a
//! reconnect rejoin every room with `since` so nothing is lost or shown twice, a refused join
//! shown as such, and what a closed connection means (reconnect, fetch a fresh token first, or
//! stop: see [`Chat::on_socket_closed`]). The token's life is [`Session`]'s.

use std::collections::{BTreeMap, VecDeque};

use skat_protocol::{ClientFrame, ErrorCode, Message, ServerFrame, close};

use crate::label::room_label;
pub use crate::room::{Pending, Room};
pub use crate::session::{Fetched, Session};

/// How long a "typing" notice stays visible without a new typing frame, in ms.
pub const TYPING_VISIBLE_MS: f64 = 4000.0;
/// Minimum interval between two typing frames we send for one room, in ms.
pub const TYPING_THROTTLE_MS: f64 = 2000.0;
/// Messages a room keeps: past it, live messages push the oldest out (they can be loaded again
/// with "load older"), so a busy room costs the page the same after an hour as after a minute.
pub const ROOM_WINDOW: usize = 500;
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
    next_nonce: u64,
    /// Random per page load, so nonces of two tabs never collide.
    nonce_prefix: String,
    /// Counts connections, to tell sends of an earlier connection from current ones.
    epoch: u64,
    /// Frames the state wants sent (re-sends after a reconnect); the UI drains it.
    pub outbox: Vec<ClientFrame>,
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
            next_nonce: 0,
            nonce_prefix: nonce_prefix.into(),
            epoch: 0,
            outbox: Vec::new(),
            session: Session::default(),
            joining: VecDeque::new(),
        }
    }

    /// The active room, if any.
    pub fn active_room(&self) -> Option<&Room> {
        self.active.as_ref().and_then(|r| self.rooms.get(r))
    }

    /// The frames to send once the socket opens: `hello`, then a `join` per known room, with
    /// `since` = the last message seen so the server sends exactly what we missed.
    pub fn on_open(&mut self) -> Vec<ClientFrame> {
        self.connection = Connection::Connecting;
        self.epoch += 1;
        let mut frames = vec![ClientFrame::Hello {
            name: self.name.clone(),
            token: self.session.token.clone(),
        }];
        self.joining.clear();
        for (name, room) in &mut self.rooms {
            room.joined = false;
            if room.refused.is_some() {
                continue;
            }
            self.joining.push_back(name.clone());
            room.typing.clear();
            let since = room.last_id().map(|id| id.to_string());
            frames.push(ClientFrame::Join {
                room: name.clone(),
                epoch: since.as_ref().and(room.history_epoch.clone()),
                since,
            });
        }
        frames
    }

    /// Whether the connection should be retried after it closes: not after a refusal, a
    /// disconnection by the application, or an expiry with no way to a fresh token.
    pub fn should_reconnect(&self) -> bool {
        !matches!(
            self.connection,
            Connection::Refused(_) | Connection::Disconnected(_) | Connection::Expired
        )
    }

    /// The socket closed with `code` and `reason`; returns whether to reconnect. 4000 (the
    /// application disconnected us) stops with the reason shown; 4001 (token expired) fetches a
    /// fresh token before the next connection, or stops with "session expired" if there is no
    /// token URL; anything else reconnects (unless our identity was refused).
    pub fn on_socket_closed(&mut self, code: u16, reason: &str) -> bool {
        self.session.on_close();
        self.joining.clear();
        match code {
            close::DISCONNECTED => {
                let reason = if reason.is_empty() {
                    "by the application"
                } else {
                    reason
                };
                self.connection = Connection::Disconnected(reason.to_owned());
            }
            close::TOKEN_EXPIRED if !self.session.on_expired() => {
                self.connection = Connection::Expired;
            }
            _ => {}
        }
        self.should_reconnect()
    }

    /// The connection closed: reconnect attempt `attempt` comes in `retry_in_ms`.
    pub fn on_close(&mut self, attempt: u32, retry_in_ms: u32) {
        self.connection = Connection::Reconnecting {
            attempt,
            retry_in_ms,
        };
        for room in self.rooms.values_mut() {
            room.joined = false;
            room.loading_older = false;
            room.typing.clear();
        }
    }

    /// Starts joining `room` (or just switches to it if already joined); returns the frame to send.
    /// A room refused earlier is asked for again.
    pub fn join(&mut self, room: &str) -> Option<ClientFrame> {
        self.active = Some(room.to_owned());
        if let Some(existing) = self.rooms.get_mut(room) {
            existing.unread = 0;
            // Joined or on its way: just shown. Refused: asked for again.
            existing.refused.take()?;
        } else {
            self.rooms.insert(room.to_owned(), Room::default());
        }
        self.joining.push_back(room.to_owned());
        Some(ClientFrame::Join {
            room: room.to_owned(),
            since: None,
            epoch: None,
        })
    }

    /// Shows `room`, clearing its unread count.
    pub fn switch_to(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.unread = 0;
            self.active = Some(room.to_owned());
        }
    }

    /// Leaves `room`; returns the frame to send (none for a room the server refused).
    pub fn leave(&mut self, room: &str) -> Option<ClientFrame> {
        let left = self.rooms.remove(room)?;
        if self.active.as_deref() == Some(room) {
            self.active = self.rooms.keys().next().cloned();
        }
        if left.refused.is_some() {
            return None;
        }
        Some(ClientFrame::Leave {
            room: room.to_owned(),
        })
    }

    /// Queues a message; returns the `send` frame, or `None` if the text is blank, the room
    /// unknown or the connection not live (the UI then keeps the text in the composer). The
    /// message shows as pending until its echo arrives. The server handles a connection's frames
    /// in order, so a send right after a join needs no wait for `joined`.
    pub fn send(&mut self, room: &str, body: &str, now: f64) -> Option<ClientFrame> {
        if self.connection != Connection::Online {
            return None;
        }
        let epoch = self.epoch;
        let r = self.rooms.get_mut(room).filter(|r| r.refused.is_none())?;
        if body.trim().is_empty() {
            return None;
        }
        let nonce = format!("{}-{}", self.nonce_prefix, self.next_nonce);
        self.next_nonce += 1;
        r.pending.push(Pending {
            nonce: nonce.clone(),
            body: body.to_owned(),
            error: None,
            epoch,
            sent_at: now,
        });
        r.last_typing_sent = None;
        Some(ClientFrame::Send {
            room: room.to_owned(),
            body: body.to_owned(),
            nonce: Some(nonce),
        })
    }

    /// Re-sends a failed message with its nonce (a repeat of an accepted send is answered with
    /// the original, never stored twice); returns the frame.
    pub fn retry(&mut self, room: &str, nonce: &str) -> Option<ClientFrame> {
        if self.connection != Connection::Online {
            return None;
        }
        let epoch = self.epoch;
        let r = self.rooms.get_mut(room)?;
        let p = r.pending.iter_mut().find(|p| p.nonce == nonce)?;
        p.error = None;
        p.epoch = epoch;
        Some(ClientFrame::Send {
            room: room.to_owned(),
            body: p.body.clone(),
            nonce: Some(p.nonce.clone()),
        })
    }

    /// Drops a failed message, returning its text (e.g. back to the composer).
    pub fn discard(&mut self, room: &str, nonce: &str) -> Option<String> {
        let r = self.rooms.get_mut(room)?;
        let index = r.pending.iter().position(|p| p.nonce == nonce)?;
        Some(r.pending.remove(index).body)
    }

    /// A `typing` frame for `room` unless one was sent less than the throttle interval ago.
    pub fn typing(&mut self, room: &str, now: f64) -> Option<ClientFrame> {
        let r = self.rooms.get_mut(room)?;
        if !r.joined
            || r.last_typing_sent
                .is_some_and(|t| now - t < TYPING_THROTTLE_MS)
        {
            return None;
        }
        r.last_typing_sent = Some(now);
        Some(ClientFrame::Typing {
            room: room.to_owned(),
        })
    }

    /// A `history` frame for the page before the oldest message of `room`, unless one is in
    /// flight or there is nothing older.
    pub fn load_older(&mut self, room: &str) -> Option<ClientFrame> {
        let r = self.rooms.get_mut(room)?;
        if r.loading_older || !r.has_more || !r.joined {
            return None;
        }
        r.loading_older = true;
        let before = r.messages.first().map(|m| m.id.to_string());
        Some(ClientFrame::History {
            room: room.to_owned(),
            before,
            limit: None,
        })
    }

    /// Drops typing notices that expired by `now`; returns whether anything changed.
    pub fn expire_typing(&mut self, now: f64) -> bool {
        let mut changed = false;
        for room in self.rooms.values_mut() {
            let before = room.typing.len();
            room.typing.retain(|_, until| *until > now);
            changed |= room.typing.len() != before;
        }
        changed
    }

    /// Applies a frame from the server at time `now` (ms).
    pub fn apply(&mut self, frame: ServerFrame, now: f64) {
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
            } => self.on_joined(&room, members, messages, recovered, epoch, now),
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
            ServerFrame::Error {
                code,
                message,
                nonce,
            } => self.on_error(code, message, nonce, now),
        }
    }

    /// Whether a fresh token should be fetched for the live connection now.
    pub fn refresh_due(&self, now: f64) -> bool {
        self.connection == Connection::Online && self.session.refresh_due(now)
    }

    /// The UI fetched a fresh token: what to do with it (see [`Fetched`]).
    pub fn token_fetched(&mut self, token: String) -> Fetched {
        let online = self.connection == Connection::Online;
        self.session.fetched(token, online)
    }

    /// Fetching a token failed at `now` with `error` (shown); returns whether a connection was
    /// waiting for it and should back off and retry.
    pub fn token_fetch_failed(&mut self, error: &str, now: f64) -> bool {
        self.notice = Some(format!("Could not get a fresh token: {error}"));
        self.session.fetch_failed(now)
    }

    /// Identified: the connection is live, its token expiring at `exp` (signed mode).
    fn on_welcome(&mut self, user: String, node: String, exp: Option<u64>, now: f64) {
        self.name = user;
        self.node = Some(node);
        self.connection = Connection::Online;
        self.notice = None;
        self.session.on_welcome(exp, now);
    }

    /// A join confirmed: members, the recovery (or, after a gap, the latest page), and the
    /// re-sends of what an earlier connection left unconfirmed.
    fn on_joined(
        &mut self,
        room: &str,
        members: Vec<String>,
        messages: Vec<Message>,
        recovered: bool,
        epoch: Option<String>,
        now: f64,
    ) {
        // Joins answered before this one without a `joined` were refused with an error that
        // could not name them (`unavailable`, `rate_limited`): shown, to be tried again.
        while let Some(earlier) = self.joining.pop_front() {
            if earlier == room {
                break;
            }
            let label = room_label(&earlier, &self.name);
            if let Some(r) = self.rooms.get_mut(&earlier) {
                r.refused = Some(format!("Could not join {label}."));
            }
        }
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.joined = true;
        r.members = members.into_iter().collect();
        if !recovered && !r.messages.is_empty() {
            // A gap we cannot fill: start over from the latest page.
            let pending = std::mem::take(&mut r.pending);
            *r = Room {
                joined: true,
                members: std::mem::take(&mut r.members),
                pending,
                // Never repeats, so views always see the change.
                version: r.version + 1,
                ..Room::default()
            };
        }
        r.history_epoch = epoch;
        if !recovered {
            r.has_more = messages.len()
                >= usize::try_from(skat_protocol::DEFAULT_HISTORY_LIMIT).unwrap_or(50);
        }
        for message in messages {
            self.on_message(message, !recovered);
        }
        self.resend_unconfirmed(room, now);
    }

    /// Sends of an earlier connection that the recovery (or latest page) did not confirm:
    /// re-sent with their nonce, which the server answers with the original if it stored them.
    /// Too old to be sure of that, they are left to the user. Sends made on this connection are
    /// simply still on their way.
    fn resend_unconfirmed(&mut self, room: &str, now: f64) {
        let epoch = self.epoch;
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        for p in r.pending.iter_mut().filter(|p| p.epoch < epoch) {
            if p.error.is_some() {
                continue;
            }
            if now - p.sent_at <= RESEND_WITHIN_MS {
                p.epoch = epoch;
                self.outbox.push(ClientFrame::Send {
                    room: room.to_owned(),
                    body: p.body.clone(),
                    nonce: Some(p.nonce.clone()),
                });
            } else {
                p.error = Some("not sent: connection lost".to_owned());
            }
        }
    }

    /// A user came online in a room, or left it.
    fn on_presence(&mut self, room: &str, user: String, online: bool) {
        if let Some(r) = self.rooms.get_mut(room) {
            if online {
                r.members.insert(user);
            } else {
                r.typing.remove(&user);
                r.members.remove(&user);
            }
        }
    }

    /// Someone is typing: shown for a while.
    fn on_typing(&mut self, room: &str, user: String, now: f64) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.typing.insert(user, now + TYPING_VISIBLE_MS);
        }
    }

    /// A page of older messages, put before what the room has.
    fn on_history(&mut self, room: &str, messages: Vec<Message>, has_more: bool) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.loading_older = false;
        r.has_more = has_more;
        let older: Vec<Message> = messages
            .into_iter()
            .filter(|m| r.ids.insert(m.id))
            .collect();
        r.messages.splice(0..0, older);
        r.version += 1;
    }

    /// An error: about one of our sends (kept, with the reason), a refused `refresh` (the old
    /// token stays; tried again later), a refused identity (fetched again from the token URL if
    /// it could help, else final), a refused join (shown in its room), or else a notice.
    fn on_error(&mut self, code: ErrorCode, message: String, nonce: Option<String>, now: f64) {
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
            _ => self.notice = Some(format!("{message} ({code})")),
        }
    }

    /// The oldest join awaiting its answer was refused: its room says why (`why` is given the
    /// room's label), stays unjoined, and is not rejoined on reconnects.
    fn refuse_join(&mut self, why: impl FnOnce(&str) -> String) {
        let Some(room) = self.joining.pop_front() else {
            return;
        };
        let reason = why(&room_label(&room, &self.name));
        if let Some(r) = self.rooms.get_mut(&room) {
            r.refused = Some(reason);
            r.joined = false;
        }
    }

    /// Records a message: dedup by id, confirm our pending send, count unread.
    fn on_message(&mut self, message: Message, from_page: bool) {
        let active = self.active.as_deref() == Some(message.room.as_str());
        let mine = message.from == self.name;
        let Some(r) = self.rooms.get_mut(&message.room) else {
            return;
        };
        if let Some(nonce) = message.nonce.as_deref().filter(|_| mine) {
            r.pending.retain(|p| p.nonce != nonce);
        }
        r.typing.remove(&message.from);
        if r.push(message) && !active && !mine && !from_page {
            r.unread += 1;
        }
    }
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
mod tests;
