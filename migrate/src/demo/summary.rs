//! The demo's closing summary: requests sent, where each route's requests
//! went, failures, differences, duration.

use std::fmt::Write as _;
use std::time::Duration;

/// One route's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    pub route: String,
    /// Requests the demo's clients sent.
    pub sent: u64,
    /// Interval probes `migrate shift` sent through the load balancer.
    pub probes: u64,
    /// Requests the load balancer sent to the route's service.
    pub to_service: u64,
    pub failed: u64,
    pub differed: u64,
}

impl RouteSummary {
    /// Requests the load balancer sent to the monolith: everything of the
    /// route (the demo's and the probes) that did not go to the service.
    pub fn to_monolith(&self) -> u64 {
        (self.sent + self.probes).saturating_sub(self.to_service)
    }
}

/// One metric gate evaluation of a shift, as the journal has it: the
/// values the step after it was judged by.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRow {
    pub route: String,
    /// The journal entry the evaluation judged, e.g. `shift to 50 percent`.
    pub before: String,
    pub verdict: String,
    pub service_requests: f64,
    pub service_5xx: f64,
    pub service_p99_ms: Option<f64>,
    pub monolith_p99_ms: Option<f64>,
    pub elb_5xx: f64,
}

impl GateRow {
    /// The row from a journal entry's evidence, when it holds an evaluation.
    pub fn from_entry(route: &str, what: &str, evidence: &serde_json::Value) -> Option<GateRow> {
        let metrics = evidence.get("metrics")?;
        let ms = |v: &serde_json::Value| v.as_f64().map(|s| s * 1000.0);
        Some(GateRow {
            route: route.to_owned(),
            before: what.to_owned(),
            verdict: metrics["verdict"].as_str().unwrap_or("unknown").to_owned(),
            service_requests: metrics["service"]["requests"].as_f64().unwrap_or(0.0),
            service_5xx: metrics["service"]["target_5xx"].as_f64().unwrap_or(0.0),
            service_p99_ms: ms(&metrics["service"]["p99_s"]),
            monolith_p99_ms: ms(&metrics["monolith"]["p99_s"]),
            elb_5xx: metrics["load_balancer"]["elb_5xx"].as_f64().unwrap_or(0.0),
        })
    }

    /// The header and the cells of the gates table.
    pub fn header() -> [&'static str; 8] {
        [
            "route",
            "before",
            "verdict",
            "service requests",
            "service 5XX",
            "service p99 ms",
            "monolith p99 ms",
            "LB 5XX",
        ]
    }

    pub fn cells(&self) -> [String; 8] {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        [
            self.route.clone(),
            self.before.clone(),
            self.verdict.clone(),
            format!("{}", self.service_requests),
            format!("{}", self.service_5xx),
            ms(self.service_p99_ms),
            ms(self.monolith_p99_ms),
            format!("{}", self.elb_5xx),
        ]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub routes: Vec<RouteSummary>,
    /// Every step's metric gate values, from the journal, in order.
    pub gates: Vec<GateRow>,
    /// Responses the load balancer generated itself (502, 503, 504).
    pub elb_errors: u64,
    /// How the migration ended (the users route's leaks and retire).
    pub ending: Option<String>,
    pub duration: Duration,
    /// The first failures and differences, described.
    pub problems: Vec<String>,
}

impl Summary {
    pub fn sent(&self) -> u64 {
        self.routes.iter().map(|r| r.sent).sum()
    }
    pub fn failed(&self) -> u64 {
        self.routes.iter().map(|r| r.failed).sum()
    }
    pub fn differed(&self) -> u64 {
        self.routes.iter().map(|r| r.differed).sum()
    }
    pub fn probes(&self) -> u64 {
        self.routes.iter().map(|r| r.probes).sum()
    }

    /// No request failed and no response differed from the monolith's.
    pub fn passed(&self) -> bool {
        self.failed() == 0 && self.differed() == 0 && self.elb_errors == 0 && self.sent() > 0
    }

    /// The rows of the table: a header, each route, the total.
    pub fn rows(&self) -> Vec<[String; 6]> {
        let mut rows = vec![[
            "route".to_owned(),
            "sent".to_owned(),
            "to its service".to_owned(),
            "to the monolith".to_owned(),
            "failed".to_owned(),
            "differed".to_owned(),
        ]];
        for route in &self.routes {
            rows.push([
                route.route.clone(),
                route.sent.to_string(),
                route.to_service.to_string(),
                route.to_monolith().to_string(),
                route.failed.to_string(),
                route.differed.to_string(),
            ]);
        }
        let to_service: u64 = self.routes.iter().map(|r| r.to_service).sum();
        let to_monolith: u64 = self.routes.iter().map(RouteSummary::to_monolith).sum();
        rows.push([
            "total".to_owned(),
            self.sent().to_string(),
            to_service.to_string(),
            to_monolith.to_string(),
            self.failed().to_string(),
            self.differed().to_string(),
        ]);
        rows
    }

