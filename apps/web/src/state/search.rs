//! Searching the shown room (issue 23): one search at a time, its results newest first, paged
//! with `before`, and why it failed. The server answers a `search` with the `room` and `q` it
//! asked for, so an answer to a search the user has since replaced or closed is dropped; its
//! refusals (`invalid_query`, `unsupported`) carry no nonce, so they are taken as the waiting
//! search's.

use skat_protocol::{ClientFrame, ErrorCode, Message};

use super::Chat;

/// A search of one room and what it found so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// The room searched.
    pub room: String,
    /// The words, as sent.
    pub q: String,
    /// What was found, newest first.
    pub results: Vec<Message>,
    /// Whether older messages match too (see [`Chat::search_more`]).
    pub has_more: bool,
    /// A request is in flight.
    pub waiting: bool,
    /// Why the search failed, for the user.
    pub error: Option<String>,
}

impl Chat {
    /// A `search` of the shown room for `q`, replacing any earlier search; an error to show
    /// if `q` cannot be searched (nothing to find, too long) or there is no room to search.
    #[must_use = "the frames it returns are to be sent"]
    pub fn search(&mut self, q: &str) -> Result<ClientFrame, String> {
        let room = self
            .active_room()
            .filter(|r| r.joined)
            .map(|_| self.active.clone().unwrap_or_default())
            .ok_or_else(|| "Join a room to search it.".to_owned())?;
        skat_protocol::search_terms(q).map_err(|e| e.message)?;
        self.search = Some(Search {
            room: room.clone(),
            q: q.to_owned(),
            waiting: true,
            ..Search::default()
        });
        Ok(ClientFrame::Search {
            room,
            q: q.to_owned(),
            before: None,
            limit: None,
        })
    }

    /// A `search` for the next (older) matches of the current search, unless one is in flight
    /// or none remain.
    #[must_use = "the frames it returns are to be sent"]
    pub fn search_more(&mut self) -> Option<ClientFrame> {
        let search = self.search.as_mut().filter(|s| !s.waiting && s.has_more)?;
        search.waiting = true;
        Some(ClientFrame::Search {
            room: search.room.clone(),
            q: search.q.clone(),
            before: search.results.last().map(|m| m.id.to_string()),
            limit: None,
        })
    }

    /// Closes the search.
    pub fn close_search(&mut self) {
        self.search = None;
    }

    /// A `search` answer: added to the current search if it is this one's.
    pub(super) fn on_search(&mut self, room: &str, q: &str, found: Vec<Message>, more: bool) {
        if let Some(search) = self
            .search
            .as_mut()
            .filter(|s| s.waiting && s.room == room && s.q == q)
        {
            search.results.extend(found);
            search.has_more = more;
            search.waiting = false;
        }
    }

    /// Whether an error is the waiting search's refusal (then shown with it).
    pub(super) fn search_refused(&mut self, code: ErrorCode, message: &str) -> bool {
        let Some(search) = self.search.as_mut().filter(|s| s.waiting) else {
            return false;
        };
        let why = match code {
            ErrorCode::Unsupported => "This server does not keep an index to search.".to_owned(),
            ErrorCode::InvalidQuery => message.to_owned(),
            _ => return false,
        };
        search.error = Some(why);
        search.waiting = false;
        true
    }
}
