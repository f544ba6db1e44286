//! Model values in the XML shapes of the ELBv2 API (botocore's `Rule`,
//! `RuleCondition`, `Action`, `TargetGroup`, `LoadBalancer`, `Listener`, `Tag`).

use super::xml::Xml;
use crate::model::{
    Action, ActionKind, Condition, Listener, LoadBalancer, Rule, State, Tag, TargetGroup,
};

pub fn rule(x: &mut Xml, rule: &Rule) {
    x.leaf("RuleArn", &rule.arn)
        .leaf("Priority", rule.priority.as_api_string())
        .list("Conditions", &rule.conditions, condition)
        .list("Actions", rule.actions.iter().enumerate(), |x, (i, a)| {
            action(x, i, a)
        })
        .leaf("IsDefault", rule.is_default());
}

/// A condition as AWS describes it: path-pattern and host-header carry both
/// the legacy `Values` and their `*Config`; the others only their `*Config`.
pub fn condition(x: &mut Xml, condition: &Condition) {
    match condition {
        Condition::PathPattern { values } => {
            x.leaf("Field", "path-pattern")
                .string_list("Values", values)
                .node("PathPatternConfig", |x| {
                    x.string_list("Values", values);
                });
        }
        Condition::HostHeader { values } => {
            x.leaf("Field", "host-header")
                .string_list("Values", values)
                .node("HostHeaderConfig", |x| {
                    x.string_list("Values", values);
                });
        }
        Condition::HttpRequestMethod { values } => {
            x.leaf("Field", "http-request-method")
                .node("HttpRequestMethodConfig", |x| {
                    x.string_list("Values", values);
                });
        }
        Condition::SourceIp { values } => {
            x.leaf("Field", "source-ip").node("SourceIpConfig", |x| {
                x.string_list("Values", values);
            });
        }
        Condition::HttpHeader { name, values } => {
            x.leaf("Field", "http-header")
                .node("HttpHeaderConfig", |x| {
                    x.leaf("HttpHeaderName", name).string_list("Values", values);
                });
        }
        Condition::QueryString { values } => {
            x.leaf("Field", "query-string")
                .node("QueryStringConfig", |x| {
                    x.list("Values", values, |x, pair| {
                        x.optional_leaf("Key", pair.key.as_ref())
                            .leaf("Value", &pair.value);
                    });
                });
        }
    }
}

/// One action; `index` is its position, used as `Order` when none was given.
pub fn action(x: &mut Xml, index: usize, action: &Action) {
    let order = action.order.map_or(index + 1, |o| o as usize);
    match &action.kind {
        ActionKind::Forward {
            target_groups,
            stickiness_enabled,
            stickiness_duration_seconds,
            ..
        } => {
            x.leaf("Type", "forward");
            if let [only] = target_groups.as_slice() {
                x.leaf("TargetGroupArn", &only.target_group_arn);
            }
            x.leaf("Order", order).node("ForwardConfig", |x| {
                x.list("TargetGroups", target_groups, |x, t| {
                    x.leaf("TargetGroupArn", &t.target_group_arn)
                        .leaf("Weight", t.weight);
                })
                .node("TargetGroupStickinessConfig", |x| {
                    x.leaf("Enabled", stickiness_enabled)
                        .optional_leaf("DurationSeconds", *stickiness_duration_seconds);
                });
            });
        }
        ActionKind::FixedResponse {
            status_code,
            content_type,
            message_body,
        } => {
            x.leaf("Type", "fixed-response").leaf("Order", order).node(
                "FixedResponseConfig",
                |x| {
                    x.optional_leaf("MessageBody", message_body.as_ref())
                        .leaf("StatusCode", status_code)
                        .optional_leaf("ContentType", content_type.as_ref());
                },
            );
        }
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
            x.leaf("Type", "redirect")
                .leaf("Order", order)
                .node("RedirectConfig", |x| {
                    x.leaf("Protocol", protocol)
                        .leaf("Port", port)
                        .leaf("Host", host)
                        .leaf("Path", path)
                        .leaf("Query", query)
                        .leaf("StatusCode", status_code);
                });
        }
    }
}

pub fn load_balancer(x: &mut Xml, lb: &LoadBalancer) {
    x.leaf("LoadBalancerArn", &lb.arn)
        .leaf("DNSName", &lb.dns_name)
        .leaf("CanonicalHostedZoneId", "Z35SXDOTRQ7X7K")
        .leaf("CreatedTime", &lb.created_time)
        .leaf("LoadBalancerName", &lb.name)
        .leaf("Scheme", &lb.scheme)
        .leaf("VpcId", LOCAL_VPC_ID)
        .node("State", |x| {
            x.leaf("Code", "active");
        })
        .leaf("Type", "application")
        .list("AvailabilityZones", ["local-1a"], |x, zone| {
            x.leaf("ZoneName", zone).leaf("SubnetId", "subnet-local");
        })
        .string_list("SecurityGroups", ["sg-local"])
        .leaf("IpAddressType", "ipv4");
}

/// The VPC every local resource claims to live in.
pub const LOCAL_VPC_ID: &str = "vpc-local";

pub fn listener(x: &mut Xml, state: &State, listener: &Listener) {
    let default_actions: &[Action] = state
        .rules_of(&listener.arn)
        .into_iter()
        .find(|r| r.is_default())
        .map_or(&[], |r| r.actions.as_slice());
    x.leaf("ListenerArn", &listener.arn)
        .leaf("LoadBalancerArn", &listener.load_balancer_arn)
        .leaf("Port", listener.port)
        .leaf("Protocol", &listener.protocol)
        .list(
            "DefaultActions",
            default_actions.iter().enumerate(),
            |x, (i, a)| action(x, i, a),
        );
}

pub fn target_group(x: &mut Xml, state: &State, tg: &TargetGroup) {
    let hc = &tg.health_check;
    x.leaf("TargetGroupArn", &tg.arn)
        .leaf("TargetGroupName", &tg.name)
        .leaf("Protocol", &tg.protocol)
        .leaf("Port", tg.port)
        .leaf("VpcId", LOCAL_VPC_ID)
        .leaf("HealthCheckProtocol", &tg.protocol)
        .leaf("HealthCheckPort", "traffic-port")
        .leaf("HealthCheckEnabled", true)
        .leaf("HealthCheckIntervalSeconds", hc.interval_seconds)
        .leaf("HealthCheckTimeoutSeconds", hc.timeout_seconds)
        .leaf("HealthyThresholdCount", hc.healthy_threshold)
        .leaf("UnhealthyThresholdCount", hc.unhealthy_threshold)
        .leaf("HealthCheckPath", &hc.path)
        .node("Matcher", |x| {
            x.leaf("HttpCode", &hc.matcher);
        })
        .string_list("LoadBalancerArns", state.load_balancers_using(&tg.arn))
        .leaf("TargetType", &tg.target_type)
        .leaf("ProtocolVersion", "HTTP1")
        .leaf("IpAddressType", "ipv4");
}

pub fn tags(x: &mut Xml, tags: &[Tag]) {
    x.list("Tags", tags, |x, tag| {
        x.leaf("Key", &tag.key).leaf("Value", &tag.value);
    });
}
