//! The data plane: the ALB's HTTP listener.
//!
//! INTERFACE CONTRACT between the control plane and the data plane. The
//! signatures below are what `lib.rs` and `control` call; the data plane
//! owner fills in the bodies (and may add modules under `dataplane/`), keeping
//! these signatures stable.

use std::sync::Arc;

use crate::model::{State, Target};

/// Target health as DescribeTargetHealth reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealthView {
    /// `initial`, `healthy`, `unhealthy`, `unused` or `draining`.
    pub state: String,
    /// For example `Elb.RegistrationInProgress`, `Target.FailedHealthChecks`,
    /// `Target.ResponseCodeMismatch`, `Target.Timeout`,
    /// `Target.DeregistrationInProgress`; `None` when healthy.
    pub reason: Option<String>,
    pub description: Option<String>,
}

/// The running data plane: routing table, target health, metrics.
pub struct DataPlane {
    _private: (),
}

impl DataPlane {
    /// Builds the data plane for `initial` (compiles its routing table and
    /// prepares health checking; spawns nothing yet).
    pub fn new(initial: &State) -> Arc<DataPlane> {
        let _ = initial;
        Arc::new(DataPlane { _private: () })
    }

    /// Publishes a new configuration after the control plane accepted (and
    /// persisted) a change: recompiles the routing table and swaps it in
    /// atomically, and updates the health checkers' target sets. Requests in
    /// flight finish on the table they started with.
    pub fn publish(&self, state: &State) {
        let _ = state;
    }

    /// Starts the health checkers (one task per target group). Needs a tokio
    /// runtime.
    pub fn start_health_checks(self: &Arc<Self>) {}

    /// Serves the ALB's HTTP listener on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let _ = listener;
        shutdown.await;
        Ok(())
    }

    /// The health of one registered (or draining) target of a target group.
    pub fn target_health(&self, target_group_arn: &str, target: &Target) -> TargetHealthView {
        let _ = (target_group_arn, target);
        TargetHealthView {
            state: "initial".to_owned(),
            reason: Some("Elb.RegistrationInProgress".to_owned()),
            description: Some("Target registration is in progress".to_owned()),
        }
    }

    /// Targets that were deregistered but are still draining, per target group
    /// (DescribeTargetHealth lists them with state `draining`).
    pub fn draining_targets(&self, target_group_arn: &str) -> Vec<Target> {
        let _ = target_group_arn;
        Vec::new()
    }

    /// Prometheus text exposition for `/metrics` on the control listener.
    pub fn render_metrics(&self) -> String {
        String::new()
    }
}
