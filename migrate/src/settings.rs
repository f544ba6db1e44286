//! `migrate.toml`, layered: the file (cwd or `--config`), then `MIGRATE__...`
//! environment variables (`__` separates keys, e.g.
//! `MIGRATE__ROUTES__USERS__SERVICE_URL`), then command-line flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::usage;

/// The file looked for in the working directory when `--config` is absent.
pub const DEFAULT_FILE: &str = "migrate.toml";
/// The tag that marks the monolith's rule when no ARN or priority is configured.
pub const MONOLITH_TAG: (&str, &str) = ("ficus:role", "monolith");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The base URL of the load balancer that interval probes go to, e.g.
    /// `http://127.0.0.1:8080` locally or `http://<alb dns name>` on AWS.
    #[serde(default)]
    pub lb_url: Option<String>,
    /// The journal file; relative paths are resolved beside the config file.
    /// Default `.ficus/journal.jsonl`.
    #[serde(default)]
    pub journal: Option<PathBuf>,
    /// How long a lock lives without being refreshed. Default `5m`.
    #[serde(default = "default_lock_ttl", deserialize_with = "duration")]
    pub lock_ttl: Duration,
    /// The longest an accepted ELBv2 change may take to reach every load
    /// balancer node (AWS: seconds, unpublished). A step is done only this
    /// long after its write: its interval starts then, its metric gates
    /// judge only traffic after it, and a shift waits it out after its last
    /// step; `status` says "applied, reaching the data plane" until a period
    /// after it is counted, and a rollback's effect on the traffic is
    /// watched this long (plus 1 s). Default `10s`.
    #[serde(default = "default_propagation_max", deserialize_with = "duration")]
    pub propagation_max: Duration,
    #[serde(default)]
    pub aws: AwsSettings,
    pub listener: ListenerSettings,
    #[serde(default)]
    pub monolith: MonolithSettings,
    /// Metric gates' defaults for every route (`[metrics]`); a route's own
    /// `[routes.NAME.metrics]` overrides them key by key. docs/gates.md.
    #[serde(default)]
    pub metrics: MetricSettings,
    pub routes: BTreeMap<String, RouteSettings>,
    /// Where events go (`[[notify]]`, see docs/operations.md).
    #[serde(default)]
    pub notify: Vec<NotifySink>,
    /// The directory of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Overrides of the standard AWS chain; everything optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// Static credentials, meant for local endpoints (the local ALB's
    /// well-known key). Leave unset on AWS: the standard chain applies.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The listener: its ARN, or the load balancer's name and the listener's port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    pub arn: Option<String>,
    pub load_balancer: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonolithSettings {
    /// The monolith's own URL: `migrate verify`'s baseline.
    pub base_url: Option<String>,
    /// The monolith's rule by ARN (default: the rule tagged `ficus:role=monolith`).
    pub rule_arn: Option<String>,
    /// The monolith's rule by priority (default: by tag).
    pub rule_priority: Option<u32>,
    /// The monolith's target group, name or ARN (default: the one its rule forwards to).
    pub target_group: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// ALB path patterns, e.g. `["/api/users*"]`.
    pub paths: Vec<String>,
    /// Host patterns of the route's own (a `host-header` condition), for a
    /// monolith that serves several hosts: e.g. `["api.shop.example"]`.
    /// Default: none of its own; the monolith's rule's conditions other than
    /// the path are copied into the route's rule when needed.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The service's target group, name or ARN.
    pub target_group: String,
    /// The service's own URL: `migrate verify`'s candidate.
    #[serde(default)]
    pub service_url: Option<String>,
    #[serde(default)]
    pub verify: parity::VerifySpec,
    /// The priority of the route's rule in front of the monolith's rule
    /// (e.g. 1): must be below the monolith's rule's and free. `migrate init`
    /// parks the rule at monolith + this and records that slot on the rule.
    /// Required by `init`, `plan` and `shift`.
    #[serde(default, deserialize_with = "whole_priority")]
    pub priority: Option<u32>,
    /// Default steps of `migrate shift`, in percent. Default `[100]`.
    #[serde(default = "default_steps")]
    pub steps: Vec<u8>,
    /// Default time between steps, e.g. `30s`.
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// The largest tolerated error ratio of the probes during an interval.
    #[serde(default = "default_error_budget")]
    pub error_budget: f64,
    /// Paths probed through `lb_url` during intervals. Default: the path
    /// patterns without their wildcards.
    #[serde(default)]
    pub probe_paths: Vec<String>,
    /// The Host header of the probes, when the route's rule has a host
    /// condition. Default: the rule's first host without wildcards.
    #[serde(default)]
    pub probe_host: Option<String>,
    /// Probe requests per second during intervals.
    #[serde(default = "default_probe_rate")]
    pub probe_rate: f64,
    /// How often the service's target health is read during an interval, e.g.
    /// `1s`; a target that stops being healthy fails the step at once.
    #[serde(default = "default_health_poll", deserialize_with = "duration")]
    pub health_poll: Duration,
    /// Probes needed before the error budget can fail a step early.
    #[serde(default = "default_min_probes")]
    pub min_probes: u32,
    /// Let a step proceed while some targets are unhealthy (at least one must
    /// be healthy, always).
    #[serde(default)]
    pub allow_unhealthy: bool,
    /// The team's own gates and hooks (`[[routes.NAME.gates]]`, see
    /// docs/operations.md).
    #[serde(default)]
    pub gates: Vec<GateSettings>,
    /// The route's own metric gate settings, over `[metrics]`.
    #[serde(default)]
    pub metrics: MetricSettings,
    /// Group-level stickiness of the weighted steps of a shift, e.g. `10m`
    /// (1 s to 7 days, AWS's range): each client stays on the side it was
    /// sent to for this long. Default: none. `migrate shift --sticky` wins.
    #[serde(default, deserialize_with = "sticky")]
    pub sticky: Option<Duration>,
    /// How the monolith reads a path (`[routes.NAME.monolith_paths]`): which
    /// spellings of the route's paths it serves though the ALB's
    /// case-sensitive patterns miss them (`migrate leaks`).
    #[serde(default)]
    pub monolith_paths: MonolithPaths,
}

