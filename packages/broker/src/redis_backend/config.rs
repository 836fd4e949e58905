//! The settings of a [`RedisBroker`](super::RedisBroker) and the rules they must keep, checked
//! once by [`RedisConfig::validate`] (which `connect` calls), so no node, test or benchmark runs
//! with settings that cannot work.

use std::time::Duration;

use crate::InvalidNodeId;

/// Settings of a [`RedisBroker`](super::RedisBroker).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Redis URL, e.g. `redis://127.0.0.1:6379/`.
    pub url: String,
    /// Prefix of every key and channel; without `{` or `}` (the room is the keys' hash tag,
    /// and the scripts name a room's side keys after its stream key, in its slot).
    pub prefix: String,
    /// Messages kept per room stream (at least 1).
    pub stream_len: usize,
    /// This node's id, which owns its presence entries: unique among live nodes, and valid for
    /// [`crate::check_node_id`] (no `:`).
    pub node_id: String,
    /// How long the node's claim on its id lives without a refresh: a node that stops
    /// heartbeating (a crash, a partition) is swept by the others, its users offline, about this
    /// long after its last refresh. Presence entries themselves never expire (see `presence`).
    pub presence_ttl: Duration,
    /// How often this node refreshes its claim and stamps the registry, and sweeps dead
    /// instances: not zero, and at most half the presence TTL.
    pub heartbeat: Duration,
    /// Live events a room holds back while it catches up from its stream after the pub/sub
    /// connection came back; past it, held messages are dropped and read from the stream again.
    /// A bound, not an allocation.
    pub channel_capacity: usize,
    /// Timeout of each Redis command and connection attempt (not zero).
    pub command_timeout: Duration,
    /// How often the pub/sub connection is checked with a PING (answered within
    /// `command_timeout`, or the connection is made again and every room caught up); not zero.
    pub pubsub_ping: Duration,
    /// How long a sender's nonce is remembered for idempotent sends.
    pub dedup_window: Duration,
    /// With a `rediss://` URL: the PEM certificates of the CAs to trust for Redis's
    /// certificate, instead of the system's.
    pub tls_ca: Option<Vec<u8>>,
    /// `url` is a comma-separated list of seed nodes of a Redis Cluster (Redis 7): rooms are
    /// spread over its shards and their live events use sharded pub/sub (see `link`).
    pub cluster: bool,
    /// Replicas that should have a message before `publish` confirms it (Redis `WAIT`, for up
    /// to a tenth of `command_timeout`; 0: the master's own write is enough). With 1, a master
    /// that dies and is replaced by its replica loses no confirmed message, but for the
    /// shortfalls `waits` describes (no replica in sync, a replica lagging past the wait),
    /// which are logged as warnings.
    pub wait_replicas: u32,
    /// How long a room with history is kept unused (no message sent, nobody joining) before its
    /// history, epoch and trimmed marker expire (not zero); `None`: for good. A room that never
    /// had a message keeps nothing for good either way: its epoch expires after this or an
    /// hour, whichever is shorter.
    pub room_ttl: Option<Duration>,
}

impl RedisConfig {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "skat:";
    /// Messages kept per room stream by default.
    pub const DEFAULT_STREAM_LEN: usize = 10_000;
    /// The default presence TTL.
    pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(25);
    /// The default heartbeat.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
    /// Replicas a publish waits for by default: none (the master's write is enough).
    pub const DEFAULT_WAIT_REPLICAS: u32 = 0;

