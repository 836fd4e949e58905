//! Presence whose idle cost grows with the number of nodes, not with users × rooms.
//!
//! A node *instance* (its id and the token of its claim, `<id>:<token>`, see `claim`) owns its
//! entries: in each room, the set `{room}:held:<instance>` of the users it holds there, next to
//! the room's count hash `{room}:users` (user → instances holding it) and its names index
//! `{room}:names` (a sorted set of the hash's keys, every score 0), which `members` pages by
//! name. A join adds to the set and counts up, a leave removes and counts down, each in one
//! script that, exactly when a count leaves or reaches zero, adds or removes the name and
//! publishes `online`/`offline`. Entries carry no expiry and are never refreshed: an instance
//! lists each room it holds entries in (`instance:<instance>:rooms`) before its first entry
//! there and takes it off after its last (see `held`), and its claim task keeps only its claim
//! alive and its registry stamp fresh: two commands per heartbeat, whatever it holds.
//!
//! Every write goes under the instance's lease (see `claim`): the scripts refuse one that
//! arrives after the lease, which ends before the claim can lapse, so nothing an instance
//! writes can follow a sweep of it. A node cut off from Redis for a whole TTL may be swept
//! meanwhile (`sweep`: its users go offline within a TTL and a heartbeat); when it is back, its
//! first write waits for its claim to be made again, as a new instance, and the node holds its
//! entries again under that name (twice: at once, and at the next heartbeat, for joins that
//! were under way). Its old instance, if nobody swept it yet, is swept like any dead one.
//!
//! A second task does the rest of a heartbeat, independent of the claim: removing entries whose
//! removal failed, holding entries again after a new claim, and sweeping dead instances. Each
//! step runs whatever came of the others, and goes through all its rooms, so one room that keeps
//! failing (on a cluster shard that is down) is retried every beat without holding up the rest.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::RedisBrokerError;
use super::claim::{Lease, fresh_lease};
use super::held::Begin;
use super::store::Store;
use super::sweep::{CHUNK, sweep_dead};
use crate::lock;

/// A presence write of this node to one room under way, counted until dropped (finished or
/// cancelled): the room is not taken off the instance's list meanwhile.
struct Busy<'a> {
    store: &'a Store,
    room: &'a str,
}

impl<'a> Busy<'a> {
    /// Counts a write to `room` as under way, once no exclusive removal is (see `held`);
    /// whether it must list the room under `instance` first.
    async fn begin(store: &'a Store, room: &'a str, instance: &Arc<str>) -> (Self, bool) {
        loop {
            let mut ended = pin!(store.exclusive_ended.notified());
            ended.as_mut().enable();
            let begun = lock(&store.held).begin_write(room, instance);
            match begun {
                Begin::Go { list } => return (Self { store, room }, list),
                Begin::Wait => ended.await,
            }
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        lock(&self.store.held).end_write(self.room);
    }
}

/// An exclusive removal in a room (see `held`), ended when dropped (finished or cancelled),
/// which wakes the writes waiting for it.
struct Exclusive<'a> {
    store: &'a Store,
    room: &'a str,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        lock(&self.store.held).end_exclusive(self.room);
        self.store.exclusive_ended.notify_waiters();
    }
}

/// A write of entries to one room under way: under a lease still running, with the room
/// listed under the lease's instance.
pub(super) struct Writing<'a> {
    busy: Busy<'a>,
    /// The instance to write as, and its lease.
    pub(super) lease: Lease,
}

impl Writing<'_> {
    /// The instance's set in the room.
    pub(super) fn held_key(&self) -> String {
        self.busy
            .store
            .held_key(self.busy.room, &self.lease.instance)
    }

    /// The write of `user`'s entry succeeded: the node holds it.
    pub(super) fn hold(&self, user: &str) {
        lock(&self.busy.store.held).insert(self.busy.room, user);
    }
}

/// Starts a write of entries to `room` (see [`Writing`]).
pub(super) async fn writing<'a>(
    store: &'a Store,
    room: &'a str,
) -> Result<Writing<'a>, RedisBrokerError> {
    let lease = fresh_lease(store).await?;
    let (busy, list) = Busy::begin(store, room, &lease.instance).await;
    if list {
        let _: i64 = store
            .scripts
            .list_room
            .key(store.instance_rooms_key(&lease.instance))
            .arg(lease.until_ms)
            .arg(room)
            .invoke_async(&mut store.conn.clone())
            .await
            .map_err(|err| refused(store, err))?;
        lock(&store.held).listed(room, &lease.instance);
    }
    Ok(Writing { busy, lease })
}

