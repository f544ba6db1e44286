//! Reports of a parity run: grouped by endpoint template, then by location;
//! as text for people, JSON and JUnit XML for machines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::compare::{Kind, Location, Suppression};
use crate::request::{RequestSet, SourceSummary};
use crate::run::{Outcome, Run, Side, Sides};

/// `1 request`, `2 requests`.
fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn requests(count: usize) -> String {
    counted(count, "request")
}

/// Examples kept per group.
pub const EXAMPLES_PER_GROUP: usize = 3;

/// One difference as an example: which request, and both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// `METHOD /path`.
    pub request: String,
    /// The baseline's side.
    pub baseline: String,
    /// The candidate's side.
    pub candidate: String,
}

/// The differences of one kind at one location, over an endpoint's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DifferenceGroup {
    /// `status`, `header NAME` or `body POINTER`.
    pub location: Location,
    /// The kind of difference.
    pub kind: Kind,
    /// Why it does not count; `None` for differences that fail the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// How many requests had it.
    pub count: usize,
    /// Up to three of them.
    pub examples: Vec<Example>,
}

/// Requests that got no answer from one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureGroup {
    /// The side that failed.
    pub side: Side,
    /// How many requests.
    pub count: usize,
    /// Up to three, as `METHOD /path: error`.
    pub examples: Vec<String>,
}

/// The outcome of one endpoint template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointReport {
    /// Like `GET /api/users/{id}`.
    pub template: String,
    /// Requests sent.
    pub requests: usize,
    /// Requests whose answers matched (after suppression).
    pub matched: usize,
    /// Requests whose answers differed.
    pub differed: usize,
    /// Requests a side failed to answer.
    pub failed: usize,
    /// Differences that fail the run.
    pub differences: Vec<DifferenceGroup>,
    /// Differences that were suppressed, with their reason.
    pub suppressed: Vec<DifferenceGroup>,
    /// Requests that failed.
    pub failures: Vec<FailureGroup>,
}

impl EndpointReport {
    /// Whether every request of this endpoint matched.
    pub fn passed(&self) -> bool {
        self.differed == 0 && self.failed == 0
    }
}

/// The outcome of verifying one route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteReport {
    /// The route's name in `migrate.toml`.
    pub route: String,
    /// What was compared.
    pub sides: Sides,
    /// Requests sent (each to the baseline twice and to the candidate once).
    pub requests: usize,
    /// Requests whose answers matched.
    pub matched: usize,
    /// Requests whose answers differed.
    pub differed: usize,
    /// Requests a side failed to answer.
    pub failed: usize,
    /// Differences suppressed (ignored, noise, unordered...), over all requests.
    pub suppressed: usize,
    /// Wall-clock seconds.
    pub elapsed_seconds: f64,
    /// Requests compared per second.
    pub pairs_per_second: f64,
    /// Where the requests came from, and what was skipped.
    pub inputs: Vec<SourceSummary>,
    /// Requests dropped as duplicates of earlier ones.
    pub duplicates: usize,
    /// One per endpoint template, by template.
    pub endpoints: Vec<EndpointReport>,
}

#[derive(Default)]
struct GroupBuilder {
    count: usize,
    examples: Vec<Example>,
}

impl GroupBuilder {
    fn add(&mut self, example: impl FnOnce() -> Example) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_PER_GROUP {
            self.examples.push(example());
        }
    }
}

