//! The ELBv2 client: one `SdkConfig`, every call timed and counted in one
//! place (`-v` prints each call and its duration), service errors explained
//! (AccessDenied names the refused IAM action), and conversions to the pure
//! model in `state`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use elbv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, HostHeaderConditionConfig,
    HttpHeaderConditionConfig, HttpRequestMethodConditionConfig, PathPatternConditionConfig,
    QueryStringConditionConfig, QueryStringKeyValuePair, RuleCondition, RulePriorityPair,
    SourceIpConditionConfig, Tag, TargetGroupStickinessConfig, TargetGroupTuple,
};

use crate::settings::AwsSettings;
use crate::state::{Forward, RuleInfo};

/// The most ARNs DescribeTags accepts in one call.
const TAGS_PER_CALL: usize = 20;

/// Retries, set once for every client (ELBv2 and STS). ELBv2's rate limits
/// are per account and region, shared with everything else in the account:
/// AWS's "Throttling" answer ("Rate exceeded") comes from token buckets
/// (docs/reliability.md). Standard mode retries throttling and transient
/// errors (5xx, timeouts, connection failures) with full-jitter exponential
/// backoff: 5 attempts, from 500 ms doubling, capped at 10 s, so a retried
/// call waits 0–0.5 s, then 0–1 s, 0–2 s, 0–4 s. Not the adaptive mode: its
/// client-side rate limiter, fed by the few calls of one command, folded a
/// delay of 8–10 s into the first retry after a single throttle, holding
/// `status` and `rollback` for seconds exactly when the account is busy
/// (CloudWatch's client, `cloudwatch.rs`, uses standard mode for the same
/// reason).
fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(5)
        .with_initial_backoff(Duration::from_millis(500))
        .with_max_backoff(Duration::from_secs(10))
}

/// No single attempt may hang a shift: 3 s to connect, 10 s per attempt.
fn timeout_config() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .build()
}

/// One recorded call: the action, how long it took, whether it succeeded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub action: &'static str,
    pub millis: f64,
    pub ok: bool,
}

/// The ELBv2 client with call accounting.
pub struct Elb {
    client: elbv2::Client,
    verbose: bool,
    calls: Mutex<Vec<CallRecord>>,
}

/// Builds the shared `SdkConfig`: the standard chain (`AWS_*` variables,
/// profiles and their `endpoint_url`), then the settings' and flags' overrides.
pub async fn sdk_config(aws: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        // Says on stderr why a call waits (a retry's backoff, the rate limiter).
        .sleep_impl(crate::budget::NotingSleep);
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let (Some(key), Some(secret)) = (&aws.access_key_id, &aws.secret_access_key) {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            key.clone(),
            secret.clone(),
            None,
            None,
            "migrate.toml",
        ));
    }
    loader.load().await
}

