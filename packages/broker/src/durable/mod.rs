//! The embedded node's durable journal (issue 23; `MemoryBroker::open` runs on it, and the
//! server opens one with `--data-dir`): rooms, their ordered logs (messages in their current
//! state, and changes), read markers and the nonce window, in one SQLite file, `DIR/skat.db`,
//! so a restarted node serves exactly the history it confirmed.
//!
//! Why it is shaped so:
//! - One writer thread owns the write connection (`writer.rs`): SQLite has one writer at a time
//!   anyway, and one thread draining a queue commits many operations per transaction (group
//!   commit), which is what makes a durable send cheap. An operation completes only after its
//!   transaction committed; the broker will confirm a send only then.
//! - Durability: WAL with `synchronous=NORMAL`. A commit is in the WAL file when it returns, so
//!   it survives a crash of the process (`kill -9` included); a power loss or OS crash may lose
//!   the last commits (the WAL is synced at checkpoints, not at each commit), never corrupt the
//!   file.
//! - One node per dir: an OS lock on `DIR/skat.lock`, taken at open (`open.rs`), so a second
//!   node fails at startup with [`DurableError::Locked`].
//! - State, not replay: the writer applies each change to its message's row (body, edited,
//!   deleted, reactors), so a load reads the ring's state directly (`load.rs`); the change rows
//!   stay for clients resuming after `since`. A deleted body is removed from the message, its
//!   edits and the full-text index, with `secure_delete` so it is gone from the file.
//! - The schema is versioned by migration files (`migrations/sqlite/`) applied at open; the
//!   version is SQLite's `user_version`.
//! - Export and import (`export.rs`, behind `skat-server export` / `import`): a snapshot of the
//!   file as records without taking the lock, and records back into a dir nobody holds, rows as
//!   they were, in one transaction.

mod error;
mod export;
mod index;
mod load;
mod open;
mod search;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

pub use error::DurableError;
pub use export::{ImportError, Imported, Importer, export};
pub use load::{Loaded, LoadedEntry, LoadedNonce, LoadedRoom, Reactors};
pub use open::JournalConfig;
pub use search::SearchSpan;
use search::Searchers;
pub use writer::{Completion, WriteOp};

/// The journal of one data dir: its writer thread, a read connection for loading, and the dir's
/// lock (held until it is dropped).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// The writer's queue; `None` once closing.
    ops: Option<Sender<(WriteOp, Completion)>>,
    writer: Option<JoinHandle<()>>,
    /// Transactions the writer committed (or tried to).
    commits: Arc<AtomicU64>,
    /// The read connection (loads at startup, a room's reload); `None` once closing.
    reader: Option<Mutex<Connection>>,
    /// The searches' connections (`search.rs`), shared with the blocking task of each.
    searchers: Arc<Searchers>,
    /// How long one search may run before it is interrupted.
    search_budget: Duration,
    /// Held for the dir's exclusive lock.
    _lock: File,
}

impl Journal {
    /// Opens (creating) `dir/skat.db`: takes the dir's lock, sets the pragmas, applies the
    /// migrations, starts the writer thread.
    ///
    /// # Errors
    ///
    /// [`DurableError::Locked`] if another node holds the dir; `ReadOnly`, `Corrupt`, `Full`,
    /// `Migrate`, `Open` or `Io` as SQLite or the system tell, each naming the file.
    pub fn open(dir: &Path) -> Result<Journal, DurableError> {
        Self::open_with(dir, &JournalConfig::default())
    }

    /// [`Journal::open`] with the operator's settings (a size cap).
    ///
    /// # Errors
    ///
    /// As for [`Journal::open`].
    pub fn open_with(dir: &Path, config: &JournalConfig) -> Result<Journal, DurableError> {
        Self::open_configured(dir, |conn| config.apply(conn))
    }

    /// [`Journal::open`], with `configure` applied to the writer's connection after the
    /// migrations (tests limit its size, to see a full disk).
    pub(crate) fn open_configured(
        dir: &Path,
        configure: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<Journal, DurableError> {
        let lock = open::lock(dir)?;
        let (conn, path) = open::open_writer(dir)?;
        configure(&conn).map_err(|e| DurableError::sqlite(&path, &e))?;
        let reader = open::connect(&path, true)?;
        let searchers = (0..search::SEARCHERS)
            .map(|_| open::connect(&path, true))
            .collect::<Result<Vec<_>, _>>()?;
        let (ops, queue) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let (at, commits) = (path.clone(), Arc::clone(&commits));
            std::thread::Builder::new()
                .name("skat-journal".into())
                .spawn(move || writer::run(conn, &at, &queue, &commits))
                .map_err(|e| DurableError::io(&path, &e))?
        };
        Ok(Journal {
            path,
            ops: Some(ops),
            writer: Some(writer),
            commits,
            reader: Some(Mutex::new(reader)),
            searchers: Arc::new(Searchers::new(searchers)),
            search_budget: search::BUDGET,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `op`; `done` receives its outcome once its transaction committed (or failed).
    /// Never blocks: callable from async code.
    pub fn submit_with(&self, op: WriteOp, done: Completion) {
        let closed = || DurableError::Closed {
            path: self.path.clone(),
        };
        match &self.ops {
            Some(ops) => {
                if let Err(mpsc::SendError((_, done))) = ops.send((op, done)) {
                    let _ = done.send(Err(closed()));
                }
            }
            None => {
                let _ = done.send(Err(closed()));
            }
        }
    }

    /// Queues `op` and returns where its outcome will arrive (see [`Journal::submit_with`]).
    pub fn submit(&self, op: WriteOp) -> oneshot::Receiver<Result<(), DurableError>> {
        let (done, outcome) = oneshot::channel();
        self.submit_with(op, done);
        outcome
    }

    /// The read connection, unless closing.
    fn reader(&self) -> Result<&Mutex<Connection>, DurableError> {
        self.reader.as_ref().ok_or_else(|| DurableError::Closed {
            path: self.path.clone(),
        })
    }

    /// Transactions the writer has run so far (a measure of group commit).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Reads every room for startup: at most `history_len` entries per room (its newest, in id
    /// order), read markers, and the nonces expiring after `now_ms`. Blocking: call it before
    /// serving, or from a blocking thread.
    ///
    /// # Errors
    ///
    /// As SQLite tells (a `Corrupt` file, an `Io` failure).
    pub fn load(&self, history_len: usize, now_ms: u64) -> Result<Loaded, DurableError> {
        let reader = crate::lock(self.reader()?);
        load::load(&reader, &self.path, history_len, now_ms)
    }

    /// [`Journal::load`] of one room, if stored (what a broker puts back after a failed
    /// commit). Blocking, like `load`, but one room's worth.
    ///
    /// # Errors
    ///
    /// As for [`Journal::load`].
    pub fn load_room(
        &self,
        room: &str,
        history_len: usize,
        now_ms: u64,
    ) -> Result<Option<LoadedRoom>, DurableError> {
        let reader = crate::lock(self.reader()?);
        load::load_room(&reader, &self.path, room, (history_len, now_ms))
    }
}

impl Drop for Journal {
    /// Closes the read connections, then the queue, and waits for the writer to commit what it
    /// holds. The writer's connection must be the file's last: only then does SQLite checkpoint
    /// the WAL into the file and remove it (a read-only connection cannot), so deleted bodies
    /// do not outlive an orderly stop in `skat.db-wal`.
    fn drop(&mut self) {
        self.reader = None;
        self.searchers.close();
        self.ops = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}
