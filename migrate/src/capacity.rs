//! Each service's capacity, for `migrate status`: on AWS, its ECS task counts
//! (ECS DescribeServices) and its scaling limits (Application Auto Scaling
//! DescribeScalableTargets); everywhere, its target group's registered and
//! healthy targets.
//!
//! A target group names its ECS service with the tag `ficus:ecs-service`,
//! whose value is the service as Application Auto Scaling names it,
//! `service/<cluster>/<service>` (infrastructure/aws/platform.yaml sets it).
//! A group without the tag (the local stack) is not read from ECS at all.
//! Nothing here fails a command: what cannot be read (no tag, AccessDenied,
//! no ECS at the endpoint) is said, and the target counts remain.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use crate::elb::{Elb, TargetHealth};

/// The target group tag naming its ECS service: `service/<cluster>/<service>`.
pub const ECS_SERVICE_TAG: &str = "ficus:ecs-service";

/// How long status waits for ECS and Application Auto Scaling, all retries
/// included: status shows what it has rather than wait for a slow endpoint.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One target group's capacity.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Capacity {
    /// Targets registered in the target group, and how many are healthy.
    pub registered: usize,
    pub healthy: usize,
    /// The ECS service (`service/<cluster>/<service>`), from the group's tag.
    pub ecs_service: Option<String>,
    /// ECS's task counts, when read.
    pub tasks: Option<Tasks>,
    /// Application Auto Scaling's limits, when the service has a scalable target.
    pub scaling: Option<Scaling>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Tasks {
    pub running: i32,
    pub desired: i32,
    pub pending: i32,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Scaling {
    pub min: i32,
    pub max: i32,
}

/// The capacity `migrate status` shows: the monolith's (key `monolith`) and
/// each route's, read with one DescribeTags call for all their target groups
/// (and the monolith's target health, which status does not read otherwise).
pub async fn for_status(
    elb: &Elb,
    sdk: &SdkConfig,
    monolith_tg: &str,
    routes: &[(&str, &str, &[TargetHealth])],
) -> BTreeMap<String, Capacity> {
    let monolith_targets = elb.target_health(monolith_tg).await.unwrap_or_default();
    let mut names: Vec<(String, String)> = vec![("monolith".to_owned(), monolith_tg.to_owned())];
    let mut health: BTreeMap<String, Vec<TargetHealth>> =
        BTreeMap::from([(monolith_tg.to_owned(), monolith_targets)]);
    for (route, tg, targets) in routes {
        names.push(((*route).to_owned(), (*tg).to_owned()));
        health.insert((*tg).to_owned(), targets.to_vec());
    }
    let arns: Vec<String> = health.keys().cloned().collect();
    let (mut tags, problem) = match elb.tags(&arns).await {
        Ok(tags) => (tags, None),
        Err(err) => (BTreeMap::new(), Some(format!("{err:#}"))),
    };
    let groups = health
        .into_iter()
        .map(|(arn, targets)| {
            let group_tags = tags.remove(&arn).unwrap_or_default();
            (arn, (group_tags, targets))
        })
        .collect();
    let by_arn = read(sdk, &groups, problem.as_deref()).await;
    names
        .into_iter()
        .filter_map(|(name, arn)| Some((name, by_arn.get(&arn)?.clone())))
        .collect()
}

/// The ECS service a tag value names: (cluster, service).
fn parse_ecs_service(value: &str) -> Option<(&str, &str)> {
    let rest = value.strip_prefix("service/")?;
    let (cluster, service) = rest.split_once('/')?;
    (!cluster.is_empty() && !service.is_empty() && !service.contains('/'))
        .then_some((cluster, service))
}

/// The capacity of each target group (by ARN): `groups` holds each group's
/// tags (empty when unread) and target health; `tag_problem` is why the tags
/// could not be read, if so.
pub async fn read(
    sdk: &SdkConfig,
    groups: &BTreeMap<String, (BTreeMap<String, String>, Vec<TargetHealth>)>,
    tag_problem: Option<&str>,
) -> BTreeMap<String, Capacity> {
    let mut capacities: BTreeMap<String, Capacity> = groups
        .iter()
        .map(|(arn, (tags, targets))| {
            let mut capacity = Capacity {
                registered: targets.len(),
                healthy: targets.iter().filter(|t| t.state == "healthy").count(),
                ..Capacity::default()
            };
            match (tags.get(ECS_SERVICE_TAG), tag_problem) {
                (Some(value), _) if parse_ecs_service(value).is_some() => {
                    capacity.ecs_service = Some(value.clone());
                }
                (Some(value), _) => capacity.notes.push(format!(
                    "its {ECS_SERVICE_TAG} tag {value:?} is not service/<cluster>/<service>"
                )),
                (None, Some(problem)) => capacity
                    .notes
                    .push(format!("its tags could not be read ({problem})")),
                (None, None) => capacity.notes.push(format!(
                    "not an ECS service: its target group has no {ECS_SERVICE_TAG} tag"
                )),
            }
            (arn.clone(), capacity)
        })
        .collect();
    let services: Vec<String> = capacities
        .values()
        .filter_map(|c| c.ecs_service.clone())
        .collect();
    if services.is_empty() {
        return capacities;
    }
    let (tasks, scaling) = tokio::join!(ecs_tasks(sdk, &services), scaling_limits(sdk, &services));
    for capacity in capacities.values_mut() {
        let Some(service) = capacity.ecs_service.clone() else {
            continue;
        };
        match &tasks {
            Ok(found) => match found.get(&service) {
                Some(counts) => capacity.tasks = Some(*counts),
                None => capacity.notes.push(format!(
                    "ECS has no service {service} (missing or inactive)"
                )),
            },
            Err(why) => capacity.notes.push(why.clone()),
        }
        match &scaling {
            Ok(found) => match found.get(&service) {
                Some(limits) => capacity.scaling = Some(*limits),
                None => capacity
                    .notes
                    .push("no scalable target: its task count is fixed".to_owned()),
            },
            Err(why) => capacity.notes.push(why.clone()),
        }
    }
    capacities
}

/// ECS's task counts per `service/<cluster>/<service>`: one DescribeServices
/// call per cluster and 10 services (the API's limit).
async fn ecs_tasks(
    sdk: &SdkConfig,
    services: &[String],
) -> Result<BTreeMap<String, Tasks>, String> {
    let config = aws_sdk_ecs::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .build();
    let client = aws_sdk_ecs::Client::from_conf(config);
    let mut by_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (cluster, service) in services.iter().filter_map(|s| parse_ecs_service(s)) {
        by_cluster.entry(cluster).or_default().push(service);
    }
    let mut found = BTreeMap::new();
    for (cluster, names) in by_cluster {
        for chunk in names.chunks(10) {
            let call = client
                .describe_services()
                .cluster(cluster)
                .set_services(Some(chunk.iter().map(|s| (*s).to_owned()).collect()))
                .send();
            let out = match tokio::time::timeout(READ_TIMEOUT, call).await {
                Ok(Ok(out)) => out,
                Ok(Err(err)) => return Err(unreadable("ECS", "ecs", "DescribeServices", err)),
                Err(_) => return Err(timed_out("ECS DescribeServices")),
            };
            for service in out.services() {
                if service.status() != Some("ACTIVE") && service.status().is_some() {
                    continue;
                }
                let Some(name) = service.service_name() else {
                    continue;
                };
                found.insert(
                    format!("service/{cluster}/{name}"),
                    Tasks {
                        running: service.running_count(),
                        desired: service.desired_count(),
                        pending: service.pending_count(),
                    },
                );
            }
        }
    }
    Ok(found)
}

/// Application Auto Scaling's limits per `service/<cluster>/<service>`.
async fn scaling_limits(
    sdk: &SdkConfig,
    services: &[String],
) -> Result<BTreeMap<String, Scaling>, String> {
    let config = aws_sdk_applicationautoscaling::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .build();
    let client = aws_sdk_applicationautoscaling::Client::from_conf(config);
    let mut found = BTreeMap::new();
    // DescribeScalableTargets takes at most 50 resource ids.
    for chunk in services.chunks(50) {
        let call = client
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .set_resource_ids(Some(chunk.to_vec()))
            .send();
        let out = match tokio::time::timeout(READ_TIMEOUT, call).await {
            Ok(Ok(out)) => out,
            Ok(Err(err)) => {
                return Err(unreadable(
                    "Application Auto Scaling",
                    "application-autoscaling",
                    "DescribeScalableTargets",
                    err,
                ));
            }
            Err(_) => {
                return Err(timed_out(
                    "Application Auto Scaling DescribeScalableTargets",
                ));
            }
        };
        for target in out.scalable_targets() {
            found.insert(
                target.resource_id().to_owned(),
                Scaling {
                    min: target.min_capacity(),
                    max: target.max_capacity(),
                },
            );
        }
    }
    Ok(found)
}

fn timed_out(what: &str) -> String {
    format!("{what} did not answer within {} s", READ_TIMEOUT.as_secs())
}

/// Why a read failed, in one line: a refused permission names it.
fn unreadable<E, R>(service: &str, iam: &str, action: &str, err: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (err.code(), err.message()) {
        (Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation"), _) => format!(
            "{service} {action} was refused: the caller lacks `{iam}:{action}` (infrastructure/aws/migrate-policy.json grants it)"
        ),
        (Some(code), message) => {
            format!(
                "{service} {action} failed: {code}: {}",
                message.unwrap_or_default()
            )
        }
        (None, _) => match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                format!("{service} {action}: cannot reach the endpoint")
            }
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => format!(
                "{service} {action}: the endpoint does not speak {service} (the local stack has none)"
            ),
            _ => format!(
                "{service} {action} failed: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            ),
        },
    }
}

