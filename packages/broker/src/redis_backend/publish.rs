//! The send path: one script stores a message and publishes it (`lua/publish.lua`), deduplicated
//! by a nonce; with `wait_replicas`, on a connection of its own that then waits for replicas
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

use std::sync::atomic::{AtomicU64, Ordering};

use super::codec::{encode_message, parse_id};
use super::store::Read;
use super::{RedisBroker, RedisBrokerError};
use crate::{NewMessage, Published};

/// How many command timeouts the dedup key of a node's own nonce lives (at most the dedup
/// window): the node's attempts of one publish start within two; the rest is a margin for an
/// attempt still on its way to Redis when the node gave up on it.
const OWN_NONCE_TIMEOUTS: u32 = 5;

/// Makes the nonces of a node's publishes that came without one.
#[derive(Debug)]
pub(super) struct Nonces {
    /// The node's instance when it started: unique among nodes and runs.
    tag: Box<str>,
    next: AtomicU64,
}

impl Nonces {
    pub(super) fn new(instance: &str) -> Self {
        Self {
            tag: instance.into(),
            next: AtomicU64::new(0),
        }
    }

    /// The kind of the next dedup key of the node's own (see `Store::key`): `sent:` cannot be
    /// mistaken for a sender's `dedup:`.
    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("sent:{}:{n}", self.tag)
    }
}

impl RedisBroker {
    /// [`Broker::publish`](crate::Broker::publish).
    pub(super) async fn send(&self, new: NewMessage) -> Result<Published, RedisBrokerError> {
        let store = &self.store;
        let keys = store.keys(&new.room);
        let encoded = encode_message(&new.from, new.nonce.as_deref(), &new.body);
        // A room's key like the others (a cluster needs every key of a script in one slot); the
        // sender's name cannot contain a newline.
        let config = &store.config;
        let (dedup, remembered) = match &new.nonce {
            Some(nonce) => (
                store.key(&new.room, &format!("dedup:{}\n{nonce}", new.from)),
                config.dedup_window,
            ),
            None => (
                store.key(&new.room, &self.nonces.next()),
                (config.command_timeout * OWN_NONCE_TIMEOUTS).min(config.dedup_window),
            ),
        };
        let mut invocation = store.scripts.publish.key(&keys.stream);
        invocation
            .key(&keys.channel)
            .key(&keys.trimmed)
            .key(dedup)
            .key(store.epoch_key(&new.room))
            .arg(config.stream_len.max(1))
            .arg(&encoded)
            .arg(remembered.as_millis().max(1) as u64);
        let wanted = match &self.waits {
            Some(waits) => waits.wanted(&new.room).await,
            None => 0,
        };
        let (id, stored): (String, i64) = match &self.waits {
            Some(waits) if wanted > 0 => waits.publish(&invocation, &new.room, wanted).await?,
            _ => invocation.invoke_async(&mut store.conn.clone()).await?,
        };
        let id = parse_id(&id)?;
        let own_nonce = new.nonce.is_none();
        let as_sent = new.stored_as(id);
        if stored == 0 && !own_nonce {
            // The original, as stored (it may have been trimmed away since: then as sent now).
            let stored = store.read_stream(&as_sent.room, Read::At(id)).await?;
            return Ok(Published::Duplicate(
                stored.into_iter().next().unwrap_or(as_sent),
            ));
        }
        // Stored now, or by this very publish's earlier attempt: as sent, with the stored id.
        Ok(Published::New(as_sent))
    }
}
