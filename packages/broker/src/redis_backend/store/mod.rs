//! The command side of the Redis backend: every command the node sends on its command connection
//! (the shared, retried [`Link`](super::link::Link)), each built here with the `redis` crate's
//! typed command methods or as one of the node's scripts (`scripts`), its reply decoded here.
//! It knows nothing of subscriptions, presence bookkeeping or the claim's timing: those modules
//! decide what to send, this one how (the router uses it to catch rooms up, never the other way
//! round).
//!
//! The commands of a room's messages and epoch are here; those of the rooms index in `index`,
//! those of presence, claims and the registry of node instances in `presence`, and the read of
//! everything a catch-up needs in `catch_up`.

mod catch_up;
mod index;
mod presence;

use std::time::Duration;

use redis::{AsyncCommands as _, Cmd, FromRedisValue, ScriptInvocation};

pub(super) use catch_up::Found;
pub(super) use presence::Stamp;

use super::codec::parse_id;

use super::codec::{
    Entries, Names, decode_log, decode_split, encode_disconnect, encode_read, encode_typing,
};
use super::config::RedisConfig;
use super::error::RedisBrokerError;
use super::retry::Retrying;
use super::scripts::Scripts;
use crate::{
    HistoryPage, MembersPage, MessageId, NODES_ROOM, ReadState, Recovered, Recovery, Resume,
    RoomEvent, Snapshot,
};

/// Which part of a room's stream to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// The entry with this id, if the stream still has it.
    At(MessageId),
    /// At most `count` entries with ids above the given one (from the start if `None`), oldest
    /// first.
    After(Option<MessageId>, usize),
    /// At most `count` entries with ids below the given one (from the end if `None`), newest
    /// first.
    Before(Option<MessageId>, usize),
}

/// Everything a node needs to send commands to Redis.
pub(super) struct Store {
    pub(super) config: RedisConfig,
    /// The names of every key and channel.
    pub(super) names: Names,
    /// Commands; a command that finds the connection dropped is sent again once.
    conn: Retrying,
    scripts: Scripts,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store sending on `conn`.
    pub(super) fn new(config: RedisConfig, conn: Retrying) -> Self {
        Self {
            scripts: Scripts::new(&config),
            names: Names::new(&config.prefix),
            config,
            conn,
        }
    }

    /// The shared connection, for one command (clones share it).
    fn conn(&self) -> Retrying {
        self.conn.clone()
    }

    /// Whether commands get through (see `watched`).
    pub(super) fn is_up(&self) -> bool {
        self.conn.is_up()
    }

