//! Golden tests of issue 22's additions (messages people can change): the new client frames, the
//! message object's optional fields, the change frames and `joined`'s new fields. All additive:
//! a plain message, and a `joined` without any of them, encode byte for byte as before, and
//! what an older peer wrote still decodes.

use skat_protocol::{
    Change, ClientFrame, Deleted, Edited, Extras, Message, MessageId, Reacted, Reaction,
    ServerFrame, decode_client, decode_server, encode_server, message_size,
};

use super::{client_golden, message, s, server_golden};

fn id(text: &str) -> MessageId {
    text.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Client frames
// ---------------------------------------------------------------------------------------------

#[test]
fn client_send_with_reply_to() {
    client_golden(
        r#"{"type":"send","room":"general","body":"agreed","nonce":"c-18","reply_to":"1764290000000-0"}"#,
        &ClientFrame::Send {
            room: s("general"),
            body: s("agreed"),
            nonce: Some(s("c-18")),
            reply_to: Some(s("1764290000000-0")),
        },
    );
}

#[test]
fn client_edit() {
    client_golden(
        r#"{"type":"edit","room":"general","id":"1764290000000-1","body":"hello world!"}"#,
        &ClientFrame::Edit {
            room: s("general"),
            id: s("1764290000000-1"),
            body: s("hello world!"),
            nonce: None,
        },
    );
    client_golden(
        r#"{"type":"edit","room":"general","id":"1764290000000-1","body":"hello world!","nonce":"e-1"}"#,
        &ClientFrame::Edit {
            room: s("general"),
            id: s("1764290000000-1"),
            body: s("hello world!"),
            nonce: Some(s("e-1")),
        },
    );
}

#[test]
fn client_delete() {
    client_golden(
        r#"{"type":"delete","room":"general","id":"1764290000000-1"}"#,
        &ClientFrame::Delete {
            room: s("general"),
            id: s("1764290000000-1"),
            nonce: None,
        },
    );
    client_golden(
        r#"{"type":"delete","room":"general","id":"1764290000000-1","nonce":"d-1"}"#,
        &ClientFrame::Delete {
            room: s("general"),
            id: s("1764290000000-1"),
            nonce: Some(s("d-1")),
        },
    );
}

#[test]
fn client_react() {
    client_golden(
        r#"{"type":"react","room":"general","id":"1764290000000-0","emoji":"👍","add":true}"#,
        &ClientFrame::React {
            room: s("general"),
            id: s("1764290000000-0"),
            emoji: s("👍"),
            add: true,
            nonce: None,
        },
    );
    client_golden(
        r#"{"type":"react","room":"general","id":"1764290000000-0","emoji":"👍","add":false,"nonce":"r-2"}"#,
        &ClientFrame::React {
            room: s("general"),
            id: s("1764290000000-0"),
            emoji: s("👍"),
            add: false,
            nonce: Some(s("r-2")),
        },
    );
}

#[test]
fn client_read() {
    client_golden(
        r#"{"type":"read","room":"general","id":"1764290000000-1"}"#,
        &ClientFrame::Read {
            room: s("general"),
            id: s("1764290000000-1"),
        },
    );
}

#[test]
fn a_react_without_add_is_a_bad_frame() {
    let err =
        decode_client(r#"{"type":"react","room":"general","id":"1-0","emoji":"👍"}"#).unwrap_err();
    assert_eq!(err.code, skat_protocol::ErrorCode::BadFrame);
}

// ---------------------------------------------------------------------------------------------
// The message object
// ---------------------------------------------------------------------------------------------

/// A message with `extras`.
fn changed(extras: Extras) -> Message {
    let mut m = message(
        "1764290000000-1",
        1_764_290_000_000,
        "alice",
        "hello world!",
        None,
    );
    m.extras = Some(Box::new(extras));
    m
}

#[test]
fn a_plain_message_is_byte_for_byte_unchanged() {
    // The very strings of `server_message` and `server_message_with_nonce`, before issue 22.
    let plain = r#"{"type":"message","room":"general","id":"1764290000000-0","from":"bob","body":"hi all","ts":1764290000000}"#;
    let m = message("1764290000000-0", 1_764_290_000_000, "bob", "hi all", None);
    assert_eq!(m.extras, None);
    server_golden(plain, &ServerFrame::Message(m.clone()));
    // Empty extras (a box that holds nothing) encode as none.
    let mut boxed = m;
    boxed.extras = Some(Box::default());
    assert_eq!(encode_server(&ServerFrame::Message(boxed)), plain);
}

#[test]
fn server_message_replying() {
    server_golden(
        r#"{"type":"message","room":"general","id":"1764290000000-2","from":"bob","body":"agreed","ts":1764290000000,"nonce":"c-18","reply_to":"1764290000000-1"}"#,
        &ServerFrame::Message({
            let mut m = message(
                "1764290000000-2",
                1_764_290_000_000,
                "bob",
                "agreed",
                Some("c-18"),
            );
            m.extras_mut().reply_to = Some(id("1764290000000-1"));
            m
        }),
    );
}

#[test]
fn server_message_edited() {
    server_golden(
        r#"{"type":"message","room":"general","id":"1764290000000-1","from":"alice","body":"hello world!","ts":1764290000000,"edited":1764290060000}"#,
        &ServerFrame::Message(changed(Extras {
            edited: Some(1_764_290_060_000),
            ..Extras::default()
        })),
    );
}

#[test]
fn server_message_deleted() {
    let mut m = changed(Extras {
        deleted: true,
        ..Extras::default()
    });
    m.body.clear();
    server_golden(
        r#"{"type":"message","room":"general","id":"1764290000000-1","from":"alice","body":"","ts":1764290000000,"deleted":true}"#,
        &ServerFrame::Message(m),
    );
}

#[test]
fn server_message_with_reactions() {
    server_golden(
        concat!(
            r#"{"type":"message","room":"general","id":"1764290000000-1","from":"alice","body":"hello world!","ts":1764290000000,"#,
            r#""reactions":[{"emoji":"👍","count":2,"users":["bob","carol"]},{"emoji":"🎉","count":1,"users":["bob"]}]}"#,
        ),
        &ServerFrame::Message(changed(Extras {
            reactions: vec![
                Reaction {
                    emoji: s("👍"),
                    count: 2,
                    users: vec![s("bob"), s("carol")],
                },
                Reaction {
                    emoji: s("🎉"),
                    count: 1,
                    users: vec![s("bob")],
                },
            ],
            ..Extras::default()
        })),
    );
}

#[test]
fn server_message_with_every_new_field() {
    let json = concat!(
        r#"{"type":"message","room":"general","id":"1764290000000-1","from":"alice","body":"hello world!","ts":1764290000000,"nonce":"c-17","#,
        r#""reply_to":"1764290000000-0","edited":1764290060000,"reactions":[{"emoji":"👍","count":25,"users":["bob"]}]}"#,
    );
    let mut m = changed(Extras {
        reply_to: Some(id("1764290000000-0")),
        edited: Some(1_764_290_060_000),
        deleted: false,
        reactions: vec![Reaction {
            emoji: s("👍"),
            count: 25,
            users: vec![s("bob")],
        }],
    });
    m.nonce = Some(s("c-17"));
    server_golden(json, &ServerFrame::Message(m.clone()));
    // `message_size` counts them exactly: the object without `"type":"message",`, plus a comma.
    let object = json.replacen(r#""type":"message","#, "", 1);
    assert_eq!(message_size(&m), object.len() + 1);
}

#[test]
fn a_v1_message_without_the_new_fields_still_decodes() {
    let frame = decode_server(
        r#"{"type":"message","room":"general","id":"1-0","from":"bob","body":"hi","ts":1,"nonce":"n","future":{"x":1}}"#,
    )
    .unwrap();
    let ServerFrame::Message(m) = frame else {
        panic!("{frame:?}");
    };
    assert_eq!(m.extras, None);
    assert_eq!(m.nonce.as_deref(), Some("n"));
    // Explicit nulls and defaults count as absent.
    let frame = decode_server(
        r#"{"type":"message","room":"general","id":"1-0","from":"bob","body":"hi","ts":1,"reply_to":null,"edited":null,"deleted":false,"reactions":[]}"#,
    )
    .unwrap();
    assert_eq!(
        frame,
        ServerFrame::Message(message("1-0", 1, "bob", "hi", None))
    );
}

// ---------------------------------------------------------------------------------------------
// Changes
// ---------------------------------------------------------------------------------------------

fn edited(nonce: Option<&str>) -> Edited {
    Edited {
        room: s("general"),
        id: id("1764290060000-0"),
        target: id("1764290000000-1"),
        by: s("alice"),
        body: s("hello world!"),
        ts: 1_764_290_060_000,
        nonce: nonce.map(s),
    }
}

fn deleted(nonce: Option<&str>) -> Deleted {
    Deleted {
        room: s("general"),
        id: id("1764290070000-0"),
        target: id("1764290000000-1"),
        by: s("alice"),
        ts: 1_764_290_070_000,
        nonce: nonce.map(s),
    }
}

fn reacted(nonce: Option<&str>) -> Reacted {
    Reacted {
        room: s("general"),
        id: id("1764290065000-0"),
        target: id("1764290000000-1"),
        user: s("bob"),
        emoji: s("👍"),
        add: true,
        count: 2,
        nonce: nonce.map(s),
    }
}

const EDITED: &str = r#"{"type":"edited","room":"general","id":"1764290060000-0","target":"1764290000000-1","by":"alice","body":"hello world!","ts":1764290060000}"#;
const DELETED: &str = r#"{"type":"deleted","room":"general","id":"1764290070000-0","target":"1764290000000-1","by":"alice","ts":1764290070000}"#;
const REACTED: &str = r#"{"type":"reacted","room":"general","id":"1764290065000-0","target":"1764290000000-1","user":"bob","emoji":"👍","add":true,"count":2}"#;

#[test]
fn server_edited() {
    server_golden(EDITED, &ServerFrame::Edited(edited(None)));
    server_golden(
        r#"{"type":"edited","room":"general","id":"1764290060000-0","target":"1764290000000-1","by":"alice","body":"hello world!","ts":1764290060000,"nonce":"e-1"}"#,
        &ServerFrame::Edited(edited(Some("e-1"))),
    );
}

#[test]
fn server_deleted() {
    server_golden(DELETED, &ServerFrame::Deleted(deleted(None)));
    server_golden(
        r#"{"type":"deleted","room":"general","id":"1764290070000-0","target":"1764290000000-1","by":"alice","ts":1764290070000,"nonce":"d-1"}"#,
        &ServerFrame::Deleted(deleted(Some("d-1"))),
    );
}

#[test]
fn server_reacted() {
    server_golden(REACTED, &ServerFrame::Reacted(reacted(None)));
    let mut removed = reacted(Some("r-2"));
    removed.add = false;
    removed.count = 0;
    server_golden(
        r#"{"type":"reacted","room":"general","id":"1764290065000-0","target":"1764290000000-1","user":"bob","emoji":"👍","add":false,"count":0,"nonce":"r-2"}"#,
        &ServerFrame::Reacted(removed),
    );
}

#[test]
fn server_read() {
    server_golden(
        r#"{"type":"read","room":"general","id":"1764290000000-1","unread":0}"#,
        &ServerFrame::Read {
            room: s("general"),
            id: id("1764290000000-1"),
            unread: 0,
        },
    );
}

#[test]
fn a_change_is_its_frame() {
    // `joined.changes` holds the very objects the live frames are.
    for (json, change) in [
        (EDITED, Change::Edited(edited(None))),
        (DELETED, Change::Deleted(deleted(None))),
        (REACTED, Change::Reacted(reacted(None))),
    ] {
        assert_eq!(serde_json::to_string(&change).unwrap(), json);
        assert_eq!(serde_json::from_str::<Change>(json).unwrap(), change);
        assert_eq!(change.target(), Some(id("1764290000000-1")));
    }
    assert_eq!(
        Change::Reacted(reacted(None)).id(),
        Some(id("1764290065000-0"))
    );
}

#[test]
fn a_change_of_a_kind_added_later_leaves_the_rest_of_joined_readable() {
    let frame = decode_server(concat!(
        r#"{"type":"joined","room":"general","members":[],"messages":[],"recovered":true,"changes":["#,
        r#"{"type":"pinned","room":"general","id":"1764290070000-0","target":"1764290000000-1"},"#,
        r#"{"type":"edited","room":"general","id":"1764290060000-0","target":"1764290000000-1","by":"alice","body":"hello world!","ts":1764290060000}"#,
        r#"]}"#,
    ))
    .unwrap();
    let ServerFrame::Joined { changes, .. } = frame else {
        panic!("{frame:?}");
    };
    assert_eq!(changes, [Change::Unknown, Change::Edited(edited(None))]);
    assert_eq!(changes[0].id(), None);
}

// ---------------------------------------------------------------------------------------------
// joined
// ---------------------------------------------------------------------------------------------

#[test]
fn server_joined_with_read_state_and_changes() {
    server_golden(
        concat!(
            r#"{"type":"joined","room":"general","members":["alice","bob"],"messages":[],"recovered":true,"epoch":"1764280000.118200","#,
            r#""read":"1764290000000-1","unread":3,"changes":["#,
            r#"{"type":"edited","room":"general","id":"1764290060000-0","target":"1764290000000-1","by":"alice","body":"hello world!","ts":1764290060000},"#,
            r#"{"type":"reacted","room":"general","id":"1764290065000-0","target":"1764290000000-1","user":"bob","emoji":"👍","add":true,"count":2}"#,
            r#"]}"#,
        ),
        &ServerFrame::Joined {
            room: s("general"),
            members: vec![s("alice"), s("bob")],
            messages: vec![],
            recovered: true,
            epoch: Some(s("1764280000.118200")),
            more_members: false,
            read: Some(id("1764290000000-1")),
            unread: 3,
            changes: vec![Change::Edited(edited(None)), Change::Reacted(reacted(None))],
        },
    );
}

#[test]
fn a_v1_joined_without_the_new_fields_still_decodes() {
    let frame = decode_server(
        r#"{"type":"joined","room":"general","members":[],"messages":[],"recovered":false,"future":1}"#,
    )
    .unwrap();
    let ServerFrame::Joined {
        read,
        unread,
        changes,
        ..
    } = frame
    else {
        panic!("{frame:?}");
    };
    assert_eq!((read, unread, changes), (None, 0, vec![]));
}

#[test]
fn new_frames_ignore_unknown_fields() {
    assert_eq!(
        decode_client(r#"{"type":"read","room":"general","id":"1-0","future":[1]}"#).unwrap(),
        ClientFrame::Read {
            room: s("general"),
            id: s("1-0"),
        }
    );
    let with_extra = EDITED.replacen('}', r#","future":{"x":null}}"#, 1);
    assert_eq!(
        decode_server(&with_extra).unwrap(),
        ServerFrame::Edited(edited(None))
    );
}
