//! Scenario 9: AWS's bad days (issue 17). On a second local stack whose ALB
//! propagates each change to 3 nodes over a random delay, throttles the ELBv2
//! and CloudWatch APIs and fails 2% of control calls (half of the failed
//! writes after applying them):
//! - cutovers under load: 0 failed client requests, every `migrate` exits 0
//!   and `status` ends truthful;
//! - rollback of a dying service: `migrate` exits 3 and the traffic leaves
//!   the service within the propagation maximum plus 1 s;
//! - two operators: the lock holds under throttling, one proceeds, the
//!   other exits 4, and both end truthfully.

use std::time::Duration;

use crate::Profile;
use crate::load::{Load, LoadFigures, Tally, expected_answers};
use crate::report::Outcome;
use crate::stack::{ROUTES, Stack, finish, json_document};

use super::{KillMidShift, group_requests, kill_service_mid_shift, route_status};

const MIGRATE_TIMEOUT: Duration = Duration::from_secs(180);

/// The fault options for a profile: propagation's maximum and the flags.
fn faults(profile: &Profile) -> (Duration, Vec<String>) {
    let bounded = profile.name == "bounded";
    // Bounded: 0-1 s, what CI's wall time allows; every check is the same.
    let max = Duration::from_secs(if bounded { 1 } else { 8 });
    let args = [
        "--propagation",
        &format!("0s..{}s", max.as_secs()),
        "--nodes",
        "3",
        // Tight enough that shifts are throttled (AWS's example bucket for
        // Describe* refills 10 a second, shared by the whole account; "Rate
        // exceeded" is reported at a few calls per second); looser in
        // the bounded run, whose budget is its wall time.
        "--throttle",
        if bounded {
            "DescribeRules=4,DescribeTags=4,DescribeTargetHealth=5,GetMetricData=5,*=10"
        } else {
            "DescribeRules=2,DescribeTags=2,DescribeTargetHealth=3,GetMetricData=3,*=5"
        },
        "--transient-errors",
        "0.02",
    ]
    .map(str::to_owned)
    .to_vec();
    (max, args)
}

pub async fn aws_bad_days(
    stack: &mut Stack,
    profile: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let (max, args) = faults(profile);
    // propagation_max in migrate.toml: the ALB's maximum.
    let mut faulty = Stack::start_with(
        stack.binaries.clone(),
        args,
        &[("propagation_max", format!("{}s", max.as_secs()))],
    )
    .await?;
    faulty.wait_healthy(Duration::from_secs(60)).await?;
    faulty
        .migrate(&["init"], MIGRATE_TIMEOUT)
        .await?
        .expect(0)?;
    outcome.figure("propagation", format!("0-{} s over 3 nodes", max.as_secs()));
    let result = async {
        cutovers(&faulty, profile, max, outcome).await?;
        dying_service(&mut faulty, profile, max, outcome).await?;
        two_operators(&faulty, outcome).await
    }
    .await;
    let injected = injected(&faulty).await.unwrap_or_default();
    outcome.figure("injected", injected);
    faulty.stop().await;
    if result.is_err() || !outcome.passed {
        // This stack's logs (its ALB's included) for a look.
        let kept = faulty.dir.keep();
        eprintln!("chaos: scenario 9's stack kept in {}", kept.display());
    }
    result
}

/// What the ALB injected, from `/metrics`: "T throttled, E errors (L lost answers)".
async fn injected(stack: &Stack) -> anyhow::Result<String> {
    use alb::metrics as names;
    let text = reqwest::get(format!("{}/metrics", stack.control_url()))
        .await?
        .text()
        .await?;
    let samples = names::parse(&text);
    let sum = |name: &str, applied: Option<&str>| -> u64 {
        samples
            .iter()
            .filter(|s| {
                s.name == name && applied.is_none_or(|a| s.label(names::label::APPLIED) == a)
            })
            .map(names::Sample::count)
            .sum()
    };
    Ok(format!(
        "{} throttled, {} errors ({} lost answers)",
        sum(names::FAULTS_THROTTLED_TOTAL, None),
        sum(names::FAULTS_TRANSIENT_ERRORS_TOTAL, None),
        sum(names::FAULTS_TRANSIENT_ERRORS_TOTAL, Some("true"))
    ))
}

