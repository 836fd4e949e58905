//! The broker: everything Skat nodes share about rooms.
//!
//! A node keeps its users' WebSocket connections to itself; what must be the same on every node
//! goes through a [`Broker`]: message ids and history, the live stream of room events, and who is
//! online where. Two backends implement it:
//!
//! - [`MemoryBroker`], embedded in the process: the single-node default, a complete product mode;
//! - [`RedisBroker`] (feature `redis`), so any number of nodes sharing one Redis act as one
//!   service.
//!
//! The server is generic over [`Broker`] and never knows which backend it runs on.
//!
//! # Shape
//!
//! - A node subscribes **once per room** ([`Broker::subscribe`]) however many of its users are in
//!   it, and fans events out to them itself. Brokers never see individual connections.
//! - Delivery is a call, not a queue: the broker hands each event to the subscription's
//!   [`RoomSink`] as it happens (the embedded broker from `publish` itself, the Redis broker from
//!   its pub/sub reader). A room costs a node no task and no buffer; a sink that cannot keep up
//!   (a slow connection) is the node's business, not the broker's.
//! - Events carry final ids: a [`Message`] leaves [`Broker::publish`] with the id and timestamp the
//!   broker assigned, and subscribers receive exactly that value.
//! - Presence is counted per node: the server calls [`Broker::presence_join`] when the first of its
//!   connections for a user enters a room and [`Broker::presence_leave`] when the last one goes.
//!   The broker turns these into `online`/`offline` [`RoomEvent::Presence`] events when a user's
//!   first node arrives or last node leaves.

mod change;
pub mod collections;
#[cfg(feature = "sqlite")]
pub mod durable;
mod memory;
mod node_id;
mod reads;
#[cfg(feature = "redis")]
mod redis_backend;
mod sinks;
mod sparse;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::future::Future;
use std::sync::Arc;

pub use change::{
    CHANGE_FRAMING, ChangeKind, ChangeRefusal, Changed, NewChange, ReadState, Recovered,
    change_size,
};

pub use memory::{
    MemoryBroker, MemoryBrokerConfig, MemoryError, MemorySubscription, RETENTION_SWEEP,
};
pub use node_id::{InvalidNodeId, NODE_ID_MAX_LEN, check_node_id};
pub use reads::{HistoryPage, Recovery, Resume, SearchPage, Searched, Snapshot};
#[cfg(feature = "redis")]
pub use redis_backend::{
    ConfigError, RedisBroker, RedisBrokerError, RedisConfig, RedisSubscription,
};
use skat_protocol::message_size;
pub use skat_protocol::{Change, InvalidMessageId, Message, MessageId};

/// Locks `m`, ignoring poisoning. A poisoned lock means a panic while holding it; the state is
/// still consistent because every critical section in this crate finishes its writes before
/// anything can panic. The one lock helper of the crate.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A message to publish; the broker assigns its id and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Target room.
    pub room: String,
    /// Sender's name.
    pub from: String,
    /// Message text, already validated.
    pub body: String,
    /// The sender's nonce, delivered with the message.
    pub nonce: Option<String>,
    /// The message of the same room this one replies to: it must be a retained, not deleted
    /// message of the room, or the publish is refused ([`Published::NoSuchReply`]).
    pub reply_to: Option<MessageId>,
}

impl NewMessage {
    /// The message as stored under `id`: its time is the id's milliseconds, in every backend.
    pub fn stored_as(self, id: MessageId) -> Message {
        Message {
            room: self.room,
            id,
            from: self.from,
            body: self.body,
            ts: id.ms,
            nonce: self.nonce,
            // A plain message (no reply) carries no box.
            extras: self.reply_to.map(|reply_to| {
                Box::new(skat_protocol::Extras {
                    reply_to: Some(reply_to),
                    ..Default::default()
                })
            }),
        }
    }
}

/// Something that happened in a room, as delivered to a node's room subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// A published message, with its final id.
    Message(Message),
    /// A change to an earlier message of the room, with its final id: delivered like messages
    /// (exactly once, in id order with them).
    Change(Change),
    /// A user's read marker in a room moved ([`Broker::read`]): only delivered to subscriptions
    /// of [`NODES_ROOM`], at most once (the next join carries the marker anyway), for each node
    /// to tell that user's connections.
    Read {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// The marker: everything up to it is read.
        id: MessageId,
        /// Messages after it, capped at [`UNREAD_CAP`](skat_protocol::UNREAD_CAP).
        unread: u32,
    },
    /// A user came online in the room (its first node joined) or went offline (its last left).
    Presence {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// Online or offline.
        online: bool,
    },
    /// A user is typing.
    Typing {
        /// The room.
        room: String,
        /// The user.
        user: String,
    },
    /// Every node must close the user's connections ([`Broker::disconnect`]). Only delivered to
    /// subscriptions of [`NODES_ROOM`].
    Disconnect {
        /// The user.
        user: String,
        /// Why, for the user to see.
        reason: String,
    },
}

