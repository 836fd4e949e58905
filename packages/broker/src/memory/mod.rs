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

mod changes;
#[cfg(feature = "sqlite")]
mod durable;
mod retention;
mod room;
#[cfg(feature = "sqlite")]
mod search;
mod subscription;
mod writes;

pub use retention::RETENTION_SWEEP;
use room::{DedupKey, Entry, RoomLog, RoomState};
pub use subscription::MemorySubscription;

use crate::lock;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{
    Broker, ChangeRefusal, Changed, HistoryPage, MembersPage, MessageId, NODES_ROOM, NewChange,
    NewMessage, Published, ReadState, Recovered, Recovery, RoomEvent, RoomSink, RoomSummary,
    RoomsPage, Searched,
};

/// Tuning of a [`MemoryBroker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBrokerConfig {
    /// Entries (messages and changes to them) retained per room (older ones are dropped from
    /// history and recovery).
    pub history_len: usize,
    /// How long a sender's nonce is remembered for idempotent sends.
    pub dedup_window: Duration,
    /// How long messages are kept, if not for good: older ones are dropped (from the file too)
    /// by the task [`MemoryBroker::spawn_retention`] starts, with the changes targeting them.
    pub retention: Option<Duration>,
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
            retention: None,
        }
    }
}

/// How the embedded broker fails: only on a journal (without a data dir it cannot fail, and
/// this type has no values).
#[derive(Debug, Clone, thiserror::Error)]
pub enum MemoryError {
    /// The journal could not store a write: nothing was confirmed, the room was put back as the
    /// file holds it (the server answers `unavailable`; a retry with the same nonce is safe).
    #[cfg(feature = "sqlite")]
    #[error(transparent)]
    Journal(#[from] crate::durable::DurableError),
}

/// What a durable call waits for before it answers.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
enum Queued {
    /// Its writes in flight: its room, the completions, the id they confirm.
    Writes {
        room: String,
        waits: durable::Waits,
        id: Option<MessageId>,
    },
    /// The newest entry its answer is drawn from (a retry's original, or the state a repeated
    /// reaction answers with), not yet committed, and the room's reload count when seen.
    Original {
        room: String,
        id: MessageId,
        reloads: u64,
    },
}

/// Without the journal nothing is ever queued.
#[cfg(not(feature = "sqlite"))]
type Queued = std::convert::Infallible;

/// The embedded, in-process [`Broker`].
#[derive(Debug)]
pub struct MemoryBroker {
    config: MemoryBrokerConfig,
    /// The epoch of every room: rooms live as long as the broker, so one per broker (per
    /// process start, for a node).
    epoch: String,
    rooms: Mutex<HashMap<String, Arc<RoomLog>>>,
    /// The journal, on a durable broker.
    #[cfg(feature = "sqlite")]
    durable: Option<Arc<durable::Durable>>,
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
            #[cfg(feature = "sqlite")]
            durable: None,
        }
    }

    /// A durable broker keeping its rooms in `data_dir` (a journal: see
    /// [`durable`](crate::durable)): every room stored there is loaded now, and every write is
    /// confirmed only once committed.
    ///
    /// # Errors
    ///
    /// The journal's, if the dir cannot be opened or read (locked, corrupt, read-only...).
    #[cfg(feature = "sqlite")]
    pub fn open(
        config: MemoryBrokerConfig,
        data_dir: &std::path::Path,
    ) -> Result<Self, crate::durable::DurableError> {
        Self::open_with(config, data_dir, &crate::durable::JournalConfig::default())
    }

    /// [`MemoryBroker::open`] with the journal's settings (a size cap).
    ///
    /// # Errors
    ///
    /// As for [`MemoryBroker::open`].
    #[cfg(feature = "sqlite")]
    pub fn open_with(
        config: MemoryBrokerConfig,
        data_dir: &std::path::Path,
        journal: &crate::durable::JournalConfig,
    ) -> Result<Self, crate::durable::DurableError> {
        let journal = crate::durable::Journal::open_with(data_dir, journal)?;
        Self::on_journal(config, journal)
    }

    /// [`MemoryBroker::open`] on an opened journal.
    #[cfg(feature = "sqlite")]
    fn on_journal(
        config: MemoryBrokerConfig,
        journal: crate::durable::Journal,
    ) -> Result<Self, crate::durable::DurableError> {
        let mut broker = Self::new(config);
        let (durable, rooms) = durable::Durable::from_journal(
            journal,
            broker.config.history_len,
            broker.config.dedup_window,
        )?;
        broker.rooms = Mutex::new(rooms);
        broker.durable = Some(Arc::new(durable));
        Ok(broker)
    }

    /// What a durable call's confirmation needs of the tuning.
    #[cfg(feature = "sqlite")]
    fn tuning(&self) -> (usize, Duration) {
        (self.config.history_len, self.config.dedup_window)
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

    /// Remembers the nonce `key` of the entry accepted as `id` (a change's with `count`), for
    /// retries within the window.
    fn remember(
        &self,
        state: &mut RoomState,
        key: Option<DedupKey>,
        (id, count): (MessageId, u32),
        now: Instant,
    ) {
        if let Some(key) = key {
            let dedup = state.dedup.get_or_insert_default();
            dedup.ids.insert(key.clone(), (id, count));
            dedup.order.push_back((now + self.config.dedup_window, key));
        }
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
        let (published, queued) = self.publish_locked(&log, new)?;
        #[cfg(feature = "sqlite")]
        if let Some(queued) = queued {
            self.confirm(&log, queued).await?;
        }
        #[cfg(not(feature = "sqlite"))]
        let _: Option<Queued> = queued;
        Ok(published)
    }

    async fn change(&self, new: NewChange) -> Result<Changed, MemoryError> {
        let Some(log) = self.existing(&new.room) else {
            return Ok(Changed::Refused(ChangeRefusal::NoSuchMessage));
        };
        let (changed, queued) = self.change_locked(&log, new)?;
        #[cfg(feature = "sqlite")]
        if let Some(queued) = queued {
            self.confirm(&log, queued).await?;
        }
        #[cfg(not(feature = "sqlite"))]
        let _: Option<Queued> = queued;
        Ok(changed)
    }

    async fn read(&self, room: &str, user: &str, id: MessageId) -> Result<ReadState, MemoryError> {
        let Some(log) = self.existing(room) else {
            return Ok(ReadState::default());
        };
        // The lock in a block of its own: no guard is held across the wait below.
        let (id, unread, moved, queued) = {
            let mut state = lock(&log.state);
            let Some(last) = state.last_id else {
                return Ok(ReadState::default());
            };
            #[cfg(feature = "sqlite")]
            if let Some(durable) = &self.durable {
                durable.writable(room, &state)?;
            }
            let current = state.read.as_ref().and_then(|r| r.get(user)).copied();
            let marker = id.min(last);
            let moved = id != MessageId::MIN && current.is_none_or(|c| marker > c);
            let id = if moved {
                state
                    .read
                    .get_or_insert_default()
                    .insert(user.to_owned(), marker);
                Some(marker)
            } else {
                current
            };
            let unread = state.unread_after(id, skat_protocol::UNREAD_CAP);
            #[cfg(feature = "sqlite")]
            let queued = match (&self.durable, id) {
                (Some(durable), Some(marker)) if moved => {
                    let mut waits = Vec::with_capacity(2);
                    durable.queue_room(room, &self.epoch, &mut state, &mut waits);
                    waits.push(durable.journal.submit(crate::durable::WriteOp::Marker {
                        room: room.to_owned(),
                        user: user.to_owned(),
                        id: marker,
                    }));
                    Some(Queued::Writes {
                        room: room.to_owned(),
                        waits,
                        id: None,
                    })
                }
                _ => None,
            };
            #[cfg(not(feature = "sqlite"))]
            let queued: Option<Queued> = None;
            (id, unread, moved, queued)
        };
        #[cfg(feature = "sqlite")]
        if let Some(queued) = queued {
            self.confirm(&log, queued).await?;
        }
        #[cfg(not(feature = "sqlite"))]
        let _ = queued;
        if moved
            && let Some(id) = id
            && let Some(nodes) = self.existing(NODES_ROOM)
        {
            lock(&nodes.state).emit(RoomEvent::Read {
                room: room.to_owned(),
                user: user.to_owned(),
                id,
                unread,
            });
        }
        Ok(ReadState { id, unread })
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
        let visible = state.visible();
        let end = before.map_or(visible, |b| {
            state.history.partition_point(|e| e.id() < b).min(visible)
        });
        // Newest first, change entries skipped, then put back in order.
        let mut older = state
            .history
            .range(..end)
            .rev()
            .filter_map(Entry::as_message);
        let mut messages: Vec<_> = older.by_ref().take(limit).cloned().collect();
        let has_more = older.next().is_some();
        messages.reverse();
        Ok(HistoryPage { messages, has_more })
    }

    async fn search(
        &self,
        room: &str,
        words: &[String],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Searched, MemoryError> {
        #[cfg(feature = "sqlite")]
        if let Some(durable) = &self.durable {
            let page = self.search_journal(durable, room, words, before, limit);
            return Ok(Searched::Found(page.await?));
        }
        let _ = (room, words, before, limit);
        Ok(Searched::Unsupported)
    }

    async fn recover(
        &self,
        room: &str,
        since: MessageId,
        bounds: Recovery,
    ) -> Result<Option<Recovered>, MemoryError> {
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
        let mut missed = Recovered::default();
        let mut bytes = 0usize;
        for entry in state.after(Some(since)) {
            let size = match entry {
                Entry::Message(m) => crate::message_size(m),
                // A change to a message after `since` is in that message's current state.
                Entry::Change(c) if c.target().is_some_and(|t| t <= since) => crate::change_size(c),
                Entry::Change(_) => continue,
            };
            bytes = bytes.saturating_add(size);
            if missed.messages.len() + missed.changes.len() == bounds.limit
                || bytes > bounds.max_bytes
            {
                return Ok(None);
            }
            match entry {
                Entry::Message(m) => missed.messages.push(m.clone()),
                Entry::Change(c) => missed.changes.push(c.as_ref().clone()),
            }
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

    async fn epoch(&self, room: &str) -> Result<String, MemoryError> {
        #[cfg(feature = "sqlite")]
        if let Some(epoch) = self.durable.as_ref().and_then(|d| d.epoch(room)) {
            return Ok(epoch);
        }
        let _ = room;
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
mod tests;

#[cfg(all(test, feature = "sqlite"))]
mod durable_tests;

#[cfg(all(test, feature = "sqlite"))]
mod bounds_tests;
