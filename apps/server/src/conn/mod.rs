//! One client connection: its event loop, its output, and how it ends.
//!
//! A single task per connection waits, in one `poll`, for whichever comes first: node shutdown,
//! eviction, room frames in its [`Outbox`], the socket becoming writable, a message from the
//! client, or its one timer. The timer serves the hello deadline, the token's expiry, the
//! heartbeat (ping, idle and stalled-reader checks) and the flush window; there is no timer per
//! write.
//!
//! The timer only wakes an idle connection: every event, a client's message included, is
//! followed by a check of those deadlines against the clock, so a client that keeps its socket
//! readable cannot postpone them (the timer is polled only once the socket has nothing more).
//! At most [`MESSAGES_PER_WAKEUP`] messages are handled before the task yields, and pings and
//! pongs nobody asked for are charged to their own budget, so a flood of cheap frames neither
//! holds a worker thread nor costs the node more than the client's other requests may.
//!
//! Output is batched: replies to the client's requests and room frames are appended to the
//! socket's output buffer, and everything appended is written with one flush per wakeup — at
//! once for replies, or after the operator's flush window (`write_delay`) for room frames, so a
//! busy room's frames share system calls. While the output is backed up (the client is not
//! reading) the connection neither takes more room frames, so its outbox fills and evicts it as
//! a slow consumer, nor reads more requests; output that makes no progress for a whole idle
//! timeout closes it.
//!
//! The requests themselves (`hello`, `join`, …) are in `requests`, each the connection's part
//! around the operation in `ops`; the ways a connection ends, and the close frame of each, in
//! `stop`.

mod clock;
mod requests;
mod stop;

use clock::Clock;
use stop::Stop;

use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use skat_broker::{Broker, MessageId};
use skat_protocol::{ErrorCode, ServerFrame, encode_server};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::Level;

use crate::access::RoomGrants;
use crate::outbox::{Batch, Bounds, ConnId, Eviction, FrameKind, Outbox, RoomFrame};
use crate::quota::{IpSlot, TokenBucket};
use crate::state::AppState;
use crate::ws::{self, Incoming, ReadError, WsStream};

/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Unwritten output above which the connection stops taking room frames and requests.
const HIGH_WATER: usize = 64 * 1024;
/// Client messages handled in a row before the task yields to the others on its thread (as
/// tokio's own budget would, were the bytes of many small frames not read in one call).
const MESSAGES_PER_WAKEUP: u8 = 64;

/// A connection's view of one joined room.
struct JoinedRoom {
    /// The registry's name for the room: room frames carry the same `Arc`.
    name: Arc<str>,
    /// Highest message or change id already delivered (in `joined`); queued messages and
    /// changes up to it are skipped.
    watermark: Option<MessageId>,
}

/// When the queued output must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Nothing queued.
    Idle,
    /// Now.
    Due,
    /// At the end of the flush window.
    At(tokio::time::Instant),
}

/// What woke the connection.
enum Event {
    Stop(Stop),
    Message(Incoming),
    Timer,
}

struct Conn<B: Broker, IO> {
    id: ConnId,
    state: AppState<B>,
    ws: WsStream<IO>,
    /// Set by `hello`.
    user: Option<Arc<str>>,
    /// Joined rooms; a handful, so a scan beats a map.
    rooms: Vec<JoinedRoom>,
    outbox: Arc<Outbox>,
    /// Rate limit of `send`, `edit` and `delete` (one budget).
    messages: TokenBucket,
    /// Rate limit of `react`.
    reactions: TokenBucket,
    /// Rate limit of `read`.
    reads: TokenBucket,
    /// Rate limit of `typing`.
    typing: TokenBucket,
    /// Rate limit of `join` and `history`.
    requests: TokenBucket,
    /// Rate limit of pings and unsolicited pongs.
    control: TokenBucket,
    /// When the client last sent anything, pongs included.
    last_seen: Instant,
    /// Whether a ping of ours is unanswered: the pong that answers it is free.
    awaiting_pong: bool,
    flush: Flush,
    /// Since when queued output has waited on a client that does not read, if it does.
    stalled_since: Option<Instant>,
    /// The client address's connection slot, released when the connection ends.
    _slot: Option<IpSlot>,
    /// The client's address (behind a trusted proxy, the forwarded one), for the logs (`None`
    /// over an in-memory pipe).
    peer: Option<IpAddr>,
    /// Signed mode: what the token vouches for (boxed: every idle connection carries this
    /// field, and anonymous ones never fill it).
    signed: Option<Box<Signed>>,
}