/// The room of node-wide notices ([`RoomEvent::Disconnect`]): each node subscribes to it like to
/// a room. Not a valid room name, so no client can join it, and never listed by
/// [`Broker::rooms`].
pub const NODES_ROOM: &str = "~nodes";

/// A room with the number of its members (see [`Broker::rooms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room's name.
    pub name: String,
    /// Users online in it, on every node.
    pub members: usize,
}

/// A page of [`Broker::rooms`], in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomsPage {
    /// The rooms.
    pub rooms: Vec<RoomSummary>,
    /// Whether rooms with names after the last one remain.
    pub has_more: bool,
}

/// A page of [`Broker::members`], in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembersPage {
    /// The users, sorted, without duplicates.
    pub members: Vec<String>,
    /// Whether users with names after the last one remain.
    pub has_more: bool,
}

impl MembersPage {
    /// The cursor of the next page (the last name), if users remain after this page.
    pub fn next(&self) -> Option<&str> {
        self.members
            .last()
            .filter(|_| self.has_more)
            .map(String::as_str)
    }
}

/// Outcome of [`Broker::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Stored and delivered to the room's subscriptions.
    New(Message),
    /// A retry of a message already accepted (same room, sender and nonce within the dedup
    /// window): nothing was stored or delivered; this is the original.
    Duplicate(Message),
    /// The message's `reply_to` is not a retained, not deleted message of the room: nothing was
    /// stored.
    NoSuchReply,
}

impl Published {
    /// The message, new or original (`None` if refused).
    pub fn message(&self) -> Option<&Message> {
        match self {
            Self::New(m) | Self::Duplicate(m) => Some(m),
            Self::NoSuchReply => None,
        }
    }

    /// The message, new or original (`None` if refused).
    pub fn into_message(self) -> Option<Message> {
        match self {
            Self::New(m) | Self::Duplicate(m) => Some(m),
            Self::NoSuchReply => None,
        }
    }
}

/// How long a nonce is remembered for idempotent sends, by default.
pub const DEFAULT_DEDUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

/// What a broker has had to repair so far, for a node's metrics: all zero for a broker that
/// never loses its connection (the embedded one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Times the live-event connection was made again after being lost.
    pub reconnects: u64,
    /// Room catch-ups from the stored history after such a loss (gap repairs).
    pub catch_ups: u64,
    /// Messages those catch-ups delivered that live delivery had missed.
    pub caught_up: u64,
}

