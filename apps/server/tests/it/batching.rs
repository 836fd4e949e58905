//! The flush window (`--write-delay-ms`): room frames are held back at most that long and then
//! written together; nothing is lost, reordered or mistaken for a slow consumer.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Node, join, message, test_config};
use skat_broker::MemoryBroker;
use skat_client::Client;
use skat_server::ServerConfig;

/// A node with `config`, and alice and bob in room "busy".
async fn two_in_a_room(config: ServerConfig) -> (Node, Client, Client) {
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "busy").await;
    join(&mut bob, "busy").await;
    (node, alice, bob)
}

#[tokio::test]
async fn a_flush_window_delivers_every_frame_in_order() {
    let config = ServerConfig {
        write_delay: Duration::from_millis(20),
        // Small, so frames left waiting in a connection would soon evict it.
        outbound_queue: 32,
        ..test_config()
    };
    let (_node, mut alice, mut bob) = two_in_a_room(config).await;
    // 300 KB: more than a connection holds back before it stops taking frames.
    let body = "x".repeat(1000);
    for round in 0..10 {
        for i in 0..30 {
            let nonce = format!("{round}-{i}");
            alice
                .send_message("busy", &body, Some(&nonce))
                .await
                .unwrap();
        }
        for i in 0..30 {
            let expected = format!("{round}-{i}");
            for client in [&mut alice, &mut bob] {
                let m = message(client).await;
                assert_eq!(m.nonce.as_deref(), Some(expected.as_str()));
            }
        }
    }
    // The last frame of a burst is not left waiting for another one.
    alice
        .send_message("busy", "last", Some("last"))
        .await
        .unwrap();
    assert_eq!(message(&mut bob).await.body, "last");
}

#[tokio::test]
async fn an_outbox_that_overflows_inside_a_window_evicts_at_once() {
    let window = Duration::from_secs(30);
    let config = ServerConfig {
        // Frames wait in the outbox while the window is open; pushes do not wake the
        // connection then, but the push that overflows it must.
        write_delay: window,
        outbound_queue: 4,
        ..test_config()
    };
    let (_node, mut alice, mut bob) = two_in_a_room(config).await;
    for i in 0..10 {
        alice
            .send_message("busy", "hi", Some(&i.to_string()))
            .await
            .unwrap();
    }
    let code = tokio::time::timeout(window / 3, common::closed(&mut bob))
        .await
        .expect("evicted only when the window closed");
    assert_eq!(code, Some(1008));
}
