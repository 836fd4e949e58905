//! [`SortedMap`]: the map every per-room collection uses (a node's members of a room, presence
//! counts, the presence entries a node holds).
//!
//! A sorted vector, not a hash map: a room usually has a handful of users, and a map's table
//! (allocated four buckets at a time, with a 16-byte hasher beside it) costs several times what
//! they do. Lookups are binary searches; adding or removing a key moves the entries after it,
//! which in a big room stays below the cost of the event the change is announced with (a move of
//! a few pointers per member, where the fan-out pushes to each). Iteration walks a slice in key
//! order, which is what a room's fan-out does per event, and a page of keys after a given one
//! (a members page) is a binary search away.
//!
//! Memory follows the contents: a small map grows one slot at a time (a big one by doubling),
//! and a map less than a quarter full gives the rest back (see `sparse.rs`).

use std::borrow::Borrow;

use crate::sparse::ShrinkWhenSparse as _;

/// Below this many entries a full map grows by one slot, not by doubling.
const GROW_BY_ONE_BELOW: usize = 8;

/// A map kept as a vector sorted by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value of `key`, inserting `make()` first if it has none; and whether it was inserted.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> (&mut V, bool) {
        match self.find(&key) {
            Ok(i) => (&mut self.entries[i].1, false),
            Err(i) => {
                if self.entries.len() == self.entries.capacity()
                    && self.entries.len() < GROW_BY_ONE_BELOW
                {
                    self.entries.reserve_exact(1);
                }
                self.entries.insert(i, (key, make()));
                (&mut self.entries[i].1, true)
            }
        }
    }

    /// The value of `key`, if any.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.find(key).ok()?;
        Some(&self.entries[i].1)
    }

    /// The value of `key`, if any.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.find(key).ok()?;
        Some(&mut self.entries[i].1)
    }

    /// Removes `key`, returning its value if it had one.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.find(key).ok()?;
        let (_, value) = self.entries.remove(i);
        self.entries.shrink_when_sparse();
        Some(value)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The keys after `after` (from the first if `None`), in order.
    pub fn keys_after<Q>(&self, after: Option<&Q>) -> impl ExactSizeIterator<Item = &K>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let start = after.map_or(0, |after| {
            self.entries.partition_point(|(k, _)| k.borrow() <= after)
        });
        self.entries[start..].iter().map(|(k, _)| k)
    }

    /// The values, in key order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries the buffer has room for (to check it is given back).
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_sorted_and_values_with_them() {
        let mut map = SortedMap::default();
        for key in [5, 1, 3] {
            let (value, new) = map.get_or_insert_with(key, || key * 10);
            assert!(new);
            assert_eq!(*value, key * 10);
        }
        let (value, new) = map.get_or_insert_with(3, || 0);
        assert!(!new, "already there");
        *value += 1;
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            [(&1, &10), (&3, &31), (&5, &50)]
        );
        assert_eq!(map.remove(&3), Some(31));
        assert_eq!(map.remove(&3), None);
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), [1, 5]);
        assert_eq!(map.get_mut(&5).copied(), Some(50));
        assert_eq!(map.capacity(), 3, "small maps grow one slot at a time");
    }

    #[test]
    fn pages_keys_after_a_cursor() {
        let mut map = SortedMap::default();
        for key in ["b", "d", "f"] {
            map.get_or_insert_with(key.to_owned(), || ());
        }
        let after = |cursor: Option<&str>| map.keys_after(cursor).cloned().collect::<Vec<_>>();
        assert_eq!(after(None), ["b", "d", "f"]);
        assert_eq!(after(Some("b")), ["d", "f"], "strictly after a key");
        assert_eq!(
            after(Some("c")),
            ["d", "f"],
            "after a name that is not there"
        );
        assert_eq!(after(Some("a")), ["b", "d", "f"]);
        assert!(after(Some("f")).is_empty());
    }

    #[test]
    fn a_burst_is_given_back() {
        let mut map = SortedMap::default();
        for i in 0..1000 {
            map.get_or_insert_with(i, || ());
        }
        for i in 0..990 {
            map.remove(&i);
        }
        assert!(map.capacity() < 64, "{}", map.capacity());
        for i in 990..1000 {
            map.remove(&i);
        }
        assert_eq!(map.capacity(), 0, "an empty map holds no buffer");
    }
}
