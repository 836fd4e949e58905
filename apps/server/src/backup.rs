//! `skat-server export` and `import`: a data dir's rooms as JSON lines and back, for backups,
//! moving a node to another machine, or seeding another deployment. The binary's subcommands
//! are thin; the work is here, so tests call it in-process too.
//!
//! The broker reads and writes the rows (`skat_broker::durable`), the protocol crate encodes
//! the records (`ExportRecord`, one per line); this module joins the two over a reader and a
//! writer, and numbers the lines, so a refused import names the line at fault. An import is
//! all or nothing: one transaction, committed only after the last line.

use std::io::{BufRead, Read as _, Write};
use std::path::Path;

use skat_broker::durable::{self, DurableError, ImportError, Imported};
use skat_protocol::{MAX_EXPORT_LINE_BYTES, decode_export, encode_export};

/// Why an export or an import failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The data dir could not be read or written.
    #[error(transparent)]
    Durable(#[from] DurableError),
    /// `--room` named a room the data dir does not have.
    #[error("the data dir has no room {0:?}")]
    NoSuchRoom(String),
    /// A line of the import is malformed or out of place; nothing was imported.
    #[error("line {line}: {detail} (nothing was imported)")]
    Line {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// Reading the input or writing the output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes the rooms of the data dir `dir` (only `room`, if given) to `out` as JSON lines;
/// returns the rooms written. The dir may be a running node's: the export reads one snapshot.
/// Blocking.
///
/// # Errors
///
/// [`BackupError::NoSuchRoom`], the file's, or the output's.
pub fn export(dir: &Path, room: Option<&str>, out: impl Write) -> Result<usize, BackupError> {
    let mut out = std::io::BufWriter::new(out);
    let rooms = durable::export(dir, room, |record| -> Result<(), BackupError> {
        out.write_all(encode_export(&record).as_bytes())?;
        out.write_all(b"\n")?;
        Ok(())
    })?;
    out.flush()?;
    match room {
        Some(room) if rooms == 0 => Err(BackupError::NoSuchRoom(room.to_owned())),
        _ => Ok(rooms),
    }
}

/// Reads JSON lines written by [`export`] from `input` into the data dir `dir`, which no node
/// may hold (its lock), keeping ids and epochs. Empty lines are skipped; a line longer than
/// [`MAX_EXPORT_LINE_BYTES`] is refused without being read whole. Blocking.
///
/// # Errors
///
/// [`BackupError::Line`] for the first malformed, invalid, too long or misplaced line (nothing
/// is imported then), the file's (a node holding the dir: `Locked`), or the input's.
pub fn import(dir: &Path, mut input: impl BufRead) -> Result<Imported, BackupError> {
    let mut importer = durable::Importer::open(dir)?;
    let mut line = Vec::new();
    for at in 1.. {
        let refused = |detail: String| BackupError::Line { line: at, detail };
        line.clear();
        let limit = u64::try_from(MAX_EXPORT_LINE_BYTES).unwrap_or(u64::MAX) + 1;
        if input.by_ref().take(limit).read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_EXPORT_LINE_BYTES {
            return Err(refused(format!(
                "longer than {MAX_EXPORT_LINE_BYTES} bytes"
            )));
        }
        let text = std::str::from_utf8(&line).map_err(|e| refused(format!("not UTF-8: {e}")))?;
        if text.trim().is_empty() {
            continue;
        }
        let record = decode_export(text).map_err(refused)?;
        importer.add(record).map_err(|e| match e {
            ImportError::Invalid(detail) => refused(detail),
            ImportError::Durable(e) => refused(e.to_string()),
        })?;
    }
    Ok(importer.finish()?)
}
