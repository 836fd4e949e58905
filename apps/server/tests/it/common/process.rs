//! `skat-server` as a real process, for tests that crash or restart nodes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, sleep, timeout};

/// How long a node may take to start or stop.
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

/// A `skat-server` child process, killed (SIGKILL) on drop.
pub(crate) struct NodeProcess {
    pub id: String,
    pub addr: SocketAddr,
    child: Child,
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
        let path = dir.join(format!("{id}.log"));
        let log = std::fs::File::create(&path).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_skat-server"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SKAT_") {
                command.env_remove(key);
            }
        }
        command.envs([
            ("SKAT_BIND", &*addr.to_string()),
            ("SKAT_NODE_ID", id),
            ("SKAT_REDIS_URL", redis),
            ("SKAT_MESSAGES_PER_SEC", "1000"),
            ("SKAT_MESSAGES_BURST", "1000"),
            ("SKAT_MAX_CONNS_PER_IP", "0"),
            ("SKAT_SHUTDOWN_TIMEOUT", "5"),
            ("RUST_LOG", "warn"),
        ]);
        command.envs(extra.iter().copied());
        let stdout = log.try_clone().unwrap();
        command.stdin(Stdio::null()).stdout(stdout).stderr(log);
        let child = command.spawn().unwrap();
        let mut node = NodeProcess {
            id: id.to_owned(),
            addr,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_status(addr, "/readyz").await != Some(200) {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("{id} exited ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "{id} not ready: {log}");
            sleep(Duration::from_millis(50)).await;
        }
        node
    }

    /// SIGKILL, as a crash would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as an orchestrator stopping the node for a rolling restart does; then waits for
    /// the process to exit by itself.
    pub(crate) async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(status.unwrap().success(), "kill -TERM {pid}");
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} still running", self.id);
            sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
