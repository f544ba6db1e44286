//! Where requests come from: templates, corpus files, ALB access logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use parity::{
    RequestSet, VerifySpec, matches_path_pattern, parse_alb_log_line, split_alb_log_fields,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn spec(text: &str) -> VerifySpec {
    toml::from_str(text).expect("valid verify spec")
}

fn shown(set: &RequestSet) -> Vec<String> {
    set.requests
        .iter()
        .map(|request| format!("{request} <{}>", request.template))
        .collect()
}

#[test]
fn templates_expand_over_ranges_strings_and_integers() {
    let spec = spec(
        r#"
        requests = ["/api/users", "HEAD /api/users/{id}/", "/api/{kind}/{id}"]
        values.id = ["1..=2", "%2B2", 7]
        values.kind = ["users", "USERS"]
        "#,
    );
    let requests: Vec<String> = spec
        .template_requests()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        requests,
        [
            "GET /api/users",
            "HEAD /api/users/1/",
            "HEAD /api/users/2/",
            "HEAD /api/users/%2B2/",
            "HEAD /api/users/7/",
            "GET /api/users/1",
            "GET /api/users/2",
            "GET /api/users/%2B2",
            "GET /api/users/7",
            "GET /api/USERS/1",
            "GET /api/USERS/2",
            "GET /api/USERS/%2B2",
            "GET /api/USERS/7",
        ]
    );
    assert_eq!(
        spec.templates().unwrap(),
        [
            "GET /api/users",
            "HEAD /api/users/{id}/",
            "GET /api/{kind}/{id}"
        ]
    );
}

#[test]
fn template_mistakes_are_errors_that_say_how_to_fix_them() {
    let error = spec(r#"requests = ["/api/users/{id}"]"#)
        .template_requests()
        .unwrap_err();
    assert!(
        error.to_string().contains("there is no values.id"),
        "{error}"
    );
    let error = spec(r#"requests = ["/api/users/{id"]"#)
        .template_requests()
        .unwrap_err();
    assert!(error.to_string().contains("without '}'"), "{error}");
    let error = spec(r#"requests = ["api/users"]"#)
        .template_requests()
        .unwrap_err();
    assert!(error.to_string().contains("must start with '/'"), "{error}");
    let error = spec("requests = [\"/a/{id}\"]\nvalues.id = [\"5..=1\"]")
        .template_requests()
        .unwrap_err();
    assert!(error.to_string().contains("must go upwards"), "{error}");
    let error = toml::from_str::<VerifySpec>("request = []").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `request`"),
        "{error}"
    );
}

#[test]
fn a_corpus_file_gives_one_request_per_line_with_comments() {
    let spec = spec(&format!(
        "requests = [\"/api/users/{{id}}\"]\nvalues.id = [1]\ncorpus = [{:?}]",
        "users.requests"
    ));
    let set = spec.request_set(&fixture("")).unwrap();
    assert_eq!(
        shown(&set),
        [
            "GET /api/users/1 <GET /api/users/{id}>",
            "HEAD /api/users/2 <HEAD /api/users/{n}>",
            "GET /api/users/3?fields=all <GET /api/users/{id}>",
            "OPTIONS /api/users <OPTIONS /api/users>",
            "GET /api/threads/1 <GET /api/threads/{n}>",
        ]
    );
    // GET /api/users/1 is in both the templates and the corpus.
    assert_eq!(set.duplicates, 1);
    assert_eq!(set.sources[1].requests, 5);
}

#[test]
fn a_corpus_line_that_is_not_a_request_names_file_and_line() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "# fine\nGET /ok\nGET /a b").unwrap();
    let error = RequestSet::new()
        .add_corpus(file.path(), &[], None)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:3: \"GET /a b\" is not a request; write one request as \"METHOD /path\" or \"/path\"",
            file.path().display()
        )
    );
    let error = RequestSet::new()
        .add_corpus(Path::new("/no/such/corpus"), &[], None)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot read /no/such/corpus: "),
        "{error}"
    );
}

