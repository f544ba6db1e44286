//! The checker catches what it must: real test servers that differ on purpose.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{Reply, forum, serve, serve_forum, user_json, users_json};
use parity::{Comparator, DifferenceGroup, Kind, RouteReport, RunOptions, Side, Sides, VerifySpec};

const USERS_SPEC: &str = r#"
requests = ["/", "/api/users", "/api/users/{id}", "HEAD /api/users/{id}"]
values.id = ["1..=5", "01", "abc"]
"#;

async fn verify_with(
    spec: &str,
    baseline: &str,
    baseline_2: Option<&str>,
    candidate: &str,
    options: RunOptions,
) -> RouteReport {
    let spec: VerifySpec = toml::from_str(spec).expect("valid verify spec");
    let requests = spec.request_set(Path::new(".")).expect("requests");
    let sides = Sides::new(baseline, baseline_2, candidate).expect("valid URLs");
    let comparator = Comparator::new(&spec).expect("valid comparator");
    let run = parity::run(requests.requests.clone(), &sides, &options, &comparator)
        .await
        .expect("run");
    RouteReport::build("users", &sides, &requests, &run)
}

async fn verify(spec: &str, baseline: &str, candidate: &str) -> RouteReport {
    verify_with(spec, baseline, None, candidate, RunOptions::default()).await
}

fn differences<'a>(report: &'a RouteReport, template: &str) -> &'a [DifferenceGroup] {
    let endpoint = report
        .endpoints
        .iter()
        .find(|endpoint| endpoint.template == template)
        .unwrap_or_else(|| panic!("no endpoint {template} in\n{}", report.human()));
    &endpoint.differences
}

