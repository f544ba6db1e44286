//! Routing real HTTP traffic through a running data plane to real backends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common_dataplane::*;
use local_alb::DataPlaneOptions;
use local_alb::model::{ActionKind, Priority};

/// The forum's deployment: monolith behind `/api*` at 99 and the default
/// rule, the users service's `/api/users*` rule at `users_priority`.
fn forum_state(
    monolith: &Backend,
    users: &Backend,
    users_priority: u32,
) -> local_alb::model::State {
    StateBuilder::new()
        .target_group("monolith", vec![monolith.target()], health_check(30, 5))
        .target_group("users", vec![users.target()], health_check(30, 5))
        .rule(
            Priority::Number(99),
            path_pattern(&["/api*"]),
            forward("monolith"),
        )
        .rule(
            Priority::Number(users_priority),
            path_pattern(&["/api/users*"]),
            forward("users"),
        )
        .rule(Priority::Default, vec![], forward("monolith"))
        .build()
}

#[tokio::test]
async fn moving_a_rule_in_front_of_99_and_back_moves_its_paths() {
    let monolith = Backend::start("monolith").await;
    let users = Backend::start("users").await;
    let mut state = forum_state(&monolith, &users, 101);
    let alb = RunningAlb::start(&state, quick_options()).await;
    let client = client();

    for path in ["/api/users", "/api/users/1", "/api/threads", "/"] {
        assert_eq!(
            backend_of(&client, &alb.url(path)).await,
            (200, "monolith".into()),
            "{path}"
        );
    }

    move_rule(&mut state, "/api/users*", 1);
    alb.plane.publish(&state);
    assert_eq!(
        backend_of(&client, &alb.url("/api/users")).await,
        (200, "users".into())
    );
    assert_eq!(
        backend_of(&client, &alb.url("/api/users/2?x=1")).await,
        (200, "users".into())
    );
    assert_eq!(
        backend_of(&client, &alb.url("/api/threads")).await,
        (200, "monolith".into())
    );
    assert_eq!(
        backend_of(&client, &alb.url("/API/USERS")).await,
        (200, "monolith".into()),
        "path patterns are case-sensitive"
    );

    move_rule(&mut state, "/api/users*", 100);
    alb.plane.publish(&state);
    assert_eq!(
        backend_of(&client, &alb.url("/api/users")).await,
        (200, "monolith".into())
    );

    let metrics = alb.plane.render_metrics();
    assert!(
        metrics.contains(
            r#"ficus_alb_requests_total{target_group="users",rule="1",code_class="2xx"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"ficus_alb_requests_total{target_group="monolith",rule="99",code_class="2xx"} 5"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"ficus_alb_requests_total{target_group="monolith",rule="default",code_class="2xx"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("ficus_alb_rule_table_generation 3"),
        "{metrics}"
    );
    alb.stop().await;
}

#[tokio::test]
async fn weights_split_traffic_in_proportion_and_weight_zero_gets_nothing() {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let idle = Backend::start("idle").await;
    let state = StateBuilder::new()
        .target_group("blue", vec![blue.target()], health_check(30, 5))
        .target_group("green", vec![green.target()], health_check(30, 5))
        .target_group("idle", vec![idle.target()], health_check(30, 5))
        .rule(
            Priority::Default,
            vec![],
            forward_weighted(&[("blue", 30), ("green", 70), ("idle", 0)]),
        )
        .build();
    // quick_options' 500 ms target timeout is for the tests of timeouts; a
    // loaded machine can take longer than that to answer.
    let options = DataPlaneOptions {
        target_timeout: Duration::from_secs(10),
        ..quick_options()
    };
    let alb = RunningAlb::start(&state, options).await;
    let client = client();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for sent in 0..1000 {
        let (status, backend) = backend_of(&client, &alb.url("/api/posts")).await;
        assert_eq!(
            status, 200,
            "request {sent} (from {backend:?}); so far {counts:?}"
        );
        *counts.entry(backend).or_default() += 1;
    }
    let blue_share = counts.get("blue").copied().unwrap_or(0);
    let green_share = counts.get("green").copied().unwrap_or(0);
    assert!(
        (240..=360).contains(&blue_share),
        "blue got {blue_share} of 1000: {counts:?}"
    );
    assert!(
        (640..=760).contains(&green_share),
        "green got {green_share} of 1000: {counts:?}"
    );
    assert_eq!(
        counts.get("idle"),
        None,
        "weight 0 must get nothing: {counts:?}"
    );
    alb.stop().await;
}

#[tokio::test]
async fn round_robin_spreads_requests_over_targets() {
    let first = Backend::start("first").await;
    let second = Backend::start("second").await;
    let state = StateBuilder::new()
        .target_group(
            "pair",
            vec![first.target(), second.target()],
            health_check(30, 5),
        )
        .rule(Priority::Default, vec![], forward("pair"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let client = client();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        *counts
            .entry(backend_of(&client, &alb.url("/")).await.1)
            .or_default() += 1;
    }
    assert_eq!(counts.get("first"), Some(&50), "{counts:?}");
    assert_eq!(counts.get("second"), Some(&50), "{counts:?}");
    alb.stop().await;
}

#[tokio::test]
async fn fixed_responses_and_redirects_are_answered_by_the_load_balancer() {
    let state = StateBuilder::new()
        .rule(
            Priority::Number(1),
            path_pattern(&["/maintenance*"]),
            ActionKind::FixedResponse {
                status_code: "503".to_owned(),
                content_type: Some("application/json".to_owned()),
                message_body: Some(r#"{"message":"down for maintenance"}"#.to_owned()),
            },
        )
        .rule(
            Priority::Number(2),
            path_pattern(&["/old/*"]),
            ActionKind::Redirect {
                protocol: Some("HTTPS".to_owned()),
                host: Some("forum.example.com".to_owned()),
                port: Some("443".to_owned()),
                path: Some("/new/#{path}".to_owned()),
                query: None,
                status_code: "HTTP_301".to_owned(),
            },
        )
        .rule(
            Priority::Default,
            vec![],
            ActionKind::Redirect {
                protocol: None,
                host: None,
                port: None,
                path: None,
                query: None,
                status_code: "HTTP_302".to_owned(),
            },
        )
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let client = client();

    let response = client
        .get(alb.url("/maintenance"))
        .send()
        .await
        .expect("fixed");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["server"], "awselb/2.0");
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"message":"down for maintenance"}"#
    );

    let response = client
        .get(alb.url("/old/page?id=7"))
        .send()
        .await
        .expect("redirect");
    assert_eq!(response.status(), 301);
    assert_eq!(
        response.headers()["location"],
        "https://forum.example.com/new/old/page?id=7"
    );

    let response = client
        .get(alb.url("/somewhere?q=1"))
        .header("host", "forum.test:8080")
        .send()
        .await
        .expect("default redirect");
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "http://forum.test/somewhere?q=1"
    );
    alb.stop().await;
}

