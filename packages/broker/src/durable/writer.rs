//! The journal's one writer: a thread of its own (never a tokio worker: SQLite blocks) owning
//! the write connection, fed by a channel of operations each with its completion. It takes
//! whatever is queued, runs it in ONE transaction (group commit: one WAL sync for many sends),
//! commits, and only then completes the operations, in order. A caller emits to subscribers
//! and answers its sender only after completion, so nothing is confirmed before it is stored;
//! if the commit fails, every operation of the batch completes with the error.
//!
//! A room whose write failed is poisoned: every later operation of it fails too, untouched,
//! until the broker queues [`WriteOp::Reloaded`] for it (after putting the room back as the file
//! holds it). So in a room, an operation that committed had every earlier one commit: a broker
//! confirming a later id of the room confirms the earlier ones rightly.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::DurableError;
use super::index::IndexWrites;
use crate::{Change, Message, MessageId};

/// How long the writer waits without a write before it checkpoints (see [`checkpoint`]).
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// The most operations one transaction takes, so a flood still commits (and confirms) in steps.
const MAX_BATCH: usize = 4096;

/// One write to the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// A room exists with this epoch (created, or its history restarted).
    Room {
        /// The room.
        room: String,
        /// Its epoch.
        epoch: String,
    },
    /// A message appended to its room's log (its room must exist).
    Message(Message),
    /// A change appended to its room's log and applied to its target's current state.
    Change(Change),
    /// The room's entries up to `through` (included) dropped from the file, bodies and all: the
    /// history length (or a retention) passed them. `through` is remembered as the room's
    /// newest trimmed id.
    Trim {
        /// The room.
        room: String,
        /// The newest id dropped.
        through: MessageId,
    },
    /// Retention: the room's entries up to `through` dropped as by [`WriteOp::Trim`], and with
    /// them every change (of any id) that targets one of them, so nothing of an expired message
    /// stays in the file.
    Sweep {
        /// The room.
        room: String,
        /// The newest id dropped.
        through: MessageId,
    },
    /// A user's read marker moved to `id`.
    Marker {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// Everything up to it is read.
        id: MessageId,
    },
    /// Nonces whose window ended by `now_ms` (Unix milliseconds) forgotten, in every room, so
    /// the table holds a window, not every nonce ever sent. (A load skips expired ones anyway.)
    Expire {
        /// The time.
        now_ms: u64,
    },
    /// A nonce accepted, remembered until `expires_ms` (Unix milliseconds).
    Nonce {
        /// The room.
        room: String,
        /// The request kind's nonce space.
        space: String,
        /// The sender.
        who: String,
        /// The nonce.
        nonce: String,
        /// The id accepted under it.
        id: MessageId,
        /// A change's count (0 otherwise).
        count: u32,
        /// When it expires.
        expires_ms: u64,
    },
    /// Operations that stand or fall together, in one savepoint: an entry with its nonce and
    /// the trim its push caused, so a write that fails (a full disk) cannot leave the entry
    /// stored without the nonce that makes a retry a duplicate.
    All(Vec<WriteOp>),
    /// Writes nothing: the room's operations queued after it run again. After a failed write of
    /// a room, its later operations fail (see the module's doc) until this marker, which the
    /// broker queues once it stopped queueing the room's writes; when it completes, every
    /// earlier operation of the room has completed (failed), and the file is the room's truth.
    Reloaded {
        /// The room.
        room: String,
    },
}

impl WriteOp {
    /// The room the operation writes to (none for [`WriteOp::Expire`], which spans rooms).
    pub fn room(&self) -> Option<&str> {
        match self {
            Self::Room { room, .. }
            | Self::Trim { room, .. }
            | Self::Sweep { room, .. }
            | Self::Marker { room, .. }
            | Self::Nonce { room, .. }
            | Self::Reloaded { room } => Some(room),
            Self::Message(m) => Some(&m.room),
            Self::Change(Change::Edited(c)) => Some(&c.room),
            Self::Change(Change::Deleted(c)) => Some(&c.room),
            Self::Change(Change::Reacted(c)) => Some(&c.room),
            Self::Change(Change::Unknown) => None,
            Self::Expire { .. } => None,
            Self::All(ops) => ops.iter().find_map(Self::room),
        }
    }
}

