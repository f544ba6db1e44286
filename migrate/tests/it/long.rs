//! Migrations that last days: the plan kept in tags on the route's rule
//! (holds, `--to`, `promote`, `abort`, the bake), continued and undone from
//! other working directories (other journals), on the local ALB and on moto.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn summary(status: &serde_json::Value) -> String {
    status["summary"].as_str().unwrap_or_default().to_owned()
}

/// The forward weights of the route's rule, by target group name.
fn split(
    rt: &tokio::runtime::Runtime,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    listener: &str,
    route: &str,
) -> Vec<(String, i32)> {
    route_rule(rt, elb, listener, route)
        .unwrap()
        .1
        .into_iter()
        .collect()
}

fn weights(pairs: &[(&str, i32)]) -> Vec<(String, i32)> {
    let mut out: Vec<(String, i32)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    out.sort();
    out
}

fn plan_tags(
    rt: &tokio::runtime::Runtime,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    listener: &str,
    route: &str,
) -> Vec<String> {
    tags_of(rt, elb, &route_rule_arn(rt, elb, listener, route))
        .into_keys()
        .filter(|k| k.starts_with("ficus:plan"))
        .collect()
}

#[test]
fn a_plan_survives_a_killed_migrate_and_is_promoted_and_aborted_from_elsewhere() {
    let rt = runtime();
    let stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let ann = stack.ready_operator("5s");

    // Ann starts a plan and her `migrate` is killed during the interval after 10%.
    let mut shift = ann.spawn(&[
        "shift",
        "users",
        "--steps",
        "10,50,hold,100",
        "--interval",
        "5s",
        "--lock-settle",
        "0s",
    ]);
    let bob = stack.operator("5s");
    let mut status = serde_json::Value::Null;
    eventually(Duration::from_secs(30), "users at 10% in its plan", || {
        status = bob.route_status("users");
        status["percent"] == 10 && status["plan"]["phase"] == "moving"
    });
    // Ann's running shift holds the lock: the plan is hers to run, not one
    // for `promote` to continue.
    assert!(summary(&status).contains(" pid "), "{status}");
    assert!(
        summary(&status).contains(" holds the lock: its command, running now, moves the route"),
        "{status}"
    );
    assert!(!summary(&status).contains("migrate promote"), "{status}");
    sigkill(&mut shift);
    let status = bob.route_status("users");
    assert!(
        summary(&status).starts_with("moving: at 10% since "),
        "{status}"
    );
    assert!(
        summary(&status)
            .contains("if no `migrate` runs the plan, `migrate promote users` continues it"),
        "{status}"
    );
    assert!(summary(&status).contains("next 50%"), "{status}");
    assert_eq!(status["plan"]["steps"], "10,50,hold,100");
    assert!(!status["plan"]["by"].as_str().unwrap().is_empty());

    let status_before_promote = status.clone();
    // Bob, in another directory (another journal), continues it to the hold.
    let promoted = bob.run(&["promote", "users", "--lock-settle", "0s"]);
    assert_eq!(promoted.code, 0, "{promoted}");
    assert!(
        promoted.stdout.contains("holding at 50% since "),
        "{promoted}"
    );
    assert_eq!(
        split(&rt, &elb, &listener, "users"),
        weights(&[("monolith", 50), ("users", 50)])
    );
    let carol = stack.operator("5s");
    let status = carol.route_status("users");
    assert_eq!(status["plan"]["phase"], "holding", "{status}");
    assert!(
        summary(&status).starts_with("holding at 50% since "),
        "{status}"
    );
    assert!(summary(&status).contains("next 100%"), "{status}");
    let text = carol.run(&["status", "users"]);
    assert!(text.stdout.contains("holding at 50% since "), "{text}");
    let plan = carol.run(&["plan", "users"]);
    assert!(
        plan.stdout
            .contains("plan on the rule: holding at 50% since "),
        "{plan}"
    );
    let step = bob.journal().last().unwrap().clone();
    assert_eq!(
        step["what"], "shift to 50 percent",
        "bob's journal has his step"
    );
    assert_eq!(
        step["evidence"]["unwatched_since"], status_before_promote["plan"]["since"],
        "the first judgement says since when nobody watched: {step}"
    );

    // Carol, in a third, aborts it: back on the monolith, the plan gone, why recorded.
    let aborted = carol.run(&["abort", "users", "--reason", "p99 up on the dashboard"]);
    assert_eq!(aborted.code, 0, "{aborted}");
    let status = ann.route_status("users");
    assert_eq!(status["state"], "on-monolith", "{status}");
    assert!(status["plan"].is_null(), "{status}");
    assert_eq!(
        status["last_change"]["what"],
        "abort: p99 up on the dashboard"
    );
    assert!(plan_tags(&rt, &elb, &listener, "users").is_empty());
    assert_eq!(
        stack.burst("/api/users", 5).0,
        [("monolith".to_owned(), 5)].into_iter().collect()
    );
    assert_eq!(carol.journal().last().unwrap()["command"], "abort");
}

