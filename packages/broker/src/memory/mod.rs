//! The embedded broker: rooms, history and presence in this process's memory.
//!
//! It is the single-node default, not a test double: it keeps the same guarantees as the Redis
//! backend for the nodes that share it (several in-process servers may share one
//! `Arc<MemoryBroker>`, which is how multi-node logic is tested without Redis).
//!
//! Each room has a bounded history (a ring of the latest messages) and the [`Inbox`] of each of its
//! subscriptions. Publishing assigns the id, appends to the history and pushes to every inbox under
//! one lock, so inbox order is id order. A subscriber that falls more than the inbox's capacity
//! behind finds a gap in its inbox where events were dropped; there it re-reads what it missed
//! from the history, so message delivery stays exactly-once and in order as long as the history
//! still holds the missed messages.
//!
//! Rooms are cheap: nothing is allocated for a room beyond its state, its members and one small
//! inbox per subscription, and buffers a burst grew (inbox, catch-up backlog, dedup table) are
//! given back once drained or expired.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod subscription;

pub use subscription::MemorySubscription;

use crate::inbox::{Inbox, push_all};
use crate::sparse::ShrinkWhenSparse as _;
use crate::{Broker, HistoryPage, Message, MessageId, NewMessage, Published, RoomEvent};

/// Tuning of a [`MemoryBroker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBrokerConfig {
    /// Messages retained per room (older ones are dropped from history and recovery).
    pub history_len: usize,
    /// Events queued per subscription for a subscriber that is behind, before it must catch up
    /// from the history instead. A bound, not an allocation: an idle subscription queues nothing.
    pub channel_capacity: usize,
    /// How long a sender's nonce is remembered for idempotent sends.
    pub dedup_window: Duration,
}

impl Default for MemoryBrokerConfig {
    fn default() -> Self {
        Self {
            history_len: 1000,
            channel_capacity: 4096,
            dedup_window: crate::DEFAULT_DEDUP_WINDOW,
        }
    }
}

/// The in-memory broker cannot fail; this type has no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {}

/// The embedded, in-process [`Broker`].
#[derive(Debug, Default)]
pub struct MemoryBroker {
    config: MemoryBrokerConfig,
    rooms: Mutex<HashMap<String, Arc<RoomLog>>>,
}

#[derive(Debug, Default)]
struct RoomLog {
    state: Mutex<RoomState>,
}

#[derive(Debug, Default)]
struct RoomState {
    /// Retained messages in id order, each with its parsed id.
    history: VecDeque<(MessageId, Message)>,
    /// Id of the latest message ever published.
    last_id: Option<MessageId>,
    /// Id of the newest message dropped from the history.
    trimmed: Option<MessageId>,
    /// Number of nodes holding each online user.
    presence: HashMap<String, usize>,
    /// The inbox of each live subscription (each removes its own when dropped).
    subscribers: Vec<Arc<Inbox<RoomEvent>>>,
    /// Ids of recently accepted messages by (sender, nonce), for idempotent sends.
    dedup: HashMap<(String, String), MessageId>,
    /// When each dedup entry expires, oldest first.
    dedup_order: VecDeque<(Instant, (String, String))>,
}

impl RoomState {
    /// Queues a live event for every subscriber, if any. A full inbox drops it, leaving a gap
    /// where its subscriber catches up from the history.
    fn emit(&self, event: RoomEvent) {
        push_all(&self.subscribers, event);
    }

    /// Forgets nonces whose window has passed (they expire in insertion order), giving back the
    /// space a burst of sends grew.
    fn expire_dedup(&mut self, now: Instant) {
        let before = self.dedup_order.len();
        while self
            .dedup_order
            .front()
            .is_some_and(|(until, _)| *until <= now)
        {
            if let Some((_, key)) = self.dedup_order.pop_front() {
                self.dedup.remove(&key);
            }
        }
        if self.dedup_order.len() < before {
            self.dedup_order.shrink_when_sparse();
            self.dedup.shrink_when_sparse();
        }
    }

