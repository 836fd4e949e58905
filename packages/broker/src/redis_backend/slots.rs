//! Redis Cluster slots: the slot of a key, and sets of slots (which shard serves which rooms).
//!
//! The `redis` crate computes a key's slot (`cluster_routing::Slot::for_key`) but does not give
//! the number out (its `Route::slot` is private to the crate, as of 1.8), and the node must
//! compare it with the slot ranges `CLUSTER SHARDS` lists. So the slot is computed here, once,
//! as Redis does; a test checks it against `CLUSTER KEYSLOT`. Where a command only needs to be
//! routed to a key's master, the crate's `Route::with_key` is used instead (see `link`).

/// The slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the text between its first `{`
/// and the next `}`, if not empty), else of the whole key, mod 16384, as Redis computes it.
pub(super) fn key_slot(key: &str) -> u16 {
    let tag = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for byte in tag.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc & 0x3fff
}

/// A set of cluster slots (on one server, every slot).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct SlotSet(Box<[u64; SLOTS / 64]>);

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count: u32 = self.0.iter().map(|word| word.count_ones()).sum();
        write!(f, "SlotSet({count} slots)")
    }
}

impl SlotSet {
    pub(super) fn all() -> Self {
        Self(Box::new([u64::MAX; SLOTS / 64]))
    }

    /// The slots in the inclusive `ranges`.
    pub(super) fn from_ranges(ranges: &[(u16, u16)]) -> Self {
        let mut set = Self(Box::new([0; SLOTS / 64]));
        for &(start, end) in ranges {
            for slot in start..=end.min(SLOTS as u16 - 1) {
                set.0[usize::from(slot) / 64] |= 1 << (slot % 64);
            }
        }
        set
    }

    pub(super) fn contains(&self, slot: u16) -> bool {
        self.0
            .get(usize::from(slot) / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // `CLUSTER KEYSLOT` of the same strings on Redis 7.
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("general"), key_slot("general"));
    }

    #[test]
    fn hash_tags_decide_the_slot() {
        // `CLUSTER KEYSLOT` on Redis 7 again.
        assert_eq!(key_slot("skat:{general}:events"), 9981);
        assert_eq!(key_slot("general"), 9981);
        // An empty tag is no tag: the whole key counts.
        assert_eq!(key_slot("{}x"), 10595);
        assert_eq!(key_slot("x"), 16287);
    }

    #[test]
    fn slot_sets_hold_their_ranges() {
        let set = SlotSet::from_ranges(&[(0, 10), (16383, 16383)]);
        assert!(set.contains(0) && set.contains(10) && set.contains(16383));
        assert!(!set.contains(11));
        assert!(SlotSet::all().contains(5000));
    }
}
