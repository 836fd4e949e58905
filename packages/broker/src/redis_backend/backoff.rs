//! The backoff between attempts of the pub/sub side (connecting a shard, reading the cluster's
//! shards, a catch-up, a subscription whose slot moved).

use std::time::Duration;

/// Exponential backoff from 50 ms to 2 s, with jitter.
#[derive(Default)]
pub(super) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(super) fn next(&mut self) -> Duration {
        let base = 50u64 << self.attempt.min(6);
        self.attempt += 1;
        let jitter = u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        ) % (base / 2 + 1);
        Duration::from_millis((base + jitter).min(2000))
    }
}
