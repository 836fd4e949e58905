//! The read of everything a catch-up needs of a room (see `catch_up`), in one request: its keys
//! share a slot, so even in a cluster it is one pipeline to one master.

use std::collections::HashSet;

use redis::Value;

use super::{Read, Store};
use crate::redis_backend::codec::{Entries, decode_log, parse_id};
use crate::redis_backend::error::RedisBrokerError;
use crate::{MessageId, NODES_ROOM, RoomEvent};

/// What a catch-up first reads of a room.
pub(in crate::redis_backend) struct Found {
    /// The stream's newest id.
    pub(in crate::redis_backend) newest: Option<MessageId>,
    /// The first page of entries (messages and changes) after the route's last id (none for a
    /// route not started).
    pub(in crate::redis_backend) page: Vec<RoomEvent>,
    /// The newest id trimmed from the stream (not read for a route not started).
    pub(in crate::redis_backend) trimmed: Option<MessageId>,
    /// Whether the stream still holds the entry the route delivered last, or a delete took it
    /// out (a tombstone, an erased edit: see `lua/state.lua`) (true for a route not started).
    pub(in crate::redis_backend) kept: bool,
    /// Every member (`None` for the notices room), as a set made here rather than under the
    /// router's lock.
    pub(in crate::redis_backend) members: Option<HashSet<Box<str>>>,
}

impl Store {
    /// Reads what a catch-up needs of `room`, whose route delivered up to `from`: the stream's
    /// newest id, the trimmed marker, whether the message at `from` is kept, every member, and
    /// the first `page` messages after `from` (members are read `page` at a time too).
    pub(in crate::redis_backend) async fn catch_up_read(
        &self,
        room: &str,
        from: Option<MessageId>,
        page: usize,
    ) -> Result<Found, RedisBrokerError> {
        // The notices room has no members.
        let presence = room != NODES_ROOM;
        let after = from.and_then(|from| self.stream_command(room, Read::After(Some(from), page)));
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        // From the end, there is always something to ask.
        pipe.add_command(
            self.stream_command(room, Read::Before(None, 1))
                .unwrap_or_default(),
        );
        let at = from.and_then(|from| self.stream_command(room, Read::At(from)));
        if from.is_some() {
            pipe.get(self.names.trimmed(room));
        }
        if let Some(at) = at.clone() {
            pipe.add_command(at);
        }
        if let Some(from) = from {
            // A delete takes entries out of the stream: their ids are in these sets.
            let ms = from.ms.to_string();
            pipe.zrangebyscore(self.names.gone(room), &ms, &ms);
            pipe.zrangebyscore(self.names.erased(room), &ms, &ms);
        }
        if presence {
            pipe.invoke_script(&self.members_script(room, None, page));
        }
        if let Some(after) = after.clone() {
            pipe.add_command(after);
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.conn()).await?;
        let mut replies = replies.into_iter();
        let newest: Entries = reply(replies.next())?;
        let trimmed: Option<String> = match from {
            Some(_) => reply(replies.next())?,
            None => None,
        };
        let kept = match at {
            Some(_) => !reply::<Entries>(replies.next())?.is_empty(),
            None => true,
        };
        let kept = match from {
            Some(from) => {
                let gone: Vec<String> = reply(replies.next())?;
                let erased: Vec<String> = reply(replies.next())?;
                let id = format!("{from}\n");
                kept || gone.iter().chain(&erased).any(|m| m.starts_with(&id))
            }
            None => kept,
        };
        let members = match (presence, replies.next()) {
            (false, _) => None,
            // Not loaded on this server yet (a restart, a new master): loaded by the call.
            (true, Some(Value::ServerError(err))) if err.code() == "NOSCRIPT" => {
                Some(self.all_members(room, Vec::new(), page).await?)
            }
            (true, first) => {
                let (first, more): (Vec<String>, i64) = reply(first)?;
                Some(if more == 1 {
                    self.all_members(room, first, page).await?
                } else {
                    first
                })
            }
        };
        let page = match after {
            Some(_) => decode_log(room, reply(replies.next())?)?,
            None => Vec::new(),
        };
        Ok(Found {
            newest: newest.first().map(|(id, _)| parse_id(id)).transpose()?,
            page,
            trimmed: trimmed.as_deref().map(parse_id).transpose()?,
            kept,
            members: members.map(|members| members.into_iter().map(Into::into).collect()),
        })
    }

    /// Every member of `room`, by name: `all` (a first page), then the pages after it, `page`
    /// at a time.
    async fn all_members(
        &self,
        room: &str,
        mut all: Vec<String>,
        page: usize,
    ) -> Result<Vec<String>, RedisBrokerError> {
        loop {
            let next = self
                .members_page(room, all.last().map(String::as_str), page)
                .await?;
            all.extend(next.members);
            if !next.has_more {
                return Ok(all);
            }
        }
    }
}

/// One reply of a pipeline, as `T`.
fn reply<T: redis::FromRedisValue>(value: Option<Value>) -> Result<T, RedisBrokerError> {
    match value {
        None => Err(RedisBrokerError::Corrupt("a reply is missing".to_owned())),
        Some(Value::ServerError(err)) => Err(redis::RedisError::from(err).into()),
        Some(value) => Ok(redis::from_redis_value(value).map_err(redis::RedisError::from)?),
    }
}
