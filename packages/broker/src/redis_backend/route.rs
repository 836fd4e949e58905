//! One room's delivery on this node: its sinks, the last entry (message or change) they got, what is held back
//! while the room catches up, and the members they were told of.
//!
//! A route skips messages and changes at or below its last id (they share the room's id
//! sequence), so each reaches a node's sinks at most once whichever way it came (live, or read from the stream by a catch-up). While a catch-up
//! is under way its live events are held back ([`Pending`]) and released after the stream has
//! been read; past the bound, held messages are dropped and the stream read again (they are in
//! it). Each hold has a number: a catch-up settles the route only if the hold it was started
//! for is still the current one, so an older catch-up (of a connection lost since) cannot
//! release events a newer one still has to precede.
//!
//! Presence events are not stored anywhere a catch-up could read them, so the route keeps the
//! room's members as its sinks were told of them (a set of names, only while the route lives):
//! after a catch-up it compares them with the members in Redis and delivers the difference as
//! `online`/`offline`. That costs about 50 bytes per member per node (a 100,000-member room:
//! ~5 MB on each node with members in it), a presence event one set update (and one
//! allocation for an `online`), and a catch-up or a room's first subscription on a node one
//! more request per 1,000 members past the first 1,000; messages, the hot path, pay nothing.

use std::collections::{HashSet, VecDeque};

use crate::sinks::Sinks;
use skat_protocol::{Deleted, Edited, Reacted};

use crate::{Change, Message, MessageId, RoomEvent};

/// One room's local subscriptions, and where its delivery stands.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) room: Box<str>,
    /// The cluster slot of the room's channel (0 on one server).
    pub(super) slot: u16,
    pub(super) sinks: Sinks,
    /// Id of the last message or change handed to the sinks (`None`: not started, see
    /// [`Route::start_at`]).
    pub(super) last: Option<MessageId>,
    /// Live events held back while the room catches up from its stream.
    pending: Option<Box<Pending>>,
    /// The number of the current hold (bumped by every [`Route::hold`]).
    holds: u32,
    /// The room's members as the sinks were told of them; `None` until first read.
    members: Option<HashSet<Box<str>>>,
}

/// What arrived live while a room was catching up.
#[derive(Debug, Default)]
struct Pending {
    events: VecDeque<RoomEvent>,
    /// Whether events were dropped for want of room (the stream has the messages among them).
    overflowed: bool,
}

impl Route {
    /// A new route, held until its start is known (its subscription's catch-up).
    pub(super) fn new(room: &str, slot: u16) -> Self {
        Self {
            room: room.into(),
            slot,
            sinks: Sinks::default(),
            last: None,
            pending: Some(Box::default()),
            holds: 0,
            members: None,
        }
    }

    /// A live event: delivered now, or held back (at most `bound`) while catching up.
    pub(super) fn offer(&mut self, event: RoomEvent, bound: usize) {
        match &mut self.pending {
            Some(pending) if pending.events.len() < bound => pending.events.push_back(event),
            Some(pending) => pending.overflowed = true,
            None => {
                self.accept(event);
            }
        }
    }

    /// Hands `event` to the sinks, unless it is a message they already got; returns whether
    /// it did.
    fn accept(&mut self, event: RoomEvent) -> bool {
        match &event {
            // Messages and changes share the room's id sequence.
            RoomEvent::Message(Message { id, .. })
            | RoomEvent::Change(
                Change::Edited(Edited { id, .. })
                | Change::Deleted(Deleted { id, .. })
                | Change::Reacted(Reacted { id, .. }),
            ) => {
                // Exactly once: a catch-up read and live events may overlap.
                if self.last.is_some_and(|last| *id <= last) {
                    return false;
                }
                self.last = Some(*id);
            }
            RoomEvent::Presence { user, online, .. } => {
                if let Some(members) = &mut self.members {
                    if *online {
                        members.insert(user.as_str().into());
                    } else {
                        members.remove(user.as_str());
                    }
                }
            }
            // A read marker's move (notices room only) is at most once, as typing.
            RoomEvent::Typing { .. }
            | RoomEvent::Disconnect { .. }
            | RoomEvent::Read { .. }
            | RoomEvent::Change(Change::Unknown) => {}
        }
        self.sinks.deliver(event);
        true
    }

