//! The node's operations, each written once whatever transport asks for it: the WebSocket
//! (`conn`) and the server API (`api`) are adapters around them.
//!
//! An operation is two steps, as a mini-redis command is parsed and then applied:
//!
//! - `parse` (or `check`) takes the request's fields as the transport received them, in the
//!   order PROTOCOL.md checks them, checks them in that order and turns them into typed values
//!   (but for a message's nonce, which the WebSocket checks first itself, to echo it: see
//!   `Publish::check_nonce`; the API checks it last, API.md's order).
//!   Right after the room's name comes `access`, the transport's own check of the room: for the
//!   WebSocket, that the connection joined it (and, for reads, its request budget); for the
//!   API, nothing ([`any_room`]: its key covers every room). A refusal is the protocol's
//!   [`Invalid`], a code and a message, which each transport answers its way (an `error` frame,
//!   a 400).
//! - `run` calls the broker, timed (`Metrics::timed`), bounds what the reply carries
//!   (`--max-reply-bytes`, counted as the bytes on the wire: `skat_protocol::keep_newest_within`)
//!   and returns a typed outcome, or the broker's error, which the transport logs and answers as
//!   unavailable (its internals never reach a client).
//!
//! So a transport adds only what is its own, between the two steps and around them: the
//! WebSocket its rate buckets, joined rooms and frames; the API its key, status codes and JSON
//! bodies. Neither calls the broker itself. A new operation (an edit, a reaction) is one file
//! here and a thin adapter in each transport.

mod disconnect;
mod history;
mod join;
mod members;
mod publish;
mod room_list;
mod typing;

pub(crate) use disconnect::Disconnect;
pub(crate) use history::History;
pub(crate) use join::Join;
pub(crate) use members::Members;
pub(crate) use publish::{Publish, Sender};
pub(crate) use room_list::RoomList;
pub(crate) use typing::Typing;

use skat_protocol::{ErrorCode, Invalid, InvalidMessageId, MessageId, validate_room};

/// What a transport checks of a request's room once its name is valid, before the request's
/// other fields (see the module docs): any `FnOnce(&str) -> Result<(), Invalid>`.
pub(crate) trait Access: FnOnce(&str) -> Result<(), Invalid> {}

impl<F: FnOnce(&str) -> Result<(), Invalid>> Access for F {}

/// The API's `access`: its key covers every room.
pub(crate) fn any_room(_room: &str) -> Result<(), Invalid> {
    Ok(())
}

/// Checks a request's room: its name, then the transport's `access` to it (see the module
/// docs). Every operation on a room starts here.
fn check_room(room: &str, access: impl Access) -> Result<(), Invalid> {
    validate_room(room)?;
    access(room)
}

/// A message id a request carries (`join.since`, `history.before`), parsed where the request's
/// other fields are checked, so that a malformed one is refused in their order.
fn message_id(id: Option<&str>) -> Result<Option<MessageId>, Invalid> {
    id.map(str::parse::<MessageId>)
        .transpose()
        .map_err(|err: InvalidMessageId| Invalid {
            code: ErrorCode::InvalidId,
            message: err.to_string(),
        })
}