/// What a signed connection's current token vouches for.
struct Signed {
    /// The rooms its `rooms` claim grants, if it has one.
    grants: Option<RoomGrants>,
    /// The rooms its `moderate` claim names, if it has one: there the user edits and deletes
    /// anyone's message.
    moderates: Option<RoomGrants>,
    /// When the identity ends (the token's `exp` plus the leeway), unless a `refresh` moves it.
    expires: tokio::time::Instant,
}

/// Serves one WebSocket until it closes, the client is evicted or the node shuts down.
///
/// Not an `async fn`: the connection is built first, so the task holds it once rather than
/// also keeping the arguments it was built from.
pub(crate) fn serve<B, IO>(
    ws: WsStream<IO>,
    state: AppState<B>,
    slot: Option<IpSlot>,
    peer: Option<IpAddr>,
) -> impl Future<Output = ()> + Send
where
    B: Broker,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let config = state.config();
    let limits = &config.limits;
    let now = Instant::now();
    let conn = Conn {
        id: state.next_conn_id(),
        outbox: Arc::new(Outbox::new(
            Bounds {
                frames: config.outbound_queue,
                bytes: config.outbound_queue_bytes,
            },
            Arc::clone(&state.metrics().queues),
        )),
        messages: TokenBucket::new(limits.messages_per_sec, limits.messages_burst, now),
        typing: TokenBucket::new(limits.typing_per_sec, limits.typing_burst(), now),
        reactions: TokenBucket::new(limits.reactions_per_sec, limits.reactions_burst, now),
        reads: TokenBucket::new(limits.reads_per_sec, limits.reads_burst, now),
        requests: TokenBucket::new(limits.joins_per_sec, limits.requests_burst(), now),
        control: TokenBucket::new(limits.control_frames_per_sec, limits.control_burst(), now),
        state,
        ws,
        user: None,
        rooms: Vec::new(),
        last_seen: now,
        awaiting_pong: false,
        flush: Flush::Idle,
        stalled_since: None,
        _slot: slot,
        peer,
        signed: None,
    };
    conn.serve()
}

/// Logs an event of connection `$conn` inside its span (see [`Conn::span`]), which is made only
/// if the event is enabled: a connection keeps no span and pays for none while it logs nothing.
macro_rules! conn_event {
    ($conn:expr, $level:expr, $($event:tt)+) => {
        if tracing::enabled!($level) {
            $conn.span().in_scope(|| tracing::event!($level, $($event)+));
        }
    };
}
pub(crate) use conn_event;

