//! Access logs, as an ALB writes them to S3: one line per request in AWS's
//! format (`alb::access_log`, the format's one home), gzip files in AWS's key
//! layout under `--access-log-root` with the bucket as the first folder,
//! delivered every `--access-log-interval` (5 minutes, as on AWS), and what is
//! buffered at a clean shutdown.
//!
//! Cheap on the hot path (docs/benchmarks.md, "Access logs' cost"): a
//! connection keeps one reusable [`Entry`] (no allocation per request); when
//! a request completes, its line is rendered straight into its worker's text
//! buffer ([`AccessLogs::record`]: one uncontended lock, no channel, no
//! formatting machinery, the date and time of day formatted once a second;
//! buffers of [`BLOCK`] bytes, reused, never grown). The writer task
//! ([`AccessLogs::spawn_writer`]) takes the workers' full buffers every
//! [`DRAIN_EVERY`], compresses them into the interval's file as they come (`--access-log-compression`, default
//! [`DEFAULT_COMPRESSION`]) and renames the file into place when the interval
//! ends. When logging is off (the load balancer's `access_logs.s3.enabled`
//! attribute, see [`destination`]) a request costs one atomic load.

mod writer;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::State;

/// AWS's delivery interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// How often the writer takes the lines the workers rendered and compresses
/// them into the interval's file.
pub const DRAIN_EVERY: Duration = Duration::from_millis(200);

/// The gzip level of the files: 1, deflate at its fastest (files about a
/// tenth of the text, as AWS's are small). 0 writes gzip of stored blocks
/// (every gzip reader reads them) straight from the workers' buffers: no
/// deflate, but ten times the bytes to write, which cost the same CPU within
/// the noise of docs/benchmarks.md's measurement.
pub const DEFAULT_COMPRESSION: u32 = 1;

/// Where a load balancer's logs go, from its `access_logs.s3.*` attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub bucket: String,
    pub prefix: String,
    pub account: String,
    pub region: String,
    /// The load balancer's resource id, `app/NAME/ID` (the `elb` field).
    pub load_balancer_id: String,
}

/// The load balancer's access log destination, or `None` when logging is
/// off. The one place that reads the `access_logs.s3.enabled`, `.bucket` and
/// `.prefix` attributes of the listener's load balancer.
pub fn destination(state: &State) -> Option<Destination> {
    let listener = state.listeners.first()?;
    let balancer = state
        .load_balancers
        .iter()
        .find(|balancer| balancer.arn == listener.load_balancer_arn)?;
    let attributes = &balancer.attributes;
    if !attributes.access_logs_enabled || attributes.access_logs_bucket.is_empty() {
        return None;
    }
    let bucket = attributes.access_logs_bucket.clone();
    let load_balancer_id = balancer
        .arn
        .split_once(":loadbalancer/")
        .map_or_else(|| balancer.name.clone(), |(_, id)| id.to_owned());
    Some(Destination {
        bucket,
        prefix: attributes.access_logs_prefix.clone(),
        account: state.account_id.clone(),
        region: state.region.clone(),
        load_balancer_id,
    })
}

/// What the log says of one request: the facts the data plane knows when it
/// routes it (kept in one reusable text buffer per connection) and when it
/// answers; rendered into a line as the request completes.
pub struct Entry {
    /// `http` or `h2`.
    pub kind: &'static str,
    /// When the request's head had arrived, and when the answer was sent.
    pub received_at: SystemTime,
    pub completed_at: SystemTime,
    pub client: SocketAddr,
    /// The entry's text: the request line (`METHOD
    /// http://HOST:PORT/path?query HTTP/1.1`), then the user agent and the
    /// trace id where [`Entry::user_agent`] and [`Entry::trace_id`] find them.
    pub text: String,
    pub request_len: usize,
    pub user_agent_at: Option<(usize, usize)>,
    pub trace_at: Option<(usize, usize)>,
    /// The matched rule's priority, 0 for the default rule; `None` when no
    /// rule matched.
    pub rule_priority: Option<u32>,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    /// The target the request went to and the status it answered.
    pub target: Option<(IpAddr, u16)>,
    pub target_status: Option<u16>,
    pub elb_status: u16,
    /// Time until the target's response head, when one came.
    pub target_time: Option<Duration>,
    /// `forward`, `fixed-response`, `redirect`.
    pub action: &'static str,
    /// AWS's error_reason, such as `TargetConnectionError`.
    pub error_reason: Option<&'static str>,
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            kind: "http",
            received_at: UNIX_EPOCH,
            completed_at: UNIX_EPOCH,
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            text: String::new(),
            request_len: 0,
            user_agent_at: None,
            trace_at: None,
            rule_priority: None,
            received_bytes: 0,
            sent_bytes: 0,
            target: None,
            target_status: None,
            elb_status: 0,
            target_time: None,
            action: "forward",
            error_reason: None,
        }
    }
}