impl Elb {
    pub fn new(config: &SdkConfig, verbose: bool) -> Elb {
        Elb {
            client: elbv2::Client::from_conf(
                elbv2::config::Builder::from(config)
                    .interceptor(crate::budget::Counting)
                    .build(),
            ),
            verbose,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default()
    }

    /// Awaits one call, records and (with `-v`) prints it; errors stay typed so
    /// callers can match expected service errors.
    pub async fn timed<T, E>(
        &self,
        action: &'static str,
        call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, SdkError<E, HttpResponse>> {
        let started = Instant::now();
        let result = call.await;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        let ok = result.is_ok();
        if self.verbose {
            eprintln!(
                "migrate: elbv2 {action} {millis:.1} ms{}",
                if ok { "" } else { " (failed)" }
            );
        }
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(CallRecord { action, millis, ok });
        }
        result
    }

    /// [`Elb::timed`], with any error explained.
    pub async fn call<T, E>(
        &self,
        action: &'static str,
        call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> anyhow::Result<T>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.timed(action, call)
            .await
            .map_err(|err| explain(action, err))
    }

    /// The listener's ARN: configured, or found by load balancer name and port.
    pub async fn listener_arn(
        &self,
        listener: &crate::settings::ListenerSettings,
    ) -> anyhow::Result<String> {
        if let Some(arn) = &listener.arn {
            return Ok(arn.clone());
        }
        let (Some(name), Some(port)) = (&listener.load_balancer, listener.port) else {
            return Err(crate::error::usage(
                "`listener`: set `arn`, or `load_balancer` and `port`",
            ));
        };
        let found = self
            .timed(
                "DescribeLoadBalancers",
                self.client.describe_load_balancers().names(name).send(),
            )
            .await;
        let balancers = match found {
            Ok(out) => out,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_load_balancer_not_found_exception()) =>
            {
                return Err(crate::error::usage(format!(
                    "no load balancer named `{name}` (listener.load_balancer); check the name and the region"
                )));
            }
            Err(err) => return Err(explain("DescribeLoadBalancers", err)),
        };
        let lb_arn = balancers
            .load_balancers()
            .first()
            .and_then(|lb| lb.load_balancer_arn())
            .with_context(|| format!("load balancer `{name}` was described without an ARN"))?
            .to_owned();
        let listeners = self
            .call(
                "DescribeListeners",
                self.client
                    .describe_listeners()
                    .load_balancer_arn(&lb_arn)
                    .send(),
            )
            .await?;
        listeners
            .listeners()
            .iter()
            .find(|l| l.port() == Some(i32::from(port)))
            .and_then(|l| l.listener_arn())
            .map(str::to_owned)
            .ok_or_else(|| {
                let ports: Vec<String> = listeners
                    .listeners()
                    .iter()
                    .filter_map(|l| l.port())
                    .map(|p| p.to_string())
                    .collect();
                crate::error::usage(format!(
                    "load balancer `{name}` has no listener on port {port} (it has: {}); fix listener.port",
                    ports.join(", ")
                ))
            })
    }

