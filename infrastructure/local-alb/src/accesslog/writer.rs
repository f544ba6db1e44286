//! The writer's side: the workers' lines into the interval's gzip stream,
//! written to the file as it comes (under the root's hidden `.in-progress/`,
//! outside every bucket's folder, renamed into AWS's key when the interval
//! ends, so a reader of the bucket never sees half a file and memory stays
//! bounded however long the interval); and the rendering of one line.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::SystemTime;

use alb::access_log;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::{Destination, Entry, unix_micros};

/// The folder under the access-log root where the open interval's file is
/// written (hidden; no bucket name starts with a dot).
pub const IN_PROGRESS_DIR: &str = ".in-progress";

pub struct Writer {
    root: Option<PathBuf>,
    level: u32,
    destination: Option<Destination>,
    node: IpAddr,
    /// The open interval.
    open: Option<Interval>,
}

/// The file of the interval being written.
struct Interval {
    end: i64,
    destination: Destination,
    /// Where it goes when the interval ends, and where it is written meanwhile.
    path: PathBuf,
    partial: PathBuf,
    gzip: Gzip,
}

/// The interval file's gzip stream: deflate at a level, or at level 0 gzip
/// of stored blocks written straight from the workers' buffers (what a
/// deflate library would do at level 0, without its copies).
enum Gzip {
    Deflate(Box<GzEncoder<BufWriter<File>>>),
    Stored(StoredGzip),
}

