//! Presence whose idle cost grows with the number of nodes, not with users × rooms.
//!
//! A node *instance* (its id and the token of its claim, `<id>:<token>`, see `claim`) owns its
//! entries: in each room, the set `{room}:held:<instance>` of the users it holds there, next to
//! the room's count hash `{room}:users` (user → instances holding it) and its names index
//! `{room}:names` (a sorted set of the hash's keys, every score 0), which `members` pages by
//! name. A join adds to the set and counts up, a leave removes and counts down, each in one
//! script that, exactly when a count leaves or reaches zero, adds or removes the name and
//! publishes `online`/`offline`. Entries carry no
//! expiry and are never refreshed: an instance first lists each room it holds entries in
//! (`instance:<instance>:rooms`), and its heartbeat only keeps its claim alive and stamps the
//! registry of instances (`nodes`: instance → last heartbeat, Unix ms). Three commands per
//! heartbeat per node, whatever it holds.
//!
//! Every heartbeat, each node also looks in the registry for instances not stamped for a whole
//! TTL. One whose claim no longer holds its token is dead: the first node to lock it sweeps it,
//! one script per room it listed (removing its set, counting down, announcing `offline`), then
//! drops its list and registry entry. So a crashed node's users are gone within a TTL and a
//! heartbeat (30 s by default), and every node sees the same members, read from the same hash.
//!
//! A node restarted with the same id sweeps its previous instances before it serves, so nothing
//! of them comes back. A node whose claim expired while Redis was out of its reach may have been
//! swept: it becomes a new instance, holds its entries again under that name (twice: once at
//! once, once at the next heartbeat, for joins that were under way) and sweeps the old one.
//! An orderly stop sweeps the node's own instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::RedisBrokerError;
use super::claim::{Claim, Refreshed};
use super::store::Store;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{SortedMap, lock};

/// The presence entries this node holds, by room: each room's name is kept once, not once per
/// user in it (a node may hold one entry per connection). A set, as Redis holds one entry per
/// instance and user; sorted per room, as most rooms have a few users (see [`SortedMap`]).
#[derive(Debug, Default)]
pub(super) struct Held(HashMap<Box<str>, SortedMap<Box<str>, ()>>);

impl Held {
    pub(super) fn insert(&mut self, room: &str, user: &str) {
        let users = match self.0.get_mut(room) {
            Some(users) => users,
            None => self.0.entry(room.into()).or_default(),
        };
        users.get_or_insert_with(user.into(), || ());
    }

    pub(super) fn remove(&mut self, room: &str, user: &str) {
        let Some(users) = self.0.get_mut(room) else {
            return;
        };
        users.remove(user);
        if users.is_empty() {
            self.0.remove(room);
            self.0.shrink_when_sparse();
        }
    }

    /// Whether this node holds `user` in `room`.
    fn contains(&self, room: &str, user: &str) -> bool {
        self.0
            .get(room)
            .is_some_and(|users| users.get(user).is_some())
    }

    /// Whether this node holds anyone in `room`.
    pub(super) fn has_room(&self, room: &str) -> bool {
        self.0.contains_key(room)
    }

    /// Every (room, user) held.
    fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .flat_map(|(room, users)| {
                users
                    .keys()
                    .map(|user| (room.to_string(), user.to_string()))
            })
            .collect()
    }
}

/// Instances a heartbeat examines at most (the oldest first): a burst of dead nodes is swept
/// over a few heartbeats.
const SWEEPS_PER_BEAT: usize = 16;
/// Entries written at once when holding everything again.
const CHUNK: usize = 64;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The node id and claim token of an instance (`<node id>:<token>`), split at the last `:`: a
/// token has none, and neither has a valid node id, so the id is exact (an older node's id
/// could hold one: `chat:2`'s instances are not `chat`'s).
fn split_instance(instance: &str) -> Option<(&str, &str)> {
    instance.rsplit_once(':')
}

/// The node id an instance belongs to.
fn node_of(instance: &str) -> Option<&str> {
    split_instance(instance).map(|(id, _)| id)
}

