//! The Redis backend: any number of nodes sharing one Redis act as one chat service.
//!
//! # Keys
//!
//! With the default prefix `skat:` and the room name hash-tagged, so that one room's keys and
//! channel live on one Redis Cluster slot:
//!
//! - `skat:{general}:stream`: the room's messages, a Redis Stream trimmed to `stream_len` entries.
//!   Stream ids are message ids. Each entry has one field, `d`, holding the encoded message.
//! - `skat:{general}:events`: the pub/sub channel of the room's live events.
//! - `skat:{general}:presence`: a sorted set of `<node>\n<user>` members scored by their expiry
//!   (Unix ms). Nodes refresh their entries every heartbeat; a dead node's entries expire.
//! - `skat:{general}:users`: a hash of user → number of live presence entries, for `members`.
//! - `skat:{general}:trimmed`: the newest message id trimmed from the stream, so `recover` knows
//!   exactly whether the messages after a client's `since` are all still there.
//! - `skat:{general}:epoch`: the room's history epoch ([`Broker::epoch`]), Redis's clock when
//!   the room was first joined. If Redis loses the room's data, it loses this key too, and the
//!   next join makes another: clients resuming from the old history then get `recovered: false`.
//! - `skat:node:<node id>`: the claim of the live node running with that id ([`claim`]): one
//!   node per id, as presence entries are keyed by it.
//!
//! # Guarantees, and how
//!
//! - **Order and storage.** `publish` runs one script doing `XADD` then `PUBLISH`, so ids come
//!   from the stream and every node receives messages in stream order. Each message is stored
//!   once, whatever the number of nodes.
//! - **One subscription per room per node.** All rooms share one pub/sub connection per node,
//!   owned by a background task that hands each channel message to its room's sinks directly
//!   ([`router`]): no task and no queue per room.
//! - **Gap repair.** Every room remembers the last message id its sinks got. When the pub/sub
//!   connection drops, the task reconnects with backoff and resubscribes every room, and each room
//!   re-reads its stream after that id before live messages (held back meanwhile) flow again.
//!   Live messages at or below the last id are skipped, so delivery stays exactly-once and in
//!   order.
//! - **Presence.** Scripts keep the sorted set and the count hash consistent and publish
//!   `online`/`offline` when a user's first entry appears or last one goes, including entries
//!   swept after expiry. Script time comes from Redis (`TIME`), so node clocks do not matter.
//!

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

mod claim;
mod codec;
mod retry;
mod router;
mod scripts;

use claim::Claim;
use codec::{Entries, decode_entries, decode_event, encode_message, parse_id};
use retry::Retrying;
pub use router::RedisSubscription;
use router::{Control, Route, pubsub_task};
use scripts::Scripts;

use crate::sparse::ShrinkWhenSparse as _;
use crate::{
    Broker, HistoryPage, Message, MessageId, NewMessage, Published, Recovery, RoomSink, Snapshot,
};

/// Settings of a [`RedisBroker`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Redis URL, e.g. `redis://127.0.0.1:6379/`.
    pub url: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Messages kept per room stream.
    pub stream_len: usize,
    /// This node's id, which owns its presence entries.
    pub node_id: String,
    /// How long a presence entry lives without a heartbeat.
    pub presence_ttl: Duration,
    /// How often this node refreshes its presence entries.
    pub heartbeat: Duration,
    /// Live events a room holds back while it catches up from its stream after the pub/sub
    /// connection came back; past it, held messages are dropped and read from the stream again.
    /// A bound, not an allocation.
    pub channel_capacity: usize,
    /// Timeout of each Redis command and connection attempt.
    pub command_timeout: Duration,
    /// How often the pub/sub connection is checked with a PING (answered within
    /// `command_timeout`, or the connection is made again and every room caught up).
    pub pubsub_ping: Duration,
    /// How long a sender's nonce is remembered for idempotent sends.
    pub dedup_window: Duration,
}

impl RedisConfig {
    /// Defaults for the given URL and node id.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "skat:".to_owned(),
            stream_len: 10_000,
            node_id: node_id.into(),
            presence_ttl: Duration::from_secs(25),
            heartbeat: Duration::from_secs(5),
            channel_capacity: 4096,
            command_timeout: Duration::from_secs(2),
            pubsub_ping: Duration::from_secs(5),
            dedup_window: crate::DEFAULT_DEDUP_WINDOW,
        }
    }
}

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
}

