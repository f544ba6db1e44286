//! Metric gates (issue 15): bad settings exit 2 naming the key; on the local
//! stack, with client traffic through the load balancer, a faulty or slow
//! service fails its gate and is rolled back (exit 3), a route without
//! traffic is inconclusive and never passes, a healthy one passes.

use crate::support::*;

const BASE: &str = r#"
[aws]
endpoint_url = "http://127.0.0.1:1"
region = "us-east-1"
[listener]
load_balancer = "ficus-local"
port = 80
[routes.users]
paths = ["/api/users*"]
target_group = "users"
"#;

/// `history` loads and validates the settings and calls no AWS API.
fn history_with(extra: &str) -> Run {
    let op = Operator::new(&format!("{BASE}{extra}"), vec![]);
    op.run(&["history"])
}

#[test]
fn shift_help_teaches_the_metric_gates() {
    let help = Operator::new(BASE, vec![]).run(&["shift", "--help"]);
    assert_eq!(help.code, 0, "{help}");
    assert!(
        help.stdout
            .contains("The metric gates read the load balancer's CloudWatch metrics")
            && help.stdout.contains("docs/gates.md"),
        "{help}"
    );
}

#[test]
fn bad_metric_settings_exit_2_naming_the_key() {
    let ok = history_with("[metrics]\nperiod = \"1s\"\n[routes.users.metrics]\nmin_requests = 5\n");
    assert_eq!(ok.code, 0, "{ok}");
    for (extra, named) in [
        (
            "[routes.users.metrics]\nerror_budgt = 0.02\n",
            "error_budgt",
        ),
        ("[metrics]\nthreshold = 1\n", "threshold"),
        (
            "[metrics]\nperiod = \"7s\"\n",
            "`metrics.period`: 7s is not a CloudWatch period",
        ),
        (
            "[routes.users.metrics]\nperiod = \"90s\"\n",
            "`routes.users.metrics.period`",
        ),
        (
            "[metrics]\nmin_requests = 0\n",
            "`metrics.min_requests`: 0 would let a step pass on no data",
        ),
        (
            "[routes.users.metrics]\nerror_budget = 5\n",
            "`routes.users.metrics.error_budget`: 5 is not a ratio",
        ),
        (
            "[metrics]\nlatency_ratio = 0.5\n",
            "`metrics.latency_ratio`",
        ),
        (
            "[metrics]\non_inconclusive = \"pass\"\n",
            "`pass` is not supported; use \"fail\"",
        ),
        (
            "[metrics]\nmax_wait = \"soon\"\n",
            "`soon` is not a duration",
        ),
    ] {
        let run = history_with(extra);
        assert_eq!(run.code, 2, "{extra}: {run}");
        assert!(run.stderr.contains(named), "{extra}: {run}");
        assert!(run.stderr.contains("migrate.toml"), "{extra}: {run}");
    }
}

// ------------------------------------------------------------ local stack

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A proxy target written here, outside the product binaries, in front of
/// the real users service and registered in its target group: it can answer
/// 500 to every `error_every`th request for one user (`/api/users/ID`, a
/// bug in the detail endpoint: the interval probes ask for `/api/users`
/// only), and delay every `/api` request by `delay_ms`.
struct FaultProxy {
    addr: String,
    error_every: Arc<AtomicU32>,
    delay_ms: Arc<AtomicU64>,
    injected: Arc<AtomicUsize>,
}

impl FaultProxy {
    fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let proxy = FaultProxy {
            addr,
            error_every: Arc::new(AtomicU32::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            injected: Arc::new(AtomicUsize::new(0)),
        };
        let upstream = upstream.to_owned();
        let (every, delay, injected) = (
            proxy.error_every.clone(),
            proxy.delay_ms.clone(),
            proxy.injected.clone(),
        );
        let counter = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (upstream, every, delay, injected, counter) = (
                    upstream.clone(),
                    every.clone(),
                    delay.clone(),
                    injected.clone(),
                    counter.clone(),
                );
                std::thread::spawn(move || {
                    serve(stream, &upstream, &every, &delay, &injected, &counter)
                });
            }
        });
        proxy
    }

    /// 500 to one request in `every` for one user (0: none).
    fn fail_one_in(&self, every: u32) {
        self.error_every.store(every, Ordering::SeqCst);
    }
}

