//! One room of the embedded broker: its bounded log, presence tally, remembered nonces, read
//! markers and sinks, behind one lock, and the rules that read them (what a `since` may recover
//! from, when the room holds nothing worth keeping).
//!
//! The log is one ring of [`Entry`]s, messages and changes in one id sequence (issue 22): a
//! change needs an id in the messages' sequence to be recovered after `since` like them. A
//! message entry is the message in its current state (changes are applied to it in place), and
//! costs what a message did before changes existed: the entry is the message itself, with no box
//! of its own (see the size test).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use crate::collections::Tally;
use crate::sinks::Sinks;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{Change, Message, MessageId, RoomEvent};

/// A room, shared by the broker's map and the calls and subscriptions using it.
#[derive(Debug, Default)]
pub(super) struct RoomLog {
    pub(super) state: Mutex<RoomState>,
}

/// What a room holds.
#[derive(Debug, Default)]
pub(super) struct RoomState {
    /// Retained entries (messages and changes) in id order.
    pub(super) history: VecDeque<Entry>,
    /// Id of the latest entry ever stored.
    pub(super) last_id: Option<MessageId>,
    /// Id of the newest entry dropped from the history.
    pub(super) trimmed: Option<MessageId>,
    /// Every user reacting to each retained message that has reactions, per emoji in the order
    /// they first appeared, earliest user first: the message's own summary shows only the first
    /// few users, and removing one must bring the next into view. Only while some message has
    /// reactions.
    pub(super) reactors: Option<Box<Reactors>>,
    /// Users' read markers, while some user has one; boxed like the tables above, so a room
    /// nobody marked pays 8 bytes for them, not an empty table's 48.
    pub(super) read: Option<Box<Markers>>,
    /// Number of nodes holding each online user.
    pub(super) presence: Tally<String>,
    /// The sink of each live subscription (each removes its own when dropped).
    pub(super) subscribers: Sinks,
    /// Recently accepted nonces, while there are any: most rooms are idle, and an idle room
    /// should not carry two empty tables.
    pub(super) dedup: Option<Box<Dedup>>,
    /// A durable broker's writes in flight and the newest committed id (readers see up to it).
    #[cfg(feature = "sqlite")]
    pub(super) pending: Option<Box<Pending>>,
}

/// A durable room's writes in flight: the newest committed id, and the events waiting for
/// their commit, in id order (kept with the room's state, written by the durable broker).
#[cfg(feature = "sqlite")]
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) committed: Option<MessageId>,
    pub(super) events: VecDeque<(MessageId, RoomEvent)>,
    /// Entries dropped from the ring since the file was last trimmed: the file is trimmed
    /// once they reach the broker's trim step, not on every push (see `memory/durable.rs`).
    pub(super) untrimmed: usize,
    /// Whether the file holds the room (its creation was queued, or it was loaded).
    pub(super) in_file: bool,
    /// A write of the room failed and the room is being put back as the file holds it: its
    /// writes are refused meanwhile.
    pub(super) reloading: bool,
    /// Reloads begun so far: a wait for an id that sees it change knows the id may be lost.
    pub(super) reloads: u64,
    /// Signalled when the committed id moves or a reload begins or ends (what a retry waiting
    /// for its original's commit awaits).
    pub(super) settled: tokio::sync::watch::Sender<()>,
}

/// The users reacting to messages: per message, per emoji (first appeared first), every user.
pub(super) type Reactors = HashMap<MessageId, Vec<(String, Vec<String>)>>;

/// Users' read markers: everything up to the id is read.
pub(super) type Markers = HashMap<String, MessageId>;

/// One entry of a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    /// A message in its current state.
    Message(Message),
    /// A change to an earlier message, kept so a client resuming after `since` learns it; boxed,
    /// so that a message entry stays a message's size.
    Change(Box<Change>),
}

impl Entry {
    /// The entry's id (a change of a kind this crate does not know is never stored).
    pub(super) fn id(&self) -> MessageId {
        match self {
            Self::Message(m) => m.id,
            Self::Change(c) => c.id().unwrap_or(MessageId::MIN),
        }
    }

    /// The message, if it is one.
    pub(super) fn as_message(&self) -> Option<&Message> {
        match self {
            Self::Message(m) => Some(m),
            Self::Change(_) => None,
        }
    }
}

/// The nonces a room remembers for idempotent sends.
#[derive(Debug, Default)]
pub(super) struct Dedup {
    /// Ids of recently accepted messages and changes by their key, with a change's count (a
    /// reaction's resulting count; 0 otherwise): a retry whose original was trimmed away since
    /// is answered with the count it had, as on Redis.
    pub(super) ids: HashMap<DedupKey, (MessageId, u32)>,
    /// When each entry expires, oldest first.
    pub(super) order: VecDeque<(Instant, DedupKey)>,
}

