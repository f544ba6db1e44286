//! The HTTP/1.1 wire format of the data plane: reading request and response
//! heads (with `httparse`), deciding how a message's body is framed
//! (RFC 9112 §6), scanning chunked bodies, and writing the heads the load
//! balancer sends on. No I/O (`http1` does the reading and writing); the one
//! outside input is the clock, read for the `Date` header of generated
//! responses.
//!
//! Heads are copied byte for byte except for what a proxy must change:
//! hop-by-hop headers (RFC 9110 §7.6.1, and any named in `Connection`) are
//! dropped, the `X-Forwarded-*` and `X-Amzn-Trace-Id` headers are set, and
//! the `Connection` header says what this hop does.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alb::headers::is_hop_by_hop;

use super::policy::{XffMode, is_valid_header_name};
use http::{HeaderMap, StatusCode};

/// Header lines parsed in place on the stack; a head with more is parsed
/// again with room for every line (no header-count limit, as on AWS: only
/// the sizes in [`super::policy`] bound a head).
pub const MAX_HEADERS: usize = 100;

/// How a message's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}

/// Why a request cannot be handled; the client gets the status and the
/// connection closes. docs/data-plane.md cites AWS for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400: the message is not valid HTTP/1.x or its framing is ambiguous.
    Malformed(&'static str),
    /// 400: a header line over 16 KiB, or a head over 64 KiB.
    HeadTooLarge,
    /// 414: a request line over 16 KiB.
    RequestLineTooLong,
    /// 405: TRACE, which the load balancer never forwards.
    TraceNotAllowed,
    /// 408: the client stopped in the middle of a request for the idle timeout.
    TimedOut,
    /// 463: more than 30 addresses in `X-Forwarded-For`.
    TooManyForwardedFor,
    /// 400: refused by the desync mitigation mode (the classification reason).
    Desync(&'static str),
    /// 501: a transfer coding other than chunked.
    UnsupportedTransferCoding,
}

impl Rejection {
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::Malformed(_) | Rejection::HeadTooLarge | Rejection::Desync(_) => {
                StatusCode::BAD_REQUEST
            }
            Rejection::RequestLineTooLong => StatusCode::URI_TOO_LONG,
            Rejection::TraceNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::TimedOut => StatusCode::REQUEST_TIMEOUT,
            Rejection::TooManyForwardedFor => {
                StatusCode::from_u16(463).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Rejection::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|token| token.trim_ascii())
}

/// What the `Connection` header lines of a head say.
struct ConnectionOptions<'l, 'h> {
    close: bool,
    keep_alive: bool,
    /// Whether some line names other headers (which are then hop-by-hop).
    names_others: bool,
    headers: &'l [httparse::Header<'h>],
}

impl<'l, 'h> ConnectionOptions<'l, 'h> {
    fn of(headers: &'l [httparse::Header<'h>]) -> ConnectionOptions<'l, 'h> {
        let mut options = ConnectionOptions {
            close: false,
            keep_alive: false,
            names_others: false,
            headers,
        };
        for header in headers {
            if !header.name.eq_ignore_ascii_case("connection") {
                continue;
            }
            for token in tokens(header.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    options.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    options.keep_alive = true;
                } else if !token.is_empty() {
                    options.names_others = true;
                }
            }
        }
        options
    }

    /// Whether `name` is listed in `Connection` (so is hop-by-hop).
    fn lists(&self, name: &str) -> bool {
        self.names_others
            && self
                .headers
                .iter()
                .filter(|header| header.name.eq_ignore_ascii_case("connection"))
                .any(|header| {
                    tokens(header.value).any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
                })
    }
}

/// A `Content-Length` value: digits only, every line the same.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<u64>, ()> {
    let mut length = None;
    for header in headers {
        if !header.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let value = header.value.trim_ascii();
        if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let parsed = value
            .iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
        match length {
            Some(previous) if previous != parsed => return Err(()),
            _ => length = Some(parsed),
        }
    }
    Ok(length)
}

/// Whether the last transfer coding is `chunked`; `None` without a
/// `Transfer-Encoding` header.
fn chunked_last(headers: &[httparse::Header<'_>]) -> Option<bool> {
    let mut last = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            last = tokens(header.value)
                .filter(|token| !token.is_empty())
                .last()
                .map(|token| token.eq_ignore_ascii_case(b"chunked"))
                .or(Some(false));
        }
    }
    last
}

