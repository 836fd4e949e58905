//! What one client may take, enforced: the token buckets of a connection's requests, and the
//! connections each client address holds. The numbers come from `Limits` (see `config`).
//!
//! Every per-address table is keyed by [`AddrKey`], not by the address itself: an IPv6 host
//! is normally given a whole /64 and can pick any address in it, so counting IPv6 per address
//! would not limit anyone. Logs still show the full address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::lock;

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
    use std::time::Duration;

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
}
