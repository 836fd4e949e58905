//! Message ids: `<unix ms>-<sequence>`, ordered like Redis stream ids.
//!
//! Both backends use this one format so that a client's `since` or `before` means the same thing
//! whatever broker a node runs. Clients treat ids as opaque strings.

use std::fmt;
use std::str::FromStr;

/// A message id, ordered by time then by sequence within the same millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    /// Unix milliseconds at which the id was assigned (never decreasing within a room).
    pub ms: u64,
    /// Sequence number within `ms`.
    pub seq: u64,
}

impl MessageId {
    /// The smallest id (`0-0`): no message has it, none is below it.
    pub const MIN: MessageId = MessageId { ms: 0, seq: 0 };
    /// The largest id: none is above it.
    pub const MAX: MessageId = MessageId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The smallest id strictly greater than `prev` at time `now_ms`.
    ///
    /// The clock may go backwards; ids never do.
    pub fn next_after(prev: Option<MessageId>, now_ms: u64) -> MessageId {
        match prev {
            Some(prev) if now_ms <= prev.ms => MessageId {
                ms: prev.ms,
                seq: prev.seq + 1,
            },
            _ => MessageId { ms: now_ms, seq: 0 },
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Advances a subscriber's high-water mark: `true` if the message with `id` is new to it (and
/// records it), `false` if it was already delivered. This is how every backend keeps delivery
/// exactly-once when a catch-up read overlaps live events. Unparsable ids (never produced by a
/// backend) are let through rather than dropped.
#[cfg(feature = "redis")]
pub(crate) fn advance(last: &mut Option<MessageId>, id: &str) -> bool {
    match id.parse::<MessageId>() {
        Ok(id) if last.is_none_or(|last| id > last) => {
            *last = Some(id);
            true
        }
        Ok(_) => false,
        Err(_) => true,
    }
}

/// A string that is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message id {0:?}: expected <number>-<number>")]
pub struct InvalidMessageId(pub String);

impl FromStr for MessageId {
    type Err = InvalidMessageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidMessageId(s.chars().take(64).collect());
        let (ms, seq) = s.split_once('-').ok_or_else(invalid)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(invalid());
        }
        Ok(MessageId {
            ms: ms.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        let a: MessageId = "1764290000000-0".parse().unwrap();
        let b: MessageId = "1764290000000-10".parse().unwrap();
        let c: MessageId = "1764290000001-0".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1764290000000-10");
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "+1-2",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn next_after_never_goes_back() {
        let first = MessageId::next_after(None, 100);
        assert_eq!(first, MessageId { ms: 100, seq: 0 });
        assert_eq!(
            MessageId::next_after(Some(first), 100),
            MessageId { ms: 100, seq: 1 }
        );
        assert_eq!(
            MessageId::next_after(Some(first), 50),
            MessageId { ms: 100, seq: 1 }
        );
        assert_eq!(
            MessageId::next_after(Some(first), 101),
            MessageId { ms: 101, seq: 0 }
        );
    }
}