    /// Every rule of the listener (tags not included).
    pub async fn rules(&self, listener_arn: &str) -> anyhow::Result<Vec<RuleInfo>> {
        let mut rules = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call(
                    "DescribeRules",
                    self.client
                        .describe_rules()
                        .listener_arn(listener_arn)
                        .set_marker(marker.clone())
                        .send(),
                )
                .await?;
            rules.extend(page.rules().iter().map(rule_info));
            marker = page.next_marker().map(str::to_owned);
            if marker.is_none() {
                return Ok(rules);
            }
        }
    }

    /// One rule, by ARN; `None` when it no longer exists.
    pub async fn rule(&self, rule_arn: &str) -> anyhow::Result<Option<RuleInfo>> {
        let result = self
            .timed(
                "DescribeRules",
                self.client.describe_rules().rule_arns(rule_arn).send(),
            )
            .await;
        match result {
            Ok(out) => Ok(out.rules().first().map(rule_info)),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_rule_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(explain("DescribeRules", err)),
        }
    }

    /// Tags of several resources, in as few DescribeTags calls as possible.
    pub async fn tags(
        &self,
        arns: &[String],
    ) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut all = BTreeMap::new();
        for chunk in arns.chunks(TAGS_PER_CALL) {
            let out = self
                .call(
                    "DescribeTags",
                    self.client
                        .describe_tags()
                        .set_resource_arns(Some(chunk.to_vec()))
                        .send(),
                )
                .await?;
            for description in out.tag_descriptions() {
                let tags = description
                    .tags()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_owned(),
                            t.value().unwrap_or_default().to_owned(),
                        ))
                    })
                    .collect();
                if let Some(arn) = description.resource_arn() {
                    all.insert(arn.to_owned(), tags);
                }
            }
        }
        Ok(all)
    }

    pub async fn add_tags(&self, arn: &str, tags: &[(&str, &str)]) -> anyhow::Result<()> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect();
        self.call(
            "AddTags",
            self.client
                .add_tags()
                .resource_arns(arn)
                .set_tags(Some(tags))
                .send(),
        )
        .await?;
        Ok(())
    }

    pub async fn remove_tags(&self, arn: &str, keys: &[String]) -> anyhow::Result<()> {
        self.call(
            "RemoveTags",
            self.client
                .remove_tags()
                .resource_arns(arn)
                .set_tag_keys(Some(keys.to_vec()))
                .send(),
        )
        .await?;
        Ok(())
    }

    /// Target group ARNs by name; names absent from the answer are missing.
    pub async fn target_group_arns(
        &self,
        names: &[String],
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut found = BTreeMap::new();
        // DescribeTargetGroups fails the whole call if one name is unknown, so
        // names are asked one by one only when the batch fails.
        let batch = self
            .timed(
                "DescribeTargetGroups",
                self.client
                    .describe_target_groups()
                    .set_names(Some(names.to_vec()))
                    .send(),
            )
            .await;
        match batch {
            Ok(out) => {
                for tg in out.target_groups() {
                    if let (Some(name), Some(arn)) = (tg.target_group_name(), tg.target_group_arn())
                    {
                        found.insert(name.to_owned(), arn.to_owned());
                    }
                }
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_target_group_not_found_exception()) =>
            {
                for name in names {
                    let single = self
                        .timed(
                            "DescribeTargetGroups",
                            self.client.describe_target_groups().names(name).send(),
                        )
                        .await;
                    match single {
                        Ok(out) => {
                            if let Some(arn) = out
                                .target_groups()
                                .first()
                                .and_then(|tg| tg.target_group_arn())
                            {
                                found.insert(name.clone(), arn.to_owned());
                            }
                        }
                        Err(err)
                            if err
                                .as_service_error()
                                .is_some_and(|e| e.is_target_group_not_found_exception()) => {}
                        Err(err) => return Err(explain("DescribeTargetGroups", err)),
                    }
                }
            }
            Err(err) => return Err(explain("DescribeTargetGroups", err)),
        }
        Ok(found)
    }

    /// The health of a target group's targets: (target, state, reason).
    pub async fn target_health(&self, target_group_arn: &str) -> anyhow::Result<Vec<TargetHealth>> {
        let out = self
            .call(
                "DescribeTargetHealth",
                self.client
                    .describe_target_health()
                    .target_group_arn(target_group_arn)
                    .send(),
            )
            .await?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .map(|d| {
                let target = d
                    .target()
                    .map(|t| match t.port() {
                        Some(port) => format!("{}:{port}", t.id().unwrap_or("?")),
                        None => t.id().unwrap_or("?").to_owned(),
                    })
                    .unwrap_or_else(|| "?".to_owned());
                let health = d.target_health();
                TargetHealth {
                    target,
                    state: health
                        .and_then(|h| h.state())
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_else(|| "unknown".to_owned()),
                    reason: health.and_then(|h| h.description()).map(str::to_owned),
                }
            })
            .collect())
    }

    /// Creates a rule; `Ok(None)` when the priority was taken meanwhile
    /// (PriorityInUse), so the caller can pick another.
    pub async fn create_rule(
        &self,
        listener_arn: &str,
        priority: u32,
        conditions: &alb::Conditions,
        action: &Forward,
        tags: &[(&str, &str)],
    ) -> anyhow::Result<Option<String>> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect();
        let created = self
            .timed(
                "CreateRule",
                self.client
                    .create_rule()
                    .listener_arn(listener_arn)
                    .priority(priority as i32)
                    .set_conditions(Some(sdk_conditions(conditions)))
                    .set_actions(Some(vec![sdk_action(action)?]))
                    .set_tags(Some(tags.clone()))
                    .send(),
            )
            .await;
        let out = match created {
            Ok(out) => out,
            // CreateRule has no idempotency token: when AWS applied it but
            // the answer was lost, the SDK's retry finds the slot taken (by
            // the rule the first attempt created), and a last error may
            // hide a rule created all the same. The rule at that priority,
            // with the conditions and every tag asked for, is that rule:
            // take it, rather than create a second one elsewhere.
            Err(err) => {
                let taken = err
                    .as_service_error()
                    .is_some_and(|e| e.is_priority_in_use_exception());
                if let Some(arn) = self
                    .created_all_the_same(listener_arn, priority, conditions, &tags)
                    .await
                {
                    eprintln!(
                        "migrate: CreateRule at priority {priority} answered an error, but the rule it asked for is there ({arn}): its answer was lost; taking that rule rather than creating another"
                    );
                    return Ok(Some(arn));
                }
                if taken {
                    return Ok(None);
                }
                return Err(explain("CreateRule", err));
            }
        };
        out.rules()
            .first()
            .and_then(|r| r.rule_arn())
            .map(|arn| Some(arn.to_owned()))
            .context("CreateRule answered without the rule's ARN")
    }

    /// The rule at `priority` when it has these conditions and carries every
    /// one of these tags: the rule a CreateRule whose answer was lost made.
    async fn created_all_the_same(
        &self,
        listener_arn: &str,
        priority: u32,
        conditions: &alb::Conditions,
        tags: &[Tag],
    ) -> Option<String> {
        let rules = self.rules(listener_arn).await.ok()?;
        let rule = rules.into_iter().find(|r| {
            r.priority == Some(priority) && r.conditions.normalized() == conditions.normalized()
        })?;
        let found = self.tags(std::slice::from_ref(&rule.arn)).await.ok()?;
        let carried = found.get(&rule.arn)?;
        let all = !tags.is_empty()
            && tags.iter().all(|t| {
                t.key()
                    .is_some_and(|k| carried.get(k).map(String::as_str) == t.value())
            });
        all.then_some(rule.arn)
    }

    /// One rule into one free slot: the rules as the write left them (AWS
    /// answers SetRulePriorities with them). `Ok(None)` when the slot was
    /// taken meanwhile (PriorityInUse), so the caller can pick another.
    pub async fn set_priority(
        &self,
        rule_arn: &str,
        priority: u32,
    ) -> anyhow::Result<Option<Vec<RuleInfo>>> {
        let pair = RulePriorityPair::builder()
            .rule_arn(rule_arn)
            .priority(priority as i32)
            .build();
        let result = self
            .timed(
                "SetRulePriorities",
                self.client
                    .set_rule_priorities()
                    .rule_priorities(pair)
                    .send(),
            )
            .await;
        match result {
            Ok(out) => Ok(Some(out.rules().iter().map(rule_info).collect())),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_priority_in_use_exception()) =>
            {
                Ok(None)
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_rule_not_found_exception()) =>
            {
                anyhow::bail!("rule {rule_arn} no longer exists; run `migrate init` to recreate it")
            }
            Err(err) => Err(explain("SetRulePriorities", err)),
        }
    }

    /// Replaces a rule's conditions (ModifyRule), leaving its actions; the
    /// rule as the write left it (AWS answers ModifyRule with it).
    pub async fn set_conditions(
        &self,
        rule_arn: &str,
        conditions: &alb::Conditions,
    ) -> anyhow::Result<Vec<RuleInfo>> {
        self.modify_rule(
            self.client
                .modify_rule()
                .rule_arn(rule_arn)
                .set_conditions(Some(sdk_conditions(conditions))),
        )
        .await
    }

    /// DeleteRule (the preview rule's `--off`).
    pub async fn delete_rule(&self, rule_arn: &str) -> anyhow::Result<()> {
        self.call(
            "DeleteRule",
            self.client.delete_rule().rule_arn(rule_arn).send(),
        )
        .await?;
        Ok(())
    }

    /// Replaces a rule's action (ModifyRule); the rule as the write left it.
    pub async fn set_action(
        &self,
        rule_arn: &str,
        action: &Forward,
    ) -> anyhow::Result<Vec<RuleInfo>> {
        self.modify_rule(
            self.client
                .modify_rule()
                .rule_arn(rule_arn)
                .actions(sdk_action(action)?),
        )
        .await
    }

    /// Sends a ModifyRule; the rule as the write left it (AWS answers
    /// ModifyRule with it): the write's read-back.
    async fn modify_rule(
        &self,
        request: elbv2::operation::modify_rule::builders::ModifyRuleFluentBuilder,
    ) -> anyhow::Result<Vec<RuleInfo>> {
        let out = self.call("ModifyRule", request.send()).await?;
        Ok(out.rules().iter().map(rule_info).collect())
    }
}

