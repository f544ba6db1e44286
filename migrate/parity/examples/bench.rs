//! Throughput of a parity run: compared pairs per second (each pair is a
//! candidate request plus two baseline requests, compared).
//!
//! `cargo run --release -p parity --example bench -- BASELINE CANDIDATE [REQUESTS] [CONCURRENCY]`
//!
//! The requests cycle through the users route's default request set
//! (`/api/users`, `/api/users/{id}` over ids and odd spellings, HEAD, OPTIONS).
//! `scripts/bench-verify` starts the monolith and the users service and runs this.

use std::process::ExitCode;

use parity::{Comparator, RequestSet, RouteReport, RunOptions, Sides, VerifySpec};

const USERS_SPEC: &str = r#"
requests = ["/api/users", "/api/users/{id}", "HEAD /api/users/{id}", "OPTIONS /api/users/{id}"]
values.id = ["1..=6", "01", "+2", "%2B2", "1x", "abc", "0x10", "-1", "0"]
"#;

fn main() -> ExitCode {
    match run() {
        Ok(passed) => ExitCode::from(if passed { 0 } else { 1 }),
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [baseline, candidate, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: bench BASELINE_URL CANDIDATE_URL [REQUESTS (50000)] [CONCURRENCY (32)]"
        );
    };
    let total: usize = rest.first().map_or(Ok(50_000), |text| text.parse())?;
    let concurrency: usize = rest
        .get(1)
        .map_or(Ok(parity::DEFAULT_CONCURRENCY), |text| text.parse())?;
    let spec: VerifySpec = toml::from_str(USERS_SPEC)?;
    let templates = spec.template_requests()?;
    let requests: Vec<_> = templates.iter().cycle().take(total).cloned().collect();
    let sides = Sides::new(baseline, None, candidate)?;
    let options = RunOptions {
        concurrency,
        ..RunOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = runtime.block_on(parity::run(
        requests,
        &sides,
        &options,
        &Comparator::new(&spec)?,
    ))?;
    let mut inputs = RequestSet::new();
    inputs.add_templates("users request templates, cycled", Vec::new());
    let report = RouteReport::build("users", &sides, &inputs, &run);
    let pairs_line = report.human().lines().nth(1).unwrap_or_default().to_owned();
    println!("{pairs_line}");
    println!(
        "{:.0} compared pairs/s ({} pairs, {} HTTP requests, concurrency {concurrency}, {:.2} s)",
        report.pairs_per_second,
        report.requests,
        report.requests * 3,
        report.elapsed_seconds
    );
    if !report.passed() {
        print!("{}", report.human());
    }
    Ok(report.passed())
}
