//! The clock every process of a run agrees on: µs since the Unix epoch. Workers stamp each
//! message's send time into its body and take the latency against their own clock; the
//! coordinator schedules phases (when to start, when the measured window opens and closes) on
//! the same one, so its times mean the same in every worker.

use std::time::Duration;

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Sleeps until `at_us` (µs since the epoch); returns at once if it has passed.
pub(crate) async fn sleep_until_us(at_us: u64) {
    let now = now_us();
    if at_us > now {
        tokio::time::sleep(Duration::from_micros(at_us - now)).await;
    }
}
