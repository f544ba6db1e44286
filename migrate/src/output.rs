//! Everything `migrate` prints on stdout goes through [`write_stdout`]: the
//! crate's `println!` and `print!` are the macros in `lib.rs`, which call it.
//!
//! A closed stdout means the reader went away (`migrate status | head -3`,
//! `migrate shift users | true`). That is not an error: the command keeps
//! going (a shift still finishes its change and journals it), prints nothing
//! more, and exits with the code its work earned, as `rg … | head` does.
//!
//! Under `--output json`, a command that fails still prints one JSON document
//! on stdout ([`print_failure`]): `ok: false`, the exit code, the error, and the
//! outcome so far that the command recorded with [`record_outcome`] — unless
//! the command already printed its own document (`verify` does).

use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// The format of results on stdout (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Set once a write to stdout failed: nothing more is written.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Set once anything was written to stdout.
static WRITTEN: AtomicBool = AtomicBool::new(false);

/// What the running command has done so far, for the failure document.
static OUTCOME: Mutex<Option<serde_json::Map<String, serde_json::Value>>> = Mutex::new(None);

/// Writes to stdout and flushes. A failed write (EPIPE: the reader is gone)
/// silences stdout for the rest of the process; it never panics.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    WRITTEN.store(true, Ordering::Relaxed);
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        READER_GONE.store(true, Ordering::Relaxed);
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("migrate: cannot write to stdout ({err}); printing nothing more there");
        }
    }
}

/// Whether stdout's reader went away.
pub fn reader_gone() -> bool {
    READER_GONE.load(Ordering::Relaxed)
}

/// `n` and its noun, singular or plural: "1 write", "2 writes".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Prints a JSON value on stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    write_stdout(format_args!("{}\n", serde_json::to_string_pretty(value)?));
    Ok(())
}

/// The route the command line names, for the failure document.
static ROUTE: Mutex<Option<String>> = Mutex::new(None);

/// Names the route the command works on (set once the command line names
/// one, even when the command line is refused later): every failure document
/// carries it as `route`.
pub fn set_route(route: &str) {
    if let Ok(mut named) = ROUTE.lock() {
        *named = Some(route.to_owned());
    }
}

/// Records what the command has done so far (an object; its fields are
/// copied into the failure document). Replaces what was recorded before.
pub fn record_outcome(value: &impl Serialize) {
    let fields = match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(fields)) => fields,
        Ok(other) => [("outcome".to_owned(), other)].into_iter().collect(),
        Err(_) => return,
    };
    if let Ok(mut outcome) = OUTCOME.lock() {
        *outcome = Some(fields);
    }
}

/// Adds one field to what the command recorded (unless it recorded that
/// field itself), for the failure document.
pub fn add_to_outcome(key: &str, value: serde_json::Value) {
    if let Ok(mut outcome) = OUTCOME.lock() {
        outcome
            .get_or_insert_with(serde_json::Map::new)
            .entry(key)
            .or_insert(value);
    }
}

/// The `--output json` document of a failed command:
/// `{"ok": false, "exit_code": N, "error": "...", "route": "...", <outcome so far>}`
/// (`route` when the command line names one, see [`set_route`]).
pub fn failure_document(error: &str, exit_code: u8) -> serde_json::Value {
    let mut document = serde_json::Map::new();
    document.insert("ok".into(), false.into());
    document.insert("exit_code".into(), exit_code.into());
    document.insert("error".into(), error.into());
    let recorded = OUTCOME.lock().ok().and_then(|outcome| outcome.clone());
    for (key, value) in recorded.unwrap_or_default() {
        document.entry(key).or_insert(value);
    }
    if let Some(route) = ROUTE.lock().ok().and_then(|route| route.clone()) {
        document.entry("route").or_insert(route.into());
    }
    serde_json::Value::Object(document)
}

/// Prints [`failure_document`] on stdout, unless the command printed its own
/// document already (stdout carries exactly one).
pub fn print_failure(error: &str, exit_code: u8) {
    if WRITTEN.load(Ordering::Relaxed) {
        return;
    }
    let document = failure_document(error, exit_code);
    write_stdout(format_args!(
        "{}\n",
        serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string())
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_document_carries_the_outcome_so_far_without_overriding_its_own_fields() {
        record_outcome(&serde_json::json!({ "route": "users", "ok": true, "routing_changes": 1 }));
        let document = failure_document("users: boom", 3);
        assert_eq!(document["ok"], false);
        assert_eq!(document["exit_code"], 3);
        assert_eq!(document["error"], "users: boom");
        assert_eq!(document["route"], "users");
        assert_eq!(document["routing_changes"], 1);
        add_to_outcome("aws_api", serde_json::json!({ "calls": 3 }));
        add_to_outcome("route", "posts".into());
        let document = failure_document("users: boom", 3);
        assert_eq!(document["aws_api"]["calls"], 3);
        assert_eq!(document["route"], "users", "the command's own field wins");
    }

    #[test]
    fn one_of_a_thing_is_singular() {
        assert_eq!(count(1, "write", "writes"), "1 write");
        assert_eq!(count(0, "write", "writes"), "0 writes");
        assert_eq!(
            count(2, "failed delivery", "failed deliveries"),
            "2 failed deliveries"
        );
    }
}
