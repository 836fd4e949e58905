//! The commands of presence (a room's entries, the scripts of `presence_join.lua`,
//! `presence_leave.lua` and `sweep.lua`), of node instances' room lists, of the claims on node
//! ids and of the registry of instances (see `presence`, `claim` and `sweep` for when each is
//! sent).

use std::time::Duration;

use redis::{
    AsyncCommands as _, ExistenceCheck, ScriptInvocation, SetExpiry, SetOptions,
    SortedSetAddOptions,
};

use super::{Store, lapsed, limit};
use crate::redis_backend::error::RedisBrokerError;

/// Which registry entries [`Store::stamp`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::redis_backend) enum Stamp {
    /// Add or update.
    Always,
    /// Update only an entry still there (another node's, which it may have removed).
    Existing,
}

/// `SET NX` with an expiry of `ttl`.
fn set_nx(ttl: Duration) -> SetOptions {
    SetOptions::default()
        .conditional_set(ExistenceCheck::NX)
        .with_expiration(SetExpiry::PX(ttl.as_millis() as u64))
}

impl Store {
    /// Runs a script that writes under a lease (see `lease.lua`): its refusal is
    /// [`RedisBrokerError::Lapsed`].
    async fn run_leased(&self, script: &ScriptInvocation<'_>) -> Result<(), RedisBrokerError> {
        let _: i64 = self.run(script).await.map_err(lapsed)?;
        Ok(())
    }

    /// Lists `room` under `instance` (before its first entry there), under the lease ending at
    /// `lease_until` (see `list_room.lua`).
    pub(in crate::redis_backend) async fn list_room(
        &self,
        instance: &str,
        room: &str,
        lease_until: u64,
    ) -> Result<(), RedisBrokerError> {
        let mut list = self
            .scripts
            .list_room
            .key(self.names.instance_rooms(instance));
        list.arg(lease_until).arg(room);
        self.run_leased(&list).await
    }

    /// Writes `user`'s entry in `room`, in `held` (an instance's set there), under the lease
    /// ending at `lease_until`.
    pub(in crate::redis_backend) async fn write_entry(
        &self,
        room: &str,
        held: &str,
        user: &str,
        lease_until: u64,
    ) -> Result<(), RedisBrokerError> {
        let mut join = self.presence_script(&self.scripts.presence_join, room, held);
        join.arg(user).arg(lease_until);
        self.run_leased(&join).await
    }

    /// Removes `instance`'s entry for `user` in `room`; whether that left its set there empty.
    pub(in crate::redis_backend) async fn remove_entry(
        &self,
        room: &str,
        user: &str,
        instance: &str,
    ) -> Result<bool, RedisBrokerError> {
        let held = self.names.held(room, instance);
        let emptied: i64 = self
            .presence_script(&self.scripts.presence_leave, room, &held)
            .arg(user)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(emptied == 1)
    }

    /// Removes every entry of `instance` in `room` (see `sweep.lua`): how many there were.
    pub(in crate::redis_backend) async fn sweep_room(
        &self,
        room: &str,
        instance: &str,
    ) -> redis::RedisResult<i64> {
        let held = self.names.held(room, instance);
        self.presence_script(&self.scripts.sweep, room, &held)
            .invoke_async(&mut self.conn())
            .await
    }

    /// The rooms `instance` listed.
    pub(in crate::redis_backend) async fn instance_rooms(
        &self,
        instance: &str,
    ) -> Result<Vec<String>, RedisBrokerError> {
        let list = self.names.instance_rooms(instance);
        Ok(self.conn().smembers(list).await?)
    }

    /// Takes `rooms` off `instance`'s list.
    pub(in crate::redis_backend) async fn delist(
        &self,
        instance: &str,
        rooms: &[&str],
    ) -> Result<(), RedisBrokerError> {
        let list = self.names.instance_rooms(instance);
        Ok(self.conn().srem(list, rooms).await?)
    }

    /// How many rooms `instance`'s list still has.
    pub(in crate::redis_backend) async fn rooms_listed(
        &self,
        instance: &str,
    ) -> Result<usize, RedisBrokerError> {
        let list = self.names.instance_rooms(instance);
        Ok(self.conn().scard(list).await?)
    }

