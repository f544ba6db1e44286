//! AWS's limits and status codes, and the load balancer's head attributes,
//! through the data plane (issue 25): each row of the table in
//! docs/data-plane.md ("Limits and status codes") is a row of `ROWS` here,
//! sent as raw bytes to a running data plane in front of a real echo
//! backend.

use std::time::{Duration, Instant};

use local_alb::{DataPlaneOptions, DesyncMode, HeadPolicy, XffMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common_dataplane::{
    Backend, RunningAlb, SilentBackend, one_group_state, quick_options, raw_exchange, wait_until,
};

/// One answer: status, head lines (lowercase), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(raw: &str) -> Answer {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let status = head
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    /// The echo backend's description of the request it got.
    fn echo(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.echo()["headers"][name].as_str().map(str::to_owned)
    }
}

/// A head policy with one change from AWS's defaults.
fn with(change: fn(&mut HeadPolicy)) -> DataPlaneOptions {
    let mut options = quick_options();
    change(&mut options.head);
    options
}

fn defaults() -> DataPlaneOptions {
    quick_options()
}

fn get_with(headers: &str) -> Vec<u8> {
    format!("GET /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n{headers}\r\n")
        .into_bytes()
}

fn addresses(count: usize) -> String {
    (1..=count)
        .map(|n| format!("10.0.0.{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row of docs/data-plane.md's table: what is sent, under which policy,
/// and what the client (and the target) see.
struct Row {
    /// The docs row it stands for.
    name: &'static str,
    options: fn() -> DataPlaneOptions,
    request: fn() -> Vec<u8>,
    status: u16,
    check: fn(&Answer),
}

fn nothing(_: &Answer) {}

const ROWS: &[Row] = &[
    Row {
        name: "request line over 16K: 414",
        options: defaults,
        request: || {
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(17 * 1024)).into_bytes()
        },
        status: 414,
        check: nothing,
    },
    Row {
        name: "request line of 16K passes",
        options: defaults,
        request: || {
            format!(
                "GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                "a".repeat(16 * 1024 - 15)
            )
            .into_bytes()
        },
        status: 200,
        check: nothing,
    },
    Row {
        name: "single header over 16K: 400",
        options: defaults,
        request: || get_with(&format!("X-Big: {}\r\n", "b".repeat(17 * 1024))),
        status: 400,
        check: nothing,
    },
    Row {
        name: "whole head over 64K: 400",
        options: defaults,
        request: || get_with(&format!("X-Big: {}\r\n", "b".repeat(15 * 1024)).repeat(5)),
        status: 400,
        check: nothing,
    },
    Row {
        name: "no header-count limit: 100 headers of 100 bytes",
        options: defaults,
        request: || {
            let lines: String = (0..100)
                .map(|n| format!("X-H{n:03}: {}\r\n", "v".repeat(93)))
                .collect();
            get_with(&lines)
        },
        status: 200,
        check: |answer| assert_eq!(answer.header("x-h099").map(|v| v.len()), Some(93)),
    },
    Row {
        name: "HTTP/1.0 without Host: served, Host is the load balancer's DNS name",
        options: defaults,
        request: || b"GET /echo HTTP/1.0\r\n\r\n".to_vec(),
        status: 200,
        check: |answer| assert_eq!(answer.header("host").as_deref(), Some("test.elb.localhost")),
    },
    Row {
        name: "TRACE: 405 from the load balancer",
        options: defaults,
        request: || b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        status: 405,
        check: |answer| assert!(answer.echo().is_null(), "not forwarded: {}", answer.body),
    },
    Row {
        name: "X-Forwarded-For of 30 addresses: forwarded, the client appended",
        options: defaults,
        request: || get_with(&format!("X-Forwarded-For: {}\r\n", addresses(30))),
        status: 200,
        check: |answer| {
            let xff = answer.header("x-forwarded-for").unwrap();
            assert_eq!(xff, format!("{}, 127.0.0.1", addresses(30)));
        },
    },
    Row {
        name: "X-Forwarded-For over 30 addresses: 463",
        options: defaults,
        request: || get_with(&format!("X-Forwarded-For: {}\r\n", addresses(31))),
        status: 463,
        check: nothing,
    },
    Row {
        name: "xff_header_processing.mode=preserve",
        options: || with(|p| p.xff = XffMode::Preserve),
        request: || get_with("X-Forwarded-For: 192.0.2.1\r\n"),
        status: 200,
        check: |answer| {
            assert_eq!(
                answer.header("x-forwarded-for").as_deref(),
                Some("192.0.2.1")
            )
        },
    },
    Row {
        name: "xff_header_processing.mode=remove",
        options: || with(|p| p.xff = XffMode::Remove),
        request: || get_with("X-Forwarded-For: 192.0.2.1\r\n"),
        status: 200,
        check: |answer| assert_eq!(answer.header("x-forwarded-for"), None),
    },
    Row {
        name: "drop_invalid_header_fields=false: X_Under forwarded",
        options: defaults,
        request: || get_with("X_Under: 1\r\nX-Ok: 2\r\n"),
        status: 200,
        check: |answer| assert_eq!(answer.header("x_under").as_deref(), Some("1")),
    },
    Row {
        name: "drop_invalid_header_fields=true: X_Under dropped",
        options: || with(|p| p.drop_invalid_header_fields = true),
        request: || get_with("X_Under: 1\r\nX-Ok: 2\r\n"),
        status: 200,
        check: |answer| {
            assert_eq!(answer.header("x_under"), None);
            assert_eq!(answer.header("x-ok").as_deref(), Some("2"));
        },
    },
    Row {
        name: "desync defensive: ambiguous (Content-Length and Transfer-Encoding) forwarded, then closed",
        options: defaults,
        request: || {
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\n"
                .to_vec()
        },
        status: 200,
        check: |answer| {
            assert!(answer.head.contains("connection: close"), "{}", answer.head);
            assert_eq!(answer.echo()["body"], "abc");
        },
    },
    Row {
        name: "desync defensive: severe (two Transfer-Encoding: chunked) 400",
        options: defaults,
        request: || {
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec()
        },
        status: 400,
        check: nothing,
    },
    Row {
        name: "desync defensive: acceptable (bare LF line endings) forwarded",
        options: defaults,
        request: || b"GET /echo HTTP/1.1\nHost: a\nConnection: close\n\n".to_vec(),
        status: 200,
        check: nothing,
    },
    Row {
        name: "desync strictest: acceptable refused with 400",
        options: || with(|p| p.desync_mitigation = DesyncMode::Strictest),
        request: || b"GET /echo HTTP/1.1\nHost: a\nConnection: close\n\n".to_vec(),
        status: 400,
        check: nothing,
    },
    Row {
        name: "desync strictest: ambiguous refused with 400",
        options: || with(|p| p.desync_mitigation = DesyncMode::Strictest),
        request: || get_with("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"),
        status: 400,
        check: nothing,
    },
    Row {
        name: "desync monitor: ambiguous forwarded, connection kept",
        options: || with(|p| p.desync_mitigation = DesyncMode::Monitor),
        request: || {
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                .to_vec()
        },
        status: 200,
        check: |answer| {
            assert!(
                !answer.head.contains("connection: close"),
                "{}",
                answer.head
            );
            assert!(
                answer.body.contains("/second"),
                "two answers: {}",
                answer.body
            );
        },
    },
    Row {
        name: "Host on a listener on port 80: as it came",
        options: defaults,
        request: || get_with(""),
        status: 200,
        check: |answer| assert_eq!(answer.header("host").as_deref(), Some("app.test")),
    },
];

/// Every row of the docs' table, each through its own data plane.
#[tokio::test]
async fn each_documented_limit_and_status_holds_through_the_data_plane() {
    let backend = Backend::start("echo").await;
    let state = one_group_state("echo", &backend);
    for row in ROWS {
        let alb = RunningAlb::start(&state, (row.options)()).await;
        let answer = Answer::parse(&raw_exchange(alb.addr, &(row.request)()).await);
        assert_eq!(answer.status, row.status, "{}: {}", row.name, answer.head);
        (row.check)(&answer);
        alb.stop().await;
    }
}

/// `routing.http.preserve_host_header.enabled`: off (AWS's default), a
/// `Host` without a port gets the listener's port when it is not 80; on, it
/// goes as it came.
#[tokio::test]
async fn the_host_header_gets_the_listener_port_unless_preserved() {
    let backend = Backend::start("echo").await;
    let mut state = one_group_state("echo", &backend);
    state.listeners[0].port = 8080;
    for (preserve, request, expected) in [
        (false, "app.test", "app.test:8080"),
        (false, "app.test:9000", "app.test:9000"),
        (true, "app.test", "app.test"),
    ] {
        let mut options = quick_options();
        options.head.preserve_host_header = preserve;
        let alb = RunningAlb::start(&state, options).await;
        let sent = format!("GET /echo HTTP/1.1\r\nHost: {request}\r\nConnection: close\r\n\r\n");
        let answer = Answer::parse(&raw_exchange(alb.addr, sent.as_bytes()).await);
        assert_eq!(
            answer.header("host").as_deref(),
            Some(expected),
            "{preserve} {request}"
        );
        alb.stop().await;
    }
}

/// An attribute set explicitly to AWS's default wins over the process's
/// default for it (`DataPlaneOptions::head`, which the `LOCAL_ALB_*`
/// settings fill): the model tells "set to AWS's default" from "unset".
#[tokio::test]
async fn an_attribute_set_to_aws_default_wins_over_the_process_default() {
    let backend = Backend::start("echo").await;
    let mut state = one_group_state("echo", &backend);
    state.listeners[0].port = 8080;
    let attributes = &mut state.load_balancers[0].attributes;
    attributes.xff_header_processing_mode = Some(XffMode::Append);
    attributes.drop_invalid_header_fields = Some(false);
    attributes.preserve_host_header = Some(false);
    let options = with(|p| {
        p.xff = XffMode::Remove;
        p.drop_invalid_header_fields = true;
        p.preserve_host_header = true;
    });
    let alb = RunningAlb::start(&state, options).await;
    let answer = Answer::parse(
        &raw_exchange(
            alb.addr,
            &get_with("X-Forwarded-For: 192.0.2.1\r\nX_Under: 1\r\n"),
        )
        .await,
    );
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(
        answer.header("x-forwarded-for").as_deref(),
        Some("192.0.2.1, 127.0.0.1")
    );
    assert_eq!(answer.header("x_under").as_deref(), Some("1"));
    assert_eq!(answer.header("host").as_deref(), Some("app.test:8080"));
    alb.stop().await;
}

/// The idle timeout restarts with each byte: a request trickled a byte at a
/// time over longer than the timeout is served; a silent half request gets
/// 408 soon after the timeout.
#[tokio::test]
async fn the_idle_timeout_restarts_with_each_byte_and_a_stalled_request_gets_408() {
    let backend = Backend::start("echo").await;
    let options = with(|p| p.idle_timeout = Duration::from_secs(1));
    let alb = RunningAlb::start(&one_group_state("echo", &backend), options).await;
    let silent = async {
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(alb.addr).await.unwrap();
        stream.write_all(b"GET /echo HTTP/1.1\r\nHo").await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(4), stream.read_to_end(&mut answer)).await;
        (
            Answer::parse(&String::from_utf8_lossy(&answer)),
            started.elapsed(),
        )
    };
    let trickled = async {
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(alb.addr).await.unwrap();
        let request = b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let (slow, rest) = request.split_at(6);
        for byte in slow {
            stream.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        stream.write_all(rest).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(4), stream.read_to_end(&mut answer)).await;
        (
            Answer::parse(&String::from_utf8_lossy(&answer)),
            started.elapsed(),
        )
    };
    let ((silent, silent_after), (trickled, trickled_over)) = tokio::join!(silent, trickled);
    assert_eq!(silent.status, 408, "{}", silent.head);
    assert!(
        silent_after < Duration::from_secs(2),
        "408 after {silent_after:?}"
    );
    assert_eq!(trickled.status, 200, "{}", trickled.head);
    assert!(
        trickled_over > Duration::from_secs(2),
        "trickled for {trickled_over:?}"
    );
    alb.stop().await;
}

/// A client that closes before its answer is counted as 460 in /metrics
/// (and in HTTPCode_ELB_4XX_Count: `cloudwatch::a_client_that_leaves_counts_as_460`).
#[tokio::test]
async fn a_client_that_leaves_before_its_answer_is_counted_as_460() {
    let silent = SilentBackend::start().await;
    let state = crate::common_dataplane::StateBuilder::new()
        .target_group(
            "silent",
            vec![silent.target()],
            crate::common_dataplane::health_check(30, 5),
        )
        .rule(
            local_alb::model::Priority::Default,
            vec![],
            crate::common_dataplane::forward("silent"),
        )
        .build();
    let mut options = quick_options();
    options.target_timeout = Duration::from_secs(30);
    let alb = RunningAlb::start(&state, options).await;
    let mut stream = tokio::net::TcpStream::connect(alb.addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // Sent and on its way to the target: then the client leaves.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    let plane = alb.plane.clone();
    wait_until("460 counted", Duration::from_secs(5), || {
        plane
            .render_metrics()
            .contains("ficus_alb_elb_errors_total{code=\"460\",reason=\"client_closed\"} 1")
    })
    .await;
    assert!(
        plane
            .render_metrics()
            .contains("ficus_alb_requests_total{target_group=\"silent\",rule=\"default\",code_class=\"4xx\"} 1"),
        "{}",
        plane.render_metrics()
    );
    alb.stop().await;
}

/// Sockets to `port` on 127.0.0.1 in CLOSE_WAIT (the peer closed, we have
/// not), from /proc/net/tcp.
fn close_wait_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"08")
        })
        .count()
}

