//! `migrate verify`: response parity between the monolith and a service.
//!
//! Each request of a route goes to the baseline (the monolith) twice and to the
//! candidate (the service) once; the answers are compared by the `parity`
//! crate. `migrate shift` runs the same check as its parity gate.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use parity::{
    AlbLog, Comparator, RecordedAnswers, Recording, RequestSet, RouteReport, RunOptions, Sides,
    SkippedRoute,
};

use crate::access_logs::{self, Source};
use crate::cli::VerifyArgs;
use crate::error::{EXIT_ERROR, EXIT_NOT_RUN, EXIT_OK, Failure, usage};
use crate::output::Output;
use crate::settings::{RouteSettings, Settings};

/// The methods the parity gate sends; it runs against live systems.
const GATE_METHODS: [reqwest::Method; 3] = [
    reqwest::Method::GET,
    reqwest::Method::HEAD,
    reqwest::Method::OPTIONS,
];

/// Runs `migrate verify`: exit 0 when every request matched, 1 when an answer
/// differed, 2 for usage or config errors, 4 when the access logs of
/// `--from-alb-log` could not be read (or hold no entry of the load
/// balancer), 5 when requests got no answer and nothing differed, or when
/// the logs hold no request of the routes. With `--output json`, stdout holds
/// the JSON report (or, on a failure, the failure document of
/// `output::print_failure`, with `passed: false`), and the text report goes
/// to stderr. `own` is the load balancer whose logs are replayed.
pub async fn run(
    settings: &Settings,
    args: &VerifyArgs,
    own: Option<access_logs::LoadBalancer>,
    output: Output,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let result = verify(settings, args, own.as_ref(), output, verbose).await;
    if result.is_err() {
        crate::output::add_to_outcome("passed", false.into());
    }
    result
}

async fn verify(
    settings: &Settings,
    args: &VerifyArgs,
    own: Option<&access_logs::LoadBalancer>,
    output: Output,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let sinks = Sinks::new(args, output)?;
    let plans = plan(settings, args, own).await?;
    let options = RunOptions {
        concurrency: args.concurrency,
        timeout: args.timeout,
    };
    if let Some(path) = &args.record {
        return record(&plans, &options, path, &sinks).await;
    }
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for plan in plans {
        if plan.requests.requests.is_empty() {
            let reason = format!(
                "no request in the given files matches its paths {:?}",
                plan.paths
            );
            sinks.text(&format!("SKIP parity {}: {reason}\n", plan.route));
            skipped.push(SkippedRoute {
                route: plan.route,
                reason,
            });
            continue;
        }
        let report = verify_route(&plan, &options).await?;
        sinks.text(&if verbose {
            report.human_verbose()
        } else {
            report.human()
        });
        reports.push(report);
    }
    if reports.is_empty() && !args.from_alb_log.is_empty() {
        // The logs were read and are this load balancer's: they prove
        // nothing about the routes (exit 5, as `leaks` without evidence).
        return Err(Failure::NoEvidence(
            "no route had requests to verify: the access logs hold none for the routes' paths; widen the logs (another day, another prefix) or wait for traffic".to_owned(),
        )
        .into());
    }
    if reports.is_empty() {
        return Err(usage(
            "no route had requests to verify; check that the files hold requests for the routes' paths",
        ));
    }
    if !sinks.json.is_empty() {
        let text = serde_json::to_string_pretty(&parity::json(&reports, &skipped))?;
        for sink in &sinks.json {
            sink.write(&format!("{text}\n"))?;
        }
    }
    if let Some(sink) = &sinks.junit {
        sink.write(&parity::junit_xml(&reports, &skipped))?;
    }
    if let Some(path) = &args.summary {
        append_summary(path, &parity::markdown_summary(&reports, &skipped))?;
    }
    let failing: Vec<&str> = reports
        .iter()
        .filter(|report| !report.passed())
        .map(|report| report.route.as_str())
        .collect();
    if reports.len() + skipped.len() > 1 {
        let verdict = if failing.is_empty() {
            "PASS".to_owned()
        } else {
            format!("FAIL ({})", failing.join(", "))
        };
        let skipped_note = if skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", skipped.len())
        };
        sinks.text(&format!(
            "{verdict}: {} verified{skipped_note}\n",
            if reports.len() == 1 {
                "1 route".to_owned()
            } else {
                format!("{} routes", reports.len())
            }
        ));
    }
    Ok(ExitCode::from(verdict_code(&reports)))
}