    /// Whether the room holds nothing worth keeping.
    fn is_idle(&self) -> bool {
        self.history.is_empty()
            && self.presence.is_empty()
            && self.dedup.is_empty()
            && self.subscribers.is_empty()
    }

    /// Messages with ids above `after`, oldest first.
    fn after(&self, after: Option<MessageId>) -> impl Iterator<Item = &(MessageId, Message)> {
        let start = after.map_or(0, |a| self.history.partition_point(|(id, _)| *id <= a));
        self.history.range(start..)
    }
}

/// A poisoned lock means a panic while holding it; the state is still consistent because every
/// critical section here finishes its writes before anything can panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl MemoryBroker {
    /// A broker with the given tuning.
    pub fn new(config: MemoryBrokerConfig) -> Self {
        Self {
            config: MemoryBrokerConfig {
                history_len: config.history_len.max(1),
                ..config
            },
            rooms: Mutex::default(),
        }
    }

    fn room(&self, room: &str) -> Arc<RoomLog> {
        let mut rooms = lock(&self.rooms);
        if let Some(log) = rooms.get(room) {
            return Arc::clone(log);
        }
        // Rooms that hold nothing (joined and left without a message) would otherwise pile up:
        // sweep them now and then, at an amortized constant cost per new room.
        if rooms.len() >= 1024 && rooms.len().is_power_of_two() {
            rooms.retain(|_, log| Arc::strong_count(log) > 1 || !lock(&log.state).is_idle());
        }
        let log = Arc::new(RoomLog::default());
        rooms.insert(room.to_owned(), Arc::clone(&log));
        log
    }
}

impl Broker for MemoryBroker {
    type Error = MemoryError;
    type Subscription = MemorySubscription;

    async fn publish(&self, new: NewMessage) -> Result<Published, MemoryError> {
        let log = self.room(&new.room);
        let mut state = lock(&log.state);
        let now = Instant::now();
        state.expire_dedup(now);
        let key = new
            .nonce
            .as_ref()
            .map(|nonce| (new.from.clone(), nonce.clone()));
        if let Some(&original) = key.as_ref().and_then(|k| state.dedup.get(k)) {
            // The original as stored, or (if trimmed away since) as sent now with its id.
            let stored = state
                .history
                .binary_search_by_key(&original, |(id, _)| *id)
                .ok()
                .map(|i| state.history[i].1.clone());
            let message = stored.unwrap_or_else(|| Message {
                room: new.room,
                id: original.to_string(),
                from: new.from,
                body: new.body,
                ts: original.ms,
                nonce: new.nonce,
            });
            return Ok(Published::Duplicate(message));
        }
        let id = MessageId::next_after(state.last_id, now_ms());
        let message = Message {
            room: new.room,
            id: id.to_string(),
            from: new.from,
            body: new.body,
            ts: id.ms,
            nonce: new.nonce,
        };
        state.last_id = Some(id);
        state.history.push_back((id, message.clone()));
        while state.history.len() > self.config.history_len {
            state.trimmed = state.history.pop_front().map(|(id, _)| id);
        }
        if let Some(key) = key {
            state.dedup.insert(key.clone(), id);
            state
                .dedup_order
                .push_back((now + self.config.dedup_window, key));
        }
        // No receivers is fine: nobody subscribed, the history has it.
        state.emit(RoomEvent::Message(message.clone()));
        Ok(Published::New(message))
    }

    async fn subscribe(&self, room: &str) -> Result<MemorySubscription, MemoryError> {
        let log = self.room(room);
        let inbox = Arc::new(Inbox::new(self.config.channel_capacity));
        // Register and read the last id under the state lock, so that no publish falls between.
        let last = {
            let mut state = lock(&log.state);
            state.subscribers.push(Arc::clone(&inbox));
            state.last_id
        };
        Ok(MemorySubscription {
            room: room.to_owned(),
            log,
            inbox,
            last,
            backlog: VecDeque::new(),
        })
    }

