//! A node's subscription to one room of the embedded broker: only its registration, since the
//! room hands events to the sink directly.

use std::sync::Arc;

use super::room::RoomLog;
use crate::lock;

/// A node's subscription to one room of a [`MemoryBroker`](super::MemoryBroker); dropping it
/// unsubscribes.
#[derive(Debug)]
pub struct MemorySubscription {
    pub(super) log: Arc<RoomLog>,
    /// The id its sink is registered under.
    pub(super) id: u64,
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        lock(&self.log.state).subscribers.remove(self.id);
    }
}
