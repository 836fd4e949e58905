//! Idle memory: the resident memory each idle, joined connection costs a node. RSS of every
//! node is read before the clients connect and again once it has settled with all of them
//! joined; the difference is divided by the node's connections.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::clients::fleet::{Connected, Fleet, Harness, sum_connects};
use crate::clients::proto::ConnectPlan;
use crate::deploy::Deployment;
use crate::measure::procfs::read_rss_kib;

/// One node's memory.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeMemory {
    /// Its pid.
    pub(crate) pid: u32,
    /// Idle connections it holds.
    pub(crate) conns: u64,
    /// RSS before any client, KiB.
    pub(crate) before_kib: u64,
    /// RSS with every client joined, settled, KiB.
    pub(crate) after_kib: u64,
    /// (after - before) / conns.
    pub(crate) kib_per_conn: f64,
}

/// The outcome of the idle measurement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IdleResult {
    /// Clients.
    pub(crate) clients: usize,
    /// Rooms.
    pub(crate) rooms: usize,
    /// Opening them.
    pub(crate) connect: Connected,
    /// Per node.
    pub(crate) nodes: Vec<NodeMemory>,
    /// All nodes' growth over all connections, KiB.
    pub(crate) kib_per_conn: f64,
    /// Redis's growth per connection, KiB, when the bench runs Redis.
    pub(crate) redis_kib_per_conn: Option<f64>,
    /// Seconds waited for RSS to settle.
    pub(crate) settle_secs: f64,
    /// Commands Redis (all shards) ran per second while every client sat idle, when the bench
    /// runs Redis: what idle users cost it (presence heartbeats and the like).
    pub(crate) redis_commands_per_sec: Option<f64>,
    /// The same, per 1,000 idle clients.
    pub(crate) redis_commands_per_sec_per_1000: Option<f64>,
}

/// How long Redis's commands are counted while everyone is idle: several heartbeats (5 s).
const REDIS_WINDOW: Duration = Duration::from_secs(20);

/// Measures `clients` idle connections over `rooms` on a fresh `deployment`.
pub(crate) async fn run(
    deployment: &Deployment,
    harness: &Harness,
    clients: usize,
    rooms: usize,
) -> anyhow::Result<IdleResult> {
    let pids = deployment.node_pids();
    if pids.len() != deployment.urls.len() {
        bail!("idle memory needs the pid of every node (--pid, in URL order)");
    }
    let redis = deployment.redis_pid();
    // Let the nodes finish starting before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_all(&pids)?;
    let redis_before = redis.map(read_rss_kib).transpose()?;
    let layout = harness.layout(clients, rooms, 0, deployment.urls.len());
    let mut fleet = Fleet::start(harness, &layout, &deployment.urls).await?;
    let connect = sum_connects(
        &fleet
            .connect(ConnectPlan {
                start_at_us: 0,
                max_in_flight: 500,
                timeout_ms: 60_000,
            })
            .await?,
    );
    let settle_start = Instant::now();
    let mut after = settle(&pids).await?;
    let settle_secs = settle_start.elapsed().as_secs_f64();
    let redis_after = redis.map(read_rss_kib).transpose()?;
    let redis_commands_per_sec = if deployment.redis_ports.is_empty() {
        None
    } else {
        let start = crate::measure::redis_stats::counters(&deployment.redis_ports).await?;
        tokio::time::sleep(REDIS_WINDOW).await;
        let end = crate::measure::redis_stats::counters(&deployment.redis_ports).await?;
        // Twenty more seconds of idling: the later, more settled memory reading.
        after = rss_all(&pids)?;
        Some(start.until(end).commands as f64 / REDIS_WINDOW.as_secs_f64())
    };
    fleet.stop().await;

    let nodes: Vec<NodeMemory> = pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let conns = connect.node_clients.get(i).copied().unwrap_or(0);
            NodeMemory {
                pid,
                conns,
                before_kib: before[i],
                after_kib: after[i],
                kib_per_conn: per_conn(before[i], after[i], conns),
            }
        })
        .collect();
    let kib_per_conn = per_conn(before.iter().sum(), after.iter().sum(), connect.ok);
    let redis_kib_per_conn = redis_before
        .zip(redis_after)
        .map(|(b, a)| per_conn(b, a, connect.ok));
    let redis_commands_per_sec_per_1000 =
        redis_commands_per_sec.map(|rate| rate * 1000.0 / connect.ok.max(1) as f64);
    Ok(IdleResult {
        clients,
        rooms,
        connect,
        nodes,
        kib_per_conn,
        redis_kib_per_conn,
        settle_secs,
        redis_commands_per_sec,
        redis_commands_per_sec_per_1000,
    })
}

fn per_conn(before: u64, after: u64, conns: u64) -> f64 {
    (after as f64 - before as f64) / conns.max(1) as f64
}

fn rss_all(pids: &[u32]) -> anyhow::Result<Vec<u64>> {
    pids.iter()
        .map(|&pid| read_rss_kib(pid).with_context(|| format!("RSS of pid {pid}")))
        .collect()
}

/// Waits at least 2 s, then until the total RSS moved less than 0.5 % over the last second
/// (15 s at most); returns the last reading.
async fn settle(pids: &[u32]) -> anyhow::Result<Vec<u64>> {
    let start = Instant::now();
    let mut history: Vec<u64> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_all(pids)?;
        history.push(now.iter().sum());
        let steady = history.len() >= 3 && {
            let recent = &history[history.len() - 3..];
            let (lo, hi) = (
                recent.iter().min().copied().unwrap_or(0),
                recent.iter().max().copied().unwrap_or(0),
            );
            (hi - lo) as f64 <= hi as f64 * 0.005
        };
        if (steady && start.elapsed() >= Duration::from_secs(2))
            || start.elapsed() >= Duration::from_secs(15)
        {
            return Ok(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_per_connection() {
        assert!((per_conn(10_000, 160_000, 10_000) - 15.0).abs() < 1e-9);
        assert!(per_conn(10_000, 9_000, 1000) < 0.0);
        assert!((per_conn(0, 5, 0) - 5.0).abs() < 1e-9);
    }
}
