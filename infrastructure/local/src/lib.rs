//! The local stack: the four forum servers on free loopback ports and the
//! local ALB in front of them, started from the repo's stack file
//! (`infrastructure/local/stack.toml`) patched with the real ports and short
//! health checks, and the repo's `migrate.toml` pointed at them. Each process's
//! output goes to a log file in the stack's directory.
//!
//! `migrate demo` runs its walkthrough on it; the chaos suite also kills and
//! restarts its parts; the `migrate` tests start it through [`blocking`].
//! [`Binaries::locate`] is the one way they all find (and, under cargo,
//! build) the binaries, and [`Stack::wait_healthy`] the one wait until every
//! target group has a healthy target.

#![forbid(unsafe_code)]

pub mod blocking;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// The repo's local stack file.
const STACK_FILE: &str = include_str!("../stack.toml");
/// The repo's `migrate.toml` for the local stack.
const MIGRATE_FILE: &str = include_str!("../../../migrate.toml");

/// The forum servers, by binary name; each is also its target group's name in
/// the stack file.
pub const SERVERS: [&str; 4] = ["monolith", "users", "threads", "posts"];
/// The monolith's target group in the stack file.
pub const MONOLITH_TARGET_GROUP: &str = "monolith";
/// The local ALB's binary.
pub const ALB: &str = "local-alb";

/// Health checks of the stack: the shortest interval the ALB accepts (5 s, as
/// on AWS; it refuses 1 s) and two successes, so targets are healthy within seconds.
const HEALTH_INTERVAL_SECONDS: i64 = 5;
const HEALTH_TIMEOUT_SECONDS: i64 = 2;
const HEALTHY_THRESHOLD: i64 = 2;

/// How long a process may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    pub fn new(dir: &Path) -> Binaries {
        Binaries {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory of the running executable (`target/debug`, `target/release`...).
    pub fn beside_current_exe() -> anyhow::Result<Binaries> {
        let exe = current_exe()?;
        let dir = exe.parent().with_context(|| {
            format!("the running executable {} has no directory", exe.display())
        })?;
        Ok(Binaries::new(dir))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }

    /// The stack's binaries (the servers, then the local ALB), then `extra`,
    /// that are not in the directory.
    pub fn missing(&self, extra: &[&'static str]) -> Vec<&'static str> {
        SERVERS
            .iter()
            .chain(std::iter::once(&ALB))
            .chain(extra)
            .copied()
            .filter(|name| !self.path(name).is_file())
            .collect()
    }
}

/// Whether [`Binaries::locate`] may build the stack's binaries. It builds only
/// under cargo (`$CARGO` set: `cargo run`, `cargo test`), with the profile of
/// the binaries' directory (`target/debug`, `target/release`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Never: missing binaries are a [`Missing`] error.
    Never,
    /// When some are missing, saying so on stderr (`migrate demo` under `cargo run`).
    IfMissing,
    /// Every time, quietly (a no-op when they are fresh): tests run the
    /// binaries of the current source.
    Always,
}

/// Binaries the stack needs that are not in their directory. Its message
/// names them and how to build them; callers put what needs them in front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub names: Vec<&'static str>,
    pub dir: PathBuf,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (names, verb) = match self.names.as_slice() {
            [one] => (one.to_string(), "is"),
            many => (many.join(", "), "are"),
        };
        write!(
            f,
            "{names} {verb} missing from {}; build them first with `cargo build --release` \
             (or `cargo build` for debug binaries), or pass --bin-dir DIR",
            self.dir.display()
        )
    }
}

impl std::error::Error for Missing {}

impl Binaries {
    /// The one way to find the stack's binaries and `extra` ones: in `dir`,
    /// else beside the running executable; built first as `build` allows
    /// (only the stack's, never `extra`). Fails with [`Missing`] (downcast
    /// it) when some are still missing.
    pub fn locate(
        dir: Option<&Path>,
        extra: &[&'static str],
        build: Build,
    ) -> anyhow::Result<Binaries> {
        let binaries = match dir {
            Some(dir) => Binaries::new(dir),
            None => Binaries::beside_current_exe()?,
        };
        let cargo = std::env::var_os("CARGO");
        match (build, cargo) {
            (Build::Always, Some(cargo)) => binaries.build(&cargo, true)?,
            (Build::IfMissing, Some(cargo)) if !binaries.missing(&[]).is_empty() => {
                binaries.build(&cargo, false)?
            }
            _ => {}
        }
        let names = binaries.missing(extra);
        if !names.is_empty() {
            return Err(Missing {
                names,
                dir: binaries.dir.clone(),
            }
            .into());
        }
        Ok(binaries)
    }

    /// `cargo build` of the servers and the local ALB into this directory's
    /// profile; `quiet` passes `--quiet` instead of announcing the command.
    fn build(&self, cargo: &std::ffi::OsStr, quiet: bool) -> anyhow::Result<()> {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
        let mut args: Vec<String> = vec!["build".into(), "--manifest-path".into(), manifest.into()];
        match self.dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => {}
            Some("release") => args.push("--release".into()),
            Some(profile) => args.extend(["--profile".into(), profile.to_owned()]),
        }
        for name in SERVERS.iter().chain(std::iter::once(&ALB)) {
            args.extend(["-p".into(), (*name).to_owned()]);
        }
        if quiet {
            args.push("--quiet".into());
        } else {
            eprintln!(
                "building the servers and the local ALB: cargo {}",
                args.join(" ")
            );
        }
        let status = std::process::Command::new(cargo)
            .args(&args)
            .status()
            .context("cannot run cargo")?;
        anyhow::ensure!(
            status.success(),
            "`cargo {}` failed ({status})",
            args.join(" ")
        );
        Ok(())
    }
}

