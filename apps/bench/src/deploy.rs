//! What the bench measures: floor, Skat nodes and Redis, as a [`Deployment`] started through
//! the test harness (`skat-testkit`, optionally pinned with `taskset`) or given by URL. A
//! deployment drops its processes and temp dir with it, so an error or Ctrl-C leaves nothing
//! running. What `/proc` says about them is [`crate::measure::procfs`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde::Serialize;
use skat_testkit::{
    Launch, Probe, Process, RedisCluster, RedisOptions, RedisServer, SkatServer, TempDir, free_port,
};

/// What the bench measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TargetKind {
    /// The reference fan-out (`floor`).
    Floor,
    /// One Skat node with the embedded broker.
    Embedded,
    /// One Skat node with the embedded broker keeping its rooms in a data dir (SQLite).
    Durable,
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
            Self::Durable => "durable",
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

/// How long a WebSocket server may take to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The servers of one measurement: started by the bench, or given by URL.
#[derive(Debug)]
pub(crate) struct Deployment {
    /// One WebSocket URL per node.
    pub(crate) urls: Vec<String>,
    /// The WebSocket servers the bench started, in URL order, named by their role (`floor`,
    /// `node1`, ...).
    nodes: Vec<Process>,
    /// The bench's Redis servers (one, or a cluster's masters), if any.
    redis: Vec<RedisServer>,
    /// Their ports.
    pub(crate) redis_ports: Vec<u16>,
    /// Processes to account for that the bench did not start (`--pid`).
    pub(crate) extra_pids: Vec<u32>,
    /// The CPUs the servers are pinned to, if they are.
    pub(crate) cpus: Option<Vec<usize>>,
    /// The nodes' logs.
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
        let dir = TempDir::new(&format!("bench-{}", spec.kind.name()))?;
        let cpus = spec.cpus.as_deref();
        let mut nodes = Vec::new();
        let mut urls = Vec::new();
        let mut redis = Vec::new();
        let delay = spec.write_delay_ms.to_string();
        match spec.kind {
            TargetKind::Floor => {
                let port = free_port()?;
                let mut floor = Launch::new("floor", built(&spec.floor_bin)?)
                    .env("BIND", format!("127.0.0.1:{port}"))
                    .env("WRITE_DELAY_MS", &delay)
                    .pinned(cpus)
                    .spawn(dir.path())?;
                floor
                    .wait_ready(port, Probe::Connect, READY_TIMEOUT)
                    .await?;
                nodes.push(floor);
                urls.push(format!("ws://127.0.0.1:{port}/ws"));
            }
            TargetKind::Embedded
            | TargetKind::Durable
            | TargetKind::Redis
            | TargetKind::Cluster => {
                let options = RedisOptions::default()
                    .bin(built(&spec.redis_bin)?)
                    .pinned(cpus)
                    .without_persistence();
                redis = match spec.kind {
                    TargetKind::Redis => vec![RedisServer::launch(&options).await?],
                    TargetKind::Cluster => {
                        RedisCluster::launch_masters(spec.shards.max(1), &options)
                            .await?
                            .into_nodes()
                    }
                    _ => Vec::new(),
                };
                let redis_url = (!redis.is_empty()).then(|| {
                    let urls: Vec<String> = redis.iter().map(RedisServer::url).collect();
                    urls.join(",")
                });
                let count = if matches!(spec.kind, TargetKind::Embedded | TargetKind::Durable) {
                    1
                } else {
                    spec.nodes.max(1)
                };
                let (skat_bin, backlog) = (built(&spec.skat_bin)?, spec.backlog.to_string());
                for n in 1..=count {
                    let port = free_port()?;
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    let mut node = SkatServer::new(skat_bin, &format!("bench-{n}"), addr)
                        .named(&format!("node{n}"))
                        .env("SKAT_MESSAGES_PER_SEC", "0")
                        .env("SKAT_MAX_CONNS_PER_IP", "0")
                        // Storms of thousands of handshakes come from a few addresses.
                        .env("SKAT_MAX_HANDSHAKES_PER_IP", "0")
                        .env("SKAT_JOINS_PER_SEC", "0")
                        .env("SKAT_TYPING_PER_SEC", "0")
                        .env("SKAT_IDLE_TIMEOUT", "600")
                        .env("SKAT_HELLO_TIMEOUT", "60")
                        .env("SKAT_WRITE_DELAY_MS", &delay)
                        .env("SKAT_LISTEN_BACKLOG", &backlog)
                        .pinned(cpus);
                    if let Some(url) = &redis_url {
                        node = node.redis(url);
                    }
                    if spec.kind == TargetKind::Cluster {
                        node = node.env("SKAT_REDIS_CLUSTER", "true");
                    }
                    if spec.kind == TargetKind::Durable {
                        let data = dir.path().join(format!("data{n}"));
                        node = node.env("SKAT_DATA_DIR", &data.display().to_string());
                    }
                    nodes.push(node.start(dir.path()).await?);
                    urls.push(format!("ws://{addr}/ws"));
                }
            }
        }
        let redis_ports = redis.iter().map(RedisServer::port).collect();
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
        let mut pids: Vec<(String, u32)> = self
            .nodes
            .iter()
            .map(|p| (p.name().to_owned(), p.pid()))
            .collect();
        let single = self.redis.len() == 1;
        pids.extend(self.redis.iter().enumerate().filter_map(|(i, r)| {
            let role = if single {
                "redis".to_owned()
            } else {
                format!("redis{}", i + 1)
            };
            Some((role, r.pid()?))
        }));
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
            self.nodes.iter().map(Process::pid).collect()
        }
    }

    /// The pid of the bench's Redis (the first master of a cluster), if it runs one.
    pub(crate) fn redis_pid(&self) -> Option<u32> {
        self.redis.first().and_then(RedisServer::pid)
    }
}

/// `bin`, if it exists or is a bare name to look up in `PATH`.
fn built(bin: &Path) -> anyhow::Result<&Path> {
    if !bin.exists() && bin.components().count() > 1 {
        bail!(
            "{} not found: build it first (see `just bench`)",
            bin.display()
        );
    }
    Ok(bin)
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
