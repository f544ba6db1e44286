//! `migrate demo`: the whole strangler-fig migration on one machine.
//!
//! Starts the local ALB (from the repo's stack file) in front of the monolith
//! and the three services, sends steady client traffic through it (every answer
//! checked against the monolith's), walks through `init`, `status`,
//! `verify --all`, a gradual `shift users`, `shift threads`, `shift posts`,
//! `rollback posts` and `status` by running the very commands (`crate::run`
//! with a `migrate.toml` written for the stack), shows where each route's
//! requests go live, ends the users migration with `leaks` and `retire`
//! (`ending`: access logs on, a case-variant leak found and fixed), and
//! closes with a summary (and `--report FILE.html`).
//! Every process it started is stopped on success, error, Ctrl-C or SIGTERM.
//!
//! Exit codes: 0 when no request failed and no response differed, 1 when some
//! did or on an error, 2 for usage errors (e.g. a binary is missing).

mod alb_metrics;
mod ending;
mod progress;
pub mod report;
mod stack;
pub mod summary;
pub mod timeline;
mod traffic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser as _;

use crate::cli::{Cli, DemoArgs};
use crate::error::{EXIT_ERROR, usage};
use crate::settings::check_steps;
use alb_metrics::Counters;
use localstack::{Binaries, MONOLITH_TARGET_GROUP, Stack};
use progress::Progress;
use stack::TempDir;
use summary::{GateRow, RouteSummary, Summary};
use timeline::{MarkerKind, Timeline};
use traffic::Traffic;

/// How often the local ALB's metrics are scraped.
const SCRAPE_EVERY: Duration = Duration::from_millis(500);
/// Where the local ALB writes access logs, in the demo's directory.
const ACCESS_LOGS: &str = "access-logs";
/// How long the targets may take to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(40);

/// One command of the walkthrough: its arguments after `migrate --config FILE`.
struct Step {
    args: Vec<String>,
    kind: MarkerKind,
}

impl Step {
    fn new(args: &[&str]) -> Step {
        let kind = if args.first() == Some(&"rollback") {
            MarkerKind::Rollback
        } else {
            MarkerKind::Step
        };
        Step {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            kind,
        }
    }

