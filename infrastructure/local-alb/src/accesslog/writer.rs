//! The writer's side: entries into lines, lines into the interval's gzip
//! stream, the stream into a file at AWS's key (written to a temporary name
//! and renamed, so a reader never sees half a file).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alb::access_log;
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{Destination, Entry};

pub struct Writer {
    root: Option<PathBuf>,
    interval: Duration,
    receivers: Vec<UnboundedReceiver<Entry>>,
    destination: Option<Destination>,
    node: IpAddr,
    /// The open interval: its end (Unix seconds), its stream, its line count.
    open: Option<Interval>,
}

/// Lines rendered are gathered in `text` and compressed in blocks of
/// [`BLOCK`] bytes (one deflate call per block, not per line).
struct Interval {
    end: i64,
    destination: Destination,
    gzip: GzEncoder<Vec<u8>>,
    text: String,
    lines: usize,
}

/// How much rendered text is compressed at once.
const BLOCK: usize = 64 * 1024;

impl Interval {
    /// Compresses the text gathered so far.
    fn compress(&mut self) {
        // Writing into a Vec cannot fail.
        let _ = self.gzip.write_all(self.text.as_bytes());
        self.text.clear();
    }
}

impl Writer {
    pub fn new(
        root: Option<PathBuf>,
        interval: Duration,
        receivers: Vec<UnboundedReceiver<Entry>>,
    ) -> Writer {
        Writer {
            root,
            interval: interval.max(Duration::from_secs(1)),
            receivers,
            destination: None,
            node: IpAddr::V4(Ipv4Addr::LOCALHOST),
            open: None,
        }
    }

    pub fn has_root(&self) -> bool {
        self.root.is_some()
    }

    pub fn set_destination(&mut self, destination: Option<Destination>) {
        self.destination = destination;
    }

    pub fn set_node_address(&mut self, address: IpAddr) {
        self.node = address;
    }

    /// Moves every waiting entry into the open interval's stream.
    pub fn drain(&mut self) {
        for index in 0..self.receivers.len() {
            while let Ok(entry) = self.receivers[index].try_recv() {
                self.append(&entry);
            }
        }
    }

    fn append(&mut self, entry: &Entry) {
        let Some(destination) = &self.destination else {
            return;
        };
        let completed = unix_micros(entry.completed_at);
        let end = interval_end(completed / 1_000_000, self.interval);
        let reopen = self
            .open
            .as_ref()
            .is_none_or(|open| open.end != end || &open.destination != destination);
        if reopen {
            let destination = destination.clone();
            // An entry of a later interval (or for a changed destination)
            // closes the open one.
            if let Err(error) = self.deliver_open() {
                tracing::warn!("delivering an access log file failed: {error}");
            }
            self.open = Some(Interval {
                end,
                destination,
                gzip: GzEncoder::new(Vec::new(), Compression::fast()),
                text: String::with_capacity(BLOCK + 4096),
                lines: 0,
            });
        }
        if let Some(open) = &mut self.open {
            render_line(&mut open.text, entry, &open.destination.load_balancer_id);
            open.text.push('\n');
            open.lines += 1;
            if open.text.len() >= BLOCK {
                open.compress();
            }
        }
    }

    /// Delivers the open interval once its end has passed.
    pub fn deliver_if_due(&mut self, now: SystemTime) -> std::io::Result<()> {
        let now = unix_micros(now) / 1_000_000;
        if self.open.as_ref().is_some_and(|open| open.end <= now) {
            self.deliver_open()?;
        }
        Ok(())
    }

    /// Delivers the open interval now, whatever its end.
    pub fn deliver(&mut self, _now: SystemTime) -> std::io::Result<()> {
        self.deliver_open()
    }

    fn deliver_open(&mut self) -> std::io::Result<()> {
        let (Some(mut open), Some(root)) = (self.open.take(), &self.root) else {
            return Ok(());
        };
        if open.lines == 0 {
            return Ok(());
        }
        open.compress();
        let bytes = open.gzip.finish()?;
        let random = format!("{:016x}", rand::random::<u64>());
        let key = access_log::object_key(
            &open.destination.prefix,
            &open.destination.account,
            &open.destination.region,
            &open.destination.load_balancer_id,
            open.end,
            &self.node.to_string(),
            &random,
        );
        // Never outside the root, even if state holds a name the attribute
        // checks now refuse.
        if let Some(problem) = access_log::bucket_name_problem(&open.destination.bucket)
            .or_else(|| access_log::prefix_problem(&open.destination.prefix))
        {
            tracing::error!(%problem, "access log not delivered");
            return Ok(());
        }
        let path = root.join(&open.destination.bucket).join(&key);
        write_whole(&path, &bytes)?;
        tracing::debug!(path = %path.display(), lines = open.lines, "access log delivered");
        Ok(())
    }
}

