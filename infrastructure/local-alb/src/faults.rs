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
//! What was injected is counted for `/metrics` (names in `alb::metrics`).

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
            || self.throttle.is_some()
            || self.transient_errors.as_ref().is_some_and(|t| {
                t.otherwise.is_some_and(|r| r > 0.0) || t.per_action.values().any(|r| *r > 0.0)
            })
    }

    /// The action names of `--throttle` and `--transient-errors` that
    /// `known` does not know (a typo would inject nothing, silently).
    pub fn unknown_actions(&self, known: impl Fn(&str) -> bool) -> Vec<String> {
        let mut unknown: Vec<String> = [&self.throttle, &self.transient_errors]
            .into_iter()
            .flatten()
            .flat_map(|rates| rates.unknown_actions(&known))
            .collect();
        unknown.dedup();
        unknown
    }

    /// What is on, for the startup log: `propagation 0s..8s over 3 nodes;
    /// throttle DescribeRules=5,*=20; transient errors *=0.02 (lost answers 0.5)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.propagation.is_some() || self.nodes.is_some() {
            let range = self
                .propagation
                .map_or("0s".to_owned(), |r| format!("{:?}..{:?}", r.min, r.max));
            parts.push(format!(
                "propagation {range} over {} node(s)",
                self.nodes.unwrap_or(1)
            ));
        }
        if let Some(throttle) = &self.throttle {
            parts.push(format!("throttle {}", throttle.describe()));
        }
        if let Some(transient) = &self.transient_errors {
            parts.push(format!(
                "transient errors {} (lost answers {})",
                transient.describe(),
                self.lost_answers.unwrap_or(DEFAULT_LOST_ANSWERS)
            ));
        }
        parts.join("; ")
    }
}

/// A propagation range such as `0s..8s`, or one duration (`2s`: always 2 s).
pub fn parse_propagation(text: &str) -> Result<PropagationRange, String> {
    let (min, max) = match text.split_once("..") {
        Some((min, max)) => (duration(min)?, duration(max)?),
        None => {
            let fixed = duration(text)?;
            (fixed, fixed)
        }
    };
    if min > max {
        return Err(format!(
            "the propagation range '{text}' ends before it starts: write it as MIN..MAX, such as 0s..8s"
        ));
    }
    if max > Duration::from_secs(600) {
        return Err(format!(
            "the propagation range '{text}' goes beyond 600s; AWS takes seconds, use a range such as 0s..8s"
        ));
    }
    Ok(PropagationRange { min, max })
}

/// A number of simulated data-plane nodes, 1 to 64.
pub fn parse_nodes(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| {
            format!("'{text}' is not a number of nodes: use a whole number from 1 to 64, such as 3")
        })
}

/// Per-action rates such as `DescribeRules=5,ModifyRule=2,*=20` (requests per
/// second; `*` is every action not named).
pub fn parse_throttle(text: &str) -> Result<ThrottleRates, String> {
    parse_per_action(text, "throttle rate", "DescribeRules=5,*=20", |rate| {
        (rate.is_finite() && rate > 0.0)
            .then_some(rate)
            .ok_or("a number of requests per second above 0, such as 5 or 0.5")
    })
}

/// A share for every action (`0.02`), or per action
/// (`CreateRule=1,*=0.02`, `*` for the actions not named).
pub fn parse_transient_errors(text: &str) -> Result<PerAction, String> {
    if !text.contains('=') {
        return parse_share(text).map(PerAction::every);
    }
    parse_per_action(
        text,
        "transient error share",
        "CreateRule=1,*=0.02",
        |share| {
            (0.0..=1.0)
                .contains(&share)
                .then_some(share)
                .ok_or("a share from 0 to 1, such as 0.02")
        },
    )
}

/// `ACTION=N,...,*=N` items; `check` says what a number must be.
fn parse_per_action(
    text: &str,
    what: &str,
    example: &str,
    check: impl Fn(f64) -> Result<f64, &'static str>,
) -> Result<PerAction, String> {
    let mut rates = PerAction::default();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((action, rate)) = item.split_once('=') else {
            return Err(format!(
                "'{item}' has no '=': write ACTION=N items separated by commas, such as {example}"
            ));
        };
        let action = action.trim();
        let rate = rate
            .trim()
            .parse::<f64>()
            .map_err(|_| "not a number")
            .and_then(&check)
            .map_err(|must| format!("the {what} of '{action}' must be {must}"))?;
        if action.is_empty()
            || !(action == "*" || action.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "'{action}' is not an API action name (such as DescribeRules or GetMetricData) or '*'"
            ));
        }
        if action == "*" {
            rates.otherwise = Some(rate);
        } else {
            rates.per_action.insert(action.to_owned(), rate);
        }
    }
    if rates.per_action.is_empty() && rates.otherwise.is_none() {
        return Err(format!(
            "no ACTION=N item: write them separated by commas, such as {example}"
        ));
    }
    Ok(rates)
}

/// A share from 0 to 1, such as 0.02.
pub fn parse_share(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("'{text}' is not a share from 0 to 1, such as 0.02"))
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
    pub fn new(options: &FaultOptions) -> Faults {
        Faults {
            throttle: options.throttle.clone(),
            transient_errors: options.transient_errors.clone(),
            lost_answers: options.lost_answers.unwrap_or(DEFAULT_LOST_ANSWERS),
            buckets: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
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

    /// The counters as Prometheus text (nothing while nothing was injected).
    pub fn render(&self, out: &mut String) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if !counts.throttled.is_empty() {
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
        if !counts.transient.is_empty() {
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
        assert_eq!(
            options.unknown_actions(|a| a == "DescribeRules"),
            ["describerules", "Foo"]
        );
        assert_eq!(parse_share("0.02"), Ok(0.02));
        assert!(parse_share("2").is_err());
        assert_eq!(parse_nodes("3"), Ok(3));
        assert!(parse_nodes("0").is_err());
    }

    #[test]
    fn a_bucket_allows_its_rate_then_throttles_and_counts() {
        let faults = Faults::new(&FaultOptions {
            throttle: Some(parse_throttle("ModifyRule=2").unwrap()),
            ..FaultOptions::default()
        });
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
        let faults = Faults::new(&FaultOptions {
            transient_errors: Some(PerAction::every(1.0)),
            lost_answers: Some(1.0),
            ..FaultOptions::default()
        });
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
        let off = Faults::new(&FaultOptions::default());
        assert_eq!(off.transient(Api::Elbv2, "ModifyRule", true), None);
    }
}
