//! The demo's last act: the end of the users migration, as
//! docs/leaks-and-retire.md tells an operator to do it. Access logs are
//! switched on for the load balancer (its `access_logs.s3.*` attributes, as on
//! AWS; the local ALB writes AWS's layout under the demo's directory every
//! second), a few case-variant requests (`/API/USERS/1`) still reach the
//! monolith, `migrate leaks users` reports them with the pattern to add, the
//! operator adds it to the rule (ModifyRule) and to `paths` in migrate.toml,
//! `migrate leaks users --since` shows no leak over the window after the fix,
//! and `migrate retire users` finishes the route.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use clap::Parser as _;

use crate::cli::Cli;
use crate::context::Ctx;

/// The route the demo retires, and the spelling its clients also use.
pub const ROUTE: &str = "users";
const CASE_VARIANT: &str = "/API/USERS/1";
/// Case-variant requests sent before the fix, and again after it.
const VARIANTS: usize = 5;
/// How long the logs may take to show requests (delivered every second).
const LOGGED_WITHIN: Duration = Duration::from_secs(10);
/// How long requests routed before the fix may take to complete.
const IN_FLIGHT: Duration = Duration::from_millis(500);
/// The (local) bucket and prefix of the access logs.
const BUCKET: &str = "demo-alb-logs";
const PREFIX: &str = "demo";

/// The local ALB's flags: access logs under `root`, delivered every second.
pub fn alb_args(root: &Path) -> Vec<String> {
    vec![
        "--access-log-root".to_owned(),
        root.display().to_string(),
        "--access-log-interval".to_owned(),
        "1s".to_owned(),
    ]
}

/// What happened, for the summary.
pub struct Ending {
    /// What the leak report found before the fix: each spelling and its
    /// requests (the demo's `/API/USERS/1`, and any other).
    pub leaked: Vec<(String, u64)>,
    pub pattern: String,
    pub window: Duration,
}

impl Ending {
    pub fn line(&self) -> String {
        let total: u64 = self.leaked.iter().map(|(_, count)| count).sum();
        let spellings: Vec<String> = self
            .leaked
            .iter()
            .map(|(path, count)| format!("{count} spelled {path}"))
            .collect();
        format!(
            "{ROUTE} retired: {total} requests had leaked to the monolith ({}); the pattern {:?} was added, no leak in the {} s after the fix, then `migrate retire {ROUTE}`",
            spellings.join(", "),
            self.pattern,
            self.window.as_secs()
        )
    }
}

/// Each spelling of a leak report and its requests, as the report found them.
fn spellings(leaks: &[crate::leaks::Leak]) -> Vec<(String, u64)> {
    leaks
        .iter()
        .map(|leak| (leak.path.clone(), leak.count))
        .collect()
}

