//! Edits: only the author's (or a moderator's or the API's, `as_author: false`), applied to the
//! message's current state everywhere it is read, delivered in id order with messages, deduplicated
//! by nonce like sends; and what a client resuming after `since` is told of changes (issue 22).

#![allow(clippy::unwrap_used, missing_docs)]

use super::{change, changed, edit, latest, listen, next_event, publish_n, react};
use crate::{
    Broker, Change, ChangeKind, ChangeRefusal, Changed, MessageId, Recovery, Resume, RoomEvent,
};

pub async fn edits_are_the_author_s<B: Broker>(broker: &B) {
    let room = "c-edit";
    let mut sub = listen(broker, room).await.unwrap();
    let sent = publish_n(broker, room, 2).await;
    let target = sent[0].id;

    let refused = broker.change(change(room, target, "bob", edit("no"))).await;
    assert_eq!(
        refused.unwrap(),
        Changed::Refused(ChangeRefusal::NotAuthor),
        "someone else's message, as author"
    );
    let own = changed(broker, change(room, target, "alice", edit("fixed"))).await;
    let Change::Edited(e) = &own else {
        panic!("{own:?}")
    };
    assert!(
        e.id > sent[1].id,
        "a change has its own id, after the messages"
    );
    assert_eq!(
        (e.target, e.by.as_str(), e.body.as_str()),
        (target, "alice", "fixed")
    );
    let mut moderated = change(room, target, "mod", edit("moderated"));
    moderated.as_author = false;
    let by_mod = changed(broker, moderated).await;
    assert!(by_mod.id() > own.id());

    let now = latest(broker, room, 10).await;
    assert_eq!(now.len(), 2, "history holds messages only");
    assert_eq!(now[0].body, "moderated");
    let Change::Edited(last) = &by_mod else {
        panic!("{by_mod:?}")
    };
    assert_eq!(now[0].edited(), Some(last.ts));
    assert_eq!((now[0].id, now[0].from.as_str()), (target, "alice"));
    assert_eq!(now[1], sent[1], "the other message is untouched");

    let missing = MessageId {
        ms: sent[1].id.ms + 1_000,
        seq: 0,
    };
    for (room, target) in [(room, missing), ("c-edit-never", target)] {
        assert_eq!(
            broker
                .change(change(room, target, "alice", edit("x")))
                .await
                .unwrap(),
            Changed::Refused(ChangeRefusal::NoSuchMessage)
        );
    }
    // A change is no message: it cannot be edited.
    let change_id = own.id().unwrap();
    assert_eq!(
        broker
            .change(change(room, change_id, "alice", edit("x")))
            .await
            .unwrap(),
        Changed::Refused(ChangeRefusal::NoSuchMessage)
    );

    // Subscribers get the messages, then the accepted changes, in id order, each once.
    for expected in &sent {
        assert_eq!(
            next_event(&mut sub).await,
            RoomEvent::Message(expected.clone())
        );
    }
    assert_eq!(next_event(&mut sub).await, RoomEvent::Change(own));
    assert_eq!(next_event(&mut sub).await, RoomEvent::Change(by_mod));
    let after = publish_n(broker, room, 1).await;
    assert_eq!(
        next_event(&mut sub).await,
        RoomEvent::Message(after[0].clone()),
        "refused changes are not delivered"
    );
}

pub async fn changes_are_deduplicated_by_nonce<B: Broker>(broker: &B) {
    let room = "c-edit-nonce";
    let sent = publish_n(broker, room, 1).await;
    let mut sub = listen(broker, room).await.unwrap();
    let mut first = change(room, sent[0].id, "alice", edit("once"));
    first.nonce = Some("e1".into());
    let original = changed(broker, first.clone()).await;
    let mut retry = first.clone();
    retry.kind = edit("twice");
    assert_eq!(
        broker.change(retry).await.unwrap(),
        Changed::Duplicate(original.clone()),
        "a retry returns the original"
    );
    assert_eq!(latest(broker, room, 1).await[0].body, "once");
    // Another user's same nonce is another request.
    let mut other = change(room, sent[0].id, "bob", react("👍", true));
    other.nonce = Some("e1".into());
    let reacted = changed(broker, other).await;
    assert_eq!(next_event(&mut sub).await, RoomEvent::Change(original));
    assert_eq!(next_event(&mut sub).await, RoomEvent::Change(reacted));
    assert_eq!(sub.try_recv(), None, "the retry was not delivered");
    // The message deleted since (its edits' bodies with it): a retry of the edit has no edit to
    // answer with, and is answered as an edit of a deleted message is.
    changed(
        broker,
        change(room, sent[0].id, "alice", ChangeKind::Delete),
    )
    .await;
    assert_eq!(
        broker.change(first).await.unwrap(),
        Changed::Refused(ChangeRefusal::NoSuchMessage),
        "a retried edit of a message deleted since"
    );
}

