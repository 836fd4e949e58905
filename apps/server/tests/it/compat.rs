//! Protocol v1 compatibility of issue 22's additions: a client that knows only the v1 protocol
//! as it was before them (PROTOCOL.md at commit d2980c9: its server frame types and their
//! required fields, frozen below) receives, while others edit, delete, react and reply in its
//! room, only frames it can read: types it does not know (which such clients skip, as the Rust
//! client's `next_event` did then) or v1 types whose v1 fields are all there and well-typed.
//! And today's `skat_client::Client` keeps working in such a room.

#![allow(clippy::unwrap_used)]

use crate::changes::{change, delete, edit, react, say};
use crate::common;

use common::{DEADLINE, Node, join, message};
use serde_json::Value;
use skat_protocol::{ClientFrame, ServerFrame};

/// A field's JSON type, as PROTOCOL.md v1 gave it.
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    Int,
    Bool,
    Strings,
    Messages,
}

/// The v1 server frames (PROTOCOL.md at d2980c9) and their required fields.
const V1_FRAMES: &[(&str, &[(&str, Ty)])] = &[
    (
        "welcome",
        &[("user", Ty::Str), ("node", Ty::Str), ("protocol", Ty::Int)],
    ),
    (
        "joined",
        &[
            ("room", Ty::Str),
            ("members", Ty::Strings),
            ("messages", Ty::Messages),
            ("recovered", Ty::Bool),
        ],
    ),
    ("left", &[("room", Ty::Str)]),
    // The message object's fields are checked for `message` frames as for `messages` arrays.
    ("message", &[]),
    (
        "presence",
        &[("room", Ty::Str), ("user", Ty::Str), ("online", Ty::Bool)],
    ),
    ("typing", &[("room", Ty::Str), ("user", Ty::Str)]),
    (
        "history",
        &[
            ("room", Ty::Str),
            ("messages", Ty::Messages),
            ("has_more", Ty::Bool),
        ],
    ),
    ("members", &[("room", Ty::Str), ("members", Ty::Strings)]),
    ("refreshed", &[]),
    ("error", &[("code", Ty::Str), ("message", Ty::Str)]),
];

/// The v1 message object's required fields.
const V1_MESSAGE: &[(&str, Ty)] = &[
    ("room", Ty::Str),
    ("id", Ty::Str),
    ("from", Ty::Str),
    ("body", Ty::Str),
    ("ts", Ty::Int),
];

fn well_typed(value: &Value, ty: Ty) -> bool {
    match ty {
        Ty::Str => value.is_string(),
        Ty::Int => value.is_u64(),
        Ty::Bool => value.is_boolean(),
        Ty::Strings => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        Ty::Messages => value
            .as_array()
            .is_some_and(|a| a.iter().all(|m| fields_ok(m, V1_MESSAGE))),
    }
}

fn fields_ok(object: &Value, fields: &[(&str, Ty)]) -> bool {
    fields
        .iter()
        .all(|(name, ty)| object.get(name).is_some_and(|v| well_typed(v, *ty)))
}

/// Whether a v1 client can read `text`: an unknown type (skipped), or a v1 type with its v1
/// fields. Returns the type for the test's bookkeeping.
fn v1_readable(text: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("{e}: {text}"))?;
    let kind = value["type"]
        .as_str()
        .ok_or(format!("no type: {text}"))?
        .to_owned();
    let Some((_, fields)) = V1_FRAMES.iter().find(|(t, _)| *t == kind) else {
        return Ok(kind);
    };
    let message_ok = kind != "message" || fields_ok(&value, V1_MESSAGE);
    if fields_ok(&value, fields) && message_ok {
        Ok(kind)
    } else {
        Err(format!("a v1 client cannot read {text}"))
    }
}

#[tokio::test]
async fn a_v1_client_reads_every_frame_of_a_room_where_messages_change() {
    let node = Node::start().await;
    let mut v1 = node.client("old").await;
    let mut today = node.client("today").await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    for client in [&mut v1, &mut today, &mut alice, &mut bob] {
        join(client, "r").await;
    }
    let hi = say(&mut alice, "r", "hi").await;
    message(&mut bob).await;
    let reply = ClientFrame::Send {
        room: "r".into(),
        body: "re".into(),
        nonce: None,
        reply_to: Some(hi.id.to_string()),
    };
    bob.send_frame(&reply).await.unwrap();
    alice
        .send_frame(&edit("r", hi.id, "hello", None))
        .await
        .unwrap();
    bob.send_frame(&react("r", hi.id, "👍", true, None))
        .await
        .unwrap();
    alice.send_frame(&delete("r", hi.id, None)).await.unwrap();
    // The old client's own send, after all of it, and a resume with its changes.
    v1.send_message("r", "still here", Some("v1"))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    loop {
        let text = tokio::time::timeout(DEADLINE, v1.next_text())
            .await
            .unwrap()
            .unwrap();
        let kind = v1_readable(&text).unwrap();
        let done = text.contains("still here");
        kinds.push(kind);
        if done {
            break;
        }
    }
    for kind in ["message", "edited", "reacted", "deleted"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} not seen: {kinds:?}"
        );
    }
    v1.leave("r").await.unwrap();
    v1.join_since("r", hi.id).await.unwrap();
    loop {
        let text = tokio::time::timeout(DEADLINE, v1.next_text())
            .await
            .unwrap()
            .unwrap();
        let kind = v1_readable(&text).unwrap();
        if kind == "joined" {
            assert!(text.contains("\"changes\""), "{text}");
            break;
        }
    }

    // Today's client reads the same room: its messages come through, the rest decodes.
    today.send_message("r", "today", Some("t")).await.unwrap();
    loop {
        if let ServerFrame::Message(m) = change(&mut today).await
            && m.body == "today"
        {
            break;
        }
    }
}
