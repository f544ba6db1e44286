//! Failures that map to documented exit codes. Anything else exits 1.

/// Exit 0: done.
pub const EXIT_OK: u8 = 0;
/// Exit 1: an error (API, network, inconsistent state that needs a human).
pub const EXIT_ERROR: u8 = 1;
/// Exit 2: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit 3: a gate failed and the route was rolled back.
pub const EXIT_GATE_FAILED: u8 = 3;
/// Exit 4: another operator holds the listener's lock, or took it away.
pub const EXIT_LOCK_HELD: u8 = 4;
/// Exit 130: stopped by Ctrl-C (SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit 4 (`leaks`, `retire`): the access logs could not be read.
pub const EXIT_LOGS_UNREADABLE: u8 = 4;
/// Exit 1 (`leaks`): leaks were found.
pub const EXIT_LEAKS: u8 = 1;
/// Exit 5 (`verify`, `leaks`): the check could not run (requests got no
/// answer), or found nothing to judge.
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
    /// The lock was taken away while we held it (exit 4); nothing more was written.
    #[error(
        "the listener's lock is no longer ours: {now}; stopped before the next write, so nothing more was written. `migrate status` shows where the routes stand"
    )]
    LockLost { now: String },
    /// Ctrl-C (exit 130): the message says where the route stands and how to go on.
    #[error("{0}")]
    Interrupted(String),
    /// The access logs could not be read (exit 4 in `leaks` and `retire`).
    #[error("{0}")]
    LogsUnreadable(String),
    /// The check found nothing to judge, so it proves nothing (exit 5):
    /// `verify --from-alb-log` with logs that hold no request of the routes.
    #[error("{0}")]
    NoEvidence(String),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::GateFailed(_) => EXIT_GATE_FAILED,
            Failure::LockHeld { .. } | Failure::LockLost { .. } => EXIT_LOCK_HELD,
            Failure::Interrupted(_) => EXIT_INTERRUPTED,
            Failure::LogsUnreadable(_) => EXIT_LOGS_UNREADABLE,
            Failure::NoEvidence(_) => EXIT_NOT_RUN,
        }
    }
}

/// Shorthand for a usage/config error.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure::Usage(message.into()).into()
}

/// The exit code for an error: the first [`Failure`] in its chain, else 1.
pub fn code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or(EXIT_ERROR, Failure::code)
}
