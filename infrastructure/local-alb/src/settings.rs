//! Command line and settings of the `local-alb` binary.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::faults::{Fault, Sources};

use crate::dataplane::{DataPlaneOptions, HeadPolicy};

/// Exit code: stopped cleanly (SIGTERM or SIGINT).
pub const EXIT_OK: u8 = 0;
/// Exit code: a runtime failure, such as an address already in use.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: a bad command line or stack file.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the state file cannot be used.
pub const EXIT_STATE: u8 = 3;
/// Exit code: another local-alb uses the state directory.
pub const EXIT_LOCKED: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "local-alb",
    version,
    about = "An Application Load Balancer on one machine: routes HTTP traffic by listener rules and speaks the ELBv2 API.",
    long_about = "An Application Load Balancer on one machine.\n\n\
The data listener (--listen) routes HTTP requests to target groups by the \
listener's rules, like an ALB's HTTP listener. The control listener \
(--control-listen) speaks the ELBv2 Query API (Version 2015-12-01) with AWS \
Signature Version 4, so the AWS CLI, the AWS SDKs and `migrate` can read and \
change the rules; it also serves Prometheus metrics at GET /metrics, and \
CloudWatch's GetMetricData and ListMetrics (namespace AWS/ApplicationELB, SigV4 \
service `monitoring`, periods down to 1 s) from per-second counters of the \
data plane.\n\n\
The configuration starts from the stack file. Every accepted API change is \
saved in the state directory before it is answered, and on restart the saved \
state wins over the stack file; --reset starts from the stack file again.",
    after_help = "EXAMPLES:\n  \
local-alb --listen 127.0.0.1:8080 --control-listen 127.0.0.1:9100\n  \
AWS_ACCESS_KEY_ID=AKIAFICUSLOCAL000000 AWS_SECRET_ACCESS_KEY=ficus-local-secret-access-key \\\n    \
aws elbv2 describe-load-balancers --region us-east-1 --endpoint-url http://127.0.0.1:9100\n  \
(same keys) aws cloudwatch list-metrics --namespace AWS/ApplicationELB --region us-east-1 --endpoint-url http://127.0.0.1:9100\n  \
local-alb --metric-retention 600        # keep 10 minutes of per-second metrics (0: do not count)\n  \
local-alb --access-log-root /tmp/alb-logs --access-log-interval 1m   # access logs as in S3, every minute\n  \
local-alb --access-log-compression 0   # gzip of stored blocks: no deflate, files 10x larger (default 1)\n\n\
local-alb --propagation 0s..8s --nodes 3 --throttle 'DescribeRules=5,*=20' --transient-errors 0.02\n    \
                                        # AWS's bad days: changes reach 3 nodes over 0-8 s, throttling, 2% errors\n\n\
FAULTS (--propagation, --nodes, --throttle, --transient-errors, --lost-answers):\n  \
off by default. Each is also a LOCAL_ALB_* variable and a key of the stack \
file's [faults]. A value given as a flag or variable replaces the stack file's \
value as a whole (a --throttle list is not merged with the file's). A WARN line \
at startup names each fault on and where its value came from, such as:\n  \
fault injection is on: throttle DescribeRules=5 from --throttle (replaces the stack file's ModifyRule=2,*=20)\n  \
--lost-answers needs --transient-errors (a lost answer is a transient error \
after the change was applied); without it the start is refused (exit 2).\n\n\
The access key and secret are the stack file's [credentials] (local defaults \
above). On start, one line per listener is printed to stdout:\n  \
data listener on http://127.0.0.1:8080\n  control listener on http://127.0.0.1:9100\n\n\
DURATIONS (--access-log-interval, --propagation, the SECONDS options):\n  \
a bare number is seconds (300 is 5 minutes, 0.5 is 500ms); otherwise a number \
with a unit: ms, s, m, h, d, w, combined as in 1h30m. migrate reads its \
durations the same way.\n\n\
ENVIRONMENT:\n  RUST_LOG  log filter (default info); logs go to stderr\n  \
The LOCAL_ALB_* variables are listed with the options they set (an option given \
on the command line wins).\n\n\
EXIT CODES:\n  0  stopped by SIGTERM or SIGINT\n  1  runtime failure (for example an address in use)\n  \
2  bad command line or stack file (the message names the key)\n  \
3  the state file is unreadable or corrupt (start with --reset to rebuild it)\n  \
4  another local-alb uses the state directory (the message names its PID; pick another --state-dir)"
)]
pub struct Cli {
    /// Stack file declaring the load balancer, listener, target groups and rules.
    /// Default: infrastructure/local/stack.toml under the current directory if it
    /// exists, else the copy built into this binary.
    #[arg(long, value_name = "FILE")]
    pub stack: Option<PathBuf>,

