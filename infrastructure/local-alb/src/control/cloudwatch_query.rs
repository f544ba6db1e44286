//! CloudWatch's Query API form (`Action=GetMetricData&Version=2010-08-01`,
//! form-encoded, XML answers), for clients older than the JSON and CBOR
//! protocols: the form becomes the operation's input structure and the
//! output structure becomes XML, so `cloudwatch::api` answers it as it
//! answers the other two.

use std::collections::BTreeMap;

use ciborium::Value;

use super::xml::{self, Xml};
use crate::cloudwatch::api::CloudWatchError;

/// The Query API version of CloudWatch.
pub const VERSION: &str = "2010-08-01";
/// CloudWatch's XML namespace.
const NAMESPACE: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";

/// Members whose text is a number, a boolean or a timestamp.
const INTEGERS: &[&str] = &["Period", "MaxDatapoints"];
const BOOLEANS: &[&str] = &["ReturnData", "RecentlyActive", "IncludeLinkedAccounts"];
const TIMESTAMPS: &[&str] = &["StartTime", "EndTime"];

/// A form parameter path, parsed: structures by member name, lists by
/// `member.N`.
enum Node {
    Leaf(String),
    Structure(BTreeMap<String, Node>),
    List(BTreeMap<usize, Node>),
}

fn malformed(key: &str) -> CloudWatchError {
    CloudWatchError::invalid_value(format!(
        "The parameter name {key} is not valid: structures are Name.Member, lists Name.member.N (N from 1)"
    ))
}

fn insert(
    node: &mut Node,
    segments: &[&str],
    value: String,
    key: &str,
) -> Result<(), CloudWatchError> {
    match segments {
        [] => {
            *node = Node::Leaf(value);
            Ok(())
        }
        ["member", index, rest @ ..] => {
            if let Node::Structure(members) = node
                && members.is_empty()
            {
                *node = Node::List(BTreeMap::new());
            }
            let Node::List(items) = node else {
                return Err(malformed(key));
            };
            let index: usize = index
                .parse()
                .ok()
                .filter(|i| *i >= 1)
                .ok_or_else(|| malformed(key))?;
            let item = items
                .entry(index)
                .or_insert_with(|| Node::Structure(BTreeMap::new()));
            insert(item, rest, value, key)
        }
        [name, rest @ ..] => {
            let Node::Structure(members) = node else {
                return Err(malformed(key));
            };
            let member = members
                .entry((*name).to_owned())
                .or_insert_with(|| Node::Structure(BTreeMap::new()));
            insert(member, rest, value, key)
        }
    }
}

/// A timestamp as the Query API sends it: ISO 8601, or epoch seconds.
fn timestamp(text: &str, name: &str) -> Result<Value, CloudWatchError> {
    let seconds = match text.parse::<f64>() {
        Ok(seconds) => seconds,
        Err(_) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                CloudWatchError::invalid_value(format!(
                    "The value {text} for parameter {name} is not a timestamp: use ISO 8601 (2026-01-02T03:04:05Z) or epoch seconds"
                ))
            })?
            .unix_timestamp() as f64,
    };
    Ok(Value::Tag(1, Box::new(Value::Float(seconds))))
}

fn to_value(name: &str, node: Node) -> Result<Value, CloudWatchError> {
    Ok(match node {
        Node::Leaf(text) if INTEGERS.contains(&name) => match text.parse::<i64>() {
            Ok(n) => Value::Integer(n.into()),
            Err(_) => {
                return Err(CloudWatchError::invalid_value(format!(
                    "The value {text} for parameter {name} is not a whole number"
                )));
            }
        },
        Node::Leaf(text) if BOOLEANS.contains(&name) => match text.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                return Err(CloudWatchError::invalid_value(format!(
                    "The value {text} for parameter {name} is not true or false"
                )));
            }
        },
        Node::Leaf(text) if TIMESTAMPS.contains(&name) => timestamp(&text, name)?,
        Node::Leaf(text) => Value::Text(text),
        Node::List(items) => Value::Array(
            items
                .into_values()
                .map(|item| to_value("member", item))
                .collect::<Result<_, _>>()?,
        ),
        Node::Structure(members) => Value::Map(
            members
                .into_iter()
                .map(|(name, member)| Ok((Value::Text(name.clone()), to_value(&name, member)?)))
                .collect::<Result<_, CloudWatchError>>()?,
        ),
    })
}

