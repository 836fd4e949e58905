//! Latency percentiles in milliseconds, from a histogram of microseconds: what every report of
//! latency (deliveries, connection setup, the workers' own lag) shows.

use serde::Serialize;

use super::hist::Histogram;

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Largest.
    pub(crate) max: f64,
}

impl Percentiles {
    /// Percentiles of a histogram of microseconds.
    pub(crate) fn of(h: &Histogram) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.quantile(0.50)),
            p99: ms(h.quantile(0.99)),
            p999: ms(h.quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut h = Histogram::default();
        for v in [1000, 2000, 3000] {
            h.record(v);
        }
        let p = Percentiles::of(&h);
        assert!((p.max - 3.0).abs() < 1e-9);
        assert!(p.p50 >= 2.0 && p.p50 < 2.05);
    }
}
