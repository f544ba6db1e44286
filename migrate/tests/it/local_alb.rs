//! End to end on the local ALB with the real monolith and services: real
//! traffic through the data plane, counted by the ALB's own metrics.

use std::time::{Duration, Instant};

use crate::support::*;
use aws_sdk_elasticloadbalancingv2::Client;
use tokio::runtime::Runtime;

/// The forward weight of the route's own target group in its rule.
fn service_weight(rt: &Runtime, elb: &Client, listener: &str, route: &str) -> Option<i32> {
    route_rule(rt, elb, listener, route)
        .unwrap()
        .1
        .get(route)
        .copied()
}

fn only(group: &str, n: u64) -> std::collections::BTreeMap<String, u64> {
    [(group.to_owned(), n)].into_iter().collect()
}

/// A `-v` run made at most `most` ELBv2 calls, exactly one changing routing,
/// and read no rule back after its write (the write's answer is the read-back).
/// One lock confirmation after the write is not counted: when the traffic
/// watch between the write and its journal tag outlasts
/// `lock::CONFIRMATION_COVERS` (1 s, as on a loaded machine), the journal's
/// AddTags confirms the lock again, as it must.
fn assert_calls_at_most(run: &Run, most: usize) {
    let calls = run.elbv2_calls();
    assert!(run.stderr.contains("(1 changed routing)"), "{run}");
    let write = calls
        .iter()
        .position(|call| *call == "SetRulePriorities")
        .expect("one SetRulePriorities");
    let after = &calls[write + 1..];
    assert!(
        !after.contains(&"DescribeRules"),
        "read back after the write: {calls:?}"
    );
    let reconfirmed = after.iter().filter(|call| **call == "DescribeTags").count();
    assert!(
        reconfirmed <= 1,
        "{reconfirmed} confirmations after the write: {run}"
    );
    assert!(
        calls.len() - reconfirmed <= most,
        "{} calls: {run}",
        calls.len()
    );
}

