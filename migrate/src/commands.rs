//! `init`, `status`, `plan`, `history` and `notify test`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;
use serde_json::json;

use anyhow::Context as _;

use crate::cli::{HistoryArgs, InitArgs, NotifyAction, NotifyArgs, PlanArgs, StatusArgs};
use crate::context::{Ctx, Listing, ROUTE_TAG};
use crate::elb::TargetHealth;
use crate::error::usage;
use crate::journal::now_rfc3339;
use crate::journal::{self, Entry, LAST_CHANGE_TAG, LastChange};
use crate::lock::{self, rfc3339};
use crate::output::Output;
use crate::settings::{GatePhase, MONOLITH_TAG, check_steps};
use crate::state::{Forward, PARKED_TAG, RouteState, RouteView, Write, target_group_name};

pub use crate::output::print_json;

pub async fn init(ctx: &mut Ctx, args: &InitArgs) -> anyhow::Result<ExitCode> {
    ctx.start_who();
    let mut report = Vec::new();
    if args.create_monolith_rule {
        report.push(create_monolith_rule(ctx, args).await?);
    }
    if args.dry_run {
        let listing = match ctx.list().await {
            Ok(listing) => Some(listing),
            // The monolith's rule is only planned: the routes can't be planned yet.
            Err(_) if args.create_monolith_rule => None,
            Err(err) => return Err(err),
        };
        if let Some(listing) = listing {
            report.extend(init_locked(ctx, &listing, true).await?);
        }
    } else {
        let (lock, listing) = ctx.lock_and_list(&ctx.lock_options(&args.lock)).await?;
        let result = init_locked(ctx, &listing, false).await;
        let released = lock.release(&ctx.elb).await;
        report.extend(result?);
        released?;
    }
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

/// The default priority of a created monolith rule: the next multiple of
/// 1000 above the highest numbered rule, at least 1000.
fn default_monolith_priority(highest: Option<u32>) -> u32 {
    highest.map_or(1000, |h| (h / 1000 + 1) * 1000)
}

/// Where `--create-monolith-rule` would put the monolith's rule: the default
/// rule, the target group it forwards to, and a priority behind every rule.
/// Refused (exit 2) when the default action is not one forward, disagrees
/// with `monolith.target_group`, or the priority is not behind every rule.
fn monolith_rule_slot<'a>(
    ctx: &Ctx,
    args: &InitArgs,
    rules: &'a [crate::state::RuleInfo],
) -> anyhow::Result<(&'a crate::state::RuleInfo, &'a str, u32)> {
    let default = rules
        .iter()
        .find(|r| r.priority.is_none())
        .context("the listener has no default rule")?;
    let Forward::Plain { target_group } = &default.action else {
        return Err(usage(format!(
            "--create-monolith-rule: the listener's default action is `{}`, not a forward to one target group; create and tag the monolith's rule by hand",
            default.action.describe()
        )));
    };
    if let Some(wanted) = &ctx.settings.monolith.target_group
        && target_group_name(wanted) != target_group_name(target_group)
    {
        return Err(usage(format!(
            "--create-monolith-rule: the default action forwards to {}, but monolith.target_group is {wanted}; the rule would change where requests go",
            target_group_name(target_group)
        )));
    }
    let highest = rules.iter().filter_map(|r| r.priority).max();
    let priority = args
        .monolith_priority
        .unwrap_or_else(|| default_monolith_priority(highest));
    let behind: Vec<String> = rules
        .iter()
        .filter(|r| r.priority.is_some_and(|p| p >= priority))
        .map(crate::coverage::shadow_line)
        .collect();
    if !behind.is_empty() {
        return Err(usage(format!(
            "--monolith-priority {priority}: a catch-all rule there would take the traffic of {}; choose a priority above {}",
            behind.join("; "),
            highest.unwrap_or_default()
        )));
    }
    Ok((default, target_group, priority))
}

/// `init --create-monolith-rule`: a catch-all rule (`/*`) forwarding where the
/// default action forwards, behind every other rule, tagged as the monolith's.
/// Every request that reached the default action reaches the same target
/// group through it, and no rule is behind it to lose traffic.
async fn create_monolith_rule(ctx: &mut Ctx, args: &InitArgs) -> anyhow::Result<InitLine> {
    let listener_arn = ctx.elb.listener_arn(&ctx.settings.listener).await?;
    let mut rules = ctx.elb.rules(&listener_arn).await?;
    let arns: Vec<String> = rules.iter().map(|r| r.arn.clone()).collect();
    let mut tags = ctx.elb.tags(&arns).await?;
    for rule in &mut rules {
        rule.tags = tags.remove(&rule.arn).unwrap_or_default();
    }
    if let Ok(existing) = crate::context::find_monolith(&ctx.settings, &rules, &listener_arn) {
        return Ok(InitLine {
            route: "monolith".into(),
            outcome: "exists",
            message: format!(
                "monolith: rule {} at priority {} exists; nothing to create",
                existing.arn,
                existing
                    .priority
                    .map_or("default".into(), |p| p.to_string())
            ),
            drift: Vec::new(),
        });
    }
    let (default, target_group, priority) = monolith_rule_slot(ctx, args, &rules)?;
    let target_group = target_group.to_owned();
    // A numbered rule that already forwards to the monolith is most likely its
    // rule, left untagged: say so, next to what would be created.
    let untagged: Vec<String> = rules
        .iter()
        .filter(|r| {
            r.priority.is_some()
                && r.action
                    == (Forward::Plain {
                        target_group: target_group.clone(),
                    })
        })
        .map(crate::coverage::shadow_line)
        .collect();
    let hint = if untagged.is_empty() {
        String::new()
    } else {
        format!(
            " (note: {} already forwards to the monolith; if that is its rule, tag it ficus:role=monolith instead of creating one)",
            untagged.join("; ")
        )
    };
    let conditions = alb::Conditions::paths(["/*".to_owned()]);
    let action = Forward::Plain { target_group };
    let (key, value) = MONOLITH_TAG;
    let call = format!(
        "CreateRule Priority={priority} Conditions=[{}] Actions=[{}] Tags={key}={value}",
        conditions.describe(),
        action.describe()
    );
    if args.dry_run {
        return Ok(InitLine {
            route: "monolith".into(),
            outcome: "planned",
            message: format!("monolith: would call {call}{hint}"),
            drift: Vec::new(),
        });
    }
    let options = ctx.lock_options(&args.lock);
    let (lock, _) = lock::acquire(&ctx.elb, &listener_arn, &[], &options).await?;
    let created = ctx
        .elb
        .create_rule(
            &listener_arn,
            priority,
            &conditions,
            &action,
            &[(key, value)],
        )
        .await;
    let released = lock.release(&ctx.elb).await;
    let arn = created?.ok_or_else(|| {
        usage(format!(
            "--monolith-priority {priority} was taken meanwhile; run init again"
        ))
    })?;
    released?;
    let who = ctx.who().await;
    let entry = Entry {
        id: crate::journal::new_id(),
        when: now_rfc3339(),
        who,
        command: "init".into(),
        route: "monolith".into(),
        what: format!(
            "created the monolith's rule at priority {priority}, behind every other rule (traffic unchanged)"
        ),
        before: journal::Snapshot {
            priority: None,
            action: default.action.describe(),
            state: "the listener's default action".into(),
        },
        after: journal::Snapshot {
            priority: Some(priority),
            action: action.describe(),
            state: "the monolith's rule".into(),
        },
        writes: vec![call],
        evidence: json!({ "rules_in_front": rules.len() - 1 }),
    };
    journal::append(&ctx.settings.journal_path(), &entry)?;
    Ok(InitLine {
        route: "monolith".into(),
        outcome: "created",
        message: format!(
            "monolith: created rule {arn} at priority {priority} (path /*, {}), behind every other rule: every request goes where the default action sent it",
            action.describe()
        ),
        drift: Vec::new(),
    })
}

