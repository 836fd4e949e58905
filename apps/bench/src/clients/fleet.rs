//! The coordinator's side of the client workers: how many to start, which loopback source
//! address each one binds its sockets to, starting them (`skat-bench worker`, pinned with
//! `taskset` if asked) and asking all of them the same thing over their stdin and stdout.

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::clients::proto::{
    Command, ConnectPlan, ConnectReport, Layout, Reply, Setup, WorkerReport,
};

/// Most clients one worker may hold: each is a socket, and a process may open 20,000 files.
pub(crate) const MAX_CLIENTS_PER_WORKER: usize = 18_000;

/// How the client side is run, shared by every measurement of one bench invocation.
#[derive(Debug)]
pub(crate) struct Harness {
    /// Clients per worker process (at most [`MAX_CLIENTS_PER_WORKER`]).
    pub(crate) clients_per_worker: usize,
    /// Fewest worker processes.
    pub(crate) min_workers: usize,
    /// CPUs for the workers (`taskset -c`), if pinned.
    pub(crate) cpus: Option<String>,
    /// Clock ticks per second of `/proc/<pid>/stat`.
    pub(crate) ticks_per_sec: u64,
    /// Unique per invocation: part of every name, room and nonce.
    run_id: u32,
    /// Measurements so far, so each has its own names and rooms.
    tests: Cell<u32>,
    /// Source addresses handed out so far.
    sources: Cell<u32>,
}

impl Harness {
    /// A harness with a fresh run id.
    pub(crate) fn new(clients_per_worker: usize, min_workers: usize, cpus: Option<String>) -> Self {
        let now = crate::measure::clock::now_us();
        let run_id = (now ^ (u64::from(std::process::id()) << 24)) as u32;
        Self {
            clients_per_worker: clients_per_worker.clamp(1, MAX_CLIENTS_PER_WORKER),
            min_workers: min_workers.max(1),
            cpus,
            ticks_per_sec: crate::measure::procfs::clock_ticks(),
            run_id,
            tests: Cell::new(0),
            // Spread consecutive invocations over different addresses as well.
            sources: Cell::new(run_id % 4000),
        }
    }

    /// The layout of a new measurement: unique names, enough workers.
    pub(crate) fn layout(
        &self,
        clients: usize,
        rooms: usize,
        senders: usize,
        nodes: usize,
    ) -> Layout {
        let test = self.tests.get() + 1;
        self.tests.set(test);
        let workers = clients
            .div_ceil(self.clients_per_worker)
            .max(self.min_workers)
            .min(clients.max(1));
        Layout {
            clients,
            rooms: rooms.max(1),
            senders: senders.min(clients),
            nodes: nodes.max(1),
            workers,
            prefix: format!("b{:08x}t{test}", self.run_id),
        }
    }

    /// A loopback address no other worker of this invocation uses: 127.0.x.y from 127.0.0.2
    /// on (ephemeral ports are per source address, 28,000 of them).
    fn next_source(&self) -> Ipv4Addr {
        let k = self.sources.get();
        self.sources.set(k + 1);
        source_address(k)
    }
}

/// The `k`-th client source address: 127.0.0.2 ... 127.0.0.251, 127.0.1.2 ...
pub(crate) fn source_address(k: u32) -> Ipv4Addr {
    let k = k % (250 * 250);
    Ipv4Addr::new(127, 0, (k / 250) as u8, (k % 250 + 2) as u8)
}

struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// The running workers of one measurement; killed when dropped.
pub(crate) struct Fleet {
    workers: Vec<WorkerProc>,
}

impl Fleet {
    /// Starts `layout.workers` workers and sets them up for `urls`.
    pub(crate) async fn start(
        harness: &Harness,
        layout: &Layout,
        urls: &[String],
    ) -> anyhow::Result<Self> {
        // The coordinator's own binary, even if a rebuild replaced the file since it started.
        let exe = std::path::PathBuf::from(format!("/proc/{}/exe", std::process::id()));
        if !exe.exists() {
            bail!("cannot find the bench's own binary at {}", exe.display());
        }
        let mut workers = Vec::new();
        for _ in 0..layout.workers {
            let mut command = match &harness.cpus {
                Some(cpus) => {
                    let mut c = tokio::process::Command::new("taskset");
                    c.arg("-c").arg(cpus).arg(&exe);
                    c
                }
                None => tokio::process::Command::new(&exe),
            };
            let mut child = command
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker")?;
            let stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            workers.push(WorkerProc {
                child,
                stdin,
                stdout: BufReader::new(stdout).lines(),
            });
        }
        let mut fleet = Self { workers };
        let setups = (0..layout.workers)
            .map(|worker| {
                Command::Setup(Setup {
                    worker,
                    layout: layout.clone(),
                    urls: urls.to_vec(),
                    sources: vec![harness.next_source()],
                })
            })
            .collect();
        for reply in fleet.ask_each(setups, Duration::from_secs(30)).await? {
            if !matches!(reply, Reply::Ready) {
                bail!("unexpected answer to setup: {reply:?}");
            }
        }
        Ok(fleet)
    }