#[test]
fn shift_sends_the_route_to_its_service_and_rollback_brings_it_back() {
    let stack = LocalStack::start();
    let op = stack.ready_operator("2s");

    // The local stack has no ECS: status shows each group's targets and says
    // why there are no task counts.
    let status = op.status_json();
    assert_eq!(status["capacity"]["users"]["healthy"], 1, "{status}");
    assert_eq!(status["capacity"]["users"]["registered"], 1, "{status}");
    assert!(status["capacity"]["users"]["tasks"].is_null(), "{status}");
    let text = op.run(&["status"]);
    assert_eq!(text.code, 0, "{text}");
    for line in [
        "monolith tasks: 1 healthy of 1 registered target; not an ECS service: its target group has no ficus:ecs-service tag",
        "  tasks:    1 healthy of 1 registered target; not an ECS service",
    ] {
        assert!(text.stdout.contains(line), "{line}\n{text}");
    }

    // Before: everything on the monolith.
    assert_eq!(stack.burst("/api/users", 5).0, only("monolith", 5));

    // A direct cutover: at most 10 ELBv2 calls, exactly one changes routing
    // (3 to find the listener and its rules, 3 for the lock, 1 health gate,
    // 1 lock confirmation, 1 write whose answer is its read-back, 1
    // last-change tag covered by the write's confirmation). Its reader gone
    // (`| true`), it still completes.
    // (Wait out the window in which init's change counts as recent, which
    // would make migrate read the rules a second time.)
    std::thread::sleep(Duration::from_millis(2100));
    let started = Instant::now();
    let shift = op.run_stdout_closed(&["shift", "users", "--steps", "100", "-v"]);
    let wall = started.elapsed();
    assert_eq!(shift.code, 0, "{shift}");
    assert!(!shift.stderr.contains("panicked"), "{shift}");
    let shifted = Instant::now();
    assert_calls_at_most(&shift, 10);
    // The lock's settle (default 500 ms) is counted apart from migrate's work.
    assert!(
        shift.stderr.contains("ms waiting for the lock to settle"),
        "{shift}"
    );
    eprintln!("direct cutover: {wall:?} wall including process start");

    let (answered, statuses) = stack.burst("/api/users/1", 10);
    assert_eq!(answered, only("users", 10));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(stack.burst("/api/threads", 5).0, only("monolith", 5));
    assert_eq!(
        stack.burst("/api/posts/by-user/1", 5).0,
        only("monolith", 5)
    );
    // The request log is written in batches (at most 10 ms after a line).
    eventually(
        Duration::from_secs(5),
        "the users service logged the requests",
        || stack.services["users"].count("url=/api/users/1") >= 10,
    );

    assert_eq!(
        op.journal().last().unwrap()["what"],
        "shift to 100 percent",
        "journaled"
    );

    for args in [&["status"][..], &["plan", "users", "--to", "0"][..]] {
        let run = op.run_stdout_closed(args);
        assert_eq!(run.code, 0, "{args:?}: {run}");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run}");
    }
    // A rollback: at most 9 calls (the shift's but the health gate), exactly
    // one changing routing. (Again out of the window in which the shift's
    // change counts as recent.)
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(shifted.elapsed()));
    let rollback = op.run_stdout_closed(&["rollback", "users", "-v"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_calls_at_most(&rollback, 9);
    assert_eq!(stack.burst("/api/users", 5).0, only("monolith", 5));
    let again = op.run(&["rollback", "users"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stdout.contains("already on the monolith"), "{again}");
    // plan previews a shift's --steps and --sticky, holds included.
    let plan = op.run(&[
        "plan",
        "users",
        "--steps",
        "10,hold,50,100",
        "--sticky",
        "1h",
    ]);
    assert_eq!(plan.code, 0, "{plan}");
    for expected in [
        "step 10%:",
        "users=10, sticky 1h",
        "  hold:  the shift stops here until `migrate promote`",
        "step 50%:",
        "step 100%:",
    ] {
        assert!(plan.stdout.contains(expected), "{expected}: {plan}");
    }

    // A target group tagged as an ECS service where there is no ECS (the
    // local ALB answers no ECS call): status still answers, and says so.
    let rt = runtime();
    let elb = stack.elb(&rt);
    let users_tg = op.route_status("users")["target_group"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag = aws_sdk_elasticloadbalancingv2::types::Tag::builder()
        .key("ficus:ecs-service")
        .value("service/local/users")
        .build();
    rt.block_on(elb.add_tags().resource_arns(&users_tg).tags(tag).send())
        .unwrap();
    let started = Instant::now();
    let status = op.run(&["status", "users"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status
            .stdout
            .contains("  tasks:    1 healthy of 1 registered target; ECS DescribeServices"),
        "{status}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{status}");
}

#[test]
fn a_gradual_shift_moves_the_split() {
    let rt = runtime();
    let stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("5s");

    let mut shift = op.spawn_watched(&shift_args("threads", "10,50,100", "4s"));
    let mut shares = Vec::new();
    for percent in [10, 50] {
        let waiting = Instant::now();
        while service_weight(&rt, &elb, &listener, "threads") != Some(percent) {
            if shift.exited() || waiting.elapsed() > Duration::from_secs(20) {
                panic!("threads never at {percent}%: {}", shift.finish());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (answered, _) = stack.burst("/api/threads/2", 100);
        let to_service = *answered.get("threads").unwrap_or(&0) as f64;
        let total: u64 = answered.values().sum();
        shares.push(to_service / total as f64);
    }
    let run = shift.finish();
    assert_eq!(run.code, 0, "{run}");
    // Probes during the intervals add a few requests; the split still shows.
    assert!(
        shares[0] > 0.0 && shares[0] < 0.3,
        "about 10% expected: {shares:?}"
    );
    assert!(
        shares[1] > 0.3 && shares[1] < 0.7,
        "about 50% expected: {shares:?}"
    );
    assert_eq!(stack.burst("/api/threads", 20).0, only("threads", 20));
}

#[test]
fn stopping_the_service_mid_shift_fails_the_gate_and_rolls_back() {
    let rt = runtime();
    let mut stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("5s");

    let child = op.spawn_shift("users", "10,50,100", "5s");
    eventually(Duration::from_secs(20), "users at 10%", || {
        service_weight(&rt, &elb, &listener, "users") == Some(10)
    });
    stack.services.get_mut("users").unwrap().stop();
    let run = finish(child);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("rolled back"), "{run}");
    let (priority, weights) = route_rule(&rt, &elb, &listener, "users").unwrap();
    assert_eq!(priority, "100");
    assert_eq!(
        weights,
        only("users", 100)
            .into_iter()
            .map(|(k, v)| (k, v as i32))
            .collect()
    );
    let (answered, statuses) = stack.burst("/api/users", 10);
    assert_eq!(answered, only("monolith", 10));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let last = op.journal().into_iter().last().unwrap();
    assert!(last["evidence"]["gate_failed"].is_string(), "{last}");
}

#[test]
fn sigkill_mid_shift_then_status_and_rollback_and_a_second_operator_exits_4() {
    let rt = runtime();
    let stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("30s");

    let mut child = op.spawn_shift("posts", "10,50,100", "30s");
    eventually(Duration::from_secs(20), "posts at 10%, journaled", || {
        service_weight(&rt, &elb, &listener, "posts") == Some(10)
            && op
                .journal()
                .iter()
                .any(|e| e["what"] == "shift to 10 percent")
    });
    let second = op.run(&["shift", "users"]);
    assert_eq!(second.code, 4, "{second}");
    assert!(
        second.stderr.contains(&format!("pid {}", child.id())),
        "{second}"
    );

    sigkill(&mut child);
    let status = op.route_status("posts");
    assert_eq!(status["state"], "shifting", "{status}");
    assert_eq!(status["percent"], 10);
    let (answered, _) = stack.burst("/api/posts", 100);
    assert!(
        answered.contains_key("posts") && answered.contains_key("monolith"),
        "still split: {answered:?}"
    );

    let rollback = op.run(&["rollback", "posts"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(op.route_status("posts")["state"], "on-monolith");
    assert_eq!(stack.burst("/api/posts", 10).0, only("monolith", 10));
}

/// Issue 21: a monolith rule with a host condition. A parked route rule
/// without it would take another host's requests; init copies the host in,
/// and narrows a leaking parked rule made by hand.
#[test]
fn a_monolith_rule_with_a_host_condition_keeps_parked_routes_parked() {
    let stack = LocalStack::start();
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let monolith_rule = monolith_rule_on_host(&rt, &elb, &listener, "api.shop.example");
    // A rule for posts parked behind the monolith by hand, the way `init`
    // used to create it: path only.
    create_rule(
        &rt,
        &elb,
        &listener,
        150,
        &["/api/posts*"],
        "posts",
        &[("ficus:route", "posts")],
    );
    let op = stack.operator("2s");
    wait_healthy(&op);
    let other = Some("admin.other.example");
    let shop = Some("api.shop.example");
    // The hand-made parked rule takes the other host's requests...
    assert_eq!(
        stack.burst_for_host("/api/posts/by-user/1", other, 4).0,
        only("posts", 4)
    );
    // ... and status says so, though the route looks parked.
    let status = op.route_status("posts");
    assert_eq!(status["state"], "on-monolith", "{status}");
    let drift = status["drift"].to_string();
    assert!(
        drift.contains("LEAK") && drift.contains("api.shop.example"),
        "{drift}"
    );
    assert!(op.run(&["status"]).stdout.contains("drift:    LEAK"));
    // Before init, the other host's users requests go to the default action.
    assert_eq!(
        stack.burst_for_host("/api/users/1", other, 4).0,
        only("monolith", 4)
    );

    let init = op.init();
    assert!(
        init.stdout
            .contains("posts: the parked rule could take traffic"),
        "{init}"
    );
    assert!(
        init.stdout
            .contains("copied in: path-pattern /api/users* AND host-header api.shop.example"),
        "{init}"
    );
    for route in ["users", "threads", "posts"] {
        let arn = op.route_status(route)["rule_arn"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(rule_hosts(&rt, &elb, &arn), ["api.shop.example"], "{route}");
        assert_eq!(
            op.route_status(route)["drift"],
            serde_json::json!([]),
            "{route}"
        );
    }
    // After init, no request for another host reaches a parked service.
    for path in ["/api/users/1", "/api/threads/2", "/api/posts/by-user/1"] {
        assert_eq!(
            stack.burst_for_host(path, other, 3).0,
            only("monolith", 3),
            "{path}"
        );
        assert_eq!(
            stack.burst_for_host(path, shop, 3).0,
            only("monolith", 3),
            "{path}"
        );
    }
    // A shift moves the monolith's host only; the other host stays put.
    let shift = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(shift.code, 0, "{shift}");
    assert_eq!(
        stack.burst_for_host("/api/users/1", shop, 4).0,
        only("users", 4)
    );
    assert_eq!(
        stack.burst_for_host("/api/users/1", other, 4).0,
        only("monolith", 4)
    );
    let rollback = op.run(&["rollback", "users"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(
        stack.burst_for_host("/api/users/1", other, 4).0,
        only("monolith", 4)
    );

    // A gradual shift probes with the rule's host, so the probes reach the
    // route (with the load balancer URL's host they would all miss it).
    let users_before = stack.answered_by().get("users").copied().unwrap_or(0);
    let gradual = op.run(&["shift", "users", "--steps", "50,100", "--interval", "2s"]);
    assert_eq!(gradual.code, 0, "{gradual}");
    let users_after = stack.answered_by().get("users").copied().unwrap_or(0);
    assert!(
        users_after >= users_before + 5,
        "probes reached users: {users_before} -> {users_after}"
    );

    // The monolith's rule changes host mid-migration. Parked, the users rule
    // would take api.shop.example requests; it can't be narrowed (a rule has
    // one host condition), so the rollback points it at the monolith.
    set_rule_conditions(
        &rt,
        &elb,
        &monolith_rule,
        &["/api*"],
        Some("admin.shop.example"),
    );
    let rollback = op.run(&["rollback", "users"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(
        stack.burst_for_host("/api/users/1", shop, 4).0,
        only("monolith", 4)
    );
    let status = op.route_status("users");
    assert!(
        status["summary"].as_str().unwrap().contains("LEAK"),
        "{status}"
    );
    let shift = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(shift.code, 2, "{shift}");
}

/// Issue 21: a monolith that is only the listener's default action. init
/// says what to create; --create-monolith-rule creates it behind every rule
/// and no request moves.
#[test]
fn init_creates_the_monolith_rule_when_the_default_action_is_the_monolith() {
    let stack = LocalStack::start();
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let monolith_rule = rule_at(&rt, &elb, &listener, 99).unwrap();
    rt.block_on(elb.delete_rule().rule_arn(&monolith_rule).send())
        .unwrap();
    // An operator's own rule, which a catch-all rule in front would shadow.
    create_rule(&rt, &elb, &listener, 1500, &["/internal*"], "monolith", &[]);
    let op = stack.operator("2s");
    let paths = [
        "/",
        "/api/users/1",
        "/api/threads",
        "/api/posts/in-thread/1",
        "/internal/x",
        "/nothing",
    ];
    let before: Vec<_> = paths.iter().map(|p| stack.burst(p, 2).0).collect();
    assert!(
        before.iter().all(|b| *b == only("monolith", 2)),
        "{before:?}"
    );

    let status = op.run(&["status"]);
    assert_eq!(status.code, 1, "{status}");
    assert!(status.stderr.contains("--create-monolith-rule"), "{status}");

    let low = op.run(&[
        "init",
        "--create-monolith-rule",
        "--monolith-priority",
        "1000",
    ]);
    assert_eq!(low.code, 2, "{low}");
    assert!(
        low.stderr.contains("/internal*") && low.stderr.contains("1500"),
        "{low}"
    );

    let dry = op.run(&["init", "--create-monolith-rule", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry}");
    assert!(
        dry.stdout
            .contains("would call CreateRule Priority=2000 Conditions=[path-pattern /*]"),
        "{dry}"
    );
    assert!(
        rule_at(&rt, &elb, &listener, 2000).is_none(),
        "a dry run changes nothing"
    );

    let init = op.run(&["init", "--create-monolith-rule"]);
    assert_eq!(init.code, 0, "{init}");
    assert!(
        init.stdout.contains("created rule") && init.stdout.contains("at priority 2000"),
        "{init}"
    );
    assert_eq!(op.route_status("users")["monolith_priority"], 2000);
    assert_eq!(op.route_status("users")["priority"], 2001);
    let after: Vec<_> = paths.iter().map(|p| stack.burst(p, 2).0).collect();
    assert_eq!(before, after, "every request goes where it went");
    let again = op.run(&["init", "--create-monolith-rule"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(
        again.stdout.contains("exists; nothing to create"),
        "{again}"
    );
}

/// Issue 21: a priority behind the monolith's rule or taken is refused, and
/// a move in front that would shadow an operator's rule names it.
#[test]
fn bad_priorities_are_refused_and_a_shadowing_move_names_the_rule() {
    let stack = LocalStack::start();
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let export = create_rule(
        &rt,
        &elb,
        &listener,
        5,
        &["/api/users/export*"],
        "monolith",
        &[],
    );
    let op = stack.operator("2s");
    let config = std::fs::read_to_string(op.config_path()).unwrap();
    let behind = Operator::new(
        &config.replacen("priority = 1\n", "priority = 150\n", 1),
        vec![],
    );
    let refused = behind.run(&["init"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains(
            "`routes.users.priority` = 150 is not in front of the monolith's rule (priority 99)"
        ),
        "{refused}"
    );
    assert!(
        refused.stderr.contains("free priorities just in front"),
        "{refused}"
    );
    assert!(
        op.route_status("users")["rule_arn"].is_null(),
        "nothing was created"
    );
    let taken = Operator::new(
        &config.replacen("priority = 2\n", "priority = 5\n", 1),
        vec![],
    );
    let refused = taken.run(&["init"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains(&format!(
            "`routes.threads.priority` = 5 is taken by rule {export}"
        )),
        "{refused}"
    );

    op.init();
    wait_healthy(&op);
    let plan = op.run(&["plan", "users", "--to", "100"]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(
        plan.stdout.contains("shift would refuse") && plan.stdout.contains(&export),
        "{plan}"
    );
    let shift = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(shift.code, 2, "{shift}");
    assert!(
        shift.stderr.contains("would shadow") && shift.stderr.contains("/api/users/export*"),
        "{shift}"
    );
    assert_eq!(op.route_status("users")["state"], "on-monolith");
    let shift = op.run(&["shift", "users", "--steps", "100", "--allow-shadow"]);
    assert_eq!(shift.code, 0, "{shift}");
    assert_eq!(stack.burst("/api/users/export/1", 2).0, only("users", 2));
    // Rollback parks the rule where init put it, whatever `priority` says now.
    let moved = Operator::new(
        &config.replacen("priority = 1\n", "priority = 7\n", 1),
        vec![],
    );
    let rollback = moved.run(&["rollback", "users"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(op.route_status("users")["priority"], 100);
}

/// Issue 21: a probe answered 404 where the monolith answers 200 is an
/// error a client would notice, and fails the step.
#[test]
fn a_probe_answered_404_where_the_monolith_answers_200_fails_the_shift() {
    let stack = LocalStack::start();
    let op = stack.operator("3s");
    // A mistaken route: its rule also sends /api/threads to the users
    // service, which answers 404 there; the monolith answers 200.
    let config = std::fs::read_to_string(op.config_path())
        .unwrap()
        .replacen(
            "paths = [\"/api/users*\"]",
            "paths = [\"/api/users*\", \"/api/threads*\"]",
            1,
        )
        .replacen(
            "probe_paths = [\"/api/users\"]",
            "probe_paths = [\"/api/threads/2\"]",
            1,
        );
    let op = Operator::new(&config, vec![]);
    op.init();
    wait_healthy(&op);
    let shift = op.run(&[
        "shift",
        "users",
        "--steps",
        "50,100",
        "--interval",
        "3s",
        "--skip-parity",
    ]);
    assert_eq!(shift.code, 3, "{shift}");
    assert!(
        shift
            .stderr
            .contains("answered 404 Not Found where the monolith answers 2xx"),
        "{shift}"
    );
    assert_eq!(op.route_status("users")["state"], "on-monolith");
}

/// The login name of this test's user, as `id -un` gives it.
fn login_name() -> String {
    let id = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(id.stdout).unwrap().trim().to_owned()
}

#[test]
fn ctrl_c_stops_a_shift_and_says_how_to_go_on_and_a_lost_lock_stops_it_before_its_next_write() {
    let rt = runtime();
    let stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("30s");

    // Ctrl-C during an interval, with USER and LOGNAME unset (as in CI).
    let mut args = shift_args("users", "10,50,100", "30s").to_vec();
    args.extend(["--output", "json"]);
    let mut command = op.command(&args);
    command
        .env_remove("USER")
        .env_remove("LOGNAME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    eventually(Duration::from_secs(20), "users at 10%, journaled", || {
        service_weight(&rt, &elb, &listener, "users") == Some(10)
            && op
                .journal()
                .iter()
                .any(|e| e["what"] == "shift to 10 percent")
    });
    sigint(&child);
    let run = finish(child);
    assert_eq!(run.code, 130, "{run}");
    assert!(
        run.stderr
            .contains("users: interrupted (Ctrl-C); the route is shifting: 10% on the service"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("`migrate shift users --steps 10,50,100 --interval 30s`"),
        "{run}"
    );
    assert!(run.stderr.contains("`migrate rollback users`"), "{run}");
    // The JSON outcome names the state the route was left in.
    let outcome: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(outcome["exit_code"], 130, "{run}");
    assert!(
        outcome["to"]
            .as_str()
            .unwrap()
            .starts_with("shifting: 10% on the service"),
        "{run}"
    );
    let status = op.status_json();
    assert!(status["lock"].is_null(), "the lock was released: {status}");
    assert_eq!(op.route_status("users")["percent"], 10);
    let who = op.journal().last().unwrap()["who"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(who.starts_with(&format!("{}@", login_name())), "{who}");

    // The shift continues from 10%; early in its interval a colleague forces
    // the lock and rolls the route back. The shift's next lock refresh (its
    // lock_ttl is 6s: every 3s) finds the lock gone and stops there, well
    // before its next write is due (exit 4), without taking the lock back;
    // the route stays where the colleague left it.
    let mut command = op.command(&shift_args("users", "10,50,100", "20s"));
    command
        .env("MIGRATE__LOCK_TTL", "6s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    let pid = format!("pid {}", child.id());
    eventually(Duration::from_secs(20), "the shift holds the lock", || {
        op.status_json()["lock"]["holder"]
            .as_str()
            .is_some_and(|holder| holder.ends_with(&pid))
    });
    let colleague = op.run(&["rollback", "users", "--force-unlock"]);
    let forced = Instant::now();
    assert_eq!(colleague.code, 0, "{colleague}");
    assert!(
        colleague.stderr.contains("removing the lock of"),
        "{colleague}"
    );
    let run = finish(child);
    assert!(
        forced.elapsed() < Duration::from_secs(10),
        "stopped at the lock refresh, not at the next write: {run}"
    );
    assert_eq!(run.code, 4, "{run}");
    assert!(
        run.stderr.contains("the listener's lock is no longer ours"),
        "{run}"
    );
    assert!(run.stderr.contains("nothing more was written"), "{run}");
    assert!(run.stderr.contains("migrate: AWS API: "), "{run}");
    let (priority, weights) = route_rule(&rt, &elb, &listener, "users").unwrap();
    assert_eq!(priority, "100");
    assert_eq!(weights, [("users".to_owned(), 100)].into_iter().collect());
    assert_eq!(op.journal().last().unwrap()["command"], "rollback");
    assert!(op.status_json()["lock"].is_null());

    // With no refresh due, the check before the next write stops it: the
    // 50/50 split is never written to the parked rule. (`-v` lists every
    // ELBv2 call: step 1's two writes are the only ones.)
    let child = op.spawn(&[
        "shift",
        "users",
        "--steps",
        "10,50,100",
        "--interval",
        "5s",
        "-v",
    ]);
    // Step 1 ends with the rule's last-change tag; then the interval starts.
    eventually(Duration::from_secs(20), "users at 10%, tagged", || {
        op.route_status("users")["last_change"]["what"] == "shift to 10 percent"
    });
    let colleague = op.run(&["rollback", "users", "--force-unlock"]);
    assert_eq!(colleague.code, 0, "{colleague}");
    let run = finish(child);
    assert_eq!(run.code, 4, "{run}");
    assert!(
        run.stderr.contains("the listener's lock is no longer ours"),
        "{run}"
    );
    let writes = run.stderr.matches("elbv2 SetRulePriorities").count()
        + run.stderr.matches("elbv2 ModifyRule").count();
    assert_eq!(writes, 2, "only step 1's writes: {run}");
    let (priority, weights) = route_rule(&rt, &elb, &listener, "users").unwrap();
    assert_eq!(priority, "100");
    assert_eq!(weights, [("users".to_owned(), 100)].into_iter().collect());
}

#[test]
fn a_shift_whose_api_goes_away_tries_to_roll_back_and_says_exactly_what_is_left() {
    let mut stack = LocalStack::start();
    let op = stack.ready_operator("30s");

    let child = op.spawn_shift("posts", "10,100", "30s");
    // Step 1 ends with the rule's last-change tag; then the interval starts.
    eventually(Duration::from_secs(20), "posts at 10%, tagged", || {
        op.route_status("posts")["last_change"]["what"] == "shift to 10 percent"
    });
    // The load balancer and its API go away mid-interval: the shift fails,
    // its rollback cannot reach the API either, and it says so loudly.
    stack.alb.stop();
    let run = finish(child);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("THE ROLLBACK FAILED"), "{run}");
    assert!(
        run.stderr
            .contains("last known state: shifting: 10% on the service"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("finish it with `migrate rollback posts`"),
        "{run}"
    );

    // Back up with its acknowledged state, the command named finishes it.
    stack.restart_alb();
    let rollback = op.run(&["rollback", "posts"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(op.route_status("posts")["state"], "on-monolith");

    // When the API is back while the shift is rolling back (the SDK retries
    // each call for seconds), the rollback completes: exit 1, rolled back.
    wait_healthy(&op);
    let shift = op.spawn_watched(&shift_args("posts", "10,100", "30s"));
    // Step 1 ends with the rule's last-change tag; then the interval starts.
    eventually(Duration::from_secs(20), "posts at 10%, tagged", || {
        op.route_status("posts")["last_change"]["what"] == "shift to 10 percent"
    });
    stack.alb.stop();
    eventually(Duration::from_secs(60), "the shift rolling back", || {
        shift.said("posts: the shift failed; rolling back")
    });
    stack.restart_alb();
    let shift = shift.finish();
    assert_eq!(shift.code, 1, "{shift}");
    assert!(
        shift
            .stderr
            .contains("posts: the shift failed and was rolled back: on the monolith"),
        "{shift}"
    );
    assert_eq!(op.route_status("posts")["state"], "on-monolith");
    assert_eq!(
        op.journal().last().unwrap()["what"],
        "error; rolled back to the monolith"
    );
}

/// An ECS deploy replaces a task: the old task's target is `draining`, the
/// new one `initial` until its health checks pass. Neither gets traffic while
/// another target is healthy, so neither stops a shift; the gate keeps them
/// in the journal's evidence.
#[test]
fn a_shift_proceeds_while_a_replaced_target_is_draining_or_initial() {
    use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
    use std::sync::atomic::{AtomicBool, Ordering};

    let rt = runtime();
    let stack = LocalStack::start();
    let elb = stack.elb(&rt);
    let op = stack.ready_operator("2s");
    let users = rt
        .block_on(elb.describe_target_groups().names("users").send())
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();

    // A task being replaced, over and over: registered (initial: its checks
    // have not run), then deregistered (draining for the local ALB's 5 s), so
    // the users group always holds one target that is one or the other.
    let replaced = TargetDescription::builder()
        .id("127.0.0.1")
        .port(i32::from(free_port()))
        .build();
    let churning = std::sync::Arc::new(AtomicBool::new(true));
    let churn = std::thread::spawn({
        let (control, users, replaced, churning) = (
            stack.control_url.clone(),
            users.clone(),
            replaced.clone(),
            churning.clone(),
        );
        move || {
            // A client of its own: one shared with the test's runtime would
            // reuse connections driven by that runtime, which is not polled
            // while the test waits for `migrate`.
            let rt = runtime();
            let elb = elb_client(&rt, &control, LOCAL_KEY, LOCAL_SECRET);
            while churning.load(Ordering::Relaxed) {
                rt.block_on(async {
                    let register = elb.register_targets().target_group_arn(&users);
                    register.targets(replaced.clone()).send().await.unwrap();
                    let deregister = elb.deregister_targets().target_group_arn(&users);
                    deregister.targets(replaced.clone()).send().await.unwrap();
                });
                // Pacing the churn, not waiting for anything.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    eventually(Duration::from_secs(10), "a draining users target", || {
        rt.block_on(elb.describe_target_health().target_group_arn(&users).send())
            .unwrap()
            .target_health_descriptions()
            .iter()
            .any(|t| {
                t.target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str())
                    == Some("draining")
            })
    });

    let shift = op.run(&["shift", "users", "--steps", "100"]);
    churning.store(false, Ordering::Relaxed);
    churn.join().unwrap();
    assert_eq!(shift.code, 0, "{shift}");
    let gate = &op.journal().into_iter().last().unwrap()["evidence"]["health"];
    assert!(gate["healthy"] == 1, "{gate}");
    let not_healthy = gate["not_healthy"].to_string();
    assert!(
        not_healthy.contains("draining") || not_healthy.contains("initial"),
        "the gate saw the replaced target: {gate}"
    );
    assert_eq!(stack.burst("/api/users/1", 5).0, only("users", 5));
}

/// One GET through the load balancer with `cookie` (if any): the target
/// group that answered (from the ALB's metrics) and the `AWSALBTG` cookie
/// the answer set, as `name=value`.
fn sticky_get(stack: &LocalStack, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
    use std::io::{Read, Write};
    let before = stack.answered_by();
    let addr = stack.data_url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let set = text
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with("AWSALBTG="))
        .map(|c| c.split(';').next().unwrap().to_owned());
    let after = stack.answered_by();
    let answered = after
        .iter()
        .find(|(group, n)| **n > before.get(*group).copied().unwrap_or(0))
        .map(|(group, _)| group.clone())
        .expect("one target group answered");
    (answered, set)
}

#[test]
fn a_sticky_shift_keeps_clients_on_one_side_and_rollback_brings_them_back_at_once() {
    let stack = LocalStack::start();
    let op = stack.ready_operator("1s");

    let shift = op.run(&["shift", "users", "--to", "50", "--sticky", "10m"]);
    assert_eq!(shift.code, 0, "{shift}");
    let status = op.run(&["status"]);
    assert!(status.stdout.contains("sticky 10m"), "{status}");
    assert_eq!(op.route_status("users")["sticky_seconds"], 600);

    // New clients land on either side; each stays where it landed.
    let mut on_service = None;
    for _ in 0..30 {
        let (side, cookie) = sticky_get(&stack, "/api/users/1", None);
        let cookie = cookie.expect("a weighted sticky forward sets AWSALBTG");
        for _ in 0..3 {
            assert_eq!(sticky_get(&stack, "/api/users/1", Some(&cookie)).0, side);
        }
        if side == "users" {
            on_service = Some(cookie);
            break;
        }
    }
    let cookie = on_service.expect("a client of the service within 30 new clients");

    // The rolled-back rule has no stickiness: the service's sticky client
    // is on the monolith at its next request.
    let rollback = op.run(&["rollback", "users"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    let (side, set) = sticky_get(&stack, "/api/users/1", Some(&cookie));
    assert_eq!(side, "monolith");
    assert_eq!(set, None, "no stickiness once rolled back");

    // Bad durations are refused as usage errors, naming the range.
    let refused = op.run(&["shift", "users", "--to", "50", "--sticky", "8d"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("1s to 7d"), "{refused}");
    let refused = op.run(&["shift", "users", "--to", "50", "--sticky", "1.5s"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains("not a whole number of seconds"),
        "{refused}"
    );

    // Straight to 100% there is no weighted step to carry stickiness: said.
    let full = op.run(&["shift", "users", "--steps", "100", "--sticky", "10m"]);
    assert_eq!(full.code, 0, "{full}");
    assert!(
        full.stderr
            .contains("--sticky 10m has no effect on this shift"),
        "{full}"
    );
}

#[test]
fn a_step_whose_priority_move_is_throttled_to_exhaustion_counts_no_routing_change() {
    // SetRulePriorities gets one token a hundred seconds.
    let stack = LocalStack::start_with_alb_args(&["--throttle", "SetRulePriorities=0.01"]);
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("1s");
    let (parked, _) = route_rule(&rt, &elb, &listener, "users").unwrap();
    // The test takes the token (moving the parked rule where it is): every
    // SetRulePriorities of the shift is throttled, through the SDK's retries.
    let rule = route_rule_arn(&rt, &elb, &listener, "users");
    let pair = aws_sdk_elasticloadbalancingv2::types::RulePriorityPair::builder()
        .rule_arn(rule)
        .priority(parked.parse().unwrap())
        .build();
    let _ = rt.block_on(elb.set_rule_priorities().rule_priorities(pair).send());
    let shift = op.run(&["shift", "users", "--to", "10", "--output", "json", "-v"]);
    assert_eq!(shift.code, 1, "{shift}");
    assert!(
        shift.stderr.contains("SetRulePriorities throttled"),
        "{shift}"
    );
    // Only the parked rule's action was written (and written back): no
    // request went anywhere else, and the outcome says so.
    assert!(shift.elbv2_calls().contains(&"ModifyRule"), "{shift}");
    let outcome: serde_json::Value = serde_json::from_str(&shift.stdout).unwrap();
    assert_eq!(outcome["routing_changes"], 0, "{shift}");
    assert!(shift.stderr.contains("(0 changed routing)"), "{shift}");
    let (priority, weights) = route_rule(&rt, &elb, &listener, "users").unwrap();
    assert_eq!(priority, parked);
    assert_eq!(weights, [("users".to_owned(), 100)].into_iter().collect());
}

#[test]
fn under_throttling_a_shift_reports_its_budget_and_status_waits_for_the_traffic_to_show_the_change()
{
    // A shift reads the rules more than once in a second (issue 17).
    let stack = LocalStack::start_with_alb_args(&["--throttle", "DescribeRules=1"]);
    let mut op = stack.operator("2s");
    op.env
        .push(("MIGRATE__PROPAGATION_MAX".to_owned(), "1s".to_owned()));
    op.init();
    wait_healthy(&op);
    // The bucket is kept empty until the command says it was throttled: a
    // drain before it started could refill before its first read.
    let rt = runtime();
    let listener = stack.listener_arn(&rt);
    let elb = stack.elb(&rt);
    let throttled = |args: &[&str]| {
        let mut run = op.spawn_watched(args);
        let draining = Instant::now();
        while !run.said("throttled")
            && !run.exited()
            && draining.elapsed() < Duration::from_secs(30)
        {
            let _ = rt.block_on(elb.describe_rules().listener_arn(&listener).send());
            std::thread::sleep(Duration::from_millis(50));
        }
        run.finish()
    };
    let shift = throttled(&["shift", "users", "--steps", "100", "--output", "json"]);
    assert_eq!(shift.code, 0, "{shift}");
    let outcome: serde_json::Value = serde_json::from_str(&shift.stdout).unwrap();
    let budget = &outcome["aws_api"];
    // The same final figure as the stderr line (the lock's release counted).
    assert_eq!(budget["calls"], shift.aws_api_calls(), "{shift}");
    assert!(budget["throttled"].as_u64().unwrap() >= 1, "{budget}");
    assert_eq!(budget["retried"], budget["throttled"], "{budget}");
    assert!(
        budget["backoff_seconds"].as_f64().unwrap() > 0.0,
        "{budget}"
    );
    assert_eq!(budget["failed"], 0, "{budget}");
    assert_eq!(stack.burst("/api/users", 3).0, only("users", 3));

    // With traffic, the service's requests in a period after
    // propagation_max confirm the change.
    let traffic = Traffic::start(&stack.data_url, "/api/users/1");
    let traffic_says = |op: &Operator, verdict: &str| {
        let entry = op.route_status("users");
        (entry["traffic"]["verdict"] == verdict).then(|| entry["traffic"]["says"].to_string())
    };
    let mut says = None;
    eventually(Duration::from_secs(15), "status: traffic confirms", || {
        says = traffic_says(&op, "confirmed");
        says.is_some()
    });
    assert!(
        says.as_deref()
            .unwrap()
            .contains("traffic confirms: the service got"),
        "{says:?}"
    );

    let rollback = throttled(&["rollback", "users", "--output", "json"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert!(rollback.stderr.contains("throttled"), "{rollback}");
    // The JSON's budget is the stderr line's, the traffic watch, the
    // journal's write and the lock's release included.
    let outcomes: serde_json::Value = serde_json::from_str(&rollback.stdout).unwrap();
    assert_eq!(
        outcomes[0]["aws_api"]["calls"],
        rollback.aws_api_calls(),
        "{rollback}"
    );
    // Measured in the traffic, which flows: the service's last request.
    assert!(
        rollback
            .stderr
            .contains("rollback reached the data plane in "),
        "{rollback}"
    );
    // Right after the rollback, an operator whose propagation_max is 60 s
    // is told it may still be reaching the load balancer's nodes.
    op.env
        .push(("MIGRATE__PROPAGATION_MAX".to_owned(), "60s".to_owned()));
    let status = op.run(&["status"]);
    op.env.pop();
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status
            .stdout
            .contains("traffic:  applied, reaching the data plane"),
        "{status}"
    );
    // Rolled back: confirmed once a counted second after propagation_max
    // (1 s) had traffic and the service got none of it.
    eventually(
        Duration::from_secs(15),
        "status: rollback confirmed",
        || {
            says = traffic_says(&op, "confirmed");
            says.is_some()
        },
    );
    assert!(
        says.as_deref()
            .unwrap()
            .contains("the service got no request"),
        "{says:?}"
    );
    traffic.stop();

    // Without traffic a change is never confirmed: once propagation_max
    // (here 1 s) has passed, status says there was nothing to judge by.
    let shift = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(shift.code, 0, "{shift}");
    eventually(
        Duration::from_secs(15),
        "status: no traffic to judge",
        || {
            let entry = op.route_status("users");
            assert_ne!(entry["traffic"]["verdict"], "confirmed", "{entry}");
            says = (entry["traffic"]["verdict"] == "no_traffic")
                .then(|| entry["traffic"]["says"].to_string());
            says.is_some()
        },
    );
    assert!(
        says.as_deref()
            .unwrap()
            .contains("no traffic to judge after 1s"),
        "{says:?}"
    );
}

#[test]
fn status_under_throttling_says_why_it_waits_and_stays_correct() {
    // Two GetMetricData a second; status reads the traffic of each route's
    // recent change, one call per route (issue 17: status waited for seconds
    // and said nothing). Both clients retry in the standard mode: a first
    // retry waits under a second.
    let stack = LocalStack::start_with_alb_args(&["--throttle", "GetMetricData=2"]);
    let op = stack.operator("2s");
    op.init();
    // The bucket drained just before, so status's calls wait for tokens.
    let rt = runtime();
    let cloudwatch = cloudwatch_client(&rt, &stack.control_url, LOCAL_KEY, LOCAL_SECRET);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let query = aws_sdk_cloudwatch::types::MetricDataQuery::builder()
        .id("requests")
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
    for _ in 0..2 {
        let _ = rt.block_on(
            cloudwatch
                .get_metric_data()
                .metric_data_queries(query.clone())
                .start_time(aws_smithy_types::DateTime::from_secs(now - 60))
                .end_time(aws_smithy_types::DateTime::from_secs(now))
                .send(),
        );
    }

    let status = op.run(&["status", "--output", "json"]);
    assert_eq!(status.code, 0, "{status}");
    // Said on stderr as each wait starts; stdout is the one JSON document.
    assert!(
        status
            .stderr
            .contains("migrate: GetMetricData throttled, retrying in "),
        "{status}"
    );
    assert!(status.stderr.contains(" s (attempt 2 of 5)"), "{status}");
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let routes = report["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 3, "{report}");
    for route in routes {
        assert_eq!(route["state"], "on-monolith", "{route}");
        assert_eq!(route["drift"].as_array().map(Vec::len), Some(0), "{route}");
    }
    let budget = &report["aws_api"];
    assert_eq!(budget["calls"], status.aws_api_calls(), "{status}");
    assert!(budget["throttled"].as_u64().unwrap() >= 1, "{budget}");
    assert_eq!(budget["failed"], 0, "{budget}");
}

/// GETs of one path through the load balancer, one every 20 ms, on a thread
/// of their own until stopped.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Traffic {
    fn start(data_url: &str, path: &str) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = format!("{data_url}{path}");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(http_get(&url).0, 200, "GET {url}");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Traffic { stop, thread }
    }

    /// [`Traffic::start`], whatever the answers (a service is killed under it).
    fn start_any(data_url: &str, path: &str) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = format!("{data_url}{path}");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = http_get(&url);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Traffic { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

#[test]
fn init_takes_the_rule_a_lost_createrule_answer_made_instead_of_creating_another() {
    // Every CreateRule is applied, then answered 500 (its answer lost): the
    // SDK's retries find the slot taken by the rule the first attempt made.
    let stack = LocalStack::start_with_alb_args(&[
        "--transient-errors",
        "CreateRule=1",
        "--lost-answers",
        "1",
    ]);
    let op = stack.operator("2s");
    let init = op.init();
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let rules = rt
        .block_on(elb.describe_rules().listener_arn(&listener).send())
        .unwrap();
    let arns: Vec<String> = rules
        .rules()
        .iter()
        .filter_map(|r| r.rule_arn().map(str::to_owned))
        .collect();
    let tags = rt
        .block_on(elb.describe_tags().set_resource_arns(Some(arns)).send())
        .unwrap();
    let mut routes: Vec<String> = tags
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .filter(|t| t.key() == Some("ficus:route"))
        .filter_map(|t| t.value().map(str::to_owned))
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        ["posts", "threads", "users"],
        "one rule per route: {init}"
    );
    let status = op.run(&["status"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(!status.stdout.contains("inconsistent"), "{status}");
    // The faults did happen.
    let metrics = http_get(&format!("{}/metrics", stack.control_url)).1;
    assert!(
        metrics.contains("action=\"CreateRule\"") && metrics.contains("applied=\"true\""),
        "{metrics}"
    );
}

/// The local ALB applying each change on 3 nodes, each 1-2 s after it was
/// accepted, and an operator whose propagation_max says 2 s.
fn propagating_stack() -> (LocalStack, Operator) {
    let stack = LocalStack::start_with_alb_args(&["--propagation", "1s..2s", "--nodes", "3"]);
    let mut op = stack.operator("1s");
    op.env
        .push(("MIGRATE__PROPAGATION_MAX".to_owned(), "2s".to_owned()));
    op.init();
    wait_healthy(&op);
    (stack, op)
}

/// Unix seconds of an RFC 3339 time.
fn unix_of(rfc3339: &serde_json::Value) -> i64 {
    time::OffsetDateTime::parse(
        rfc3339.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp()
}

#[test]
fn no_step_is_done_before_every_node_routes_by_it() {
    // Issue 17: with changes reaching 3 nodes over 1-2 s, `shift` exited 0
    // ("on the service") while the nodes still split 50/50, and a 50% step's
    // gates passed on a second of one node's traffic.
    let (stack, op) = propagating_stack();
    let shift = op.run(&[
        "shift",
        "users",
        "--steps",
        "50,100",
        "--interval",
        "1s",
        "--output",
        "json",
    ]);
    assert_eq!(shift.code, 0, "{shift}");
    // When it exits, every node routes by the last step: 12 requests on 12
    // connections (4 per node) all reach the service.
    assert_eq!(stack.burst("/api/users", 12).0, only("users", 12));
    let outcome: serde_json::Value = serde_json::from_str(&shift.stdout).unwrap();
    assert!(outcome["every_node_by"].is_string(), "{outcome:#}");
    assert_eq!(outcome["lock_waited_ms"], 0, "{outcome:#}");
    // The waits are said on stderr, with --output json too, as every
    // progress line and the AWS API line are.
    for said in [
        "for the change to reach every node (propagation_max 2s); the interval of 1s starts then",
        "for the change to reach every node (propagation_max 2s)\n",
        "step 1/2: 50% on the service",
        "step 2/2: 100% on the service",
        "migrate: AWS API: ",
    ] {
        assert!(shift.stderr.contains(said), "{said}: {shift}");
    }
    // The 50% step's gates judged only traffic from after propagation_max.
    let journal = op.journal();
    let step = |what: &str| {
        journal
            .iter()
            .find(|e| e["what"] == what)
            .unwrap_or_else(|| panic!("{what} journaled"))
            .clone()
    };
    let written = unix_of(&step("shift to 50 percent")["when"]);
    let window = &step("shift to 100 percent")["evidence"]["metrics"]["window"];
    assert!(
        window["from"].as_i64().unwrap() >= written + 2,
        "the window starts {window} before propagation_max after the write at {written}"
    );
    // In the outcome each step carries its own evidence: the metric gates
    // and probes that watched the 50% step's traffic are the 50% step's
    // (the journal keeps them with the write they let happen); nothing
    // watched the 100% step's, the shift ends there.
    let steps = outcome["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{outcome:#}");
    let (half, full) = (&steps[0], &steps[1]);
    assert_eq!(half["percent"], 50, "{outcome:#}");
    assert_eq!(
        half["evidence"]["metrics"]["window"], *window,
        "{outcome:#}"
    );
    assert!(
        half["evidence"]["probes"]["total"].as_u64() > Some(0),
        "{outcome:#}"
    );
    assert_eq!(full["percent"], 100, "{outcome:#}");
    for key in ["metrics", "metric_evaluations", "probes"] {
        assert!(full["evidence"].get(key).is_none(), "{key}: {outcome:#}");
    }
    assert!(full["evidence"]["health"].is_object(), "{outcome:#}");
}

#[test]
fn status_judges_the_traffic_from_a_rollback_not_from_the_shift_before_it() {
    // Issue 17: during and after a rollback, status judged the traffic from
    // the shift before it ("the service still got 63 requests 20 s after
    // the change"), and confirmed on a period when one node had the change.
    let (stack, op) = propagating_stack();
    let traffic = Traffic::start(&stack.data_url, "/api/users/1");
    let shift = op.run(&["shift", "users", "--steps", "100"]);
    assert_eq!(shift.code, 0, "{shift}");
    let mut rollback = op.spawn(&["rollback", "users"]);
    // While the rollback watches its reach in the traffic (before it records
    // the change), status never judges the shift's traffic against it.
    while rollback.try_wait().unwrap().is_none() {
        let entry = op.route_status("users");
        assert_ne!(entry["traffic"]["verdict"], "not_confirmed", "{entry:#}");
    }
    let rollback = finish(rollback);
    let finished = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(rollback.code, 0, "{rollback}");
    // The rollback is recorded at its write's time, not after it watched
    // its reach in the traffic.
    let entry = op.journal().last().unwrap().clone();
    assert_eq!(entry["what"], "rollback to the monolith", "{entry:#}");
    let watched = entry["evidence"]["rollback_reach"]["watched_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("{entry:#}"));
    assert!(
        unix_of(&entry["when"]) as f64 <= finished - watched + 0.5,
        "{entry:#} (finished {finished})"
    );
    let mut confirmed = serde_json::Value::Null;
    eventually(
        Duration::from_secs(15),
        "status: rollback confirmed",
        || {
            let entry = op.route_status("users");
            assert_ne!(entry["traffic"]["verdict"], "not_confirmed", "{entry:#}");
            confirmed = entry["traffic"].clone();
            confirmed["verdict"] == "confirmed"
        },
    );
    // From a period that begins after propagation_max (2 s), never before.
    assert!(
        confirmed["after_seconds"].as_f64().unwrap() >= 3.0,
        "{confirmed:#}"
    );
    assert!(
        confirmed["says"]
            .as_str()
            .unwrap()
            .contains("the service got no request in the period"),
        "{confirmed:#}"
    );
    traffic.stop();
}

#[test]
fn a_rollback_of_a_service_that_died_before_it_has_no_reach_to_measure() {
    // Issue 17: the service killed before the rollback "reached the data
    // plane in 0.0 s" (its last request was the kill, not the rollback).
    let (mut stack, op) = propagating_stack();
    let traffic = Traffic::start_any(&stack.data_url, "/api/users/1");
    // Before the shift, the last change is init's parked rule: the service
    // gets no requests, as it should; no rollback to speak of.
    let mut says = String::new();
    eventually(
        Duration::from_secs(15),
        "status: init's rule judged",
        || {
            let entry = op.route_status("users");
            says = entry["traffic"]["says"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            entry["traffic"]["verdict"] == "stopped_before"
        },
    );
    assert_eq!(
        says,
        "applied; parked by init: the service got no requests, as a parked route should"
    );
    let shift = op.run(&["shift", "users", "--to", "50"]);
    assert_eq!(shift.code, 0, "{shift}");
    eventually(Duration::from_secs(10), "the service gets requests", || {
        stack.answered_by().get("users").copied().unwrap_or(0) > 0
    });
    stack.services.get_mut("users").unwrap().stop();
    // Its requests stop (the load balancer sends them to the monolith):
    // none for 1.5 s.
    let (mut last, mut since) = (u64::MAX, Instant::now());
    eventually(Duration::from_secs(15), "the service gets no more", || {
        let users = stack.answered_by().get("users").copied().unwrap_or(0);
        if std::mem::replace(&mut last, users) != users {
            since = Instant::now();
        }
        since.elapsed() > Duration::from_millis(1500)
    });
    let rollback = op.run(&["rollback", "users", "--output", "json"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    let outcomes: serde_json::Value = serde_json::from_str(&rollback.stdout).unwrap();
    let reach = &outcomes[0]["rollback_reach"];
    assert_eq!(reach["outcome"], "stopped_before", "{rollback}");
    assert!(
        rollback.stderr.contains(
            "the service had stopped getting requests before the rollback (it was failing"
        ),
        "{rollback}"
    );
    assert!(!rollback.stderr.contains("in 0.0 s"), "{rollback}");
    // status does not call its silence a confirmation.
    eventually(Duration::from_secs(15), "status: judged", || {
        let entry = op.route_status("users");
        assert_ne!(entry["traffic"]["verdict"], "confirmed", "{entry:#}");
        says = entry["traffic"]["says"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        entry["traffic"]["verdict"] == "stopped_before"
    });
    assert!(
        says.contains("the service got no requests after the rollback; it was failing before it"),
        "{says}"
    );
    traffic.stop();
}
