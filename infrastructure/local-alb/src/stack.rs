//! The stack file: the local ALB's declared configuration (what CloudFormation
//! declares in AWS), parsed into a [`State`] and checked, with every problem
//! reported next to the key that causes it.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::attributes::AttributeError;
use crate::control::validate;
use crate::model::{
    Action, ActionKind, Condition, HealthCheck, Listener, LoadBalancer, LoadBalancerAttributes,
    Priority, QueryPair, Rule, State, Tag, Target, TargetGroup, TargetGroupAttributes,
    WeightedTargetGroup,
};
use crate::sigv4::Credentials;

/// The repository's stack file, compiled in so the binary works anywhere.
pub const BUNDLED_STACK: &str = include_str!("../../local/stack.toml");
/// Where the repository's stack file lives, relative to the repository root.
pub const DEFAULT_STACK_PATH: &str = "infrastructure/local/stack.toml";

/// A parsed and checked stack file.
#[derive(Debug, Clone)]
pub struct Stack {
    pub state: State,
    pub credentials: Credentials,
    /// The `[faults]` section (all `None` without one).
    pub faults: crate::faults::FaultOptions,
}

/// A problem in a stack file; `origin` names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stack file {origin}: {message}")]
pub struct StackError {
    pub origin: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    region: String,
    account_id: String,
    credentials: RawCredentials,
    load_balancer: RawLoadBalancer,
    listener: RawListener,
    #[serde(default)]
    target_groups: Vec<RawTargetGroup>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    faults: RawFaults,
}

/// `[faults]`: the same values as the `--propagation`, `--nodes`,
/// `--throttle`, `--transient-errors` and `--lost-answers` options, in the
/// same syntax (`propagation = "0s..8s"`, `throttle = "DescribeRules=5,*=20"`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    propagation: Option<NumberOrText>,
    nodes: Option<i64>,
    throttle: Option<String>,
    transient_errors: Option<NumberOrText>,
    lost_answers: Option<f64>,
}

/// A number or a text, as the flag's value reads either way:
/// `transient_errors = 0.02` or `"CreateRule=1,*=0.02"`; `propagation = 8`
/// (a bare number is seconds) or `"0s..8s"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

impl NumberOrText {
    /// The value as the flag would be given it.
    fn text(&self) -> String {
        match self {
            NumberOrText::Number(number) => number.to_string(),
            NumberOrText::Text(text) => text.clone(),
        }
    }
}

