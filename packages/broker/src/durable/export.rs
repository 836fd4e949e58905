//! A data dir's rooms as export records, and back (`skat-server export` and `import`): for
//! backups, moving a node, or seeding another deployment. The server turns the records into
//! JSON lines and back (the protocol crate knows JSON); here they become rows.
//!
//! - An export reads the file on a read-only connection of its own, in one read transaction
//!   (a consistent snapshot), without the dir's lock: a running node's dir can be backed up.
//!   Every entry the file holds is exported (up to the history length, plus the few a trim has
//!   not reached yet), with each room's epoch, newest trimmed id, reactors and read markers.
//!   Nonces are not: their window is minutes.
//! - An import takes the dir's lock (so no node may hold it), migrates the file, and writes
//!   every record in ONE transaction, as the rows were: a message in its current state, a
//!   change as a row (not re-applied: its effect is in its message's state already). Anything
//!   wrong (a record the protocol's checks refuse, a room the dir already has, records out of
//!   order) refuses the import, and nothing of it is stored.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use skat_protocol::ExportRecord;

use super::DurableError;
use super::load::{self, LoadedEntry};
use super::open::{self, DB_FILE, MIGRATIONS};
use super::writer::{self, WriteOp};
use crate::{Change, MessageId};

/// Hands every room of the data dir `dir` (only `room`, if given) to `each` as records, in
/// order: each room's `room` record, its log, its reactors, its read markers. Returns the
/// rooms exported. Blocking.
///
/// # Errors
///
/// The journal's, if the file cannot be read (missing, corrupt, of another schema version:
/// start a node of this release on it first), or `each`'s.
pub fn export<E: From<DurableError>>(
    dir: &Path,
    room: Option<&str>,
    mut each: impl FnMut(ExportRecord) -> Result<(), E>,
) -> Result<usize, E> {
    let path = dir.join(DB_FILE);
    let conn = open::connect(&path, true)?;
    let sqlite = |e: rusqlite::Error| DurableError::sqlite(&path, &e);
    let pending = MIGRATIONS
        .pending_migrations(&conn)
        .map_err(|e| DurableError::migration(&path, &e))?;
    if pending != 0 {
        return Err(DurableError::Migrate {
            path: path.clone(),
            detail: format!(
                "its schema is {pending} version(s) away from this release's; start a node of \
                 this release on it once (it migrates), then export"
            ),
        }
        .into());
    }
    // One snapshot for the whole export, however long the writing takes.
    conn.execute_batch("BEGIN").map_err(sqlite)?;
    let names: Vec<String> = conn
        .prepare("SELECT name FROM rooms WHERE ?1 IS NULL OR name = ?1 ORDER BY name")
        .and_then(|mut stmt| {
            stmt.query_map(params![room], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(sqlite)?;
    for name in &names {
        let loaded = load::read(&conn, Some(name), usize::MAX, 0).map_err(sqlite)?;
        for room in loaded.rooms {
            each(ExportRecord::Room {
                room: room.name.clone(),
                epoch: room.epoch,
                trimmed: room.trimmed,
            })?;
            for entry in room.entries {
                let record = match entry {
                    LoadedEntry::Message(m) => ExportRecord::Message(m),
                    LoadedEntry::Change(Change::Edited(c)) => ExportRecord::Edited(c),
                    LoadedEntry::Change(Change::Deleted(c)) => ExportRecord::Deleted(c),
                    LoadedEntry::Change(Change::Reacted(c)) => ExportRecord::Reacted(c),
                    LoadedEntry::Change(Change::Unknown) => continue,
                };
                each(record)?;
            }
            for (id, emojis) in room.reactors {
                for (emoji, users) in emojis {
                    each(ExportRecord::Reactors {
                        room: room.name.clone(),
                        id,
                        emoji,
                        users,
                    })?;
                }
            }
            let mut markers = room.markers;
            markers.sort();
            for (user, id) in markers {
                each(ExportRecord::ReadMarker {
                    room: room.name.clone(),
                    user,
                    id,
                })?;
            }
        }
    }
    Ok(names.len())
}

/// Why an import refuses a record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    /// The record cannot be imported where it is.
    #[error("{0}")]
    Invalid(String),
    /// The file could not store it.
    #[error(transparent)]
    Durable(#[from] DurableError),
}

/// A record SQLite refused: a constraint (a reactor of a message not imported, an id twice)
/// is the record's fault, anything else the file's.
fn refused(path: &Path, e: &rusqlite::Error) -> ImportError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => {
            ImportError::Invalid(format!("refused by the schema: {e}"))
        }
        _ => ImportError::Durable(DurableError::sqlite(path, e)),
    }
}

/// What an import stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Rooms.
    pub rooms: usize,
    /// Messages and changes.
    pub entries: usize,
}

/// An import in progress into a data dir: its lock held, its one transaction open. Dropped
/// without [`Importer::finish`], it stores nothing.
#[derive(Debug)]
pub struct Importer {
    conn: Connection,
    path: PathBuf,
    /// The room being imported, and the id of its last entry (or its trimmed id).
    room: Option<(String, Option<MessageId>)>,
    /// The next reactor's order (a reactor's `at` orders a message's emojis and users).
    reactor: u64,
    imported: Imported,
    /// The clock when the import began, in Unix milliseconds: no id may be far past it.
    now_ms: u64,
    _lock: File,
}

