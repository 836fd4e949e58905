//! Messages people change, on two nodes sharing one real `redis-server`: an edit, a deletion
//! and a reaction made on one node reach the members on the other as the same frames, and a
//! `read` on one node reaches the user's connections on both; a resume after Redis lost the
//! room's history (changes included) is not recovered; a member of a SIGKILLed node resumes on
//! the other with each change it missed once.
//!
//! The nodes get the broker's default command timeout (2 s) rather than the tests' usual
//! 500 ms, and a longer presence TTL: every step here awaits a frame the server guarantees
//! (each client's own frames in order, room events once subscribed, which `joined` implies),
//! so the one way left to fail under load was a command or pub/sub PING timing out: a change
//! answered `unavailable`, or a `read` notice (at most once) lost while the node's pub/sub
//! connection was made again.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::changes::{change, delete, edit, react, say};
use crate::common;
use crate::reads::{joined_frame, marker, read};

use common::process::NodeProcess;
use common::{Node, join, message};
use skat_broker::{RedisBroker, RedisConfig};
use skat_client::Client;
use skat_protocol::{Change, ServerFrame};
use skat_server::ServerConfig;
use skat_testkit::{RedisServer, TempDir};

/// A node named `id` on `redis`, keys under `prefix`, patient with a loaded machine.
async fn node(redis: &RedisServer, prefix: &str, id: &str) -> Node {
    let broker = RedisConfig {
        command_timeout: Duration::from_secs(2),
        presence_ttl: Duration::from_secs(5),
        ..common::redis_config(&redis.url(), prefix, id, 1000)
    };
    let broker = RedisBroker::connect(broker).await.unwrap();
    let config = ServerConfig {
        node_id: id.to_owned(),
        ..common::test_config()
    };
    Node::start_with(Arc::new(broker), config).await
}

#[tokio::test]
async fn changes_made_on_one_node_reach_the_other() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "chg:", "node-a").await;
    let b = node(&redis, "chg:", "node-b").await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    join(&mut alice, "r").await;
    join(&mut bob, "r").await;
    let hi = say(&mut alice, "r", "hi").await;
    assert_eq!(message(&mut bob).await.id, hi.id);

    alice
        .send_frame(&edit("r", hi.id, "hello", Some("e1")))
        .await
        .unwrap();
    let edited = change(&mut alice).await;
    assert!(
        matches!(&edited, ServerFrame::Edited(e) if e.body == "hello"),
        "{edited:?}"
    );
    assert_eq!(change(&mut bob).await, edited, "the same frame on node b");

    bob.send_frame(&react("r", hi.id, "👍", true, Some("r1")))
        .await
        .unwrap();
    let reacted = change(&mut bob).await;
    assert!(
        matches!(&reacted, ServerFrame::Reacted(r) if r.count == 1),
        "{reacted:?}"
    );
    assert_eq!(
        change(&mut alice).await,
        reacted,
        "the same frame on node a"
    );

    alice
        .send_frame(&delete("r", hi.id, Some("d1")))
        .await
        .unwrap();
    let deleted = change(&mut alice).await;
    assert!(
        matches!(&deleted, ServerFrame::Deleted(d) if d.target == hi.id),
        "{deleted:?}"
    );
    assert_eq!(change(&mut bob).await, deleted);

    // Node b's history shows the tombstone Redis keeps.
    bob.history("r", None, None).await.unwrap();
    let ServerFrame::History { messages, .. } = change(&mut bob).await else {
        panic!("no history")
    };
    assert!(
        messages
            .iter()
            .any(|m| m.id == hi.id && m.is_deleted() && m.body.is_empty())
    );
}

#[tokio::test]
async fn a_read_reaches_the_users_connections_on_both_nodes() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "rd:", "node-a").await;
    let b = node(&redis, "rd:", "node-b").await;
    let mut phone = a.client("alice").await;
    let mut laptop = b.client("alice").await;
    let mut bob = b.client("bob").await;
    join(&mut phone, "r").await;
    join(&mut laptop, "r").await;
    join(&mut bob, "r").await;
    let first = say(&mut bob, "r", "one").await;
    say(&mut bob, "r", "two").await;
    read(&mut phone, "r", first.id).await;
    let expected = ("r".to_owned(), first.id, 1);
    assert_eq!(marker(&mut phone).await, expected);
    assert_eq!(marker(&mut laptop).await, expected, "on the other node");
}