/// What the data plane needs to know about a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts<'b> {
    pub method: &'b str,
    /// The path without the query string (`*` for `OPTIONS *`).
    pub path: &'b str,
    /// The query string without `?`.
    pub query: Option<&'b str>,
    /// The origin-form target sent to the target (path and query; from an
    /// absolute-form URL without a path, just `?query`, written after `/`).
    pub target: &'b str,
    /// The authority of an absolute-form target (`GET http://host/ HTTP/1.1`).
    pub authority: Option<&'b str>,
    /// The absolute-form authority, else the `Host` header (RFC 9112 §3.2.2:
    /// the request target's host wins).
    pub host: Option<&'b str>,
    pub http10: bool,
    /// Whether the client keeps the connection open after this exchange.
    pub keep_alive: bool,
    pub framing: Framing,
    /// `Expect: 100-continue` (HTTP/1.1 only).
    pub expect_continue: bool,
}

impl RequestFacts<'_> {
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether the method is idempotent (RFC 9110 §9.2.2), so a request lost
    /// on a keep-alive connection the target had just closed may be sent again.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }
}

/// Reads the facts of a parsed request head.
pub fn request_facts<'b>(
    request: &httparse::Request<'_, 'b>,
) -> Result<RequestFacts<'b>, Rejection> {
    let (Some(method), Some(raw_target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(Rejection::Malformed("incomplete request line"));
    };
    let (authority, target) = split_target(raw_target)?;
    let (path, query) = match target.split_once('?') {
        Some(("", query)) => ("/", Some(query)),
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let headers: &[httparse::Header<'b>] = request.headers;
    let mut host = None;
    let mut expect_continue = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(Rejection::Malformed("more than one Host header"));
            }
            host = Some(
                std::str::from_utf8(header.value.trim_ascii())
                    .map_err(|_| Rejection::Malformed("a Host header that is not text"))?,
            );
        } else if header.name.eq_ignore_ascii_case("expect") && version == 1 {
            expect_continue = header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue");
        }
    }
    let length =
        content_length(headers).map_err(|()| Rejection::Malformed("an invalid Content-Length"))?;
    let framing = match (chunked_last(headers), length) {
        (Some(_), _) if version == 0 => {
            return Err(Rejection::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        // With both, Transfer-Encoding wins and Content-Length is dropped
        // (RFC 9112 §6.3); the desync mitigation mode decides whether such a
        // request goes on at all (`policy::classify`: BothTeClPresent).
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) => return Err(Rejection::UnsupportedTransferCoding),
        (None, Some(0) | None) => Framing::Empty,
        (None, Some(length)) => Framing::Length(length),
    };
    let connection = ConnectionOptions::of(headers);
    let http10 = version == 0;
    let keep_alive = !connection.close && (!http10 || connection.keep_alive);
    Ok(RequestFacts {
        method,
        path,
        query,
        target,
        authority,
        host: authority.or(host),
        http10,
        keep_alive,
        framing,
        expect_continue,
    })
}

/// Splits a request target into the absolute form's authority and the
/// origin-form target.
fn split_target(raw: &str) -> Result<(Option<&str>, &str), Rejection> {
    if raw.starts_with('/') || raw == "*" {
        return Ok((None, raw));
    }
    let scheme_end = raw.find("://").ok_or(Rejection::Malformed(
        "a request target that is not a path or a URL",
    ))?;
    let scheme = &raw[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Rejection::Malformed(
            "a request target URL that is not http",
        ));
    }
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(authority_end);
    // Credentials (`user:secret@host`) are never a host to pass on.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.is_empty() {
        return Err(Rejection::Malformed("a request target URL without a host"));
    }
    // `http://host` and `http://host?q` have an empty path: `/` is implied
    // (RFC 9112 §3.2.1); a target starting with `?` is written after it.
    Ok((
        Some(authority),
        if target.is_empty() { "/" } else { target },
    ))
}

/// The parts of the forwarded request the load balancer adds, and what its
/// head policy says about the client's own headers.
pub struct Forwarding<'a> {
    pub listener_port: u16,
    pub client_ip: IpAddr,
    /// The whole `X-Amzn-Trace-Id` value to send.
    pub trace: &'a [u8],
    /// The `Host` sent for a request that had none (HTTP/1.0): the load
    /// balancer's DNS name.
    pub default_host: &'a str,
    pub xff: XffMode,
    /// Leave out header lines whose names are not `^[-A-Za-z0-9]+$`.
    pub drop_invalid_header_fields: bool,
    /// Send `Host` as it came; else a `Host` without a port gets the
    /// listener's port (unless that is 80).
    pub preserve_host_header: bool,
}

