//! Deletions: the author's or a moderator's; the body is gone from the broker (history,
//! recovery, the edits' bodies), not hidden, and a tombstone keeps the message's place
//! (issue 22).

#![allow(clippy::unwrap_used, missing_docs)]

use super::{change, changed, edit, latest, publish_n, react};
use crate::{Broker, ChangeKind, ChangeRefusal, Changed, MessageId, NewMessage, Recovery};

pub async fn deleting_drops_the_body<B: Broker>(broker: &B) {
    let room = "c-delete";
    let before = publish_n(broker, room, 1).await;
    let secret = broker
        .publish(NewMessage {
            room: room.into(),
            from: "alice".into(),
            body: "secret-one".into(),
            nonce: None,
            reply_to: Some(before[0].id),
        })
        .await
        .unwrap()
        .into_message()
        .unwrap();
    let after = publish_n(broker, room, 1).await;
    changed(broker, change(room, secret.id, "alice", edit("secret-two"))).await;
    changed(broker, change(room, secret.id, "bob", react("👍", true))).await;

    assert_eq!(
        broker
            .change(change(room, secret.id, "bob", ChangeKind::Delete))
            .await
            .unwrap(),
        Changed::Refused(ChangeRefusal::NotAuthor)
    );
    let deleted = changed(broker, change(room, secret.id, "alice", ChangeKind::Delete)).await;
    assert_eq!(deleted.target(), Some(secret.id));

    let now = latest(broker, room, 10).await;
    let ids: Vec<MessageId> = now.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        [before[0].id, secret.id, after[0].id],
        "the tombstone keeps its place"
    );
    let tombstone = &now[1];
    assert!(tombstone.is_deleted());
    assert_eq!(tombstone.body, "");
    assert_eq!(tombstone.reply_to(), None, "a tombstone quotes nothing");
    assert!(tombstone.reactions().is_empty());
    assert_eq!(tombstone.from, "alice");

    for since in [before[0].id, secret.id, MessageId::MIN] {
        let missed = broker
            .recover(room, since, Recovery::count(100))
            .await
            .unwrap();
        let text = format!("{missed:?}");
        assert!(missed.is_some(), "{since}");
        assert!(
            !text.contains("secret"),
            "a deleted body is gone from recovery: {text}"
        );
    }
    let text = format!("{now:?}");
    assert!(!text.contains("secret"), "and from history: {text}");

    // A tombstone can be neither changed nor deleted again.
    for kind in [edit("back"), react("👍", true), ChangeKind::Delete] {
        assert_eq!(
            broker
                .change(change(room, secret.id, "alice", kind))
                .await
                .unwrap(),
            Changed::Refused(ChangeRefusal::NoSuchMessage)
        );
    }
}

pub async fn moderators_delete_anyone_s<B: Broker>(broker: &B) {
    let room = "c-delete-mod";
    let sent = publish_n(broker, room, 1).await;
    let mut by_mod = change(room, sent[0].id, "mod", ChangeKind::Delete);
    by_mod.as_author = false;
    let deleted = changed(broker, by_mod).await;
    assert!(deleted.id() > Some(sent[0].id));
    assert!(latest(broker, room, 1).await[0].is_deleted());
}
