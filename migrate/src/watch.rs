//! `migrate watch [ROUTE]`: a live view of routes while their plans run —
//! weights, target health, the latest gate values and the time to the next
//! step — refreshed until no plan is left or Ctrl-C. On a terminal the view
//! is redrawn in place; otherwise each refresh prints plain lines.
//!
//! While a route holds or bakes, watch judges its health gate at every
//! refresh (unless `--no-judge`) and rolls the route back when it fails
//! (exit 3): the target health it reads anyway is the gate's input.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::cli::WatchArgs;
use crate::context::Ctx;
use crate::journal::rfc3339;
use crate::output::Output;
use crate::plan::{Phase, Plan};
use crate::state::{Forward, RouteView, target_group_name};

/// One route at one refresh.
#[derive(Debug, Clone, Serialize)]
pub struct RouteLine {
    pub route: String,
    pub state: String,
    /// `monolith=90 users=10`, or the one target group.
    pub weights: String,
    pub healthy: usize,
    pub targets: usize,
    /// The plan's phase and what comes next, if a plan is on the rule.
    pub plan: Option<String>,
    /// Seconds until the next step (moving) or the end of the bake.
    pub next_in: Option<u64>,
    /// The latest gate values this machine's journal holds for the route.
    pub gates: Option<String>,
}

impl RouteLine {
    fn text(&self) -> String {
        let mut line = format!(
            "{}: {} [{}] targets {}/{} healthy",
            self.route, self.state, self.weights, self.healthy, self.targets
        );
        if let Some(plan) = &self.plan {
            line.push_str(&format!("; {plan}"));
        }
        if let Some(next) = self.next_in {
            line.push_str(&format!(
                "; in {}",
                humantime::format_duration(Duration::from_secs(next))
            ));
        }
        if let Some(gates) = &self.gates {
            line.push_str(&format!("; last gates: {gates}"));
        }
        line
    }
}

fn weights(view: &RouteView) -> String {
    match view.rule().map(|r| &r.action) {
        Some(Forward::Weighted { target_groups, .. }) => target_groups
            .iter()
            .map(|(arn, w)| format!("{}={w}", target_group_name(arn)))
            .collect::<Vec<_>>()
            .join(" "),
        Some(other) => other.describe(),
        None => "no rule".into(),
    }
}

/// The time to the next step (a plan moving between steps) or to the end of
/// its bake; none while holding (a person decides).
fn next_in(plan: &Plan, now: OffsetDateTime) -> Option<u64> {
    let at = match plan.phase() {
        Phase::Holding { .. } => return None,
        Phase::Moving { since, next, .. } => {
            next?;
            since + time::Duration::try_from(plan.interval).ok()?
        }
        Phase::Baking { until } => until,
    };
    Some((at - now).whole_seconds().max(0) as u64)
}

/// The gate evidence of the route's latest journal entry (this machine's).
fn latest_gates(ctx: &Ctx, route: &str) -> Option<String> {
    let entries = crate::journal::read(&ctx.settings.journal_path(), Some(route)).ok()?;
    let entry = entries.last()?;
    let evidence = entry.evidence.as_object()?;
    let mut parts = Vec::new();
    if let Some(health) = evidence.get("health") {
        parts.push(format!("health {} healthy", health["healthy"]));
    }
    if let Some(probes) = evidence.get("probes") {
        parts.push(format!(
            "probes {} with {} errors",
            probes["total"], probes["errors"]
        ));
    }
    if let Some(parity) = evidence.get("parity").and_then(|p| p.as_str()) {
        parts.push(format!("parity {parity}"));
    }
    if let Some(failed) = evidence.get("gate_failed").and_then(|p| p.as_str()) {
        parts.push(format!("FAILED: {failed}"));
    }
    (!parts.is_empty()).then(|| format!("{} ({})", parts.join(", "), entry.when))
}

/// A failed health gate of a holding or baking route: (route, reason, evidence).
type Failed = (String, String, serde_json::Value);

/// Reads every watched route once; `true` when one still has a plan; the
/// first holding or baking route whose health gate fails.
async fn snapshot(
    ctx: &Ctx,
    routes: &[String],
) -> anyhow::Result<(Vec<RouteLine>, bool, Option<Failed>)> {
    let listing = ctx.list().await?;
    let now = OffsetDateTime::now_utc();
    let mut lines = Vec::new();
    let mut active = false;
    let mut failed = None;
    for route in routes {
        let view = listing.view(&ctx.settings, route)?;
        let health = ctx.elb.target_health(&view.service_tg).await?;
        let plan = match view.rule().map(|r| Plan::from_tags(&r.tags)) {
            Some(Ok(Some(plan))) => Some(Ok(plan)),
            Some(Err(why)) => Some(Err(why)),
            _ => None,
        };
        active |= matches!(plan, Some(Ok(_)));
        let still = matches!(
            &plan,
            Some(Ok(p)) if matches!(p.phase(), Phase::Holding { .. } | Phase::Baking { .. })
        );
        if still && failed.is_none() {
            let tolerated = ctx.settings.route(route)?.allow_unhealthy;
            if let (Some(reason), evidence) =
                crate::shift::health_verdict(&health, &view.service_tg, tolerated)
            {
                failed = Some((route.clone(), reason, json!({ "health": evidence })));
            }
        }
        lines.push(RouteLine {
            route: route.clone(),
            state: view.state().explain(),
            weights: weights(&view),
            healthy: health.iter().filter(|t| t.state == "healthy").count(),
            targets: health.len(),
            next_in: match &plan {
                Some(Ok(plan)) => next_in(plan, now),
                _ => None,
            },
            plan: plan.map(|plan| match plan {
                Ok(plan) => plan.describe(route, now),
                Err(why) => format!("plan UNREADABLE: {why}"),
            }),
            gates: latest_gates(ctx, route),
        });
    }
    Ok((lines, active, failed))
}

pub async fn watch(ctx: &mut Ctx, args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let routes: Vec<String> = match &args.route {
        Some(route) => {
            ctx.settings.route(route)?;
            vec![route.clone()]
        }
        None => ctx.settings.routes.keys().cloned().collect(),
    };
    let json = ctx.output == Output::Json;
    let terminal = !json && std::io::stdout().is_terminal();
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let (lines, active, failed) = snapshot(ctx, &routes).await?;
        let now = rfc3339(OffsetDateTime::now_utc());
        if json {
            // One JSON array per refresh, one per line (JSON Lines).
            crate::output::write_stdout(format_args!("{}\n", serde_json::to_string(&lines)?));
        } else {
            if terminal {
                // Home and clear: the view is redrawn in place.
                print!("\x1b[H\x1b[2J");
                println!("migrate watch, {now} (Ctrl-C to stop)");
                for line in &lines {
                    println!("{}", line.text());
                }
            } else {
                for line in &lines {
                    println!("{now} {}", line.text());
                }
            }
            if !active {
                println!("no plan in progress; watch ends");
            }
        }
        if let (Some((route, reason, evidence)), false) = (failed, args.no_judge) {
            crate::shift::roll_back_for_gate(ctx, &args.lock, &route, &reason, evidence).await?;
        }
        // Nobody reads the view any more (`migrate watch | head -3`): done.
        if !active || crate::output::reader_gone() {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::time::sleep(args.every) => {}
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
        }
    }
}