/// The running executable's path, also after a rebuild replaced the file
/// (Linux then reports `PATH (deleted)`).
pub fn current_exe() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe().context("cannot find the running executable")?;
    Ok(
        match path.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
            Some(original) => PathBuf::from(original),
            None => path,
        },
    )
}

/// One started process, its output in `log`; killed when dropped.
pub struct Process {
    pub name: String,
    child: Child,
    log: PathBuf,
    pub started: Instant,
}

impl Process {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Process> {
        let out = std::fs::File::options()
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

    /// The process id, until the process has been reaped.
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

    /// SIGTERM: asks for a graceful shutdown, without waiting for it.
    pub fn terminate(&self) {
        if let Some(pid) = self.pid().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Waits for the exit, SIGKILLs after `grace`.
    pub async fn reap(&mut self, grace: Duration) {
        if tokio::time::timeout(grace, self.child.wait())
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

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// What differs between the users of the stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// Named in the first line of `migrate.toml`, e.g. "`migrate demo`".
    pub written_by: &'static str,
    /// More flags for the local ALB (e.g. `--client-idle-timeout 2`).
    pub alb_args: Vec<String>,
    /// Set on every route of `migrate.toml`, over the repo's values.
    pub route_settings: toml::Table,
    /// What each server's target group is given as its target instead of the
    /// server's own address (e.g. a test's fault-injecting proxy in front of
    /// one service). `None`: the servers themselves.
    pub front: Option<Front>,
}

/// Chooses a target group's target from (server name, server address).
#[derive(Clone)]
pub struct Front(std::sync::Arc<ChooseTarget>);

type ChooseTarget = dyn Fn(&str, SocketAddr) -> SocketAddr + Send + Sync;

impl Front {
    pub fn new(choose: impl Fn(&str, SocketAddr) -> SocketAddr + Send + Sync + 'static) -> Front {
        Front(std::sync::Arc::new(choose))
    }
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Front(..)")
    }
}

/// A running forum server.
struct Server {
    name: &'static str,
    process: Process,
    address: SocketAddr,
}

/// The running stack: its processes and where everything listens.
pub struct Stack {
    pub binaries: Binaries,
    /// Where the logs, the stack file, the ALB's state and `migrate.toml` are.
    dir: PathBuf,
    /// In [`SERVERS`] order.
    servers: Vec<Server>,
    alb: Option<Process>,
    alb_args: Vec<String>,
    pub data_address: SocketAddr,
    pub control_address: SocketAddr,
    /// The patched stack file the local ALB started from.
    pub stack_file: PathBuf,
    /// The local ALB's state directory.
    pub state_dir: PathBuf,
    /// The `migrate.toml` written for the stack.
    pub config: PathBuf,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl Stack {
    /// Starts the servers on free ports, writes the stack file with their
    /// ports, starts the local ALB on free ports and writes `migrate.toml` for
    /// it, all in `dir`.
    pub async fn start(binaries: Binaries, dir: &Path, options: Options) -> anyhow::Result<Stack> {
        let mut started = Vec::new();
        for name in SERVERS {
            started.push((name, spawn_server(&binaries, dir, name, 0)?));
        }
        // Spawned all at once, then waited for: they start in parallel.
        let mut servers = Vec::new();
        for (name, mut process) in started {
            let address = server_address(&mut process, 0).await?;
            servers.push(Server {
                name,
                process,
                address,
            });
        }
        let targets: Vec<(&str, SocketAddr)> = servers
            .iter()
            .map(|server| {
                let target = match &options.front {
                    Some(front) => (front.0)(server.name, server.address),
                    None => server.address,
                };
                (server.name, target)
            })
            .collect();
        let stack = patched_stack(&targets)?;
        let stack_file = dir.join("stack.toml");
        write(&stack_file, &toml::to_string(&stack.table)?)?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut running = Stack {
            binaries,
            dir: dir.to_path_buf(),
            servers,
            alb: None,
            alb_args: options.alb_args,
            data_address: loopback,
            control_address: loopback,
            stack_file,
            state_dir: dir.join("alb-state"),
            config: dir.join("migrate.toml"),
            access_key_id: stack.access_key_id,
            secret_access_key: stack.secret_access_key,
            region: stack.region,
        };
        running.start_alb(loopback, loopback).await?;
        let settings = running.migrate_toml(&options.route_settings)?;
        write(
            &running.config,
            &format!(
                "# Written by {} from the repo's migrate.toml, for its local stack.\n{settings}",
                options.written_by
            ),
        )?;
        running.config = running.config.canonicalize().unwrap_or(running.config);
        Ok(running)
    }

    pub fn data_url(&self) -> String {
        format!("http://{}", self.data_address)
    }

    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_address)
    }