/// Runs the ending; `mark` puts each command on the timeline.
pub async fn run(
    config: &Path,
    logs_root: &Path,
    data_url: &str,
    metrics_url: &str,
    mut mark: impl FnMut(&str),
) -> anyhow::Result<Ending> {
    let overrides = crate::settings::Overrides {
        config: Some(config.to_owned()),
        ..Default::default()
    };
    let settings = crate::settings::Settings::load(&overrides)?;
    let ctx = Ctx::new(settings, crate::output::Output::Text, false).await;
    let logs = logs_root.display().to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;

    let balancer = switch_access_logs_on(&ctx).await?;
    println!(
        "\n$ aws elbv2 modify-load-balancer-attributes --load-balancer-arn {balancer} --attributes Key=access_logs.s3.enabled,Value=true Key=access_logs.s3.bucket,Value={BUCKET} Key=access_logs.s3.prefix,Value={PREFIX}"
    );
    println!("(the local ALB writes AWS's layout under {logs}, a file every second)");

    send_variants(&http, data_url).await?;
    let before = wait_for(
        &ctx,
        &logs,
        None,
        "the case-variant requests in the access logs",
        |report| {
            report
                .leaks
                .iter()
                .any(|leak| leak.path == CASE_VARIANT && leak.count >= VARIANTS as u64)
        },
    )
    .await?;
    let leak = before
        .leaks
        .iter()
        .find(|leak| leak.path == CASE_VARIANT)
        .context("the leak vanished")?;
    let pattern = leak
        .pattern
        .clone()
        .context("the leak report gave no pattern to add")?;
    mark("leaks users");
    command(config, &["leaks", ROUTE, "--from-alb-log", &logs], 1).await?;

    mark("fix users");
    let generation = super::scrape(&http, metrics_url).await?.generation;
    add_pattern(&ctx, config, &pattern).await?;
    // The window after the fix starts once the load balancer routes by the
    // new rule (its rule table's generation moved on).
    let deadline = Instant::now() + LOGGED_WITHIN;
    while super::scrape(&http, metrics_url).await?.generation == generation {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the load balancer did not publish the fixed rule within {} s",
            LOGGED_WITHIN.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Requests routed by the old rule complete within IN_FLIGHT (the log's
    // `time` is when a request completed); the window starts after them,
    // and the clients' requests come a second into it, so that the window
    // holds them however late `leaks` starts reading.
    tokio::time::sleep(IN_FLIGHT).await;
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    send_variants(&http, data_url).await?;
    // The logs reach past the window's start: the clients' requests (and
    // the demo's own traffic) of the window are delivered.
    wait_for(
        &ctx,
        &logs,
        Some(settled),
        "the requests after the fix in the access logs",
        |report| report.route_requests >= VARIANTS as u64,
    )
    .await?;
    let window = Duration::from_millis(settled.elapsed().as_millis() as u64);
    let since = humantime::format_duration(window).to_string();
    command(
        config,
        &["leaks", ROUTE, "--from-alb-log", &logs, "--since", &since],
        0,
    )
    .await?;
    mark("retire users");
    command(
        config,
        &["retire", ROUTE, "--from-alb-log", &logs, "--since", &since],
        0,
    )
    .await?;
    Ok(Ending {
        leaked: spellings(&before.leaks),
        pattern,
        window,
    })
}

/// Sets the load balancer's `access_logs.s3.*` attributes; its ARN.
async fn switch_access_logs_on(ctx: &Ctx) -> anyhow::Result<String> {
    let listener = ctx.elb.listener_arn(&ctx.settings.listener).await?;
    let client = elbv2::Client::new(&ctx.sdk);
    let listeners = client
        .describe_listeners()
        .listener_arns(&listener)
        .send()
        .await
        .context("DescribeListeners")?;
    let balancer = listeners
        .listeners()
        .first()
        .and_then(|found| found.load_balancer_arn())
        .context("the listener names no load balancer")?
        .to_owned();
    let attribute = |key: &str, value: &str| {
        elbv2::types::LoadBalancerAttribute::builder()
            .key(key)
            .value(value)
            .build()
    };
    client
        .modify_load_balancer_attributes()
        .load_balancer_arn(&balancer)
        .attributes(attribute("access_logs.s3.enabled", "true"))
        .attributes(attribute("access_logs.s3.bucket", BUCKET))
        .attributes(attribute("access_logs.s3.prefix", PREFIX))
        .send()
        .await
        .context("ModifyLoadBalancerAttributes")?;
    Ok(balancer)
}

async fn send_variants(http: &reqwest::Client, data_url: &str) -> anyhow::Result<()> {
    let url = format!("{data_url}{CASE_VARIANT}");
    println!(
        "\n$ for i in 1 2 3 4 5; do curl {url}; done   # a client that spells the path in capitals"
    );
    for _ in 0..VARIANTS {
        let status = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .status();
        anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
    }
    Ok(())
}

/// Reads the logs until `done` holds of the leak report (deadline
/// [`LOGGED_WITHIN`]).
async fn wait_for(
    ctx: &Ctx,
    logs: &str,
    since: Option<Instant>,
    what: &str,
    done: impl Fn(&crate::leaks::Report) -> bool,
) -> anyhow::Result<crate::leaks::Report> {
    let deadline = Instant::now() + LOGGED_WITHIN;
    loop {
        let window = since.map(|start| start.elapsed());
        let report = crate::leaks::find(ctx, ROUTE, &[logs.to_owned()], window).await;
        if let Ok(report) = report
            && done(&report)
        {
            return Ok(report);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {what} after {} s",
            LOGGED_WITHIN.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator's fix, as the report says: the pattern added to the route's
/// rule (ModifyRule) and to `paths` in migrate.toml.
async fn add_pattern(ctx: &Ctx, config: &Path, pattern: &str) -> anyhow::Result<()> {
    let listing = ctx.list().await?;
    let view = listing.view(&ctx.settings, ROUTE)?;
    let rule = view.rule().context("the users route has no rule")?;
    let mut conditions = rule.conditions.clone();
    conditions.paths.push(pattern.to_owned());
    println!(
        "\n$ {}",
        crate::leaks::modify_rule_command(&rule.arn, &conditions)
    );
    ctx.elb.set_conditions(&rule.arn, &conditions).await?;
    let text = std::fs::read_to_string(config)?;
    let header = format!("[routes.{ROUTE}]");
    let start = text
        .find(&header)
        .context("migrate.toml has no users route")?;
    let line_start = start
        + text[start..]
            .find("\npaths = [")
            .context("the users route has no paths")?
        + 1;
    let line_end = line_start
        + text[line_start..]
            .find('\n')
            .unwrap_or(text.len() - line_start);
    let line = &text[line_start..line_end];
    let close = line.rfind(']').context("the users paths line has no `]`")?;
    let edited = format!("{}, {pattern:?}]", &line[..close]);
    println!("$ # in migrate.toml, [routes.{ROUTE}]: {edited}");
    let rewritten = format!("{}{edited}{}", &text[..line_start], &text[line_end..]);
    std::fs::write(config, rewritten)
        .with_context(|| format!("cannot write {}", config.display()))?;
    Ok(())
}

/// Runs `migrate --config CONFIG ARGS` in-process, as the walkthrough does;
/// its exit code must be `expected`.
async fn command(config: &Path, args: &[&str], expected: u8) -> anyhow::Result<()> {
    let mut argv = vec![
        "migrate".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    argv.extend(args.iter().map(|arg| (*arg).to_owned()));
    println!("\n$ migrate {}", args.join(" "));
    eprintln!("demo: migrate {}", args.join(" "));
    let cli = Cli::try_parse_from(&argv)
        .with_context(|| format!("the demo built a bad command line: {argv:?}"))?;
    let code = Box::pin(crate::run(cli))
        .await
        .with_context(|| format!("`migrate {}` failed", args.join(" ")))?;
    anyhow::ensure!(
        code == ExitCode::from(expected),
        "`migrate {}` exited {code:?}, expected {expected}; see its output above",
        args.join(" ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_every_spelling_the_leak_report_found() {
        let ending = Ending {
            leaked: vec![("/API/USERS/1".into(), 5), ("/Api/Users".into(), 2)],
            pattern: "/API/USERS*".into(),
            window: Duration::from_secs(3),
        };
        assert_eq!(
            ending.line(),
            "users retired: 7 requests had leaked to the monolith (5 spelled /API/USERS/1, 2 spelled /Api/Users); the pattern \"/API/USERS*\" was added, no leak in the 3 s after the fix, then `migrate retire users`"
        );
    }
}
