//! The embedded broker on a journal (issue 23, step 2): why a room's writes go through here.
//!
//! - A state change is queued to the journal under the room's lock, so queue order is id order,
//!   and the in-memory state is updated at once, so the broker's checks (author, existence,
//!   nonce) see it.
//! - Nothing is delivered or confirmed before its write committed: the call waits for its
//!   completions, then emits the room's pending events up to the committed id, in id order
//!   (completions come in order, but the waiting tasks may wake in any order, so whoever wakes
//!   first emits for everyone before it).
//! - Readers see entries only up to the room's committed id.
//! - The wait and the confirmation run in a task of their own: a call dropped meanwhile (a
//!   timeout, a disconnect) still advances the committed id and emits, so its write does not
//!   stay invisible until the room's next one.
//! - A failed write answers an error and reloads the room from the file, the truth, so memory
//!   never holds (nor answers "duplicate" for) what the file does not. The journal keeps the
//!   invariant that makes confirming "up to an id" sound: once a write of a room failed, every
//!   later one of the room fails until [`WriteOp::Reloaded`]. The broker refuses the room's
//!   writes from the failure on, queues that marker, awaits it (every earlier write of the room
//!   has then failed), loads the room on a blocking thread (one reload per room at a time) and
//!   puts it back; no event of a failed write is ever emitted.
//! - A retry answered from memory (a duplicate, a repeated reaction) waits until the entry it
//!   answers from is committed, and fails if the room is reloaded first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::room::{Dedup, DedupKey, Entry, Pending, RoomLog, RoomState};
use super::{MemoryError, Queued, now_ms};
use crate::durable::{DurableError, Journal, LoadedEntry, LoadedRoom, WriteOp};
use crate::{MessageId, RoomEvent, lock};

/// A durable broker's journal and what it knows of the file.
#[derive(Debug)]
pub(super) struct Durable {
    pub(super) journal: Journal,
    /// Each room's epoch as stored, for [`Broker::epoch`](crate::Broker::epoch) (whether the
    /// file holds a room is its state's `in_file`, so a send takes no node-wide lock).
    epochs: Mutex<HashMap<String, String>>,
    /// When the file last forgot expired nonces (Unix ms): once per window, so its nonce table
    /// holds about a window, not every nonce ever sent.
    expired_ms: AtomicU64,
    /// Entries a room's ring drops before its file is trimmed to match: one trim (a few
    /// statements) per so many sends rather than per send, so the file holds at most this many
    /// entries past the history length (a load takes the newest `history_len` anyway).
    trim_every: usize,
}

/// The file keeps at most `history_len / TRIM_SLACK_DIVISOR` entries per room past the
/// history length before it is trimmed (one eighth: 125 rows per room at the default length).
const TRIM_SLACK_DIVISOR: usize = 8;

/// What one call waits for.
pub(super) type Waits = Vec<oneshot::Receiver<Result<(), DurableError>>>;

impl Durable {
    /// The journal's rooms, loaded (see [`MemoryBroker::open`](super::MemoryBroker::open)).
    pub(super) fn from_journal(
        journal: Journal,
        history_len: usize,
        window: Duration,
    ) -> Result<(Self, HashMap<String, Arc<RoomLog>>), DurableError> {
        let now = now_ms();
        let loaded = journal.load(history_len, now)?;
        let mut epochs = HashMap::new();
        let mut rooms = HashMap::new();
        for room in loaded.rooms {
            let log = RoomLog::default();
            epochs.insert(room.name.clone(), room.epoch.clone());
            let name = room.name.clone();
            restore(&mut lock(&log.state), room, window, now);
            rooms.insert(name, Arc::new(log));
        }
        let durable = Self {
            journal,
            epochs: Mutex::new(epochs),
            expired_ms: AtomicU64::new(now),
            trim_every: (history_len / TRIM_SLACK_DIVISOR).max(1),
        };
        Ok((durable, rooms))
    }

