//! What a node reads back from a room: history pages, recoveries and the join snapshot, with
//! the bounds that keep each reply from growing with the room or with what a client missed.
//! Apart from `lib.rs` so the trait's file stays readable; re-exported at the crate root.

use crate::{Change, Message, MessageId};
// Named by the docs only.
#[cfg(doc)]
use crate::{Broker, Recovered, message_size};

/// A page of a room's history, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether older messages remain before the first one of this page.
    pub has_more: bool,
}

/// Messages a [`Broker::search`] found, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPage {
    /// The messages, newest first, in their current state.
    pub messages: Vec<Message>,
    /// Whether older messages match too (ask again with `before` the last one's id).
    pub has_more: bool,
}

/// What a [`Broker::search`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Searched {
    /// The messages found.
    Found(SearchPage),
    /// This backend keeps no index of its messages (Redis; the embedded broker without a data
    /// dir): nobody can search here.
    Unsupported,
}

/// How much a recovery may return: at most `limit` messages and `max_bytes` of them as
/// [`message_size`] counts them (their encoded size, which every backend counts the same way).
/// Past either, the client gets the latest page instead and pages back with `history`, so no
/// reply grows with what a client missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Messages.
    pub limit: usize,
    /// Bytes, as [`message_size`] counts them.
    pub max_bytes: usize,
}

impl Recovery {
    /// At most `limit` messages, whatever their size.
    pub const fn count(limit: usize) -> Self {
        Self {
            limit,
            max_bytes: usize::MAX,
        }
    }
}

/// Where a connection joining a room resumes from, and how much it may be sent: see
/// [`Broker::join_snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume<'a> {
    /// The last message id the client saw in the room, to recover what it missed.
    pub since: Option<MessageId>,
    /// The room's epoch `since` belongs to, if the client gave one.
    pub epoch: Option<&'a str>,
    /// How much a recovery may return.
    pub recovery: Recovery,
    /// The latest page's size, when there is no recovery.
    pub page: usize,
    /// Members listed at most (the first in name order; the client pages the rest with
    /// [`Broker::members`]), so that a join into a huge room stays cheap.
    pub members: usize,
}

impl Resume<'static> {
    /// A first join, with nothing to resume: the latest `page` messages and up to `page`
    /// members, a recovery (should the caller set `since`) of `page` messages whatever their
    /// size.
    pub const fn latest(page: usize) -> Self {
        Self {
            since: None,
            epoch: None,
            recovery: Recovery::count(page),
            page,
            members: page,
        }
    }
}

/// What a connection joining a room is told: see [`Broker::join_snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The first users online in the room (at most [`Resume::members`]), as
    /// [`Broker::members`] returns them.
    pub members: Vec<String>,
    /// Whether more users follow the last of `members`.
    pub more_members: bool,
    /// The messages missed since the client's `since` if `recovered`, else the latest page;
    /// oldest first.
    pub messages: Vec<Message>,
    /// Whether `messages` are exactly those after `since`.
    pub recovered: bool,
    /// If `recovered`, the changes after `since` to messages at or before it (see
    /// [`Recovered::changes`]); else empty.
    pub changes: Vec<Change>,
    /// The user's read marker in the room, if it has one.
    pub read: Option<MessageId>,
    /// Messages after the marker, capped at [`UNREAD_CAP`](skat_protocol::UNREAD_CAP).
    pub unread: u32,
    /// The room's epoch (see [`Broker::epoch`]).
    pub epoch: String,
}
