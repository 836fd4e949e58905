//! Replies are bounded by the bytes they take on the wire (`--max-reply-bytes`), over real
//! sockets: `joined` and `history` frames, and the API's history, carrying bodies of control
//! characters, whose JSON is six times their text. The bound: a reply is at most
//! `--max-reply-bytes` longer than its envelope (the same reply without messages), unless it
//! carries a single message larger than the bound on its own.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;

use common::http::request;
use common::{DEADLINE, Node, join, message, test_config};
use skat_broker::MemoryBroker;
use skat_client::Client;
use skat_protocol::api::{MessagesPage, decode_api, encode_api};
use skat_protocol::{Message, MessageId, ServerFrame, decode_server, encode_server};
use skat_server::ServerConfig;
use skat_server::auth::ApiKey;

const KEY: &str = "an-api-key-for-the-tests";

/// A node whose replies hold at most `max_reply_bytes` of messages, with the server API on.
async fn node(max_reply_bytes: usize) -> Node {
    let config = ServerConfig {
        max_reply_bytes,
        api_key: Some(ApiKey::new(KEY).unwrap()),
        ..test_config()
    };
    Node::start_with(Arc::new(MemoryBroker::default()), config).await
}

/// Alice sends `n` messages of `chars` U+0001 characters each to `room`; returns them.
async fn send_escapes(alice: &mut Client, room: &str, n: usize, chars: usize) -> Vec<Message> {
    let mut sent = Vec::new();
    for i in 0..n {
        let body = "\u{1}".repeat(chars);
        alice
            .send_message(room, &body, Some(&i.to_string()))
            .await
            .unwrap();
        sent.push(message(alice).await);
    }
    sent
}

/// The next `joined` or `history` frame, as sent and decoded (presence and typing skipped).
async fn reply(client: &mut Client) -> (String, ServerFrame) {
    loop {
        let text = tokio::time::timeout(DEADLINE, client.next_text())
            .await
            .expect("no reply in time")
            .unwrap();
        match decode_server(&text).unwrap() {
            frame @ (ServerFrame::Joined { .. } | ServerFrame::History { .. }) => {
                return (text, frame);
            }
            ServerFrame::Presence { .. } | ServerFrame::Typing { .. } => {}
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// The ids of `messages`: what failures print instead of their (kilobytes of) bodies.
fn ids(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}

/// Checks that the reply `text` stays within `bound` bytes beyond its envelope (unless it
/// carries one message alone); returns its messages.
fn within(text: &str, mut frame: ServerFrame, bound: usize) -> Vec<Message> {
    assert!(encode_server(&frame) == text, "frames re-encode as sent");
    let (ServerFrame::Joined { messages, .. } | ServerFrame::History { messages, .. }) = &mut frame
    else {
        unreachable!("reply() returns replies only")
    };
    let messages = std::mem::take(messages);
    let envelope = encode_server(&frame).len();
    assert!(
        text.len() <= envelope + bound || messages.len() == 1,
        "{} messages take {} bytes beyond the envelope, over {bound}",
        messages.len(),
        text.len() - envelope
    );
    messages
}

#[tokio::test]
async fn replies_are_bounded_by_their_encoded_bytes() {
    // About 6 KB per message on the wire (1.1 KB raw): four fit in a reply, seven would raw.
    const BOUND: usize = 30_000;
    let node = node(BOUND).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "escapes").await;
    let sent = send_escapes(&mut alice, "escapes", 10, 1000).await;

    // Nine missed fit raw, not encoded: the latest page instead, cut to what fits.
    let mut bob = node.client("bob").await;
    bob.join_since("escapes", sent[0].id).await.unwrap();
    let (text, frame) = reply(&mut bob).await;
    let ServerFrame::Joined { recovered, .. } = frame else {
        panic!("expected joined, got {frame:?}")
    };
    assert!(!recovered, "nine messages are more than a reply holds");
    let kept = within(&text, frame, BOUND);
    assert_eq!(ids(&kept), ids(&sent[6..]), "the newest that fit");
    assert!(kept == sent[6..]);

    // Paging back: six older messages, cut to the four newest.
    bob.history("escapes", Some(sent[6].id), Some(10))
        .await
        .unwrap();
    let (text, frame) = reply(&mut bob).await;
    let ServerFrame::History { has_more, .. } = frame else {
        panic!("expected history, got {frame:?}")
    };
    assert!(has_more);
    let kept = within(&text, frame, BOUND);
    assert_eq!(ids(&kept), ids(&sent[2..6]));
    assert!(kept == sent[2..6]);

    // The API's history: the same bound.
    let auth = format!("Authorization: Bearer {KEY}\r\n");
    let response = request(
        node.addr,
        "GET",
        "/api/v1/rooms/escapes/messages?limit=10",
        &auth,
        "",
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text());
    let text = response.text();
    let mut page: MessagesPage = decode_api(&text).unwrap();
    assert!(encode_api(&page) == text, "pages re-encode as sent");
    let messages = std::mem::take(&mut page.messages);
    assert!(page.has_more);
    assert!(
        text.len() <= encode_api(&page).len() + BOUND,
        "{}",
        text.len()
    );
    assert_eq!(ids(&messages), ids(&sent[6..]));
    assert!(messages == sent[6..]);
}

#[tokio::test]
async fn a_message_larger_than_the_bound_is_still_delivered_alone() {
    // 4000 control characters are 24 KB on the wire: more than the whole bound.
    const BOUND: usize = 10_000;
    let node = node(BOUND).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "huge").await;
    let sent = send_escapes(&mut alice, "huge", 3, 4000).await;

    let mut bob = node.client("bob").await;
    bob.join("huge").await.unwrap();
    let (text, frame) = reply(&mut bob).await;
    assert_eq!(ids(&within(&text, frame, BOUND)), ids(&sent[2..]));

    // Each page back holds the next one, alone, until the first.
    for i in (0..2).rev() {
        bob.history("huge", Some(sent[i + 1].id), None)
            .await
            .unwrap();
        let (text, frame) = reply(&mut bob).await;
        let ServerFrame::History { has_more, .. } = frame else {
            panic!("expected history, got {frame:?}")
        };
        assert_eq!(has_more, i > 0);
        assert_eq!(ids(&within(&text, frame, BOUND)), ids(&sent[i..=i]));
    }
}