fn summary(groups: &[DifferenceGroup]) -> Vec<(String, Kind, usize)> {
    groups
        .iter()
        .map(|group| (group.location.to_string(), group.kind, group.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_servers_match_on_every_request() {
    let (baseline, candidate) = (serve_forum().await, serve_forum().await);
    let report = verify(USERS_SPEC, &baseline, &candidate).await;
    assert!(report.passed(), "{}", report.human());
    // 1 + 1 + 7 + 7 requests.
    assert_eq!((report.requests, report.matched), (16, 16));
    assert_eq!(report.endpoints.len(), 4);
    assert!(report.human().starts_with("PASS parity users"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_field_fails_with_its_pointer_and_kind() {
    let baseline = serve_forum().await;
    let candidate = serve(Arc::new(|method: &hyper::Method, target: &str| {
        if target == "/api/users" {
            return Reply::json(users_json(&[0, 1, 2, 3]).replace("Jake the Dog", "Jake"));
        }
        if target == "/api/users/2" {
            return Reply::json(user_json(2, "finn", "Finn"));
        }
        forum(method, target)
    }))
    .await;
    let report = verify(USERS_SPEC, &baseline, &candidate).await;
    assert!(!report.passed());
    assert_eq!(report.differed, 2, "{}", report.human());
    assert_eq!(
        summary(differences(&report, "GET /api/users/{id}")),
        vec![("body /name".to_owned(), Kind::ChangedValue, 1)]
    );
    let group = &differences(&report, "GET /api/users/{id}")[0];
    assert_eq!(group.examples[0].request, "GET /api/users/2");
    assert_eq!(group.examples[0].baseline, "\"Finn 'the Human' Mertens\"");
    assert_eq!(group.examples[0].candidate, "\"Finn\"");
    // Grouped by pointer with array indexes collapsed; the example names the place.
    assert_eq!(
        summary(differences(&report, "GET /api/users")),
        vec![("body /*/name".to_owned(), Kind::ChangedValue, 1)]
    );
    let example = &differences(&report, "GET /api/users")[0].examples[0];
    assert_eq!(
        (example.at.as_deref(), example.places),
        (Some("body /3/name"), 1)
    );
    // Content-Length differs too, but only because the body does.
    let endpoint = report
        .endpoints
        .iter()
        .find(|endpoint| endpoint.template == "GET /api/users/{id}")
        .unwrap();
    assert!(
        endpoint
            .suppressed
            .iter()
            .any(|group| group.location.to_string() == "header content-length")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_where_the_monolith_says_no_content_fails_on_status_and_body() {
    let baseline = serve_forum().await;
    let candidate = serve(Arc::new(|method: &hyper::Method, target: &str| {
        let reply = forum(method, target);
        if reply.status == 204 {
            Reply::text(404, "Not Found")
        } else {
            reply
        }
    }))
    .await;
    let report = verify(USERS_SPEC, &baseline, &candidate).await;
    // ids 5 and abc, GET and HEAD.
    assert_eq!(report.differed, 4, "{}", report.human());
    assert_eq!(
        summary(differences(&report, "GET /api/users/{id}")),
        vec![
            ("status".to_owned(), Kind::ChangedValue, 2),
            ("header content-type".to_owned(), Kind::Extra, 2),
            ("body".to_owned(), Kind::Extra, 2),
        ]
    );
    let status = &differences(&report, "GET /api/users/{id}")[0];
    assert_eq!(
        (
            status.examples[0].baseline.as_str(),
            status.examples[0].candidate.as_str()
        ),
        ("204", "404")
    );
    // HEAD has no body on either side; status and headers still differ.
    assert_eq!(
        summary(differences(&report, "HEAD /api/users/{id}"))[0],
        ("status".to_owned(), Kind::ChangedValue, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reordered_array_fails_unless_declared_unordered() {
    let baseline = serve_forum().await;
    let candidate = serve(Arc::new(|method: &hyper::Method, target: &str| {
        if target == "/api/users" {
            return Reply::json(users_json(&[1, 0, 2, 3]));
        }
        forum(method, target)
    }))
    .await;
    let report = verify(USERS_SPEC, &baseline, &candidate).await;
    assert_eq!(report.differed, 1);
    // One `order` finding for the permuted array, not one per index.
    let group = differences(&report, "GET /api/users");
    assert_eq!(
        summary(group),
        vec![("body".to_owned(), Kind::Order, 1)],
        "{}",
        report.human()
    );
    assert_eq!(group[0].examples[0].baseline, "4 elements in one order");
    assert_eq!(
        group[0].examples[0].candidate,
        "the same elements in another, from index 0"
    );

    let unordered = format!("{USERS_SPEC}unordered = [\"\"]\n");
    let report = verify(&unordered, &baseline, &candidate).await;
    assert!(report.passed(), "{}", report.human());
    let endpoint = report
        .endpoints
        .iter()
        .find(|endpoint| endpoint.template == "GET /api/users")
        .unwrap();
    assert_eq!(endpoint.suppressed.len(), 1);
    assert_eq!(endpoint.suppressed[0].kind, Kind::Order);
    assert_eq!(
        endpoint.suppressed[0].suppressed.as_deref(),
        Some("unordered array \"\" (the whole body)")
    );
}

/// A forum whose user objects carry a `requestId` that changes on every answer.
fn noisy_forum(counter: Arc<AtomicU64>) -> common::Handler {
    Arc::new(move |method: &hyper::Method, target: &str| {
        let mut reply = forum(method, target);
        if reply.status == 200 && reply.body.starts_with(b"{") {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let body = String::from_utf8(reply.body).unwrap();
            reply.body = body
                .replacen('{', &format!("{{\"requestId\":\"r{n}\","), 1)
                .into_bytes();
            reply.headers.push(("x-served-by", format!("host-{n}")));
        }
        reply
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_value_in_the_baseline_is_recognised_as_noise() {
    let counter = Arc::new(AtomicU64::new(0));
    let baseline = serve(noisy_forum(Arc::clone(&counter))).await;
    let candidate = serve(noisy_forum(counter)).await;
    let report = verify(USERS_SPEC, &baseline, &candidate).await;
    assert!(report.passed(), "{}", report.human());
    let endpoint = report
        .endpoints
        .iter()
        .find(|endpoint| endpoint.template == "GET /api/users/{id}")
        .unwrap();
    let noise: Vec<(String, usize)> = endpoint
        .suppressed
        .iter()
        .filter(|group| {
            group.suppressed.as_deref() == Some("noise: the two baseline answers differ here too")
        })
        .map(|group| (group.location.to_string(), group.count))
        .collect();
    assert!(
        noise.contains(&("body /requestId".to_owned(), 5)),
        "{noise:?}"
    );
    assert!(
        noise.contains(&("header x-served-by".to_owned(), 5)),
        "{noise:?}"
    );
    assert!(report.human_verbose().contains("suppressed (noise: the two baseline answers differ here too): body /requestId changed value: 5 requests"));
    // Without -v, the suppressions are counted on the totals line only.
    let quiet = report.human();
    let totals = quiet.lines().nth(1).unwrap();
    assert!(
        totals.contains(" differences suppressed (")
            && totals.contains("noise: 15; -v lists them)"),
        "{quiet}"
    );
    // No per-location line (the totals line itself may start with "noise"
    // when no Date header crossed a second and nothing else was suppressed).
    assert!(
        !quiet
            .lines()
            .filter(|line| *line != totals)
            .any(|line| line.contains("suppressed (noise")),
        "{quiet}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_does_not_hide_a_real_difference_elsewhere() {
    let counter = Arc::new(AtomicU64::new(0));
    let baseline = serve(noisy_forum(Arc::clone(&counter))).await;
    let noisy = noisy_forum(counter);
    let candidate = serve(Arc::new(move |method: &hyper::Method, target: &str| {
        let mut reply = noisy(method, target);
        if target == "/api/users/3" {
            reply.body = String::from_utf8(reply.body)
                .unwrap()
                .replace("\"pb\"", "\"PB\"")
                .into_bytes();
        }
        reply
    }))
    .await;
    let report = verify(USERS_SPEC, &baseline, &candidate).await;
    assert_eq!(report.differed, 1, "{}", report.human());
    assert_eq!(
        summary(differences(&report, "GET /api/users/{id}")),
        vec![("body /username".to_owned(), Kind::ChangedValue, 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_second_baseline_cancels_noise_too() {
    let counter = Arc::new(AtomicU64::new(0));
    let baseline = serve(noisy_forum(Arc::clone(&counter))).await;
    let baseline_2 = serve(noisy_forum(Arc::clone(&counter))).await;
    let candidate = serve(noisy_forum(counter)).await;
    let report = verify_with(
        USERS_SPEC,
        &baseline,
        Some(&baseline_2),
        &candidate,
        RunOptions::default(),
    )
    .await;
    assert!(report.passed(), "{}", report.human());
    assert!(
        report
            .human()
            .contains(&format!("(second baseline {baseline_2})"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_ignores_suppress_and_count_differences() {
    let baseline = serve_forum().await;
    let candidate = serve(Arc::new(|method: &hyper::Method, target: &str| {
        let mut reply = forum(method, target);
        if reply.status == 200 && target.starts_with("/api/users") {
            reply.body = String::from_utf8(reply.body)
                .unwrap()
                .replace("Bubblegum", "Bubble")
                .into_bytes();
            reply.headers.push(("x-powered-by", "rust".into()));
        }
        reply
    }))
    .await;
    let spec = format!(
        "{USERS_SPEC}ignore = [\"/*/name\", \"/name\"]\nignore_headers = [\"X-Powered-By\"]\n"
    );
    let report = verify(&spec, &baseline, &candidate).await;
    assert!(report.passed(), "{}", report.human());
    let endpoint = report
        .endpoints
        .iter()
        .find(|endpoint| endpoint.template == "GET /api/users")
        .unwrap();
    let reasons: Vec<(String, String, usize)> = endpoint
        .suppressed
        .iter()
        .map(|group| {
            (
                group.location.to_string(),
                group.suppressed.clone().unwrap(),
                group.count,
            )
        })
        .collect();
    assert!(
        reasons.contains(&(
            "body /*/name".into(),
            "ignored by pointer /*/name".into(),
            1
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("header x-powered-by".into(), "ignored header".into(), 1)),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_that_does_not_answer_counts_as_failed() {
    let baseline = serve_forum().await;
    // A port that was free a moment ago: connections are refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let report = verify(USERS_SPEC, &baseline, &closed).await;
    assert_eq!((report.failed, report.matched), (16, 0));
    assert!(!report.passed());
    let failures = &report.endpoints[0].failures;
    assert_eq!(failures[0].side, Side::Candidate);
    assert!(
        failures[0].examples[0].starts_with("GET /: "),
        "{:?}",
        failures[0].examples
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_side_times_out_and_counts_as_failed() {
    let baseline = serve_forum().await;
    let slow = serve(Arc::new(|method: &hyper::Method, target: &str| {
        let mut reply = forum(method, target);
        if target == "/api/users" {
            reply.delay = Duration::from_secs(10);
        }
        reply
    }))
    .await;
    let options = RunOptions {
        concurrency: 4,
        timeout: Duration::from_secs(1),
    };
    let report = verify_with(USERS_SPEC, &slow, None, &baseline, options).await;
    assert_eq!(
        (report.failed, report.matched),
        (1, 15),
        "{}",
        report.human()
    );
    let endpoint = report
        .endpoints
        .iter()
        .find(|endpoint| endpoint.template == "GET /api/users")
        .unwrap();
    assert_eq!(endpoint.failures[0].side, Side::Baseline);
    assert_eq!(
        endpoint.failures[0].examples[0],
        "GET /api/users: timed out after 1s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_baseline_status_is_noise_for_that_request_only() {
    let flips = Arc::new(AtomicU64::new(0));
    let baseline = serve(Arc::new(move |method: &hyper::Method, target: &str| {
        if target == "/api/users/1" && flips.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
            return Reply::text(503, "Service Unavailable");
        }
        forum(method, target)
    }))
    .await;
    let candidate = serve(Arc::new(|method: &hyper::Method, target: &str| {
        if target == "/api/users/2" {
            return Reply::text(500, "Internal Server Error");
        }
        forum(method, target)
    }))
    .await;
    let spec = "requests = [\"/api/users/{id}\"]\nvalues.id = [1, 2, 3]";
    let report = verify(spec, &baseline, &candidate).await;
    assert_eq!(
        (report.matched, report.differed),
        (2, 1),
        "{}",
        report.human()
    );
    let status = &differences(&report, "GET /api/users/{id}")[0];
    assert_eq!(status.location.to_string(), "status");
    assert_eq!(status.examples[0].request, "GET /api/users/2");
}
