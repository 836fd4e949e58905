//! Per-connection and per-address limits: what one client may cost the node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use std::time::{Duration, Instant};

use crate::config::{defaults, positive_seconds};
use crate::lock;

/// Limits enforced by a node. Every one has a safe default and a clear error code or close
/// reason when hit (see PROTOCOL.md). Defaults live in the `#[arg]`s, as [`crate::ServerConfig`]'s do.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Rooms one connection may be in at once (`too_many_rooms`).
    #[arg(long, env = "SKAT_MAX_ROOMS_PER_CONN", default_value_t = 100)]
    pub max_rooms_per_conn: usize,
    /// Open WebSockets per client IP address, 0 for no limit (HTTP 429 on upgrade).
    #[arg(long, env = "SKAT_MAX_CONNS_PER_IP", default_value_t = 100)]
    pub max_conns_per_ip: usize,
    /// Sustained `send`s per second per connection, 0 for no limit (`rate_limited`).
    #[arg(long, env = "SKAT_MESSAGES_PER_SEC", default_value_t = 10)]
    pub messages_per_sec: u32,
    /// Burst of `send`s above the sustained rate.
    #[arg(long, env = "SKAT_MESSAGES_BURST", default_value_t = 20)]
    pub messages_burst: u32,
    /// `typing` frames per second per connection, 0 for no limit (`rate_limited`); bursts up to
    /// two seconds' worth.
    #[arg(long, env = "SKAT_TYPING_PER_SEC", default_value_t = 2)]
    pub typing_per_sec: u32,
    /// `join`, `history` and `members` requests per second per connection, 0 for no limit
    /// (`rate_limited`); bursts up to `max_rooms_per_conn`, so a reconnect can rejoin every room.
    #[arg(long, env = "SKAT_JOINS_PER_SEC", default_value_t = 10)]
    pub joins_per_sec: u32,
    /// Seconds a new connection has to send `hello` (close 1008 "hello timeout").
    #[arg(
        long = "hello-timeout",
        env = "SKAT_HELLO_TIMEOUT",
        value_name = "SECS",
        value_parser = positive_seconds,
        default_value = "10"
    )]
    pub hello_timeout: Duration,
    /// Seconds without any frame from the client, pongs included, before it is closed (1001
    /// "idle timeout"). The server pings every third of it, so live clients never hit it.
    #[arg(
        long = "idle-timeout",
        env = "SKAT_IDLE_TIMEOUT",
        value_name = "SECS",
        value_parser = positive_seconds,
        default_value = "60"
    )]
    pub idle_timeout: Duration,
    /// Connections the node holds before their WebSocket upgrade, at once (0: no limit). At
    /// it, the node accepts nothing more until one of them is through: half-sent requests
    /// cannot take every file descriptor (each also has the 30 s header timeout).
    #[arg(long, env = "SKAT_MAX_HANDSHAKES", default_value_t = 16_384)]
    pub max_handshakes: usize,
}

impl Limits {
    /// Typing frames a connection may send at once: two seconds' worth.
    pub fn typing_burst(&self) -> u32 {
        self.typing_per_sec.saturating_mul(2)
    }

    /// Joins, history and members requests a connection may send at once: enough to rejoin every room
    /// it may be in after a reconnect (at least 10).
    pub fn requests_burst(&self) -> u32 {
        u32::try_from(self.max_rooms_per_conn)
            .unwrap_or(u32::MAX)
            .max(10)
    }
}

impl Default for Limits {
    fn default() -> Self {
        defaults()
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`. A rate of 0 never limits.
///
/// Every connection has three, so it is kept to 16 bytes: `f32` counts and the last refill as
/// milliseconds since a process-wide epoch (wrapping after 49 days, which at worst refills one
/// bucket less than it could once).
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f32,
    burst: f32,
    tokens: f32,
    last_ms: u32,
}

/// Milliseconds since the first call, wrapping.
fn millis(now: Instant) -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now);
    now.saturating_duration_since(epoch).as_millis() as u32
}

impl TokenBucket {
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = burst.max(rate).max(1) as f32;
        Self {
            rate: rate as f32,
            burst,
            tokens: burst,
            last_ms: millis(now),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = millis(now);
        let elapsed = now.wrapping_sub(self.last_ms) as f32 / 1000.0;
        self.last_ms = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one of an address's connection slots until dropped.
#[derive(Debug)]
pub(crate) struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A slot for `ip`, unless it already has `max` (0: unlimited) connections open.
    pub(crate) fn acquire(table: &Arc<PerIp>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = lock(&table.open);
        let count = open.entry(ip).or_default();
        if max != 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.table.open);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 20, start);
        assert_eq!(
            (0..25).filter(|_| bucket.try_take(start)).count(),
            20,
            "the burst"
        );
        assert!(!bucket.try_take(start));
        assert!(
            bucket.try_take(start + Duration::from_millis(100)),
            "one more after 100 ms at 10/s"
        );
        assert!(!bucket.try_take(start + Duration::from_millis(100)));
        let mut unlimited = TokenBucket::new(0, 0, start);
        assert!((0..1000).all(|_| unlimited.try_take(start)));
    }

    #[test]
    fn per_ip_slots_are_released() {
        let table = Arc::new(PerIp::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = PerIp::acquire(&table, ip, 2).unwrap();
        let _b = PerIp::acquire(&table, ip, 2).unwrap();
        assert!(PerIp::acquire(&table, ip, 2).is_none());
        assert!(
            PerIp::acquire(&table, "10.0.0.2".parse().unwrap(), 2).is_some(),
            "other addresses unaffected"
        );
        drop(a);
        assert!(PerIp::acquire(&table, ip, 2).is_some());
        assert!(PerIp::acquire(&table, ip, 0).is_some(), "0 means unlimited");
    }
}
