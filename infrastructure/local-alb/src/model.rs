//! The load balancer's configuration, as the ELBv2 API sees it.
//!
//! This is the one shape shared by every part of the local ALB:
//! - the stack file is parsed into a [`State`] (see `stack`),
//! - the control plane reads and changes a [`State`] (see `control`),
//! - the state directory persists a [`State`] as JSON (see `persist`),
//! - the data plane compiles a [`State`] into an immutable routing table
//!   (see `dataplane`), swapped atomically after every accepted change.
//!
//! Everything here is plain data: no I/O, no clocks, no locks. Runtime facts that
//! are not configuration (target health, metrics) live elsewhere and are never
//! persisted.

use serde::{Deserialize, Serialize};

/// Everything the local ALB is configured with. Serialized as the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Region used in ARNs, for example `us-east-1`.
    pub region: String,
    /// Twelve-digit account id used in ARNs, for example `000000000000`.
    pub account_id: String,
    pub load_balancers: Vec<LoadBalancer>,
    pub listeners: Vec<Listener>,
    pub target_groups: Vec<TargetGroup>,
    /// Every rule of every listener, including each listener's default rule
    /// (`priority == Priority::Default`), whose actions are the listener's
    /// default actions.
    pub rules: Vec<Rule>,
    /// Monotonic counter used to mint unique ARN suffixes.
    pub next_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// `arn:aws:elasticloadbalancing:{region}:{account}:loadbalancer/app/{name}/{16 hex}`
    pub arn: String,
    pub name: String,
    /// For example `{name}-{id}.{region}.elb.localhost`.
    pub dns_name: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    /// ISO 8601, for example `2026-11-26T04:02:41.000Z`.
    pub created_time: String,
    #[serde(default)]
    pub tags: Tags,
    /// `DescribeLoadBalancerAttributes`; absent in older state files (AWS's
    /// defaults then).
    #[serde(default)]
    pub attributes: LoadBalancerAttributes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// `arn:aws:elasticloadbalancing:{region}:{account}:listener/app/{lb name}/{lb id}/{16 hex}`
    pub arn: String,
    pub load_balancer_arn: String,
    /// The port clients connect to, as declared (the data plane may be bound to
    /// another port when the operator overrides the listen address).
    pub port: u16,
    /// Always `HTTP` locally.
    pub protocol: String,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// A numbered rule, 1..=50000; lower numbers are evaluated first.
    Number(u32),
    /// The listener's default rule, evaluated last; shown as `default`.
    Default,
}