    async fn history(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, MemoryError> {
        let log = self.room(room);
        let state = lock(&log.state);
        let end = before.map_or(state.history.len(), |b| {
            state.history.partition_point(|(id, _)| *id < b)
        });
        let start = end.saturating_sub(limit);
        Ok(HistoryPage {
            messages: state
                .history
                .range(start..end)
                .map(|(_, m)| m.clone())
                .collect(),
            has_more: start > 0,
        })
    }

    async fn recover(
        &self,
        room: &str,
        since: MessageId,
        limit: usize,
    ) -> Result<Option<Vec<Message>>, MemoryError> {
        let log = self.room(room);
        let state = lock(&log.state);
        if state.trimmed.is_some_and(|trimmed| trimmed > since) {
            return Ok(None);
        }
        let missed: Vec<Message> = state
            .after(Some(since))
            .take(limit.saturating_add(1))
            .map(|(_, m)| m.clone())
            .collect();
        Ok((missed.len() <= limit).then_some(missed))
    }

    async fn presence_join(&self, room: &str, user: &str) -> Result<(), MemoryError> {
        let log = self.room(room);
        let mut state = lock(&log.state);
        let count = state.presence.entry(user.to_owned()).or_default();
        *count += 1;
        if *count == 1 {
            state.emit(RoomEvent::Presence {
                room: room.to_owned(),
                user: user.to_owned(),
                online: true,
            });
        }
        Ok(())
    }

    async fn presence_leave(&self, room: &str, user: &str) -> Result<(), MemoryError> {
        let log = self.room(room);
        let mut state = lock(&log.state);
        let Some(count) = state.presence.get_mut(user) else {
            return Ok(());
        };
        *count -= 1;
        if *count == 0 {
            state.presence.remove(user);
            state.presence.shrink_when_sparse();
            state.emit(RoomEvent::Presence {
                room: room.to_owned(),
                user: user.to_owned(),
                online: false,
            });
        }
        Ok(())
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, MemoryError> {
        let log = self.room(room);
        let state = lock(&log.state);
        let mut members: Vec<String> = state.presence.keys().cloned().collect();
        members.sort_unstable();
        Ok(members)
    }

    async fn typing(&self, room: &str, user: &str) -> Result<(), MemoryError> {
        let log = self.room(room);
        lock(&log.state).emit(RoomEvent::Typing {
            room: room.to_owned(),
            user: user.to_owned(),
        });
        Ok(())
    }
}

impl Drop for MemoryBroker {
    /// Ends every live subscription: their `recv` returns `None` once drained.
    fn drop(&mut self) {
        for log in lock(&self.rooms).values() {
            for inbox in &lock(&log.state).subscribers {
                inbox.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Subscription, conformance};

    fn broker() -> MemoryBroker {
        MemoryBroker::new(MemoryBrokerConfig {
            history_len: 20,
            channel_capacity: 8,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn conformance_suite() {
        conformance::run_all(|| async { broker() }, 20).await;
    }

    #[tokio::test]
    async fn rooms_joined_and_left_without_messages_do_not_pile_up() {
        let broker = broker();
        for i in 0..5000 {
            let room = format!("r{i}");
            let sub = broker.subscribe(&room).await.unwrap();
            broker.presence_join(&room, "u").await.unwrap();
            broker.presence_leave(&room, "u").await.unwrap();
            drop(sub);
        }
        // A room with history is kept.
        conformance::publish_n(&broker, "kept", 1).await;
        let rooms = lock(&broker.rooms).len();
        assert!(rooms < 2048, "{rooms} rooms still held");
        assert_eq!(
            broker
                .history("kept", None, 10)
                .await
                .unwrap()
                .messages
                .len(),
            1
        );
    }

    /// Allocated capacity of the subscription's inbox queue, which must be empty.
    fn queue_capacity(sub: &MemorySubscription) -> usize {
        let (queued, capacity) = sub.inbox.sizes();
        assert_eq!(queued, 0);
        capacity
    }

    #[tokio::test]
    async fn idle_rooms_hold_no_buffers() {
        let broker = broker();
        let mut sub = broker.subscribe("r").await.unwrap();
        assert_eq!(queue_capacity(&sub), 0, "a new subscription queues nothing");
        // A burst (past the inbox's bound, so with a catch-up), drained: every buffer given back.
        let sent = conformance::publish_n(&broker, "r", 15).await;
        for expected in &sent {
            assert_eq!(sub.recv().await, Some(RoomEvent::Message(expected.clone())));
        }
        assert_eq!(queue_capacity(&sub), 0);
        assert_eq!(sub.backlog.capacity(), 0);
        broker.typing("r", "bob").await.unwrap();
        assert!(matches!(sub.recv().await, Some(RoomEvent::Typing { .. })));
        assert_eq!(queue_capacity(&sub), 0);
    }

    #[tokio::test]
    async fn dropped_subscriptions_leave_the_room() {
        let broker = broker();
        let a = broker.subscribe("r").await.unwrap();
        let mut b = broker.subscribe("r").await.unwrap();
        let log = broker.room("r");
        assert_eq!(lock(&log.state).subscribers.len(), 2);
        drop(a);
        assert_eq!(lock(&log.state).subscribers.len(), 1);
        let sent = conformance::publish_n(&broker, "r", 1).await;
        assert_eq!(b.recv().await, Some(RoomEvent::Message(sent[0].clone())));
        drop(b);
        let state = lock(&log.state);
        assert!(state.subscribers.is_empty() && state.subscribers.capacity() == 0);
    }

    #[tokio::test]
    async fn subscriptions_end_when_the_broker_is_dropped() {
        let broker = broker();
        let mut sub = broker.subscribe("r").await.unwrap();
        let sent = conformance::publish_n(&broker, "r", 1).await;
        drop(broker);
        // What was queued is still delivered, then the end.
        assert_eq!(sub.recv().await, Some(RoomEvent::Message(sent[0].clone())));
        assert_eq!(sub.recv().await, None);
    }

    #[tokio::test]
    async fn dedup_and_presence_tables_shrink_back() {
        let broker = MemoryBroker::new(MemoryBrokerConfig {
            dedup_window: Duration::ZERO,
            ..MemoryBrokerConfig::default()
        });
        conformance::publish_n(&broker, "r", 500).await;
        for i in 0..500 {
            broker.presence_join("r", &format!("u{i}")).await.unwrap();
        }
        for i in 0..500 {
            broker.presence_leave("r", &format!("u{i}")).await.unwrap();
        }
        let log = broker.room("r");
        let state = lock(&log.state);
        // Each publish expired the previous nonce: at most one is remembered.
        assert!(state.dedup.capacity() < 8, "{}", state.dedup.capacity());
        assert!(state.dedup_order.capacity() < 8);
        assert_eq!(state.presence.capacity(), 0);
    }

    #[tokio::test]
    async fn presence_spans_nodes_sharing_the_broker() {
        let shared = broker();
        conformance::presence_spans_nodes(&shared, &shared).await;
    }

    #[tokio::test]
    async fn lagging_subscriber_catches_up_from_history() {
        let broker = broker();
        let mut sub = broker.subscribe("r").await.unwrap();
        // 15 messages overflow the 8-event inbox but fit the 20-message history.
        let sent = conformance::publish_n(&broker, "r", 15).await;
        for expected in &sent {
            assert_eq!(sub.recv().await, Some(RoomEvent::Message(expected.clone())));
        }
        // And the inbox resumes without duplicates.
        let next = conformance::publish_n(&broker, "r", 1).await;
        assert_eq!(sub.recv().await, Some(RoomEvent::Message(next[0].clone())));
    }
}
