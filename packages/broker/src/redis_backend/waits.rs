//! Publishes that wait for replicas (`wait_replicas`, Redis `WAIT`), on connections of their own.
//!
//! `WAIT` counts only the writes of the connection it is sent on, and blocks that connection
//! until the replicas have them or the wait is over. On the node's shared, multiplexed command
//! connection it would hold every other command of the node to that server (joins, history,
//! presence, the heartbeat that keeps the node's claim) behind it, a whole wait each while a
//! replica lags: joins would time out and the claim lapse. So a publish that waits takes a
//! connection of its own from a small pool, runs the publish script and `WAIT` on it, and gives it
//! back: a lagging replica slows the node's publishes, and nothing else. The script and the
//! `WAIT` go as one pipeline to the room's master (in a cluster, routed by the room's slot, and
//! moved on as a whole by a `MOVED`), so the `WAIT` counts the replicas of the write it follows
//! even when the connection's slot map is stale, as right after a failover. A publish that
//! waits takes two command timeouts at most, a free connection to wait for included.
//!
//! Waiting only helps when the master has a replica: right after a failover the new master has
//! none until the old one rejoins, and every publish would wait out the full time for nothing.
//! So the node counts each master's replicas in sync (`ROLE` on one server; one `CLUSTER SHARDS`
//! for a whole cluster) every few seconds, and again soon after a shortfall, not per message; it
//! waits for as many as there are, up to `wait_replicas`, and with none it publishes on the
//! shared connection as without `wait_replicas` (one round trip).
//!
//! A message confirmed before enough replicas had it (none in sync, a replica lagging past the
//! wait, or a `WAIT` that failed once the script had stored it) is a shortfall: logged as a warning when they start, at most once a minute while they
//! last (with their count), and once when they end, not once per message.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::{Pipeline, ServerErrorKind, Value};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::config::RedisConfig;
use super::error::RedisBrokerError;
use super::link::{Link, client, cluster_builder};
use super::replicas::{Replicas, master_replicas, replicas_of_shards};
use crate::lock;

/// Connections a node's waiting publishes use at most at once: each holds one for a round trip
/// and the replication (the whole wait while a replica lags). More publishes queue for one.
const CONNECTIONS: usize = 8;
/// How often the replicas are counted again.
const RECOUNT: Duration = Duration::from_secs(5);
/// How soon after a shortfall they are counted again (the replica may be gone).
const RECOUNT_AFTER_SHORTFALL: Duration = Duration::from_secs(1);
/// How often a shortfall that goes on is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The room a publish goes to: its name (for the logs) and a key of it (its slot names its
/// master).
#[derive(Debug, Clone, Copy)]
pub(super) struct Room<'a> {
    pub(super) name: &'a str,
    pub(super) key: &'a str,
}

/// Where the connections of waiting publishes come from.
enum Source {
    Single {
        client: redis::Client,
        config: redis::AsyncConnectionConfig,
    },
    Cluster(ClusterClient),
}

/// The publishes of a node that wait for replicas: their connections, what is known of the
/// replicas, and the shortfalls.
pub(super) struct Waits {
    /// Replicas a message should reach (`wait_replicas`, at least 1).
    wanted: u32,
    /// How long a `WAIT` waits.
    wait: Duration,
    /// How long a publish that waits may take in all, a free connection to wait for included:
    /// two command timeouts.
    deadline: Duration,
    source: Source,
    /// Connections no publish uses now.
    idle: Mutex<Vec<Link>>,
    /// One per connection in use or idle: [`CONNECTIONS`] at most.
    permits: Semaphore,
    known: Mutex<Known>,
    /// Whether a publish is counting the replicas now (the others go on with what is known).
    counting: AtomicBool,
    shortfalls: Mutex<Shortfalls>,
}

impl std::fmt::Debug for Waits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waits")
            .field("wanted", &self.wanted)
            .finish_non_exhaustive()
    }
}

/// What the node last learnt of the replicas.
#[derive(Debug, Default)]
struct Known {
    /// When: `None` before the first count.
    counted: Option<Instant>,
    /// Whether a shortfall since asks for a count sooner.
    doubted: bool,
    replicas: Replicas,
}

