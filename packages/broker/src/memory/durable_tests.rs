//! The embedded broker on a journal: the conformance suite on files, a restart that keeps
//! everything the broker confirmed, and a failed commit that confirms nothing.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use skat_testkit::TempDir;

use super::*;
use crate::conformance::{self, change, edit, react};
use crate::durable::{DurableError, Journal};

/// A durable broker in a fresh dir, kept in `dirs` until the test ends.
fn durable(dirs: &Mutex<Vec<TempDir>>, history_len: usize) -> MemoryBroker {
    let dir = TempDir::new("durable-broker").unwrap();
    let broker = MemoryBroker::open(
        MemoryBrokerConfig {
            history_len,
            ..Default::default()
        },
        dir.path(),
    )
    .unwrap();
    lock(dirs).push(dir);
    broker
}

fn send(room: &str, from: &str, body: &str, nonce: Option<&str>) -> NewMessage {
    NewMessage {
        room: room.into(),
        from: from.into(),
        body: body.into(),
        nonce: nonce.map(Into::into),
        reply_to: None,
    }
}

#[tokio::test]
async fn durable_conformance_suite() {
    let dirs = Arc::new(Mutex::new(Vec::new()));
    conformance::run_all(|| async { durable(&dirs, 20) }, 20).await;
}

#[tokio::test]
async fn durable_conformance_of_changes() {
    let dirs = Arc::new(Mutex::new(Vec::new()));
    conformance::run_changes(|| async { durable(&dirs, 100) }, 100).await;
}

#[tokio::test]
async fn durable_conformance_of_search() {
    let dirs = Arc::new(Mutex::new(Vec::new()));
    conformance::run_search(|| async { durable(&dirs, 20) }, 20).await;
}

/// The index is in the file: a restarted broker finds what the first one stored, in its
/// current state.
#[tokio::test]
async fn durable_search_survives_a_restart() {
    let dir = TempDir::new("durable-broker").unwrap();
    let config = MemoryBrokerConfig::default();
    let (kept, edited) = {
        let broker = MemoryBroker::open(config, dir.path()).unwrap();
        let mut said = Vec::new();
        for body in ["needle one", "haystack"] {
            let published = broker.publish(send("r", "ann", body, None)).await;
            said.push(published.unwrap().into_message().unwrap().id);
        }
        conformance::changed(&broker, change("r", said[1], "ann", edit("needle two"))).await;
        (said[0], said[1])
    };
    let broker = MemoryBroker::open(config, dir.path()).unwrap();
    let page = conformance::found(&broker, "r", &["needle"], None, 10).await;
    let ids: Vec<MessageId> = page.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [edited, kept]);
    assert_eq!(page.messages[0].body, "needle two");
    assert!(
        conformance::found(&broker, "r", &["haystack"], None, 10)
            .await
            .messages
            .is_empty()
    );
}

#[tokio::test]
async fn durable_a_restart_keeps_what_was_confirmed() {
    let dir = TempDir::new("durable-broker").unwrap();
    let config = MemoryBrokerConfig {
        history_len: 5,
        ..Default::default()
    };
    let (first, epoch, history, read) = {
        let broker = MemoryBroker::open(config, dir.path()).unwrap();
        let mut ids = Vec::new();
        for i in 0..6 {
            let nonce = format!("n{i}");
            match broker
                .publish(send("r", "ann", &format!("m{i}"), Some(&nonce)))
                .await
                .unwrap()
            {
                Published::New(m) => ids.push(m.id),
                other => panic!("{other:?}"),
            }
        }
        let last = *ids.last().unwrap();
        conformance::changed(&broker, change("r", last, "ann", edit("edited"))).await;
        conformance::changed(&broker, change("r", last, "bob", react("👍", true))).await;
        let read = broker.read("r", "bob", last).await.unwrap();
        let epoch = broker.epoch("r").await.unwrap();
        let history = broker.history("r", None, 10).await.unwrap();
        (ids, epoch, history, read)
    };
    let broker = MemoryBroker::open(config, dir.path()).unwrap();
    assert_eq!(broker.epoch("r").await.unwrap(), epoch);
    assert_eq!(broker.history("r", None, 10).await.unwrap(), history);
    let newest = history.messages.last().unwrap();
    assert_eq!(newest.body, "edited");
    assert!(
        newest
            .extras
            .as_ref()
            .is_some_and(|e| !e.reactions.is_empty())
    );
    // The read marker: moving it back changes nothing.
    assert_eq!(broker.read("r", "bob", first[0]).await.unwrap(), read);
    // A retried nonce is a duplicate, answered with the stored message.
    match broker
        .publish(send("r", "ann", "m5", Some("n5")))
        .await
        .unwrap()
    {
        Published::Duplicate(m) => assert_eq!(m.id, first[5]),
        other => panic!("{other:?}"),
    }
    // A client that saw the newest entry missed nothing.
    let since = broker
        .recover("r", newest.id, Recovery::count(100))
        .await
        .unwrap();
    assert!(since.is_some(), "an id from before the restart is known");
}

