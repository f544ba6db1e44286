//! The control API on the wire: signatures, XML shapes, both condition forms,
//! malformed input, and `/metrics`.

use crate::common;

use std::time::{Duration, SystemTime};

use crate::common::{
    Answer, Credentials, RunningAlb, form_body, send, sign, signed_post, stack_credentials,
};

const NS: &str = r#"xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/""#;

fn describe_lbs() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Action", "DescribeLoadBalancers"),
        ("Version", "2015-12-01"),
    ]
}

fn unsigned(control_url: &str, body: &str) -> http::Request<String> {
    http::Request::builder()
        .method("POST")
        .uri(format!("{control_url}/"))
        .header("host", control_url.trim_start_matches("http://"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body.to_owned())
        .unwrap()
}

fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(
        answer.body.contains(&format!(
            "<ErrorResponse {NS}><Error><Type>Sender</Type><Code>{code}</Code><Message>"
        )),
        "{answer:?}"
    );
    let request_id = answer
        .request_id
        .as_deref()
        .expect("x-amzn-requestid header");
    assert!(
        answer.body.contains(&format!(
            "</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )),
        "{answer:?}"
    );
}

#[tokio::test]
async fn refuses_unsigned_and_wrongly_signed_requests() {
    let alb = RunningAlb::start().await;
    let body = form_body(&describe_lbs());

    let answer = send(unsigned(&alb.control_url, &body)).await;
    assert_error(&answer, 403, "MissingAuthenticationToken");

    let stranger = Credentials {
        access_key_id: "AKIASTRANGER00000000".into(),
        secret_access_key: stack_credentials().secret_access_key,
    };
    let answer = signed_post(&alb.control_url, &describe_lbs(), Some(stranger)).await;
    assert_error(&answer, 403, "InvalidClientTokenId");

    let wrong_secret = Credentials {
        access_key_id: stack_credentials().access_key_id,
        secret_access_key: "not-the-secret".into(),
    };
    let answer = signed_post(&alb.control_url, &describe_lbs(), Some(wrong_secret)).await;
    assert_error(&answer, 403, "SignatureDoesNotMatch");

    let mut tampered = unsigned(&alb.control_url, &body);
    sign(&mut tampered, &stack_credentials(), SystemTime::now());
    *tampered.body_mut() = form_body(&[
        ("Action", "DescribeTargetGroups"),
        ("Version", "2015-12-01"),
    ]);
    let answer = send(tampered).await;
    assert_error(&answer, 403, "SignatureDoesNotMatch");

    let mut stale = unsigned(&alb.control_url, &body);
    sign(
        &mut stale,
        &stack_credentials(),
        SystemTime::now() - Duration::from_secs(20 * 60),
    );
    let answer = send(stale).await;
    assert_error(&answer, 403, "SignatureDoesNotMatch");
    assert!(answer.body.contains("Signature expired"), "{answer:?}");

    let mut skewed_but_allowed = unsigned(&alb.control_url, &body);
    sign(
        &mut skewed_but_allowed,
        &stack_credentials(),
        SystemTime::now() - Duration::from_secs(10 * 60),
    );
    assert_eq!(send(skewed_but_allowed).await.status, 200);
    alb.stop().await;
}

#[tokio::test]
async fn answers_in_the_aws_xml_shape() {
    let alb = RunningAlb::start().await;
    let answer = signed_post(&alb.control_url, &describe_lbs(), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let request_id = answer.request_id.clone().expect("x-amzn-requestid header");
    let start = format!(
        r#"<DescribeLoadBalancersResponse {NS}><DescribeLoadBalancersResult><LoadBalancers><member><LoadBalancerArn>arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/ficus-local/"#
    );
    assert!(answer.body.starts_with(&start), "{}", answer.body);
    assert!(answer.body.ends_with(&format!(
        "</DescribeLoadBalancersResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></DescribeLoadBalancersResponse>"
    )), "{}", answer.body);

    let answer = signed_post(
        &alb.control_url,
        &[("Action", "DescribeNothing"), ("Version", "2015-12-01")],
        None,
    )
    .await;
    assert_error(&answer, 400, "InvalidAction");
    alb.stop().await;
}

async fn listener_and_target_group(alb: &RunningAlb) -> (String, String) {
    let client = alb.client().await;
    let arns = common::stack_arns(&client).await;
    (arns.listener, arns.target_group["users"].clone())
}

#[tokio::test]
async fn accepts_legacy_values_and_config_forms_and_describes_them_like_aws() {
    let alb = RunningAlb::start().await;
    let (listener, users) = listener_and_target_group(&alb).await;

    let legacy = signed_post(
        &alb.control_url,
        &[
            ("Action", "CreateRule"),
            ("Version", "2015-12-01"),
            ("ListenerArn", &listener),
            ("Priority", "10"),
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/api/users*"),
            ("Conditions.member.2.Field", "host-header"),
            ("Conditions.member.2.Values.member.1", "*.example.com"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", &users),
        ],
        None,
    )
    .await;
    assert_eq!(legacy.status, 200, "{legacy:?}");
    assert!(
        legacy.body.contains("<Priority>10</Priority>"),
        "{}",
        legacy.body
    );
    assert!(legacy.body.contains("<Field>path-pattern</Field><Values><member>/api/users*</member></Values><PathPatternConfig><Values><member>/api/users*</member></Values></PathPatternConfig>"), "{}", legacy.body);
    assert!(legacy.body.contains("<Field>host-header</Field><Values><member>*.example.com</member></Values><HostHeaderConfig><Values><member>*.example.com</member></Values></HostHeaderConfig>"), "{}", legacy.body);
    assert!(legacy.body.contains(&format!("<Type>forward</Type><TargetGroupArn>{users}</TargetGroupArn><Order>1</Order><ForwardConfig><TargetGroups><member><TargetGroupArn>{users}</TargetGroupArn><Weight>1</Weight></member></TargetGroups><TargetGroupStickinessConfig><Enabled>false</Enabled></TargetGroupStickinessConfig></ForwardConfig>")), "{}", legacy.body);
    assert!(
        legacy.body.contains("<IsDefault>false</IsDefault>"),
        "{}",
        legacy.body
    );

    let config = signed_post(
        &alb.control_url,
        &[
            ("Action", "CreateRule"),
            ("Version", "2015-12-01"),
            ("ListenerArn", &listener),
            ("Priority", "11"),
            ("Conditions.member.1.Field", "http-header"),
            (
                "Conditions.member.1.HttpHeaderConfig.HttpHeaderName",
                "X-Canary",
            ),
            (
                "Conditions.member.1.HttpHeaderConfig.Values.member.1",
                "yes",
            ),
            ("Conditions.member.2.Field", "query-string"),
            (
                "Conditions.member.2.QueryStringConfig.Values.member.1.Key",
                "v",
            ),
            (
                "Conditions.member.2.QueryStringConfig.Values.member.1.Value",
                "2",
            ),
            ("Conditions.member.3.Field", "http-request-method"),
            (
                "Conditions.member.3.HttpRequestMethodConfig.Values.member.1",
                "GET",
            ),
            ("Conditions.member.4.Field", "source-ip"),
            (
                "Conditions.member.4.SourceIpConfig.Values.member.1",
                "127.0.0.0/8",
            ),
            ("Conditions.member.5.Field", "path-pattern"),
            (
                "Conditions.member.5.PathPatternConfig.Values.member.1",
                "/api/*",
            ),
            ("Actions.member.1.Type", "forward"),
            (
                "Actions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn",
                &users,
            ),
            (
                "Actions.member.1.ForwardConfig.TargetGroups.member.1.Weight",
                "7",
            ),
        ],
        None,
    )
    .await;
    assert_eq!(config.status, 200, "{config:?}");
    for shape in [
        "<Field>http-header</Field><HttpHeaderConfig><HttpHeaderName>X-Canary</HttpHeaderName><Values><member>yes</member></Values></HttpHeaderConfig>",
        "<Field>query-string</Field><QueryStringConfig><Values><member><Key>v</Key><Value>2</Value></member></Values></QueryStringConfig>",
        "<Field>http-request-method</Field><HttpRequestMethodConfig><Values><member>GET</member></Values></HttpRequestMethodConfig>",
        "<Field>source-ip</Field><SourceIpConfig><Values><member>127.0.0.0/8</member></Values></SourceIpConfig>",
        "<Field>path-pattern</Field><Values><member>/api/*</member></Values><PathPatternConfig>",
        "<Weight>7</Weight>",
    ] {
        assert!(
            config.body.contains(shape),
            "missing {shape} in {}",
            config.body
        );
    }

    // The SDK parses both back.
    let client = alb.client().await;
    let rules = client
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .unwrap();
    let eleven = rules
        .rules()
        .iter()
        .find(|r| r.priority() == Some("11"))
        .unwrap();
    let header = eleven.conditions()[0].http_header_config().unwrap();
    assert_eq!(header.http_header_name(), Some("X-Canary"));
    let pair = &eleven.conditions()[1]
        .query_string_config()
        .unwrap()
        .values()[0];
    assert_eq!((pair.key(), pair.value()), (Some("v"), Some("2")));
    alb.stop().await;
}

#[tokio::test]
async fn malformed_parameters_are_validation_errors_naming_the_parameter() {
    let alb = RunningAlb::start().await;
    let (listener, users) = listener_and_target_group(&alb).await;
    let base = [("Action", "CreateRule"), ("Version", "2015-12-01")];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("ListenerArn", &listener), ("Priority", "abc")],
            "Priority",
        ),
        (vec![("Priority", "5")], "ListenerArn"),
        (
            vec![
                ("ListenerArn", &listener),
                ("Priority", "5"),
                ("Conditions.member.one.Field", "path-pattern"),
            ],
            "Conditions.member.one",
        ),
        (
            vec![
                ("ListenerArn", &listener),
                ("Priority", "5"),
                ("Conditions.member.1.Field", "path-pattern"),
                (
                    "Conditions.member.1.PathPatternConfig.Values.member.1",
                    "/x",
                ),
                ("Actions.member.1.TargetGroupArn", &users),
            ],
            "Actions.member.1.Type",
        ),
        (
            vec![
                ("ListenerArn", &listener),
                ("Priority", "5"),
                ("Conditions.member.1.Field", "path-pattern"),
                (
                    "Conditions.member.1.PathPatternConfig.Values.member.1",
                    "/x",
                ),
                ("Actions.member.1.Type", "forward"),
                (
                    "Actions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn",
                    &users,
                ),
                (
                    "Actions.member.1.ForwardConfig.TargetGroups.member.1.Weight",
                    "-1",
                ),
            ],
            "Weight",
        ),
        (
            vec![
                ("ListenerArn", &listener),
                ("Priority", "5"),
                ("Conditions.member.1.Field", "no-such-field"),
            ],
            "Conditions.member.1.Field",
        ),
    ];
    for (extra, named) in cases {
        let params: Vec<(&str, &str)> = base.iter().copied().chain(extra).collect();
        let answer = signed_post(&alb.control_url, &params, None).await;
        assert_error(&answer, 400, "ValidationError");
        assert!(
            answer.element("Message").unwrap().contains(named),
            "{named}: {answer:?}"
        );
    }
    let answer = signed_post(
        &alb.control_url,
        &[
            ("Action", "DescribeLoadBalancers"),
            ("Version", "2012-06-01"),
        ],
        None,
    )
    .await;
    assert_error(&answer, 400, "ValidationError");
    alb.stop().await;
}

#[tokio::test]
async fn serves_metrics_on_the_control_listener() {
    let alb = RunningAlb::start().await;
    let response = reqwest::get(format!("{}/metrics", alb.control_url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let response = reqwest::get(format!("{}/elsewhere", alb.control_url))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    alb.stop().await;
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const KEYS: &[&str] = &[
        "Action",
        "Version",
        "ListenerArn",
        "Priority",
        "RuleArn",
        "Conditions",
        "Conditions.member.1.Field",
        "Conditions.member.1.Values.member.1",
        "Conditions.member.0.PathPatternConfig.Values.member.9",
        "Actions.member.1.Type",
        "Actions.member.1.ForwardConfig.TargetGroups.member.1.Weight",
        "RulePriorities.member.1.Priority",
        "RulePriorities.member.1.RuleArn",
        "Tags.member.1.Key",
        "ResourceArns.member.1",
        "Targets.member.1.Port",
        "PageSize",
        "Marker",
        "Conditions.member.99999999999.Field",
    ];
    const ACTIONS: &[&str] = &[
        "CreateRule",
        "ModifyRule",
        "DeleteRule",
        "SetRulePriorities",
        "DescribeRules",
        "AddTags",
        "DescribeTags",
        "RegisterTargets",
        "DescribeTargetHealth",
        "DescribeTargetGroups",
        "Bogus",
    ];

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
    }

    fn alb() -> &'static RunningAlb {
        static ALB: std::sync::OnceLock<RunningAlb> = std::sync::OnceLock::new();
        ALB.get_or_init(|| runtime().block_on(RunningAlb::start()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn random_signed_requests_get_an_api_answer_never_a_crash(
            action in proptest::sample::select(ACTIONS),
            params in proptest::collection::vec(
                (proptest::sample::select(KEYS), "[ -~]{0,12}|-1|0|50001|[0-9]{1,25}"), 0..8),
        ) {
            let alb = alb();
            let mut all: Vec<(&str, &str)> = vec![("Action", action), ("Version", "2015-12-01")];
            all.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
            let answer = runtime().block_on(signed_post(&alb.control_url, &all, None));
            prop_assert!(answer.status == 200 || answer.status == 400, "{answer:?}");
            let document_start = if answer.status == 200 { format!("<{action}Response {NS}>") } else { format!("<ErrorResponse {NS}>") };
            prop_assert!(answer.body.starts_with(&document_start), "{answer:?}");
        }
    }
}
