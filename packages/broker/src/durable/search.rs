//! Full-text search of a room's messages in the journal's FTS5 index (`entries_fts`, which the
//! writer keeps to messages' current bodies: an edit re-indexes, a delete or a trim unindexes).
//!
//! Why it is shaped so:
//! - Connections of their own, never the writer's: a search waits for no commit, and a commit
//!   waits for no search (WAL: readers and the writer do not block each other). It runs on
//!   tokio's blocking pool, since SQLite blocks.
//! - Bounded cost, never a queue: [`SEARCHERS`] connections, each running one search at a
//!   time; a search that finds none idle is refused at once, and one running past [`BUDGET`]
//!   is interrupted (SQLite's interrupt), both as [`DurableError::Overloaded`], which the
//!   server answers `unavailable` (retry later). A waiting line of searches would hold blocking
//!   threads and grow without bound under load.
//! - Words, not FTS5's query language: each word becomes a quoted string (a `"` in it doubled),
//!   so `AND`, `OR`, `NOT`, `NEAR`, `*`, `^`, `:` and parentheses are plain text, and the
//!   strings side by side mean every word must be there. The last word matches a word's start
//!   too (`"dep"*` finds "deploy"), so results can follow someone still typing, if it has at
//!   least [`MIN_PREFIX`] characters: a shorter prefix (`"a"*`) would match most of the index.
//! - Only ids come back: the broker shows the messages as its memory holds them, exactly as
//!   `history` does (reactions included), and bounds the ids to what its readers may see
//!   ([`SearchSpan`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, InterruptHandle, params};

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

/// How many searches run at once (each on its own connection and blocking thread).
pub(super) const SEARCHERS: usize = 2;

/// How long one search may run before it is interrupted.
pub(super) const BUDGET: Duration = Duration::from_millis(200);

/// The fewest characters the last word needs to also match as a word's start.
const MIN_PREFIX: usize = 3;

/// The idle search connections; `None` once the journal closes (a search still running then
/// drops its connection when done, instead of giving it back).
#[derive(Debug)]
pub(super) struct Searchers(Mutex<Option<Vec<Connection>>>);

impl Searchers {
    pub(super) fn new(conns: Vec<Connection>) -> Searchers {
        Searchers(Mutex::new(Some(conns)))
    }

    /// An idle connection, if any.
    pub(super) fn take(&self) -> Option<Connection> {
        lock(&self.0).as_mut().and_then(Vec::pop)
    }

    /// Gives `conn` back after a search (or drops it, if closed).
    fn give_back(&self, conn: Connection) {
        if let Some(idle) = lock(&self.0).as_mut() {
            idle.push(conn);
        }
    }

    /// Closes the idle connections.
    pub(super) fn close(&self) {
        lock(&self.0).take();
    }
}

/// Interrupts a running search when dropped, unless disarmed: on a blown budget, and when the
/// caller stops waiting (a client gone), so no search outlives its asker. `done` (set by the
/// search before it gives its connection back, under the same lock) keeps it from interrupting
/// the next search on that connection.
struct Interrupt {
    handle: Option<InterruptHandle>,
    done: Arc<Mutex<bool>>,
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let done = lock(&self.done);
            if !*done {
                handle.interrupt();
            }
        }
    }
}

impl Journal {
    /// The ids of up to `limit` messages of `room` within `span` that hold every one of
    /// `words`, newest first, and whether more match. Runs on the blocking pool, on an idle
    /// search connection.
    ///
    /// # Errors
    ///
    /// [`DurableError::Overloaded`] if no search connection is idle or the search ran past its
    /// budget; otherwise as SQLite tells (an `Io` failure, a `Corrupt` file), or `Io` if the
    /// search's task died.
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
        let overloaded = |detail: &str| DurableError::Overloaded {
            path: self.path.clone(),
            detail: detail.to_owned(),
        };
        let Some(conn) = self.searchers.take() else {
            return Err(overloaded("every search connection is busy"));
        };
        let done = Arc::new(Mutex::new(false));
        let mut interrupt = Interrupt {
            handle: Some(conn.get_interrupt_handle()),
            done: Arc::clone(&done),
        };
        let searchers: Arc<Searchers> = Arc::clone(&self.searchers);
        let (room, path) = (room.to_owned(), self.path.clone());
        let mut task = tokio::task::spawn_blocking(move || {
            let found = find(&conn, &room, &query, span, limit);
            {
                let mut done = lock(&done);
                *done = true;
                searchers.give_back(conn);
            }
            found.map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::OperationInterrupted) => DurableError::Overloaded {
                    path: path.clone(),
                    detail: "the search ran past its time budget".into(),
                },
                _ => DurableError::sqlite(&path, &e),
            })
        });
        let outcome = match tokio::time::timeout(self.search_budget, &mut task).await {
            Ok(outcome) => {
                interrupt.handle = None;
                outcome
            }
            Err(_elapsed) => {
                drop(interrupt);
                task.await
            }
        };
        outcome.unwrap_or_else(|e| {
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
    let words: Vec<&String> = words
        .iter()
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .collect();
    let last = words.last()?;
    let mut query = words
        .iter()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ");
    if last.chars().count() >= MIN_PREFIX {
        query.push('*');
    }
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
    // A cursor above `through` bounds nothing more (and may not fit SQLite's integers).
    let before = span
        .before
        .filter(|before| *before <= span.through)
        .map(|id| (id.ms, id.seq))
        .unzip();
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
            match_expression(&words(&["a", "OR", r#"b"c"#, "-", "dep*"])).as_deref(),
            Some(r#""a" "OR" "b""c" "dep*"*"#)
        );
        assert_eq!(match_expression(&words(&["-", "()"])), None);
    }

    #[test]
    fn a_last_word_under_three_characters_is_no_prefix() {
        assert_eq!(
            match_expression(&words(&["deploy", "a"])).as_deref(),
            Some(r#""deploy" "a""#)
        );
        assert_eq!(
            match_expression(&words(&["de", "-"])).as_deref(),
            Some(r#""de""#)
        );
        assert_eq!(
            match_expression(&words(&["dép"])).as_deref(),
            Some(r#""dép"*"#)
        );
    }
}
