//! Chat behaviour over real WebSockets: delivery, history, recovery, presence, typing, nodes.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use crate::common;

use std::sync::Arc;

use common::{Node, error, join, message, next, next_where};
use skat_broker::MemoryBroker;
use skat_protocol::{ErrorCode, ServerFrame};
use skat_server::ServerConfig;

#[tokio::test]
async fn two_clients_see_the_same_message() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    assert_eq!(alice.node(), Some(node.node_id.as_str()));
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;

    alice
        .send_message("general", "hi bob", Some("c-17"))
        .await
        .unwrap();
    let echo = message(&mut alice).await;
    let got = message(&mut bob).await;
    assert_eq!(echo, got, "same message, same id, for sender and receiver");
    assert_eq!(
        (got.room.as_str(), got.from.as_str(), got.body.as_str()),
        ("general", "alice", "hi bob")
    );
    assert_eq!(
        echo.nonce.as_deref(),
        Some("c-17"),
        "the sender's confirmation carries its nonce"
    );
    assert!(got.ts > 1_700_000_000_000, "ts is Unix ms");

    bob.send_message("general", "hi alice", None).await.unwrap();
    let reply = message(&mut alice).await;
    assert_eq!(reply, message(&mut bob).await);
    assert_eq!(reply.nonce, None);
    assert!(echo.id < reply.id, "ids increase within a room");
}

#[tokio::test]
async fn one_connection_in_many_rooms() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "one").await;
    join(&mut alice, "two").await;
    alice.send_message("two", "in two", None).await.unwrap();
    let m = message(&mut alice).await;
    assert_eq!((m.room.as_str(), m.body.as_str()), ("two", "in two"));
    alice.send_message("one", "in one", None).await.unwrap();
    assert_eq!(message(&mut alice).await.room, "one");
}

