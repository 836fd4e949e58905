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

use std::collections::HashSet;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::error::RedisBrokerError;
use super::failures::Failures;
use super::held::{Begin, Held};
use super::lease::{Lease, Leases};
use super::store::Store;
use super::sweep::{CHUNK, sweep_dead};
use crate::{Resume, Snapshot, lock};

/// This node's presence: what it holds, and the writes under way.
#[derive(Debug)]
pub(super) struct Presence {
    store: Arc<Store>,
    leases: Arc<Leases>,
    /// Presence entries this node holds (see `held`).
    held: Mutex<Held>,
    /// Wakes the writes waiting for an exclusive removal in their room to end (see `held`).
    exclusive_ended: Notify,
    /// Entries (room, user) whose removal failed (Redis unreachable), removed again every
    /// heartbeat.
    unheld: Mutex<HashSet<(String, String)>>,
}

/// A presence write of this node to one room under way, counted until dropped (finished or
/// cancelled): the room is not taken off the instance's list meanwhile.
struct Busy<'a> {
    presence: &'a Presence,
    room: &'a str,
}

impl<'a> Busy<'a> {
    /// Counts a write to `room` as under way, once no exclusive removal is (see `held`);
    /// whether it must list the room under `instance` first.
    async fn begin(presence: &'a Presence, room: &'a str, instance: &Arc<str>) -> (Self, bool) {
        loop {
            let mut ended = pin!(presence.exclusive_ended.notified());
            ended.as_mut().enable();
            let begun = lock(&presence.held).begin_write(room, instance);
            match begun {
                Begin::Go { list } => return (Self { presence, room }, list),
                Begin::Wait => ended.await,
            }
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        lock(&self.presence.held).end_write(self.room);
    }
}

/// An exclusive removal in a room (see `held`), ended when dropped (finished or cancelled),
/// which wakes the writes waiting for it.
struct Exclusive<'a> {
    presence: &'a Presence,
    room: &'a str,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        lock(&self.presence.held).end_exclusive(self.room);
        self.presence.exclusive_ended.notify_waiters();
    }
}

/// A write of entries to one room under way: under a lease still running, with the room
/// listed under the lease's instance.
struct Writing<'a> {
    busy: Busy<'a>,
    /// The instance to write as, and its lease.
    lease: Lease,
}

impl Writing<'_> {
    /// The instance's set in the room.
    fn held_key(&self) -> String {
        let presence = self.busy.presence;
        presence
            .store
            .names
            .held(self.busy.room, &self.lease.instance)
    }

    /// The write of `user`'s entry succeeded: the node holds it.
    fn hold(&self, user: &str) {
        lock(&self.busy.presence.held).insert(self.busy.room, user);
    }

    /// Writes `user`'s entry in the room.
    async fn write_entry(&self, user: &str) -> Result<(), RedisBrokerError> {
        let presence = self.busy.presence;
        let written = presence
            .store
            .write_entry(self.busy.room, &self.held_key(), user, self.lease.until_ms)
            .await;
        presence.leases.noticed(written)
    }
}

impl Presence {
    /// Nothing held yet; writes go under `leases` (see `claim`).
    pub(super) fn new(store: Arc<Store>, leases: Arc<Leases>) -> Self {
        Self {
            store,
            leases,
            held: Mutex::default(),
            exclusive_ended: Notify::new(),
            unheld: Mutex::default(),
        }
    }

    /// Starts a write of entries to `room` (see [`Writing`]).
    async fn writing<'a>(&'a self, room: &'a str) -> Result<Writing<'a>, RedisBrokerError> {
        let lease = self
            .leases
            .fresh(self.store.config.command_timeout * 2)
            .await?;
        let (busy, list) = Busy::begin(self, room, &lease.instance).await;
        if list {
            let listed = self
                .store
                .list_room(&lease.instance, room, lease.until_ms)
                .await;
            self.leases.noticed(listed)?;
            lock(&self.held).listed(room, &lease.instance);
        }
        Ok(Writing { busy, lease })
    }

    /// Records that this node holds `user` in `room`.
    pub(super) async fn join(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        let writing = self.writing(room).await?;
        writing.write_entry(user).await?;
        writing.hold(user);
        Ok(())
    }

    /// What a connection of `user` joining `room` is told (see [`Store::join`]); with
    /// `join_presence`, this node holds that user there too, written in the same script.
    pub(super) async fn snapshot(
        &self,
        room: &str,
        user: &str,
        join_presence: bool,
        resume: Resume<'_>,
    ) -> Result<Snapshot, RedisBrokerError> {
        let writing = match join_presence {
            true => Some(self.writing(room).await?),
            false => None,
        };
        let held = match &writing {
            Some(writing) => writing.held_key(),
            None => self.store.names.held(room, &self.leases.instance()),
        };
        let until = writing.as_ref().map(|writing| writing.lease.until_ms);
        let joined = self.store.join(room, &held, user, until, resume).await;
        let snapshot = self.leases.noticed(joined)?;
        if let Some(writing) = writing {
            writing.hold(user);
        }
        Ok(snapshot)
    }

