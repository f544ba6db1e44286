//! The head policy: what an ALB's load-balancer attributes decide about a
//! request head on its way in (idle timeout, client keep-alive, desync
//! mitigation, invalid header fields, `X-Forwarded-For`, `Host`), and the
//! limits AWS documents for every ALB (request line, single header, whole
//! head, `X-Forwarded-For` addresses).
//!
//! A [`HeadPolicy`] is plain `Copy` data carried by each compiled routing
//! table, so a connection reads it with the table it routes by (no lock, no
//! allocation). Its defaults are AWS's defaults; the process-wide settings
//! (`DataPlaneOptions::head`, from the `LOCAL_ALB_*` variables) fill it.
//!
//! The desync classification follows AWS's `http_desync_guardian` tiers
//! (compliant, acceptable, ambiguous, severe) for what can be seen after
//! `httparse` accepted the head; it is pure and table-tested below.
//! docs/data-plane.md ("Limits and status codes") cites each rule.

use std::time::Duration;

/// The longest request line AWS accepts (ALB quotas, "HTTP headers"); longer
/// gets 414.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// The longest single header line AWS accepts; longer gets 400.
pub const MAX_HEADER_LINE: usize = 16 * 1024;
/// The largest whole request head AWS accepts; larger gets 400.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// The most addresses an incoming `X-Forwarded-For` may list; more gets 463.
pub const MAX_FORWARDED_FOR: usize = 30;

// The attributes' values are the model's own types (one home): desync
// mitigation mode and X-Forwarded-For processing mode.
pub use crate::model::{DesyncMitigationMode as DesyncMode, XffHeaderProcessingMode as XffMode};

/// What the load balancer's attributes say about request heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadPolicy {
    /// `idle_timeout.timeout_seconds` (AWS: 60 s): a client connection with
    /// no byte for this long is closed; one in the middle of a request gets
    /// 408 first. Each byte restarts it.
    pub idle_timeout: Duration,
    /// `client_keep_alive.seconds` (AWS: 3600 s): a client connection is
    /// closed after its request in progress once it is this old.
    pub client_keep_alive: Duration,
    /// `routing.http.desync_mitigation_mode` (AWS: defensive).
    pub desync_mitigation: DesyncMode,
    /// `routing.http.drop_invalid_header_fields.enabled` (AWS: false):
    /// header names not matching `^[-A-Za-z0-9]+$` are dropped.
    pub drop_invalid_header_fields: bool,
    /// `routing.http.xff_header_processing.mode` (AWS: append).
    pub xff: XffMode,
    /// `routing.http.preserve_host_header.enabled` (AWS: false): when false,
    /// a `Host` without a port gets the listener's port unless it is 80.
    pub preserve_host_header: bool,
}

impl HeadPolicy {
    /// This policy (the process's defaults) under a load balancer's
    /// attributes. An attribute set through the ELBv2 API or the stack file
    /// wins, even when set to AWS's default; one never set keeps this
    /// policy's value (the process's `--client-idle-timeout`, or what a
    /// [`crate::DataPlane`]'s options say).
    pub fn with_attributes(self, attributes: &crate::model::LoadBalancerAttributes) -> HeadPolicy {
        let seconds = |s: u32| Duration::from_secs(u64::from(s));
        HeadPolicy {
            idle_timeout: attributes
                .idle_timeout_seconds
                .map_or(self.idle_timeout, seconds),
            client_keep_alive: attributes
                .client_keep_alive_seconds
                .map_or(self.client_keep_alive, seconds),
            desync_mitigation: attributes
                .desync_mitigation_mode
                .unwrap_or(self.desync_mitigation),
            drop_invalid_header_fields: attributes
                .drop_invalid_header_fields
                .unwrap_or(self.drop_invalid_header_fields),
            xff: attributes.xff_header_processing_mode.unwrap_or(self.xff),
            preserve_host_header: attributes
                .preserve_host_header
                .unwrap_or(self.preserve_host_header),
        }
    }
}

impl Default for HeadPolicy {
    fn default() -> Self {
        HeadPolicy {
            idle_timeout: Duration::from_secs(60),
            client_keep_alive: Duration::from_secs(3600),
            desync_mitigation: DesyncMode::Defensive,
            drop_invalid_header_fields: false,
            xff: XffMode::Append,
            preserve_host_header: false,
        }
    }
}

/// Which of AWS's head size limits a request passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// The request line is over [`MAX_REQUEST_LINE`] (414).
    RequestLine,
    /// A header line is over [`MAX_HEADER_LINE`] (400).
    HeaderLine,
    /// The head is over [`MAX_REQUEST_HEAD`] (400).
    Head,
}

/// Checks the size limits on a request head that is still arriving, each
/// byte looked at once however the head is split into reads. Every byte fed
/// belongs to the head (its end has not come yet).
#[derive(Debug, Default, Clone)]
pub struct HeadScan {
    /// Bytes of the head looked at so far.
    scanned: usize,
    /// Where the current line starts; `None` while in the request line.
    line_start: Option<usize>,
}

