//! `migrate retire` and a retired route, as a user meets them: what retire
//! proves and what it cannot (spellings nobody sent), `--reason` alone, a
//! retire asked twice, `status`'s retired lines, a retired route's rollback
//! in the journal, refusals in JSON (leaks; below 100%, where a held shift
//! needs `promote`), and a rule ficus does not manage that forwards to the
//! service too.

use crate::leaks::{logging_stack, shifted_users, wait_logged};
use crate::support::*;

/// The column where `status`'s field values start (`  state:    ...`).
const STATUS_VALUE_COLUMN: usize = 12;

#[test]
fn retire_says_what_the_logs_prove_and_what_they_cannot() {
    let (stack, root) = logging_stack();
    let op = shifted_users(&stack);
    for _ in 0..2 {
        assert_eq!(http_get(&format!("{}/api/users/2", stack.data_url)).0, 200);
    }
    wait_logged(root.path(), "/api/users/2", 2);
    let logs = root.path().display().to_string();

    // --reason says why leaks are accepted: without --accept-leaks it is
    // refused, before anything is read or written.
    let reason = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        &logs,
        "--reason",
        "bots",
    ]);
    assert_eq!(reason.code, 2, "{reason}");
    assert!(
        reason
            .stderr
            .contains("--reason goes with --accept-leaks (it says why leaks are accepted)"),
        "{reason}"
    );

    let retire = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        &logs,
        "--lock-settle",
        "0s",
    ]);
    assert_eq!(retire.code, 0, "{retire}");
    for said in [
        "users: retired: the service alone serves what the rule's patterns match: /api/users*",
        "  proven: no leak among the route's 2 requests in the logs (2 reached the service)",
        // The forum reads paths in any case, the patterns do not: the code
        // can go only with a redirect in its place.
        "  the monolith's code for these paths can go only with a 308 redirect to the spelling the patterns match (or a 404) left in its place: it also reads spellings the patterns miss as these paths (another case, e.g. /API/USERS), and those still reach it",
    ] {
        assert!(retire.stdout.contains(said), "{said:?} in\n{retire}");
    }
    // ... and indeed, nobody sent it, but it reaches the monolith.
    assert_eq!(
        stack.burst("/API/USERS/1", 1).0.keys().collect::<Vec<_>>(),
        ["monolith"]
    );

    // Retired again: said, with when and by whom; nothing written.
    let journal = op.journal();
    let retired = journal.last().unwrap();
    assert_eq!(retired["command"], "retire");
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let rule = route_rule_arn(&rt, &elb, &listener, "users");
    let since = tags_of(&rt, &elb, &rule)["ficus:retired"].clone();
    let again = op.run(&["-v", "retire", "users", "--from-alb-log", &logs]);
    assert_eq!(again.code, 0, "{again}");
    assert!(
        again.stdout.starts_with(&format!(
            "users: already retired, since {since} by {}; nothing written\n",
            retired["who"].as_str().unwrap()
        )),
        "{again}"
    );
    assert!(
        again
            .elbv2_calls()
            .iter()
            .all(|call| call.starts_with("Describe")),
        "{again}"
    );
    assert_eq!(op.journal().len(), journal.len());

    // status: the retired lines line up with the other fields, and say the same.
    let status = op.run(&["status", "users"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status.stdout.contains(&format!(
            "\n  retired:  since {since}: the service alone serves what the rule's patterns match: /api/users*\n            the monolith's code for these paths can go only with a 308 redirect"
        )),
        "{status}"
    );
    for line in status.stdout.lines() {
        let Some((label, value)) = line.strip_prefix("  ").and_then(|l| l.split_once(':')) else {
            continue;
        };
        if label.chars().all(|c| c.is_ascii_lowercase()) && !label.is_empty() {
            let column = 2 + label.len() + 1 + (value.len() - value.trim_start().len());
            assert_eq!(column, STATUS_VALUE_COLUMN, "{line:?} in\n{status}");
        }
    }
    let note = &op.route_status("users")["retired_note"];
    assert_eq!(note["unproven"][0]["reading"], "another case", "{note:#}");
    assert_eq!(note["unproven"][0]["example"], "/API/USERS", "{note:#}");
    let plan = op.run(&["plan", "users"]);
    assert!(
        plan.stdout
            .contains(&format!("retired since {since}: the service alone serves"))
            && plan.stdout.contains("308 redirect"),
        "{plan}"
    );

    // abort ends a plan; a retired route has none, and goes back only by
    // `rollback --yes`.
    let abort = op.run(&["abort", "users", "--lock-settle", "0s"]);
    assert_eq!(abort.code, 2, "{abort}");
    assert!(
        abort
            .stderr
            .contains("is retired and has no plan to abort; the monolith may no longer serve its paths: `migrate rollback users --yes` rolls it back anyway"),
        "{abort}"
    );
    // Nor does a shift or a promote move it: either would send clients to
    // a monolith that may no longer serve these paths.
    let journaled = op.journal().len();
    for args in [
        &["shift", "users", "--to", "10", "--lock-settle", "0s"][..],
        &["promote", "users", "--lock-settle", "0s"],
    ] {
        let refused = op.run(args);
        assert_eq!(refused.code, 2, "{refused}");
        assert!(
            refused.stderr.contains("users: retired: the service alone serves it and the monolith may no longer serve its paths; nothing was changed. `migrate rollback users --yes` returns it to the monolith"),
            "{refused}"
        );
    }
    assert_eq!(op.journal().len(), journaled);
    assert!(op.route_status("users")["retired_note"].is_object());
    // Without --yes, a rollback is refused; its failure document names the
    // route as every command's does.
    let refused = op.run(&[
        "rollback",
        "users",
        "--output",
        "json",
        "--lock-settle",
        "0s",
    ]);
    let document = failure_json(&refused, 2);
    assert_eq!(document["route"], "users", "{document:#}");
    assert!(
        document["error"].as_str().unwrap().contains("--yes"),
        "{document:#}"
    );
    // A retired route's rollback is journaled from `retired`.
    let rollback = op.run(&["rollback", "users", "--yes", "--lock-settle", "0s"]);
    assert_eq!(rollback.code, 0, "{rollback}");
    let journal = op.journal();
    let entry = journal.last().unwrap();
    assert_eq!(entry["command"], "rollback", "{entry:#}");
    assert_eq!(entry["before"]["state"], "retired", "{entry:#}");
    assert!(
        entry["after"]["state"]
            .as_str()
            .unwrap()
            .starts_with("on the monolith"),
        "{entry:#}"
    );

    // Back at 100%, the /API/USERS/1 sent above is in the logs: retire's
    // refusal in JSON is every command's failure document, with the report.
    let shift = op.run(&["shift", "users", "--steps", "100", "--lock-settle", "0s"]);
    assert_eq!(shift.code, 0, "{shift}");
    wait_logged(root.path(), "/api/users/1", 1);
    let json = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        &logs,
        "--output",
        "json",
        "--lock-settle",
        "0s",
    ]);
    let document = failure_json(&json, 1);
    assert_eq!(document["retired"], false, "{document:#}");
    assert_eq!(document["route"], "users", "{document:#}");
    assert_eq!(
        document["error"],
        "refused: 1 request still reaches the monolith (/API/USERS/1 ×1); fix them and run again, or pass --accept-leaks --reason \"...\"",
        "{document:#}"
    );
    assert_eq!(
        document["leaks"]["leaks"][0]["path"], "/API/USERS/1",
        "{document:#}"
    );
    assert!(
        json.stderr
            .contains("migrate: refused: 1 request still reaches the monolith"),
        "{json}"
    );
}

