//! What changes a room after its messages arrived: edits, deletions and reactions (live, or
//! recovered in `joined`), and the read state: the user's read marker and the room's unread
//! count from the server (`joined`, `read`), the "new messages" divider, and the `read` the
//! shown room calls for.
//!
//! The server's counts are the truth: a live message in a room not shown adds one locally only
//! until the next count arrives. A `read` goes out only when it moves the marker forward, once
//! (the server's `read` answers it, on every connection of the user).

use skat_protocol::{Change, ClientFrame, MessageId};

use super::{Chat, Connection, Room};

impl Chat {
    /// A change (`edited`, `deleted`, `reacted`) to a message of `room`: applied once.
    pub(super) fn on_change(&mut self, room: &str, change: &Change) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.apply_change(change);
        }
    }

    /// The changes a `joined` recovered (to messages at or before our `since`), applied before
    /// its messages: those come after `since`, and applying them first would let the room take
    /// the earlier changes for ones it has seen.
    pub(super) fn on_recovered_changes(&mut self, room: &str, changes: &[Change]) {
        for change in changes {
            self.on_change(room, change);
        }
    }

    /// The read state a `joined` carries: the user's marker and the server's unread count. With
    /// unread messages, the "new messages" divider goes after the marker.
    pub(super) fn on_joined_read(&mut self, room: &str, read: Option<MessageId>, unread: u32) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.read = read;
        r.unread = unread;
        if unread > 0 {
            r.divider = Some(read.unwrap_or(MessageId::MIN));
        }
    }

    /// The user's marker moved (on this connection or another, on any node): it only moves
    /// forward, and the count comes with it.
    pub(super) fn on_read(&mut self, room: &str, id: MessageId, unread: u32) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.read.is_some_and(|read| read > id) {
            return;
        }
        r.read = Some(id);
        r.unread = unread;
    }

    /// The room shown and its newest message, when a `read` for it would move the marker
    /// forward (and none for it is on its way): what [`Chat::mark_read`] would send. The UI
    /// asks only while the page is visible.
    pub fn read_due(&self) -> Option<(&str, MessageId)> {
        if self.connection != Connection::Online {
            return None;
        }
        let name = self.active.as_deref()?;
        let r = self.rooms.get(name).filter(|r| r.joined)?;
        let newest = r.last_id()?;
        let marked = r.read.max(r.read_sent);
        (marked < Some(newest)).then_some((name, newest))
    }

    /// Marks the shown room read up to its newest message, if that moves the marker; returns
    /// the `read` to send.
    #[must_use = "the frames it returns are to be sent"]
    pub fn mark_read(&mut self) -> Option<ClientFrame> {
        let (name, newest) = self.read_due()?;
        let name = name.to_owned();
        let r = self.rooms.get_mut(&name)?;
        r.read_sent = Some(newest);
        r.unread = 0;
        Some(ClientFrame::Read {
            room: name,
            id: newest.to_string(),
        })
    }
}

impl Room {
    /// The room is being shown: its unread messages start after the divider, and are no
    /// longer counted as unread.
    pub(super) fn show(&mut self) {
        if self.unread > 0 {
            self.divider = Some(self.read.unwrap_or(MessageId::MIN));
        }
        self.unread = 0;
    }
}
