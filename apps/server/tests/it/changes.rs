//! Edits, deletions, reactions and replies over real sockets on the embedded broker: each
//! change seen by every member as exactly the documented frame (its nonce included), each
//! refusal's code in PROTOCOL.md's order, retries answered once, rate limits, and moderation.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Node, error, join, message, next_where, test_config};
use skat_broker::MemoryBroker;
use skat_client::Client;
use skat_protocol::{
    ClientFrame, Deleted, Edited, ErrorCode, Message, MessageId, Reacted, ServerFrame,
};
use skat_server::ServerConfig;
use skat_server::auth::{JwtSecret, mint_token, mint_token_moderating};

/// `edit` of `id` in `room`.
pub(crate) fn edit(room: &str, id: MessageId, body: &str, nonce: Option<&str>) -> ClientFrame {
    ClientFrame::Edit {
        room: room.into(),
        id: id.to_string(),
        body: body.into(),
        nonce: nonce.map(str::to_owned),
    }
}

/// `delete` of `id` in `room`.
pub(crate) fn delete(room: &str, id: MessageId, nonce: Option<&str>) -> ClientFrame {
    ClientFrame::Delete {
        room: room.into(),
        id: id.to_string(),
        nonce: nonce.map(str::to_owned),
    }
}

/// `react` to `id` in `room`.
pub(crate) fn react(
    room: &str,
    id: MessageId,
    emoji: &str,
    add: bool,
    nonce: Option<&str>,
) -> ClientFrame {
    ClientFrame::React {
        room: room.into(),
        id: id.to_string(),
        emoji: emoji.into(),
        add,
        nonce: nonce.map(str::to_owned),
    }
}

/// The next frame that is not presence or typing, whatever it is.
pub(crate) async fn change(client: &mut Client) -> ServerFrame {
    next_where(client, "a frame", |f| match f {
        ServerFrame::Presence { .. } | ServerFrame::Typing { .. } => Err(Box::new(f)),
        other => Ok(other),
    })
    .await
}

/// Sends `frame` and asserts that it is refused with `code`, echoing `nonce`.
async fn refused(client: &mut Client, frame: &ClientFrame, code: ErrorCode, nonce: &str) {
    client.send_frame(frame).await.unwrap();
    assert_eq!(error(client).await, (code, Some(nonce.into())), "{frame:?}");
}

/// Sends `body` as `client` to `room` and waits for its own copy, skipping what comes before.
pub(crate) async fn say(client: &mut Client, room: &str, body: &str) -> Message {
    client.send_message(room, body, Some(body)).await.unwrap();
    loop {
        if let ServerFrame::Message(m) = change(client).await
            && m.body == body
        {
            return m;
        }
    }
}