/// 1 when any answer differed, else 5 when any request got no answer, else 0.
fn verdict_code(reports: &[RouteReport]) -> u8 {
    if reports.iter().any(|report| report.differed > 0) {
        EXIT_ERROR
    } else if reports.iter().any(|report| report.failed > 0) {
        EXIT_NOT_RUN
    } else {
        EXIT_OK
    }
}

/// Where each report goes: a file, or stdout for `-` (and `--output json`).
/// The text report goes to stdout unless a machine report does, then to stderr.
struct Sinks {
    json: Vec<Sink>,
    junit: Option<Sink>,
    text_to_stderr: bool,
}

enum Sink {
    Stdout,
    File(PathBuf),
}

impl Sink {
    fn of(path: &Path) -> Self {
        if path == Path::new("-") {
            Sink::Stdout
        } else {
            Sink::File(path.to_owned())
        }
    }

    fn write(&self, text: &str) -> anyhow::Result<()> {
        match self {
            Sink::Stdout => {
                print!("{text}");
                Ok(())
            }
            Sink::File(path) => write_file(path, text.as_bytes(), "the report"),
        }
    }
}

impl Sinks {
    fn new(args: &VerifyArgs, output: Output) -> anyhow::Result<Self> {
        let mut json: Vec<Sink> = args.json.as_deref().map(Sink::of).into_iter().collect();
        let junit = args.junit.as_deref().map(Sink::of);
        let json_to_stdout = |json: &[Sink]| json.iter().any(|sink| matches!(sink, Sink::Stdout));
        if output == Output::Json && !json_to_stdout(&json) {
            json.push(Sink::Stdout);
        }
        let junit_to_stdout = matches!(junit, Some(Sink::Stdout));
        if json_to_stdout(&json) && junit_to_stdout {
            return Err(usage(
                "the JSON report (`--json -` or `--output json`) and `--junit -` both ask for stdout; write the JUnit report to a file, like `--junit parity.xml`",
            ));
        }
        let text_to_stderr = json_to_stdout(&json) || junit_to_stdout;
        Ok(Self {
            json,
            junit,
            text_to_stderr,
        })
    }

