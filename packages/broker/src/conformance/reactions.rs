//! Reactions: an exact count per emoji with the first users shown, at most
//! [`MAX_REACTIONS`] distinct emoji per message, and a repeated
//! add or remove stored nowhere (issue 22).

#![allow(clippy::unwrap_used, missing_docs)]

use skat_protocol::{MAX_REACTIONS, REACTION_USERS_SHOWN};

use super::{change, changed, latest, listen, next_event, publish_n, react};
use crate::{Broker, Change, ChangeRefusal, Changed, RoomEvent};

/// The resulting count a reaction change carries.
fn count(change: &Change) -> u32 {
    match change {
        Change::Reacted(r) => r.count,
        other => panic!("not a reaction: {other:?}"),
    }
}

pub async fn reactions_are_counted_and_bounded<B: Broker>(broker: &B) {
    let room = "c-react";
    let sent = publish_n(broker, room, 1).await;
    let target = sent[0].id;
    let users: Vec<String> = (0..REACTION_USERS_SHOWN + 5)
        .map(|i| format!("u{i:02}"))
        .collect();
    for (i, user) in users.iter().enumerate() {
        let added = changed(broker, change(room, target, user, react("👍", true))).await;
        assert_eq!(count(&added) as usize, i + 1);
    }
    let now = &latest(broker, room, 1).await[0];
    assert_eq!(now.reactions().len(), 1);
    let thumbs = &now.reactions()[0];
    assert_eq!(
        (thumbs.emoji.as_str(), thumbs.count as usize),
        ("👍", users.len())
    );
    assert_eq!(
        thumbs.users,
        users[..REACTION_USERS_SHOWN],
        "the earliest, bounded"
    );

    // Taking back a shown reaction brings the next user into view.
    let removed = changed(broker, change(room, target, "u00", react("👍", false))).await;
    assert_eq!(count(&removed) as usize, users.len() - 1);
    let thumbs = latest(broker, room, 1).await[0].reactions()[0].clone();
    assert_eq!(thumbs.users, users[1..=REACTION_USERS_SHOWN]);

    // Up to MAX_REACTIONS distinct emoji; one more is refused, an existing one is still fine.
    let emoji: Vec<String> = (0..MAX_REACTIONS as u32)
        .map(|i| char::from_u32(0x1F600 + i).unwrap().to_string())
        .collect();
    for e in &emoji[1..] {
        changed(broker, change(room, target, "u00", react(e, true))).await;
    }
    assert_eq!(
        latest(broker, room, 1).await[0].reactions().len(),
        MAX_REACTIONS
    );
    assert_eq!(
        broker
            .change(change(room, target, "u00", react("🚀", true)))
            .await
            .unwrap(),
        Changed::Refused(ChangeRefusal::TooManyReactions)
    );
    changed(broker, change(room, target, "u00", react(&emoji[1], false))).await;
    changed(broker, change(room, target, "u00", react("🚀", true))).await;
    let kinds: Vec<String> = latest(broker, room, 1).await[0]
        .reactions()
        .iter()
        .map(|r| r.emoji.clone())
        .collect();
    assert_eq!(kinds.len(), MAX_REACTIONS);
    assert_eq!(kinds[0], "👍", "in the order they first appeared");
    assert_eq!(kinds.last().map(String::as_str), Some("🚀"));
}

pub async fn repeated_reactions_change_nothing<B: Broker>(broker: &B) {
    let room = "c-react-again";
    let sent = publish_n(broker, room, 1).await;
    let target = sent[0].id;
    let mut sub = listen(broker, room).await.unwrap();
    let added = changed(broker, change(room, target, "bob", react("🎉", true))).await;
    for (user, add) in [("bob", true), ("carol", false)] {
        let again = broker
            .change(change(room, target, user, react("🎉", add)))
            .await
            .unwrap();
        let Changed::New(current) = again else {
            panic!("{again:?}")
        };
        assert_eq!(count(&current), 1, "the current state");
    }
    let removed = changed(broker, change(room, target, "bob", react("🎉", false))).await;
    assert_eq!(count(&removed), 0);
    assert_eq!(
        latest(broker, room, 1).await[0],
        sent[0],
        "no reaction left: the message is plain again"
    );
    // Only the two real changes were delivered (repeats are stored nowhere).
    assert_eq!(next_event(&mut sub).await, RoomEvent::Change(added));
    assert_eq!(next_event(&mut sub).await, RoomEvent::Change(removed));
    assert_eq!(sub.try_recv(), None);
}
