//! The requests a parity run replays, and where they come from: the route's
//! request templates, corpus files and ALB access logs.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::Path;

use reqwest::Method;
use serde::Serialize;

use crate::error::{Error, read_file};

/// One request to send to both sides.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// The HTTP method.
    pub method: Method,
    /// The path and query, sent verbatim (percent-encoding is kept as written).
    pub target: String,
    /// The endpoint template the request belongs to, like `GET /api/users/{id}`;
    /// reports group by it.
    pub template: String,
}

impl fmt::Display for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.method, self.target)
    }
}

/// Parses `METHOD` as an HTTP method token.
pub fn parse_method(text: &str) -> Result<Method, String> {
    let valid = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
    if !valid {
        return Err(format!(
            "{text:?} is not an HTTP method; write it like GET or HEAD"
        ));
    }
    Method::from_bytes(text.as_bytes()).map_err(|error| format!("{text:?}: {error}"))
}

/// Splits `"METHOD PATH"` (or just `"PATH"`, meaning GET) into its parts.
pub fn split_method_and_target(line: &str) -> Result<(Method, &str), String> {
    let mut words = line.split_whitespace();
    let (method, target) = match (words.next(), words.next(), words.next()) {
        (Some(target), None, _) => (Method::GET, target),
        (Some(method), Some(target), None) => (parse_method(method)?, target),
        _ => {
            return Err(format!(
                "{line:?} is not a request; write one request as \"METHOD /path\" or \"/path\""
            ));
        }
    };
    if !target.starts_with('/') {
        return Err(format!(
            "the path {target:?} must start with '/', like \"/api/users/1\""
        ));
    }
    Ok((method, target))
}

/// Whether `path` matches an ALB path pattern (`alb`'s glob: case-sensitive,
/// `*` matches any run of characters and `?` exactly one).
pub fn matches_path_pattern(pattern: &str, path: &str) -> bool {
    alb::Glob::new(pattern, alb::Syntax::CaseSensitive).matches(path)
}

/// The path of a request target, without its query string.
pub fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// Names the endpoint template of a recorded request: the first of the route's
/// templates it fits (a `{placeholder}` fits one path segment), otherwise its
/// own path with every segment that contains a digit written `{n}`.
pub fn infer_template(method: &Method, target: &str, templates: &[String]) -> String {
    let path = path_of(target);
    for template in templates {
        let Ok((template_method, template_target)) = split_method_and_target(template) else {
            continue;
        };
        if template_method == method && fits_template(path_of(template_target), path) {
            return format!("{template_method} {template_target}");
        }
    }
    let generalised: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if segment.bytes().any(|byte| byte.is_ascii_digit()) {
                "{n}"
            } else {
                segment
            }
        })
        .collect();
    format!("{method} {}", generalised.join("/"))
}

fn fits_template(template_path: &str, path: &str) -> bool {
    let template_segments: Vec<&str> = template_path.split('/').collect();
    let segments: Vec<&str> = path.split('/').collect();
    template_segments.len() == segments.len()
        && template_segments
            .iter()
            .zip(&segments)
            .all(|(template, segment)| {
                if template.starts_with('{') && template.ends_with('}') {
                    !segment.is_empty()
                } else {
                    template == segment
                }
            })
}

/// Examples of skipped input lines are shown whole up to this many characters
/// (an ALB access log line with a long user agent fits); longer ones end in `…`.
pub const SKIPPED_LINE_CHARS: usize = 4096;

/// Why an input line was not replayed, and how many lines had that reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Skipped {
    /// How many lines were skipped for this reason.
    pub count: usize,
    /// Up to three of them, as `file:line: text`.
    pub examples: Vec<String>,
}

/// What one request source contributed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceSummary {
    /// The source, like `templates` or `alb log logs/a.log.gz`.
    pub source: String,
    /// Requests taken from it (before duplicates across sources were removed).
    pub requests: usize,
    /// Lines not replayed, by reason.
    pub skipped: BTreeMap<String, Skipped>,
}

impl SourceSummary {
    fn new(source: String) -> Self {
        Self {
            source,
            ..Self::default()
        }
    }

