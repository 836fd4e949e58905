//! [`Tally`]: how many times each name is held, the shape every presence count takes (a node's
//! connections per user in a room, a room's nodes per user).
//!
//! A sorted vector, not a hash map: a room usually has a handful of users, and a map's table
//! (allocated four buckets at a time, with a 16-byte hasher beside it) costs several times what
//! they do. Lookups are binary searches; adding or removing a name moves the entries after it,
//! which in a big room stays below the cost of the `joined` frame that lists every member anyway.
//! The entries come out sorted, as member lists are sent.

use std::borrow::Borrow;

use crate::sparse::ShrinkWhenSparse as _;

/// A sorted multiset of names: each held name with how many times it is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally<K> {
    entries: Vec<(K, usize)>,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord> Tally<K> {
    /// Counts `key` once more; returns `true` if it was not held before.
    pub fn add(&mut self, key: K) -> bool {
        match self.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => {
                self.entries[i].1 += 1;
                false
            }
            Err(i) => {
                // Small rooms grow one slot at a time; big ones by doubling.
                if self.entries.len() == self.entries.capacity() && self.entries.len() < 8 {
                    self.entries.reserve_exact(1);
                }
                self.entries.insert(i, (key, 1));
                true
            }
        }
    }

    /// Counts `key` once less; returns `true` if it is no longer held. A key that is not held
    /// is left alone (and `false` returned).
    pub fn remove<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let Ok(i) = self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key)) else {
            return false;
        };
        if self.entries[i].1 > 1 {
            self.entries[i].1 -= 1;
            return false;
        }
        self.entries.remove(i);
        self.entries.shrink_when_sparse();
        true
    }

    /// The held names, sorted.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Whether no name is held.
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
    fn counts_and_sorts() {
        let mut tally = Tally::default();
        assert!(tally.add("bob".to_owned()));
        assert!(tally.add("alice".to_owned()));
        assert!(!tally.add("bob".to_owned()));
        assert_eq!(tally.keys().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(!tally.remove("bob"));
        assert!(!tally.remove("carol"), "not held: nothing to remove");
        assert!(tally.remove("bob"));
        assert!(tally.remove("alice"));
        assert!(tally.is_empty());
        assert_eq!(tally.capacity(), 0, "an empty tally holds no buffer");
    }

    #[test]
    fn a_burst_is_given_back() {
        let mut tally = Tally::default();
        for i in 0..1000 {
            tally.add(i);
        }
        for i in 0..990 {
            tally.remove(&i);
        }
        assert!(tally.capacity() < 64, "{}", tally.capacity());
        assert_eq!(
            tally.keys().copied().collect::<Vec<_>>(),
            (990..1000).collect::<Vec<_>>()
        );
    }
}
