//! The control API driven by the official AWS SDK for Rust, the way `migrate`
//! drives it.

use crate::common::{RunningAlb, code_of, stack_arns};
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::operation::add_tags::builders::AddTagsFluentBuilder;
use aws_sdk_elasticloadbalancingv2::operation::create_rule::builders::CreateRuleFluentBuilder;
use aws_sdk_elasticloadbalancingv2::operation::describe_rules::DescribeRulesOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_rules::builders::DescribeRulesFluentBuilder;
use aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
use aws_sdk_elasticloadbalancingv2::operation::set_rule_priorities::builders::SetRulePrioritiesFluentBuilder;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, PathPatternConditionConfig, RuleCondition,
    RulePriorityPair, Tag, TargetDescription, TargetGroupTuple,
};

/// The AWS error message of an SDK error.
fn message_of<E, R>(error: &aws_sdk_elasticloadbalancingv2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata,
{
    use aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata;
    error.message().unwrap_or("<no message>").to_owned()
}

/// Sends `request` and asserts that it fails with a ValidationError whose
/// message contains `words`.
macro_rules! assert_refused {
    ($request:expr, $words:expr) => {{
        let err = $request.send().await.unwrap_err();
        assert_eq!(code_of(&err), "ValidationError", "{err:?}");
        let message = message_of(&err);
        assert!(message.contains($words), "{message}");
    }};
}

/// Sends `request` (a fluent builder) and asserts that it fails with the AWS
/// error `code`.
macro_rules! assert_fails_with {
    ($request:expr, $code:expr) => {{
        let err = $request.send().await.unwrap_err();
        assert_eq!(code_of(&err), $code);
    }};
}

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

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The target 127.0.0.1:`port`.
fn local_target(port: i32) -> TargetDescription {
    TargetDescription::builder()
        .id("127.0.0.1")
        .port(port)
        .build()
}

/// SetRulePriorities with one (rule, priority) pair per entry.
fn set_rule_priorities(client: &Client, pairs: &[(&str, i32)]) -> SetRulePrioritiesFluentBuilder {
    pairs
        .iter()
        .fold(client.set_rule_priorities(), |request, (arn, priority)| {
            request.rule_priorities(
                RulePriorityPair::builder()
                    .rule_arn(*arn)
                    .priority(*priority)
                    .build(),
            )
        })
}

/// CreateRule on `listener` with one condition and one action.
fn create_rule(
    client: &Client,
    listener: &str,
    priority: i32,
    condition: RuleCondition,
    action: Action,
) -> CreateRuleFluentBuilder {
    client
        .create_rule()
        .listener_arn(listener)
        .priority(priority)
        .conditions(condition)
        .actions(action)
}

/// DescribeRules of one rule.
fn describe_rule(client: &Client, rule_arn: &str) -> DescribeRulesFluentBuilder {
    client.describe_rules().rule_arns(rule_arn)
}

/// DescribeRules of a whole listener, which must succeed.
async fn listener_rules(client: &Client, listener: &str) -> DescribeRulesOutput {
    client
        .describe_rules()
        .listener_arn(listener)
        .send()
        .await
        .unwrap()
}

/// DescribeTags of `resources`, which must succeed.
async fn describe_tags(client: &Client, resources: &[&str]) -> DescribeTagsOutput {
    resources
        .iter()
        .fold(client.describe_tags(), |request, arn| {
            request.resource_arns(*arn)
        })
        .send()
        .await
        .unwrap()
}

/// AddTags of `tags` on `resources`.
fn add_tags(client: &Client, resources: &[&str], tags: &[Tag]) -> AddTagsFluentBuilder {
    let request = resources.iter().fold(client.add_tags(), |request, arn| {
        request.resource_arns(*arn)
    });
    tags.iter()
        .fold(request, |request, tag| request.tags(tag.clone()))
}

/// DescribeTargetHealth of a target group, which must succeed.
async fn target_health(client: &Client, target_group: &str) -> DescribeTargetHealthOutput {
    client
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .unwrap()
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

    let rules = listener_rules(&client, &arns.listener).await;
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

    let tags = describe_tags(&client, &[&arns.monolith_rule]).await;
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

    let health = target_health(&client, &arns.target_group["users"]).await;
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
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let users = arns.target_group["users"].as_str();
    let monolith = arns.target_group["monolith"].as_str();

    let created = create_rule(
        &client,
        &arns.listener,
        100,
        path_condition(&["/api/users", "/api/users/*"]),
        forward(users),
    )
    .tags(tag("ficus:service", "users"))
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

    let swapped = set_rule_priorities(&client, &[(&rule_arn, 99), (&arns.monolith_rule, 100)])
        .send()
        .await
        .unwrap();
    assert_eq!(swapped.rules().len(), 2);
    let rules = listener_rules(&client, &arns.listener).await;
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
    assert_fails_with!(describe_rule(&client, &rule_arn), "RuleNotFound");
    alb.stop().await;
}

#[tokio::test]
async fn pages_rules_with_marker_and_page_size() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    for priority in [10, 20, 30] {
        let condition = path_condition(&[&format!("/p{priority}")]);
        let action = forward(&arns.target_group["posts"]);
        create_rule(&client, &arns.listener, priority, condition, action)
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
    assert_fails_with!(
        client
            .describe_rules()
            .listener_arn(&arns.listener)
            .marker("bogus"),
        "ValidationError"
    );
    alb.stop().await;
}

#[tokio::test]
async fn registers_deregisters_and_tags() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let posts = arns.target_group["posts"].as_str();

    client
        .register_targets()
        .target_group_arn(posts)
        .targets(local_target(3013))
        .send()
        .await
        .unwrap();
    let health = target_health(&client, posts).await;
    let ports: Vec<_> = health
        .target_health_descriptions()
        .iter()
        .map(|d| d.target().unwrap().port().unwrap())
        .collect();
    assert_eq!(ports, [3003, 3013]);

    let deregister = |port| {
        client
            .deregister_targets()
            .target_group_arn(posts)
            .targets(local_target(port))
    };
    deregister(3013).send().await.unwrap();
    let tgs = client
        .describe_target_groups()
        .target_group_arns(posts)
        .send()
        .await
        .unwrap();
    assert_eq!(tgs.target_groups().len(), 1);
    // Deregistering a target that is not registered succeeds, as on AWS,
    // and changes nothing.
    let ports = |health: DescribeTargetHealthOutput| -> Vec<i32> {
        health
            .target_health_descriptions()
            .iter()
            .map(|d| d.target().unwrap().port().unwrap())
            .collect()
    };
    let before = ports(target_health(&client, posts).await);
    deregister(3999).send().await.unwrap();
    assert_eq!(ports(target_health(&client, posts).await), before);

    add_tags(&client, &[&arns.listener], &[tag("team", "forum")])
        .send()
        .await
        .unwrap();
    add_tags(&client, &[posts], &[tag("team", "posts")])
        .send()
        .await
        .unwrap();
    let described = describe_tags(&client, &[posts, &arns.listener]).await;
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
    let described = describe_tags(&client, &[posts]).await;
    assert!(described.tag_descriptions()[0].tags().is_empty());
    alb.stop().await;
}

