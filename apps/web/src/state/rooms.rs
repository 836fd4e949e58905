//! The rooms: joining (in order, since a refusal does not name its room), switching, leaving,
//! the `joined` answer with its recovery or, after a gap, the latest page, pages of older
//! messages, and refused joins shown in their room rather than as a notice.

use skat_protocol::{ClientFrame, Message};

use super::{Chat, Room};
use crate::label::room_label;

impl Chat {
    /// Starts joining `room` (or just switches to it if already joined); returns the frame to send.
    /// A room refused earlier is asked for again.
    #[must_use = "the frames it returns are to be sent"]
    pub fn join(&mut self, room: &str) -> Option<ClientFrame> {
        self.active = Some(room.to_owned());
        if let Some(existing) = self.rooms.get_mut(room) {
            existing.show();
            // Joined or on its way: just shown. Refused: asked for again.
            existing.refused.take()?;
        } else {
            self.rooms.insert(room.to_owned(), Room::default());
        }
        self.joining.push_back(room.to_owned());
        Some(ClientFrame::Join {
            room: room.to_owned(),
            since: None,
            epoch: None,
        })
    }

    /// Shows `room`, clearing its unread count (the divider goes after its read marker).
    pub fn switch_to(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.show();
            self.active = Some(room.to_owned());
        }
    }

    /// Leaves `room`; returns the frame to send (none for a room the server refused).
    #[must_use = "the frames it returns are to be sent"]
    pub fn leave(&mut self, room: &str) -> Option<ClientFrame> {
        let left = self.rooms.remove(room)?;
        if self.active.as_deref() == Some(room) {
            self.active = self.rooms.keys().next().cloned();
        }
        if left.refused.is_some() {
            return None;
        }
        Some(ClientFrame::Leave {
            room: room.to_owned(),
        })
    }

    /// A `history` frame for the page before the oldest message of `room`, unless one is in
    /// flight or there is nothing older.
    #[must_use = "the frames it returns are to be sent"]
    pub fn load_older(&mut self, room: &str) -> Option<ClientFrame> {
        let r = self.rooms.get_mut(room)?;
        if r.loading_older || !r.has_more || !r.joined {
            return None;
        }
        r.loading_older = true;
        let before = r.messages().first().map(|m| m.id.to_string());
        Some(ClientFrame::History {
            room: room.to_owned(),
            before,
            limit: None,
        })
    }

    /// A join confirmed: members, the recovery (or, after a gap, the latest page); returns the
    /// re-sends of what an earlier connection left unconfirmed.
    pub(super) fn on_joined(
        &mut self,
        room: &str,
        members: Vec<String>,
        messages: Vec<Message>,
        recovered: bool,
        epoch: Option<String>,
        now: f64,
    ) -> Vec<ClientFrame> {
        // Joins answered before this one without a `joined` were refused with an error that
        // could not name them (`unavailable`, `rate_limited`): shown, to be tried again.
        while let Some(earlier) = self.joining.pop_front() {
            if earlier == room {
                break;
            }
            let label = room_label(&earlier, &self.name);
            if let Some(r) = self.rooms.get_mut(&earlier) {
                r.refused = Some(format!("Could not join {label}."));
            }
        }
        let Some(r) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        r.joined = true;
        r.members = members.into_iter().collect();
        if !recovered && !r.messages().is_empty() {
            // A gap we cannot fill: start over from the latest page.
            r.start_over();
        }
        r.history_epoch = epoch;
        if !recovered {
            r.has_more = messages.len()
                >= usize::try_from(skat_protocol::DEFAULT_HISTORY_LIMIT).unwrap_or(50);
        }
        for message in messages {
            self.on_message(message, !recovered);
        }
        self.resend_unconfirmed(room, now)
    }

    /// A page of older messages, put before what the room has.
    pub(super) fn on_history(&mut self, room: &str, messages: Vec<Message>, has_more: bool) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.loading_older = false;
        r.has_more = has_more;
        r.prepend(messages);
    }

    /// The oldest join awaiting its answer was refused: its room says why (`why` is given the
    /// room's label), stays unjoined, and is not rejoined on reconnects.
    pub(super) fn refuse_join(&mut self, why: impl FnOnce(&str) -> String) {
        let Some(room) = self.joining.pop_front() else {
            return;
        };
        let reason = why(&room_label(&room, &self.name));
        if let Some(r) = self.rooms.get_mut(&room) {
            r.refused = Some(reason);
            r.joined = false;
        }
    }
}
