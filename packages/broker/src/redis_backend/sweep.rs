//! Sweeping the presence of node instances that are gone: dead ones found in the registry, a
//! restarted node's previous ones, and a stopping node's own.
//!
//! Every heartbeat, each node reads the registry's instances not stamped for a whole TTL, on
//! Redis's clock (stamps are Redis's clock too, see `claim`), so node clocks never enter into
//! it. One whose claim still holds its token is alive (a node of an older version stamping with
//! a slow clock, or whose stamps failed while its refreshes did not): it is stamped on its behalf,
//! so that it leaves the oldest few the scan returns and cannot hide dead ones behind it forever.
//! One whose claim moved on is dead: the first node to lock it sweeps it, one script per room it
//! listed (removing its set, counting down, announcing `offline`), taking each room off its list
//! as it goes, so a sweep that stops half way leaves exactly the rest for the next. A room whose
//! sweep fails (its shard down) stays listed and does not stop the others, nor the sweep of
//! other instances, nor a node's start. Its registry entry goes last, once its list is empty.
//! An instance's writes are fenced by its lease, which ends before its claim can lapse:
//! nothing it writes arrives after the sweep.

use super::codec::split_instance;
use super::error::RedisBrokerError;
use super::lease::Leases;
use super::store::{Stamp, Store};

/// Instances a heartbeat examines at most (the oldest first): a burst of dead nodes is swept
/// over a few heartbeats.
const SWEEPS_PER_BEAT: usize = 16;
/// Rooms swept at once.
pub(super) const CHUNK: usize = 64;

/// Before the node serves: sweeps what previous instances with this node's id left (they are
/// dead: this one holds the claim) and registers this instance.
pub(super) async fn start(store: &Store, leases: &Leases) -> Result<(), RedisBrokerError> {
    let own = leases.instance();
    let registered = store.registered().await?;
    let mine = |i: &&String| {
        split_instance(i).is_some_and(|(id, _)| id == store.config.node_id) && i.as_str() != &*own
    };
    for previous in registered.iter().filter(mine) {
        // What is left (rooms on a shard that is down) is swept later like any dead instance's.
        if let Err(err) = sweep_instance(store, previous).await {
            tracing::warn!(instance = %previous, error = %err, "a previous instance of this node is only partly swept: the rest is swept later");
        }
    }
    store.stamp(&own, leases.redis_now(), Stamp::Always).await
}

/// On an orderly stop: removes whatever entries this instance still holds (connections the
/// shutdown did not close in time), announcing `offline` for them.
pub(super) async fn stop(store: &Store, leases: &Leases) -> Result<(), RedisBrokerError> {
    sweep_instance(store, &leases.instance()).await
}

/// Sweeps the instances not stamped for a whole TTL whose claims have moved on; one that fails
/// (its claim or some of its rooms on a shard that is down) does not stop the others. The first
/// error.
pub(super) async fn sweep_dead(store: &Store, leases: &Leases) -> Result<(), RedisBrokerError> {
    let own = leases.instance();
    let ttl = store.config.presence_ttl;
    let now = leases.redis_now();
    let cutoff = now.saturating_sub(ttl.as_millis() as u64);
    let stale = store.stamped_before(cutoff, SWEEPS_PER_BEAT).await?;
    let mut outcome = Ok(());
    for instance in stale.iter().filter(|i| i.as_str() != &*own) {
        outcome = outcome.and(sweep_if_dead(store, leases, instance, &own).await);
    }
    outcome
}

/// Sweeps stale `instance` unless its claim still holds its token, if this node (`own`) is the
/// first to lock it.
async fn sweep_if_dead(
    store: &Store,
    leases: &Leases,
    instance: &str,
    own: &str,
) -> Result<(), RedisBrokerError> {
    // The claim is the truth: a stale stamp may come from a clock or a failed stamp.
    if let Some((id, token)) = split_instance(instance) {
        let holder = store.claim_holder(id).await?;
        if holder.as_deref() == Some(token) {
            return store
                .stamp(instance, leases.redis_now(), Stamp::Existing)
                .await;
        }
    }
    if store
        .lock_sweep(instance, own, store.config.presence_ttl)
        .await?
    {
        sweep_instance(store, instance).await?;
    }
    Ok(())
}

/// Removes every entry `instance` holds, room by room, announcing `offline` for users left
/// without any, and each room from its list once swept; then its registry entry. A room whose
/// sweep fails (on a shard that is down) stays listed for the next sweep and does not stop the
/// others: the first error is returned once every room was tried.
async fn sweep_instance(store: &Store, instance: &str) -> Result<(), RedisBrokerError> {
    let rooms = store.instance_rooms(instance).await?;
    let (mut removed, mut swept_rooms) = (0, 0);
    let mut outcome: Result<(), RedisBrokerError> = Ok(());
    for chunk in rooms.chunks(CHUNK) {
        let sweeps = chunk
            .iter()
            .map(|room| async move { (room, store.sweep_room(room, instance).await) });
        let mut swept = Vec::with_capacity(chunk.len());
        for (room, result) in futures_util::future::join_all(sweeps).await {
            match result {
                Ok(n) => {
                    removed += n;
                    swept.push(room.as_str());
                }
                Err(err) => outcome = outcome.and(Err(err.into())),
            }
        }
        if swept.is_empty() {
            continue;
        }
        swept_rooms += swept.len();
        // Not taken off: swept again (a no-op) by the next sweep.
        outcome = outcome.and(store.delist(instance, &swept).await);
    }
    if removed > 0 || swept_rooms > 0 {
        tracing::info!(
            instance,
            rooms = swept_rooms,
            entries = removed,
            "swept a node instance's presence"
        );
    }
    outcome?;
    // A room listed meanwhile (only the instance itself could, while its lease lasted) keeps
    // the entry for the next sweep.
    if store.rooms_listed(instance).await? == 0 {
        store.unregister(instance).await?;
    }
    Ok(())
}