#[tokio::test]
async fn failures_get_alb_error_pages() {
    let silent = SilentBackend::start().await;
    let state = StateBuilder::new()
        .target_group("empty", vec![], health_check(30, 5))
        .target_group("refusing", vec![closed_port_target()], health_check(30, 5))
        .target_group("silent", vec![silent.target()], health_check(30, 5))
        .rule(
            Priority::Number(1),
            path_pattern(&["/empty*"]),
            forward("empty"),
        )
        .rule(
            Priority::Number(2),
            path_pattern(&["/refused*"]),
            forward("refusing"),
        )
        .rule(
            Priority::Number(3),
            path_pattern(&["/silent*"]),
            forward("silent"),
        )
        .rule(Priority::Default, vec![], forward("empty"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let client = client();
    for (path, status, title) in [
        ("/empty", 503, "503 Service Unavailable"),
        ("/refused", 502, "502 Bad Gateway"),
        ("/silent", 504, "504 Gateway Timeout"),
    ] {
        let started = std::time::Instant::now();
        let response = client.get(alb.url(path)).send().await.expect("request");
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(response.headers()["server"], "awselb/2.0", "{path}");
        assert_eq!(response.headers()["content-type"], "text/html", "{path}");
        let body = response.text().await.expect("body");
        assert!(
            body.starts_with(&format!("<html>\r\n<head><title>{title}</title></head>")),
            "{path}: {body}"
        );
        if status == 504 {
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
                "504 after {waited:?}, the target timeout is 500 ms"
            );
        }
    }
    let metrics = alb.plane.render_metrics();
    for line in [
        r#"ficus_alb_elb_errors_total{code="503",reason="no_registered_targets"} 1"#,
        r#"ficus_alb_elb_errors_total{code="502",reason="target_connection_failed"} 1"#,
        r#"ficus_alb_elb_errors_total{code="504",reason="target_timeout"} 1"#,
        r#"ficus_alb_requests_total{target_group="silent",rule="3",code_class="5xx"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    alb.stop().await;
}

#[tokio::test]
async fn requests_arrive_with_forwarded_headers_and_intact() {
    let backend = Backend::start("echo").await;
    let state = one_group_state("echo", &backend);
    let alb = RunningAlb::start(&state, quick_options()).await;
    let client = client();

    let response = client
        .post(alb.url("/api/posts/in-thread/1?sort=asc&x=%20y"))
        .header("host", "forum.example.com")
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "removed")
        .body("a body that is streamed through")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("keep-alive"),
        None,
        "hop-by-hop response header"
    );
    let seen: serde_json::Value = response.json().await.expect("json");
    let header = |name: &str| seen["headers"][name].as_str().map(str::to_owned);
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/api/posts/in-thread/1?sort=asc&x=%20y");
    assert_eq!(seen["body"], "a body that is streamed through");
    assert_eq!(header("host").as_deref(), Some("forum.example.com"));
    assert_eq!(
        header("x-forwarded-for").as_deref(),
        Some("198.51.100.1, 127.0.0.1")
    );
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(header("x-forwarded-port").as_deref(), Some("80"));
    assert_eq!(header("x-custom").as_deref(), Some("kept"));
    assert_eq!(
        header("x-hop"),
        None,
        "headers named in Connection are hop-by-hop"
    );
    let trace = header("x-amzn-trace-id").expect("trace id");
    assert!(
        trace.starts_with("Root=1-") && trace.len() == "Root=1-".len() + 8 + 1 + 24,
        "{trace}"
    );

    let response = client
        .head(alb.url("/"))
        .header(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        )
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_some());
    assert_eq!(
        response.bytes().await.expect("empty").len(),
        0,
        "HEAD has no body"
    );

    let response = client
        .get(alb.url("/"))
        .header(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        )
        .send()
        .await
        .expect("traced");
    let seen: serde_json::Value = response.json().await.expect("json");
    let trace = seen["headers"]["x-amzn-trace-id"].as_str().expect("trace");
    assert!(
        trace.starts_with("Self=1-")
            && trace.ends_with(";Root=1-5759e988-bd862e3fe1be46a994272793"),
        "{trace}"
    );
    alb.stop().await;
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let backend = Backend::start("echo").await;
    let state = one_group_state("echo", &backend);
    let alb = RunningAlb::start(&state, quick_options()).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let response = h2
        .get(alb.url("/api?x=1"))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let seen: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        seen["version"], "HTTP/1.1",
        "targets are spoken to in HTTP/1.1"
    );
    assert_eq!(seen["uri"], "/api?x=1");
    assert_eq!(seen["headers"]["host"], alb.addr.to_string());
    alb.stop().await;
}

