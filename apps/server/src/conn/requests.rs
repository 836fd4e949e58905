//! The client's requests, one method each: validation, rate limits, the broker call, the reply.
//!
//! Replies are queued on the connection's output (see the parent module), so a request never
//! waits on a slow socket; only broker calls are awaited.

use std::sync::Arc;
use std::time::Instant;

use skat_broker::{Broker, MessageId, NewMessage, Published, Recovery, Resume, Snapshot};
use skat_protocol::{
    ClientFrame, DEFAULT_HISTORY_LIMIT, ErrorCode, Invalid, MAX_MEMBERS_LIMIT, PROTOCOL_VERSION,
    ServerFrame, decode_client, keep_newest_within, validate_body, validate_history_limit,
    validate_name, validate_nonce, validate_room,
};
use tokio::io::{AsyncRead, AsyncWrite};

use tracing::Level;

use super::{Conn, JoinedRoom, Signed, Stop, conn_event};
use crate::access;
use crate::auth::Identity;
use crate::metrics::{BrokerCall, Source};
use crate::refusals::Refusal;

/// The longest epoch a `join` may carry (the brokers' are about 17 bytes).
const MAX_EPOCH_BYTES: usize = 64;

/// What a client is told when the broker cannot serve a join (the reason is logged, not sent).
const ROOM_UNAVAILABLE: &str = "the room is unavailable, retry later";

