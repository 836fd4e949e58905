//! One joined room as the UI shows it, and our sends awaiting confirmation in it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use skat_protocol::{Message, MessageId};

/// Messages a room keeps: past it, live messages push the oldest out (they can be loaded again
/// with "load older"), so a busy room costs the page the same after an hour as after a minute.
pub const ROOM_WINDOW: usize = 500;

/// A message we sent and have not seen confirmed yet (or that failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Our nonce, echoed by the server in the confirmation or the error.
    pub nonce: String,
    /// The text, kept so it is never lost.
    pub body: String,
    /// Why it failed, once it has.
    pub error: Option<String>,
    /// The connection it was sent on (see [`Chat::on_open`](crate::state::Chat::on_open)).
    pub epoch: u64,
    /// When it was first sent, in ms.
    pub sent_at: f64,
}

/// Everything the UI shows about one joined room.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Room {
    /// Messages in server order, oldest first, each id once.
    pub messages: Vec<Message>,
    /// The ids of `messages`, to drop a message seen twice (live and in a page).
    pub ids: HashSet<MessageId>,
    /// Users online in the room.
    pub members: BTreeSet<String>,
    /// Messages received while the room was not the active one.
    pub unread: u32,
    /// Our sends awaiting confirmation, or failed.
    pub pending: Vec<Pending>,
    /// Users typing, with the time (ms) their notice expires.
    pub typing: BTreeMap<String, f64>,
    /// Whether older history exists before the first message.
    pub has_more: bool,
    /// Whether a `history` request is in flight.
    pub loading_older: bool,
    /// Whether the server confirmed the join on the current connection.
    pub joined: bool,
    /// Why the server refused to let us in (e.g. `forbidden`), shown in place of the room;
    /// such a room is not rejoined on reconnects, only when asked for again.
    pub refused: Option<String>,
    /// The room's history epoch from the last `joined`, sent back with `since` on a rejoin so a
    /// history the server lost is not mistaken for what we missed.
    pub history_epoch: Option<String>,
    /// Bumped whenever `messages` changes, so views re-render the list only then.
    pub version: u64,
    /// When we last sent a typing frame, in ms.
    pub last_typing_sent: Option<f64>,
    /// While the member list is read page by page (`joined` said there are more): the `after`
    /// of the `members` request in flight.
    pub members_after: Option<String>,
    /// When to ask for that page again, in ms, after the server refused it as over the
    /// request rate.
    pub members_retry_at: Option<f64>,
}

impl Room {
    /// Adds a message unless its id is known; returns whether it was new. Past
    /// [`ROOM_WINDOW`] the oldest messages go (and can be loaded again).
    pub fn push(&mut self, message: Message) -> bool {
        if !self.ids.insert(message.id) {
            return false;
        }
        self.messages.push(message);
        if self.messages.len() > ROOM_WINDOW {
            let excess = self.messages.len() - ROOM_WINDOW;
            for old in self.messages.drain(..excess) {
                self.ids.remove(&old.id);
            }
            self.has_more = true;
        }
        self.version += 1;
        true
    }

    /// Changes whenever the messages do.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The id of the newest message, the `since` of a rejoin.
    pub fn last_id(&self) -> Option<MessageId> {
        self.messages.last().map(|m| m.id)
    }

    /// Names of users currently typing (not expired at `now`).
    pub fn typing_users(&self, now: f64) -> Vec<&str> {
        self.typing
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(u, _)| u.as_str())
            .collect()
    }
}
