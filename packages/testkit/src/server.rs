//! [`SkatServer`]: a `skat-server` node as a process, as the tests that crash or restart nodes
//! and the benchmark start one. The binary comes from the caller (`CARGO_BIN_EXE_skat-server`
//! in the server's tests, `--skat-bin` in the benchmark), and so do its settings: the harness
//! knows only how a node is told where to listen and which Redis to use, and when it serves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Launch, Probe, Process};

/// How long a node may take to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a `skat-server` node.
#[derive(Debug, Clone)]
pub struct SkatServer {
    launch: Launch,
    addr: SocketAddr,
}

impl SkatServer {
    /// Node `id` (`SKAT_NODE_ID`) of the `skat-server` binary `bin`, listening on `addr`
    /// (`SKAT_BIND`) and logging warnings and errors (`RUST_LOG=warn`, unless an
    /// [`env`](SkatServer::env) says otherwise); named `id` in errors and its log, `<id>.log`.
    pub fn new(bin: impl Into<PathBuf>, id: &str, addr: SocketAddr) -> SkatServer {
        let launch = Launch::new(id, bin)
            .env("SKAT_BIND", addr.to_string())
            .env("SKAT_NODE_ID", id)
            .env("RUST_LOG", "warn");
        SkatServer { launch, addr }
    }

    /// Names the process `name` in errors and its log instead of its node id.
    #[must_use]
    pub fn named(self, name: &str) -> SkatServer {
        SkatServer {
            launch: self.launch.renamed(name),
            ..self
        }
    }

    /// Shares the Redis (or Redis Cluster seeds) at `url` (`SKAT_REDIS_URL`).
    #[must_use]
    pub fn redis(self, url: &str) -> SkatServer {
        self.env("SKAT_REDIS_URL", url)
    }

    /// Sets one more `SKAT_*` setting (or any environment variable).
    #[must_use]
    pub fn env(self, key: &str, value: &str) -> SkatServer {
        SkatServer {
            launch: self.launch.env(key, value),
            ..self
        }
    }

    /// Pins it to `cpus` (`taskset -c`) when given.
    #[must_use]
    pub fn pinned(self, cpus: Option<&str>) -> SkatServer {
        SkatServer {
            launch: self.launch.pinned(cpus),
            ..self
        }
    }

    /// Starts it, logging into `dir`, and waits until `/readyz` answers 200 (20 s at most).
    ///
    /// # Errors
    ///
    /// If it cannot start, exits, or does not serve in time (with the end of its log).
    pub async fn start(&self, dir: &Path) -> Result<Process, Error> {
        let mut process = self.launch.spawn(dir)?;
        process
            .wait_ready(self.addr.port(), Probe::Readyz, READY_TIMEOUT)
            .await?;
        Ok(process)
    }
}
