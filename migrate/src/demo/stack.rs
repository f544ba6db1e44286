//! The demo's local stack: the four forum servers on free ports and the local
//! ALB in front of them, started from the repo's stack file with the real ports
//! and a short health check, each process's output in a log file of the demo's
//! temporary directory.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// The repo's local stack file (`infrastructure/local/stack.toml`).
const STACK_FILE: &str = include_str!("../../../infrastructure/local/stack.toml");
/// The repo's `migrate.toml` for the local stack.
const MIGRATE_FILE: &str = include_str!("../../../migrate.toml");

/// The forum servers, by binary name; each is also its target group's name in
/// the stack file.
pub const SERVERS: [&str; 4] = ["monolith", "users", "threads", "posts"];
/// The local ALB's binary.
const ALB: &str = "local-alb";
/// The monolith's target group in the stack file.
pub const MONOLITH_TARGET_GROUP: &str = "monolith";

/// Health checks of the demo's stack: the shortest interval the ALB accepts
/// (5 s, as on AWS) and two successes, so targets are healthy within seconds.
const HEALTH_INTERVAL_SECONDS: i64 = 5;
const HEALTH_TIMEOUT_SECONDS: i64 = 2;
const HEALTHY_THRESHOLD: i64 = 2;

/// How long a process may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the binaries are: next to the running `migrate`, or `--bin-dir`.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds every binary the demo starts. Under `cargo run` (beside the
    /// running `migrate`, with `$CARGO` set) missing ones are built first with
    /// the same profile; otherwise they are named with how to build them.
    pub async fn locate(dir: Option<&Path>) -> anyhow::Result<Binaries> {
        let binaries = Binaries {
            dir: match dir {
                Some(dir) => dir.to_path_buf(),
                None => current_exe()?
                    .parent()
                    .map(Path::to_path_buf)
                    .context("the migrate executable has no parent directory")?,
            },
        };
        let mut missing = binaries.missing();
        if !missing.is_empty()
            && dir.is_none()
            && let Some(cargo) = std::env::var_os("CARGO")
        {
            binaries.build(&cargo).await?;
            missing = binaries.missing();
        }
        if !missing.is_empty() {
            return Err(crate::error::usage(format!(
                "the demo starts {}, {ALB}, but {} missing from {}; build them first with `cargo build --release` (or `cargo build` for a debug `migrate`), or pass `--bin-dir DIR`",
                SERVERS.join(", "),
                if missing.len() == 1 {
                    format!("{} is", missing[0])
                } else {
                    format!("{} are", missing.join(", "))
                },
                binaries.dir.display()
            )));
        }
        Ok(binaries)
    }

    fn missing(&self) -> Vec<&'static str> {
        SERVERS
            .iter()
            .chain(std::iter::once(&ALB))
            .copied()
            .filter(|name| !self.path(name).is_file())
            .collect()
    }

    /// `cargo build` of the servers and the local ALB, with the profile of
    /// the directory `migrate` runs from (`target/release`, `target/debug`).
    async fn build(&self, cargo: &std::ffi::OsStr) -> anyhow::Result<()> {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let mut args: Vec<String> = vec!["build".into(), "--manifest-path".into(), manifest.into()];
        match self.dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => {}
            Some("release") => args.push("--release".into()),
            Some(profile) => args.extend(["--profile".into(), profile.to_owned()]),
        }
        for name in SERVERS.iter().chain(std::iter::once(&ALB)) {
            args.extend(["-p".into(), (*name).to_owned()]);
        }
        eprintln!(
            "demo: building the servers and the local ALB: cargo {}",
            args.join(" ")
        );
        let status = Command::new(cargo)
            .args(&args)
            .status()
            .await
            .context("cannot run cargo")?;
        anyhow::ensure!(
            status.success(),
            "`cargo {}` failed ({status})",
            args.join(" ")
        );
        Ok(())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }
}

