//! DescribeTargetHealth renders the data plane's real health checks: a live
//! target becomes `healthy`, a dead one `unhealthy`, a deregistered one
//! `draining`, an unknown one `unused`.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::RunningAlb;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;

/// A port nothing listens on.
async fn dead_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn health_of(client: &Client, tg: &str, port: u16) -> (String, Option<String>) {
    let health = client
        .describe_target_health()
        .target_group_arn(tg)
        .targets(
            TargetDescription::builder()
                .id("127.0.0.1")
                .port(i32::from(port))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let description = &health.target_health_descriptions()[0];
    let view = description.target_health().unwrap();
    (
        view.state().unwrap().as_str().to_owned(),
        view.reason().map(|r| r.as_str().to_owned()),
    )
}

async fn wait_for_state(client: &Client, tg: &str, port: u16, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (state, reason) = health_of(client, tg, port).await;
        if state == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "target :{port} is still {state} ({reason:?}), not {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_the_data_planes_health_checks() {
    let live = common::live_target("ok").await;
    let dead = dead_port().await;
    let dir = tempfile::tempdir().unwrap();
    let stack = common::write_stack(dir.path(), &[("web", &[live, dead])]);
    let mut settings = common::settings_for(&dir.path().join("state"));
    settings.stack = Some(stack);
    let alb = RunningAlb::start_with(settings).await;
    let client = alb.client().await;
    let tgs = client
        .describe_target_groups()
        .names("web")
        .send()
        .await
        .unwrap();
    let web = tgs.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();

    wait_for_state(&client, &web, live, "healthy").await;
    wait_for_state(&client, &web, dead, "unhealthy").await;
    let (_, reason) = health_of(&client, &web, dead).await;
    assert!(reason.is_some_and(|r| r.starts_with("Target.")));
    let (state, reason) = health_of(&client, &web, 1).await;
    assert_eq!(
        (state.as_str(), reason.as_deref()),
        ("unused", Some("Target.NotRegistered"))
    );

    client
        .deregister_targets()
        .target_group_arn(&web)
        .targets(
            TargetDescription::builder()
                .id("127.0.0.1")
                .port(i32::from(live))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let all = client
        .describe_target_health()
        .target_group_arn(&web)
        .send()
        .await
        .unwrap();
    let draining = all
        .target_health_descriptions()
        .iter()
        .find(|d| d.target().and_then(|t| t.port()) == Some(i32::from(live)))
        .expect("a deregistered target is listed while it drains");
    let view = draining.target_health().unwrap();
    assert_eq!(view.state().map(|s| s.as_str()), Some("draining"));
    assert_eq!(
        view.reason().map(|r| r.as_str()),
        Some("Target.DeregistrationInProgress")
    );
    alb.stop().await;
}