/// A script's error, telling the lease's refusal (`LAPSED`) apart: then the claim task is
/// asked for a refresh at once.
pub(super) fn refused(store: &Store, err: redis::RedisError) -> RedisBrokerError {
    if err.code() == Some("LAPSED") {
        store.kick.notify_one();
        return RedisBrokerError::Lapsed;
    }
    err.into()
}

/// Writes `user`'s entry in the room of `writing`.
async fn write_entry(writing: &Writing<'_>, user: &str) -> Result<(), RedisBrokerError> {
    let store = writing.busy.store;
    let keys = store.keys(writing.busy.room);
    let _: i64 =
        Store::with_presence_keys(&store.scripts.presence_join, &writing.held_key(), &keys)
            .arg(user)
            .arg(writing.lease.until_ms)
            .invoke_async(&mut store.conn.clone())
            .await
            .map_err(|err| refused(store, err))?;
    Ok(())
}

/// Records that this node holds `user` in `room`.
pub(super) async fn join(store: &Store, room: &str, user: &str) -> Result<(), RedisBrokerError> {
    let writing = writing(store, room).await?;
    write_entry(&writing, user).await?;
    writing.hold(user);
    Ok(())
}

/// Withdraws this node's entry for `user` in `room`; on failure, the heartbeat tries again.
pub(super) async fn leave(store: &Store, room: &str, user: &str) -> Result<(), RedisBrokerError> {
    lock(&store.held).remove(room, user);
    let instance = store.instance();
    let (busy, _) = Busy::begin(store, room, &instance).await;
    let left = remove_entry(store, room, user, &instance).await;
    drop(busy);
    match left {
        Ok(emptied) => {
            if emptied {
                delist(store, room, &instance).await;
            }
            Ok(())
        }
        Err(err) => {
            // Entries do not expire: the heartbeat removes it once Redis answers.
            lock(&store.unheld).insert((room.to_owned(), user.to_owned()));
            Err(err)
        }
    }
}

/// Removes `instance`'s entry for `user` in `room`; whether that left its set there empty.
async fn remove_entry(
    store: &Store,
    room: &str,
    user: &str,
    instance: &str,
) -> Result<bool, RedisBrokerError> {
    let keys = store.keys(room);
    let emptied: i64 = Store::with_presence_keys(
        &store.scripts.presence_leave,
        &store.held_key(room, instance),
        &keys,
    )
    .arg(user)
    .invoke_async(&mut store.conn.clone())
    .await?;
    Ok(emptied == 1)
}

/// Takes `room` off `instance`'s list, if nothing of the node is there or on its way there.
async fn delist(store: &Store, room: &str, instance: &Arc<str>) {
    if !lock(&store.held).start_delisting(room, instance) {
        return;
    }
    // The room counts as not listed from here on, whatever comes of the `SREM` (see `held`).
    let _exclusive = Exclusive { store, room };
    let removed: Result<i64, _> = redis::cmd("SREM")
        .arg(store.instance_rooms_key(instance))
        .arg(room)
        .query_async(&mut store.conn.clone())
        .await;
    if let Err(err) = removed {
        // Maybe listed a while longer (a sweep finds nothing there), maybe not: the next write
        // lists it again either way.
        tracing::debug!(%room, error = %err, "room maybe not taken off the instance's list");
    }
}

/// Does a heartbeat's presence work besides the claim: entries to remove again, entries to
/// hold again after a new claim (as soon as there is one), dead instances to sweep.
pub(super) async fn maintenance_task(store: Arc<Store>) {
    let mut interval = tokio::time::interval(store.config.heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease = store.lease.subscribe();
    let mut seen = store.instance();
    let mut hold_again = 0u8;
    let mut failures = Failures::new("presence heartbeat");
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = lease.wait_for(|lease| lease.instance != seen) => {}
        }
        let now = store.instance();
        if now != seen {
            seen = now;
            hold_again = 2;
        }
        match maintain(&store, &mut hold_again).await {
            Ok(()) => failures.recovered(),
            Err(err) => failures.failed(&err),
        }
    }
}

