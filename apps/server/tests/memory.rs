//! Bounded memory under a flood, in a test binary of its own: it measures this process's
//! resident memory, which tests running alongside would disturb.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

// The helpers of `it`; this binary uses a few of them.
#[allow(dead_code)]
#[path = "it/common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{Node, join, message, test_config};
use futures_util::SinkExt;
use skat_broker::MemoryBroker;
use skat_protocol::{ClientFrame, encode_client};
use skat_server::ServerConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn memory_stays_bounded_when_a_reader_never_reads() {
    let config = ServerConfig {
        outbound_queue: 256,
        ..test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let (mut stuck, _) = tokio_tungstenite::connect_async(&node.url).await.unwrap();
    for frame in [
        ClientFrame::Hello {
            name: "stuck".into(),
            token: None,
        },
        ClientFrame::Join {
            room: "flood".into(),
            since: None,
            epoch: None,
        },
    ] {
        stuck
            .send(WsMessage::text(encode_client(&frame)))
            .await
            .unwrap();
    }
    let mut flooder = node.client("flooder").await;
    join(&mut flooder, "flood").await;
    let before = rss();
    // ~48 MB through the room; the stuck reader takes none of it.
    let body = "x".repeat(4000);
    for round in 0..750 {
        for i in 0..16 {
            flooder
                .send_message("flood", &body, Some(&format!("{round}-{i}")))
                .await
                .unwrap();
        }
        for _ in 0..16 {
            message(&mut flooder).await;
        }
    }
    let grown = rss().saturating_sub(before);
    eprintln!(
        "flooded 48 MB past a reader that never reads: RSS grew {} KiB",
        grown / 1024
    );
    assert!(grown < 24 * 1024 * 1024, "memory grew by {grown} bytes");
    drop(stuck);
}
