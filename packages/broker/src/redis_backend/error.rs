//! The errors of the Redis backend.

use super::config::ConfigError;

/// Errors of the Redis backend.
#[derive(Debug, thiserror::Error)]
pub enum RedisBrokerError {
    /// A Redis command failed or could not be sent.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The node's pub/sub connection is down, so it cannot subscribe.
    #[error("redis pub/sub connection is down")]
    Unavailable,
    /// Redis holds data this backend did not write.
    #[error("malformed data in redis: {0}")]
    Corrupt(String),
    /// Another live node runs with this node's id.
    #[error(
        "node id {0:?} is held by another live node: every node needs its own SKAT_NODE_ID (a node that died holds it one presence TTL more)"
    )]
    NodeIdTaken(String),
    /// The settings cannot work (see [`RedisConfig::validate`](super::RedisConfig::validate)):
    /// nothing was connected or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node's claim on its id could not be kept alive lately (Redis was out of its reach),
    /// so it may have lapsed: presence writes wait for it to be made again, and this one waited
    /// in vain.
    #[error(
        "the node's claim on its id may have lapsed (Redis out of reach): presence not written"
    )]
    Lapsed,
}
