//! Refused clients: counted, and logged without letting a flood of refusals flood the log.
//!
//! Every refusal (an upgrade from a foreign origin, one address over its connection limit, a
//! `hello` with a bad token, accepting paused at the handshake limit, a connection from an
//! address holding its share of the handshake slots) is logged at debug and
//! counted. At most one line per
//! [`SUMMARY_EVERY`] says at info how many were refused since the last one: an attacker who is
//! refused a million times costs the log a line every ten seconds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lock;

/// How often refusals are summed up in the log, at most.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A WebSocket upgrade from an origin not allowed (`--allowed-origins`).
    Origin,
    /// An upgrade from an address holding its maximum of connections.
    PerIp,
    /// A `hello` without a valid token in signed mode.
    Hello,
    /// Accepting paused at the limit of connections before their upgrade (the new ones wait in
    /// the kernel's backlog).
    Handshakes,
    /// A connection closed as soon as accepted: its address holds its share of the handshake
    /// slots.
    HandshakesPerIp,
}

impl Refusal {
    const ALL: [Refusal; 5] = [
        Refusal::Origin,
        Refusal::PerIp,
        Refusal::Hello,
        Refusal::Handshakes,
        Refusal::HandshakesPerIp,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::PerIp => "per_ip",
            Self::Hello => "hello",
            Self::Handshakes => "handshakes",
            Self::HandshakesPerIp => "handshakes_per_ip",
        }
    }
}

/// The node's refusal counters (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    counts: [AtomicU64; Refusal::ALL.len()],
    /// When the last summary was logged, and the totals it reported.
    summary: Mutex<Option<(Instant, [u64; Refusal::ALL.len()])>>,
}

impl Refusals {
    /// Counts a refusal and logs it (see the module docs).
    pub(crate) fn record(&self, kind: Refusal, detail: &dyn std::fmt::Display) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(refusal = kind.as_str(), %detail, "refused");
        if let Some(new) = self.summary_due(Instant::now()) {
            let [origin, per_ip, hello, handshakes, handshakes_per_ip] = new;
            tracing::info!(
                origin,
                per_ip,
                hello,
                handshakes,
                handshakes_per_ip,
                "clients refused since the last report"
            );
        }
    }

    /// Refusals of `kind` since the node started.
    pub(crate) fn count(&self, kind: Refusal) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// The refusals since the last summary, if one is due at `now`.
    fn summary_due(&self, now: Instant) -> Option<[u64; Refusal::ALL.len()]> {
        let mut summary = lock(&self.summary);
        if summary.is_some_and(|(at, _)| now.duration_since(at) < SUMMARY_EVERY) {
            return None;
        }
        let totals = Refusal::ALL.map(|kind| self.count(kind));
        let reported = summary.map_or([0; Refusal::ALL.len()], |(_, reported)| reported);
        *summary = Some((now, totals));
        Some(std::array::from_fn(|i| totals[i] - reported[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_counted_and_summed_up_rarely() {
        let refusals = Refusals::default();
        let mut summaries = 0;
        for i in 0..10_000 {
            refusals.record(
                if i % 2 == 0 {
                    Refusal::Origin
                } else {
                    Refusal::Hello
                },
                &"x",
            );
            summaries += usize::from(refusals.summary_due(Instant::now()).is_some());
        }
        assert_eq!(refusals.count(Refusal::Origin), 5000);
        assert_eq!(refusals.count(Refusal::Hello), 5000);
        assert_eq!(refusals.count(Refusal::PerIp), 0);
        assert_eq!(summaries, 0, "the first record logged the only summary");
        let later = Instant::now() + SUMMARY_EVERY;
        assert_eq!(refusals.summary_due(later), Some([4999, 0, 5000, 0, 0]));
        assert_eq!(refusals.summary_due(later), None);
    }
}
