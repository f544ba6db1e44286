//! Structural comparison of two HTTP responses.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::error::Error;
use crate::pointer::{self, PointerPattern};
use crate::request::shorten;
use crate::spec::{KeyOrder, VerifySpec};

/// Headers ignored unless `compare_default_ignored_headers` is set: they differ
/// between any two answers (Date), describe the connection, or trace the request.
pub const DEFAULT_IGNORED_HEADERS: &[&str] = &[
    "date",
    "keep-alive",
    "connection",
    "server",
    "x-amzn-trace-id",
    "x-request-id",
    "x-correlation-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-cloud-trace-context",
    "uber-trace-id",
];

/// Headers that only restate the body's length; compared when the bodies are equal.
const BODY_LENGTH_HEADERS: &[&str] = &["content-length", "transfer-encoding"];

/// Headers whose value is a comma-separated list (RFC 9110 §5.6.1): white
/// space around the commas and empty elements do not count.
const LIST_HEADERS: &[&str] = &[
    "accept-patch",
    "accept-post",
    "accept-ranges",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-expose-headers",
    "allow",
    "cache-control",
    "connection",
    "content-encoding",
    "content-language",
    "trailer",
    "transfer-encoding",
    "vary",
    "via",
];

/// How long a value may be in a report before it is shortened.
const VALUE_LIMIT: usize = 80;

/// One side's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The body as received.
    pub body: Bytes,
}

impl Response {
    /// A response from its parts; header names are lower-cased and repeated
    /// headers joined in order.
    pub fn new<'a>(
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: impl Into<Bytes>,
    ) -> Self {
        let mut joined: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            joined
                .entry(name.to_ascii_lowercase())
                .and_modify(|existing| {
                    existing.push_str(", ");
                    existing.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        }
        Self {
            status,
            headers: joined,
            body: body.into(),
        }
    }

    fn content_type(&self) -> &str {
        self.headers.get("content-type").map_or("", String::as_str)
    }
}

/// Where two responses differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// The status code.
    Status,
    /// A header, by its lower-case name.
    Header(String),
    /// The body at a JSON Pointer (the reference tokens; empty for the whole body).
    Body(Vec<String>),
}

impl Location {
    /// Whether a difference found here is covered by noise seen at `noise`:
    /// the same status or header, or the same body pointer or an ancestor.
    pub fn is_covered_by(&self, noise: &Location) -> bool {
        match (noise, self) {
            (Location::Body(noise), Location::Body(pointer)) => pointer::covers(noise, pointer),
            (noise, location) => noise == location,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Status => formatter.write_str("status"),
            Location::Header(name) => write!(formatter, "header {name}"),
            Location::Body(tokens) if tokens.is_empty() => formatter.write_str("body"),
            Location::Body(tokens) => write!(formatter, "body {}", pointer::render(tokens)),
        }
    }
}

impl Serialize for Location {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Same type, other value (also: status code, header value, text body).
    ChangedValue,
    /// Another JSON type (or a JSON body against a text one).
    ChangedType,
    /// Present in the baseline, absent in the candidate.
    Missing,
    /// Absent in the baseline, present in the candidate.
    Extra,
    /// Arrays of different lengths.
    ArrayLength,
    /// Same object keys or array elements in another order.
    Order,
    /// The same JSON written differently (white space, number spelling).
    Formatting,
}

impl fmt::Display for Kind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Kind::ChangedValue => "changed value",
            Kind::ChangedType => "changed type",
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::ArrayLength => "array length",
            Kind::Order => "order",
            Kind::Formatting => "formatting",
        })
    }
}

/// Why a difference does not count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Suppression {
    /// Under an `ignore` pointer.
    IgnoredPointer(String),
    /// An ignored header.
    IgnoredHeader,
    /// Content-Length or Transfer-Encoding of bodies that differ anyway.
    FollowsBody,
    /// Element order of an `unordered` array.
    Unordered(String),
    /// Object key order, with `json_key_order = "ignore"`.
    KeyOrder,
    /// The two baseline answers differed here too.
    Noise,
}

impl fmt::Display for Suppression {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suppression::IgnoredPointer(pattern) => {
                write!(formatter, "ignored by pointer {pattern}")
            }
            Suppression::IgnoredHeader => formatter.write_str("ignored header"),
            Suppression::FollowsBody => formatter.write_str("length of a body that differs"),
            Suppression::Unordered(pattern) => write!(formatter, "unordered array {pattern}"),
            Suppression::KeyOrder => formatter.write_str("json_key_order = \"ignore\""),
            Suppression::Noise => {
                formatter.write_str("noise: the two baseline answers differ here too")
            }
        }
    }
}