#[tokio::test]
async fn answers_every_documented_error_code() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let users = arns.target_group["users"].as_str();
    let create = |priority: i32, condition: RuleCondition, action: Action| {
        create_rule(&client, &arns.listener, priority, condition, action)
    };

    assert_fails_with!(
        create(99, path_condition(&["/x"]), forward(users)),
        "PriorityInUse"
    );
    assert_fails_with!(
        create(0, path_condition(&["/x"]), forward(users)),
        "ValidationError"
    );
    assert_fails_with!(
        create(50_001, path_condition(&["/x"]), forward(users)),
        "ValidationError"
    );
    assert_fails_with!(
        create(
            5,
            path_condition(&["/a", "/b", "/c", "/d", "/e", "/f"]),
            forward(users),
        ),
        "ValidationError"
    );
    let long = format!("/{}", "a".repeat(128));
    assert_fails_with!(
        create(5, path_condition(&[&long]), forward(users)),
        "ValidationError"
    );
    assert_fails_with!(
        create(5, path_condition(&["/x"]), weighted(&[(users, 1000)])),
        "ValidationError"
    );
    let all: Vec<&str> = arns.target_group.values().map(String::as_str).collect();
    let six_groups: Vec<(&str, i32)> = all.iter().cycle().take(6).map(|a| (*a, 1)).collect();
    assert_fails_with!(
        create(5, path_condition(&["/x"]), weighted(&six_groups)),
        "TooManyTargetGroups"
    );
    let missing_tg = users.replace("targetgroup/users/", "targetgroup/nobody/");
    assert_fails_with!(
        create(5, path_condition(&["/x"]), forward(&missing_tg)),
        "TargetGroupNotFound"
    );
    let missing_listener = format!("{}0", arns.listener);
    assert_fails_with!(
        create_rule(
            &client,
            &missing_listener,
            5,
            path_condition(&["/x"]),
            forward(users),
        ),
        "ListenerNotFound"
    );

    assert_fails_with!(
        client
            .modify_rule()
            .rule_arn(&arns.default_rule)
            .actions(forward(users)),
        "OperationNotPermitted"
    );
    assert_fails_with!(
        client.delete_rule().rule_arn(&arns.default_rule),
        "OperationNotPermitted"
    );
    assert_fails_with!(
        set_rule_priorities(&client, &[(&arns.default_rule, 7)]),
        "OperationNotPermitted"
    );
    assert_fails_with!(
        client
            .delete_rule()
            .rule_arn(format!("{}0", arns.monolith_rule)),
        "RuleNotFound"
    );
    assert_fails_with!(
        client.describe_load_balancers().names("no-such-lb"),
        "LoadBalancerNotFound"
    );
    assert_fails_with!(
        client.describe_target_groups().names("nobody"),
        "TargetGroupNotFound"
    );
    assert_fails_with!(
        add_tags(&client, &[users], &[tag("k", "1"), tag("k", "2")]),
        "DuplicateTagKeys"
    );

    // Moving the monolith rule onto a taken priority fails and changes nothing.
    create(7, path_condition(&["/seven"]), forward(users))
        .send()
        .await
        .unwrap();
    assert_fails_with!(
        set_rule_priorities(&client, &[(&arns.monolith_rule, 7)]),
        "PriorityInUse"
    );
    let rules = describe_rule(&client, &arns.monolith_rule)
        .send()
        .await
        .unwrap();
    assert_eq!(rules.rules()[0].priority(), Some("99"));
    alb.stop().await;
}