    /// The marker's label, e.g. `shift users`.
    fn label(&self) -> String {
        self.args
            .iter()
            .take_while(|a| !a.starts_with("--") || *a == "--all")
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn walkthrough(args: &DemoArgs) -> Vec<Step> {
    let steps = args
        .steps
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let interval = humantime::format_duration(args.interval).to_string();
    vec![
        Step::new(&["init"]),
        Step::new(&["status"]),
        Step::new(&["verify", "--all"]),
        Step::new(&["shift", "users", "--steps", &steps, "--interval", &interval]),
        Step::new(&["shift", "threads", "--steps", "100"]),
        Step::new(&["shift", "posts", "--steps", "100"]),
        Step::new(&["rollback", "posts"]),
        Step::new(&["status"]),
    ]
}

/// Runs the demo; see the module's doc.
pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    check_steps(&args.steps).map_err(|problem| usage(format!("--steps: {problem}")))?;
    if let Some(path) = &args.report {
        check_report_path(path)?;
    }
    let binaries = stack::locate(args.bin_dir.as_deref()).await?;
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let dir = TempDir::create()?;
    let mut running: Option<Stack> = None;
    let outcome = tokio::select! {
        outcome = demo(args, &binaries, dir.path(), &mut running) => outcome,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted (Ctrl-C)")),
        _ = terminate.recv() => Err(anyhow::anyhow!("stopped by SIGTERM")),
    };
    let outcome = match outcome {
        Ok(code) if args.keep_running => {
            if let Some(stack) = &running {
                print_by_hand(stack, dir.path()).await;
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                eprintln!("demo: stopping the stack");
            }
            Ok(code)
        }
        outcome => outcome,
    };
    if let Some(mut stack) = running.take() {
        stack.stop().await;
    }
    drop(dir);
    outcome.map_err(|err| err.context("demo stopped every process it started"))
}

/// Everything up to the summary; the stack is left in `running` for the caller to stop.
async fn demo(
    args: &DemoArgs,
    binaries: &Binaries,
    dir: &Path,
    running: &mut Option<Stack>,
) -> anyhow::Result<ExitCode> {
    let stack = start_stack(binaries, dir, running).await?;
    let metrics_url = format!("{}/metrics", stack.control_url());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let routes = stack::routes(stack)?;
    let monolith_url = stack.server_url(MONOLITH_TARGET_GROUP);
    let traffic = Traffic::start(&stack.data_url(), &monolith_url, args.rate).await?;
    let started = Instant::now();
    let before = scrape(&client, &metrics_url).await?;
    let timeline = Arc::new(Mutex::new(Timeline::new(
        routes.iter().map(|(name, _)| name.clone()).collect(),
    )));
    let sampler = Sampler::start(
        client.clone(),
        metrics_url.clone(),
        routes.clone(),
        before.clone(),
        Arc::clone(&timeline),
        Arc::clone(&traffic.tally),
        stack.config.clone(),
    );
    eprintln!(
        "demo: {} requests per second through the load balancer, each answer compared with the monolith's",
        args.rate
    );
    walk_through(args, &stack.config, &timeline).await?;
    let ending = ending::run(
        &stack.config,
        &dir.join(ACCESS_LOGS),
        &stack.data_url(),
        &metrics_url,
        |label| {
            lock(&timeline).mark(label, MarkerKind::Step);
        },
    )
    .await?;
    let tally = traffic.stop().await;
    let duration = started.elapsed();
    sampler.stop().await;
    let after = scrape(&client, &metrics_url).await?;
    let delta = after.since(&before);
    let probes = probes_by_route(&dir.join("journal.jsonl"));
    let summary = Summary {
        gates: gate_rows(&dir.join("journal.jsonl")),
        routes: routes
            .iter()
            .map(|(route, group)| {
                let counts = tally.route(route);
                RouteSummary {
                    route: route.clone(),
                    sent: counts.sent,
                    probes: probes.get(route).copied().unwrap_or(0),
                    to_service: delta.to_group(group),
                    failed: counts.failed,
                    differed: counts.differed,
                }
            })
            .collect(),
        elb_errors: delta.elb_errors,
        ending: Some(ending.line()),
        duration,
        problems: tally
            .problems()
            .into_iter()
            .chain(delta.elb_errors_by_reason.iter().map(|(reason, count)| {
                format!("the load balancer itself answered {count} × {reason}")
            }))
            .collect(),
    };
    println!("\nSummary\n{}", summary.text());
    if let Some(path) = &args.report {
        let page = report::render(&lock(&timeline), &summary);
        std::fs::write(path, page)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        eprintln!("demo: report written to {}", path.display());
    }
    Ok(if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    })
}

/// Starts the stack in `dir` (left in `running` for the caller to stop),
/// says where everything listens, and waits until every target group is healthy.
async fn start_stack<'s>(
    binaries: &Binaries,
    dir: &Path,
    running: &'s mut Option<Stack>,
) -> anyhow::Result<&'s mut Stack> {
    eprintln!("demo: starting the monolith, users, threads, posts and the local ALB");
    let alb_args = ending::alb_args(&dir.join(ACCESS_LOGS));
    let stack = running.insert(stack::start(binaries, dir, alb_args).await?);
    for (name, address) in stack.servers() {
        eprintln!("demo: {name} on http://{address}");
    }
    eprintln!(
        "demo: local ALB: traffic on {}, ELBv2 API on {} (files in {})",
        stack.data_url(),
        stack.control_url(),
        dir.display()
    );
    let groups = localstack::SERVERS.len();
    let took = stack
        .wait_healthy(HEALTHY_TIMEOUT, |healthy| {
            if !healthy.is_empty() {
                eprintln!(
                    "demo: {} of {groups} target groups healthy, waiting (health checks every few seconds)",
                    healthy.len()
                );
            }
        })
        .await?;
    eprintln!(
        "demo: all {groups} target groups healthy after {:.1} s",
        took.as_secs_f64()
    );
    Ok(stack)
}

