//! `init`, `status`, `plan` and `history`.

use std::process::ExitCode;

use serde::Serialize;
use serde_json::json;

use crate::cli::{HistoryArgs, LockArgs, Output, PlanArgs, StatusArgs};
use crate::context::{Ctx, Listing, ROUTE_TAG};
use crate::elb::TargetHealth;
use crate::error::usage;
use crate::journal::{self, Entry, LAST_CHANGE_TAG, LastChange};
use crate::lock::{self, LockOptions, rfc3339};
use crate::settings::check_steps;
use crate::shift::now_rfc3339;
use crate::state::{Forward, RouteState, RouteView, Write, target_group_name};

pub fn lock_options(ctx: &Ctx, args: &LockArgs) -> LockOptions {
    LockOptions {
        ttl: ctx.settings.lock_ttl,
        wait: args.wait,
        force_unlock: args.force_unlock,
        settle: args.lock_settle,
    }
}

pub use crate::output::print_json;

pub async fn init(ctx: &mut Ctx, args: &LockArgs) -> anyhow::Result<ExitCode> {
    ctx.start_who();
    let (lock, listing) = ctx.lock_and_list(&lock_options(ctx, args)).await?;
    let result = init_locked(ctx, &listing).await;
    let released = lock.release(&ctx.elb).await;
    let report = result?;
    released?;
    if ctx.output == Output::Json {
        print_json(&report)?;
    } else {
        for line in &report {
            println!("{}", line.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct InitLine {
    route: String,
    outcome: &'static str,
    message: String,
    drift: Vec<String>,
}

async fn init_locked(ctx: &mut Ctx, listing: &Listing) -> anyhow::Result<Vec<InitLine>> {
    let mut report = Vec::new();
    let mut taken: std::collections::BTreeSet<u32> =
        listing.rules.iter().filter_map(|r| r.priority).collect();
    let routes: Vec<String> = ctx.settings.routes.keys().cloned().collect();
    for route in routes {
        let mut view = listing.view(&ctx.settings, &route)?;
        if !view.rules.is_empty() {
            let drift = listing.drift(&ctx.settings, &route, &view);
            let state = view.state().explain();
            let message = if drift.is_empty() {
                format!("{route}: rule exists, {state}; nothing to do")
            } else {
                format!(
                    "{route}: rule exists, {state}; DRIFT (not overwritten): {}",
                    drift.join("; ")
                )
            };
            let outcome = if drift.is_empty() { "exists" } else { "drift" };
            report.push(InitLine {
                route,
                outcome,
                message,
                drift,
            });
            continue;
        }
        let settings = ctx.settings.route(&route)?.clone();
        let action = Forward::Plain {
            target_group: view.service_tg.clone(),
        };
        let mut created = None;
        for _attempt in 0..5 {
            view.taken = taken.clone();
            let slot = view
                .behind_slot()
                .ok_or_else(|| anyhow::anyhow!("no free priority behind the monolith's rule"))?;
            taken.insert(slot);
            match ctx
                .elb
                .create_rule(
                    &listing.listener_arn,
                    slot,
                    &settings.paths,
                    &action,
                    &[(ROUTE_TAG, route.as_str())],
                )
                .await
            {
                Ok(Some(arn)) => {
                    created = Some((arn, slot));
                    break;
                }
                // The slot was taken meanwhile (PriorityInUse): try the next.
                Ok(None) => continue,
                Err(err) => return Err(err),
            }
        }
        let (arn, slot) = created.ok_or_else(|| {
            anyhow::anyhow!("{route}: every free priority tried was taken meanwhile")
        })?;
        let who = ctx.who().await;
        let entry = Entry {
            when: now_rfc3339(),
            who,
            command: "init".into(),
            route: route.clone(),
            what: format!("init: created rule at priority {slot} behind the monolith"),
            before: journal::Snapshot {
                priority: None,
                action: "none".into(),
                state: "missing".into(),
            },
            after: journal::Snapshot {
                priority: Some(slot),
                action: action.describe(),
                state: RouteState::OnMonolith {
                    priority: slot,
                    restored: true,
                }
                .explain(),
            },
            writes: vec![format!(
                "CreateRule Priority={slot} paths={:?} Actions=[{}] Tags={ROUTE_TAG}={route}",
                settings.paths,
                action.describe()
            )],
            evidence: json!({}),
        };
        journal::append(&ctx.settings.journal_path(), &entry)?;
        ctx.elb
            .add_tags(&arn, &[(LAST_CHANGE_TAG, &entry.tag_value())])
            .await?;
        report.push(InitLine {
            route: route.clone(),
            outcome: "created",
            message: format!("{route}: created rule {arn} at priority {slot}, parked behind the monolith's rule ({})", listing.monolith_priority),
            drift: Vec::new(),
        });
    }
    for unknown in listing.unknown_routes(&ctx.settings) {
        report.push(InitLine {
            route: unknown.clone(),
            outcome: "unknown",
            message: format!("{unknown}: a rule is tagged {ROUTE_TAG}={unknown} but migrate.toml has no such route; left alone"),
            drift: Vec::new(),
        });
    }
    Ok(report)
}

/// One route in `status`.
#[derive(Debug, Serialize)]
pub struct RouteStatus {
    pub route: String,
    pub paths: Vec<String>,
    /// `missing`, `on-monolith`, `shifting`, `on-service` or `inconsistent`.
    pub state: &'static str,
    /// Why, when inconsistent.
    pub reason: Option<String>,
    /// Whether a parked rule's action is the plain forward to the service.
    pub restored: Option<bool>,
    pub summary: String,
    pub percent: Option<u8>,
    pub rule_arn: Option<String>,
    pub priority: Option<u32>,
    pub monolith_priority: u32,
    pub action: Option<String>,
    pub weights: Vec<(String, u32)>,
    pub target_group: String,
    pub healthy: usize,
    pub unhealthy: usize,
    pub targets: Vec<TargetHealth>,
    pub last_change: Option<LastChange>,
    pub drift: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    listener_arn: String,
    monolith_rule: String,
    monolith_priority: u32,
    monolith_action: String,
    lock: Option<lock::LockTag>,
    /// Lock tags left by operators that are gone (expired, or a dead process
    /// of this host); the next command that locks removes them.
    stale_locks: Vec<lock::LockTag>,
    routes: Vec<RouteStatus>,
    unknown_routes: Vec<String>,
}

pub async fn status(ctx: &mut Ctx, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let routes: Vec<String> = match &args.route {
        Some(route) => {
            ctx.settings.route(route)?;
            vec![route.clone()]
        }
        None => ctx.settings.routes.keys().cloned().collect(),
    };
    let listing = ctx.list().await?;
    let mut statuses = Vec::new();
    for route in &routes {
        let view = listing.view(&ctx.settings, route)?;
        let health = ctx.elb.target_health(&view.service_tg).await?;
        statuses.push(route_status(ctx, &listing, route, &view, health));
    }
    let now = time::OffsetDateTime::now_utc();
    let report = StatusReport {
        listener_arn: listing.listener_arn.clone(),
        monolith_rule: listing.monolith.arn.clone(),
        monolith_priority: listing.monolith_priority,
        monolith_action: listing.monolith.action.describe(),
        lock: lock::holder(&listing.listener_tags, now),
        stale_locks: lock::lock_tags(&listing.listener_tags)
            .into_iter()
            .filter(|l| l.is_dead(now))
            .collect(),
        routes: statuses,
        unknown_routes: listing.unknown_routes(&ctx.settings),
    };
    if ctx.output == Output::Json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("listener {}", report.listener_arn);
    println!(
        "monolith rule at priority {} ({})",
        report.monolith_priority, report.monolith_action
    );
    match &report.lock {
        Some(held) => println!(
            "lock: held by {} since {} until {}",
            held.holder,
            rfc3339(held.since),
            rfc3339(held.until)
        ),
        None => println!("lock: free"),
    }
    for stale in &report.stale_locks {
        println!(
            "stale lock: {} since {} (expired or its process is gone; the next shift or rollback removes it)",
            stale.holder,
            rfc3339(stale.since)
        );
    }
    for status in &report.routes {
        println!();
        println!("{}  {}", status.route, status.paths.join(" "));
        println!("  state:    {}", status.summary);
        if let Some(action) = &status.action {
            println!("  action:   {action}");
        }
        let targets: Vec<String> = status
            .targets
            .iter()
            .map(|t| format!("{} {}", t.target, t.state))
            .collect();
        println!(
            "  targets:  {} healthy, {} unhealthy in {} [{}]",
            status.healthy,
            status.unhealthy,
            target_group_name(&status.target_group),
            targets.join(", ")
        );
        match &status.last_change {
            Some(last) => println!("  last:     {} by {}: {}", last.when, last.who, last.what),
            None => println!("  last:     no change recorded"),
        }
        if status.drift.is_empty() {
            println!("  drift:    none");
        } else {
            for drift in &status.drift {
                println!("  drift:    {drift}");
            }
        }
    }
    for unknown in &report.unknown_routes {
        println!(
            "\n{unknown}: a rule is tagged {ROUTE_TAG}={unknown} but migrate.toml has no such route"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn route_status(
    ctx: &Ctx,
    listing: &Listing,
    route: &str,
    view: &RouteView,
    targets: Vec<TargetHealth>,
) -> RouteStatus {
    let state = view.state();
    let rule = view.rule();
    let weights = match rule.map(|r| &r.action) {
        Some(Forward::Weighted { target_groups }) => target_groups
            .iter()
            .map(|(arn, w)| (target_group_name(arn).to_owned(), *w))
            .collect(),
        _ => Vec::new(),
    };
    RouteStatus {
        route: route.to_owned(),
        paths: ctx
            .settings
            .routes
            .get(route)
            .map(|r| r.paths.clone())
            .unwrap_or_default(),
        summary: state.explain(),
        percent: state.percent(),
        state: state.name(),
        reason: match &state {
            RouteState::Inconsistent { reason } => Some(reason.clone()),
            _ => None,
        },
        restored: match &state {
            RouteState::OnMonolith { restored, .. } => Some(*restored),
            _ => None,
        },
        rule_arn: rule.map(|r| r.arn.clone()),
        priority: rule.and_then(|r| r.priority),
        monolith_priority: listing.monolith_priority,
        action: rule.map(|r| r.action.describe()),
        weights,
        target_group: view.service_tg.clone(),
        healthy: targets.iter().filter(|t| t.state == "healthy").count(),
        unhealthy: targets.iter().filter(|t| t.state == "unhealthy").count(),
        targets,
        last_change: rule
            .and_then(|r| r.tags.get(LAST_CHANGE_TAG))
            .map(|v| LastChange::parse(v)),
        drift: listing.drift(&ctx.settings, route, view),
    }
}

/// One step of a plan.
#[derive(Debug, Serialize)]
struct PlannedStep {
    percent: u8,
    gates: Vec<String>,
    writes: Vec<Write>,
    read_back: String,
}

#[derive(Debug, Serialize)]
struct Plan {
    route: String,
    from: RouteState,
    to: u8,
    lock: String,
    steps: Vec<PlannedStep>,
    unlock: String,
}

pub async fn plan(ctx: &mut Ctx, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let route = ctx.settings.route(&args.route)?.clone();
    let listing = ctx.list().await?;
    let view = listing.view(&ctx.settings, &args.route)?;
    let state = view.state();
    if state == RouteState::Missing {
        anyhow::bail!(
            "route `{}` has no rule on the listener; run `migrate init`",
            args.route
        );
    }
    let targets: Vec<u8> = match args.to {
        Some(0) => vec![0],
        Some(to) => vec![to],
        None => {
            check_steps(&route.steps)
                .map_err(|p| usage(format!("routes.{}.steps: {p}", args.route)))?;
            route.steps.clone()
        }
    };
    let current = state.percent();
    let targets = if targets == [0] {
        targets
    } else {
        crate::shift::pending_steps(&state, &targets)
    };
    let mut simulated = view.clone();
    let mut steps = Vec::new();
    for target in targets {
        let writes = simulated
            .transition(target)
            .map_err(|e| anyhow::anyhow!(e))?;
        if writes.is_empty() {
            continue;
        }
        let gates = if target == 0 {
            Vec::new()
        } else {
            vec![
                format!(
                    "DescribeTargetHealth {}: at least 1 healthy target, no unhealthy ones",
                    target_group_name(&view.service_tg)
                ),
                "parity sample (migrate verify) passes".to_owned(),
            ]
        };
        for write in &writes {
            simulated = simulated.apply(write);
        }
        let rule = simulated.rule().cloned();
        steps.push(PlannedStep {
            percent: target,
            gates,
            writes,
            read_back: match rule {
                Some(rule) => format!(
                    "DescribeRules until the rule shows priority {} and {}; then AddTags {LAST_CHANGE_TAG} on the rule",
                    rule.priority.unwrap_or_default(),
                    rule.action.describe()
                ),
                None => String::new(),
            },
        });
    }
    let plan = Plan {
        route: args.route.clone(),
        from: state.clone(),
        to: *steps
            .last()
            .map(|s| &s.percent)
            .unwrap_or(&current.unwrap_or(0)),
        lock: "AddTags ficus:lock:<id> on the listener, DescribeTags to confirm".into(),
        steps,
        unlock: "RemoveTags ficus:lock:<id> on the listener".into(),
    };
    if ctx.output == Output::Json {
        print_json(&plan)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: {}", plan.route, state.explain());
    if plan.steps.is_empty() {
        println!("nothing to do: no API call would change anything");
        return Ok(ExitCode::SUCCESS);
    }
    println!("lock:   {}", plan.lock);
    for step in &plan.steps {
        let label = if step.percent == 0 {
            "rollback".to_owned()
        } else {
            format!("step {}%", step.percent)
        };
        println!("{label}:");
        for gate in &step.gates {
            println!("  gate:  {gate}");
        }
        for write in &step.writes {
            println!("  call:  {}", write.describe());
        }
        println!("  check: {}", step.read_back);
    }
    println!("unlock: {}", plan.unlock);
    if route.steps.len() > 1 && args.to.is_none() {
        println!(
            "between steps: probe {} through lb_url for {}",
            route.probe_paths().join(" "),
            humantime::format_duration(route.interval)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn history(ctx: &mut Ctx, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    if let Some(route) = &args.route {
        ctx.settings.route(route)?;
    }
    let entries = journal::read(&ctx.settings.journal_path(), args.route.as_deref())?;
    if ctx.output == Output::Json {
        print_json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!(
            "no changes recorded in {}",
            ctx.settings.journal_path().display()
        );
    }
    for entry in &entries {
        println!("{}", history_line(entry));
    }
    Ok(ExitCode::SUCCESS)
}

/// One journal entry as `history` prints it: what happened, the move, and why
/// a gate failed or an error stopped it.
fn history_line(entry: &Entry) -> String {
    // Older entries repeat their command in `what` (`init: created ...`).
    let what = entry
        .what
        .strip_prefix(&format!("{}: ", entry.command))
        .unwrap_or(&entry.what);
    let mut line = format!(
        "{} {} {} {}: {what} (priority {} -> {}, {} -> {})",
        entry.when,
        entry.who,
        entry.route,
        entry.command,
        entry.before.priority.map_or("-".into(), |p| p.to_string()),
        entry.after.priority.map_or("-".into(), |p| p.to_string()),
        entry.before.action,
        entry.after.action
    );
    for (key, label) in [("gate_failed", "gate failed"), ("error", "error")] {
        if let Some(reason) = entry.evidence.get(key).and_then(|r| r.as_str()) {
            line.push_str(&format!("; {label}: {reason}"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_name_the_command_once_and_show_why_a_gate_failed() {
        let snapshot = journal::Snapshot {
            priority: Some(100),
            action: "forward users".into(),
            state: "on the monolith".into(),
        };
        let mut entry = Entry {
            when: "2026-11-26T04:00:00Z".into(),
            who: "ann@vm".into(),
            command: "init".into(),
            route: "users".into(),
            what: "init: created rule at priority 100 behind the monolith".into(),
            before: snapshot.clone(),
            after: snapshot,
            writes: vec![],
            evidence: json!({}),
        };
        assert_eq!(
            history_line(&entry),
            "2026-11-26T04:00:00Z ann@vm users init: created rule at priority 100 behind the monolith (priority 100 -> 100, forward users -> forward users)"
        );
        entry.command = "shift".into();
        entry.what = "gate failed; nothing had moved".into();
        entry.evidence = json!({ "gate_failed": "health gate: target group users has no healthy target (no targets registered)" });
        assert!(
            history_line(&entry).ends_with(
                "shift: gate failed; nothing had moved (priority 100 -> 100, forward users -> forward users); gate failed: health gate: target group users has no healthy target (no targets registered)"
            ),
            "{}",
            history_line(&entry)
        );
    }
}
