//! Runtime state of target groups and targets that outlives routing tables:
//! health, round-robin position, health-check tasks and draining targets.
//!
//! Publishing a configuration syncs this registry: targets that stay
//! registered keep their `Arc<TargetRuntime>` (and so their health and their
//! checker), new targets start `initial` and are probed at once, removed
//! targets go `draining` for their group's deregistration delay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::task::AbortHandle;

use crate::dataplane::pool::{Address, ConnectionPool};
use crate::dataplane::upstream::UpstreamPool;
use crate::health::{self, HealthState, HealthTracker, ProbeClient};
use crate::model::{HealthCheck, State, Target};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One registered target of one target group.
pub struct TargetRuntime {
    pub target: Target,
    /// `host:port`, `None` when the id is not a valid host (requests to it
    /// fail with 502, health checks fail).
    pub authority: Option<Authority>,
    /// The target's socket address when its id is an IP address.
    socket_address: Option<std::net::SocketAddr>,
    /// Idle keep-alive connections to the target, per worker thread: for
    /// HTTP/2 clients (hyper's client connections) ...
    pub(crate) pool: Arc<ConnectionPool>,
    /// ... and for HTTP/1.x clients (bare sockets).
    pub(crate) upstreams: UpstreamPool,
    /// The [`HealthState`] as `u8`, read lock-free on the request path.
    health: AtomicU8,
    /// What an `AWSALB` cookie naming this target holds.
    pub sticky_id: u64,
    /// Requests forwarded to the target and not finished yet.
    outstanding: AtomicUsize,
    /// When the target last became healthy, as milliseconds since
    /// [`epoch`] plus one (0: not healthy yet), for slow start.
    healthy_since: AtomicU64,
    tracker: Mutex<HealthTracker>,
    checker: Mutex<Option<AbortHandle>>,
}

impl TargetRuntime {
    fn new(target_group_arn: &str, target: Target, workers: usize) -> TargetRuntime {
        let sticky_id = crate::dataplane::sticky::sticky_id(&[
            target_group_arn,
            &target.id,
            &target.port.to_string(),
        ]);
        let authority = format!("{}:{}", target.id, target.port).parse().ok();
        let socket_address = target
            .id
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, target.port));
        TargetRuntime {
            target,
            authority,
            socket_address,
            pool: Arc::new(ConnectionPool::new(workers)),
            upstreams: UpstreamPool::new(workers),
            health: AtomicU8::new(HealthState::Initial as u8),
            sticky_id,
            outstanding: AtomicUsize::new(0),
            healthy_since: AtomicU64::new(0),
            tracker: Mutex::new(HealthTracker::default()),
            checker: Mutex::new(None),
        }
    }

    /// Where to connect; `None` when the id is not a valid host.
    pub fn address(&self) -> Option<Address<'_>> {
        match (self.socket_address, &self.authority) {
            (Some(socket), _) => Some(Address::Socket(socket)),
            (None, Some(authority)) => Some(Address::HostPort(authority.as_str())),
            (None, None) => None,
        }
    }

    /// A forwarded request could not connect: the target is taken out of
    /// rotation at once (it comes back through its health checks).
    pub fn connection_failed(&self, error: &std::io::Error) {
        if self.health() == HealthState::Unhealthy {
            return;
        }
        self.update(|tracker| tracker.mark_unreachable(error));
    }

    pub fn health(&self) -> HealthState {
        HealthState::from_u8(self.health.load(Ordering::Relaxed))
    }

    pub fn tracker(&self) -> HealthTracker {
        lock(&self.tracker).clone()
    }

    /// Applies `change` to the health; true when the target just became
    /// healthy (its slow start, if any, begins now).
    fn update(&self, change: impl FnOnce(&mut HealthTracker)) -> bool {
        let mut tracker = lock(&self.tracker);
        change(&mut tracker);
        let before = self.health.swap(tracker.state as u8, Ordering::Relaxed);
        let became_healthy =
            tracker.state == HealthState::Healthy && before != HealthState::Healthy as u8;
        if became_healthy {
            let since = epoch().elapsed().as_millis() as u64 + 1;
            self.healthy_since.store(since, Ordering::Relaxed);
        }
        became_healthy
    }

    /// Requests in flight to this target.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request in flight to this target until the guard drops.
    pub fn begin_request(&self) -> InFlight<'_> {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Whether a healthy target takes its full share of requests now: yes
    /// unless it became healthy less than `slow_start` ago, in which case
    /// it takes a share growing linearly over that time (by a random draw).
    pub fn takes_full_share(&self, slow_start: Duration) -> bool {
        if slow_start.is_zero() {
            return true;
        }
        let since = self.healthy_since.load(Ordering::Relaxed);
        if since == 0 {
            return true;
        }
        let healthy_for = epoch()
            .elapsed()
            .saturating_sub(Duration::from_millis(since - 1));
        healthy_for >= slow_start
            || rand::random::<f64>() < healthy_for.as_secs_f64() / slow_start.as_secs_f64()
    }

    fn stop_checker(&self) {
        if let Some(handle) = lock(&self.checker).take() {
            handle.abort();
        }
    }
}

