//! The ELBv2 actions: each reads its parameters, reads or changes a `State`
//! and writes its XML answer.

use std::collections::HashSet;

use super::error::ApiError;
use super::form::Form;
use super::xml::{self, Xml};
use super::{parse, render, validate};
use crate::attributes::MAX_ATTRIBUTES_PER_CALL;
use crate::dataplane::{DataPlane, TargetHealthView};
use crate::model::{Priority, ResourceKind, Rule, State, Target, TargetGroup};

/// What an action handler needs besides the state.
pub struct Request<'a> {
    pub action: &'a str,
    pub form: &'a Form,
    pub request_id: &'a str,
    pub dataplane: &'a DataPlane,
}

impl Request<'_> {
    fn answer(&self, result: impl FnOnce(&mut Xml)) -> String {
        xml::success(self.action, self.request_id, result)
    }
}

pub type ReadHandler = fn(&State, &Request) -> Result<String, ApiError>;
pub type WriteHandler = fn(&mut State, &Request) -> Result<String, ApiError>;

/// How an action touches the state.
pub enum Handler {
    Read(ReadHandler),
    Write(WriteHandler),
}

/// The handler for the API action `name`, if it is one this ALB speaks.
pub fn handler(name: &str) -> Option<Handler> {
    use Handler::{Read, Write};
    Some(match name {
        "DescribeLoadBalancers" => Read(describe_load_balancers),
        "DescribeListeners" => Read(describe_listeners),
        "DescribeRules" => Read(describe_rules),
        "DescribeTargetGroups" => Read(describe_target_groups),
        "DescribeTargetHealth" => Read(describe_target_health),
        "DescribeTags" => Read(describe_tags),
        "DescribeLoadBalancerAttributes" => Read(describe_load_balancer_attributes),
        "DescribeTargetGroupAttributes" => Read(describe_target_group_attributes),
        "ModifyLoadBalancerAttributes" => Write(modify_load_balancer_attributes),
        "ModifyTargetGroupAttributes" => Write(modify_target_group_attributes),
        "CreateRule" => Write(create_rule),
        "ModifyRule" => Write(modify_rule),
        "DeleteRule" => Write(delete_rule),
        "SetRulePriorities" => Write(set_rule_priorities),
        "ModifyListener" => Write(modify_listener),
        "ModifyTargetGroup" => Write(modify_target_group),
        "RegisterTargets" => Write(register_targets),
        "DeregisterTargets" => Write(deregister_targets),
        "AddTags" => Write(add_tags),
        "RemoveTags" => Write(remove_tags),
        _ => return None,
    })
}

/// Largest `PageSize` the describe actions accept.
const MAX_PAGE_SIZE: i64 = 400;
/// Most ARNs one tagging call may name.
const MAX_RESOURCE_ARNS: usize = 20;

/// Cuts one page out of `items` by `Marker` (an opaque offset) and `PageSize`.
fn page<T>(items: Vec<T>, form: &Form) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = match form.integer("PageSize")? {
        None => MAX_PAGE_SIZE as usize,
        Some(size) if (1..=MAX_PAGE_SIZE).contains(&size) => size as usize,
        Some(size) => {
            return Err(ApiError::validation(format!(
                "PageSize '{size}' is out of range: it must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
    };
    let start = match form.get("Marker") {
        None => 0,
        Some(marker) => marker
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "Marker '{marker}' is not one this API returned; start again without a Marker"
                ))
            })?,
    };
    let end = start.saturating_add(size).min(items.len());
    let next = (end < items.len()).then(|| format!("page-{end}"));
    let items = items.into_iter().skip(start).take(end - start).collect();
    Ok((items, next))
}

fn at_most_one_filter(form: &Form, keys: &[&str]) -> Result<(), ApiError> {
    let given: Vec<&str> = keys.iter().copied().filter(|k| form.has(k)).collect();
    if given.len() > 1 {
        return Err(ApiError::validation(format!(
            "Give only one of {}",
            given.join(", ")
        )));
    }
    Ok(())
}

