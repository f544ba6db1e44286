//! `shift` and `rollback`: steps behind gates, each write checked as written
//! (in its answer, else read back), each change journaled; any failed gate rolls the route back (exit 3).
//!
//! Once a shift has written anything, every other error (an API call that
//! failed after the SDK's retries, a failed write, a lock refresh that failed)
//! also ends in a rollback (exit 1); if that rollback fails too, the error
//! states the route's last known state and the command that finishes it.
//! Three things stop a shift without a rollback: a gate already rolled back,
//! the lock taken away by a colleague (exit 4: the route is theirs now), and
//! Ctrl-C during an interval (exit 130: the operator decides what next).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::cli::{AbortArgs, LockArgs, PromoteArgs, RollbackArgs, ShiftArgs, Step};
use crate::context::{Ctx, Listing};
use crate::custom_gates::{self, Verdict};
use crate::error::{Failure, usage};
use crate::journal::{self, Entry, LAST_CHANGE_TAG};
use crate::journal::{now_rfc3339, snapshot};
use crate::lock::Lock;
use crate::metric_gates::Judge as MetricJudge;
use crate::notify::{Event, Kind};
use crate::output::Output;
use crate::output::print_json;
use crate::output::record_outcome;
use crate::plan::{self, Plan, SegmentEnd};
use crate::probe::{ProbeTally, Prober};
use crate::settings::{GatePhase, RouteSettings};
use crate::state::pending_steps;
use crate::state::{RouteState, RouteView, RuleInfo, Write, target_group_name};

/// How long a written rule may take to read back as written.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(15);

/// The evidence an interval gathers of the traffic at the share of the step
/// before it: its probes and its metric gates' evaluations.
const INTERVAL_EVIDENCE: [&str; 3] = ["probes", "metrics", "metric_evaluations"];

/// The outcome of one route's shift or rollback, for `--output json`.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub route: String,
    pub from: String,
    pub to: String,
    pub steps: Vec<serde_json::Value>,
    pub routing_changes: usize,
    /// What the AWS API calls cost (`budget::Budget`'s JSON), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_api: Option<serde_json::Value>,
    /// How soon a rollback reached the traffic (`metric_gates::RollbackReach`),
    /// when it was watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_reach: Option<crate::metric_gates::RollbackReach>,
    /// How long this command waited for another operator's lock (`--wait`).
    pub lock_waited_ms: u64,
    /// After a shift's last step: when every load balancer node routes by
    /// it (RFC 3339; its write plus `propagation_max`, waited out before
    /// the command ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every_node_by: Option<String>,
    /// After a rollback: the rules ficus does not manage that still forward
    /// to the route's service (`Listing::also_forwarding`), left in place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_forwarding: Vec<crate::state::AlsoForwarding>,
}

impl Outcome {
    /// A route that the command left as it was, with the reason in `to`
    /// (or, empty, a shift's outcome before its first step).
    fn untouched(route: &str, from: String, to: String, lock: &Lock) -> Outcome {
        Outcome {
            route: route.to_owned(),
            from,
            to,
            steps: vec![],
            routing_changes: 0,
            aws_api: None,
            rollback_reach: None,
            lock_waited_ms: lock.waited.as_millis() as u64,
            every_node_by: None,
            also_forwarding: Vec::new(),
        }
    }
}

pub async fn shift(ctx: &mut Ctx, args: &ShiftArgs) -> anyhow::Result<ExitCode> {
    ctx.settings.route(&args.route)?;
    // The rule's weighted forward then carries it for `promote` too.
    apply_sticky(ctx, &args.route, args.sticky);
    let route_settings = ctx.settings.route(&args.route)?.clone();
    // The steps: --to N (N, a hold, the route's steps above N), --steps, else
    // the route's `steps` (default [100]).
    let steps: Vec<Step> = match (args.to, &args.steps) {
        (Some(to), _) => plan::steps_to(to, &route_settings.steps),
        (None, Some(steps)) => steps.clone(),
        (None, None) => route_settings
            .steps
            .iter()
            .map(|p| Step::Percent(*p))
            .collect(),
    };
    check_steps_and_sticky(&steps, args.sticky)?;
    let interval = args.interval.unwrap_or(route_settings.interval);
    let fresh = Plan::new(steps, "", interval, args.bake);
    if fresh.segment().0.len() > 1 && ctx.settings.lb_url.is_none() {
        return Err(usage(
            "a gradual shift probes the route through the load balancer: set `lb_url` in migrate.toml",
        ));
    }
    drive(
        ctx,
        Drive {
            route: args.route.clone(),
            settings: route_settings,
            start: Some(fresh),
            to: args.to,
            allow_unhealthy: args.allow_unhealthy,
            skip_parity: args.skip_parity,
            allow_shadow: args.allow_shadow,
            lock: args.lock.clone(),
            again: shift_again(args),
        },
    )
    .await
}

/// `--sticky` (shift and plan): it wins over the route's `sticky` for this run.
pub fn apply_sticky(ctx: &mut Ctx, route: &str, sticky: Option<Duration>) {
    if let (Some(sticky), Some(route)) = (sticky, ctx.settings.routes.get_mut(route)) {
        route.sticky = Some(sticky);
    }
}

/// Checks a step list as `--steps` (exit 2 naming the problem), and notes
/// on stderr a `--sticky` that no weighted step would use (shift and plan).
pub fn check_steps_and_sticky(steps: &[Step], sticky: Option<Duration>) -> anyhow::Result<()> {
    plan::check_steps(steps).map_err(|problem| usage(format!("--steps: {problem}")))?;
    if let Some(sticky) = sticky
        && !steps
            .iter()
            .any(|step| matches!(step, Step::Percent(p) if *p > 0 && *p < 100))
    {
        eprintln!(
            "migrate: note: --sticky {} has no effect on this shift: it has no weighted step \
             (stickiness holds clients on one side while both serve; at 100% there is one side)",
            humantime::format_duration(sticky)
        );
    }
    Ok(())
}

/// `migrate promote`: the plan on the route's rule continues to its next
/// hold or its end (or, during a bake, ends the bake after one judgement).
pub async fn promote(ctx: &mut Ctx, args: &PromoteArgs) -> anyhow::Result<ExitCode> {
    let route_settings = ctx.settings.route(&args.route)?.clone();
    drive(
        ctx,
        Drive {
            route: args.route.clone(),
            settings: route_settings,
            start: None,
            to: None,
            allow_unhealthy: args.allow_unhealthy,
            skip_parity: args.skip_parity,
            allow_shadow: false,
            lock: args.lock.clone(),
            again: again_command(
                &args.route,
                None,
                None,
                args.allow_unhealthy,
                args.skip_parity,
                false,
                "promote",
            ),
        },
    )
    .await
}

/// The `shift` command line that continues this one (its steps, interval
/// and flags).
fn shift_again(args: &ShiftArgs) -> String {
    let steps = args.to.map(|to| format!(" --to {to}")).or_else(|| {
        args.steps.as_ref().map(|steps| {
            let steps: Vec<String> = steps.iter().map(ToString::to_string).collect();
            format!(" --steps {}", steps.join(","))
        })
    });
    again_command(
        &args.route,
        steps,
        args.interval,
        args.allow_unhealthy,
        args.skip_parity,
        args.allow_shadow,
        "shift",
    )
}

/// `migrate COMMAND ROUTE` with the given steps, interval and flags.
fn again_command(
    route: &str,
    steps: Option<String>,
    interval: Option<Duration>,
    allow_unhealthy: bool,
    skip_parity: bool,
    allow_shadow: bool,
    command: &str,
) -> String {
    let mut again = format!("migrate {command} {route}{}", steps.unwrap_or_default());
    if let Some(interval) = interval {
        again.push_str(&format!(
            " --interval {}",
            humantime::format_duration(interval)
        ));
    }
    for (set, flag) in [
        (allow_unhealthy, " --allow-unhealthy"),
        (skip_parity, " --skip-parity"),
        (allow_shadow, " --allow-shadow"),
    ] {
        if set {
            again.push_str(flag);
        }
    }
    again
}

/// What `shift` or `promote` runs.
struct Drive {
    route: String,
    settings: RouteSettings,
    /// `shift`: the new plan (replacing the rule's); `promote`: `None`, the
    /// rule's plan continues.
    start: Option<Plan>,
    /// `shift --to`: below the current share, the route steps down.
    to: Option<u8>,
    allow_unhealthy: bool,
    skip_parity: bool,
    allow_shadow: bool,
    lock: LockArgs,
    /// The command that continues after Ctrl-C.
    again: String,
}

/// The plan to run now, decided once the listener is locked and read.
struct Prepared {
    plan: Plan,
    /// The percentages of this run, and how the run ends.
    segment: Vec<u8>,
    end: SegmentEnd,
    /// `--to` below the current share.
    step_down: Option<u8>,
    /// How long to bake once the segment reaches 100% (zero: one judgement).
    bake: Option<Duration>,
    /// Plan keys on the rule when it was read.
    on_rule: Vec<String>,
    /// A new plan (`shift`), written on the rule before the first step.
    fresh: bool,
    /// Whether the plan is kept on the rule: always but for a one-step
    /// shift without a bake, which leaves nothing to continue.
    persist: bool,
}

