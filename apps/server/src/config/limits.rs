//! [`Limits`]: what one client may cost the node, as options with their defaults, and the
//! budgets derived from them. The connection enforces them with the token buckets and
//! per-address tables of `quota`.

use std::time::Duration;

use super::{defaults, positive_seconds};

/// Limits enforced by a node. Every one has a safe default and a clear error code or close
/// reason when hit (see PROTOCOL.md). Defaults live in the `#[arg]`s, as [`ServerConfig`](super::ServerConfig)'s do.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Rooms one connection may be in at once (`too_many_rooms`).
    #[arg(long, env = "SKAT_MAX_ROOMS_PER_CONN", default_value_t = 100)]
    pub max_rooms_per_conn: usize,
    /// Open WebSockets per client IP address, 0 for no limit (HTTP 429 on upgrade).
    #[arg(long, env = "SKAT_MAX_CONNS_PER_IP", default_value_t = 100)]
    pub max_conns_per_ip: usize,
    /// Sustained `send`s, `edit`s and `delete`s per second per connection (one budget), 0 for no
    /// limit (`rate_limited`).
    #[arg(long, env = "SKAT_MESSAGES_PER_SEC", default_value_t = 10)]
    pub messages_per_sec: u32,
    /// Burst of `send`s, `edit`s and `delete`s above the sustained rate.
    #[arg(long, env = "SKAT_MESSAGES_BURST", default_value_t = 20)]
    pub messages_burst: u32,
    /// `typing` frames per second per connection, 0 for no limit (`rate_limited`); bursts up to
    /// two seconds' worth.
    #[arg(long, env = "SKAT_TYPING_PER_SEC", default_value_t = 2)]
    pub typing_per_sec: u32,
    /// `react`s per second per connection, 0 for no limit (`rate_limited`).
    #[arg(long, env = "SKAT_REACTIONS_PER_SEC", default_value_t = 5)]
    pub reactions_per_sec: u32,
    /// Burst of `react`s above the sustained rate.
    #[arg(long, env = "SKAT_REACTIONS_BURST", default_value_t = 10)]
    pub reactions_burst: u32,
    /// `read`s per second per connection, 0 for no limit (`rate_limited`). Cheap, but each is a
    /// broker write and a frame to every connection of the user, so bounded.
    #[arg(long, env = "SKAT_READS_PER_SEC", default_value_t = 5)]
    pub reads_per_sec: u32,
    /// Burst of `read`s above the sustained rate (a client catching up on many rooms at once).
    #[arg(long, env = "SKAT_READS_BURST", default_value_t = 20)]
    pub reads_burst: u32,
    /// `join`, `history`, `members` and `search` requests per second per connection, 0 for no
    /// limit (`rate_limited`); bursts up to `max_rooms_per_conn`, so a reconnect can rejoin every
    /// room.
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

#[cfg(test)]
mod tests {
    use super::*;

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
