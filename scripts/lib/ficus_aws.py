#!/usr/bin/env python3
"""The AWS side of ficus, shared by scripts/deploy, scripts/test-aws and
scripts/check-stacks, so the deploy and its test run the same code.

Subcommands:
  handover            after a deploy: apply the tags the platform template
                      declares for its listener rules (Metadata "ficus:tags";
                      CloudFormation cannot tag listener rules), then write
                      migrate.toml and migrate-policy.json (the IAM policy
                      migrate needs, infrastructure/aws/migrate-policy.json
                      with the listener filled in) from the stack's outputs
  check-routes        read the listener's rules and say where each route of a
                      migrate.toml sends its traffic (missing, monolith,
                      shifting, service); ROUTE=STATE arguments fail unless so
  check-stacks        check that infrastructure/local/stack.toml (the local
                      ALB's stack) and the CloudFormation templates agree, and
                      that each service scales, fails and costs on its own
                      (scalable target, request-count and CPU policies,
                      circuit breaker, ficus:service/ficus:stack tags)
  check-templates     check the templates for what AWS refuses though
                      cfn-lint and moto accept it (security-group description
                      characters, deregistration delay, Fn::GetAZs)
  pick-zones          two Availability Zones of a region where Fargate runs
  teardown            delete what scripts/deploy made: the IAM policy
                      <stack>-migrate, migrate's rules, then the stacks in
                      order (waiting for each), the ECR repositories

AWS calls go through the `aws` CLI, so they honour the same profile and
AWS_ENDPOINT_URL as the rest of the scripts; the region is passed explicitly
(--region, or migrate.toml's [aws] region for check-routes). Exit codes: 0 ok, 1 a check
failed or AWS refused, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PLATFORM_TEMPLATE = REPO / "infrastructure/aws/platform.yaml"
SERVICE_TEMPLATE = REPO / "infrastructure/aws/service.yaml"
NETWORK_TEMPLATE = REPO / "infrastructure/aws/network.yaml"
MIGRATE_POLICY = REPO / "infrastructure/aws/migrate-policy.json"
LOCAL_STACK = REPO / "infrastructure/local/stack.toml"


@dataclass(frozen=True)
class Route:
    """A route `migrate` moves: the service's own resource."""

    paths: tuple[str, ...]
    # What `migrate shift` probes through the load balancer between steps.
    probe_paths: tuple[str, ...]
    # The priority of its rule in the original deployment (seed-api.md: "How
    # the original was deployed"): in front of the monolith's 99.
    priority: int
    # The platform outputs holding its target group's ARN and its direct URL.
    target_group_output: str
    url_output: str


ROUTES: dict[str, Route] = {
    "users": Route(("/api/users*",), ("/api/users", "/api/users/1"), 1, "UsersTargetGroupArn", "UsersUrl"),
    "threads": Route(("/api/threads*",), ("/api/threads", "/api/threads/2"), 2, "ThreadsTargetGroupArn", "ThreadsUrl"),
    "posts": Route(
        ("/api/posts*",),
        ("/api/posts", "/api/posts/in-thread/1", "/api/posts/by-user/1"),
        3,
        "PostsTargetGroupArn",
        "PostsUrl",
    ),
}

# The Metadata key under which a template declares a listener rule's tags.
RULE_TAGS_METADATA = "ficus:tags"
# The tag that names a target group's service in the templates.
SERVICE_TAG = "ficus:service"


class Failure(Exception):
    """A failure with a message for the operator; `code` is the exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------
# CloudFormation templates
# ---------------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation's short forms (!Ref, !Sub, ...)
    as their long forms ({"Ref": ...}, {"Fn::Sub": ...})."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    try:
        with path.open() as f:
            template = yaml.load(f, Loader=_TemplateLoader)  # a SafeLoader
    except OSError as e:
        raise Failure(f"cannot read template {path}: {e.strerror}", 2) from e
    except yaml.YAMLError as e:
        raise Failure(f"template {path} is not valid YAML: {e}", 2) from e
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise Failure(f"template {path} has no Resources section", 2)
    return template


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource for logical_id, resource in template["Resources"].items() if resource.get("Type") == kind
    }


def rule_tags(template: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Logical id of each listener rule that declares tags -> its tags."""
    declared = {}
    for logical_id, rule in resources_of_type(template, "AWS::ElasticLoadBalancingV2::ListenerRule").items():
        tags = (rule.get("Metadata") or {}).get(RULE_TAGS_METADATA)
        if tags:
            declared[logical_id] = {str(k): str(v) for k, v in tags.items()}
    return declared


# ---------------------------------------------------------------------------
# The aws CLI
# ---------------------------------------------------------------------------


# Where the aws CLI calls go: set once from --region (or migrate.toml's [aws]
# region and endpoint_url), so that no later step depends on an exported
# AWS_REGION. Empty: the CLI's own chain (AWS_REGION, the profile's region).
TARGET = {"region": "", "endpoint_url": ""}


def aws(*args: str) -> Any:
    """Runs `aws ARGS --output json`; returns the parsed output (None if empty)."""
    command = ["aws", *args, "--output", "json"]
    if TARGET["region"]:
        command += ["--region", TARGET["region"]]
    if TARGET["endpoint_url"]:
        command += ["--endpoint-url", TARGET["endpoint_url"]]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise Failure("the aws CLI is not installed: python3 -m pip install awscli", 2) from e
    if done.returncode != 0:
        raise Failure(f"`aws {' '.join(args)}` failed: {done.stderr.strip()}")
    return json.loads(done.stdout) if done.stdout.strip() else None


def stack_outputs(stack: str) -> dict[str, str]:
    try:
        described = aws("cloudformation", "describe-stacks", "--stack-name", stack)
    except Failure as e:
        if "does not exist" in str(e):
            raise Failure(f"there is no stack {stack} in this account and region; deploy it with scripts/deploy") from e
        raise
    outputs = described["Stacks"][0].get("Outputs") or []
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


def require_output(outputs: dict[str, str], key: str, stack: str) -> str:
    try:
        return outputs[key]
    except KeyError:
        raise Failure(
            f"stack {stack} has no output {key}: was it deployed from {PLATFORM_TEMPLATE.relative_to(REPO)}?"
        ) from None


# ---------------------------------------------------------------------------
# handover: the rules' tags
# ---------------------------------------------------------------------------


