//! The join snapshot: members, the room's epoch, and a recovery or the latest page, in one call.

#![allow(clippy::unwrap_used, missing_docs)]

use super::{publish_n, resume};
use crate::{Broker, Recovery, Resume};

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