/// One target's health.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub state: String,
    pub reason: Option<String>,
}

/// Builds the SDK action for a forward.
fn sdk_action(action: &Forward) -> anyhow::Result<Action> {
    let builder = Action::builder().r#type(ActionTypeEnum::Forward);
    let built = match action {
        Forward::Plain { target_group } => builder.target_group_arn(target_group).build(),
        Forward::Weighted {
            target_groups,
            sticky_seconds,
        } => {
            let tuples = target_groups
                .iter()
                .map(|(arn, weight)| {
                    TargetGroupTuple::builder()
                        .target_group_arn(arn)
                        .weight(*weight as i32)
                        .build()
                })
                .collect();
            builder
                .forward_config(
                    ForwardActionConfig::builder()
                        .set_target_groups(Some(tuples))
                        .set_target_group_stickiness_config(sticky_seconds.map(|seconds| {
                            TargetGroupStickinessConfig::builder()
                                .enabled(true)
                                .duration_seconds(seconds as i32)
                                .build()
                        }))
                        .build(),
                )
                .build()
        }
        Forward::Other { description } => {
            anyhow::bail!("migrate never writes `{description}` actions")
        }
    };
    Ok(built)
}

/// Converts a described rule into the model.
fn rule_info(rule: &elbv2::types::Rule) -> RuleInfo {
    let priority = rule.priority().and_then(|p| p.parse::<u32>().ok());
    RuleInfo {
        arn: rule.rule_arn().unwrap_or_default().to_owned(),
        priority,
        conditions: conditions_of(rule.conditions()),
        action: forward_of(rule.actions()),
        tags: BTreeMap::new(),
    }
}

