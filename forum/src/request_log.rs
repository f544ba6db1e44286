//! The request log: one line per request, in the format of the process's other
//! log lines (`LOG_FORMAT` text or JSON, target `forum::handlers`), written
//! without tracing's formatter and gathered per worker thread.
//!
//! Each line is written into the worker's buffer with no allocation (the
//! timestamp's date and time of day are formatted once per second, the
//! duration as integer microseconds). The buffer goes to the process's
//! non-blocking log writer ([`crate::telemetry`]) as one message
//! [`FLUSH_AFTER`] after its first line, or at [`FLUSH_BYTES`], so a loaded
//! server sends the writer thread one message (and the writer makes one
//! write(2)) per few hundred requests instead of one per request, and a line
//! of an idle server still appears within milliseconds. Profiled under wrk, tracing's
//! formatting of this line (fields visitor, float formatting, timestamp) and
//! the writer's write(2) per line or two were the servers' largest costs beside
//! the socket I/O (issue 19).
//!
//! It knows no HTTP framework (the caller gives the method and the request
//! target as text) and runs on any tokio runtime, current-thread or
//! multi-threaded: the flush task may run on another worker than the one
//! whose buffer it flushes.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::NonBlocking;

use crate::js_json;
use crate::settings::LogFormat;

/// The target the lines name, as tracing would: `RUST_LOG=forum::handlers=warn`
/// turns the request log off.
pub const TARGET: &str = "forum::handlers";
/// A worker's buffer is handed to the writer at this size even while busy
/// (nginx's `access_log ... buffer=64k`: at 32 KiB, the writer thread's wake-ups
/// and write(2)s were twice as many).
const FLUSH_BYTES: usize = 64 * 1024;
/// ...and at the latest this long after its first line.
const FLUSH_AFTER: Duration = Duration::from_millis(10);

/// Where the lines go, set once by [`crate::telemetry::init`].
struct Sink {
    format: LogFormat,
    writer: NonBlocking,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends request lines to `writer` in `format`. Without it (a server started
/// in a test without the process's telemetry), requests are not logged.
pub(crate) fn install(format: LogFormat, writer: NonBlocking) {
    let _ = SINK.set(Sink { format, writer });
}

/// One request, as its line reports it.
pub struct Entry<'a> {
    pub method: &'a str,
    /// The request target as the request line gave it (`/path?query`, or the
    /// whole URI of an absolute-form target).
    pub target: &'a str,
    pub status: u16,
    pub duration: Duration,
}

/// Logs `entry` if the request log is on. Call it within a tokio runtime:
/// the flush is a task (it may run on another worker thread; it flushes the
/// buffer of the thread that scheduled it).
pub fn log(entry: &Entry) {
    let Some(sink) = SINK.get() else {
        return;
    };
    if !enabled() {
        return;
    }
    PENDING.with(|shared| {
        let schedule_flush = {
            let mut pending = shared.lock().unwrap_or_else(PoisonError::into_inner);
            let was_empty = pending.lines.is_empty();
            pending.append(sink.format, entry, SystemTime::now());
            if pending.lines.len() >= FLUSH_BYTES {
                pending.flush(sink);
                false
            } else {
                was_empty
            }
        };
        if schedule_flush {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                tokio::time::sleep(FLUSH_AFTER).await;
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .flush(sink);
            });
        }
    });
}

/// Whether `RUST_LOG` lets `forum::handlers` log at INFO; read once (the
/// filter is fixed when the process starts).
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| tracing::enabled!(target: TARGET, tracing::Level::INFO))
}

thread_local! {
    /// This thread's lines. Only this thread appends; the lock is for the
    /// flush task, which may run on another worker thread (uncontended but
    /// for that moment).
    static PENDING: Arc<Mutex<Pending>> = Arc::default();
}

/// A worker's lines not yet handed to the writer, and its clock.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    clock: Clock,
}

impl Pending {
    fn flush(&mut self, sink: &Sink) {
        if !self.lines.is_empty() {
            // NonBlocking never blocks: when its queue is full the batch is
            // dropped, as tracing-appender drops lines.
            let _ = sink.writer.clone().write_all(&self.lines);
            self.lines.clear();
        }
    }

    fn append(&mut self, format: LogFormat, entry: &Entry, now: SystemTime) {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let out = &mut self.lines;
        match format {
            LogFormat::Text => {
                self.clock.write(out, since_epoch);
                out.extend_from_slice(b"  INFO ");
                out.extend_from_slice(TARGET.as_bytes());
                out.extend_from_slice(b": request method=");
                out.extend_from_slice(entry.method.as_bytes());
                out.extend_from_slice(b" url=");
                out.extend_from_slice(entry.target.as_bytes());
                out.extend_from_slice(b" status=");
                out.extend_from_slice(itoa::Buffer::new().format(entry.status).as_bytes());
                out.extend_from_slice(b" duration_ms=");
                write_milliseconds(out, entry.duration);
            }
            LogFormat::Json => {
                out.extend_from_slice(b"{\"timestamp\":\"");
                self.clock.write(out, since_epoch);
                out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
                js_json::write_string(out, entry.method);
                out.extend_from_slice(b",\"url\":");
                js_json::write_string(out, entry.target);
                out.extend_from_slice(b",\"status\":");
                out.extend_from_slice(itoa::Buffer::new().format(entry.status).as_bytes());
                out.extend_from_slice(b",\"duration_ms\":");
                write_milliseconds(out, entry.duration);
                out.extend_from_slice(b",\"target\":\"");
                out.extend_from_slice(TARGET.as_bytes());
                out.extend_from_slice(b"\"}");
            }
        }
        out.push(b'\n');
    }
}

