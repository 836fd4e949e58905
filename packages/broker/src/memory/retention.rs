//! Retention (`MemoryBrokerConfig::retention`, the server's `--retention-days`): messages older
//! than the retention are dropped from every room, with the changes that target them, in
//! memory and (on a durable broker) from the file, so an operator's promise to keep messages
//! only so long holds for the node's disk too.
//!
//! Why a sweep and not a check on each send: ids are times, so a room's expired entries are
//! the oldest of its ring and one pass a minute drops them at no cost to the hot path; a room
//! nobody writes to expires all the same. The sweep takes each room's lock in turn (never two at
//! once) and queues one journal write per room that lost entries. A `since` older than what
//! is kept then answers "not recovered", as after a trim by the history length.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{MemoryBroker, now_ms};
use crate::lock;

/// How often the retention task sweeps.
pub const RETENTION_SWEEP: Duration = Duration::from_secs(60);

impl MemoryBroker {
    /// Starts the task sweeping expired messages once a minute ([`RETENTION_SWEEP`]), if the
    /// broker has a retention; it ends once the broker is dropped. Call from a tokio runtime.
    pub fn spawn_retention(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.spawn_retention_every(RETENTION_SWEEP)
    }

    /// [`MemoryBroker::spawn_retention`], sweeping every `period` (tests use a short one).
    pub(crate) fn spawn_retention_every(
        self: &Arc<Self>,
        period: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.config.retention?;
        let broker: Weak<Self> = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // The first tick is at once: a node started on an old data dir sweeps it now.
                ticks.tick().await;
                let Some(broker) = broker.upgrade() else {
                    break;
                };
                broker.sweep_retention(now_ms()).await;
            }
        }))
    }

    /// Drops, in every room, the entries older than the retention as of `now_ms` (Unix
    /// milliseconds) and the changes targeting them; on a durable broker, from the file too
    /// (awaited; on a failure, logged, the room is reloaded from the file and swept again next
    /// time). Returns the rooms that lost entries.
    pub(crate) async fn sweep_retention(&self, now_ms: u64) -> usize {
        let Some(retention) = self.config.retention else {
            return 0;
        };
        let keep_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms.saturating_sub(keep_ms);
        let rooms: Vec<_> = lock(&self.rooms)
            .iter()
            .map(|(name, log)| (name.clone(), Arc::clone(log)))
            .collect();
        let mut swept = 0;
        for (room, log) in rooms {
            // The lock in a block of its own: no guard is held across the wait below.
            let trimmed = {
                let mut state = lock(&log.state);
                // A room being reloaded is swept next time, as the file then holds it.
                #[cfg(feature = "sqlite")]
                if state.pending.as_ref().is_some_and(|p| p.reloading) {
                    continue;
                }
                let through = state.expire_before(cutoff);
                // The sweep trims the file past any trim the ring's pushes still owe it.
                #[cfg(feature = "sqlite")]
                if through.is_some() && self.durable.is_some() {
                    state.pending.get_or_insert_default().untrimmed = 0;
                }
                through
            };
            let Some(through) = trimmed else {
                continue;
            };
            swept += 1;
            #[cfg(feature = "sqlite")]
            if let Some(durable) = &self.durable {
                let done = durable.sweep(&room, through).await.unwrap_or_else(|_| {
                    Err(crate::durable::DurableError::Closed {
                        path: durable.journal.path().to_owned(),
                    })
                });
                if let Err(e) = done {
                    tracing::warn!(room, error = %e, "expired messages not dropped from the file");
                    // Memory dropped them already: put the room back as the file holds it.
                    durable.reload(&room, &log, self.tuning()).await;
                }
            }
            #[cfg(not(feature = "sqlite"))]
            let _ = (room, through);
        }
        swept
    }
}
