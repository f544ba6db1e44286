//! Scenarios 2 to 5: `migrate` killed, the local ALB killed, a service killed
//! mid-shift, and two operators at once.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Profile;
use crate::load::{Answer, expected_answers};
use crate::report::Outcome;
use crate::stack::{Process, Stack, finish};

use super::{
    KillMidShift, KilledMidShift, kill_service_mid_shift, measured_share, route_status, routing_of,
};

const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);
/// Requests sent to measure where a route's traffic goes.
const SHARE_SAMPLE: u64 = 200;
/// How far a measured share may be from the reported percentage (200 weighted
/// random picks: 5 standard deviations at 50%).
const SHARE_TOLERANCE: f64 = 0.18;

/// `shift ROUTE --steps STEPS --interval INTERVAL --skip-parity`: these
/// scenarios are about the moves, not about parity.
fn shift_args<'a>(route: &'a str, steps: &'a str, interval: &'a str) -> [&'a str; 7] {
    [
        "shift",
        route,
        "--steps",
        steps,
        "--interval",
        interval,
        "--skip-parity",
    ]
}

/// Starts `migrate -v` [`shift_args`]: `-v` prints each ELBv2 call once it is
/// answered, and each step, the points to kill at.
fn start_verbose_shift(
    stack: &Stack,
    route: &str,
    steps: &str,
    interval: &str,
) -> anyhow::Result<Process> {
    let mut args = vec!["-v"];
    args.extend(shift_args(route, steps, interval));
    stack.spawn_migrate(&args)
}

/// Scenario 2: SIGKILL `migrate` at each step of a gradual shift: after it takes the
/// lock, after its first step, after its second; then `status` must tell the
/// truth (checked against measured traffic), `rollback` must complete without
/// `--force-unlock`, and no lock or weight may remain.
pub async fn migrate_killed(
    stack: &mut Stack,
    _: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let route = "users";
    // Each needle is the `-v` line printed once that call was answered.
    let kill_points = [
        ("after taking the lock", "elbv2 AddTags"),
        ("between step 1's two writes", "elbv2 ModifyRule"),
        ("after step 1 (10%)", "step 1/3"),
        ("after step 2 (50%)", "step 2/3"),
    ];
    let mut truthful = 0;
    let mut rolled_back = 0;
    for (label, needle) in kill_points {
        let mut shift = start_verbose_shift(stack, route, "10,50,100", "3s")?;
        shift.wait_for_line(needle, Duration::from_secs(60)).await?;
        shift.kill9().await;
        let status = stack.status().await?;
        let entry = route_status(&status, route)?;
        let reported = entry["percent"]
            .as_f64()
            .context("status reports no percent")?
            / 100.0;
        let share = measured_share(stack, route, "/api/users", SHARE_SAMPLE).await?;
        let lock_free = status["lock"].is_null();
        if outcome.check(
            (reported - share).abs() <= SHARE_TOLERANCE && lock_free,
            || {
                format!(
                    "killed {label}: status says {} ({}% on the service, lock {}), traffic shows {:.0}%",
                    entry["summary"], entry["percent"], status["lock"], share * 100.0
                )
            },
        ) {
            truthful += 1;
        }
        stack
            .migrate(&["rollback", route], MIGRATE_TIMEOUT)
            .await?
            .expect(0)
            .with_context(|| format!("rollback after killing migrate {label}"))?;
        let after = stack.status().await?;
        let entry = route_status(&after, route)?;
        let share = measured_share(stack, route, "/api/users", 20).await?;
        let stale = after["stale_locks"].as_array().map_or(0, Vec::len);
        if outcome.check(
            entry["state"] == "on-monolith"
                && entry["restored"] == true
                && entry["weights"].as_array().is_some_and(Vec::is_empty)
                && after["lock"].is_null()
                && stale == 0
                && share == 0.0,
            || {
                format!(
                    "after killing migrate {label} and rolling back: {}, lock {}, {stale} stale locks, {:.0}% on the service",
                    entry["summary"], after["lock"], share * 100.0
                )
            },
        ) {
            rolled_back += 1;
        }
    }
    outcome.figure("kill points", kill_points.len());
    outcome.figure("status truthful", truthful);
    outcome.figure("rolled back clean", rolled_back);
    Ok(())
}

