//! Golden tests of `skat-server export`'s records (issue 23): a backup written by one release
//! must import into the next, so these lines are a contract like the frames. Messages and
//! changes encode exactly as the server's frames of the same `type`.

use skat_protocol::{
    Edited, ExportRecord, Extras, Message, MessageId, Reaction, ServerFrame, decode_export,
    encode_export, encode_server,
};

use super::{message, s};

fn id(text: &str) -> MessageId {
    text.parse().unwrap()
}

/// Asserts that `record` encodes to exactly `json` and that `json` decodes to exactly it.
fn export_golden(json: &str, record: &ExportRecord) {
    assert_eq!(encode_export(record), json, "encoding {record:?}");
    assert_eq!(&decode_export(json).unwrap(), record, "decoding {json}");
}

#[test]
fn export_room() {
    export_golden(
        r#"{"type":"room","room":"general","epoch":"1764290000.123456","trimmed":"1764289999000-0"}"#,
        &ExportRecord::Room {
            room: s("general"),
            epoch: s("1764290000.123456"),
            trimmed: Some(id("1764289999000-0")),
        },
    );
    export_golden(
        r#"{"type":"room","room":"general","epoch":"1764290000.123456"}"#,
        &ExportRecord::Room {
            room: s("general"),
            epoch: s("1764290000.123456"),
            trimmed: None,
        },
    );
}

#[test]
fn export_messages_and_changes_are_their_frames() {
    let mut reacted: Message = message("1764290000000-0", 1_764_290_000_000, "ann", "hi", None);
    reacted.extras = Some(Box::new(Extras {
        reactions: vec![Reaction {
            emoji: s("👍"),
            count: 1,
            users: vec![s("bob")],
        }],
        ..Extras::default()
    }));
    export_golden(
        r#"{"type":"message","room":"general","id":"1764290000000-0","from":"ann","body":"hi","ts":1764290000000,"reactions":[{"emoji":"👍","count":1,"users":["bob"]}]}"#,
        &ExportRecord::Message(reacted.clone()),
    );
    let edited = Edited {
        room: s("general"),
        id: id("1764290000001-0"),
        target: id("1764290000000-0"),
        by: s("ann"),
        body: s("hi!"),
        ts: 1_764_290_000_001,
        nonce: None,
    };
    for (record, frame) in [
        (
            ExportRecord::Message(reacted.clone()),
            ServerFrame::Message(reacted),
        ),
        (
            ExportRecord::Edited(edited.clone()),
            ServerFrame::Edited(edited),
        ),
    ] {
        assert_eq!(encode_export(&record), encode_server(&frame));
    }
}

#[test]
fn export_reactors_and_read_markers() {
    export_golden(
        r#"{"type":"reactors","room":"general","id":"1764290000000-0","emoji":"👍","users":["bob","cy","dee","eve"]}"#,
        &ExportRecord::Reactors {
            room: s("general"),
            id: id("1764290000000-0"),
            emoji: s("👍"),
            users: vec![s("bob"), s("cy"), s("dee"), s("eve")],
        },
    );
    export_golden(
        r#"{"type":"read_marker","room":"general","user":"bob","id":"1764290000000-0"}"#,
        &ExportRecord::ReadMarker {
            room: s("general"),
            user: s("bob"),
            id: id("1764290000000-0"),
        },
    );
}

#[test]
fn export_refuses_what_it_does_not_know() {
    assert!(decode_export(r#"{"type":"nonce","room":"general"}"#).is_err());
    assert!(
        decode_export(r#"{"type":"room","room":"general"}"#).is_err(),
        "no epoch"
    );
    assert!(decode_export("not json").is_err());
}
