//! Checks on rule parts that both the control API and the stack file apply,
//! with AWS's limits. Each returns the [`ApiError`] the API answers; the stack
//! file reports its message next to the offending key.

use std::collections::HashSet;

use super::error::ApiError;
use crate::model::{Action, ActionKind, Condition, HealthCheck, Priority, State, Tag};

/// Lowest and highest numbered rule priority.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = 1..=50_000;
/// Condition values per rule, over all its conditions.
pub const MAX_CONDITION_VALUES: usize = 5;
/// Wildcards (`*` and `?`) per rule, over all its condition values.
pub const MAX_WILDCARDS: usize = 5;
/// Longest path-pattern or host-header value.
pub const MAX_PATTERN_LENGTH: usize = 128;
/// Target groups in one forward action.
pub const MAX_TARGET_GROUPS_PER_FORWARD: usize = 5;
/// Highest target group weight in a forward action.
pub const MAX_WEIGHT: i64 = 999;
/// Numbered rules per load balancer (default rules not counted).
pub const MAX_RULES_PER_LOAD_BALANCER: usize = 100;
/// Tags per resource.
pub const MAX_TAGS_PER_RESOURCE: usize = 50;

pub fn priority(value: i64) -> Result<u32, ApiError> {
    if PRIORITY_RANGE.contains(&value) {
        u32::try_from(value).map_err(|_| priority_out_of_range(value))
    } else {
        Err(priority_out_of_range(value))
    }
}

fn priority_out_of_range(value: i64) -> ApiError {
    ApiError::validation(format!(
        "Priority '{value}' is out of range: it must be between {} and {}",
        PRIORITY_RANGE.start(),
        PRIORITY_RANGE.end()
    ))
}

/// The conditions of a numbered rule.
pub fn conditions(conditions: &[Condition]) -> Result<(), ApiError> {
    if conditions.is_empty() {
        return Err(ApiError::validation(
            "A rule must have at least one condition",
        ));
    }
    let mut seen_fields = HashSet::new();
    let mut total_values = 0;
    let mut wildcards = 0;
    for condition in conditions {
        let (field, count) = match condition {
            Condition::PathPattern { values } => ("path-pattern", values.len()),
            Condition::HostHeader { values } => ("host-header", values.len()),
            Condition::HttpRequestMethod { values } => ("http-request-method", values.len()),
            Condition::SourceIp { values } => ("source-ip", values.len()),
            Condition::HttpHeader { values, .. } => ("http-header", values.len()),
            Condition::QueryString { values } => ("query-string", values.len()),
        };
        if count == 0 {
            return Err(ApiError::validation(format!(
                "A '{field}' condition must have at least one value"
            )));
        }
        let repeatable = matches!(
            condition,
            Condition::HttpHeader { .. } | Condition::QueryString { .. }
        );
        if !repeatable && !seen_fields.insert(field) {
            return Err(ApiError::validation(format!(
                "A rule can have only one '{field}' condition"
            )));
        }
        total_values += count;
        wildcards += wildcards_in(condition);
        condition_values(field, condition)?;
    }
    if wildcards > MAX_WILDCARDS {
        return Err(ApiError::validation(format!(
            "A rule can have at most {MAX_WILDCARDS} wildcards ('*' or '?') in its condition values, but this one has {wildcards}"
        )));
    }
    if total_values > MAX_CONDITION_VALUES {
        return Err(ApiError::validation(format!(
            "A rule can have at most {MAX_CONDITION_VALUES} condition values, but this one has {total_values}"
        )));
    }
    Ok(())
}

