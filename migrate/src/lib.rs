//! `migrate`: the operator's CLI that shifts URL paths from the monolith to
//! their services behind an ALB, gradually and behind gates, and rolls them back.
//!
//! The library holds everything; `main.rs` only maps the result to an exit code.

#![forbid(unsafe_code)]

/// `println!` for this crate: stdout through [`output::write_stdout`], so a
/// closed stdout (the reader went away) never panics. Defined before the
/// modules, it shadows std's macro in all of them.
macro_rules! println {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for this crate; see [`println!`].
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

pub mod access_logs;
pub mod budget;
pub mod capacity;
pub mod cli;
pub mod cloudwatch;
pub mod commands;
pub mod context;
pub mod coverage;
pub mod custom_gates;
pub mod demo;
pub mod elb;
pub mod error;
pub mod journal;
pub mod leaks;
pub mod lock;
pub mod metric_gates;
pub mod notify;
pub mod output;
pub mod plan;
pub mod preview;
pub mod probe;
pub mod retire;
pub mod settings;
pub mod shift;
pub mod state;
pub mod verify;
pub mod watch;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command, Output};
use crate::context::Ctx;
use crate::settings::{Overrides, Settings};

/// Parses the command line and runs the command. Usage errors print clap's
/// message and exit 2; `--help` and `--version` exit 0. Every error is
/// printed on stderr as `migrate: ...`; under `--output json` stdout also gets
/// one JSON document saying so (see [`output`]).
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    if let Some(route) = named_route(&args) {
        output::set_route(&route);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            if !err.use_stderr() {
                return ExitCode::from(error::EXIT_OK);
            }
            if wants_json(&args) {
                output::print_failure(err.render().to_string().trim_end(), error::EXIT_USAGE);
            }
            return ExitCode::from(error::EXIT_USAGE);
        }
    };
    let json = cli.output == Output::Json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let message = format!("cannot start the async runtime: {err}");
            eprintln!("migrate: {message}");
            if json {
                output::print_failure(&message, error::EXIT_ERROR);
            }
            return ExitCode::from(error::EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            let code = error::code(&err);
            let message = format!("{err:#}");
            eprintln!("migrate: {message}");
            if json {
                output::print_failure(&message, code);
            }
            ExitCode::from(code)
        }
    }
}

/// The AWS API budget of the commands that move or judge routes, on every
/// exit path (done, refused, failed, lock held or lost): "migrate: AWS API:
/// ..." on stderr with text output, and `aws_api` in the failure document
/// under `--output json` (their own documents carry it when they succeed).
fn report_budget(ctx: &Ctx, command: &Command, failed: bool) {
    if !matches!(
        command,
        Command::Shift(_)
            | Command::Rollback(_)
            | Command::Promote(_)
            | Command::Abort(_)
            | Command::Status(_)
    ) {
        return;
    }
    let used = budget::used();
    if used.calls == 0 {
        return;
    }
    if ctx.chatty() {
        eprintln!("migrate: {used}");
    }
    if failed {
        output::add_to_outcome("aws_api", used.to_json());
    }
}

/// The route a command line names (its command's ROUTE argument), also
/// when the parser refuses the line for another reason (`retire users
/// --accept-leaks` without `--reason`): for the failure document.
fn named_route(args: &[std::ffi::OsString]) -> Option<String> {
    let matches = <Cli as clap::CommandFactory>::command()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()?;
    let (_, command) = matches.subcommand()?;
    command
        .try_get_one::<String>("route")
        .ok()
        .flatten()
        .cloned()
}

/// The load balancer whose access logs `verify --from-alb-log` replays,
/// named `app/NAME/ID` as `leaks` names it: from `[listener] arn`, else
/// from the listener the API finds (by `[listener] load_balancer`), else
/// (the API unreachable: logs verified offline) by its name alone.
async fn verify_load_balancer(
    ctx: &Ctx,
    args: &crate::cli::VerifyArgs,
) -> Option<access_logs::LoadBalancer> {
    let configured = access_logs::LoadBalancer::from_settings(&ctx.settings.listener);
    if args.from_alb_log.is_empty() || ctx.settings.listener.arn.is_some() {
        return configured;
    }
    // Only for the name said: verify runs where no AWS endpoint answers too
    // (a CI job replaying logs), and the name alone filters the same lines.
    match tokio::time::timeout(
        LOAD_BALANCER_LOOKUP,
        ctx.elb.listener_arn(&ctx.settings.listener),
    )
    .await
    {
        Ok(Ok(arn)) => access_logs::LoadBalancer::from_arn(&arn).or(configured),
        _ => configured,
    }
}

/// How long `verify --from-alb-log` looks for the listener's load balancer
/// id before it names the load balancer by its name alone.
const LOAD_BALANCER_LOOKUP: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a command line that clap refused asked for `--output json`.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .zip(args.iter().skip(1))
        .any(|(flag, value)| flag == "--output" && value == "json")
        || args.iter().any(|arg| arg == "--output=json")
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
        Command::Shift(args) => shift::shift(&mut ctx, args).await,
        Command::Rollback(args) => shift::rollback(&mut ctx, args).await,
        Command::Promote(args) => shift::promote(&mut ctx, args).await,
        Command::Abort(args) => shift::abort(&mut ctx, args).await,
        Command::Preview(args) => preview::preview(&mut ctx, args).await,
        Command::Watch(args) => watch::watch(&mut ctx, args).await,
        Command::Init(args) => commands::init(&mut ctx, args).await,
        Command::Status(args) => commands::status(&mut ctx, args).await,
        Command::Plan(args) => commands::plan(&mut ctx, args).await,
        Command::History(args) => commands::history(&mut ctx, args).await,
        Command::Verify(args) => match preview::require_for_verify(&ctx, args).await {
            Ok(()) => {
                let own = verify_load_balancer(&ctx, args).await;
                verify::run(&ctx.settings, args, own, ctx.output, ctx.verbose).await
            }
            Err(err) => Err(err),
        },
        Command::Notify(args) => commands::notify(&mut ctx, args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Leaks(args) => leaks::leaks(&mut ctx, args).await,
        Command::Retire(args) => retire::retire(&mut ctx, args).await,
    };
    report_budget(&ctx, &cli.command, result.is_err());
    // shift and rollback summarize their own calls, with the routing changes.
    if !matches!(
        cli.command,
        Command::Shift(_) | Command::Rollback(_) | Command::Promote(_) | Command::Abort(_)
    ) {
        shift::summarize(&ctx, None);
    }
    // Deliveries still under way get a bounded wait; a failed one is printed
    // and journaled, and never changes the exit code.
    ctx.notifier.finish().await;
    result
}
