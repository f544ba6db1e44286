//! What the demo adds to the local stack ([`localstack`]): where it looks for
//! the binaries, its temporary directory, and the routes of the
//! `migrate.toml` written for it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use localstack::{ALB, Binaries, Build, Missing, Options, SERVERS, Stack};

/// Finds every binary the demo starts ([`Binaries::locate`]): beside the
/// running `migrate`, built first with the same profile when some are missing
/// under `cargo run`; in `--bin-dir DIR` as they are. A missing one is a usage
/// error naming it and how to build it.
pub async fn locate(dir: Option<&Path>) -> anyhow::Result<Binaries> {
    let dir = dir.map(Path::to_path_buf);
    let build = if dir.is_some() {
        Build::Never
    } else {
        Build::IfMissing
    };
    let located =
        tokio::task::spawn_blocking(move || Binaries::locate(dir.as_deref(), &[], build)).await?;
    located.map_err(|err| match err.downcast::<Missing>() {
        Ok(missing) => crate::error::usage(format!(
            "the demo starts {}, {ALB}, but {missing}",
            SERVERS.join(", ")
        )),
        Err(err) => err,
    })
}

/// Starts the local stack in `dir`, its `migrate.toml` as the repo's, the
/// local ALB with `alb_args` too.
pub async fn start(
    binaries: &Binaries,
    dir: &Path,
    alb_args: Vec<String>,
) -> anyhow::Result<Stack> {
    let options = Options {
        written_by: "`migrate demo`",
        alb_args,
        route_settings: toml::Table::new(),
        front: None,
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