/// What each of `keys` names, looked up with `find`; the first one not found
/// is the error `not_found(key)`.
fn find_each<'s, T>(
    keys: &[String],
    find: impl Fn(&str) -> Option<&'s T>,
    not_found: fn(&str) -> ApiError,
) -> Result<Vec<&'s T>, ApiError> {
    keys.iter()
        .map(|key| find(key).ok_or_else(|| not_found(key)))
        .collect()
}

/// The `LoadBalancerArn` filter, if given, naming a load balancer that exists.
fn load_balancer_filter<'f>(state: &State, form: &'f Form) -> Result<Option<&'f str>, ApiError> {
    match form.get("LoadBalancerArn") {
        Some(arn) if state.load_balancer(arn).is_none() => {
            Err(ApiError::load_balancer_not_found(arn))
        }
        filter => Ok(filter),
    }
}

fn describe_load_balancers(state: &State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    at_most_one_filter(form, &["LoadBalancerArns", "Names"])?;
    let selected = if let Some(arns) = form.string_list("LoadBalancerArns")? {
        find_each(
            &arns,
            |arn| state.load_balancer(arn),
            ApiError::load_balancer_not_found,
        )?
    } else if let Some(names) = form.string_list("Names")? {
        find_each(
            &names,
            |name| state.load_balancers.iter().find(|lb| lb.name == name),
            ApiError::load_balancer_not_found,
        )?
    } else {
        state.load_balancers.iter().collect()
    };
    let (selected, next) = page(selected, form)?;
    Ok(req.answer(|x| {
        x.list("LoadBalancers", selected, render::load_balancer)
            .optional_leaf("NextMarker", next);
    }))
}

fn describe_listeners(state: &State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    at_most_one_filter(form, &["LoadBalancerArn", "ListenerArns"])?;
    let selected = if let Some(arns) = form.string_list("ListenerArns")? {
        find_each(
            &arns,
            |arn| state.listener(arn),
            ApiError::listener_not_found,
        )?
    } else if let Some(lb_arn) = load_balancer_filter(state, form)? {
        state
            .listeners
            .iter()
            .filter(|l| l.load_balancer_arn == lb_arn)
            .collect()
    } else {
        return Err(ApiError::validation(
            "Give either LoadBalancerArn or ListenerArns",
        ));
    };
    let (selected, next) = page(selected, form)?;
    Ok(req.answer(|x| {
        x.list("Listeners", selected, |x, l| render::listener(x, state, l))
            .optional_leaf("NextMarker", next);
    }))
}

fn describe_rules(state: &State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    at_most_one_filter(form, &["ListenerArn", "RuleArns"])?;
    let selected = if let Some(arns) = form.string_list("RuleArns")? {
        find_each(&arns, |arn| state.rule(arn), ApiError::rule_not_found)?
    } else if let Some(listener_arn) = form.get("ListenerArn") {
        if state.listener(listener_arn).is_none() {
            return Err(ApiError::listener_not_found(listener_arn));
        }
        state.rules_of(listener_arn)
    } else {
        return Err(ApiError::validation("Give either ListenerArn or RuleArns"));
    };
    let (selected, next) = page(selected, form)?;
    Ok(req.answer(|x| {
        x.list("Rules", selected, render::rule)
            .optional_leaf("NextMarker", next);
    }))
}

fn describe_target_groups(state: &State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    at_most_one_filter(form, &["LoadBalancerArn", "TargetGroupArns", "Names"])?;
    let selected = if let Some(arns) = form.string_list("TargetGroupArns")? {
        find_each(
            &arns,
            |arn| state.target_group(arn),
            ApiError::target_group_not_found,
        )?
    } else if let Some(names) = form.string_list("Names")? {
        find_each(
            &names,
            |name| state.target_group_by_name(name),
            ApiError::target_group_not_found,
        )?
    } else if let Some(lb_arn) = load_balancer_filter(state, form)? {
        state
            .target_groups
            .iter()
            .filter(|tg| state.load_balancers_using(&tg.arn).contains(&lb_arn))
            .collect()
    } else {
        state.target_groups.iter().collect()
    };
    let (selected, next) = page(selected, form)?;
    Ok(req.answer(|x| {
        x.list("TargetGroups", selected, |x, tg| {
            render::target_group(x, state, tg)
        })
        .optional_leaf("NextMarker", next);
    }))
}