/// The one-line text of a capacity: `tasks:` in status.
pub fn describe(capacity: &Capacity) -> String {
    let targets = format!(
        "{} healthy of {} registered {}",
        capacity.healthy,
        capacity.registered,
        if capacity.registered == 1 {
            "target"
        } else {
            "targets"
        }
    );
    let mut parts = Vec::new();
    match (&capacity.tasks, &capacity.ecs_service) {
        (Some(tasks), Some(service)) => parts.push(format!(
            "{} running, {} desired, {} pending ({service}); {targets}",
            tasks.running, tasks.desired, tasks.pending
        )),
        _ => parts.push(targets),
    }
    if let Some(scaling) = &capacity.scaling {
        parts.push(format!("scales {}-{}", scaling.min, scaling.max));
    }
    parts.extend(capacity.notes.iter().cloned());
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_names_a_cluster_and_a_service() {
        assert_eq!(
            parse_ecs_service("service/ficus-Cluster-1X/users"),
            Some(("ficus-Cluster-1X", "users"))
        );
        for bad in [
            "users",
            "service/users",
            "service//users",
            "service/c/",
            "service/c/u/x",
            "svc/c/u",
        ] {
            assert_eq!(parse_ecs_service(bad), None, "{bad}");
        }
    }

    #[test]
    fn describe_says_what_it_has() {
        let local = Capacity {
            registered: 1,
            healthy: 1,
            notes: vec![
                "not an ECS service: its target group has no ficus:ecs-service tag".to_owned(),
            ],
            ..Capacity::default()
        };
        assert_eq!(
            describe(&local),
            "1 healthy of 1 registered target; not an ECS service: its target group has no ficus:ecs-service tag"
        );
        let aws = Capacity {
            registered: 2,
            healthy: 2,
            ecs_service: Some("service/c/users".to_owned()),
            tasks: Some(Tasks {
                running: 2,
                desired: 3,
                pending: 1,
            }),
            scaling: Some(Scaling { min: 1, max: 4 }),
            notes: Vec::new(),
        };
        assert_eq!(
            describe(&aws),
            "2 running, 3 desired, 1 pending (service/c/users); 2 healthy of 2 registered targets; scales 1-4"
        );
    }
}