#[test]
fn quoted_alb_fields_keep_spaces_and_escaped_quotes() {
    let fields =
        split_alb_log_fields(r#"http t "GET / HTTP/1.1" "agent \"x\" y" - "a\\b""#).unwrap();
    assert_eq!(
        fields,
        ["http", "t", "GET / HTTP/1.1", "agent \"x\" y", "-", "a\\b"]
    );
    assert!(split_alb_log_fields(r#"http "unterminated"#).is_err());
}

const USERS_PATTERNS: &[&str] = &["/api/users*"];

fn alb_log_set(path: &Path, allow_unsafe: bool) -> RequestSet {
    let patterns: Vec<String> = USERS_PATTERNS
        .iter()
        .map(|pattern| (*pattern).to_owned())
        .collect();
    let mut set = RequestSet::new();
    set.add_alb_log(
        path,
        &["GET /api/users/{id}".to_owned()],
        &patterns,
        allow_unsafe,
    )
    .unwrap();
    set
}

fn skipped_counts(set: &RequestSet) -> Vec<(String, usize)> {
    set.sources[0]
        .skipped
        .iter()
        .map(|(reason, skipped)| (reason.clone(), skipped.count))
        .collect()
}

#[test]
fn the_alb_log_fixture_replays_safe_requests_of_the_route_and_counts_the_rest() {
    let set = alb_log_set(&fixture("alb-access.log"), false);
    assert_eq!(
        shown(&set),
        [
            "GET /api/users/1 <GET /api/users/{id}>",
            "HEAD /api/users/2 <HEAD /api/users/{n}>",
            "GET /api/users/3?utm_source=mail <GET /api/users/{id}>",
            "GET /api/users/4 <GET /api/users/{id}>",
            "GET /api/users <GET /api/users>",
        ]
    );
    assert_eq!(
        skipped_counts(&set),
        [
            ("POST is not replayed without --allow-unsafe".to_owned(), 1),
            (
                "no request recorded (the ALB could not parse it)".to_owned(),
                1
            ),
            (
                "not an ALB access log line (unknown connection type)".to_owned(),
                1
            ),
            ("path outside the route's patterns".to_owned(), 1),
            ("too few fields for an ALB access log line".to_owned(), 1),
        ]
    );
    let skipped = &set.sources[0].skipped["path outside the route's patterns"];
    assert!(
        skipped.examples[0].contains("alb-access.log:8: http 2026-11-20T09:00:07.000001Z "),
        "{skipped:?}"
    );
    let line = std::fs::read_to_string(fixture("alb-access.log"))
        .unwrap()
        .lines()
        .nth(7)
        .unwrap()
        .to_owned();
    assert_eq!(
        skipped.examples[0],
        format!("{}:8: {line}", fixture("alb-access.log").display()),
        "lines up to parity::SKIPPED_LINE_CHARS are shown whole"
    );
}

#[test]
fn unsafe_methods_are_replayed_only_when_allowed() {
    let set = alb_log_set(&fixture("alb-access.log"), true);
    assert!(shown(&set).contains(&"POST /api/users <POST /api/users>".to_owned()));
    assert_eq!(set.requests.len(), 6);
}

#[test]
fn a_gzip_log_is_recognised_by_its_magic_bytes() {
    let plain = std::fs::read(fixture("alb-access.log")).unwrap();
    let compressed = tempfile::NamedTempFile::new().unwrap();
    let mut encoder =
        flate2::write::GzEncoder::new(compressed.reopen().unwrap(), flate2::Compression::fast());
    encoder.write_all(&plain).unwrap();
    encoder.finish().unwrap();
    let from_gzip = alb_log_set(compressed.path(), false);
    let from_plain = alb_log_set(&fixture("alb-access.log"), false);
    assert_eq!(from_gzip.requests, from_plain.requests);
    assert_eq!(skipped_counts(&from_gzip), skipped_counts(&from_plain));
}

/// A log is read line by line from any reader (an S3 object's body, say), so
/// that memory holds the distinct requests, not the file: a generated log of
/// 20,000 lines over 50 distinct requests, 11 of them the route's, gives those
/// 11, every other line of the route counted as a duplicate, and the lines'
/// numbers stay right.
#[test]
fn a_log_streams_from_any_reader_and_keeps_only_distinct_requests() {
    struct Generated {
        next: usize,
        lines: usize,
        pending: Vec<u8>,
    }
    impl std::io::Read for Generated {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.pending.is_empty() && self.next < self.lines {
                let index = self.next;
                self.next += 1;
                self.pending = format!(
                    "http 2026-12-03T10:00:00.{index:06}Z app/a/b 203.0.113.1:4000 10.0.0.1:80 0.000 0.001 0.000 200 200 1 2 \
                     \"GET http://lb:80/api/users/{} HTTP/1.1\" \"curl\" - - arn \"Root=1\" \"-\" \"-\" 0 t \"forward\"\r\n",
                    index % 50
                )
                .into_bytes();
            }
            let count = self.pending.len().min(out.len());
            out[..count].copy_from_slice(&self.pending[..count]);
            self.pending.drain(..count);
            Ok(count)
        }
    }
    let lines = 20_000;
    let reader = std::io::BufReader::new(Generated {
        next: 0,
        lines,
        pending: Vec::new(),
    });
    let mut set = RequestSet::new();
    set.add_alb_log_lines(
        reader,
        &parity::AlbLog {
            name: "s3://logs/a.log.gz",
            templates: &["GET /api/users/{id}".to_owned()],
            route_patterns: &["/api/users/1*".to_owned()],
            allow_unsafe: false,
        },
    )
    .unwrap();
    // ids 1 and 10..=19 match the pattern: 11 distinct requests.
    assert_eq!(set.requests.len(), 11);
    assert_eq!(set.requests[0].target, "/api/users/1");
    let source = &set.sources[0];
    assert_eq!(source.source, "alb log s3://logs/a.log.gz");
    assert_eq!(source.requests, lines / 50 * 11);
    assert_eq!(set.duplicates, lines / 50 * 11 - 11);
    let outside = &source.skipped["path outside the route's patterns"];
    assert_eq!(outside.count, lines / 50 * 39);
    assert!(
        outside.examples[0].starts_with("s3://logs/a.log.gz:1: http 2026-12-03T10:00:00.000000Z "),
        "{outside:?}"
    );
    assert!(
        outside.examples[0].ends_with("\"forward\""),
        "no line end: {outside:?}"
    );
}

#[test]
fn a_truncated_gzip_log_is_an_error_naming_the_file() {
    let plain = std::fs::read(fixture("alb-access.log")).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&plain).unwrap();
    let compressed = encoder.finish().unwrap();
    let truncated = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(truncated.path(), &compressed[..compressed.len() / 2]).unwrap();
    let error = RequestSet::new()
        .add_alb_log(truncated.path(), &[], &["/*".to_owned()], false)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "{}: starts like gzip but does not decompress: ",
            truncated.path().display()
        )),
        "{error}"
    );
}

#[test]
fn alb_log_lines_give_method_and_path_with_query() {
    let line = r#"h2 2026-01-01T00:00:00Z app/x/1 1.2.3.4:5 6.7.8.9:10 0 0 0 200 200 1 1 "GET https://h:443?q=1 HTTP/2.0" "-""#;
    assert_eq!(
        parse_alb_log_line(line).unwrap(),
        (reqwest::Method::GET, "/?q=1".to_owned())
    );
    assert!(parse_alb_log_line("").is_err());
}

#[test]
fn alb_path_patterns_are_case_sensitive_globs() {
    assert!(matches_path_pattern("/api/users*", "/api/users"));
    assert!(matches_path_pattern("/api/users*", "/api/users/1/x"));
    assert!(matches_path_pattern("/api/users*", "/api/usersx"));
    assert!(!matches_path_pattern("/api/users*", "/API/USERS"));
    assert!(matches_path_pattern(
        "/api/*/in-thread/?",
        "/api/posts/in-thread/1"
    ));
    assert!(!matches_path_pattern(
        "/api/*/in-thread/?",
        "/api/posts/in-thread/12"
    ));
    assert!(matches_path_pattern("*", "/"));
}
