//! One room of the embedded broker: its bounded history, presence tally, remembered nonces and
//! sinks, behind one lock, and the rules that read them (what a `since` may recover from, when
//! the room holds nothing worth keeping).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use crate::collections::Tally;
use crate::sinks::Sinks;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{Message, MessageId, RoomEvent};

/// A room, shared by the broker's map and the calls and subscriptions using it.
#[derive(Debug, Default)]
pub(super) struct RoomLog {
    pub(super) state: Mutex<RoomState>,
}

/// What a room holds.
#[derive(Debug, Default)]
pub(super) struct RoomState {
    /// Retained messages in id order.
    pub(super) history: VecDeque<Message>,
    /// Id of the latest message ever published.
    pub(super) last_id: Option<MessageId>,
    /// Id of the newest message dropped from the history.
    pub(super) trimmed: Option<MessageId>,
    /// Number of nodes holding each online user.
    pub(super) presence: Tally<String>,
    /// The sink of each live subscription (each removes its own when dropped).
    pub(super) subscribers: Sinks,
    /// Recently accepted nonces, while there are any: most rooms are idle, and an idle room
    /// should not carry two empty tables.
    pub(super) dedup: Option<Box<Dedup>>,
}

/// The nonces a room remembers for idempotent sends.
#[derive(Debug, Default)]
pub(super) struct Dedup {
    /// Ids of recently accepted messages by (sender, nonce).
    pub(super) ids: HashMap<(String, String), MessageId>,
    /// When each entry expires, oldest first.
    pub(super) order: VecDeque<(Instant, (String, String))>,
}

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

    /// The id of the message accepted under `key`, if it is remembered.
    pub(super) fn deduplicated(&self, key: &(String, String)) -> Option<MessageId> {
        self.dedup.as_ref()?.ids.get(key).copied()
    }

    /// Whether the room holds nothing worth keeping.
    pub(super) fn is_idle(&self) -> bool {
        self.history.is_empty()
            && self.presence.is_empty()
            && self.dedup.is_none()
            && self.subscribers.is_empty()
    }

    /// Whether `since` is an id this history knows, so that what follows it is exactly what a
    /// client that saw it missed (see [`Broker::recover`](crate::Broker::recover)): a retained message's, the newest
    /// one trimmed away, or one of the two anchors every history has.
    pub(super) fn knows(&self, since: MessageId) -> bool {
        since == MessageId::MAX
            || (since == MessageId::MIN && self.trimmed.is_none())
            || self.trimmed == Some(since)
            || self.history.binary_search_by_key(&since, |m| m.id).is_ok()
    }

    /// Messages with ids above `after`, oldest first.
    pub(super) fn after(&self, after: Option<MessageId>) -> impl Iterator<Item = &Message> {
        let start = after.map_or(0, |a| self.history.partition_point(|m| m.id <= a));
        self.history.range(start..)
    }
}
