//! Reacting to a message: a WebSocket `react`, or the API's
//! `POST /rooms/{room}/messages/{id}/reactions`.
//!
//! `add` is explicit, never a toggle, so a retried request cannot undo itself. A reaction that
//! repeats the user's current one comes back from the broker as [`Changed::New`] with the
//! target's id: nothing was stored or broadcast, and the transport answers the requester alone
//! (see [`is_no_op`]).

use skat_broker::{Broker, Change, ChangeKind, Changed, MessageId};
use skat_protocol::{Invalid, validate_emoji};

use super::Access;
use crate::metrics::BrokerCall;
use crate::state::AppState;

/// A checked reaction to message `target` in `room`.
pub(crate) struct React {
    room: String,
    target: MessageId,
    emoji: String,
    add: bool,
    nonce: Option<String>,
}

impl React {
    /// Checks, in this order, the room, `access` (see the module docs of `ops`), the message
    /// id, the emoji, then the nonce.
    pub(crate) fn parse(
        room: String,
        access: impl Access,
        id: &str,
        emoji: String,
        add: bool,
        nonce: Option<String>,
    ) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        let target = super::target_id(id)?;
        validate_emoji(&emoji)?;
        super::check_nonce(nonce.as_deref())?;
        Ok(Self {
            room,
            target,
            emoji,
            add,
            nonce,
        })
    }

    /// Stores `user`'s reaction (any member may react: the broker ignores `as_author` for it).
    pub(crate) async fn run<B: Broker>(
        self,
        state: &AppState<B>,
        user: String,
    ) -> Result<Changed, B::Error> {
        let kind = ChangeKind::React {
            emoji: self.emoji,
            add: self.add,
        };
        let new = super::new_change(self.room, self.target, user, kind, self.nonce, false);
        super::change(state, BrokerCall::React, new).await
    }
}

/// Whether a [`Changed::New`] change is a reaction that changed nothing (its id is its
/// target's: the broker assigned none), which is answered to its requester only.
pub(crate) fn is_no_op(change: &Change) -> bool {
    change.id().is_some() && change.id() == change.target()
}
