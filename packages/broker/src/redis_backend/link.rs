//! The command connections to Redis, to one server or to a Redis Cluster ([`Link`]), and the
//! settings every connection of the node shares (TCP keepalive, TLS, the cluster's seeds), which
//! the live-event connections use too (see `driver`).
//!
//! In a cluster, a room's keys and its channel share the hash tag `{room}`, so a room lives on
//! one shard: its commands and scripts go to that shard's master (the `redis` crate's cluster
//! client routes them and follows `MOVED`/`ASK`), and its live events travel on a *sharded*
//! channel (`SPUBLISH`/`SSUBSCRIBE`), which only that shard carries, instead of a classic
//! channel every shard would broadcast. The node's pub/sub connections are then one per shard,
//! not one per room.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::config::RedisConfig;
use super::watched::Watched;

/// A command connection to one Redis server or to a cluster.
#[derive(Clone)]
pub(super) enum Link {
    /// The node's shared connection to one server, watched (see `watched`).
    Single(Watched),
    /// A connection to one server that one caller uses at a time: a publish that waits for
    /// replicas (see `waits`).
    Own(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Link {
    /// Sends one command. An `async fn`, so a caller that awaits it inside its own future (the
    /// retry) allocates nothing more per command.
    pub(super) async fn send(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Self::Single(conn) => conn.send(cmd).await,
            Self::Own(conn) => conn.send_packed_command(cmd).await,
            Self::Cluster(conn) => conn.req_packed_command(cmd).await,
        }
    }

    /// Sends a pipeline (see [`Link::send`]).
    pub(super) async fn send_pipeline(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        match self {
            Self::Single(conn) => conn.send_pipeline(pipeline, offset, count).await,
            Self::Own(conn) => conn.send_packed_commands(pipeline, offset, count).await,
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count).await,
        }
    }

    /// Whether commands get through: a watched connection's health (see `watched`); a cluster
    /// client's shards are its own affair.
    pub(super) fn is_up(&self) -> bool {
        match self {
            Self::Single(conn) => conn.is_up(),
            Self::Own(_) | Self::Cluster(_) => true,
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.send(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.send_pipeline(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Own(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Link {
    /// Sends `pipeline` of `count` commands to the master of `key` (a room's key: the master
    /// of the room), as one: in a cluster it is routed by the key's slot as a whole, and a `MOVED` or `ASK` sends it all on to the node
    /// named, so every command of it runs on the same connection of the same master. A `WAIT`
    /// sent after a write on its own would be routed by the connection's slot map alone, which
    /// may be stale after a failover or a slot move: it could run on a replica (an error) or on
    /// another master (a false count).
    pub(super) async fn send_to_master_of(
        &mut self,
        key: &str,
        pipeline: Pipeline,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        match self {
            Self::Single(_) | Self::Own(_) => self.send_pipeline(&pipeline, 0, count).await,
            Self::Cluster(conn) => {
                use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(key, SlotAddr::Master);
                conn.route_pipeline(
                    pipeline,
                    0,
                    count,
                    SingleNodeRoutingInfo::SpecificNode(route),
                )
                .await
            }
        }
    }
}

/// Keepalive probes, so the kernel notices a peer that vanished, and no Nagle delay on small
/// commands.
pub(super) fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5));
    redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
}

/// The TLS certificates to trust, when the config names a CA.
pub(super) fn certificates(config: &RedisConfig) -> Option<redis::TlsCertificates> {
    config.tls_ca.as_ref().map(|ca| redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.clone()),
    })
}

/// The cluster's seed nodes: `config.url` split at commas.
pub(super) fn seeds(config: &RedisConfig) -> redis::RedisResult<Vec<ConnectionInfo>> {
    config
        .url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(IntoConnectionInfo::into_connection_info)
        .collect()
}

/// Retries of a cluster client's command (after a redirect, a dropped connection, or a
/// `CLUSTERDOWN`/`TRYAGAIN` during a failover), and how long it sleeps before one that waits
/// (ms). The crate's defaults (16 retries, sleeps from 1.28 s, doubling) would sleep past the
/// command timeout, which bounds each command with all its retries anyway: a few short sleeps
/// instead let a command that meets a failover's last moments still succeed within it.
const CLUSTER_RETRIES: u32 = 3;
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (100, 500);

/// A cluster client's settings: the seeds, timeouts (a command's, retries included, is the
/// command timeout), retries, keepalive and TLS.
pub(super) fn cluster_builder(config: &RedisConfig) -> redis::RedisResult<ClusterClientBuilder> {
    let mut builder = ClusterClientBuilder::new(seeds(config)?)
        .connection_timeout(config.command_timeout)
        .response_timeout(config.command_timeout)
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
        .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1)
        .tcp_settings(tcp_settings());
    if let Some(certificates) = certificates(config) {
        builder = builder.certs(certificates);
    }
    Ok(builder)
}

/// A client of the one server `config.url` names, with keepalive and TLS.
pub(super) fn client(config: &RedisConfig) -> redis::RedisResult<redis::Client> {
    let info = config
        .url
        .as_str()
        .into_connection_info()?
        .set_tcp_settings(tcp_settings());
    match certificates(config) {
        Some(certificates) => redis::Client::build_with_tls(info, certificates),
        None => redis::Client::open(info),
    }
}

/// How often a command link that is down is checked: a quarter of the command timeout, within
/// these bounds.
const PROBE_MIN: Duration = Duration::from_millis(50);
const PROBE_MAX: Duration = Duration::from_secs(1);

/// Connects the command link, to one server or a cluster.
pub(super) async fn connect(config: &RedisConfig) -> redis::RedisResult<Link> {
    if config.cluster {
        let link = cluster_builder(config)?
            .build()?
            .get_async_connection()
            .await?;
        return Ok(Link::Cluster(link));
    }
    let client = client(config)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.command_timeout))
        .set_response_timeout(Some(config.command_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let probe_every = (config.command_timeout / 4).clamp(PROBE_MIN, PROBE_MAX);
    let link = Watched::connect(client, manager_config, probe_every).await?;
    Ok(Link::Single(link))
}
