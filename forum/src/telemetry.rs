//! Logging: one subscriber for the process, writing through a non-blocking writer
//! so that request logging never waits on standard output.

use std::io::{BufWriter, IsTerminal};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::request_log;
use crate::settings::LogFormat;

/// The level filter when `RUST_LOG` is unset: the server's own lines.
const DEFAULT_FILTER: &str = "info";

/// Installs the process's subscriber, writing `format` lines to standard output at
/// the levels `RUST_LOG` selects. Keep the guard alive until exit: dropping it
/// flushes the lines still buffered.
pub fn init(format: LogFormat) -> WorkerGuard {
    // The writer thread flushes after each batch of lines it finds queued, so a
    // buffer turns a write(2) per request into one per batch under load, and
    // lines still appear at once when the server is idle.
    let (writer, guard) = tracing_appender::non_blocking(BufWriter::new(std::io::stdout()));
    // The request log writes its own lines, in the same format, to the same writer.
    request_log::install(format, writer.clone());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}