/// An operation's completion: `Ok` once its transaction committed.
pub type Completion = oneshot::Sender<Result<(), DurableError>>;

/// Runs the writer until every sender of `ops` is gone.
pub(super) fn run(
    mut conn: Connection,
    path: &Path,
    ops: &Receiver<(WriteOp, Completion)>,
    commits: &Arc<AtomicU64>,
) {
    let mut batch = Vec::new();
    let mut poisoned = HashSet::new();
    let mut unchecked = false;
    loop {
        let first = match ops.recv_timeout(IDLE_CHECKPOINT) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => {
                if unchecked {
                    checkpoint(&conn, path);
                    unchecked = false;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        unchecked = true;
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let outcomes = commit(&mut conn, path, &batch, &poisoned);
        commits.fetch_add(1, Ordering::Relaxed);
        for ((op, _), outcome) in batch.iter().zip(&outcomes) {
            poison(&mut poisoned, op, outcome.is_err());
        }
        for ((_, done), outcome) in batch.drain(..).zip(outcomes) {
            // The caller may have stopped waiting; its write stands either way.
            let _ = done.send(outcome);
        }
    }
}

/// Copies the WAL into the database and truncates it: once the node is idle, old page images
/// (a deleted body's among them) leave the WAL instead of waiting to be overwritten. A failure
/// is only logged: the next idle moment, or SQLite's own checkpoints, try again.
fn checkpoint(conn: &Connection, path: &Path) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(path = %path.display(), error = %e, "the idle checkpoint failed");
    }
}

/// Updates the rooms `poisoned` after `op`: its marker clears its room, its failure poisons it.
fn poison(poisoned: &mut HashSet<String>, op: &WriteOp, failed: bool) {
    match (op, op.room()) {
        (WriteOp::Reloaded { room }, _) => {
            poisoned.remove(room);
        }
        (_, Some(room)) if failed && !poisoned.contains(room) => {
            poisoned.insert(room.to_owned());
        }
        _ => {}
    }
}

/// Whether `op` must fail untouched: its room is poisoned (and it is not the marker).
fn refused(poisoned: &HashSet<String>, op: &WriteOp) -> bool {
    !matches!(op, WriteOp::Reloaded { .. }) && op.room().is_some_and(|r| poisoned.contains(r))
}

/// The error of an operation refused because an earlier write of its room failed.
fn refusal(path: &Path, op: &WriteOp) -> DurableError {
    DurableError::Refused {
        path: path.to_owned(),
        room: op.room().unwrap_or_default().to_owned(),
    }
}

/// Runs `batch` in one transaction and returns each operation's outcome: if the commit fails,
/// every one is that error. An operation of a room `poisoned` (or poisoned by a failure earlier
/// in the batch) fails untouched; a [`WriteOp::Reloaded`] clears its room.
///
/// The batch first runs as plain statements: a savepoint per operation would make FTS5 flush
/// its pending index to disk at every savepoint (a segment per message) and SQLite copy every
/// page an operation touches to a statement journal, which measured as most of the writer's
/// time. Only if an operation fails (say a change to a message the file lacks) is the batch
/// rolled back and run again with a savepoint per operation, so that one fails alone.
fn commit(
    conn: &mut Connection,
    path: &Path,
    batch: &[(WriteOp, Completion)],
    poisoned: &HashSet<String>,
) -> Vec<Result<(), DurableError>> {
    let sqlite = |e: &rusqlite::Error| DurableError::sqlite(path, e);
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return vec![Err(sqlite(&e)); batch.len()],
    };
    let mut index = IndexWrites::default();
    // Usually empty: cloning it allocates nothing then.
    let mut now_poisoned = poisoned.clone();
    let mut outcomes = Vec::with_capacity(batch.len());
    let applied = batch
        .iter()
        .try_for_each(|(op, _)| {
            let refuse = refused(&now_poisoned, op);
            poison(&mut now_poisoned, op, false);
            outcomes.push(if refuse {
                Err(refusal(path, op))
            } else {
                Ok(())
            });
            if refuse {
                Ok(())
            } else {
                apply(&tx, op, &mut index)
            }
        })
        .and_then(|()| index.flush(&tx));
    if applied.is_ok() {
        return match tx.commit() {
            Ok(()) => outcomes,
            Err(e) => vec![Err(sqlite(&e)); batch.len()],
        };
    }
    // Dropping the transaction rolls it back.
    drop(tx);
    commit_one_by_one(conn, path, batch, poisoned.clone())
}

