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
//! - `skat:{general}:held:<instance>`: the users node instance `<instance>` (`<node id>:<claim
//!   token>`) holds in the room, a set ([`presence`]).
//! - `skat:{general}:users`: a hash of user → number of instances holding it (several nodes may
//!   hold one user).
//! - `skat:{general}:names`: the hash's keys again, as a sorted set with every score 0, so that
//!   `members` and the join page a room's members by name (`ZRANGE BYLEX ... LIMIT`) at the cost
//!   of a page, whatever the room's size. A hash is unordered (`HSCAN` pages in no order, and
//!   sorting `HKEYS` in the script costs the whole room on every join, which a connection storm
//!   into a big room multiplies); a score cannot hold both the count and the order, since
//!   `BYLEX` needs equal scores. The scripts that change the hash's keys change the index in the
//!   same step; one written by an older node is rebuilt when its size disagrees (see
//!   `scripts`).
//! - `skat:{general}:trimmed`: the newest message id trimmed from the stream, so `recover` knows
//!   exactly whether the messages after a client's `since` are all still there.
//! - `skat:{general}:dedup:<sender>\n<nonce>`: the id of the message a sender sent with that
//!   nonce, for the dedup window; `skat:{general}:sent:<instance>:<n>` the same for a publish
//!   that came without a nonce, under one the node made ([`publish`]), so that a publish sent
//!   twice by a retry is stored once: for a few command timeouts only, as only the node's own
//!   retries, all made within two, can repeat it.
//! - `skat:{general}:epoch`: the room's history epoch ([`Broker::epoch`]), Redis's clock when
//!   the room was first joined. If Redis loses the room's data, it loses this key too, and the
//!   next join makes another: clients resuming from the old history then get `recovered: false`.
//! - `skat:rooms`: every room some node subscribed to (its `~nodes` notices channel aside), a
//!   sorted set with every score 0 so that [`Broker::rooms`] pages through it by name; names of
//!   rooms that are gone are dropped as listings pass them ([`rooms`]).
//! - `skat:{~nodes}:events`: the channel of node-wide notices ([`crate::NODES_ROOM`]): a user to
//!   disconnect everywhere.
//! - `skat:node:<node id>`: the claim of the live node running with that id ([`claim`]): one
//!   node per id; its value, a token, names the node's current instance.
//! - `skat:nodes`: the registry of node instances, a sorted set scored by each one's last
//!   heartbeat (Unix ms, on Redis's clock); `skat:instance:<instance>:rooms`: the rooms an
//!   instance holds entries in (listed before the first, taken off after the last, see `held`);
//!   `skat:sweep:<instance>`: the lock of the node sweeping a dead instance.
//!
//! Lifetimes: a room with history (a stream) keeps its stream, `trimmed` and `epoch` for good,
//! or with `room_ttl` until it is unused that long (each publish and join gives them the whole
//! TTL again); a room that never had a message keeps only an epoch, which expires after the
//! room TTL or an hour, whichever is shorter, so no room name a client joins leaves a key for
//! good. Presence keys are deleted as they empty; dedup keys expire after the dedup window (the
//! node's own: after a few command timeouts). The rooms index keeps the name of every room some
//! node subscribed to until a listing passes it and finds the room gone (each page removes at
//! most about a thousand such names).
//!
//! # Guarantees, and how
//!
//! - **Order and storage.** `publish` runs one script doing `XADD` then `PUBLISH`, so ids come
//!   from the stream and every node receives messages in stream order. Each message is stored
//!   once, whatever the number of nodes, and whatever retries its publish takes: every publish
//!   has a nonce, the node's own when the sender gave none ([`publish`]).
//! - **One subscription per room per node.** All rooms of a shard share one pub/sub connection
//!   per node (one server: one connection; a cluster: one per master), owned by that shard's
//!   driver, a task that hands each channel message to its room's sinks directly ([`router`],
//!   [`shard`]): no task and no queue per room.
//! - **Gap repair.** Every room remembers the last message id its sinks got. When a shard's
//!   pub/sub connection drops, its driver reconnects with backoff, resubscribes that shard's
//!   rooms in batches and catches each of them up: it re-reads the stream after that id before
//!   live messages (held back meanwhile) flow again ([`catch_up`]). Live messages at or below
//!   the last id are skipped, so delivery stays exactly-once and in order. Presence changes
//!   missed meanwhile are announced after the catch-up, from the room's members then ([`route`]).
//!   A room joined during the reconnection is not held with the others: it is subscribed on its
//!   own and starts at its stream's end.
//! - **Shards are isolated.** A shard's outage, failover or moved slot touches only the rooms
//!   it serves: the other drivers go on ([`topology`] reads the cluster's shards again and
//!   starts a driver for a new master). The pub/sub side is ready while every shard's
//!   connection is up, except shards the cluster itself reports failed (down for every node),
//!   and one at least is.
//! - **Keys do not pile up.** See the lifetimes above: what stays for good is the history of
//!   rooms that had messages (unless `room_ttl` is set) and a few keys per node; the rooms
//!   index also keeps the names of rooms that are gone until a listing passes them.
//! - **Readiness covers the commands too.** On one server the command connection is watched
//!   ([`watched`]): a timeout or a READONLY replaces it, and [`Broker::is_ready`] says false
//!   from a READONLY, or a timeout or drop that a check on a new connection confirms, until a
//!   master answers again (one slow moment of Redis is not a failure of the node). It also says
//!   false while the node's lease has run out ([`claim`]): its claim could not be kept for ¾ of
//!   a TTL (in a cluster, the claim's shard is down or failing over, whatever the other shards
//!   do), or another node took its id; every join is refused meanwhile.
//! - **A lagging replica slows only the sends.** With `wait_replicas`, a publish and its
//!   `WAIT` run on a connection of their own ([`waits`]), never on the shared one the node's
//!   other commands use, and not at all while the master has no replica in sync; the two go to
//!   the room's master as one pipeline (so the `WAIT` follows the write through a stale slot
//!   map), within two command timeouts; a message confirmed short of its replicas (a `WAIT` that
//!   failed included) is a logged warning, never an error once it is stored.
//! - **Presence, at a cost that grows with nodes, not users.** Scripts keep each instance's set
//!   and the count hash consistent and publish `online`/`offline` when a user's first entry
//!   appears or last one goes. Entries do not expire: a node's heartbeat keeps only its claim
//!   and its registry stamp alive (three commands, whatever it holds), and live nodes sweep the
//!   entries of instances whose claim has lapsed ([`presence`], `sweep`). The claim is kept on
//!   its own timer ([`claim`]), so no sweep or repair, however long, lets it lapse.
//! - **A node cut off longer than the TTL** is swept by the others (its users go offline within
//!   a TTL and a heartbeat). Every presence write goes under the instance's lease, which ends
//!   before its claim can lapse and is checked by the scripts on Redis's clock: whatever the cut
//!   off node sends as the swept instance (at once when Redis is back, or delayed on the way) is
//!   refused, never left where no sweep finds it. Its first write after its return waits for
//!   its claim to be made again, as a new instance, under which it then holds its users again.
//! - **Clocks.** Liveness is decided by the claim's expiry, on Redis's clock; registry stamps
//!   and the staleness cutoff are Redis's clock too (read by the claim's refresh), so node
//!   clocks do not matter. A stale stamp whose claim is alive (an older node with a slow clock)
//!   is stamped again by the sweeper, so it cannot hide dead instances behind it. In a cluster,
//!   the claim and a room may be on shards with different clocks: the lease keeps a quarter of
//!   the TTL as a margin for that.
//! - **Lost replies.** The claim is the node's whenever its key holds the node's token: a claim
//!   whose reply timed out, or whose retry found the key already set, still makes the node that
//!   instance (checked on every refresh). A presence write whose reply is lost either ran or
//!   did not; a leave that failed is tried again every heartbeat until Redis answers. Taking a
//!   room off the instance's list counts as done however it ended (it may have run): the next
//!   write there lists the room again, so no entry is ever out of a sweep's reach.
//!

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;

