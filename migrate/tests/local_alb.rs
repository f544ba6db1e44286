//! End to end on the local ALB with the real monolith and services: real
//! traffic through the data plane, counted by the ALB's own metrics.

mod support;

use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::Client;
use support::*;
use tokio::runtime::Runtime;

/// Waits until every service's target is healthy (health checks every 5 s).
fn wait_healthy(op: &Operator) {
    eventually(Duration::from_secs(40), "all targets healthy", || {
        let status = op.status_json();
        status["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["healthy"] == 1 && r["unhealthy"] == 0)
    });
}

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

#[test]
fn shift_sends_the_route_to_its_service_and_rollback_brings_it_back() {
    let stack = LocalStack::start();
    let op = stack.operator("2s");
    let init = op.run(&["init"]);
    assert_eq!(init.code, 0, "{init}");
    wait_healthy(&op);

    // Before: everything on the monolith.
    assert_eq!(stack.burst("/api/users", 5).0, only("monolith", 5));

    // A direct cutover: at most 10 ELBv2 calls, exactly one changes routing.
    // (Wait out the window in which init's change counts as recent, which
    // would make migrate read the rules a second time.)
    std::thread::sleep(Duration::from_millis(2100));
    let started = Instant::now();
    let shift = op.run(&["shift", "users", "--steps", "100", "-v"]);
    let wall = started.elapsed();
    assert_eq!(shift.code, 0, "{shift}");
    let calls = shift.stderr.matches("migrate: elbv2 ").count();
    assert!(calls <= 10, "{calls} calls: {shift}");
    assert!(shift.stderr.contains("(1 changed routing)"), "{shift}");
    eprintln!("direct cutover: {calls} calls, {wall:?} wall including process start");

    let (answered, statuses) = stack.burst("/api/users/1", 10);
    assert_eq!(answered, only("users", 10));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(stack.burst("/api/threads", 5).0, only("monolith", 5));
    assert_eq!(
        stack.burst("/api/posts/by-user/1", 5).0,
        only("monolith", 5)
    );
    assert!(
        stack.services["users"].count("url=/api/users/1") >= 10,
        "the users service logged the requests"
    );

    let rollback = op.run(&["rollback", "users"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert_eq!(stack.burst("/api/users", 5).0, only("monolith", 5));
    let again = op.run(&["rollback", "users"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stdout.contains("already on the monolith"), "{again}");
}

#[test]
fn a_gradual_shift_moves_the_split() {
    let rt = runtime();
    let stack = LocalStack::start();
    let elb = stack.elb(&rt);
    let listener = stack.listener_arn(&rt);
    let op = stack.operator("5s");
    assert_eq!(op.run(&["init"]).code, 0);
    wait_healthy(&op);

    let child = op.spawn_shift("threads", "10,50,100", "4s");
    let mut shares = Vec::new();
    for percent in [10, 50] {
        eventually(
            Duration::from_secs(20),
            &format!("threads at {percent}%"),
            || service_weight(&rt, &elb, &listener, "threads") == Some(percent),
        );
        let (answered, _) = stack.burst("/api/threads/2", 100);
        let to_service = *answered.get("threads").unwrap_or(&0) as f64;
        let total: u64 = answered.values().sum();
        shares.push(to_service / total as f64);
    }
    let run = finish(child);
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
    let elb = stack.elb(&rt);
    let listener = stack.listener_arn(&rt);
    let op = stack.operator("5s");
    assert_eq!(op.run(&["init"]).code, 0);
    wait_healthy(&op);

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
    let elb = stack.elb(&rt);
    let listener = stack.listener_arn(&rt);
    let op = stack.operator("30s");
    assert_eq!(op.run(&["init"]).code, 0);
    wait_healthy(&op);

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
    let op = stack.operator("2s");
    assert_eq!(op.run(&["init"]).code, 0);
    wait_healthy(&op);
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
        let (elb, users, replaced, churning) = (
            elb.clone(),
            users.clone(),
            replaced.clone(),
            churning.clone(),
        );
        move || {
            let rt = runtime();
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