/// [`commit`]'s slow path: each operation in a savepoint of its own.
fn commit_one_by_one(
    conn: &mut Connection,
    path: &Path,
    batch: &[(WriteOp, Completion)],
    mut poisoned: HashSet<String>,
) -> Vec<Result<(), DurableError>> {
    let sqlite = |e: &rusqlite::Error| DurableError::sqlite(path, e);
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return vec![Err(sqlite(&e)); batch.len()],
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        if refused(&poisoned, op) {
            outcomes.push(Err(refusal(path, op)));
            continue;
        }
        let outcome = tx.savepoint().and_then(|sp| {
            apply_now(&sp, op)?;
            sp.commit()
        });
        if let Err(e) = &outcome
            && tx.is_autocommit()
        {
            // SQLite rolled the whole transaction back (it may on a full disk, an I/O error,
            // a lock): what the batch wrote so far is gone, so every operation fails.
            return vec![Err(sqlite(e)); batch.len()];
        }
        // A failure poisons the room for the rest of the batch too.
        poison(&mut poisoned, op, outcome.is_err());
        outcomes.push(outcome.map_err(|e| sqlite(&e)));
    }
    match tx.commit() {
        Ok(()) => outcomes,
        Err(e) => vec![Err(sqlite(&e)); batch.len()],
    }
}

/// Applies one operation, its full-text index writes included.
pub(super) fn apply_now(tx: &Connection, op: &WriteOp) -> rusqlite::Result<()> {
    let mut index = IndexWrites::default();
    apply(tx, op, &mut index)?;
    index.flush(tx)
}

/// Applies one operation, queueing its full-text index writes to `index`.
fn apply(tx: &Connection, op: &WriteOp, index: &mut IndexWrites) -> rusqlite::Result<()> {
    match op {
        WriteOp::Room { room, epoch } => {
            tx.prepare_cached(
                "INSERT INTO rooms (name, epoch) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch",
            )?
            .execute(params![room, epoch])?;
        }
        WriteOp::Message(m) => append_message(tx, m, index)?,
        WriteOp::All(ops) => {
            for op in ops {
                apply(tx, op, index)?;
            }
        }
        WriteOp::Change(c) => apply_change(tx, c, index)?,
        WriteOp::Trim { room, through } => trim(tx, room, *through, index)?,
        WriteOp::Sweep { room, through } => {
            trim(tx, room, *through, index)?;
            tx.prepare_cached(
                "DELETE FROM entries WHERE room = ?1 AND kind <> 'message'
                 AND target_ms IS NOT NULL AND (target_ms, target_seq) <= (?2, ?3)",
            )?
            .execute(params![room, through.ms, through.seq])?;
        }
        WriteOp::Reloaded { .. } => {}
        WriteOp::Expire { now_ms } => {
            tx.prepare_cached("DELETE FROM nonces WHERE expires_ms <= ?1")?
                .execute(params![now_ms])?;
        }
        WriteOp::Marker { room, user, id } => {
            tx.prepare_cached(
                "INSERT INTO read_markers (room, user, ms, seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (room, user) DO UPDATE SET ms = excluded.ms, seq = excluded.seq",
            )?
            .execute(params![room, user, id.ms, id.seq])?;
        }
        WriteOp::Nonce {
            room,
            space,
            who,
            nonce,
            id,
            count,
            expires_ms,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO nonces (room, space, who, nonce, ms, seq, count, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![room, space, who, nonce, id.ms, id.seq, count, expires_ms])?;
        }
    }
    Ok(())
}

