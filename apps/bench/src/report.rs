//! Results: the structures written as JSON, and the text table (rows = measurements, columns =
//! targets, plus each Skat target's ratio to floor where a ratio means something).

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::scenarios::idle::IdleResult;
use crate::scenarios::load::LoadResult;
use crate::scenarios::rate::RateResult;
use crate::scenarios::storm::StormResult;

/// Everything measured on one target.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetResults {
    /// `floor`, `embedded`, `redis` or `url`.
    pub(crate) target: String,
    /// Load runs, in order.
    pub(crate) loads: Vec<LoadResult>,
    /// The connection storm.
    pub(crate) storm: Option<StormResult>,
    /// Idle memory.
    pub(crate) idle: Option<IdleResult>,
    /// The most sends per second within the p99 bound.
    pub(crate) rate: Option<RateResult>,
    /// Measurements that failed, with why.
    pub(crate) failures: Vec<String>,
}

impl TargetResults {
    /// No results yet.
    pub(crate) fn new(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            loads: Vec::new(),
            storm: None,
            idle: None,
            rate: None,
            failures: Vec::new(),
        }
    }

    fn load(&self, label: &str) -> Option<&LoadResult> {
        self.loads.iter().find(|l| l.label == label)
    }
}

/// One table row's value for a target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A number and its decimals.
    Num(f64, usize),
    /// Text, never compared.
    Text(String),
    /// Not measured.
    Missing,
}

impl Value {
    fn render(&self) -> String {
        match self {
            Self::Num(v, decimals) => format!("{v:.decimals$}"),
            Self::Text(t) => t.clone(),
            Self::Missing => "-".to_owned(),
        }
    }
}

/// What a load row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    /// Measured deliveries per second.
    Deliveries,
    /// Server CPU µs per delivery, user + kernel.
    CpuTotal,
    /// Server CPU µs per delivery, user.
    CpuUser,
    /// Server CPU µs per delivery, kernel.
    CpuKernel,
    /// Latency p50.
    P50,
    /// Latency p99.
    P99,
    /// Latency p99.9.
    P999,
    /// Latency max.
    Max,
    /// Lost and late deliveries.
    LostLate,
    /// Connections the server closed.
    Evictions,
    /// CPU of the client workers, in cores (is the client the limit?).
    ClientCpu,
    /// The client workers' own lag, p99 (is the client the limit?).
    ClientLag,
    /// CPU others took on the servers' CPUs (noise).
    OtherCpu,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Self::Deliveries => "deliveries/s",
            Self::CpuTotal => "server CPU us/delivery",
            Self::CpuUser => "  user us/delivery",
            Self::CpuKernel => "  kernel us/delivery",
            Self::P50 => "p50 ms",
            Self::P99 => "p99 ms",
            Self::P999 => "p99.9 ms",
            Self::Max => "max ms",
            Self::LostLate => "lost / late",
            Self::Evictions => "evictions",
            Self::ClientCpu => "client CPU (cores)",
            Self::ClientLag => "client lag p99 ms",
            Self::OtherCpu => "others on server CPUs (cores)",
        }
    }

    /// Whether target/floor means something for this metric.
    fn ratio(self) -> bool {
        !matches!(
            self,
            Self::LostLate | Self::Evictions | Self::ClientCpu | Self::ClientLag | Self::OtherCpu
        )
    }

    fn value(self, r: &LoadResult) -> Value {
        let cpu = |v: Option<f64>| v.map_or(Value::Missing, |v| Value::Num(v, 2));
        match self {
            Self::Deliveries => Value::Num(r.deliveries_per_sec, 0),
            Self::CpuTotal => cpu(r.server_cpu.as_ref().map(|c| c.total_us_per_delivery)),
            Self::CpuUser => cpu(r.server_cpu.as_ref().map(|c| c.user_us_per_delivery)),
            Self::CpuKernel => cpu(r.server_cpu.as_ref().map(|c| c.system_us_per_delivery)),
            Self::P50 => Value::Num(r.latency_ms.p50, 1),
            Self::P99 => Value::Num(r.latency_ms.p99, 1),
            Self::P999 => Value::Num(r.latency_ms.p999, 1),
            Self::Max => Value::Num(r.latency_ms.max, 1),
            Self::LostLate => Value::Text(format!("{} / {}", r.lost, r.late)),
            Self::Evictions => Value::Num(r.evictions as f64, 0),
            Self::ClientCpu => Value::Num(r.client_cpu_cores, 2),
            Self::ClientLag => Value::Num(r.client_lag_ms.p99, 1),
            Self::OtherCpu => Value::Num(r.other_server_cpu_cores, 2),
        }
    }
}