    /// Directory holding the saved state (state.json); created if missing.
    /// One local-alb at a time uses a directory (it locks local-alb.lock there).
    #[arg(long, value_name = "DIR", default_value = ".ficus/local-alb")]
    pub state_dir: PathBuf,

    /// Discard the saved state and start from the stack file.
    #[arg(long)]
    pub reset: bool,

    /// Address of the data listener (the ALB's HTTP listener); port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the control listener (ELBv2 API and /metrics); port 0 picks a free port.
    /// Must be a loopback address unless --allow-remote-control is given.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9100")]
    pub control_listen: SocketAddr,

    /// Allow a non-loopback --control-listen address (anyone who can reach it and
    /// knows the local credentials can change routing).
    #[arg(long)]
    pub allow_remote_control: bool,

    /// Seconds a target has to send a response head before the client gets a
    /// 504 (ALB's idle timeout). Decimal seconds, such as 0.5. Default: 60.
    #[arg(long, env = "LOCAL_ALB_TARGET_TIMEOUT_SECONDS", value_name = "SECONDS", value_parser = seconds)]
    pub target_timeout: Option<Duration>,

    /// Seconds a deregistered target is reported `draining` (AWS: 300), for
    /// target groups without a `deregistration_delay.timeout_seconds`
    /// attribute (the attribute wins). Default: 5.
    #[arg(long, env = "LOCAL_ALB_DEREGISTRATION_DELAY_SECONDS", value_name = "SECONDS", value_parser = seconds)]
    pub deregistration_delay: Option<Duration>,

    /// Seconds a client connection may send nothing (ALB's
    /// idle_timeout.timeout_seconds): an idle keep-alive connection is then
    /// closed, a request stopped half-way gets 408. Each byte restarts it.
    /// Default: 60.
    #[arg(long, env = "LOCAL_ALB_CLIENT_IDLE_TIMEOUT_SECONDS", value_name = "SECONDS", value_parser = seconds)]
    pub client_idle_timeout: Option<Duration>,

    /// Threads serving the data listener. Default: one per CPU core.
    #[arg(long, env = "LOCAL_ALB_WORKER_THREADS", value_name = "THREADS", value_parser = threads)]
    pub worker_threads: Option<usize>,

    /// Seconds of per-second CloudWatch metrics kept for GetMetricData
    /// (RequestCount, HTTPCode_*, TargetResponseTime per load balancer and
    /// target group). 0 turns counting off: the CloudWatch API then answers
    /// with no data. Default: 10800 (3 hours, as CloudWatch keeps
    /// high-resolution data).
    #[arg(long, env = "LOCAL_ALB_METRIC_RETENTION_SECONDS", value_name = "SECONDS", value_parser = seconds)]
    pub metric_retention: Option<Duration>,

    /// Directory the access logs are delivered to, as S3 would hold them:
    /// DIR/BUCKET/PREFIX/AWSLogs/ACCOUNT/elasticloadbalancing/REGION/YYYY/MM/DD/*.log.gz.
    /// Logging is on while the load balancer's `access_logs.s3.enabled`
    /// attribute is true (bucket and prefix from `access_logs.s3.bucket` and
    /// `.prefix`). Default: access-logs in the state directory.
    #[arg(long, env = "LOCAL_ALB_ACCESS_LOG_ROOT", value_name = "DIR")]
    pub access_log_root: Option<PathBuf>,

