//! A node's live-event side under faults, against a real `redis-server`: rooms joined while the
//! pub/sub connection comes back, histories that lost messages, presence changes missed during a
//! gap. Faults come from `CLIENT KILL` and the testkit's [`Proxy`].

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use skat_broker::conformance::{self, Listener, listen, next_event};
use skat_broker::{Broker, RedisBroker, RedisConfig, RedisSubscription, RoomEvent};
use skat_testkit::{Proxy, RedisServer};

fn config(redis: &RedisServer, prefix: &str, node: &str) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_owned(),
        stream_len: 1000,
        presence_ttl: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(200),
        command_timeout: Duration::from_millis(500),
        ..RedisConfig::new(redis.url(), node)
    }
}

/// Kills every pub/sub connection of the server (every node's).
async fn kill_pubsub(redis: &RedisServer) {
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert!(
        killed.as_deref().is_some_and(|k| k.starts_with(':')),
        "{killed:?}"
    );
}

/// Subscribes to `room`, again while the node answers `unavailable` (its pub/sub connection is
/// being made again), as a client's join would be retried.
async fn join(broker: &RedisBroker, room: &str) -> Listener<RedisSubscription> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match listen(broker, room).await {
            Ok(sub) => return sub,
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "{room}: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Item 1, deterministically: rooms joined while the node's resubscription is on its way (the
/// proxy holds Redis's reply to it) are subscribed after it, and still get their messages.
#[tokio::test]
async fn rooms_joined_while_the_resubscription_is_answered_get_their_messages() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(redis.port()).await;
    let a = RedisBroker::connect(RedisConfig {
        url: proxy.url(),
        command_timeout: Duration::from_secs(2),
        ..config(&redis, "held:", "node-a")
    })
    .await
    .unwrap();
    let b = RedisBroker::connect(config(&redis, "held:", "node-b"))
        .await
        .unwrap();
    let mut lobby = listen(&a, "lobby").await.unwrap();
    proxy.hold_replies_to("SUBSCRIBE");
    kill_pubsub(&redis).await;
    proxy.holding().await;
    // Each join registers its room at once, then waits for the pub/sub side, which waits for
    // the reply to its resubscription.
    let rooms: Vec<String> = (0..5).map(|i| format!("room-{i}")).collect();
    let mut joins: Vec<_> = rooms
        .iter()
        .map(|room| Box::pin(listen(&a, room)))
        .collect();
    std::future::poll_fn(|cx| {
        for join in &mut joins {
            assert!(
                join.as_mut().poll(cx).is_pending(),
                "joined before the reply"
            );
        }
        std::task::Poll::Ready(())
    })
    .await;
    proxy.release();
    let mut subs = Vec::new();
    for join in joins {
        subs.push(join.await.unwrap());
    }
    for (room, sub) in rooms
        .iter()
        .zip(&mut subs)
        .chain([(&"lobby".to_owned(), &mut lobby)])
    {
        let sent = conformance::publish_n(&b, room, 1).await;
        assert_eq!(
            next_event(sub).await,
            RoomEvent::Message(sent[0].clone()),
            "{room}"
        );
    }
}

/// The reproduction of item 1: 200 rooms joined concurrently while the node's pub/sub
/// connection is made again; each gets what another node publishes there.
#[tokio::test]
async fn rooms_joined_while_pubsub_reconnects_all_get_their_messages() {
    let redis = RedisServer::start().await;
    // A storm of joins on a loaded box (Redis fsyncs every write here): patient commands.
    let patient = |node| RedisConfig {
        command_timeout: Duration::from_secs(2),
        ..config(&redis, "storm:", node)
    };
    let a = Arc::new(RedisBroker::connect(patient("node-a")).await.unwrap());
    let b = RedisBroker::connect(patient("node-b")).await.unwrap();
    let _lobby = listen(&*a, "lobby").await.unwrap();
    kill_pubsub(&redis).await;
    let joins: Vec<_> = (0..200)
        .map(|i| {
            let a = Arc::clone(&a);
            tokio::spawn(async move { join(&a, &format!("room-{i}")).await })
        })
        .collect();
    let mut subs = Vec::new();
    for joined in joins {
        subs.push(joined.await.unwrap());
    }
    for (i, sub) in subs.iter_mut().enumerate() {
        let room = format!("room-{i}");
        let sent = conformance::publish_n(&b, &room, 1).await;
        assert_eq!(
            next_event(sub).await,
            RoomEvent::Message(sent[0].clone()),
            "{room}"
        );
    }
}

