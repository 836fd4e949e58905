//! Several nodes sharing one real `redis-server`: cross-node chat, ordering, history, recovery,
//! presence, and surviving a Redis crash in the middle of a stream of sends.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::process::NodeProcess;
use common::{DEADLINE, Node, join, message, next, next_where};
use skat_broker::{Broker, MessageId, RedisBroker};
use skat_protocol::{ErrorCode, Message, ServerFrame};
use skat_testkit::{RedisServer, TempDir};

#[tokio::test]
async fn two_nodes_deliver_the_same_messages_in_the_same_order() {
    let redis = RedisServer::start().await;
    let a = Node::redis(&redis.url(), "order:", "node-a", 1000).await;
    let b = Node::redis(&redis.url(), "order:", "node-b", 1000).await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    assert_eq!((alice.node(), bob.node()), (Some("node-a"), Some("node-b")));
    join(&mut alice, "general").await;
    let (members, _, _) = join(&mut bob, "general").await;
    assert_eq!(members, ["alice", "bob"], "members span nodes");

    // Both send at once, from different nodes.
    const EACH: usize = 30;
    let (mut alice_tx, mut bob_tx) = (a.client("alice").await, b.client("bob").await);
    join(&mut alice_tx, "general").await;
    join(&mut bob_tx, "general").await;
    let send_a = tokio::spawn(async move {
        for i in 0..EACH {
            alice_tx
                .send_message("general", &format!("a{i}"), None)
                .await
                .unwrap();
        }
        alice_tx
    });
    let send_b = tokio::spawn(async move {
        for i in 0..EACH {
            bob_tx
                .send_message("general", &format!("b{i}"), None)
                .await
                .unwrap();
        }
        bob_tx
    });
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    while on_a.len() < 2 * EACH {
        on_a.push(message(&mut alice).await);
    }
    while on_b.len() < 2 * EACH {
        on_b.push(message(&mut bob).await);
    }
    let _ = (send_a.await.unwrap(), send_b.await.unwrap());
    assert_eq!(
        on_a, on_b,
        "same messages, same ids, same order on both nodes"
    );
    let ids: Vec<MessageId> = on_a.iter().map(|m| m.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");

    // Stored once, whatever the number of nodes: history holds each message exactly once.
    let mut carol = b.client("carol").await;
    let (_, page, _) = join(&mut carol, "general").await;
    assert_eq!(page, on_a[2 * EACH - 50..]);
    carol
        .history("general", Some(page[0].id), Some(100))
        .await
        .unwrap();
    let older = next_where(&mut carol, "history", |f| match f {
        ServerFrame::History {
            messages, has_more, ..
        } => Ok((messages, has_more)),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(older, (on_a[..2 * EACH - 50].to_vec(), false));
}

/// Number of Redis pub/sub subscribers of a room's channel (one per subscribed node).
async fn subscribers(redis: &RedisServer, prefix: &str, room: &str) -> u32 {
    let channel = format!("{prefix}{{{room}}}:events");
    let reply = redis
        .command(&["PUBSUB", "NUMSUB", &channel])
        .await
        .unwrap();
    // *2\r\n$<len>\r\n<channel>\r\n:<count>\r\n
    reply.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// Waits until the room's channel has `expected` subscribers.
async fn await_subscribers(redis: &RedisServer, prefix: &str, room: &str, expected: u32) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while subscribers(redis, prefix, room).await != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached {expected} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn one_redis_subscription_per_room_per_node() {
    let redis = RedisServer::start().await;
    let a = Node::redis(&redis.url(), "subs:", "node-a", 100).await;
    let b = Node::redis(&redis.url(), "subs:", "node-b", 100).await;
    let mut users = Vec::new();
    for (node, name) in [(&a, "a1"), (&a, "a2"), (&a, "a3"), (&b, "b1"), (&b, "b2")] {
        let mut client = node.client(name).await;
        join(&mut client, "general").await;
        users.push(client);
    }
    // Five users on two nodes: two subscriptions, not five.
    assert_eq!(subscribers(&redis, "subs:", "general").await, 2);
    // Node B's last member leaves: B unsubscribes, A stays.
    for mut client in users.drain(3..) {
        client.leave("general").await.unwrap();
        next_where(&mut client, "left", |f| match f {
            ServerFrame::Left { .. } => Ok(()),
            other => Err(Box::new(other)),
        })
        .await;
    }
    await_subscribers(&redis, "subs:", "general", 1).await;
    drop(users);
    await_subscribers(&redis, "subs:", "general", 0).await;
}

#[tokio::test]
async fn join_since_recovers_across_nodes_or_falls_back() {
    let redis = RedisServer::start().await;
    let a = Node::redis(&redis.url(), "rec:", "node-a", 30).await;
    let b = Node::redis(&redis.url(), "rec:", "node-b", 30).await;
    common::scenarios::recovery(&a, &b, 30).await;
}

#[tokio::test]
async fn presence_spans_nodes_and_a_dead_nodes_users_expire() {
    let redis = RedisServer::start().await;
    let a = Node::redis(&redis.url(), "pres:", "node-a", 1000).await;
    let b = Node::redis(&redis.url(), "pres:", "node-b", 1000).await;
    let mut alice = a.client("alice").await;
    join(&mut alice, "general").await;
    let mut bob = b.client("bob").await;
    let (members, _, _) = join(&mut bob, "general").await;
    assert_eq!(members, ["alice", "bob"]);
    let online = |user: &str| ServerFrame::Presence {
        room: "general".into(),
        user: user.into(),
        online: true,
    };
    let offline = |user: &str| ServerFrame::Presence {
        room: "general".into(),
        user: user.into(),
        online: false,
    };
    assert_eq!(next(&mut alice).await, online("bob"));

    bob.typing("general").await.unwrap();
    assert_eq!(
        next(&mut alice).await,
        ServerFrame::Typing {
            room: "general".into(),
            user: "bob".into()
        }
    );
    bob.leave("general").await.unwrap();
    assert_eq!(next(&mut alice).await, offline("bob"));

    // A node that dies without cleaning up: its broker registers a user, then vanishes.
    let ghost = RedisBroker::connect(common::redis_config(
        &redis.url(),
        "pres:",
        "node-ghost",
        1000,
    ))
    .await
    .unwrap();
    ghost.presence_join("general", "casper").await.unwrap();
    assert_eq!(next(&mut alice).await, online("casper"));
    drop(ghost);
    // Node A's heartbeat sweeps the expired entry (TTL 1.5 s in tests, 25 s by default).
    assert_eq!(next(&mut alice).await, offline("casper"));
    let mut dave = b.client("dave").await;
    let (members, _, _) = join(&mut dave, "general").await;
    assert_eq!(members, ["alice", "dave"]);
}

#[tokio::test]
async fn a_dropped_pubsub_connection_is_repaired_without_clients_noticing() {
    let redis = RedisServer::start().await;
    let a = Node::redis(&redis.url(), "drop:", "node-a", 1000).await;
    let b = Node::redis(&redis.url(), "drop:", "node-b", 1000).await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;
    let mut accepted = Vec::new();
    for i in 0..40 {
        if i == 10 {
            // Both nodes lose their pub/sub connection; Redis itself stays up and keeps
            // accepting messages, which the nodes must fetch from the stream.
            let reply = redis
                .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
                .await
                .unwrap();
            assert_eq!(reply, ":2\r\n", "both nodes' pub/sub connections killed");
        }
        alice
            .send_message("general", &format!("m{i}"), None)
            .await
            .unwrap();
        accepted.push(message(&mut alice).await);
    }
    let mut got = Vec::new();
    while got.len() < accepted.len() {
        got.push(message(&mut bob).await);
    }
    assert_eq!(
        got, accepted,
        "bob got every message once, in order, without reconnecting"
    );
}

/// Outcome of one send during the crash test.
enum Outcome {
    Accepted(Message),
    Unavailable,
}

#[tokio::test]
async fn redis_crash_and_restart_loses_no_accepted_message() {
    let mut redis = RedisServer::start().await;
    let a = Node::redis(&redis.url(), "crash:", "node-a", 10_000).await;
    let b = Node::redis(&redis.url(), "crash:", "node-b", 10_000).await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;

    // Bob only listens; his node must hand him every accepted message, exactly once, in order,
    // without him reconnecting.
    let listener = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), bob.next_event()).await {
                Ok(Ok(ServerFrame::Message(m))) => {
                    let done = m.body == "done";
                    got.push(m);
                    if done {
                        return got;
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(err)) => panic!("bob's connection failed: {err}"),
                Err(_) => panic!("bob stopped receiving; got {} messages", got.len()),
            }
        }
    });

    let mut outcomes = Vec::new();
    let send = async |alice: &mut skat_client::Client, i: usize| {
        let nonce = format!("n{i}");
        alice
            .send_message("general", &format!("m{i}"), Some(&nonce))
            .await
            .unwrap();
        next_where(alice, "message or error", |f| match f {
            ServerFrame::Message(m) if m.nonce.as_deref() == Some(nonce.as_str()) => {
                Ok(Outcome::Accepted(m))
            }
            ServerFrame::Error {
                code: ErrorCode::Unavailable,
                nonce: Some(n),
                ..
            } if n == nonce => Ok(Outcome::Unavailable),
            other => Err(Box::new(other)),
        })
        .await
    };
    for i in 0..50 {
        outcomes.push(send(&mut alice, i).await);
    }
    redis.kill();
    for i in 50..55 {
        outcomes.push(send(&mut alice, i).await);
    }
    assert_eq!(
        a.http_status("/readyz").await,
        503,
        "not ready while Redis is down"
    );
    redis.restart().await;
    // Send at once: some of these are accepted before the nodes' pub/sub connections are back,
    // and reach bob only through the node's gap repair from the stream.
    for i in 55..105 {
        outcomes.push(send(&mut alice, i).await);
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while a.http_status("/readyz").await != 200 || b.http_status("/readyz").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.send_message("general", "done", None).await.unwrap();
    let got = tokio::time::timeout(DEADLINE * 3, listener)
        .await
        .unwrap()
        .unwrap();

    let accepted: Vec<&Message> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Accepted(m) => Some(m),
            Outcome::Unavailable => None,
        })
        .collect();
    let refused = outcomes.len() - accepted.len();
    assert!(
        refused >= 5,
        "sends during the outage were refused with unavailable ({refused})"
    );
    assert!(
        accepted.len() >= 95,
        "sends before and after the outage were accepted ({})",
        accepted.len()
    );

    let got: Vec<&Message> = got.iter().filter(|m| m.body != "done").collect();
    let ids: Vec<MessageId> = got.iter().map(|m| m.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "bob got messages in order, without duplicates"
    );
    let got_ids: HashSet<MessageId> = got.iter().map(|m| m.id).collect();
    let lost: Vec<MessageId> = accepted
        .iter()
        .map(|m| m.id)
        .filter(|id| !got_ids.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "accepted messages never delivered to bob: {lost:?}"
    );
    // Anything else bob got was a send whose reply was lost in the crash: Redis had taken it.
    assert!(got.len() - accepted.len() <= refused);
    eprintln!(
        "sent {}, accepted {}, refused {refused}, delivered {}, lost 0",
        outcomes.len(),
        accepted.len(),
        got.len()
    );
}

