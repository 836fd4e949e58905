//! The JSON bodies of the server API (`/api/v1`), which application backends call over HTTP.
//!
//! `API.md` at the repository root documents each endpoint; the server's
//! `/api/v1/openapi.json` is generated from these types (with the `openapi` feature). Like the
//! frames, they follow the compatibility rule: fields are added, never renamed or removed.
//!
//! Beside them, the two bodies a client reads from the application rather than from the
//! server: what an application's token URL answers ([`TokenResponse`]) and the claim of a
//! signed-mode token a client reads without checking it ([`TokenSubject`]).

use serde::{Deserialize, Serialize};

use crate::Message;

/// `POST /api/v1/rooms/{room}/messages`: a message to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PostMessage {
    /// The user it is published as; absent: the system ([`crate::SYSTEM_SENDER`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The text: 1–4000 characters, not blank.
    pub body: String,
    /// Makes the call idempotent: a repeat with the same `from` and nonce within 2 minutes
    /// returns the original message and publishes nothing (≤ 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The id of the message of the same room this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// `PATCH /api/v1/rooms/{room}/messages/{id}`: a message's new body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EditMessage {
    /// Who edits it (the `by` everyone sees); absent: the system. The API may edit anyone's
    /// message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The new text: 1–4000 characters, not blank.
    pub body: String,
    /// Makes the call idempotent, as for a message (one key space per `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// `DELETE /api/v1/rooms/{room}/messages/{id}`: who deletes, optionally (the body may be
/// empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeleteMessage {
    /// Who deletes it; absent: the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Makes the call idempotent, as for a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// `POST /api/v1/rooms/{room}/messages/{id}/reactions`: a user's reaction, added or taken back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PostReaction {
    /// The user reacting.
    pub from: String,
    /// One emoji: one grapheme cluster of at most 32 bytes.
    pub emoji: String,
    /// `true` to add the reaction, `false` to take it back.
    pub add: bool,
    /// Makes the call idempotent, as for a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// A page of a room's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessagesPage {
    /// The room.
    pub room: String,
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether older messages remain before the first one.
    pub has_more: bool,
}

/// `GET /api/v1/rooms/{room}/search`: the messages found, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchPage {
    /// The room.
    pub room: String,
    /// The query, as sent.
    pub q: String,
    /// The messages found, newest first, in their current state.
    pub messages: Vec<Message>,
    /// Whether more (older) messages match: ask again with `before` set to the last id.
    pub has_more: bool,
}

/// A page of the users online in a room, on every node, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Members {
    /// The room.
    pub room: String,
    /// The users, sorted.
    pub members: Vec<String>,
    /// Present when more users follow: ask again with `after` set to it (the last name of
    /// `members`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /api/v1/users/{name}/disconnect`: why the user is disconnected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Disconnect {
    /// Shown to the user (the close reason, at most 100 bytes); a generic one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A room and how many users are online in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomInfo {
    /// The room's name.
    pub name: String,
    /// Users online in it, on every node.
    pub members: usize,
}

/// A page of rooms, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rooms {
    /// The rooms.
    pub rooms: Vec<RoomInfo>,
    /// Whether more rooms follow the last one (ask again with `after` set to its name).
    pub has_more: bool,
}

/// What every failed call answers with, beside its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// A stable code: the protocol's error codes (`invalid_body`, `unavailable`...) plus
    /// `bad_request`, `unauthorized` and `not_found`.
    pub code: String,
    /// An explanation for humans.
    pub message: String,
}

/// What an application's token URL answers (README, "Web app"): a fresh signed-mode token for
/// the page's user. Other fields are ignored. The application serves it, not the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The token (a JWT).
    pub token: String,
}

/// The claim of a signed-mode token (a JWT's payload: `PROTOCOL.md`, "Signed mode") that a
/// client reads without checking the token: whom it is for. The server checks the signature
/// and every other claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSubject {
    /// `sub`: the user's name.
    pub sub: String,
}

/// Encodes an API body.
pub fn encode_api<T: Serialize>(value: &T) -> String {
    // These types hold strings, numbers and vectors only: serializing cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Decodes an API body (or another body of this module); the error says what is wrong with it.
pub fn decode_api<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_optional_fields_are_omitted() {
        let post: PostMessage = decode_api(r#"{"body":"hi","nonce":"n1"}"#).unwrap();
        assert_eq!(post.from, None);
        assert_eq!(encode_api(&post), r#"{"body":"hi","nonce":"n1"}"#);
        assert!(decode_api::<PostMessage>(r#"{"from":"alice"}"#).is_err());
        assert_eq!(
            decode_api::<Disconnect>("{}").unwrap(),
            Disconnect::default()
        );
        let rooms = Rooms {
            rooms: vec![RoomInfo {
                name: "general".into(),
                members: 2,
            }],
            has_more: false,
        };
        assert_eq!(
            encode_api(&rooms),
            r#"{"rooms":[{"name":"general","members":2}],"has_more":false}"#
        );
        let answer: TokenResponse = decode_api(r#"{"token":"a.b.c","exp":1}"#).unwrap();
        assert_eq!(answer.token, "a.b.c", "other fields ignored");
        assert!(decode_api::<TokenResponse>(r#"{"token":5}"#).is_err());
        let claims: TokenSubject = decode_api(r#"{"sub":"grace","exp":1}"#).unwrap();
        assert_eq!(claims.sub, "grace");
    }
}
