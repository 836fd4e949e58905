//! The embedded node on a data dir, as real processes (issue 23): what a node confirmed survives
//! a `kill -9` and an orderly restart, with the room's epoch, so clients resume with
//! `recovered: true`; retries across a crash are stored at most once. The failures (a
//! read-only, full, corrupt or locked dir) are in `durable_failures.rs`.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use skat_client::Client;
use skat_protocol::{Change, Message, MessageId, ServerFrame};
use skat_testkit::TempDir;
use tokio::sync::Notify;

use crate::common::process::NodeProcess;
use crate::common::{self, DEADLINE, message, next_where};

const ROOM: &str = "durable";

/// Settings of the kill -9 test's node: no rate limit in the way, nothing trimmed.
const UNLIMITED: [(&str, &str); 3] = [
    ("SKAT_MESSAGES_PER_SEC", "100000"),
    ("SKAT_MESSAGES_BURST", "100000"),
    ("SKAT_HISTORY_LEN", "10000"),
];

/// The `ws://` URL of a node process.
pub(crate) fn ws_url(node: &NodeProcess) -> String {
    format!("ws://{}/ws", node.addr)
}

/// What `joined` says: (messages, recovered, epoch, changes, read marker).
pub(crate) struct Joined {
    pub(crate) messages: Vec<Message>,
    pub(crate) recovered: bool,
    pub(crate) epoch: Option<String>,
    pub(crate) changes: Vec<Change>,
    pub(crate) read: Option<MessageId>,
}

/// Waits for the `joined` of `room`.
pub(crate) async fn joined(client: &mut Client, room: &str) -> Joined {
    next_where(client, "joined", |f| match f {
        ServerFrame::Joined {
            room: r,
            messages,
            recovered,
            epoch,
            changes,
            read,
            ..
        } if r == room => Ok(Joined {
            messages,
            recovered,
            epoch,
            changes,
            read,
        }),
        other => Err(Box::new(other)),
    })
    .await
}

/// Every message of `room` a new client pages through in its history, oldest first.
pub(crate) async fn all_history(url: &str, room: &str) -> Vec<Message> {
    let mut client = Client::connect(url, "auditor").await.unwrap();
    client.join(room).await.unwrap();
    joined(&mut client, room).await;
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        client.history(room, before, Some(100)).await.unwrap();
        let (page, has_more) = next_where(&mut client, "history", |f| match f {
            ServerFrame::History {
                messages, has_more, ..
            } => Ok((messages, has_more)),
            other => Err(Box::new(other)),
        })
        .await;
        before = page.first().map(|m| m.id);
        let done = !has_more || page.is_empty();
        pages.push(page);
        if done {
            break;
        }
    }
    pages.into_iter().rev().flatten().collect()
}

/// Asserts that `history`'s ids strictly increase (so none is there twice).
pub(crate) fn assert_increasing(history: &[Message]) {
    for pair in history.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "ids out of order or repeated: {} then {}",
            pair[0].id,
            pair[1].id
        );
    }
}

/// The body a sender gives the message of `nonce`, so that history tells whose it is.
fn body_of(nonce: &str) -> String {
    format!("body of {nonce}")
}

/// Messages in flight per sender.
const WINDOW: usize = 16;
/// Confirmations (all senders) after which the node is killed.
const KILL_AT: usize = 300;
/// Sends per sender at most (the kill comes long before).
const MAX_SENDS: usize = 1000;

/// What a sender of the kill -9 test did: its nonces in the order sent, and the ids confirmed.
#[derive(Debug, Default)]
struct Sent {
    nonces: Vec<String>,
    confirmed: HashMap<String, MessageId>,
}

