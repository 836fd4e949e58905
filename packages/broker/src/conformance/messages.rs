//! Messages: ids and order, history pages, retention, recovery (from ids the history knows
//! only), the join snapshot, idempotent sends, and the edges of the id space.

#![allow(clippy::unwrap_used, missing_docs)]

use super::{listen, next_event, publish_n};
use crate::{Broker, MessageId, NewMessage, Published, Recovery, Resume, RoomEvent};

pub async fn ids_increase_and_reach_every_subscriber<B: Broker>(broker: &B) {
    let mut a = listen(broker, "c-order").await.unwrap();
    let mut b = listen(broker, "c-order").await.unwrap();
    let sent = publish_n(broker, "c-order", 15).await;
    assert!(
        sent.windows(2).all(|w| w[0].id < w[1].id),
        "ids must strictly increase"
    );
    assert_eq!(sent[3].body, "m3");
    assert!(sent[3].nonce.as_deref().is_some_and(|n| n.ends_with("-3")));
    assert_eq!(sent[3].room, "c-order");
    for expected in &sent {
        assert_eq!(
            next_event(&mut a).await,
            RoomEvent::Message(expected.clone())
        );
        assert_eq!(
            next_event(&mut b).await,
            RoomEvent::Message(expected.clone())
        );
    }
}

pub async fn history_pages_backwards<B: Broker>(broker: &B) {
    let empty = broker.history("c-empty", None, 10).await.unwrap();
    assert!(empty.messages.is_empty() && !empty.has_more);

    let sent = publish_n(broker, "c-history", 12).await;
    let latest = broker.history("c-history", None, 5).await.unwrap();
    assert_eq!(latest.messages, sent[7..12]);
    assert!(latest.has_more);
    let older = broker
        .history("c-history", Some(latest.messages[0].id), 5)
        .await
        .unwrap();
    assert_eq!(older.messages, sent[2..7]);
    assert!(older.has_more);
    let oldest = broker
        .history("c-history", Some(older.messages[0].id), 5)
        .await
        .unwrap();
    assert_eq!(oldest.messages, sent[0..2]);
    assert!(!oldest.has_more);
}

pub async fn history_is_bounded<B: Broker>(broker: &B, history_len: usize) {
    let sent = publish_n(broker, "c-bounded", history_len + 5).await;
    let page = broker
        .history("c-bounded", None, history_len + 5)
        .await
        .unwrap();
    assert_eq!(
        page.messages,
        sent[5..],
        "history keeps exactly the latest {history_len}"
    );
    assert!(!page.has_more);
}

