//! The local stack under test: the four forum servers and the local ALB as
//! real processes on loopback, each one's output in a log file of the run's
//! temporary directory, and `migrate` run as a subprocess against them.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// The repo's local stack file, patched with the real ports.
const STACK_FILE: &str = include_str!("../../infrastructure/local/stack.toml");
/// The repo's `migrate.toml`, patched to point at the stack.
const MIGRATE_FILE: &str = include_str!("../../migrate.toml");

/// The forum servers; each is also its target group's name.
pub const SERVERS: [&str; 4] = ["monolith", "users", "threads", "posts"];
/// The routes `migrate` moves, each served by the server of the same name.
pub const ROUTES: [&str; 3] = ["users", "threads", "posts"];
/// The local ALB's binary.
pub const ALB: &str = "local-alb";
/// `migrate`'s binary.
pub const MIGRATE: &str = "migrate";

/// The ALB's shortest health-check interval (5 s, as on AWS; it refuses 1 s).
const HEALTH_INTERVAL_SECONDS: i64 = 5;
const HEALTH_TIMEOUT_SECONDS: i64 = 2;
/// The data plane's idle keep-alive limit in the suite (`LOCAL_ALB_CLIENT_IDLE_TIMEOUT_SECONDS`).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a process may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the binaries are: next to the running `chaos`, or `--bin-dir`.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds every binary the suite starts, or names the missing ones and how to build them.
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Binaries> {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_exe()
                .context("cannot find the running chaos executable")?
                .parent()
                .map(Path::to_path_buf)
                .context("the chaos executable has no parent directory")?,
        };
        let binaries = Binaries { dir };
        let missing: Vec<&str> = SERVERS
            .iter()
            .chain([ALB, MIGRATE].iter())
            .copied()
            .filter(|name| !binaries.path(name).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} missing from {}; build the workspace first (`cargo build`) or pass --bin-dir DIR",
                missing.join(", "),
                binaries.dir.display()
            );
        }
        Ok(binaries)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }
}

/// One started process, its output in `log`; killed when dropped.
pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub started: Instant,
}

impl Process {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Process> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open the log {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.id().and_then(|id| i32::try_from(id).ok())
    }

    /// The log so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds a line containing `needle`, and returns it.
    /// Fails if the process exits first or `timeout` passes.
    pub async fn wait_for_line(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        self.wait_for_line_after(needle, 0, timeout).await
    }

    /// [`Process::wait_for_line`] in the log past byte `offset` (a restarted
    /// process appends to its predecessor's log).
    pub async fn wait_for_line_after(
        &mut self,
        needle: &str,
        offset: usize,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            let fresh = output.get(offset..).unwrap_or("");
            if let Some(line) = fresh.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before printing `{needle}`; its output:\n{fresh}",
                    self.name
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print `{needle}` within {timeout:?}; its output:\n{fresh}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL, then reap.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on a pid this process spawned and has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            self.kill9().await;
        }
    }

    /// Waits for the exit, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit within {timeout:?}", self.name))?
            .with_context(|| format!("waiting for {}", self.name))
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
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

/// The running stack.
pub struct Stack {
    pub binaries: Binaries,
    pub dir: tempfile::TempDir,
    servers: BTreeMap<&'static str, (Process, SocketAddr)>,
    alb: Option<Process>,
    pub data_address: SocketAddr,
    pub control_address: SocketAddr,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub stack_file: PathBuf,
    pub access_key_id: String,
    pub secret_access_key: String,
    runs: AtomicUsize,
}

