//! What this node holds of presence, by room, and the bookkeeping that keeps its instance's room
//! list exact ([`Held`]).
//!
//! An instance lists a room (`instance:<instance>:rooms`) before its first entry there, so that
//! a sweep after its death finds the entry, and takes the room off the list once its last entry
//! there is gone, so that the list (and a sweep) stays as long as what it holds, not as long as
//! everything it ever held. The list and the room's keys live in different cluster slots: no
//! script can check one and change the other. The order is kept here instead, since only this
//! node writes its instance's list and sets: a room is taken off only while no write of this
//! node is under way there, and writes wait while it is being taken off. So a write's listing
//! always comes after the removal, never between the removal and the emptiness it relied on.
//! Removing an entry again after its removal failed is exclusive the same way, so that a join
//! of the same user cannot land before it and be undone by it. A removal from the list whose
//! outcome is unknown (an error, a lost reply, a cancellation) counts as done: a room wrongly
//! believed listed would keep its next entry out of every sweep's reach, while listing it again
//! costs one idempotent `SADD`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::collections::SortedMap;
use crate::sparse::ShrinkWhenSparse as _;

/// The presence entries this node holds, by room: each room's name is kept once, not once per
/// user in it (a node may hold one entry per connection). A set, as Redis holds one entry per
/// instance and user; sorted per room, as most rooms have a few users (see [`SortedMap`]).
#[derive(Debug, Default)]
pub(super) struct Held(HashMap<Box<str>, Room>);

/// One room of [`Held`].
#[derive(Debug, Default)]
struct Room {
    users: SortedMap<Box<str>, ()>,
    /// This node's presence writes to the room under way (joins and leaves).
    writing: u32,
    /// The instance whose list has the room, once a listing was confirmed.
    listed: Option<Arc<str>>,
    /// A removal that must not interleave with writes is under way (taking the room off
    /// `listed`'s list, or removing an entry whose removal failed): writes wait until it ends.
    exclusive: bool,
}

impl Room {
    /// Nothing to remember: no user, no write, not listed.
    fn is_idle(&self) -> bool {
        self.users.is_empty() && self.writing == 0 && self.listed.is_none() && !self.exclusive
    }
}

/// What a write to a room may do now ([`Held::begin_write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Begin {
    /// Go ahead; `list`: list the room under the instance first (it is not known to be).
    Go { list: bool },
    /// An exclusive removal is under way: wait for it, then begin again.
    Wait,
}

impl Held {
    pub(super) fn insert(&mut self, room: &str, user: &str) {
        self.room(room).users.get_or_insert_with(user.into(), || ());
    }

    pub(super) fn remove(&mut self, room: &str, user: &str) {
        if let Some(entry) = self.0.get_mut(room) {
            entry.users.remove(user);
            self.forget_if_idle(room);
        }
    }

    /// Whether this node holds `user` in `room`.
    pub(super) fn contains(&self, room: &str, user: &str) -> bool {
        self.0
            .get(room)
            .is_some_and(|entry| entry.users.get(user).is_some())
    }

