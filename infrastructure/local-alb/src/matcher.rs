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
//! The glob patterns, CIDR blocks and canonical client address are `alb`'s
//! (one home for ALB semantics, shared with `migrate`): `*` matches any run
//! of bytes (including `/`), `?` exactly one byte, and no pattern backtracks
//! exponentially.

use std::net::IpAddr;

use alb::cidr::Cidr;
use alb::glob::{Glob, QuickReject, Syntax};
use http::HeaderMap;

use crate::model::{Condition, QueryPair};

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
                CompiledCondition::PathPattern(globs(values, Syntax::CaseSensitive))
            }
            Condition::HostHeader { values } => {
                CompiledCondition::HostHeader(globs(values, Syntax::CaseInsensitive))
            }
            Condition::HttpRequestMethod { values } => {
                CompiledCondition::HttpRequestMethod(values.clone())
            }
            Condition::HttpHeader { name, values } => {
                match http::HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => CompiledCondition::HttpHeader {
                        name,
                        values: globs(values, Syntax::CaseInsensitive),
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
                                .map(|k| Glob::new(k, Syntax::CaseInsensitiveEscaped)),
                            Glob::new(value, Syntax::CaseInsensitiveEscaped),
                        )
                    })
                    .collect(),
            ),
            Condition::SourceIp { values } => CompiledCondition::SourceIp(
                values.iter().filter_map(|v| Cidr::parse(v).ok()).collect(),
            ),
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
                blocks.iter().any(|b| b.contains_address(request.source_ip))
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
                let mut values = [QuickReject::REJECT_ALL; 5];
                for (slot, glob) in values.iter_mut().zip(globs) {
                    *slot = glob.quick_reject()?;
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
