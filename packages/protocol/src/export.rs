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

use crate::{Deleted, Edited, Message, MessageId, Reacted};

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
