//! Search on a durable broker (issue 23, step 5): the journal's full-text index finds the ids,
//! the room's memory gives the messages, so a result is exactly what `history` would show of
//! it (current body, reactions, tombstone rules).
//!
//! The ids asked for are bounded to what readers of the room see: above the newest id trimmed
//! from memory (the file may keep more) and up to the newest committed one. The room's lock is
//! not held while SQLite searches; an id whose message memory no longer holds by then (trimmed
//! since), or that was deleted since, is left out of the page.

use super::MemoryBroker;
use super::durable::Durable;
use crate::durable::SearchSpan;
use crate::{MemoryError, MessageId, SearchPage, lock};

impl MemoryBroker {
    /// [`Broker::search`](crate::Broker::search) on `durable`'s journal.
    pub(super) async fn search_journal(
        &self,
        durable: &Durable,
        room: &str,
        words: &[String],
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<SearchPage, MemoryError> {
        let Some(log) = self.existing(room) else {
            return Ok(SearchPage::default());
        };
        let span = {
            let state = lock(&log.state);
            let Some(newest) = state.visible().checked_sub(1) else {
                return Ok(SearchPage::default());
            };
            SearchSpan {
                after: state.trimmed,
                through: state.history[newest].id(),
                before,
            }
        };
        let (ids, has_more) = durable.journal.search(room, words, span, limit).await?;
        let state = lock(&log.state);
        let messages = ids
            .into_iter()
            .filter_map(|id| state.message(id))
            .filter(|m| !m.is_deleted())
            .cloned()
            .collect();
        Ok(SearchPage { messages, has_more })
    }
}