/// How the monolith's router reads a path, each reading on or off. The
/// defaults are the forum's router (koa-router): case-insensitive, one
/// optional trailing slash, no collapsing of repeated slashes, and
/// percent-decoding only inside parameters (so not of the literal segments
/// the patterns name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonolithPaths {
    /// `/API/Users/1` is `/api/users/1`. Default true.
    pub case_insensitive: bool,
    /// `/api/users/1/` is `/api/users/1`. Default true.
    pub trailing_slash: bool,
    /// `/api//users/1` is `/api/users/1`. Default false.
    pub repeated_slashes: bool,
    /// `/api/%75sers/1` is `/api/users/1` (percent-encoded unreserved
    /// characters, RFC 3986 §2.3). Default false.
    pub percent_decoding: bool,
}

impl Default for MonolithPaths {
    fn default() -> Self {
        MonolithPaths {
            case_insensitive: true,
            trailing_slash: true,
            repeated_slashes: false,
            percent_decoding: false,
        }
    }
}

impl RouteSettings {
    /// `sticky` in whole seconds, as the ELBv2 API takes it.
    pub fn sticky_seconds(&self) -> Option<u32> {
        self.sticky.map(|d| d.as_secs() as u32)
    }
}

/// The longest group-level stickiness AWS accepts (7 days).
pub const MAX_STICKY: Duration = Duration::from_secs(604_800);

/// Checks a stickiness duration: whole seconds from 1 s to 7 days.
pub fn check_sticky(duration: Duration) -> Result<Duration, String> {
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "stickiness of {} is not a whole number of seconds (AWS takes DurationSeconds): use, e.g., 2s or 10m",
            humantime::format_duration(duration)
        ));
    }
    if duration < Duration::from_secs(1) || duration > MAX_STICKY {
        return Err(format!(
            "stickiness of {}s is outside AWS's range: use whole seconds from 1s to 7d (604800s), such as 10m",
            duration.as_secs()
        ));
    }
    Ok(duration)
}

fn sticky<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let duration = duration(deserializer)?;
    check_sticky(duration)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// The metric gates' settings as written: `[metrics]` and
