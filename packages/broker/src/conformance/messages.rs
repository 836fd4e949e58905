//! Messages: ids and order, history pages, retention, idempotent sends, and the edges of the id
//! space.

#![allow(clippy::unwrap_used, missing_docs)]

use super::{listen, next_event, publish_n, resume};
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