/// A described rule's conditions in the model. Each condition's `*Config`
/// block wins over its legacy `Values` (AWS returns both).
fn conditions_of(described: &[RuleCondition]) -> alb::Conditions {
    let mut conditions = alb::Conditions::default();
    for condition in described {
        let legacy = condition.values().to_vec();
        let or_legacy = |values: &[String]| {
            if values.is_empty() {
                legacy.clone()
            } else {
                values.to_vec()
            }
        };
        match condition.field().unwrap_or_default() {
            "path-pattern" => {
                conditions.paths = or_legacy(
                    condition
                        .path_pattern_config()
                        .map(|c| c.values())
                        .unwrap_or_default(),
                )
            }
            "host-header" => {
                conditions.hosts = or_legacy(
                    condition
                        .host_header_config()
                        .map(|c| c.values())
                        .unwrap_or_default(),
                )
            }
            "http-request-method" => {
                conditions.methods = or_legacy(
                    condition
                        .http_request_method_config()
                        .map(|c| c.values())
                        .unwrap_or_default(),
                )
            }
            "source-ip" => {
                conditions.source_ips = or_legacy(
                    condition
                        .source_ip_config()
                        .map(|c| c.values())
                        .unwrap_or_default(),
                )
            }
            "http-header" => {
                if let Some(config) = condition.http_header_config() {
                    conditions.headers.push(alb::HeaderCondition {
                        name: config.http_header_name().unwrap_or_default().to_owned(),
                        values: config.values().to_vec(),
                    });
                }
            }
            "query-string" => {
                if let Some(config) = condition.query_string_config() {
                    conditions.queries.push(
                        config
                            .values()
                            .iter()
                            .map(|pair| alb::QueryPair {
                                key: pair.key().map(str::to_owned),
                                value: pair.value().unwrap_or_default().to_owned(),
                            })
                            .collect(),
                    );
                }
            }
            _ => {}
        }
    }
    conditions
}