    /// Starts holding live events back until [`Route::caught_up`] (keeping what it holds
    /// already); returns the hold's number.
    pub(super) fn hold(&mut self) -> u32 {
        self.pending.get_or_insert_default();
        self.holds = self.holds.wrapping_add(1);
        self.holds
    }

    /// Whether hold number `hold` is still on: the catch-up started for it may settle the
    /// route.
    pub(super) fn holding(&self, hold: u32) -> bool {
        self.pending.is_some() && self.holds == hold
    }

    /// The number of the current hold.
    pub(super) fn current_hold(&self) -> u32 {
        self.holds
    }

    /// Starts a route that never learned where its stream ended at `end`: nothing before it is
    /// delivered. A no-op for a started route.
    pub(super) fn start_at(&mut self, end: MessageId) {
        self.last.get_or_insert(end);
    }

    /// Delivers a page read from the stream after the last id (messages and changes); returns
    /// how many of its entries the sinks had not had.
    pub(super) fn replay(&mut self, page: Vec<RoomEvent>) -> usize {
        page.into_iter()
            .map(|event| usize::from(self.accept(event)))
            .sum()
    }

    /// Takes the room's members as read from Redis: the first time, as they are; after that,
    /// delivering who came and went since the sinks were last told (offline first, then online,
    /// each by name).
    /// The set is built by the caller, outside the router's lock (a big room's is large).
    pub(super) fn settle_members(&mut self, now: HashSet<Box<str>>) {
        let Some(members) = &mut self.members else {
            self.members = Some(now);
            return;
        };
        let mut gone: Vec<&Box<str>> = members.difference(&now).collect();
        gone.sort_unstable();
        let mut came: Vec<&Box<str>> = now.difference(members).collect();
        came.sort_unstable();
        let changes: Vec<(String, bool)> = gone
            .into_iter()
            .map(|user| (user.to_string(), false))
            .chain(came.into_iter().map(|user| (user.to_string(), true)))
            .collect();
        *members = now;
        for (user, online) in changes {
            self.sinks.deliver(RoomEvent::Presence {
                room: self.room.to_string(),
                user,
                online,
            });
        }
    }

    /// The stream has been read to its end: releases what was held back, and returns `true`; or
    /// returns `false` if some of it was dropped and the stream must be read again. Presence
    /// events that agree with the members the sinks know of already (a catch-up that read the
    /// members told them) are left out.
    pub(super) fn caught_up(&mut self) -> bool {
        let Some(pending) = self.pending.take() else {
            return true;
        };
        if pending.overflowed {
            self.pending = Some(Box::default());
            return false;
        }
        for event in pending.events {
            if let (RoomEvent::Presence { user, online, .. }, Some(members)) =
                (&event, &self.members)
                && members.contains(user.as_str()) == *online
            {
                continue;
            }
            self.accept(event);
        }
        true
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::RoomSink;

    /// Records what a route delivers.
    #[derive(Default)]
    pub(in super::super) struct Record(Mutex<Vec<RoomEvent>>);

    impl RoomSink for Record {
        fn deliver(&self, event: RoomEvent) {
            self.0.lock().unwrap().push(event);
        }
        fn closed(&self) {}
    }

    pub(in super::super) fn message(seq: u64) -> Message {
        Message {
            room: "r".into(),
            id: MessageId { ms: 5, seq },
            from: "a".into(),
            body: seq.to_string(),
            ts: 5,
            nonce: None,
            extras: None,
        }
    }

    /// A started route (no hold) with a recording sink.
    fn route() -> (Route, Arc<Record>) {
        let record = Arc::new(Record::default());
        let mut route = Route::new("r", 0);
        route.sinks.add(Arc::clone(&record) as Arc<dyn RoomSink>);
        assert!(route.caught_up());
        (route, record)
    }

    /// What the sink got, in short: message bodies, `+user`/`-user` for presence.
    pub(in super::super) fn seqs(record: &Record) -> Vec<String> {
        record
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|event| match event {
                RoomEvent::Message(m) => m.body.clone(),
                RoomEvent::Typing { .. } => "typing".into(),
                RoomEvent::Presence { user, online, .. } => {
                    format!("{}{user}", if *online { '+' } else { '-' })
                }
                RoomEvent::Disconnect { .. } => "disconnect".into(),
                RoomEvent::Change(_) => "change".into(),
                RoomEvent::Read { .. } => "read".into(),
            })
            .collect()
    }