#[test]
fn to_holds_steps_back_down_and_bad_input_changes_nothing() {
    let rt = runtime();
    let stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("1s");
    let parked = route_rule(&rt, &elb, &listener, "users").unwrap();

    for (args, says) in [
        (
            &["shift", "users", "--to", "101"][..],
            "not a percentage from 1 to 100",
        ),
        (
            &["shift", "users", "--to", "ten"][..],
            "not a percentage from 1 to 100",
        ),
        (
            &["shift", "users", "--steps", "10,wait,100"][..],
            "nor `hold`",
        ),
        (
            &["shift", "users", "--steps", "hold,10,100"][..],
            "a hold follows a percentage",
        ),
        (&["promote", "users"][..], "nothing to promote"),
    ] {
        let run = op.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run}");
        assert!(run.stderr.contains(says), "{args:?}: {run}");
    }
    assert_eq!(route_rule(&rt, &elb, &listener, "users").unwrap(), parked);

    // --to holds; a lower --to steps back down, behind the same gates.
    let up = op.run(&["shift", "users", "--to", "50", "--lock-settle", "0s"]);
    assert_eq!(up.code, 0, "{up}");
    assert!(up.stdout.contains("holding at 50% since "), "{up}");
    assert_eq!(
        split(&rt, &elb, &listener, "users"),
        weights(&[("monolith", 50), ("users", 50)])
    );
    // plan shows the step down that shift --to 10 is about to make.
    let plan = op.run(&["plan", "users", "--to", "10"]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(plan.stdout.contains("10%"), "{plan}");
    assert!(!plan.stdout.contains("nothing to do"), "{plan}");
    let down = op.run(&["shift", "users", "--to", "10", "--lock-settle", "0s"]);
    assert_eq!(down.code, 0, "{down}");
    assert_eq!(
        split(&rt, &elb, &listener, "users"),
        weights(&[("monolith", 90), ("users", 10)])
    );
    let status = op.route_status("users");
    assert!(
        summary(&status).starts_with("holding at 10% since "),
        "{status}"
    );
    assert!(summary(&status).contains("next 50%"), "{status}");
    let step = op.journal().last().unwrap().clone();
    assert_eq!(step["what"], "shift to 10 percent");
    assert!(
        step["evidence"]["probes"]["total"].as_u64().unwrap() > 0,
        "{step}"
    );

    // Another operator holds the lock: promote and abort exit 4 naming them.
    add_tag(
        &rt,
        &elb,
        &listener,
        "ficus:lock:elsewhere",
        "ann@bastion pid 7 since 2026-01-01T00:00:00Z until 2999-01-01T00:00:00Z",
    );
    for args in [
        &["promote", "users"][..],
        &["abort", "users"][..],
        &["rollback", "users"][..],
    ] {
        let run = op.run(args);
        assert_eq!(run.code, 4, "{args:?}: {run}");
        assert!(run.stderr.contains("ann@bastion pid 7"), "{run}");
        // Refused, yet what the API calls cost is said, as on every outcome.
        assert!(run.stderr.contains("migrate: AWS API: "), "{args:?}: {run}");
    }
    let refused = op.run(&["rollback", "users", "--output", "json"]);
    assert_eq!(refused.code, 4, "{refused}");
    let document: serde_json::Value = serde_json::from_str(&refused.stdout).unwrap();
    assert_eq!(document["exit_code"], 4, "{document}");
    assert!(
        document["aws_api"]["calls"].as_u64().unwrap() >= 1,
        "{document}"
    );
    rt.block_on(
        elb.remove_tags()
            .resource_arns(&listener)
            .tag_keys("ficus:lock:elsewhere")
            .send(),
    )
    .unwrap();

    // A plan tag edited by hand: refused, exit 2, nothing changed.
    let rule = route_rule_arn(&rt, &elb, &listener, "users");
    add_tag(&rt, &elb, &rule, "ficus:plan", "10 wait 100");
    for args in [
        &["promote", "users"][..],
        &["shift", "users", "--to", "50"][..],
    ] {
        let run = op.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run}");
        assert!(
            run.stderr.contains("ficus:plan=\"10 wait 100\""),
            "{args:?}: {run}"
        );
    }
    assert_eq!(
        split(&rt, &elb, &listener, "users"),
        weights(&[("monolith", 90), ("users", 10)])
    );
    let text = op.run(&["status", "users"]);
    assert!(text.stdout.contains("plan:     UNREADABLE"), "{text}");
    // abort is the way out of anything.
    let aborted = op.run(&["abort", "users"]);
    assert_eq!(aborted.code, 0, "{aborted}");
    assert_eq!(op.route_status("users")["state"], "on-monolith");
    assert!(plan_tags(&rt, &elb, &listener, "users").is_empty());
}