/// One client connection of the local ALB (kept alive): each request
/// answered by the proxy or forwarded to the service.
fn serve(
    stream: TcpStream,
    upstream: &str,
    every: &AtomicU32,
    delay: &AtomicU64,
    injected: &AtomicUsize,
    counter: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut head = Vec::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            head.push(line);
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let Some(request_line) = head.first().cloned() else {
            return;
        };
        let mut words = request_line.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or_default().to_owned(),
            words.next().unwrap_or_default().to_owned(),
        );
        let one_in = every.load(Ordering::SeqCst);
        if one_in > 0
            && path.starts_with("/api/users/")
            && counter
                .fetch_add(1, Ordering::SeqCst)
                .is_multiple_of(one_in as usize)
        {
            injected.fetch_add(1, Ordering::SeqCst);
            let body = "{\"error\":\"injected\"}";
            let _ = write!(
                out,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            continue;
        }
        let pause = delay.load(Ordering::SeqCst);
        if pause > 0 && path.starts_with("/api") {
            std::thread::sleep(Duration::from_millis(pause));
        }
        let Ok(mut service) = TcpStream::connect(upstream) else {
            return;
        };
        let mut request = String::new();
        for line in &head {
            if !line.to_ascii_lowercase().starts_with("connection:") {
                request.push_str(line);
            }
        }
        request.push_str("Connection: close\r\n\r\n");
        if service.write_all(request.as_bytes()).is_err() || service.write_all(&body).is_err() {
            return;
        }
        let mut answer = Vec::new();
        let _ = service.read_to_end(&mut answer);
        let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let payload = &answer[split + 4..];
        let mut response = String::new();
        let mut declared = None;
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                declared = value.trim().parse::<usize>().ok();
                continue;
            }
            if lower.starts_with("connection:") || lower.starts_with("transfer-encoding:") {
                continue;
            }
            response.push_str(line);
            response.push_str("\r\n");
        }
        // A HEAD answer declares the GET's length and has no body.
        let length = if method == "HEAD" {
            declared.unwrap_or(0)
        } else {
            payload.len()
        };
        response.push_str(&format!("Content-Length: {length}\r\n\r\n"));
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
        if method != "HEAD" && out.write_all(payload).is_err() {
            return;
        }
    }
}

/// Client traffic through the load balancer: `per_second` GETs of the users
/// route (the list and each user) until dropped, from two threads.
struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start(data_url: &str, per_second: u32) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|thread| {
                let (stop, url) = (stop.clone(), data_url.to_owned());
                let pace = Duration::from_secs_f64(2.0 / f64::from(per_second));
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let mut index: u32 = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let path = match (index + thread) % 4 {
                            0 => "/api/users".to_owned(),
                            n => format!("/api/users/{n}"),
                        };
                        let _ = http_get(&format!("{url}{path}"));
                        index += 1;
                        // Paced to the rate: the next request is due at index × pace.
                        let due = started + pace * index;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                })
            })
            .collect();
        Clients { stop, threads }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The `[metrics]` of these tests: per-second periods, a few requests.
const METRICS: &str = "period = \"1s\"\nmin_requests = 5\nmax_wait = \"3s\"";

/// The local stack with the users service behind a [`FaultProxy`].
fn stack_with_proxy() -> (LocalStack, Arc<std::sync::Mutex<Option<FaultProxy>>>) {
    let slot: Arc<std::sync::Mutex<Option<FaultProxy>>> = Arc::default();
    let inner = slot.clone();
    let stack = LocalStack::start_with(move |name, addr| {
        if name != "users" {
            return addr;
        }
        let proxy = FaultProxy::start(&addr.to_string());
        let front = proxy.addr.parse().unwrap();
        *inner.lock().unwrap() = Some(proxy);
        front
    });
    (stack, slot)
}