fn condition_values(field: &str, condition: &Condition) -> Result<(), ApiError> {
    match condition {
        Condition::PathPattern { values } => {
            // AWS's character set and length (alb, the one home of both).
            if let Some(problem) = values.iter().find_map(|v| alb::path_pattern_problem(v)) {
                return Err(ApiError::validation(problem));
            }
        }
        Condition::HostHeader { values } => {
            for value in values {
                if value.is_empty() || value.chars().count() > MAX_PATTERN_LENGTH {
                    return Err(ApiError::validation(format!(
                        "The '{field}' value '{value}' must be 1 to {MAX_PATTERN_LENGTH} characters long"
                    )));
                }
            }
        }
        Condition::HttpRequestMethod { values } => {
            for value in values {
                let valid = !value.is_empty()
                    && value.len() <= 40
                    && value
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '-' || c == '_');
                if !valid {
                    return Err(ApiError::validation(format!(
                        "The http-request-method value '{value}' must be 1 to 40 characters of A-Z, '-' or '_'"
                    )));
                }
            }
        }
        Condition::SourceIp { values } => {
            for value in values {
                if alb::cidr::Cidr::parse(value).is_err() {
                    return Err(ApiError::validation(format!(
                        "The source-ip value '{value}' is not a CIDR block such as 192.0.2.0/24"
                    )));
                }
            }
        }
        Condition::HttpHeader { name, values } => {
            let valid_name = !name.is_empty()
                && name.len() <= 40
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
            if !valid_name {
                return Err(ApiError::validation(format!(
                    "The http-header name '{name}' must be 1 to 40 characters of a valid header name"
                )));
            }
            if let Some(value) = values
                .iter()
                .find(|v| v.chars().count() > MAX_PATTERN_LENGTH)
            {
                return Err(ApiError::validation(format!(
                    "The http-header value '{value}' is longer than {MAX_PATTERN_LENGTH} characters"
                )));
            }
        }
        Condition::QueryString { values } => {
            if values.iter().any(|pair| pair.value.is_empty()) {
                return Err(ApiError::validation(
                    "Every query-string key/value pair needs a non-empty Value",
                ));
            }
        }
    }
    Ok(())
}

/// The wildcards (`*`, `?`) a condition's values use; in a query string a
/// backslash makes the next character literal.
fn wildcards_in(condition: &Condition) -> usize {
    let plain = |value: &str| value.chars().filter(|c| matches!(c, '*' | '?')).count();
    let escaped = |value: &str| {
        let mut count = 0;
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '*' | '?' => count += 1,
                _ => {}
            }
        }
        count
    };
    match condition {
        Condition::PathPattern { values }
        | Condition::HostHeader { values }
        | Condition::HttpHeader { values, .. } => values.iter().map(|v| plain(v)).sum(),
        Condition::QueryString { values } => values
            .iter()
            .map(|pair| pair.key.as_deref().map_or(0, escaped) + escaped(&pair.value))
            .sum(),
        Condition::HttpRequestMethod { .. } | Condition::SourceIp { .. } => 0,
    }
}

/// The actions of a rule (or a listener's default actions) against `state`.
pub fn actions(state: &State, actions: &[Action]) -> Result<(), ApiError> {
    match actions {
        [] => Err(ApiError::validation("A rule must have at least one action")),
        [action] => action_kind(state, &action.kind),
        _ => Err(ApiError::validation(
            "A rule can have only one action: forward, fixed-response or redirect",
        )),
    }
}

fn action_kind(state: &State, kind: &ActionKind) -> Result<(), ApiError> {
    let ActionKind::Forward { target_groups, .. } = kind else {
        return Ok(());
    };
    if target_groups.is_empty() {
        return Err(ApiError::validation(
            "A forward action needs at least one target group",
        ));
    }
    if target_groups.len() > MAX_TARGET_GROUPS_PER_FORWARD {
        return Err(ApiError::too_many_target_groups(
            MAX_TARGET_GROUPS_PER_FORWARD,
        ));
    }
    let mut seen = HashSet::new();
    for weighted in target_groups {
        if i64::from(weighted.weight) > MAX_WEIGHT {
            return Err(ApiError::validation(format!(
                "Weight '{}' of target group '{}' is out of range: it must be between 0 and {MAX_WEIGHT}",
                weighted.weight, weighted.target_group_arn
            )));
        }
        if state.target_group(&weighted.target_group_arn).is_none() {
            return Err(ApiError::target_group_not_found(&weighted.target_group_arn));
        }
        if !seen.insert(&weighted.target_group_arn) {
            return Err(ApiError::validation(format!(
                "Target group '{}' is listed more than once in one forward action",
                weighted.target_group_arn
            )));
        }
    }
    Ok(())
}

