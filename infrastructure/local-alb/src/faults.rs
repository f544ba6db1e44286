//! Fault injection: AWS's bad days, off by default.
//!
//! Three faults, each an option of the command line (`--propagation`,
//! `--nodes`, `--throttle`, `--transient-errors`, `--lost-answers`, with
//! `LOCAL_ALB_*` variables) and of the stack file's `[faults]` section (an
//! option given wins over the file):
//! - **propagation**: an accepted change reaches each of N simulated
//!   data-plane nodes after a delay of its own (`dataplane/nodes.rs` applies
//!   it; this module only parses the range);
//! - **throttling**: per-action token buckets for the ELBv2 and CloudWatch
//!   APIs, answered with AWS's `Throttling` error ("Rate exceeded");
//! - **transient errors**: a share of control-API requests answered 500
//!   `InternalFailure` or 503 `ServiceUnavailable`; of those that hit a
//!   write, a share is answered so *after* the write was applied (the answer
//!   was lost), as happens on AWS.
//!
//! A value given (flag or variable) replaces the file's as a whole; the
//! startup line says where each value came from and what it replaced
//! ([`Layers::describe`]). Wrong values are refused naming what they must be;
//! lost answers without transient errors are refused ([`Layers::check`]).
//!
//! What was injected is counted for `/metrics` (names in `alb::metrics`);
//! the counters of a fault that is on are there from the start.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alb::duration::parse as duration;
use alb::metrics::{self as names, escape_label_value, label};

/// The delay range `min..max` after which an accepted change reaches a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropagationRange {
    pub min: Duration,
    pub max: Duration,
}

/// A number per API action, `*` for the actions not named: requests per
/// second for `--throttle`, a share of requests for `--transient-errors`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerAction {
    pub per_action: BTreeMap<String, f64>,
    pub otherwise: Option<f64>,
}

/// `--throttle`'s requests per second per action.
pub type ThrottleRates = PerAction;

impl PerAction {
    /// The number for `action`, `None` when it has none (not throttled, no
    /// errors).
    pub fn rate(&self, action: &str) -> Option<f64> {
        self.per_action.get(action).copied().or(self.otherwise)
    }

    /// The same number for every action.
    pub fn every(value: f64) -> PerAction {
        PerAction {
            per_action: BTreeMap::new(),
            otherwise: Some(value),
        }
    }

    /// The actions named that `known` does not know, in order.
    pub fn unknown_actions(&self, known: impl Fn(&str) -> bool) -> Vec<String> {
        self.per_action
            .keys()
            .filter(|action| !known(action))
            .cloned()
            .collect()
    }

    /// `DescribeRules=5, *=20`.
    pub fn describe(&self) -> String {
        self.per_action
            .iter()
            .map(|(action, n)| format!("{action}={n}"))
            .chain(self.otherwise.map(|n| format!("*={n}")))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The fault options; `None` is "not set here" (the command line's value
/// wins over the stack file's, which wins over off).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultOptions {
    pub propagation: Option<PropagationRange>,
    pub nodes: Option<usize>,
    pub throttle: Option<ThrottleRates>,
    /// Share of control-API requests answered with a transient error, per
    /// action or for every one.
    pub transient_errors: Option<PerAction>,
    /// Share of the transient errors on writes answered after the write was
    /// applied. Default 0.5.
    pub lost_answers: Option<f64>,
}

/// Default share of injected errors on writes that come after the write.
pub const DEFAULT_LOST_ANSWERS: f64 = 0.5;

impl FaultOptions {
    /// `self`'s values, else `fallback`'s.
    pub fn or(self, fallback: FaultOptions) -> FaultOptions {
        FaultOptions {
            propagation: self.propagation.or(fallback.propagation),
            nodes: self.nodes.or(fallback.nodes),
            throttle: self.throttle.or(fallback.throttle),
            transient_errors: self.transient_errors.or(fallback.transient_errors),
            lost_answers: self.lost_answers.or(fallback.lost_answers),
        }
    }

    /// Whether any fault is on.
    pub fn any(&self) -> bool {
        self.propagation.is_some()
            || self.nodes.is_some()
            || self.throttle.is_some()
            || self.transient_errors.as_ref().is_some_and(|t| {
                t.otherwise.is_some_and(|r| r > 0.0) || t.per_action.values().any(|r| *r > 0.0)
            })
    }

    /// `fault`'s value as the user writes it (`0s..8s`, `DescribeRules=5,*=20`,
    /// `0.02`), `None` when not set.
    pub fn value(&self, fault: Fault) -> Option<String> {
        match fault {
            Fault::Propagation => self.propagation.map(|range| range.describe()),
            Fault::Nodes => self.nodes.map(|nodes| nodes.to_string()),
            Fault::Throttle => self.throttle.as_ref().map(PerAction::describe),
            Fault::TransientErrors => self.transient_errors.as_ref().map(|shares| {
                match (shares.per_action.is_empty(), shares.otherwise) {
                    (true, Some(every)) => every.to_string(),
                    _ => shares.describe(),
                }
            }),
            Fault::LostAnswers => self.lost_answers.map(|share| share.to_string()),
        }
    }
}

/// One fault option: its flag, its `LOCAL_ALB_*` variable and its key in
/// the stack file's `[faults]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Propagation,
    Nodes,
    Throttle,
    TransientErrors,
    LostAnswers,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Propagation,
        Fault::Nodes,
        Fault::Throttle,
        Fault::TransientErrors,
        Fault::LostAnswers,
    ];

