//! The per-unit figures the capacity model (`capacity`, `CAPACITY.md`) scales: what one
//! delivery, one message, one join, one idle user and one room cost a node and Redis, measured
//! on this box so the model is rerun, not retyped, when the code changes.
//!
//! - Two chat loads on two nodes sharing Redis, one with rooms of 100 and one with rooms of 2
//!   (every room spanning both nodes): node CPU is `per_message × messages × nodes + per_delivery
//!   × deliveries`, two equations for the two unknowns. Redis's CPU, commands and bytes per
//!   message, and the bytes a node writes per delivery, come from the same runs.
//! - A connection storm: Redis's commands, bytes and CPU per join.
//! - Two idle measurements, one with 50 times more rooms: memory per idle connection and per
//!   room, on a node and in Redis, and Redis's commands per idle user.
//! - Two simulated-node runs (`simnodes`), 10 and 40 nodes with the same traffic: Redis CPU per
//!   pub/sub push (a message to one more node) and Redis commands per idle node.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::{Common, UnitsArgs};
use crate::clients::fleet::Harness;
use crate::deploy::{Deployment, TargetKind};
use crate::measure::procfs::{clock_ticks, read_cpu, read_loopback_tx};
use crate::measure::redis_stats::counters;
use crate::scenarios::load::{LoadResult, Phase, Session, Shape};

/// The figures, each per one unit of work.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Units {
    /// Node CPU per delivery (a frame written to one client), µs.
    pub(crate) node_cpu_us_per_delivery: f64,
    /// Node CPU per message per node holding the room (script call or pub/sub read, decode,
    /// encode once), µs.
    pub(crate) node_cpu_us_per_message: f64,
    /// Bytes on the wire per delivery: the WebSocket frame with its TCP/IP headers and its
    /// share of the client's ACKs (loopback traffic of a load with rooms of 100, less Redis's).
    pub(crate) wire_bytes_per_delivery: f64,
    /// Node memory per idle joined connection, KiB.
    pub(crate) node_kib_per_conn: f64,
    /// Node memory per room with members, KiB.
    pub(crate) node_kib_per_room: f64,
    /// Redis CPU per message (script, stream, one publish), µs.
    pub(crate) redis_cpu_us_per_message: f64,
    /// Redis CPU per pub/sub push to one more node, µs.
    pub(crate) redis_cpu_us_per_push: f64,
    /// Redis commands per message (a script counts with each command it runs).
    pub(crate) redis_commands_per_message: f64,
    /// Bytes in and out of Redis per message, with two nodes subscribed.
    pub(crate) redis_bytes_per_message: f64,
    /// Redis CPU per join, µs.
    pub(crate) redis_cpu_us_per_join: f64,
    /// Redis commands per join.
    pub(crate) redis_commands_per_join: f64,
    /// Bytes in and out of Redis per join.
    pub(crate) redis_bytes_per_join: f64,
    /// Redis commands per idle user per minute.
    pub(crate) redis_commands_per_idle_user_per_min: f64,
    /// Redis commands per idle node per second (heartbeats, pub/sub pings).
    pub(crate) redis_commands_per_node_per_sec: f64,
    /// Redis memory per idle user (presence), KiB.
    pub(crate) redis_kib_per_user: f64,
    /// Redis memory per room (presence, index), KiB; history not counted.
    pub(crate) redis_kib_per_room: f64,
}

/// CPU ms of the processes whose role starts with `prefix`, from a load's accounting.
fn cpu_ms(load: &LoadResult, prefix: &str) -> f64 {
    load.server_cpu.as_ref().map_or(0.0, |cpu| {
        cpu.processes
            .iter()
            .filter(|(role, _, _)| role.starts_with(prefix))
            .map(|(_, user, system)| user + system)
            .sum()
    })
}

/// One chat load on a fresh two-node Redis deployment, with Redis's counters and the bytes the
/// nodes wrote over the whole run.
struct Measured {
    load: LoadResult,
    sends: f64,
    deliveries: f64,
    redis_commands: f64,
    redis_bytes: f64,
    /// Loopback bytes over the run, less Redis's.
    wire_bytes: f64,
}

async fn chat(
    common: &Common,
    harness: &Harness,
    clients: usize,
    rooms: usize,
    rate: f64,
) -> anyhow::Result<Measured> {
    let deployment = Deployment::start(&common.server(TargetKind::Redis, false, 0)).await?;
    let shape = Shape {
        clients,
        rooms,
        senders: rooms,
    };
    let mut session = Session::open(&deployment, harness, shape, 0).await?;
    let phase = Phase {
        label: format!("rooms of {}", clients / rooms),
        sends_per_sec: rate,
        body_bytes: 100,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(8),
        drain: Duration::from_secs(2),
        late_ms: 1000,
    };
    let (redis_before, wire_before) = (
        counters(&deployment.redis_ports).await?,
        read_loopback_tx()?,
    );
    let load = session.run(&phase).await?;
    let redis = redis_before.until(counters(&deployment.redis_ports).await?);
    let wire = read_loopback_tx()?.saturating_sub(wire_before);
    session.close().await;
    // Over the whole run (warm-up included), as the counters were.
    let sends = rate * (phase.warmup + phase.duration).as_secs_f64();
    Ok(Measured {
        sends,
        deliveries: sends * (clients / rooms) as f64,
        redis_commands: redis.commands as f64,
        redis_bytes: (redis.net_in + redis.net_out) as f64,
        wire_bytes: wire.saturating_sub(redis.net_in + redis.net_out) as f64,
        load,
    })
}

