//! CloudWatch's `GetMetricData` and `ListMetrics` over Smithy RPC v2 CBOR,
//! answered from the data plane's counters.
//!
//! Shapes as in the CloudWatch API reference (botocore's `monitoring`
//! model): requests are CBOR maps; timestamps are tag 1 (epoch seconds,
//! integer or float); errors are `{"__type", "message"}` maps with HTTP 400
//! and, as the service is `awsQueryCompatible`, an `x-amzn-query-error:
//! Code;Sender` header carrying the Query API error code the SDKs report.
//!
//! What AWS does, done here too: a namespace, metric name or dimension set
//! with no data is not an error (the result is empty, `Complete`); a
//! dimension set matches exactly (`TargetGroup` alone matches nothing: the
//! published set is `TargetGroup` with `LoadBalancer`). Not implemented:
//! metric math (`Expression`, refused with `InvalidParameterValue`) and the
//! statistics other than `SampleCount`, `Sum`, `Average`, `Minimum`,
//! `Maximum` and `pNN`/`pNN.NN`.

use std::collections::{BTreeMap, HashSet};

use ciborium::Value;

use super::counters::{Cell, Count, Registry, Second, now_second};

/// The namespace of Application Load Balancer metrics.
pub const NAMESPACE: &str = "AWS/ApplicationELB";
/// The most queries one `GetMetricData` call may hold (as on AWS).
const MAX_QUERIES: usize = 500;
/// The default and largest `MaxDatapoints` (as on AWS).
const MAX_DATAPOINTS: usize = 100_800;

/// An error answered in CloudWatch's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatchError {
    pub status: u16,
    /// The Query API code (`x-amzn-query-error`), e.g. `InvalidParameterValue`.
    pub code: &'static str,
    /// The Smithy shape ID (`__type`).
    pub shape: &'static str,
    pub message: String,
}

impl CloudWatchError {
    fn new(code: &'static str, shape: &'static str, message: impl Into<String>) -> Self {
        CloudWatchError {
            status: 400,
            code,
            shape,
            message: message.into(),
        }
    }

    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(
            "InvalidParameterValue",
            "com.amazonaws.cloudwatch#InvalidParameterValueException",
            message,
        )
    }

    pub fn missing(parameter: &str) -> Self {
        Self::new(
            "MissingParameter",
            "com.amazonaws.cloudwatch#MissingRequiredParameterException",
            format!("The parameter {parameter} is required."),
        )
    }

    pub fn combination(message: impl Into<String>) -> Self {
        Self::new(
            "InvalidParameterCombination",
            "com.amazonaws.cloudwatch#InvalidParameterCombinationException",
            message,
        )
    }

    pub fn invalid_next_token(message: impl Into<String>) -> Self {
        Self::new(
            "InvalidNextToken",
            "com.amazonaws.cloudwatch#InvalidNextToken",
            message,
        )
    }

    /// The body is not CBOR, or not the input structure's shape.
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(
            "SerializationException",
            "com.amazon.coral.service#SerializationException",
            message,
        )
    }

    pub fn unknown_operation(operation: &str) -> Self {
        CloudWatchError {
            status: 404,
            ..Self::new(
                "UnknownOperationException",
                "com.amazon.coral.service#UnknownOperationException",
                format!(
                    "The local ALB serves the CloudWatch operations GetMetricData and ListMetrics, not '{operation}'"
                ),
            )
        }
    }

    /// A SigV4 failure (HTTP 403) with the Query API `code`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        CloudWatchError {
            status: 403,
            ..Self::new(
                code,
                "com.amazon.coral.service#AccessDeniedException",
                message,
            )
        }
        .with_shape_for_auth()
    }

    fn with_shape_for_auth(mut self) -> Self {
        self.shape = match self.code {
            "MissingAuthenticationToken" => {
                "com.amazon.coral.service#MissingAuthenticationTokenException"
            }
            "IncompleteSignature" => "com.amazon.coral.service#IncompleteSignatureException",
            "InvalidClientTokenId" => "com.amazon.coral.service#UnrecognizedClientException",
            _ => "com.amazon.coral.service#InvalidSignatureException",
        };
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        CloudWatchError {
            status: 500,
            ..Self::new(
                "InternalServiceError",
                "com.amazonaws.cloudwatch#InternalServiceFault",
                message,
            )
        }
    }

    /// A request over the rate: HTTP 400, Query code `Throttling`, shape
    /// `ThrottlingException`, "Rate exceeded" (as CloudWatch answers).
    pub fn throttling() -> Self {
        Self::new(
            "Throttling",
            "com.amazon.coral.availability#ThrottlingException",
            "Rate exceeded",
        )
    }

    /// A transient server error: 503 `ServiceUnavailable`, else 500
    /// `InternalServiceError` (injected by `--transient-errors`).
    pub fn transient(status: u16) -> Self {
        if status == 503 {
            CloudWatchError {
                status: 503,
                ..Self::new(
                    "ServiceUnavailable",
                    "com.amazon.coral.availability#ServiceUnavailableException",
                    "The request has failed due to a temporary failure of the server.",
                )
            }
        } else {
            Self::internal("The request processing has failed because of an unknown error.")
        }
    }

    /// `Sender` for 4xx, `Receiver` for 5xx (the header's second part).
    pub fn fault(&self) -> &'static str {
        if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        }
    }

    /// The body in `protocol`: `{"__type", "message"}`.
    pub fn body(&self, protocol: Protocol) -> Vec<u8> {
        let value = Value::Map(vec![
            (text("__type"), text(self.shape)),
            (text("message"), text(&self.message)),
        ]);
        match protocol {
            Protocol::Cbor => encode(&value),
            Protocol::Json => to_json(&value).to_string().into_bytes(),
        }
    }
}

