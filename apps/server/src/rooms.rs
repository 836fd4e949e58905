//! This node's room registry and fan-out.
//!
//! A room is in the registry while at least one local connection has joined it. Each registered
//! room holds the node's only broker subscription for it, and is that subscription's sink: the
//! broker hands it each event, which it encodes once, as a complete WebSocket frame, and
//! queues as the same bytes in each local member's bounded [`Outbox`]. A room has no task and
//! no queue of its own. Changes to messages (`edited`, `deleted`, `reacted`) travel the same
//! way as messages, batched in the same outboxes. A member whose queue is full is a slow
//! consumer: it is kicked (its connection closes itself), so a slow client never delays the
//! others and never makes the node buffer without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use skat_broker::collections::{SortedMap, Tally};
use skat_broker::{Broker, Change, Resume, RoomEvent, RoomSink, Snapshot};
use skat_protocol::{ServerFrame, encode_server};
use tokio::sync::OnceCell;

use crate::lock;
use crate::metrics::{BrokerCall, Metrics};
use crate::outbox::{ConnId, Eviction, FrameKind, Outbox, RoomFrame};
use crate::ws;

/// Why a room cannot be joined right now.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("could not subscribe to the room: {0}")]
    Subscribe(String),
    #[error("could not read the room: {0}")]
    Snapshot(String),
}

/// Outcome of a successful [`Rooms::join`].
pub(crate) struct Joined {
    /// Whether this is the node's first connection of this user in the room.
    pub(crate) first_of_user: bool,
    /// The room's name as the registry holds it; its frames carry the same `Arc`.
    pub(crate) name: Arc<str>,
}

/// One room with local members, and the [`RoomSink`] the broker hands the room's events to.
struct Room<S> {
    name: Arc<str>,
    members: Mutex<Members<S>>,
    /// The node's count of frames queued to connections (not those refused by a full or
    /// evicted queue).
    deliveries: Counter,
    /// Set once the room's subscription is made, by its first joiner; the others wait for it
    /// (and one of them retries if it failed).
    subscribed: OnceCell<()>,
}

/// Sorted vectors rather than hash maps: most rooms have a few members, and a map's table costs
/// several times what they do (see [`SortedMap`]); a big room's join is O(members) anyway, as its
/// `joined` frame lists them all.
struct Members<S> {
    /// By connection id, so the fan-out walks a slice and leaving is a binary search.
    conns: SortedMap<ConnId, Arc<Outbox>>,
    /// Local connections per user name, for node-level presence.
    users: Tally<Arc<str>>,
    /// The node's broker subscription for the room. The broker holds the room as its sink, so
    /// the last leave takes this out (and drops it) to let the room go.
    subscription: Option<S>,
    /// The broker ended the room's subscription: its members were evicted, joins are refused
    /// until the last of them is gone (and the room with it).
    lost: bool,
}

impl<S> Default for Members<S> {
    fn default() -> Self {
        Self {
            conns: SortedMap::default(),
            users: Tally::default(),
            subscription: None,
            lost: false,
        }
    }
}

/// A shared handle to a room of a node on broker `B`.
type RoomRef<B> = Arc<Room<<B as Broker>::Subscription>>;

/// The rooms with local members, keyed by name.
pub(crate) struct Rooms<B: Broker> {
    broker: Arc<B>,
    map: Mutex<HashMap<Arc<str>, RoomRef<B>>>,
    metrics: Metrics,
}

impl<B: Broker> Rooms<B> {
    pub(crate) fn new(broker: Arc<B>, metrics: Metrics) -> Self {
        Self {
            broker,
            map: Mutex::default(),
            metrics,
        }
    }