def tag_rules(stack: str, template_path: Path) -> None:
    declared = rule_tags(load_template(template_path))
    if not declared:
        return
    resources = aws("cloudformation", "describe-stack-resources", "--stack-name", stack)["StackResources"]
    # (moto lists a resource skipped by its Condition without ids: ignore those.)
    physical = {r.get("LogicalResourceId"): r.get("PhysicalResourceId") for r in resources}
    for logical_id, tags in declared.items():
        arn = physical.get(logical_id)
        if not arn:
            raise Failure(f"stack {stack} has no resource {logical_id}")
        shown = ", ".join(f"{k}={v}" for k, v in tags.items())
        # Tag only a rule that lacks them: migrate's policy denies tagging the
        # monolith's rule once it is tagged, and a deployer may hold it too.
        described = aws("elbv2", "describe-tags", "--resource-arns", arn)["TagDescriptions"]
        present = {t["Key"]: t["Value"] for d in described for t in d.get("Tags", [])}
        if all(present.get(k) == v for k, v in tags.items()):
            print(f"{logical_id} ({arn}) is tagged {shown}")
            continue
        aws("elbv2", "add-tags", "--resource-arns", arn, "--tags", *(f"Key={k},Value={v}" for k, v in tags.items()))
        print(f"tagged {logical_id} ({arn}) with {shown}")


# ---------------------------------------------------------------------------
# handover: migrate.toml
# ---------------------------------------------------------------------------


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def toml_strings(values: tuple[str, ...]) -> str:
    return f"[{', '.join(toml_string(v) for v in values)}]"


def migrate_toml(stack: str, region: str, endpoint_url: str, outputs: dict[str, str]) -> str:
    """migrate.toml (keys: migrate/src/settings.rs) for the platform stack."""

    def output(key: str) -> str:
        return toml_string(require_output(outputs, key, stack))

    lines = [
        f"# migrate.toml for the CloudFormation stack {stack} ({region}), written by",
        "# scripts/deploy from the stack's outputs; rewrite it with",
        f"#   scripts/deploy --stack {stack} --only-migrate-toml",
        "# The monolith's rule is found by its tag ficus:role=monolith (scripts/deploy",
        "# applies it). monolith.base_url and routes.*.service_url are the direct",
        "# listeners, reachable only from the platform stack's OperatorCidr.",
        "",
        f"lb_url = {output('LoadBalancerUrl')}",
        'journal = "journal.jsonl"',
        "",
        "[aws]",
        f"region = {toml_string(region)}",
    ]
    if endpoint_url:
        lines.append(f"endpoint_url = {toml_string(endpoint_url)}")
    lines += [
        "",
        "[listener]",
        f"arn = {output('ListenerArn')}",
        "",
        "[monolith]",
        f"base_url = {output('MonolithUrl')}",
    ]
    for name, route in ROUTES.items():
        lines += [
            "",
            f"[routes.{name}]",
            f"paths = {toml_strings(route.paths)}",
            f"target_group = {output(route.target_group_output)}",
            f"service_url = {output(route.url_output)}",
            f"priority = {route.priority}",
            "steps = [10, 50, 100]",
            'interval = "30s"',
            f"probe_paths = {toml_strings(route.probe_paths)}",
        ]
    return "\n".join(lines) + "\n"