/// Before the node serves: sweeps what previous instances with this node's id left (they are
/// dead: this one holds the claim) and registers this instance.
pub(super) async fn start(store: &Store) -> Result<(), RedisBrokerError> {
    let own = store.instance();
    let registered: Vec<String> = redis::cmd("ZRANGE")
        .arg(store.nodes_key())
        .arg(0)
        .arg(-1)
        .query_async(&mut store.conn.clone())
        .await?;
    let mine =
        |i: &&String| node_of(i) == Some(store.config.node_id.as_str()) && i.as_str() != &*own;
    for previous in registered.iter().filter(mine) {
        sweep_instance(store, previous).await?;
    }
    stamp(store, &own).await
}

/// On an orderly stop: removes whatever entries this instance still holds (connections the
/// shutdown did not close in time), announcing `offline` for them.
pub(super) async fn stop(store: &Store) -> Result<(), RedisBrokerError> {
    sweep_instance(store, &store.instance()).await
}

/// Keeps the claim and the registry stamp alive and sweeps dead instances, every heartbeat.
pub(super) async fn heartbeat_task(store: Arc<Store>, claim: Arc<Claim>) {
    let mut interval = tokio::time::interval(store.config.heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hold_again = 0u8;
    let mut failures = Failures::default();
    loop {
        interval.tick().await;
        match beat(&store, &claim, &mut hold_again).await {
            Ok(()) => failures.recovered(),
            Err(err) => failures.failed(&err),
        }
    }
}

/// One heartbeat; `hold_again` counts the beats that still hold every entry again.
async fn beat(store: &Store, claim: &Claim, hold_again: &mut u8) -> Result<(), RedisBrokerError> {
    match claim.refresh(store).await? {
        Refreshed::Kept => {}
        Refreshed::Expired => {
            let old = store.instance();
            if claim.renew(store).await? {
                tracing::warn!(
                    node = %store.config.node_id,
                    "the node's claim expired (Redis was out of reach for a presence TTL): holding presence again as a new instance"
                );
                *hold_again = 2;
                stamp(store, &store.instance()).await?;
                hold_everything(store).await?;
                *hold_again -= 1;
                sweep_instance(store, &old).await?;
            } else {
                taken(store);
            }
        }
        Refreshed::Taken => taken(store),
    }
    let own = store.instance();
    stamp(store, &own).await?;
    remove_unheld(store).await?;
    if *hold_again > 0 {
        hold_everything(store).await?;
        *hold_again -= 1;
    }
    sweep_dead(store, &own).await
}

fn taken(store: &Store) {
    tracing::error!(
        node = %store.config.node_id,
        "another node took this node's id (its claim expired while Redis was unreachable): presence is shared with it until one of them stops"
    );
}

/// Stamps `instance`'s registry entry with the time.
async fn stamp(store: &Store, instance: &str) -> Result<(), RedisBrokerError> {
    let _: i64 = redis::cmd("ZADD")
        .arg(store.nodes_key())
        .arg(unix_ms())
        .arg(instance)
        .query_async(&mut store.conn.clone())
        .await?;
    Ok(())
}

/// Removes the entries whose removal failed earlier, unless they are held again.
async fn remove_unheld(store: &Store) -> Result<(), RedisBrokerError> {
    let unheld = std::mem::take(&mut *lock(&store.unheld));
    for (index, (room, user)) in unheld.iter().enumerate() {
        if lock(&store.held).contains(room, user) {
            continue;
        }
        if let Err(err) = store.presence_leave(room, user).await {
            lock(&store.unheld).extend(unheld[index..].iter().cloned());
            return Err(err);
        }
    }
    Ok(())
}

/// Writes every entry this node holds again, under its current instance.
async fn hold_everything(store: &Store) -> Result<(), RedisBrokerError> {
    let pairs = lock(&store.held).pairs();
    let mut rooms: Vec<&str> = pairs.iter().map(|(room, _)| room.as_str()).collect();
    rooms.dedup();
    if !rooms.is_empty() {
        let _: i64 = redis::cmd("SADD")
            .arg(store.instance_rooms_key(&store.instance()))
            .arg(&rooms)
            .query_async(&mut store.conn.clone())
            .await?;
    }
    // Every room is held, so `presence_join` lists none again.
    for chunk in pairs.chunks(CHUNK) {
        let writes = chunk
            .iter()
            .map(|(room, user)| store.presence_join(room, user));
        futures_util::future::try_join_all(writes).await?;
    }
    Ok(())
}

/// Sweeps the instances not stamped for a whole TTL whose claims have moved on.
async fn sweep_dead(store: &Store, own: &str) -> Result<(), RedisBrokerError> {
    let ttl = store.config.presence_ttl;
    let cutoff = unix_ms().saturating_sub(ttl.as_millis() as u64);
    let stale: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(store.nodes_key())
        .arg("-inf")
        .arg(cutoff)
        .arg("LIMIT")
        .arg(0)
        .arg(SWEEPS_PER_BEAT)
        .query_async(&mut store.conn.clone())
        .await?;
    for instance in stale.iter().filter(|i| i.as_str() != own) {
        // The claim, kept on Redis's clock, is the truth: a stale stamp may only be a skewed
        // clock.
        if let Some((id, token)) = split_instance(instance) {
            let holder: Option<String> = redis::cmd("GET")
                .arg(store.claim_key(id))
                .query_async(&mut store.conn.clone())
                .await?;
            if holder.as_deref() == Some(token) {
                continue;
            }
        }
        let lock_key = format!("{}sweep:{instance}", store.config.prefix);
        let locked: Option<String> = redis::cmd("SET")
            .arg(&lock_key)
            .arg(own)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut store.conn.clone())
            .await?;
        if locked.is_some() {
            sweep_instance(store, instance).await?;
        }
    }
    Ok(())
}

