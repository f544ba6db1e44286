//! The AWS API budget a command used: calls, attempts, retries (throttled,
//! server errors, transport failures) and the time spent waiting between
//! attempts, counted by an SDK interceptor ([`Counting`]) that every AWS
//! client `migrate` builds carries (ELBv2, CloudWatch). The SDK retries
//! (its retry configuration is set once in `elb::sdk_config`); this only
//! watches, so `shift` and `rollback` can report what AWS's bad day cost:
//! "AWS API: 41 calls, 7 retried (6 throttled, 1 server error), 3.4 s in
//! backoff".
//!
//! One command runs per process, so the counters are process-wide.

use std::sync::Mutex;
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde::Serialize;

/// What the AWS API calls of this process cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Budget {
    /// Operations called (each may take several attempts).
    pub calls: u64,
    /// HTTP attempts made (calls plus retries).
    pub attempts: u64,
    /// Attempts repeated after a throttling answer (HTTP 400/429).
    pub throttled: u64,
    /// Attempts repeated after a server error (HTTP 5xx).
    pub server_errors: u64,
    /// Attempts repeated after no answer (timeout, connection failure).
    pub transport_errors: u64,
    /// Calls that failed after their last attempt.
    pub failed: u64,
    /// Seconds between a failed attempt and its retry (the SDK's backoff).
    pub backoff_seconds: f64,
}

impl Budget {
    /// Retries made: attempts beyond the first of each call.
    pub fn retried(&self) -> u64 {
        self.throttled + self.server_errors + self.transport_errors
    }

    /// What was used since `earlier` (a snapshot of the same process).
    pub fn since(&self, earlier: &Budget) -> Budget {
        Budget {
            calls: self.calls - earlier.calls,
            attempts: self.attempts - earlier.attempts,
            throttled: self.throttled - earlier.throttled,
            server_errors: self.server_errors - earlier.server_errors,
            transport_errors: self.transport_errors - earlier.transport_errors,
            failed: self.failed - earlier.failed,
            backoff_seconds: (self.backoff_seconds - earlier.backoff_seconds).max(0.0),
        }
    }

    /// The JSON form: the counters plus `retried`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("retried".into(), self.retried().into());
            map.insert(
                "backoff_seconds".into(),
                ((self.backoff_seconds * 10.0).round() / 10.0).into(),
            );
        }
        value
    }
}

impl std::fmt::Display for Budget {
    /// "AWS API: 41 calls, 7 retried (6 throttled, 1 server error), 3.4 s in
    /// backoff".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::output::count;
        write!(
            f,
            "AWS API: {}",
            count(self.calls as usize, "call", "calls")
        )?;
        let retried = self.retried();
        if retried == 0 {
            write!(f, ", none retried")?;
        } else {
            let mut why = Vec::new();
            if self.throttled > 0 {
                why.push(format!("{} throttled", self.throttled));
            }
            if self.server_errors > 0 {
                why.push(count(
                    self.server_errors as usize,
                    "server error",
                    "server errors",
                ));
            }
            if self.transport_errors > 0 {
                why.push(format!("{} without an answer", self.transport_errors));
            }
            write!(
                f,
                ", {retried} retried ({}), {:.1} s in backoff",
                why.join(", "),
                self.backoff_seconds
            )?;
        }
        if self.failed > 0 {
            write!(f, ", {} failed after retries", self.failed)?;
        }
        Ok(())
    }
}

static BUDGET: Mutex<Budget> = Mutex::new(Budget {
    calls: 0,
    attempts: 0,
    throttled: 0,
    server_errors: 0,
    transport_errors: 0,
    failed: 0,
    backoff_seconds: 0.0,
});

/// The budget used by this process so far.
pub fn used() -> Budget {
    *BUDGET.lock().unwrap_or_else(|e| e.into_inner())
}

fn update(change: impl FnOnce(&mut Budget)) {
    change(&mut BUDGET.lock().unwrap_or_else(|e| e.into_inner()));
}

/// How the previous attempt of this call ended (kept in the call's config
/// bag between attempts).
#[derive(Debug, Clone)]
struct AttemptEnded {
    at: Instant,
    status: Option<u16>,
}

impl Storable for AttemptEnded {
    type Storer = StoreReplace<Self>;
}

/// The interceptor every AWS client of `migrate` carries.
#[derive(Debug, Default)]
pub struct Counting;

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "migrate::budget::Counting"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        update(|b| b.calls += 1);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let previous = cfg.load::<AttemptEnded>().cloned();
        update(|b| {
            b.attempts += 1;
            if let Some(previous) = previous {
                b.backoff_seconds += previous.at.elapsed().as_secs_f64();
                match previous.status {
                    Some(500..) => b.server_errors += 1,
                    Some(_) => b.throttled += 1,
                    None => b.transport_errors += 1,
                }
            }
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let status = context.response().map(|r| r.status().as_u16());
        cfg.interceptor_state().store_put(AttemptEnded {
            at: Instant::now(),
            status,
        });
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if matches!(context.output_or_error(), Some(Err(_))) {
            update(|b| b.failed += 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_reads_as_a_sentence() {
        let budget = Budget {
            calls: 41,
            attempts: 48,
            throttled: 6,
            server_errors: 1,
            transport_errors: 0,
            failed: 0,
            backoff_seconds: 3.41,
        };
        assert_eq!(
            budget.to_string(),
            "AWS API: 41 calls, 7 retried (6 throttled, 1 server error), 3.4 s in backoff"
        );
        let calm = Budget {
            calls: 1,
            attempts: 1,
            ..Budget::default()
        };
        assert_eq!(calm.to_string(), "AWS API: 1 call, none retried");
        assert_eq!(budget.since(&calm).calls, 40);
        assert_eq!(budget.to_json()["retried"], 7);
    }
}