def write_file(path: Path, text: str, keep_previous: bool = False) -> None:
    """Writes `text` to `path` atomically, creating its directory; with
    `keep_previous`, a different existing file is kept as `<name>.previous`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_previous and path.is_file() and path.read_text() != text:
        previous = path.with_name(path.name + ".previous")
        os.replace(path, previous)
        print(f"kept the previous {path.name} as {previous} (merge your own edits back from it)")
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    print(f"wrote {path}")


def handover(stack: str, template: Path, region: str, endpoint_url: str, output_dir: Path) -> None:
    """Tags the rules, writes migrate.toml and migrate-policy.json, and creates
    or updates the IAM policy <stack>-migrate from the latter."""
    outputs = stack_outputs(stack)
    tag_rules(stack, template)
    settings = migrate_toml(stack, region, endpoint_url, outputs)
    tomllib.loads(settings)  # never write a file migrate cannot read
    write_file(output_dir / "migrate.toml", settings, keep_previous=True)
    policy = migrate_policy(require_output(outputs, "ListenerArn", stack))
    write_file(output_dir / "migrate-policy.json", policy)
    ensure_migrate_policy(stack, policy)
    print(f"load balancer: {outputs['LoadBalancerUrl']}")


# ---------------------------------------------------------------------------
# handover: migrate-policy.json
# ---------------------------------------------------------------------------


def migrate_policy(listener_arn: str) -> str:
    """migrate-policy.json for one listener: its ARN, and its rules' ARNs
    (listener-rule/app/<lb>/<lb id>/<listener id>/*)."""
    prefix, separator, path = listener_arn.partition(":listener/")
    if not separator or path.count("/") != 3:
        raise Failure(f"{listener_arn!r} is not an ELBv2 listener ARN")
    template = MIGRATE_POLICY.read_text()
    for placeholder in ("{{listener_arn}}", "{{listener_rules_arn}}"):
        if placeholder not in template:
            raise Failure(f"{MIGRATE_POLICY} lacks the placeholder {placeholder}", 2)
    text = template.replace("{{listener_arn}}", listener_arn).replace(
        "{{listener_rules_arn}}", f"{prefix}:listener-rule/{path}/*"
    )
    json.loads(text)
    return text


# ---------------------------------------------------------------------------
# check-routes
# ---------------------------------------------------------------------------


def forward_weights(actions: list[dict[str, Any]]) -> dict[str, int]:
    """Target group ARN -> weight of a rule's forward action ({} if none)."""
    for action in actions:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if groups:
            return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
        return {action["TargetGroupArn"]: 1}
    return {}


def path_patterns(rule: dict[str, Any]) -> list[str]:
    return sorted(
        value
        for condition in rule.get("Conditions", [])
        if condition.get("Field") == "path-pattern"
        for value in (condition.get("PathPatternConfig") or {}).get("Values") or condition.get("Values") or []
    )


def route_states(settings_path: Path) -> dict[str, tuple[str, str]]:
    """Where each route of a migrate.toml sends its traffic, read from the
    listener's rules: route -> (state, description), state one of missing,
    inconsistent, monolith, shifting, service."""
    try:
        settings = tomllib.loads(settings_path.read_text())
        listener_arn = settings["listener"]["arn"]
        routes = {name: (sorted(r["paths"]), r["target_group"]) for name, r in settings["routes"].items()}
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise Failure(
            f"{settings_path}: not a migrate.toml with listener.arn and routes.*.paths/target_group ({e!r})", 2
        ) from e
    aws_settings = settings.get("aws") or {}
    TARGET["region"] = TARGET["region"] or str(aws_settings.get("region") or "")
    TARGET["endpoint_url"] = TARGET["endpoint_url"] or str(aws_settings.get("endpoint_url") or "")
    names = [tg for _, tg in routes.values() if not tg.startswith("arn:")]
    arns = {}
    if names:
        described = aws("elbv2", "describe-target-groups", "--names", *names)["TargetGroups"]
        arns = {g["TargetGroupName"]: g["TargetGroupArn"] for g in described}
    rules = aws("elbv2", "describe-rules", "--listener-arn", listener_arn)["Rules"]
    rule_arns = [r["RuleArn"] for r in rules if not r.get("IsDefault")]
    tags: dict[str, dict[str, str]] = {}
    for start in range(0, len(rule_arns), 20):  # DescribeTags takes 20 ARNs at most
        described = aws("elbv2", "describe-tags", "--resource-arns", *rule_arns[start : start + 20])
        for entry in described["TagDescriptions"]:
            tags[entry["ResourceArn"]] = {t["Key"]: t["Value"] for t in entry.get("Tags", [])}
    monolith = [r for r in rules if tags.get(r["RuleArn"], {}).get("ficus:role") == "monolith"]
    if len(monolith) != 1:
        raise Failure(f"the listener has {len(monolith)} rules tagged ficus:role=monolith, expected 1")
    monolith_priority = int(monolith[0]["Priority"])
    states = {}
    for name, (paths, configured_group) in routes.items():
        target_group = arns.get(configured_group, configured_group)
        mine = [r for r in rules if path_patterns(r) == paths]
        if len(mine) != 1:
            states[name] = ("missing" if not mine else "inconsistent", f"{len(mine)} rules for {paths}")
            continue
        priority = int(mine[0]["Priority"])
        weights = forward_weights(mine[0].get("Actions", []))
        total = sum(weights.values())
        share = 100 * weights.get(target_group, 0) // total if total else 0
        where = (
            f"rule {priority} for {paths} forwards {share}% to the service; the monolith's rule is {monolith_priority}"
        )
        if priority > monolith_priority or share == 0:
            states[name] = ("monolith", where)
        else:
            states[name] = ("service" if share == 100 else "shifting", where)
    return states


def check_routes(settings_path: Path, expectations: list[str]) -> int:
    expected = {}
    for expectation in expectations:
        route, _, state = expectation.partition("=")
        if state not in ROUTE_STATES:
            raise Failure(f"{expectation!r}: write ROUTE=STATE, STATE one of {', '.join(ROUTE_STATES)}", 2)
        expected[route] = state
    states = route_states(settings_path)
    unknown = set(expected) - set(states)
    if unknown:
        raise Failure(f"no route {', '.join(sorted(unknown))} in {settings_path}; its routes: {', '.join(states)}", 2)
    wrong = 0
    for route, (state, where) in states.items():
        if route in expected and expected[route] != state:
            wrong += 1
            print(f"{route}: expected {expected[route]}, found {state}: {where}", file=sys.stderr)
        else:
            print(f"{route}: {state}: {where}")
    return 1 if wrong else 0


ROUTE_STATES = ("missing", "inconsistent", "monolith", "shifting", "service")


# ---------------------------------------------------------------------------
# check-stacks
# ---------------------------------------------------------------------------


@dataclass
class Comparison:
    problems: list[str]
    checked: int = 0

    def same(self, what: str, local: Any, aws_value: Any) -> None:
        self.checked += 1
        if local != aws_value:
            self.problems.append(f"{what}: stack.toml says {local!r}, CloudFormation says {aws_value!r}")


def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: str(t["Value"]) for t in resource.get("Properties", {}).get("Tags", [])}


def _forward_target(actions: list[dict[str, Any]], tg_names: dict[str, str], where: str) -> str:
    """The name of the single target group a forward-only action list sends to."""
    if len(actions) != 1 or actions[0].get("Type") != "forward":
        raise Failure(f"{where}: expected exactly one forward action, found {actions!r}")
    logical_id = _ref(actions[0].get("TargetGroupArn"))
    if logical_id not in tg_names:
        raise Failure(
            f"{where}: forwards to {actions[0].get('TargetGroupArn')!r}, not to a target group of the template"
        )
    return tg_names[logical_id]


def _local_forward(action: Any, where: str) -> str:
    if not isinstance(action, dict) or set(action) != {"forward"}:
        raise Failure(f'{where}: expected {{ forward = "<target group>" }}, found {action!r}', 2)
    return action["forward"]


INTERNET = ("0.0.0.0/0", "::/0")


def _internet_ports(template: dict[str, Any]) -> set[int]:
    """Ports some security group of the template admits from the whole internet."""
    rules = [
        ingress
        for group in resources_of_type(template, "AWS::EC2::SecurityGroup").values()
        for ingress in group.get("Properties", {}).get("SecurityGroupIngress", [])
    ] + [
        ingress.get("Properties", {})
        for ingress in resources_of_type(template, "AWS::EC2::SecurityGroupIngress").values()
    ]
    ports: set[int] = set()
    for ingress in rules:
        if ingress.get("CidrIp") in INTERNET or ingress.get("CidrIpv6") in INTERNET:
            ports.update(range(int(ingress["FromPort"]), int(ingress["ToPort"]) + 1))
    return ports


def check_stacks(local_path: Path, template_path: Path) -> Comparison:
    try:
        local = tomllib.loads(local_path.read_text())
    except OSError as e:
        raise Failure(f"cannot read {local_path}: {e.strerror}", 2) from e
    except tomllib.TOMLDecodeError as e:
        raise Failure(f"{local_path} is not valid TOML: {e}", 2) from e
    template = load_template(template_path)
    result = Comparison(problems=[])

    # Target groups: matched by the template's ficus:service tag.
    cfn_groups = resources_of_type(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    tg_names: dict[str, str] = {}
    for logical_id, group in cfn_groups.items():
        name = _tags(group).get(SERVICE_TAG)
        if not name:
            result.problems.append(f"target group {logical_id} has no {SERVICE_TAG} tag naming its service")
            continue
        tg_names[logical_id] = name
    local_groups = {g["name"]: g for g in local.get("target_groups", [])}
    result.same("target groups", sorted(local_groups), sorted(tg_names.values()))
    by_name = {name: cfn_groups[logical_id]["Properties"] for logical_id, name in tg_names.items()}
    for name in sorted(set(local_groups) & set(by_name)):
        group, props = local_groups[name], by_name[name]
        check = group.get("health_check", {})
        matcher = props.get("Matcher", {}).get("HttpCode")
        result.same(f"target group {name}: port", group.get("port"), props.get("Port"))
        result.same(f"target group {name}: protocol", group.get("protocol", "HTTP"), props.get("Protocol"))
        result.same(f"target group {name}: health check protocol", "HTTP", props.get("HealthCheckProtocol", "HTTP"))
        result.same(f"target group {name}: health check path", check.get("path"), props.get("HealthCheckPath"))
        result.same(
            f"target group {name}: health check interval",
            check.get("interval_seconds"),
            props.get("HealthCheckIntervalSeconds"),
        )
        result.same(
            f"target group {name}: health check timeout",
            check.get("timeout_seconds"),
            props.get("HealthCheckTimeoutSeconds"),
        )
        result.same(
            f"target group {name}: healthy threshold",
            check.get("healthy_threshold"),
            props.get("HealthyThresholdCount"),
        )
        result.same(
            f"target group {name}: unhealthy threshold",
            check.get("unhealthy_threshold"),
            props.get("UnhealthyThresholdCount"),
        )
        result.same(f"target group {name}: matcher", check.get("matcher"), matcher)

    # The load balancer.
    balancers = resources_of_type(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    result.same("number of load balancers", 1, len(balancers))
    for balancer in balancers.values():
        result.same(
            "load balancer scheme",
            local.get("load_balancer", {}).get("scheme"),
            balancer["Properties"].get("Scheme", "internet-facing"),
        )

    # The listener: the one on stack.toml's port, open to the internet. Any
    # other listener is a direct listener (see platform.yaml): closed to the
    # internet, forwarding to one target group.
    local_listener = local.get("listener", {})
    listeners = resources_of_type(template, "AWS::ElasticLoadBalancingV2::Listener")
    main = {
        lid: listener
        for lid, listener in listeners.items()
        if listener["Properties"].get("Port") == local_listener.get("port")
    }
    result.same(f"listeners on port {local_listener.get('port')}", 1, len(main))
    internet_ports = _internet_ports(template)
    main_id = next(iter(main), None)
    if main_id:
        props = main[main_id]["Properties"]
        result.same("listener protocol", local_listener.get("protocol"), props.get("Protocol"))
        result.same(
            "listener default action",
            _local_forward(local_listener.get("default_action"), "stack.toml [listener] default_action"),
            _forward_target(props.get("DefaultActions", []), tg_names, f"listener {main_id}"),
        )
        result.same("listener open to the internet", True, props.get("Port") in internet_ports)
    for lid, listener in listeners.items():
        if lid == main_id:
            continue
        props = listener["Properties"]
        _forward_target(props.get("DefaultActions", []), tg_names, f"listener {lid}")
        result.checked += 1
        if props.get("Port") in internet_ports:
            result.problems.append(
                f"listener {lid} on port {props.get('Port')} is open to the internet, which stack.toml does not declare"
            )

    # Rules on the main listener: same priority, conditions, action and tags.
    cfn_rules = {
        int(rule["Properties"]["Priority"]): (lid, rule)
        for lid, rule in resources_of_type(template, "AWS::ElasticLoadBalancingV2::ListenerRule").items()
        if _ref(rule["Properties"].get("ListenerArn")) == main_id
    }
    local_rules = {int(r["priority"]): r for r in local.get("rules", [])}
    result.same("rule priorities on the listener", sorted(local_rules), sorted(cfn_rules))
    declared_tags = rule_tags(template)
    for priority in sorted(set(local_rules) & set(cfn_rules)):
        rule = local_rules[priority]
        lid, cfn_rule = cfn_rules[priority]
        props = cfn_rule["Properties"]
        local_conditions = sorted((c["field"], tuple(c["values"])) for c in rule.get("conditions", []))
        cfn_conditions = sorted(
            (
                c["Field"],
                tuple(c.get("PathPatternConfig", {}).get("Values") or c.get("Values") or []),
            )
            for c in props.get("Conditions", [])
        )
        result.same(f"rule {priority}: conditions", local_conditions, cfn_conditions)
        local_actions = rule.get("actions", [])
        result.same(
            f"rule {priority}: action",
            _local_forward(
                local_actions[0] if len(local_actions) == 1 else local_actions, f"stack.toml rule {priority}"
            ),
            _forward_target(props.get("Actions", []), tg_names, f"rule {lid}"),
        )
        result.same(f"rule {priority}: tags", rule.get("tags", {}), declared_tags.get(lid, {}))
    return result


# ---------------------------------------------------------------------------
# check-templates: what AWS refuses that cfn-lint and moto let through
# ---------------------------------------------------------------------------

# The characters EC2 accepts in a security group's GroupDescription and in the
# Description of a rule on an IPv4 or IPv6 range (EC2 API Reference:
# CreateSecurityGroup, IpRange, Ipv6Range): letters, digits, spaces and
# ._-:/()#,@[]+=&;{}!$*, up to 255 characters. A rule that references a
# security group or a prefix list (UserIdGroupPair, PrefixListId) accepts the
# same set without "&".
EC2_DESCRIPTION_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-:/()#,@[]+=&;{}!$*"
)
EC2_GROUP_RULE_DESCRIPTION_CHARACTERS = EC2_DESCRIPTION_CHARACTERS - {"&"}
EC2_DESCRIPTION_MAX = 255
# Rule properties that make a rule reference a group or prefix list.
GROUP_REFERENCES = (
    "SourceSecurityGroupId",
    "SourceSecurityGroupName",
    "SourcePrefixListId",
    "DestinationSecurityGroupId",
    "DestinationPrefixListId",
)
DEREGISTRATION_DELAY = "deregistration_delay.timeout_seconds"


def _literal_text(value: Any) -> str | None:
    """The literal characters of a template string (a plain string, or the text
    of an Fn::Sub with its ${...} references removed); None for other values."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        text = text[0] if isinstance(text, list) and text else text
        if isinstance(text, str):
            return re.sub(r"\$\{[^}]*\}", "", text)
    return None


def _ec2_description_problem(value: Any, allowed: frozenset[str]) -> str | None:
    text = _literal_text(value)
    if text is None:
        return None
    bad = sorted(set(text) - allowed)
    if bad:
        return f"{text!r} holds {''.join(bad)!r}, which EC2 refuses in descriptions"
    if len(text) > EC2_DESCRIPTION_MAX:
        return f"{text[:40]!r}... is {len(text)} characters long, EC2 accepts {EC2_DESCRIPTION_MAX}"
    return None


def _walk(value: Any) -> Any:
    """Every mapping and list nested in a template value, depth first."""
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from _walk(child)


def check_template(path: Path) -> list[str]:
    """What AWS would refuse or do by default in one template, though
    cfn-lint and moto accept it: security-group descriptions outside EC2's
    character set, target groups without a deliberate deregistration delay,
    Availability Zones guessed with Fn::GetAZs."""
    template = load_template(path)
    problems = []

    def description(where: str, value: Any, allowed: frozenset[str]) -> None:
        problem = _ec2_description_problem(value, allowed)
        if problem:
            problems.append(f"{path.name}: {where}: {problem}")

    def rule(where: str, props: dict[str, Any]) -> None:
        if "Description" in props:
            references_group = any(key in props for key in GROUP_REFERENCES)
            allowed = EC2_GROUP_RULE_DESCRIPTION_CHARACTERS if references_group else EC2_DESCRIPTION_CHARACTERS
            description(f"{where} Description", props["Description"], allowed)

    for logical_id, group in resources_of_type(template, "AWS::EC2::SecurityGroup").items():
        props = group.get("Properties") or {}
        description(f"{logical_id} GroupDescription", props.get("GroupDescription"), EC2_DESCRIPTION_CHARACTERS)
        for direction in ("SecurityGroupIngress", "SecurityGroupEgress"):
            for index, entry in enumerate(props.get(direction) or []):
                rule(f"{logical_id} {direction}[{index}]", entry)
    for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
        for logical_id, resource in resources_of_type(template, kind).items():
            rule(logical_id, resource.get("Properties") or {})
    for logical_id, group in resources_of_type(template, "AWS::ElasticLoadBalancingV2::TargetGroup").items():
        attributes = (group.get("Properties") or {}).get("TargetGroupAttributes") or []
        if not any(a.get("Key") == DEREGISTRATION_DELAY for a in attributes):
            problems.append(
                f"{path.name}: {logical_id}: no {DEREGISTRATION_DELAY} attribute, so AWS's default of 300 s "
                "keeps replaced tasks draining for five minutes; declare it (platform.yaml explains the choice)"
            )
    for logical_id, resource in template["Resources"].items():
        if any(isinstance(v, dict) and "Fn::GetAZs" in v for v in _walk(resource)):
            problems.append(
                f"{path.name}: {logical_id}: Fn::GetAZs picks zones by index, which may name a zone without "
                "Fargate; take the zones as parameters"
            )
    return problems


# ---------------------------------------------------------------------------
# Each service on its own: scaling, failure, cost (check-stacks and
# check-templates)
# ---------------------------------------------------------------------------

STACK_TAG = "ficus:stack"
# The tag on a target group naming its ECS service as Application Auto Scaling
# does (service/<cluster>/<service>); `migrate status` reads it.
ECS_SERVICE_TAG = "ficus:ecs-service"
# Resource types whose CloudFormation resource (AWS CloudFormation Template
# Reference) has no Tags property. Every other resource of the templates must
# carry ficus:service and ficus:stack. Listener rules declare theirs under
# Metadata "ficus:tags" (scripts/deploy applies them). None of these bills.
UNTAGGABLE = frozenset(
    {
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::EC2::Route",
        "AWS::EC2::SecurityGroupEgress",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::ElasticLoadBalancingV2::Listener",
        "AWS::ElasticLoadBalancingV2::ListenerRule",
    }
)
# The predefined metrics of the two target-tracking policies every ECS service has.
REQUEST_METRIC = "ALBRequestCountPerTarget"
CPU_METRIC = "ECSServiceAverageCPUUtilization"


def _refers_to(value: Any, logical_id: str) -> bool:
    """Whether a template value refers to a resource (Ref or Fn::GetAtt, anywhere in it)."""
    for node in _walk(value):
        if isinstance(node, dict) and (
            node.get("Ref") == logical_id
            or (isinstance(node.get("Fn::GetAtt"), list) and node["Fn::GetAtt"][:1] == [logical_id])
        ):
            return True
    return False


def tag_problems(path: Path, template: dict[str, Any]) -> list[str]:
    """Every taggable resource carries ficus:service and ficus:stack (cost per service)."""
    problems = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") in UNTAGGABLE:
            continue
        keys = {t.get("Key") for t in (resource.get("Properties") or {}).get("Tags") or [] if isinstance(t, dict)}
        missing = [key for key in (SERVICE_TAG, STACK_TAG) if key not in keys]
        if missing:
            problems.append(
                f"{path.name}: {logical_id} ({resource.get('Type')}) has no {' and no '.join(missing)} tag, so "
                "Cost Explorer cannot put its cost on a service; tag it (docs/aws.md, \"Cost per service\")"
            )
    return problems


def scaling_problems(path: Path, template: dict[str, Any]) -> list[str]:
    """Every ECS service scales on its own (a scalable target of its task count,
    target tracking on its target group's request count and on its CPU) and
    fails on its own (circuit breaker with rollback; no DesiredCount for stack
    updates to reset)."""
    problems = []
    targets = resources_of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    policies = resources_of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    for logical_id, service in resources_of_type(template, "AWS::ECS::Service").items():
        props = service.get("Properties") or {}
        where = f"{path.name}: ECS service {logical_id}"
        breaker = (props.get("DeploymentConfiguration") or {}).get("DeploymentCircuitBreaker") or {}
        if breaker.get("Enable") is not True or breaker.get("Rollback") is not True:
            problems.append(f"{where}: no deployment circuit breaker with rollback (Enable: true, Rollback: true)")
        if "HealthCheckGracePeriodSeconds" not in props:
            problems.append(f"{where}: no HealthCheckGracePeriodSeconds; set it deliberately (service.yaml explains 30 s)")
        if "DesiredCount" in props:
            problems.append(
                f"{where}: sets DesiredCount, which every stack update would reset under Application Auto Scaling; "
                "leave it out and give the scalable target's MinCapacity"
            )
        own = {
            tid: target
            for tid, target in targets.items()
            if _refers_to((target.get("Properties") or {}).get("ResourceId"), logical_id)
        }
        if not own:
            problems.append(
                f"{where}: no AWS::ApplicationAutoScaling::ScalableTarget whose ResourceId names it, so it "
                "cannot scale on its own"
            )
            continue
        metrics = set()
        for policy in policies.values():
            policy_props = policy.get("Properties") or {}
            if not any(_refers_to(policy_props.get("ScalingTargetId"), tid) for tid in own):
                continue
            config = policy_props.get("TargetTrackingScalingPolicyConfiguration") or {}
            spec = config.get("PredefinedMetricSpecification") or {}
            metric = spec.get("PredefinedMetricType")
            if metric == REQUEST_METRIC and not spec.get("ResourceLabel"):
                problems.append(f"{where}: its {REQUEST_METRIC} policy has no ResourceLabel (its target group)")
            metrics.add(metric)
        for metric, what in ((REQUEST_METRIC, "request-count"), (CPU_METRIC, "CPU")):
            if metric not in metrics:
                problems.append(f"{where}: no {what} target-tracking policy ({metric}) on its scalable target")
    return problems


def platform_link_problems(path: Path, template: dict[str, Any]) -> list[str]:
    """Each target group names its ECS service (ficus:ecs-service, for `migrate
    status`) and exports the ResourceLabel its service's request-count policy
    imports."""
    problems = []
    exports = {
        str((output.get("Export") or {}).get("Name", {}).get("Fn::Sub", ""))
        for output in (template.get("Outputs") or {}).values()
        if isinstance((output.get("Export") or {}).get("Name"), dict)
    }
    for logical_id, group in resources_of_type(template, "AWS::ElasticLoadBalancingV2::TargetGroup").items():
        tags = {t["Key"]: t["Value"] for t in (group.get("Properties") or {}).get("Tags") or []}
        service = tags.get(SERVICE_TAG)
        if not service:
            continue
        ecs = tags.get(ECS_SERVICE_TAG)
        if not (isinstance(ecs, dict) and str(ecs.get("Fn::Sub", "")).endswith(f"/{service}")):
            problems.append(
                f"{path.name}: target group {logical_id}: no {ECS_SERVICE_TAG} tag naming service/<cluster>/{service}, "
                "so `migrate status` cannot find its tasks"
            )
        if f"${{AWS::StackName}}-RequestCountLabel-{service}" not in exports:
            problems.append(
                f"{path.name}: no output exporting ${{AWS::StackName}}-RequestCountLabel-{service}, which "
                "service.yaml's request-count policy imports"
            )
    return problems


def independence_problems(path: Path) -> list[str]:
    """What keeps a template's services from scaling, failing and costing on their own."""
    template = load_template(path)
    return tag_problems(path, template) + scaling_problems(path, template) + platform_link_problems(path, template)


# ---------------------------------------------------------------------------
# pick-zones: two Availability Zones where Fargate runs
# ---------------------------------------------------------------------------

# Regions where AWS's list of Fargate regions ("Supported Regions for Amazon
# ECS on AWS Fargate", Linux containers) names only some Availability Zone IDs;
# in every other region, every zone runs Fargate. Zone IDs, not names: a
# zone's name maps to a different zone in each account.
FARGATE_ZONE_IDS = {
    "us-west-1": frozenset({"usw1-az1", "usw1-az3"}),
    "ap-northeast-1": frozenset({"apne1-az1", "apne1-az2", "apne1-az4"}),
}


def pick_zones(region: str, requested: list[str]) -> list[str]:
    """The two zones network.yaml's subnets go in: `requested` when given
    (checked), else the first two available zones, by name, where Fargate runs."""
    zones = aws("ec2", "describe-availability-zones")["AvailabilityZones"]
    usable = {
        z["ZoneName"]: z.get("ZoneId", "")
        for z in zones
        if z.get("State", "available") == "available" and z.get("ZoneType", "availability-zone") == "availability-zone"
    }
    fargate = FARGATE_ZONE_IDS.get(region)

    def runs_fargate(name: str) -> bool:
        return fargate is None or usable[name] in fargate

    if requested:
        if len(requested) != 2 or requested[0] == requested[1]:
            raise Failure(f"--zones takes two different zones, like {region}a,{region}b", 2)
        for name in requested:
            if name not in usable:
                raise Failure(f"--zones: {name} is not an available zone of {region}; its zones: {', '.join(sorted(usable))}", 2)
            if not runs_fargate(name):
                raise Failure(
                    f"--zones: {name} ({usable[name]}) is not a zone where Fargate runs in {region} "
                    f"(AWS lists {', '.join(sorted(fargate or ()))}); pick another",
                    2,
                )
        return requested
    picked = [name for name in sorted(usable) if runs_fargate(name)][:2]
    if len(picked) < 2:
        raise Failure(f"{region} has fewer than two available zones where Fargate runs ({picked}); pick another region", 2)
    return picked


# ---------------------------------------------------------------------------
# The IAM policy migrate needs, created by scripts/deploy
# ---------------------------------------------------------------------------

STACK_TAG = "ficus:stack"


def migrate_policy_name(stack: str) -> str:
    return f"{stack}-migrate"


def _policy_arn(stack: str) -> str:
    identity = aws("sts", "get-caller-identity")
    partition = identity["Arn"].split(":")[1]
    return f"arn:{partition}:iam::{identity['Account']}:policy/{migrate_policy_name(stack)}"


def _policy_document(document: Any) -> Any:
    """A policy version's document, as the CLI returns it (a JSON object, or
    the URL-encoded JSON string IAM sends)."""
    if isinstance(document, str):
        return json.loads(urllib.parse.unquote(document))
    return document


def _existing_policy(arn: str) -> dict[str, Any] | None:
    try:
        return aws("iam", "get-policy", "--policy-arn", arn)["Policy"]
    except Failure as e:
        if "NoSuchEntity" in str(e):
            return None
        raise


def _owned_by(arn: str, stack: str) -> bool:
    tags = aws("iam", "list-policy-tags", "--policy-arn", arn).get("Tags") or []
    return {"Key": STACK_TAG, "Value": stack} in tags


def ensure_migrate_policy(stack: str, text: str) -> str:
    """Creates or updates the customer-managed policy <stack>-migrate with
    `text`, tagged ficus:stack=<stack> so that `scripts/deploy --delete` knows
    it made it. An IAM Identity Center permission set references it by name."""
    arn = _policy_arn(stack)
    name = migrate_policy_name(stack)
    policy = _existing_policy(arn)
    if policy is None:
        aws(
            "iam", "create-policy", "--policy-name", name, "--policy-document", text,
            "--description", f"ficus: what migrate needs on the listener of stack {stack}",
            "--tags", f"Key={STACK_TAG},Value={stack}",
        )  # fmt: skip
        print(f"created the IAM policy {name} ({arn})")
        return arn
    if not _owned_by(arn, stack):
        raise Failure(
            f"an IAM policy {name} exists that scripts/deploy did not create (no tag {STACK_TAG}={stack}); "
            f"rename or delete it, or deploy with another --stack"
        )
    version = aws("iam", "get-policy-version", "--policy-arn", arn, "--version-id", policy["DefaultVersionId"])
    if _policy_document(version["PolicyVersion"]["Document"]) == json.loads(text):
        print(f"the IAM policy {name} is up to date")
        return arn
    versions = aws("iam", "list-policy-versions", "--policy-arn", arn)["Versions"]
    old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
    if len(versions) >= 5 and old:  # IAM keeps five versions at most
        aws("iam", "delete-policy-version", "--policy-arn", arn, "--version-id", old[0]["VersionId"])
    aws("iam", "create-policy-version", "--policy-arn", arn, "--policy-document", text, "--set-as-default")
    print(f"updated the IAM policy {name} ({arn})")
    return arn


def delete_migrate_policy(stack: str) -> None:
    """Deletes <stack>-migrate if scripts/deploy created it: detached from
    every role, user and group first, its old versions, then the policy."""
    arn = _policy_arn(stack)
    name = migrate_policy_name(stack)
    if _existing_policy(arn) is None:
        print(f"  no IAM policy {name}")
        return
    if not _owned_by(arn, stack):
        print(f"  left the IAM policy {name} alone: scripts/deploy did not create it (no tag {STACK_TAG}={stack})")
        return
    entities = aws("iam", "list-entities-for-policy", "--policy-arn", arn)
    for kind, key, field in (("role", "PolicyRoles", "RoleName"), ("user", "PolicyUsers", "UserName"),
                             ("group", "PolicyGroups", "GroupName")):  # fmt: skip
        for entity in entities.get(key) or []:
            try:
                aws("iam", f"detach-{kind}-policy", f"--{kind}-name", entity[field], "--policy-arn", arn)
            except Failure as e:
                raise Failure(
                    f"could not detach {name} from the {kind} {entity[field]} ({e}); an IAM Identity Center "
                    "role changes only through its permission set: remove the policy reference there, then run "
                    "scripts/deploy --delete again"
                ) from e
            print(f"  detached {name} from the {kind} {entity[field]}")
    for version in aws("iam", "list-policy-versions", "--policy-arn", arn)["Versions"]:
        if not version["IsDefaultVersion"]:
            aws("iam", "delete-policy-version", "--policy-arn", arn, "--version-id", version["VersionId"])
    aws("iam", "delete-policy", "--policy-arn", arn)
    print(f"  deleted the IAM policy {name}")


# ---------------------------------------------------------------------------
# teardown: everything scripts/deploy made, in an order AWS accepts
# ---------------------------------------------------------------------------

SERVICES = ("monolith", "users", "threads", "posts")


def _stack_exists(name: str) -> bool:
    try:
        aws("cloudformation", "describe-stacks", "--stack-name", name)
        return True
    except Failure as e:
        if "does not exist" in str(e):
            return False
        raise


def delete_route_rules(stack: str) -> None:
    """Deletes the rules `migrate init` created on the stack's listener
    (tagged ficus:route=<route>). They forward to the services' target groups,
    and AWS refuses to delete a target group that a rule uses (ResourceInUse),
    whatever state the routes are in."""
    if not _stack_exists(stack):
        print(f"  no stack {stack}: no listener, no rules")
        return
    listener_arn = require_output(stack_outputs(stack), "ListenerArn", stack)
    rules = [r for r in aws("elbv2", "describe-rules", "--listener-arn", listener_arn)["Rules"] if not r.get("IsDefault")]
    arns = [r["RuleArn"] for r in rules]
    deleted = 0
    for start in range(0, len(arns), 20):  # DescribeTags takes 20 ARNs at most
        described = aws("elbv2", "describe-tags", "--resource-arns", *arns[start : start + 20])["TagDescriptions"]
        for entry in described:
            route = {t["Key"]: t["Value"] for t in entry.get("Tags", [])}.get("ficus:route")
            if route is not None:
                aws("elbv2", "delete-rule", "--rule-arn", entry["ResourceArn"])
                print(f"  deleted migrate's rule for {route} ({entry['ResourceArn']})")
                deleted += 1
    if not deleted:
        print("  no rules tagged ficus:route on the listener")


def delete_stacks(names: list[str]) -> None:
    """Deletes the stacks that exist among `names` together, then waits for each."""
    present = [name for name in names if _stack_exists(name)]
    for name in names:
        if name not in present:
            print(f"  no stack {name}")
    for name in present:
        aws("cloudformation", "delete-stack", "--stack-name", name)
        print(f"  deleting {name}")
    for name in present:
        try:
            aws("cloudformation", "wait", "stack-delete-complete", "--stack-name", name)
        except Failure as e:
            events = aws("cloudformation", "describe-stack-events", "--stack-name", name)["StackEvents"]
            failed = [
                f"{ev['LogicalResourceId']}: {ev.get('ResourceStatusReason', '')}"
                for ev in events
                if "FAILED" in ev.get("ResourceStatus", "")
            ]
            raise Failure(
                f"stack {name} was not deleted ({e}); its failed events: {'; '.join(failed[:5]) or 'none'}. "
                "Fix what they name and run scripts/deploy --delete again"
            ) from e
        print(f"  {name}: deleted")


def delete_repositories(stack: str) -> None:
    existing = {r["repositoryName"] for r in aws("ecr", "describe-repositories")["repositories"]}
    for service in SERVICES:
        name = f"{stack}/{service}"
        if name in existing:
            aws("ecr", "delete-repository", "--repository-name", name, "--force")
            print(f"  deleted the ECR repository {name} and its images")


def teardown(stack: str) -> None:
    """The IAM policy, migrate's rules, the service stacks, the platform stack,
    the network stack (each deleted and waited for), the ECR repositories. The
    policy goes first: its Deny on the monolith's rule would stop
    CloudFormation deleting that rule for a deployer who holds it too."""
    steps = [
        ("the IAM policy for migrate", lambda: delete_migrate_policy(stack)),
        ("migrate's rules on the listener", lambda: delete_route_rules(stack)),
        ("the service stacks", lambda: delete_stacks([f"{stack}-{s}" for s in SERVICES])),
        ("the platform stack", lambda: delete_stacks([stack])),
        ("the network stack", lambda: delete_stacks([f"{stack}-network"])),
        ("the ECR repositories", lambda: delete_repositories(stack)),
    ]
    for what, step in steps:
        print(f"\n==> deleting {what}")
        step()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


CHECK_STACKS_ABOUT = """\
Checks, without any AWS call, that the rehearsal and production cannot silently differ:
  - the local ALB's stack (stack.toml) and the CloudFormation platform template declare
    the same target groups, ports, health checks, listener, default action and
    monolith rule (path, priority, tags);
  - each service scales, fails and costs on its own: every ECS service has a scalable
    target with request-count and CPU target-tracking policies and a deployment circuit
    breaker with rollback; every target group names its ECS service (ficus:ecs-service)
    and exports its request-count ResourceLabel; every taggable resource carries
    ficus:service and ficus:stack.
Each problem is printed on stderr (MISMATCH ..., NOT ON ITS OWN ...)."""

CHECK_STACKS_EPILOG = """\
exit codes:
  0  the stack and the templates agree, and each service is on its own
  1  they differ, or a service is not on its own (each problem is printed)
  2  bad input (an unknown option, a file that cannot be read or parsed)

examples:
  scripts/check-stacks
  scripts/check-stacks --template /tmp/platform-edited.yaml"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ficus_aws.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    hand = commands.add_parser("handover", help="tag the rules, write migrate.toml and migrate-policy.json")
    hand.add_argument("--stack", required=True, help="the platform stack's name")
    hand.add_argument("--template", type=Path, default=PLATFORM_TEMPLATE)
    hand.add_argument("--region", required=True)
    hand.add_argument("--endpoint-url", default="", help="a non-AWS endpoint (moto_server) to record in [aws]")
    hand.add_argument("--output-dir", type=Path, required=True)

    routes = commands.add_parser("check-routes", help="say where each route sends its traffic")
    routes.add_argument("--migrate-toml", type=Path, required=True)
    routes.add_argument("--region", default="", help="default: migrate.toml's [aws] region")
    routes.add_argument("expect", nargs="*", metavar="ROUTE=STATE", help=f"STATE: {', '.join(ROUTE_STATES)}")

    check = commands.add_parser(
        "check-stacks",
        help="compare stack.toml with the platform template",
        prog="scripts/check-stacks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=CHECK_STACKS_ABOUT,
        epilog=CHECK_STACKS_EPILOG,
    )
    check.add_argument(
        "--local-stack", type=Path, default=LOCAL_STACK, metavar="FILE",
        help=f"the local ALB's stack file (default: {LOCAL_STACK.relative_to(REPO)})",
    )
    check.add_argument(
        "--template", type=Path, default=PLATFORM_TEMPLATE, metavar="FILE",
        help=f"the platform template: load balancer, listener, target groups (default: {PLATFORM_TEMPLATE.relative_to(REPO)})",
    )
    check.add_argument(
        "--service-template", type=Path, default=SERVICE_TEMPLATE, metavar="FILE",
        help=f"the ECS service template: scaling and circuit breaker (default: {SERVICE_TEMPLATE.relative_to(REPO)})",
    )
    check.add_argument(
        "--network-template", type=Path, default=NETWORK_TEMPLATE, metavar="FILE",
        help=f"the network template, checked for its tags (default: {NETWORK_TEMPLATE.relative_to(REPO)})",
    )

    templates = commands.add_parser(
        "check-templates", help="check what AWS refuses though cfn-lint and moto accept it"
    )
    templates.add_argument("templates", nargs="*", type=Path, metavar="TEMPLATE")

    zones = commands.add_parser("pick-zones", help="print two zones where Fargate runs, comma-separated")
    zones.add_argument("--region", required=True)
    zones.add_argument("--zones", default="", help="A,B: check these instead of picking")

    down = commands.add_parser("teardown", help="delete migrate's rules, the stacks, repositories and policy")
    down.add_argument("--stack", required=True, help="the platform stack's name")
    down.add_argument("--region", required=True)

    args = parser.parse_args(argv)
    TARGET["region"] = getattr(args, "region", "") or ""
    try:
        if args.command == "handover":
            handover(args.stack, args.template, args.region, args.endpoint_url, args.output_dir)
        elif args.command == "check-routes":
            return check_routes(args.migrate_toml, args.expect)
        elif args.command == "check-templates":
            paths = args.templates or sorted((REPO / "infrastructure/aws").glob("*.yaml"))
            problems = [problem for path in paths for problem in check_template(path)]
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                return 1
            print(f"check-templates: {len(paths)} templates, nothing AWS would refuse")
        elif args.command == "pick-zones":
            print(",".join(pick_zones(args.region, [z for z in args.zones.split(",") if z])))
        elif args.command == "teardown":
            teardown(args.stack)
        else:
            result = check_stacks(args.local_stack, args.template)
            for problem in result.problems:
                print(f"MISMATCH {problem}", file=sys.stderr)
            templates = (args.template, args.service_template, args.network_template)
            alone = [problem for path in templates for problem in independence_problems(path)]
            for problem in alone:
                print(f"NOT ON ITS OWN {problem}", file=sys.stderr)
            if result.problems:
                print(
                    f"check-stacks: {len(result.problems)} of {result.checked} checks differ between "
                    f"{args.local_stack} and {args.template}; make the two declare the same load balancer",
                    file=sys.stderr,
                )
            if alone:
                print(
                    f"check-stacks: {len(alone)} problems keep services from scaling, failing or costing on "
                    "their own (above; service.yaml and docs/aws.md explain each part)",
                    file=sys.stderr,
                )
            if result.problems or alone:
                return 1
            print(
                f"check-stacks: stack.toml and {args.template.name} agree ({result.checked} checks); each service "
                f"scales, fails and costs on its own ({', '.join(t.name for t in templates)})"
            )
    except Failure as e:
        print(f"ficus_aws.py {args.command}: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