    /// Defaults for the given URL and node id.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            stream_len: Self::DEFAULT_STREAM_LEN,
            node_id: node_id.into(),
            presence_ttl: Self::DEFAULT_PRESENCE_TTL,
            heartbeat: Self::DEFAULT_HEARTBEAT,
            channel_capacity: 4096,
            command_timeout: Duration::from_secs(2),
            pubsub_ping: Duration::from_secs(5),
            dedup_window: crate::DEFAULT_DEDUP_WINDOW,
            tls_ca: None,
            cluster: false,
            wait_replicas: Self::DEFAULT_WAIT_REPLICAS,
            room_ttl: None,
        }
    }

    /// Checks the rules the settings must keep: a valid node id, a prefix without braces (a
    /// brace there would move a room's hash tag off its name), no zero where a period, a
    /// timeout or a length is meant, and a heartbeat at most half the presence TTL (so a live
    /// node refreshes its claim at least twice before it could lapse).
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::check_node_id(&self.node_id)?;
        if self.prefix.contains(['{', '}']) {
            return Err(ConfigError::BracedPrefix);
        }
        let zero = [
            ("stream_len", self.stream_len == 0),
            ("heartbeat", self.heartbeat.is_zero()),
            ("command_timeout", self.command_timeout.is_zero()),
            ("pubsub_ping", self.pubsub_ping.is_zero()),
            ("room_ttl", self.room_ttl.is_some_and(|ttl| ttl.is_zero())),
        ];
        if let Some((setting, _)) = zero.into_iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero(setting));
        }
        if self.heartbeat * 2 > self.presence_ttl {
            return Err(ConfigError::SlowHeartbeat {
                heartbeat: self.heartbeat,
                presence_ttl: self.presence_ttl,
            });
        }
        Ok(())
    }
}

/// Settings a [`RedisBroker`](super::RedisBroker) cannot run with (see
/// [`RedisConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The node id cannot name a node (see [`crate::check_node_id`]).
    #[error(transparent)]
    NodeId(#[from] InvalidNodeId),
    /// The key prefix holds `{` or `}`: Redis Cluster would hash a room's keys by what the
    /// braces enclose, not by the room, parting the keys one script reads.
    #[error("the Redis broker's key prefix must not contain '{{' or '}}'")]
    BracedPrefix,
    /// A setting that must not be zero is.
    #[error("the Redis broker's {0} must not be zero")]
    Zero(&'static str),
    /// The heartbeat is longer than half the presence TTL.
    #[error(
        "the heartbeat ({} ms) must be at most half the presence TTL ({} ms)",
        heartbeat.as_millis(),
        presence_ttl.as_millis()
    )]
    SlowHeartbeat {
        /// The heartbeat.
        heartbeat: Duration,
        /// The presence TTL.
        presence_ttl: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_the_rules_hold() {
        let valid = RedisConfig::new("redis://127.0.0.1/", "node-a");
        assert_eq!(valid.validate(), Ok(()));
        let half = RedisConfig {
            heartbeat: valid.presence_ttl / 2,
            ..valid.clone()
        };
        assert_eq!(half.validate(), Ok(()), "exactly half is fine");
        let slow = RedisConfig {
            heartbeat: valid.presence_ttl / 2 + Duration::from_millis(1),
            ..valid.clone()
        };
        assert!(matches!(
            slow.validate(),
            Err(ConfigError::SlowHeartbeat { .. })
        ));
        let stopped = RedisConfig {
            heartbeat: Duration::ZERO,
            ..valid.clone()
        };
        assert_eq!(stopped.validate(), Err(ConfigError::Zero("heartbeat")));
        let empty = RedisConfig {
            stream_len: 0,
            ..valid.clone()
        };
        assert_eq!(empty.validate(), Err(ConfigError::Zero("stream_len")));
        let gone = RedisConfig {
            room_ttl: Some(Duration::ZERO),
            ..valid.clone()
        };
        assert_eq!(gone.validate(), Err(ConfigError::Zero("room_ttl")));
        let colon = RedisConfig {
            node_id: "chat:2".to_owned(),
            ..valid
        };
        assert!(matches!(colon.validate(), Err(ConfigError::NodeId(_))));
        for prefix in ["{skat}:", "skat}:", "sk{at:"] {
            let braced = RedisConfig {
                prefix: prefix.to_owned(),
                ..RedisConfig::new("redis://127.0.0.1/", "node-a")
            };
            assert_eq!(
                braced.validate(),
                Err(ConfigError::BracedPrefix),
                "{prefix}"
            );
        }
    }
}