impl Drop for Pending {
    /// A worker thread that ends (and its last flush task) hands over what
    /// it still holds.
    fn drop(&mut self) {
        if let Some(sink) = SINK.get() {
            self.flush(sink);
        }
    }
}

/// Milliseconds with three decimals (microseconds), e.g. `0.085`: a JSON
/// number with a fraction, as tracing wrote the `f64`.
fn write_milliseconds(out: &mut Vec<u8>, duration: Duration) {
    let micros = duration.as_micros();
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let fraction = (micros % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

/// The UTC timestamp as tracing-subscriber writes it,
/// `2026-12-03T14:43:19.644686Z`; the part up to the seconds is formatted once
/// per second.
#[derive(Default)]
struct Clock {
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    prefix: [u8; 20],
}

impl Clock {
    fn write(&mut self, out: &mut Vec<u8>, since_epoch: Duration) {
        let second = since_epoch.as_secs();
        if self.second != Some(second) {
            self.prefix = format_second(second);
            self.second = Some(second);
        }
        out.extend_from_slice(&self.prefix);
        let micros = since_epoch.subsec_micros();
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits);
        out.push(b'Z');
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of a Unix time in seconds (UTC, proleptic Gregorian;
/// the days-to-civil conversion of Howard Hinnant's date algorithms).
fn format_second(unix_seconds: u64) -> [u8; 20] {
    let days = (unix_seconds / 86_400) as i64;
    let of_day = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let mut text = [0u8; 20];
    let two = |at: &mut [u8], value: u64| {
        at[0] = b'0' + (value / 10 % 10) as u8;
        at[1] = b'0' + (value % 10) as u8;
    };
    let year = year.clamp(0, 9999) as u64;
    two(&mut text[0..2], year / 100);
    two(&mut text[2..4], year % 100);
    text[4] = b'-';
    two(&mut text[5..7], month as u64);
    text[7] = b'-';
    two(&mut text[8..10], day as u64);
    text[10] = b'T';
    two(&mut text[11..13], of_day / 3600);
    text[13] = b':';
    two(&mut text[14..16], of_day / 60 % 60);
    text[16] = b':';
    two(&mut text[17..19], of_day % 60);
    text[19] = b'.';
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: LogFormat, target: &str, micros: u64, at: Duration) -> String {
        let mut pending = Pending::default();
        let entry = Entry {
            method: "GET",
            target,
            status: 200,
            duration: Duration::from_micros(micros),
        };
        pending.append(format, &entry, UNIX_EPOCH + at);
        String::from_utf8(std::mem::take(&mut pending.lines)).unwrap()
    }

    #[test]
    fn a_text_line_reads_as_tracing_wrote_it() {
        let at = Duration::new(1_796_308_999, 644_686_000);
        assert_eq!(
            line(LogFormat::Text, "/api/threads/2?x=1", 85, at),
            "2026-12-03T14:43:19.644686Z  INFO forum::handlers: request method=GET \
             url=/api/threads/2?x=1 status=200 duration_ms=0.085\n"
        );
    }

    #[test]
    fn a_json_line_has_tracings_fields_in_its_order() {
        let at = Duration::new(1_796_308_999, 5_000);
        let text = line(LogFormat::Json, "/api/users?q=%22a%5C", 12_345_678, at);
        assert_eq!(
            text,
            "{\"timestamp\":\"2026-12-03T14:43:19.000005Z\",\"level\":\"INFO\",\"message\":\"request\",\
             \"method\":\"GET\",\"url\":\"/api/users?q=%22a%5C\",\"status\":200,\
             \"duration_ms\":12345.678,\"target\":\"forum::handlers\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(parsed["duration_ms"].is_f64());
    }

    #[test]
    fn dates_match_the_civil_calendar() {
        // (Unix seconds, the prefix), leap days and century years included.
        for (seconds, expected) in [
            (0, "1970-01-01T00:00:00."),
            (951_782_400, "2000-02-29T00:00:00."),
            (1_709_251_199, "2024-02-29T23:59:59."),
            (4_107_542_400, "2100-03-01T00:00:00."),
            (1_796_308_999, "2026-12-03T14:43:19."),
        ] {
            assert_eq!(
                std::str::from_utf8(&format_second(seconds)).unwrap(),
                expected,
                "{seconds}"
            );
        }
    }
}