    fn text(&self, text: &str) {
        if self.text_to_stderr {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
}

/// The parity gate `migrate shift` checks before each step: the route's
/// configured requests with a safe method (GET, HEAD, OPTIONS: the gate runs
/// against live systems) sent to the monolith and to the service. `Ok(None)`
/// when they match, `Ok(Some(summary))` naming the first differences otherwise.
pub async fn parity_gate(settings: &Settings, route: &str) -> anyhow::Result<Option<String>> {
    let route_settings = settings.route(route)?;
    let baseline = settings.monolith.base_url.as_deref().ok_or_else(|| {
        usage("the parity gate needs the monolith's URL: set `[monolith] base_url` in migrate.toml, or pass `--skip-parity`")
    })?;
    let candidate = route_settings.service_url.as_deref().ok_or_else(|| {
        usage(format!(
            "the parity gate needs the service's URL: set `[routes.{route}] service_url` in migrate.toml, or pass `--skip-parity`"
        ))
    })?;
    let mut requests = route_requests(route, route_settings, &settings.base_dir)?;
    requests
        .requests
        .retain(|request| GATE_METHODS.contains(&request.method));
    let plan = Plan {
        route: route.to_owned(),
        paths: route_settings.paths.clone(),
        sides: Sides::new(baseline, None, candidate).map_err(|error| usage(error.to_string()))?,
        recorded: None,
        comparator: comparator(route, route_settings)?,
        requests,
    };
    let report = verify_route(&plan, &RunOptions::default()).await?;
    Ok((!report.passed()).then(|| report.first_differences(5)))
}

/// What to verify for one route.
struct Plan {
    route: String,
    paths: Vec<String>,
    sides: Sides,
    /// The baseline's answers, with `--recorded`.
    recorded: Option<Arc<RecordedAnswers>>,
    comparator: Comparator,
    requests: RequestSet,
}

async fn verify_route(plan: &Plan, options: &RunOptions) -> anyhow::Result<RouteReport> {
    let requests = plan.requests.requests.clone();
    let bar = progress_bar(&plan.route, requests.len());
    let run = parity::run_observed(
        requests,
        &plan.sides,
        options,
        &plan.comparator,
        plan.recorded.as_ref().map(Arc::clone),
        &|| bar.inc(1),
    )
    .await
    .map_err(|error| usage(format!("route `{}`: {error}", plan.route)));
    bar.finish_and_clear();
    let run = run?;
    Ok(RouteReport::build(
        &plan.route,
        &plan.sides,
        &plan.requests,
        &run,
    ))
}

/// Requests compared out of all, on stderr while it is a terminal (hidden
/// otherwise, so logs and pipes get only the report).
fn progress_bar(route: &str, requests: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(requests as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "migrate: verifying {msg} [{bar:30}] {pos}/{len} pairs, {per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(route.to_owned());
    bar
}

/// Resolves the routes, URLs, comparators and requests, so that every usage or
/// config problem is reported (exit 2) before any request goes out.
async fn plan(
    settings: &Settings,
    args: &VerifyArgs,
    own: Option<&access_logs::LoadBalancer>,
) -> anyhow::Result<Vec<Plan>> {
    let routes: Vec<(&str, &RouteSettings)> = match (&args.route, args.all) {
        (Some(route), false) => vec![(route.as_str(), settings.route(route)?)],
        (None, true) => settings
            .routes
            .iter()
            .map(|(name, route)| (name.as_str(), route))
            .collect(),
        _ => {
            return Err(usage(
                "name one route, or pass `--all` to verify every route",
            ));
        }
    };
    let baseline = args
        .baseline
        .as_deref()
        .or(settings.monolith.base_url.as_deref());
    let baseline = match (&args.recorded, baseline) {
        (Some(_), _) => None,
        (None, Some(baseline)) => Some(baseline),
        (None, None) if args.through_lb => None,
        (None, None) => {
            return Err(usage(
                "no baseline URL: pass `--baseline URL` or set `[monolith] base_url` in migrate.toml (or compare against a recording: `--recorded FILE`)",
            ));
        }
    };
    let recording = match &args.recorded {
        Some(path) => Some(Recording::read(path).map_err(|error| usage(error.to_string()))?),
        None => None,
    };
    let candidates = CandidateArgs::parse(&args.candidate, settings)?;
    let mut missing = Vec::new();
    let mut plans = Vec::new();
    for (name, route) in routes {
        let candidate = candidates.for_route(name).or(route.service_url.as_deref());
        let sides = if args.through_lb {
            through_lb(settings, name, args.preview_header.as_ref())?
        } else {
            match (baseline, candidate, &args.recorded) {
                // Recording: the baseline only.
                (Some(baseline), _, _) if args.record.is_some() => {
                    Sides::new(baseline, args.baseline_2.as_deref(), baseline)
                }
                (_, None, _) => {
                    missing.push(name);
                    continue;
                }
                (Some(baseline), Some(candidate), _) => {
                    Sides::new(baseline, args.baseline_2.as_deref(), candidate)
                }
                (None, Some(candidate), Some(path)) => {
                    Sides::new(candidate, None, candidate).map(|sides| Sides {
                        baseline: format!("recording {}", path.display()),
                        baseline_2: format!("recording {}", path.display()),
                        ..sides
                    })
                }
                (None, Some(_), None) => Err(parity::Error::Usage(
                    "no baseline URL: pass `--baseline URL` or `--recorded FILE`".into(),
                )),
            }
            .map_err(|error| usage(error.to_string()))?
        };
        let recorded = match (&recording, &args.recorded) {
            (Some(recording), Some(path)) => {
                let answers = recording
                    .answers(name, path)
                    .map_err(|error| usage(error.to_string()))?
                    .ok_or_else(|| {
                        usage(format!(
                            "route `{name}` is not in the recording {}; record it: `migrate verify {name} --record {}`",
                            path.display(),
                            path.display()
                        ))
                    })?;
                Some(Arc::new(answers))
            }
            _ => None,
        };
        let requests = if args.corpus.is_empty() && args.from_alb_log.is_empty() {
            route_requests(name, route, &settings.base_dir)?
        } else {
            recorded_requests(settings, (name, route), args, own).await?
        };
        plans.push(Plan {
            route: name.to_owned(),
            paths: route.paths.clone(),
            sides,
            recorded,
            comparator: comparator(name, route)?,
            requests,
        });
    }
    if !missing.is_empty() {
        let first = missing[0];
        return Err(usage(format!(
            "no candidate URL for route{} {}: set `[routes.{first}] service_url` in migrate.toml, or pass `--candidate {first}=URL` (or `--candidate URL` for every route)",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        )));
    }
    Ok(plans)
}

/// `--through-lb`: both sides are the load balancer; the candidate's
/// requests carry the preview header (default `X-Ficus-Preview: ROUTE`), so
/// they take the preview rule to the service while the baseline's take
/// today's routing.
fn through_lb(
    settings: &Settings,
    route: &str,
    header: Option<&(String, String)>,
) -> anyhow::Result<Sides> {
    let lb = settings.lb_url.as_deref().ok_or_else(|| {
        usage("--through-lb sends the requests through the load balancer: set `lb_url` in migrate.toml")
    })?;
    let (name, value) = header
        .cloned()
        .unwrap_or_else(|| (crate::cli::PREVIEW_HEADER.to_owned(), route.to_owned()));
    Sides::new(lb, None, lb)
        .and_then(|sides| sides.with_candidate_header(&name, &value))
        .map_err(|error| usage(error.to_string()))
}

fn comparator(name: &str, route: &RouteSettings) -> anyhow::Result<Comparator> {
    Comparator::new(&route.verify)
        .map_err(|error| usage(format!("`routes.{name}.verify`: {error}")))
}

/// The route's configured requests (templates and corpus files); without any,
/// a GET of each path pattern without its wildcards.
fn route_requests(
    name: &str,
    route: &RouteSettings,
    base_dir: &Path,
) -> anyhow::Result<RequestSet> {
    let mut set = route
        .verify
        .request_set(base_dir)
        .map_err(|error| usage(format!("`routes.{name}.verify`: {error}")))?;
    if set.requests.is_empty() {
        let requests = route
            .probe_paths()
            .into_iter()
            .map(|path| parity::Request {
                template: format!("GET {path}"),
                method: reqwest::Method::GET,
                target: path,
            })
            .collect();
        set.add_templates(
            &format!("the route's paths (no `[routes.{name}.verify]` requests configured)"),
            requests,
        );
    }
    Ok(set)
}

/// Requests from `--corpus` files and `--from-alb-log` logs (files,
/// directories in AWS's layout, `s3://BUCKET/PREFIX`, read by
/// `access_logs`, streaming) whose paths match the route.
async fn recorded_requests(
    settings: &Settings,
    (name, route): (&str, &RouteSettings),
    args: &VerifyArgs,
    own: Option<&access_logs::LoadBalancer>,
) -> anyhow::Result<RequestSet> {
    let templates = route
        .verify
        .templates()
        .map_err(|error| usage(format!("`routes.{name}.verify`: {error}")))?;
    let mut set = RequestSet::new();
    for corpus in &args.corpus {
        set.add_corpus(corpus, &templates, Some(&route.paths))
            .map_err(|error| usage(error.to_string()))?;
    }
    if args.from_alb_log.is_empty() {
        return Ok(set);
    }
    let sources: Vec<Source> = args
        .from_alb_log
        .iter()
        .map(|text| Source::parse(text).map_err(usage))
        .collect::<anyhow::Result<_>>()?;
    let sdk = if sources
        .iter()
        .any(|source| matches!(source, Source::S3 { .. }))
    {
        crate::elb::sdk_config(&settings.aws).await
    } else {
        aws_config::SdkConfig::builder().build()
    };
    let progress = reading_progress(name);
    let replay = Replay {
        set,
        templates,
        patterns: route.paths.clone(),
        allow_unsafe: args.allow_unsafe,
        progress: progress.clone(),
    };
    let read = access_logs::read_each(&sources, &sdk, own, replay, Replay::add).await;
    progress.finish_and_clear();
    // Unreadable logs exit 4, as in `leaks` and `plan` (error::Failure).
    let (replay, summary) = read?;
    if let (Some(own), Some(skipped)) = (own, summary.skipped_text()) {
        eprintln!("migrate: {name}: {skipped}; only {own}'s requests are replayed");
    }
    Ok(replay.set)
}

/// Lines read from the access logs and requests taken, on stderr while it is
/// a terminal (hidden otherwise): an hour of a busy ALB is a million lines.
fn reading_progress(route: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "migrate: reading access logs for {prefix}: {pos} lines, {per_sec} {spinner} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_prefix(route.to_owned());
    bar
}

/// A log's lines as `parity` reads them, counted on a progress bar as they
/// are consumed.
struct CountedLines<'a> {
    lines: &'a mut dyn std::io::BufRead,
    progress: &'a indicatif::ProgressBar,
}

impl std::io::Read for CountedLines<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let read = self.lines.read(out)?;
        self.progress.inc(newlines(&out[..read]));
        Ok(read)
    }
}