    fn skip(&mut self, reason: impl Into<String>, location: String, line: &str) {
        let skipped = self.skipped.entry(reason.into()).or_default();
        skipped.count += 1;
        if skipped.examples.len() < 3 {
            skipped
                .examples
                .push(format!("{location}: {}", shorten(line, SKIPPED_LINE_CHARS)));
        }
    }

    /// Lines not replayed, over all reasons.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().map(|skipped| skipped.count).sum()
    }
}

pub(crate) fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(limit.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// The requests of one run, deduplicated, with a summary per source.
#[derive(Debug, Clone, Default)]
pub struct RequestSet {
    /// The requests, in the order they were first seen.
    pub requests: Vec<Request>,
    /// One summary per source.
    pub sources: Vec<SourceSummary>,
    /// Requests dropped because an earlier source already had them.
    pub duplicates: usize,
    seen: HashSet<(Method, String)>,
}

impl RequestSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a request unless the same method and target is already there.
    pub fn push(&mut self, request: Request) {
        if self
            .seen
            .insert((request.method.clone(), request.target.clone()))
        {
            self.requests.push(request);
        } else {
            self.duplicates += 1;
        }
    }

    /// [`Self::push`] naming the template only for a request not seen before.
    fn push_new(&mut self, method: Method, target: String, templates: &[String]) {
        let key = (method, target);
        if self.seen.contains(&key) {
            self.duplicates += 1;
            return;
        }
        let (method, target) = key;
        self.push(Request {
            template: infer_template(&method, &target, templates),
            method,
            target,
        });
    }

    fn add_source(&mut self, summary: SourceSummary, requests: Vec<Request>) {
        let mut summary = summary;
        summary.requests = requests.len();
        self.sources.push(summary);
        for request in requests {
            self.push(request);
        }
    }

    /// Adds requests that came from the route's own configuration.
    pub fn add_templates(&mut self, source: &str, requests: Vec<Request>) {
        self.add_source(SourceSummary::new(source.to_owned()), requests);
    }

    /// Adds a corpus file: one request per line (`METHOD PATH` or `PATH`), `#`
    /// starts a comment line, blank lines are skipped. When `route_patterns` is
    /// given, requests whose path matches none of them are skipped (and counted).
    /// A line that is not a request is an error naming the file and line.
    pub fn add_corpus(
        &mut self,
        path: &Path,
        templates: &[String],
        route_patterns: Option<&[String]>,
    ) -> Result<(), Error> {
        let text = String::from_utf8(read_file(path)?).map_err(|_| Error::Input {
            path: path.to_owned(),
            line: None,
            message: "is not UTF-8 text; a corpus holds one \"METHOD /path\" per line".into(),
        })?;
        let mut summary = SourceSummary::new(format!("corpus {}", path.display()));
        let mut requests = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (method, target) =
                split_method_and_target(line).map_err(|message| Error::Input {
                    path: path.to_owned(),
                    line: Some(index + 1),
                    message,
                })?;
            if let Some(patterns) = route_patterns
                && !patterns
                    .iter()
                    .any(|pattern| matches_path_pattern(pattern, path_of(target)))
            {
                summary.skip(
                    "path outside the route's patterns",
                    format!("{}:{}", path.display(), index + 1),
                    line,
                );
                continue;
            }
            requests.push(Request {
                template: infer_template(&method, target, templates),
                method,
                target: target.to_owned(),
            });
        }
        self.add_source(summary, requests);
        Ok(())
    }

    /// Adds the requests of an ALB access log (plain or gzip, detected by its
    /// magic bytes). Only GET and HEAD are taken unless `allow_unsafe`; only
    /// requests whose path matches one of `route_patterns`. Every line not
    /// replayed is counted with its reason. The file is streamed: memory
    /// holds one line and the distinct requests taken, not the file.
    pub fn add_alb_log(
        &mut self,
        path: &Path,
        templates: &[String],
        route_patterns: &[String],
        allow_unsafe: bool,
    ) -> Result<(), Error> {
        let file = std::fs::File::open(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut file = BufReader::with_capacity(LOG_READ_BUFFER, file);
        let gzip = file
            .fill_buf()
            .map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?
            .starts_with(&[0x1f, 0x8b]);
        let name = path.display().to_string();
        let log = AlbLog {
            name: &name,
            templates,
            route_patterns,
            allow_unsafe,
        };
        let result = if gzip {
            let decoder = flate2::bufread::MultiGzDecoder::new(file);
            self.add_alb_log_lines(BufReader::with_capacity(LOG_READ_BUFFER, decoder), &log)
        } else {
            self.add_alb_log_lines(file, &log)
        };
        result.map_err(|source| Error::Input {
            path: path.to_owned(),
            line: None,
            message: if gzip {
                format!("starts like gzip but does not decompress: {source}")
            } else {
                format!("cannot be read to the end: {source}")
            },
        })
    }

    /// Adds the requests of an ALB access log read from `reader` (already
    /// decompressed), line by line; `log.name` names it in the summary and in
    /// the examples of skipped lines (`NAME:LINE`). [`Self::add_alb_log`]
    /// reads a file with it; a log fetched from elsewhere (S3) can be fed the
    /// same way.
    pub fn add_alb_log_lines(
        &mut self,
        mut reader: impl BufRead,
        log: &AlbLog<'_>,
    ) -> std::io::Result<()> {
        let mut summary = SourceSummary::new(format!("alb log {}", log.name));
        let mut taken = 0usize;
        let mut buffer = Vec::with_capacity(1024);
        let mut number = 0usize;
        loop {
            buffer.clear();
            if reader.read_until(b'\n', &mut buffer)? == 0 {
                break;
            }
            number += 1;
            let line = String::from_utf8_lossy(&buffer);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            let location = || format!("{}:{number}", log.name);
            match parse_alb_log_line(line) {
                Err(reason) => summary.skip(reason, location(), line),
                Ok((method, target)) => {
                    if !log.allow_unsafe && method != Method::GET && method != Method::HEAD {
                        summary.skip(
                            format!("{method} is not replayed without --allow-unsafe"),
                            location(),
                            line,
                        );
                    } else if !log
                        .route_patterns
                        .iter()
                        .any(|pattern| matches_path_pattern(pattern, path_of(&target)))
                    {
                        summary.skip("path outside the route's patterns", location(), line);
                    } else {
                        taken += 1;
                        self.push_new(method, target, log.templates);
                    }
                }
            }
        }
        summary.requests = taken;
        self.sources.push(summary);
        Ok(())
    }
}

