//! Access logs to the end of a migration: the local ALB's logs read by
//! `migrate leaks` (case-variant spellings the patterns miss), `retire`
//! refusing on them and succeeding without them, `verify --from-alb-log`
//! replaying the local ALB's own lines, and `--from-alb-log s3://` against
//! moto's S3.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use alb::access_log::Record;

use crate::support::*;

/// A local stack whose ALB logs every request (1-second files) under the
/// returned directory: bucket `alb-logs`, prefix `prod`.
pub(crate) fn logging_stack() -> (LocalStack, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().display().to_string();
    let stack = LocalStack::start_with_alb_args(&[
        "--access-log-root",
        &root_path,
        "--access-log-interval",
        "1s",
    ]);
    let rt = runtime();
    let elb = stack.elb(&rt);
    rt.block_on(async {
        let balancers = elb
            .describe_load_balancers()
            .names("ficus-local")
            .send()
            .await
            .unwrap();
        let arn = balancers.load_balancers()[0].load_balancer_arn().unwrap();
        let attribute = |key: &str, value: &str| {
            aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
                .key(key)
                .value(value)
                .build()
        };
        elb.modify_load_balancer_attributes()
            .load_balancer_arn(arn)
            .attributes(attribute("access_logs.s3.enabled", "true"))
            .attributes(attribute("access_logs.s3.bucket", "alb-logs"))
            .attributes(attribute("access_logs.s3.prefix", "prod"))
            .send()
            .await
            .unwrap();
    });
    (stack, root)
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(".log.gz") {
                found.push(path);
            }
        }
    }
    found
}

fn logged(dir: &Path) -> Vec<Record> {
    let mut records = Vec::new();
    for file in log_files(dir) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(file).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        records.extend(text.lines().map(|line| Record::parse(line).unwrap()));
    }
    records
}

/// Waits until `count` requests for paths starting with `prefix` (any case)
/// are in the delivered files.
pub(crate) fn wait_logged(dir: &Path, prefix: &str, count: usize) {
    eventually(Duration::from_secs(10), "the access log files", || {
        logged(dir)
            .iter()
            .filter_map(Record::path)
            .filter(|path| path.to_ascii_lowercase().starts_with(prefix))
            .count()
            >= count
    });
}

pub(crate) fn shifted_users(stack: &LocalStack) -> Operator {
    let op = stack.ready_operator("1s");
    let shift = op.run(&["shift", "users", "--steps", "100", "--lock-settle", "0s"]);
    assert_eq!(shift.code, 0, "{shift}");
    op
}

