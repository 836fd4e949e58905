//! The embedded broker: rooms, history and presence in this process's memory.
//!
//! It is the single-node default, not a test double: it keeps the same guarantees as the Redis
//! backend for the nodes that share it (several in-process servers may share one
//! `Arc<MemoryBroker>`, which is how multi-node logic is tested without Redis).
//!
//! Each room has a bounded history (a ring of the latest messages) and the [`RoomSink`] of each of
//! its subscriptions. Publishing assigns the id, appends to the history and hands the message to
//! every sink under one lock, so sinks see messages in id order, each exactly once, and nothing
//! can fall behind: there is no queue between a publish and its subscribers.
//!
//! Rooms are cheap: nothing is allocated for a room beyond its state and its members, and the
//! tables a burst grew (dedup, presence) are given back once expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod room;
mod subscription;

use room::RoomLog;
pub use subscription::MemorySubscription;

use crate::lock;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{
    Broker, HistoryPage, MembersPage, Message, MessageId, NODES_ROOM, NewMessage, Published,
    Recovery, RoomEvent, RoomSink, RoomSummary, RoomsPage,
};

/// Tuning of a [`MemoryBroker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBrokerConfig {
    /// Messages retained per room (older ones are dropped from history and recovery).
    pub history_len: usize,
    /// How long a sender's nonce is remembered for idempotent sends.
    pub dedup_window: Duration,
}

impl MemoryBrokerConfig {
    /// Messages retained per room by default.
    pub const DEFAULT_HISTORY_LEN: usize = 1000;
}

impl Default for MemoryBrokerConfig {
    fn default() -> Self {
        Self {
            history_len: Self::DEFAULT_HISTORY_LEN,
            dedup_window: crate::DEFAULT_DEDUP_WINDOW,
        }
    }
}

/// The in-memory broker cannot fail; this type has no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {}

/// The embedded, in-process [`Broker`].
#[derive(Debug)]
pub struct MemoryBroker {
    config: MemoryBrokerConfig,
    /// The epoch of every room: rooms live as long as the broker, so one per broker (per
    /// process start, for a node).
    epoch: String,
    rooms: Mutex<HashMap<String, Arc<RoomLog>>>,
}

