//! The command side of the Redis backend: the command connection, the scripts, the keys of a
//! room, stream reads, and this node's presence state (what it holds, the lease it writes
//! under). It knows nothing of subscriptions (the router uses it to catch rooms up, never the
//! other way round).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use super::claim::Lease;
use super::codec::{Entries, decode_entries};
use super::held::Held;
use super::retry::Retrying;
use super::scripts::Scripts;
use super::{RedisBrokerError, RedisConfig};
use crate::{MembersPage, Message, MessageId};

/// Which part of a room's stream to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// The message with this id, if the stream still has it.
    At(MessageId),
    /// At most `count` messages with ids above the given one (from the start if `None`), oldest
    /// first.
    After(Option<MessageId>, usize),
    /// At most `count` messages with ids below the given one (from the end if `None`), newest
    /// first.
    Before(Option<MessageId>, usize),
}

/// Everything a node needs to send commands to Redis.
pub(super) struct Store {
    pub(super) config: RedisConfig,
    /// Commands; a command that finds the connection dropped is sent again once.
    pub(super) conn: Retrying,
    pub(super) scripts: Scripts,
    /// Presence entries this node holds (see `held`).
    pub(super) held: Mutex<Held>,
    /// The instance this node holds presence entries as (`<node id>:<claim token>`) and its
    /// lease (see `claim`); a new claim (after the old one expired) makes a new instance.
    pub(super) lease: watch::Sender<Lease>,
    /// Asks the claim task for a refresh now (a write found the lease over).
    pub(super) kick: Notify,
    /// Wakes the writes waiting for an exclusive removal in their room to end (see `held`).
    pub(super) exclusive_ended: Notify,
    /// Entries (room, user) whose removal failed (Redis unreachable), removed again every
    /// heartbeat.
    pub(super) unheld: Mutex<HashSet<(String, String)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Key names of one room.
pub(super) struct Keys {
    pub(super) stream: String,
    pub(super) channel: String,
    pub(super) users: String,
    /// The names of `users`' keys, a sorted set with every score 0, so members page by name.
    pub(super) names: String,
    pub(super) trimmed: String,
}

impl Store {
    /// A store sending on `conn`, holding nothing yet, under no lease (see `claim`).
    pub(super) fn new(config: RedisConfig, conn: Retrying) -> Self {
        Self {
            scripts: Scripts::new(&config),
            config,
            conn,
            held: Mutex::default(),
            unheld: Mutex::default(),
            lease: watch::Sender::new(Lease::none()),
            kick: Notify::new(),
            exclusive_ended: Notify::new(),
        }
    }

    /// One key of a room: `<prefix>{<room>}:<kind>`, hash-tagged so a room's keys share a slot.
    /// The one place key names are made.
    pub(super) fn key(&self, room: &str, kind: &str) -> String {
        format!("{}{{{room}}}:{kind}", self.config.prefix)
    }

    /// The instance this node runs as now (see [`Store::lease`]).
    pub(super) fn instance(&self) -> Arc<str> {
        Arc::clone(&self.lease.borrow().instance)
    }

    /// The set of the users `instance` holds in `room`.
    pub(super) fn held_key(&self, room: &str, instance: &str) -> String {
        self.key(room, &format!("held:{instance}"))
    }

    /// The set of the users this node instance holds in `room`.
    pub(super) fn own_held_key(&self, room: &str) -> String {
        self.held_key(room, &self.instance())
    }

    /// The rooms `instance` has held entries in.
    pub(super) fn instance_rooms_key(&self, instance: &str) -> String {
        format!("{}instance:{instance}:rooms", self.config.prefix)
    }

    /// The claim on node id `node_id` (see `claim`).
    pub(super) fn claim_key(&self, node_id: &str) -> String {
        format!("{}node:{node_id}", self.config.prefix)
    }

    /// The registry of node instances: instance → its last heartbeat (Unix ms).
    pub(super) fn nodes_key(&self) -> String {
        format!("{}nodes", self.config.prefix)
    }

