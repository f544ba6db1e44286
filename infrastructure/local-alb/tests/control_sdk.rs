//! The control API driven by the official AWS SDK for Rust, the way `migrate`
//! drives it.

mod common;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, PathPatternConditionConfig, RuleCondition,
    RulePriorityPair, Tag, TargetDescription, TargetGroupTuple,
};
use common::{RunningAlb, code_of, stack_arns};

fn path_condition(values: &[&str]) -> RuleCondition {
    RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(
            PathPatternConditionConfig::builder()
                .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
                .build(),
        )
        .build()
}

fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

fn weighted(pairs: &[(&str, i32)]) -> Action {
    let config = ForwardActionConfig::builder()
        .set_target_groups(Some(
            pairs
                .iter()
                .map(|(arn, weight)| {
                    TargetGroupTuple::builder()
                        .target_group_arn(*arn)
                        .weight(*weight)
                        .build()
                })
                .collect(),
        ))
        .build();
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(config)
        .build()
}

#[tokio::test]
async fn describes_the_stack_the_way_aws_does() {
    let alb = RunningAlb::start().await;
    let client = alb.client().await;

    let lbs = client
        .describe_load_balancers()
        .names("ficus-local")
        .send()
        .await
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.load_balancer_name(), Some("ficus-local"));
    assert!(lb.load_balancer_arn().unwrap().starts_with(
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/ficus-local/"
    ));
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("application"));
    assert_eq!(
        lb.state().and_then(|s| s.code()).map(|c| c.as_str()),
        Some("active")
    );

    let arns = stack_arns(&client).await;
    let listeners = client
        .describe_listeners()
        .load_balancer_arn(&arns.load_balancer)
        .send()
        .await
        .unwrap();
    let listener = &listeners.listeners()[0];
    assert_eq!(listener.port(), Some(80));
    assert_eq!(listener.protocol().map(|p| p.as_str()), Some("HTTP"));
    assert_eq!(
        listener.default_actions()[0].target_group_arn(),
        Some(arns.target_group["monolith"].as_str())
    );

    let rules = client
        .describe_rules()
        .listener_arn(&arns.listener)
        .send()
        .await
        .unwrap();
    let priorities: Vec<_> = rules
        .rules()
        .iter()
        .map(|r| r.priority().unwrap())
        .collect();
    assert_eq!(priorities, ["99", "default"]);
    let monolith = &rules.rules()[0];
    assert_eq!(monolith.is_default(), Some(false));
    let condition = &monolith.conditions()[0];
    assert_eq!(condition.field(), Some("path-pattern"));
    assert_eq!(condition.values(), ["/api*"]);
    assert_eq!(condition.path_pattern_config().unwrap().values(), ["/api*"]);
    let action = &monolith.actions()[0];
    assert_eq!(
        action.target_group_arn(),
        Some(arns.target_group["monolith"].as_str())
    );
    let tuple = &action.forward_config().unwrap().target_groups()[0];
    assert_eq!(tuple.weight(), Some(1));
    assert_eq!(rules.rules()[1].is_default(), Some(true));

    let tags = client
        .describe_tags()
        .resource_arns(&arns.monolith_rule)
        .send()
        .await
        .unwrap();
    let tag = &tags.tag_descriptions()[0].tags()[0];
    assert_eq!(
        (tag.key(), tag.value()),
        (Some("ficus:role"), Some("monolith"))
    );

    let tgs = client
        .describe_target_groups()
        .names("users")
        .send()
        .await
        .unwrap();
    let users = &tgs.target_groups()[0];
    assert_eq!(users.port(), Some(3000));
    assert_eq!(users.health_check_path(), Some("/"));
    assert_eq!(users.health_check_interval_seconds(), Some(6));
    assert_eq!(users.health_check_timeout_seconds(), Some(5));
    assert_eq!(users.healthy_threshold_count(), Some(2));
    assert_eq!(users.unhealthy_threshold_count(), Some(2));
    assert_eq!(users.matcher().and_then(|m| m.http_code()), Some("200"));

    let by_lb = client
        .describe_target_groups()
        .load_balancer_arn(&arns.load_balancer)
        .send()
        .await
        .unwrap();
    let names: Vec<_> = by_lb
        .target_groups()
        .iter()
        .map(|t| t.target_group_name().unwrap())
        .collect();
    assert_eq!(
        names,
        ["monolith"],
        "only the monolith is routed to by the stack"
    );

    let health = client
        .describe_target_health()
        .target_group_arn(&arns.target_group["users"])
        .send()
        .await
        .unwrap();
    let description = &health.target_health_descriptions()[0];
    assert_eq!(description.target().and_then(|t| t.id()), Some("127.0.0.1"));
    assert_eq!(description.target().and_then(|t| t.port()), Some(3001));
    assert!(
        description
            .target_health()
            .and_then(|h| h.state())
            .is_some()
    );
    alb.stop().await;
}