impl RouteReport {
    /// Groups a run's exchanges by endpoint template and location. Noise is
    /// applied here: a difference at a place where the two baseline answers of
    /// the same request, or of any request of the same template, differed is
    /// suppressed.
    pub fn build(route: &str, sides: &Sides, inputs: &RequestSet, run: &Run) -> Self {
        let mut by_template: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, exchange) in run.exchanges.iter().enumerate() {
            by_template
                .entry(exchange.request.template.as_str())
                .or_default()
                .push(index);
        }
        let endpoints: Vec<EndpointReport> = by_template
            .into_iter()
            .map(|(template, indexes)| {
                endpoint_report(template, indexes.iter().map(|&index| &run.exchanges[index]))
            })
            .collect();
        let sum = |field: fn(&EndpointReport) -> usize| endpoints.iter().map(field).sum::<usize>();
        let requests = run.exchanges.len();
        let elapsed_seconds = run.elapsed.as_secs_f64();
        Self {
            route: route.to_owned(),
            sides: sides.clone(),
            requests,
            matched: sum(|endpoint| endpoint.matched),
            differed: sum(|endpoint| endpoint.differed),
            failed: sum(|endpoint| endpoint.failed),
            suppressed: sum(|endpoint| endpoint.suppressed.iter().map(|group| group.count).sum()),
            elapsed_seconds,
            pairs_per_second: if elapsed_seconds > 0.0 {
                requests as f64 / elapsed_seconds
            } else {
                0.0
            },
            inputs: inputs.sources.clone(),
            duplicates: inputs.duplicates,
            endpoints,
        }
    }

    /// Whether every request matched.
    pub fn passed(&self) -> bool {
        self.differed == 0 && self.failed == 0
    }

    /// The report for people: totals, inputs, then every endpoint template
    /// with its differences by location (up to three examples each), its
    /// suppressed differences with their reason, and its failures.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "{verdict} parity {}: candidate {} against baseline {}{}",
            self.route,
            self.sides.candidate,
            self.sides.baseline,
            if self.sides.baseline_2 == self.sides.baseline {
                String::new()
            } else {
                format!(" (second baseline {})", self.sides.baseline_2)
            }
        );
        let _ = writeln!(
            out,
            "  {}: {} matched, {} differed, {} failed; {} suppressed; {:.2} s, {:.0} pairs/s",
            requests(self.requests),
            self.matched,
            self.differed,
            self.failed,
            counted(self.suppressed, "difference"),
            self.elapsed_seconds,
            self.pairs_per_second
        );
        for input in &self.inputs {
            let _ = writeln!(
                out,
                "  input {}: {}, {} skipped",
                input.source,
                requests(input.requests),
                counted(input.skipped_total(), "line")
            );
            for (reason, skipped) in &input.skipped {
                let _ = writeln!(out, "    skipped {}: {reason}", skipped.count);
                for example in &skipped.examples {
                    let _ = writeln!(out, "      {example}");
                }
            }
        }
        if self.duplicates > 0 {
            let _ = writeln!(
                out,
                "  {} sent once",
                counted(self.duplicates, "duplicate request")
            );
        }
        for endpoint in &self.endpoints {
            let verdict = if endpoint.passed() { "ok  " } else { "FAIL" };
            let _ = writeln!(
                out,
                "  {verdict} {}  ({}: {} matched, {} differed, {} failed)",
                endpoint.template,
                requests(endpoint.requests),
                endpoint.matched,
                endpoint.differed,
                endpoint.failed
            );
            for group in &endpoint.differences {
                write_group(&mut out, group, DETAIL_INDENT);
            }
            for failure in &endpoint.failures {
                write_failure(&mut out, failure, DETAIL_INDENT);
            }
            for group in &endpoint.suppressed {
                write_group(&mut out, group, DETAIL_INDENT);
            }
        }
        out
    }

    /// A few lines naming the first differences and failures, for a gate message.
    pub fn first_differences(&self, limit: usize) -> String {
        let mut lines = vec![format!(
            "{} of {} differed and {} failed ({} against {})",
            self.differed,
            requests(self.requests),
            self.failed,
            self.sides.candidate,
            self.sides.baseline
        )];
        let endpoints = self.endpoints.iter().filter(|endpoint| !endpoint.passed());
        'outer: for endpoint in endpoints {
            for group in &endpoint.differences {
                if lines.len() > limit {
                    break 'outer;
                }
                let example = &group.examples[0];
                lines.push(format!(
                    "{}: {} {} ({}), e.g. {}: baseline {} candidate {}",
                    endpoint.template,
                    group.location,
                    group.kind,
                    requests(group.count),
                    example.request,
                    example.baseline,
                    example.candidate
                ));
            }
            for failure in &endpoint.failures {
                if lines.len() > limit {
                    break 'outer;
                }
                lines.push(format!(
                    "{}: {} failed {}, e.g. {}",
                    endpoint.template,
                    failure.side,
                    requests(failure.count),
                    failure.examples[0]
                ));
            }
        }
        lines.join("\n")
    }
}

