//! Scenario 6: bad input everywhere: random control API requests, malformed
//! settings and stack files, a corrupt state file, oversized and idle
//! data-plane connections. Nothing may crash.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::Profile;
use crate::report::Outcome;
use crate::stack::{ALB, CLIENT_IDLE_TIMEOUT, Process, Stack, write};

/// Pieces the control API fuzz builds form bodies from.
const FORM_KEYS: &[&str] = &[
    "Action",
    "Version",
    "RuleArn",
    "Priority",
    "ListenerArn",
    "Conditions.member.1.Field",
    "Actions.member.1.Type",
    "RulePriorities.member.1.Priority",
    "Names.member.1",
    "Tags.member.1.Key",
    "ResourceArns.member.1",
    "%ZZ",
    "",
    "Action.member.99999999999999999999",
];
const FORM_VALUES: &[&str] = &[
    "DescribeRules",
    "SetRulePriorities",
    "ModifyRule",
    "2015-12-01",
    "-1",
    "0",
    "50001",
    "99999999999999999999",
    "forward",
    "%",
    "%00",
    "\u{1F980}",
    "arn:aws:elasticloadbalancing:x",
    "",
];

pub async fn run(
    stack: &mut Stack,
    profile: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    control_fuzz(stack, profile, outcome).await?;
    malformed_settings(stack, outcome).await?;
    malformed_stacks(stack, outcome).await?;
    corrupt_state(stack, outcome).await?;
    oversized(stack, outcome).await?;
    idle(stack, outcome).await?;
    outcome.check(stack.alb_alive() && stack.servers_alive(), || {
        "a process of the stack died".into()
    });
    Ok(())
}

/// Random form bodies, unsigned or with a made-up signature: every answer
/// must be an AWS error document with 403, never a crash.
async fn control_fuzz(
    stack: &Stack,
    profile: &Profile,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut rng = rand::rng();
    let mut error_documents = 0;
    let mut other = Vec::new();
    for case in 0..profile.fuzz_requests {
        let pairs = rng.random_range(0..8);
        let mut body = String::new();
        for _ in 0..pairs {
            let key = FORM_KEYS[rng.random_range(0..FORM_KEYS.len())];
            let value = FORM_VALUES[rng.random_range(0..FORM_VALUES.len())];
            if !body.is_empty() {
                body.push('&');
            }
            body.push_str(&format!("{key}={value}"));
        }
        if rng.random_bool(0.2) {
            let noise: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            body.push_str(&String::from_utf8_lossy(&noise));
        }
        let mut request = client
            .post(stack.control_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        if case % 2 == 1 {
            request = request.header("authorization", fake_authorization(&stack.access_key_id));
        }
        let response = request
            .send()
            .await
            .context("the control API did not answer")?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if status == 403 && text.contains("<ErrorResponse") && text.contains("<Code>") {
            error_documents += 1;
        } else if other.len() < 3 {
            other.push(format!("{body:?} -> {status} {text:?}"));
        }
    }
    outcome.figure("control fuzz requests", profile.fuzz_requests);
    outcome.figure("403 error documents", error_documents);
    outcome.check(error_documents == profile.fuzz_requests, || {
        format!("unauthenticated requests not refused with an error document: {other:?}")
    });
    Ok(())
}

/// An `Authorization` header shaped like SigV4, with a signature that is wrong.
pub fn fake_authorization(access_key_id: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/20260101/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
        "0f".repeat(32)
    )
}

/// A broken copy of a good file: what is wrong with it, its text, and the key
/// the refusal must name.
type Broken = (&'static str, String, &'static str);

/// One edit that breaks a good file: what is wrong, the text whose first
/// occurrence it replaces, the replacement, and the key the refusal must name.
type Edit = (&'static str, &'static str, &'static str, &'static str);

/// `good` broken by each edit.
fn edited(good: &str, edits: &[Edit]) -> Vec<Broken> {
    edits
        .iter()
        .map(|&(label, from, to, key)| (label, good.replacen(from, to, 1), key))
        .collect()
}

