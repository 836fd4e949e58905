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
//! bodies. Neither calls the broker itself. A new operation is one file here and a thin
//! adapter in each transport.
//!
//! Changes to a message (`edit`, `delete`, `react`) share their last steps here: the broker's
//! [`Broker::change`] decides them atomically (whether the target exists, is not deleted, is
//! the requester's), so its refusals become the protocol's codes in [`refusal`].

mod delete;
mod disconnect;
mod edit;
mod history;
mod join;
mod members;
mod publish;
mod react;
mod read;
mod room_list;
mod search;
mod typing;

pub(crate) use delete::Delete;
pub(crate) use disconnect::Disconnect;
pub(crate) use edit::Edit;
pub(crate) use history::History;
pub(crate) use join::Join;
pub(crate) use members::Members;
pub(crate) use publish::{Publish, Sender};
pub(crate) use react::{React, is_no_op};
pub(crate) use read::Read;
pub(crate) use room_list::RoomList;
pub(crate) use search::{Search, UNSUPPORTED};
pub(crate) use typing::Typing;

use skat_broker::{Broker, ChangeKind, ChangeRefusal, Changed, NewChange};
use skat_protocol::{
    ErrorCode, Invalid, InvalidMessageId, MessageId, validate_nonce, validate_room,
};

use crate::metrics::BrokerCall;
use crate::state::AppState;

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
    id.map(target_id).transpose()
}

/// The id of the message a change or a `read` names: required, and refused as `invalid_id`
/// when malformed.
fn target_id(id: &str) -> Result<MessageId, Invalid> {
    id.parse::<MessageId>()
        .map_err(|err: InvalidMessageId| Invalid {
            code: ErrorCode::InvalidId,
            message: err.to_string(),
        })
}

/// Checks a request's nonce, if it has one. The WebSocket checks it first (then it is valid to
/// echo in any other refusal); the operations check it last (the API's order, see API.md).
pub(crate) fn check_nonce(nonce: Option<&str>) -> Result<(), Invalid> {
    nonce.map_or(Ok(()), validate_nonce)
}

/// A change as the broker takes it.
fn new_change(
    room: String,
    target: MessageId,
    by: String,
    kind: ChangeKind,
    nonce: Option<String>,
    as_author: bool,
) -> NewChange {
    NewChange {
        room,
        target,
        by,
        kind,
        nonce,
        as_author,
    }
}

/// Stores a change, timed as `call`.
async fn change<B: Broker>(
    state: &AppState<B>,
    call: BrokerCall,
    new: NewChange,
) -> Result<Changed, B::Error> {
    let changed = state.broker().change(new);
    state.metrics().timed(call, changed).await
}

/// The protocol's refusal for the broker's.
pub(crate) fn refusal(refusal: ChangeRefusal) -> Invalid {
    let (code, message) = match refusal {
        ChangeRefusal::NotAuthor => (
            ErrorCode::NotAuthor,
            "only its author or a moderator may change this message",
        ),
        ChangeRefusal::NoSuchMessage => (
            ErrorCode::NoSuchMessage,
            "no such message in the room (or it was deleted)",
        ),
        ChangeRefusal::TooManyReactions => (
            ErrorCode::TooManyReactions,
            "this message has as many distinct reactions as allowed",
        ),
    };
    Invalid {
        code,
        message: message.into(),
    }
}

/// The refusal of a malformed `reply_to`.
fn invalid_reply(err: &InvalidMessageId) -> Invalid {
    Invalid {
        code: ErrorCode::InvalidReply,
        message: format!("reply_to: {err}"),
    }
}