mod catch_up;
mod claim;
mod codec;
mod driver;
mod held;
mod link;
mod presence;
mod publish;
mod reply;
mod retry;
mod rooms;
mod route;
mod router;
mod scripts;
mod shard;
mod store;
mod sweep;
mod topology;
mod waits;
mod watched;

use claim::{Claim, claim_task};
use codec::{Entries, decode_entries};
use presence::maintenance_task;
use publish::Nonces;
use retry::Retrying;
pub use router::RedisSubscription;
use router::Router;
use store::{Read, Store};
use waits::Waits;

use crate::{
    Broker, BrokerStats, HistoryPage, MembersPage, Message, MessageId, NODES_ROOM, NewMessage,
    Published, Recovery, Resume, RoomSink, RoomsPage, Snapshot,
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
    /// This node's id, which owns its presence entries: unique among live nodes, and valid for
    /// [`crate::check_node_id`] (no `:`).
    pub node_id: String,
    /// How long the node's claim on its id lives without a refresh: a node that stops
    /// heartbeating (a crash, a partition) is swept by the others, its users offline, about this
    /// long after its last refresh. Presence entries themselves never expire (see `presence`).
    pub presence_ttl: Duration,
    /// How often this node refreshes its claim and stamps the registry, and sweeps dead
    /// instances (at most half the presence TTL).
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
    /// With a `rediss://` URL: the PEM certificates of the CAs to trust for Redis's
    /// certificate, instead of the system's.
    pub tls_ca: Option<Vec<u8>>,
    /// `url` is a comma-separated list of seed nodes of a Redis Cluster (Redis 7): rooms are
    /// spread over its shards and their live events use sharded pub/sub (see `link`).
    pub cluster: bool,
    /// Replicas that should have a message before `publish` confirms it (Redis `WAIT`, for up
    /// to a tenth of `command_timeout`; 0: the master's own write is enough). With 1, a master
    /// that dies and is replaced by its replica loses no confirmed message, but for the
    /// shortfalls `waits` describes (no replica in sync, a replica lagging past the wait),
    /// which are logged as warnings.
    pub wait_replicas: u32,
    /// How long a room with history is kept unused (no message sent, nobody joining) before its
    /// history, epoch and trimmed marker expire; `None`: for good. A room that never had a
    /// message keeps nothing for good either way: its epoch expires after this or an hour,
    /// whichever is shorter.
    pub room_ttl: Option<Duration>,
}

