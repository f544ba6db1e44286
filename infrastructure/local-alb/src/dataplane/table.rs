//! The compiled, immutable routing table of one listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cloudwatch::{self, Cell};
use crate::dataplane::targets::{TargetGroupRuntime, TargetRuntime};
use crate::health::HealthState;
use crate::matcher::{Conditions, PathPrefilter, RequestView};
use crate::metrics::{Metrics, StatusClassCounters};
use crate::model::{ActionKind, State};

/// The routing tables of every listener, in the order of `State::listeners`.
pub struct RouteTables {
    pub listeners: Vec<(String, RouteTable)>,
}

impl RouteTables {
    pub fn compile(
        state: &State,
        groups: &HashMap<String, Arc<TargetGroupRuntime>>,
        metrics: &Metrics,
        cloudwatch: &cloudwatch::Registry,
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
        RouteTables { listeners }
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
                    ActionKind::Forward { target_groups, .. } => CompiledAction::Forward(
                        Forward::compile(target_groups, &label, groups, counting),
                    ),
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
        RouteTable {
            load_balancer_cell: counting.cloudwatch.cell(counting.load_balancer_arn, None),
            port,
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
    total_weight: u64,
    /// Coprime to `total_weight`: `n * stride % total` visits every slot once
    /// per cycle, so the split is exact and interleaved.
    stride: u64,
    next: AtomicU64,
}

pub struct WeightedGroup {
    /// Exclusive upper bound of this group's slots in `0..total_weight`.
    upper: u64,
    pub group: Option<CompiledTargetGroup>,
    pub counters: Arc<StatusClassCounters>,
    /// The CloudWatch counters of this target group behind the listener's
    /// load balancer; `None` when counting is off.
    pub cell: Option<Arc<Cell>>,
}

impl Forward {
    fn compile(
        weighted: &[crate::model::WeightedTargetGroup],
        rule_label: &str,
        groups: &HashMap<String, Arc<TargetGroupRuntime>>,
        counting: &Counting<'_>,
    ) -> Forward {
        let single = weighted.len() == 1;
        let mut total_weight = 0u64;
        let mut compiled = Vec::new();
        for entry in weighted {
            // A lone target group gets all traffic whatever its weight.
            let weight = if single { 1 } else { u64::from(entry.weight) };
            if weight == 0 {
                continue;
            }
            total_weight += weight;
            let group = groups
                .get(&entry.target_group_arn)
                .map(|runtime| CompiledTargetGroup {
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
            compiled.push(WeightedGroup {
                upper: total_weight,
                counters: counting.metrics.requests(name, rule_label),
                cell: counting
                    .cloudwatch
                    .cell(counting.load_balancer_arn, Some(&entry.target_group_arn)),
                group,
            });
        }
        let stride = coprime_stride(total_weight);
        Forward {
            groups: compiled,
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

    /// The weighted target group at `index` (from [`Forward::pick`]).
    pub fn group(&self, index: usize) -> &WeightedGroup {
        &self.groups[index]
    }

    /// The target a request tries next: the first untried target of
    /// `current` (initially the picked group); once a connection failed and
    /// `current` has no untried target left, one of the forward's other
    /// groups (which then becomes `current`). `tried` holds [`target_key`]s.
    pub fn next_target<'f>(
        &'f self,
        picked: usize,
        current: &mut &'f WeightedGroup,
        tried: &[usize],
    ) -> Option<&'f Arc<TargetRuntime>> {
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
        (1..count).map(move |offset| &self.groups[(index + offset) % count])
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
    pub targets: Vec<(Option<http::uri::Authority>, Arc<TargetRuntime>)>,
}

impl CompiledTargetGroup {
    /// Round robin over healthy targets; when none is healthy, over all of
    /// them (ALB fails open). Targets in `tried` (by [`target_key`]; the
    /// request could not reach them) are passed over. `None` when no other
    /// target is registered.
    pub fn pick_excluding(
        &self,
        tried: &[usize],
    ) -> Option<&(Option<http::uri::Authority>, Arc<TargetRuntime>)> {
        let count = self.targets.len();
        if count == 0 {
            return None;
        }
        let start = self.runtime.next.fetch_add(1, Ordering::Relaxed);
        let untried = |target: &Arc<TargetRuntime>| !tried.contains(&target_key(target));
        let mut candidates = (0..count)
            .map(|offset| &self.targets[(start + offset) % count])
            .filter(|(_, target)| untried(target));
        let first = candidates.next()?;
        if first.1.health() == HealthState::Healthy {
            return Some(first);
        }
        candidates
            .find(|(_, target)| target.health() == HealthState::Healthy)
            .or(Some(first))
    }
}

/// Identifies a target runtime within one request (its address in memory).
pub fn target_key(target: &Arc<TargetRuntime>) -> usize {
    Arc::as_ptr(target) as usize
}
