//! The Redis backend on a real Redis Cluster (3 masters, 3 replicas): the conformance suite,
//! and live delivery between nodes in rooms on every shard over sharded pub/sub.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use skat_broker::conformance::{self, listen, next_event};
use skat_broker::{RedisBroker, RedisConfig, RoomEvent};
use skat_testkit::RedisCluster;

fn config(cluster: &RedisCluster, prefix: &str, node: &str) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_owned(),
        stream_len: 20,
        cluster: true,
        presence_ttl: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(200),
        command_timeout: Duration::from_millis(1000),
        ..RedisConfig::new(cluster.urls(), node)
    }
}

#[tokio::test]
async fn cluster_passes_the_suite_and_delivers_on_every_shard() {
    let cluster = RedisCluster::start(3, 1).await;
    let run = AtomicUsize::new(0);
    conformance::run_all(
        || {
            let prefix = format!("c{}:", run.fetch_add(1, Ordering::Relaxed));
            let cfg = config(&cluster, &prefix, "node-a");
            async move { RedisBroker::connect(cfg).await.unwrap() }
        },
        20,
    )
    .await;

    let a = RedisBroker::connect(config(&cluster, "live:", "node-a"))
        .await
        .unwrap();
    let b = RedisBroker::connect(config(&cluster, "live:", "node-b"))
        .await
        .unwrap();
    let rooms = cluster.a_room_per_shard().await;
    let mut subs = Vec::new();
    for room in &rooms {
        subs.push(listen(&a, room).await.unwrap());
    }
    for (room, sub) in rooms.iter().zip(&mut subs) {
        let sent = conformance::publish_n(&b, room, 3).await;
        for message in sent {
            assert_eq!(next_event(sub).await, RoomEvent::Message(message), "{room}");
        }
    }
}

/// Resharding moves a room's slot to another master: Redis drops the node's sharded
/// subscription, the node subscribes again where the slot lives now and catches up, and live
/// events keep coming in order.
#[tokio::test]
async fn a_room_keeps_its_events_when_its_slot_moves() {
    let cluster = RedisCluster::start(3, 0).await;
    let a = RedisBroker::connect(config(&cluster, "mv:", "node-a"))
        .await
        .unwrap();
    let b = RedisBroker::connect(config(&cluster, "mv:", "node-b"))
        .await
        .unwrap();
    let mut sub = listen(&a, "general").await.unwrap();
    for message in conformance::publish_n(&b, "general", 2).await {
        assert_eq!(next_event(&mut sub).await, RoomEvent::Message(message));
    }
    let from = cluster.master_of("general").await;
    cluster.move_slot_of("general", (from + 1) % 3).await;
    assert_ne!(cluster.master_of("general").await, from, "the slot moved");
    for message in conformance::publish_n(&b, "general", 5).await {
        assert_eq!(next_event(&mut sub).await, RoomEvent::Message(message));
    }
}
