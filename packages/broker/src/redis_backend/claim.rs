//! This node's claim on its id: one live node per `node_id`, the instance it runs as, and the
//! lease that fences that instance's presence writes.
//!
//! At start a node claims `<prefix>node:<id>` with a fresh token (`SET NX`, expiring after the
//! presence TTL), and gives it back on an orderly stop. A node whose id is held waits for the
//! claim to expire (a node killed without stopping holds it at most one TTL more), then refuses
//! to start. The claim is kept alive by its own task, on its own timer ([`Claim::task`]): every
//! heartbeat one script extends it and one stamps the registry of instances (`nodes`, scored by
//! Redis's clock), whatever else the node is doing (sweeps, repairs), so no amount of other work
//! lets it lapse. Stamps are Redis's clock, as read by the refresh (see `Leases::redis_now`).
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
//! not ready (`Leases::running`), until a refresh or a new claim gives it a lease again. The
//! lease itself, as the writes read it, is `lease`'s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::codec::instance_name;
use super::error::RedisBrokerError;
use super::failures::Failures;
use super::lease::Leases;
use super::store::{Stamp, Store};
use crate::lock;

/// The claim of one running node.
#[derive(Debug)]
pub(super) struct Claim {
    store: Arc<Store>,
    leases: Arc<Leases>,
    /// Tells this instance's claim from any other's.
    token: Mutex<String>,
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

/// A token no other instance has: this process and the time.
fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

impl Claim {
    /// The claim of the node `store` names, granting its leases in `leases`; not taken yet.
    pub(super) fn new(store: Arc<Store>, leases: Arc<Leases>) -> Self {
        Self {
            store,
            leases,
            token: Mutex::new(new_token()),
        }
    }

    fn node_id(&self) -> &str {
        &self.store.config.node_id
    }

    /// Takes the id, waiting up to one TTL for a previous holder's claim to expire; the node
    /// then runs as this claim's instance.
    pub(super) async fn acquire(&self) -> Result<(), RedisBrokerError> {
        let ttl = self.store.config.presence_ttl;
        let deadline = Instant::now() + ttl + Duration::from_secs(1);
        let mut warned = false;
        loop {
            if self.take().await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RedisBrokerError::NodeIdTaken(self.node_id().to_owned()));
            }
            if !warned {
                tracing::warn!(
                    node = %self.node_id(),
                    "node id held by another node (or by one that died less than a presence TTL ago); waiting for it"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `SET NX` with our token; the key already holding our token (a first send whose reply
    /// was lost) counts as taken. Taken, the node runs as this instance.
    async fn take(&self) -> Result<bool, RedisBrokerError> {
        let token = lock(&self.token).clone();
        let sent = Instant::now();
        let taken = self
            .store
            .take_claim(self.node_id(), &token, self.store.config.presence_ttl)
            .await?;
        if let Some(redis_ms) = taken {
            self.grant(&token, sent, redis_ms);
        }
        Ok(taken.is_some())
    }

    /// The claim with `token` is ours, extended by Redis at `redis_ms` (its clock) and sent at
    /// `sent` (ours): the node writes as its instance until the lease ends. Whether that
    /// instance is new.
    fn grant(&self, token: &str, sent: Instant, redis_ms: u64) -> bool {
        let instance = instance_name(self.node_id(), token);
        let span = lease_span(self.store.config.presence_ttl);
        self.leases.grant(&instance, redis_ms, sent, span)
    }

    /// Extends the claim for another TTL, if it is still ours; the node's lease with it.
    async fn refresh(&self) -> Result<Refreshed, RedisBrokerError> {
        let token = lock(&self.token).clone();
        let sent = Instant::now();
        let (kept, redis_ms) = self
            .store
            .refresh_claim(self.node_id(), &token, self.store.config.presence_ttl)
            .await?;
        Ok(match kept {
            1 => {
                if self.grant(&token, sent, redis_ms) {
                    tracing::warn!(
                        node = %self.node_id(),
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
    async fn renew(&self) -> Result<bool, RedisBrokerError> {
        *lock(&self.token) = new_token();
        self.take().await
    }

    /// One beat of [`Claim::task`]: the claim kept (or made again), then the registry stamp.
    async fn keep(&self) -> Result<(), RedisBrokerError> {
        let ours = match self.refresh().await? {
            Refreshed::Kept => true,
            Refreshed::Expired => {
                let renewed = self.renew().await?;
                if renewed {
                    tracing::warn!(
                        node = %self.node_id(),
                        "the node's claim expired (Redis was out of reach for a presence TTL): holding presence again as a new instance"
                    );
                }
                renewed
            }
            Refreshed::Taken => false,
        };
        if !ours {
            tracing::error!(
                node = %self.node_id(),
                "another node took this node's id (its claim expired while Redis was unreachable): this node's presence writes are refused until the id is free again"
            );
            return Ok(());
        }
        let now = self.leases.redis_now();
        self.store
            .stamp(&self.leases.instance(), now, Stamp::Always)
            .await
    }

    /// Gives the id back, if it is still ours.
    pub(super) async fn release(&self) -> Result<(), RedisBrokerError> {
        let token = lock(&self.token).clone();
        self.store.release_claim(self.node_id(), &token).await
    }

    /// Keeps the claim alive and the registry stamped, every heartbeat and whenever a write
    /// finds the lease over (`Leases::kicked`).
    pub(super) async fn task(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.store.config.heartbeat);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = Failures::new("presence claim refresh");
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = self.leases.kicked() => {}
            }
            match self.keep().await {
                Ok(()) => failures.recovered(),
                Err(err) => failures.failed(&err),
            }
        }
    }
}