/// Measures every figure (about five minutes).
pub(crate) async fn measure(args: &UnitsArgs) -> anyhow::Result<Units> {
    let common = &args.common;
    let harness = Harness::new(common.clients_per_worker, common.min_workers, None);
    let mut units = Units::default();

    // Node CPU: big rooms (deliveries dominate) and pairs (messages dominate), both spanning
    // the two nodes.
    let big = chat(common, &harness, 2000, 20, 300.0).await?;
    let pairs = chat(common, &harness, 2000, 1000, 2000.0).await?;
    let measured = |m: &Measured| {
        let secs = m.load.phase.duration.as_secs_f64();
        let sends = m.load.sends_per_sec * secs;
        (
            sends * 2.0,
            m.load.received as f64,
            cpu_ms(&m.load, "node") * 1000.0,
        )
    };
    let (m1, d1, c1) = measured(&big);
    let (m2, d2, c2) = measured(&pairs);
    let det = m1 * d2 - m2 * d1;
    units.node_cpu_us_per_message = (c1 * d2 - c2 * d1) / det;
    units.node_cpu_us_per_delivery = (m1 * c2 - m2 * c1) / det;
    units.wire_bytes_per_delivery = big.wire_bytes / big.deliveries;
    let sends2 = pairs.load.sends_per_sec * pairs.load.phase.duration.as_secs_f64();
    units.redis_cpu_us_per_message = cpu_ms(&pairs.load, "redis") * 1000.0 / sends2;
    units.redis_commands_per_message = pairs.redis_commands / pairs.sends;
    units.redis_bytes_per_message = pairs.redis_bytes / pairs.sends;

    // Joins.
    let deployment = Deployment::start(&common.server(TargetKind::Redis, false, 0)).await?;
    let redis_pid = deployment.redis_pid();
    let cpu = |pid: Option<u32>| pid.map_or(Ok(0), |pid| read_cpu(pid).map(|t| t.user + t.system));
    let (before, cpu_before) = (counters(&deployment.redis_ports).await?, cpu(redis_pid)?);
    let storm =
        crate::scenarios::storm::run(&deployment, &harness, 5000, 500, Duration::from_secs(60))
            .await?;
    let joins = storm.connect.ok.max(1) as f64;
    let redis = before.until(counters(&deployment.redis_ports).await?);
    let ticks = cpu(redis_pid)?.saturating_sub(cpu_before) as f64;
    drop(deployment);
    units.redis_commands_per_join = redis.commands as f64 / joins;
    units.redis_bytes_per_join = (redis.net_in + redis.net_out) as f64 / joins;
    units.redis_cpu_us_per_join = ticks * 1e6 / clock_ticks() as f64 / joins;

    // Idle memory, per connection and per room.
    let harness = &harness;
    let idle = |rooms| async move {
        let deployment = Deployment::start(&common.server(TargetKind::Redis, false, 0)).await?;
        crate::scenarios::idle::run(&deployment, harness, 10_000, rooms).await
    };
    let few = idle(100).await?;
    let many = idle(5000).await?;
    let grown = |i: &crate::scenarios::idle::IdleResult| i.kib_per_conn * i.connect.ok as f64;
    let redis_grown = |i: &crate::scenarios::idle::IdleResult| {
        i.redis_kib_per_conn.unwrap_or(0.0) * i.connect.ok as f64
    };
    units.node_kib_per_room = (grown(&many) - grown(&few)) / (5000.0 - 100.0);
    units.node_kib_per_conn = few.kib_per_conn - units.node_kib_per_room * 100.0 / 10_000.0;
    units.redis_kib_per_room = (redis_grown(&many) - redis_grown(&few)) / (5000.0 - 100.0);
    units.redis_kib_per_user =
        few.redis_kib_per_conn.unwrap_or(0.0) - units.redis_kib_per_room * 100.0 / 10_000.0;
    units.redis_commands_per_idle_user_per_min =
        few.redis_commands_per_sec_per_1000.unwrap_or(0.0) * 60.0 / 1000.0;

    // Pub/sub pushes and idle nodes, from simulated nodes.
    let mix = crate::capacity::simnodes::Mix {
        users: 8000,
        rooms: 400,
        rate: 400,
        seconds: 10,
        shards: 1,
        body_bytes: 100,
    };
    let cpus = Some(common.server_cpus.as_str());
    let ten = crate::capacity::simnodes::run(&common.redis_bin, cpus, 10, &mix).await?;
    let forty = crate::capacity::simnodes::run(&common.redis_bin, cpus, 40, &mix).await?;
    let pushes = forty.node_deliveries_per_sec - ten.node_deliveries_per_sec;
    let idle_cores = forty.idle.cpu_cores - ten.idle.cpu_cores;
    let traffic_cores = forty.traffic.cpu_cores - ten.traffic.cpu_cores - idle_cores;
    units.redis_cpu_us_per_push = traffic_cores * 1e6 / pushes.max(1.0);
    units.redis_commands_per_node_per_sec = forty.idle.commands_per_sec / 40.0;
    Ok(units)
}
