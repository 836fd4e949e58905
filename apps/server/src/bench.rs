//! Entry points for `cargo bench` (`benches/fanout.rs`); not part of the supported API.
//!
//! Criterion benchmarks only see a crate's public items, and the fan-out they measure is
//! internal. This module drives the real pieces — a room's encode-once, each member's
//! outbox, and the copy of the framed bytes into each connection's output — without
//! sockets, so the benchmark measures the user-space cost of one delivery and nothing else.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use skat_broker::RoomEvent;
use skat_protocol::Message;

use crate::outbox::Outbox;
use crate::rooms;

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
            outboxes: (0..members).map(|_| Arc::new(Outbox::new(1024))).collect(),
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
            id: format!("1732800000000-{}", self.seq),
            from: "alice".to_owned(),
            body: "x".repeat(100),
            ts: 1_732_800_000_000,
            nonce: Some(format!("n{}", self.seq)),
        };
        let frame = Arc::new(rooms::encode(&self.room, RoomEvent::Message(message)));
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
