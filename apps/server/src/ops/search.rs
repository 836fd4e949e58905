//! A search of a room's messages by words: a WebSocket `search`, or the API's
//! `GET /rooms/{room}/search`. Only a broker that keeps an index answers it (the embedded one
//! on a data dir); elsewhere it is `unsupported`, which each transport says its way.

use skat_broker::{Broker, Message, MessageId, Searched};
use skat_protocol::{Invalid, keep_newest_within, search_terms, validate_search_limit};

use super::Access;
use crate::metrics::BrokerCall;
use crate::state::AppState;

/// A checked search of `room` for `words`, before `before` (the newest matches without it).
pub(crate) struct Search {
    room: String,
    q: String,
    words: Vec<String>,
    limit: usize,
    before: Option<MessageId>,
}

impl Search {
    /// Checks, in this order, the room, `access` (see the module docs of `ops`), the query (a
    /// word to find, at most 256 bytes, no control characters), the limit (default 20, at most
    /// 50) and `before`.
    pub(crate) fn parse(
        room: String,
        access: impl Access,
        q: String,
        limit: Option<u32>,
        before: Option<&str>,
    ) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        let words = search_terms(&q)?.into_iter().map(str::to_owned).collect();
        let limit = validate_search_limit(limit)? as usize;
        let before = super::message_id(before)?;
        Ok(Self {
            room,
            q,
            words,
            limit,
            before,
        })
    }

    /// Searches, and keeps the newest messages found within `--max-reply-bytes`; `None` if the
    /// broker cannot search.
    pub(crate) async fn run<B: Broker>(
        self,
        state: &AppState<B>,
    ) -> Result<Option<Found>, B::Error> {
        let search = state
            .broker()
            .search(&self.room, &self.words, self.before, self.limit);
        let page = match state.metrics().timed(BrokerCall::Search, search).await? {
            Searched::Found(page) => page,
            Searched::Unsupported => return Ok(None),
        };
        // Newest first: the bound keeps the newest, counted from the end.
        let mut messages = page.messages;
        messages.reverse();
        let cut = keep_newest_within(&mut messages, state.config().max_reply_bytes);
        messages.reverse();
        Ok(Some(Found {
            room: self.room,
            q: self.q,
            messages,
            has_more: page.has_more || cut,
        }))
    }
}

/// Messages found, newest first, bounded in bytes.
pub(crate) struct Found {
    pub(crate) room: String,
    pub(crate) q: String,
    pub(crate) messages: Vec<Message>,
    /// Whether older messages match: the broker's page did not reach them, or the bound left
    /// its oldest out.
    pub(crate) has_more: bool,
}

/// What a client is told where the broker cannot search.
pub(crate) const UNSUPPORTED: &str =
    "search needs a node that keeps its history on disk (an embedded node with a data dir)";
