//! The Redis backend against a real `redis-server`: the shared conformance suite, plus what only
//! a remote broker can get wrong (catching up after its pub/sub connection drops, presence of a
//! node that died without cleaning up).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use skat_broker::conformance::{self, listen, next_event};
use skat_broker::{Broker, BrokerStats, Recovery, RedisBroker, RedisConfig, Resume, RoomEvent};
use skat_protocol::UNREAD_CAP;
use skat_testkit::RedisServer;

fn config(redis: &RedisServer, prefix: &str, node: &str, stream_len: usize) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_owned(),
        stream_len,
        presence_ttl: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(200),
        command_timeout: Duration::from_millis(500),
        ..RedisConfig::new(redis.url(), node)
    }
}

/// Changes to messages, replies and read markers (issue 22), and the unread cap (a room that
/// retains more than [`skat_protocol::UNREAD_CAP`] entries).
#[tokio::test]
async fn conformance_of_changes() {
    let redis = RedisServer::start().await;
    let run = AtomicUsize::new(0);
    conformance::run_changes(
        || {
            let cfg = config(
                &redis,
                &format!("x{}:", run.fetch_add(1, Ordering::Relaxed)),
                "node-a",
                100,
            );
            async move { RedisBroker::connect(cfg).await.unwrap() }
        },
        100,
    )
    .await;
    // A thousand publishes: patient with a loaded machine.
    let cfg = RedisConfig {
        command_timeout: Duration::from_secs(5),
        ..config(&redis, "cap:", "node-a", UNREAD_CAP as usize + 100)
    };
    conformance::unread_is_capped(&RedisBroker::connect(cfg).await.unwrap()).await;
}

/// Redis keeps no index of its messages (until an archive exists): search is unsupported.
#[tokio::test]
async fn search_is_unsupported() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(config(&redis, "search:", "node-a", 10))
        .await
        .unwrap();
    conformance::search_is_unsupported(&broker).await;
}

#[tokio::test]
async fn conformance_suite() {
    let redis = RedisServer::start().await;
    let run = AtomicUsize::new(0);
    conformance::run_all(
        || {
            // A fresh key prefix per check, so checks never see each other's rooms.
            let cfg = config(
                &redis,
                &format!("c{}:", run.fetch_add(1, Ordering::Relaxed)),
                "node-a",
                20,
            );
            async move { RedisBroker::connect(cfg).await.unwrap() }
        },
        20,
    )
    .await;
}

/// `rediss://`: with the CA that signed Redis's certificate the whole suite passes over TLS;
/// without it (the system's CAs do not know this one) the connection is refused.
#[tokio::test]
async fn tls_with_the_right_ca_passes_the_suite_and_is_refused_without_it() {
    let redis = RedisServer::start_tls().await;
    let tls = |prefix: &str| RedisConfig {
        url: redis.tls_url(),
        tls_ca: Some(redis.ca_pem()),
        ..config(&redis, prefix, "node-tls", 20)
    };
    let untrusted = RedisConfig {
        tls_ca: None,
        ..tls("untrusted:")
    };
    let refused = RedisBroker::connect(untrusted).await;
    assert!(refused.is_err(), "an unknown CA must not be trusted");
    let run = AtomicUsize::new(0);
    conformance::run_all(
        || {
            let cfg = tls(&format!("t{}:", run.fetch_add(1, Ordering::Relaxed)));
            async move { RedisBroker::connect(cfg).await.unwrap() }
        },
        20,
    )
    .await;
}

#[tokio::test]
async fn presence_spans_nodes() {
    let redis = RedisServer::start().await;
    let a = RedisBroker::connect(config(&redis, "two:", "node-a", 100))
        .await
        .unwrap();
    let b = RedisBroker::connect(config(&redis, "two:", "node-b", 100))
        .await
        .unwrap();
    conformance::presence_spans_nodes(&a, &b).await;
}

