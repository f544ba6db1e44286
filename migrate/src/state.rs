//! The route model, derived purely from described rules (no I/O here), and the
//! writes that take a route from one state to another.
//!
//! A route is on the monolith while its rule sits behind the monolith's rule
//! (a higher priority number), on the service when in front with a plain
//! forward to the service, and shifting N% when in front with a weighted
//! forward (service N, monolith 100-N). Every priority move is one
//! SetRulePriorities call with one rule into a free slot.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// The highest rule priority ELBv2 accepts.
pub const MAX_PRIORITY: u32 = 50_000;

/// The tag that keeps a route's parked priority, written when `migrate init`
/// creates the rule, so a rollback parks it where it was whatever
/// `priority` says later.
pub const PARKED_TAG: &str = "ficus:parked-priority";

/// The tag that marks a route's rule: `ficus:route=<name>`.
pub const ROUTE_TAG: &str = "ficus:route";

/// The tag that marks a route's preview rule (`migrate preview`):
/// `ficus:preview=<name>`. A preview rule is never the route's rule.
pub const PREVIEW_TAG: &str = "ficus:preview";

/// The tag on a retired route's rule (`migrate retire`): when it was retired.
pub const RETIRED_TAG: &str = "ficus:retired";

/// A listener rule as `migrate` sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    pub arn: String,
    /// `None` for the listener's default rule.
    pub priority: Option<u32>,
    /// Its conditions (path, host, header, method, query, source address).
    pub conditions: alb::Conditions,
    pub action: Forward,
    pub tags: BTreeMap<String, String>,
}

impl RuleInfo {
    /// The route this rule previews (`ficus:preview`), if it is a preview rule.
    pub fn previews(&self) -> Option<&str> {
        self.tags.get(PREVIEW_TAG).map(String::as_str)
    }
}

/// The listener as read: its rules with their tags, and the monolith's rule.
/// (Built and read by `context`, which also derives route views from it.)
#[derive(Debug, Clone)]
pub struct Listing {
    pub listener_arn: String,
    pub listener_tags: BTreeMap<String, String>,
    pub rules: Vec<RuleInfo>,
    pub monolith: RuleInfo,
    pub monolith_priority: u32,
    pub monolith_tg: String,
    /// Service target group ARNs by route.
    pub service_tgs: BTreeMap<String, String>,
}

impl Listing {
    /// The route's preview rules (normally none or one).
    pub fn previews_of(&self, route: &str) -> Vec<&RuleInfo> {
        self.rules
            .iter()
            .filter(|r| r.previews() == Some(route))
            .collect()
    }

    /// The rules that forward to the route's service target group
    /// (`service_tg`; a weighted forward with a weight above 0 counts) that
    /// ficus does not manage: no route's rule (`ficus:route`), no preview
    /// rule. A second rule for spellings over AWS's quota (`migrate leaks`
    /// suggests one) is such a rule: a rollback leaves it in place, so
    /// `status` shows it and `rollback` warns about it.
    pub fn also_forwarding(&self, service_tg: &str) -> Vec<AlsoForwarding> {
        self.also_forwarding_rules(service_tg)
            .into_iter()
            .map(|rule| AlsoForwarding::new(rule, service_tg))
            .collect()
    }

    /// The rules of [`Listing::also_forwarding`] (`migrate leaks` fixes
    /// spellings there too).
    pub fn also_forwarding_rules(&self, service_tg: &str) -> Vec<&RuleInfo> {
        self.rules
            .iter()
            .filter(|rule| {
                !rule.tags.contains_key(ROUTE_TAG)
                    && !rule.tags.contains_key(PREVIEW_TAG)
                    && rule.action.forwards_to(service_tg)
            })
            .collect()
    }
}

/// A rule, not managed by ficus, that forwards to a route's service
/// ([`Listing::also_forwarding`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlsoForwarding {
    pub rule_arn: String,
    /// `None`: the listener's default rule.
    pub priority: Option<u32>,
    pub conditions: String,
    pub action: String,
    /// One line for people: the rule, and how to remove it.
    pub says: String,
}

impl AlsoForwarding {
    fn new(rule: &RuleInfo, service_tg: &str) -> AlsoForwarding {
        let service = target_group_name(service_tg);
        let says = match rule.priority {
            Some(priority) => format!(
                "rule {} at priority {priority} ({}) also forwards to {service} ({}), not managed by ficus: a rollback leaves it in place, and what it matches stays on {service}; `aws elbv2 delete-rule --rule-arn {}` removes it",
                rule.arn,
                rule.conditions.describe(),
                rule.action.describe(),
                rule.arn
            ),
            None => format!(
                "the listener's default action also forwards to {service} ({}), not managed by ficus: a rollback leaves it in place",
                rule.action.describe()
            ),
        };
        AlsoForwarding {
            rule_arn: rule.arn.clone(),
            priority: rule.priority,
            conditions: rule.conditions.describe(),
            action: rule.action.describe(),
            says,
        }
    }
}