impl Gzip {
    fn new(file: File, level: u32) -> std::io::Result<Gzip> {
        Ok(if level == 0 {
            Gzip::Stored(StoredGzip::new(file)?)
        } else {
            let file = BufWriter::with_capacity(64 * 1024, file);
            Gzip::Deflate(Box::new(GzEncoder::new(file, Compression::new(level))))
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Gzip::Deflate(gzip) => gzip.write_all(bytes),
            Gzip::Stored(gzip) => gzip.write_all(bytes),
        }
    }

    /// Ends the stream and flushes it to the file.
    fn finish(self) -> std::io::Result<()> {
        match self {
            Gzip::Deflate(gzip) => gzip.finish()?.flush(),
            Gzip::Stored(gzip) => gzip.finish(),
        }
    }
}

/// A gzip member (RFC 1952) whose deflate stream (RFC 1951) is stored
/// blocks: every gzip reader reads it; nothing is compressed.
struct StoredGzip {
    file: BufWriter<File>,
    crc: flate2::Crc,
}

/// The header of a gzip member: magic, deflate, no flags, no time, no extra
/// flags, unknown OS (as flate2 writes it).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl StoredGzip {
    fn new(file: File) -> std::io::Result<StoredGzip> {
        // Small: a block's data is written past it, straight to the file.
        let mut file = BufWriter::with_capacity(4096, file);
        file.write_all(&GZIP_HEADER)?;
        Ok(StoredGzip {
            file,
            crc: flate2::Crc::new(),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        for block in bytes.chunks(usize::from(u16::MAX)) {
            self.stored_block(false, block)?;
        }
        Ok(())
    }

    /// One stored block: its header byte (BFINAL, BTYPE 00, padding),
    /// LEN and NLEN, then the bytes.
    fn stored_block(&mut self, last: bool, block: &[u8]) -> std::io::Result<()> {
        let length = u16::try_from(block.len()).unwrap_or(u16::MAX);
        let [low, high] = length.to_le_bytes();
        let [not_low, not_high] = (!length).to_le_bytes();
        self.file
            .write_all(&[u8::from(last), low, high, not_low, not_high])?;
        self.file.write_all(block)
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.stored_block(true, &[])?;
        let crc = self.crc.sum().to_le_bytes();
        let size = self.crc.amount().to_le_bytes();
        self.file.write_all(&crc)?;
        self.file.write_all(&size)?;
        self.file.flush()
    }
}

impl Writer {
    pub fn new(root: Option<PathBuf>, level: u32) -> Writer {
        Writer {
            root,
            level: level.min(9),
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

    /// Compresses lines of the interval ending at `end` (Unix seconds) into
    /// its file; a later interval (or a changed destination) delivers the
    /// open one first.
    pub fn append(&mut self, end: i64, lines: &[u8]) {
        let Some(destination) = &self.destination else {
            return;
        };
        let reopen = self
            .open
            .as_ref()
            .is_none_or(|open| open.end != end || &open.destination != destination);
        if reopen {
            let destination = destination.clone();
            if let Err(error) = self.deliver() {
                tracing::warn!("delivering an access log file failed: {error}");
            }
            match self.open_interval(end, destination) {
                Ok(open) => self.open = Some(open),
                Err(error) => {
                    tracing::warn!("opening an access log file failed: {error}");
                    return;
                }
            }
        }
        if let Some(open) = &mut self.open
            && let Err(error) = open.gzip.write_all(lines)
        {
            tracing::warn!("writing an access log file failed: {error}");
        }
    }

    fn open_interval(&self, end: i64, destination: Destination) -> std::io::Result<Interval> {
        let root = self
            .root
            .as_ref()
            .ok_or_else(|| std::io::Error::other("no access log root"))?;
        let random = format!("{:016x}", rand::random::<u64>());
        let key = access_log::object_key(
            &destination.prefix,
            &destination.account,
            &destination.region,
            &destination.load_balancer_id,
            end,
            &self.node.to_string(),
            &random,
        );
        // Never outside the root, even if state holds a name the attribute
        // checks now refuse.
        if let Some(problem) = access_log::bucket_name_problem(&destination.bucket)
            .or_else(|| access_log::prefix_problem(&destination.prefix))
        {
            return Err(std::io::Error::other(format!(
                "not writing outside {}: {problem}",
                root.display()
            )));
        }
        let path = root.join(&destination.bucket).join(&key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| naming(e, "cannot create the directory", parent))?;
        }
        // Written outside the bucket's folder and renamed into place on
        // delivery (the same file system: the rename is atomic), so the
        // bucket holds only whole files, as S3 shows only whole objects.
        let in_progress = root.join(IN_PROGRESS_DIR);
        std::fs::create_dir_all(&in_progress)
            .map_err(|e| naming(e, "cannot create the directory", &in_progress))?;
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{random}.log.gz"));
        let partial = in_progress.join(format!("{file_name}.partial"));
        let file = File::create(&partial).map_err(|e| naming(e, "cannot create", &partial))?;
        let gzip = Gzip::new(file, self.level).map_err(|e| naming(e, "cannot write", &partial))?;
        Ok(Interval {
            end,
            destination,
            path,
            partial,
            gzip,
        })
    }

    /// Delivers the open interval once its end has passed.
    pub fn deliver_if_due(&mut self, now: SystemTime) -> std::io::Result<()> {
        let now = unix_micros(now) / 1_000_000;
        if self.open.as_ref().is_some_and(|open| open.end <= now) {
            self.deliver()?;
        }
        Ok(())
    }

    /// Delivers the open interval now, whatever its end: ends its gzip
    /// stream and renames the file into place.
    pub fn deliver(&mut self) -> std::io::Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        open.gzip
            .finish()
            .map_err(|e| naming(e, "cannot write", &open.partial))?;
        std::fs::rename(&open.partial, &open.path)
            .map_err(|e| naming(e, "cannot rename into place", &open.path))?;
        tracing::debug!(path = %open.path.display(), "access log delivered");
        Ok(())
    }
}

/// An I/O error of an access log file, naming the path and the fix: "cannot
/// create the directory /x/access-logs/bucket/...: Not a directory (os error
/// 20); make --access-log-root a writable directory".
fn naming(error: std::io::Error, what: &str, path: &std::path::Path) -> std::io::Error {
    std::io::Error::new(
        error.kind(),
        format!(
            "{what} {}: {error}; make --access-log-root a writable directory (or pass another)",
            path.display()
        ),
    )
}

/// The line AWS would write for `entry` (without its line ending), appended
/// to `line` straight from the entry: the fields of `alb::access_log::FIELDS`
/// in order, written with the format's own writers (no formatting
/// machinery; the date and time of day come from `clock`, which formats them
/// once a second), so the bytes are [`alb::access_log::Record::render`]'s
/// (a unit test holds them equal).
pub(super) fn render_line(
    line: &mut Vec<u8>,
    entry: &Entry,
    target_group: Option<&str>,
    load_balancer_id: &str,
    clock: &mut access_log::TimeWriter,
) {
    use access_log::{write_address, write_duration, write_number, write_plain, write_quoted};
    let total = entry
        .completed_at
        .duration_since(entry.received_at)
        .unwrap_or_default();
    let (request_time, response_time) = match entry.target_time {
        Some(target) => (
            Some(std::time::Duration::ZERO),
            Some(total.saturating_sub(target)),
        ),
        None => (None, None),
    };
    let target = |line: &mut Vec<u8>| match entry.target {
        Some((ip, port)) => write_address(line, ip, port),
        None => line.push(b'-'),
    };
    let status = |line: &mut Vec<u8>| match entry.target_status {
        Some(status) => write_number(line, u64::from(status)),
        None => line.push(b'-'),
    };
    write_plain(line, entry.kind);
    line.push(b' ');
    clock.write(line, unix_micros(entry.completed_at));
    line.push(b' ');
    write_plain(line, load_balancer_id);
    line.push(b' ');
    write_address(line, entry.client.ip(), entry.client.port());
    line.push(b' ');
    let target_at = line.len();
    target(line);
    let target_text = target_at..line.len();
    line.push(b' ');
    write_duration(line, request_time);
    line.push(b' ');
    write_duration(line, entry.target_time);
    line.push(b' ');
    write_duration(line, response_time);
    line.push(b' ');
    write_number(line, u64::from(entry.elb_status));
    line.push(b' ');
    let status_at = line.len();
    status(line);
    let status_text = status_at..line.len();
    line.push(b' ');
    write_number(line, entry.received_bytes);
    line.push(b' ');
    write_number(line, entry.sent_bytes);
    line.push(b' ');
    write_quoted(line, entry.request());
    line.push(b' ');
    write_quoted(line, entry.user_agent().unwrap_or("-"));
    // ssl_cipher, ssl_protocol
    line.extend_from_slice(b" - - ");
    write_plain(line, target_group.unwrap_or("-"));
    line.push(b' ');
    write_quoted(line, entry.trace_id().unwrap_or("-"));
    // domain_name, chosen_cert_arn
    line.extend_from_slice(b" \"-\" \"-\" ");
    match entry.rule_priority {
        Some(priority) => write_number(line, u64::from(priority)),
        None => line.push(b'-'),
    }
    line.push(b' ');
    clock.write(line, unix_micros(entry.received_at));
    line.push(b' ');
    write_quoted(line, entry.action);
    // redirect_url
    line.extend_from_slice(b" \"-\" ");
    write_quoted(line, entry.error_reason.unwrap_or("-"));
    // target:port_list and target_status_code_list: the one target's.
    line.extend_from_slice(b" \"");
    line.extend_from_within(target_text);
    line.extend_from_slice(b"\" \"");
    line.extend_from_within(status_text);
    // classification, classification_reason, conn_trace_id,
    // transformed_host, transformed_uri, request_transform_status
    line.extend_from_slice(b"\" \"-\" \"-\" - \"-\" \"-\" \"-\"");
}

/// The record AWS would write for `entry`: the reference the direct
/// rendering is held to.
#[cfg(test)]
fn record_of(
    entry: &Entry,
    target_group: Option<&str>,
    destination: &Destination,
) -> access_log::Record {
    let mut record = access_log::Record::new();
    let total = entry
        .completed_at
        .duration_since(entry.received_at)
        .unwrap_or_default();
    let (request_time, target_time, response_time) = match entry.target_time {
        // A target answered: forwarding took no measurable time locally, the
        // rest after the head was relaying the response.
        Some(target) => (
            Some(std::time::Duration::ZERO),
            Some(target),
            Some(total.saturating_sub(target)),
        ),
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
            access_log::format_duration(request_time),
        )
        .set(
            "target_processing_time",
            access_log::format_duration(target_time),
        )
        .set(
            "response_processing_time",
            access_log::format_duration(response_time),
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
        .set("target_group_arn", target_group.unwrap_or("-"))
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

    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_root_that_cannot_be_written_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        // A file where a directory must be: refused even to root.
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, "").unwrap();
        let mut writer = Writer::new(Some(file.join("logs")), 1);
        writer.set_destination(Some(Destination {
            bucket: "my-logs".into(),
            prefix: String::new(),
            account: "000000000000".into(),
            region: "us-east-1".into(),
            load_balancer_id: "app/ficus-local/0123456789abcdef".into(),
        }));
        let destination = writer.destination.clone().unwrap();
        let error = writer.open_interval(300, destination).err().unwrap();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot create the directory {}",
                file.join("logs").join("my-logs").display()
            )),
            "{message}"
        );
        assert!(message.contains("--access-log-root"), "{message}");
    }

    #[test]
    fn intervals_are_aligned_to_the_clock() {
        use super::super::interval_end;
        let five_minutes = Duration::from_secs(300);
        // 23:37:10 is in 23:35–23:40.
        let at = 1_644_968_230;
        assert_eq!(interval_end(at, five_minutes), 1_644_968_400);
        assert_eq!(interval_end(1_644_968_400, five_minutes), 1_644_968_700);
        assert_eq!(interval_end(7, Duration::from_secs(1)), 8);
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
            client: "127.0.0.1:1".parse().unwrap(),
            request_len: request.len(),
            text,
            user_agent_at,
            trace_at,
            ..Entry::default()
        }
    }

    /// Gzip of stored blocks reads back as what was written, across the
    /// 64 KiB limit of a stored block and in several writes.
    #[test]
    fn stored_gzip_reads_back() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stored.gz");
        let text: String = (0..3_000)
            .map(|n| format!("line {n} of the stored gzip test\n"))
            .collect();
        let mut gzip = Gzip::new(File::create(&path).unwrap(), 0).unwrap();
        for part in [&text[..10], &text[10..], ""] {
            gzip.write_all(part.as_bytes()).unwrap();
        }
        gzip.finish().unwrap();
        let mut read = String::new();
        flate2::read::GzDecoder::new(File::open(&path).unwrap())
            .read_to_string(&mut read)
            .unwrap();
        assert!(text.len() > usize::from(u16::MAX));
        assert_eq!(read, text);
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
            target_status: Some(200),
            elb_status: 200,
            target_time: Some(Duration::from_micros(1_200)),
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
            target_status: None,
            elb_status: 502,
            target_time: None,
            action: "fixed-response",
            error_reason: Some("TargetConnectionError"),
            ..text("POST http://-:80/ HTTP/2.0", None, None)
        };
        let users = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/users/73e2d6bc24d8a067";
        let mut clock = access_log::TimeWriter::default();
        for (entry, group) in [(&forwarded, Some(users)), (&failed, None)] {
            let mut line = Vec::new();
            render_line(
                &mut line,
                entry,
                group,
                &destination.load_balancer_id,
                &mut clock,
            );
            assert_eq!(
                String::from_utf8(line).unwrap(),
                record_of(entry, group, &destination).render()
            );
        }
    }
}
