//! Reports of a parity run: grouped by endpoint template, then by location;
//! as text for people, JSON and JUnit XML for machines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::compare::{Difference, Kind, Location, Suppression};
use crate::request::shorten;
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
    /// The first place of this answer the group's location names, when that
    /// location has array indexes collapsed to `*` (like `body /3/name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// How many places of this answer the group's location names (1 unless
    /// it has `*`).
    pub places: usize,
    /// The baseline's side.
    pub baseline: String,
    /// The candidate's side.
    pub candidate: String,
}

impl Example {
    /// `METHOD /path at PLACE: baseline … | candidate …`, on one line.
    fn line(&self) -> String {
        let at = self
            .at
            .as_ref()
            .map(|at| format!(" at {at}"))
            .unwrap_or_default();
        let more = match self.places {
            0 | 1 => String::new(),
            places => format!(" (+{} more in this answer)", places - 1),
        };
        format!(
            "{}{at}: baseline {} | candidate {}{more}",
            self.request, self.baseline, self.candidate
        )
    }
}

/// A route that was not verified, and why (a JUnit `<skipped>` test case).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedRoute {
    /// The route's name in `migrate.toml`.
    pub route: String,
    /// Why it was not verified.
    pub reason: String,
}

/// How many lines the text report of one route holds at most, and how many
/// characters the one-line first difference of a JUnit failure message holds.
pub const TEXT_REPORT_LINES: usize = 400;
/// The longest one-line first difference (JUnit failure message, summary).
pub const FIRST_DIFFERENCE_CHARS: usize = 300;

/// The differences of one kind at one location, over an endpoint's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DifferenceGroup {
    /// `status`, `header NAME` or `body POINTER`; array indexes in the pointer
    /// are written `*` (the examples name the places).
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

    /// The first difference on one line: `GET /api/users/2: body /bio changed
    /// value: baseline "a" | candidate "b"` (at most [`FIRST_DIFFERENCE_CHARS`]);
    /// else the first failed request.
    pub fn first_difference(&self) -> Option<String> {
        let line = if let Some(group) = self.differences.first() {
            let example = group.examples.first()?;
            let place = example
                .at
                .clone()
                .unwrap_or_else(|| group.location.to_string());
            format!(
                "{}: {place} {}: baseline {} | candidate {}",
                example.request, group.kind, example.baseline, example.candidate
            )
        } else {
            let failure = self.failures.first()?;
            format!(
                "{} failed to answer {}",
                failure.side,
                failure.examples.first()?
            )
        };
        Some(shorten(&one_line(&line), FIRST_DIFFERENCE_CHARS))
    }
}

