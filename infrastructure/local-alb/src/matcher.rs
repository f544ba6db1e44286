//! Listener rule conditions, compiled once per published configuration and
//! evaluated per request. Pure code: no I/O, no clocks, no allocation on the
//! matching path except where a query string has to be percent-decoded.
//!
//! Semantics follow the ALB documentation:
//! - `path-pattern`: case-sensitive glob over the path only (never the query).
//! - `host-header`: case-insensitive glob over the Host header, port stripped.
//! - `http-request-method`: exact, case-sensitive.
//! - `http-header`: header name case-insensitive, value case-insensitive glob;
//!   any of the header's values may match.
//! - `query-string`: case-insensitive key and value globs over the decoded
//!   query parameters; `\*` and `\?` match a literal `*` or `?`.
//! - `source-ip`: CIDR blocks (IPv4 or IPv6) matched against the client address.
//!
//! Globs: `*` matches any run of bytes (including `/`), `?` exactly one byte.
//! Matching is by segments between stars (anchored first and last segments,
//! leftmost search for the middle ones), so no pattern backtracks
//! exponentially.

use std::net::IpAddr;

use http::HeaderMap;

use crate::model::{Condition, QueryPair};

/// One compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// Literal segments split at `*`. A pattern without `*` has one segment.
    segments: Vec<Segment>,
    case_insensitive: bool,
    /// A word-sized test that rejects most texts before the segments are
    /// compared (case-sensitive patterns with a star).
    quick: Option<QuickReject>,
}

/// Up to 8 bytes the text must start with and up to 8 it must end with,
/// compared as masked little-endian words (`?` positions masked out), and
/// its least length. A listener with a hundred rules evaluates this about
/// twice per rule for each request, so it is kept branch-light.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuickReject {
    min_len: usize,
    head: u64,
    head_mask: u64,
    tail: u64,
    tail_mask: u64,
}

impl QuickReject {
    /// For a pattern of one segment, `first` and `last` are the same.
    fn new(first: &Segment, last: &Segment, single: bool) -> QuickReject {
        let word = |segment: &Segment, from_end: bool| {
            let take = segment.len().min(8);
            let start = if from_end { segment.len() - take } else { 0 };
            let (mut value, mut mask) = ([0u8; 8], [0u8; 8]);
            // Right-aligned for the tail, so it lines up with the text's end.
            let offset = if from_end { 8 - take } else { 0 };
            for index in 0..take {
                let position = start + index;
                let wildcard = segment.any.get(position).copied().unwrap_or(false);
                if !wildcard {
                    value[offset + index] = segment.bytes[position];
                    mask[offset + index] = 0xff;
                }
            }
            (u64::from_le_bytes(value), u64::from_le_bytes(mask))
        };
        let (head, head_mask) = word(first, false);
        let (tail, tail_mask) = word(last, true);
        QuickReject {
            min_len: if single {
                first.len()
            } else {
                first.len() + last.len()
            },
            head,
            head_mask,
            tail,
            tail_mask,
        }
    }

    #[inline]
    fn may_match(&self, text: &[u8]) -> bool {
        if text.len() < self.min_len {
            return false;
        }
        let (mut head, mut tail) = ([0u8; 8], [0u8; 8]);
        let take = text.len().min(8);
        head[..take].copy_from_slice(&text[..take]);
        tail[8 - take..].copy_from_slice(&text[text.len() - take..]);
        u64::from_le_bytes(head) & self.head_mask == self.head
            && u64::from_le_bytes(tail) & self.tail_mask == self.tail
    }
}

/// A run of a pattern between stars: bytes to compare, with `?` positions
/// (any byte) marked. Most segments have no `?` and compare as one slice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Segment {
    /// The bytes (lowercased when case-insensitive); `?` positions hold 0.
    bytes: Vec<u8>,
    /// `any[i]` is true where the pattern has `?`; empty when it has none.
    any: Vec<bool>,
}