/// The shared state of rooms, as seen by one node.
///
/// Delivery guarantees are stated per method. "Accepted" means [`Broker::publish`] returned `Ok`.
pub trait Broker: Send + Sync + 'static {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A node's subscription to one room: while it lives, the room's events reach the
    /// [`RoomSink`] it was made with; dropping it unsubscribes.
    type Subscription: Send + Sync + 'static;

    /// Stores a message in its room's history and delivers it to every subscription of the room.
    ///
    /// On `Ok`, the message has its final id, strictly greater than every earlier id of the room,
    /// is readable through [`Broker::history`], and will be delivered exactly once to every
    /// subscription that existed when it was stored, in id order. On `Err` the outcome is
    /// unknown: a remote broker may have stored the message before the connection failed. The
    /// caller must report the failure (never drop it silently), and a retry with the same nonce
    /// is safe: it returns the original if the first attempt was stored.
    ///
    /// Idempotence: a message with a nonce that repeats the `(room, from, nonce)` of a message
    /// accepted within the broker's dedup window (2 minutes by default, on every node) is not
    /// stored again; the result is [`Published::Duplicate`] with the original message, which is
    /// not delivered again either.
    ///
    /// Replies: a `reply_to` that is not a retained, not deleted message of the room is
    /// [`Published::NoSuchReply`], decided in the same atomic step as the store.
    fn publish(
        &self,
        message: NewMessage,
    ) -> impl Future<Output = Result<Published, Self::Error>> + Send;

    /// Stores a change to an earlier message of the room (an entry of the room's log with its
    /// own id, in the messages' sequence), applies it to the message's current state, and
    /// delivers it to every subscription as [`RoomEvent::Change`], with the guarantees of
    /// [`Broker::publish`] (exactly once, in id order with messages; `Err` means unknown, a
    /// retry with the same nonce is safe).
    ///
    /// The room's state decides, atomically: the target must be a retained message of the room
    /// and not deleted ([`ChangeRefusal::NoSuchMessage`]); an edit or delete `as_author` must be
    /// by its author ([`ChangeRefusal::NotAuthor`]); a reaction with a new emoji beyond
    /// [`MAX_REACTIONS`](skat_protocol::MAX_REACTIONS) distinct ones is
    /// [`ChangeRefusal::TooManyReactions`]. A deletion drops the body (and any edit's) from the
    /// broker, not only from view. A reaction that repeats the user's current one is stored
    /// nowhere and returns the current state as [`Changed::New`].
    fn change(
        &self,
        change: NewChange,
    ) -> impl Future<Output = Result<Changed, Self::Error>> + Send;

    /// Moves `user`'s read marker in `room` forward to `id` (everything up to it is read) and
    /// returns the marker and the unread count after it. The marker never moves back (a stale
    /// device's read cannot undo a newer one), and never past the room's last id (a made-up id
    /// cannot hide messages not yet sent), so a read of [`MessageId::MIN`] moves nothing and
    /// only reads the state. When the marker moved, a [`RoomEvent::Read`] reaches every
    /// subscription of [`NODES_ROOM`], at most once.
    fn read(
        &self,
        room: &str,
        user: &str,
        id: MessageId,
    ) -> impl Future<Output = Result<ReadState, Self::Error>> + Send;

    /// Subscribes this node to a room's events, delivered to `sink`.
    ///
    /// Once the future resolves, every message accepted afterwards is delivered to `sink` exactly
    /// once and in id order; a message accepted before may or may not be. Presence and typing
    /// events are delivered at most once (they are transient). Callers hold one subscription per
    /// room per node; dropping it unsubscribes. If the broker ends the subscription for good
    /// (it shut down), the sink hears [`RoomSink::closed`] and nothing after.
    fn subscribe(
        &self,
        room: &str,
        sink: Arc<dyn RoomSink>,
    ) -> impl Future<Output = Result<Self::Subscription, Self::Error>> + Send;

    /// Returns up to `limit` of the room's messages with ids below `before` (or the latest ones),
    /// oldest first, in their current state (change entries of the log are skipped). Only the
    /// broker's retained history is visible.
    fn history(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> impl Future<Output = Result<HistoryPage, Self::Error>> + Send;

    /// Finds the room's messages that hold every one of `words`, newest first: up to `limit`
    /// with ids below `before` (or the newest ones), in their current state (an edited message
    /// by its new words, never its old ones; a deleted one never), among the messages
    /// [`Broker::history`] would return. `words` are plain words, as
    /// [`search_terms`](skat_protocol::search_terms) splits a query: each is matched as written,
    /// never as an operator; the last one may match a word's start.
    ///
    /// A backend that keeps no index of its messages answers [`Searched::Unsupported`]: that
    /// is the default, so the Redis backend (until an archive exists) and the embedded broker
    /// without a data dir answer it; the embedded broker on a journal searches its SQLite file.
    fn search(
        &self,
        room: &str,
        words: &[String],
        before: Option<MessageId>,
        limit: usize,
    ) -> impl Future<Output = Result<Searched, Self::Error>> + Send {
        let _ = (room, words, before, limit);
        std::future::ready(Ok(Searched::Unsupported))
    }

    /// Returns every message of the room after `since`, in its current state, and every change
    /// after `since` to a message at or before it (each change so seen exactly once), if the
    /// retained history still holds all of them and they fit in `bounds` (messages and changes
    /// together, a change counted by [`change_size`]); `None` otherwise (the caller falls back to
    /// the latest page). A backend reads no more than the bounds allow (plus one entry) to find
    /// out.
    ///
    /// `since` must be an id the history knows: a retained entry's (message or change), or the
    /// newest one trimmed
    /// away (everything after it is kept). Anything else is `None`, whatever the epoch: an id
    /// from a history the broker lost (Redis restarted without persistence) is not in the new
    /// one, and passing the new history off as what followed it would hide the gap. Two ids
    /// are anchors in every history: [`MessageId::MAX`] (nothing is after it) and
    /// [`MessageId::MIN`] while nothing was ever trimmed (everything is after it).
    fn recover(
        &self,
        room: &str,
        since: MessageId,
        bounds: Recovery,
    ) -> impl Future<Output = Result<Option<Recovered>, Self::Error>> + Send;

    /// Records that this node holds `user` in `room`; emits `online` if no node held it before.
    ///
    /// A node may call it again for a user it may already hold, when it cannot know whether an
    /// earlier call took effect (a failed [`Broker::join_snapshot`] whose other connections of
    /// the user stayed): a backend whose calls can fail must count a node's user once.
    fn presence_join(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Records that this node no longer holds `user` in `room`; emits `offline` if no node holds
    /// it any more.
    fn presence_leave(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Up to `limit` of the users online in the room on any node with names after `after` (or
    /// from the first), in name order and without duplicates. A room's members are paged by
    /// name, so a page costs the same whatever the room's size.
    fn members(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<MembersPage, Self::Error>> + Send;

    /// Broadcasts a typing notification to the room's subscriptions, at most once, never stored.
    fn typing(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Asks every node (this one included) to close `user`'s connections, with `reason`: a
    /// [`RoomEvent::Disconnect`] reaches every subscription of [`NODES_ROOM`], at most once (a
    /// node whose link to the broker is down at that moment misses it).
    fn disconnect(
        &self,
        user: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Up to `limit` rooms with names after `after` (or from the first), in name order, with
    /// their member counts: the rooms some node subscribed to (in the embedded broker: that hold
    /// messages or members). For administration: it costs a member count per room listed.
    fn rooms(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<RoomsPage, Self::Error>> + Send;

    /// The room's epoch: an opaque string that names its history, made when the room is first
    /// used and changed only if that history is lost and starts over (Redis restarted without
    /// persistence, an embedded node restarted). Ids are only comparable within one epoch: a
    /// client's `since` from another epoch recovers nothing.
    fn epoch(&self, room: &str) -> impl Future<Output = Result<String, Self::Error>> + Send;

    /// Everything a `joined` frame needs, in as few round trips as the backend can: first
    /// [`Broker::presence_join`] if `join_presence` (this node's first connection of `user`
    /// in the room), then the first `resume.members` members and the room's
    /// [epoch](Broker::epoch), then [`Broker::recover`]'s messages and changes after
    /// `resume.since` if it has them within `resume.recovery` (and `resume.epoch`, if the client
    /// gave one, is the room's), else the latest `resume.page` messages; and `user`'s read
    /// marker and unread count ([`Broker::read`] of [`MessageId::MIN`]). The default composes those calls; a remote backend should
    /// do it in one round trip, as a connection storm is made of joins.
    fn join_snapshot(
        &self,
        room: &str,
        user: &str,
        join_presence: bool,
        resume: Resume<'_>,
    ) -> impl Future<Output = Result<Snapshot, Self::Error>> + Send {
        async move {
            if join_presence {
                self.presence_join(room, user).await?;
            }
            let MembersPage { members, has_more } =
                self.members(room, None, resume.members).await?;
            let current = self.epoch(room).await?;
            let ReadState { id: read, unread } = self.read(room, user, MessageId::MIN).await?;
            if let Some(since) = resume.since
                && resume.epoch.is_none_or(|epoch| epoch == current)
                && let Some(missed) = self.recover(room, since, resume.recovery).await?
            {
                return Ok(Snapshot {
                    members,
                    more_members: has_more,
                    messages: missed.messages,
                    recovered: true,
                    changes: missed.changes,
                    read,
                    unread,
                    epoch: current,
                });
            }
            let latest = self.history(room, None, resume.page).await?;
            Ok(Snapshot {
                members,
                more_members: has_more,
                messages: latest.messages,
                recovered: false,
                changes: Vec::new(),
                read,
                unread,
                epoch: current,
            })
        }
    }

    /// Whether the broker can currently serve every call (for readiness probes). A broker that
    /// is not ready fails calls with its error instead of blocking; subscriptions survive and
    /// catch up once it is ready again.
    fn is_ready(&self) -> bool {
        true
    }

    /// What the broker has repaired so far (see [`BrokerStats`]).
    fn stats(&self) -> BrokerStats {
        BrokerStats::default()
    }
}

/// Where a room subscription's events go: on a node, the room's fan-out to its local members.
///
/// The broker calls it from inside its own delivery path, possibly holding its locks, so an
/// implementation must be quick, must not block or wait, and must neither call the broker nor
/// drop a subscription. Calls for one subscription never overlap and come in the room's order.
pub trait RoomSink: Send + Sync + 'static {
    /// One event of the room.
    fn deliver(&self, event: RoomEvent);

    /// The subscription has ended for good (the broker shut down): no event follows. The node
    /// must drop the room's members or subscribe again.
    fn closed(&self);
}
