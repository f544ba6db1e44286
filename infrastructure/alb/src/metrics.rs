//! The local ALB's `/metrics` text (Prometheus exposition format): the metric
//! and label names, the label-value escaping, and the one parser every
//! consumer uses (the `migrate` demo, the chaos suite, the tests). The local
//! ALB renders with these names; nothing here does I/O.
//!
//! Series:
//! - [`REQUESTS_TOTAL`]`{target_group,rule,code_class}`: requests by target
//!   group name (empty for fixed-response and redirect rules), rule priority
//!   (`default` for the default rule) and status class of the answer (`2xx`).
//! - [`ELB_ERRORS_TOTAL`]`{code,reason}`: responses the load balancer
//!   generated itself because no target could answer.
//! - [`TARGET_CONNECT_RETRIES_TOTAL`]: requests sent to another target (or
//!   target group of a weighted forward) because connecting to the one they
//!   were routed to failed.
//! - [`TARGET_HEALTHY`]`{target_group,target}`: 1 when healthy, else 0.
//! - [`RULE_TABLE_GENERATION`]: how many routing tables were compiled (1 at
//!   start, +1 per publish).
//! - [`FAULTS_THROTTLED_TOTAL`]`{api,action}`: control-API requests the local
//!   ALB's fault injection answered with `Throttling` (`api` is `elbv2` or
//!   `cloudwatch`).
//! - [`FAULTS_TRANSIENT_ERRORS_TOTAL`]`{api,action,code,applied}`: requests it
//!   answered with a transient 500/503; `applied="true"` when the write was
//!   applied before the error (the answer was lost).
//! - [`PROPAGATION_PENDING_CHANGES`]`{node}`: accepted changes a simulated
//!   data-plane node has not applied yet (only with `--propagation`).
//! - [`PROPAGATION_NODE_GENERATION`]`{node}`: the routing table generation
//!   each node serves, counted as [`RULE_TABLE_GENERATION`] counts (only with
//!   `--propagation`): a node equal to it has every change.

use std::collections::BTreeMap;

pub const REQUESTS_TOTAL: &str = "ficus_alb_requests_total";
pub const ELB_ERRORS_TOTAL: &str = "ficus_alb_elb_errors_total";
pub const TARGET_CONNECT_RETRIES_TOTAL: &str = "ficus_alb_target_connect_retries_total";
pub const TARGET_HEALTHY: &str = "ficus_alb_target_healthy";
pub const RULE_TABLE_GENERATION: &str = "ficus_alb_rule_table_generation";
pub const FAULTS_THROTTLED_TOTAL: &str = "ficus_alb_faults_throttled_total";
pub const FAULTS_TRANSIENT_ERRORS_TOTAL: &str = "ficus_alb_faults_transient_errors_total";
pub const PROPAGATION_PENDING_CHANGES: &str = "ficus_alb_propagation_pending_changes";
pub const PROPAGATION_NODE_GENERATION: &str = "ficus_alb_propagation_node_generation";

/// Label names of the series above.
pub mod label {
    pub const TARGET_GROUP: &str = "target_group";
    pub const RULE: &str = "rule";
    pub const CODE_CLASS: &str = "code_class";
    pub const CODE: &str = "code";
    pub const REASON: &str = "reason";
    pub const TARGET: &str = "target";
    pub const API: &str = "api";
    pub const ACTION: &str = "action";
    pub const APPLIED: &str = "applied";
    pub const NODE: &str = "node";
}

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, `""` when the sample has none.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// The value as a count (negative and NaN count as 0).
    pub fn count(&self) -> u64 {
        self.value as u64
    }
}

/// Escapes a label value for the text format (`\`, `"` and newline).
pub fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every sample of the text, in order. Comments, blank lines and lines that
/// are not a well-formed sample are skipped, so a scrape never fails to parse.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads `a="x",b="y"}` into `labels`; returns what follows the `}`.
fn parse_labels<'t>(mut text: &'t str, labels: &mut BTreeMap<String, String>) -> Option<&'t str> {
    loop {
        text = text.trim_start_matches([',', ' ', '\t']);
        if let Some(after) = text.strip_prefix('}') {
            return Some(after);
        }
        let (name, after) = text.split_once('=')?;
        let after = after.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (index, '"') => break index + 1,
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        text = &after[end..];
    }
}

