//! The control-plane sequence against moto_server, an independent
//! implementation of the ELBv2 API: init, status, plan, shift, gradual shift,
//! rollback, gates, lock, SIGKILL mid-shift.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::*;
use aws_sdk_elasticloadbalancingv2::Client;
use tokio::runtime::Runtime;

fn weights(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The route's rule on the stack's listener: (priority, forward weights).
fn rule(
    rt: &Runtime,
    elb: &Client,
    stack: &MotoStack,
    route: &str,
) -> (String, BTreeMap<String, i32>) {
    route_rule(rt, elb, &stack.listener_arn, route).unwrap()
}

/// The priority of the route's rule on the stack's listener.
fn priority(rt: &Runtime, elb: &Client, stack: &MotoStack, route: &str) -> String {
    rule(rt, elb, stack, route).0
}

/// Starts `shift ROUTE --steps 10,50,100 --interval 30s` and waits until the
/// route is at 10% and that step is journaled; the background `migrate`.
fn shift_resting_at_10_percent(
    rt: &Runtime,
    elb: &Client,
    stack: &MotoStack,
    op: &Operator,
    route: &str,
) -> Child {
    let child = op.spawn_shift(route, "10,50,100", "30s");
    eventually(
        Duration::from_secs(20),
        &format!("{route} at 10%, journaled"),
        || {
            rule(rt, elb, stack, route).1 == weights(&[("monolith", 90), (route, 10)])
                && op
                    .journal()
                    .iter()
                    .any(|e| e["route"] == route && e["what"] == "shift to 10 percent")
        },
    );
    child
}

#[test]
fn init_status_plan_shift_and_rollback() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let op = stack.operator();

    let before_init = op.run(&["shift", "users"]);
    assert_eq!(before_init.code, 1, "{before_init}");
    assert!(
        before_init.stderr.contains("run `migrate init`"),
        "{before_init}"
    );

    let init = op.init();
    assert_eq!(init.stdout.matches("created rule").count(), 3, "{init}");
    for (route, priority) in [("users", "100"), ("threads", "101"), ("posts", "102")] {
        let (p, w) = rule(&rt, &elb, &stack, route);
        assert_eq!(
            (p.as_str(), w),
            (priority, weights(&[(route, 100)])),
            "{route}"
        );
    }
    let again = op.init();
    assert_eq!(again.stdout.matches("nothing to do").count(), 3, "{again}");

    let status = op.route_status("users");
    assert_eq!(status["state"], "on-monolith");
    assert_eq!(status["percent"], 0);
    assert_eq!(status["healthy"], 1);
    assert_eq!(status["monolith_priority"], 99);
    assert!(
        status["last_change"]["what"]
            .as_str()
            .unwrap()
            .contains("init")
    );

    let plan = op.run(&["plan", "users", "--to", "10"]);
    assert_eq!(plan.code, 0, "{plan}");
    let modify = plan
        .stdout
        .find("ModifyRule")
        .expect("plan names ModifyRule");
    let moved = plan
        .stdout
        .find("SetRulePriorities")
        .expect("plan names SetRulePriorities");
    assert!(
        modify < moved,
        "the shadowed action change comes first:\n{plan}"
    );
    assert_eq!(
        priority(&rt, &elb, &stack, "users"),
        "100",
        "plan changed nothing"
    );

    let shift = op.run(&["shift", "users", "--steps", "100", "-v"]);
    assert_eq!(shift.code, 0, "{shift}");
    assert!(shift.stderr.contains("(1 changed routing)"), "{shift}");
    assert_eq!(
        shift.stderr.matches("elbv2 SetRulePriorities").count(),
        1,
        "{shift}"
    );
    assert_eq!(
        shift.stderr.matches("elbv2 ModifyRule").count(),
        0,
        "{shift}"
    );
    assert_eq!(
        rule(&rt, &elb, &stack, "users"),
        ("1".to_owned(), weights(&[("users", 100)]))
    );
    assert_eq!(op.route_status("users")["state"], "on-service");
    assert_eq!(op.route_status("threads")["state"], "on-monolith");
    let done = op.run(&["shift", "users"]);
    assert_eq!(done.code, 0, "{done}");
    assert!(done.stdout.contains("nothing to do"), "{done}");

    let rollback = op.run(&["rollback", "users"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(priority(&rt, &elb, &stack, "users"), "100");
    let again = op.run(&["rollback", "users"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stdout.contains("already on the monolith"), "{again}");

    let history = op.run(&["history", "users", "--output", "json"]);
    assert_eq!(history.code, 0, "{history}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).unwrap();
    let commands: Vec<&str> = entries
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["init", "shift", "rollback"]);
    assert_eq!(entries[1]["before"]["priority"], 100);
    assert_eq!(entries[1]["after"]["priority"], 1);
    assert!(
        entries[1]["who"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:sts::"),
        "{}",
        entries[1]
    );
    assert_eq!(entries[1]["evidence"]["health"]["healthy"], 1);
}

#[test]
fn a_gradual_shift_moves_the_split_and_survives_sigkill() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let op = stack.operator();
    op.init();

    // Watch the split move: 10%, 50%, then the plain forward.
    let child = op.spawn_shift("users", "10,50,100", "1500ms");
    let mut seen = Vec::new();
    eventually(
        Duration::from_secs(30),
        "the gradual shift to end on the service",
        || {
            let (priority, w) = rule(&rt, &elb, &stack, "users");
            if seen.last() != Some(&(priority.clone(), w.clone())) {
                seen.push((priority.clone(), w.clone()));
            }
            priority == "1" && w == weights(&[("users", 100)])
        },
    );
    let run = finish(child);
    assert_eq!(run.code, 0, "{run}");
    let splits: Vec<_> = seen
        .iter()
        .filter(|(p, _)| p == "1")
        .map(|(_, w)| w.clone())
        .collect();
    assert_eq!(
        splits,
        vec![
            weights(&[("monolith", 90), ("users", 10)]),
            weights(&[("monolith", 50), ("users", 50)]),
            weights(&[("users", 100)])
        ],
        "observed {seen:?}"
    );
    assert!(
        stack.lb_stub.requests.load(Ordering::SeqCst) > 0,
        "intervals probe through lb_url"
    );

    // SIGKILL in the middle of a gradual shift, then status explains it and
    // shift continues from where it stopped.
    let mut child = shift_resting_at_10_percent(&rt, &elb, &stack, &op, "threads");
    sigkill(&mut child);
    let whole = op.status_json();
    assert!(whole["lock"].is_null(), "{whole}");
    assert!(
        whole["stale_locks"][0]["holder"]
            .as_str()
            .unwrap()
            .ends_with(&format!("pid {}", child.id())),
        "{whole}"
    );
    let status = op.route_status("threads");
    assert_eq!(status["state"], "shifting", "{status}");
    assert_eq!(status["percent"], 10);
    assert!(
        status["summary"]
            .as_str()
            .unwrap()
            .contains("10% on the service")
    );
    let resumed = op.run(&shift_args("threads", "10,50,100", "500ms"));
    assert_eq!(resumed.code, 0, "{resumed}");
    let steps: Vec<String> = op
        .journal()
        .iter()
        .filter(|e| e["route"] == "threads")
        .map(|e| e["what"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        steps,
        [
            "init: created rule at priority 101 behind the monolith",
            "shift to 10 percent",
            "shift to 50 percent",
            "shift to 100 percent"
        ]
    );
    assert_eq!(op.route_status("threads")["state"], "on-service");

    // SIGKILL again, then rollback completes without --force-unlock (the dead
    // holder was a process of this host).
    let mut child = shift_resting_at_10_percent(&rt, &elb, &stack, &op, "posts");
    sigkill(&mut child);
    let rollback = op.run(&["rollback", "posts"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(
        rule(&rt, &elb, &stack, "posts"),
        ("102".to_owned(), weights(&[("posts", 100)]))
    );
    let all = op.run(&["rollback", "--all"]);
    assert_eq!(all.code, 0, "{all}");
    for route in ["users", "threads", "posts"] {
        assert_eq!(op.route_status(route)["state"], "on-monolith", "{route}");
    }
}

#[test]
fn failed_gates_roll_back_and_exit_3() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let op = stack.operator();
    op.init();

    // Probes through the load balancer fail after the first step.
    let child = op.spawn_shift("posts", "10,100", "3s");
    eventually(Duration::from_secs(20), "posts at 10%", || {
        priority(&rt, &elb, &stack, "posts") == "3"
    });
    stack.lb_stub.status.store(503, Ordering::SeqCst);
    let run = finish(child);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("error budget"), "{run}");
    // The failure is said once, and it says what moved.
    assert_eq!(
        run.stderr.matches("exceeded the error budget").count(),
        1,
        "{run}"
    );
    assert!(
        run.stderr.contains("; rolled back: on the monolith"),
        "{run}"
    );
    assert_eq!(
        rule(&rt, &elb, &stack, "posts"),
        ("102".to_owned(), weights(&[("posts", 100)]))
    );
    let last = op.journal().into_iter().last().unwrap();
    assert_eq!(last["route"], "posts");
    assert!(
        last["evidence"]["gate_failed"]
            .as_str()
            .unwrap()
            .contains("error budget"),
        "{last}"
    );
    stack.lb_stub.status.store(200, Ordering::SeqCst);

    // Never shift traffic onto an empty target group.
    rt.block_on(async {
        let target = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
            .id("10.0.0.11")
            .port(3000)
            .build();
        elb.deregister_targets()
            .target_group_arn(&stack.target_groups["users"])
            .targets(target)
            .send()
            .await
            .unwrap();
    });
    let run = op.run(&["shift", "users", "--output", "json"]);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("no healthy target"), "{run}");
    assert!(!run.stderr.contains("never shifting"), "{run}");
    assert!(
        run.stderr.contains("; nothing had moved: on the monolith"),
        "{run}"
    );
    assert!(!run.stderr.contains("rolled back"), "{run}");
    assert_eq!(priority(&rt, &elb, &stack, "users"), "100");
    // Under --output json, one JSON document on stdout says so too.
    let document: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(document["ok"], false, "{run}");
    assert_eq!(document["exit_code"], 3, "{run}");
    assert_eq!(document["route"], "users", "{run}");
    assert_eq!(document["routing_changes"], 0, "{run}");
    assert!(
        document["error"]
            .as_str()
            .unwrap()
            .contains("no healthy target"),
        "{run}"
    );
    // A gate failure that changed nothing is journaled, and history shows why.
    let last = op.journal().into_iter().last().unwrap();
    assert_eq!(last["route"], "users", "{last}");
    assert_eq!(last["what"], "gate failed; nothing had moved", "{last}");
    let history = op.run(&["history", "users"]);
    assert!(
        history
            .stdout
            .lines()
            .last()
            .unwrap()
            .contains("; gate failed: health gate: target group users has no healthy target"),
        "{history}"
    );
}

#[test]
fn one_operator_at_a_time() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let op = stack.operator();
    op.init();

    let first = op.spawn_shift("users", "50,100", "3s");
    eventually(Duration::from_secs(20), "users at 50%", || {
        priority(&rt, &elb, &stack, "users") == "1"
    });
    let second = op.run(&["shift", "posts"]);
    assert_eq!(second.code, 4, "{second}");
    assert!(
        second.stderr.contains(&format!("pid {}", first.id())),
        "names the holder: {second}"
    );
    assert_eq!(priority(&rt, &elb, &stack, "posts"), "102");
    let waiting = op.run(&["shift", "posts", "--wait", "30s", "--output", "json"]);
    assert_eq!(waiting.code, 0, "{waiting}");
    // The wait is said once on stderr (who holds the lock), and its end.
    assert_eq!(
        waiting
            .stderr
            .matches("migrate: the lock is held by ")
            .count(),
        1,
        "{waiting}"
    );
    assert!(
        waiting
            .stderr
            .contains(&format!("pid {} since ", first.id()))
            && waiting.stderr.contains("waiting for it (--wait, up to ")
            && waiting
                .stderr
                .contains("migrate: got the lock after waiting "),
        "{waiting}"
    );
    let outcome: serde_json::Value = serde_json::from_str(&waiting.stdout).unwrap();
    assert!(
        outcome["lock_waited_ms"].as_u64().unwrap() >= 1000,
        "{outcome:#}"
    );
    assert_eq!(finish(first).code, 0);
    assert_eq!(priority(&rt, &elb, &stack, "posts"), "3");

    // A lock left by someone on another machine: exit 4 until --force-unlock.
    rt.block_on(async {
        let tag = aws_sdk_elasticloadbalancingv2::types::Tag::builder()
            .key("ficus:lock:elsewhere")
            .value("ann@bastion pid 7 since 2026-01-01T00:00:00Z until 2999-01-01T00:00:00Z")
            .build();
        elb.add_tags()
            .resource_arns(&stack.listener_arn)
            .tags(tag)
            .send()
            .await
            .unwrap();
    });
    let held = op.run(&["rollback", "posts", "--output", "json"]);
    assert_eq!(held.code, 4, "{held}");
    let document: serde_json::Value = serde_json::from_str(&held.stdout).expect("JSON on stdout");
    assert_eq!(document["ok"], false, "{held}");
    assert_eq!(document["exit_code"], 4, "{held}");
    assert_eq!(document["routes"], serde_json::json!(["posts"]), "{held}");
    assert!(
        held.stderr
            .contains("ann@bastion pid 7 since 2026-01-01T00:00:00Z"),
        "{held}"
    );
    assert_eq!(op.status_json()["lock"]["holder"], "ann@bastion pid 7");
    let forced = op.run(&["rollback", "posts", "--force-unlock"]);
    assert_eq!(forced.code, 0, "{forced}");
    assert_eq!(priority(&rt, &elb, &stack, "posts"), "102");
    assert!(op.status_json()["lock"].is_null());
}

#[test]
fn drift_is_reported_not_overwritten() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let op = stack.operator();
    op.init();
    let drifted = stack.config().replace(
        r#"paths = ["/api/users*"]"#,
        r#"paths = ["/api/users*", "/api/people*"]"#,
    );
    std::fs::write(op.config_path(), drifted).unwrap();
    let init = op.init();
    assert!(
        init.stdout.contains("users: rule exists") && init.stdout.contains("DRIFT"),
        "{init}"
    );
    let status = op.route_status("users");
    assert!(
        status["drift"][0]
            .as_str()
            .unwrap()
            .contains("/api/people*"),
        "{status}"
    );
    assert_eq!(priority(&rt, &elb, &stack, "users"), "100");
}

#[test]
fn rollback_completes_after_a_manual_edit_in_the_console() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let op = stack.operator();
    op.init();
    assert_eq!(op.run(&["shift", "users"]).code, 0);
    // Someone points the users rule at the posts target group by hand.
    let rule_arn = op.route_status("users")["rule_arn"]
        .as_str()
        .unwrap()
        .to_owned();
    rt.block_on(async {
        let action = aws_sdk_elasticloadbalancingv2::types::Action::builder()
            .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
            .target_group_arn(&stack.target_groups["posts"])
            .build();
        elb.modify_rule()
            .rule_arn(&rule_arn)
            .actions(action)
            .send()
            .await
            .unwrap();
    });
    let status = op.route_status("users");
    assert_eq!(status["state"], "inconsistent", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap()
            .contains("forwards to posts"),
        "{status}"
    );
    let plan = op.run(&["plan", "users", "--to", "0"]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(
        plan.stdout.contains("SetRulePriorities") && plan.stdout.contains("ModifyRule"),
        "{plan}"
    );
    let rollback = op.run(&["rollback", "users"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(
        rule(&rt, &elb, &stack, "users"),
        ("100".to_owned(), weights(&[("users", 100)]))
    );
    assert_eq!(op.route_status("users")["state"], "on-monolith");
}

#[test]
fn a_profile_supplies_credentials_region_and_endpoint() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &config,
        format!(
            "[profile moto]\nregion = us-east-1\nendpoint_url = {}\n",
            stack.endpoint
        ),
    )
    .unwrap();
    std::fs::write(
        &credentials,
        "[moto]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let op = Operator::new(&stack.config(), vec![]);
    let mut command = op.command(&["--profile", "moto", "init"]);
    command
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials);
    let run = Run::from(command.output().unwrap());
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout.matches("created rule").count(), 3, "{run}");
    // Without the profile there are no credentials and no endpoint.
    let without = op.run(&["status"]);
    assert_eq!(without.code, 1, "{without}");
    assert!(without.stderr.contains("no AWS credentials"), "{without}");
}

