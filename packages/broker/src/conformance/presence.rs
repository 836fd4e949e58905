//! Presence across nodes, and typing.

#![allow(clippy::unwrap_used, missing_docs)]

use super::{listen, next_event};
use crate::{Broker, NODES_ROOM, RoomEvent};

pub async fn presence_counts_nodes<B: Broker>(broker: &B) {
    let room = "c-presence";
    let event = |user: &str, online| RoomEvent::Presence {
        room: room.into(),
        user: user.into(),
        online,
    };
    let mut sub = listen(broker, room).await.unwrap();
    broker.presence_join(room, "bob").await.unwrap();
    assert_eq!(next_event(&mut sub).await, event("bob", true));
    broker.presence_join(room, "alice").await.unwrap();
    assert_eq!(next_event(&mut sub).await, event("alice", true));
    assert_eq!(broker.members(room).await.unwrap(), ["alice", "bob"]);
    broker.presence_leave(room, "bob").await.unwrap();
    assert_eq!(next_event(&mut sub).await, event("bob", false));
    assert_eq!(broker.members(room).await.unwrap(), ["alice"]);
    // Leaving twice, or leaving a room never joined, changes nothing.
    broker.presence_leave(room, "bob").await.unwrap();
    broker.presence_leave("c-elsewhere", "bob").await.unwrap();
    assert_eq!(broker.members(room).await.unwrap(), ["alice"]);
}

/// Two nodes (brokers sharing one backend) holding the same user: online until both leave.
pub async fn presence_spans_nodes<B: Broker>(a: &B, b: &B) {
    let room = "c-two-nodes";
    let event = |online| RoomEvent::Presence {
        room: room.into(),
        user: "dana".into(),
        online,
    };
    let mut sub = listen(a, room).await.unwrap();
    a.presence_join(room, "dana").await.unwrap();
    assert_eq!(next_event(&mut sub).await, event(true));
    b.presence_join(room, "dana").await.unwrap();
    a.presence_leave(room, "dana").await.unwrap();
    assert_eq!(
        b.members(room).await.unwrap(),
        ["dana"],
        "still held by node b"
    );
    b.presence_join(room, "erin").await.unwrap();
    // The next event is erin's: dana never went offline.
    assert!(
        matches!(next_event(&mut sub).await, RoomEvent::Presence { user, online: true, .. } if user == "erin")
    );
    b.presence_leave(room, "dana").await.unwrap();
    assert_eq!(next_event(&mut sub).await, event(false));
}

pub async fn typing_reaches_subscribers<B: Broker>(broker: &B) {
    let mut sub = listen(broker, "c-typing").await.unwrap();
    broker.typing("c-typing", "carol").await.unwrap();
    assert_eq!(
        next_event(&mut sub).await,
        RoomEvent::Typing {
            room: "c-typing".into(),
            user: "carol".into()
        }
    );
}

/// A disconnect notice reaches the node-wide notices room; rooms are listed by name, in pages,
/// with their member counts, and without the notices room.
pub async fn notices_and_rooms<B: Broker>(broker: &B) {
    let mut notices = listen(broker, NODES_ROOM).await.unwrap();
    broker.disconnect("bob", "account closed").await.unwrap();
    assert_eq!(
        next_event(&mut notices).await,
        RoomEvent::Disconnect {
            user: "bob".into(),
            reason: "account closed".into()
        }
    );

    let _a = listen(broker, "c-rooms-a").await.unwrap();
    let _b = listen(broker, "c-rooms-b").await.unwrap();
    broker.presence_join("c-rooms-a", "alice").await.unwrap();
    broker.presence_join("c-rooms-a", "bob").await.unwrap();
    super::publish_n(broker, "c-rooms-b", 1).await;
    // Page through everything one room at a time: names ascend, ours are there.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = broker.rooms(after.as_deref(), 1).await.unwrap();
        assert!(page.rooms.len() <= 1);
        seen.extend(page.rooms.iter().map(|r| (r.name.clone(), r.members)));
        match (page.has_more, page.rooms.last()) {
            (true, Some(last)) => after = Some(last.name.clone()),
            _ => break,
        }
    }
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert!(seen.contains(&("c-rooms-a".into(), 2)), "{seen:?}");
    assert!(seen.contains(&("c-rooms-b".into(), 0)), "{seen:?}");
    assert!(!seen.iter().any(|(name, _)| name == NODES_ROOM));
    let page = broker.rooms(Some("c-rooms-a"), 100).await.unwrap();
    assert!(page.rooms.iter().all(|r| r.name.as_str() > "c-rooms-a"));
    assert_eq!(
        page.rooms.first().map(|r| r.name.as_str()),
        Some("c-rooms-b")
    );
}
