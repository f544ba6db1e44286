//! The writer's side: entries into lines, lines into the interval's gzip
//! stream, the stream into a file at AWS's key (written to a temporary name
//! and renamed, so a reader never sees half a file).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alb::access_log::{self, Record};
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
    /// A line, reused.
    line: String,
}

struct Interval {
    end: i64,
    destination: Destination,
    gzip: GzEncoder<Vec<u8>>,
    lines: usize,
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
            line: String::with_capacity(512),
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
        let Some(destination) = self.destination.clone() else {
            return;
        };
        let completed = unix_micros(entry.completed_at);
        let end = interval_end(completed / 1_000_000, self.interval);
        let reopen = self
            .open
            .as_ref()
            .is_none_or(|open| open.end != end || open.destination != destination);
        if reopen {
            // An entry of a later interval (or for a changed destination)
            // closes the open one.
            if let Err(error) = self.deliver_open() {
                tracing::warn!("delivering an access log file failed: {error}");
            }
            self.open = Some(Interval {
                end,
                destination: destination.clone(),
                gzip: GzEncoder::new(Vec::new(), Compression::fast()),
                lines: 0,
            });
        }
        self.line.clear();
        record_of(entry, &destination).render_into(&mut self.line);
        self.line.push('\n');
        if let Some(open) = &mut self.open {
            // Writing into a Vec cannot fail.
            let _ = open.gzip.write_all(self.line.as_bytes());
            open.lines += 1;
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
        let (Some(open), Some(root)) = (self.open.take(), &self.root) else {
            return Ok(());
        };
        if open.lines == 0 {
            return Ok(());
        }
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

/// The record AWS would write for `entry`.
fn record_of(entry: &Entry, destination: &Destination) -> Record {
    let mut record = Record::new();
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
        .set("request", entry.request.as_str())
        .set("user_agent", entry.user_agent.as_deref().unwrap_or("-"))
        .set(
            "target_group_arn",
            entry.target_group.as_ref().map_or("-", |group| group.arn()),
        )
        .set("trace_id", entry.trace_id.as_deref().unwrap_or("-"))
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
}
