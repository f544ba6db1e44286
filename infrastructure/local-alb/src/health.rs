//! Target health: the success-code matcher, the per-target state machine and
//! the HTTP probe. The state machine is pure; the probe does one request.
//!
//! States and reasons follow DescribeTargetHealth:
//! - `initial` (`Elb.RegistrationInProgress`) until a threshold is reached,
//! - `healthy` after `healthy_threshold` consecutive successful probes,
//! - `unhealthy` after `unhealthy_threshold` consecutive failed probes, with
//!   `Target.ResponseCodeMismatch` (wrong status), `Target.Timeout` (no
//!   response within the timeout) or `Target.FailedHealthChecks` (connection
//!   failure),
//! - `draining` (`Target.DeregistrationInProgress`) after deregistration,
//! - `unused` (`Target.NotRegistered`) for a target that is not registered.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::model::HealthCheck;

/// The set of HTTP status codes a health check accepts, AWS syntax:
/// `200`, `200,202`, `200-299` (ranges and lists may be combined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessCodes(Vec<(u16, u16)>);

impl SuccessCodes {
    /// Parses the matcher; `None` when it is not a list of codes or ranges
    /// within 200..=499 (what ALB accepts for HTTP health checks).
    pub fn parse(matcher: &str) -> Option<SuccessCodes> {
        let code = |text: &str| {
            text.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (200..=499).contains(c))
        };
        let mut ranges = Vec::new();
        for part in matcher.split(',') {
            let range = match part.split_once('-') {
                Some((low, high)) => (code(low)?, code(high)?),
                None => {
                    let c = code(part)?;
                    (c, c)
                }
            };
            if range.0 > range.1 {
                return None;
            }
            ranges.push(range);
        }
        Some(SuccessCodes(ranges))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&status))
    }
}

impl Default for SuccessCodes {
    /// `200`, ALB's default.
    fn default() -> Self {
        SuccessCodes(vec![(200, 200)])
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    /// The target answered with a status outside the success codes.
    ResponseCodeMismatch(u16),
    /// No response within the health check timeout.
    Timeout,
    /// The connection failed (refused, reset, closed early).
    ConnectionFailed,
}

/// The state a target is in, as DescribeTargetHealth names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthState {
    Initial = 0,
    Healthy = 1,
    Unhealthy = 2,
    Draining = 3,
}

impl HealthState {
    pub fn as_api_str(self) -> &'static str {
        match self {
            HealthState::Initial => "initial",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Draining => "draining",
        }
    }

    pub fn from_u8(value: u8) -> HealthState {
        match value {
            1 => HealthState::Healthy,
            2 => HealthState::Unhealthy,
            3 => HealthState::Draining,
            _ => HealthState::Initial,
        }
    }
}

/// The consecutive-probe state machine of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    pub state: HealthState,
    pub reason: Option<&'static str>,
    pub description: Option<String>,
    consecutive_successes: u32,
    consecutive_failures: u32,
}

impl Default for HealthTracker {
    fn default() -> Self {
        HealthTracker {
            state: HealthState::Initial,
            reason: Some("Elb.RegistrationInProgress"),
            description: Some("Target registration is in progress".to_owned()),
            consecutive_successes: 0,
            consecutive_failures: 0,
        }
    }
}

impl HealthTracker {
    /// Records one probe outcome under the given thresholds.
    pub fn record(
        &mut self,
        outcome: ProbeOutcome,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) {
        if self.state == HealthState::Draining {
            return;
        }
        if outcome == ProbeOutcome::Success {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            if self.state != HealthState::Healthy
                && self.consecutive_successes >= healthy_threshold.max(1)
            {
                self.state = HealthState::Healthy;
                self.reason = None;
                self.description = None;
            }
            return;
        }
        self.consecutive_successes = 0;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.state == HealthState::Unhealthy
            || self.consecutive_failures >= unhealthy_threshold.max(1)
        {
            self.state = HealthState::Unhealthy;
            let (reason, description) = match outcome {
                ProbeOutcome::ResponseCodeMismatch(code) => (
                    "Target.ResponseCodeMismatch",
                    format!("Health checks failed with these codes: [{code}]"),
                ),
                ProbeOutcome::Timeout => ("Target.Timeout", "Request timed out".to_owned()),
                _ => (
                    "Target.FailedHealthChecks",
                    "Health checks failed".to_owned(),
                ),
            };
            self.reason = Some(reason);
            self.description = Some(description);
        }
    }

    /// A forwarded request could not connect to the target: unhealthy at
    /// once, without waiting for the unhealthy threshold (a deviation from
    /// ALB, which keeps routing to the target until its health checks fail).
    /// Healthy again after `healthy_threshold` successful checks.
    pub fn mark_unreachable(&mut self, error: &std::io::Error) {
        if self.state == HealthState::Draining {
            return;
        }
        self.state = HealthState::Unhealthy;
        self.consecutive_successes = 0;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.reason = Some("Target.FailedHealthChecks");
        self.description = Some(format!("Forwarding a request failed to connect: {error}"));
    }

