//! Metric gates: which CloudWatch series a step is judged by (names and
//! dimensions exactly as `AWS/ApplicationELB` publishes them), and the
//! verdict over what CloudWatch answered: pass, fail or inconclusive, with
//! every value, threshold and sample count. All of it pure but [`Judge`],
//! which keeps a shift's evaluations and asks `cloudwatch` for the data;
//! `shift` decides when. docs/gates.md explains each gate.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use crate::cloudwatch::{CloudWatch, Query, Series};
use crate::error::usage;
use crate::settings::MetricGates;
use crate::state::{Listing, RouteView};

/// The load balancer's `LoadBalancer` dimension, `app/<name>/<id>`, from a
/// load balancer's or listener's ARN.
pub fn load_balancer_dimension(arn: &str) -> Option<String> {
    let resource = arn.rsplit_once(':')?.1;
    let rest = resource
        .strip_prefix("listener/")
        .or_else(|| resource.strip_prefix("loadbalancer/"))?;
    let mut parts = rest.split('/');
    let (kind, name, id) = (parts.next()?, parts.next()?, parts.next()?);
    (kind == "app").then(|| format!("app/{name}/{id}"))
}

/// The `TargetGroup` dimension, `targetgroup/<name>/<id>`, from its ARN.
pub fn target_group_dimension(arn: &str) -> Option<String> {
    let resource = arn.rsplit_once(':')?.1;
    resource
        .starts_with("targetgroup/")
        .then(|| resource.to_owned())
}

/// What one route's step is judged against: the ARNs' dimensions.
#[derive(Debug, Clone)]
pub struct Subject {
    pub route: String,
    pub load_balancer: String,
    pub service_tg: String,
    pub monolith_tg: String,
}

/// The series per side: (suffix, metric, statistic).
const TARGET_SERIES: [(&str, &str, &str); 3] = [
    ("requests", "RequestCount", "Sum"),
    ("target_5xx", "HTTPCode_Target_5XX_Count", "Sum"),
    ("p99", "TargetResponseTime", "p99"),
];
const LB_SERIES: [(&str, &str, &str); 2] = [
    ("requests", "RequestCount", "Sum"),
    ("elb_5xx", "HTTPCode_ELB_5XX_Count", "Sum"),
];

/// The queries for every subject, for one GetMetricData call: per route its
/// service's and the monolith's target group (requests, target 5XX, p99),
/// and per load balancer its requests and its own 5XX (asked once however
/// many routes share it).
pub fn queries(subjects: &[Subject]) -> Vec<Query> {
    let mut queries = Vec::new();
    for (index, subject) in subjects.iter().enumerate() {
        for (side, tg) in [("svc", &subject.service_tg), ("mono", &subject.monolith_tg)] {
            for (suffix, metric, stat) in TARGET_SERIES {
                queries.push(Query {
                    id: format!("r{index}_{side}_{suffix}"),
                    metric,
                    dimensions: vec![
                        ("TargetGroup", tg.clone()),
                        ("LoadBalancer", subject.load_balancer.clone()),
                    ],
                    stat,
                });
            }
        }
    }
    let mut balancers: Vec<&String> = subjects.iter().map(|s| &s.load_balancer).collect();
    balancers.sort();
    balancers.dedup();
    for balancer in balancers {
        for (suffix, metric, stat) in LB_SERIES {
            queries.push(Query {
                id: lb_id(subjects, balancer, suffix),
                metric,
                dimensions: vec![("LoadBalancer", balancer.clone())],
                stat,
            });
        }
    }
    queries
}

/// The id of a load balancer's query: named after the first subject on it.
fn lb_id(subjects: &[Subject], balancer: &str, suffix: &str) -> String {
    let index = subjects
        .iter()
        .position(|s| s.load_balancer == balancer)
        .unwrap_or(0);
    format!("lb{index}_{suffix}")
}

/// The times of an evaluation, in Unix seconds, aligned to the period:
/// the load balancer's baseline is `[baseline_from, from)`, the step's
/// window `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub baseline_from: i64,
    pub from: i64,
    pub to: i64,
    pub period_s: i64,
}

/// How many periods before the step the load balancer's 5XX ratio is read
/// from, as its baseline.
pub const BASELINE_PERIODS: i64 = 10;

impl Window {
    /// The window of a step applied at `applied` (Unix seconds), evaluated
    /// at `now`: from the start of the period the step was applied in (as
    /// CloudWatch rounds a start time down) to the end of the current one,
    /// so the partial period in progress counts too.
    pub fn new(applied: f64, now: f64, period: Duration) -> Window {
        let period_s = period.as_secs().max(1) as i64;
        let from = (applied.floor() as i64).div_euclid(period_s) * period_s;
        let to = ((now.floor() as i64).div_euclid(period_s) + 1) * period_s;
        Window {
            baseline_from: from - BASELINE_PERIODS * period_s,
            from,
            to: to.max(from + period_s),
            period_s,
        }
    }
}

/// Pass, fail or inconclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// One target group's numbers in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Side {
    /// `RequestCount`, summed.
    pub requests: f64,
    /// `HTTPCode_Target_5XX_Count`, summed.
    pub target_5xx: f64,
    /// 5XX over requests (`None` without requests).
    pub error_rate: Option<f64>,
    /// `TargetResponseTime` p99 over the window, in seconds: the per-period
    /// p99s weighted by their periods' requests.
    pub p99_s: Option<f64>,
    /// How many periods had data (`RequestCount` data points).
    pub periods: usize,
}

/// The load balancer's own 5XX, before the step and since.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Balancer {
    pub requests: f64,
    pub elb_5xx: f64,
    pub rate: Option<f64>,
    pub baseline_requests: f64,
    pub baseline_elb_5xx: f64,
    pub baseline_rate: Option<f64>,
}

/// One gate's check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub gate: &'static str,
    pub verdict: Verdict,
    /// What was measured and what it was held to, in words.
    pub detail: String,
}

/// One evaluation of one route: the step's evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Why, in one line (the failed or inconclusive checks).
    pub summary: String,
    pub window: Window,
    /// When it was evaluated, Unix seconds.
    pub at: f64,
    pub service: Side,
    pub monolith: Side,
    pub load_balancer: Balancer,
    pub checks: Vec<Check>,
    pub thresholds: MetricGates,
}

/// Sum of a series' values in `[from, to)`.
fn sum(series: Option<&Series>, from: i64, to: i64) -> (f64, usize) {
    let points: Vec<f64> = series
        .into_iter()
        .flatten()
        .filter(|(t, _)| (from..to).contains(t))
        .map(|(_, v)| *v)
        .collect();
    (points.iter().fold(0.0, |sum, v| sum + v), points.len())
}

