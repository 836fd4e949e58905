//! Load: N clients over R rooms (spread over the nodes and the workers), S of them sending at a
//! total rate. A warmup, then a measured send phase whose messages are counted at every
//! receiver, then a drain. Server CPU is read from `/proc/<pid>/stat` at the start and the end
//! of the measured phase only, and divided by the measured deliveries.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::clients::fleet::{Connected, Fleet, Harness, sum_connects};
use crate::clients::proto::{Command, ConnectPlan, Layout, RunPlan};
use crate::deploy::{Deployment, parse_cpu_list};
use crate::measure::clock::{now_us, sleep_until_us};
use crate::measure::hist::Histogram;
use crate::measure::percentiles::Percentiles;
use crate::measure::procfs::{CpuTicks, read_cpu, read_cpu_busy};

/// Who is connected.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Shape {
    /// Clients.
    pub(crate) clients: usize,
    /// Rooms (clients join them round-robin).
    pub(crate) rooms: usize,
    /// Clients that send.
    pub(crate) senders: usize,
}

/// One measured send phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Phase {
    /// Its name in the table (`chat 80k`, ...).
    pub(crate) label: String,
    /// Messages sent per second, over all senders.
    pub(crate) sends_per_sec: f64,
    /// Bytes per message body.
    pub(crate) body_bytes: usize,
    /// Sending before the measurement.
    #[serde(serialize_with = "secs")]
    pub(crate) warmup: Duration,
    /// The measured sending.
    #[serde(serialize_with = "secs")]
    pub(crate) duration: Duration,
    /// Longest wait for the last deliveries after sending stops.
    #[serde(serialize_with = "secs")]
    pub(crate) drain: Duration,
    /// A delivery slower than this is late.
    pub(crate) late_ms: u64,
}

/// Durations in the JSON are seconds.
pub(crate) fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Server CPU over the measured phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CpuUse {
    /// User-mode µs per measured delivery.
    pub(crate) user_us_per_delivery: f64,
    /// Kernel-mode µs per measured delivery.
    pub(crate) system_us_per_delivery: f64,
    /// Both.
    pub(crate) total_us_per_delivery: f64,
    /// Average cores busy.
    pub(crate) cores: f64,
    /// Per process: role, user ms, kernel ms.
    pub(crate) processes: Vec<(String, f64, f64)>,
}

/// The outcome of one phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadResult {
    /// The phase's label.
    pub(crate) label: String,
    /// Who was connected.
    pub(crate) shape: Shape,
    /// The phase as asked.
    pub(crate) phase: Phase,
    /// The flush window the servers ran with, in ms.
    pub(crate) write_delay_ms: u64,
    /// Opening the clients.
    pub(crate) connect: Connected,
    /// Messages sent per second in the measured phase.
    pub(crate) sends_per_sec: f64,
    /// Deliveries the measured messages should have caused (each send × its room's members).
    pub(crate) expected: u64,
    /// Measured deliveries received.
    pub(crate) received: u64,
    /// `expected - received` after the drain (see `drain_end`).
    pub(crate) lost: u64,
    /// Received later than `late_ms`.
    pub(crate) late: u64,
    /// Measured deliveries per second.
    pub(crate) deliveries_per_sec: f64,
    /// End-to-end latency of the measured deliveries.
    pub(crate) latency_ms: Percentiles,
    /// Connections the server closed during the phase.
    pub(crate) evictions: u64,
    /// Those closes by code and reason.
    pub(crate) closes: BTreeMap<String, u64>,
    /// `error` frames received, and the first one.
    pub(crate) errors: u64,
    /// The first `error` frame.
    pub(crate) error_sample: Option<String>,
    /// Server CPU per delivery (None if no server process is known).
    pub(crate) server_cpu: Option<CpuUse>,
    /// The client workers' CPU, in cores, over the measured phase.
    pub(crate) client_cpu_cores: f64,
    /// Of which user mode, in cores.
    pub(crate) client_user_cores: f64,
    /// Client µs (user + kernel) per measured delivery: the client's own cost.
    pub(crate) client_us_per_delivery: f64,
    /// How late the workers' 1 ms tickers fired in the measured window: when this is small,
    /// the client side was not what delayed deliveries.
    pub(crate) client_lag_ms: Percentiles,
    /// CPU taken on the servers' CPUs by anything but the servers (and the workers, if they
    /// share them): other processes, interrupts, steal. Noise, in cores.
    pub(crate) other_server_cpu_cores: f64,
    /// The same on the workers' CPUs.
    pub(crate) other_client_cpu_cores: f64,
    /// Seconds spent waiting for the last deliveries.
    pub(crate) drain_secs: f64,
    /// How the drain ended: `complete` (nothing lost), `stalled` (nothing arrived for 1 s) or
    /// `timeout` (deliveries were still arriving: "lost" then includes very late ones).
    pub(crate) drain_end: &'static str,
    /// Bytes the senders could not write yet at the end (the server did not read them).
    pub(crate) unsent_bytes: u64,
}