/// HTTP/2 and HTTP/1.1 clients meet one hop-by-hop policy (RFC 9110
/// §7.6.1): `TE` stays on the client's hop, `Trailer` is end-to-end and
/// reaches the target.
#[tokio::test]
async fn http2_requests_keep_trailer_and_drop_te() {
    let backend = Backend::start("echo").await;
    let state = one_group_state("echo", &backend);
    let alb = RunningAlb::start(&state, quick_options()).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let response = h2
        .get(alb.url("/api"))
        .header("trailer", "X-Checksum")
        .header("te", "trailers")
        .send()
        .await
        .expect("h2 request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let seen: serde_json::Value = response.json().await.expect("json");
    assert_eq!(seen["headers"]["trailer"], "X-Checksum", "{seen}");
    assert!(seen["headers"].get("te").is_none(), "{seen}");
    alb.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_requests_are_rejected_without_harm() {
    let backend = Backend::start("echo").await;
    let state = one_group_state("echo", &backend);
    let alb = RunningAlb::start(&state, quick_options()).await;

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(80 * 1024)
    );
    let answer = raw_exchange(alb.addr, huge.as_bytes()).await;
    // AWS: 400 for a header over 16K or a head over 64K (dataplane_limits).
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let answer = raw_exchange(alb.addr, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let answer = raw_exchange(
        alb.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "still serving: {answer}"
    );
    alb.stop().await;
}

/// A local ALB forwarding everything to one echo backend, closing idle client
/// connections after 500 ms. Keep the backend alive as long as the ALB.
async fn alb_with_short_client_idle_timeout() -> (Backend, RunningAlb) {
    let backend = Backend::start("echo").await;
    let state = one_group_state("echo", &backend);
    let mut options = quick_options();
    options.head.idle_timeout = Duration::from_millis(500);
    let alb = RunningAlb::start(&state, options).await;
    (backend, alb)
}

#[tokio::test]
async fn idle_client_connections_are_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_backend, alb) = alb_with_short_client_idle_timeout().await;
    let mut stream = tokio::net::TcpStream::connect(alb.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    alb.stop().await;
}

/// A client that connects and never sends a byte is closed after the idle
/// timeout too (otherwise idle sockets could pile up without bound).
#[tokio::test]
async fn silent_client_connections_are_closed_after_the_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let (_backend, alb) = alb_with_short_client_idle_timeout().await;
    let mut stream = tokio::net::TcpStream::connect(alb.addr)
        .await
        .expect("connect");
    let mut buffer = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was not closed: {closed:?}"
    );
    alb.stop().await;
}

