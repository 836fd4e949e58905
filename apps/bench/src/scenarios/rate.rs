//! The most sends per second one deployment accepts with the p99 of delivery under a bound
//! (issue 23's load: what group commit buys a durable node): small rooms of two, every client
//! sending, at rising rates until a step misses the bound, loses a delivery, or falls short of
//! the rate asked. Small rooms keep the cost per send about the send itself (the confirmation
//! and one other member), not the fan-out the chat and busy loads measure.

use std::time::Duration;

use serde::Serialize;

use super::load::{LoadResult, Phase, Session, Shape};
use crate::clients::fleet::Harness;
use crate::deploy::Deployment;

/// 1000 clients in 500 rooms of two, every one sending.
pub(crate) const SHAPE: Shape = Shape {
    clients: 1000,
    rooms: 500,
    senders: 1000,
};
/// The p99 a step must stay under, ms.
pub(crate) const P99_BOUND_MS: f64 = 50.0;
/// The first rate tried, sends/s; each next step asks a quarter more.
const FIRST_RATE: f64 = 5_000.0;
/// The last rate tried.
const LAST_RATE: f64 = 80_000.0;
/// A step whose measured rate is below this share of the rate asked is short.
const SHORT: f64 = 0.95;

/// The ramp's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RateResult {
    /// The highest measured sends/s of a step within the bound (0 if none was).
    pub(crate) max_sends_per_sec: f64,
    /// The bound on p99, ms.
    pub(crate) p99_bound_ms: f64,
    /// Why the ramp stopped.
    pub(crate) stopped: String,
    /// Every step run.
    pub(crate) steps: Vec<LoadResult>,
}

/// Whether a step kept the bound, or why not.
fn verdict(step: &LoadResult, asked: f64) -> Result<(), String> {
    if step.latency_ms.p99 >= P99_BOUND_MS {
        return Err(format!(
            "p99 {:.1} ms at {asked:.0} sends/s",
            step.latency_ms.p99
        ));
    }
    if step.lost > 0 || step.errors > 0 || step.evictions > 0 {
        return Err(format!(
            "{} lost, {} errors, {} evicted at {asked:.0} sends/s",
            step.lost, step.errors, step.evictions
        ));
    }
    if step.sends_per_sec < asked * SHORT {
        return Err(format!(
            "{:.0} sends/s measured of {asked:.0} asked",
            step.sends_per_sec
        ));
    }
    Ok(())
}

/// Runs the ramp on `deployment`; `log` gets each step's summary.
pub(crate) async fn run(
    deployment: &Deployment,
    harness: &Harness,
    phase: &Phase,
    log: &dyn Fn(&str),
) -> anyhow::Result<RateResult> {
    let mut session = Session::open(deployment, harness, SHAPE, 0).await?;
    let mut result = RateResult {
        max_sends_per_sec: 0.0,
        p99_bound_ms: P99_BOUND_MS,
        stopped: format!("reached {LAST_RATE:.0} sends/s"),
        steps: Vec::new(),
    };
    let mut asked = FIRST_RATE;
    while asked <= LAST_RATE {
        let step = Phase {
            label: format!("rate {asked:.0}"),
            sends_per_sec: asked,
            // Short steps: the ramp has many, and a saturated step's drain is bounded anyway.
            drain: phase.drain.min(Duration::from_secs(5)),
            ..phase.clone()
        };
        let measured = session.run(&step).await?;
        log(&measured.summary());
        let kept = verdict(&measured, asked);
        if kept.is_ok() {
            result.max_sends_per_sec = result.max_sends_per_sec.max(measured.sends_per_sec);
        }
        result.steps.push(measured);
        if let Err(why) = kept {
            result.stopped = why;
            break;
        }
        asked *= 1.25;
    }
    session.close().await;
    Ok(result)
}