impl<B, IO> Conn<B, IO>
where
    B: Broker,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    pub(super) async fn handle_text(&mut self, text: &str) -> Result<(), Stop> {
        let frame = match decode_client(text) {
            Ok(frame) => frame,
            Err(err) => {
                self.reply_error(err.code, &err.message, err.nonce);
                return Ok(());
            }
        };
        let Some(user) = self.user.clone() else {
            match frame {
                ClientFrame::Hello { name, token } => return self.hello(name, token.as_deref()),
                ClientFrame::Send { nonce, .. } => {
                    let nonce = nonce.filter(|n| validate_nonce(n).is_ok());
                    self.reply_error(ErrorCode::HelloRequired, "send hello first", nonce);
                }
                _ => self.reply_error(ErrorCode::HelloRequired, "send hello first", None),
            }
            return Ok(());
        };
        match frame {
            ClientFrame::Hello { .. } => self.reply_error(
                ErrorCode::AlreadyHello,
                "this connection is already identified",
                None,
            ),
            ClientFrame::Join { room, since, epoch } => self.join(&user, room, since, epoch).await,
            ClientFrame::Leave { room } => self.leave(&user, room).await,
            ClientFrame::Send { room, body, nonce } => self.send(&user, room, body, nonce).await,
            ClientFrame::Typing { room } => self.typing(&user, room).await,
            ClientFrame::History {
                room,
                before,
                limit,
            } => self.history(room, before, limit).await,
            ClientFrame::Members { room, after, limit } => self.members(room, after, limit).await,
            ClientFrame::Refresh { token } => self.refresh(&user, &token).await,
        }
        Ok(())
    }

    pub(super) fn reply_invalid(&mut self, invalid: Invalid, nonce: Option<String>) {
        let Invalid { code, message } = invalid;
        self.reply_error(code, &message, nonce);
    }

    /// Takes a `join`/`history`/`members` token, answering `rate_limited` if there is none.
    pub(super) fn request_allowed(&mut self) -> bool {
        if self.requests.try_take(Instant::now()) {
            return true;
        }
        // The metric's label predates `members`, which shares the budget; dashboards keep it.
        self.state.metrics().rate_limited("join_or_history");
        self.reply_error(
            ErrorCode::RateLimited,
            "too many join, history or members requests; retry shortly",
            None,
        );
        false
    }

    fn hello(&mut self, name: String, token: Option<&str>) -> Result<(), Stop> {
        if let Err(invalid) = validate_name(&name) {
            self.reply_invalid(invalid, None);
            return Ok(());
        }
        // Signed mode: the name must be vouched for; anonymous mode ignores any token.
        let mut exp = None;
        if let Some(verifier) = self.state.verifier() {
            match verifier.verify(&name, token) {
                Ok(identity) => exp = Some(self.take_identity(identity)),
                Err(err) => {
                    let detail = format!("conn {} as {name}: {err}", self.id);
                    self.state.refusals().record(Refusal::Hello, &detail);
                    self.reply_error(ErrorCode::Unauthorized, &err.to_string(), None);
                    return Err(Stop::Unauthorized);
                }
            }
        }
        let node = self.state.config().node_id.clone();
        let user: Arc<str> = Arc::from(name.as_str());
        self.state.sessions().add(&user, self.id, &self.outbox);
        self.user = Some(user);
        conn_event!(self, Level::DEBUG, "hello");
        self.reply(&ServerFrame::Welcome {
            user: name,
            node,
            protocol: PROTOCOL_VERSION,
            exp,
        });
        Ok(())
    }

    /// Makes `identity` the connection's: its room grants, and the end of its life. Returns its
    /// `exp`.
    fn take_identity(&mut self, identity: Identity) -> u64 {
        let expires = tokio::time::Instant::now() + identity.remaining();
        let exp = identity.exp;
        self.signed = Some(Box::new(Signed {
            grants: identity.grants,
            expires,
        }));
        exp
    }

    /// Replaces the connection's token with a fresher one for the same user. Rooms the new token
    /// no longer grants are left (each with a `left`), so a backend can take access away.
    async fn refresh(&mut self, user: &Arc<str>, token: &str) {
        if !self.request_allowed() {
            return;
        }
        let Some(verifier) = self.state.verifier() else {
            return self.reply(&ServerFrame::Refreshed { exp: None });
        };
        let exp = match verifier.verify(user, Some(token)) {
            Ok(identity) => self.take_identity(identity),
            Err(err) => {
                let detail = format!("conn {} refresh as {user}: {err}", self.id);
                self.state.refusals().record(Refusal::Hello, &detail);
                return self.reply_error(ErrorCode::Unauthorized, &err.to_string(), None);
            }
        };
        conn_event!(self, Level::DEBUG, exp, "token refreshed");
        self.reply(&ServerFrame::Refreshed { exp: Some(exp) });
        let config = self.state.config();
        let grants = self.signed.as_ref().and_then(|s| s.grants.as_ref());
        let revoked: Vec<Arc<str>> = self
            .rooms
            .iter()
            .filter(|room| {
                access::may_join(true, &config.private_prefix, user, grants, &room.name).is_err()
            })
            .map(|room| Arc::clone(&room.name))
            .collect();
        for room in revoked {
            self.leave(user, room.to_string()).await;
        }
    }

    /// Checks a room name and that this connection has (or has not) joined it.
    pub(super) fn check_room(&self, room: &str, must_be_joined: bool) -> Result<(), Invalid> {
        validate_room(room)?;
        match (self.joined(room).is_some(), must_be_joined) {
            (false, true) => Err(Invalid {
                code: ErrorCode::NotJoined,
                message: "join the room first".into(),
            }),
            (true, false) => Err(Invalid {
                code: ErrorCode::AlreadyJoined,
                message: "this connection already joined the room".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Index of a joined room in `self.rooms`.
    fn joined(&self, room: &str) -> Option<usize> {
        self.rooms.iter().position(|r| &*r.name == room)
    }

    async fn join(
        &mut self,
        user: &Arc<str>,
        room: String,
        since: Option<String>,
        epoch: Option<String>,
    ) {
        if let Err(invalid) = self.check_room(&room, false) {
            return self.reply_invalid(invalid, None);
        }
        let config = self.state.config();
        let signed = self.state.verifier().is_some();
        let grants = self.signed.as_ref().and_then(|s| s.grants.as_ref());
        if let Err(why) = access::may_join(signed, &config.private_prefix, user, grants, &room) {
            return self.reply_error(ErrorCode::Forbidden, why, None);
        }
        if !self.request_allowed() {
            return;
        }
        let max_rooms = self.state.config().limits.max_rooms_per_conn;
        if self.rooms.len() >= max_rooms {
            let message =
                format!("a connection may be in at most {max_rooms} rooms; leave one first");
            return self.reply_error(ErrorCode::TooManyRooms, &message, None);
        }
        let since = match since.as_deref().map(str::parse::<MessageId>).transpose() {
            Ok(since) => since,
            Err(err) => return self.reply_error(ErrorCode::InvalidId, &err.to_string(), None),
        };
        if epoch.as_ref().is_some_and(|e| e.len() > MAX_EPOCH_BYTES) {
            let message = format!("an epoch is at most {MAX_EPOCH_BYTES} bytes");
            return self.reply_error(ErrorCode::InvalidId, &message, None);
        }
        // From here on the room's events queue up in our outbox; they are filtered against the
        // page below once it is known, so nothing falls between history and live delivery.
        let resume = Resume {
            since,
            epoch: epoch.as_deref(),
            recovery: Recovery {
                limit: self.state.config().recovery_limit,
                max_bytes: self.state.config().max_reply_bytes,
            },
            page: DEFAULT_HISTORY_LIMIT as usize,
            // A huge room's members are paged with `members`, not sent in one frame.
            members: MAX_MEMBERS_LIMIT as usize,
        };
        let joining = self
            .state
            .rooms()
            .join(&room, self.id, user, &self.outbox, resume);
        let metrics = self.state.metrics();
        let joining = metrics.timed(BrokerCall::Join, joining).await;
        let (joined, snapshot) = match joining {
            Ok(joined) => joined,
            Err(err) => {
                // The broker's own words stay in the log: clients get no internals.
                conn_event!(self, Level::WARN, %room, error = %err, "join failed");
                return self.reply_error(ErrorCode::Unavailable, ROOM_UNAVAILABLE, None);
            }
        };
        let Snapshot {
            members,
            more_members,
            mut messages,
            recovered,
            epoch,
        } = snapshot;
        if since.is_some() {
            self.state.metrics().recovery(recovered);
        }
        if !recovered {
            // The latest page, like any page, within the reply bound.
            keep_newest_within(&mut messages, self.state.config().max_reply_bytes);
        }
        let watermark = messages
            .last()
            .map(|m| m.id)
            .or(if recovered { since } else { None });
        // Most connections are in one or two rooms: grow one slot at a time.
        self.rooms.reserve_exact(1);
        self.rooms.push(JoinedRoom {
            name: joined.name,
            watermark,
        });
        conn_event!(self, Level::DEBUG, %room, recovered, "joined");
        self.reply(&ServerFrame::Joined {
            room,
            members,
            messages,
            recovered,
            epoch: Some(epoch),
            more_members,
        });
    }

    async fn leave(&mut self, user: &Arc<str>, room: String) {
        if let Err(invalid) = self.check_room(&room, true) {
            return self.reply_invalid(invalid, None);
        }
        if let Some(index) = self.joined(&room) {
            self.rooms.swap_remove(index);
        }
        self.state.rooms().leave(&room, self.id, user).await;
        self.reply(&ServerFrame::Left { room });
    }

    /// Leaves every room (when the connection ends).
    pub(super) async fn leave_all(&mut self) {
        let Some(user) = self.user.clone() else {
            return;
        };
        self.state.sessions().remove(&user, self.id);
        for room in std::mem::take(&mut self.rooms) {
            self.state.rooms().leave(&room.name, self.id, &user).await;
        }
    }

    async fn send(&mut self, user: &Arc<str>, room: String, body: String, nonce: Option<String>) {
        // The nonce is checked first: an invalid one is never echoed, a valid one always is.
        if let Some(Err(invalid)) = nonce.as_deref().map(validate_nonce) {
            return self.reply_invalid(invalid, None);
        }
        let checked = self
            .check_room(&room, true)
            .and_then(|()| validate_body(&body));
        if let Err(invalid) = checked {
            return self.reply_invalid(invalid, nonce);
        }
        if !self.messages.try_take(Instant::now()) {
            let limits = &self.state.config().limits;
            let message = format!(
                "too many messages: at most {} per second (bursts of {}); retry shortly",
                limits.messages_per_sec, limits.messages_burst
            );
            self.state.metrics().rate_limited("send");
            return self.reply_error(ErrorCode::RateLimited, &message, nonce);
        }
        let new = NewMessage {
            room,
            from: user.to_string(),
            body,
            nonce: nonce.clone(),
        };
        // On success the confirmation is our own copy of the message, arriving through the room.
        let metrics = self.state.metrics();
        let published = self.state.broker().publish(new);
        let published = metrics.timed(BrokerCall::Publish, published).await;
        match published {
            Ok(Published::New(_)) => metrics.message_accepted(Source::WebSocket, true),
            // A retry of a send already accepted (e.g. before a reconnect): only the sender
            // gets the original again, as its confirmation.
            Ok(Published::Duplicate(original)) => {
                metrics.message_accepted(Source::WebSocket, false);
                self.reply(&ServerFrame::Message(original));
            }
            Err(err) => {
                conn_event!(self, Level::WARN, error = %err, "publish failed");
                self.reply_error(
                    ErrorCode::Unavailable,
                    "message not sent: the broker is unavailable, retry",
                    nonce,
                );
            }
        }
    }

    async fn typing(&mut self, user: &Arc<str>, room: String) {
        if let Err(invalid) = self.check_room(&room, true) {
            return self.reply_invalid(invalid, None);
        }
        if !self.typing.try_take(Instant::now()) {
            self.state.metrics().rate_limited("typing");
            return self.reply_error(
                ErrorCode::RateLimited,
                "too many typing notifications",
                None,
            );
        }
        let relayed = self.state.broker().typing(&room, user);
        let relayed = self
            .state
            .metrics()
            .timed(BrokerCall::Typing, relayed)
            .await;
        if let Err(err) = relayed {
            // Typing notifications are transient; losing one is harmless.
            conn_event!(self, Level::DEBUG, error = %err, "typing not relayed");
        }
    }

    async fn history(&mut self, room: String, before: Option<String>, limit: Option<u32>) {
        if let Err(invalid) = self.check_room(&room, true) {
            return self.reply_invalid(invalid, None);
        }
        if !self.request_allowed() {
            return;
        }
        let limit = match validate_history_limit(limit) {
            Ok(limit) => limit,
            Err(invalid) => return self.reply_invalid(invalid, None),
        };
        let before = match before.as_deref().map(str::parse::<MessageId>).transpose() {
            Ok(before) => before,
            Err(err) => return self.reply_error(ErrorCode::InvalidId, &err.to_string(), None),
        };
        let page = self.state.broker().history(&room, before, limit as usize);
        let page = self.state.metrics().timed(BrokerCall::History, page).await;
        match page {
            Ok(mut page) => {
                let cut =
                    keep_newest_within(&mut page.messages, self.state.config().max_reply_bytes);
                self.reply(&ServerFrame::History {
                    room,
                    messages: page.messages,
                    has_more: page.has_more || cut,
                });
            }
            Err(err) => {
                conn_event!(self, Level::WARN, error = %err, "history failed");
                self.reply_error(
                    ErrorCode::Unavailable,
                    "history is unavailable, retry later",
                    None,
                );
            }
        }
    }
}
