//! Abuse limits and identity over real sockets: signed mode, origin check, per-connection and
//! per-address limits, timeouts, idempotent sends, and bounded memory under a flood.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{DEADLINE, Node, closed, error, join, message, next, next_where, test_config};
use futures_util::{SinkExt, StreamExt};
use skat_broker::MemoryBroker;
use skat_client::{Client, ClientError};
use skat_protocol::{ClientFrame, ErrorCode, ServerFrame, encode_client};
use skat_server::auth::JwtSecret;
use skat_server::{Limits, ServerConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn node_with(config: ServerConfig) -> Node {
    Node::start_with(Arc::new(MemoryBroker::default()), config).await
}

fn limits(limits: Limits) -> ServerConfig {
    ServerConfig {
        limits,
        ..test_config()
    }
}

#[tokio::test]
async fn signed_mode_requires_a_valid_token_for_the_name() {
    let secret = &JwtSecret::new("a-test-secret-of-32-bytes-length").unwrap();
    let node = node_with(ServerConfig {
        jwt_secret: Some(secret.clone()),
        ..test_config()
    })
    .await;

    let mut anonymous = node.raw_client().await;
    match anonymous.hello("alice").await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Unauthorized),
        other => panic!("expected unauthorized, got {other:?}"),
    }
    assert_eq!(
        closed(&mut anonymous).await,
        Some(1008),
        "refused connections are closed"
    );

    let bobs = skat_server::auth::mint_token(secret, "bob", Duration::from_secs(60), None).unwrap();
    let mut impostor = node.raw_client().await;
    impostor
        .send_frame(&ClientFrame::Hello {
            name: "alice".into(),
            token: Some(bobs),
        })
        .await
        .unwrap();
    assert_eq!(
        error(&mut impostor).await.0,
        ErrorCode::Unauthorized,
        "a token is for one name"
    );

    let forged = skat_server::auth::mint_token(
        &JwtSecret::new("another-secret-of-enough-bytes").unwrap(),
        "alice",
        Duration::from_secs(60),
        None,
    )
    .unwrap();
    let mut forger = node.raw_client().await;
    forger
        .send_frame(&ClientFrame::Hello {
            name: "alice".into(),
            token: Some(forged),
        })
        .await
        .unwrap();
    assert_eq!(error(&mut forger).await.0, ErrorCode::Unauthorized);

    let token =
        skat_server::auth::mint_token(secret, "alice", Duration::from_secs(60), None).unwrap();
    let mut alice = node.raw_client().await;
    alice
        .send_frame(&ClientFrame::Hello {
            name: "alice".into(),
            token: Some(token),
        })
        .await
        .unwrap();
    assert!(matches!(next(&mut alice).await, ServerFrame::Welcome { user, .. } if user == "alice"));
}

