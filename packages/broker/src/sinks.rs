//! The sinks of one room's local subscriptions, shared by both backends.
//!
//! Each subscription registers its [`RoomSink`] here under an id of its own and removes it by
//! that id when dropped (comparing `dyn` pointers would not be reliable). A room almost always
//! has exactly one (a node subscribes once per room), so the list grows one slot at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{RoomEvent, RoomSink};

/// The live sinks of one room.
#[derive(Default)]
pub(crate) struct Sinks(Vec<(u64, Arc<dyn RoomSink>)>);

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks").field("len", &self.0.len()).finish()
    }
}

impl Sinks {
    /// Registers `sink`; returns the id that removes it.
    pub(crate) fn add(&mut self, sink: Arc<dyn RoomSink>) -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.0.reserve_exact(1);
        self.0.push((id, sink));
        id
    }

    /// Unregisters the sink added under `id`; returns whether none is left.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        self.0.retain(|(sink, _)| *sink != id);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        self.0.is_empty()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Hands `event` to every sink, cloning it for all but the last.
    pub(crate) fn deliver(&self, event: RoomEvent) {
        if let Some(((_, last), others)) = self.0.split_last() {
            for (_, sink) in others {
                sink.deliver(event.clone());
            }
            last.deliver(event);
        }
    }

    /// Tells every sink its subscription has ended for good.
    pub(crate) fn close(&self) {
        for (_, sink) in &self.0 {
            sink.closed();
        }
    }
}