/// Waits until the route's target is healthy on the local ALB.
fn wait_healthy(op: &Operator, route: &str) {
    eventually(Duration::from_secs(30), &format!("{route} healthy"), || {
        op.route_status(route)["healthy"] == 1
    });
}

#[test]
fn a_service_failing_5_percent_of_its_requests_fails_the_error_gate_and_rolls_back() {
    let (stack, proxy) = stack_with_proxy();
    // The proxy's own hop makes its p99 noisy on a busy machine: this test
    // is about the error gate, so the latency gate is out of its way.
    let op = stack.operator_with_metrics("1s", &format!("{METRICS}\nlatency_allowance = \"1s\""));
    op.init();
    wait_healthy(&op, "users");
    let _clients = Clients::start(&stack.data_url, 100);
    let shift = op.spawn(&[
        "shift",
        "users",
        "--steps",
        "50,100",
        "--interval",
        "60s",
        "-v",
    ]);
    eventually(Duration::from_secs(20), "users at 50%", || {
        op.journal()
            .iter()
            .any(|e| e["what"] == "shift to 50 percent")
    });
    // The fault starts once the service takes half of the route's traffic:
    // 500 to 5% of the requests for one user (the probes don't ask for those).
    let fault_started = Instant::now();
    proxy.lock().unwrap().as_ref().unwrap().fail_one_in(20);
    let run = finish(shift);
    let to_rollback = fault_started.elapsed();
    eprintln!("gates: 5% of 500s began {to_rollback:?} before the shift exited, rolled back");
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr.contains("metric gate: errors: service 5XX"),
        "{run}"
    );
    // One evaluation period is 1 s; the rollback's writes and read-backs come
    // on top. After the rollback, the shift watches the traffic leave the
    // service (`rollback_reach`, journaled) before it exits: not part of the
    // time to roll back.
    let watched = op
        .journal()
        .iter()
        .rev()
        .find_map(|e| e["evidence"]["rollback_reach"]["watched_seconds"].as_f64())
        .unwrap_or(0.0);
    assert!(
        to_rollback < Duration::from_secs(5) + Duration::from_secs_f64(watched),
        "{to_rollback:?} (of which {watched} s watching the traffic leave)\n{run}"
    );
    let calls = run
        .stderr
        .matches("cloudwatch GetMetricData (8 queries)")
        .count();
    let evaluations = op.journal().last().unwrap()["evidence"]["metric_evaluations"]["count"]
        .as_u64()
        .unwrap();
    eprintln!(
        "gates: {calls} GetMetricData calls for {evaluations} evaluations (+1 before the first step)"
    );
    assert_eq!(calls as u64, evaluations + 1, "{run}");
    let last = op.journal().last().unwrap().clone();
    assert_eq!(last["what"], "gate failed; rolled back to the monolith");
    let metrics = &last["evidence"]["metrics"];
    assert_eq!(metrics["verdict"], "fail", "{metrics:#}");
    assert!(
        metrics["service"]["target_5xx"].as_f64().unwrap() >= 1.0,
        "{metrics:#}"
    );
    assert_eq!(metrics["monolith"]["target_5xx"], 0.0, "{metrics:#}");
    let status = op.route_status("users");
    assert_eq!(status["state"], "on-monolith");
    // The failed verdict is the shift's, the one that rolled the route back.
    assert_eq!(
        status["metrics"]["rolled_back"]["what"], "gate failed; rolled back to the monolith",
        "{status:#}"
    );
    assert_eq!(status["metrics"]["current"], false, "{status:#}");
    let text = op.run(&["status", "users"]);
    assert!(
        text.stdout.contains("metrics:  as of the shift, ")
            && text.stdout.contains("(the verdict that rolled it back: "),
        "{text}"
    );
}