/// How many addresses the `X-Forwarded-For` lines of a head list.
pub fn forwarded_for_count(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|header| tokens(header.value).filter(|t| !t.is_empty()).count())
        .sum()
}

/// Writes the request head sent to a target: the origin-form request line in
/// HTTP/1.1, the client's headers less the hop-by-hop ones, then `Host` (from
/// an absolute-form URL, which replaces the client's `Host`; the load
/// balancer's name when there was none), `Transfer-Encoding` for a chunked
/// body, and the `X-Forwarded-*` and `X-Amzn-Trace-Id` headers, as the head
/// policy in `forwarding` says.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    facts: &RequestFacts<'_>,
    headers: &[httparse::Header<'_>],
    forwarding: &Forwarding<'_>,
) {
    out.extend_from_slice(facts.method.as_bytes());
    out.push(b' ');
    if facts.target.starts_with('?') {
        out.push(b'/');
    }
    out.extend_from_slice(facts.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let connection = ConnectionOptions::of(headers);
    let mut forwarded_for = false;
    let mut declared_length = false;
    for header in headers {
        let name = header.name;
        if forwarding.drop_invalid_header_fields && !is_valid_header_name(name) {
            continue;
        }
        // The framing comes from `facts`, never from what `Connection`
        // lists: a body sent by its length under a dropped Content-Length
        // would reach the target as a request of its own.
        if name.eq_ignore_ascii_case("content-length") {
            declared_length = true;
            continue;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // The chunked body goes on as it came, so its codings do too.
            if facts.framing == Framing::Chunked {
                write_header(out, name.as_bytes(), header.value.trim_ascii());
            }
            continue;
        }
        let is_host = name.eq_ignore_ascii_case("host");
        if !is_host && (is_hop_by_hop(name) || connection.lists(name)) {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for = true;
            continue;
        }
        if is_host && facts.authority.is_none() {
            write_host(out, name.as_bytes(), header.value.trim_ascii(), forwarding);
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-port")
            || is_host
            || name.eq_ignore_ascii_case("x-amzn-trace-id")
            || (facts.expect_continue && name.eq_ignore_ascii_case("expect"))
        {
            continue;
        }
        write_header(out, name.as_bytes(), header.value.trim_ascii());
    }
    match (facts.authority, facts.host) {
        (Some(authority), _) => write_host(out, b"host", authority.as_bytes(), forwarding),
        (None, None) => write_header(out, b"host", forwarding.default_host.as_bytes()),
        (None, Some(_)) => {}
    }
    match facts.framing {
        Framing::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Empty if declared_length => out.extend_from_slice(b"content-length: 0\r\n"),
        _ => {}
    }
    write_forwarded_for(out, headers, forwarded_for, forwarding);
    out.extend_from_slice(b"x-forwarded-proto: http\r\nx-forwarded-port: ");
    out.extend_from_slice(
        itoa::Buffer::new()
            .format(forwarding.listener_port)
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    write_header(out, b"x-amzn-trace-id", forwarding.trace);
    out.extend_from_slice(b"\r\n");
}

/// Writes `Host`: as it came, or with the listener's port added when it has
/// none and the policy does not preserve it.
fn write_host(out: &mut Vec<u8>, name: &[u8], value: &[u8], forwarding: &Forwarding<'_>) {
    write_header(out, name, value);
    let has_port = value
        .rsplit(|b| *b == b':')
        .next()
        .is_some_and(|tail| tail.len() < value.len() && !tail.contains(&b']'));
    if !forwarding.preserve_host_header && !has_port && forwarding.listener_port != 80 {
        // Turn the `\r\n` just written into `:port\r\n`.
        out.truncate(out.len() - 2);
        out.push(b':');
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(forwarding.listener_port)
                .as_bytes(),
        );
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes `X-Forwarded-For` as the policy's mode says: the client's values
/// in order and then the client (append), the client's lines as they came
/// (preserve), or nothing (remove).
fn write_forwarded_for(
    out: &mut Vec<u8>,
    headers: &[httparse::Header<'_>],
    present: bool,
    forwarding: &Forwarding<'_>,
) {
    let incoming = headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("x-forwarded-for"));
    match forwarding.xff {
        XffMode::Remove => {}
        XffMode::Preserve => {
            for header in incoming {
                write_header(out, b"x-forwarded-for", header.value.trim_ascii());
            }
        }
        XffMode::Append => {
            out.extend_from_slice(b"x-forwarded-for: ");
            if present {
                for header in incoming {
                    out.extend_from_slice(header.value.trim_ascii());
                    out.extend_from_slice(b", ");
                }
            }
            let _ = write!(out, "{}", forwarding.client_ip);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The client's `X-Amzn-Trace-Id` value, if it sent a readable one.
pub fn incoming_trace<'b>(headers: &[httparse::Header<'b>]) -> Option<&'b str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-amzn-trace-id"))
        .and_then(|h| std::str::from_utf8(h.value.trim_ascii()).ok())
}

fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the data plane needs to know about a target's response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFacts {
    pub status: u16,
    pub framing: Framing,
    /// Whether the target keeps the connection open after this response.
    pub reusable: bool,
}

/// Reads the facts of a parsed (final, non-1xx) response head to a request
/// that was `HEAD` or not.
pub fn response_facts(
    response: &httparse::Response<'_, '_>,
    head_request: bool,
) -> Result<ResponseFacts, &'static str> {
    let (Some(status), Some(version)) = (response.code, response.version) else {
        return Err("an incomplete status line");
    };
    let headers = &*response.headers;
    let connection = ConnectionOptions::of(headers);
    let mut reusable = !connection.close && (version == 1 || connection.keep_alive);
    let framing = if head_request || status == 204 || status == 304 || status < 200 {
        Framing::Empty
    } else {
        match chunked_last(headers) {
            Some(true) => {
                // Content-Length next to chunked is a smuggling smell: do not
                // reuse the connection (RFC 9112 §6.3).
                if content_length(headers).ok().flatten().is_some() {
                    reusable = false;
                }
                Framing::Chunked
            }
            Some(false) => Framing::UntilClose,
            None => match content_length(headers) {
                Ok(Some(length)) => Framing::Length(length),
                Ok(None) => Framing::UntilClose,
                Err(()) => return Err("an invalid Content-Length"),
            },
        }
    };
    if framing == Framing::UntilClose {
        reusable = false;
    }
    Ok(ResponseFacts {
        status,
        framing,
        reusable,
    })
}

/// How the response is framed towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// The target's framing (`Content-Length`, chunked, or none) as is.
    AsIs,
    /// A chunked body decoded for an HTTP/1.0 client; the connection closes
    /// after it.
    Dechunked,
    /// A body delimited by closing the connection.
    UntilClose,
}

impl ClientFraming {
    pub fn for_response(framing: Framing, client_http10: bool) -> ClientFraming {
        match framing {
            Framing::Chunked if client_http10 => ClientFraming::Dechunked,
            Framing::UntilClose => ClientFraming::UntilClose,
            _ => ClientFraming::AsIs,
        }
    }

    /// Whether the client connection must close after the response.
    pub fn closes(self) -> bool {
        self != ClientFraming::AsIs
    }
}

/// Writes the response head sent to the client: the target's status and
/// headers less the hop-by-hop ones (`Transfer-Encoding` stays when the
/// chunked body is passed on as is), a `Date` when the target sent none, and
/// `Connection` as this hop needs it.
pub fn write_client_head(
    out: &mut Vec<u8>,
    response: &httparse::Response<'_, '_>,
    facts: &ResponseFacts,
    framing: ClientFraming,
    head_request: bool,
    close: bool,
    client_http10: bool,
) {
    let status = response.code.unwrap_or(502);
    write_status_line(out, status, response.reason.unwrap_or(""));
    let headers = &*response.headers;
    let connection = ConnectionOptions::of(headers);
    let chunked = facts.framing == Framing::Chunked;
    // The body goes on as the target framed it (HEAD: as it would have), so
    // the framing headers do too, whatever `Connection` lists. A chunked
    // body's Content-Length is dropped (RFC 9112 §6.3), and a decoded one
    // has neither.
    let keep_length = !chunked && framing != ClientFraming::Dechunked;
    let keep_codings = !client_http10
        && framing != ClientFraming::Dechunked
        && (chunked || facts.framing == Framing::UntilClose || head_request);
    let mut has_date = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            if keep_length {
                write_header(out, name.as_bytes(), header.value.trim_ascii());
            }
            continue;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if keep_codings {
                write_header(out, name.as_bytes(), header.value.trim_ascii());
            }
            continue;
        }
        if is_hop_by_hop(name) || connection.lists(name) {
            continue;
        }
        has_date |= name.eq_ignore_ascii_case("date");
        write_header(out, name.as_bytes(), header.value.trim_ascii());
    }
    if !has_date {
        write_date(out);
    }
    write_connection(out, close, client_http10);
    out.extend_from_slice(b"\r\n");
}

fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    let reason = if reason.is_empty() {
        StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    } else {
        reason
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_connection(out: &mut Vec<u8>, close: bool, client_http10: bool) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client_http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}

/// The client a generated response goes to, and what happens after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    /// The request was HEAD: the body is left out.
    pub head_request: bool,
    /// The connection closes after this response (`connection: close`).
    pub close: bool,
    /// The client spoke HTTP/1.0 (keep-alive must be said).
    pub http10: bool,
}

/// Writes a whole response generated by the load balancer (an error page, a
/// fixed response, a redirect) for the client `to`.
pub fn write_generated(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    to: ReplyTo,
) {
    write_status_line(out, status.as_u16(), "");
    for (name, value) in headers {
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    // These statuses have no body, whatever a fixed response says
    // (RFC 9110 §6.4.1).
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    write_date(out);
    write_connection(out, to.close, to.http10);
    out.extend_from_slice(b"\r\n");
    if !to.head_request && !bodiless {
        out.extend_from_slice(body);
    }
}

thread_local! {
    /// `date: <IMF-fixdate>\r\n` and the second it was made for.
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

/// Writes `date: <now>\r\n`, formatted once a second per thread.
fn write_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second {
            date.1.clear();
            date.1.extend_from_slice(b"date: ");
            date.1.extend_from_slice(
                httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second)).as_bytes(),
            );
            date.1.extend_from_slice(b"\r\n");
            date.0 = second;
        }
        out.extend_from_slice(&date.1);
    });
}

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// Finds where a chunked body ends, fed the bytes as they arrive (RFC 9112
/// §7.1). The bytes pass through unchanged; the chunk data can be read out
/// on the way (to decode the body for an HTTP/1.0 client).
#[derive(Debug, Clone, Default)]
pub struct ChunkedScanner {
    state: ChunkState,
    /// Bytes left in the current chunk (while reading its size: the size).
    remaining: u64,
    digits: u8,
    /// Bytes of chunk extensions and trailers so far (bounded).
    overhead: usize,
}

