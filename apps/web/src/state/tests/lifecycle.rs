//! Messages that change after they arrive (edits, deletions, reactions, replies) and the read
//! state (markers, unread counts, the divider, the `read` the shown room calls for).

use skat_protocol::{Deleted, Edited, MessageId, Reacted};

use super::*;

fn id(s: &str) -> MessageId {
    s.parse().unwrap()
}

/// `me` online, in room `a` (shown) with messages 1-0 (mine) and 2-0 (bob's).
fn chat_in_a() -> Chat {
    let mut chat = Chat::new("me", "t");
    chat.join("a");
    online(&mut chat);
    chat.apply(
        joined(
            "a",
            vec![
                msg("a", "1-0", "me", "mine", None),
                msg("a", "2-0", "bob", "hers", None),
            ],
            false,
        ),
        0.0,
    );
    chat
}

/// `me` online in rooms `a` (with bob's message 1-0) and `b` (shown, its `join` unanswered).
fn in_a_and_b() -> Chat {
    let mut chat = Chat::new("me", "t");
    chat.join("a");
    chat.join("b");
    online(&mut chat);
    chat.apply(
        joined("a", vec![msg("a", "1-0", "bob", "x", None)], false),
        0.0,
    );
    chat
}

fn edited(change: &str, target: &str, body: &str, nonce: Option<&str>) -> ServerFrame {
    ServerFrame::Edited(Edited {
        room: "a".into(),
        id: id(change),
        target: id(target),
        by: "me".into(),
        body: body.into(),
        ts: 7,
        nonce: nonce.map(Into::into),
    })
}

fn deleted(change: &str, target: &str) -> ServerFrame {
    ServerFrame::Deleted(Deleted {
        room: "a".into(),
        id: id(change),
        target: id(target),
        by: "me".into(),
        ts: 8,
        nonce: None,
    })
}

fn reacted(change: &str, user: &str, emoji: &str, add: bool, count: u32) -> Reacted {
    Reacted {
        room: "a".into(),
        id: id(change),
        target: id("2-0"),
        user: user.into(),
        emoji: emoji.into(),
        add,
        count,
        nonce: None,
    }
}

/// Applies a `reacted` of the change `change` to message 2-0 of room `a`.
fn react_to(chat: &mut Chat, change: &str, user: &str, emoji: &str, add: bool, count: u32) {
    chat.apply(
        ServerFrame::Reacted(reacted(change, user, emoji, add, count)),
        0.0,
    );
}

fn shown<'c>(chat: &'c Chat, message: &str) -> &'c Message {
    chat.rooms["a"].get(id(message)).unwrap()
}

fn rejoin_since(chat: &mut Chat) -> Option<String> {
    chat.on_close(1, 10);
    chat.on_open().into_iter().find_map(|f| match f {
        ClientFrame::Join { since, .. } => since,
        _ => None,
    })
}

#[test]
fn an_edit_replaces_the_body_once_and_the_own_last_message_is_edited_with_up() {
    let mut chat = chat_in_a();
    // Up in an empty composer: our newest message, not bob's.
    assert_eq!(chat.edit_last("a").as_deref(), Some("mine"));
    assert_eq!(chat.rooms["a"].editing, Some(id("1-0")));
    assert_eq!(chat.start_edit("a", id("2-0")), None, "not ours");
    let frame = chat.submit("a", "fixed", 0.0).unwrap();
    let ClientFrame::Edit {
        id: target,
        body,
        nonce,
        ..
    } = frame
    else {
        panic!("{frame:?}")
    };
    assert_eq!((target.as_str(), body.as_str()), ("1-0", "fixed"));
    assert_eq!(chat.rooms["a"].editing, None, "the edit ended");
    // Nothing changes until the server's `edited` comes back.
    assert_eq!(shown(&chat, "1-0").body, "mine");
    let v = chat.rooms["a"].version();
    chat.apply(edited("3-0", "1-0", "fixed", nonce.as_deref()), 0.0);
    assert_eq!(shown(&chat, "1-0").body, "fixed");
    assert_eq!(shown(&chat, "1-0").edited(), Some(7));
    assert!(chat.rooms["a"].version() > v);
    // A replay, and an older edit arriving after it, change nothing.
    let v = chat.rooms["a"].version();
    chat.apply(edited("3-0", "1-0", "fixed", None), 0.0);
    chat.apply(edited("2-5", "1-0", "older", None), 0.0);
    assert_eq!(shown(&chat, "1-0").body, "fixed");
    assert_eq!(chat.rooms["a"].version(), v);
    // The rejoin resumes after the change, the greatest id seen.
    assert_eq!(rejoin_since(&mut chat).as_deref(), Some("3-0"));
}

