//! Read markers: per room and user, moving forward only and never past the room's last id,
//! told to every node on the notices room, and carried with the unread count in the join
//! snapshot (issue 22).

#![allow(clippy::unwrap_used, missing_docs)]

use skat_protocol::UNREAD_CAP;

use super::{change, changed, listen, next_event, publish_n};
use crate::{Broker, ChangeKind, MessageId, NODES_ROOM, ReadState, Resume, RoomEvent};

pub async fn read_markers_and_unread_counts<B: Broker>(broker: &B) {
    let room = "c-read";
    assert_eq!(
        broker.read(room, "bob", MessageId::MAX).await.unwrap(),
        ReadState::default(),
        "a room without messages has nothing to read"
    );
    let mut nodes = listen(broker, NODES_ROOM).await.unwrap();
    let sent = publish_n(broker, room, 5).await;
    let join = || broker.join_snapshot(room, "bob", false, Resume::latest(10));
    let first = join().await.unwrap();
    assert_eq!(
        (first.read, first.unread),
        (None, 5),
        "never read: all unread"
    );

    let state = broker.read(room, "bob", sent[2].id).await.unwrap();
    assert_eq!(
        state,
        ReadState {
            id: Some(sent[2].id),
            unread: 2
        }
    );
    assert_eq!(
        next_event(&mut nodes).await,
        RoomEvent::Read {
            room: room.into(),
            user: "bob".into(),
            id: sent[2].id,
            unread: 2
        }
    );
    // Backwards moves nothing, and tells nobody.
    let stale = broker.read(room, "bob", sent[0].id).await.unwrap();
    assert_eq!(stale, state);
    let snapshot = join().await.unwrap();
    assert_eq!((snapshot.read, snapshot.unread), (Some(sent[2].id), 2));
    let other = broker
        .join_snapshot(room, "carol", false, Resume::latest(10))
        .await
        .unwrap();
    assert_eq!(
        (other.read, other.unread),
        (None, 5),
        "markers are per user"
    );

    // A deleted message is no longer unread; a change is never counted.
    changed(
        broker,
        change(room, sent[4].id, "alice", ChangeKind::Delete),
    )
    .await;
    assert_eq!(join().await.unwrap().unread, 1);

    // Past the last id: clamped to it (the change's), so later messages stay unread.
    let all = broker.read(room, "bob", MessageId::MAX).await.unwrap();
    assert_eq!(all.unread, 0);
    assert!(all.id > Some(sent[4].id));
    let next = publish_n(broker, room, 1).await;
    let snapshot = join().await.unwrap();
    assert_eq!(snapshot.unread, 1);
    assert!(snapshot.read < Some(next[0].id));
    assert!(matches!(
        next_event(&mut nodes).await,
        RoomEvent::Read { unread: 0, .. }
    ));
    assert_eq!(nodes.try_recv(), None, "one event per move");
}

/// The unread count stops at [`UNREAD_CAP`]: for a broker whose rooms retain more entries.
pub async fn unread_is_capped<B: Broker>(broker: &B) {
    let room = "c-read-cap";
    let sent = publish_n(broker, room, UNREAD_CAP as usize + 5).await;
    let snapshot = broker
        .join_snapshot(room, "bob", false, Resume::latest(1))
        .await
        .unwrap();
    assert_eq!(snapshot.unread, UNREAD_CAP);
    let state = broker.read(room, "bob", sent[3].id).await.unwrap();
    assert_eq!(state.unread, UNREAD_CAP, "1000 means 1000 or more");
    let state = broker.read(room, "bob", sent[5].id).await.unwrap();
    assert_eq!(state.unread, UNREAD_CAP - 1);
}
