//! The standard suite (`skat-bench suite`, `just bench`): for each target (floor, embedded,
//! durable, redis), the chat shape at 80k and 160k deliveries/s, the busy room at three write
//! delays, the connection storm, idle memory and the most sends/s within a p99 bound; then one
//! table and one JSON file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{Common, Item, SuiteArgs};
use crate::clients::fleet::Harness;
use crate::deploy::{Deployment, TargetKind};
use crate::report::{self, Metric, Table, TargetResults};
use crate::scenarios::load::{LoadResult, Phase, Session, Shape};

/// The chat shape: 2000 clients in 20 rooms of 100, 10 % of them sending.
const CHAT: Shape = Shape {
    clients: 2000,
    rooms: 20,
    senders: 200,
};
/// The busy room: 500 clients in one room, 50 sending.
const BUSY: Shape = Shape {
    clients: 500,
    rooms: 1,
    senders: 50,
};
/// Write delays of the busy room, ms.
const BUSY_DELAYS: [u64; 3] = [0, 5, 20];
/// Rooms of the storm and the idle measurement.
const MANY_ROOMS: usize = 150;

/// Phase lengths.
#[derive(Debug, Clone, Copy, Serialize)]
struct Timing {
    #[serde(serialize_with = "crate::scenarios::load::secs")]
    warmup: Duration,
    #[serde(serialize_with = "crate::scenarios::load::secs")]
    duration: Duration,
    #[serde(serialize_with = "crate::scenarios::load::secs")]
    drain: Duration,
}

/// The table's sections: which rows each load shows.
fn sections() -> Vec<(String, Vec<Metric>)> {
    use Metric::*;
    let mut sections = vec![
        (
            "chat 80k".to_owned(),
            vec![
                Deliveries, CpuTotal, CpuUser, CpuKernel, P50, P99, LostLate, Evictions, ClientCpu,
                ClientLag, OtherCpu,
            ],
        ),
        (
            "chat 160k".to_owned(),
            vec![
                Deliveries, CpuTotal, P99, P999, Max, LostLate, Evictions, ClientCpu, ClientLag,
                OtherCpu,
            ],
        ),
    ];
    for delay in BUSY_DELAYS {
        sections.push((
            busy_label(delay),
            vec![CpuTotal, P99, LostLate, ClientCpu, OtherCpu],
        ));
    }
    sections
}

fn busy_label(delay: u64) -> String {
    format!("busy d={delay}ms")
}

/// What the JSON file holds.
#[derive(Debug, Serialize)]
struct SuiteReport<'a> {
    tool: &'static str,
    version: &'static str,
    started_unix: u64,
    wall_secs: f64,
    quick: bool,
    pinned: bool,
    server_cpus: Option<&'a str>,
    client_cpus: Option<&'a str>,
    skat_bin: String,
    floor_bin: String,
    redis_nodes: usize,
    body_bytes: usize,
    late_ms: u64,
    timing: Timing,
    host: Host,
    results: &'a [TargetResults],
    table: &'a Table,
}

#[derive(Debug, Serialize)]
struct Host {
    cpus: usize,
    kernel: String,
}

/// Runs the suite.
pub(crate) async fn run(args: SuiteArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_unix = crate::measure::clock::now_us() / 1_000_000;
    let common = &args.common;
    let pin = !args.no_pin;
    let harness = Harness::new(
        common.clients_per_worker,
        common.min_workers,
        pin.then(|| common.client_cpus.clone()),
    );
    let timing = if args.quick {
        Timing {
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(3),
            drain: Duration::from_secs(5),
        }
    } else {
        Timing {
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(10),
        }
    };
    let items = if args.only.is_empty() {
        vec![Item::Chat, Item::Busy, Item::Storm, Item::Idle, Item::Rate]
    } else {
        args.only.clone()
    };
    let targets = if args.targets.is_empty() {
        vec![
            TargetKind::Floor,
            TargetKind::Embedded,
            TargetKind::Durable,
            TargetKind::Redis,
        ]
    } else {
        args.targets.clone()
    };
    let suite = Suite {
        args: &args,
        harness: &harness,
        timing,
        pin,
        started,
    };
    let mut results = Vec::new();
    for &kind in &targets {
        let mut target = TargetResults::new(kind.name());
        for &item in &items {
            if let Err(err) = Box::pin(suite.item(kind, item, &mut target)).await {
                suite.log(&format!("{} {item:?} FAILED: {err:#}", kind.name()));
                target.failures.push(format!("{item:?}: {err:#}"));
            }
        }
        results.push(target);
    }

    let names: Vec<String> = results.iter().map(|r| r.target.clone()).collect();
    let table = Table::of(&names, &report::rows(&results, &sections()));
    let wall_secs = started.elapsed().as_secs_f64();
    let json = SuiteReport {
        tool: "skat-bench",
        version: env!("CARGO_PKG_VERSION"),
        started_unix,
        wall_secs,
        quick: args.quick,
        pinned: pin,
        server_cpus: pin.then_some(common.server_cpus.as_str()),
        client_cpus: pin.then_some(common.client_cpus.as_str()),
        skat_bin: common.skat_bin.display().to_string(),
        floor_bin: common.floor_bin.display().to_string(),
        redis_nodes: common.nodes,
        body_bytes: args.body,
        late_ms: args.late_ms,
        timing,
        host: Host {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        },
        results: &results,
        table: &table,
    };
    let out = common
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench/results.json"));
    report::emit(&table, &json, common.json, Some(&out))?;
    for target in &results {
        for failure in &target.failures {
            eprintln!("{}: {failure}", target.target);
        }
    }
    eprintln!("suite: {wall_secs:.0} s");
    Ok(())
}