/// `profile.cycles_under_faults` shift/rollback cycles over the routes under load.
async fn cutovers(
    stack: &Stack,
    profile: &Profile,
    max: Duration,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let answers = expected_answers(&stack.server_url("monolith")).await?;
    let load = Load::start(
        &stack.data_url(),
        &answers,
        profile.connections,
        profile.max_requests,
        // Under load for every cutover (each up to a minute on a busy machine).
        profile
            .max_load_time
            .max(Duration::from_secs(60) * profile.cycles_under_faults as u32),
    )?;
    let mut before = 0;
    for route in ROUTES {
        before += group_requests(stack, route).await?;
    }
    let (mut cycles, mut retried, mut untruthful) = (0, 0u64, Vec::new());
    // Per rollback, how soon the traffic left the service (migrate's
    // `rollback_reach`, from CloudWatch at 1 s), or why it was not measured.
    let mut reaches: Vec<Result<f64, String>> = Vec::new();
    let mut result = Ok(());
    for cycle in 0..profile.cycles_under_faults {
        let route = ROUTES[cycle % ROUTES.len()];
        let step = one_cutover(stack, route, &mut untruthful);
        match step.await {
            Ok((n, reach)) => {
                retried += n;
                reaches.push(reach);
            }
            Err(err) => {
                result = Err(err.context(format!("cutover {}", cycle + 1)));
                break;
            }
        }
        cycles += 1;
    }
    let tally = load.tally.clone();
    let figures = load.finish().await;
    let mut after = 0;
    for route in ROUTES {
        after += group_requests(stack, route).await?;
    }
    let report = Cutovers {
        cycles,
        wanted: profile.cycles_under_faults,
        limit: max.as_secs_f64() + 1.0,
        reaches,
        untruthful,
        reached_services: after > before,
        retried,
    };
    report.judge(&figures, &tally, result.is_ok(), outcome);
    result
}

/// What the cutovers of [`cutovers`] came to.
struct Cutovers {
    cycles: usize,
    wanted: usize,
    /// The propagation maximum plus 1 s.
    limit: f64,
    /// Per rollback, how soon the traffic left the service, or why it was
    /// not measured.
    reaches: Vec<Result<f64, String>>,
    untruthful: Vec<String>,
    reached_services: bool,
    retried: u64,
}