fn describe_target_health(state: &State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    let arn = form.required("TargetGroupArn")?;
    let tg = state
        .target_group(arn)
        .ok_or_else(|| ApiError::target_group_not_found(arn))?;
    let draining = req.dataplane.draining_targets(arn);
    let health = |target: &Target| -> TargetHealthView {
        let registered = tg.targets.contains(target);
        let is_draining = draining.contains(target);
        if is_draining && !registered {
            let view = req.dataplane.target_health(arn, target);
            if view.state == "draining" {
                return view;
            }
            return TargetHealthView {
                state: "draining".to_owned(),
                reason: Some("Target.DeregistrationInProgress".to_owned()),
                description: Some("Target deregistration is in progress".to_owned()),
            };
        }
        if !registered {
            return TargetHealthView {
                state: "unused".to_owned(),
                reason: Some("Target.NotRegistered".to_owned()),
                description: Some("Target is not registered to the target group".to_owned()),
            };
        }
        req.dataplane.target_health(arn, target)
    };
    let targets: Vec<Target> = match parse::targets(form, "Targets", tg.port)? {
        Some(asked) => asked,
        None => tg
            .targets
            .iter()
            .cloned()
            .chain(draining.iter().filter(|t| !tg.targets.contains(t)).cloned())
            .collect(),
    };
    Ok(req.answer(|x| {
        x.list("TargetHealthDescriptions", &targets, |x, target| {
            let view = health(target);
            x.node("Target", |x| {
                x.leaf("Id", &target.id).leaf("Port", target.port);
            })
            .leaf("HealthCheckPort", target.port)
            .node("TargetHealth", |x| {
                x.leaf("State", &view.state)
                    .optional_leaf("Reason", view.reason.as_ref())
                    .optional_leaf("Description", view.description.as_ref());
            });
        });
    }))
}

/// The ARNs of a tagging call: present, at most 20, each naming a resource.
fn resource_arns(state: &State, form: &Form) -> Result<Vec<String>, ApiError> {
    let arns = form
        .string_list("ResourceArns")?
        .ok_or_else(|| ApiError::missing("ResourceArns"))?;
    if arns.is_empty() || arns.len() > MAX_RESOURCE_ARNS {
        return Err(ApiError::validation(format!(
            "ResourceArns must name 1 to {MAX_RESOURCE_ARNS} resources"
        )));
    }
    for arn in &arns {
        if state.tags_of(arn).is_none() {
            return Err(match ResourceKind::of_arn(arn) {
                Some(ResourceKind::LoadBalancer) => ApiError::load_balancer_not_found(arn),
                Some(ResourceKind::Listener) => ApiError::listener_not_found(arn),
                Some(ResourceKind::Rule) => ApiError::rule_not_found(arn),
                Some(ResourceKind::TargetGroup) => ApiError::target_group_not_found(arn),
                None => ApiError::validation(format!(
                    "'{arn}' is not a load balancer, listener, rule or target group ARN"
                )),
            });
        }
    }
    Ok(arns)
}

fn describe_tags(state: &State, req: &Request) -> Result<String, ApiError> {
    let arns = resource_arns(state, req.form)?;
    Ok(req.answer(|x| {
        x.list("TagDescriptions", &arns, |x, arn| {
            x.leaf("ResourceArn", arn);
            render::tags(x, state.tags_of(arn).map_or(&[], Vec::as_slice));
        });
    }))
}

fn add_tags(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let arns = resource_arns(state, req.form)?;
    if arns.len() > 1 {
        // AWS's answer word for word: AddTags takes a list but tags one resource.
        return Err(ApiError::validation(
            "Only one resource can be tagged at a time",
        ));
    }
    let tags = parse::tags(req.form, "Tags")?.ok_or_else(|| ApiError::missing("Tags"))?;
    for arn in &arns {
        if let Some(existing) = state.tags_of_mut(arn) {
            validate::merge_tags(arn, existing, &tags)?;
        }
    }
    Ok(req.answer(|_| {}))
}

fn remove_tags(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let arns = resource_arns(state, req.form)?;
    let keys = req
        .form
        .string_list("TagKeys")?
        .ok_or_else(|| ApiError::missing("TagKeys"))?;
    for arn in &arns {
        if let Some(existing) = state.tags_of_mut(arn) {
            existing.retain(|tag| !keys.contains(&tag.key));
        }
    }
    Ok(req.answer(|_| {}))
}

