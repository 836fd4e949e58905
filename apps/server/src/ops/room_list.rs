//! A page of the rooms, by name, with their member counts: the API's `GET /rooms`.

use skat_broker::{Broker, RoomsPage};
use skat_protocol::{ErrorCode, Invalid};

use crate::metrics::BrokerCall;
use crate::state::AppState;

/// Rooms listed per page by default, and at most.
const DEFAULT_ROOMS: usize = 100;
const MAX_ROOMS: usize = 1000;

/// A checked request for the rooms after `after`.
pub(crate) struct RoomList {
    after: Option<String>,
    limit: usize,
}

impl RoomList {
    /// Checks the limit (default 100, at most 1000).
    pub(crate) fn parse(after: Option<String>, limit: Option<usize>) -> Result<Self, Invalid> {
        let limit = limit.unwrap_or(DEFAULT_ROOMS);
        if !(1..=MAX_ROOMS).contains(&limit) {
            return Err(Invalid {
                code: ErrorCode::InvalidLimit,
                message: format!("limit must be between 1 and {MAX_ROOMS}"),
            });
        }
        Ok(Self { after, limit })
    }

    /// Reads the page: the rooms some node subscribed to (Redis), or that hold messages or
    /// members (embedded broker).
    pub(crate) async fn run<B: Broker>(self, state: &AppState<B>) -> Result<RoomsPage, B::Error> {
        let page = state.broker().rooms(self.after.as_deref(), self.limit);
        state.metrics().timed(BrokerCall::Rooms, page).await
    }
}
