//! Data-plane metrics, rendered in the Prometheus text exposition format.
//!
//! The hot path only increments atomics: each compiled (rule, target group)
//! pair holds an `Arc<StatusClassCounters>` looked up once when the routing
//! table is compiled. Counters live in the registry for the life of the
//! process, so they keep counting across republished tables.
//!
//! The series, their label names and the text's escaping are defined once in
//! [`alb::metrics`], whose parser every consumer of `/metrics` uses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use alb::metrics::{
    ELB_ERRORS_TOTAL, REQUESTS_TOTAL, RULE_TABLE_GENERATION, TARGET_CONNECT_RETRIES_TOTAL,
    TARGET_HEALTHY, escape_label_value as escape, label,
};

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
    /// 460: the client closed its connection before the answer (no answer
    /// is sent; AWS logs and counts it).
    ClientClosed,
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

    const ALL: [ElbError; 6] = [
        ElbError::NoRegisteredTargets,
        ElbError::NoListener,
        ElbError::TargetConnectionFailed,
        ElbError::TargetConnectionError,
        ElbError::TargetTimeout,
        ElbError::ClientClosed,
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
            ElbError::ClientClosed => {
                http::StatusCode::from_u16(460).unwrap_or(http::StatusCode::BAD_REQUEST)
            }
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ElbError::NoRegisteredTargets => "no_registered_targets",
            ElbError::NoListener => "no_listener",
            ElbError::TargetConnectionFailed => "target_connection_failed",
            ElbError::TargetConnectionError => "target_connection_error",
            ElbError::TargetTimeout => "target_timeout",
            ElbError::ClientClosed => "client_closed",
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
        write_header(
            &mut out,
            REQUESTS_TOTAL,
            "Requests answered, by target group, rule priority and status class.",
            "counter",
        );
        {
            let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            for ((target_group, rule), counters) in requests.iter() {
                for (index, count) in counters.0.iter().enumerate() {
                    let count = count.load(Ordering::Relaxed);
                    if count > 0 {
                        let _ = writeln!(
                            out,
                            "{REQUESTS_TOTAL}{{{}=\"{}\",{}=\"{}\",{}=\"{}xx\"}} {count}",
                            label::TARGET_GROUP,
                            escape(target_group),
                            label::RULE,
                            escape(rule),
                            label::CODE_CLASS,
                            index + 1
                        );
                    }
                }
            }
        }
        write_header(
            &mut out,
            ELB_ERRORS_TOTAL,
            "Error responses generated by the load balancer, by status code and reason.",
            "counter",
        );
        for error in ElbError::ALL {
            let _ = writeln!(
                out,
                "{ELB_ERRORS_TOTAL}{{{}=\"{}\",{}=\"{}\"}} {}",
                label::CODE,
                error.status().as_u16(),
                label::REASON,
                error.label(),
                self.elb_errors(error)
            );
        }
        write_single(
            &mut out,
            TARGET_CONNECT_RETRIES_TOTAL,
            "Requests sent to another target because the connection to the first one failed (the request had not been sent).",
            "counter",
            self.retries.load(Ordering::Relaxed),
        );
        write_header(
            &mut out,
            TARGET_HEALTHY,
            "Whether a registered target is healthy (1) or not (0).",
            "gauge",
        );
        for sample in health {
            let _ = writeln!(
                out,
                "{TARGET_HEALTHY}{{{}=\"{}\",{}=\"{}\"}} {}",
                label::TARGET_GROUP,
                escape(sample.target_group),
                label::TARGET,
                escape(&sample.target),
                u8::from(sample.healthy)
            );
        }
        write_single(
            &mut out,
            RULE_TABLE_GENERATION,
            "Routing tables compiled so far (1 at start, one more per published change).",
            "counter",
            self.generation.load(Ordering::Relaxed),
        );
        out
    }
}

/// A metric's HELP and TYPE lines.
fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric without labels: its HELP and TYPE lines and its one sample.
fn write_single(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    write_header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use alb::metrics;

    /// The counts `alb::metrics::EXAMPLE_SCRAPE` describes, recorded here.
    fn example() -> Metrics {
        let metrics = Metrics::default();
        let record = |group: &str, rule: &str, status: u16, times: usize| {
            let counters = metrics.requests(group, rule);
            (0..times).for_each(|_| counters.record(status));
        };
        record("monolith", "99", 200, 700);
        record("monolith", "99", 404, 100);
        record("monolith", "1", 200, 90);
        record("users", "1", 204, 10);
        record("threads", "2", 200, 50);
        record("monolith", "default", 200, 5);
        metrics.record_elb_error(ElbError::TargetConnectionFailed);
        metrics.record_elb_error(ElbError::TargetConnectionFailed);
        metrics.record_retry();
        (0..7).for_each(|_| {
            metrics.next_generation();
        });
        metrics
    }

    fn health() -> Vec<TargetHealthSample<'static>> {
        vec![
            TargetHealthSample {
                target_group: "users",
                target: "127.0.0.1:1".to_owned(),
                healthy: true,
            },
            TargetHealthSample {
                target_group: "posts",
                target: "127.0.0.1:2".to_owned(),
                healthy: false,
            },
        ]
    }

    /// The consumers' tests read `EXAMPLE_SCRAPE`; this keeps it the
    /// producer's real output.
    #[test]
    fn renders_the_example_scrape() {
        assert_eq!(example().render(health()), metrics::EXAMPLE_SCRAPE);
    }

    #[test]
    fn the_rendered_text_parses_back_to_what_was_recorded() {
        let metrics = example();
        let weird = metrics.requests("a \"quoted\" \\ group\nname", "3");
        weird.record(503);
        let samples = metrics::parse(&metrics.render(health()));
        let by_group = metrics::requests_by_target_group(&samples);
        assert_eq!(by_group["a \"quoted\" \\ group\nname"], 1);
        assert_eq!(by_group["monolith"], 895);
        assert_eq!(
            metrics::elb_errors_by_reason(&samples)["502 target_connection_failed"],
            2
        );
        assert_eq!(
            metrics::single(&samples, metrics::RULE_TABLE_GENERATION),
            Some(7)
        );
        let (healthy, seen) = metrics::target_group_health(&samples);
        assert_eq!(
            (healthy, seen),
            (
                vec!["users".to_owned()],
                vec!["users".to_owned(), "posts".to_owned()]
            )
        );
        let five_xx = metrics::series(&samples, metrics::REQUESTS_TOTAL)
            .find(|s| s.label(metrics::label::CODE_CLASS) == "5xx")
            .expect("a 5xx sample");
        assert_eq!(five_xx.label(metrics::label::RULE), "3");
    }
}