/// Runs each command of the walkthrough in-process, as `migrate --config
/// CONFIG ...` runs it, marking it on the timeline; stops at the first that
/// does not succeed.
async fn walk_through(
    args: &DemoArgs,
    config: &Path,
    timeline: &Mutex<Timeline>,
) -> anyhow::Result<()> {
    let config = config.display().to_string();
    eprintln!("demo: each command below runs as `migrate --config {config} ...`");
    let steps = walkthrough(args);
    for (index, step) in steps.iter().enumerate() {
        lock(timeline).mark(&step.label(), step.kind);
        let mut argv = vec!["migrate".to_owned(), "--config".to_owned(), config.clone()];
        argv.extend(step.args.iter().cloned());
        println!("\n$ migrate {}", step.args.join(" "));
        eprintln!(
            "demo: step {}/{}: migrate {}",
            index + 1,
            steps.len(),
            step.args.join(" ")
        );
        let cli = Cli::try_parse_from(&argv)
            .with_context(|| format!("the demo built a bad command line: {argv:?}"))?;
        // The command exactly as `migrate --config FILE ...` runs it.
        let code = Box::pin(crate::run(cli))
            .await
            .with_context(|| format!("`migrate {}` failed", step.args.join(" ")))?;
        if code != ExitCode::SUCCESS {
            anyhow::bail!(
                "`migrate {}` did not succeed ({code:?}); see its output above",
                step.args.join(" ")
            );
        }
        tokio::time::sleep(args.pause).await;
    }
    Ok(())
}

/// `--report PATH` is checked before the demo runs: its directory exists and
/// the file can be written (a file created by the check is removed again).
fn check_report_path(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(usage(format!(
            "--report {}: the directory {} does not exist; create it or pick another path",
            path.display(),
            parent.display()
        )));
    }
    if path.is_dir() {
        return Err(usage(format!(
            "--report {}: is a directory; name a file, e.g. {}",
            path.display(),
            path.join("demo.html").display()
        )));
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|err| {
            usage(format!(
                "--report {}: cannot be written ({err}); pick another path",
                path.display()
            ))
        })?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn lock(timeline: &Mutex<Timeline>) -> std::sync::MutexGuard<'_, Timeline> {
    timeline.lock().unwrap_or_else(|e| e.into_inner())
}

async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<Counters> {
    Ok(Counters::parse(&scrape_text(client, url).await?))
}

async fn scrape_text(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot read the local ALB's metrics at {url}"))?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "the local ALB's metrics at {url} answered {status}"
    );
    Ok(response.text().await?)
}

/// Interval probes `migrate shift` sent per route, from the journal's evidence.
fn probes_by_route(journal: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut probes = std::collections::BTreeMap::new();
    for entry in crate::journal::read(journal, None).unwrap_or_default() {
        if let Some(total) = entry.evidence["probes"]["total"].as_u64() {
            *probes.entry(entry.route.clone()).or_default() += total;
        }
    }
    probes
}

/// Every metric gate evaluation the shifts journaled, in order.
fn gate_rows(journal: &Path) -> Vec<GateRow> {
    crate::journal::read(journal, None)
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| GateRow::from_entry(&entry.route, &entry.what, &entry.evidence))
        .collect()
}