/// The model's conditions as the SDK writes them (`*Config` blocks only).
fn sdk_conditions(conditions: &alb::Conditions) -> Vec<RuleCondition> {
    let mut out = Vec::new();
    let values = |v: &[String]| Some(v.to_vec());
    if !conditions.paths.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    PathPatternConditionConfig::builder()
                        .set_values(values(&conditions.paths))
                        .build(),
                )
                .build(),
        );
    }
    if !conditions.hosts.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    HostHeaderConditionConfig::builder()
                        .set_values(values(&conditions.hosts))
                        .build(),
                )
                .build(),
        );
    }
    if !conditions.methods.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("http-request-method")
                .http_request_method_config(
                    HttpRequestMethodConditionConfig::builder()
                        .set_values(values(&conditions.methods))
                        .build(),
                )
                .build(),
        );
    }
    if !conditions.source_ips.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("source-ip")
                .source_ip_config(
                    SourceIpConditionConfig::builder()
                        .set_values(values(&conditions.source_ips))
                        .build(),
                )
                .build(),
        );
    }
    for header in &conditions.headers {
        out.push(
            RuleCondition::builder()
                .field("http-header")
                .http_header_config(
                    HttpHeaderConditionConfig::builder()
                        .http_header_name(&header.name)
                        .set_values(values(&header.values))
                        .build(),
                )
                .build(),
        );
    }
    for query in &conditions.queries {
        let pairs = query
            .iter()
            .map(|pair| {
                QueryStringKeyValuePair::builder()
                    .set_key(pair.key.clone())
                    .value(&pair.value)
                    .build()
            })
            .collect();
        out.push(
            RuleCondition::builder()
                .field("query-string")
                .query_string_config(
                    QueryStringConditionConfig::builder()
                        .set_values(Some(pairs))
                        .build(),
                )
                .build(),
        );
    }
    out
}

/// The terminal action, normalized (see [`Forward`]).
fn forward_of(actions: &[Action]) -> Forward {
    let mut sorted: Vec<&Action> = actions.iter().collect();
    sorted.sort_by_key(|a| a.order().unwrap_or(i32::MAX));
    let Some(last) = sorted.last() else {
        return Forward::Other {
            description: "no action".into(),
        };
    };
    if last.r#type() != Some(&ActionTypeEnum::Forward) {
        let kind = last
            .r#type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_else(|| "unknown".into());
        return Forward::Other { description: kind };
    }
    let tuples = last
        .forward_config()
        .map(|c| c.target_groups())
        .unwrap_or_default();
    match tuples {
        [] => match last.target_group_arn() {
            Some(arn) => Forward::Plain {
                target_group: arn.to_owned(),
            },
            None => Forward::Other {
                description: "forward without target group".into(),
            },
        },
        [single] if single.target_group_arn().is_some() => Forward::Plain {
            target_group: single.target_group_arn().unwrap_or_default().to_owned(),
        },
        many => Forward::weighted(many.iter().map(|t| {
            (
                t.target_group_arn().unwrap_or_default().to_owned(),
                t.weight().unwrap_or(1).max(0) as u32,
            )
        }))
        .sticky(
            last.forward_config()
                .and_then(|c| c.target_group_stickiness_config())
                .filter(|s| s.enabled() == Some(true))
                .map(|s| s.duration_seconds().unwrap_or(0).max(0) as u32),
        ),
    }
}

/// Explains an SDK error: AccessDenied names the refused IAM action, a
/// transport failure names the endpoint problem, anything else keeps the
/// service's code and message.
pub fn explain<E>(action: &'static str, err: SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let message = err.message().unwrap_or_default().to_owned();
    match code.as_deref() {
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => {
            anyhow::anyhow!(
                "ELBv2 {action} was refused: the caller lacks the IAM permission `elasticloadbalancing:{action}` ({message})"
            )
        }
        Some(code) => anyhow::anyhow!("ELBv2 {action} failed: {code}: {message}"),
        None => match &err {
            SdkError::DispatchFailure(_) if causes(&err).contains("no credentials") => {
                anyhow::anyhow!(
                    "ELBv2 {action}: no AWS credentials ({}); use `--profile`, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, as for the AWS CLI",
                    causes(&err).lines().next().unwrap_or_default()
                )
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => anyhow::anyhow!(
                "ELBv2 {action}: cannot reach the endpoint ({}); check the region, `--endpoint-url` or aws.endpoint_url",
                causes(&err)
            ),
            SdkError::ServiceError(service) => anyhow::anyhow!(
                "ELBv2 {action}: the endpoint answered HTTP {} with something that is not an ELBv2 response; check `--endpoint-url` or aws.endpoint_url",
                service.raw().status().as_u16()
            ),
            _ => anyhow::anyhow!("ELBv2 {action} failed: {}", DisplayErrorContext(&err)),
        },
    }
}

/// An error's causes, each once, joined: `dispatch failure: io error: ...`.
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = current {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = cause.source();
    }
    parts.join(": ")
}