impl Waits {
    /// The waits of a node with `config` (whose `wait_replicas` is at least 1); connects
    /// nothing yet.
    pub(super) fn new(config: &RedisConfig) -> redis::RedisResult<Self> {
        let source = if config.cluster {
            Source::Cluster(cluster_builder(config)?.build()?)
        } else {
            let timeout = Some(config.command_timeout);
            Source::Single {
                client: client(config)?,
                config: redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout),
            }
        };
        Ok(Self {
            wanted: config.wait_replicas,
            wait: config.command_timeout / 10,
            deadline: config.command_timeout * 2,
            source,
            idle: Mutex::default(),
            permits: Semaphore::new(CONNECTIONS),
            known: Mutex::default(),
            counting: AtomicBool::new(false),
            shortfalls: Mutex::default(),
        })
    }

    /// How many replicas a publish to `room` should wait for now: 0 if its master has none in
    /// sync (a shortfall, logged). Counts them first when the count is due.
    pub(super) async fn wanted(&self, room: Room<'_>) -> u32 {
        if self.count_due() && !self.counting.swap(true, Ordering::Acquire) {
            // Cleared however this ends, a publish given up on included.
            let _counting = Counting(&self.counting);
            let counted = self.count().await;
            let mut known = lock(&self.known);
            match counted {
                Ok(replicas) => known.replicas = replicas,
                Err(err) => {
                    tracing::debug!(error = %err, "could not count the replicas");
                    known.replicas = Replicas::Unknown;
                }
            }
            known.counted = Some(Instant::now());
            known.doubted = false;
        }
        let replicas = lock(&self.known).replicas.of(room.key);
        let wanted = replicas.map_or(self.wanted, |replicas| replicas.min(self.wanted));
        if wanted == 0 {
            lock(&self.shortfalls).short(
                room.name,
                0,
                self.wanted,
                "the master has no replica in sync",
            );
        }
        wanted
    }

    fn count_due(&self) -> bool {
        let known = lock(&self.known);
        let after = if known.doubted {
            RECOUNT_AFTER_SHORTFALL
        } else {
            RECOUNT
        };
        known.counted.is_none_or(|at| at.elapsed() >= after)
    }

    /// Runs the publish script `invocation` for `room`, then waits until `wanted` replicas (at
    /// least 1) have it or the wait is over, on a connection nothing else uses meanwhile, all
    /// within [`Waits::deadline`]. A shortfall (a `WAIT` that failed included) is logged, not an
    /// error: the message is stored, and refusing it would stop the room while a replica lags
    /// (and, for a sender without a nonce, have it stored again when sent again).
    pub(super) async fn publish<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        room: Room<'_>,
        wanted: u32,
    ) -> Result<T, RedisBrokerError> {
        tokio::time::timeout(
            self.deadline,
            self.publish_and_wait(invocation, room, wanted),
        )
        .await
        .unwrap_or_else(|_| {
            let late = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "a publish waiting for replicas took too long",
            );
            Err(redis::RedisError::from(late).into())
        })
    }

    async fn publish_and_wait<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        room: Room<'_>,
        wanted: u32,
    ) -> Result<T, RedisBrokerError> {
        let (permit, mut link) = self.lease().await?;
        let Room { name: room, key } = room;
        let replies = match self.send(&mut link, invocation, key, wanted).await {
            // An idle connection that died (Redis restarted): once more on a new one. Safe, as
            // every publish has a nonce.
            Err(err) if err.is_connection_dropped() => {
                link = self.connect().await?;
                self.send(&mut link, invocation, key, wanted).await?
            }
            replies => replies?,
        };
        let mut replies = replies.into_iter();
        let stored = replies.next().unwrap_or(Value::Nil).extract_error()?;
        let reply = redis::from_redis_value(stored).map_err(redis::RedisError::from)?;
        self.give_back(permit, link);
        let acked = match replies.next() {
            Some(Value::Int(acked)) => Ok(u32::try_from(acked).unwrap_or(0)),
            other => Err(other),
        };
        let mut shortfalls = lock(&self.shortfalls);
        let acked = match acked {
            Ok(acked) => acked,
            Err(failed) => {
                tracing::debug!(?failed, %room, "WAIT failed after the publish");
                shortfalls.short(room, 0, self.wanted, "the wait for replicas failed");
                lock(&self.known).doubted = true;
                return Ok(reply);
            }
        };
        if acked < self.wanted {
            let why = if acked < wanted {
                "a replica lags: the message is not on enough replicas in time"
            } else {
                "the master has fewer replicas in sync than wanted"
            };
            shortfalls.short(room, acked, self.wanted, why);
            if acked < wanted {
                lock(&self.known).doubted = true;
            }
        } else {
            shortfalls.met();
        }
        Ok(reply)
    }

    /// Sends the publish script `invocation` and a `WAIT` for `wanted` replicas as one pipeline
    /// to the master of `key` (see [`Link::send_to_master_of`]): their replies. A server that
    /// does not have the script yet gets it, and the pipeline again.
    async fn send(
        &self,
        link: &mut Link,
        invocation: &redis::ScriptInvocation<'_>,
        key: &str,
        wanted: u32,
    ) -> redis::RedisResult<Vec<Value>> {
        let replies = link
            .send_to_master_of(key, self.pipeline(invocation, wanted), 2)
            .await?;
        let no_script = matches!(
            replies.first(),
            Some(Value::ServerError(err)) if err.kind() == Some(ServerErrorKind::NoScript)
        );
        if !no_script {
            return Ok(replies);
        }
        invocation.load_async(link).await?;
        link.send_to_master_of(key, self.pipeline(invocation, wanted), 2)
            .await
    }

    fn pipeline(&self, invocation: &redis::ScriptInvocation<'_>, wanted: u32) -> Pipeline {
        let mut pipeline = redis::pipe();
        pipeline
            .invoke_script(invocation)
            .cmd("WAIT")
            .arg(wanted)
            .arg(
                u64::try_from(self.wait.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        pipeline
    }

    /// A connection of the pool (an idle one, or a new one), with the permit that counts it.
    /// Dropped instead of given back, the connection is closed (after an error, it may be dead).
    async fn lease(&self) -> Result<(SemaphorePermit<'_>, Link), RedisBrokerError> {
        // Never closed: acquiring cannot fail.
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RedisBrokerError::Unavailable)?;
        let idle = lock(&self.idle).pop();
        let link = match idle {
            Some(link) => link,
            None => self.connect().await?,
        };
        Ok((permit, link))
    }

    fn give_back(&self, permit: SemaphorePermit<'_>, link: Link) {
        lock(&self.idle).push(link);
        drop(permit);
    }

    async fn connect(&self) -> redis::RedisResult<Link> {
        match &self.source {
            Source::Single { client, config } => Ok(Link::Own(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?,
            )),
            Source::Cluster(client) => Ok(Link::Cluster(client.get_async_connection().await?)),
        }
    }

    /// Counts the replicas in sync of every master, on a connection of the pool.
    async fn count(&self) -> Result<Replicas, RedisBrokerError> {
        let (permit, mut link) = self.lease().await?;
        let replicas = match &self.source {
            Source::Single { .. } => {
                let role: Value = redis::cmd("ROLE").query_async(&mut link).await?;
                // A replica has no one to wait for (the command link reports it).
                Replicas::Single(master_replicas(&role).unwrap_or(0))
            }
            Source::Cluster(_) => {
                let shards: Value = redis::cmd("CLUSTER")
                    .arg("SHARDS")
                    .query_async(&mut link)
                    .await?;
                Replicas::Slots(replicas_of_shards(&shards))
            }
        };
        self.give_back(permit, link);
        Ok(replicas)
    }
}

/// Clears [`Waits::counting`] when dropped.
struct Counting<'a>(&'a AtomicBool);

impl Drop for Counting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Messages confirmed before enough replicas had them, logged when they start, at most once a
/// [`LOG_EVERY`] while they last, and when they end.
#[derive(Debug, Default)]
struct Shortfalls {
    count: u64,
    logged: Option<Instant>,
}

impl Shortfalls {
    fn short(&mut self, room: &str, acked: u32, wanted: u32, why: &str) {
        self.count += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                %room,
                acked,
                wanted,
                shortfalls = self.count,
                "messages confirmed before reaching the wanted replicas: {why}"
            );
            self.logged = Some(Instant::now());
        }
    }

    fn met(&mut self) {
        if self.count > 0 {
            tracing::info!(
                shortfalls = self.count,
                "messages reach the wanted replicas again"
            );
        }
        *self = Self::default();
    }
}
