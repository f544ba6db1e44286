//! The CloudWatch client of the metric gates: one `GetMetricData` call per
//! evaluation (every query of every subject in it, pages followed), on the
//! shared `SdkConfig` (credentials, region, endpoint, timeouts) with
//! *standard* retries: throttling and transient errors are retried with
//! full-jitter exponential backoff (5 attempts, 500 ms doubling, capped at
//! 10 s), and when the retries give up the evaluation is an error, never a
//! pass, as `elb.rs`'s. Not the adaptive mode: its client-side rate limiter,
//! fed by one call a period, held a call throttled twice for 20 s (measured
//! against moto), and a gate needs its answer within a period. `AccessDenied`
//! names the missing permission, `cloudwatch:GetMetricData`. The same code
//! talks to AWS and to the local ALB; only the endpoint differs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_cloudwatch as cw;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cw::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};

/// The namespace of every query: the load balancer's metrics.
pub const NAMESPACE: &str = "AWS/ApplicationELB";

/// One series to ask CloudWatch for.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The query's id: a lowercase letter first, then letters, digits, `_`.
    pub id: String,
    pub metric: &'static str,
    /// (name, value) pairs.
    pub dimensions: Vec<(&'static str, String)>,
    /// `Sum` or an extended statistic (`p99`).
    pub stat: &'static str,
}

/// One series as CloudWatch answered it: (timestamp in Unix seconds, value).
pub type Series = Vec<(i64, f64)>;

/// The CloudWatch client, counting its calls (`-v` prints each).
pub struct CloudWatch {
    client: cw::Client,
    verbose: bool,
    calls: AtomicUsize,
}

impl CloudWatch {
    pub fn new(config: &SdkConfig, verbose: bool) -> CloudWatch {
        let retries = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(5)
            .with_initial_backoff(Duration::from_millis(500))
            .with_max_backoff(Duration::from_secs(10));
        let config = cw::config::Builder::from(config)
            .retry_config(retries)
            .interceptor(crate::budget::Counting)
            .build();
        CloudWatch {
            client: cw::Client::from_conf(config),
            verbose,
            calls: AtomicUsize::new(0),
        }
    }

    /// GetMetricData calls made so far (pages included).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Every query over `[from, to)` (Unix seconds) at `period_s`: the
    /// series by query id (a query without data is absent).
    pub async fn metric_data(
        &self,
        queries: &[Query],
        from: i64,
        to: i64,
        period_s: i64,
    ) -> anyhow::Result<BTreeMap<String, Series>> {
        let sdk_queries: Vec<MetricDataQuery> =
            queries.iter().map(|q| sdk_query(q, period_s)).collect();
        let mut series: BTreeMap<String, Series> = BTreeMap::new();
        let mut next_token: Option<String> = None;
        loop {
            let started = Instant::now();
            let answer = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(sdk_queries.clone()))
                .start_time(cw::primitives::DateTime::from_secs(from))
                .end_time(cw::primitives::DateTime::from_secs(to))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(next_token.clone())
                .send()
                .await;
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.verbose {
                eprintln!(
                    "migrate: cloudwatch GetMetricData ({} queries) {:.1} ms{}",
                    sdk_queries.len(),
                    started.elapsed().as_secs_f64() * 1000.0,
                    if answer.is_ok() { "" } else { " (failed)" }
                );
            }
            let out = answer.map_err(|err| explain("GetMetricData", err))?;
            for result in out.metric_data_results() {
                let Some(id) = result.id() else { continue };
                let points = series.entry(id.to_owned()).or_default();
                points.extend(
                    result
                        .timestamps()
                        .iter()
                        .map(|t| t.secs())
                        .zip(result.values().iter().copied()),
                );
            }
            next_token = out.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        series.retain(|_, points| !points.is_empty());
        Ok(series)
    }
}

fn sdk_query(query: &Query, period_s: i64) -> MetricDataQuery {
    let dimensions = query
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(*name).value(value).build())
        .collect();
    let metric = Metric::builder()
        .namespace(NAMESPACE)
        .metric_name(query.metric)
        .set_dimensions(Some(dimensions))
        .build();
    MetricDataQuery::builder()
        .id(&query.id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(i32::try_from(period_s).unwrap_or(60))
                .stat(query.stat)
                .build(),
        )
        .return_data(true)
        .build()
}

/// Explains a CloudWatch error: AccessDenied names the missing permission,
/// throttling and unreachable endpoints say the retries gave up.
pub fn explain<E>(action: &'static str, err: SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let message = err.message().unwrap_or_default().to_owned();
    match code.as_deref() {
        Some("AccessDenied" | "AccessDeniedException" | "AccessDeniedFault") => anyhow::anyhow!(
            "CloudWatch {action} was refused: the caller lacks the IAM permission `cloudwatch:{action}` ({message}); add it to migrate's policy (infrastructure/aws/migrate-policy.json) or turn the metric gates off with `[metrics] enabled = false`"
        ),
        Some(code @ ("Throttling" | "ThrottlingException" | "RequestLimitExceeded")) => {
            anyhow::anyhow!(
                "CloudWatch {action} was throttled ({code}: {message}) and still was after the retries; the metric gates could not judge the step"
            )
        }
        Some(code) => anyhow::anyhow!("CloudWatch {action} failed: {code}: {message}"),
        None => match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => anyhow::anyhow!(
                "CloudWatch {action}: cannot reach the endpoint after the retries ({}); check the region, `--endpoint-url` or aws.endpoint_url",
                DisplayErrorContext(&err)
            ),
            SdkError::ServiceError(service) => anyhow::anyhow!(
                "CloudWatch {action}: the endpoint answered HTTP {} with something that is not a CloudWatch response; check `--endpoint-url` or aws.endpoint_url (the local ALB serves CloudWatch on its control listener)",
                service.raw().status().as_u16()
            ),
            _ => anyhow::anyhow!("CloudWatch {action} failed: {}", DisplayErrorContext(&err)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use cw::operation::get_metric_data::GetMetricDataError;

    fn service_error(code: &str, status: u16) -> SdkError<GetMetricDataError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("User: arn:aws:iam::1:user/op is not authorized to perform: cloudwatch:GetMetricData")
            .build();
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(GetMetricDataError::generic(meta), raw)
    }

    #[test]
    fn access_denied_names_the_missing_permission() {
        let err = explain("GetMetricData", service_error("AccessDenied", 403));
        let text = err.to_string();
        assert!(
            text.starts_with("CloudWatch GetMetricData was refused: the caller lacks the IAM permission `cloudwatch:GetMetricData`"),
            "{text}"
        );
        assert!(text.contains("migrate-policy.json"), "{text}");
        let throttled = explain("GetMetricData", service_error("Throttling", 400));
        assert!(throttled.to_string().contains("throttled"), "{throttled}");
    }

    #[test]
    fn queries_carry_the_period_and_the_extended_statistic() {
        let query = Query {
            id: "r0_svc_p99".into(),
            metric: "TargetResponseTime",
            dimensions: vec![("TargetGroup", "targetgroup/users/1".into())],
            stat: "p99",
        };
        let sdk = sdk_query(&query, 1);
        let stat = sdk.metric_stat().unwrap();
        assert_eq!((stat.period(), stat.stat()), (Some(1), Some("p99")));
        let metric = stat.metric().unwrap();
        assert_eq!(metric.namespace(), Some("AWS/ApplicationELB"));
        assert_eq!(metric.dimensions()[0].value(), Some("targetgroup/users/1"));
    }
}
