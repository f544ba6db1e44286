//! Notifications: what a migration does, told to the team's sinks
//! (`[[notify]]` in migrate.toml): webhooks (the event as JSON, or Slack's
//! `{"text": ...}`, optionally signed) and SNS topics.
//!
//! Every event has the versioned schema [`SCHEMA`] ([`Event`]; documented in
//! docs/operations.md). Delivery never blocks or fails a command: each sink
//! has its own worker task that delivers its events in order, each attempt
//! under the sink's `timeout`, with a bounded retry. When the command ends,
//! [`Notifier::finish`] waits a bounded time for the deliveries still under
//! way; a delivery that failed (or was still pending) is printed on stderr,
//! journaled (command `notify`) and counted by `status`. The command's exit
//! code never changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use hmac::{Hmac, Mac as _};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{OnceCell, mpsc};

use crate::journal::{self, Entry, Snapshot};
use crate::settings::{GatePhase, NotifyFormat, NotifySink, Settings, Severity};

/// The version of the event schema: a consumer checks it before reading.
pub const SCHEMA: &str = "ficus.event/v1";
/// The header carrying a webhook body's HMAC-SHA256: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Ficus-Signature";
/// The header naming the event of a webhook POST.
pub const EVENT_HEADER: &str = "X-Ficus-Event";
/// The journal's `command` for a failed delivery.
pub const JOURNAL_COMMAND: &str = "notify";
/// The longest `finish` waits for deliveries still under way.
const FINISH_MAX: Duration = Duration::from_secs(60);
/// The pause before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// What happened. The names are the schema's `event` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    #[serde(rename = "shift.started")]
    ShiftStarted,
    #[serde(rename = "step.applied")]
    StepApplied,
    #[serde(rename = "gate.passed")]
    GatePassed,
    #[serde(rename = "gate.failed")]
    GateFailed,
    #[serde(rename = "rollback.started")]
    RollbackStarted,
    #[serde(rename = "rollback.finished")]
    RollbackFinished,
    #[serde(rename = "lock.forced")]
    LockForced,
    #[serde(rename = "drift.found")]
    DriftFound,
    /// A shift reached a hold of its plan and stopped there.
    #[serde(rename = "shift.held")]
    Held,
    /// `migrate promote` sent a held plan on to its next hold or 100%.
    #[serde(rename = "shift.promoted")]
    Promoted,
    /// `migrate abort` rolled the route back by hand (with its reason).
    #[serde(rename = "shift.aborted")]
    Aborted,
    /// Sent by `migrate notify test` only.
    #[serde(rename = "notify.test")]
    Test,
    /// The body POSTed to a custom webhook gate; never sent to sinks.
    #[serde(rename = "gate.check")]
    GateCheck,
}

impl Kind {
    /// The schema's name of the event, e.g. `gate.failed`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ShiftStarted => "shift.started",
            Kind::StepApplied => "step.applied",
            Kind::GatePassed => "gate.passed",
            Kind::GateFailed => "gate.failed",
            Kind::RollbackStarted => "rollback.started",
            Kind::RollbackFinished => "rollback.finished",
            Kind::LockForced => "lock.forced",
            Kind::DriftFound => "drift.found",
            Kind::Held => "shift.held",
            Kind::Promoted => "shift.promoted",
            Kind::Aborted => "shift.aborted",
            Kind::Test => "notify.test",
            Kind::GateCheck => "gate.check",
        }
    }

    /// The event's severity.
    pub fn severity(self) -> Severity {
        match self {
            Kind::GateFailed => Severity::Critical,
            Kind::RollbackStarted
            | Kind::RollbackFinished
            | Kind::LockForced
            | Kind::DriftFound
            | Kind::Aborted => Severity::Warning,
            Kind::ShiftStarted
            | Kind::StepApplied
            | Kind::GatePassed
            | Kind::Held
            | Kind::Promoted
            | Kind::Test
            | Kind::GateCheck => Severity::Info,
        }
    }
}