/// The end (Unix seconds) of the interval holding `second`: intervals are
/// aligned to the clock, as AWS's 5-minute files are (`23:35`–`23:40`).
fn interval_end(second: i64, interval: Duration) -> i64 {
    let length = i64::try_from(interval.as_secs()).unwrap_or(300).max(1);
    (second.div_euclid(length) + 1) * length
}

fn unix_micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
    })
}

fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = path.with_extension("gz.partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

/// The line AWS would write for `entry` (without its line ending), appended
/// to `line` straight from the entry: the fields of `alb::access_log::FIELDS`
/// in order, written with the format's own helpers, so the bytes are
/// [`alb::access_log::Record::render`]'s (a unit test holds them equal).
fn render_line(line: &mut String, entry: &Entry, load_balancer_id: &str) {
    use access_log::{write_plain, write_quoted, write_seconds, write_time};
    use std::fmt::Write as _;
    let total = entry
        .completed_at
        .duration_since(entry.received_at)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64());
    let (request_time, target_time, response_time) = match entry.target_seconds {
        Some(target) => (Some(0.0), Some(target), Some((total - target).max(0.0))),
        None => (None, None, None),
    };
    let target = |line: &mut String| match entry.target {
        Some((ip, port)) => {
            let _ = write!(line, "{}:{port}", alb::cidr::canonical_ip(ip));
        }
        None => line.push('-'),
    };
    let status = |line: &mut String| match entry.target_status {
        Some(status) => {
            let _ = write!(line, "{status}");
        }
        None => line.push('-'),
    };
    write_plain(line, entry.kind);
    line.push(' ');
    write_time(line, unix_micros(entry.completed_at));
    line.push(' ');
    write_plain(line, load_balancer_id);
    let _ = write!(
        line,
        " {}:{} ",
        alb::cidr::canonical_ip(entry.client.ip()),
        entry.client.port()
    );
    target(line);
    line.push(' ');
    write_seconds(line, request_time);
    line.push(' ');
    write_seconds(line, target_time);
    line.push(' ');
    write_seconds(line, response_time);
    let _ = write!(line, " {} ", entry.elb_status);
    status(line);
    let _ = write!(line, " {} {} ", entry.received_bytes, entry.sent_bytes);
    write_quoted(line, entry.request());
    line.push(' ');
    write_quoted(line, entry.user_agent().unwrap_or("-"));
    // ssl_cipher, ssl_protocol
    line.push_str(" - - ");
    write_plain(
        line,
        entry.target_group.as_ref().map_or("-", |group| group.arn()),
    );
    line.push(' ');
    write_quoted(line, entry.trace_id().unwrap_or("-"));
    // domain_name, chosen_cert_arn
    line.push_str(" \"-\" \"-\" ");
    match entry.rule_priority {
        Some(priority) => {
            let _ = write!(line, "{priority}");
        }
        None => line.push('-'),
    }
    line.push(' ');
    write_time(line, unix_micros(entry.received_at));
    line.push(' ');
    write_quoted(line, entry.action);
    // redirect_url
    line.push_str(" \"-\" ");
    write_quoted(line, entry.error_reason.unwrap_or("-"));
    line.push_str(" \"");
    target(line);
    line.push_str("\" \"");
    status(line);
    // classification, classification_reason, conn_trace_id,
    // transformed_host, transformed_uri, request_transform_status
    line.push_str("\" \"-\" \"-\" - \"-\" \"-\" \"-\"");
}

/// The record AWS would write for `entry`: the reference the direct
/// rendering is held to.
#[cfg(test)]
fn record_of(entry: &Entry, destination: &Destination) -> access_log::Record {
    let mut record = access_log::Record::new();
    let seconds = |from: SystemTime, to: SystemTime| {
        to.duration_since(from)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64())
    };
    let total = seconds(entry.received_at, entry.completed_at);
    let (request_time, target_time, response_time) = match entry.target_seconds {
        // A target answered: forwarding took no measurable time locally, the
        // rest after the head was relaying the response.
        Some(target) => (Some(0.0), Some(target), Some((total - target).max(0.0))),
        None => (None, None, None),
    };
    record
        .set("type", entry.kind)
        .set(
            "time",
            access_log::format_time(unix_micros(entry.completed_at)),
        )
        .set("elb", destination.load_balancer_id.as_str())
        .set(
            "client:port",
            socket_text(entry.client.ip(), entry.client.port()),
        )
        .set(
            "target:port",
            entry
                .target
                .map_or_else(|| "-".to_owned(), |(ip, port)| socket_text(ip, port)),
        )
        .set(
            "request_processing_time",
            access_log::format_seconds(request_time),
        )
        .set(
            "target_processing_time",
            access_log::format_seconds(target_time),
        )
        .set(
            "response_processing_time",
            access_log::format_seconds(response_time),
        )
        .set("elb_status_code", entry.elb_status.to_string())
        .set(
            "target_status_code",
            entry
                .target_status
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        )
        .set("received_bytes", entry.received_bytes.to_string())
        .set("sent_bytes", entry.sent_bytes.to_string())
        .set("request", entry.request())
        .set("user_agent", entry.user_agent().unwrap_or("-"))
        .set(
            "target_group_arn",
            entry.target_group.as_ref().map_or("-", |group| group.arn()),
        )
        .set("trace_id", entry.trace_id().unwrap_or("-"))
        .set(
            "matched_rule_priority",
            entry
                .rule_priority
                .map_or_else(|| "-".to_owned(), |priority| priority.to_string()),
        )
        .set(
            "request_creation_time",
            access_log::format_time(unix_micros(entry.received_at)),
        )
        .set("actions_executed", entry.action)
        .set("error_reason", entry.error_reason.unwrap_or("-"))
        .set(
            "target:port_list",
            entry
                .target
                .map_or_else(|| "-".to_owned(), |(ip, port)| socket_text(ip, port)),
        )
        .set(
            "target_status_code_list",
            entry
                .target_status
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        );
    record
}