impl Importer {
    /// Opens (creating, migrating) the data dir `dir` for an import. Blocking.
    ///
    /// # Errors
    ///
    /// The journal's: [`DurableError::Locked`] if a node holds the dir, and as for
    /// [`Journal::open`](super::Journal::open).
    pub fn open(dir: &Path) -> Result<Importer, DurableError> {
        let lock = open::lock(dir)?;
        let (conn, path) = open::open_writer(dir)?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| DurableError::sqlite(&path, &e))?;
        Ok(Importer {
            conn,
            path,
            room: None,
            reactor: 0,
            imported: Imported::default(),
            now_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            _lock: lock,
        })
    }

    /// Stores one record (within the import's transaction).
    ///
    /// # Errors
    ///
    /// [`ImportError::Invalid`] for a record [`ExportRecord::validate`] refuses, or out of
    /// place: before any `room`, of another room than the last `room`'s, an entry whose id is
    /// not after the room's previous one, a room the dir already has; the journal's if SQLite
    /// refuses it (a reactor of a message not imported, say).
    pub fn add(&mut self, record: ExportRecord) -> Result<(), ImportError> {
        let invalid = |what: String| Err(ImportError::Invalid(what));
        record.validate(self.now_ms).map_err(ImportError::Invalid)?;
        if let ExportRecord::Room { .. } = record {
            return self.add_room(record);
        }
        let Some((room, last)) = &mut self.room else {
            return invalid("a record before the first `room` record".into());
        };
        if record.room() != room {
            return invalid(format!(
                "a record of room {:?} among room {room:?}'s",
                record.room()
            ));
        }
        let sqlite = |e: rusqlite::Error| refused(&self.path, &e);
        let id = match &record {
            ExportRecord::Message(m) => Some(m.id),
            ExportRecord::Edited(c) => Some(c.id),
            ExportRecord::Deleted(c) => Some(c.id),
            ExportRecord::Reacted(c) => Some(c.id),
            _ => None,
        };
        if let Some(id) = id {
            if last.is_some_and(|last| id <= last) {
                return invalid(format!("entry {id} is not after the room's previous id"));
            }
            *last = Some(id);
            self.imported.entries += 1;
        }
        match record {
            ExportRecord::Message(mut m) => {
                // Its reactors come as `reactors` records, each user in order.
                if let Some(extras) = &mut m.extras {
                    extras.reactions.clear();
                }
                writer::apply_now(&self.conn, &WriteOp::Message(m)).map_err(sqlite)?;
            }
            ExportRecord::Edited(c) => {
                writer::insert_change(&self.conn, &Change::Edited(c)).map_err(sqlite)?;
            }
            ExportRecord::Deleted(c) => {
                writer::insert_change(&self.conn, &Change::Deleted(c)).map_err(sqlite)?;
            }
            ExportRecord::Reacted(c) => {
                writer::insert_change(&self.conn, &Change::Reacted(c)).map_err(sqlite)?;
            }
            ExportRecord::Reactors {
                room,
                id,
                emoji,
                users,
            } => {
                for user in users {
                    self.reactor += 1;
                    let at = MessageId {
                        ms: id.ms,
                        seq: self.reactor,
                    };
                    writer::add_reactor(&self.conn, &room, id, &emoji, &user, at)
                        .map_err(sqlite)?;
                }
            }
            ExportRecord::ReadMarker { room, user, id } => {
                writer::apply_now(&self.conn, &WriteOp::Marker { room, user, id })
                    .map_err(sqlite)?;
            }
            ExportRecord::Room { .. } => {}
        }
        Ok(())
    }

    /// A `room` record: the room, new to the dir, with its epoch and trimmed id.
    fn add_room(&mut self, record: ExportRecord) -> Result<(), ImportError> {
        let ExportRecord::Room {
            room,
            epoch,
            trimmed,
        } = record
        else {
            return Ok(());
        };
        let sqlite = |e: rusqlite::Error| refused(&self.path, &e);
        let exists: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM rooms WHERE name = ?1)",
                params![room],
                |row| row.get(0),
            )
            .map_err(sqlite)?;
        if exists {
            return Err(ImportError::Invalid(format!(
                "room {room:?} is already in the data dir (import into an empty one)"
            )));
        }
        let op = WriteOp::Room {
            room: room.clone(),
            epoch,
        };
        writer::apply_now(&self.conn, &op).map_err(sqlite)?;
        if let Some(through) = trimmed {
            let op = WriteOp::Trim {
                room: room.clone(),
                through,
            };
            writer::apply_now(&self.conn, &op).map_err(sqlite)?;
        }
        self.room = Some((room, trimmed));
        self.imported.rooms += 1;
        Ok(())
    }

    /// Commits the import. Blocking.
    ///
    /// # Errors
    ///
    /// The journal's, if the commit fails (nothing is stored then).
    pub fn finish(self) -> Result<Imported, DurableError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| DurableError::sqlite(&self.path, &e))?;
        Ok(self.imported)
    }
}