/// Idle target connections that their target closes leave the pool at once
/// (within the sweep's quarter second), instead of sitting in CLOSE_WAIT
/// until the next request to that target.
#[tokio::test]
async fn idle_target_connections_closed_by_the_target_do_not_linger() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let closed = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&closed);
    let target = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counting = Arc::clone(&counting);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(read @ 1..) => head.extend_from_slice(&buffer[..read]),
                        _ => return,
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Keep-alive, as far as the load balancer knows; then closed.
                tokio::time::sleep(Duration::from_millis(300)).await;
                drop(stream);
                counting.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let state = crate::common_dataplane::StateBuilder::new()
        .target_group(
            "closing",
            vec![local_alb::model::Target {
                id: "127.0.0.1".to_owned(),
                port,
            }],
            crate::common_dataplane::health_check(30, 5),
        )
        .rule(
            local_alb::model::Priority::Default,
            vec![],
            crate::common_dataplane::forward("closing"),
        )
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    // Eight at once: eight target connections, all pooled afterwards.
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let address = alb.addr;
        requests.spawn(async move {
            let answer = raw_exchange(
                address,
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            .await;
            Answer::parse(&answer).status
        });
    }
    let statuses = requests.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let seen = Arc::clone(&closed);
    wait_until(
        "the target closed its connections",
        Duration::from_secs(5),
        || seen.load(Ordering::SeqCst) >= 8,
    )
    .await;
    wait_until(
        "no target connection left in CLOSE_WAIT",
        Duration::from_secs(2),
        || close_wait_to(port) == 0,
    )
    .await;
    alb.stop().await;
    target.abort();
}