/// The window's p99 from the per-period p99s: their mean weighted by each
/// period's requests. CloudWatch can't merge percentiles across periods; the
/// worst period alone made one cold or contended second (a new connection
/// pool right after the step, a busy machine) fail a healthy service, while
/// a service that is slower throughout is slower in every period, hence in
/// the mean. Periods without a request count weigh 1.
fn window_p99(p99: Option<&Series>, requests: Option<&Series>, window: &Window) -> Option<f64> {
    let weight = |at: i64| {
        requests
            .into_iter()
            .flatten()
            .find(|(t, _)| *t == at)
            .map_or(1.0, |(_, n)| n.max(1.0))
    };
    let (weighted, total) = p99
        .into_iter()
        .flatten()
        .filter(|(t, v)| (window.from..window.to).contains(t) && v.is_finite())
        .fold((0.0, 0.0), |(sum, total), (t, v)| {
            let w = weight(*t);
            (sum + v * w, total + w)
        });
    (total > 0.0).then(|| weighted / total)
}

fn side(results: &BTreeMap<String, Series>, prefix: &str, window: &Window) -> Side {
    let get = |suffix: &str| results.get(&format!("{prefix}_{suffix}"));
    let (requests, periods) = sum(get("requests"), window.from, window.to);
    let (target_5xx, _) = sum(get("target_5xx"), window.from, window.to);
    let p99_s = window_p99(get("p99"), get("requests"), window);
    Side {
        requests,
        target_5xx,
        error_rate: (requests > 0.0).then(|| target_5xx / requests),
        p99_s,
        periods,
    }
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

fn percent(value: Option<f64>) -> String {
    value.map_or("n/a".to_owned(), |v| format!("{:.2}%", v * 100.0))
}

fn millis(value: Option<f64>) -> String {
    value.map_or("n/a".to_owned(), |v| format!("{:.1} ms", v * 1000.0))
}

/// The verdict for route number `index` of the call's subjects.
pub fn evaluate(
    index: usize,
    subjects: &[Subject],
    results: &BTreeMap<String, Series>,
    window: Window,
    at: f64,
    gates: &MetricGates,
) -> Evaluation {
    let service = side(results, &format!("r{index}_svc"), &window);
    let monolith = side(results, &format!("r{index}_mono"), &window);
    let balancer = balancer(index, subjects, results, &window);
    let mut checks = Vec::new();
    // Traffic: the data plane applied the weight, and there is enough to judge.
    let traffic = traffic_check(&service, gates);
    let enough = traffic.verdict == Verdict::Pass;
    checks.push(traffic);
    // Errors: the service's 5XX ratio against the monolith's, plus the budget.
    let monolith_rate = monolith.error_rate.unwrap_or(0.0);
    let error_limit = monolith_rate + gates.error_budget;
    let errors_detail = format!(
        "service 5XX {} ({} of {}) vs monolith {} ({} of {}); limit {}",
        percent(service.error_rate),
        service.target_5xx,
        service.requests,
        percent(monolith.error_rate),
        monolith.target_5xx,
        monolith.requests,
        percent(Some(error_limit)),
    );
    checks.push(Check {
        gate: "errors",
        verdict: match service.error_rate {
            Some(rate) if rate > error_limit && enough => Verdict::Fail,
            Some(_) if enough => Verdict::Pass,
            _ => Verdict::Inconclusive,
        },
        detail: errors_detail,
    });
    // Latency: the service's p99 against the monolith's times the ratio, plus the allowance.
    let allowance = gates.latency_allowance.as_secs_f64();
    let latency_limit = monolith.p99_s.map(|m| m * gates.latency_ratio + allowance);
    let latency = match (service.p99_s, latency_limit) {
        (Some(p99), Some(limit)) if enough && p99 > limit => Verdict::Fail,
        (Some(_), Some(_)) if enough => Verdict::Pass,
        // The monolith had no traffic to compare with (the route was wholly
        // on the service: a step down from 100%, a bake): the errors and the
        // load balancer's 5XX still judge; latency has no baseline.
        (Some(_), None) if enough && monolith.requests <= 0.0 => Verdict::Pass,
        _ => Verdict::Inconclusive,
    };
    checks.push(Check {
        gate: "latency",
        verdict: latency,
        detail: format!(
            "service p99 {} vs monolith p99 {}; limit {} (x{} + {})",
            millis(service.p99_s),
            millis(monolith.p99_s),
            millis(latency_limit),
            gates.latency_ratio,
            millis(Some(allowance)),
        ),
    });
    // The load balancer's own 5XX must not rise.
    let elb_limit = balancer.baseline_rate.unwrap_or(0.0) + gates.elb_5xx_budget;
    checks.push(Check {
        gate: "elb_5xx",
        verdict: match balancer.rate {
            Some(rate) if rate > elb_limit => Verdict::Fail,
            Some(_) => Verdict::Pass,
            None => Verdict::Inconclusive,
        },
        detail: format!(
            "load balancer 5XX {} ({} of {}) vs {} before the step; limit {}",
            percent(balancer.rate),
            balancer.elb_5xx,
            balancer.requests,
            percent(balancer.baseline_rate),
            percent(Some(elb_limit)),
        ),
    });
    let (verdict, summary) = overall(&checks);
    Evaluation {
        verdict,
        summary,
        window,
        at,
        service,
        monolith,
        load_balancer: balancer,
        checks,
        thresholds: gates.clone(),
    }
}

/// The load balancer's requests and own 5XX in the window and before it.
fn balancer(
    index: usize,
    subjects: &[Subject],
    results: &BTreeMap<String, Series>,
    window: &Window,
) -> Balancer {
    let balancer_dim = subjects
        .get(index)
        .map(|s| s.load_balancer.as_str())
        .unwrap_or_default();
    let lb = |suffix: &str| results.get(&lb_id(subjects, balancer_dim, suffix));
    let (requests, _) = sum(lb("requests"), window.from, window.to);
    let (elb_5xx, _) = sum(lb("elb_5xx"), window.from, window.to);
    let (baseline_requests, _) = sum(lb("requests"), window.baseline_from, window.from);
    let (baseline_elb_5xx, _) = sum(lb("elb_5xx"), window.baseline_from, window.from);
    Balancer {
        requests,
        elb_5xx,
        rate: ratio(elb_5xx, requests),
        baseline_requests,
        baseline_elb_5xx,
        baseline_rate: ratio(baseline_elb_5xx, baseline_requests),
    }
}

/// Whether the service's target group got requests since the step (the
/// data plane applied the weight), and enough of them to judge.
fn traffic_check(service: &Side, gates: &MetricGates) -> Check {
    if service.requests <= 0.0 {
        Check {
            gate: "traffic",
            verdict: Verdict::Inconclusive,
            detail: "the service's target group has received no requests since the step: the load balancer has not applied the weight yet, or the route has no traffic".into(),
        }
    } else if service.requests < gates.min_requests as f64 {
        Check {
            gate: "traffic",
            verdict: Verdict::Inconclusive,
            detail: format!(
                "the service's target group has received {} requests since the step, fewer than min_requests {}",
                service.requests, gates.min_requests
            ),
        }
    } else {
        Check {
            gate: "traffic",
            verdict: Verdict::Pass,
            detail: format!(
                "{} requests to the service (min_requests {})",
                service.requests, gates.min_requests
            ),
        }
    }
}

/// The evaluation's verdict (any fail fails; else any inconclusive) and its
/// summary: every check on a pass, else the checks that decided it.
fn overall(checks: &[Check]) -> (Verdict, String) {
    let verdict = if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if checks.iter().any(|c| c.verdict == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    let summary = match verdict {
        Verdict::Pass => checks
            .iter()
            .map(|c| format!("{}: {}", c.gate, c.detail))
            .collect::<Vec<_>>()
            .join("; "),
        wanted => checks
            .iter()
            .filter(|c| c.verdict == wanted)
            .map(|c| format!("{}: {}", c.gate, c.detail))
            .collect::<Vec<_>>()
            .join("; "),
    };
    (verdict, summary)
}

/// Now, in Unix seconds.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A shift's metric gates: when its last step was applied, and every
/// evaluation since (the step's evidence).
pub struct Judge {
    pub gates: MetricGates,
    cloudwatch: CloudWatch,
    subjects: Vec<Subject>,
    /// When the last step's writes were read back (or the judge was made,
    /// for a shift that continues one at some percent).
    applied_at: f64,
    latest: Option<Evaluation>,
    /// Every evaluation of the step, in short.
    history: Vec<serde_json::Value>,
}

impl Judge {
    /// The judge of one shift; the gates are off for a one-step shift
    /// (there is no interval to judge).
    pub fn new(
        sdk: &aws_config::SdkConfig,
        verbose: bool,
        mut gates: MetricGates,
        gradual: bool,
    ) -> Judge {
        gates.enabled &= gradual;
        Judge {
            gates,
            cloudwatch: CloudWatch::new(sdk, verbose),
            subjects: Vec::new(),
            applied_at: unix_now(),
            latest: None,
            history: Vec::new(),
        }
    }

    /// Whether the metric gates judge this shift's steps.
    pub fn active(&self) -> bool {
        self.gates.enabled
    }

    /// Names the series (dimensions from the listener's and the target
    /// groups' ARNs) and asks for them once, before anything changes: a
    /// missing permission or a wrong endpoint stops the shift here.
    pub async fn prepare(
        &mut self,
        listing: &Listing,
        route: &str,
        view: &RouteView,
    ) -> anyhow::Result<()> {
        if !self.active() {
            return Ok(());
        }
        let load_balancer = load_balancer_dimension(&listing.listener_arn).ok_or_else(|| {
            usage(format!(
                "metric gates: the listener {} is not an Application Load Balancer's; set `[metrics] enabled = false`",
                listing.listener_arn
            ))
        })?;
        let dimension = |arn: &str| {
            target_group_dimension(arn).ok_or_else(|| {
                usage(format!(
                    "metric gates: {arn} is not a target group ARN; set `[metrics] enabled = false`"
                ))
            })
        };
        self.subjects = vec![Subject {
            route: route.to_owned(),
            load_balancer,
            service_tg: dimension(&view.service_tg)?,
            monolith_tg: dimension(&view.monolith_tg)?,
        }];
        let now = unix_now();
        let window = Window::new(now, now, self.gates.period);
        self.cloudwatch
            .metric_data(
                &queries(&self.subjects),
                window.baseline_from,
                window.to,
                window.period_s,
            )
            .await
            .map(|_| ())
            .map_err(|err| {
                err.context("metric gates: checked before the first step, nothing was changed")
            })
    }

    /// A step was applied: its window starts once `propagation_max` has
    /// passed (every load balancer node routes by the new weights by then),
    /// at the first period that begins after it, so that no traffic routed
    /// by the old weights is judged as the step's.
    pub fn applied(&mut self, propagation_max: Duration) {
        let period_s = self.gates.period.as_secs().max(1) as f64;
        let settled = unix_now() + propagation_max.as_secs_f64();
        self.applied_at = if propagation_max.is_zero() {
            settled
        } else {
            (settled / period_s).ceil() * period_s
        };
        self.latest = None;
        self.history.clear();
    }

    /// Nobody judged the route since `at` (Unix seconds; a hold or a killed
    /// run): the next evaluation covers the whole time since then, as
    /// CloudWatch kept it, so a fault during the unwatched time still fails.
    pub fn unwatched_since(&mut self, at: f64) {
        self.applied_at = at.min(unix_now());
        self.latest = None;
        self.history.clear();
    }

    /// Whether the step still waits for a passing evaluation.
    pub fn pending(&self) -> bool {
        self.active()
            && self
                .latest
                .as_ref()
                .is_none_or(|e| e.verdict != Verdict::Pass)
    }

    /// One evaluation: one GetMetricData call.
    pub async fn evaluate(&self) -> anyhow::Result<Evaluation> {
        let now = unix_now();
        let window = Window::new(self.applied_at, now, self.gates.period);
        let results = self
            .cloudwatch
            .metric_data(
                &queries(&self.subjects),
                window.baseline_from,
                window.to,
                window.period_s,
            )
            .await
            .map_err(|err| err.context("metric gates: the step could not be judged"))?;
        Ok(evaluate(
            0,
            &self.subjects,
            &results,
            window,
            now,
            &self.gates,
        ))
    }

    /// Keeps an evaluation and puts it in the step's evidence: the latest in
    /// full under `metrics`, every one in short under `metric_evaluations`.
    pub fn record(
        &mut self,
        evaluation: Evaluation,
        evidence: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        self.history.push(json!({
            "at": evaluation.at,
            "verdict": evaluation.verdict,
            "service_requests": evaluation.service.requests,
            "service_5xx": evaluation.service.target_5xx,
            "service_p99_s": evaluation.service.p99_s,
            "monolith_p99_s": evaluation.monolith.p99_s,
            "summary": evaluation.summary,
        }));
        evidence.insert("metrics".into(), json!(evaluation));
        evidence.insert(
            "metric_evaluations".into(),
            json!({ "count": self.history.len(), "calls": self.cloudwatch.calls(), "each": self.history }),
        );
        self.latest = Some(evaluation);
    }

    /// The reason to fail the step, when the latest evaluation failed.
    pub fn failed(&self) -> Option<String> {
        let latest = self.latest.as_ref()?;
        (latest.verdict == Verdict::Fail).then(|| format!("metric gate: {}", latest.summary))
    }

    /// The reason to fail the step when its wait for data ended without a
    /// pass (`on_inconclusive = "fail"`): a step never passes on no data.
    pub fn inconclusive(&self) -> Option<String> {
        if !self.pending() {
            return None;
        }
        Some(format!(
            "metric gates inconclusive after waiting {} past the interval (on_inconclusive = \"fail\"): {}",
            humantime::format_duration(self.gates.max_wait),
            self.latest_summary()
        ))
    }

    /// The latest evaluation's summary, or that there was none.
    pub fn latest_summary(&self) -> String {
        self.latest.as_ref().map_or_else(
            || "no evaluation yet".to_owned(),
            |latest| latest.summary.clone(),
        )
    }
}

/// How soon a rollback reached the traffic: the service's target group's
/// last request after the write, from CloudWatch's `RequestCount` at 1 s
/// periods (what the local ALB serves; on AWS, ALB metrics have 60 s
/// resolution, so the answer is usually `unmeasured`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RollbackReach {
    /// The service got no request later than `seconds` after the write.
    Reached { seconds: f64, watched_seconds: f64 },
    /// Requests still arrived `seconds` after the write when watching ended.
    NotReached { seconds: f64, watched_seconds: f64 },
    /// The service's requests had stopped before the write (it was failing:
    /// dead or unhealthy targets): there is no reach to measure. Its last
    /// request came `seconds_before` the write, at most.
    StoppedBefore {
        seconds_before: f64,
        watched_seconds: f64,
    },
    /// Nothing to measure (no requests before the write, or no metrics).
    Unmeasured { why: String },
}

impl RollbackReach {
    /// "rollback reached the data plane in 2.3 s" and the like.
    pub fn sentence(&self) -> String {
        match self {
            RollbackReach::Reached { seconds, .. } => {
                format!(
                    "rollback reached the data plane in {seconds:.1} s (the service's last request, CloudWatch at 1 s)"
                )
            }
            RollbackReach::NotReached {
                seconds,
                watched_seconds,
            } => format!(
                "rollback had not reached the whole data plane after {watched_seconds:.1} s: the service still got requests {seconds:.1} s after the write"
            ),
            RollbackReach::StoppedBefore { seconds_before, .. } => format!(
                "the service had stopped getting requests before the rollback (it was failing; its last request came {seconds_before:.1} s before the write): no reach to measure"
            ),
            RollbackReach::Unmeasured { why } => {
                format!("rollback's reach in the traffic not measured: {why}")
            }
        }
    }
}

/// How far before a rollback's write the service's requests are read: far
/// enough to see that a failing service had stopped getting them before it.
const ROLLBACK_LOOKBACK_SECONDS: i64 = 60;

/// How long after a second ends its count is complete: the local ALB's
/// counts are readable at once, the second included; this covers requests
/// whose clock was read just before the second ended.
const COUNTED_AFTER_SECONDS: f64 = 0.25;

/// How many requests the load balancer must get after the service's last
/// one, the service getting none of them, before the traffic shows that
/// the rollback reached every node: one request shows one node at most.
const REACH_EVIDENCE_REQUESTS: f64 = 10.0;

/// The watch's verdict so far: `None` while it goes on. Once the second of
/// the service's last request is over and counted, the watch waits for
/// [`REACH_EVIDENCE_REQUESTS`] requests at the load balancer in the counted
/// seconds after it (the service getting none): reached. At `deadline`:
/// fewer is unmeasured (with the count), and requests in a second not yet
/// over is not reached.
fn reach_so_far(
    service: &Series,
    balancer: &Series,
    written_at: f64,
    now: f64,
    deadline: f64,
) -> Option<RollbackReach> {
    let watched_seconds = now - written_at;
    let Some(last) = service
        .iter()
        .filter(|(_, value)| *value > 0.0)
        .map(|(second, _)| *second)
        .max()
    else {
        return Some(RollbackReach::Unmeasured {
            why: format!(
                "the service got no requests in the {ROLLBACK_LOOKBACK_SECONDS} s before the write, nor after it"
            ),
        });
    };
    // The last request came within second `last`: at most its end.
    let quiet = last + 1;
    if quiet as f64 <= written_at {
        // Its last second ended before the write. Once the write's own second
        // is counted, still without a request to it: its requests had stopped
        // before the write, if the load balancer got some meanwhile (they
        // went elsewhere); else nothing shows where traffic went.
        let write_second = written_at.floor() as i64;
        if (write_second + 1) as f64 + COUNTED_AFTER_SECONDS > now {
            return None;
        }
        let elsewhere = balancer
            .iter()
            .any(|(second, value)| (quiet..=write_second).contains(second) && *value > 0.0);
        let seconds_before = written_at - quiet as f64;
        return Some(if elsewhere {
            RollbackReach::StoppedBefore {
                seconds_before,
                watched_seconds,
            }
        } else {
            RollbackReach::Unmeasured {
                why: format!(
                    "the service's last request came {seconds_before:.1} s before the write, and the load balancer got none from then until the write to show where traffic went"
                ),
            }
        });
    }
    let seconds = quiet as f64 - written_at;
    // The last second whose count is complete.
    let counted_to = (now - COUNTED_AFTER_SECONDS).floor() as i64 - 1;
    let evidence: f64 = balancer
        .iter()
        .filter(|(second, _)| (quiet..=counted_to).contains(second))
        .map(|(_, value)| *value)
        .sum();
    if counted_to >= quiet && evidence >= REACH_EVIDENCE_REQUESTS {
        return Some(RollbackReach::Reached {
            seconds,
            watched_seconds,
        });
    }
    if now < deadline {
        return None;
    }
    Some(if counted_to < quiet {
        RollbackReach::NotReached {
            // At least this late: the last request came within its second.
            seconds: (last as f64 - written_at).max(0.0),
            watched_seconds,
        }
    } else {
        RollbackReach::Unmeasured {
            why: format!(
                "the service's last request came {seconds:.1} s after the write, and the load balancer got {} after it ({REACH_EVIDENCE_REQUESTS} are needed to show that every node routes away from the service)",
                crate::output::count(evidence as usize, "request", "requests")
            ),
        }
    })
}

/// Watches the service's target group after a rollback written at
/// `written_at` (Unix seconds), at 1 s periods: when did it get its last
/// request? The watch ends as soon as the load balancer's counted requests
/// after that one (the service getting none) show it, or at `within` after
/// the write plus two counted seconds.
pub async fn rollback_reach(
    cloudwatch: &CloudWatch,
    listing: &Listing,
    view: &RouteView,
    written_at: f64,
    within: Duration,
) -> RollbackReach {
    let (Some(load_balancer), Some(service_tg)) = (
        load_balancer_dimension(&listing.listener_arn),
        target_group_dimension(&view.service_tg),
    ) else {
        return RollbackReach::Unmeasured {
            why: "the listener or target group is not an Application Load Balancer's".into(),
        };
    };
    let queries = request_counts(service_tg, load_balancer);
    let from = written_at.floor() as i64 - ROLLBACK_LOOKBACK_SECONDS;
    // A request in the window's last second is followed by up to two
    // counted seconds of evidence before the watch gives up.
    let deadline = written_at + within.as_secs_f64() + 2.0 + COUNTED_AFTER_SECONDS;
    loop {
        let now = unix_now();
        let mut results = match cloudwatch
            .metric_data(&queries, from, now.ceil() as i64 + 1, 1)
            .await
        {
            Ok(results) => results,
            Err(err) => {
                return RollbackReach::Unmeasured {
                    why: format!("{err:#}"),
                };
            }
        };
        let service = results.remove("svc_requests").unwrap_or_default();
        let balancer = results.remove("lb_requests").unwrap_or_default();
        if let Some(reach) = reach_so_far(&service, &balancer, written_at, now, deadline) {
            return reach;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the traffic shows after a route's last change, for `status`: the
/// service's target group's and the load balancer's `RequestCount` per
/// metrics period. Only periods that begin once `propagation_max` has
/// passed since the change are evidence: before that, some nodes may still
/// route by the old rule, and a period in which one node of three had the
/// change proves nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum TrafficAfterChange {
    /// No counted period that begins after `propagation_max` yet: the change
    /// may still be reaching the load balancer's nodes. The traffic can
    /// confirm it from `confirms_from` (RFC 3339).
    Reaching {
        age_seconds: f64,
        confirms_from: String,
    },
    /// The traffic shows the new state: a route on the monolith's service
    /// got no request in a counted period after `propagation_max` in which
    /// the load balancer got some; a shifted one got requests then.
    Confirmed {
        service_requests: f64,
        balancer_requests: f64,
        after_seconds: f64,
    },
    /// Back on the monolith, and the service got no request after the
    /// change, but its requests had stopped before it (it was failing): its
    /// silence proves nothing about the change. `last_request_before_seconds`
    /// is how long before the change its last request came, when one came
    /// in the lookback read.
    StoppedBefore {
        last_request_before_seconds: Option<f64>,
        balancer_requests: f64,
    },
    /// `propagation_max` passed and the load balancer counted no request
    /// after it: nothing to judge by.
    NoTraffic { age_seconds: f64 },
    /// `propagation_max` passed and the traffic does not show the change.
    NotConfirmed {
        service_requests: f64,
        after_seconds: f64,
    },
}

impl TrafficAfterChange {
    /// The `traffic:` line of `status`, for the change the rule's last-change
    /// tag records (`change`, its `what`: `init: created rule ...`,
    /// `rollback to the monolith`, ...).
    pub fn sentence(&self, service_share: u8, propagation_max: Duration, change: &str) -> String {
        let max = humantime::format_duration(propagation_max);
        let parked_by_init = change.starts_with("init");
        let after = if change.contains("rollback") {
            "the rollback"
        } else {
            "the change"
        };
        match self {
            TrafficAfterChange::Reaching {
                age_seconds,
                confirms_from,
            } => format!(
                "applied, reaching the data plane (written {age_seconds:.0} s ago; the load balancer's nodes take up to {max} (propagation_max) to route by it; the traffic can confirm it from {})",
                clock_time(confirms_from)
            ),
            TrafficAfterChange::Confirmed {
                balancer_requests,
                after_seconds,
                ..
            } if service_share == 0 => format!(
                "applied; traffic confirms: the service got no request in the period {after_seconds:.0} s after the change (after {max}, propagation_max), in which the load balancer got {balancer_requests:.0}"
            ),
            TrafficAfterChange::Confirmed {
                service_requests,
                balancer_requests,
                after_seconds,
            } => format!(
                "applied; traffic confirms: the service got {service_requests:.0} of the load balancer's {balancer_requests:.0} requests in the period {after_seconds:.0} s after the change (after {max}, propagation_max)"
            ),
            // init parks a rule behind the monolith's: no request is what
            // it should get, not a sign that it was failing.
            TrafficAfterChange::StoppedBefore {
                last_request_before_seconds,
                ..
            } if parked_by_init => format!(
                "applied; parked by init: the service got no requests, as a parked route should{}",
                last_request_before_seconds
                    .map(|before| format!(" (its last request came {before:.0} s before init)"))
                    .unwrap_or_default()
            ),
            TrafficAfterChange::StoppedBefore {
                last_request_before_seconds: Some(before),
                ..
            } => format!(
                "applied; not confirmed by the traffic: the service got no requests after {after}; it was failing before it (its last request came {before:.0} s before the change)"
            ),
            TrafficAfterChange::StoppedBefore { .. } => format!(
                "applied; not confirmed by the traffic: the service got no requests after {after}, nor in the {TRAFFIC_LOOKBACK_SECONDS} s before it (it was failing, or the route had no traffic)"
            ),
            TrafficAfterChange::NoTraffic { age_seconds } => format!(
                "applied; no traffic to judge after {max} (propagation_max): the load balancer counted no request in the {age_seconds:.0} s since the change"
            ),
            TrafficAfterChange::NotConfirmed {
                service_requests,
                after_seconds,
            } if service_share == 0 => format!(
                "applied, but the traffic does not show it after {max} (propagation_max): the service still got {service_requests:.0} requests {after_seconds:.0} s after the change"
            ),
            TrafficAfterChange::NotConfirmed { .. } => format!(
                "applied, but the traffic does not show it after {max} (propagation_max): the service got no request after the change while the load balancer got some"
            ),
        }
    }
}

/// `HH:MM:SS UTC` of an RFC 3339 time (the time itself when it does not parse).
fn clock_time(rfc3339: &str) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| rfc3339.to_owned())
}

/// How far before a change `status` reads the service's requests: far
/// enough to tell a service that had stopped getting them (it was failing)
/// from one that the change emptied.
pub const TRAFFIC_LOOKBACK_SECONDS: i64 = 60;

/// The first second at which every node routes by a change written in second
/// `changed_at` (Unix seconds, the last-change tag's), and the first period
/// (`period_s`) that begins then or after: the first evidence.
pub fn evidence_from(changed_at: i64, period_s: i64, propagation_max: Duration) -> (i64, i64) {
    let settled = changed_at + 1 + propagation_max.as_secs_f64().ceil() as i64;
    let first_period = settled + (period_s - settled.rem_euclid(period_s)) % period_s;
    (settled, first_period)
}

/// Judges the traffic after a change written in second `changed_at` (Unix
/// seconds, the last-change tag's) that gave the service `service_share`
/// percent of the route, from per-period request counts (`period_s`).
/// Only periods that begin once `propagation_max` has passed since the
/// change and are counted by `now` are evidence.
pub fn judge_traffic(
    service_share: u8,
    service: &Series,
    balancer: &Series,
    (changed_at, period_s): (i64, i64),
    now: f64,
    propagation_max: Duration,
) -> TrafficAfterChange {
    // A fold from +0.0: an empty f64 sum is -0.0, printed "-0".
    let count = |series: &Series, period: i64| {
        series
            .iter()
            .filter(|(at, _)| *at == period)
            .fold(0.0, |sum, (_, value)| sum + value)
    };
    let counted = |period: i64| (period + period_s) as f64 + COUNTED_AFTER_SECONDS <= now;
    let (settled, first_period) = evidence_from(changed_at, period_s, propagation_max);
    let busy: Vec<i64> = balancer
        .iter()
        .filter(|(at, value)| *at >= first_period && *value > 0.0 && counted(*at))
        .map(|(at, _)| *at)
        .collect();
    let last_service = service
        .iter()
        .filter(|(_, value)| *value > 0.0)
        .map(|(at, _)| *at)
        .max();
    let evidence = busy.iter().copied().find(|at| {
        if service_share == 0 {
            last_service.is_none_or(|last| *at > last)
        } else {
            count(service, *at) > 0.0
        }
    });
    if let Some(at) = evidence {
        // Back on the monolith, but the service's last request came in a
        // period that ended before the change, and the load balancer got
        // requests after it and before the change: it had stopped before.
        let change_period = changed_at - changed_at.rem_euclid(period_s);
        let stopped_before = last_service.is_none_or(|last| {
            last + period_s <= changed_at
                && balancer
                    .iter()
                    .any(|(p, value)| *p > last && *p <= change_period && *value > 0.0)
        });
        if service_share == 0 && stopped_before {
            return TrafficAfterChange::StoppedBefore {
                last_request_before_seconds: last_service
                    .map(|last| (changed_at - (last + period_s)) as f64),
                balancer_requests: count(balancer, at),
            };
        }
        return TrafficAfterChange::Confirmed {
            service_requests: count(service, at),
            balancer_requests: count(balancer, at),
            after_seconds: (at - changed_at) as f64,
        };
    }
    let age_seconds = (now - changed_at as f64).max(0.0);
    if !counted(first_period) {
        return TrafficAfterChange::Reaching {
            age_seconds,
            confirms_from: time::OffsetDateTime::from_unix_timestamp(settled.max(first_period))
                .map(crate::journal::rfc3339)
                .unwrap_or_default(),
        };
    }
    match (busy.is_empty(), last_service) {
        (true, _) => TrafficAfterChange::NoTraffic { age_seconds },
        (false, Some(last)) if service_share == 0 => TrafficAfterChange::NotConfirmed {
            service_requests: count(service, last),
            after_seconds: (last - changed_at) as f64,
        },
        _ => TrafficAfterChange::NotConfirmed {
            service_requests: 0.0,
            after_seconds: age_seconds,
        },
    }
}

/// [`judge_traffic`] on CloudWatch: one `GetMetricData` of the service's
/// target group's and the load balancer's `RequestCount`, from
/// [`TRAFFIC_LOOKBACK_SECONDS`] before the change.
pub async fn traffic_after_change(
    cloudwatch: &CloudWatch,
    listing: &Listing,
    view: &RouteView,
    service_share: u8,
    (changed_at, period): (i64, Duration),
    propagation_max: Duration,
) -> anyhow::Result<TrafficAfterChange> {
    let (Some(load_balancer), Some(service_tg)) = (
        load_balancer_dimension(&listing.listener_arn),
        target_group_dimension(&view.service_tg),
    ) else {
        anyhow::bail!("the listener or target group is not an Application Load Balancer's");
    };
    let queries = request_counts(service_tg, load_balancer);
    let period_s = period.as_secs().max(1) as i64;
    let now = unix_now();
    // Periods aligned as CloudWatch aligns them, from the lookback's start.
    let start = changed_at - TRAFFIC_LOOKBACK_SECONDS.max(period_s);
    let from = start - start.rem_euclid(period_s);
    let mut results = cloudwatch
        .metric_data(&queries, from, now.ceil() as i64 + 1, period_s)
        .await?;
    let service = results.remove("svc_requests").unwrap_or_default();
    let balancer = results.remove("lb_requests").unwrap_or_default();
    Ok(judge_traffic(
        service_share,
        &service,
        &balancer,
        (changed_at, period_s),
        now,
        propagation_max,
    ))
}

/// The service's target group's and the whole load balancer's `RequestCount`
/// (`svc_requests`, `lb_requests`): what the traffic says after a change.
fn request_counts(service_tg: String, load_balancer: String) -> [Query; 2] {
    [
        Query {
            id: "svc_requests".into(),
            metric: "RequestCount",
            dimensions: vec![
                ("TargetGroup", service_tg),
                ("LoadBalancer", load_balancer.clone()),
            ],
            stat: "Sum",
        },
        Query {
            id: "lb_requests".into(),
            metric: "RequestCount",
            dimensions: vec![("LoadBalancer", load_balancer)],
            stat: "Sum",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2";
    const SVC: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/users/73e2d6bc24d8a067";
    const MONO: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/monolith/943f017f100becff";

    fn gates() -> MetricGates {
        MetricGates {
            enabled: true,
            period: Duration::from_secs(60),
            min_requests: 50,
            error_budget: 0.01,
            latency_ratio: 1.5,
            latency_allowance: Duration::from_millis(25),
            elb_5xx_budget: 0.001,
            max_wait: Duration::from_secs(300),
            on_inconclusive: crate::settings::OnInconclusive::Fail,
        }
    }

    fn subject() -> Vec<Subject> {
        vec![Subject {
            route: "users".into(),
            load_balancer: load_balancer_dimension(LISTENER).unwrap(),
            service_tg: target_group_dimension(SVC).unwrap(),
            monolith_tg: target_group_dimension(MONO).unwrap(),
        }]
    }

    /// Results with one data point per series at `t` (absent when `None`).
    fn results(values: &[(&str, Option<f64>)], t: i64) -> BTreeMap<String, Series> {
        values
            .iter()
            .filter_map(|(id, v)| v.map(|v| (id.to_string(), vec![(t, v)])))
            .collect()
    }

    fn healthy(svc_5xx: Option<f64>, svc_p99: f64) -> BTreeMap<String, Series> {
        results(
            &[
                ("r0_svc_requests", Some(100.0)),
                ("r0_svc_target_5xx", svc_5xx),
                ("r0_svc_p99", Some(svc_p99)),
                ("r0_mono_requests", Some(900.0)),
                ("r0_mono_target_5xx", None),
                ("r0_mono_p99", Some(0.010)),
                ("lb0_requests", Some(1000.0)),
                ("lb0_elb_5xx", None),
            ],
            120,
        )
    }

    #[test]
    fn dimensions_are_the_resource_parts_aws_publishes() {
        assert_eq!(
            load_balancer_dimension(LISTENER).as_deref(),
            Some("app/shop/50dc6c495c0c9188")
        );
        assert_eq!(
            load_balancer_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/shop/50dc6c495c0c9188"
            )
            .as_deref(),
            Some("app/shop/50dc6c495c0c9188")
        );
        assert_eq!(
            load_balancer_dimension("arn:aws:elasticloadbalancing:us-east-1:1:listener/net/x/1/2"),
            None
        );
        assert_eq!(
            target_group_dimension(SVC).as_deref(),
            Some("targetgroup/users/73e2d6bc24d8a067")
        );
        let queries = queries(&subject());
        assert_eq!(queries.len(), 8);
        let p99 = queries.iter().find(|q| q.id == "r0_svc_p99").unwrap();
        assert_eq!((p99.metric, p99.stat), ("TargetResponseTime", "p99"));
        assert_eq!(
            p99.dimensions,
            vec![
                (
                    "TargetGroup",
                    "targetgroup/users/73e2d6bc24d8a067".to_owned()
                ),
                ("LoadBalancer", "app/shop/50dc6c495c0c9188".to_owned()),
            ]
        );
        let elb = queries.iter().find(|q| q.id == "lb0_elb_5xx").unwrap();
        assert_eq!(elb.metric, "HTTPCode_ELB_5XX_Count");
        assert_eq!(
            elb.dimensions,
            vec![("LoadBalancer", "app/shop/50dc6c495c0c9188".to_owned())]
        );
    }

    #[test]
    fn the_window_starts_in_the_period_of_the_step_and_ends_after_now() {
        let w = Window::new(125.4, 185.0, Duration::from_secs(60));
        assert_eq!((w.baseline_from, w.from, w.to), (120 - 600, 120, 240));
        let w = Window::new(10.2, 10.5, Duration::from_secs(1));
        assert_eq!((w.from, w.to), (10, 11));
    }

    #[test]
    fn a_healthy_service_passes_and_says_why() {
        let window = Window::new(100.0, 130.0, Duration::from_secs(60));
        let e = evaluate(
            0,
            &subject(),
            &healthy(None, 0.012),
            window,
            130.0,
            &gates(),
        );
        assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
        assert_eq!(e.service.requests, 100.0);
        assert_eq!(e.service.error_rate, Some(0.0));
        assert_eq!(e.monolith.p99_s, Some(0.010));
    }

    #[test]
    fn five_percent_errors_fail_the_error_gate() {
        let window = Window::new(100.0, 130.0, Duration::from_secs(60));
        let e = evaluate(
            0,
            &subject(),
            &healthy(Some(5.0), 0.012),
            window,
            130.0,
            &gates(),
        );
        assert_eq!(e.verdict, Verdict::Fail);
        assert!(
            e.summary.starts_with("errors: service 5XX 5.00%"),
            "{}",
            e.summary
        );
    }

    #[test]
    fn a_slower_service_fails_the_latency_gate() {
        let window = Window::new(100.0, 130.0, Duration::from_secs(60));
        // 10 ms x 1.5 + 25 ms = 40 ms: 60 ms fails, 39 ms passes.
        let e = evaluate(
            0,
            &subject(),
            &healthy(None, 0.060),
            window,
            130.0,
            &gates(),
        );
        assert_eq!(e.verdict, Verdict::Fail);
        assert!(e.summary.starts_with("latency:"), "{}", e.summary);
        let e = evaluate(
            0,
            &subject(),
            &healthy(None, 0.039),
            window,
            130.0,
            &gates(),
        );
        assert_eq!(e.verdict, Verdict::Pass);
    }

    #[test]
    fn with_the_route_wholly_on_the_service_latency_has_no_baseline_and_errors_still_judge() {
        // A step down from 100% or a bake: the monolith got no requests.
        let window = Window::new(100.0, 130.0, Duration::from_secs(60));
        let mut results = healthy(None, 0.012);
        results.retain(|id, _| !id.starts_with("r0_mono"));
        let e = evaluate(0, &subject(), &results, window, 130.0, &gates());
        assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
        results.insert("r0_svc_target_5xx".into(), vec![(120, 5.0)]);
        let e = evaluate(0, &subject(), &results, window, 130.0, &gates());
        assert_eq!(e.verdict, Verdict::Fail, "{e:?}");
    }

    #[test]
    fn no_data_or_too_little_is_inconclusive_never_a_pass() {
        let window = Window::new(100.0, 130.0, Duration::from_secs(60));
        let none = evaluate(0, &subject(), &BTreeMap::new(), window, 130.0, &gates());
        assert_eq!(none.verdict, Verdict::Inconclusive);
        assert!(none.summary.contains("no requests"), "{}", none.summary);
        let mut few = healthy(None, 0.012);
        few.insert("r0_svc_requests".into(), vec![(120, 10.0)]);
        let few = evaluate(0, &subject(), &few, window, 130.0, &gates());
        assert_eq!(few.verdict, Verdict::Inconclusive);
        assert!(
            few.summary.contains("fewer than min_requests 50"),
            "{}",
            few.summary
        );
        // Data from before the window does not count.
        let old = evaluate(
            0,
            &subject(),
            &healthy(None, 0.012),
            Window::new(300.0, 310.0, Duration::from_secs(60)),
            310.0,
            &gates(),
        );
        assert_eq!(old.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn one_slow_period_is_weighed_by_its_requests() {
        let window = Window::new(100.0, 190.0, Duration::from_secs(60));
        let mut data = healthy(None, 0.012);
        // A cold first period (10 requests at 80 ms), then 90 at 12 ms.
        data.insert("r0_svc_requests".into(), vec![(60, 10.0), (120, 90.0)]);
        data.insert("r0_svc_p99".into(), vec![(60, 0.080), (120, 0.012)]);
        let window = Window { from: 60, ..window };
        let e = evaluate(0, &subject(), &data, window, 190.0, &gates());
        let p99 = e.service.p99_s.unwrap();
        assert!((p99 - 0.0188).abs() < 1e-9, "{p99}");
        assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
    }

    #[test]
    fn the_load_balancers_own_5xx_must_not_rise() {
        let window = Window::new(100.0, 130.0, Duration::from_secs(60));
        let mut data = healthy(None, 0.012);
        data.insert("lb0_elb_5xx".into(), vec![(0, 1.0), (120, 10.0)]);
        data.insert("lb0_requests".into(), vec![(0, 1000.0), (120, 1000.0)]);
        let e = evaluate(0, &subject(), &data, window, 130.0, &gates());
        assert_eq!(e.verdict, Verdict::Fail, "{e:?}");
        assert_eq!(e.load_balancer.baseline_rate, Some(0.001));
        assert!(e.summary.starts_with("elb_5xx:"), "{}", e.summary);
    }

    #[test]
    fn a_rollback_watch_ends_once_the_traffic_after_the_last_request_shows_it() {
        let written = 100.2;
        let deadline = written + 2.0 + 1.0 + COUNTED_AFTER_SECONDS;
        let service = vec![(99, 40.0), (100, 12.0)];
        // Second 101 is not complete yet at 101.9: watch on.
        let balancer = vec![(99, 80.0), (100, 60.0), (101, 70.0)];
        assert_eq!(
            reach_so_far(&service, &balancer, written, 101.9, deadline),
            None
        );
        // At 102.3 it is: the service's last request came in second 100.
        assert_eq!(
            reach_so_far(&service, &balancer, written, 102.3, deadline),
            Some(RollbackReach::Reached {
                seconds: 101.0 - written,
                watched_seconds: 102.3 - written
            })
        );
        // A quiet second without traffic shows nothing yet (a stalled
        // machine's second): watch on; nothing until the deadline, unmeasured.
        let idle = vec![(99, 80.0), (100, 60.0)];
        assert_eq!(
            reach_so_far(&service, &idle, written, 102.3, deadline),
            None
        );
        assert!(matches!(
            reach_so_far(&service, &idle, written, 103.5, deadline),
            Some(RollbackReach::Unmeasured { .. })
        ));
        // Traffic after a stalled second shows it: reached, from the last
        // request.
        let late = vec![(99, 80.0), (100, 60.0), (102, 40.0)];
        assert_eq!(
            reach_so_far(&service, &late, written, 103.3, deadline),
            Some(RollbackReach::Reached {
                seconds: 101.0 - written,
                watched_seconds: 103.3 - written
            })
        );
        // One request after the last shows one node at most: not enough.
        let thin = vec![(99, 80.0), (100, 60.0), (101, 1.0)];
        assert_eq!(
            reach_so_far(&service, &thin, written, 102.3, deadline),
            None
        );
        let Some(RollbackReach::Unmeasured { why }) =
            reach_so_far(&service, &thin, written, 103.5, deadline)
        else {
            panic!("thin evidence must be unmeasured")
        };
        assert!(why.contains("got 1 request after it"), "{why}");
        // Still requests at the deadline: not reached.
        let still = vec![(99, 40.0), (100, 12.0), (101, 3.0), (102, 1.0)];
        let busy = vec![(100, 60.0), (101, 70.0), (102, 50.0), (103, 50.0)];
        assert_eq!(reach_so_far(&still, &busy, written, 103.0, deadline), None);
        // Requests in second 102: at least 1.8 s after the write, never
        // more than the watch.
        let not_reached = reach_so_far(&still, &busy, written, 103.5, deadline);
        let Some(RollbackReach::NotReached {
            seconds,
            watched_seconds,
        }) = not_reached
        else {
            panic!("{not_reached:?}")
        };
        assert!((seconds - 1.8).abs() < 1e-9 && seconds <= watched_seconds);
        // No service request at all: nothing to measure, at once.
        assert!(matches!(
            reach_so_far(&Vec::new(), &busy, written, 100.5, deadline),
            Some(RollbackReach::Unmeasured { .. })
        ));
    }

    #[test]
    fn status_judges_a_change_by_the_traffic_after_propagation_max() {
        let max = Duration::from_secs(2);
        let changed = 100;
        let judge = |share, service: &Series, balancer: &Series, now| {
            judge_traffic(share, service, balancer, (changed, 1), now, max)
        };
        // Every node routes by the change from second 103 (its second, then
        // 2 s): the periods before prove nothing, whatever they show.
        assert_eq!(evidence_from(changed, 1, max), (103, 103));
        assert_eq!(evidence_from(changed, 60, max), (103, 120));
        // A rollback (share 0): requests until second 101 (a node still had
        // the old rule), none in 102, 103 while the load balancer got 50.
        let service = vec![(98, 9.0), (99, 9.0), (100, 9.0), (101, 4.0)];
        let balancer: Series = (98..105).map(|s| (s, 50.0)).collect();
        assert!(matches!(
            judge(0, &service, &balancer, 103.3),
            TrafficAfterChange::Reaching { .. }
        ));
        let reaching =
            judge(0, &service, &balancer, 103.3).sentence(0, max, "rollback to the monolith");
        assert!(
            reaching.contains("applied, reaching the data plane")
                && reaching.contains("from 00:01:43 UTC"),
            "{reaching}"
        );
        assert_eq!(
            judge(0, &service, &balancer, 104.3),
            TrafficAfterChange::Confirmed {
                service_requests: 0.0,
                balancer_requests: 50.0,
                after_seconds: 3.0
            }
        );
        // A shift (share 50): one node of three in second 101 is no
        // evidence; the service's requests from second 103 are.
        let shifted = vec![(101, 2.0), (103, 20.0)];
        assert!(matches!(
            judge(50, &shifted, &balancer, 102.5),
            TrafficAfterChange::Reaching { .. }
        ));
        assert_eq!(
            judge(50, &shifted, &balancer, 104.3),
            TrafficAfterChange::Confirmed {
                service_requests: 20.0,
                balancer_requests: 50.0,
                after_seconds: 3.0
            }
        );
        // No traffic: never confirmed; reaching, then nothing to judge.
        let none = Vec::new();
        assert!(matches!(
            judge(0, &none, &none, 101.0),
            TrafficAfterChange::Reaching { .. }
        ));
        assert_eq!(
            judge(50, &none, &none, 111.0),
            TrafficAfterChange::NoTraffic { age_seconds: 11.0 }
        );
        // Traffic before propagation_max is no evidence either.
        assert_eq!(
            judge(
                50,
                &none,
                &vec![(100, 70.0), (101, 70.0), (102, 70.0)],
                111.0
            ),
            TrafficAfterChange::NoTraffic { age_seconds: 11.0 }
        );
        // Past propagation_max with the service still getting requests.
        let busy: Series = (101..111).map(|s| (s, 50.0)).collect();
        let still: Series = (95..111).map(|s| (s, 5.0)).collect();
        assert_eq!(
            judge(0, &still, &busy, 111.5),
            TrafficAfterChange::NotConfirmed {
                service_requests: 5.0,
                after_seconds: 10.0
            }
        );
        assert!(matches!(
            judge(50, &none, &busy, 111.5),
            TrafficAfterChange::NotConfirmed { .. }
        ));
        assert!(
            judge(0, &still, &busy, 111.5)
                .sentence(0, max, "rollback to the monolith")
                .contains("still got 5 requests 10 s after the change")
        );
        // A rollback of a service that had stopped getting requests 4 s
        // before it (it was failing): its silence confirms nothing.
        let dead = vec![(90, 5.0), (95, 5.0)];
        let around: Series = (90..111).map(|s| (s, 50.0)).collect();
        let stopped = judge(0, &dead, &around, 111.5);
        assert_eq!(
            stopped,
            TrafficAfterChange::StoppedBefore {
                last_request_before_seconds: Some(4.0),
                balancer_requests: 50.0
            }
        );
        assert!(
            stopped
                .sentence(0, max, "rollback to the monolith")
                .contains(
                    "the service got no requests after the rollback; it was failing before it"
                ),
            "{stopped:?}"
        );
        // The same silence after init's parked rule is what it should get.
        let parked = judge(0, &Vec::new(), &around, 111.5);
        assert_eq!(
            parked.sentence(
                0,
                max,
                "init: created rule at priority 7 behind the monolith"
            ),
            "applied; parked by init: the service got no requests, as a parked route should"
        );
        // No negative zero anywhere: an empty count is +0.
        let json = serde_json::to_string(&judge(0, &service, &balancer, 104.3)).unwrap();
        assert!(!json.contains("-0"), "{json}");
        let text =
            judge(0, &service, &balancer, 104.3).sentence(0, max, "rollback to the monolith");
        assert!(!text.contains("-0"), "{text}");
    }

    #[test]
    fn a_rollback_of_a_service_that_had_stopped_getting_requests_has_no_reach() {
        let written = 100.2;
        let deadline = written + 2.0 + 1.0 + COUNTED_AFTER_SECONDS;
        // Killed: its last request in second 95, the load balancer busy.
        let service = vec![(94, 40.0), (95, 12.0)];
        let balancer: Series = (94..103).map(|s| (s, 50.0)).collect();
        // The write's own second (100) is not counted yet: watch on.
        assert_eq!(
            reach_so_far(&service, &balancer, written, 100.9, deadline),
            None
        );
        let reach = reach_so_far(&service, &balancer, written, 101.3, deadline).unwrap();
        assert!(
            matches!(reach, RollbackReach::StoppedBefore { seconds_before, .. } if (seconds_before - 4.2).abs() < 1e-9),
            "{reach:?}"
        );
        assert_eq!(json!(reach)["outcome"], "stopped_before");
        assert!(
            reach.sentence().contains(
                "the service had stopped getting requests before the rollback (it was failing"
            ),
            "{}",
            reach.sentence()
        );
        assert!(!reach.sentence().contains(" 0.0 s"), "{}", reach.sentence());
        // An idle route (no request anywhere since) shows nothing either way.
        let idle = vec![(94, 50.0), (95, 50.0)];
        assert!(matches!(
            reach_so_far(&service, &idle, written, 101.3, deadline),
            Some(RollbackReach::Unmeasured { .. })
        ));
    }
}
