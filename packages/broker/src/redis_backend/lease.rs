//! The instance this node writes presence as, and its lease ([`Lease`]): made by the claim
//! (`claim`, which explains what the lease guarantees), read by every presence write
//! (`presence`, the join) and by the sweeps (`sweep`), and asked to be made again by a write
//! that finds it over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::error::RedisBrokerError;

/// The instance this node writes presence as, and until when (see `claim`).
#[derive(Debug, Clone)]
pub(super) struct Lease {
    /// `<node id>:<claim token>`.
    pub(super) instance: Arc<str>,
    /// Redis's clock (Unix ms) from which the instance's writes are refused.
    pub(super) until_ms: u64,
    /// When the node stops sending writes as the instance, on its own clock.
    local_until: Instant,
    /// Redis's clock (Unix ms) when the claim was last extended, and when (on ours) the
    /// command doing it was sent: the node reads Redis's clock off them ([`Lease::redis_now`]).
    redis_ms: u64,
    sent: Instant,
}

impl Lease {
    /// No lease yet: every write waits for the claim.
    fn none() -> Self {
        let now = Instant::now();
        Self {
            instance: Arc::from(""),
            until_ms: 0,
            local_until: now,
            redis_ms: 0,
            sent: now,
        }
    }

    /// Redis's clock now (Unix ms), as last read from it plus the time passed since on this
    /// node's monotonic clock: ahead by at most a round trip, and free of the node's wall clock.
    fn redis_now(&self) -> u64 {
        self.redis_ms + self.sent.elapsed().as_millis() as u64
    }
}

/// The node's current lease, shared by the claim that grants it and the writes under it.
#[derive(Debug)]
pub(super) struct Leases {
    current: watch::Sender<Lease>,
    /// Asks the claim task for a refresh now (a write found the lease over).
    kick: Notify,
}

impl Leases {
    /// No lease yet (see `claim`).
    pub(super) fn new() -> Self {
        Self {
            current: watch::Sender::new(Lease::none()),
            kick: Notify::new(),
        }
    }

    /// The instance this node runs as now.
    pub(super) fn instance(&self) -> Arc<str> {
        Arc::clone(&self.current.borrow().instance)
    }

    /// Redis's clock now, as the claim last read it (see [`Lease::redis_now`]).
    pub(super) fn redis_now(&self) -> u64 {
        self.current.borrow().redis_now()
    }

    /// Whether the node's lease runs now, on its own clock: else every presence write waits for
    /// a claim and most likely fails, and the node is not ready (`RedisBroker`'s `is_ready`,
    /// polled by `/readyz`: one read of the lease, no command).
    pub(super) fn running(&self) -> bool {
        self.current.borrow().local_until > Instant::now()
    }

    /// The lease to write presence under: the current one if it has not ended on this node's
    /// clock, else the next, asked for at once and waited for (up to `patience`).
    pub(super) async fn fresh(&self, patience: Duration) -> Result<Lease, RedisBrokerError> {
        let mut lease = self.current.subscribe();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            {
                let current = lease.borrow_and_update();
                if current.local_until > Instant::now() {
                    return Ok(current.clone());
                }
            }
            self.kick.notify_one();
            match tokio::time::timeout_at(deadline, lease.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(RedisBrokerError::Lapsed),
            }
        }
    }

    /// Passes on the outcome of a write under the lease: a refusal by the scripts (`LAPSED`)
    /// asks the claim task for a refresh at once.
    pub(super) fn noticed<T>(
        &self,
        written: Result<T, RedisBrokerError>,
    ) -> Result<T, RedisBrokerError> {
        if matches!(written, Err(RedisBrokerError::Lapsed)) {
            self.kick.notify_one();
        }
        written
    }

    /// Resolves when a write asked for a refresh.
    pub(super) async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// Watches the lease (a new instance holds every entry again, see `presence`).
    pub(super) fn subscribe(&self) -> watch::Receiver<Lease> {
        self.current.subscribe()
    }

    /// The claim naming `instance` was extended by Redis at `redis_ms` (its clock), by a command
    /// sent at `sent` (ours): the node writes as `instance` for `span` from then. Whether that
    /// instance is new.
    pub(super) fn grant(
        &self,
        instance: &str,
        redis_ms: u64,
        sent: Instant,
        span: Duration,
    ) -> bool {
        let mut renewed = false;
        self.current.send_modify(|lease| {
            if *lease.instance != *instance {
                lease.instance = Arc::from(instance);
                renewed = true;
            }
            lease.until_ms = redis_ms + span.as_millis() as u64;
            lease.local_until = sent + span;
            lease.redis_ms = redis_ms;
            lease.sent = sent;
        });
        renewed
    }
}