/// One stack for two things: retire below 100% (a held shift: `promote`),
/// then a rule ficus does not manage in `status` and `rollback`.
#[test]
fn retire_advises_promote_for_a_held_shift_and_status_and_rollback_show_a_rule_ficus_does_not_manage()
 {
    let stack = LocalStack::start();
    let op = stack.ready_operator("1s");
    let held = op.run(&[
        "shift",
        "users",
        "--steps",
        "10,hold,100",
        "--lock-settle",
        "0s",
    ]);
    assert_eq!(held.code, 0, "{held}");
    // Refused before the logs are read: none is needed.
    let logs = "/nonexistent/ficus-logs";
    let refused = op.run(&["retire", "users", "--from-alb-log", logs]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.contains(
            "retire needs it at 100% on its service: its shift (steps 10,hold,100) is holding at 10% since "
        ) && refused
            .stderr
            .contains("`migrate promote users` continues it toward 100%"),
        "{refused}"
    );
    assert!(!refused.stderr.contains("--to 100"), "{refused}");
    let json = op.run(&[
        "retire",
        "users",
        "--from-alb-log",
        logs,
        "--output",
        "json",
    ]);
    assert_eq!(json.code, 1, "{json}");
    let document: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(document["ok"], false, "{document:#}");
    assert_eq!(document["exit_code"], 1, "{document:#}");
    assert_eq!(document["route"], "users", "{document:#}");
    assert!(
        document["error"]
            .as_str()
            .unwrap()
            .contains("`migrate promote users` continues it"),
        "{document:#}"
    );

    // The second rule a leak report suggests for spellings over AWS's quota.
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    let second = create_rule(&rt, &elb, &listener, 7, &["/API/USERS*"], "users", &[]);
    let says = format!(
        "rule {second} at priority 7 (path-pattern /API/USERS*) also forwards to users (forward users), not managed by ficus: a rollback leaves it in place, and what it matches stays on users; `aws elbv2 delete-rule --rule-arn {second}` removes it"
    );

    let status = op.run(&["status", "users"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status.stdout.contains(&format!("\n  also:     {says}\n")),
        "{status}"
    );
    let route = op.route_status("users");
    assert_eq!(
        route["also_forwarding"][0]["rule_arn"],
        second.as_str(),
        "{route:#}"
    );
    assert_eq!(route["also_forwarding"][0]["priority"], 7, "{route:#}");

    let rollback = op.run(&[
        "rollback",
        "users",
        "--output",
        "json",
        "--lock-settle",
        "0s",
    ]);
    assert_eq!(rollback.code, 0, "{rollback}");
    assert!(
        rollback
            .stderr
            .contains(&format!("migrate: users: WARNING: {says}")),
        "{rollback}"
    );
    let outcomes: serde_json::Value = serde_json::from_str(&rollback.stdout).unwrap();
    assert_eq!(
        outcomes[0]["also_forwarding"][0]["rule_arn"],
        second.as_str(),
        "{outcomes:#}"
    );
    // As it says: the route is back, what the second rule matches is not.
    assert_eq!(
        stack.burst("/api/users/1", 1).0.keys().collect::<Vec<_>>(),
        ["monolith"]
    );
    assert_eq!(
        stack.burst("/API/USERS/1", 1).0.keys().collect::<Vec<_>>(),
        ["users"]
    );
}