    /// Joins a connection to a room: registers it (the room's events now reach `member`),
    /// then asks the broker for the `joined` snapshot, which also records the user's presence if
    /// this is the node's first connection of the user there. On failure nothing is left
    /// behind: the connection is unregistered and any presence withdrawn.
    ///
    /// The one owner of presence on a node: [`Rooms::leave`] withdraws it.
    pub(crate) async fn join(
        &self,
        room: &str,
        conn: ConnId,
        user: &Arc<str>,
        member: &Arc<Outbox>,
        resume: Resume<'_>,
    ) -> Result<(Joined, Snapshot), JoinError> {
        let joined = self.enter(room, conn, user, member).await?;
        let snapshot = self
            .broker
            .join_snapshot(room, user, joined.first_of_user, resume);
        match snapshot.await {
            Ok(snapshot) => Ok((joined, snapshot)),
            Err(err) => {
                if joined.first_of_user {
                    self.hand_over_presence(room, user).await;
                }
                // The presence entry may or may not have been recorded: withdraw it anyway,
                // if this was the user's last connection here.
                self.leave(room, conn, user).await;
                Err(JoinError::Snapshot(err.to_string()))
            }
        }
    }

    /// After the join of the user's first connection here (the one that records the user's
    /// presence) failed, maybe before recording it: if other connections of the user joined
    /// meanwhile (told it was not their first, so recording nothing), records it for them.
    /// Called while the failed connection is still registered, so no other leave can be the
    /// user's last and withdraw presence before this write lands; if the others are gone by
    /// the time it has, [`Rooms::leave`] withdraws it after.
    async fn hand_over_presence(&self, room: &str, user: &Arc<str>) {
        let others = lock(&self.map)
            .get(room)
            .is_some_and(|entry| lock(&entry.members).users.count(&**user) > 1);
        if !others {
            return;
        }
        if let Err(err) = self.broker.presence_join(room, user).await {
            tracing::warn!(%room, %user, error = %err, "presence_join failed; the user shows offline here until they join again");
        }
    }

    /// Takes a connection out of a room, and the user's presence with its last connection on
    /// this node; returns whether that was the last.
    pub(crate) async fn leave(&self, room: &str, conn: ConnId, user: &Arc<str>) -> bool {
        let last_of_user = self.exit(room, conn, user);
        if last_of_user {
            let left = self.broker.presence_leave(room, user);
            let left = self.metrics.timed(BrokerCall::Leave, left).await;
            if let Err(err) = left {
                tracing::warn!(%room, %user, error = %err, "presence_leave failed");
            }
        }
        last_of_user
    }

    /// Adds a connection to a room, subscribing the node to it first if needed.
    ///
    /// On return the room's subscription is live, so every message accepted from now on reaches
    /// `member`'s queue: the caller may read history and then rely on the queue for the rest.
    async fn enter(
        &self,
        room: &str,
        conn: ConnId,
        user: &Arc<str>,
        member: &Arc<Outbox>,
    ) -> Result<Joined, JoinError> {
        let (entry, first_of_user) = {
            let mut map = lock(&self.map);
            let entry = match map.get(room) {
                Some(entry) => Arc::clone(entry),
                None => {
                    let name: Arc<str> = Arc::from(room);
                    let entry = Arc::new(Room {
                        name: Arc::clone(&name),
                        members: Mutex::default(),
                        deliveries: self.metrics.deliveries.clone(),
                        subscribed: OnceCell::new(),
                    });
                    map.insert(name, Arc::clone(&entry));
                    entry
                }
            };
            let mut members = lock(&entry.members);
            if members.lost {
                return Err(JoinError::Subscribe("room subscription ended".to_owned()));
            }
            // A connection joins a room once (the caller checks), so `conn` is not here yet.
            members
                .conns
                .get_or_insert_with(conn, || Arc::clone(member));
            let first = members.users.add(Arc::clone(user));
            drop(members);
            (entry, first)
        };
        let subscribed = entry
            .subscribed
            .get_or_try_init(|| async {
                let sink: Arc<dyn RoomSink> = Arc::clone(&entry) as _;
                match self.broker.subscribe(&entry.name, sink).await {
                    Ok(subscription) => {
                        tracing::debug!(room = %entry.name, "subscribed");
                        // This joiner is a member until it returns, so the room is still live.
                        lock(&entry.members).subscription = Some(subscription);
                        Ok(())
                    }
                    Err(err) => {
                        tracing::warn!(room = %entry.name, error = %err, "subscribe failed");
                        Err(err)
                    }
                }
            })
            .await;
        match subscribed {
            Ok(()) => Ok(Joined {
                first_of_user,
                name: Arc::clone(&entry.name),
            }),
            Err(err) => {
                let reason = err.to_string();
                drop(entry);
                self.exit(room, conn, user);
                Err(JoinError::Subscribe(reason))
            }
        }
    }