type Result<T> = std::result::Result<T, CloudWatchError>;

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// The CBOR encoding of `value` (writing to a Vec cannot fail).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// The wire format of a request and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Smithy RPC v2 CBOR (`aws-sdk-cloudwatch`; CloudWatch's first protocol).
    Cbor,
    /// AWS JSON 1.0 (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`),
    /// what botocore 1.43 (the AWS CLI) resolves CloudWatch's protocols to.
    Json,
}

impl Protocol {
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::Cbor => "application/cbor",
            Protocol::Json => "application/x-amz-json-1.0",
        }
    }
}

/// Runs `operation` on `body` in `protocol`; the answer in the same.
pub fn handle(
    registry: &Registry,
    protocol: Protocol,
    operation: &str,
    body: &[u8],
) -> Result<Vec<u8>> {
    let input = match protocol {
        Protocol::Cbor => decode(body)?,
        Protocol::Json => decode_json(body)?,
    };
    let answer = answer(registry, operation, &input)?;
    Ok(match protocol {
        Protocol::Cbor => encode(&answer),
        Protocol::Json => to_json(&answer).to_string().into_bytes(),
    })
}

/// The CloudWatch operations this load balancer answers.
pub const OPERATIONS: &[&str] = &["GetMetricData", "ListMetrics"];

/// Runs `operation` on its input structure (as CBOR values, whatever the
/// wire format); the output structure.
pub fn answer(registry: &Registry, operation: &str, input: &[(Value, Value)]) -> Result<Value> {
    match operation {
        "GetMetricData" => GetMetricData::parse(input)?.answer(registry, now_second()),
        "ListMetrics" => list_metrics(registry, input),
        other => Err(CloudWatchError::unknown_operation(other)),
    }
}

/// The input structure of an AWS JSON 1.0 body, as CBOR values (numbers
/// stand for timestamps there).
fn decode_json(body: &[u8]) -> Result<Vec<(Value, Value)>> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        CloudWatchError::serialization(format!("The request body is not valid JSON: {e}"))
    })?;
    match from_json(json) {
        Value::Map(entries) => Ok(entries),
        _ => Err(CloudWatchError::serialization(
            "The request body must be a JSON object (the operation's input structure)",
        )),
    }
}

fn from_json(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i.into()),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Text(s),
        serde_json::Value::Array(items) => Value::Array(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (Value::Text(k), from_json(v)))
                .collect(),
        ),
    }
}

/// An answer (built as CBOR values) as AWS JSON: timestamps as epoch
/// seconds.
fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Tag(_, inner) => to_json(inner),
        Value::Integer(i) => serde_json::Value::from(i128::from(*i) as f64),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Text(s) => serde_json::Value::String(s.clone()),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_text()?.to_owned(), to_json(v))))
                .collect(),
        ),
        _ => serde_json::Value::Null,
    }
}

/// The input structure: a CBOR map (an empty body is an empty input).
fn decode(body: &[u8]) -> Result<Vec<(Value, Value)>> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = ciborium::from_reader(body).map_err(|e| {
        CloudWatchError::serialization(format!("The request body is not valid CBOR: {e}"))
    })?;
    match value {
        Value::Map(entries) => Ok(entries),
        _ => Err(CloudWatchError::serialization(
            "The request body must be a CBOR map (the operation's input structure)",
        )),
    }
}

/// A member of a CBOR map, by name.
fn member<'v>(map: &'v [(Value, Value)], name: &str) -> Option<&'v Value> {
    map.iter()
        .find(|(key, _)| key.as_text() == Some(name))
        .map(|(_, value)| value)
        .filter(|value| !value.is_null())
}

