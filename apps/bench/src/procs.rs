//! The processes the bench measures: starting floor, Skat nodes and redis-server (optionally
//! pinned with `taskset`), waiting until they serve, and killing them afterwards: a [`Proc`] is
//! killed when dropped and a [`Deployment`] drops its processes and temp dir with it, so an error
//! or Ctrl-C leaves nothing running. What `/proc` says about them is [`crate::procfs`].

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What the bench measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TargetKind {
    /// The reference fan-out (`floor`).
    Floor,
    /// One Skat node with the embedded broker.
    Embedded,
    /// Several Skat nodes sharing the bench's own redis-server.
    Redis,
    /// Several Skat nodes on the bench's own Redis Cluster (`--shards` masters, no replicas),
    /// with sharded pub/sub.
    Cluster,
}

impl TargetKind {
    /// The name used in tables and JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::Embedded => "embedded",
            Self::Redis => "redis",
            Self::Cluster => "cluster",
        }
    }
}

/// How to start a target.
#[derive(Debug, Clone)]
pub(crate) struct ServerSpec {
    /// What to start.
    pub(crate) kind: TargetKind,
    /// Skat nodes for `redis` and `cluster`.
    pub(crate) nodes: usize,
    /// Masters of the `cluster` target.
    pub(crate) shards: usize,
    /// The skat-server binary.
    pub(crate) skat_bin: PathBuf,
    /// The floor binary.
    pub(crate) floor_bin: PathBuf,
    /// The redis-server binary.
    pub(crate) redis_bin: PathBuf,
    /// CPUs for the servers and Redis (`taskset -c`), if pinned.
    pub(crate) cpus: Option<String>,
    /// The flush window (floor `WRITE_DELAY_MS`, Skat `SKAT_WRITE_DELAY_MS`).
    pub(crate) write_delay_ms: u64,
    /// The listen backlog (`SKAT_LISTEN_BACKLOG`; floor's is fixed at 4096).
    pub(crate) backlog: u32,
}

/// A child process killed (SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    /// Its role: `floor`, `node1`, `redis`, ...
    pub(crate) role: String,
    /// Its pid (`taskset` execs the program, so the pid is the program's).
    pub(crate) pid: u32,
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `bin` with `envs`, output to `<dir>/<role>.log`, pinned to `cpus` if given.
    pub(crate) fn spawn(
        role: &str,
        bin: &Path,
        args: &[&str],
        envs: &[(&str, String)],
        cpus: Option<&str>,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        if !bin.exists() && bin.components().count() > 1 {
            bail!(
                "{} not found: build it first (see `just bench`)",
                bin.display()
            );
        }
        let log = dir.join(format!("{role}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone().context("log file")?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        // Whatever SKAT_* the caller's shell has must not leak into the measured nodes.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SKAT_") {
                command.env_remove(key);
            }
        }
        command
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Self {
            role: role.to_owned(),
            pid: child.id(),
            child,
            log,
        })
    }

    /// Fails with the end of its log if the process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("wait")? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log.lines().rev().take(15).collect::<Vec<_>>().join("\n");
            bail!(
                "{} exited ({status}); log tail (reversed):\n{tail}",
                self.role
            );
        }
        Ok(())
    }
}

/// A directory removed when dropped.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system's temp dir.
    pub(crate) fn new(tag: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "skat-bench-{}-{tag}-{}",
            std::process::id(),
            crate::worker::now_us()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr().context("local addr")?.port())
}

/// The servers of one measurement: started by the bench, or given by URL.
#[derive(Debug)]
pub(crate) struct Deployment {
    /// One WebSocket URL per node.
    pub(crate) urls: Vec<String>,
    /// The WebSocket servers the bench started, in URL order.
    pub(crate) nodes: Vec<Proc>,
    /// The bench's Redis processes (one, or a cluster's masters), if any, and their ports.
    pub(crate) redis: Vec<Proc>,
    pub(crate) redis_ports: Vec<u16>,
    /// Processes to account for that the bench did not start (`--pid`).
    pub(crate) extra_pids: Vec<u32>,
    /// The CPUs the servers are pinned to, if they are.
    pub(crate) cpus: Option<Vec<usize>>,
    _dir: Option<TempDir>,
}

impl Deployment {
    /// Servers the bench does not own.
    pub(crate) fn external(urls: Vec<String>, pids: Vec<u32>) -> Self {
        Self {
            urls,
            nodes: Vec::new(),
            redis: Vec::new(),
            redis_ports: Vec::new(),
            extra_pids: pids,
            cpus: None,
            _dir: None,
        }
    }

