//! Rule conditions, health-check matchers, redirects and trace ids: pure
//! functions checked against tables of cases.

use http::{HeaderMap, HeaderValue};
use local_alb::dataplane::{RedirectSource, RedirectTemplate, redirect_location, trace_header};
use local_alb::health::{HealthState, HealthTracker, ProbeOutcome, SuccessCodes};
use local_alb::matcher::{Conditions, RequestView, strip_port};
use local_alb::model::{Condition, QueryPair};

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

#[test]
fn success_code_matchers_parse_aws_syntax() {
    let cases: &[(&str, &[(u16, bool)])] = &[
        ("200", &[(200, true), (201, false), (404, false)]),
        ("200,202", &[(200, true), (201, false), (202, true)]),
        (
            "200-299",
            &[
                (199, false),
                (200, true),
                (250, true),
                (299, true),
                (300, false),
            ],
        ),
        ("200-204,404", &[(204, true), (205, false), (404, true)]),
    ];
    for (matcher, statuses) in cases {
        let codes = SuccessCodes::parse(matcher).unwrap_or_else(|| panic!("{matcher} parses"));
        for (status, expected) in *statuses {
            assert_eq!(
                codes.contains(*status),
                *expected,
                "{matcher} contains {status}"
            );
        }
    }
    for invalid in ["", "abc", "299-200", "200-", "100", "600", "200,,202"] {
        assert_eq!(
            SuccessCodes::parse(invalid),
            None,
            "{invalid:?} should not parse"
        );
    }
}

#[test]
fn health_tracker_follows_thresholds_and_reasons() {
    let mut tracker = HealthTracker::default();
    assert_eq!(tracker.state, HealthState::Initial);
    assert_eq!(tracker.reason, Some("Elb.RegistrationInProgress"));

    tracker.record(ProbeOutcome::Success, 2, 3);
    assert_eq!(
        tracker.state,
        HealthState::Initial,
        "one success is not enough"
    );
    tracker.record(ProbeOutcome::Success, 2, 3);
    assert_eq!(
        (tracker.state, tracker.reason),
        (HealthState::Healthy, None)
    );

    tracker.record(ProbeOutcome::Timeout, 2, 3);
    tracker.record(ProbeOutcome::Timeout, 2, 3);
    assert_eq!(tracker.state, HealthState::Healthy, "two of three failures");
    tracker.record(ProbeOutcome::Success, 2, 3);
    tracker.record(ProbeOutcome::Timeout, 2, 3);
    tracker.record(ProbeOutcome::Timeout, 2, 3);
    assert_eq!(
        tracker.state,
        HealthState::Healthy,
        "a success resets the count"
    );
    tracker.record(ProbeOutcome::Timeout, 2, 3);
    assert_eq!(
        (tracker.state, tracker.reason),
        (HealthState::Unhealthy, Some("Target.Timeout"))
    );
    tracker.record(ProbeOutcome::ResponseCodeMismatch(503), 2, 3);
    assert_eq!(tracker.reason, Some("Target.ResponseCodeMismatch"));
    assert_eq!(
        tracker.description.as_deref(),
        Some("Health checks failed with these codes: [503]")
    );
    tracker.record(ProbeOutcome::ConnectionFailed, 2, 3);
    assert_eq!(tracker.reason, Some("Target.FailedHealthChecks"));

    tracker.drain();
    tracker.record(ProbeOutcome::Success, 1, 1);
    assert_eq!(
        (tracker.state, tracker.reason),
        (
            HealthState::Draining,
            Some("Target.DeregistrationInProgress")
        )
    );
}

fn template(protocol: &str, host: &str, port: &str, path: &str, query: &str) -> RedirectTemplate {
    RedirectTemplate {
        protocol: protocol.to_owned(),
        host: host.to_owned(),
        port: port.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        permanent: true,
    }
}

#[test]
fn redirect_locations_fill_placeholders() {
    let defaults = || template("#{protocol}", "#{host}", "#{port}", "/#{path}", "#{query}");
    let cases: Vec<(RedirectTemplate, u16, &str, Option<&str>, &str)> = vec![
        (
            defaults(),
            80,
            "/api/users",
            Some("a=1"),
            "http://forum.test/api/users?a=1",
        ),
        (defaults(), 8080, "/x", None, "http://forum.test:8080/x"),
        (
            template("HTTPS", "#{host}", "443", "/#{path}", "#{query}"),
            80,
            "/login",
            None,
            "https://forum.test/login",
        ),
        (
            template(
                "HTTPS",
                "new.example.com",
                "8443",
                "/v2/#{path}",
                "from=#{host}",
            ),
            80,
            "/a/b",
            Some("z=9"),
            "https://new.example.com:8443/v2/a/b?from=forum.test",
        ),
        (
            template("#{protocol}", "#{host}", "#{port}", "moved", ""),
            80,
            "/old",
            Some("q=1"),
            "http://forum.test/moved",
        ),
    ];
    for (template, port, path, query, expected) in cases {
        let source = RedirectSource {
            host: "forum.test",
            listener_port: port,
            path,
            query,
        };
        assert_eq!(redirect_location(&template, &source), expected);
    }
}

#[test]
fn trace_ids_are_minted_or_extended() {
    let fresh = trace_header(None);
    let fresh = fresh.to_str().expect("ascii");
    let id = fresh.strip_prefix("Root=1-").expect("Root=1-…");
    let (seconds, random) = id.split_once('-').expect("two parts");
    assert_eq!(seconds.len(), 8);
    assert_eq!(random.len(), 24);
    assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let stamped = u64::from_str_radix(seconds, 16).expect("hex");
    assert!(
        now.abs_diff(stamped) < 5,
        "epoch seconds {stamped} vs {now}"
    );
    assert_ne!(trace_header(None), trace_header(None), "ids are random");

    let client =
        HeaderValue::from_static("Root=1-67891233-abcdef012345678912345678;CalledFrom=app");
    let forwarded = trace_header(Some(&client));
    let forwarded = forwarded.to_str().expect("ascii");
    let (self_field, rest) = forwarded.split_once(';').expect("Self first");
    assert!(self_field.starts_with("Self=1-"), "{forwarded}");
    assert_eq!(
        rest,
        "Root=1-67891233-abcdef012345678912345678;CalledFrom=app"
    );

    let without_root = HeaderValue::from_static("CalledFrom=app");
    let forwarded = trace_header(Some(&without_root));
    let forwarded = forwarded.to_str().expect("ascii");
    assert!(forwarded.starts_with("Root=1-"), "{forwarded}");
    assert!(forwarded.ends_with(";CalledFrom=app"), "{forwarded}");
}

proptest::proptest! {
    /// The routing prefilter may let a path through that no value matches,
    /// but never stops one that a value matches.
    #[test]
    fn path_prefilter_never_rejects_a_matching_path(
        patterns in proptest::collection::vec("/?[ab*?/]{0,14}", 1..=5),
        text in "/[ab/]{0,20}",
    ) {
        let conditions = Conditions::compile(&[local_alb::model::Condition::PathPattern {
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