impl LoadResult {
    /// One line for the progress log.
    pub(crate) fn summary(&self) -> String {
        let cpu = self.server_cpu.as_ref().map_or_else(
            || "server CPU unknown".to_owned(),
            |c| {
                format!(
                    "server {:.2} us/delivery ({:.2} user + {:.2} kernel, {:.2} cores)",
                    c.total_us_per_delivery,
                    c.user_us_per_delivery,
                    c.system_us_per_delivery,
                    c.cores
                )
            },
        );
        let l = &self.latency_ms;
        format!(
            "{}: {:.0} deliveries/s ({:.0} sends/s), p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} ms, \
             lost {} late {} evicted {} errors {}, {cpu}, clients {:.2} cores ({:.2} user, {:.2} us/delivery, lag p99 {:.1} max {:.1} ms), \
             others on server CPUs {:.2} cores",
            self.label,
            self.deliveries_per_sec,
            self.sends_per_sec,
            l.p50,
            l.p99,
            l.p999,
            l.max,
            self.lost,
            self.late,
            self.evictions,
            self.errors,
            self.client_cpu_cores,
            self.client_user_cores,
            self.client_us_per_delivery,
            self.client_lag_ms.p99,
            self.client_lag_ms.max,
            self.other_server_cpu_cores
        )
    }
}

/// Connected clients, ready to run phases.
pub(crate) struct Session<'a> {
    deployment: &'a Deployment,
    harness: &'a Harness,
    fleet: Fleet,
    layout: Layout,
    shape: Shape,
    connect: Connected,
    /// The flush window of the servers, for the report.
    pub(crate) write_delay_ms: u64,
}

impl<'a> Session<'a> {
    /// Opens the clients of `shape` on `deployment`.
    pub(crate) async fn open(
        deployment: &'a Deployment,
        harness: &'a Harness,
        shape: Shape,
        write_delay_ms: u64,
    ) -> anyhow::Result<Self> {
        let layout: Layout = harness.layout(
            shape.clients,
            shape.rooms,
            shape.senders,
            deployment.urls.len(),
        );
        let mut fleet = Fleet::start(harness, &layout, &deployment.urls).await?;
        let reports = fleet
            .connect(ConnectPlan {
                start_at_us: 0,
                max_in_flight: 100,
                timeout_ms: 60_000,
            })
            .await?;
        let connect = sum_connects(&reports);
        if connect.ok == 0 {
            anyhow::bail!(
                "no client could join: {}",
                connect.first_error.as_deref().unwrap_or("?")
            );
        }
        Ok(Self {
            deployment,
            harness,
            fleet,
            layout,
            shape,
            connect,
            write_delay_ms,
        })
    }