/// `ip:port` as the log writes it (an IPv6 address without brackets, as AWS
/// does).
#[cfg(test)]
fn socket_text(ip: IpAddr, port: u16) -> String {
    format!("{}:{port}", alb::cidr::canonical_ip(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_aligned_to_the_clock() {
        let five_minutes = Duration::from_secs(300);
        // 23:37:10 is in 23:35–23:40.
        let at = 1_644_968_230;
        assert_eq!(interval_end(at, five_minutes), 1_644_968_400);
        assert_eq!(interval_end(1_644_968_400, five_minutes), 1_644_968_700);
        assert_eq!(interval_end(7, Duration::from_secs(1)), 8);
    }

    struct Group(&'static str);

    impl super::super::TargetGroupArn for Group {
        fn arn(&self) -> &str {
            self.0
        }
    }

    /// An entry of the given text (the rest to be filled in).
    fn text(request: &str, user_agent: Option<&str>, trace: Option<&str>) -> Entry {
        let mut text = request.to_owned();
        let mut at = |part: Option<&str>| {
            part.map(|part| {
                let from = text.len();
                text.push_str(part);
                (from, text.len())
            })
        };
        let user_agent_at = at(user_agent);
        let trace_at = at(trace);
        Entry {
            kind: "http",
            received_at: UNIX_EPOCH,
            completed_at: UNIX_EPOCH,
            client: "127.0.0.1:1".parse().unwrap(),
            request_len: request.len(),
            text,
            user_agent_at,
            trace_at,
            rule_priority: None,
            received_bytes: 0,
            sent_bytes: 0,
            target: None,
            target_group: None,
            target_status: None,
            elb_status: 0,
            target_seconds: None,
            action: "forward",
            error_reason: None,
        }
    }

    /// The direct rendering writes the bytes the format's `Record` renders,
    /// for a forwarded request, one no target answered, IPv6 and escapes.
    #[test]
    fn lines_are_the_records_bytes() {
        let destination = Destination {
            bucket: "logs".to_owned(),
            prefix: "p".to_owned(),
            account: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            load_balancer_id: "app/local/50dc6c495c0c9188".to_owned(),
        };
        let received = UNIX_EPOCH + Duration::from_micros(1_764_761_716_123_456);
        let forwarded = Entry {
            kind: "http",
            received_at: received,
            completed_at: received + Duration::from_micros(2_345),
            client: "127.0.0.1:50432".parse().unwrap(),
            rule_priority: Some(10),
            received_bytes: 78,
            sent_bytes: 1_234,
            target: Some(("127.0.0.1".parse().unwrap(), 8081)),
            target_group: Some(std::sync::Arc::new(Group(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/users/73e2d6bc24d8a067",
            ))),
            target_status: Some(200),
            elb_status: 200,
            target_seconds: Some(0.001_2),
            action: "forward",
            error_reason: None,
            ..text(
                "GET http://localhost:80/api/users/1?x=\"y\\ HTTP/1.1",
                Some("curl/8.5 \"quoted\""),
                Some("Root=1-6930a1b4-0123456789abcdef01234567"),
            )
        };
        let failed = Entry {
            kind: "h2",
            received_at: received,
            completed_at: received,
            client: "[::ffff:10.0.0.9]:443".parse().unwrap(),
            rule_priority: None,
            received_bytes: 0,
            sent_bytes: 0,
            target: Some(("::1".parse().unwrap(), 9)),
            target_group: None,
            target_status: None,
            elb_status: 502,
            target_seconds: None,
            action: "fixed-response",
            error_reason: Some("TargetConnectionError"),
            ..text("POST http://-:80/ HTTP/2.0", None, None)
        };
        for entry in [&forwarded, &failed] {
            let mut line = String::new();
            render_line(&mut line, entry, &destination.load_balancer_id);
            assert_eq!(line, record_of(entry, &destination).render());
        }
    }
}