/// Issue 21 against moto: the coverage check reads the monolith rule's host
/// condition as AWS describes it, init copies it into the route rules, a
/// rule edited by hand to lose it shows as a leak, and init narrows it back.
#[test]
fn coverage_of_a_host_conditioned_monolith_rule() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let op = stack.operator();
    let monolith_rule = rule_at(&rt, &elb, &stack.listener_arn, 99).unwrap();
    set_rule_conditions(
        &rt,
        &elb,
        &monolith_rule,
        &["/api*"],
        Some("api.shop.example"),
    );
    op.init();
    let users = op.route_status("users");
    let arn = users["rule_arn"].as_str().unwrap().to_owned();
    assert_eq!(rule_hosts(&rt, &elb, &arn), ["api.shop.example"]);
    assert_eq!(users["drift"], serde_json::json!([]), "{users}");
    // A colleague drops the host condition from the parked users rule.
    rt.block_on(
        elb.modify_rule()
            .rule_arn(&arn)
            .set_conditions(Some(conditions(&["/api/users*"], None)))
            .send(),
    )
    .unwrap();
    let leaking = op.route_status("users");
    assert!(leaking["drift"].to_string().contains("LEAK"), "{leaking}");
    let shift = op.run(&["shift", "users", "--steps", "100", "--skip-parity"]);
    assert_eq!(shift.code, 2, "{shift}");
    assert!(
        shift.stderr.contains("host-header api.shop.example"),
        "{shift}"
    );
    let narrowed = op.init();
    assert!(narrowed.stdout.contains("narrowed"), "{narrowed}");
    assert_eq!(rule_hosts(&rt, &elb, &arn), ["api.shop.example"]);
    assert_eq!(op.route_status("users")["drift"], serde_json::json!([]));
}