/// AWS's pattern for tag keys and values.
pub const TAG_PATTERN: &str = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$";

/// Whether `text` matches [`TAG_PATTERN`]: letters, numbers, separators
/// (spaces) and `_ . : / = + - @`.
fn is_tag_text(text: &str) -> bool {
    text.chars().all(|c| {
        c.is_alphabetic()
            || c.is_numeric()
            || (c.is_whitespace() && !c.is_control())
            || "_.:/=+-@".contains(c)
    })
}

/// A list of tags given in one request: keys 1–128 characters, values up to
/// 256, both in AWS's character set, no key twice.
pub fn tags(tags: &[Tag]) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for tag in tags {
        if tag.key.is_empty() || tag.key.chars().count() > 128 {
            return Err(ApiError::validation(format!(
                "Tag key '{}' must be 1 to 128 characters long",
                tag.key
            )));
        }
        if !is_tag_text(&tag.key) {
            return Err(ApiError::validation(format!(
                "Tag key '{}' must match {TAG_PATTERN}: letters, numbers, spaces and _ . : / = + - @",
                tag.key
            )));
        }
        if tag.value.chars().count() > 256 {
            return Err(ApiError::validation(format!(
                "The value of tag '{}' is longer than 256 characters",
                tag.key
            )));
        }
        if !is_tag_text(&tag.value) {
            return Err(ApiError::validation(format!(
                "The value '{}' of tag '{}' must match {TAG_PATTERN}: letters, numbers, spaces and _ . : / = + - @",
                tag.value, tag.key
            )));
        }
        if !seen.insert(tag.key.as_str()) {
            return Err(ApiError::duplicate_tag_keys(&tag.key));
        }
    }
    Ok(())
}

/// Merges `new` tags into `existing` (same key: new value wins).
pub fn merge_tags(arn: &str, existing: &mut Vec<Tag>, new: &[Tag]) -> Result<(), ApiError> {
    for tag in new {
        match existing.iter_mut().find(|t| t.key == tag.key) {
            Some(current) => current.value = tag.value.clone(),
            None => existing.push(tag.clone()),
        }
    }
    if existing.len() > MAX_TAGS_PER_RESOURCE {
        return Err(ApiError::too_many_tags(arn, MAX_TAGS_PER_RESOURCE));
    }
    Ok(())
}

/// Whole-configuration invariants, checked after every change (so a batch
/// such as SetRulePriorities is judged on its final state), on the stack file
/// and on a loaded state file.
pub fn state(state: &State) -> Result<(), ApiError> {
    let mut names = HashSet::new();
    for tg in &state.target_groups {
        if !names.insert(tg.name.as_str()) {
            return Err(ApiError::validation(format!(
                "Target group name '{}' is used twice",
                tg.name
            )));
        }
    }
    for rule in &state.rules {
        if state.listener(&rule.listener_arn).is_none() {
            return Err(ApiError::listener_not_found(&rule.listener_arn));
        }
        if !rule.is_default() {
            conditions(&rule.conditions)?;
        }
        actions(state, &rule.actions)?;
    }
    for listener in &state.listeners {
        if state.load_balancer(&listener.load_balancer_arn).is_none() {
            return Err(ApiError::load_balancer_not_found(
                &listener.load_balancer_arn,
            ));
        }
        let rules = state.rules_of(&listener.arn);
        if rules.iter().filter(|r| r.is_default()).count() != 1 {
            return Err(ApiError::validation(format!(
                "Listener '{}' must have exactly one default rule",
                listener.arn
            )));
        }
        for pair in rules.windows(2) {
            if let (Priority::Number(n), true) =
                (pair[0].priority, pair[0].priority == pair[1].priority)
            {
                return Err(ApiError::priority_in_use(n));
            }
        }
    }
    for lb in &state.load_balancers {
        let numbered = state
            .rules
            .iter()
            .filter(|r| {
                !r.is_default()
                    && state
                        .listener(&r.listener_arn)
                        .is_some_and(|l| l.load_balancer_arn == lb.arn)
            })
            .count();
        if numbered > MAX_RULES_PER_LOAD_BALANCER {
            return Err(ApiError::too_many_rules(MAX_RULES_PER_LOAD_BALANCER));
        }
    }
    Ok(())
}

