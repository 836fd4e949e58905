//! This node's claim on its id: one live node per `node_id`, and the instance it runs as.
//!
//! At start a node claims `<prefix>node:<id>` with a fresh token (`SET NX`, expiring after the
//! presence TTL), keeps it alive with its heartbeat, and gives it back on an orderly stop. A node
//! whose id is held waits for the claim to expire (a node killed without stopping holds it at
//! most one TTL more), then refuses to start.
//!
//! The claim is also how other nodes tell whether a node *instance* (`<id>:<token>`, the name
//! its presence entries are held under, see `presence`) is alive: it is while the claim holds its
//! token. A node whose claim expired (Redis was out of its reach for a whole TTL) may have been
//! swept meanwhile, so it does not extend the old claim: it claims the id again with a new token,
//! that is as a new instance, and holds its entries again under that name.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Script;

use super::RedisBrokerError;
use super::store::Store;
use crate::lock;

/// The claim of one running node.
#[derive(Debug)]
pub(super) struct Claim {
    key: String,
    /// Tells this instance's claim from any other's.
    token: Mutex<String>,
}

/// What a heartbeat found of the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refreshed {
    /// Still ours, extended.
    Kept,
    /// Expired: this instance may have been swept; make a new one ([`Claim::renew`]).
    Expired,
    /// Another node holds the id.
    Taken,
}

/// Extends the claim if it is still ours: 1; 0 if it is gone, -1 if another token holds it.
/// KEYS: claim. ARGV: token, ttl ms.
const REFRESH: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return -1 end
return 0
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

    /// `SET NX` with our token; on success the store runs as this instance.
    async fn take(&self, store: &Store) -> Result<bool, RedisBrokerError> {
        let token = lock(&self.token).clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(store.config.presence_ttl.as_millis() as u64)
            .query_async(&mut store.conn.clone())
            .await?;
        if taken.is_some() {
            *lock(&store.instance) = Arc::from(format!("{}:{token}", store.config.node_id));
        }
        Ok(taken.is_some())
    }

    /// Extends the claim for another TTL, if it is still ours.
    pub(super) async fn refresh(&self, store: &Store) -> Result<Refreshed, RedisBrokerError> {
        let token = lock(&self.token).clone();
        let kept: i64 = Script::new(REFRESH)
            .key(&self.key)
            .arg(&token)
            .arg(store.config.presence_ttl.as_millis() as u64)
            .invoke_async(&mut store.conn.clone())
            .await?;
        Ok(match kept {
            1 => Refreshed::Kept,
            0 => Refreshed::Expired,
            _ => Refreshed::Taken,
        })
    }

    /// After the claim expired: claims the id again as a new instance. `false` if another
    /// node took it first.
    pub(super) async fn renew(&self, store: &Store) -> Result<bool, RedisBrokerError> {
        *lock(&self.token) = new_token();
        self.take(store).await
    }

    /// Gives the id back, if it is still ours.
    pub(super) async fn release(&self, store: &Store) -> Result<(), RedisBrokerError> {
        let token = lock(&self.token).clone();
        let _: i64 = Script::new(RELEASE)
            .key(&self.key)
            .arg(&token)
            .invoke_async(&mut store.conn.clone())
            .await?;
        Ok(())
    }
}
