//! Entry points for `cargo bench` (`benches/fanout.rs`) and `examples/room_cost.rs`; not part of
//! the supported API.
//!
//! Criterion benchmarks only see a crate's public items, and the fan-out they measure is
//! internal. This module drives the real pieces — a room's encode-once, each member's
//! outbox, and the copy of the framed bytes into each connection's output — without
//! sockets, so the benchmark measures the user-space cost of one delivery and nothing else.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use skat_broker::{MemoryBroker, Resume, RoomEvent};
use skat_protocol::{Message, MessageId};

use crate::outbox::{Bounds, Outbox};
use crate::rooms::{self, Rooms};

/// One room with `members` local connections, each with an outbox and an output buffer.
#[derive(Debug)]
pub struct FanOut {
    room: Arc<str>,
    outboxes: Vec<Arc<Outbox>>,
    outputs: Vec<Vec<u8>>,
    seq: u64,
}

impl FanOut {
    /// A room of `members`.
    pub fn new(members: usize) -> Self {
        Self {
            room: Arc::from("bench"),
            outboxes: (0..members)
                .map(|_| Arc::new(Outbox::new(Bounds::frames(1024), Arc::default())))
                .collect(),
            outputs: vec![Vec::new(); members],
            seq: 0,
        }
    }

    /// Encodes one ~100-byte message once, queues it for every member, and has every member
    /// take its queue and copy the frame into its output, as a connection's wakeup does.
    /// Returns the bytes each member would write.
    pub fn deliver_one(&mut self) -> usize {
        self.seq += 1;
        let message = Message {
            room: self.room.to_string(),
            id: MessageId {
                ms: 1_732_800_000_000,
                seq: self.seq,
            },
            from: "alice".to_owned(),
            body: "x".repeat(100),
            ts: 1_732_800_000_000,
            nonce: Some(format!("n{}", self.seq)),
            extras: None,
        };
        let Some(frame) = rooms::encode(&self.room, RoomEvent::Message(message)) else {
            return 0;
        };
        let frame = Arc::new(frame);
        for outbox in &self.outboxes {
            outbox.push(&frame);
        }
        let mut cx = Context::from_waker(Waker::noop());
        for (outbox, output) in self.outboxes.iter().zip(&mut self.outputs) {
            output.clear();
            if let Poll::Ready(Ok(batch)) = outbox.poll_take(&mut cx, usize::MAX) {
                for frame in batch {
                    output.extend_from_slice(&frame.wire);
                }
            }
        }
        frame.wire.len()
    }
}

/// A node's room registry on the embedded broker, joined without sockets: what rooms and their
/// members cost in memory (`examples/room_cost.rs`).
pub struct Registry {
    rooms: Rooms<MemoryBroker>,
    members: Vec<(String, u64, Arc<str>, Arc<Outbox>)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            rooms: Rooms::new(Arc::new(MemoryBroker::default()), Default::default()),
            members: Vec::new(),
        }
    }
}

impl Registry {
    /// Joins a new connection of `user` to `room` as a connection's `join` does: the room's
    /// registry entry and subscription, the user's presence, the `joined` snapshot.
    pub async fn join(&mut self, room: &str, user: &str) -> Result<(), Box<dyn std::error::Error>> {
        let conn = self.members.len() as u64;
        let user: Arc<str> = Arc::from(user);
        let outbox = Arc::new(Outbox::new(Bounds::frames(64), Arc::default()));
        let resume = Resume::latest(0);
        self.rooms.join(room, conn, &user, &outbox, resume).await?;
        self.members.push((room.to_owned(), conn, user, outbox));
        Ok(())
    }

    /// Takes every frame queued for the members (the `online` events of their joins), as their
    /// connections would write them out.
    pub fn drain(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        for (_, _, _, outbox) in &self.members {
            let _ = outbox.poll_take(&mut cx, usize::MAX);
        }
    }

    /// Makes every member leave, as their connections would when closing.
    pub async fn leave_all(&mut self) {
        for (room, conn, user, _) in std::mem::take(&mut self.members) {
            self.rooms.leave(&room, conn, &user).await;
        }
    }

    /// Rooms in the registry.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }
}
