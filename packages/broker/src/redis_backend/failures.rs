//! Failures of a background task (the claim's refresh, the presence heartbeat), logged as one
//! line when they start, then at most once a minute while they last, and once when they end: not
//! one line per entry, room or beat.

use std::time::{Duration, Instant};

use super::error::RedisBrokerError;

/// The failures of one task so far.
#[derive(Debug)]
pub(super) struct Failures {
    what: &'static str,
    count: u64,
    logged: Option<Instant>,
}

impl Failures {
    const EVERY: Duration = Duration::from_secs(60);

    pub(super) fn new(what: &'static str) -> Self {
        Self {
            what,
            count: 0,
            logged: None,
        }
    }

    pub(super) fn failed(&mut self, err: &RedisBrokerError) {
        self.count += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= Self::EVERY) {
            tracing::warn!(error = %err, failures = self.count, "{} failed", self.what);
            self.logged = Some(Instant::now());
        }
    }

    pub(super) fn recovered(&mut self) {
        if self.count > 0 {
            tracing::info!(failures = self.count, "{} recovered", self.what);
        }
        self.count = 0;
        self.logged = None;
    }
}
