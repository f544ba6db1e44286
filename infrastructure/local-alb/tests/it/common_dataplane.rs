//! Shared pieces of the data-plane tests: small real HTTP backends, a `State`
//! builder and a running data plane on a free port.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use local_alb::model::{
    Action, ActionKind, Condition, HealthCheck, Listener, LoadBalancer, Priority, Rule, State,
    Target, TargetGroup, WeightedTargetGroup,
};
use local_alb::{DataPlane, DataPlaneOptions, TargetHealthView};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A real HTTP server that answers every request with a JSON description of
/// what it received: `{"backend", "method", "uri", "headers", "body"}`.
pub struct Backend {
    pub addr: SocketAddr,
    /// The status it answers with (200 unless changed).
    pub status: Arc<AtomicU16>,
    /// Requests answered so far, health checks included.
    pub requests: Arc<AtomicUsize>,
    /// Connections accepted so far, health checks included.
    pub connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let status = Arc::new(AtomicU16::new(200));
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (answer_status, counted) = (Arc::clone(&status), Arc::clone(&requests));
        let accepted = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                let (status, counted) = (Arc::clone(&answer_status), Arc::clone(&counted));
                let service = hyper::service::service_fn(move |request| {
                    let status = status.load(Ordering::Relaxed);
                    counted.fetch_add(1, Ordering::Relaxed);
                    describe(name, status, request)
                });
                tokio::spawn(async move {
                    // More header lines than hyper's default of 100: the
                    // load balancer has no count limit (dataplane_limits).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .max_headers(1000)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            addr,
            status,
            requests,
            connections,
            task,
        }
    }

    pub fn target(&self) -> Target {
        Target {
            id: "127.0.0.1".to_owned(),
            port: self.addr.port(),
        }
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn describe(
    name: &'static str,
    status: u16,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .keys()
        .map(|name| {
            let values: Vec<&str> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("?"))
                .collect();
            (name.as_str().to_owned(), values.join(" | ").into())
        })
        .collect();
    let description = serde_json::json!({
        "backend": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let response = http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-backend", name)
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=30")
        .body(Full::new(Bytes::from(description.to_string())))
        .expect("valid response");
    Ok(response)
}

/// A server that accepts connections and never answers.
pub struct SilentBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SilentBackend {
    pub async fn start() -> SilentBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind silent");
        let addr = listener.local_addr().expect("silent address");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        SilentBackend { addr, task }
    }

    pub fn target(&self) -> Target {
        Target {
            id: "127.0.0.1".to_owned(),
            port: self.addr.port(),
        }
    }
}

impl Drop for SilentBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A local port nothing listens on (bound, then released).
pub fn closed_port_target() -> Target {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    Target {
        id: "127.0.0.1".to_owned(),
        port,
    }
}

const LISTENER_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener/app/test/0000000000000001/0000000000000002";

pub fn tg_arn(name: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/{name}/00000000000000aa"
    )
}

pub fn health_check(interval_seconds: u32, timeout_seconds: u32) -> HealthCheck {
    HealthCheck {
        path: "/".to_owned(),
        interval_seconds,
        timeout_seconds,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        matcher: "200".to_owned(),
    }
}

/// A `State` with one load balancer and one listener on port 80.
pub struct StateBuilder {
    state: State,
}

impl StateBuilder {
    pub fn new() -> StateBuilder {
        StateBuilder {
            state: State {
                region: "us-east-1".to_owned(),
                account_id: "000000000000".to_owned(),
                load_balancers: vec![LoadBalancer {
                    arn: "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/test/0000000000000001".to_owned(),
                    name: "test".to_owned(),
                    dns_name: "test.elb.localhost".to_owned(),
                    scheme: "internet-facing".to_owned(),
                    created_time: "2026-11-26T00:00:00.000Z".to_owned(),
                    tags: Vec::new(),
                    attributes: Default::default(),
                }],
                listeners: vec![Listener {
                    arn: LISTENER_ARN.to_owned(),
                    load_balancer_arn: "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/test/0000000000000001".to_owned(),
                    port: 80,
                    protocol: "HTTP".to_owned(),
                    tags: Vec::new(),
                }],
                target_groups: Vec::new(),
                rules: Vec::new(),
                next_id: 100,
            },
        }
    }

