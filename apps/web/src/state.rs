//! The chat client's state machine: server frames in, view state out.
//!
//! Pure Rust, no browser APIs, so it is unit-tested natively. The UI (`ui.rs`, wasm only) keeps a
//! [`Chat`] in a signal, feeds it every frame from the socket, and sends the frames it returns.
//! Everything a user would notice going wrong lives here: deduplication by message id, unread
//! counts, pending sends and their failures, typing expiry, and the bookkeeping that lets a
//! reconnect rejoin every room with `since` so nothing is lost or shown twice.

use std::collections::BTreeMap;

use skat_protocol::{ClientFrame, Message, ServerFrame};

pub use crate::room::{Pending, Room};

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
    /// Signed mode: the token the application gave us for `name`.
    pub token: Option<String>,
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
            token: None,
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
            token: self.token.clone(),
        }];
        for (name, room) in &mut self.rooms {
            room.joined = false;
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

    /// The socket closed; `attempt` failures so far, next try in `retry_in_ms`.
    /// Whether the connection should be retried after it closes (not after a refusal).
    pub fn should_reconnect(&self) -> bool {
        !matches!(self.connection, Connection::Refused(_))
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
    pub fn join(&mut self, room: &str) -> Option<ClientFrame> {
        self.active = Some(room.to_owned());
        if let Some(existing) = self.rooms.get_mut(room) {
            existing.unread = 0;
            return None;
        }
        self.rooms.insert(room.to_owned(), Room::default());
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

    /// Leaves `room`; returns the frame to send.
    pub fn leave(&mut self, room: &str) -> Option<ClientFrame> {
        self.rooms.remove(room)?;
        if self.active.as_deref() == Some(room) {
            self.active = self.rooms.keys().next().cloned();
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
        let r = self.rooms.get_mut(room)?;
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
            ServerFrame::Welcome { user, node, .. } => self.on_welcome(user, node),
            ServerFrame::Joined {
                room,
                members,
                messages,
                recovered,
                epoch,
            } => self.on_joined(&room, members, messages, recovered, epoch, now),
            ServerFrame::Left { .. } | ServerFrame::Refreshed { .. } => {}
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
            } => self.on_error(code, message, nonce),
        }
    }

    /// Identified: the connection is live.
    fn on_welcome(&mut self, user: String, node: String) {
        self.name = user;
        self.node = Some(node);
        self.connection = Connection::Online;
        self.notice = None;
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

    /// An error: about one of our sends (kept, with the reason), a refused identity, or else a
    /// notice.
    fn on_error(&mut self, code: skat_protocol::ErrorCode, message: String, nonce: Option<String>) {
        let failed = nonce.and_then(|nonce| {
            self.rooms
                .values_mut()
                .find_map(|r| r.pending.iter_mut().find(|p| p.nonce == nonce))
        });
        match failed {
            Some(p) => p.error = Some(message),
            None if code == skat_protocol::ErrorCode::Unauthorized => {
                self.connection = Connection::Refused(message);
            }
            None => self.notice = Some(format!("{message} ({code})")),
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
mod tests {
    use super::*;
    use skat_protocol::ErrorCode;

    fn msg(room: &str, id: &str, from: &str, body: &str, nonce: Option<&str>) -> Message {
        Message {
            room: room.into(),
            id: id.parse().unwrap(),
            from: from.into(),
            body: body.into(),
            ts: 1,
            nonce: nonce.map(Into::into),
        }
    }

    fn joined(room: &str, messages: Vec<Message>, recovered: bool) -> ServerFrame {
        ServerFrame::Joined {
            room: room.into(),
            members: vec!["me".into()],
            messages,
            recovered,
            epoch: Some("e1".into()),
        }
    }

    /// The welcome of a reconnection.
    fn online_again(chat: &mut Chat) {
        chat.apply(
            ServerFrame::Welcome {
                user: "me".into(),
                node: "n2".into(),
                protocol: 1,
                exp: None,
            },
            0.0,
        );
    }

    fn online(chat: &mut Chat) {
        chat.on_open();
        chat.apply(
            ServerFrame::Welcome {
                user: "me".into(),
                node: "n1".into(),
                protocol: 1,
                exp: None,
            },
            0.0,
        );
    }

    #[test]
    fn welcome_and_join() {
        let mut chat = Chat::new("me", "t");
        assert_eq!(
            chat.on_open(),
            [ClientFrame::Hello {
                name: "me".into(),
                token: None
            }]
        );
        chat.apply(
            ServerFrame::Welcome {
                user: "me".into(),
                node: "n1".into(),
                protocol: 1,
                exp: None,
            },
            0.0,
        );
        assert_eq!(chat.connection, Connection::Online);
        assert_eq!(chat.node.as_deref(), Some("n1"));
        assert_eq!(
            chat.join("general"),
            Some(ClientFrame::Join {
                room: "general".into(),
                since: None,
                epoch: None,
            })
        );
        assert_eq!(chat.join("general"), None, "already joined: just switches");
        chat.apply(
            joined(
                "general",
                vec![msg("general", "1-0", "bob", "hi", None)],
                false,
            ),
            0.0,
        );
        let room = chat.active_room().unwrap();
        assert!(room.joined);
        assert_eq!(room.messages.len(), 1);
        assert_eq!(room.unread, 0, "the latest page is not unread");
    }

    #[test]
    fn dedups_by_id_and_counts_unread_only_elsewhere() {
        let mut chat = Chat::new("me", "t");
        online(&mut chat);
        chat.join("a");
        chat.join("b");
        chat.apply(joined("a", vec![], false), 0.0);
        chat.apply(joined("b", vec![], false), 0.0);
        assert_eq!(chat.active.as_deref(), Some("b"));
        chat.apply(ServerFrame::Message(msg("a", "1-0", "bob", "x", None)), 0.0);
        chat.apply(ServerFrame::Message(msg("a", "1-0", "bob", "x", None)), 0.0);
        chat.apply(ServerFrame::Message(msg("b", "1-1", "bob", "y", None)), 0.0);
        assert_eq!(chat.rooms["a"].messages.len(), 1, "duplicate id ignored");
        assert_eq!(chat.rooms["a"].unread, 1);
        assert_eq!(chat.rooms["b"].unread, 0, "active room is read");
        chat.apply(
            ServerFrame::Message(msg("a", "1-2", "me", "mine", None)),
            0.0,
        );
        assert_eq!(chat.rooms["a"].unread, 1, "own messages are not unread");
        chat.switch_to("a");
        assert_eq!(chat.rooms["a"].unread, 0);
    }

    #[test]
    fn pending_sends_confirm_by_nonce_or_fail_keeping_the_text() {
        let mut chat = Chat::new("me", "t");
        online(&mut chat);
        chat.join("a");
        chat.apply(joined("a", vec![], false), 0.0);
        assert_eq!(chat.send("a", "   ", 0.0), None, "blank text is not sent");
        let Some(ClientFrame::Send {
            nonce: Some(n1), ..
        }) = chat.send("a", "hello", 0.0)
        else {
            panic!()
        };
        let Some(ClientFrame::Send {
            nonce: Some(n2), ..
        }) = chat.send("a", "x".repeat(5000).as_str(), 0.0)
        else {
            panic!()
        };
        assert_ne!(n1, n2);
        assert_eq!(chat.rooms["a"].pending.len(), 2);
        chat.apply(
            ServerFrame::Message(msg("a", "1-0", "me", "hello", Some(&n1))),
            0.0,
        );
        chat.apply(
            ServerFrame::error(ErrorCode::BodyTooLong, "too long", Some(n2.clone())),
            0.0,
        );
        let pending = &chat.rooms["a"].pending;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].error.as_deref(), Some("too long"));
        assert_eq!(
            chat.discard("a", &n2).map(|b| b.len()),
            Some(5000),
            "the text is given back"
        );
        // An error without a nonce goes to the banner.
        chat.apply(
            ServerFrame::error(ErrorCode::InvalidRoom, "bad room", None),
            0.0,
        );
        assert_eq!(chat.notice.as_deref(), Some("bad room (invalid_room)"));
    }

    #[test]
    fn reconnect_rejoins_with_since_and_recovers_without_duplicates() {
        let mut chat = Chat::new("me", "t");
        online(&mut chat);
        chat.join("a");
        chat.apply(
            joined("a", vec![msg("a", "1-0", "bob", "one", None)], false),
            0.0,
        );
        chat.apply(
            ServerFrame::Message(msg("a", "1-1", "bob", "two", None)),
            0.0,
        );
        let Some(ClientFrame::Send {
            nonce: Some(lost), ..
        }) = chat.send("a", "did it go?", 0.0)
        else {
            panic!()
        };

        chat.on_close(1, 700);
        assert_eq!(
            chat.connection,
            Connection::Reconnecting {
                attempt: 1,
                retry_in_ms: 700
            }
        );
        assert!(!chat.rooms["a"].joined);
        let frames = chat.on_open();
        assert_eq!(
            frames[1],
            ClientFrame::Join {
                room: "a".into(),
                since: Some("1-1".into()),
                epoch: Some("e1".into()),
            },
            "rejoins with the history epoch the messages came from"
        );

        online_again(&mut chat);
        // The recovery overlaps what we had (1-1) and brings what we missed (1-2).
        chat.apply(
            joined(
                "a",
                vec![
                    msg("a", "1-1", "bob", "two", None),
                    msg("a", "1-2", "carol", "three", None),
                ],
                true,
            ),
            0.0,
        );
        let room = &chat.rooms["a"];
        let bodies: Vec<&str> = room.messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["one", "two", "three"]);
        assert_eq!(chat.node.as_deref(), Some("n2"));
        // Our unconfirmed send was not in the recovery: re-sent with its nonce (the server
        // answers a repeat of a stored send with the original), still pending, no error.
        assert_eq!(room.pending[0].error, None);
        assert_eq!(
            std::mem::take(&mut chat.outbox),
            [ClientFrame::Send {
                room: "a".into(),
                body: "did it go?".into(),
                nonce: Some(lost.clone()),
            }]
        );
        // Its echo confirms it, once.
        chat.apply(
            ServerFrame::Message(msg("a", "1-3", "me", "did it go?", Some(&lost))),
            0.0,
        );
        assert!(chat.rooms["a"].pending.is_empty());
        assert_eq!(chat.rooms["a"].messages.len(), 4);
    }

    #[test]
    fn only_sends_of_an_earlier_connection_are_resent_and_old_ones_are_left_to_the_user() {
        let mut chat = Chat::new("me", "t");
        online(&mut chat);
        chat.join("a");
        chat.apply(joined("a", vec![], false), 0.0);
        let old = chat.send("a", "ancient", 0.0);
        let recent = chat.send("a", "recent", RESEND_WITHIN_MS);
        assert!(old.is_some() && recent.is_some());
        chat.on_close(1, 500);
        chat.on_open();
        online_again(&mut chat);
        // Sent on this connection before its joined arrived: neither failed nor re-sent.
        let current = chat.send("a", "now", RESEND_WITHIN_MS + 1.0);
        assert!(current.is_some());
        chat.apply(joined("a", vec![], true), RESEND_WITHIN_MS + 1.0);
        let resent: Vec<String> = chat
            .outbox
            .iter()
            .map(|f| match f {
                ClientFrame::Send { body, .. } => body.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(resent, ["recent"]);
        let errors: Vec<(&str, Option<&str>)> = chat.rooms["a"]
            .pending
            .iter()
            .map(|p| (p.body.as_str(), p.error.as_deref()))
            .collect();
        assert_eq!(
            errors,
            [
                ("ancient", Some("not sent: connection lost")),
                ("recent", None),
                ("now", None)
            ]
        );
    }

    #[test]
    fn a_room_keeps_a_bounded_window_of_messages() {
        let mut chat = Chat::new("me", "t");
        online(&mut chat);
        chat.join("a");
        chat.apply(joined("a", vec![], false), 0.0);
        let before = chat.rooms["a"].version();
        for i in 0..ROOM_WINDOW + 10 {
            let id = format!("1-{i}");
            chat.apply(ServerFrame::Message(msg("a", &id, "bob", "x", None)), 0.0);
        }
        let room = &chat.rooms["a"];
        assert_eq!(room.messages.len(), ROOM_WINDOW);
        assert_eq!(room.messages[0].id.to_string(), "1-10", "the oldest went");
        assert!(room.has_more, "and can be loaded again");
        assert!(room.version() > before);
        // A message pushed out is new again if a page brings it back.
        let v = room.version();
        chat.apply(
            ServerFrame::History {
                room: "a".into(),
                messages: vec![msg("a", "1-9", "bob", "x", None)],
                has_more: true,
            },
            0.0,
        );
        assert_eq!(chat.rooms["a"].messages[0].id.to_string(), "1-9");
        assert!(chat.rooms["a"].version() > v);
    }

    #[test]
    fn a_gap_that_cannot_be_recovered_resets_the_room() {
        let mut chat = Chat::new("me", "t");
        online(&mut chat);
        chat.join("a");
        chat.apply(
            joined("a", vec![msg("a", "1-0", "bob", "old", None)], false),
            0.0,
        );
        chat.on_close(1, 500);
        chat.on_open();
        chat.apply(
            joined("a", vec![msg("a", "9-0", "bob", "new", None)], false),
            0.0,
        );
        let bodies: Vec<&str> = chat.rooms["a"]
            .messages
            .iter()
            .map(|m| m.body.as_str())
            .collect();
        assert_eq!(bodies, ["new"]);
    }

    #[test]
    fn history_pages_prepend_and_presence_and_typing_update() {
        let mut chat = Chat::new("me", "t");
        online(&mut chat);
        chat.join("a");
        let page: Vec<Message> = (10..60)
            .map(|i| msg("a", &format!("{i}-0"), "bob", "m", None))
            .collect();
        chat.apply(joined("a", page, false), 0.0);
        assert!(chat.rooms["a"].has_more);
        let Some(ClientFrame::History { before, .. }) = chat.load_older("a") else {
            panic!()
        };
        assert_eq!(before.as_deref(), Some("10-0"));
        assert_eq!(chat.load_older("a"), None, "one request at a time");
        let older = vec![
            msg("a", "8-0", "bob", "m", None),
            msg("a", "9-0", "bob", "m", None),
        ];
        chat.apply(
            ServerFrame::History {
                room: "a".into(),
                messages: older,
                has_more: false,
            },
            0.0,
        );
        assert_eq!(chat.rooms["a"].messages[0].id.to_string(), "8-0");
        assert_eq!(chat.rooms["a"].messages.len(), 52);
        assert_eq!(chat.load_older("a"), None, "nothing older");

        chat.apply(
            ServerFrame::Presence {
                room: "a".into(),
                user: "bob".into(),
                online: true,
            },
            0.0,
        );
        assert!(chat.rooms["a"].members.contains("bob"));
        chat.apply(
            ServerFrame::Typing {
                room: "a".into(),
                user: "bob".into(),
            },
            1000.0,
        );
        assert_eq!(chat.rooms["a"].typing_users(1000.0), ["bob"]);
        assert_eq!(
            chat.rooms["a"].typing_users(1000.0 + TYPING_VISIBLE_MS),
            Vec::<&str>::new()
        );
        assert!(chat.expire_typing(1000.0 + TYPING_VISIBLE_MS));
        chat.apply(
            ServerFrame::Presence {
                room: "a".into(),
                user: "bob".into(),
                online: false,
            },
            0.0,
        );
        assert!(!chat.rooms["a"].members.contains("bob"));
    }

    #[test]
    fn signed_mode_sends_the_token_and_stops_on_refusal() {
        let mut chat = Chat::new("alice", "t");
        chat.token = Some("jwt".into());
        assert_eq!(
            chat.on_open()[0],
            ClientFrame::Hello {
                name: "alice".into(),
                token: Some("jwt".into())
            }
        );
        assert!(chat.should_reconnect());
        chat.apply(
            ServerFrame::error(
                ErrorCode::Unauthorized,
                "invalid token: ExpiredSignature",
                None,
            ),
            0.0,
        );
        assert_eq!(
            chat.connection,
            Connection::Refused("invalid token: ExpiredSignature".into())
        );
        assert!(
            !chat.should_reconnect(),
            "a refused identity is not retried"
        );
    }

    #[test]
    fn typing_frames_are_throttled() {
        let mut chat = Chat::new("me", "t");
        chat.join("a");
        assert_eq!(chat.typing("a", 0.0), None, "not while disconnected");
        online(&mut chat);
        chat.join("a");
        assert_eq!(
            chat.typing("a", 0.0),
            None,
            "not before the join is confirmed"
        );
        chat.apply(joined("a", vec![], false), 0.0);
        assert!(chat.typing("a", 0.0).is_some());
        assert_eq!(chat.typing("a", 1000.0), None);
        assert!(chat.typing("a", 2500.0).is_some());
    }

    #[test]
    fn leave_moves_to_another_room() {
        let mut chat = Chat::new("me", "t");
        chat.join("a");
        chat.join("b");
        assert_eq!(
            chat.leave("b"),
            Some(ClientFrame::Leave { room: "b".into() })
        );
        assert_eq!(chat.active.as_deref(), Some("a"));
        assert_eq!(chat.leave("b"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        assert_eq!(backoff_ms(0, 0.0), 250);
        assert_eq!(backoff_ms(0, 0.999_999), 499);
        assert_eq!(backoff_ms(3, 0.0), 2000);
        assert!(backoff_ms(30, 0.5) <= 30_000);
        assert!(backoff_ms(30, 0.0) >= 15_000);
    }
}