/// One beat of [`maintenance_task`]; `hold_again` counts the beats that still hold every entry
/// again. Each step runs whatever the others did, and each goes through all of its rooms: a
/// room that keeps failing (on a shard that is down, say) is tried again every beat without
/// stopping the rest. The first error is returned.
async fn maintain(store: &Store, hold_again: &mut u8) -> Result<(), RedisBrokerError> {
    let removed = remove_unheld(store).await;
    let held = if *hold_again > 0 {
        let held = hold_everything(store).await;
        if held.is_ok() {
            *hold_again -= 1;
        }
        held
    } else {
        Ok(())
    };
    let swept = sweep_dead(store).await;
    removed.and(held).and(swept)
}

/// Runs `tasks` together to the end, all of them even when some fail: the first error.
async fn all_of<F>(tasks: impl IntoIterator<Item = F>) -> Result<(), RedisBrokerError>
where
    F: Future<Output = Result<(), RedisBrokerError>>,
{
    futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .collect()
}

/// Removes the entries whose removal failed earlier, unless they are held again. Each is
/// removed while no other write of the node is under way in its room (or waits for the next
/// beat), so a join of the same user cannot land before the removal and be undone by it.
async fn remove_unheld(store: &Store) -> Result<(), RedisBrokerError> {
    let unheld: Vec<(String, String)> = {
        let held = lock(&store.held);
        let mut unheld = lock(&store.unheld);
        unheld.retain(|(room, user)| !held.contains(room, user));
        unheld.iter().cloned().collect()
    };
    let instance = store.instance();
    let mut outcome = Ok(());
    for chunk in unheld.chunks(CHUNK) {
        let removals = chunk.iter().map(|(room, user)| {
            let instance = &instance;
            async move {
                if !lock(&store.held).begin_unheld(room, user) {
                    return Ok(());
                }
                let exclusive = Exclusive { store, room };
                let emptied = remove_entry(store, room, user, instance).await?;
                drop(exclusive);
                lock(&store.unheld).remove(&(room.clone(), user.clone()));
                if emptied {
                    delist(store, room, instance).await;
                }
                Ok::<_, RedisBrokerError>(())
            }
        });
        outcome = outcome.and(all_of(removals).await);
    }
    outcome
}

/// Writes every entry this node holds again, under its current instance.
async fn hold_everything(store: &Store) -> Result<(), RedisBrokerError> {
    let pairs = lock(&store.held).pairs();
    let mut outcome = Ok(());
    for chunk in pairs.chunks(CHUNK) {
        let writes = chunk
            .iter()
            .map(|(room, user)| hold_entry_again(store, room, user));
        outcome = outcome.and(all_of(writes).await);
    }
    outcome
}

/// Writes `user`'s entry in `room` again, unless the user left; and removes it again if the
/// user left while it was written.
async fn hold_entry_again(store: &Store, room: &str, user: &str) -> Result<(), RedisBrokerError> {
    if !lock(&store.held).contains(room, user) {
        return Ok(());
    }
    let writing = writing(store, room).await?;
    write_entry(&writing, user).await?;
    drop(writing);
    if !lock(&store.held).contains(room, user) {
        leave(store, room, user).await?;
    }
    Ok(())
}

/// Failures of a presence task, logged as one line when they start, then at most once a minute
/// while they last, and once when they end: not one line per entry, room or beat.
#[derive(Debug)]
pub(super) struct Failures {
    what: &'static str,
    count: u64,
    logged: Option<Instant>,
}

impl Failures {
    const EVERY: Duration = Duration::from_secs(60);

    pub(super) fn new(what: &'static str) -> Self {
        Self {
            what,
            count: 0,
            logged: None,
        }
    }

    pub(super) fn failed(&mut self, err: &RedisBrokerError) {
        self.count += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= Self::EVERY) {
            tracing::warn!(error = %err, failures = self.count, "{} failed", self.what);
            self.logged = Some(Instant::now());
        }
    }

    pub(super) fn recovered(&mut self) {
        if self.count > 0 {
            tracing::info!(failures = self.count, "{} recovered", self.what);
        }
        self.count = 0;
        self.logged = None;
    }
}
