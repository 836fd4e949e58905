//! The client's requests, one method each: the connection's own part of each (its joined
//! rooms, its rate buckets, its identity) around the operation itself (`ops`: the checks of the
//! request, the broker call, the bound on the reply), and the reply.
//!
//! Replies are queued on the connection's output (see the parent module), so a request never
//! waits on a slow socket; only broker calls are awaited.

use std::sync::Arc;
use std::time::Instant;

use skat_broker::{Broker, Published, Snapshot};
use skat_protocol::{
    ClientFrame, ErrorCode, Invalid, PROTOCOL_VERSION, ServerFrame, decode_client, validate_name,
    validate_nonce, validate_room,
};
use tokio::io::{AsyncRead, AsyncWrite};

use tracing::Level;

use super::{Conn, JoinedRoom, Signed, Stop, conn_event};
use crate::access;
use crate::auth::Identity;
use crate::metrics::Source;
use crate::ops::{History, Join, Members, Publish, Search, Sender, Typing};

mod changes;
use crate::refusals::Refusal;

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
                ClientFrame::Send { nonce, .. }
                | ClientFrame::Edit { nonce, .. }
                | ClientFrame::Delete { nonce, .. }
                | ClientFrame::React { nonce, .. } => {
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
            ClientFrame::Send {
                room,
                body,
                nonce,
                reply_to,
            } => self.send(&user, room, body, nonce, reply_to).await,
            ClientFrame::Typing { room } => self.typing(&user, room).await,
            ClientFrame::History {
                room,
                before,
                limit,
            } => self.history(room, before, limit).await,
            ClientFrame::Members { room, after, limit } => self.members(room, after, limit).await,
            ClientFrame::Refresh { token } => self.refresh(&user, &token).await,
            ClientFrame::Edit {
                room,
                id,
                body,
                nonce,
            } => self.edit(&user, room, &id, body, nonce).await,
            ClientFrame::Delete { room, id, nonce } => self.delete(&user, room, &id, nonce).await,
            ClientFrame::React {
                room,
                id,
                emoji,
                add,
                nonce,
            } => self.react(&user, room, &id, emoji, add, nonce).await,
            ClientFrame::Read { room, id } => self.read(&user, room, &id).await,
            ClientFrame::Search {
                room,
                q,
                before,
                limit,
            } => self.search(room, q, before, limit).await,
        }
        Ok(())
    }

    pub(super) fn reply_invalid(&mut self, invalid: Invalid, nonce: Option<String>) {
        let Invalid { code, message } = invalid;
        self.reply_error(code, &message, nonce);
    }

    /// The broker could not serve `request`: its words stay in the log (clients get no
    /// internals), the client is told `message` (and its nonce, for a `send`).
    fn unavailable(
        &mut self,
        request: &str,
        err: &dyn std::fmt::Display,
        message: &str,
        nonce: Option<String>,
    ) {
        conn_event!(self, Level::WARN, error = %err, "{request} failed");
        self.reply_error(ErrorCode::Unavailable, message, nonce);
    }

    /// Takes a `join`/`history`/`members`/`search`/`refresh` token, answering `rate_limited` if there is
    /// none.
    fn request_allowed(&mut self) -> bool {
        match self.take_request() {
            Ok(()) => true,
            Err(invalid) => {
                self.reply_invalid(invalid, None);
                false
            }
        }
    }

    /// Takes a token of the request budget, or says why not.
    fn take_request(&mut self) -> Result<(), Invalid> {
        if self.requests.try_take(Instant::now()) {
            return Ok(());
        }
        // The metric's label predates `members`, which shares the budget; dashboards keep it.
        self.state.metrics().rate_limited("join_or_history");
        Err(Invalid {
            code: ErrorCode::RateLimited,
            message: "too many join, history, members or search requests; retry shortly".into(),
        })
    }

    /// The `access` of a read (`history`, `members`; see `ops`): the room joined, then a token
    /// of the request budget.
    fn read_access(&mut self, room: &str) -> Result<(), Invalid> {
        self.check_joined(room, true)?;
        self.take_request()
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
            moderates: identity.moderates,
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
    fn check_room(&self, room: &str, must_be_joined: bool) -> Result<(), Invalid> {
        validate_room(room)?;
        self.check_joined(room, must_be_joined)
    }

    /// Checks that this connection has (or has not) joined `room`.
    fn check_joined(&self, room: &str, must_be_joined: bool) -> Result<(), Invalid> {
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
        let join = Join::parse(
            room,
            |room| self.join_access(user, room),
            since.as_deref(),
            epoch,
        );
        let join = match join {
            Ok(join) => join,
            Err(invalid) => return self.reply_invalid(invalid, None),
        };
        let entered = match join.run(&self.state, self.id, user, &self.outbox).await {
            Ok(entered) => entered,
            Err(err) => {
                // The broker's own words stay in the log: clients get no internals.
                conn_event!(self, Level::WARN, room = %join.room(), error = %err, "join failed");
                return self.reply_error(ErrorCode::Unavailable, ROOM_UNAVAILABLE, None);
            }
        };
        let Snapshot {
            members,
            more_members,
            messages,
            recovered,
            epoch,
            changes,
            read,
            unread,
        } = entered.snapshot;
        // Most connections are in one or two rooms: grow one slot at a time.
        self.rooms.reserve_exact(1);
        self.rooms.push(JoinedRoom {
            name: entered.name,
            watermark: entered.watermark,
        });
        let room = join.into_room();
        conn_event!(self, Level::DEBUG, %room, recovered, "joined");
        self.reply(&ServerFrame::Joined {
            room,
            members,
            messages,
            recovered,
            epoch: Some(epoch),
            more_members,
            read,
            unread,
            changes,
        });
    }

    /// The `access` of a `join` (see `ops`): not joined yet, allowed by the connection's
    /// identity, a token of the request budget, and a room to spare.
    fn join_access(&mut self, user: &Arc<str>, room: &str) -> Result<(), Invalid> {
        self.check_joined(room, false)?;
        let config = self.state.config();
        let signed = self.state.verifier().is_some();
        let grants = self.signed.as_ref().and_then(|s| s.grants.as_ref());
        if let Err(why) = access::may_join(signed, &config.private_prefix, user, grants, room) {
            return Err(Invalid {
                code: ErrorCode::Forbidden,
                message: why.into(),
            });
        }
        self.take_request()?;
        let max_rooms = self.state.config().limits.max_rooms_per_conn;
        if self.rooms.len() >= max_rooms {
            return Err(Invalid {
                code: ErrorCode::TooManyRooms,
                message: format!(
                    "a connection may be in at most {max_rooms} rooms; leave one first"
                ),
            });
        }
        Ok(())
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

    async fn send(
        &mut self,
        user: &Arc<str>,
        room: String,
        body: String,
        nonce: Option<String>,
        reply_to: Option<String>,
    ) {
        let post = Publish {
            room,
            from: Sender::User(user),
            body,
            nonce,
            reply_to,
        };
        // The nonce is checked first: an invalid one is never echoed, a valid one always is.
        if let Err(invalid) = post.check_nonce() {
            return self.reply_invalid(invalid, None);
        }
        if let Err(invalid) = post.check_content(|room| self.check_joined(room, true)) {
            return self.reply_invalid(invalid, post.nonce);
        }
        if let Err(invalid) = self.take_message("send") {
            return self.reply_invalid(invalid, post.nonce);
        }
        let nonce = post.nonce.clone();
        // On success the confirmation is our own copy of the message, arriving through the room.
        match post.run(&self.state, Source::WebSocket).await {
            Ok(Published::New(_)) => {}
            // A retry of a send already accepted (e.g. before a reconnect): only the sender
            // gets the original again, as its confirmation.
            Ok(Published::Duplicate(original)) => self.reply(&ServerFrame::Message(original)),
            Ok(Published::NoSuchReply) => self.reply_error(
                ErrorCode::InvalidReply,
                "reply_to is not a message of the room",
                nonce,
            ),
            Err(err) => self.unavailable(
                "publish",
                &err,
                "message not sent: the broker is unavailable, retry",
                nonce,
            ),
        }
    }

    /// Takes a token of the message budget (`send`s, `edit`s and `delete`s), or says why not;
    /// `request` labels the metric.
    fn take_message(&mut self, request: &'static str) -> Result<(), Invalid> {
        if self.messages.try_take(Instant::now()) {
            return Ok(());
        }
        let limits = &self.state.config().limits;
        self.state.metrics().rate_limited(request);
        Err(Invalid {
            code: ErrorCode::RateLimited,
            message: format!(
                "too many messages, edits and deletes: at most {} per second (bursts of {}); retry shortly",
                limits.messages_per_sec, limits.messages_burst
            ),
        })
    }

    async fn typing(&mut self, user: &Arc<str>, room: String) {
        let typing = Typing::parse(room, |room| {
            self.check_joined(room, true)?;
            if self.typing.try_take(Instant::now()) {
                return Ok(());
            }
            self.state.metrics().rate_limited("typing");
            Err(Invalid {
                code: ErrorCode::RateLimited,
                message: "too many typing notifications".into(),
            })
        });
        let typing = match typing {
            Ok(typing) => typing,
            Err(invalid) => return self.reply_invalid(invalid, None),
        };
        if let Err(err) = typing.run(&self.state, user).await {
            // Typing notifications are transient; losing one is harmless.
            conn_event!(self, Level::DEBUG, error = %err, "typing not relayed");
        }
    }

    async fn history(&mut self, room: String, before: Option<String>, limit: Option<u32>) {
        let history = History::parse(
            room,
            |room| self.read_access(room),
            limit,
            before.as_deref(),
        );
        let history = match history {
            Ok(history) => history,
            Err(invalid) => return self.reply_invalid(invalid, None),
        };
        match history.run(&self.state).await {
            Ok(page) => self.reply(&ServerFrame::History {
                room: page.room,
                messages: page.messages,
                has_more: page.has_more,
            }),
            Err(err) => {
                self.unavailable("history", &err, "history is unavailable, retry later", None);
            }
        }
    }

    /// Messages of a joined room holding the words of `q`, newest first: member-only, and
    /// limited like `history` (one budget for joins, history, members and searches).
    async fn search(
        &mut self,
        room: String,
        q: String,
        before: Option<String>,
        limit: Option<u32>,
    ) {
        let search = Search::parse(
            room,
            |room| self.read_access(room),
            q,
            limit,
            before.as_deref(),
        );
        let search = match search {
            Ok(search) => search,
            Err(invalid) => return self.reply_invalid(invalid, None),
        };
        match search.run(&self.state).await {
            Ok(Some(found)) => self.reply(&ServerFrame::Search {
                room: found.room,
                q: found.q,
                messages: found.messages,
                has_more: found.has_more,
            }),
            Ok(None) => self.reply_error(ErrorCode::Unsupported, crate::ops::UNSUPPORTED, None),
            Err(err) => {
                self.unavailable("search", &err, "search is unavailable, retry later", None);
            }
        }
    }

    /// A page of a joined room's members after `after`, in name order (`joined` lists only the
    /// first ones); checked and limited like `history`.
    async fn members(&mut self, room: String, after: Option<String>, limit: Option<u32>) {
        let members = Members::parse(room, |room| self.read_access(room), limit, after);
        let members = match members {
            Ok(members) => members,
            Err(invalid) => return self.reply_invalid(invalid, None),
        };
        match members.run(&self.state).await {
            Ok(page) => self.reply(&ServerFrame::Members {
                room: page.room,
                members: page.members,
                next: page.next,
            }),
            Err(err) => self.unavailable(
                "members",
                &err,
                "members are unavailable, retry later",
                None,
            ),
        }
    }
}