/// The Redis [`Broker`]: create it once per node with [`RedisBroker::connect`].
///
/// Dropping it stops its background tasks (pub/sub and heartbeats).
#[derive(Debug)]
pub struct RedisBroker {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for RedisBroker {
    /// Stops the background tasks and ends every live subscription: their sinks hear
    /// [`RoomSink::closed`] (nothing would reach them any more).
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for route in lock(&self.shared.rooms).values() {
            route.sinks.close();
        }
    }
}

struct Shared {
    config: RedisConfig,
    /// Commands; a command that finds the connection dropped is sent again once.
    conn: Retrying,
    scripts: Scripts,
    /// Each room with local subscriptions, by channel name.
    rooms: Mutex<HashMap<String, Route>>,
    /// Subscribe requests to the pub/sub task, bounded.
    control: mpsc::Sender<Control>,
    /// Wakes the pub/sub task when a room lost its last local subscription.
    unsubscribed: Notify,
    /// Whether the pub/sub connection is up and every room resubscribed.
    ready: watch::Sender<bool>,
    /// Presence entries this node holds, refreshed every heartbeat.
    held: Mutex<Held>,
    /// This node's claim on its id.
    claim: Claim,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Subscribe requests that may wait for the pub/sub task; a subscriber finding it full waits
/// (within its timeout) like one waiting for the answer.
const CONTROL_QUEUE: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Key names of one room.
struct Keys {
    stream: String,
    channel: String,
    presence: String,
    users: String,
    trimmed: String,
}

impl Shared {
    fn keys(&self, room: &str) -> Keys {
        let base = format!("{}{{{room}}}", self.config.prefix);
        Keys {
            stream: format!("{base}:stream"),
            channel: format!("{base}:events"),
            presence: format!("{base}:presence"),
            users: format!("{base}:users"),
            trimmed: format!("{base}:trimmed"),
        }
    }

    /// The key of the room's epoch (see [`Broker::epoch`]).
    fn epoch_key(&self, room: &str) -> String {
        format!("{}{{{room}}}:epoch", self.config.prefix)
    }

    fn presence_entry(&self, user: &str) -> String {
        format!("{}\n{user}", self.config.node_id)
    }