    /// The forum servers and their addresses, in [`SERVERS`] order.
    pub fn servers(&self) -> impl Iterator<Item = (&'static str, SocketAddr)> + '_ {
        self.servers
            .iter()
            .map(|server| (server.name, server.address))
    }

    /// The address of a forum server.
    pub fn server_address(&self, name: &str) -> Option<SocketAddr> {
        self.servers
            .iter()
            .find(|server| server.name == name)
            .map(|server| server.address)
    }

    /// The base URL of a forum server (empty for a name not in [`SERVERS`]).
    pub fn server_url(&self, name: &str) -> String {
        self.server_address(name)
            .map(|address| format!("http://{address}"))
            .unwrap_or_default()
    }

    /// A file in the stack's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The log of a process of the stack (a server, or [`ALB`]).
    pub fn log(&self, name: &str) -> PathBuf {
        log_file(&self.dir, name)
    }

    /// Every log file in the stack's directory.
    pub fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
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

    /// Starts the local ALB on these addresses (port 0: a free one) and reads
    /// where it listens.
    async fn start_alb(&mut self, data: SocketAddr, control: SocketAddr) -> anyhow::Result<()> {
        let log = self.log(ALB);
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
            .env(
                "RUST_LOG",
                std::env::var("FICUS_ALB_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .args(&self.alb_args);
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

    /// Waits until every target group of the stack has a healthy target, as
    /// the local ALB's `/metrics` says (health checks run every 5 s; two
    /// successes make a target healthy). `progress` hears the target groups
    /// that are healthy each time their number changes. Returns how long it took.
    pub async fn wait_healthy(
        &self,
        timeout: Duration,
        mut progress: impl FnMut(&[&'static str]),
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let url = format!("{}/metrics", self.control_url());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut shown = None;
        loop {
            let text = match client.get(&url).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let (up, _) = alb::metrics::target_group_health(&alb::metrics::parse(&text));
            let healthy: Vec<&'static str> = SERVERS
                .into_iter()
                .filter(|group| up.iter().any(|name| name == group))
                .collect();
            if healthy.len() == SERVERS.len() {
                return Ok(started.elapsed());
            }
            if shown != Some(healthy.len()) {
                shown = Some(healthy.len());
                progress(&healthy);
            }
            if started.elapsed() > timeout {
                let waiting: Vec<&str> = SERVERS
                    .into_iter()
                    .filter(|group| !healthy.contains(group))
                    .collect();
                bail!(
                    "target groups {waiting:?} had no healthy target after {timeout:?}; \
                     see the servers' logs in {}; {url} said:\n{text}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
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
        if let Some(server) = self.servers.iter_mut().find(|s| s.name == name) {
            server.process.kill9().await;
        }
    }

    /// Starts a killed forum server again on its port.
    pub async fn restart_server(&mut self, name: &str) -> anyhow::Result<()> {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.name == name)
            .with_context(|| format!("no server `{name}` in the stack"))?;
        let offset = log_length(&log_file(&self.dir, name));
        let mut process = spawn_server(&self.binaries, &self.dir, name, server.address.port())?;
        server.address = server_address(&mut process, offset).await?;
        server.process = process;
        Ok(())
    }

    /// Whether the local ALB's process is still running (not crashed).
    pub fn alb_alive(&mut self) -> bool {
        self.alb
            .as_mut()
            .is_some_and(|alb| alb.try_wait().is_none())
    }

    /// Whether every forum server is still running.
    pub fn servers_alive(&mut self) -> bool {
        self.servers
            .iter_mut()
            .all(|server| server.process.try_wait().is_none())
    }

    /// SIGKILLs every process and reaps it.
    pub async fn kill(&mut self) {
        self.kill_alb().await;
        for server in &mut self.servers {
            server.process.kill9().await;
        }
    }

    /// Stops every process: SIGTERM to all, then SIGKILL to those still
    /// running after a grace period.
    pub async fn stop(&mut self) {
        let mut processes: Vec<&mut Process> = self.alb.iter_mut().collect();
        processes.extend(self.servers.iter_mut().map(|server| &mut server.process));
        for process in &processes {
            process.terminate();
        }
        for process in processes {
            process.reap(STOP_GRACE).await;
        }
        self.alb = None;
    }

    /// The repo's `migrate.toml` pointed at this stack: the load balancer, the
    /// control API, the monolith and each route's service (by target group
    /// name), with `route_settings` on every route.
    fn migrate_toml(&self, route_settings: &toml::Table) -> anyhow::Result<String> {
        let mut settings: toml::Table =
            toml::from_str(MIGRATE_FILE).context("the repo's migrate.toml does not parse")?;
        settings.insert("lb_url".into(), self.data_url().into());
        settings.insert("journal".into(), "journal.jsonl".into());
        let aws = table_entry(&mut settings, "aws");
        aws.insert("region".into(), self.region.clone().into());
        aws.insert("endpoint_url".into(), self.control_url().into());
        aws.insert("access_key_id".into(), self.access_key_id.clone().into());
        aws.insert(
            "secret_access_key".into(),
            self.secret_access_key.clone().into(),
        );
        let monolith = self
            .server_address(MONOLITH_TARGET_GROUP)
            .context("the stack has no monolith")?;
        table_entry(&mut settings, "monolith")
            .insert("base_url".into(), format!("http://{monolith}").into());
        let routes = table_entry(&mut settings, "routes");
        for (name, route) in routes.iter_mut() {
            let Some(route) = route.as_table_mut() else {
                continue;
            };
            let group = route
                .get("target_group")
                .and_then(toml::Value::as_str)
                .unwrap_or(name)
                .to_owned();
            let address = self.server_address(&group).with_context(|| {
                format!("route `{name}`: no server of the stack serves target group `{group}`")
            })?;
            route.insert("service_url".into(), format!("http://{address}").into());
            route.extend(route_settings.clone());
        }
        Ok(toml::to_string(&settings)?)
    }
}

/// Starts a forum server on `port` (0: a free one), its output appended to `NAME.log`.
fn spawn_server(binaries: &Binaries, dir: &Path, name: &str, port: u16) -> anyhow::Result<Process> {
    let mut command = Command::new(binaries.path(name));
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--log-format", "text"])
        .env("RUST_LOG", "info")
        .env_remove("CONFIG_FILE")
        .env_remove("DATA");
    Process::spawn(name, command, &log_file(dir, name))
}

/// Where a process of the stack logs: `NAME.log` in the stack's directory.
fn log_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// Where a forum server listens, from its log past `offset`.
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

/// The address after `marker` in a log line, e.g. `listening on 127.0.0.1:PORT`.
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

/// The stack file with the servers' ports and short health checks, and what
/// `migrate.toml` needs from it.
struct PatchedStack {
    table: toml::Table,
    access_key_id: String,
    secret_access_key: String,
    region: String,
}

fn patched_stack(targets: &[(&str, SocketAddr)]) -> anyhow::Result<PatchedStack> {
    let mut table: toml::Table = toml::from_str(STACK_FILE)
        .context("the repo's infrastructure/local/stack.toml does not parse")?;
    let groups = table
        .get_mut("target_groups")
        .and_then(toml::Value::as_array_mut)
        .context("the stack file has no [[target_groups]]")?;
    for group in groups.iter_mut().filter_map(toml::Value::as_table_mut) {
        let name = group
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (_, target) = targets
            .iter()
            .find(|(server, _)| *server == name)
            .with_context(|| format!("the stack's target group `{name}` has no server"))?;
        group.insert(
            "targets".into(),
            toml::Value::Array(vec![target.to_string().into()]),
        );
        let health = table_entry(group, "health_check");
        health.insert("interval_seconds".into(), HEALTH_INTERVAL_SECONDS.into());
        health.insert("timeout_seconds".into(), HEALTH_TIMEOUT_SECONDS.into());
        health.insert("healthy_threshold".into(), HEALTHY_THRESHOLD.into());
    }
    let text = |path: &[&str]| -> anyhow::Result<String> {
        let mut value = &toml::Value::Table(table.clone());
        for key in path {
            value = value
                .get(key)
                .with_context(|| format!("the stack file has no `{}`", path.join(".")))?;
        }
        value
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the stack file's `{}` is not text", path.join(".")))
    };
    Ok(PatchedStack {
        access_key_id: text(&["credentials", "access_key_id"])?,
        secret_access_key: text(&["credentials", "secret_access_key"])?,
        region: text(&["region"])?,
        table,
    })
}

/// The table under `key`, created when absent.
fn table_entry<'a>(table: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    let value = table
        .entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !value.is_table() {
        *value = toml::Value::Table(toml::Table::new());
    }
    value.as_table_mut().expect("just made a table")
}

/// Writes a file, naming it on failure.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
