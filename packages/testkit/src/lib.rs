//! Test harness: the processes, ports and directories Skat's tests and its benchmark run on,
//! and a [`Proxy`] to put network faults between a node and one of them.
//!
//! - [`RedisServer`] and [`RedisCluster`]: real `redis-server` processes.
//! - [`SkatServer`]: a `skat-server` node as a process.
//! - [`Launch`] and [`Process`]: any other program (the benchmark's reference server, say),
//!   pinned to CPUs if asked, its output in a log file, waited for until it serves ([`Probe`]).
//! - [`free_port`] and [`TempDir`]: what each of them runs on.
//!
//! Tests never touch a shared Redis (such as one on 6379): each [`RedisServer`] is a child
//! process on a free loopback port with its own temporary directory. By default it persists
//! with an fsync'ed append-only file, so a [`RedisServer::kill`] followed by
//! [`RedisServer::restart`] simulates a crash that loses nothing Redis acknowledged.
//!
//! Every process is killed when its handle drops and every directory removed, so a failed test
//! or an interrupted benchmark leaves nothing running. Tests call the constructors that panic
//! with the reason ([`RedisServer::start`], [`RedisCluster::start`]); the benchmark calls the
//! fallible ones ([`RedisServer::launch`], [`RedisCluster::launch_masters`],
//! [`SkatServer::start`], [`Launch::spawn`]), which return an [`Error`].

use std::process::ExitStatus;
use std::time::Duration;

mod cluster;
mod process;
mod proxy;
mod redis;
mod replica;
mod scratch;
mod server;

pub use cluster::RedisCluster;
pub use process::{Launch, Probe, Process};
pub use proxy::Proxy;
pub use redis::{RedisOptions, RedisServer};
pub use scratch::{TempDir, free_port};
pub use server::SkatServer;

/// Why the harness could not give a test or the benchmark what it asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file, directory or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while it should have been serving.
    #[error("{name} exited ({status}); the end of its log:\n{log}")]
    Exited {
        /// The process's name.
        name: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its output.
        log: String,
    },
    /// A process did not do something in time (become ready, stop).
    #[error("{name} {what} within {timeout:?}; the end of its log:\n{log}")]
    Timeout {
        /// The process's name.
        name: String,
        /// What it did not do, e.g. "did not become ready on port 6380".
        what: String,
        /// How long it had.
        timeout: Duration,
        /// The last lines of its output.
        log: String,
    },
    /// Redis refused what the harness asked of it, or did not answer.
    #[error("redis on port {port}: {command} answered {reply:?}")]
    Redis {
        /// The server's port.
        port: u16,
        /// The command.
        command: String,
        /// Its reply (`None`: no answer).
        reply: Option<String>,
    },
}

impl Error {
    /// An [`Error::Io`] for `what`.
    fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
