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
        run.stderr
            .contains("`routes.users.error_budget`: 2 is not a ratio"),
        "{run}"
    );
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