/// A client that was away resumes on the other node: the changes it missed to older messages
/// come once in `joined`, newer messages in their current state, and `joined` carries the
/// marker it set on the first node.
#[tokio::test]
async fn a_resume_on_the_other_node_gets_each_change_once() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "res:", "node-a").await;
    let b = node(&redis, "res:", "node-b").await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    join(&mut alice, "r").await;
    join(&mut bob, "r").await;
    let old = say(&mut alice, "r", "old").await;
    message(&mut bob).await;
    read(&mut alice, "r", old.id).await;
    marker(&mut alice).await;
    drop(alice);

    bob.send_frame(&react("r", old.id, "👍", true, None))
        .await
        .unwrap();
    change(&mut bob).await;
    let newer = say(&mut bob, "r", "newer").await;

    let mut again = b.client("alice").await;
    again.join_since("r", old.id).await.unwrap();
    let frame = joined_frame(&mut again).await;
    let ServerFrame::Joined {
        messages,
        recovered,
        changes,
        read,
        unread,
        ..
    } = frame
    else {
        unreachable!()
    };
    assert!(recovered);
    assert_eq!(
        messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        [newer.id]
    );
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].target(), Some(old.id));
    assert_eq!((read, unread), (Some(old.id), 1));
}

/// Redis restarts without persistence after a message was edited: the room's history, its
/// changes with it, is gone, so a client resuming after the edit is told `recovered: false`
/// (with the new history's latest page and no changes), never handed changes it cannot place.
#[tokio::test]
async fn a_resume_after_redis_lost_the_changes_is_not_recovered() {
    let mut redis = RedisServer::start().await;
    let a = node(&redis, "lost:", "node-a").await;
    let mut alice = a.client("alice").await;
    join(&mut alice, "r").await;
    let hi = say(&mut alice, "r", "hi").await;
    alice
        .send_frame(&edit("r", hi.id, "hello", Some("e1")))
        .await
        .unwrap();
    let ServerFrame::Edited(edited) = change(&mut alice).await else {
        panic!("no edit")
    };

    redis.restart_empty().await;
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    while a.http_status("/readyz").await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bob = a.client("bob").await;
    join(&mut bob, "r").await;
    let after = say(&mut bob, "r", "after").await;

    let mut again = a.client("alice").await;
    again.join_since("r", edited.id).await.unwrap();
    let frame = joined_frame(&mut again).await;
    let ServerFrame::Joined {
        messages,
        recovered,
        changes,
        ..
    } = frame
    else {
        unreachable!()
    };
    assert!(!recovered, "a since Redis lost recovered: {messages:?}");
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(
        messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        [after.id],
        "the latest page of the new history"
    );
}

/// Node a is SIGKILLed with a member connected: an edit it had confirmed just before is in
/// Redis (node b's member gets it), and the member, away while a reaction and a deletion happen
/// on node b, resumes there with its `since` and gets each of them once (`recovered: true`).
#[tokio::test]
async fn a_member_of_a_killed_node_resumes_on_the_other_with_every_change_once() {
    let dir = TempDir::new("changes-kill").unwrap();
    let redis = RedisServer::start().await;
    let mut a = NodeProcess::spawn("node-a", common::free_addr(), &redis.url(), dir.path()).await;
    let b = NodeProcess::spawn("node-b", common::free_addr(), &redis.url(), dir.path()).await;
    let url = |node: &NodeProcess| format!("ws://{}/ws", node.addr);
    let mut carol = Client::connect(&url(&a), "carol").await.unwrap();
    let mut bob = Client::connect(&url(&b), "bob").await.unwrap();
    join(&mut carol, "r").await;
    join(&mut bob, "r").await;
    let first = say(&mut carol, "r", "first").await;
    assert_eq!(message(&mut bob).await.id, first.id);
    let second = say(&mut bob, "r", "second").await;
    assert_eq!(message(&mut carol).await.id, second.id);
    carol
        .send_frame(&edit("r", first.id, "first!", Some("kill-e1")))
        .await
        .unwrap();
    let ServerFrame::Edited(edited) = change(&mut carol).await else {
        panic!("no edit")
    };

    a.kill();
    assert_eq!(
        change(&mut bob).await,
        ServerFrame::Edited(edited.clone()),
        "confirmed on a, so stored: b's member gets it"
    );
    bob.send_frame(&react("r", first.id, "👍", true, Some("kill-r1")))
        .await
        .unwrap();
    let reacted = change(&mut bob).await;
    bob.send_frame(&delete("r", second.id, Some("kill-d1")))
        .await
        .unwrap();
    let deleted = change(&mut bob).await;

    let mut again = Client::connect(&url(&b), "carol").await.unwrap();
    again.join_since("r", edited.id).await.unwrap();
    let ServerFrame::Joined {
        messages,
        recovered,
        changes,
        ..
    } = joined_frame(&mut again).await
    else {
        unreachable!()
    };
    assert!(recovered);
    assert!(messages.is_empty(), "{messages:?}");
    let told: Vec<ServerFrame> = changes
        .into_iter()
        .map(|change| match change {
            Change::Edited(c) => ServerFrame::Edited(c),
            Change::Deleted(c) => ServerFrame::Deleted(c),
            Change::Reacted(c) => ServerFrame::Reacted(c),
            Change::Unknown => panic!("an unknown change"),
        })
        .collect();
    assert_eq!(
        told,
        [reacted, deleted],
        "each missed change once, in order"
    );
}