impl Stack {
    /// Starts the servers on free ports, the local ALB in front of them, and
    /// writes `migrate.toml` for it.
    pub async fn start(binaries: Binaries) -> anyhow::Result<Stack> {
        let dir = tempfile::Builder::new().prefix("ficus-chaos-").tempdir()?;
        let mut servers = BTreeMap::new();
        let mut started = Vec::new();
        for name in SERVERS {
            started.push((name, spawn_server(&binaries, dir.path(), name, 0)?));
        }
        for (name, mut process) in started {
            let address = server_address(&mut process, 0).await?;
            servers.insert(name, (process, address));
        }
        let stack_table = patched_stack(&servers)?;
        let stack_file = dir.path().join("stack.toml");
        write(&stack_file, &toml::to_string(&stack_table)?)?;
        let credentials = stack_table
            .get("credentials")
            .and_then(toml::Value::as_table)
            .context("the repo's stack file has no [credentials]")?;
        let text = |key: &str| {
            credentials
                .get(key)
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("the repo's stack file has no credentials.{key}"))
        };
        let access_key_id = text("access_key_id")?;
        let secret_access_key = text("secret_access_key")?;
        let state_dir = dir.path().join("alb-state");
        let config = dir.path().join("migrate.toml");
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut stack = Stack {
            binaries,
            dir,
            servers,
            alb: None,
            data_address: loopback,
            control_address: loopback,
            config,
            state_dir,
            stack_file,
            access_key_id,
            secret_access_key,
            runs: AtomicUsize::new(0),
        };
        stack.start_alb(loopback, loopback).await?;
        write(&stack.config, &stack.migrate_toml()?)?;
        Ok(stack)
    }

    pub fn data_url(&self) -> String {
        format!("http://{}", self.data_address)
    }

    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_address)
    }

    pub fn server_url(&self, name: &str) -> String {
        self.servers
            .get(name)
            .map(|(_, address)| format!("http://{address}"))
            .unwrap_or_default()
    }

    /// A file in the run's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn start_alb(&mut self, data: SocketAddr, control: SocketAddr) -> anyhow::Result<()> {
        let log = self.file("local-alb.log");
        let mut command = Command::new(self.binaries.path(ALB));
        command
            .arg("--stack")
            .arg(&self.stack_file)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--listen")
            .arg(data.to_string())
            .arg("--control-listen")
            .arg(control.to_string())
            .env("RUST_LOG", "info")
            .env(
                "LOCAL_ALB_CLIENT_IDLE_TIMEOUT_SECONDS",
                CLIENT_IDLE_TIMEOUT.as_secs().to_string(),
            );
        // A restart appends to the same log: look only at what follows.
        let before = log_length(&log);
        let mut alb = Process::spawn(ALB, command, &log)?;
        let data_line = alb
            .wait_for_line_after("data listener on ", before, START_TIMEOUT)
            .await?;
        let control_line = alb
            .wait_for_line_after("control listener on ", before, START_TIMEOUT)
            .await?;
        self.data_address = address_after(&data_line, "http://")?;
        self.control_address = address_after(&control_line, "http://")?;
        self.alb = Some(alb);
        Ok(())
    }

    /// SIGKILLs the local ALB.
    pub async fn kill_alb(&mut self) {
        if let Some(mut alb) = self.alb.take() {
            alb.kill9().await;
        }
    }

    /// Starts the local ALB again, same state directory, same addresses.
    pub async fn restart_alb(&mut self) -> anyhow::Result<()> {
        self.kill_alb().await;
        let (data, control) = (self.data_address, self.control_address);
        self.start_alb(data, control).await
    }

    /// SIGKILLs a forum server.
    pub async fn kill_server(&mut self, name: &str) {
        if let Some((process, _)) = self.servers.get_mut(name) {
            process.kill9().await;
        }
    }

    /// Starts a killed forum server again on its port.
    pub async fn restart_server(&mut self, name: &'static str) -> anyhow::Result<()> {
        let port = self
            .servers
            .get(name)
            .map(|(_, address)| address.port())
            .context("no such server")?;
        let offset = log_length(&self.file(&format!("{name}.log")));
        let mut process = spawn_server(&self.binaries, self.dir.path(), name, port)?;
        let address = server_address(&mut process, offset).await?;
        self.servers.insert(name, (process, address));
        Ok(())
    }

    /// Whether the ALB's process is still running (not crashed).
    pub fn alb_alive(&mut self) -> bool {
        self.alb
            .as_mut()
            .is_some_and(|alb| alb.try_wait().is_none())
    }

    /// Every forum server still running.
    pub fn servers_alive(&mut self) -> bool {
        self.servers
            .values_mut()
            .all(|(process, _)| process.try_wait().is_none())
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
        let json_start = run.output.find('{').context("no JSON in status output")?;
        serde_json::from_str(&run.output[json_start..])
            .with_context(|| format!("status output is not JSON:\n{}", run.output))
    }

    /// Waits until every target group has a healthy target (from `/metrics`).
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            let text = match client
                .get(format!("{}/metrics", self.control_url()))
                .send()
                .await
            {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let healthy: Vec<&str> = SERVERS
                .iter()
                .copied()
                .filter(|group| {
                    text.lines().any(|line| {
                        line.starts_with("ficus_alb_target_healthy{")
                            && line.contains(&format!("target_group=\"{group}\""))
                            && line.trim_end().ends_with(" 1")
                    })
                })
                .collect();
            if healthy.len() == SERVERS.len() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "only {healthy:?} of {SERVERS:?} had a healthy target after {timeout:?}; /metrics:\n{text}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The repo's `migrate.toml` pointed at this stack.
    fn migrate_toml(&self) -> anyhow::Result<String> {
        let mut settings: toml::Table =
            toml::from_str(MIGRATE_FILE).context("the repo's migrate.toml does not parse")?;
        settings.insert("lb_url".into(), self.data_url().into());
        settings.insert("journal".into(), "journal.jsonl".into());
        let aws = table_entry(&mut settings, "aws");
        aws.insert("endpoint_url".into(), self.control_url().into());
        aws.insert("access_key_id".into(), self.access_key_id.clone().into());
        aws.insert(
            "secret_access_key".into(),
            self.secret_access_key.clone().into(),
        );
        let monolith = self.server_url("monolith");
        table_entry(&mut settings, "monolith").insert("base_url".into(), monolith.into());
        let routes = table_entry(&mut settings, "routes");
        for (name, route) in routes.iter_mut() {
            if let Some(route) = route.as_table_mut() {
                route.insert("service_url".into(), self.server_url(name).into());
                route.insert("min_probes".into(), 1.into());
            }
        }
        Ok(toml::to_string(&settings)?)
    }

    /// Stops every process.
    pub async fn stop(&mut self) {
        if let Some(mut alb) = self.alb.take() {
            alb.stop().await;
        }
        for (process, _) in self.servers.values_mut() {
            process.stop().await;
        }
    }

    /// Every log file of the run (servers, ALB, every `migrate`).
    pub fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs
    }
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