impl std::io::BufRead for CountedLines<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.lines.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        // The buffer `fill_buf` just returned, without reading again.
        if let Ok(buffer) = self.lines.fill_buf() {
            self.progress
                .inc(newlines(&buffer[..amount.min(buffer.len())]));
        }
        self.lines.consume(amount);
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&byte| byte == b'\n').count() as u64
}

/// What `--from-alb-log` replays: the requests taken so far, and what
/// decides which lines are taken.
struct Replay {
    set: RequestSet,
    templates: Vec<String>,
    patterns: Vec<String>,
    allow_unsafe: bool,
    /// Lines read so far, on a terminal.
    progress: indicatif::ProgressBar,
}

impl Replay {
    fn add(&mut self, name: &str, lines: &mut dyn std::io::BufRead) -> std::io::Result<()> {
        let log = AlbLog {
            name,
            templates: &self.templates,
            route_patterns: &self.patterns,
            allow_unsafe: self.allow_unsafe,
        };
        self.progress.set_message(name.to_owned());
        let lines = CountedLines {
            lines,
            progress: &self.progress,
        };
        self.set.add_alb_log_lines(lines, &log)
    }
}

/// The `--candidate` values: one URL for every route, and `ROUTE=URL` for one.
struct CandidateArgs<'a> {
    every_route: Option<&'a str>,
    by_route: Vec<(&'a str, &'a str)>,
}