/// Sends `name`'s messages (nonces `name-0`, `name-1`...), `WINDOW` unconfirmed at most, until
/// its connection fails; tells `enough` when the senders' confirmations reach `KILL_AT`.
async fn send_until_cut(
    url: String,
    name: String,
    total: Arc<AtomicUsize>,
    enough: Arc<Notify>,
) -> Sent {
    let mut client = Client::connect(&url, &name).await.unwrap();
    client.join(ROOM).await.unwrap();
    joined(&mut client, ROOM).await;
    let mut sent = Sent::default();
    loop {
        while sent.nonces.len() - sent.confirmed.len() < WINDOW && sent.nonces.len() < MAX_SENDS {
            let nonce = format!("{name}-{}", sent.nonces.len());
            if client
                .send_message(ROOM, &body_of(&nonce), Some(&nonce))
                .await
                .is_err()
            {
                return sent;
            }
            sent.nonces.push(nonce);
        }
        let frame = match tokio::time::timeout(DEADLINE, client.next_event()).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => return sent,
            Err(_) => panic!("{name}: nothing within {DEADLINE:?}"),
        };
        match frame {
            ServerFrame::Message(m) if m.from == name => {
                let nonce = m.nonce.expect("a sender's echo carries its nonce");
                sent.confirmed.insert(nonce, m.id);
                if total.fetch_add(1, Ordering::Relaxed) + 1 == KILL_AT {
                    enough.notify_one();
                }
            }
            ServerFrame::Error { code, message, .. } => panic!("{name}: {code:?} {message}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_confirmed_message_and_retries_store_once() {
    let data = TempDir::new("durable-kill").unwrap();
    let logs = TempDir::new("durable-kill-logs").unwrap();
    let addr = common::free_addr();
    let mut node =
        NodeProcess::embedded("kill-a", addr, data.path(), logs.path(), &UNLIMITED).await;
    let url = ws_url(&node);
    let mut watcher = Client::connect(&url, "watcher").await.unwrap();
    watcher.join(ROOM).await.unwrap();
    let epoch = joined(&mut watcher, ROOM).await.epoch;
    assert!(epoch.is_some(), "a room has an epoch");

    let total = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let (url, total, enough) = (url.clone(), Arc::clone(&total), Arc::clone(&enough));
            tokio::spawn(send_until_cut(url, format!("s{i}"), total, enough))
        })
        .collect();
    tokio::time::timeout(DEADLINE, enough.notified())
        .await
        .expect("the senders never got enough confirmations");
    node.kill();
    let mut sent = Vec::new();
    for sender in senders {
        sent.push(
            tokio::time::timeout(DEADLINE, sender)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let in_flight: usize = sent
        .iter()
        .map(|s| s.nonces.len() - s.confirmed.len())
        .sum();
    eprintln!(
        "killed with {} confirmed, {in_flight} unconfirmed",
        total.load(Ordering::Relaxed)
    );

    let node = NodeProcess::embedded("kill-b", addr, data.path(), logs.path(), &UNLIMITED).await;
    let mut watcher = Client::connect(&url, "watcher").await.unwrap();
    watcher.join(ROOM).await.unwrap();
    assert_eq!(
        joined(&mut watcher, ROOM).await.epoch,
        epoch,
        "the epoch changed"
    );
    let history = all_history(&url, ROOM).await;
    assert_increasing(&history);
    let stored: HashMap<MessageId, &str> =
        history.iter().map(|m| (m.id, m.body.as_str())).collect();
    for s in &sent {
        for (nonce, id) in &s.confirmed {
            assert_eq!(
                stored.get(id).copied(),
                Some(body_of(nonce).as_str()),
                "confirmed {nonce} as {id}, missing after the restart"
            );
        }
    }
    let before: HashMap<String, MessageId> =
        history.iter().map(|m| (m.body.clone(), m.id)).collect();

    // Each sender retries what it was not told: a duplicate of what the file holds, or new.
    for (i, s) in sent.iter().enumerate() {
        let name = format!("s{i}");
        let mut client = Client::connect(&url, &name).await.unwrap();
        client.join(ROOM).await.unwrap();
        joined(&mut client, ROOM).await;
        let retries: Vec<&String> = s
            .nonces
            .iter()
            .filter(|n| !s.confirmed.contains_key(*n))
            .collect();
        for nonce in &retries {
            client
                .send_message(ROOM, &body_of(nonce), Some(nonce))
                .await
                .unwrap();
        }
        let mut answered = HashSet::new();
        while answered.len() < retries.len() {
            let m = message(&mut client).await;
            if m.from != name {
                continue;
            }
            let nonce = m.nonce.clone().unwrap();
            if let Some(id) = before.get(&m.body) {
                assert_eq!(m.id, *id, "{nonce} was stored before: a duplicate, same id");
            }
            assert!(answered.insert(nonce.clone()), "{nonce} answered twice");
        }
    }
    let after = all_history(&url, ROOM).await;
    assert_increasing(&after);
    let mut bodies = HashSet::new();
    for m in &after {
        assert!(bodies.insert(m.body.as_str()), "{} stored twice", m.body);
    }
    let retried: usize = sent.iter().map(|s| s.nonces.len()).sum();
    assert_eq!(after.len(), retried, "every nonce sent is stored once");
    drop(node);
}

/// The change of `changes` with id after `since`, summed up: (kind, target).
fn kinds(changes: &[Change]) -> Vec<(&'static str, MessageId)> {
    changes
        .iter()
        .map(|c| match c {
            Change::Edited(e) => ("edited", e.target),
            Change::Deleted(d) => ("deleted", d.target),
            Change::Reacted(r) => ("reacted", r.target),
            Change::Unknown => ("unknown", MessageId { ms: 0, seq: 0 }),
        })
        .collect()
}

/// The next frame `pick` takes on `client`.
async fn wait_for<T>(
    client: &mut Client,
    what: &str,
    pick: impl Fn(ServerFrame) -> Option<T>,
) -> T {
    loop {
        let frame = tokio::time::timeout(DEADLINE, client.next_event())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
            .unwrap();
        if let Some(found) = pick(frame) {
            return found;
        }
    }
}

/// Sends `body` (its own nonce) and waits for its confirmation.
async fn say(client: &mut Client, body: &str) -> Message {
    client.send_message(ROOM, body, Some(body)).await.unwrap();
    message(client).await
}

#[tokio::test]
async fn an_orderly_restart_keeps_history_changes_and_read_markers_for_clients_resuming() {
    let data = TempDir::new("durable-orderly").unwrap();
    let logs = TempDir::new("durable-orderly-logs").unwrap();
    let addr = common::free_addr();
    let mut node = NodeProcess::embedded("orderly-a", addr, data.path(), logs.path(), &[]).await;
    let url = ws_url(&node);
    let mut alice = Client::connect(&url, "alice").await.unwrap();
    alice.join(ROOM).await.unwrap();
    joined(&mut alice, ROOM).await;
    let mut bob = Client::connect(&url, "bob").await.unwrap();
    bob.join(ROOM).await.unwrap();
    let epoch = joined(&mut bob, ROOM).await.epoch;

    let one = say(&mut alice, "one").await;
    let two = say(&mut alice, "two").await;
    assert_eq!(message(&mut bob).await.id, one.id);
    assert_eq!(message(&mut bob).await.id, two.id);
    bob.read(ROOM, one.id).await.unwrap();
    wait_for(&mut bob, "read", |f| {
        matches!(f, ServerFrame::Read { .. }).then_some(())
    })
    .await;
    bob.close().await.unwrap();

    // While bob is away: a message, an edit, a deletion, a reaction; then the restart.
    let three = say(&mut alice, "three").await;
    alice
        .edit(ROOM, one.id, "one, edited", Some("e1"))
        .await
        .unwrap();
    wait_for(&mut alice, "edited", |f| {
        matches!(f, ServerFrame::Edited(_)).then_some(())
    })
    .await;
    alice.delete(ROOM, two.id, Some("d2")).await.unwrap();
    wait_for(&mut alice, "deleted", |f| {
        matches!(f, ServerFrame::Deleted(_)).then_some(())
    })
    .await;
    alice
        .react(ROOM, three.id, "👍", true, Some("r3"))
        .await
        .unwrap();
    wait_for(&mut alice, "reacted", |f| {
        matches!(f, ServerFrame::Reacted(_)).then_some(())
    })
    .await;
    drop(alice);
    let status = node.terminate().await;
    assert!(status.success(), "SIGTERM: {status}");

    let _node = NodeProcess::embedded("orderly-b", addr, data.path(), logs.path(), &[]).await;
    let mut alice = Client::connect(&url, "alice").await.unwrap();
    alice.join(ROOM).await.unwrap();
    assert_eq!(
        joined(&mut alice, ROOM).await.epoch,
        epoch,
        "the epoch changed"
    );
    let four = say(&mut alice, "four").await;

    let mut bob = Client::connect(&url, "bob").await.unwrap();
    bob.join_resume(ROOM, two.id, epoch.as_deref())
        .await
        .unwrap();
    let resumed = joined(&mut bob, ROOM).await;
    assert!(
        resumed.recovered,
        "bob's since is answered after the restart"
    );
    let missed: Vec<_> = resumed
        .messages
        .iter()
        .map(|m| (m.id, m.body.as_str()))
        .collect();
    assert_eq!(missed, [(three.id, "three"), (four.id, "four")]);
    // Changes to messages up to `since` are listed; a newer one's come in its current state.
    assert_eq!(
        kinds(&resumed.changes),
        [("edited", one.id), ("deleted", two.id)]
    );
    let reactions = resumed.messages[0].extras.as_ref().map(|e| &e.reactions);
    let counted: Vec<_> = reactions
        .into_iter()
        .flatten()
        .map(|r| (r.emoji.as_str(), r.count))
        .collect();
    assert_eq!(counted, [("👍", 1)], "the reaction to three");
    assert_eq!(resumed.read, Some(one.id), "bob's read marker");
    // The current state too: the edit in place, the deleted message's body gone.
    let history = all_history(&url, ROOM).await;
    let shown: HashMap<MessageId, &str> = history.iter().map(|m| (m.id, m.body.as_str())).collect();
    assert_eq!(shown.get(&one.id).copied(), Some("one, edited"));
    assert_ne!(
        shown.get(&two.id).copied(),
        Some("two"),
        "a deleted body is served"
    );
}
