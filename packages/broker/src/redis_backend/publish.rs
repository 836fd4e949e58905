//! The send path: one script stores a message and publishes it (`lua/publish.lua`), deduplicated
//! by a nonce; a change to a message takes the same path (`lua/change.lua`), its nonces in a
//! key space per kind of change (a nonce reused for another kind is another request); with `wait_replicas`, on a connection of its own that then waits for replicas
//! (`waits`).
//!
//! Every publish carries a nonce: the sender's, or when it sent none, one this node makes (its
//! instance at start, which no other node or run shares, and a counter). So every publish is
//! safe to send twice, which happens without anyone asking: the node's retry (`retry`) sends a
//! command again when it finds the connection dropped, and a cluster client retries internally,
//! both also when the script ran and only its reply was lost. The second attempt then finds the
//! first's dedup key and answers its id instead of storing the message again.
//!
//! The node's nonce only names the dedup key: the stored message has none, so no sender sees a
//! nonce it did not send, and a publish that finds its own earlier attempt is new to its sender,
//! not a duplicate. It costs a key (about 200 bytes of Redis memory with its expiry), a GET and
//! a SET inside the script, and the key's name made per publish; no round trip more. That key
//! lives [`OWN_NONCE_TIMEOUTS`] command timeouts, not the dedup window: only the node's own
//! attempts can repeat such a publish (its sender has no nonce to send again with), and they all
//! start within two command timeouts of the first (the retry sends once more right after a
//! failed attempt, a cluster client retries inside the command timeout, a waiting publish gives
//! up after two). A sender's nonce is kept the whole window, as its client may send again much
//! later. At 10,000 nonce-less messages a second that is ~20 MB of keys instead of ~240 MB.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use redis::{FromRedisValue, ScriptInvocation};

use super::codec::{encode_change_head, encode_message, parse_id};
use super::error::RedisBrokerError;
use super::store::{Read, Store};
use super::waits::{self, Waits};
use crate::{ChangeRefusal, Changed, NewChange, NewMessage, Published, RoomEvent};

/// How many command timeouts the dedup key of a node's own nonce lives (at most the dedup
/// window): the node's attempts of one publish start within two; the rest is a margin for an
/// attempt still on its way to Redis when the node gave up on it.
const OWN_NONCE_TIMEOUTS: u32 = 5;

/// The node's send path.
#[derive(Debug)]
pub(super) struct Publisher {
    store: Arc<Store>,
    /// With `wait_replicas`: the publishes that wait for replicas.
    waits: Option<Waits>,
    /// The node's instance when it started: unique among nodes and runs, it tags the nonces
    /// of publishes that came without one.
    tag: Box<str>,
    /// The next of those nonces.
    next: AtomicU64,
}

impl Publisher {
    /// The send path of the node `store` names, which started as `instance`.
    pub(super) fn new(store: Arc<Store>, waits: Option<Waits>, instance: &str) -> Self {
        Self {
            store,
            waits,
            tag: instance.into(),
            next: AtomicU64::new(0),
        }
    }

    /// [`Broker::publish`](crate::Broker::publish).
    pub(super) async fn publish(&self, new: NewMessage) -> Result<Published, RedisBrokerError> {
        let store = &self.store;
        let room = new.room.as_str();
        let encoded = encode_message(&new.from, new.nonce.as_deref(), &new.body);
        let (dedup, remembered) = self.dedup(room, &new.from, new.nonce.as_deref());
        let stream = store.names.stream(room);
        // A plain message passes "" (no allocation); only a reply formats its id.
        let reply_to = new.reply_to.map(|id| id.to_string());
        let invocation = store.publish_script(
            room,
            &stream,
            &encoded,
            &dedup,
            remembered,
            reply_to.as_deref().unwrap_or(""),
        );
        let (id, stored): (String, i64) = self.run(&invocation, room, &stream).await?;
        if stored == 2 {
            return Ok(Published::NoSuchReply);
        }
        let id = parse_id(&id)?;
        let own_nonce = new.nonce.is_none();
        let as_sent = new.stored_as(id);
        if stored == 0 && !own_nonce {
            // The original, as stored (it may have been trimmed away since: then as sent now).
            let stored = store.read_stream(&as_sent.room, Read::At(id)).await?;
            let original = stored.into_iter().find_map(|event| match event {
                RoomEvent::Message(message) => Some(message),
                _ => None,
            });
            return Ok(Published::Duplicate(original.unwrap_or(as_sent)));
        }
        // Stored now, or by this very publish's earlier attempt: as sent, with the stored id.
        Ok(Published::New(as_sent))
    }