/// The rows that apply to HTTP/2 heads hold for h2c clients too: TRACE gets
/// 405, more than 30 `X-Forwarded-For` addresses 463, and the
/// `X-Forwarded-For` mode and invalid header names are applied.
#[tokio::test]
async fn http2_clients_get_the_same_refusals_and_header_policy() {
    let backend = Backend::start("echo").await;
    let options = with(|p| {
        p.xff = XffMode::Remove;
        p.drop_invalid_header_fields = true;
    });
    let alb = RunningAlb::start(&one_group_state("echo", &backend), options).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let trace = h2
        .request(reqwest::Method::TRACE, alb.url("/echo"))
        .send()
        .await
        .expect("h2 TRACE");
    assert_eq!(trace.status(), 405);
    let crowded = h2
        .get(alb.url("/echo"))
        .header("x-forwarded-for", addresses(31))
        .send()
        .await
        .expect("h2 GET");
    assert_eq!(crowded.status().as_u16(), 463);
    let seen: serde_json::Value = h2
        .get(alb.url("/echo"))
        .header("x-forwarded-for", "192.0.2.1")
        .header("x_under", "1")
        .send()
        .await
        .expect("h2 GET")
        .json()
        .await
        .expect("echo");
    assert!(seen["headers"].get("x-forwarded-for").is_none(), "{seen}");
    assert!(seen["headers"].get("x_under").is_none(), "{seen}");
    alb.stop().await;
}
