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

/// A client that keeps one connection alive as a correct client of a load
/// balancer does: it never reuses a connection that was idle for half of
/// `balancer_idle_timeout` or longer. An HTTP/1.1 server may close an idle
/// connection at any moment (RFC 9112 §9.6); a request written as the close
/// crosses it gets no answer and, having been sent, is not retried. AWS's
/// answer is a client idle timeout shorter than the load balancer's.
pub fn keep_alive_client(balancer_idle_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(balancer_idle_timeout / 2)
        .timeout(Duration::from_secs(10))
        .build()
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
    /// The longest a connection waited between an answer and its next
    /// request, in milliseconds (a stalled client meets the balancer's idle
    /// timeout).
    pub longest_idle_ms: AtomicU64,
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
            && examples.len() < 10
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

    /// Up to ten failures, described.
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
            let client = keep_alive_client(crate::stack::CLIENT_IDLE_TIMEOUT)?;
            let (tally, stop, answers) = (tally.clone(), stop.clone(), answers.clone());
            let base_url = base_url.to_owned();
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                let mut index = worker;
                // When this connection's previous answer ended: a request
                // that gets no answer is described with the idle gap before it.
                let mut last_answer = Instant::now();
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
                    let idle_before = sent.duration_since(last_answer);
                    last_answer = Instant::now();
                    tally.longest_idle_ms.fetch_max(
                        u64::try_from(idle_before.as_millis()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
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
                            tally.failure(
                                started,
                                format!(
                                    "GET {path} at {:.3} s on connection {worker}, idle {} ms before it: {}",
                                    sent.duration_since(started).as_secs_f64(),
                                    idle_before.as_millis(),
                                    error_chain(&err)
                                ),
                            );
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

/// An error with its causes ("error sending request: ... : connection reset").
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{keep_alive_client, percentile};

    /// A server that answers the first request of each connection with a
    /// keep-alive answer, then closes it as the next request arrives: a load
    /// balancer's idle timeout firing as the client reuses the connection.
    async fn closes_on_reuse() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                    // The next request's first bytes: close without an answer.
                    let _ = stream.read(&mut buffer).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn the_load_never_reuses_a_connection_the_balancer_may_be_closing() {
        let address = closes_on_reuse().await;
        let url = format!("http://{address}/");
        // The balancer closes after 600 ms idle; the client's second request
        // comes 400 ms after the first (past half the balancer's timeout).
        let client = keep_alive_client(Duration::from_millis(600)).unwrap();
        for _ in 0..2 {
            let answer = client.get(&url).send().await.expect("an answer");
            assert_eq!(answer.text().await.unwrap(), "ok");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }

    #[test]
    fn percentiles_of_microseconds_are_milliseconds() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&sorted, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
