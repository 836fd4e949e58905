//! `skat-server` as a real process, for tests that crash or restart nodes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use skat_testkit::{Process, SkatServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// How long a node may take to stop.
const STEP: Duration = Duration::from_secs(10);

/// `GET path` over a raw HTTP/1.1 connection; `None` if the node does not answer.
pub(crate) async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        response.split(' ').nth(1)?.parse().ok()
    };
    timeout(Duration::from_secs(2), request)
        .await
        .ok()
        .flatten()
}

/// Node `id` on `addr` with the tests' limits (generous rates, a short shutdown) and `extra`.
fn server(id: &str, addr: SocketAddr, extra: &[(&str, &str)]) -> SkatServer {
    let mut server = SkatServer::new(env!("CARGO_BIN_EXE_skat-server"), id, addr)
        .env("SKAT_MESSAGES_PER_SEC", "1000")
        .env("SKAT_MESSAGES_BURST", "1000")
        .env("SKAT_MAX_CONNS_PER_IP", "0")
        .env("SKAT_SHUTDOWN_TIMEOUT", "5");
    for (key, value) in extra {
        server = server.env(key, value);
    }
    server
}

/// A `skat-server` child process (testkit's [`SkatServer`]), killed (SIGKILL) on drop.
pub(crate) struct NodeProcess {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    process: Process,
}

impl NodeProcess {
    /// Starts node `id` on `addr` (logging to `dir`) and waits until `/readyz` answers 200.
    pub(crate) async fn spawn(id: &str, addr: SocketAddr, redis: &str, dir: &Path) -> NodeProcess {
        Self::spawn_with(id, addr, redis, dir, &[]).await
    }

    /// Like [`NodeProcess::spawn`], with more environment variables.
    pub(crate) async fn spawn_with(
        id: &str,
        addr: SocketAddr,
        redis: &str,
        dir: &Path,
        extra: &[(&str, &str)],
    ) -> NodeProcess {
        Self::start(server(id, addr, extra).redis(redis), id, addr, dir).await
    }

    /// Node `id` on `addr` with the embedded broker on the data dir `data` (logging to
    /// `dir`), with more environment variables; waits until `/readyz` answers 200.
    pub(crate) async fn embedded(
        id: &str,
        addr: SocketAddr,
        data: &Path,
        dir: &Path,
        extra: &[(&str, &str)],
    ) -> NodeProcess {
        let data = data.to_string_lossy();
        let server = server(id, addr, extra).env("SKAT_DATA_DIR", &data);
        Self::start(server, id, addr, dir).await
    }

    async fn start(server: SkatServer, id: &str, addr: SocketAddr, dir: &Path) -> NodeProcess {
        let process = server
            .start(dir)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        NodeProcess {
            id: id.to_owned(),
            addr,
            process,
        }
    }

    /// Its log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub(crate) fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, as an orchestrator stopping the node for a rolling restart does; then waits for
    /// the process to exit by itself.
    pub(crate) async fn terminate(&mut self) -> ExitStatus {
        self.process
            .terminate(STEP)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }
}
