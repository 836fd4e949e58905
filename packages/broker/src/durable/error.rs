//! What can go wrong with the journal, told apart where SQLite tells: a node must say at startup
//! (or on the failing send, as `unavailable`) whether its data dir is corrupt, locked, read-only
//! or full, naming the file, rather than panic or confirm a message it did not store.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// An error of the durable journal. `Clone`, so that one failed commit completes every
/// operation of its batch with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DurableError {
    /// The data dir or the database file could not be created or opened.
    #[error("cannot open the database {path}: {detail}")]
    Open {
        /// The file (or dir).
        path: PathBuf,
        /// What the system or SQLite said.
        detail: String,
    },
    /// Another process (another node) holds the data dir.
    #[error("the data dir of {path} is in use by another node (or process): {detail}")]
    Locked {
        /// The database file.
        path: PathBuf,
        /// What the system or SQLite said.
        detail: String,
    },
    /// The schema could not be brought to this version's (or is newer than it knows).
    #[error("cannot migrate the database {path}: {detail}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// What the migration runner said.
        detail: String,
    },
    /// The file is not a SQLite database, or is damaged.
    #[error("the database {path} is corrupt or not a SQLite database: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file or its dir is read-only.
    #[error("the database {path} is read-only (check the data dir's permissions): {detail}")]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The disk (or a quota) is full.
    #[error("the disk holding {path} is full: {detail}")]
    Full {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// Any other I/O or SQLite failure.
    #[error("I/O error on the database {path}: {detail}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// What the system or SQLite said.
        detail: String,
    },
    /// A search was refused or stopped to bound its cost: every search connection was busy,
    /// or it ran past its time budget (`search.rs`). The server answers it `unavailable`.
    #[error("search on {path} refused: {detail}")]
    Overloaded {
        /// The database file.
        path: PathBuf,
        /// Which bound it met.
        detail: String,
    },
    /// An earlier write of the room failed: its later writes fail untouched until the room is
    /// put back as the file holds it (see [`WriteOp::Reloaded`](super::WriteOp::Reloaded)).
    #[error("a write of room {room} to {path} was refused: an earlier one failed")]
    Refused {
        /// The database file.
        path: PathBuf,
        /// The room.
        room: String,
    },
    /// The journal's writer is gone (it stopped, or the journal was closed).
    #[error("the journal of {path} is closed")]
    Closed {
        /// The database file.
        path: PathBuf,
    },
}

impl DurableError {
    /// Classifies a SQLite error on `path` by its primary result code.
    pub(super) fn sqlite(path: &Path, err: &rusqlite::Error) -> DurableError {
        let path = path.to_owned();
        let detail = err.to_string();
        match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                Self::Corrupt { path, detail }
            }
            Some(ErrorCode::ReadOnly) => Self::ReadOnly { path, detail },
            Some(ErrorCode::DiskFull) => Self::Full { path, detail },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Self::Locked { path, detail }
            }
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                Self::Open { path, detail }
            }
            _ => Self::Io { path, detail },
        }
    }

    /// Classifies a migration failure: a SQLite error inside it keeps its class (a corrupt file
    /// is corrupt, whether the runner or a pragma found out).
    pub(super) fn migration(path: &Path, err: &rusqlite_migration::Error) -> DurableError {
        if let rusqlite_migration::Error::RusqliteError { err, .. } = err {
            match Self::sqlite(path, err) {
                Self::Io { .. } => {}
                classified => return classified,
            }
        }
        Self::Migrate {
            path: path.to_owned(),
            detail: err.to_string(),
        }
    }

    /// An I/O error on `path` (the dir or the lock file).
    pub(super) fn io(path: &Path, err: &std::io::Error) -> DurableError {
        let path = path.to_owned();
        let detail = err.to_string();
        match err.kind() {
            std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
                Self::ReadOnly { path, detail }
            }
            std::io::ErrorKind::StorageFull => Self::Full { path, detail },
            _ => Self::Open { path, detail },
        }
    }
}