/// Writes each broken file as `{stem}-{index}.toml`, runs `refuse` on it (its
/// exit code and output) and checks that it exits 2 naming the file and the
/// key, `what` naming the file in problems; returns how many did.
async fn refusals_naming_the_key(
    stack: &Stack,
    outcome: &mut Outcome,
    what: &str,
    stem: &str,
    cases: &[Broken],
    mut refuse: impl AsyncFnMut(&Path, usize) -> anyhow::Result<(Option<i32>, String)>,
) -> anyhow::Result<usize> {
    let mut named = 0;
    for (index, (label, text, key)) in cases.iter().enumerate() {
        let path = stack.file(&format!("{stem}-{index}.toml"));
        write(&path, text)?;
        let (code, output) = refuse(&path, index).await?;
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if outcome.check(
            code == Some(2) && output.contains(file) && output.contains(key),
            || {
                format!(
                    "{what} with {label}: exit {code:?}, expected 2 naming {file} and `{key}`: {}",
                    output.trim_end()
                )
            },
        ) {
            named += 1;
        }
    }
    Ok(named)
}

/// Malformed `migrate.toml` files: exit 2 naming the file and the key.
async fn malformed_settings(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let good = std::fs::read_to_string(&stack.config)?;
    let mut cases = vec![(
        "unknown key",
        format!("bogus_setting = 1\n{good}"),
        "bogus_setting",
    )];
    cases.extend(edited(
        &good,
        &[
            (
                "wrong type",
                "steps = [10, 50, 100]",
                "steps = \"ten\"",
                "steps",
            ),
            (
                "out of range",
                "error_budget = 0.01",
                "error_budget = 5.0",
                "error_budget",
            ),
            (
                "bad duration",
                "interval = \"10s\"",
                "interval = \"soon\"",
                "interval",
            ),
        ],
    ));
    cases.push((
        "not TOML",
        format!("{good}\n[routes.users\n"),
        "routes.users",
    ));
    let status = async |path: &Path, _| {
        let process = stack.spawn_migrate_with(path, &["status"], &[])?;
        let run = crate::stack::finish(process, &["status"], Duration::from_secs(30)).await?;
        Ok((run.code, run.output))
    };
    let named = refusals_naming_the_key(
        stack,
        outcome,
        "migrate.toml",
        "bad-migrate",
        &cases,
        status,
    )
    .await?;
    outcome.figure("bad migrate.toml named", format!("{named}/{}", cases.len()));
    Ok(())
}

/// Malformed stack files: `local-alb` exits 2 naming the file and the key.
async fn malformed_stacks(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let good = std::fs::read_to_string(&stack.stack_file)?;
    let mut cases = edited(
        &good,
        &[
            (
                "unknown key",
                "[listener]",
                "[listener]\nbogus_listener_key = 1",
                "bogus_listener_key",
            ),
            (
                "interval below 5 s",
                "interval_seconds = 5",
                "interval_seconds = 1",
                "interval_seconds",
            ),
            ("priority 0", "priority = 99", "priority = 0", "priority"),
        ],
    );
    cases.push(("not TOML", format!("{good}\n[[rules]\n"), "rules"));
    let start = async |path: &Path, index| {
        let state_dir = stack.file(&format!("bad-stack-state-{index}"));
        run_alb(stack, path, &state_dir, &format!("bad-stack-{index}")).await
    };
    let named =
        refusals_naming_the_key(stack, outcome, "stack file", "bad-stack", &cases, start).await?;
    outcome.figure("bad stack files named", format!("{named}/{}", cases.len()));
    Ok(())
}

/// Corrupt state files: `local-alb` refuses to start (exit 3) and names the file.
async fn corrupt_state(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let saved = std::fs::read_to_string(stack.state_dir.join("state.json"))
        .context("the running ALB has no state.json")?;
    let cases = [
        ("garbage", "{ this is not json".to_owned()),
        (
            "truncated",
            String::from_utf8_lossy(&saved.as_bytes()[..saved.len() / 2]).into_owned(),
        ),
        ("empty", String::new()),
    ];
    let mut refused = 0;
    for (index, (label, text)) in cases.iter().enumerate() {
        let state_dir = stack.file(&format!("corrupt-state-{index}"));
        std::fs::create_dir_all(&state_dir)?;
        write(&state_dir.join("state.json"), text)?;
        let (code, output) = run_alb(
            stack,
            &stack.stack_file,
            &state_dir,
            &format!("corrupt-state-{index}"),
        )
        .await?;
        if outcome.check(
            code == Some(3) && output.contains("state.json") && output.contains("--reset"),
            || format!("{label} state file: exit {code:?}, expected 3 naming state.json and --reset: {}", output.trim_end()),
        ) {
            refused += 1;
        }
    }
    outcome.figure(
        "corrupt state refused",
        format!("{refused}/{}", cases.len()),
    );
    Ok(())
}

