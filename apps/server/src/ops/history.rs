//! A page of a room's history: a WebSocket `history`, or the API's
//! `GET /rooms/{room}/messages`.

use skat_broker::{Broker, Message, MessageId};
use skat_protocol::{Invalid, keep_newest_within, validate_history_limit};

use super::Access;
use crate::metrics::BrokerCall;
use crate::state::AppState;

/// A checked request for a page of `room`'s messages before `before` (the latest without it).
pub(crate) struct History {
    room: String,
    limit: usize,
    before: Option<MessageId>,
}

impl History {
    /// Checks, in this order, the room, `access` (see the module docs), the limit (default 50,
    /// at most 100) and `before`.
    pub(crate) fn parse(
        room: String,
        access: impl Access,
        limit: Option<u32>,
        before: Option<&str>,
    ) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        let limit = validate_history_limit(limit)? as usize;
        let before = super::message_id(before)?;
        Ok(Self {
            room,
            limit,
            before,
        })
    }

    /// Reads the page and keeps its newest messages within `--max-reply-bytes`.
    pub(crate) async fn run<B: Broker>(self, state: &AppState<B>) -> Result<Page, B::Error> {
        let page = state.broker().history(&self.room, self.before, self.limit);
        let mut page = state.metrics().timed(BrokerCall::History, page).await?;
        let cut = keep_newest_within(&mut page.messages, state.config().max_reply_bytes);
        Ok(Page {
            room: self.room,
            messages: page.messages,
            has_more: page.has_more || cut,
        })
    }
}

/// A page of history, bounded in bytes, oldest first.
pub(crate) struct Page {
    pub(crate) room: String,
    pub(crate) messages: Vec<Message>,
    /// Whether older messages remain: the broker's page did not reach the start, or the bound
    /// left its oldest messages out.
    pub(crate) has_more: bool,
}