/// One row of the suite table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// What it measures.
    pub(crate) label: String,
    /// Per target, in column order.
    pub(crate) values: Vec<Value>,
    /// Whether ratio columns apply.
    pub(crate) ratio: bool,
}

/// The rows of the table: for each load label (in `sections` order) its metrics, then the storm
/// and idle rows if any target has them.
pub(crate) fn rows(results: &[TargetResults], sections: &[(String, Vec<Metric>)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, metrics) in sections {
        if results.iter().all(|t| t.load(label).is_none()) {
            continue;
        }
        for &metric in metrics {
            rows.push(Row {
                label: format!("{label}: {}", metric.label()),
                values: results
                    .iter()
                    .map(|t| t.load(label).map_or(Value::Missing, |r| metric.value(r)))
                    .collect(),
                ratio: metric.ratio(),
            });
        }
    }
    let mut row = |label: &str, ratio: bool, f: &dyn Fn(&TargetResults) -> Option<Value>| {
        let values: Vec<Value> = results
            .iter()
            .map(|t| f(t).unwrap_or(Value::Missing))
            .collect();
        if values.iter().any(|v| *v != Value::Missing) {
            rows.push(Row {
                label: label.to_owned(),
                values,
                ratio,
            });
        }
    };
    row("rate: most sends/s, p99 < 50 ms", false, &|t| {
        t.rate.as_ref().map(|r| Value::Num(r.max_sends_per_sec, 0))
    });
    row("rate: stopped by", false, &|t| {
        t.rate.as_ref().map(|r| Value::Text(r.stopped.clone()))
    });
    row("storm: seconds to all joined", true, &|t| {
        t.storm.as_ref().map(|s| Value::Num(s.connect.seconds, 2))
    });
    row("storm: joined / failed", false, &|t| {
        t.storm
            .as_ref()
            .map(|s| Value::Text(format!("{} / {}", s.connect.ok, s.connect.failed)))
    });
    row("storm: SYN retransmits", false, &|t| {
        t.storm
            .as_ref()
            .map(|s| Value::Num(s.tcp.syn_retrans as f64, 0))
    });
    row("storm: listen overflows", false, &|t| {
        t.storm
            .as_ref()
            .map(|s| Value::Num(s.tcp.listen_overflows as f64, 0))
    });
    row("idle: KiB per connection", true, &|t| {
        t.idle.as_ref().map(|i| Value::Num(i.kib_per_conn, 1))
    });
    row("idle: Redis commands/s per 1000 users", true, &|t| {
        t.idle
            .as_ref()
            .and_then(|i| i.redis_commands_per_sec_per_1000)
            .map(|rate| Value::Num(rate, 2))
    });
    rows
}

/// Prints the table (to stderr when the JSON goes to stdout) and writes the JSON to `out`.
pub(crate) fn emit(
    table: &Table,
    json: &impl Serialize,
    json_to_stdout: bool,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let text = table.render();
    let pretty = serde_json::to_string_pretty(json).context("cannot encode the results")?;
    if json_to_stdout {
        eprint!("{text}");
        println!("{pretty}");
    } else {
        print!("{text}");
    }
    if let Some(path) = out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, pretty + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}

