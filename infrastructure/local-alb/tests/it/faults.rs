//! Fault injection (issue 17): propagation delay over simulated nodes,
//! throttling of the ELBv2 and CloudWatch APIs, transient errors (some after
//! the write was applied), each observed through the SDK, the wire, the
//! traffic and `/metrics`.

use std::time::{Duration, Instant};

use alb::metrics as names;
use local_alb::faults::{self, FaultOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, RunningAlb};

/// A local ALB over a `monolith` (default) and a `users` target group, with
/// `faults`.
async fn start(faults: FaultOptions) -> (RunningAlb, tempfile::TempDir) {
    let monolith = common::live_target("monolith").await;
    let users = common::live_target("users").await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::settings_for(&dir.path().join("state"));
    settings.stack = Some(common::write_stack(
        dir.path(),
        &[("monolith", &[monolith]), ("users", &[users])],
    ));
    settings.faults = faults;
    (RunningAlb::start_with(settings).await, dir)
}

/// The form of a CreateRule sending `/api/users*` to `users`.
fn create_rule_form(listener: &str, users_tg: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Action", "CreateRule".to_owned()),
        ("Version", "2015-12-01".to_owned()),
        ("ListenerArn", listener.to_owned()),
        ("Priority", "10".to_owned()),
        ("Conditions.member.1.Field", "path-pattern".to_owned()),
        (
            "Conditions.member.1.PathPatternConfig.Values.member.1",
            "/api/users*".to_owned(),
        ),
        ("Actions.member.1.Type", "forward".to_owned()),
        ("Actions.member.1.TargetGroupArn", users_tg.to_owned()),
    ]
}

async fn post(control_url: &str, form: &[(&'static str, String)]) -> common::Answer {
    let params: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::signed_post(control_url, &params, None).await
}

/// The listener's and the `users` target group's ARNs, read on the wire
/// (with no SDK retries in between).
async fn arns(control_url: &str) -> (String, String) {
    let lbs = post(
        control_url,
        &[
            ("Action", "DescribeLoadBalancers".to_owned()),
            ("Version", "2015-12-01".to_owned()),
        ],
    )
    .await;
    let lb = lbs.element("LoadBalancerArn").expect("an LB").to_owned();
    let listeners = post(
        control_url,
        &[
            ("Action", "DescribeListeners".to_owned()),
            ("Version", "2015-12-01".to_owned()),
            ("LoadBalancerArn", lb),
        ],
    )
    .await;
    let listener = listeners
        .element("ListenerArn")
        .expect("a listener")
        .to_owned();
    let groups = post(
        control_url,
        &[
            ("Action", "DescribeTargetGroups".to_owned()),
            ("Version", "2015-12-01".to_owned()),
            ("Names.member.1", "users".to_owned()),
        ],
    )
    .await;
    let users = groups.element("TargetGroupArn").expect("users").to_owned();
    (listener, users)
}

/// One keep-alive client connection (so one load balancer node).
struct Connection(TcpStream);

impl Connection {
    async fn open(data_url: &str) -> Connection {
        Connection(
            TcpStream::connect(data_url.trim_start_matches("http://"))
                .await
                .unwrap(),
        )
    }

    /// The body of `GET path` on this connection.
    async fn get(&mut self, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        self.0.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = self.0.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the load balancer closed the connection");
            seen.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a content-length");
                if text.len() >= end + 4 + length {
                    return text[end + 4..end + 4 + length].to_owned();
                }
            }
        }
    }
}