/// The samples of series `name`.
pub fn series<'s>(samples: &'s [Sample], name: &'s str) -> impl Iterator<Item = &'s Sample> {
    samples.iter().filter(move |sample| sample.name == name)
}

/// Requests answered, by target group (all rules and status classes).
pub fn requests_by_target_group(samples: &[Sample]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for sample in series(samples, REQUESTS_TOTAL) {
        *counts
            .entry(sample.label(label::TARGET_GROUP).to_owned())
            .or_default() += sample.count();
    }
    counts
}

/// Requests answered, by (target group, rule priority label), all status
/// classes together.
pub fn requests_by_target_group_and_rule(samples: &[Sample]) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for sample in series(samples, REQUESTS_TOTAL) {
        let key = (
            sample.label(label::TARGET_GROUP).to_owned(),
            sample.label(label::RULE).to_owned(),
        );
        *counts.entry(key).or_default() += sample.count();
    }
    counts
}

/// Responses the load balancer generated itself, by `code reason` (e.g.
/// `502 target_connection_failed`), zeros included.
pub fn elb_errors_by_reason(samples: &[Sample]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for sample in series(samples, ELB_ERRORS_TOTAL) {
        let reason = format!(
            "{} {}",
            sample.label(label::CODE),
            sample.label(label::REASON)
        );
        *counts.entry(reason).or_default() += sample.count();
    }
    counts
}

/// The value of a series without labels (e.g. [`RULE_TABLE_GENERATION`]).
pub fn single(samples: &[Sample], name: &str) -> Option<u64> {
    series(samples, name).next().map(Sample::count)
}

/// Target groups with a healthy target, and target groups seen at all, from
/// the [`TARGET_HEALTHY`] gauge, each in order of first appearance.
pub fn target_group_health(samples: &[Sample]) -> (Vec<String>, Vec<String>) {
    let mut healthy = Vec::new();
    let mut seen = Vec::new();
    for sample in series(samples, TARGET_HEALTHY) {
        let group = sample.label(label::TARGET_GROUP).to_owned();
        if sample.value == 1.0 && !healthy.contains(&group) {
            healthy.push(group.clone());
        }
        if !seen.contains(&group) {
            seen.push(group);
        }
    }
    (healthy, seen)
}

