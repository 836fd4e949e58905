//! A node's subscription to one room of the embedded broker: live events from the room's
//! inbox, and the catch-up from the history when the inbox had to drop some.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{RoomLog, lock};
use crate::inbox::{Inbox, Received};
use crate::{Message, MessageId, RoomEvent, Subscription};

/// A node's subscription to one room of a [`MemoryBroker`](super::MemoryBroker).
#[derive(Debug)]
pub struct MemorySubscription {
    pub(super) room: String,
    pub(super) log: Arc<RoomLog>,
    /// Live events, pushed by the room in id order.
    pub(super) inbox: Arc<Inbox<RoomEvent>>,
    /// Id of the last message delivered (or already published when subscribing).
    pub(super) last: Option<MessageId>,
    /// Messages re-read from the history after a lag, delivered before the inbox resumes.
    pub(super) backlog: VecDeque<Message>,
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        let mut state = lock(&self.log.state);
        state
            .subscribers
            .retain(|inbox| !Arc::ptr_eq(inbox, &self.inbox));
        if state.subscribers.is_empty() {
            state.subscribers = Vec::new();
        }
    }
}

impl MemorySubscription {
    /// Whether `message` is new to this subscriber; advances the high-water mark if so.
    fn advance(&mut self, message: &Message) -> bool {
        crate::id::advance(&mut self.last, &message.id)
    }

    /// Refills the backlog from the history after the inbox dropped `skipped` events.
    fn catch_up(&mut self, skipped: u64) {
        let state = lock(&self.log.state);
        if state
            .trimmed
            .is_some_and(|trimmed| self.last.is_none_or(|last| trimmed > last))
        {
            tracing::error!(room = %self.room, skipped, "subscriber fell behind the retained history; messages lost for it");
        } else {
            tracing::warn!(room = %self.room, skipped, "subscriber lagged; catching up from history");
        }
        self.backlog
            .extend(state.after(self.last).map(|(_, m)| m.clone()));
        // Under the room's lock nothing is being published: every message still queued is in the
        // backlog now (or older than all of it, trimmed away: skipped as a duplicate anyway).
        // Drop them now rather than one by one later; presence and typing events stay.
        self.inbox
            .retain(|event| !matches!(event, RoomEvent::Message(_)));
    }
}

impl Subscription for MemorySubscription {
    async fn recv(&mut self) -> Option<RoomEvent> {
        loop {
            if let Some(message) = self.backlog.pop_front() {
                if self.backlog.is_empty() {
                    // A catch-up can fill it with a whole history: give that back.
                    self.backlog = VecDeque::new();
                }
                if self.advance(&message) {
                    return Some(RoomEvent::Message(message));
                }
                continue;
            }
            match self.inbox.recv().await {
                Received::Item(RoomEvent::Message(message)) => {
                    // After a catch-up the inbox still holds messages already delivered.
                    if self.advance(&message) {
                        return Some(RoomEvent::Message(message));
                    }
                }
                Received::Item(event) => return Some(event),
                Received::Lagged(skipped) => self.catch_up(skipped),
                Received::Closed => return None,
            }
        }
    }
}
