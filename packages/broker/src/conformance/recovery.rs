//! Recovery: what a client resuming after `since` missed, within bounds, and only from ids the
//! history knows.

#![allow(clippy::unwrap_used, missing_docs)]

use super::{publish_n, resume};
use crate::{Broker, MessageId, NewMessage, Recovery, Resume};

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