/// One event, as every sink and webhook gate receives it (`ficus.event/v1`).
/// Every field is always present; those that do not apply are `null`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// This event's id (unique; a retried delivery repeats it).
    pub id: String,
    pub event: Kind,
    pub severity: Severity,
    pub route: Option<String>,
    /// The route's share on the service before, in percent.
    pub from: Option<u8>,
    /// The route's share on the service after (or aimed at), in percent.
    pub to: Option<u8>,
    /// The step's share, in percent, for gate events.
    pub step: Option<u8>,
    /// The gate: a built-in one (`health`, `parity`, `probes`, `coverage`,
    /// `read-back`) or a custom gate's name.
    pub gate: Option<String>,
    /// A custom gate's phase.
    pub phase: Option<GatePhase>,
    /// A dry-run gate's verdict: reported, never failing anything.
    pub dry_run: bool,
    /// Why: a gate's reason, a rollback's cause, the drift.
    pub reason: Option<String>,
    /// The operator: the AWS caller ARN, or `user@host`.
    pub who: String,
    /// The id of the journal entry that recorded the change, if any.
    pub journal_id: Option<String>,
    /// RFC 3339 UTC.
    pub time: String,
    /// One line for people (the Slack text; the SNS subject, shortened).
    pub text: String,
}

impl Event {
    pub fn new(kind: Kind, route: Option<&str>) -> Event {
        Event {
            schema: SCHEMA,
            id: uuid::Uuid::new_v4().to_string(),
            event: kind,
            severity: kind.severity(),
            route: route.map(str::to_owned),
            from: None,
            to: None,
            step: None,
            gate: None,
            phase: None,
            dry_run: false,
            reason: None,
            who: String::new(),
            journal_id: None,
            time: journal::now_rfc3339(),
            text: String::new(),
        }
    }

    pub fn shares(mut self, from: Option<u8>, to: Option<u8>) -> Event {
        self.from = from;
        self.to = to;
        self
    }

    pub fn step(mut self, step: u8) -> Event {
        self.step = Some(step);
        self
    }

    pub fn gate(mut self, gate: &str, reason: Option<String>) -> Event {
        self.gate = Some(gate.to_owned());
        self.reason = reason;
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }

    pub fn journal(mut self, id: &str) -> Event {
        self.journal_id = (!id.is_empty()).then(|| id.to_owned());
        self
    }

    /// Sets `who` and the `text` line from the other fields.
    pub fn finish(mut self, who: &str) -> Event {
        self.who = who.to_owned();
        self.text = self.describe();
        self
    }

    /// The event in one line, for people.
    fn describe(&self) -> String {
        let pct = |p: Option<u8>| p.map_or_else(|| "?".to_owned(), |p| format!("{p}%"));
        let gate = self.gate.as_deref().unwrap_or("?");
        let reason = self.reason.as_deref().unwrap_or("");
        let step = pct(self.step);
        let what = match self.event {
            Kind::ShiftStarted => format!(
                "shift started: {} -> {} on the service",
                pct(self.from),
                pct(self.to)
            ),
            Kind::StepApplied => format!(
                "step applied: {} on the service (was {})",
                pct(self.to),
                pct(self.from)
            ),
            Kind::GatePassed if self.dry_run && !reason.is_empty() => {
                format!(
                    "gate {gate} (dry-run) would have failed before the step to {step}: {reason}"
                )
            }
            Kind::GatePassed => format!("gate {gate} passed before the step to {step}"),
            Kind::GateFailed => format!("gate {gate} FAILED before the step to {step}: {reason}"),
            Kind::RollbackStarted => {
                format!(
                    "rollback started at {} on the service: {reason}",
                    pct(self.from)
                )
            }
            Kind::RollbackFinished => format!(
                "rolled back to the monolith ({} -> {})",
                pct(self.from),
                pct(self.to)
            ),
            Kind::LockForced => format!("lock forced: {reason}"),
            Kind::DriftFound => format!("drift found by status: {reason}"),
            Kind::Held => format!("shift held at {}", pct(self.to)),
            Kind::Promoted => format!("shift promoted to {}", pct(self.to)),
            Kind::Aborted => format!("shift aborted: {reason}"),
            Kind::Test => "test notification (migrate notify test)".to_owned(),
            Kind::GateCheck => format!("gate {gate} checked before the step to {step}"),
        };
        let route = self
            .route
            .as_deref()
            .map(|r| format!("{r}: "))
            .unwrap_or_default();
        let who = if self.who.is_empty() {
            String::new()
        } else {
            format!(" (by {})", self.who)
        };
        format!("ficus {}: {route}{what}{who}", severity_name(self.severity))
    }
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "CRITICAL",
    }
}

