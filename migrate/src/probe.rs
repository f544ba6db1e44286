//! Probes during a shift's intervals: GETs of the route's probe paths through
//! the load balancer's URL at a steady rate. A response is an error when its
//! status is 500 or more or the request fails.

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
    urls: Vec<String>,
    period: Duration,
}

impl Prober {
    pub fn new(lb_url: &str, paths: &[String], rate_per_second: f64) -> anyhow::Result<Prober> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let base = lb_url.trim_end_matches('/');
        let urls = paths.iter().map(|path| format!("{base}{path}")).collect();
        let period = Duration::from_secs_f64(1.0 / rate_per_second);
        Ok(Prober {
            client,
            urls,
            period,
        })
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
        let error = match self.client.get(url).send().await {
            Ok(response) if response.status().as_u16() >= 500 => {
                Some(format!("GET {url} answered {}", response.status()))
            }
            Ok(_) => None,
            Err(err) => Some(format!("GET {url} failed: {err}")),
        };
        if let Some(error) = error {
            tally.errors += 1;
            tally.first_error.get_or_insert(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