    /// The key in the stack file's `[faults]`, also the option's id in the
    /// command-line parser: `transient_errors`.
    pub fn key(self) -> &'static str {
        match self {
            Fault::Propagation => "propagation",
            Fault::Nodes => "nodes",
            Fault::Throttle => "throttle",
            Fault::TransientErrors => "transient_errors",
            Fault::LostAnswers => "lost_answers",
        }
    }

    /// The command-line flag: `--transient-errors`.
    pub fn flag(self) -> String {
        format!("--{}", self.key().replace('_', "-"))
    }

    /// The words of the startup line: `transient errors`.
    fn words(self) -> String {
        self.key().replace('_', " ")
    }
}

/// Where each fault option given to the program came from: its flag
/// (`--throttle`) or its variable (`LOCAL_ALB_THROTTLE`). An option given
/// with no source recorded (a program's own `Settings`) reads as its flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(BTreeMap<Fault, String>);

impl Sources {
    pub fn set(&mut self, fault: Fault, source: impl Into<String>) {
        self.0.insert(fault, source.into());
    }

    /// `--throttle` or `LOCAL_ALB_THROTTLE`.
    pub fn of(&self, fault: Fault) -> String {
        self.0.get(&fault).cloned().unwrap_or_else(|| fault.flag())
    }
}

/// The fault options of a start: those given (command line or variables)
/// over the stack file's `[faults]`. A given option replaces the file's
/// value as a whole (a `--throttle` list is not merged with the file's).
pub struct Layers<'a> {
    pub given: &'a FaultOptions,
    pub sources: &'a Sources,
    pub file: &'a FaultOptions,
}