    /// How often a log file is delivered: 300, 90s, 5m (default 5m, as on
    /// AWS; tests use 1s). A clean shutdown delivers what is buffered.
    #[arg(long, env = "LOCAL_ALB_ACCESS_LOG_INTERVAL", value_name = "DURATION", value_parser = whole_duration)]
    pub access_log_interval: Option<Duration>,

    /// The gzip level of the access log files, 0-9 (default 1, deflate at
    /// its fastest: files about a tenth of the text). 0 writes gzip of
    /// stored blocks, which every gzip reader reads: no deflate, files ten
    /// times larger, about the same CPU (writing ten times the bytes); 2-9
    /// compress a little better for more CPU (docs/benchmarks.md, "Access
    /// logs' cost").
    #[arg(long, env = "LOCAL_ALB_ACCESS_LOG_COMPRESSION", value_name = "LEVEL", value_parser = clap::value_parser!(u32).range(0..=9))]
    pub access_log_compression: Option<u32>,

    /// Fault injection (off by default): the delay after which an accepted
    /// change reaches each data-plane node, uniform within MIN..MAX (such as
    /// 0s..8s; one value is a fixed delay). The API answers the new state at
    /// once, as AWS's does, while traffic follows the old one until then.
    /// Durations as below (0..8 is 0s..8s); at most 10m. Also `[faults]
    /// propagation` in the stack file.
    #[arg(long, env = "LOCAL_ALB_PROPAGATION", value_name = "MIN..MAX", value_parser = crate::faults::parse_propagation, allow_hyphen_values = true, help_heading = "Faults")]
    pub propagation: Option<crate::faults::PropagationRange>,

    /// Simulated load balancer nodes: client connections are spread over
    /// them round robin and each applies a change after its own
    /// --propagation delay, in order. 1 to 64; default: 1. Also `[faults]
    /// nodes`.
    #[arg(long, env = "LOCAL_ALB_NODES", value_name = "N", value_parser = crate::faults::parse_nodes, allow_negative_numbers = true, help_heading = "Faults")]
    pub nodes: Option<usize>,

    /// Per-action request rates of the ELBv2 and CloudWatch APIs, in
    /// requests per second (token buckets of one second; `*` is every action
    /// not named), such as DescribeRules=5,ModifyRule=2,*=20; each action
    /// once. Requests over the rate get AWS's throttling error (HTTP 400
    /// `Throttling`, "Rate exceeded"). Also `[faults] throttle`.
    #[arg(long, env = "LOCAL_ALB_THROTTLE", value_name = "ACTION=RATE,...", value_parser = crate::faults::parse_throttle, help_heading = "Faults")]
    pub throttle: Option<crate::faults::ThrottleRates>,

    /// Share of control-API requests answered with a transient server error
    /// (500 InternalFailure or 503 ServiceUnavailable): one share for every
    /// action, such as 0.02, or per action, such as CreateRule=1,*=0.02
    /// (`*` is every action not named; each action once). Also `[faults]
    /// transient_errors`.
    #[arg(long, env = "LOCAL_ALB_TRANSIENT_ERRORS", value_name = "SHARE|ACTION=SHARE,...", value_parser = crate::faults::parse_transient_errors, allow_negative_numbers = true, help_heading = "Faults")]
    pub transient_errors: Option<crate::faults::PerAction>,

    /// Of the transient errors that hit a write, the share answered after
    /// the write was applied (the answer was lost: the client must re-read).
    /// Default: 0.5. Needs --transient-errors. Also `[faults] lost_answers`.
    #[arg(long, env = "LOCAL_ALB_LOST_ANSWERS", value_name = "SHARE", value_parser = crate::faults::parse_share, allow_negative_numbers = true, help_heading = "Faults")]
    pub lost_answers: Option<f64>,
}

