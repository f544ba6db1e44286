//! The scenarios, numbered as in the issue, and what they share.

mod aws_faults;
pub mod bad_input;
mod cutover;
mod faults;
mod hostile;
mod security;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::Profile;
use crate::load::{Load, LoadFigures, Tally, expected_answers};
use crate::report::Outcome;
use crate::stack::{MigrateRun, Stack, finish};

type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;
type Scenario = for<'a> fn(&'a mut Stack, &'a Profile, &'a mut Outcome) -> ScenarioFuture<'a>;

const SCENARIOS: [(u8, &str, Scenario); 9] = [
    (1, "cutover under load", |s, p, o| {
        Box::pin(cutover::under_load(s, p, o))
    }),
    (2, "migrate killed", |s, p, o| {
        Box::pin(faults::migrate_killed(s, p, o))
    }),
    (3, "local ALB killed", |s, p, o| {
        Box::pin(faults::alb_killed(s, p, o))
    }),
    (4, "service dies mid-shift", |s, p, o| {
        Box::pin(faults::service_dies(s, p, o))
    }),
    (5, "two operators", |s, p, o| {
        Box::pin(faults::two_operators(s, p, o))
    }),
    (6, "bad input", |s, p, o| Box::pin(bad_input::run(s, p, o))),
    (7, "security", |s, p, o| Box::pin(security::run(s, p, o))),
    (8, "hostile clients", |s, p, o| {
        Box::pin(hostile::run(s, p, o))
    }),
    (9, "AWS's bad days", |s, p, o| {
        Box::pin(aws_faults::aws_bad_days(s, p, o))
    }),
];

/// Runs the scenarios in order (all, or those in `only`); one scenario's
/// failure does not stop the next, but every route is rolled back between them.
pub async fn run_all(stack: &mut Stack, profile: &Profile, only: &[u8]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let ready = async {
        stack.wait_healthy(Duration::from_secs(60)).await?;
        stack
            .migrate(&["init"], Duration::from_secs(60))
            .await?
            .expect(0)?;
        anyhow::Ok(())
    };
    if let Err(err) = ready.await {
        let mut outcome = Outcome::new(0, "stack start");
        outcome.error(&err);
        return vec![outcome];
    }
    for (number, name, scenario) in SCENARIOS {
        if !only.is_empty() && !only.contains(&number) {
            continue;
        }
        eprintln!("chaos: scenario {number}: {name}");
        let started = Instant::now();
        let mut outcome = Outcome::new(number, name);
        if let Err(err) = scenario(stack, profile, &mut outcome).await {
            outcome.error(&err);
        }
        if let Err(err) = reset(stack).await {
            outcome.error(&err.context("restoring the stack after the scenario"));
        }
        outcome.seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "chaos: scenario {number}: {} in {:.1} s",
            if outcome.passed { "pass" } else { "FAIL" },
            outcome.seconds
        );
        outcomes.push(outcome);
    }
    outcomes
}

/// Back to the start: every route on the monolith, every target healthy.
async fn reset(stack: &mut Stack) -> anyhow::Result<()> {
    stack
        .migrate(
            &["rollback", "--all", "--force-unlock"],
            Duration::from_secs(60),
        )
        .await?
        .expect(0)?;
    stack.wait_healthy(Duration::from_secs(60)).await?;
    Ok(())
}

/// One route's entry of `migrate status --output json`.
pub fn route_status<'a>(status: &'a Value, route: &str) -> anyhow::Result<&'a Value> {
    status["routes"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["route"] == route))
        .with_context(|| format!("status has no route `{route}`: {status}"))
}

/// What decides routing in a route's status: state, priorities, action and
/// weights (not target health, which moves on its own).
pub fn routing_of(status: &Value, route: &str) -> anyhow::Result<Value> {
    let entry = route_status(status, route)?;
    Ok(serde_json::json!({
        "state": entry["state"],
        "percent": entry["percent"],
        "restored": entry["restored"],
        "rule_arn": entry["rule_arn"],
        "priority": entry["priority"],
        "monolith_priority": entry["monolith_priority"],
        "action": entry["action"],
        "weights": entry["weights"],
    }))
}

/// Requests the data plane has sent to a target group so far (`/metrics`).
pub async fn group_requests(stack: &Stack, group: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{}/metrics", stack.control_url()))
        .await?
        .text()
        .await?;
    let samples = alb::metrics::parse(&text);
    Ok(alb::metrics::requests_by_target_group(&samples)
        .get(group)
        .copied()
        .unwrap_or(0))
}

/// The share of `path`'s requests the route's service answers now, measured
/// by sending `count` requests through the data plane.
pub async fn measured_share(
    stack: &Stack,
    group: &str,
    path: &str,
    count: u64,
) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let before = group_requests(stack, group).await?;
    for _ in 0..count {
        client
            .get(format!("{}{path}", stack.data_url()))
            .send()
            .await?
            .bytes()
            .await?;
    }
    let after = group_requests(stack, group).await?;
    Ok((after - before) as f64 / count as f64)
}

/// A service killed in the middle of a gradual shift under load (scenarios
/// 4 and 9): how.
pub struct KillMidShift<'a> {
    pub route: &'a str,
    /// The shift's `--interval` (its steps are 50, then 100).
    pub interval: &'a str,
    /// How long after step 1 was acknowledged the service is killed.
    pub after_step: Duration,
    /// How long `migrate` may take to reach step 1, and then to end.
    pub timeout: Duration,
    /// `migrate -v`.
    pub verbose: bool,
}

/// What killing a service mid-shift left: the shift's run, and the load's
/// view of the kill (times since the load began).
pub struct KilledMidShift {
    pub run: MigrateRun,
    /// Requests in flight when the service was killed.
    pub in_flight: u64,
    pub killed_at: Duration,
    /// When `migrate` ended (the rollback was done).
    pub back_at: Duration,
    pub tally: Arc<Tally>,
    pub figures: LoadFigures,
}

/// Starts a load and `migrate shift ROUTE --steps 50,100`, SIGKILLs the
/// route's service `after_step` once step 1 is acknowledged, and waits for
/// `migrate` to end and then for the load. The service stays dead.
pub async fn kill_service_mid_shift(
    stack: &mut Stack,
    profile: &Profile,
    kill: &KillMidShift<'_>,
) -> anyhow::Result<KilledMidShift> {
    let answers = expected_answers(&stack.server_url("monolith")).await?;
    let load = Load::start(
        &stack.data_url(),
        &answers,
        profile.connections,
        profile.max_requests,
        Duration::from_secs(120),
    )?;
    let shift_args = [
        "shift",
        kill.route,
        "--steps",
        "50,100",
        "--interval",
        kill.interval,
        "--skip-parity",
    ];
    let mut args = Vec::from(if kill.verbose { &["-v"][..] } else { &[] });
    args.extend(shift_args);
    let mut shift = stack.spawn_migrate(&args)?;
    if let Err(err) = shift.wait_for_line("step 1/2", kill.timeout).await {
        load.finish().await;
        return Err(err);
    }
    tokio::time::sleep(kill.after_step).await;
    let in_flight = load.tally.in_flight.load(Ordering::Relaxed);
    let killed_at = load.now();
    stack.kill_server(kill.route).await;
    let run = finish(shift, &["shift", kill.route], kill.timeout).await;
    let back_at = load.now();
    let tally = load.tally.clone();
    let figures = load.finish().await;
    Ok(KilledMidShift {
        run: run?,
        in_flight,
        killed_at,
        back_at,
        tally,
        figures,
    })
}
