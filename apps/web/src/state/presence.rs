//! Who is in a room and who is typing: presence changes the member list, typing notices show
//! for a while and expire, and our own typing frames are throttled.

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

    /// Someone is typing: shown for a while.
    pub(super) fn on_typing(&mut self, room: &str, user: String, now: f64) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.typing.insert(user, now + TYPING_VISIBLE_MS);
        }
    }
}