/// How long the epoch of a room without history (only joined) lives, at most: no room name a
/// client joins leaves a key for good. A client that resumes it later gets `recovered: false`,
/// which costs it nothing, since there was nothing to recover.
const EMPTY_ROOM_TTL: Duration = Duration::from_secs(3600);

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
            tls_ca: None,
            cluster: false,
            wait_replicas: 0,
            room_ttl: None,
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
    /// The configured node id cannot name a node (see [`crate::check_node_id`]).
    #[error(transparent)]
    InvalidNodeId(#[from] crate::InvalidNodeId),
    /// The node's claim on its id could not be kept alive lately (Redis was out of its reach),
    /// so it may have lapsed: presence writes wait for it to be made again, and this one waited
    /// in vain.
    #[error(
        "the node's claim on its id may have lapsed (Redis out of reach): presence not written"
    )]
    Lapsed,
}

/// The Redis [`Broker`]: create it once per node with [`RedisBroker::connect`].
///
/// Dropping it stops its background tasks (pub/sub and heartbeats).
#[derive(Debug)]
pub struct RedisBroker {
    /// Commands, scripts and the presence this node holds.
    store: Arc<Store>,
    /// The pub/sub side: rooms and their sinks.
    router: Arc<Router>,
    /// This node's claim on its id.
    claim: Arc<Claim>,
    /// With `wait_replicas`: the publishes that wait for replicas.
    waits: Option<Waits>,
    /// The nonces of publishes that came without one.
    nonces: Nonces,
    tasks: Vec<AbortHandle>,
}

impl Drop for RedisBroker {
    /// Stops the background tasks and ends every live subscription: their sinks hear
    /// [`RoomSink::closed`] (nothing would reach them any more).
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.router.close_all();
    }
}

impl RedisBroker {
    /// Connects to Redis and starts this node's pub/sub and heartbeat tasks.
    ///
    /// Fails if the node id is invalid ([`crate::check_node_id`]) or Redis cannot be reached
    /// now; after that, outages are survived (see the module docs) and reported through
    /// [`Broker::is_ready`] and failed calls.
    pub async fn connect(config: RedisConfig) -> Result<Self, RedisBrokerError> {
        crate::check_node_id(&config.node_id)?;
        let (link, pubsub) = link::connect(&config).await?;
        let waits = (config.wait_replicas > 0)
            .then(|| Waits::new(&config))
            .transpose()?;
        let conn = Retrying::new(link);
        let (ready, mut ready_rx) = watch::channel(false);
        let store = Arc::new(Store::new(config, conn));
        let claim = Arc::new(Claim::new(&store));
        claim.acquire(&store).await?;
        sweep::start(&store).await?;
        let router = Arc::new(Router::new(&store.config, ready));
        let pubsub = tokio::spawn(topology::pubsub_task(
            Arc::clone(&store),
            Arc::clone(&router),
            pubsub,
        ))
        .abort_handle();
        let claim_keeper =
            tokio::spawn(claim_task(Arc::clone(&store), Arc::clone(&claim))).abort_handle();
        let maintenance = tokio::spawn(maintenance_task(Arc::clone(&store))).abort_handle();
        let broker = Self {
            nonces: Nonces::new(&store.instance()),
            store,
            router,
            claim,
            waits,
            tasks: vec![pubsub, claim_keeper, maintenance],
        };
        let timeout = broker.store.config.command_timeout * 2;
        match tokio::time::timeout(timeout, ready_rx.wait_for(|ready| *ready)).await {
            Ok(Ok(_)) => Ok(broker),
            _ => Err(RedisBrokerError::Unavailable),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.store.config
    }

    /// Gives this node's id back, so that a node started with it next need not wait for the
    /// claim to expire. Call it on an orderly stop, after the last connection is closed.
    /// It also removes the presence entries it still holds (announcing `offline` for them).
    pub async fn release_node_id(&self) -> Result<(), RedisBrokerError> {
        sweep::stop(&self.store).await?;
        self.claim.release(&self.store).await
    }
}

impl Broker for RedisBroker {
    type Error = RedisBrokerError;
    type Subscription = RedisSubscription;

