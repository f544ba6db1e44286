//! `migrate demo`, black-box: the real binary starts the real local ALB and
//! forum servers (built beside it first, as `LocalStack` builds them).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIGRATE: &str = env!("CARGO_BIN_EXE_migrate");

/// Builds the servers the demo starts, beside `migrate` (a no-op when fresh).
fn require_siblings() {
    crate::support::stack_binaries();
}

/// A fast demo: short steps and pauses.
fn demo_command(cwd: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(MIGRATE);
    command
        .current_dir(cwd)
        .args(["demo", "--interval", "1s", "--pause", "1s", "--rate", "200"])
        .args(extra)
        .env_remove("RUST_LOG");
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The addresses the demo announced on stderr (`demo: NAME on http://ADDR`
/// and the local ALB's two listeners).
fn announced_addresses(stderr: &str) -> Vec<SocketAddr> {
    stderr
        .split("http://")
        .skip(1)
        .filter_map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .collect()
}

/// The demo's temporary directory, from `(files in DIR)`.
fn announced_dir(stderr: &str) -> Option<PathBuf> {
    let start = stderr.find("(files in ")? + "(files in ".len();
    let end = start + stderr[start..].find(')')?;
    Some(PathBuf::from(&stderr[start..end]))
}

fn assert_all_stopped(stderr: &str) {
    let addresses = announced_addresses(stderr);
    assert!(
        addresses.len() >= 6,
        "servers and listeners announced: {stderr}"
    );
    for address in addresses {
        assert!(
            TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_err(),
            "{address} still accepts connections after the demo ended"
        );
    }
    let dir = announced_dir(stderr).expect("the demo names its directory");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// The whole walkthrough, once (about 30 s): with `--keep-running`, so that
/// the same run also shows the stack left to drive by hand, until Ctrl-C.
#[test]
fn the_demo_migrates_every_route_without_a_failed_or_different_response() {
    require_siblings();
    let cwd = tempfile::tempdir().expect("a temporary directory");
    let report = cwd.path().join("report.html");
    let mut demo = Running::start(
        cwd.path(),
        &[
            "--report",
            report.to_str().expect("utf-8"),
            "--keep-running",
        ],
    );
    demo.wait_for("Ctrl-C stops it");
    let (stdout, stderr) = (demo.stdout.clone(), demo.stderr.clone());
    // The walkthrough ran the real commands.
    for command in [
        "$ migrate init",
        "$ migrate status",
        "$ migrate verify --all",
        "$ migrate shift users --steps 10,50,100 --interval 1s",
        "$ migrate shift threads --steps 100",
        "$ migrate shift posts --steps 100",
        "$ migrate rollback posts",
    ] {
        assert!(stdout.contains(command), "{command} missing:\n{stdout}");
    }
    assert!(
        stderr.contains("users: step 3/3: 100% on the service"),
        "{stderr}"
    );
    // It ends with a retire: a case-variant leak found, fixed, gone, retired.
    let ending = stdout
        .split("$ migrate leaks users --from-alb-log ")
        .nth(1)
        .expect("a leak report");
    assert!(
        ending.contains("/API/USERS/1  ×5") && ending.contains("\"/API/USERS*\""),
        "{ending}"
    );
    assert!(
        stdout.contains("paths = [\"/api/users*\", \"/API/USERS*\"]"),
        "{stdout}"
    );
    let after_fix = stdout
        .split(" --since ")
        .nth(1)
        .expect("a leak report after the fix");
    assert!(after_fix.contains("no leaks"), "{after_fix}");
    assert!(
        stdout.contains("users: retired: the service alone serves"),
        "{stdout}"
    );
    // The summary: every route's requests, none failed, none differed.
    let summary = stdout.split("\nSummary\n").nth(1).expect("a summary");
    for route in ["users", "threads", "posts"] {
        assert!(
            summary.lines().any(|line| line.starts_with(route)),
            "{route} missing from the summary:\n{summary}"
        );
    }
    assert!(
        summary.contains(" 0 failed, 0 differed from the monolith, 0 load-balancer errors"),
        "{summary}"
    );
    assert!(summary.contains("PASS"), "{summary}");
    // Every spelling the leak report found is counted (the clients'
    // `/API/USERS/1`, and any other it found).
    let retired = summary
        .lines()
        .find(|line| line.starts_with("users retired: "))
        .unwrap_or_else(|| panic!("no retire line:\n{summary}"));
    assert!(
        retired.contains(" requests had leaked to the monolith (")
            && retired.contains("5 spelled /API/USERS/1"),
        "{retired}"
    );
    // Users and threads ended on their services, posts back on the monolith.
    let row = |route: &str| -> Vec<u64> {
        summary
            .lines()
            .find(|line| line.starts_with(route))
            .expect("a row")
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().expect("a count"))
            .collect()
    };
    for route in ["users", "threads", "posts"] {
        let counts = row(route);
        assert!(counts[0] > 100, "{route} sent {counts:?}");
        assert!(
            counts[1] > 0 && counts[2] > 0,
            "{route} went to both: {counts:?}"
        );
    }
    // The report: one series per route and a marker per step.
    let page = std::fs::read_to_string(&report).expect("the report was written");
    assert_eq!(page.matches("<polyline data-route=").count(), 3, "{page}");
    for route in ["users", "threads", "posts"] {
        assert!(page.contains(&format!("data-route=\"{route}\"")));
    }
    assert_eq!(page.matches("data-step=").count(), 11, "{page}");
    assert_eq!(page.matches("data-step=\"retire users\"").count(), 1);
    assert_eq!(page.matches("data-step=\"rollback posts\"").count(), 1);
    assert!(!page.contains("<script"));
    // Each gradual step's metric gate values (users 10% -> 50% -> 100%).
    assert_eq!(
        page.matches("<tr data-gate=\"users pass\">").count(),
        2,
        "{page}"
    );
    assert!(
        summary.contains("Metric gates (the load balancer's CloudWatch metrics"),
        "{summary}"
    );
    // The weights `migrate` set, as read from the rules, in order per route.
    let weights: Vec<&str> = page
        .split("data-weight=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let of = |route: &str| -> Vec<&str> {
        weights
            .iter()
            .filter(|w| w.starts_with(route))
            .copied()
            .collect()
    };
    assert_eq!(
        of("users"),
        ["users 10", "users 50", "users 100"],
        "{weights:?}"
    );
    assert_eq!(of("threads"), ["threads 100"], "{weights:?}");
    assert_eq!(of("posts"), ["posts 100", "posts 0"], "{weights:?}");
    // --keep-running: the stack stays up; the printed command works as printed.
    let status = demo.wait_for("--config ");
    let command: Vec<&str> = status.split_whitespace().collect();
    assert_eq!(command.last(), Some(&"status"), "{status}");
    let output = Command::new(command[0])
        .args(&command[1..])
        .output()
        .expect("migrate runs");
    let (by_hand, by_hand_err) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{by_hand}{by_hand_err}");
    assert!(
        by_hand.contains("on the service (rule in front at priority 1)"),
        "{by_hand}"
    );
    demo.wait_for("aws elbv2 describe-rules --listener-arn arn:aws:elasticloadbalancing:");
    assert_eq!(demo.interrupt(), Some(0), "{}", demo.seen);
    assert_all_stopped(&demo.stderr);
}

/// A demo running in the background, its stdout and stderr read line by line.
struct Running {
    child: Child,
    /// Each line, and whether it came from stderr.
    lines: mpsc::Receiver<(bool, String)>,
    /// Both streams as the lines arrived.
    seen: String,
    stdout: String,
    stderr: String,
}

impl Running {
    fn start(cwd: &Path, extra: &[&str]) -> Running {
        let mut child = demo_command(cwd, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("migrate starts");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let readers: [(bool, Box<dyn std::io::Read + Send>); 2] =
            [(false, Box::new(stdout)), (true, Box::new(stderr))];
        for (is_stderr, reader) in readers {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    if sender.send((is_stderr, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            lines,
            seen: String::new(),
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    fn keep(&mut self, is_stderr: bool, line: &str) {
        let stream = if is_stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        for text in [&mut self.seen, stream] {
            text.push_str(line);
            text.push('\n');
        }
    }

    /// Reads output until a line contains `needle`; returns that line.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((is_stderr, line)) => {
                    self.keep(is_stderr, &line);
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(err) => panic!("no `{needle}` ({err}):\n{}", self.seen),
            }
        }
    }

    /// Sends SIGINT (Ctrl-C), waits for the exit; returns its code.
    fn interrupt(&mut self) -> Option<i32> {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on the child this test spawned (not yet reaped).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let status = self.child.wait().expect("migrate exits");
        while let Ok((is_stderr, line)) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.keep(is_stderr, &line);
        }
        status.code()
    }
}

/// A failed assertion must not leave the demo and its stack running: Ctrl-C
/// lets it stop what it started.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait()
            && let Ok(pid) = i32::try_from(self.child.id())
        {
            // SAFETY: kill(2) on the child this test spawned, still running.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
            let _ = self.child.wait();
        }
    }
}

#[test]
fn ctrl_c_stops_everything_the_demo_started() {
    require_siblings();
    let cwd = tempfile::tempdir().expect("a temporary directory");
    let mut demo = Running::start(cwd.path(), &[]);
    demo.wait_for("step 4/8");
    let code = demo.interrupt();
    assert_eq!(code, Some(1), "{}", demo.seen);
    assert!(demo.seen.contains("interrupted (Ctrl-C)"), "{}", demo.seen);
    assert_all_stopped(&demo.seen);
}

#[test]
fn a_missing_binary_is_named_with_how_to_build_it() {
    let empty = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(MIGRATE)
        .args(["demo", "--bin-dir"])
        .arg(empty.path())
        .output()
        .expect("migrate runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("migrate: the demo starts"), "{stderr}");
    assert!(stderr.contains("local-alb are missing"), "{stderr}");
    assert!(stderr.contains("cargo build --release"), "{stderr}");
}

#[test]
fn a_bad_report_path_is_refused_before_the_demo_starts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let started = Instant::now();
    let output = Command::new(MIGRATE)
        .args(["demo", "--report"])
        .arg(dir.path().join("no-such-dir/demo.html"))
        .output()
        .expect("migrate runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no-such-dir does not exist; create it or pick another path"),
        "{stderr}"
    );
    assert!(!stderr.contains("demo: starting"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
    let output = Command::new(MIGRATE)
        .args(["demo", "--report"])
        .arg(dir.path())
        .output()
        .expect("migrate runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
}

#[test]
fn bad_steps_are_a_usage_error() {
    let output = Command::new(MIGRATE)
        .args(["demo", "--steps", "50,10"])
        .output()
        .expect("migrate runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--steps: steps must increase"), "{stderr}");
}