#[tokio::test]
async fn joins_after_a_redis_restart_succeed_and_errors_carry_no_internals() {
    let mut redis = RedisServer::start().await;
    let node = Node::redis(&redis.url(), "restart:", "node-a", 1000).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "first").await;

    redis.kill();
    alice.join("down").await.unwrap();
    let refusal = next_where(&mut alice, "an error", |f| match f {
        ServerFrame::Error { code, message, .. } => Ok((code, message)),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(refusal.0, ErrorCode::Unavailable);
    assert!(
        !refusal.1.to_lowercase().contains("redis") && !refusal.1.contains("pipe"),
        "backend error text reached the client: {}",
        refusal.1
    );

    redis.restart().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while node.http_status("/readyz").await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The command connection died with Redis; the first command on it is retried, not failed.
    let (_, _, _) = join(&mut alice, "after").await;

    // The same when Redis drops the node's connections while staying up: the next commands
    // find them dead.
    for round in 0..5 {
        let killed = redis.command(&["CLIENT", "KILL", "TYPE", "normal"]).await;
        assert!(
            killed.as_deref().is_some_and(|r| r.starts_with(':')),
            "{killed:?}"
        );
        join(&mut alice, &format!("killed-{round}")).await;
    }
}

#[tokio::test]
async fn a_history_redis_lost_is_not_passed_off_as_recovered() {
    let redis = RedisServer::start().await;
    let node = Node::redis(&redis.url(), "epoch:", "node-a", 1000).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    let mut sent = Vec::new();
    for i in 0..5 {
        alice
            .send_message("general", &format!("m{i}"), Some(&format!("n{i}")))
            .await
            .unwrap();
        sent.push(message(&mut alice).await);
    }
    let mut bob = node.client("bob").await;
    bob.join("general").await.unwrap();
    let first_epoch = next_where(&mut bob, "joined", |f| match f {
        ServerFrame::Joined { epoch, .. } => Ok(epoch),
        other => Err(Box::new(other)),
    })
    .await
    .expect("joined carries the room's epoch");

    // Redis loses everything (as a restart without persistence would), and the room goes on.
    let flushed = redis.command(&["FLUSHALL"]).await;
    assert_eq!(flushed.as_deref(), Some("+OK\r\n"));
    let mut carol = node.client("carol").await;
    join(&mut carol, "general").await;
    for i in 5..7 {
        carol
            .send_message("general", &format!("m{i}"), Some(&format!("c{i}")))
            .await
            .unwrap();
        message(&mut carol).await;
    }

    // Dave last saw m1, in the first history: m2..m4 are gone, and he must be told.
    let mut dave = node.client("dave").await;
    dave.join_resume("general", sent[1].id, Some(&first_epoch))
        .await
        .unwrap();
    let (recovered, epoch, bodies) = next_where(&mut dave, "joined", |f| match f {
        ServerFrame::Joined {
            recovered,
            epoch,
            messages,
            ..
        } => Ok((
            recovered,
            epoch,
            messages.into_iter().map(|m| m.body).collect::<Vec<_>>(),
        )),
        other => Err(Box::new(other)),
    })
    .await;
    assert!(
        !recovered,
        "a since from a lost history recovered: {bodies:?}"
    );
    assert_ne!(
        epoch.as_deref(),
        Some(first_epoch.as_str()),
        "a new history, a new epoch"
    );
    assert_eq!(bodies, ["m5", "m6"], "the latest page of the new history");
}

/// The reproduction: a client that does not send the epoch (an older or third-party
/// one) last saw m1; Redis restarts without persistence and the room goes on. m1 is not in the
/// new history, so the join must not claim to have recovered what followed it.
#[tokio::test]
async fn a_since_without_epoch_from_a_history_redis_lost_is_not_recovered() {
    let mut redis = RedisServer::start().await;
    let node = Node::redis(&redis.url(), "noepoch:", "node-a", 1000).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    let mut sent = Vec::new();
    for i in 0..3 {
        alice
            .send_message("general", &format!("m{i}"), Some(&format!("n{i}")))
            .await
            .unwrap();
        sent.push(message(&mut alice).await);
    }

    redis.restart_empty().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while node.http_status("/readyz").await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut carol = node.client("carol").await;
    join(&mut carol, "general").await;
    for i in 3..5 {
        carol
            .send_message("general", &format!("m{i}"), Some(&format!("c{i}")))
            .await
            .unwrap();
        message(&mut carol).await;
    }

    let mut dave = node.client("dave").await;
    dave.join_since("general", sent[1].id).await.unwrap();
    let (_, messages, recovered) = common::joined(&mut dave, "general").await;
    let bodies: Vec<String> = messages.into_iter().map(|m| m.body).collect();
    assert!(!recovered, "a since Redis lost recovered: {bodies:?}");
    assert_eq!(bodies, ["m3", "m4"], "the latest page of the new history");

    // A since from the new history still recovers, without an epoch too.
    let mut erin = node.client("erin").await;
    join(&mut erin, "general").await;
    erin.history("general", None, Some(1)).await.unwrap();
    let page = next_where(&mut erin, "history", |f| match f {
        ServerFrame::History { messages, .. } => Ok(messages),
        other => Err(Box::new(other)),
    })
    .await;
    let mut frank = node.client("frank").await;
    frank.join_since("general", page[0].id).await.unwrap();
    let (_, messages, recovered) = common::joined(&mut frank, "general").await;
    assert!(recovered && messages.is_empty(), "{messages:?}");
}

#[tokio::test]
async fn clients_hear_the_shutdown_before_the_node_leaves_rooms_in_redis() {
    let redis = RedisServer::start().await;
    let slow = skat_broker::RedisConfig {
        command_timeout: Duration::from_secs(4),
        ..common::redis_config(&redis.url(), "close:", "node-a", 100)
    };
    let broker = RedisBroker::connect(slow).await.unwrap();
    let config = skat_server::ServerConfig {
        node_id: "node-a".into(),
        ..common::test_config()
    };
    let node = Node::start_with(std::sync::Arc::new(broker), config).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;

    // Redis answers nothing for 3 s: leaving the room (presence) waits that long.
    let paused = redis.command(&["CLIENT", "PAUSE", "3000", "ALL"]).await;
    assert_eq!(paused.as_deref(), Some("+OK\r\n"));
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(node.stop());
    assert_eq!(common::closed(&mut alice).await, Some(1012));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the close waited for Redis: {:?}",
        started.elapsed()
    );
    stopping.await.unwrap().unwrap();
}

/// The binary reaches Redis over TLS (`rediss://`) with the CA file `--redis-ca-cert` names, and
/// chat works through it.
#[tokio::test]
async fn the_binary_chats_through_redis_over_tls() {
    let redis = RedisServer::start_tls().await;
    let dir = TempDir::new("tls-node").unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, redis.ca_pem()).unwrap();
    let addr = common::free_addr();
    let extra = [("SKAT_REDIS_CA_CERT", ca.to_str().unwrap())];
    let _node =
        NodeProcess::spawn_with("tls-node", addr, &redis.tls_url(), dir.path(), &extra).await;
    let url = format!("ws://{addr}/ws");
    let mut alice = skat_client::Client::connect(&url, "alice").await.unwrap();
    join(&mut alice, "general").await;
    alice
        .send_message("general", "over tls", None)
        .await
        .unwrap();
    assert_eq!(message(&mut alice).await.body, "over tls");
}