/// Proves that nothing else was queued for `client` before now: a message sent by `from`
/// afterwards is its next frame.
pub(crate) async fn nothing_before(client: &mut Client, from: &mut Client, room: &str, body: &str) {
    from.send_message(room, body, None).await.unwrap();
    match change(client).await {
        ServerFrame::Message(m) => assert_eq!(m.body, body),
        other => panic!("expected nothing before {body:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn every_member_sees_each_change_with_its_nonce() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "r").await;
    join(&mut bob, "r").await;
    let hi = say(&mut alice, "r", "hi").await;
    assert_eq!(message(&mut bob).await.id, hi.id);

    alice
        .send_frame(&edit("r", hi.id, "hello", Some("e1")))
        .await
        .unwrap();
    let ServerFrame::Edited(edited) = change(&mut alice).await else {
        panic!("no edited")
    };
    assert_eq!(
        edited,
        Edited {
            room: "r".into(),
            id: edited.id,
            target: hi.id,
            by: "alice".into(),
            body: "hello".into(),
            ts: edited.id.ms,
            nonce: Some("e1".into()),
        }
    );
    assert!(edited.id > hi.id, "a change has its own, later id");
    assert_eq!(change(&mut bob).await, ServerFrame::Edited(edited.clone()));

    bob.send_frame(&react("r", hi.id, "👍", true, Some("r1")))
        .await
        .unwrap();
    let ServerFrame::Reacted(reacted) = change(&mut bob).await else {
        panic!("no reacted")
    };
    assert_eq!(
        reacted,
        Reacted {
            room: "r".into(),
            id: reacted.id,
            target: hi.id,
            user: "bob".into(),
            emoji: "👍".into(),
            add: true,
            count: 1,
            nonce: Some("r1".into()),
        }
    );
    assert_eq!(
        change(&mut alice).await,
        ServerFrame::Reacted(reacted.clone())
    );

    // A reaction that changes nothing: answered to bob alone, with the target's id.
    bob.send_frame(&react("r", hi.id, "👍", true, Some("r2")))
        .await
        .unwrap();
    let ServerFrame::Reacted(same) = change(&mut bob).await else {
        panic!("no answer to a no-op reaction")
    };
    assert_eq!(
        (same.id, same.count, same.nonce.as_deref()),
        (hi.id, 1, Some("r2"))
    );
    // A retried edit: the original, to alice alone.
    alice
        .send_frame(&edit("r", hi.id, "hello", Some("e1")))
        .await
        .unwrap();
    assert_eq!(
        change(&mut alice).await,
        ServerFrame::Edited(edited.clone())
    );
    nothing_before(&mut alice, &mut bob, "r", "marker-1").await;
    assert_eq!(message(&mut bob).await.body, "marker-1");

    alice
        .send_frame(&delete("r", hi.id, Some("d1")))
        .await
        .unwrap();
    let ServerFrame::Deleted(deleted) = change(&mut alice).await else {
        panic!("no deleted")
    };
    assert_eq!(
        deleted,
        Deleted {
            room: "r".into(),
            id: deleted.id,
            target: hi.id,
            by: "alice".into(),
            ts: deleted.id.ms,
            nonce: Some("d1".into()),
        }
    );
    assert_eq!(change(&mut bob).await, ServerFrame::Deleted(deleted));

    // History holds the message in its current state: a tombstone.
    bob.history("r", None, None).await.unwrap();
    let ServerFrame::History { messages, .. } = change(&mut bob).await else {
        panic!("no history")
    };
    let tomb = messages.iter().find(|m| m.id == hi.id).unwrap();
    assert!(tomb.is_deleted());
    assert_eq!(tomb.body, "");
}

#[tokio::test]
async fn a_reply_carries_reply_to_and_a_bad_one_is_refused() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "r").await;
    let hi = say(&mut alice, "r", "hi").await;
    let send = |reply_to: &str, nonce: &str| ClientFrame::Send {
        room: "r".into(),
        body: "re".into(),
        nonce: Some(nonce.into()),
        reply_to: Some(reply_to.into()),
    };
    alice
        .send_frame(&send(&hi.id.to_string(), "s1"))
        .await
        .unwrap();
    let reply = message(&mut alice).await;
    assert_eq!(
        (reply.reply_to(), reply.nonce.as_deref()),
        (Some(hi.id), Some("s1"))
    );
    for (reply_to, nonce) in [("not-an-id", "s2"), ("1-0", "s3")] {
        alice.send_frame(&send(reply_to, nonce)).await.unwrap();
        assert_eq!(
            error(&mut alice).await,
            (ErrorCode::InvalidReply, Some(nonce.into())),
            "{reply_to}"
        );
    }
}

