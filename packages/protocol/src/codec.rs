//! Encoding and decoding of frames to and from JSON text.

use serde::Deserialize;

use crate::{ClientFrame, ErrorCode, ServerFrame};

/// Frame types a client may send, to tell a bad frame from an unknown one.
const CLIENT_TYPES: &[&str] = &["hello", "join", "leave", "send", "typing", "history"];

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

/// Just enough of a frame to classify a decoding failure.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type")]
    kind: Option<String>,
    nonce: Option<String>,
}

/// Decodes a client frame, classifying failures as `bad_frame` or `unknown_type`.
pub fn decode_client(text: &str) -> Result<ClientFrame, DecodeError> {
    let err = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => return Ok(frame),
        Err(err) => err,
    };
    // Slow path, only for bad input: find out whether the type or the fields are at fault.
    let probe = serde_json::from_str::<Probe>(text).ok();
    let nonce = probe.as_ref().and_then(|p| p.nonce.clone());
    let (code, message) = match probe.and_then(|p| p.kind) {
        Some(kind) if !CLIENT_TYPES.contains(&kind.as_str()) => (
            ErrorCode::UnknownType,
            format!("unknown frame type {kind:?}"),
        ),
        Some(kind) => (
            ErrorCode::BadFrame,
            format!("invalid {kind:?} frame: {err}"),
        ),
        None if err.is_syntax() || err.is_eof() => {
            (ErrorCode::BadFrame, format!("invalid JSON: {err}"))
        }
        None => (
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

/// Decodes a server frame (for clients).
pub fn decode_server(text: &str) -> Result<ServerFrame, DecodeError> {
    serde_json::from_str(text).map_err(|err| DecodeError {
        code: ErrorCode::BadFrame,
        message: format!("invalid server frame: {err}"),
        nonce: None,
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
    fn keeps_nonce_of_bad_frames() {
        let err = decode_client(r#"{"type":"send","room":"a","nonce":"n1"}"#).unwrap_err();
        assert_eq!(err.nonce.as_deref(), Some("n1"));
    }

    #[test]
    fn ignores_unknown_fields() {
        let frame = decode_client(r#"{"type":"leave","room":"a","future":true}"#).unwrap();
        assert_eq!(frame, ClientFrame::Leave { room: "a".into() });
    }
}