/// How far the human report indents an endpoint's groups and failures.
const DETAIL_INDENT: &str = "       ";

/// A counted group with up to three examples, or a suppressed group on one
/// line with its first example (all of them are in the JSON report); each
/// line after `indent`, examples two spaces further in.
fn write_group(out: &mut String, group: &DifferenceGroup, indent: &str) {
    let head = format!(
        "{} {}: {}",
        group.location,
        group.kind,
        requests(group.count)
    );
    let show = |example: &Example| {
        format!(
            "{}: baseline {} | candidate {}",
            example.request, example.baseline, example.candidate
        )
    };
    if let Some(reason) = &group.suppressed {
        let example = group
            .examples
            .first()
            .map(|example| format!(", e.g. {}", show(example)))
            .unwrap_or_default();
        let _ = writeln!(out, "{indent}suppressed ({reason}): {head}{example}");
        return;
    }
    let _ = writeln!(out, "{indent}{head}");
    for example in &group.examples {
        let _ = writeln!(out, "{indent}  {}", show(example));
    }
}

/// A side's failures: the count, then the examples two spaces further in.
fn write_failure(out: &mut String, failure: &FailureGroup, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}{} failed to answer {}",
        failure.side,
        requests(failure.count)
    );
    for example in &failure.examples {
        let _ = writeln!(out, "{indent}  {example}");
    }
}

fn endpoint_report<'a>(
    template: &str,
    exchanges: impl Iterator<Item = &'a crate::run::Exchange> + Clone,
) -> EndpointReport {
    // A status that flaps between the two baseline answers is noise for that
    // request only: learnt across the template, it would hide real failures.
    let template_noise: BTreeSet<&Location> = exchanges
        .clone()
        .flat_map(|exchange| match &exchange.outcome {
            Outcome::Compared { noise, .. } => noise.iter().collect(),
            Outcome::Failed { .. } => Vec::new(),
        })
        .filter(|location| **location != Location::Status)
        .collect();
    let mut report = EndpointReport {
        template: template.to_owned(),
        requests: 0,
        matched: 0,
        differed: 0,
        failed: 0,
        differences: Vec::new(),
        suppressed: Vec::new(),
        failures: Vec::new(),
    };
    let mut counted: BTreeMap<(&Location, Kind), GroupBuilder> = BTreeMap::new();
    let mut suppressed: BTreeMap<(&Location, Kind, String), GroupBuilder> = BTreeMap::new();
    let mut failures: BTreeMap<Side, GroupBuilder> = BTreeMap::new();
    let mut failure_examples: BTreeMap<Side, Vec<String>> = BTreeMap::new();
    for exchange in exchanges {
        report.requests += 1;
        let request = exchange.request.to_string();
        match &exchange.outcome {
            Outcome::Failed { side, error } => {
                report.failed += 1;
                failures.entry(*side).or_default().count += 1;
                let examples = failure_examples.entry(*side).or_default();
                if examples.len() < EXAMPLES_PER_GROUP {
                    examples.push(format!("{request}: {error}"));
                }
            }
            Outcome::Compared { differences, noise } => {
                let mut differs = false;
                for difference in differences {
                    let reason = difference.suppressed.clone().or_else(|| {
                        template_noise
                            .iter()
                            .copied()
                            .chain(noise)
                            .any(|noise| difference.location.is_covered_by(noise))
                            .then_some(Suppression::Noise)
                    });
                    let example = || Example {
                        request: request.clone(),
                        baseline: difference.baseline.clone(),
                        candidate: difference.candidate.clone(),
                    };
                    match reason {
                        Some(reason) => suppressed
                            .entry((&difference.location, difference.kind, reason.to_string()))
                            .or_default()
                            .add(example),
                        None => {
                            differs = true;
                            counted
                                .entry((&difference.location, difference.kind))
                                .or_default()
                                .add(example);
                        }
                    }
                }
                if differs {
                    report.differed += 1;
                } else {
                    report.matched += 1;
                }
            }
        }
    }
    report.differences = counted
        .into_iter()
        .map(|((location, kind), group)| DifferenceGroup {
            location: location.clone(),
            kind,
            suppressed: None,
            count: group.count,
            examples: group.examples,
        })
        .collect();
    report.suppressed = suppressed
        .into_iter()
        .map(|((location, kind, reason), group)| DifferenceGroup {
            location: location.clone(),
            kind,
            suppressed: Some(reason),
            count: group.count,
            examples: group.examples,
        })
        .collect();
    report.failures = failures
        .into_iter()
        .map(|(side, group)| FailureGroup {
            side,
            count: group.count,
            examples: failure_examples.remove(&side).unwrap_or_default(),
        })
        .collect();
    report
}

