//! Reading model values (conditions, actions, tags, targets) out of Query API
//! parameters. Shape errors (missing or malformed parameters) are answered
//! here; limits and references are checked in `validate`.

use super::error::ApiError;
use super::form::Form;
use super::validate;
use crate::model::{Action, ActionKind, Condition, QueryPair, Tag, Target, WeightedTargetGroup};

/// `Conditions.member.N...`; `None` when the list was not given.
pub fn conditions(form: &Form, key: &str) -> Result<Option<Vec<Condition>>, ApiError> {
    let Some(members) = form.member_list(key)? else {
        return Ok(None);
    };
    members
        .iter()
        .map(condition)
        .collect::<Result<_, _>>()
        .map(Some)
}

fn condition(member: &Form) -> Result<Condition, ApiError> {
    let field = member.required("Field")?;
    let configs = [
        "PathPatternConfig",
        "HostHeaderConfig",
        "HttpHeaderConfig",
        "HttpRequestMethodConfig",
        "QueryStringConfig",
        "SourceIpConfig",
    ];
    let expected = match field {
        "path-pattern" => "PathPatternConfig",
        "host-header" => "HostHeaderConfig",
        "http-header" => "HttpHeaderConfig",
        "http-request-method" => "HttpRequestMethodConfig",
        "query-string" => "QueryStringConfig",
        "source-ip" => "SourceIpConfig",
        other => {
            return Err(ApiError::validation(format!(
                "Condition field '{other}' at '{}' is not one of path-pattern, host-header, http-header, http-request-method, query-string, source-ip",
                member.name_of("Field")
            )));
        }
    };
    if let Some(other) = configs.iter().find(|c| **c != expected && member.has(c)) {
        return Err(ApiError::validation(format!(
            "Condition field '{field}' cannot have a '{}'; use '{expected}'",
            member.name_of(other)
        )));
    }
    let legacy = member.string_list("Values")?;
    let config = member.structure(expected);
    let has_config = member.has(expected);
    let legacy_allowed = matches!(field, "path-pattern" | "host-header");
    if legacy.is_some() && !legacy_allowed {
        return Err(ApiError::validation(format!(
            "Condition field '{field}' does not take '{}'; use '{}.Values'",
            member.name_of("Values"),
            member.name_of(expected)
        )));
    }
    let legacy = match legacy {
        // DescribeRules shows both forms with the same values; AWS takes that
        // back (describe, edit, modify), so the config's values stand.
        Some(values) if has_config => {
            if Some(&values) != config.string_list("Values")?.as_ref() {
                return Err(ApiError::validation(format!(
                    "'{}' and '{}' give different values; give one of them, or the same values in both as DescribeRules shows them",
                    member.name_of("Values"),
                    config.name_of("Values")
                )));
            }
            None
        }
        Some(values) if values.len() > 1 => {
            return Err(ApiError::validation(format!(
                "'{}' takes a single {field} value, but {} were given; put several in '{}'",
                member.name_of("Values"),
                values.len(),
                config.name_of("Values")
            )));
        }
        other => other,
    };
    let strings = |legacy: Option<Vec<String>>| -> Result<Vec<String>, ApiError> {
        match legacy {
            Some(values) => Ok(values),
            None => Ok(config.string_list("Values")?.unwrap_or_default()),
        }
    };
    Ok(match field {
        "path-pattern" => Condition::PathPattern {
            values: strings(legacy)?,
        },
        "host-header" => Condition::HostHeader {
            values: strings(legacy)?,
        },
        "http-request-method" => Condition::HttpRequestMethod {
            values: strings(None)?,
        },
        "source-ip" => Condition::SourceIp {
            values: strings(None)?,
        },
        "http-header" => Condition::HttpHeader {
            name: config.required("HttpHeaderName")?.to_owned(),
            values: strings(None)?,
        },
        _ => Condition::QueryString {
            values: config
                .member_list("Values")?
                .unwrap_or_default()
                .iter()
                .map(|pair| {
                    Ok(QueryPair {
                        key: pair.get("Key").map(str::to_owned),
                        value: pair.required("Value")?.to_owned(),
                    })
                })
                .collect::<Result<_, ApiError>>()?,
        },
    })
}

/// `Actions.member.N...`; `None` when the list was not given.
pub fn actions(form: &Form, key: &str) -> Result<Option<Vec<Action>>, ApiError> {
    let Some(members) = form.member_list(key)? else {
        return Ok(None);
    };
    members
        .iter()
        .map(action)
        .collect::<Result<_, _>>()
        .map(Some)
}