    /// Runs one phase and measures it.
    pub(crate) async fn run(&mut self, phase: &Phase) -> anyhow::Result<LoadResult> {
        // The members that are still there decide how many deliveries each send should cause.
        let mut room_members = vec![0u64; self.shape.rooms.max(1)];
        for report in self.fleet.reports().await? {
            for (sum, n) in room_members.iter_mut().zip(&report.room_members) {
                *sum += n;
            }
        }
        let layout_senders: Vec<usize> = (0..self.layout.workers)
            .map(|w| self.layout.senders_of(w))
            .collect();
        let total_senders = layout_senders.iter().sum::<usize>().max(1);
        let start_us = now_us() + 300_000;
        let measure_start_us = start_us + phase.warmup.as_micros() as u64;
        let measure_end_us = measure_start_us + phase.duration.as_micros() as u64;
        let commands = layout_senders
            .iter()
            .map(|&senders| {
                Command::Run(RunPlan {
                    start_us,
                    measure_start_us,
                    measure_end_us,
                    sends_per_sec: phase.sends_per_sec * senders as f64 / total_senders as f64,
                    body_bytes: phase.body_bytes,
                    late_us: phase.late_ms * 1000,
                    room_members: room_members.clone(),
                })
            })
            .collect();
        self.fleet
            .ask_each(commands, Duration::from_secs(30))
            .await?;

        let servers = self.deployment.server_pids();
        let workers = self.fleet.pids();
        sleep_until_us(measure_start_us).await;
        let servers_before = snapshot(&servers)?;
        let workers_before = snapshot_pids(&workers)?;
        let busy_before = read_cpu_busy()?;
        sleep_until_us(measure_end_us).await;
        let servers_after = snapshot(&servers)?;
        let workers_after = snapshot_pids(&workers)?;
        let busy_after = read_cpu_busy()?;
        let secs = phase.duration.as_secs_f64();

        // Drain: until everything expected arrived, nothing arrived for a second, or time is up.
        let drain_start = now_us();
        let deadline = drain_start + phase.drain.as_micros() as u64;
        let (mut last_received, mut last_change) = (u64::MAX, drain_start);
        let (reports, drain_end) = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let reports = self.fleet.reports().await?;
            let received: u64 = reports.iter().map(|r| r.received_measured).sum();
            let expected: u64 = reports.iter().map(|r| r.expected_measured).sum();
            let now = now_us();
            if received != last_received {
                (last_received, last_change) = (received, now);
            }
            if received >= expected {
                break (reports, "complete");
            } else if now - last_change > 1_000_000 {
                break (reports, "stalled");
            } else if now > deadline {
                break (reports, "timeout");
            }
        };
        let drain_secs = (now_us() - drain_start) as f64 / 1e6;

        let mut latency = Histogram::default();
        let mut lag = Histogram::default();
        let mut closes = BTreeMap::new();
        let (mut sent, mut expected, mut received, mut late, mut errors, mut unsent) =
            (0, 0, 0, 0, 0, 0);
        let mut error_sample = None;
        for r in &reports {
            sent += r.sent_measured;
            expected += r.expected_measured;
            received += r.received_measured;
            late += r.late;
            errors += r.errors;
            unsent += r.unsent_bytes;
            latency.merge(&r.latency);
            lag.merge(&r.loop_lag);
            if error_sample.is_none() {
                error_sample.clone_from(&r.error_sample);
            }
            for (why, n) in &r.closes {
                *closes.entry(why.clone()).or_insert(0) += n;
            }
        }
        let ticks = self.harness.ticks_per_sec as f64;
        let server_ticks = total_ticks(&servers_before, &servers_after);
        let worker_ticks = total_ticks(&workers_before, &workers_after);
        let all_cpus: Vec<usize> = busy_after.keys().copied().collect();
        let server_cpus = self
            .deployment
            .cpus
            .clone()
            .unwrap_or_else(|| all_cpus.clone());
        let client_cpus = match &self.harness.cpus {
            Some(list) => parse_cpu_list(list)?,
            None => all_cpus,
        };
        let overlap = server_cpus.iter().any(|c| client_cpus.contains(c));
        let others = |cpus: &[usize], ours: u64| {
            let busy: u64 = cpus
                .iter()
                .map(|c| {
                    let after = busy_after.get(c).copied().unwrap_or(0);
                    after.saturating_sub(busy_before.get(c).copied().unwrap_or(after))
                })
                .sum();
            busy.saturating_sub(ours) as f64 / ticks / secs
        };
        let both = server_ticks + worker_ticks;
        let other_server_cpu_cores =
            others(&server_cpus, if overlap { both } else { server_ticks });
        let other_client_cpu_cores =
            others(&client_cpus, if overlap { both } else { worker_ticks });
        let server_cpu = (!servers.is_empty()).then(|| {
            cpu_use(
                &servers,
                &servers_before,
                &servers_after,
                ticks,
                received,
                secs,
            )
        });
        let (client_user, client_ticks) =
            workers_before
                .iter()
                .zip(&workers_after)
                .fold((0u64, 0u64), |(user, all), (b, a)| {
                    (
                        user + a.user.saturating_sub(b.user),
                        all + (a.user + a.system).saturating_sub(b.user + b.system),
                    )
                });
        Ok(LoadResult {
            label: phase.label.clone(),
            shape: self.shape,
            phase: phase.clone(),
            write_delay_ms: self.write_delay_ms,
            connect: self.connect.clone(),
            sends_per_sec: sent as f64 / secs,
            expected,
            received,
            lost: expected.saturating_sub(received),
            late,
            deliveries_per_sec: received as f64 / secs,
            latency_ms: Percentiles::of(&latency),
            evictions: closes.values().sum(),
            closes,
            errors,
            error_sample,
            server_cpu,
            client_cpu_cores: client_ticks as f64 / ticks / secs,
            client_user_cores: client_user as f64 / ticks / secs,
            client_us_per_delivery: client_ticks as f64 * 1e6 / ticks / received.max(1) as f64,
            client_lag_ms: Percentiles::of(&lag),
            other_server_cpu_cores,
            other_client_cpu_cores,
            drain_secs,
            drain_end,
            unsent_bytes: unsent,
        })
    }

    /// Stops the workers.
    pub(crate) async fn close(self) {
        self.fleet.stop().await;
    }
}

