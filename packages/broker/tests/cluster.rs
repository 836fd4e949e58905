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