/// Buffer size for reading an access log (and for its decompressed text).
const LOG_READ_BUFFER: usize = 256 * 1024;

/// What [`RequestSet::add_alb_log_lines`] takes from a log, and how it names it.
#[derive(Debug, Clone, Copy)]
pub struct AlbLog<'a> {
    /// The log's name in the summary, like `logs/a.log.gz` or `s3://bucket/key`.
    pub name: &'a str,
    /// The route's endpoint templates, to name each request's template.
    pub templates: &'a [String],
    /// Only requests whose path matches one of these are taken.
    pub route_patterns: &'a [String],
    /// Whether methods other than GET and HEAD are taken.
    pub allow_unsafe: bool,
}

/// Splits an ALB access log line into its fields: separated by one space,
/// quoted fields may hold spaces and backslash-escaped quotes (the format's
/// one home is `alb::access_log`).
pub fn split_alb_log_fields(line: &str) -> Result<Vec<String>, String> {
    alb::access_log::split_fields(line).map_err(|error| error.to_string())
}

/// Reads the method and path-and-query of one ALB access log line; the error
/// is the reason it cannot be replayed.
pub fn parse_alb_log_line(line: &str) -> Result<(Method, String), String> {
    let record =
        alb::access_log::Record::parse(line.trim_end()).map_err(|error| error.to_string())?;
    request_of_record(&record)
}

/// The method and path-and-query of a parsed access log entry; the error is
/// the reason it cannot be replayed.
pub fn request_of_record(record: &alb::access_log::Record) -> Result<(Method, String), String> {
    if record.get("request").starts_with("- ") {
        return Err("no request recorded (the ALB could not parse it)".into());
    }
    let Some((method, url, _protocol)) = record.request() else {
        return Err("request field is not \"METHOD URL PROTOCOL\"".into());
    };
    let method = parse_method(method).map_err(|_| "request field has no valid method")?;
    let target = alb::access_log::target_of_url(url).ok_or("request URL has no path")?;
    Ok((method, target))
}