#[tokio::test]
async fn subscription_catches_up_after_pubsub_connection_drops() {
    let redis = RedisServer::start().await;
    let a = RedisBroker::connect(config(&redis, "gap:", "node-a", 1000))
        .await
        .unwrap();
    let b = RedisBroker::connect(config(&redis, "gap:", "node-b", 1000))
        .await
        .unwrap();
    let mut sub = listen(&a, "general").await.unwrap();
    let first = conformance::publish_n(&b, "general", 1).await;
    assert_eq!(
        next_event(&mut sub).await,
        RoomEvent::Message(first[0].clone())
    );

    // Drop every pub/sub connection (A's); B publishes while A is reconnecting.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(killed >= 1);
    let missed = conformance::publish_n(&b, "general", 20).await;
    for expected in &missed {
        assert_eq!(
            next_event(&mut sub).await,
            RoomEvent::Message(expected.clone())
        );
    }
    // Live delivery resumes, without duplicates.
    let live = conformance::publish_n(&b, "general", 1).await;
    assert_eq!(
        next_event(&mut sub).await,
        RoomEvent::Message(live[0].clone())
    );
    assert!(a.is_ready());
    // The repair shows in the broker's stats: one reconnection, the room caught up, and the
    // messages live delivery missed (all 20, or fewer if some arrived live before the kill
    // took effect) delivered from the stream.
    let stats = a.stats();
    assert_eq!((stats.reconnects, stats.catch_ups), (1, 1), "{stats:?}");
    assert!(stats.caught_up <= 20, "{stats:?}");
    assert_eq!(
        b.stats(),
        BrokerStats::default(),
        "B never lost its connection"
    );
}

#[tokio::test]
async fn subscriptions_end_when_the_broker_is_dropped() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(config(&redis, "drop:", "node-a", 100))
        .await
        .unwrap();
    let mut sub = listen(&broker, "general").await.unwrap();
    drop(broker);
    let end = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await;
    assert_eq!(end, Ok(None));
}