/// `[routes.NAME.metrics]`, every key optional. [`Settings::metric_gates`]
/// layers them over the defaults into a [`MetricGates`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSettings {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "some_duration")]
    pub period: Option<Duration>,
    pub min_requests: Option<u64>,
    pub error_budget: Option<f64>,
    pub latency_ratio: Option<f64>,
    #[serde(default, deserialize_with = "some_duration")]
    pub latency_allowance: Option<Duration>,
    pub elb_5xx_budget: Option<f64>,
    #[serde(default, deserialize_with = "some_duration")]
    pub max_wait: Option<Duration>,
    pub on_inconclusive: Option<OnInconclusive>,
}

/// What a step does when its metric gates stay inconclusive (too few
/// requests) for `max_wait` after its interval. Only `fail` for now: a step
/// never passes on no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnInconclusive {
    Fail,
}

impl<'de> Deserialize<'de> for OnInconclusive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "fail" => Ok(OnInconclusive::Fail),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not supported; use \"fail\" (a step whose metrics stay inconclusive fails and is rolled back: it never passes on no data)"
            ))),
        }
    }
}

/// One route's metric gates, every value decided (docs/gates.md has the why
/// of each default).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricGates {
    /// Whether the step waits for, and is judged by, CloudWatch metrics.
    pub enabled: bool,
    /// CloudWatch's period: 60 s on AWS (ALB metrics are per minute); 1 s on
    /// the local ALB.
    #[serde(with = "humantime_serde_secs")]
    pub period: Duration,
    /// Requests the service's target group must have answered in the window
    /// for a verdict; fewer is inconclusive.
    pub min_requests: u64,
    /// How much the service's 5XX ratio may exceed the monolith's.
    pub error_budget: f64,
    /// The service's p99 may be this many times the monolith's ...
    pub latency_ratio: f64,
    /// ... plus this.
    #[serde(with = "humantime_serde_secs")]
    pub latency_allowance: Duration,
    /// How much the load balancer's own 5XX ratio may rise over its ratio
    /// before the step.
    pub elb_5xx_budget: f64,
    /// How long after the interval a step waits for enough data.
    #[serde(with = "humantime_serde_secs")]
    pub max_wait: Duration,
    pub on_inconclusive: OnInconclusive,
}

/// Durations in evidence as seconds (`0.025`).
mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(
        value: &std::time::Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }
}

impl MetricSettings {
    /// Whether this table sets `field` itself.
    fn sets(&self, field: &str) -> bool {
        match field {
            "period" => self.period.is_some(),
            "min_requests" => self.min_requests.is_some(),
            "error_budget" => self.error_budget.is_some(),
            "elb_5xx_budget" => self.elb_5xx_budget.is_some(),
            "latency_ratio" => self.latency_ratio.is_some(),
            _ => false,
        }
    }

    /// `self`'s keys over `under`'s.
    fn over(&self, under: &MetricSettings) -> MetricSettings {
        MetricSettings {
            enabled: self.enabled.or(under.enabled),
            period: self.period.or(under.period),
            min_requests: self.min_requests.or(under.min_requests),
            error_budget: self.error_budget.or(under.error_budget),
            latency_ratio: self.latency_ratio.or(under.latency_ratio),
            latency_allowance: self.latency_allowance.or(under.latency_allowance),
            elb_5xx_budget: self.elb_5xx_budget.or(under.elb_5xx_budget),
            max_wait: self.max_wait.or(under.max_wait),
            on_inconclusive: self.on_inconclusive.or(under.on_inconclusive),
        }
    }

    /// The settings with every default filled in.
    fn resolve(&self) -> MetricGates {
        MetricGates {
            enabled: self.enabled.unwrap_or(true),
            period: self.period.unwrap_or(Duration::from_secs(60)),
            min_requests: self.min_requests.unwrap_or(50),
            error_budget: self.error_budget.unwrap_or(0.01),
            latency_ratio: self.latency_ratio.unwrap_or(1.5),
            latency_allowance: self.latency_allowance.unwrap_or(Duration::from_millis(25)),
            elb_5xx_budget: self.elb_5xx_budget.unwrap_or(0.001),
            max_wait: self.max_wait.unwrap_or(Duration::from_secs(300)),
            on_inconclusive: self.on_inconclusive.unwrap_or(OnInconclusive::Fail),
        }
    }
}