#[tokio::test]
async fn durable_a_failed_commit_answers_an_error_and_keeps_nothing() {
    let dir = TempDir::new("durable-broker").unwrap();
    let journal = Journal::open_configured(dir.path(), |conn| {
        let pages: u64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        conn.pragma_update(None, "max_page_count", pages + 4)
    })
    .unwrap();
    let broker = MemoryBroker::on_journal(MemoryBrokerConfig::default(), journal).unwrap();
    let body = "x".repeat(3000);
    let mut failed = None;
    for i in 0..40 {
        let nonce = format!("n{i}");
        match broker.publish(send("r", "ann", &body, Some(&nonce))).await {
            Ok(Published::New(_)) => {}
            Err(MemoryError::Journal(DurableError::Full { .. })) => {
                failed = Some(nonce);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let nonce = failed.expect("the disk never filled");
    let history = broker.history("r", None, 100).await.unwrap();
    let stored = history.messages.len();
    assert!(stored > 0, "nothing stored");
    // The retry is not a duplicate of a message never stored: it fails (or is new) again.
    let retry = broker.publish(send("r", "ann", &body, Some(&nonce))).await;
    assert!(
        !matches!(retry, Ok(Published::Duplicate(_))),
        "a retry was answered with a message the file lacks"
    );
    drop(broker);
    let broker = MemoryBroker::open(MemoryBrokerConfig::default(), dir.path()).unwrap();
    let reloaded = broker.history("r", None, 100).await.unwrap();
    assert_eq!(reloaded.messages.len(), stored + usize::from(retry.is_ok()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_concurrent_sends_reach_subscribers_once_in_id_order_after_commit() {
    let dirs = Mutex::new(Vec::new());
    let broker = Arc::new(durable(&dirs, 1000));
    let mut sub = conformance::listen(broker.as_ref(), "r").await.unwrap();
    let senders: Vec<_> = (0..8)
        .map(|s| {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                let mut confirmed = Vec::new();
                for i in 0..50 {
                    let sent = broker
                        .publish(send("r", &format!("u{s}"), &format!("{i}"), None))
                        .await
                        .unwrap();
                    let Published::New(m) = sent else {
                        panic!("{sent:?}")
                    };
                    // Confirmed only once the history (capped at the committed id) has it.
                    let page = broker.history("r", None, 1000).await.unwrap();
                    assert!(page.messages.iter().any(|h| h.id == m.id));
                    confirmed.push(m.id);
                }
                confirmed
            })
        })
        .collect();
    let mut confirmed = Vec::new();
    for sender in senders {
        confirmed.extend(sender.await.unwrap());
    }
    confirmed.sort_unstable();
    let mut delivered = Vec::new();
    for _ in 0..confirmed.len() {
        match conformance::next_event(&mut sub).await {
            RoomEvent::Message(m) => delivered.push(m.id),
            other => panic!("{other:?}"),
        }
    }
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(delivered, confirmed);
    assert!(sub.try_recv().is_none(), "delivered twice");
}
