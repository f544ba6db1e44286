//! What the demo adds to the local stack ([`localstack`]): its binaries
//! found (or built) beside the running `migrate`, its temporary directory, and
//! the routes of the `migrate.toml` written for it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::process::Command;

use localstack::{ALB, Binaries, Options, SERVERS, Stack};

/// Finds every binary the demo starts. Under `cargo run` (beside the running
/// `migrate`, with `$CARGO` set) missing ones are built first with the same
/// profile; otherwise they are named with how to build them.
pub async fn locate(dir: Option<&Path>) -> anyhow::Result<Binaries> {
    let binaries = match dir {
        Some(dir) => Binaries::new(dir),
        None => Binaries::beside_current_exe()?,
    };
    let mut missing = binaries.missing(&[]);
    if !missing.is_empty()
        && dir.is_none()
        && let Some(cargo) = std::env::var_os("CARGO")
    {
        build(&binaries, &cargo).await?;
        missing = binaries.missing(&[]);
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
            binaries.dir().display()
        )));
    }
    Ok(binaries)
}

/// `cargo build` of the servers and the local ALB, with the profile of the
/// directory `migrate` runs from (`target/release`, `target/debug`).
async fn build(binaries: &Binaries, cargo: &std::ffi::OsStr) -> anyhow::Result<()> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut args: Vec<String> = vec!["build".into(), "--manifest-path".into(), manifest.into()];
    match binaries.dir().file_name().and_then(|name| name.to_str()) {
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

/// Starts the local stack in `dir`, its `migrate.toml` as the repo's.
pub async fn start(binaries: &Binaries, dir: &Path) -> anyhow::Result<Stack> {
    let options = Options {
        written_by: "`migrate demo`",
        alb_args: Vec::new(),
        route_settings: toml::Table::new(),
    };
    Stack::start(binaries.clone(), dir, options).await
}

/// The routes the stack's settings file names, with their target groups.
pub fn routes(stack: &Stack) -> anyhow::Result<Vec<(String, String)>> {
    let settings: toml::Table = toml::from_str(&std::fs::read_to_string(&stack.config)?)?;
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