impl Cutovers {
    /// The figures, and the checks: no failed request; when every cutover
    /// ran (`ran`), each rollback measured within the limit, every status
    /// truthful, and the services reached.
    fn judge(&self, figures: &LoadFigures, tally: &Tally, ran: bool, outcome: &mut Outcome) {
        outcome.figure("cutovers", self.cycles);
        outcome.figure("requests", figures.requests);
        outcome.figure(
            "failed requests",
            figures.failed + figures.connection_errors,
        );
        outcome.figure(
            "longest idle connection ms",
            tally
                .longest_idle_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        outcome.figure("AWS calls retried", self.retried);
        let limit = self.limit;
        let mut measured: Vec<f64> = self
            .reaches
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        measured.sort_by(f64::total_cmp);
        outcome.figure(
            "rollback reached traffic s (median/max)",
            match (measured.get(measured.len() / 2), measured.last()) {
                (Some(median), Some(most)) => format!(
                    "{median:.1}/{most:.1} of {} (limit {limit:.0})",
                    measured.len()
                ),
                _ => "not measured".to_owned(),
            },
        );
        outcome.check(
            figures.failed == 0 && figures.connection_errors == 0,
            || format!("clients noticed a cutover: {:?}", tally.examples()),
        );
        if !ran {
            return;
        }
        let unmeasured: Vec<&String> = self
            .reaches
            .iter()
            .filter_map(|r| r.as_ref().err())
            .collect();
        outcome.check(unmeasured.is_empty(), || {
            format!(
                "{} of {} rollbacks' reach in the traffic not measured: {unmeasured:?}",
                unmeasured.len(),
                self.reaches.len()
            )
        });
        outcome.check(measured.iter().all(|s| *s <= limit), || {
            format!("a rollback reached the traffic later than {limit} s: {measured:?}")
        });
        outcome.check(self.cycles == self.wanted, || {
            format!("{} of {} cutovers ran", self.cycles, self.wanted)
        });
        outcome.check(self.untruthful.is_empty(), || self.untruthful.join("; "));
        outcome.check(self.reached_services, || {
            "no request reached a service".into()
        });
    }
}

/// One shift to 100 % (two steps) and its rollback, each `--output json`,
/// `status` checked after each: the AWS calls retried, and the rollback's
/// reach in the traffic.
async fn one_cutover(
    stack: &Stack,
    route: &str,
    untruthful: &mut Vec<String>,
) -> anyhow::Result<(u64, Result<f64, String>)> {
    let shift = [
        "shift",
        route,
        "--steps",
        "50,100",
        "--interval",
        "200ms",
        "--skip-parity",
        "--output",
        "json",
    ];
    let run = stack.migrate(&shift, MIGRATE_TIMEOUT).await?;
    run.expect(0)?;
    let shifted = budget_retries(&run.output);
    check_state(stack, route, "on-service", untruthful).await?;
    let back = stack
        .migrate(&["rollback", route, "--output", "json"], MIGRATE_TIMEOUT)
        .await?;
    back.expect(0)?;
    check_state(stack, route, "on-monolith", untruthful).await?;
    Ok((
        shifted + budget_retries(&back.output),
        rollback_reach(&back.output),
    ))
}

/// The retries a `migrate --output json` run reports (`aws_api.retried`,
/// summed over a rollback's routes).
fn budget_retries(output: &str) -> u64 {
    let Some(value) = json_document(output) else {
        return 0;
    };
    let one = |v: &serde_json::Value| v["aws_api"]["retried"].as_u64().unwrap_or(0);
    match &value {
        serde_json::Value::Array(items) => items.iter().map(one).sum(),
        other => one(other),
    }
}

/// A `migrate rollback --output json` run's `rollback_reach`: the seconds
/// until the service's last request, or why there is none.
fn rollback_reach(output: &str) -> Result<f64, String> {
    let value = json_document(output)
        .ok_or_else(|| format!("no JSON in the rollback's output: {}", output.trim_end()))?;
    let reach = &value[0]["rollback_reach"];
    match reach["outcome"].as_str() {
        Some("reached") => reach["seconds"]
            .as_f64()
            .ok_or_else(|| format!("no seconds in {reach}")),
        _ => Err(reach.to_string()),
    }
}

/// `status` must say what `migrate` said it did.
async fn check_state(
    stack: &Stack,
    route: &str,
    expected: &str,
    untruthful: &mut Vec<String>,
) -> anyhow::Result<()> {
    let status = stack.status().await?;
    let entry = route_status(&status, route)?;
    if entry["state"] != expected {
        untruthful.push(format!(
            "{route}: expected {expected}, status says {}",
            entry["summary"]
        ));
    }
    Ok(())
}

/// A gradual shift whose service dies after the first step: exit 3, and the
/// traffic leaves the service within the propagation maximum plus 1 s
/// (`migrate` measures it from CloudWatch at 1 s and prints it).
async fn dying_service(
    stack: &mut Stack,
    profile: &Profile,
    max: Duration,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let route = "users";
    // The service dies within step 1's interval, after every node has it
    // (every node applied the step, so the service really got traffic).
    let interval = format!("{}s", max.as_secs() + 3);
    let killed = kill_service_mid_shift(
        stack,
        profile,
        &KillMidShift {
            route,
            interval: &interval,
            after_step: max + Duration::from_millis(500),
            timeout: MIGRATE_TIMEOUT,
            verbose: false,
        },
    )
    .await?;
    let run = killed.run;
    // The service stays dead: this stack ends with the scenario.
    let reach = run.output.lines().find_map(|line| {
        let rest = line.split("rollback reached the data plane in ").nth(1)?;
        rest.split(' ').next()?.parse::<f64>().ok()
    });
    // A service killed before the rollback's write had stopped getting
    // requests before it: migrate says so (no reach to measure, never 0.0 s);
    // the traffic left it before the rollback, within any limit.
    let stopped_before = run
        .output
        .contains("the service had stopped getting requests before the rollback");
    let reach = reach.or(stopped_before.then_some(0.0));
    outcome.figure("dying service: exit", format!("{:?}", run.code));
    outcome.figure(
        "rollback reached traffic s",
        match reach {
            _ if stopped_before => "stopped before the rollback (the service was dead)".to_owned(),
            Some(s) => format!("{s:.1}"),
            None => "?".to_owned(),
        },
    );
    outcome.check(run.code == Some(3), || {
        format!(
            "migrate exited {:?}, expected 3: {}",
            run.code,
            run.output.trim_end()
        )
    });
    let limit = max.as_secs_f64() + 1.0;
    outcome.check(reach.is_some_and(|s| s <= limit), || {
        format!(
            "the rollback's reach in the traffic was {reach:?} s, more than {limit} s or not measured: {}",
            run.output.trim_end()
        )
    });
    let status = stack.status().await?;
    let entry = route_status(&status, route)?;
    outcome.check(entry["state"] == "on-monolith", || {
        format!("users is not back on the monolith: {}", entry["summary"])
    });
    Ok(())
}

/// Two shifts at once under throttling: the lock lets one through; the
/// other exits 4 naming the holder, or (when throttling delayed it until the
/// first had finished) exits 0 finding nothing to do. The route ends on the
/// service, no lock left.
async fn two_operators(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let route = "threads";
    let args = [
        "shift",
        route,
        "--steps",
        "50,100",
        "--interval",
        "1s",
        "--skip-parity",
    ];
    let first = stack.spawn_migrate(&args)?;
    let second = stack.spawn_migrate(&args)?;
    let (a, b) = tokio::join!(
        finish(first, &args, MIGRATE_TIMEOUT),
        finish(second, &args, MIGRATE_TIMEOUT)
    );
    let runs = [a?, b?];
    let mut codes = [runs[0].code, runs[1].code];
    codes.sort();
    outcome.figure("two operators: exits", format!("{codes:?}"));
    let after_the_first = runs
        .iter()
        .any(|r| r.code == Some(0) && r.output.contains("nothing to do"));
    outcome.check(
        codes == [Some(0), Some(4)] || (codes == [Some(0), Some(0)] && after_the_first),
        || {
            format!(
                "expected one exit 0 and one exit 4 (or nothing to do), got {codes:?}: {} --- {}",
                runs[0].output.trim_end(),
                runs[1].output.trim_end()
            )
        },
    );
    let status = stack.status().await?;
    let entry = route_status(&status, route)?;
    outcome.check(
        entry["state"] == "on-service" && status["lock"].is_null(),
        || format!("final state {}, lock {}", entry["summary"], status["lock"]),
    );
    stack
        .migrate(&["rollback", route], MIGRATE_TIMEOUT)
        .await?
        .expect(0)?;
    Ok(())
}