    /// Every (room, user) held.
    pub(super) fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .flat_map(|(room, entry)| {
                entry
                    .users
                    .keys()
                    .map(|user| (room.to_string(), user.to_string()))
            })
            .collect()
    }

    /// Starts a write of `instance` to `room` (end it with [`Held::end_write`]).
    pub(super) fn begin_write(&mut self, room: &str, instance: &Arc<str>) -> Begin {
        let entry = self.room(room);
        if entry.exclusive {
            return Begin::Wait;
        }
        entry.writing += 1;
        Begin::Go {
            list: entry.listed.as_ref() != Some(instance),
        }
    }

    /// `room` is on `instance`'s list.
    pub(super) fn listed(&mut self, room: &str, instance: &Arc<str>) {
        self.room(room).listed = Some(Arc::clone(instance));
    }

    pub(super) fn end_write(&mut self, room: &str) {
        if let Some(entry) = self.0.get_mut(room) {
            entry.writing = entry.writing.saturating_sub(1);
            self.forget_if_idle(room);
        }
    }

    /// After `instance`'s set in `room` was found empty: whether to take the room off its list
    /// now (nobody held, no write under way, listed under it). If so, writes wait until
    /// [`Held::end_exclusive`], and the room counts as not listed from now on, whatever comes
    /// of the removal: one that failed may have run (its reply lost, or the removal cancelled
    /// after it was sent), and a room believed listed but not would be skipped by the next
    /// write's listing, its entry then out of every sweep's reach. Listing it again is one
    /// idempotent `SADD`.
    pub(super) fn start_delisting(&mut self, room: &str, instance: &Arc<str>) -> bool {
        let Some(entry) = self.0.get_mut(room) else {
            return false;
        };
        let quiet = entry.users.is_empty() && entry.writing == 0 && !entry.exclusive;
        if !quiet || entry.listed.as_ref() != Some(instance) {
            return false;
        }
        entry.exclusive = true;
        entry.listed = None;
        true
    }

    /// Whether to remove `user`'s entry in `room` again now (after its removal failed): not if
    /// the user is held again or a write is under way there. If so, writes wait until
    /// [`Held::end_exclusive`].
    pub(super) fn begin_unheld(&mut self, room: &str, user: &str) -> bool {
        let entry = self.room(room);
        let free = entry.users.get(user).is_none() && entry.writing == 0 && !entry.exclusive;
        if free {
            entry.exclusive = true;
        } else {
            self.forget_if_idle(room);
        }
        free
    }

    /// The exclusive removal begun is over (done, failed or cancelled).
    pub(super) fn end_exclusive(&mut self, room: &str) {
        if let Some(entry) = self.0.get_mut(room) {
            entry.exclusive = false;
            self.forget_if_idle(room);
        }
    }

    fn room(&mut self, room: &str) -> &mut Room {
        // Looked up first: the name is allocated only for a new room.
        if !self.0.contains_key(room) {
            self.0.insert(room.into(), Room::default());
        }
        self.0
            .get_mut(room)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    fn forget_if_idle(&mut self, room: &str) {
        if self.0.get(room).is_some_and(Room::is_idle) {
            self.0.remove(room);
            self.0.shrink_when_sparse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_is_listed_once_per_instance_and_delisted_only_when_quiet() {
        let (x, y): (Arc<str>, Arc<str>) = (Arc::from("n:x"), Arc::from("n:y"));
        let mut held = Held::default();
        assert_eq!(held.begin_write("r", &x), Begin::Go { list: true });
        held.listed("r", &x);
        held.insert("r", "alice");
        held.end_write("r");
        assert_eq!(held.begin_write("r", &x), Begin::Go { list: false });
        held.insert("r", "bob");
        held.end_write("r");
        // A new instance lists the room again.
        assert_eq!(held.begin_write("r", &y), Begin::Go { list: true });
        held.end_write("r");

        held.remove("r", "alice");
        assert!(!held.start_delisting("r", &x), "bob is still held");
        held.remove("r", "bob");
        assert_eq!(held.begin_write("r", &x), Begin::Go { list: false });
        assert!(!held.start_delisting("r", &x), "a write is under way");
        held.end_write("r");
        assert!(!held.start_delisting("r", &y), "listed under x, not y");
        assert!(held.start_delisting("r", &x));
        assert_eq!(held.begin_write("r", &x), Begin::Wait, "writes wait");
        assert!(!held.start_delisting("r", &x), "once at a time");
        held.end_exclusive("r");
        assert!(held.0.is_empty(), "nothing left to remember");
        assert_eq!(held.begin_write("r", &x), Begin::Go { list: true });
    }

    #[test]
    fn a_delisting_forgets_the_listing_whatever_its_outcome() {
        let x: Arc<str> = Arc::from("n:x");
        let mut held = Held::default();
        assert_eq!(held.begin_write("r", &x), Begin::Go { list: true });
        held.listed("r", &x);
        held.end_write("r");
        assert!(held.start_delisting("r", &x));
        // The removal failed, or its reply was lost: it may have run.
        held.end_exclusive("r");
        assert_eq!(held.begin_write("r", &x), Begin::Go { list: true });
        held.listed("r", &x);
        held.end_write("r");
        // Removing an entry again waits for writes, and writes for it.
        assert_eq!(held.begin_write("r", &x), Begin::Go { list: false });
        assert!(!held.begin_unheld("r", "bob"), "a write is under way");
        held.end_write("r");
        held.insert("r", "bob");
        assert!(!held.begin_unheld("r", "bob"), "held again");
        held.remove("r", "bob");
        assert!(held.begin_unheld("r", "bob"));
        assert_eq!(held.begin_write("r", &x), Begin::Wait);
        held.end_exclusive("r");
        assert_eq!(held.begin_write("r", &x), Begin::Go { list: false });
    }
}