    /// [`Broker::change`](crate::Broker::change): the same path as a publish (a nonce on every
    /// change, the sender's or the node's; `WAIT` for replicas), through `change.lua`.
    pub(super) async fn change(&self, new: NewChange) -> Result<Changed, RedisBrokerError> {
        let store = &self.store;
        let room = new.room.as_str();
        let head = encode_change_head(&new.by, new.nonce.as_deref());
        let (dedup, remembered) = match new.nonce.as_deref() {
            // Each kind of change has its nonces' own key space (see `nonce_space`).
            Some(nonce) => (
                store
                    .names
                    .change_dedup(room, new.kind.nonce_space(), &new.by, nonce),
                store.config.dedup_window,
            ),
            None => self.dedup(room, &new.by, None),
        };
        let stream = store.names.stream(room);
        let invocation = store.change_script(&stream, &new, &head, &dedup, remembered);
        let (outcome, id, count): (String, String, u32) =
            self.run(&invocation, room, &stream).await?;
        Ok(match outcome.as_str() {
            "new" => Changed::New(new.stored_as(parse_id(&id)?, count)),
            "same" => {
                let target = new.target;
                Changed::New(new.stored_as(target, count))
            }
            "dup" if new.nonce.is_none() => {
                // This very change's earlier attempt (the node's own nonce) stored it.
                Changed::New(new.stored_as(parse_id(&id)?, count))
            }
            "dup" => {
                // The original, as stored (it may have been trimmed since: then as asked now,
                // the same kind, with the count it had).
                let id = parse_id(&id)?;
                let stored = store.read_stream(room, Read::At(id)).await?;
                let original = stored.into_iter().find_map(|event| match event {
                    RoomEvent::Change(change) => Some(change),
                    _ => None,
                });
                Changed::Duplicate(original.unwrap_or_else(|| new.stored_as(id, count)))
            }
            "notauthor" => Changed::Refused(ChangeRefusal::NotAuthor),
            "toomany" => Changed::Refused(ChangeRefusal::TooManyReactions),
            "nosuch" => Changed::Refused(ChangeRefusal::NoSuchMessage),
            other => {
                return Err(RedisBrokerError::Corrupt(format!(
                    "unknown outcome of a change: {other}"
                )));
            }
        })
    }

    /// The dedup key of a request by `from` in `room` with `nonce` (or one of the node's own),
    /// and how long it is remembered.
    fn dedup(&self, room: &str, from: &str, nonce: Option<&str>) -> (String, Duration) {
        let store = &self.store;
        let config = &store.config;
        match nonce {
            Some(nonce) => (store.names.dedup(room, from, nonce), config.dedup_window),
            None => (
                store
                    .names
                    .own_dedup(room, &self.tag, self.next.fetch_add(1, Ordering::Relaxed)),
                (config.command_timeout * OWN_NONCE_TIMEOUTS).min(config.dedup_window),
            ),
        }
    }

    /// Runs a publish or change script on `room` (key `stream`): with `wait_replicas`, on a
    /// connection that then waits for them.
    async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        room: &str,
        stream: &str,
    ) -> Result<T, RedisBrokerError> {
        let target = waits::Room {
            name: room,
            key: stream,
        };
        let wanted = match &self.waits {
            Some(waits) => waits.wanted(target).await,
            None => 0,
        };
        Ok(match &self.waits {
            Some(waits) if wanted > 0 => waits.publish(invocation, target, wanted).await?,
            _ => self.store.run(invocation).await?,
        })
    }
}