    /// Withdraws this node's entry for `user` in `room`; on failure, the heartbeat tries again.
    pub(super) async fn leave(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        lock(&self.held).remove(room, user);
        let instance = self.leases.instance();
        let (busy, _) = Busy::begin(self, room, &instance).await;
        let left = self.store.remove_entry(room, user, &instance).await;
        drop(busy);
        match left {
            Ok(emptied) => {
                if emptied {
                    self.delist(room, &instance).await;
                }
                Ok(())
            }
            Err(err) => {
                // Entries do not expire: the heartbeat removes it once Redis answers.
                lock(&self.unheld).insert((room.to_owned(), user.to_owned()));
                Err(err)
            }
        }
    }

    /// Takes `room` off `instance`'s list, if nothing of the node is there or on its way there.
    async fn delist(&self, room: &str, instance: &Arc<str>) {
        if !lock(&self.held).start_delisting(room, instance) {
            return;
        }
        // The room counts as not listed from here on, whatever comes of the `SREM` (see `held`).
        let _exclusive = Exclusive {
            presence: self,
            room,
        };
        if let Err(err) = self.store.delist(instance, &[room]).await {
            // Maybe listed a while longer (a sweep finds nothing there), maybe not: the next
            // write lists it again either way.
            tracing::debug!(%room, error = %err, "room maybe not taken off the instance's list");
        }
    }

    /// Does a heartbeat's presence work besides the claim: entries to remove again, entries to
    /// hold again after a new claim (as soon as there is one), dead instances to sweep.
    pub(super) async fn maintenance_task(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.store.config.heartbeat);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lease = self.leases.subscribe();
        let mut seen = self.leases.instance();
        let mut hold_again = 0u8;
        let mut failures = Failures::new("presence heartbeat");
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = lease.wait_for(|lease| lease.instance != seen) => {}
            }
            let now = self.leases.instance();
            if now != seen {
                seen = now;
                hold_again = 2;
            }
            match self.maintain(&mut hold_again).await {
                Ok(()) => failures.recovered(),
                Err(err) => failures.failed(&err),
            }
        }
    }

    /// One beat of [`Presence::maintenance_task`]; `hold_again` counts the beats that still
    /// hold every entry again. Each step runs whatever the others did, and each goes through all
    /// of its rooms: a room that keeps failing (on a shard that is down, say) is tried again
    /// every beat without stopping the rest. The first error is returned.
    async fn maintain(&self, hold_again: &mut u8) -> Result<(), RedisBrokerError> {
        let removed = self.remove_unheld().await;
        let held = if *hold_again > 0 {
            let held = self.hold_everything().await;
            if held.is_ok() {
                *hold_again -= 1;
            }
            held
        } else {
            Ok(())
        };
        let swept = sweep_dead(&self.store, &self.leases).await;
        removed.and(held).and(swept)
    }

    /// Removes the entries whose removal failed earlier, unless they are held again. Each is
    /// removed while no other write of the node is under way in its room (or waits for the
    /// next beat), so a join of the same user cannot land before the removal and be undone by
    /// it.
    async fn remove_unheld(&self) -> Result<(), RedisBrokerError> {
        let unheld: Vec<(String, String)> = {
            let held = lock(&self.held);
            let mut unheld = lock(&self.unheld);
            unheld.retain(|(room, user)| !held.contains(room, user));
            unheld.iter().cloned().collect()
        };
        let instance = self.leases.instance();
        let mut outcome = Ok(());
        for chunk in unheld.chunks(CHUNK) {
            let removals = chunk.iter().map(|(room, user)| {
                let instance = &instance;
                async move {
                    if !lock(&self.held).begin_unheld(room, user) {
                        return Ok(());
                    }
                    let exclusive = Exclusive {
                        presence: self,
                        room,
                    };
                    let emptied = self.store.remove_entry(room, user, instance).await?;
                    drop(exclusive);
                    lock(&self.unheld).remove(&(room.clone(), user.clone()));
                    if emptied {
                        self.delist(room, instance).await;
                    }
                    Ok::<_, RedisBrokerError>(())
                }
            });
            outcome = outcome.and(all_of(removals).await);
        }
        outcome
    }

    /// Writes every entry this node holds again, under its current instance.
    async fn hold_everything(&self) -> Result<(), RedisBrokerError> {
        let pairs = lock(&self.held).pairs();
        let mut outcome = Ok(());
        for chunk in pairs.chunks(CHUNK) {
            let writes = chunk
                .iter()
                .map(|(room, user)| self.hold_entry_again(room, user));
            outcome = outcome.and(all_of(writes).await);
        }
        outcome
    }

    /// Writes `user`'s entry in `room` again, unless the user left; and removes it again if the
    /// user left while it was written.
    async fn hold_entry_again(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        if !lock(&self.held).contains(room, user) {
            return Ok(());
        }
        let writing = self.writing(room).await?;
        writing.write_entry(user).await?;
        drop(writing);
        if !lock(&self.held).contains(room, user) {
            self.leave(room, user).await?;
        }
        Ok(())
    }
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