    async fn presence_join(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        let keys = self.keys(room);
        let ttl = self.config.presence_ttl.as_millis() as u64;
        let _: i64 = self
            .scripts
            .presence_join
            .key(&keys.presence)
            .key(&keys.users)
            .key(&keys.channel)
            .arg(self.presence_entry(user))
            .arg(user)
            .arg(ttl)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Reads and decodes stream entries: `XRANGE` (or `XREVRANGE` when `newest_first`) from
    /// `start` to `end` (Redis range syntax, `(` for exclusive), at most `count` if given.
    async fn read_stream(
        &self,
        room: &str,
        newest_first: bool,
        start: &str,
        end: &str,
        count: Option<usize>,
    ) -> Result<Vec<Message>, RedisBrokerError> {
        let mut cmd = redis::cmd(if newest_first { "XREVRANGE" } else { "XRANGE" });
        cmd.arg(self.keys(room).stream).arg(start).arg(end);
        if let Some(count) = count {
            cmd.arg("COUNT").arg(count);
        }
        let entries: Entries = cmd.query_async(&mut self.conn.clone()).await?;
        decode_entries(room, entries)
    }

    /// Messages with ids above `after` (all when `None`), oldest first, at most `count`.
    async fn range_after(
        &self,
        room: &str,
        after: Option<MessageId>,
        count: usize,
    ) -> Result<Vec<Message>, RedisBrokerError> {
        if after == Some(MessageId::MAX) {
            // Nothing is above it; Redis refuses the exclusive range past the largest id.
            return Ok(Vec::new());
        }
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        self.read_stream(room, false, &start, "+", Some(count))
            .await
    }

    /// The newest id ever trimmed from the room's stream (`None` inside: never trimmed), or
    /// `None` if the stream does not exist.
    async fn trimmed_up_to(
        &self,
        room: &str,
    ) -> Result<Option<Option<MessageId>>, RedisBrokerError> {
        let keys = self.keys(room);
        let (exists, trimmed): (bool, Option<String>) = redis::pipe()
            .exists(&keys.stream)
            .get(&keys.trimmed)
            .query_async(&mut self.conn.clone())
            .await?;
        if !exists {
            return Ok(None);
        }
        let trimmed = trimmed
            .map(|id| id.parse::<MessageId>())
            .transpose()
            .map_err(|e| RedisBrokerError::Corrupt(e.to_string()))?;
        Ok(Some(trimmed))
    }

    /// Routes a pub/sub message to the local subscriptions of its room.
    fn route(&self, channel: &str, payload: &[u8]) {
        router::route(self, channel, payload);
    }
}

impl RedisBroker {
    /// Connects to Redis and starts this node's pub/sub and heartbeat tasks.
    ///
    /// Fails if Redis cannot be reached now; after that, outages are survived (see the module
    /// docs) and reported through [`Broker::is_ready`] and failed calls.
    pub async fn connect(config: RedisConfig) -> Result<Self, RedisBrokerError> {
        // Keepalive probes, so the kernel notices a peer that vanished (the pub/sub connection
        // is also PINGed), and no Nagle delay on small commands.
        let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(10))
            .with_interval(Duration::from_secs(5));
        let tcp = redis::io::tcp::TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive);
        let info = config
            .url
            .as_str()
            .into_connection_info()?
            .set_tcp_settings(tcp);
        let client = redis::Client::open(info)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = Retrying::new(
            ConnectionManager::new_with_config(client.clone(), manager_config).await?,
        );
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (ready, mut ready_rx) = watch::channel(false);
        let (config_prefix, config_node_id) = (config.prefix.clone(), config.node_id.clone());
        let shared = Arc::new(Shared {
            config,
            conn,
            scripts: Scripts::new(),
            rooms: Mutex::default(),
            control,
            unsubscribed: Notify::new(),
            ready,
            held: Mutex::default(),
            claim: Claim::new(&config_prefix, &config_node_id),
        });
        shared.claim.acquire(&shared).await?;
        let pubsub =
            tokio::spawn(pubsub_task(Arc::clone(&shared), client, control_rx)).abort_handle();
        let heartbeat = tokio::spawn(heartbeat_task(Arc::clone(&shared))).abort_handle();
        let broker = Self {
            shared,
            tasks: vec![pubsub, heartbeat],
        };
        let timeout = broker.shared.config.command_timeout * 2;
        match tokio::time::timeout(timeout, ready_rx.wait_for(|ready| *ready)).await {
            Ok(Ok(_)) => Ok(broker),
            _ => Err(RedisBrokerError::Unavailable),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Gives this node's id back, so that a node started with it next need not wait for the
    /// claim to expire. Call it on an orderly stop, after the last connection is closed.
    pub async fn release_node_id(&self) -> Result<(), RedisBrokerError> {
        self.shared.claim.release(&self.shared).await
    }
}

/// The presence entries this node holds, by room: each room's name is kept once, not once per
/// user in it (a node may hold one entry per connection). A set, as Redis holds one entry per
/// node and user; sorted vectors, as most rooms have a few users (see [`crate::Tally`]).
#[derive(Debug, Default)]
struct Held(HashMap<Box<str>, Vec<Box<str>>>);

impl Held {
    fn insert(&mut self, room: &str, user: &str) {
        let users = match self.0.get_mut(room) {
            Some(users) => users,
            None => self.0.entry(room.into()).or_default(),
        };
        if let Err(at) = users.binary_search_by(|held| (**held).cmp(user)) {
            users.insert(at, user.into());
        }
    }

    fn remove(&mut self, room: &str, user: &str) {
        let Some(users) = self.0.get_mut(room) else {
            return;
        };
        if let Ok(at) = users.binary_search_by(|held| (**held).cmp(user)) {
            users.remove(at);
            users.shrink_when_sparse();
        }
        if users.is_empty() {
            self.0.remove(room);
            self.0.shrink_when_sparse();
        }
    }