    /// Every instance in the registry.
    pub(in crate::redis_backend) async fn registered(
        &self,
    ) -> Result<Vec<String>, RedisBrokerError> {
        Ok(self.conn().zrange(self.names.nodes(), 0, -1).await?)
    }

    /// Up to `count` instances of the registry stamped at `cutoff` (Unix ms) or before, the
    /// oldest first.
    pub(in crate::redis_backend) async fn stamped_before(
        &self,
        cutoff: u64,
        count: usize,
    ) -> Result<Vec<String>, RedisBrokerError> {
        let nodes = self.names.nodes();
        let mut conn = self.conn();
        Ok(conn
            .zrangebyscore_limit(nodes, "-inf", cutoff, 0, limit(count))
            .await?)
    }

    /// Stamps `instance`'s registry entry with `now` (Unix ms, Redis's clock).
    pub(in crate::redis_backend) async fn stamp(
        &self,
        instance: &str,
        now: u64,
        which: Stamp,
    ) -> Result<(), RedisBrokerError> {
        let options = match which {
            Stamp::Always => SortedSetAddOptions::add_or_update(None),
            Stamp::Existing => SortedSetAddOptions::update_only(None),
        };
        let nodes = self.names.nodes();
        Ok(self
            .conn()
            .zadd_options(nodes, instance, now, &options)
            .await?)
    }

    /// Takes `instance` out of the registry.
    pub(in crate::redis_backend) async fn unregister(
        &self,
        instance: &str,
    ) -> Result<(), RedisBrokerError> {
        Ok(self.conn().zrem(self.names.nodes(), instance).await?)
    }

    /// Locks the sweep of dead `instance` for this node (`own`), for `ttl`: whether it got it.
    pub(in crate::redis_backend) async fn lock_sweep(
        &self,
        instance: &str,
        own: &str,
        ttl: Duration,
    ) -> Result<bool, RedisBrokerError> {
        let locked: Option<String> = self
            .conn()
            .set_options(self.names.sweep_lock(instance), own, set_nx(ttl))
            .await?;
        Ok(locked.is_some())
    }

    /// The token the claim on `node_id` holds, if any.
    pub(in crate::redis_backend) async fn claim_holder(
        &self,
        node_id: &str,
    ) -> Result<Option<String>, RedisBrokerError> {
        Ok(self.conn().get(self.names.claim(node_id)).await?)
    }

    /// Claims `node_id` with `token` for `ttl` if nobody holds it (`SET NX`), or finds it
    /// holding `token` already (a first send whose reply was lost): then Redis's clock (Unix
    /// ms) before the claim was set, else `None`.
    pub(in crate::redis_backend) async fn take_claim(
        &self,
        node_id: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, RedisBrokerError> {
        // Redis's clock before the claim is set: its lease is counted from no later than that.
        // No typed method for `TIME`.
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        let key = self.names.claim(node_id);
        let set: Option<String> = self.conn().set_options(&key, token, set_nx(ttl)).await?;
        let taken = set.is_some() || {
            let holder: Option<String> = self.conn().get(&key).await?;
            holder.as_deref() == Some(token)
        };
        Ok(taken.then_some(secs * 1000 + micros / 1000))
    }

    /// Extends the claim on `node_id` for `ttl` if it still holds `token`: 1 if extended, 0 if
    /// gone, -1 if another token holds it; and Redis's clock (Unix ms).
    pub(in crate::redis_backend) async fn refresh_claim(
        &self,
        node_id: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<(i64, u64), RedisBrokerError> {
        let refreshed = self
            .scripts
            .claim_refresh
            .key(self.names.claim(node_id))
            .arg(token)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(refreshed)
    }

    /// Gives the claim on `node_id` back, if it still holds `token`.
    pub(in crate::redis_backend) async fn release_claim(
        &self,
        node_id: &str,
        token: &str,
    ) -> Result<(), RedisBrokerError> {
        let _: i64 = self
            .scripts
            .claim_release
            .key(self.names.claim(node_id))
            .arg(token)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }
}
