//! Scenario 1: shift/rollback cycles, direct and gradual, across the three
//! routes while clients load the ALB and check every answer.

use std::time::Duration;

use crate::Profile;
use crate::load::{Load, expected_answers};
use crate::report::Outcome;
use crate::stack::{ROUTES, Stack};

use super::group_requests;

const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn under_load(
    stack: &mut Stack,
    profile: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let answers = expected_answers(&stack.server_url("monolith")).await?;
    let mut to_services_before = 0;
    for route in ROUTES {
        to_services_before += group_requests(stack, route).await?;
    }
    let load = Load::start(
        &stack.data_url(),
        &answers,
        profile.connections,
        profile.max_requests,
        profile.max_load_time,
    )?;
    let (mut cycles, mut direct, mut gradual) = (0, 0, 0);
    let mut migrate_seconds = 0.0;
    let mut result = Ok(());
    for cycle in 0..profile.cycles {
        let route = ROUTES[cycle % ROUTES.len()];
        // One sweep over the three routes direct, the next gradual.
        let is_gradual = (cycle / ROUTES.len()) % 2 == 1;
        let mut shift = vec!["-v", "shift", route, "--skip-parity"];
        if is_gradual {
            shift.extend(["--steps", "50,100", "--interval", "200ms"]);
        } else {
            shift.extend(["--steps", "100"]);
        }
        let step = async {
            let run = stack.migrate(&shift, MIGRATE_TIMEOUT).await?;
            run.expect(0)?;
            let back = stack
                .migrate(&["-v", "rollback", route], MIGRATE_TIMEOUT)
                .await?;
            back.expect(0)?;
            anyhow::Ok(run.elapsed + back.elapsed)
        };
        match step.await {
            Ok(elapsed) => migrate_seconds += elapsed.as_secs_f64(),
            Err(err) => {
                result = Err(err.context(format!("cycle {}", cycle + 1)));
                break;
            }
        }
        cycles += 1;
        if is_gradual {
            gradual += 1;
        } else {
            direct += 1;
        }
    }
    let tally = load.tally.clone();
    let figures = load.finish().await;
    let examples = tally.examples();
    let mut to_services = 0;
    for route in ROUTES {
        to_services += group_requests(stack, route).await?;
    }
    outcome.figure("requests", figures.requests);
    outcome.figure("req/s", format!("{:.0}", figures.per_second()));
    outcome.figure("connections", profile.connections);
    let [p50, p99, max] = figures.latency_ms;
    outcome.figure(
        "latency p50/p99/max ms",
        format!("{p50:.1}/{p99:.1}/{max:.1}"),
    );
    outcome.figure(
        "cycles",
        format!("{cycles} ({direct} direct, {gradual} gradual)"),
    );
    outcome.figure(
        "migrate s/cycle",
        format!("{:.2}", migrate_seconds / cycles.max(1) as f64),
    );
    outcome.figure("answered by services", to_services - to_services_before);
    outcome.figure("failed requests", figures.failed);
    outcome.figure("connection errors", figures.connection_errors);
    result?;
    outcome.check(cycles == profile.cycles, || {
        format!("{cycles} of {} cycles ran", profile.cycles)
    });
    outcome.check(
        figures.failed == 0 && figures.connection_errors == 0,
        || format!("clients noticed the cutover: {examples:?}"),
    );
    outcome.check(to_services > to_services_before, || {
        "no request reached a service: the shifts moved no traffic".into()
    });
    Ok(())
}