/// A duration of whole seconds, at least one: 300, 90s, 5m, 1h
/// (`alb::duration`'s rule).
fn whole_duration(text: &str) -> Result<Duration, String> {
    let duration = alb::duration::parse(text)?;
    if duration < Duration::from_secs(1) || duration.subsec_nanos() != 0 {
        return Err(format!(
            "`{}` is not a whole number of seconds of at least 1s, such as 300, 90s, 5m or 1h",
            text.trim()
        ));
    }
    Ok(duration)
}

/// A duration: 60 (seconds), 0.5, 90s, 500ms (`alb::duration`'s rule).
fn seconds(text: &str) -> Result<Duration, String> {
    alb::duration::parse(text)
}

/// A whole number of threads above 0.
fn threads(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "expected a whole number of threads above 0, such as 2 (from the option or its LOCAL_ALB_* variable, see --help)".to_owned())
}

/// Everything `Application::build` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: the repository's stack file if present, else the built-in copy.
    pub stack: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub reset: bool,
    pub listen: SocketAddr,
    pub control_listen: SocketAddr,
    pub allow_remote_control: bool,
    /// Timeouts and threads of the data plane.
    pub data_plane: DataPlaneOptions,
    /// Fault injection; what is set here wins over the stack file's
    /// `[faults]`.
    pub faults: crate::faults::FaultOptions,
    /// Where each of `faults`' values came from (flag or variable), for
    /// the startup line and messages.
    pub fault_sources: Sources,
}

impl Settings {
    /// Settings for a local run keeping state in `state_dir`, both listeners on
    /// free loopback ports.
    pub fn on_free_ports(state_dir: impl Into<PathBuf>) -> Settings {
        let loopback_any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Settings {
            stack: None,
            state_dir: state_dir.into(),
            reset: false,
            listen: loopback_any_port,
            control_listen: loopback_any_port,
            allow_remote_control: false,
            data_plane: DataPlaneOptions::default(),
            faults: crate::faults::FaultOptions::default(),
            fault_sources: Sources::default(),
        }
    }

    /// The settings of a command line (the program's name first) and the
    /// `LOCAL_ALB_*` variables, recording where each fault option came
    /// from. The error is clap's, to print with `clap::Error::exit` (help
    /// and version are errors too); a bad value from a variable names the
    /// variable.
    pub fn from_command_line<I, T>(args: I) -> Result<Settings, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut command = Cli::command();
        let matches = match command.try_get_matches_from_mut(&args) {
            Ok(matches) => matches,
            Err(error) => return Err(name_the_variable(error, &mut command, &args)),
        };
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        let mut sources = Sources::default();
        for fault in Fault::ALL {
            match matches.value_source(fault.key()) {
                Some(ValueSource::CommandLine) => sources.set(fault, fault.flag()),
                Some(ValueSource::EnvVariable) => {
                    if let Some(variable) = variable_of(&command, fault.key()) {
                        sources.set(fault, variable);
                    }
                }
                _ => {}
            }
        }
        let mut settings = Settings::from(cli);
        settings.fault_sources = sources;
        Ok(settings)
    }
}

/// The `LOCAL_ALB_*` variable of the option `id`.
fn variable_of(command: &clap::Command, id: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .and_then(clap::Arg::get_env)
        .map(|variable| variable.to_string_lossy().into_owned())
}

/// clap names the flag of a bad value (`invalid value '9s..1s' for
/// '--propagation <MIN..MAX>'`) even when it came from the flag's variable
/// and the flag was never given; then this names the variable instead:
/// `invalid value '9s..1s' in the variable LOCAL_ALB_PROPAGATION (it sets
/// --propagation): ...`.
fn name_the_variable(
    error: clap::Error,
    command: &mut clap::Command,
    args: &[OsString],
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::ValueValidation {
        return error;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return error;
    };
    let flag = arg.split(' ').next().unwrap_or_default();
    let Some(id) = command
        .get_arguments()
        .find(|a| a.get_long().is_some_and(|long| flag == format!("--{long}")))
        .map(|a| a.get_id().to_string())
    else {
        return error;
    };
    let Some(variable) = variable_of(command, &id) else {
        return error;
    };
    let given = args.iter().skip(1).filter_map(|a| a.to_str()).any(|a| {
        a.strip_prefix(flag)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    });
    if given {
        return error;
    }
    let why = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_else(|| "see --help".to_owned());
    let message =
        format!("invalid value '{value}' in the variable {variable} (it sets {flag}): {why}");
    command.error(ErrorKind::ValueValidation, message)
}