/// A plain text table.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Table {
    /// Column titles.
    pub(crate) header: Vec<String>,
    /// Cells, row by row.
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    /// The table of `rows` over `targets`, with `<target>/floor` columns for the Skat targets
    /// when floor is one of them.
    pub(crate) fn of(targets: &[String], rows: &[Row]) -> Self {
        let floor = targets.iter().position(|t| t == "floor");
        let ratio_cols: Vec<usize> = match floor {
            Some(f) => (0..targets.len()).filter(|&i| i != f).collect(),
            None => Vec::new(),
        };
        let mut header = vec!["measurement".to_owned()];
        header.extend(targets.iter().cloned());
        header.extend(ratio_cols.iter().map(|&i| format!("{}/floor", targets[i])));
        let body = rows
            .iter()
            .map(|row| {
                let mut cells = vec![row.label.clone()];
                cells.extend(row.values.iter().map(Value::render));
                for &i in &ratio_cols {
                    let cell = match (floor.map(|f| &row.values[f]), &row.values[i]) {
                        (Some(Value::Num(base, _)), Value::Num(v, _))
                            if row.ratio && *base > 0.0 =>
                        {
                            format!("{:.2}x", v / base)
                        }
                        _ => String::new(),
                    };
                    cells.push(cell);
                }
                cells
            })
            .collect();
        Self { header, rows: body }
    }

    /// Aligned text: the first column to the left, the others to the right.
    pub(crate) fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths = vec![0; cols];
        for line in std::iter::once(&self.header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                let pad = w - cell.chars().count();
                if i == 0 {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                } else {
                    text.push_str("  ");
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule);
        for row in &self.rows {
            line(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, values: Vec<Value>, ratio: bool) -> Row {
        Row {
            label: label.to_owned(),
            values,
            ratio,
        }
    }

    #[test]
    fn ratios_only_where_meaningful() {
        let targets = vec![
            "floor".to_owned(),
            "embedded".to_owned(),
            "redis".to_owned(),
        ];
        let rows = vec![
            row(
                "cpu",
                vec![Value::Num(2.0, 2), Value::Num(3.0, 2), Value::Num(5.0, 2)],
                true,
            ),
            row(
                "lost / late",
                vec![
                    Value::Text("0 / 0".into()),
                    Value::Text("1 / 2".into()),
                    Value::Missing,
                ],
                false,
            ),
            row(
                "evictions",
                vec![Value::Num(0.0, 0), Value::Num(4.0, 0), Value::Num(1.0, 0)],
                false,
            ),
            row(
                "zero base",
                vec![Value::Num(0.0, 1), Value::Num(1.0, 1), Value::Missing],
                true,
            ),
        ];
        let table = Table::of(&targets, &rows);
        assert_eq!(
            table.header,
            [
                "measurement",
                "floor",
                "embedded",
                "redis",
                "embedded/floor",
                "redis/floor"
            ]
        );
        assert_eq!(
            table.rows[0],
            ["cpu", "2.00", "3.00", "5.00", "1.50x", "2.50x"]
        );
        assert_eq!(
            table.rows[1],
            ["lost / late", "0 / 0", "1 / 2", "-", "", ""]
        );
        assert_eq!(table.rows[2][4], "");
        assert_eq!(table.rows[3][4], "");
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + rows.len());
        assert!(lines[0].starts_with("measurement  "));
        assert!(lines[1].starts_with("-----"));
        // Right-aligned numbers: every data line's "floor" column ends at the same place.
        let end = lines[0].find("floor").unwrap() + "floor".len();
        assert_eq!(&lines[2][end - 4..end], "2.00");
    }

    #[test]
    fn no_ratio_columns_without_floor() {
        let table = Table::of(
            &["embedded".to_owned()],
            &[row("x", vec![Value::Num(1.0, 0)], true)],
        );
        assert_eq!(table.header, ["measurement", "embedded"]);
        assert_eq!(table.rows[0], ["x", "1"]);
    }
}