/// A delivery that failed after its retries (or was still pending when the
/// command ended).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryFailure {
    pub sink: String,
    pub event: Kind,
    pub event_id: String,
    pub route: Option<String>,
    pub attempts: u32,
    pub error: String,
}

/// One sink and the clients it delivers with.
struct Sink {
    settings: NotifySink,
    label: String,
}

#[derive(Default)]
struct Log {
    /// Events handed to a sink's worker and not yet resolved, by (sink, id).
    pending: BTreeMap<(usize, String), (Kind, Option<String>)>,
    failures: Vec<DeliveryFailure>,
}

struct Shared {
    sdk: SdkConfig,
    who: OnceCell<String>,
    http: reqwest::Client,
    log: Mutex<Log>,
}

impl Shared {
    async fn who(&self) -> String {
        self.who
            .get_or_init(|| crate::elb::caller_identity(&self.sdk, false))
            .await
            .clone()
    }
}

/// The command's notifier: [`Notifier::emit`] never waits;
/// [`Notifier::finish`] at the end of the command.
pub struct Notifier {
    sinks: Vec<Arc<Sink>>,
    senders: Vec<mpsc::UnboundedSender<Event>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    shared: Arc<Shared>,
    journal: PathBuf,
}

impl Notifier {
    /// One worker per `[[notify]]` sink; none (and no cost) without sinks.
    /// Must be called inside the tokio runtime.
    pub fn new(settings: &Settings, sdk: &SdkConfig) -> Notifier {
        let shared = Arc::new(Shared {
            sdk: sdk.clone(),
            who: OnceCell::new(),
            http: http_client(),
            log: Mutex::new(Log::default()),
        });
        let sinks: Vec<Arc<Sink>> = settings
            .notify
            .iter()
            .map(|settings| {
                Arc::new(Sink {
                    label: settings.label(),
                    settings: settings.clone(),
                })
            })
            .collect();
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for (index, sink) in sinks.iter().enumerate() {
            let (sender, receiver) = mpsc::unbounded_channel();
            senders.push(sender);
            workers.push(tokio::spawn(worker(
                index,
                sink.clone(),
                receiver,
                shared.clone(),
            )));
        }
        Notifier {
            sinks,
            senders,
            workers,
            shared,
            journal: settings.journal_path(),
        }
    }

