//! The compiled, immutable routing table of one listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cloudwatch::{self, Cell};
use crate::dataplane::policy::HeadPolicy;
use crate::dataplane::sticky::{self, CookieKey, Presented};
use crate::dataplane::targets::{TargetGroupRuntime, TargetRuntime};
use crate::health::HealthState;
use crate::matcher::{Conditions, PathPrefilter, RequestView};
use crate::metrics::{Metrics, StatusClassCounters};
use crate::model::{
    ActionKind, LoadBalancerAttributes, LoadBalancingAlgorithm, State, TargetGroupAttributes,
};

/// Group-level stickiness without a `DurationSeconds` (AWS requires one; a
/// stack file may leave it out): one hour.
const DEFAULT_GROUP_STICKINESS: u32 = 3600;

/// The routing tables of every listener, in the order of `State::listeners`.
pub struct RouteTables {
    pub listeners: Vec<(String, RouteTable)>,
    /// What the load balancer's attributes say about request heads (the
    /// process's defaults under them); read once per request with the tables.
    pub head: HeadPolicy,
}

impl RouteTables {
    pub fn compile(
        state: &State,
        groups: &HashMap<String, Arc<TargetGroupRuntime>>,
        metrics: &Metrics,
        cloudwatch: &cloudwatch::Registry,
        head: HeadPolicy,
    ) -> RouteTables {
        let listeners = state
            .listeners
            .iter()
            .map(|listener| {
                let counting = Counting {
                    metrics,
                    cloudwatch,
                    load_balancer_arn: &listener.load_balancer_arn,
                };
                (
                    listener.arn.clone(),
                    RouteTable::compile(state, &listener.arn, listener.port, groups, &counting),
                )
            })
            .collect();
        metrics.next_generation();
        // The data-plane listener is the first; its load balancer's
        // attributes decide how request heads are treated.
        let head = match state
            .listeners
            .first()
            .and_then(|listener| state.load_balancer(&listener.load_balancer_arn))
        {
            Some(load_balancer) => head.with_attributes(&load_balancer.attributes),
            None => head,
        };
        RouteTables { listeners, head }
    }

    /// The table the data-plane listener routes by (the first listener).
    pub fn primary(&self) -> Option<&RouteTable> {
        self.listeners.first().map(|(_, table)| table)
    }
}

/// Where a compiled table's requests are counted.
struct Counting<'a> {
    metrics: &'a Metrics,
    cloudwatch: &'a cloudwatch::Registry,
    load_balancer_arn: &'a str,
}

pub struct RouteTable {
    /// The counters of the listener's load balancer itself (its own error
    /// answers), for CloudWatch; `None` when counting is off.
    pub load_balancer_cell: Option<Arc<Cell>>,
    /// The listener's declared port (`X-Forwarded-Port`, `#{port}`).
    pub port: u16,
    /// The load balancer's DNS name: the `Host` sent for a request that had
    /// none (HTTP/1.0).
    pub dns_name: Box<str>,
    /// The attributes of the listener's load balancer (idle timeout,
    /// keep-alive, desync mode, header handling, HTTP/2).
    pub attributes: LoadBalancerAttributes,
    pub rules: Vec<CompiledRule>,
    /// For each rule, the quick test of its path patterns (see
    /// [`PathPrefilter`]); kept apart from the rules so the scan over them
    /// stays in a few cache lines.
    prefilters: Vec<Option<PathPrefilter>>,
}

