//! Skat wire protocol, version 1.
//!
//! Every WebSocket text frame carries exactly one JSON object, internally tagged by its `"type"`
//! field in `snake_case`. [`ClientFrame`] is what clients send, [`ServerFrame`] what servers send.
//! `PROTOCOL.md` at the repository root documents every frame with an example; the golden tests in
//! `tests/golden.rs` pin the exact JSON.
//!
//! This is the only crate in the workspace that knows JSON: servers, brokers and clients exchange
//! these typed values and call [`decode_client`], [`encode_server`] and friends at the edges, and
//! ask it what a message takes encoded ([`message_size`]) to bound replies by their bytes on the
//! wire. It depends on serde alone, so it compiles for native targets and for `wasm32-unknown-unknown`.
//!
//! Messages people can change (issue 22) are additive: a [`Message`] may carry a `reply_to`, an
//! `edited` time, a `deleted` tombstone and `reactions` (each omitted when absent, so a plain
//! message encodes as before; kept behind one box, [`Extras`], so it costs 8 bytes when absent);
//! clients may send `edit`, `delete`, `react` and `read` and a `send` may name `reply_to`; the
//! server announces each change to a message as its own frame (`edited`, `deleted`, `reacted`:
//! [`Edited`], [`Deleted`], [`Reacted`], also recovered in `joined` as a [`Change`]) and a moved
//! read marker as `read`. Emoji are checked by [`validate_emoji`]. `PROTOCOL.md` documents
//! all of it as the server speaks it.
//!
//! Compatibility rule: field names and error codes are a contract other clients code against. We
//! add optional fields and new frame types; we never rename or remove.

pub mod api;
mod changes;
mod codec;
mod export;
mod frames;
mod id;
mod message;
mod names;
mod sizes;
mod validate;

pub use changes::{Change, Deleted, Edited, Reacted};
pub use codec::{DecodeError, decode_client, decode_server, encode_client, encode_server};
pub use export::{ExportRecord, MAX_EXPORT_LINE_BYTES, decode_export, encode_export};
pub use frames::{ClientFrame, ErrorCode, ServerFrame};
pub use id::{InvalidMessageId, MessageId};
pub use message::{Extras, Message, Reaction};
pub use names::{SYSTEM_SENDER, dm_room, dm_users};
pub use sizes::{
    DELETED_SIZE, EDITED_FRAMING, MESSAGE_FRAMING, NONCE_FRAMING, REACTION_FRAMING,
    REACTIONS_FRAMING, REPLY_TO_FRAMING, escaped_len, keep_newest_within, message_size,
};
pub use validate::{
    DEFAULT_HISTORY_LIMIT, DEFAULT_SEARCH_LIMIT, Invalid, MAX_BODY_CHARS, MAX_EMOJI_BYTES,
    MAX_HISTORY_LIMIT, MAX_MEMBERS_LIMIT, MAX_NAME_CHARS, MAX_NONCE_CHARS, MAX_QUERY_BYTES,
    MAX_REACTIONS, MAX_ROOM_CHARS, MAX_SEARCH_LIMIT, REACTION_USERS_SHOWN, UNREAD_CAP,
    search_terms, validate_body, validate_emoji, validate_history_limit, validate_members_limit,
    validate_name, validate_nonce, validate_room, validate_search_limit,
};

/// The protocol version this crate speaks, sent in the `welcome` frame.
pub const PROTOCOL_VERSION: u32 = 1;

/// The WebSocket close codes of protocol v1 that are Skat's own (4000–4999, the range RFC 6455
/// leaves to applications); the standard ones it uses are listed in `PROTOCOL.md`.
pub mod close {
    /// The application's backend disconnected the user (server API); the reason says why.
    /// Clients should not reconnect by themselves.
    pub const DISCONNECTED: u16 = 4000;
    /// The connection's token expired without a `refresh`. Clients get a fresh token, then
    /// reconnect.
    pub const TOKEN_EXPIRED: u16 = 4001;
}
