//! Who is in a room and who is typing: presence changes the member list (whose pages beyond
//! what `joined` lists are read with `members` requests), typing notices show for a while and
//! expire, and our own typing frames are throttled.

use skat_protocol::ClientFrame;

use super::{Chat, MEMBERS_RETRY_MS, TYPING_THROTTLE_MS, TYPING_VISIBLE_MS};

impl Chat {
    /// A `typing` frame for `room` unless one was sent less than the throttle interval ago.
    #[must_use = "the frames it returns are to be sent"]
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
    /// the list; returns the request for the next page while there is one.
    pub(super) fn on_members(
        &mut self,
        room: &str,
        members: Vec<String>,
        next: Option<String>,
    ) -> Option<ClientFrame> {
        let r = self.rooms.get_mut(room)?;
        r.members.extend(members);
        r.members_retry_at = None;
        match next {
            // The answer to a request repeated after a refusal: that page is already asked for.
            Some(after) if r.members_after.as_ref() == Some(&after) => None,
            Some(after) => Some(self.request_members(room, after)),
            None => {
                r.members_after = None;
                None
            }
        }
    }

    /// Asks for the members after the last one the room lists: `joined` said there are more.
    pub(super) fn read_more_members(&mut self, room: &str) -> Option<ClientFrame> {
        let last = self.rooms.get(room)?.members.last()?.clone();
        Some(self.request_members(room, last))
    }

    /// A `rate_limited` refusal while member pages are being read: most likely one of them (a
    /// reconnect's joins take the budget first), so each is asked for again a second later.
    /// Returns whether any was.
    pub(super) fn members_refused(&mut self, now: f64) -> bool {
        let mut any = false;
        for r in self.rooms.values_mut() {
            if r.members_after.is_some() {
                r.members_retry_at = Some(now + MEMBERS_RETRY_MS);
                any = true;
            }
        }
        any
    }

    /// Asks again for the member pages whose retry time has come (a `rate_limited` refusal
    /// while they were read sets it); returns the requests. Called on a timer.
    #[must_use = "the frames it returns are to be sent"]
    pub fn retry_members(&mut self, now: f64) -> Vec<ClientFrame> {
        let due: Vec<(String, String)> = self
            .rooms
            .iter_mut()
            .filter(|(_, r)| r.members_retry_at.is_some_and(|at| at <= now))
            .filter_map(|(name, r)| {
                r.members_retry_at = None;
                Some((name.clone(), r.members_after.clone()?))
            })
            .collect();
        due.into_iter()
            .map(|(room, after)| self.request_members(&room, after))
            .collect()
    }

    /// The request for `room`'s members after `after`, remembered as the one in flight.
    fn request_members(&mut self, room: &str, after: String) -> ClientFrame {
        if let Some(r) = self.rooms.get_mut(room) {
            r.members_after = Some(after.clone());
        }
        ClientFrame::Members {
            room: room.to_owned(),
            after: Some(after),
            limit: None,
        }
    }

    /// Someone is typing: shown for a while.
    pub(super) fn on_typing(&mut self, room: &str, user: String, now: f64) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.typing.insert(user, now + TYPING_VISIBLE_MS);
        }
    }
}
