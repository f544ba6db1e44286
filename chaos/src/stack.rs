//! The local stack under test ([`localstack`]) in the run's temporary
//! directory, and `migrate` run as a subprocess against it, each run's output
//! in a log of its own.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::Command;

pub use localstack::{ALB, Binaries, Process, SERVERS, write};
use localstack::{Build, Options, Stack as LocalStack};

/// The routes `migrate` moves, each served by the server of the same name.
pub const ROUTES: [&str; 3] = ["users", "threads", "posts"];
/// `migrate`'s binary.
pub const MIGRATE: &str = "migrate";
/// The data plane's idle keep-alive limit in the suite (`LOCAL_ALB_CLIENT_IDLE_TIMEOUT_SECONDS`).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Finds every binary the suite starts ([`Binaries::locate`]: next to the
/// running `chaos`, or in `dir`; never built), or names the missing ones and
/// how to build them.
pub fn locate_binaries(dir: Option<&Path>) -> anyhow::Result<Binaries> {
    Binaries::locate(dir, &[MIGRATE], Build::Never)
}

/// What a finished `migrate` run left.
#[derive(Debug, Clone)]
pub struct MigrateRun {
    pub args: String,
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub output: String,
    pub elapsed: Duration,
}

impl MigrateRun {
    /// Fails naming the command and its output unless it exited `expected`.
    pub fn expect(&self, expected: i32) -> anyhow::Result<&MigrateRun> {
        if self.code != Some(expected) {
            bail!(
                "`migrate {}` exited {:?}, expected {expected}; its output:\n{}",
                self.args,
                self.code,
                self.output.trim_end()
            );
        }
        Ok(self)
    }
}

/// The running stack, and the `migrate` runs against it. Everything of the
/// local stack itself (addresses, files, killing and restarting its parts) is
/// [`LocalStack`]'s, reached through `Deref`.
pub struct Stack {
    // Declared first: its processes are killed before the directory is removed.
    local: LocalStack,
    /// The run's directory: logs, stack file, ALB state, `migrate.toml`.
    pub dir: tempfile::TempDir,
    runs: AtomicUsize,
}

impl Deref for Stack {
    type Target = LocalStack;

    fn deref(&self) -> &LocalStack {
        &self.local
    }
}

impl DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut LocalStack {
        &mut self.local
    }
}

impl Stack {
    /// Starts the local stack in a new temporary directory: its ALB closes
    /// idle client connections after [`CLIENT_IDLE_TIMEOUT`], and each route
    /// of its `migrate.toml` needs a single interval probe.
    pub async fn start(binaries: Binaries) -> anyhow::Result<Stack> {
        Stack::start_with(binaries, Vec::new(), &[]).await
    }

    /// [`Stack::start`], with more `local-alb` options (the AWS faults of
    /// scenario 9) and top-level `migrate.toml` keys (`propagation_max`).
    pub async fn start_with(
        binaries: Binaries,
        more_alb_args: Vec<String>,
        settings: &[(&str, String)],
    ) -> anyhow::Result<Stack> {
        let dir = tempfile::Builder::new().prefix("ficus-chaos-").tempdir()?;
        let mut route_settings = toml::Table::new();
        route_settings.insert("min_probes".into(), 1.into());
        let mut alb_args = vec![
            "--client-idle-timeout".to_owned(),
            CLIENT_IDLE_TIMEOUT.as_secs().to_string(),
        ];
        alb_args.extend(more_alb_args);
        let options = Options {
            written_by: "the chaos suite",
            alb_args,
            route_settings,
            front: None,
        };
        let local = LocalStack::start(binaries, dir.path(), options).await?;
        if !settings.is_empty() {
            // Top-level keys set over the file's (the repo's migrate.toml has
            // `propagation_max`); the header comment stays first.
            let text = std::fs::read_to_string(&local.config)?;
            let mut table: toml::Table = toml::from_str(&text)?;
            for (key, value) in settings {
                table.insert((*key).to_owned(), toml::Value::from(value.as_str()));
            }
            let header: String = text
                .lines()
                .take_while(|line| line.starts_with('#'))
                .map(|line| format!("{line}\n"))
                .collect();
            std::fs::write(
                &local.config,
                format!("{header}{}", toml::to_string(&table)?),
            )?;
        }
        Ok(Stack {
            local,
            dir,
            runs: AtomicUsize::new(0),
        })
    }

    /// Spawns `migrate --config FILE ARGS...`, its output in a log of its own.
    pub fn spawn_migrate(&self, args: &[&str]) -> anyhow::Result<Process> {
        self.spawn_migrate_with(&self.config, args, &[])
    }

    /// Spawns `migrate` with another settings file and extra environment.
    pub fn spawn_migrate_with(
        &self,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        let index = self.runs.fetch_add(1, Ordering::Relaxed);
        let log = self.file(&format!("migrate-{index:04}.log"));
        let mut command = Command::new(self.binaries.path(MIGRATE));
        command.arg("--config").arg(config).args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        Process::spawn(&format!("migrate {}", args.join(" ")), command, &log)
    }

    /// Runs `migrate ARGS...` to its end (at most `timeout`).
    pub async fn migrate(&self, args: &[&str], timeout: Duration) -> anyhow::Result<MigrateRun> {
        let process = self.spawn_migrate(args)?;
        finish(process, args, timeout).await
    }

    /// `migrate status --output json`, parsed.
    pub async fn status(&self) -> anyhow::Result<serde_json::Value> {
        let run = self
            .migrate(&["status", "--output", "json"], Duration::from_secs(30))
            .await?;
        run.expect(0)?;
        json_document(&run.output)
            .with_context(|| format!("no JSON document in status output:\n{}", run.output))
    }

    /// Waits until every target group has a healthy target
    /// ([`LocalStack::wait_healthy`]).
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<Duration> {
        self.local.wait_healthy(timeout, |_| {}).await
    }
}

/// The JSON document of a `migrate --output json` run's log: the first value
/// that starts a line with `{` or `[`. Stderr's lines (progress, waits, the
/// AWS API line: said with `--output json` too) share the log, before or
/// after it.
pub fn json_document(output: &str) -> Option<serde_json::Value> {
    let start = std::iter::once(0)
        .chain(output.match_indices('\n').map(|(at, _)| at + 1))
        .find(|at| output[*at..].starts_with(['{', '[']))?;
    serde_json::Deserializer::from_str(&output[start..])
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()
}

/// Waits for a spawned `migrate` and collects what it printed.
pub async fn finish(
    mut process: Process,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<MigrateRun> {
    let status = process.wait(timeout).await;
    let status = match status {
        Ok(status) => status,
        Err(err) => {
            process.kill9().await;
            return Err(err.context(process.output()));
        }
    };
    Ok(MigrateRun {
        args: args.join(" "),
        code: status.code(),
        output: process.output(),
        elapsed: process.started.elapsed(),
    })
}