/// A rule's terminal action, normalized: a forward to one target group is
/// `Plain` however it was written (AWS describes it with a ForwardConfig too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Forward {
    Plain {
        target_group: String,
    },
    /// Target groups and weights, sorted by ARN; with group-level
    /// stickiness (`TargetGroupStickinessConfig`) for this many seconds, if
    /// on.
    Weighted {
        target_groups: Vec<(String, u32)>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sticky_seconds: Option<u32>,
    },
    /// Anything else (fixed response, redirect, authentication...).
    Other {
        description: String,
    },
}

impl Forward {
    pub fn weighted(groups: impl IntoIterator<Item = (String, u32)>) -> Forward {
        let mut target_groups: Vec<(String, u32)> = groups.into_iter().collect();
        target_groups.sort();
        Forward::Weighted {
            target_groups,
            sticky_seconds: None,
        }
    }

    /// The same forward with group-level stickiness for `seconds` (a
    /// weighted forward only: a plain forward has one group to stick to).
    pub fn sticky(self, seconds: Option<u32>) -> Forward {
        match self {
            Forward::Weighted { target_groups, .. } => Forward::Weighted {
                target_groups,
                sticky_seconds: seconds,
            },
            other => other,
        }
    }

    /// Whether the action sends requests to `target_group` (a plain
    /// forward to it, or a weighted one with a weight above 0 on it).
    pub fn forwards_to(&self, target_group: &str) -> bool {
        match self {
            Forward::Plain { target_group: to } => to == target_group,
            Forward::Weighted { target_groups, .. } => target_groups
                .iter()
                .any(|(to, weight)| to == target_group && *weight > 0),
            Forward::Other { .. } => false,
        }
    }

    /// The group-level stickiness of a weighted forward, in seconds.
    pub fn sticky_seconds(&self) -> Option<u32> {
        match self {
            Forward::Weighted { sticky_seconds, .. } => *sticky_seconds,
            _ => None,
        }
    }

    /// The action that sends `percent` of the route to the service.
    pub fn for_percent(percent: u8, service_tg: &str, monolith_tg: &str) -> Forward {
        if percent >= 100 {
            Forward::Plain {
                target_group: service_tg.to_owned(),
            }
        } else {
            Forward::weighted([
                (service_tg.to_owned(), u32::from(percent)),
                (monolith_tg.to_owned(), 100 - u32::from(percent)),
            ])
        }
    }

    /// One line for people: `forward users`, `forward users=10 monolith=90`
    /// or `forward users=10 monolith=90, sticky 10m`.
    pub fn describe(&self) -> String {
        match self {
            Forward::Plain { target_group } => {
                format!("forward {}", target_group_name(target_group))
            }
            Forward::Weighted {
                target_groups,
                sticky_seconds,
            } => {
                let parts: Vec<String> = target_groups
                    .iter()
                    .map(|(arn, weight)| format!("{}={weight}", target_group_name(arn)))
                    .collect();
                let sticky = sticky_seconds.map_or(String::new(), |seconds| {
                    let duration = std::time::Duration::from_secs(u64::from(seconds));
                    format!(", sticky {}", humantime::format_duration(duration))
                });
                format!("forward {}{sticky}", parts.join(" "))
            }
            Forward::Other { description } => description.clone(),
        }
    }
}

/// The name inside a target group ARN (`...:targetgroup/NAME/ID`), or the input.
pub fn target_group_name(arn_or_name: &str) -> &str {
    match arn_or_name.split_once(":targetgroup/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
        None => arn_or_name,
    }
}

/// Where a route stands, derived from the rules alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RouteState {
    /// No rule carries the route's tag: run `migrate init`.
    Missing,
    /// Behind the monolith's rule. `restored` is false when its action is not
    /// yet the plain forward to the service (a gradual shift or a rollback
    /// stopped between its two calls); traffic is on the monolith either way.
    OnMonolith { priority: u32, restored: bool },
    /// In front with a weighted forward: `percent` of the route on the service.
    Shifting { priority: u32, percent: u8 },
    /// In front with a plain forward to the service.
    OnService { priority: u32 },
    /// Anything else, explained.
    Inconsistent { reason: String },
}

impl RouteState {
    /// The share of the route's traffic on the service, when known.
    pub fn percent(&self) -> Option<u8> {
        match self {
            RouteState::OnMonolith { .. } => Some(0),
            RouteState::Shifting { percent, .. } => Some(*percent),
            RouteState::OnService { .. } => Some(100),
            RouteState::Missing | RouteState::Inconsistent { .. } => None,
        }
    }