impl Layers<'_> {
    /// The options in effect.
    pub fn effective(&self) -> FaultOptions {
        self.given.clone().or(self.file.clone())
    }

    /// Where `fault`'s value in effect comes from.
    fn source(&self, fault: Fault) -> String {
        if self.given.value(fault).is_some() {
            self.sources.of(fault)
        } else {
            format!("{} in the stack file's [faults]", fault.key())
        }
    }

    /// Refuses options that would do nothing: lost answers without
    /// transient errors (a lost answer is a transient error after the
    /// change was applied).
    pub fn check(&self) -> Result<(), String> {
        let effective = self.effective();
        if effective.lost_answers.is_some() && effective.transient_errors.is_none() {
            return Err(format!(
                "{} needs transient errors: a lost answer is a transient error after the change \
                 was applied; set --transient-errors (or LOCAL_ALB_TRANSIENT_ERRORS, or \
                 transient_errors in the stack file's [faults]) too, or remove lost answers",
                self.source(Fault::LostAnswers)
            ));
        }
        Ok(())
    }

    /// Refuses action names the load balancer does not serve (`known` says
    /// which it does), naming where each list came from: `LOCAL_ALB_THROTTLE
    /// names Foo, which this load balancer does not serve: ...`.
    pub fn check_actions(&self, known: impl Fn(&str) -> bool) -> Result<(), String> {
        let effective = self.effective();
        let named: Vec<String> = [
            (Fault::Throttle, &effective.throttle),
            (Fault::TransientErrors, &effective.transient_errors),
        ]
        .into_iter()
        .filter_map(|(fault, rates)| {
            let unknown = rates.as_ref()?.unknown_actions(&known);
            (!unknown.is_empty()).then(|| {
                format!(
                    "{} {} {}",
                    self.source(fault),
                    if unknown.len() == 1 { "names" } else { "name" },
                    unknown.join(", ")
                )
            })
        })
        .collect();
        if named.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}, which this load balancer does not serve: use the ELBv2 or CloudWatch action \
             names as AWS spells them (DescribeRules, CreateRule, SetRulePriorities, \
             GetMetricData, ...) or * for every action",
            named.join("; ")
        ))
    }

    /// What is on and where each value came from, for the startup line:
    /// `propagation 0s..8s from --propagation; nodes 3 from the stack
    /// file's [faults]; throttle DescribeRules=5 from --throttle
    /// (replaces the stack file's ModifyRule=2,*=20)`. Empty when nothing is.
    pub fn describe(&self) -> String {
        let effective = self.effective();
        if !effective.any() {
            return String::new();
        }
        let mut parts = Vec::new();
        for fault in Fault::ALL {
            let words = fault.words();
            match (self.given.value(fault), self.file.value(fault)) {
                (Some(given), file) => parts.push(format!(
                    "{words} {given} from {}{}",
                    self.sources.of(fault),
                    file.map(|file| format!(" (replaces the stack file's {file})"))
                        .unwrap_or_default()
                )),
                (None, Some(file)) => {
                    parts.push(format!("{words} {file} from the stack file's [faults]"))
                }
                (None, None) => {
                    let default = match fault {
                        Fault::Propagation if effective.nodes.is_some() => Some("0s".to_owned()),
                        Fault::Nodes if effective.propagation.is_some() => Some("1".to_owned()),
                        Fault::LostAnswers if effective.transient_errors.is_some() => {
                            Some(DEFAULT_LOST_ANSWERS.to_string())
                        }
                        _ => None,
                    };
                    if let Some(default) = default {
                        parts.push(format!("{words} {default} (default)"));
                    }
                }
            }
        }
        parts.join("; ")
    }
}

/// The longest propagation delay accepted (AWS's take seconds).
pub const MAX_PROPAGATION: Duration = Duration::from_secs(600);

/// A propagation range such as `0s..8s`, or one duration (`2s`: always 2 s).
/// Each end is a duration by `alb::duration`'s rule, from 0s to
/// [`MAX_PROPAGATION`].
pub fn parse_propagation(text: &str) -> Result<PropagationRange, String> {
    let text = text.trim();
    if text.starts_with("--") {
        return Err(format!(
            "`{text}` is an option, not a range: give a range first, such as 0s..8s"
        ));
    }
    let delay = |end: &str, part: &str| -> Result<Duration, String> {
        let part = part.trim();
        let whose = match end {
            "" => String::new(),
            end => format!("the {end} of `{text}`: "),
        };
        if part.starts_with('-') {
            return Err(format!(
                "{whose}`{part}` is negative: a delay is 0s or more; write MIN..MAX, such as 0s..8s"
            ));
        }
        duration(part).map_err(|e| format!("{whose}{e}"))
    };
    let (min, max) = match text.split_once("..") {
        // `0...8` would read as 0s..0.8s: a third dot is a typo, not a decimal.
        Some((_, max)) if max.starts_with('.') || max.contains("..") => {
            return Err(format!(
                "`{text}` is not a range: write two durations joined by two dots, MIN..MAX, such as 0s..8s"
            ));
        }
        Some((min, max)) => (delay("start", min)?, delay("end", max)?),
        None => {
            let fixed = delay("", text)?;
            (fixed, fixed)
        }
    };
    if min > max {
        return Err(format!(
            "`{text}` ends before it starts: write it as MIN..MAX, such as 0s..8s"
        ));
    }
    if max > MAX_PROPAGATION {
        return Err(format!(
            "`{text}` goes up to {}, above the maximum of {}: AWS's changes take seconds; use a range such as 0s..8s",
            alb::duration::format(max),
            alb::duration::format(MAX_PROPAGATION)
        ));
    }
    Ok(PropagationRange { min, max })
}

impl PropagationRange {
    /// `0s..8s` as the user writes it (`2s` for a fixed delay).
    pub fn describe(&self) -> String {
        if self.min == self.max {
            return alb::duration::format(self.max);
        }
        format!(
            "{}..{}",
            alb::duration::format(self.min),
            alb::duration::format(self.max)
        )
    }
}

/// A number of simulated data-plane nodes, 1 to 64.
pub fn parse_nodes(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| {
            format!(
                "`{}` is not a number of nodes: nodes must be a whole number from 1 to 64, such as 3",
                text.trim()
            )
        })
}