/// Reads the rule's plan (a malformed one is refused, exit 2) and decides
/// what this run does.
fn prepare(ctx: &Ctx, listing: &Listing, drive: &Drive, who: &str) -> anyhow::Result<Prepared> {
    let view = listing.view(&ctx.settings, &drive.route)?;
    if crate::retire::is_retired(&view) {
        // A step below 100% would send clients to a monolith that may no
        // longer serve these paths; at 100% there is nothing to do.
        return Err(usage(format!(
            "{route}: retired: the service alone serves it and the monolith may no longer serve its paths; nothing was changed. `migrate rollback {route} --yes` returns it to the monolith, then `migrate shift {route}` starts again",
            route = drive.route
        )));
    }
    let on_rule = match view.rule() {
        Some(rule) => Plan::from_tags(&rule.tags)
            .map_err(|why| usage(format!("{}: nothing was changed: {why}", drive.route)))?,
        None => None,
    };
    let state = view.state();
    let (mut plan, step_down) = match &drive.start {
        Some(fresh) => {
            if let Some(old) = &on_rule {
                // Said even with -q: a colleague's plan is about to go.
                eprintln!(
                    "migrate: {}: this shift replaces the plan on the rule ({}; steps {}, by {})",
                    drive.route,
                    old.describe(&drive.route, time::OffsetDateTime::now_utc()),
                    old.steps_text(),
                    old.by
                );
            }
            let mut plan = fresh.clone();
            plan.by = who.to_owned();
            let current = state.percent().unwrap_or(0);
            let step_down = drive.to.filter(|to| *to < current);
            (plan, step_down)
        }
        None => match on_rule {
            Some(plan) => (plan, None),
            None => {
                let start = if state.percent() == Some(100) {
                    format!(
                        "it is wholly on the service; `migrate rollback {}` or `migrate shift {} --to N` moves it back",
                        drive.route, drive.route
                    )
                } else {
                    format!(
                        "start one with `migrate shift {} --to 10` or `--steps 10,hold,50,100`",
                        drive.route
                    )
                };
                return Err(usage(format!(
                    "{route}: nothing to promote: its rule carries no plan (the route is {}); {start}",
                    state.explain(),
                    route = drive.route
                )));
            }
        },
    };
    let (segment, end, bake) = if drive.start.is_none() && plan.bake_until.is_some() {
        // Promote during a bake: one more judgement, then done.
        (Vec::new(), SegmentEnd::End, Some(Duration::ZERO))
    } else if let Some(to) = step_down {
        let hold = plan.index_of(to).map_or(SegmentEnd::End, |i| {
            if plan.steps.get(i + 1) == Some(&Step::Hold) {
                SegmentEnd::Hold(i + 1)
            } else {
                SegmentEnd::End
            }
        });
        (vec![to], hold, None)
    } else {
        let (items, end) = plan.segment();
        let bake = plan.bake;
        (items.into_iter().map(|(_, p)| p).collect(), end, bake)
    };
    if drive.start.is_none()
        && (segment.len() > 1 || state.percent().is_some_and(|p| p > 0))
        && ctx.settings.lb_url.is_none()
    {
        return Err(usage(
            "promote probes the route through the load balancer between steps: set `lb_url` in migrate.toml",
        ));
    }
    let on_rule = view
        .rule()
        .map(|rule| {
            plan::PLAN_KEYS
                .iter()
                .filter(|k| rule.tags.contains_key(**k))
                .map(|k| (*k).to_owned())
                .collect()
        })
        .unwrap_or_default();
    let persist = drive.start.is_none()
        || plan.bake.is_some()
        || plan.steps.contains(&Step::Hold)
        || plan::percents(&plan.steps).len() > 1;
    if drive.start.is_some() {
        plan.since = time::OffsetDateTime::now_utc();
    }
    Ok(Prepared {
        plan,
        segment,
        end,
        step_down,
        bake,
        on_rule,
        fresh: drive.start.is_some(),
        persist,
    })
}

