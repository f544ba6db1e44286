//! The local ALB's CloudWatch API (issue 15): real traffic through the data
//! plane to real targets, then `GetMetricData` and `ListMetrics` read back
//! with `aws-sdk-cloudwatch` (Smithy RPC v2 CBOR), the AWS CLI and raw
//! signed requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch as cloudwatch;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use ciborium::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, RunningAlb, stack_credentials};
use crate::common_dataplane::{Backend, wait_until};

/// A target answering every request with 200 after `delay`.
async fn slow_target(delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow";
                    if stream.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A stack: `fast` (the default action) and `slow` (`/slow*`), each with
/// one target; health checks every 5 s.
fn write_stack(dir: &std::path::Path, fast: u16, slow: u16) -> std::path::PathBuf {
    let credentials = stack_credentials();
    let check = "health_check = { path = \"/\", interval_seconds = 5, timeout_seconds = 2, healthy_threshold = 2, unhealthy_threshold = 2, matcher = \"200\" }";
    let text = format!(
        "region = \"us-east-1\"\naccount_id = \"000000000000\"\n\
         [credentials]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
         [load_balancer]\nname = \"metrics\"\n\
         [listener]\nport = 80\ndefault_action = {{ forward = \"fast\" }}\n\
         [[target_groups]]\nname = \"fast\"\nport = 3000\ntargets = [\"127.0.0.1:{fast}\"]\n{check}\n\
         [[target_groups]]\nname = \"slow\"\nport = 3000\ntargets = [\"127.0.0.1:{slow}\"]\n{check}\n\
         [[rules]]\npriority = 10\nconditions = [{{ field = \"path-pattern\", values = [\"/slow*\"] }}]\n\
         actions = [{{ forward = \"slow\" }}]\n",
        credentials.access_key_id, credentials.secret_access_key
    );
    let path = dir.join("stack.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The running stack and what a CloudWatch query needs to name it.
struct Fixture {
    alb: RunningAlb,
    fast: Backend,
    client: cloudwatch::Client,
    /// `app/metrics/<id>`.
    load_balancer: String,
    /// `targetgroup/fast/<id>`, `targetgroup/slow/<id>`.
    fast_group: String,
    slow_group: String,
    _dir: tempfile::TempDir,
}

const SLOW: Duration = Duration::from_millis(60);

async fn fixture() -> Fixture {
    fixture_with(SLOW).await
}

/// [`fixture`] with the slow target answering after `slow`.
async fn fixture_with(slow: Duration) -> Fixture {
    let fast = Backend::start("fast").await;
    let slow = slow_target(slow).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::settings_for(&dir.path().join("state"));
    settings.stack = Some(write_stack(dir.path(), fast.addr.port(), slow));
    let alb = RunningAlb::start_with(settings).await;
    let elbv2 = alb.client().await;
    let load_balancer_arn = elbv2
        .describe_load_balancers()
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let groups = elbv2.describe_target_groups().send().await.unwrap();
    let group = |name: &str| {
        let arn = groups
            .target_groups()
            .iter()
            .find(|g| g.target_group_name() == Some(name))
            .and_then(|g| g.target_group_arn())
            .unwrap();
        arn.rsplit_once(':').unwrap().1.to_owned()
    };
    Fixture {
        client: cloudwatch_client(&alb.control_url).await,
        load_balancer: load_balancer_arn
            .split_once(":loadbalancer/")
            .unwrap()
            .1
            .to_owned(),
        fast_group: group("fast"),
        slow_group: group("slow"),
        alb,
        fast,
        _dir: dir,
    }
}

/// `aws-sdk-cloudwatch` pointed at the control listener, as `migrate` builds
/// it: only the endpoint differs from AWS.
async fn cloudwatch_client(control_url: &str) -> cloudwatch::Client {
    cloudwatch::Client::new(&common::sdk_config(control_url).await)
}

async fn get(client: &reqwest::Client, url: &str, times: usize) {
    for _ in 0..times {
        client.get(url).send().await.unwrap().bytes().await.unwrap();
    }
}

fn query(
    id: &str,
    metric: &str,
    dimensions: &[(&str, &str)],
    period: i32,
    stat: &str,
) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace("AWS/ApplicationELB")
        .metric_name(metric)
        .set_dimensions(Some(
            dimensions
                .iter()
                .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
                .collect(),
        ))
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

fn epoch_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Each query's (timestamps, values), by Id.
async fn metric_data(
    client: &cloudwatch::Client,
    queries: Vec<MetricDataQuery>,
    start: i64,
    end: i64,
) -> std::collections::HashMap<String, (Vec<i64>, Vec<f64>)> {
    let answer = client
        .get_metric_data()
        .set_metric_data_queries(Some(queries))
        .start_time(DateTime::from_secs(start))
        .end_time(DateTime::from_secs(end))
        .scan_by(ScanBy::TimestampAscending)
        .send()
        .await
        .expect("GetMetricData answers");
    answer
        .metric_data_results()
        .iter()
        .map(|result| {
            assert_eq!(result.status_code().map(|s| s.as_str()), Some("Complete"));
            (
                result.id().unwrap().to_owned(),
                (
                    result.timestamps().iter().map(|t| t.secs()).collect(),
                    result.values().to_vec(),
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_sdk_reads_request_counts_errors_and_latency_per_second() {
    let f = fixture().await;
    let start = epoch_seconds() - 1;
    let http = reqwest::Client::new();
    get(&http, &f.alb.data_url, 20).await;
    f.fast.set_status(500);
    get(&http, &format!("{}/any", f.alb.data_url), 5).await;
    get(&http, &format!("{}/slow", f.alb.data_url), 10).await;
    let end = epoch_seconds() + 2;
    let lb = [("LoadBalancer", f.load_balancer.as_str())];
    let fast = [
        ("LoadBalancer", f.load_balancer.as_str()),
        ("TargetGroup", f.fast_group.as_str()),
    ];
    let slow = [
        ("TargetGroup", f.slow_group.as_str()),
        ("LoadBalancer", f.load_balancer.as_str()),
    ];
    let only_group = [("TargetGroup", f.fast_group.as_str())];
    let data = metric_data(
        &f.client,
        vec![
            query("fast_requests", "RequestCount", &fast, 1, "Sum"),
            query("fast_errors", "HTTPCode_Target_5XX_Count", &fast, 1, "Sum"),
            query("fast_ok", "HTTPCode_Target_2XX_Count", &fast, 1, "Sum"),
            query("lb_requests", "RequestCount", &lb, 1, "Sum"),
            query("lb_errors", "HTTPCode_Target_5XX_Count", &lb, 1, "Sum"),
            query("slow_p99", "TargetResponseTime", &slow, 1, "p99"),
            query("slow_p99_whole", "TargetResponseTime", &slow, 3600, "p99"),
            query("slow_max", "TargetResponseTime", &slow, 3600, "Maximum"),
            query("fast_5s", "RequestCount", &fast, 5, "Sum"),
            query("slow_min", "TargetResponseTime", &slow, 3600, "Minimum"),
            query("slow_p50", "TargetResponseTime", &slow, 3600, "p50"),
            query(
                "slow_count",
                "TargetResponseTime",
                &slow,
                3600,
                "SampleCount",
            ),
            query("group_alone", "RequestCount", &only_group, 1, "Sum"),
            query("elb_per_group", "HTTPCode_ELB_5XX_Count", &fast, 1, "Sum"),
            query("other_namespace_or_name", "NoSuchMetric", &lb, 1, "Sum"),
        ],
        start,
        end,
    )
    .await;
    let sum = |id: &str| data[id].1.iter().sum::<f64>();
    assert_eq!(sum("fast_requests"), 25.0);
    assert_eq!(sum("fast_errors"), 5.0);
    assert_eq!(sum("fast_ok"), 20.0);
    assert_eq!(sum("lb_requests"), 35.0);
    assert_eq!(sum("lb_errors"), 5.0);
    // Per 1 s period: consecutive whole seconds within the window, ascending.
    let (times, values) = &data["fast_requests"];
    assert!(
        !times.is_empty() && times.windows(2).all(|w| w[0] < w[1]),
        "{times:?}"
    );
    assert!(
        times.iter().all(|t| (start..end).contains(t)),
        "{times:?} in {start}..{end}"
    );
    assert!(
        values.iter().all(|v| *v >= 1.0 && v.fract() == 0.0),
        "{values:?}"
    );
    // Every answer took at least the 60 ms delay (how much more depends on
    // the machine's load). The p99 of 10 samples is the slowest one, which
    // the histogram answers within its 3.2 %; the p50 lies between.
    let whole = &data["slow_p99_whole"].1;
    assert_eq!(whole.len(), 1, "one period of an hour: {whole:?}");
    // As on AWS, periods of a minute or more start on the minute, shorter
    // ones on multiples of themselves.
    assert_eq!(data["slow_p99_whole"].0, vec![start - start % 60]);
    let (times, values) = &data["fast_5s"];
    assert!(times.iter().all(|t| t % 5 == 0), "{times:?}");
    assert_eq!(values.iter().sum::<f64>(), 25.0);
    let (p99, max, min) = (whole[0], data["slow_max"].1[0], data["slow_min"].1[0]);
    assert!(min >= 0.060 && max < 5.0, "{min}..{max}");
    assert!(p99 <= max && p99 >= max * 0.968, "p99 {p99}, max {max}");
    let p50 = data["slow_p50"].1[0];
    assert!(min <= p50 && p50 <= max, "p50 {p50} in {min}..{max}");
    assert!(
        data["slow_p99"].1.iter().all(|v| (min..=max).contains(v)),
        "{:?}",
        data["slow_p99"]
    );
    assert_eq!(data["slow_count"].1, vec![10.0]);
    // As on AWS: a dimension set matches exactly, the ELB codes are per load
    // balancer only, an unknown metric is no data (not an error).
    assert!(data["group_alone"].1.is_empty());
    assert!(data["elb_per_group"].1.is_empty());
    assert!(data["other_namespace_or_name"].1.is_empty());
    f.alb.stop().await;
}

#[tokio::test]
async fn health_checks_are_not_counted() {
    let f = fixture().await;
    let start = epoch_seconds() - 1;
    get(&reqwest::Client::new(), &f.alb.data_url, 3).await;
    // The target has answered health checks besides the 3 requests.
    let requests = Arc::clone(&f.fast.requests);
    wait_until(
        "a health check reaches the target",
        Duration::from_secs(20),
        || requests.load(Ordering::Relaxed) >= 5,
    )
    .await;
    let fast = [
        ("LoadBalancer", f.load_balancer.as_str()),
        ("TargetGroup", f.fast_group.as_str()),
    ];
    let data = metric_data(
        &f.client,
        vec![query("fast", "RequestCount", &fast, 60, "Sum")],
        start,
        epoch_seconds() + 1,
    )
    .await;
    assert_eq!(data["fast"].1.iter().sum::<f64>(), 3.0);
    f.alb.stop().await;
}

#[tokio::test]
async fn the_load_balancer_counts_its_own_errors() {
    let f = fixture().await;
    let start = epoch_seconds() - 1;
    // A closed port: the target cannot be reached (502).
    let elbv2 = f.alb.client().await;
    let groups = elbv2
        .describe_target_groups()
        .names("slow")
        .send()
        .await
        .unwrap();
    let slow_arn = groups.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let current = elbv2
        .describe_target_health()
        .target_group_arn(&slow_arn)
        .send()
        .await
        .unwrap();
    let registered: Vec<_> = current
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().cloned())
        .collect();
    elbv2
        .deregister_targets()
        .target_group_arn(&slow_arn)
        .set_targets(Some(registered))
        .send()
        .await
        .unwrap();
    elbv2
        .register_targets()
        .target_group_arn(&slow_arn)
        .targets(
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id("127.0.0.1")
                .port(i32::from(closed_port))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let answer = reqwest::get(format!("{}/slow", f.alb.data_url))
        .await
        .unwrap();
    assert_eq!(answer.status(), 502);
    let lb = [("LoadBalancer", f.load_balancer.as_str())];
    let slow = [
        ("LoadBalancer", f.load_balancer.as_str()),
        ("TargetGroup", f.slow_group.as_str()),
    ];
    let data = metric_data(
        &f.client,
        vec![
            query("elb5xx", "HTTPCode_ELB_5XX_Count", &lb, 60, "Sum"),
            query("elb502", "HTTPCode_ELB_502_Count", &lb, 60, "Sum"),
            query("slow_requests", "RequestCount", &slow, 60, "Sum"),
            query(
                "slow_target_5xx",
                "HTTPCode_Target_5XX_Count",
                &slow,
                60,
                "Sum",
            ),
        ],
        start,
        epoch_seconds() + 1,
    )
    .await;
    assert_eq!(data["elb5xx"].1, vec![1.0]);
    assert_eq!(data["elb502"].1, vec![1.0]);
    // A target was chosen: the request counts, but not as the target's 5XX.
    assert_eq!(data["slow_requests"].1, vec![1.0]);
    assert!(data["slow_target_5xx"].1.is_empty());
    // The unreachable target is unhealthy, fast's is healthy (sampled each
    // second, as target-group gauges).
    let fast = [
        ("LoadBalancer", f.load_balancer.as_str()),
        ("TargetGroup", f.fast_group.as_str()),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let data = metric_data(
            &f.client,
            vec![
                query("slow_unhealthy", "UnHealthyHostCount", &slow, 1, "Maximum"),
                query("fast_healthy", "HealthyHostCount", &fast, 1, "Maximum"),
                query("per_lb", "HealthyHostCount", &lb, 1, "Maximum"),
            ],
            epoch_seconds() - 2,
            epoch_seconds() + 1,
        )
        .await;
        assert!(
            data["per_lb"].1.is_empty(),
            "published per target group only"
        );
        let last = |id: &str| data[id].1.last().copied();
        if last("slow_unhealthy") == Some(1.0) && last("fast_healthy") == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "within 30 s: unhealthy {:?}, healthy {:?}",
            data["slow_unhealthy"],
            data["fast_healthy"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    f.alb.stop().await;
}

/// A client that closes before its answer is counted as 460: in
/// `HTTPCode_ELB_4XX_Count` (AWS counts 460 there) and in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_counts_as_460() {
    let f = fixture_with(Duration::from_secs(3)).await;
    let start = epoch_seconds() - 1;
    let mut stream = tokio::net::TcpStream::connect(f.alb.data_url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    let lb = [("LoadBalancer", f.load_balancer.as_str())];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let data = metric_data(
            &f.client,
            vec![query("elb4xx", "HTTPCode_ELB_4XX_Count", &lb, 60, "Sum")],
            start,
            epoch_seconds() + 1,
        )
        .await;
        if data["elb4xx"].1 == vec![1.0] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "HTTPCode_ELB_4XX_Count: {:?}",
            data["elb4xx"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let metrics = reqwest::get(format!("{}/metrics", f.alb.control_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ficus_alb_elb_errors_total{code=\"460\",reason=\"client_closed\"} 1"),
        "{metrics}"
    );
    f.alb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_reads_the_metrics() {
    let f = fixture().await;
    let start = epoch_seconds() - 1;
    get(&reqwest::Client::new(), &f.alb.data_url, 7).await;
    let end = epoch_seconds() + 1;
    let queries = serde_json::json!([{
        "Id": "requests",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/ApplicationELB",
                "MetricName": "RequestCount",
                "Dimensions": [
                    {"Name": "TargetGroup", "Value": f.fast_group},
                    {"Name": "LoadBalancer", "Value": f.load_balancer},
                ],
            },
            "Period": 3600,
            "Stat": "Sum",
        },
    }])
    .to_string();
    let (start_text, end_text) = (start.to_string(), end.to_string());
    let url = f.alb.control_url.clone();
    // The CLI blocks: off the runtime that serves the local ALB.
    let cli = |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::aws_cli_for("cloudwatch", &url, &args)
        })
    };
    let output = cli([
        "get-metric-data",
        "--metric-data-queries",
        &queries,
        "--start-time",
        &start_text,
        "--end-time",
        &end_text,
    ]
    .map(str::to_owned)
    .to_vec())
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let result = &answer["MetricDataResults"][0];
    assert_eq!(result["Id"], "requests");
    assert_eq!(result["StatusCode"], "Complete");
    assert_eq!(result["Values"], serde_json::json!([7.0]));
    let listed = cli([
        "list-metrics",
        "--namespace",
        "AWS/ApplicationELB",
        "--metric-name",
        "RequestCount",
    ]
    .map(str::to_owned)
    .to_vec())
    .await
    .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let metrics = listed["Metrics"].as_array().unwrap();
    assert_eq!(
        metrics.len(),
        2,
        "the load balancer, and fast behind it: {listed}"
    );
    f.alb.stop().await;
}

/// A raw CloudWatch RPC v2 CBOR request, signed for `service`.
async fn raw_cloudwatch(
    control_url: &str,
    operation: &str,
    body: Vec<u8>,
    service: &str,
) -> (u16, Option<String>, Value) {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "{control_url}/service/GraniteServiceVersion20100801/operation/{operation}"
        ))
        .header("host", control_url.trim_start_matches("http://"))
        .header("content-type", "application/cbor")
        .header("smithy-protocol", "rpc-v2-cbor")
        .body(body)
        .unwrap();
    common::sign_for(
        service,
        &mut request,
        &stack_credentials(),
        SystemTime::now(),
    );
    let (parts, body) = request.into_parts();
    let mut builder = reqwest::Client::new().post(parts.uri.to_string());
    for (name, value) in &parts.headers {
        if name != "host" {
            builder = builder.header(name, value);
        }
    }
    let response = builder.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("smithy-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("rpc-v2-cbor")
    );
    let query_error = response
        .headers()
        .get("x-amzn-query-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.unwrap();
    let value: Value = ciborium::from_reader(&body[..]).expect("the answer is CBOR");
    (status, query_error, value)
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn entry<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn one_query(metric: &str, namespace: &str) -> Value {
    Value::Array(vec![Value::Map(vec![
        (text("Id"), text("m1")),
        (
            text("MetricStat"),
            Value::Map(vec![
                (
                    text("Metric"),
                    Value::Map(vec![
                        (text("Namespace"), text(namespace)),
                        (text("MetricName"), text(metric)),
                    ]),
                ),
                (text("Period"), Value::Integer(60.into())),
                (text("Stat"), text("Sum")),
            ]),
        ),
    ])])
}

fn timestamp(seconds: f64) -> Value {
    Value::Tag(1, Box::new(Value::Float(seconds)))
}

#[tokio::test]
async fn bad_input_gets_cloudwatch_errors_and_the_server_keeps_serving() {
    let f = fixture().await;
    let now = epoch_seconds() as f64;
    let url = f.alb.control_url.as_str();
    let expect_error =
        |(status, query_error, body): (u16, Option<String>, Value), code: &str, shape: &str| {
            assert_eq!(status, 400, "{body:?}");
            assert_eq!(
                query_error.as_deref(),
                Some(format!("{code};Sender").as_str())
            );
            let kind = entry(&body, "__type").and_then(Value::as_text).unwrap();
            assert!(kind.ends_with(&format!("#{shape}")), "{kind}");
            assert!(
                !entry(&body, "message")
                    .and_then(Value::as_text)
                    .unwrap()
                    .is_empty()
            );
        };
    // Not CBOR at all, and truncated CBOR.
    for garbage in [b"{\"json\": true}".to_vec(), vec![0xa2, 0x61]] {
        let answer = raw_cloudwatch(url, "GetMetricData", garbage, "monitoring").await;
        expect_error(answer, "SerializationException", "SerializationException");
    }
    // No StartTime.
    let no_start = Value::Map(vec![
        (
            text("MetricDataQueries"),
            one_query("RequestCount", "AWS/ApplicationELB"),
        ),
        (text("EndTime"), timestamp(now)),
    ]);
    let answer = raw_cloudwatch(url, "GetMetricData", cbor(&no_start), "monitoring").await;
    expect_error(
        answer,
        "MissingParameter",
        "MissingRequiredParameterException",
    );
    // StartTime after EndTime.
    let backwards = Value::Map(vec![
        (
            text("MetricDataQueries"),
            one_query("RequestCount", "AWS/ApplicationELB"),
        ),
        (text("StartTime"), timestamp(now)),
        (text("EndTime"), timestamp(now - 60.0)),
    ]);
    let answer = raw_cloudwatch(url, "GetMetricData", cbor(&backwards), "monitoring").await;
    expect_error(
        answer,
        "InvalidParameterValue",
        "InvalidParameterValueException",
    );
    // A period CloudWatch does not have (1, 5, 10, 20, 30 s or a multiple of 60 s).
    let mut odd_period = one_query("RequestCount", "AWS/ApplicationELB");
    if let Value::Array(queries) = &mut odd_period
        && let Value::Map(query) = &mut queries[0]
        && let Value::Map(stat) = &mut query[1].1
    {
        stat[1].1 = Value::Integer(7.into());
    }
    let request = Value::Map(vec![
        (text("MetricDataQueries"), odd_period),
        (text("StartTime"), timestamp(now - 60.0)),
        (text("EndTime"), timestamp(now)),
    ]);
    let answer = raw_cloudwatch(url, "GetMetricData", cbor(&request), "monitoring").await;
    expect_error(
        answer,
        "InvalidParameterValue",
        "InvalidParameterValueException",
    );
    // Wrong namespace and unknown metric: no data, as on AWS (integer
    // timestamps are accepted too).
    for (metric, namespace) in [
        ("RequestCount", "AWS/EC2"),
        ("NoSuchMetric", "AWS/ApplicationELB"),
    ] {
        let request = Value::Map(vec![
            (text("MetricDataQueries"), one_query(metric, namespace)),
            (
                text("StartTime"),
                Value::Tag(1, Box::new(Value::Integer((now as i64 - 60).into()))),
            ),
            (text("EndTime"), timestamp(now)),
        ]);
        let (status, _, body) =
            raw_cloudwatch(url, "GetMetricData", cbor(&request), "monitoring").await;
        assert_eq!(status, 200, "{body:?}");
        let result = &entry(&body, "MetricDataResults")
            .unwrap()
            .as_array()
            .unwrap()[0];
        assert_eq!(entry(result, "Values"), Some(&Value::Array(vec![])));
        assert_eq!(entry(result, "StatusCode"), Some(&text("Complete")));
    }
    // Signed for the ELBv2 API: refused here (and the other way round).
    let request = Value::Map(vec![
        (
            text("MetricDataQueries"),
            one_query("RequestCount", "AWS/ApplicationELB"),
        ),
        (text("StartTime"), timestamp(now - 60.0)),
        (text("EndTime"), timestamp(now)),
    ]);
    let (status, query_error, _) =
        raw_cloudwatch(url, "GetMetricData", cbor(&request), "elasticloadbalancing").await;
    assert_eq!(status, 403);
    assert_eq!(query_error.as_deref(), Some("SignatureDoesNotMatch;Sender"));
    let mut elbv2_signed_for_monitoring = http::Request::builder()
        .method("POST")
        .uri(format!("{url}/"))
        .header("host", url.trim_start_matches("http://"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(common::form_body(&[
            ("Action", "DescribeLoadBalancers"),
            ("Version", "2015-12-01"),
        ]))
        .unwrap();
    common::sign_for(
        "monitoring",
        &mut elbv2_signed_for_monitoring,
        &stack_credentials(),
        SystemTime::now(),
    );
    assert_eq!(common::send(elbv2_signed_for_monitoring).await.status, 403);
    // An SDK error names the code, and the server still answers.
    let err = f
        .client
        .get_metric_data()
        .metric_data_queries(query("M1", "RequestCount", &[], 60, "Sum"))
        .start_time(DateTime::from_secs(now as i64 - 60))
        .end_time(DateTime::from_secs(now as i64))
        .send()
        .await
        .unwrap_err();
    use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    let listed = f.client.list_metrics().send().await.unwrap();
    let names: std::collections::HashSet<&str> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    assert!(!names.contains("RequestCount"), "no traffic yet: {names:?}");
    assert!(
        listed.metrics().iter().all(|m| m.dimensions().len() == 2),
        "only the target groups' health so far: {listed:?}"
    );
    f.alb.stop().await;
}

/// A CloudWatch Query API form (`Version=2010-08-01`) POSTed to `/`,
/// signed for `service`.
async fn query_form(control_url: &str, params: &[(&str, &str)], service: &str) -> common::Answer {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("{control_url}/"))
        .header("host", control_url.trim_start_matches("http://"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(common::form_body(params))
        .unwrap();
    common::sign_for(
        service,
        &mut request,
        &stack_credentials(),
        SystemTime::now(),
    );
    common::send(request).await
}

#[tokio::test]
async fn older_clients_read_the_metrics_with_the_query_api() {
    let f = fixture().await;
    let start = epoch_seconds() - 1;
    get(&reqwest::Client::new(), &f.alb.data_url, 4).await;
    let (start_text, end_text) = (start.to_string(), (epoch_seconds() + 1).to_string());
    let params = [
        ("Action", "GetMetricData"),
        ("Version", "2010-08-01"),
        ("MetricDataQueries.member.1.Id", "requests"),
        (
            "MetricDataQueries.member.1.MetricStat.Metric.Namespace",
            "AWS/ApplicationELB",
        ),
        (
            "MetricDataQueries.member.1.MetricStat.Metric.MetricName",
            "RequestCount",
        ),
        (
            "MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name",
            "LoadBalancer",
        ),
        (
            "MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Value",
            f.load_balancer.as_str(),
        ),
        ("MetricDataQueries.member.1.MetricStat.Period", "3600"),
        ("MetricDataQueries.member.1.MetricStat.Stat", "Sum"),
        ("StartTime", start_text.as_str()),
        ("EndTime", end_text.as_str()),
    ];
    let answer = query_form(&f.alb.control_url, &params, "monitoring").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.starts_with(
            r#"<GetMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">"#
        ),
        "{}",
        answer.body
    );
    assert_eq!(
        answer.element("Values"),
        Some("<member>4</member>"),
        "{}",
        answer.body
    );
    assert_eq!(answer.element("StatusCode"), Some("Complete"));
    // Signed for the ELBv2 API: refused; a bad parameter: CloudWatch's code.
    let refused = query_form(&f.alb.control_url, &params, "elasticloadbalancing").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let mut bad = params.to_vec();
    bad.retain(|(k, _)| *k != "StartTime");
    let missing = query_form(&f.alb.control_url, &bad, "monitoring").await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.element("Code"),
        Some("MissingParameter"),
        "{}",
        missing.body
    );
    f.alb.stop().await;
}

#[tokio::test]
async fn max_datapoints_pages_with_next_token() {
    let f = fixture().await;
    let start = epoch_seconds() - 1;
    // Requests in at least three different seconds (one per second at least).
    let http = reqwest::Client::new();
    let mut sent = 0;
    let mut seconds = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seconds.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "three seconds pass");
        get(&http, &f.alb.data_url, 1).await;
        sent += 1;
        seconds.insert(epoch_seconds());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = epoch_seconds() + 1;
    let lb = [("LoadBalancer", f.load_balancer.as_str())];
    let (mut token, mut pages, mut total, mut timestamps) = (None::<String>, 0, 0.0, Vec::new());
    loop {
        let answer = f
            .client
            .get_metric_data()
            .metric_data_queries(query("requests", "RequestCount", &lb, 1, "Sum"))
            .start_time(DateTime::from_secs(start))
            .end_time(DateTime::from_secs(end))
            .max_datapoints(1)
            .set_next_token(token.take())
            .send()
            .await
            .expect("GetMetricData answers");
        let result = &answer.metric_data_results()[0];
        assert!(result.values().len() <= 1);
        total += result.values().iter().sum::<f64>();
        timestamps.extend(result.timestamps().iter().map(|t| t.secs()));
        pages += 1;
        match answer.next_token() {
            Some(next) => {
                assert_eq!(
                    result.status_code().map(|s| s.as_str()),
                    Some("PartialData")
                );
                token = Some(next.to_owned());
            }
            None => break,
        }
        assert!(pages < 100, "pagination ends");
    }
    assert_eq!(total, f64::from(sent));
    assert!(pages >= 3, "one datapoint per page: {pages} pages");
    // Newest first (ScanBy defaults to TimestampDescending), none twice.
    assert!(timestamps.windows(2).all(|w| w[0] > w[1]), "{timestamps:?}");
    let bad = f
        .client
        .get_metric_data()
        .metric_data_queries(query("requests", "RequestCount", &lb, 1, "Sum"))
        .start_time(DateTime::from_secs(start))
        .end_time(DateTime::from_secs(end))
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
    assert_eq!(bad.code(), Some("InvalidNextToken"));
    f.alb.stop().await;
}
