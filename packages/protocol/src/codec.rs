//! Encoding and decoding of frames to and from JSON text.

use serde::Deserialize;

use crate::{ClientFrame, ErrorCode, ServerFrame, validate_nonce};

/// Frame types a client may send, to tell a bad frame from an unknown one.
const CLIENT_TYPES: &[&str] = &[
    "hello", "join", "leave", "send", "typing", "history", "members", "refresh", "edit", "delete",
    "react", "read", "search",
];

/// A text frame that could not be decoded, with the error code a server answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// [`ErrorCode::BadFrame`] or [`ErrorCode::UnknownType`].
    pub code: ErrorCode,
    /// What is wrong, without trailing period.
    pub message: String,
    /// The frame's `nonce`, when it had a readable one, so the error can be correlated.
    pub nonce: Option<String>,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Every field of every client frame, for [`decode_fast`]: one pass over the JSON, where serde's
/// internally tagged enums first buffer the whole object (each key and value) and then walk it
/// again.
#[derive(Deserialize)]
struct AnyClientFrame {
    #[serde(rename = "type")]
    kind: Option<ClientKind>,
    name: Option<String>,
    token: Option<String>,
    room: Option<String>,
    since: Option<String>,
    epoch: Option<String>,
    body: Option<String>,
    nonce: Option<String>,
    before: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
    reply_to: Option<String>,
    id: Option<String>,
    emoji: Option<String>,
    add: Option<bool>,
    q: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ClientKind {
    Hello,
    Join,
    Leave,
    Send,
    Typing,
    History,
    Members,
    Refresh,
    Edit,
    Delete,
    React,
    Read,
    Search,
}

/// The fast path of [`decode_client`], for JSON objects: `Some` only with exactly the frame serde's
/// derived [`ClientFrame`] deserializer gives; `None` for anything else (a missing or mistyped
/// field, an unknown type, a well-typed field of another frame type given a value of the wrong
/// type, a duplicate key...), which then takes that deserializer's path, errors included.
fn decode_fast(text: &str) -> Option<ClientFrame> {
    let f: AnyClientFrame = serde_json::from_str(text).ok()?;
    Some(match f.kind? {
        ClientKind::Hello => ClientFrame::Hello {
            name: f.name?,
            token: f.token,
        },
        ClientKind::Join => ClientFrame::Join {
            room: f.room?,
            since: f.since,
            epoch: f.epoch,
        },
        ClientKind::Leave => ClientFrame::Leave { room: f.room? },
        ClientKind::Send => ClientFrame::Send {
            room: f.room?,
            body: f.body?,
            nonce: f.nonce,
            reply_to: f.reply_to,
        },
        ClientKind::Typing => ClientFrame::Typing { room: f.room? },
        ClientKind::History => ClientFrame::History {
            room: f.room?,
            before: f.before,
            limit: f.limit,
        },
        ClientKind::Members => ClientFrame::Members {
            room: f.room?,
            after: f.after,
            limit: f.limit,
        },
        ClientKind::Refresh => ClientFrame::Refresh { token: f.token? },
        ClientKind::Edit => ClientFrame::Edit {
            room: f.room?,
            id: f.id?,
            body: f.body?,
            nonce: f.nonce,
        },
        ClientKind::Delete => ClientFrame::Delete {
            room: f.room?,
            id: f.id?,
            nonce: f.nonce,
        },
        ClientKind::React => ClientFrame::React {
            room: f.room?,
            id: f.id?,
            emoji: f.emoji?,
            add: f.add?,
            nonce: f.nonce,
        },
        ClientKind::Read => ClientFrame::Read {
            room: f.room?,
            id: f.id?,
        },
        ClientKind::Search => ClientFrame::Search {
            room: f.room?,
            q: f.q?,
            before: f.before,
            limit: f.limit,
        },
    })
}

/// Decodes a client frame, classifying failures as `bad_frame` or `unknown_type`.
pub fn decode_client(text: &str) -> Result<ClientFrame, DecodeError> {
    // serde's derived deserializers would also accept a JSON array; frames are objects only.
    let err = if text.trim_start().starts_with('{') {
        if let Some(frame) = decode_fast(text) {
            return Ok(frame);
        }
        match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => return Ok(frame),
            Err(err) => Some(err),
        }
    } else {
        None
    };
    // Slow path, only for bad input: find out whether the type or the fields are at fault.
    let value = serde_json::from_str::<serde_json::Value>(text).ok();
    let object = value.as_ref().and_then(serde_json::Value::as_object);
    let field = |name: &str| object.and_then(|o| o.get(name)).and_then(|v| v.as_str());
    // A nonce too long to be valid is not echoed: the client could not have matched it anyway.
    let nonce = field("nonce")
        .filter(|n| validate_nonce(n).is_ok())
        .map(str::to_owned);
    let (code, message) = match (object, field("type"), err) {
        (None, _, Some(err)) if err.is_syntax() || err.is_eof() => {
            (ErrorCode::BadFrame, format!("invalid JSON: {err}"))
        }
        (Some(_), Some(kind), _) if !CLIENT_TYPES.contains(&kind) => (
            ErrorCode::UnknownType,
            format!("unknown frame type {kind:?}"),
        ),
        (Some(_), Some(kind), Some(err)) => (
            ErrorCode::BadFrame,
            format!("invalid {kind:?} frame: {err}"),
        ),
        _ => (
            ErrorCode::BadFrame,
            "frames are JSON objects with a string \"type\" field".to_owned(),
        ),
    };
    Err(DecodeError {
        code,
        message,
        nonce,
    })
}

