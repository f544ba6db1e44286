//! Load balancer and target group attributes: described, modified, refused
//! and persisted as AWS does, through the SDK, the AWS CLI and the stack file.

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerAttribute, TargetGroupAttribute};

use crate::common::{self, RunningAlb, aws_cli, code_of, settings_for, stack_arns};

fn lb_attribute(key: &str, value: &str) -> LoadBalancerAttribute {
    LoadBalancerAttribute::builder()
        .key(key)
        .value(value)
        .build()
}

fn tg_attribute(key: &str, value: &str) -> TargetGroupAttribute {
    TargetGroupAttribute::builder()
        .key(key)
        .value(value)
        .build()
}

/// Attributes as a key → value map, whichever kind the SDK answered with.
fn to_map<'a>(
    pairs: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> HashMap<String, String> {
    pairs
        .map(|(key, value)| {
            (
                key.unwrap_or_default().to_owned(),
                value.unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn lb_map(attributes: &[LoadBalancerAttribute]) -> HashMap<String, String> {
    to_map(attributes.iter().map(|a| (a.key(), a.value())))
}

fn tg_map(attributes: &[TargetGroupAttribute]) -> HashMap<String, String> {
    to_map(attributes.iter().map(|a| (a.key(), a.value())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_described_modified_refused_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let alb = RunningAlb::start_with(settings_for(dir.path())).await;
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    let lb = arns.load_balancer.as_str();
    let users = arns.target_group["users"].as_str();

    // Every key AWS returns for an ALB, with AWS's defaults.
    let described = client
        .describe_load_balancer_attributes()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    let before = lb_map(described.attributes());
    for (key, value) in [
        ("deletion_protection.enabled", "false"),
        ("idle_timeout.timeout_seconds", "60"),
        ("client_keep_alive.seconds", "3600"),
        ("routing.http.desync_mitigation_mode", "defensive"),
        ("routing.http.drop_invalid_header_fields.enabled", "false"),
        ("routing.http.xff_header_processing.mode", "append"),
        ("routing.http.preserve_host_header.enabled", "false"),
        ("routing.http2.enabled", "true"),
        ("access_logs.s3.enabled", "false"),
        ("access_logs.s3.bucket", ""),
        ("load_balancing.cross_zone.enabled", "true"),
        ("waf.fail_open.enabled", "false"),
    ] {
        assert_eq!(before.get(key).map(String::as_str), Some(value), "{key}");
    }

    // Set: the answer and later descriptions carry the new values.
    let modified = client
        .modify_load_balancer_attributes()
        .load_balancer_arn(lb)
        .attributes(lb_attribute("idle_timeout.timeout_seconds", "30"))
        .attributes(lb_attribute("access_logs.s3.enabled", "true"))
        .attributes(lb_attribute("access_logs.s3.bucket", "ficus-logs"))
        .attributes(lb_attribute(
            "routing.http.desync_mitigation_mode",
            "strictest",
        ))
        .send()
        .await
        .unwrap();
    let answered = lb_map(modified.attributes());
    assert_eq!(answered["idle_timeout.timeout_seconds"], "30");
    assert_eq!(answered["access_logs.s3.bucket"], "ficus-logs");

    // Refused as AWS refuses, and all or nothing: the valid first key of a
    // refused call is not applied.
    let unknown = client
        .modify_load_balancer_attributes()
        .load_balancer_arn(lb)
        .attributes(lb_attribute("idle_timeout.timeout_seconds", "45"))
        .attributes(lb_attribute("idle_timeout", "45"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&unknown), "ValidationError");
    assert!(format!("{unknown:?}").contains("'idle_timeout' is not recognized"));
    let out_of_range = client
        .modify_load_balancer_attributes()
        .load_balancer_arn(lb)
        .attributes(lb_attribute("idle_timeout.timeout_seconds", "4001"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&out_of_range), "InvalidConfigurationRequest");
    let no_bucket = client
        .modify_load_balancer_attributes()
        .load_balancer_arn(lb)
        .attributes(lb_attribute("access_logs.s3.bucket", ""))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&no_bucket), "InvalidConfigurationRequest");
    // Bucket names follow S3's rules: nothing can lead outside --access-log-root.
    for (key, value, says) in [
        (
            "access_logs.s3.bucket",
            "../../escape",
            "not a valid S3 bucket name",
        ),
        (
            "access_logs.s3.bucket",
            "My_Bucket",
            "not a valid S3 bucket name",
        ),
        (
            "access_logs.s3.bucket",
            "10.0.0.1",
            "not a valid S3 bucket name",
        ),
        ("access_logs.s3.prefix", "edge/../../x", "'..' segment"),
    ] {
        let refused = client
            .modify_load_balancer_attributes()
            .load_balancer_arn(lb)
            .attributes(lb_attribute(key, value))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code_of(&refused), "InvalidConfigurationRequest", "{value}");
        assert!(format!("{refused:?}").contains(says), "{refused:?}");
    }
    let missing = client
        .describe_load_balancer_attributes()
        .load_balancer_arn(format!("{lb}0"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&missing), "LoadBalancerNotFound");

    // Target groups: defaults (the delay is the process default), set, refused.
    let described = client
        .describe_target_group_attributes()
        .target_group_arn(users)
        .send()
        .await
        .unwrap();
    let tg = tg_map(described.attributes());
    for (key, value) in [
        ("deregistration_delay.timeout_seconds", "5"),
        ("stickiness.enabled", "false"),
        ("stickiness.type", "lb_cookie"),
        ("stickiness.lb_cookie.duration_seconds", "86400"),
        ("slow_start.duration_seconds", "0"),
        ("load_balancing.algorithm.type", "round_robin"),
        (
            "load_balancing.cross_zone.enabled",
            "use_load_balancer_configuration",
        ),
    ] {
        assert_eq!(tg.get(key).map(String::as_str), Some(value), "{key}");
    }
    client
        .modify_target_group_attributes()
        .target_group_arn(users)
        .attributes(tg_attribute("stickiness.enabled", "true"))
        .attributes(tg_attribute("stickiness.lb_cookie.duration_seconds", "120"))
        .attributes(tg_attribute("deregistration_delay.timeout_seconds", "0"))
        .send()
        .await
        .unwrap();
    for (key, value) in [
        ("slow_start.duration_seconds", "29"),
        ("stickiness.lb_cookie.duration_seconds", "604801"),
        ("load_balancing.algorithm.type", "fastest"),
    ] {
        let refused = client
            .modify_target_group_attributes()
            .target_group_arn(users)
            .attributes(tg_attribute(key, value))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code_of(&refused), "InvalidConfigurationRequest", "{key}");
    }
    let unknown = client
        .modify_target_group_attributes()
        .target_group_arn(users)
        .attributes(tg_attribute("stickiness.lb_cookie.duration", "60"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&unknown), "ValidationError");

    // Kept across a restart (the state directory).
    alb.stop().await;
    let alb = RunningAlb::start_with(settings_for(dir.path())).await;
    let client = alb.client().await;
    let after = client
        .describe_load_balancer_attributes()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    let after = lb_map(after.attributes());
    assert_eq!(after["idle_timeout.timeout_seconds"], "30");
    assert_eq!(after["routing.http.desync_mitigation_mode"], "strictest");
    assert_eq!(after.len(), before.len(), "the same keys are returned");
    let tg = client
        .describe_target_group_attributes()
        .target_group_arn(users)
        .send()
        .await
        .unwrap();
    let tg = tg_map(tg.attributes());
    assert_eq!(tg["stickiness.enabled"], "true");
    assert_eq!(tg["stickiness.lb_cookie.duration_seconds"], "120");
    assert_eq!(tg["deregistration_delay.timeout_seconds"], "0");
    alb.stop().await;
}

/// Runs the AWS CLI off the async runtime.
async fn cli(control_url: &str, args: &[&str]) -> std::process::Output {
    let (url, args): (String, Vec<String>) = (
        control_url.to_owned(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        aws_cli(&url, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_group_attributes_set_with_the_aws_cli_are_described_by_it() {
    let (alb, _client, arns) = RunningAlb::start_with_arns().await;
    let url = alb.control_url.as_str();
    let threads = arns.target_group["threads"].as_str();

    let set = cli(
        url,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            threads,
            "--attributes",
            "Key=slow_start.duration_seconds,Value=30",
            "Key=deregistration_delay.timeout_seconds,Value=20",
        ],
    )
    .await;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let described = cli(
        url,
        &[
            "describe-target-group-attributes",
            "--target-group-arn",
            threads,
        ],
    )
    .await;
    assert!(described.status.success());
    let json: serde_json::Value = serde_json::from_slice(&described.stdout).unwrap();
    let value = |key: &str| {
        json["Attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["Key"] == key)
            .map(|a| a["Value"].as_str().unwrap().to_owned())
    };
    assert_eq!(value("slow_start.duration_seconds").as_deref(), Some("30"));
    assert_eq!(
        value("deregistration_delay.timeout_seconds").as_deref(),
        Some("20")
    );

    let refused = cli(
        url,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            threads,
            "--attributes",
            "Key=load_balancing.algorithm.type,Value=least_outstanding_requests",
        ],
    )
    .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("InvalidConfigurationRequest") && stderr.contains("slow start"),
        "{stderr}"
    );
    alb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_file_sets_attributes_and_names_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let stack = common::write_stack(dir.path(), &[("monolith", &[1])]);
    let text = std::fs::read_to_string(&stack).unwrap().replace(
        "[load_balancer]\nname = \"test\"\n",
        "[load_balancer]\nname = \"test\"\nattributes = { \"idle_timeout.timeout_seconds\" = \"7\", \"routing.http2.enabled\" = \"false\" }\n",
    );
    std::fs::write(&stack, &text).unwrap();
    let mut settings = settings_for(&dir.path().join("state"));
    settings.stack = Some(stack.clone());
    let alb = RunningAlb::start_with(settings).await;
    let client = alb.client().await;
    let lbs = client.describe_load_balancers().send().await.unwrap();
    let lb = lbs.load_balancers()[0].load_balancer_arn().unwrap();
    let described = client
        .describe_load_balancer_attributes()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    let map = lb_map(described.attributes());
    assert_eq!(map["idle_timeout.timeout_seconds"], "7");
    assert_eq!(map["routing.http2.enabled"], "false");
    alb.stop().await;

    std::fs::write(&stack, text.replace("\"7\"", "\"0\"")).unwrap();
    let mut settings = settings_for(&dir.path().join("other-state"));
    settings.stack = Some(stack);
    let error = match local_alb::Application::build(settings).await {
        Ok(_) => panic!("a stack file with idle_timeout 0 must be refused"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("load_balancer.attributes.\"idle_timeout.timeout_seconds\" = \"0\""),
        "{error}"
    );
}

/// `routing.http2.enabled = false`: the HTTP/2 preface is not answered as
/// HTTP/2 (clients must use HTTP/1.1), and HTTP/1.1 is served as before.
#[tokio::test]
async fn http2_turned_off_refuses_the_http2_preface() {
    use crate::common_dataplane::{Backend, RunningAlb, client, one_group_state, quick_options};
    let backend = Backend::start("echo").await;
    let mut state = one_group_state("echo", &backend);
    state.load_balancers[0].attributes.http2_enabled = false;
    let alb = RunningAlb::start(&state, quick_options()).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    assert!(h2.get(alb.url("/")).send().await.is_err());
    let answer =
        crate::common_dataplane::raw_exchange(alb.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let response = client().get(alb.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    alb.stop().await;
}

/// `deregistration_delay.timeout_seconds` is the group's own: 0 ends
/// draining at once, while a group without it drains for the process
/// default.
#[tokio::test]
async fn the_deregistration_delay_attribute_decides_how_long_targets_drain() {
    use crate::common_dataplane::{
        Backend, RunningAlb, StateBuilder, forward, health_check, quick_options, tg_arn,
    };
    use local_alb::model::Priority;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let state = |registered: bool| {
        let targets = |backend: &Backend| {
            if registered {
                vec![backend.target()]
            } else {
                vec![]
            }
        };
        let mut state = StateBuilder::new()
            .target_group("quick", targets(&a), health_check(30, 5))
            .target_group("default", targets(&b), health_check(30, 5))
            .rule(Priority::Default, vec![], forward("quick"))
            .build();
        state.target_groups[0]
            .attributes
            .deregistration_delay_seconds = Some(0);
        state
    };
    let alb = RunningAlb::start(&state(true), quick_options()).await;
    alb.plane.publish(&state(false));
    assert!(alb.plane.draining_targets(&tg_arn("quick")).is_empty());
    assert_eq!(
        alb.plane.draining_targets(&tg_arn("default")),
        vec![b.target()]
    );
    alb.stop().await;
}

/// The case: `idle_timeout.timeout_seconds=2` set with the AWS CLI
/// reaches the data plane's head policy. A silent partial request gets 408
/// within 4 s; one that trickles a byte a second for 5 s, then completes,
/// gets 200 (the timer restarts with each byte).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_set_with_the_aws_cli_acts_on_the_data_plane() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let backend = crate::common_dataplane::Backend::start("monolith").await;
    let dir = tempfile::tempdir().unwrap();
    let stack = common::write_stack(dir.path(), &[("monolith", &[backend.addr.port()])]);
    let mut settings = settings_for(&dir.path().join("state"));
    settings.stack = Some(stack);
    let alb = RunningAlb::start_with(settings).await;
    let client = alb.client().await;
    let lbs = client.describe_load_balancers().send().await.unwrap();
    let lb = lbs.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let set = cli(
        &alb.control_url,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb,
            "--attributes",
            "Key=idle_timeout.timeout_seconds,Value=2",
        ],
    )
    .await;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let addr = alb.data_url.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = http.get(format!("{}/", alb.data_url)).send().await;
        if answer.is_ok_and(|a| a.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the target never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let silent = async {
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut answer)).await;
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    };
    let trickled = async {
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let (slow, rest) = request.split_at(5);
        for byte in slow {
            stream.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        stream.write_all(rest).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut answer)).await;
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    };
    let ((silent, silent_after), (trickled, trickled_over)) = tokio::join!(silent, trickled);
    assert!(silent.starts_with("HTTP/1.1 408"), "{silent}");
    assert!(
        silent_after >= Duration::from_millis(1900) && silent_after < Duration::from_secs(4),
        "408 after {silent_after:?}"
    );
    assert!(trickled.starts_with("HTTP/1.1 200"), "{trickled}");
    assert!(
        trickled_over >= Duration::from_secs(5),
        "trickled for {trickled_over:?}"
    );
    alb.stop().await;
}