/// Text on one line: line breaks and tabs become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_control() {
                ' '
            } else {
                character
            }
        })
        .collect()
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
    fn add(&mut self, example: Example) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_PER_GROUP {
            self.examples.push(example);
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

    /// The report for people: totals (suppressed differences counted by
    /// reason on one line), inputs, then every endpoint template with its
    /// differences by location (up to three examples each) and its failures.
    /// At most [`TEXT_REPORT_LINES`] lines: matching endpoints are left out
    /// first, then the rest is cut with a line saying how much was left out.
    pub fn human(&self) -> String {
        self.text(false)
    }

    /// [`RouteReport::human`] that also lists every suppressed group with its
    /// reason and first example (`migrate verify -v`).
    pub fn human_verbose(&self) -> String {
        self.text(true)
    }

    fn text(&self, verbose: bool) -> String {
        let mut head = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            head,
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
            head,
            "  {}: {} matched, {} differed, {} failed; {} suppressed{}; {:.2} s, {:.0} pairs/s",
            requests(self.requests),
            self.matched,
            self.differed,
            self.failed,
            counted(self.suppressed, "difference"),
            self.suppressed_by_reason(verbose),
            self.elapsed_seconds,
            self.pairs_per_second
        );
        for input in &self.inputs {
            let _ = writeln!(
                head,
                "  input {}: {}, {} skipped",
                input.source,
                requests(input.requests),
                counted(input.skipped_total(), "line")
            );
            for (reason, skipped) in &input.skipped {
                let _ = writeln!(head, "    skipped {}: {reason}", skipped.count);
                for example in &skipped.examples {
                    let _ = writeln!(head, "      {example}");
                }
            }
        }
        if self.duplicates > 0 {
            let _ = writeln!(
                head,
                "  {} sent once",
                counted(self.duplicates, "duplicate request")
            );
        }
        let endpoints: Vec<(bool, String)> = self
            .endpoints
            .iter()
            .map(|endpoint| (endpoint.passed(), endpoint_text(endpoint, verbose)))
            .collect();
        let mut out = head;
        let lines = |text: &str| text.lines().count();
        let total: usize =
            lines(&out) + endpoints.iter().map(|(_, text)| lines(text)).sum::<usize>();
        if total <= TEXT_REPORT_LINES {
            endpoints.iter().for_each(|(_, text)| out.push_str(text));
            return out;
        }
        let matching = endpoints.iter().filter(|(passed, _)| *passed).count();
        let mut left_out = 0;
        for (passed, text) in &endpoints {
            if *passed {
                continue;
            }
            for line in text.lines() {
                // Two lines stay free for the notes below.
                if lines(&out) + 2 < TEXT_REPORT_LINES {
                    out.push_str(line);
                    out.push('\n');
                } else {
                    left_out += 1;
                }
            }
        }
        if matching > 0 {
            let _ = writeln!(
                out,
                "  {} not listed",
                counted(matching, "matching endpoint")
            );
        }
        if left_out > 0 {
            let _ = writeln!(
                out,
                "  … {} left out (the text report keeps {TEXT_REPORT_LINES} lines); the whole report: --json FILE",
                counted(left_out, "more line")
            );
        }
        out
    }

    /// ` (ignored header 19, noise 3; -v lists them)` after the suppressed count.
    fn suppressed_by_reason(&self, verbose: bool) -> String {
        if self.suppressed == 0 {
            return String::new();
        }
        let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
        for group in self
            .endpoints
            .iter()
            .flat_map(|endpoint| &endpoint.suppressed)
        {
            let reason = group.suppressed.clone().unwrap_or_default();
            let reason = reason.split(':').next().unwrap_or_default().to_owned();
            *by_reason.entry(reason).or_default() += group.count;
        }
        let reasons: Vec<String> = by_reason
            .iter()
            .map(|(reason, count)| format!("{reason}: {count}"))
            .collect();
        format!(
            " ({}{})",
            reasons.join(", "),
            if verbose { "" } else { "; -v lists them" }
        )
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
                    "{}: {} {} ({}), e.g. {}",
                    endpoint.template,
                    group.location,
                    group.kind,
                    requests(group.count),
                    example.line()
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

/// One endpoint's lines of the text report: its verdict and counts, its
/// difference groups and failures, and (verbose) its suppressed groups.
fn endpoint_text(endpoint: &EndpointReport, verbose: bool) -> String {
    let mut out = String::new();
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
    if verbose {
        for group in &endpoint.suppressed {
            write_group(&mut out, group, DETAIL_INDENT);
        }
    }
    out
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
    let show = Example::line;
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

/// Groups one compared answer's differences into `counted` (they fail the
/// endpoint) or `suppressed` (ignored, declared or noise), one example per
/// group and answer; true when any counted.
fn group_answer<'a>(
    request: &str,
    differences: &'a [Difference],
    noise: &'a [Location],
    template_noise: &BTreeSet<&'a Location>,
    counted: &mut BTreeMap<(&'a Location, Kind), GroupBuilder>,
    suppressed: &mut BTreeMap<(&'a Location, Kind, String), GroupBuilder>,
) -> bool {
    // This answer's differences by group: the first one, and how many.
    let mut answer: BTreeMap<(&Location, Kind, Option<String>), (&Difference, usize)> =
        BTreeMap::new();
    for difference in differences {
        let reason = difference.suppressed.clone().or_else(|| {
            template_noise
                .iter()
                .copied()
                .chain(noise)
                .any(|noise| difference.location.is_covered_by(noise))
                .then_some(Suppression::Noise)
        });
        answer
            .entry((
                &difference.pattern,
                difference.kind,
                reason.map(|reason| reason.to_string()),
            ))
            .or_insert((difference, 0))
            .1 += 1;
    }
    let mut differs = false;
    for ((pattern, kind, reason), (difference, places)) in answer {
        let example = Example {
            request: request.to_owned(),
            at: (*pattern != difference.location).then(|| difference.location.to_string()),
            places,
            baseline: difference.baseline.clone(),
            candidate: difference.candidate.clone(),
        };
        match reason {
            Some(reason) => suppressed
                .entry((pattern, kind, reason))
                .or_default()
                .add(example),
            None => {
                differs = true;
                counted.entry((pattern, kind)).or_default().add(example);
            }
        }
    }
    differs
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
                let differs = group_answer(
                    &request,
                    differences,
                    noise,
                    &template_noise,
                    &mut counted,
                    &mut suppressed,
                );
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

/// The reports of one `migrate verify` as JSON:
/// `{"passed": bool, "routes": [...], "skipped": [{"route", "reason"}]}`.
pub fn json(reports: &[RouteReport], skipped: &[SkippedRoute]) -> serde_json::Value {
    serde_json::json!({
        "passed": reports.iter().all(RouteReport::passed),
        "routes": reports,
        "skipped": skipped,
    })
}

/// The most bytes `--summary` writes: well under GitHub's 1 MiB limit of a
/// step summary, with room for other steps' notes.
pub const SUMMARY_BYTES: usize = 512 * 1024;

/// GitHub-flavoured Markdown for `$GITHUB_STEP_SUMMARY`: a verdict, then per
/// route a table of its endpoints (requests, matched, differed, failed,
/// suppressed) and the first difference of each failing endpoint; skipped
/// routes with their reason. At most [`SUMMARY_BYTES`]: what does not fit is
/// counted on a last line that points at the JSON report.
pub fn markdown_summary(reports: &[RouteReport], skipped: &[SkippedRoute]) -> String {
    let passed = reports.iter().all(RouteReport::passed);
    let mut blocks: Vec<String> = Vec::new();
    let failing: Vec<&str> = reports
        .iter()
        .filter(|report| !report.passed())
        .map(|report| report.route.as_str())
        .collect();
    blocks.push(format!(
        "## Parity: {} ({} verified{})\n\n",
        if passed {
            "PASS".to_owned()
        } else {
            format!("FAIL in {}", failing.join(", "))
        },
        counted(reports.len(), "route"),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", skipped.len())
        }
    ));
    for report in reports {
        let mut block = format!(
            "### {} {}: {} of {} differed, {} failed\n\nCandidate {} against baseline {}; {} suppressed.\n\n",
            if report.passed() { "PASS" } else { "FAIL" },
            markdown_text(&report.route),
            report.differed,
            requests(report.requests),
            report.failed,
            code(&report.sides.candidate),
            code(&report.sides.baseline),
            counted(report.suppressed, "difference"),
        );
        block.push_str("| endpoint | requests | matched | differed | failed | suppressed |\n");
        block.push_str("|---|---:|---:|---:|---:|---:|\n");
        for endpoint in &report.endpoints {
            let suppressed: usize = endpoint.suppressed.iter().map(|group| group.count).sum();
            let _ = writeln!(
                block,
                "| {} {} | {} | {} | {} | {} | {suppressed} |",
                if endpoint.passed() { "ok" } else { "**FAIL**" },
                table_cell(&code(&endpoint.template)),
                endpoint.requests,
                endpoint.matched,
                endpoint.differed,
                endpoint.failed
            );
        }
        block.push('\n');
        blocks.push(block);
        let failing: Vec<&EndpointReport> = report
            .endpoints
            .iter()
            .filter(|endpoint| !endpoint.passed())
            .collect();
        if !failing.is_empty() {
            blocks.push(format!(
                "First differences of {}:\n\n",
                markdown_text(&report.route)
            ));
            for endpoint in failing {
                blocks.push(format!(
                    "- {}: {}\n",
                    code(&endpoint.template),
                    code(&endpoint.first_difference().unwrap_or_default())
                ));
            }
            blocks.push("\n".to_owned());
        }
    }
    for route in skipped {
        blocks.push(format!(
            "### SKIPPED {}\n\n{}\n\n",
            markdown_text(&route.route),
            markdown_text(&route.reason)
        ));
    }
    let mut out = String::new();
    // Room for the last line.
    let budget = SUMMARY_BYTES - 200;
    let mut left_out = 0;
    for block in &blocks {
        if left_out == 0 && out.len() + block.len() <= budget {
            out.push_str(block);
        } else {
            left_out += 1;
        }
    }
    if left_out > 0 {
        let _ = writeln!(
            out,
            "\n… {} left out to stay under {} KiB; the whole report: `migrate verify --json FILE`.",
            counted(left_out, "more part"),
            SUMMARY_BYTES / 1024
        );
    }
    out
}

/// Text as a Markdown code span: a backtick fence longer than any run of
/// backticks inside, and line breaks as spaces.
fn code(text: &str) -> String {
    let text = one_line(text);
    let mut longest = 0;
    let mut run = 0;
    for character in text.chars() {
        run = if character == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// Text in a GFM table cell: `|` escaped, even inside code spans.
fn table_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Plain text in Markdown: characters with a meaning there escaped.
fn markdown_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in one_line(text).chars() {
        if "\\`*_{}[]<>()#+-.!|~".contains(character) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
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

/// JUnit XML: one test suite per route, one test case per endpoint template.
/// An endpoint with differences is a `<failure>` whose message is its first
/// difference on one line and whose text lists every group and failed request;
/// an endpoint whose requests only failed to get answers is an `<error>` (the
/// check could not run); a route skipped under `--all` is a `<skipped>` case.
pub fn junit_xml(reports: &[RouteReport], skipped: &[SkippedRoute]) -> String {
    let verdicts: Vec<Vec<Verdict>> = reports
        .iter()
        .map(|report| report.endpoints.iter().map(Verdict::of).collect())
        .collect();
    let count = |verdicts: &[Verdict], wanted: Verdict| {
        verdicts
            .iter()
            .filter(|verdict| **verdict == wanted)
            .count()
    };
    let all: Vec<Verdict> = verdicts.iter().flatten().copied().collect();
    let time: f64 = reports.iter().map(|report| report.elapsed_seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"ficus parity\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
        all.len() + skipped.len(),
        count(&all, Verdict::Failure),
        count(&all, Verdict::Error),
        skipped.len()
    );
    for (report, verdicts) in reports.iter().zip(&verdicts) {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{:.3}\">",
            xml_text(&format!("parity {}", report.route)),
            report.endpoints.len(),
            count(verdicts, Verdict::Failure),
            count(verdicts, Verdict::Error),
            report.elapsed_seconds
        );
        let classname = xml_text(&format!("parity.{}", report.route));
        for (endpoint, verdict) in report.endpoints.iter().zip(verdicts) {
            let name = xml_text(&endpoint.template);
            let element = match verdict {
                Verdict::Pass => {
                    let _ = writeln!(
                        out,
                        "    <testcase classname=\"{classname}\" name=\"{name}\"/>"
                    );
                    continue;
                }
                Verdict::Failure => "failure",
                Verdict::Error => "error",
            };
            let message = format!(
                "{} ({} of {} differed, {} failed)",
                endpoint.first_difference().unwrap_or_default(),
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
                "      <{element} type=\"parity\" message=\"{}\">{}</{element}>",
                xml_text(&message),
                xml_text(&details)
            );
            let _ = writeln!(out, "    </testcase>");
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    for skipped in skipped {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"1\" time=\"0.000\">",
            xml_text(&format!("parity {}", skipped.route)),
        );
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\">\n      <skipped message=\"{}\"/>\n    </testcase>",
            xml_text(&format!("parity.{}", skipped.route)),
            xml_text(&skipped.route),
            xml_text(&skipped.reason)
        );
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

/// What an endpoint is in JUnit terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    /// A difference: the service answers differently.
    Failure,
    /// No difference, but requests that got no answer: the check did not run.
    Error,
}

impl Verdict {
    fn of(endpoint: &EndpointReport) -> Self {
        if endpoint.differed > 0 {
            Verdict::Failure
        } else if endpoint.failed > 0 {
            Verdict::Error
        } else {
            Verdict::Pass
        }
    }
}
