//! Errors in the inputs of a parity run: the verify spec, corpus files and logs.

use std::path::{Path, PathBuf};

/// A problem with what a parity run was asked to do; `migrate verify` reports
/// these as configuration errors (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `[routes.<name>.verify]` table is inconsistent; the message names
    /// the key (callers add which route's table).
    #[error("{0}")]
    Spec(String),
    /// A base URL or run option is unusable.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}; check the path", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content is not what it should be.
    #[error("{path}{line}: {message}", path = path.display(), line = line.map(|line| format!(":{line}")).unwrap_or_default())]
    Input {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when one line is at fault.
        line: Option<usize>,
        /// What is wrong and how to fix it.
        message: String,
    },
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}
