//! Presence across nodes, and typing.

#![allow(clippy::unwrap_used, missing_docs)]

use super::{listen, next_event};
use crate::{Broker, RoomEvent};

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
