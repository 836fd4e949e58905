//! Opening the journal's file: the data dir's lock, the connection's pragmas, the schema's
//! migrations and the operator's settings ([`JournalConfig`]). Kept apart from the writer so
//! that the rules a node starts under (one node per dir, WAL, how durable a commit is, who may
//! read the files) read in one place.
//!
//! The data dir holds every room's history: what the journal creates is its owner's only (the
//! dir `0700`, the files `0600`; SQLite gives its `-wal` and `-shm` files the database's mode).

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

use super::DurableError;

/// The database's file name in the data dir.
pub(super) const DB_FILE: &str = "skat.db";
/// The lock file's name in the data dir.
pub(super) const LOCK_FILE: &str = "skat.lock";
/// How long a statement waits for a lock SQLite itself takes (a checkpoint, the reader).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema's migrations, in order; the runner records the version reached in
/// `PRAGMA user_version`. Add a file, never edit one that shipped.
pub(super) static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("../../migrations/sqlite/0001_initial.sql")),
        M::up(include_str!(
            "../../migrations/sqlite/0002_entries_by_target.sql"
        )),
    ])
});

/// How a journal is opened: what an operator may choose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalConfig {
    /// The database's size cap in bytes (SQLite's `max_page_count`, from its page size): a
    /// write past it fails as on a full disk ([`DurableError::Full`]). `None`: only the disk's.
    /// A cap below what the file already holds keeps it at its size.
    pub max_bytes: Option<u64>,
}

impl JournalConfig {
    /// Applies the settings to the writer's connection.
    pub(super) fn apply(&self, conn: &Connection) -> rusqlite::Result<()> {
        if let Some(max_bytes) = self.max_bytes {
            let page_size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = (max_bytes / page_size.max(1)).max(1);
            conn.pragma_update(None, "max_page_count", pages)?;
        }
        Ok(())
    }
}

/// Creates `dir` (and its parents) if missing, the ones it creates readable by the owner only.
fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens `path` for writing, creating it readable and writable by the owner only if missing.
fn create_file(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Takes the data dir's exclusive lock (an OS file lock, released when the process dies, even
/// by `kill -9`), so that a second node on the same dir fails here, clearly, rather than
/// interleave its writes with ours.
pub(super) fn lock(dir: &Path) -> Result<File, DurableError> {
    create_dir(dir).map_err(|e| DurableError::io(dir, &e))?;
    let path = dir.join(LOCK_FILE);
    let file = create_file(&path).map_err(|e| DurableError::io(&path, &e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(DurableError::Locked {
            path: dir.join(DB_FILE),
            detail: format!("{} is locked", path.display()),
        }),
        Err(TryLockError::Error(e)) => Err(DurableError::io(&path, &e)),
    }
}

/// The writer's page cache, KiB.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// Opens a connection to `path` with the journal's pragmas: WAL, `synchronous=NORMAL` (a
/// commit is in the WAL file when it returns: safe from a process crash, not from a power
/// loss, which may cost the last commits), a busy timeout, foreign keys, and secure delete (a
/// deleted body is overwritten in the file, not just unlinked from the b-tree).
pub(super) fn connect(path: &Path, read_only: bool) -> Result<Connection, DurableError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let sqlite = |e: rusqlite::Error| DurableError::sqlite(path, &e);
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    if !read_only {
        // Reading the mode back is what first touches the file: garbage fails here.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DurableError::Io {
                path: path.to_owned(),
                detail: format!("journal_mode is {mode}, not wal"),
            });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sqlite)?;
        // The writer's cache holds a busy node's hot pages (the tails of the entries table,
        // its indexes, the full-text index) so a batch does not spill them mid-transaction
        // nor read them back (the default, 2 MiB, measured as both). Negative: KiB.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB.wrapping_neg())
            .map_err(sqlite)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite)?;
    Ok(conn)
}

/// Opens (creating, owner-only) `DIR/skat.db` for writing and migrates it to the latest schema.
pub(super) fn open_writer(dir: &Path) -> Result<(Connection, PathBuf), DurableError> {
    let path = dir.join(DB_FILE);
    // Created here rather than by SQLite, so with the owner-only mode (an empty file is a new
    // database to SQLite).
    create_file(&path).map_err(|e| DurableError::io(&path, &e))?;
    let mut conn = connect(&path, false)?;
    MIGRATIONS
        .to_latest(&mut conn)
        .map_err(|e| DurableError::migration(&path, &e))?;
    Ok((conn, path))
}
