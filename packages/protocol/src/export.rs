//! The records of `skat-server export` and `import` (issue 23): a node's rooms as JSON lines,
//! for backups, moving a node, or seeding another deployment. Here because this crate is the
//! only one that knows JSON; the server reads and writes the lines, the broker the rows.
//!
//! Each room is a `room` record (its name, epoch and the newest id no longer kept), followed by
//! its log in id order: messages in their current state and changes, each exactly as the
//! server's `message`, `edited`, `deleted` and `reacted` frames encode them; then every user
//! reacting to its messages (`reactors`: a message's own `reactions` show only the first few
//! users) and its read markers (`read_marker`). Nonces are not exported: their window is
//! minutes, and a move takes longer.

use serde::{Deserialize, Serialize};

use crate::validate::{
    validate_body, validate_emoji, validate_name, validate_nonce, validate_room,
};
use crate::{Deleted, Edited, Message, MessageId, Reacted, SYSTEM_SENDER};

/// The longest line an import reads (a record is far smaller: a body is at most 4000
/// characters); a longer one is refused rather than read into memory.
pub const MAX_EXPORT_LINE_BYTES: usize = 1 << 20;

/// How far past the importing machine's clock an id may be: an id is a time in Unix
/// milliseconds, and one much in the future would hold a room's new messages back.
const MAX_FUTURE_MS: u64 = 24 * 60 * 60 * 1000;

/// The longest epoch, as `join.epoch`'s.
const MAX_EPOCH_BYTES: usize = 64;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportRecord {
    /// A room; the records that follow, up to the next `room`, are its.
    Room {
        /// The room.
        room: String,
        /// Its epoch: kept, so clients' `since` stays valid on the node importing it.
        epoch: String,
        /// The newest id no longer kept (trimmed or expired), if any: a `since` older than it
        /// is not recovered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trimmed: Option<MessageId>,
    },
    /// A message in its current state.
    Message(Message),
    /// An edit, as the `edited` frame.
    Edited(Edited),
    /// A deletion, as the `deleted` frame.
    Deleted(Deleted),
    /// A reaction added or removed, as the `reacted` frame.
    Reacted(Reacted),
    /// Every user reacting to message `id` with `emoji`, earliest first.
    Reactors {
        /// The room.
        room: String,
        /// The message.
        id: MessageId,
        /// The emoji.
        emoji: String,
        /// The users, earliest first.
        users: Vec<String>,
    },
    /// A user's read marker.
    ReadMarker {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// Everything up to it is read.
        id: MessageId,
    },
}

impl ExportRecord {
    /// The room the record belongs to.
    pub fn room(&self) -> &str {
        match self {
            Self::Room { room, .. }
            | Self::Reactors { room, .. }
            | Self::ReadMarker { room, .. }
            | Self::Message(Message { room, .. })
            | Self::Edited(Edited { room, .. })
            | Self::Deleted(Deleted { room, .. })
            | Self::Reacted(Reacted { room, .. }) => room,
        }
    }
}

impl ExportRecord {
    /// Checks the record as the server checks what clients send: names, the room, bodies,
    /// emojis and nonces by the protocol's rules (a deleted message's body empty, an edit's
    /// body empty only as a deleted message's edits are), ids that a store can hold (`seq`
    /// below `i64::MAX`) and that are not more than a day past `now_ms`. An import refuses a
    /// record that fails, rather than store what no node would have.
    ///
    /// # Errors
    ///
    /// What is wrong with the record.
    pub fn validate(&self, now_ms: u64) -> Result<(), String> {
        let text = |e: crate::Invalid| e.message;
        let id = |what: &str, id: MessageId| check_id(what, id, now_ms);
        let nonce = |n: &Option<String>| n.as_deref().map_or(Ok(()), validate_nonce).map_err(text);
        validate_room(self.room()).map_err(text)?;
        match self {
            Self::Room { epoch, trimmed, .. } => {
                if epoch.is_empty()
                    || epoch.len() > MAX_EPOCH_BYTES
                    || epoch.chars().any(char::is_control)
                {
                    return Err(format!(
                        "an epoch is 1-{MAX_EPOCH_BYTES} bytes without control characters"
                    ));
                }
                trimmed.map_or(Ok(()), |t| id("trimmed", t))
            }
            Self::Message(m) => {
                id("id", m.id)?;
                check_time("ts", m.ts, now_ms)?;
                if m.from != SYSTEM_SENDER {
                    validate_name(&m.from).map_err(text)?;
                }
                if m.is_deleted() {
                    if !m.body.is_empty() {
                        return Err("a deleted message's body must be empty".into());
                    }
                } else {
                    validate_body(&m.body).map_err(text)?;
                }
                m.reply_to().map_or(Ok(()), |r| id("reply_to", r))?;
                nonce(&m.nonce)
            }
            Self::Edited(c) => {
                id("id", c.id)?;
                id("target", c.target)?;
                check_time("ts", c.ts, now_ms)?;
                validate_name(&c.by).map_err(text)?;
                // A deleted message's edits are stored (and exported) without their bodies.
                if !c.body.is_empty() {
                    validate_body(&c.body).map_err(text)?;
                }
                nonce(&c.nonce)
            }
            Self::Deleted(c) => {
                id("id", c.id)?;
                id("target", c.target)?;
                check_time("ts", c.ts, now_ms)?;
                validate_name(&c.by).map_err(text)?;
                nonce(&c.nonce)
            }
            Self::Reacted(c) => {
                id("id", c.id)?;
                id("target", c.target)?;
                validate_name(&c.user).map_err(text)?;
                validate_emoji(&c.emoji).map_err(text)?;
                nonce(&c.nonce)
            }
            Self::Reactors {
                id: at,
                emoji,
                users,
                ..
            } => {
                id("id", *at)?;
                validate_emoji(emoji).map_err(text)?;
                users
                    .iter()
                    .try_for_each(|user| validate_name(user).map_err(text))
            }
            Self::ReadMarker { user, id: at, .. } => {
                id("id", *at)?;
                validate_name(user).map_err(text)
            }
        }
    }
}

/// Refuses an id a store cannot hold or too far in the future (see [`ExportRecord::validate`]).
fn check_id(what: &str, id: MessageId, now_ms: u64) -> Result<(), String> {
    if id.seq >= i64::MAX as u64 {
        return Err(format!("{what} {id}: its sequence is too large"));
    }
    check_time(what, id.ms, now_ms)
}

/// Refuses a time more than a day past `now_ms`.
fn check_time(what: &str, ms: u64, now_ms: u64) -> Result<(), String> {
    if ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(format!("{what} {ms}: more than a day in the future"));
    }
    Ok(())
}

/// Encodes a record as one line of JSON (without the newline).
pub fn encode_export(record: &ExportRecord) -> String {
    // As for frames: every map key is a string and no Serialize impl errors.
    serde_json::to_string(record).unwrap_or_else(|_| unreachable!("records always serialize"))
}

/// Decodes one line of an export.
///
/// # Errors
///
/// What is wrong with the line (not JSON, an unknown `type`, a missing or malformed field).
pub fn decode_export(line: &str) -> Result<ExportRecord, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}