#[test]
fn escape_cancels_and_an_unchanged_edit_sends_nothing() {
    let mut chat = chat_in_a();
    chat.edit_last("a");
    assert!(chat.cancel_compose("a"));
    assert!(!chat.cancel_compose("a"), "nothing left to cancel");
    // Enter then sends a new message rather than an edit.
    assert!(matches!(
        chat.submit("a", "new", 0.0),
        Ok(ClientFrame::Send { .. })
    ));
    chat.edit_last("a");
    assert_eq!(chat.submit("a", "mine", 0.0), Err(Unsent::Unchanged));
    assert_eq!(chat.rooms["a"].editing, None);
}

/// The nonce of an `edit` frame.
fn edit_nonce(frame: ClientFrame) -> String {
    match frame {
        ClientFrame::Edit { nonce, .. } => nonce.unwrap(),
        other => panic!("{other:?}"),
    }
}

fn refusal(code: ErrorCode, nonce: &str) -> ServerFrame {
    ServerFrame::Error {
        code,
        message: "no".into(),
        nonce: Some(nonce.into()),
    }
}

#[test]
fn a_refused_edit_goes_back_to_the_composer_in_edit_mode() {
    let mut chat = chat_in_a();
    chat.edit_last("a");
    let nonce = edit_nonce(chat.submit("a", "fixed", 0.0).unwrap());
    assert_eq!(
        chat.rooms["a"].editing, None,
        "the composer is free meanwhile"
    );
    chat.apply(refusal(ErrorCode::RateLimited, &nonce), 0.0);
    assert_eq!(chat.rooms["a"].editing, Some(id("1-0")), "editing it again");
    assert!(chat.notice.as_deref().unwrap().contains("rate_limited"));
    assert_eq!(chat.take_draft("a", true).as_deref(), Some("fixed"));
    assert_eq!(chat.take_draft("a", true), None, "taken once");
    // Saved again, then stored: nothing more comes back, even for a stray error with it.
    let nonce = edit_nonce(chat.submit("a", "fixed", 0.0).unwrap());
    chat.apply(edited("3-0", "1-0", "fixed", Some(&nonce)), 0.0);
    chat.apply(refusal(ErrorCode::Unavailable, &nonce), 0.0);
    assert_eq!(
        (chat.rooms["a"].editing, &chat.rooms["a"].draft),
        (None, &None)
    );

    // The user was typing something else meanwhile: it stays, and the edit mode ends.
    chat.edit_last("a");
    let nonce = edit_nonce(chat.submit("a", "again", 0.0).unwrap());
    chat.apply(refusal(ErrorCode::RateLimited, &nonce), 0.0);
    assert_eq!(chat.rooms["a"].editing, Some(id("1-0")));
    assert_eq!(chat.take_draft("a", false), None);
    assert_eq!(
        (chat.rooms["a"].editing, &chat.rooms["a"].draft),
        (None, &None)
    );

    // Refused once the message is gone: only the notice tells (the text back without an edit
    // to save would go out as a new message on Enter).
    chat.edit_last("a");
    let nonce = edit_nonce(chat.submit("a", "again", 0.0).unwrap());
    chat.apply(deleted("4-0", "1-0"), 0.0);
    chat.apply(refusal(ErrorCode::NoSuchMessage, &nonce), 0.0);
    assert_eq!(
        (chat.rooms["a"].editing, &chat.rooms["a"].draft),
        (None, &None)
    );
    assert!(chat.notice.as_deref().unwrap().contains("no_such_message"));

    // The composer moved on to a reply: only the notice tells.
    chat.apply(
        ServerFrame::Message(msg("a", "5-0", "me", "new", None)),
        0.0,
    );
    chat.edit_last("a");
    let nonce = edit_nonce(chat.submit("a", "newer", 0.0).unwrap());
    chat.reply_to("a", id("2-0"));
    chat.apply(refusal(ErrorCode::RateLimited, &nonce), 0.0);
    assert_eq!(chat.rooms["a"].editing, None);
    assert_eq!(chat.rooms["a"].reply_to, Some(id("2-0")));
    assert_eq!(chat.rooms["a"].draft, None);
}