#[tokio::test]
async fn creates_reweights_swaps_and_deletes_rules() {
    let alb = RunningAlb::start().await;
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    let users = arns.target_group["users"].as_str();
    let monolith = arns.target_group["monolith"].as_str();

    let created = client
        .create_rule()
        .listener_arn(&arns.listener)
        .priority(100)
        .conditions(path_condition(&["/api/users", "/api/users/*"]))
        .actions(forward(users))
        .tags(Tag::builder().key("ficus:service").value("users").build())
        .send()
        .await
        .unwrap();
    let rule = &created.rules()[0];
    let rule_arn = rule.rule_arn().unwrap().to_owned();
    assert!(
        rule_arn.contains(":listener-rule/app/ficus-local/"),
        "{rule_arn}"
    );
    assert_eq!(rule.priority(), Some("100"));

    let modified = client
        .modify_rule()
        .rule_arn(&rule_arn)
        .actions(weighted(&[(users, 10), (monolith, 90)]))
        .send()
        .await
        .unwrap();
    let tuples = modified.rules()[0].actions()[0]
        .forward_config()
        .unwrap()
        .target_groups();
    let weights: Vec<_> = tuples
        .iter()
        .map(|t| (t.target_group_arn().unwrap(), t.weight().unwrap()))
        .collect();
    assert_eq!(weights, [(users, 10), (monolith, 90)]);
    assert_eq!(
        modified.rules()[0].conditions()[0].values(),
        ["/api/users", "/api/users/*"]
    );

    let swapped = client
        .set_rule_priorities()
        .rule_priorities(
            RulePriorityPair::builder()
                .rule_arn(&rule_arn)
                .priority(99)
                .build(),
        )
        .rule_priorities(
            RulePriorityPair::builder()
                .rule_arn(&arns.monolith_rule)
                .priority(100)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(swapped.rules().len(), 2);
    let rules = client
        .describe_rules()
        .listener_arn(&arns.listener)
        .send()
        .await
        .unwrap();
    let order: Vec<_> = rules
        .rules()
        .iter()
        .map(|r| (r.priority().unwrap(), r.rule_arn().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("99", rule_arn.as_str()),
            ("100", arns.monolith_rule.as_str()),
            ("default", arns.default_rule.as_str())
        ]
    );

    client
        .delete_rule()
        .rule_arn(&rule_arn)
        .send()
        .await
        .unwrap();
    let err = client
        .describe_rules()
        .rule_arns(&rule_arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "RuleNotFound");
    alb.stop().await;
}

#[tokio::test]
async fn pages_rules_with_marker_and_page_size() {
    let alb = RunningAlb::start().await;
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    for priority in [10, 20, 30] {
        client
            .create_rule()
            .listener_arn(&arns.listener)
            .priority(priority)
            .conditions(path_condition(&[&format!("/p{priority}")]))
            .actions(forward(&arns.target_group["posts"]))
            .send()
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = client
            .describe_rules()
            .listener_arn(&arns.listener)
            .page_size(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        assert!(page.rules().len() <= 2);
        seen.extend(
            page.rules()
                .iter()
                .map(|r| r.priority().unwrap().to_owned()),
        );
        marker = page.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["10", "20", "30", "99", "default"]);
    let err = client
        .describe_rules()
        .listener_arn(&arns.listener)
        .marker("bogus")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ValidationError");
    alb.stop().await;
}

#[tokio::test]
async fn registers_deregisters_and_tags() {
    let alb = RunningAlb::start().await;
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    let posts = arns.target_group["posts"].as_str();

    client
        .register_targets()
        .target_group_arn(posts)
        .targets(
            TargetDescription::builder()
                .id("127.0.0.1")
                .port(3013)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let health = client
        .describe_target_health()
        .target_group_arn(posts)
        .send()
        .await
        .unwrap();
    let ports: Vec<_> = health
        .target_health_descriptions()
        .iter()
        .map(|d| d.target().unwrap().port().unwrap())
        .collect();
    assert_eq!(ports, [3003, 3013]);

    client
        .deregister_targets()
        .target_group_arn(posts)
        .targets(
            TargetDescription::builder()
                .id("127.0.0.1")
                .port(3013)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let tgs = client
        .describe_target_groups()
        .target_group_arns(posts)
        .send()
        .await
        .unwrap();
    assert_eq!(tgs.target_groups().len(), 1);
    let err = client
        .deregister_targets()
        .target_group_arn(posts)
        .targets(
            TargetDescription::builder()
                .id("127.0.0.1")
                .port(3999)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "InvalidTarget");

    client
        .add_tags()
        .resource_arns(posts)
        .resource_arns(&arns.listener)
        .tags(Tag::builder().key("team").value("forum").build())
        .send()
        .await
        .unwrap();
    client
        .add_tags()
        .resource_arns(posts)
        .tags(Tag::builder().key("team").value("posts").build())
        .send()
        .await
        .unwrap();
    let described = client
        .describe_tags()
        .resource_arns(posts)
        .resource_arns(&arns.listener)
        .send()
        .await
        .unwrap();
    let values: Vec<_> = described
        .tag_descriptions()
        .iter()
        .map(|d| (d.resource_arn().unwrap(), d.tags()[0].value().unwrap()))
        .collect();
    assert_eq!(
        values,
        [(posts, "posts"), (arns.listener.as_str(), "forum")]
    );
    client
        .remove_tags()
        .resource_arns(posts)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    let described = client
        .describe_tags()
        .resource_arns(posts)
        .send()
        .await
        .unwrap();
    assert!(described.tag_descriptions()[0].tags().is_empty());
    alb.stop().await;
}

#[tokio::test]
async fn answers_every_documented_error_code() {
    let alb = RunningAlb::start().await;
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    let users = arns.target_group["users"].as_str();
    let create = |priority: i32, condition: RuleCondition, action: Action| {
        client
            .create_rule()
            .listener_arn(&arns.listener)
            .priority(priority)
            .conditions(condition)
            .actions(action)
            .send()
    };

    let err = create(99, path_condition(&["/x"]), forward(users))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "PriorityInUse");
    let err = create(0, path_condition(&["/x"]), forward(users))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ValidationError");
    let err = create(50_001, path_condition(&["/x"]), forward(users))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ValidationError");
    let err = create(
        5,
        path_condition(&["/a", "/b", "/c", "/d", "/e", "/f"]),
        forward(users),
    )
    .await
    .unwrap_err();
    assert_eq!(code_of(&err), "ValidationError");
    let long = format!("/{}", "a".repeat(128));
    let err = create(5, path_condition(&[&long]), forward(users))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ValidationError");
    let err = create(5, path_condition(&["/x"]), weighted(&[(users, 1000)]))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ValidationError");
    let all: Vec<&str> = arns.target_group.values().map(String::as_str).collect();
    let six_groups: Vec<(&str, i32)> = all.iter().cycle().take(6).map(|a| (*a, 1)).collect();
    let err = create(5, path_condition(&["/x"]), weighted(&six_groups))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "TooManyTargetGroups");
    let missing_tg = users.replace("targetgroup/users/", "targetgroup/nobody/");
    let err = create(5, path_condition(&["/x"]), forward(&missing_tg))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "TargetGroupNotFound");
    let missing_listener = format!("{}0", arns.listener);
    let err = client
        .create_rule()
        .listener_arn(&missing_listener)
        .priority(5)
        .conditions(path_condition(&["/x"]))
        .actions(forward(users))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ListenerNotFound");

    let err = client
        .modify_rule()
        .rule_arn(&arns.default_rule)
        .actions(forward(users))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "OperationNotPermitted");
    let err = client
        .delete_rule()
        .rule_arn(&arns.default_rule)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "OperationNotPermitted");
    let err = client
        .set_rule_priorities()
        .rule_priorities(
            RulePriorityPair::builder()
                .rule_arn(&arns.default_rule)
                .priority(7)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "OperationNotPermitted");
    let err = client
        .delete_rule()
        .rule_arn(format!("{}0", arns.monolith_rule))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "RuleNotFound");
    let err = client
        .describe_load_balancers()
        .names("no-such-lb")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "LoadBalancerNotFound");
    let err = client
        .describe_target_groups()
        .names("nobody")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "TargetGroupNotFound");
    let err = client
        .add_tags()
        .resource_arns(users)
        .tags(Tag::builder().key("k").value("1").build())
        .tags(Tag::builder().key("k").value("2").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "DuplicateTagKeys");

    // Moving the monolith rule onto a taken priority fails and changes nothing.
    create(7, path_condition(&["/seven"]), forward(users))
        .await
        .unwrap();
    let err = client
        .set_rule_priorities()
        .rule_priorities(
            RulePriorityPair::builder()
                .rule_arn(&arns.monolith_rule)
                .priority(7)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "PriorityInUse");
    let rules = client
        .describe_rules()
        .rule_arns(&arns.monolith_rule)
        .send()
        .await
        .unwrap();
    assert_eq!(rules.rules()[0].priority(), Some("99"));
    alb.stop().await;
}

