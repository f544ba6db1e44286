//! Steady client traffic through the load balancer, every answer checked
//! against the monolith's answer to the same request.
//!
//! The data is static, so the monolith's answers are fetched once, directly,
//! before the traffic starts. A request *failed* when it got no answer or a
//! status of 500 or more; it *differed* when it got any other answer whose
//! status, content type or body differ from the monolith's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::CONTENT_TYPE;

/// Client tasks sending at once (each with its keep-alive connection).
pub const CLIENTS: usize = 8;
/// At most this many failures and differences are kept to show.
const PROBLEMS_KEPT: usize = 5;

/// One request of the mix: the route it belongs to and its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixEntry {
    pub route: &'static str,
    pub path: &'static str,
}

const fn entry(route: &'static str, path: &'static str) -> MixEntry {
    MixEntry { route, path }
}

/// Lists, by-id, unknown ids (204 or `[]`), not found (404), upper-case paths
/// (which the ALB's case-sensitive patterns leave to the monolith) and
/// trailing slashes, for every route.
pub const MIX: &[MixEntry] = &[
    entry("users", "/api/users"),
    entry("users", "/api/users/1"),
    entry("users", "/api/users/2"),
    entry("users", "/api/users/3"),
    entry("users", "/api/users/4"),
    entry("users", "/api/users/99"),
    entry("users", "/api/users/1/2"),
    entry("users", "/API/USERS"),
    entry("users", "/api/users/"),
    entry("users", "/api/users/2/"),
    entry("threads", "/api/threads"),
    entry("threads", "/api/threads/1"),
    entry("threads", "/api/threads/2"),
    entry("threads", "/api/threads/3"),
    entry("threads", "/api/threads/99"),
    entry("threads", "/api/threads/1/2"),
    entry("threads", "/API/THREADS/2"),
    entry("threads", "/api/threads/"),
    entry("posts", "/api/posts"),
    entry("posts", "/api/posts/in-thread/1"),
    entry("posts", "/api/posts/in-thread/2"),
    entry("posts", "/api/posts/by-user/1"),
    entry("posts", "/api/posts/by-user/3"),
    entry("posts", "/api/posts/by-user/99"),
    entry("posts", "/api/posts/1"),
    entry("posts", "/API/POSTS/IN-THREAD/1"),
    entry("posts", "/api/posts/"),
];

/// What the monolith answered: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    content_type: Option<Vec<u8>>,
    body: Vec<u8>,
}

impl Answer {
    async fn fetch(client: &reqwest::Client, url: &str) -> reqwest::Result<Answer> {
        let response = client.get(url).send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| value.as_bytes().to_vec());
        let body = response.bytes().await?.to_vec();
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    /// How `self` differs from the expected answer, if it does.
    fn difference(&self, expected: &Answer) -> Option<String> {
        if self.status != expected.status {
            return Some(format!(
                "status {} instead of {}",
                self.status, expected.status
            ));
        }
        if self.content_type != expected.content_type {
            let show = |value: &Option<Vec<u8>>| {
                value.as_ref().map_or("none".to_owned(), |bytes| {
                    String::from_utf8_lossy(bytes).into_owned()
                })
            };
            return Some(format!(
                "content type {} instead of {}",
                show(&self.content_type),
                show(&expected.content_type)
            ));
        }
        if self.body != expected.body {
            return Some(format!(
                "a {}-byte body instead of the monolith's {} bytes",
                self.body.len(),
                expected.body.len()
            ));
        }
        None
    }
}

/// Counts of one route's requests.
#[derive(Debug, Default)]
pub struct RouteCounts {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub differed: AtomicU64,
}

/// Counts of every route, shared by the client tasks.
#[derive(Debug, Default)]
pub struct Tally {
    pub routes: BTreeMap<&'static str, RouteCounts>,
    problems: Mutex<Vec<String>>,
}

/// A plain copy of the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub differed: u64,
}

impl Tally {
    fn new() -> Tally {
        let mut tally = Tally::default();
        for entry in MIX {
            tally.routes.entry(entry.route).or_default();
        }
        tally
    }

    pub fn route(&self, route: &str) -> Counts {
        self.routes
            .get(route)
            .map(|counts| Counts {
                sent: counts.sent.load(Ordering::Relaxed),
                failed: counts.failed.load(Ordering::Relaxed),
                differed: counts.differed.load(Ordering::Relaxed),
            })
            .unwrap_or_default()
    }

