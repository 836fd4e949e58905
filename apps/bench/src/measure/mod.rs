//! The measuring instruments, the bottom layer: a clock the coordinator and the workers share,
//! latency histograms and their percentiles, what `/proc` says about processes and the
//! machine, and Redis's own counters. Each reads or records one thing; none knows a scenario,
//! a deployment or a report.

pub(crate) mod clock;
pub(crate) mod hist;
pub(crate) mod percentiles;
pub(crate) mod procfs;
pub(crate) mod redis_stats;
