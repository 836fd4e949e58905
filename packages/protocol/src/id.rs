//! Message ids: `<unix ms>-<sequence>`, ordered like Redis stream ids.
//!
//! Every broker backend uses this one format so that a client's `since` or `before` means the
//! same thing whatever broker a node runs. On the wire an id is a JSON string; in Rust it is this
//! typed value from the broker that assigns it to the client that reads it, parsed once where it
//! enters (a Redis reply, a client's `since`/`before`). Clients treat ids as opaque.

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

impl MessageId {
    /// The length of the id's text form, in bytes (what [`fmt::Display`] writes).
    pub fn text_len(self) -> usize {
        digits(self.ms) + 1 + digits(self.seq)
    }
}

/// The number of decimal digits of `n`, as `Display` (and JSON) writes it.
pub(crate) fn digits(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not a message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessageId(pub String);

impl fmt::Display for InvalidMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid message id {:?}: expected <number>-<number>",
            self.0
        )
    }
}

impl std::error::Error for InvalidMessageId {}

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

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // At most 20 + 1 + 20 bytes, formatted on the stack: no allocation per encoded message.
        let mut buf = [0u8; 41];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        write!(cursor, "{self}").map_err(serde::ser::Error::custom)?;
        let len = usize::try_from(cursor.position()).map_err(serde::ser::Error::custom)?;
        let text = std::str::from_utf8(&buf[..len]).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = MessageId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message id <number>-<number>")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<MessageId, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Text)
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
    fn text_len_is_the_displayed_length() {
        for id in [
            MessageId::MIN,
            MessageId::MAX,
            MessageId { ms: 9, seq: 10 },
            MessageId {
                ms: 1764290000000,
                seq: 99,
            },
        ] {
            assert_eq!(id.text_len(), id.to_string().len(), "{id}");
        }
    }

    #[test]
    fn serializes_as_a_json_string() {
        for id in [MessageId::MIN, MessageId::MAX, MessageId { ms: 17, seq: 3 }] {
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{id}\""));
            assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
        }
        assert!(serde_json::from_str::<MessageId>("\"1-x\"").is_err());
        assert!(serde_json::from_str::<MessageId>("17").is_err());
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
