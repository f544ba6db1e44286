//! `migrate preview`: a rule that sends the route's requests carrying a
//! header to its service, in front of the monolith's rule, so that testers
//! and CI reach the service through the real load balancer while every
//! client still gets the monolith. Tagged `ficus:preview=<route>`, never
//! `ficus:route`: it is not the route's rule, and nothing mistakes it for it.

use std::process::ExitCode;

use serde::Serialize;
use serde_json::json;

use crate::cli::{PREVIEW_HEADER, PreviewArgs};
use crate::context::{Ctx, Listing};
use crate::error::usage;
use crate::journal::{self, Entry, Snapshot, now_rfc3339};
use crate::lock::Lock;
use crate::output::{Output, print_json, record_outcome};
use crate::state::{Forward, PREVIEW_TAG, RuleInfo, target_group_name};

/// The header a route's preview answers to: the given one, else
/// `X-Ficus-Preview: <route>`.
pub fn header_for(route: &str, given: Option<&(String, String)>) -> (String, String) {
    given
        .cloned()
        .unwrap_or_else(|| (PREVIEW_HEADER.to_owned(), route.to_owned()))
}

/// A preview rule, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewStatus {
    pub rule_arn: String,
    pub priority: Option<u32>,
    /// `NAME: VALUE` of its header condition(s).
    pub header: String,
    pub summary: String,
}

/// How `status` shows a preview rule; `route_priority` is where the route's
/// rule is (a rule in front of the preview takes its requests first).
pub fn status_of(route: &str, rule: &RuleInfo, route_priority: Option<u32>) -> PreviewStatus {
    let header = rule
        .conditions
        .headers
        .iter()
        .map(|h| format!("{}: {}", h.name, h.values.join(",")))
        .collect::<Vec<_>>()
        .join("; ");
    let target = match &rule.action {
        Forward::Plain { target_group } => target_group_name(target_group).to_owned(),
        other => other.describe(),
    };
    let behind = match (rule.priority, route_priority) {
        (Some(p), Some(r)) if r < p => format!(
            "; the route's rule (priority {r}) is in front of it and takes those requests first"
        ),
        _ => String::new(),
    };
    PreviewStatus {
        rule_arn: rule.arn.clone(),
        priority: rule.priority,
        header: header.clone(),
        summary: format!(
            "rule at priority {}: requests with `{header}` go to {target}{behind} (`migrate preview {route} --off` removes it)",
            rule.priority.map_or("-".to_owned(), |p| p.to_string())
        ),
    }
}

/// The preview rule's slot: the given priority when free and in front of the
/// monolith's rule, else the lowest free slot that is no route's `priority`.
fn slot(ctx: &Ctx, listing: &Listing, given: Option<u32>) -> anyhow::Result<u32> {
    let taken: std::collections::BTreeSet<u32> =
        listing.rules.iter().filter_map(|r| r.priority).collect();
    let reserved: Vec<u32> = ctx
        .settings
        .routes
        .values()
        .filter_map(|r| r.priority)
        .collect();
    let monolith = listing.monolith_priority;
    match given {
        Some(p) if p >= monolith => Err(usage(format!(
            "--priority {p} is not in front of the monolith's rule ({monolith}): the preview would never be reached"
        ))),
        Some(p) if taken.contains(&p) || reserved.contains(&p) => Err(usage(format!(
            "--priority {p} is taken, or is a route's `priority` (where its shift moves its rule); choose another"
        ))),
        Some(p) => Ok(p),
        None => (1..monolith)
            .find(|p| !taken.contains(p) && !reserved.contains(p))
            .ok_or_else(|| {
                usage(format!(
                    "no free priority in front of the monolith's rule ({monolith}) for the preview rule; pass --priority"
                ))
            }),
    }
}

/// What `preview` did, for `--output json`.
#[derive(Debug, Serialize)]
struct Outcome {
    route: String,
    outcome: &'static str,
    message: String,
    rule_arn: Option<String>,
    priority: Option<u32>,
    header: String,
}