    pub fn total(&self) -> Counts {
        self.routes.keys().fold(Counts::default(), |sum, route| {
            let counts = self.route(route);
            Counts {
                sent: sum.sent + counts.sent,
                failed: sum.failed + counts.failed,
                differed: sum.differed + counts.differed,
            }
        })
    }

    /// The first failures and differences, described.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn problem(&self, text: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.len() < PROBLEMS_KEPT {
            problems.push(text);
        }
    }
}

/// The running client traffic.
pub struct Traffic {
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// Fetches the monolith's answers, then starts the client tasks sending
    /// `rate` requests per second in total through `lb_url`.
    pub async fn start(lb_url: &str, monolith_url: &str, rate: u32) -> anyhow::Result<Traffic> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        let mut expected = Vec::with_capacity(MIX.len());
        for entry in MIX {
            let url = format!("{monolith_url}{}", entry.path);
            let answer = Answer::fetch(&client, &url)
                .await
                .with_context(|| format!("the monolith did not answer GET {url}"))?;
            expected.push(answer);
        }
        let expected = Arc::new(expected);
        let tally = Arc::new(Tally::new());
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(CLIENTS as f64 / f64::from(rate.max(1)));
        let tasks = (0..CLIENTS)
            .map(|index| {
                let client = client.clone();
                let expected = Arc::clone(&expected);
                let tally = Arc::clone(&tally);
                let stop = Arc::clone(&stop);
                let lb_url = lb_url.to_owned();
                tokio::spawn(async move {
                    let mut ticker = tokio::time::interval(period);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    // Each client walks the mix from its own offset.
                    let mut next = index * MIX.len() / CLIENTS;
                    while !stop.load(Ordering::Relaxed) {
                        ticker.tick().await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let which = next % MIX.len();
                        next += 1;
                        send(&client, &lb_url, which, &expected[which], &tally).await;
                    }
                })
            })
            .collect();
        Ok(Traffic { tally, stop, tasks })
    }

    /// Stops sending and waits for the requests in flight.
    pub async fn stop(mut self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        Arc::clone(&self.tally)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn send(
    client: &reqwest::Client,
    lb_url: &str,
    which: usize,
    expected: &Answer,
    tally: &Tally,
) {
    let entry = MIX[which];
    let Some(counts) = tally.routes.get(entry.route) else {
        return;
    };
    counts.sent.fetch_add(1, Ordering::Relaxed);
    let url = format!("{lb_url}{}", entry.path);
    match Answer::fetch(client, &url).await {
        Ok(answer) if answer.status >= 500 => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tally.problem(format!(
                "GET {} failed: status {}",
                entry.path, answer.status
            ));
        }
        Ok(answer) => {
            if let Some(difference) = answer.difference(expected) {
                counts.differed.fetch_add(1, Ordering::Relaxed);
                tally.problem(format!(
                    "GET {} differed from the monolith: {difference}",
                    entry.path
                ));
            }
        }
        Err(err) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tally.problem(format!("GET {} failed: {err}", entry.path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, content_type: Option<&str>, body: &str) -> Answer {
        Answer {
            status,
            content_type: content_type.map(|c| c.as_bytes().to_vec()),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_differ_by_status_content_type_or_body() {
        let expected = answer(200, Some("application/json"), "[]");
        assert_eq!(
            answer(200, Some("application/json"), "[]").difference(&expected),
            None
        );
        assert_eq!(
            answer(204, None, "").difference(&expected).as_deref(),
            Some("status 204 instead of 200")
        );
        assert!(
            answer(200, Some("text/plain"), "[]")
                .difference(&expected)
                .is_some_and(|d| d.starts_with("content type text/plain"))
        );
        assert!(
            answer(200, Some("application/json"), "[1]")
                .difference(&expected)
                .is_some_and(|d| d.contains("body"))
        );
    }

    #[test]
    fn the_mix_covers_every_route() {
        let routes: std::collections::BTreeSet<&str> = MIX.iter().map(|e| e.route).collect();
        assert_eq!(
            routes.into_iter().collect::<Vec<_>>(),
            ["posts", "threads", "users"]
        );
    }
}