#[tokio::test]
async fn refuses_the_hundred_and_first_rule() {
    let alb = RunningAlb::start().await;
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    // The stack has one numbered rule (99); add 99 more to reach 100.
    for priority in (1..=100).filter(|p| *p != 99) {
        client
            .create_rule()
            .listener_arn(&arns.listener)
            .priority(priority)
            .conditions(path_condition(&[&format!("/r{priority}")]))
            .actions(forward(&arns.target_group["threads"]))
            .send()
            .await
            .unwrap();
    }
    let err = client
        .create_rule()
        .listener_arn(&arns.listener)
        .priority(101)
        .conditions(path_condition(&["/one-too-many"]))
        .actions(forward(&arns.target_group["threads"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "TooManyRules");
    alb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_at_one_priority_admit_exactly_one() {
    let alb = RunningAlb::start().await;
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    let attempts = (0..8).map(|i| {
        let client = client.clone();
        let listener = arns.listener.clone();
        let users = arns.target_group["users"].clone();
        tokio::spawn(async move {
            client
                .create_rule()
                .listener_arn(listener)
                .priority(5)
                .conditions(path_condition(&[&format!("/race{i}")]))
                .actions(forward(&users))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| code_of(&e))
        })
    });
    let mut outcomes = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        outcomes.push(attempt.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || o.as_ref().unwrap_err() == "PriorityInUse"),
        "{outcomes:?}"
    );
    alb.stop().await;
}

#[tokio::test]
async fn modifies_health_checks_and_the_listeners_default_action() {
    let alb = RunningAlb::start().await;
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    let users = arns.target_group["users"].as_str();

    let modified = client
        .modify_target_group()
        .target_group_arn(users)
        .health_check_path("/api")
        .health_check_interval_seconds(10)
        .healthy_threshold_count(3)
        .matcher(
            aws_sdk_elasticloadbalancingv2::types::Matcher::builder()
                .http_code("200-299")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let tg = &modified.target_groups()[0];
    assert_eq!(tg.health_check_path(), Some("/api"));
    assert_eq!(tg.health_check_interval_seconds(), Some(10));
    assert_eq!(tg.health_check_timeout_seconds(), Some(5));
    assert_eq!(tg.healthy_threshold_count(), Some(3));
    assert_eq!(tg.matcher().and_then(|m| m.http_code()), Some("200-299"));
    let err = client
        .modify_target_group()
        .target_group_arn(users)
        .health_check_timeout_seconds(30)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ValidationError");

    client
        .modify_listener()
        .listener_arn(&arns.listener)
        .default_actions(weighted(&[(users, 1), (&arns.target_group["monolith"], 3)]))
        .send()
        .await
        .unwrap();
    let listeners = client
        .describe_listeners()
        .listener_arns(&arns.listener)
        .send()
        .await
        .unwrap();
    let default = &listeners.listeners()[0].default_actions()[0];
    let weights: Vec<_> = default
        .forward_config()
        .unwrap()
        .target_groups()
        .iter()
        .map(|t| t.weight().unwrap())
        .collect();
    assert_eq!(weights, [1, 3]);
    let rules = client
        .describe_rules()
        .rule_arns(&arns.default_rule)
        .send()
        .await
        .unwrap();
    assert_eq!(
        rules.rules()[0].actions()[0]
            .forward_config()
            .unwrap()
            .target_groups()
            .len(),
        2
    );
    alb.stop().await;
}