#[test]
fn a_service_50_ms_slower_fails_the_latency_gate() {
    let (stack, proxy) = stack_with_proxy();
    let op = stack.operator_with_metrics("1s", METRICS);
    op.init();
    wait_healthy(&op, "users");
    proxy
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .delay_ms
        .store(50, Ordering::SeqCst);
    let _clients = Clients::start(&stack.data_url, 100);
    let run = op.run(&[
        "shift",
        "users",
        "--steps",
        "50,100",
        "--interval",
        "30s",
        "--skip-parity",
    ]);
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr.contains("metric gate: latency: service p99"),
        "{run}"
    );
    let last = op.journal().last().unwrap().clone();
    let metrics = &last["evidence"]["metrics"];
    // The monolith's own p99 grows on a loaded machine; the service's is
    // the monolith's plus the 50 ms added.
    let (service, monolith) = (
        metrics["service"]["p99_s"].as_f64().unwrap(),
        metrics["monolith"]["p99_s"].as_f64().unwrap(),
    );
    assert!(
        service >= 0.050 && service - monolith >= 0.025,
        "{metrics:#}"
    );
    assert_eq!(op.route_status("users")["state"], "on-monolith");
}

#[test]
fn a_route_without_traffic_is_inconclusive_and_never_passes() {
    let stack = LocalStack::start();
    // The posts route's probes ask for threads: nothing reaches the posts service.
    let op = stack.operator_with_metrics("1s", METRICS);
    let config = std::fs::read_to_string(op.config_path()).unwrap().replace(
        "probe_paths = [\"/api/posts\"]",
        "probe_paths = [\"/api/threads\"]",
    );
    std::fs::write(op.config_path(), config).unwrap();
    op.init();
    wait_healthy(&op, "posts");
    let started = Instant::now();
    let run = op.run(&[
        "shift",
        "posts",
        "--steps",
        "10,100",
        "--interval",
        "1s",
        "--skip-parity",
    ]);
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr
            .contains("metric gates inconclusive after waiting 3s"),
        "{run}"
    );
    assert!(
        run.stderr.contains("received no requests since the step"),
        "{run}"
    );
    // The interval (1 s) and max_wait (3 s), then the rollback: not a
    // wait without end (a loaded machine took 20 s).
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let journal = op.journal();
    assert!(
        !journal.iter().any(|e| e["what"] == "shift to 100 percent"),
        "{journal:#?}"
    );
    let last = journal.last().unwrap();
    let each = last["evidence"]["metric_evaluations"]["each"]
        .as_array()
        .unwrap();
    assert!(each.len() >= 3, "{last:#}");
    assert!(
        each.iter().all(|e| e["verdict"] == "inconclusive"),
        "{last:#}"
    );
    assert_eq!(op.route_status("posts")["state"], "on-monolith");
}