fn wrong_type(path: &str, expected: &str) -> CloudWatchError {
    CloudWatchError::serialization(format!("{path} must be {expected}"))
}

fn string<'v>(map: &'v [(Value, Value)], name: &str, path: &str) -> Result<Option<&'v str>> {
    member(map, name)
        .map(|v| v.as_text().ok_or_else(|| wrong_type(path, "a string")))
        .transpose()
}

fn structure<'v>(
    map: &'v [(Value, Value)],
    name: &str,
    path: &str,
) -> Result<Option<&'v [(Value, Value)]>> {
    member(map, name)
        .map(|v| {
            v.as_map()
                .map(Vec::as_slice)
                .ok_or_else(|| wrong_type(path, "a structure (CBOR map)"))
        })
        .transpose()
}

fn list<'v>(map: &'v [(Value, Value)], name: &str, path: &str) -> Result<Option<&'v [Value]>> {
    member(map, name)
        .map(|v| {
            v.as_array()
                .map(Vec::as_slice)
                .ok_or_else(|| wrong_type(path, "a list (CBOR array)"))
        })
        .transpose()
}

fn integer(map: &[(Value, Value)], name: &str, path: &str) -> Result<Option<i128>> {
    member(map, name)
        .map(|v| match v {
            Value::Integer(i) => Ok(i128::from(*i)),
            _ => Err(wrong_type(path, "an integer")),
        })
        .transpose()
}

fn boolean(map: &[(Value, Value)], name: &str, path: &str) -> Result<Option<bool>> {
    member(map, name)
        .map(|v| v.as_bool().ok_or_else(|| wrong_type(path, "a boolean")))
        .transpose()
}

/// A timestamp: tag 1 around epoch seconds (integer or float), as the
/// SDKs send it in CBOR; in JSON, the bare number.
fn timestamp(map: &[(Value, Value)], name: &str) -> Result<Option<f64>> {
    let Some(value) = member(map, name) else {
        return Ok(None);
    };
    let number = |value: &Value| match value {
        Value::Integer(i) => Some(i128::from(*i) as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    let seconds = match value {
        Value::Tag(1, inner) => number(inner),
        other => number(other),
    };
    match seconds {
        Some(s) if s.is_finite() => Ok(Some(s)),
        _ => Err(wrong_type(
            name,
            "a timestamp (CBOR tag 1 around epoch seconds)",
        )),
    }
}

/// A statistic CloudWatch can answer here.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Statistic {
    SampleCount,
    Sum,
    Average,
    Minimum,
    Maximum,
    /// `pNN` or `pNN.NN`, 0 to 100.
    Percentile(f64),
}

impl Statistic {
    fn parse(text: &str) -> Option<Statistic> {
        Some(match text {
            "SampleCount" => Statistic::SampleCount,
            "Sum" => Statistic::Sum,
            "Average" => Statistic::Average,
            "Minimum" => Statistic::Minimum,
            "Maximum" => Statistic::Maximum,
            _ => {
                let number = text.strip_prefix('p')?;
                let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
                let digits =
                    |s: &str, max: usize| s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
                if whole.is_empty()
                    || !digits(whole, 3)
                    || !digits(fraction, 2)
                    || (number.contains('.') && fraction.is_empty())
                {
                    return None;
                }
                let p: f64 = number.parse().ok()?;
                if !(0.0..=100.0).contains(&p) {
                    return None;
                }
                Statistic::Percentile(p)
            }
        })
    }
}

/// The `AWS/ApplicationELB` metrics the local ALB publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Count(Count),
    TargetResponseTime,
    /// `HealthyHostCount` (true) or `UnHealthyHostCount` (false).
    Hosts(bool),
}

/// Which dimension sets a metric is published with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// {LoadBalancer} and {LoadBalancer, TargetGroup}.
    Both,
    LoadBalancer,
    TargetGroup,
}

const METRICS: [(&str, Metric, Scope); 13] = [
    ("RequestCount", Metric::Count(Count::Requests), Scope::Both),
    (
        "HTTPCode_Target_2XX_Count",
        Metric::Count(Count::Target2xx),
        Scope::Both,
    ),
    (
        "HTTPCode_Target_3XX_Count",
        Metric::Count(Count::Target3xx),
        Scope::Both,
    ),
    (
        "HTTPCode_Target_4XX_Count",
        Metric::Count(Count::Target4xx),
        Scope::Both,
    ),
    (
        "HTTPCode_Target_5XX_Count",
        Metric::Count(Count::Target5xx),
        Scope::Both,
    ),
    (
        "HTTPCode_ELB_4XX_Count",
        Metric::Count(Count::Elb4xx),
        Scope::LoadBalancer,
    ),
    (
        "HTTPCode_ELB_5XX_Count",
        Metric::Count(Count::Elb5xx),
        Scope::LoadBalancer,
    ),
    (
        "HTTPCode_ELB_502_Count",
        Metric::Count(Count::Elb502),
        Scope::LoadBalancer,
    ),
    (
        "HTTPCode_ELB_503_Count",
        Metric::Count(Count::Elb503),
        Scope::LoadBalancer,
    ),
    (
        "HTTPCode_ELB_504_Count",
        Metric::Count(Count::Elb504),
        Scope::LoadBalancer,
    ),
    (
        "TargetResponseTime",
        Metric::TargetResponseTime,
        Scope::Both,
    ),
    ("HealthyHostCount", Metric::Hosts(true), Scope::TargetGroup),
    (
        "UnHealthyHostCount",
        Metric::Hosts(false),
        Scope::TargetGroup,
    ),
];