/// Inserts a message and queues the indexing of its body.
fn append_message(tx: &Connection, m: &Message, index: &mut IndexWrites) -> rusqlite::Result<()> {
    let reply = m.reply_to();
    tx.prepare_cached(
        "INSERT INTO entries (room, ms, seq, kind, author, body, ts, nonce, reply_to_ms,
                              reply_to_seq, edited_ms, deleted)
         VALUES (?1, ?2, ?3, 'message', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        m.room,
        m.id.ms,
        m.id.seq,
        m.from,
        m.body,
        m.ts,
        m.nonce,
        reply.map(|r| r.ms),
        reply.map(|r| r.seq),
        m.edited(),
        m.is_deleted(),
    ])?;
    if !m.is_deleted() {
        index.add(tx.last_insert_rowid(), &m.body);
    }
    for r in m.reactions() {
        for user in &r.users {
            add_reactor(tx, &m.room, m.id, &r.emoji, user, m.id)?;
        }
    }
    Ok(())
}

/// Drops `room`'s entries up to `through`, their bodies from the full-text index, and their
/// reactors (by cascade), and remembers `through` as trimmed.
fn trim(
    tx: &Connection,
    room: &str,
    through: MessageId,
    index: &mut IndexWrites,
) -> rusqlite::Result<()> {
    let at = params![room, through.ms, through.seq];
    index.remove_selected(
        tx,
        "SELECT id, body FROM entries
         WHERE room = ?1 AND (ms, seq) <= (?2, ?3) AND kind = 'message' AND deleted = 0",
        at,
    )?;
    tx.prepare_cached("DELETE FROM entries WHERE room = ?1 AND (ms, seq) <= (?2, ?3)")?
        .execute(at)?;
    tx.prepare_cached(
        "UPDATE rooms SET trimmed_ms = ?2, trimmed_seq = ?3
         WHERE name = ?1 AND (trimmed_ms IS NULL OR (trimmed_ms, trimmed_seq) < (?2, ?3))",
    )?
    .execute(at)?;
    Ok(())
}

/// Records `user` reacting with `emoji` to `target`, by the reaction `at`.
pub(super) fn add_reactor(
    tx: &Connection,
    room: &str,
    target: MessageId,
    emoji: &str,
    user: &str,
    at: MessageId,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO reactions (room, ms, seq, emoji, user, at_ms, at_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        room, target.ms, target.seq, emoji, user, at.ms, at.seq
    ])?;
    Ok(())
}

/// The statement selecting a room's undeleted message `(id, body)` by its id.
const INDEXED: &str = "SELECT id, body FROM entries
     WHERE room = ?1 AND ms = ?2 AND seq = ?3 AND kind = 'message' AND deleted = 0";