/// One difference between the baseline's and the candidate's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Where.
    pub location: Location,
    /// Where, with array indexes written `*`: reports group by it.
    pub pattern: Location,
    /// What kind.
    pub kind: Kind,
    /// The baseline's side, shortened for reports.
    pub baseline: String,
    /// The candidate's side, shortened for reports.
    pub candidate: String,
    /// Why it does not count, if it does not.
    pub suppressed: Option<Suppression>,
}

/// Compares responses by the rules of a [`VerifySpec`].
#[derive(Debug, Clone)]
pub struct Comparator {
    ignore: Vec<PointerPattern>,
    unordered: Vec<PointerPattern>,
    ignored_headers: HashSet<String>,
    key_order: KeyOrder,
}

impl Default for Comparator {
    fn default() -> Self {
        Self::new(&VerifySpec::default()).expect("the default verify spec is valid")
    }
}

impl Comparator {
    /// The comparator a route's verify settings describe.
    pub fn new(spec: &VerifySpec) -> Result<Self, Error> {
        let patterns = |field: &str, pointers: &[String]| {
            pointers
                .iter()
                .map(|text| {
                    PointerPattern::parse(text)
                        .map_err(|message| Error::Spec(format!("{field}: {message}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut ignored_headers: HashSet<String> = spec
            .ignore_headers
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect();
        if !spec.compare_default_ignored_headers {
            ignored_headers.extend(
                DEFAULT_IGNORED_HEADERS
                    .iter()
                    .map(|name| (*name).to_owned()),
            );
        }
        Ok(Self {
            ignore: patterns("ignore", &spec.ignore)?,
            unordered: patterns("unordered", &spec.unordered)?,
            ignored_headers,
            key_order: spec.json_key_order,
        })
    }

    /// Whether differences in the header `name` (lower case) are ignored.
    pub fn ignores_header(&self, name: &str) -> bool {
        self.ignored_headers.contains(name)
    }

    /// Every difference between two answers, suppressed ones included.
    pub fn compare(&self, baseline: &Response, candidate: &Response) -> Vec<Difference> {
        let mut differences = Vec::new();
        if baseline.status != candidate.status {
            differences.push(Difference {
                location: Location::Status,
                pattern: Location::Status,
                kind: Kind::ChangedValue,
                baseline: baseline.status.to_string(),
                candidate: candidate.status.to_string(),
                suppressed: None,
            });
        }
        let bodies_differ = baseline.body != candidate.body;
        self.compare_headers(baseline, candidate, bodies_differ, &mut differences);
        if bodies_differ {
            self.compare_bodies(baseline, candidate, &mut differences);
        }
        differences
    }

    /// Where two answers of the same side differ: the noise of one request.
    pub fn noise(&self, first: &Response, second: &Response) -> Vec<Location> {
        self.compare(first, second)
            .into_iter()
            .filter(|difference| difference.suppressed.is_none())
            .map(|difference| difference.location)
            .collect()
    }

    fn compare_headers(
        &self,
        baseline: &Response,
        candidate: &Response,
        bodies_differ: bool,
        differences: &mut Vec<Difference>,
    ) {
        let names: std::collections::BTreeSet<&String> = baseline
            .headers
            .keys()
            .chain(candidate.headers.keys())
            .collect();
        for name in names {
            let (left, right) = (baseline.headers.get(name), candidate.headers.get(name));
            let kind = match (left, right) {
                (Some(left), Some(right)) if field_values_equivalent(name, left, right) => continue,
                (Some(_), Some(_)) => Kind::ChangedValue,
                (Some(_), None) => Kind::Missing,
                (None, _) => Kind::Extra,
            };
            let suppressed = if self.ignored_headers.contains(name.as_str()) {
                Some(Suppression::IgnoredHeader)
            } else if bodies_differ && BODY_LENGTH_HEADERS.contains(&name.as_str()) {
                Some(Suppression::FollowsBody)
            } else {
                None
            };
            let show = |value: Option<&String>| {
                value.map_or_else(
                    || "(absent)".to_owned(),
                    |value| shorten(value, VALUE_LIMIT),
                )
            };
            differences.push(Difference {
                location: Location::Header(name.clone()),
                pattern: Location::Header(name.clone()),
                kind,
                baseline: show(left),
                candidate: show(right),
                suppressed,
            });
        }
    }

    fn compare_bodies(
        &self,
        baseline: &Response,
        candidate: &Response,
        differences: &mut Vec<Difference>,
    ) {
        let json_expected = [baseline, candidate].iter().any(|response| {
            response
                .content_type()
                .to_ascii_lowercase()
                .contains("json")
        });
        let left = Body::classify(&baseline.body, json_expected);
        let right = Body::classify(&candidate.body, json_expected);
        let mut walker = Walker {
            comparator: self,
            path: Vec::new(),
            is_index: Vec::new(),
            differences: Vec::new(),
        };
        match (&left, &right) {
            (Body::Json(left), Body::Json(right)) => {
                walker.json(left, right);
                if walker.differences.is_empty() {
                    walker.emit(
                        Kind::Formatting,
                        shorten(&String::from_utf8_lossy(&baseline.body), VALUE_LIMIT),
                        shorten(&String::from_utf8_lossy(&candidate.body), VALUE_LIMIT),
                    );
                }
            }
            (Body::Text(left), Body::Text(right)) => {
                let (left, right) = line_diff(left, right);
                walker.emit(Kind::ChangedValue, left, right);
            }
            (Body::Empty, right) => walker.emit(Kind::Extra, "(empty)".into(), right.describe()),
            (left, Body::Empty) => walker.emit(Kind::Missing, left.describe(), "(empty)".into()),
            (left, right) if left.type_name() == right.type_name() => {
                walker.emit(Kind::ChangedValue, left.describe(), right.describe());
            }
            (left, right) => walker.emit(Kind::ChangedType, left.describe(), right.describe()),
        }
        differences.append(&mut walker.differences);
    }

    fn ignored_by(&self, tokens: &[String]) -> Option<Suppression> {
        self.ignore
            .iter()
            .find(|pattern| pattern.covers(tokens))
            .map(|pattern| Suppression::IgnoredPointer(pattern.to_string()))
    }
}

/// Whether two values of the header `name` (lower case) mean the same by RFC
/// 9110: leading and trailing white space is not part of a value (§5.5);
/// list headers ignore white space around their commas (§5.6.1); a media type
/// (`Content-Type`) has case-insensitive type, subtype and parameter names, a
/// case-insensitive charset, and the same value quoted or not (§8.3.1).
fn field_values_equivalent(name: &str, left: &str, right: &str) -> bool {
    left == right || normalized_field_value(name, left) == normalized_field_value(name, right)
}

fn normalized_field_value(name: &str, value: &str) -> String {
    let value = value.trim_matches([' ', '\t']);
    if name == "content-type" {
        media_type(value)
    } else if LIST_HEADERS.contains(&name) {
        value
            .split(',')
            .map(|element| element.trim_matches([' ', '\t']))
            .filter(|element| !element.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        value.to_owned()
    }
}

/// A media type in one spelling: `type/subtype; name=value` in lower case
/// except parameter values other than charset, quotes removed.
fn media_type(value: &str) -> String {
    let mut parts = split_outside_quotes(value, ';').into_iter();
    let mut normalized = parts
        .next()
        .unwrap_or_default()
        .trim_matches([' ', '\t'])
        .to_ascii_lowercase();
    for parameter in parts {
        let parameter = parameter.trim_matches([' ', '\t']);
        if parameter.is_empty() {
            continue;
        }
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let name = name.trim_matches([' ', '\t']).to_ascii_lowercase();
        let value = unquote(value.trim_matches([' ', '\t']));
        let value = if name == "charset" {
            value.to_ascii_lowercase()
        } else {
            value
        };
        normalized.push_str(&format!("; {name}={value}"));
    }
    normalized
}

/// Splits at `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (index, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if character == separator && !quoted => {
                parts.push(&text[start..index]);
                start = index + character.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The content of a quoted string (RFC 9110 §5.6.4), or the text as it is.
fn unquote(text: &str) -> String {
    let Some(inner) = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return text.to_owned();
    };
    let mut unquoted = String::with_capacity(inner.len());
    let mut characters = inner.chars();
    while let Some(character) = characters.next() {
        if character == '\\' {
            unquoted.extend(characters.next());
        } else {
            unquoted.push(character);
        }
    }
    unquoted
}

enum Body<'a> {
    Empty,
    Json(Value),
    Text(&'a str),
    Binary(&'a [u8]),
}

impl<'a> Body<'a> {
    fn classify(bytes: &'a [u8], json_expected: bool) -> Self {
        if bytes.is_empty() {
            return Body::Empty;
        }
        if json_expected && let Ok(value) = serde_json::from_slice(bytes) {
            return Body::Json(value);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Body::Text(text),
            Err(_) => Body::Binary(bytes),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Body::Empty => "empty",
            Body::Json(_) => "JSON",
            Body::Text(_) => "text",
            Body::Binary(_) => "binary",
        }
    }

    fn describe(&self) -> String {
        match self {
            Body::Empty => "(empty)".into(),
            Body::Json(value) => format!("JSON {}", show_json(value)),
            Body::Text(text) => format!("text {}", shorten(&format!("{text:?}"), VALUE_LIMIT)),
            Body::Binary(bytes) => format!("{} bytes of binary data", bytes.len()),
        }
    }
}

fn show_json(value: &Value) -> String {
    shorten(&value.to_string(), VALUE_LIMIT)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The first differing lines of two texts, as `line N: text` on each side.
fn line_diff(left: &str, right: &str) -> (String, String) {
    let left_lines: Vec<&str> = left.lines().collect();
    let right_lines: Vec<&str> = right.lines().collect();
    let differing: Vec<usize> = (0..left_lines.len().max(right_lines.len()))
        .filter(|&index| left_lines.get(index) != right_lines.get(index))
        .collect();
    let show = |lines: &[&str]| {
        let Some(&first) = differing.first() else {
            // Same lines, other line endings or trailing newline.
            return format!(
                "{} bytes",
                lines.iter().map(|line| line.len() + 1).sum::<usize>()
            );
        };
        let line = lines
            .get(first)
            .map_or_else(|| "(no such line)".to_owned(), |line| format!("{line:?}"));
        let mut shown = format!("line {}: {}", first + 1, shorten(&line, VALUE_LIMIT));
        if differing.len() > 1 {
            shown.push_str(&format!(" (+{} more differing lines)", differing.len() - 1));
        }
        shown
    };
    if differing.is_empty() {
        return (format!("{left:?}"), format!("{right:?}"));
    }
    (show(&left_lines), show(&right_lines))
}

/// A reference token on the way down a JSON value.
enum Token {
    Key(String),
    Index(usize),
}

/// Whether two arrays of the same length hold the same elements, in another
/// order: one `order` finding, not one per index.
fn is_permutation(left: &[Value], right: &[Value]) -> bool {
    if left.len() != right.len() || left.len() < 2 || left == right {
        return false;
    }
    let sorted = |values: &[Value]| {
        let mut texts: Vec<String> = values.iter().map(Value::to_string).collect();
        texts.sort_unstable();
        texts
    };
    sorted(left) == sorted(right)
}

struct Walker<'a> {
    comparator: &'a Comparator,
    path: Vec<String>,
    /// Whether each token of `path` is an array index.
    is_index: Vec<bool>,
    differences: Vec<Difference>,
}

impl Walker<'_> {
    fn emit(&mut self, kind: Kind, baseline: String, candidate: String) {
        let suppressed = self.comparator.ignored_by(&self.path);
        let pattern = self
            .path
            .iter()
            .zip(&self.is_index)
            .map(|(token, &is_index)| {
                if is_index {
                    "*".to_owned()
                } else {
                    token.clone()
                }
            })
            .collect();
        self.differences.push(Difference {
            location: Location::Body(self.path.clone()),
            pattern: Location::Body(pattern),
            kind,
            baseline,
            candidate,
            suppressed,
        });
    }

    /// Emits a difference at the child `token` of the current place.
    fn emit_at(&mut self, token: Token, kind: Kind, baseline: String, candidate: String) {
        self.push(token);
        self.emit(kind, baseline, candidate);
        self.pop();
    }

    fn push(&mut self, token: Token) {
        let (token, is_index) = match token {
            Token::Key(key) => (key, false),
            Token::Index(index) => (index.to_string(), true),
        };
        self.path.push(token);
        self.is_index.push(is_index);
    }

    fn pop(&mut self) {
        self.path.pop();
        self.is_index.pop();
    }

    fn descend(&mut self, token: Token, left: &Value, right: &Value) {
        self.push(token);
        self.json(left, right);
        self.pop();
    }

    fn json(&mut self, left: &Value, right: &Value) {
        match (left, right) {
            (Value::Object(left), Value::Object(right)) => {
                for (key, value) in left {
                    match right.get(key) {
                        Some(other) => self.descend(Token::Key(key.clone()), value, other),
                        None => self.emit_at(
                            Token::Key(key.clone()),
                            Kind::Missing,
                            show_json(value),
                            "(absent)".into(),
                        ),
                    }
                }
                for (key, value) in right {
                    if !left.contains_key(key) {
                        self.emit_at(
                            Token::Key(key.clone()),
                            Kind::Extra,
                            "(absent)".into(),
                            show_json(value),
                        );
                    }
                }
                let same_keys =
                    left.len() == right.len() && left.keys().all(|key| right.contains_key(key));
                if same_keys && !left.keys().eq(right.keys()) {
                    let keys = |object: &serde_json::Map<String, Value>| {
                        let names: Vec<&str> = object.keys().map(String::as_str).collect();
                        shorten(&format!("keys {}", names.join(", ")), VALUE_LIMIT)
                    };
                    self.emit(Kind::Order, keys(left), keys(right));
                    if self.comparator.key_order == KeyOrder::Ignore
                        && let Some(last) = self.differences.last_mut()
                        && last.suppressed.is_none()
                    {
                        last.suppressed = Some(Suppression::KeyOrder);
                    }
                }
            }
            (Value::Array(left), Value::Array(right)) => {
                match self
                    .comparator
                    .unordered
                    .iter()
                    .find(|pattern| pattern.names(&self.path))
                {
                    Some(pattern) => {
                        let pattern = pattern.to_string();
                        self.unordered_array(left, right, pattern);
                    }
                    None if is_permutation(left, right) => {
                        let moved = (0..left.len())
                            .find(|&index| left[index] != right[index])
                            .unwrap_or_default();
                        self.emit(
                            Kind::Order,
                            format!("{} elements in one order", left.len()),
                            format!("the same elements in another, from index {moved}"),
                        );
                    }
                    None => {
                        if left.len() != right.len() {
                            self.emit(
                                Kind::ArrayLength,
                                format!("{} elements", left.len()),
                                format!("{} elements", right.len()),
                            );
                        }
                        for (index, (left, right)) in left.iter().zip(right).enumerate() {
                            self.descend(Token::Index(index), left, right);
                        }
                    }
                }
            }
            (left, right) if left == right => {}
            (left, right) if json_type(left) == json_type(right) => {
                self.emit(Kind::ChangedValue, show_json(left), show_json(right));
            }
            (left, right) => self.emit(
                Kind::ChangedType,
                format!("{} {}", json_type(left), show_json(left)),
                format!("{} {}", json_type(right), show_json(right)),
            ),
        }
    }

    /// Matches equal elements wherever they are; pairs the rest in order and
    /// compares them; reports what is left over as missing or extra.
    fn unordered_array(&mut self, left: &[Value], right: &[Value], pattern: String) {
        let mut right_used = vec![false; right.len()];
        let mut left_unmatched = Vec::new();
        let mut reordered = false;
        let mut previous_match = None;
        for (left_index, value) in left.iter().enumerate() {
            let found =
                (0..right.len()).find(|&index| !right_used[index] && &right[index] == value);
            match found {
                Some(index) => {
                    right_used[index] = true;
                    reordered |= previous_match.is_some_and(|previous| index < previous);
                    previous_match = Some(index);
                }
                None => left_unmatched.push(left_index),
            }
        }
        let right_unmatched: Vec<usize> = (0..right.len())
            .filter(|&index| !right_used[index])
            .collect();
        if reordered {
            self.emit(
                Kind::Order,
                "elements in one order".into(),
                "the same elements in another".into(),
            );
            if let Some(last) = self.differences.last_mut()
                && last.suppressed.is_none()
            {
                last.suppressed = Some(Suppression::Unordered(pattern));
            }
        }
        for (&left_index, &right_index) in left_unmatched.iter().zip(&right_unmatched) {
            self.descend(
                Token::Index(left_index),
                &left[left_index],
                &right[right_index],
            );
        }
        let paired = left_unmatched.len().min(right_unmatched.len());
        for &index in &left_unmatched[paired..] {
            self.emit_at(
                Token::Index(index),
                Kind::Missing,
                show_json(&left[index]),
                "(absent)".into(),
            );
        }
        for &index in &right_unmatched[paired..] {
            self.emit_at(
                Token::Index(index),
                Kind::Extra,
                "(absent)".into(),
                show_json(&right[index]),
            );
        }
    }
}
