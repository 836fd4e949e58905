//! The single measurements: `skat-bench load`, `storm` and `idle`, against a target the bench
//! starts or against running servers (`--url`).

use std::time::Duration;

use crate::cli::{Common, IdleArgs, LoadArgs, StormArgs, TargetArgs};
use crate::fleet::Harness;
use crate::load::{Phase, Session, Shape};
use crate::procs::Deployment;
use crate::report::{self, Metric, Table, TargetResults};

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
        crate::storm::run(&deployment, &harness, args.clients, args.rooms, timeout).await?;
    let mut results = TargetResults::new(&name);
    results.storm = Some(result);
    emit(&args.common, &results, &[])
}

/// `skat-bench idle`.
pub(crate) async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let (deployment, name) = deployment(&args.common, &args.target).await?;
    let harness = harness(&args.common, &args.target);
    let result = crate::idle::run(&deployment, &harness, args.clients, args.rooms).await?;
    let mut results = TargetResults::new(&name);
    results.idle = Some(result);
    emit(&args.common, &results, &[])
}
