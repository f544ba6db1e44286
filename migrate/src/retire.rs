//! `migrate retire ROUTE`: the last step of a path's migration. The route
//! must be at 100% on its service (past its bake, where one is set) and the
//! access logs must show no leak (`leaks::find`) over the window given;
//! `--accept-leaks --reason` overrides, journaled with who and why. Then
//! the rule forwards to the service alone, carries `ficus:retired`, and the
//! journal says so: the monolith's code for these paths can go. A retired
//! route's rollback is refused without `--yes` (`shift::rollback`; `rollback
//! --all` skips it).

use std::process::ExitCode;

use serde_json::json;

use crate::cli::RetireArgs;
use crate::context::Ctx;
use crate::error::{EXIT_ERROR, EXIT_OK};
use crate::journal::{self, Entry, LAST_CHANGE_TAG, now_rfc3339};
use crate::output::record_outcome;
use crate::state::{Forward, RouteState, RouteView};

/// The tag on a retired route's rule: when it was retired.
pub const RETIRED_TAG: &str = "ficus:retired";

/// What `status` and `plan` say of a retired route.
pub fn retired_note(paths: &[String]) -> String {
    format!(
        "retired: the service alone serves {}; the monolith's code for these paths can go",
        paths.join(" ")
    )
}

pub async fn retire(ctx: &mut Ctx, args: &RetireArgs) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings.route(&args.route)?.clone();
    if args
        .reason
        .as_deref()
        .is_some_and(|reason| reason.trim().is_empty())
    {
        return Err(crate::error::usage(
            "--reason is blank: say why the leaks are accepted (it is journaled with who accepted them), e.g. --reason \"only a scanner, OPS-12\"",
        ));
    }
    ctx.start_who();
    record_outcome(&json!({ "route": args.route }));
    let (lock, listing) = ctx.lock_and_list(&ctx.lock_options(&args.lock)).await?;
    let view = listing.view(&ctx.settings, &args.route)?;
    if let Some(refusal) = refusal(&view, &args.route) {
        let _ = lock.release(&ctx.elb).await;
        anyhow::bail!(refusal);
    }
    let report = crate::leaks::find(ctx, &args.route, &args.from_alb_log, args.since).await;
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            let _ = lock.release(&ctx.elb).await;
            return Err(error);
        }
    };
    if let Some(why) = crate::leaks::no_evidence(&report, crate::leaks::Evidence::ServiceRequest) {
        let _ = lock.release(&ctx.elb).await;
        anyhow::bail!(why);
    }
    if !report.leaks.is_empty() && !args.accept_leaks {
        let _ = lock.release(&ctx.elb).await;
        print_leaks_refusal(ctx, args, &report)?;
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    let rule = view
        .rule()
        .expect("a route on its service has one rule")
        .clone();
    let service = Forward::Plain {
        target_group: view.service_tg.clone(),
    };
    let who = ctx.who().await;
    let when = now_rfc3339();
    let entry = retire_entry(args, &view, (&rule.arn, &service), (&who, &when), &report);
    let written = write_retirement(ctx, &lock, (&rule.arn, &service), &when, &entry).await;
    let released = lock.release(&ctx.elb).await;
    written?;
    released?;
    if ctx.output == crate::output::Output::Json {
        crate::output::print_json(&json!({
            "ok": true, "route": args.route, "retired": true, "rule": rule.arn,
            "forward": view.service_tg, "leaks": report,
        }))?;
    } else {
        print_retired(
            args,
            &settings,
            (&rule.arn, &view.service_tg),
            &who,
            &report,
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// Why the route can't be retired now: not at 100% on its service, or baking.
fn refusal(view: &RouteView, route: &str) -> Option<String> {
    let refusal = match view.state() {
        RouteState::OnService { .. } => None,
        other => Some(format!(
            "route `{route}` is {}; retire needs it at 100% on its service: `migrate shift {route} --to 100` first",
            other.explain(),
        )),
    };
    refusal.or_else(|| baking_refusal(view, route))
}

/// The refusal for leaks not accepted: the leaks, and how to go on.
fn print_leaks_refusal(
    ctx: &Ctx,
    args: &RetireArgs,
    report: &crate::leaks::Report,
) -> anyhow::Result<()> {
    if ctx.output == crate::output::Output::Json {
        crate::output::print_json(&json!({
            "ok": false, "route": args.route, "retired": false, "leaks": report,
        }))?;
    } else {
        crate::leaks::print_report(report);
        println!(
            "refused: {} the monolith ({}); fix them and run again, or pass --accept-leaks --reason \"...\"",
            crate::output::count(
                report.leaked_requests as usize,
                "request still reaches",
                "requests still reach"
            ),
            report
                .leaks
                .iter()
                .map(|leak| format!("{} ×{}", leak.path, leak.count))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The journal entry of a retirement: the rule forwarding to `service`
/// alone, tagged, with the leaks (and who accepted them, why) as evidence.
fn retire_entry(
    args: &RetireArgs,
    view: &RouteView,
    (rule_arn, service): (&str, &Forward),
    (who, when): (&str, &str),
    report: &crate::leaks::Report,
) -> Entry {
    let what = if report.leaks.is_empty() {
        "retire: service alone, no leaks".to_owned()
    } else {
        format!("retire with {} accepted leaks", report.leaked_requests)
    };
    let before = journal::snapshot(view);
    Entry {
        id: journal::new_id(),
        when: when.to_owned(),
        who: who.to_owned(),
        command: "retire".into(),
        route: args.route.clone(),
        what,
        before: before.clone(),
        after: journal::Snapshot {
            state: "retired".into(),
            action: service.describe(),
            ..before
        },
        writes: vec![
            format!("ModifyRule {rule_arn} forward to {}", view.service_tg),
            format!("AddTags {rule_arn} {RETIRED_TAG}={when}"),
        ],
        evidence: json!({
            "leaks": report,
            "accepted_leaks": args.accept_leaks && !report.leaks.is_empty(),
            "reason": args.reason,
            "who": who,
        }),
    }
}

/// Under the lock (confirmed before each write): the rule forwards to the
/// service alone, gets its tags, and the journal the entry.
async fn write_retirement(
    ctx: &Ctx,
    lock: &crate::lock::Lock,
    (rule_arn, service): (&str, &Forward),
    when: &str,
    entry: &Entry,
) -> anyhow::Result<()> {
    lock.confirm(&ctx.elb).await?;
    ctx.elb.set_action(rule_arn, service).await?;
    lock.confirm(&ctx.elb).await?;
    ctx.elb
        .add_tags(
            rule_arn,
            &[
                (RETIRED_TAG, &journal::tag_safe(when)),
                (LAST_CHANGE_TAG, &entry.tag_value()),
            ],
        )
        .await?;
    journal::append(&ctx.settings.journal_path(), entry)
}

/// A retirement for people: accepted leaks (who, why), then the route.
fn print_retired(
    args: &RetireArgs,
    settings: &crate::settings::RouteSettings,
    (rule_arn, service_tg): (&str, &str),
    who: &str,
    report: &crate::leaks::Report,
) {
    if !report.leaks.is_empty() {
        println!(
            "accepted {} ({}): {}",
            crate::output::count(
                report.leaked_requests as usize,
                "leaked request",
                "leaked requests"
            ),
            who,
            args.reason.as_deref().unwrap_or("")
        );
    }
    println!("{}: {}", args.route, retired_note(&settings.paths));
    println!("  rule {rule_arn} forwards to {service_tg} alone, tagged {RETIRED_TAG}");
}

/// A refusal while the route's bake is unfinished (`ficus:plan:bake-until`
/// still on the rule): running until its time, or past it with its gates not
/// yet judged (no `migrate` ran at its end). A finished or promoted bake
/// leaves no such tag.
fn baking_refusal(view: &RouteView, route: &str) -> Option<String> {
    let until = view.rule()?.tags.get(crate::plan::BAKE_UNTIL_TAG)?;
    let running =
        time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339)
            .map_or(true, |end| end > time::OffsetDateTime::now_utc());
    Some(if running {
        format!(
            "route `{route}` is baking at 100% until {until}; retire after the bake ends (`migrate promote {route}` ends it early)"
        )
    } else {
        format!(
            "route `{route}` baked until {until}, but no `migrate` finished the bake (its gates are judged at its end): `migrate promote {route}` judges them and ends it; then retire"
        )
    })
}

/// Whether the route's rule carries `ficus:retired`.
pub fn is_retired(view: &RouteView) -> bool {
    view.rule()
        .is_some_and(|rule| rule.tags.contains_key(RETIRED_TAG))
}

/// What `rollback --all` (without `--yes`) says of a retired route it skips.
pub fn skipped_note(route: &str) -> String {
    format!(
        "retired, skipped: the monolith may no longer serve its paths; `migrate rollback {route} --yes` rolls it back"
    )
}

/// Before a rollback: a retired route goes back only with `--yes` (without
/// it: refused, exit 2; `rollback --all` skips it), and then loses its
/// `ficus:retired` tag.
pub async fn allow_rollback(
    ctx: &Ctx,
    lock: &crate::lock::Lock,
    view: &crate::state::RouteView,
    route: &str,
    yes: bool,
) -> anyhow::Result<()> {
    let Some(rule) = view
        .rule()
        .filter(|rule| rule.tags.contains_key(RETIRED_TAG))
    else {
        return Ok(());
    };
    if !yes {
        return Err(crate::error::usage(format!(
            "route `{route}` is retired: the monolith may no longer serve its paths; \
             refused without --yes: `migrate rollback {route} --yes` rolls it back anyway"
        )));
    }
    lock.confirm(&ctx.elb).await?;
    ctx.elb
        .remove_tags(&rule.arn, &[RETIRED_TAG.to_owned()])
        .await
}