/// Scenario 3: SIGKILL the local ALB during a gradual shift, first in the
/// interval after step 1 (50%) was acknowledged, then in the middle of step 1
/// (right after SetRulePriorities was answered, while `migrate` reads back
/// and tags); restart it on the same state directory and ports each time: the
/// routing must be step 1's, and traffic must flow again.
pub async fn alb_killed(
    stack: &mut Stack,
    _: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let route = "posts";
    let answers = expected_answers(&stack.server_url("monolith")).await?;
    let mut acknowledged = None;
    let (mut kept, mut down, mut resume, mut healthy) = (0, Vec::new(), Vec::new(), Vec::new());
    for (moment, needle) in [
        ("in the interval", "step 1/2"),
        ("mid-step", "elbv2 SetRulePriorities"),
    ] {
        let mut shift = start_verbose_shift(stack, route, "50,100", "3s")?;
        shift.wait_for_line(needle, Duration::from_secs(60)).await?;
        // In the interval nothing moves: read what step 1 left, to compare
        // both restarts with.
        if acknowledged.is_none() {
            acknowledged = Some(routing_of(&stack.status().await?, route)?);
        }
        stack.kill_alb().await;
        let killed_at = Instant::now();
        let run = finish(shift, &["shift", route], MIGRATE_TIMEOUT).await?;
        outcome.check(run.code == Some(1), || {
            format!(
                "migrate exited {:?} while the ALB was down ({moment}), expected 1",
                run.code
            )
        });
        stack.restart_alb().await?;
        let restarted = Instant::now();
        down.push(format!("{:.1}", (restarted - killed_at).as_secs_f64()));
        let after = routing_of(&stack.status().await?, route)?;
        let expected = acknowledged.as_ref().context("no acknowledged routing")?;
        if outcome.check(after == *expected && expected["percent"] == 50, || {
            format!(
                "killed {moment}: after the restart the routing is {after}, but the last acknowledged change was {expected}"
            )
        }) {
            kept += 1;
        }
        resume.push(format!(
            "{:.2}",
            traffic_resumes(stack, &answers).await?.as_secs_f64()
        ));
        let share = measured_share(stack, route, "/api/posts", SHARE_SAMPLE).await?;
        outcome.check((share - 0.5).abs() <= SHARE_TOLERANCE, || {
            format!(
                "killed {moment}: after the restart {:.0}% of /api/posts reached the service, expected 50%",
                share * 100.0
            )
        });
        stack
            .migrate(&["rollback", route], MIGRATE_TIMEOUT)
            .await?
            .expect(0)?;
        // Target health is not persisted: the next shift's health gate waits
        // for the restarted ALB's checks.
        stack.wait_healthy(Duration::from_secs(60)).await?;
        healthy.push(format!("{:.1}", restarted.elapsed().as_secs_f64()));
    }
    outcome.figure("kills", 2);
    outcome.figure("state kept", format!("{kept}/2"));
    outcome.figure("s down", down.join(", "));
    outcome.figure("s to resume", resume.join(", "));
    outcome.figure("s to healthy", healthy.join(", "));
    Ok(())
}