    /// The plain-text table and verdict.
    pub fn text(&self) -> String {
        let rows = self.rows();
        let widths: Vec<usize> = (0..6)
            .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let mut line = format!("{:<width$}", row[0], width = widths[0]);
            for (cell, width) in row.iter().zip(&widths).skip(1) {
                let _ = write!(line, "  {cell:>width$}");
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out.push_str(&self.gates_text());
        out.push_str(&self.notes());
        out
    }

    /// The metric gates' values per step, one line each.
    pub fn gates_text(&self) -> String {
        let mut out = String::new();
        if self.gates.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "Metric gates (the load balancer's CloudWatch metrics, judged before each step):"
        );
        for gate in &self.gates {
            let [route, before, verdict, requests, errors, p99, monolith, elb] = gate.cells();
            let _ = writeln!(
                out,
                "  {route} before `{before}`: {verdict}: {requests} requests to the service, {errors} 5XX, p99 {p99} ms (monolith {monolith} ms), {elb} load-balancer 5XX"
            );
        }
        out
    }

    /// The lines under the table: totals, the probes note, the first
    /// problems and the verdict.
    pub fn notes(&self) -> String {
        let mut out = String::new();
        let seconds = self.duration.as_secs_f64();
        let _ = writeln!(
            out,
            "{} requests in {seconds:.1} s ({:.0}/s); {} failed, {} differed from the monolith, {} load-balancer errors",
            self.sent(),
            self.sent() as f64 / seconds.max(0.001),
            self.failed(),
            self.differed(),
            self.elb_errors
        );
        let _ = writeln!(
            out,
            "(where requests went is the load balancer's count; it includes the {} interval probes of `migrate shift`)",
            self.probes()
        );
        for problem in &self.problems {
            let _ = writeln!(out, "  {problem}");
        }
        if let Some(ending) = &self.ending {
            let _ = writeln!(out, "{ending}");
        }
        let _ = writeln!(
            out,
            "{}",
            if self.passed() {
                "PASS: no request failed and no response differed from the monolith's"
            } else {
                "FAIL: some requests failed or differed (see above)"
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn summary(failed: u64) -> Summary {
        Summary {
            routes: vec![
                RouteSummary {
                    route: "users".into(),
                    sent: 100,
                    probes: 20,
                    to_service: 70,
                    failed,
                    differed: 0,
                },
                RouteSummary {
                    route: "posts".into(),
                    sent: 50,
                    probes: 0,
                    to_service: 0,
                    failed: 0,
                    differed: 0,
                },
            ],
            gates: vec![],
            elb_errors: 0,
            ending: None,
            duration: Duration::from_secs(10),
            problems: vec![],
        }
    }

    #[test]
    fn each_steps_gate_values_are_listed() {
        let evidence = serde_json::json!({ "metrics": {
            "verdict": "pass",
            "service": { "requests": 12.0, "target_5xx": 0.0, "p99_s": 0.0021 },
            "monolith": { "requests": 100.0, "target_5xx": 0.0, "p99_s": 0.0019 },
            "load_balancer": { "elb_5xx": 0.0 },
        }});
        let mut with_gates = summary(0);
        with_gates.gates =
            vec![GateRow::from_entry("users", "shift to 50 percent", &evidence).unwrap()];
        assert!(GateRow::from_entry("users", "init", &serde_json::json!({})).is_none());
        let text = with_gates.text();
        assert!(
            text.contains("  users before `shift to 50 percent`: pass: 12 requests to the service, 0 5XX, p99 2.1 ms (monolith 1.9 ms), 0 load-balancer 5XX"),
            "{text}"
        );
    }

    #[test]
    fn the_table_splits_each_route_between_service_and_monolith() {
        let text = summary(0).text();
        let row = |name: &str| -> Vec<&str> {
            text.lines()
                .find(|line| line.starts_with(name))
                .map(|line| line.split_whitespace().collect())
                .unwrap_or_default()
        };
        assert_eq!(
            row("users"),
            ["users", "100", "70", "50", "0", "0"],
            "{text}"
        );
        assert_eq!(
            row("total"),
            ["total", "150", "70", "100", "0", "0"],
            "{text}"
        );
        assert!(text.starts_with("route  sent  to its service"), "{text}");
        assert!(
            text.contains("150 requests in 10.0 s (15/s); 0 failed"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "PASS: no request failed and no response differed from the monolith's\n"
            )
        );
    }

    #[test]
    fn one_failed_request_fails_the_demo() {
        assert!(summary(0).passed());
        let failed = summary(1);
        assert!(!failed.passed());
        assert!(failed.text().contains("FAIL"));
    }
}
