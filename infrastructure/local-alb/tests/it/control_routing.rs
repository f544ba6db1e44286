//! A change accepted by the control API reroutes real traffic on the data
//! listener before the API answers.

use crate::common;

use crate::common::RunningAlb;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, PathPatternConditionConfig, RuleCondition,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_deleting_a_rule_moves_a_path_between_services() {
    let monolith = common::live_target("monolith").await;
    let users = common::live_target("users").await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::settings_for(&dir.path().join("state"));
    settings.stack = Some(common::write_stack(
        dir.path(),
        &[("monolith", &[monolith]), ("users", &[users])],
    ));
    let alb = RunningAlb::start_with(settings).await;
    let client = alb.client().await;
    let http = reqwest::Client::new();
    let body_of = |path: &'static str| {
        let request = http.get(format!("{}{path}", alb.data_url));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(body_of("/api/users").await, "monolith");

    let arns = client
        .describe_target_groups()
        .names("users")
        .send()
        .await
        .unwrap();
    let users_tg = arns.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    let listeners = client.describe_listeners().load_balancer_arn(
        client
            .describe_load_balancers()
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .load_balancer_arn()
            .unwrap(),
    );
    let listener = listeners.send().await.unwrap().listeners()[0]
        .listener_arn()
        .unwrap()
        .to_owned();
    let created = client
        .create_rule()
        .listener_arn(&listener)
        .priority(10)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    PathPatternConditionConfig::builder()
                        .values("/api/users*")
                        .build(),
                )
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&users_tg)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Published before the answer: the very next request takes the new rule.
    assert_eq!(body_of("/api/users").await, "users");
    assert_eq!(body_of("/api/threads").await, "monolith");

    let rule = created.rules()[0].rule_arn().unwrap();
    client.delete_rule().rule_arn(rule).send().await.unwrap();
    assert_eq!(body_of("/api/users").await, "monolith");
    alb.stop().await;
}
