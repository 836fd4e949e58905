//! This node's claim on its id: one live node per `node_id`.
//!
//! Presence entries are keyed by node id, so two live nodes with the same id would refresh,
//! sweep and remove each other's entries. At start a node claims `<prefix>node:<id>` with a token
//! of its own (`SET NX`, expiring after the presence TTL), keeps it alive with its heartbeat, and
//! gives it back on an orderly stop. A node whose id is held waits for the claim to expire (a
//! node killed without stopping holds it at most one TTL more), then refuses to start.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Script;

use super::RedisBrokerError;
use super::store::Store;

/// The claim of one running node.
#[derive(Debug)]
pub(super) struct Claim {
    key: String,
    /// Tells this process's claim from another's.
    token: String,
}

/// Extends the claim if it is still ours. KEYS: claim. ARGV: token, ttl ms.
const REFRESH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
";

/// Gives the claim back if it is still ours. KEYS: claim. ARGV: token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

impl Claim {
    pub(super) fn new(prefix: &str, node_id: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            key: format!("{prefix}node:{node_id}"),
            token: format!("{}-{nanos}", std::process::id()),
        }
    }

    /// Takes the id, waiting up to one TTL for a previous holder's claim to expire.
    pub(super) async fn acquire(&self, store: &Store) -> Result<(), RedisBrokerError> {
        let ttl = store.config.presence_ttl;
        let deadline = Instant::now() + ttl + Duration::from_secs(1);
        let mut warned = false;
        loop {
            let taken: Option<String> = redis::cmd("SET")
                .arg(&self.key)
                .arg(&self.token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut store.conn.clone())
                .await?;
            if taken.is_some() {
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

    /// Extends the claim for another TTL; `false` if another node took the id meanwhile.
    pub(super) async fn refresh(&self, store: &Store) -> Result<bool, RedisBrokerError> {
        let kept: i64 = Script::new(REFRESH)
            .key(&self.key)
            .arg(&self.token)
            .arg(store.config.presence_ttl.as_millis() as u64)
            .invoke_async(&mut store.conn.clone())
            .await?;
        Ok(kept == 1)
    }

    /// Gives the id back, if it is still ours.
    pub(super) async fn release(&self, store: &Store) -> Result<(), RedisBrokerError> {
        let _: i64 = Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut store.conn.clone())
            .await?;
        Ok(())
    }
}
