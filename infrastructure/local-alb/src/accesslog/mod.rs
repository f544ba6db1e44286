//! Access logs, as an ALB writes them to S3: one line per request in AWS's
//! format (`alb::access_log`, the format's one home), gzip files in AWS's key
//! layout under `--access-log-root` with the bucket as the first folder,
//! delivered every `--access-log-interval` (5 minutes, as on AWS), and what is
//! buffered at a clean shutdown.
//!
//! Off the hot path: a request that completes hands an [`Entry`] (the facts,
//! not the line) to its worker's channel, without a lock; the writer task
//! ([`AccessLogs::spawn_writer`]) drains the channels every
//! [`DRAIN_EVERY`], renders the lines straight from the entries and
//! compresses them in blocks into the interval's gzip stream, and
//! writes the file when the interval ends. When logging is off (the load
//! balancer's `access_logs.s3.enabled` attribute, see [`destination`]) a
//! request costs one atomic load.

mod writer;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::model::State;

/// AWS's delivery interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// How often the writer moves entries from the workers' channels into the
/// interval's compressed buffer.
pub const DRAIN_EVERY: Duration = Duration::from_millis(200);

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

/// A target group as an entry refers to it: the data plane's runtime group
/// (shared, so an entry costs no copy of the ARN).
pub trait TargetGroupArn: Send + Sync {
    fn arn(&self) -> &str;
}

/// What the log says of one request, as the data plane knows it when the
/// request completes; rendered into a line by the writer.
pub struct Entry {
    /// `http` or `h2`.
    pub kind: &'static str,
    /// When the request's head had arrived, and when the answer was sent.
    pub received_at: SystemTime,
    pub completed_at: SystemTime,
    pub client: SocketAddr,
    /// The entry's text in one allocation: the request line (`METHOD
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
    /// The target the request went to, its group and the status it answered.
    pub target: Option<(IpAddr, u16)>,
    pub target_group: Option<Arc<dyn TargetGroupArn>>,
    pub target_status: Option<u16>,
    pub elb_status: u16,
    /// Seconds until the target's response head, when one came.
    pub target_seconds: Option<f64>,
    /// `forward`, `fixed-response`, `redirect`.
    pub action: &'static str,
    /// AWS's error_reason, such as `TargetConnectionError`.
    pub error_reason: Option<&'static str>,
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

/// The access log of the data plane: whether it is on, the workers'
/// channels, and the writer's state.
pub struct AccessLogs {
    enabled: AtomicBool,
    senders: Vec<UnboundedSender<Entry>>,
    writer: Mutex<writer::Writer>,
}

impl AccessLogs {
    /// Logs under `root` (none written when `None`), one channel per worker.
    pub fn new(root: Option<PathBuf>, interval: Duration, workers: usize) -> AccessLogs {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers.max(1)).map(|_| unbounded_channel()).unzip();
        AccessLogs {
            enabled: AtomicBool::new(false),
            senders,
            writer: Mutex::new(writer::Writer::new(root, interval, receivers)),
        }
    }