/// The most chunk-extension and trailer bytes one body may carry.
const MAX_CHUNK_OVERHEAD: usize = 64 * 1024;

impl ChunkedScanner {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Scans `input` and returns how many of its bytes belong to the body
    /// (all of them, unless the body ends inside `input`). `data` gets each
    /// run of chunk data.
    pub fn scan(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < input.len() {
            if self.state == ChunkState::Done {
                return Ok(at);
            }
            if self.state == ChunkState::Data {
                let take =
                    (input.len() - at).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                data(&input[at..at + take]);
                at += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let byte = input[at];
            at += 1;
            self.state = match (self.state, byte) {
                (ChunkState::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    if self.digits == 15 {
                        return Err(ChunkError("a chunk size that is too large"));
                    }
                    let digit = (byte as char).to_digit(16).unwrap_or(0);
                    self.remaining = self.remaining * 16 + u64::from(digit);
                    self.digits += 1;
                    ChunkState::Size
                }
                (ChunkState::Size, b';' | b' ' | b'\t') if self.digits > 0 => ChunkState::Extension,
                (ChunkState::Size, b'\r') if self.digits > 0 => ChunkState::SizeLf,
                (ChunkState::Size, _) => return Err(ChunkError("an invalid chunk size")),
                (ChunkState::Extension, b'\r') => ChunkState::SizeLf,
                (ChunkState::Extension, b'\n') => {
                    return Err(ChunkError("a chunk size line without CR"));
                }
                (ChunkState::Extension, _) => {
                    self.count_overhead()?;
                    ChunkState::Extension
                }
                (ChunkState::SizeLf, b'\n') => {
                    self.digits = 0;
                    if self.remaining == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    }
                }
                (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                (ChunkState::DataLf, b'\n') => ChunkState::Size,
                (ChunkState::TrailerStart, b'\r') => ChunkState::FinalLf,
                (ChunkState::TrailerStart | ChunkState::Trailer, b'\n') => {
                    return Err(ChunkError("a trailer line without CR"));
                }
                (ChunkState::Trailer, b'\r') => ChunkState::TrailerLf,
                (ChunkState::TrailerStart | ChunkState::Trailer, _) => {
                    self.count_overhead()?;
                    ChunkState::Trailer
                }
                (ChunkState::TrailerLf, b'\n') => ChunkState::TrailerStart,
                (ChunkState::FinalLf, b'\n') => ChunkState::Done,
                (ChunkState::SizeLf | ChunkState::DataCr | ChunkState::DataLf, _)
                | (ChunkState::TrailerLf | ChunkState::FinalLf, _) => {
                    return Err(ChunkError("a missing CRLF in a chunked body"));
                }
                (ChunkState::Data | ChunkState::Done, _) => unreachable!("handled above"),
            };
        }
        Ok(at)
    }

    fn count_overhead(&mut self) -> Result<(), ChunkError> {
        self.overhead += 1;
        if self.overhead > MAX_CHUNK_OVERHEAD {
            return Err(ChunkError(
                "chunk extensions or trailers that are too large",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_request(head: &str) -> Result<RequestFacts<'_>, Rejection> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head.as_bytes()) {
            Ok(httparse::Status::Complete(_)) => {}
            other => panic!("{head:?} did not parse: {other:?}"),
        }
        // The facts only borrow the buffer, not the header array.
        let facts = request_facts(&request)?;
        Ok(facts)
    }

    #[test]
    fn request_framing_and_keep_alive() {
        struct Case {
            head: &'static str,
            framing: Result<Framing, Rejection>,
            keep_alive: bool,
        }
        let cases = [
            Case {
                head: "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                framing: Ok(Framing::Empty),
                keep_alive: true,
            },
            Case {
                head: "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
                framing: Ok(Framing::Empty),
                keep_alive: false,
            },
            Case {
                head: "GET / HTTP/1.0\r\n\r\n",
                framing: Ok(Framing::Empty),
                keep_alive: false,
            },
            Case {
                head: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                framing: Ok(Framing::Empty),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n",
                framing: Ok(Framing::Length(12)),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                framing: Ok(Framing::Empty),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                framing: Ok(Framing::Length(3)),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                framing: Err(Rejection::Malformed("an invalid Content-Length")),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
                framing: Err(Rejection::Malformed("an invalid Content-Length")),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                framing: Ok(Framing::Chunked),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                framing: Err(Rejection::UnsupportedTransferCoding),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                framing: Ok(Framing::Chunked),
                keep_alive: true,
            },
            Case {
                head: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                framing: Err(Rejection::Malformed(
                    "Transfer-Encoding in an HTTP/1.0 request",
                )),
                keep_alive: false,
            },
            Case {
                head: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                framing: Err(Rejection::Malformed("more than one Host header")),
                keep_alive: true,
            },
        ];
        for case in cases {
            let facts = parse_request(case.head);
            assert_eq!(
                facts.as_ref().map(|f| f.framing).map_err(|e| *e),
                case.framing,
                "{:?}",
                case.head
            );
            if let Ok(facts) = facts {
                assert_eq!(facts.keep_alive, case.keep_alive, "{:?}", case.head);
            }
        }
    }

    #[test]
    fn request_targets() {
        let cases = [
            ("/a/b?x=1&y", Some(("/a/b", Some("x=1&y"), None))),
            ("/", Some(("/", None, None))),
            ("*", Some(("*", None, None))),
            (
                "http://h.example:8080/p?q",
                Some(("/p", Some("q"), Some("h.example:8080"))),
            ),
            ("HTTP://h.example", Some(("/", None, Some("h.example")))),
            (
                "http://h.example?q=1",
                Some(("/", Some("q=1"), Some("h.example"))),
            ),
            (
                "http://user:secret@h.example/p",
                Some(("/p", None, Some("h.example"))),
            ),
            ("ftp://h.example/", None),
            ("http:///path", None),
            ("relative", None),
        ];
        for (target, expected) in cases {
            let head = format!("OPTIONS {target} HTTP/1.1\r\n\r\n");
            let facts = parse_request(&head);
            match (facts, expected) {
                (Ok(facts), Some((path, query, authority))) => {
                    assert_eq!(
                        (facts.path, facts.query, facts.authority),
                        (path, query, authority),
                        "{target}"
                    );
                    assert_eq!(facts.host, authority, "{target}");
                }
                (Err(Rejection::Malformed(_)), None) => {}
                (other, expected) => panic!("{target}: {other:?}, expected {expected:?}"),
            }
        }
    }

    fn upstream_head(head: &str) -> String {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(head.as_bytes()).unwrap().is_complete());
        let facts = request_facts(&request).unwrap();
        let mut out = Vec::new();
        write_upstream_head(
            &mut out,
            &facts,
            request.headers,
            &Forwarding {
                listener_port: 80,
                client_ip: "10.0.0.9".parse().unwrap(),
                trace: b"Root=1-00000000-000000000000000000000000",
                default_host: "test.elb.localhost",
                xff: XffMode::Append,
                drop_invalid_header_fields: false,
                preserve_host_header: false,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forwarded_heads_drop_hop_by_hop_headers_and_add_the_forwarding_ones() {
        assert_eq!(
            upstream_head(
                "GET http://api.example/x?y=1 HTTP/1.0\r\nHost: other\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
                 X-Forwarded-For: 1.2.3.4\r\nX-Keep:  v \r\nTE: trailers\r\nX-Forwarded-For: 5.6.7.8\r\n\
                 X-Amzn-Trace-Id: Root=old\r\nX-Forwarded-Proto: https\r\n\r\n"
            ),
            "GET /x?y=1 HTTP/1.1\r\nX-Keep: v\r\nhost: api.example\r\n\
             x-forwarded-for: 1.2.3.4, 5.6.7.8, 10.0.0.9\r\nx-forwarded-proto: http\r\n\
             x-forwarded-port: 80\r\nx-amzn-trace-id: Root=1-00000000-000000000000000000000000\r\n\r\n"
        );
        assert_eq!(
            upstream_head(
                "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
            ),
            "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
             x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\n\
             x-forwarded-port: 80\r\nx-amzn-trace-id: Root=1-00000000-000000000000000000000000\r\n\r\n"
        );
    }

    #[test]
    fn connection_cannot_drop_the_headers_that_frame_a_forwarded_request() {
        let head = upstream_head(
            "POST /form HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, Host\r\n\
             Content-Length: 5\r\n\r\n",
        );
        assert!(head.contains("\r\nHost: h\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
        let head = upstream_head("POST /empty HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
        let head = upstream_head("GET /q HTTP/1.1\r\n\r\n");
        assert!(!head.contains("content-length"), "{head}");
        let head = upstream_head("GET http://h?x=1 HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("GET /?x=1 HTTP/1.1\r\n"), "{head}");
    }

    fn response(head: &str, head_request: bool) -> Result<ResponseFacts, &'static str> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        assert!(parsed.parse(head.as_bytes()).unwrap().is_complete());
        response_facts(&parsed, head_request)
    }

    #[test]
    fn response_framing_and_reuse() {
        type Case = (&'static str, bool, Result<(Framing, bool), &'static str>);
        let cases: [Case; 9] = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Ok((Framing::Length(5), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                Ok((Framing::Empty, true)),
            ),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Ok((Framing::Empty, true)),
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Ok((Framing::Empty, true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Ok((Framing::Chunked, true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false,
                Ok((Framing::Chunked, false)),
            ),
            (
                "HTTP/1.1 200 OK\r\n\r\n",
                false,
                Ok((Framing::UntilClose, false)),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                Ok((Framing::Length(1), false)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                false,
                Err("an invalid Content-Length"),
            ),
        ];
        for (head, head_request, expected) in cases {
            assert_eq!(
                response(head, head_request).map(|f| (f.framing, f.reusable)),
                expected,
                "{head:?}"
            );
        }
    }

    #[test]
    fn client_heads_keep_end_to_end_headers_and_say_what_this_hop_does() {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n\
                    Keep-Alive: timeout=5\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        assert!(parsed.parse(head.as_bytes()).unwrap().is_complete());
        let mut out = Vec::new();
        let chunked = ResponseFacts {
            status: 200,
            framing: Framing::Chunked,
            reusable: true,
        };
        write_client_head(
            &mut out,
            &parsed,
            &chunked,
            ClientFraming::AsIs,
            false,
            false,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
        let mut out = Vec::new();
        write_client_head(
            &mut out,
            &parsed,
            &chunked,
            ClientFraming::Dechunked,
            false,
            true,
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
             connection: close\r\n\r\n"
        );
    }

    #[test]
    fn chunked_bodies_are_delimited_and_decoded_in_any_split() {
        let body =
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - "NEXT".len();
        for split in 0..body.len() {
            let mut scanner = ChunkedScanner::default();
            let mut decoded = Vec::new();
            let first = scanner
                .scan(&body[..split], |d| decoded.extend_from_slice(d))
                .unwrap();
            assert_eq!(first, split.min(end));
            let second = scanner
                .scan(&body[split..], |d| decoded.extend_from_slice(d))
                .unwrap();
            assert_eq!(first + second, end, "split at {split}");
            assert!(scanner.is_done());
            assert_eq!(decoded, b"Wikipedia in \r\n\r\nchunks.");
        }
        for bad in [
            &b"x\r\n"[..],
            b"4\nWiki",
            b"4\r\nWikiX",
            b"\r\n",
            b"1000000000000000\r\n",
            b"0\r\nTrailer\n",
        ] {
            let mut scanner = ChunkedScanner::default();
            assert!(scanner.scan(bad, |_| {}).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_responses_carry_length_and_date() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::SERVER,
            http::HeaderValue::from_static("awselb/2.0"),
        );
        let mut out = Vec::new();
        write_generated(
            &mut out,
            StatusCode::SERVICE_UNAVAILABLE,
            &headers,
            b"down",
            ReplyTo {
                head_request: false,
                close: false,
                http10: false,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\nserver: awselb/2.0\r\ncontent-length: 4\r\ndate: "), "{text}");
        assert!(text.ends_with(" GMT\r\n\r\ndown"), "{text}");
        let mut out = Vec::new();
        write_generated(
            &mut out,
            StatusCode::OK,
            &headers,
            b"down",
            ReplyTo {
                head_request: true,
                close: true,
                http10: false,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
    }

    /// A chunked body of `chunks` (each with an optional extension), with
    /// optional trailer lines.
    fn chunked(chunks: &[(Vec<u8>, bool)], trailers: &[String]) -> Vec<u8> {
        let mut body = Vec::new();
        for (data, extension) in chunks.iter().filter(|(data, _)| !data.is_empty()) {
            body.extend_from_slice(format!("{:x}", data.len()).as_bytes());
            if *extension {
                body.extend_from_slice(b";name=value");
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        for trailer in trailers {
            body.extend_from_slice(trailer.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body
    }

    proptest::proptest! {
        /// However a chunked body (and the next message after it) is split
        /// into reads, the scanner ends the body at the same byte and passes
        /// on the same chunk data as when it sees it whole.
        #[test]
        fn the_chunked_scanner_ends_the_body_at_the_same_byte_under_any_split(
            chunks in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), proptest::prelude::any::<bool>()),
                0..5,
            ),
            trailers in proptest::collection::vec("X-[a-z]{1,5}: [a-z0-9]{0,8}", 0..3),
            cuts in proptest::collection::vec(0usize..400, 0..10),
        ) {
            let body = chunked(&chunks, &trailers);
            let data: Vec<u8> = chunks.iter().flat_map(|(d, _)| d.clone()).collect();
            let next = b"GET /next HTTP/1.1\r\n\r\n";
            let input = [body.as_slice(), next].concat();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
            cuts.extend([0, input.len()]);
            cuts.sort_unstable();
            cuts.dedup();

            let mut scanner = ChunkedScanner::default();
            let mut seen = Vec::new();
            let mut consumed = 0;
            for piece in cuts.windows(2).map(|w| &input[w[0]..w[1]]) {
                let taken = scanner
                    .scan(piece, |run| seen.extend_from_slice(run))
                    .expect("a well-formed body");
                consumed += taken;
                if taken < piece.len() || scanner.is_done() {
                    break;
                }
            }
            proptest::prop_assert!(scanner.is_done());
            proptest::prop_assert_eq!(consumed, body.len());
            proptest::prop_assert_eq!(seen, data);
        }
    }
}