impl HeadScan {
    /// Looks at the bytes of `head` that arrived since the last call.
    pub fn check(&mut self, head: &[u8]) -> Result<(), OverLimit> {
        for at in self.scanned..head.len() {
            if head[at] != b'\n' {
                continue;
            }
            let start = self.line_start.unwrap_or(0);
            let over =
                match self.line_start {
                    None => (line_len(head, start, at) > MAX_REQUEST_LINE)
                        .then_some(OverLimit::RequestLine),
                    Some(_) => (line_len(head, start, at) > MAX_HEADER_LINE)
                        .then_some(OverLimit::HeaderLine),
                };
            if let Some(over) = over {
                return Err(over);
            }
            self.line_start = Some(at + 1);
        }
        self.scanned = head.len();
        let partial = line_len(head, self.line_start.unwrap_or(0), head.len());
        match self.line_start {
            None if partial > MAX_REQUEST_LINE => Err(OverLimit::RequestLine),
            Some(_) if partial > MAX_HEADER_LINE => Err(OverLimit::HeaderLine),
            _ if head.len() > MAX_REQUEST_HEAD => Err(OverLimit::Head),
            _ => Ok(()),
        }
    }
}

/// The length of the line `head[start..end]` without a `\r` at its end.
fn line_len(head: &[u8], start: usize, end: usize) -> usize {
    let len = end - start;
    if len > 0 && head[end - 1] == b'\r' {
        len - 1
    } else {
        len
    }
}

/// Checks the size limits on a whole parsed head of `head_len` bytes.
pub fn check_complete(
    head: &[u8],
    head_len: usize,
    headers: &[httparse::Header<'_>],
) -> Result<(), OverLimit> {
    if head_len > MAX_REQUEST_HEAD {
        return Err(OverLimit::Head);
    }
    let line_end = head[..head_len.min(MAX_REQUEST_LINE + 2)]
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(head_len);
    if line_len(head, 0, line_end) > MAX_REQUEST_LINE {
        return Err(OverLimit::RequestLine);
    }
    // `name: value`, the line without its ending.
    if headers
        .iter()
        .any(|header| header.name.len() + 2 + header.value.len() > MAX_HEADER_LINE)
    {
        return Err(OverLimit::HeaderLine);
    }
    Ok(())
}

/// `http_desync_guardian`'s tiers, from harmless to dangerous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Compliant,
    Acceptable,
    Ambiguous,
    Severe,
}

/// A request's tier and the reason, in `http_desync_guardian`'s words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub tier: Tier,
    pub reason: &'static str,
}

/// What the desync mitigation mode does with a request of some tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    /// Forwarded; then the client and target connections close.
    ForwardThenClose,
    /// Refused with 400; the connection closes.
    Refuse,
}

impl DesyncMode {
    /// AWS's mitigation table (ALB user guide, "Desync mitigation mode").
    pub fn verdict(self, tier: Tier) -> Verdict {
        match (self, tier) {
            (_, Tier::Compliant) | (DesyncMode::Monitor, _) => Verdict::Forward,
            (DesyncMode::Defensive, Tier::Acceptable) => Verdict::Forward,
            (DesyncMode::Defensive, Tier::Ambiguous) => Verdict::ForwardThenClose,
            (DesyncMode::Defensive, Tier::Severe) | (DesyncMode::Strictest, _) => Verdict::Refuse,
        }
    }
}

/// Whether `name` is a header name AWS considers valid (`^[-A-Za-z0-9]+$`).
pub fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `name` looks like `Transfer-Encoding` or `Content-Length` once
/// case, delimiters and odd characters are normalized away, without being it
/// (`http_desync_guardian`'s `SuspiciousHeader`).
fn suspicious_name(name: &str) -> bool {
    if name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("content-length")
    {
        return false;
    }
    let mut normalized = [0u8; 24];
    let mut len = 0;
    for byte in name.bytes().filter(u8::is_ascii_alphanumeric) {
        if len == normalized.len() {
            return false;
        }
        normalized[len] = byte.to_ascii_lowercase();
        len += 1;
    }
    matches!(&normalized[..len], b"transferencoding" | b"contentlength")
}