/// A request in flight to a target (see [`TargetRuntime::begin_request`]).
pub struct InFlight<'t>(&'t TargetRuntime);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The instant slow-start times are measured from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One target group's runtime state.
pub struct TargetGroupRuntime {
    pub arn: String,
    pub name: String,
    /// Round-robin position, shared by every routing table generation.
    pub next: AtomicUsize,
    health_check: Mutex<HealthCheck>,
    members: Mutex<Vec<Arc<TargetRuntime>>>,
}

impl TargetGroupRuntime {
    pub fn members(&self) -> Vec<Arc<TargetRuntime>> {
        lock(&self.members).clone()
    }

    fn health_check(&self) -> HealthCheck {
        lock(&self.health_check).clone()
    }

    /// Whether a member other than `target` is healthy.
    fn has_other_healthy(&self, target: &Arc<TargetRuntime>) -> bool {
        lock(&self.members)
            .iter()
            .any(|m| !Arc::ptr_eq(m, target) && m.health() == HealthState::Healthy)
    }
}

struct Draining {
    target_group_arn: String,
    target: Arc<TargetRuntime>,
    until: Instant,
}

/// All target groups' runtime state.
pub struct Registry {
    groups: Mutex<HashMap<String, Arc<TargetGroupRuntime>>>,
    draining: Mutex<Vec<Draining>>,
    /// What target groups' unset attributes stand for.
    defaults: crate::attributes::AttributeDefaults,
    /// Data-plane worker threads (each target keeps a pool per worker).
    workers: usize,
    /// Set by `start_health_checks`; checkers are spawned on it.
    runtime: OnceLock<tokio::runtime::Handle>,
    probe_client: OnceLock<ProbeClient>,
}

impl Registry {
    pub fn new(defaults: crate::attributes::AttributeDefaults, workers: usize) -> Registry {
        Registry {
            groups: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            defaults,
            workers: workers.max(1),
            runtime: OnceLock::new(),
            probe_client: OnceLock::new(),
        }
    }

    /// Brings the registry in line with `state`; returns the runtime of every
    /// target group in `state`, with its members in registration order.
    pub fn sync(&self, state: &State) -> HashMap<String, Arc<TargetGroupRuntime>> {
        let mut groups = lock(&self.groups);
        let mut draining = lock(&self.draining);
        let now = Instant::now();
        draining.retain(|d| d.until > now);
        let mut next: HashMap<String, Arc<TargetGroupRuntime>> = HashMap::new();
        for group in &state.target_groups {
            let runtime = groups.remove(&group.arn).unwrap_or_else(|| {
                Arc::new(TargetGroupRuntime {
                    arn: group.arn.clone(),
                    name: group.name.clone(),
                    next: AtomicUsize::new(0),
                    health_check: Mutex::new(group.health_check.clone()),
                    members: Mutex::new(Vec::new()),
                })
            });
            *lock(&runtime.health_check) = group.health_check.clone();
            {
                let mut members = lock(&runtime.members);
                let mut kept = Vec::with_capacity(group.targets.len());
                for target in &group.targets {
                    if kept
                        .iter()
                        .any(|k: &Arc<TargetRuntime>| &k.target == target)
                    {
                        continue;
                    }
                    match members.iter().position(|m| &m.target == target) {
                        Some(index) => kept.push(members.swap_remove(index)),
                        None => {
                            draining.retain(|d| {
                                !(d.target_group_arn == group.arn && &d.target.target == target)
                            });
                            let fresh = Arc::new(TargetRuntime::new(
                                &group.arn,
                                target.clone(),
                                self.workers,
                            ));
                            self.spawn_checker(&runtime, &fresh);
                            kept.push(fresh);
                        }
                    }
                }
                let delay = group.attributes.deregistration_delay(&self.defaults);
                for removed in members.drain(..) {
                    removed.stop_checker();
                    removed.update(HealthTracker::drain);
                    draining.push(Draining {
                        target_group_arn: group.arn.clone(),
                        target: removed,
                        until: now + delay,
                    });
                }
                *members = kept;
            }
            next.insert(group.arn.clone(), runtime);
        }
        // Target groups that are gone: their targets stop being checked.
        for (_, gone) in groups.drain() {
            for member in lock(&gone.members).drain(..) {
                member.stop_checker();
            }
        }
        draining.retain(|d| next.contains_key(&d.target_group_arn));
        *groups = next.clone();
        next
    }