#[test]
fn retire_succeeds_on_lower_case_traffic_and_refuses_once_a_case_variant_leaks() {
    let (stack, root) = logging_stack();
    let op = shifted_users(&stack);
    // Lower-case requests only: no leaks, and retire leaves the service alone.
    for _ in 0..3 {
        assert_eq!(http_get(&format!("{}/api/users/2", stack.data_url)).0, 200);
    }
    wait_logged(root.path(), "/api/users/2", 3);
    let logs = root.path().display().to_string();
    let leaks = op.run(&["leaks", "users", "--from-alb-log", &logs]);
    assert_eq!(leaks.code, 0, "{leaks}");
    assert!(leaks.stdout.contains("no leaks"), "{leaks}");
    no_evidence_is_never_no_leaks(&op, &logs);
    an_unfinished_bake_stops_retire(&stack, &op, &logs);
    let blank = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        &logs,
        "--accept-leaks",
        "--reason",
        " ",
    ]);
    assert_eq!(blank.code, 2, "{blank}");
    assert!(blank.stderr.contains("--reason is blank"), "{blank}");

    let retire = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        &logs,
        "--lock-settle",
        "0s",
    ]);
    assert_eq!(retire.code, 0, "{retire}");
    assert!(
        retire
            .stdout
            .contains("monolith's code for these paths can go"),
        "{retire}"
    );
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let (_, weights) = route_rule(&rt, &elb, &listener, "users").unwrap();
    assert_eq!(
        weights.into_iter().collect::<Vec<_>>(),
        [("users".to_owned(), 100)]
    );
    let rule = route_rule_arn(&rt, &elb, &listener, "users");
    assert!(tags_of(&rt, &elb, &rule).contains_key("ficus:retired"));
    let status = op.run(&["status", "users"]);
    assert!(status.stdout.contains("retired"), "{status}");
    let journal = op.journal();
    assert_eq!(journal.last().unwrap()["command"], "retire");

    // `rollback --all` skips a retired route, saying so, and succeeds;
    // rolling it back alone needs --yes.
    let all = op.run(&["rollback", "--all", "--lock-settle", "0s"]);
    assert_eq!(all.code, 0, "{all}");
    assert!(
        all.stdout
            .contains("users: retired, skipped: the monolith may no longer serve its paths; `migrate rollback users --yes` rolls it back"),
        "{all}"
    );
    assert!(tags_of(&rt, &elb, &rule).contains_key("ficus:retired"));
    let refused = op.run(&["rollback", "users", "--lock-settle", "0s"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("--yes"), "{refused}");
    let rollback = op.run(&["rollback", "users", "--yes", "--lock-settle", "0s"]);
    assert_eq!(rollback.code, 0, "{rollback}");

    // Shifted again, a case variant the patterns miss reaches the monolith.
    let shift = op.run(&["shift", "users", "--steps", "100", "--lock-settle", "0s"]);
    assert_eq!(shift.code, 0, "{shift}");
    // A spelling the monolith answers 404 (a longer word): not a leak.
    assert_eq!(http_get(&format!("{}/aPI/usersx", stack.data_url)).0, 404);
    for _ in 0..5 {
        assert_eq!(http_get(&format!("{}/API/USERS/1", stack.data_url)).0, 200);
        assert_eq!(http_get(&format!("{}/api/users/1", stack.data_url)).0, 200);
    }
    wait_logged(root.path(), "/api/users/1", 10);

    let leaks = op.run(&[
        "leaks",
        "users",
        "--from-alb-log",
        &logs,
        "--output",
        "json",
    ]);
    assert_eq!(leaks.code, 1, "{leaks}");
    let report: serde_json::Value = serde_json::from_str(&leaks.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report:#}");
    let found = report["leaks"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{report:#}");
    assert_eq!(found[0]["path"], "/API/USERS/1");
    assert_eq!(found[0]["count"], 5);
    assert_eq!(found[0]["kind"], "pattern-miss");
    assert_eq!(found[0]["pattern"], "/API/USERS*");
    assert!((found[0]["share"].as_f64().unwrap() - 5.0 / 13.0).abs() < 1e-9);
    assert_eq!(
        report["answered_404"],
        serde_json::json!([{"path": "/aPI/usersx", "count": 1}]),
        "{report:#}"
    );
    assert_eq!(found[0]["example_client"], "127.0.0.1");
    let text = op.run(&["leaks", "users", "--from-alb-log", &logs]);
    assert_eq!(text.code, 1, "{text}");
    assert!(text.stdout.contains("/API/USERS/1  ×5"), "{text}");
    assert!(text.stdout.contains("\"/API/USERS*\""), "{text}");
    assert!(!text.stdout.contains("/api/users/1  "), "{text}");

    let plan = op.run(&["plan", "users", "--from-alb-log", &logs]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(
        plan.stdout
            .contains("access logs: 5 of the route's 13 requests"),
        "{plan}"
    );
    let plan = op.run(&["plan", "users", "--from-alb-log", &logs, "--since", "1h"]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(
        plan.stdout
            .contains("access logs: 5 of the route's 13 requests"),
        "{plan}"
    );

    let retire = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        &logs,
        "--lock-settle",
        "0s",
    ]);
    assert_eq!(retire.code, 1, "{retire}");
    assert!(
        retire.stdout.contains("refused") && retire.stdout.contains("/API/USERS/1 ×5"),
        "{retire}"
    );

    // The local ALB's lines replay through verify --from-alb-log as well.
    let files: Vec<String> = log_files(root.path())
        .iter()
        .map(|file| file.display().to_string())
        .collect();
    let mut args = vec!["verify", "users", "--from-alb-log"];
    args.extend(files.iter().map(String::as_str));
    let verify = op.run(&args);
    assert_eq!(verify.code, 0, "{verify}");
    for unreadable in [
        "not an ALB access log line",
        "too few fields",
        "unterminated",
    ] {
        assert!(!verify.stdout.contains(unreadable), "{verify}");
    }

    // The fix as advised keeps the route shiftable: applied to both rules
    // (the monolith's `/api*` misses `/API/USERS*`) and to `paths`, then
    // rolled back (parked without a LEAK) and shifted again.
    let commands: Vec<&str> = report["fix_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|command| command.as_str().unwrap())
        .collect();
    assert_eq!(commands.len(), 2, "{report:#}");
    for command in &commands {
        run_printed(&stack, command);
    }
    let config = std::fs::read_to_string(op.config_path()).unwrap();
    let config = config.replacen(
        r#"paths = ["/api/users*"]"#,
        r#"paths = ["/api/users*", "/API/USERS*"]"#,
        1,
    );
    std::fs::write(op.config_path(), config).unwrap();
    let rollback = op.run(&["rollback", "users", "--lock-settle", "0s"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    let status = op.run(&["status", "users"]);
    assert!(!status.stdout.contains("LEAK"), "{status}");
    let shift = op.run(&["shift", "users", "--steps", "100", "--lock-settle", "0s"]);
    assert_eq!(shift.code, 0, "{shift}");
}

/// Runs a printed `aws elbv2 modify-rule ...` as printed, through bash and
/// the aws CLI, against the local ALB's control endpoint.
fn run_printed(stack: &LocalStack, command: &str) {
    let run: Run = std::process::Command::new("bash")
        .arg("-c")
        .arg(command)
        .env("AWS_ACCESS_KEY_ID", LOCAL_KEY)
        .env("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &stack.control_url)
        .env("AWS_CONFIG_FILE", "/nonexistent/ficus-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/ficus-test")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{command}\n{run}");
}

/// A bake whose end no `migrate` judged (its `ficus:plan:bake-until` tag
/// still on the rule, as a `shift --bake` stopped mid-bake leaves it) stops
/// `retire`, naming its time, even once that time has passed.
fn an_unfinished_bake_stops_retire(stack: &LocalStack, op: &Operator, logs: &str) {
    let rt = runtime();
    let elb = stack.elb(&rt);
    let rule = route_rule_arn(&rt, &elb, &stack.listener_arn(&rt), "users");
    let tag = |value: &str| {
        rt.block_on(
            elb.add_tags()
                .resource_arns(&rule)
                .tags(
                    aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                        .key("ficus:plan:bake-until")
                        .value(value)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    };
    let retire = || {
        op.run(&[
            "retire",
            "users",
            "--from-alb-log",
            logs,
            "--lock-settle",
            "0s",
        ])
    };
    for (until, says) in [
        (
            "2999-01-01T00:00:00Z",
            "is baking at 100% until 2999-01-01T00:00:00Z",
        ),
        (
            "2000-01-01T00:00:00Z",
            "baked until 2000-01-01T00:00:00Z, but no `migrate` finished the bake",
        ),
    ] {
        tag(until);
        let refused = retire();
        assert_eq!(refused.code, 1, "{refused}");
        assert!(refused.stderr.contains(says), "{refused}");
    }
    rt.block_on(
        elb.remove_tags()
            .resource_arns(&rule)
            .tag_keys("ficus:plan:bake-until")
            .send(),
    )
    .unwrap();
}

/// Logs that prove nothing never read as "no leaks": no file (exit 4), no
/// entry (exit 4), a `.gz` that is not gzip (exit 4), no request of the
/// route in the window (`leaks` exit 5, `retire` refuses with exit 1).
fn no_evidence_is_never_no_leaks(op: &Operator, logs: &str) {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let empty = empty.display().to_string();
    let leaks = op.run(&["leaks", "users", "--from-alb-log", &empty]);
    assert_eq!(leaks.code, 4, "{leaks}");
    assert!(
        leaks
            .stderr
            .contains(&format!("no access-log file under {empty}")),
        "{leaks}"
    );
    // A bare number is seconds, as local-alb reads its durations; a word is
    // refused as a usage error naming the units.
    let bare = op.run(&["leaks", "users", "--from-alb-log", &empty, "--since", "30"]);
    assert_eq!(bare.code, 4, "--since 30 is 30s: {bare}");
    let word = op.run(&[
        "leaks",
        "users",
        "--from-alb-log",
        &empty,
        "--since",
        "soon",
    ]);
    assert_eq!(word.code, 2, "{word}");
    assert!(
        word.stderr.contains("a bare number is seconds")
            && word.stderr.contains("ms, s, m, h, d, w"),
        "{word}"
    );
    let text = dir.path().join("notes.log");
    std::fs::write(&text, "hello\nworld\n").unwrap();
    let text = text.display().to_string();
    let leaks = op.run(&["leaks", "users", "--from-alb-log", &text]);
    assert_eq!(leaks.code, 4, "{leaks}");
    assert!(
        leaks
            .stderr
            .contains("2 lines in 1 file, none an ALB access-log entry"),
        "{leaks}"
    );
    let fake = dir.path().join("fake.log.gz");
    std::fs::write(&fake, "not gzip\n").unwrap();
    let fake = fake.display().to_string();
    let leaks = op.run(&["leaks", "users", "--from-alb-log", &fake]);
    assert_eq!(leaks.code, 4, "{leaks}");
    assert!(
        leaks.stderr.contains(&fake) && leaks.stderr.contains("not gzip"),
        "{leaks}"
    );
    // S3 through the local ALB's endpoint (aws.endpoint_url) is one clear line.
    let s3 = op.run(&["leaks", "users", "--from-alb-log", "s3://alb-logs/prod"]);
    assert_eq!(s3.code, 4, "{s3}");
    assert!(
        s3.stderr
            .contains("S3 ListObjectsV2 on bucket alb-logs: the endpoint answered HTTP")
            && s3.stderr.contains("AWS_ENDPOINT_URL_S3")
            && !s3.stderr.contains("SdkBody")
            && s3.stderr.lines().count() == 1,
        "{s3}"
    );
    let leaks = op.run(&["leaks", "users", "--from-alb-log", logs, "--since", "1ms"]);
    assert_eq!(leaks.code, 5, "{leaks}");
    assert!(
        leaks
            .stdout
            .contains("no evidence: no request of users in the logs since"),
        "{leaks}"
    );
    assert!(
        leaks.stdout.contains(" read (") && !leaks.stdout.contains(" )"),
        "{leaks}"
    );
    assert!(
        leaks
            .stdout
            .contains("entries before it; 0 of the route's requests"),
        "{leaks}"
    );
    let retire = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        logs,
        "--since",
        "1ms",
        "--lock-settle",
        "0s",
    ]);
    assert_eq!(retire.code, 1, "{retire}");
    assert!(
        retire
            .stderr
            .contains("no request of users in the logs since")
            && retire
                .stderr
                .contains("nothing proves the monolith is unused"),
        "{retire}"
    );
}

#[test]
fn leaks_reads_gzip_logs_from_s3() {
    let rt = runtime();
    let moto = MotoStack::start(&rt);
    let monolith = &moto.target_groups["monolith"];
    let users = &moto.target_groups["users"];
    // moto's load balancer, as its lines and file names name it.
    let resource = moto.listener_arn.rsplit_once(":listener/").unwrap().1;
    let own: Vec<&str> = resource.split('/').take(3).collect();
    let own = own.join("/");
    let mut lines = String::new();
    for (path, group) in [
        ("/Api/Users/7", monolith),
        ("/Api/Users/7", monolith),
        ("/api/users/7", users),
        ("/api/threads", monolith),
    ] {
        let mut record = Record::new();
        record
            .set("time", "2026-12-01T10:00:00.000000Z")
            .set("elb", own.as_str())
            .set("client:port", "198.51.100.7:5555")
            .set("request", format!("GET http://alb:80{path} HTTP/1.1"))
            .set("elb_status_code", "200")
            .set("target_group_arn", group.as_str());
        lines.push_str(&record.render());
        lines.push('\n');
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(lines.as_bytes()).unwrap();
    let body = gzip.finish().unwrap();
    let config = sdk_config(&rt, &moto.endpoint, "testing", "testing");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let key = format!(
        "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/12/01/123456789012_elasticloadbalancing_us-east-1_{}_20261201T1005Z_10.0.0.1_abc.log.gz",
        own.replace('/', ".")
    );
    rt.block_on(async {
        s3.create_bucket().bucket("alb-logs").send().await.unwrap();
        // prod-staging/ is another folder: `s3://alb-logs/prod` never reads it.
        for prefix in ["prod", "prod-staging"] {
            s3.put_object()
                .bucket("alb-logs")
                .key(format!("{prefix}/{key}"))
                .body(body.clone().into())
                .send()
                .await
                .unwrap();
        }
    });
    let op = moto.operator();
    let leaks = op.run(&[
        "leaks",
        "users",
        "--from-alb-log",
        "s3://alb-logs/prod",
        "--output",
        "json",
    ]);
    assert_eq!(leaks.code, 1, "{leaks}");
    let report: serde_json::Value = serde_json::from_str(&leaks.stdout).unwrap();
    assert_eq!(report["files"], 1);
    assert_eq!(report["route_requests"], 3);
    assert_eq!(report["leaks"][0]["path"], "/Api/Users/7");
    assert_eq!(report["leaks"][0]["count"], 2);
    // `verify` replays the same objects: the route's requests, compared
    // between the monolith and the service (here the same stub).
    let verify = op.run(&["verify", "users", "--from-alb-log", "s3://alb-logs/prod"]);
    assert_eq!(verify.code, 0, "{verify}");
    assert!(verify.stdout.contains("  1 request: 1 matched"), "{verify}");
    assert!(
        verify.stdout.contains("s3://alb-logs/prod/AWSLogs/"),
        "{verify}"
    );
    // AWS_ENDPOINT_URL_S3 wins over aws.endpoint_url (moto here).
    let elsewhere = Run::from(
        op.command(&["leaks", "users", "--from-alb-log", "s3://alb-logs/prod"])
            .env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
            .output()
            .unwrap(),
    );
    assert_eq!(elsewhere.code, 4, "{elsewhere}");
    assert!(
        elsewhere
            .stderr
            .contains("S3 ListObjectsV2 on bucket alb-logs: cannot reach the endpoint")
            && elsewhere.stderr.contains("http://127.0.0.1:1"),
        "{elsewhere}"
    );
    let missing = op.run(&["leaks", "users", "--from-alb-log", "s3://no-such-bucket/x"]);
    assert_eq!(missing.code, 4, "{missing}");
    assert!(
        missing.stderr.contains("s3://no-such-bucket/x"),
        "{missing}"
    );
}

/// An access-log line of `elb` for `GET path`, served by `group` through
/// the rule at `priority`, answered 200, now.
fn entry(elb: &str, path: &str, group: &str, priority: &str) -> String {
    answered(elb, ("GET", path), (group, priority), "200")
}

/// An access-log line of `elb` for `METHOD path`, served by `group` through
/// the rule at `priority`, whose target answered `status`, now.
fn answered(
    elb: &str,
    (method, path): (&str, &str),
    (group, priority): (&str, &str),
    status: &str,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut record = Record::new();
    record
        .set("time", alb::access_log::format_time(now.as_micros() as i64))
        .set("elb", elb)
        .set("client:port", "198.51.100.7:5555")
        .set("request", format!("{method} http://alb:80{path} HTTP/1.1"))
        .set("elb_status_code", status)
        .set("target_status_code", status)
        .set("target_group_arn", group)
        .set("matched_rule_priority", priority);
    record.render() + "\n"
}

/// Writes `lines` as a log file of `elb` (`app/NAME/ID`) under `dir`, named as
/// AWS names it, and returns the file's path.
fn write_log(dir: &Path, elb: &str, lines: &str) -> PathBuf {
    let day = dir.join("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/12/01");
    std::fs::create_dir_all(&day).unwrap();
    let file = day.join(format!(
        "123456789012_elasticloadbalancing_us-east-1_{}_20261201T1005Z_10.0.0.1_{}.log",
        elb.replace('/', "."),
        lines.len()
    ));
    std::fs::write(&file, lines).unwrap();
    file
}

/// The listener's load balancer as its log lines name it (`app/NAME/ID`),
/// and the ARNs of the monolith's and the users service's target groups.
fn balancer_and_groups(
    rt: &tokio::runtime::Runtime,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    listener: &str,
) -> (String, String, String) {
    let resource = listener.rsplit_once(":listener/").unwrap().1;
    let parts: Vec<&str> = resource.split('/').collect();
    let own = format!("{}/{}/{}", parts[0], parts[1], parts[2]);
    let groups = rt
        .block_on(
            elb.describe_target_groups()
                .names("monolith")
                .names("users")
                .send(),
        )
        .unwrap();
    let group = |name: &str| {
        groups
            .target_groups()
            .iter()
            .find(|group| group.target_group_name() == Some(name))
            .and_then(|group| group.target_group_arn())
            .unwrap()
            .to_owned()
    };
    (own, group("monolith"), group("users"))
}

/// Logs of several load balancers in one place, at 100%: only the
/// listener's load balancer's files and lines count, and what was skipped is
/// said; a report that proves nothing (only others' files, no request of the
/// route, too many unreadable lines) is never "no leaks"; a pattern miss the
/// monolith's catch-all rule served at 100% is a pattern miss; every
/// `--from-alb-log` command exits 4 on unreadable logs; the local ALB
/// refuses a '%' in a path pattern as AWS does.
#[test]
fn leaks_judges_its_own_load_balancers_logs_and_never_says_no_leaks_without_evidence() {
    let stack = LocalStack::start();
    let op = shifted_users(&stack);
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let (own, monolith, users) = balancer_and_groups(&rt, &elb, &listener);
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let staging = "app/ficus-staging/0123456789abcdef";

    // Only another load balancer's file under the source: exit 4, naming it.
    write_log(
        &dir.path().join("prod-staging"),
        staging,
        &entry(staging, "/api/users/1", &users, "10").repeat(3),
    );
    let only_staging = op.run(&["leaks", "users", "--from-alb-log", &at("prod-staging")]);
    assert_eq!(only_staging.code, 4, "{only_staging}");
    assert!(
        only_staging.stderr.contains(&format!(
            "no access-log file of {own} under {} (skipped 1 file of other load balancers: {staging})",
            at("prod-staging")
        )),
        "{only_staging}"
    );
    // The same cause exits 4 in verify and plan too.
    let verify = op.run(&["verify", "users", "--from-alb-log", &at("prod-staging")]);
    assert_eq!(verify.code, 4, "{verify}");
    let plan = op.run(&["plan", "users", "--from-alb-log", &at("prod-staging")]);
    assert_eq!(plan.code, 4, "{plan}");
    let missing = op.run(&["verify", "users", "--from-alb-log", &at("missing.log")]);
    assert_eq!(missing.code, 4, "{missing}");

    // Our file: a case variant that the monolith's /api* rule (priority 99)
    // served at 100% is a pattern miss; a line of another load balancer in
    // it is skipped and said.
    let mut lines = entry(&own, "/API/USERS/1", &monolith, "99");
    lines += &entry(&own, "/api/users/1", &users, "1");
    lines += &entry(&own, "/api/users/2", &users, "1");
    lines += &entry("app/other/1", "/API/USERS/7", &monolith, "99");
    write_log(&dir.path().join("prod"), &own, &lines);
    let text = op.run(&["leaks", "users", "--from-alb-log", &at("prod")]);
    assert_eq!(text.code, 1, "{text}");
    assert!(
        text.stdout
            .contains(&format!("4 lines of 1 file of {own} read"))
            && text
                .stdout
                .contains("skipped 1 line of other load balancers: app/other/1"),
        "{text}"
    );
    assert!(
        text.stdout.contains("1 request leaked to the monolith"),
        "{text}"
    );
    assert!(
        text.stdout
            .contains("/API/USERS/1  ×1  33.3%  pattern miss"),
        "{text}"
    );
    assert!(
        text.stdout.contains("add the path pattern \"/API/USERS*\""),
        "{text}"
    );
    assert!(!text.stdout.contains("/API/USERS/7"), "{text}");
    let retire = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        &at("prod"),
        "--lock-settle",
        "0s",
    ]);
    assert_eq!(retire.code, 1, "{retire}");
    assert!(
        retire
            .stdout
            .contains("refused: 1 request still reaches the monolith (/API/USERS/1 ×1)"),
        "{retire}"
    );

    // No request of the route: no evidence, exit 5, ok false.
    write_log(
        &dir.path().join("threads"),
        &own,
        &entry(&own, "/api/threads/1", &monolith, "99"),
    );
    let nothing = op.run(&[
        "leaks",
        "users",
        "--from-alb-log",
        &at("threads"),
        "--output",
        "json",
    ]);
    assert_eq!(nothing.code, 5, "{nothing}");
    let report: serde_json::Value = serde_json::from_str(&nothing.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["no_evidence"].as_str().unwrap().starts_with(
            "no evidence: no request of users in the logs (0 of the route's requests in 1 line"
        ),
        "{report:#}"
    );

    // Lines that are not entries: counted, and over 1% no "no leaks".
    let mut mangled = entry(&own, "/api/users/1", &users, "1");
    mangled += "mangled by a log shipper\n";
    write_log(&dir.path().join("mangled"), &own, &mangled);
    let unsure = op.run(&["leaks", "users", "--from-alb-log", &at("mangled")]);
    assert_eq!(unsure.code, 5, "{unsure}");
    assert!(
        unsure.stdout.contains("; 1 line not an access-log entry (50.0%)")
            && unsure.stdout.contains(
                "no evidence: 1 of 2 lines (50.0%) are not access-log entries, over the 1% a verdict allows"
            )
            && !unsure.stdout.contains("no leaks"),
        "{unsure}"
    );

    // An error's JSON names the route, the exit code and the error.
    let failed = op.run(&[
        "leaks",
        "users",
        "--from-alb-log",
        &at("prod-staging"),
        "--output",
        "json",
    ]);
    assert_eq!(failed.code, 4, "{failed}");
    let document: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(document["route"], "users", "{document:#}");
    assert_eq!(document["exit_code"], 4, "{document:#}");
    assert_eq!(document["ok"], false, "{document:#}");
    assert!(
        document["error"]
            .as_str()
            .unwrap()
            .contains("no access-log file of")
    );

    // --since 0 is an empty window: refused.
    let zero = op.run(&[
        "leaks",
        "users",
        "--from-alb-log",
        &at("prod"),
        "--since",
        "0",
    ]);
    assert_eq!(zero.code, 2, "{zero}");
    assert!(zero.stderr.contains("is an empty window"), "{zero}");

    // The local ALB refuses '%' in a path pattern, as AWS does.
    let rule = route_rule_arn(&rt, &elb, &listener, "users");
    let refused = rt
        .block_on(
            elb.modify_rule()
                .rule_arn(&rule)
                .set_conditions(Some(conditions(&["/api/%75sers*"], None)))
                .send(),
        )
        .unwrap_err();
    let refused = aws_sdk_elasticloadbalancingv2::error::DisplayErrorContext(&refused).to_string();
    assert!(
        refused.contains("ValidationError")
            && refused
                .contains("Condition value '/api/%75sers*' contains a character that is not valid"),
        "{refused}"
    );
}

/// At 100%: what the monolith answered 404 (a scanner's spellings) is listed
/// apart and never a leak, a share or a refusal, while a case variant it
/// answered 200 still is; a leak lists its methods, and a rule lost names
/// them beside the rule's conditions; too many unreadable lines are said
/// beside the leaks (exit 1 wins); a second rule that forwards to the
/// service is named where it matches a leak; a retire with accepted leaks
/// shows who and why in `history`.
#[test]
fn leaks_sets_apart_what_the_monolith_answered_404_and_names_the_methods() {
    let stack = LocalStack::start();
    let op = shifted_users(&stack);
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let (own, monolith, users) = balancer_and_groups(&rt, &elb, &listener);
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();

    // The tester's scanner: two spellings the monolith answered 404, beside
    // a case variant it answered 200 and the route's own requests.
    let mut lines = String::new();
    for (path, status) in [
        ("/aPI/usersx", "404"),
        ("/aPI/users-admin/../../etc", "404"),
        ("/API/USERSX", "404"),
        ("/aPI/usersx", "404"),
        ("/API/USERS/1", "200"),
    ] {
        lines += &answered(&own, ("GET", path), (&monolith, "99"), status);
    }
    lines += &entry(&own, "/api/users/1", &users, "1");
    write_log(&dir.path().join("scanner"), &own, &lines);
    let text = op.run(&["leaks", "users", "--from-alb-log", &at("scanner")]);
    assert_eq!(text.code, 1, "{text}");
    for said in [
        "; 2 of the route's requests\n",
        "1 request leaked to the monolith (50.0% of the route's requests):",
        "  /API/USERS/1  ×1  50.0%  pattern miss  GET  first ",
        "answered 404 by the monolith, not leaks (its code for the route did not serve them, so deleting it changes no answer): /aPI/usersx ×2, /API/USERSX ×1, /aPI/users-admin/../../etc ×1\n",
    ] {
        assert!(text.stdout.contains(said), "{said:?} in\n{text}");
    }
    let json = op.run(&[
        "leaks",
        "users",
        "--from-alb-log",
        &at("scanner"),
        "--output",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["leaked_requests"], 1, "{report:#}");
    assert_eq!(report["route_requests"], 2, "{report:#}");
    assert_eq!(report["leaks"][0]["methods"], serde_json::json!({"GET": 1}));
    assert_eq!(
        report["answered_404"],
        serde_json::json!([
            {"path": "/aPI/usersx", "count": 2},
            {"path": "/API/USERSX", "count": 1},
            {"path": "/aPI/users-admin/../../etc", "count": 1},
        ]),
        "{report:#}"
    );
    // Only 404s: no leak, and retire is not refused for them.
    let mut noise = answered(&own, ("GET", "/aPI/usersx"), (&monolith, "99"), "404");
    noise += &entry(&own, "/api/users/1", &users, "1");
    write_log(&dir.path().join("noise"), &own, &noise);
    let quiet = op.run(&["leaks", "users", "--from-alb-log", &at("noise")]);
    assert_eq!(quiet.code, 0, "{quiet}");
    assert!(
        quiet.stdout.contains("no leaks")
            && quiet
                .stdout
                .contains("answered 404 by the monolith, not leaks (")
            && quiet.stdout.contains(": /aPI/usersx ×1"),
        "{quiet}"
    );

    // A rule lost: the users rule takes GET only; a POST and a DELETE that
    // the monolith answered (405) name their methods beside the conditions.
    let rule = route_rule_arn(&rt, &elb, &listener, "users");
    let mut with_get = conditions(&["/api/users*"], None);
    with_get.push(
        aws_sdk_elasticloadbalancingv2::types::RuleCondition::builder()
            .field("http-request-method")
            .http_request_method_config(
                aws_sdk_elasticloadbalancingv2::types::HttpRequestMethodConditionConfig::builder()
                    .values("GET")
                    .build(),
            )
            .build(),
    );
    rt.block_on(
        elb.modify_rule()
            .rule_arn(&rule)
            .set_conditions(Some(with_get))
            .send(),
    )
    .unwrap();
    let mut lost = answered(&own, ("POST", "/api/users"), (&monolith, "99"), "405");
    lost += &answered(&own, ("DELETE", "/api/users"), (&monolith, "99"), "405");
    lost += &entry(&own, "/api/users/1", &users, "1");
    // ... in a file with a line no access-log entry (1 of 4: over 1%).
    lost += "mangled by a log shipper\n";
    write_log(&dir.path().join("lost"), &own, &lost);
    let text = op.run(&["leaks", "users", "--from-alb-log", &at("lost")]);
    assert_eq!(text.code, 1, "leaks found win over no evidence: {text}");
    for said in [
        "  /api/users  ×2  66.7%  rule lost  DELETE ×1, POST ×1  first ",
        "its other conditions (path-pattern /api/users* AND http-request-method GET) missed the request (DELETE ×1, POST ×1)",
        "no evidence: 1 of 4 lines (25.0%) are not access-log entries, over the 1% a verdict allows",
        "; the leaks above stand (exit 1), and more may be among those lines",
    ] {
        assert!(text.stdout.contains(said), "{said:?} in\n{text}");
    }

    // A second rule, not managed by ficus, that forwards to the service and
    // matches the case variant now: the leak in the logs is named as fixed
    // there, and no command adds a pattern for it.
    let second = create_rule(&rt, &elb, &listener, 7, &["/API/USERS*"], "users", &[]);
    let json = op.run(&[
        "leaks",
        "users",
        "--from-alb-log",
        &at("scanner"),
        "--output",
        "json",
    ]);
    assert_eq!(json.code, 1, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        report["leaks"][0]["fix"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "now matched by rule {second} at priority 7 (path-pattern /API/USERS*), which forwards to the service"
            )),
        "{report:#}"
    );
    assert_eq!(report["fix_commands"], serde_json::json!([]), "{report:#}");

    // Accepted, the leaks are in `history` with who accepted them and why.
    rt.block_on(
        elb.modify_rule()
            .rule_arn(&rule)
            .set_conditions(Some(conditions(&["/api/users*"], None)))
            .send(),
    )
    .unwrap();
    let retire = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        &at("scanner"),
        "--accept-leaks",
        "--reason",
        "only a scanner, OPS-12",
        "--lock-settle",
        "0s",
    ]);
    assert_eq!(retire.code, 0, "{retire}");
    let who = op.journal().last().unwrap()["who"]
        .as_str()
        .unwrap()
        .to_owned();
    let history = op.run(&["history", "users"]);
    assert!(
        history
            .stdout
            .contains(" users retire: service alone, 1 leaked request accepted (")
            && history
                .stdout
                .contains(&format!("; accepted by {who}: only a scanner, OPS-12\n")),
        "{history}"
    );
}
