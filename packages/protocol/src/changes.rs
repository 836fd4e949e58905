//! Changes to an earlier message of a room: an edit, a deletion, a reaction (issue 22).
//!
//! A change is an entry of the room's ordered log like a message, with its own id in the same
//! sequence, so it is delivered, recovered after `since` and seen the same on every node as
//! messages are. Each kind is one struct, used twice: as a live server frame
//! ([`ServerFrame::Edited`](crate::ServerFrame::Edited) and its siblings) and, in `joined`, as
//! a [`Change`] recovered for a message older than the client's `since` (messages after it
//! come in their current state, so each change is seen exactly once).
//!
//! Every change names its `target` (the message changed) and carries its outcome, not only the
//! request: a `reacted` says the emoji's resulting `count`, so applying one twice (a replay) is
//! harmless.

use serde::{Deserialize, Serialize};

use crate::MessageId;

/// A message's body was replaced by its author (or a moderator, or the server API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Edited {
    /// The room.
    pub room: String,
    /// The change's own id, in the room's sequence: what a client sends as `since` if it is the
    /// last thing it saw.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MessageId,
    /// The message edited.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub target: MessageId,
    /// Who edited it: the author, a moderator, or the API's sender.
    pub by: String,
    /// The new body, whole (it obeys the rules of a `send`'s body).
    pub body: String,
    /// When the broker accepted the edit, in Unix milliseconds: the message's `edited`.
    pub ts: u64,
    /// The nonce of the `edit` that made it, so its sender can match the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// A message was deleted: its body is gone from the server, its place stays as a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    /// The room.
    pub room: String,
    /// The change's own id, in the room's sequence.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MessageId,
    /// The message deleted.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub target: MessageId,
    /// Who deleted it: the author, a moderator, or the API's sender.
    pub by: String,
    /// When the broker accepted the deletion, in Unix milliseconds.
    pub ts: u64,
    /// The nonce of the `delete` that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// A user added or removed one emoji reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reacted {
    /// The room.
    pub room: String,
    /// The change's own id, in the room's sequence.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MessageId,
    /// The message reacted to.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub target: MessageId,
    /// Who reacted.
    pub user: String,
    /// The emoji: one grapheme cluster (see [`validate_emoji`](crate::validate_emoji)).
    pub emoji: String,
    /// `true` if `user` added the reaction, `false` if it took it back. Explicit, not a toggle,
    /// so a retried request cannot undo itself.
    pub add: bool,
    /// How many users react with `emoji` to the message after this change: the outcome, so a
    /// replayed change sets the count rather than moving it again.
    pub count: u32,
    /// The nonce of the `react` that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// A change recovered in `joined` (its `changes`): the changes after the client's `since` to
/// messages at or before it. Tagged by `"type"` like frames, with the same names as the live
/// frames, so a client applies both with the same code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// A message's body was replaced.
    Edited(Edited),
    /// A message was deleted.
    Deleted(Deleted),
    /// A reaction was added or removed.
    Reacted(Reacted),
    /// A kind of change this version of the protocol crate does not know (decoding only): a
    /// later server may add kinds, and a client of today must still read the rest of its
    /// `joined` (it skips these).
    #[serde(other)]
    Unknown,
}

impl Change {
    /// The change's own id, in the room's sequence (`None` for an [`Change::Unknown`] kind).
    pub fn id(&self) -> Option<MessageId> {
        match self {
            Self::Edited(c) => Some(c.id),
            Self::Deleted(c) => Some(c.id),
            Self::Reacted(c) => Some(c.id),
            Self::Unknown => None,
        }
    }

    /// The message it changes (`None` for an [`Change::Unknown`] kind).
    pub fn target(&self) -> Option<MessageId> {
        match self {
            Self::Edited(c) => Some(c.target),
            Self::Deleted(c) => Some(c.target),
            Self::Reacted(c) => Some(c.target),
            Self::Unknown => None,
        }
    }
}
