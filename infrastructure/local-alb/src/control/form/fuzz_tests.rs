//! Fuzzing the control API's form parsing and validation (issue 8): random
//! Query API forms, built from the real parameter names, ARNs and edge-case
//! values, or raw bytes, go straight to `ControlPlane::execute` (past SigV4,
//! which the chaos suite fuzzes over HTTP). No case may panic; every refusal
//! must be a client error that renders as an AWS `<ErrorResponse>` document;
//! every success an XML `...Response` document.
//!
//! A unit test of the crate (it reaches `ControlPlane::execute`, which is not
//! public). CI runs the default number of cases; a long run:
//! `PROPTEST_CASES=200000 cargo test -p local-alb --release --lib fuzz_tests::`.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;

use crate::Application;
use crate::control::form::Form;
use crate::control::{ControlPlane, xml};
use crate::settings::Settings;

const ACTIONS: &[&str] = &[
    "DescribeLoadBalancers",
    "DescribeListeners",
    "DescribeRules",
    "DescribeTargetGroups",
    "DescribeTargetHealth",
    "DescribeTags",
    "CreateRule",
    "ModifyRule",
    "DeleteRule",
    "SetRulePriorities",
    "ModifyListener",
    "ModifyTargetGroup",
    "RegisterTargets",
    "DeregisterTargets",
    "AddTags",
    "RemoveTags",
    "NoSuchAction",
    "",
];

/// Parameter names of those actions; `N` becomes a member index.
const KEYS: &[&str] = &[
    "Version",
    "LoadBalancerArn",
    "LoadBalancerArns.member.N",
    "Names.member.N",
    "ListenerArn",
    "ListenerArns.member.N",
    "RuleArn",
    "RuleArns.member.N",
    "TargetGroupArn",
    "TargetGroupArns.member.N",
    "ResourceArns.member.N",
    "Priority",
    "PageSize",
    "Marker",
    "Conditions.member.N.Field",
    "Conditions.member.N.Values.member.N",
    "Conditions.member.N.PathPatternConfig.Values.member.N",
    "Conditions.member.N.HttpHeaderConfig.HttpHeaderName",
    "Conditions.member.N.QueryStringConfig.Values.member.N.Key",
    "Actions.member.N.Type",
    "Actions.member.N.TargetGroupArn",
    "Actions.member.N.Order",
    "Actions.member.N.ForwardConfig.TargetGroups.member.N.TargetGroupArn",
    "Actions.member.N.ForwardConfig.TargetGroups.member.N.Weight",
    "Actions.member.N.FixedResponseConfig.StatusCode",
    "Actions.member.N.RedirectConfig.StatusCode",
    "DefaultActions.member.N.Type",
    "RulePriorities.member.N.RuleArn",
    "RulePriorities.member.N.Priority",
    "Targets.member.N.Id",
    "Targets.member.N.Port",
    "Tags.member.N.Key",
    "Tags.member.N.Value",
    "TagKeys.member.N",
    "HealthCheckIntervalSeconds",
    "HealthCheckTimeoutSeconds",
    "HealthyThresholdCount",
    "HealthCheckPath",
    "Matcher.HttpCode",
];

/// Values that probe the edges: numbers around the limits, wrong types, odd text.
const VALUES: &[&str] = &[
    "2015-12-01",
    "2016-01-01",
    "",
    "0",
    "1",
    "-1",
    "99",
    "50000",
    "50001",
    "999",
    "1000",
    "4294967296",
    "99999999999999999999",
    "1.5",
    "true",
    "abc",
    "path-pattern",
    "host-header",
    "http-header",
    "query-string",
    "source-ip",
    "http-request-method",
    "forward",
    "redirect",
    "fixed-response",
    "authenticate-oidc",
    "/api*",
    "*",
    "503",
    "HTTP_301",
    "127.0.0.1",
    "::1",
    "%",
    "%zz",
    "\u{0}",
    "a\u{1F980}b",
    "ficus:role",
    "monolith",
    "arn:aws:elasticloadbalancing:",
];

