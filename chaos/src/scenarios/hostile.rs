//! Scenario 8: hostile clients against the servers' ground (issue 25). The
//! open-file limit (raised to the hard one, and a crowd of silent
//! connections that must not lock ordinary clients out), a burst of
//! connections at once, a stalled request body, and CONNECT, at the local
//! ALB and at the monolith reached directly. Nothing may be held open past
//! its deadline, and the stack keeps serving.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::Profile;
use crate::report::Outcome;
use crate::stack::{ALB, CLIENT_IDLE_TIMEOUT, Stack};

/// How long a hostile connection may be held before it counts as held.
const HELD: Duration = Duration::from_secs(15);

pub async fn run(
    stack: &mut Stack,
    profile: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    open_file_limits(stack, outcome)?;
    silent_crowd(stack, profile, outcome).await?;
    burst(stack, profile, outcome).await?;
    stalled_body(stack, profile, outcome).await?;
    connect(stack, outcome).await?;
    outcome.check(stack.alb_alive() && stack.servers_alive(), || {
        "a process of the stack died".into()
    });
    Ok(())
}

/// Each process logged its open-file limit at start, the soft one raised to
/// the hard one.
fn open_file_limits(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    for name in [ALB, "monolith"] {
        let log = std::fs::read_to_string(stack.log(name))
            .with_context(|| format!("reading {name}'s log"))?;
        let line = log.lines().find(|line| line.contains("open-file limit"));
        let field = |key: &str| {
            line.and_then(|line| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(key))
            })
            .map(|value| value.trim_matches('"').to_owned())
        };
        let (soft, hard) = (field("soft="), field("hard="));
        outcome.check(soft.is_some() && soft == hard, || {
            format!("{name} runs with an open-file limit of {soft:?} under a hard one of {hard:?}: {line:?}")
        });
        seen.push(format!("{name} {}", soft.unwrap_or_default()));
    }
    outcome.figure("open-file limit (soft = hard)", seen.join(", "));
    Ok(())
}

/// A crowd of connections that send nothing: an ordinary request still gets
/// its answer at once, and the crowd is closed at the idle timeout.
async fn silent_crowd(
    stack: &Stack,
    profile: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let mut crowd = Vec::with_capacity(profile.silent_connections);
    for _ in 0..profile.silent_connections {
        match TcpStream::connect(stack.data_address).await {
            Ok(stream) => crowd.push(stream),
            Err(error) => {
                outcome.check(false, || {
                    format!("silent connection {} refused: {error}", crowd.len() + 1)
                });
                break;
            }
        }
    }
    let started = Instant::now();
    let answer = reqwest::get(format!("{}/api/users/1", stack.data_url())).await?;
    let took = started.elapsed();
    outcome.check(
        answer.status() == 200 && took < Duration::from_secs(2),
        || {
            format!(
                "with {} silent connections open, GET /api/users/1 answered {} after {took:?}",
                crowd.len(),
                answer.status()
            )
        },
    );
    // The idle timeout closes them all (the ALB peeks for a first byte).
    let closed_by = Instant::now() + CLIENT_IDLE_TIMEOUT + Duration::from_secs(3);
    let mut still_open = 0;
    for stream in &mut crowd {
        let mut byte = [0u8; 1];
        let left = closed_by.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => {}
            _ => still_open += 1,
        }
    }
    outcome.check(still_open == 0, || {
        format!("{still_open} silent connections still open after the idle timeout")
    });
    outcome.figure(
        "silent connections, then a request",
        format!(
            "{} open, answered in {:.0} ms",
            crowd.len(),
            took.as_secs_f64() * 1000.0
        ),
    );
    Ok(())
}

/// Connections opened all at once, each with one request: every one is
/// accepted and answered (the listeners' accept queues hold the burst).
async fn burst(stack: &Stack, profile: &Profile, outcome: &mut Outcome) -> anyhow::Result<()> {
    let address = stack.data_address;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..profile.burst_connections {
        tasks.spawn(async move {
            let started = Instant::now();
            let stream = TcpStream::connect(address).await;
            let connected = started.elapsed();
            let status = match stream {
                Ok(stream) => {
                    exchange(
                        stream,
                        b"GET /api/threads/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        HELD,
                    )
                    .await
                    .0
                }
                Err(_) => None,
            };
            (status, connected)
        });
    }
    let results = tasks.join_all().await;
    let answered = results
        .iter()
        .filter(|(status, _)| *status == Some(200))
        .count();
    let mut connect_times: Vec<Duration> = results.iter().map(|(_, took)| *took).collect();
    connect_times.sort_unstable();
    let median = connect_times[connect_times.len() / 2];
    let slowest = connect_times[connect_times.len() - 1];
    outcome.check(answered == results.len(), || {
        format!("a burst of {}: {answered} answered 200", results.len())
    });
    // A connection dropped from a full accept queue is retried by the
    // kernel after a second: a median near that means the queue overflowed.
    outcome.check(median < Duration::from_millis(500), || {
        format!("a burst of {}: median connect {median:?}", results.len())
    });
    outcome.figure(
        "burst",
        format!(
            "{} connections, {answered} answered, connect median {:.1} ms, slowest {:.0} ms",
            results.len(),
            median.as_secs_f64() * 1000.0,
            slowest.as_secs_f64() * 1000.0
        ),
    );
    Ok(())
}

/// A request body announced as 100 bytes of which 10 come: through the ALB
/// it gets 408 at the idle timeout; the monolith reached directly answers
/// 408 at its client timeout (10 s: the full run only).
async fn stalled_body(
    stack: &Stack,
    profile: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let request = b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789";
    let mut targets = vec![("local ALB", stack.data_address)];
    if profile.name != "bounded" {
        let monolith = stack.server_address("monolith").context("no monolith")?;
        targets.push(("monolith", monolith));
    }
    let mut figures = Vec::new();
    for (name, address) in targets {
        let stream = TcpStream::connect(address).await?;
        let (status, took) = exchange(stream, request, HELD).await;
        outcome.check(status == Some(408) && took < HELD, || {
            format!("a stalled body at the {name}: {status:?} after {took:?}, expected 408 within {HELD:?}")
        });
        figures.push(format!("{name} {status:?} in {:.1} s", took.as_secs_f64()));
    }
    outcome.figure("stalled body", figures.join(", "));
    Ok(())
}

/// CONNECT is answered and the connection closed at once, by the ALB (its
/// target is not a path: 400) and by the monolith reached directly (501).
async fn connect(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let request = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let monolith = stack.server_address("monolith").context("no monolith")?;
    let mut figures = Vec::new();
    for (name, address, expected) in [
        ("local ALB", stack.data_address, 400),
        ("monolith", monolith, 501),
    ] {
        let stream = TcpStream::connect(address).await?;
        let (status, took) = exchange(stream, request, HELD).await;
        outcome.check(status == Some(expected) && took < Duration::from_secs(5), || {
            format!("CONNECT at the {name}: {status:?} after {took:?}, expected {expected} and a close")
        });
        figures.push(format!("{name} {status:?} in {:.2} s", took.as_secs_f64()));
    }
    outcome.figure("CONNECT", figures.join(", "));
    Ok(())
}

/// Writes `request`, reads until the server closes (or `within` passes);
/// the status it answered and when it closed.
async fn exchange(
    mut stream: TcpStream,
    request: &[u8],
    within: Duration,
) -> (Option<u16>, Duration) {
    let started = Instant::now();
    if stream.write_all(request).await.is_err() {
        return (None, started.elapsed());
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await;
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|code| code.parse().ok());
    (status, started.elapsed())
}