/// Per-action rates such as `DescribeRules=5,ModifyRule=2,*=20` (requests per
/// second; `*` is every action not named).
pub fn parse_throttle(text: &str) -> Result<ThrottleRates, String> {
    parse_per_action(
        text,
        &PerActionNumber {
            what: "throttle rate",
            must: "a number of calls per second above 0",
            example_value: "2",
            example: "DescribeRules=5,*=20",
        },
        |rate| {
            if !rate.is_finite() {
                Err("is not a finite number")
            } else if rate <= 0.0 {
                Err("is not above 0")
            } else {
                Ok(())
            }
        },
    )
}

/// A share for every action (`0.02`), or per action
/// (`CreateRule=1,*=0.02`, `*` for the actions not named).
pub fn parse_transient_errors(text: &str) -> Result<PerAction, String> {
    if !text.contains('=') {
        return parse_share(text).map(PerAction::every);
    }
    parse_per_action(
        text,
        &PerActionNumber {
            what: "transient error share",
            must: "a share from 0 to 1",
            example_value: "0.02",
            example: "CreateRule=1,*=0.02",
        },
        share_check,
    )
}

/// What the number of an `ACTION=N` item is, for messages.
struct PerActionNumber {
    /// `throttle rate`.
    what: &'static str,
    /// `a number of calls per second above 0`.
    must: &'static str,
    /// A good number for one action: `2`.
    example_value: &'static str,
    /// A good list: `DescribeRules=5,*=20`.
    example: &'static str,
}

/// `ACTION=N` items separated by commas, each action once; `check` says why
/// a number is refused (`is not above 0`).
fn parse_per_action(
    text: &str,
    number: &PerActionNumber,
    check: impl Fn(f64) -> Result<(), &'static str>,
) -> Result<PerAction, String> {
    let example = number.example;
    let mut rates = PerAction::default();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((action, value)) = item.split_once('=') else {
            return Err(format!(
                "`{item}` has no '=': write ACTION=N items separated by commas, such as {example}"
            ));
        };
        let (action, value) = (action.trim(), value.trim());
        if action.is_empty()
            || !(action == "*" || action.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "`{action}` (in `{item}`) is not an API action name (such as DescribeRules or GetMetricData) or '*'"
            ));
        }
        let rate = value
            .parse::<f64>()
            .map_err(|_| "is not a number")
            .and_then(|rate| check(rate).map(|()| rate))
            .map_err(|why| {
                format!(
                    "the {} of '{action}' must be {}, such as {action}={}: `{value}` {why}",
                    number.what, number.must, number.example_value
                )
            })?;
        let earlier = if action == "*" {
            rates.otherwise.replace(rate)
        } else {
            rates.per_action.insert(action.to_owned(), rate)
        };
        if let Some(earlier) = earlier {
            return Err(format!(
                "'{action}' is given twice ({action}={earlier} and {action}={rate}): give each action one {}, such as {example}",
                number.what
            ));
        }
    }
    if rates.per_action.is_empty() && rates.otherwise.is_none() {
        return Err(format!(
            "no ACTION=N item: write them separated by commas, such as {example}"
        ));
    }
    Ok(rates)
}

/// Why a share is refused, if it is.
fn share_check(share: f64) -> Result<(), &'static str> {
    if share.is_nan() {
        Err("is not a number")
    } else if share < 0.0 {
        Err("is below 0")
    } else if share > 1.0 {
        Err("is above 1")
    } else {
        Ok(())
    }
}

/// A share from 0 to 1, such as 0.02.
pub fn parse_share(text: &str) -> Result<f64, String> {
    let text = text.trim();
    text.parse::<f64>()
        .map_err(|_| "is not a number")
        .and_then(|share| share_check(share).map(|()| share))
        .map_err(|why| format!("`{text}` {why}: write a share from 0 to 1, such as 0.02"))
}

/// Which API a request is for (a label of the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    Elbv2,
    CloudWatch,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::Elbv2 => "elbv2",
            Api::CloudWatch => "cloudwatch",
        }
    }
}

/// An action the load balancer serves: its API, and whether it changes
/// the configuration (only a write's answer can be lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub api: Api,
    pub write: bool,
}

/// A transient error to answer instead of the action's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transient {
    /// 500 (`InternalFailure`) or 503 (`ServiceUnavailable`).
    pub status: u16,
    /// The write is applied first, and its answer replaced by the error.
    pub after_apply: bool,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// What was injected, for `/metrics`.
