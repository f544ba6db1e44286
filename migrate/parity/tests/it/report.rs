//! Reports: human text, JSON and JUnit XML.

use std::path::Path;
use std::sync::Arc;

use crate::common::{Reply, forum, serve, serve_forum};
use parity::{Comparator, RouteReport, RunOptions, Sides, VerifySpec};
use quick_xml::events::Event;

async fn report_for(route: &str, spec: &str, baseline: &str, candidate: &str) -> RouteReport {
    let spec: VerifySpec = toml::from_str(spec).unwrap();
    let requests = spec.request_set(Path::new(".")).unwrap();
    let sides = Sides::new(baseline, None, candidate).unwrap();
    let run = parity::run(
        requests.requests.clone(),
        &sides,
        &RunOptions::default(),
        &Comparator::new(&spec).unwrap(),
    )
    .await
    .unwrap();
    RouteReport::build(route, &sides, &requests, &run)
}

/// Two routes: one passing, one whose user 2 answers with markup characters.
async fn two_reports() -> Vec<RouteReport> {
    let baseline = serve_forum().await;
    let candidate = serve(Arc::new(|method: &hyper::Method, target: &str| {
        if target.starts_with("/api/users/2") {
            return Reply::json(
                r#"{"id":2,"username":"finn","name":"<b>\"Finn\" & co</b>"}"#.into(),
            );
        }
        forum(method, target)
    }))
    .await;
    let spec = "requests = [\"/\", \"/api/users/{id}\"]\nvalues.id = [\"1..=4\"]";
    vec![
        report_for("root", "requests = [\"/\"]", &baseline, &candidate).await,
        report_for("users", spec, &baseline, &candidate).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_has_one_case_per_endpoint_template_and_is_well_formed() {
    let reports = two_reports().await;
    let xml = parity::junit_xml(&reports, &[]);
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut cases, mut failures) = (Vec::new(), 0);
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Eof => break,
            Event::Start(element) | Event::Empty(element)
                if element.name().as_ref() == b"testcase" =>
            {
                let name = element.try_get_attribute("name").unwrap().unwrap();
                cases.push(name.unescape_value().unwrap().into_owned());
            }
            Event::Start(element) if element.name().as_ref() == b"failure" => failures += 1,
            _ => {}
        }
    }
    let escaped = xml
        .split_once("\">")
        .and_then(|_| xml.split_once("<failure "))
        .unwrap()
        .1;
    let escaped = escaped
        .split_once('>')
        .unwrap()
        .1
        .split_once("</failure>")
        .unwrap()
        .0;
    let failure_text = quick_xml::escape::unescape(escaped).unwrap();
    assert_eq!(cases, ["GET /", "GET /", "GET /api/users/{id}"]);
    assert_eq!(failures, 1);
    assert!(
        failure_text.starts_with("body /name changed value: 1 request\n  GET /api/users/2: baseline \"Finn 'the Human' Mertens\" | candidate \"<b>\\\"Finn\\\" & co</b>\""),
        "{failure_text}"
    );
    assert!(
        xml.contains("<testsuite name=\"parity users\" tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    // The message alone (what CI views show) names the first difference.
    assert!(
        xml.contains("message=\"GET /api/users/2: body /name changed value: baseline &quot;Finn &apos;the Human&apos; Mertens&quot; | candidate &quot;&lt;b&gt;\\&quot;Finn\\&quot; &amp; co&lt;/b&gt;&quot; (1 of 4 requests differed, 0 failed)\""),
        "{xml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_carries_pointers_kinds_and_examples() {
    let reports = two_reports().await;
    let json = parity::json(&reports, &[]);
    assert_eq!(json["passed"], false);
    let users = &json["routes"][1];
    assert_eq!(users["route"], "users");
    assert_eq!(
        (users["requests"].as_u64(), users["differed"].as_u64()),
        (Some(5), Some(1))
    );
    let group = &users["endpoints"][1]["differences"][0];
    assert_eq!(group["location"], "body /name");
    assert_eq!(group["kind"], "changed_value");
    assert_eq!(group["examples"][0]["request"], "GET /api/users/2");
    assert_eq!(users["inputs"][0]["source"], "request templates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_human_report_groups_by_template_then_location() {
    let reports = two_reports().await;
    let human = reports[1].human();
    let lines: Vec<&str> = human.lines().collect();
    assert!(
        lines[0].starts_with("FAIL parity users: candidate http://127.0.0.1:"),
        "{human}"
    );
    assert!(
        lines[1].starts_with(
            "  5 requests: 4 matched, 1 differed, 0 failed; 1 difference suppressed (length of a body that differs: 1; -v lists them); "
        ),
        "{human}"
    );
    assert_eq!(
        lines[2],
        "  input request templates: 5 requests, 0 lines skipped"
    );
    assert_eq!(
        lines[3],
        "  ok   GET /  (1 request: 1 matched, 0 differed, 0 failed)"
    );
    assert_eq!(
        lines[4],
        "  FAIL GET /api/users/{id}  (4 requests: 3 matched, 1 differed, 0 failed)"
    );
    assert_eq!(lines[5], "       body /name changed value: 1 request");
    assert_eq!(
        lines[6],
        "         GET /api/users/2: baseline \"Finn 'the Human' Mertens\" | candidate \"<b>\\\"Finn\\\" & co</b>\""
    );
    assert_eq!(
        lines.len(),
        7,
        "suppressions are counted, not listed: {human}"
    );
    let verbose = reports[1].human_verbose();
    let line = verbose.lines().nth(7).unwrap();
    assert!(line.starts_with("       suppressed (length of a body that differs): header content-length changed value: 1 request"), "{verbose}");
    assert!(reports[1].first_differences(5).contains(
        "GET /api/users/{id}: body /name changed value (1 request), e.g. GET /api/users/2"
    ));
}

/// Elements of a JUnit file by name, with their attributes.
fn junit_elements(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut elements = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Eof => break,
            Event::Start(element) | Event::Empty(element) => {
                let attributes = element
                    .attributes()
                    .map(|attribute| {
                        let attribute = attribute.unwrap();
                        (
                            String::from_utf8(attribute.key.as_ref().to_vec()).unwrap(),
                            attribute.unescape_value().unwrap().into_owned(),
                        )
                    })
                    .collect();
                elements.push((
                    String::from_utf8(element.name().as_ref().to_vec()).unwrap(),
                    attributes,
                ));
            }
            _ => {}
        }
    }
    elements
}

fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> &'a str {
    attributes
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_answers_are_junit_errors_and_skipped_routes_are_skipped_cases() {
    let baseline = serve_forum().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let reports =
        vec![report_for("users", "requests = [\"/api/users\"]", &baseline, &closed).await];
    let skipped = [parity::SkippedRoute {
        route: "posts".into(),
        reason: "no request in the given files matches its paths [\"/api/posts*\"]".into(),
    }];
    let xml = parity::junit_xml(&reports, &skipped);
    let elements = junit_elements(&xml);
    let names: Vec<&str> = elements.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.contains(&"error"), "{xml}");
    assert!(!names.contains(&"failure"), "{xml}");
    let root = &elements[0].1;
    assert_eq!(
        ["tests", "failures", "errors", "skipped"].map(|name| attribute(root, name)),
        ["2", "0", "1", "1"],
        "{xml}"
    );
    let error = &elements.iter().find(|(name, _)| name == "error").unwrap().1;
    assert!(
        attribute(error, "message").starts_with("candidate failed to answer GET /api/users: "),
        "{xml}"
    );
    let skipped = &elements
        .iter()
        .find(|(name, _)| name == "skipped")
        .unwrap()
        .1;
    assert_eq!(
        attribute(skipped, "message"),
        "no request in the given files matches its paths [\"/api/posts*\"]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_report_is_capped_and_says_what_it_left_out() {
    // 600 distinct changed fields: 600 groups, far more lines than the cap.
    let body = |suffix: &str| {
        let fields: Vec<String> = (0..600)
            .map(|index| format!("\"f{index}\":\"v{index}{suffix}\""))
            .collect();
        format!("{{{}}}", fields.join(","))
    };
    let (same, changed) = (body(""), body("x"));
    let baseline = serve(Arc::new(move |_: &hyper::Method, _: &str| {
        Reply::json(same.clone())
    }))
    .await;
    let candidate = serve(Arc::new(move |_: &hyper::Method, _: &str| {
        Reply::json(changed.clone())
    }))
    .await;
    let spec = "requests = [\"/a\", \"/b\", \"/c\"]";
    let report = report_for("wide", spec, &baseline, &candidate).await;
    let human = report.human();
    let lines: Vec<&str> = human.lines().collect();
    assert!(
        lines.len() <= parity::TEXT_REPORT_LINES,
        "{} lines",
        lines.len()
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("  … ")
            && last.ends_with(
                " left out (the text report keeps 400 lines); the whole report: --json FILE"
            ),
        "{last}"
    );
    // The JSON report keeps every group.
    let json = parity::json(&[report], &[]);
    let groups = json["routes"][0]["endpoints"][0]["differences"]
        .as_array()
        .unwrap();
    assert_eq!(groups.len(), 600);
}

#[test]
fn the_markdown_summary_stays_under_its_cap_and_says_what_it_left_out() {
    let endpoint = |index: usize| parity::EndpointReport {
        template: format!("GET /api/{index}/{}", "x".repeat(200)),
        requests: 1,
        matched: 0,
        differed: 1,
        failed: 0,
        differences: vec![parity::DifferenceGroup {
            location: parity::Location::Status,
            kind: parity::Kind::ChangedValue,
            suppressed: None,
            count: 1,
            examples: vec![parity::Example {
                request: format!("GET /api/{index}"),
                at: None,
                places: 1,
                baseline: "200".into(),
                candidate: "404".into(),
            }],
        }],
        suppressed: Vec::new(),
        failures: Vec::new(),
    };
    let report = |route: &str| RouteReport {
        route: route.into(),
        sides: Sides::new("http://127.0.0.1:1", None, "http://127.0.0.1:2").unwrap(),
        requests: 2000,
        matched: 0,
        differed: 2000,
        failed: 0,
        suppressed: 0,
        elapsed_seconds: 1.0,
        pairs_per_second: 2000.0,
        inputs: Vec::new(),
        duplicates: 0,
        endpoints: (0..2000).map(endpoint).collect(),
    };
    let reports: Vec<RouteReport> = ["a", "b", "c"].map(report).into();
    let summary = parity::markdown_summary(&reports, &[]);
    assert!(summary.len() <= parity::SUMMARY_BYTES, "{}", summary.len());
    assert!(summary.len() > parity::SUMMARY_BYTES / 2);
    let last = summary.lines().last().unwrap();
    assert!(
        last.starts_with("… ")
            && last.ends_with(
                " left out to stay under 512 KiB; the whole report: `migrate verify --json FILE`."
            ),
        "{last}"
    );
}