impl Entry {
    /// The request line.
    pub fn request(&self) -> &str {
        self.text.get(..self.request_len).unwrap_or_default()
    }

    /// The client's User-Agent, when it sent one.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent_at
            .and_then(|(from, to)| self.text.get(from..to))
    }

    /// The trace id sent to the target.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_at.and_then(|(from, to)| self.text.get(from..to))
    }
}

/// How much text a worker gathers in one buffer before it starts the next:
/// buffers have this room (and some to spare for the line that crosses it),
/// are reused, and never grow, so rendering a line never allocates.
const BLOCK: usize = 64 * 1024;
const BLOCK_ROOM: usize = BLOCK + 16 * 1024;

/// The most emptied buffers a worker keeps for reuse.
const FREE_BLOCKS: usize = 64;

/// The lines one worker rendered since the writer last took them.
#[derive(Default)]
struct WorkerLines {
    /// The `elb` field of the current destination.
    load_balancer_id: String,
    /// The end (Unix seconds) of the interval `text`'s lines belong to.
    end: i64,
    text: Vec<u8>,
    /// Full buffers, not taken yet: (interval end, lines).
    full: Vec<(i64, Vec<u8>)>,
    /// Emptied buffers the writer gave back.
    free: Vec<Vec<u8>>,
    clock: alb::access_log::TimeWriter,
}

impl WorkerLines {
    /// Moves the current buffer to the full ones and starts an empty one.
    fn next_block(&mut self) {
        let fresh = self
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BLOCK_ROOM));
        let full = std::mem::replace(&mut self.text, fresh);
        self.full.push((self.end, full));
    }
}

/// One worker's lines on cache lines of their own. Side by side in a `Vec`
/// (152 bytes each), one worker's lock word lay 8 bytes after the previous
/// worker's interval end, which every request reads: each request's lock and
/// unlock on one core took that cache line from the other core (false
/// sharing; docs/benchmarks.md, "Access logs' cost").
#[derive(Default)]
#[repr(align(128))]
struct OwnLines(Mutex<WorkerLines>);

/// The access log of the data plane: whether it is on, the workers' lines,
/// and the writer's state.
pub struct AccessLogs {
    enabled: AtomicBool,
    interval: Duration,
    workers: Vec<OwnLines>,
    writer: Mutex<writer::Writer>,
}

impl AccessLogs {
    /// Logs under `root` (none written when `None`), compressed at gzip
    /// `level`, one text buffer per worker.
    pub fn new(
        root: Option<PathBuf>,
        interval: Duration,
        level: u32,
        workers: usize,
    ) -> AccessLogs {
        let interval = interval.max(Duration::from_secs(1));
        AccessLogs {
            enabled: AtomicBool::new(false),
            interval,
            workers: (0..workers.max(1)).map(|_| OwnLines::default()).collect(),
            writer: Mutex::new(writer::Writer::new(root, level)),
        }
    }