/// How long the caller identity may take before the local user is used.
pub const WHO_TIMEOUT: Duration = Duration::from_millis(700);

/// "Who" for the journal: the STS caller ARN when STS answers quickly, else
/// the local operator ([`operator_name`]).
pub async fn caller_identity(config: &SdkConfig, verbose: bool) -> String {
    let sts = aws_sdk_sts::Client::new(config);
    let started = Instant::now();
    let answer = tokio::time::timeout(WHO_TIMEOUT, sts.get_caller_identity().send()).await;
    let who = match &answer {
        Ok(Ok(identity)) => identity.arn().map(str::to_owned),
        _ => None,
    };
    if verbose {
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        let outcome = match (&answer, &who) {
            (_, Some(arn)) => arn.clone(),
            (Err(_), None) => "timed out; the journal names the local user".to_owned(),
            (Ok(_), None) => "no answer; the journal names the local user".to_owned(),
        };
        eprintln!("migrate: sts GetCallerIdentity {millis:.1} ms ({outcome})");
    }
    who.unwrap_or_else(operator_name)
}

/// The local operator, `user@hostname`: [`local_user`], and when neither
/// `USER` nor `LOGNAME` is set (CI, containers) the login name of this
/// process's user id, from /etc/passwd (`uid1234` when it has no entry).
pub fn operator_name() -> String {
    let user = local_user();
    match (user.strip_prefix("unknown@"), login_name()) {
        (Some(host), Some(login)) => format!("{login}@{host}"),
        _ => user,
    }
}

/// The login name of this process's user id (Linux: the owner of /proc/self).
fn login_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse::<u32>().ok()? == uid && !name.is_empty()).then(|| name.to_owned())
    });
    Some(name.unwrap_or_else(|| format!("uid{uid}")))
}

/// `$USER@hostname`.
pub fn local_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", hostname())
}

/// This machine's host name.
pub fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        return "localhost".into();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use elbv2::operation::set_rule_priorities::SetRulePrioritiesError;

    fn service_error(code: &str, status: u16) -> SdkError<SetRulePrioritiesError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("not allowed")
            .build();
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(SetRulePrioritiesError::generic(meta), raw)
    }

    #[test]
    fn the_login_name_is_the_users_of_this_process() {
        let id = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let expected = String::from_utf8(id.stdout).unwrap().trim().to_owned();
        assert_eq!(login_name().as_deref(), Some(expected.as_str()));
    }

    #[test]
    fn access_denied_names_the_refused_iam_action() {
        let err = explain("SetRulePriorities", service_error("AccessDenied", 403));
        assert_eq!(
            err.to_string(),
            "ELBv2 SetRulePriorities was refused: the caller lacks the IAM permission `elasticloadbalancing:SetRulePriorities` (not allowed)"
        );
        let other = explain("SetRulePriorities", service_error("ValidationError", 400));
        assert_eq!(
            other.to_string(),
            "ELBv2 SetRulePriorities failed: ValidationError: not allowed"
        );
    }

    #[test]
    fn plain_and_single_group_forwards_are_the_same_forward() {
        let tg = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/users/a";
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(tg)
            .build();
        let tuple = TargetGroupTuple::builder()
            .target_group_arn(tg)
            .weight(1)
            .build();
        let configured = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(tg)
            .forward_config(ForwardActionConfig::builder().target_groups(tuple).build())
            .build();
        let expected = Forward::Plain {
            target_group: tg.to_owned(),
        };
        assert_eq!(forward_of(&[plain]), expected);
        assert_eq!(forward_of(&[configured]), expected);
        let written = sdk_action(&Forward::for_percent(10, tg, "mono")).unwrap();
        assert_eq!(forward_of(&[written]), Forward::for_percent(10, tg, "mono"));
    }
}