/// How long after now every path gets the contract's answer through the ALB
/// again (at most 30 s).
async fn traffic_resumes(stack: &Stack, answers: &[(String, Answer)]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let client = reqwest::Client::new();
    loop {
        let mut all = true;
        for (path, expected) in answers {
            let ok = match client
                .get(format!("{}{path}", stack.data_url()))
                .send()
                .await
            {
                Ok(response) => {
                    response.status().as_u16() == expected.status
                        && response
                            .bytes()
                            .await
                            .is_ok_and(|b| b.as_ref() == expected.body)
                }
                Err(_) => false,
            };
            all &= ok;
        }
        if all {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("traffic did not resume within 30 s of the restart");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scenario 4: SIGKILL the users service during a gradual shift under load:
/// the local ALB sends what can't connect to the monolith and marks the target
/// unhealthy, `migrate` sees it in the target's health, rolls back and exits
/// 3. No more requests may fail than were in flight at the kill.
pub async fn service_dies(
    stack: &mut Stack,
    profile: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let route = "users";
    let KilledMidShift {
        run,
        in_flight,
        killed_at,
        back_at,
        tally,
        figures,
    } = kill_service_mid_shift(
        stack,
        profile,
        &KillMidShift {
            route,
            interval: "5s",
            after_step: Duration::from_millis(500),
            timeout: MIGRATE_TIMEOUT,
            verbose: true,
        },
    )
    .await?;
    let failed_in_window = tally.failures_between(killed_at, back_at);
    let status = stack.status().await?;
    let entry = route_status(&status, route)?;
    outcome.figure("migrate exit", format!("{:?}", run.code));
    outcome.figure(
        "s to rollback",
        format!("{:.2}", (back_at - killed_at).as_secs_f64()),
    );
    outcome.figure("in flight at kill", in_flight);
    outcome.figure("failed in window", failed_in_window);
    outcome.figure("requests", figures.requests);
    outcome.check(failed_in_window as u64 <= in_flight, || {
        format!(
            "{failed_in_window} requests failed between the kill and the rollback, more than the {in_flight} in flight at the kill"
        )
    });
    outcome.check(run.code == Some(3), || {
        format!(
            "migrate exited {:?}, expected 3 (gate failed, rolled back): {}",
            run.code,
            run.output.trim_end()
        )
    });
    outcome.check(entry["state"] == "on-monolith", || {
        format!(
            "the route is not back on the monolith: {}",
            entry["summary"]
        )
    });
    stack.restart_server(route).await?;
    Ok(())
}

/// Scenario 5: two `migrate shift` at once on the same listener: one proceeds, the
/// other exits 4 naming the holder.
pub async fn two_operators(
    stack: &mut Stack,
    _: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let route = "threads";
    let args = shift_args(route, "50,100", "1s");
    let first = stack.spawn_migrate(&args)?;
    let second = stack.spawn_migrate(&args)?;
    let pids = [first.pid(), second.pid()];
    let (a, b) = tokio::join!(
        finish(first, &args, MIGRATE_TIMEOUT),
        finish(second, &args, MIGRATE_TIMEOUT)
    );
    let runs = [a?, b?];
    let codes: Vec<Option<i32>> = runs.iter().map(|r| r.code).collect();
    outcome.figure("exit codes", format!("{codes:?}"));
    let winner = runs.iter().position(|r| r.code == Some(0));
    let loser = runs.iter().position(|r| r.code == Some(4));
    match (winner, loser) {
        (Some(w), Some(l)) => {
            let holder = format!("pid {}", pids[w].unwrap_or_default());
            outcome.check(runs[l].output.contains(&holder), || {
                format!(
                    "the loser's message does not name the holder ({holder}): {}",
                    runs[l].output.trim_end()
                )
            });
        }
        _ => {
            outcome.check(false, || {
                format!(
                    "expected one exit 0 and one exit 4; outputs:\n{}\n---\n{}",
                    runs[0].output.trim_end(),
                    runs[1].output.trim_end()
                )
            });
        }
    }
    let status = stack.status().await?;
    let entry = route_status(&status, route)?;
    let stale = status["stale_locks"].as_array().map_or(0, Vec::len);
    outcome.check(
        entry["state"] == "on-service" && status["lock"].is_null() && stale == 0,
        || {
            format!(
                "final state: {}, lock {}, {stale} stale locks",
                entry["summary"], status["lock"]
            )
        },
    );
    outcome.figure("final state", entry["state"].as_str().unwrap_or("?"));
    Ok(())
}