    /// The state's name, as in JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            RouteState::Missing => "missing",
            RouteState::OnMonolith { .. } => "on-monolith",
            RouteState::Shifting { .. } => "shifting",
            RouteState::OnService { .. } => "on-service",
            RouteState::Inconsistent { .. } => "inconsistent",
        }
    }

    /// One line for people.
    pub fn explain(&self) -> String {
        match self {
            RouteState::Missing => {
                "missing: no rule is tagged for this route; run `migrate init`".into()
            }
            RouteState::OnMonolith {
                priority,
                restored: true,
            } => {
                format!("on the monolith (rule parked at priority {priority})")
            }
            RouteState::OnMonolith {
                priority,
                restored: false,
            } => format!(
                "on the monolith (rule parked at priority {priority}; its action is not yet the plain forward to the service: `migrate rollback` restores it, `migrate shift` continues)"
            ),
            RouteState::Shifting { priority, percent } => {
                format!(
                    "shifting: {percent}% on the service (rule in front at priority {priority})"
                )
            }
            RouteState::OnService { priority } => {
                format!("on the service (rule in front at priority {priority})")
            }
            RouteState::Inconsistent { reason } => format!("inconsistent: {reason}"),
        }
    }
}

/// Everything the state of one route depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteView {
    /// The rules tagged for the route (normally exactly one).
    pub rules: Vec<RuleInfo>,
    pub monolith_priority: u32,
    pub service_tg: String,
    pub monolith_tg: String,
    /// Every numbered priority in use on the listener.
    pub taken: BTreeSet<u32>,
    /// The route's preferred slot in front (from settings).
    pub preferred: Option<u32>,
    /// The monolith's rule's conditions: what a parked rule must stay within.
    pub monolith_conditions: alb::Conditions,
    /// Group-level stickiness of weighted steps, in seconds (`--sticky`,
    /// the route's `sticky`, else what the rule's weighted forward has).
    pub sticky_seconds: Option<u32>,
}

impl RouteView {
    /// What of the route's rule the monolith's rule does not cover: requests
    /// the rule would take while parked (empty when covered or missing).
    pub fn leaks(&self) -> Vec<alb::Gap> {
        self.rule()
            .map(|rule| self.monolith_conditions.gaps_covering(&rule.conditions))
            .unwrap_or_default()
    }

    /// When the route was retired (`migrate retire`: its rule's
    /// [`RETIRED_TAG`]), if it is.
    pub fn retired_since(&self) -> Option<&str> {
        self.rule()?.tags.get(RETIRED_TAG).map(String::as_str)
    }

    /// The route's only rule, if exactly one.
    pub fn rule(&self) -> Option<&RuleInfo> {
        match self.rules.as_slice() {
            [rule] => Some(rule),
            _ => None,
        }
    }

    pub fn state(&self) -> RouteState {
        let rule = match self.rules.as_slice() {
            [] => return RouteState::Missing,
            [rule] => rule,
            many => {
                let arns: Vec<&str> = many.iter().map(|r| r.arn.as_str()).collect();
                return RouteState::Inconsistent {
                    reason: format!(
                        "{} rules carry the route's tag ({}); delete or untag all but one",
                        many.len(),
                        arns.join(", ")
                    ),
                };
            }
        };
        let Some(priority) = rule.priority else {
            return RouteState::Inconsistent {
                reason: "the route's tag is on the listener's default rule".into(),
            };
        };
        if priority > self.monolith_priority {
            let restored = rule.action
                == Forward::Plain {
                    target_group: self.service_tg.clone(),
                };
            return RouteState::OnMonolith { priority, restored };
        }
        let service = target_group_name(&self.service_tg);
        let monolith = target_group_name(&self.monolith_tg);
        match &rule.action {
            Forward::Plain { target_group } if *target_group == self.service_tg => {
                RouteState::OnService { priority }
            }
            Forward::Plain { target_group } => RouteState::Inconsistent {
                reason: format!(
                    "rule in front at priority {priority} forwards to {}, not to the service's target group {service}",
                    target_group_name(target_group)
                ),
            },
            Forward::Weighted { target_groups, .. } => {
                let mut service_weight = 0;
                let mut monolith_weight = 0;
                for (arn, weight) in target_groups {
                    if *arn == self.service_tg {
                        service_weight += weight;
                    } else if *arn == self.monolith_tg {
                        monolith_weight += weight;
                    } else if *weight > 0 {
                        return RouteState::Inconsistent {
                            reason: format!(
                                "rule in front at priority {priority} also forwards to {} (weight {weight}), neither {service} nor {monolith}",
                                target_group_name(arn)
                            ),
                        };
                    }
                }
                let total = service_weight + monolith_weight;
                if total == 0 {
                    return RouteState::Inconsistent {
                        reason: format!(
                            "rule in front at priority {priority} forwards with all weights 0"
                        ),
                    };
                }
                let percent = ((u64::from(service_weight) * 100 + u64::from(total) / 2)
                    / u64::from(total)) as u8;
                RouteState::Shifting { priority, percent }
            }
            Forward::Other { description } => RouteState::Inconsistent {
                reason: format!(
                    "rule in front at priority {priority} does not forward ({description})"
                ),
            },
        }
    }

