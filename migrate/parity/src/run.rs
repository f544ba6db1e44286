//! Sending each request to the baseline (twice) and to the candidate, with
//! bounded concurrency, and comparing the answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Client;
use serde::Serialize;

use crate::compare::{Comparator, Difference, Location, Response};
use crate::error::Error;
use crate::recording::{RecordedAnswer, RecordedAnswers, RecordedExchange, RouteRecording};
use crate::request::{Request, shorten};

/// The default number of requests compared at once.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// The default timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The base URLs a run compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sides {
    /// The reference answers (the monolith).
    pub baseline: String,
    /// Where the second, noise-cancelling request goes (the baseline unless set).
    pub baseline_2: String,
    /// The answers under test (the service).
    pub candidate: String,
    /// A header sent with the candidate's requests only (`NAME`, `VALUE`):
    /// through a load balancer, the one a preview rule routes by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_header: Option<(String, String)>,
}

impl Sides {
    /// Checks the three base URLs (`http://host:port`, optionally with a path
    /// prefix); `baseline_2` defaults to `baseline`.
    pub fn new(baseline: &str, baseline_2: Option<&str>, candidate: &str) -> Result<Self, Error> {
        Ok(Self {
            baseline: base_url("baseline", baseline)?,
            baseline_2: base_url("baseline-2", baseline_2.unwrap_or(baseline))?,
            candidate: base_url("candidate", candidate)?,
            candidate_header: None,
        })
    }

    /// The same sides, the candidate's requests carrying `header` too.
    pub fn with_candidate_header(self, name: &str, value: &str) -> Result<Self, Error> {
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(reqwest::header::HeaderValue::from_str(value).ok())
            .ok_or_else(|| Error::Usage(format!("`{name}: {value}` is not a valid HTTP header")))?;
        Ok(Self {
            candidate_header: Some((name.to_owned(), value.to_owned())),
            ..self
        })
    }
}

