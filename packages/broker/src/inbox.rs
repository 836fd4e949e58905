//! A subscription's queue of live events: one per room subscription, shared by both backends.
//!
//! Why not a tokio channel: a room subscription must cost next to nothing while the room is idle,
//! and a node may hold thousands of them. A `broadcast` channel allocates (and initializes) all its
//! slots up front (a 4096-slot one is ~600 KiB per room), and even `mpsc` allocates a 32-slot block
//! of the item type on creation (~4 KiB). An [`Inbox`] is a lock, a [`VecDeque`] that holds no
//! buffer while empty and gives back the one a burst grew as soon as it is drained, a waker, a gap
//! marker and a closed flag: about a hundred bytes while idle.
//!
//! Semantics, which the backends' delivery guarantees build on:
//!
//! - **Order.** Items come out in the order they were pushed. A backend pushes under the lock that
//!   orders its events (the memory backend under the room's lock, so queue order is id order).
//! - **Bounded, a gap instead of loss.** At most `capacity` items wait. Pushing onto a full inbox
//!   drops the item and records a *gap* at that point of the queue: the receiver gets the items
//!   queued before it, then [`Received::Lagged`], then what was queued after it (once there was
//!   room again). On `Lagged` the receiver re-reads the messages it missed from the backend's
//!   history; since it does so after the drops, one gap covers every drop until it is reported.
//!   Events that are not messages (presence, typing) are at most once anyway. A backend can also
//!   record a gap itself ([`Inbox::mark_lagged`], e.g. where a reconnection may have lost
//!   events).
//! - **Close.** [`Inbox::close`] (the broker is gone) lets the receiver drain what is queued, then
//!   [`Inbox::recv`] returns [`Received::Closed`] for good. Pushing onto a closed inbox does
//!   nothing.
//!
//! One receiver per inbox: a second waiting receiver would replace the first one's waker.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// A bounded single-receiver queue of live events; see the module docs.
pub(crate) struct Inbox<T> {
    /// Items that may wait before further ones are dropped (at least 1).
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Waiting items, oldest first; no buffer while empty.
    queue: VecDeque<T>,
    /// The receiver's waker, while it waits.
    waker: Option<Waker>,
    /// Items dropped since the receiver last heard of a gap.
    dropped: u64,
    /// Where the pending gap is: the number of queued items before it.
    gap: Option<usize>,
    /// Whether the sending side is gone for good.
    closed: bool,
}

/// What [`Inbox::recv`] returns.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received<T> {
    /// The next item.
    Item(T),
    /// Items were dropped here (this many; 0 when the backend marked the gap itself): catch up
    /// from the history before taking what is queued after the gap.
    Lagged(u64),
    /// The inbox is closed and drained.
    Closed,
}

/// What [`Inbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The item is queued.
    Queued,
    /// The inbox was full: the item was dropped, leaving a gap.
    Lagged,
    /// The inbox is closed: the item was dropped.
    Closed,
}

/// Queues `item` in every inbox of a room, cloning it for all but the last. A full inbox drops it,
/// leaving a gap where its subscriber re-reads what it missed from the backend's history.
pub(crate) fn push_all<T: Clone>(inboxes: &[Arc<Inbox<T>>], item: T) {
    if let Some((last, others)) = inboxes.split_last() {
        for inbox in others {
            inbox.push(item.clone());
        }
        last.push(item);
    }
}