    /// The slot in front of the monolith's rule: the configured `priority`,
    /// only when it is in front and free. Never another one: a slot picked
    /// by `migrate` could shadow rules the operator did not name
    /// (`settings::priority_problem` explains a refusal).
    pub fn front_slot(&self) -> Option<u32> {
        self.preferred
            .filter(|p| *p < self.monolith_priority && !self.taken.contains(p))
    }

    /// Where the route's rule is parked, or would be: the priority recorded
    /// in its [`PARKED_TAG`], else monolith + `priority`.
    pub fn parked_priority(&self) -> Option<u32> {
        let tagged = self
            .rule()
            .and_then(|r| r.tags.get(PARKED_TAG))
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|p| *p > self.monolith_priority && *p <= MAX_PRIORITY);
        tagged.or_else(|| {
            self.preferred
                .map(|p| self.monolith_priority + p)
                .filter(|p| *p <= MAX_PRIORITY)
        })
    }

    /// A free slot behind the monolith's rule: the parked priority when free,
    /// else the lowest free behind it.
    pub fn behind_slot(&self) -> Option<u32> {
        if let Some(slot) = self.parked_priority()
            && !self.taken.contains(&slot)
        {
            return Some(slot);
        }
        (self.monolith_priority + 1..=MAX_PRIORITY).find(|p| !self.taken.contains(p))
    }

    /// The writes that bring the route to `percent` (0 = rollback), in order.
    /// Shadowed changes first: the action is rewritten while the rule is
    /// parked, then one priority move puts it in front; a rollback moves the
    /// rule behind first, then restores its plain forward.
    pub fn transition(&self, percent: u8) -> Result<Vec<Write>, String> {
        let rule = match self.state() {
            RouteState::Missing => return Err("the route has no rule; run `migrate init`".into()),
            _ => self.rule().ok_or_else(|| self.state().explain())?,
        };
        let priority = rule.priority.ok_or_else(|| self.state().explain())?;
        let in_front = priority < self.monolith_priority;
        let plain = Forward::Plain {
            target_group: self.service_tg.clone(),
        };
        let mut writes = Vec::new();
        if percent == 0 {
            if in_front {
                let slot = self
                    .behind_slot()
                    .ok_or("no free priority behind the monolith's rule")?;
                writes.push(Write::MovePriority {
                    rule: rule.arn.clone(),
                    from: priority,
                    to: slot,
                });
            }
            // Parked is not back while the monolith's rule does not cover
            // the rule: narrow it (a narrower parked rule only gives back).
            // When it can't be narrowed (a host of its own outside the
            // monolith's, say), it forwards to the monolith itself, so what
            // it still catches goes where the route belongs.
            let narrowed: Option<Option<alb::Conditions>> = if self.leaks().is_empty() {
                None
            } else {
                Some(
                    rule.conditions
                        .narrowed_into(&self.monolith_conditions)
                        .ok(),
                )
            };
            let action = match &narrowed {
                Some(None) => Forward::Plain {
                    target_group: self.monolith_tg.clone(),
                },
                _ => plain,
            };
            if rule.action != action {
                writes.push(Write::SetAction {
                    rule: rule.arn.clone(),
                    from: rule.action.clone(),
                    to: action,
                });
            }
            if let Some(Some(narrowed)) = narrowed {
                writes.push(Write::SetConditions {
                    rule: rule.arn.clone(),
                    from: Box::new(rule.conditions.clone()),
                    to: Box::new(narrowed),
                });
            }
            return Ok(writes);
        }
        let desired = Forward::for_percent(percent, &self.service_tg, &self.monolith_tg)
            .sticky(self.sticky_seconds);
        if rule.action != desired {
            writes.push(Write::SetAction {
                rule: rule.arn.clone(),
                from: rule.action.clone(),
                to: desired,
            });
        }
        if !in_front {
            let slot = self.front_slot().ok_or_else(|| match self.preferred {
                Some(p) if p >= self.monolith_priority => format!(
                    "priority {p} is not in front of the monolith's rule ({})",
                    self.monolith_priority
                ),
                Some(p) => format!("priority {p} is taken by another rule"),
                None => "the route has no `priority` to move its rule to".to_owned(),
            })?;
            writes.push(Write::MovePriority {
                rule: rule.arn.clone(),
                from: priority,
                to: slot,
            });
        }
        Ok(writes)
    }

    /// The view after a write succeeded (for plans and read-back checks).
    pub fn apply(&self, write: &Write) -> RouteView {
        let mut next = self.clone();
        for rule in &mut next.rules {
            match write {
                Write::MovePriority {
                    rule: arn,
                    from,
                    to,
                } if *arn == rule.arn => {
                    next.taken.remove(from);
                    next.taken.insert(*to);
                    rule.priority = Some(*to);
                }
                Write::SetAction { rule: arn, to, .. } if *arn == rule.arn => {
                    rule.action = to.clone()
                }
                Write::SetConditions { rule: arn, to, .. } if *arn == rule.arn => {
                    rule.conditions = (**to).clone()
                }
                _ => {}
            }
        }
        next
    }

    /// Whether a write moves traffic (a priority move always does; an action
    /// change only while the rule is in front).
    pub fn changes_routing(&self, write: &Write) -> bool {
        match write {
            Write::MovePriority { .. } | Write::SetConditions { .. } => true,
            Write::SetAction { .. } => self
                .rule()
                .and_then(|r| r.priority)
                .is_some_and(|p| p < self.monolith_priority),
        }
    }
}

