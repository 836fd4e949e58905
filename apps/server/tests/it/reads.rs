//! Read markers and recovery of changes over real sockets on the embedded broker: a `read`
//! reaches every connection of its user and no one else, `joined` carries the marker and the
//! unread count, and a client resuming with `since` gets each change it missed exactly once.

#![allow(clippy::unwrap_used)]

use crate::changes::{change, edit, nothing_before, react, say};
use crate::common;

use common::{Node, join, message, next_where};
use skat_client::Client;
use skat_protocol::{Change, ClientFrame, MessageId, ServerFrame};

/// Sends `read` of `id` in `room`.
pub(crate) async fn read(client: &mut Client, room: &str, id: MessageId) {
    let frame = ClientFrame::Read {
        room: room.into(),
        id: id.to_string(),
    };
    client.send_frame(&frame).await.unwrap();
}

/// Waits for a `read` frame, skipping messages; returns (room, id, unread).
pub(crate) async fn marker(client: &mut Client) -> (String, MessageId, u32) {
    loop {
        match change(client).await {
            ServerFrame::Read { room, id, unread } => return (room, id, unread),
            ServerFrame::Message(_) => {}
            other => panic!("expected read, got {other:?}"),
        }
    }
}

/// The next `joined`, whole.
pub(crate) async fn joined_frame(client: &mut Client) -> ServerFrame {
    next_where(client, "joined", |f| match f {
        f @ ServerFrame::Joined { .. } => Ok(f),
        other => Err(Box::new(other)),
    })
    .await
}

#[tokio::test]
async fn a_read_reaches_every_connection_of_its_user_and_joined_carries_it() {
    let node = Node::start().await;
    let mut phone = node.client("alice").await;
    let mut laptop = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut phone, "r").await;
    join(&mut laptop, "r").await;
    join(&mut bob, "r").await;
    let first = say(&mut bob, "r", "one").await;
    let second = say(&mut bob, "r", "two").await;
    for alice in [&mut phone, &mut laptop] {
        message(alice).await;
        message(alice).await;
    }
    read(&mut phone, "r", first.id).await;
    let expected = ("r".to_owned(), first.id, 1);
    assert_eq!(marker(&mut phone).await, expected);
    assert_eq!(marker(&mut laptop).await, expected, "the other device");
    nothing_before(&mut bob, &mut phone, "r", "bob saw no read").await;
    message(&mut laptop).await;
    // A stale read (an older id) moves nothing and is not answered: the next `read` the
    // connection gets answers a valid one it sent after it (answers come in request order).
    read(&mut laptop, "r", MessageId { ms: 1, seq: 0 }).await;
    read(&mut laptop, "r", second.id).await;
    // After `second`: the message phone sent to prove bob saw no read.
    let expected = ("r".to_owned(), second.id, 1);
    assert_eq!(
        marker(&mut laptop).await,
        expected,
        "the stale read answered"
    );
    assert_eq!(marker(&mut phone).await, expected);

    // A new connection's `joined` carries the marker and the unread count after it.
    let mut tablet = node.client("alice").await;
    tablet.join("r").await.unwrap();
    let ServerFrame::Joined {
        read: at, unread, ..
    } = joined_frame(&mut tablet).await
    else {
        unreachable!()
    };
    assert_eq!((at, unread), (Some(second.id), 1));
    let third = say(&mut bob, "r", "three").await;
    read(&mut tablet, "r", third.id).await;
    for alice in [&mut phone, &mut laptop, &mut tablet] {
        let (_, id, _) = marker(alice).await;
        assert_eq!(id, third.id);
    }
}

#[tokio::test]
async fn a_resume_gets_the_changes_it_missed_exactly_once() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "r").await;
    join(&mut bob, "r").await;
    let old = say(&mut alice, "r", "old").await;
    let since = say(&mut alice, "r", "since").await;
    alice.leave("r").await.unwrap();
    while !matches!(change(&mut alice).await, ServerFrame::Left { .. }) {}
    // Away: bob reacts to an old message, alice's other device edits it, bob sends a new one
    // and reacts to it.
    message(&mut bob).await;
    message(&mut bob).await;
    let mut other = node.client("alice").await;
    join(&mut other, "r").await;
    other
        .send_frame(&edit("r", old.id, "old, edited", Some("e")))
        .await
        .unwrap();
    bob.send_frame(&react("r", old.id, "👍", true, None))
        .await
        .unwrap();
    let newer = say(&mut bob, "r", "newer").await;
    bob.send_frame(&react("r", newer.id, "🎉", true, None))
        .await
        .unwrap();
    // Wait until bob saw all of it.
    loop {
        if let ServerFrame::Reacted(r) = change(&mut bob).await
            && r.target == newer.id
        {
            break;
        }
    }
    alice.join_since("r", since.id).await.unwrap();
    let ServerFrame::Joined {
        messages,
        recovered,
        changes,
        ..
    } = joined_frame(&mut alice).await
    else {
        unreachable!()
    };
    assert!(recovered);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, newer.id);
    assert_eq!(messages[0].reactions().len(), 1, "its own change is in it");
    let kinds: Vec<(&str, MessageId)> = changes
        .iter()
        .map(|c| match c {
            Change::Edited(e) => ("edited", e.target),
            Change::Reacted(r) => ("reacted", r.target),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, [("edited", old.id), ("reacted", old.id)]);
    // Nothing of it comes again live.
    nothing_before(&mut alice, &mut bob, "r", "after the resume").await;
}