impl MetricGates {
    /// Checks the values: the first problem, with the key it is about.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let secs = self.period.as_secs();
        let whole = self.period.subsec_nanos() == 0;
        if !whole
            || !(matches!(secs, 1 | 5 | 10 | 20 | 30) || (secs > 0 && secs.is_multiple_of(60)))
        {
            return Err((
                "period",
                format!(
                    "{} is not a CloudWatch period; use 1s, 5s, 10s, 20s, 30s or a multiple of 60s (AWS publishes ALB metrics per 60s)",
                    humantime::format_duration(self.period)
                ),
            ));
        }
        if self.min_requests == 0 {
            return Err((
                "min_requests",
                "0 would let a step pass on no data; use 1 or more".to_owned(),
            ));
        }
        for (name, ratio) in [
            ("error_budget", self.error_budget),
            ("elb_5xx_budget", self.elb_5xx_budget),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err((
                    name,
                    format!("{ratio} is not a ratio between 0 and 1 (0.01 is 1%)"),
                ));
            }
        }
        if !(self.latency_ratio >= 1.0 && self.latency_ratio.is_finite()) {
            return Err((
                "latency_ratio",
                format!(
                    "{} must be 1 or more (1.5: the service's p99 may be 1.5 times the monolith's)",
                    self.latency_ratio
                ),
            ));
        }
        Ok(())
    }
}

/// How much an event matters; sinks take events from their `min_severity` up.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

/// The body a webhook sink posts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum NotifyFormat {
    /// The event itself (`ficus.event/v1`).
    #[default]
    Json,
    /// `{"text": "..."}`, what Slack-compatible incoming webhooks accept.
    Slack,
}

/// One `[[notify]]` sink: a webhook (`url`) or an SNS topic (`sns_topic_arn`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySink {
    /// POST each event here.
    #[serde(default)]
    pub url: Option<String>,
    /// Publish each event to this SNS topic (same AWS settings as ELBv2).
    #[serde(default)]
    pub sns_topic_arn: Option<String>,
    /// The least severity delivered. Default `info` (everything).
    #[serde(default)]
    pub min_severity: Severity,
    /// `json` (default) or `slack` (webhooks only).
    #[serde(default)]
    pub format: NotifyFormat,
    /// The environment variable holding the HMAC-SHA256 key that signs a
    /// webhook's body (`X-Ficus-Signature: sha256=<hex>`).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// How long one attempt may take. Default `5s`.
    #[serde(default = "default_notify_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Attempts after the first failed one. Default 2.
    #[serde(default = "default_notify_retries")]
    pub retries: u32,
}

impl NotifySink {
    /// The sink as messages name it: its URL's host and path, or its topic.
    pub fn label(&self) -> String {
        match (&self.url, &self.sns_topic_arn) {
            (Some(url), _) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                // Never print a query string: webhook URLs often carry tokens.
                rest.split(['?', '#']).next().unwrap_or(rest).to_owned()
            }
            (None, Some(topic)) => format!("sns {topic}"),
            (None, None) => "no sink".to_owned(),
        }
    }
}

/// When a custom gate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum GatePhase {
    /// Once, before a shift's first write.
    BeforeShift,
    /// Before every step, after the built-in gates passed.
    Step,
    /// Before the step to 100%.
    BeforeFull,
    /// After a rollback moved the route back: a hook, its verdict only reported.
    AfterRollback,
}

impl GatePhase {
    pub fn name(self) -> &'static str {
        match self {
            GatePhase::BeforeShift => "before-shift",
            GatePhase::Step => "step",
            GatePhase::BeforeFull => "before-full",
            GatePhase::AfterRollback => "after-rollback",
        }
    }
}

/// What a gate that timed out counts as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum OnTimeout {
    #[default]
    Fail,
    Pass,
}

/// One `[[routes.NAME.gates]]`: a webhook (`url`) or a `command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSettings {
    pub name: String,
    pub phase: GatePhase,
    /// POST of the event JSON; a 2xx answer passes.
    #[serde(default)]
    pub url: Option<String>,
    /// A program and its arguments (no shell); exit 0 passes.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Default `30s`; a command's whole process group is killed then.
    #[serde(default = "default_gate_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Report the verdict, never fail the step.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_lock_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_propagation_max() -> Duration {
    Duration::from_secs(10)
}
fn default_steps() -> Vec<u8> {
    vec![100]
}
fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_error_budget() -> f64 {
    0.01
}
fn default_probe_rate() -> f64 {
    5.0
}
fn default_health_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_min_probes() -> u32 {
    10
}
fn default_notify_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_notify_retries() -> u32 {
    2
}
fn default_gate_timeout() -> Duration {
    Duration::from_secs(30)
}