    /// Every (room, user) held, for a heartbeat round.
    fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .flat_map(|(room, users)| {
                users
                    .iter()
                    .map(|user| (room.to_string(), user.to_string()))
            })
            .collect()
    }
}

/// Refreshes this node's presence entries so they outlive it only by the TTL.
async fn heartbeat_task(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(shared.config.heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match shared.claim.refresh(&shared).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                node = %shared.config.node_id,
                "another node took this node's id (its claim expired while Redis was unreachable): presence is shared with it until one of them stops"
            ),
            Err(err) => tracing::warn!(error = %err, "node id claim not refreshed"),
        }
        let held = lock(&shared.held).pairs();
        for chunk in held.chunks(64) {
            let refreshes = chunk
                .iter()
                .map(|(room, user)| shared.presence_join(room, user));
            for result in futures_util::future::join_all(refreshes).await {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "presence heartbeat failed");
                }
            }
        }
    }
}

impl Broker for RedisBroker {
    type Error = RedisBrokerError;
    type Subscription = RedisSubscription;

    async fn publish(&self, new: NewMessage) -> Result<Published, RedisBrokerError> {
        let keys = self.shared.keys(&new.room);
        let encoded = encode_message(&new.from, new.nonce.as_deref(), &new.body);
        // Hash-tagged like the room's other keys; the sender's name cannot contain a newline.
        let dedup = new.nonce.as_deref().map_or_else(String::new, |nonce| {
            format!(
                "{}{{{}}}:dedup:{}\n{nonce}",
                self.shared.config.prefix, new.room, new.from
            )
        });
        let mut invocation = self.shared.scripts.publish.key(&keys.stream);
        invocation
            .key(&keys.channel)
            .key(&keys.trimmed)
            .key(&dedup)
            .arg(self.shared.config.stream_len.max(1))
            .arg(&encoded)
            .arg(self.shared.config.dedup_window.as_millis().max(1) as u64);
        // Sent twice, a message without a nonce would be stored twice.
        let (id, stored): (String, i64) = if new.nonce.is_some() {
            invocation
                .invoke_async(&mut self.shared.conn.clone())
                .await?
        } else {
            invocation
                .invoke_async(&mut self.shared.conn.once())
                .await?
        };
        let parsed = parse_id(&id)?;
        let as_sent = Message {
            room: new.room,
            id,
            from: new.from,
            body: new.body,
            ts: parsed.ms,
            nonce: new.nonce,
        };
        if stored == 0 {
            // The original, as stored (it may have been trimmed away since: then as sent now).
            let start = parsed.to_string();
            let stored = self
                .shared
                .read_stream(&as_sent.room, false, &start, &start, None)
                .await?;
            return Ok(Published::Duplicate(
                stored.into_iter().next().unwrap_or(as_sent),
            ));
        }
        Ok(Published::New(as_sent))
    }

