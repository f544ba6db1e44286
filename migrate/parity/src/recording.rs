//! Recorded baselines: record once, compare many times. `migrate verify ROUTE
//! --record FILE` sends the route's requests to the baseline only, twice each
//! for noise, and stores the answers; `--recorded FILE` compares a candidate
//! against them with the same noise cancellation, contacting no baseline.
//!
//! The file is JSON, versioned, and stable enough to commit: routes and
//! headers in name order, requests in the route's order, no time of recording,
//! and no header the comparison ignores (`Date` and the like), so recording
//! the same baseline twice gives the same bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compare::{Comparator, Response};
use crate::error::{Error, read_file};
use crate::request::Request;

/// The `format` of a recording file.
pub const RECORDING_FORMAT: &str = "ficus parity recording";
/// The version this ficus writes and reads.
pub const RECORDING_VERSION: u64 = 1;

/// A recording file: per route, each request with the baseline's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// Always [`RECORDING_FORMAT`].
    pub format: String,
    /// [`RECORDING_VERSION`] when written by this ficus.
    pub version: u64,
    /// How it was made and how to use it, for whoever opens the file.
    pub note: String,
    /// By route name.
    pub routes: BTreeMap<String, RouteRecording>,
}

/// One route's recorded requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRecording {
    /// In the order of the route's request set.
    pub requests: Vec<RecordedExchange>,
}

/// One request and the baseline's two answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedExchange {
    /// `METHOD /path?query`.
    pub request: String,
    /// The baseline's first answer.
    pub answer: RecordedAnswer,
    /// The second answer, when it differed from the first (noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_answer: Option<RecordedAnswer>,
}

/// An answer as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedAnswer {
    /// The status code.
    pub status: u16,
    /// Lower-case names; headers the route ignores are left out.
    pub headers: BTreeMap<String, String>,
    /// The body, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// The body in hexadecimal, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hex: Option<String>,
}

impl RecordedAnswer {
    pub(crate) fn of(response: &Response, comparator: &Comparator) -> Self {
        let (body, body_hex) = match std::str::from_utf8(&response.body) {
            Ok(text) => (text.to_owned(), None),
            Err(_) => (
                String::new(),
                Some(
                    response
                        .body
                        .iter()
                        .map(|byte| format!("{byte:02x}"))
                        .collect(),
                ),
            ),
        };
        Self {
            status: response.status,
            headers: response
                .headers
                .iter()
                .filter(|(name, _)| !comparator.ignores_header(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            body,
            body_hex,
        }
    }

    fn response(&self) -> Result<Response, String> {
        let body = match &self.body_hex {
            None => self.body.clone().into_bytes(),
            Some(hex) => (0..hex.len())
                .step_by(2)
                .map(|index| {
                    hex.get(index..index + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                        .ok_or_else(|| format!("body_hex is not hexadecimal near byte {index}"))
                })
                .collect::<Result<Vec<u8>, String>>()?,
        };
        Ok(Response::new(
            self.status,
            self.headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            body,
        ))
    }
}

impl Default for Recording {
    fn default() -> Self {
        Self {
            format: RECORDING_FORMAT.to_owned(),
            version: RECORDING_VERSION,
            note: "The baseline's answers, recorded by `migrate verify ROUTE --record FILE`; compare a candidate with `migrate verify ROUTE --recorded FILE`. Re-record to refresh.".to_owned(),
            routes: BTreeMap::new(),
        }
    }
}

impl Recording {
    /// Reads a recording; one made by another version of ficus is refused
    /// with a message saying how to re-record it.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let input = |message: String| Error::Input {
            path: path.to_owned(),
            line: None,
            message,
        };
        let bytes = read_file(path)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
            input(format!(
                "is not a recording ({error}); make one with `migrate verify ROUTE --record {}`",
                path.display()
            ))
        })?;
        if value.get("format").and_then(serde_json::Value::as_str) != Some(RECORDING_FORMAT) {
            return Err(input(format!(
                "is not a recording (no \"format\": \"{RECORDING_FORMAT}\"); make one with `migrate verify ROUTE --record {}`",
                path.display()
            )));
        }
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(RECORDING_VERSION) {
            let made_by = match version {
                Some(version) if version > RECORDING_VERSION => "a newer ficus",
                _ => "an older ficus",
            };
            return Err(input(format!(
                "was recorded by {made_by} (recording version {}; this migrate reads version {RECORDING_VERSION}); re-record it against the baseline: `migrate verify --all --record {}` (or one route: `migrate verify ROUTE --record {}`)",
                version.map_or_else(|| "missing".to_owned(), |version| version.to_string()),
                path.display(),
                path.display()
            )));
        }
        serde_json::from_value(value).map_err(|error| {
            input(format!(
                "is not a valid recording ({error}); re-record it with `migrate verify ROUTE --record {}`",
                path.display()
            ))
        })
    }

    /// The recording as stored: pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a recording serializes");
        text.push('\n');
        text
    }

    /// One route's answers, ready for [`crate::run_recorded`]; `None` when the
    /// route is not in the recording.
    pub fn answers(&self, route: &str, path: &Path) -> Result<Option<RecordedAnswers>, Error> {
        let Some(recorded) = self.routes.get(route) else {
            return Ok(None);
        };
        let mut by_request = HashMap::new();
        for exchange in &recorded.requests {
            let decode = |answer: &RecordedAnswer| {
                answer.response().map_err(|message| Error::Input {
                    path: path.to_owned(),
                    line: None,
                    message: format!("route {route}, {}: {message}", exchange.request),
                })
            };
            let first = decode(&exchange.answer)?;
            let second = match &exchange.second_answer {
                Some(answer) => decode(answer)?,
                None => first.clone(),
            };
            by_request.insert(exchange.request.clone(), (first, second));
        }
        Ok(Some(RecordedAnswers {
            route: route.to_owned(),
            path: path.to_owned(),
            by_request,
        }))
    }
}

/// One route's recorded answers by request.
#[derive(Debug, Clone)]
pub struct RecordedAnswers {
    route: String,
    path: PathBuf,
    by_request: HashMap<String, (Response, Response)>,
}

impl RecordedAnswers {
    /// The two recorded answers of `request`, or why there are none.
    pub(crate) fn answers(&self, request: &Request) -> Result<(&Response, &Response), String> {
        self.by_request
            .get(&request.to_string())
            .map(|(first, second)| (first, second))
            .ok_or_else(|| {
                format!(
                    "not in the recording {}; re-record it: `migrate verify {} --record {}`",
                    self.path.display(),
                    self.route,
                    self.path.display()
                )
            })
    }
}
