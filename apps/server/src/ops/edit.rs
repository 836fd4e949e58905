//! Editing a message: a WebSocket `edit`, or the API's `PATCH /rooms/{room}/messages/{id}`.
//!
//! The broker decides whether the edit is allowed (the target exists, is not deleted, and is
//! the editor's unless `as_author` is off): see `skat_broker::Broker::change`.

use skat_broker::{Broker, ChangeKind, Changed, MessageId};
use skat_protocol::{Invalid, validate_body};

use super::Access;
use crate::metrics::BrokerCall;
use crate::state::AppState;

/// A checked edit of message `target` in `room`.
pub(crate) struct Edit {
    room: String,
    target: MessageId,
    body: String,
    nonce: Option<String>,
}

impl Edit {
    /// Checks, in this order, the room, `access` (see the module docs of `ops`), the message
    /// id, the new body (a `send`'s rules), then the nonce.
    pub(crate) fn parse(
        room: String,
        access: impl Access,
        id: &str,
        body: String,
        nonce: Option<String>,
    ) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        let target = super::target_id(id)?;
        validate_body(&body)?;
        super::check_nonce(nonce.as_deref())?;
        Ok(Self {
            room,
            target,
            body,
            nonce,
        })
    }

    /// The room's name.
    pub(crate) fn room(&self) -> &str {
        &self.room
    }

    /// Stores the edit by `by` (its author's, unless `as_author` is off: a moderator, the API).
    pub(crate) async fn run<B: Broker>(
        self,
        state: &AppState<B>,
        by: String,
        as_author: bool,
    ) -> Result<Changed, B::Error> {
        let kind = ChangeKind::Edit { body: self.body };
        let new = super::new_change(self.room, self.target, by, kind, self.nonce, as_author);
        super::change(state, BrokerCall::Edit, new).await
    }
}