pub async fn recovery<B: Broker>(broker: &B, history_len: usize) {
    let sent = publish_n(broker, "c-recover", 10).await;
    let missed = broker
        .recover("c-recover", sent[6].id, Recovery::count(100))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(
        missed.as_deref(),
        Some(&sent[7..]),
        "exactly the messages after since"
    );
    let none = broker
        .recover("c-recover", sent[9].id, Recovery::count(100))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(none, Some(vec![]), "nothing missed");
    let over = broker
        .recover("c-recover", sent[0].id, Recovery::count(3))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(over, None, "more missed than the limit");

    // Bounded in bytes too: four 1000-byte messages missed do not fit in 3500 bytes.
    let mut big = Vec::new();
    for i in 0..5 {
        let new = NewMessage {
            room: "c-recover-bytes".into(),
            from: "alice".into(),
            body: format!("{i}").repeat(1000),
            nonce: None,
            reply_to: None,
        };
        big.push(broker.publish(new).await.unwrap().into_message().unwrap());
    }
    let size = crate::message_size(&big[1]);
    assert!(size > 1000 && size < 1200, "{size}");
    let tight = Recovery {
        limit: 100,
        max_bytes: 3 * size + size / 2,
    };
    let roomy = Recovery {
        limit: 100,
        max_bytes: 4 * size + size / 2,
    };
    let since = big[0].id;
    assert_eq!(
        broker
            .recover("c-recover-bytes", since, tight)
            .await
            .unwrap()
            .map(super::no_changes),
        None
    );
    assert_eq!(
        broker
            .recover("c-recover-bytes", since, roomy)
            .await
            .unwrap()
            .map(super::no_changes),
        Some(big[1..].to_vec())
    );
    let snapshot = broker
        .join_snapshot(
            "c-recover-bytes",
            "bob",
            false,
            Resume {
                since: Some(since),
                recovery: tight,
                ..resume(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (snapshot.messages, snapshot.recovered),
        (big[3..].to_vec(), false),
        "over the byte bound: the latest page instead"
    );
    let unknown = broker
        .recover("c-never-used", sent[0].id, Recovery::count(100))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(unknown, None, "a room without messages knows no id");

    let sent = publish_n(broker, "c-trimmed", history_len + 3).await;
    assert_eq!(
        broker
            .recover("c-trimmed", sent[0].id, Recovery::count(10_000))
            .await
            .unwrap()
            .map(super::no_changes),
        None,
        "gap past retention"
    );
    let kept = broker
        .recover("c-trimmed", sent[2].id, Recovery::count(10_000))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(
        kept.as_deref(),
        Some(&sent[3..]),
        "oldest retained boundary"
    );
}

/// A join that recovers up to 100 messages, else gets the latest `page`.
pub(super) fn resume(page: usize) -> Resume<'static> {
    Resume {
        recovery: Recovery::count(100),
        members: 100,
        ..Resume::latest(page)
    }
}

/// A `since` the history does not hold recovers nothing, epoch or not: an id from a history
/// the broker lost is not in the new one (the case of a client that sends no epoch), and a
/// forged one was never in the room. The newest id and the newest trimmed one still recover.
pub async fn since_must_be_in_the_history<B: Broker>(broker: &B, history_len: usize) {
    let room = "c-since";
    let sent = publish_n(broker, room, 10).await;
    let recover = |since| async move {
        broker
            .recover(room, since, Recovery::count(100))
            .await
            .unwrap()
            .map(super::no_changes)
    };
    assert_eq!(recover(sent[9].id).await, Some(vec![]), "since the newest");
    assert_eq!(recover(sent[0].id).await.as_deref(), Some(&sent[1..]));
    let between = MessageId {
        ms: sent[4].id.ms,
        seq: sent[4].id.seq + 1_000,
    };
    assert_eq!(recover(between).await, None, "an id the room never had");
    let before = MessageId {
        ms: sent[0].id.ms - 1,
        seq: 0,
    };
    assert_eq!(recover(before).await, None, "an id older than the history");
    let later = MessageId {
        ms: sent[9].id.ms + 1_000,
        seq: 0,
    };
    assert_eq!(recover(later).await, None, "an id past the newest");

    // Through the join, without an epoch (an older client): the latest page, not recovered.
    for since in [between, later] {
        let snapshot = broker
            .join_snapshot(
                room,
                "bob",
                false,
                Resume {
                    since: Some(since),
                    ..resume(3)
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (snapshot.messages, snapshot.recovered),
            (sent[7..].to_vec(), false),
            "since {since}"
        );
    }
    let newest = broker
        .join_snapshot(
            room,
            "bob",
            false,
            Resume {
                since: Some(sent[9].id),
                ..resume(3)
            },
        )
        .await
        .unwrap();
    assert_eq!((newest.messages, newest.recovered), (vec![], true));

    // The newest trimmed id: the history holds everything after it.
    let trimmed = publish_n(broker, "c-since-trimmed", history_len + 1).await;
    let kept = broker
        .recover("c-since-trimmed", trimmed[0].id, Recovery::count(10_000))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(kept.as_deref(), Some(&trimmed[1..]));
    let everything = broker
        .recover("c-since-trimmed", MessageId::MIN, Recovery::count(10_000))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(
        everything, None,
        "not everything after 0-0 is kept any more"
    );
}

/// `join_snapshot` answers what the calls it stands for would.
pub async fn join_snapshot<B: Broker>(broker: &B, history_len: usize) {
    let room = "c-snapshot";
    let first = broker
        .join_snapshot(room, "carol", true, resume(5))
        .await
        .unwrap();
    assert_eq!(
        first.members,
        ["carol"],
        "presence recorded before members are read"
    );
    assert!(first.messages.is_empty() && !first.recovered);

    let sent = publish_n(broker, room, 10).await;
    let latest = broker
        .join_snapshot(room, "dave", false, resume(5))
        .await
        .unwrap();
    assert_eq!(
        latest.members,
        ["carol"],
        "no presence without join_presence"
    );
    assert_eq!(latest.messages, &sent[5..], "the latest page, oldest first");
    assert!(!latest.recovered);

    let since = broker
        .join_snapshot(
            room,
            "dave",
            true,
            Resume {
                since: Some(sent[6].id),
                ..resume(5)
            },
        )
        .await
        .unwrap();
    assert_eq!(since.members, ["carol", "dave"]);
    assert_eq!(
        since.messages,
        &sent[7..],
        "exactly the messages after since"
    );
    assert!(since.recovered);

    let over = broker
        .join_snapshot(
            room,
            "dave",
            false,
            Resume {
                since: Some(sent[0].id),
                recovery: Recovery::count(3),
                ..resume(5)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        over.messages,
        &sent[5..],
        "too many missed: the latest page instead"
    );
    assert!(!over.recovered);

    let trimmed = publish_n(broker, "c-snapshot-trimmed", history_len + 3).await;
    let gone = broker
        .join_snapshot(
            "c-snapshot-trimmed",
            "dave",
            false,
            Resume {
                since: Some(trimmed[0].id),
                recovery: Recovery::count(10_000),
                ..resume(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        gone.messages,
        &trimmed[trimmed.len() - 2..],
        "gap past retention"
    );
    assert!(!gone.recovered);
    let kept = broker
        .join_snapshot(
            "c-snapshot-trimmed",
            "dave",
            false,
            Resume {
                since: Some(trimmed[2].id),
                recovery: Recovery::count(10_000),
                ..resume(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(kept.messages, &trimmed[3..], "oldest retained boundary");
    assert!(kept.recovered);

    // The epoch names the room's history: the same for every join, and a `since` given with
    // another epoch (from a history since lost) recovers nothing.
    assert!(!first.epoch.is_empty());
    assert_eq!(latest.epoch, first.epoch);
    assert_eq!(broker.epoch(room).await.unwrap(), first.epoch);
    let same = broker
        .join_snapshot(
            room,
            "dave",
            false,
            Resume {
                since: Some(sent[6].id),
                epoch: Some(&first.epoch),
                ..resume(5)
            },
        )
        .await
        .unwrap();
    assert_eq!((same.messages, same.recovered), (sent[7..].to_vec(), true));
    let other = broker
        .join_snapshot(
            room,
            "dave",
            false,
            Resume {
                since: Some(sent[6].id),
                epoch: Some("another-history"),
                ..resume(5)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (other.messages, other.recovered),
        (sent[5..].to_vec(), false),
        "since from another epoch: the latest page"
    );
}

pub async fn retries_with_the_same_nonce_are_not_stored_twice<B: Broker>(broker: &B) {
    let room = "c-dedup";
    let mut sub = listen(broker, room).await.unwrap();
    let new = |from: &str, body: &str, nonce: Option<&str>| NewMessage {
        room: room.into(),
        from: from.into(),
        body: body.into(),
        nonce: nonce.map(Into::into),
        reply_to: None,
    };
    let Published::New(first) = broker
        .publish(new("alice", "hi", Some("n1")))
        .await
        .unwrap()
    else {
        panic!("first send is new")
    };
    // The retry (even with a different body) returns the original and stores nothing.
    let retry = broker
        .publish(new("alice", "hi again", Some("n1")))
        .await
        .unwrap();
    assert_eq!(retry, Published::Duplicate(first.clone()));
    // Same nonce from someone else, or no nonce at all, are different messages.
    let other = broker.publish(new("bob", "hi", Some("n1"))).await.unwrap();
    let plain = broker.publish(new("alice", "hi", None)).await.unwrap();
    let plain2 = broker.publish(new("alice", "hi", None)).await.unwrap();
    assert!(matches!(
        (&other, &plain, &plain2),
        (Published::New(_), Published::New(_), Published::New(_))
    ));
    for expected in [
        &first,
        other.message().unwrap(),
        plain.message().unwrap(),
        plain2.message().unwrap(),
    ] {
        assert_eq!(
            next_event(&mut sub).await,
            RoomEvent::Message(expected.clone())
        );
    }
    let page = broker.history(room, None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 4, "the retry was not stored");
}

/// The edges of the id space get answers, the same from every backend, never errors.
pub async fn boundary_ids<B: Broker>(broker: &B) {
    let sent = publish_n(broker, "c-edges", 3).await;
    let page = broker
        .history("c-edges", Some(MessageId::MIN), 10)
        .await
        .unwrap();
    assert_eq!(page, crate::HistoryPage::default(), "nothing is before 0-0");
    let page = broker
        .history("c-edges", Some(MessageId::MAX), 10)
        .await
        .unwrap();
    assert_eq!((page.messages, page.has_more), (sent.clone(), false));
    let all = broker
        .recover("c-edges", MessageId::MIN, Recovery::count(100))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(all, Some(sent.clone()), "everything is after 0-0");
    let none = broker
        .recover("c-edges", MessageId::MAX, Recovery::count(100))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(none, Some(vec![]), "nothing is after the largest id");
    let future = MessageId {
        ms: sent[2].id.ms + 1_000_000,
        seq: 0,
    };
    let none = broker
        .recover("c-edges", future, Recovery::count(100))
        .await
        .unwrap()
        .map(super::no_changes);
    assert_eq!(none, None, "an id past the newest is not one of the room's");
    for since in [MessageId::MIN, MessageId::MAX] {
        let snapshot = broker
            .join_snapshot(
                "c-edges",
                "alice",
                false,
                Resume {
                    since: Some(since),
                    ..resume(50)
                },
            )
            .await
            .unwrap();
        let expected = if since == MessageId::MIN {
            sent.clone()
        } else {
            vec![]
        };
        assert_eq!(
            (snapshot.messages, snapshot.recovered),
            (expected, true),
            "since {since}"
        );
    }
}
