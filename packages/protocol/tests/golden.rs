//! Golden tests: these pin the wire contract of protocol v1.
//!
//! Every client and server frame is encoded and compared with a literal JSON string, byte for byte,
//! then decoded back from that literal. The same literals appear as examples in `PROTOCOL.md`.
//! Other clients code against these names: field names may be added, never renamed or removed. If
//! a test here fails, the change breaks existing clients; fix the change, not the test.

#![allow(clippy::unwrap_used)]

use skat_protocol::{
    ClientFrame, ErrorCode, Message, ServerFrame, decode_client, decode_server, encode_client,
    encode_server,
};

/// Issue 22's frames and fields: edits, deletions, reactions, replies, read markers.
#[path = "golden/lifecycle.rs"]
mod lifecycle;

/// Issue 23's `search` request and answer.
#[path = "golden/search.rs"]
mod search;
/// Issue 23's export records.
#[path = "golden/export.rs"]
mod export;

/// Asserts that `frame` encodes to exactly `json` and that `json` decodes to exactly `frame`.
fn client_golden(json: &str, frame: &ClientFrame) {
    assert_eq!(encode_client(frame), json, "encoding {frame:?}");
    assert_eq!(&decode_client(json).unwrap(), frame, "decoding {json}");
}

/// Asserts that `frame` encodes to exactly `json` and that `json` decodes to exactly `frame`.
fn server_golden(json: &str, frame: &ServerFrame) {
    assert_eq!(encode_server(frame), json, "encoding {frame:?}");
    assert_eq!(&decode_server(json).unwrap(), frame, "decoding {json}");
}

fn s(text: &str) -> String {
    text.to_owned()
}

