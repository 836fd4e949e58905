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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::codec::{encode_message, parse_id};
use super::error::RedisBrokerError;
use super::store::{Read, Store};
use super::waits::{self, Waits};
use crate::{NewMessage, Published};

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
        let config = &store.config;
        let room = new.room.as_str();
        let encoded = encode_message(&new.from, new.nonce.as_deref(), &new.body);
        let (dedup, remembered) = match &new.nonce {
            Some(nonce) => (
                store.names.dedup(room, &new.from, nonce),
                config.dedup_window,
            ),
            None => (
                store
                    .names
                    .own_dedup(room, &self.tag, self.next.fetch_add(1, Ordering::Relaxed)),
                (config.command_timeout * OWN_NONCE_TIMEOUTS).min(config.dedup_window),
            ),
        };
        let stream = store.names.stream(room);
        let invocation = store.publish_script(room, &stream, &encoded, &dedup, remembered);
        let target = waits::Room {
            name: room,
            key: &stream,
        };
        let wanted = match &self.waits {
            Some(waits) => waits.wanted(target).await,
            None => 0,
        };
        let (id, stored): (String, i64) = match &self.waits {
            Some(waits) if wanted > 0 => waits.publish(&invocation, target, wanted).await?,
            _ => store.run(&invocation).await?,
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
