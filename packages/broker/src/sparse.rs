//! When a table or queue that a burst grew gives its memory back.
//!
//! Room state lives as long as its room, and a burst (a storm of joins, a flood of sends) grows
//! its tables and queues, whose removals keep the capacity. Each shrinks once it is less than a
//! quarter full: memory follows what is held, without a reallocation on every removal.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// Gives back most of the buffer once less than a quarter of it is used (all of it once empty).
pub(crate) trait ShrinkWhenSparse {
    fn shrink_when_sparse(&mut self);
}

/// The one policy: less than a quarter full.
fn sparse(len: usize, capacity: usize) -> bool {
    len * 4 < capacity
}

impl<T> ShrinkWhenSparse for VecDeque<T> {
    fn shrink_when_sparse(&mut self) {
        if sparse(self.len(), self.capacity()) {
            self.shrink_to_fit();
        }
    }
}

impl<K: Eq + Hash, V> ShrinkWhenSparse for HashMap<K, V> {
    fn shrink_when_sparse(&mut self) {
        if sparse(self.len(), self.capacity()) {
            self.shrink_to_fit();
        }
    }
}

impl<T: Eq + Hash> ShrinkWhenSparse for HashSet<T> {
    fn shrink_when_sparse(&mut self) {
        if sparse(self.len(), self.capacity()) {
            self.shrink_to_fit();
        }
    }
}

impl<T> ShrinkWhenSparse for Vec<T> {
    fn shrink_when_sparse(&mut self) {
        if sparse(self.len(), self.capacity()) {
            self.shrink_to_fit();
        }
    }
}
