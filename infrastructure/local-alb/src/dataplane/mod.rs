//! The data plane: the ALB's HTTP listener.
//!
//! How it works: every published [`State`] is compiled into immutable
//! [`table::RouteTables`] swapped in with `arc-swap`; a request loads the
//! current tables once and is routed wholly by them (the tables of its
//! connection's node: `nodes.rs`, one node unless propagation is simulated). Target health, the
//! round-robin position, pooled connections and metrics live outside the
//! tables and survive republishing.
//!
//! Timeouts and threads are [`DataPlaneOptions`]; the binary takes them from
//! its command line or the `LOCAL_ALB_*` variables (`settings.rs`, listed by
//! `local-alb --help`).

mod http1;
mod nodes;
mod policy;
mod pool;
mod proxy;
mod responses;
mod sticky;
mod table;
mod targets;
mod upstream;
mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use nodes::Propagation;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::health::HealthState;
use crate::metrics::{Metrics, TargetHealthSample};
use crate::model::{State, Target};

pub use policy::{DesyncMode, HeadPolicy, XffMode};

/// Target health as DescribeTargetHealth reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealthView {
    /// `initial`, `healthy`, `unhealthy`, `unused` or `draining`.
    pub state: String,
    /// For example `Elb.RegistrationInProgress`, `Target.FailedHealthChecks`,
    /// `Target.ResponseCodeMismatch`, `Target.Timeout`,
    /// `Target.DeregistrationInProgress`; `None` when healthy.
    pub reason: Option<String>,
    pub description: Option<String>,
}

/// How often idle target connections closed by their target are closed.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Tunables of the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneOptions {
    /// Longest wait for a target's response head before answering 504.
    pub target_timeout: Duration,
    /// How long deregistered targets stay `draining`, for target groups
    /// whose `deregistration_delay.timeout_seconds` attribute is unset.
    pub deregistration_delay: Duration,
    /// The load balancer's attributes for request heads (idle timeout,
    /// client keep-alive, desync mitigation, invalid header fields,
    /// `X-Forwarded-For`, `Host`); AWS's defaults unless set. Every routing
    /// table carries it.
    pub head: HeadPolicy,
    /// Threads serving the listener (default: one per CPU core).
    pub worker_threads: usize,
    /// How long the per-second CloudWatch counters are kept (default 3
    /// hours); zero turns counting off.
    pub metric_retention: Duration,
    /// Where access log files go (`DIR/BUCKET/KEY`) when the load balancer's
    /// `access_logs.s3.enabled` is true; `None` writes none.
    pub access_log_root: Option<std::path::PathBuf>,
    /// How often an access log file is delivered (AWS: 5 minutes).
    pub access_log_interval: Duration,
    /// The gzip level of the access log files, 0 (stored blocks) to 9
    /// (`--access-log-compression`, default 1).
    pub access_log_compression: u32,
    /// Simulated nodes and the delay after which each applies a published
    /// change (`--propagation`, `--nodes`); `None`: one node, at once.
    pub propagation: Option<Propagation>,
}

impl Default for DataPlaneOptions {
    fn default() -> Self {
        DataPlaneOptions {
            target_timeout: Duration::from_secs(60),
            deregistration_delay: Duration::from_secs(5),
            head: HeadPolicy::default(),
            worker_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            metric_retention: crate::cloudwatch::DEFAULT_RETENTION,
            propagation: None,
            access_log_root: None,
            access_log_interval: crate::accesslog::DEFAULT_INTERVAL,
            access_log_compression: crate::accesslog::DEFAULT_COMPRESSION,
        }
    }
}

impl DataPlaneOptions {
    /// What unset attributes stand for: the idle timeout and the
    /// deregistration delay of these options.
    pub(crate) fn attribute_defaults(&self) -> crate::attributes::AttributeDefaults {
        crate::attributes::AttributeDefaults {
            idle_timeout: self.head.idle_timeout,
            deregistration_delay: self.deregistration_delay,
        }
    }
}

