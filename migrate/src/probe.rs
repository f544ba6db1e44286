//! Probes during a shift's intervals: GETs of the route's probe paths through
//! the load balancer's URL at a steady rate.
//!
//! A probe counts what a client would notice. Once per shift, each probe path
//! is asked of the monolith (`monolith.base_url`, or the load balancer while
//! the route is wholly on the monolith), and its status class (2xx, 3xx, 4xx,
//! 5xx) becomes the expected one: a probe answered with another class is an
//! error (a 404 where the monolith answers 200 is one, a 404 where it answers
//! 404 is not). When neither answers, a probe is an error when its status is
//! 500 or more (and the shift says so). A request that fails is always one.

use std::time::Duration;

use serde::Serialize;

/// What the probes of one interval saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProbeTally {
    pub total: u32,
    pub errors: u32,
    /// The first error seen, for the journal.
    pub first_error: Option<String>,
}

impl ProbeTally {
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            f64::from(self.errors) / f64::from(self.total)
        }
    }

    /// Over budget: with at least `min_sample` probes (or `final_check`, at the
    /// end of the interval, with any), the error ratio exceeds the budget.
    pub fn over_budget(&self, budget: f64, min_sample: u32, final_check: bool) -> bool {
        let enough = self.total >= min_sample.max(1) || (final_check && self.total > 0);
        enough && self.ratio() > budget
    }

    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} probes, {} errors ({:.1}%)",
            self.total,
            self.errors,
            self.ratio() * 100.0
        );
        if let Some(first) = &self.first_error {
            text.push_str(&format!("; first error: {first}"));
        }
        text
    }
}

/// Probes one interval's worth of requests.
pub struct Prober {
    client: reqwest::Client,
    /// The Host header, when the route's rule has a host condition.
    host: Option<String>,
    urls: Vec<String>,
    period: Duration,
    /// The monolith's status class (1-5) per probe path, when learned.
    expected: Vec<Option<u16>>,
}

impl Prober {
    pub fn new(
        lb_url: &str,
        host: Option<String>,
        paths: &[String],
        rate_per_second: f64,
    ) -> anyhow::Result<Prober> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let base = lb_url.trim_end_matches('/');
        let urls = paths.iter().map(|path| format!("{base}{path}")).collect();
        let period = Duration::from_secs_f64(1.0 / rate_per_second);
        Ok(Prober {
            client,
            host,
            urls,
            period,
            expected: vec![None; paths.len()],
        })
    }

    /// Asks this prober's own URL (with its host) for every probe path once
    /// and returns each answer's status class: the expected classes, when the
    /// URL is the monolith's (`monolith.base_url`, or the load balancer while
    /// the route is wholly on the monolith).
    pub async fn answer_classes(&self) -> anyhow::Result<Vec<Option<u16>>> {
        let mut classes = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let mut request = self.client.get(url);
            if let Some(host) = &self.host {
                request = request.header(reqwest::header::HOST, host);
            }
            let response = request
                .send()
                .await
                .map_err(|err| anyhow::anyhow!("GET {url}: {err}"))?;
            classes.push(Some(response.status().as_u16() / 100));
        }
        Ok(classes)
    }

    /// Compares each answer's status class with these (one per probe path).
    pub fn expect(&mut self, classes: Vec<Option<u16>>) {
        if classes.len() == self.expected.len() {
            self.expected = classes;
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// Sends probe number `index` and records its outcome.
    pub async fn probe(&self, index: usize, tally: &mut ProbeTally) {
        let Some(url) = self.urls.get(index % self.urls.len().max(1)) else {
            return;
        };
        tally.total += 1;
        let expected = self.expected[index % self.urls.len()];
        let mut request = self.client.get(url);
        if let Some(host) = &self.host {
            request = request.header(reqwest::header::HOST, host);
        }
        let error = match request.send().await {
            Ok(response) => noticed(response.status().as_u16(), expected)
                .map(|why| format!("GET {url} answered {}{why}", response.status())),
            // "timed out" or the causes: reqwest's own text is the same
            // ("error sending request") for a 2 s timeout and a reset.
            Err(err) => Some(format!(
                "GET {url} failed: {}",
                crate::notify::describe_http_error(&err)
            )),
        };
        if let Some(error) = error {
            tally.errors += 1;
            tally.first_error.get_or_insert(error);
        }
    }
}

/// Why a client would notice an answer with `status`, given the monolith's
/// status class for the same path (when known); `None` when it would not.
fn noticed(status: u16, expected_class: Option<u16>) -> Option<String> {
    match expected_class {
        Some(class) if status / 100 != class => {
            Some(format!(" where the monolith answers {class}xx"))
        }
        Some(_) => None,
        None if status >= 500 => Some(String::new()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_an_error_when_its_class_differs_from_the_monolith() {
        assert!(noticed(404, Some(2)).is_some_and(|why| why.contains("2xx")));
        assert_eq!(noticed(404, Some(4)), None);
        assert_eq!(noticed(200, Some(2)), None);
        assert!(noticed(200, Some(4)).is_some());
        assert!(noticed(503, Some(5)).is_none());
        // Without a baseline, only server errors count.
        assert!(noticed(502, None).is_some());
        assert_eq!(noticed(404, None), None);
    }

    #[test]
    fn the_budget_needs_a_minimum_sample_until_the_end() {
        let tally = ProbeTally {
            total: 3,
            errors: 1,
            first_error: None,
        };
        assert!(!tally.over_budget(0.1, 10, false));
        assert!(tally.over_budget(0.1, 10, true));
        let clean = ProbeTally {
            total: 50,
            errors: 0,
            first_error: None,
        };
        assert!(!clean.over_budget(0.0, 10, true));
        let one = ProbeTally {
            total: 100,
            errors: 1,
            first_error: None,
        };
        assert!(!one.over_budget(0.01, 10, false));
        assert!(one.over_budget(0.005, 10, false));
    }

    /// A failed probe says why (a closed connection here, "timed out" for
    /// the 2 s timeout), not only reqwest's "error sending request", which
    /// is the same for both.
    #[tokio::test]
    async fn a_failed_probe_names_its_cause() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Reads the request head, then closes without an answer.
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head).await;
            }
        });
        let prober = Prober::new(
            &format!("http://{address}"),
            None,
            &["/api/threads".into()],
            10.0,
        )
        .unwrap();
        let mut tally = ProbeTally::default();
        prober.probe(0, &mut tally).await;
        assert_eq!(tally.errors, 1);
        let error = tally.first_error.unwrap();
        assert!(error.contains("error sending request"), "{error}");
        assert!(
            error.contains("connection closed before message completed"),
            "the cause is named: {error}"
        );
    }
}
