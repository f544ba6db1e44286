//! The state directory: the configuration as accepted so far, saved after
//! every change and read back on restart.
//!
//! Saving is atomic and durable: write `state.json.tmp`, fsync it, rename it
//! over `state.json`, fsync the directory. A reader therefore sees either the
//! old or the new state, never a torn one, even across a crash.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::State;

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Version of the state file's layout.
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format_version: u32,
    state: State,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(
        "cannot read the state file {path}: {source}; fix its permissions, or start with --reset to rebuild it from the stack file"
    )]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "the state file {path} is corrupt ({problem}); start with --reset to rebuild it from the stack file (this discards the changes made through the API)"
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error("cannot write the state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Uses (and creates if needed) the directory `dir`.
    pub fn open(dir: &Path) -> Result<StateStore, PersistError> {
        fs::create_dir_all(dir).map_err(|source| PersistError::Write {
            path: dir.to_owned(),
            source,
        })?;
        Ok(StateStore {
            dir: dir.to_owned(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state, or `None` when nothing was saved yet.
    pub fn load(&self) -> Result<Option<State>, PersistError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PersistError::Unreadable { path, source }),
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| PersistError::Corrupt {
            path: path.clone(),
            problem: format!("not a valid state document: {e}"),
        })?;
        if file.format_version != FORMAT_VERSION {
            return Err(PersistError::Corrupt {
                path,
                problem: format!(
                    "format_version {} is not the supported {FORMAT_VERSION}",
                    file.format_version
                ),
            });
        }
        crate::control::validate::state(&file.state).map_err(|e| PersistError::Corrupt {
            path,
            problem: format!("inconsistent configuration: {}", e.message),
        })?;
        Ok(Some(file.state))
    }

    /// Saves `state` atomically and durably.
    pub fn save(&self, state: &State) -> Result<(), PersistError> {
        let path = self.path();
        let write_error = |source| PersistError::Write {
            path: path.clone(),
            source,
        };
        let document = serde_json::to_vec_pretty(&StateFile {
            format_version: FORMAT_VERSION,
            state: state.clone(),
        })
        .map_err(|e| write_error(io::Error::other(e)))?;
        let temporary = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut file = File::create(&temporary).map_err(write_error)?;
        file.write_all(&document).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        drop(file);
        fs::rename(&temporary, &path).map_err(write_error)?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(write_error)?;
        Ok(())
    }
}
