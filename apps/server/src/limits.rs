//! Per-connection and per-address limits: what one client may cost the node.
//!
//! Every per-address table is keyed by [`AddrKey`], not by the address itself: an IPv6 host
//! is normally given a whole /64 and can pick any address in it, so counting IPv6 per address
//! would not limit anyone. Logs still show the full address.

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
    /// WebSocket pings, unsolicited pongs and binary frames (which Skat refuses) per second per
    /// connection, 0 for no limit; bursts up to two seconds' worth. Past it the connection is
    /// closed (1008 "too many control frames"). The pong that answers the server's own ping is
    /// never counted.
    #[arg(long, env = "SKAT_CONTROL_FRAMES_PER_SEC", default_value_t = 10)]
    pub control_frames_per_sec: u32,
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
    /// cannot take every file descriptor (each is also bounded by `--http-timeout`).
    #[arg(long, env = "SKAT_MAX_HANDSHAKES", default_value_t = 16_384)]
    pub max_handshakes: usize,
    /// Connections one client address (IPv6: one /64) may hold before their upgrade, at once
    /// (0: no limit); more from it are closed as soon as they are accepted, so one host cannot
    /// take the node's handshake slots. Trusted proxies are exempt. Default: a 64th of
    /// `--max-handshakes`, at least 16 but at most an eighth of it (and at least 1; none when it
    /// is 0).
    #[arg(long, env = "SKAT_MAX_HANDSHAKES_PER_IP", value_name = "N")]
    pub max_handshakes_per_ip: Option<usize>,
    /// Seconds a connection may spend before its WebSocket upgrade (plain HTTP requests, or
    /// none): after half of it its answers say `Connection: close`, at it the connection is
    /// closed whatever it is doing, even writing to a client that does not read.
    #[arg(
        long = "http-timeout",
        env = "SKAT_HTTP_TIMEOUT",
        value_name = "SECS",
        value_parser = positive_seconds,
        default_value = "60"
    )]
    pub http_timeout: Duration,
}

impl Limits {
    /// Connections one address may hold before their upgrade (0: no limit): see
    /// `--max-handshakes-per-ip`.
    pub fn handshakes_per_ip(&self) -> usize {
        self.max_handshakes_per_ip
            .unwrap_or(match self.max_handshakes {
                0 => 0,
                // A 64th, at least 16, but never more than an eighth of a small total (and
                // at least one).
                total => (total / 64).max(16.min(total / 8)).max(1),
            })
    }

    /// Typing frames a connection may send at once: two seconds' worth.
    pub fn typing_burst(&self) -> u32 {
        self.typing_per_sec.saturating_mul(2)
    }

    /// Control frames a connection may send at once: two seconds' worth.
    pub fn control_burst(&self) -> u32 {
        self.control_frames_per_sec.saturating_mul(2)
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
/// Every connection has four, so it is kept to 16 bytes: `f32` counts and the last refill as
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

/// Who an address is to the per-address limits: an IPv4 address, or the /64 an IPv6 address
/// is in. IPv4 peers of a dual-stack listener (`::ffff:a.b.c.d`) count as the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AddrKey {
    V4(u32),
    /// The upper 64 bits: the network prefix.
    V6(u64),
}

impl From<IpAddr> for AddrKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4.to_bits()),
            IpAddr::V6(v6) => Self::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

/// Open connections per client address (see [`AddrKey`]).
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    open: Mutex<HashMap<AddrKey, usize>>,
}

/// Holds one of an address's connection slots until dropped.
#[derive(Debug)]
pub(crate) struct IpSlot {
    table: Arc<PerIp>,
    key: AddrKey,
}

impl PerIp {
    /// A slot for `ip`'s key, unless it already has `max` (0: unlimited) connections open.
    pub(crate) fn acquire(table: &Arc<PerIp>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let key = AddrKey::from(ip);
        let mut open = lock(&table.open);
        let count = open.entry(key).or_default();
        if max != 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: Arc::clone(table),
            key,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.table.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
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

    fn key(text: &str) -> AddrKey {
        AddrKey::from(text.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert_eq!(key("::ffff:10.1.2.3"), key("10.1.2.3"));
        assert_eq!(key("10.1.2.3"), AddrKey::V4(0x0a01_0203));
        assert_ne!(key("10.1.2.3"), key("10.1.2.4"), "IPv4 counts per address");
        // Only the mapped form is IPv4: an IPv4-compatible one (deprecated) is not.
        assert_ne!(key("::10.1.2.3"), key("10.1.2.3"));
    }

    #[test]
    fn ipv6_counts_per_64() {
        assert_eq!(
            key("2001:db8:0:1::1"),
            key("2001:db8:0:1:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:0:1::1"), AddrKey::V6(0x2001_0db8_0000_0001));
        assert_ne!(key("2001:db8:0:1::1"), key("2001:db8:0:2::1"));
        let table = Arc::new(PerIp::default());
        let first = "2001:db8::1".parse().unwrap();
        let _held = PerIp::acquire(&table, first, 1).unwrap();
        assert!(
            PerIp::acquire(&table, "2001:db8::2".parse().unwrap(), 1).is_none(),
            "another address of the same /64 shares the budget"
        );
        assert!(PerIp::acquire(&table, "2001:db8:1::1".parse().unwrap(), 1).is_some());
    }

    #[test]
    fn the_handshake_share_of_an_address_follows_the_total() {
        let limits = |max_handshakes, max_handshakes_per_ip| Limits {
            max_handshakes,
            max_handshakes_per_ip,
            ..Limits::default()
        };
        assert_eq!(Limits::default().handshakes_per_ip(), 256);
        assert_eq!(limits(1000, None).handshakes_per_ip(), 16, "at least 16");
        assert_eq!(limits(50, None).handshakes_per_ip(), 6, "at most an eighth");
        assert_eq!(limits(4, None).handshakes_per_ip(), 1, "at least one");
        assert_eq!(limits(0, None).handshakes_per_ip(), 0, "no total, no share");
        assert_eq!(limits(16_384, Some(0)).handshakes_per_ip(), 0, "0: none");
        assert_eq!(limits(16_384, Some(5)).handshakes_per_ip(), 5);
    }
}
