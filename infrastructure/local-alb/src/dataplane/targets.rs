//! Runtime state of target groups and targets that outlives routing tables:
//! health, round-robin position, health-check tasks and draining targets.
//!
//! Publishing a configuration syncs this registry: targets that stay
//! registered keep their `Arc<TargetRuntime>` (and so their health and their
//! checker), new targets start `initial` and are probed at once, removed
//! targets go `draining` for the deregistration delay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
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
    tracker: Mutex<HealthTracker>,
    checker: Mutex<Option<AbortHandle>>,
}

impl TargetRuntime {
    fn new(target: Target, workers: usize) -> TargetRuntime {
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

    fn update(&self, change: impl FnOnce(&mut HealthTracker)) {
        let mut tracker = lock(&self.tracker);
        change(&mut tracker);
        self.health.store(tracker.state as u8, Ordering::Relaxed);
    }

    fn stop_checker(&self) {
        if let Some(handle) = lock(&self.checker).take() {
            handle.abort();
        }
    }
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
    deregistration_delay: Duration,
    /// Data-plane worker threads (each target keeps a pool per worker).
    workers: usize,
    /// Set by `start_health_checks`; checkers are spawned on it.
    runtime: OnceLock<tokio::runtime::Handle>,
    probe_client: OnceLock<ProbeClient>,
}

impl Registry {
    pub fn new(deregistration_delay: Duration, workers: usize) -> Registry {
        Registry {
            groups: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            deregistration_delay,
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
                            let fresh = Arc::new(TargetRuntime::new(target.clone(), self.workers));
                            self.spawn_checker(&runtime, &fresh);
                            kept.push(fresh);
                        }
                    }
                }
                for removed in members.drain(..) {
                    removed.stop_checker();
                    removed.update(HealthTracker::drain);
                    draining.push(Draining {
                        target_group_arn: group.arn.clone(),
                        target: removed,
                        until: now + self.deregistration_delay,
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
                checked.update(|t| {
                    t.record(outcome, check.healthy_threshold, check.unhealthy_threshold)
                });
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