/// Starts a second `local-alb` that must refuse to start; returns its exit
/// code and output (it is killed if it starts after all).
async fn run_alb(
    stack: &Stack,
    stack_file: &Path,
    state_dir: &Path,
    log_name: &str,
) -> anyhow::Result<(Option<i32>, String)> {
    let mut command = Command::new(stack.binaries.path(ALB));
    command
        .arg("--stack")
        .arg(stack_file)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"]);
    let mut process = Process::spawn(ALB, command, &stack.file(&format!("{log_name}.log")))?;
    match process.wait(Duration::from_secs(10)).await {
        Ok(status) => Ok((status.code(), process.output())),
        Err(_) => {
            process.kill9().await;
            Ok((None, format!("it started: {}", process.output())))
        }
    }
}

/// Whether a status is the one a case expects.
type Expected = fn(Option<u16>) -> bool;

/// Oversized request lines and headers get AWS's 414 and 400, many small
/// headers are not refused by the ALB (AWS has no count limit: the target
/// answers), and the ALB keeps serving (docs/data-plane.md).
async fn oversized(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let long = "a".repeat(128 * 1024);
    let cases: [(&str, String, Expected, &str); 3] = [
        (
            "request line",
            format!("GET /api/users/{long} HTTP/1.1\r\nHost: x\r\n\r\n"),
            |status| status == Some(414),
            "414",
        ),
        (
            "header",
            format!("GET /api/users HTTP/1.1\r\nHost: x\r\nX-Big: {long}\r\n\r\n"),
            |status| status == Some(400),
            "400",
        ),
        (
            "header count",
            format!(
                "GET /api/users HTTP/1.1\r\nHost: x\r\n{}\r\n",
                "X-H: 1\r\n".repeat(2000)
            ),
            |status| status.is_some(),
            "an answer (forwarded: the target decides)",
        ),
    ];
    let mut refused = Vec::new();
    for (label, request, expected, expectation) in &cases {
        let status = raw_status(stack.data_address, request.as_bytes()).await?;
        outcome.check(expected(status), || {
            format!("oversized {label}: answered {status:?}, expected {expectation}")
        });
        refused.push(format!(
            "{label} {}",
            status.map_or("none".into(), |s| s.to_string())
        ));
    }
    let ok = reqwest::get(format!("{}/api/users/1", stack.data_url()))
        .await?
        .status();
    outcome.check(ok == 200, || {
        format!("after the oversized requests GET /api/users/1 answered {ok}")
    });
    outcome.figure("oversized answers", refused.join(", "));
    Ok(())
}

/// The first status code the server answers `request` with, if any.
async fn raw_status(address: SocketAddr, request: &[u8]) -> anyhow::Result<Option<u16>> {
    let mut stream = TcpStream::connect(address).await?;
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(request).await;
    let mut buffer = vec![0; 4096];
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while read < buffer.len() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer[read..])).await
        {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                read += n;
                if buffer[..read].windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&buffer[..read]);
    Ok(text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok()))
}

/// Idle keep-alive connections are closed after the idle timeout, whether a
/// request was sent on them or not.
async fn idle(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let limit = CLIENT_IDLE_TIMEOUT + Duration::from_secs(5);
    let mut closed_after = Vec::new();
    for after_request in [false, true] {
        let mut stream = TcpStream::connect(stack.data_address).await?;
        if after_request {
            stream
                .write_all(b"GET /api/threads/2 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await?;
        }
        let idle_since = Instant::now();
        let mut buffer = vec![0; 4096];
        let closed = loop {
            match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue,
                Err(_) => break false,
            }
        };
        let seconds = idle_since.elapsed().as_secs_f64();
        let label = if after_request {
            "after a request"
        } else {
            "without a request"
        };
        outcome.check(closed, || {
            format!("an idle connection {label} was still open after {limit:?}")
        });
        closed_after.push(format!("{label} {seconds:.1} s"));
    }
    outcome.figure(
        &format!("idle closed (timeout {} s)", CLIENT_IDLE_TIMEOUT.as_secs()),
        closed_after.join(", "),
    );
    Ok(())
}