impl Priority {
    /// The string the ELBv2 API uses: `"7"` or `"default"`.
    pub fn as_api_string(&self) -> String {
        match self {
            Priority::Number(n) => n.to_string(),
            Priority::Default => "default".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `arn:aws:elasticloadbalancing:{region}:{account}:listener-rule/app/{lb name}/{lb id}/{listener id}/{16 hex}`
    pub arn: String,
    pub listener_arn: String,
    pub priority: Priority,
    /// Empty for the default rule.
    pub conditions: Vec<Condition>,
    /// At least one action; the last one (by `order`) is terminal.
    pub actions: Vec<Action>,
    #[serde(default)]
    pub tags: Tags,
}

impl Rule {
    pub fn is_default(&self) -> bool {
        self.priority == Priority::Default
    }
}

/// One rule condition. Several conditions on one rule are ANDed; the values
/// inside one condition are ORed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum Condition {
    /// Case-sensitive glob over the path only (`*` any run, `?` one char).
    PathPattern { values: Vec<String> },
    /// Case-insensitive glob over the Host header (port stripped).
    HostHeader { values: Vec<String> },
    /// Exact, case-sensitive method names.
    HttpRequestMethod { values: Vec<String> },
    /// Header name case-insensitive, value case-insensitive glob.
    HttpHeader { name: String, values: Vec<String> },
    /// Key/value globs over the decoded query string; a pair matches when
    /// some query parameter matches both (a missing key matches any key).
    QueryString { values: Vec<QueryPair> },
    /// CIDR blocks matched against the client address.
    SourceIp { values: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPair {
    pub key: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// AWS's `Order` (1..=50000); actions run in ascending order.
    pub order: Option<u32>,
    pub kind: ActionKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ActionKind {
    /// Forward to one or more target groups. A plain forward (`TargetGroupArn`)
    /// is stored as one target group with weight 1 and `plain = true`, so it is
    /// described back the way it was written.
    Forward {
        target_groups: Vec<WeightedTargetGroup>,
        /// True when written as a bare `TargetGroupArn`.
        plain: bool,
        stickiness_enabled: bool,
        stickiness_duration_seconds: Option<u32>,
    },
    FixedResponse {
        status_code: String,
        content_type: Option<String>,
        message_body: Option<String>,
    },
    Redirect {
        protocol: Option<String>,
        host: Option<String>,
        port: Option<String>,
        path: Option<String>,
        query: Option<String>,
        /// `HTTP_301` or `HTTP_302`.
        status_code: String,
    },
}

/// A redirect action's URL parts with ALB's defaults for the ones left out:
/// `[protocol, host, port, path, query]`.
pub fn redirect_parts(
    protocol: &Option<String>,
    host: &Option<String>,
    port: &Option<String>,
    path: &Option<String>,
    query: &Option<String>,
) -> [String; 5] {
    let or =
        |value: &Option<String>, default: &str| value.clone().unwrap_or_else(|| default.to_owned());
    [
        or(protocol, "#{protocol}"),
        or(host, "#{host}"),
        or(port, "#{port}"),
        or(path, "/#{path}"),
        or(query, "#{query}"),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedTargetGroup {
    pub target_group_arn: String,
    /// 0..=999; weight 0 receives no traffic.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    /// `arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/{name}/{16 hex}`
    pub arn: String,
    pub name: String,
    /// Always `HTTP` locally.
    pub protocol: String,
    /// Default port for targets registered without one.
    pub port: u16,
    /// `ip` (targets are `host`/`port` pairs).
    pub target_type: String,
    pub health_check: HealthCheck,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub tags: Tags,
    /// `DescribeTargetGroupAttributes`; absent in older state files (AWS's
    /// defaults then).
    #[serde(default)]
    pub attributes: TargetGroupAttributes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub path: String,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// HTTP codes that count as healthy, AWS syntax: `200`, `200,204`, `200-299`.
    pub matcher: String,
}

/// A load balancer's attributes (`ModifyLoadBalancerAttributes`), typed.
/// Keys, ranges and defaults are AWS's; `attributes.rs` reads and writes
/// them by key. Keys that are stored and returned but change nothing locally
/// (connection logs, WAF, zonal shift, ...) are kept as text in `other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadBalancerAttributes {
    /// `deletion_protection.enabled` (false).
    pub deletion_protection: bool,
    /// `access_logs.s3.enabled` (false), `.bucket` and `.prefix` ("").
    pub access_logs_enabled: bool,
    pub access_logs_bucket: String,
    pub access_logs_prefix: String,
    /// `idle_timeout.timeout_seconds` (1-4000). `None`: the process default
    /// (`--client-idle-timeout`, 60 s as on AWS).
    pub idle_timeout_seconds: Option<u32>,
    /// `client_keep_alive.seconds` (60-604800; 3600). The head policy's
    /// attributes (this one to `preserve_host_header`) are `None` while
    /// unset: Describe answers AWS's default, the data plane the process's
    /// (`HeadPolicy::with_attributes`); once set, even to AWS's default, the
    /// value wins.
    pub client_keep_alive_seconds: Option<u32>,
    /// `routing.http.desync_mitigation_mode` (defensive).
    pub desync_mitigation_mode: Option<DesyncMitigationMode>,
    /// `routing.http.drop_invalid_header_fields.enabled` (false).
    pub drop_invalid_header_fields: Option<bool>,
    /// `routing.http.xff_header_processing.mode` (append).
    pub xff_header_processing_mode: Option<XffHeaderProcessingMode>,
    /// `routing.http.preserve_host_header.enabled` (false).
    pub preserve_host_header: Option<bool>,
    /// `routing.http2.enabled` (true).
    pub http2_enabled: bool,
    /// Other recognised keys whose value was changed, by key.
    pub other: std::collections::BTreeMap<String, String>,
}

impl Default for LoadBalancerAttributes {
    fn default() -> Self {
        LoadBalancerAttributes {
            deletion_protection: false,
            access_logs_enabled: false,
            access_logs_bucket: String::new(),
            access_logs_prefix: String::new(),
            idle_timeout_seconds: None,
            client_keep_alive_seconds: None,
            desync_mitigation_mode: None,
            drop_invalid_header_fields: None,
            xff_header_processing_mode: None,
            preserve_host_header: None,
            http2_enabled: true,
            other: Default::default(),
        }
    }
}

impl LoadBalancerAttributes {
    /// AWS's defaults of the head policy's attributes, what Describe answers
    /// for those unset.
    pub const AWS_CLIENT_KEEP_ALIVE_SECONDS: u32 = 3600;
    pub const AWS_DESYNC_MITIGATION_MODE: DesyncMitigationMode = DesyncMitigationMode::Defensive;
    pub const AWS_XFF_HEADER_PROCESSING_MODE: XffHeaderProcessingMode =
        XffHeaderProcessingMode::Append;

    /// A state file of format 1 could not say "unset": each head policy
    /// attribute was stored with AWS's default, and a value equal to it meant
    /// unset (the process's default applied). Read so, as unset.
    pub fn unset_format_1_defaults(&mut self) {
        fn unset<T: PartialEq>(value: &mut Option<T>, aws: T) {
            if value.as_ref() == Some(&aws) {
                *value = None;
            }
        }
        unset(
            &mut self.client_keep_alive_seconds,
            Self::AWS_CLIENT_KEEP_ALIVE_SECONDS,
        );
        unset(
            &mut self.desync_mitigation_mode,
            Self::AWS_DESYNC_MITIGATION_MODE,
        );
        unset(&mut self.drop_invalid_header_fields, false);
        unset(
            &mut self.xff_header_processing_mode,
            Self::AWS_XFF_HEADER_PROCESSING_MODE,
        );
        unset(&mut self.preserve_host_header, false);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesyncMitigationMode {
    /// Every request the data plane can frame is forwarded.
    Monitor,
    /// AWS's default: severe requests refused (400); ambiguous ones
    /// forwarded, then both connections closed.
    Defensive,
    /// Only compliant requests are forwarded; the rest get 400.
    Strictest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XffHeaderProcessingMode {
    /// AWS's default: the client's address is appended to what came.
    Append,
    /// The header goes on as it came (none added when there was none).
    Preserve,
    /// The header is removed.
    Remove,
}

/// A target group's attributes (`ModifyTargetGroupAttributes`), typed; as
/// [`LoadBalancerAttributes`], keys that change nothing locally are in
/// `other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetGroupAttributes {
    /// `deregistration_delay.timeout_seconds` (0-3600). `None`: the process
    /// default (`--deregistration-delay`; 5 s locally, AWS's is 300).
    pub deregistration_delay_seconds: Option<u32>,
    /// `slow_start.duration_seconds` (0 = off, or 30-900).
    pub slow_start_seconds: u32,
    /// `load_balancing.algorithm.type` (round_robin).
    pub algorithm: LoadBalancingAlgorithm,
    /// `stickiness.enabled` (false); `stickiness.type` is `lb_cookie`.
    pub stickiness_enabled: bool,
    /// `stickiness.lb_cookie.duration_seconds` (1-604800; 86400).
    pub stickiness_duration_seconds: u32,
    /// Other recognised keys whose value was changed, by key.
    pub other: std::collections::BTreeMap<String, String>,
}

impl Default for TargetGroupAttributes {
    fn default() -> Self {
        TargetGroupAttributes {
            deregistration_delay_seconds: None,
            slow_start_seconds: 0,
            algorithm: LoadBalancingAlgorithm::RoundRobin,
            stickiness_enabled: false,
            stickiness_duration_seconds: 86_400,
            other: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancingAlgorithm {
    RoundRobin,
    LeastOutstandingRequests,
    WeightedRandom,
}

/// A registered target. Locally `id` is a host name or IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub port: u16,
}

/// Tags in insertion order; keys are unique.
pub type Tags = Vec<Tag>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl State {
    pub fn listener(&self, arn: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.arn == arn)
    }

    pub fn target_group(&self, arn: &str) -> Option<&TargetGroup> {
        self.target_groups.iter().find(|t| t.arn == arn)
    }

    pub fn rule(&self, arn: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.arn == arn)
    }

    /// The rules of one listener in evaluation order: numbered rules by
    /// ascending priority, then the default rule.
    pub fn rules_of(&self, listener_arn: &str) -> Vec<&Rule> {
        let mut rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.listener_arn == listener_arn)
            .collect();
        rules.sort_by_key(|r| r.priority);
        rules
    }
}

/// What kind of resource an ELBv2 ARN names, read from its resource part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    LoadBalancer,
    Listener,
    Rule,
    TargetGroup,
}

impl ResourceKind {
    /// Classifies an ARN by its resource prefix (`loadbalancer/`, `listener/`,
    /// `listener-rule/`, `targetgroup/`); `None` when it is none of these.
    pub fn of_arn(arn: &str) -> Option<ResourceKind> {
        let resource = arn.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
        if resource.starts_with("loadbalancer/") {
            Some(ResourceKind::LoadBalancer)
        } else if resource.starts_with("listener-rule/") {
            Some(ResourceKind::Rule)
        } else if resource.starts_with("listener/") {
            Some(ResourceKind::Listener)
        } else if resource.starts_with("targetgroup/") {
            Some(ResourceKind::TargetGroup)
        } else {
            None
        }
    }
}

impl State {
    pub fn load_balancer(&self, arn: &str) -> Option<&LoadBalancer> {
        self.load_balancers.iter().find(|l| l.arn == arn)
    }

    pub fn target_group_by_name(&self, name: &str) -> Option<&TargetGroup> {
        self.target_groups.iter().find(|t| t.name == name)
    }

    /// The ARN prefix shared by every resource: `arn:aws:elasticloadbalancing:{region}:{account}:`.
    pub fn arn_prefix(&self) -> String {
        format!(
            "arn:aws:elasticloadbalancing:{}:{}:",
            self.region, self.account_id
        )
    }

    /// Mints a fresh 16-hex-digit resource id (as in AWS ARNs) from `next_id`.
    /// Deterministic: the same state mints the same ids, so rebuilding from the
    /// stack file reproduces the same ARNs.
    pub fn mint_id(&mut self) -> String {
        let counter = self.next_id;
        self.next_id += 1;
        // SplitMix64 scrambles the counter so ids look like AWS's, yet stay unique
        // (the mix is a bijection on u64).
        let mut z = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("{:016x}", z ^ (z >> 31))
    }

    /// The tags of the resource `arn` names, if it exists.
    pub fn tags_of(&self, arn: &str) -> Option<&Tags> {
        match ResourceKind::of_arn(arn)? {
            ResourceKind::LoadBalancer => self.load_balancer(arn).map(|r| &r.tags),
            ResourceKind::Listener => self.listener(arn).map(|r| &r.tags),
            ResourceKind::Rule => self.rule(arn).map(|r| &r.tags),
            ResourceKind::TargetGroup => self.target_group(arn).map(|r| &r.tags),
        }
    }

    /// Mutable access to the tags of the resource `arn` names, if it exists.
    pub fn tags_of_mut(&mut self, arn: &str) -> Option<&mut Tags> {
        match ResourceKind::of_arn(arn)? {
            ResourceKind::LoadBalancer => self
                .load_balancers
                .iter_mut()
                .find(|r| r.arn == arn)
                .map(|r| &mut r.tags),
            ResourceKind::Listener => self
                .listeners
                .iter_mut()
                .find(|r| r.arn == arn)
                .map(|r| &mut r.tags),
            ResourceKind::Rule => self
                .rules
                .iter_mut()
                .find(|r| r.arn == arn)
                .map(|r| &mut r.tags),
            ResourceKind::TargetGroup => self
                .target_groups
                .iter_mut()
                .find(|r| r.arn == arn)
                .map(|r| &mut r.tags),
        }
    }

    /// Load balancers whose listeners forward to the target group `arn`
    /// (by any rule, including default rules), in declaration order.
    pub fn load_balancers_using(&self, target_group_arn: &str) -> Vec<&str> {
        self.load_balancers
            .iter()
            .filter(|lb| {
                self.rules.iter().any(|rule| {
                    self.listener(&rule.listener_arn)
                        .is_some_and(|l| l.load_balancer_arn == lb.arn)
                        && rule.actions.iter().any(|a| a.forwards_to(target_group_arn))
                })
            })
            .map(|lb| lb.arn.as_str())
            .collect()
    }
}

impl Action {
    /// True when this is a forward action that includes the target group `arn`.
    pub fn forwards_to(&self, target_group_arn: &str) -> bool {
        match &self.kind {
            ActionKind::Forward { target_groups, .. } => target_groups
                .iter()
                .any(|t| t.target_group_arn == target_group_arn),
            _ => false,
        }
    }
}
