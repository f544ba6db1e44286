//! `migrate`: the operator's CLI that shifts URL paths from the monolith to
//! their services behind an ALB, gradually and behind gates, and rolls them back.
//!
//! The library holds everything; `main.rs` only maps the result to an exit code.

pub mod cli;
pub mod commands;
pub mod context;
pub mod demo;
pub mod elb;
pub mod error;
pub mod journal;
pub mod localstack;
pub mod lock;
pub mod probe;
pub mod settings;
pub mod shift;
pub mod state;
pub mod verify;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::context::Ctx;
use crate::settings::{Overrides, Settings};

/// Parses the command line and runs the command. Usage errors print clap's
/// message and exit 2; `--help` and `--version` exit 0.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                error::EXIT_USAGE
            } else {
                error::EXIT_OK
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("migrate: cannot start the async runtime: {err}");
            return ExitCode::from(error::EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("migrate: {err:#}");
            error::exit_code(&err)
        }
    }
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        config: cli.config.clone(),
        profile: cli.profile.clone(),
        region: cli.region.clone(),
        endpoint_url: cli.endpoint_url.clone(),
    };
    // The demo writes its own settings for the stack it starts.
    if let Command::Demo(args) = &cli.command {
        return demo::run(args).await;
    }
    let settings = Settings::load(&overrides)?;
    let mut ctx = Ctx::new(settings, cli.output, cli.verbose).await;
    let result = match &cli.command {
        Command::Shift(args) => return shift::shift(&mut ctx, args).await,
        Command::Rollback(args) => return shift::rollback(&mut ctx, args).await,
        Command::Init(args) => commands::init(&mut ctx, args).await,
        Command::Status(args) => commands::status(&mut ctx, args).await,
        Command::Plan(args) => commands::plan(&mut ctx, args).await,
        Command::History(args) => commands::history(&mut ctx, args).await,
        Command::Verify(args) => verify::run(&ctx.settings, args, ctx.output, ctx.verbose).await,
        Command::Demo(args) => demo::run(args).await,
    };
    shift::summarize(&ctx, None);
    result
}
