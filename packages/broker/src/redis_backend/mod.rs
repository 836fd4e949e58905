//! The Redis backend: any number of nodes sharing one Redis act as one chat service.
//!
//! # Keys
//!
//! With the default prefix `skat:` and the room name hash-tagged, so that one room's keys and
//! channel live on one Redis Cluster slot:
//!
//! - `skat:{general}:stream`: the room's log of messages and changes to them (issue 22), a Redis
//!   Stream trimmed to `stream_len` entries. Stream ids are message (and change) ids, one
//!   sequence. A plain message's entry has one field, `d`, holding the encoded message, as it
//!   always had; a reply adds `y` (the id it replies to). A change's entry starts with `k` (`e`
//!   edit, `d` delete, `r` reaction), then `t` (its target) and `d` (who, nonce, and the edit's
//!   body or the reaction's outcome). See `lua/state.lua` for every format.
//! - `skat:{general}:state`: the current state of the room's changed messages, a hash written by
//!   the change's script in the same step as its `XADD` (so every node reads the same): message
//!   id → overlay (edited body and time, the reaction summary: each emoji's exact count and
//!   first users), `<id>\nedits` → the ids of its edits (read only by a delete, so the
//!   overlay every page reads stays small), and `<id>\n<emoji>\n<user>` → that reaction's
//!   place (its id, zero-padded), so a reaction costs the same however many users share its
//!   emoji. `skat:{general}:reactors`: every reactor in place order (a sorted set with every
//!   score 0, member `<id>\n<emoji>\n<place>\n<user>`), read only to bring the next earliest
//!   user into view when a shown one removes theirs. History, join and recovery read a page of the stream, skipping changes, then one
//!   `HMGET` of the page's overlays, only in rooms that have any. A message whose edits and
//!   reactions are all gone has no overlay (it reads as a plain one again). `changes` → how
//!   many change entries the stream holds (absent if none), kept by the change's script and the
//!   trim, so an unread count knows when the stream is messages only.
//! - `skat:{general}:gone`: tombstones, a sorted set scored by id (ms), member `<id>\n<author>`.
//!   A stream entry cannot be rewritten, so a delete `XDEL`s the message's entry (no read
//!   returns its body; Redis frees its bytes when the stream node holding them goes, see
//!   SECURITY.md) and its overlay, and records the tombstone here: pages merge
//!   the tombstones of their id range, so "deleted" stays in its place. `skat:{general}:erased`:
//!   the same for the edits of a deleted message (their bodies were the message's), member
//!   `<id>\n<target>\n<editor>`, recovered as edits without a body. Trimming the stream drops
//!   the overlays of the messages trimmed and the tombstones and erased edits at or below the
//!   trimmed marker, in the same script, so these keys stay bounded by the stream. A delete
//!   then trims the stream further (marker moved, as any trim) while its entries, tombstones
//!   and erased edits together are more than `stream_len`: however many edits a deleted message
//!   had, the room holds at most `stream_len` of each.
//! - `skat:{general}:read`: read markers, a hash user → id (forward only, never past the
//!   stream's last id); unread counts are counted by the scripts over the stream after the
//!   marker (messages only, deleted ones are not in it), up to `UNREAD_CAP` ("that many or
//!   more"). A user without a marker in a room whose stream holds no change is answered from
//!   `XLEN`; any scan reads at most twice `UNREAD_CAP` entries and answers `UNREAD_CAP` when it
//!   reaches that bound first, so a join costs the same in a room of many changes.
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
//!   nonce, for the dedup window; `skat:{general}:dedup-<kind>:<sender>\n<nonce>` the same for
//!   a change (`<id> <count>`), one key space per kind (`e`, `d`, `r1` add, `r0` remove), so a
//!   nonce reused for another kind of request is a new one; `skat:{general}:sent:<instance>:<n>` the same for a publish
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
//!   disconnect everywhere, a user's read marker that moved (to tell its connections on every
//!   node, this one included: a node hears its own publishes).
//! - `skat:node:<node id>`: the claim of the live node running with that id ([`claim`]): one
//!   node per id; its value, a token, names the node's current instance.
//! - `skat:nodes`: the registry of node instances, a sorted set scored by each one's last
//!   heartbeat (Unix ms, on Redis's clock); `skat:instance:<instance>:rooms`: the rooms an
//!   instance holds entries in (listed before the first, taken off after the last, see `held`);
//!   `skat:sweep:<instance>`: the lock of the node sweeping a dead instance.
//!
//! Lifetimes: a room with history (a stream) keeps its stream, `trimmed` and `epoch` (and its
//! `state`, `gone`, `erased`, `read` and `reactors` keys) for good, or with `room_ttl` until it
//! is unused that long (each publish, change and join gives them the whole TTL again; the epoch
//! and side keys a quarter more when less than the TTL is left, so they outlive the stream,
//! and a publish that starts a history deletes side keys an older one left); a room
//! that never had a message keeps only an epoch, which expires after the room TTL or an hour, whichever is shorter, so no room name a client joins leaves a key for
//! good. Presence keys are deleted as they empty; dedup keys expire after the dedup window (the
//! node's own: after a few command timeouts). The rooms index keeps the name of every room some
//! node subscribed to until a listing passes it and finds the room gone (each page removes at
//! most about a thousand such names).
//!
//! # Guarantees, and how
//!
//! - **Order and storage.** `publish` runs one script doing `XADD` then `PUBLISH`, so ids come
//!   from the stream and every node receives messages in stream order; `change` the same, with
//!   its checks and its effect on the message's state in that script, and a publish's nonce
//!   space and `WAIT`. Each message is stored
//!   once, whatever the number of nodes, and whatever retries its publish takes: every publish
//!   has a nonce, the node's own when the sender gave none ([`publish`]).
//! - **One subscription per room per node.** All rooms of a shard share one pub/sub connection
//!   per node (one server: one connection; a cluster: one per master), owned by that shard's
//!   driver, a task that hands each channel message to its room's sinks directly ([`router`],
//!   [`shard`]): no task and no queue per room.
//! - **Gap repair.** Every room remembers the last message or change id its sinks got. When a shard's
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

