//! A fixed-size log-linear latency histogram (µs): exact below 128 µs, then 64 buckets per
//! power of two (under 1.6 % error), so recording is one index computation and workers can ship
//! it to the coordinator as a short sparse list.

use serde::{Deserialize, Serialize};

/// Values below this are counted exactly.
const LINEAR: u64 = 128;
/// Buckets per power of two above `LINEAR`.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets needed to cover every `u64`.
const BUCKETS: usize = LINEAR as usize + (64 - SUB_BITS as usize - 1) * SUB as usize;

/// Counts of values per bucket, plus the exact maximum.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

/// A histogram as shipped between processes: non-empty buckets only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Sparse {
    /// `(bucket, count)` for each non-empty bucket.
    pub(crate) buckets: Vec<(u32, u64)>,
    /// The largest value recorded.
    pub(crate) max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

/// The bucket of a value.
fn index(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros(); // >= 7
    let shift = exp - SUB_BITS; // >= 1
    let top = value >> shift; // in [SUB, 2 * SUB)
    LINEAR as usize + (shift as usize - 1) * SUB as usize + (top - SUB) as usize
}

/// The largest value of a bucket.
fn upper_bound(index: usize) -> u64 {
    if index < LINEAR as usize {
        return index as u64;
    }
    let k = (index - LINEAR as usize) as u64;
    let shift = k / SUB + 1;
    let top = k % SUB + SUB;
    let next = u128::from(top + 1) << shift;
    u64::try_from(next - 1).unwrap_or(u64::MAX)
}

impl Histogram {
    /// Counts one value.
    pub(crate) fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// Values recorded.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (0 if none).
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the upper bound of the bucket holding it, capped at the
    /// maximum, so it errs high by under 1.6 %. 0 if the histogram is empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(i).min(self.max);
            }
        }
        self.max
    }

    /// Adds another histogram's counts.
    pub(crate) fn merge(&mut self, other: &Sparse) {
        for &(i, c) in &other.buckets {
            if let Some(slot) = self.counts.get_mut(i as usize) {
                *slot += c;
                self.total += c;
            }
        }
        self.max = self.max.max(other.max);
    }

    /// The non-empty buckets.
    pub(crate) fn to_sparse(&self) -> Sparse {
        Sparse {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i as u32, *c))
                .collect(),
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in (0..5000).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i >= last, "monotonic at {v}");
            assert!(i < BUCKETS);
            assert!(upper_bound(i) >= v, "bound of {v}");
            if v >= LINEAR {
                let err = (upper_bound(i) - v) as f64 / v as f64;
                assert!(err < 1.0 / SUB as f64, "error {err} at {v}");
            } else {
                assert_eq!(upper_bound(i), v);
            }
            last = i;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_bound(index(128)), 129);
        assert_eq!(index(255) + 1, index(256));
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.99), 0);
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile(0.0), 1);
        assert_eq!(h.quantile(0.1), 100);
        let p50 = h.quantile(0.5);
        assert!((500..=508).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(h.max(), 1000);
    }

    #[test]
    fn a_few_outliers_show_in_the_tail_only() {
        let mut h = Histogram::default();
        for _ in 0..9990 {
            h.record(1000);
        }
        for _ in 0..10 {
            h.record(2_000_000);
        }
        assert!(h.quantile(0.99) <= 1016);
        assert!(h.quantile(0.999) <= 1016);
        assert!(h.quantile(0.9995) >= 2_000_000 * 98 / 100);
        assert_eq!(h.quantile(1.0), 2_000_000);
    }

    #[test]
    fn sparse_round_trip_and_merge() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for v in 0..300 {
            a.record(v * 7);
            b.record(v * 13 + 5);
        }
        let mut merged = Histogram::default();
        merged.merge(&a.to_sparse());
        merged.merge(&b.to_sparse());
        assert_eq!(merged.count(), 600);
        assert_eq!(merged.max(), 299 * 13 + 5);
        let mut direct = a.clone();
        direct.merge(&b.to_sparse());
        for q in [0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(merged.quantile(q), direct.quantile(q));
        }
    }
}