/// `<unix seconds>.<microseconds>`, like the Redis backend's: a new one each time a broker starts.
fn new_epoch() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", now.as_secs(), now.subsec_micros())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new(MemoryBrokerConfig::default())
    }
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
            epoch: new_epoch(),
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

    /// The room's state if it exists; reads never create a room.
    fn existing(&self, room: &str) -> Option<Arc<RoomLog>> {
        lock(&self.rooms).get(room).cloned()
    }

    /// Frees `room` if it holds nothing any more and nobody else is using it (`log` is ours).
    fn forget_if_idle(&self, room: &str, log: &Arc<RoomLog>) {
        let mut rooms = lock(&self.rooms);
        // The map's reference and ours: no subscription, no call in flight.
        if Arc::strong_count(log) == 2 && lock(&log.state).is_idle() {
            rooms.remove(room);
            rooms.shrink_when_sparse();
        }
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
        if let Some(original) = key.as_ref().and_then(|k| state.deduplicated(k)) {
            // The original as stored, or (if trimmed away since) as sent now with its id.
            let stored = state
                .history
                .binary_search_by_key(&original, |m| m.id)
                .ok()
                .map(|i| state.history[i].clone());
            let message = stored.unwrap_or_else(|| new.stored_as(original));
            return Ok(Published::Duplicate(message));
        }
        let id = MessageId::next_after(state.last_id, now_ms());
        let message = new.stored_as(id);
        state.last_id = Some(id);
        state.history.push_back(message.clone());
        while state.history.len() > self.config.history_len {
            state.trimmed = state.history.pop_front().map(|m| m.id);
        }
        if let Some(key) = key {
            let dedup = state.dedup.get_or_insert_default();
            dedup.ids.insert(key.clone(), id);
            dedup.order.push_back((now + self.config.dedup_window, key));
        }
        // No receivers is fine: nobody subscribed, the history has it.
        state.emit(RoomEvent::Message(message.clone()));
        Ok(Published::New(message))
    }

    async fn subscribe(
        &self,
        room: &str,
        sink: Arc<dyn RoomSink>,
    ) -> Result<MemorySubscription, MemoryError> {
        let log = self.room(room);
        let id = lock(&log.state).subscribers.add(sink);
        Ok(MemorySubscription { log, id })
    }

    async fn history(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, MemoryError> {
        let Some(log) = self.existing(room) else {
            return Ok(HistoryPage::default());
        };
        let state = lock(&log.state);
        let end = before.map_or(state.history.len(), |b| {
            state.history.partition_point(|m| m.id < b)
        });
        let start = end.saturating_sub(limit);
        Ok(HistoryPage {
            messages: state.history.range(start..end).cloned().collect(),
            has_more: start > 0,
        })
    }

    async fn recover(
        &self,
        room: &str,
        since: MessageId,
        bounds: Recovery,
    ) -> Result<Option<Vec<Message>>, MemoryError> {
        let Some(log) = self.existing(room) else {
            // No message was ever published here (as with Redis, whose stream does not exist):
            // `since` cannot be one of this room's ids.
            return Ok(None);
        };
        let state = lock(&log.state);
        // No history at all (as with Redis, whose stream does not exist), trimmed past
        // `since`, or an id this history never had (a lost one's, or forged).
        if state.last_id.is_none()
            || state.trimmed.is_some_and(|trimmed| trimmed > since)
            || !state.knows(since)
        {
            return Ok(None);
        }
        let mut missed = Vec::new();
        let mut bytes = 0usize;
        for message in state.after(Some(since)) {
            bytes = bytes.saturating_add(crate::message_size(message));
            if missed.len() == bounds.limit || bytes > bounds.max_bytes {
                return Ok(None);
            }
            missed.push(message.clone());
        }
        Ok(Some(missed))
    }

    async fn presence_join(&self, room: &str, user: &str) -> Result<(), MemoryError> {
        let log = self.room(room);
        let mut state = lock(&log.state);
        if state.presence.add(user.to_owned()) {
            state.emit(RoomEvent::Presence {
                room: room.to_owned(),
                user: user.to_owned(),
                online: true,
            });
        }
        Ok(())
    }

    async fn presence_leave(&self, room: &str, user: &str) -> Result<(), MemoryError> {
        let Some(log) = self.existing(room) else {
            return Ok(());
        };
        let mut state = lock(&log.state);
        if state.presence.remove(user) {
            state.emit(RoomEvent::Presence {
                room: room.to_owned(),
                user: user.to_owned(),
                online: false,
            });
        }
        // Nonces otherwise expire only on the next send, which an emptied room may never see.
        state.expire_dedup(Instant::now());
        drop(state);
        // A node leaves a room's presence after dropping its subscription: often the last trace.
        self.forget_if_idle(room, &log);
        Ok(())
    }

    async fn members(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, MemoryError> {
        let Some(log) = self.existing(room) else {
            return Ok(MembersPage::default());
        };
        let state = lock(&log.state);
        let mut rest = state.presence.keys_after(after);
        let members = rest.by_ref().take(limit).cloned().collect();
        Ok(MembersPage {
            members,
            has_more: rest.len() > 0,
        })
    }

    async fn epoch(&self, _room: &str) -> Result<String, MemoryError> {
        Ok(self.epoch.clone())
    }

    async fn typing(&self, room: &str, user: &str) -> Result<(), MemoryError> {
        let Some(log) = self.existing(room) else {
            return Ok(());
        };
        lock(&log.state).emit(RoomEvent::Typing {
            room: room.to_owned(),
            user: user.to_owned(),
        });
        Ok(())
    }

    async fn disconnect(&self, user: &str, reason: &str) -> Result<(), MemoryError> {
        if let Some(log) = self.existing(NODES_ROOM) {
            lock(&log.state).emit(RoomEvent::Disconnect {
                user: user.to_owned(),
                reason: reason.to_owned(),
            });
        }
        Ok(())
    }

    async fn rooms(&self, after: Option<&str>, limit: usize) -> Result<RoomsPage, MemoryError> {
        let mut rooms: Vec<RoomSummary> = lock(&self.rooms)
            .iter()
            .filter(|(name, _)| after.is_none_or(|after| name.as_str() > after))
            .filter(|(name, _)| name.as_str() != NODES_ROOM)
            .filter_map(|(name, log)| {
                let state = lock(&log.state);
                (!state.history.is_empty() || !state.presence.is_empty()).then(|| RoomSummary {
                    name: name.clone(),
                    members: state.presence.len(),
                })
            })
            .collect();
        rooms.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let has_more = rooms.len() > limit;
        rooms.truncate(limit);
        Ok(RoomsPage { rooms, has_more })
    }
}

impl Drop for MemoryBroker {
    /// Ends every live subscription: each sink hears [`RoomSink::closed`].
    fn drop(&mut self) {
        for log in lock(&self.rooms).values() {
            lock(&log.state).subscribers.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, listen};

    fn broker() -> MemoryBroker {
        MemoryBroker::new(MemoryBrokerConfig {
            history_len: 20,
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
            let sub = listen(&broker, &room).await.unwrap();
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

    #[tokio::test]
    async fn publish_hands_the_message_to_sinks_before_returning() {
        let broker = broker();
        let mut sub = listen(&broker, "r").await.unwrap();
        // Far more than any queue would hold: nothing is queued, so nothing can be dropped.
        let sent = conformance::publish_n(&broker, "r", 500).await;
        for expected in &sent {
            assert_eq!(sub.try_recv(), Some(RoomEvent::Message(expected.clone())));
        }
        broker.typing("r", "bob").await.unwrap();
        assert!(matches!(sub.try_recv(), Some(RoomEvent::Typing { .. })));
        assert_eq!(sub.try_recv(), None);
    }

    #[tokio::test]
    async fn dropped_subscriptions_leave_the_room() {
        let broker = broker();
        let a = listen(&broker, "r").await.unwrap();
        let mut b = listen(&broker, "r").await.unwrap();
        let log = broker.room("r");
        assert_eq!(lock(&log.state).subscribers.len(), 2);
        drop(a);
        assert_eq!(lock(&log.state).subscribers.len(), 1);
        let sent = conformance::publish_n(&broker, "r", 1).await;
        assert_eq!(b.try_recv(), Some(RoomEvent::Message(sent[0].clone())));
        drop(b);
        assert!(lock(&log.state).subscribers.is_empty());
    }

    #[tokio::test]
    async fn subscriptions_end_when_the_broker_is_dropped() {
        let broker = broker();
        let mut sub = listen(&broker, "r").await.unwrap();
        let sent = conformance::publish_n(&broker, "r", 1).await;
        drop(broker);
        // What was delivered is there, then the end.
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
        {
            let log = broker.room("r");
            let state = lock(&log.state);
            // Each publish expired the previous nonce: at most one is remembered.
            let dedup = state.dedup.as_ref().unwrap();
            assert!(dedup.ids.capacity() < 8, "{}", dedup.ids.capacity());
            assert!(dedup.order.capacity() < 8);
        }
        for i in 0..500 {
            broker.presence_join("r", &format!("u{i}")).await.unwrap();
        }
        for i in 0..500 {
            broker.presence_leave("r", &format!("u{i}")).await.unwrap();
        }
        let log = broker.room("r");
        let state = lock(&log.state);
        // The leaves expired the last nonce.
        assert!(state.dedup.is_none());
        assert_eq!(state.presence.capacity(), 0);
    }

    #[tokio::test]
    async fn presence_spans_nodes_sharing_the_broker() {
        let shared = broker();
        conformance::presence_spans_nodes(&shared, &shared).await;
    }

    #[tokio::test]
    async fn a_room_nobody_is_in_is_freed_but_its_history_stays() {
        let broker = MemoryBroker::new(MemoryBrokerConfig {
            dedup_window: Duration::ZERO,
            ..MemoryBrokerConfig::default()
        });
        for (room, messages) in [("quiet", 0), ("talked", 3)] {
            let sub = listen(&broker, room).await.unwrap();
            broker.presence_join(room, "u").await.unwrap();
            conformance::publish_n(&broker, room, messages).await;
            drop(sub);
            broker.presence_leave(room, "u").await.unwrap();
        }
        assert!(broker.existing("quiet").is_none(), "an empty room is freed");
        let talked = broker.existing("talked").unwrap();
        let state = lock(&talked.state);
        assert_eq!(state.history.len(), 3);
        assert!(state.presence.is_empty() && state.subscribers.is_empty());
        assert!(state.dedup.is_none(), "expired nonces are not kept");
    }
}