impl Scope {
    fn load_balancer(self) -> bool {
        self != Scope::TargetGroup
    }

    fn target_group(self) -> bool {
        self != Scope::LoadBalancer
    }
}

impl Metric {
    fn find(name: &str) -> Option<(Metric, Scope)> {
        METRICS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, metric, scope)| (*metric, *scope))
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::Count(_) | Metric::Hosts(_) => "Count",
            Metric::TargetResponseTime => "Seconds",
        }
    }

    /// The statistic over one period's counts; `None`: no datapoint (as on
    /// AWS, a count metric reports only nonzero values).
    fn value(self, period: &Second, statistic: Statistic) -> Option<f64> {
        match self {
            Metric::Count(what) => {
                let count = period.count(what);
                if count == 0 {
                    return None;
                }
                // Each request is one sample of 1.
                Some(match statistic {
                    Statistic::Sum | Statistic::SampleCount => count as f64,
                    _ => 1.0,
                })
            }
            Metric::TargetResponseTime => {
                let times = period.response_times.as_ref().filter(|t| t.count > 0)?;
                let seconds = |micros: f64| micros / 1e6;
                Some(match statistic {
                    Statistic::SampleCount => times.count as f64,
                    Statistic::Sum => seconds(times.sum_micros as f64),
                    Statistic::Average => seconds(times.sum_micros as f64 / times.count as f64),
                    Statistic::Minimum => seconds(times.min_micros as f64),
                    Statistic::Maximum => seconds(times.max_micros as f64),
                    Statistic::Percentile(p) => seconds(times.percentile(p)?),
                })
            }
            Metric::Hosts(healthy) => {
                let (h, u) = period.health.as_ref()?;
                let gauge = if healthy { h } else { u };
                Some(match statistic {
                    Statistic::SampleCount => gauge.samples as f64,
                    Statistic::Sum => gauge.sum as f64,
                    Statistic::Average => gauge.sum as f64 / gauge.samples.max(1) as f64,
                    Statistic::Minimum => gauge.min as f64,
                    Statistic::Maximum => gauge.max as f64,
                    // Not meaningful for a count of hosts.
                    Statistic::Percentile(_) => return None,
                })
            }
        }
    }
}

/// One `MetricDataQuery` with a `MetricStat`.
#[derive(Debug, Clone)]
struct Query {
    id: String,
    label: String,
    return_data: bool,
    namespace: String,
    metric_name: String,
    /// Sorted by name.
    dimensions: Vec<(String, String)>,
    period: u64,
    statistic: Statistic,
    unit: Option<String>,
}

#[derive(Debug, Clone)]
struct GetMetricData {
    queries: Vec<Query>,
    start: u64,
    end: u64,
    ascending: bool,
    /// Datapoints already returned on earlier pages.
    skip: usize,
    max_datapoints: usize,
}

fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    (1..=255).contains(&id.len())
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl GetMetricData {
    fn parse(input: &[(Value, Value)]) -> Result<GetMetricData> {
        let queries = list(input, "MetricDataQueries", "MetricDataQueries")?
            .ok_or_else(|| CloudWatchError::missing("MetricDataQueries"))?;
        if queries.is_empty() || queries.len() > MAX_QUERIES {
            return Err(CloudWatchError::invalid_value(format!(
                "The collection MetricDataQueries must contain from 1 to {MAX_QUERIES} items, not {}.",
                queries.len()
            )));
        }
        let start =
            timestamp(input, "StartTime")?.ok_or_else(|| CloudWatchError::missing("StartTime"))?;
        let end =
            timestamp(input, "EndTime")?.ok_or_else(|| CloudWatchError::missing("EndTime"))?;
        if start >= end {
            return Err(CloudWatchError::invalid_value(
                "The parameter StartTime must be less than the parameter EndTime.",
            ));
        }
        let ascending = match string(input, "ScanBy", "ScanBy")? {
            None | Some("TimestampDescending") => false,
            Some("TimestampAscending") => true,
            Some(other) => {
                return Err(CloudWatchError::invalid_value(format!(
                    "The value {other} for parameter ScanBy is not valid: use TimestampDescending or TimestampAscending."
                )));
            }
        };
        let max_datapoints = match integer(input, "MaxDatapoints", "MaxDatapoints")? {
            None => MAX_DATAPOINTS,
            Some(n) if n >= 1 => usize::try_from(n)
                .unwrap_or(MAX_DATAPOINTS)
                .min(MAX_DATAPOINTS),
            Some(n) => {
                return Err(CloudWatchError::invalid_value(format!(
                    "The value {n} for parameter MaxDatapoints is not valid: it must be at least 1."
                )));
            }
        };
        let skip = match string(input, "NextToken", "NextToken")? {
            None => 0,
            Some(token) => token
                .strip_prefix("ficus-alb:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    CloudWatchError::invalid_next_token(format!(
                        "The NextToken '{token}' was not returned by this load balancer's GetMetricData"
                    ))
                })?,
        };
        let mut seen = HashSet::new();
        let queries = queries
            .iter()
            .enumerate()
            .map(|(index, query)| {
                let query = Query::parse(query, index + 1)?;
                if !seen.insert(query.id.clone()) {
                    return Err(CloudWatchError::invalid_value(format!(
                        "The value {} for parameter MetricDataQueries.member.{}.Id is not unique.",
                        query.id,
                        index + 1
                    )));
                }
                Ok(query)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GetMetricData {
            queries,
            // Whole seconds: from the start's second to the end's (exclusive).
            start: start.max(0.0).floor() as u64,
            end: end.max(0.0).ceil() as u64,
            ascending,
            skip,
            max_datapoints,
        })
    }

    /// The answer as of `now` (epoch seconds).
    fn answer(&self, registry: &Registry, now: u64) -> Result<Value> {
        let cells = registry.cells();
        let end = self.end.min(now + 1);
        let mut budget = self.max_datapoints;
        let mut skip = self.skip;
        let mut truncated = false;
        let mut results = Vec::new();
        for query in self.queries.iter().filter(|q| q.return_data) {
            let mut points = query.datapoints(&cells, self.start, end);
            if !self.ascending {
                points.reverse();
            }
            let skipped = skip.min(points.len());
            skip -= skipped;
            let remaining = &points[skipped..];
            let taken = remaining.len().min(budget);
            budget -= taken;
            let partial = taken < remaining.len();
            truncated |= partial;
            let page = &remaining[..taken];
            results.push(Value::Map(vec![
                (text("Id"), text(&query.id)),
                (text("Label"), text(&query.label)),
                (
                    text("Timestamps"),
                    Value::Array(
                        page.iter()
                            .map(|(t, _)| Value::Tag(1, Box::new(Value::Float(*t as f64))))
                            .collect(),
                    ),
                ),
                (
                    text("Values"),
                    Value::Array(page.iter().map(|(_, v)| Value::Float(*v)).collect()),
                ),
                (
                    text("StatusCode"),
                    text(if partial { "PartialData" } else { "Complete" }),
                ),
                (text("Messages"), Value::Array(Vec::new())),
            ]));
        }
        let mut answer = vec![
            (text("MetricDataResults"), Value::Array(results)),
            (text("Messages"), Value::Array(Vec::new())),
        ];
        if truncated {
            let returned = self.skip + (self.max_datapoints - budget);
            answer.push((text("NextToken"), text(&format!("ficus-alb:{returned}"))));
        }
        Ok(Value::Map(answer))
    }
}