    /// Follows a published configuration: logging on or off, and where to.
    /// The lines rendered for the previous destination are taken first.
    pub fn configure(&self, state: &State) {
        let destination = destination(state);
        let mut writer = self.lock_writer();
        self.drain(&mut writer);
        let on = destination.is_some() && writer.has_root();
        let id = destination
            .as_ref()
            .map(|destination| destination.load_balancer_id.clone())
            .unwrap_or_default();
        for worker in &self.workers {
            lock(&worker.0).load_balancer_id.clone_from(&id);
        }
        writer.set_destination(destination);
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Whether requests are logged now (checked before an entry is built).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Renders a completed request's line into its worker's buffer (a lock
    /// only the writer, every [`DRAIN_EVERY`], also takes; no I/O).
    pub fn record(&self, worker: usize, entry: &Entry, target_group: Option<&str>) {
        let Some(lines) = self.workers.get(worker % self.workers.len()) else {
            return;
        };
        let second = unix_micros(entry.completed_at).div_euclid(1_000_000);
        let end = interval_end(second, self.interval);
        let mut lines = lock(&lines.0);
        let lines = &mut *lines;
        if lines.end != end {
            if !lines.text.is_empty() {
                lines.next_block();
            }
            lines.end = end;
        }
        writer::render_line(
            &mut lines.text,
            entry,
            target_group,
            &lines.load_balancer_id,
            &mut lines.clock,
        );
        lines.text.push(b'\n');
        if lines.text.len() >= BLOCK {
            lines.next_block();
        }
    }

    /// The address logged as the node's (in the file name).
    pub fn set_node_address(&self, address: IpAddr) {
        self.lock_writer().set_node_address(address);
    }

    /// Starts the writer task: takes the workers' lines every
    /// [`DRAIN_EVERY`] and delivers a file when an interval ends.
    pub fn spawn_writer(self: &Arc<Self>) {
        let logs = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(logs) = logs.upgrade() else { return };
                let mut writer = logs.lock_writer();
                logs.drain(&mut writer);
                if let Err(error) = writer.deliver_if_due(SystemTime::now()) {
                    tracing::warn!("delivering an access log file failed: {error}");
                }
            }
        });
    }

    /// Delivers everything buffered now (a clean shutdown).
    pub fn flush(&self) {
        let mut writer = self.lock_writer();
        self.drain(&mut writer);
        if let Err(error) = writer.deliver() {
            tracing::warn!("delivering the last access log file failed: {error}");
        }
    }

    /// Moves the workers' lines into the writer, oldest interval first, and
    /// gives the emptied buffers back (each lock is held for moving buffers,
    /// never for compressing).
    fn drain(&self, writer: &mut writer::Writer) {
        let mut taken = Vec::new();
        for (worker, lines) in self.workers.iter().enumerate() {
            let mut lines = lock(&lines.0);
            if !lines.text.is_empty() {
                lines.next_block();
            }
            taken.extend(lines.full.drain(..).map(|(end, text)| (end, worker, text)));
        }
        // Stable: within a worker, lines stay in the order they completed.
        taken.sort_by_key(|(end, _, _)| *end);
        for (end, _, text) in &taken {
            writer.append(*end, text);
        }
        for (_, worker, mut text) in taken {
            text.clear();
            let mut lines = lock(&self.workers[worker].0);
            if lines.free.len() < FREE_BLOCKS {
                lines.free.push(text);
            }
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, writer::Writer> {
        lock(&self.writer)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The end (Unix seconds) of the interval holding `second`: intervals are
/// aligned to the clock, as AWS's 5-minute files are (`23:35`–`23:40`).
fn interval_end(second: i64, interval: Duration) -> i64 {
    let length = i64::try_from(interval.as_secs()).unwrap_or(300).max(1);
    (second.div_euclid(length) + 1) * length
}

fn unix_micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        // In 64 bits: `as_micros` is a u128 division.
        i64::try_from(since.as_secs())
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(since.subsec_micros()))
    })
}

/// What the data plane knows of a request when it has routed it.
pub struct Begin<'a> {
    pub kind: &'static str,
    pub client: SocketAddr,
    pub method: &'a str,
    /// The path and query as the client sent them.
    pub target: &'a str,
    /// The Host (port stripped or not; the listener's port is logged).
    pub host: Option<&'a str>,
    pub listener_port: u16,
    pub http10: bool,
    pub user_agent: Option<&'a str>,
    pub rule_priority: Option<u32>,
    pub head_bytes: usize,
}

/// How a request ended.
#[derive(Default)]
pub struct Outcome<'a> {
    pub elb_status: u16,
    pub target: Option<(IpAddr, u16)>,
    /// The ARN of the target group that served it (or whose targets failed).
    pub target_group: Option<&'a str>,
    pub target_status: Option<u16>,
    pub target_time: Option<Duration>,
    pub error_reason: Option<&'static str>,
}

