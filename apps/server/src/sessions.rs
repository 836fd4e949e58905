//! The node's connections by user, so that the application's backend can disconnect a user on
//! every node (`POST /api/v1/users/{name}/disconnect`), and a user's read marker reaches all
//! of its connections on every node.
//!
//! Every node subscribes to the broker's node-wide notices room ([`NODES_ROOM`]) like to a room,
//! with [`Sessions`] as the sink: a [`RoomEvent::Disconnect`] evicts each of the user's local
//! connections, which close with 4000 and the reason; a [`RoomEvent::Read`] is encoded once
//! and queued in each of the user's local connections' outboxes (a `read` frame), like a
//! room's event. The subscription is kept for the node's
//! life: made before the node serves, made again whenever the broker ends it or could not make
//! it (Redis down at start). A notice published while a node's link to the broker is down does
//! not reach that node: notices are at most once, like presence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use skat_broker::{Broker, NODES_ROOM, RoomEvent, RoomSink};
use skat_protocol::{ServerFrame, encode_server};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::lock;
use crate::outbox::{ConnId, Eviction, FrameKind, Outbox, RoomFrame};
use crate::ws;

/// Longest close reason sent, in bytes: a close frame's payload is at most 125 bytes, two of
/// them the code.
pub(crate) const MAX_REASON_BYTES: usize = 100;

/// One user's connections on this node: each one's id and outbox.
type UserConns = Vec<(ConnId, Arc<Outbox>)>;

/// Each user's connections on this node (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    users: Mutex<HashMap<Arc<str>, UserConns>>,
    /// Woken when the broker ends the notices subscription.
    lost: Notify,
    /// The node's count of frames queued to connections (see `rooms`), `read`s included.
    deliveries: Counter,
}

impl Sessions {
    /// Sessions counting the frames they queue into `deliveries`.
    pub(crate) fn new(deliveries: Counter) -> Self {
        Self {
            deliveries,
            ..Self::default()
        }
    }

    /// Records that connection `conn` of `user` takes its frames from `outbox`.
    pub(crate) fn add(&self, user: &Arc<str>, conn: ConnId, outbox: &Arc<Outbox>) {
        lock(&self.users)
            .entry(Arc::clone(user))
            // Most users have one connection: 16 bytes, not the 64 of a default first push.
            .or_insert_with(|| Vec::with_capacity(1))
            .push((conn, Arc::clone(outbox)));
    }

    /// Forgets connection `conn` of `user`.
    pub(crate) fn remove(&self, user: &str, conn: ConnId) {
        let mut users = lock(&self.users);
        if let Some(conns) = users.get_mut(user) {
            conns.retain(|(id, _)| *id != conn);
            if conns.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Closes every local connection of `user` with `reason`; returns how many.
    pub(crate) fn disconnect(&self, user: &str, reason: &str) -> usize {
        let reason = Arc::new(truncate(reason, MAX_REASON_BYTES).to_owned());
        let users = lock(&self.users);
        let conns = users.get(user).map_or(&[][..], Vec::as_slice);
        for (_, outbox) in conns {
            outbox.evict(Eviction::Disconnected(Arc::clone(&reason)));
        }
        conns.len()
    }

    /// Queues a `read` frame (the user's marker in `room` moved) to every local connection of
    /// `user`; returns how many. A connection whose queue is full is kicked, as by a room.
    pub(crate) fn read(
        &self,
        user: &str,
        room: String,
        id: skat_broker::MessageId,
        unread: u32,
    ) -> usize {
        let users = lock(&self.users);
        let Some(conns) = users.get(user) else {
            return 0;
        };
        let frame = Arc::new(RoomFrame {
            room: Arc::from(room.as_str()),
            kind: FrameKind::Read,
            wire: ws::text_frame(&encode_server(&ServerFrame::Read { room, id, unread }))
                .into_boxed_slice(),
        });
        let queued = conns
            .iter()
            .filter(|(_, outbox)| outbox.push(&frame))
            .count();
        self.deliveries.inc_by(queued as u64);
        queued
    }
}

impl RoomSink for Sessions {
    fn deliver(&self, event: RoomEvent) {
        match event {
            RoomEvent::Disconnect { user, reason } => {
                let closed = self.disconnect(&user, &reason);
                tracing::info!(%user, closed, "disconnected by the application");
            }
            RoomEvent::Read {
                room,
                user,
                id,
                unread,
            } => {
                self.read(&user, room, id, unread);
            }
            _ => {}
        }
    }

    fn closed(&self) {
        self.lost.notify_one();
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Keeps this node subscribed to the notices room until `shutdown`; returns once the first
/// attempt is done, so a node that could subscribe at start hears notices from its first
/// connection on.
pub(crate) async fn keep_notices<B: Broker>(
    broker: Arc<B>,
    sessions: Arc<Sessions>,
    shutdown: CancellationToken,
) {
    let mut held = subscribe(&*broker, &sessions).await;
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            if let Some(subscription) = held.take() {
                delay = Duration::from_millis(100);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = sessions.lost.notified() => drop(subscription),
                }
            } else {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            held = subscribe(&*broker, &sessions).await;
        }
    });
}

async fn subscribe<B: Broker>(broker: &B, sessions: &Arc<Sessions>) -> Option<B::Subscription> {
    let sink: Arc<dyn RoomSink> = Arc::clone(sessions) as Arc<dyn RoomSink>;
    match broker.subscribe(NODES_ROOM, sink).await {
        Ok(subscription) => Some(subscription),
        Err(err) => {
            tracing::warn!(error = %err, "cannot subscribe to node notices; retrying");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Bounds;

    #[test]
    fn disconnect_evicts_every_connection_of_the_user_only() {
        let sessions = Sessions::default();
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        let boxes: Vec<Arc<Outbox>> = (0..3)
            .map(|_| Arc::new(Outbox::new(Bounds::frames(8), Arc::default())))
            .collect();
        sessions.add(&alice, 1, &boxes[0]);
        sessions.add(&alice, 2, &boxes[1]);
        sessions.add(&bob, 3, &boxes[2]);
        sessions.remove("alice", 2);
        let long = "é".repeat(80);
        assert_eq!(sessions.disconnect("alice", &long), 1);
        let Some(Eviction::Disconnected(reason)) = boxes[0].evicted() else {
            panic!("alice's connection was not evicted");
        };
        assert_eq!(reason.len(), MAX_REASON_BYTES);
        assert_eq!(boxes[1].evicted(), None, "removed before");
        assert_eq!(boxes[2].evicted(), None, "bob stays");
        assert_eq!(sessions.disconnect("carol", "x"), 0);
        sessions.remove("alice", 1);
        assert!(lock(&sessions.users).get("alice").is_none());
    }
}
