//! Full-text search of a room's messages in the journal's FTS5 index (`entries_fts`, which the
//! writer keeps to messages' current bodies: an edit re-indexes, a delete or a trim unindexes).
//!
//! Why it is shaped so:
//! - A connection of its own, never the writer's: a search waits for no commit, and a commit
//!   waits for no search (WAL: readers and the writer do not block each other). It runs on
//!   tokio's blocking pool, since SQLite blocks.
//! - Words, not FTS5's query language: each word becomes a quoted string (a `"` in it doubled),
//!   so `AND`, `OR`, `NOT`, `NEAR`, `*`, `^`, `:` and parentheses are plain text, and the
//!   strings side by side mean every word must be there. The last word matches a word's start
//!   too (`"dep"*` finds "deploy"), so results can follow someone still typing.
//! - Only ids come back: the broker shows the messages as its memory holds them, exactly as
//!   `history` does (reactions included), and bounds the ids to what its readers may see
//!   ([`SearchSpan`]).

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

use super::{DurableError, Journal};
use crate::{MessageId, lock};

/// Which ids a search may return: those after `after` (the newest id trimmed from memory, if
/// any), up to `through` (the newest one committed and retained), and strictly before `before`
/// (the page's cursor), if given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchSpan {
    /// Only ids above it.
    pub after: Option<MessageId>,
    /// Only ids up to it.
    pub through: MessageId,
    /// Only ids below it.
    pub before: Option<MessageId>,
}

impl Journal {
    /// The ids of up to `limit` messages of `room` within `span` that hold every one of
    /// `words`, newest first, and whether more match. Runs on the blocking pool, on the
    /// search connection.
    ///
    /// # Errors
    ///
    /// As SQLite tells (an `Io` failure, a `Corrupt` file), or `Io` if the search's task died.
    pub async fn search(
        &self,
        room: &str,
        words: &[String],
        span: SearchSpan,
        limit: usize,
    ) -> Result<(Vec<MessageId>, bool), DurableError> {
        let Some(query) = match_expression(words) else {
            return Ok((Vec::new(), false));
        };
        let conn: Arc<Mutex<Connection>> = Arc::clone(&self.searcher);
        let (room, path) = (room.to_owned(), self.path.clone());
        let task = tokio::task::spawn_blocking(move || {
            find(&lock(&conn), &room, &query, span, limit)
                .map_err(|e| DurableError::sqlite(&path, &e))
        });
        task.await.unwrap_or_else(|e| {
            Err(DurableError::Io {
                path: self.path.clone(),
                detail: format!("search task failed: {e}"),
            })
        })
    }
}

/// The FTS5 query of `words` (see the module's doc); `None` if no word holds anything to find
/// (a letter or a digit).
fn match_expression(words: &[String]) -> Option<String> {
    let quoted: Vec<String> = words
        .iter()
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    let mut query = quoted.join(" ");
    if query.is_empty() {
        return None;
    }
    query.push('*');
    Some(query)
}

/// Runs the search on `conn`: `limit` ids plus one, to tell whether more match.
fn find(
    conn: &Connection,
    room: &str,
    query: &str,
    span: SearchSpan,
    limit: usize,
) -> rusqlite::Result<(Vec<MessageId>, bool)> {
    let after = span.after.map(|id| (id.ms, id.seq)).unzip();
    let before = span.before.map(|id| (id.ms, id.seq)).unzip();
    let mut ids = conn
        .prepare_cached(
            "SELECT e.ms, e.seq FROM entries_fts JOIN entries AS e ON e.id = entries_fts.rowid
             WHERE entries_fts MATCH ?1 AND e.room = ?2 AND e.kind = 'message' AND e.deleted = 0
               AND (?3 IS NULL OR (e.ms, e.seq) > (?3, ?4))
               AND (e.ms, e.seq) <= (?5, ?6)
               AND (?7 IS NULL OR (e.ms, e.seq) < (?7, ?8))
             ORDER BY e.ms DESC, e.seq DESC LIMIT ?9",
        )?
        .query_map(
            params![
                query,
                room,
                after.0,
                after.1,
                span.through.ms,
                span.through.seq,
                before.0,
                before.1,
                i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX),
            ],
            |row| {
                Ok(MessageId {
                    ms: row.get(0)?,
                    seq: row.get(1)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = ids.len() > limit;
    ids.truncate(limit);
    Ok((ids, more))
}

#[cfg(test)]
mod tests {
    use super::match_expression;

    fn words(text: &[&str]) -> Vec<String> {
        text.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn words_are_quoted_and_the_last_is_a_prefix() {
        assert_eq!(
            match_expression(&words(&["a", "OR", r#"b"c"#, "-", "d*"])).as_deref(),
            Some(r#""a" "OR" "b""c" "d*"*"#)
        );
        assert_eq!(match_expression(&words(&["-", "()"])), None);
    }
}
