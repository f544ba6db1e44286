//! Client load through the local ALB, every answer checked against the
//! contract's: the monolith's own answer to the same request, read once
//! before the load starts.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinSet;

/// The GET requests the load sends, across the three routes and the monolith's
/// own paths (ids that exist, that do not, and odd spellings).
pub const PATHS: &[&str] = &[
    "/",
    "/api",
    "/api/users",
    "/api/users/1",
    "/api/users/4",
    "/api/users/99",
    "/API/USERS/+2",
    "/api/threads",
    "/api/threads/2",
    "/api/threads/abc",
    "/api/threads/3/",
    "/api/posts",
    "/api/posts/in-thread/1",
    "/api/posts/in-thread/7",
    "/api/posts/by-user/2",
    "/api/posts/by-user/99",
    "/api/usersx",
];

/// What the contract says a request answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    async fn read(response: reqwest::Response) -> reqwest::Result<Answer> {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await?.to_vec();
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

/// The expected answer of every path in [`PATHS`], read from the monolith.
pub async fn expected_answers(monolith: &str) -> anyhow::Result<Vec<(String, Answer)>> {
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for path in PATHS {
        let response = client
            .get(format!("{monolith}{path}"))
            .send()
            .await
            .with_context(|| format!("the monolith did not answer GET {path}"))?;
        answers.push((path.to_string(), Answer::read(response).await?));
    }
    Ok(answers)
}

/// Counters of a load run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests begun (the budget counter).
    begun: AtomicU64,
    /// Requests answered or failed.
    pub completed: AtomicU64,
    /// Answered, but not the contract's answer (a 5xx included).
    pub failed: AtomicU64,
    /// No answer at all: connect, reset or timeout.
    pub connection_errors: AtomicU64,
    pub in_flight: AtomicU64,
    /// When each failure or connection error happened, since the load began.
    failures_at: Mutex<Vec<Duration>>,
    examples: Mutex<Vec<String>>,
}

impl Tally {
    fn failure(&self, started: Instant, example: String) {
        if let Ok(mut at) = self.failures_at.lock() {
            at.push(started.elapsed());
        }
        if let Ok(mut examples) = self.examples.lock()
            && examples.len() < 5
        {
            examples.push(example);
        }
    }

    /// Failures and connection errors between two instants of the run.
    pub fn failures_between(&self, from: Duration, to: Duration) -> usize {
        self.failures_at
            .lock()
            .map(|at| at.iter().filter(|t| **t >= from && **t <= to).count())
            .unwrap_or(0)
    }

    /// Up to five failures, described.
    pub fn examples(&self) -> Vec<String> {
        self.examples.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// A running load: `connections` keep-alive clients, each sending one request
/// after another until stopped, `max_requests` are sent, or `max_time` passes.
pub struct Load {
    pub tally: Arc<Tally>,
    pub started: Instant,
    stop: Arc<AtomicBool>,
    /// Each worker returns its answered requests' latencies in microseconds.
    tasks: JoinSet<Vec<u32>>,
}

/// The figures of a finished load.
#[derive(Debug, Clone, Copy)]
pub struct LoadFigures {
    pub requests: u64,
    pub failed: u64,
    pub connection_errors: u64,
    pub seconds: f64,
    /// Latency percentiles of answered requests, in milliseconds: p50, p99, max.
    pub latency_ms: [f64; 3],
}

impl LoadFigures {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds.max(0.001)
    }
}

impl Load {
    pub fn start(
        base_url: &str,
        answers: &[(String, Answer)],
        connections: usize,
        max_requests: u64,
        max_time: Duration,
    ) -> anyhow::Result<Load> {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let answers = Arc::new(answers.to_vec());
        let mut tasks = JoinSet::new();
        for worker in 0..connections {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(10))
                .build()?;
            let (tally, stop, answers) = (tally.clone(), stop.clone(), answers.clone());
            let base_url = base_url.to_owned();
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                let mut index = worker;
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < max_time
                    && tally.begun.fetch_add(1, Ordering::Relaxed) < max_requests
                {
                    let (path, expected) = &answers[index % answers.len()];
                    index += 1;
                    tally.in_flight.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let result = match client.get(format!("{base_url}{path}")).send().await {
                        Ok(response) => Answer::read(response).await,
                        Err(err) => Err(err),
                    };
                    tally.in_flight.fetch_sub(1, Ordering::Relaxed);
                    tally.completed.fetch_add(1, Ordering::Relaxed);
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    match result {
                        Ok(answer) if answer == *expected => {}
                        Ok(answer) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            tally.failure(
                                started,
                                format!(
                                    "GET {path}: {} {:?} instead of {} {:?}",
                                    answer.status,
                                    String::from_utf8_lossy(&answer.body),
                                    expected.status,
                                    String::from_utf8_lossy(&expected.body)
                                ),
                            );
                        }
                        Err(err) => {
                            tally.connection_errors.fetch_add(1, Ordering::Relaxed);
                            tally.failure(started, format!("GET {path}: {err}"));
                        }
                    }
                }
                latencies
            });
        }
        Ok(Load {
            tally,
            started,
            stop,
            tasks,
        })
    }

    /// The time since the load began.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the load and waits for the requests in flight.
    pub async fn finish(mut self) -> LoadFigures {
        self.stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            latencies.extend(joined.unwrap_or_default());
        }
        latencies.sort_unstable();
        let seconds = self.started.elapsed().as_secs_f64();
        let tally = &self.tally;
        LoadFigures {
            requests: tally.completed.load(Ordering::Relaxed),
            failed: tally.failed.load(Ordering::Relaxed),
            connection_errors: tally.connection_errors.load(Ordering::Relaxed),
            seconds,
            latency_ms: [
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                percentile(&latencies, 1.0),
            ],
        }
    }
}

/// The `q` quantile (0 to 1) of sorted microseconds, in milliseconds.
fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_of_microseconds_are_milliseconds() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&sorted, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