    /// Marks the target as deregistered.
    pub fn drain(&mut self) {
        self.state = HealthState::Draining;
        self.reason = Some("Target.DeregistrationInProgress");
        self.description = Some("Target deregistration is in progress".to_owned());
    }
}

/// The HTTP client health probes use: a fresh connection per probe, like ALB.
pub type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

pub fn probe_client() -> ProbeClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// Sends one health check request to `authority` (`host:port`).
pub async fn probe(client: &ProbeClient, authority: &str, check: &HealthCheck) -> ProbeOutcome {
    let path = if check.path.starts_with('/') {
        check.path.as_str()
    } else {
        "/"
    };
    let Ok(request) = http::Request::get(format!("http://{authority}{path}"))
        .header(http::header::USER_AGENT, "ELB-HealthChecker/2.0")
        .body(Empty::new())
    else {
        return ProbeOutcome::ConnectionFailed;
    };
    let timeout = Duration::from_secs(u64::from(check.timeout_seconds.max(1)));
    match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => ProbeOutcome::Timeout,
        Ok(Err(_)) => ProbeOutcome::ConnectionFailed,
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            let codes = SuccessCodes::parse(&check.matcher).unwrap_or_default();
            if codes.contains(status) {
                ProbeOutcome::Success
            } else {
                ProbeOutcome::ResponseCodeMismatch(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_code_matchers_parse_aws_syntax() {
        let cases: &[(&str, &[(u16, bool)])] = &[
            ("200", &[(200, true), (201, false), (404, false)]),
            ("200,202", &[(200, true), (201, false), (202, true)]),
            (
                "200-299",
                &[
                    (199, false),
                    (200, true),
                    (250, true),
                    (299, true),
                    (300, false),
                ],
            ),
            ("200-204,404", &[(204, true), (205, false), (404, true)]),
        ];
        for (matcher, statuses) in cases {
            let codes = SuccessCodes::parse(matcher).unwrap_or_else(|| panic!("{matcher} parses"));
            for (status, expected) in *statuses {
                assert_eq!(
                    codes.contains(*status),
                    *expected,
                    "{matcher} contains {status}"
                );
            }
        }
        for invalid in ["", "abc", "299-200", "200-", "100", "600", "200,,202"] {
            assert_eq!(
                SuccessCodes::parse(invalid),
                None,
                "{invalid:?} should not parse"
            );
        }
    }

    #[test]
    fn health_tracker_follows_thresholds_and_reasons() {
        let mut tracker = HealthTracker::default();
        assert_eq!(tracker.state, HealthState::Initial);
        assert_eq!(tracker.reason, Some("Elb.RegistrationInProgress"));

        tracker.record(ProbeOutcome::Success, 2, 3);
        assert_eq!(
            tracker.state,
            HealthState::Initial,
            "one success is not enough"
        );
        tracker.record(ProbeOutcome::Success, 2, 3);
        assert_eq!(
            (tracker.state, tracker.reason),
            (HealthState::Healthy, None)
        );

        tracker.record(ProbeOutcome::Timeout, 2, 3);
        tracker.record(ProbeOutcome::Timeout, 2, 3);
        assert_eq!(tracker.state, HealthState::Healthy, "two of three failures");
        tracker.record(ProbeOutcome::Success, 2, 3);
        tracker.record(ProbeOutcome::Timeout, 2, 3);
        tracker.record(ProbeOutcome::Timeout, 2, 3);
        assert_eq!(
            tracker.state,
            HealthState::Healthy,
            "a success resets the count"
        );
        tracker.record(ProbeOutcome::Timeout, 2, 3);
        assert_eq!(
            (tracker.state, tracker.reason),
            (HealthState::Unhealthy, Some("Target.Timeout"))
        );
        tracker.record(ProbeOutcome::ResponseCodeMismatch(503), 2, 3);
        assert_eq!(tracker.reason, Some("Target.ResponseCodeMismatch"));
        assert_eq!(
            tracker.description.as_deref(),
            Some("Health checks failed with these codes: [503]")
        );
        tracker.record(ProbeOutcome::ConnectionFailed, 2, 3);
        assert_eq!(tracker.reason, Some("Target.FailedHealthChecks"));

        tracker.drain();
        tracker.record(ProbeOutcome::Success, 1, 1);
        assert_eq!(
            (tracker.state, tracker.reason),
            (
                HealthState::Draining,
                Some("Target.DeregistrationInProgress")
            )
        );
    }
}