/// Opens a WebSocket with the given `Origin`; returns the HTTP status of a refusal, or 101.
async fn upgrade_status(node: &Node, origin: &str) -> u16 {
    let mut request = node.url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

#[tokio::test]
async fn cross_site_websocket_upgrades_are_refused() {
    let node = Node::start().await;
    assert_eq!(upgrade_status(&node, "https://evil.example").await, 403);
    assert_eq!(
        upgrade_status(&node, &format!("http://{}", node.addr)).await,
        101,
        "same host"
    );
    let open = node_with(ServerConfig {
        allowed_origins: Some(vec!["https://app.example".into()]),
        ..test_config()
    })
    .await;
    assert_eq!(
        upgrade_status(&open, "https://app.example").await,
        101,
        "allow-listed"
    );
    assert_eq!(upgrade_status(&open, "https://evil.example").await, 403);
}

#[tokio::test]
async fn rooms_per_connection_are_limited() {
    let node = node_with(limits(Limits {
        max_rooms_per_conn: 2,
        ..Limits::default()
    }))
    .await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "one").await;
    join(&mut alice, "two").await;
    alice.join("three").await.unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::TooManyRooms);
    alice.leave("two").await.unwrap();
    assert_eq!(
        next(&mut alice).await,
        ServerFrame::Left { room: "two".into() }
    );
    join(&mut alice, "three").await;
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    let node = node_with(limits(Limits {
        max_conns_per_ip: 2,
        ..Limits::default()
    }))
    .await;
    let first = node.client("a").await;
    let _second = node.client("b").await;
    match Client::connect_raw(&node.url).await {
        Err(ClientError::Rejected { status }) => {
            assert_eq!(status, 429);
        }
        other => panic!("expected 429, got {other:?}"),
    }
    drop(first);
    // The slot is released once the server sees the close.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while Client::connect_raw(&node.url).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn message_and_typing_rates_are_limited() {
    let node = node_with(limits(Limits {
        messages_per_sec: 5,
        messages_burst: 5,
        typing_per_sec: 1,
        ..Limits::default()
    }))
    .await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    for i in 0..10 {
        alice
            .send_message("general", "spam", Some(&format!("n{i}")))
            .await
            .unwrap();
    }
    let (mut accepted, mut limited) = (0, Vec::new());
    for _ in 0..10 {
        match next(&mut alice).await {
            ServerFrame::Message(_) => accepted += 1,
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                nonce,
                ..
            } => limited.push(nonce.unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((5..=6).contains(&accepted), "the burst passes ({accepted})");
    assert_eq!(
        accepted + limited.len(),
        10,
        "every refused send is reported with its nonce"
    );
    for _ in 0..3 {
        alice.typing("general").await.unwrap();
    }
    assert_eq!(error(&mut alice).await.0, ErrorCode::RateLimited);
    // The bucket refills: after a pause, sending works again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    alice
        .send_message("general", "later", Some("ok"))
        .await
        .unwrap();
    assert_eq!(message(&mut alice).await.body, "later");
}

#[tokio::test]
async fn join_and_history_requests_are_limited() {
    let node = node_with(limits(Limits {
        joins_per_sec: 1,
        max_rooms_per_conn: 5,
        ..Limits::default()
    }))
    .await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    // The burst (10 here: at least the rooms limit or 10) passes, then one per second.
    for _ in 0..15 {
        alice.history("general", None, Some(1)).await.unwrap();
    }
    let (mut pages, mut limited) = (0, 0);
    for _ in 0..15 {
        match next(&mut alice).await {
            ServerFrame::History { .. } => pages += 1,
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((9..=11).contains(&pages), "{pages} pages served");
    assert_eq!(pages + limited, 15);
}

#[tokio::test]
async fn silent_connections_time_out() {
    let node = node_with(limits(Limits {
        hello_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(600),
        ..Limits::default()
    }))
    .await;
    // No hello at all.
    let mut mute = node.raw_client().await;
    assert_eq!(closed(&mut mute).await, Some(1008));

    // A client that never reads never answers pings: closed as idle.
    let (mut deaf, _) = tokio_tungstenite::connect_async(&node.url).await.unwrap();
    let hello = ClientFrame::Hello {
        name: "deaf".into(),
        token: None,
    };
    deaf.send(WsMessage::text(encode_client(&hello)))
        .await
        .unwrap();
    // A client that keeps reading answers pings by itself and stays.
    let mut live = node.client("live").await;
    join(&mut live, "general").await;
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(50), live.next_event()).await;
    }
    // The deaf one was closed: with "idle timeout", unless its automatic pong (sent as it
    // finally reads the pings) hits the already closed socket first.
    let ending = loop {
        match tokio::time::timeout(DEADLINE, deaf.next()).await.unwrap() {
            Some(Ok(WsMessage::Close(frame))) => {
                break frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        }
    };
    assert!(
        matches!(&ending, None | Some((1001, _))),
        "closed as idle: {ending:?}"
    );
    if let Some((_, reason)) = ending {
        assert_eq!(reason, "idle timeout");
    }
    live.send_message("general", "still here", None)
        .await
        .unwrap();
    assert_eq!(message(&mut live).await.body, "still here");
}

#[tokio::test]
async fn a_retried_send_returns_the_original_instead_of_a_duplicate() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;
    alice
        .send_message("general", "once", Some("n-1"))
        .await
        .unwrap();
    let original = message(&mut alice).await;
    assert_eq!(message(&mut bob).await, original);
    // Alice did not see the confirmation (say), and retries on a new connection.
    let mut again = node.client("alice").await;
    join(&mut again, "general").await;
    again
        .send_message("general", "once", Some("n-1"))
        .await
        .unwrap();
    assert_eq!(
        message(&mut again).await,
        original,
        "the retry is answered with the original"
    );
    alice
        .send_message("general", "twice", Some("n-2"))
        .await
        .unwrap();
    assert_eq!(
        message(&mut bob).await.body,
        "twice",
        "bob never saw a duplicate"
    );
}

#[tokio::test]
async fn replies_are_bounded_in_bytes_and_page_the_rest() {
    // Room for about two and a half 1000-byte messages per reply.
    let node = node_with(ServerConfig {
        max_reply_bytes: 2800,
        ..test_config()
    })
    .await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "big").await;
    let mut sent = Vec::new();
    for i in 0..6 {
        let body = format!("{i}").repeat(1000);
        alice
            .send_message("big", &body, Some(&i.to_string()))
            .await
            .unwrap();
        sent.push(message(&mut alice).await);
    }

    // Five missed messages are more than a reply holds: the latest page instead, cut to fit.
    let mut bob = node.client("bob").await;
    bob.join_since("big", sent[0].id).await.unwrap();
    let (messages, recovered) = next_where(&mut bob, "joined", |f| match f {
        ServerFrame::Joined {
            messages,
            recovered,
            ..
        } => Ok((messages, recovered)),
        other => Err(Box::new(other)),
    })
    .await;
    assert!(!recovered);
    assert_eq!(messages, sent[4..], "the newest that fit");

    // Paging back from there: cut as well, with has_more.
    bob.history("big", Some(sent[4].id), Some(10))
        .await
        .unwrap();
    let (page, has_more) = next_where(&mut bob, "history", |f| match f {
        ServerFrame::History {
            messages, has_more, ..
        } => Ok((messages, has_more)),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(page, sent[2..4]);
    assert!(has_more);
}
