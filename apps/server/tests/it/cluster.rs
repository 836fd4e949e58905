//! Two nodes on a real Redis Cluster (3 masters, 3 replicas): chat in rooms on every shard, and a
//! master killed with -9 in the middle of the traffic: its replica takes over, traffic resumes
//! by itself, and every message a sender had confirmed arrives exactly once.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{DEADLINE, Node, join, message, next};
use skat_broker::{RedisBroker, RedisConfig};
use skat_client::Client;
use skat_protocol::{ErrorCode, ServerFrame};
use skat_server::ServerConfig;
use skat_testkit::RedisCluster;

async fn node(cluster: &RedisCluster, id: &str) -> Node {
    let broker = RedisConfig {
        cluster: true,
        wait_replicas: 1,
        command_timeout: Duration::from_millis(1000),
        ..common::redis_config(&cluster.urls(), "cl:", id, 1000)
    };
    let broker = RedisBroker::connect(broker).await.unwrap();
    let config = ServerConfig {
        node_id: id.to_owned(),
        ..common::test_config()
    };
    Node::start_with(Arc::new(broker), config).await
}

/// Sends `body` with `nonce` until the node confirms it (the sender's own copy comes back),
/// retrying with the same nonce after `unavailable` (while the shard fails over).
async fn send_until_confirmed(client: &mut Client, room: &str, body: &str, nonce: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    'sending: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{nonce} never confirmed"
        );
        client.send_message(room, body, Some(nonce)).await.unwrap();
        loop {
            match next(client).await {
                ServerFrame::Message(m) if m.nonce.as_deref() == Some(nonce) => return,
                ServerFrame::Error {
                    code: ErrorCode::Unavailable,
                    ..
                } => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'sending;
                }
                ServerFrame::Error { code, message, .. } => panic!("{code}: {message}"),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn chat_on_every_shard_survives_a_master_failover() {
    let mut cluster = RedisCluster::start(3, 1).await;
    let a = node(&cluster, "node-a").await;
    let b = node(&cluster, "node-b").await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    let rooms = cluster.a_room_per_shard().await;
    for room in &rooms {
        join(&mut alice, room).await;
        join(&mut bob, room).await;
    }
    // Across nodes, on every shard.
    for room in &rooms {
        send_until_confirmed(&mut bob, room, "hello", &format!("hello-{room}")).await;
        let got = message(&mut alice).await;
        assert_eq!(
            (got.room.as_str(), got.body.as_str()),
            (room.as_str(), "hello")
        );
    }

    // Kill the master of the first room's shard while Bob keeps sending there.
    let room = &rooms[0];
    let master = cluster.master_of(room).await;
    let mut confirmed = Vec::new();
    for i in 0..40 {
        if i == 10 {
            cluster.nodes()[master].kill();
        }
        let nonce = format!("n{i}");
        send_until_confirmed(&mut bob, room, &format!("m{i}"), &nonce).await;
        confirmed.push(nonce);
    }
    cluster.wait_healthy(Some(master)).await;

    // Alice, on the other node, gets every confirmed message exactly once, in order.
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let mut order = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    while got.len() < confirmed.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice got {} of {} confirmed messages",
            got.len(),
            confirmed.len()
        );
        let m = message(&mut alice).await;
        if m.room == *room {
            let nonce = m.nonce.clone().unwrap();
            *got.entry(nonce.clone()).or_default() += 1;
            order.push(m.id);
        }
    }
    assert!(got.values().all(|&n| n == 1), "duplicates: {got:?}");
    assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order");
    for nonce in &confirmed {
        assert!(
            got.contains_key(nonce),
            "{nonce} confirmed but never delivered"
        );
    }
    // And the other shards never stopped.
    for other in &rooms[1..] {
        send_until_confirmed(&mut bob, other, "after", &format!("after-{other}")).await;
        assert_eq!(message(&mut alice).await.body, "after");
    }
}