/// The reports of one `migrate verify` as JSON: `{"passed": bool, "routes": [...]}`.
pub fn json(reports: &[RouteReport]) -> serde_json::Value {
    serde_json::json!({
        "passed": reports.iter().all(RouteReport::passed),
        "routes": reports,
    })
}

/// Text as XML character data or attribute value: markup characters escaped,
/// characters XML 1.0 cannot hold replaced by U+FFFD.
fn xml_text(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|character| match character {
            '\t' | '\n' | '\r' => character,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            other => other,
        })
        .collect();
    quick_xml::escape::escape(cleaned.as_str()).into_owned()
}

/// JUnit XML: one test suite per route, one test case per endpoint template;
/// a failing case carries the locations, kinds and examples of its differences
/// and the requests that failed.
pub fn junit_xml(reports: &[RouteReport]) -> String {
    let tests: usize = reports.iter().map(|report| report.endpoints.len()).sum();
    let failures: usize = reports
        .iter()
        .map(|report| {
            report
                .endpoints
                .iter()
                .filter(|endpoint| !endpoint.passed())
                .count()
        })
        .sum();
    let time: f64 = reports.iter().map(|report| report.elapsed_seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"ficus parity\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">"
    );
    for report in reports {
        let suite_failures = report
            .endpoints
            .iter()
            .filter(|endpoint| !endpoint.passed())
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{suite_failures}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\">",
            xml_text(&format!("parity {}", report.route)),
            report.endpoints.len(),
            report.elapsed_seconds
        );
        let classname = xml_text(&format!("parity.{}", report.route));
        for endpoint in &report.endpoints {
            let name = xml_text(&endpoint.template);
            if endpoint.passed() {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{classname}\" name=\"{name}\"/>"
                );
                continue;
            }
            let message = format!(
                "{} of {} differed, {} failed",
                endpoint.differed,
                requests(endpoint.requests),
                endpoint.failed
            );
            let mut details = String::new();
            for group in &endpoint.differences {
                write_group(&mut details, group, "");
            }
            for failure in &endpoint.failures {
                write_failure(&mut details, failure, "");
            }
            let _ = writeln!(
                out,
                "    <testcase classname=\"{classname}\" name=\"{name}\">"
            );
            let _ = writeln!(
                out,
                "      <failure type=\"parity\" message=\"{}\">{}</failure>",
                xml_text(&message),
                xml_text(&details)
            );
            let _ = writeln!(out, "    </testcase>");
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}