impl From<Cli> for Settings {
    fn from(cli: Cli) -> Settings {
        let defaults = DataPlaneOptions::default();
        let data_plane = DataPlaneOptions {
            target_timeout: cli.target_timeout.unwrap_or(defaults.target_timeout),
            deregistration_delay: cli
                .deregistration_delay
                .unwrap_or(defaults.deregistration_delay),
            head: HeadPolicy {
                idle_timeout: cli
                    .client_idle_timeout
                    .unwrap_or(defaults.head.idle_timeout),
                ..defaults.head
            },
            worker_threads: cli.worker_threads.unwrap_or(defaults.worker_threads),
            metric_retention: cli.metric_retention.unwrap_or(defaults.metric_retention),
            access_log_root: cli.access_log_root,
            access_log_interval: cli
                .access_log_interval
                .unwrap_or(defaults.access_log_interval),
            access_log_compression: cli
                .access_log_compression
                .unwrap_or(defaults.access_log_compression),
            propagation: defaults.propagation,
        };
        Settings {
            stack: cli.stack,
            state_dir: cli.state_dir,
            reset: cli.reset,
            listen: cli.listen,
            control_listen: cli.control_listen,
            allow_remote_control: cli.allow_remote_control,
            data_plane,
            faults: crate::faults::FaultOptions {
                propagation: cli.propagation,
                nodes: cli.nodes,
                throttle: cli.throttle,
                transient_errors: cli.transient_errors,
                lost_answers: cli.lost_answers,
            },
            fault_sources: Sources::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_option_reads_a_bare_number_as_seconds_and_units_alike() {
        let cli = Cli::try_parse_from([
            "local-alb",
            "--access-log-interval",
            "300",
            "--target-timeout",
            "1m",
            "--client-idle-timeout",
            "0.5",
            "--propagation",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.access_log_interval, Some(Duration::from_secs(300)));
        assert_eq!(cli.target_timeout, Some(Duration::from_secs(60)));
        assert_eq!(cli.client_idle_timeout, Some(Duration::from_millis(500)));
        assert_eq!(
            cli.propagation.map(|range| range.max),
            Some(Duration::from_secs(2))
        );
        for (flag, value) in [
            ("--access-log-interval", "soon"),
            ("--target-timeout", "5x"),
            ("--propagation", "0s..later"),
        ] {
            let error = Cli::try_parse_from(["local-alb", flag, value])
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("a bare number is seconds") && error.contains("ms, s, m, h, d, w"),
                "{flag} {value}: {error}"
            );
        }
        let error = Cli::try_parse_from(["local-alb", "--access-log-interval", "1.5s"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("whole number of seconds"), "{error}");
    }

    #[test]
    fn a_negative_fault_value_reaches_the_options_own_check() {
        for (flag, value, why) in [
            ("--nodes", "-3", "nodes must be a whole number from 1 to 64"),
            ("--propagation", "-1s..2s", "`-1s` is negative"),
            ("--transient-errors", "-0.1", "`-0.1` is below 0"),
            ("--lost-answers", "-1", "`-1` is below 0"),
            (
                "--propagation",
                "--nodes",
                "`--nodes` is an option, not a range",
            ),
        ] {
            let error = Settings::from_command_line(["local-alb", flag, value])
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(why) && !error.contains("unexpected argument"),
                "{flag} {value}: {error}"
            );
        }
        let given =
            Settings::from_command_line(["local-alb", "--throttle", "DescribeRules=5"]).unwrap();
        assert_eq!(given.fault_sources.of(Fault::Throttle), "--throttle");
    }
}
