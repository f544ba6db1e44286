//! The load balancer's CloudWatch metrics (namespace `AWS/ApplicationELB`),
//! counted by the data plane and served on the control listener.
//!
//! - `counters.rs`: per-second counters per (target group, load balancer)
//!   and per load balancer; atomics per worker on the hot path, a harvester
//!   task moving finished seconds into a bounded history.
//! - `histogram.rs`: the bounded histogram behind `TargetResponseTime`
//!   percentiles (within 3.2 %).
//! - `api.rs`: `GetMetricData` and `ListMetrics` over Smithy RPC v2 CBOR
//!   (what `aws-sdk-cloudwatch` sends) and AWS JSON 1.0 (what botocore 1.43,
//!   so the AWS CLI, resolves CloudWatch's protocol list to).
//!
//! Pure of HTTP: the control plane hands `api::handle` the operation and the
//! body, after checking the SigV4 signature for [`SIGNING_SERVICE`].

pub mod api;
pub mod counters;
mod histogram;

pub use counters::{Cell, DEFAULT_RETENTION, Registry};

/// The SigV4 service name CloudWatch requests are signed for.
pub const SIGNING_SERVICE: &str = "monitoring";
/// The path prefix of CloudWatch's RPC v2 CBOR operations
/// (`/service/GraniteServiceVersion20100801/operation/<Operation>`).
pub const RPC_PATH_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";
/// The `X-Amz-Target` prefix of CloudWatch's AWS JSON 1.0 operations
/// (`POST /`, `X-Amz-Target: GraniteServiceVersion20100801.<Operation>`).
pub const JSON_TARGET_PREFIX: &str = "GraniteServiceVersion20100801.";