    /// Starts a checker for every registered target; later registrations get
    /// one as they are published.
    pub fn start_health_checks(&self, runtime: tokio::runtime::Handle) {
        if self.runtime.set(runtime).is_err() {
            return;
        }
        let groups: Vec<_> = lock(&self.groups).values().cloned().collect();
        for group in groups {
            for member in group.members() {
                self.spawn_checker(&group, &member);
            }
        }
    }

    fn spawn_checker(&self, group: &Arc<TargetGroupRuntime>, target: &Arc<TargetRuntime>) {
        let Some(runtime) = self.runtime.get() else {
            return;
        };
        let client = self.probe_client.get_or_init(health::probe_client).clone();
        let group = Arc::clone(group);
        let checked = Arc::clone(target);
        let task = runtime.spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                let check = group.health_check();
                let outcome = match &checked.authority {
                    Some(authority) => health::probe(&client, authority.as_str(), &check).await,
                    None => health::ProbeOutcome::ConnectionFailed,
                };
                let became_healthy = checked.update(|t| {
                    t.record(outcome, check.healthy_threshold, check.unhealthy_threshold)
                });
                if became_healthy && !group.has_other_healthy(&checked) {
                    // The only healthy target takes every request: no slow start.
                    checked.healthy_since.store(0, Ordering::Relaxed);
                }
                let interval = Duration::from_secs(u64::from(check.interval_seconds.max(1)));
                tokio::time::sleep_until(started + interval).await;
            }
        });
        let mut slot = lock(&target.checker);
        if let Some(previous) = slot.replace(task.abort_handle()) {
            previous.abort();
        }
    }

    /// The registered or draining runtime of `target` in a target group.
    pub fn find(&self, target_group_arn: &str, target: &Target) -> Option<Arc<TargetRuntime>> {
        if let Some(group) = lock(&self.groups).get(target_group_arn)
            && let Some(found) = lock(&group.members).iter().find(|m| &m.target == target)
        {
            return Some(Arc::clone(found));
        }
        let now = Instant::now();
        lock(&self.draining)
            .iter()
            .find(|d| {
                d.until > now
                    && d.target_group_arn == target_group_arn
                    && &d.target.target == target
            })
            .map(|d| Arc::clone(&d.target))
    }

    pub fn draining_targets(&self, target_group_arn: &str) -> Vec<Target> {
        let now = Instant::now();
        let mut draining = lock(&self.draining);
        draining.retain(|d| d.until > now);
        draining
            .iter()
            .filter(|d| d.target_group_arn == target_group_arn)
            .map(|d| d.target.target.clone())
            .collect()
    }

    /// Every registered target group, sorted by name.
    pub fn groups(&self) -> Vec<Arc<TargetGroupRuntime>> {
        let mut groups: Vec<_> = lock(&self.groups).values().cloned().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name).then(a.arn.cmp(&b.arn)));
        groups
    }

    /// Stops every health checker (the data plane is going away).
    pub fn stop_all(&self) {
        for group in lock(&self.groups).values() {
            for member in lock(&group.members).iter() {
                member.stop_checker();
            }
        }
    }
}