#[test]
fn a_gate_that_fails_during_the_bake_rolls_back_and_exits_3() {
    let rt = runtime();
    let mut stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("1s");
    let shift = op.spawn(&[
        "shift",
        "users",
        "--steps",
        "100",
        "--bake",
        "5m",
        "--lock-settle",
        "0s",
    ]);
    eventually(Duration::from_secs(30), "users baking", || {
        let status = op.route_status("users");
        status["state"] == "on-service" && summary(&status).starts_with("baking until ")
    });
    assert_eq!(
        split(&rt, &elb, &listener, "users"),
        weights(&[("users", 100)])
    );
    stack.services.get_mut("users").unwrap().stop();
    let run = finish(shift);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("during the bake"), "{run}");
    let status = op.route_status("users");
    assert_eq!(status["state"], "on-monolith", "{status}");
    assert!(status["plan"].is_null(), "{status}");
    assert!(plan_tags(&rt, &elb, &listener, "users").is_empty());
}

#[test]
fn holds_promote_abort_and_the_bake_on_moto() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let elb = stack.elb(&rt);
    let listener = stack.listener_arn.clone();
    let ann = stack.operator();
    ann.init();

    let held = ann.run(&["shift", "users", "--to", "10", "--lock-settle", "0s", "-v"]);
    assert_eq!(held.code, 0, "{held}");
    // What a hold costs (the README's figure): the plan's two tag writes
    // (before the step, at the hold) on top of a one-step shift's calls; the
    // step itself records the plan in its last-change AddTags. 17 right
    // after init (its change makes the start read the rules again), one
    // more when that AddTags comes over a second after its write's lock
    // check (a loaded machine).
    let names = held.elbv2_calls();
    let calls = names.len();
    eprintln!("shift --to 10 (hold): {calls} ELBv2 calls: {names:?}");
    assert!(calls <= 18, "{calls} calls: {held}");
    // Its progress counts the whole plan (10,hold,50,100): stopped at the
    // hold, it is not done.
    assert!(
        held.stderr.contains("users: step 1/3: 10% on the service"),
        "{held}"
    );
    assert!(!held.stderr.contains("step 1/1"), "{held}");
    let bob = stack.operator();
    let status = bob.route_status("users");
    assert!(
        summary(&status).starts_with("holding at 10% since "),
        "{status}"
    );
    assert!(summary(&status).contains("next 50%"), "{status}");
    assert_eq!(
        split(&rt, &elb, &listener, "users"),
        weights(&[("monolith", 90), ("users", 10)])
    );
    // Bob promotes: 50%, then 100% (the route's steps above 10), plan done,
    // numbered on from the hold in text and JSON alike.
    let promoted = bob.run(&[
        "promote",
        "users",
        "--lock-settle",
        "0s",
        "--output",
        "json",
    ]);
    assert_eq!(promoted.code, 0, "{promoted}");
    assert!(
        promoted
            .stderr
            .contains("users: step 2/3: 50% on the service"),
        "{promoted}"
    );
    assert!(
        promoted
            .stderr
            .contains("users: step 3/3: 100% on the service"),
        "{promoted}"
    );
    let outcome: serde_json::Value = serde_json::from_str(&promoted.stdout).unwrap();
    let numbered: Vec<_> = outcome["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["percent"].clone(), s["step"].clone(), s["of"].clone()))
        .collect();
    assert_eq!(
        numbered,
        [
            (json!(50), json!(2), json!(3)),
            (json!(100), json!(3), json!(3))
        ],
        "{promoted}"
    );
    let status = bob.route_status("users");
    assert_eq!(status["state"], "on-service", "{status}");
    assert!(status["plan"].is_null(), "{status}");
    assert!(plan_tags(&rt, &elb, &listener, "users").is_empty());
    let nothing = bob.run(&["promote", "users"]);
    assert_eq!(nothing.code, 2, "{nothing}");
    let carol = stack.operator();
    let aborted = carol.run(&["abort", "users", "--reason", "rollback drill"]);
    assert_eq!(aborted.code, 0, "{aborted}");
    assert_eq!(ann.route_status("users")["state"], "on-monolith");

    // A malformed plan tag on moto: exit 2, nothing changed; abort clears it.
    assert_eq!(
        ann.run(&["shift", "threads", "--steps", "10,hold,100"])
            .code,
        0
    );
    let rule = route_rule_arn(&rt, &elb, &listener, "threads");
    add_tag(&rt, &elb, &rule, "ficus:plan:at", "seven");
    let refused = bob.run(&["promote", "threads"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("ficus:plan:at"), "{refused}");
    assert_eq!(
        split(&rt, &elb, &listener, "threads"),
        weights(&[("monolith", 90), ("threads", 10)])
    );
    assert_eq!(carol.run(&["abort", "threads"]).code, 0);
    assert!(plan_tags(&rt, &elb, &listener, "threads").is_empty());

    // Without --steps, the route's `steps` apply ([10, 50, 100] here), as the help says.
    let default = carol.run(&["shift", "threads"]);
    assert_eq!(default.code, 0, "{default}");
    let steps: Vec<String> = carol
        .journal()
        .iter()
        .filter(|e| e["route"] == "threads" && e["command"] == "shift")
        .map(|e| e["what"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        steps,
        [
            "shift to 10 percent",
            "shift to 50 percent",
            "shift to 100 percent"
        ]
    );

    // A bake whose probes start failing rolls back, exit 3; one that passes ends on the service.
    let baking = ann.spawn(&["shift", "posts", "--steps", "100", "--bake", "5m"]);
    eventually(Duration::from_secs(30), "posts baking", || {
        summary(&bob.route_status("posts")).starts_with("baking until ")
    });
    stack.lb_stub.status.store(500, Ordering::SeqCst);
    let run = finish(baking);
    assert_eq!(run.code, 3, "{run}");
    assert_eq!(bob.route_status("posts")["state"], "on-monolith");
    stack.lb_stub.status.store(200, Ordering::SeqCst);
    let baked = ann.run(&["shift", "posts", "--steps", "100", "--bake", "2s"]);
    assert_eq!(baked.code, 0, "{baked}");
    let status = bob.route_status("posts");
    assert_eq!(status["state"], "on-service", "{status}");
    assert!(status["plan"].is_null(), "{status}");
    assert_eq!(
        ann.journal().last().unwrap()["what"],
        "bake passed; the plan is done"
    );
}

#[test]
fn shift_help_and_behaviour_agree_on_the_default_steps() {
    let op = Operator::new("", vec![]);
    let help = op.run(&["shift", "--help"]);
    assert_eq!(help.code, 0, "{help}");
    assert!(
        !help.stdout.contains("Without --steps, straight to 100%"),
        "{help}"
    );
    assert!(
        help.stdout.contains(
            "The steps are --steps, else the route's `steps` in\nmigrate.toml (default [100]"
        ),
        "{help}"
    );
    for (flag, says) in [("--to", "hold"), ("--bake", "30m"), ("--steps", "hold")] {
        assert!(
            help.stdout.contains(flag) && help.stdout.contains(says),
            "{flag}: {help}"
        );
    }
    // The behaviour: `holds_promote_abort_and_the_bake_on_moto` shifts with
    // the route's steps when no --steps is given, and continues `--to 10`
    // with those above 10.
}

/// Sends `n` GETs of `path` through the load balancer with `fields`; the
/// target groups that answered them (the metrics' difference).
fn answered_with(
    stack: &LocalStack,
    path: &str,
    fields: &[(&str, &str)],
    n: usize,
) -> std::collections::BTreeMap<String, u64> {
    let before = stack.answered_by();
    for _ in 0..n {
        let (status, _) = http_get_with(&format!("{}{path}", stack.data_url), None, fields);
        assert_eq!(status, 200, "{path} {fields:?}");
    }
    stack
        .answered_by()
        .into_iter()
        .map(|(k, v)| (k.clone(), v - before.get(&k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn rule_arns(
    rt: &tokio::runtime::Runtime,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    listener: &str,
) -> Vec<String> {
    let rules = rt
        .block_on(elb.describe_rules().listener_arn(listener).send())
        .unwrap();
    let mut arns: Vec<String> = rules
        .rules()
        .iter()
        .map(|r| r.rule_arn().unwrap().to_owned())
        .collect();
    arns.sort();
    arns
}

#[test]
fn a_preview_rule_sends_header_requests_to_the_service_and_verify_compares_through_the_lb() {
    let rt = runtime();
    let stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("1s");
    let rules_before = rule_arns(&rt, &elb, &listener);
    let journal_before = op.journal().len();

    // Without a preview rule, --through-lb would compare today's routing
    // with itself: refused, naming the command that adds the rule.
    let early = op.run(&["verify", "users", "--through-lb"]);
    assert_eq!(early.code, 2, "{early}");
    assert!(early.stderr.contains("migrate preview users"), "{early}");
    let on = op.run(&["preview", "users", "--lock-settle", "0s"]);
    assert_eq!(on.code, 0, "{on}");
    assert!(on.stdout.contains("X-Ficus-Preview: users"), "{on}");
    let header = [("X-Ficus-Preview", "users")];
    assert_eq!(
        answered_with(&stack, "/api/users/1", &header, 5),
        [("users".to_owned(), 5)].into_iter().collect()
    );
    assert_eq!(
        answered_with(&stack, "/api/users/1", &[], 5),
        [("monolith".to_owned(), 5)].into_iter().collect()
    );
    // Other routes are untouched by the header.
    assert_eq!(
        answered_with(&stack, "/api/threads/2", &header, 3),
        [("monolith".to_owned(), 3)].into_iter().collect()
    );

    // status, plan and init see it for what it is: not the route's rule, no drift, no shadow.
    let status = op.route_status("users");
    assert_eq!(status["state"], "on-monolith", "{status}");
    assert_eq!(status["drift"], serde_json::json!([]), "{status}");
    assert_eq!(status["previews"][0]["header"], "X-Ficus-Preview: users");
    assert!(op.status_json()["unknown_routes"] == serde_json::json!([]));
    let plan = op.run(&["plan", "users", "--output", "json"]);
    assert_eq!(plan.code, 0, "{plan}");
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["refused"], serde_json::json!([]), "{plan}");
    assert_eq!(plan["previews"].as_array().unwrap().len(), 1, "{plan}");
    let init = op.run(&["init", "--output", "json"]);
    assert_eq!(init.code, 0, "{init}");
    let lines: Vec<serde_json::Value> = serde_json::from_str(&init.stdout).unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["route"] == "users" && l["outcome"] == "preview"),
        "{init}"
    );
    assert!(lines.iter().all(|l| l["outcome"] != "drift"), "{init}");

    // A shift passes its own preview rule (no shadowing refusal); rollback keeps it and says so.
    let shift = op.run(&["shift", "users", "--steps", "100", "--lock-settle", "0s"]);
    assert_eq!(shift.code, 0, "{shift}");
    let status = op.route_status("users");
    assert!(
        status["previews"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("is in front of it"),
        "{status}"
    );
    let back = op.run(&["rollback", "users", "--lock-settle", "0s"]);
    assert_eq!(back.code, 0, "{back}");
    assert!(
        back.stderr.contains("the preview rule at priority"),
        "{back}"
    );
    assert_eq!(
        answered_with(&stack, "/api/users/1", &header, 2),
        [("users".to_owned(), 2)].into_iter().collect()
    );

    // verify --through-lb: the same requests without the header and with it.
    let good = op.run(&["verify", "users", "--through-lb"]);
    assert_eq!(good.code, 0, "{good}");
    // A bad service behind the users target group: it fails, naming the pointer.
    let users_addr = stack.services["users"].address().unwrap();
    let bad = crate::verify::rewriting_proxy(users_addr, crate::verify::rewrite_bio);
    let bad_port: i32 = bad.rsplit(':').next().unwrap().parse().unwrap();
    rt.block_on(async {
        use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
        let groups = elb
            .describe_target_groups()
            .names("users")
            .send()
            .await
            .unwrap();
        let tg = groups.target_groups()[0].target_group_arn().unwrap();
        let target = |port: i32| {
            TargetDescription::builder()
                .id("127.0.0.1")
                .port(port)
                .build()
        };
        elb.register_targets()
            .target_group_arn(tg)
            .targets(target(bad_port))
            .send()
            .await
            .unwrap();
        elb.deregister_targets()
            .target_group_arn(tg)
            .targets(target(users_addr.port() as i32))
            .send()
            .await
            .unwrap();
    });
    eventually(
        Duration::from_secs(40),
        "only the bad target, healthy",
        || {
            let status = op.route_status("users");
            let targets = status["targets"].as_array().unwrap().clone();
            targets.len() == 1
                && targets[0]["state"] == "healthy"
                && targets[0]["target"]
                    .as_str()
                    .unwrap()
                    .contains(&bad_port.to_string())
        },
    );
    let failed = op.run(&["verify", "users", "--through-lb"]);
    assert_eq!(failed.code, 1, "{failed}");
    assert!(
        failed.stdout.contains("body /0/bio changed value")
            || failed.stdout.contains("/bio changed value"),
        "{failed}"
    );

    // --off leaves no trace on the listener.
    let off = op.run(&["preview", "users", "--off", "--lock-settle", "0s"]);
    assert_eq!(off.code, 0, "{off}");
    assert_eq!(rule_arns(&rt, &elb, &listener), rules_before);
    assert_eq!(op.route_status("users")["previews"], serde_json::json!([]));
    assert_eq!(
        answered_with(&stack, "/api/users/1", &header, 3),
        [("monolith".to_owned(), 3)].into_iter().collect()
    );
    let whats: Vec<String> = op.journal()[journal_before..]
        .iter()
        .map(|e| e["what"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        whats.first().unwrap(),
        "preview rule created at priority 4 (X-Ficus-Preview: users)"
    );
    assert!(
        whats
            .last()
            .unwrap()
            .starts_with("preview rule at priority 4 removed"),
        "{whats:?}"
    );
    let again = op.run(&["preview", "users", "--off"]);
    assert!(
        again.stdout.contains("no preview rule; nothing to do"),
        "{again}"
    );
}

#[test]
fn watch_shows_the_plan_live_in_plain_lines_and_ends_with_it() {
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let op = stack.operator();
    op.init();

    let idle = op.run(&["watch", "threads"]);
    assert_eq!(idle.code, 0, "{idle}");
    assert!(
        idle.stdout.ends_with("no plan in progress; watch ends\n"),
        "{idle}"
    );

    let shift = op.spawn(&shift_args("users", "10,50,100", "3s"));
    eventually(Duration::from_secs(15), "the plan on the rule", || {
        !op.route_status("users")["plan"].is_null()
    });
    let mut watch = op.spawn(&["watch", "users", "--every", "300ms"]);
    assert_eq!(finish(shift).code, 0);
    eventually(
        Duration::from_secs(15),
        "watch ends once the plan is done",
        || watch.try_wait().unwrap().is_some(),
    );
    let run = finish(watch);
    assert_eq!(run.code, 0, "{run}");
    assert!(!run.stdout.contains('\x1b'), "plain lines: {run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("20") || l.starts_with("no plan")),
        "{run}"
    );
    let at_10 = lines
        .iter()
        .find(|l| l.contains("monolith=90 users=10"))
        .unwrap_or_else(|| panic!("a line at 10%: {run}"));
    assert!(at_10.contains("targets 1/1 healthy"), "{at_10}");
    assert!(at_10.contains("moving: at 10%"), "{at_10}");
    assert!(at_10.contains("next 50%"), "{at_10}");
    assert!(at_10.contains("; in "), "time to the next step: {at_10}");
    assert!(at_10.contains("last gates: health 1 healthy"), "{at_10}");
    assert_eq!(lines.last(), Some(&"no plan in progress; watch ends"));
}

#[test]
fn watch_judges_a_hold_and_rolls_back_when_the_service_fails() {
    let rt = runtime();
    let mut stack = LocalStack::start();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let op = stack.ready_operator("1s");
    let held = op.run(&["shift", "users", "--to", "10", "--lock-settle", "0s"]);
    assert_eq!(held.code, 0, "{held}");

    let colleague = stack.operator("1s");
    let mut watch = colleague.spawn(&["watch", "users", "--every", "500ms", "--lock-settle", "0s"]);
    stack.services.get_mut("users").unwrap().stop();
    eventually(
        Duration::from_secs(60),
        "watch judges the hold's health gate and ends",
        || watch.try_wait().unwrap().is_some(),
    );
    let run = finish(watch);
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr.contains("health gate: target group users"),
        "{run}"
    );
    assert!(run.stdout.contains("holding at 10% since "), "{run}");
    let status = op.route_status("users");
    assert_eq!(status["state"], "on-monolith", "{status}");
    assert!(status["plan"].is_null(), "{status}");
    assert!(plan_tags(&rt, &elb, &listener, "users").is_empty());
    let entry = colleague.journal().last().unwrap().clone();
    assert_eq!(entry["command"], "watch", "{entry}");
    assert!(
        entry["evidence"]["gate_failed"]
            .as_str()
            .unwrap()
            .contains("health gate")
    );
}

#[test]
fn promote_ends_a_bake_nobody_watches_and_a_step_down_from_100_keeps_its_share() {
    let stack = LocalStack::start();
    let ann = stack.ready_operator("2s");
    // Ann's bake is killed: nobody judges it any more.
    let mut shift = ann.spawn(&[
        "shift",
        "users",
        "--steps",
        "100",
        "--bake",
        "1h",
        "--lock-settle",
        "0s",
    ]);
    let bob = stack.operator("2s");
    eventually(Duration::from_secs(30), "users baking", || {
        bob.route_status("users")["plan"]["phase"] == "baking"
    });
    sigkill(&mut shift);
    // Bob's promote judges the gates (the metric gates too) and ends it.
    let promoted = bob.run(&["promote", "users", "--lock-settle", "0s"]);
    assert_eq!(promoted.code, 0, "{promoted}");
    let status = bob.route_status("users");
    assert_eq!(status["state"], "on-service", "{status}");
    assert!(status["plan"].is_null(), "{status}");
    // Back down to 50%: the monolith had no traffic to compare latency
    // with, which must not make the step inconclusive and roll it back.
    let down = bob.run(&["shift", "users", "--to", "50", "--lock-settle", "0s"]);
    assert_eq!(down.code, 0, "{down}");
    assert_eq!(bob.route_status("users")["percent"], 50);
}

#[test]
fn watch_prints_a_json_line_per_refresh_and_ends_when_nobody_reads() {
    use std::io::BufRead as _;
    let rt = runtime();
    let stack = MotoStack::start(&rt);
    let op = stack.operator();
    op.init();
    let held = op.run(&["shift", "users", "--to", "10", "--lock-settle", "0s"]);
    assert_eq!(held.code, 0, "{held}");
    let mut watch = op.spawn(&[
        "watch",
        "users",
        "--every",
        "200ms",
        "--no-judge",
        "--output",
        "json",
    ]);
    let mut stdout = std::io::BufReader::new(watch.stdout.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let refresh: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(refresh[0]["route"], "users", "{line}");
    }
    // The reader goes away, as `| head -2` does: the watch ends by itself.
    drop(stdout);
    eventually(Duration::from_secs(10), "watch ends", || {
        watch.try_wait().unwrap().is_some()
    });
    assert_eq!(watch.wait().unwrap().code(), Some(0));
}