/// The message used in server examples, with or without a nonce.
fn message(id: &str, ts: u64, from: &str, body: &str, nonce: Option<&str>) -> Message {
    Message {
        room: s("general"),
        id: id.parse().unwrap(),
        from: s(from),
        body: s(body),
        ts,
        nonce: nonce.map(s),
        extras: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Client frames
// ---------------------------------------------------------------------------------------------

#[test]
fn client_hello() {
    client_golden(
        r#"{"type":"hello","name":"alice"}"#,
        &ClientFrame::Hello {
            name: s("alice"),
            token: None,
        },
    );
}

#[test]
fn client_hello_with_token() {
    client_golden(
        r#"{"type":"hello","name":"alice","token":"opaque-token"}"#,
        &ClientFrame::Hello {
            name: s("alice"),
            token: Some(s("opaque-token")),
        },
    );
}

#[test]
fn client_join() {
    client_golden(
        r#"{"type":"join","room":"general"}"#,
        &ClientFrame::Join {
            room: s("general"),
            since: None,
            epoch: None,
        },
    );
}

#[test]
fn client_join_with_since() {
    client_golden(
        r#"{"type":"join","room":"general","since":"1764290000000-0"}"#,
        &ClientFrame::Join {
            room: s("general"),
            since: Some(s("1764290000000-0")),
            epoch: None,
        },
    );
}

#[test]
fn client_join_with_since_and_epoch() {
    client_golden(
        r#"{"type":"join","room":"general","since":"1764290000000-0","epoch":"1764280000.118200"}"#,
        &ClientFrame::Join {
            room: s("general"),
            since: Some(s("1764290000000-0")),
            epoch: Some(s("1764280000.118200")),
        },
    );
}

#[test]
fn client_leave() {
    client_golden(
        r#"{"type":"leave","room":"general"}"#,
        &ClientFrame::Leave { room: s("general") },
    );
}

#[test]
fn client_send() {
    client_golden(
        r#"{"type":"send","room":"general","body":"hello world"}"#,
        &ClientFrame::Send {
            room: s("general"),
            body: s("hello world"),
            nonce: None,
            reply_to: None,
        },
    );
}

#[test]
fn client_send_with_nonce() {
    client_golden(
        r#"{"type":"send","room":"general","body":"hello world","nonce":"c-17"}"#,
        &ClientFrame::Send {
            room: s("general"),
            body: s("hello world"),
            nonce: Some(s("c-17")),
            reply_to: None,
        },
    );
}

#[test]
fn client_typing() {
    client_golden(
        r#"{"type":"typing","room":"general"}"#,
        &ClientFrame::Typing { room: s("general") },
    );
}

#[test]
fn client_history() {
    client_golden(
        r#"{"type":"history","room":"general"}"#,
        &ClientFrame::History {
            room: s("general"),
            before: None,
            limit: None,
        },
    );
}

#[test]
fn client_history_with_before() {
    client_golden(
        r#"{"type":"history","room":"general","before":"1764290000000-0"}"#,
        &ClientFrame::History {
            room: s("general"),
            before: Some(s("1764290000000-0")),
            limit: None,
        },
    );
}

#[test]
fn client_history_with_limit() {
    client_golden(
        r#"{"type":"history","room":"general","limit":20}"#,
        &ClientFrame::History {
            room: s("general"),
            before: None,
            limit: Some(20),
        },
    );
}

#[test]
fn client_history_with_before_and_limit() {
    client_golden(
        r#"{"type":"history","room":"general","before":"1764290000000-0","limit":20}"#,
        &ClientFrame::History {
            room: s("general"),
            before: Some(s("1764290000000-0")),
            limit: Some(20),
        },
    );
}

#[test]
fn client_members() {
    client_golden(
        r#"{"type":"members","room":"general"}"#,
        &ClientFrame::Members {
            room: s("general"),
            after: None,
            limit: None,
        },
    );
}

#[test]
fn client_members_with_after_and_limit() {
    client_golden(
        r#"{"type":"members","room":"general","after":"bob","limit":500}"#,
        &ClientFrame::Members {
            room: s("general"),
            after: Some(s("bob")),
            limit: Some(500),
        },
    );
}

#[test]
fn client_refresh() {
    client_golden(
        r#"{"type":"refresh","token":"eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}"#,
        &ClientFrame::Refresh {
            token: s("eyJhbGciOiJIUzI1NiJ9.e30.c2ln"),
        },
    );
}

#[test]
fn client_kinds_match_type_tags() {
    let frames = [
        ClientFrame::Hello {
            name: s("a"),
            token: None,
        },
        ClientFrame::Join {
            room: s("r"),
            since: None,
            epoch: None,
        },
        ClientFrame::Leave { room: s("r") },
        ClientFrame::Send {
            room: s("r"),
            body: s("b"),
            nonce: None,
            reply_to: None,
        },
        ClientFrame::Typing { room: s("r") },
        ClientFrame::History {
            room: s("r"),
            before: None,
            limit: None,
        },
        ClientFrame::Members {
            room: s("r"),
            after: None,
            limit: None,
        },
        ClientFrame::Refresh { token: s("t") },
        ClientFrame::Edit {
            room: s("r"),
            id: s("1-0"),
            body: s("b"),
            nonce: None,
        },
        ClientFrame::Delete {
            room: s("r"),
            id: s("1-0"),
            nonce: None,
        },
        ClientFrame::React {
            room: s("r"),
            id: s("1-0"),
            emoji: s("👍"),
            add: true,
            nonce: None,
        },
        ClientFrame::Read {
            room: s("r"),
            id: s("1-0"),
        },
    ];
    for frame in frames {
        let prefix = format!(r#"{{"type":"{}","#, frame.kind());
        assert!(encode_client(&frame).starts_with(&prefix), "{frame:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Server frames
// ---------------------------------------------------------------------------------------------

#[test]
fn server_welcome() {
    server_golden(
        r#"{"type":"welcome","user":"alice","node":"3f2a9c1e","protocol":1}"#,
        &ServerFrame::Welcome {
            user: s("alice"),
            node: s("3f2a9c1e"),
            protocol: skat_protocol::PROTOCOL_VERSION,
            exp: None,
        },
    );
}

#[test]
fn server_welcome_signed() {
    server_golden(
        r#"{"type":"welcome","user":"alice","node":"3f2a9c1e","protocol":1,"exp":1764293600}"#,
        &ServerFrame::Welcome {
            user: s("alice"),
            node: s("3f2a9c1e"),
            protocol: skat_protocol::PROTOCOL_VERSION,
            exp: Some(1_764_293_600),
        },
    );
}

#[test]
fn server_refreshed() {
    server_golden(
        r#"{"type":"refreshed","exp":1764297200}"#,
        &ServerFrame::Refreshed {
            exp: Some(1_764_297_200),
        },
    );
    server_golden(
        r#"{"type":"refreshed"}"#,
        &ServerFrame::Refreshed { exp: None },
    );
}

#[test]
fn server_joined_empty_room() {
    server_golden(
        r#"{"type":"joined","room":"general","members":["alice"],"messages":[],"recovered":false}"#,
        &ServerFrame::Joined {
            room: s("general"),
            members: vec![s("alice")],
            messages: vec![],
            recovered: false,
            epoch: None,
            more_members: false,
            read: None,
            unread: 0,
            changes: vec![],
        },
    );
}

#[test]
fn server_joined_with_latest_page() {
    server_golden(
        concat!(
            r#"{"type":"joined","room":"general","members":["alice","bob"],"messages":["#,
            r#"{"room":"general","id":"1764290000000-0","from":"bob","body":"hi all","ts":1764290000000},"#,
            r#"{"room":"general","id":"1764290000000-1","from":"alice","body":"hey bob","ts":1764290000000,"nonce":"c-16"}"#,
            r#"],"recovered":false}"#,
        ),
        &ServerFrame::Joined {
            room: s("general"),
            members: vec![s("alice"), s("bob")],
            messages: vec![
                message("1764290000000-0", 1_764_290_000_000, "bob", "hi all", None),
                message(
                    "1764290000000-1",
                    1_764_290_000_000,
                    "alice",
                    "hey bob",
                    Some("c-16"),
                ),
            ],
            recovered: false,
            epoch: None,
            more_members: false,
            read: None,
            unread: 0,
            changes: vec![],
        },
    );
}

#[test]
fn server_joined_recovered() {
    server_golden(
        concat!(
            r#"{"type":"joined","room":"general","members":["alice","bob"],"messages":["#,
            r#"{"room":"general","id":"1764290004211-0","from":"bob","body":"you there?","ts":1764290004211}"#,
            r#"],"recovered":true,"epoch":"1764280000.118200"}"#,
        ),
        &ServerFrame::Joined {
            room: s("general"),
            members: vec![s("alice"), s("bob")],
            messages: vec![message(
                "1764290004211-0",
                1_764_290_004_211,
                "bob",
                "you there?",
                None,
            )],
            recovered: true,
            epoch: Some(s("1764280000.118200")),
            more_members: false,
            read: None,
            unread: 0,
            changes: vec![],
        },
    );
}

#[test]
fn server_left() {
    server_golden(
        r#"{"type":"left","room":"general"}"#,
        &ServerFrame::Left { room: s("general") },
    );
}

#[test]
fn server_message() {
    server_golden(
        r#"{"type":"message","room":"general","id":"1764290000000-0","from":"bob","body":"hi all","ts":1764290000000}"#,
        &ServerFrame::Message(message(
            "1764290000000-0",
            1_764_290_000_000,
            "bob",
            "hi all",
            None,
        )),
    );
}

#[test]
fn server_message_with_nonce() {
    server_golden(
        r#"{"type":"message","room":"general","id":"1764290000000-1","from":"alice","body":"hello world","ts":1764290000000,"nonce":"c-17"}"#,
        &ServerFrame::Message(message(
            "1764290000000-1",
            1_764_290_000_000,
            "alice",
            "hello world",
            Some("c-17"),
        )),
    );
}

#[test]
fn server_presence_online() {
    server_golden(
        r#"{"type":"presence","room":"general","user":"bob","online":true}"#,
        &ServerFrame::Presence {
            room: s("general"),
            user: s("bob"),
            online: true,
        },
    );
}

#[test]
fn server_presence_offline() {
    server_golden(
        r#"{"type":"presence","room":"general","user":"bob","online":false}"#,
        &ServerFrame::Presence {
            room: s("general"),
            user: s("bob"),
            online: false,
        },
    );
}

#[test]
fn server_typing() {
    server_golden(
        r#"{"type":"typing","room":"general","user":"bob"}"#,
        &ServerFrame::Typing {
            room: s("general"),
            user: s("bob"),
        },
    );
}

#[test]
fn server_history() {
    server_golden(
        concat!(
            r#"{"type":"history","room":"general","messages":["#,
            r#"{"room":"general","id":"1764289000000-0","from":"bob","body":"earlier","ts":1764289000000}"#,
            r#"],"has_more":true}"#,
        ),
        &ServerFrame::History {
            room: s("general"),
            messages: vec![message(
                "1764289000000-0",
                1_764_289_000_000,
                "bob",
                "earlier",
                None,
            )],
            has_more: true,
        },
    );
}

#[test]
fn server_history_empty() {
    server_golden(
        r#"{"type":"history","room":"general","messages":[],"has_more":false}"#,
        &ServerFrame::History {
            room: s("general"),
            messages: vec![],
            has_more: false,
        },
    );
}

#[test]
fn server_joined_with_more_members() {
    server_golden(
        concat!(
            r#"{"type":"joined","room":"general","members":["alice","bob"],"messages":[],"#,
            r#""recovered":false,"epoch":"1764280000.118200","more_members":true}"#,
        ),
        &ServerFrame::Joined {
            room: s("general"),
            members: vec![s("alice"), s("bob")],
            messages: vec![],
            recovered: false,
            epoch: Some(s("1764280000.118200")),
            more_members: true,
            read: None,
            unread: 0,
            changes: vec![],
        },
    );
}

#[test]
fn server_members() {
    server_golden(
        r#"{"type":"members","room":"general","members":["carol","dave"],"next":"dave"}"#,
        &ServerFrame::Members {
            room: s("general"),
            members: vec![s("carol"), s("dave")],
            next: Some(s("dave")),
        },
    );
}

#[test]
fn server_members_last_page() {
    server_golden(
        r#"{"type":"members","room":"general","members":["erin"]}"#,
        &ServerFrame::Members {
            room: s("general"),
            members: vec![s("erin")],
            next: None,
        },
    );
}

#[test]
fn server_error() {
    server_golden(
        r#"{"type":"error","code":"not_joined","message":"join the room first"}"#,
        &ServerFrame::error(ErrorCode::NotJoined, "join the room first", None),
    );
}

#[test]
fn server_error_with_nonce() {
    server_golden(
        r#"{"type":"error","code":"invalid_body","message":"message body is empty","nonce":"c-18"}"#,
        &ServerFrame::error(
            ErrorCode::InvalidBody,
            "message body is empty",
            Some(s("c-18")),
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------------------------

/// Every error code and its wire string. `ErrorCode` is `#[non_exhaustive]`, so a new variant
/// cannot fail to compile here: add it to this table (and to `PROTOCOL.md`) by hand.
const ERROR_CODES: [(ErrorCode, &str); 27] = [
    (ErrorCode::BadFrame, "bad_frame"),
    (ErrorCode::UnknownType, "unknown_type"),
    (ErrorCode::HelloRequired, "hello_required"),
    (ErrorCode::AlreadyHello, "already_hello"),
    (ErrorCode::InvalidName, "invalid_name"),
    (ErrorCode::InvalidRoom, "invalid_room"),
    (ErrorCode::InvalidBody, "invalid_body"),
    (ErrorCode::BodyTooLong, "body_too_long"),
    (ErrorCode::InvalidNonce, "invalid_nonce"),
    (ErrorCode::InvalidId, "invalid_id"),
    (ErrorCode::InvalidLimit, "invalid_limit"),
    (ErrorCode::NotJoined, "not_joined"),
    (ErrorCode::AlreadyJoined, "already_joined"),
    (ErrorCode::TooManyRooms, "too_many_rooms"),
    (ErrorCode::RateLimited, "rate_limited"),
    (ErrorCode::Unauthorized, "unauthorized"),
    (ErrorCode::Forbidden, "forbidden"),
    (ErrorCode::Unavailable, "unavailable"),
    (ErrorCode::Internal, "internal"),
    (ErrorCode::NotAuthor, "not_author"),
    (ErrorCode::NoSuchMessage, "no_such_message"),
    (ErrorCode::InvalidEmoji, "invalid_emoji"),
    (ErrorCode::TooManyReactions, "too_many_reactions"),
    (ErrorCode::InvalidReply, "invalid_reply"),
    (ErrorCode::InvalidQuery, "invalid_query"),
    (ErrorCode::Unsupported, "unsupported"),
    (ErrorCode::Unknown, "unknown"),
];

#[test]
fn error_codes_have_their_documented_strings() {
    for (code, wire) in ERROR_CODES {
        assert_eq!(code.as_str(), wire, "as_str of {code:?}");
        assert_eq!(code.to_string(), wire, "Display of {code:?}");
        // serde agrees with as_str, both ways.
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            format!("\"{wire}\""),
            "serde of {code:?}"
        );
        assert_eq!(
            serde_json::from_str::<ErrorCode>(&format!("\"{wire}\"")).unwrap(),
            code,
            "deserializing {wire}"
        );
    }
}

#[test]
fn error_codes_are_distinct() {
    for (i, (a, wire_a)) in ERROR_CODES.iter().enumerate() {
        for (b, wire_b) in &ERROR_CODES[i + 1..] {
            assert_ne!(a, b);
            assert_ne!(wire_a, wire_b);
        }
    }
}

#[test]
fn every_error_code_in_an_error_frame() {
    for (code, wire) in ERROR_CODES {
        server_golden(
            &format!(r#"{{"type":"error","code":"{wire}","message":"something went wrong"}}"#),
            &ServerFrame::error(code, "something went wrong", None),
        );
    }
}

#[test]
fn unknown_error_code_decodes_as_unknown() {
    assert_eq!(
        serde_json::from_str::<ErrorCode>(r#""from_the_future""#).unwrap(),
        ErrorCode::Unknown
    );
    assert_eq!(
        decode_server(
            r#"{"type":"error","code":"from_the_future","message":"slow down","nonce":"c-19"}"#
        )
        .unwrap(),
        ServerFrame::error(ErrorCode::Unknown, "slow down", Some(s("c-19")))
    );
}

// ---------------------------------------------------------------------------------------------
// Compatibility rules
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(
        decode_client(r#"{"type":"join","room":"general","future":{"x":1}}"#).unwrap(),
        ClientFrame::Join {
            room: s("general"),
            since: None,
            epoch: None,
        }
    );
    assert_eq!(
        decode_server(r#"{"type":"left","room":"general","future":[1,2]}"#).unwrap(),
        ServerFrame::Left { room: s("general") }
    );
    assert_eq!(
        decode_server(
            r#"{"type":"message","room":"general","id":"1-0","from":"bob","body":"hi","ts":1,"future":null}"#
        )
        .unwrap(),
        ServerFrame::Message(message("1-0", 1, "bob", "hi", None))
    );
}

#[test]
fn absent_optional_fields_are_omitted_not_null() {
    let frames = [
        encode_client(&ClientFrame::Hello {
            name: s("alice"),
            token: None,
        }),
        encode_client(&ClientFrame::Join {
            room: s("general"),
            since: None,
            epoch: None,
        }),
        encode_client(&ClientFrame::Send {
            room: s("general"),
            body: s("hi"),
            nonce: None,
            reply_to: None,
        }),
        encode_client(&ClientFrame::History {
            room: s("general"),
            before: None,
            limit: None,
        }),
        encode_server(&ServerFrame::Message(message("1-0", 1, "bob", "hi", None))),
        encode_server(&ServerFrame::error(ErrorCode::Internal, "oops", None)),
    ];
    for json in frames {
        assert!(!json.contains("null"), "{json}");
    }
}

#[test]
fn explicit_null_optional_fields_decode_as_absent() {
    assert_eq!(
        decode_client(r#"{"type":"send","room":"general","body":"hi","nonce":null}"#).unwrap(),
        ClientFrame::Send {
            room: s("general"),
            body: s("hi"),
            nonce: None,
            reply_to: None,
        }
    );
}