/// Scrapes the metrics periodically: the timeline's samples and the live line.
struct Sampler {
    task: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Sampler {
    fn start(
        client: reqwest::Client,
        url: String,
        routes: Vec<(String, String)>,
        before: Counters,
        timeline: Arc<Mutex<Timeline>>,
        tally: Arc<traffic::Tally>,
        config: PathBuf,
    ) -> Sampler {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut progress = Progress::new();
            let mut weights = WeightWatch::new(config, routes.len()).await;
            let mut previous = [before.clone(), before];
            let mut ticker = tokio::time::interval(SCRAPE_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                let Ok(counters) = scrape(&client, &url).await else {
                    continue;
                };
                // Shares over the last two intervals: steadier at low rates.
                let delta = counters.since(&previous[0]);
                let rules_changed = counters.generation != previous[1].generation;
                previous = [
                    std::mem::replace(&mut previous[1], counters.clone()),
                    counters,
                ];
                let shares: Vec<f64> = routes
                    .iter()
                    .map(|(_, group)| delta.service_share(group, MONOLITH_TARGET_GROUP))
                    .collect();
                let changed = match &mut weights {
                    Some(weights) if rules_changed => weights.changes(&routes).await,
                    _ => Vec::new(),
                };
                let (step, at) = {
                    let mut timeline = lock(&timeline);
                    timeline.sample(shares.clone());
                    for (route, percent) in changed {
                        timeline.weight(route, percent);
                    }
                    (timeline.step().to_owned(), timeline.now())
                };
                let total = tally.total();
                let shares_line: Vec<String> = routes
                    .iter()
                    .zip(&shares)
                    .map(|((route, _), share)| format!("{route} {:.0}%", share * 100.0))
                    .collect();
                progress.show(
                    &step,
                    &format!(
                        "{at:>5.1}s [{step}] on their services: {} (the rest on the monolith) | {} requests, {} failed, {} differed",
                        shares_line.join(", "),
                        total.sent,
                        total.failed,
                        total.differed
                    ),
                );
            }
        });
        Sampler {
            task: Some(task),
            stop,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Reads the routes' rules through the same code as `migrate status` and
/// reports each change of a route's weight on its service.
struct WeightWatch {
    ctx: crate::context::Ctx,
    last: Vec<Option<u8>>,
}

impl WeightWatch {
    async fn new(config: PathBuf, routes: usize) -> Option<WeightWatch> {
        let overrides = crate::settings::Overrides {
            config: Some(config),
            ..Default::default()
        };
        let settings = crate::settings::Settings::load(&overrides).ok()?;
        Some(WeightWatch {
            ctx: crate::context::Ctx::new(settings, crate::output::Output::Text, false).await,
            last: vec![None; routes],
        })
    }

    /// `(route index, percent)` of the routes whose weight changed since the
    /// last call (a route's first known weight is not a change).
    async fn changes(&mut self, routes: &[(String, String)]) -> Vec<(usize, u8)> {
        let Ok(listing) = self.ctx.list().await else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for (index, (route, _)) in routes.iter().enumerate() {
            let percent = listing
                .view(&self.ctx.settings, route)
                .ok()
                .and_then(|view| view.state().percent());
            if let (Some(before), Some(now)) = (self.last[index], percent)
                && before != now
            {
                changed.push((index, now));
            }
            if percent.is_some() {
                self.last[index] = percent;
            }
        }
        changed
    }
}

/// `--keep-running`: how to drive the stack by hand.
async fn print_by_hand(stack: &Stack, dir: &Path) {
    let migrate = localstack::current_exe()
        .map_or_else(|_| "migrate".to_owned(), |path| path.display().to_string());
    let config = stack.config.display();
    let listener = listener_arn(stack)
        .await
        .unwrap_or_else(|_| "LISTENER_ARN".to_owned());
    println!(
        "\nThe stack is still up; Ctrl-C stops it and removes {dir}.\n\
Drive it by hand:\n\
\x20 curl {data}/api/users\n\
\x20 {migrate} --config {config} status\n\
\x20 {migrate} --config {config} shift posts --steps 10,100 --interval 10s\n\
\x20 {migrate} --config {config} rollback --all\n\
\x20 {migrate} --config {config} history\n\
With the AWS CLI (the local ALB accepts its well-known local key):\n\
\x20 export AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION={region}\n\
\x20 aws elbv2 describe-rules --listener-arn {listener} --endpoint-url {control}\n\
\x20 aws elbv2 describe-target-groups --endpoint-url {control}\n\
The load balancer's counters: curl {control}/metrics",
        dir = dir.display(),
        data = stack.data_url(),
        control = stack.control_url(),
        key = stack.access_key_id,
        secret = stack.secret_access_key,
        region = stack.region,
    );
}

async fn listener_arn(stack: &Stack) -> anyhow::Result<String> {
    let watch = WeightWatch::new(stack.config.clone(), 0)
        .await
        .context("cannot load the demo's migrate.toml")?;
    watch
        .ctx
        .elb
        .listener_arn(&watch.ctx.settings.listener)
        .await
}