#[test]
fn a_deleted_message_is_a_tombstone_nothing_changes_any_more() {
    let mut chat = chat_in_a();
    react_to(&mut chat, "3-0", "me", "👍", true, 1);
    assert!(matches!(
        chat.delete("a", id("2-0")),
        Some(ClientFrame::Delete { .. })
    ));
    chat.apply(deleted("4-0", "2-0"), 0.0);
    let tombstone = shown(&chat, "2-0");
    assert!(tombstone.is_deleted());
    assert_eq!(tombstone.body, "");
    assert!(tombstone.reactions().is_empty());
    let v = chat.rooms["a"].version();
    chat.apply(deleted("4-0", "2-0"), 0.0);
    chat.apply(edited("5-0", "2-0", "back", None), 0.0);
    assert_eq!(shown(&chat, "2-0").body, "");
    assert_eq!(chat.rooms["a"].version(), v);
    assert_eq!(chat.start_edit("a", id("2-0")), None);
}

#[test]
fn reactions_take_the_count_of_the_change_and_toggle_by_what_is_shown() {
    let mut chat = chat_in_a();
    let toggle = |chat: &mut Chat| match chat.react("a", id("2-0"), "👍") {
        Some(ClientFrame::React { add, .. }) => add,
        other => panic!("{other:?}"),
    };
    assert!(toggle(&mut chat), "not ours yet: add");
    react_to(&mut chat, "3-0", "me", "👍", true, 1);
    react_to(&mut chat, "4-0", "bob", "👍", true, 2);
    let reactions = shown(&chat, "2-0").reactions();
    assert_eq!(reactions.len(), 1);
    assert_eq!((reactions[0].count, reactions[0].users.len()), (2, 2));
    assert!(!toggle(&mut chat), "ours: take it back");
    // Replayed (live, then recovered in a `joined`): the count is the change's, not moved.
    let v = chat.rooms["a"].version();
    react_to(&mut chat, "4-0", "bob", "👍", true, 2);
    assert_eq!(chat.rooms["a"].version(), v);
    // A no-op answer carries the target's id: not taken for the greatest seen.
    let mut noop = reacted("2-0", "me", "👍", true, 2);
    noop.target = id("2-0");
    chat.apply(ServerFrame::Reacted(noop), 0.0);
    assert_eq!(
        chat.rooms["a"].since().map(|i| i.to_string()).as_deref(),
        Some("4-0")
    );
    react_to(&mut chat, "5-0", "me", "👍", false, 1);
    react_to(&mut chat, "6-0", "bob", "👍", false, 0);
    assert!(
        shown(&chat, "2-0").reactions().is_empty(),
        "the last one gone"
    );
    assert_eq!(chat.react("a", id("2-0"), "not one"), None);
    assert!(chat.notice.is_some(), "an invalid emoji is refused here");
}

#[test]
fn changes_recovered_in_joined_apply_once_before_its_messages() {
    let mut chat = chat_in_a();
    chat.on_close(1, 10);
    chat.on_open();
    online_again(&mut chat);
    let ServerFrame::Edited(edit) = edited("3-0", "1-0", "fixed", None) else {
        unreachable!()
    };
    let ServerFrame::Deleted(delete) = deleted("5-0", "2-0") else {
        unreachable!()
    };
    let ServerFrame::Joined {
        room,
        members,
        epoch,
        ..
    } = joined("a", vec![], true)
    else {
        unreachable!()
    };
    chat.apply(
        ServerFrame::Joined {
            room,
            members,
            // A message after `since`, older than one of the changes.
            messages: vec![msg("a", "4-0", "bob", "later", None)],
            recovered: true,
            epoch,
            more_members: false,
            read: Some(id("2-0")),
            unread: 1,
            changes: vec![Change::Edited(edit.clone()), Change::Deleted(delete)],
        },
        0.0,
    );
    assert_eq!(shown(&chat, "1-0").body, "fixed");
    assert!(shown(&chat, "2-0").is_deleted());
    assert_eq!(chat.rooms["a"].messages().len(), 3);
    assert_eq!(
        chat.rooms["a"].since().map(|i| i.to_string()).as_deref(),
        Some("5-0")
    );
    let v = chat.rooms["a"].version();
    chat.apply(ServerFrame::Edited(edit), 0.0);
    assert_eq!(chat.rooms["a"].version(), v, "seen already");
}

