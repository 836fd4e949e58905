//! The command line: `suite`, `load`, `storm`, `idle`, and the hidden `worker`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::deploy::{ServerSpec, TargetKind};

/// Skat's load and benchmark tool.
///
/// It starts what it measures (floor, one Skat node with the embedded broker, or N Skat nodes
/// with their own redis-server) or targets given URLs, drives them from several client worker
/// processes bound to loopback addresses 127.0.0.2, 127.0.0.3, ..., and reports deliveries per
/// second, end-to-end latency, lost and late messages, evictions and the server's CPU per
/// delivery (user and kernel, from `/proc/<pid>/stat`). Run it from the workspace root, where the
/// default binary paths point (`just bench` builds them and runs the suite).
#[derive(Debug, Parser)]
#[command(name = "skat-bench", version)]
pub(crate) struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The standard suite over floor, embedded, durable and redis: a table on stdout, JSON in
    /// target/bench/results.json.
    Suite(SuiteArgs),
    /// One load measurement: N clients over R rooms, S senders at a total rate.
    Load(LoadArgs),
    /// A connection storm: N clients connect, say hello and join at once.
    Storm(StormArgs),
    /// Memory per idle joined connection.
    Idle(IdleArgs),
    /// Redis's load as the number of nodes grows, with simulated nodes (real broker clients,
    /// no WebSockets) on a Redis Cluster.
    Simnodes(SimArgs),
    /// The per-unit figures of the capacity model (CPU per delivery, memory per connection,
    /// Redis work per message...), measured on this box (about five minutes).
    Units(UnitsArgs),
    /// The capacity model: what N users need, scaled from measured units (see CAPACITY.md).
    Capacity(CapacityArgs),
    /// (internal) A client worker, driven over stdin and stdout by the coordinator.
    #[command(hide = true)]
    Worker,
}

/// Options every command shares.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    /// The skat-server binary to start (e.g. a frozen baseline to compare with).
    #[arg(
        long,
        env = "SKAT_BENCH_SKAT_BIN",
        default_value = "target/release/skat-server"
    )]
    pub(crate) skat_bin: PathBuf,
    /// The floor binary to start.
    #[arg(long, default_value = "target/floor/release/floor")]
    pub(crate) floor_bin: PathBuf,
    /// The redis-server binary to start for the redis target.
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_bin: PathBuf,
    /// Skat nodes of the redis and cluster targets.
    #[arg(long, default_value_t = 2)]
    pub(crate) nodes: usize,
    /// Masters (shards) of the cluster target's Redis Cluster.
    #[arg(long, default_value_t = 3)]
    pub(crate) shards: usize,
    /// CPUs of the servers and Redis when pinned (taskset -c).
    #[arg(long, default_value = "0")]
    pub(crate) server_cpus: String,
    /// CPUs of the client workers when pinned (taskset -c).
    #[arg(long, default_value = "1")]
    pub(crate) client_cpus: String,
    /// Clients per worker process (a process may hold at most ~19,000 sockets).
    #[arg(long, default_value_t = 5000)]
    pub(crate) clients_per_worker: usize,
    /// Fewest worker processes.
    #[arg(long, default_value_t = 2)]
    pub(crate) min_workers: usize,
    /// Listen backlog asked of Skat nodes (SKAT_LISTEN_BACKLOG).
    #[arg(long, default_value_t = 4096)]
    pub(crate) backlog: u32,
    /// Print the results as JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the JSON results to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

impl Common {
    /// How to start a target of `kind`.
    pub(crate) fn server(&self, kind: TargetKind, pin: bool, write_delay_ms: u64) -> ServerSpec {
        ServerSpec {
            kind,
            nodes: self.nodes,
            shards: self.shards,
            skat_bin: self.skat_bin.clone(),
            floor_bin: self.floor_bin.clone(),
            redis_bin: self.redis_bin.clone(),
            cpus: pin.then(|| self.server_cpus.clone()),
            write_delay_ms,
            backlog: self.backlog,
        }
    }
}