/// The ARN of a new rule of `listener_arn`: AWS's `listener-rule/` form.
fn rule_arn(state: &mut State, listener_arn: &str) -> String {
    let id = state.mint_id();
    format!(
        "{}/{id}",
        listener_arn.replacen(":listener/", ":listener-rule/", 1)
    )
}

fn create_rule(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    let listener_arn = form.required("ListenerArn")?.to_owned();
    if state.listener(&listener_arn).is_none() {
        return Err(ApiError::listener_not_found(&listener_arn));
    }
    let priority = validate::priority(form.required_integer("Priority")?)?;
    let conditions =
        parse::conditions(form, "Conditions")?.ok_or_else(|| ApiError::missing("Conditions"))?;
    validate::conditions(&conditions)?;
    let actions = parse::actions(form, "Actions")?.ok_or_else(|| ApiError::missing("Actions"))?;
    validate::actions(state, &actions)?;
    let tags = parse::tags(form, "Tags")?.unwrap_or_default();
    if state
        .rules
        .iter()
        .any(|r| r.listener_arn == listener_arn && r.priority == Priority::Number(priority))
    {
        return Err(ApiError::priority_in_use(priority));
    }
    let rule = Rule {
        arn: rule_arn(state, &listener_arn),
        listener_arn,
        priority: Priority::Number(priority),
        conditions,
        actions,
        tags,
    };
    let answer = req.answer(|x| {
        x.list("Rules", [&rule], render::rule);
    });
    state.rules.push(rule);
    Ok(answer)
}

/// The numbered rule `arn` names, for changing it.
fn numbered_rule_mut<'s>(
    state: &'s mut State,
    arn: &str,
    verb: &str,
) -> Result<&'s mut Rule, ApiError> {
    let rule = state
        .rules
        .iter_mut()
        .find(|r| r.arn == arn)
        .ok_or_else(|| ApiError::rule_not_found(arn))?;
    if rule.is_default() {
        return Err(ApiError::operation_not_permitted(format!(
            "Default rule '{arn}' cannot be {verb}; change the listener's default actions instead"
        )));
    }
    Ok(rule)
}

fn modify_rule(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    let arn = form.required("RuleArn")?;
    numbered_rule_mut(state, arn, "modified")?;
    let conditions = parse::conditions(form, "Conditions")?;
    if let Some(conditions) = &conditions {
        validate::conditions(conditions)?;
    }
    let actions = parse::actions(form, "Actions")?;
    if let Some(actions) = &actions {
        validate::actions(state, actions)?;
    }
    let rule = numbered_rule_mut(state, arn, "modified")?;
    if let Some(conditions) = conditions {
        rule.conditions = conditions;
    }
    if let Some(actions) = actions {
        rule.actions = actions;
    }
    let rule = &*rule;
    Ok(req.answer(|x| {
        x.list("Rules", [rule], render::rule);
    }))
}

fn delete_rule(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let arn = req.form.required("RuleArn")?;
    numbered_rule_mut(state, arn, "deleted")?;
    state.rules.retain(|r| r.arn != arn);
    Ok(req.answer(|_| {}))
}

fn set_rule_priorities(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let pairs = req
        .form
        .member_list("RulePriorities")?
        .ok_or_else(|| ApiError::missing("RulePriorities"))?;
    if pairs.is_empty() {
        return Err(ApiError::validation("RulePriorities must not be empty"));
    }
    let mut changed = Vec::new();
    let mut seen = HashSet::new();
    for pair in &pairs {
        let arn = pair.required("RuleArn")?;
        let priority = validate::priority(pair.required_integer("Priority")?)?;
        if !seen.insert(arn.to_owned()) {
            return Err(ApiError::validation(format!(
                "Rule '{arn}' is listed more than once"
            )));
        }
        numbered_rule_mut(state, arn, "moved")?.priority = Priority::Number(priority);
        changed.push(arn.to_owned());
    }
    // Judged on the final state, so rules can swap priorities in one call.
    validate::state(state)?;
    let rules: Vec<&Rule> = changed.iter().filter_map(|arn| state.rule(arn)).collect();
    Ok(req.answer(|x| {
        x.list("Rules", rules, render::rule);
    }))
}

