//! The command connection, retrying a command once when it finds the connection dropped.
//!
//! After Redis restarts, the node's command connection is dead until a command fails on it; the
//! `ConnectionManager` (or the cluster client) then reconnects, but that first command has
//! failed ("broken pipe"), and a user's join or send with it. Every command here is safe to send
//! twice, even one that ran before its reply was lost: reads, presence updates, and publishes,
//! each deduplicated by a nonce (the node makes one for a publish that came without, see
//! `publish`).

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::link::Link;

/// A [`Link`] whose commands are retried once on a dropped connection.
#[derive(Clone)]
pub(super) struct Retrying(Link);

impl Retrying {
    pub(super) fn new(link: Link) -> Self {
        Self(link)
    }

    /// Whether commands get through (see [`Link::is_up`]).
    pub(super) fn is_up(&self) -> bool {
        self.0.is_up()
    }
}

/// Whether a failed command may be sent again: its connection broke, so it most likely never
/// ran (and when it did, sending it again is harmless for the commands sent here).
fn dropped(err: &redis::RedisError) -> bool {
    err.is_connection_dropped()
}

impl ConnectionLike for Retrying {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.0.send(cmd).await {
                Err(err) if dropped(&err) => {
                    tracing::debug!(error = %err, "redis connection dropped; retrying once");
                    self.0.send(cmd).await
                }
                other => other,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.0.send_pipeline(pipeline, offset, count).await {
                Err(err) if dropped(&err) => {
                    tracing::debug!(error = %err, "redis connection dropped; retrying once");
                    self.0.send_pipeline(pipeline, offset, count).await
                }
                other => other,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}
