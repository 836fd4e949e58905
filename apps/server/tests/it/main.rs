//! The server's integration tests, one module per area, linked into one test binary: each
//! binary links the whole server, so one of them builds in a fraction of the time twenty did, and
//! its tests run side by side instead of one binary after another.
//!
//! Only what cannot share a process has a binary of its own: `tests/memory.rs` (it reads the
//! process's resident memory, which tests running alongside would disturb),
//! `tests/room_cost.rs` (it installs `dhat` as the global allocator) and `tests/e2e/` (the
//! browser tests, which need the web bundle, `chromium` and `chromedriver`). Everything here
//! may run beside anything else: no test sets environment variables, installs a tracing
//! subscriber or measures the process; the ones that need a runtime of their own shape build it
//! (`chaos` with four workers, `floods` with one thread), and the ones that need a clean
//! environment (`cli`, `logs`, `common::process`) give it to the child they start.

mod common;

mod access;
mod admission;
mod api;
mod api_changes;
mod backup;
mod batching;
mod changes;
mod chaos;
mod chat;
mod cli;
mod cluster;
mod compat;
mod durable;
mod durable_failures;
mod errors;
mod floods;
mod fuzz;
mod hardening;
mod lifecycle;
mod logs;
mod members;
mod metrics;
mod presence;
mod proxy;
mod reads;
mod redis;
mod redis_changes;
mod replies;
mod search;
mod tokens;