/// The suite's measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Item {
    /// 2000 clients in 20 rooms of 100 at 80k, then 160k deliveries/s.
    Chat,
    /// 500 clients in one room at 160k deliveries/s, write delay 0, 5 and 20 ms.
    Busy,
    /// 15000 clients connecting and joining at once.
    Storm,
    /// 15000 idle joined connections in 150 rooms.
    Idle,
    /// The most sends/s with p99 under 50 ms: 1000 clients in rooms of two, all sending, at
    /// rising rates.
    Rate,
}

/// `skat-bench suite`.
#[derive(Debug, Args)]
pub(crate) struct SuiteArgs {
    /// Shared options.
    #[command(flatten)]
    pub(crate) common: Common,
    /// Shorter phases (1 s warmup, 3 s measured) for a quick look.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Only these measurements (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) only: Vec<Item>,
    /// Only these targets (comma-separated; default floor,embedded,durable,redis).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) targets: Vec<TargetKind>,
    /// Do not pin servers and clients to separate CPUs.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) body: usize,
    /// A delivery later than this (ms) counts as late.
    #[arg(long, default_value_t = 1000)]
    pub(crate) late_ms: u64,
    /// Clients of the storm.
    #[arg(long, default_value_t = 15_000)]
    pub(crate) storm_clients: usize,
    /// Connections of the idle measurement.
    #[arg(long, default_value_t = 15_000)]
    pub(crate) idle_clients: usize,
}

/// Which server to measure, for the single commands.
#[derive(Debug, Clone, Args)]
pub(crate) struct TargetArgs {
    /// What to start and measure.
    #[arg(long, value_enum, default_value = "embedded")]
    pub(crate) target: TargetKind,
    /// Measure running servers instead (comma-separated ws:// URLs, one per node).
    #[arg(long, value_delimiter = ',')]
    pub(crate) url: Vec<String>,
    /// With --url: pids whose CPU (and, one per URL, memory) to account for.
    #[arg(long, value_delimiter = ',')]
    pub(crate) pid: Vec<u32>,
    /// Pin the servers and the clients to separate CPUs (--server-cpus, --client-cpus).
    #[arg(long)]
    pub(crate) pin: bool,
    /// The servers' write delay (flush window), ms.
    #[arg(long, default_value_t = 0)]
    pub(crate) write_delay_ms: u64,
}

/// `skat-bench load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Shared options.
    #[command(flatten)]
    pub(crate) common: Common,
    /// The target.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// Clients.
    #[arg(long, default_value_t = 2000)]
    pub(crate) clients: usize,
    /// Rooms (clients join them round-robin).
    #[arg(long, default_value_t = 20)]
    pub(crate) rooms: usize,
    /// Clients that send.
    #[arg(long, default_value_t = 200)]
    pub(crate) senders: usize,
    /// Messages sent per second over all senders (deliveries/s = this × room size).
    #[arg(long, default_value_t = 800.0)]
    pub(crate) rate: f64,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) body: usize,
    /// Seconds of sending before the measurement.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// Seconds of measured sending.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Longest wait (s) for the last deliveries.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) drain: f64,
    /// A delivery later than this (ms) counts as late.
    #[arg(long, default_value_t = 1000)]
    pub(crate) late_ms: u64,
}

/// `skat-bench storm`.
#[derive(Debug, Args)]
pub(crate) struct StormArgs {
    /// Shared options.
    #[command(flatten)]
    pub(crate) common: Common,
    /// The target.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// Clients.
    #[arg(long, default_value_t = 15_000)]
    pub(crate) clients: usize,
    /// Rooms.
    #[arg(long, default_value_t = 150)]
    pub(crate) rooms: usize,
    /// Seconds a client may take to join.
    #[arg(long, default_value_t = 60)]
    pub(crate) timeout: u64,
}