/// Classifies a request head that `httparse` accepted. `head` is its raw
/// bytes (for the line endings); httparse itself refuses most of what
/// `http_desync_guardian` calls severe (NUL or CR in a header, a bad version
/// or method), and `wire::request_facts` the framing that cannot be read.
pub fn classify(method: &str, head: &[u8], headers: &[httparse::Header<'_>]) -> Classification {
    let mut worst = Classification {
        tier: Tier::Compliant,
        reason: "Compliant",
    };
    let mut raise = |tier: Tier, reason: &'static str| {
        if tier > worst.tier {
            worst = Classification { tier, reason };
        }
    };
    let body_semantics_undefined = method == "GET" || method == "HEAD";
    let (mut lengths, mut first_length, mut chunked, mut codings) = (0, None, 0, 0);
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            let value = header.value.trim_ascii();
            match first_length {
                None => first_length = Some(value),
                Some(first) if first == value => raise(Tier::Ambiguous, "DuplicateContentLength"),
                Some(_) => raise(Tier::Severe, "MultipleContentLength"),
            }
            if body_semantics_undefined {
                if value == b"0" {
                    raise(Tier::Acceptable, "GetHeadZeroContentLength");
                } else {
                    raise(Tier::Ambiguous, "UndefinedContentLengthSemantics");
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings += 1;
            chunked += header
                .value
                .split(|b| *b == b',')
                .filter(|token| token.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                .count();
            if body_semantics_undefined {
                raise(Tier::Ambiguous, "UndefinedTransferEncodingSemantics");
            }
        } else if suspicious_name(name) {
            raise(Tier::Ambiguous, "SuspiciousHeader");
        } else if header.value.iter().any(|b| !b.is_ascii()) {
            raise(Tier::Acceptable, "NonCompliantHeader");
        }
    }
    if chunked > 1 {
        raise(Tier::Severe, "MultipleTransferEncodingChunked");
    }
    if lengths > 0 && codings > 0 {
        raise(Tier::Ambiguous, "BothTeClPresent");
    }
    let bare_line_feed = head
        .iter()
        .enumerate()
        .any(|(at, b)| *b == b'\n' && (at == 0 || head[at - 1] != b'\r'));
    if bare_line_feed {
        raise(Tier::Acceptable, "NonCrLfLineTermination");
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_head(head: &str) -> Classification {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        request
            .parse(head.as_bytes())
            .expect("a head httparse takes");
        classify(
            request.method.expect("method"),
            head.as_bytes(),
            request.headers,
        )
    }

    #[test]
    fn requests_are_classified_as_http_desync_guardian_does() {
        use Tier::*;
        let cases: [(&str, Tier, &str); 12] = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Compliant, "Compliant"),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
                Compliant,
                "Compliant",
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                Acceptable,
                "GetHeadZeroContentLength",
            ),
            (
                "GET / HTTP/1.1\nHost: a\n\n",
                Acceptable,
                "NonCrLfLineTermination",
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\u{e9}\r\n\r\n",
                Acceptable,
                "NonCompliantHeader",
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                Ambiguous,
                "UndefinedContentLengthSemantics",
            ),
            (
                "HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                Ambiguous,
                "UndefinedTransferEncodingSemantics",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                Ambiguous,
                "DuplicateContentLength",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Ambiguous,
                "BothTeClPresent",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n",
                Ambiguous,
                "SuspiciousHeader",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                Severe,
                "MultipleContentLength",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Severe,
                "MultipleTransferEncodingChunked",
            ),
        ];
        for (head, tier, reason) in cases {
            let got = classify_head(head);
            assert_eq!((got.tier, got.reason), (tier, reason), "{head:?}");
        }
    }

    #[test]
    fn each_mode_treats_each_tier_as_aws_documents() {
        use Tier::*;
        use Verdict::*;
        let table = [
            (DesyncMode::Monitor, [Forward, Forward, Forward, Forward]),
            (
                DesyncMode::Defensive,
                [Forward, Forward, ForwardThenClose, Refuse],
            ),
            (DesyncMode::Strictest, [Forward, Refuse, Refuse, Refuse]),
        ];
        for (mode, verdicts) in table {
            for (tier, verdict) in [Compliant, Acceptable, Ambiguous, Severe]
                .into_iter()
                .zip(verdicts)
            {
                assert_eq!(mode.verdict(tier), verdict, "{mode:?} {tier:?}");
            }
        }
    }

    #[test]
    fn head_limits_hold_however_the_head_arrives() {
        // A request line and a header line of `len` bytes, without their CRLF.
        let line = |len: usize| format!("GET /{} HTTP/1.1\r\n", "a".repeat(len - 14));
        let header = |len: usize| format!("X-A: {}\r\n", "b".repeat(len - 5));
        let cases: [(String, Result<(), OverLimit>); 6] = [
            (line(MAX_REQUEST_LINE), Ok(())),
            (line(MAX_REQUEST_LINE + 1), Err(OverLimit::RequestLine)),
            (
                "a".repeat(MAX_REQUEST_LINE + 1),
                Err(OverLimit::RequestLine),
            ),
            (line(100) + &header(MAX_HEADER_LINE), Ok(())),
            (
                line(100) + &header(MAX_HEADER_LINE + 1),
                Err(OverLimit::HeaderLine),
            ),
            (line(100) + &header(8000).repeat(9), Err(OverLimit::Head)),
        ];
        for (head, expected) in cases {
            for step in [1, 7, 4096, head.len()] {
                let mut scan = HeadScan::default();
                let mut result = Ok(());
                let mut end = 0;
                while end < head.len() && result.is_ok() {
                    end = (end + step).min(head.len());
                    result = scan.check(&head.as_bytes()[..end]);
                }
                assert_eq!(result, expected, "{} bytes in steps of {step}", head.len());
            }
        }
    }

    #[test]
    fn valid_header_names_are_letters_digits_and_hyphens() {
        for (name, valid) in [
            ("X-Forwarded-For", true),
            ("x1", true),
            ("X_Under", false),
            ("X.Dot", false),
            ("", false),
        ] {
            assert_eq!(is_valid_header_name(name), valid, "{name}");
        }
    }
}