/// A path-pattern condition in the legacy form (`Values` beside `Field`).
fn legacy_path_condition(values: &[&str]) -> RuleCondition {
    RuleCondition::builder()
        .field("path-pattern")
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

#[tokio::test]
async fn refuses_legacy_values_with_more_than_one_value_as_aws_does() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let users = arns.target_group["users"].as_str();
    assert_refused!(
        create_rule(
            &client,
            &arns.listener,
            5,
            legacy_path_condition(&["/a", "/b"]),
            forward(users)
        ),
        "'Conditions.member.1.Values' takes a single path-pattern value, but 2 were given; put several in 'Conditions.member.1.PathPatternConfig.Values'"
    );
    let host = RuleCondition::builder()
        .field("host-header")
        .values("a.example.com")
        .values("b.example.com")
        .build();
    assert_refused!(
        client
            .modify_rule()
            .rule_arn(&arns.monolith_rule)
            .conditions(host),
        "takes a single host-header value"
    );
    // One legacy value, and several in the config, are fine.
    create_rule(
        &client,
        &arns.listener,
        5,
        legacy_path_condition(&["/a"]),
        forward(users),
    )
    .send()
    .await
    .unwrap();
    create_rule(
        &client,
        &arns.listener,
        6,
        path_condition(&["/b", "/c"]),
        forward(users),
    )
    .send()
    .await
    .unwrap();
    alb.stop().await;
}

#[tokio::test]
async fn refuses_a_rule_with_more_than_five_wildcards() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let users = arns.target_group["users"].as_str();
    let create = |priority, patterns: &[&str]| {
        create_rule(
            &client,
            &arns.listener,
            priority,
            path_condition(patterns),
            forward(users),
        )
    };
    assert_refused!(
        create(5, &["/a*/b*", "/c?/d*", "/e*?"]),
        "at most 5 wildcards ('*' or '?') in its condition values, but this one has 6"
    );
    create(5, &["/a*/b*", "/c?/d*", "/e"]).send().await.unwrap();
    alb.stop().await;
}

