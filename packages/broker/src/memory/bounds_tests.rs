//! What the embedded broker keeps and for how long (issue 23, step 4): the history length
//! bounds the file as it bounds the ring, retention drops old messages from memory and the
//! file, and a deleted message's text leaves the file. The file is read directly, as an
//! operator (or an attacker with the disk) would.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use skat_testkit::TempDir;

use super::*;
use crate::conformance::{self, change, edit, react};
use crate::{ChangeKind, Message};

fn config(history_len: usize, retention: Option<Duration>) -> MemoryBrokerConfig {
    MemoryBrokerConfig {
        history_len,
        retention,
        ..Default::default()
    }
}

async fn send(broker: &MemoryBroker, room: &str, body: &str, nonce: Option<&str>) -> Message {
    let new = NewMessage {
        room: room.into(),
        from: "ann".into(),
        body: body.into(),
        nonce: nonce.map(Into::into),
        reply_to: None,
    };
    match broker.publish(new).await.unwrap() {
        Published::New(m) => m,
        other => panic!("{other:?}"),
    }
}

/// A count from the data dir's file.
fn count(dir: &Path, sql: &str) -> i64 {
    let conn = Connection::open(dir.join("skat.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Waits until the clock is past `ms`, so the next id is of a later millisecond.
async fn after_ms(ms: u64) {
    while now_ms() <= ms {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn durable_the_history_length_bounds_the_file_and_a_restart_loads_the_same() {
    let dir = TempDir::new("bounds").unwrap();
    let len = 16;
    // The file is trimmed every len/8 entries dropped: 2 here.
    let slack = len / 8;
    let (history, trimmed_message) = {
        let broker = MemoryBroker::open(config(len, None), dir.path()).unwrap();
        let first = send(&broker, "r", "first", Some("n0")).await;
        conformance::changed(&broker, change("r", first.id, "bob", react("👍", true))).await;
        for i in 1..60 {
            send(&broker, "r", &format!("m{i}"), Some(&format!("n{i}"))).await;
            let rows = count(dir.path(), "SELECT count(*) FROM entries WHERE room = 'r'");
            assert!(
                rows <= (len + slack) as i64,
                "{rows} rows in the file after {i} sends"
            );
        }
        let history = broker.history("r", None, 100).await.unwrap();
        (history, first)
    };
    // The trimmed message's reactors went with it (the changes are past the ring too).
    assert_eq!(count(dir.path(), "SELECT count(*) FROM reactions"), 0);
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM entries WHERE body = 'first'"
        ),
        0
    );
    let broker = MemoryBroker::open(config(len, None), dir.path()).unwrap();
    assert_eq!(broker.history("r", None, 100).await.unwrap(), history);
    assert_eq!(history.messages.len(), len);
    // A `since` from before what is kept is not recovered; the oldest kept one is.
    let recover = |since| broker.recover("r", since, Recovery::count(100));
    assert_eq!(recover(trimmed_message.id).await.unwrap(), None);
    let oldest = history.messages[0].id;
    assert!(recover(oldest).await.unwrap().is_some());
    // The nonce window outlives the trim: a retry across the restart is still a duplicate.
    let retry = NewMessage {
        room: "r".into(),
        from: "ann".into(),
        body: "first".into(),
        nonce: Some("n0".into()),
        reply_to: None,
    };
    match broker.publish(retry).await.unwrap() {
        Published::Duplicate(m) => assert_eq!(m.id, trimmed_message.id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn durable_a_deleted_message_s_body_and_edits_leave_the_file() {
    let dir = TempDir::new("bounds").unwrap();
    let broker = MemoryBroker::open(config(100, None), dir.path()).unwrap();
    let kept = send(&broker, "r", "plainwords stay", None).await;
    let gone = send(&broker, "r", "firstsecretword", None).await;
    conformance::changed(
        &broker,
        change("r", gone.id, "ann", edit("editedsecretword")),
    )
    .await;
    conformance::changed(&broker, change("r", gone.id, "bob", react("👍", true))).await;
    let matches = |word: &str| {
        count(
            dir.path(),
            &format!("SELECT count(*) FROM entries_fts WHERE entries_fts MATCH '{word}'"),
        )
    };
    assert_eq!(matches("editedsecretword"), 1);
    conformance::changed(&broker, change("r", gone.id, "ann", ChangeKind::Delete)).await;
    for word in ["firstsecretword", "editedsecretword"] {
        assert_eq!(matches(word), 0, "{word} is still indexed");
        let stored = count(
            dir.path(),
            &format!("SELECT count(*) FROM entries WHERE body LIKE '%{word}%'"),
        );
        assert_eq!(stored, 0, "{word} is still in entries");
    }
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM entries WHERE body <> '' AND body IS NOT NULL
             AND kind = 'edited'"
        ),
        0,
        "an edit's body outlived the delete"
    );
    assert_eq!(count(dir.path(), "SELECT count(*) FROM reactions"), 0);
    assert_eq!(
        matches("plainwords"),
        1,
        "the other message is still searchable"
    );
    drop(broker);
    let broker = MemoryBroker::open(config(100, None), dir.path()).unwrap();
    let history = broker.history("r", None, 10).await.unwrap();
    assert_eq!(history.messages[0].body, kept.body);
    assert!(history.messages[1].is_deleted() && history.messages[1].body.is_empty());
    assert_eq!(
        history.messages[1].edited(),
        None,
        "a deleted message kept its edit time"
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM entries WHERE edited_ms IS NOT NULL"
        ),
        0
    );
}

/// Two messages a millisecond apart, then an edit of the first: a retention that drops the
/// first must drop the edit too, though the edit is as young as the second message.
async fn old_and_new(broker: &MemoryBroker) -> (Message, Message) {
    let old = send(broker, "r", "old", None).await;
    after_ms(old.id.ms).await;
    let new = send(broker, "r", "new", None).await;
    conformance::changed(broker, change("r", old.id, "ann", edit("old, edited"))).await;
    (old, new)
}

/// What a sweep at the second message's time (plus the retention) leaves: the second only.
async fn assert_swept(broker: &MemoryBroker, old: &Message, new: &Message) {
    let history = broker.history("r", None, 10).await.unwrap();
    assert_eq!(history.messages.len(), 1);
    assert_eq!(history.messages[0].id, new.id);
    let recover = |since| broker.recover("r", since, Recovery::count(100));
    let nothing_kept = MessageId::MIN;
    assert_eq!(
        recover(nothing_kept).await.unwrap(),
        None,
        "older than kept"
    );
    // The newest dropped id is the boundary, as after a trim: what follows it is the second
    // message, without the edit of the first.
    let resumed = recover(old.id).await.unwrap().unwrap();
    assert_eq!(resumed.messages, vec![new.clone()]);
    assert!(resumed.changes.is_empty(), "{:?}", resumed.changes);
}

#[tokio::test]
async fn retention_drops_old_messages_and_the_changes_targeting_them() {
    let retention = Duration::from_secs(3600);
    let broker = MemoryBroker::new(config(100, Some(retention)));
    let (old, new) = old_and_new(&broker).await;
    // Nothing is old yet.
    assert_eq!(broker.sweep_retention(now_ms()).await, 0);
    assert_eq!(
        broker.history("r", None, 10).await.unwrap().messages.len(),
        2
    );
    let at = new.id.ms + 3_600_000;
    assert_eq!(broker.sweep_retention(at).await, 1);
    assert_swept(&broker, &old, &new).await;
    assert_eq!(broker.sweep_retention(at).await, 0, "nothing more to drop");
    // Without a retention nothing is swept, however old.
    let keeper = Arc::new(MemoryBroker::new(config(100, None)));
    send(&keeper, "r", "kept", None).await;
    assert_eq!(keeper.sweep_retention(u64::MAX).await, 0);
    assert!(keeper.spawn_retention().is_none());
}

#[tokio::test]
async fn durable_retention_drops_old_messages_from_the_file() {
    let dir = TempDir::new("bounds").unwrap();
    let retention = Duration::from_secs(86_400);
    let config = config(100, Some(retention));
    let (old, new) = {
        let broker = MemoryBroker::open(config, dir.path()).unwrap();
        let (old, new) = old_and_new(&broker).await;
        assert_eq!(broker.sweep_retention(new.id.ms + 86_400_000).await, 1);
        assert_swept(&broker, &old, &new).await;
        (old, new)
    };
    assert_eq!(count(dir.path(), "SELECT count(*) FROM entries"), 1);
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM entries WHERE body LIKE 'old%'"
        ),
        0
    );
    let broker = MemoryBroker::open(config, dir.path()).unwrap();
    assert_swept(&broker, &old, &new).await;
}

#[tokio::test]
async fn the_retention_task_sweeps_periodically_until_the_broker_is_gone() {
    let broker = Arc::new(MemoryBroker::new(config(
        100,
        Some(Duration::from_millis(20)),
    )));
    let task = broker
        .spawn_retention_every(Duration::from_millis(5))
        .unwrap();
    send(&broker, "r", "short-lived", None).await;
    let probe = Arc::clone(&broker);
    conformance::eventually("the message expires", Duration::from_secs(5), move || {
        probe
            .existing("r")
            .is_none_or(|log| lock(&log.state).history.is_empty())
    })
    .await;
    drop(broker);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends with the broker")
        .unwrap();
}