#[derive(Default)]
struct Counts {
    throttled: BTreeMap<(Api, String), u64>,
    /// (api, action, status, applied) → count.
    transient: BTreeMap<(Api, String, u16, bool), u64>,
}

/// The faults of a running local ALB.
pub struct Faults {
    throttle: Option<ThrottleRates>,
    transient_errors: Option<PerAction>,
    lost_answers: f64,
    buckets: Mutex<HashMap<(Api, String), Bucket>>,
    counts: Mutex<Counts>,
}

impl Faults {
    /// The faults of `options`; `served` tells the API of an action and
    /// whether it is a write (`None`: not served), so that `/metrics` shows
    /// each named action's counters at 0 from the start.
    pub fn new(options: &FaultOptions, served: impl Fn(&str) -> Option<Served>) -> Faults {
        let mut counts = Counts::default();
        for action in options.throttle.iter().flat_map(|t| t.per_action.keys()) {
            if let Some(served) = served(action) {
                counts.throttled.insert((served.api, action.clone()), 0);
            }
        }
        for action in options
            .transient_errors
            .iter()
            .flat_map(|t| t.per_action.keys())
        {
            if let Some(served) = served(action) {
                for status in [500, 503] {
                    for applied in [false, true] {
                        if served.write || !applied {
                            counts
                                .transient
                                .insert((served.api, action.clone(), status, applied), 0);
                        }
                    }
                }
            }
        }
        Faults {
            throttle: options.throttle.clone(),
            transient_errors: options.transient_errors.clone(),
            lost_answers: options.lost_answers.unwrap_or(DEFAULT_LOST_ANSWERS),
            buckets: Mutex::new(HashMap::new()),
            counts: Mutex::new(counts),
        }
    }

