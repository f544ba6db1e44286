//! Health checks against real backends, fail-open routing and draining.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common_dataplane::*;
use local_alb::model::Priority;

/// Checks every second, 1 s timeout, 2 healthy / 2 unhealthy.
fn fast_check() -> local_alb::model::HealthCheck {
    health_check(1, 1)
}

#[tokio::test]
async fn health_states_follow_probes_with_reasons() {
    let good = Backend::start("good").await;
    let erroring = Backend::start("erroring").await;
    erroring.set_status(500);
    let silent = SilentBackend::start().await;
    let refusing = closed_port_target();
    let targets = vec![
        good.target(),
        erroring.target(),
        silent.target(),
        refusing.clone(),
    ];
    let state = StateBuilder::new()
        .target_group("checked", targets, fast_check())
        .rule(Priority::Default, vec![], forward("checked"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let plane = &alb.plane;

    let initial = plane.target_health(&tg_arn("checked"), &good.target());
    assert_eq!(initial.state, "initial");
    assert_eq!(
        initial.reason.as_deref(),
        Some("Elb.RegistrationInProgress")
    );

    let within = Duration::from_secs(5);
    let healthy = wait_for_health(plane, "checked", &good.target(), "healthy", within).await;
    assert_eq!((healthy.reason, healthy.description), (None, None));
    let mismatch = wait_for_health(plane, "checked", &erroring.target(), "unhealthy", within).await;
    assert_eq!(
        mismatch.reason.as_deref(),
        Some("Target.ResponseCodeMismatch")
    );
    assert_eq!(
        mismatch.description.as_deref(),
        Some("Health checks failed with these codes: [500]")
    );
    let refused = wait_for_health(plane, "checked", &refusing, "unhealthy", within).await;
    assert_eq!(refused.reason.as_deref(), Some("Target.FailedHealthChecks"));
    let timeout = wait_for_health(plane, "checked", &silent.target(), "unhealthy", within).await;
    assert_eq!(timeout.reason.as_deref(), Some("Target.Timeout"));

    // The first probe runs at registration: two probes one second apart.
    assert!(good.requests.load(Ordering::Relaxed) >= 2);

    // A failing target comes back after two good probes.
    erroring.set_status(200);
    wait_for_health(plane, "checked", &erroring.target(), "healthy", within).await;
    good.set_status(503);
    wait_for_health(plane, "checked", &good.target(), "unhealthy", within).await;

    let metrics = plane.render_metrics();
    let gauge = |backend: &str, healthy: u8| {
        format!(
            r#"ficus_alb_target_healthy{{target_group="checked",target="{backend}"}} {healthy}"#
        )
    };
    for line in [
        gauge(&good.addr.to_string(), 0),
        gauge(&erroring.addr.to_string(), 1),
        gauge(&silent.addr.to_string(), 0),
    ] {
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    let unknown = plane.target_health(&tg_arn("checked"), &closed_port_target());
    assert_eq!(unknown.state, "unused");
    alb.stop().await;
}

#[tokio::test]
async fn traffic_goes_to_healthy_targets_and_fails_open_when_none_is() {
    let good = Backend::start("good").await;
    let sick = Backend::start("sick").await;
    sick.set_status(500);
    let state = StateBuilder::new()
        .target_group("pair", vec![good.target(), sick.target()], fast_check())
        .rule(Priority::Default, vec![], forward("pair"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let plane = &alb.plane;
    let client = client();
    let within = Duration::from_secs(5);
    wait_for_health(plane, "pair", &good.target(), "healthy", within).await;
    wait_for_health(plane, "pair", &sick.target(), "unhealthy", within).await;

    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        *counts
            .entry(backend_of(&client, &alb.url("/")).await.1)
            .or_default() += 1;
    }
    assert_eq!(
        counts.get("good"),
        Some(&20),
        "only the healthy target: {counts:?}"
    );

    good.set_status(500);
    wait_for_health(plane, "pair", &good.target(), "unhealthy", within).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        let (status, backend) = backend_of(&client, &alb.url("/")).await;
        assert_eq!(status, 500, "the targets' own answer is passed through");
        *counts.entry(backend).or_default() += 1;
    }
    assert_eq!(
        counts.get("good"),
        Some(&10),
        "fail open to all: {counts:?}"
    );
    assert_eq!(
        counts.get("sick"),
        Some(&10),
        "fail open to all: {counts:?}"
    );
    alb.stop().await;
}

#[tokio::test]
async fn republishing_keeps_health_and_deregistered_targets_drain() {
    let staying = Backend::start("staying").await;
    let leaving = Backend::start("leaving").await;
    let mut state = StateBuilder::new()
        .target_group(
            "group",
            vec![staying.target(), leaving.target()],
            fast_check(),
        )
        .rule(Priority::Default, vec![], forward("group"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let plane = &alb.plane;
    let client = client();
    let within = Duration::from_secs(5);
    wait_for_health(plane, "group", &staying.target(), "healthy", within).await;
    wait_for_health(plane, "group", &leaving.target(), "healthy", within).await;

    state.target_groups[0]
        .targets
        .retain(|t| *t != leaving.target());
    plane.publish(&state);
    let kept = plane.target_health(&tg_arn("group"), &staying.target());
    assert_eq!(kept.state, "healthy", "a remaining target keeps its health");
    let draining = plane.target_health(&tg_arn("group"), &leaving.target());
    assert_eq!(draining.state, "draining");
    assert_eq!(
        draining.reason.as_deref(),
        Some("Target.DeregistrationInProgress")
    );
    assert_eq!(
        plane.draining_targets(&tg_arn("group")),
        vec![leaving.target()]
    );

    let leaving_before = leaving.requests.load(Ordering::Relaxed);
    for _ in 0..10 {
        assert_eq!(
            backend_of(&client, &alb.url("/")).await,
            (200, "staying".into())
        );
    }
    assert_eq!(
        leaving.requests.load(Ordering::Relaxed),
        leaving_before,
        "a draining target gets no requests and no health checks"
    );

    // The deregistration delay is 2 s in these tests.
    wait_until(
        "the deregistered target has drained",
        Duration::from_secs(5),
        || plane.draining_targets(&tg_arn("group")).is_empty(),
    )
    .await;
    assert_eq!(
        plane
            .target_health(&tg_arn("group"), &leaving.target())
            .state,
        "unused"
    );

    // Registering it again starts over at `initial`, probed at once.
    state.target_groups[0].targets.push(leaving.target());
    plane.publish(&state);
    assert_eq!(
        plane
            .target_health(&tg_arn("group"), &leaving.target())
            .state,
        "initial"
    );
    wait_for_health(plane, "group", &leaving.target(), "healthy", within).await;
    alb.stop().await;
}