    /// The workers' pids (for their CPU time).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    /// Sends one command to each worker, then reads each one's answer.
    pub(crate) async fn ask_each(
        &mut self,
        commands: Vec<Command>,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Reply>> {
        for (worker, command) in self.workers.iter_mut().zip(&commands) {
            let mut line = serde_json::to_vec(command).context("encode a command")?;
            line.push(b'\n');
            worker
                .stdin
                .write_all(&line)
                .await
                .context("a worker is gone")?;
        }
        let read = async {
            let mut replies = Vec::new();
            for worker in &mut self.workers {
                let line = worker
                    .stdout
                    .next_line()
                    .await
                    .context("cannot read a worker")?
                    .context("a worker exited (see its errors above)")?;
                let reply: Reply = serde_json::from_str(&line)
                    .with_context(|| format!("bad answer from a worker: {line}"))?;
                if let Reply::Error { message } = reply {
                    bail!("worker: {message}");
                }
                replies.push(reply);
            }
            Ok(replies)
        };
        tokio::time::timeout(timeout, read)
            .await
            .context("the workers did not answer in time")?
    }

    /// Sends the same command to every worker.
    pub(crate) async fn ask_all(
        &mut self,
        command: &Command,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Reply>> {
        let commands = vec![command.clone(); self.workers.len()];
        self.ask_each(commands, timeout).await
    }

    /// Opens every client; returns each worker's outcome.
    pub(crate) async fn connect(
        &mut self,
        plan: ConnectPlan,
    ) -> anyhow::Result<Vec<ConnectReport>> {
        let wait = Duration::from_millis(plan.timeout_ms) * 2 + Duration::from_secs(10);
        let replies = self.ask_all(&Command::Connect(plan), wait).await?;
        replies
            .into_iter()
            .map(|r| match r {
                Reply::Connected(report) => Ok(report),
                other => bail!("unexpected answer to connect: {other:?}"),
            })
            .collect()
    }

    /// Each worker's counters.
    pub(crate) async fn reports(&mut self) -> anyhow::Result<Vec<WorkerReport>> {
        let replies = self
            .ask_all(&Command::Report, Duration::from_secs(30))
            .await?;
        replies
            .into_iter()
            .map(|r| match r {
                Reply::Report(report) => Ok(report),
                other => bail!("unexpected answer to report: {other:?}"),
            })
            .collect()
    }

    /// Asks the workers to exit, then kills what is left.
    pub(crate) async fn stop(mut self) {
        for worker in &mut self.workers {
            let _ = worker.stdin.write_all(b"{\"cmd\":\"quit\"}\n").await;
        }
        for worker in &mut self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(5), worker.child.wait()).await;
        }
    }
}

/// The outcome of opening every client, over all workers.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Connected {
    /// Clients joined.
    pub(crate) ok: u64,
    /// Clients that failed.
    pub(crate) failed: u64,
    /// The first failure.
    pub(crate) first_error: Option<String>,
    /// From the common start to the last client joined, in seconds.
    pub(crate) seconds: f64,
    /// Joined clients per node.
    pub(crate) node_clients: Vec<u64>,
    /// Per client, from starting to connect to `joined` (ms): p50, p99, max.
    pub(crate) setup_ms: crate::measure::percentiles::Percentiles,
}

/// Sums the workers' connect reports.
pub(crate) fn sum_connects(reports: &[ConnectReport]) -> Connected {
    let mut out = Connected::default();
    let mut times = crate::measure::hist::Histogram::default();
    let start = reports.iter().map(|r| r.started_at_us).min().unwrap_or(0);
    let end = reports.iter().map(|r| r.done_at_us).max().unwrap_or(0);
    for r in reports {
        out.ok += r.ok;
        out.failed += r.failed;
        if out.first_error.is_none() {
            out.first_error.clone_from(&r.first_error);
        }
        if out.node_clients.len() < r.node_clients.len() {
            out.node_clients.resize(r.node_clients.len(), 0);
        }
        for (sum, n) in out.node_clients.iter_mut().zip(&r.node_clients) {
            *sum += n;
        }
        times.merge(&r.setup_times);
    }
    out.seconds = end.saturating_sub(start) as f64 / 1e6;
    out.setup_ms = crate::measure::percentiles::Percentiles::of(&times);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_skip_the_server_address() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_address(249), Ipv4Addr::new(127, 0, 0, 251));
        assert_eq!(source_address(250), Ipv4Addr::new(127, 0, 1, 2));
        assert!((0..70_000).all(|k| source_address(k).is_loopback()));
    }

    #[test]
    fn layouts_are_unique_and_sized() {
        let h = Harness::new(5000, 2, None);
        let a = h.layout(15_000, 150, 0, 1);
        let b = h.layout(2000, 20, 200, 2);
        assert_ne!(a.prefix, b.prefix);
        assert_eq!(a.workers, 3);
        assert_eq!(b.workers, 2);
        assert_eq!(h.layout(1, 1, 1, 1).workers, 1);
    }
}
