//! Scenario 7: the control API refuses unsigned and wrongly signed requests
//! and binds loopback by default; each service answers 404 for the other
//! resources; no secret shows up in any log line of the run.

use std::time::Duration;

use tokio::process::Command;

use crate::Profile;
use crate::report::Outcome;
use crate::stack::{ALB, Process, Stack, write};

/// The secret `migrate` signs with to be refused.
const WRONG_SECRET: &str = "not-the-secret-access-key";

use super::bad_input::fake_authorization;

/// Paths of each route's resource, asked of the other services.
const RESOURCE_PATHS: [(&str, &[&str]); 3] = [
    ("users", &["/api/users", "/api/users/1"]),
    ("threads", &["/api/threads", "/api/threads/2"]),
    (
        "posts",
        &[
            "/api/posts",
            "/api/posts/in-thread/1",
            "/api/posts/by-user/1",
        ],
    ),
];

pub async fn run(stack: &mut Stack, _: &Profile, outcome: &mut Outcome) -> anyhow::Result<()> {
    signatures(stack, outcome).await?;
    loopback(stack, outcome).await?;
    service_boundaries(stack, outcome).await?;
    secrets_in_logs(stack, outcome)?;
    Ok(())
}

async fn signatures(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let body = "Action=DescribeLoadBalancers&Version=2015-12-01";
    let unsigned = client
        .post(stack.control_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?
        .status();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let wrong = client
        .post(stack.control_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-amz-date", amz_date(now.as_secs()))
        .header("authorization", fake_authorization(&stack.access_key_id))
        .body(body)
        .send()
        .await?
        .status();
    outcome.check(unsigned == 403, || {
        format!("an unsigned request got {unsigned}, expected 403")
    });
    outcome.check(wrong == 403, || {
        format!("a wrongly signed request got {wrong}, expected 403")
    });
    // A real SigV4 signature made with the wrong secret, by the real client.
    let settings = std::fs::read_to_string(&stack.config)?;
    let wrong_secret = stack.file("wrong-secret-migrate.toml");
    write(
        &wrong_secret,
        &settings.replace(&stack.secret_access_key, WRONG_SECRET),
    )?;
    let process = stack.spawn_migrate_with(&wrong_secret, &["status"], &[])?;
    let run = crate::stack::finish(process, &["status"], Duration::from_secs(60)).await?;
    let refused = run.code == Some(1)
        && (run.output.contains("SignatureDoesNotMatch") || run.output.contains("403"));
    outcome.check(refused, || {
        format!(
            "migrate with a wrong secret: exit {:?}: {}",
            run.code,
            run.output.trim_end()
        )
    });
    outcome.figure(
        "unsigned / wrong signature / wrong secret",
        format!(
            "{} / {} / {}",
            unsigned.as_u16(),
            wrong.as_u16(),
            if refused { "403" } else { "accepted?" }
        ),
    );
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time.
fn amz_date(unix: u64) -> String {
    let days = unix / 86_400;
    let seconds = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// The control listener's default address is loopback, and a non-loopback
/// one is refused without `--allow-remote-control`.
async fn loopback(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let help = std::process::Command::new(stack.binaries.path(ALB))
        .arg("--help")
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    let default_loopback = help.contains("[default: 127.0.0.1:9100]");
    outcome.check(default_loopback, || {
        "local-alb --help does not show the control listener's default 127.0.0.1:9100".into()
    });
    let mut command = Command::new(stack.binaries.path(ALB));
    command
        .arg("--stack")
        .arg(&stack.stack_file)
        .arg("--state-dir")
        .arg(stack.file("remote-control-state"))
        .args(["--listen", "127.0.0.1:0", "--control-listen", "0.0.0.0:0"]);
    let mut process = Process::spawn(ALB, command, &stack.file("remote-control.log"))?;
    let code = match process.wait(Duration::from_secs(10)).await {
        Ok(status) => status.code(),
        Err(_) => {
            process.kill9().await;
            None
        }
    };
    outcome.check(code == Some(2), || {
        format!("--control-listen 0.0.0.0:0 without --allow-remote-control: exit {code:?}, expected 2: {}", process.output())
    });
    outcome.figure(
        "control default loopback / 0.0.0.0 refused",
        format!("{default_loopback} / exit {code:?}"),
    );
    Ok(())
}

/// Each service answers 404 `Not Found` for the others' resources.
async fn service_boundaries(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (service, _) in RESOURCE_PATHS {
        for (owner, paths) in RESOURCE_PATHS {
            if owner == service {
                continue;
            }
            for path in paths {
                let response = client
                    .get(format!("{}{path}", stack.server_url(service)))
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let body = response.text().await?;
                outcome.check(status == 404 && body == "Not Found", || {
                    format!("{service} answered GET {path} with {status} {body:?}, expected 404 Not Found")
                });
                checked += 1;
            }
        }
    }
    outcome.figure("foreign paths 404", checked);
    Ok(())
}

/// No log line of the run holds the secret access key or a request signature.
fn secrets_in_logs(stack: &Stack, outcome: &mut Outcome) -> anyhow::Result<()> {
    let forbidden = [
        stack.secret_access_key.as_str(),
        WRONG_SECRET,
        "Signature=",
        "AWS4-HMAC-SHA256 Credential",
    ];
    let (mut files, mut lines, mut leaks) = (0, 0, Vec::new());
    for log in stack.logs() {
        let text = std::fs::read_to_string(&log)?;
        files += 1;
        for line in text.lines() {
            lines += 1;
            if let Some(secret) = forbidden.iter().find(|s| line.contains(*s))
                && leaks.len() < 5
            {
                leaks.push(format!("{}: {secret}", log.display()));
            }
        }
    }
    outcome.figure("log files / lines scanned", format!("{files} / {lines}"));
    outcome.figure("secret leaks", leaks.len());
    outcome.check(leaks.is_empty(), || format!("secrets in logs: {leaks:?}"));
    Ok(())
}