/// The target group an action changes, by ARN.
fn target_group_mut<'s>(state: &'s mut State, arn: &str) -> Result<&'s mut TargetGroup, ApiError> {
    state
        .target_groups
        .iter_mut()
        .find(|t| t.arn == arn)
        .ok_or_else(|| ApiError::target_group_not_found(arn))
}

/// What RegisterTargets and DeregisterTargets name: the target group
/// (`TargetGroupArn`) and the `Targets`.
fn targets_to_change<'s>(
    state: &'s mut State,
    form: &Form,
) -> Result<(&'s mut TargetGroup, Vec<Target>), ApiError> {
    let tg = target_group_mut(state, form.required("TargetGroupArn")?)?;
    let targets =
        parse::targets(form, "Targets", tg.port)?.ok_or_else(|| ApiError::missing("Targets"))?;
    Ok((tg, targets))
}

fn register_targets(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let (tg, targets) = targets_to_change(state, req.form)?;
    for target in targets {
        if !tg.targets.contains(&target) {
            tg.targets.push(target);
        }
    }
    Ok(req.answer(|_| {}))
}

fn deregister_targets(state: &mut State, req: &Request) -> Result<String, ApiError> {
    // A target that is not registered is no error: AWS answers success.
    let (tg, targets) = targets_to_change(state, req.form)?;
    tg.targets.retain(|t| !targets.contains(t));
    Ok(req.answer(|_| {}))
}

fn modify_listener(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    let arn = form.required("ListenerArn")?;
    if state.listener(arn).is_none() {
        return Err(ApiError::listener_not_found(arn));
    }
    if let Some(protocol) = form.get("Protocol").filter(|p| *p != "HTTP") {
        return Err(ApiError::validation(format!(
            "Protocol '{protocol}' is not supported here: the local ALB speaks only HTTP"
        )));
    }
    let port = match form.integer("Port")? {
        None => None,
        Some(port) => Some(
            u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    ApiError::validation(format!("Port '{port}' must be between 1 and 65535"))
                })?,
        ),
    };
    let default_actions = parse::actions(form, "DefaultActions")?;
    if let Some(actions) = &default_actions {
        validate::actions(state, actions)?;
    }
    let default_rule = state
        .rules
        .iter_mut()
        .find(|r| r.listener_arn == arn && r.is_default());
    if let (Some(actions), Some(rule)) = (default_actions, default_rule) {
        rule.actions = actions;
    }
    let listener = state.listeners.iter_mut().find(|l| l.arn == arn);
    if let (Some(port), Some(listener)) = (port, listener) {
        listener.port = port;
    }
    let state = &*state;
    let listener = state
        .listener(arn)
        .ok_or_else(|| ApiError::listener_not_found(arn))?;
    Ok(req.answer(|x| {
        x.list("Listeners", [listener], |x, l| {
            render::listener(x, state, l)
        });
    }))
}

fn modify_target_group(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let form = req.form;
    let arn = form.required("TargetGroupArn")?;
    let tg = target_group_mut(state, arn)?;
    if let Some(protocol) = form.get("HealthCheckProtocol").filter(|p| *p != "HTTP") {
        return Err(ApiError::validation(format!(
            "HealthCheckProtocol '{protocol}' is not supported here: use HTTP"
        )));
    }
    if let Some(port) = form.get("HealthCheckPort").filter(|p| *p != "traffic-port") {
        return Err(ApiError::validation(format!(
            "HealthCheckPort '{port}' is not supported here: health checks use traffic-port"
        )));
    }
    if form.boolean("HealthCheckEnabled")? == Some(false) {
        return Err(ApiError::validation(
            "HealthCheckEnabled false is not supported: ALB target groups always health-check",
        ));
    }
    let hc = &mut tg.health_check;
    if let Some(path) = form.get("HealthCheckPath") {
        hc.path = path.to_owned();
    }
    if let Some(code) = form.structure("Matcher").get("HttpCode") {
        hc.matcher = code.to_owned();
    }
    for (parameter, slot) in [
        ("HealthCheckIntervalSeconds", &mut hc.interval_seconds),
        ("HealthCheckTimeoutSeconds", &mut hc.timeout_seconds),
        ("HealthyThresholdCount", &mut hc.healthy_threshold),
        ("UnhealthyThresholdCount", &mut hc.unhealthy_threshold),
    ] {
        if let Some(value) = form.integer(parameter)? {
            *slot = u32::try_from(value).map_err(|_| {
                ApiError::validation(format!("{parameter} '{value}' must not be negative"))
            })?;
        }
    }
    validate::health_check(hc).map_err(|problem| {
        ApiError::validation(format!(
            "{}: {}",
            problem.field.api_parameter(),
            problem.message
        ))
    })?;
    let state = &*state;
    let tg = state
        .target_group(arn)
        .ok_or_else(|| ApiError::target_group_not_found(arn))?;
    Ok(req.answer(|x| {
        x.list("TargetGroups", [tg], |x, tg| {
            render::target_group(x, state, tg)
        });
    }))
}