/// `skat-bench idle`.
#[derive(Debug, Args)]
pub(crate) struct IdleArgs {
    /// Shared options.
    #[command(flatten)]
    pub(crate) common: Common,
    /// The target.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// Connections.
    #[arg(long, default_value_t = 15_000)]
    pub(crate) clients: usize,
    /// Rooms.
    #[arg(long, default_value_t = 150)]
    pub(crate) rooms: usize,
}

/// `skat-bench simnodes`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Node counts to measure, one fresh cluster each.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100,200")]
    pub(crate) nodes: Vec<usize>,
    /// Cluster masters.
    #[arg(long, default_value_t = 3)]
    pub(crate) shards: usize,
    /// Users, each online in one room, spread over the nodes.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) users: usize,
    /// Rooms.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rooms: usize,
    /// Messages per second over all rooms.
    #[arg(long, default_value_t = 500)]
    pub(crate) rate: u64,
    /// Seconds of each window (idle, then traffic).
    #[arg(long, default_value_t = 15)]
    pub(crate) seconds: u64,
    /// Body bytes of each message.
    #[arg(long, default_value_t = 100)]
    pub(crate) body: usize,
    /// The redis-server binary.
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_bin: PathBuf,
    /// CPUs of the Redis processes (taskset -c); the simulated nodes run in this process.
    #[arg(long, default_value = "0")]
    pub(crate) redis_cpus: String,
    /// Also write the JSON results to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// `skat-bench units`.
#[derive(Debug, Args)]
pub(crate) struct UnitsArgs {
    /// Shared options (binaries; --out writes the units as JSON).
    #[command(flatten)]
    pub(crate) common: Common,
}

/// `skat-bench capacity`.
#[derive(Debug, Args)]
pub(crate) struct CapacityArgs {
    /// The units `skat-bench units --out` wrote.
    #[arg(long, default_value = "target/bench/units.json")]
    pub(crate) units: PathBuf,
    /// Deployment sizes, in concurrent users.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000,10000000")]
    pub(crate) users: Vec<f64>,
    /// Rooms each user is in.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) rooms_per_user: f64,
    /// Members of an average room.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) room_size: f64,
    /// Messages each user sends per minute.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) messages_per_user_per_min: f64,
    /// Average connection life in minutes (each reconnect rejoins the user's rooms).
    #[arg(long, default_value_t = 30.0)]
    pub(crate) session_minutes: f64,
    /// Cores of one node.
    #[arg(long, default_value_t = 8.0)]
    pub(crate) node_cores: f64,
    /// Memory of one node, GiB.
    #[arg(long, default_value_t = 16.0)]
    pub(crate) node_mem_gib: f64,
    /// Connections one node may hold (its open-file limit).
    #[arg(long, default_value_t = 100_000.0)]
    pub(crate) conns_per_node: f64,
    /// Share of each resource planned to be used.
    #[arg(long, default_value_t = 0.6)]
    pub(crate) utilization: f64,
    /// Members of the busiest room.
    #[arg(long, default_value_t = 5000.0)]
    pub(crate) hot_room_size: f64,
    /// Messages per second in the busiest room.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) hot_room_rate: f64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn suite_selection() {
        let cli = Cli::try_parse_from([
            "skat-bench",
            "suite",
            "--quick",
            "--only",
            "chat,busy",
            "--targets",
            "floor,embedded",
            "--skat-bin",
            "/tmp/skat-baseline/skat-server",
        ])
        .unwrap();
        let Command::Suite(args) = cli.command else {
            panic!("not a suite");
        };
        assert!(args.quick);
        assert_eq!(args.only, [Item::Chat, Item::Busy]);
        assert_eq!(args.targets, [TargetKind::Floor, TargetKind::Embedded]);
        assert_eq!(
            args.common.skat_bin,
            PathBuf::from("/tmp/skat-baseline/skat-server")
        );
    }
}