    /// Removes a connection from a room; returns whether it was the node's last connection of
    /// `user` there. The room's subscription ends with its last local member.
    fn exit(&self, room: &str, conn: ConnId, user: &Arc<str>) -> bool {
        let (last_of_user, subscription) = {
            let mut map = lock(&self.map);
            let Some(entry) = map.get(room) else {
                return false;
            };
            let mut members = lock(&entry.members);
            if members.conns.remove(&conn).is_none() {
                return false;
            }
            let last_of_user = members.users.remove(&**user);
            if !members.conns.is_empty() {
                return last_of_user;
            }
            let subscription = members.subscription.take();
            drop(members);
            map.remove(room);
            (last_of_user, subscription)
        };
        // Dropped outside the registry's locks: unsubscribing takes the broker's, and the
        // broker may be delivering to this room under them right now.
        drop(subscription);
        last_of_user
    }

    /// Number of rooms this node is subscribed to.
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Runs `f` while holding `room`'s members lock, as a delivery to the room does.
    #[cfg(test)]
    pub(crate) fn with_members_locked<R>(&self, room: &str, f: impl FnOnce() -> R) -> R {
        let entry = Arc::clone(&lock(&self.map)[room]);
        let _members = lock(&entry.members);
        f()
    }
}

impl<S: Send + Sync + 'static> RoomSink for Room<S> {
    /// Encodes the event once and queues it for every local member, kicking those whose queue
    /// is full.
    fn deliver(&self, event: RoomEvent) {
        let Some(frame) = encode(&self.name, event) else {
            return;
        };
        let frame = Arc::new(frame);
        let members = lock(&self.members);
        let queued = members.conns.values().filter(|m| m.push(&frame)).count();
        // One add per event, never per member: with the queues' `drained`, it is also what
        // `/metrics` reports as waiting (see `outbox::QueueStats`).
        self.deliveries.inc_by(queued as u64);
    }

    /// The broker ended the subscription: members cannot be served, let them reconnect.
    fn closed(&self) {
        tracing::error!(room = %self.name, "room subscription ended; disconnecting its members");
        let mut members = lock(&self.members);
        members.lost = true;
        for member in members.conns.values() {
            member.evict(Eviction::RoomLost);
        }
    }
}

/// Encodes an event once for all local members; `None` for what is not for members (node-wide
/// notices, which only the notices room carries).
pub(crate) fn encode(room: &Arc<str>, event: RoomEvent) -> Option<RoomFrame> {
    let (kind, frame) = match event {
        RoomEvent::Message(message) => (
            FrameKind::Message(message.id),
            ServerFrame::Message(message),
        ),
        RoomEvent::Presence { room, user, online } => (
            FrameKind::Presence(Arc::from(user.as_str())),
            ServerFrame::Presence { room, user, online },
        ),
        RoomEvent::Typing { room, user } => (
            FrameKind::Typing(Arc::from(user.as_str())),
            ServerFrame::Typing { room, user },
        ),
        RoomEvent::Change(change) => {
            let id = change.id()?;
            (FrameKind::Change(id), change_frame(change)?)
        }
        // Node-wide notices: `sessions` hands a `Read` to the user's connections.
        RoomEvent::Disconnect { .. } | RoomEvent::Read { .. } => return None,
    };
    Some(RoomFrame {
        room: Arc::clone(room),
        kind,
        wire: ws::text_frame(&encode_server(&frame)).into_boxed_slice(),
    })
}

/// The frame announcing a change (`edited`, `deleted`, `reacted`); `None` for a kind this
/// server does not know (never stored by it).
pub(crate) fn change_frame(change: Change) -> Option<ServerFrame> {
    match change {
        Change::Edited(edited) => Some(ServerFrame::Edited(edited)),
        Change::Deleted(deleted) => Some(ServerFrame::Deleted(deleted)),
        Change::Reacted(reacted) => Some(ServerFrame::Reacted(reacted)),
        Change::Unknown => None,
    }
}

