//! Deleting a message: a WebSocket `delete`, or the API's `DELETE /rooms/{room}/messages/{id}`.
//!
//! The broker drops the body (from its memory, or from Redis) and keeps a tombstone in the
//! message's place; it decides whether the deletion is allowed, as for an edit.

use skat_broker::{Broker, ChangeKind, Changed, MessageId};
use skat_protocol::Invalid;

use super::Access;
use crate::metrics::BrokerCall;
use crate::state::AppState;

/// A checked deletion of message `target` in `room`.
pub(crate) struct Delete {
    room: String,
    target: MessageId,
    nonce: Option<String>,
}

impl Delete {
    /// Checks, in this order, the room, `access` (see the module docs of `ops`), the message
    /// id, then the nonce.
    pub(crate) fn parse(
        room: String,
        access: impl Access,
        id: &str,
        nonce: Option<String>,
    ) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        let target = super::target_id(id)?;
        super::check_nonce(nonce.as_deref())?;
        Ok(Self {
            room,
            target,
            nonce,
        })
    }

    /// The room's name.
    pub(crate) fn room(&self) -> &str {
        &self.room
    }

    /// Stores the deletion by `by` (its author's, unless `as_author` is off: a moderator, the
    /// API).
    pub(crate) async fn run<B: Broker>(
        self,
        state: &AppState<B>,
        by: String,
        as_author: bool,
    ) -> Result<Changed, B::Error> {
        let new = super::new_change(
            self.room,
            self.target,
            by,
            ChangeKind::Delete,
            self.nonce,
            as_author,
        );
        super::change(state, BrokerCall::Delete, new).await
    }
}