/// One ELBv2 write.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "call")]
pub enum Write {
    /// `SetRulePriorities` with this one rule into a free slot.
    #[serde(rename = "SetRulePriorities")]
    MovePriority { rule: String, from: u32, to: u32 },
    /// `ModifyRule` replacing the rule's actions.
    #[serde(rename = "ModifyRule")]
    SetAction {
        rule: String,
        from: Forward,
        to: Forward,
    },
    /// `ModifyRule` replacing the rule's conditions (narrowing a parked rule).
    #[serde(rename = "ModifyRule(Conditions)")]
    SetConditions {
        rule: String,
        from: Box<alb::Conditions>,
        to: Box<alb::Conditions>,
    },
}

impl Write {
    pub fn rule_arn(&self) -> &str {
        match self {
            Write::MovePriority { rule, .. }
            | Write::SetAction { rule, .. }
            | Write::SetConditions { rule, .. } => rule,
        }
    }

    /// The ELBv2 action that makes this write.
    pub fn action(&self) -> &'static str {
        match self {
            Write::MovePriority { .. } => "SetRulePriorities",
            Write::SetAction { .. } | Write::SetConditions { .. } => "ModifyRule",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Write::MovePriority { rule, from, to } => {
                format!("SetRulePriorities RuleArn={rule} Priority={to} (from {from})")
            }
            Write::SetAction { rule, from, to } => format!(
                "ModifyRule RuleArn={rule} Actions=[{}] (was {})",
                to.describe(),
                from.describe()
            ),
            Write::SetConditions { rule, from, to } => format!(
                "ModifyRule RuleArn={rule} Conditions=[{}] (was {})",
                to.describe(),
                from.describe()
            ),
        }
    }
}