fn some_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    alb::duration::parse(&text).map_err(serde::de::Error::custom)
}

/// A priority: a whole number (`10`, or `"10"` from an environment
/// variable); `10.5` is refused rather than rounded.
fn whole_priority<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number from 1 to 50000")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::custom(format!("{v} is not between 1 and 50000")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::custom(format!("{v} is not between 1 and 50000")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u32, E> {
            Err(E::custom(format!(
                "{v} is not a whole number; priorities are integers like 10"
            )))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u32, E> {
            v.trim().parse().map_err(|_| {
                E::custom(format!(
                    "`{v}` is not a whole number; priorities are integers like 10"
                ))
            })
        }
    }
    deserializer.deserialize_any(Whole).map(Some)
}

/// Command-line overrides, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// "the variable MIGRATE__PROPAGATION_MAX" when the key a problem names
/// (`for key `propagation_max``, or a leading `` `routes.users.steps`: ``)
/// was set by its `MIGRATE__...` variable, which wins over the file: the
/// message then names where the value came from, not `migrate.toml`.
fn variable_of_problem(problem: &str) -> Option<String> {
    let key = match problem.split_once("for key `") {
        Some((_, rest)) => rest.split('`').next()?,
        None => problem.strip_prefix('`')?.split('`').next()?,
    };
    if key.is_empty() || key.contains('[') {
        return None;
    }
    let variable = format!("MIGRATE__{}", key.to_uppercase().replace('.', "__"));
    std::env::var_os(&variable).map(|_| format!("the variable {variable}"))
}

/// The `config` crate writes the key of an array element's field without its
/// dot (`routes.users.gates[0]phase`); TOML readers expect
/// `routes.users.gates[0].phase`.
fn dotted_key(message: &str) -> String {
    let Some(start) = message.find("for key `") else {
        return message.to_string();
    };
    let (head, key) = message.split_at(start);
    let mut out = String::with_capacity(message.len() + 4);
    out.push_str(head);
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']'
            && chars
                .peek()
                .is_some_and(|next| next.is_alphanumeric() || *next == '_')
        {
            out.push('.');
        }
    }
    out
}