/// The `Attributes` of a `Modify*Attributes` call: 1 to 20 key/value pairs.
fn attribute_pairs(form: &Form) -> Result<Vec<(String, String)>, ApiError> {
    let members = form
        .member_list("Attributes")?
        .ok_or_else(|| ApiError::missing("Attributes"))?;
    if members.is_empty() || members.len() > MAX_ATTRIBUTES_PER_CALL {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'attributes' failed to satisfy constraint: Member must have length less than or equal to {MAX_ATTRIBUTES_PER_CALL} and at least 1"
        )));
    }
    members
        .iter()
        .map(|member| {
            let key = member.required("Key")?.to_owned();
            let value = member.get("Value").unwrap_or_default().to_owned();
            Ok((key, value))
        })
        .collect()
}

fn attribute_list(x: &mut Xml, entries: Vec<(&'static str, String)>) {
    x.list("Attributes", entries, |x, (key, value)| {
        x.leaf("Key", key).leaf("Value", value);
    });
}

fn describe_load_balancer_attributes(state: &State, req: &Request) -> Result<String, ApiError> {
    let arn = req.form.required("LoadBalancerArn")?;
    let lb = state
        .load_balancer(arn)
        .ok_or_else(|| ApiError::load_balancer_not_found(arn))?;
    let entries = lb.attributes.entries(&req.dataplane.attribute_defaults());
    Ok(req.answer(|x| attribute_list(x, entries)))
}

fn describe_target_group_attributes(state: &State, req: &Request) -> Result<String, ApiError> {
    let arn = req.form.required("TargetGroupArn")?;
    let tg = state
        .target_group(arn)
        .ok_or_else(|| ApiError::target_group_not_found(arn))?;
    let entries = tg.attributes.entries(&req.dataplane.attribute_defaults());
    Ok(req.answer(|x| attribute_list(x, entries)))
}

/// Sets every pair on `attributes` (a copy: the call changes all or nothing).
fn modify_load_balancer_attributes(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let arn = req.form.required("LoadBalancerArn")?;
    let pairs = attribute_pairs(req.form)?;
    let lb = state
        .load_balancers
        .iter_mut()
        .find(|lb| lb.arn == arn)
        .ok_or_else(|| ApiError::load_balancer_not_found(arn))?;
    for (key, value) in &pairs {
        lb.attributes
            .set(key, value)
            .map_err(|e| ApiError::attribute(&e))?;
    }
    lb.attributes.check().map_err(|e| ApiError::attribute(&e))?;
    let entries = lb.attributes.entries(&req.dataplane.attribute_defaults());
    Ok(req.answer(|x| attribute_list(x, entries)))
}

fn modify_target_group_attributes(state: &mut State, req: &Request) -> Result<String, ApiError> {
    let arn = req.form.required("TargetGroupArn")?;
    let pairs = attribute_pairs(req.form)?;
    let tg = target_group_mut(state, arn)?;
    for (key, value) in &pairs {
        tg.attributes
            .set(key, value)
            .map_err(|e| ApiError::attribute(&e))?;
    }
    tg.attributes.check().map_err(|e| ApiError::attribute(&e))?;
    let entries = tg.attributes.entries(&req.dataplane.attribute_defaults());
    Ok(req.answer(|x| attribute_list(x, entries)))
}
