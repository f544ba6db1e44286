//! Safety on listeners that ficus did not build: a parked rule must never
//! take traffic, a route's priority must not surprise, and a move in front
//! must not silently shadow the operator's own rules.
//!
//! A rule parked behind the monolith's rule takes no traffic only if the
//! monolith's rule matches every request the parked rule matches. That is
//! never assumed: the monolith's rule's conditions (host, header, method,
//! query, source address, path) are compared with the route's rule's by
//! `alb::Conditions`, and a condition the route's rule lacks is copied into
//! it when that is exact and within AWS's quotas, or refused with the
//! condition named. Pure code over a [`Listing`]; the commands do the I/O.

use alb::{Conditions, Gap};

use crate::settings::RouteSettings;
use crate::state::{Listing, ROUTE_TAG, RouteView, RuleInfo};

/// The conditions a route's rule is created with: its paths (and hosts of
/// its own), narrowed by the monolith's rule's other conditions so that the
/// monolith's rule covers it.
pub fn route_conditions(route: &RouteSettings, monolith: &RuleInfo) -> Result<Conditions, String> {
    let own = Conditions {
        paths: route.paths.clone(),
        hosts: route.hosts.clone(),
        ..Conditions::default()
    };
    own.narrowed_into(&monolith.conditions)
}

/// One line naming a leak and its fix.
pub fn leak_line(listing: &Listing, view: &RouteView, gaps: &[Gap]) -> String {
    let named: Vec<String> = gaps.iter().map(Gap::to_string).collect();
    let fix = match view.rule() {
        Some(rule) => match rule.conditions.narrowed_into(&listing.monolith.conditions) {
            Ok(narrowed) => format!(
                "`migrate init` narrows a parked rule to {}",
                narrowed.describe()
            ),
            Err(why) => format!(
                "copying the monolith's conditions can't fix it ({why}); change the route's `paths`/`hosts` or the monolith's rule"
            ),
        },
        None => String::new(),
    };
    format!(
        "LEAK: while parked, the rule can take traffic the monolith's rule does not match: {}; {fix}",
        named.join("; ")
    )
}

/// Why the route's configured priority can't be used on this listener, if
/// it can't: unset, not in front of the monolith's rule, or taken by a rule
/// that is not the route's own. The message lists free slots.
pub fn priority_problem(listing: &Listing, view: &RouteView, route: &str) -> Option<String> {
    let monolith = listing.monolith_priority;
    let free: Vec<String> = (1..monolith)
        .rev()
        .filter(|p| !view.taken.contains(p))
        .take(3)
        .map(|p| p.to_string())
        .collect();
    let suggestion = if free.is_empty() {
        format!("; no priority in front of the monolith's rule ({monolith}) is free")
    } else {
        format!(
            "; free priorities just in front of the monolith's rule ({monolith}): {}",
            free.join(", ")
        )
    };
    let Some(priority) = view.preferred else {
        return Some(format!(
            "`routes.{route}.priority` is not set: choose the priority the route's rule takes in front of the monolith's rule{suggestion}"
        ));
    };
    if priority >= monolith {
        return Some(format!(
            "`routes.{route}.priority` = {priority} is not in front of the monolith's rule (priority {monolith}): the route's rule needs a lower number{suggestion}"
        ));
    }
    let own = |rule: &RuleInfo| view.rules.iter().any(|r| r.arn == rule.arn);
    let holder = listing
        .rules
        .iter()
        .find(|r| r.priority == Some(priority) && !own(r))?;
    Some(format!(
        "`routes.{route}.priority` = {priority} is taken by rule {} ({}, {}){suggestion}",
        holder.arn,
        holder.conditions.describe(),
        holder.action.describe()
    ))
}

/// The rules that the route's rule would shadow if it moved to `slot`:
/// rules between `slot` and the monolith's rule that can match a request the
/// route's rule matches.
pub fn shadowed<'a>(listing: &'a Listing, view: &RouteView, slot: u32) -> Vec<&'a RuleInfo> {
    let Some(route_rule) = view.rule() else {
        return Vec::new();
    };
    listing
        .rules
        .iter()
        .filter(|r| {
            r.priority
                .is_some_and(|p| p > slot && p < listing.monolith_priority)
                && r.arn != route_rule.arn
                // The route's own preview rule is meant to be passed.
                && !(r.previews().is_some()
                    && r.previews() == route_rule.tags.get(ROUTE_TAG).map(String::as_str))
                && r.conditions.overlaps(&route_rule.conditions)
        })
        .collect()
}

/// One line naming a shadowed rule.
pub fn shadow_line(rule: &RuleInfo) -> String {
    format!(
        "rule {} at priority {} ({}, {})",
        rule.arn,
        rule.priority.unwrap_or_default(),
        rule.conditions.describe(),
        rule.action.describe()
    )
}

/// The checks before a route's rule moves: its priority (when it must move
/// in front), the coverage of its parked position, and the rules it would
/// shadow (refused unless `allow_shadow`). Returns the problems, each a line.
pub fn preflight(
    listing: &Listing,
    view: &RouteView,
    route: &str,
    allow_shadow: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let parked = view
        .rule()
        .and_then(|r| r.priority)
        .is_some_and(|p| p > listing.monolith_priority);
    if parked {
        if let Some(problem) = priority_problem(listing, view, route) {
            problems.push(problem);
        } else if let Some(slot) = view.preferred {
            let shadowed = shadowed(listing, view, slot);
            if !shadowed.is_empty() && !allow_shadow {
                let names: Vec<String> = shadowed.iter().map(|r| shadow_line(r)).collect();
                problems.push(format!(
                    "moving the route's rule to priority {slot} would shadow {}: requests it matches would go to the service instead; choose a priority behind it (`routes.{route}.priority`), or pass --allow-shadow",
                    names.join("; ")
                ));
            }
        }
    }
    let leaks = view.leaks();
    if !leaks.is_empty() {
        problems.push(leak_line(listing, view, &leaks));
    }
    problems
}

/// The Host header the probes need to reach the route's rule: the route's
/// `probe_host`, else the rule's first host without wildcards; `None` when the
/// rule has no host condition (the load balancer URL's host will do).
/// Refused when no host is known or the configured one misses the rule:
/// probes that miss the rule would judge the monolith, not the route.
pub fn probe_host(
    route: &str,
    settings: &RouteSettings,
    view: &RouteView,
) -> Result<Option<String>, String> {
    let hosts = view
        .rule()
        .map(|r| r.conditions.hosts.clone())
        .unwrap_or_default();
    if let Some(host) = &settings.probe_host {
        let matches = hosts.is_empty()
            || hosts
                .iter()
                .any(|h| alb::Pattern::new(h, alb::Syntax::CaseInsensitive).matches(host));
        return if matches {
            Ok(Some(host.clone()))
        } else {
            Err(format!(
                "`routes.{route}.probe_host` = {host} does not match the route's rule's hosts {hosts:?}: the probes would miss the route"
            ))
        };
    }
    if hosts.is_empty() {
        return Ok(None);
    }
    match hosts.iter().find(|h| !h.contains(['*', '?'])) {
        Some(host) => Ok(Some(host.clone())),
        None => Err(format!(
            "the route's rule matches only the hosts {hosts:?}: set `routes.{route}.probe_host` to one of its hosts, or the probes would miss the route"
        )),
    }
}
