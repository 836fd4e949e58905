//! A connection's outbound queue of room frames ([`RoomFrame`]: what the rooms' fan-out hands
//! every member), and the way it is evicted.
//!
//! Room fan-out pushes shared, already-framed events into each member's [`Outbox`]; the
//! connection task takes everything queued at once on its next wakeup and writes it with one
//! flush. It is a mutex around a `VecDeque` rather than a channel because:
//!
//! - it costs nothing while idle: no pre-allocated block of slots, and the queue's buffer leaves
//!   with each batch the connection takes, so memory grown by a burst is returned once it drains;
//! - the whole backlog moves to the connection in one lock, however many frames queued up;
//! - a full queue *is* the slow-consumer signal: the push that finds it full evicts the member
//!   (and drops what it held) instead of blocking the room, and eviction wakes the connection
//!   through the same waker.
//!
//! Full is counted in frames and in bytes ([`Bounds`]): frames are shared by a room's members,
//! but the slowest member keeps them alive, so a queue of big frames (JSON escaping makes a
//! 4,000-character body up to ~24 KB) must not be allowed a thousand of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use skat_broker::MessageId;

use crate::lock;

/// Identifies a connection within this node: the rooms and the sessions know a connection by
/// its id and its outbox. The node's state mints them, counting from 1.
pub(crate) type ConnId = u64;

/// One room event, encoded and framed once (by the room, see `rooms`), shared by every local
/// member's queue.
#[derive(Debug)]
pub(crate) struct RoomFrame {
    /// The room's name, the same `Arc` as the registry's (`rooms::Joined::name`): connections
    /// match it by pointer.
    pub(crate) room: Arc<str>,
    pub(crate) kind: FrameKind,
    /// The whole WebSocket text frame, header included.
    pub(crate) wire: Box<[u8]>,
}

/// What a connection needs to know about a [`RoomFrame`] without decoding it.
#[derive(Debug)]
pub(crate) enum FrameKind {
    /// A message; connections skip ids they already delivered in `joined`.
    Message(MessageId),
    /// A change to a message (`edited`, `deleted`, `reacted`), by its own id; skipped like
    /// messages.
    Change(MessageId),
    /// The user's read marker moved (`read`): queued by `sessions` to that user's connections
    /// alone, not by a room's fan-out.
    Read,
    /// A typing notification; the typist's own connections skip it.
    Typing(Arc<str>),
    /// A presence change; the user's own connections skip it (they know they are online, and
    /// their `joined` already lists them).
    Presence(Arc<str>),
}

/// Why a connection is evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// Its outbound queue overflowed.
    SlowConsumer,
    /// The broker ended a room subscription it depends on.
    RoomLost,
    /// The application's backend disconnected the user (server API), for this reason (a thin
    /// pointer: the connection's task holds its `Stop`, and every idle connection pays for it).
    Disconnected(Arc<String>),
}

/// How much one queue may hold before its connection counts as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Frames (`--outbound-queue`).
    pub(crate) frames: usize,
    /// Bytes of those frames (`--outbound-queue-bytes`); a single frame above it is still
    /// queued on its own.
    pub(crate) bytes: usize,
}

impl Bounds {
    /// A queue bounded by frames alone (tests and benchmarks).
    pub(crate) fn frames(frames: usize) -> Self {
        Self {
            frames,
            bytes: usize::MAX,
        }
    }
}

/// What every queue of a node reports to `/metrics`, kept as queues change so that a scrape
/// reads two numbers instead of walking the queues. Touched once per batch a connection takes
/// and on rarer events, never per frame pushed: what fan-out queued is the `deliveries`
/// counter (see `rooms`), so the frames waiting are `deliveries - drained`.
#[derive(Debug, Default)]
pub(crate) struct QueueStats {
    /// Frames that left a queue: taken by their connection, or dropped with it.
    drained: AtomicU64,
    /// Queues more than half full, by frames or by bytes.
    half_full: AtomicI64,
}

impl QueueStats {
    /// Frames that left a queue so far.
    pub(crate) fn drained(&self) -> u64 {
        self.drained.load(Ordering::Relaxed)
    }

    /// Queues more than half full now.
    pub(crate) fn half_full(&self) -> i64 {
        self.half_full.load(Ordering::Relaxed)
    }

    fn drain(&self, frames: usize) {
        if frames > 0 {
            self.drained.fetch_add(frames as u64, Ordering::Relaxed);
        }
    }
}

/// The outbound queue of one connection (see the module docs).
#[derive(Debug)]
pub(crate) struct Outbox {
    bounds: Bounds,
    stats: Arc<QueueStats>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    frames: Batch,
    /// Bytes of the queued frames.
    bytes: usize,
    waker: Option<Waker>,
    /// Whether a push should wake the connection: not while its socket is backed up (it only
    /// waits for eviction then).
    wake_on_push: bool,
    /// Whether this queue is counted in [`QueueStats::half_full`].
    half_full: bool,
    evicted: Option<Eviction>,
}

