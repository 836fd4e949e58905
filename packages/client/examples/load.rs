//! A quick fan-out load probe: `cargo run --release -p skat-client --example load -- <url> [receivers] [senders] [rate per sender] [seconds]`.
//!
//! Connects `receivers` listeners and `senders` talkers to one room (spread over the
//! comma-separated URLs, so several nodes can share the load), sends at the given rate, and
//! reports message deliveries per second and the latency percentiles seen by the receivers
//! (send time is carried in the body). Not a benchmark harness: a probe for the numbers quoted
//! in issue notes. The server must allow the rate (`SKAT_MESSAGES_PER_SEC=0`, and
//! `SKAT_MAX_CONNS_PER_IP=0` and `SKAT_MAX_HANDSHAKES_PER_IP=0` for many connections from one
//! address).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skat_client::Client;
use tokio::sync::Mutex;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The send time in a `message` frame's body (`"body":"<micros> payload"`).
fn sent_at(text: &str) -> Option<u64> {
    if !text.starts_with(r#"{"type":"message""#) {
        return None;
    }
    let start = text.find(r#""body":""#)? + 8;
    text[start..].split(' ').next()?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let urls: Vec<String> = args
        .first()
        .map_or("ws://127.0.0.1:3000/ws", String::as_str)
        .split(',')
        .map(str::to_owned)
        .collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (receivers, senders, rate, seconds) = (arg(1, 200), arg(2, 10), arg(3, 50), arg(4, 10));

    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut tasks = Vec::new();
    for i in 0..receivers {
        let mut client = Client::connect(&urls[i as usize % urls.len()], &format!("r{i}"))
            .await
            .unwrap();
        client.join("load").await.unwrap();
        let (delivered, latencies) = (Arc::clone(&delivered), Arc::clone(&latencies));
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            // Only the send time is needed: skip full decoding to keep the probe's own CPU low.
            while let Ok(Ok(text)) =
                tokio::time::timeout(Duration::from_secs(3), client.next_text()).await
            {
                if let Some(sent) = sent_at(&text) {
                    delivered.fetch_add(1, Ordering::Relaxed);
                    local.push(now_us().saturating_sub(sent));
                }
            }
            latencies.lock().await.extend(local);
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let mut sending = Vec::new();
    let sent = Arc::new(AtomicU64::new(0));
    for i in 0..senders {
        let sent = Arc::clone(&sent);
        let mut client = Client::connect(&urls[i as usize % urls.len()], &format!("s{i}"))
            .await
            .unwrap();
        client.join("load").await.unwrap();
        sending.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let end = Instant::now() + Duration::from_secs(seconds);
            // Drain our own echoes so the server never counts us as a slow consumer.
            while Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {
                        client.send_message("load", &format!("{} payload", now_us()), None).await.unwrap();
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    _ = client.next_event() => {}
                }
            }
            // Close politely and read until the server closes too: dropping a socket with
            // unread echoes resets it, and the kernel would discard our last frames unread.
            let _ = client.send_ws(skat_client::RawFrame::Close).await;
            while client.next_event().await.is_ok() {}
        }));
    }
    for task in sending {
        task.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    for task in tasks {
        task.await.unwrap();
    }
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let expected = sent.load(Ordering::Relaxed) * receivers;
    println!(
        "receivers {receivers}, senders {senders} x {rate}/s for {seconds}s: {} deliveries ({} expected), {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delivered.load(Ordering::Relaxed),
        expected,
        delivered.load(Ordering::Relaxed) as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}