fn spawn_server(binaries: &Binaries, dir: &Path, name: &str, port: u16) -> anyhow::Result<Process> {
    let mut command = Command::new(binaries.path(name));
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--log-format", "text"])
        .env("RUST_LOG", "info")
        .env_remove("CONFIG_FILE")
        .env_remove("DATA");
    Process::spawn(name, command, &dir.join(format!("{name}.log")))
}

async fn server_address(process: &mut Process, offset: usize) -> anyhow::Result<SocketAddr> {
    let line = process
        .wait_for_line_after("listening on ", offset, START_TIMEOUT)
        .await?;
    address_after(&line, "listening on ")
}

/// The length of a log so far (0 when it does not exist yet).
fn log_length(log: &Path) -> usize {
    std::fs::metadata(log).map_or(0, |meta| usize::try_from(meta.len()).unwrap_or(0))
}

fn address_after(line: &str, marker: &str) -> anyhow::Result<SocketAddr> {
    line.split(marker)
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| c.is_whitespace() || c == '/')
                .find(|part| !part.is_empty())
        })
        .and_then(|text| text.parse().ok())
        .with_context(|| format!("cannot read an address after `{marker}` in `{line}`"))
}

/// The repo's stack file with each target group's target on its server's
/// port and the shortest health checks the ALB accepts.
fn patched_stack(
    servers: &BTreeMap<&'static str, (Process, SocketAddr)>,
) -> anyhow::Result<toml::Table> {
    let mut table: toml::Table =
        toml::from_str(STACK_FILE).context("the repo's stack file does not parse")?;
    let groups = table
        .get_mut("target_groups")
        .and_then(toml::Value::as_array_mut)
        .context("the repo's stack file has no [[target_groups]]")?;
    for group in groups.iter_mut().filter_map(toml::Value::as_table_mut) {
        let name = group
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (_, address) = servers
            .get(name.as_str())
            .with_context(|| format!("no server for target group `{name}`"))?;
        group.insert(
            "targets".into(),
            toml::Value::Array(vec![address.to_string().into()]),
        );
        let mut check = toml::Table::new();
        check.insert("path".into(), "/".into());
        check.insert("interval_seconds".into(), HEALTH_INTERVAL_SECONDS.into());
        check.insert("timeout_seconds".into(), HEALTH_TIMEOUT_SECONDS.into());
        check.insert("healthy_threshold".into(), 2.into());
        check.insert("unhealthy_threshold".into(), 2.into());
        check.insert("matcher".into(), "200".into());
        group.insert("health_check".into(), check.into());
    }
    Ok(table)
}

fn table_entry<'a>(table: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    let entry = table
        .entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    entry.as_table_mut().expect("just made a table")
}

pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
