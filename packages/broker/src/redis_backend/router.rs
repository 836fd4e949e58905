//! The node's live-event side: every room with local subscriptions, by channel, and the
//! routing of each event to its room's sinks.
//!
//! Every room with a local subscription has a [`Route`] (see `route`). Events come from the
//! shards' drivers (see `shard`: one per shard, each with its own connection), which hand each
//! one straight to its route's sinks: no task and no queue per room, and one lock and no
//! allocation per message. Subscribing goes to the driver of the room's shard; a new route
//! holds its events until it has learned where its stream ends and who its members are (see
//! `catch_up`).
//!
//! The router is also where the drivers meet: it keeps them, says which serves a slot, and
//! says whether the node is ready (see [`Router::is_ready`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};

use super::codec::decode_event;
use super::route::Route;
use super::shard::{Backoff, Control, Refusal, ShardDriver, ShardHandle};
use super::store::Store;
use super::topology::{SlotSet, key_slot};
use super::{RedisBrokerError, RedisConfig, catch_up};
use crate::lock;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{BrokerStats, RoomSink};

/// The pub/sub side's shared state: every room with local subscriptions, and the shards'
/// drivers.
pub(super) struct Router {
    /// Each room with local subscriptions, by channel name.
    rooms: Mutex<HashMap<String, Route>>,
    /// The drivers, one per shard.
    shards: Mutex<Vec<ShardDriver>>,
    /// Wakes the topology task to read the cluster's shards again.
    pub(super) refresh: Notify,
    /// Whether the node is ready (see [`Router::is_ready`]).
    ready: watch::Sender<bool>,
    /// How long a subscription waits for its driver.
    timeout: Duration,
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
            .field("shards", &lock(&self.shards).len())
            .finish_non_exhaustive()
    }
}

impl Router {
    pub(super) fn new(config: &RedisConfig, ready: watch::Sender<bool>) -> Self {
        Self {
            rooms: Mutex::default(),
            shards: Mutex::default(),
            refresh: Notify::new(),
            ready,
            timeout: config.command_timeout * 2,
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

    /// Registers `sink` for `room` (channel `channel`); returns the id that removes it, and,
    /// if the route has not started yet, the hold its start settles (see
    /// [`Router::subscribe`]).
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

    /// Subscribes `channel` on its shard's driver, and starts its route if `start` (its hold)
    /// is given: from the stream's end as of now.
    pub(super) async fn subscribe(
        &self,
        store: &Store,
        channel: &str,
        start: Option<u32>,
    ) -> Result<(), RedisBrokerError> {
        let slot = key_slot(channel);
        let answered = tokio::time::timeout(self.timeout, async {
            let mut backoff = Backoff::default();
            loop {
                let shard = self.shard_for(slot).ok_or(RedisBrokerError::Unavailable)?;
                let (ack, acked) = oneshot::channel();
                let channel = channel.to_owned();
                shard
                    .control
                    .send(Control::Subscribe { channel, ack })
                    .await
                    .map_err(|_| RedisBrokerError::Unavailable)?;
                match acked.await {
                    Ok(Ok(())) => return Ok(()),
                    // The slot moved: ask where it is now.
                    Ok(Err(Refusal::Elsewhere)) => {
                        self.refresh.notify_one();
                        tokio::time::sleep(backoff.next()).await;
                    }
                    Ok(Err(Refusal::Unavailable)) | Err(_) => {
                        return Err(RedisBrokerError::Unavailable);
                    }
                }
            }
        });
        answered
            .await
            .unwrap_or(Err(RedisBrokerError::Unavailable))?;
        if let Some(hold) = start {
            catch_up::start(store, self, channel, hold).await?;
        }
        Ok(())
    }

    /// The driver of the shard serving `slot`.
    fn shard_for(&self, slot: u16) -> Option<Arc<ShardHandle>> {
        lock(&self.shards)
            .iter()
            .find(|(shard, _)| shard.serves(slot))
            .map(|(shard, _)| Arc::clone(shard))
    }

    /// Changes the set of drivers (see `topology`), then readiness.
    pub(super) fn with_shards(&self, change: impl FnOnce(&mut Vec<ShardDriver>)) {
        change(&mut lock(&self.shards));
        self.update_ready();
    }

    /// Whether the node is ready: its connection to every shard is up and has every room it
    /// serves subscribed, except shards the cluster itself reports failed (their rooms are
    /// down on every node, and taking this one out of service would not bring them back),
    /// and at least one is up. One server: its one connection is up.
    pub(super) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Computes readiness again after a driver's or a shard's state changed.
    pub(super) fn update_ready(&self) {
        let shards = lock(&self.shards);
        let up = |(shard, _): &&ShardDriver| shard.is_up();
        let ready =
            shards.iter().any(|s| up(&s)) && shards.iter().all(|s| up(&s) || s.0.is_failed());
        drop(shards);
        self.ready
            .send_if_modified(|old| std::mem::replace(old, ready) != ready);
    }

    /// Whether every driver is up (else the topology is read again now and then).
    pub(super) fn all_shards_up(&self) -> bool {
        lock(&self.shards).iter().all(|(shard, _)| shard.is_up())
    }

    /// Stops the drivers, and tells every sink its subscription has ended (the broker is going
    /// away).
    pub(super) fn close_all(&self) {
        for (_, task) in lock(&self.shards).drain(..) {
            task.abort();
        }
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
    ) -> Vec<catch_up::Listed> {
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

/// A node's subscription to one room of a [`RedisBroker`](super::RedisBroker); dropping it
/// unsubscribes (the node's pub/sub connection leaves the room's channel with its last one).
#[derive(Debug)]
pub struct RedisSubscription {
    pub(super) router: Arc<Router>,
    pub(super) channel: String,
    /// The id its sink is registered under.
    pub(super) id: u64,
}

impl Drop for RedisSubscription {
    fn drop(&mut self) {
        let left = {
            let mut rooms = lock(&self.router.rooms);
            let Some(route) = rooms.get_mut(&self.channel) else {
                return;
            };
            let slot = route.slot;
            route.sinks.remove(self.id).then(|| {
                rooms.remove(&self.channel);
                rooms.shrink_when_sparse();
                slot
            })
        };
        if let Some(shard) = left.and_then(|slot| self.router.shard_for(slot)) {
            shard.unsubscribed.notify_one();
        }
    }
}