impl RouteTable {
    fn compile(
        state: &State,
        listener_arn: &str,
        port: u16,
        groups: &HashMap<String, Arc<TargetGroupRuntime>>,
        counting: &Counting<'_>,
    ) -> RouteTable {
        let metrics = counting.metrics;
        let rules = state
            .rules_of(listener_arn)
            .into_iter()
            .filter_map(|rule| {
                let label = rule.priority.as_api_string();
                let terminal = rule.actions.iter().max_by_key(|a| a.order.unwrap_or(0))?;
                let action = match &terminal.kind {
                    ActionKind::Forward {
                        target_groups,
                        stickiness_enabled,
                        stickiness_duration_seconds,
                        ..
                    } => {
                        let stickiness = stickiness_enabled.then(|| {
                            Duration::from_secs(u64::from(
                                stickiness_duration_seconds.unwrap_or(DEFAULT_GROUP_STICKINESS),
                            ))
                        });
                        CompiledAction::Forward(Forward::compile(
                            target_groups,
                            stickiness,
                            state,
                            &label,
                            groups,
                            counting,
                        ))
                    }
                    ActionKind::FixedResponse {
                        status_code,
                        content_type,
                        message_body,
                    } => CompiledAction::FixedResponse {
                        status: status_code
                            .parse()
                            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
                        content_type: content_type
                            .clone()
                            .unwrap_or_else(|| "text/plain; charset=utf-8".to_owned()),
                        body: bytes::Bytes::from(message_body.clone().unwrap_or_default()),
                        counters: metrics.requests("", &label),
                    },
                    ActionKind::Redirect {
                        protocol,
                        host,
                        port,
                        path,
                        query,
                        status_code,
                    } => {
                        let [protocol, host, port, path, query] =
                            crate::model::redirect_parts(protocol, host, port, path, query);
                        CompiledAction::Redirect {
                            template: RedirectTemplate {
                                protocol,
                                host,
                                port,
                                path,
                                query,
                                permanent: status_code == "HTTP_301",
                            },
                            counters: metrics.requests("", &label),
                        }
                    }
                };
                Some(CompiledRule {
                    priority: match rule.priority {
                        crate::model::Priority::Number(number) => number,
                        crate::model::Priority::Default => 0,
                    },
                    conditions: Conditions::compile(&rule.conditions),
                    action,
                })
            })
            .collect::<Vec<CompiledRule>>();
        let prefilters = rules
            .iter()
            .map(|rule| rule.conditions.path_prefilter())
            .collect();
        let dns_name = state
            .load_balancers
            .iter()
            .find(|lb| lb.arn == counting.load_balancer_arn)
            .map_or("localhost", |lb| lb.dns_name.as_str())
            .into();
        RouteTable {
            load_balancer_cell: counting.cloudwatch.cell(counting.load_balancer_arn, None),
            port,
            dns_name,
            attributes: state
                .load_balancer(counting.load_balancer_arn)
                .map(|lb| lb.attributes.clone())
                .unwrap_or_default(),
            rules,
            prefilters,
        }
    }

    /// Every weighted target group of the table's forward actions (a group
    /// forwarded to by several rules appears once per rule).
    pub fn weighted_groups(&self) -> impl Iterator<Item = &WeightedGroup> {
        self.rules.iter().flat_map(|rule| match &rule.action {
            CompiledAction::Forward(forward) => forward.groups.as_slice(),
            _ => &[],
        })
    }

    /// The first rule whose conditions all match.
    pub fn route(&self, request: &RequestView<'_>) -> Option<&CompiledRule> {
        self.route_index(request).map(|index| &self.rules[index])
    }

    /// The index in `rules` of the first rule whose conditions all match.
    pub fn route_index(&self, request: &RequestView<'_>) -> Option<usize> {
        self.prefilters
            .iter()
            .zip(&self.rules)
            .position(|(prefilter, rule)| {
                prefilter.is_none_or(|filter| filter.may_match(request.path))
                    && rule.conditions.matches(request)
            })
    }
}

pub struct CompiledRule {
    /// The rule's priority, 0 for the default rule (the access log's
    /// `matched_rule_priority`).
    pub priority: u32,
    pub conditions: Conditions,
    pub action: CompiledAction,
}

pub enum CompiledAction {
    Forward(Forward),
    FixedResponse {
        status: http::StatusCode,
        content_type: String,
        body: bytes::Bytes,
        counters: Arc<StatusClassCounters>,
    },
    Redirect {
        template: RedirectTemplate,
        counters: Arc<StatusClassCounters>,
    },
}