fn action(member: &Form) -> Result<Action, ApiError> {
    let order = match member.integer("Order")? {
        None => None,
        Some(order) if (1..=50_000).contains(&order) => u32::try_from(order).ok(),
        Some(order) => {
            return Err(ApiError::validation(format!(
                "Order '{order}' at '{}' is out of range: it must be between 1 and 50000",
                member.name_of("Order")
            )));
        }
    };
    let kind = match member.required("Type")? {
        "forward" => forward(member)?,
        "fixed-response" => {
            let config = member.structure("FixedResponseConfig");
            let status_code = config.required("StatusCode")?.to_owned();
            let valid = status_code.len() == 3
                && matches!(status_code.as_bytes()[0], b'2' | b'4' | b'5')
                && status_code.bytes().all(|b| b.is_ascii_digit());
            if !valid {
                return Err(ApiError::validation(format!(
                    "StatusCode '{status_code}' at '{}' must be a 2XX, 4XX or 5XX code",
                    config.name_of("StatusCode")
                )));
            }
            ActionKind::FixedResponse {
                status_code,
                content_type: config.get("ContentType").map(str::to_owned),
                message_body: config.get("MessageBody").map(str::to_owned),
            }
        }
        "redirect" => {
            let config = member.structure("RedirectConfig");
            let status_code = config.required("StatusCode")?.to_owned();
            if status_code != "HTTP_301" && status_code != "HTTP_302" {
                return Err(ApiError::validation(format!(
                    "StatusCode '{status_code}' at '{}' must be HTTP_301 or HTTP_302",
                    config.name_of("StatusCode")
                )));
            }
            let text = |key: &str| config.get(key).map(str::to_owned);
            ActionKind::Redirect {
                protocol: text("Protocol"),
                host: text("Host"),
                port: text("Port"),
                path: text("Path"),
                query: text("Query"),
                status_code,
            }
        }
        other => {
            return Err(ApiError::validation(format!(
                "Action type '{other}' at '{}' is not supported here: use forward, fixed-response or redirect",
                member.name_of("Type")
            )));
        }
    };
    Ok(Action { order, kind })
}

fn forward(member: &Form) -> Result<ActionKind, ApiError> {
    let plain_arn = member.get("TargetGroupArn").map(str::to_owned);
    let config = member.structure("ForwardConfig");
    let weighted = config
        .member_list("TargetGroups")?
        .unwrap_or_default()
        .iter()
        .map(|tuple| {
            let weight = tuple.integer("Weight")?.unwrap_or(1);
            if !(0..=validate::MAX_WEIGHT).contains(&weight) {
                return Err(ApiError::validation(format!(
                    "Weight '{weight}' at '{}' is out of range: it must be between 0 and {}",
                    tuple.name_of("Weight"),
                    validate::MAX_WEIGHT
                )));
            }
            Ok(WeightedTargetGroup {
                target_group_arn: tuple.required("TargetGroupArn")?.to_owned(),
                weight: u32::try_from(weight).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let stickiness = config.structure("TargetGroupStickinessConfig");
    let stickiness_enabled = stickiness.boolean("Enabled")?.unwrap_or(false);
    let stickiness_duration_seconds = match stickiness.integer("DurationSeconds")? {
        None => None,
        Some(seconds) if (1..=604_800).contains(&seconds) => u32::try_from(seconds).ok(),
        Some(seconds) => {
            return Err(ApiError::validation(format!(
                "DurationSeconds '{seconds}' at '{}' must be between 1 and 604800",
                stickiness.name_of("DurationSeconds")
            )));
        }
    };
    let (target_groups, plain) = match (plain_arn, weighted.is_empty()) {
        (None, true) => {
            return Err(ApiError::validation(format!(
                "A forward action needs '{}' or '{}'",
                member.name_of("TargetGroupArn"),
                config.name_of("TargetGroups")
            )));
        }
        (Some(arn), true) => (
            vec![WeightedTargetGroup {
                target_group_arn: arn,
                weight: 1,
            }],
            true,
        ),
        (None, false) => (weighted, false),
        (Some(arn), false) => {
            if weighted.len() != 1 || weighted[0].target_group_arn != arn {
                return Err(ApiError::validation(format!(
                    "With both '{}' and '{}', the forward config must name exactly that one target group",
                    member.name_of("TargetGroupArn"),
                    config.name_of("TargetGroups")
                )));
            }
            (weighted, false)
        }
    };
    Ok(ActionKind::Forward {
        target_groups,
        plain,
        stickiness_enabled,
        stickiness_duration_seconds,
    })
}

/// `Tags.member.N.Key/Value`, checked for duplicates and lengths.
pub fn tags(form: &Form, key: &str) -> Result<Option<Vec<Tag>>, ApiError> {
    let Some(members) = form.member_list(key)? else {
        return Ok(None);
    };
    if members.is_empty() {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '[]' at '{}' failed to satisfy constraint: Member must have length greater than or equal to 1",
            form.name_of(key)
        )));
    }
    let tags = members
        .iter()
        .map(|member| {
            Ok(Tag {
                key: member.required("Key")?.to_owned(),
                value: member.get("Value").unwrap_or_default().to_owned(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    validate::tags(&tags)?;
    Ok(Some(tags))
}

/// `Targets.member.N.Id/Port`; a target without a port gets `default_port`.
pub fn targets(form: &Form, key: &str, default_port: u16) -> Result<Option<Vec<Target>>, ApiError> {
    let Some(members) = form.member_list(key)? else {
        return Ok(None);
    };
    members
        .iter()
        .map(|member| {
            let id = member.required("Id")?;
            if id.is_empty() {
                return Err(ApiError::validation(format!(
                    "'{}' must not be empty",
                    member.name_of("Id")
                )));
            }
            let port = match member.integer("Port")? {
                None => default_port,
                Some(port) => u16::try_from(port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        ApiError::validation(format!(
                            "Port '{port}' at '{}' must be between 1 and 65535",
                            member.name_of("Port")
                        ))
                    })?,
            };
            Ok(Target {
                id: id.to_owned(),
                port,
            })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}