    async fn subscribe(
        &self,
        room: &str,
        sink: Arc<dyn RoomSink>,
    ) -> Result<RedisSubscription, RedisBrokerError> {
        let shared = &self.shared;
        let channel = shared.keys(room).channel;
        let id = lock(&shared.rooms)
            .entry(channel.clone())
            .or_insert_with(|| Route::new(room))
            .sinks
            .add(sink);
        // From here on, dropping `subscription` unregisters the sink.
        let subscription = RedisSubscription {
            shared: Arc::clone(shared),
            channel: channel.clone(),
            id,
        };
        let (ack, acked) = oneshot::channel();
        let answered = tokio::time::timeout(shared.config.command_timeout * 2, async {
            shared
                .control
                .send(Control::Subscribe { channel, ack })
                .await
                .map_err(|_| RedisBrokerError::Unavailable)?;
            acked.await.map_err(|_| RedisBrokerError::Unavailable)?
        });
        match answered.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(RedisBrokerError::Unavailable),
        }
        // Catch-up after an outage starts from the stream's end as of now.
        let latest = shared.read_stream(room, true, "+", "-", Some(1)).await?;
        if let Some(latest) = latest.first() {
            let latest = parse_id(&latest.id)?;
            if let Some(route) = lock(&shared.rooms).get_mut(&subscription.channel) {
                route.start_after(latest);
            }
        }
        Ok(subscription)
    }

    async fn history(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, RedisBrokerError> {
        if before == Some(MessageId::MIN) {
            // Nothing is below it; Redis refuses the exclusive range `(0-0`.
            return Ok(HistoryPage::default());
        }
        let end = before.map_or_else(|| "+".to_owned(), |id| format!("({id}"));
        let mut messages = self
            .shared
            .read_stream(room, true, &end, "-", Some(limit + 1))
            .await?;
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        messages.reverse();
        Ok(HistoryPage { messages, has_more })
    }

    async fn recover(
        &self,
        room: &str,
        since: MessageId,
        bounds: Recovery,
    ) -> Result<Option<Vec<Message>>, RedisBrokerError> {
        // The join script without presence: the trimmed check and the chunked reads are one
        // atomic script there, so nothing is trimmed between the check and the read.
        let snapshot = self
            .join_snapshot(room, "", false, Some(since), None, bounds, 1)
            .await?;
        Ok(snapshot.recovered.then_some(snapshot.messages))
    }

    async fn presence_join(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        self.shared.presence_join(room, user).await?;
        lock(&self.shared.held).insert(room, user);
        Ok(())
    }

    async fn presence_leave(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        // Forget it first: if Redis is unreachable the entry still expires after the TTL.
        lock(&self.shared.held).remove(room, user);
        let keys = self.shared.keys(room);
        let _: i64 = self
            .shared
            .scripts
            .presence_leave
            .key(&keys.presence)
            .key(&keys.users)
            .key(&keys.channel)
            .arg(self.shared.presence_entry(user))
            .arg(user)
            .invoke_async(&mut self.shared.conn.clone())
            .await?;
        Ok(())
    }

    async fn join_snapshot(
        &self,
        room: &str,
        user: &str,
        join_presence: bool,
        since: Option<MessageId>,
        epoch: Option<&str>,
        recovery: Recovery,
        page: usize,
    ) -> Result<Snapshot, RedisBrokerError> {
        let keys = self.shared.keys(room);
        let ttl = self.shared.config.presence_ttl.as_millis() as u64;
        let (mut members, entries, recovered, epoch): (Vec<String>, Entries, i64, String) = self
            .shared
            .scripts
            .join
            .key(&keys.presence)
            .key(&keys.users)
            .key(&keys.channel)
            .key(&keys.stream)
            .key(&keys.trimmed)
            .key(self.shared.epoch_key(room))
            .arg(self.shared.presence_entry(user))
            .arg(user)
            .arg(ttl)
            .arg(if join_presence { "1" } else { "0" })
            .arg(since.map_or_else(String::new, |id| id.to_string()))
            .arg(recovery.limit)
            .arg(page)
            .arg(recovery.max_bytes)
            .arg(crate::MESSAGE_OVERHEAD + room.len())
            .arg(epoch.unwrap_or(""))
            .invoke_async(&mut self.shared.conn.clone())
            .await?;
        if join_presence {
            lock(&self.shared.held).insert(room, user);
        }
        members.sort_unstable();
        let mut messages = decode_entries(room, entries)?;
        let recovered = recovered == 1;
        if !recovered {
            // The latest page comes newest first.
            messages.reverse();
        }
        Ok(Snapshot {
            members,
            messages,
            recovered,
            epoch,
        })
    }

    async fn epoch(&self, room: &str) -> Result<String, RedisBrokerError> {
        let epoch: String = self
            .shared
            .scripts
            .epoch
            .key(self.shared.epoch_key(room))
            .invoke_async(&mut self.shared.conn.clone())
            .await?;
        Ok(epoch)
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, RedisBrokerError> {
        let keys = self.shared.keys(room);
        let mut members: Vec<String> = self
            .shared
            .scripts
            .members
            .key(&keys.presence)
            .key(&keys.users)
            .key(&keys.channel)
            .invoke_async(&mut self.shared.conn.clone())
            .await?;
        members.sort_unstable();
        Ok(members)
    }

    async fn typing(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        let channel = self.shared.keys(room).channel;
        let _: i64 = self
            .shared
            .conn
            .clone()
            .publish(channel, format!("t{user}"))
            .await?;
        Ok(())
    }

    fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }
}
