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
//!
//! A wait is said when it starts, on stderr (stdout stays the command's
//! result, `--output json` included): [`NotingSleep`] is the SDK's sleep, and
//! the interceptor leaves it a note of why the next sleep happens, so a retry
//! reads "migrate: DescribeTargetHealth throttled, retrying in 1.2 s (attempt
//! 3 of 5)". Only a client in the SDK's adaptive mode has a client-side rate
//! limiter whose wait (of at least [`NOTED_RATE_WAIT`]) would read "migrate:
//! DescribeTags waits 1.4 s: ..."; `elb.rs` and `cloudwatch.rs` build theirs
//! in the standard mode, which has none, so `migrate` never says that line.

use std::cell::RefCell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::config::{AsyncSleep, Sleep};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
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

/// When this call's first attempt that the service may have acted on began
/// (Unix seconds): the first attempt, or the one after the last answered
/// with a throttling error (a refused attempt changed nothing). `None`
/// until an attempt begins. Kept in the call's config bag.
#[derive(Debug, Clone, Copy)]
struct MayApplyFrom(Option<f64>);

impl Storable for MayApplyFrom {
    type Storer = StoreReplace<Self>;
}

/// Per operation name, [`MayApplyFrom`] of its latest finished call.
static MAY_APPLY_FROM: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

/// When the latest finished call of `action` ("SetRulePriorities") may first
/// have been acted on by the service (Unix seconds): the start of its first
/// attempt not refused by throttling. A write's effects are measured from
/// this, not from the first attempt: a throttled attempt's backoff is time
/// in which nothing was written. (An attempt answered with a server error
/// or no answer may have been applied, so it still counts.)
pub fn may_have_applied_from(action: &str) -> Option<f64> {
    MAY_APPLY_FROM
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(name, _)| name == action)
        .map(|(_, at)| *at)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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

    fn read_after_serialization(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Next: the rate limiter's go-ahead for the first attempt, which may
        // be a sleep.
        // The attempt's timeout is a sleep too, begun before the attempt:
        // not a wait.
        leave_note(Wait::RateLimited {
            action: action_name(cfg),
            attempt_timeout: cfg
                .load::<TimeoutConfig>()
                .and_then(|t| t.operation_attempt_timeout()),
        });
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        take_note();
        if cfg.load::<MayApplyFrom>().and_then(|m| m.0).is_none() {
            cfg.interceptor_state()
                .store_put(MayApplyFrom(Some(unix_now())));
        }
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
        let failed = matches!(context.output_or_error(), Some(Err(_)));
        if failed && matches!(status, Some(400..=499)) {
            // Refused (throttled): the next attempt is the first that may act.
            cfg.interceptor_state().store_put(MayApplyFrom(None));
        }
        if failed {
            // Next, if the retry strategy retries: the backoff's sleep.
            let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
            leave_note(Wait::Retry {
                action: action_name(cfg),
                cause: match status {
                    Some(500..) => "got a server error",
                    Some(_) => "throttled",
                    None => "got no answer",
                },
                next_attempt: attempt + 1,
                max_attempts: cfg.load::<RetryConfig>().map_or(0, |c| c.max_attempts()),
            });
        }
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
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        take_note();
        if matches!(context.output_or_error(), Some(Err(_))) {
            update(|b| b.failed += 1);
        }
        let action = action_name(cfg);
        let from = cfg.load::<MayApplyFrom>().and_then(|m| m.0);
        let mut latest = MAY_APPLY_FROM.lock().unwrap_or_else(|e| e.into_inner());
        latest.retain(|(name, _)| *name != action);
        if let Some(from) = from {
            latest.push((action, from));
        }
        Ok(())
    }
}

/// Rate-limiter waits shorter than this are not said.
pub const NOTED_RATE_WAIT: Duration = Duration::from_millis(500);

/// Why the SDK's next sleep happens.
#[derive(Debug, Clone, PartialEq)]
enum Wait {
    /// The backoff before a retry.
    Retry {
        action: String,
        cause: &'static str,
        next_attempt: u32,
        max_attempts: u32,
    },
    /// A client-side rate limiter (the adaptive mode's) before a first attempt.
    RateLimited {
        action: String,
        attempt_timeout: Option<Duration>,
    },
}

impl Wait {
    /// The line said on stderr for a sleep of `delay`, if any.
    fn line(&self, delay: Duration) -> Option<String> {
        match self {
            Wait::Retry {
                action,
                cause,
                next_attempt,
                max_attempts,
            } => Some(format!(
                "migrate: {action} {cause}, retrying in {:.1} s (attempt {next_attempt} of {max_attempts})",
                delay.as_secs_f64()
            )),
            Wait::RateLimited {
                action,
                attempt_timeout,
            } => (delay >= NOTED_RATE_WAIT && Some(delay) != *attempt_timeout).then(|| {
                format!(
                    "migrate: {action} waits {:.1} s: migrate slows its calls down after throttling",
                    delay.as_secs_f64()
                )
            }),
        }
    }
}

thread_local! {
    /// The note the interceptor left for the next sleep. The SDK's
    /// orchestrator runs the hook and creates the sleep in one poll of the
    /// call's future, so on one thread; a note older than that is stale.
    static NOTE: RefCell<Option<(Wait, Instant)>> = const { RefCell::new(None) };
}

fn leave_note(wait: Wait) {
    NOTE.with(|note| *note.borrow_mut() = Some((wait, Instant::now())));
}

fn take_note() -> Option<Wait> {
    NOTE.with(|note| note.borrow_mut().take())
        .filter(|(_, at)| at.elapsed() < Duration::from_millis(100))
        .map(|(wait, _)| wait)
}

/// The operation's name ("DescribeTargetHealth").
fn action_name(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map_or_else(|| "an AWS call".to_owned(), |m| m.name().to_owned())
}

/// The SDK's sleep (set once in `elb::sdk_config`): tokio's, saying why it
/// waits when the interceptor left a note (see the module's documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct NotingSleep;

impl AsyncSleep for NotingSleep {
    fn sleep(&self, duration: Duration) -> Sleep {
        if let Some(line) = take_note().and_then(|wait| wait.line(duration)) {
            eprintln!("{line}");
        }
        Sleep::new(tokio::time::sleep(duration))
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

    #[test]
    fn a_wait_says_why_and_for_how_long() {
        let retry = Wait::Retry {
            action: "DescribeTargetHealth".into(),
            cause: "throttled",
            next_attempt: 3,
            max_attempts: 5,
        };
        assert_eq!(
            retry.line(Duration::from_millis(1234)).unwrap(),
            "migrate: DescribeTargetHealth throttled, retrying in 1.2 s (attempt 3 of 5)"
        );
        let limited = Wait::RateLimited {
            action: "DescribeTags".into(),
            attempt_timeout: Some(Duration::from_secs(10)),
        };
        assert_eq!(limited.line(Duration::from_millis(100)), None);
        assert_eq!(
            limited.line(Duration::from_secs(10)),
            None,
            "the attempt's timeout"
        );
        assert!(
            limited
                .line(Duration::from_secs(2))
                .unwrap()
                .starts_with("migrate: DescribeTags waits 2.0 s")
        );
        leave_note(retry.clone());
        assert_eq!(take_note(), Some(retry));
        assert_eq!(take_note(), None, "a note is said once");
    }
}