    /// Takes a token for `action` of `api`; `true` when there was none (the
    /// request is throttled, and counted). Each action has its own bucket,
    /// holding at most one second of its rate (at least one request).
    pub fn throttled(&self, api: Api, action: &str) -> bool {
        let Some(rate) = self.throttle.as_ref().and_then(|t| t.rate(action)) else {
            return false;
        };
        let now = Instant::now();
        let capacity = rate.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry((api, action.to_owned())).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return false;
        }
        drop(buckets);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .throttled
            .entry((api, action.to_owned()))
            .or_default() += 1;
        true
    }

    /// Whether to answer this request with a transient error. Only writes
    /// can get one after the action (`after_apply`); one before the action
    /// is counted here (not applied), one after it by [`Faults::answer_lost`],
    /// once the action's result tells whether the write was applied.
    pub fn transient(&self, api: Api, action: &str, write: bool) -> Option<Transient> {
        let share = self
            .transient_errors
            .as_ref()
            .and_then(|t| t.rate(action))
            .unwrap_or(0.0);
        if share <= 0.0 || rand::random::<f64>() >= share {
            return None;
        }
        let status = if rand::random::<bool>() { 500 } else { 503 };
        let after_apply = write && rand::random::<f64>() < self.lost_answers;
        if !after_apply {
            self.count_transient(api, action, status, false);
        }
        Some(Transient {
            status,
            after_apply,
        })
    }

    /// Counts a transient error answered after the action ran: `applied`
    /// when the write was accepted (a refused one, such as the retry of a
    /// CreateRule whose priority the first attempt took, was not).
    pub fn answer_lost(&self, api: Api, action: &str, injected: Transient, applied: bool) {
        self.count_transient(api, action, injected.status, applied);
    }

    fn count_transient(&self, api: Api, action: &str, status: u16, applied: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .transient
            .entry((api, action.to_owned(), status, applied))
            .or_default() += 1;
    }

    /// The counters as Prometheus text: each one whose fault is on, from
    /// the start (its HELP and TYPE lines, and a zero sample per label set
    /// known: the actions named; those of `*` appear with their first
    /// injection).
    pub fn render(&self, out: &mut String) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if self.throttle.is_some() {
            let _ = writeln!(
                out,
                "# HELP {} Control-API requests answered with a throttling error (injected).\n# TYPE {} counter",
                names::FAULTS_THROTTLED_TOTAL,
                names::FAULTS_THROTTLED_TOTAL
            );
            for ((api, action), count) in &counts.throttled {
                let _ = writeln!(
                    out,
                    "{}{{{}=\"{}\",{}=\"{}\"}} {count}",
                    names::FAULTS_THROTTLED_TOTAL,
                    label::API,
                    api.as_str(),
                    label::ACTION,
                    escape_label_value(action)
                );
            }
        }
        if self.transient_errors.is_some() {
            let _ = writeln!(
                out,
                "# HELP {} Control-API requests answered with a transient server error (injected); applied=\"true\" when the write was applied before the error.\n# TYPE {} counter",
                names::FAULTS_TRANSIENT_ERRORS_TOTAL,
                names::FAULTS_TRANSIENT_ERRORS_TOTAL
            );
            for ((api, action, status, applied), count) in &counts.transient {
                let _ = writeln!(
                    out,
                    "{}{{{}=\"{}\",{}=\"{}\",{}=\"{status}\",{}=\"{applied}\"}} {count}",
                    names::FAULTS_TRANSIENT_ERRORS_TOTAL,
                    label::API,
                    api.as_str(),
                    label::ACTION,
                    escape_label_value(action),
                    label::CODE,
                    label::APPLIED,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_documented_and_name_the_fix_when_wrong() {
        assert_eq!(
            parse_propagation("0s..8s"),
            Ok(PropagationRange {
                min: Duration::ZERO,
                max: Duration::from_secs(8)
            })
        );
        assert_eq!(
            parse_propagation("500ms"),
            Ok(PropagationRange {
                min: Duration::from_millis(500),
                max: Duration::from_millis(500)
            })
        );
        assert!(
            parse_propagation("8s..1s")
                .unwrap_err()
                .contains("MIN..MAX")
        );
        assert!(
            parse_propagation("soon")
                .unwrap_err()
                .contains("a bare number is seconds")
        );
        assert_eq!(
            parse_propagation("2").map(|r| r.max),
            Ok(Duration::from_secs(2))
        );
        let rates = parse_throttle("DescribeRules=5, ModifyRule=0.5,*=20").unwrap();
        assert_eq!(rates.rate("DescribeRules"), Some(5.0));
        assert_eq!(rates.rate("ModifyRule"), Some(0.5));
        assert_eq!(rates.rate("GetMetricData"), Some(20.0));
        assert!(parse_throttle("DescribeRules").unwrap_err().contains("'='"));
        assert!(
            parse_throttle("DescribeRules=-1")
                .unwrap_err()
                .contains("above 0")
        );
        assert!(parse_throttle("").unwrap_err().contains("no ACTION=N item"));
        assert_eq!(parse_transient_errors("0.02"), Ok(PerAction::every(0.02)));
        let shares = parse_transient_errors("CreateRule=1,*=0.02").unwrap();
        assert_eq!(shares.rate("CreateRule"), Some(1.0));
        assert_eq!(shares.rate("ModifyRule"), Some(0.02));
        assert!(
            parse_transient_errors("CreateRule=2")
                .unwrap_err()
                .contains("from 0 to 1")
        );
        assert!(parse_transient_errors("2").is_err());
        let options = FaultOptions {
            throttle: Some(parse_throttle("describerules=5,DescribeRules=1").unwrap()),
            transient_errors: Some(parse_transient_errors("Foo=1").unwrap()),
            ..FaultOptions::default()
        };
        // A typo would inject nothing, silently: refused, naming the source.
        let mut sources = Sources::default();
        sources.set(Fault::TransientErrors, "LOCAL_ALB_TRANSIENT_ERRORS");
        let layers = Layers {
            given: &options,
            sources: &sources,
            file: &FaultOptions::default(),
        };
        let refused = layers.check_actions(|a| a == "DescribeRules").unwrap_err();
        assert!(
            refused.starts_with(
                "--throttle names describerules; LOCAL_ALB_TRANSIENT_ERRORS names Foo, \
                 which this load balancer does not serve: use the ELBv2 or CloudWatch action names"
            ),
            "{refused}"
        );
        let file = FaultOptions {
            throttle: options.throttle.clone(),
            ..FaultOptions::default()
        };
        let layers = Layers {
            given: &FaultOptions::default(),
            sources: &sources,
            file: &file,
        };
        let refused = layers.check_actions(|a| a == "DescribeRules").unwrap_err();
        assert!(
            refused.starts_with("throttle in the stack file's [faults] names describerules, "),
            "{refused}"
        );
        assert_eq!(parse_share("0.02"), Ok(0.02));
        assert!(parse_share("2").is_err());
        assert_eq!(parse_nodes("3"), Ok(3));
        assert!(parse_nodes("0").is_err());
    }

    #[test]
    fn a_bucket_allows_its_rate_then_throttles_and_counts() {
        let faults = Faults::new(
            &FaultOptions {
                throttle: Some(parse_throttle("ModifyRule=2").unwrap()),
                ..FaultOptions::default()
            },
            |_| None,
        );
        assert!(!faults.throttled(Api::Elbv2, "ModifyRule"));
        assert!(!faults.throttled(Api::Elbv2, "ModifyRule"));
        assert!(faults.throttled(Api::Elbv2, "ModifyRule"));
        assert!(
            !faults.throttled(Api::Elbv2, "DescribeRules"),
            "not named, no *"
        );
        let mut text = String::new();
        faults.render(&mut text);
        assert!(
            text.contains(
                "ficus_alb_faults_throttled_total{api=\"elbv2\",action=\"ModifyRule\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn transient_errors_come_at_their_rate_and_only_writes_lose_answers() {
        let faults = Faults::new(
            &FaultOptions {
                transient_errors: Some(PerAction::every(1.0)),
                lost_answers: Some(1.0),
                ..FaultOptions::default()
            },
            |_| None,
        );
        let read = faults
            .transient(Api::Elbv2, "DescribeRules", false)
            .unwrap();
        assert!(!read.after_apply);
        assert!([500, 503].contains(&read.status));
        assert!(
            faults
                .transient(Api::Elbv2, "ModifyRule", true)
                .unwrap()
                .after_apply
        );
        let off = Faults::new(&FaultOptions::default(), |_| None);
        assert_eq!(off.transient(Api::Elbv2, "ModifyRule", true), None);
    }

    #[test]
    fn a_wrong_number_says_what_it_must_be_and_why_it_is_not() {
        assert_eq!(
            parse_throttle("DescribeRules=abc").unwrap_err(),
            "the throttle rate of 'DescribeRules' must be a number of calls per second above 0, \
             such as DescribeRules=2: `abc` is not a number"
        );
        assert!(
            parse_throttle("*=0")
                .unwrap_err()
                .ends_with("such as *=2: `0` is not above 0")
        );
        assert_eq!(
            parse_transient_errors("CreateRule=1.5").unwrap_err(),
            "the transient error share of 'CreateRule' must be a share from 0 to 1, \
             such as CreateRule=0.02: `1.5` is above 1"
        );
        assert_eq!(
            parse_transient_errors("-0.1").unwrap_err(),
            "`-0.1` is below 0: write a share from 0 to 1, such as 0.02"
        );
        assert!(
            parse_throttle("=5")
                .unwrap_err()
                .contains("is not an API action name")
        );
        assert_eq!(
            parse_nodes("-3").unwrap_err(),
            "`-3` is not a number of nodes: nodes must be a whole number from 1 to 64, such as 3"
        );
    }

    #[test]
    fn an_action_given_twice_is_refused_naming_it() {
        assert_eq!(
            parse_throttle("DescribeRules=5,DescribeRules=1").unwrap_err(),
            "'DescribeRules' is given twice (DescribeRules=5 and DescribeRules=1): give each \
             action one throttle rate, such as DescribeRules=5,*=20"
        );
        assert!(
            parse_throttle("*=5,ModifyRule=1,*=2")
                .unwrap_err()
                .starts_with("'*' is given twice (*=5 and *=2)")
        );
        assert!(
            parse_transient_errors("CreateRule=1,CreateRule=0.5")
                .unwrap_err()
                .starts_with("'CreateRule' is given twice")
        );
    }

    #[test]
    fn a_propagation_range_reads_and_prints_as_the_user_writes_it() {
        assert_eq!(parse_propagation("0..8").unwrap().describe(), "0s..8s");
        assert_eq!(parse_propagation("500ms").unwrap().describe(), "500ms");
        assert_eq!(
            parse_propagation("9s..1s").unwrap_err(),
            "`9s..1s` ends before it starts: write it as MIN..MAX, such as 0s..8s"
        );
        assert_eq!(
            parse_propagation("0s..8h").unwrap_err(),
            "`0s..8h` goes up to 8h, above the maximum of 10m: AWS's changes take seconds; \
             use a range such as 0s..8s"
        );
        assert!(parse_propagation("0s..10m").is_ok(), "the maximum itself");
        assert_eq!(
            parse_propagation("-1s..2s").unwrap_err(),
            "the start of `-1s..2s`: `-1s` is negative: a delay is 0s or more; write MIN..MAX, \
             such as 0s..8s"
        );
        for typo in ["0...8", "0....8", "0s..4s..8s"] {
            assert_eq!(
                parse_propagation(typo).unwrap_err(),
                format!(
                    "`{typo}` is not a range: write two durations joined by two dots, MIN..MAX, \
                     such as 0s..8s"
                ),
            );
        }
        let later = parse_propagation("0s..later").unwrap_err();
        assert!(
            later.starts_with(
                "the end of `0s..later`: `later` is not a duration: a bare number is seconds"
            ),
            "{later}"
        );
    }

    fn layers_line(given: &FaultOptions, sources: &Sources, file: &FaultOptions) -> String {
        Layers {
            given,
            sources,
            file,
        }
        .describe()
    }

    #[test]
    fn the_startup_line_says_where_each_value_came_from_and_what_it_replaced() {
        let file = FaultOptions {
            throttle: Some(parse_throttle("ModifyRule=2,*=20").unwrap()),
            nodes: Some(3),
            ..FaultOptions::default()
        };
        let given = FaultOptions {
            throttle: Some(parse_throttle("DescribeRules=5").unwrap()),
            propagation: Some(parse_propagation("0..8").unwrap()),
            transient_errors: Some(parse_transient_errors("0.02").unwrap()),
            ..FaultOptions::default()
        };
        let mut sources = Sources::default();
        sources.set(Fault::TransientErrors, "LOCAL_ALB_TRANSIENT_ERRORS");
        assert_eq!(
            layers_line(&given, &sources, &file),
            "propagation 0s..8s from --propagation; \
             nodes 3 from the stack file's [faults]; \
             throttle DescribeRules=5 from --throttle (replaces the stack file's ModifyRule=2,*=20); \
             transient errors 0.02 from LOCAL_ALB_TRANSIENT_ERRORS; \
             lost answers 0.5 (default)"
        );
        let nodes_only = FaultOptions {
            nodes: Some(2),
            ..FaultOptions::default()
        };
        assert_eq!(
            layers_line(&nodes_only, &Sources::default(), &FaultOptions::default()),
            "propagation 0s (default); nodes 2 from --nodes"
        );
        assert_eq!(
            layers_line(
                &FaultOptions::default(),
                &Sources::default(),
                &FaultOptions::default()
            ),
            ""
        );
    }

    #[test]
    fn lost_answers_without_transient_errors_are_refused_naming_their_source() {
        let lost = FaultOptions {
            lost_answers: Some(0.5),
            ..FaultOptions::default()
        };
        let none = FaultOptions::default();
        let sources = Sources::default();
        let from_file = Layers {
            given: &none,
            sources: &sources,
            file: &lost,
        }
        .check()
        .unwrap_err();
        assert!(
            from_file.starts_with(
                "lost_answers in the stack file's [faults] needs transient errors: a lost answer \
                 is a transient error after the change was applied"
            ),
            "{from_file}"
        );
        let transient = FaultOptions {
            transient_errors: Some(PerAction::every(0.02)),
            ..FaultOptions::default()
        };
        let from_flag_with_file_errors = Layers {
            given: &lost,
            sources: &sources,
            file: &transient,
        };
        assert_eq!(from_flag_with_file_errors.check(), Ok(()));
    }

    #[test]
    fn each_named_actions_counters_are_shown_at_zero_from_the_start() {
        let served = |action: &str| match action {
            "ModifyRule" => Some(Served {
                api: Api::Elbv2,
                write: true,
            }),
            "GetMetricData" => Some(Served {
                api: Api::CloudWatch,
                write: false,
            }),
            _ => None,
        };
        let faults = Faults::new(
            &FaultOptions {
                throttle: Some(parse_throttle("GetMetricData=1,*=5").unwrap()),
                transient_errors: Some(parse_transient_errors("ModifyRule=0.5").unwrap()),
                ..FaultOptions::default()
            },
            served,
        );
        let mut text = String::new();
        faults.render(&mut text);
        for line in [
            "# TYPE ficus_alb_faults_throttled_total counter",
            "ficus_alb_faults_throttled_total{api=\"cloudwatch\",action=\"GetMetricData\"} 0",
            "# TYPE ficus_alb_faults_transient_errors_total counter",
            "ficus_alb_faults_transient_errors_total{api=\"elbv2\",action=\"ModifyRule\",code=\"503\",applied=\"true\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in {text}");
        }
        let mut off = String::new();
        Faults::new(&FaultOptions::default(), served).render(&mut off);
        assert_eq!(off, "", "no fault, no counters");
    }
}
