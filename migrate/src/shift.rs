//! `shift` and `rollback`: steps behind gates, each write read back, each
//! change journaled; any failed gate rolls the route back (exit 3).
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

use crate::cli::{RollbackArgs, ShiftArgs};
use crate::commands::lock_options;
use crate::context::{Ctx, Listing};
use crate::error::{Failure, usage};
use crate::journal::{self, Entry, LAST_CHANGE_TAG};
use crate::journal::{now_rfc3339, snapshot};
use crate::lock::Lock;
use crate::metric_gates::Judge as MetricJudge;
use crate::output::Output;
use crate::output::print_json;
use crate::output::record_outcome;
use crate::probe::{ProbeTally, Prober};
use crate::settings::{RouteSettings, check_steps};
use crate::state::pending_steps;
use crate::state::{RouteState, RouteView, Write, target_group_name};

/// How long a written rule may take to read back as written.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(15);

/// The outcome of one route's shift or rollback, for `--output json`.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub route: String,
    pub from: String,
    pub to: String,
    pub steps: Vec<serde_json::Value>,
    pub routing_changes: usize,
}

pub async fn shift(ctx: &mut Ctx, args: &ShiftArgs) -> anyhow::Result<ExitCode> {
    let route_settings = ctx.settings.route(&args.route)?.clone();
    let steps = args
        .steps
        .clone()
        .unwrap_or_else(|| route_settings.steps.clone());
    check_steps(&steps).map_err(|problem| usage(format!("--steps: {problem}")))?;
    let interval = args.interval.unwrap_or(route_settings.interval);
    if steps.len() > 1 && ctx.settings.lb_url.is_none() {
        return Err(usage(
            "a gradual shift probes the route through the load balancer: set `lb_url` in migrate.toml",
        ));
    }
    ctx.start_who();
    record_outcome(&json!({ "route": args.route }));
    // The first step's parity sample runs while the listener is locked and read.
    let options = lock_options(ctx, &args.lock);
    let (locked, first_parity) = tokio::join!(ctx.lock_and_list(&options), async {
        if args.skip_parity {
            None
        } else {
            Some(timed_parity_gate(ctx, &args.route).await)
        }
    });
    let (mut lock, listing) = locked?;
    // Listened for once the lock is ours (Ctrl-C while waiting for it just
    // ends the process, which leaves nothing behind that matters).
    let interrupt = match CtrlC::listen() {
        Ok(interrupt) => interrupt,
        Err(err) => {
            let _ = lock.release(&ctx.elb).await;
            return Err(err);
        }
    };
    let metrics = ctx.settings.metric_gates(&args.route);
    let mut run = Shift {
        interrupt,
        metrics: MetricJudge::new(&ctx.sdk, ctx.verbose, metrics, steps.len() > 1),
        moved: false,
        last: None,
        first_parity,
        route: args.route.clone(),
        settings: route_settings,
        steps,
        interval,
        allow_unhealthy: args.allow_unhealthy,
        skip_parity: args.skip_parity,
        allow_shadow: args.allow_shadow,
        expected: None,
        outcome: Outcome {
            route: args.route.clone(),
            from: String::new(),
            to: String::new(),
            steps: Vec::new(),
            routing_changes: 0,
        },
    };
    let result = run.run(ctx, &mut lock, &listing).await;
    let result = match result {
        Err(err) if interrupted(&err) => Err(run.interrupted(args)),
        Err(err) if run.moved && !stops_without_rollback(&err) => {
            run.recover(ctx, &lock, err).await
        }
        other => other,
    };
    record_outcome(&run.outcome);
    let released = lock.release(&ctx.elb).await;
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
/// that write), the time spent in calls and the wall time.
pub fn summarize(ctx: &Ctx, routing_changes: Option<usize>) {
    if ctx.verbose {
        let calls = ctx.elb.calls();
        let api_ms: f64 = calls.iter().map(|c| c.millis).sum();
        let routing = routing_changes
            .map(|n| format!(" ({n} changed routing)"))
            .unwrap_or_default();
        eprintln!(
            "migrate: {} ELBv2 calls{routing}, {api_ms:.1} ms in calls, {:.1} ms wall",
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
    outcome: Outcome,
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
        match &state {
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
        let problems = crate::coverage::preflight(listing, &view, &self.route, self.allow_shadow);
        if !problems.is_empty() {
            return Err(usage(format!(
                "{}: nothing was changed:\n  {}",
                self.route,
                problems.join("\n  ")
            )));
        }
        let pending = pending_steps(&state, &self.steps);
        if pending.len() > 1 || state.percent().is_some_and(|p| p > 0) {
            let host = crate::coverage::probe_host(&self.route, &self.settings, &view)
                .map_err(|why| usage(format!("{}: nothing was changed: {why}", self.route)))?;
            let on_monolith = matches!(state, RouteState::OnMonolith { .. });
            self.expected = self.monolith_classes(ctx, host, on_monolith).await;
        }
        if pending.is_empty() {
            self.outcome.to = format!("already {}; nothing to do", state.explain());
            return Ok(());
        }
        let continuing = state.percent().is_some_and(|p| p > 0) && ctx.settings.lb_url.is_some();
        // One GetMetricData before anything changes: a missing permission or
        // a wrong endpoint stops the shift here, not after its first step.
        self.metrics.prepare(listing, &self.route, &view).await?;
        for (index, percent) in pending.iter().copied().enumerate() {
            let mut evidence = serde_json::Map::new();
            let first = index == 0 && !continuing;
            if let Some(reason) = self
                .judge_step(ctx, lock, listing, &view, first, &mut evidence)
                .await?
            {
                return self.fail(ctx, lock, reason, evidence).await;
            }
            let before = view.clone();
            let writes = view
                .transition(percent)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.route))?;
            if self.interrupt.was_pressed().await {
                return Err(stop_on_ctrl_c());
            }
            let started = Instant::now();
            let mut done = Vec::new();
            for write in &writes {
                if view.changes_routing(write) {
                    self.outcome.routing_changes += 1;
                }
                self.moved = true;
                match execute(ctx, lock, listing, &self.route, &view, write).await {
                    Ok(next) => {
                        done.push(next.1.describe());
                        view = next.0;
                        self.last = Some(view.clone());
                    }
                    Err(WriteError::NotConfirmed(reason)) => {
                        evidence.insert("read_back".into(), json!(reason));
                        return self.fail(ctx, lock, reason, evidence).await;
                    }
                    Err(WriteError::Failed(err)) => return Err(err),
                }
            }
            self.metrics.applied();
            let what = format!("shift to {percent} percent");
            record(
                ctx,
                lock,
                "shift",
                &self.route,
                &what,
                &before,
                &view,
                done,
                serde_json::Value::Object(evidence.clone()),
            )
            .await?;
            if ctx.chatty() {
                eprintln!(
                    "migrate: {}: step {}/{}: {percent}% on the service ({} writes, {:.0} ms; {})",
                    self.route,
                    index + 1,
                    pending.len(),
                    writes.len(),
                    started.elapsed().as_secs_f64() * 1000.0,
                    evidence_line(&evidence)
                );
            }
            self.outcome
                .steps
                .push(json!({ "percent": percent, "evidence": evidence }));
            record_outcome(&self.outcome);
        }
        self.outcome.to = view.state().explain();
        Ok(())
    }

    /// Everything a step must pass before its writes: after an interval of
    /// probes and health polls (before every step but the first of a new
    /// shift), the coverage gate; then health and parity. `Some(reason)`
    /// when one fails.
    async fn judge_step(
        &mut self,
        ctx: &Ctx,
        lock: &mut Lock,
        listing: &Listing,
        view: &RouteView,
        first: bool,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<Option<String>> {
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
            return Ok(None);
        }
        let parity = match self.first_parity.take() {
            Some(parity) if first_step => parity,
            _ => timed_parity_gate(ctx, &self.route).await,
        };
        match parity {
            Ok(None) => {
                evidence.insert("parity".into(), json!("passed"));
                Ok(None)
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

    /// The health gate: the service's target group must have a healthy
    /// target, and (unless tolerated) no target that is not healthy.
    async fn health_gate(
        &self,
        ctx: &Ctx,
        service_tg: &str,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<Option<String>> {
        let health = ctx.elb.target_health(service_tg).await?;
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
        evidence.insert(
            "health".into(),
            json!({ "healthy": healthy, "not_healthy": not_healthy }),
        );
        let group = target_group_name(service_tg);
        if healthy == 0 {
            return Ok(Some(format!(
                "health gate: target group {group} has no healthy target ({})",
                if not_healthy.is_empty() {
                    "no targets registered".to_owned()
                } else {
                    not_healthy.join(", ")
                }
            )));
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
        let tolerated = self.allow_unhealthy || self.settings.allow_unhealthy;
        if !unhealthy.is_empty() && !tolerated {
            return Ok(Some(format!(
                "health gate: target group {group} has targets that are not healthy: {} (pass --allow-unhealthy to proceed with {healthy} healthy)",
                unhealthy.join(", ")
            )));
        }
        Ok(None)
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
        let bar = if ctx.chatty() {
            let bar = indicatif::ProgressBar::new(self.interval.as_millis() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "migrate: {msg} [{bar:30}] {elapsed}/{duration}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let started = tokio::time::Instant::now();
        let deadline = started + self.interval;
        let mut ticker = tokio::time::interval(prober.period());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tally = ProbeTally::default();
        let mut index = 0;
        let mut next_health = started + self.settings.health_poll;
        // The metric gates are evaluated every period; a step waits past its
        // interval (up to `max_wait`) while they are inconclusive.
        let mut next_metrics = started + self.metrics.gates.period;
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

    /// Rolls the route back after a failed gate and returns the exit-3 error.
    /// A gate failure that changed nothing is journaled too.
    async fn fail(
        &mut self,
        ctx: &mut Ctx,
        lock: &Lock,
        reason: String,
        mut evidence: serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<()> {
        evidence.insert("gate_failed".into(), json!(reason));
        let evidence = serde_json::Value::Object(evidence);
        let listing = ctx.list().await?;
        let view = listing.view(&ctx.settings, &self.route)?;
        self.last = Some(view.clone());
        let what = "gate failed; rolled back to the monolith";
        let (after, changes) = rollback_view(
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
        Err(Failure::GateFailed(format!(
            "{}: {reason}; {moved}: {}",
            self.route,
            after.state().explain()
        ))
        .into())
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
            Ok((after, changes)) => {
                self.outcome.routing_changes += changes;
                self.outcome.to = after.state().explain();
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

    /// The error for Ctrl-C: where the route stands and the two ways on.
    fn interrupted(&self, args: &ShiftArgs) -> anyhow::Error {
        let state = self
            .last
            .as_ref()
            .map_or_else(|| "unchanged".to_owned(), |view| view.state().explain());
        let mut again = format!("migrate shift {}", self.route);
        if let Some(steps) = &args.steps {
            let steps: Vec<String> = steps.iter().map(u8::to_string).collect();
            again.push_str(&format!(" --steps {}", steps.join(",")));
        }
        if let Some(interval) = args.interval {
            again.push_str(&format!(
                " --interval {}",
                humantime::format_duration(interval)
            ));
        }
        for (set, flag) in [
            (args.allow_unhealthy, " --allow-unhealthy"),
            (args.skip_parity, " --skip-parity"),
            (args.allow_shadow, " --allow-shadow"),
        ] {
            if set {
                again.push_str(flag);
            }
        }
        Failure::Interrupted(format!(
            "{route}: interrupted (Ctrl-C); the route is {state}. Continue the shift: `{again}`; or undo it: `migrate rollback {route}`",
            route = self.route
        ))
        .into()
    }
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

/// Makes one write and reads the rule back until it shows what was written.
/// A priority slot taken meanwhile is re-picked (the listener is re-read).
async fn execute(
    ctx: &Ctx,
    lock: &Lock,
    listing: &Listing,
    route: &str,
    view: &RouteView,
    write: &Write,
) -> Result<(RouteView, Write), WriteError> {
    let mut write = write.clone();
    for _attempt in 0..3 {
        lock.confirm(&ctx.elb).await.map_err(WriteError::Failed)?;
        let accepted = match &write {
            Write::MovePriority { rule, to, .. } => ctx
                .elb
                .set_priority(rule, *to)
                .await
                .map_err(WriteError::Failed)?,
            Write::SetAction { rule, to, .. } => {
                ctx.elb
                    .set_action(rule, to)
                    .await
                    .map_err(WriteError::Failed)?;
                true
            }
            Write::SetConditions { rule, to, .. } => {
                ctx.elb
                    .set_conditions(rule, to)
                    .await
                    .map_err(WriteError::Failed)?;
                true
            }
        };
        if !accepted {
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
        }
        let expected = view.apply(&write);
        let wanted = expected.rule().cloned();
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let seen = ctx
                .elb
                .rule(write.rule_arn())
                .await
                .map_err(WriteError::Failed)?;
            match (&seen, &wanted) {
                (Some(seen), Some(wanted))
                    if seen.priority == wanted.priority
                        && seen.action == wanted.action
                        && seen.conditions.normalized() == wanted.conditions.normalized() =>
                {
                    return Ok((expected, write));
                }
                _ if started.elapsed() > READ_BACK_TIMEOUT => {
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
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
    Err(WriteError::Failed(anyhow::anyhow!(
        "{route}: the priority slots kept being taken; try again"
    )))
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
) -> anyhow::Result<()> {
    let who = ctx.who().await;
    let entry = Entry {
        when: now_rfc3339(),
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
        lock.confirm(&ctx.elb).await?;
        ctx.elb
            .add_tags(&rule.arn, &[(LAST_CHANGE_TAG, &entry.tag_value())])
            .await?;
    }
    Ok(())
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

/// Brings one route back to the monolith; returns the final view and how
/// many writes changed routing.
async fn rollback_view(
    ctx: &mut Ctx,
    lock: &Lock,
    listing: &Listing,
    route: &str,
    mut view: RouteView,
    evidence: serde_json::Value,
    (command, what): (&str, &str),
) -> anyhow::Result<(RouteView, usize)> {
    let state = view.state();
    if state == RouteState::Missing {
        anyhow::bail!("route `{route}` has no rule on the listener; run `migrate init`");
    }
    let writes = view
        .transition(0)
        .map_err(|e| anyhow::anyhow!("{route}: {e}"))?;
    if writes.is_empty() {
        return Ok((view, 0));
    }
    let before = view.clone();
    let mut changes = 0;
    let mut done = Vec::new();
    for write in &writes {
        if view.changes_routing(write) {
            changes += 1;
        }
        match execute(ctx, lock, listing, route, &view, write).await {
            Ok((next, made)) => {
                done.push(made.describe());
                view = next;
            }
            Err(WriteError::NotConfirmed(reason)) => {
                anyhow::bail!("{route}: rollback not confirmed: {reason}")
            }
            Err(WriteError::Failed(err)) => return Err(err),
        }
    }
    record(
        ctx, lock, command, route, what, &before, &view, done, evidence,
    )
    .await?;
    Ok((view, changes))
}

pub async fn rollback(ctx: &mut Ctx, args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let routes: Vec<String> = if args.all {
        ctx.settings.routes.keys().cloned().collect()
    } else {
        let route = args
            .route
            .clone()
            .ok_or_else(|| usage("name a route or pass --all"))?;
        ctx.settings.route(&route)?;
        vec![route]
    };
    ctx.start_who();
    record_outcome(&json!({ "routes": routes }));
    let (lock, listing) = ctx.lock_and_list(&lock_options(ctx, &args.lock)).await?;
    let mut outcomes = Vec::new();
    let mut result = Ok(());
    let mut routing_changes = 0;
    for route in &routes {
        let view = match listing.view(&ctx.settings, route) {
            Ok(view) => view,
            Err(err) => {
                result = Err(err);
                break;
            }
        };
        let from = view.state().explain();
        if args.all && view.state() == RouteState::Missing {
            outcomes.push(Outcome {
                route: route.clone(),
                from,
                to: "no rule (run `migrate init`)".into(),
                steps: vec![],
                routing_changes: 0,
            });
            continue;
        }
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
            Ok((after, changes)) => {
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
                });
            }
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    record_outcome(&json!({ "routes": routes, "done": outcomes }));
    let released = lock.release(&ctx.elb).await;
    summarize(ctx, Some(routing_changes));
    result?;
    released?;
    if ctx.output == Output::Json {
        print_json(&outcomes)?;
    } else {
        for outcome in &outcomes {
            println!("{}: {}", outcome.route, outcome.to);
        }
    }
    Ok(ExitCode::SUCCESS)
}
