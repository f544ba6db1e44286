//! The team's own gates (`[[routes.NAME.gates]]`): a webhook (POST of the
//! `gate.check` event, 2xx passes) or a command (no shell, exit 0 passes,
//! `FICUS_*` environment variables), per phase: `before-shift`, `step`,
//! `before-full`, and `after-rollback` (a hook: its verdict is reported and
//! never fails anything).
//!
//! A gate that does not answer within its `timeout` counts as its
//! `on_timeout` says (`fail`, or `pass`); a command's whole process group is
//! killed then. A `dry_run` gate's verdict is shown and journaled, marked
//! dry-run, and never fails the step. The reason of a verdict is the first
//! KiB of the answer's body or of the command's stderr (its stdout when
//! stderr is empty).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use crate::notify::{Event, Kind, first_kib};
use crate::settings::{GatePhase, GateSettings, OnTimeout};

/// How long a finished command's output may take to close (a grandchild
/// outside its process group may hold it open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Where in a shift the gates run, and what they are told.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub route: &'a str,
    pub phase: GatePhase,
    /// The route's share on the service now, in percent.
    pub from: u8,
    /// The share the step (or the shift) goes to.
    pub to: u8,
    pub who: &'a str,
    /// The directory of migrate.toml: commands run there, and a relative
    /// program path (`scripts/check`) is found there.
    pub base_dir: &'a Path,
}

/// One gate's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub gate: String,
    pub phase: GatePhase,
    pub passed: bool,
    pub dry_run: bool,
    pub timed_out: bool,
    /// The first KiB of the answer or of stderr, or what went wrong.
    pub reason: String,
    pub millis: u64,
}

impl Verdict {
    /// Whether this verdict fails the step (a failed gate not in dry-run).
    pub fn fails(&self) -> bool {
        !self.passed && !self.dry_run && self.phase != GatePhase::AfterRollback
    }

    /// `gate contract-tests (step): failed: HTTP 500: ...` for people.
    pub fn line(&self) -> String {
        let verdict = match (self.passed, self.dry_run) {
            (true, false) => "passed",
            (false, false) => "failed",
            (true, true) => "dry-run: would pass",
            (false, true) => "dry-run: would fail",
        };
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", self.reason)
        };
        format!(
            "gate {} ({}) {verdict} in {} ms{reason}",
            self.gate,
            self.phase.name(),
            self.millis
        )
    }
}

/// Runs the gates of `call.phase`, in the order of migrate.toml.
pub async fn run_phase(gates: &[GateSettings], call: &Call<'_>) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for gate in gates.iter().filter(|g| g.phase == call.phase) {
        verdicts.push(run_gate(gate, call).await);
    }
    verdicts
}

/// The gates that run before a step to `to` percent: `step`, and
/// `before-full` when `to` is 100.
pub fn step_phases(to: u8) -> Vec<GatePhase> {
    let mut phases = vec![GatePhase::Step];
    if to == 100 {
        phases.push(GatePhase::BeforeFull);
    }
    phases
}

/// What `plan` says of a gate.
pub fn describe(gate: &GateSettings) -> String {
    let how = match (&gate.url, &gate.command) {
        (Some(url), _) => format!("POST {url}, 2xx passes"),
        (None, Some(command)) => format!("run {}, exit 0 passes", command.join(" ")),
        (None, None) => String::new(),
    };
    let on_timeout = match gate.on_timeout {
        OnTimeout::Fail => "fails",
        OnTimeout::Pass => "passes",
    };
    let dry_run = if gate.dry_run {
        "; dry-run: reported, never fails"
    } else {
        ""
    };
    format!(
        "custom gate {} ({}): {how}; after {} it {on_timeout}{dry_run}",
        gate.name,
        gate.phase.name(),
        humantime::format_duration(gate.timeout)
    )
}

async fn run_gate(gate: &GateSettings, call: &Call<'_>) -> Verdict {
    let started = Instant::now();
    let outcome = match (&gate.url, &gate.command) {
        (Some(url), _) => webhook(gate, url, call).await,
        (None, Some(command)) => command_gate(gate, command, call).await,
        (None, None) => Outcome::Failed("no url or command".to_owned()),
    };
    let (passed, timed_out, reason) = match outcome {
        Outcome::Passed(reason) => (true, false, reason),
        Outcome::Failed(reason) => (false, false, reason),
        Outcome::TimedOut(what) => {
            let pass = gate.on_timeout == OnTimeout::Pass;
            let counted = if pass { "passes" } else { "fails" };
            (
                pass,
                true,
                format!(
                    "timed out after {}{what}; on_timeout = {} so it {counted}",
                    humantime::format_duration(gate.timeout),
                    if pass { "pass" } else { "fail" }
                ),
            )
        }
    };
    Verdict {
        gate: gate.name.clone(),
        phase: call.phase,
        passed,
        dry_run: gate.dry_run,
        timed_out,
        reason,
        millis: started.elapsed().as_millis() as u64,
    }
}