/// A scrape exactly as the local ALB renders it (its unit test
/// `metrics::tests::renders_the_example_scrape` renders the same counts and
/// compares), for consumers' tests: requests to `monolith` by rules 99
/// (700 2xx, 100 4xx), 1 (90) and default (5), to `users` by rule 1 (10) and
/// to `threads` by rule 2 (50); two `502 target_connection_failed`; one
/// retry; `users` healthy and `posts` not; generation 7.
pub const EXAMPLE_SCRAPE: &str = "\
# HELP ficus_alb_requests_total Requests answered, by target group, rule priority and status class.
# TYPE ficus_alb_requests_total counter
ficus_alb_requests_total{target_group=\"monolith\",rule=\"1\",code_class=\"2xx\"} 90
ficus_alb_requests_total{target_group=\"monolith\",rule=\"99\",code_class=\"2xx\"} 700
ficus_alb_requests_total{target_group=\"monolith\",rule=\"99\",code_class=\"4xx\"} 100
ficus_alb_requests_total{target_group=\"monolith\",rule=\"default\",code_class=\"2xx\"} 5
ficus_alb_requests_total{target_group=\"threads\",rule=\"2\",code_class=\"2xx\"} 50
ficus_alb_requests_total{target_group=\"users\",rule=\"1\",code_class=\"2xx\"} 10
# HELP ficus_alb_elb_errors_total Error responses generated by the load balancer, by status code and reason.
# TYPE ficus_alb_elb_errors_total counter
ficus_alb_elb_errors_total{code=\"503\",reason=\"no_registered_targets\"} 0
ficus_alb_elb_errors_total{code=\"503\",reason=\"no_listener\"} 0
ficus_alb_elb_errors_total{code=\"502\",reason=\"target_connection_failed\"} 2
ficus_alb_elb_errors_total{code=\"502\",reason=\"target_connection_error\"} 0
ficus_alb_elb_errors_total{code=\"504\",reason=\"target_timeout\"} 0
ficus_alb_elb_errors_total{code=\"460\",reason=\"client_closed\"} 0
# HELP ficus_alb_target_connect_retries_total Requests sent to another target because the connection to the first one failed (the request had not been sent).
# TYPE ficus_alb_target_connect_retries_total counter
ficus_alb_target_connect_retries_total 1
# HELP ficus_alb_target_healthy Whether a registered target is healthy (1) or not (0).
# TYPE ficus_alb_target_healthy gauge
ficus_alb_target_healthy{target_group=\"users\",target=\"127.0.0.1:1\"} 1
ficus_alb_target_healthy{target_group=\"posts\",target=\"127.0.0.1:2\"} 0
# HELP ficus_alb_rule_table_generation Routing tables compiled so far (1 at start, one more per published change).
# TYPE ficus_alb_rule_table_generation counter
ficus_alb_rule_table_generation 7
";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_example_scrape_reads_back_by_group_rule_reason_and_health() {
        let samples = parse(EXAMPLE_SCRAPE);
        assert_eq!(
            requests_by_target_group(&samples),
            BTreeMap::from([
                ("monolith".to_owned(), 895),
                ("threads".to_owned(), 50),
                ("users".to_owned(), 10),
            ])
        );
        assert_eq!(
            requests_by_target_group_and_rule(&samples)[&("monolith".to_owned(), "99".to_owned())],
            800
        );
        let errors = elb_errors_by_reason(&samples);
        assert_eq!(errors["502 target_connection_failed"], 2);
        assert_eq!(errors.values().sum::<u64>(), 2);
        assert_eq!(errors.len(), 6);
        assert_eq!(single(&samples, RULE_TABLE_GENERATION), Some(7));
        assert_eq!(single(&samples, TARGET_CONNECT_RETRIES_TOTAL), Some(1));
        assert_eq!(
            target_group_health(&samples),
            (
                vec!["users".to_owned()],
                vec!["users".to_owned(), "posts".to_owned()]
            )
        );
    }

    #[test]
    fn malformed_lines_are_skipped_not_fatal() {
        let text = "garbage\n{x=\"1\"} 2\nname{a=\"unterminated} 3\nname{a=\"1\"}\nname{a=\"1\"} x\n\
                    ok{a=\"1\"} 4 1700000000\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert_eq!(samples[0].name, "ok");
        assert_eq!(samples[0].label("a"), "1");
        assert_eq!(samples[0].count(), 4);
    }

    #[test]
    fn escaped_label_values_are_unescaped() {
        let samples = parse(r#"m{target_group="a\"b",rule="x\\y",c="p\nq",d="{}, "} 1"#);
        assert_eq!(samples[0].label("target_group"), "a\"b");
        assert_eq!(samples[0].label("rule"), "x\\y");
        assert_eq!(samples[0].label("c"), "p\nq");
        assert_eq!(samples[0].label("d"), "{}, ");
    }

    proptest! {
        #[test]
        fn any_label_value_survives_escape_and_parse(value in "\\PC*", other in "[a-z\"\\\\{}, =]*", count in 0u64..1 << 40) {
            let line = format!(
                "{REQUESTS_TOTAL}{{{}=\"{}\",{}=\"{}\"}} {count}",
                label::TARGET_GROUP,
                escape_label_value(&value),
                label::RULE,
                escape_label_value(&other),
            );
            let samples = parse(&line);
            prop_assert_eq!(samples.len(), 1);
            prop_assert_eq!(samples[0].label(label::TARGET_GROUP), value.as_str());
            prop_assert_eq!(samples[0].label(label::RULE), other.as_str());
            prop_assert_eq!(samples[0].count(), count);
        }

        #[test]
        fn parse_never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }
    }
}
