//! The embedded broker's own tests: the conformance suite run against it, and what only it
//! promises (delivery before `publish` returns, rooms and tables given back).

use super::*;
use crate::conformance::{self, listen};

fn broker() -> MemoryBroker {
    MemoryBroker::new(MemoryBrokerConfig {
        history_len: 20,
        ..Default::default()
    })
}

#[tokio::test]
async fn conformance_suite() {
    conformance::run_all(|| async { broker() }, 20).await;
}

#[tokio::test]
async fn conformance_of_changes() {
    // Room for the reaction checks' 45 changes to one message.
    let make = || async {
        MemoryBroker::new(MemoryBrokerConfig {
            history_len: 100,
            ..Default::default()
        })
    };
    conformance::run_changes(make, 100).await;
}

/// Without a data dir there is no index to search.
#[tokio::test]
async fn search_is_unsupported_in_memory() {
    conformance::search_is_unsupported(&broker()).await;
}

#[tokio::test]
async fn unread_counts_are_capped() {
    let roomy = MemoryBroker::new(MemoryBrokerConfig {
        history_len: 2 * skat_protocol::UNREAD_CAP as usize,
        ..Default::default()
    });
    conformance::unread_is_capped(&roomy).await;
}

/// A message entry of the log costs what a message does: changes are boxed, so a plain
/// message pays nothing for them.
#[test]
fn a_log_entry_is_a_message_s_size() {
    assert_eq!(
        std::mem::size_of::<room::Entry>(),
        std::mem::size_of::<crate::Message>()
    );
}

#[tokio::test]
async fn rooms_joined_and_left_without_messages_do_not_pile_up() {
    let broker = broker();
    for i in 0..5000 {
        let room = format!("r{i}");
        let sub = listen(&broker, &room).await.unwrap();
        broker.presence_join(&room, "u").await.unwrap();
        broker.presence_leave(&room, "u").await.unwrap();
        drop(sub);
    }
    // A room with history is kept.
    conformance::publish_n(&broker, "kept", 1).await;
    let rooms = lock(&broker.rooms).len();
    assert!(rooms < 2048, "{rooms} rooms still held");
    assert_eq!(
        broker
            .history("kept", None, 10)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
}

#[tokio::test]
async fn publish_hands_the_message_to_sinks_before_returning() {
    let broker = broker();
    let mut sub = listen(&broker, "r").await.unwrap();
    // Far more than any queue would hold: nothing is queued, so nothing can be dropped.
    let sent = conformance::publish_n(&broker, "r", 500).await;
    for expected in &sent {
        assert_eq!(sub.try_recv(), Some(RoomEvent::Message(expected.clone())));
    }
    broker.typing("r", "bob").await.unwrap();
    assert!(matches!(sub.try_recv(), Some(RoomEvent::Typing { .. })));
    assert_eq!(sub.try_recv(), None);
}

#[tokio::test]
async fn dropped_subscriptions_leave_the_room() {
    let broker = broker();
    let a = listen(&broker, "r").await.unwrap();
    let mut b = listen(&broker, "r").await.unwrap();
    let log = broker.room("r");
    assert_eq!(lock(&log.state).subscribers.len(), 2);
    drop(a);
    assert_eq!(lock(&log.state).subscribers.len(), 1);
    let sent = conformance::publish_n(&broker, "r", 1).await;
    assert_eq!(b.try_recv(), Some(RoomEvent::Message(sent[0].clone())));
    drop(b);
    assert!(lock(&log.state).subscribers.is_empty());
}

#[tokio::test]
async fn subscriptions_end_when_the_broker_is_dropped() {
    let broker = broker();
    let mut sub = listen(&broker, "r").await.unwrap();
    let sent = conformance::publish_n(&broker, "r", 1).await;
    drop(broker);
    // What was delivered is there, then the end.
    assert_eq!(sub.recv().await, Some(RoomEvent::Message(sent[0].clone())));
    assert_eq!(sub.recv().await, None);
}

#[tokio::test]
async fn dedup_and_presence_tables_shrink_back() {
    let broker = MemoryBroker::new(MemoryBrokerConfig {
        dedup_window: Duration::ZERO,
        ..MemoryBrokerConfig::default()
    });
    conformance::publish_n(&broker, "r", 500).await;
    {
        let log = broker.room("r");
        let state = lock(&log.state);
        // Each publish expired the previous nonce: at most one is remembered.
        let dedup = state.dedup.as_ref().unwrap();
        assert!(dedup.ids.capacity() < 8, "{}", dedup.ids.capacity());
        assert!(dedup.order.capacity() < 8);
    }
    for i in 0..500 {
        broker.presence_join("r", &format!("u{i}")).await.unwrap();
    }
    for i in 0..500 {
        broker.presence_leave("r", &format!("u{i}")).await.unwrap();
    }
    let log = broker.room("r");
    let state = lock(&log.state);
    // The leaves expired the last nonce.
    assert!(state.dedup.is_none());
    assert_eq!(state.presence.capacity(), 0);
}

#[tokio::test]
async fn presence_spans_nodes_sharing_the_broker() {
    let shared = broker();
    conformance::presence_spans_nodes(&shared, &shared).await;
}

#[tokio::test]
async fn a_room_nobody_is_in_is_freed_but_its_history_stays() {
    let broker = MemoryBroker::new(MemoryBrokerConfig {
        dedup_window: Duration::ZERO,
        ..MemoryBrokerConfig::default()
    });
    for (room, messages) in [("quiet", 0), ("talked", 3)] {
        let sub = listen(&broker, room).await.unwrap();
        broker.presence_join(room, "u").await.unwrap();
        conformance::publish_n(&broker, room, messages).await;
        drop(sub);
        broker.presence_leave(room, "u").await.unwrap();
    }
    assert!(broker.existing("quiet").is_none(), "an empty room is freed");
    let talked = broker.existing("talked").unwrap();
    let state = lock(&talked.state);
    assert_eq!(state.history.len(), 3);
    assert!(state.presence.is_empty() && state.subscribers.is_empty());
    assert!(state.dedup.is_none(), "expired nonces are not kept");
}