async fn drive(ctx: &mut Ctx, drive: Drive) -> anyhow::Result<ExitCode> {
    ctx.start_who();
    record_outcome(&json!({ "route": drive.route }));
    // The first step's parity sample runs while the listener is locked and read.
    let options = ctx.lock_options(&drive.lock);
    let (locked, first_parity) = tokio::join!(ctx.lock_and_list(&options), async {
        if drive.skip_parity {
            None
        } else {
            Some(timed_parity_gate(ctx, &drive.route).await)
        }
    });
    let (mut lock, listing) = locked?;
    let who = ctx.who().await;
    let prepared = match prepare(ctx, &listing, &drive, &who) {
        Ok(prepared) => prepared,
        Err(err) => {
            let _ = lock.release(&ctx.elb).await;
            return Err(err);
        }
    };
    if drive.start.is_none() {
        // `migrate promote`: the plan continues from where it stands.
        let from = listing
            .view(&ctx.settings, &drive.route)
            .ok()
            .and_then(|view| view.state().percent());
        ctx.notifier.emit(
            Event::new(Kind::Promoted, Some(&drive.route))
                .shares(from, prepared.segment.last().copied()),
        );
    }
    // Listened for once the lock is ours (Ctrl-C while waiting for it just
    // ends the process, which leaves nothing behind that matters).
    let interrupt = match CtrlC::listen() {
        Ok(interrupt) => interrupt,
        Err(err) => {
            let _ = lock.release(&ctx.elb).await;
            return Err(err);
        }
    };
    let metrics = ctx.settings.metric_gates(&drive.route);
    // Gradual: more than one step, or a plan kept on the rule (a hold, a
    // promote, a bake), so there are intervals to judge.
    let gradual = prepared.segment.len() > 1 || prepared.persist;
    let mut run = Shift {
        interrupt,
        metrics: MetricJudge::new(&ctx.sdk, ctx.verbose, metrics, gradual),
        moved: false,
        last: None,
        first_parity,
        route: drive.route.clone(),
        settings: drive.settings.clone(),
        steps: prepared.segment.clone(),
        interval: prepared.plan.interval,
        allow_unhealthy: drive.allow_unhealthy,
        skip_parity: drive.skip_parity,
        allow_shadow: drive.allow_shadow,
        expected: None,
        next: 0,
        who: String::new(),
        outcome: Outcome::untouched(&drive.route, String::new(), String::new(), &lock),
        written: None,
        judged_since: (!prepared.fresh).then_some(prepared.plan.since),
        plan: Some(prepared),
    };
    let result = match run.start_plan(ctx, &lock, &listing).await {
        Ok(()) => run.run(ctx, &mut lock, &listing).await,
        Err(err) => Err(err),
    };
    let result = match result {
        Ok(()) => run.finish_plan(ctx, &mut lock, &listing).await,
        other => other,
    };
    let result = match result {
        Err(err) if interrupted(&err) => Err(run.interrupted(&drive.again)),
        Err(err) if run.moved && !stops_without_rollback(&err) => {
            run.recover(ctx, &lock, err).await
        }
        other => other,
    };
    run.left_where_last_seen();
    let released = lock.release(&ctx.elb).await;
    // Taken after the lock's release, the command's last call: the same
    // figure as the "AWS API:" line on stderr.
    run.outcome.aws_api = Some(crate::budget::used().to_json());
    record_outcome(&run.outcome);
    summarize(ctx, Some(run.outcome.routing_changes));
    result?;
    released?;
    if ctx.output == Output::Json {
        print_json(&run.outcome)?;
    } else {
        println!("{}: {}", run.outcome.route, run.outcome.to);
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify::parity_gate`, timed with `-v`.
async fn timed_parity_gate(ctx: &Ctx, route: &str) -> anyhow::Result<Option<String>> {
    let started = Instant::now();
    let parity = crate::verify::parity_gate(&ctx.settings, route).await;
    if ctx.verbose {
        eprintln!(
            "migrate: parity gate {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    parity
}

/// With `-v`: the number of calls, how many changed routing (for commands
/// that write), the time spent in calls and the wall time. (The AWS API
/// budget is `lib::report_budget`'s, on every exit path.)
pub fn summarize(ctx: &Ctx, routing_changes: Option<usize>) {
    if ctx.verbose {
        let calls = ctx.elb.calls();
        let api_ms: f64 = calls.iter().map(|c| c.millis).sum();
        let routing = routing_changes
            .map(|n| format!(" ({n} changed routing)"))
            .unwrap_or_default();
        // The lock's settle is AWS's tag consistency, not migrate's work.
        let settle = crate::lock::settle_waited();
        let settle = if settle.is_zero() {
            String::new()
        } else {
            format!(
                ", of which {:.1} ms waiting for the lock to settle",
                settle.as_secs_f64() * 1000.0
            )
        };
        eprintln!(
            "migrate: {} ELBv2 calls{routing}, {api_ms:.1} ms in calls, {:.1} ms wall{settle}",
            calls.len(),
            ctx.started.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Errors after which a shift must not roll back: a gate failure (already
/// rolled back), a lock that is no longer ours, Ctrl-C.
fn stops_without_rollback(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<Failure>(),
            Some(
                Failure::GateFailed(_)
                    | Failure::LockLost { .. }
                    | Failure::LockHeld { .. }
                    | Failure::Interrupted(_)
            )
        )
    })
}

fn interrupted(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(Failure::Interrupted(_))))
}

/// Ctrl-C (SIGINT), listened for from the start of a shift so that none is
/// missed; a shift stops at the next interval or between steps.
struct CtrlC(tokio::signal::unix::Signal);

impl CtrlC {
    fn listen() -> anyhow::Result<CtrlC> {
        use anyhow::Context as _;
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("cannot listen for Ctrl-C")?;
        Ok(CtrlC(signal))
    }

    /// Waits for Ctrl-C.
    async fn pressed(&mut self) {
        if self.0.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether Ctrl-C was pressed, without waiting.
    async fn was_pressed(&mut self) -> bool {
        tokio::select! {
            biased;
            _ = self.pressed() => true,
            _ = std::future::ready(()) => false,
        }
    }
}

/// The error that stops a shift on Ctrl-C; [`Shift::interrupted`] words it.
fn stop_on_ctrl_c() -> anyhow::Error {
    Failure::Interrupted("interrupted (Ctrl-C)".into()).into()
}

/// A step of a run: its share, its place in the whole plan (`step 2/3`
/// for the progress line and the outcome: a hold's steps count too, so a
/// shift that stops at a hold never reads as done), and whether it is the
/// first of a new shift (no interval before it).
struct StepAt {
    percent: u8,
    number: usize,
    of: usize,
    first: bool,
}

impl StepAt {
    fn progress(&self) -> String {
        format!("step {}/{}", self.number, self.of)
    }
}

struct Shift {
    interrupt: CtrlC,
    /// The metric gates and when the last step was applied.
    metrics: MetricJudge,
    /// Whether any write was attempted (routing may have changed).
    moved: bool,
    /// The route as last read or written.
    last: Option<RouteView>,
    /// The parity gate's answer for the first step, computed up front.
    first_parity: Option<anyhow::Result<Option<String>>>,
    route: String,
    settings: RouteSettings,
    steps: Vec<u8>,
    interval: Duration,
    allow_unhealthy: bool,
    skip_parity: bool,
    allow_shadow: bool,
    /// The monolith's status class per probe path, learned once per shift.
    expected: Option<Vec<Option<u16>>>,
    /// The percent of the step being judged or made.
    next: u8,
    /// The operator, for events and custom gates.
    who: String,
    outcome: Outcome,
    /// The plan kept on the rule, and what this run does of it.
    plan: Option<Prepared>,
    /// When the last step's writes were read back: its change reaches every
    /// load balancer node by then plus `propagation_max`.
    written: Option<tokio::time::Instant>,
    /// Since when no `migrate` judged the route's gates: the plan's `since`
    /// for `promote` (the hold, or a killed run, began then); `None` for a
    /// new shift. Probes and health can only be judged live; gates over
    /// metric history judge the whole window from here.
    judged_since: Option<time::OffsetDateTime>,
}

impl Shift {
    async fn run(
        &mut self,
        ctx: &mut Ctx,
        lock: &mut Lock,
        listing: &Listing,
    ) -> anyhow::Result<()> {
        let mut view = listing.view(&ctx.settings, &self.route)?;
        self.last = Some(view.clone());
        let state = view.state();
        self.outcome.from = state.explain();
        self.preflight(listing, &view, &state)?;
        let pending = match self.plan.as_ref().and_then(|p| p.step_down) {
            Some(to) => vec![to],
            None => pending_steps(&state, &self.steps),
        };
        self.learn_before_changing(ctx, listing, &view, &state, &pending)
            .await?;
        if pending.is_empty() {
            self.outcome.to = format!("already {}; nothing to do", state.explain());
            return Ok(());
        }
        let continuing = state.percent().is_some_and(|p| p > 0) && ctx.settings.lb_url.is_some();
        self.who = ctx.who().await;
        // Their verdicts are journaled with the first step's.
        let mut before_shift = self.before_shift(ctx, lock, &state, &pending).await?;
        let planned = self
            .plan
            .as_ref()
            .map(|p| plan::percents(&p.plan.steps))
            .unwrap_or_default();
        for (index, percent) in pending.iter().copied().enumerate() {
            // Numbered against the plan (all its steps, those before a hold
            // and those after); a step outside it (none today) by this run.
            let (number, of) = match planned.iter().position(|p| *p == percent) {
                Some(at) => (at + 1, planned.len()),
                None => (index + 1, pending.len()),
            };
            let step = StepAt {
                percent,
                number,
                of,
                first: index == 0 && !continuing,
            };
            let evidence = std::mem::take(&mut before_shift);
            self.step(ctx, lock, listing, &mut view, step, evidence)
                .await?;
        }
        self.await_propagation(ctx, lock).await?;
        self.outcome.to = view.state().explain();
        Ok(())
    }

    /// What the gates need before anything changes: the monolith's status
    /// classes for the probes (a gradual shift, or one from a share), and one
    /// GetMetricData (a missing permission stops it here), also with no step
    /// left but a bake to judge (`promote`).
    async fn learn_before_changing(
        &mut self,
        ctx: &Ctx,
        listing: &Listing,
        view: &RouteView,
        state: &RouteState,
        pending: &[u8],
    ) -> anyhow::Result<()> {
        if pending.len() > 1 || state.percent().is_some_and(|p| p > 0) {
            let host = crate::coverage::probe_host(&self.route, &self.settings, view)
                .map_err(|why| usage(format!("{}: nothing was changed: {why}", self.route)))?;
            let on_monolith = matches!(state, RouteState::OnMonolith { .. });
            self.expected = self.monolith_classes(ctx, host, on_monolith).await;
        }
        let bakes = self.plan.as_ref().is_some_and(|p| p.bake.is_some());
        if !pending.is_empty() || bakes {
            self.metrics.prepare(listing, &self.route, view).await?;
        }
        Ok(())
    }

    /// The shift starts (`shift.started`) and its before-shift gates judge
    /// it, told its last step; their evidence, or the failed gate's error.
    async fn before_shift(
        &mut self,
        ctx: &mut Ctx,
        lock: &Lock,
        state: &RouteState,
        pending: &[u8],
    ) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        let from = state.percent().unwrap_or(0);
        self.next = pending.last().copied().unwrap_or(100);
        ctx.notifier.emit(
            Event::new(Kind::ShiftStarted, Some(&self.route))
                .shares(Some(from), pending.last().copied()),
        );
        let mut evidence = serde_json::Map::new();
        let phases = [GatePhase::BeforeShift];
        if let Some(reason) = self.custom_gates(ctx, &phases, from, &mut evidence).await {
            return Err(self.fail(ctx, lock, reason, evidence).await);
        }
        self.notify_passed(ctx, from, &evidence, &phases, None);
        Ok(evidence)
    }

    /// One step: its gates (`evidence` holds the verdicts judged so far),
    /// its writes, each read back, the journal entry and `step.applied`, and
    /// the step in the outcome. A failed gate rolls back (exit 3).
    async fn step(
        &mut self,
        ctx: &mut Ctx,
        lock: &mut Lock,
        listing: &Listing,
        view: &mut RouteView,
        step: StepAt,
        mut evidence: serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<()> {
        let percent = step.percent;
        self.next = percent;
        let from = view.state().percent().unwrap_or(0);
        let phases = custom_gates::step_phases(percent);
        let verdict = self
            .judge_step(ctx, lock, listing, view, step.first, &mut evidence)
            .await?;
        self.give_back_interval_evidence(&evidence);
        if let Some(reason) = verdict {
            // The gates judged before the one that failed did pass.
            let failed = gate_name(&reason, &evidence);
            self.notify_passed(ctx, from, &evidence, &phases, Some(&failed));
            return Err(self.fail(ctx, lock, reason, evidence).await);
        }
        self.notify_passed(ctx, from, &evidence, &phases, None);
        let before = view.clone();
        let writes = view
            .transition(percent)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.route))?;
        if self.interrupt.was_pressed().await {
            return Err(stop_on_ctrl_c());
        }
        let started = Instant::now();
        let done = match self.write_step(ctx, lock, listing, view, &writes).await? {
            Ok(done) => done,
            Err(reason) => {
                evidence.insert("read_back".into(), json!(reason));
                return Err(self.fail(ctx, lock, reason, evidence).await);
            }
        };
        self.written = Some(tokio::time::Instant::now());
        self.metrics.applied(ctx.settings.propagation_max);
        self.journal_step(ctx, lock, (&before, view), percent, done, &evidence)
            .await?;
        if ctx.chatty() {
            eprintln!(
                "migrate: {}: {}: {percent}% on the service ({}, {:.0} ms; {})",
                self.route,
                step.progress(),
                crate::output::count(writes.len(), "write", "writes"),
                started.elapsed().as_secs_f64() * 1000.0,
                evidence_line(&evidence)
            );
        }
        self.record_step(&step, evidence);
        Ok(())
    }

    /// The interval before a step watched the previous step's share: what
    /// it saw there (probes, metric gates) is that step's own evidence in
    /// the outcome (`--output json`'s `steps`), also when it failed the
    /// shift. The journal keeps it with the write it let happen.
    fn give_back_interval_evidence(
        &mut self,
        evidence: &serde_json::Map<String, serde_json::Value>,
    ) {
        let Some(previous) = self
            .outcome
            .steps
            .last_mut()
            .and_then(|step| step["evidence"].as_object_mut())
        else {
            return;
        };
        for key in INTERVAL_EVIDENCE {
            if let Some(value) = evidence.get(key) {
                previous.insert(key.to_owned(), value.clone());
            }
        }
        record_outcome(&self.outcome);
    }

    /// A step in the outcome, with its own evidence: without what the
    /// interval before it saw of the previous step of this run (given back
    /// to that step).
    fn record_step(
        &mut self,
        step: &StepAt,
        mut evidence: serde_json::Map<String, serde_json::Value>,
    ) {
        if !self.outcome.steps.is_empty() {
            evidence.retain(|key, _| !INTERVAL_EVIDENCE.contains(&key.as_str()));
        }
        self.outcome.steps.push(json!({
            "percent": step.percent,
            "step": step.number,
            "of": step.of,
            "evidence": evidence,
        }));
        record_outcome(&self.outcome);
    }

    /// A step's journal entry (its evidence; the plan's position moves to
    /// it) and its `step.applied` event.
    async fn journal_step(
        &mut self,
        ctx: &mut Ctx,
        lock: &Lock,
        (before, after): (&RouteView, &RouteView),
        percent: u8,
        done: Vec<String>,
        evidence: &serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<()> {
        let what = format!("shift to {percent} percent");
        let plan_tags = self.plan_advance(percent);
        let journal_id = record_with(
            ctx,
            lock,
            (&self.route, "shift", &what),
            (before, after),
            done,
            serde_json::Value::Object(evidence.clone()),
            &plan_tags,
            None,
        )
        .await?;
        let from = before.state().percent().unwrap_or(0);
        ctx.notifier.emit(
            Event::new(Kind::StepApplied, Some(&self.route))
                .shares(Some(from), Some(percent))
                .step(percent)
                .journal(&journal_id),
        );
        Ok(())
    }

    /// After the run's last step: no step is done before every load
    /// balancer node routes by it, which AWS promises by no time; migrate
    /// waits `propagation_max` from the write (said on stderr), keeping the
    /// lock and listening for Ctrl-C.
    async fn await_propagation(&mut self, ctx: &Ctx, lock: &mut Lock) -> anyhow::Result<()> {
        let Some(written) = self.written else {
            return Ok(());
        };
        let max = ctx.settings.propagation_max;
        let settled = written + max;
        let left = settled.saturating_duration_since(tokio::time::Instant::now());
        if !left.is_zero() {
            if ctx.chatty() {
                eprintln!(
                    "migrate: {}: waiting {:.1} s for the change to reach every node (propagation_max {})",
                    self.route,
                    left.as_secs_f64(),
                    humantime::format_duration(max)
                );
            }
            tokio::select! {
                _ = tokio::time::sleep_until(settled) => {}
                _ = self.interrupt.pressed() => return Err(stop_on_ctrl_c()),
            }
            if lock.needs_refresh() {
                lock.refresh(&ctx.elb).await?;
            }
        }
        self.outcome.every_node_by = Some(crate::journal::now_rfc3339());
        Ok(())
    }

    /// The route can be shifted: it has a rule, and nothing on the listener
    /// (coverage, shadowing, priorities) refuses it. Nothing was changed.
    fn preflight(
        &self,
        listing: &Listing,
        view: &RouteView,
        state: &RouteState,
    ) -> anyhow::Result<()> {
        match state {
            RouteState::Missing => {
                anyhow::bail!(
                    "route `{}` has no rule on the listener; run `migrate init`",
                    self.route
                )
            }
            RouteState::Inconsistent { .. } if view.rule().is_none() => {
                anyhow::bail!("{}: {}", self.route, state.explain())
            }
            _ => {}
        }
        let problems = crate::coverage::preflight(listing, view, &self.route, self.allow_shadow);
        if !problems.is_empty() {
            return Err(usage(format!(
                "{}: nothing was changed:\n  {}",
                self.route,
                problems.join("\n  ")
            )));
        }
        Ok(())
    }

    /// A step's writes, each read back: what was written, or `Err(reason)`
    /// when a write did not read back as written (a failed gate).
    async fn write_step(
        &mut self,
        ctx: &Ctx,
        lock: &Lock,
        listing: &Listing,
        view: &mut RouteView,
        writes: &[Write],
    ) -> anyhow::Result<Result<Vec<String>, String>> {
        let mut done = Vec::new();
        for write in writes {
            // Judged on the rule as it was (a parked rule's action moves no
            // traffic), counted once the write is confirmed: a call that
            // failed (throttled to exhaustion) routed nothing.
            let routing = view.changes_routing(write);
            self.moved = true;
            match execute(ctx, lock, listing, &self.route, view, write).await {
                Ok((next, made, note, _)) => {
                    if routing {
                        self.outcome.routing_changes += 1;
                    }
                    done.push(note.unwrap_or_else(|| made.describe()));
                    *view = next;
                    self.last = Some(view.clone());
                }
                Err(WriteError::NotConfirmed(reason)) => return Ok(Err(reason)),
                Err(WriteError::Failed(err)) => return Err(err),
            }
        }
        Ok(Ok(done))
    }

    /// A new plan goes on the rule before the first step, so that a killed
    /// `migrate` leaves it for `status`, `promote` and `abort` anywhere.
    async fn start_plan(
        &mut self,
        ctx: &Ctx,
        lock: &Lock,
        listing: &Listing,
    ) -> anyhow::Result<()> {
        let Some(prepared) = self.plan.as_mut() else {
            return Ok(());
        };
        if !prepared.fresh || !prepared.persist {
            return Ok(());
        }
        let view = listing.view(&ctx.settings, &self.route)?;
        let Some(rule) = view.rule() else {
            return Ok(());
        };
        if prepared.step_down.is_none()
            && prepared.bake.is_none()
            && pending_steps(&view.state(), &prepared.segment).is_empty()
        {
            // Nothing to move (already there): no plan to keep.
            prepared.persist = false;
            return Ok(());
        }
        let (tags, _) = prepared.plan.tags();
        let stale: Vec<String> = prepared
            .on_rule
            .iter()
            .filter(|k| !tags.iter().any(|(key, _)| key == k))
            .cloned()
            .collect();
        write_plan(ctx, lock, &rule.arn, &prepared.plan, &stale).await
    }

    /// After a step: the plan's position moves to it; returns the tags that
    /// record it on the rule (none when the plan is not kept there).
    fn plan_advance(&mut self, percent: u8) -> Vec<(&'static str, String)> {
        let Some(prepared) = self.plan.as_mut() else {
            return Vec::new();
        };
        if let Some(index) = prepared.plan.index_of(percent) {
            prepared.plan.at = Some(index);
        }
        prepared.plan.since = time::OffsetDateTime::now_utc();
        if prepared.persist {
            prepared.plan.tags().0
        } else {
            Vec::new()
        }
    }

    /// After the run's steps: at a hold, the plan records it; at the end,
    /// the bake (if any) and then the plan leaves the rule.
    async fn finish_plan(
        &mut self,
        ctx: &mut Ctx,
        lock: &mut Lock,
        listing: &Listing,
    ) -> anyhow::Result<()> {
        let (Some(view), Some(prepared)) = (self.last.clone(), self.plan.as_mut()) else {
            return Ok(());
        };
        let Some(rule) = view.rule() else {
            return Ok(());
        };
        let now = time::OffsetDateTime::now_utc();
        match prepared.end {
            SegmentEnd::Hold(index) => {
                prepared.plan.at = Some(index);
                prepared.plan.since = now;
                write_plan(ctx, lock, &rule.arn, &prepared.plan, &[]).await?;
                let share = view.state().percent();
                ctx.notifier
                    .emit(Event::new(Kind::Held, Some(&self.route)).shares(share, share));
                self.outcome.to = format!(
                    "{}; {}",
                    prepared.plan.describe(&self.route, now),
                    view.state().explain()
                );
            }
            SegmentEnd::End => {
                let written = if prepared.persist {
                    prepared.plan.tags().0
                } else {
                    Vec::new()
                };
                let mut keys: Vec<String> = written
                    .iter()
                    .map(|(k, _)| (*k).to_owned())
                    .chain(prepared.on_rule.iter().cloned())
                    .collect();
                keys.sort();
                keys.dedup();
                if let Some(bake) = prepared.bake {
                    if !bake.is_zero() {
                        let until =
                            now + time::Duration::try_from(bake).unwrap_or(time::Duration::MAX);
                        prepared.plan.bake_until = Some(until);
                        write_plan(ctx, lock, &rule.arn, &prepared.plan, &[]).await?;
                        keys.push(plan::BAKE_UNTIL_TAG.to_owned());
                        keys.dedup();
                        if ctx.chatty() {
                            eprintln!(
                                "migrate: {}: on the service; baking until {} (gates watching)",
                                self.route,
                                crate::journal::rfc3339(until)
                            );
                        }
                    }
                    self.bake(ctx, lock, listing, &view, bake).await?;
                }
                if !keys.is_empty() {
                    lock.confirm(&ctx.elb).await?;
                    ctx.elb.remove_tags(&rule.arn, &keys).await?;
                }
            }
        }
        Ok(())
    }

    /// The bake: the gates keep watching the route at 100% for `duration`
    /// (probes and target health through the interval, then coverage,
    /// health and parity, as before a step: metric gates join them in
    /// `judge_step`); a failed gate rolls back (exit 3).
    async fn bake(
        &mut self,
        ctx: &mut Ctx,
        lock: &mut Lock,
        listing: &Listing,
        view: &RouteView,
        duration: Duration,
    ) -> anyhow::Result<()> {
        let interval = std::mem::replace(&mut self.interval, duration);
        let mut evidence = serde_json::Map::new();
        evidence.insert(
            "bake".into(),
            json!(humantime::format_duration(duration).to_string()),
        );
        let verdict = self
            .judge_step(ctx, lock, listing, view, false, &mut evidence)
            .await;
        self.interval = interval;
        if let Some(reason) = verdict? {
            let reason = format!("during the bake, {reason}");
            return Err(self.fail(ctx, lock, reason, evidence).await);
        }
        journal_only(
            ctx,
            &self.route,
            "bake passed; the plan is done",
            view,
            serde_json::Value::Object(evidence),
        )
        .await
    }

    /// Everything a step must pass before its writes: after an interval of
    /// probes and health polls (before every step but the first of a new
    /// shift), the coverage gate; then health and parity. `Some(reason)`
    /// when one fails. The bake judges through here too (`bake`), so a gate
    /// added here (metric gates) watches the bake as well; gates over history
    /// judge from [`Shift::judged_since`] when it is set (a `promote` after a
    /// hold nobody watched), else over the interval.
    async fn judge_step(
        &mut self,
        ctx: &Ctx,
        lock: &mut Lock,
        listing: &Listing,
        view: &RouteView,
        first: bool,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<Option<String>> {
        if let Some(since) = self.judged_since.take() {
            // The metric gates judge the whole unwatched time; recorded with
            // the first judgement after a hold or a killed run.
            self.metrics
                .unwatched_since(since.unix_timestamp_nanos() as f64 / 1e9);
            evidence.insert(
                "unwatched_since".into(),
                json!(crate::journal::rfc3339(since)),
            );
        }
        if !first {
            let (tally, unhealthy) = self
                .probe_interval(ctx, lock, &view.service_tg, evidence)
                .await?;
            evidence.insert("probes".into(), json!(tally));
            if let Some(reason) = unhealthy {
                return Ok(Some(reason));
            }
            if tally.over_budget(self.settings.error_budget, self.settings.min_probes, true) {
                return Ok(Some(format!(
                    "probes during the interval exceeded the error budget of {:.1}%: {}",
                    self.settings.error_budget * 100.0,
                    tally.summary()
                )));
            }
            if let Some(reason) = coverage_gate(ctx, listing, view, evidence).await? {
                return Ok(Some(reason));
            }
        }
        self.gates(ctx, view, first, evidence).await
    }

    /// The status class the monolith answers for each probe path: asked of
    /// `monolith.base_url`, or else of the load balancer while the route is
    /// wholly on the monolith. `None` (probes then count only failures and
    /// 5xx, and say so) when neither answers.
    async fn monolith_classes(
        &self,
        ctx: &Ctx,
        host: Option<String>,
        on_monolith: bool,
    ) -> Option<Vec<Option<u16>>> {
        let paths = self.settings.probe_paths();
        let mut tried = Vec::new();
        let mut sources = Vec::new();
        if let Some(base) = &ctx.settings.monolith.base_url {
            sources.push(("monolith.base_url", base.clone(), None));
        }
        if let (true, Some(lb)) = (on_monolith, &ctx.settings.lb_url) {
            sources.push(("lb_url, the route being on the monolith", lb.clone(), host));
        }
        for (name, url, host) in sources {
            let classes = match Prober::new(&url, host, &paths, self.settings.probe_rate) {
                Ok(prober) => prober.answer_classes().await,
                Err(err) => Err(err),
            };
            match classes {
                Ok(classes) => return Some(classes),
                Err(err) => tried.push(format!("{name}: {err}")),
            }
        }
        if ctx.chatty() {
            eprintln!(
                "migrate: {}: probes count only failed requests and 5xx answers: the monolith's answers to the probe paths are unknown ({})",
                self.route,
                if tried.is_empty() {
                    "set monolith.base_url".to_owned()
                } else {
                    tried.join("; ")
                }
            );
        }
        None
    }

    /// The gates before a step; `Some(reason)` when one fails.
    async fn gates(
        &mut self,
        ctx: &Ctx,
        view: &RouteView,
        first_step: bool,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<Option<String>> {
        if let Some(reason) = self.health_gate(ctx, &view.service_tg, evidence).await? {
            return Ok(Some(reason));
        }
        if self.skip_parity {
            evidence.insert("parity".into(), json!("skipped (--skip-parity)"));
            return Ok(self.step_gates(ctx, view, evidence).await);
        }
        let parity = match self.first_parity.take() {
            Some(parity) if first_step => parity,
            _ => timed_parity_gate(ctx, &self.route).await,
        };
        match parity {
            Ok(None) => {
                evidence.insert("parity".into(), json!("passed"));
                Ok(self.step_gates(ctx, view, evidence).await)
            }
            Ok(Some(summary)) => {
                evidence.insert("parity".into(), json!(summary));
                Ok(Some(format!("parity gate: {summary}")))
            }
            Err(err)
                if first_step
                    && err
                        .chain()
                        .any(|e| matches!(e.downcast_ref(), Some(Failure::Usage(_)))) =>
            {
                // A settings problem, found before anything changed: exit 2.
                Err(err)
            }
            Err(err) => {
                evidence.insert("parity".into(), json!(format!("error: {err:#}")));
                Ok(Some(format!("parity gate could not run: {err:#}")))
            }
        }
    }

    /// The custom gates of the step (`step`, and `before-full` for the step
    /// to 100%), once the built-in ones passed.
    async fn step_gates(
        &self,
        ctx: &Ctx,
        view: &RouteView,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Option<String> {
        let from = view.state().percent().unwrap_or(0);
        let phases = custom_gates::step_phases(self.next);
        self.custom_gates(ctx, &phases, from, evidence).await
    }

    /// Runs the route's custom gates of these phases; their verdicts go to
    /// stderr and the evidence. `Some(reason)` naming the first that fails.
    async fn custom_gates(
        &self,
        ctx: &Ctx,
        phases: &[GatePhase],
        from: u8,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Option<String> {
        let mut verdicts = Vec::new();
        for phase in phases {
            let call = custom_gates::Call {
                route: &self.route,
                phase: *phase,
                from,
                to: self.next,
                who: &self.who,
                base_dir: &ctx.settings.base_dir,
            };
            verdicts.extend(custom_gates::run_phase(&self.settings.gates, &call).await);
        }
        report_verdicts(ctx, &self.route, &verdicts, evidence)
    }

    /// A `gate.passed` event for each gate that passed before the step (a
    /// dry-run gate's verdict included, marked dry-run); when a gate failed
    /// the step, for those judged before it (`failed` and failing gates left out).
    fn notify_passed(
        &self,
        ctx: &Ctx,
        from: u8,
        evidence: &serde_json::Map<String, serde_json::Value>,
        phases: &[GatePhase],
        failed: Option<&str>,
    ) {
        let built_in = ["health", "parity", "probes", "coverage", "metrics"]
            .into_iter()
            .filter(|gate| Some(*gate) != failed)
            .filter(|gate| {
                evidence
                    .get(*gate)
                    .is_some_and(|value| !value.as_str().is_some_and(|v| v.starts_with("skipped")))
            })
            .map(|gate| (gate.to_owned(), false, None));
        let verdicts: Vec<Verdict> = evidence
            .get("gates")
            .and_then(|gates| serde_json::from_value(gates.clone()).ok())
            .unwrap_or_default();
        let custom = verdicts
            .into_iter()
            .filter(|v| phases.contains(&v.phase) && !v.fails())
            .map(|v| {
                let reason = (v.dry_run && !v.passed).then_some(v.reason);
                (v.gate, v.dry_run, reason)
            });
        for (gate, dry_run, reason) in built_in.chain(custom) {
            let mut event = Event::new(Kind::GatePassed, Some(&self.route))
                .shares(Some(from), Some(self.next))
                .step(self.next)
                .gate(&gate, reason);
            event.dry_run = dry_run;
            ctx.notifier.emit(event);
        }
    }

    /// The health gate: the service's target group must have a healthy
    /// target, and (unless tolerated) no target that is not healthy.
    async fn health_gate(
        &self,
        ctx: &Ctx,
        service_tg: &str,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<Option<String>> {
        let health = ctx.elb.target_health(service_tg).await?;
        let tolerated = self.allow_unhealthy || self.settings.allow_unhealthy;
        let (problem, seen) = health_verdict(&health, service_tg, tolerated);
        evidence.insert("health".into(), seen);
        Ok(problem)
    }

    /// The prober of an interval: the route's probe paths through `lb_url`
    /// (with the Host its rule's host conditions need), expecting what the
    /// monolith answered when known.
    fn interval_prober(&self, ctx: &Ctx) -> anyhow::Result<Prober> {
        let lb_url = ctx.settings.lb_url.clone().unwrap_or_default();
        let host = match &self.last {
            Some(view) => {
                crate::coverage::probe_host(&self.route, &self.settings, view).map_err(usage)?
            }
            None => None,
        };
        let mut prober = Prober::new(
            &lb_url,
            host,
            &self.settings.probe_paths(),
            self.settings.probe_rate,
        )?;
        if let Some(classes) = &self.expected {
            prober.expect(classes.clone());
        }
        Ok(prober)
    }

    /// The interval's progress bar on stderr (hidden unless chatty), over
    /// `length` (the wait for propagation_max and the interval).
    fn interval_bar(&self, ctx: &Ctx, length: Duration) -> indicatif::ProgressBar {
        if !ctx.chatty() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(length.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "migrate: {msg} [{bar:30}] {elapsed}/{duration}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    }

    /// Probes the route through the load balancer for one interval, keeping
    /// the lock fresh, and reads the service's target health every
    /// `health_poll`; stops early when the budget is blown or the health gate
    /// fails (its reason is returned).
    async fn probe_interval(
        &mut self,
        ctx: &Ctx,
        lock: &mut Lock,
        service_tg: &str,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<(ProbeTally, Option<String>)> {
        let prober = self.interval_prober(ctx)?;
        let started = tokio::time::Instant::now();
        // The interval starts once the last step reached every node
        // (`propagation_max` after its write); probes run meanwhile too.
        let settled = self
            .written
            .map_or(started, |written| written + ctx.settings.propagation_max)
            .max(started);
        if settled > started && ctx.chatty() {
            eprintln!(
                "migrate: {}: waiting {:.1} s for the change to reach every node (propagation_max {}); the interval of {} starts then",
                self.route,
                (settled - started).as_secs_f64(),
                humantime::format_duration(ctx.settings.propagation_max),
                humantime::format_duration(self.interval)
            );
        }
        let deadline = settled + self.interval;
        let bar = self.interval_bar(ctx, deadline - started);
        let mut ticker = tokio::time::interval(prober.period());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tally = ProbeTally::default();
        let mut index = 0;
        let mut next_health = started + self.settings.health_poll;
        // The metric gates are evaluated every period from the step's window
        // (after propagation_max); a step waits past its interval (up to
        // `max_wait`) while they are inconclusive.
        let mut next_metrics = settled + self.metrics.gates.period;
        let wait_until = deadline + self.metrics.gates.max_wait;
        let mut waiting_said = false;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                if !(self.metrics.pending() && now < wait_until) {
                    break;
                }
                if !waiting_said && ctx.chatty() {
                    waiting_said = true;
                    bar.suspend(|| {
                        eprintln!(
                            "migrate: {}: the metric gates are inconclusive ({}); waiting up to {} for data",
                            self.route,
                            self.metrics.latest_summary(),
                            humantime::format_duration(self.metrics.gates.max_wait)
                        )
                    });
                }
            }
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.interrupt.pressed() => {
                    bar.finish_and_clear();
                    return Err(stop_on_ctrl_c());
                }
            }
            if tokio::time::Instant::now() >= deadline && !self.metrics.pending() {
                break;
            }
            prober.probe(index, &mut tally).await;
            index += 1;
            bar.set_position(started.elapsed().as_millis() as u64);
            bar.set_message(format!(
                "{}: probing, {} ok / {} errors",
                self.route,
                tally.total - tally.errors,
                tally.errors
            ));
            if tally.over_budget(self.settings.error_budget, self.settings.min_probes, false) {
                break;
            }
            if tokio::time::Instant::now() >= next_health {
                next_health = tokio::time::Instant::now() + self.settings.health_poll;
                if let Some(reason) = self.health_gate(ctx, service_tg, evidence).await? {
                    bar.finish_and_clear();
                    return Ok((tally, Some(format!("during the interval, {reason}"))));
                }
            }
            if self.metrics.active() && tokio::time::Instant::now() >= next_metrics {
                next_metrics = tokio::time::Instant::now() + self.metrics.gates.period;
                let evaluation = self.metrics.evaluate().await?;
                self.metrics.record(evaluation, evidence);
                if let Some(reason) = self.metrics.failed() {
                    bar.finish_and_clear();
                    return Ok((tally, Some(reason)));
                }
            }
            if lock.needs_refresh() {
                lock.refresh(&ctx.elb).await?;
            }
        }
        bar.finish_and_clear();
        let probes_failed =
            tally.over_budget(self.settings.error_budget, self.settings.min_probes, true);
        if !probes_failed && let Some(reason) = self.metrics.inconclusive() {
            return Ok((tally, Some(reason)));
        }
        Ok((tally, None))
    }

    /// Rolls the route back after a failed gate and returns the exit-3 error
    /// (or the error that stopped the rollback).
    async fn fail(
        &mut self,
        ctx: &mut Ctx,
        lock: &Lock,
        reason: String,
        evidence: serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Error {
        match self
            .roll_back_after_gate(ctx, lock, &reason, evidence)
            .await
        {
            Ok(moved) => Failure::GateFailed(format!("{}: {reason}; {moved}", self.route)).into(),
            Err(err) => err,
        }
    }

    /// [`Shift::fail`]'s rollback; what it did, e.g. `rolled back: on the
    /// monolith`. A gate failure that changed nothing is journaled too.
    async fn roll_back_after_gate(
        &mut self,
        ctx: &mut Ctx,
        lock: &Lock,
        reason: &str,
        mut evidence: serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<String> {
        // A colleague who took the lock (and perhaps rolled the route back)
        // owns the route now: stop before judging it ours (exit 4).
        lock.confirm(&ctx.elb).await?;
        evidence.insert("gate_failed".into(), json!(reason));
        let from = self
            .last
            .as_ref()
            .map_or(0, |view| view.state().percent().unwrap_or(0));
        ctx.notifier.emit(
            Event::new(Kind::GateFailed, Some(&self.route))
                .shares(Some(from), Some(self.next))
                .step(self.next)
                .gate(&gate_name(reason, &evidence), Some(reason.to_owned())),
        );
        let evidence = serde_json::Value::Object(evidence);
        let listing = ctx.list().await?;
        let view = listing.view(&ctx.settings, &self.route)?;
        self.last = Some(view.clone());
        let what = "gate failed; rolled back to the monolith";
        let (after, changes, reach) = rollback_view(
            ctx,
            lock,
            &listing,
            &self.route,
            view.clone(),
            evidence.clone(),
            ("shift", what),
        )
        .await?;
        self.last = Some(after.clone());
        self.outcome.routing_changes += changes;
        self.outcome.to = after.state().explain();
        self.outcome.rollback_reach = reach;
        let moved = if after.rules == view.rules {
            journal_only(
                ctx,
                &self.route,
                "gate failed; nothing had moved",
                &view,
                evidence,
            )
            .await?;
            "nothing had moved"
        } else {
            "rolled back"
        };
        Ok(format!("{moved}: {}", after.state().explain()))
    }

    /// After an error once routing may have changed: rolls the route back.
    /// If that fails too, the error says loudly where the route was last seen
    /// and which command finishes the rollback.
    async fn recover(
        &mut self,
        ctx: &mut Ctx,
        lock: &Lock,
        err: anyhow::Error,
    ) -> anyhow::Result<()> {
        if ctx.chatty() {
            eprintln!("migrate: {}: the shift failed; rolling back", self.route);
        }
        let evidence = json!({ "error": format!("{err:#}") });
        let attempt = async {
            let listing = ctx.list().await?;
            let view = listing.view(&ctx.settings, &self.route)?;
            rollback_view(
                ctx,
                lock,
                &listing,
                &self.route,
                view,
                evidence,
                ("shift", "error; rolled back to the monolith"),
            )
            .await
        }
        .await;
        match attempt {
            Ok((after, changes, reach)) => {
                self.outcome.routing_changes += changes;
                self.outcome.to = after.state().explain();
                self.outcome.rollback_reach = reach;
                Err(err.context(format!(
                    "{}: the shift failed and was rolled back: {}",
                    self.route,
                    after.state().explain()
                )))
            }
            Err(lost) if stops_without_rollback(&lost) => Err(lost),
            Err(rollback_err) => {
                let last = self.last.as_ref().map_or_else(
                    || "unknown".to_owned(),
                    |view| {
                        let rule = view.rule().map_or_else(String::new, |rule| {
                            format!(
                                "; rule {}: {}, {}",
                                rule.arn,
                                priority_text(rule.priority),
                                rule.action.describe()
                            )
                        });
                        format!("{}{rule}", view.state().explain())
                    },
                );
                self.outcome.to = format!("unknown; last seen {last}");
                Err(anyhow::anyhow!(
                    "{route}: THE ROLLBACK FAILED: the route may still send traffic to its service.\n  \
                     the shift failed: {err:#}\n  \
                     the rollback failed: {rollback_err:#}\n  \
                     last known state: {last}\n  \
                     finish it with `migrate rollback {route}` as soon as the ELBv2 API answers (`migrate status {route}` shows where it stands)",
                    route = self.route,
                ))
            }
        }
    }

    /// The error for Ctrl-C: where the route stands and the two ways on
    /// (the plan on the rule continues with `promote`).
    /// A run that stopped without saying where it left the route (Ctrl-C,
    /// a lock taken away) left it as last read or written: the outcome's
    /// `to` names that state, as every other outcome does.
    fn left_where_last_seen(&mut self) {
        if self.outcome.to.is_empty()
            && let Some(view) = &self.last
        {
            self.outcome.to = view.state().explain();
        }
    }

    fn interrupted(&self, again: &str) -> anyhow::Error {
        let state = self
            .last
            .as_ref()
            .map_or_else(|| "unchanged".to_owned(), |view| view.state().explain());
        let mut promote = format!("migrate promote {}", self.route);
        for (set, flag) in [
            (self.allow_unhealthy, " --allow-unhealthy"),
            (self.skip_parity, " --skip-parity"),
        ] {
            if set {
                promote.push_str(flag);
            }
        }
        let persisted = self.plan.as_ref().is_some_and(|p| p.persist);
        let go_on = if persisted && again != promote {
            format!("`{promote}` (from any machine; the plan is on the rule), or `{again}`")
        } else {
            format!("`{again}`")
        };
        Failure::Interrupted(format!(
            "{route}: interrupted (Ctrl-C); the route is {state}. Continue the shift: {go_on}; or undo it: `migrate rollback {route}` (`migrate abort {route} --reason ...` records why)",
            route = self.route
        ))
        .into()
    }
}

/// The health gate over a target group's health: `Some(reason)` when it has
/// no healthy target, or (unless `tolerated`) a target that is not healthy;
/// and the evidence (`healthy`, `not_healthy`).
pub(crate) fn health_verdict(
    health: &[crate::elb::TargetHealth],
    service_tg: &str,
    tolerated: bool,
) -> (Option<String>, serde_json::Value) {
    let healthy = health.iter().filter(|t| t.state == "healthy").count();
    let describe = |t: &crate::elb::TargetHealth| match &t.reason {
        Some(reason) => format!("{} {} ({reason})", t.target, t.state),
        None => format!("{} {}", t.target, t.state),
    };
    let not_healthy: Vec<String> = health
        .iter()
        .filter(|t| t.state != "healthy")
        .map(describe)
        .collect();
    let evidence = json!({ "healthy": healthy, "not_healthy": not_healthy });
    let group = target_group_name(service_tg);
    if healthy == 0 {
        let problem = format!(
            "health gate: target group {group} has no healthy target ({})",
            if not_healthy.is_empty() {
                "no targets registered".to_owned()
            } else {
                not_healthy.join(", ")
            }
        );
        return (Some(problem), evidence);
    }
    // While a target is healthy, a `draining` target (deregistered,
    // finishing its requests) and an `initial` one (registered, checks not
    // yet passed) get no new requests: every ECS deploy shows both for a
    // while, so they pass the gate (and stay in the evidence).
    let unhealthy: Vec<String> = health
        .iter()
        .filter(|t| !matches!(t.state.as_str(), "healthy" | "draining" | "initial"))
        .map(describe)
        .collect();
    if !unhealthy.is_empty() && !tolerated {
        let problem = format!(
            "health gate: target group {group} has targets that are not healthy: {} (pass --allow-unhealthy to proceed with {healthy} healthy)",
            unhealthy.join(", ")
        );
        return (Some(problem), evidence);
    }
    (None, evidence)
}

/// A gate failed while a plan held or baked and a `migrate watch` judged
/// it: the route goes back to the monolith (locked like every write), the
/// plan is removed, and the exit-3 error says why.
pub(crate) async fn roll_back_for_gate(
    ctx: &mut Ctx,
    lock: &LockArgs,
    route: &str,
    reason: &str,
    evidence: serde_json::Value,
) -> anyhow::Result<()> {
    let (lock, listing) = ctx.lock_and_list(&ctx.lock_options(lock)).await?;
    let what = "gate failed while watched; rolled back to the monolith";
    let mut evidence = evidence;
    evidence["gate_failed"] = json!(reason);
    let result = async {
        let view = listing.view(&ctx.settings, route)?;
        rollback_view(ctx, &lock, &listing, route, view, evidence, ("watch", what)).await
    }
    .await;
    let released = lock.release(&ctx.elb).await;
    let (after, _, _) = result?;
    released?;
    Err(Failure::GateFailed(format!(
        "{route}: {reason}; rolled back: {}",
        after.state().explain()
    ))
    .into())
}

/// `priority 100`, or what a rule without one is.
fn priority_text(priority: Option<u32>) -> String {
    priority.map_or_else(
        || "no priority (the default rule)".to_owned(),
        |p| format!("priority {p}"),
    )
}

/// Re-reads the monolith's rule: if it no longer covers the route's rule (its
/// conditions were edited during the shift), a rollback would park the rule
/// where it takes traffic; the step fails and says so.
async fn coverage_gate(
    ctx: &Ctx,
    listing: &Listing,
    view: &RouteView,
    evidence: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Option<String>> {
    let Some(monolith) = ctx.elb.rule(&listing.monolith.arn).await? else {
        return Ok(Some(format!(
            "coverage gate: the monolith's rule {} no longer exists",
            listing.monolith.arn
        )));
    };
    let Some(rule) = view.rule() else {
        return Ok(None);
    };
    let gaps = monolith.conditions.gaps_covering(&rule.conditions);
    evidence.insert("coverage".into(), json!(gaps));
    if gaps.is_empty() {
        return Ok(None);
    }
    let named: Vec<String> = gaps.iter().map(ToString::to_string).collect();
    Ok(Some(format!(
        "coverage gate: the monolith's rule changed and no longer covers the route's rule ({}); once rolled back, run `migrate init` to narrow the parked rule",
        named.join("; ")
    )))
}

fn evidence_line(evidence: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut parts = Vec::new();
    if let Some(health) = evidence.get("health") {
        parts.push(format!("health {} healthy", health["healthy"]));
    }
    if let Some(parity) = evidence.get("parity").and_then(|p| p.as_str()) {
        parts.push(format!("parity {parity}"));
    }
    if let Some(probes) = evidence.get("probes") {
        parts.push(format!(
            "probes {} with {} errors",
            probes["total"], probes["errors"]
        ));
    }
    parts.join(", ")
}

enum WriteError {
    /// The write was accepted but never read back as written.
    NotConfirmed(String),
    Failed(anyhow::Error),
}

/// Makes one write and checks that the rule shows what was written: in the
/// write's answer (SetRulePriorities and ModifyRule answer with the rules they
/// changed), else read back until it does. A priority slot taken meanwhile is
/// re-picked (the listener is re-read).
async fn execute(
    ctx: &Ctx,
    lock: &Lock,
    listing: &Listing,
    route: &str,
    view: &RouteView,
    write: &Write,
) -> Result<(RouteView, Write, Option<String>, f64), WriteError> {
    let mut write = write.clone();
    for _attempt in 0..3 {
        lock.confirm(&ctx.elb).await.map_err(WriteError::Failed)?;
        // When the write may first have been applied (Unix seconds): a
        // rollback's reach in the traffic is measured from it. That is the
        // start of its first attempt not refused by throttling
        // (`budget::may_have_applied_from`); the load balancer applied it
        // during that attempt or a later one, so the measure is an upper
        // bound.
        let first_sent = unix_seconds();
        let written = match &write {
            Write::MovePriority { rule, to, .. } => ctx.elb.set_priority(rule, *to).await,
            Write::SetAction { rule, to, .. } => ctx.elb.set_action(rule, to).await.map(Some),
            Write::SetConditions { rule, to, .. } => {
                ctx.elb.set_conditions(rule, to).await.map(Some)
            }
        };
        let sent_at = crate::budget::may_have_applied_from(write.action())
            .map_or(first_sent, |from| from.max(first_sent));
        let answered = match written {
            Ok(accepted) => accepted,
            // A write whose answer was an error (after the SDK's retries) may
            // still have been applied (AWS can lose the answer): re-read, and
            // never write it again when the rule already shows it.
            Err(err) => match reconcile(ctx, view, &write).await {
                Some(expected) => {
                    let note = format!(
                        "{} (its answer was an error: {err:#}; the rule read back as written, so it was not written again)",
                        write.describe()
                    );
                    if ctx.chatty() {
                        eprintln!("migrate: {route}: {note}");
                    }
                    return Ok((expected, write, Some(note), sent_at));
                }
                None => return Err(WriteError::Failed(err)),
            },
        };
        let Some(answered) = answered else {
            // The slot was taken by someone outside `migrate`: pick another.
            let rules = ctx
                .elb
                .rules(&listing.listener_arn)
                .await
                .map_err(WriteError::Failed)?;
            let mut fresh = view.clone();
            fresh.taken = rules.iter().filter_map(|r| r.priority).collect();
            let Write::MovePriority { rule, from, to } = &write else {
                return Err(WriteError::Failed(anyhow::anyhow!(
                    "only SetRulePriorities can find its slot taken"
                )));
            };
            let in_front = *to < fresh.monolith_priority;
            let slot = if in_front {
                fresh.front_slot()
            } else {
                fresh.behind_slot()
            };
            let slot = slot.ok_or_else(|| {
                WriteError::Failed(anyhow::anyhow!("{route}: no free priority left"))
            })?;
            write = Write::MovePriority {
                rule: rule.clone(),
                from: *from,
                to: slot,
            };
            continue;
        };
        let expected = view.apply(&write);
        let wanted = expected.rule().cloned();
        // The write answers with the rule as it left it: when that shows what
        // was written, it is the read-back (no DescribeRules). An answer that
        // shows something else, or no rule, is read back as before.
        let answer = answered.into_iter().find(|r| r.arn == write.rule_arn());
        if shows_written(answer.as_ref(), wanted.as_ref()) {
            return Ok((expected, write, None, sent_at));
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let seen = ctx
                .elb
                .rule(write.rule_arn())
                .await
                .map_err(WriteError::Failed)?;
            if shows_written(seen.as_ref(), wanted.as_ref()) {
                return Ok((expected, write, None, sent_at));
            }
            if started.elapsed() > READ_BACK_TIMEOUT {
                return Err(WriteError::NotConfirmed(format!(
                    "read back: after {}s the rule still shows {} instead of what was written ({})",
                    READ_BACK_TIMEOUT.as_secs(),
                    seen.map_or("no rule".to_owned(), |r| format!(
                        "{}, {}",
                        priority_text(r.priority),
                        r.action.describe()
                    )),
                    write.describe()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
    Err(WriteError::Failed(anyhow::anyhow!(
        "{route}: the priority slots kept being taken; try again"
    )))
}

/// After a write answered with an error: the view it would give when the
/// rule, read again, shows the write applied (the answer was lost), else
/// `None` (nothing known was applied; the error stands).
async fn reconcile(ctx: &Ctx, view: &RouteView, write: &Write) -> Option<RouteView> {
    let expected = view.apply(write);
    let wanted = expected.rule()?;
    let seen = ctx.elb.rule(write.rule_arn()).await.ok()??;
    shows_written(Some(&seen), Some(wanted)).then_some(expected)
}

/// Whether a rule, as read or as a write answered it, shows what was
/// written: its priority, its action (weights, stickiness) and its
/// conditions.
fn shows_written(seen: Option<&RuleInfo>, wanted: Option<&RuleInfo>) -> bool {
    match (seen, wanted) {
        (Some(seen), Some(wanted)) => {
            seen.priority == wanted.priority
                && seen.action == wanted.action
                && seen.conditions.normalized() == wanted.conditions.normalized()
        }
        _ => false,
    }
}

/// Appends the journal entry and writes the rule's last-change tag.
#[allow(clippy::too_many_arguments)]
async fn record(
    ctx: &mut Ctx,
    lock: &Lock,
    command: &str,
    route: &str,
    what: &str,
    before: &RouteView,
    after: &RouteView,
    writes: Vec<String>,
    evidence: serde_json::Value,
) -> anyhow::Result<String> {
    record_with(
        ctx,
        lock,
        (route, command, what),
        (before, after),
        writes,
        evidence,
        &[],
        None,
    )
    .await
}

/// [`record`], with more tags written in the same AddTags call (the plan's),
/// and the change's time when it is not now (`written_at`, Unix seconds).
#[allow(clippy::too_many_arguments)]
async fn record_with(
    ctx: &mut Ctx,
    lock: &Lock,
    (route, command, what): (&str, &str, &str),
    (before, after): (&RouteView, &RouteView),
    writes: Vec<String>,
    evidence: serde_json::Value,
    more_tags: &[(&str, String)],
    written_at: Option<f64>,
) -> anyhow::Result<String> {
    let who = ctx.who().await;
    let when = written_at
        .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at.floor() as i64).ok())
        .map_or_else(now_rfc3339, crate::journal::rfc3339);
    let entry = Entry {
        id: crate::journal::new_id(),
        when,
        who,
        command: command.to_owned(),
        route: route.to_owned(),
        what: what.to_owned(),
        before: snapshot(before),
        after: snapshot(after),
        writes,
        evidence,
    };
    journal::append(&ctx.settings.journal_path(), &entry)?;
    if let Some(rule) = after.rule() {
        let last_change = entry.tag_value();
        let mut tags = vec![(LAST_CHANGE_TAG, last_change.as_str())];
        tags.extend(more_tags.iter().map(|(k, v)| (*k, v.as_str())));
        // The write's own confirmation covers its journal tag, when recent.
        lock.confirm_unless_recent(&ctx.elb).await?;
        ctx.elb.add_tags(&rule.arn, &tags).await?;
    }
    Ok(entry.id)
}

/// Appends a journal entry for something that changed nothing (a gate that
/// failed before any write): no write, so no tag on the rule either.
async fn journal_only(
    ctx: &mut Ctx,
    route: &str,
    what: &str,
    view: &RouteView,
    evidence: serde_json::Value,
) -> anyhow::Result<()> {
    let entry = Entry {
        id: crate::journal::new_id(),
        when: now_rfc3339(),
        who: ctx.who().await,
        command: "shift".to_owned(),
        route: route.to_owned(),
        what: what.to_owned(),
        before: snapshot(view),
        after: snapshot(view),
        writes: Vec::new(),
        evidence,
    };
    journal::append(&ctx.settings.journal_path(), &entry)
}

/// Now, in Unix seconds.
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Brings one route back to the monolith; returns the final view, how many
/// writes changed routing, and how soon the rollback reached the traffic
/// (when metric gates are on and the route had moved).
async fn rollback_view(
    ctx: &mut Ctx,
    lock: &Lock,
    listing: &Listing,
    route: &str,
    mut view: RouteView,
    evidence: serde_json::Value,
    (command, what): (&str, &str),
) -> anyhow::Result<(RouteView, usize, Option<crate::metric_gates::RollbackReach>)> {
    let state = view.state();
    if state == RouteState::Missing {
        anyhow::bail!("route `{route}` has no rule on the listener; run `migrate init`");
    }
    let writes = view
        .transition(0)
        .map_err(|e| anyhow::anyhow!("{route}: {e}"))?;
    if writes.is_empty() {
        clear_plan(ctx, lock, &view).await?;
        return Ok((view, 0, None));
    }
    let before = view.clone();
    let from = state.percent().unwrap_or(0);
    let cause = ["gate_failed", "error", "reason"]
        .iter()
        .find_map(|key| evidence.get(*key).and_then(|v| v.as_str()))
        .unwrap_or(what)
        .to_owned();
    ctx.notifier.emit(
        Event::new(Kind::RollbackStarted, Some(route))
            .shares(Some(from), Some(0))
            .reason(cause.clone()),
    );
    let mut changes = 0;
    let mut done = Vec::new();
    // When the first write that changes routing was sent: the traffic can
    // leave the service from then on.
    let mut written_at = None;
    // When its answer came: the load balancer had accepted it by then, and
    // its nodes route by it within `propagation_max` of that.
    let mut answered_at = None;
    for write in &writes {
        let routing = view.changes_routing(write);
        if routing {
            changes += 1;
        }
        match execute(ctx, lock, listing, route, &view, write).await {
            Ok((next, made, note, sent_at)) => {
                if routing {
                    written_at.get_or_insert(sent_at);
                    answered_at.get_or_insert_with(unix_seconds);
                }
                done.push(note.unwrap_or_else(|| made.describe()));
                view = next;
            }
            Err(WriteError::NotConfirmed(reason)) => {
                anyhow::bail!("{route}: rollback not confirmed: {reason}")
            }
            Err(WriteError::Failed(err)) => return Err(err),
        }
    }
    let mut evidence = evidence;
    let mut reached = None;
    if let (true, Some(written_at)) = (
        from > 0 && ctx.settings.metric_gates(route).enabled,
        written_at,
    ) {
        // How soon the traffic left the service: watched for the longest a
        // change may take to reach the load balancer's nodes, plus 1 s.
        let cloudwatch = crate::cloudwatch::CloudWatch::new(&ctx.sdk, ctx.verbose);
        let within = ctx.settings.propagation_max + Duration::from_secs(1);
        let reach =
            crate::metric_gates::rollback_reach(&cloudwatch, listing, &view, written_at, within)
                .await;
        if ctx.chatty() {
            eprintln!("migrate: {route}: {}", reach.sentence());
        }
        if let Some(fields) = evidence.as_object_mut() {
            fields.insert("rollback_reach".into(), json!(reach));
        }
        reached = Some(reach);
    }
    let hooks = after_rollback_hooks(ctx, route, from).await;
    if !hooks.is_empty()
        && let Some(fields) = evidence.as_object_mut()
    {
        fields.insert("hooks".into(), json!(hooks));
    }
    // Recorded at the time of its first routing write's answer, not after
    // the watch and the hooks: `status` judges the traffic from the change's
    // time.
    let journal_id = record_with(
        ctx,
        lock,
        (route, command, what),
        (&before, &view),
        done,
        evidence,
        &[],
        answered_at,
    )
    .await?;
    ctx.notifier.emit(
        Event::new(Kind::RollbackFinished, Some(route))
            .shares(Some(from), view.state().percent().or(Some(0)))
            .reason(cause)
            .journal(&journal_id),
    );
    clear_plan(ctx, lock, &before).await?;
    Ok((view, changes, reached))
}

/// The route's `after-rollback` hooks, run once a rollback moved it back;
/// their verdicts are shown and journaled, and fail nothing.
async fn after_rollback_hooks(ctx: &mut Ctx, route: &str, from: u8) -> Vec<Verdict> {
    let gates = match ctx.settings.routes.get(route) {
        Some(settings) if !settings.gates.is_empty() => settings.gates.clone(),
        _ => return Vec::new(),
    };
    let who = ctx.who().await;
    let call = custom_gates::Call {
        route,
        phase: GatePhase::AfterRollback,
        from,
        to: 0,
        who: &who,
        base_dir: &ctx.settings.base_dir,
    };
    let verdicts = custom_gates::run_phase(&gates, &call).await;
    if ctx.chatty() {
        for verdict in &verdicts {
            eprintln!("migrate: {route}: hook {}", verdict.line());
        }
    }
    verdicts
}

/// Shows custom gates' verdicts and records them in the evidence (`gates`);
/// `Some(reason)` for the first that fails the step (its name in
/// `failed_gate`). Dry-run verdicts are always shown, marked dry-run.
fn report_verdicts(
    ctx: &Ctx,
    route: &str,
    verdicts: &[Verdict],
    evidence: &mut serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    if verdicts.is_empty() {
        return None;
    }
    for verdict in verdicts {
        if verdict.dry_run || ctx.chatty() {
            eprintln!("migrate: {route}: {}", verdict.line());
        }
    }
    let mut all: Vec<serde_json::Value> = evidence
        .get("gates")
        .and_then(|gates| gates.as_array().cloned())
        .unwrap_or_default();
    all.extend(verdicts.iter().map(|v| json!(v)));
    evidence.insert("gates".into(), json!(all));
    let failed = verdicts.iter().find(|v| v.fails())?;
    evidence.insert("failed_gate".into(), json!(failed.gate));
    Some(format!(
        "gate {} ({}): {}",
        failed.gate,
        failed.phase.name(),
        failed.reason
    ))
}

/// The gate a failure reason names: a custom gate (`failed_gate` in the
/// evidence), or the built-in gate its reason starts with.
fn gate_name(reason: &str, evidence: &serde_json::Map<String, serde_json::Value>) -> String {
    if let Some(gate) = evidence.get("failed_gate").and_then(|g| g.as_str()) {
        return gate.to_owned();
    }
    let reason = reason
        .strip_prefix("during the interval, ")
        .unwrap_or(reason);
    [
        ("health gate", "health"),
        ("parity gate", "parity"),
        ("probes", "probes"),
        ("coverage gate", "coverage"),
        ("metric gate", "metrics"),
        ("read back", "read-back"),
    ]
    .iter()
    .find(|(prefix, _)| reason.starts_with(prefix))
    .map_or("gate", |(_, name)| name)
    .to_owned()
}

/// Writes the plan's tags on the route's rule (and removes `stale` plan
/// keys), fenced by the lock like every write.
async fn write_plan(
    ctx: &Ctx,
    lock: &Lock,
    rule_arn: &str,
    plan: &Plan,
    stale: &[String],
) -> anyhow::Result<()> {
    let (tags, _) = plan.tags();
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
    lock.confirm(&ctx.elb).await?;
    ctx.elb.add_tags(rule_arn, &tags).await?;
    if !stale.is_empty() {
        ctx.elb.remove_tags(rule_arn, stale).await?;
    }
    Ok(())
}

/// Removes the plan's tags from the route's rule (as described in `view`),
/// when it has any: a route rolled back has no plan left.
async fn clear_plan(ctx: &Ctx, lock: &Lock, view: &RouteView) -> anyhow::Result<()> {
    let Some(rule) = view.rule() else {
        return Ok(());
    };
    let keys: Vec<String> = plan::PLAN_KEYS
        .iter()
        .filter(|k| rule.tags.contains_key(**k))
        .map(|k| (*k).to_owned())
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    lock.confirm(&ctx.elb).await?;
    ctx.elb.remove_tags(&rule.arn, &keys).await
}

/// `migrate abort`: the route back to the monolith from any state, its plan
/// removed, and why recorded (journal and last-change tag).
pub async fn abort(ctx: &mut Ctx, args: &AbortArgs) -> anyhow::Result<ExitCode> {
    ctx.settings.route(&args.route)?;
    ctx.start_who();
    record_outcome(&json!({ "route": args.route }));
    let (lock, listing) = ctx.lock_and_list(&ctx.lock_options(&args.lock)).await?;
    let route = args.route.clone();
    let what = format!("abort: {}", args.reason);
    let evidence = json!({ "reason": args.reason });
    let result = async {
        let view = listing.view(&ctx.settings, &route)?;
        if crate::retire::is_retired(&view) {
            return Err(usage(format!(
                "route `{route}` is retired and has no plan to abort; the monolith may no longer serve its paths: `migrate rollback {route} --yes` rolls it back anyway"
            )));
        }
        let from = view.state().explain();
        ctx.notifier.emit(
            Event::new(Kind::Aborted, Some(&route))
                .shares(view.state().percent(), Some(0))
                .reason(args.reason.clone()),
        );
        let (after, changes, _) = rollback_view(
            ctx,
            &lock,
            &listing,
            &route,
            view.clone(),
            evidence.clone(),
            ("abort", &what),
        )
        .await?;
        if after.rules == view.rules {
            // Nothing moved: the reason is still recorded.
            record(
                ctx,
                &lock,
                "abort",
                &route,
                &what,
                &view,
                &after,
                Vec::new(),
                evidence.clone(),
            )
            .await?;
        }
        anyhow::Ok(Outcome {
            route: route.clone(),
            from,
            to: after.state().explain(),
            steps: vec![],
            routing_changes: changes,
            aws_api: None,
            rollback_reach: None,
            lock_waited_ms: lock.waited.as_millis() as u64,
            every_node_by: None,
            also_forwarding: listing.also_forwarding(&view.service_tg),
        })
    }
    .await;
    let released = lock.release(&ctx.elb).await;
    summarize(ctx, result.as_ref().ok().map(|o| o.routing_changes));
    let mut outcome = result?;
    outcome.aws_api = Some(crate::budget::used().to_json());
    record_outcome(&outcome);
    released?;
    if ctx.output == Output::Json {
        print_json(&outcome)?;
    } else {
        println!(
            "{}: {} (aborted: {})",
            outcome.route, outcome.to, args.reason
        );
    }
    warn_also_forwarding(ctx, &outcome);
    Ok(ExitCode::SUCCESS)
}

/// After a rollback or an abort: a WARNING on stderr for each rule ficus
/// does not manage that still forwards to the route's service.
fn warn_also_forwarding(ctx: &Ctx, outcome: &Outcome) {
    for also in &outcome.also_forwarding {
        if ctx.chatty() {
            eprintln!("migrate: {}: WARNING: {}", outcome.route, also.says);
        }
    }
}

/// The routes a rollback names: one, or every configured route with `--all`.
fn rollback_routes(ctx: &Ctx, args: &RollbackArgs) -> anyhow::Result<Vec<String>> {
    if args.all {
        return Ok(ctx.settings.routes.keys().cloned().collect());
    }
    let route = args
        .route
        .clone()
        .ok_or_else(|| usage("name a route or pass --all"))?;
    ctx.settings.route(&route)?;
    Ok(vec![route])
}

pub async fn rollback(ctx: &mut Ctx, args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let routes = rollback_routes(ctx, args)?;
    ctx.start_who();
    record_outcome(&json!({ "routes": routes }));
    let (lock, listing) = ctx.lock_and_list(&ctx.lock_options(&args.lock)).await?;
    let mut outcomes = Vec::new();
    let mut result = Ok(());
    let mut routing_changes = 0;
    // Each route's `aws_api` counts from where the previous one stopped (the
    // first from the command's start, the lock included) and the last one's
    // until the lock's release: they add up to the "AWS API:" line.
    let mut counted_to = crate::budget::Budget::default();
    let mut last_counted: Option<(usize, crate::budget::Budget)> = None;
    for route in &routes {
        let view = match listing.view(&ctx.settings, route) {
            Ok(view) => view,
            Err(err) => {
                result = Err(err);
                break;
            }
        };
        let from = view.state().explain();
        if args.all && !args.yes && crate::retire::is_retired(&view) {
            outcomes.push(Outcome::untouched(
                route,
                from,
                crate::retire::skipped_note(route),
                &lock,
            ));
            continue;
        }
        if let Err(err) = crate::retire::allow_rollback(ctx, &lock, &view, route, args.yes).await {
            result = Err(err);
            break;
        }
        if args.all && view.state() == RouteState::Missing {
            outcomes.push(Outcome::untouched(
                route,
                from,
                "no rule (run `migrate init`)".into(),
                &lock,
            ));
            continue;
        }
        let budget_before = counted_to;
        let view_service_tg = view.service_tg.clone();
        match rollback_view(
            ctx,
            &lock,
            &listing,
            route,
            view,
            json!({ "reason": "operator rollback" }),
            ("rollback", "rollback to the monolith"),
        )
        .await
        {
            Ok((after, changes, reach)) => {
                routing_changes += changes;
                let to = if after.state().explain() == from {
                    format!("already {from}; nothing to do")
                } else {
                    after.state().explain()
                };
                outcomes.push(Outcome {
                    route: route.clone(),
                    from,
                    to,
                    steps: vec![],
                    routing_changes: changes,
                    aws_api: Some(crate::budget::used().since(&budget_before).to_json()),
                    rollback_reach: reach,
                    lock_waited_ms: lock.waited.as_millis() as u64,
                    every_node_by: None,
                    also_forwarding: listing.also_forwarding(&view_service_tg),
                });
                counted_to = crate::budget::used();
                last_counted = Some((outcomes.len() - 1, budget_before));
            }
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    record_outcome(&json!({ "routes": routes, "done": outcomes }));
    let released = lock.release(&ctx.elb).await;
    if let Some((last, from)) = last_counted {
        outcomes[last].aws_api = Some(crate::budget::used().since(&from).to_json());
        record_outcome(&json!({ "routes": routes, "done": outcomes }));
    }
    summarize(ctx, Some(routing_changes));
    result?;
    released?;
    print_rollback(ctx, &outcomes, &listing)?;
    Ok(ExitCode::SUCCESS)
}

/// A rollback's answer: each route's outcome, then a word on the preview
/// rules it leaves in place.
fn print_rollback(ctx: &Ctx, outcomes: &[Outcome], listing: &Listing) -> anyhow::Result<()> {
    if ctx.output == Output::Json {
        print_json(&outcomes)?;
    } else {
        for outcome in outcomes {
            println!("{}: {}", outcome.route, outcome.to);
        }
    }
    for outcome in outcomes {
        let route = &outcome.route;
        warn_also_forwarding(ctx, outcome);
        for preview in listing.previews_of(route) {
            if ctx.chatty() {
                eprintln!(
                    "migrate: {route}: the preview rule at priority {} stays (requests with its header still reach the service); `migrate preview {route} --off` removes it",
                    preview.priority.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_its_gate() {
        let none = serde_json::Map::new();
        let name = |reason: &str| gate_name(reason, &none);
        assert_eq!(
            name("health gate: target group users has no healthy target"),
            "health"
        );
        assert_eq!(name("during the interval, health gate: ..."), "health");
        assert_eq!(name("parity gate could not run: refused"), "parity");
        assert_eq!(
            name("probes during the interval exceeded the error budget"),
            "probes"
        );
        assert_eq!(
            name("coverage gate: the monolith's rule changed"),
            "coverage"
        );
        assert_eq!(
            name("read back: after 15s the rule still shows"),
            "read-back"
        );
        assert_eq!(
            name("during the interval, metric gate: 5XX ratio 5.0% > monolith 0.0% + 1.0"),
            "metrics"
        );
        let mut custom = serde_json::Map::new();
        custom.insert("failed_gate".into(), json!("contract-tests"));
        assert_eq!(
            gate_name("gate contract-tests (step): HTTP 500", &custom),
            "contract-tests"
        );
    }
}
