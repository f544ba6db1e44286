//! The control API driven by the AWS CLI (`aws elbv2 ... --endpoint-url`).

use crate::common;

use crate::common::{RunningAlb, aws_cli};
use serde_json::Value;

/// Runs `aws elbv2 ARGS` off the async runtime, expecting success; its JSON.
async fn aws_ok(control_url: &str, args: &[&str]) -> Value {
    let output = aws(control_url, args, &[]).await;
    assert!(
        output.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if output.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&output.stdout).expect("aws prints JSON")
    }
}

/// Runs `aws elbv2 ARGS` with `extra_env`, returning its output as is.
async fn aws(control_url: &str, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
    let control_url = control_url.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let extra_env: Vec<(String, String)> = extra_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if extra_env.is_empty() {
            aws_cli(&control_url, &args)
        } else {
            let mut command = std::process::Command::new("aws");
            command
                .args([
                    "elbv2",
                    "--region",
                    common::REGION,
                    "--endpoint-url",
                    &control_url,
                ])
                .args(&args)
                .env("AWS_CONFIG_FILE", "/dev/null")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
            for (k, v) in &extra_env {
                command.env(k, v);
            }
            command.output().expect("aws runs")
        }
    })
    .await
    .expect("aws CLI task")
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_describes_creates_reweights_swaps_and_tags() {
    let alb = RunningAlb::start().await;
    let url = alb.control_url.as_str();

    let lbs = aws_ok(url, &["describe-load-balancers", "--names", "ficus-local"]).await;
    let lb_arn = lbs["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let listeners = aws_ok(url, &["describe-listeners", "--load-balancer-arn", &lb_arn]).await;
    let listener = listeners["Listeners"][0]["ListenerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let tgs = aws_ok(
        url,
        &["describe-target-groups", "--names", "threads", "monolith"],
    )
    .await;
    let threads = tgs["TargetGroups"][0]["TargetGroupArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let monolith = tgs["TargetGroups"][1]["TargetGroupArn"]
        .as_str()
        .unwrap()
        .to_owned();

    let rules = aws_ok(url, &["describe-rules", "--listener-arn", &listener]).await;
    let monolith_rule = &rules["Rules"][0];
    assert_eq!(monolith_rule["Priority"], "99");
    assert_eq!(
        monolith_rule["Conditions"][0]["PathPatternConfig"]["Values"][0],
        "/api*"
    );
    assert_eq!(rules["Rules"][1]["Priority"], "default");
    assert_eq!(rules["Rules"][1]["IsDefault"], true);
    let monolith_rule_arn = monolith_rule["RuleArn"].as_str().unwrap().to_owned();

    let created = aws_ok(
        url,
        &[
            "create-rule",
            "--listener-arn",
            &listener,
            "--priority",
            "100",
            "--conditions",
            "Field=path-pattern,Values=/api/threads*",
            "--actions",
            &format!("Type=forward,TargetGroupArn={threads}"),
            "--tags",
            "Key=ficus:service,Value=threads",
        ],
    )
    .await;
    let rule_arn = created["Rules"][0]["RuleArn"].as_str().unwrap().to_owned();
    assert_eq!(
        created["Rules"][0]["Conditions"][0]["Values"][0],
        "/api/threads*"
    );

    let weights = format!(
        r#"[{{"Type":"forward","ForwardConfig":{{"TargetGroups":[{{"TargetGroupArn":"{threads}","Weight":25}},{{"TargetGroupArn":"{monolith}","Weight":75}}]}}}}]"#
    );
    let modified = aws_ok(
        url,
        &[
            "modify-rule",
            "--rule-arn",
            &rule_arn,
            "--actions",
            &weights,
        ],
    )
    .await;
    let groups = &modified["Rules"][0]["Actions"][0]["ForwardConfig"]["TargetGroups"];
    assert_eq!(groups[0]["Weight"], 25);
    assert_eq!(groups[1]["Weight"], 75);

    aws_ok(
        url,
        &[
            "set-rule-priorities",
            "--rule-priorities",
            &format!("RuleArn={rule_arn},Priority=99"),
            &format!("RuleArn={monolith_rule_arn},Priority=100"),
        ],
    )
    .await;
    let rules = aws_ok(
        url,
        &[
            "describe-rules",
            "--rule-arns",
            &rule_arn,
            &monolith_rule_arn,
        ],
    )
    .await;
    assert_eq!(rules["Rules"][0]["Priority"], "99");
    assert_eq!(rules["Rules"][1]["Priority"], "100");

    aws_ok(
        url,
        &[
            "add-tags",
            "--resource-arns",
            &rule_arn,
            "--tags",
            "Key=step,Value=canary",
        ],
    )
    .await;
    let tags = aws_ok(url, &["describe-tags", "--resource-arns", &rule_arn]).await;
    let keys: Vec<&str> = tags["TagDescriptions"][0]["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["ficus:service", "step"]);

    let health = aws_ok(
        url,
        &["describe-target-health", "--target-group-arn", &threads],
    )
    .await;
    assert_eq!(
        health["TargetHealthDescriptions"][0]["Target"]["Port"],
        3002
    );
    alb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_sees_error_codes_and_auth_failures() {
    let alb = RunningAlb::start().await;
    let url = alb.control_url.as_str();

    let lbs = aws_ok(url, &["describe-load-balancers"]).await;
    let lb_arn = lbs["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let listeners = aws_ok(url, &["describe-listeners", "--load-balancer-arn", &lb_arn]).await;
    let listener = listeners["Listeners"][0]["ListenerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let tgs = aws_ok(url, &["describe-target-groups", "--names", "posts"]).await;
    let posts = tgs["TargetGroups"][0]["TargetGroupArn"]
        .as_str()
        .unwrap()
        .to_owned();

    let taken = aws(
        url,
        &[
            "create-rule",
            "--listener-arn",
            &listener,
            "--priority",
            "99",
            "--conditions",
            "Field=path-pattern,Values=/api/posts*",
            "--actions",
            &format!("Type=forward,TargetGroupArn={posts}"),
        ],
        &[],
    )
    .await;
    assert!(!taken.status.success());
    assert!(
        stderr_of(&taken).contains("(PriorityInUse)"),
        "{}",
        stderr_of(&taken)
    );

    let missing = aws(
        url,
        &["describe-rules", "--listener-arn", &format!("{listener}0")],
        &[],
    )
    .await;
    assert!(
        stderr_of(&missing).contains("(ListenerNotFound)"),
        "{}",
        stderr_of(&missing)
    );

    let unsigned = aws(url, &["describe-load-balancers", "--no-sign-request"], &[]).await;
    assert!(
        stderr_of(&unsigned).contains("(MissingAuthenticationToken)"),
        "{}",
        stderr_of(&unsigned)
    );

    let credentials = common::stack_credentials();
    let wrong_secret = aws(
        url,
        &["describe-load-balancers"],
        &[
            ("AWS_ACCESS_KEY_ID", &credentials.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
    )
    .await;
    assert!(
        stderr_of(&wrong_secret).contains("(SignatureDoesNotMatch)"),
        "{}",
        stderr_of(&wrong_secret)
    );

    let stranger = aws(
        url,
        &["describe-load-balancers"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIASTRANGER00000000"),
            ("AWS_SECRET_ACCESS_KEY", &credentials.secret_access_key),
        ],
    )
    .await;
    assert!(
        stderr_of(&stranger).contains("(InvalidClientTokenId)"),
        "{}",
        stderr_of(&stranger)
    );
    alb.stop().await;
}

/// The shell block of README.md's "The local ALB" section.
fn readme_local_alb_block() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let section = readme
        .split_once("\n## The local ALB\n")
        .expect("README.md has a 'The local ALB' section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a ```sh block")
        .1;
    block
        .split_once("```")
        .expect("the block is closed")
        .0
        .to_owned()
}

/// README.md's local-ALB commands, run as written by bash with the AWS CLI
/// that scripts/test installs (v1, which reads only AWS_DEFAULT_REGION), in an
/// environment with no AWS settings of its own. The first line starts the
/// binary on the README's ports; here it starts on free ports, and the other
/// lines get those ports in place of the README's.
#[test]
fn the_readme_local_alb_commands_work_as_written() {
    let block = readme_local_alb_block();
    let (start, rest) = block.split_once('\n').expect("more than one line");
    assert!(
        start.starts_with("target/release/local-alb "),
        "the block starts the local ALB: {start}"
    );
    assert!(rest.contains("127.0.0.1:9100"), "{rest}");

    let state = tempfile::tempdir().unwrap();
    let mut alb = std::process::Command::new(env!("CARGO_BIN_EXE_local-alb"))
        .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
        .arg("--stack")
        .arg(common::stack_path())
        .arg("--state-dir")
        .arg(state.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("local-alb starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        alb.stdout.take().expect("piped stdout"),
    ));
    let mut address = |prefix: &str| -> String {
        let line = lines.next().expect("a listener line").expect("utf-8");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned()
    };
    let data = address("data listener on http://");
    let control = address("control listener on http://");
    let script = rest
        .replace("127.0.0.1:9100", &control)
        .replace("127.0.0.1:8080", &data);

    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .output()
        .expect("bash runs");
    let _ = alb.kill();
    let _ = alb.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the README's commands failed:\n{script}\nstdout: {stdout}\nstderr: {}",
        stderr_of(&output)
    );
    assert!(
        stdout.contains(r#""LoadBalancerName": "ficus-local""#),
        "{stdout}"
    );
    assert!(
        stdout.contains("# TYPE ficus_alb_requests_total counter"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""MetricName": "RequestCount""#),
        "the request through the data listener is listed as a CloudWatch metric: {stdout}"
    );
}