fn base_url(side: &str, url: &str) -> Result<String, Error> {
    let parsed = reqwest::Url::parse(url).map_err(|error| {
        Error::Usage(format!(
            "the {side} URL {url:?} is not a URL ({error}); write it like http://127.0.0.1:3000"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Error::Usage(format!(
            "the {side} URL {url:?} must be http:// or https:// with a host, like http://127.0.0.1:3000"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::Usage(format!(
            "the {side} URL {url:?} must not have a query or fragment; request paths are appended to it"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// How a run sends its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Requests compared at once (each sends three HTTP requests).
    pub concurrency: usize,
    /// Timeout of one HTTP request, connection included.
    pub timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Which answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The first baseline answer.
    Baseline,
    /// The second, noise-cancelling baseline answer.
    Baseline2,
    /// The candidate's answer.
    Candidate,
}

impl std::fmt::Display for Side {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Side::Baseline => "baseline",
            Side::Baseline2 => "second baseline",
            Side::Candidate => "candidate",
        })
    }
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All three answers arrived and were compared.
    Compared {
        /// Baseline against candidate, suppressed differences included
        /// (noise is applied when the report is built).
        differences: Vec<Difference>,
        /// Where the two baseline answers differed.
        noise: Vec<Location>,
    },
    /// A side did not answer (connection error, timeout, broken body).
    Failed {
        /// The first side that failed.
        side: Side,
        /// Why.
        error: String,
    },
}

/// One request and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The request.
    pub request: Request,
    /// Its outcome.
    pub outcome: Outcome,
}

/// The exchanges of one run, in request order, and how long it took.
#[derive(Debug, Clone)]
pub struct Run {
    /// One per request.
    pub exchanges: Vec<Exchange>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

fn client(options: &RunOptions) -> Result<Client, Error> {
    client_with(options, None)
}

/// [`client`] sending `header` with every request.
fn client_with(options: &RunOptions, header: Option<&(String, String)>) -> Result<Client, Error> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some((name, value)) = header {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|error| Error::Usage(format!("header name {name:?}: {error}")))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|error| Error::Usage(format!("header value {value:?}: {error}")))?;
        headers.insert(name, value);
    }
    Client::builder()
        .default_headers(headers)
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(options.concurrency.max(1))
        .tcp_nodelay(true)
        .http1_only()
        .no_gzip()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ficus-parity/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Error::Usage(format!("cannot set up the HTTP client: {error}")))
}

/// Sends every request to the baseline twice and to the candidate once, at
/// most `options.concurrency` requests at a time, and compares the answers.
pub async fn run(
    requests: Vec<Request>,
    sides: &Sides,
    options: &RunOptions,
    comparator: &Comparator,
) -> Result<Run, Error> {
    run_with(requests, sides, options, comparator, None).await
}

/// [`run()`] against a recording: the two baseline answers of each request
/// come from `recording` (no baseline is contacted); a request missing from
/// it fails on the baseline side with a message saying how to re-record.
pub async fn run_recorded(
    requests: Vec<Request>,
    sides: &Sides,
    options: &RunOptions,
    comparator: &Comparator,
    recording: Arc<RecordedAnswers>,
) -> Result<Run, Error> {
    run_with(requests, sides, options, comparator, Some(recording)).await
}

async fn run_with(
    requests: Vec<Request>,
    sides: &Sides,
    options: &RunOptions,
    comparator: &Comparator,
    recording: Option<Arc<RecordedAnswers>>,
) -> Result<Run, Error> {
    run_observed(requests, sides, options, comparator, recording, &|| {}).await
}

/// [`run()`] (or [`run_recorded`], when `recording` is given) calling
/// `on_compared` each time a request's answers have been compared, for a
/// progress display.
pub async fn run_observed(
    requests: Vec<Request>,
    sides: &Sides,
    options: &RunOptions,
    comparator: &Comparator,
    recording: Option<Arc<RecordedAnswers>>,
    on_compared: &(dyn Fn() + Sync),
) -> Result<Run, Error> {
    if options.concurrency == 0 {
        return Err(Error::Usage("concurrency must be at least 1".into()));
    }
    let shared = Arc::new(Shared {
        baseline: client(options)?,
        baseline_2: client(options)?,
        candidate: client_with(options, sides.candidate_header.as_ref())?,
        sides: sides.clone(),
        comparator: comparator.clone(),
        timeout: options.timeout,
        recording,
    });
    let started = Instant::now();
    let exchanges = each_request_observed(
        requests,
        options.concurrency,
        move |request| {
            let shared = Arc::clone(&shared);
            async move {
                let outcome = shared.exchange(&request).await;
                Exchange { request, outcome }
            }
        },
        on_compared,
    )
    .await;
    Ok(Run {
        exchanges,
        elapsed: started.elapsed(),
    })
}

/// Runs `work` on every request, at most `concurrency` at a time, each on its
/// own task; the results in request order.
pub(crate) async fn each_request<T, F, Fut>(
    requests: Vec<Request>,
    concurrency: usize,
    work: F,
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    each_request_observed(requests, concurrency, work, &|| {}).await
}

/// [`each_request`] calling `on_done` as each result arrives.
async fn each_request_observed<T, F, Fut>(
    requests: Vec<Request>,
    concurrency: usize,
    work: F,
    on_done: &(dyn Fn() + Sync),
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut results: Vec<(usize, T)> = futures_util::stream::iter(requests.into_iter().enumerate())
        .map(|(index, request)| {
            let task = tokio::spawn(work(request));
            async move { (index, task.await.expect("an exchange task never panics")) }
        })
        .buffer_unordered(concurrency.max(1))
        .inspect(|_| on_done())
        .collect()
        .await;
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Sends every request to the baseline and to the second baseline (no
/// candidate), for a recording: each request with its two answers or the
/// first error.
pub(crate) async fn fetch_baseline_twice(
    requests: Vec<Request>,
    sides: &Sides,
    options: &RunOptions,
) -> Result<Vec<(Request, Result<(Response, Response), (Side, String)>)>, Error> {
    let shared = Arc::new(Shared {
        baseline: client(options)?,
        baseline_2: client(options)?,
        candidate: client(options)?,
        sides: sides.clone(),
        comparator: Comparator::default(),
        timeout: options.timeout,
        recording: None,
    });
    Ok(each_request(requests, options.concurrency, move |request| {
        let shared = Arc::clone(&shared);
        async move {
            let (first, second) = tokio::join!(
                shared.fetch(&shared.baseline, &shared.sides.baseline, &request),
                shared.fetch(&shared.baseline_2, &shared.sides.baseline_2, &request),
            );
            let answers = match (first, second) {
                (Ok(first), Ok(second)) => Ok((first, second)),
                (Err(error), _) => Err((Side::Baseline, error)),
                (_, Err(error)) => Err((Side::Baseline2, error)),
            };
            (request, answers)
        }
    })
    .await)
}

struct Shared {
    baseline: Client,
    baseline_2: Client,
    candidate: Client,
    sides: Sides,
    comparator: Comparator,
    timeout: Duration,
    /// The baseline's answers, when they come from a recording.
    recording: Option<Arc<RecordedAnswers>>,
}

impl Shared {
    async fn exchange(&self, request: &Request) -> Outcome {
        let (baseline, baseline_2, candidate) = match &self.recording {
            None => {
                tokio::join!(
                    self.fetch(&self.baseline, &self.sides.baseline, request),
                    self.fetch(&self.baseline_2, &self.sides.baseline_2, request),
                    self.fetch(&self.candidate, &self.sides.candidate, request),
                )
            }
            Some(recording) => {
                let candidate = self
                    .fetch(&self.candidate, &self.sides.candidate, request)
                    .await;
                match recording.answers(request) {
                    Ok((first, second)) => (Ok(first.clone()), Ok(second.clone()), candidate),
                    Err(missing) => (Err(missing), Err(String::new()), candidate),
                }
            }
        };
        let (baseline, baseline_2, candidate) = match (baseline, baseline_2, candidate) {
            (Ok(baseline), Ok(baseline_2), Ok(candidate)) => (baseline, baseline_2, candidate),
            (Err(error), _, _) => return failed(Side::Baseline, error),
            (_, Err(error), _) => return failed(Side::Baseline2, error),
            (_, _, Err(error)) => return failed(Side::Candidate, error),
        };
        let differences = if baseline == candidate {
            Vec::new()
        } else {
            self.comparator.compare(&baseline, &candidate)
        };
        let noise = if baseline == baseline_2 {
            Vec::new()
        } else {
            self.comparator.noise(&baseline, &baseline_2)
        };
        Outcome::Compared { differences, noise }
    }

    async fn fetch(
        &self,
        client: &Client,
        base: &str,
        request: &Request,
    ) -> Result<Response, String> {
        let url = format!("{base}{}", request.target);
        let describe = |error: reqwest::Error| {
            if error.is_timeout() {
                format!("timed out after {:?}", self.timeout)
            } else {
                error_chain(&error)
            }
        };
        let response = client
            .request(request.method.clone(), &url)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await.map_err(describe)?;
        Ok(Response::new(
            status,
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            body,
        ))
    }
}

fn failed(side: Side, error: String) -> Outcome {
    Outcome::Failed { side, error }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    shorten(&text, 240)
}

/// Sends each request to the baseline twice (no candidate) and records the
/// answers; requests that got no answer are returned as `METHOD /path: side:
/// error`, and are not in the recording.
pub async fn record(
    requests: Vec<Request>,
    sides: &Sides,
    options: &RunOptions,
    comparator: &Comparator,
) -> Result<(RouteRecording, Vec<String>), Error> {
    let mut recording = RouteRecording::default();
    let mut failures = Vec::new();
    for (request, answers) in fetch_baseline_twice(requests, sides, options).await? {
        match answers {
            Ok((first, second)) => {
                let answer = RecordedAnswer::of(&first, comparator);
                let second = RecordedAnswer::of(&second, comparator);
                recording.requests.push(RecordedExchange {
                    request: request.to_string(),
                    second_answer: (second != answer).then_some(second),
                    answer,
                });
            }
            Err((side, error)) => failures.push(format!("{request}: {side}: {error}")),
        }
    }
    Ok((recording, failures))
}
