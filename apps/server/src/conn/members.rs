//! The `members` request: a page of a joined room's members, by name. `joined` lists only the
//! first ones (so its frame stays small in a huge room); this is how a client reads the rest,
//! checked and limited like `history` (member-only, the join/history request budget).

use skat_broker::Broker;
use skat_protocol::{ErrorCode, ServerFrame, validate_members_limit, validate_name};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Level;

use super::{Conn, conn_event};
use crate::metrics::BrokerCall;

impl<B, IO> Conn<B, IO>
where
    B: Broker,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// A page of a joined room's members after `after`, in name order.
    pub(super) async fn members(
        &mut self,
        room: String,
        after: Option<String>,
        limit: Option<u32>,
    ) {
        if let Err(invalid) = self.check_room(&room, true) {
            return self.reply_invalid(invalid, None);
        }
        if !self.request_allowed() {
            return;
        }
        let limit = match validate_members_limit(limit) {
            Ok(limit) => limit,
            Err(invalid) => return self.reply_invalid(invalid, None),
        };
        // A cursor is a member's name; anything else is a client's mistake, said as such.
        if let Some(Err(invalid)) = after.as_deref().map(validate_name) {
            return self.reply_invalid(invalid, None);
        }
        let page = self
            .state
            .broker()
            .members(&room, after.as_deref(), limit as usize);
        let page = self.state.metrics().timed(BrokerCall::Members, page).await;
        match page {
            Ok(page) => {
                let next = page.next().map(str::to_owned);
                self.reply(&ServerFrame::Members {
                    room,
                    members: page.members,
                    next,
                });
            }
            Err(err) => {
                conn_event!(self, Level::WARN, error = %err, "members failed");
                self.reply_error(
                    ErrorCode::Unavailable,
                    "members are unavailable, retry later",
                    None,
                );
            }
        }
    }
}