impl Query {
    fn parse(value: &Value, number: usize) -> Result<Query> {
        let at = format!("MetricDataQueries.member.{number}");
        let query = value
            .as_map()
            .ok_or_else(|| wrong_type(&at, "a structure (CBOR map)"))?;
        let id = string(query, "Id", &format!("{at}.Id"))?
            .ok_or_else(|| CloudWatchError::missing(&format!("{at}.Id")))?;
        if !valid_id(id) {
            return Err(CloudWatchError::invalid_value(format!(
                "The value {id} for parameter {at}.Id is not valid: it must start with a lowercase letter and hold only letters, digits and underscores (at most 255)."
            )));
        }
        let expression = string(query, "Expression", &format!("{at}.Expression"))?;
        let stat = structure(query, "MetricStat", &format!("{at}.MetricStat"))?;
        let stat = match (stat, expression) {
            (Some(_), Some(_)) => {
                return Err(CloudWatchError::combination(format!(
                    "Exactly one of the parameters {at}.MetricStat and {at}.Expression must be given, not both."
                )));
            }
            (None, Some(_)) => {
                return Err(CloudWatchError::invalid_value(format!(
                    "{at}.Expression: the local ALB does not evaluate metric math or Metrics Insights queries; query each metric with MetricStat."
                )));
            }
            (None, None) => return Err(CloudWatchError::missing(&format!("{at}.MetricStat"))),
            (Some(stat), None) => stat,
        };
        let metric = structure(stat, "Metric", &format!("{at}.MetricStat.Metric"))?
            .ok_or_else(|| CloudWatchError::missing(&format!("{at}.MetricStat.Metric")))?;
        let period = integer(stat, "Period", &format!("{at}.MetricStat.Period"))?
            .ok_or_else(|| CloudWatchError::missing(&format!("{at}.MetricStat.Period")))?;
        let period = u64::try_from(period)
            .ok()
            // CloudWatch's periods: 1, 5, 10, 20 or 30 s (high resolution), or
            // a multiple of 60 s.
            .filter(|p| matches!(p, 1 | 5 | 10 | 20 | 30) || (*p > 0 && p % 60 == 0))
            .ok_or_else(|| {
                CloudWatchError::invalid_value(format!(
                    "The value {period} for parameter {at}.MetricStat.Period is not valid: it must be 1, 5, 10, 20, 30 or a multiple of 60 seconds."
                ))
            })?;
        let stat_text = string(stat, "Stat", &format!("{at}.MetricStat.Stat"))?
            .ok_or_else(|| CloudWatchError::missing(&format!("{at}.MetricStat.Stat")))?;
        let statistic = Statistic::parse(stat_text).ok_or_else(|| {
            CloudWatchError::invalid_value(format!(
                "The value {stat_text} for parameter {at}.MetricStat.Stat is not a statistic the local ALB answers: use SampleCount, Sum, Average, Minimum, Maximum or a percentile such as p99 or p99.9."
            ))
        })?;
        let unit = string(stat, "Unit", &format!("{at}.MetricStat.Unit"))?.map(str::to_owned);
        let namespace = string(
            metric,
            "Namespace",
            &format!("{at}.MetricStat.Metric.Namespace"),
        )?
        .ok_or_else(|| CloudWatchError::missing(&format!("{at}.MetricStat.Metric.Namespace")))?;
        let metric_name = string(
            metric,
            "MetricName",
            &format!("{at}.MetricStat.Metric.MetricName"),
        )?
        .ok_or_else(|| CloudWatchError::missing(&format!("{at}.MetricStat.Metric.MetricName")))?;
        let dimensions = dimensions(metric, &format!("{at}.MetricStat.Metric.Dimensions"))?;
        let label = string(query, "Label", &format!("{at}.Label"))?
            .unwrap_or(metric_name)
            .to_owned();
        let return_data =
            boolean(query, "ReturnData", &format!("{at}.ReturnData"))?.unwrap_or(true);
        Ok(Query {
            id: id.to_owned(),
            label,
            return_data,
            namespace: namespace.to_owned(),
            metric_name: metric_name.to_owned(),
            dimensions,
            period,
            statistic,
            unit,
        })
    }

    /// The cells whose dimension set is exactly this query's, if the
    /// metric is published for it.
    fn cells<'c>(&self, cells: &'c [std::sync::Arc<Cell>]) -> Option<(Metric, Vec<&'c Cell>)> {
        if self.namespace != NAMESPACE {
            return None;
        }
        let (metric, scope) = Metric::find(&self.metric_name)?;
        if self.unit.as_deref().is_some_and(|u| u != metric.unit()) {
            return None;
        }
        let names: Vec<&str> = self.dimensions.iter().map(|(n, _)| n.as_str()).collect();
        let value = |name: &str| {
            self.dimensions
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let matching: Vec<&Cell> = match names.as_slice() {
            ["LoadBalancer"] if scope.load_balancer() => {
                let load_balancer = value("LoadBalancer")?;
                cells
                    .iter()
                    .filter(|c| c.load_balancer == load_balancer)
                    .map(|c| c.as_ref())
                    .collect()
            }
            ["LoadBalancer", "TargetGroup"] if scope.target_group() => {
                let (load_balancer, group) = (value("LoadBalancer")?, value("TargetGroup")?);
                cells
                    .iter()
                    .filter(|c| {
                        c.load_balancer == load_balancer && c.target_group.as_deref() == Some(group)
                    })
                    .map(|c| c.as_ref())
                    .collect()
            }
            _ => return None,
        };
        Some((metric, matching))
    }

    /// (period start, value) for every period in `start..end` with data,
    /// oldest first. As CloudWatch does for recent data, the start is
    /// rounded down: to a multiple of the period below a minute (5 s periods
    /// start at :00, :05...), else to the whole minute; periods follow on
    /// from there.
    fn datapoints(&self, cells: &[std::sync::Arc<Cell>], start: u64, end: u64) -> Vec<(u64, f64)> {
        let Some((metric, cells)) = self.cells(cells) else {
            return Vec::new();
        };
        let start = start - start % self.period.min(60);
        let mut periods: BTreeMap<u64, Second> = BTreeMap::new();
        for cell in cells {
            for (second, counts) in cell.seconds(start, end) {
                let period_start = start + (second - start) / self.period * self.period;
                periods.entry(period_start).or_default().merge(&counts);
            }
        }
        periods
            .into_iter()
            .filter_map(|(at, counts)| Some((at, metric.value(&counts, self.statistic)?)))
            .collect()
    }
}