impl State {
    /// Counts the queue in or out of the half-full gauge when it crosses half its bounds: a
    /// comparison per push, an atomic only on a crossing.
    fn update_half_full(&mut self, bounds: Bounds, stats: &QueueStats) {
        let half_full = self.frames.len() > bounds.frames / 2 || self.bytes > bounds.bytes / 2;
        if half_full != self.half_full {
            self.half_full = half_full;
            let change = if half_full { 1 } else { -1 };
            stats.half_full.fetch_add(change, Ordering::Relaxed);
        }
    }

    /// Empties the queue (nobody will write what it held), counting what it drops.
    fn discard(&mut self, bounds: Bounds, stats: &QueueStats) {
        stats.drain(self.frames.len());
        self.frames = Batch::default();
        self.bytes = 0;
        self.update_half_full(bounds, stats);
    }
}

/// Frames in queue order. At chat rates a connection usually takes one frame per wakeup: that
/// one lives in `first`, so the common case allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    first: Option<Arc<RoomFrame>>,
    rest: VecDeque<Arc<RoomFrame>>,
}

impl Batch {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn push(&mut self, frame: Arc<RoomFrame>) {
        if self.first.is_none() {
            self.first = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }

    fn pop(&mut self) -> Option<Arc<RoomFrame>> {
        let first = self.first.take();
        self.first = self.rest.pop_front();
        first
    }
}

impl IntoIterator for Batch {
    type Item = Arc<RoomFrame>;
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<Arc<RoomFrame>>,
        std::collections::vec_deque::IntoIter<Arc<RoomFrame>>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

impl Outbox {
    /// An empty queue that evicts its connection when a push would take it past `bounds`,
    /// reporting to the node's `stats`.
    pub(crate) fn new(bounds: Bounds, stats: Arc<QueueStats>) -> Self {
        Self {
            bounds: Bounds {
                frames: bounds.frames.max(1),
                bytes: bounds.bytes.max(1),
            },
            stats,
            state: Mutex::default(),
        }
    }