#[cfg(test)]
mod failed_join;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Bounds;
    use skat_broker::{MemoryBroker, NewMessage};
    use std::future::poll_fn;

    fn outbox(frames: usize) -> Arc<Outbox> {
        Arc::new(Outbox::new(Bounds::frames(frames), Arc::default()))
    }

    async fn next_batch(outbox: &Outbox) -> Result<Vec<Arc<RoomFrame>>, Eviction> {
        poll_fn(|cx| outbox.poll_take(cx, usize::MAX))
            .await
            .map(|batch| batch.into_iter().collect())
    }

    fn publish(room: &str, body: &str) -> NewMessage {
        NewMessage {
            room: room.into(),
            from: "alice".into(),
            body: body.into(),
            nonce: None,
            reply_to: None,
        }
    }

    #[tokio::test]
    async fn one_subscription_per_room_and_same_bytes_for_all() {
        let broker = Arc::new(MemoryBroker::default());
        let rooms = Rooms::new(Arc::clone(&broker), Default::default());
        let alice: Arc<str> = Arc::from("alice");
        let (a, b) = (outbox(8), outbox(8));
        let joined = rooms.enter("r", 1, &alice, &a).await.unwrap();
        assert!(joined.first_of_user);
        assert!(!rooms.enter("r", 2, &alice, &b).await.unwrap().first_of_user);
        assert_eq!(rooms.len(), 1);

        broker.publish(publish("r", "hi")).await.unwrap();
        let fa = next_batch(&a).await.unwrap();
        let fb = next_batch(&b).await.unwrap();
        assert!(
            Arc::ptr_eq(&fa[0], &fb[0]),
            "encoded once, shared by both members"
        );
        assert!(Arc::ptr_eq(&fa[0].room, &joined.name));
        let text = std::str::from_utf8(&fa[0].wire[2..]).unwrap();
        assert!(
            text.starts_with(r#"{"type":"message","room":"r""#),
            "{text}"
        );

        assert!(!rooms.exit("r", 1, &alice));
        assert!(rooms.exit("r", 2, &alice));
        assert_eq!(rooms.len(), 0, "last member gone, room unsubscribed");
    }

    #[tokio::test]
    async fn full_queue_kicks_only_that_member() {
        let broker = Arc::new(MemoryBroker::default());
        let rooms = Rooms::new(Arc::clone(&broker), Default::default());
        let user: Arc<str> = Arc::from("u");
        let (slow, fast) = (outbox(1), outbox(8));
        rooms.enter("r", 1, &user, &slow).await.unwrap();
        rooms.enter("r", 2, &user, &fast).await.unwrap();
        for i in 0..3 {
            broker.publish(publish("r", &i.to_string())).await.unwrap();
        }
        let mut got = 0;
        while got < 3 {
            got += next_batch(&fast).await.unwrap().len();
        }
        assert_eq!(next_batch(&slow).await.unwrap_err(), Eviction::SlowConsumer);
        assert_eq!(fast.evicted(), None);
    }

    #[tokio::test]
    async fn a_room_the_broker_ends_evicts_its_members_and_refuses_joins() {
        let broker = Arc::new(MemoryBroker::default());
        let rooms = Rooms::new(Arc::clone(&broker), Default::default());
        let user: Arc<str> = Arc::from("u");
        let member = outbox(8);
        rooms.enter("r", 1, &user, &member).await.unwrap();
        let room = Arc::clone(&lock(&rooms.map)["r"]);
        room.closed();
        assert_eq!(next_batch(&member).await.unwrap_err(), Eviction::RoomLost);
        let late = outbox(8);
        assert!(rooms.enter("r", 2, &user, &late).await.is_err());
        // Once its last member has gone, the room can be joined afresh.
        assert!(rooms.exit("r", 1, &user));
        rooms.enter("r", 2, &user, &late).await.unwrap();
        broker.publish(publish("r", "hi")).await.unwrap();
        assert_eq!(next_batch(&late).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_last_leave_unsubscribes() {
        let broker = Arc::new(MemoryBroker::default());
        let rooms = Rooms::new(Arc::clone(&broker), Default::default());
        let user: Arc<str> = Arc::from("u");
        let member = outbox(8);
        rooms.enter("r", 1, &user, &member).await.unwrap();
        let room = Arc::downgrade(&lock(&rooms.map)["r"]);
        rooms.exit("r", 1, &user);
        assert_eq!(room.strong_count(), 0, "the broker let go of the room");
    }
}