impl Settings {
    /// Loads, layers and validates the settings. Every failure is a usage error
    /// (exit 2) naming the file and, where known, the key.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Settings> {
        let path = match &overrides.config {
            Some(path) => path.clone(),
            None => PathBuf::from(DEFAULT_FILE),
        };
        if !path.is_file() {
            return Err(usage(format!(
                "no settings file at {}; run migrate in the directory of migrate.toml or pass `--config FILE`",
                path.display()
            )));
        }
        let layered = config::Config::builder()
            .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml))
            .add_source(environment())
            .build()
            .and_then(|built| built.try_deserialize::<Settings>())
            .map_err(|err| {
                let problem = dotted_key(err.to_string().trim_end());
                if let Some(variable) = variable_of_problem(&problem) {
                    let problem = problem.replace(" in the environment", "");
                    return usage(format!("{variable}: {problem}"));
                }
                let layered = std::env::vars().any(|(name, _)| name.starts_with("MIGRATE__"));
                let note = if layered {
                    " (MIGRATE__* environment variables are layered over the file)"
                } else {
                    ""
                };
                usage(format!("{}: {problem}{note}", path.display()))
            })?;
        let mut settings = layered;
        settings.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        if let Some(profile) = &overrides.profile {
            settings.aws.profile = Some(profile.clone());
        }
        if let Some(region) = &overrides.region {
            settings.aws.region = Some(region.clone());
        }
        if let Some(endpoint) = &overrides.endpoint_url {
            settings.aws.endpoint_url = Some(endpoint.clone());
        }
        settings.validate().map_err(|problem| {
            let source =
                variable_of_problem(&problem).unwrap_or_else(|| path.display().to_string());
            usage(format!("{source}: {problem}"))
        })?;
        Ok(settings)
    }

    /// Checks what serde cannot: returns the first problem, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        let listener = &self.listener;
        if listener.arn.is_none() && (listener.load_balancer.is_none() || listener.port.is_none()) {
            return Err("`listener`: set `arn`, or both `load_balancer` (name) and `port`".into());
        }
        if self.routes.is_empty() {
            return Err("`routes`: no route; add a `[routes.NAME]` table".into());
        }
        for (name, route) in &self.routes {
            let key = format!("routes.{name}");
            if route.paths.is_empty() {
                return Err(format!(
                    "`{key}.paths`: empty; list the ALB path patterns, e.g. [\"/api/users*\"]"
                ));
            }
            if let Some(path) = route.paths.iter().find(|p| !p.starts_with('/')) {
                return Err(format!("`{key}.paths`: `{path}` must start with `/`"));
            }
            if route.target_group.trim().is_empty() {
                return Err(format!(
                    "`{key}.target_group`: empty; name the service's target group"
                ));
            }
            check_steps(&route.steps).map_err(|problem| format!("`{key}.steps`: {problem}"))?;
            if !(0.0..=1.0).contains(&route.error_budget) {
                return Err(format!(
                    "`{key}.error_budget`: {} is not a ratio between 0 and 1",
                    route.error_budget
                ));
            }
            if !(route.probe_rate > 0.0 && route.probe_rate <= 1000.0) {
                return Err(format!(
                    "`{key}.probe_rate`: {} is not between 0 and 1000 requests per second",
                    route.probe_rate
                ));
            }
            if route.health_poll < Duration::from_millis(100) {
                return Err(format!(
                    "`{key}.health_poll`: {} is too short; use 100ms or more",
                    humantime::format_duration(route.health_poll)
                ));
            }
            if let Some(host) = route
                .hosts
                .iter()
                .find(|h| h.is_empty() || h.len() > 128 || h.contains(['/', ' ', ':']))
            {
                return Err(format!(
                    "`{key}.hosts`: `{host}` is not a host pattern (1-128 characters, no `/`, `:` or spaces; `*` and `?` are wildcards)"
                ));
            }
            if route.priority.is_some_and(|p| p == 0 || p > 50_000) {
                return Err(format!("`{key}.priority`: must be between 1 and 50000"));
            }
            check_gates(&key, &route.gates)?;
            self.metric_gates(name)
                .check()
                .map_err(|(field, problem)| {
                    let table = if route.metrics.sets(field) {
                        format!("{key}.metrics")
                    } else {
                        "metrics".to_owned()
                    };
                    format!("`{table}.{field}`: {problem}")
                })?;
        }
        for (index, sink) in self.notify.iter().enumerate() {
            check_sink(&format!("notify[{index}]"), sink)?;
        }
        for (key, url) in self.urls() {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!(
                    "`{key}`: `{url}` is not an http:// or https:// URL"
                ));
            }
        }
        Ok(())
    }

    fn urls(&self) -> Vec<(String, Option<&String>)> {
        let mut urls = vec![
            ("lb_url".to_owned(), self.lb_url.as_ref()),
            (
                "monolith.base_url".to_owned(),
                self.monolith.base_url.as_ref(),
            ),
            (
                "aws.endpoint_url".to_owned(),
                self.aws.endpoint_url.as_ref(),
            ),
        ];
        for (name, route) in &self.routes {
            urls.push((
                format!("routes.{name}.service_url"),
                route.service_url.as_ref(),
            ));
            for (index, gate) in route.gates.iter().enumerate() {
                urls.push((
                    format!("routes.{name}.gates[{index}].url"),
                    gate.url.as_ref(),
                ));
            }
        }
        for (index, sink) in self.notify.iter().enumerate() {
            urls.push((format!("notify[{index}].url"), sink.url.as_ref()));
        }
        urls
    }

    /// The route's settings, or a usage error listing the known routes.
    pub fn route(&self, name: &str) -> anyhow::Result<&RouteSettings> {
        self.routes.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            usage(format!(
                "unknown route `{name}`; known routes: {}",
                known.join(", ")
            ))
        })
    }

    /// A route's metric gates: its `[routes.NAME.metrics]` over `[metrics]`
    /// over the defaults (an unknown route gets `[metrics]`'s).
    pub fn metric_gates(&self, route: &str) -> MetricGates {
        let own = self
            .routes
            .get(route)
            .map(|r| r.metrics.clone())
            .unwrap_or_default();
        own.over(&self.metrics).resolve()
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        let path = self
            .journal
            .clone()
            .unwrap_or_else(|| PathBuf::from(".ficus/journal.jsonl"));
        if path.is_absolute() {
            path
        } else {
            self.base_dir.join(path)
        }
    }
}