/// The steps still ahead from a state: those above the current percentage
/// (all of them from an inconsistent state); a weighted 100% still needs its
/// plain forward.
pub fn pending_steps(state: &RouteState, steps: &[u8]) -> Vec<u8> {
    match state {
        RouteState::OnService { .. } => Vec::new(),
        RouteState::Shifting { percent: 100, .. } => vec![100],
        other => {
            let current = other.percent();
            steps
                .iter()
                .copied()
                .filter(|s| current.is_none_or(|c| *s > c))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/users/aaa";
    const MONO: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/monolith/bbb";
    const OTHER: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/posts/ccc";

    fn plain(tg: &str) -> Forward {
        Forward::Plain {
            target_group: tg.into(),
        }
    }

    fn view(priority: u32, action: Forward) -> RouteView {
        RouteView {
            rules: vec![RuleInfo {
                arn: "rule-users".into(),
                priority: Some(priority),
                conditions: alb::Conditions::paths(["/api/users*".to_owned()]),
                action,
                tags: BTreeMap::new(),
            }],
            monolith_priority: 99,
            service_tg: SVC.into(),
            monolith_tg: MONO.into(),
            taken: [99, priority].into_iter().collect(),
            preferred: Some(1),
            monolith_conditions: alb::Conditions::paths(["/api*".to_owned()]),
            sticky_seconds: None,
        }
    }

    #[test]
    fn states_are_derived_from_priority_and_action() {
        let cases: Vec<(u32, Forward, RouteState)> = vec![
            (
                100,
                plain(SVC),
                RouteState::OnMonolith {
                    priority: 100,
                    restored: true,
                },
            ),
            (
                100,
                Forward::for_percent(10, SVC, MONO),
                RouteState::OnMonolith {
                    priority: 100,
                    restored: false,
                },
            ),
            (2, plain(SVC), RouteState::OnService { priority: 2 }),
            (
                2,
                Forward::for_percent(10, SVC, MONO),
                RouteState::Shifting {
                    priority: 2,
                    percent: 10,
                },
            ),
            (
                2,
                Forward::weighted([(SVC.into(), 1), (MONO.into(), 2)]),
                RouteState::Shifting {
                    priority: 2,
                    percent: 33,
                },
            ),
            (
                2,
                Forward::weighted([(SVC.into(), 5), (MONO.into(), 0)]),
                RouteState::Shifting {
                    priority: 2,
                    percent: 100,
                },
            ),
        ];
        for (priority, action, expected) in cases {
            assert_eq!(
                view(priority, action.clone()).state(),
                expected,
                "{priority} {action:?}"
            );
        }
    }

    #[test]
    fn wrong_forwards_in_front_are_inconsistent() {
        for action in [
            plain(OTHER),
            Forward::weighted([(SVC.into(), 1), (OTHER.into(), 1)]),
            Forward::weighted([(SVC.into(), 0), (MONO.into(), 0)]),
            Forward::Other {
                description: "fixed-response 503".into(),
            },
        ] {
            assert!(matches!(
                view(2, action).state(),
                RouteState::Inconsistent { .. }
            ));
        }
        let mut two = view(100, plain(SVC));
        two.rules.push(two.rules[0].clone());
        assert!(matches!(two.state(), RouteState::Inconsistent { .. }));
        let mut none = view(100, plain(SVC));
        none.rules.clear();
        assert_eq!(none.state(), RouteState::Missing);
    }

    #[test]
    fn the_front_slot_is_the_configured_priority_or_none() {
        let mut v = view(100, plain(SVC));
        v.taken.insert(1);
        // 1 is taken (by another rule in this fixture): no other slot is picked.
        assert_eq!(v.front_slot(), None);
        assert!(v.transition(100).unwrap_err().contains("taken"));
        // A rule in front parks at monolith + priority.
        assert_eq!(view(1, plain(SVC)).behind_slot(), Some(100));
        let mut free = view(100, plain(SVC));
        free.taken = [99, 100].into_iter().collect();
        assert_eq!(free.front_slot(), Some(1));
        free.preferred = Some(150);
        assert_eq!(free.front_slot(), None);
        free.preferred = None;
        assert_eq!(free.front_slot(), None);
        assert_eq!(free.behind_slot(), Some(101));
    }

    #[test]
    fn the_parked_priority_is_kept_by_its_tag() {
        let mut v = view(120, plain(SVC));
        assert_eq!(v.parked_priority(), Some(100));
        v.rules[0].tags.insert(PARKED_TAG.into(), "120".into());
        v.preferred = Some(7);
        assert_eq!(v.parked_priority(), Some(120));
        // A tag in front of the monolith's rule is not a parking place.
        v.rules[0].tags.insert(PARKED_TAG.into(), "5".into());
        assert_eq!(v.parked_priority(), Some(106));
    }

    #[test]
    fn a_direct_cutover_is_one_priority_move() {
        let writes = view(100, plain(SVC)).transition(100).unwrap();
        assert_eq!(
            writes,
            vec![Write::MovePriority {
                rule: "rule-users".into(),
                from: 100,
                to: 1
            }]
        );
    }

    #[test]
    fn a_gradual_shift_rewrites_the_parked_action_before_moving_in_front() {
        let start = view(100, plain(SVC));
        let writes = start.transition(10).unwrap();
        assert!(
            matches!(&writes[0], Write::SetAction { to, .. } if *to == Forward::for_percent(10, SVC, MONO))
        );
        assert!(matches!(&writes[1], Write::MovePriority { to: 1, .. }));
        assert!(!start.changes_routing(&writes[0]));
        let at_10 = writes.iter().fold(start, |v, w| v.apply(w));
        assert_eq!(
            at_10.state(),
            RouteState::Shifting {
                priority: 1,
                percent: 10
            }
        );
        let writes = at_10.transition(50).unwrap();
        assert_eq!(writes.len(), 1);
        assert!(at_10.changes_routing(&writes[0]));
        let at_100 = at_10.apply(&at_10.transition(50).unwrap()[0]);
        let last = at_100.transition(100).unwrap();
        let done = last.iter().fold(at_100, |v, w| v.apply(w));
        assert_eq!(done.state(), RouteState::OnService { priority: 1 });
        assert!(done.transition(100).unwrap().is_empty());
    }

    #[test]
    fn rollback_moves_behind_first_then_restores_the_plain_forward() {
        let shifting = view(2, Forward::for_percent(50, SVC, MONO));
        let writes = shifting.transition(0).unwrap();
        assert!(matches!(&writes[0], Write::MovePriority { to: 100, .. }));
        assert!(matches!(&writes[1], Write::SetAction { to, .. } if *to == plain(SVC)));
        let back = writes.iter().fold(shifting, |v, w| v.apply(w));
        assert_eq!(
            back.state(),
            RouteState::OnMonolith {
                priority: 100,
                restored: true
            }
        );
        assert!(back.transition(0).unwrap().is_empty());
        // From an inconsistent state in front, rollback completes too.
        let odd = view(2, plain(OTHER));
        let back = odd
            .transition(0)
            .unwrap()
            .iter()
            .fold(odd.clone(), |v, w| v.apply(w));
        assert_eq!(
            back.state(),
            RouteState::OnMonolith {
                priority: 100,
                restored: true
            }
        );
    }

    #[test]
    fn rollback_narrows_a_rule_that_would_leak_when_parked() {
        let mut shifting = view(1, Forward::for_percent(50, SVC, MONO));
        shifting.monolith_conditions.hosts = vec!["api.shop.example".into()];
        let writes = shifting.transition(0).unwrap();
        assert!(
            matches!(&writes[2], Write::SetConditions { to, .. } if to.hosts == ["api.shop.example"])
        );
        let back = writes.iter().fold(shifting, |v, w| v.apply(w));
        assert!(back.leaks().is_empty());
        assert!(back.transition(0).unwrap().is_empty());
        // A rule that can't be narrowed (a host outside the monolith's)
        // forwards to the monolith itself once parked.
        let mut outside = view(1, plain(SVC));
        outside.rules[0].conditions.hosts = vec!["admin.example".into()];
        outside.monolith_conditions.hosts = vec!["api.example".into()];
        let writes = outside.transition(0).unwrap();
        assert!(matches!(&writes[1], Write::SetAction { to, .. } if *to == plain(MONO)));
        let back = writes.iter().fold(outside, |v, w| v.apply(w));
        assert!(back.transition(0).unwrap().is_empty());
    }

    #[test]
    fn rules_ficus_does_not_manage_that_forward_to_the_service_are_found() {
        let rule = |arn: &str, tags: &[(&str, &str)], action: Forward| RuleInfo {
            arn: arn.into(),
            priority: Some(7),
            conditions: alb::Conditions::paths(["/API/USERS*".to_owned()]),
            action,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let listing = Listing {
            listener_arn: "listener".into(),
            listener_tags: BTreeMap::new(),
            rules: vec![
                rule("own", &[(ROUTE_TAG, "users")], plain(SVC)),
                rule("preview", &[(PREVIEW_TAG, "users")], plain(SVC)),
                rule("second", &[], plain(SVC)),
                rule("weighted", &[], Forward::for_percent(10, SVC, MONO)),
                rule(
                    "unweighted",
                    &[],
                    Forward::weighted([(SVC.into(), 0), (MONO.into(), 1)]),
                ),
                rule("posts", &[(ROUTE_TAG, "posts")], plain(SVC)),
                rule("elsewhere", &[], plain(OTHER)),
            ],
            monolith: rule("monolith", &[], plain(MONO)),
            monolith_priority: 99,
            monolith_tg: MONO.into(),
            service_tgs: BTreeMap::new(),
        };
        let found = listing.also_forwarding(SVC);
        let arns: Vec<&str> = found.iter().map(|rule| rule.rule_arn.as_str()).collect();
        assert_eq!(arns, ["second", "weighted"]);
        assert_eq!(
            found[0].says,
            "rule second at priority 7 (path-pattern /API/USERS*) also forwards to users (forward users), not managed by ficus: a rollback leaves it in place, and what it matches stays on users; `aws elbv2 delete-rule --rule-arn second` removes it"
        );
    }

    #[test]
    fn target_group_names_come_from_arns() {
        assert_eq!(target_group_name(SVC), "users");
        assert_eq!(target_group_name("users"), "users");
    }

    #[test]
    fn pending_steps_continue_from_the_current_percentage() {
        let steps = [10, 50, 100];
        let on_monolith = RouteState::OnMonolith {
            priority: 100,
            restored: true,
        };
        assert_eq!(pending_steps(&on_monolith, &steps), vec![10, 50, 100]);
        let mid = RouteState::Shifting {
            priority: 1,
            percent: 10,
        };
        assert_eq!(pending_steps(&mid, &steps), vec![50, 100]);
        let weighted_full = RouteState::Shifting {
            priority: 1,
            percent: 100,
        };
        assert_eq!(pending_steps(&weighted_full, &steps), vec![100]);
        assert!(pending_steps(&RouteState::OnService { priority: 1 }, &steps).is_empty());
        let odd = RouteState::Inconsistent { reason: "x".into() };
        assert_eq!(pending_steps(&odd, &steps), vec![10, 50, 100]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Any action a route's rule may carry: the plain forwards, a
        /// weighted forward (weights may be 0, not both), something else.
        fn action() -> impl Strategy<Value = Forward> {
            prop_oneof![
                Just(plain(SVC)),
                Just(plain(MONO)),
                Just(plain(OTHER)),
                (0u32..=999, 0u32..=999)
                    .prop_filter("not all weights 0", |(s, m)| s + m > 0)
                    .prop_map(|(s, m)| Forward::weighted([(SVC.into(), s), (MONO.into(), m)])),
                Just(Forward::Other {
                    description: "fixed-response 404".into()
                }),
            ]
        }

        /// A route with one rule anywhere (in front or parked, tagged or
        /// not, covered by the monolith's rule or leaking), other rules in
        /// random slots, and a free preferred slot in front.
        fn route() -> impl Strategy<Value = RouteView> {
            (
                2u32..500,
                any::<bool>(),
                0u32..1000,
                action(),
                prop::sample::select(vec!["/api/users*", "/api/users/*/posts", "/other*"]),
                prop::collection::btree_set(1u32..2000, 0..20),
                prop::option::of(1u32..2000),
            )
                .prop_flat_map(
                    |(monolith, in_front, offset, action, path, others, tag)| {
                        let priority = if in_front {
                            1 + offset % (monolith - 1)
                        } else {
                            monolith + 1 + offset
                        };
                        let mut taken = others;
                        taken.insert(monolith);
                        taken.insert(priority);
                        let free_in_front: Vec<u32> =
                            (1..monolith).filter(|p| !taken.contains(p)).collect();
                        let preferred = if in_front {
                            Just(Some(priority)).boxed()
                        } else if free_in_front.is_empty() {
                            Just(None).boxed()
                        } else {
                            prop::sample::select(free_in_front).prop_map(Some).boxed()
                        };
                        preferred.prop_map(move |preferred| {
                            let tags = tag
                                .map(|t| BTreeMap::from([(PARKED_TAG.to_owned(), t.to_string())]))
                                .unwrap_or_default();
                            RouteView {
                                rules: vec![RuleInfo {
                                    arn: "rule-users".into(),
                                    priority: Some(priority),
                                    conditions: alb::Conditions::paths([path.to_owned()]),
                                    action: action.clone(),
                                    tags,
                                }],
                                monolith_priority: monolith,
                                service_tg: SVC.into(),
                                monolith_tg: MONO.into(),
                                taken: taken.clone(),
                                preferred,
                                monolith_conditions: alb::Conditions::paths(["/api*".to_owned()]),
                                sticky_seconds: None,
                            }
                        })
                    },
                )
        }

        /// Applies `transition(percent)`, checking that no priority move
        /// targets a slot another rule holds.
        fn reach(view: &RouteView, percent: u8) -> Result<RouteView, TestCaseError> {
            let writes = view
                .transition(percent)
                .map_err(|e| TestCaseError::fail(format!("transition({percent}): {e}")))?;
            let mut now = view.clone();
            for write in &writes {
                if let Write::MovePriority { to, .. } = write {
                    prop_assert!(
                        !now.taken.contains(to),
                        "{} moves into taken slot {to} ({:?})",
                        write.describe(),
                        now.taken
                    );
                }
                now = now.apply(write);
            }
            Ok(now)
        }

        proptest! {
            #[test]
            fn a_transition_reaches_its_percent_and_then_has_nothing_left(
                view in route(),
                percent in 0u8..=100,
            ) {
                prop_assume!(percent == 0 || view.preferred.is_some());
                let reached = reach(&view, percent)?;
                let state = reached.state();
                if percent == 0 {
                    prop_assert!(
                        matches!(state, RouteState::OnMonolith { .. }),
                        "rollback ended {state:?}"
                    );
                } else {
                    prop_assert_eq!(state.percent(), Some(percent), "{:?}", state);
                }
                let again = reached.transition(percent);
                prop_assert_eq!(again, Ok(vec![]));
            }

            #[test]
            fn a_rollback_parks_the_rule_behind_the_monolith_in_a_free_slot(view in route()) {
                let reached = reach(&view, 0)?;
                let rule = reached.rule().expect("one rule");
                let priority = rule.priority.expect("numbered");
                prop_assert!(priority > view.monolith_priority, "parked at {priority}");
                prop_assert!(
                    matches!(reached.state(), RouteState::OnMonolith { .. }),
                    "rollback ended {:?}",
                    reached.state()
                );
                prop_assert!(reached.leaks().is_empty() || rule.action == plain(MONO));
                if rule.action == plain(SVC) {
                    prop_assert_eq!(
                        reached.state(),
                        RouteState::OnMonolith { priority, restored: true }
                    );
                }
                // Other rules kept their slots: only the route's moved.
                let mut others = view.taken.clone();
                others.remove(&view.rules[0].priority.unwrap());
                prop_assert!(others.iter().all(|p| reached.taken.contains(p)));
            }
        }
    }
}
