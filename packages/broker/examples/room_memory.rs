//! What an idle room costs a [`MemoryBroker`]: subscribes `ROOMS` rooms (10,000 by default), each
//! with one subscription (whose sink only counts events) and one presence entry, then nobody
//! talking. Prints the resident-memory growth per room,
//! read from `/proc/self/status` (Linux only).
//!
//! Then a burst of messages in every room: what stays is the retained history (which is the point
//! of a history), nothing else.
//!
//! ```text
//! cargo run --release -p skat-broker --example room_memory [ROOMS]
//! ```

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use skat_broker::{Broker, MemoryBroker, MemoryBrokerConfig, NewMessage, RoomEvent, RoomSink};

/// Messages published per room in the burst phase.
const BURST: usize = 64;

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn report(what: &str, rooms: usize, before: u64, after: u64) {
    let delta = after.saturating_sub(before);
    println!(
        "{what}: RSS {before} KiB -> {after} KiB, +{delta} KiB = {:.0} bytes per room",
        delta as f64 * 1024.0 / rooms as f64
    );
}

/// Counts the events of every room, as a node's fan-out would take them.
#[derive(Default)]
struct Count(AtomicUsize);

impl RoomSink for Count {
    fn deliver(&self, _: RoomEvent) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn closed(&self) {}
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rooms: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |n| n.parse().expect("ROOMS must be a number"));
    let broker = MemoryBroker::new(MemoryBrokerConfig::default());
    // Names built up front, so that only the broker's allocations fall inside the measurement
    // (the subscriptions themselves, held by the caller, are counted).
    let names: Vec<String> = (0..rooms).map(|i| format!("room-{i:06}")).collect();
    let before = rss_kib();
    let count = Arc::new(Count::default());
    let mut subs = Vec::with_capacity(rooms);
    for name in &names {
        let sub = broker.subscribe(name, count.clone()).await.unwrap();
        broker.presence_join(name, "alice").await.unwrap();
        subs.push(sub);
    }
    let idle = rss_kib();
    report(
        &format!("{rooms} idle rooms (1 subscription + 1 member each)"),
        rooms,
        before,
        idle,
    );

    for name in &names {
        for i in 0..BURST {
            let new = NewMessage {
                room: name.clone(),
                from: "alice".to_owned(),
                body: format!("burst message {i}"),
                nonce: None,
                reply_to: None,
            };
            broker.publish(new).await.unwrap();
        }
    }
    assert_eq!(count.0.load(Ordering::Relaxed), rooms * (BURST + 1));
    report(
        &format!("then {BURST} messages per room (now in the history)"),
        rooms,
        idle,
        rss_kib(),
    );
}