impl RouteSettings {
    /// The probe paths: configured, or the path patterns without wildcards.
    pub fn probe_paths(&self) -> Vec<String> {
        if !self.probe_paths.is_empty() {
            return self.probe_paths.clone();
        }
        self.paths
            .iter()
            .map(|pattern| pattern.split(['*', '?']).next().unwrap_or("/").to_owned())
            .map(|path| {
                if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                }
            })
            .collect()
    }
}

/// The list-valued keys of a route: comma-separated in environment variables,
/// e.g. `MIGRATE__ROUTES__USERS__STEPS=10,50,100`.
const LIST_KEYS: [&str; 4] = ["paths", "hosts", "steps", "probe_paths"];

/// `MIGRATE__...` variables (`__` separates keys); list keys split on commas.
///
/// The config crate splits EVERY variable on the separator when no list key is
/// registered, so the separator is only set when a list variable is present.
fn environment() -> config::Environment {
    let list_keys: Vec<String> = std::env::vars()
        .filter_map(|(name, _)| {
            let rest = name.strip_prefix("MIGRATE__")?;
            let key = rest.to_lowercase().replace("__", ".");
            let is_list = key.starts_with("routes.")
                && LIST_KEYS
                    .iter()
                    .any(|list| key.ends_with(&format!(".{list}")));
            is_list.then_some(key)
        })
        .collect();
    let mut environment = config::Environment::with_prefix("MIGRATE")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true);
    if !list_keys.is_empty() {
        environment = environment.list_separator(",");
        for key in &list_keys {
            environment = environment.with_list_parse_key(key);
        }
    }
    environment
}

/// One of a setting's words, or an error listing them all.
fn one_of<T: Copy>(what: &str, text: &str, words: &[(&str, T)]) -> Result<T, String> {
    words
        .iter()
        .find(|(word, _)| *word == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = words.iter().map(|(word, _)| *word).collect();
            format!("`{text}` is not {what}; use one of: {}", names.join(", "))
        })
}

impl TryFrom<String> for Severity {
    type Error = String;
    fn try_from(text: String) -> Result<Severity, String> {
        use Severity::*;
        let words = [("info", Info), ("warning", Warning), ("critical", Critical)];
        one_of("a severity", &text, &words)
    }
}

impl TryFrom<String> for NotifyFormat {
    type Error = String;
    fn try_from(text: String) -> Result<NotifyFormat, String> {
        let words = [("json", NotifyFormat::Json), ("slack", NotifyFormat::Slack)];
        one_of("a notification format", &text, &words)
    }
}

impl TryFrom<String> for GatePhase {
    type Error = String;
    fn try_from(text: String) -> Result<GatePhase, String> {
        use GatePhase::*;
        let words = [BeforeShift, Step, BeforeFull, AfterRollback].map(|p| (p.name(), p));
        one_of("a gate phase", &text, &words)
    }
}

impl TryFrom<String> for OnTimeout {
    type Error = String;
    fn try_from(text: String) -> Result<OnTimeout, String> {
        let words = [("fail", OnTimeout::Fail), ("pass", OnTimeout::Pass)];
        one_of("what a timed-out gate counts as", &text, &words)
    }
}

