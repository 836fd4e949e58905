//! The sending side: one 1 ms ticker per worker sends what is due at the worker's share of the
//! rate, round-robin over its senders, and records how late the ticker fires (the worker's own
//! lag). Writes never wait: what the kernel does not take is kept on the connection and flushed
//! on later ticks or wakeups, so one slow socket cannot stall the others or the pacing.

use std::rc::Rc;
use std::time::Duration;

use super::{Conn, Worker};
use crate::clients::proto::RunPlan;
use crate::clients::wire;
use crate::measure::clock::{now_us, sleep_until_us};

impl Conn {
    /// Queues a frame and writes what the socket takes now.
    pub(super) fn queue(&self, opcode: u8, payload: &[u8]) {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        wire::encode_client_frame(&mut frame, opcode, payload);
        self.write(&frame);
    }

    /// Writes `bytes` after anything still queued, without waiting.
    fn write(&self, bytes: &[u8]) {
        let mut out = self.out.borrow_mut();
        if out.is_empty() {
            match self.stream.try_write(bytes) {
                Ok(n) => out.extend_from_slice(&bytes[n..]),
                Err(_) => out.extend_from_slice(bytes),
            }
        } else {
            out.extend_from_slice(bytes);
            drop(out);
            self.flush();
        }
    }

    /// Writes what it can of the queued bytes.
    pub(super) fn flush(&self) {
        let mut out = self.out.borrow_mut();
        while !out.is_empty() {
            match self.stream.try_write(&out) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.drain(..n);
                }
            }
        }
    }
}

/// Sends this worker's share of the messages, paced by one ticker for all its senders. The
/// ticker's lateness is the worker's own lag: how long its thread was too busy (or not
/// scheduled) to look at its sockets, recorded over the measured window.
pub(super) async fn send_loop(worker: Rc<Worker>, plan: RunPlan) {
    let generation = worker.generation.get() + 1;
    worker.generation.set(generation);
    sleep_until_us(plan.start_us).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let prefix = worker.layout.prefix.clone();
    let rooms: Vec<String> = (0..worker.layout.rooms)
        .map(|r| worker.layout.room_name(r))
        .collect();
    let mut frame = Vec::new();
    let (mut sent, mut turn) = (0u64, 0usize);
    loop {
        let scheduled = ticker.tick().await;
        let now = now_us();
        if now >= plan.measure_end_us || worker.generation.get() != generation {
            break;
        }
        if now >= plan.measure_start_us {
            let lag = scheduled.elapsed().as_micros() as u64;
            worker.stats.borrow_mut().loop_lag.record(lag);
        }
        if plan.sends_per_sec <= 0.0 {
            continue;
        }
        let due = ((now - plan.start_us) as f64 * plan.sends_per_sec / 1e6) as u64;
        let senders = worker.senders.borrow().clone();
        if senders.is_empty() {
            continue;
        }
        while sent < due {
            let conn = &senders[turn % senders.len()];
            turn += 1;
            sent += 1;
            let at = now_us();
            // Unique over the worker's whole life: the server drops a repeated (user, nonce)
            // for two minutes, and later runs reuse the same users.
            let seq = worker.nonces.get() + 1;
            worker.nonces.set(seq);
            let nonce = format!("{prefix}-{}-{seq}", conn.index);
            let send = wire::stamped_send(&rooms[conn.room], at, plan.body_bytes, nonce);
            frame.clear();
            wire::encode_client_text(&mut frame, &send);
            conn.write(&frame);
            let mut stats = worker.stats.borrow_mut();
            stats.sent += 1;
            if (plan.measure_start_us..plan.measure_end_us).contains(&at) {
                stats.sent_measured += 1;
                stats.expected_measured += plan.room_members.get(conn.room).copied().unwrap_or(0);
            }
        }
        for conn in &senders {
            if !conn.out.borrow().is_empty() {
                conn.flush();
            }
        }
    }
}