    /// Whether any sink is configured.
    pub fn has_sinks(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// The operator, once known (saves the sinks' workers an STS call).
    pub fn set_who(&self, who: &str) {
        let _ = self.shared.who.set(who.to_owned());
    }

    /// Hands the event to every sink whose `min_severity` it reaches. Never waits.
    pub fn emit(&self, event: Event) {
        for (index, (sink, sender)) in self.sinks.iter().zip(&self.senders).enumerate() {
            if event.severity < sink.settings.min_severity {
                continue;
            }
            if let Ok(mut log) = self.shared.log.lock() {
                log.pending.insert(
                    (index, event.id.clone()),
                    (event.event, event.route.clone()),
                );
            }
            let _ = sender.send(event.clone());
        }
    }

    /// Waits (bounded) for the deliveries under way, then prints, journals and
    /// returns the failed ones. Never fails.
    pub async fn finish(&mut self) -> Vec<DeliveryFailure> {
        if self.sinks.is_empty() {
            return Vec::new();
        }
        self.senders.clear();
        let budget = self
            .sinks
            .iter()
            .map(|sink| attempt_budget(&sink.settings))
            .max()
            .unwrap_or_default()
            .min(FINISH_MAX);
        let deadline = tokio::time::Instant::now() + budget;
        for worker in &mut self.workers {
            if tokio::time::timeout_at(deadline, &mut *worker)
                .await
                .is_err()
            {
                worker.abort();
            }
        }
        let mut failures = match self.shared.log.lock() {
            Ok(mut log) => {
                let mut failures = std::mem::take(&mut log.failures);
                for ((index, id), (kind, route)) in std::mem::take(&mut log.pending) {
                    failures.push(DeliveryFailure {
                        sink: self.sinks[index].label.clone(),
                        event: kind,
                        event_id: id,
                        route,
                        attempts: 0,
                        error: format!(
                            "still not delivered when migrate stopped waiting ({}s after the command ended; the sink is slow or down)",
                            budget.as_secs_f64()
                        ),
                    });
                }
                failures
            }
            Err(_) => Vec::new(),
        };
        failures.sort_by(|a, b| a.sink.cmp(&b.sink));
        if !failures.is_empty() {
            let who = self.shared.who().await;
            for failure in &failures {
                eprintln!(
                    "migrate: notify: could not deliver {} to {}: {} (the command's outcome is unchanged)",
                    failure.event.name(),
                    failure.sink,
                    failure.error
                );
                if let Err(err) = journal::append(&self.journal, &failure_entry(failure, &who)) {
                    eprintln!("migrate: notify: cannot journal the failed delivery: {err:#}");
                }
            }
        }
        failures
    }
}

/// How long one event may take to a sink: every attempt and the pauses
/// between them, and a second of slack.
fn attempt_budget(sink: &NotifySink) -> Duration {
    let attempts = sink.retries + 1;
    let pauses: Duration = (0..sink.retries).map(|n| FIRST_BACKOFF * 2u32.pow(n)).sum();
    sink.timeout * attempts + pauses + Duration::from_secs(1)
}

/// The journal entry of a failed delivery (command `notify`).
fn failure_entry(failure: &DeliveryFailure, who: &str) -> Entry {
    let nothing = Snapshot {
        priority: None,
        action: "-".to_owned(),
        state: "-".to_owned(),
    };
    Entry {
        id: journal::new_id(),
        when: journal::now_rfc3339(),
        who: who.to_owned(),
        command: JOURNAL_COMMAND.to_owned(),
        route: failure.route.clone().unwrap_or_else(|| "-".to_owned()),
        what: format!(
            "delivery of {} to {} failed",
            failure.event.name(),
            failure.sink
        ),
        before: nothing.clone(),
        after: nothing,
        writes: Vec::new(),
        evidence: serde_json::to_value(failure).unwrap_or_default(),
    }
}

/// Failed deliveries recorded in the journal: (how many, the last one).
pub fn journaled_failures(path: &Path) -> anyhow::Result<(usize, Option<Entry>)> {
    let failures: Vec<Entry> = journal::read(path, None)?
        .into_iter()
        .filter(|entry| entry.command == JOURNAL_COMMAND)
        .collect();
    Ok((failures.len(), failures.last().cloned()))
}

async fn worker(
    index: usize,
    sink: Arc<Sink>,
    mut events: mpsc::UnboundedReceiver<Event>,
    shared: Arc<Shared>,
) {
    // Once an event could not be delivered, the next ones get one attempt
    // each until one is delivered: a sink that is down costs one event's
    // retries, not every event's.
    let mut failing = false;
    while let Some(event) = events.recv().await {
        let who = shared.who().await;
        let event = event.finish(&who);
        let retries = if failing { 0 } else { sink.settings.retries };
        let result = deliver_with_retry(&shared, &sink, &event, retries).await;
        failing = result.is_err();
        if let Ok(mut log) = shared.log.lock() {
            log.pending.remove(&(index, event.id.clone()));
            if let Err((attempts, error)) = result {
                log.failures.push(DeliveryFailure {
                    sink: sink.label.clone(),
                    event: event.event,
                    event_id: event.id.clone(),
                    route: event.route.clone(),
                    attempts,
                    error,
                });
            }
        }
    }
}

/// Delivers one event: each attempt under the sink's timeout, then a pause
/// (250 ms, doubling) and again, `retries` times at most (the sink's
/// `retries`, or none while the sink is failing). Ok: the attempts
/// made; Err: the attempts and the last error.
async fn deliver_with_retry(
    shared: &Shared,
    sink: &Sink,
    event: &Event,
    retries: u32,
) -> Result<u32, (u32, String)> {
    let mut pause = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = tokio::time::timeout(sink.settings.timeout, deliver(shared, sink, event))
            .await
            .unwrap_or_else(|_| {
                Err(Failed::ForNow(format!(
                    "no answer within {}",
                    humantime::format_duration(sink.settings.timeout)
                )))
            });
        match outcome {
            Ok(()) => return Ok(attempt),
            Err(Failed::Permanently(error)) => {
                return Err((
                    attempt,
                    format!("{error} (not retried: it would fail again)"),
                ));
            }
            Err(Failed::ForNow(error)) if attempt > retries => {
                return Err((attempt, format!("{error} (after {attempt} attempts)")));
            }
            Err(Failed::ForNow(_)) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}

/// Why an attempt failed, and whether another attempt could succeed.
enum Failed {
    /// The network, a timeout, a 5xx, 408 or 429: worth another attempt.
    ForNow(String),
    /// The sink's settings or the receiver refuse the event as it is (a
    /// signing key that is not set, a 4xx): another attempt fails the same way.
    Permanently(String),
}

/// One attempt.
async fn deliver(shared: &Shared, sink: &Sink, event: &Event) -> Result<(), Failed> {
    match (&sink.settings.url, &sink.settings.sns_topic_arn) {
        (Some(url), _) => post_webhook(shared, &sink.settings, url, event).await,
        (None, Some(topic)) => publish_sns(&shared.sdk, topic, event)
            .await
            .map_err(Failed::ForNow),
        (None, None) => Err(Failed::Permanently("no url or sns_topic_arn".to_owned())),
    }
}

/// The body a webhook sink posts: the event, or Slack's `{"text": ...}`.
pub fn webhook_body(format: NotifyFormat, event: &Event) -> Vec<u8> {
    let value = match format {
        NotifyFormat::Json => serde_json::to_value(event).unwrap_or_default(),
        NotifyFormat::Slack => serde_json::json!({ "text": event.text }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `sha256=<hex>`: the HMAC-SHA256 of the body under the key.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_webhook(
    shared: &Shared,
    sink: &NotifySink,
    url: &str,
    event: &Event,
) -> Result<(), Failed> {
    let body = webhook_body(sink.format, event);
    let mut request = shared
        .http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, event.event.name());
    if let Some(name) = &sink.secret_env {
        let key = std::env::var(name).map_err(|_| {
            Failed::Permanently(format!(
                "the signing key's environment variable {name} (secret_env) is not set"
            ))
        })?;
        request = request.header(SIGNATURE_HEADER, signature(key.as_bytes(), &body));
    }
    let answer = request
        .body(body)
        .send()
        .await
        .map_err(|err| Failed::ForNow(describe_http_error(&err)))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let text = answer.text().await.unwrap_or_default();
    let error = format!("HTTP {}: {}", status.as_u16(), first_kib(text.as_bytes()));
    let refused = status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
    Err(if refused {
        Failed::Permanently(error)
    } else {
        Failed::ForNow(error)
    })
}

/// How much of an answer or of stderr a gate's reason (or a failed
/// delivery's error) keeps.
pub const REASON_MAX: usize = 1024;

/// The first KiB of an answer or of stderr, as text, trimmed.
pub fn first_kib(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(REASON_MAX)]);
    let mut text = text.trim().to_owned();
    if bytes.len() > REASON_MAX {
        text.push_str(" [...]");
    }
    text
}

/// A transport error in words: refused, timed out, or what reqwest says.
pub fn describe_http_error(err: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        err.to_string()
    };
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

async fn publish_sns(sdk: &SdkConfig, topic: &str, event: &Event) -> Result<(), String> {
    use aws_sdk_sns::types::MessageAttributeValue;
    let client = aws_sdk_sns::Client::new(sdk);
    let message = serde_json::to_string(event).map_err(|err| err.to_string())?;
    // SNS subjects: at most 100 printable ASCII characters, no line breaks.
    let subject: String = event
        .text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .take(100)
        .collect();
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|err| err.to_string())
    };
    let mut publish = client
        .publish()
        .topic_arn(topic)
        .subject(subject.trim())
        .message(message)
        .message_attributes("event", attribute(event.event.name())?)
        .message_attributes("severity", attribute(severity_name(event.severity))?);
    if let Some(route) = &event.route {
        publish = publish.message_attributes("route", attribute(route)?);
    }
    publish.send().await.map(|_| ()).map_err(|err| {
        format!(
            "SNS Publish: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&err)
        )
    })
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("ficus-migrate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// What `notify test` found for one sink.
#[derive(Debug, Serialize)]
pub struct TestResult {
    pub sink: String,
    pub delivered: bool,
    pub attempts: u32,
    pub millis: u64,
    pub error: Option<String>,
}

/// Sends a `notify.test` event to every sink (whatever its `min_severity`),
/// all at once, each with its timeout and retries; one result per sink.
pub async fn test_all(settings: &Settings, sdk: &SdkConfig, who: &str) -> Vec<TestResult> {
    let shared = Arc::new(Shared {
        sdk: sdk.clone(),
        who: OnceCell::new_with(Some(who.to_owned())),
        http: http_client(),
        log: Mutex::new(Log::default()),
    });
    let event = Event::new(Kind::Test, None).finish(who);
    let tasks: Vec<_> = settings
        .notify
        .iter()
        .map(|settings| {
            let sink = Sink {
                label: settings.label(),
                settings: settings.clone(),
            };
            let (shared, event) = (shared.clone(), event.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let retries = sink.settings.retries;
                let outcome = deliver_with_retry(&shared, &sink, &event, retries).await;
                let millis = started.elapsed().as_millis() as u64;
                match outcome {
                    Ok(attempts) => TestResult {
                        sink: sink.label,
                        delivered: true,
                        attempts,
                        millis,
                        error: None,
                    },
                    Err((attempts, error)) => TestResult {
                        sink: sink.label,
                        delivered: false,
                        attempts,
                        millis,
                        error: Some(error),
                    },
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for (task, sink) in tasks.into_iter().zip(&settings.notify) {
        results.push(task.await.unwrap_or_else(|err| TestResult {
            sink: sink.label(),
            delivered: false,
            attempts: 0,
            millis: 0,
            error: Some(format!("the delivery task failed: {err}")),
        }));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn events_carry_the_schema_and_every_field() {
        let event = Event::new(Kind::GateFailed, Some("users"))
            .shares(Some(10), Some(50))
            .step(50)
            .gate("contract-tests", Some("HTTP 500: boom".into()))
            .journal("abc")
            .finish("ann@host");
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["schema"], "ficus.event/v1");
        assert_eq!(value["event"], "gate.failed");
        assert_eq!(value["severity"], "critical");
        assert_eq!(value["gate"], "contract-tests");
        assert_eq!(value["journal_id"], "abc");
        assert!(value["phase"].is_null());
        assert!(
            event
                .text
                .contains("users: gate contract-tests FAILED before the step to 50%: HTTP 500"),
            "{}",
            event.text
        );
        let slack: serde_json::Value =
            serde_json::from_slice(&webhook_body(NotifyFormat::Slack, &event)).unwrap();
        assert_eq!(slack, serde_json::json!({ "text": event.text }));
    }

    #[test]
    fn reasons_keep_the_first_kib() {
        assert_eq!(first_kib(b"  boom\n"), "boom");
        let long = vec![b'x'; 3000];
        let reason = first_kib(&long);
        assert!(reason.starts_with(&"x".repeat(1024)));
        assert!(reason.ends_with(" [...]"));
        assert_eq!(reason.len(), 1024 + 6);
    }

    #[test]
    fn severities_order_and_each_event_has_one() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        assert_eq!(Kind::GateFailed.severity(), Severity::Critical);
        assert_eq!(Kind::StepApplied.severity(), Severity::Info);
        assert_eq!(Kind::RollbackFinished.severity(), Severity::Warning);
    }
}