/// Removes every entry `instance` holds, room by room, announcing `offline` for users left
/// without any; then its room list and registry entry.
async fn sweep_instance(store: &Store, instance: &str) -> Result<(), RedisBrokerError> {
    let list = store.instance_rooms_key(instance);
    let rooms: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&list)
        .query_async(&mut store.conn.clone())
        .await?;
    let mut removed = 0;
    for chunk in rooms.chunks(CHUNK) {
        let sweeps = chunk.iter().map(|room| {
            let (held, keys) = (store.held_key(room, instance), store.keys(room));
            async move {
                let removed: i64 = Store::with_presence_keys(&store.scripts.sweep, &held, &keys)
                    .invoke_async(&mut store.conn.clone())
                    .await?;
                Ok::<_, RedisBrokerError>(removed)
            }
        });
        removed += futures_util::future::try_join_all(sweeps)
            .await?
            .iter()
            .sum::<i64>();
    }
    let _: i64 = redis::cmd("DEL")
        .arg(&list)
        .query_async(&mut store.conn.clone())
        .await?;
    let _: i64 = redis::cmd("ZREM")
        .arg(store.nodes_key())
        .arg(instance)
        .query_async(&mut store.conn.clone())
        .await?;
    if removed > 0 || !rooms.is_empty() {
        tracing::info!(
            instance,
            rooms = rooms.len(),
            entries = removed,
            "swept a node instance's presence"
        );
    }
    Ok(())
}

/// Heartbeat failures, logged as one line when they start, then at most once a minute while
/// they last, and once when they end: not one line per entry, room or beat.
#[derive(Debug, Default)]
struct Failures {
    count: u64,
    logged: Option<Instant>,
}

impl Failures {
    const EVERY: Duration = Duration::from_secs(60);

    fn failed(&mut self, err: &RedisBrokerError) {
        self.count += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= Self::EVERY) {
            tracing::warn!(error = %err, failures = self.count, "presence heartbeat failed");
            self.logged = Some(Instant::now());
        }
    }

    fn recovered(&mut self) {
        if self.count > 0 {
            tracing::info!(failures = self.count, "presence heartbeat recovered");
        }
        *self = Self::default();
    }
}