enum Outcome {
    Passed(String),
    Failed(String),
    /// What was done about it (e.g. the process group killed).
    TimedOut(String),
}

/// POSTs the `gate.check` event; a 2xx answer passes.
async fn webhook(gate: &GateSettings, url: &str, call: &Call<'_>) -> Outcome {
    let mut event = Event::new(Kind::GateCheck, Some(call.route))
        .shares(Some(call.from), Some(call.to))
        .step(call.to)
        .gate(&gate.name, None);
    event.phase = Some(call.phase);
    event.dry_run = gate.dry_run;
    let event = event.finish(call.who);
    let client = reqwest::Client::new();
    let answer = client
        .post(url)
        .header(crate::notify::EVENT_HEADER, Kind::GateCheck.name())
        .timeout(gate.timeout)
        .json(&event)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(err) if err.is_timeout() => return Outcome::TimedOut(String::new()),
        Err(err) => {
            return Outcome::Failed(format!(
                "POST {url}: {}",
                crate::notify::describe_http_error(&err)
            ));
        }
    };
    let status = answer.status();
    let body = match answer.bytes().await {
        Ok(body) => body,
        Err(err) if err.is_timeout() => return Outcome::TimedOut(String::new()),
        Err(_) => Default::default(),
    };
    let reason = format!("HTTP {}: {}", status.as_u16(), first_kib(&body));
    if status.is_success() {
        Outcome::Passed(reason)
    } else {
        Outcome::Failed(reason)
    }
}

/// Runs the command in its own process group, without a shell; exit 0 passes.
async fn command_gate(gate: &GateSettings, argv: &[String], call: &Call<'_>) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome::Failed("empty command".to_owned());
    };
    let path = Path::new(program);
    let program_path = if path.is_relative() && program.contains('/') {
        call.base_dir.join(path)
    } else {
        path.to_path_buf()
    };
    let mut command = tokio::process::Command::new(&program_path);
    command
        .args(args)
        .current_dir(call.base_dir)
        .env("FICUS_ROUTE", call.route)
        .env("FICUS_STEP", call.to.to_string())
        .env("FICUS_FROM", call.from.to_string())
        .env("FICUS_TO", call.to.to_string())
        .env("FICUS_PHASE", call.phase.name())
        .env("FICUS_GATE", &gate.name)
        .env("FICUS_DRY_RUN", gate.dry_run.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return Outcome::Failed(format!(
                "cannot run `{}`: {err} (relative paths are found beside migrate.toml)",
                program_path.display()
            ));
        }
    };
    let stdout = tokio::spawn(read_capped(child.stdout.take()));
    let stderr = tokio::spawn(read_capped(child.stderr.take()));
    let status = match tokio::time::timeout(gate.timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => return Outcome::Failed(format!("waiting for `{program}`: {err}")),
        Err(_) => {
            let killed = kill_group(child.id());
            let _ = child.wait().await;
            return Outcome::TimedOut(killed);
        }
    };
    let read = |task: tokio::task::JoinHandle<Vec<u8>>| async move {
        tokio::time::timeout(OUTPUT_GRACE, task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let (out, err) = (read(stdout).await, read(stderr).await);
    let text = if err.iter().any(|b| !b.is_ascii_whitespace()) {
        first_kib(&err)
    } else {
        first_kib(&out)
    };
    let how = match status.code() {
        Some(code) => format!("exit {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt as _;
            format!("killed by signal {}", status.signal().unwrap_or_default())
        }
    };
    let reason = if text.is_empty() {
        how
    } else {
        format!("{how}: {text}")
    };
    if status.success() {
        Outcome::Passed(reason)
    } else {
        Outcome::Failed(reason)
    }
}

/// Kills the command's process group (its children too); says what was done.
fn kill_group(pid: Option<u32>) -> String {
    let Some(pid) = pid
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return String::new();
    };
    match rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        Ok(()) => format!("; its process group {} was killed", pid.as_raw_nonzero()),
        Err(err) => format!("; killing its process group failed ({err})"),
    }
}

/// Reads a pipe to its end, keeping the first KiB (and one byte more, so
/// that a longer output is marked cut).
async fn read_capped(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let room = (crate::notify::REASON_MAX + 1).saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..n.min(room)]);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_to_100_also_runs_the_before_full_gates() {
        assert_eq!(step_phases(50), vec![GatePhase::Step]);
        assert_eq!(
            step_phases(100),
            vec![GatePhase::Step, GatePhase::BeforeFull]
        );
    }
}
