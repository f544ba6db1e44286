//! Data-plane metrics, rendered in the Prometheus text exposition format.
//!
//! The hot path only increments atomics: each compiled (rule, target group)
//! pair holds an `Arc<StatusClassCounters>` looked up once when the routing
//! table is compiled. Counters live in the registry for the life of the
//! process, so they keep counting across republished tables.
//!
//! Series:
//! - `ficus_alb_requests_total{target_group,rule,code_class}`: requests by
//!   target group name (empty for fixed-response and redirect rules), rule
//!   priority (`default` for the default rule) and status class of the answer.
//! - `ficus_alb_elb_errors_total{code,reason}`: responses the load balancer
//!   generated itself because no target could answer.
//! - `ficus_alb_target_connect_retries_total`: requests sent to another
//!   target (or target group of a weighted forward) because connecting to
//!   the one they were routed to failed.
//! - `ficus_alb_target_healthy{target_group,target}`: 1 when healthy, else 0.
//! - `ficus_alb_rule_table_generation`: how many routing tables were
//!   compiled (1 at start, +1 per publish).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Requests of one (rule, target group) pair, by status class 1xx..5xx.
#[derive(Debug, Default)]
pub struct StatusClassCounters([AtomicU64; 5]);

impl StatusClassCounters {
    pub fn record(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Why the load balancer answered a request itself with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElbError {
    /// 503: the chosen target group has no registered targets.
    NoRegisteredTargets,
    /// 503: no listener is configured.
    NoListener,
    /// 502: the connection to the target failed (refused, unreachable).
    TargetConnectionFailed,
    /// 502: the target closed or reset the connection, or sent a malformed
    /// response.
    TargetConnectionError,
    /// 504: the target did not respond within the target timeout.
    TargetTimeout,
}

impl ElbError {
    /// Why a forward found no target to send its request to: none
    /// registered, or none left to try after `attempts` could not connect.
    pub fn no_target_left(attempts: usize) -> ElbError {
        if attempts == 0 {
            ElbError::NoRegisteredTargets
        } else {
            ElbError::TargetConnectionFailed
        }
    }

    const ALL: [ElbError; 5] = [
        ElbError::NoRegisteredTargets,
        ElbError::NoListener,
        ElbError::TargetConnectionFailed,
        ElbError::TargetConnectionError,
        ElbError::TargetTimeout,
    ];

    pub fn status(self) -> http::StatusCode {
        match self {
            ElbError::NoRegisteredTargets | ElbError::NoListener => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            ElbError::TargetConnectionFailed | ElbError::TargetConnectionError => {
                http::StatusCode::BAD_GATEWAY
            }
            ElbError::TargetTimeout => http::StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ElbError::NoRegisteredTargets => "no_registered_targets",
            ElbError::NoListener => "no_listener",
            ElbError::TargetConnectionFailed => "target_connection_failed",
            ElbError::TargetConnectionError => "target_connection_error",
            ElbError::TargetTimeout => "target_timeout",
        }
    }
}

/// One target's health, for the health gauge.
pub struct TargetHealthSample<'a> {
    pub target_group: &'a str,
    pub target: String,
    pub healthy: bool,
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String), Arc<StatusClassCounters>>>,
    elb_errors: [AtomicU64; ElbError::ALL.len()],
    retries: AtomicU64,
    generation: AtomicU64,
}

impl Metrics {
    /// The counters of one (target group, rule) pair, created on first use.
    pub fn requests(&self, target_group: &str, rule: &str) -> Arc<StatusClassCounters> {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests
            .entry((target_group.to_owned(), rule.to_owned()))
            .or_default()
            .clone()
    }

    pub fn record_elb_error(&self, error: ElbError) {
        self.elb_errors[error as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request sent to another target because the connection to
    /// the one it was routed to failed.
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn elb_errors(&self, error: ElbError) -> u64 {
        self.elb_errors[error as usize].load(Ordering::Relaxed)
    }

    /// Counts one more compiled routing table; returns its generation.
    pub fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn render<'a>(&self, health: impl IntoIterator<Item = TargetHealthSample<'a>>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP ficus_alb_requests_total Requests answered, by target group, rule priority and status class.\n");
        out.push_str("# TYPE ficus_alb_requests_total counter\n");
        {
            let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            for ((target_group, rule), counters) in requests.iter() {
                for (index, count) in counters.0.iter().enumerate() {
                    let count = count.load(Ordering::Relaxed);
                    if count > 0 {
                        let _ = writeln!(
                            out,
                            "ficus_alb_requests_total{{target_group=\"{}\",rule=\"{}\",code_class=\"{}xx\"}} {count}",
                            escape(target_group),
                            escape(rule),
                            index + 1
                        );
                    }
                }
            }
        }
        out.push_str("# HELP ficus_alb_elb_errors_total Error responses generated by the load balancer, by status code and reason.\n");
        out.push_str("# TYPE ficus_alb_elb_errors_total counter\n");
        for error in ElbError::ALL {
            let _ = writeln!(
                out,
                "ficus_alb_elb_errors_total{{code=\"{}\",reason=\"{}\"}} {}",
                error.status().as_u16(),
                error.label(),
                self.elb_errors(error)
            );
        }
        write_single(
            &mut out,
            "ficus_alb_target_connect_retries_total",
            "Requests sent to another target because the connection to the first one failed (the request had not been sent).",
            "counter",
            self.retries.load(Ordering::Relaxed),
        );
        out.push_str("# HELP ficus_alb_target_healthy Whether a registered target is healthy (1) or not (0).\n");
        out.push_str("# TYPE ficus_alb_target_healthy gauge\n");
        for sample in health {
            let _ = writeln!(
                out,
                "ficus_alb_target_healthy{{target_group=\"{}\",target=\"{}\"}} {}",
                escape(sample.target_group),
                escape(&sample.target),
                u8::from(sample.healthy)
            );
        }
        write_single(
            &mut out,
            "ficus_alb_rule_table_generation",
            "Routing tables compiled so far (1 at start, one more per published change).",
            "counter",
            self.generation.load(Ordering::Relaxed),
        );
        out
    }
}

/// A metric without labels: its HELP and TYPE lines and its one sample.
fn write_single(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