impl<B, IO> Conn<B, IO>
where
    B: Broker,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// The span of this connection's log lines: its id, the client's address and, once `hello`
    /// has named it, the user. Made for each line logged, in the node's span when there is one.
    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "conn",
            id = self.id,
            peer = self.peer.map(tracing::field::display),
            user = self.user.as_deref(),
        )
    }

    async fn run(&mut self) -> Stop {
        let mut clock = Clock::start(&self.state.config().limits);
        let mut shutdown = pin!(self.state.shutdown_token().cancelled_owned());
        let mut timer = pin!(tokio::time::sleep_until(self.next_deadline(&clock)));
        // Messages handled since the task last waited.
        let mut handled = 0;
        loop {
            let deadline = self.next_deadline(&clock);
            if deadline != timer.deadline() {
                timer.as_mut().reset(deadline);
            }
            let event =
                poll_fn(|cx| self.poll_event(cx, shutdown.as_mut(), timer.as_mut(), &mut handled))
                    .await;
            let text = match self.wakeup(event, &mut clock) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(stop) => return stop,
            };
            // Boxed: requests (and their broker calls) are rare next to idle time; inline,
            // their state would enlarge every idle connection's task.
            if let Err(stop) = Box::pin(self.handle_text(&text)).await {
                return stop;
            }
        }
    }

    /// What follows every wakeup: the deadlines against the clock, whatever woke us (see the
    /// module docs), then the client's message if one came, so that nothing is served past a
    /// deadline. Hands back a text message, the one kind that needs awaiting.
    fn wakeup(&mut self, event: Event, clock: &mut Clock) -> Result<Option<String>, Stop> {
        let now = tokio::time::Instant::now();
        let message = match event {
            Event::Stop(stop) => return Err(stop),
            Event::Message(message) => {
                self.last_seen = now.into_std();
                Some(message)
            }
            Event::Timer => None,
        };
        self.check_clock(clock, now)?;
        match message {
            Some(message) => self.on_message(message, now.into_std()),
            None => Ok(None),
        }
    }

    /// The connection's whole life. An `async` block rather than an `async fn`, which would
    /// keep `self` twice (as argument and as local).
    #[allow(clippy::manual_async_fn)] // See above.
    fn serve(mut self) -> impl Future<Output = ()> + Send {
        async move {
            self.state.metrics().connection_opened();
            conn_event!(self, Level::DEBUG, "connected");
            let stop = self.run().await;
            // Boxed, like requests: the ending's state would otherwise enlarge every live
            // connection.
            Box::pin(self.finish(stop)).await;
        }
    }

    /// Sends the close frame the ending calls for (first: a client's closing handshake must
    /// not wait on the broker), then leaves every room.
    async fn finish(mut self, stop: Stop) {
        let slow = matches!(stop, Stop::Evicted(Eviction::SlowConsumer));
        self.state.metrics().connection_closed(stop.label(), slow);
        if let Some((code, reason)) = stop.close_frame() {
            conn_event!(self, Level::DEBUG, ?stop, reason, "closing");
            ws::encode_close(self.ws.out(), code, reason);
            // A client that stopped reading may never take the close frame; do not wait for it.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close()).await;
        }
        self.leave_all().await;
        conn_event!(self, Level::DEBUG, "disconnected");
    }

    /// Waits for the next thing to do, meanwhile moving room frames to the socket. `handled`
    /// counts the messages returned since the task last waited; at [`MESSAGES_PER_WAKEUP`] it
    /// yields instead of reading another.
    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        shutdown: Pin<&mut WaitForCancellationFutureOwned>,
        mut timer: Pin<&mut Sleep>,
        handled: &mut u8,
    ) -> Poll<Event> {
        if shutdown.poll(cx).is_ready() {
            return Poll::Ready(Event::Stop(Stop::Shutdown));
        }
        loop {
            // Room frames while the output has room for them; eviction in any case. While a
            // flush window is open they wait in the outbox, whose pushes then do not wake us:
            // one wakeup takes them all when it closes (eviction still wakes us at once).
            let budget = if matches!(self.flush, Flush::At(_)) {
                0
            } else {
                HIGH_WATER.saturating_sub(self.ws.pending())
            };
            let took = match self.outbox.poll_take(cx, budget) {
                Poll::Ready(Err(reason)) => return Poll::Ready(Event::Stop(Stop::Evicted(reason))),
                Poll::Ready(Ok(batch)) => {
                    self.frame_batch(batch);
                    true
                }
                Poll::Pending => false,
            };
            if self.flush == Flush::Due {
                let before = self.ws.pending();
                match self.ws.poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.flush = Flush::Idle;
                        self.stalled_since = None;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Event::Stop(Stop::Gone)),
                    Poll::Pending => {
                        if self.stalled_since.is_none() || self.ws.pending() < before {
                            self.stalled_since = Some(Instant::now());
                        }
                    }
                }
            }
            // Until the outbox is registered for a wakeup (Pending), there may be more.
            if !took {
                break;
            }
        }
        if *handled >= MESSAGES_PER_WAKEUP {
            // Room frames were taken and written above; the deadlines are checked with the
            // next event.
            *handled = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // Requests only while the output is not backed up: a client that sends but does not
        // read is held back here, then closed as stalled.
        if self.ws.pending() < HIGH_WATER {
            match self.ws.poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    *handled += 1;
                    return Poll::Ready(Event::Message(message));
                }
                Poll::Ready(Some(Err(ReadError::Frame(err)))) => {
                    return Poll::Ready(Event::Stop(Stop::Violation(err)));
                }
                Poll::Ready(Some(Err(ReadError::Io(err)))) => {
                    conn_event!(self, Level::DEBUG, error = %err, "socket error");
                    return Poll::Ready(Event::Stop(Stop::Gone));
                }
                Poll::Ready(None) => return Poll::Ready(Event::Stop(Stop::Gone)),
                Poll::Pending => {}
            }
        }
        // Room frames taken above may have opened a flush window that ends before the timer.
        if let Flush::At(at) = self.flush
            && at < timer.deadline()
        {
            timer.as_mut().reset(at);
        }
        if timer.poll(cx).is_ready() {
            return Poll::Ready(Event::Timer);
        }
        *handled = 0;
        Poll::Pending
    }

    /// Copies the frames just taken from the outbox into the output, skipping those this
    /// connection must not get, and schedules the flush.
    fn frame_batch(&mut self, batch: Batch) {
        let mut appended = false;
        for frame in batch {
            if self.wants(&frame) {
                self.ws.out().extend_from_slice(&frame.wire);
                appended = true;
            }
        }
        if appended && self.flush == Flush::Idle {
            let delay = self.state.config().write_delay;
            self.flush = if delay.is_zero() {
                Flush::Due
            } else {
                Flush::At(tokio::time::Instant::now() + delay)
            };
        }
    }

    /// Whether a room frame is for this connection: not if it has left the room, already has
    /// the message or change, or is the user the typing or presence event is about. A `read`
    /// is the user's own, queued by `sessions` to its connections only: every one takes it,
    /// joined to the room or not (it may show the room's unread count elsewhere).
    fn wants(&self, frame: &RoomFrame) -> bool {
        let Some(joined) = self
            .rooms
            .iter()
            .find(|r| Arc::ptr_eq(&r.name, &frame.room))
        else {
            // A `read`'s room is its own `Arc`, never the registry's: tested here, off the
            // path of room frames, which find their room.
            return matches!(frame.kind, FrameKind::Read);
        };
        match &frame.kind {
            FrameKind::Message(id) | FrameKind::Change(id) => {
                joined.watermark.is_none_or(|w| *id > w)
            }
            FrameKind::Read => true,
            FrameKind::Typing(user) | FrameKind::Presence(user) => self.user.as_ref() != Some(user),
        }
    }

    /// Handles a control frame or a binary message at once; hands back a text message.
    fn on_message(&mut self, message: Incoming, now: Instant) -> Result<Option<String>, Stop> {
        match message {
            Incoming::Text(text) => return Ok(Some(text)),
            Incoming::Binary(_) => {
                // Never a request: its error reply is charged like a ping's pong.
                self.charge_control(now)?;
                self.reply_error(
                    ErrorCode::BadFrame,
                    "binary frames are not supported; send JSON text",
                    None,
                );
            }
            Incoming::Ping(payload) => {
                self.charge_control(now)?;
                self.send_now(ws::OP_PONG, &payload);
            }
            Incoming::Pong => {
                // The answer to our ping is free; any other pong is the client's own heartbeat.
                if !std::mem::take(&mut self.awaiting_pong) {
                    self.charge_control(now)?;
                }
            }
            Incoming::Close => return Err(Stop::ClientClosed),
        }
        Ok(None)
    }

    /// Takes a control frame's token; without one the connection ends (see `Stop`): a flood
    /// gets no reply to amplify it, and no client needs more.
    fn charge_control(&mut self, now: Instant) -> Result<(), Stop> {
        if self.control.try_take(now) {
            return Ok(());
        }
        self.state.metrics().rate_limited("control");
        Err(Stop::ControlFlood)
    }

    /// Queues a reply to the client's own request; it is written on the next wakeup.
    fn reply(&mut self, frame: &ServerFrame) {
        self.send_now(ws::OP_TEXT, encode_server(frame).as_bytes());
    }

    /// Queues a frame of the connection's own (a reply, a ping, a pong) to be written on this
    /// wakeup, with anything already queued: it never waits for the flush window.
    fn send_now(&mut self, opcode: u8, payload: &[u8]) {
        ws::encode(self.ws.out(), opcode, payload);
        self.flush = Flush::Due;
    }

    fn reply_error(&mut self, code: ErrorCode, message: &str, nonce: Option<String>) {
        conn_event!(self, Level::DEBUG, %code, message, "request refused");
        self.state.metrics().refused(code);
        self.reply(&ServerFrame::error(code, message, nonce));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use skat_broker::MemoryBroker;

    use crate::config::ServerConfig;
    use crate::state::AppState;

    /// Every idle connection is one task holding this future: what it costs is most of a
    /// connection's memory. Growing it by accident (an inline request future, a second timer)
    /// should be a conscious choice.
    #[test]
    fn an_idle_connection_task_stays_small() {
        let state = AppState::new(Arc::new(MemoryBroker::default()), ServerConfig::default());
        let (socket, _peer) = tokio::io::duplex(16);
        let connection = super::serve(
            crate::ws::WsStream::new(socket, &[], 1024),
            state,
            None,
            None,
        );
        let size = std::mem::size_of_val(&connection);
        // 768 bytes with the client's address for the logs (the connection keeps no span).
        assert!(size <= 768, "a connection's task state is {size} bytes");
    }
}