impl<T> Inbox<T> {
    /// An empty inbox holding at most `capacity` items (at least 1); allocates nothing else.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                waker: None,
                dropped: 0,
                gap: None,
                closed: false,
            }),
        }
    }

    /// A poisoned lock means a panic while holding it; every critical section here leaves the
    /// state consistent before anything can panic.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` and wakes the receiver, or drops it and records a gap if full.
    pub(crate) fn push(&self, item: T) -> Pushed {
        let (pushed, waker) = {
            let mut state = self.lock();
            if state.closed {
                return Pushed::Closed;
            }
            let pushed = if state.queue.len() >= self.capacity {
                // A gap already pending covers this drop too: its catch-up runs after it.
                state.gap = state.gap.or(Some(state.queue.len()));
                state.dropped += 1;
                Pushed::Lagged
            } else {
                if state.queue.capacity() == 0 {
                    // Usually the receiver takes it at once: one slot, not the default four.
                    state.queue.reserve_exact(1);
                }
                state.queue.push_back(item);
                Pushed::Queued
            };
            (pushed, state.waker.take())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        pushed
    }

    /// Records a gap after what is queued now (the receiver catches up before taking anything
    /// pushed later), and wakes the receiver.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn mark_lagged(&self) {
        let waker = {
            let mut state = self.lock();
            state.gap = state.gap.or(Some(state.queue.len()));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the inbox: the receiver drains what is queued, then gets [`Received::Closed`].
    pub(crate) fn close(&self) {
        let waker = {
            let mut state = self.lock();
            state.closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Drops the queued items `keep` rejects (e.g. messages a catch-up already covers), giving
    /// back the buffer if that empties the queue. A pending gap stays where it was.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&T) -> bool) {
        let mut state = self.lock();
        let gap = state.gap;
        let (mut index, mut kept_before_gap) = (0, 0);
        state.queue.retain(|item| {
            let kept = keep(item);
            if kept && gap.is_some_and(|gap| index < gap) {
                kept_before_gap += 1;
            }
            index += 1;
            kept
        });
        state.gap = gap.map(|_| kept_before_gap);
        if state.queue.is_empty() {
            state.queue = VecDeque::new();
        }
    }

    /// Polls for the next item, a lag, or the end; see [`Inbox::recv`].
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Received<T>> {
        let mut state = self.lock();
        if state.gap == Some(0) {
            state.gap = None;
            return Poll::Ready(Received::Lagged(std::mem::take(&mut state.dropped)));
        }
        if let Some(item) = state.queue.pop_front() {
            if let Some(gap) = &mut state.gap {
                *gap -= 1;
            }
            if state.queue.is_empty() {
                // Drained: give the buffer back, so that an idle subscription holds none. This
                // costs one small allocation per burst (often per event), far less than encoding
                // the event.
                state.queue = VecDeque::new();
            }
            return Poll::Ready(Received::Item(item));
        }
        if state.closed {
            return Poll::Ready(Received::Closed);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item, or [`Received::Lagged`] where items were dropped, or the end.
    ///
    /// Cancel-safe: an item is taken only by the poll that returns it.
    pub(crate) async fn recv(&self) -> Received<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Items waiting and the queue's allocated capacity, for tests.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let state = self.lock();
        (state.queue.len(), state.queue.capacity())
    }
}

impl<T> std::fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Inbox");
        debug.field("capacity", &self.capacity);
        // Never block (or deadlock) for a debug print.
        if let Ok(state) = self.state.try_lock() {
            debug
                .field("queued", &state.queue.len())
                .field("gap", &state.gap)
                .field("closed", &state.closed);
        }
        debug.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(inbox: &Inbox<T>, waker: &Arc<CountingWaker>) -> Poll<Received<T>> {
        let waker = Waker::from(Arc::clone(waker));
        inbox.poll_recv(&mut Context::from_waker(&waker))
    }

    fn ready<T>(inbox: &Inbox<T>) -> Received<T> {
        match poll(inbox, &Arc::default()) {
            Poll::Ready(received) => received,
            Poll::Pending => panic!("inbox pending"),
        }
    }

    #[test]
    fn items_come_out_in_order() {
        let inbox = Inbox::new(8);
        for i in 0..5 {
            assert_eq!(inbox.push(i), Pushed::Queued);
        }
        for i in 0..5 {
            assert_eq!(ready(&inbox), Received::Item(i));
        }
        assert!(poll(&inbox, &Arc::default()).is_pending());
    }

    #[test]
    fn full_inbox_drops_and_reports_the_gap_where_it_is() {
        let inbox = Inbox::new(3);
        for i in 0..3 {
            assert_eq!(inbox.push(i), Pushed::Queued);
        }
        assert_eq!(inbox.push(3), Pushed::Lagged);
        assert_eq!(inbox.push(4), Pushed::Lagged);
        assert_eq!(inbox.sizes().0, 3, "never more than the capacity");
        assert_eq!(ready(&inbox), Received::Item(0));
        // Room again: queued after the gap.
        assert_eq!(inbox.push(5), Pushed::Queued);
        // Full again: the pending gap covers this drop too.
        assert_eq!(inbox.push(6), Pushed::Lagged);
        for expected in [
            Received::Item(1),
            Received::Item(2),
            Received::Lagged(3),
            Received::Item(5),
        ] {
            assert_eq!(ready(&inbox), expected);
        }
        assert!(poll(&inbox, &Arc::default()).is_pending());
        // A later overflow is a new gap.
        for i in 7..11 {
            inbox.push(i);
        }
        for expected in [
            Received::Item(7),
            Received::Item(8),
            Received::Item(9),
            Received::Lagged(1),
        ] {
            assert_eq!(ready(&inbox), expected);
        }
    }

    #[test]
    fn marked_gap_sits_after_what_was_queued_and_comes_once() {
        let inbox = Inbox::new(4);
        inbox.push('a');
        inbox.mark_lagged();
        inbox.push('b');
        assert_eq!(ready(&inbox), Received::Item('a'));
        assert_eq!(ready(&inbox), Received::Lagged(0));
        assert_eq!(ready(&inbox), Received::Item('b'));
        assert!(poll(&inbox, &Arc::default()).is_pending());
        inbox.mark_lagged();
        assert_eq!(ready(&inbox), Received::Lagged(0));
    }

    #[test]
    fn waiting_receiver_is_woken_by_push_lag_and_close() {
        let inbox = Inbox::new(1);
        let waker = Arc::new(CountingWaker::default());
        assert!(poll(&inbox, &waker).is_pending());
        inbox.push(1);
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        // Not waiting any more: the next push does not wake it again (it was full: lagged).
        assert_eq!(inbox.push(2), Pushed::Lagged);
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&inbox, &waker), Poll::Ready(Received::Item(1)));
        assert_eq!(poll(&inbox, &waker), Poll::Ready(Received::Lagged(1)));

        assert!(poll(&inbox, &waker).is_pending());
        inbox.mark_lagged();
        assert_eq!(waker.0.load(Ordering::SeqCst), 2);
        assert_eq!(poll(&inbox, &waker), Poll::Ready(Received::Lagged(0)));

        assert!(poll(&inbox, &waker).is_pending());
        inbox.close();
        assert_eq!(waker.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn buffer_is_released_once_drained() {
        let inbox = Inbox::new(4096);
        assert_eq!(inbox.sizes(), (0, 0), "a new inbox allocates no buffer");
        for i in 0..1000 {
            inbox.push(i);
        }
        assert!(inbox.sizes().1 >= 1000);
        for i in 0..999 {
            assert_eq!(ready(&inbox), Received::Item(i));
        }
        assert!(inbox.sizes().1 >= 1, "still holding an item");
        assert_eq!(ready(&inbox), Received::Item(999));
        assert_eq!(inbox.sizes(), (0, 0), "drained: buffer given back");
        // A single event in an otherwise idle room leaves nothing behind either.
        inbox.push(1);
        assert_eq!(ready(&inbox), Received::Item(1));
        assert_eq!(inbox.sizes(), (0, 0));
    }

    #[test]
    fn retain_drops_covered_items_keeps_the_gap_and_releases_the_buffer() {
        let inbox = Inbox::new(6);
        for i in 0..7 {
            inbox.push(i);
        }
        inbox.retain(|i| i % 2 == 1);
        for expected in [1, 3, 5] {
            assert_eq!(ready(&inbox), Received::Item(expected));
        }
        assert_eq!(ready(&inbox), Received::Lagged(1));
        for i in 0..6 {
            inbox.push(i);
        }
        inbox.retain(|_| false);
        assert_eq!(inbox.sizes(), (0, 0));
    }

    #[test]
    fn closed_inbox_drains_then_ends_and_takes_nothing_more() {
        let inbox = Inbox::new(4);
        inbox.push(1);
        inbox.close();
        assert_eq!(inbox.push(2), Pushed::Closed);
        assert_eq!(ready(&inbox), Received::Item(1));
        assert_eq!(ready(&inbox), Received::Closed);
        assert_eq!(ready(&inbox), Received::Closed);
    }

    #[tokio::test]
    async fn recv_waits_for_a_push_from_another_task() {
        let inbox = Arc::new(Inbox::new(4));
        let pusher = Arc::clone(&inbox);
        let task = tokio::spawn(async move {
            tokio::task::yield_now().await;
            pusher.push("hello");
        });
        assert_eq!(inbox.recv().await, Received::Item("hello"));
        task.await.unwrap();
    }
}