/// Puts ALB metrics into moto's CloudWatch, stamped now, every 250 ms until
/// dropped: the users service's and the monolith's target groups and the
/// load balancer, with AWS's names and dimensions.
struct MetricFeed {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The users service's 5XX per put (of 10 requests).
    pub service_5xx: std::sync::Arc<std::sync::atomic::AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricFeed {
    fn start(stack: &MotoStack) -> MetricFeed {
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let service_5xx = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (lb, users) = alb_dimensions(&stack.listener_arn, &stack.target_groups["users"]);
        let (_, monolith) = alb_dimensions(&stack.listener_arn, &stack.target_groups["monolith"]);
        let endpoint = stack.cloudwatch.url.clone();
        let (stop_in, errors_in) = (stop.clone(), service_5xx.clone());
        let thread = std::thread::spawn(move || {
            let rt = runtime();
            let cw = cloudwatch_client(&rt, &endpoint, "testing", "testing");
            let dim =
                |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
            let datum = |metric: &str, dims: Vec<Dimension>, value: f64, unit: StandardUnit| {
                MetricDatum::builder()
                    .metric_name(metric)
                    .set_dimensions(Some(dims))
                    .value(value)
                    .unit(unit)
                    .timestamp(std::time::SystemTime::now().into())
                    .build()
            };
            while !stop_in.load(Ordering::SeqCst) {
                let tg = |name: &str| vec![dim("TargetGroup", name), dim("LoadBalancer", &lb)];
                let data = vec![
                    datum("RequestCount", tg(&users), 10.0, StandardUnit::Count),
                    datum(
                        "HTTPCode_Target_5XX_Count",
                        tg(&users),
                        f64::from(errors_in.load(Ordering::SeqCst)),
                        StandardUnit::Count,
                    ),
                    datum(
                        "TargetResponseTime",
                        tg(&users),
                        0.012,
                        StandardUnit::Seconds,
                    ),
                    datum("RequestCount", tg(&monolith), 90.0, StandardUnit::Count),
                    datum(
                        "TargetResponseTime",
                        tg(&monolith),
                        0.010,
                        StandardUnit::Seconds,
                    ),
                    datum(
                        "RequestCount",
                        vec![dim("LoadBalancer", &lb)],
                        100.0,
                        StandardUnit::Count,
                    ),
                ];
                rt.block_on(
                    cw.put_metric_data()
                        .namespace("AWS/ApplicationELB")
                        .set_metric_data(Some(data))
                        .send(),
                )
                .expect("moto takes PutMetricData");
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        MetricFeed {
            stop,
            service_5xx,
            thread: Some(thread),
        }
    }
}

impl Drop for MetricFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Issue 15 against moto: with ALB metrics put into moto's CloudWatch under
/// AWS's names and dimensions for the stack's load balancer and target
/// groups, `migrate shift` reads them: a healthy service passes the metric
/// gates with the values in the journal; a service answering 5XX to 20% of
/// its requests fails the error gate, is rolled back and exits 3.
#[test]
fn metric_gates_read_the_alb_metrics_by_their_aws_names_and_dimensions() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let config = stack.config().replace(
        "[metrics]\nenabled = false\n",
        "[metrics]\nperiod = \"1s\"\nmin_requests = 20\nmax_wait = \"5s\"\n",
    );
    let mut env = stack.operator().env;
    env.push((
        "AWS_ENDPOINT_URL_CLOUDWATCH".into(),
        stack.cloudwatch.url.clone(),
    ));
    let op = Operator::new(&config, env);
    op.init();
    let feed = MetricFeed::start(&stack);
    let plan = op.run(&["plan", "users"]);
    assert_eq!(
        plan.stdout
            .matches("metric gates pass: GetMetricData every 1s")
            .count(),
        2,
        "{plan}"
    );

    let shift = op.run(&[
        "shift",
        "users",
        "--steps",
        "10,100",
        "--interval",
        "1s",
        "-v",
    ]);
    assert_eq!(shift.code, 0, "{shift}");
    assert!(
        shift
            .stderr
            .contains("cloudwatch GetMetricData (8 queries)"),
        "{shift}"
    );
    let journal = op.journal();
    let step = journal
        .iter()
        .find(|e| e["what"] == "shift to 100 percent")
        .expect("the last step is journaled");
    let metrics = &step["evidence"]["metrics"];
    assert_eq!(metrics["verdict"], "pass", "{metrics:#}");
    assert!(
        metrics["service"]["requests"].as_f64().unwrap() >= 20.0,
        "{metrics:#}"
    );
    assert_eq!(metrics["service"]["target_5xx"], 0.0, "{metrics:#}");
    assert!(
        metrics["monolith"]["requests"].as_f64().unwrap() >= 180.0,
        "{metrics:#}"
    );
    assert!(
        metrics["load_balancer"]["requests"].as_f64().unwrap() >= 200.0,
        "{metrics:#}"
    );
    assert_eq!(metrics["window"]["period_s"], 1, "{metrics:#}");
    assert_eq!(metrics["thresholds"]["min_requests"], 20, "{metrics:#}");
    // status (latest), history and --output json show the evaluation.
    let status = op.route_status("users");
    assert_eq!(
        status["metrics"]["evaluation"]["verdict"], "pass",
        "{status:#}"
    );
    let text = op.run(&["status", "users"]);
    assert!(text.stdout.contains("metrics:  pass: traffic: "), "{text}");
    let history = op.run(&["history", "users"]);
    assert!(
        history.stdout.contains("; metrics pass: traffic: "),
        "{history}"
    );
    let history = op.run(&["--output", "json", "history", "users"]);
    assert!(
        history.stdout.contains("\"metric_evaluations\""),
        "{history}"
    );

    assert_eq!(op.run(&["rollback", "users"]).code, 0);
    // After the rollback, the shift's pass is not the route's verdict now.
    let status = op.route_status("users");
    assert_eq!(
        status["metrics"]["rolled_back"]["what"], "rollback to the monolith",
        "{status:#}"
    );
    let text = op.run(&["status", "users"]);
    assert!(
        text.stdout.contains("metrics:  as of the shift, ")
            && text.stdout.contains(": pass: traffic: ")
            && text
                .stdout
                .contains("not current: rolled back since (`rollback to the monolith`, "),
        "{text}"
    );
    // A new shift since: the metrics line follows the latest change.
    assert_eq!(op.run(&["shift", "users", "--steps", "100"]).code, 0);
    let text = op.run(&["status", "users"]);
    assert!(
        text.stdout
            .contains("not current: the route changed since (`shift to 100 percent`, "),
        "{text}"
    );
    assert!(!text.stdout.contains("rolled back since"), "{text}");
    assert_eq!(op.run(&["rollback", "users"]).code, 0);
    feed.service_5xx.store(2, Ordering::SeqCst);
    let failed = op.run(&["shift", "users", "--steps", "10,100", "--interval", "1s"]);
    assert_eq!(failed.code, 3, "{failed}");
    // 2 of every 10 since the feed changed; the window may hold a put from before.
    assert!(
        failed.stderr.contains("metric gate: errors: service 5XX ")
            && failed.stderr.contains("vs monolith 0.00% (0 of "),
        "{failed}"
    );
    let journal = op.journal();
    let rolled_back = journal.last().unwrap();
    assert_eq!(
        rolled_back["what"],
        "gate failed; rolled back to the monolith"
    );
    assert_eq!(rolled_back["evidence"]["metrics"]["verdict"], "fail");
    assert_eq!(op.route_status("users")["state"], "on-monolith");
    drop(feed);
}

/// CloudWatch throttling during a shift: retried with backoff (the shift
/// passes once CloudWatch answers), and when it lasts past the retries the
/// step is not passed: the shift rolls back and says why (exit 1).
#[test]
fn cloudwatch_throttling_is_retried_and_never_counted_as_a_pass() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let config = stack.config().replace(
        "[metrics]\nenabled = false\n",
        "[metrics]\nperiod = \"1s\"\nmin_requests = 20\nmax_wait = \"5s\"\n",
    );
    let mut env = stack.operator().env;
    env.push((
        "AWS_ENDPOINT_URL_CLOUDWATCH".into(),
        stack.cloudwatch.url.clone(),
    ));
    let op = Operator::new(&config, env);
    op.init();
    let _feed = MetricFeed::start(&stack);

    // Two throttled answers, then CloudWatch answers: the SDK's retries ride it out.
    stack.cloudwatch.throttle.store(2, Ordering::SeqCst);
    let shift = op.run(&["shift", "users", "--steps", "10,100", "--interval", "1s"]);
    assert_eq!(shift.code, 0, "{shift}");
    assert_eq!(stack.cloudwatch.throttle.load(Ordering::SeqCst), 0);
    assert_eq!(op.run(&["rollback", "users"]).code, 0);

    // Throttled for good once the first step is in: no pass, a rollback.
    let child = op.spawn_shift("users", "10,100", "1s");
    eventually(Duration::from_secs(20), "users at 10%", || {
        op.journal()
            .iter()
            .filter(|e| e["what"] == "shift to 10 percent")
            .count()
            == 2
    });
    stack
        .cloudwatch
        .throttle
        .store(usize::MAX, Ordering::SeqCst);
    let run = finish(child);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("CloudWatch GetMetricData was throttled (ThrottlingException: Rate exceeded) and still was after the retries"),
        "{run}"
    );
    assert!(run.stderr.contains("rolled back"), "{run}");
    let journal = op.journal();
    let passed = journal
        .iter()
        .filter(|e| e["what"] == "shift to 100 percent")
        .count();
    assert_eq!(passed, 1, "only the first shift passed:\n{journal:#?}");
    assert_eq!(op.route_status("users")["state"], "on-monolith");
}

/// Issue 18: `migrate status` shows each service's ECS task counts and
/// Application Auto Scaling limits, found from its target group's
/// `ficus:ecs-service` tag, and says what it could not read without failing.
#[test]
fn status_shows_each_services_tasks_and_scaling_limits() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let sdk = sdk_config(&rt, &stack.endpoint, "testing", "testing");
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let scaling = aws_sdk_applicationautoscaling::Client::new(&sdk);
    rt.block_on(async {
        ecs.create_cluster()
            .cluster_name("ficus")
            .send()
            .await
            .unwrap();
        let container = aws_sdk_ecs::types::ContainerDefinition::builder()
            .name("forum")
            .image("forum:test")
            .memory(512)
            .build();
        ecs.register_task_definition()
            .family("forum")
            .container_definitions(container)
            .send()
            .await
            .unwrap();
        for (service, desired) in [("monolith", 1), ("users", 2)] {
            ecs.create_service()
                .cluster("ficus")
                .service_name(service)
                .task_definition("forum")
                .desired_count(desired)
                .send()
                .await
                .unwrap();
        }
        scaling
            .register_scalable_target()
            .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
            .scalable_dimension(
                aws_sdk_applicationautoscaling::types::ScalableDimension::EcsServiceDesiredCount,
            )
            .resource_id("service/ficus/users")
            .min_capacity(1)
            .max_capacity(4)
            .send()
            .await
            .unwrap();
        // monolith and users are ECS services; threads names one that does
        // not exist; posts is not tagged at all.
        for route in ["monolith", "users", "threads"] {
            let tag = aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key("ficus:ecs-service")
                .value(format!("service/ficus/{route}"))
                .build();
            elb.add_tags()
                .resource_arns(&stack.target_groups[route])
                .tags(tag)
                .send()
                .await
                .unwrap();
        }
    });
    let op = stack.operator();
    op.init();