#[tokio::test]
async fn late_joiner_gets_the_latest_page_and_can_page_back() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    let mut sent = Vec::new();
    for i in 0..60 {
        alice
            .send_message("general", &format!("m{i}"), None)
            .await
            .unwrap();
        sent.push(message(&mut alice).await);
    }

    let mut carol = node.client("carol").await;
    let (members, page, recovered) = join(&mut carol, "general").await;
    assert_eq!(members, ["alice", "carol"]);
    assert!(!recovered);
    assert_eq!(page, sent[10..], "the latest 50, oldest first");

    carol
        .history("general", Some(page[0].id), Some(8))
        .await
        .unwrap();
    let (messages, has_more) = next_where(&mut carol, "history", |f| match f {
        ServerFrame::History {
            messages, has_more, ..
        } => Ok((messages, has_more)),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(messages, sent[2..10]);
    assert!(has_more);
    carol
        .history("general", Some(messages[0].id), None)
        .await
        .unwrap();
    let (messages, has_more) = next_where(&mut carol, "history", |f| match f {
        ServerFrame::History {
            messages, has_more, ..
        } => Ok((messages, has_more)),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(messages, sent[..2]);
    assert!(!has_more);

    // Live messages follow the page without duplicates.
    alice.send_message("general", "live", None).await.unwrap();
    assert_eq!(message(&mut carol).await.body, "live");
}

#[tokio::test]
async fn join_since_recovers_exactly_the_missed_messages() {
    let node = Node::with_history(20).await;
    common::scenarios::recovery(&node, &node, 20).await;
}

#[tokio::test]
async fn join_since_recovers_on_another_node_sharing_the_broker() {
    let broker = Arc::new(skat_broker::MemoryBroker::new(
        skat_broker::MemoryBrokerConfig {
            history_len: 20,
            ..Default::default()
        },
    ));
    let config = |id: &str| ServerConfig {
        node_id: id.into(),
        ..common::test_config()
    };
    let a = Node::start_with(Arc::clone(&broker), config("node-a")).await;
    let b = Node::start_with(broker, config("node-b")).await;
    common::scenarios::recovery(&a, &b, 20).await;
}

#[tokio::test]
async fn leave_stops_delivery() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;

    bob.leave("general").await.unwrap();
    let left = next_where(&mut bob, "left", |f| match f {
        ServerFrame::Left { room } => Ok(room),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(left, "general");

    alice
        .send_message("general", "bob is gone", None)
        .await
        .unwrap();
    message(&mut alice).await;
    // Alice has her echo, so the room has fanned the message out. Bob's next frame must be the
    // answer to his next request, not the message.
    bob.send_message("general", "still here?", Some("n1"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut bob).await,
        ServerFrame::error(
            ErrorCode::NotJoined,
            "join the room first",
            Some("n1".into())
        )
    );
}

#[tokio::test]
async fn presence_follows_joins_leaves_and_disconnects() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let (members, _, _) = join(&mut alice, "general").await;
    assert_eq!(members, ["alice"]);

    let mut bob = node.client("bob").await;
    let (members, _, _) = join(&mut bob, "general").await;
    assert_eq!(members, ["alice", "bob"]);
    let online = ServerFrame::Presence {
        room: "general".into(),
        user: "bob".into(),
        online: true,
    };
    assert_eq!(next(&mut alice).await, online);

    bob.leave("general").await.unwrap();
    let offline = ServerFrame::Presence {
        room: "general".into(),
        user: "bob".into(),
        online: false,
    };
    assert_eq!(next(&mut alice).await, offline);

    let mut carol = node.client("carol").await;
    join(&mut carol, "general").await;
    assert_eq!(
        next(&mut alice).await,
        ServerFrame::Presence {
            room: "general".into(),
            user: "carol".into(),
            online: true
        }
    );
    drop(carol);
    assert_eq!(
        next(&mut alice).await,
        ServerFrame::Presence {
            room: "general".into(),
            user: "carol".into(),
            online: false
        }
    );
}

#[tokio::test]
async fn a_user_with_two_connections_stays_online_until_both_leave() {
    let node = Node::start().await;
    let mut watcher = node.client("watcher").await;
    join(&mut watcher, "general").await;
    let mut phone = node.client("dana").await;
    let mut laptop = node.client("dana").await;
    join(&mut phone, "general").await;
    join(&mut laptop, "general").await;
    assert_eq!(
        next(&mut watcher).await,
        ServerFrame::Presence {
            room: "general".into(),
            user: "dana".into(),
            online: true
        }
    );
    drop(phone);
    // Still online: the next frame the watcher sees is the laptop's message, not an offline.
    laptop
        .send_message("general", "still here", None)
        .await
        .unwrap();
    assert_eq!(
        next(&mut watcher).await,
        ServerFrame::Message(message(&mut laptop).await)
    );
    drop(laptop);
    assert_eq!(
        next(&mut watcher).await,
        ServerFrame::Presence {
            room: "general".into(),
            user: "dana".into(),
            online: false
        }
    );
}

#[tokio::test]
async fn typing_reaches_others_but_not_the_typist() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;
    assert!(matches!(
        next(&mut alice).await,
        ServerFrame::Presence { .. }
    ));

    bob.typing("general").await.unwrap();
    assert_eq!(
        next(&mut alice).await,
        ServerFrame::Typing {
            room: "general".into(),
            user: "bob".into()
        }
    );
    bob.send_message("general", "done typing", None)
        .await
        .unwrap();
    // Bob's own typing frame was skipped: his next frame is his message.
    assert!(matches!(next(&mut bob).await, ServerFrame::Message(m) if m.body == "done typing"));
}

#[tokio::test]
async fn two_nodes_sharing_a_broker_act_as_one() {
    let broker = Arc::new(MemoryBroker::default());
    let a = Node::start_with(
        Arc::clone(&broker),
        ServerConfig {
            node_id: "node-a".into(),
            ..common::test_config()
        },
    )
    .await;
    let b = Node::start_with(
        broker,
        ServerConfig {
            node_id: "node-b".into(),
            ..common::test_config()
        },
    )
    .await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    assert_eq!((alice.node(), bob.node()), (Some("node-a"), Some("node-b")));
    join(&mut alice, "general").await;
    let (members, _, _) = join(&mut bob, "general").await;
    assert_eq!(members, ["alice", "bob"]);
    assert_eq!(
        next(&mut alice).await,
        ServerFrame::Presence {
            room: "general".into(),
            user: "bob".into(),
            online: true
        }
    );

    alice
        .send_message("general", "across nodes", Some("x"))
        .await
        .unwrap();
    let on_a = message(&mut alice).await;
    assert_eq!(on_a, message(&mut bob).await);
    bob.send_message("general", "back", None).await.unwrap();
    assert_eq!(message(&mut bob).await, message(&mut alice).await);
}

#[tokio::test]
async fn errors_for_requests_in_the_wrong_state() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    alice.history("general", None, None).await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::NotJoined);
    alice.typing("general").await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::NotJoined);
    alice.leave("general").await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::NotJoined);
    join(&mut alice, "general").await;
    alice.join("general").await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::AlreadyJoined);
}
