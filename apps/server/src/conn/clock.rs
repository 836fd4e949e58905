//! A connection's deadlines: the hello timeout, the token's expiry, the heartbeat (ping, idle
//! and stalled-reader checks) and the flush window.
//!
//! One timer wakes a connection for whichever comes first, but a wakeup by the timer is not
//! what enforces them: [`Conn::check_clock`] runs after every event, so a client whose socket
//! never runs dry (and whose timer is therefore never polled) meets them all the same.

use std::time::Duration;

use skat_broker::Broker;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Conn, Flush, Stop};
use crate::config::Limits;
use crate::ws;

/// The connection's own deadlines (the token's lives in `Signed`, the flush window in `Flush`).
pub(super) struct Clock {
    /// When a connection without `hello` is closed.
    hello: Instant,
    /// The next heartbeat.
    next_tick: Instant,
    idle_timeout: Duration,
}

impl Clock {
    /// The deadlines of a connection opened now.
    pub(super) fn start(limits: &Limits) -> Self {
        let now = Instant::now();
        let mut clock = Self {
            hello: now + limits.hello_timeout,
            next_tick: now,
            idle_timeout: limits.idle_timeout,
        };
        clock.next_tick = now + clock.tick();
        clock
    }

    /// Time between heartbeats. Pings keep live clients (and proxies) from looking idle; a
    /// client that answers nothing for the whole idle timeout is gone.
    fn tick(&self) -> Duration {
        (self.idle_timeout / 3).max(Duration::from_millis(10))
    }
}

impl<B, IO> Conn<B, IO>
where
    B: Broker,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// When the timer must wake the connection: the first deadline that applies now.
    pub(super) fn next_deadline(&self, clock: &Clock) -> Instant {
        let mut deadline = clock.next_tick;
        if self.user.is_none() {
            deadline = deadline.min(clock.hello);
        }
        if let Flush::At(at) = self.flush {
            deadline = deadline.min(at);
        }
        if let Some(signed) = &self.signed {
            deadline = deadline.min(signed.expires);
        }
        deadline
    }

    /// Acts on every deadline `now` has reached: ends the connection, opens the flush or
    /// runs the heartbeat.
    pub(super) fn check_clock(&mut self, clock: &mut Clock, now: Instant) -> Result<(), Stop> {
        if self.user.is_none() && now >= clock.hello {
            return Err(Stop::HelloTimeout);
        }
        if self.signed.as_ref().is_some_and(|s| now >= s.expires) {
            return Err(Stop::TokenExpired);
        }
        if matches!(self.flush, Flush::At(at) if now >= at) {
            self.flush = Flush::Due;
        }
        if now >= clock.next_tick {
            clock.next_tick = now + clock.tick();
            self.heartbeat(clock.idle_timeout)?;
        }
        Ok(())
    }

    /// Every third of the idle timeout: close an idle or stalled connection, or ping it.
    fn heartbeat(&mut self, idle_timeout: Duration) -> Result<(), Stop> {
        if self.last_seen.elapsed() >= idle_timeout
            || self
                .stalled_since
                .is_some_and(|since| since.elapsed() >= idle_timeout)
        {
            return Err(Stop::Idle);
        }
        self.send_now(ws::OP_PING, b"");
        self.awaiting_pong = true;
        Ok(())
    }
}
