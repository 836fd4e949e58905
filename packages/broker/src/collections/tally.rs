//! [`Tally`]: how many times each name is held, the shape every presence count takes (a node's
//! connections per user in a room, a room's nodes per user). A [`SortedMap`] of counts, so a
//! handful of users costs a few dozen bytes and the names come out sorted, as member lists are
//! sent.

use std::borrow::Borrow;

use super::sorted::SortedMap;

/// A sorted multiset of names: each held name with how many times it is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally<K>(SortedMap<K, usize>);

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self(SortedMap::default())
    }
}

impl<K: Ord> Tally<K> {
    /// Counts `key` once more; returns `true` if it was not held before.
    pub fn add(&mut self, key: K) -> bool {
        let (count, new) = self.0.get_or_insert_with(key, || 0);
        *count += 1;
        new
    }

    /// Counts `key` once less; returns `true` if it is no longer held. A key that is not held
    /// is left alone (and `false` returned).
    pub fn remove<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.0.get_mut(key) {
            None => false,
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.0.remove(key);
                true
            }
        }
    }

    /// The held names, sorted.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> {
        self.0.keys()
    }

    /// The held names after `after` (from the first if `None`), sorted.
    pub fn keys_after<Q>(&self, after: Option<&Q>) -> impl ExactSizeIterator<Item = &K>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0.keys_after(after)
    }

    /// How many times `key` is held (0 if not).
    pub fn count<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// How many names are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no name is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries the buffer has room for (to check it is given back).
    pub fn capacity(&self) -> usize {
        self.0.capacity()
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
        assert_eq!((tally.count("bob"), tally.count("carol")), (2, 0));
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