    let status = op.status_json();
    let capacity = &status["capacity"];
    assert_eq!(
        capacity["users"]["ecs_service"], "service/ficus/users",
        "{capacity}"
    );
    // moto runs no containers: every desired task stays pending.
    assert_eq!(
        capacity["users"]["tasks"],
        serde_json::json!({ "running": 0, "desired": 2, "pending": 2 }),
        "{capacity}"
    );
    assert_eq!(
        capacity["users"]["scaling"],
        serde_json::json!({ "min": 1, "max": 4 })
    );
    assert_eq!(capacity["monolith"]["tasks"]["desired"], 1, "{capacity}");
    assert!(capacity["monolith"]["scaling"].is_null(), "{capacity}");
    assert!(capacity["threads"]["tasks"].is_null(), "{capacity}");
    assert_eq!(capacity["posts"]["registered"], 1, "{capacity}");

    let text = op.run(&["status"]);
    assert_eq!(text.code, 0, "{text}");
    for line in [
        "monolith tasks: 0 running, 1 desired, 1 pending (service/ficus/monolith); 1 healthy of 1 registered target; no scalable target: its task count is fixed",
        "  tasks:    0 running, 2 desired, 2 pending (service/ficus/users); 1 healthy of 1 registered target; scales 1-4",
        "  tasks:    1 healthy of 1 registered target; ECS has no service service/ficus/threads (missing or inactive); no scalable target",
        "  tasks:    1 healthy of 1 registered target; not an ECS service: its target group has no ficus:ecs-service tag",
    ] {
        assert!(text.stdout.contains(line), "{line}\n{text}");
    }
}

