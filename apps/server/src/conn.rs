//! One client connection: the protocol state machine and its delivery loop.
//!
//! A single task per connection selects over, in priority order: node shutdown, eviction as a slow
//! consumer, room frames from its bounded queue, and frames from the client. Replies to the
//! client's own requests are written directly; room events arrive through the queue, already
//! encoded by the room's fan-out task. Every write also watches shutdown and eviction, so a client
//! that stops reading cannot pin the task.
//!
//! The handler works over any `Stream + Sink` of axum WebSocket messages, so it does not depend on
//! how the socket was obtained.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, close_code};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use skat_broker::{Broker, MessageId, NewMessage, Published};
use skat_protocol::{
    ClientFrame, DEFAULT_HISTORY_LIMIT, ErrorCode, Invalid, PROTOCOL_VERSION, ServerFrame,
    decode_client, encode_server, validate_body, validate_history_limit, validate_name,
    validate_nonce, validate_room,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::limits::TokenBucket;
use crate::rooms::{ConnId, Eviction, Evictor, FrameKind, Member, RoomFrame};

/// Close reason sent to a client evicted for not reading fast enough.
pub(crate) const SLOW_CONSUMER_REASON: &str = "slow consumer: outbound queue full";
/// Close reason sent to every client when the node shuts down (code 1012): reconnect, possibly
/// to another node.
pub(crate) const SERVICE_RESTART_REASON: &str = "service restart";
/// WebSocket close code 1012, "service restart".
const SERVICE_RESTART: u16 = 1012;
/// Close reason when the broker ends a room subscription the connection depends on.
pub(crate) const ROOM_LOST_REASON: &str = "room subscription lost, reconnect";
/// Close reason for a WebSocket message above the configured size limit.
pub(crate) const MESSAGE_TOO_BIG_REASON: &str = "message too big";
/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the connection loop stopped.
enum Stop {
    /// The client closed or the socket failed: nothing more to send.
    Gone,
    /// The node is shutting down.
    Shutdown,
    /// The room registry evicted the client.
    Evicted(Eviction),
    /// The client broke the WebSocket protocol or its size limits.
    Violation(axum::Error),
    /// No `hello` within the hello timeout.
    HelloTimeout,
    /// No frame (not even a pong) within the idle timeout.
    Idle,
    /// Signed mode: `hello` without a valid token.
    Unauthorized,
}

/// A connection's view of one joined room.
struct JoinedRoom {
    /// Highest message id already delivered (in `joined`); queued messages up to it are skipped.
    watermark: Option<MessageId>,
}

struct Conn<B: Broker, S> {
    id: ConnId,
    state: AppState<B>,
    socket: S,
    /// Set by `hello`.
    user: Option<Arc<str>>,
    rooms: HashMap<Arc<str>, JoinedRoom>,
    member: Member,
    shutdown: CancellationToken,
    /// Rate limit of `send`.
    messages: TokenBucket,
    /// Rate limit of `typing`.
    typing: TokenBucket,
    /// Rate limit of `join` and `history`.
    requests: TokenBucket,
    /// When the client last sent anything, pongs included.
    last_seen: Instant,
}

/// Serves one upgraded WebSocket until it closes, the client is evicted or the node shuts down.
pub(crate) async fn serve<B, S>(socket: S, state: AppState<B>)
where
    B: Broker,
    S: Stream<Item = Result<WsMessage, axum::Error>>
        + Sink<WsMessage, Error = axum::Error>
        + Unpin
        + Send,
{
    let id = state
        .inner
        .next_conn_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (queue, mut inbox) = mpsc::channel(state.inner.config.outbound_queue.max(1));
    let member = Member {
        queue,
        evictor: Evictor::default(),
    };
    let shutdown = state.inner.shutdown.clone();
    let limits = &state.inner.config.limits;
    let now = Instant::now();
    let messages = TokenBucket::new(limits.messages_per_sec, limits.messages_burst, now);
    let typing = TokenBucket::new(
        limits.typing_per_sec,
        limits.typing_per_sec.saturating_mul(2),
        now,
    );
    let rooms_burst = u32::try_from(limits.max_rooms_per_conn).unwrap_or(u32::MAX);
    let requests = TokenBucket::new(limits.joins_per_sec, rooms_burst.max(10), now);
    let mut conn = Conn {
        id,
        state,
        socket,
        user: None,
        rooms: HashMap::new(),
        member,
        shutdown,
        messages,
        typing,
        requests,
        last_seen: now,
    };
    tracing::debug!(conn = id, "connected");

    let stop = conn.run(&mut inbox).await;
    conn.leave_all().await;
    let close = match stop {
        Stop::Gone => None,
        Stop::Shutdown => Some((SERVICE_RESTART, SERVICE_RESTART_REASON)),
        Stop::HelloTimeout => Some((close_code::POLICY, "hello timeout")),
        Stop::Idle => Some((close_code::AWAY, "idle timeout")),
        Stop::Unauthorized => Some((close_code::POLICY, "unauthorized")),
        Stop::Evicted(Eviction::SlowConsumer) => Some((close_code::POLICY, SLOW_CONSUMER_REASON)),
        Stop::Evicted(Eviction::RoomLost) => Some((close_code::ERROR, ROOM_LOST_REASON)),
        Stop::Violation(err) => {
            tracing::debug!(conn = id, error = %err, "websocket error");
            // tungstenite reports size-limit breaches as "Space limit exceeded: Message too long".
            let too_big = err.to_string().contains("too long");
            Some(if too_big {
                (close_code::SIZE, MESSAGE_TOO_BIG_REASON)
            } else {
                (close_code::PROTOCOL, "protocol error")
            })
        }
    };
    if let Some((code, reason)) = close {
        tracing::debug!(conn = id, reason, "closing");
        let frame = WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        // A client that stopped reading may never take the close frame; do not wait for it.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.socket.send(frame)).await;
    }
    tracing::debug!(conn = id, "disconnected");
}

impl<B, S> Conn<B, S>
where
    B: Broker,
    S: Stream<Item = Result<WsMessage, axum::Error>>
        + Sink<WsMessage, Error = axum::Error>
        + Unpin
        + Send,
{
    async fn run(&mut self, inbox: &mut mpsc::Receiver<Arc<RoomFrame>>) -> Stop {
        let limits = self.state.inner.config.limits.clone();
        let hello_deadline = tokio::time::Instant::now() + limits.hello_timeout;
        // Pings keep live clients (and proxies) from looking idle; a client that answers
        // nothing for the whole idle timeout is gone.
        let mut heartbeat =
            tokio::time::interval((limits.idle_timeout / 3).max(Duration::from_millis(10)));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.reset();
        loop {
            let result = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => Err(Stop::Shutdown),
                eviction = self.member.evictor.evicted() => Err(Stop::Evicted(eviction)),
                () = tokio::time::sleep_until(hello_deadline), if self.user.is_none() => Err(Stop::HelloTimeout),
                _ = heartbeat.tick() => {
                    if self.last_seen.elapsed() >= limits.idle_timeout {
                        Err(Stop::Idle)
                    } else {
                        self.write(WsMessage::Ping(Default::default())).await
                    }
                }
                Some(frame) = inbox.recv() => self.forward(&frame).await,
                incoming = self.socket.next() => {
                    self.last_seen = Instant::now();
                    match incoming {
                        // Boxed: requests (and their broker calls) are rare next to idle time;
                        // inline, their state would enlarge every idle connection's task.
                        Some(Ok(WsMessage::Text(text))) => Box::pin(self.handle_text(text.as_str())).await,
                        Some(Ok(WsMessage::Binary(_))) => {
                            self.reply_error(ErrorCode::BadFrame, "binary frames are not supported; send JSON text", None).await
                        }
                        // axum answers pings itself.
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Ok(()),
                        Some(Ok(WsMessage::Close(_))) | None => Err(Stop::Gone),
                        Some(Err(err)) => Err(Stop::Violation(err)),
                    }
                }
            };
            if let Err(stop) = result {
                return stop;
            }
        }
    }

    /// Writes a frame, giving up if the node shuts down or the client is evicted meanwhile, or
    /// if the client takes nothing for a whole idle timeout (it stopped reading).
    async fn write(&mut self, message: WsMessage) -> Result<(), Stop> {
        let idle = self.state.inner.config.limits.idle_timeout;
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Err(Stop::Shutdown),
            eviction = self.member.evictor.evicted() => Err(Stop::Evicted(eviction)),
            () = tokio::time::sleep(idle) => Err(Stop::Idle),
            result = self.socket.send(message) => result.map_err(|_| Stop::Gone),
        }
    }

    /// Takes a `join`/`history` token, answering `rate_limited` if there is none.
    async fn request_allowed(&mut self) -> Result<bool, Stop> {
        if self.requests.try_take(Instant::now()) {
            return Ok(true);
        }
        self.reply_error(
            ErrorCode::RateLimited,
            "too many join or history requests; retry shortly",
            None,
        )
        .await?;
        Ok(false)
    }

    async fn reply(&mut self, frame: &ServerFrame) -> Result<(), Stop> {
        self.write(WsMessage::Text(encode_server(frame).into()))
            .await
    }

    async fn reply_error(
        &mut self,
        code: ErrorCode,
        message: &str,
        nonce: Option<String>,
    ) -> Result<(), Stop> {
        tracing::debug!(conn = self.id, %code, message, "request refused");
        self.reply(&ServerFrame::error(code, message, nonce)).await
    }

    async fn reply_invalid(&mut self, invalid: Invalid, nonce: Option<String>) -> Result<(), Stop> {
        self.reply_error(invalid.code, &invalid.message, nonce)
            .await
    }

    /// Delivers a room frame unless this connection has left the room, already has the message,
    /// or is the user the typing or presence event is about.
    async fn forward(&mut self, frame: &RoomFrame) -> Result<(), Stop> {
        let Some(joined) = self.rooms.get(&frame.room) else {
            return Ok(());
        };
        match &frame.kind {
            FrameKind::Message(id) if joined.watermark.is_some_and(|w| *id <= w) => return Ok(()),
            FrameKind::Typing(user) | FrameKind::Presence(user)
                if self.user.as_ref() == Some(user) =>
            {
                return Ok(());
            }
            _ => {}
        }
        self.write(WsMessage::Text(frame.text.clone())).await
    }

    async fn handle_text(&mut self, text: &str) -> Result<(), Stop> {
        let frame = match decode_client(text) {
            Ok(frame) => frame,
            Err(err) => return self.reply_error(err.code, &err.message, err.nonce).await,
        };
        let Some(user) = self.user.clone() else {
            return match frame {
                ClientFrame::Hello { name, token } => self.hello(name, token).await,
                ClientFrame::Send { nonce, .. } => {
                    let nonce = nonce.filter(|n| validate_nonce(n).is_ok());
                    self.reply_error(ErrorCode::HelloRequired, "send hello first", nonce)
                        .await
                }
                _ => {
                    self.reply_error(ErrorCode::HelloRequired, "send hello first", None)
                        .await
                }
            };
        };
        match frame {
            ClientFrame::Hello { .. } => {
                self.reply_error(
                    ErrorCode::AlreadyHello,
                    "this connection is already identified",
                    None,
                )
                .await
            }
            ClientFrame::Join { room, since } => self.join(&user, room, since).await,
            ClientFrame::Leave { room } => self.leave(&user, room).await,
            ClientFrame::Send { room, body, nonce } => self.send(&user, room, body, nonce).await,
            ClientFrame::Typing { room } => self.typing(&user, room).await,
            ClientFrame::History {
                room,
                before,
                limit,
            } => self.history(room, before, limit).await,
        }
    }

    async fn hello(&mut self, name: String, token: Option<String>) -> Result<(), Stop> {
        if let Err(invalid) = validate_name(&name) {
            return self.reply_invalid(invalid, None).await;
        }
        // Signed mode: the name must be vouched for; anonymous mode ignores any token.
        if let Some(secret) = &self.state.inner.config.jwt_secret
            && let Err(err) = crate::auth::verify_token(secret, &name, token.as_deref())
        {
            tracing::info!(conn = self.id, user = %name, error = %err, "hello refused");
            self.reply_error(ErrorCode::Unauthorized, &err.to_string(), None)
                .await?;
            return Err(Stop::Unauthorized);
        }
        let node = self.state.config().node_id.clone();
        tracing::debug!(conn = self.id, user = %name, "hello");
        self.user = Some(Arc::from(name.as_str()));
        self.reply(&ServerFrame::Welcome {
            user: name,
            node,
            protocol: PROTOCOL_VERSION,
        })
        .await
    }

    /// Checks a room name and that this connection has (or has not) joined it.
    fn check_room(&self, room: &str, must_be_joined: bool) -> Result<(), Invalid> {
        validate_room(room)?;
        match (self.rooms.contains_key(room), must_be_joined) {
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

    async fn join(
        &mut self,
        user: &Arc<str>,
        room: String,
        since: Option<String>,
    ) -> Result<(), Stop> {
        if let Err(invalid) = self.check_room(&room, false) {
            return self.reply_invalid(invalid, None).await;
        }
        if !self.request_allowed().await? {
            return Ok(());
        }
        let max_rooms = self.state.inner.config.limits.max_rooms_per_conn;
        if self.rooms.len() >= max_rooms {
            let message =
                format!("a connection may be in at most {max_rooms} rooms; leave one first");
            return self
                .reply_error(ErrorCode::TooManyRooms, &message, None)
                .await;
        }
        let since = match since.as_deref().map(str::parse::<MessageId>).transpose() {
            Ok(since) => since,
            Err(err) => {
                return self
                    .reply_error(ErrorCode::InvalidId, &err.to_string(), None)
                    .await;
            }
        };
        let rooms = &self.state.inner.rooms;
        // From here on the room's events queue up in our inbox; they are filtered against the
        // page below once it is known, so nothing falls between history and live delivery.
        let joined = match rooms.join(&room, self.id, user, self.member.clone()).await {
            Ok(joined) => joined,
            Err(err) => {
                return self
                    .reply_error(ErrorCode::Unavailable, &err.to_string(), None)
                    .await;
            }
        };
        match room_snapshot(&self.state, &room, user, joined.first_of_user, since).await {
            Ok((members, messages, recovered)) => {
                let watermark = messages
                    .last()
                    .and_then(|m| m.id.parse().ok())
                    .or(if recovered { since } else { None });
                self.rooms
                    .insert(Arc::from(room.as_str()), JoinedRoom { watermark });
                tracing::debug!(conn = self.id, %room, recovered, "joined");
                self.reply(&ServerFrame::Joined {
                    room,
                    members,
                    messages,
                    recovered,
                })
                .await
            }
            Err(err) => {
                tracing::warn!(conn = self.id, %room, error = %err, "join failed");
                if rooms.leave(&room, self.id, user) && joined.first_of_user {
                    // Best effort: the presence entry may or may not have been recorded.
                    let _ = self.state.inner.broker.presence_leave(&room, user).await;
                }
                self.reply_error(
                    ErrorCode::Unavailable,
                    "the room is unavailable, retry later",
                    None,
                )
                .await
            }
        }
    }

    async fn leave(&mut self, user: &Arc<str>, room: String) -> Result<(), Stop> {
        if let Err(invalid) = self.check_room(&room, true) {
            return self.reply_invalid(invalid, None).await;
        }
        self.rooms.remove(room.as_str());
        leave_room(&self.state, self.id, user, &room).await;
        self.reply(&ServerFrame::Left { room }).await
    }

    async fn leave_all(&mut self) {
        let Some(user) = self.user.clone() else {
            return;
        };
        for (room, _) in std::mem::take(&mut self.rooms) {
            leave_room(&self.state, self.id, &user, &room).await;
        }
    }

    async fn send(
        &mut self,
        user: &Arc<str>,
        room: String,
        body: String,
        nonce: Option<String>,
    ) -> Result<(), Stop> {
        // The nonce is checked first: an invalid one is never echoed, a valid one always is.
        if let Some(Err(invalid)) = nonce.as_deref().map(validate_nonce) {
            return self.reply_invalid(invalid, None).await;
        }
        let checked = self
            .check_room(&room, true)
            .and_then(|()| validate_body(&body));
        if let Err(invalid) = checked {
            return self.reply_invalid(invalid, nonce).await;
        }
        if !self.messages.try_take(Instant::now()) {
            let limits = &self.state.inner.config.limits;
            let message = format!(
                "too many messages: at most {} per second (bursts of {}); retry shortly",
                limits.messages_per_sec, limits.messages_burst
            );
            return self
                .reply_error(ErrorCode::RateLimited, &message, nonce)
                .await;
        }
        let new = NewMessage {
            room,
            from: user.to_string(),
            body,
            nonce: nonce.clone(),
        };
        // On success the confirmation is our own copy of the message, arriving through the room.
        match self.state.inner.broker.publish(new).await {
            Ok(Published::New(_)) => Ok(()),
            // A retry of a send already accepted (e.g. before a reconnect): only the sender
            // gets the original again, as its confirmation.
            Ok(Published::Duplicate(original)) => self.reply(&ServerFrame::Message(original)).await,
            Err(err) => {
                tracing::warn!(conn = self.id, error = %err, "publish failed");
                self.reply_error(
                    ErrorCode::Unavailable,
                    "message not sent: the broker is unavailable, retry",
                    nonce,
                )
                .await
            }
        }
    }

    async fn typing(&mut self, user: &Arc<str>, room: String) -> Result<(), Stop> {
        if let Err(invalid) = self.check_room(&room, true) {
            return self.reply_invalid(invalid, None).await;
        }
        if !self.typing.try_take(Instant::now()) {
            return self
                .reply_error(
                    ErrorCode::RateLimited,
                    "too many typing notifications",
                    None,
                )
                .await;
        }
        if let Err(err) = self.state.inner.broker.typing(&room, user).await {
            // Typing notifications are transient; losing one is harmless.
            tracing::debug!(conn = self.id, error = %err, "typing not relayed");
        }
        Ok(())
    }

    async fn history(
        &mut self,
        room: String,
        before: Option<String>,
        limit: Option<u32>,
    ) -> Result<(), Stop> {
        if let Err(invalid) = self.check_room(&room, true) {
            return self.reply_invalid(invalid, None).await;
        }
        if !self.request_allowed().await? {
            return Ok(());
        }
        let limit = match validate_history_limit(limit) {
            Ok(limit) => limit,
            Err(invalid) => return self.reply_invalid(invalid, None).await,
        };
        let before = match before.as_deref().map(str::parse::<MessageId>).transpose() {
            Ok(before) => before,
            Err(err) => {
                return self
                    .reply_error(ErrorCode::InvalidId, &err.to_string(), None)
                    .await;
            }
        };
        match self
            .state
            .inner
            .broker
            .history(&room, before, limit as usize)
            .await
        {
            Ok(page) => {
                self.reply(&ServerFrame::History {
                    room,
                    messages: page.messages,
                    has_more: page.has_more,
                })
                .await
            }
            Err(err) => {
                tracing::warn!(conn = self.id, error = %err, "history failed");
                self.reply_error(
                    ErrorCode::Unavailable,
                    "history is unavailable, retry later",
                    None,
                )
                .await
            }
        }
    }
}

/// Records presence and reads the members and the page a `joined` frame carries.
async fn room_snapshot<B: Broker>(
    state: &AppState<B>,
    room: &str,
    user: &str,
    first_of_user: bool,
    since: Option<MessageId>,
) -> Result<(Vec<String>, Vec<skat_protocol::Message>, bool), B::Error> {
    let broker = &state.inner.broker;
    if first_of_user {
        broker.presence_join(room, user).await?;
    }
    let members = broker.members(room).await?;
    if let Some(since) = since
        && let Some(missed) = broker
            .recover(room, since, state.config().recovery_limit)
            .await?
    {
        return Ok((members, missed, true));
    }
    let page = broker
        .history(room, None, DEFAULT_HISTORY_LIMIT as usize)
        .await?;
    Ok((members, page.messages, false))
}

/// Unregisters from a room and withdraws presence if this was the user's last connection.
async fn leave_room<B: Broker>(state: &AppState<B>, conn: ConnId, user: &Arc<str>, room: &str) {
    if state.inner.rooms.leave(room, conn, user)
        && let Err(err) = state.inner.broker.presence_leave(room, user).await
    {
        tracing::warn!(%room, %user, error = %err, "presence_leave failed");
    }
}