#[tokio::test]
async fn a_dead_nodes_presence_is_swept_and_its_restart_brings_nothing_back() {
    let redis = RedisServer::start().await;
    let alive = RedisBroker::connect(config(&redis, "dead:", "alive", 1000))
        .await
        .unwrap();
    let mut sub = listen(&alive, "general").await.unwrap();
    let ghost = RedisBroker::connect(config(&redis, "dead:", "ghost", 1000))
        .await
        .unwrap();
    ghost.presence_join("general", "casper").await.unwrap();
    ghost.presence_join("general", "alice").await.unwrap();
    alive.presence_join("general", "alice").await.unwrap();
    let online = |user: &str| RoomEvent::Presence {
        room: "general".into(),
        user: user.into(),
        online: true,
    };
    assert_eq!(next_event(&mut sub).await, online("casper"));
    assert_eq!(next_event(&mut sub).await, online("alice"));
    assert_eq!(
        conformance::all_members(&alive, "general").await,
        ["alice", "casper"]
    );

    // The ghost node dies without leaving: no more heartbeats. Once its claim lapses the alive
    // node sweeps its entries: Casper, held by it alone, goes offline once; Alice, held by the
    // alive node too, stays.
    drop(ghost);
    assert_eq!(
        next_event(&mut sub).await,
        RoomEvent::Presence {
            room: "general".into(),
            user: "casper".into(),
            online: false
        }
    );
    assert_eq!(conformance::all_members(&alive, "general").await, ["alice"]);

    // Started again with the same id: nothing of its previous life comes back, and no event
    // about it follows (the next one is this typing).
    let again = RedisBroker::connect(config(&redis, "dead:", "ghost", 1000))
        .await
        .unwrap();
    assert_eq!(conformance::all_members(&again, "general").await, ["alice"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    alive.typing("general", "alice").await.unwrap();
    assert!(matches!(
        next_event(&mut sub).await,
        RoomEvent::Typing { .. }
    ));
}

#[tokio::test]
async fn an_idle_node_costs_a_few_commands_per_heartbeat_whatever_it_holds() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(config(&redis, "idle:", "node-a", 100))
        .await
        .unwrap();
    for room in 0..20 {
        for user in 0..25 {
            broker
                .presence_join(&format!("room-{room}"), &format!("user-{user}"))
                .await
                .unwrap();
        }
    }
    let processed = || async {
        let info = redis.command(&["INFO", "stats"]).await.unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let before = processed().await;
    // Ten heartbeats (200 ms each) with 500 entries held.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_beat = (processed().await - before) as f64 / 10.0;
    // Claim, stamp, stale scan, and this test's INFO: no command per entry.
    assert!(per_beat < 8.0, "{per_beat} commands per heartbeat");
}

#[tokio::test]
async fn calls_fail_fast_while_redis_is_down_and_recover() {
    let mut redis = RedisServer::start().await;
    let broker = RedisBroker::connect(config(&redis, "down:", "node-a", 1000))
        .await
        .unwrap();
    let mut sub = listen(&broker, "general").await.unwrap();
    redis.kill();
    let new = || skat_broker::NewMessage {
        room: "general".into(),
        from: "a".into(),
        body: "x".into(),
        nonce: None,
        reply_to: None,
    };
    assert!(
        broker.publish(new()).await.is_err(),
        "publish reports the outage"
    );
    redis.restart().await;
    // The broker becomes ready again by itself, and the old subscription keeps working.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !broker.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = loop {
        // The command connection may need one failed call to notice the restart.
        match broker.publish(new()).await {
            Ok(published) => break published.into_message().unwrap(),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(next_event(&mut sub).await, RoomEvent::Message(sent));
}

#[tokio::test]
async fn a_node_id_is_held_by_one_live_node_at_a_time() {
    let redis = RedisServer::start().await;
    let first = RedisBroker::connect(config(&redis, "ids:", "node-a", 100))
        .await
        .unwrap();
    // A second node with the same id waits one TTL (1 s here) for the claim, then refuses.
    let started = std::time::Instant::now();
    let second = RedisBroker::connect(config(&redis, "ids:", "node-a", 100)).await;
    assert!(
        matches!(second, Err(skat_broker::RedisBrokerError::NodeIdTaken(ref id)) if id == "node-a"),
        "{second:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for the claim"
    );
    // Another id is fine meanwhile.
    RedisBroker::connect(config(&redis, "ids:", "node-b", 100))
        .await
        .unwrap();
    // Released on an orderly stop: the id is free at once.
    first.release_node_id().await.unwrap();
    drop(first);
    RedisBroker::connect(config(&redis, "ids:", "node-a", 100))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dead_nodes_id_is_free_after_its_claim_expires() {
    let redis = RedisServer::start().await;
    // Dropped without releasing: as if killed. Its claim lapses after the TTL.
    drop(
        RedisBroker::connect(config(&redis, "dead:", "node-a", 100))
            .await
            .unwrap(),
    );
    RedisBroker::connect(config(&redis, "dead:", "node-a", 100))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pubsub_connection_that_stops_answering_is_replaced() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(RedisConfig {
        pubsub_ping: Duration::from_millis(200),
        ..config(&redis, "alive:", "node-a", 100)
    })
    .await
    .unwrap();
    let mut sub = listen(&broker, "general").await.unwrap();
    // Redis answers nothing for 2 s, as a connection cut on the way would look: no error, no
    // close, only silence. The PING goes unanswered and the node says it is not ready.
    let paused = redis.command(&["CLIENT", "PAUSE", "2000", "ALL"]).await;
    assert_eq!(paused.as_deref(), Some("+OK\r\n"));
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while broker.is_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "silence went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Once Redis answers again, the node reconnects by itself and delivery resumes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !broker.is_ready() {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = conformance::publish_n(&broker, "general", 1).await;
    assert_eq!(
        next_event(&mut sub).await,
        RoomEvent::Message(sent[0].clone())
    );
}

/// A failover to a replica that had not received the newest writes looks, to a node, like a
/// stream that lost messages it already delivered. The node notices when it catches up, and
/// starts a new epoch: a client's `since` from the lost history then recovers nothing
/// (`recovered: false`) instead of silently skipping the gap.
#[tokio::test]
async fn a_stream_that_lost_delivered_messages_gets_a_new_epoch() {
    let redis = RedisServer::start().await;
    let a = RedisBroker::connect(config(&redis, "lost:", "node-a", 100))
        .await
        .unwrap();
    let mut sub = listen(&a, "general").await.unwrap();
    let sent = conformance::publish_n(&a, "general", 3).await;
    for message in &sent {
        assert_eq!(
            next_event(&mut sub).await,
            RoomEvent::Message(message.clone())
        );
    }
    let before = a.epoch("general").await.unwrap();

    // The stream loses its two newest messages, and the node's pub/sub connection drops.
    let (one, two) = (sent[1].id.to_string(), sent[2].id.to_string());
    let deleted = redis
        .command(&["XDEL", "lost:{general}:stream", &one, &two])
        .await;
    assert_eq!(deleted.as_deref(), Some(":2\r\n"));
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert!(killed.as_deref().is_some_and(|k| k.starts_with(':')));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.epoch("general").await.unwrap() == before {
        assert!(tokio::time::Instant::now() < deadline, "no new epoch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resume = Resume {
        since: Some(sent[2].id),
        epoch: Some(&before),
        recovery: Recovery::count(100),
        page: 10,
        members: 100,
    };
    let snapshot = a
        .join_snapshot("general", "bob", false, resume)
        .await
        .unwrap();
    assert!(
        !snapshot.recovered,
        "a since from the lost history recovers nothing"
    );
    assert_eq!(
        snapshot.messages,
        &sent[..1],
        "the latest page of what is left"
    );
}

/// A node of an older version keeps only the users hash, not the names index members are paged
/// from: an index whose size disagrees with the hash is built again from it, so members stay
/// right through a rolling upgrade.
#[tokio::test]
async fn members_written_by_an_older_node_are_indexed_again() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(config(&redis, "old:", "node-a", 100))
        .await
        .unwrap();
    broker.presence_join("general", "alice").await.unwrap();
    // An older node joins bob and carol (the hash only), then carol leaves.
    let joined = redis
        .command(&["HSET", "old:{general}:users", "bob", "1", "carol", "1"])
        .await;
    assert_eq!(joined.as_deref(), Some(":2\r\n"));
    assert_eq!(
        conformance::all_members(&broker, "general").await,
        ["alice", "bob", "carol"]
    );
    let left = redis
        .command(&["HDEL", "old:{general}:users", "carol"])
        .await;
    assert_eq!(left.as_deref(), Some(":1\r\n"));
    let page = broker.members("general", None, 1).await.unwrap();
    assert_eq!((page.members, page.has_more), (vec!["alice".into()], true));
    assert_eq!(
        conformance::all_members(&broker, "general").await,
        ["alice", "bob"]
    );
}

/// The reproduction, at the broker: a client that saw m1 resumes without an epoch after
/// Redis came back empty (no persistence) and the room went on. m1 is not in the new stream,
/// so it recovers nothing instead of passing the new messages off as all it missed.
#[tokio::test]
async fn a_since_from_a_history_redis_lost_recovers_nothing_without_an_epoch() {
    let mut redis = RedisServer::start().await;
    let broker = RedisBroker::connect(config(&redis, "lost:", "node-a", 100))
        .await
        .unwrap();
    let before = conformance::publish_n(&broker, "general", 3).await;
    redis.restart_empty().await;
    let after = loop {
        // The command connection may need one failed call to notice the restart.
        if let Ok(published) = broker
            .publish(skat_broker::NewMessage {
                room: "general".into(),
                from: "carol".into(),
                body: "after".into(),
                nonce: Some("c1".into()),
                reply_to: None,
            })
            .await
        {
            break published.into_message().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let resume = Resume {
        since: Some(before[1].id),
        epoch: None,
        recovery: Recovery::count(100),
        page: 10,
        members: 100,
    };
    let snapshot = broker
        .join_snapshot("general", "dave", false, resume)
        .await
        .unwrap();
    assert_eq!(
        (snapshot.messages, snapshot.recovered),
        (vec![after.clone()], false),
        "the latest page, not recovered"
    );
    let missed = broker
        .recover("general", after.id, Recovery::count(100))
        .await
        .unwrap()
        .map(|r| r.messages);
    assert_eq!(missed, Some(vec![]), "the new history's ids still recover");
}