    /// The index of rooms ([`Broker::rooms`](crate::Broker::rooms)).
    pub(super) fn rooms_key(&self) -> String {
        format!("{}rooms", self.config.prefix)
    }

    /// The keys most calls need together.
    pub(super) fn keys(&self, room: &str) -> Keys {
        Keys {
            stream: self.key(room, "stream"),
            channel: self.channel(room),
            users: self.key(room, "users"),
            names: self.key(room, "names"),
            trimmed: self.key(room, "trimmed"),
        }
    }

    /// The command that publishes to a room's channel: sharded in a cluster, so a room's
    /// events reach only its shard's subscribers.
    pub(super) fn publish_command(&self) -> &'static str {
        if self.config.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// The room's pub/sub channel.
    pub(super) fn channel(&self, room: &str) -> String {
        self.key(room, "events")
    }

    /// Drops the room's epoch: the next join or `epoch` call makes a new one, so `since` ids
    /// from the history before recover nothing.
    pub(super) async fn forget_epoch(&self, room: &str) -> Result<(), RedisBrokerError> {
        let _: i64 = redis::cmd("DEL")
            .arg(self.epoch_key(room))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The key of the room's epoch (see [`Broker::epoch`](crate::Broker::epoch)).
    pub(super) fn epoch_key(&self, room: &str) -> String {
        self.key(room, "epoch")
    }

    /// `script` with the room's presence keys, as every presence script takes them first:
    /// an instance's held set (`held`), the users hash, the channel, the names index.
    pub(super) fn with_presence_keys<'a>(
        script: &'a redis::Script,
        held: &str,
        keys: &Keys,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.key(held);
        invocation
            .key(&keys.users)
            .key(&keys.channel)
            .key(&keys.names);
        invocation
    }

    /// A page of the room's members by name, after `after` (from the first if `None`).
    pub(super) async fn members_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, RedisBrokerError> {
        let keys = self.keys(room);
        let (members, more): (Vec<String>, i64) = self
            .scripts
            .members
            .key(&keys.users)
            .key(&keys.names)
            .arg(after.unwrap_or(""))
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(MembersPage {
            members,
            has_more: more == 1,
        })
    }

    /// Reads and decodes a part of the room's stream.
    pub(super) async fn read_stream(
        &self,
        room: &str,
        read: Read,
    ) -> Result<Vec<Message>, RedisBrokerError> {
        let Some(cmd) = self.stream_command(room, read) else {
            return Ok(Vec::new());
        };
        let entries: Entries = cmd.query_async(&mut self.conn.clone()).await?;
        decode_entries(room, entries)
    }

    /// The command reading a part of the room's stream (replying [`Entries`]), or `None` if
    /// nothing can be there.
    pub(super) fn stream_command(&self, room: &str, read: Read) -> Option<redis::Cmd> {
        let exclusive = |id: MessageId| format!("({id}");
        let (command, start, end, count) = match read {
            Read::At(id) => ("XRANGE", id.to_string(), id.to_string(), None),
            // Nothing is past the extreme ids, and Redis refuses exclusive ranges beyond them.
            Read::After(Some(MessageId::MAX), _) | Read::Before(Some(MessageId::MIN), _) => {
                return None;
            }
            Read::After(after, count) => (
                "XRANGE",
                after.map_or_else(|| "-".to_owned(), exclusive),
                "+".to_owned(),
                Some(count),
            ),
            Read::Before(before, count) => (
                "XREVRANGE",
                before.map_or_else(|| "+".to_owned(), exclusive),
                "-".to_owned(),
                Some(count),
            ),
        };
        let mut cmd = redis::cmd(command);
        cmd.arg(self.key(room, "stream")).arg(start).arg(end);
        if let Some(count) = count {
            cmd.arg("COUNT").arg(count);
        }
        Some(cmd)
    }
}