/// A redirect action with AWS's defaults filled in.
pub struct RedirectTemplate {
    pub protocol: String,
    pub host: String,
    pub port: String,
    pub path: String,
    pub query: String,
    pub permanent: bool,
}

/// A forward action: one or more weighted target groups.
pub struct Forward {
    /// Groups with a weight above zero, with cumulative weight bounds.
    groups: Vec<WeightedGroup>,
    /// With group-level stickiness, the groups of weight 0: only clients
    /// whose `AWSALBTG` cookie names one go there (indexes after `groups`).
    resting: Vec<WeightedGroup>,
    total_weight: u64,
    /// Coprime to `total_weight`: `n * stride % total` visits every slot once
    /// per cycle, so the split is exact and interleaved.
    stride: u64,
    next: AtomicU64,
    /// Group-level stickiness (`TargetGroupStickinessConfig`): how long the
    /// `AWSALBTG` cookie keeps a client on its group; `None` when off.
    pub stickiness: Option<Duration>,
    /// Whether a request's cookies matter (group or target stickiness).
    uses_cookies: bool,
}

pub struct WeightedGroup {
    /// Exclusive upper bound of this group's slots in `0..total_weight`.
    upper: u64,
    /// What an `AWSALBTG` cookie naming this group holds.
    sticky_id: u64,
    pub group: Option<CompiledTargetGroup>,
    pub counters: Arc<StatusClassCounters>,
    /// The CloudWatch counters of this target group behind the listener's
    /// load balancer; `None` when counting is off.
    pub cell: Option<Arc<Cell>>,
}

impl Forward {
    fn compile(
        weighted: &[crate::model::WeightedTargetGroup],
        stickiness: Option<Duration>,
        state: &State,
        rule_label: &str,
        groups: &HashMap<String, Arc<TargetGroupRuntime>>,
        counting: &Counting<'_>,
    ) -> Forward {
        let single = weighted.len() == 1;
        // Group-level stickiness needs more than one group to choose from.
        let stickiness = stickiness.filter(|_| !single);
        let mut total_weight = 0u64;
        let mut compiled = Vec::new();
        let mut resting = Vec::new();
        for entry in weighted {
            // A lone target group gets all traffic whatever its weight.
            let weight = if single { 1 } else { u64::from(entry.weight) };
            if weight == 0 && stickiness.is_none() {
                continue;
            }
            total_weight += weight;
            let group = groups
                .get(&entry.target_group_arn)
                .map(|runtime| CompiledTargetGroup {
                    routing: state
                        .target_group(&entry.target_group_arn)
                        .map(|tg| GroupRouting::of(&tg.attributes))
                        .unwrap_or_default(),
                    targets: runtime
                        .members()
                        .into_iter()
                        .map(|member| (member.authority.clone(), member))
                        .collect(),
                    runtime: Arc::clone(runtime),
                });
            let name = group
                .as_ref()
                .map_or(entry.target_group_arn.as_str(), |g| g.runtime.name.as_str());
            let list = if weight == 0 {
                &mut resting
            } else {
                &mut compiled
            };
            list.push(WeightedGroup {
                upper: total_weight,
                sticky_id: sticky::sticky_id(&[&entry.target_group_arn]),
                counters: counting.metrics.requests(name, rule_label),
                cell: counting
                    .cloudwatch
                    .cell(counting.load_balancer_arn, Some(&entry.target_group_arn)),
                group,
            });
        }
        let stride = coprime_stride(total_weight);
        let uses_cookies = stickiness.is_some()
            || compiled.iter().any(|g| {
                g.group
                    .as_ref()
                    .is_some_and(|g| g.routing.stickiness.is_some())
            });
        Forward {
            stickiness,
            uses_cookies,
            groups: compiled,
            resting,
            total_weight,
            stride,
            // A random start, so frequent republishing does not favour the
            // first slots.
            next: AtomicU64::new(rand::random::<u64>() % total_weight.max(1)),
        }
    }

