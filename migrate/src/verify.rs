//! `migrate verify`: response parity between the monolith and a service.
//! STUB written by the lead; the parity engineer owns this file.

use std::process::ExitCode;

use crate::settings::Settings;

/// Arguments of `migrate verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The route to verify (see `migrate status` for the known routes).
    pub route: Option<String>,
    /// Verify every route.
    #[arg(long)]
    pub all: bool,
}

/// Runs `migrate verify`; exit 0 when every request matched, 1 when any differed
/// or failed, 2 for usage or config errors.
pub async fn run(settings: &Settings, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let _ = (settings, args);
    anyhow::bail!("verify is not implemented yet")
}

/// The parity gate `migrate shift` checks before each step: a small sample of
/// the route's requests sent to the monolith and to the service. `Ok(None)`
/// when they match, `Ok(Some(summary))` naming the first differences otherwise.
pub async fn parity_gate(settings: &Settings, route: &str) -> anyhow::Result<Option<String>> {
    let _ = (settings, route);
    Ok(None)
}