/// Each refusal, in the order of PROTOCOL.md: every frame below is valid up to the field that
/// breaks the rules, and refused with that field's code (the nonce echoed once it is valid).
#[tokio::test]
async fn refusals_come_in_the_documented_order() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "r").await;
    join(&mut bob, "r").await;
    let hi = say(&mut alice, "r", "hi").await;
    message(&mut bob).await;
    let id = hi.id.to_string();
    let long_nonce = "n".repeat(65);
    let cases: Vec<(String, ErrorCode, Option<&str>)> = vec![
        (
            format!(r#"{{"type":"edit","room":"BAD","id":"x","body":"","nonce":"{long_nonce}"}}"#),
            ErrorCode::InvalidNonce,
            None,
        ),
        (
            r#"{"type":"edit","room":"BAD","id":"x","body":"","nonce":"n1"}"#.into(),
            ErrorCode::InvalidRoom,
            Some("n1"),
        ),
        (
            r#"{"type":"delete","room":"other","id":"x","nonce":"n2"}"#.into(),
            ErrorCode::NotJoined,
            Some("n2"),
        ),
        (
            r#"{"type":"react","room":"r","id":"x","emoji":"","add":true,"nonce":"n3"}"#.into(),
            ErrorCode::InvalidId,
            Some("n3"),
        ),
        (
            format!(r#"{{"type":"edit","room":"r","id":"{id}","body":"  ","nonce":"n4"}}"#),
            ErrorCode::InvalidBody,
            Some("n4"),
        ),
        (
            format!(
                r#"{{"type":"edit","room":"r","id":"{id}","body":"{}","nonce":"n5"}}"#,
                "x".repeat(4001)
            ),
            ErrorCode::BodyTooLong,
            Some("n5"),
        ),
        (
            format!(
                r#"{{"type":"react","room":"r","id":"{id}","emoji":"ab","add":true,"nonce":"n6"}}"#
            ),
            ErrorCode::InvalidEmoji,
            Some("n6"),
        ),
        (
            r#"{"type":"edit","room":"r","id":"1-0","body":"b","nonce":"n7"}"#.into(),
            ErrorCode::NoSuchMessage,
            Some("n7"),
        ),
        (
            r#"{"type":"read","room":"r","id":"x"}"#.into(),
            ErrorCode::InvalidId,
            None,
        ),
        (
            r#"{"type":"read","room":"other","id":"1-0"}"#.into(),
            ErrorCode::NotJoined,
            None,
        ),
    ];
    for (raw, code, nonce) in cases {
        bob.send_raw(raw.clone()).await.unwrap();
        assert_eq!(
            error(&mut bob).await,
            (code, nonce.map(str::to_owned)),
            "{raw}"
        );
    }
    // Someone else's message: not_author for an edit and a delete; a reaction is any member's.
    bob.send_frame(&edit("r", hi.id, "mine now", Some("n8")))
        .await
        .unwrap();
    assert_eq!(
        error(&mut bob).await,
        (ErrorCode::NotAuthor, Some("n8".into()))
    );
    bob.send_frame(&delete("r", hi.id, Some("n9")))
        .await
        .unwrap();
    assert_eq!(
        error(&mut bob).await,
        (ErrorCode::NotAuthor, Some("n9".into()))
    );
    // A deleted message cannot be edited, reacted to or deleted again.
    alice.send_frame(&delete("r", hi.id, None)).await.unwrap();
    assert!(matches!(change(&mut alice).await, ServerFrame::Deleted(_)));
    for frame in [
        edit("r", hi.id, "b", Some("g1")),
        react("r", hi.id, "👍", true, Some("g2")),
        delete("r", hi.id, Some("g3")),
    ] {
        alice.send_frame(&frame).await.unwrap();
        assert_eq!(
            error(&mut alice).await.0,
            ErrorCode::NoSuchMessage,
            "{frame:?}"
        );
    }
}

#[tokio::test]
async fn a_message_takes_at_most_twenty_distinct_reactions() {
    let config = ServerConfig {
        limits: skat_server::Limits {
            messages_per_sec: 0,
            reactions_per_sec: 0,
            ..Default::default()
        },
        ..test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "r").await;
    let hi = say(&mut alice, "r", "hi").await;
    let emoji: Vec<String> = ('a'..='u').map(String::from).collect();
    for (i, e) in emoji.iter().take(20).enumerate() {
        alice
            .send_frame(&react("r", hi.id, e, true, None))
            .await
            .unwrap();
        let ServerFrame::Reacted(r) = change(&mut alice).await else {
            panic!("reaction {i} refused")
        };
        assert_eq!(r.count, 1);
    }
    refused(
        &mut alice,
        &react("r", hi.id, &emoji[20], true, Some("t")),
        ErrorCode::TooManyReactions,
        "t",
    )
    .await;
}

#[tokio::test]
async fn edits_and_deletes_share_the_send_budget_and_reactions_and_reads_have_their_own() {
    let config = ServerConfig {
        limits: skat_server::Limits {
            messages_per_sec: 1,
            messages_burst: 4,
            reactions_per_sec: 1,
            reactions_burst: 1,
            reads_per_sec: 1,
            reads_burst: 1,
            ..Default::default()
        },
        ..test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "r").await;
    let hi = say(&mut alice, "r", "hi").await;
    let bye = say(&mut alice, "r", "bye").await;
    // Two sends took two of four tokens: one edit and one delete pass, then both are limited.
    alice
        .send_frame(&edit("r", hi.id, "one", Some("e1")))
        .await
        .unwrap();
    assert!(matches!(change(&mut alice).await, ServerFrame::Edited(_)));
    alice
        .send_frame(&delete("r", bye.id, Some("d1")))
        .await
        .unwrap();
    assert!(matches!(change(&mut alice).await, ServerFrame::Deleted(_)));
    refused(
        &mut alice,
        &edit("r", hi.id, "two", Some("e2")),
        ErrorCode::RateLimited,
        "e2",
    )
    .await;
    refused(
        &mut alice,
        &delete("r", hi.id, Some("d2")),
        ErrorCode::RateLimited,
        "d2",
    )
    .await;
    // The bucket comes before the room's state: deleting what is already deleted is limited
    // too, not `no_such_message`.
    refused(
        &mut alice,
        &delete("r", bye.id, Some("d3")),
        ErrorCode::RateLimited,
        "d3",
    )
    .await;
    alice
        .send_frame(&react("r", hi.id, "👍", true, Some("r1")))
        .await
        .unwrap();
    assert!(matches!(change(&mut alice).await, ServerFrame::Reacted(_)));
    refused(
        &mut alice,
        &react("r", hi.id, "👎", true, Some("r2")),
        ErrorCode::RateLimited,
        "r2",
    )
    .await;
    let read = ClientFrame::Read {
        room: "r".into(),
        id: hi.id.to_string(),
    };
    alice.send_frame(&read).await.unwrap();
    assert!(matches!(change(&mut alice).await, ServerFrame::Read { .. }));
    alice.send_frame(&read).await.unwrap();
    assert_eq!(error(&mut alice).await, (ErrorCode::RateLimited, None));
    // That a bucket refills over time is the unit test of `TokenBucket` (no wall-clock wait).
}

const SECRET: &str = "a-test-secret-of-32-bytes-length";

/// Signed mode: a token's `moderate` claim lets its user delete and edit others' messages in
/// the rooms it names, and nowhere else.
#[tokio::test]
async fn a_moderator_deletes_someone_elses_message_where_a_user_may_not() {
    let secret = JwtSecret::new(SECRET).unwrap();
    let config = ServerConfig {
        jwt_secret: Some(JwtSecret::new(SECRET).unwrap()),
        ..test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let ttl = Duration::from_secs(60);
    let connect = |name: &'static str, token: String| {
        let url = node.url.clone();
        async move { Client::connect_signed(&url, name, &token).await.unwrap() }
    };
    let mut alice = connect("alice", mint_token(&secret, "alice", ttl, None).unwrap()).await;
    let mut bob = connect("bob", mint_token(&secret, "bob", ttl, None).unwrap()).await;
    let moderate = Some(vec!["support-*".into()]);
    let mod_token = mint_token_moderating(&secret, "mod", ttl, None, moderate).unwrap();
    let mut moderator = connect("mod", mod_token).await;
    for room in ["support-1", "general"] {
        join(&mut alice, room).await;
        join(&mut bob, room).await;
        join(&mut moderator, room).await;
    }
    let spam = say(&mut alice, "support-1", "spam").await;
    let elsewhere = say(&mut alice, "general", "spam too").await;
    for other in [&mut bob, &mut moderator] {
        message(other).await;
        message(other).await;
    }
    bob.send_frame(&delete("support-1", spam.id, Some("b1")))
        .await
        .unwrap();
    assert_eq!(
        error(&mut bob).await,
        (ErrorCode::NotAuthor, Some("b1".into()))
    );
    moderator
        .send_frame(&delete("general", elsewhere.id, Some("m0")))
        .await
        .unwrap();
    assert_eq!(
        error(&mut moderator).await,
        (ErrorCode::NotAuthor, Some("m0".into())),
        "not a room it moderates"
    );
    moderator
        .send_frame(&delete("support-1", spam.id, Some("m1")))
        .await
        .unwrap();
    let ServerFrame::Deleted(deleted) = change(&mut alice).await else {
        panic!("alice saw no deletion")
    };
    assert_eq!(
        (
            deleted.target,
            deleted.by.as_str(),
            deleted.nonce.as_deref()
        ),
        (spam.id, "mod", Some("m1"))
    );
}

/// The Rust client's methods for all of it, end to end.
#[tokio::test]
async fn the_rust_client_edits_deletes_reacts_replies_and_reads() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "r").await;
    join(&mut bob, "r").await;
    let hi = say(&mut alice, "r", "hi").await;
    alice.edit("r", hi.id, "hello", Some("e")).await.unwrap();
    assert!(matches!(change(&mut alice).await, ServerFrame::Edited(e) if e.body == "hello"));
    bob.send_reply("r", "re", Some("s"), hi.id).await.unwrap();
    let reply = loop {
        if let ServerFrame::Message(m) = change(&mut bob).await
            && m.from == "bob"
        {
            break m;
        }
    };
    assert_eq!(reply.reply_to(), Some(hi.id));
    bob.react("r", hi.id, "🎉", true, None).await.unwrap();
    assert!(matches!(change(&mut bob).await, ServerFrame::Reacted(r) if r.count == 1));
    bob.read("r", reply.id).await.unwrap();
    assert!(matches!(change(&mut bob).await, ServerFrame::Read { id, .. } if id == reply.id));
    alice.delete("r", hi.id, None).await.unwrap();
    loop {
        if let ServerFrame::Deleted(d) = change(&mut alice).await {
            assert_eq!(d.target, hi.id);
            break;
        }
    }
}
