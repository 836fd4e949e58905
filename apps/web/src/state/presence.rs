//! Who is in a room and who is typing: presence changes the member list (whose pages beyond
//! what `joined` lists are read with `members` requests), typing notices show for a while and
//! expire, and our own typing frames are throttled.

use skat_protocol::ClientFrame;

use super::{Chat, TYPING_THROTTLE_MS, TYPING_VISIBLE_MS};

impl Chat {
    /// A `typing` frame for `room` unless one was sent less than the throttle interval ago.
    pub fn typing(&mut self, room: &str, now: f64) -> Option<ClientFrame> {
        let r = self.rooms.get_mut(room)?;
        if !r.joined
            || r.last_typing_sent
                .is_some_and(|t| now - t < TYPING_THROTTLE_MS)
        {
            return None;
        }
        r.last_typing_sent = Some(now);
        Some(ClientFrame::Typing {
            room: room.to_owned(),
        })
    }

    /// Drops typing notices that expired by `now`; returns whether anything changed.
    pub fn expire_typing(&mut self, now: f64) -> bool {
        let mut changed = false;
        for room in self.rooms.values_mut() {
            let before = room.typing.len();
            room.typing.retain(|_, until| *until > now);
            changed |= room.typing.len() != before;
        }
        changed
    }

    /// A user came online in a room, or left it.
    pub(super) fn on_presence(&mut self, room: &str, user: String, online: bool) {
        if let Some(r) = self.rooms.get_mut(room) {
            if online {
                r.members.insert(user);
            } else {
                r.typing.remove(&user);
                r.members.remove(&user);
            }
        }
    }

    /// A page of a room's members (`joined` lists only the first ones in a big room): added to
    /// the list, and the next page asked for while there is one.
    pub(super) fn on_members(&mut self, room: &str, members: Vec<String>, next: Option<String>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.members.extend(members);
        if let Some(after) = next {
            self.outbox.push(ClientFrame::Members {
                room: room.to_owned(),
                after: Some(after),
                limit: None,
            });
        }
    }

    /// Asks for the members after the last one the room lists: `joined` said there are more.
    pub(super) fn read_more_members(&mut self, room: &str) {
        let Some(last) = self.rooms.get(room).and_then(|r| r.members.last()) else {
            return;
        };
        self.outbox.push(ClientFrame::Members {
            room: room.to_owned(),
            after: Some(last.clone()),
            limit: None,
        });
    }

    /// Someone is typing: shown for a while.
    pub(super) fn on_typing(&mut self, room: &str, user: String, now: f64) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.typing.insert(user, now + TYPING_VISIBLE_MS);
        }
    }
}