/// The running `migrate`'s path, also after a rebuild replaced the file
/// (Linux then reports `PATH (deleted)`).
pub fn current_exe() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe().context("cannot find the running migrate executable")?;
    Ok(
        match path.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
            Some(original) => PathBuf::from(original),
            None => path,
        },
    )
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn create() -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "ficus-demo-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the directory {}", path.display()))?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One started process; killed when dropped.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The running stack: where everything listens.
pub struct Stack {
    processes: Vec<Process>,
    /// The forum servers' addresses, in [`SERVERS`] order.
    pub servers: Vec<(&'static str, SocketAddr)>,
    pub data_url: String,
    pub control_url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    /// The settings file the walkthrough's commands load.
    pub config: PathBuf,
}

impl Stack {
    /// Starts the servers, writes the stack file with their ports, starts the
    /// local ALB and writes `migrate.toml` for it.
    pub async fn start(binaries: &Binaries, dir: &Path) -> anyhow::Result<Stack> {
        let mut processes = Vec::new();
        let mut servers = Vec::new();
        for name in SERVERS {
            let log = dir.join(format!("{name}.log"));
            let mut command = Command::new(binaries.path(name));
            command
                .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "text"])
                .env("RUST_LOG", "info")
                .env_remove("CONFIG_FILE")
                .env_remove("DATA");
            let process = spawn(name, command, &log)?;
            processes.push(process);
        }
        // Spawned all at once, then waited for: they start in parallel.
        for process in &mut processes {
            let line = wait_for_line(process, "listening on ").await?;
            let address = line
                .split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|text| text.parse::<SocketAddr>().ok())
                .with_context(|| {
                    format!("{}: cannot read the address in `{line}`", process.name)
                })?;
            servers.push((process.name, address));
        }
        let stack = patched_stack(&servers)?;
        let stack_path = dir.join("stack.toml");
        write(&stack_path, &toml::to_string(&stack.table)?)?;
        let log = dir.join(format!("{ALB}.log"));
        let mut command = Command::new(binaries.path(ALB));
        command
            .arg("--stack")
            .arg(&stack_path)
            .arg("--state-dir")
            .arg(dir.join("alb-state"))
            .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info");
        let mut alb = spawn(ALB, command, &log)?;
        let data_url = url_after(&wait_for_line(&mut alb, "data listener on ").await?)?;
        let control_url = url_after(&wait_for_line(&mut alb, "control listener on ").await?)?;
        processes.push(alb);
        let config = dir.join("migrate.toml");
        let mut running = Stack {
            processes,
            servers,
            data_url,
            control_url,
            access_key_id: stack.access_key_id,
            secret_access_key: stack.secret_access_key,
            region: stack.region,
            config,
        };
        write(&running.config, &running.migrate_toml()?)?;
        running.config = running.config.canonicalize().unwrap_or(running.config);
        Ok(running)
    }

    /// The base URL of a forum server.
    pub fn server_url(&self, name: &str) -> Option<String> {
        self.servers
            .iter()
            .find(|(server, _)| *server == name)
            .map(|(_, address)| format!("http://{address}"))
    }

    /// The repo's `migrate.toml` pointed at this stack: the load balancer, the
    /// control API, the monolith and each route's service (by target group name).
    fn migrate_toml(&self) -> anyhow::Result<String> {
        let mut settings: toml::Table =
            toml::from_str(MIGRATE_FILE).context("the repo's migrate.toml does not parse")?;
        settings.insert("lb_url".into(), self.data_url.clone().into());
        settings.insert("journal".into(), "journal.jsonl".into());
        let aws = table_entry(&mut settings, "aws");
        aws.insert("region".into(), self.region.clone().into());
        aws.insert("endpoint_url".into(), self.control_url.clone().into());
        aws.insert("access_key_id".into(), self.access_key_id.clone().into());
        aws.insert(
            "secret_access_key".into(),
            self.secret_access_key.clone().into(),
        );
        let monolith_url = self
            .server_url(MONOLITH_TARGET_GROUP)
            .context("the monolith is not running")?;
        table_entry(&mut settings, "monolith").insert("base_url".into(), monolith_url.into());
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
            let url = self.server_url(&group).with_context(|| {
                format!("route `{name}`: no demo server serves target group `{group}`")
            })?;
            route.insert("service_url".into(), url.into());
        }
        Ok(format!(
            "# Written by `migrate demo` from the repo's migrate.toml, for its local stack.\n{}",
            toml::to_string(&settings)?
        ))
    }

    /// The routes the settings file names, with their target groups.
    pub fn routes(&self) -> anyhow::Result<Vec<(String, String)>> {
        let settings: toml::Table = toml::from_str(&std::fs::read_to_string(&self.config)?)?;
        let routes = settings
            .get("routes")
            .and_then(toml::Value::as_table)
            .context("migrate.toml has no routes")?;
        Ok(routes
            .iter()
            .map(|(name, route)| {
                let group = route
                    .get("target_group")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(name);
                (name.clone(), group.to_owned())
            })
            .collect())
    }

    /// Stops every process: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(mut self) {
        for process in &self.processes {
            if let Some(pid) = process.child.id().and_then(|id| i32::try_from(id).ok()) {
                // SAFETY: kill(2) with a pid this process spawned and still owns.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        for process in &mut self.processes {
            let waited = tokio::time::timeout(Duration::from_secs(3), process.child.wait()).await;
            if waited.is_err() {
                let _ = process.child.kill().await;
            }
        }
    }
}

/// The stack file with the demo's ports and health checks, and what the
/// demo needs from it.
struct PatchedStack {
    table: toml::Table,
    access_key_id: String,
    secret_access_key: String,
    region: String,
}

fn patched_stack(servers: &[(&'static str, SocketAddr)]) -> anyhow::Result<PatchedStack> {
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
        let (_, address) = servers
            .iter()
            .find(|(server, _)| *server == name)
            .with_context(|| format!("the stack's target group `{name}` has no demo server"))?;
        group.insert(
            "targets".into(),
            toml::Value::Array(vec![address.to_string().into()]),
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

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn spawn(name: &'static str, mut command: Command, log: &Path) -> anyhow::Result<Process> {
    let file = std::fs::File::create(log)
        .with_context(|| format!("cannot create the log file {}", log.display()))?;
    let errors = file.try_clone()?;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(errors))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Process {
        name,
        child,
        log: log.to_path_buf(),
    })
}

/// Waits until the process's log holds a line containing `needle`; fails with
/// the log's tail when the process exits or takes too long.
async fn wait_for_line(process: &mut Process, needle: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        if let Some(line) = log.lines().find(|line| line.contains(needle)) {
            return Ok(line.to_owned());
        }
        if let Some(status) = process.child.try_wait()? {
            anyhow::bail!(
                "{} exited ({status}) before printing `{needle}…`; its output:\n{}",
                process.name,
                tail(&log)
            );
        }
        if started.elapsed() > START_TIMEOUT {
            anyhow::bail!(
                "{} did not print `{needle}…` within {} s; its output:\n{}",
                process.name,
                START_TIMEOUT.as_secs(),
                tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn url_after(line: &str) -> anyhow::Result<String> {
    line.split_whitespace()
        .find(|word| word.starts_with("http://"))
        .map(str::to_owned)
        .with_context(|| format!("local-alb: no URL in `{line}`"))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = String::new();
    for line in &lines[lines.len().saturating_sub(20)..] {
        let _ = writeln!(out, "  {line}");
    }
    out
}