    /// Starts a target and waits until every process serves.
    pub(crate) async fn start(spec: &ServerSpec) -> anyhow::Result<Self> {
        let pinned = spec.cpus.as_deref().map(parse_cpu_list).transpose()?;
        let dir = TempDir::new(spec.kind.name())?;
        let cpus = spec.cpus.as_deref();
        let mut nodes = Vec::new();
        let mut urls = Vec::new();
        let mut ports = Vec::new();
        // A server process listening on `port`, serving WebSockets at /ws.
        let mut add_node =
            |role: &str, bin: &std::path::Path, envs: &[(&str, String)], port: u16| {
                nodes.push(Proc::spawn(role, bin, &[], envs, cpus, dir.path())?);
                urls.push(format!("ws://127.0.0.1:{port}/ws"));
                ports.push(port);
                anyhow::Ok(())
            };
        let mut redis = Vec::new();
        let mut redis_ports = Vec::new();
        let delay = spec.write_delay_ms.to_string();
        match spec.kind {
            TargetKind::Floor => {
                let port = free_port()?;
                let envs = [
                    ("BIND", format!("127.0.0.1:{port}")),
                    ("WRITE_DELAY_MS", delay),
                ];
                add_node("floor", &spec.floor_bin, &envs, port)?;
            }
            TargetKind::Embedded | TargetKind::Redis | TargetKind::Cluster => {
                let shards = match spec.kind {
                    TargetKind::Redis => 1,
                    TargetKind::Cluster => spec.shards.max(1),
                    _ => 0,
                };
                let (procs, seeds) = crate::redis::start(
                    &spec.redis_bin,
                    spec.kind == TargetKind::Cluster,
                    shards,
                    cpus,
                    dir.path(),
                )
                .await?;
                redis = procs;
                redis_ports.clone_from(&seeds);
                let redis_url = (!seeds.is_empty()).then(|| {
                    let urls: Vec<String> = seeds
                        .iter()
                        .map(|p| format!("redis://127.0.0.1:{p}/"))
                        .collect();
                    urls.join(",")
                });
                let count = if spec.kind == TargetKind::Embedded {
                    1
                } else {
                    spec.nodes.max(1)
                };
                for n in 1..=count {
                    let port = free_port()?;
                    let mut envs = vec![
                        ("SKAT_BIND", format!("127.0.0.1:{port}")),
                        ("SKAT_NODE_ID", format!("bench-{n}")),
                        ("SKAT_MESSAGES_PER_SEC", "0".to_owned()),
                        ("SKAT_MAX_CONNS_PER_IP", "0".to_owned()),
                        // Storms of thousands of handshakes come from a few addresses.
                        ("SKAT_MAX_HANDSHAKES_PER_IP", "0".to_owned()),
                        ("SKAT_JOINS_PER_SEC", "0".to_owned()),
                        ("SKAT_TYPING_PER_SEC", "0".to_owned()),
                        ("SKAT_IDLE_TIMEOUT", "600".to_owned()),
                        ("SKAT_HELLO_TIMEOUT", "60".to_owned()),
                        ("SKAT_WRITE_DELAY_MS", delay.clone()),
                        ("SKAT_LISTEN_BACKLOG", spec.backlog.to_string()),
                        ("RUST_LOG", "warn".to_owned()),
                    ];
                    if let Some(url) = &redis_url {
                        envs.push(("SKAT_REDIS_URL", url.clone()));
                    }
                    if spec.kind == TargetKind::Cluster {
                        envs.push(("SKAT_REDIS_CLUSTER", "true".to_owned()));
                    }
                    add_node(&format!("node{n}"), &spec.skat_bin, &envs, port)?;
                }
            }
        }
        for (proc, &port) in nodes.iter_mut().zip(&ports) {
            let probe = if spec.kind == TargetKind::Floor {
                Probe::Connect
            } else {
                Probe::Readyz
            };
            wait_ready(proc, port, probe).await?;
        }
        Ok(Self {
            urls,
            nodes,
            redis,
            redis_ports,
            extra_pids: Vec::new(),
            cpus: pinned,
            _dir: Some(dir),
        })
    }

    /// Every process whose CPU counts as the server's: nodes, Redis, `--pid`s.
    pub(crate) fn server_pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> =
            self.nodes.iter().map(|p| (p.role.clone(), p.pid)).collect();
        pids.extend(self.redis.iter().map(|r| (r.role.clone(), r.pid)));
        pids.extend(
            self.extra_pids
                .iter()
                .map(|&pid| (format!("pid{pid}"), pid)),
        );
        pids
    }

    /// The WebSocket server processes (for memory), in URL order when the bench started them.
    pub(crate) fn node_pids(&self) -> Vec<u32> {
        if self.nodes.is_empty() {
            self.extra_pids.clone()
        } else {
            self.nodes.iter().map(|p| p.pid).collect()
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Probe {
    Connect,
    Readyz,
    RedisPing,
}

/// Waits until the process on `port` answers `probe` (20 s at most).
pub(crate) async fn wait_ready(proc: &mut Proc, port: u16, probe: Probe) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        proc.check_alive()?;
        if probe_once(port, probe).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} did not become ready on port {port}", proc.role);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn probe_once(port: u16, probe: Probe) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let (request, expect): (&[u8], &[u8]) = match probe {
            Probe::Connect => return Ok::<bool, std::io::Error>(true),
            Probe::Readyz => (
                b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
                b"HTTP/1.1 200",
            ),
            Probe::RedisPing => (b"PING\r\n", b"+PONG"),
        };
        stream.write_all(request).await?;
        let mut buf = [0; 64];
        let mut got = 0;
        while got < expect.len() {
            let n = stream.read(&mut buf[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(buf[..got].starts_with(expect))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// Parses a `taskset -c` CPU list such as `0`, `0-1` or `0,2-3`.
pub(crate) fn parse_cpu_list(list: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| -> anyhow::Result<usize> {
            s.trim()
                .parse()
                .with_context(|| format!("bad CPU list {list:?}"))
        };
        match part.split_once('-') {
            Some((lo, hi)) => cpus.extend(parse(lo)?..=parse(hi)?),
            None => cpus.push(parse(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), [0]);
        assert_eq!(parse_cpu_list("0-1").unwrap(), [0, 1]);
        assert_eq!(parse_cpu_list("3,0-1, 1").unwrap(), [0, 1, 3]);
        assert!(parse_cpu_list("a").is_err());
    }
}