// A head trickled in, each byte within the idle timeout, is served as on
// AWS, whose idle timer restarts with each byte: see
// `dataplane_limits::the_idle_timeout_restarts_with_each_byte_and_a_stalled_request_gets_408`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_tables_are_republished() {
    let monolith = Backend::start("monolith").await;
    let users = Backend::start("users").await;
    let mut state = forum_state(&monolith, &users, 101);
    // A backend slowed by a loaded machine is not what this test is about:
    // the target timeout is long enough that only a lost request fails.
    let options = DataPlaneOptions {
        target_timeout: Duration::from_secs(5),
        ..quick_options()
    };
    let alb = Arc::new(RunningAlb::start(&state, options).await);
    let client = client();

    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (alb, publishing) = (Arc::clone(&alb), Arc::clone(&publishing));
        tokio::spawn(async move {
            let mut published = 0u32;
            while publishing.load(Ordering::Relaxed) {
                let priority = if published.is_multiple_of(2) { 1 } else { 101 };
                move_rule(&mut state, "/api/users*", priority);
                alb.plane.publish(&state);
                published += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            published
        })
    };
    let workers: Vec<_> = (0..16)
        .map(|worker| {
            let (client, url) = (
                client.clone(),
                alb.url(if worker % 2 == 0 {
                    "/api/users"
                } else {
                    "/api/threads"
                }),
            );
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for _ in 0..150 {
                    let (status, backend) = backend_of(&client, &url).await;
                    if status != 200 || backend.is_empty() {
                        failures.push((status, backend));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.expect("worker"));
    }
    publishing.store(false, Ordering::Relaxed);
    let published = publisher.await.expect("publisher");
    assert!(
        failures.is_empty(),
        "{} of 2400 requests failed: {failures:?}",
        failures.len()
    );
    assert!(
        published >= 100,
        "only {published} tables were published during the load"
    );
    let metrics = alb.plane.render_metrics();
    assert!(
        metrics.contains(r#"reason="target_connection_error"} 0"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_repository_stack_file_routes_everything_to_the_monolith() {
    let monolith = Backend::start("monolith").await;
    // The repository's stack file, its monolith's target moved to the backend.
    let text = std::fs::read_to_string(crate::common::stack_path()).expect("read the stack file");
    let mut stack: toml::Table = toml::from_str(&text).expect("the stack file is TOML");
    let groups = stack["target_groups"]
        .as_array_mut()
        .expect("the stack file has [[target_groups]]");
    for group in groups
        .iter_mut()
        .filter(|group| group["name"].as_str() == Some("monolith"))
    {
        group["targets"] = toml::Value::Array(vec![monolith.addr.to_string().into()]);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stack_file = dir.path().join("stack.toml");
    std::fs::write(&stack_file, stack.to_string()).expect("write the stack file");
    let mut settings = local_alb::settings::Settings::on_free_ports(dir.path().join("state"));
    settings.stack = Some(stack_file);
    let alb = crate::common::RunningAlb::start_with(settings).await;
    let client = client();
    for path in ["/", "/api", "/api/users/1", "/api/posts/by-user/2"] {
        assert_eq!(
            backend_of(&client, &format!("{}{path}", alb.data_url)).await,
            (200, "monolith".into()),
            "{path}"
        );
    }
    let metrics = client
        .get(format!("{}/metrics", alb.control_url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics");
    let requests = alb::metrics::requests_by_target_group_and_rule(&alb::metrics::parse(&metrics));
    assert_eq!(
        requests.get(&("monolith".to_owned(), "99".to_owned())),
        Some(&3),
        "{metrics}"
    );
    alb.stop().await;
}

#[tokio::test]
async fn target_connections_are_kept_alive_and_reused() {
    let backend = Backend::start("kept").await;
    let state = one_group_state("kept", &backend);
    let options = local_alb::DataPlaneOptions {
        worker_threads: 2,
        ..quick_options()
    };
    let alb = RunningAlb::start(&state, options).await;
    // The first health check (a connection of its own) comes at once; the
    // next one only after 30 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while backend.requests.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "no health check came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probes = backend.connections.load(Ordering::Relaxed);
    // Sequential requests on several client connections (so both workers
    // serve some), GET and HEAD, each answered in full.
    for round in 0..4 {
        let client = client();
        for index in 0..50 {
            let url = alb.url(&format!("/round/{round}/{index}"));
            let response = if index % 5 == 0 {
                client.head(&url).send().await.expect("HEAD")
            } else {
                client.get(&url).send().await.expect("GET")
            };
            assert_eq!(response.status(), 200);
            response.bytes().await.expect("body");
        }
    }
    let opened = backend.connections.load(Ordering::Relaxed) - probes;
    assert!(
        (1..=2).contains(&opened),
        "200 sequential requests opened {opened} connections to the target; expected one per worker thread at most"
    );
    alb.stop().await;
}

#[tokio::test]
async fn a_request_that_cannot_connect_goes_to_another_target_and_the_target_turns_unhealthy() {
    let live = Backend::start("live").await;
    let spare = Backend::start("spare").await;
    let dead = closed_port_target();
    let state = StateBuilder::new()
        .target_group(
            "pair",
            vec![dead.clone(), live.target()],
            health_check(30, 5),
        )
        .target_group("gone", vec![closed_port_target()], health_check(30, 5))
        .target_group("spare", vec![spare.target()], health_check(30, 5))
        .rule(
            Priority::Number(1),
            path_pattern(&["/split*"]),
            forward_weighted(&[("gone", 50), ("spare", 50)]),
        )
        .rule(Priority::Default, vec![], forward("pair"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let client = client();
    // Every request is answered: by the other target of the group, or, in a
    // weighted forward whose group cannot be reached, by the other group.
    for index in 0..40 {
        let (status, backend) = backend_of(&client, &alb.url(&format!("/pair/{index}"))).await;
        assert_eq!((status, backend.as_str()), (200, "live"), "request {index}");
        let (status, backend) = backend_of(&client, &alb.url(&format!("/split/{index}"))).await;
        assert_eq!(
            (status, backend.as_str()),
            (200, "spare"),
            "request {index}"
        );
    }
    let health = alb.plane.target_health(&tg_arn("pair"), &dead);
    assert_eq!(health.state, "unhealthy", "{health:?}");
    assert_eq!(
        health.reason.as_deref(),
        Some("Target.FailedHealthChecks"),
        "{health:?}"
    );
    let metrics = alb.plane.render_metrics();
    let samples = alb::metrics::parse(&metrics);
    let retries = alb::metrics::single(&samples, alb::metrics::TARGET_CONNECT_RETRIES_TOTAL)
        .unwrap_or_else(|| panic!("no retry counter in\n{metrics}"));
    assert!(retries >= 2, "{retries} retries\n{metrics}");
    assert_eq!(
        alb::metrics::elb_errors_by_reason(&samples).get("502 target_connection_failed"),
        Some(&0),
        "no request may have failed\n{metrics}"
    );
    alb.stop().await;
}

#[tokio::test]
async fn a_target_that_closes_new_connections_gets_a_502_not_a_retry_loop() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    let closer = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    let closing = local_alb::model::Target {
        id: "127.0.0.1".to_owned(),
        port,
    };
    let state = StateBuilder::new()
        .target_group("closing", vec![closing.clone()], health_check(30, 5))
        .rule(Priority::Default, vec![], forward("closing"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let client = client();
    // A 502, not a 504 after the 500 ms target timeout spent reconnecting.
    let (status, _) = backend_of(&client, &alb.url("/")).await;
    assert_eq!(status, 502);
    // One connection for the request, one for the first health check.
    let connections = accepted.load(Ordering::Relaxed);
    assert!(
        connections <= 2,
        "{connections} connections for one request"
    );
    alb.stop().await;
    closer.abort();
}

/// A target that answers the first request on each connection (keeping it
/// open) and closes the connection on the second without answering: what a
/// target timing out an idle keep-alive connection looks like to a request
/// sent on it at that moment.
async fn target_dropping_second_requests() -> (local_alb::model::Target, tokio::task::JoinHandle<()>)
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                let mut answered = false;
                loop {
                    let Ok(read @ 1..) = stream.read(&mut buffer).await else {
                        return;
                    };
                    seen.extend_from_slice(&buffer[..read]);
                    // Heads only matter here (bodies are a few bytes and
                    // arrive with their head).
                    if !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        continue;
                    }
                    if answered {
                        return; // the second request: close, no answer
                    }
                    answered = true;
                    seen.clear();
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    let target = local_alb::model::Target {
        id: "127.0.0.1".to_owned(),
        port,
    };
    (target, task)
}

/// A request sent on a pooled connection that the target closes without
/// answering is sent again on a new connection when its method is
/// idempotent (RFC 9110 §9.2.2), and gets a 502 otherwise.
#[tokio::test]
async fn only_idempotent_requests_are_resent_when_a_pooled_connection_was_closed_under_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (target, task) = target_dropping_second_requests().await;
    let state = StateBuilder::new()
        .target_group("dropping", vec![target], health_check(30, 5))
        .rule(Priority::Default, vec![], forward("dropping"))
        .build();
    let options = local_alb::DataPlaneOptions {
        worker_threads: 1,
        ..quick_options()
    };
    let alb = RunningAlb::start(&state, options).await;
    // One client connection, so one worker and one target connection pool.
    let mut stream = tokio::net::TcpStream::connect(alb.addr).await.unwrap();
    let mut exchange = async |request: &[u8]| {
        stream.write_all(request).await.expect("write");
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        // Each answer here is small: read until its body has arrived.
        while !(answer.ends_with(b"ok") || answer.ends_with(b"</html>\r\n")) {
            match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
                Ok(Ok(read @ 1..)) => answer.extend_from_slice(&buffer[..read]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    let first = exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Pooled now; the target drops the next request on it.
    let again = exchange(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        again.starts_with("HTTP/1.1 200"),
        "an idempotent request must be re-sent on a new connection: {again}"
    );
    let posted = exchange(b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi").await;
    assert!(
        posted.starts_with("HTTP/1.1 502"),
        "a POST must not be sent twice: {posted}"
    );
    alb.stop().await;
    task.abort();
}

/// A target answering `/` at once (health checks included) with
/// `x-backend: NAME`, and `/hold` only once `release` is notified; `held`
/// counts the `/hold` requests waiting.
async fn holding_backend(
    name: &'static str,
    release: Arc<tokio::sync::Notify>,
    held: Arc<std::sync::atomic::AtomicUsize>,
) -> local_alb::model::Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (release, held) = (Arc::clone(&release), Arc::clone(&held));
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let (release, held) = (Arc::clone(&release), Arc::clone(&held));
                async move {
                    if request.uri().path() == "/hold" {
                        held.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                    }
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("x-backend", name)
                            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    local_alb::model::Target {
        id: "127.0.0.1".to_owned(),
        port,
    }
}

#[tokio::test]
async fn least_outstanding_requests_sends_to_the_target_with_fewer_in_flight() {
    let release = Arc::new(tokio::sync::Notify::new());
    let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = holding_backend("a", Arc::clone(&release), Arc::clone(&held)).await;
    let b = holding_backend("b", Arc::clone(&release), Arc::clone(&held)).await;
    let mut state = StateBuilder::new()
        .target_group("pair", vec![a.clone(), b.clone()], health_check(1, 1))
        .rule(Priority::Default, vec![], forward("pair"))
        .build();
    state.target_groups[0].attributes.algorithm =
        local_alb::model::LoadBalancingAlgorithm::LeastOutstandingRequests;
    let options = local_alb::DataPlaneOptions {
        target_timeout: Duration::from_secs(10),
        ..quick_options()
    };
    let alb = RunningAlb::start(&state, options).await;
    for target in [&a, &b] {
        wait_for_health(
            &alb.plane,
            "pair",
            target,
            "healthy",
            Duration::from_secs(5),
        )
        .await;
    }
    let client = client();
    let hold = tokio::spawn({
        let (client, url) = (client.clone(), alb.url("/hold"));
        async move { backend_of(&client, &url).await.1 }
    });
    wait_until("a request held", Duration::from_secs(5), || {
        held.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..10 {
        *seen
            .entry(backend_of(&client, &alb.url("/")).await.1)
            .or_default() += 1;
    }
    release.notify_waiters();
    let holding = hold.await.unwrap();
    assert_eq!(seen.len(), 1, "all to the other target: {seen:?}");
    assert!(
        !seen.contains_key(&holding),
        "{holding} had one in flight: {seen:?}"
    );
    alb.stop().await;
}

#[tokio::test]
async fn slow_start_gives_a_newly_healthy_target_a_small_share_at_first() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let state = |targets: Vec<local_alb::model::Target>| {
        let mut state = StateBuilder::new()
            .target_group("pair", targets, health_check(1, 1))
            .rule(Priority::Default, vec![], forward("pair"))
            .build();
        state.target_groups[0].attributes.slow_start_seconds = 60;
        state
    };
    let alb = RunningAlb::start(&state(vec![old.target()]), quick_options()).await;
    wait_for_health(
        &alb.plane,
        "pair",
        &old.target(),
        "healthy",
        Duration::from_secs(5),
    )
    .await;
    alb.plane.publish(&state(vec![old.target(), new.target()]));
    wait_for_health(
        &alb.plane,
        "pair",
        &new.target(),
        "healthy",
        Duration::from_secs(5),
    )
    .await;
    let client = client();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        *seen
            .entry(backend_of(&client, &alb.url("/")).await.1)
            .or_default() += 1;
    }
    // Round robin would give it 20; within its first seconds of 60 its share
    // is a few percent.
    let to_new = seen.get("new").copied().unwrap_or(0);
    assert!(to_new <= 6, "{seen:?}");
    alb.stop().await;
}

#[tokio::test]
async fn weighted_random_does_not_take_targets_in_turn() {
    let first = Backend::start("first").await;
    let second = Backend::start("second").await;
    let mut state = StateBuilder::new()
        .target_group(
            "pair",
            vec![first.target(), second.target()],
            health_check(30, 5),
        )
        .rule(Priority::Default, vec![], forward("pair"))
        .build();
    state.target_groups[0].attributes.algorithm =
        local_alb::model::LoadBalancingAlgorithm::WeightedRandom;
    let alb = RunningAlb::start(&state, quick_options()).await;
    let client = client();
    let mut answers = Vec::new();
    for _ in 0..24 {
        answers.push(backend_of(&client, &alb.url("/")).await.1);
    }
    // Round robin alternates strictly; at random, two in a row is all but
    // certain in 24 (a strict alternation has a chance of 2^-23).
    assert!(answers.windows(2).any(|w| w[0] == w[1]), "{answers:?}");
    assert!(answers.iter().any(|a| a == "first") && answers.iter().any(|a| a == "second"));
    alb.stop().await;
}