/// User + kernel ticks between two snapshots, summed.
fn total_ticks(before: &[CpuTicks], after: &[CpuTicks]) -> u64 {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| (a.user + a.system).saturating_sub(b.user + b.system))
        .sum()
}

fn snapshot(pids: &[(String, u32)]) -> anyhow::Result<Vec<CpuTicks>> {
    pids.iter()
        .map(|(role, pid)| read_cpu(*pid).with_context(|| format!("CPU time of {role}")))
        .collect()
}

fn snapshot_pids(pids: &[u32]) -> anyhow::Result<Vec<CpuTicks>> {
    pids.iter().map(|&pid| read_cpu(pid)).collect()
}

/// Server CPU between two snapshots, per delivery.
fn cpu_use(
    servers: &[(String, u32)],
    before: &[CpuTicks],
    after: &[CpuTicks],
    ticks_per_sec: f64,
    deliveries: u64,
    secs: f64,
) -> CpuUse {
    let us_per_tick = 1e6 / ticks_per_sec;
    let mut processes = Vec::new();
    let (mut user, mut system) = (0u64, 0u64);
    for (((role, _), b), a) in servers.iter().zip(before).zip(after) {
        let (u, s) = (
            a.user.saturating_sub(b.user),
            a.system.saturating_sub(b.system),
        );
        user += u;
        system += s;
        processes.push((
            role.clone(),
            u as f64 * us_per_tick / 1000.0,
            s as f64 * us_per_tick / 1000.0,
        ));
    }
    let per = |t: u64| t as f64 * us_per_tick / deliveries.max(1) as f64;
    CpuUse {
        user_us_per_delivery: per(user),
        system_us_per_delivery: per(system),
        total_us_per_delivery: per(user + system),
        cores: (user + system) as f64 / ticks_per_sec / secs,
        processes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_delivery() {
        let servers = vec![("node1".to_owned(), 1), ("redis".to_owned(), 2)];
        let before = [
            CpuTicks {
                user: 100,
                system: 50,
            },
            CpuTicks {
                user: 10,
                system: 10,
            },
        ];
        let after = [
            CpuTicks {
                user: 300,
                system: 150,
            },
            CpuTicks {
                user: 60,
                system: 20,
            },
        ];
        // 250 user ticks and 110 kernel ticks = 2.5 s + 1.1 s over 1,000,000 deliveries.
        let c = cpu_use(&servers, &before, &after, 100.0, 1_000_000, 10.0);
        assert!((c.user_us_per_delivery - 2.5).abs() < 1e-9);
        assert!((c.system_us_per_delivery - 1.1).abs() < 1e-9);
        assert!((c.total_us_per_delivery - 3.6).abs() < 1e-9);
        assert!((c.cores - 0.36).abs() < 1e-9);
        assert_eq!(c.processes[1], ("redis".to_owned(), 500.0, 100.0));
    }
}
