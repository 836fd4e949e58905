//! What the bench's Redis servers did (their `INFO stats` counters), for the measurements that
//! cost Redis work out per unit. Starting them is the test harness's (`skat-testkit`).

use anyhow::Context as _;
use serde::Serialize;

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
