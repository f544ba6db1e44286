#!/usr/bin/env python3
"""Checks a ficus deployment made by scripts/deploy, read back from AWS (or
moto_server, with AWS_ENDPOINT_URL): the stacks, the listener and its default
action, the monolith's rule and its tag, the four target groups, the ECS
services, task definitions and task roles, each service's scaling (scalable
target, request-count and CPU policies on its own target group), circuit
breaker and tags, and the migrate.toml written for it.

  python3 scripts/lib/check_deployment.py --stack ficus [--region R] [--migrate-toml FILE] [--moto]

The region is --region, else migrate.toml's [aws] region, else the standard
chain (AWS_REGION, the profile's region).

--moto skips what moto_server cannot show: the launch type, load balancer,
circuit breaker and tags of services created through CloudFormation, task CPU,
running tasks, target health, target group attributes (the deregistration
delay) and tags, and Application Auto Scaling (moto's CloudFormation skips
AWS::ApplicationAutoScaling::* resources; scripts/check-stacks checks them in
the templates). On a real account, run it without --moto once scripts/deploy has
finished: it then also checks that every service runs its desired tasks and
that every target group's targets are healthy.

Needs boto3 (python3 -m pip install boto3). Prints one line per check; exit 0
when all passed, 1 when any failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

try:
    import boto3
except ImportError:
    print("check_deployment.py: needs boto3: python3 -m pip install boto3", file=sys.stderr)
    sys.exit(2)

from ficus_aws import forward_weights, path_patterns  # beside this file

SERVICES = ("monolith", "users", "threads", "posts")
HEALTH_CHECK = {
    "TargetType": "ip",
    "Protocol": "HTTP",
    "Port": 3000,
    "HealthCheckPath": "/",
    "HealthCheckIntervalSeconds": 6,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 2,
}
# platform.yaml's deliberate deregistration delay (AWS's default is 300 s).
DEREGISTRATION_DELAY_SECONDS = "30"


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, found: Any = None) -> bool:
        if ok:
            self.passed += 1
            print(f"  ok: {what}")
        else:
            self.failed += 1
            print(f"  FAILED: {what}; found {found!r}", file=sys.stderr)
        return ok


def forward_target(actions: list[dict[str, Any]]) -> str | None:
    """The one target group a forward action sends everything to, if any."""
    weights = forward_weights(actions)
    return next(iter(weights)) if len(weights) == 1 else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the platform stack's name")
    parser.add_argument("--migrate-toml", type=Path, help="the migrate.toml scripts/deploy wrote")
    parser.add_argument("--moto", action="store_true", help="skip what moto_server cannot show")
    parser.add_argument("--region", help="default: migrate.toml's [aws] region, else the standard chain")
    args = parser.parse_args(argv)

    region = args.region
    if not region and args.migrate_toml:
        region = tomllib.loads(args.migrate_toml.read_text()).get("aws", {}).get("region")
    session = boto3.session.Session(region_name=region or None)
    cloudformation = session.client("cloudformation")
    elbv2 = session.client("elbv2")
    ecs = session.client("ecs")
    iam = session.client("iam")
    autoscaling = session.client("application-autoscaling")
    checks = Checks()

    stacks = [args.stack, *(f"{args.stack}-{s}" for s in SERVICES)]
    statuses = {}
    for name in stacks:
        try:
            statuses[name] = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        except cloudformation.exceptions.ClientError as e:
            statuses[name] = str(e)
    checks.check(
        all(s in ("CREATE_COMPLETE", "UPDATE_COMPLETE") for s in statuses.values()),
        f"stacks {', '.join(stacks)} complete",
        statuses,
    )
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName=args.stack)["Stacks"][0].get("Outputs", [])
    }
    groups = {s: outputs.get(f"{s.capitalize()}TargetGroupArn") for s in SERVICES}
    listener_arn = outputs.get("ListenerArn")
    if not checks.check(
        bool(listener_arn) and all(groups.values()),
        "the platform stack outputs the listener and 4 target groups",
        outputs,
    ):
        return 1

    listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    checks.check(
        (listener["Port"], listener["Protocol"], forward_target(listener["DefaultActions"]))
        == (80, "HTTP", groups["monolith"]),
        "the listener is HTTP on port 80 and forwards to the monolith by default",
        listener,
    )
    rules = elbv2.describe_rules(ListenerArn=listener_arn)["Rules"]
    at_99 = [r for r in rules if r["Priority"] == "99"]
    rule = at_99[0] if at_99 else {}
    paths = path_patterns(rule)
    checks.check(
        paths == ["/api*"] and forward_target(rule.get("Actions", [])) == groups["monolith"],
        "rule 99 sends /api* to the monolith",
        rule,
    )
    if rule:
        tags = elbv2.describe_tags(ResourceArns=[rule["RuleArn"]])["TagDescriptions"][0]["Tags"]
        checks.check({"Key": "ficus:role", "Value": "monolith"} in tags, "rule 99 is tagged ficus:role=monolith", tags)

    described = elbv2.describe_target_groups(TargetGroupArns=list(groups.values()))["TargetGroups"]
    for group in described:
        settings = {k: group.get(k) for k in HEALTH_CHECK}
        checks.check(
            settings == HEALTH_CHECK and group.get("Matcher", {}).get("HttpCode") == "200",
            f"target group {group['TargetGroupName']}: ip, HTTP 3000, health check / every 6 s, timeout 5 s, 2/2, 200",
            settings,
        )
        if not args.moto:  # moto's CloudFormation ignores TargetGroupAttributes
            attributes = elbv2.describe_target_group_attributes(TargetGroupArn=group["TargetGroupArn"])["Attributes"]
            delay = {a["Key"]: a["Value"] for a in attributes}.get("deregistration_delay.timeout_seconds")
            checks.check(
                delay == DEREGISTRATION_DELAY_SECONDS,
                f"target group {group['TargetGroupName']}: deregistration delay {DEREGISTRATION_DELAY_SECONDS} s",
                delay,
            )
        checks.check(
            bool(group.get("LoadBalancerArns")),
            f"target group {group['TargetGroupName']} is used by the load balancer (ECS requires it)",
            group.get("LoadBalancerArns"),
        )
        if not args.moto:
            health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
            states = [h["TargetHealth"]["State"] for h in health]
            checks.check(
                bool(states) and all(s == "healthy" for s in states),
                f"target group {group['TargetGroupName']} has healthy targets only",
                states,
            )

    cluster = outputs.get("ClusterName")
    service_arns = ecs.list_services(cluster=cluster)["serviceArns"]
    services = ecs.describe_services(cluster=cluster, services=service_arns)["services"] if service_arns else []
    checks.check(len(services) == 4, "4 ECS services in the cluster", [s["serviceName"] for s in services])
    if not args.moto:
        for service in services:
            checks.check(
                service.get("launchType") == "FARGATE"
                and [lb["targetGroupArn"] for lb in service.get("loadBalancers", [])] in ([g] for g in groups.values())
                and service["runningCount"] == service["desiredCount"],
                f"service {service['serviceName']}: Fargate, in its target group, running its desired tasks",
                service,
            )
    named = {s["serviceName"] for s in services}
    checks.check(
        named == set(SERVICES),
        "the ECS services are named after their binaries (the target groups' ficus:ecs-service tags name them)",
        named,
    )
    for name, arn in groups.items():
        # ALBRequestCountPerTarget's ResourceLabel: the final parts of the two ARNs.
        wanted = listener["LoadBalancerArn"].split(":loadbalancer/", 1)[-1] + "/" + arn.split(":", 5)[-1]
        label = outputs.get(f"{name.capitalize()}RequestCountLabel")
        checks.check(
            label == wanted,
            f"the {name} request-count label is app/<lb name>/<lb id>/targetgroup/<tg name>/<tg id> ({wanted})",
            label,
        )
    if not args.moto:
        for service in services:
            name = service["serviceName"]
            breaker = service.get("deploymentConfiguration", {}).get("deploymentCircuitBreaker", {})
            checks.check(
                breaker == {"enable": True, "rollback": True} and service.get("propagateTags") == "SERVICE",
                f"service {name}: circuit breaker with rollback, tasks tagged from the service",
                (breaker, service.get("propagateTags")),
            )
        tags = elbv2.describe_tags(ResourceArns=list(groups.values()))["TagDescriptions"]
        for description in tags:
            keys = {t["Key"]: t["Value"] for t in description["Tags"]}
            service = keys.get("ficus:service")
            checks.check(
                keys.get("ficus:stack") == args.stack
                and keys.get("ficus:ecs-service") == f"service/{cluster}/{service}",
                f"target group of {service}: tagged ficus:stack and ficus:ecs-service=service/{cluster}/{service}",
                keys,
            )
        ids = [f"service/{cluster}/{name}" for name in SERVICES]
        scalable = autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=ids)["ScalableTargets"]
        policies = autoscaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
        for resource_id in ids:
            target = [t for t in scalable if t["ResourceId"] == resource_id]
            metrics = {
                p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]
                for p in policies
                if p["ResourceId"] == resource_id and p.get("TargetTrackingScalingPolicyConfiguration")
            }
            checks.check(
                len(target) == 1 and metrics == {"ALBRequestCountPerTarget", "ECSServiceAverageCPUUtilization"},
                f"{resource_id}: a scalable task count with request-count and CPU target tracking",
                (target, metrics),
            )
    else:
        print("  skipped (moto): Application Auto Scaling, circuit breakers and tags (scripts/check-stacks checks the templates)")
    task_roles = set()
    for name in SERVICES:
        definition = ecs.describe_task_definition(taskDefinition=f"{args.stack}-{name}")["taskDefinition"]
        container = definition["containerDefinitions"][0]
        wanted = ("512", name, [3000])
        found = (
            definition.get("memory"),
            container["name"],
            [p["containerPort"] for p in container.get("portMappings", [])],
        )
        cpu = ""
        if not args.moto:
            cpu = "256 CPU units, "
            wanted += ("256",)
            found += (definition.get("cpu"),)
        checks.check(
            found == wanted, f"task definition {args.stack}-{name}: {cpu}512 MiB, container {name} on port 3000", found
        )
        role = cloudformation.describe_stack_resource(StackName=f"{args.stack}-{name}", LogicalResourceId="TaskRole")
        role_name = role["StackResourceDetail"]["PhysicalResourceId"]
        task_roles.add(role_name)
        grants = iam.list_role_policies(RoleName=role_name)["PolicyNames"] + [
            p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
        ]
        checks.check(not grants, f"the {name} service's task role grants nothing", grants)
    checks.check(len(task_roles) == 4, "each service has its own task role", task_roles)

    if args.migrate_toml:
        settings = tomllib.loads(args.migrate_toml.read_text())
        routes = settings.get("routes", {})
        checks.check(
            settings.get("listener", {}).get("arn") == listener_arn
            and settings.get("lb_url") == outputs.get("LoadBalancerUrl")
            and sorted(routes) == ["posts", "threads", "users"]
            and all(routes[r].get("target_group") == groups[r] for r in routes)
            and all(routes[r].get("paths") == [f"/api/{r}*"] for r in routes),
            f"{args.migrate_toml.name} names the listener, lb_url, the routes, their paths and target groups",
            settings,
        )

    print(f"check_deployment: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
