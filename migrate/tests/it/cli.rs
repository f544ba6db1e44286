//! Usage and configuration errors: exit 2 with a message naming the problem,
//! before any call to AWS.

use crate::support::*;

const VALID: &str = r#"
[aws]
endpoint_url = "http://127.0.0.1:1"
region = "us-east-1"
[listener]
load_balancer = "ficus-local"
port = 80
[routes.users]
paths = ["/api/users*"]
target_group = "users"
[routes.posts]
paths = ["/api/posts*"]
target_group = "posts"
"#;

fn operator(config: &str) -> Operator {
    Operator::new(
        config,
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "k".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "s".into()),
        ],
    )
}

#[test]
fn help_teaches_the_model_and_exits_0() {
    let op = operator(VALID);
    let help = op.run(&["--help"]);
    assert_eq!(help.code, 0, "{help}");
    assert!(
        help.stdout.contains("ON THE MONOLITH") && help.stdout.contains("Exit codes"),
        "{help}"
    );
    let shift = op.run(&["shift", "--help"]);
    assert_eq!(shift.code, 0);
    assert!(shift.stdout.contains("--steps 10,50,100"), "{shift}");
}

#[test]
fn usage_errors_exit_2() {
    let op = operator(VALID);
    for args in [
        &["statu"][..],
        &["shift"][..],
        &["rollback"][..],
        &["plan", "users", "--to", "101"][..],
    ] {
        let run = op.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run}");
    }
    let rollback = op.run(&["rollback"]);
    assert!(rollback.stderr.contains("<ROUTE|--all>"), "{rollback}");
    let plan = op.run(&["plan", "--help"]);
    assert!(
        plan.stdout
            .contains("The route to plan, as named in migrate.toml"),
        "{plan}"
    );
}

