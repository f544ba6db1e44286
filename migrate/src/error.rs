//! Failures that map to documented exit codes. Anything else exits 1.

use std::process::ExitCode;

/// Exit 0: done.
pub const EXIT_OK: u8 = 0;
/// Exit 1: an error (API, network, inconsistent state that needs a human).
pub const EXIT_ERROR: u8 = 1;
/// Exit 2: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit 3: a gate failed and the route was rolled back.
pub const EXIT_GATE_FAILED: u8 = 3;
/// Exit 4: another operator holds the listener's lock.
pub const EXIT_LOCK_HELD: u8 = 4;
/// Exit 5 (`verify`): the check could not run; requests got no answer.
pub const EXIT_NOT_RUN: u8 = 5;

/// A failure with its own exit code. Wrap it in `anyhow::Error`; [`exit_code`]
/// finds it anywhere in the error chain.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad command line or bad `migrate.toml` (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A gate failed and the route was rolled back (exit 3).
    #[error("{0}")]
    GateFailed(String),
    /// Another operator holds the listener's lock (exit 4).
    #[error(
        "the listener is locked by {holder} since {since}; wait with `--wait 5m`, or if that operator is gone, pass `--force-unlock`"
    )]
    LockHeld { holder: String, since: String },
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::GateFailed(_) => EXIT_GATE_FAILED,
            Failure::LockHeld { .. } => EXIT_LOCK_HELD,
        }
    }
}

/// Shorthand for a usage/config error.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure::Usage(message.into()).into()
}

/// The exit code for an error: the first [`Failure`] in its chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    let code = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or(EXIT_ERROR, Failure::code);
    ExitCode::from(code)
}
