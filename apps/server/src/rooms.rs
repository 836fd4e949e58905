//! This node's room registry and fan-out.
//!
//! A room is in the registry while at least one local connection has joined it. Each registered
//! room owns one task holding the node's only broker subscription for it; the task encodes every
//! event once, as a complete WebSocket frame, and hands the same bytes to each local member's
//! bounded [`Outbox`]. A member whose queue is full is a slow consumer: it is kicked (its
//! connection closes itself), so a slow client never delays the others and never makes the node
//! buffer without bound.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use indexmap::IndexMap;
use skat_broker::{Broker, MessageId, RoomEvent, Subscription};
use skat_protocol::{ServerFrame, encode_server};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::outbox::{Eviction, Outbox};

/// Identifies a connection within this node.
pub(crate) type ConnId = u64;

/// One room event, encoded and framed once, shared by every local member's queue.
#[derive(Debug)]
pub(crate) struct RoomFrame {
    /// The room's name, the same `Arc` as [`Joined::name`]: connections match it by pointer.
    pub(crate) room: Arc<str>,
    pub(crate) kind: FrameKind,
    /// The whole WebSocket text frame, header included.
    pub(crate) wire: Box<[u8]>,
}

/// What a connection needs to know about a [`RoomFrame`] without decoding it.
#[derive(Debug)]
pub(crate) enum FrameKind {
    /// A message; connections skip ids they already delivered in `joined`.
    Message(MessageId),
    /// A typing notification; the typist's own connections skip it.
    Typing(Arc<str>),
    /// A presence change; the user's own connections skip it (they know they are online, and
    /// their `joined` already lists them).
    Presence(Arc<str>),
    /// Anything else.
    Other,
}

/// Why a room cannot be joined right now.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("could not subscribe to the room: {0}")]
    Subscribe(String),
}

/// Outcome of a successful [`Rooms::join`].
pub(crate) struct Joined {
    /// Whether this is the node's first connection of this user in the room.
    pub(crate) first_of_user: bool,
    /// The room's name as the registry holds it; its frames carry the same `Arc`.
    pub(crate) name: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Readiness {
    Subscribing,
    Ready,
    Failed(String),
}

struct Room {
    name: Arc<str>,
    members: Mutex<Members>,
    ready: watch::Receiver<Readiness>,
    /// Stops the fan-out task (and so drops the broker subscription).
    stop: CancellationToken,
}

#[derive(Default)]
struct Members {
    /// Dense, so the fan-out walks a slice; `swap_remove` keeps leaving O(1).
    conns: IndexMap<ConnId, Arc<Outbox>>,
    /// Local connections per user name, for node-level presence.
    users: HashMap<Arc<str>, usize>,
}

/// The rooms with local members, keyed by name.
pub(crate) struct Rooms<B: Broker> {
    broker: Arc<B>,
    map: Mutex<HashMap<Arc<str>, Arc<Room>>>,
}

/// Poisoning only follows a panic inside a short critical section that leaves maps consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B: Broker> Rooms<B> {
    pub(crate) fn new(broker: Arc<B>) -> Self {
        Self {
            broker,
            map: Mutex::default(),
        }
    }

    /// Adds a connection to a room, subscribing the node to it first if needed.
    ///
    /// On return the room's subscription is live, so every message accepted from now on reaches
    /// `member`'s queue: the caller may read history and then rely on the queue for the rest.
    pub(crate) async fn join(
        &self,
        room: &str,
        conn: ConnId,
        user: &Arc<str>,
        member: &Arc<Outbox>,
    ) -> Result<Joined, JoinError> {
        let (entry, first_of_user) = {
            let mut map = lock(&self.map);
            let entry = match map.entry(Arc::from(room)) {
                Entry::Occupied(e) => Arc::clone(e.get()),
                Entry::Vacant(e) => {
                    let entry = self.spawn_room(Arc::clone(e.key()));
                    e.insert(Arc::clone(&entry));
                    entry
                }
            };
            let mut members = lock(&entry.members);
            members.conns.insert(conn, Arc::clone(member));
            let count = members.users.entry(Arc::clone(user)).or_default();
            *count += 1;
            let first = *count == 1;
            drop(members);
            (entry, first)
        };
        let mut ready = entry.ready.clone();
        let outcome = ready
            .wait_for(|r| *r != Readiness::Subscribing)
            .await
            .map(|r| r.clone());
        match outcome {
            Ok(Readiness::Ready) => Ok(Joined {
                first_of_user,
                name: Arc::clone(&entry.name),
            }),
            Ok(Readiness::Failed(reason)) => {
                self.leave(room, conn, user);
                Err(JoinError::Subscribe(reason))
            }
            Ok(Readiness::Subscribing) | Err(_) => {
                self.leave(room, conn, user);
                Err(JoinError::Subscribe("room task ended".to_owned()))
            }
        }
    }

