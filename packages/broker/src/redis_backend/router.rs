//! The node's live-event side: every room with local subscriptions, by channel, and the
//! routing of each event to its room's sinks.
//!
//! Every room with a local subscription has a [`Route`] (see `route`). Events come from the
//! shards' drivers (see `shard`: one per shard, each with its own connection), which hand each
//! one straight to its route's sinks: no task and no queue per room, and one lock and no
//! allocation per message. A new route holds its events until it has learned where its stream
//! ends and who its members are (see `catch_up`); subscribing its channel is the driver's (see
//! `shards` for how a subscription reaches it, and `subscription` for the whole of it).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::codec::decode_event;
use super::route::Route;
use super::slots::{SlotSet, key_slot};
use crate::lock;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{BrokerStats, RoomSink};

/// A room to catch up: its channel and the number of the hold it was listed under.
pub(super) type Listed = (String, u32);

/// Every room with local subscriptions, and what the drivers repaired.
pub(super) struct Router {
    /// Each room with local subscriptions, by channel name.
    rooms: Mutex<HashMap<String, Route>>,
    /// Reconnections and catch-ups so far.
    repairs: Repairs,
}

/// Counts of what the drivers repaired, read by [`Router::stats`].
#[derive(Debug, Default)]
pub(super) struct Repairs {
    pub(super) reconnects: AtomicU64,
    pub(super) catch_ups: AtomicU64,
    pub(super) caught_up: AtomicU64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("rooms", &lock(&self.rooms).len())
            .finish_non_exhaustive()
    }
}

impl Router {
    pub(super) fn new() -> Self {
        Self {
            rooms: Mutex::default(),
            repairs: Repairs::default(),
        }
    }

    /// What the drivers repaired so far.
    pub(super) fn stats(&self) -> BrokerStats {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        BrokerStats {
            reconnects: load(&self.repairs.reconnects),
            catch_ups: load(&self.repairs.catch_ups),
            caught_up: load(&self.repairs.caught_up),
        }
    }

    pub(super) fn repairs(&self) -> &Repairs {
        &self.repairs
    }

    /// Registers `sink` for `room` (channel `channel`); returns the id that removes it
    /// ([`Router::remove`]), and, if the route has not started yet, the hold its start settles
    /// (see `catch_up::start`).
    pub(super) fn add(
        &self,
        channel: &str,
        room: &str,
        sink: Arc<dyn RoomSink>,
    ) -> (u64, Option<u32>) {
        let mut rooms = lock(&self.rooms);
        let route = rooms
            .entry(channel.to_owned())
            .or_insert_with(|| Route::new(room, key_slot(channel)));
        let id = route.sinks.add(sink);
        (id, route.last.is_none().then(|| route.current_hold()))
    }

    /// Removes the sink registered under `id` for `channel`; if it was the room's last, the
    /// route goes, and the slot of its channel is returned (its driver may leave the channel).
    pub(super) fn remove(&self, channel: &str, id: u64) -> Option<u16> {
        let mut rooms = lock(&self.rooms);
        let route = rooms.get_mut(channel)?;
        let slot = route.slot;
        route.sinks.remove(id).then(|| {
            rooms.remove(channel);
            rooms.shrink_when_sparse();
            slot
        })
    }

    /// Tells every sink its subscription has ended (the broker is going away).
    pub(super) fn close_all(&self) {
        for route in lock(&self.rooms).values() {
            route.sinks.close();
        }
    }

    /// Decodes a pub/sub payload for the route of `channel`, if this node still has one.
    pub(super) fn route(&self, channel: &str, payload: &[u8], bound: usize) {
        let mut rooms = lock(&self.rooms);
        let Some(route) = rooms.get_mut(channel) else {
            return;
        };
        match decode_event(&route.room, payload) {
            Ok(event) => route.offer(event, bound),
            Err(err) => tracing::warn!(%channel, error = %err, "dropping undecodable event"),
        }
    }

    /// Runs `f` on the route of `channel`, if there is one.
    pub(super) fn with_route<R>(
        &self,
        channel: &str,
        f: impl FnOnce(&mut Route) -> R,
    ) -> Option<R> {
        lock(&self.rooms).get_mut(channel).map(f)
    }

    /// Whether a local subscription needs `channel`.
    pub(super) fn has_route(&self, channel: &str) -> bool {
        lock(&self.rooms).contains_key(channel)
    }

    /// Holds and lists the rooms of `slots` not in `subscribed`: a driver about to subscribe
    /// them, then catch them up.
    pub(super) fn hold_missing(
        &self,
        slots: &SlotSet,
        subscribed: &HashSet<String>,
    ) -> Vec<Listed> {
        lock(&self.rooms)
            .iter_mut()
            .filter(|(channel, route)| slots.contains(route.slot) && !subscribed.contains(*channel))
            .map(|(channel, route)| (channel.clone(), route.hold()))
            .collect()
    }

    /// The channels of `subscribed` no route of `slots` needs any more.
    pub(super) fn stale(&self, slots: &SlotSet, subscribed: &HashSet<String>) -> Vec<String> {
        let rooms = lock(&self.rooms);
        subscribed
            .iter()
            .filter(|channel| {
                rooms
                    .get(*channel)
                    .is_none_or(|route| !slots.contains(route.slot))
            })
            .cloned()
            .collect()
    }
}