/// A request's dedup key: its kind's nonce space (`ChangeKind::nonce_space`, a send's
/// `SEND_NONCES`), its sender and its nonce.
pub(super) type DedupKey = (&'static str, String, String);

impl RoomState {
    /// Hands a live event to every subscriber, if any.
    pub(super) fn emit(&self, event: RoomEvent) {
        self.subscribers.deliver(event);
    }

    /// Forgets nonces whose window has passed (they expire in insertion order), giving back the
    /// space a burst of sends grew.
    pub(super) fn expire_dedup(&mut self, now: Instant) {
        let Some(dedup) = &mut self.dedup else {
            return;
        };
        let before = dedup.order.len();
        while dedup.order.front().is_some_and(|(until, _)| *until <= now) {
            if let Some((_, key)) = dedup.order.pop_front() {
                dedup.ids.remove(&key);
            }
        }
        if dedup.order.is_empty() {
            self.dedup = None;
        } else if dedup.order.len() < before {
            dedup.order.shrink_when_sparse();
            dedup.ids.shrink_when_sparse();
        }
    }

    /// The id (and count) of the entry accepted under `key`, if it is remembered.
    fn deduplicated(&self, key: &DedupKey) -> Option<(MessageId, u32)> {
        self.dedup.as_ref()?.ids.get(key).copied()
    }

    /// A request's dedup key (its kind's nonce `space`, its sender's `who` and `nonce`; none
    /// without a nonce) and, if it repeats one accepted within the window, the id that one was
    /// stored with (and its count). Expired nonces are forgotten first. Each kind of request has its own key
    /// space, so the id found is always of the request's kind.
    pub(super) fn replay(
        &mut self,
        space: &'static str,
        who: &str,
        nonce: Option<&str>,
        now: Instant,
    ) -> (Option<DedupKey>, Option<(MessageId, u32)>) {
        self.expire_dedup(now);
        let key = nonce.map(|nonce| (space, who.to_owned(), nonce.to_owned()));
        let original = key.as_ref().and_then(|key| self.deduplicated(key));
        (key, original)
    }

    /// How many of the oldest entries readers may see: all, or (on a durable broker) those up
    /// to the committed id.
    pub(super) fn visible(&self) -> usize {
        #[cfg(feature = "sqlite")]
        if let Some(pending) = &self.pending {
            let committed = pending.committed;
            return self.history.partition_point(|e| Some(e.id()) <= committed);
        }
        self.history.len()
    }

    /// Whether the room holds nothing worth keeping.
    pub(super) fn is_idle(&self) -> bool {
        self.history.is_empty()
            && self.presence.is_empty()
            && self.read.is_none()
            && self.dedup.is_none()
            && self.subscribers.is_empty()
    }

    /// Whether `since` is an id this history knows, so that what follows it is exactly what a
    /// client that saw it missed (see [`Broker::recover`](crate::Broker::recover)): a retained
    /// entry's, the newest one trimmed away, or one of the two anchors every history has.
    pub(super) fn knows(&self, since: MessageId) -> bool {
        since == MessageId::MAX
            || (since == MessageId::MIN && self.trimmed.is_none())
            || self.trimmed == Some(since)
            || self.find(since).is_some()
    }

    /// The position of the entry with id `id`, if retained.
    pub(super) fn find(&self, id: MessageId) -> Option<usize> {
        self.history.binary_search_by_key(&id, Entry::id).ok()
    }

    /// The retained message `id` (deleted or not), if it is one.
    pub(super) fn message(&self, id: MessageId) -> Option<&Message> {
        self.history[self.find(id)?].as_message()
    }

    /// The retained, not deleted message `id`, to change it.
    pub(super) fn live_message_mut(&mut self, id: MessageId) -> Option<&mut Message> {
        let i = self.find(id)?;
        match &mut self.history[i] {
            Entry::Message(m) if !m.is_deleted() => Some(m),
            _ => None,
        }
    }

    /// Entries with ids above `after` that readers see (on a durable broker, up to the
    /// committed id), oldest first.
    pub(super) fn after(&self, after: Option<MessageId>) -> impl Iterator<Item = &Entry> {
        let start = after.map_or(0, |a| self.history.partition_point(|e| e.id() <= a));
        self.history.range(start..self.visible().max(start))
    }

    /// Appends `entry` (its id above every other) and drops the oldest entries past `len`,
    /// with what the room keeps about them.
    pub(super) fn push(&mut self, entry: Entry, len: usize) {
        self.last_id = Some(entry.id());
        self.history.push_back(entry);
        while self.history.len() > len {
            let Some(oldest) = self.history.pop_front() else {
                break;
            };
            self.trimmed = Some(oldest.id());
            if let (Entry::Message(m), Some(reactors)) = (&oldest, &mut self.reactors) {
                reactors.remove(&m.id);
                if reactors.is_empty() {
                    self.reactors = None;
                }
            }
        }
    }

    /// Drops the oldest readable entries whose id is older than `cutoff_ms` (retention), with
    /// every later change that targets one of them and what the room keeps about them; returns
    /// the newest id dropped (now the room's `trimmed`), if any. Not the hot path: the ring's
    /// changes are filtered in one pass.
    pub(super) fn expire_before(&mut self, cutoff_ms: u64) -> Option<MessageId> {
        let visible = self.visible();
        let old = self
            .history
            .range(..visible)
            .take_while(|e| e.id().ms < cutoff_ms)
            .count();
        let through = self.history.get(old.checked_sub(1)?)?.id();
        self.history.drain(..old);
        self.trimmed = Some(through);
        self.history.retain(|e| match e {
            Entry::Change(c) => c.target().is_none_or(|t| t > through),
            Entry::Message(_) => true,
        });
        if let Some(reactors) = &mut self.reactors {
            reactors.retain(|id, _| *id > through);
            if reactors.is_empty() {
                self.reactors = None;
            }
        }
        Some(through)
    }

    /// The messages after `marker` (all retained ones without a marker) that are not deleted
    /// and readers see, counted up to `cap`.
    pub(super) fn unread_after(&self, marker: Option<MessageId>, cap: u32) -> u32 {
        let counted = self
            .after(marker)
            .filter_map(Entry::as_message)
            .filter(|m| !m.is_deleted())
            .take(cap as usize)
            .count();
        u32::try_from(counted).unwrap_or(cap)
    }
}