    /// Removes a connection from a room; returns whether it was the node's last connection of
    /// `user` there. The room's subscription ends with its last local member.
    pub(crate) fn leave(&self, room: &str, conn: ConnId, user: &Arc<str>) -> bool {
        let mut map = lock(&self.map);
        let Some(entry) = map.get(room) else {
            return false;
        };
        let mut members = lock(&entry.members);
        if members.conns.swap_remove(&conn).is_none() {
            return false;
        }
        let last_of_user = match members.users.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                members.users.remove(user);
                true
            }
            None => false,
        };
        if members.conns.is_empty() {
            drop(members);
            if let Some(entry) = map.remove(room) {
                entry.stop.cancel();
            }
        }
        last_of_user
    }

    /// Number of rooms this node is subscribed to.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    fn spawn_room(&self, name: Arc<str>) -> Arc<Room> {
        let (ready_tx, ready) = watch::channel(Readiness::Subscribing);
        let room = Arc::new(Room {
            name,
            members: Mutex::default(),
            ready,
            stop: CancellationToken::new(),
        });
        tokio::spawn(fan_out(
            Arc::clone(&self.broker),
            Arc::clone(&room),
            ready_tx,
        ));
        room
    }
}

/// The task behind one room: holds the node's subscription and fans events out until stopped.
async fn fan_out<B: Broker>(broker: Arc<B>, room: Arc<Room>, ready: watch::Sender<Readiness>) {
    let mut subscription = tokio::select! {
        () = room.stop.cancelled() => return,
        result = broker.subscribe(&room.name) => match result {
            Ok(subscription) => subscription,
            Err(err) => {
                tracing::warn!(room = %room.name, error = %err, "subscribe failed");
                ready.send_replace(Readiness::Failed(err.to_string()));
                return;
            }
        },
    };
    ready.send_replace(Readiness::Ready);
    tracing::debug!(room = %room.name, "subscribed");
    loop {
        let event = tokio::select! {
            () = room.stop.cancelled() => break,
            event = subscription.recv() => event,
        };
        let Some(event) = event else {
            // The broker ended the subscription: members cannot be served, let them reconnect.
            tracing::error!(room = %room.name, "room subscription ended; disconnecting its members");
            // Joins until the last member is gone (and the room with it) are refused.
            ready.send_replace(Readiness::Failed("room subscription ended".to_owned()));
            for member in lock(&room.members).conns.values() {
                member.evict(Eviction::RoomLost);
            }
            break;
        };
        room.deliver(&Arc::new(encode(&room.name, event)));
    }
    tracing::debug!(room = %room.name, "unsubscribed");
}

impl Room {
    /// Queues `frame` for every local member, kicking those whose queue is full.
    fn deliver(&self, frame: &Arc<RoomFrame>) {
        let members = lock(&self.members);
        for member in members.conns.values() {
            member.push(frame);
        }
    }
}

/// Encodes an event once for all local members.
pub(crate) fn encode(room: &Arc<str>, event: RoomEvent) -> RoomFrame {
    let (kind, frame) = match event {
        RoomEvent::Message(message) => {
            // Ids come from the broker and always parse; one that did not would be a broker bug,
            // and delivering it unfiltered is the safe failure.
            let kind = message
                .id
                .parse()
                .map_or(FrameKind::Other, FrameKind::Message);
            (kind, ServerFrame::Message(message))
        }
        RoomEvent::Presence { room, user, online } => (
            FrameKind::Presence(Arc::from(user.as_str())),
            ServerFrame::Presence { room, user, online },
        ),
        RoomEvent::Typing { room, user } => (
            FrameKind::Typing(Arc::from(user.as_str())),
            ServerFrame::Typing { room, user },
        ),
    };
    RoomFrame {
        room: Arc::clone(room),
        kind,
        wire: crate::ws::text_frame(&encode_server(&frame)).into_boxed_slice(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skat_broker::{MemoryBroker, NewMessage};
    use std::future::poll_fn;

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
        }
    }

    #[tokio::test]
    async fn one_subscription_per_room_and_same_bytes_for_all() {
        let broker = Arc::new(MemoryBroker::default());
        let rooms = Rooms::new(Arc::clone(&broker));
        let alice: Arc<str> = Arc::from("alice");
        let (a, b) = (Arc::new(Outbox::new(8)), Arc::new(Outbox::new(8)));
        let joined = rooms.join("r", 1, &alice, &a).await.unwrap();
        assert!(joined.first_of_user);
        assert!(!rooms.join("r", 2, &alice, &b).await.unwrap().first_of_user);
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

        assert!(!rooms.leave("r", 1, &alice));
        assert!(rooms.leave("r", 2, &alice));
        assert_eq!(rooms.len(), 0, "last member gone, room unsubscribed");
    }

    #[tokio::test]
    async fn full_queue_kicks_only_that_member() {
        let broker = Arc::new(MemoryBroker::default());
        let rooms = Rooms::new(Arc::clone(&broker));
        let user: Arc<str> = Arc::from("u");
        let (slow, fast) = (Arc::new(Outbox::new(1)), Arc::new(Outbox::new(8)));
        rooms.join("r", 1, &user, &slow).await.unwrap();
        rooms.join("r", 2, &user, &fast).await.unwrap();
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
}