    /// Follows a published configuration: logging on or off, and where to.
    pub fn configure(&self, state: &State) {
        let destination = destination(state);
        let mut writer = self.lock_writer();
        let on = destination.is_some() && writer.has_root();
        writer.set_destination(destination);
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Whether requests are logged now (checked before an entry is built).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Hands a completed request's entry to the writer (no lock, no I/O).
    pub fn record(&self, worker: usize, entry: Entry) {
        if let Some(sender) = self.senders.get(worker % self.senders.len()) {
            let _ = sender.send(entry);
        }
    }

    /// The address logged as the node's (in the file name).
    pub fn set_node_address(&self, address: IpAddr) {
        self.lock_writer().set_node_address(address);
    }

    /// Starts the writer task: drains the workers' channels every
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
                writer.drain();
                if let Err(error) = writer.deliver_if_due(SystemTime::now()) {
                    tracing::warn!("delivering an access log file failed: {error}");
                }
            }
        });
    }

    /// Delivers everything buffered now (a clean shutdown).
    pub fn flush(&self) {
        let mut writer = self.lock_writer();
        writer.drain();
        if let Err(error) = writer.deliver(SystemTime::now()) {
            tracing::warn!("delivering the last access log file failed: {error}");
        }
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, writer::Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
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
pub struct Outcome {
    pub elb_status: u16,
    pub target: Option<(IpAddr, u16)>,
    pub target_group: Option<Arc<dyn TargetGroupArn>>,
    pub target_status: Option<u16>,
    pub target_seconds: Option<f64>,
    pub error_reason: Option<&'static str>,
}

/// The entry of the request in flight on a connection (none while logging
/// is off): begun when the request is routed, finished when its answer is
/// sent.
#[derive(Default)]
pub struct Pending {
    entry: Option<Entry>,
}

/// Room kept in an entry's text for the protocol, the separators and a trace
/// id (`Root=1-` and 32 hex digits, with room for `Self=` and more), so
/// adding them does not grow it.
const TEXT_SPARE: usize = 32 + 64;

impl Pending {
    /// Starts the request's entry when logging is on (the caller checks
    /// [`AccessLogs::enabled`] first, so a request costs nothing more while
    /// logging is off).
    pub fn begin(&mut self, logs: &AccessLogs, request: Begin<'_>) {
        self.entry = None;
        if !logs.enabled() {
            return;
        }
        let host = request.host.map_or("-", crate::matcher::strip_port);
        let protocol = if request.http10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        let protocol = if request.kind == "h2" {
            "HTTP/2.0"
        } else {
            protocol
        };
        let port = request.listener_port.to_string();
        let user_agent = request.user_agent.unwrap_or_default();
        let mut text = String::with_capacity(
            request.method.len()
                + host.len()
                + port.len()
                + request.target.len()
                + user_agent.len()
                + TEXT_SPARE,
        );
        for part in [
            request.method,
            " http://",
            host,
            ":",
            &port,
            request.target,
            " ",
            protocol,
        ] {
            text.push_str(part);
        }
        let request_len = text.len();
        let user_agent_at = request.user_agent.map(|agent| {
            text.push_str(agent);
            (request_len, text.len())
        });
        self.entry = Some(Entry {
            kind: request.kind,
            received_at: SystemTime::now(),
            completed_at: SystemTime::UNIX_EPOCH,
            client: request.client,
            text,
            request_len,
            user_agent_at,
            trace_at: None,
            rule_priority: request.rule_priority,
            received_bytes: request.head_bytes as u64,
            sent_bytes: 0,
            target: None,
            target_group: None,
            target_status: None,
            elb_status: 0,
            target_seconds: None,
            action: "forward",
            error_reason: None,
        });
    }

    /// Whether an entry is in flight (logging was on when the request was
    /// routed): the data plane builds the outcome only then.
    pub fn is_active(&self) -> bool {
        self.entry.is_some()
    }

    /// The action that answers (`forward` unless told).
    pub fn action(&mut self, action: &'static str) {
        if let Some(entry) = &mut self.entry {
            entry.action = action;
        }
    }

    /// The trace id sent to the target.
    pub fn trace(&mut self, trace: &[u8]) {
        if let Some(entry) = &mut self.entry {
            let from = entry.text.len();
            entry.text.push_str(&String::from_utf8_lossy(trace));
            entry.trace_at = Some((from, entry.text.len()));
        }
    }

    /// Bytes written to the client for this request.
    pub fn sent(&mut self, bytes: usize) {
        if let Some(entry) = &mut self.entry {
            entry.sent_bytes += bytes as u64;
        }
    }

    /// Ends the entry and hands it to the writer.
    pub fn finish(&mut self, logs: &AccessLogs, worker: usize, outcome: Outcome) {
        let Some(mut entry) = self.entry.take() else {
            return;
        };
        entry.completed_at = SystemTime::now();
        entry.elb_status = outcome.elb_status;
        entry.target = outcome.target;
        entry.target_group = outcome.target_group;
        entry.target_status = outcome.target_status;
        entry.target_seconds = outcome.target_seconds;
        entry.error_reason = outcome.error_reason;
        logs.record(worker, entry);
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
