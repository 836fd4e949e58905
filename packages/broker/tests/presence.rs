//! Presence and the node claim of the Redis backend under faults, against a real `redis-server`
//! (some through the testkit's [`Proxy`], which partitions one node): node ids, sweeps of
//! partitioned and dead nodes, lost replies, clocks, and the work a heartbeat does.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skat_broker::conformance;
use skat_broker::{Broker, RedisBroker, RedisBrokerError, RedisConfig};
use skat_testkit::RedisServer;

fn config(url: String, prefix: &str, node: &str) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_owned(),
        stream_len: 100,
        presence_ttl: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(200),
        command_timeout: Duration::from_millis(500),
        ..RedisConfig::new(url, node)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs `args` on `redis` and checks it answered without an error.
async fn run(redis: &RedisServer, args: &[&str]) -> String {
    let reply = redis.command(args).await.unwrap();
    assert!(!reply.starts_with('-'), "{args:?}: {reply}");
    reply
}

/// Writes what a live node instance holding `user` in `room` leaves in Redis, as a node of
/// another version would: its claim, registry stamp, room list and entry.
async fn fake_instance(redis: &RedisServer, prefix: &str, instance: &str, stamp: u64, live: bool) {
    let (id, token) = instance.rsplit_once(':').unwrap();
    if live {
        let claim = format!("{prefix}node:{id}");
        run(redis, &["SET", &claim, token, "PX", "60000"]).await;
    }
    let nodes = format!("{prefix}nodes");
    run(redis, &["ZADD", &nodes, &stamp.to_string(), instance]).await;
}

/// Adds `user` to `room` as held by `instance` (set, count, names index and room list).
async fn fake_entry(redis: &RedisServer, prefix: &str, instance: &str, room: &str, user: &str) {
    let list = format!("{prefix}instance:{instance}:rooms");
    run(redis, &["SADD", &list, room]).await;
    let held = format!("{prefix}{{{room}}}:held:{instance}");
    run(redis, &["SADD", &held, user]).await;
    let users = format!("{prefix}{{{room}}}:users");
    run(redis, &["HINCRBY", &users, user, "1"]).await;
    let names = format!("{prefix}{{{room}}}:names");
    run(redis, &["ZADD", &names, "0", user]).await;
}

/// Item 15: an id with a `:` is refused before anything is written, with the reason.
#[tokio::test]
async fn a_node_id_with_a_colon_is_refused() {
    let redis = RedisServer::start().await;
    let refused = RedisBroker::connect(config(redis.url(), "ids:", "chat:2")).await;
    let Err(RedisBrokerError::InvalidNodeId(err)) = refused else {
        panic!("{refused:?}");
    };
    assert!(err.to_string().contains("\"chat:2\""), "{err}");
    assert_eq!(run(&redis, &["DBSIZE"]).await, ":0\r\n", "nothing written");
}

/// Item 15: a starting node sweeps its own previous instances only, never those of a node
/// whose id starts with its own (`chat:2`, as an older version allowed, or `chat2`).
#[tokio::test]
async fn a_starting_node_sweeps_only_instances_of_exactly_its_id() {
    let redis = RedisServer::start().await;
    let prefix = "exact:";
    let now = unix_ms();
    // Live `chat:2` (an older node's id), holding alice.
    fake_instance(&redis, prefix, "chat:2:t1", now, true).await;
    fake_entry(&redis, prefix, "chat:2:t1", "general", "alice").await;
    // A previous, dead instance of `chat` itself, holding carol.
    fake_instance(&redis, prefix, "chat:t0", now, false).await;
    fake_entry(&redis, prefix, "chat:t0", "general", "carol").await;
    // Live `chat2`, a real node, holding bob.
    let chat2 = RedisBroker::connect(config(redis.url(), prefix, "chat2"))
        .await
        .unwrap();
    chat2.presence_join("general", "bob").await.unwrap();

    let chat = RedisBroker::connect(config(redis.url(), prefix, "chat"))
        .await
        .unwrap();
    assert_eq!(
        conformance::all_members(&chat, "general").await,
        ["alice", "bob"],
        "carol's instance was chat's own; alice's and bob's were not"
    );
}