    /// The room's stored epoch, if it is in the file.
    pub(super) fn epoch(&self, room: &str) -> Option<String> {
        lock(&self.epochs).get(room).cloned()
    }

    /// Queues an entry's writes (the room first if the file lacks it, then the entry, its
    /// nonce and the trim its push caused as one operation) and its event. Call under the
    /// room's lock, after the push.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn queue_entry(
        &self,
        (room, epoch): (&str, &str),
        state: &mut RoomState,
        op: WriteOp,
        (id, count): (MessageId, u32),
        key: Option<&DedupKey>,
        (trimmed_before, window): (Option<MessageId>, Duration),
        event: RoomEvent,
    ) -> Waits {
        let mut waits = Vec::with_capacity(2);
        self.queue_room(room, epoch, state, &mut waits);
        // The entry, its nonce and its trim in one operation: they stand or fall together.
        let mut ops = vec![op];
        if let Some((space, who, nonce)) = key {
            let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            self.expire(window);
            ops.push(WriteOp::Nonce {
                room: room.to_owned(),
                space: (*space).to_owned(),
                who: who.clone(),
                nonce: nonce.clone(),
                id,
                count,
                expires_ms: now_ms().saturating_add(window),
            });
        }
        let pending = state.pending.get_or_insert_default();
        if state.trimmed != trimmed_before
            && let Some(through) = state.trimmed
        {
            pending.untrimmed += 1;
            if pending.untrimmed >= self.trim_every {
                pending.untrimmed = 0;
                ops.push(WriteOp::Trim {
                    room: room.to_owned(),
                    through,
                });
            }
        }
        pending.events.push_back((id, event));
        let op = match ops.len() {
            1 => ops.pop().unwrap_or(WriteOp::All(Vec::new())),
            _ => WriteOp::All(ops),
        };
        waits.push(self.journal.submit(op));
        waits
    }

    /// Queues the retention sweep of `room`'s file through `through`.
    pub(super) fn sweep(
        &self,
        room: &str,
        through: MessageId,
    ) -> oneshot::Receiver<Result<(), DurableError>> {
        self.journal.submit(WriteOp::Sweep {
            room: room.to_owned(),
            through,
        })
    }

    /// Queues the forgetting of expired nonces if a window passed since the last time (nobody
    /// waits for it: a failure only leaves rows a load skips anyway).
    fn expire(&self, window: u64) {
        let now = now_ms();
        let last = self.expired_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= window
            && self
                .expired_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            drop(self.journal.submit(WriteOp::Expire { now_ms: now }));
        }
    }

    /// Queues the room itself if the file lacks it. Call under the room's lock.
    pub(super) fn queue_room(
        &self,
        room: &str,
        epoch: &str,
        state: &mut RoomState,
        waits: &mut Waits,
    ) {
        let pending = state.pending.get_or_insert_default();
        if !pending.in_file {
            pending.in_file = true;
            lock(&self.epochs).insert(room.to_owned(), epoch.to_owned());
            waits.push(self.journal.submit(WriteOp::Room {
                room: room.to_owned(),
                epoch: epoch.to_owned(),
            }));
        }
    }

    /// Refuses a write to a room being reloaded after a failed one (nothing is queued).
    pub(super) fn writable(&self, room: &str, state: &RoomState) -> Result<(), MemoryError> {
        if state.pending.as_ref().is_some_and(|p| p.reloading) {
            return Err(self.refused(room));
        }
        Ok(())
    }

    /// The error of a write refused, or of an answer withdrawn, because the room's earlier
    /// write failed.
    fn refused(&self, room: &str) -> MemoryError {
        MemoryError::Journal(DurableError::Refused {
            path: self.journal.path().to_owned(),
            room: room.to_owned(),
        })
    }

    /// What an answer drawn from entry `id` waits for, if `id` is not committed yet.
    pub(super) fn uncommitted(state: &RoomState, room: &str, id: MessageId) -> Option<Queued> {
        let pending = state.pending.as_ref()?;
        (Some(id) > pending.committed).then(|| Queued::Original {
            room: room.to_owned(),
            id,
            reloads: pending.reloads,
        })
    }

    /// Waits for what a call queued. Its writes are confirmed by a task of their own, which a
    /// dropped call does not cancel.
    pub(super) async fn finish(
        self: &Arc<Self>,
        log: &Arc<RoomLog>,
        queued: Queued,
        tuning: (usize, Duration),
    ) -> Result<(), MemoryError> {
        match queued {
            Queued::Writes { room, waits, id } => {
                let (durable, log) = (Arc::clone(self), Arc::clone(log));
                let confirmed =
                    tokio::spawn(
                        async move { durable.confirm(&room, &log, waits, id, tuning).await },
                    );
                confirmed.await.unwrap_or_else(|_| Err(self.closed()))
            }
            Queued::Original { room, id, reloads } => self.settled(&room, log, id, reloads).await,
        }
    }

    /// The error of a journal gone (or of a task of it that did not finish).
    fn closed(&self) -> MemoryError {
        MemoryError::Journal(DurableError::Closed {
            path: self.journal.path().to_owned(),
        })
    }

    /// Waits until entry `id` is committed (`Ok`), or the room's reload (begun after `reloads`)
    /// may have dropped it (the error).
    async fn settled(
        &self,
        room: &str,
        log: &RoomLog,
        id: MessageId,
        reloads: u64,
    ) -> Result<(), MemoryError> {
        loop {
            let mut changed = {
                let mut state = lock(&log.state);
                let pending = state.pending.get_or_insert_default();
                if pending.reloads != reloads {
                    return Err(self.refused(room));
                }
                if Some(id) <= pending.committed {
                    return Ok(());
                }
                pending.settled.subscribe()
            };
            if changed.changed().await.is_err() {
                return Err(self.closed());
            }
        }
    }

    /// Waits for `waits`; then the room's events up to `id` are emitted. On a failure, the
    /// room is reloaded from the file and the error returned.
    async fn confirm(
        self: &Arc<Self>,
        room: &str,
        log: &RoomLog,
        waits: Waits,
        id: Option<MessageId>,
        tuning: (usize, Duration),
    ) -> Result<(), MemoryError> {
        let mut failed = None;
        for wait in waits {
            let outcome = wait.await.unwrap_or_else(|_| {
                Err(DurableError::Closed {
                    path: self.journal.path().to_owned(),
                })
            });
            if let Err(e) = outcome {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            self.reload(room, log, tuning).await;
            return Err(MemoryError::Journal(e));
        }
        let mut state = lock(&log.state);
        let pending = state.pending.get_or_insert_default();
        if id > pending.committed {
            pending.committed = id;
        }
        let committed = pending.committed;
        let mut ready = Vec::new();
        while let Some((at, _)) = pending.events.front()
            && Some(*at) <= committed
        {
            if let Some((_, event)) = pending.events.pop_front() {
                ready.push(event);
            }
        }
        for event in ready {
            state.emit(event);
        }
        if let Some(pending) = &state.pending {
            pending.settled.send_replace(());
        }
        Ok(())
    }

    /// Puts the room back as the file holds it after a failed write (its uncommitted events
    /// are dropped); if another task is at it, waits for that one.
    pub(super) async fn reload(
        self: &Arc<Self>,
        room: &str,
        log: &RoomLog,
        (history_len, window): (usize, Duration),
    ) {
        let marker = {
            let mut state = lock(&log.state);
            let pending = state.pending.get_or_insert_default();
            if pending.reloading {
                None
            } else {
                pending.reloading = true;
                pending.reloads += 1;
                pending.settled.send_replace(());
                Some(self.journal.submit(WriteOp::Reloaded {
                    room: room.to_owned(),
                }))
            }
        };
        let Some(marker) = marker else {
            return self.reloaded(log).await;
        };
        // Its completion follows every earlier write of the room, all failed since the first
        // failure: the file holds what it will.
        let _ = marker.await;
        let now = now_ms();
        let (durable, name) = (Arc::clone(self), room.to_owned());
        let loaded =
            tokio::task::spawn_blocking(move || durable.journal.load_room(&name, history_len, now))
                .await
                .unwrap_or_else(|_| {
                    Err(DurableError::Closed {
                        path: self.journal.path().to_owned(),
                    })
                });
        let mut state = lock(&log.state);
        match loaded {
            Ok(Some(loaded)) => restore(&mut state, loaded, window, now),
            // Not stored (its creation failed too), or unreadable: memory holds nothing of it
            // then, rather than what the file may lack.
            not => {
                match not {
                    Ok(_) => drop(lock(&self.epochs).remove(room)),
                    Err(e) => tracing::error!(
                        room,
                        error = %e,
                        "could not reload a room after a failed commit"
                    ),
                }
                let in_file = lock(&self.epochs).contains_key(room);
                let mut fresh = RoomState::default();
                std::mem::swap(&mut fresh.presence, &mut state.presence);
                std::mem::swap(&mut fresh.subscribers, &mut state.subscribers);
                std::mem::swap(&mut fresh.pending, &mut state.pending);
                *state = fresh;
                reset(state.pending.get_or_insert_default(), None, in_file);
            }
        }
        let pending = state.pending.get_or_insert_default();
        pending.reloading = false;
        pending.settled.send_replace(());
    }

    /// Waits until the room's reload is over.
    async fn reloaded(&self, log: &RoomLog) {
        loop {
            let mut changed = {
                let mut state = lock(&log.state);
                let pending = state.pending.get_or_insert_default();
                if !pending.reloading {
                    return;
                }
                pending.settled.subscribe()
            };
            if changed.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Sets a room's writes in flight as after a load: none, `committed` the newest id.
fn reset(pending: &mut Pending, committed: Option<MessageId>, in_file: bool) {
    pending.committed = committed;
    pending.events.clear();
    pending.untrimmed = 0;
    pending.in_file = in_file;
}

/// Sets `state`'s stored parts (log, trimmed, reactors, markers, nonces) to `room`'s, as of
/// `now_ms`; presence and subscribers stay.
fn restore(state: &mut RoomState, room: LoadedRoom, window: Duration, now_ms: u64) {
    let history: VecDeque<Entry> = room
        .entries
        .into_iter()
        .map(|entry| match entry {
            LoadedEntry::Message(m) => Entry::Message(m),
            LoadedEntry::Change(c) => Entry::Change(Box::new(c)),
        })
        .collect();
    state.last_id = history.back().map(Entry::id).or(room.trimmed);
    state.history = history;
    state.trimmed = room.trimmed;
    state.reactors =
        (!room.reactors.is_empty()).then(|| Box::new(room.reactors.into_iter().collect()));
    state.read = (!room.markers.is_empty()).then(|| Box::new(room.markers.into_iter().collect()));
    let now = Instant::now();
    let mut dedup = Dedup::default();
    for nonce in room.nonces {
        let Some(space) = space(&nonce.space) else {
            continue;
        };
        let left = Duration::from_millis(nonce.expires_ms.saturating_sub(now_ms)).min(window);
        let key: DedupKey = (space, nonce.who, nonce.nonce);
        dedup.ids.insert(key.clone(), (nonce.id, nonce.count));
        dedup.order.push_back((now + left, key));
    }
    state.dedup = (!dedup.order.is_empty()).then(|| Box::new(dedup));
    let committed = state.last_id;
    reset(state.pending.get_or_insert_default(), committed, true);
}

/// The nonce space named `name`, as the broker's keys hold it.
fn space(name: &str) -> Option<&'static str> {
    [crate::change::SEND_NONCES, "e", "d", "r1", "r0"]
        .into_iter()
        .find(|s| *s == name)
}
