//! The connections to Redis, to one server or to a Redis Cluster: [`Link`] carries commands,
//! [`PubSubSource`] makes the live-event connections (see `driver`).
//!
//! In a cluster, a room's keys and its channel share the hash tag `{room}`, so a room lives on
//! one shard: its commands and scripts go to that shard's master (the `redis` crate's cluster
//! client routes them and follows `MOVED`/`ASK`), and its live events travel on a *sharded*
//! channel (`SPUBLISH`/`SSUBSCRIBE`), which only that shard carries, instead of a classic
//! channel every shard would broadcast. The node's pub/sub connections are then one per shard,
//! not one per room.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::RedisConfig;
use super::driver::PubSubSource;

/// A command connection to one Redis server or to a cluster.
#[derive(Clone)]
pub(super) enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Link {
    /// Waits until `replicas` replicas have every write this node made on `room`'s shard (or
    /// `timeout` passed); returns how many have. Sent to the room's master: in a cluster the
    /// node has one connection per master, so that covers the room's writes.
    pub(super) async fn wait_replicas(
        &mut self,
        room: &str,
        replicas: u32,
        timeout: Duration,
    ) -> redis::RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(
            u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        match self {
            Self::Single(conn) => wait.query_async(conn).await,
            Self::Cluster(conn) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::new(slot(room), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let acked = conn.route_command(wait, routing).await?;
                redis::from_redis_value(acked).map_err(Into::into)
            }
        }
    }
}

/// The cluster slot of `room`'s keys, all tagged `{room}`: CRC16 (XMODEM) of the tag, mod 16384.
pub(super) fn slot(room: &str) -> u16 {
    let mut crc: u16 = 0;
    for byte in room.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc & 0x3fff
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

fn cluster_builder(config: &RedisConfig) -> redis::RedisResult<ClusterClientBuilder> {
    let mut builder = ClusterClientBuilder::new(seeds(config)?)
        .connection_timeout(config.command_timeout)
        .response_timeout(config.command_timeout)
        .tcp_settings(tcp_settings());
    if let Some(certificates) = certificates(config) {
        builder = builder.certs(certificates);
    }
    Ok(builder)
}

/// Connects the command link and prepares the pub/sub source, for one server or a cluster.
pub(super) async fn connect(config: &RedisConfig) -> redis::RedisResult<(Link, PubSubSource)> {
    if config.cluster {
        let link = cluster_builder(config)?
            .build()?
            .get_async_connection()
            .await?;
        return Ok((Link::Cluster(link), PubSubSource::new(config)?));
    }
    let info = config
        .url
        .as_str()
        .into_connection_info()?
        .set_tcp_settings(tcp_settings());
    let client = match certificates(config) {
        Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
        None => redis::Client::open(info)?,
    };
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.command_timeout))
        .set_response_timeout(Some(config.command_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let link = ConnectionManager::new_with_config(client, manager_config).await?;
    Ok((Link::Single(link), PubSubSource::new(config)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // `CLUSTER KEYSLOT` of the same strings on Redis 7.
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("general"), slot("general"));
    }
}
