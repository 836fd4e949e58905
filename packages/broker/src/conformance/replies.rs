//! Replies: a message may name another of its room, which must be retained and not deleted,
//! decided in the same atomic step as the store (issue 22).

#![allow(clippy::unwrap_used, missing_docs)]

use super::{change, changed, latest, publish_n};
use crate::{Broker, ChangeKind, MessageId, NewMessage, Published};

fn reply(room: &str, to: MessageId, nonce: Option<&str>) -> NewMessage {
    NewMessage {
        room: room.into(),
        from: "bob".into(),
        body: "re".into(),
        nonce: nonce.map(Into::into),
        reply_to: Some(to),
    }
}

pub async fn replies_name_a_retained_message<B: Broker>(broker: &B, history_len: usize) {
    let room = "c-reply";
    let sent = publish_n(broker, room, 2).await;
    let answer = broker
        .publish(reply(room, sent[0].id, Some("r1")))
        .await
        .unwrap();
    let Published::New(answer) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(answer.reply_to(), Some(sent[0].id));
    assert_eq!(latest(broker, room, 1).await, std::slice::from_ref(&answer));
    assert_eq!(
        broker
            .publish(reply(room, sent[0].id, Some("r1")))
            .await
            .unwrap(),
        Published::Duplicate(answer.clone()),
        "deduplicated like any message"
    );

    let never = MessageId {
        ms: answer.id.ms + 1_000,
        seq: 0,
    };
    let deleted = changed(
        broker,
        change(room, sent[1].id, "alice", ChangeKind::Delete),
    )
    .await;
    for to in [never, deleted.id().unwrap(), sent[1].id] {
        assert_eq!(
            broker.publish(reply(room, to, None)).await.unwrap(),
            Published::NoSuchReply,
            "{to}: a missing message, a change, a deleted message"
        );
    }
    assert_eq!(latest(broker, room, 10).await.len(), 3, "nothing stored");

    // A message trimmed away is no longer one to reply to.
    publish_n(broker, room, history_len).await;
    assert_eq!(
        broker.publish(reply(room, sent[0].id, None)).await.unwrap(),
        Published::NoSuchReply
    );
}