/// The `[faults]` section, checked; errors name the key.
fn faults(raw: &RawFaults) -> Result<crate::faults::FaultOptions, String> {
    use crate::faults as f;
    let key = |name: &str, e: String| format!("faults.{name}: {e}");
    let share = |name: &str, value: Option<f64>| {
        value
            .map(|v| f::parse_share(&v.to_string()).map_err(|e| key(name, e)))
            .transpose()
    };
    Ok(f::FaultOptions {
        propagation: raw
            .propagation
            .as_ref()
            .map(|p| f::parse_propagation(&p.text()).map_err(|e| key("propagation", e)))
            .transpose()?,
        nodes: raw
            .nodes
            .map(|n| f::parse_nodes(&n.to_string()).map_err(|e| key("nodes", e)))
            .transpose()?,
        throttle: raw
            .throttle
            .as_deref()
            .map(|t| f::parse_throttle(t).map_err(|e| key("throttle", e)))
            .transpose()?,
        transient_errors: raw
            .transient_errors
            .as_ref()
            .map(|t| f::parse_transient_errors(&t.text()).map_err(|e| key("transient_errors", e)))
            .transpose()?,
        lost_answers: share("lost_answers", raw.lost_answers)?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    access_key_id: String,
    secret_access_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoadBalancer {
    name: String,
    #[serde(default = "internet_facing")]
    scheme: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// ELBv2 attribute keys and values, as `ModifyLoadBalancerAttributes` takes them.
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

fn internet_facing() -> String {
    "internet-facing".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    port: i64,
    #[serde(default = "http")]
    protocol: String,
    default_action: RawAction,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn http() -> String {
    "HTTP".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargetGroup {
    name: String,
    port: i64,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    health_check: RawHealthCheck,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// ELBv2 attribute keys and values, as `ModifyTargetGroupAttributes` takes them.
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// Defaults are AWS's for HTTP target groups of an ALB.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHealthCheck {
    path: String,
    interval_seconds: u32,
    timeout_seconds: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    matcher: String,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck {
            path: "/".to_owned(),
            interval_seconds: 30,
            timeout_seconds: 5,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: "200".to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    priority: i64,
    conditions: Vec<RawCondition>,
    actions: Vec<RawAction>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case", deny_unknown_fields)]
enum RawCondition {
    PathPattern { values: Vec<String> },
    HostHeader { values: Vec<String> },
    HttpRequestMethod { values: Vec<String> },
    HttpHeader { name: String, values: Vec<String> },
    QueryString { values: Vec<RawQueryPair> },
    SourceIp { values: Vec<String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueryPair {
    key: Option<String>,
    value: String,
}

/// `{ forward = "name" }`, `{ forward = [{ target_group = "a", weight = 1 }] }`,
/// `{ fixed-response = { status_code = "503", ... } }` or `{ redirect = {...} }`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum RawAction {
    Forward(RawForward),
    FixedResponse(RawFixedResponse),
    Redirect(RawRedirect),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawForward {
    One(String),
    Weighted(Vec<RawWeighted>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeighted {
    target_group: String,
    weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixedResponse {
    status_code: String,
    content_type: Option<String>,
    message_body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedirect {
    status_code: String,
    protocol: Option<String>,
    host: Option<String>,
    port: Option<String>,
    path: Option<String>,
    query: Option<String>,
}

/// Parses and checks the stack file text `text`; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Stack, StackError> {
    let fail = |message: String| StackError {
        origin: origin.to_owned(),
        message,
    };
    let raw: RawStack = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
    let credentials = Credentials {
        access_key_id: raw.credentials.access_key_id.clone(),
        secret_access_key: raw.credentials.secret_access_key.clone(),
    };
    let faults = faults(&raw.faults).map_err(fail)?;
    let state = build(raw).map_err(fail)?;
    Ok(Stack {
        state,
        credentials,
        faults,
    })
}

fn tags(map: &BTreeMap<String, String>, key: &str) -> Result<Vec<Tag>, String> {
    let tags: Vec<Tag> = map
        .iter()
        .map(|(k, v)| Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    validate::tags(&tags).map_err(|e| format!("{key}: {}", e.message))?;
    Ok(tags)
}

/// Attributes from `attributes = { "key" = "value" }`, checked as the API
/// checks them; errors name the key.
fn attributes<A: Default>(
    map: &BTreeMap<String, String>,
    key: &str,
    set: impl Fn(&mut A, &str, &str) -> Result<(), AttributeError>,
    check: impl Fn(&A) -> Result<(), AttributeError>,
) -> Result<A, String> {
    let mut attributes = A::default();
    for (name, value) in map {
        set(&mut attributes, name, value)
            .map_err(|e| format!("{key}.\"{name}\" = \"{value}\": {}", e.message()))?;
    }
    check(&attributes).map_err(|e| format!("{key}: {}", e.message()))?;
    Ok(attributes)
}

fn check_name(name: &str, key: &str) -> Result<(), String> {
    let valid = (1..=32).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{key} = \"{name}\": names are 1 to 32 letters, digits or inner hyphens"
        ))
    }
}

fn check_port(port: i64, key: &str) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{key} = {port}: ports are 1 to 65535"))
}

/// The stack file's model, checked as the control API checks it, with ids
/// minted in file order (so ARNs are the same every time the file is read).
fn build(raw: RawStack) -> Result<State, String> {
    check_account(&raw)?;
    let mut state = State {
        region: raw.region,
        account_id: raw.account_id,
        load_balancers: Vec::new(),
        listeners: Vec::new(),
        target_groups: Vec::new(),
        rules: Vec::new(),
        next_id: 1,
    };
    let (lb_arn, lb_id) = add_load_balancer(&mut state, &raw.load_balancer)?;
    add_target_groups(&mut state, &raw.target_groups)?;
    let listener_arn = add_listener(
        &mut state,
        &raw.listener,
        &raw.load_balancer.name,
        lb_arn,
        &lb_id,
    )?;
    add_rules(&mut state, &raw.rules, &listener_arn)?;
    validate::state(&state).map_err(|e| e.message)?;
    Ok(state)
}

/// Region, account id and credentials.
fn check_account(raw: &RawStack) -> Result<(), String> {
    if raw.region.is_empty() {
        return Err("region must not be empty (for example \"us-east-1\")".to_owned());
    }
    if raw.account_id.len() != 12 || !raw.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "account_id = \"{}\": it must be twelve digits, for example \"000000000000\"",
            raw.account_id
        ));
    }
    if raw.credentials.access_key_id.is_empty() || raw.credentials.secret_access_key.is_empty() {
        return Err(
            "credentials.access_key_id and credentials.secret_access_key must not be empty"
                .to_owned(),
        );
    }
    Ok(())
}

/// The load balancer; its ARN and id.
fn add_load_balancer(state: &mut State, lb: &RawLoadBalancer) -> Result<(String, String), String> {
    let prefix = state.arn_prefix();
    check_name(&lb.name, "load_balancer.name")?;
    if lb.scheme != "internet-facing" && lb.scheme != "internal" {
        return Err(format!(
            "load_balancer.scheme = \"{}\": use \"internet-facing\" or \"internal\"",
            lb.scheme
        ));
    }
    let lb_id = state.mint_id();
    let lb_arn = format!("{prefix}loadbalancer/app/{}/{lb_id}", lb.name);
    state.load_balancers.push(LoadBalancer {
        arn: lb_arn.clone(),
        name: lb.name.clone(),
        dns_name: format!("{}-{}.{}.elb.localhost", lb.name, &lb_id[..8], state.region),
        scheme: lb.scheme.clone(),
        created_time: now_iso8601(),
        tags: tags(&lb.tags, "load_balancer.tags")?,
        attributes: attributes(
            &lb.attributes,
            "load_balancer.attributes",
            LoadBalancerAttributes::set,
            LoadBalancerAttributes::check,
        )?,
    });

    Ok((lb_arn, lb_id))
}

/// The target groups, in file order.
fn add_target_groups(state: &mut State, groups: &[RawTargetGroup]) -> Result<(), String> {
    let prefix = state.arn_prefix();
    let mut names = HashSet::new();
    for (i, tg) in groups.iter().enumerate() {
        let key = format!("target_groups[{i}]");
        check_name(&tg.name, &format!("{key}.name"))?;
        if !names.insert(tg.name.as_str()) {
            return Err(format!(
                "{key}.name = \"{}\": another target group has this name",
                tg.name
            ));
        }
        let port = check_port(tg.port, &format!("{key}.port"))?;
        let targets = tg
            .targets
            .iter()
            .enumerate()
            .map(|(j, t)| target(t, &format!("{key}.targets[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let health_check = health_check(&tg.health_check, &format!("{key}.health_check"))?;
        let id = state.mint_id();
        state.target_groups.push(TargetGroup {
            arn: format!("{prefix}targetgroup/{}/{id}", tg.name),
            name: tg.name.clone(),
            protocol: "HTTP".to_owned(),
            port,
            target_type: "ip".to_owned(),
            health_check,
            targets,
            tags: tags(&tg.tags, &format!("{key}.tags"))?,
            attributes: attributes(
                &tg.attributes,
                &format!("{key}.attributes"),
                TargetGroupAttributes::set,
                TargetGroupAttributes::check,
            )?,
        });
    }

    Ok(())
}

/// The listener and its default rule; the listener's ARN.
fn add_listener(
    state: &mut State,
    listener: &RawListener,
    lb_name: &str,
    lb_arn: String,
    lb_id: &str,
) -> Result<String, String> {
    let prefix = state.arn_prefix();
    let listener_port = check_port(listener.port, "listener.port")?;
    if listener.protocol != "HTTP" {
        return Err(format!(
            "listener.protocol = \"{}\": the local ALB speaks only \"HTTP\"",
            listener.protocol
        ));
    }
    let listener_id = state.mint_id();
    let listener_arn = format!("{prefix}listener/app/{lb_name}/{lb_id}/{listener_id}");
    state.listeners.push(Listener {
        arn: listener_arn.clone(),
        load_balancer_arn: lb_arn,
        port: listener_port,
        protocol: "HTTP".to_owned(),
        tags: tags(&listener.tags, "listener.tags")?,
    });
    let default_action = action(state, &listener.default_action, "listener.default_action")?;
    let arn = rule_arn(state, &listener_arn);
    state.rules.push(Rule {
        arn,
        listener_arn: listener_arn.clone(),
        priority: Priority::Default,
        conditions: Vec::new(),
        actions: vec![default_action],
        tags: Vec::new(),
    });

    Ok(listener_arn)
}

/// The listener's numbered rules, in file order.
fn add_rules(state: &mut State, rules: &[RawRule], listener_arn: &str) -> Result<(), String> {
    let mut priorities = HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let key = format!("rules[{i}]");
        let priority = validate::priority(rule.priority)
            .map_err(|e| format!("{key}.priority: {}", e.message))?;
        if !priorities.insert(priority) {
            return Err(format!(
                "{key}.priority = {priority}: another rule already has this priority"
            ));
        }
        let conditions: Vec<Condition> = rule.conditions.iter().map(condition).collect();
        validate::conditions(&conditions)
            .map_err(|e| format!("{key}.conditions: {}", e.message))?;
        let actions = rule
            .actions
            .iter()
            .enumerate()
            .map(|(j, a)| action(state, a, &format!("{key}.actions[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        validate::actions(state, &actions).map_err(|e| format!("{key}.actions: {}", e.message))?;
        let arn = rule_arn(state, listener_arn);
        state.rules.push(Rule {
            arn,
            listener_arn: listener_arn.to_owned(),
            priority: Priority::Number(priority),
            conditions,
            actions,
            tags: tags(&rule.tags, &format!("{key}.tags"))?,
        });
    }
    Ok(())
}

/// A new rule ARN on `listener_arn`.
fn rule_arn(state: &mut State, listener_arn: &str) -> String {
    let id = state.mint_id();
    format!(
        "{}/{id}",
        listener_arn.replacen(":listener/", ":listener-rule/", 1)
    )
}

fn target(text: &str, key: &str) -> Result<Target, String> {
    let parsed = text
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .filter(|(host, port)| !host.is_empty() && *port != 0);
    match parsed {
        Some((host, port)) => Ok(Target {
            id: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        }),
        None => Err(format!(
            "{key} = \"{text}\": a target is \"host:port\", for example \"127.0.0.1:3000\""
        )),
    }
}

fn health_check(raw: &RawHealthCheck, key: &str) -> Result<HealthCheck, String> {
    let health_check = HealthCheck {
        path: raw.path.clone(),
        interval_seconds: raw.interval_seconds,
        timeout_seconds: raw.timeout_seconds,
        healthy_threshold: raw.healthy_threshold,
        unhealthy_threshold: raw.unhealthy_threshold,
        matcher: raw.matcher.clone(),
    };
    validate::health_check(&health_check)
        .map_err(|problem| format!("{key}.{}: {}", problem.field.stack_key(), problem.message))?;
    Ok(health_check)
}

fn condition(raw: &RawCondition) -> Condition {
    match raw {
        RawCondition::PathPattern { values } => Condition::PathPattern {
            values: values.clone(),
        },
        RawCondition::HostHeader { values } => Condition::HostHeader {
            values: values.clone(),
        },
        RawCondition::HttpRequestMethod { values } => Condition::HttpRequestMethod {
            values: values.clone(),
        },
        RawCondition::HttpHeader { name, values } => Condition::HttpHeader {
            name: name.clone(),
            values: values.clone(),
        },
        RawCondition::QueryString { values } => Condition::QueryString {
            values: values
                .iter()
                .map(|p| QueryPair {
                    key: p.key.clone(),
                    value: p.value.clone(),
                })
                .collect(),
        },
        RawCondition::SourceIp { values } => Condition::SourceIp {
            values: values.clone(),
        },
    }
}

fn action(state: &State, raw: &RawAction, key: &str) -> Result<Action, String> {
    let resolve = |name: &str, key: &str| {
        state
            .target_group_by_name(name)
            .map(|tg| tg.arn.clone())
            .ok_or_else(|| {
                let declared: Vec<&str> = state
                    .target_groups
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect();
                format!(
                    "{key} = \"{name}\": no target group has this name (declared: {})",
                    declared.join(", ")
                )
            })
    };
    let kind = match raw {
        RawAction::Forward(RawForward::One(name)) => ActionKind::Forward {
            target_groups: vec![WeightedTargetGroup {
                target_group_arn: resolve(name, &format!("{key}.forward"))?,
                weight: 1,
            }],
            plain: true,
            stickiness_enabled: false,
            stickiness_duration_seconds: None,
        },
        RawAction::Forward(RawForward::Weighted(list)) => ActionKind::Forward {
            target_groups: list
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    Ok(WeightedTargetGroup {
                        target_group_arn: resolve(
                            &w.target_group,
                            &format!("{key}.forward[{i}].target_group"),
                        )?,
                        weight: w.weight,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?,
            plain: false,
            stickiness_enabled: false,
            stickiness_duration_seconds: None,
        },
        RawAction::FixedResponse(f) => ActionKind::FixedResponse {
            status_code: f.status_code.clone(),
            content_type: f.content_type.clone(),
            message_body: f.message_body.clone(),
        },
        RawAction::Redirect(r) => ActionKind::Redirect {
            protocol: r.protocol.clone(),
            host: r.host.clone(),
            port: r.port.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            status_code: r.status_code.clone(),
        },
    };
    let action = Action { order: None, kind };
    validate::actions(state, std::slice::from_ref(&action))
        .map_err(|e| format!("{key}: {}", e.message))?;
    Ok(action)
}

/// The current time as AWS writes it: `2026-11-26T04:02:41.000Z`.
/// What differs between two configurations read from a stack file (`before`,
/// the one a saved state started from, and `after`, the file now), one line
/// per difference; ARNs and creation times are ignored (they are minted).
pub fn differences(before: &State, after: &State) -> Vec<String> {
    let mut found = Vec::new();
    let names = |state: &State| -> Vec<String> {
        state
            .load_balancers
            .iter()
            .map(|lb| format!("{} ({})", lb.name, lb.scheme))
            .collect()
    };
    if names(before) != names(after) {
        found.push(format!(
            "load balancer {:?} is now {:?}",
            names(before),
            names(after)
        ));
    }
    let attributes = |state: &State| -> Vec<LoadBalancerAttributes> {
        state
            .load_balancers
            .iter()
            .map(|lb| lb.attributes.clone())
            .collect()
    };
    if attributes(before) != attributes(after) {
        found.push("load balancer attributes changed".to_owned());
    }
    let ports = |state: &State| -> Vec<u16> { state.listeners.iter().map(|l| l.port).collect() };
    if ports(before) != ports(after) {
        found.push(format!(
            "listener port {:?} is now {:?}",
            ports(before),
            ports(after)
        ));
    }
    found.extend(target_group_differences(before, after));
    let rules = |state: &State| -> BTreeMap<Priority, Rule> {
        state
            .rules
            .iter()
            .map(|rule| (rule.priority, comparable_rule(state, rule)))
            .collect()
    };
    let (old_rules, new_rules) = (rules(before), rules(after));
    for (priority, rule) in &new_rules {
        let at = priority.as_api_string();
        match old_rules.get(priority) {
            None => found.push(format!(
                "rule at priority {at} is in the stack file but not in the saved state"
            )),
            Some(old) if old != rule => found.push(format!("rule at priority {at} changed")),
            Some(_) => {}
        }
    }
    for priority in old_rules.keys().filter(|p| !new_rules.contains_key(p)) {
        found.push(format!(
            "rule at priority {} is no longer in the stack file",
            priority.as_api_string()
        ));
    }
    found
}

/// The target groups (by name) that `file` has and `saved` lacks, and the
/// reverse, and those that differ (port, targets, health check, tags).
pub fn target_group_differences(saved: &State, file: &State) -> Vec<String> {
    let comparable = |tg: &TargetGroup| TargetGroup {
        arn: String::new(),
        ..tg.clone()
    };
    let mut found = Vec::new();
    for tg in &file.target_groups {
        match saved.target_group_by_name(&tg.name) {
            None => found.push(format!(
                "target group '{}' is in the stack file but not in the saved state",
                tg.name
            )),
            Some(old) if comparable(old) != comparable(tg) => found.push(format!(
                "target group '{}' changed (port, targets, health check, tags or attributes)",
                tg.name
            )),
            Some(_) => {}
        }
    }
    for tg in &saved.target_groups {
        if file.target_group_by_name(&tg.name).is_none() {
            found.push(format!(
                "target group '{}' is in the saved state but not in the stack file",
                tg.name
            ));
        }
    }
    found
}

/// `rule` without ARNs: forwards name their target groups.
fn comparable_rule(state: &State, rule: &Rule) -> Rule {
    let mut rule = rule.clone();
    rule.arn.clear();
    rule.listener_arn.clear();
    for action in &mut rule.actions {
        if let ActionKind::Forward { target_groups, .. } = &mut action.kind {
            for weighted in target_groups {
                if let Some(tg) = state.target_group(&weighted.target_group_arn) {
                    weighted.target_group_arn = tg.name.clone();
                }
            }
        }
    }
    rule
}

fn now_iso8601() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> Stack {
        parse(BUNDLED_STACK, "bundled").expect("the bundled stack file is valid")
    }

    #[test]
    fn a_bare_number_in_faults_is_read_as_the_flag_reads_it() {
        let with_faults =
            |faults: &str| parse(&format!("{BUNDLED_STACK}\n[faults]\n{faults}\n"), "faults");
        let stack = with_faults("propagation = 8\ntransient_errors = 0.02").unwrap();
        assert_eq!(
            stack.faults.propagation.map(|p| p.describe()).as_deref(),
            Some("8s"),
            "a bare number is seconds, as with --propagation 8"
        );
        assert!(stack.faults.transient_errors.is_some());
        let stack = with_faults("propagation = \"0..8\"").unwrap();
        assert_eq!(
            stack.faults.propagation.map(|p| p.describe()).as_deref(),
            Some("0s..8s")
        );
    }

    #[test]
    fn differences_name_what_an_edit_changed_and_ignore_minted_arns() {
        let before = bundled().state;
        let edited = |from: &str, to: &str| {
            assert!(BUNDLED_STACK.contains(from), "{from}");
            parse(&BUNDLED_STACK.replacen(from, to, 1), "edited")
                .unwrap()
                .state
        };
        assert_eq!(differences(&before, &bundled().state), Vec::<String>::new());
        // A target group inserted first shifts every minted ARN; only it differs.
        let search = "[[target_groups]]\nname = \"search\"\nport = 3000\ntargets = []\n\
                      health_check = { path = \"/\", interval_seconds = 6, timeout_seconds = 5, healthy_threshold = 2, unhealthy_threshold = 2, matcher = \"200\" }\n\n\
                      [[target_groups]]\nname = \"monolith\"";
        let after = edited("[[target_groups]]\nname = \"monolith\"", search);
        assert_eq!(
            differences(&before, &after),
            ["target group 'search' is in the stack file but not in the saved state"]
        );
        let after = edited("priority = 99", "priority = 98");
        assert_eq!(
            differences(&before, &after),
            [
                "rule at priority 98 is in the stack file but not in the saved state",
                "rule at priority 99 is no longer in the stack file"
            ]
        );
        let after = edited("values = [\"/api*\"]", "values = [\"/api/*\"]");
        assert_eq!(
            differences(&before, &after),
            ["rule at priority 99 changed"]
        );
        let after = edited(
            "targets = [\"127.0.0.1:3001\"]",
            "targets = [\"127.0.0.1:3011\"]",
        );
        assert_eq!(
            differences(&before, &after),
            ["target group 'users' changed (port, targets, health check, tags or attributes)"]
        );
        let after = edited(
            "scheme = \"internet-facing\"",
            "scheme = \"internet-facing\"\nattributes = { \"idle_timeout.timeout_seconds\" = \"30\" }",
        );
        assert_eq!(
            differences(&before, &after),
            ["load balancer attributes changed"]
        );
    }

    #[test]
    fn the_bundled_stack_mirrors_the_cloudformation_stack() {
        let state = bundled().state;
        let names: Vec<&str> = state
            .target_groups
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["monolith", "users", "threads", "posts"]);
        for tg in &state.target_groups {
            assert_eq!(tg.port, 3000);
            let hc = &tg.health_check;
            assert_eq!(
                (hc.path.as_str(), hc.interval_seconds, hc.timeout_seconds),
                ("/", 6, 5)
            );
            assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 2));
            assert_eq!(hc.matcher, "200");
        }
        assert_eq!(state.listeners[0].port, 80);
        let rules = state.rules_of(&state.listeners[0].arn);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].priority, Priority::Number(99));
        assert_eq!(
            rules[0].conditions,
            [Condition::PathPattern {
                values: vec!["/api*".to_owned()]
            }]
        );
        assert_eq!(rules[0].tags[0].key, "ficus:role");
        assert_eq!(rules[0].tags[0].value, "monolith");
        let monolith = &state.target_groups[0].arn;
        assert!(rules[1].is_default());
        assert!(rules.iter().all(|r| r.actions[0].forwards_to(monolith)));
    }

    #[test]
    fn arns_are_the_same_every_time_the_stack_is_read() {
        let (first, second) = (bundled().state, bundled().state);
        assert_eq!(first.rules, second.rules);
        assert_eq!(first.target_groups, second.target_groups);
        assert_eq!(first.listeners, second.listeners);
    }

    #[test]
    fn weighted_fixed_response_and_redirect_actions_are_accepted() {
        let text = BUNDLED_STACK.replace(
            "actions = [{ forward = \"monolith\" }]",
            "actions = [{ forward = [{ target_group = \"users\", weight = 10 }, { target_group = \"monolith\", weight = 90 }] }]",
        ) + r#"
[[rules]]
priority = 5
conditions = [{ field = "http-header", name = "X-Down", values = ["yes"] }]
actions = [{ fixed-response = { status_code = "503", content_type = "text/plain", message_body = "down" } }]

[[rules]]
priority = 6
conditions = [{ field = "query-string", values = [{ key = "old", value = "1" }] }]
actions = [{ redirect = { status_code = "HTTP_301", path = "/new" } }]
"#;
        let state = parse(&text, "test").expect("valid").state;
        assert_eq!(state.rules.len(), 4);
        let ActionKind::Forward {
            target_groups,
            plain,
            ..
        } = &state.rules[1].actions[0].kind
        else {
            panic!("a forward action");
        };
        assert!(!plain);
        assert_eq!(
            target_groups.iter().map(|t| t.weight).collect::<Vec<_>>(),
            [10, 90]
        );
    }

    #[test]
    fn rule_limits_are_reported_with_the_rule_key() {
        let text = BUNDLED_STACK.replace(
            "values = [\"/api*\"]",
            "values = [\"/a\", \"/b\", \"/c\", \"/d\", \"/e\", \"/f\"]",
        );
        let err = parse(&text, "test").unwrap_err();
        assert!(err.message.starts_with("rules[0].conditions:"), "{err}");
        let text = BUNDLED_STACK.replace("field = \"path-pattern\"", "field = \"cookie\"");
        let err = parse(&text, "test").unwrap_err();
        assert!(err.message.contains("cookie"), "{err}");
    }
}