    /// Runs `invocation` (one of [`Scripts`]) on the shared connection.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        invocation.invoke_async(&mut self.conn()).await
    }

    /// Reads and decodes a part of the room's stream, as stored: its messages as they were
    /// sent, and its changes (what live delivery and catch-ups carry).
    pub(super) async fn read_stream(
        &self,
        room: &str,
        read: Read,
    ) -> Result<Vec<RoomEvent>, RedisBrokerError> {
        let Some(cmd) = self.stream_command(room, read) else {
            return Ok(Vec::new());
        };
        let entries: Entries = cmd.query_async(&mut self.conn()).await?;
        decode_log(room, entries)
    }

    /// A page of the room's history: at most `limit` messages below `before`, in their current
    /// state, change entries skipped (see `history.lua`).
    pub(super) async fn history(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, RedisBrokerError> {
        let entries: Entries = self
            .scripts
            .history
            .key(self.names.stream(room))
            .key(self.names.state(room))
            .key(self.names.gone(room))
            .arg(before.map_or_else(String::new, |id| id.to_string()))
            .arg(limit.saturating_add(1))
            .invoke_async(&mut self.conn())
            .await?;
        let (mut messages, _) = decode_split(room, entries)?;
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        messages.reverse();
        Ok(HistoryPage { messages, has_more })
    }

    /// Moves `user`'s read marker in `room` forward to `id` (see `read.lua`) and, if it moved,
    /// tells every node on the notices channel (at most once: a node whose link is down misses
    /// it, as a disconnect notice; a notice that fails is logged, and the move still answered). The room's keys and the notices channel are on different
    /// slots in a cluster, so the notice is its own command.
    pub(super) async fn read(
        &self,
        room: &str,
        user: &str,
        id: MessageId,
    ) -> Result<ReadState, RedisBrokerError> {
        let (marker, unread, moved): (String, u32, i64) = self
            .scripts
            .read
            .key(self.names.stream(room))
            .key(self.names.read(room))
            .arg(user)
            .arg(id.to_string())
            .arg(skat_protocol::UNREAD_CAP)
            .invoke_async(&mut self.conn())
            .await?;
        let marker = (!marker.is_empty())
            .then(|| parse_id(&marker))
            .transpose()?;
        if moved == 1
            && let Some(marker) = marker
        {
            // The marker moved: a failed notice is logged, not returned, since a retry would
            // find the marker moved and tell nobody either (the user's other connections learn
            // it at their next join).
            let notice: Result<i64, _> = self
                .publish(
                    &self.names.channel(NODES_ROOM),
                    &encode_read(room, user, marker, unread),
                )
                .query_async(&mut self.conn())
                .await;
            if let Err(err) = notice {
                tracing::warn!(room, user, %err, "the notice of a moved read marker failed");
            }
        }
        Ok(ReadState { id: marker, unread })
    }

    /// The command reading a part of the room's stream (replying [`Entries`]), or `None` if
    /// nothing can be there.
    fn stream_command(&self, room: &str, read: Read) -> Option<Cmd> {
        let exclusive = |id: MessageId| format!("({id}");
        let stream = self.names.stream(room);
        Some(match read {
            Read::At(id) => Cmd::xrange(stream, id.to_string(), id.to_string()),
            // Nothing is past the extreme ids, and Redis refuses exclusive ranges beyond them.
            Read::After(Some(MessageId::MAX), _) | Read::Before(Some(MessageId::MIN), _) => {
                return None;
            }
            Read::After(after, count) => Cmd::xrange_count(
                stream,
                after.map_or_else(|| "-".to_owned(), exclusive),
                "+",
                count,
            ),
            Read::Before(before, count) => Cmd::xrevrange_count(
                stream,
                before.map_or_else(|| "+".to_owned(), exclusive),
                "-",
                count,
            ),
        })
    }

    /// A page of the room's members by name, after `after` (from the first if `None`).
    pub(super) async fn members_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, RedisBrokerError> {
        let (members, more): (Vec<String>, i64) = self
            .members_script(room, after, limit)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(MembersPage {
            members,
            has_more: more == 1,
        })
    }

    /// `script` with `room`'s presence keys, as every presence script takes them first: an
    /// instance's held set (`held`), the users hash, the channel, the names index.
    fn presence_script<'a>(
        &self,
        script: &'a redis::Script,
        room: &str,
        held: &str,
    ) -> ScriptInvocation<'a> {
        let mut invocation = script.key(held);
        invocation
            .key(self.names.users(room))
            .key(self.names.channel(room))
            .key(self.names.by_name(room));
        invocation
    }

    /// The script of a page of `room`'s members after `after` (from the first if `None`).
    fn members_script(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ScriptInvocation<'_> {
        let mut invocation = self.scripts.members.key(self.names.users(room));
        invocation
            .key(self.names.by_name(room))
            .arg(after.unwrap_or(""))
            .arg(limit);
        invocation
    }

    /// The room's epoch, made if it has none (see `ensure_epoch.lua`).
    pub(super) async fn epoch(&self, room: &str) -> Result<String, RedisBrokerError> {
        let epoch: String = self
            .scripts
            .epoch
            .key(self.names.stream(room))
            .key(self.names.trimmed(room))
            .key(self.names.epoch(room))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(epoch)
    }

    /// Drops the room's epoch: the next join or `epoch` call makes a new one, so `since` ids
    /// from the history before recover nothing.
    pub(super) async fn forget_epoch(&self, room: &str) -> Result<(), RedisBrokerError> {
        let _: i64 = self.conn().del(self.names.epoch(room)).await?;
        Ok(())
    }

    /// What `user` joining `room` is told, in one script (see `join.lua`). With `lease_until`
    /// (the end of the lease it goes under), the user's presence entry is written too, in
    /// `held` (the set of the instance the lease names); without, `held` is only read.
    pub(super) async fn join(
        &self,
        room: &str,
        held: &str,
        user: &str,
        lease_until: Option<u64>,
        resume: Resume<'_>,
    ) -> Result<Snapshot, RedisBrokerError> {
        let Resume {
            since,
            epoch,
            recovery,
            page,
            members: members_bound,
        } = resume;
        type Reply = (Vec<String>, Entries, i64, String, i64, String, u32);
        let (members, entries, recovered, epoch, more_members, read, unread): Reply = self
            .presence_script(&self.scripts.join, room, held)
            .key(self.names.state(room))
            .key(self.names.gone(room))
            .key(self.names.erased(room))
            .key(self.names.read(room))
            .key(self.names.stream(room))
            .key(self.names.trimmed(room))
            .key(self.names.epoch(room))
            .arg(user)
            .arg(if lease_until.is_some() { "1" } else { "0" })
            .arg(since.map_or_else(String::new, |id| id.to_string()))
            .arg(recovery.limit)
            .arg(page)
            .arg(recovery.max_bytes)
            .arg(message_framing(room))
            .arg(epoch.unwrap_or(""))
            .arg(members_bound)
            .arg(lease_until.unwrap_or(0))
            .arg(skat_protocol::UNREAD_CAP)
            .invoke_async(&mut self.conn())
            .await
            .map_err(lapsed)?;
        let (mut messages, changes) = decode_split(room, entries)?;
        let recovered = recovered == 1;
        if !recovered {
            // The latest page comes newest first.
            messages.reverse();
        }
        Ok(Snapshot {
            members,
            more_members: more_members == 1,
            messages,
            recovered,
            changes,
            read: (!read.is_empty()).then(|| parse_id(&read)).transpose()?,
            unread,
            epoch,
        })
    }

    /// The messages after `since` in their current state and the changes after it to messages at
    /// or before it, if the room's history can tell them all within `bounds` (see
    /// `recover.lua`), in one script: nothing is trimmed between the checks and the read.
    pub(super) async fn recover(
        &self,
        room: &str,
        since: MessageId,
        bounds: Recovery,
    ) -> Result<Option<Recovered>, RedisBrokerError> {
        let (entries, recovered): (Entries, i64) = self
            .scripts
            .recovery
            .key(self.names.state(room))
            .key(self.names.gone(room))
            .key(self.names.erased(room))
            .key(self.names.stream(room))
            .key(self.names.trimmed(room))
            .key(self.names.epoch(room))
            .arg(since.to_string())
            .arg(bounds.limit)
            .arg(bounds.max_bytes)
            .arg(message_framing(room))
            .invoke_async(&mut self.conn())
            .await?;
        let (messages, changes) = decode_split(room, entries)?;
        Ok((recovered == 1).then_some(Recovered { messages, changes }))
    }

    /// The publish script storing `encoded` in `room`'s stream (whose key is `stream`) and
    /// publishing it, remembered under `dedup` for `remembered`, refused if `reply_to` is not
    /// a retained, not deleted message (see `publish.lua`); run it with [`Store::run`], or on a
    /// connection that waits for replicas (`waits`).
    pub(super) fn publish_script(
        &self,
        room: &str,
        stream: &str,
        encoded: &str,
        dedup: &str,
        remembered: Duration,
        reply_to: &str,
    ) -> ScriptInvocation<'_> {
        let mut invocation = self.scripts.publish.key(stream);
        invocation
            .key(self.names.channel(room))
            .key(self.names.trimmed(room))
            .key(dedup)
            .key(self.names.epoch(room))
            .arg(self.config.stream_len)
            .arg(encoded)
            .arg(remembered.as_millis().max(1) as u64)
            .arg(reply_to);
        invocation
    }

    /// The change script (see `change.lua`) storing `change` in `room`'s stream (key
    /// `stream`), applying it and publishing it, remembered under `dedup` for `remembered`
    /// (`head`: its encoded author and nonce); run as [`Store::publish_script`].
    pub(super) fn change_script<'a>(
        &'a self,
        stream: &str,
        change: &'a crate::NewChange,
        head: &str,
        dedup: &str,
        remembered: Duration,
    ) -> ScriptInvocation<'a> {
        let room = change.room.as_str();
        let mut invocation = self.scripts.change.key(stream);
        invocation
            .key(self.names.channel(room))
            .key(self.names.trimmed(room))
            .key(dedup)
            .key(self.names.epoch(room))
            .key(self.names.state(room))
            .key(self.names.gone(room))
            .key(self.names.erased(room))
            .arg(self.config.stream_len);
        let (kind, text, add) = match &change.kind {
            crate::ChangeKind::Edit { body } => ("e", body.as_str(), false),
            crate::ChangeKind::Delete => ("d", "", false),
            crate::ChangeKind::React { emoji, add } => ("r", emoji.as_str(), *add),
        };
        invocation
            .arg(kind)
            .arg(change.target.to_string())
            .arg(&change.by)
            .arg(head)
            .arg(remembered.as_millis().max(1) as u64)
            .arg(if change.as_author { "1" } else { "0" })
            .arg(text)
            .arg(if add { "1" } else { "0" })
            .arg(skat_protocol::MAX_REACTIONS)
            .arg(skat_protocol::REACTION_USERS_SHOWN);
        invocation
    }

    /// Publishes that `user` is typing in `room`.
    pub(super) async fn typing(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        let _: i64 = self
            .publish(&self.names.channel(room), &encode_typing(user))
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Publishes the notice that `user` must be disconnected everywhere.
    pub(super) async fn disconnect(
        &self,
        user: &str,
        reason: &str,
    ) -> Result<(), RedisBrokerError> {
        let _: i64 = self
            .publish(
                &self.names.channel(NODES_ROOM),
                &encode_disconnect(user, reason),
            )
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// A publish to a room's channel: sharded in a cluster, so a room's events reach only its
    /// shard's subscribers.
    fn publish(&self, channel: &str, payload: &str) -> Cmd {
        if self.config.cluster {
            Cmd::spublish(channel, payload)
        } else {
            Cmd::publish(channel, payload)
        }
    }
}

/// The bytes every message of `room` counts beyond its fields (see `message_size.lua`).
fn message_framing(room: &str) -> usize {
    skat_protocol::MESSAGE_FRAMING + skat_protocol::escaped_len(room)
}

/// A count of a command's `LIMIT`, which the crate takes signed.
fn limit(count: usize) -> isize {
    isize::try_from(count).unwrap_or(isize::MAX)
}

/// A script's error, with the lease's refusal (`LAPSED`, see `lease.lua`) told apart.
fn lapsed(err: redis::RedisError) -> RedisBrokerError {
    if err.code() == Some("LAPSED") {
        return RedisBrokerError::Lapsed;
    }
    err.into()
}