    /// The index of the target group this request goes to; `None` when
    /// every weight is 0.
    pub fn pick(&self) -> Option<usize> {
        match self.groups.len() {
            0 => None,
            1 => Some(0),
            _ => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let slot = n.wrapping_mul(self.stride) % self.total_weight;
                self.groups.iter().position(|g| slot < g.upper)
            }
        }
    }

    /// Whether this forward reads and sets sticky cookies.
    pub fn uses_cookies(&self) -> bool {
        self.uses_cookies
    }

    /// [`Forward::pick`], except that with group-level stickiness a client
    /// presenting a valid `AWSALBTG` cookie for one of the groups stays on
    /// it, also when its weight is now 0 (as on AWS: stickiness wins over
    /// weights until the cookie expires), as long as the forward lists it
    /// and some group has a weight above 0.
    pub fn pick_sticky(&self, presented: Presented) -> Option<usize> {
        if self.stickiness.is_some()
            && !self.groups.is_empty()
            && let Some(id) = presented.group
            && let Some(index) = self
                .groups
                .iter()
                .chain(&self.resting)
                .position(|g| g.sticky_id == id)
        {
            return Some(index);
        }
        self.pick()
    }

    /// The `Set-Cookie` lines of a response from `target` of `weighted`:
    /// the group cookie when this forward is sticky, the target cookie when
    /// the group is; empty otherwise. Every answer renews them, as on AWS.
    pub fn cookie_lines(
        &self,
        key: &CookieKey,
        weighted: &WeightedGroup,
        target: &TargetRuntime,
    ) -> Vec<u8> {
        let mut lines = Vec::new();
        if !self.uses_cookies {
            return lines;
        }
        let now = std::time::SystemTime::now();
        if let Some(duration) = self.stickiness {
            let names = [sticky::GROUP_COOKIE, sticky::GROUP_CORS_COOKIE];
            sticky::write_set_cookies(&mut lines, key, names, weighted.sticky_id, duration, now);
        }
        if let Some(duration) = weighted.group.as_ref().and_then(|g| g.routing.stickiness) {
            let names = [sticky::TARGET_COOKIE, sticky::TARGET_CORS_COOKIE];
            sticky::write_set_cookies(&mut lines, key, names, target.sticky_id, duration, now);
        }
        lines
    }

    /// The weighted target group at `index` (from [`Forward::pick`]).
    pub fn group(&self, index: usize) -> &WeightedGroup {
        match self.groups.get(index) {
            Some(group) => group,
            None => &self.resting[index - self.groups.len()],
        }
    }

    /// The target a request tries next: the first untried target of
    /// `current` (initially the picked group); once a connection failed and
    /// `current` has no untried target left, one of the forward's other
    /// groups (which then becomes `current`). `tried` holds [`target_key`]s.
    /// A first try goes to the target `prefer` names (an `AWSALB` cookie)
    /// when the group is sticky and that target is registered and not
    /// unhealthy.
    pub fn next_target<'f>(
        &'f self,
        picked: usize,
        current: &mut &'f WeightedGroup,
        tried: &[usize],
        prefer: Option<u64>,
    ) -> Option<&'f Arc<TargetRuntime>> {
        if tried.is_empty()
            && let Some(id) = prefer
            && let Some(group) = &current.group
            && group.routing.stickiness.is_some()
            && let Some((_, target)) = group
                .targets
                .iter()
                .find(|(_, t)| t.sticky_id == id && t.health() != HealthState::Unhealthy)
        {
            return Some(target);
        }
        let untried = |group: &'f WeightedGroup| {
            group
                .group
                .as_ref()
                .and_then(|group| group.pick_excluding(tried))
                .map(|(_, target)| target)
        };
        if let Some(target) = untried(current) {
            return Some(target);
        }
        if tried.is_empty() {
            return None;
        }
        self.others(picked).find_map(|other| {
            let target = untried(other)?;
            *current = other;
            Some(target)
        })
    }

    /// The other target groups with a weight above 0, starting after
    /// `index`: where a request goes when no target of its group could be
    /// reached.
    pub fn others(&self, index: usize) -> impl Iterator<Item = &WeightedGroup> {
        let count = self.groups.len();
        // From a resting group (weight 0), every group above 0 is another.
        let (index, offsets) = if index < count {
            (index, 1..count)
        } else {
            (count.saturating_sub(1), 1..count + 1)
        };
        offsets.map(move |offset| &self.groups[(index + offset) % count])
    }
}