struct Suite<'a> {
    args: &'a SuiteArgs,
    harness: &'a Harness,
    timing: Timing,
    pin: bool,
    started: Instant,
}

impl Suite<'_> {
    fn common(&self) -> &Common {
        &self.args.common
    }

    fn log(&self, line: &str) {
        eprintln!("[{:>4.0}s] {line}", self.started.elapsed().as_secs_f64());
    }

    async fn start(&self, kind: TargetKind, write_delay_ms: u64) -> anyhow::Result<Deployment> {
        Deployment::start(&self.common().server(kind, self.pin, write_delay_ms)).await
    }

    fn phase(&self, label: String, sends_per_sec: f64) -> Phase {
        Phase {
            label,
            sends_per_sec,
            body_bytes: self.args.body,
            warmup: self.timing.warmup,
            duration: self.timing.duration,
            drain: self.timing.drain,
            late_ms: self.args.late_ms,
        }
    }

    fn logged(&self, kind: TargetKind, result: LoadResult, into: &mut TargetResults) {
        self.log(&format!("{} {}", kind.name(), result.summary()));
        into.loads.push(result);
    }

    async fn item(
        &self,
        kind: TargetKind,
        item: Item,
        into: &mut TargetResults,
    ) -> anyhow::Result<()> {
        match item {
            Item::Chat => {
                let deployment = self.start(kind, 0).await?;
                let mut session = Session::open(&deployment, self.harness, CHAT, 0).await?;
                // 100 members per room: 800 sends/s are 80k deliveries/s.
                for (label, sends) in [("chat 80k", 800.0), ("chat 160k", 1600.0)] {
                    let result = session.run(&self.phase(label.to_owned(), sends)).await?;
                    self.logged(kind, result, into);
                }
                session.close().await;
            }
            Item::Busy => {
                for delay in BUSY_DELAYS {
                    let deployment = self.start(kind, delay).await?;
                    let mut session = Session::open(&deployment, self.harness, BUSY, delay).await?;
                    // 500 members: 320 sends/s are 160k deliveries/s.
                    let result = session.run(&self.phase(busy_label(delay), 320.0)).await?;
                    self.logged(kind, result, into);
                    session.close().await;
                }
            }
            Item::Storm => {
                let deployment = self.start(kind, 0).await?;
                let clients = self.args.storm_clients;
                let result = crate::scenarios::storm::run(
                    &deployment,
                    self.harness,
                    clients,
                    MANY_ROOMS,
                    Duration::from_secs(60),
                )
                .await?;
                self.log(&format!(
                    "{} storm: {} clients joined in {:.2} s ({} failed), SYN retransmits {}, listen overflows {}",
                    kind.name(),
                    result.connect.ok,
                    result.connect.seconds,
                    result.connect.failed,
                    result.tcp.syn_retrans,
                    result.tcp.listen_overflows
                ));
                into.storm = Some(result);
            }
            Item::Rate => {
                let deployment = self.start(kind, 0).await?;
                let phase = self.phase("rate".to_owned(), 0.0);
                let log = |line: &str| self.log(&format!("{} {line}", kind.name()));
                let result =
                    crate::scenarios::rate::run(&deployment, self.harness, &phase, &log).await?;
                self.log(&format!(
                    "{} rate: {:.0} sends/s with p99 < {:.0} ms (stopped: {})",
                    kind.name(),
                    result.max_sends_per_sec,
                    result.p99_bound_ms,
                    result.stopped
                ));
                into.rate = Some(result);
            }
            Item::Idle => {
                let deployment = self.start(kind, 0).await?;
                let result = crate::scenarios::idle::run(
                    &deployment,
                    self.harness,
                    self.args.idle_clients,
                    MANY_ROOMS,
                )
                .await?;
                self.log(&format!(
                    "{} idle: {:.1} KiB per connection over {} connections",
                    kind.name(),
                    result.kib_per_conn,
                    result.connect.ok
                ));
                into.idle = Some(result);
            }
        }
        Ok(())
    }
}
