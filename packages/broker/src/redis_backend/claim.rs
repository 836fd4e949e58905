//! This node's claim on its id: one live node per `node_id`, the instance it runs as, and the
//! lease that fences that instance's presence writes.
//!
//! At start a node claims `<prefix>node:<id>` with a fresh token (`SET NX`, expiring after the
//! presence TTL), and gives it back on an orderly stop. A node whose id is held waits for the
//! claim to expire (a node killed without stopping holds it at most one TTL more), then refuses
//! to start. The claim is kept alive by its own task, on its own timer ([`claim_task`]): every
//! heartbeat one script extends it and one stamps the registry of instances (`nodes`, scored by
//! Redis's clock), whatever else the node is doing (sweeps, repairs), so no amount of other work
//! lets it lapse. Stamps are Redis's clock, as read by the refresh (see [`Lease::redis_now`]).
//!
//! The claim is also how other nodes tell whether a node *instance* (`<id>:<token>`, the name
//! its presence entries are held under, see `presence`) is alive: it is while the claim holds its
//! token. A node whose claim expired (Redis was out of its reach for a whole TTL) may have been
//! swept meanwhile, so it does not extend the old claim: it claims the id again with a new token,
//! that is as a new instance, and holds its entries again under that name. A claim is the node's
//! whenever the key holds its token, however it learnt it: a `SET NX` whose reply was lost (a
//! timeout, or a retry that found the key already set by the first send) is still its claim,
//! and every refresh checks that the instance the node writes as is the one its claim names.
//!
//! # The lease
//!
//! Other nodes sweep an instance once its claim has lapsed. A write of that instance arriving
//! after the sweep (the node was cut off and did not know, or the write was delayed on the way)
//! would hold a user online with nothing left to sweep it. So every presence write carries the
//! instance's *lease*: three quarters of a TTL from when Redis last extended the claim, on
//! Redis's clock, which the scripts compare with `TIME` and refuse to pass (`LAPSED`). The claim
//! lives a whole TTL from that moment, so a write is either run before the claim could lapse
//! (and before any sweep of it) or not at all. The node also keeps the lease on its own clock,
//! from when it sent the refresh, and does not send writes past it: it asks for a refresh
//! instead and waits for it. The quarter is a margin for Redis Cluster, where the claim and a
//! room may live on shards whose clocks differ; with one Redis it is one clock.
//!
//! So the node's presence hangs on the one shard holding its claim: while that shard is out of
//! the node's reach for ¾ of a TTL (down, failing over, partitioned), or another node holds its
//! id, every presence write (every join) is refused, on every shard. The node then says it is
//! not ready ([`lease_running`]), until a refresh or a new claim gives it a lease again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Script;

use super::RedisBrokerError;
use super::presence::Failures;
use super::store::Store;
use crate::lock;

/// The claim of one running node.
#[derive(Debug)]
pub(super) struct Claim {
    key: String,
    /// Tells this instance's claim from any other's.
    token: Mutex<String>,
    refresh: Script,
    release: Script,
}

/// The instance this node writes presence as, and until when (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct Lease {
    /// `<node id>:<claim token>`.
    pub(super) instance: Arc<str>,
    /// Redis's clock (Unix ms) from which the instance's writes are refused.
    pub(super) until_ms: u64,
    /// When the node stops sending writes as the instance, on its own clock.
    pub(super) local_until: Instant,
    /// Redis's clock (Unix ms) when the claim was last extended, and when (on ours) the
    /// command doing it was sent: the node reads Redis's clock off them ([`Lease::redis_now`]).
    redis_ms: u64,
    sent: Instant,
}

impl Lease {
    /// No lease yet: every write waits for the claim.
    pub(super) fn none() -> Self {
        let now = Instant::now();
        Self {
            instance: Arc::from(""),
            until_ms: 0,
            local_until: now,
            redis_ms: 0,
            sent: now,
        }
    }

    /// Redis's clock now (Unix ms), as last read from it plus the time passed since on this
    /// node's monotonic clock: ahead by at most a round trip, and free of the node's wall clock.
    pub(super) fn redis_now(&self) -> u64 {
        self.redis_ms + self.sent.elapsed().as_millis() as u64
    }
}

