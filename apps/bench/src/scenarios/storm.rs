//! Connection storm: N clients (over all workers) start connecting, upgrading, saying hello and
//! joining at the same instant. Reports the time until the last one has `joined`, the spread of
//! per-client times, and what the kernel counted meanwhile (SYN retransmits, listen overflows).

use std::time::Duration;

use serde::Serialize;

use crate::clients::fleet::{Connected, Fleet, Harness, sum_connects};
use crate::clients::proto::ConnectPlan;
use crate::deploy::Deployment;
use crate::measure::clock::now_us;
use crate::measure::procfs::{TcpCounters, read_tcp_counters};

/// The outcome of a storm.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StormResult {
    /// Clients.
    pub(crate) clients: usize,
    /// Rooms they joined, round-robin.
    pub(crate) rooms: usize,
    /// Joined, failed, total time and per-client times.
    pub(crate) connect: Connected,
    /// What `/proc/net/netstat` counted during the storm (the whole machine).
    pub(crate) tcp: TcpCounters,
}

/// Runs a storm of `clients` over `rooms` against a fresh `deployment`.
pub(crate) async fn run(
    deployment: &Deployment,
    harness: &Harness,
    clients: usize,
    rooms: usize,
    timeout: Duration,
) -> anyhow::Result<StormResult> {
    let layout = harness.layout(clients, rooms, 0, deployment.urls.len());
    let mut fleet = Fleet::start(harness, &layout, &deployment.urls).await?;
    let before = read_tcp_counters()?;
    let reports = fleet
        .connect(ConnectPlan {
            // Time for every worker to get the command and wait for the same instant.
            start_at_us: now_us() + 500_000,
            max_in_flight: 0,
            timeout_ms: timeout.as_millis() as u64,
        })
        .await?;
    let tcp = read_tcp_counters()?.since(before);
    fleet.stop().await;
    Ok(StormResult {
        clients,
        rooms,
        connect: sum_connects(&reports),
        tcp,
    })
}
