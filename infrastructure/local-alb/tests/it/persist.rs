//! Persistence: every accepted change survives a restart, `--reset` returns to
//! the stack file, and a change that cannot be saved is refused.

use crate::common::{RunningAlb, code_of, settings_for, stack_arns};
use aws_sdk_elasticloadbalancingv2::types::RulePriorityPair;

async fn monolith_priority(alb: &RunningAlb) -> String {
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    let rules = client
        .describe_rules()
        .rule_arns(&arns.monolith_rule)
        .send()
        .await
        .unwrap();
    rules.rules()[0].priority().unwrap().to_owned()
}

async fn move_monolith_rule(alb: &RunningAlb, priority: i32) -> Result<(), String> {
    let client = alb.client().await;
    let arns = stack_arns(&client).await;
    client
        .set_rule_priorities()
        .rule_priorities(
            RulePriorityPair::builder()
                .rule_arn(&arns.monolith_rule)
                .priority(priority)
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code_of(&e))
}

#[tokio::test]
async fn a_restart_keeps_the_last_change_and_reset_returns_to_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let alb = RunningAlb::start_with(settings_for(dir.path())).await;
    let arns_before = stack_arns(&alb.client().await).await;
    move_monolith_rule(&alb, 250).await.unwrap();
    alb.stop().await;

    let alb = RunningAlb::start_with(settings_for(dir.path())).await;
    assert_eq!(monolith_priority(&alb).await, "250");
    let arns_after = stack_arns(&alb.client().await).await;
    assert_eq!(
        arns_after.monolith_rule, arns_before.monolith_rule,
        "ARNs survive restarts"
    );
    alb.stop().await;

    let mut reset = settings_for(dir.path());
    reset.reset = true;
    let alb = RunningAlb::start_with(reset).await;
    assert_eq!(monolith_priority(&alb).await, "99");
    alb.stop().await;

    let alb = RunningAlb::start_with(settings_for(dir.path())).await;
    assert_eq!(
        monolith_priority(&alb).await,
        "99",
        "the reset state was saved too"
    );
    alb.stop().await;
}

#[tokio::test]
async fn a_change_that_cannot_be_saved_is_refused_and_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let alb = RunningAlb::start_with(settings_for(&state_dir)).await;
    // Make the state directory unusable: a plain file where it was.
    std::fs::remove_dir_all(&state_dir).unwrap();
    std::fs::write(&state_dir, "not a directory").unwrap();

    let refused = move_monolith_rule(&alb, 300).await.unwrap_err();
    assert_eq!(refused, "InternalFailure");
    assert_eq!(
        monolith_priority(&alb).await,
        "99",
        "the old state stays in place"
    );
    alb.stop().await;
}

#[tokio::test]
async fn the_state_file_is_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let alb = RunningAlb::start_with(settings_for(dir.path())).await;
    move_monolith_rule(&alb, 123).await.unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|name| name.ends_with(".tmp")),
        "no temporary file is left behind: {names:?}"
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    let priorities: Vec<&serde_json::Value> = saved["state"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["priority"])
        .collect();
    assert!(
        priorities.contains(&&serde_json::json!({"Number": 123})),
        "{priorities:?}"
    );
    alb.stop().await;
}