use tokio::sync::watch;
use tokio::task::AbortHandle;

mod backoff;
mod catch_up;
mod claim;
mod codec;
mod config;
mod driver;
mod error;
mod failures;
mod held;
mod lease;
mod link;
mod presence;
mod publish;
mod replicas;
mod reply;
mod retry;
mod rooms;
mod route;
mod router;
mod scripts;
mod shard;
mod shards;
mod slots;
mod store;
mod subscription;
mod sweep;
mod topology;
mod waits;
mod watched;

use claim::Claim;
pub use config::{ConfigError, RedisConfig};
use driver::PubSubSource;
pub use error::RedisBrokerError;
use lease::Leases;
use presence::Presence;
use publish::Publisher;
use retry::Retrying;
use router::Router;
use shard::PubSub;
use shards::Shards;
use store::Store;
pub use subscription::RedisSubscription;
use waits::Waits;

use crate::{
    Broker, BrokerStats, Changed, HistoryPage, MembersPage, MessageId, NewChange, NewMessage,
    Published, ReadState, Recovered, Recovery, Resume, RoomSink, RoomsPage, Snapshot,
};

/// The Redis [`Broker`]: create it once per node with [`RedisBroker::connect`].
///
/// Dropping it stops its background tasks (pub/sub and heartbeats).
#[derive(Debug)]
pub struct RedisBroker {
    /// Commands and scripts.
    store: Arc<Store>,
    /// The instance this node runs as, and its lease.
    leases: Arc<Leases>,
    /// The presence this node holds.
    presence: Arc<Presence>,
    /// This node's claim on its id.
    claim: Arc<Claim>,
    /// The send path.
    publisher: Publisher,
    /// The pub/sub side: rooms and their sinks, and the shards' drivers.
    router: Arc<Router>,
    shards: Arc<Shards>,
    tasks: Vec<AbortHandle>,
}

impl Drop for RedisBroker {
    /// Stops the background tasks and ends every live subscription: their sinks hear
    /// [`RoomSink::closed`] (nothing would reach them any more).
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shards.stop_all();
        self.router.close_all();
    }
}