/// Encodes a server frame as JSON text.
pub fn encode_server(frame: &ServerFrame) -> String {
    // Serializing these types cannot fail: every map key is a string and no Serialize impl errors.
    serde_json::to_string(frame).unwrap_or_else(|_| unreachable!("server frames always serialize"))
}

/// Encodes a client frame as JSON text.
pub fn encode_client(frame: &ClientFrame) -> String {
    serde_json::to_string(frame).unwrap_or_else(|_| unreachable!("client frames always serialize"))
}

/// Server frame types this version knows, to tell an unknown (newer) frame from a broken one.
const SERVER_TYPES: &[&str] = &[
    "welcome",
    "joined",
    "left",
    "message",
    "presence",
    "typing",
    "history",
    "members",
    "refreshed",
    "error",
    "edited",
    "deleted",
    "reacted",
    "read",
    "search",
];

/// Decodes a server frame (for clients).
///
/// A frame of a type this version does not know fails with [`ErrorCode::UnknownType`]: clients
/// should skip it, since newer servers may send frame types added after this version.
pub fn decode_server(text: &str) -> Result<ServerFrame, DecodeError> {
    serde_json::from_str(text).map_err(|err| {
        let value = serde_json::from_str::<serde_json::Value>(text).ok();
        let kind = value
            .as_ref()
            .and_then(|v| v.get("type"))
            .and_then(|t| t.as_str());
        match kind {
            Some(kind) if !SERVER_TYPES.contains(&kind) => DecodeError {
                code: ErrorCode::UnknownType,
                message: format!("unknown server frame type {kind:?}"),
                nonce: None,
            },
            _ => DecodeError {
                code: ErrorCode::BadFrame,
                message: format!("invalid server frame: {err}"),
                nonce: None,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        match decode_client(text) {
            Ok(frame) => panic!("decoded {frame:?}"),
            Err(err) => err.code,
        }
    }

    #[test]
    fn classifies_failures() {
        assert_eq!(code("not json"), ErrorCode::BadFrame);
        assert_eq!(code("[1,2]"), ErrorCode::BadFrame);
        assert_eq!(code("{}"), ErrorCode::BadFrame);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::BadFrame);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"send","room":"a"}"#), ErrorCode::BadFrame);
        assert_eq!(
            code(r#"{"type":"history","room":"a","limit":-1}"#),
            ErrorCode::BadFrame
        );
    }

    #[test]
    fn arrays_are_not_frames() {
        assert_eq!(code(r#"["leave","general"]"#), ErrorCode::BadFrame);
        assert_eq!(code(r#"["dance","n1"]"#), ErrorCode::BadFrame);
    }

    #[test]
    fn unknown_server_frames_are_told_apart() {
        let err = decode_server(r#"{"type":"reaction","emoji":"+1"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownType);
        let err = decode_server(r#"{"type":"left"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadFrame);
    }

    #[test]
    fn nonce_survives_a_bad_type_field_but_not_its_own_invalidity() {
        let err = decode_client(r#"{"type":"send","room":"a","body":5,"nonce":"n1"}"#).unwrap_err();
        assert_eq!(err.nonce.as_deref(), Some("n1"));
        let err = decode_client(r#"{"type":"send","room":"a","nonce":5}"#).unwrap_err();
        assert_eq!((err.code, err.nonce), (ErrorCode::BadFrame, None));
        let long = "n".repeat(65);
        let err = decode_client(&format!(r#"{{"type":"send","nonce":"{long}"}}"#)).unwrap_err();
        assert_eq!(err.nonce, None);
    }

    #[test]
    fn keeps_nonce_of_bad_frames() {
        let err = decode_client(r#"{"type":"send","room":"a","nonce":"n1"}"#).unwrap_err();
        assert_eq!(err.nonce.as_deref(), Some("n1"));
    }

    #[test]
    fn frames_take_the_fast_path() {
        for text in [
            r#"{"type":"send","room":"general","body":"hi \"there\"\n","nonce":"c-1"}"#,
            r#"{"type":"hello","name":"alice"}"#,
            r#"{"type":"history","room":"a","before":"5-1","limit":20,"future":[1,{"x":null}]}"#,
            r#"{"type":"send","room":"a","body":"re","reply_to":"5-1"}"#,
            r#"{"type":"edit","room":"a","id":"5-1","body":"fixed","nonce":"e-1"}"#,
            r#"{"type":"delete","room":"a","id":"5-1"}"#,
            r#"{"type":"react","room":"a","id":"5-1","emoji":"👍","add":false,"nonce":"r-1"}"#,
            r#"{"type":"read","room":"a","id":"5-1"}"#,
            r#"{"type":"search","room":"a","q":"deploy \"v2\"","before":"5-1","limit":5}"#,
        ] {
            let fast = decode_fast(text);
            assert!(fast.is_some(), "{text}");
            assert_eq!(
                fast.unwrap(),
                serde_json::from_str::<ClientFrame>(text).unwrap()
            );
        }
        // Not for the fast path: a field of another frame type with the wrong type (serde's
        // deserializer ignores it), and a missing field.
        let leave = r#"{"type":"leave","room":"a","body":5}"#;
        assert!(decode_fast(leave).is_none());
        assert_eq!(
            decode_client(leave).unwrap(),
            ClientFrame::Leave { room: "a".into() }
        );
        assert!(decode_fast(r#"{"type":"send","room":"a"}"#).is_none());
    }

    /// JSON objects made of frame keys and values of every JSON kind, with duplicates, escapes
    /// and out-of-range numbers.
    fn objects() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let key = prop::sample::select(vec![
            "type",
            "name",
            "token",
            "room",
            "since",
            "body",
            "nonce",
            "before",
            "after",
            "limit",
            "reply_to",
            "id",
            "emoji",
            "add",
            "q",
            "extra",
            r"ro\u006fm",
            r"ty\u0070e",
        ]);
        let value = prop::sample::select(vec![
            r#""hello""#,
            r#""join""#,
            r#""leave""#,
            r#""send""#,
            r#""typing""#,
            r#""history""#,
            r#""members""#,
            r#""edit""#,
            r#""delete""#,
            r#""react""#,
            r#""read""#,
            r#""search""#,
            r#""dance""#,
            r#""s\u0065nd""#,
            r#""Send""#,
            r#""a""#,
            r#""multi\nline \"q\" é 💬""#,
            r#""""#,
            "null",
            "0",
            "-0",
            "5",
            "-1",
            "4294967295",
            "4294967296",
            "1.5",
            "1e2",
            "true",
            "[1,2]",
            r#"{"x":1}"#,
        ]);
        let pair = (key, value).prop_map(|(k, v)| format!(r#""{k}":{v}"#));
        let kind = prop::sample::select(vec![
            "hello", "join", "leave", "send", "typing", "history", "members", "edit", "delete",
            "react", "read", "search", "dance",
        ]);
        (
            prop::option::weighted(0.9, kind),
            prop::collection::vec(pair, 0..7),
        )
            .prop_map(|(kind, pairs)| {
                let mut parts: Vec<String> = kind
                    .map(|k| format!(r#""type":"{k}""#))
                    .into_iter()
                    .collect();
                parts.extend(pairs);
                format!("{{{}}}", parts.join(","))
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]

        /// The fast path never decodes anything differently from serde's derived deserializer.
        #[test]
        fn fast_path_agrees_with_the_derived_deserializer(text in objects()) {
            if let Some(fast) = decode_fast(&text) {
                proptest::prop_assert_eq!(
                    Ok(fast),
                    serde_json::from_str::<ClientFrame>(&text).map_err(|e| e.to_string())
                );
            }
            let derived = serde_json::from_str::<ClientFrame>(&text).ok();
            proptest::prop_assert_eq!(decode_client(&text).ok(), derived);
        }
    }

    #[test]
    fn ignores_unknown_fields() {
        let frame = decode_client(r#"{"type":"leave","room":"a","future":true}"#).unwrap();
        assert_eq!(frame, ClientFrame::Leave { room: "a".into() });
    }
}
