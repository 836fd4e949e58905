//! The commands of the rooms index (`<prefix>rooms`, a sorted set with every score 0, so that it
//! pages by name; see `rooms` for how it is kept).

use redis::{AsyncCommands as _, SortedSetAddOptions, Value};

use super::{Store, limit};
use crate::redis_backend::error::RedisBrokerError;

impl Store {
    /// Adds `room` to the index (if it is not there yet).
    pub(in crate::redis_backend) async fn index_room(
        &self,
        room: &str,
    ) -> Result<(), RedisBrokerError> {
        let add_only = SortedSetAddOptions::add_only();
        Ok(self
            .conn()
            .zadd_options(self.names.rooms(), room, 0, &add_only)
            .await?)
    }

    /// Takes `room` off the index.
    pub(in crate::redis_backend) async fn unindex_room(
        &self,
        room: &str,
    ) -> Result<(), RedisBrokerError> {
        Ok(self.conn().zrem(self.names.rooms(), room).await?)
    }

    /// Up to `count` names of the index after `after` (from the first if `None`), by name.
    pub(in crate::redis_backend) async fn indexed_rooms(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, RedisBrokerError> {
        let from = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let mut conn = self.conn();
        Ok(conn
            .zrangebylex_limit(self.names.rooms(), from, "+", 0, limit(count))
            .await?)
    }

    /// The room's member count if it has history or members, else `None`.
    pub(in crate::redis_backend) async fn members_if_live(
        &self,
        room: &str,
    ) -> Result<Option<usize>, RedisBrokerError> {
        let (members, history): (usize, bool) = redis::pipe()
            .hlen(self.names.users(room))
            .exists(self.names.stream(room))
            .query_async(&mut self.conn())
            .await?;
        Ok((members > 0 || history).then_some(members))
    }

    /// Whether some node is subscribed to the room's channel.
    pub(in crate::redis_backend) async fn subscribed(
        &self,
        room: &str,
    ) -> Result<bool, RedisBrokerError> {
        // No typed method: `PUBSUB NUMSUB` (`SHARDNUMSUB` for sharded channels in a cluster).
        let command = if self.config.cluster {
            "SHARDNUMSUB"
        } else {
            "NUMSUB"
        };
        let reply: Value = redis::cmd("PUBSUB")
            .arg(command)
            .arg(self.names.channel(room))
            .query_async(&mut self.conn())
            .await?;
        Ok(subscribers(&reply) > 0)
    }
}

/// The subscribers a `PUBSUB NUMSUB` reply counts for its one channel: `[channel, count]`, or a
/// map of them (a cluster client combines the shards' replies).
fn subscribers(reply: &Value) -> i64 {
    match reply {
        Value::Array(items) => items.iter().map(subscribers).sum(),
        Value::Map(pairs) => pairs.iter().map(|(_, count)| subscribers(count)).sum(),
        Value::Int(count) => *count,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numsub_replies_count_their_subscribers() {
        let channel = || Value::BulkString(b"skat:{r}:events".to_vec());
        assert_eq!(
            subscribers(&Value::Array(vec![channel(), Value::Int(2)])),
            2
        );
        assert_eq!(
            subscribers(&Value::Array(vec![channel(), Value::Int(0)])),
            0
        );
        assert_eq!(
            subscribers(&Value::Map(vec![(channel(), Value::Int(1))])),
            1
        );
        assert_eq!(subscribers(&Value::Nil), 0);
    }
}
