//! The bench's Redis: starting a server or a cluster's masters, and reading what they did
//! (`INFO stats` counters), for the measurements that cost Redis work out per unit.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::procs::{Probe, Proc, free_port, wait_ready};

/// Starts `shards` redis-servers from `bin` (cluster-enabled masters if `cluster`, which then
/// get the slots); returns them and their ports.
pub(crate) async fn start(
    bin: &Path,
    cluster: bool,
    shards: usize,
    cpus: Option<&str>,
    dir: &Path,
) -> anyhow::Result<(Vec<Proc>, Vec<u16>)> {
    let (mut procs, mut ports) = (Vec::new(), Vec::new());
    for shard in 0..shards {
        let port = free_port()?;
        let (port_arg, dir_arg) = (port.to_string(), dir.to_string_lossy().into_owned());
        let config = format!("nodes-{port}.conf");
        let mut args = vec![
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir_arg,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ];
        if cluster {
            args.extend(["--cluster-enabled", "yes", "--cluster-config-file", &config]);
        }
        let role = if shards == 1 {
            "redis".to_owned()
        } else {
            format!("redis{}", shard + 1)
        };
        let mut proc = Proc::spawn(&role, bin, &args, &[], cpus, dir)?;
        wait_ready(&mut proc, port, Probe::RedisPing).await?;
        procs.push(proc);
        ports.push(port);
    }
    if cluster {
        create_cluster(&ports).await?;
    }
    Ok((procs, ports))
}

/// What Redis servers did so far, summed over them (`INFO stats`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct Counters {
    /// Commands run (a script counts once, plus each command it calls).
    pub(crate) commands: u64,
    /// Bytes received from clients.
    pub(crate) net_in: u64,
    /// Bytes sent to clients (replies and pub/sub pushes).
    pub(crate) net_out: u64,
}

impl Counters {
    /// What happened between `self` and the later `after`.
    pub(crate) fn until(self, after: Self) -> Self {
        Self {
            commands: after.commands.saturating_sub(self.commands),
            net_in: after.net_in.saturating_sub(self.net_in),
            net_out: after.net_out.saturating_sub(self.net_out),
        }
    }
}

/// The counters of the Redis servers on `ports`, through `redis-cli` (whose own `INFO` is not
/// counted).
pub(crate) async fn counters(ports: &[u16]) -> anyhow::Result<Counters> {
    let mut total = Counters::default();
    for port in ports {
        let output = tokio::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "INFO", "stats"])
            .output()
            .await
            .context("redis-cli INFO stats")?;
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .with_context(|| format!("no {name} from Redis on port {port}"))
        };
        total.commands += field("total_commands_processed")?.saturating_sub(1);
        total.net_in += field("total_net_input_bytes")?;
        total.net_out += field("total_net_output_bytes")?;
    }
    Ok(total)
}

/// Makes a Redis Cluster of the masters on `ports` (no replicas; any number of them, where
/// `redis-cli --cluster create` wants three) and waits until it serves.
pub(crate) async fn create_cluster(ports: &[u16]) -> anyhow::Result<()> {
    let cli = |port: u16, args: &[String]| -> anyhow::Result<()> {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .context("cannot run redis-cli")?;
        let reply = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || reply.starts_with("ERR") {
            anyhow::bail!("redis-cli {args:?} on port {port}: {reply}");
        }
        Ok(())
    };
    let count = ports.len() as u32;
    for (i, &port) in ports.iter().enumerate() {
        let i = i as u32;
        let (first, last) = (16384 * i / count, 16384 * (i + 1) / count - 1);
        cli(
            port,
            &[
                "cluster",
                "addslotsrange",
                &first.to_string(),
                &last.to_string(),
            ]
            .map(str::to_owned),
        )?;
        if i > 0 {
            cli(
                port,
                &["cluster", "meet", "127.0.0.1", &ports[0].to_string()].map(str::to_owned),
            )?;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for port in ports {
        loop {
            let info = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .context("cannot run redis-cli")?;
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("the Redis Cluster is not ready after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
