//! The embedded broker on a journal: the conformance suite on files, a restart that keeps
//! everything the broker confirmed, and a failed commit that confirms nothing.

#![allow(clippy::unwrap_used)]

use std::future::Future as _;
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

/// Queues `new` as `publish` does, without waiting: its writes in flight.
fn queue(broker: &MemoryBroker, log: &RoomLog, new: NewMessage) -> (Published, Option<Queued>) {
    broker.publish_locked(log, new).unwrap()
}

/// A message memory holds as committed but the file lacks (as if its write had been lost), so a
/// change to it fails in the journal.
fn forge(log: &RoomLog, body: &str) -> MessageId {
    let mut state = lock(&log.state);
    let id = MessageId::next_after(state.last_id, now_ms());
    let message = send("r", "ann", body, None).stored_as(id);
    state.push(Entry::Message(message), 100);
    state.pending.get_or_insert_default().committed = Some(id);
    id
}

/// In a room, once a write failed, every later one of the room fails until the room is
/// reloaded: a later send's commit never confirms (nor emits) an earlier failed change.
#[tokio::test]
async fn durable_a_failed_write_fails_the_rooms_later_ones_and_emits_nothing() {
    let dirs = Mutex::new(Vec::new());
    let broker = durable(&dirs, 100);
    let kept = broker
        .publish(send("r", "ann", "kept", None))
        .await
        .unwrap();
    let log = broker.existing("r").unwrap();
    let mut sub = conformance::listen(&broker, "r").await.unwrap();
    let lost = forge(&log, "lost");
    // The change (to a message the file lacks: it fails) and a send queued right behind it.
    let (_, edit) = broker
        .change_locked(&log, change("r", lost, "ann", edit("never")))
        .unwrap();
    let (_, after) = queue(&broker, &log, send("r", "ann", "after", None));
    let (edited, sent) = tokio::join!(
        broker.confirm(&log, edit.unwrap()),
        broker.confirm(&log, after.unwrap())
    );
    assert!(
        edited.is_err(),
        "a change to a message the file lacks was confirmed"
    );
    assert!(
        sent.is_err(),
        "a write after a failed one of its room was confirmed"
    );
    // Reloaded: the room is as the file holds it, and takes writes again.
    let history = broker.history("r", None, 10).await.unwrap();
    assert_eq!(history.messages, [kept.clone().into_message().unwrap()]);
    let next = broker
        .publish(send("r", "ann", "next", None))
        .await
        .unwrap();
    match conformance::next_event(&mut sub).await {
        RoomEvent::Message(m) => assert_eq!(Some(m), next.into_message()),
        other => panic!("an event of a failed write: {other:?}"),
    }
}

/// A retry of a send still in flight waits for it: if its commit fails, the retry is not told
/// "stored".
#[tokio::test]
async fn durable_a_retry_of_a_send_whose_commit_fails_is_not_a_duplicate() {
    let dirs = Mutex::new(Vec::new());
    let broker = durable(&dirs, 100);
    broker
        .publish(send("r", "ann", "first", None))
        .await
        .unwrap();
    let log = broker.existing("r").unwrap();
    // A write of the room that fails in the journal, queued before the send: the send fails.
    let lost = forge(&log, "lost");
    let (_, edit) = broker
        .change_locked(&log, change("r", lost, "ann", edit("never")))
        .unwrap();
    let (_, original) = queue(&broker, &log, send("r", "ann", "hi", Some("n1")));
    let (first, retry) = tokio::join!(
        broker.confirm(&log, original.unwrap()),
        broker.publish(send("r", "ann", "hi", Some("n1")))
    );
    assert!(
        first.is_err(),
        "the send was confirmed after a failed write"
    );
    assert!(
        !matches!(retry, Ok(Published::Duplicate(_))),
        "the retry was told its send was stored: {retry:?}"
    );
    drop(broker.confirm(&log, edit.unwrap()).await);
}

/// A call dropped while its write is in flight (a timeout, a disconnect) still confirms it:
/// subscribers hear it and the history shows it.
#[tokio::test]
async fn durable_a_dropped_publish_still_confirms_its_message() {
    let dirs = Mutex::new(Vec::new());
    let broker = durable(&dirs, 100);
    let mut sub = conformance::listen(&broker, "r").await.unwrap();
    // Polled once (the write queued), then dropped.
    let mut publish = Box::pin(broker.publish(send("r", "ann", "hi", None)));
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(publish.as_mut().poll(cx))).await;
    assert!(
        polled.is_pending(),
        "the publish did not wait for its commit: {polled:?}"
    );
    drop(publish);
    let RoomEvent::Message(m) = conformance::next_event(&mut sub).await else {
        panic!("not a message")
    };
    let history = broker.history("r", None, 10).await.unwrap();
    assert_eq!(history.messages, [m]);
}