#[test]
fn a_reply_names_its_target_and_is_kept_for_a_retry() {
    let mut chat = chat_in_a();
    chat.reply_to("a", id("2-0"));
    let frame = chat.submit("a", "answer", 0.0).unwrap();
    assert!(
        matches!(&frame, ClientFrame::Send { reply_to: Some(r), .. } if r == "2-0"),
        "{frame:?}"
    );
    assert_eq!(chat.rooms["a"].reply_to, None, "one send only");
    let nonce = chat.rooms["a"].pending[0].nonce.clone();
    chat.apply(
        ServerFrame::Error {
            code: ErrorCode::Unavailable,
            message: "later".into(),
            nonce: Some(nonce.clone()),
        },
        0.0,
    );
    assert!(matches!(
        chat.retry("a", &nonce),
        Some(ClientFrame::Send { reply_to: Some(r), .. }) if r == "2-0"
    ));
    // A reply and an edit exclude each other.
    chat.reply_to("a", id("2-0"));
    chat.edit_last("a");
    assert_eq!(chat.rooms["a"].reply_to, None);
    chat.reply_to("a", id("1-0"));
    assert_eq!(chat.rooms["a"].editing, None);
}

#[test]
fn unread_counts_come_from_the_server_and_the_shown_room_is_marked_read_once() {
    let mut chat = in_a_and_b();
    // b: shown, two unread after our marker.
    let ServerFrame::Joined { members, epoch, .. } = joined("b", vec![], false) else {
        unreachable!()
    };
    chat.apply(
        ServerFrame::Joined {
            room: "b".into(),
            members,
            messages: vec![
                msg("b", "1-0", "bob", "read", None),
                msg("b", "2-0", "bob", "new", None),
                msg("b", "3-0", "bob", "newer", None),
            ],
            recovered: false,
            epoch,
            more_members: false,
            read: Some(id("1-0")),
            unread: 2,
            changes: vec![],
        },
        0.0,
    );
    let b = &chat.rooms["b"];
    assert_eq!(b.unread, 2);
    assert_eq!(b.divider_before(), Some(id("2-0")), "after the marker");
    // The shown room is marked read up to its newest message, once.
    assert_eq!(chat.read_due(), Some(("b", id("3-0"))));
    assert_eq!(
        chat.mark_read(),
        Some(ClientFrame::Read {
            room: "b".into(),
            id: "3-0".into()
        })
    );
    assert_eq!(chat.rooms["b"].unread, 0);
    assert_eq!(chat.mark_read(), None, "on its way");
    chat.apply(
        ServerFrame::Read {
            room: "b".into(),
            id: id("3-0"),
            unread: 0,
        },
        0.0,
    );
    assert_eq!(chat.mark_read(), None, "nothing newer");
    // A live message in a room not shown counts until the server's next count...
    chat.apply(ServerFrame::Message(msg("a", "2-0", "bob", "y", None)), 0.0);
    assert_eq!(chat.rooms["a"].unread, 1);
    // ...which another connection of ours sends when it reads the room; an older marker
    // arriving late does not move it back.
    chat.apply(
        ServerFrame::Read {
            room: "a".into(),
            id: id("2-0"),
            unread: 0,
        },
        0.0,
    );
    assert_eq!(chat.rooms["a"].unread, 0);
    chat.apply(
        ServerFrame::Read {
            room: "a".into(),
            id: id("1-0"),
            unread: 1,
        },
        0.0,
    );
    assert_eq!(
        (chat.rooms["a"].read, chat.rooms["a"].unread),
        (Some(id("2-0")), 0)
    );
    // A new message in the shown room (ours too) is read again; nothing while offline.
    chat.apply(
        ServerFrame::Message(msg("b", "4-0", "me", "mine", None)),
        0.0,
    );
    assert_eq!(chat.read_due(), Some(("b", id("4-0"))));
    chat.on_close(1, 10);
    assert_eq!(chat.mark_read(), None);
}

#[test]
fn showing_a_room_with_unread_messages_puts_the_divider_after_its_marker() {
    let mut chat = in_a_and_b();
    chat.apply(joined("b", vec![], false), 0.0);
    chat.apply(
        ServerFrame::Read {
            room: "a".into(),
            id: id("1-0"),
            unread: 0,
        },
        0.0,
    );
    assert_eq!(chat.rooms["a"].divider_before(), None);
    chat.apply(ServerFrame::Message(msg("a", "2-0", "bob", "y", None)), 0.0);
    chat.switch_to("a");
    assert_eq!(chat.rooms["a"].unread, 0);
    assert_eq!(chat.rooms["a"].divider_before(), Some(id("2-0")));
}