/// A health check setting, named in the stack file and in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckField {
    Path,
    IntervalSeconds,
    TimeoutSeconds,
    HealthyThreshold,
    UnhealthyThreshold,
    Matcher,
}

impl HealthCheckField {
    /// The key inside a stack file's `health_check` table.
    pub fn stack_key(self) -> &'static str {
        match self {
            HealthCheckField::Path => "path",
            HealthCheckField::IntervalSeconds => "interval_seconds",
            HealthCheckField::TimeoutSeconds => "timeout_seconds",
            HealthCheckField::HealthyThreshold => "healthy_threshold",
            HealthCheckField::UnhealthyThreshold => "unhealthy_threshold",
            HealthCheckField::Matcher => "matcher",
        }
    }

    /// The ModifyTargetGroup parameter.
    pub fn api_parameter(self) -> &'static str {
        match self {
            HealthCheckField::Path => "HealthCheckPath",
            HealthCheckField::IntervalSeconds => "HealthCheckIntervalSeconds",
            HealthCheckField::TimeoutSeconds => "HealthCheckTimeoutSeconds",
            HealthCheckField::HealthyThreshold => "HealthyThresholdCount",
            HealthCheckField::UnhealthyThreshold => "UnhealthyThresholdCount",
            HealthCheckField::Matcher => "Matcher.HttpCode",
        }
    }
}

/// What is wrong with a health check, and in which setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckProblem {
    pub field: HealthCheckField,
    pub message: String,
}

/// A target group's health check, with AWS's limits for ALB target groups.
pub fn health_check(hc: &HealthCheck) -> Result<(), HealthCheckProblem> {
    let problem = |field, message: String| Err(HealthCheckProblem { field, message });
    if !hc.path.starts_with('/') || hc.path.len() > 1024 {
        return problem(
            HealthCheckField::Path,
            format!(
                "'{}' must start with '/' (at most 1024 characters)",
                hc.path
            ),
        );
    }
    if !(5..=300).contains(&hc.interval_seconds) {
        return problem(
            HealthCheckField::IntervalSeconds,
            format!("{} must be 5 to 300", hc.interval_seconds),
        );
    }
    if !(2..=120).contains(&hc.timeout_seconds) || hc.timeout_seconds >= hc.interval_seconds {
        return problem(
            HealthCheckField::TimeoutSeconds,
            format!(
                "{} must be 2 to 120 and less than the interval ({})",
                hc.timeout_seconds, hc.interval_seconds
            ),
        );
    }
    for (field, value) in [
        (HealthCheckField::HealthyThreshold, hc.healthy_threshold),
        (HealthCheckField::UnhealthyThreshold, hc.unhealthy_threshold),
    ] {
        if !(2..=10).contains(&value) {
            return problem(field, format!("{value} must be 2 to 10"));
        }
    }
    let matcher_ok = !hc.matcher.is_empty()
        && hc.matcher.split(',').all(|part| {
            let codes: Vec<&str> = part.split('-').collect();
            codes.len() <= 2
                && codes.iter().all(|c| {
                    c.parse::<u16>()
                        .is_ok_and(|code| (200..=499).contains(&code))
                })
        });
    if !matcher_ok {
        return problem(
            HealthCheckField::Matcher,
            format!(
                "'{}' is not a list of HTTP codes from 200 to 499 such as 200, 200,204 or 200-299",
                hc.matcher
            ),
        );
    }
    Ok(())
}
