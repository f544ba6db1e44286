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

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::model::{Condition, QueryPair};

    #[test]
    fn ports_are_stripped_from_hosts() {
        let cases = [
            ("example.com", "example.com"),
            ("example.com:8080", "example.com"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
        ];
        for (host, expected) in cases {
            assert_eq!(strip_port(host), expected, "{host}");
        }
    }

    /// A request to match against: method, path?query, host, headers, source.
    struct Case {
        method: &'static str,
        target: &'static str,
        host: Option<&'static str>,
        headers: &'static [(&'static str, &'static str)],
        source: &'static str,
    }

    impl Case {
        fn get(target: &'static str) -> Case {
            Case {
                method: "GET",
                target,
                host: Some("forum.example.com"),
                headers: &[],
                source: "203.0.113.7",
            }
        }

        fn matches(&self, conditions: &[Condition]) -> bool {
            let mut headers = HeaderMap::new();
            for (name, value) in self.headers {
                headers.append(
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            let (path, query) = match self.target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (self.target, None),
            };
            let view = RequestView {
                method: self.method,
                path,
                query,
                host: self.host,
                headers: (&headers).into(),
                source_ip: self.source.parse().expect("test address"),
            };
            Conditions::compile(conditions).matches(&view)
        }
    }

    fn path(values: &[&str]) -> Condition {
        Condition::PathPattern {
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn query(pairs: &[(Option<&str>, &str)]) -> Condition {
        Condition::QueryString {
            values: pairs
                .iter()
                .map(|(key, value)| QueryPair {
                    key: key.map(str::to_owned),
                    value: value.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn conditions_match_requests() {
        let host = |values: &[&str]| Condition::HostHeader {
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let method = |values: &[&str]| Condition::HttpRequestMethod {
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let header = |name: &str, values: &[&str]| Condition::HttpHeader {
            name: name.to_owned(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let source = |values: &[&str]| Condition::SourceIp {
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let with_headers = |headers: &'static [(&'static str, &'static str)]| Case {
            headers,
            ..Case::get("/")
        };
        let cases: Vec<(&str, Vec<Condition>, Case, bool)> = vec![
            (
                "no conditions match everything",
                vec![],
                Case::get("/x"),
                true,
            ),
            (
                "path glob",
                vec![path(&["/api/users*"])],
                Case::get("/api/users/2"),
                true,
            ),
            (
                "path never sees the query",
                vec![path(&["*users*"])],
                Case::get("/api/posts?x=users"),
                false,
            ),
            (
                "path matches with a query",
                vec![path(&["/api/users"])],
                Case::get("/api/users?sort=1"),
                true,
            ),
            (
                "path is case-sensitive",
                vec![path(&["/api/users*"])],
                Case::get("/API/USERS"),
                false,
            ),
            (
                "path values are ORed",
                vec![path(&["/a*", "/api/posts*"])],
                Case::get("/api/posts"),
                true,
            ),
            (
                "host ignores case and port",
                vec![host(&["forum.example.com"])],
                Case {
                    host: Some("FORUM.Example.com:8080"),
                    ..Case::get("/")
                },
                true,
            ),
            (
                "host glob",
                vec![host(&["*.example.com"])],
                Case::get("/"),
                true,
            ),
            (
                "host mismatch",
                vec![host(&["other.example.com"])],
                Case::get("/"),
                false,
            ),
            (
                "missing host",
                vec![host(&["*"])],
                Case {
                    host: None,
                    ..Case::get("/")
                },
                false,
            ),
            (
                "method exact",
                vec![method(&["GET", "HEAD"])],
                Case::get("/"),
                true,
            ),
            (
                "method is case-sensitive",
                vec![method(&["get"])],
                Case::get("/"),
                false,
            ),
            (
                "method other",
                vec![method(&["POST"])],
                Case::get("/"),
                false,
            ),
            (
                "header name and value ignore case",
                vec![header("User-Agent", &["*mobile*"])],
                with_headers(&[("user-agent", "Some MOBILE Browser")]),
                true,
            ),
            (
                "header value mismatch",
                vec![header("user-agent", &["*mobile*"])],
                with_headers(&[("user-agent", "desktop")]),
                false,
            ),
            (
                "any repeated header value may match",
                vec![header("x-tag", &["b"])],
                with_headers(&[("x-tag", "a"), ("x-tag", "b")]),
                true,
            ),
            (
                "header absent",
                vec![header("x-canary", &["*"])],
                Case::get("/"),
                false,
            ),
            (
                "query key and value",
                vec![query(&[(Some("version"), "v2")])],
                Case::get("/api?version=v2"),
                true,
            ),
            (
                "query ignores case",
                vec![query(&[(Some("VERSION"), "V*")])],
                Case::get("/api?version=v2"),
                true,
            ),
            (
                "query value only",
                vec![query(&[(None, "beta")])],
                Case::get("/api?x=1&channel=beta"),
                true,
            ),
            (
                "query is decoded",
                vec![query(&[(Some("name"), "a b")])],
                Case::get("/api?name=a%20b"),
                true,
            ),
            (
                "query literal star",
                vec![query(&[(Some("q"), "\\*")])],
                Case::get("/api?q=*"),
                true,
            ),
            (
                "query escaped star is not a wildcard",
                vec![query(&[(Some("q"), "\\*")])],
                Case::get("/api?q=x"),
                false,
            ),
            (
                "query mismatch",
                vec![query(&[(Some("version"), "v2")])],
                Case::get("/api?version=v3"),
                false,
            ),
            (
                "no query",
                vec![query(&[(None, "*")])],
                Case::get("/api"),
                false,
            ),
            (
                "query pairs are ORed",
                vec![query(&[(Some("a"), "1"), (Some("b"), "2")])],
                Case::get("/?b=2"),
                true,
            ),
            (
                "source in block",
                vec![source(&["203.0.113.0/24"])],
                Case::get("/"),
                true,
            ),
            (
                "source outside block",
                vec![source(&["10.0.0.0/8"])],
                Case::get("/"),
                false,
            ),
            (
                "conditions are ANDed (both)",
                vec![path(&["/api*"]), method(&["GET"])],
                Case::get("/api/x"),
                true,
            ),
            (
                "conditions are ANDed (one fails)",
                vec![path(&["/api*"]), method(&["POST"])],
                Case::get("/api/x"),
                false,
            ),
        ];
        for (name, conditions, request, expected) in cases {
            assert_eq!(request.matches(&conditions), expected, "{name}");
        }
    }

    proptest::proptest! {
        /// The routing prefilter may let a path through that no value matches,
        /// but never stops one that a value matches.
        #[test]
        fn path_prefilter_never_rejects_a_matching_path(
            patterns in proptest::collection::vec("/?[ab*?/]{0,14}", 1..=5),
            text in "/[ab/]{0,20}",
        ) {
            let conditions = Conditions::compile(&[crate::model::Condition::PathPattern {
                values: patterns.clone(),
            }]);
            let prefilter = conditions.path_prefilter().expect("every path pattern has one");
            let headers = http::HeaderMap::new();
            let view = RequestView {
                method: "GET",
                path: &text,
                query: None,
                host: None,
                headers: (&headers).into(),
                source_ip: "127.0.0.1".parse().expect("test address"),
            };
            if conditions.matches(&view) {
                proptest::prop_assert!(
                    prefilter.may_match(&text),
                    "patterns {:?} match {:?} but the prefilter rejects it", patterns, text
                );
            }
        }
    }
}