/// The entry of the request in flight on a connection, reused by the
/// connection's requests: begun when the request is routed (while logging
/// is on), finished when its answer is sent.
#[derive(Default)]
pub struct Pending {
    active: bool,
    entry: Entry,
}

impl Pending {
    /// Starts the request's entry when logging is on (the caller checks
    /// [`AccessLogs::enabled`] first, so a request costs nothing more while
    /// logging is off).
    pub fn begin(&mut self, logs: &AccessLogs, request: Begin<'_>) {
        self.active = logs.enabled();
        if !self.active {
            return;
        }
        let host = request.host.map_or("-", crate::matcher::strip_port);
        let protocol = match (request.kind, request.http10) {
            ("h2", _) => "HTTP/2.0",
            (_, true) => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let entry = &mut self.entry;
        let text = &mut entry.text;
        text.clear();
        for part in [request.method, " http://", host, ":"] {
            text.push_str(part);
        }
        alb::access_log::write_number(text, u64::from(request.listener_port));
        for part in [request.target, " ", protocol] {
            text.push_str(part);
        }
        let request_len = text.len();
        entry.user_agent_at = request.user_agent.map(|agent| {
            text.push_str(agent);
            (request_len, text.len())
        });
        entry.request_len = request_len;
        entry.kind = request.kind;
        entry.received_at = SystemTime::now();
        entry.client = request.client;
        entry.trace_at = None;
        entry.rule_priority = request.rule_priority;
        entry.received_bytes = request.head_bytes as u64;
        entry.sent_bytes = 0;
        entry.action = "forward";
    }

    /// Whether an entry is in flight (logging was on when the request was
    /// routed): the data plane builds the outcome only then.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Ends the request without logging it (logging is off).
    pub fn clear(&mut self) {
        self.active = false;
    }

    /// The action that answers (`forward` unless told).
    pub fn action(&mut self, action: &'static str) {
        if self.active {
            self.entry.action = action;
        }
    }

    /// The trace id sent to the target.
    pub fn trace(&mut self, trace: &[u8]) {
        if self.active {
            let text = &mut self.entry.text;
            let from = text.len();
            match std::str::from_utf8(trace) {
                Ok(trace) => text.push_str(trace),
                Err(_) => text.push_str(&String::from_utf8_lossy(trace)),
            }
            self.entry.trace_at = Some((from, text.len()));
        }
    }

    /// Bytes written to the client for this request.
    pub fn sent(&mut self, bytes: usize) {
        if self.active {
            self.entry.sent_bytes += bytes as u64;
        }
    }

    /// Ends the entry and renders its line into the worker's buffer.
    pub fn finish(&mut self, logs: &AccessLogs, worker: usize, outcome: Outcome<'_>) {
        if !std::mem::take(&mut self.active) {
            return;
        }
        let entry = &mut self.entry;
        entry.completed_at = SystemTime::now();
        entry.elb_status = outcome.elb_status;
        entry.target = outcome.target;
        entry.target_status = outcome.target_status;
        entry.target_time = outcome.target_time;
        entry.error_reason = outcome.error_reason;
        logs.record(worker, entry, outcome.target_group);
    }
}

/// The value of an HTTP/1 header field as text (the first one named
/// `name`, case-insensitive).
pub fn header_text<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b str> {
    headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))
        .and_then(|header| std::str::from_utf8(header.value.trim_ascii()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No cache line holds parts of two workers' lines (their locks and
    /// buffer lengths are written on every request, each on its own core).
    #[test]
    fn workers_lines_share_no_cache_line() {
        const LINE: usize = 128; // two 64-byte lines: the adjacent-line prefetcher pairs them
        let logs = AccessLogs::new(None, DEFAULT_INTERVAL, DEFAULT_COMPRESSION, 4);
        for pair in logs.workers.windows(2) {
            let (first, second) = (&pair[0].0, &pair[1].0);
            let first_end = std::ptr::from_ref(first).addr() + size_of_val(first) - 1;
            let second_start = std::ptr::from_ref(second).addr();
            assert!(first_end / LINE < second_start / LINE);
        }
    }
}