/// The smallest number at or above 0.618 × `total` that is coprime to it.
fn coprime_stride(total: u64) -> u64 {
    if total <= 2 {
        return 1;
    }
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut stride = (total * 618 / 1000).max(1);
    while gcd(stride, total) != 1 {
        stride += 1;
    }
    stride
}

/// A target group's targets as of one routing table.
pub struct CompiledTargetGroup {
    pub runtime: Arc<TargetGroupRuntime>,
    /// How the group picks a target (its attributes).
    pub routing: GroupRouting,
    pub targets: Vec<(Option<http::uri::Authority>, Arc<TargetRuntime>)>,
}

impl CompiledTargetGroup {
    /// A healthy untried target by the group's algorithm; when none is
    /// healthy, any untried one (ALB fails open). Targets in `tried` (by
    /// [`target_key`]; the request could not reach them) are passed over.
    /// `None` when no other target is registered.
    ///
    /// - round robin: the next target in turn; one in slow start is taken
    ///   with the probability of its share so far (else the next healthy);
    /// - weighted random: a random start instead of the turn;
    /// - least outstanding requests: the healthy target with the fewest
    ///   requests in flight (ties: the next in turn).
    pub fn pick_excluding(
        &self,
        tried: &[usize],
    ) -> Option<&(Option<http::uri::Authority>, Arc<TargetRuntime>)> {
        let count = self.targets.len();
        if count == 0 {
            return None;
        }
        let start = match self.routing.algorithm {
            LoadBalancingAlgorithm::WeightedRandom => rand::random::<u32>() as usize,
            _ => self.runtime.next.fetch_add(1, Ordering::Relaxed),
        };
        let untried = |target: &Arc<TargetRuntime>| !tried.contains(&target_key(target));
        let mut candidates = (0..count)
            .map(|offset| &self.targets[(start + offset) % count])
            .filter(|(_, target)| untried(target));
        let first = candidates.next()?;
        let healthy = std::iter::once(first)
            .chain(candidates)
            .filter(|(_, target)| target.health() == HealthState::Healthy);
        if self.routing.algorithm == LoadBalancingAlgorithm::LeastOutstandingRequests {
            return healthy
                .min_by_key(|(_, target)| target.outstanding())
                .or(Some(first));
        }
        let mut warming = None;
        for candidate in healthy {
            if candidate.1.takes_full_share(self.routing.slow_start) {
                return Some(candidate);
            }
            warming.get_or_insert(candidate);
        }
        warming.or(Some(first))
    }
}

/// The target group attributes that decide which target a request goes to.
#[derive(Debug, Clone, Copy)]
pub struct GroupRouting {
    pub algorithm: LoadBalancingAlgorithm,
    /// `slow_start.duration_seconds`; zero when off.
    pub slow_start: Duration,
    /// `stickiness.lb_cookie.duration_seconds` when `stickiness.enabled`.
    pub stickiness: Option<Duration>,
}

impl Default for GroupRouting {
    fn default() -> Self {
        GroupRouting::of(&TargetGroupAttributes::default())
    }
}

impl GroupRouting {
    fn of(attributes: &TargetGroupAttributes) -> GroupRouting {
        GroupRouting {
            algorithm: attributes.algorithm,
            slow_start: Duration::from_secs(u64::from(attributes.slow_start_seconds)),
            stickiness: attributes
                .stickiness_enabled
                .then(|| Duration::from_secs(u64::from(attributes.stickiness_duration_seconds))),
        }
    }
}

/// Identifies a target runtime within one request (its address in memory).
pub fn target_key(target: &Arc<TargetRuntime>) -> usize {
    Arc::as_ptr(target) as usize
}
