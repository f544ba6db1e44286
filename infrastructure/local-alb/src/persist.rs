//! The state directory: the configuration as accepted so far, saved after
//! every change and read back on restart.
//!
//! Saving is atomic and durable: write `state.json.tmp`, fsync it, rename it
//! over `state.json`, fsync the directory. A reader therefore sees either the
//! old or the new state, never a torn one, even across a crash.
//!
//! One process owns a state directory: it holds an advisory lock (`flock`) on
//! `local-alb.lock`, which names its PID. The kernel drops the lock when the
//! process ends, however it ends, so a killed instance never blocks the next.
//! `stack.json` keeps the stack file's configuration the state started from,
//! so a restart can tell that the stack file was edited since.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::State;

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// The stack file's configuration the saved state started from (same layout).
pub const STACK_RECORD_FILE: &str = "stack.json";
/// The lock file: locked by the instance using the directory, holding its PID.
pub const LOCK_FILE: &str = "local-alb.lock";
/// Version of the state file's layout. 2: the head policy's load balancer
/// attributes can be unset (`null`); a file of version 1 still loads, its
/// attributes at AWS's defaults read as unset, as they behaved.
const FORMAT_VERSION: u32 = 2;

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
    #[error(
        "the state directory {dir} is in use by another local-alb (PID {pid}); stop that one, or give this one its own directory with --state-dir"
    )]
    Locked { dir: PathBuf, pid: String },
}

/// The state directory, locked for this process while a store is alive.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
    _lock: Arc<File>,
}

impl StateStore {
    /// Uses (and creates if needed) the directory `dir`, and locks it; fails
    /// with [`PersistError::Locked`] when another process holds it.
    pub fn open(dir: &Path) -> Result<StateStore, PersistError> {
        fs::create_dir_all(dir).map_err(|source| PersistError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let lock = lock(dir)?;
        Ok(StateStore {
            dir: dir.to_owned(),
            _lock: Arc::new(lock),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state, or `None` when nothing was saved yet.
    pub fn load(&self) -> Result<Option<State>, PersistError> {
        read_state_file(self.path())
    }

    /// The stack file's configuration the saved state started from; `None`
    /// when it was not recorded (a directory from an older version) or cannot
    /// be read, which only costs the edited-stack-file warning.
    pub fn load_stack_record(&self) -> Option<State> {
        let path = self.dir.join(STACK_RECORD_FILE);
        read_state_file(path)
            .inspect_err(|e| tracing::warn!("ignoring the stack record: {e}"))
            .ok()
            .flatten()
    }

    /// Records `stack` as the configuration the saved state starts from.
    pub fn save_stack_record(&self, stack: &State) -> Result<(), PersistError> {
        self.write_atomically(STACK_RECORD_FILE, stack)
    }

    /// Saves `state` atomically and durably.
    pub fn save(&self, state: &State) -> Result<(), PersistError> {
        self.write_atomically(STATE_FILE, state)
    }

    /// Writes `state` to the file `name` of the directory: temporary file,
    /// fsync, rename, fsync of the directory.
    fn write_atomically(&self, name: &str, state: &State) -> Result<(), PersistError> {
        let path = self.dir.join(name);
        let write_error = |source| PersistError::Write {
            path: path.clone(),
            source,
        };
        let document = serde_json::to_vec_pretty(&StateFile {
            format_version: FORMAT_VERSION,
            state: state.clone(),
        })
        .map_err(|e| write_error(io::Error::other(e)))?;
        let temporary = self.dir.join(format!("{name}.tmp"));
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

/// Takes the directory's lock and writes this process's PID into the lock
/// file; names the holder's PID when another process has it.
fn lock(dir: &Path) -> Result<File, PersistError> {
    let path = dir.join(LOCK_FILE);
    let write_error = |source| PersistError::Write {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(write_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let pid = match holder.trim() {
                "" => "unknown".to_owned(),
                pid => pid.to_owned(),
            };
            return Err(PersistError::Locked {
                dir: dir.to_owned(),
                pid,
            });
        }
        Err(TryLockError::Error(source)) => return Err(write_error(source)),
    }
    file.set_len(0).map_err(write_error)?;
    writeln!(file, "{}", std::process::id()).map_err(write_error)?;
    Ok(file)
}

/// Reads and checks a state-layout file; `None` when it does not exist.
fn read_state_file(path: PathBuf) -> Result<Option<State>, PersistError> {
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PersistError::Unreadable { path, source }),
    };
    let mut file: StateFile = serde_json::from_str(&text).map_err(|e| PersistError::Corrupt {
        path: path.clone(),
        problem: format!("not a valid state document: {e}"),
    })?;
    match file.format_version {
        FORMAT_VERSION => {}
        1 => {
            for load_balancer in &mut file.state.load_balancers {
                load_balancer.attributes.unset_format_1_defaults();
            }
        }
        other => {
            return Err(PersistError::Corrupt {
                path,
                problem: format!(
                    "format_version {other} is not a supported one (1 or {FORMAT_VERSION})"
                ),
            });
        }
    }
    crate::control::validate::state(&file.state).map_err(|e| PersistError::Corrupt {
        path,
        problem: format!("inconsistent configuration: {}", e.message),
    })?;
    Ok(Some(file.state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::XffHeaderProcessingMode;

    /// A state file of format 1 stored every head policy attribute, at AWS's
    /// default when unset: it loads, those at AWS's default read as unset
    /// (the process's default applies, as before) and the others as set.
    #[test]
    fn a_format_1_state_file_loads_with_its_aws_defaults_unset() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::stack::parse(crate::stack::BUNDLED_STACK, "bundled")
            .unwrap()
            .state;
        let attributes = &mut state.load_balancers[0].attributes;
        attributes.client_keep_alive_seconds = Some(3600);
        attributes.drop_invalid_header_fields = Some(false);
        attributes.xff_header_processing_mode = Some(XffHeaderProcessingMode::Remove);
        let old = serde_json::json!({ "format_version": 1, "state": state });
        fs::write(dir.path().join(STATE_FILE), old.to_string()).unwrap();
        let loaded = read_state_file(dir.path().join(STATE_FILE))
            .unwrap()
            .unwrap();
        let attributes = &loaded.load_balancers[0].attributes;
        assert_eq!(attributes.client_keep_alive_seconds, None);
        assert_eq!(attributes.drop_invalid_header_fields, None);
        assert_eq!(
            attributes.xff_header_processing_mode,
            Some(XffHeaderProcessingMode::Remove)
        );
        // Written back as format 2, a value at AWS's default stays set.
        let mut explicit = loaded.clone();
        explicit.load_balancers[0]
            .attributes
            .client_keep_alive_seconds = Some(3600);
        let store = StateStore::open(dir.path()).unwrap();
        store.save(&explicit).unwrap();
        let again = store.load().unwrap().unwrap();
        assert_eq!(
            again.load_balancers[0].attributes.client_keep_alive_seconds,
            Some(3600)
        );
    }
}