/// Before `verify --through-lb` with the default header: every route it
/// compares has a preview rule, or the "candidate" would be today's routing
/// again (the monolith compared with itself). A custom `--preview-header`
/// may match a rule of the team's own, so it is not checked.
pub async fn require_for_verify(ctx: &Ctx, args: &crate::cli::VerifyArgs) -> anyhow::Result<()> {
    if !args.through_lb || args.preview_header.is_some() {
        return Ok(());
    }
    let routes: Vec<String> = match &args.route {
        Some(route) => vec![route.clone()],
        None => ctx.settings.routes.keys().cloned().collect(),
    };
    let listing = ctx.list().await?;
    let missing: Vec<&String> = routes
        .iter()
        .filter(|route| ctx.settings.routes.contains_key(*route))
        .filter(|route| listing.previews_of(route).is_empty())
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [route] => Err(usage(format!(
            "{route} has no preview rule on the listener, so requests with the preview header would go where the others go (today's routing compared with itself): run `migrate preview {route}` first"
        ))),
        many => Err(usage(format!(
            "{} have no preview rule on the listener (requests with the preview header would go where the others go): run `migrate preview ROUTE` for each first",
            many.iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub async fn preview(ctx: &mut Ctx, args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings.route(&args.route)?.clone();
    let (name, value) = header_for(&args.route, args.header.as_ref());
    ctx.start_who();
    record_outcome(&json!({ "route": args.route }));
    let (lock, listing) = ctx.lock_and_list(&ctx.lock_options(&args.lock)).await?;
    let result = if args.off {
        remove(ctx, &lock, &listing, &args.route).await
    } else {
        add(ctx, &lock, &listing, args, &settings, (&name, &value)).await
    };
    let released = lock.release(&ctx.elb).await;
    let outcome = result?;
    released?;
    if ctx.output == Output::Json {
        print_json(&outcome)?;
    } else {
        println!("{}", outcome.message);
    }
    Ok(ExitCode::SUCCESS)
}

async fn add(
    ctx: &mut Ctx,
    lock: &Lock,
    listing: &Listing,
    args: &PreviewArgs,
    settings: &crate::settings::RouteSettings,
    (name, value): (&str, &str),
) -> anyhow::Result<Outcome> {
    let route = &args.route;
    let header = format!("{name}: {value}");
    if let Some(existing) = listing.previews_of(route).first() {
        let shown = status_of(route, existing, None);
        return Ok(Outcome {
            route: route.clone(),
            outcome: "exists",
            message: format!(
                "{route}: a preview rule exists ({}); nothing to do",
                shown.summary
            ),
            rule_arn: Some(existing.arn.clone()),
            priority: existing.priority,
            header: shown.header,
        });
    }
    let mut conditions = crate::coverage::route_conditions(settings, &listing.monolith)
        .map_err(|why| usage(format!("{route}: {why}")))?;
    conditions.headers.push(alb::HeaderCondition {
        name: name.to_owned(),
        values: vec![value.to_owned()],
    });
    let service_tg = listing
        .service_tgs
        .get(route)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{route}: the service's target group is unknown"))?;
    let action = Forward::Plain {
        target_group: service_tg,
    };
    let priority = slot(ctx, listing, args.priority)?;
    lock.confirm(&ctx.elb).await?;
    let arn = ctx
        .elb
        .create_rule(
            &listing.listener_arn,
            priority,
            &conditions,
            &action,
            &[(PREVIEW_TAG, route.as_str())],
        )
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("{route}: priority {priority} was taken meanwhile; run preview again")
        })?;
    let call = format!(
        "CreateRule Priority={priority} Conditions=[{}] Actions=[{}] Tags={PREVIEW_TAG}={route}",
        conditions.describe(),
        action.describe()
    );
    journal_entry(
        ctx,
        route,
        &format!("preview rule created at priority {priority} ({header})"),
        (None, Some(priority)),
        call,
    )
    .await?;
    Ok(Outcome {
        route: route.clone(),
        outcome: "created",
        message: format!(
            "{route}: preview rule {arn} at priority {priority}: requests to {} with `{header}` go to {}; every other request goes where it went. `migrate verify {route} --through-lb` compares them; `migrate preview {route} --off` removes it",
            settings.paths.join(" "),
            action.describe()
        ),
        rule_arn: Some(arn),
        priority: Some(priority),
        header,
    })
}

async fn remove(
    ctx: &mut Ctx,
    lock: &Lock,
    listing: &Listing,
    route: &str,
) -> anyhow::Result<Outcome> {
    let rules: Vec<RuleInfo> = listing.previews_of(route).into_iter().cloned().collect();
    if rules.is_empty() {
        return Ok(Outcome {
            route: route.to_owned(),
            outcome: "absent",
            message: format!("{route}: no preview rule; nothing to do"),
            rule_arn: None,
            priority: None,
            header: String::new(),
        });
    }
    let mut removed = Vec::new();
    for rule in &rules {
        lock.confirm(&ctx.elb).await?;
        ctx.elb.delete_rule(&rule.arn).await?;
        journal_entry(
            ctx,
            route,
            &format!(
                "preview rule at priority {} removed",
                rule.priority.unwrap_or_default()
            ),
            (rule.priority, None),
            format!("DeleteRule RuleArn={}", rule.arn),
        )
        .await?;
        removed.push(rule.arn.clone());
    }
    Ok(Outcome {
        route: route.to_owned(),
        outcome: "removed",
        message: format!(
            "{route}: preview rule removed ({}); requests with the header go where every other request goes",
            removed.join(", ")
        ),
        rule_arn: removed.first().cloned(),
        priority: rules[0].priority,
        header: status_of(route, &rules[0], None).header,
    })
}

/// Journals a preview change (the route's own rule is untouched).
async fn journal_entry(
    ctx: &mut Ctx,
    route: &str,
    what: &str,
    (before, after): (Option<u32>, Option<u32>),
    call: String,
) -> anyhow::Result<()> {
    let snapshot = |priority: Option<u32>| Snapshot {
        priority,
        action: priority.map_or("none".to_owned(), |_| "forward (preview)".to_owned()),
        state: if priority.is_some() {
            "preview rule".to_owned()
        } else {
            "no preview rule".to_owned()
        },
    };
    let entry = Entry {
        id: crate::journal::new_id(),
        when: now_rfc3339(),
        who: ctx.who().await,
        command: "preview".into(),
        route: route.to_owned(),
        what: what.to_owned(),
        before: snapshot(before),
        after: snapshot(after),
        writes: vec![call],
        evidence: json!({}),
    };
    journal::append(&ctx.settings.journal_path(), &entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_header;

    #[test]
    fn the_header_defaults_to_the_route_and_parses_name_and_value() {
        assert_eq!(
            header_for("users", None),
            ("X-Ficus-Preview".to_owned(), "users".to_owned())
        );
        let given = parse_header("X-Canary: qa").unwrap();
        assert_eq!(given, ("X-Canary".to_owned(), "qa".to_owned()));
        assert_eq!(header_for("users", Some(&given)), given);
        assert_eq!(parse_header("X-Canary=qa").unwrap(), given);
        for bad in ["no-separator", ": value", "X Bad: v", "X-Empty:"] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_names_the_header_and_a_route_rule_in_front() {
        let rule = RuleInfo {
            arn: "rule-preview".into(),
            priority: Some(4),
            conditions: alb::Conditions {
                paths: vec!["/api/users*".into()],
                headers: vec![alb::HeaderCondition {
                    name: "X-Ficus-Preview".into(),
                    values: vec!["users".into()],
                }],
                ..alb::Conditions::default()
            },
            action: Forward::Plain {
                target_group: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/users/a".into(),
            },
            tags: [(PREVIEW_TAG.to_owned(), "users".to_owned())].into(),
        };
        assert_eq!(rule.previews(), Some("users"));
        let parked = status_of("users", &rule, Some(100));
        assert_eq!(parked.header, "X-Ficus-Preview: users");
        assert!(
            parked.summary.starts_with(
                "rule at priority 4: requests with `X-Ficus-Preview: users` go to users"
            ),
            "{}",
            parked.summary
        );
        assert!(
            status_of("users", &rule, Some(1))
                .summary
                .contains("is in front of it")
        );
    }
}