impl<'a> CandidateArgs<'a> {
    fn parse(values: &'a [String], settings: &Settings) -> anyhow::Result<Self> {
        let mut parsed = Self {
            every_route: None,
            by_route: Vec::new(),
        };
        for value in values {
            match value.split_once('=') {
                Some((route, url)) if !route.contains([':', '/']) => {
                    settings.route(route)?;
                    parsed.by_route.push((route, url));
                }
                _ if parsed.every_route.is_some() => {
                    return Err(usage(format!(
                        "`--candidate {value}`: only one candidate URL can apply to every route; name the route with `--candidate ROUTE=URL`"
                    )));
                }
                _ => parsed.every_route = Some(value),
            }
        }
        Ok(parsed)
    }

    fn for_route(&self, route: &str) -> Option<&'a str> {
        self.by_route
            .iter()
            .rev()
            .find(|(name, _)| *name == route)
            .map(|(_, url)| *url)
            .or(self.every_route)
    }
}

/// Appends to FILE, as GitHub's `$GITHUB_STEP_SUMMARY` expects.
fn append_summary(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    create_parent(path, "the summary")?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|err| {
            usage(format!(
                "cannot write the summary to {}: {err}",
                path.display()
            ))
        })
}

/// Creates the directory a report or recording goes to, as CI steps expect
/// (`--junit reports/parity.xml`); a path that can't be made is a usage
/// error (exit 2), never "an answer differed".
fn create_parent(path: &Path, what: &str) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|err| {
            usage(format!(
                "cannot write {what} to {}: cannot create {}: {err}",
                path.display(),
                dir.display()
            ))
        }),
        _ => Ok(()),
    }
}