/// The input structure of a Query API form (without `Action`/`Version`).
pub fn input(pairs: &[(String, String)]) -> Result<Vec<(Value, Value)>, CloudWatchError> {
    let mut root = Node::Structure(BTreeMap::new());
    for (key, value) in pairs {
        if key == "Action" || key == "Version" {
            continue;
        }
        let segments: Vec<&str> = key.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(malformed(key));
        }
        insert(&mut root, &segments, value.clone(), key)?;
    }
    match to_value("", root)? {
        Value::Map(members) => Ok(members),
        _ => Err(malformed("")),
    }
}

fn write_value(x: &mut Xml, name: &str, value: &Value) {
    match value {
        Value::Map(members) => {
            x.node(name, |x| {
                for (key, member) in members {
                    if let Some(key) = key.as_text() {
                        write_value(x, key, member);
                    }
                }
            });
        }
        Value::Array(items) => {
            x.node(name, |x| {
                for item in items {
                    write_value(x, "member", item);
                }
            });
        }
        Value::Tag(_, seconds) => {
            let seconds = match seconds.as_ref() {
                Value::Float(f) => *f as i64,
                Value::Integer(i) => i64::try_from(*i).unwrap_or_default(),
                _ => 0,
            };
            let text = time::OffsetDateTime::from_unix_timestamp(seconds)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            x.leaf(name, text);
        }
        Value::Float(f) => {
            x.leaf(name, f);
        }
        Value::Integer(i) => {
            x.leaf(name, i128::from(*i));
        }
        Value::Text(text) => {
            x.leaf(name, text);
        }
        Value::Bool(b) => {
            x.leaf(name, b);
        }
        _ => {}
    }
}

/// `<{action}Response>` with the output structure as its result.
pub fn success(action: &str, output: &Value, request_id: &str) -> String {
    xml::success_in(NAMESPACE, action, request_id, |x| {
        if let Value::Map(members) = output {
            for (key, member) in members {
                if let Some(key) = key.as_text() {
                    write_value(x, key, member);
                }
            }
        }
    })
}

/// `<ErrorResponse>` with the Query API code.
pub fn error(error: &CloudWatchError, request_id: &str) -> String {
    xml::error_in(
        NAMESPACE,
        [error.fault(), error.code, &error.message],
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_form_becomes_the_input_structure() {
        let input = input(&pairs(&[
            ("Action", "GetMetricData"),
            ("MetricDataQueries.member.1.Id", "m1"),
            ("MetricDataQueries.member.1.MetricStat.Period", "60"),
            (
                "MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name",
                "LoadBalancer",
            ),
            ("StartTime", "2026-01-02T03:04:05Z"),
            ("MetricDataQueries.member.1.ReturnData", "true"),
        ]))
        .unwrap();
        let value = Value::Map(input);
        let text = format!("{value:?}");
        assert!(text.contains("Integer(60)"), "{text}");
        assert!(text.contains("Tag(1, Float(1767323045.0))"), "{text}");
        assert!(text.contains("Bool(true)"), "{text}");
        assert!(text.contains("Array([Map"), "{text}");
    }

    #[test]
    fn malformed_forms_are_refused() {
        for bad in [
            &[("A..B", "x")][..],
            &[("MetricDataQueries.member.0.Id", "x")],
            &[("MetricDataQueries.member.x.Id", "x")],
            &[("StartTime", "yesterday")],
            &[("MaxDatapoints", "many")],
            &[("X", "1"), ("X.member.1", "2")],
        ] {
            assert!(input(&pairs(bad)).is_err(), "{bad:?}");
        }
    }
}
