//! The reliability and security suite of ficus: cutovers under load, killed
//! processes, two operators, bad input and the security checks, each scenario
//! bounded in time and requests, run against the real binaries on loopback.
//! Prints a table of figures; exit 0 only when every scenario passed.

#![forbid(unsafe_code)]

pub mod load;
pub mod report;
pub mod scenarios;
pub mod stack;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::stack::Stack;

/// Exit code: every scenario passed.
pub const EXIT_OK: u8 = 0;
/// Exit code: a scenario failed (the table says which and why).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad command line or missing binaries.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    version,
    about = "Prove a cutover loses nothing: load, SIGKILLs, two operators, bad input, security, on the local stack.",
    after_help = "Runs the sibling binaries (monolith, users, threads, posts, local-alb, migrate) \
from the directory of this executable, on free loopback ports, in a temporary directory.\n\n\
EXIT CODES:\n  0  every scenario passed\n  1  a scenario failed\n  2  bad command line or missing binaries"
)]
pub struct Cli {
    /// The short version for CI: fewer cycles, less load, the same checks.
    #[arg(long)]
    pub bounded: bool,
    /// Where the binaries are (default: the directory of this executable).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Also write the figures as a Markdown table to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Keep the run's directory (logs, settings, state) even when every scenario passed.
    #[arg(long)]
    pub keep_logs: bool,
    /// Run only the scenarios whose number is given (1-8), e.g. --only 1,5.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub only: Vec<u8>,
    /// Cutovers of scenario 9 (AWS's bad days: propagation, throttling,
    /// transient errors). Default: 30 (full), 2 (--bounded).
    #[arg(long, value_name = "N")]
    pub repeat: Option<usize>,
}

/// How hard each scenario pushes.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    /// Shift/rollback cycles of scenario 1.
    pub cycles: usize,
    /// Concurrent keep-alive client connections.
    pub connections: usize,
    /// Upper bound of requests per load run.
    pub max_requests: u64,
    /// Upper bound of a load run's time.
    pub max_load_time: Duration,
    /// Random bodies sent to the control API in scenario 6.
    pub fuzz_requests: usize,
    /// Connections that send nothing, open at once, in scenario 8.
    pub silent_connections: usize,
    /// Connections opened at once, one request each, in scenario 8.
    pub burst_connections: usize,
    /// Shift/rollback cycles of scenario 9 (under AWS's faults).
    pub cycles_under_faults: usize,
}

impl Profile {
    pub const FULL: Profile = Profile {
        name: "full",
        cycles: 50,
        connections: 16,
        max_requests: 5_000_000,
        max_load_time: Duration::from_secs(600),
        fuzz_requests: 5_000,
        silent_connections: 1_100,
        burst_connections: 2_000,
        cycles_under_faults: 30,
    };
    pub const BOUNDED: Profile = Profile {
        name: "bounded",
        cycles: 12,
        connections: 4,
        max_requests: 500_000,
        max_load_time: Duration::from_secs(120),
        fuzz_requests: 300,
        silent_connections: 300,
        burst_connections: 500,
        cycles_under_faults: 2,
    };
}

/// Runs the suite; the table goes to stdout.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut profile = if cli.bounded {
        Profile::BOUNDED
    } else {
        Profile::FULL
    };
    if let Some(repeat) = cli.repeat {
        profile.cycles_under_faults = repeat;
    }
    if let Some(bad) = cli.only.iter().find(|n| !(1..=9).contains(*n)) {
        eprintln!("chaos: --only {bad}: scenarios are numbered 1 to 9");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let binaries = match stack::locate_binaries(cli.bin_dir.as_deref()) {
        Ok(binaries) => binaries,
        Err(err) => {
            eprintln!("chaos: {err:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let started = Instant::now();
    let mut stack = Stack::start(binaries).await?;
    eprintln!(
        "chaos: {} run; stack up (data {}, control {}), logs in {}",
        profile.name,
        stack.data_url(),
        stack.control_url(),
        stack.dir.path().display()
    );
    let outcomes = scenarios::run_all(&mut stack, &profile, &cli.only).await;
    stack.stop().await;
    let table = report::text_table(&outcomes);
    println!("{table}");
    let total = started.elapsed();
    let passed = outcomes.iter().all(|o| o.passed);
    println!(
        "chaos: {} run, {} scenarios, {} failed, {:.0} s",
        profile.name,
        outcomes.len(),
        outcomes.iter().filter(|o| !o.passed).count(),
        total.as_secs_f64()
    );
    if let Some(path) = &cli.markdown {
        stack::write(path, &report::markdown_table(&outcomes, &profile, total))?;
    }
    if !passed || cli.keep_logs {
        // Keep the logs of a failed run for a look.
        let kept = stack.dir.keep();
        eprintln!("chaos: logs kept in {}", kept.display());
    }
    Ok(ExitCode::from(if passed { EXIT_OK } else { EXIT_FAILED }))
}
