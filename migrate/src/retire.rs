//! `migrate retire ROUTE`: the last step of a path's migration. The route
//! must be at 100% on its service (past its bake, where one is set) and the
//! access logs must show no leak (`leaks::find`) over the window given;
//! `--accept-leaks --reason` overrides, journaled with who and why. Then
//! the rule forwards to the service alone, carries `ficus:retired`, and the
//! journal says so. What that proves, and what no window of logs can (the
//! spellings the monolith reads as the route's that the case-sensitive
//! patterns miss), is [`retired_note`], said by `retire`, `status` and
//! `plan`. A retired route's rollback is refused without `--yes`
//! (`shift::rollback`; `rollback --all` skips it).

use std::process::ExitCode;

use alb::{Glob, Syntax};
use serde::Serialize;
use serde_json::json;

use crate::cli::RetireArgs;
use crate::context::Ctx;
use crate::error::{EXIT_ERROR, EXIT_OK};
use crate::journal::{self, Entry, LAST_CHANGE_TAG, LastChange, now_rfc3339};
use crate::output::record_outcome;
use crate::settings::MonolithPaths;
use crate::state::{Forward, RETIRED_TAG, RouteState, RouteView};

/// A spelling that the monolith reads as one of the route's paths but that
/// the rule's patterns miss: the logs cannot prove that nobody sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unproven {
    /// The monolith's reading that makes it the route's (`another case`...).
    pub reading: &'static str,
    pub example: String,
}

/// What a retired route's rule proves, and what it leaves to the monolith:
/// `retire`, `status` and `plan` say it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetiredNote {
    /// When it was retired (the rule's `ficus:retired` tag).
    pub since: String,
    /// The rule's path patterns: the service alone serves what they match.
    pub patterns: Vec<String>,
    /// Spellings of the route by the monolith's reading that the patterns
    /// miss (one example per reading); empty when the patterns take every one.
    pub unproven: Vec<Unproven>,
    /// One line for people: what the service alone serves.
    pub serves: String,
    /// One line for people: whether the monolith's code for these paths can
    /// go, and what to leave in its place when spellings remain unproven.
    pub monolith_code: String,
}

/// What `retire`, `status` and `plan` say of a route retired at `since`
/// whose rule has `patterns`, the monolith reading paths by `reading`.
pub fn retired_note(since: &str, patterns: &[String], reading: &MonolithPaths) -> RetiredNote {
    let unproven = unproven_spellings(patterns, reading);
    let monolith_code = if unproven.is_empty() {
        "the monolith's code for these paths can go: by its reading of paths, every spelling of them matches the patterns".to_owned()
    } else {
        let examples: Vec<String> = unproven
            .iter()
            .map(|spelling| format!("{}, e.g. {}", spelling.reading, spelling.example))
            .collect();
        format!(
            "the monolith's code for these paths can go only with a 308 redirect to the spelling the patterns match (or a 404) left in its place: it also reads spellings the patterns miss as these paths ({}), and those still reach it: no window of logs proves that nobody sends them (docs/leaks-and-retire.md, \"What retire proves\")",
            examples.join("; ")
        )
    };
    RetiredNote {
        since: since.to_owned(),
        patterns: patterns.to_vec(),
        unproven,
        serves: format!(
            "the service alone serves what the rule's patterns match: {}",
            patterns.join(" ")
        ),
        monolith_code,
    }
}

