//! How a connection ends: the reasons its loop stops, and the close frame each one sends
//! (PROTOCOL.md's close codes).

use skat_protocol::close;

use crate::outbox::Eviction;
use crate::ws::FrameError;

/// Close reason sent to a client evicted for not reading fast enough.
const SLOW_CONSUMER_REASON: &str = "slow consumer: outbound queue full";
/// Close reason sent to every client when the node shuts down (code 1012): reconnect, possibly
/// to another node.
const SERVICE_RESTART_REASON: &str = "service restart";
/// Close reason when the broker ends a room subscription the connection depends on.
const ROOM_LOST_REASON: &str = "room subscription lost, reconnect";
/// Close reason when the connection's token expired (code 4001).
const TOKEN_EXPIRED_REASON: &str = "token expired";
/// Close reason for a client past its budget of pings and unsolicited pongs.
const CONTROL_FLOOD_REASON: &str = "too many control frames";

/// WebSocket close codes (RFC 6455 §7.4.1).
mod code {
    pub(super) const NORMAL: u16 = 1000;
    pub(super) const AWAY: u16 = 1001;
    pub(super) const POLICY: u16 = 1008;
    pub(super) const ERROR: u16 = 1011;
    pub(super) const SERVICE_RESTART: u16 = 1012;
}

/// Why the connection loop stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// The socket closed or failed: nothing more to send.
    Gone,
    /// The client started the closing handshake.
    ClientClosed,
    /// The node is shutting down.
    Shutdown,
    /// The room registry evicted the client.
    Evicted(Eviction),
    /// The client broke the WebSocket protocol or its size limits.
    Violation(FrameError),
    /// No `hello` within the hello timeout.
    HelloTimeout,
    /// No frame (not even a pong) within the idle timeout, or output not read for as long.
    Idle,
    /// Signed mode: `hello` without a valid token.
    Unauthorized,
    /// Signed mode: the token expired and no `refresh` replaced it.
    TokenExpired,
    /// Pings and unsolicited pongs above `--control-frames-per-sec`.
    ControlFlood,
}

impl Stop {
    /// The ending's name in metrics (`skat_connections_closed_total{reason}`).
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::ClientClosed => "client_closed",
            Self::Shutdown => "shutdown",
            Self::Evicted(Eviction::SlowConsumer) => "slow_consumer",
            Self::Evicted(Eviction::RoomLost) => "room_lost",
            Self::Evicted(Eviction::Disconnected(_)) => "disconnected",
            Self::Violation(_) => "protocol_violation",
            Self::HelloTimeout => "hello_timeout",
            Self::Idle => "idle",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::ControlFlood => "control_flood",
        }
    }

    /// The close frame this ending sends, if the socket can still take one.
    pub(super) fn close_frame(&self) -> Option<(u16, &str)> {
        Some(match self {
            Self::Gone => return None,
            Self::ClientClosed => (code::NORMAL, ""),
            Self::Shutdown => (code::SERVICE_RESTART, SERVICE_RESTART_REASON),
            Self::HelloTimeout => (code::POLICY, "hello timeout"),
            Self::Idle => (code::AWAY, "idle timeout"),
            Self::Unauthorized => (code::POLICY, "unauthorized"),
            Self::TokenExpired => (close::TOKEN_EXPIRED, TOKEN_EXPIRED_REASON),
            Self::ControlFlood => (code::POLICY, CONTROL_FLOOD_REASON),
            Self::Evicted(Eviction::SlowConsumer) => (code::POLICY, SLOW_CONSUMER_REASON),
            Self::Evicted(Eviction::RoomLost) => (code::ERROR, ROOM_LOST_REASON),
            Self::Evicted(Eviction::Disconnected(reason)) => (close::DISCONNECTED, reason),
            Self::Violation(violation) => violation.close_frame(),
        })
    }
}