/// A nonce names one request per sender and kind of request (a send, an edit, a delete, adding
/// a reaction, removing one): reused for another kind it is a new request, so no retry is ever
/// answered with an entry of another kind, nor with one that was never stored.
pub async fn a_nonce_names_one_request_per_kind<B: Broker>(broker: &B) {
    let room = "c-nonce-kinds";
    let send = |body: &str| crate::NewMessage {
        room: room.into(),
        from: "alice".into(),
        body: body.into(),
        nonce: Some("k1".into()),
        reply_to: None,
    };
    let crate::Published::New(sent) = broker.publish(send("m0")).await.unwrap() else {
        panic!("a fresh nonce is a new message");
    };
    let with_nonce = |kind| {
        let mut new = change(room, sent.id, "alice", kind);
        new.nonce = Some("k1".into());
        new
    };
    let edited = changed(broker, with_nonce(edit("e1"))).await;
    assert!(matches!(&edited, Change::Edited(e) if e.body == "e1"));
    match broker.publish(send("again")).await.unwrap() {
        crate::Published::Duplicate(message) => assert_eq!(message.id, sent.id),
        other => panic!("a send's retry answers the message: {other:?}"),
    }
    assert_eq!(
        broker.change(with_nonce(edit("e2"))).await.unwrap(),
        Changed::Duplicate(edited.clone()),
        "an edit's retry answers the edit"
    );
    let added = changed(broker, with_nonce(react("👍", true))).await;
    assert!(matches!(&added, Change::Reacted(r) if r.add && r.count == 1));
    let removed = changed(broker, with_nonce(react("👍", false))).await;
    assert!(matches!(&removed, Change::Reacted(r) if !r.add && r.count == 0));
    assert_eq!(
        broker.change(with_nonce(react("👍", true))).await.unwrap(),
        Changed::Duplicate(added),
        "a retried add answers the add, with the count it had"
    );
    let deleted = changed(broker, with_nonce(crate::ChangeKind::Delete)).await;
    assert!(matches!(deleted, Change::Deleted(_)));
    assert!(latest(broker, room, 1).await[0].is_deleted());
}

pub async fn recovery_returns_changes_to_older_messages_only<B: Broker>(broker: &B) {
    let room = "c-edit-recover";
    let sent = publish_n(broker, room, 3).await;
    let since = sent[1].id;
    let older = changed(broker, change(room, sent[0].id, "alice", edit("e0"))).await;
    let newer = changed(broker, change(room, sent[2].id, "alice", edit("e2"))).await;
    let at = changed(broker, change(room, since, "bob", react("👍", true))).await;
    assert!(newer.id() < at.id());

    let missed = broker
        .recover(room, since, Recovery::count(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(missed.messages.len(), 1);
    assert_eq!(
        missed.messages[0].body, "e2",
        "a message after since comes in its current state, its edit in it"
    );
    assert_eq!(
        missed.changes,
        vec![older.clone(), at.clone()],
        "each change once"
    );

    // A change's id is a `since` like a message's: the client tracks the last of either kind.
    let from_change = broker
        .recover(room, older.id().unwrap(), Recovery::count(100))
        .await
        .unwrap()
        .unwrap();
    assert!(
        from_change.messages.is_empty(),
        "every message is older than that change"
    );
    assert_eq!(from_change.changes, vec![newer.clone(), at.clone()]);

    // Changes count toward the bounds: one message and two changes are three entries.
    assert_eq!(
        broker
            .recover(room, since, Recovery::count(2))
            .await
            .unwrap(),
        None
    );

    let snapshot = broker
        .join_snapshot(
            room,
            "bob",
            false,
            Resume {
                since: Some(since),
                ..Resume::latest(10)
            },
        )
        .await
        .unwrap();
    assert!(snapshot.recovered);
    assert_eq!(
        (snapshot.messages, snapshot.changes),
        (missed.messages, missed.changes)
    );
    let fresh = broker
        .join_snapshot(room, "bob", false, Resume::latest(10))
        .await
        .unwrap();
    assert!(
        fresh.changes.is_empty(),
        "the latest page carries no changes"
    );

    // History pages skip change entries and hold the current state.
    let page = broker.history(room, None, 2).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        [sent[1].id, sent[2].id]
    );
    assert!(page.has_more);
    let all = latest(broker, room, 10).await;
    assert_eq!(
        all.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["e0", "m1", "e2"]
    );
    assert_eq!(all[1].reactions()[0].count, 1);
}
