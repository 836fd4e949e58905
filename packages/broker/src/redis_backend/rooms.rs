//! The index of rooms (`<prefix>rooms`, a sorted set with every score 0, paged by name) that
//! [`Broker::rooms`](crate::Broker::rooms) lists.
//!
//! A node adds a room when it subscribes to it, best effort: the index is for administration,
//! and a failure to add must not fail a user's join. A room's own keys expire (see
//! `ensure_epoch.lua`) but its name in the index, on another slot in a cluster, cannot go with
//! them; so listing drops the names it passes whose room is gone: no history, no members, and no
//! node subscribed (a node subscribes before it adds the name, and a join makes the room's keys
//! after, so a room being joined for the first time is never dropped for good: the name is
//! removed, the room looked at again, and put back if a node subscribed meanwhile). Each gone
//! name costs one listing a few commands, once; a listing skips rooms with neither history nor
//! members, as the embedded broker does, and reads on until its page is full, or until it has
//! examined [`GONE_PER_PAGE`] names more than it lists (then it ends early, with `has_more`).

use redis::Value;

/// Names a page of rooms examines beyond its limit, at most, once it has a room: the names of
/// gone rooms it passes (made-up names joined and left) are removed on the way, a few commands
/// each.
const GONE_PER_PAGE: usize = 1000;

use super::{RedisBroker, RedisBrokerError};
use crate::{NODES_ROOM, RoomSummary, RoomsPage};

impl RedisBroker {
    /// Adds `room` to the index; a failure is logged, not returned.
    pub(super) async fn index_room(&self, room: &str) {
        if room == NODES_ROOM {
            return;
        }
        if let Err(err) = self.add_to_index(room).await {
            tracing::debug!(%room, error = %err, "could not add the room to the index");
        }
    }

    async fn add_to_index(&self, room: &str) -> Result<(), RedisBrokerError> {
        let _: i64 = redis::cmd("ZADD")
            .arg(self.store.rooms_key())
            .arg("NX")
            .arg(0)
            .arg(room)
            .query_async(&mut self.store.conn.clone())
            .await?;
        Ok(())
    }

    /// [`Broker::rooms`](crate::Broker::rooms): the rooms with history or members, by name,
    /// dropping the names of rooms that are gone on the way.
    pub(super) async fn list_rooms(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RoomsPage, RedisBrokerError> {
        let mut rooms = Vec::with_capacity(limit.min(1024));
        let mut from = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let mut examined = 0;
        loop {
            // Past the budget, a page that has rooms ends (the caller reads on after its last);
            // one that has none reads on, since its caller would have no name to go on from:
            // the names of gone rooms it passes are removed, so that work is done once.
            let budget = (limit + GONE_PER_PAGE).saturating_sub(examined);
            let wanted = match rooms.len() {
                0 => limit,
                listed => (limit - listed).min(budget.max(1)),
            };
            let mut names: Vec<String> = redis::cmd("ZRANGE")
                .arg(self.store.rooms_key())
                .arg(&from)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(wanted.saturating_add(1))
                .query_async(&mut self.store.conn.clone())
                .await?;
            let has_more = names.len() > wanted;
            names.truncate(wanted);
            examined += names.len();
            let found = futures_util::future::try_join_all(
                names.iter().map(|room| self.members_if_live(room)),
            )
            .await?;
            let gone = names
                .iter()
                .zip(&found)
                .filter(|(_, members)| members.is_none())
                .map(|(room, _)| self.drop_if_gone(room));
            futures_util::future::try_join_all(gone).await?;
            if let Some(last) = names.last() {
                from = format!("({last}");
            }
            rooms.extend(names.into_iter().zip(found).filter_map(|(name, members)| {
                Some(RoomSummary {
                    name,
                    members: members?,
                })
            }));
            let spent = examined >= limit + GONE_PER_PAGE && !rooms.is_empty();
            if rooms.len() == limit || !has_more || spent {
                return Ok(RoomsPage { rooms, has_more });
            }
        }
    }

    /// The room's member count if it has history or members, else `None`.
    async fn members_if_live(&self, room: &str) -> Result<Option<usize>, RedisBrokerError> {
        let (members, history): (usize, bool) = redis::pipe()
            .hlen(self.store.key(room, "users"))
            .exists(self.store.key(room, "stream"))
            .query_async(&mut self.store.conn.clone())
            .await?;
        Ok((members > 0 || history).then_some(members))
    }

    /// Drops `room` from the index unless a node is subscribed to it (see the module docs).
    async fn drop_if_gone(&self, room: &str) -> Result<(), RedisBrokerError> {
        if self.subscribed(room).await? {
            return Ok(());
        }
        let _: i64 = redis::cmd("ZREM")
            .arg(self.store.rooms_key())
            .arg(room)
            .query_async(&mut self.store.conn.clone())
            .await?;
        if self.subscribed(room).await? || self.members_if_live(room).await?.is_some() {
            self.add_to_index(room).await?;
        }
        Ok(())
    }

    /// Whether some node is subscribed to the room's channel.
    async fn subscribed(&self, room: &str) -> Result<bool, RedisBrokerError> {
        let command = if self.store.config.cluster {
            "SHARDNUMSUB"
        } else {
            "NUMSUB"
        };
        let reply: Value = redis::cmd("PUBSUB")
            .arg(command)
            .arg(self.store.channel(room))
            .query_async(&mut self.store.conn.clone())
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