/// The protocol a client connection speaks.
enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// Tells HTTP/2 (its connection preface) from HTTP/1.x by peeking at the
/// first bytes; `None` when the client closes or sends nothing within `idle`.
async fn opening_protocol(stream: &tokio::net::TcpStream, idle: Duration) -> Option<Protocol> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + idle;
    let mut opening = [0u8; PREFACE.len()];
    loop {
        let seen = match tokio::time::timeout_at(deadline, stream.peek(&mut opening)).await {
            Ok(Ok(seen @ 1..)) => seen,
            _ => return None,
        };
        if !PREFACE.starts_with(&opening[..seen]) {
            return Some(Protocol::Http1);
        }
        if seen == PREFACE.len() {
            return Some(Protocol::Http2);
        }
        // A part of the preface so far: peeking again would return at once.
        tokio::time::sleep(Duration::from_millis(5)).await;
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// The running data plane: routing table, target health, metrics.
pub struct DataPlane {
    options: DataPlaneOptions,
    /// The routing tables of the load balancer's nodes.
    tables: nodes::Nodes,
    registry: targets::Registry,
    metrics: Metrics,
    /// The per-second counters served as CloudWatch metrics.
    cloudwatch: Arc<crate::cloudwatch::Registry>,
    /// Seals and opens the sticky-session cookies (drawn at start).
    cookie_key: sticky::CookieKey,
    /// The access log (on when the load balancer's attributes say so).
    access_logs: Arc<crate::accesslog::AccessLogs>,
    /// Serializes `publish` (the tables themselves are read lock-free).
    publishing: std::sync::Mutex<()>,
}

impl DataPlane {
    /// Builds the data plane for `initial` (compiles its routing table and
    /// prepares health checking; spawns nothing yet).
    pub fn with_options(initial: &State, options: DataPlaneOptions) -> Arc<DataPlane> {
        let registry = targets::Registry::new(options.attribute_defaults(), options.worker_threads);
        let metrics = Metrics::default();
        let cloudwatch = Arc::new(crate::cloudwatch::Registry::new(
            options.metric_retention,
            options.worker_threads,
        ));
        let groups = registry.sync(initial);
        let tables =
            table::RouteTables::compile(initial, &groups, &metrics, &cloudwatch, options.head);
        let access_logs = Arc::new(crate::accesslog::AccessLogs::new(
            options.access_log_root.clone(),
            options.access_log_interval,
            options.access_log_compression,
            options.worker_threads,
        ));
        access_logs.configure(initial);
        Arc::new(DataPlane {
            access_logs,
            options: options.clone(),
            tables: nodes::Nodes::new(tables, options.propagation),
            registry,
            metrics,
            cloudwatch,
            cookie_key: sticky::CookieKey::random(),
            publishing: std::sync::Mutex::new(()),
        })
    }

    /// Publishes a new configuration after the control plane accepted (and
    /// persisted) a change: recompiles the routing table and swaps it in
    /// atomically (on each node after its propagation delay, when
    /// [`DataPlaneOptions::propagation`] is set), and updates the health
    /// checkers' target sets. Requests in flight finish on the table they
    /// started with.
    pub fn publish(&self, state: &State) {
        let _serialized = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let groups = self.registry.sync(state);
        let tables = table::RouteTables::compile(
            state,
            &groups,
            &self.metrics,
            &self.cloudwatch,
            self.options.head,
        );
        self.tables.publish(tables);
        self.access_logs.configure(state);
    }

    /// Starts the health checkers (one task per target). Needs a tokio
    /// runtime.
    pub fn start_health_checks(self: &Arc<Self>) {
        self.registry
            .start_health_checks(tokio::runtime::Handle::current());
    }

    /// Serves the ALB's HTTP listener on `listener` until `shutdown` resolves.
    /// HTTP/1.1 and HTTP/2 (h2c) are accepted.
    ///
    /// Like nginx's worker processes, connections are served by
    /// `worker_threads` threads, each with its own single-threaded runtime and
    /// its own pool of target connections; this task accepts and hands the
    /// connections out in turn, so a request and its target exchange never
    /// hop threads. On shutdown it stops accepting, every worker lets its
    /// open connections finish their requests (for at most the target
    /// timeout), then the health checkers stop.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let plane = Arc::downgrade(&self);
        crate::cloudwatch::Registry::spawn_harvester(&self.cloudwatch, move |second| {
            if let Some(plane) = plane.upgrade() {
                plane.sample_target_health(second);
            }
        });
        if let Ok(address) = listener.local_addr() {
            self.access_logs.set_node_address(address.ip());
        }
        self.access_logs.spawn_writer();
        let plane = Arc::clone(&self);
        let mut workers = percore::Workers::start(
            self.options.worker_threads,
            "alb-worker",
            move |index, accepted| Arc::clone(&plane).serve_worker(index, accepted),
        )?;
        // A worker whose thread is gone is skipped; none left ends serving.
        percore::accept_until(&listener, &mut workers, shutdown, |stream, peer| {
            (stream, peer, self.tables.assign())
        })
        .await
        .map_err(|_| std::io::Error::other("every data-plane worker thread died"))?;
        drop(listener);
        if let Err(error) = workers.finish().await {
            tracing::error!("a data-plane worker ended with an error: {error}");
        }
        self.registry.stop_all();
        self.access_logs.flush();
        Ok(())
    }

    /// One worker: serves the connections handed to it on the current
    /// (single-threaded) runtime until the hand-over channel closes. HTTP/1.x
    /// connections go to [`http1`]; a connection that opens with the HTTP/2
    /// preface is served by hyper.
    async fn serve_worker(
        self: Arc<Self>,
        worker: usize,
        mut accepted: tokio::sync::mpsc::UnboundedReceiver<(
            std::net::TcpStream,
            std::net::SocketAddr,
            usize,
        )>,
    ) {
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(self.options.head.idle_timeout));
        let sweeping = tokio::spawn(Arc::clone(&self).sweep_idle_upstreams(worker));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let (closing, closing_seen) = tokio::sync::watch::channel(false);
        // Every connection task holds a sender; all dropped = all finished.
        let (serving, mut all_finished) = tokio::sync::mpsc::channel::<()>(1);
        while let Some((stream, peer, node)) = accepted.recv().await {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let plane = Arc::clone(&self);
            let (http2, watcher) = (http2.clone(), graceful.watcher());
            let (closing_seen, serving) = (closing_seen.clone(), serving.clone());
            tokio::spawn(async move {
                let _serving = serving;
                let idle = plane.tables.latest().head.idle_timeout;
                let mut protocol = opening_protocol(&stream, idle).await;
                if matches!(protocol, Some(Protocol::Http2)) && !plane.http2_enabled() {
                    // `routing.http2.enabled` is false: the preface is read
                    // as an HTTP/1.x request head (and refused as one).
                    protocol = Some(Protocol::Http1);
                }
                match protocol {
                    Some(Protocol::Http1) => {
                        http1::serve(plane, stream, peer, worker, node, closing_seen).await;
                    }
                    Some(Protocol::Http2) => {
                        let service = hyper::service::service_fn(move |request| {
                            let plane = Arc::clone(&plane);
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    plane.handle(request, peer, worker, node).await,
                                )
                            }
                        });
                        let connection = http2.serve_connection(TokioIo::new(stream), service);
                        if let Err(error) = watcher.watch(connection).await {
                            tracing::debug!("connection from {peer}: {error}");
                        }
                    }
                    // Closed, or silent for the idle timeout (as an ALB does).
                    None => {
                        tracing::debug!(%peer, "a client connection ended before its first byte");
                    }
                }
            });
        }
        sweeping.abort();
        let _ = closing.send(true);
        drop(serving);
        let _ = tokio::time::timeout(self.options.target_timeout, async {
            let _ = all_finished.recv().await;
            graceful.shutdown().await;
        })
        .await;
    }

    /// Every [`SWEEP_INTERVAL`], closes this worker's idle target
    /// connections that their target closed: without it each would sit in
    /// CLOSE_WAIT until the next request to that target found it.
    async fn sweep_idle_upstreams(self: Arc<Self>, worker: usize) {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            for group in self.registry.groups() {
                for member in group.members() {
                    member.upstreams.sweep(worker);
                }
            }
        }
    }

    /// Whether the load balancer accepts HTTP/2 (`routing.http2.enabled`).
    fn http2_enabled(&self) -> bool {
        self.tables
            .latest()
            .primary()
            .is_none_or(|table| table.attributes.http2_enabled)
    }

    /// What attributes left unset stand for: this process's idle timeout
    /// and deregistration delay.
    pub(crate) fn attribute_defaults(&self) -> crate::attributes::AttributeDefaults {
        self.options.attribute_defaults()
    }

    /// The health of one registered (or draining) target of a target group.
    pub fn target_health(&self, target_group_arn: &str, target: &Target) -> TargetHealthView {
        match self.registry.find(target_group_arn, target) {
            Some(runtime) => {
                let tracker = runtime.tracker();
                TargetHealthView {
                    state: tracker.state.as_api_str().to_owned(),
                    reason: tracker.reason.map(str::to_owned),
                    description: tracker.description,
                }
            }
            None => TargetHealthView {
                state: "unused".to_owned(),
                reason: Some("Target.NotRegistered".to_owned()),
                description: Some("Target is not registered to the target group".to_owned()),
            },
        }
    }

    /// Targets that were deregistered but are still draining, per target group
    /// (DescribeTargetHealth lists them with state `draining`).
    pub fn draining_targets(&self, target_group_arn: &str) -> Vec<Target> {
        self.registry.draining_targets(target_group_arn)
    }

    /// Records, for `second`, how many targets of each target group the
    /// listener forwards to are healthy and unhealthy (CloudWatch's
    /// `HealthyHostCount` and `UnHealthyHostCount`).
    fn sample_target_health(&self, second: u64) {
        let tables = self.tables.latest();
        let Some(table) = tables.primary() else {
            return;
        };
        let mut seen = std::collections::HashSet::new();
        for weighted in table.weighted_groups() {
            let (Some(cell), Some(group)) = (&weighted.cell, &weighted.group) else {
                continue;
            };
            if !seen.insert(Arc::as_ptr(cell)) {
                continue;
            }
            let (mut healthy, mut unhealthy) = (0u32, 0u32);
            for (_, target) in &group.targets {
                match target.health() {
                    HealthState::Healthy => healthy += 1,
                    HealthState::Unhealthy => unhealthy += 1,
                    HealthState::Initial | HealthState::Draining => {}
                }
            }
            cell.record_health(second, healthy, unhealthy);
        }
    }

    /// The counters behind the CloudWatch API.
    pub(crate) fn cloudwatch(&self) -> &crate::cloudwatch::Registry {
        &self.cloudwatch
    }

    /// Prometheus text exposition for `/metrics` on the control listener.
    pub fn render_metrics(&self) -> String {
        let groups = self.registry.groups();
        let samples = groups.iter().flat_map(|group| {
            group
                .members()
                .into_iter()
                .map(|member| TargetHealthSample {
                    target_group: group.name.as_str(),
                    target: format!("{}:{}", member.target.id, member.target.port),
                    healthy: member.health() == HealthState::Healthy,
                })
        });
        let mut text = self.metrics.render(samples);
        self.tables.render(&mut text);
        text
    }
}
