//! A connection's outbound queue of room frames, and the way it is evicted.
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

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use std::sync::Arc;

use crate::lock;
use crate::rooms::RoomFrame;

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

/// The outbound queue of one connection (see the module docs).
#[derive(Debug)]
pub(crate) struct Outbox {
    capacity: usize,
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
    evicted: Option<Eviction>,
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
    /// An empty queue that evicts its connection when a push finds `capacity` frames waiting.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
    }

    /// Frames waiting.
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).frames.len()
    }

    /// Queues `frame`; a full queue evicts the connection as a slow consumer instead.
    pub(crate) fn push(&self, frame: &Arc<RoomFrame>) {
        let mut state = lock(&self.state);
        if state.evicted.is_some() {
            return;
        }
        if state.frames.len() >= self.capacity {
            state.evicted = Some(Eviction::SlowConsumer);
            // Nobody will write these any more.
            state.frames = Batch::default();
            state.bytes = 0;
        } else {
            state.frames.push(Arc::clone(frame));
            state.bytes += frame.wire.len();
            if !state.wake_on_push {
                return;
            }
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
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
            if state.bytes <= budget {
                state.bytes = 0;
                return Poll::Ready(Ok(std::mem::take(&mut state.frames)));
            }
            let mut batch = Batch::default();
            let mut taken = 0;
            while taken < budget
                && let Some(frame) = state.frames.pop()
            {
                taken += frame.wire.len();
                batch.push(frame);
            }
            state.bytes -= taken;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::FrameKind;
    use std::future::poll_fn;

    fn frame(text: &str) -> Arc<RoomFrame> {
        Arc::new(RoomFrame {
            room: Arc::from("r"),
            kind: FrameKind::Typing(Arc::from("t")),
            wire: crate::ws::text_frame(text).into(),
        })
    }

    #[tokio::test]
    async fn takes_everything_queued_at_once_and_frees_it() {
        let outbox = Outbox::new(8);
        for i in 0..3 {
            outbox.push(&frame(&i.to_string()));
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
        let outbox = Outbox::new(4);
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
        let outbox = Arc::new(Outbox::new(2));
        let waiter = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move {
                // Only watching for eviction, as a connection with a full socket buffer does.
                poll_fn(|cx| outbox.poll_take(cx, 0)).await.map(|_| ())
            })
        };
        tokio::task::yield_now().await;
        for i in 0..3 {
            outbox.push(&frame(&i.to_string()));
        }
        assert_eq!(waiter.await.unwrap(), Err(Eviction::SlowConsumer));
        outbox.evict(Eviction::RoomLost);
        assert_eq!(
            outbox.evicted(),
            Some(Eviction::SlowConsumer),
            "first reason wins"
        );
        assert!(lock(&outbox.state).frames.is_empty());
        assert_eq!(lock(&outbox.state).frames.rest.capacity(), 0);
    }
}