/// Fails unless `target` is a stored message of `room`: a change to a message the file lacks
/// is refused rather than stored dangling.
fn require_message(tx: &Connection, room: &str, target: MessageId) -> rusqlite::Result<()> {
    let found = tx
        .prepare_cached(
            "SELECT count(*) FROM entries
             WHERE room = ?1 AND ms = ?2 AND seq = ?3 AND kind = 'message'",
        )?
        .query_row(params![room, target.ms, target.seq], |row| {
            row.get::<_, i64>(0)
        })?;
    if found == 0 {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    Ok(())
}

/// Inserts a change's row, as is (a kind this crate does not know is not stored): what
/// [`apply_change`] appends, and what an import restores.
pub(super) fn insert_change(tx: &Connection, change: &Change) -> rusqlite::Result<()> {
    let insert = "INSERT INTO entries (room, ms, seq, kind, author, body, ts, nonce, target_ms,
                                       target_seq, emoji, added, count)
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
    match change {
        Change::Edited(c) => {
            tx.prepare_cached(insert)?.execute(params![
                c.room,
                c.id.ms,
                c.id.seq,
                "edited",
                c.by,
                c.body,
                c.ts,
                c.nonce,
                c.target.ms,
                c.target.seq,
                None::<String>,
                None::<bool>,
                None::<u32>,
            ])?;
        }
        Change::Deleted(c) => {
            tx.prepare_cached(insert)?.execute(params![
                c.room,
                c.id.ms,
                c.id.seq,
                "deleted",
                c.by,
                None::<String>,
                c.ts,
                c.nonce,
                c.target.ms,
                c.target.seq,
                None::<String>,
                None::<bool>,
                None::<u32>,
            ])?;
        }
        Change::Reacted(c) => {
            tx.prepare_cached(insert)?.execute(params![
                c.room,
                c.id.ms,
                c.id.seq,
                "reacted",
                c.user,
                None::<String>,
                0_u64,
                c.nonce,
                c.target.ms,
                c.target.seq,
                c.emoji,
                c.add,
                c.count,
            ])?;
        }
        Change::Unknown => {}
    }
    Ok(())
}

/// Appends a change and applies it to its target's current state (so a load reads state and
/// replays nothing). A kind this crate does not know is not stored.
fn apply_change(tx: &Connection, change: &Change, index: &mut IndexWrites) -> rusqlite::Result<()> {
    match change {
        Change::Edited(c) => {
            require_message(tx, &c.room, c.target)?;
            insert_change(tx, change)?;
            let target = params![c.room, c.target.ms, c.target.seq];
            index.remove_selected(tx, INDEXED, target)?;
            tx.prepare_cached(
                "UPDATE entries SET body = ?4, edited_ms = ?5
                 WHERE room = ?1 AND ms = ?2 AND seq = ?3 AND kind = 'message' AND deleted = 0",
            )?
            .execute(params![c.room, c.target.ms, c.target.seq, c.body, c.ts])?;
            index.add_selected(tx, INDEXED, target)?;
        }
        Change::Deleted(c) => {
            require_message(tx, &c.room, c.target)?;
            insert_change(tx, change)?;
            index.remove_selected(tx, INDEXED, params![c.room, c.target.ms, c.target.seq])?;
            // The body goes from the file (secure_delete overwrites the old cell), and so do
            // the edits' bodies: a deleted message's text is nowhere.
            tx.prepare_cached(
                "UPDATE entries SET body = '', deleted = 1, edited_ms = NULL, reply_to_ms = NULL, reply_to_seq = NULL
                 WHERE room = ?1 AND ms = ?2 AND seq = ?3 AND kind = 'message'",
            )?
            .execute(params![c.room, c.target.ms, c.target.seq])?;
            tx.prepare_cached(
                "UPDATE entries SET body = '' WHERE room = ?1 AND kind = 'edited'
                 AND target_ms = ?2 AND target_seq = ?3",
            )?
            .execute(params![c.room, c.target.ms, c.target.seq])?;
            tx.prepare_cached("DELETE FROM reactions WHERE room = ?1 AND ms = ?2 AND seq = ?3")?
                .execute(params![c.room, c.target.ms, c.target.seq])?;
        }
        Change::Reacted(c) => {
            require_message(tx, &c.room, c.target)?;
            insert_change(tx, change)?;
            if c.add {
                add_reactor(tx, &c.room, c.target, &c.emoji, &c.user, c.id)?;
            } else {
                tx.prepare_cached(
                    "DELETE FROM reactions
                     WHERE room = ?1 AND ms = ?2 AND seq = ?3 AND emoji = ?4 AND user = ?5",
                )?
                .execute(params![
                    c.room,
                    c.target.ms,
                    c.target.seq,
                    c.emoji,
                    c.user
                ])?;
            }
        }
        Change::Unknown => {}
    }
    Ok(())
}
