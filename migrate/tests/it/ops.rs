//! Operations (issue 26): notifications to real webhook receivers and to
//! moto's SNS (read back through a subscribed SQS queue), sinks that are
//! down, slow or answer 500, and custom gates (webhook and command) against
//! moto_server's ELBv2.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hmac::Mac as _;

use crate::support::*;

/// The `event` names of the received bodies, in order.
fn names(bodies: &[serde_json::Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| b["event"].as_str().unwrap().to_owned())
        .collect()
}

fn write_script(dir: &std::path::Path, name: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The last journal entry of a command for a route.
fn last_entry(op: &Operator, command: &str) -> serde_json::Value {
    op.journal()
        .into_iter()
        .rev()
        .find(|e| e["command"] == command)
        .unwrap_or_else(|| panic!("no `{command}` entry in the journal"))
}

#[test]
fn a_shift_delivers_step_and_pass_events_in_order_and_a_gate_failure_a_critical_event() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let hook = Receiver::start();
    let slack = Receiver::start();
    let op = stack.operator_with(&format!(
        r#"
[[routes.users.gates]]
name = "go-file"
phase = "before-full"
command = ["test", "-e", "go"]

[[notify]]
url = "{hook}"
min_severity = "info"
secret_env = "FICUS_TEST_HOOK_KEY"

[[notify]]
url = "{slack}"
format = "slack"
min_severity = "critical"
"#,
        hook = hook.url(),
        slack = slack.url()
    ));
    let mut op = op;
    op.env
        .push(("FICUS_TEST_HOOK_KEY".into(), "s3cret-key".into()));
    std::fs::write(op.dir.path().join("go"), "").unwrap();
    op.init();

    let shift = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(shift.code, 0, "{shift}");
    let bodies = hook.bodies();
    assert_eq!(
        names(&bodies),
        [
            "shift.started",
            "gate.passed",
            "gate.passed",
            "gate.passed",
            "step.applied"
        ],
        "{bodies:#?}"
    );
    let gates: Vec<&str> = bodies[1..4]
        .iter()
        .map(|b| b["gate"].as_str().unwrap())
        .collect();
    assert_eq!(gates, ["health", "parity", "go-file"]);
    for body in &bodies {
        assert_eq!(body["schema"], "ficus.event/v1", "{body}");
        assert_eq!(body["route"], "users", "{body}");
        assert_eq!(body["severity"], "info", "{body}");
        assert!(!body["who"].as_str().unwrap().is_empty(), "{body}");
        assert!(body["time"].as_str().unwrap().ends_with('Z'), "{body}");
    }
    let applied = &bodies[4];
    assert_eq!(
        (applied["from"].clone(), applied["to"].clone()),
        (0.into(), 100.into())
    );
    let step_entry = last_entry(&op, "shift");
    assert_eq!(step_entry["what"], "shift to 100 percent");
    assert_eq!(applied["journal_id"], step_entry["id"], "{applied}");
    // Signed: HMAC-SHA256 of the exact body with the key from secret_env.
    let first = &hook.received()[0];
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret-key").unwrap();
    mac.update(&first.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(first.headers["x-ficus-signature"], expected);
    assert_eq!(first.headers["x-ficus-event"], "shift.started");
    assert_eq!(first.path, "/hook");
    assert!(
        slack.received().is_empty(),
        "info events are below critical"
    );

    // Back, then a gate failure: the critical event names the gate, on both sinks.
    let back = op.run(&["rollback", "users"]);
    assert_eq!(back.code, 0, "{back}");
    std::fs::remove_file(op.dir.path().join("go")).unwrap();
    let before = hook.bodies().len();
    let failed = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(failed.code, 3, "{failed}");
    assert!(
        failed.stderr.contains("gate go-file (before-full)"),
        "{failed}"
    );
    let after: Vec<serde_json::Value> = hook.bodies().split_off(before);
    let gate_failed = after
        .iter()
        .find(|b| b["event"] == "gate.failed")
        .unwrap_or_else(|| panic!("no gate.failed in {after:#?}"));
    assert_eq!(gate_failed["severity"], "critical");
    assert_eq!(gate_failed["gate"], "go-file");
    // The gates judged before the failing one passed, and say so first
    // (nothing had moved: no rollback to tell).
    assert_eq!(
        names(&after),
        ["shift.started", "gate.passed", "gate.passed", "gate.failed"],
        "{after:#?}"
    );
    let passed: Vec<&str> = after[1..3]
        .iter()
        .map(|b| b["gate"].as_str().unwrap())
        .collect();
    assert_eq!(passed, ["health", "parity"]);
    assert!(
        gate_failed["reason"].as_str().unwrap().contains("exit 1"),
        "{gate_failed}"
    );
    let texts: Vec<serde_json::Value> = slack.bodies();
    assert_eq!(texts.len(), 1, "only the critical event: {texts:#?}");
    let text = texts[0]["text"].as_str().unwrap();
    assert_eq!(texts[0].as_object().unwrap().len(), 1, "{texts:?}");
    assert!(
        text.contains("CRITICAL") && text.contains("users: gate go-file FAILED"),
        "{text}"
    );

    // --force-unlock of a colleague's lock is told: lock.forced.
    let elb = stack.elb(&rt);
    rt.block_on(
        elb.add_tags()
            .resource_arns(&stack.listener_arn)
            .tags(
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key("ficus:lock:0123456789ab")
                    .value("ann@elsewhere since 2026-01-01T00:00:00.000Z until 2099-01-01T00:00:00.000Z")
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let forced = op.run(&["rollback", "users", "--force-unlock"]);
    assert_eq!(forced.code, 0, "{forced}");
    let lock_forced = hook
        .bodies()
        .into_iter()
        .find(|b| b["event"] == "lock.forced")
        .expect("a lock.forced event");
    assert_eq!(lock_forced["severity"], "warning");
    assert!(
        lock_forced["reason"]
            .as_str()
            .unwrap()
            .contains("ann@elsewhere"),
        "{lock_forced}"
    );

    // Drift found by status is told: drift.found, naming the route.
    let drifting = Operator::new(
        &std::fs::read_to_string(op.config_path())
            .unwrap()
            .replace("target_group = \"posts\"", "target_group = \"threads\""),
        op.env.clone(),
    );
    let status = drifting.run(&["status"]);
    assert_eq!(status.code, 0, "{status}");
    let drift = hook
        .bodies()
        .into_iter()
        .find(|b| b["event"] == "drift.found")
        .expect("a drift.found event");
    assert_eq!(drift["route"], "posts");
    assert_eq!(drift["severity"], "warning");
}

#[test]
fn a_sink_that_is_down_slow_or_answers_500_fails_no_command_and_is_journaled_and_counted() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let failing = Receiver::start();
    failing.answer(500, "internal trouble");
    let slow = Receiver::start();
    slow.behavior.lock().unwrap().delay = Duration::from_secs(5);
    let refusing = Receiver::start();
    refusing.answer(403, "invalid token");
    let down = down_url();
    let op = stack.operator_with(&format!(
        r#"
[[notify]]
url = "{down}"
[[notify]]
url = "{failing}"
retries = 2
[[notify]]
url = "{slow}"
timeout = "300ms"
retries = 1
[[notify]]
url = "{refusing}"
retries = 2
[[notify]]
url = "{refusing}/signed"
secret_env = "FICUS_TEST_KEY_NOBODY_SET"
retries = 2
"#,
        failing = failing.url(),
        slow = slow.url(),
        refusing = refusing.url()
    ));

    let test = op.run(&["notify", "test"]);
    assert_eq!(test.code, 1, "{test}");
    let lines: Vec<&str> = test.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "one line per sink: {test}");
    // A refusal, or settings that cannot work, are not retried: they would
    // fail the same way.
    assert!(
        lines[3].contains("FAILED: HTTP 403: invalid token (not retried"),
        "{test}"
    );
    assert!(
        lines[4].contains("FICUS_TEST_KEY_NOBODY_SET (secret_env) is not set (not retried"),
        "{test}"
    );
    assert_eq!(
        refusing.bodies().len(),
        1,
        "one attempt at the refusing sink, none unsigned: {test}"
    );
    assert!(lines[0].contains("FAILED: cannot connect"), "{test}");
    assert!(
        lines[1].contains("FAILED: HTTP 500: internal trouble"),
        "{test}"
    );
    assert!(lines[1].contains("after 3 attempts"), "{test}");
    assert!(
        lines[2].contains("FAILED: no answer within 300ms"),
        "{test}"
    );
    let json = op.run(&["notify", "test", "--output", "json"]);
    assert_eq!(json.code, 1, "{json}");
    let document: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        (document["ok"].clone(), document["exit_code"].clone()),
        (false.into(), 1.into()),
        "{json}"
    );
    assert_eq!(document["sinks"].as_array().unwrap().len(), 5, "{json}");

    op.init();
    let started = Instant::now();
    let shift = op.run(&["shift", "users", "--steps", "100"]);
    let took = started.elapsed();
    assert_eq!(shift.code, 0, "{shift}");
    assert!(shift.stdout.contains("users: on the service"), "{shift}");
    assert!(
        shift.stderr.contains("could not deliver shift.started"),
        "{shift}"
    );
    assert!(took < Duration::from_secs(30), "the shift took {took:?}");
    // The same shift of another route without sinks, for the figure.
    let started = Instant::now();
    let plain = stack
        .operator()
        .run(&["shift", "threads", "--steps", "100"]);
    assert_eq!(plain.code, 0, "{plain}");
    eprintln!(
        "shift --steps 100: {took:?} with a sink down, one answering 500 and one slow; {:?} without sinks",
        started.elapsed()
    );
    // Bounded retry: the shift's first event reached the 500 sink 1 + 2 times...
    let first_id = failing
        .bodies()
        .into_iter()
        .find(|b| b["event"] == "shift.started")
        .unwrap()["id"]
        .clone();
    let tries = failing
        .bodies()
        .iter()
        .filter(|b| b["id"] == first_id)
        .count();
    assert_eq!(tries, 3);
    // ...and once failing, the sink's next events get one attempt each.
    let step_applied = failing
        .bodies()
        .iter()
        .filter(|b| b["event"] == "step.applied")
        .count();
    assert_eq!(step_applied, 1);

    let failures: Vec<serde_json::Value> = op
        .journal()
        .into_iter()
        .filter(|e| e["command"] == "notify")
        .collect();
    let sinks: BTreeSet<String> = failures
        .iter()
        .map(|e| e["evidence"]["sink"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sinks.len(), 5, "{failures:#?}");
    assert!(
        failures
            .iter()
            .any(|e| e["evidence"]["event"] == "step.applied" && e["route"] == "users"),
        "{failures:#?}"
    );
    let status = op.status_json();
    assert_eq!(
        status["notifications"]["failed_deliveries"],
        failures.len(),
        "{status}"
    );
    assert_eq!(status["notifications"]["sinks"], 5);
    let text = op.run(&["status"]);
    assert!(
        text.stdout.contains(&format!(
            "notify: 5 sinks; {} failed deliveries",
            failures.len()
        )),
        "{text}"
    );
    let history = op.run(&["history"]);
    assert!(history.stdout.contains("notify: delivery of"), "{history}");
}

#[test]
fn a_step_webhook_gate_answering_500_rolls_back_with_exit_3_and_in_dry_run_lets_the_shift_finish() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let gate = Receiver::start();
    gate.answer(500, "contract tests failed: 3 of 120");
    gate.behavior.lock().unwrap().first.push_back(200);
    let gates = |dry_run: bool| {
        format!(
            r#"
[[routes.users.gates]]
name = "ticket"
phase = "before-shift"
command = ["true"]
[[routes.users.gates]]
name = "contract-tests"
phase = "step"
url = "{url}"
timeout = "10s"
dry_run = {dry_run}
[[routes.users.gates]]
name = "smoke"
phase = "after-rollback"
command = ["true"]
"#,
            url = gate.url()
        )
    };
    let op = stack.operator_with(&gates(false));
    op.init();

    // plan lists every gate of every phase.
    let plan = op.run(&["plan", "users"]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(
        plan.stdout
            .contains("gate:  custom gate ticket (before-shift): run true, exit 0 passes"),
        "{plan}"
    );
    assert_eq!(
        plan.stdout
            .matches(&format!(
                "gate:  custom gate contract-tests (step): POST {}",
                gate.url()
            ))
            .count(),
        3,
        "before each of the 3 steps: {plan}"
    );
    assert!(
        plan.stdout
            .contains("after any rollback: custom gate smoke (after-rollback)"),
        "{plan}"
    );

    // The gate passes at 10% and answers 500 before 100%: rolled back, exit 3.
    let shift = op.run(&["shift", "users", "--steps", "10,100", "--interval", "1s"]);
    assert_eq!(shift.code, 3, "{shift}");
    assert!(
        shift
            .stderr
            .contains("gate contract-tests (step): HTTP 500: contract tests failed: 3 of 120"),
        "{shift}"
    );
    assert!(shift.stderr.contains("rolled back"), "{shift}");
    assert_eq!(op.route_status("users")["state"], "on-monolith");
    let checks = gate.bodies();
    assert_eq!(names(&checks), ["gate.check", "gate.check"]);
    assert_eq!(
        (checks[0]["step"].clone(), checks[1]["step"].clone()),
        (10.into(), 100.into())
    );
    assert_eq!(checks[1]["phase"], "step");
    assert_eq!(checks[1]["gate"], "contract-tests");
    let rolled_back = last_entry(&op, "shift");
    assert!(
        rolled_back["evidence"]["gate_failed"]
            .as_str()
            .unwrap()
            .contains("contract-tests"),
        "{rolled_back}"
    );
    assert_eq!(rolled_back["evidence"]["hooks"][0]["gate"], "smoke");
    assert_eq!(rolled_back["evidence"]["hooks"][0]["passed"], true);

    // dry_run: the verdict is shown and journaled, and the shift finishes.
    std::fs::write(
        op.config_path(),
        format!("{}{}", stack.config(), gates(true)),
    )
    .unwrap();
    let dry = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(dry.code, 0, "{dry}");
    assert!(
        dry.stderr
            .contains("gate contract-tests (step) dry-run: would fail"),
        "{dry}"
    );
    let step = last_entry(&op, "shift");
    assert_eq!(step["what"], "shift to 100 percent");
    let verdicts = step["evidence"]["gates"].as_array().unwrap();
    assert_eq!(
        verdicts[0]["gate"], "ticket",
        "before-shift, journaled with the first step"
    );
    assert_eq!(verdicts[0]["phase"], "before-shift");
    let verdict = &verdicts[1];
    assert_eq!(
        (
            verdict["gate"].clone(),
            verdict["dry_run"].clone(),
            verdict["passed"].clone()
        ),
        ("contract-tests".into(), true.into(), false.into()),
        "{step}"
    );
}

#[test]
fn a_command_gate_that_exits_1_fails_the_step_and_one_that_hangs_is_killed_at_its_timeout() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let gate = |command: &str, timeout: &str| {
        format!(
            r#"
[[routes.users.gates]]
name = "orders"
phase = "step"
command = {command}
timeout = "{timeout}"
"#
        )
    };
    let on_timeout_pass = |gate: String| gate + "on_timeout = \"pass\"\n";
    let op = stack.operator_with(&gate(
        r#"["scripts/check-orders", "--route", "users"]"#,
        "30s",
    ));
    write_script(
        op.dir.path(),
        "scripts/check-orders",
        "#!/bin/sh\nenv | grep '^FICUS_' | sort > ficus-env.txt\necho \"$@\" > args.txt\necho 'orders check: 2 orders lost' >&2\nexit 1\n",
    );
    op.init();

    let shift = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(shift.code, 3, "{shift}");
    assert!(
        shift
            .stderr
            .contains("gate orders (step): exit 1: orders check: 2 orders lost"),
        "{shift}"
    );
    let env = std::fs::read_to_string(op.dir.path().join("ficus-env.txt")).unwrap();
    for line in [
        "FICUS_FROM=0",
        "FICUS_PHASE=step",
        "FICUS_ROUTE=users",
        "FICUS_STEP=100",
        "FICUS_TO=100",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in:\n{env}");
    }
    let args = std::fs::read_to_string(op.dir.path().join("args.txt")).unwrap();
    assert_eq!(args.trim(), "--route users");
    assert_eq!(op.route_status("users")["state"], "on-monolith");

    // A gate that hangs (with a child of its own) is killed, group and all.
    std::fs::write(
        op.config_path(),
        format!("{}{}", stack.config(), gate(r#"["scripts/hang"]"#, "1s")),
    )
    .unwrap();
    write_script(
        op.dir.path(),
        "scripts/hang",
        "#!/bin/sh\nsleep 300 &\necho $! > child.pid\nsleep 300\n",
    );
    let started = Instant::now();
    let hung = op.run(&["shift", "users", "--steps", "100"]);
    let took = started.elapsed();
    assert_eq!(hung.code, 3, "{hung}");
    assert!(
        hung.stderr
            .contains("gate orders (step): timed out after 1s; its process group"),
        "{hung}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let child: u32 = std::fs::read_to_string(op.dir.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually(Duration::from_secs(5), "the gate's child is killed", || {
        // Gone, or a zombie waiting for its new parent to reap it.
        std::fs::read_to_string(format!("/proc/{child}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z')
        })
    });

    // on_timeout = "pass": the same hanging gate lets the step go.
    let config = on_timeout_pass(gate(r#"["scripts/hang"]"#, "1s"));
    std::fs::write(op.config_path(), format!("{}{config}", stack.config())).unwrap();
    let passed = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(passed.code, 0, "{passed}");
    assert!(
        passed.stderr.contains("on_timeout = pass so it passes"),
        "{passed}"
    );
    assert_eq!(op.route_status("users")["state"], "on-service");

    // A before-shift gate that fails stops the shift before anything moved.
    let ticket = "[[routes.threads.gates]]\nname = \"ticket\"\nphase = \"before-shift\"\ncommand = [\"false\"]\n";
    std::fs::write(op.config_path(), format!("{}{ticket}", stack.config())).unwrap();
    let refused = op.run(&["shift", "threads", "--steps", "100"]);
    assert_eq!(refused.code, 3, "{refused}");
    assert!(
        refused
            .stderr
            .contains("threads: gate ticket (before-shift): exit 1; nothing had moved"),
        "{refused}"
    );
    assert_eq!(op.route_status("threads")["state"], "on-monolith");
}

#[test]
fn notifications_to_moto_sns_arrive_in_a_subscribed_sqs_queue() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let config = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&stack.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load(),
    );
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let (topic, queue) = rt.block_on(async {
        let topic = sns
            .create_topic()
            .name("ficus-events")
            .send()
            .await
            .unwrap();
        let topic = topic.topic_arn().unwrap().to_owned();
        let queue = sqs
            .create_queue()
            .queue_name("ficus-events")
            .send()
            .await
            .unwrap();
        let queue = queue.queue_url().unwrap().to_owned();
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let queue_arn = attributes.attributes().unwrap()
            [&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .unwrap();
        (topic, queue)
    });
    let op = stack.operator_with(&format!("\n[[notify]]\nsns_topic_arn = \"{topic}\"\n"));

    let test = op.run(&["notify", "test"]);
    assert_eq!(test.code, 0, "{test}");
    assert!(
        test.stdout.contains(&format!("sns {topic}: delivered")),
        "{test}"
    );
    op.init();
    let shift = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(shift.code, 0, "{shift}");

    let mut events = Vec::new();
    eventually(Duration::from_secs(15), "5 events in the queue", || {
        let received = rt
            .block_on(
                sqs.receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .send(),
            )
            .unwrap();
        for message in received.messages() {
            let envelope: serde_json::Value =
                serde_json::from_str(message.body().unwrap()).unwrap();
            assert_eq!(envelope["TopicArn"], topic.as_str());
            let event: serde_json::Value =
                serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            assert_eq!(event["schema"], "ficus.event/v1");
            assert_eq!(
                envelope["MessageAttributes"]["event"]["Value"], event["event"],
                "{envelope}"
            );
            events.push(event["event"].as_str().unwrap().to_owned());
        }
        events.len() >= 5
    });
    let events: BTreeSet<String> = events.into_iter().collect();
    let expected: BTreeSet<String> = [
        "notify.test",
        "shift.started",
        "gate.passed",
        "step.applied",
    ]
    .map(String::from)
    .into();
    assert_eq!(events, expected);
}

#[test]
fn bad_notify_and_gate_settings_exit_2_naming_the_key() {
    let base = r#"
[listener]
load_balancer = "lb"
port = 80
[routes.users]
paths = ["/api/users*"]
target_group = "users"
"#;
    let gate = "[[routes.users.gates]]\nname = \"ci\"\n";
    for (extra, named) in [
        (
            format!("{gate}phase = \"step\"\nurl = \"http://ci\"\nretry = 1\n"),
            "unknown field `retry`",
        ),
        (
            format!("{gate}phase = \"later\"\nurl = \"http://ci\"\n"),
            "`later` is not a gate phase; use one of: before-shift, step, before-full, after-rollback for key `routes.users.gates[0].phase`",
        ),
        (
            format!("{gate}phase = \"step\"\nurl = \"http://ci\"\ncommand = [\"true\"]\n"),
            "`routes.users.gates[0]`: both `url` and `command`",
        ),
        (
            format!("{gate}phase = \"step\"\n"),
            "`routes.users.gates[0]`: neither `url` nor `command`",
        ),
        (
            format!("{gate}phase = \"step\"\ncommand = []\n"),
            "`routes.users.gates[0].command`: empty",
        ),
        (
            format!("{gate}phase = \"step\"\nurl = \"ci.internal/run\"\n"),
            "`routes.users.gates[0].url`: `ci.internal/run` is not an http:// or https:// URL",
        ),
        (
            "[[notify]]\nurl = \"http://hooks\"\nmin_severity = \"loud\"\n".to_owned(),
            "`loud` is not a severity; use one of: info, warning, critical for key `notify[0].min_severity`",
        ),
        (
            "[[notify]]\nurl = \"http://hooks\"\nchannel = \"#ops\"\n".to_owned(),
            "unknown field `channel`",
        ),
        (
            "[[notify]]\nurl = \"http://hooks\"\nsns_topic_arn = \"arn:aws:sns:us-east-1:1:t\"\n"
                .to_owned(),
            "`notify[0]`: both `url` and `sns_topic_arn`",
        ),
        (
            "[[notify]]\nmin_severity = \"info\"\n".to_owned(),
            "`notify[0]`: neither `url` nor `sns_topic_arn`",
        ),
        (
            "[[notify]]\nsns_topic_arn = \"arn:aws:sns:us-east-1:1:t\"\nformat = \"slack\"\n"
                .to_owned(),
            "`notify[0].format`: `slack` is for webhook URLs",
        ),
    ] {
        let op = Operator::new(&format!("{base}{extra}"), Vec::new());
        let run = op.run(&["status"]);
        assert_eq!(run.code, 2, "{extra}\n{run}");
        assert!(
            run.stderr.contains(named),
            "{extra}\nwanted: {named}\n{run}"
        );
        assert!(!run.stderr.contains("panicked"), "{run}");
    }
    let op = Operator::new(base, Vec::new());
    let test = op.run(&["notify", "test"]);
    assert_eq!(test.code, 2, "{test}");
    assert!(test.stderr.contains("add a `[[notify]]` table"), "{test}");
}

#[test]
fn every_toml_block_of_operations_md_loads() {
    let toml = crate::docs::blocks("docs/operations.md", "toml");
    assert!(toml.len() >= 5, "{toml:?}");
    for (index, block) in toml.iter().enumerate() {
        let op = Operator::new(block, Vec::new());
        // `history` loads and validates the settings and calls no AWS API.
        let run = op.run(&["history"]);
        assert_eq!(run.code, 0, "block {index}:\n{block}\n{run}");
    }
}

#[test]
fn a_hold_a_promote_and_an_abort_are_announced() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let hook = Receiver::start();
    let op = stack.operator_with(&format!(
        "[[notify]]\nurl = \"{}\"\nmin_severity = \"info\"\n",
        hook.url()
    ));
    op.init();
    let held = op.run(&["shift", "users", "--to", "10", "--lock-settle", "0s"]);
    assert_eq!(held.code, 0, "{held}");
    let promoted = op.run(&["promote", "users", "--lock-settle", "0s"]);
    assert_eq!(promoted.code, 0, "{promoted}");
    let aborted = op.run(&["abort", "users", "--reason", "rollback drill"]);
    assert_eq!(aborted.code, 0, "{aborted}");

    let bodies = hook.bodies();
    let plan: Vec<&serde_json::Value> = bodies
        .iter()
        .filter(|b| {
            matches!(
                b["event"].as_str(),
                Some("shift.held" | "shift.promoted" | "shift.aborted")
            )
        })
        .collect();
    let events: Vec<&str> = plan.iter().map(|b| b["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["shift.held", "shift.promoted", "shift.aborted"],
        "{bodies:#?}"
    );
    assert_eq!(plan[0]["to"], 10, "{}", plan[0]);
    assert_eq!(
        (plan[1]["from"].clone(), plan[1]["to"].clone()),
        (10.into(), 100.into()),
        "{}",
        plan[1]
    );
    assert_eq!(plan[2]["severity"], "warning", "{}", plan[2]);
    assert_eq!(plan[2]["reason"], "rollback drill", "{}", plan[2]);
    assert_eq!(plan[2]["from"], 100, "{}", plan[2]);
}