/// `Dimensions`: `[{Name, Value}]`, sorted by name; a name given twice is
/// refused.
fn dimensions(metric: &[(Value, Value)], path: &str) -> Result<Vec<(String, String)>> {
    let Some(items) = list(metric, "Dimensions", path)? else {
        return Ok(Vec::new());
    };
    if items.len() > 30 {
        return Err(CloudWatchError::invalid_value(format!(
            "The collection {path} must contain at most 30 items."
        )));
    }
    let mut dimensions = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = format!("{path}.member.{}", index + 1);
        let item = item
            .as_map()
            .ok_or_else(|| wrong_type(&at, "a structure (CBOR map)"))?;
        let name = string(item, "Name", &format!("{at}.Name"))?
            .ok_or_else(|| CloudWatchError::missing(&format!("{at}.Name")))?;
        let value = string(item, "Value", &format!("{at}.Value"))?
            .ok_or_else(|| CloudWatchError::missing(&format!("{at}.Value")))?;
        dimensions.push((name.to_owned(), value.to_owned()));
    }
    dimensions.sort();
    if dimensions.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(CloudWatchError::invalid_value(format!(
            "The collection {path} must not name a dimension twice."
        )));
    }
    Ok(dimensions)
}

/// `ListMetrics`: every (metric, dimension set) with data in the retention
/// (as AWS lists those with data in the last two weeks),
/// filtered by `Namespace`, `MetricName` and `Dimensions` (name, optional
/// value). One page.
fn list_metrics(registry: &Registry, input: &[(Value, Value)]) -> Result<Value> {
    let namespace = string(input, "Namespace", "Namespace")?;
    let name = string(input, "MetricName", "MetricName")?;
    let mut filters = Vec::new();
    if let Some(items) = list(input, "Dimensions", "Dimensions")? {
        for (index, item) in items.iter().enumerate() {
            let at = format!("Dimensions.member.{}", index + 1);
            let item = item
                .as_map()
                .ok_or_else(|| wrong_type(&at, "a structure (CBOR map)"))?;
            let filter_name = string(item, "Name", &format!("{at}.Name"))?
                .ok_or_else(|| CloudWatchError::missing(&format!("{at}.Name")))?;
            let filter_value = string(item, "Value", &format!("{at}.Value"))?;
            filters.push((filter_name, filter_value));
        }
    }
    let mut metrics = Vec::new();
    if namespace.is_none_or(|n| n == NAMESPACE) {
        let now = now_second();
        let mut seen = HashSet::new();
        for cell in registry.cells() {
            let seconds = cell.seconds(0, now + 1);
            let has_data = |metric: Metric| {
                seconds
                    .iter()
                    .any(|(_, s)| metric.value(s, Statistic::SampleCount).is_some())
            };
            let mut sets = vec![vec![("LoadBalancer", cell.load_balancer.clone())]];
            if let Some(group) = &cell.target_group {
                sets.push(vec![
                    ("LoadBalancer", cell.load_balancer.clone()),
                    ("TargetGroup", group.clone()),
                ]);
            }
            for set in sets {
                let matches = filters.iter().all(|(filter_name, filter_value)| {
                    set.iter()
                        .any(|(n, v)| n == filter_name && filter_value.is_none_or(|fv| fv == v))
                });
                if !matches {
                    continue;
                }
                for (metric_name, metric, scope) in METRICS {
                    let published = if set.len() == 2 {
                        scope.target_group()
                    } else {
                        scope.load_balancer()
                    };
                    if name.is_some_and(|n| n != metric_name) || !published || !has_data(metric) {
                        continue;
                    }
                    if !seen.insert((metric_name, set.clone())) {
                        continue;
                    }
                    let dimensions = set
                        .iter()
                        .map(|(n, v)| {
                            Value::Map(vec![(text("Name"), text(n)), (text("Value"), text(v))])
                        })
                        .collect();
                    metrics.push(Value::Map(vec![
                        (text("Namespace"), text(NAMESPACE)),
                        (text("MetricName"), text(metric_name)),
                        (text("Dimensions"), Value::Array(dimensions)),
                    ]));
                }
            }
        }
    }
    Ok(Value::Map(vec![(text("Metrics"), Value::Array(metrics))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_parse_as_cloudwatch_names_them() {
        assert_eq!(Statistic::parse("p99"), Some(Statistic::Percentile(99.0)));
        assert_eq!(Statistic::parse("p99.9"), Some(Statistic::Percentile(99.9)));
        assert_eq!(Statistic::parse("p100"), Some(Statistic::Percentile(100.0)));
        assert_eq!(Statistic::parse("Sum"), Some(Statistic::Sum));
        for bad in ["p", "p101", "p99.", "p9.999", "p-1", "sum", "tm99", "p1e2"] {
            assert_eq!(Statistic::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_follow_cloudwatch_rules() {
        assert!(valid_id("m1"));
        assert!(valid_id("error_rate"));
        for bad in ["", "1m", "M1", "m-1", &"m".repeat(256)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn malformed_bodies_are_serialization_errors() {
        let registry = Registry::new(std::time::Duration::from_secs(60), 1);
        for body in [
            &b"\xff\x00"[..],
            b"\xa1",
            b"\x83\x01\x02\x03",
            b"not cbor at all",
        ] {
            let error = handle(&registry, Protocol::Cbor, "GetMetricData", body).unwrap_err();
            assert_eq!(error.code, "SerializationException", "{body:?}");
            assert_eq!(error.status, 400);
        }
        let missing = handle(&registry, Protocol::Cbor, "GetMetricData", &[]).unwrap_err();
        assert_eq!(missing.code, "MissingParameter");
    }

    use proptest::prelude::*;

    /// Member names of the inputs, and values around their edges.
    const NAMES: &[&str] = &[
        "MetricDataQueries",
        "StartTime",
        "EndTime",
        "ScanBy",
        "NextToken",
        "MaxDatapoints",
        "Id",
        "MetricStat",
        "Metric",
        "Namespace",
        "MetricName",
        "Dimensions",
        "Name",
        "Value",
        "Period",
        "Stat",
        "Unit",
        "Expression",
        "Label",
        "ReturnData",
        "x",
    ];
    const TEXTS: &[&str] = &[
        "AWS/ApplicationELB",
        "RequestCount",
        "TargetResponseTime",
        "LoadBalancer",
        "TargetGroup",
        "p99",
        "p100",
        "p99.99",
        "Sum",
        "Average",
        "Count",
        "Seconds",
        "m1",
        "M1",
        "",
        "TimestampAscending",
        "ficus-alb:3",
        "ficus-alb:x",
        "app/x/1",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(|i| Value::Integer(i.into())),
            (0i64..4_000_000_000).prop_map(|i| Value::Tag(1, Box::new(Value::Integer(i.into())))),
            any::<f64>().prop_map(|f| Value::Tag(1, Box::new(Value::Float(f)))),
            any::<f64>().prop_map(Value::Float),
            proptest::sample::select(TEXTS).prop_map(|t| Value::Text(t.to_owned())),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((proptest::sample::select(NAMES), inner), 0..6).prop_map(
                    |members| Value::Map(
                        members
                            .into_iter()
                            .map(|(k, v)| (Value::Text(k.to_owned()), v))
                            .collect()
                    )
                ),
            ]
        })
    }

    fn answers_or_refuses(
        protocol: Protocol,
        operation: &str,
        body: &[u8],
    ) -> std::result::Result<(), TestCaseError> {
        let registry = Registry::new(std::time::Duration::from_secs(60), 1);
        match handle(&registry, protocol, operation, body) {
            Ok(answer) => prop_assert!(!answer.is_empty()),
            Err(error) => {
                prop_assert!((400..500).contains(&error.status), "{error:?}");
                prop_assert!(!error.body(protocol).is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        /// Random CBOR inputs built from the real member names: an answer or
        /// a 4xx error, never a panic.
        #[test]
        fn random_inputs_get_answers_or_client_errors(
            value in tree(),
            operation in proptest::sample::select(&["GetMetricData", "ListMetrics", "Nope"][..]),
        ) {
            answers_or_refuses(Protocol::Cbor, operation, &encode(&value))?;
            answers_or_refuses(Protocol::Json, operation, &to_json(&value).to_string().into_bytes())?;
        }

        /// Arbitrary bytes, in either protocol.
        #[test]
        fn random_bytes_get_answers_or_client_errors(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            answers_or_refuses(Protocol::Cbor, "GetMetricData", &body)?;
            answers_or_refuses(Protocol::Json, "GetMetricData", &body)?;
        }
    }
}