/// Writes a report or recording whole, creating its directory.
fn write_file(path: &Path, bytes: &[u8], what: &str) -> anyhow::Result<()> {
    create_parent(path, what)?;
    std::fs::write(path, bytes)
        .map_err(|err| usage(format!("cannot write {what} to {}: {err}", path.display())))
}

/// `--record FILE`: each route's requests to the baseline only, twice; the
/// answers go to FILE (other routes already in it are kept). Exit 0, or 5
/// without writing when requests got no answer. With `--output json`, stdout
/// gets `{"recorded": bool, "file", "routes": [{"route", "requests", "noisy"}],
/// "unanswered": [...]}` and the text goes to stderr.
async fn record(
    plans: &[Plan],
    options: &RunOptions,
    path: &Path,
    sinks: &Sinks,
) -> anyhow::Result<ExitCode> {
    let mut recording = if path.exists() {
        Recording::read(path).unwrap_or_default()
    } else {
        Recording::default()
    };
    let mut unanswered = Vec::new();
    let mut routes = Vec::new();
    for plan in plans {
        let (recorded, failures) = parity::record(
            plan.requests.requests.clone(),
            &plan.sides,
            options,
            &plan.comparator,
        )
        .await
        .map_err(|error| usage(format!("route `{}`: {error}", plan.route)))?;
        let noisy = recorded
            .requests
            .iter()
            .filter(|exchange| exchange.second_answer.is_some())
            .count();
        sinks.text(&format!(
            "recorded {}: {} requests from {} ({noisy} with a second answer that differs)\n",
            plan.route,
            recorded.requests.len(),
            plan.sides.baseline
        ));
        routes.push(serde_json::json!({
            "route": plan.route,
            "requests": recorded.requests.len(),
            "noisy": noisy,
        }));
        unanswered.extend(
            failures
                .into_iter()
                .map(|failure| format!("{}: {failure}", plan.route)),
        );
        recording.routes.insert(plan.route.clone(), recorded);
    }
    let written = unanswered.is_empty();
    if !sinks.json.is_empty() {
        let json = serde_json::json!({
            "recorded": written,
            "file": path.display().to_string(),
            "routes": routes,
            "unanswered": unanswered,
        });
        for sink in &sinks.json {
            sink.write(&format!("{}\n", serde_json::to_string_pretty(&json)?))?;
        }
    }
    if !written {
        eprintln!(
            "migrate: {} requests got no answer from the baseline; nothing was written to {}:",
            unanswered.len(),
            path.display()
        );
        for failure in unanswered.iter().take(10) {
            eprintln!("  {failure}");
        }
        return Ok(ExitCode::from(EXIT_NOT_RUN));
    }
    write_file(path, recording.to_json().as_bytes(), "the recording")?;
    sinks.text(&format!(
        "wrote {}; compare a candidate with `migrate verify ROUTE --recorded {}`\n",
        path.display(),
        path.display()
    ));
    Ok(ExitCode::from(EXIT_OK))
}