/// What init would refuse before changing anything: routes whose rule must
/// still be created or stays parked, with an unusable priority or conditions
/// the monolith's rule can't be made to cover.
fn init_problems(ctx: &Ctx, listing: &Listing) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (route, settings) in &ctx.settings.routes {
        let view = listing.view(&ctx.settings, route)?;
        let in_front = view
            .rule()
            .and_then(|r| r.priority)
            .is_some_and(|p| p < listing.monolith_priority);
        if in_front {
            continue;
        }
        if let Some(problem) = crate::coverage::priority_problem(listing, &view, route) {
            problems.push(problem);
        }
        match view.rule() {
            None if view.rules.is_empty() => {
                if let Err(why) = crate::coverage::route_conditions(settings, &listing.monolith) {
                    problems.push(format!("{route}: its rule can't be parked safely: {why}"));
                }
            }
            Some(rule) => {
                if let Err(why) = rule.conditions.narrowed_into(&listing.monolith.conditions) {
                    problems.push(format!(
                        "{route}: its parked rule {} can take traffic and can't be narrowed: {why}",
                        rule.arn
                    ));
                }
            }
            None => {}
        }
    }
    Ok(problems)
}

async fn init_locked(
    ctx: &mut Ctx,
    listing: &Listing,
    dry_run: bool,
) -> anyhow::Result<Vec<InitLine>> {
    let problems = init_problems(ctx, listing)?;
    if !problems.is_empty() {
        return Err(usage(format!(
            "nothing was changed:\n  {}",
            problems.join("\n  ")
        )));
    }
    let mut report = Vec::new();
    let mut taken: std::collections::BTreeSet<u32> =
        listing.rules.iter().filter_map(|r| r.priority).collect();
    let routes: Vec<String> = ctx.settings.routes.keys().cloned().collect();
    for route in routes {
        let mut view = listing.view(&ctx.settings, &route)?;
        if !view.rules.is_empty() {
            if let Some(line) = narrow_parked(ctx, listing, &route, &view, dry_run).await? {
                report.push(line);
                continue;
            }
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
        report.push(create_route_rule(ctx, listing, &route, &mut view, &mut taken, dry_run).await?);
    }
    for route in ctx.settings.routes.keys() {
        for preview in listing.previews_of(route) {
            report.push(InitLine {
                route: route.clone(),
                outcome: "preview",
                message: format!(
                    "{route}: preview {}; left alone",
                    crate::preview::status_of(route, preview, None).summary
                ),
                drift: Vec::new(),
            });
        }
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

/// Creates one route's rule, parked behind the monolith's rule with the
/// conditions coverage asks for, tagged and journaled (or, dry, says so).
async fn create_route_rule(
    ctx: &mut Ctx,
    listing: &Listing,
    route: &str,
    view: &mut RouteView,
    taken: &mut std::collections::BTreeSet<u32>,
    dry_run: bool,
) -> anyhow::Result<InitLine> {
    let route = route.to_owned();
    let settings = ctx.settings.route(&route)?.clone();
    let conditions = crate::coverage::route_conditions(&settings, &listing.monolith)
        .map_err(|why| usage(format!("{route}: {why}")))?;
    let action = Forward::Plain {
        target_group: view.service_tg.clone(),
    };
    let describe_call = |slot: u32| {
        format!(
            "CreateRule Priority={slot} Conditions=[{}] Actions=[{}] Tags={ROUTE_TAG}={route},{PARKED_TAG}={slot}",
            conditions.describe(),
            action.describe()
        )
    };
    if dry_run {
        view.taken = taken.clone();
        let slot = view
            .behind_slot()
            .ok_or_else(|| anyhow::anyhow!("no free priority behind the monolith's rule"))?;
        taken.insert(slot);
        return Ok(InitLine {
            route: route.clone(),
            outcome: "planned",
            message: format!("{route}: would call {}", describe_call(slot)),
            drift: Vec::new(),
        });
    }
    let mut created = None;
    for _attempt in 0..5 {
        view.taken = taken.clone();
        let slot = view
            .behind_slot()
            .ok_or_else(|| anyhow::anyhow!("no free priority behind the monolith's rule"))?;
        taken.insert(slot);
        let slot_text = slot.to_string();
        match ctx
            .elb
            .create_rule(
                &listing.listener_arn,
                slot,
                &conditions,
                &action,
                &[
                    (ROUTE_TAG, route.as_str()),
                    (PARKED_TAG, slot_text.as_str()),
                ],
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
    let (arn, slot) = created
        .ok_or_else(|| anyhow::anyhow!("{route}: every free priority tried was taken meanwhile"))?;
    let who = ctx.who().await;
    let entry = Entry {
        id: crate::journal::new_id(),
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
        writes: vec![describe_call(slot)],
        evidence: json!({ "conditions": conditions, "monolith_conditions": listing.monolith.conditions }),
    };
    journal::append(&ctx.settings.journal_path(), &entry)?;
    ctx.elb
        .add_tags(&arn, &[(LAST_CHANGE_TAG, &entry.tag_value())])
        .await?;
    let copied = if conditions.value_count() > settings.paths.len() + settings.hosts.len() {
        format!(
            "; the monolith's rule's conditions copied in: {}",
            conditions.describe()
        )
    } else {
        String::new()
    };
    Ok(InitLine {
        route: route.clone(),
        outcome: "created",
        message: format!(
            "{route}: created rule {arn} at priority {slot}, parked behind the monolith's rule ({}){copied}",
            listing.monolith_priority
        ),
        drift: Vec::new(),
    })
}

/// A parked rule that the monolith's rule does not cover takes traffic it
/// should not: narrow it (ModifyRule of its conditions; narrowing a parked
/// rule only gives requests back to the rules in front and the default
/// action). `None` when it does not leak.
async fn narrow_parked(
    ctx: &mut Ctx,
    listing: &Listing,
    route: &str,
    view: &RouteView,
    dry_run: bool,
) -> anyhow::Result<Option<InitLine>> {
    let leaks = view.leaks();
    let Some(rule) = view.rule() else {
        return Ok(None);
    };
    let parked = rule.priority.is_some_and(|p| p > listing.monolith_priority);
    if leaks.is_empty() || !parked {
        return Ok(None);
    }
    let narrowed = rule
        .conditions
        .narrowed_into(&listing.monolith.conditions)
        .map_err(|why| usage(format!("{route}: {why}")))?;
    let call = format!(
        "ModifyRule RuleArn={} Conditions=[{}] (was {})",
        rule.arn,
        narrowed.describe(),
        rule.conditions.describe()
    );
    if dry_run {
        return Ok(Some(InitLine {
            route: route.to_owned(),
            outcome: "planned",
            message: format!("{route}: the parked rule can take traffic; would call {call}"),
            drift: Vec::new(),
        }));
    }
    ctx.elb.set_conditions(&rule.arn, &narrowed).await?;
    let who = ctx.who().await;
    let snapshot = crate::journal::snapshot(view);
    let entry = Entry {
        id: crate::journal::new_id(),
        when: now_rfc3339(),
        who,
        command: "init".into(),
        route: route.to_owned(),
        what: "narrowed the parked rule's conditions so the monolith's rule covers it".into(),
        before: snapshot.clone(),
        after: snapshot,
        writes: vec![call.clone()],
        evidence: json!({ "leaks": leaks }),
    };
    journal::append(&ctx.settings.journal_path(), &entry)?;
    ctx.elb
        .add_tags(&rule.arn, &[(LAST_CHANGE_TAG, &entry.tag_value())])
        .await?;
    let named: Vec<String> = leaks.iter().map(ToString::to_string).collect();
    Ok(Some(InitLine {
        route: route.to_owned(),
        outcome: "narrowed",
        message: format!(
            "{route}: the parked rule could take traffic ({}); narrowed: {call}",
            named.join("; ")
        ),
        drift: Vec::new(),
    }))
}

/// One route in `status`.
#[derive(Debug, Serialize)]
pub struct RouteStatus {
    pub route: String,
    pub paths: Vec<String>,
    /// When the route was retired (`migrate retire`), from its rule's tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired: Option<String>,
    /// What its retirement proves and what it leaves to the monolith.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_note: Option<crate::retire::RetiredNote>,
    /// Rules ficus does not manage that forward to the route's service too
    /// (a second rule for spellings over AWS's quota): a rollback leaves them.
    pub also_forwarding: Vec<crate::state::AlsoForwarding>,
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
    /// Where the rule is (or would be) parked behind the monolith's rule.
    pub parked_priority: Option<u32>,
    /// The rule's conditions as the ALB has them.
    pub conditions: Option<alb::Conditions>,
    pub monolith_priority: u32,
    pub action: Option<String>,
    pub weights: Vec<(String, u32)>,
    /// Group-level stickiness of the rule's weighted forward, in seconds.
    pub sticky_seconds: Option<u32>,
    pub target_group: String,
    pub healthy: usize,
    pub unhealthy: usize,
    pub targets: Vec<TargetHealth>,
    pub last_change: Option<LastChange>,
    /// The latest metric gate evaluation in the journal (`when` and `what`
    /// of its entry and the evaluation), if any; `rolled_back` (`when`,
    /// `what`) when the latest change since was a rollback, `changed_since`
    /// when it was another: not the route's now.
    pub metrics: Option<serde_json::Value>,
    pub drift: Vec<String>,
    /// The plan kept on the rule (holding, moving, baking), if any.
    pub plan: Option<crate::plan::PlanStatus>,
    /// Why the rule's plan tags can't be read, if so.
    pub plan_problem: Option<String>,
    /// The route's preview rules (`migrate preview`), not the route's rule.
    pub previews: Vec<crate::preview::PreviewStatus>,
    /// While the last change may still be reaching the load balancer's
    /// nodes (within `propagation_max` of it): "applied, reaching the data
    /// plane (...)".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reaching_data_plane: Option<String>,
    /// What the traffic shows after a recent change (metric gates on): its
    /// verdict and the `traffic:` line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficStatus>,
}

/// `status`'s reading of the traffic after a route's last change.
#[derive(Debug, Serialize)]
pub struct TrafficStatus {
    #[serde(flatten)]
    pub verdict: crate::metric_gates::TrafficAfterChange,
    pub says: String,
}

/// How long after `propagation_max` has passed `status` still shows what
/// ended the wait for the traffic.
const TRAFFIC_SHOWN_FOR: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Serialize)]
struct StatusReport {
    listener_arn: String,
    monolith_rule: String,
    monolith_priority: u32,
    monolith_action: String,
    monolith_conditions: alb::Conditions,
    lock: Option<lock::LockTag>,
    /// Lock tags left by operators that are gone (expired, or a dead process
    /// of this host); the next command that locks removes them.
    stale_locks: Vec<lock::LockTag>,
    routes: Vec<RouteStatus>,
    unknown_routes: Vec<String>,
    notifications: NotifyStatus,
    /// Tasks and scaling limits of the monolith (key `monolith`) and of each
    /// route's service (`crate::capacity`).
    capacity: BTreeMap<String, crate::capacity::Capacity>,
    /// What the AWS API calls of this status cost (`budget::Budget`'s JSON).
    aws_api: serde_json::Value,
}

/// The `[[notify]]` sinks and the deliveries that failed (from the journal).
#[derive(Debug, Serialize)]
struct NotifyStatus {
    sinks: usize,
    failed_deliveries: usize,
    last_failure: Option<String>,
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
        let mut status = route_status(ctx, &listing, route, &view, health);
        judge_recent_change(ctx, &listing, &view, &mut status).await;
        statuses.push(status);
    }
    let groups: Vec<(&str, &str, &[TargetHealth])> = statuses
        .iter()
        .map(|s| {
            (
                s.route.as_str(),
                s.target_group.as_str(),
                s.targets.as_slice(),
            )
        })
        .collect();
    let capacity =
        crate::capacity::for_status(&ctx.elb, &ctx.sdk, &listing.monolith_tg, &groups).await;
    let now = time::OffsetDateTime::now_utc();
    let report = StatusReport {
        listener_arn: listing.listener_arn.clone(),
        monolith_rule: listing.monolith.arn.clone(),
        monolith_priority: listing.monolith_priority,
        monolith_action: listing.monolith.action.describe(),
        monolith_conditions: listing.monolith.conditions.clone(),
        lock: lock::holder(&listing.listener_tags, now),
        stale_locks: lock::lock_tags(&listing.listener_tags)
            .into_iter()
            .filter(|l| l.is_dead(now))
            .collect(),
        routes: statuses,
        unknown_routes: listing.unknown_routes(&ctx.settings),
        notifications: notify_status(ctx)?,
        capacity,
        aws_api: crate::budget::used().to_json(),
    };
    for status in report.routes.iter().filter(|s| !s.drift.is_empty()) {
        ctx.notifier.emit(
            crate::notify::Event::new(crate::notify::Kind::DriftFound, Some(&status.route))
                .shares(status.percent, status.percent)
                .reason(status.drift.join("; ")),
        );
    }
    if ctx.output == Output::Json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("listener {}", report.listener_arn);
    println!(
        "monolith rule at priority {} ({}; {})",
        report.monolith_priority,
        report.monolith_conditions.describe(),
        report.monolith_action
    );
    if let Some(capacity) = report.capacity.get("monolith") {
        println!("monolith tasks: {}", crate::capacity::describe(capacity));
    }
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
        print_route_status(status);
        if let Some(capacity) = report.capacity.get(&status.route) {
            println!("  tasks:    {}", crate::capacity::describe(capacity));
        }
    }
    for unknown in &report.unknown_routes {
        println!(
            "\n{unknown}: a rule is tagged {ROUTE_TAG}={unknown} but migrate.toml has no such route"
        );
    }
    let notifications = &report.notifications;
    if notifications.sinks > 0 || notifications.failed_deliveries > 0 {
        println!();
        println!(
            "notify: {}; {} in the journal{}",
            crate::output::count(notifications.sinks, "sink", "sinks"),
            crate::output::count(
                notifications.failed_deliveries,
                "failed delivery",
                "failed deliveries"
            ),
            notifications
                .last_failure
                .as_ref()
                .map(|last| format!(" (last: {last})"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One route's lines of `status`'s text.
/// "applied, reaching the data plane (...)" while `last` is younger than
/// `propagation_max`: an accepted ELBv2 change reaches the load balancer's
/// nodes over seconds, and Describe* shows it before the traffic does.
fn reaching_data_plane(last: &LastChange, propagation_max: std::time::Duration) -> Option<String> {
    let when =
        time::OffsetDateTime::parse(&last.when, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let age = (time::OffsetDateTime::now_utc() - when)
        .as_seconds_f64()
        .max(0.0);
    (age < propagation_max.as_secs_f64()).then(|| {
        format!(
            "applied, reaching the data plane (written {age:.0} s ago; the load balancer's nodes may take up to {} (propagation_max) to route by it)",
            humantime::format_duration(propagation_max)
        )
    })
}

/// After a change younger than `propagation_max` plus a minute, with the
/// route's metric gates on: what the traffic shows. "applied, reaching the
/// data plane" until the counts show the new state or `propagation_max`
/// passes, then which of the two ended it. Without metrics (or when they
/// cannot be read) the time-based line stays.
async fn judge_recent_change(
    ctx: &Ctx,
    listing: &Listing,
    view: &RouteView,
    status: &mut RouteStatus,
) {
    let Some(changed_at) = status
        .last_change
        .as_ref()
        .and_then(|last| {
            time::OffsetDateTime::parse(&last.when, &time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map(time::OffsetDateTime::unix_timestamp)
    else {
        return;
    };
    let max = ctx.settings.propagation_max;
    let age = time::OffsetDateTime::now_utc().unix_timestamp() - changed_at;
    if let Some(recording) = status
        .last_change
        .as_ref()
        .and_then(|last| unrecorded_change(last, status.percent))
    {
        // The rule moved since its tag: the tag's time is not the change's.
        status.reaching_data_plane = Some(recording);
        return;
    }
    let gates = ctx.settings.metric_gates(&status.route);
    let (Some(share), true) = (status.percent, gates.enabled) else {
        return;
    };
    // Long enough for a counted period that begins after propagation_max.
    let shown_for = TRAFFIC_SHOWN_FOR.max(gates.period * 2);
    if age < 0 || age as u64 >= (max + shown_for).as_secs() {
        return;
    }
    let cloudwatch = crate::cloudwatch::CloudWatch::new(&ctx.sdk, ctx.verbose);
    let judged = crate::metric_gates::traffic_after_change(
        &cloudwatch,
        listing,
        view,
        share,
        (changed_at, gates.period),
        max,
    )
    .await;
    match judged {
        Ok(verdict) => {
            let change = status
                .last_change
                .as_ref()
                .map_or("", |last| last.what.as_str());
            let says = verdict.sentence(share, max, change);
            status.reaching_data_plane = matches!(
                verdict,
                crate::metric_gates::TrafficAfterChange::Reaching { .. }
            )
            .then(|| says.clone());
            status.traffic = Some(TrafficStatus { verdict, says });
        }
        Err(err) => {
            if let Some(reaching) = &mut status.reaching_data_plane {
                reaching.push_str(&format!("; the traffic could not be read: {err:#}"));
            }
        }
    }
}

/// The share of the route that the last-change tag's `what` says the
/// change left on the service: `shift to N percent` N, a rollback or an abort
/// 0; `None` for anything else.
fn share_after(what: &str) -> Option<u8> {
    if let Some(percent) = what
        .strip_prefix("shift to ")
        .and_then(|rest| rest.strip_suffix(" percent"))
    {
        return percent.parse().ok();
    }
    (what.starts_with("rollback")
        || what.starts_with("abort:")
        || what.contains("rolled back to the monolith"))
    .then_some(0)
}

/// When the rule's share differs from the one its last-change tag records,
/// the rule changed after the tag was written: a command is between its
/// write and its record (a rollback records once it has watched the
/// traffic), or the rule was changed outside `migrate`. The traffic can't be
/// judged from the tag's time then; this says so.
fn unrecorded_change(last: &LastChange, percent: Option<u8>) -> Option<String> {
    let recorded = share_after(&last.what)?;
    let now = percent?;
    (recorded != now).then(|| {
        format!(
            "applied, reaching the data plane: the rule now gives the service {now}%, but its last-change tag still records `{}` ({recorded}%): the command that changed it has not recorded it yet (or it was changed outside migrate); the traffic is judged from the change's record",
            last.what
        )
    })
}

fn print_route_status(status: &RouteStatus) {
    println!();
    println!("{}  {}", status.route, status.paths.join(" "));
    println!("  state:    {}", status.summary);
    match (&status.traffic, &status.reaching_data_plane) {
        (Some(traffic), _) => println!("  traffic:  {}", traffic.says),
        (None, Some(reaching)) => println!("  traffic:  {reaching}"),
        (None, None) => {}
    }
    if let Some(note) = &status.retired_note {
        println!("  retired:  since {}: {}", note.since, note.serves);
        println!("            {}", note.monolith_code);
    }
    for also in &status.also_forwarding {
        println!("  also:     {}", also.says);
    }
    if let Some(conditions) = &status.conditions {
        println!("  matches:  {}", conditions.describe());
    }
    if let Some(action) = &status.action {
        println!("  action:   {action}");
    }
    if let Some(plan) = &status.plan {
        println!(
            "  plan:     {} (steps {}, interval {}, started by {})",
            plan.summary, plan.steps, plan.interval, plan.by
        );
    }
    if let Some(problem) = &status.plan_problem {
        println!("  plan:     UNREADABLE: {problem}");
    }
    for preview in &status.previews {
        println!("  preview:  {}", preview.summary);
    }
    if let Some(parked) = status.parked_priority {
        println!("  parked:   priority {parked} (where rollback puts the rule)");
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
    if let Some(metrics) = &status.metrics {
        println!("  metrics:  {}", metrics_status_line(metrics));
    }
    if status.drift.is_empty() {
        println!("  drift:    none");
    } else {
        for drift in &status.drift {
            println!("  drift:    {drift}");
        }
    }
}

fn notify_status(ctx: &Ctx) -> anyhow::Result<NotifyStatus> {
    let (failed, last) = crate::notify::journaled_failures(&ctx.settings.journal_path())?;
    Ok(NotifyStatus {
        sinks: ctx.settings.notify.len(),
        failed_deliveries: failed,
        last_failure: last.map(|entry| {
            let error = entry.evidence["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            format!("{} {}: {error}", entry.when, entry.what)
        }),
    })
}

/// A retired route's note, for `status` and `plan`: its rule's patterns
/// read by the route's `monolith_paths`.
fn retired_note(ctx: &Ctx, route: &str, view: &RouteView) -> Option<crate::retire::RetiredNote> {
    let since = view.retired_since()?;
    let rule = view.rule()?;
    let reading = ctx.settings.routes.get(route)?.monolith_paths;
    Some(crate::retire::retired_note(
        since,
        &rule.conditions.paths,
        &reading,
    ))
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
    let now = time::OffsetDateTime::now_utc();
    let (plan, plan_problem) = match rule.map(|r| crate::plan::Plan::from_tags(&r.tags)) {
        Some(Ok(Some(plan))) => {
            let holder = lock::holder(&listing.listener_tags, now).map(|held| held.holder);
            (Some(plan.status(route, now, holder.as_deref())), None)
        }
        Some(Err(why)) => (None, Some(why)),
        _ => (None, None),
    };
    let weights = match rule.map(|r| &r.action) {
        Some(Forward::Weighted { target_groups, .. }) => target_groups
            .iter()
            .map(|(arn, w)| (target_group_name(arn).to_owned(), *w))
            .collect(),
        _ => Vec::new(),
    };
    RouteStatus {
        route: route.to_owned(),
        retired: view.retired_since().map(str::to_owned),
        retired_note: retired_note(ctx, route, view),
        also_forwarding: listing.also_forwarding(&view.service_tg),
        paths: ctx
            .settings
            .routes
            .get(route)
            .map(|r| r.paths.clone())
            .unwrap_or_default(),
        summary: match &state {
            RouteState::OnMonolith { .. } if !view.leaks().is_empty() => format!(
                "{}, but its rule matches requests the monolith's rule does not (LEAK, see drift); `migrate rollback` narrows it, or points it at the monolith when it can't be narrowed",
                state.explain()
            ),
            _ => match &plan {
                Some(plan) => format!("{}; {}", plan.summary, state.explain()),
                None => state.explain(),
            },
        },
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
        parked_priority: view.parked_priority(),
        conditions: rule.map(|r| r.conditions.clone()),
        monolith_priority: listing.monolith_priority,
        action: rule.map(|r| r.action.describe()),
        weights,
        sticky_seconds: rule.and_then(|r| r.action.sticky_seconds()),
        target_group: view.service_tg.clone(),
        healthy: targets.iter().filter(|t| t.state == "healthy").count(),
        unhealthy: targets.iter().filter(|t| t.state == "unhealthy").count(),
        targets,
        last_change: rule
            .and_then(|r| r.tags.get(LAST_CHANGE_TAG))
            .map(|v| LastChange::parse(v)),
        metrics: latest_metrics(ctx, route),
        drift: listing.drift(&ctx.settings, route, view),
        plan,
        plan_problem,
        previews: listing
            .previews_of(route)
            .into_iter()
            .map(|p| crate::preview::status_of(route, p, rule.and_then(|r| r.priority)))
            .collect(),
        reaching_data_plane: rule
            .and_then(|r| r.tags.get(LAST_CHANGE_TAG))
            .and_then(|v| reaching_data_plane(&LastChange::parse(v), ctx.settings.propagation_max)),
        traffic: None,
    }
}

/// The route's latest metric gate evaluation, from the journal; with
/// `rolled_back` (`what`, `when`) when the route's latest routing change
/// since (or the evaluation's own entry) took it back to the monolith, and
/// `changed_since` when that latest change was another (a new shift): either
/// way the evaluation is not shown as current.
fn latest_metrics(ctx: &Ctx, route: &str) -> Option<serde_json::Value> {
    let entries = journal::read(&ctx.settings.journal_path(), Some(route)).ok()?;
    let at = entries
        .iter()
        .rposition(|entry| entry.evidence.get("metrics").is_some())?;
    let entry = &entries[at];
    let mut latest = json!({
        "when": entry.when, "what": entry.what, "evaluation": entry.evidence["metrics"],
    });
    // The route's latest routing change after the evaluation's entry: the
    // verdict is about the route before it, not the route now.
    let changed = entries[at + 1..]
        .iter()
        .rev()
        .find(|e| !e.writes.is_empty());
    match changed {
        Some(change) if is_rollback(change) => {
            latest["rolled_back"] = json!({ "when": change.when, "what": change.what });
        }
        Some(change) => {
            latest["changed_since"] = json!({ "when": change.when, "what": change.what });
        }
        None if is_rollback(entry) => {
            // The evaluation's own entry rolled the route back: by the
            // metric gate, or by another gate (`gate_failed`) after the
            // metric gates had judged the interval.
            latest["rolled_back"] = json!({
                "when": entry.when, "what": entry.what,
                "gate_failed": entry.evidence.get("gate_failed"),
            });
        }
        None => {}
    }
    // Whether the verdict is about the route as it is now.
    latest["current"] =
        json!(latest.get("rolled_back").is_none() && latest.get("changed_since").is_none());
    Some(latest)
}

/// Whether a journal entry took the route back to the monolith (`rollback`,
/// or a shift's rollback after a failed gate).
fn is_rollback(entry: &journal::Entry) -> bool {
    let on_monolith = |state: &str| state.starts_with("on the monolith");
    entry.command == "rollback"
        || (on_monolith(&entry.after.state) && !on_monolith(&entry.before.state))
}

/// `status`'s metrics line: the latest evaluation, and, after a rollback,
/// that it is the verdict of the shift before it, not of the route now.
fn metrics_status_line(metrics: &serde_json::Value) -> String {
    let what = metrics["what"].as_str().unwrap_or_default();
    let when = metrics["when"].as_str().unwrap_or_default();
    let verdict = metrics_line(&metrics["evaluation"]);
    let changed = &metrics["changed_since"];
    if !changed.is_null() {
        return format!(
            "as of {when}: {verdict} (before `{what}`); not current: the route changed since (`{}`, {})",
            changed["what"].as_str().unwrap_or_default(),
            changed["when"].as_str().unwrap_or_default()
        );
    }
    let rollback = &metrics["rolled_back"];
    if rollback.is_null() {
        return format!("{verdict} (before `{what}`, {when})");
    }
    if rollback["when"] == metrics["when"] && rollback["what"] == metrics["what"] {
        if metrics["evaluation"]["verdict"] == "fail" {
            return format!(
                "as of the shift, {when}: {verdict} (the verdict that rolled it back: `{what}`); none since"
            );
        }
        // Another gate failed the step after the metric gates had passed
        // its interval: their verdict is not the route's now.
        let failed = rollback["gate_failed"].as_str().unwrap_or("another gate");
        return format!(
            "before the rollback, as of the shift, {when}: {verdict}; then {failed}: `{what}`; none since"
        );
    }
    format!(
        "as of the shift, {when}: {verdict} (before `{what}`); not current: rolled back since (`{}`, {})",
        rollback["what"].as_str().unwrap_or_default(),
        rollback["when"].as_str().unwrap_or_default()
    )
}

/// One line for a metric gate evaluation: `pass: errors: ...`.
fn metrics_line(evaluation: &serde_json::Value) -> String {
    format!(
        "{}: {}",
        evaluation["verdict"].as_str().unwrap_or("unknown"),
        evaluation["summary"].as_str().unwrap_or_default()
    )
}

/// One step of a plan.
#[derive(Debug, Serialize)]
struct PlannedStep {
    percent: u8,
    /// `--steps` hold after this step: a shift stops here until `migrate promote`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hold: bool,
    gates: Vec<String>,
    writes: Vec<Write>,
    read_back: String,
}

#[derive(Debug, Serialize)]
struct Plan {
    route: String,
    /// A retired route's note (`migrate retire`): since when, what the
    /// service alone serves, what is left to the monolith.
    #[serde(skip_serializing_if = "Option::is_none")]
    retired: Option<crate::retire::RetiredNote>,
    /// With `--from-alb-log`: the route's requests that the monolith served
    /// and that the patterns would leave there (`migrate leaks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    leaks: Option<crate::leaks::Report>,
    from: RouteState,
    to: u8,
    lock: String,
    /// What would make `shift` refuse (shadowed rules, a parked rule that
    /// can take traffic); empty when nothing would.
    refused: Vec<String>,
    steps: Vec<PlannedStep>,
    unlock: String,
    /// The `after-rollback` hooks: run after any rollback of the route.
    after_rollback: Vec<String>,
    /// The route's preview rules, left alone.
    previews: Vec<String>,
    /// The plan kept on the route's rule (`migrate promote` continues it).
    plan_on_rule: Option<String>,
}

pub async fn plan(ctx: &mut Ctx, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    ctx.settings.route(&args.route)?;
    crate::shift::apply_sticky(ctx, &args.route, args.sticky);
    let mut route = ctx.settings.route(&args.route)?.clone();
    let mut holds = Vec::new();
    if let Some(steps) = &args.steps {
        crate::shift::check_steps_and_sticky(steps, args.sticky)?;
        route.steps = crate::plan::percents(steps);
        holds = held_after(steps);
    }
    let listing = ctx.list().await?;
    let view = listing.view(&ctx.settings, &args.route)?;
    let state = view.state();
    if state == RouteState::Missing {
        anyhow::bail!(
            "route `{}` has no rule on the listener; run `migrate init`",
            args.route
        );
    }
    let targets = plan_targets(args, &route, &state)?;
    let problems = plan_problems(ctx, &listing, &view, (&args.route, &route), &targets)?;
    let mut steps = planned_steps(ctx, &listing, &view, (&args.route, &route), targets)?;
    for step in &mut steps {
        step.hold = holds.contains(&step.percent);
    }
    let leaks = if args.from_alb_log.is_empty() {
        None
    } else {
        Some(crate::leaks::find(ctx, &args.route, &args.from_alb_log, args.since).await?)
    };
    let current = state.percent();
    let plan = Plan {
        retired: retired_note(ctx, &args.route, &view),
        leaks,
        route: args.route.clone(),
        from: state.clone(),
        to: *steps
            .last()
            .map(|s| &s.percent)
            .unwrap_or(&current.unwrap_or(0)),
        lock: "AddTags ficus:lock:<id> on the listener, DescribeTags to confirm".into(),
        refused: problems,
        steps,
        unlock: "RemoveTags ficus:lock:<id> on the listener".into(),
        after_rollback: route
            .gates
            .iter()
            .filter(|gate| gate.phase == GatePhase::AfterRollback)
            .map(crate::custom_gates::describe)
            .collect(),
        previews: preview_notes(&listing, &args.route),
        plan_on_rule: plan_on_rule(&view, &args.route),
    };
    if ctx.output == Output::Json {
        print_json(&plan)?;
    } else {
        print_plan(&plan, &state, &route, args.to.is_none());
        print_plan_notes(&plan);
    }
    Ok(ExitCode::SUCCESS)
}

/// The percentages a plan goes through from `state`: `--to` (a step down
/// when below the current share, as `shift --to` makes it), else the
/// route's configured steps still ahead.
fn plan_targets(
    args: &PlanArgs,
    route: &crate::settings::RouteSettings,
    state: &RouteState,
) -> anyhow::Result<Vec<u8>> {
    let targets: Vec<u8> = match args.to {
        Some(0) => vec![0],
        Some(to) => vec![to],
        None => {
            check_steps(&route.steps)
                .map_err(|p| usage(format!("routes.{}.steps: {p}", args.route)))?;
            route.steps.clone()
        }
    };
    Ok(match (args.to, state.percent()) {
        (Some(0), _) => targets,
        // Below the current share: a step down, as `shift --to` makes it.
        (Some(to), Some(now)) if to < now => vec![to],
        _ => crate::state::pending_steps(state, &targets),
    })
}

/// Each step to `targets` on a simulated copy of the route: its gates, its
/// writes and what is read back (a target that changes nothing is left out).
fn planned_steps(
    ctx: &Ctx,
    listing: &Listing,
    view: &RouteView,
    route: (&str, &crate::settings::RouteSettings),
    targets: Vec<u8>,
) -> anyhow::Result<Vec<PlannedStep>> {
    let mut simulated = view.clone();
    let mut steps = Vec::new();
    for target in targets {
        let writes = simulated
            .transition(target)
            .map_err(|e| anyhow::anyhow!(e))?;
        if writes.is_empty() {
            continue;
        }
        let gates = step_gates(ctx, listing, view, route, target, steps.is_empty());
        for write in &writes {
            simulated = simulated.apply(write);
        }
        let rule = simulated.rule().cloned();
        steps.push(PlannedStep {
            percent: target,
            hold: false,
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
    Ok(steps)
}

/// The percentages a step list holds after (`10,hold,50,100`: 10).
fn held_after(steps: &[crate::cli::Step]) -> Vec<u8> {
    steps
        .windows(2)
        .filter_map(|pair| match pair {
            [crate::cli::Step::Percent(p), crate::cli::Step::Hold] => Some(*p),
            _ => None,
        })
        .collect()
}

/// The route's preview rules, each named as one no call touches.
fn preview_notes(listing: &Listing, route: &str) -> Vec<String> {
    listing
        .previews_of(route)
        .into_iter()
        .map(|p| {
            format!(
                "preview {} (not the route's rule; no call touches it)",
                crate::preview::status_of(route, p, None).summary
            )
        })
        .collect()
}

/// What follows a plan for people: the retired note and the access logs' leaks.
fn print_plan_notes(plan: &Plan) {
    if let Some(note) = &plan.retired {
        println!("retired since {}: {}", note.since, note.serves);
        println!("  {}", note.monolith_code);
    }
    if let Some(report) = &plan.leaks {
        println!(
            "access logs: {} of the route's {} requests went to the monolith by spellings the patterns miss (or a rule that won); a shift leaves them there",
            report.leaked_requests, report.route_requests
        );
        crate::leaks::print_report(report);
    }
}

/// Why a shift to `targets` would be refused (a priority problem is an
/// error: the plan can't be made).
fn plan_problems(
    ctx: &Ctx,
    listing: &Listing,
    view: &RouteView,
    (route_name, route): (&str, &crate::settings::RouteSettings),
    targets: &[u8],
) -> anyhow::Result<Vec<String>> {
    let parked = view
        .rule()
        .and_then(|r| r.priority)
        .is_some_and(|p| p > listing.monolith_priority);
    let shifting = targets.first().is_some_and(|t| *t > 0);
    if shifting
        && parked
        && let Some(problem) = crate::coverage::priority_problem(listing, view, route_name)
    {
        return Err(usage(problem));
    }
    let mut problems = if shifting {
        crate::coverage::preflight(listing, view, route_name, false)
    } else {
        Vec::new()
    };
    if shifting {
        if ctx.settings.monolith.base_url.is_none() {
            problems.push("the parity gate needs the monolith's URL: set `[monolith] base_url`, or shift with `--skip-parity`".into());
        }
        if route.service_url.is_none() {
            problems.push(format!("the parity gate needs the service's URL: set `[routes.{route_name}] service_url`, or shift with `--skip-parity`"));
        }
        if targets.len() > 1
            && let Err(why) = crate::coverage::probe_host(route_name, route, view)
        {
            problems.push(why);
        }
    }
    Ok(problems)
}

/// What a planned step to `target` must pass (`first`: the shift's first step).
fn step_gates(
    ctx: &Ctx,
    listing: &Listing,
    view: &RouteView,
    (route_name, route): (&str, &crate::settings::RouteSettings),
    target: u8,
    first: bool,
) -> Vec<String> {
    let mut gates = if target == 0 {
        Vec::new()
    } else {
        vec![
            format!(
                "DescribeTargetHealth {}: at least 1 healthy target, no unhealthy ones",
                target_group_name(&view.service_tg)
            ),
            "parity sample (migrate verify) passes".to_owned(),
            format!(
                "coverage: the monolith's rule ({}) still matches every request the route's rule does",
                listing.monolith.conditions.describe()
            ),
        ]
    };
    let metrics = ctx.settings.metric_gates(route_name);
    if target != 0 && metrics.enabled && !first {
        gates.push(format!(
            "metric gates pass: GetMetricData every {} since the previous step: at least {} requests to {}, its 5XX ratio within {:.1} points of the monolith's, its p99 within x{} + {} of the monolith's, the load balancer's own 5XX not up (docs/gates.md)",
            humantime::format_duration(metrics.period),
            metrics.min_requests,
            target_group_name(&view.service_tg),
            metrics.error_budget * 100.0,
            metrics.latency_ratio,
            humantime::format_duration(metrics.latency_allowance),
        ));
    }
    if target > 0 {
        let custom = route.gates.iter().filter(|gate| {
            (first && gate.phase == GatePhase::BeforeShift)
                || crate::custom_gates::step_phases(target).contains(&gate.phase)
        });
        gates.extend(custom.map(crate::custom_gates::describe));
    }
    gates
}

/// The plan kept on the route's rule, as `plan` shows it.
fn plan_on_rule(view: &RouteView, route: &str) -> Option<String> {
    view.rule()
        .map(|r| crate::plan::Plan::from_tags(&r.tags))
        .map(|plan| match plan {
            Ok(Some(plan)) => Some(format!(
                "plan on the rule: {} (steps {}); `migrate promote {}` continues it",
                plan.describe(route, time::OffsetDateTime::now_utc()),
                plan.steps_text(),
                route
            )),
            Ok(None) => None,
            Err(why) => Some(format!("plan on the rule: UNREADABLE: {why}")),
        })
        .unwrap_or_default()
}

/// A plan for people.
fn print_plan(
    plan: &Plan,
    state: &RouteState,
    route: &crate::settings::RouteSettings,
    configured_steps: bool,
) {
    println!("{}: {}", plan.route, state.explain());
    for preview in &plan.previews {
        println!("{preview}");
    }
    if let Some(on_rule) = &plan.plan_on_rule {
        println!("{on_rule}");
    }
    for problem in &plan.refused {
        println!("shift would refuse: {problem}");
    }
    if plan.steps.is_empty() {
        println!("nothing to do: no API call would change anything");
        return;
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
        if step.hold {
            println!("  hold:  the shift stops here until `migrate promote`");
        }
    }
    println!("unlock: {}", plan.unlock);
    for hook in &plan.after_rollback {
        println!("after any rollback: {hook}");
    }
    if route.steps.len() > 1 && configured_steps {
        println!(
            "between steps: probe {} through lb_url for {}",
            route.probe_paths().join(" "),
            humantime::format_duration(route.interval)
        );
    }
}

/// `migrate notify test`: a `notify.test` event to every sink, one result each.
pub async fn notify(ctx: &mut Ctx, args: &NotifyArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        NotifyAction::Test => {}
    }
    if ctx.settings.notify.is_empty() {
        return Err(usage(
            "no sink to test: add a `[[notify]]` table with `url = \"https://...\"` or `sns_topic_arn = \"arn:aws:sns:...\"` to migrate.toml",
        ));
    }
    let who = ctx.who().await;
    let results = crate::notify::test_all(&ctx.settings, &ctx.sdk, &who).await;
    let failed = results.iter().filter(|r| !r.delivered).count();
    if ctx.output == Output::Json {
        // The failure document's shape, with every sink's result.
        print_json(&serde_json::json!({
            "ok": failed == 0,
            "exit_code": if failed == 0 { 0 } else { 1 },
            "sinks": results,
        }))?;
    } else {
        for result in &results {
            match &result.error {
                None => println!(
                    "{}: delivered in {} ms ({} attempt{})",
                    result.sink,
                    result.millis,
                    result.attempts,
                    if result.attempts == 1 { "" } else { "s" }
                ),
                Some(error) => println!("{}: FAILED: {error}", result.sink),
            }
        }
    }
    if failed > 0 {
        return Err(anyhow::anyhow!(
            "{failed} of {} sinks did not take the test event",
            results.len()
        ));
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
    if entry.command == crate::notify::JOURNAL_COMMAND {
        let error = entry.evidence["error"].as_str().unwrap_or_default();
        return format!(
            "{} {} {} notify: {what}: {error}",
            entry.when, entry.who, entry.route
        );
    }
    let mut line = format!(
        "{} {} {} {}: {what} ({})",
        entry.when,
        entry.who,
        entry.route,
        entry.command,
        moved(&entry.before, &entry.after)
    );
    for (key, label) in [("gate_failed", "gate failed"), ("error", "error")] {
        if let Some(reason) = entry.evidence.get(key).and_then(|r| r.as_str()) {
            line.push_str(&format!("; {label}: {reason}"));
        }
    }
    // A retire with accepted leaks: who accepted them, and why.
    if entry.evidence["accepted_leaks"] == true {
        let who = entry.evidence["who"].as_str().unwrap_or(&entry.who);
        let reason = entry.evidence["reason"].as_str().unwrap_or("-");
        line.push_str(&format!("; accepted by {who}: {reason}"));
    }
    if let Some(metrics) = entry.evidence.get("metrics")
        && entry.evidence.get("gate_failed").is_none()
    {
        line.push_str(&format!("; metrics {}", metrics_line(metrics)));
    }
    line
}

/// What a journal entry changed on the rule: only the parts that moved, or
/// what the rule stayed at when nothing did.
fn moved(before: &journal::Snapshot, after: &journal::Snapshot) -> String {
    let priority = |p: Option<u32>| p.map_or("-".into(), |p| p.to_string());
    let mut parts = Vec::new();
    if before.priority != after.priority {
        parts.push(format!(
            "priority {} -> {}",
            priority(before.priority),
            priority(after.priority)
        ));
    }
    if before.action != after.action {
        parts.push(format!("{} -> {}", before.action, after.action));
    }
    if parts.is_empty() {
        format!(
            "unchanged: priority {}, {}",
            priority(after.priority),
            after.action
        )
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pass_before_another_gate_rolled_the_shift_back_reads_as_before_the_rollback() {
        let when = "2026-12-03T09:30:12Z";
        let what = "gate failed; rolled back to the monolith";
        let metrics = serde_json::json!({
            "when": when, "what": what,
            "evaluation": { "verdict": "pass", "summary": "traffic: 61 requests to the service" },
            "rolled_back": { "when": when, "what": what, "gate_failed": "health gate: target group users has no healthy target" },
            "current": false,
        });
        let line = super::metrics_status_line(&metrics);
        assert_eq!(
            line,
            "before the rollback, as of the shift, 2026-12-03T09:30:12Z: pass: traffic: 61 requests to the service; then health gate: target group users has no healthy target: `gate failed; rolled back to the monolith`; none since"
        );
        assert!(!line.contains("the verdict that rolled it back"), "{line}");
        let mut failed = metrics.clone();
        failed["evaluation"]["verdict"] = "fail".into();
        assert!(super::metrics_status_line(&failed).contains("(the verdict that rolled it back: "),);
    }

    use super::*;

    #[test]
    fn a_rule_that_moved_since_its_last_change_tag_is_not_judged_from_the_tag() {
        let last = |what: &str| LastChange {
            who: "ann".into(),
            when: "2026-12-03T10:00:00Z".into(),
            what: what.into(),
        };
        assert_eq!(share_after("shift to 50 percent"), Some(50));
        assert_eq!(share_after("rollback to the monolith"), Some(0));
        assert_eq!(
            share_after("gate failed: rolled back to the monolith"),
            Some(0)
        );
        assert_eq!(share_after("abort: p99 up"), Some(0));
        assert_eq!(share_after("bake passed"), None);
        // A rollback between its write and its record: the rule is at 0%,
        // the tag still names the shift.
        let says = unrecorded_change(&last("shift to 100 percent"), Some(0)).unwrap();
        assert!(
            says.starts_with("applied, reaching the data plane"),
            "{says}"
        );
        assert_eq!(
            unrecorded_change(&last("shift to 100 percent"), Some(100)),
            None
        );
        assert_eq!(
            unrecorded_change(&last("rollback to the monolith"), Some(0)),
            None
        );
    }

    #[test]
    fn history_lines_name_the_command_once_and_show_why_a_gate_failed() {
        let snapshot = journal::Snapshot {
            priority: Some(100),
            action: "forward users".into(),
            state: "on the monolith".into(),
        };
        let mut entry = Entry {
            id: crate::journal::new_id(),
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
            "2026-11-26T04:00:00Z ann@vm users init: created rule at priority 100 behind the monolith (unchanged: priority 100, forward users)"
        );
        entry.command = "shift".into();
        entry.what = "gate failed; nothing had moved".into();
        entry.evidence = json!({ "gate_failed": "health gate: target group users has no healthy target (no targets registered)" });
        assert!(
            history_line(&entry).ends_with(
                "shift: gate failed; nothing had moved (unchanged: priority 100, forward users); gate failed: health gate: target group users has no healthy target (no targets registered)"
            ),
            "{}",
            history_line(&entry)
        );
        entry.what = "step to 10%".into();
        entry.evidence = json!({});
        entry.before.action = "forward monolith".into();
        entry.after.action = "forward users 10%, monolith 90%".into();
        assert!(
            history_line(&entry).ends_with(
                "shift: step to 10% (forward monolith -> forward users 10%, monolith 90%)"
            ),
            "{}",
            history_line(&entry)
        );
        entry.after.priority = Some(1);
        assert!(
            history_line(&entry).ends_with(
                "(priority 100 -> 1, forward monolith -> forward users 10%, monolith 90%)"
            ),
            "{}",
            history_line(&entry)
        );
        // A retire with accepted leaks says who accepted them and why.
        entry.command = "retire".into();
        entry.what = "retire: service alone, 2 leaked requests accepted".into();
        entry.evidence =
            json!({ "accepted_leaks": true, "reason": "only a scanner, OPS-12", "who": "bob@vm" });
        assert!(
            history_line(&entry).ends_with(
                "retire: service alone, 2 leaked requests accepted (priority 100 -> 1, forward monolith -> forward users 10%, monolith 90%); accepted by bob@vm: only a scanner, OPS-12"
            ),
            "{}",
            history_line(&entry)
        );
    }
}