#[tokio::test]
async fn add_tags_tags_one_resource_per_call_with_keys_in_aws_pattern() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let posts = arns.target_group["posts"].as_str();
    let err = add_tags(&client, &[posts, &arns.listener], &[tag("team", "forum")])
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (code_of(&err), message_of(&err)),
        (
            "ValidationError".to_owned(),
            "Only one resource can be tagged at a time".to_owned()
        )
    );
    assert_refused!(
        add_tags(&client, &[posts], &[tag("team#1", "forum")]),
        r"Tag key 'team#1' must match ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
    );
    assert_refused!(
        add_tags(&client, &[posts], &[tag("team", "a,b")]),
        "The value 'a,b' of tag 'team' must match"
    );
    assert_refused!(
        client
            .add_tags()
            .resource_arns(posts)
            .set_tags(Some(Vec::new())),
        "Value '[]' at 'Tags' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    // Nothing was tagged by the refused calls.
    let described = describe_tags(&client, &[posts, &arns.listener]).await;
    for description in described.tag_descriptions() {
        assert!(
            description.tags().iter().all(|t| t.key() != Some("team")),
            "{description:?}"
        );
    }
    add_tags(
        &client,
        &[posts],
        &[tag("ficus:role team_1/a=b+c-d@e.f", "Ünïcode value 2")],
    )
    .send()
    .await
    .unwrap();
    alb.stop().await;
}

/// describe, edit, modify: what DescribeRules returns (legacy `Values` and
/// the `*Config` block together) goes back into ModifyRule, as on AWS.
#[tokio::test]
async fn describe_rules_output_fed_back_to_modify_rule_is_accepted() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let users = arns.target_group["users"].as_str();
    create_rule(
        &client,
        &arns.listener,
        5,
        path_condition(&["/a", "/b"]),
        forward(users),
    )
    .send()
    .await
    .unwrap();
    let rules = listener_rules(&client, &arns.listener).await;
    for rule in rules
        .rules()
        .iter()
        .filter(|r| r.is_default() != Some(true))
    {
        let conditions = rule.conditions().to_vec();
        assert!(
            conditions
                .iter()
                .any(|c| !c.values().is_empty() && c.path_pattern_config().is_some()),
            "DescribeRules shows both forms: {conditions:?}"
        );
        let modified = client
            .modify_rule()
            .rule_arn(rule.rule_arn().unwrap())
            .set_conditions(Some(conditions.clone()))
            .set_actions(Some(rule.actions().to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(modified.rules()[0].conditions(), conditions.as_slice());
    }
    // Both forms with different values are refused, naming both.
    let mismatched = RuleCondition::builder()
        .field("path-pattern")
        .values("/x")
        .path_pattern_config(PathPatternConditionConfig::builder().values("/y").build())
        .build();
    assert_refused!(
        client
            .modify_rule()
            .rule_arn(&arns.monolith_rule)
            .conditions(mismatched),
        "'Conditions.member.1.Values' and 'Conditions.member.1.PathPatternConfig.Values' give different values"
    );
    alb.stop().await;
}

#[tokio::test]
async fn refuses_the_hundred_and_first_rule() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let threads = arns.target_group["threads"].as_str();
    // The stack has one numbered rule (99); add 99 more to reach 100.
    for priority in (1..=100).filter(|p| *p != 99) {
        let condition = path_condition(&[&format!("/r{priority}")]);
        create_rule(
            &client,
            &arns.listener,
            priority,
            condition,
            forward(threads),
        )
        .send()
        .await
        .unwrap();
    }
    assert_fails_with!(
        create_rule(
            &client,
            &arns.listener,
            101,
            path_condition(&["/one-too-many"]),
            forward(threads),
        ),
        "TooManyRules"
    );
    alb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_at_one_priority_admit_exactly_one() {
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
    let attempts = (0..8).map(|i| {
        let request = create_rule(
            &client,
            &arns.listener,
            5,
            path_condition(&[&format!("/race{i}")]),
            forward(&arns.target_group["users"]),
        );
        tokio::spawn(async move { request.send().await.map(|_| ()).map_err(|e| code_of(&e)) })
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
    let (alb, client, arns) = RunningAlb::start_with_arns().await;
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
    assert_fails_with!(
        client
            .modify_target_group()
            .target_group_arn(users)
            .health_check_timeout_seconds(30),
        "ValidationError"
    );

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
    let rules = describe_rule(&client, &arns.default_rule)
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