/// The spellings the monolith reads as the route's (by `reading`) that none
/// of `patterns` matches (ALB patterns are case-sensitive): one example per
/// reading that has any, made from the patterns' own spellings.
pub fn unproven_spellings(patterns: &[String], reading: &MonolithPaths) -> Vec<Unproven> {
    let exact: Vec<Glob> = patterns
        .iter()
        .map(|pattern| Glob::new(pattern, Syntax::CaseSensitive))
        .collect();
    let read: Vec<Glob> = patterns
        .iter()
        .map(|pattern| {
            Glob::new(
                &crate::leaks::canonical(pattern, reading),
                Syntax::CaseSensitive,
            )
        })
        .collect();
    let missed = |path: &String| {
        let canonical = crate::leaks::canonical(path, reading);
        read.iter().any(|glob| glob.matches(&canonical))
            && !exact.iter().any(|glob| glob.matches(path))
    };
    let readings: [(bool, &'static str, Variants); 4] = [
        (reading.case_insensitive, "another case", case_variants),
        (reading.trailing_slash, "a trailing slash", |path| {
            vec![format!("{path}/")]
        }),
        (reading.repeated_slashes, "a doubled slash", doubled_slashes),
        (
            reading.percent_decoding,
            "a percent-encoded letter",
            percent_encoded,
        ),
    ];
    readings
        .into_iter()
        .filter(|(on, _, _)| *on)
        .filter_map(|(_, name, variants)| {
            patterns
                .iter()
                .map(|pattern| spelled(pattern))
                .flat_map(|path| variants(&path))
                .find(|path| missed(path))
                .map(|example| Unproven {
                    reading: name,
                    example,
                })
        })
        .collect()
}

/// The other spellings of a path by one of the monolith's readings.
type Variants = fn(&str) -> Vec<String>;

/// A path that `pattern` matches: its wildcards `*` as nothing, `?` as `x`.
fn spelled(pattern: &str) -> String {
    pattern
        .chars()
        .filter(|c| *c != '*')
        .map(|c| if c == '?' { 'x' } else { c })
        .collect()
}

/// Other spellings of `path` in case: all upper, each segment capitalized,
/// the first letter's case switched.
fn case_variants(path: &str) -> Vec<String> {
    let capitalized: Vec<String> = path
        .split('/')
        .map(|segment| {
            let mut chars = segment.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect();
    let switched: String = match path.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => {
            let letter = path[at..].chars().next().unwrap_or_default();
            let other = if letter.is_ascii_uppercase() {
                letter.to_ascii_lowercase()
            } else {
                letter.to_ascii_uppercase()
            };
            format!("{}{other}{}", &path[..at], &path[at + 1..])
        }
        None => path.to_owned(),
    };
    [path.to_ascii_uppercase(), capitalized.join("/"), switched]
        .into_iter()
        .filter(|variant| variant != path)
        .collect()
}

/// `path` with one of its slashes doubled, each in turn.
fn doubled_slashes(path: &str) -> Vec<String> {
    path.match_indices('/')
        .map(|(at, _)| format!("{}/{}", &path[..at], &path[at..]))
        .collect()
}

/// `path` with its first letter percent-encoded (`/%61pi/users`).
fn percent_encoded(path: &str) -> Vec<String> {
    path.find(|c: char| c.is_ascii_alphabetic())
        .map(|at| {
            format!(
                "{}%{:02X}{}",
                &path[..at],
                path.as_bytes()[at],
                &path[at + 1..]
            )
        })
        .into_iter()
        .collect()
}

/// Refuses what the command line gets wrong about `--reason` (exit 2): a
/// blank one, or one without `--accept-leaks` (nothing to accept).
fn check_reason(args: &RetireArgs) -> anyhow::Result<()> {
    match args.reason.as_deref() {
        Some(reason) if reason.trim().is_empty() => Err(crate::error::usage(
            "--reason is blank: say why the leaks are accepted (it is journaled with who accepted them), e.g. --reason \"only a scanner, OPS-12\"",
        )),
        Some(_) if !args.accept_leaks => Err(crate::error::usage(
            "--reason goes with --accept-leaks (it says why leaks are accepted): without leaks to accept, drop --reason; to retire although the logs show leaks, add --accept-leaks",
        )),
        _ => Ok(()),
    }
}

pub async fn retire(ctx: &mut Ctx, args: &RetireArgs) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings.route(&args.route)?.clone();
    check_reason(args)?;
    ctx.start_who();
    record_outcome(&json!({ "route": args.route }));
    // Already retired: said from a plain read, before the lock and the
    // logs, so that nothing is written.
    let listing = ctx.list().await?;
    let view = listing.view(&ctx.settings, &args.route)?;
    if let (Some(since), RouteState::OnService { .. }) = (view.retired_since(), view.state()) {
        return already_retired(ctx, args, &view, since, &settings.monolith_paths);
    }
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
    let note = retired_note(
        &journal::tag_safe(&when),
        &rule.conditions.paths,
        &settings.monolith_paths,
    );
    let proven = proven_line(&report);
    if ctx.output == crate::output::Output::Json {
        crate::output::print_json(&json!({
            "ok": true, "route": args.route, "retired": true, "rule": rule.arn,
            "forward": view.service_tg, "leaks": report, "proven": proven, "note": note,
        }))?;
    } else {
        print_retired(
            args,
            (&rule.arn, &view.service_tg),
            &who,
            &report,
            (&proven, &note),
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// What the logs proved: no leak among the route's requests in the window,
/// or the leaks accepted, which still reach the monolith.
fn proven_line(report: &crate::leaks::Report) -> String {
    let window = crate::leaks::window_text(report);
    if report.leaks.is_empty() {
        return format!(
            "proven: no leak among the route's {} {window} ({} reached the service)",
            crate::output::count(report.route_requests as usize, "request", "requests"),
            report.service_requests
        );
    }
    format!(
        "not proven: {} of the route's {} {window} leaked to the monolith and were accepted ({}): those spellings still reach it",
        report.leaked_requests,
        crate::output::count(report.route_requests as usize, "request", "requests"),
        leak_list(report)
    )
}

/// The leaked spellings with their counts: `/API/USERS/1 ×5, /Api/Users ×2`.
fn leak_list(report: &crate::leaks::Report) -> String {
    report
        .leaks
        .iter()
        .map(|leak| format!("{} ×{}", leak.path, leak.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A retired route asked to retire again: when and by whom, nothing
/// written (exit 0).
fn already_retired(
    ctx: &Ctx,
    args: &RetireArgs,
    view: &RouteView,
    since: &str,
    reading: &MonolithPaths,
) -> anyhow::Result<ExitCode> {
    let rule = view.rule().expect("a retired route has one rule");
    let by = retired_by(ctx, rule, &args.route);
    let note = retired_note(since, &rule.conditions.paths, reading);
    if ctx.output == crate::output::Output::Json {
        crate::output::print_json(&json!({
            "ok": true, "route": args.route, "retired": true, "already_retired": true,
            "since": since, "by": by, "rule": rule.arn, "note": note,
        }))?;
    } else {
        println!(
            "{}: already retired, since {since} by {by}; nothing written",
            args.route
        );
        println!("  {}", note.serves);
        println!("  {}", note.monolith_code);
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// Who retired the route: from the rule's last-change tag when the
/// retirement is its last change, else from the local journal.
fn retired_by(ctx: &Ctx, rule: &crate::state::RuleInfo, route: &str) -> String {
    if let Some(last) = rule
        .tags
        .get(LAST_CHANGE_TAG)
        .map(|tag| LastChange::parse(tag))
        && last.what.starts_with("retire")
    {
        return last.who;
    }
    journal::read(&ctx.settings.journal_path(), Some(route))
        .ok()
        .and_then(|entries| {
            entries
                .into_iter()
                .rev()
                .find(|entry| entry.command == "retire")
        })
        .map_or_else(
            || {
                "someone not named in the rule's last-change tag nor in this machine's journal"
                    .to_owned()
            },
            |entry| entry.who,
        )
}

/// Why the route can't be retired now: not at 100% on its service, or baking.
fn refusal(view: &RouteView, route: &str) -> Option<String> {
    match view.state() {
        RouteState::OnService { .. } => baking_refusal(view, route),
        other => Some(format!(
            "route `{route}` is {}; retire needs it at 100% on its service: {}",
            other.explain(),
            way_to_full(view, route)
        )),
    }
}

/// How a route below 100% gets there: its plan's promote when a shift holds
/// it, the shift that runs it when one is moving it, else a shift to 100.
fn way_to_full(view: &RouteView, route: &str) -> String {
    let plan = view
        .rule()
        .and_then(|rule| crate::plan::Plan::from_tags(&rule.tags).ok().flatten());
    match plan {
        Some(plan) if plan.holding() => format!(
            "its shift (steps {}) is holding at {}% since {}: `migrate promote {route}` continues it toward 100% (to its next hold, if any); then retire",
            plan.steps_text(),
            plan.reached().unwrap_or(0),
            journal::rfc3339(plan.since),
        ),
        Some(plan) => format!(
            "its shift (steps {}) is {}; retire once it is at 100%",
            plan.steps_text(),
            plan.describe(route, time::OffsetDateTime::now_utc())
        ),
        None => format!("`migrate shift {route} --to 100` first"),
    }
}

/// The refusal for leaks not accepted: the leaks, and how to go on. Under
/// `--output json`, the failure document of every command (`ok`,
/// `exit_code`, `error`) with the route, `retired: false` and the report.
fn print_leaks_refusal(
    ctx: &Ctx,
    args: &RetireArgs,
    report: &crate::leaks::Report,
) -> anyhow::Result<()> {
    let refused = format!(
        "refused: {} the monolith ({}); fix them and run again, or pass --accept-leaks --reason \"...\"",
        crate::output::count(
            report.leaked_requests as usize,
            "request still reaches",
            "requests still reach"
        ),
        leak_list(report)
    );
    if ctx.output == crate::output::Output::Json {
        record_outcome(&json!({ "route": args.route, "retired": false, "leaks": report }));
        eprintln!("migrate: {refused}");
        crate::output::print_failure(&refused, EXIT_ERROR);
    } else {
        crate::leaks::print_report(report);
        println!("{refused}");
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
        format!(
            "retire: service alone, {} accepted",
            crate::output::count(
                report.leaked_requests as usize,
                "leaked request",
                "leaked requests"
            )
        )
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

/// A retirement for people: accepted leaks (who, why), then the route,
/// what the logs proved and what they could not.
fn print_retired(
    args: &RetireArgs,
    (rule_arn, service_tg): (&str, &str),
    who: &str,
    report: &crate::leaks::Report,
    (proven, note): (&str, &RetiredNote),
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
    println!("{}: retired: {}", args.route, note.serves);
    println!("  {proven}");
    println!("  {}", note.monolith_code);
    println!(
        "  rule {rule_arn} forwards to {} alone, tagged {RETIRED_TAG}",
        crate::state::target_group_name(service_tg)
    );
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
    view.retired_since().is_some()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(patterns: &[&str]) -> Vec<String> {
        patterns
            .iter()
            .map(|pattern| (*pattern).to_owned())
            .collect()
    }

    fn examples(patterns: &[&str], reading: MonolithPaths) -> Vec<(&'static str, String)> {
        unproven_spellings(&paths(patterns), &reading)
            .into_iter()
            .map(|spelling| (spelling.reading, spelling.example))
            .collect()
    }

    const NONE: MonolithPaths = MonolithPaths {
        case_insensitive: false,
        trailing_slash: false,
        repeated_slashes: false,
        percent_decoding: false,
    };

    #[test]
    fn the_spellings_the_patterns_miss_are_named_per_reading() {
        let forum = MonolithPaths::default();
        // (patterns, reading, the (reading, example) pairs expected)
        type Case<'a> = (&'a [&'a str], MonolithPaths, Vec<(&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            // The forum: any case of /api/users*, a trailing slash matched by `*`.
            (
                &["/api/users*"],
                forum,
                vec![("another case", "/API/USERS")],
            ),
            // The pattern the leak report adds takes all upper case: the next
            // variant is still missed.
            (
                &["/api/users*", "/API/USERS*"],
                forum,
                vec![("another case", "/Api/Users")],
            ),
            // An exact pattern misses its trailing slash.
            (
                &["/api/users"],
                MonolithPaths {
                    case_insensitive: false,
                    ..forum
                },
                vec![("a trailing slash", "/api/users/")],
            ),
            (
                &["/api/users*"],
                MonolithPaths {
                    repeated_slashes: true,
                    percent_decoding: true,
                    ..NONE
                },
                vec![
                    ("a doubled slash", "//api/users"),
                    ("a percent-encoded letter", "/%61pi/users"),
                ],
            ),
            // A reading as strict as the patterns leaves nothing unproven.
            (&["/api/users*"], NONE, vec![]),
            // Every case of a one-letter literal is a pattern.
            (&["/a*", "/A*"], forum, vec![]),
        ];
        for (patterns, reading, expected) in cases {
            let expected: Vec<(&str, String)> = expected
                .into_iter()
                .map(|(name, example)| (name, example.to_owned()))
                .collect();
            assert_eq!(examples(patterns, reading), expected, "{patterns:?}");
        }
    }

    #[test]
    fn the_note_claims_the_code_can_go_only_when_every_spelling_is_matched() {
        let strict = retired_note("2026-12-04T04:00:00Z", &paths(&["/api/users*"]), &NONE);
        assert!(strict.unproven.is_empty());
        assert!(
            strict
                .monolith_code
                .starts_with("the monolith's code for these paths can go: ")
        );
        let forum = retired_note(
            "2026-12-04T04:00:00Z",
            &paths(&["/api/users*"]),
            &MonolithPaths::default(),
        );
        assert_eq!(
            forum.serves,
            "the service alone serves what the rule's patterns match: /api/users*"
        );
        assert!(
            forum.monolith_code.contains(
                "can go only with a 308 redirect to the spelling the patterns match (or a 404) left in its place"
            ) && forum.monolith_code.contains("another case, e.g. /API/USERS"),
            "{}",
            forum.monolith_code
        );
    }
}