    /// Queues `frame` and returns true; a full queue evicts the connection as a slow consumer
    /// instead (and an evicted one ignores it), returning false. Full: `bounds.frames` frames
    /// waiting, or `bounds.bytes` bytes with this frame (unless it is the only one).
    pub(crate) fn push(&self, frame: &Arc<RoomFrame>) -> bool {
        let mut state = lock(&self.state);
        if state.evicted.is_some() {
            return false;
        }
        let size = frame.wire.len();
        let full = state.frames.len() >= self.bounds.frames
            || (!state.frames.is_empty() && state.bytes.saturating_add(size) > self.bounds.bytes);
        let queued = !full;
        if full {
            state.evicted = Some(Eviction::SlowConsumer);
            state.discard(self.bounds, &self.stats);
        } else {
            state.frames.push(Arc::clone(frame));
            state.bytes += size;
            state.update_half_full(self.bounds, &self.stats);
            if !state.wake_on_push {
                return true;
            }
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        queued
    }

    /// Evicts the connection for `reason` (the first reason given wins).
    pub(crate) fn evict(&self, reason: Eviction) {
        let mut state = lock(&self.state);
        state.evicted.get_or_insert(reason);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Takes queued frames, oldest first, up to `budget` bytes (at least one frame); what is
    /// left keeps counting towards eviction. A budget of 0 only watches for eviction. Pending
    /// (with the waker stored) while there is nothing to do.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        budget: usize,
    ) -> Poll<Result<Batch, Eviction>> {
        let mut state = lock(&self.state);
        if let Some(reason) = &state.evicted {
            return Poll::Ready(Err(reason.clone()));
        }
        if budget > 0 && !state.frames.is_empty() {
            let batch = if state.bytes <= budget {
                state.bytes = 0;
                std::mem::take(&mut state.frames)
            } else {
                let mut batch = Batch::default();
                let mut taken = 0;
                while taken < budget
                    && let Some(frame) = state.frames.pop()
                {
                    taken += frame.wire.len();
                    batch.push(frame);
                }
                state.bytes -= taken;
                batch
            };
            self.stats.drain(batch.len());
            state.update_half_full(self.bounds, &self.stats);
            return Poll::Ready(Ok(batch));
        }
        state.wake_on_push = budget > 0;
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    #[cfg(test)]
    pub(crate) fn evicted(&self) -> Option<Eviction> {
        lock(&self.state).evicted.clone()
    }
}

impl Drop for Outbox {
    /// What the connection never took leaves the node's figures with it.
    fn drop(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.discard(self.bounds, &self.stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn frame(text: &str) -> Arc<RoomFrame> {
        Arc::new(RoomFrame {
            room: Arc::from("r"),
            kind: FrameKind::Typing(Arc::from("t")),
            wire: crate::ws::text_frame(text).into(),
        })
    }

    /// A queue of at most `frames` frames, with stats of its own.
    fn outbox(frames: usize) -> Outbox {
        Outbox::new(Bounds::frames(frames), Arc::default())
    }

    #[tokio::test]
    async fn takes_everything_queued_at_once_and_frees_it() {
        let outbox = outbox(8);
        for i in 0..3 {
            assert!(outbox.push(&frame(&i.to_string())));
        }
        let batch = poll_fn(|cx| outbox.poll_take(cx, usize::MAX))
            .await
            .unwrap();
        assert_eq!(batch.len(), 3);
        let texts: Vec<_> = batch.into_iter().map(|f| f.wire[2..].to_vec()).collect();
        assert_eq!(texts, [b"0", b"1", b"2"], "in queue order");
        assert_eq!(
            lock(&outbox.state).frames.rest.capacity(),
            0,
            "the queue's buffer left with the batch"
        );
    }

    #[tokio::test]
    async fn takes_at_most_its_budget_and_the_rest_still_counts() {
        let outbox = outbox(4);
        for i in 0..4 {
            outbox.push(&frame(&"x".repeat(98 + i)));
        }
        let batch = poll_fn(|cx| outbox.poll_take(cx, 250)).await.unwrap();
        let sizes: Vec<_> = batch.into_iter().map(|f| f.wire.len()).collect();
        assert_eq!(
            sizes,
            [100, 101, 102],
            "oldest first, until the budget is spent"
        );
        let batch = poll_fn(|cx| outbox.poll_take(cx, 1)).await.unwrap();
        assert_eq!(batch.len(), 1, "at least one frame");
        for i in 0..5 {
            outbox.push(&frame(&i.to_string()));
        }
        assert_eq!(outbox.evicted(), Some(Eviction::SlowConsumer));
    }

    #[tokio::test]
    async fn overflow_evicts_and_wakes() {
        let outbox = Arc::new(outbox(2));
        let waiter = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move {
                // Only watching for eviction, as a connection with a full socket buffer does.
                poll_fn(|cx| outbox.poll_take(cx, 0)).await.map(|_| ())
            })
        };
        tokio::task::yield_now().await;
        let queued: Vec<_> = (0..3)
            .map(|i| outbox.push(&frame(&i.to_string())))
            .collect();
        assert_eq!(
            queued,
            [true, true, false],
            "the overflowing push is refused"
        );
        assert_eq!(waiter.await.unwrap(), Err(Eviction::SlowConsumer));
        outbox.evict(Eviction::RoomLost);
        assert_eq!(
            outbox.evicted(),
            Some(Eviction::SlowConsumer),
            "first reason wins"
        );
        assert!(lock(&outbox.state).frames.is_empty());
        assert_eq!(lock(&outbox.state).frames.rest.capacity(), 0);
        assert!(
            !outbox.push(&frame("late")),
            "an evicted queue takes nothing"
        );
    }

    #[test]
    fn bytes_bound_the_queue_as_well_as_frames() {
        // 100-byte frames (a 2-byte header and 98 bytes of text) in a queue of 1024 frames
        // but 350 bytes: the fourth would pass the bytes.
        let bounds = Bounds {
            frames: 1024,
            bytes: 350,
        };
        let outbox = Outbox::new(bounds, Arc::default());
        let big = frame(&"x".repeat(98));
        assert_eq!(big.wire.len(), 100);
        for _ in 0..3 {
            assert!(outbox.push(&big));
        }
        assert_eq!(outbox.evicted(), None);
        assert!(!outbox.push(&big));
        assert_eq!(outbox.evicted(), Some(Eviction::SlowConsumer));

        // A single frame above the bytes is still queued: only a backlog evicts.
        let outbox = Outbox::new(
            Bounds {
                frames: 8,
                bytes: 50,
            },
            Arc::default(),
        );
        assert!(outbox.push(&big));
        assert_eq!(outbox.evicted(), None);
        assert!(!outbox.push(&frame("y")));
    }

    #[tokio::test]
    async fn the_node_figures_follow_pushes_takes_evictions_and_drops() {
        let stats = Arc::new(QueueStats::default());
        let bounds = Bounds {
            frames: 4,
            bytes: 1000,
        };
        let a = Outbox::new(bounds, Arc::clone(&stats));
        let b = Outbox::new(bounds, Arc::clone(&stats));
        // Half full by frames: above 2 of 4.
        let small = frame("s");
        assert!(a.push(&small) && a.push(&small));
        assert_eq!(stats.half_full(), 0);
        assert!(a.push(&small));
        assert_eq!(stats.half_full(), 1);
        // Half full by bytes: above 500 of 1000.
        let big = frame(&"x".repeat(598));
        assert!(b.push(&big));
        assert_eq!(stats.half_full(), 2);

        // Taking drains, and a queue below half its bounds leaves the gauge.
        let batch = poll_fn(|cx| a.poll_take(cx, usize::MAX)).await.unwrap();
        assert_eq!((batch.len(), stats.drained()), (3, 3));
        assert_eq!(stats.half_full(), 1);

        // Eviction drops what was queued.
        assert!(!b.push(&big));
        assert_eq!(b.evicted(), Some(Eviction::SlowConsumer));
        assert_eq!((stats.drained(), stats.half_full()), (4, 0));

        // So does a queue dropped with frames in it (its connection ended).
        assert!(a.push(&small) && a.push(&small) && a.push(&small));
        assert_eq!(stats.half_full(), 1);
        drop(a);
        assert_eq!((stats.drained(), stats.half_full()), (7, 0));
    }
}
