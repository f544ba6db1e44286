//! Access logs: switched on by the load balancer's `access_logs.s3.*`
//! attributes, written in AWS's format (checked field by field with
//! `alb::access_log`), gzip files in AWS's key layout under
//! `--access-log-root`, delivered every interval and at a clean shutdown.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alb::access_log::Record;

use crate::common::{RunningAlb, live_target, settings_for, write_stack};

/// Every `.log.gz` file under `dir`.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(".log.gz") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every file under `dir`, whatever its name.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// The lines of every file under `dir`, parsed.
fn records(dir: &Path) -> Vec<Record> {
    let mut records = Vec::new();
    for file in log_files(dir) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&file).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            records.push(Record::parse(line).unwrap_or_else(|e| panic!("{line}: {e}")));
        }
    }
    records
}

/// Waits (10 s at most) until `dir` holds `count` logged requests.
async fn wait_for_records(dir: &Path, count: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = records(dir);
        if found.len() >= count || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Logged {
    alb: RunningAlb,
    client: aws_sdk_elasticloadbalancingv2::Client,
    load_balancer: String,
    app_group: String,
    root: tempfile::TempDir,
    _state: tempfile::TempDir,
}

async fn start(interval: Duration) -> Logged {
    start_at_level(interval, 1).await
}

/// A local ALB whose log files are gzip at `level` (`--access-log-compression`).
async fn start_at_level(interval: Duration, level: u32) -> Logged {
    let state = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let port = live_target("hello").await;
    let mut settings = settings_for(state.path());
    settings.stack = Some(write_stack(state.path(), &[("app", &[port])]));
    settings.data_plane.access_log_root = Some(root.path().to_owned());
    settings.data_plane.access_log_interval = interval;
    settings.data_plane.access_log_compression = level;
    let alb = RunningAlb::start_with(settings).await;
    let client = alb.client().await;
    let balancers = client.describe_load_balancers().send().await.unwrap();
    let load_balancer = balancers.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let groups = client.describe_target_groups().send().await.unwrap();
    let app_group = groups.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    Logged {
        alb,
        client,
        load_balancer,
        app_group,
        root,
        _state: state,
    }
}

/// Turns logging on: bucket `logs-bucket`, prefix `edge`.
async fn enable(logged: &Logged) {
    let attribute = |key: &str, value: &str| {
        aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
            .key(key)
            .value(value)
            .build()
    };
    logged
        .client
        .modify_load_balancer_attributes()
        .load_balancer_arn(&logged.load_balancer)
        .attributes(attribute("access_logs.s3.enabled", "true"))
        .attributes(attribute("access_logs.s3.bucket", "logs-bucket"))
        .attributes(attribute("access_logs.s3.prefix", "edge"))
        .send()
        .await
        .expect("logging switched on");
}

async fn get(url: &str) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .user_agent("ficus-test \"quoted\"/1.0")
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .expect("request through the ALB")
        .status()
        .as_u16()
}