#[test]
fn a_healthy_service_passes_8_gradual_shifts_in_a_row() {
    // The real users service, directly; the local stack's p99 allowance
    // (debug builds on a machine the whole suite shares: at a load average
    // of 15 a healthy service's p99 over one second reached 142 ms against
    // the monolith's 22 ms). A false rollback is what this test looks for;
    // the gate's own sensitivity is a_service_50_ms_slower_fails_….
    let stack = LocalStack::start();
    let op =
        stack.operator_with_metrics("1s", &format!("{METRICS}\nlatency_allowance = \"300ms\""));
    op.init();
    wait_healthy(&op, "users");
    let _clients = Clients::start(&stack.data_url, 100);
    let started = Instant::now();
    // Eight in a row: a gate that failed a healthy service one time in ten
    // would fail here more often than not. (The chaos suite's scenario 1
    // runs dozens of cycles.)
    let gradual_shift = [
        "shift",
        "users",
        "--steps",
        "50,100",
        "--interval",
        "1s",
        "--skip-parity",
    ];
    for round in 0..8 {
        let run = op.run(&gradual_shift);
        assert_eq!(run.code, 0, "round {round}: {run}");
        assert_eq!(op.run(&["rollback", "users"]).code, 0, "round {round}");
    }
    eprintln!(
        "gates: 8 gradual shifts and rollbacks in {:?}",
        started.elapsed()
    );
    let passed: Vec<serde_json::Value> = op
        .journal()
        .into_iter()
        .filter(|e| e["what"] == "shift to 100 percent")
        .collect();
    assert_eq!(passed.len(), 8);
    assert!(
        passed
            .iter()
            .all(|e| e["evidence"]["metrics"]["verdict"] == "pass")
    );

    // A ninth: the metric gates pass the interval at 50%, then a custom
    // gate fails the step to 100% and the shift rolls back. `status` gives
    // the metric gates' pass as the verdict before the rollback, not as the
    // one that rolled it back, nor as the route's now.
    let config = std::fs::read_to_string(op.config_path()).unwrap();
    let gate = "\n[[routes.users.gates]]\nname = \"orders\"\nphase = \"before-full\"\ncommand = [\"sh\", \"-c\", \"echo 'orders lost' >&2; exit 1\"]\n";
    std::fs::write(op.config_path(), format!("{config}{gate}")).unwrap();
    let run = op.run(&gradual_shift);
    assert_eq!(run.code, 3, "{run}");
    let status = op.route_status("users");
    let metrics = &status["metrics"];
    assert_eq!(metrics["evaluation"]["verdict"], "pass", "{status:#}");
    assert_eq!(metrics["current"], false, "{status:#}");
    assert!(
        metrics["rolled_back"]["gate_failed"]
            .as_str()
            .unwrap()
            .contains("orders"),
        "{status:#}"
    );
    let text = op.run(&["status", "users"]);
    assert!(
        text.stdout
            .contains("metrics:  before the rollback, as of the shift, "),
        "{text}"
    );
    assert!(
        !text.stdout.contains("the verdict that rolled it back"),
        "{text}"
    );
}

#[test]
fn promote_judges_the_whole_hold_nobody_watched() {
    let (stack, proxy) = stack_with_proxy();
    let op = stack.operator_with_metrics("1s", &format!("{METRICS}\nlatency_allowance = \"1s\""));
    op.init();
    wait_healthy(&op, "users");
    let _clients = Clients::start(&stack.data_url, 100);
    let held = op.run(&["shift", "users", "--to", "50", "--lock-settle", "0s"]);
    assert_eq!(held.code, 0, "{held}");
    // While nobody watches the hold, the service fails 5% of its requests
    // for a while, then recovers.
    let injected = proxy.lock().unwrap().as_ref().unwrap().injected.clone();
    proxy.lock().unwrap().as_ref().unwrap().fail_one_in(20);
    eventually(Duration::from_secs(20), "500s during the hold", || {
        injected.load(Ordering::SeqCst) >= 10
    });
    proxy.lock().unwrap().as_ref().unwrap().fail_one_in(0);
    // Seconds of clean traffic since: a judgement of only the last moments
    // would pass.
    let answered = stack.answered_by().get("users").copied().unwrap_or(0);
    eventually(
        Duration::from_secs(30),
        "clean traffic after the fault",
        || stack.answered_by().get("users").copied().unwrap_or(0) >= answered + 400,
    );
    // promote's metric gates read the whole time since the hold began, as
    // CloudWatch kept it: the fault fails them though it is over now.
    let promoted = op.run(&["promote", "users", "--lock-settle", "0s"]);
    assert_eq!(promoted.code, 3, "{promoted}");
    assert!(
        promoted.stderr.contains("metric gate: errors: service 5XX"),
        "{promoted}"
    );
    assert_eq!(op.route_status("users")["state"], "on-monolith");
}