    async fn publish(&self, new: NewMessage) -> Result<Published, RedisBrokerError> {
        self.send(new).await
    }

    async fn subscribe(
        &self,
        room: &str,
        sink: Arc<dyn RoomSink>,
    ) -> Result<RedisSubscription, RedisBrokerError> {
        let channel = self.store.channel(room);
        let (id, start) = self.router.add(&channel, room, sink);
        // From here on, dropping `subscription` unregisters the sink.
        let subscription = RedisSubscription {
            router: Arc::clone(&self.router),
            channel,
            id,
        };
        // Live from the stream's end as of now.
        self.router
            .subscribe(&self.store, &subscription.channel, start)
            .await?;
        self.index_room(room).await;
        Ok(subscription)
    }

    async fn history(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, RedisBrokerError> {
        let mut messages = self
            .store
            .read_stream(room, Read::Before(before, limit + 1))
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
        let resume = Resume {
            since: Some(since),
            epoch: None,
            recovery: bounds,
            page: 1,
            members: 0,
        };
        let snapshot = self.join_snapshot(room, "", false, resume).await?;
        Ok(snapshot.recovered.then_some(snapshot.messages))
    }

    async fn presence_join(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        presence::join(&self.store, room, user).await
    }

    async fn presence_leave(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        presence::leave(&self.store, room, user).await
    }

    async fn join_snapshot(
        &self,
        room: &str,
        user: &str,
        join_presence: bool,
        resume: Resume<'_>,
    ) -> Result<Snapshot, RedisBrokerError> {
        let Resume {
            since,
            epoch,
            recovery,
            page,
            members: members_bound,
        } = resume;
        let writing = if join_presence {
            Some(presence::writing(&self.store, room).await?)
        } else {
            None
        };
        let keys = self.store.keys(room);
        let held = writing.as_ref().map_or_else(
            || self.store.own_held_key(room),
            presence::Writing::held_key,
        );
        type Reply = (Vec<String>, Entries, i64, String, i64);
        let (members, entries, recovered, epoch, more_members): Reply =
            Store::with_presence_keys(&self.store.scripts.join, &held, &keys)
                .key(&keys.stream)
                .key(&keys.trimmed)
                .key(self.store.epoch_key(room))
                .arg(user)
                .arg(if join_presence { "1" } else { "0" })
                .arg(since.map_or_else(String::new, |id| id.to_string()))
                .arg(recovery.limit)
                .arg(page)
                .arg(recovery.max_bytes)
                .arg(skat_protocol::MESSAGE_FRAMING + skat_protocol::escaped_len(room))
                .arg(epoch.unwrap_or(""))
                .arg(members_bound)
                .arg(writing.as_ref().map_or(0, |writing| writing.lease.until_ms))
                .invoke_async(&mut self.store.conn.clone())
                .await
                .map_err(|err| presence::refused(&self.store, err))?;
        if let Some(writing) = writing {
            writing.hold(user);
        }
        let mut messages = decode_entries(room, entries)?;
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
            epoch,
        })
    }

    async fn epoch(&self, room: &str) -> Result<String, RedisBrokerError> {
        let keys = self.store.keys(room);
        let epoch: String = self
            .store
            .scripts
            .epoch
            .key(&keys.stream)
            .key(&keys.trimmed)
            .key(self.store.epoch_key(room))
            .invoke_async(&mut self.store.conn.clone())
            .await?;
        Ok(epoch)
    }

    async fn members(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, RedisBrokerError> {
        self.store.members_page(room, after, limit).await
    }

    async fn typing(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        let _: i64 = redis::cmd(self.store.publish_command())
            .arg(self.store.channel(room))
            .arg(format!("t{user}"))
            .query_async(&mut self.store.conn.clone())
            .await?;
        Ok(())
    }

    async fn disconnect(&self, user: &str, reason: &str) -> Result<(), RedisBrokerError> {
        let _: i64 = redis::cmd(self.store.publish_command())
            .arg(self.store.channel(NODES_ROOM))
            .arg(codec::encode_disconnect(user, reason))
            .query_async(&mut self.store.conn.clone())
            .await?;
        Ok(())
    }

    async fn rooms(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RoomsPage, RedisBrokerError> {
        self.list_rooms(after, limit).await
    }

    fn is_ready(&self) -> bool {
        // The pub/sub side's, the command connection's (see `watched`), and the lease's: without
        // one, presence writes (every join) are refused (see `claim`).
        self.router.is_ready() && self.store.conn.is_up() && claim::lease_running(&self.store)
    }

    fn stats(&self) -> BrokerStats {
        self.router.stats()
    }
}
