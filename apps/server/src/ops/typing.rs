//! A typing notification: a WebSocket `typing`, relayed to the room's other members.

use skat_broker::Broker;
use skat_protocol::Invalid;

use super::Access;
use crate::metrics::BrokerCall;
use crate::state::AppState;

/// A checked typing notification in `room`.
pub(crate) struct Typing {
    room: String,
}

impl Typing {
    /// Checks the room, then `access` (see the module docs).
    pub(crate) fn parse(room: String, access: impl Access) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        Ok(Self { room })
    }

    /// Relays that `user` is typing. Typing notifications are transient: a caller may drop the
    /// error (after logging it).
    pub(crate) async fn run<B: Broker>(
        self,
        state: &AppState<B>,
        user: &str,
    ) -> Result<(), B::Error> {
        let relayed = state.broker().typing(&self.room, user);
        state.metrics().timed(BrokerCall::Typing, relayed).await
    }
}
