//! Moving a read marker: a WebSocket `read`.
//!
//! The broker keeps one marker per user and room, moves it forward only (never past the room's
//! last id), and, when it moved, tells every node (`RoomEvent::Read`), which each hands that
//! user's connections (`sessions`), the requester's included: that is the answer. A `read`
//! that moves nothing (an older id than the marker) is not answered.

use skat_broker::{Broker, MessageId, ReadState};
use skat_protocol::Invalid;

use super::Access;
use crate::metrics::BrokerCall;
use crate::state::AppState;

/// A checked `read` of `room` up to `id`.
pub(crate) struct Read {
    room: String,
    id: MessageId,
}

impl Read {
    /// Checks, in this order, the room, `access` (see the module docs of `ops`), then the id.
    pub(crate) fn parse(room: String, access: impl Access, id: &str) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        let id = super::target_id(id)?;
        Ok(Self { room, id })
    }

    /// Moves `user`'s marker; returns where it is now and the unread count after it.
    pub(crate) async fn run<B: Broker>(
        self,
        state: &AppState<B>,
        user: &str,
    ) -> Result<ReadState, B::Error> {
        let read = state.broker().read(&self.room, user, self.id);
        state.metrics().timed(BrokerCall::Read, read).await
    }
}
