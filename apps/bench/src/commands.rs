//! The single measurements: `skat-bench load`, `storm` and `idle`, against a target the bench
//! starts or against running servers (`--url`).

use std::time::Duration;

use crate::cli::{
    CapacityArgs, Common, IdleArgs, LoadArgs, SimArgs, StormArgs, TargetArgs, UnitsArgs,
};
use crate::clients::fleet::Harness;
use crate::deploy::Deployment;
use crate::report::{self, Metric, Table, TargetResults};
use crate::scenarios::load::{Phase, Session, Shape};

/// The servers to measure, and the column name.
async fn deployment(common: &Common, target: &TargetArgs) -> anyhow::Result<(Deployment, String)> {
    if target.url.is_empty() {
        let spec = common.server(target.target, target.pin, target.write_delay_ms);
        Ok((
            Deployment::start(&spec).await?,
            target.target.name().to_owned(),
        ))
    } else {
        Ok((
            Deployment::external(target.url.clone(), target.pid.clone()),
            "url".to_owned(),
        ))
    }
}

fn harness(common: &Common, target: &TargetArgs) -> Harness {
    Harness::new(
        common.clients_per_worker,
        common.min_workers,
        target.pin.then(|| common.client_cpus.clone()),
    )
}

fn emit(
    common: &Common,
    results: &TargetResults,
    sections: &[(String, Vec<Metric>)],
) -> anyhow::Result<()> {
    let rows = report::rows(std::slice::from_ref(results), sections);
    let table = Table::of(std::slice::from_ref(&results.target), &rows);
    report::emit(&table, results, common.json, common.out.as_deref())
}

/// `skat-bench load`.
pub(crate) async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let (deployment, name) = deployment(&args.common, &args.target).await?;
    let harness = harness(&args.common, &args.target);
    let shape = Shape {
        clients: args.clients,
        rooms: args.rooms,
        senders: args.senders,
    };
    let mut session =
        Session::open(&deployment, &harness, shape, args.target.write_delay_ms).await?;
    let phase = Phase {
        label: "load".to_owned(),
        sends_per_sec: args.rate,
        body_bytes: args.body,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration.max(0.1)),
        drain: Duration::from_secs_f64(args.drain),
        late_ms: args.late_ms,
    };
    let result = session.run(&phase).await?;
    session.close().await;
    eprintln!("{name} {}", result.summary());
    let mut results = TargetResults::new(&name);
    results.loads.push(result);
    use Metric::*;
    let all = vec![
        Deliveries, CpuTotal, CpuUser, CpuKernel, P50, P99, P999, Max, LostLate, Evictions,
        ClientCpu, ClientLag, OtherCpu,
    ];
    emit(&args.common, &results, &[("load".to_owned(), all)])
}

/// `skat-bench storm`.
pub(crate) async fn storm(args: StormArgs) -> anyhow::Result<()> {
    let (deployment, name) = deployment(&args.common, &args.target).await?;
    let harness = harness(&args.common, &args.target);
    let timeout = Duration::from_secs(args.timeout);
    let result =
        crate::scenarios::storm::run(&deployment, &harness, args.clients, args.rooms, timeout)
            .await?;
    let mut results = TargetResults::new(&name);
    results.storm = Some(result);
    emit(&args.common, &results, &[])
}

/// `skat-bench idle`.
pub(crate) async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let (deployment, name) = deployment(&args.common, &args.target).await?;
    let harness = harness(&args.common, &args.target);
    let result =
        crate::scenarios::idle::run(&deployment, &harness, args.clients, args.rooms).await?;
    let mut results = TargetResults::new(&name);
    results.idle = Some(result);
    emit(&args.common, &results, &[])
}

/// `skat-bench simnodes`: one row per node count.
pub(crate) async fn simnodes(args: SimArgs) -> anyhow::Result<()> {
    let mix = crate::capacity::simnodes::Mix {
        users: args.users,
        rooms: args.rooms,
        rate: args.rate,
        seconds: args.seconds,
        shards: args.shards,
        body_bytes: args.body,
    };
    let mut table = Table {
        header: [
            "nodes",
            "subscriptions",
            "idle cmds/s",
            "idle Redis cores",
            "cmds/s",
            "Redis cores",
            "busiest shard",
            "out MB/s",
            "node deliveries/s",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: Vec::new(),
    };
    let mut results = Vec::new();
    for &nodes in &args.nodes {
        let result =
            crate::capacity::simnodes::run(&args.redis_bin, Some(&args.redis_cpus), nodes, &mix)
                .await?;
        table.rows.push(vec![
            nodes.to_string(),
            result.subscriptions.to_string(),
            format!("{:.0}", result.idle.commands_per_sec),
            format!("{:.3}", result.idle.cpu_cores),
            format!("{:.0}", result.traffic.commands_per_sec),
            format!("{:.2}", result.traffic.cpu_cores),
            format!("{:.2}", result.traffic.busiest_shard_cores),
            format!("{:.1}", result.traffic.out_bytes_per_sec / 1e6),
            format!("{:.0}", result.node_deliveries_per_sec),
        ]);
        eprintln!("{}", table.render());
        results.push(result);
    }
    let json = serde_json::json!({ "mix": mix, "results": results });
    report::emit(&table, &json, false, args.out.as_deref())
}

/// `skat-bench units`: measures, prints and (with --out) writes the units.
pub(crate) async fn units(args: UnitsArgs) -> anyhow::Result<()> {
    let units = crate::capacity::units::measure(&args).await?;
    let text = serde_json::to_string_pretty(&units)?;
    println!("{text}");
    if let Some(path) = &args.common.out {
        std::fs::write(path, &text)?;
        eprintln!("units written to {}", path.display());
    }
    Ok(())
}

/// `skat-bench capacity`: the model's tables, in Markdown, from measured units.
pub(crate) fn capacity(args: &CapacityArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(&args.units).with_context(|| {
        format!(
            "cannot read {} (run `skat-bench units --out` first)",
            args.units.display()
        )
    })?;
    let units: crate::capacity::units::Units = serde_json::from_str(&text)?;
    let assumed = crate::capacity::assumptions(args);
    let plans: Vec<_> = args
        .users
        .iter()
        .map(|&users| crate::capacity::plan(users, &assumed, &units))
        .collect();
    print!("{}", crate::capacity::markdown(&units, &assumed, &plans));
    Ok(())
}