impl Segment {
    fn push(&mut self, byte: Option<u8>) {
        match byte {
            Some(byte) => {
                self.bytes.push(byte);
                if !self.any.is_empty() {
                    self.any.push(false);
                }
            }
            None => {
                if self.any.is_empty() {
                    self.any = vec![false; self.bytes.len()];
                }
                self.bytes.push(0);
                self.any.push(true);
            }
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// How a glob pattern is written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobSyntax {
    /// Case-sensitive; `*` and `?` are always wildcards (path patterns).
    CaseSensitive,
    /// Case-insensitive; `*` and `?` are always wildcards (hosts, headers).
    CaseInsensitive,
    /// Case-insensitive; a backslash escapes the next character
    /// (query-string keys and values).
    CaseInsensitiveEscaped,
}

impl Glob {
    pub fn new(pattern: &str, syntax: GlobSyntax) -> Glob {
        let case_insensitive = syntax != GlobSyntax::CaseSensitive;
        let escapes = syntax == GlobSyntax::CaseInsensitiveEscaped;
        let mut segments = vec![Segment::default()];
        let mut bytes = pattern.bytes();
        while let Some(b) = bytes.next() {
            let current = segments.last_mut().expect("segments is never empty");
            match b {
                b'*' => segments.push(Segment::default()),
                b'?' => current.push(None),
                b'\\' if escapes => match bytes.next() {
                    Some(escaped) => current.push(Some(fold(escaped, case_insensitive))),
                    None => current.push(Some(b'\\')),
                },
                _ => current.push(Some(fold(b, case_insensitive))),
            }
        }
        let quick = (!case_insensitive).then(|| {
            QuickReject::new(
                &segments[0],
                &segments[segments.len() - 1],
                segments.len() == 1,
            )
        });
        Glob {
            segments,
            case_insensitive,
            quick,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        self.matches_bytes(text.as_bytes())
    }

    pub fn matches_bytes(&self, text: &[u8]) -> bool {
        let first = &self.segments[0];
        if self.segments.len() == 1 {
            return text.len() == first.len() && self.segment_at(first, text, 0);
        }
        if let Some(quick) = &self.quick
            && !quick.may_match(text)
        {
            return false;
        }
        let last = &self.segments[self.segments.len() - 1];
        if text.len() < first.len() + last.len()
            || !self.segment_at(first, text, 0)
            || !self.segment_at(last, text, text.len() - last.len())
        {
            return false;
        }
        let mut position = first.len();
        let end = text.len() - last.len();
        for segment in &self.segments[1..self.segments.len() - 1] {
            match self.find(segment, &text[..end], position) {
                Some(found) => position = found + segment.len(),
                None => return false,
            }
        }
        true
    }

    /// Whether `segment` matches `text` at byte offset `at`.
    fn segment_at(&self, segment: &Segment, text: &[u8], at: usize) -> bool {
        let Some(window) = text.get(at..at + segment.len()) else {
            return false;
        };
        match (segment.any.is_empty(), self.case_insensitive) {
            (true, false) => window == segment.bytes.as_slice(),
            (true, true) => window.eq_ignore_ascii_case(&segment.bytes),
            (false, _) => segment
                .bytes
                .iter()
                .zip(&segment.any)
                .zip(window)
                .all(|((want, any), &got)| *any || *want == fold(got, self.case_insensitive)),
        }
    }

    /// The leftmost offset at or after `from` where `segment` matches.
    fn find(&self, segment: &Segment, text: &[u8], from: usize) -> Option<usize> {
        if segment.len() == 0 {
            return Some(from);
        }
        let last_start = text.len().checked_sub(segment.len())?;
        (from..=last_start).find(|&at| self.segment_at(segment, text, at))
    }
}

fn fold(b: u8, case_insensitive: bool) -> u8 {
    if case_insensitive {
        b.to_ascii_lowercase()
    } else {
        b
    }
}

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix` (a bare address means a single host).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                prefix_equal(&network.octets(), &address.octets(), self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                prefix_equal(&network.octets(), &address.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn prefix_equal(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// The parts of a request that rule conditions look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The raw query string without `?`, if any.
    pub query: Option<&'a str>,
    /// The host name as the client sent it (Host header or HTTP/2 authority),
    /// possibly with a port.
    pub host: Option<&'a str>,
    pub headers: RequestHeaders<'a>,
    pub source_ip: IpAddr,
}

/// A request's headers: hyper's map (HTTP/2) or the parsed lines of an
/// HTTP/1.x head.
#[derive(Debug, Clone, Copy)]
pub enum RequestHeaders<'a> {
    Map(&'a HeaderMap),
    Lines(&'a [httparse::Header<'a>]),
}

impl<'a> From<&'a HeaderMap> for RequestHeaders<'a> {
    fn from(map: &'a HeaderMap) -> Self {
        RequestHeaders::Map(map)
    }
}

impl RequestHeaders<'_> {
    /// Whether any value of the header `name` (lowercase) satisfies `test`.
    pub fn any_value(&self, name: &str, test: impl Fn(&[u8]) -> bool) -> bool {
        match self {
            RequestHeaders::Map(map) => map.get_all(name).iter().any(|v| test(v.as_bytes())),
            RequestHeaders::Lines(lines) => lines
                .iter()
                .any(|line| line.name.eq_ignore_ascii_case(name) && test(line.value.trim_ascii())),
        }
    }
}

/// The host name without a trailing `:port` (IPv6 literals keep brackets).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// One compiled rule condition.
#[derive(Debug, Clone)]
pub enum CompiledCondition {
    PathPattern(Vec<Glob>),
    HostHeader(Vec<Glob>),
    HttpRequestMethod(Vec<String>),
    HttpHeader {
        name: http::HeaderName,
        values: Vec<Glob>,
    },
    QueryString(Vec<(Option<Glob>, Glob)>),
    /// An unparsable CIDR compiles to nothing, so it never matches.
    SourceIp(Vec<Cidr>),
    /// A condition that can never match (for example an invalid header name).
    Never,
}

impl CompiledCondition {
    pub fn compile(condition: &Condition) -> CompiledCondition {
        let globs =
            |values: &[String], syntax| values.iter().map(|v| Glob::new(v, syntax)).collect();
        match condition {
            Condition::PathPattern { values } => {
                CompiledCondition::PathPattern(globs(values, GlobSyntax::CaseSensitive))
            }
            Condition::HostHeader { values } => {
                CompiledCondition::HostHeader(globs(values, GlobSyntax::CaseInsensitive))
            }
            Condition::HttpRequestMethod { values } => {
                CompiledCondition::HttpRequestMethod(values.clone())
            }
            Condition::HttpHeader { name, values } => {
                match http::HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => CompiledCondition::HttpHeader {
                        name,
                        values: globs(values, GlobSyntax::CaseInsensitive),
                    },
                    Err(_) => CompiledCondition::Never,
                }
            }
            Condition::QueryString { values } => CompiledCondition::QueryString(
                values
                    .iter()
                    .map(|QueryPair { key, value }| {
                        (
                            key.as_deref()
                                .map(|k| Glob::new(k, GlobSyntax::CaseInsensitiveEscaped)),
                            Glob::new(value, GlobSyntax::CaseInsensitiveEscaped),
                        )
                    })
                    .collect(),
            ),
            Condition::SourceIp { values } => {
                CompiledCondition::SourceIp(values.iter().filter_map(|v| Cidr::parse(v)).collect())
            }
        }
    }

    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        match self {
            CompiledCondition::PathPattern(globs) => globs.iter().any(|g| g.matches(request.path)),
            CompiledCondition::HostHeader(globs) => match request.host {
                Some(host) => {
                    let host = strip_port(host);
                    globs.iter().any(|g| g.matches(host))
                }
                None => false,
            },
            CompiledCondition::HttpRequestMethod(methods) => {
                methods.iter().any(|m| m == request.method)
            }
            CompiledCondition::HttpHeader { name, values } => {
                request.headers.any_value(name.as_str(), |value| {
                    values.iter().any(|g| g.matches_bytes(value))
                })
            }
            CompiledCondition::QueryString(pairs) => match request.query {
                Some(query) => form_urlencoded::parse(query.as_bytes()).any(|(key, value)| {
                    pairs.iter().any(|(key_glob, value_glob)| {
                        key_glob.as_ref().is_none_or(|g| g.matches(&key))
                            && value_glob.matches(&value)
                    })
                }),
                None => false,
            },
            CompiledCondition::SourceIp(blocks) => {
                blocks.iter().any(|b| b.contains(request.source_ip))
            }
            CompiledCondition::Never => false,
        }
    }
}

/// A word-sized test of a path against every value of a rule's
/// `path-pattern` condition: when it fails, the rule cannot match. Routing
/// runs these from one contiguous array before evaluating any rule, so a
/// listener with many rules costs a few nanoseconds per rule.
#[derive(Debug, Clone, Copy)]
pub struct PathPrefilter {
    values: [QuickReject; 5],
    count: usize,
}

impl PathPrefilter {
    #[inline]
    pub fn may_match(&self, path: &str) -> bool {
        let path = path.as_bytes();
        self.values[..self.count]
            .iter()
            .any(|quick| quick.may_match(path))
    }
}

/// All conditions of one rule, ANDed. No conditions match every request.
#[derive(Debug, Clone, Default)]
pub struct Conditions(Vec<CompiledCondition>);

impl Conditions {
    pub fn compile(conditions: &[Condition]) -> Conditions {
        Conditions(conditions.iter().map(CompiledCondition::compile).collect())
    }

    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        self.0.iter().all(|c| c.matches(request))
    }

    /// The prefilter of the rule's `path-pattern` condition, if it has one
    /// with at most five values.
    pub fn path_prefilter(&self) -> Option<PathPrefilter> {
        self.0.iter().find_map(|condition| match condition {
            CompiledCondition::PathPattern(globs) if (1..=5).contains(&globs.len()) => {
                let none = QuickReject {
                    min_len: usize::MAX,
                    head: 0,
                    head_mask: 0,
                    tail: 0,
                    tail_mask: 0,
                };
                let mut values = [none; 5];
                for (slot, glob) in values.iter_mut().zip(globs) {
                    *slot = glob.quick?;
                }
                Some(PathPrefilter {
                    values,
                    count: globs.len(),
                })
            }
            _ => None,
        })
    }
}