/// A route's custom gates: named uniquely, a `url` or a `command`, not both.
fn check_gates(route_key: &str, gates: &[GateSettings]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for (index, gate) in gates.iter().enumerate() {
        let key = format!("{route_key}.gates[{index}]");
        if gate.name.trim().is_empty() {
            return Err(format!(
                "`{key}.name`: empty; name the gate, e.g. \"contract-tests\""
            ));
        }
        if !names.insert(gate.name.as_str()) {
            return Err(format!(
                "`{key}.name`: `{}` names two gates of the route; give each its own name",
                gate.name
            ));
        }
        match (&gate.url, &gate.command) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "`{key}`: both `url` and `command`; a gate is one or the other"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "`{key}`: neither `url` nor `command`; set `url = \"http://...\"` (POST, 2xx passes) or `command = [\"program\", \"arg\"]` (exit 0 passes)"
                ));
            }
            (None, Some(command)) if command.first().is_none_or(|p| p.trim().is_empty()) => {
                return Err(format!(
                    "`{key}.command`: empty; give the program and its arguments, e.g. [\"scripts/check\", \"--route\", \"users\"]"
                ));
            }
            _ => {}
        }
        if gate.timeout.is_zero() {
            return Err(format!(
                "`{key}.timeout`: must be longer than 0s, e.g. \"30s\""
            ));
        }
    }
    Ok(())
}

/// A notification sink: a `url` or an `sns_topic_arn`, not both.
fn check_sink(key: &str, sink: &NotifySink) -> Result<(), String> {
    match (&sink.url, &sink.sns_topic_arn) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "`{key}`: both `url` and `sns_topic_arn`; a sink is one or the other (add another `[[notify]]`)"
            ));
        }
        (None, None) => {
            return Err(format!(
                "`{key}`: neither `url` nor `sns_topic_arn`; set one, e.g. `url = \"https://hooks.example.com/ficus\"`"
            ));
        }
        (None, Some(topic)) if !topic.starts_with("arn:") => {
            return Err(format!(
                "`{key}.sns_topic_arn`: `{topic}` is not an ARN like arn:aws:sns:us-east-1:123456789012:ficus"
            ));
        }
        _ => {}
    }
    if sink.sns_topic_arn.is_some() && sink.format == NotifyFormat::Slack {
        return Err(format!(
            "`{key}.format`: `slack` is for webhook URLs; an SNS sink publishes the event JSON"
        ));
    }
    if sink.sns_topic_arn.is_some() && sink.secret_env.is_some() {
        return Err(format!(
            "`{key}.secret_env`: only webhooks are signed; SNS messages are authenticated by AWS"
        ));
    }
    if let Some(name) = &sink.secret_env
        && (name.is_empty() || name.contains(['=', '\0']))
    {
        return Err(format!(
            "`{key}.secret_env`: `{name}` is not an environment variable's name"
        ));
    }
    if sink.timeout.is_zero() || sink.timeout > Duration::from_secs(60) {
        return Err(format!(
            "`{key}.timeout`: {} is not between 1ms and 60s",
            humantime::format_duration(sink.timeout)
        ));
    }
    if sink.retries > 5 {
        return Err(format!(
            "`{key}.retries`: {} is more than 5; delivery must stay bounded",
            sink.retries
        ));
    }
    Ok(())
}

/// Steps are percentages, strictly increasing, from 1 to 100, ending at 100.
pub fn check_steps(steps: &[u8]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("empty; give percentages like 10,50,100".into());
    }
    if steps.iter().any(|s| *s == 0 || *s > 100) {
        return Err("each step is a percentage from 1 to 100".into());
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err("steps must increase, e.g. 10,50,100".into());
    }
    if steps.last() != Some(&100) {
        return Err("the last step must be 100".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_whole_numbers() {
        #[derive(Deserialize)]
        struct P {
            #[serde(deserialize_with = "whole_priority")]
            priority: Option<u32>,
        }
        let parse = |text: &str| toml::from_str::<P>(text).map(|p| p.priority);
        assert_eq!(parse("priority = 10").unwrap(), Some(10));
        assert_eq!(parse("priority = \"10\"").unwrap(), Some(10));
        assert!(
            parse("priority = 10.5")
                .unwrap_err()
                .to_string()
                .contains("whole number")
        );
        assert!(parse("priority = -1").is_err());
    }

    #[test]
    fn steps_must_increase_and_end_at_100() {
        assert!(check_steps(&[10, 50, 100]).is_ok());
        assert!(check_steps(&[100]).is_ok());
        assert!(check_steps(&[]).is_err());
        assert!(check_steps(&[50, 10, 100]).is_err());
        assert!(check_steps(&[10, 50]).is_err());
        assert!(check_steps(&[0, 100]).is_err());
    }
}