    /// A target group whose health checks run every `interval` seconds.
    pub fn target_group(mut self, name: &str, targets: Vec<Target>, check: HealthCheck) -> Self {
        self.state.target_groups.push(TargetGroup {
            arn: tg_arn(name),
            name: name.to_owned(),
            protocol: "HTTP".to_owned(),
            port: 3000,
            target_type: "ip".to_owned(),
            health_check: check,
            targets,
            tags: Vec::new(),
            attributes: Default::default(),
        });
        self
    }

    pub fn rule(
        mut self,
        priority: Priority,
        conditions: Vec<Condition>,
        kind: ActionKind,
    ) -> Self {
        let arn = format!(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener-rule/app/test/0000000000000001/0000000000000002/{:016x}",
            self.state.next_id
        );
        self.state.next_id += 1;
        self.state.rules.push(Rule {
            arn,
            listener_arn: LISTENER_ARN.to_owned(),
            priority,
            conditions,
            actions: vec![Action {
                order: Some(1),
                kind,
            }],
            tags: Vec::new(),
        });
        self
    }

    pub fn build(self) -> State {
        self.state
    }
}

/// One target group of one backend, the listener's default action.
pub fn one_group_state(name: &str, backend: &Backend) -> State {
    StateBuilder::new()
        .target_group(name, vec![backend.target()], health_check(30, 5))
        .rule(Priority::Default, vec![], forward(name))
        .build()
}

pub fn forward(target_group: &str) -> ActionKind {
    ActionKind::Forward {
        target_groups: vec![WeightedTargetGroup {
            target_group_arn: tg_arn(target_group),
            weight: 1,
        }],
        plain: true,
        stickiness_enabled: false,
        stickiness_duration_seconds: None,
    }
}

pub fn forward_weighted(weights: &[(&str, u32)]) -> ActionKind {
    ActionKind::Forward {
        target_groups: weights
            .iter()
            .map(|(name, weight)| WeightedTargetGroup {
                target_group_arn: tg_arn(name),
                weight: *weight,
            })
            .collect(),
        plain: false,
        stickiness_enabled: false,
        stickiness_duration_seconds: None,
    }
}

pub fn path_pattern(values: &[&str]) -> Vec<Condition> {
    vec![Condition::PathPattern {
        values: values.iter().map(|v| v.to_string()).collect(),
    }]
}

/// Sets the priority of the rule whose path-pattern includes `pattern`.
pub fn move_rule(state: &mut State, pattern: &str, priority: u32) {
    let rule = state
        .rules
        .iter_mut()
        .find(|r| {
            r.conditions.iter().any(|c| {
                matches!(c, Condition::PathPattern { values } if values.iter().any(|v| v == pattern))
            })
        })
        .expect("rule with that pattern");
    rule.priority = Priority::Number(priority);
}

/// A data plane serving on a free local port.
pub struct RunningAlb {
    pub plane: Arc<DataPlane>,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningAlb {
    pub async fn start(state: &State, options: DataPlaneOptions) -> RunningAlb {
        let plane = DataPlane::with_options(state, options);
        plane.start_health_checks();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind alb");
        let addr = listener.local_addr().expect("alb address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(Arc::clone(&plane).serve(listener, async move {
            let _ = stop.await;
        }));
        RunningAlb {
            plane,
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the listener and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("serve returns after shutdown");
            result.expect("serve task").expect("serve result");
        }
    }
}

impl Drop for RunningAlb {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn quick_options() -> DataPlaneOptions {
    DataPlaneOptions {
        target_timeout: Duration::from_millis(500),
        deregistration_delay: Duration::from_secs(2),
        ..DataPlaneOptions::default()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// GETs `url` and returns (status, `x-backend` header or "").
pub async fn backend_of(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client
        .get(url)
        .send()
        .await
        .expect("request through the alb");
    let status = response.status().as_u16();
    let backend = response
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, backend)
}

/// Waits until `condition` holds, checking every 20 ms; fails the test naming
/// `what` if it does not within `within`.
pub async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not so after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `target`'s health has `state` (at most `within`).
pub async fn wait_for_health(
    plane: &DataPlane,
    target_group: &str,
    target: &Target,
    state: &str,
    within: Duration,
) -> TargetHealthView {
    let deadline = Instant::now() + within;
    loop {
        let health = plane.target_health(&tg_arn(target_group), target);
        if health.state == state {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "{target_group} {target:?} still {health:?} after {within:?}, expected {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client for raw HTTP/1.1 exchanges (to send what reqwest would not).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}