    fn presence(user: &str, online: bool) -> RoomEvent {
        RoomEvent::Presence {
            room: "r".into(),
            user: user.into(),
            online,
        }
    }

    #[test]
    fn live_messages_are_delivered_once_in_order() {
        let (mut route, record) = route();
        route.start_at("5-1".parse().unwrap());
        for seq in [1, 2, 3, 3, 2, 4] {
            route.offer(RoomEvent::Message(message(seq)), 8);
        }
        assert_eq!(seqs(&record), ["2", "3", "4"]);
    }

    #[test]
    fn a_new_route_holds_its_events_until_started() {
        let record = Arc::new(Record::default());
        let mut route = Route::new("r", 0);
        route.sinks.add(Arc::clone(&record) as Arc<dyn RoomSink>);
        route.offer(RoomEvent::Message(message(1)), 8);
        route.offer(RoomEvent::Message(message(3)), 8);
        assert!(seqs(&record).is_empty());
        route.start_at("5-2".parse().unwrap());
        assert!(route.caught_up());
        assert_eq!(seqs(&record), ["3"]);
    }

    #[test]
    fn a_catch_up_replays_the_stream_before_what_was_held_back() {
        let (mut route, record) = route();
        route.offer(RoomEvent::Message(message(1)), 8);
        route.hold();
        // Live while catching up: 4 and 5 (4 is also in the stream page), and a typing event.
        route.offer(RoomEvent::Message(message(4)), 8);
        route.offer(
            RoomEvent::Typing {
                room: "r".into(),
                user: "b".into(),
            },
            8,
        );
        route.offer(RoomEvent::Message(message(5)), 8);
        assert_eq!(seqs(&record), ["1"], "held back");
        route.replay(
            (2..=4)
                .map(|seq| RoomEvent::Message(message(seq)))
                .collect(),
        );
        assert!(route.caught_up());
        assert_eq!(seqs(&record), ["1", "2", "3", "4", "typing", "5"]);
        route.offer(RoomEvent::Message(message(6)), 8);
        assert_eq!(seqs(&record).last().map(String::as_str), Some("6"));
    }

    #[test]
    fn an_overflowing_catch_up_reads_the_stream_again() {
        let (mut route, record) = route();
        let hold = route.hold();
        for seq in 1..=5 {
            route.offer(RoomEvent::Message(message(seq)), 2);
        }
        route.replay(vec![RoomEvent::Message(message(1))]);
        assert!(!route.caught_up(), "3 to 5 were dropped: read again");
        assert!(route.holding(hold), "still the same hold");
        route.offer(RoomEvent::Message(message(6)), 2);
        route.replay(
            (2..=5)
                .map(|seq| RoomEvent::Message(message(seq)))
                .collect(),
        );
        assert!(route.caught_up());
        assert_eq!(seqs(&record), ["1", "2", "3", "4", "5", "6"]);
    }

    #[test]
    fn only_the_current_hold_settles_the_route() {
        let (mut route, _) = route();
        let older = route.hold();
        let newer = route.hold();
        assert!(!route.holding(older));
        assert!(route.holding(newer));
        assert!(route.caught_up());
        assert!(!route.holding(newer), "released");
    }

    #[test]
    fn members_missed_during_a_gap_are_announced_once() {
        let (mut route, record) = route();
        route.settle_members(["alice".into(), "carol".into()].into());
        assert!(
            seqs(&record).is_empty(),
            "the first read only sets what is known"
        );
        route.offer(presence("dave", true), 8);
        route.hold();
        // Live after the reconnection, already in the members read below: not repeated.
        route.offer(presence("bob", true), 8);
        route.offer(presence("erin", false), 8);
        route.settle_members(["alice".into(), "bob".into(), "dave".into()].into());
        assert!(route.caught_up());
        assert_eq!(seqs(&record), ["+dave", "-carol", "+bob"]);
        route.offer(presence("bob", false), 8);
        assert_eq!(seqs(&record).last().map(String::as_str), Some("-bob"));
    }
}
