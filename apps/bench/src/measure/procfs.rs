//! What `/proc` says about the processes the bench measures and about the machine: a process's
//! CPU time (`/proc/<pid>/stat`) and resident memory (`/proc/<pid>/status`), each CPU's busy
//! time (`/proc/stat`) and the kernel's TCP counters (`/proc/net/netstat`). Each is a pure parser
//! (tested on sample text) plus a reader of the live file. These are plain counters read before
//! and after a phase; the callers take the differences.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Serialize;

/// CPU time of a process, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CpuTicks {
    /// User mode (`utime`, field 14).
    pub(crate) user: u64,
    /// Kernel mode (`stime`, field 15).
    pub(crate) system: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> anyhow::Result<CpuTicks> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no ')' in stat")?;
    // After the name come field 3 (state) onwards: utime is field 14, stime field 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .context("stat has too few fields")?
            .parse()
            .with_context(|| format!("stat field {n}"))
    };
    Ok(CpuTicks {
        user: field(14)?,
        system: field(15)?,
    })
}

/// CPU time of `pid`.
pub(crate) fn read_cpu(pid: u32) -> anyhow::Result<CpuTicks> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat(&stat)
}

/// Bytes sent over the loopback interface so far, headers included (`/proc/net/dev`): on this
/// box, every byte between the bench's clients, the nodes and Redis.
pub(crate) fn read_loopback_tx() -> anyhow::Result<u64> {
    let dev = std::fs::read_to_string("/proc/net/dev").context("cannot read /proc/net/dev")?;
    dev.lines()
        .find_map(|line| line.trim_start().strip_prefix("lo:"))
        .and_then(|counters| counters.split_whitespace().nth(8)?.parse().ok())
        .context("no lo line in /proc/net/dev")
}

/// Parses `VmRSS` (KiB) out of `/proc/<pid>/status`.
fn parse_vmrss_kib(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    line.split_whitespace()
        .nth(1)
        .context("empty VmRSS line")?
        .parse()
        .context("VmRSS value")
}

/// Resident memory of `pid`, in KiB.
pub(crate) fn read_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vmrss_kib(&status)
}

/// The kernel's TCP counters the storm reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct TcpCounters {
    /// `TcpExt: TCPSynRetrans`: SYNs sent again (a SYN or its answer was dropped).
    pub(crate) syn_retrans: u64,
    /// `TcpExt: ListenOverflows`: connections dropped because an accept queue was full.
    pub(crate) listen_overflows: u64,
    /// `TcpExt: ListenDrops`: every SYN a listener dropped.
    pub(crate) listen_drops: u64,
}

impl TcpCounters {
    /// Counts from `before` to `self`.
    pub(crate) fn since(self, before: Self) -> Self {
        Self {
            syn_retrans: self.syn_retrans.saturating_sub(before.syn_retrans),
            listen_overflows: self
                .listen_overflows
                .saturating_sub(before.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(before.listen_drops),
        }
    }
}

/// Parses `/proc/net/netstat`: lines come in pairs, names then values, per prefix.
fn parse_netstat(text: &str) -> anyhow::Result<TcpCounters> {
    let mut values: HashMap<&str, u64> = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, nums] = pair else { continue };
        let (Some(names), Some(nums)) =
            (names.strip_prefix("TcpExt:"), nums.strip_prefix("TcpExt:"))
        else {
            continue;
        };
        for (name, num) in names.split_whitespace().zip(nums.split_whitespace()) {
            values.insert(name, num.parse().with_context(|| format!("TcpExt {name}"))?);
        }
    }
    let get = |name: &str| {
        values
            .get(name)
            .copied()
            .with_context(|| format!("no TcpExt {name}"))
    };
    Ok(TcpCounters {
        syn_retrans: get("TCPSynRetrans")?,
        listen_overflows: get("ListenOverflows")?,
        listen_drops: get("ListenDrops").unwrap_or(0),
    })
}

/// The kernel's TCP counters now.
pub(crate) fn read_tcp_counters() -> anyhow::Result<TcpCounters> {
    let text =
        std::fs::read_to_string("/proc/net/netstat").context("cannot read /proc/net/netstat")?;
    parse_netstat(&text)
}

/// Busy time of one CPU from `/proc/stat`, in clock ticks: everything but idle and iowait
/// (user, nice, system, irq, softirq and steal: time the measured processes could not have).
fn parse_cpu_busy(stat: &str) -> anyhow::Result<BTreeMap<usize, u64>> {
    let mut busy = BTreeMap::new();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|f| f.strip_prefix("cpu")) else {
            continue;
        };
        let Ok(index) = cpu.parse::<usize>() else {
            continue; // the "cpu" total line
        };
        let values: Vec<u64> = fields
            .take(8)
            .map(|v| v.parse().with_context(|| format!("/proc/stat cpu{index}")))
            .collect::<anyhow::Result<_>>()?;
        let [user, nice, system, _idle, _iowait, irq, softirq, steal] = values[..] else {
            bail!("/proc/stat cpu{index} has too few fields");
        };
        busy.insert(index, user + nice + system + irq + softirq + steal);
    }
    if busy.is_empty() {
        bail!("no cpuN lines in /proc/stat");
    }
    Ok(busy)
}

/// Busy ticks of every CPU now.
pub(crate) fn read_cpu_busy() -> anyhow::Result<BTreeMap<usize, u64>> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    parse_cpu_busy(&stat)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux if that fails).
pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 731 264 0 0 20 0 3 0 \
                    100 200000 500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(
            parse_stat(stat).unwrap(),
            CpuTicks {
                user: 731,
                system: 264
            }
        );
        assert!(parse_stat("12 (x) S 1").is_err());
        let own = read_cpu(std::process::id()).unwrap();
        assert!(own.user + own.system < u64::MAX);
    }

    #[test]
    fn vmrss() {
        let status = "Name:\tskat-server\nVmPeak:\t  100 kB\nVmRSS:\t   23456 kB\nThreads: 3\n";
        assert_eq!(parse_vmrss_kib(status).unwrap(), 23456);
        assert!(parse_vmrss_kib("Name: x\n").is_err());
        assert!(read_rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn netstat_pairs() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                    TcpExt: 0 12 15 7\n\
                    IpExt: InNoRoutes TCPSynRetrans\n\
                    IpExt: 0 999\n";
        let c = parse_netstat(text).unwrap();
        assert_eq!(
            c,
            TcpCounters {
                syn_retrans: 7,
                listen_overflows: 12,
                listen_drops: 15
            }
        );
        let later = TcpCounters {
            syn_retrans: 10,
            listen_overflows: 12,
            listen_drops: 20,
        };
        assert_eq!(later.since(c).syn_retrans, 3);
        assert!(parse_netstat("IpExt: a\nIpExt: 1\n").is_err());
        read_tcp_counters().unwrap();
    }

    #[test]
    fn cpu_busy_per_cpu() {
        let stat = "cpu  270 0 59 34188 820 0 167 5 0 0\n\
                    cpu0 100 1 20 17004 268 2 10 3 0 0\n\
                    cpu1 136 0 33 17184 552 0 3 0 0 0\n\
                    intr 6435195 0 0\n";
        let busy = parse_cpu_busy(stat).unwrap();
        assert_eq!(busy.len(), 2);
        assert_eq!(busy[&0], 100 + 1 + 20 + 2 + 10 + 3);
        assert_eq!(busy[&1], 136 + 33 + 3);
        assert!(parse_cpu_busy("intr 1 2\n").is_err());
        assert!(!read_cpu_busy().unwrap().is_empty());
    }
}