#[test]
fn a_bad_endpoint_url_flag_is_blamed_on_the_flag() {
    let op = operator(VALID);
    let run = op.run(&["status", "--endpoint-url", "127.0.0.1:9100"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--endpoint-url"), "{run}");
    assert!(!run.stderr.contains("aws.endpoint_url"), "{run}");
}

#[test]
fn an_unknown_route_exits_2_listing_the_known_ones() {
    let op = operator(VALID);
    for args in [
        &["shift", "people"][..],
        &["rollback", "people"][..],
        &["plan", "people"][..],
        &["status", "people"][..],
    ] {
        let run = op.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run}");
        assert!(
            run.stderr
                .starts_with("migrate: unknown route `people`; known routes: posts, users"),
            "{run}"
        );
    }
}

#[test]
fn bad_steps_exit_2() {
    let op = operator(VALID);
    let run = op.run(&["shift", "users", "--steps", "50,10,100"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--steps: steps must increase"), "{run}");
    // plan takes --steps as shift does.
    let run = op.run(&["plan", "users", "--steps", "50,10,100"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--steps: steps must increase"), "{run}");
    let run = op.run(&["plan", "users", "--steps", "10,100", "--to", "10"]);
    assert_eq!(run.code, 2, "{run}");
}

#[test]
fn a_malformed_file_exits_2_naming_the_file_and_key() {
    let op = operator(&VALID.replace(
        r#"target_group = "posts""#,
        "target_group = \"posts\"\nerror_budget = \"lots\"",
    ));
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("migrate.toml"), "{run}");
    assert!(run.stderr.contains("error_budget"), "{run}");

    let op = operator(&VALID.replace("port = 80", "port = 80\nprot = 1"));
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("prot"), "{run}");

    let op = operator(&VALID.replace(r#"paths = ["/api/users*"]"#, "paths = []"));
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("`routes.users.paths`"), "{run}");

    let op = operator("[listener\n");
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("migrate.toml"), "{run}");
}

#[test]
fn environment_variables_override_the_file() {
    let op = Operator::new(
        VALID,
        vec![("MIGRATE__ROUTES__USERS__ERROR_BUDGET".into(), "2".into())],
    );
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains(
            "migrate: the variable MIGRATE__ROUTES__USERS__ERROR_BUDGET: \
             `routes.users.error_budget`: 2 is not a ratio"
        ),
        "{run}"
    );
    // A value the file's reader refuses names the variable too, not the file.
    let op = Operator::new(
        VALID,
        vec![("MIGRATE__PROPAGATION_MAX".into(), "abc".into())],
    );
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .starts_with("migrate: the variable MIGRATE__PROPAGATION_MAX: `abc` is not a duration"),
        "{run}"
    );
    assert!(!run.stderr.contains("migrate.toml"), "{run}");
}

#[test]
fn a_missing_file_exits_2_and_says_where_it_looked() {
    let op = operator(VALID);
    let run = op.run(&["status", "--config", "nowhere.toml"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("no settings file at nowhere.toml"),
        "{run}"
    );
}

#[test]
fn an_unreachable_endpoint_is_an_error_naming_the_endpoint_setting() {
    let port = free_port();
    let op = operator(&VALID.replace("http://127.0.0.1:1", &format!("http://127.0.0.1:{port}")));
    let run = op.run(&["status"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("cannot reach the endpoint"), "{run}");
}

#[test]
fn a_scalar_variable_alone_overrides_the_file() {
    let op = Operator::new(
        VALID,
        vec![("MIGRATE__LB_URL".into(), "ftp://lb,example".into())],
    );
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .contains("`lb_url`: `ftp://lb,example` is not an http:// or https:// URL"),
        "{run}"
    );
}

#[test]
fn list_settings_come_from_comma_separated_variables() {
    let op = Operator::new(
        VALID,
        vec![("MIGRATE__ROUTES__USERS__STEPS".into(), "50,10,100".into())],
    );
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .contains("`routes.users.steps`: steps must increase"),
        "{run}"
    );
    let op = Operator::new(
        VALID,
        vec![(
            "MIGRATE__ROUTES__POSTS__PATHS".into(),
            "/api/posts*,api/more".into(),
        )],
    );
    let run = op.run(&["status"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .contains("`routes.posts.paths`: `api/more` must start with `/`"),
        "{run}"
    );
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_commands_own_exit_code() {
    let op = operator(VALID);
    let journal = op.dir.path().join(".ficus/journal.jsonl");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    let entry = r#"{"when":"2026-11-26T04:00:00Z","who":"ann@vm","command":"shift","route":"users","what":"shift to 100 percent","before":{"priority":100,"action":"forward users","state":"on the monolith"},"after":{"priority":1,"action":"forward users","state":"on the service"},"writes":[],"evidence":{}}"#;
    std::fs::write(&journal, format!("{entry}\n").repeat(50)).unwrap();
    for args in [
        &["history"][..],
        &["history", "--output", "json"][..],
        &["--help"][..],
    ] {
        let run = op.run_stdout_closed(args);
        assert_eq!(run.code, 0, "{args:?}: {run}");
        assert_eq!(run.stderr, "", "{args:?}: {run}");
    }
    // A failing command keeps its exit code and its message on stderr.
    let run = op.run_stdout_closed(&["--output", "json", "shift", "people"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.starts_with("migrate: unknown route"), "{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
}

#[test]
fn output_json_prints_a_json_document_for_usage_and_plain_errors() {
    let op = operator(VALID);
    // Refused by the command line parser.
    let run = op.run(&["--output", "json", "statu"]);
    let document = failure_json(&run, 2);
    assert!(
        document["error"].as_str().unwrap().contains("statu"),
        "{run}"
    );
    // Refused by the settings.
    let run = op.run(&["shift", "users", "--steps", "50,10,100", "--output=json"]);
    let document = failure_json(&run, 2);
    assert!(
        document["error"]
            .as_str()
            .unwrap()
            .contains("steps must increase"),
        "{run}"
    );
    // An unknown route, naming it.
    let run = op.run(&["--output", "json", "shift", "people"]);
    let document = failure_json(&run, 2);
    assert!(
        document["error"].as_str().unwrap().contains("people"),
        "{run}"
    );
    // A plain error: nothing answers at the endpoint.
    let port = free_port();
    let op = operator(&VALID.replace("http://127.0.0.1:1", &format!("http://127.0.0.1:{port}")));
    let run = op.run(&["status", "--output", "json"]);
    let document = failure_json(&run, 1);
    assert!(
        document["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the endpoint"),
        "{run}"
    );
}

/// Every failure document names the route its command line names, whether
/// the parser refused the line, the command refused a flag, or the work
/// failed later; `verify`'s keeps `passed: false` too.
#[test]
fn every_failure_document_names_the_route() {
    let op = operator(VALID);
    let cases: [(&[&str], i32); 4] = [
        // Refused by the parser: --accept-leaks needs --reason.
        (
            &[
                "retire",
                "users",
                "--from-alb-log",
                "logs",
                "--accept-leaks",
            ],
            2,
        ),
        // A negative window, refused with the fix instead of clap's "-- -5" tip.
        (
            &["leaks", "users", "--from-alb-log", "logs", "--since", "-5m"],
            2,
        ),
        // The work failed: nothing answers at the endpoint.
        (&["plan", "users", "--from-alb-log", "missing.log"], 1),
        // verify's own failure: no candidate URL for the route.
        (&["verify", "users"], 2),
    ];
    for (args, code) in cases {
        let mut line = args.to_vec();
        line.extend(["--output", "json"]);
        let run = op.run(&line);
        let document = failure_json(&run, code);
        assert_eq!(document["route"], "users", "{args:?}: {run}");
        if args[0] == "verify" {
            assert_eq!(document["passed"], false, "{run}");
        }
    }
    let negative = op.run(&["leaks", "users", "--from-alb-log", "logs", "--since", "-5m"]);
    assert_eq!(negative.code, 2, "{negative}");
    assert!(
        negative
            .stderr
            .contains("--since takes a positive duration such as 24h")
            && !negative.stderr.contains("-- -5"),
        "{negative}"
    );
}