/// Item 16: a failover to a master whose clock is behind. Its ids are below the last one the
/// node delivered; once the node has noticed the lost history, it delivers them.
#[tokio::test]
async fn after_a_lost_history_messages_with_lower_ids_are_delivered() {
    let redis = RedisServer::start().await;
    let a = RedisBroker::connect(config(&redis, "behind:", "node-a"))
        .await
        .unwrap();
    let b = RedisBroker::connect(config(&redis, "behind:", "node-b"))
        .await
        .unwrap();
    let mut sub = listen(&a, "general").await.unwrap();
    let first = conformance::publish_n(&b, "general", 1).await;
    assert_eq!(
        next_event(&mut sub).await,
        RoomEvent::Message(first[0].clone())
    );
    // The old master's clock ran far ahead: its ids are in the future.
    let ahead = redis
        .command(&["XSETID", "behind:{general}:stream", "99999999999999-0"])
        .await;
    assert_eq!(ahead.as_deref(), Some("+OK\r\n"));
    for message in conformance::publish_n(&b, "general", 2).await {
        assert_eq!(message.id.ms, 99_999_999_999_999);
        assert_eq!(next_event(&mut sub).await, RoomEvent::Message(message));
    }
    let before = a.epoch("general").await.unwrap();

    // The failover loses the stream, and the node's pub/sub connection drops.
    let lost = redis.command(&["DEL", "behind:{general}:stream"]).await;
    assert_eq!(lost.as_deref(), Some(":1\r\n"));
    kill_pubsub(&redis).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.epoch("general").await.unwrap() == before {
        assert!(tokio::time::Instant::now() < deadline, "no new epoch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new master's ids come from its own clock, far below the old ones.
    let after = conformance::publish_n(&b, "general", 2).await;
    for message in after {
        assert_eq!(next_event(&mut sub).await, RoomEvent::Message(message));
    }
}

/// Item 7: presence changes published while the node's pub/sub connection was cut (the proxy
/// held them, then cut the connection) reach its sinks once it is back.
#[tokio::test]
async fn presence_changes_missed_during_a_gap_are_delivered() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(redis.port()).await;
    let a = RedisBroker::connect(RedisConfig {
        url: proxy.url(),
        ..config(&redis, "gap7:", "node-a")
    })
    .await
    .unwrap();
    let b = RedisBroker::connect(config(&redis, "gap7:", "node-b"))
        .await
        .unwrap();
    let presence = |user: &str, online| RoomEvent::Presence {
        room: "general".into(),
        user: user.into(),
        online,
    };
    let mut sub = listen(&a, "general").await.unwrap();
    b.presence_join("general", "carol").await.unwrap();
    assert_eq!(next_event(&mut sub).await, presence("carol", true));

    proxy.hold_replies_to("SUBSCRIBE");
    b.presence_join("general", "bob").await.unwrap();
    b.presence_leave("general", "carol").await.unwrap();
    proxy.holding().await;
    proxy.cut();
    proxy.release();
    assert_eq!(next_event(&mut sub).await, presence("carol", false));
    assert_eq!(next_event(&mut sub).await, presence("bob", true));
    // Nothing repeated: the next event is this typing.
    b.typing("general", "bob").await.unwrap();
    assert!(matches!(
        next_event(&mut sub).await,
        RoomEvent::Typing { .. }
    ));
    assert_eq!(a.stats().reconnects, 1);
}