/// How long a lease lasts from when Redis extended the claim: the claim's TTL less a quarter.
fn lease_span(ttl: Duration) -> Duration {
    ttl - ttl / 4
}

/// What a refresh found of the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refreshed {
    /// Still ours, extended.
    Kept,
    /// Expired: this instance may have been swept; make a new one ([`Claim::renew`]).
    Expired,
    /// Another node holds the id.
    Taken,
}

/// Extends the claim if it is still ours. KEYS: claim. ARGV: token, ttl ms. Returns {1 if
/// extended, 0 if gone, -1 if another token holds it; Redis's clock in Unix ms}.
const REFRESH: &str = r"
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, now}
end
if holder then return {-1, now} end
return {0, now}
";

/// Gives the claim back if it is still ours. KEYS: claim. ARGV: token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A token no other instance has: this process and the time.
fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

impl Claim {
    pub(super) fn new(store: &Store) -> Self {
        Self {
            key: store.claim_key(&store.config.node_id),
            token: Mutex::new(new_token()),
            refresh: Script::new(REFRESH),
            release: Script::new(RELEASE),
        }
    }

    /// Takes the id, waiting up to one TTL for a previous holder's claim to expire; the store
    /// then runs as this claim's instance.
    pub(super) async fn acquire(&self, store: &Store) -> Result<(), RedisBrokerError> {
        let ttl = store.config.presence_ttl;
        let deadline = Instant::now() + ttl + Duration::from_secs(1);
        let mut warned = false;
        loop {
            if self.take(store).await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RedisBrokerError::NodeIdTaken(store.config.node_id.clone()));
            }
            if !warned {
                tracing::warn!(
                    node = %store.config.node_id,
                    "node id held by another node (or by one that died less than a presence TTL ago); waiting for it"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `SET NX` with our token; the key already holding our token (a first send whose reply
    /// was lost) counts as taken. Taken, the store runs as this instance.
    async fn take(&self, store: &Store) -> Result<bool, RedisBrokerError> {
        let token = lock(&self.token).clone();
        let sent = Instant::now();
        // Redis's clock before the claim is set: its lease is counted from no later than that.
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut store.conn.clone())
            .await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(store.config.presence_ttl.as_millis() as u64)
            .query_async(&mut store.conn.clone())
            .await?;
        let taken = set.is_some() || {
            let holder: Option<String> = redis::cmd("GET")
                .arg(&self.key)
                .query_async(&mut store.conn.clone())
                .await?;
            holder.as_deref() == Some(token.as_str())
        };
        if taken {
            self.grant(store, &token, sent, secs * 1000 + micros / 1000);
        }
        Ok(taken)
    }

    /// The claim with `token` is ours, extended by Redis at `redis_ms` (its clock) and sent at
    /// `sent` (ours): the store writes as its instance until the lease ends. Whether that
    /// instance is new to the store.
    fn grant(&self, store: &Store, token: &str, sent: Instant, redis_ms: u64) -> bool {
        let instance = format!("{}:{token}", store.config.node_id);
        let span = lease_span(store.config.presence_ttl);
        let mut renewed = false;
        store.lease.send_modify(|lease| {
            if *lease.instance != *instance {
                lease.instance = Arc::from(instance);
                renewed = true;
            }
            lease.until_ms = redis_ms + span.as_millis() as u64;
            lease.local_until = sent + span;
            lease.redis_ms = redis_ms;
            lease.sent = sent;
        });
        renewed
    }

    /// Extends the claim for another TTL, if it is still ours; the store's lease with it.
    async fn refresh(&self, store: &Store) -> Result<Refreshed, RedisBrokerError> {
        let token = lock(&self.token).clone();
        let sent = Instant::now();
        let (kept, redis_ms): (i64, u64) = self
            .refresh
            .key(&self.key)
            .arg(&token)
            .arg(store.config.presence_ttl.as_millis() as u64)
            .invoke_async(&mut store.conn.clone())
            .await?;
        Ok(match kept {
            1 => {
                if self.grant(store, &token, sent, redis_ms) {
                    tracing::warn!(
                        node = %store.config.node_id,
                        "the node's new claim was made though its reply was lost: holding presence again as that instance"
                    );
                }
                Refreshed::Kept
            }
            0 => Refreshed::Expired,
            _ => Refreshed::Taken,
        })
    }

    /// After the claim expired: claims the id again as a new instance. `false` if another
    /// node took it first.
    async fn renew(&self, store: &Store) -> Result<bool, RedisBrokerError> {
        *lock(&self.token) = new_token();
        self.take(store).await
    }

    /// One beat of [`claim_task`]: the claim kept (or made again), then the registry stamp.
    async fn keep(&self, store: &Store) -> Result<(), RedisBrokerError> {
        let ours = match self.refresh(store).await? {
            Refreshed::Kept => true,
            Refreshed::Expired => {
                let renewed = self.renew(store).await?;
                if renewed {
                    tracing::warn!(
                        node = %store.config.node_id,
                        "the node's claim expired (Redis was out of reach for a presence TTL): holding presence again as a new instance"
                    );
                }
                renewed
            }
            Refreshed::Taken => false,
        };
        if !ours {
            tracing::error!(
                node = %store.config.node_id,
                "another node took this node's id (its claim expired while Redis was unreachable): this node's presence writes are refused until the id is free again"
            );
            return Ok(());
        }
        stamp(store, &store.instance(), Stamp::Always).await
    }

    /// Gives the id back, if it is still ours.
    pub(super) async fn release(&self, store: &Store) -> Result<(), RedisBrokerError> {
        let token = lock(&self.token).clone();
        let _: i64 = self
            .release
            .key(&self.key)
            .arg(&token)
            .invoke_async(&mut store.conn.clone())
            .await?;
        Ok(())
    }
}

/// Keeps the claim alive and the registry stamped, every heartbeat and whenever a write finds
/// the lease over ([`Store::kick`]).
pub(super) async fn claim_task(store: Arc<Store>, claim: Arc<Claim>) {
    let mut interval = tokio::time::interval(store.config.heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = Failures::new("presence claim refresh");
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = store.kick.notified() => {}
        }
        match claim.keep(&store).await {
            Ok(()) => failures.recovered(),
            Err(err) => failures.failed(&err),
        }
    }
}

/// The lease to write presence under: the current one if it has not ended on this node's
/// clock, else the next, asked for at once and waited for (up to two command timeouts).
pub(super) async fn fresh_lease(store: &Store) -> Result<Lease, RedisBrokerError> {
    let mut lease = store.lease.subscribe();
    let deadline = tokio::time::Instant::now() + store.config.command_timeout * 2;
    loop {
        {
            let current = lease.borrow_and_update();
            if current.local_until > Instant::now() {
                return Ok(current.clone());
            }
        }
        store.kick.notify_one();
        match tokio::time::timeout_at(deadline, lease.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(RedisBrokerError::Lapsed),
        }
    }
}

/// Whether the node's lease runs now, on its own clock: else every presence write waits for a
/// claim and most likely fails, and the node is not ready ([`super::RedisBroker`]'s `is_ready`,
/// polled by `/readyz`: one read of the lease, no command).
pub(super) fn lease_running(store: &Store) -> bool {
    store.lease.borrow().local_until > Instant::now()
}

/// Which registry entries [`stamp`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stamp {
    /// Add or update.
    Always,
    /// Update only an entry still there (another node's, which it may have removed).
    Existing,
}

/// Stamps `instance`'s registry entry with Redis's clock ([`Lease::redis_now`]).
pub(super) async fn stamp(
    store: &Store,
    instance: &str,
    which: Stamp,
) -> Result<(), RedisBrokerError> {
    let now = store.lease.borrow().redis_now();
    let mut zadd = redis::cmd("ZADD");
    zadd.arg(store.nodes_key());
    if which == Stamp::Existing {
        zadd.arg("XX");
    }
    let _: i64 = zadd
        .arg(now)
        .arg(instance)
        .query_async(&mut store.conn.clone())
        .await?;
    Ok(())
}
