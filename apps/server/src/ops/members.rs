//! A page of a room's members, by name: a WebSocket `members`, or the API's
//! `GET /rooms/{room}/members`. `joined` lists only the first ones (so its frame stays small in
//! a huge room); this is how the rest are read.

use skat_broker::Broker;
use skat_protocol::{Invalid, validate_members_limit, validate_name};

use super::Access;
use crate::metrics::BrokerCall;
use crate::state::AppState;

/// A checked request for a page of `room`'s members after `after`.
pub(crate) struct Members {
    room: String,
    limit: usize,
    after: Option<String>,
}

impl Members {
    /// Checks, in this order, the room, `access` (see the module docs), the limit (default and
    /// most: 1000) and the cursor, which must be a user name: anything else is a client's
    /// mistake, said as such.
    pub(crate) fn parse(
        room: String,
        access: impl Access,
        limit: Option<u32>,
        after: Option<String>,
    ) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        let limit = validate_members_limit(limit)? as usize;
        if let Some(after) = &after {
            validate_name(after)?;
        }
        Ok(Self { room, limit, after })
    }

    /// Reads the page.
    pub(crate) async fn run<B: Broker>(self, state: &AppState<B>) -> Result<Page, B::Error> {
        let page = state
            .broker()
            .members(&self.room, self.after.as_deref(), self.limit);
        let page = state.metrics().timed(BrokerCall::Members, page).await?;
        let next = page.next().map(str::to_owned);
        Ok(Page {
            room: self.room,
            members: page.members,
            next,
        })
    }
}

/// A page of members, in name order.
pub(crate) struct Page {
    pub(crate) room: String,
    pub(crate) members: Vec<String>,
    /// The cursor of the next page (the last name), if more members follow.
    pub(crate) next: Option<String>,
}