#[tokio::test]
async fn lines_follow_aws_field_list_and_files_aws_key_layout() {
    let logged = start(Duration::from_secs(1)).await;
    // Off by default: this request is not logged.
    assert_eq!(get(&format!("{}/before", logged.alb.data_url)).await, 200);
    enable(&logged).await;
    for path in ["/api/users/1", "/API/USERS/1?x=1"] {
        assert_eq!(get(&format!("{}{path}", logged.alb.data_url)).await, 200);
    }
    let found = wait_for_records(logged.root.path(), 2).await;
    assert_eq!(found.len(), 2, "two requests logged after enabling");
    let app_arn = &logged.app_group;
    for record in &found {
        assert_eq!(record.shape_problems(), Vec::<String>::new(), "{record:?}");
        assert_eq!(record.values().len(), alb::access_log::FIELDS.len());
        assert_eq!(record.target_group_arn(), Some(app_arn.as_str()));
        assert_eq!(record.get("elb_status_code"), "200");
        assert_eq!(record.get("target_status_code"), "200");
        assert_eq!(record.get("matched_rule_priority"), "0");
        assert_eq!(record.get("actions_executed"), "forward");
        assert_eq!(record.get("user_agent"), "ficus-test \"quoted\"/1.0");
        assert_eq!(record.client(), "127.0.0.1");
        assert!(record.get("elb").starts_with("app/test/"), "{record:?}");
    }
    // Each worker writes its own lines: a file is not in request order (nor
    // are AWS's).
    let mut paths: Vec<String> = found.iter().filter_map(Record::path).collect();
    paths.sort();
    assert_eq!(paths, ["/API/USERS/1", "/api/users/1"]);
    let upper = found
        .iter()
        .find(|r| r.path().as_deref() == Some("/API/USERS/1"))
        .expect("the upper-case request's line");
    assert_eq!(upper.target().as_deref(), Some("/API/USERS/1?x=1"));
    // AWS's key: bucket/prefix/AWSLogs/ACCOUNT/elasticloadbalancing/REGION/YYYY/MM/DD/...
    let file = &log_files(logged.root.path())[0];
    let key = file
        .strip_prefix(logged.root.path())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let parts: Vec<&str> = key.split('/').collect();
    assert_eq!(
        parts[..6],
        [
            "logs-bucket",
            "edge",
            "AWSLogs",
            "000000000000",
            "elasticloadbalancing",
            "us-east-1"
        ]
    );
    let name = parts[9];
    let prefix = format!(
        "000000000000_elasticloadbalancing_us-east-1_{}_",
        found[0].get("elb").replace('/', ".")
    );
    assert!(
        name.starts_with(&prefix) && name.ends_with(".log.gz"),
        "{name}"
    );
    assert_eq!(name.split('_').count(), 7, "{name}");
    logged.alb.stop().await;
}

#[tokio::test]
async fn a_clean_shutdown_delivers_what_is_buffered() {
    // A 5-minute interval: only the shutdown can deliver within the test.
    let logged = start(Duration::from_secs(300)).await;
    enable(&logged).await;
    assert_eq!(get(&format!("{}/one", logged.alb.data_url)).await, 200);
    // The interval's file is written outside the bucket's folder, as S3
    // never shows half an object: the bucket holds nothing until delivery.
    let in_progress = logged.root.path().join(".in-progress");
    let deadline = Instant::now() + Duration::from_secs(10);
    while all_files(&in_progress).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no interval file under {in_progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bucket = logged.root.path().join("logs-bucket");
    assert_eq!(all_files(&bucket), Vec::<PathBuf>::new());
    assert!(log_files(logged.root.path()).is_empty());
    let root = logged.root;
    logged.alb.stop().await;
    let found = records(root.path());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path().as_deref(), Some("/one"));
    // Delivered: renamed into the bucket, nothing left in progress.
    assert_eq!(
        all_files(&root.path().join(".in-progress")),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn stored_gzip_files_read_as_gzip() {
    // Level 0: gzip of stored blocks, read by any gzip reader.
    let logged = start_at_level(Duration::from_secs(1), 0).await;
    enable(&logged).await;
    for path in ["/stored/1", "/stored/2"] {
        assert_eq!(get(&format!("{}{path}", logged.alb.data_url)).await, 200);
    }
    let found = wait_for_records(logged.root.path(), 2).await;
    // Each worker's lines in order; two connections may be two workers.
    let mut paths: Vec<String> = found.iter().filter_map(Record::path).collect();
    paths.sort();
    assert_eq!(paths, ["/stored/1", "/stored/2"]);
    let file = &log_files(logged.root.path())[0];
    let bytes = std::fs::read(file).unwrap();
    // Stored: the lines' text is in the file as it is.
    assert!(
        String::from_utf8_lossy(&bytes).contains("GET http://"),
        "{file:?}"
    );
    logged.alb.stop().await;
}
