//! The full-text index's writes of a batch, run after the batch's other statements.
//!
//! Why deferred: FTS5 flushes its pending terms to a new on-disk segment whenever a statement
//! transaction (a savepoint) opens around it, and SQLite opens one for most of the batch's
//! statements (foreign keys, upserts). Indexing each message where it is inserted therefore
//! wrote one segment per message, and then merged them: measured as most of the writer's time
//! at a few thousand sends per second. Collected here and run together at the end of the batch,
//! the index gets one segment per commit.
//!
//! The index has external content (`entries`): removing a row's terms needs the body it was
//! indexed with, so a removal reads that body when it is queued, before the batch changes it.

use rusqlite::{Connection, Params, params};

/// A write to the index.
#[derive(Debug)]
enum Write {
    /// Index row `rowid`'s body.
    Add(i64, String),
    /// Remove row `rowid`, indexed with this body.
    Remove(i64, String),
}

/// The index writes of a batch, in order.
#[derive(Debug, Default)]
pub(super) struct IndexWrites(Vec<Write>);

impl IndexWrites {
    /// Queues indexing `body` as row `rowid`.
    pub(super) fn add(&mut self, rowid: i64, body: &str) {
        self.0.push(Write::Add(rowid, body.to_owned()));
    }

    /// Queues indexing the `(id, body)` rows `select` returns now.
    pub(super) fn add_selected(
        &mut self,
        tx: &Connection,
        select: &str,
        args: impl Params,
    ) -> rusqlite::Result<()> {
        self.select(tx, select, args, Write::Add)
    }

    /// Queues removing the `(id, body)` rows `select` returns now (with the bodies they were
    /// indexed with).
    pub(super) fn remove_selected(
        &mut self,
        tx: &Connection,
        select: &str,
        args: impl Params,
    ) -> rusqlite::Result<()> {
        self.select(tx, select, args, Write::Remove)
    }

    fn select(
        &mut self,
        tx: &Connection,
        select: &str,
        args: impl Params,
        write: fn(i64, String) -> Write,
    ) -> rusqlite::Result<()> {
        let mut statement = tx.prepare_cached(select)?;
        let mut rows = statement.query(args)?;
        while let Some(row) = rows.next()? {
            self.0.push(write(row.get(0)?, row.get(1)?));
        }
        Ok(())
    }

    /// Runs the queued writes, in order, and forgets them.
    pub(super) fn flush(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        for write in self.0.drain(..) {
            match write {
                Write::Add(rowid, body) => tx
                    .prepare_cached("INSERT INTO entries_fts (rowid, body) VALUES (?1, ?2)")?
                    .execute(params![rowid, body])?,
                Write::Remove(rowid, body) => tx
                    .prepare_cached(
                        "INSERT INTO entries_fts (entries_fts, rowid, body)
                         VALUES ('delete', ?1, ?2)",
                    )?
                    .execute(params![rowid, body])?,
            };
        }
        Ok(())
    }
}