/// `verify --from-alb-log` on moto's ELBv2 and S3: it judges the logs of
/// the listener's load balancer, named `app/NAME/ID` as `leaks` names it
/// (migrate.toml names it by `load_balancer` alone); logs without an entry
/// of it exit 4 with `leaks`' words, and logs of it without a request of the
/// route exit 5 (nothing judged); every failure is the one failure document
/// (`ok`, `exit_code`, `error`, `route`, and `passed: false`); an S3 error
/// names the call, the bucket, the code, the endpoint and what set it.
#[test]
fn verify_from_alb_logs_judges_this_load_balancers_logs_and_s3_errors_name_the_endpoint() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let op = stack.operator();
    let own = {
        let resource = stack.listener_arn.rsplit_once(":listener/").unwrap().1;
        let parts: Vec<&str> = resource.split('/').collect();
        format!("{}/{}/{}", parts[0], parts[1], parts[2])
    };
    let line = |elb: &str, path: &str| {
        let mut record = alb::access_log::Record::new();
        record
            .set("time", "2026-12-01T10:00:00.000000Z")
            .set("elb", elb)
            .set("client:port", "198.51.100.7:5555")
            .set("request", format!("GET http://alb:80{path} HTTP/1.1"))
            .set("elb_status_code", "200");
        record.render() + "\n"
    };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let verify = |source: &str| {
        op.run(&[
            "verify",
            "users",
            "--from-alb-log",
            source,
            "--output",
            "json",
        ])
    };
    let document = |run: &Run, code: i32| -> serde_json::Value {
        let document = failure_json(run, code);
        assert_eq!(document["passed"], false, "{run}");
        assert_eq!(document["route"], "users", "{run}");
        document
    };

    // No line an access-log entry: exit 4, as `leaks` and `plan`.
    let garbage = write("notes.log", "hello\nworld\n");
    let run = verify(&garbage);
    let failure = document(&run, 4);
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("2 lines in 1 file, none an ALB access-log entry"),
        "{run}"
    );
    // Only another load balancer's lines: exit 4, naming ours with its id.
    let others = write(
        "others.log",
        &(line("app/ficus-staging/0123456789abcdef", "/api/users/1")
            + &line("app/ficus-staging/0123456789abcdef", "/api/users/2")),
    );
    let run = verify(&others);
    let failure = document(&run, 4);
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains(&format!("2 lines in 1 file, none of {own} (skipped 2 lines of other load balancers: app/ficus-staging/0123456789abcdef)")),
        "{run}"
    );
    // Ours, but no request of the route: nothing judged, exit 5.
    let posts = write("posts.log", &line(&own, "/api/posts/1"));
    let run = verify(&posts);
    let failure = document(&run, 5);
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .starts_with("no route had requests to verify"),
        "{run}"
    );

    // S3: moto's, through aws.endpoint_url (here AWS_ENDPOINT_URL), then
    // through AWS_ENDPOINT_URL_S3.
    let missing = op.run(&[
        "verify",
        "users",
        "--from-alb-log",
        "s3://no-such-bucket/prod",
    ]);
    assert_eq!(missing.code, 4, "{missing}");
    assert!(
        missing.stderr.contains(&format!(
            "S3 ListObjectsV2 on bucket no-such-bucket: NoSuchBucket: The specified bucket does not exist (the call went to the endpoint {} (set by aws.endpoint_url / --endpoint-url; AWS_ENDPOINT_URL_S3 sets S3's alone))",
            stack.endpoint
        )),
        "{missing}"
    );
    let missing = Run::from(
        op.command(&[
            "leaks",
            "users",
            "--from-alb-log",
            "s3://no-such-bucket/prod",
        ])
        .env("AWS_ENDPOINT_URL_S3", &stack.endpoint)
        .output()
        .unwrap(),
    );
    assert_eq!(missing.code, 4, "{missing}");
    assert!(
        missing.stderr.contains(&format!(
            "NoSuchBucket: The specified bucket does not exist (the call went to the S3 endpoint {} (set by AWS_ENDPOINT_URL_S3))",
            stack.endpoint
        )),
        "{missing}"
    );
}
