//! Presence across nodes, members paged by name, and typing.

#![allow(clippy::unwrap_used, missing_docs)]

use super::{listen, next_event};
use crate::{Broker, MembersPage, NODES_ROOM, Recovery, Resume, RoomEvent};

/// Every member of `room`, in one page.
pub async fn all_members<B: Broker>(broker: &B, room: &str) -> Vec<String> {
    let page = broker.members(room, None, 10_000).await.unwrap();
    assert!(!page.has_more);
    page.members
}

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
    assert_eq!(all_members(broker, room).await, ["alice", "bob"]);
    broker.presence_leave(room, "bob").await.unwrap();
    assert_eq!(next_event(&mut sub).await, event("bob", false));
    assert_eq!(all_members(broker, room).await, ["alice"]);
    // Leaving twice, or leaving a room never joined, changes nothing.
    broker.presence_leave(room, "bob").await.unwrap();
    broker.presence_leave("c-elsewhere", "bob").await.unwrap();
    assert_eq!(all_members(broker, room).await, ["alice"]);
}

/// Members come in pages by name: every member exactly once, in order, whatever the page size;
/// a join lists only the first ones and says whether more follow.
pub async fn members_are_paged_by_name<B: Broker>(broker: &B) {
    let room = "c-members";
    assert_eq!(
        broker.members(room, None, 10).await.unwrap(),
        MembersPage::default(),
        "a room nobody is in"
    );
    // Joined out of name order, some by two nodes' worth of entries (a leave of one keeps it).
    let mut names: Vec<String> = (0..23).map(|i| format!("u{:02}", (i * 7) % 23)).collect();
    for name in &names {
        broker.presence_join(room, name).await.unwrap();
    }
    broker.presence_join(room, "gone").await.unwrap();
    broker.presence_leave(room, "gone").await.unwrap();
    names.sort();
    for limit in [1, 5, 22, 23, 24] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = broker.members(room, after.as_deref(), limit).await.unwrap();
            assert!(page.members.len() <= limit, "limit {limit}");
            seen.extend(page.members.iter().cloned());
            match page.next() {
                Some(next) => {
                    assert_eq!(page.members.len(), limit, "only full pages have more");
                    after = Some(next.to_owned());
                }
                None => break,
            }
        }
        assert_eq!(seen, names, "every member once, in order (limit {limit})");
    }
    let rest = broker.members(room, Some("u1"), 100).await.unwrap();
    assert_eq!(
        (rest.members.first().map(String::as_str), rest.has_more),
        (Some("u10"), false),
        "after a name that is not a member"
    );
    assert!(
        broker
            .members(room, Some("u22"), 100)
            .await
            .unwrap()
            .members
            .is_empty()
    );

    let join = |members| Resume {
        recovery: Recovery::count(100),
        members,
        ..Resume::latest(5)
    };
    let bounded = broker
        .join_snapshot(room, "u00", false, join(10))
        .await
        .unwrap();
    assert_eq!(bounded.members, &names[..10], "the first members by name");
    assert!(bounded.more_members);
    let all = broker
        .join_snapshot(room, "u00", false, join(23))
        .await
        .unwrap();
    assert_eq!((all.members, all.more_members), (names.clone(), false));
    let joining = broker
        .join_snapshot(room, "a-newcomer", true, join(1))
        .await
        .unwrap();
    assert_eq!(
        (joining.members, joining.more_members),
        (vec!["a-newcomer".to_owned()], true),
        "the joining user is counted before the page is read"
    );
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
    assert_eq!(all_members(b, room).await, ["dana"], "still held by node b");
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
