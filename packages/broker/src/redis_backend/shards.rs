//! The shards' drivers as the rest of the node sees them: each one's handle (its master, the
//! slots it serves, whether its connection is up, the queue its subscription requests wait in),
//! which one serves a slot, and whether the node is ready. The drivers' tasks are `shard`'s;
//! `topology` starts and stops them.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::backoff::Backoff;
use super::driver::Addr;
use super::error::RedisBrokerError;
use super::slots::{SlotSet, key_slot};
use crate::lock;

/// Subscribe requests that may wait for a driver; a subscriber finding it full waits (within
/// its timeout) like one waiting for the answer.
const CONTROL_QUEUE: usize = 256;

/// A subscription's request to a shard's driver (unsubscribing goes through
/// [`ShardHandle::unsubscribed`] instead, as a `Drop` cannot wait for room in a bounded
/// channel).
pub(super) enum Control {
    Subscribe {
        channel: String,
        ack: oneshot::Sender<Result<(), Refusal>>,
    },
}

/// Why a driver did not subscribe a channel.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Its connection is down.
    Unavailable,
    /// The channel's slot is served by another shard now: ask again.
    Elsewhere,
}

/// What [`Shards`] and the topology task know of a shard's driver.
#[derive(Debug)]
pub(super) struct ShardHandle {
    /// Its master (`None`: the configured server).
    pub(super) addr: Option<Addr>,
    control: mpsc::Sender<Control>,
    /// Wakes the driver when a room it may carry lost its last local subscription.
    pub(super) unsubscribed: Notify,
    /// The slots it serves.
    slots: watch::Sender<SlotSet>,
    /// Connected, with every room it serves subscribed.
    up: AtomicBool,
    /// The cluster reports its master failed: its rooms are down for every node.
    failed: AtomicBool,
}

impl ShardHandle {
    /// The handle of a driver of the shard at `addr` (`None`: the configured server) serving
    /// `slots`, not up yet; and the queue of its requests, for its task.
    pub(super) fn new(addr: Option<Addr>, slots: SlotSet) -> (Arc<Self>, mpsc::Receiver<Control>) {
        let (control, requests) = mpsc::channel(CONTROL_QUEUE);
        let handle = Arc::new(Self {
            addr,
            control,
            unsubscribed: Notify::new(),
            slots: watch::Sender::new(slots),
            up: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        (handle, requests)
    }

    pub(super) fn serves(&self, slot: u16) -> bool {
        self.slots.borrow().contains(slot)
    }

    /// The slots it serves now.
    pub(super) fn slots(&self) -> SlotSet {
        self.slots.borrow().clone()
    }

    /// Watches the slots it serves.
    pub(super) fn watch_slots(&self) -> watch::Receiver<SlotSet> {
        self.slots.subscribe()
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Its connection came up (with every room subscribed) or went down.
    pub(super) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub(super) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Gives it `slots` (its driver subscribes the rooms it gained and drops the others).
    pub(super) fn assign(&self, slots: SlotSet, failed: bool) {
        self.slots.send_if_modified(|old| {
            let changed = *old != slots;
            *old = slots;
            changed
        });
        self.failed.store(failed, Ordering::Relaxed);
    }
}

/// A shard's driver: what is known of it, and its task.
pub(super) type ShardDriver = (Arc<ShardHandle>, AbortHandle);

/// The shards' drivers, and the node's readiness they make.
#[derive(Debug)]
pub(super) struct Shards {
    /// The drivers, one per shard.
    drivers: Mutex<Vec<ShardDriver>>,
    /// Wakes the topology task to read the cluster's shards again.
    pub(super) refresh: Notify,
    /// Whether the node is ready (see [`Shards::is_ready`]).
    ready: watch::Sender<bool>,
    /// How long a subscription waits for its driver.
    timeout: Duration,
}

impl Shards {
    /// No driver yet; `ready` says whether the node is ready, `command_timeout` bounds a
    /// subscription (twice).
    pub(super) fn new(command_timeout: Duration, ready: watch::Sender<bool>) -> Self {
        Self {
            drivers: Mutex::default(),
            refresh: Notify::new(),
            ready,
            timeout: command_timeout * 2,
        }
    }

    /// Subscribes `channel` on its shard's driver (asking again where its slot moved).
    pub(super) async fn subscribe(&self, channel: &str) -> Result<(), RedisBrokerError> {
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
        answered.await.unwrap_or(Err(RedisBrokerError::Unavailable))
    }

    /// Wakes the driver serving `slot`: a room there lost its last local subscription.
    pub(super) fn unsubscribed(&self, slot: u16) {
        if let Some(shard) = self.shard_for(slot) {
            shard.unsubscribed.notify_one();
        }
    }

    /// The driver of the shard serving `slot`.
    fn shard_for(&self, slot: u16) -> Option<Arc<ShardHandle>> {
        lock(&self.drivers)
            .iter()
            .find(|(shard, _)| shard.serves(slot))
            .map(|(shard, _)| Arc::clone(shard))
    }

    /// Changes the set of drivers (see `topology`), then readiness.
    pub(super) fn with_drivers(&self, change: impl FnOnce(&mut Vec<ShardDriver>)) {
        change(&mut lock(&self.drivers));
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
        let drivers = lock(&self.drivers);
        let up = |(shard, _): &&ShardDriver| shard.is_up();
        let ready =
            drivers.iter().any(|s| up(&s)) && drivers.iter().all(|s| up(&s) || s.0.is_failed());
        drop(drivers);
        self.ready
            .send_if_modified(|old| std::mem::replace(old, ready) != ready);
    }

    /// Whether every driver is up (else the topology is read again now and then).
    pub(super) fn all_up(&self) -> bool {
        lock(&self.drivers).iter().all(|(shard, _)| shard.is_up())
    }

    /// Stops the drivers (the broker is going away).
    pub(super) fn stop_all(&self) {
        for (_, task) in lock(&self.drivers).drain(..) {
            task.abort();
        }
    }
}