impl RedisBroker {
    /// Connects to Redis and starts this node's pub/sub and heartbeat tasks.
    ///
    /// Fails if the settings cannot work ([`RedisConfig::validate`]: nothing is connected then)
    /// or Redis cannot be reached now; after that, outages are survived (see the module docs)
    /// and reported through [`Broker::is_ready`] and failed calls.
    pub async fn connect(config: RedisConfig) -> Result<Self, RedisBrokerError> {
        config.validate()?;
        let link = link::connect(&config).await?;
        let source = Arc::new(PubSubSource::new(&config)?);
        let waits = (config.wait_replicas > 0)
            .then(|| Waits::new(&config))
            .transpose()?;
        let (ready, mut ready_rx) = watch::channel(false);
        let timeout = config.command_timeout;
        let store = Arc::new(Store::new(config, Retrying::new(link)));
        let leases = Arc::new(Leases::new());
        let claim = Arc::new(Claim::new(Arc::clone(&store), Arc::clone(&leases)));
        claim.acquire().await?;
        sweep::start(&store, &leases).await?;
        let presence = Arc::new(Presence::new(Arc::clone(&store), Arc::clone(&leases)));
        let router = Arc::new(Router::new());
        let shards = Arc::new(Shards::new(timeout, ready));
        let pubsub = PubSub {
            store: Arc::clone(&store),
            router: Arc::clone(&router),
            shards: Arc::clone(&shards),
            source,
        };
        let tasks = vec![
            tokio::spawn(topology::pubsub_task(pubsub)).abort_handle(),
            tokio::spawn(Arc::clone(&claim).task()).abort_handle(),
            tokio::spawn(Arc::clone(&presence).maintenance_task()).abort_handle(),
        ];
        let broker = Self {
            publisher: Publisher::new(Arc::clone(&store), waits, &leases.instance()),
            store,
            leases,
            presence,
            claim,
            router,
            shards,
            tasks,
        };
        match tokio::time::timeout(timeout * 2, ready_rx.wait_for(|ready| *ready)).await {
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
        sweep::stop(&self.store, &self.leases).await?;
        self.claim.release().await
    }
}

impl Broker for RedisBroker {
    type Error = RedisBrokerError;
    type Subscription = RedisSubscription;

    async fn publish(&self, new: NewMessage) -> Result<Published, RedisBrokerError> {
        self.publisher.publish(new).await
    }

    async fn change(&self, change: NewChange) -> Result<Changed, RedisBrokerError> {
        self.publisher.change(change).await
    }

    async fn read(
        &self,
        room: &str,
        user: &str,
        id: MessageId,
    ) -> Result<ReadState, RedisBrokerError> {
        self.store.read(room, user, id).await
    }

    async fn subscribe(
        &self,
        room: &str,
        sink: Arc<dyn RoomSink>,
    ) -> Result<RedisSubscription, RedisBrokerError> {
        let subscription =
            subscription::subscribe(&self.store, &self.router, &self.shards, room, sink).await?;
        rooms::index(&self.store, room).await;
        Ok(subscription)
    }

    async fn history(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, RedisBrokerError> {
        self.store.history(room, before, limit).await
    }

    async fn recover(
        &self,
        room: &str,
        since: MessageId,
        bounds: Recovery,
    ) -> Result<Option<Recovered>, RedisBrokerError> {
        self.store.recover(room, since, bounds).await
    }

    async fn presence_join(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        self.presence.join(room, user).await
    }

    async fn presence_leave(&self, room: &str, user: &str) -> Result<(), RedisBrokerError> {
        self.presence.leave(room, user).await
    }

    async fn join_snapshot(
        &self,
        room: &str,
        user: &str,
        join_presence: bool,
        resume: Resume<'_>,
    ) -> Result<Snapshot, RedisBrokerError> {
        self.presence
            .snapshot(room, user, join_presence, resume)
            .await
    }

    async fn epoch(&self, room: &str) -> Result<String, RedisBrokerError> {
        self.store.epoch(room).await
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
        self.store.typing(room, user).await
    }

    async fn disconnect(&self, user: &str, reason: &str) -> Result<(), RedisBrokerError> {
        self.store.disconnect(user, reason).await
    }

    async fn rooms(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RoomsPage, RedisBrokerError> {
        rooms::list(&self.store, after, limit).await
    }

    fn is_ready(&self) -> bool {
        // The pub/sub side's, the command connection's (see `watched`), and the lease's: without
        // one, presence writes (every join) are refused (see `claim`).
        self.shards.is_ready() && self.store.is_up() && self.leases.running()
    }

    fn stats(&self) -> BrokerStats {
        self.router.stats()
    }
}