/// The in-process local ALB the cases run against, with its ARNs.
struct Target {
    control: Arc<ControlPlane>,
    arns: Vec<String>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// The control plane the properties share (their forms may delete or
/// change rules, so a test that needs the stack as declared builds its own).
fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(fresh_target)
}

/// A control plane on the repository's stack file, in a state directory of
/// its own.
fn fresh_target() -> Target {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary state directory");
    let mut settings = Settings::on_free_ports(dir.path());
    settings.stack = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../local/stack.toml").into());
    let app = runtime
        .block_on(Application::build(settings))
        .expect("the local ALB builds from the repository's stack file");
    let control = app.control_plane();
    let state = control.state();
    let arns = state
        .load_balancers
        .iter()
        .map(|x| x.arn.clone())
        .chain(state.listeners.iter().map(|x| x.arn.clone()))
        .chain(state.target_groups.iter().map(|x| x.arn.clone()))
        .chain(state.rules.iter().map(|x| x.arn.clone()))
        .collect();
    Target {
        control,
        arns,
        _runtime: runtime,
        _dir: dir,
    }
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A form as the wire carries it: vocabulary keys with member indices, values
/// from the edge cases, the real ARNs or arbitrary text.
fn form_body() -> impl Strategy<Value = Vec<u8>> {
    let key = (prop::sample::select(KEYS), 0u32..4, 0u32..4).prop_map(|(key, first, second)| {
        key.replacen('N', &first.to_string(), 1)
            .replacen('N', &second.to_string(), 1)
    });
    let value = prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(str::to_owned),
        3 => (0..64usize).prop_map(|index| {
            let arns = &target().arns;
            arns[index % arns.len()].clone()
        }),
        1 => any::<String>(),
    ];
    let pairs = prop::collection::vec((key, value), 0..10);
    (pairs, any::<bool>()).prop_map(|(pairs, with_version)| {
        let mut body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if with_version {
            body.push("Version=2015-12-01".into());
        }
        body.join("&").into_bytes()
    })
}

fn check(action: &str, body: &[u8]) -> Result<(), TestCaseError> {
    let form = Form::parse(body);
    match target().control.execute(action, &form, "fuzz") {
        Ok(answer) => {
            prop_assert!(
                answer.starts_with('<') && answer.contains(&format!("<{action}Response")),
                "{action} answered a non-document: {answer}"
            );
        }
        Err(error) => {
            prop_assert!(
                error.status.is_client_error(),
                "{action} {:?}: {} {}: {}",
                String::from_utf8_lossy(body),
                error.status,
                error.code,
                error.message
            );
            let document = xml::error(&error, "fuzz");
            prop_assert!(
                document.contains("<ErrorResponse")
                    && document.contains(&format!("<Code>{}</Code>", error.code))
                    && !error.code.is_empty(),
                "not an AWS error document: {document}"
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn vocabulary_forms_get_answers_or_aws_errors(
        action in prop::sample::select(ACTIONS),
        body in form_body(),
    ) {
        check(action, &body)?;
    }

    #[test]
    fn raw_bytes_get_answers_or_aws_errors(
        action in prop::sample::select(ACTIONS),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        check(action, &body)?;
    }
}

/// The harness reaches the actions: a well-formed form is answered, so the
/// properties above test more than the refusal of everything.
#[test]
fn well_formed_forms_reach_the_actions() {
    // Not the shared plane: a fuzzed DeleteRule may have removed the rule.
    let target = fresh_target();
    let listener = target
        .arns
        .iter()
        .find(|arn| arn.contains(":listener/"))
        .expect("the stack has a listener");
    let body = format!("Version=2015-12-01&ListenerArn={}", encode(listener));
    let answer = target
        .control
        .execute("DescribeRules", &Form::parse(body.as_bytes()), "fuzz")
        .expect("DescribeRules of the stack's listener is answered");
    assert!(answer.contains("<DescribeRulesResponse"), "{answer}");
    assert!(
        answer.contains("/api*"),
        "the monolith's rule is listed: {answer}"
    );
}