async fn scrape(control_url: &str) -> Vec<names::Sample> {
    let text = reqwest::get(format!("{control_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    names::parse(&text)
}

fn value(samples: &[names::Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
        .map(names::Sample::count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_described_at_once_and_reaches_each_node_after_its_delay() {
    let (alb, _dir) = start(FaultOptions {
        propagation: Some(faults::parse_propagation("1s..2s").unwrap()),
        nodes: Some(2),
        ..FaultOptions::default()
    })
    .await;
    // Connections go to the nodes round robin: one connection per node.
    let mut node_a = Connection::open(&alb.data_url).await;
    assert_eq!(node_a.get("/api/users").await, "monolith");
    let mut node_b = Connection::open(&alb.data_url).await;
    assert_eq!(node_b.get("/api/users").await, "monolith");
    let (listener, users) = arns(&alb.control_url).await;

    let written = Instant::now();
    let created = post(&alb.control_url, &create_rule_form(&listener, &users)).await;
    assert_eq!(created.status, 200, "{}", created.body);
    // Describe answers the new state at once, as AWS does ...
    let client = alb.client().await;
    let rules = client
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .unwrap();
    assert!(rules.rules().iter().any(|r| r.priority() == Some("10")));
    // ... while the traffic follows the old table on both nodes.
    assert_eq!(node_a.get("/api/users").await, "monolith");
    assert_eq!(node_b.get("/api/users").await, "monolith");
    let metrics = scrape(&alb.control_url).await;
    if written.elapsed() < Duration::from_secs(1) {
        for node in ["0", "1"] {
            assert_eq!(
                value(
                    &metrics,
                    names::PROPAGATION_PENDING_CHANGES,
                    &[("node", node)]
                ),
                1,
                "node {node}: one change on its way"
            );
        }
    }

    // Each node switches on its own, between 1 s and 2 s after the write.
    let deadline = written + Duration::from_secs(5);
    for (name, node) in [("a", &mut node_a), ("b", &mut node_b)] {
        loop {
            if node.get("/api/users").await == "users" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {name} never applied the change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = written.elapsed();
        assert!(
            took >= Duration::from_secs(1),
            "node {name} switched after {took:?}"
        );
    }
    assert!(
        written.elapsed() < Duration::from_millis(2600),
        "both switch by 2 s"
    );
    let metrics = scrape(&alb.control_url).await;
    // The nodes count generations as the rule table's counter does: a node
    // equal to it has every change (1 at start, 2 after this one).
    assert_eq!(
        names::single(&metrics, names::RULE_TABLE_GENERATION),
        Some(2)
    );
    for node in ["0", "1"] {
        assert_eq!(
            value(
                &metrics,
                names::PROPAGATION_PENDING_CHANGES,
                &[("node", node)]
            ),
            0
        );
        assert_eq!(
            value(
                &metrics,
                names::PROPAGATION_NODE_GENERATION,
                &[("node", node)]
            ),
            2
        );
    }
    // A new connection (the next node in turn) has the change too.
    assert_eq!(
        Connection::open(&alb.data_url)
            .await
            .get("/api/users")
            .await,
        "users"
    );
    alb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_get_awss_throttling_error_on_both_apis() {
    let (alb, _dir) = start(FaultOptions {
        throttle: Some(faults::parse_throttle("DescribeLoadBalancers=1,GetMetricData=1").unwrap()),
        ..FaultOptions::default()
    })
    .await;
    let describe = [
        ("Action", "DescribeLoadBalancers".to_owned()),
        ("Version", "2015-12-01".to_owned()),
    ];
    assert_eq!(post(&alb.control_url, &describe).await.status, 200);
    let throttled = post(&alb.control_url, &describe).await;
    assert_eq!(throttled.status, 400, "{}", throttled.body);
    assert_eq!(throttled.element("Code"), Some("Throttling"));
    assert_eq!(throttled.element("Message"), Some("Rate exceeded"));
    // Actions not named are not throttled.
    let tgs = [
        ("Action", "DescribeTargetGroups".to_owned()),
        ("Version", "2015-12-01".to_owned()),
    ];
    for _ in 0..3 {
        assert_eq!(post(&alb.control_url, &tgs).await.status, 200);
    }

    // The SDK sees the throttling code; without retries it gives up ...
    let config = common::sdk_config(&alb.control_url).await;
    let no_retries = aws_sdk_elasticloadbalancingv2::config::Builder::from(&config)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::from_conf(no_retries);
    let error = elbv2.describe_load_balancers().send().await.unwrap_err();
    assert_eq!(common::code_of(&error), "Throttling");
    // ... and with retries it gets through. The bucket holds one request a
    // second and the standard retries' backoff is jittered from 0: enough
    // attempts, from a 1 s base, that one lands in a new second.
    let retrying = aws_sdk_elasticloadbalancingv2::config::Builder::from(&config)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(8)
                .with_initial_backoff(std::time::Duration::from_secs(1)),
        )
        .build();
    let client = aws_sdk_elasticloadbalancingv2::Client::from_conf(retrying);
    client
        .describe_load_balancers()
        .send()
        .await
        .expect("retried");

    // CloudWatch (RPC v2 CBOR, what aws-sdk-cloudwatch speaks).
    let cloudwatch_config = aws_sdk_cloudwatch::config::Builder::from(&config)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(cloudwatch_config);
    let now = aws_sdk_cloudwatch::primitives::DateTime::from(std::time::SystemTime::now());
    let query = aws_sdk_cloudwatch::types::MetricDataQuery::builder()
        .id("q")
        .metric_stat(
            aws_sdk_cloudwatch::types::MetricStat::builder()
                .metric(
                    aws_sdk_cloudwatch::types::Metric::builder()
                        .namespace("AWS/ApplicationELB")
                        .metric_name("RequestCount")
                        .build(),
                )
                .period(1)
                .stat("Sum")
                .build(),
        )
        .build();
    let get = || {
        cloudwatch
            .get_metric_data()
            .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                now.secs() - 60,
            ))
            .end_time(now)
            .metric_data_queries(query.clone())
            .send()
    };
    let mut codes = Vec::new();
    for _ in 0..2 {
        if let Err(error) = get().await {
            use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
            codes.push(error.code().unwrap_or_default().to_owned());
            assert_eq!(error.message(), Some("Rate exceeded"));
        }
    }
    assert_eq!(
        codes,
        ["Throttling"],
        "the second call in a second is throttled"
    );

    let metrics = scrape(&alb.control_url).await;
    let throttled = |api, action| {
        value(
            &metrics,
            names::FAULTS_THROTTLED_TOTAL,
            &[("api", api), ("action", action)],
        )
    };
    assert!(throttled("elbv2", "DescribeLoadBalancers") >= 2);
    assert_eq!(throttled("elbv2", "DescribeTargetGroups"), 0);
    assert_eq!(throttled("cloudwatch", "GetMetricData"), 1);
    alb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_comes_after_the_write_was_applied() {
    // Every request fails, and every failed write was applied first.
    let (lost, _dir) = start(FaultOptions {
        transient_errors: Some(local_alb::faults::PerAction::every(1.0)),
        lost_answers: Some(1.0),
        ..FaultOptions::default()
    })
    .await;
    // ARNs are minted in stack order, so a fault-free twin tells them.
    let (twin, _twin_dir) = start(FaultOptions::default()).await;
    let (listener, users) = arns(&twin.control_url).await;
    let answer = post(&lost.control_url, &create_rule_form(&listener, &users)).await;
    assert!([500, 503].contains(&answer.status), "{}", answer.status);
    let code = answer.element("Code").unwrap();
    assert!(
        ["InternalFailure", "ServiceUnavailable"].contains(&code),
        "{code}"
    );
    // The answer was an error, yet the traffic shows the rule.
    let mut connection = Connection::open(&lost.data_url).await;
    assert_eq!(connection.get("/api/users").await, "users");
    let metrics = scrape(&lost.control_url).await;
    assert_eq!(
        value(
            &metrics,
            names::FAULTS_TRANSIENT_ERRORS_TOTAL,
            &[
                ("api", "elbv2"),
                ("action", "CreateRule"),
                ("applied", "true")
            ]
        ),
        1
    );
    // The same CreateRule again, as an SDK retries it: its priority is the
    // first one's now, so it was refused, not applied, though its answer is
    // the same error. /metrics says so, as the log does.
    let again = post(&lost.control_url, &create_rule_form(&listener, &users)).await;
    assert!([500, 503].contains(&again.status), "{}", again.status);
    let metrics = scrape(&lost.control_url).await;
    let counted = |applied| {
        value(
            &metrics,
            names::FAULTS_TRANSIENT_ERRORS_TOTAL,
            &[("action", "CreateRule"), ("applied", applied)],
        )
    };
    assert_eq!((counted("true"), counted("false")), (1, 1));

    // With lost_answers 0, a failed write was not applied.
    let (clean, _clean_dir) = start(FaultOptions {
        transient_errors: Some(local_alb::faults::PerAction::every(1.0)),
        lost_answers: Some(0.0),
        ..FaultOptions::default()
    })
    .await;
    let answer = post(&clean.control_url, &create_rule_form(&listener, &users)).await;
    assert!([500, 503].contains(&answer.status));
    let mut connection = Connection::open(&clean.data_url).await;
    assert_eq!(connection.get("/api/users").await, "monolith");
    let metrics = scrape(&clean.control_url).await;
    assert_eq!(
        value(
            &metrics,
            names::FAULTS_TRANSIENT_ERRORS_TOTAL,
            &[("action", "CreateRule"), ("applied", "false")]
        ),
        1
    );
    for alb in [lost, twin, clean] {
        alb.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_files_faults_section_is_read_and_checked() {
    let monolith = common::live_target("monolith").await;
    let dir = tempfile::tempdir().unwrap();
    let stack = common::write_stack(dir.path(), &[("monolith", &[monolith])]);
    let text = std::fs::read_to_string(&stack).unwrap();
    std::fs::write(
        &stack,
        format!("{text}[faults]\nthrottle = \"DescribeLoadBalancers=1\"\n"),
    )
    .unwrap();
    let mut settings = common::settings_for(&dir.path().join("state"));
    settings.stack = Some(stack.clone());
    let alb = RunningAlb::start_with(settings).await;
    let describe = [
        ("Action", "DescribeLoadBalancers".to_owned()),
        ("Version", "2015-12-01".to_owned()),
    ];
    post(&alb.control_url, &describe).await;
    assert_eq!(
        post(&alb.control_url, &describe).await.element("Code"),
        Some("Throttling")
    );
    alb.stop().await;

    std::fs::write(
        &stack,
        format!("{text}[faults]\npropagation = \"9s..1s\"\n"),
    )
    .unwrap();
    let mut settings = common::settings_for(&dir.path().join("state2"));
    settings.stack = Some(stack);
    let error = match local_alb::Application::build(settings).await {
        Ok(_) => panic!("a backwards range is refused"),
        Err(error) => error,
    };
    assert_eq!(error.exit_code(), 2);
    let message = error.to_string();
    assert!(
        message.contains("faults.propagation") && message.contains("MIN..MAX"),
        "{message}"
    );
}

/// A dashboard finds the counters of each fault that is on from the start,
/// before anything was injected: their HELP and TYPE lines, and a zero
/// sample per action named (with each code, and `applied` for a write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_counters_are_in_metrics_from_the_start() {
    let (alb, _dir) = start(FaultOptions {
        throttle: Some(faults::parse_throttle("DescribeRules=5,GetMetricData=1,*=20").unwrap()),
        transient_errors: Some(faults::parse_transient_errors("CreateRule=0.5,*=0.01").unwrap()),
        ..FaultOptions::default()
    })
    .await;
    let text = reqwest::get(format!("{}/metrics", alb.control_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        names::FAULTS_THROTTLED_TOTAL,
        names::FAULTS_TRANSIENT_ERRORS_TOTAL,
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} counter")),
            "{name} missing from {text}"
        );
    }
    let samples = names::parse(&text);
    let zero = |name: &str, labels: &[(&str, &str)]| {
        let found: Vec<_> = samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
            .collect();
        assert_eq!(found.len(), 1, "one {name} {labels:?} sample in {text}");
        assert_eq!(found[0].count(), 0, "{name} {labels:?}");
    };
    zero(
        names::FAULTS_THROTTLED_TOTAL,
        &[("api", "elbv2"), ("action", "DescribeRules")],
    );
    zero(
        names::FAULTS_THROTTLED_TOTAL,
        &[("api", "cloudwatch"), ("action", "GetMetricData")],
    );
    for code in ["500", "503"] {
        for applied in ["false", "true"] {
            zero(
                names::FAULTS_TRANSIENT_ERRORS_TOTAL,
                &[
                    ("api", "elbv2"),
                    ("action", "CreateRule"),
                    ("code", code),
                    ("applied", applied),
                ],
            );
        }
    }
    alb.stop().await;
}
