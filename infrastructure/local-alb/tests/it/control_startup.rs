//! The real `local-alb` binary: startup lines, graceful stop, and refusing to
//! start on a bad stack file, a corrupt state file or an exposed control port.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_local-alb");

fn command(state_dir: &Path, stack: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--stack")
        .arg(stack)
        .env("RUST_LOG", "info");
    command
}

/// Runs a start that must fail, with a deadline: one that is still running
/// after 30 s has started after all, and is killed.
fn run_failing(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("local-alb runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("waitable").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("killed");
            panic!(
                "it should refuse to start, but it ran: {}",
                stderr_of(&output)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("local-alb output");
    assert!(!output.status.success(), "it should refuse to start");
    output
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A started binary, killed if the test fails before stopping it.
struct Started(Child);

impl Started {
    fn spawn(command: &mut Command) -> Started {
        Started(command.spawn().expect("local-alb starts"))
    }

    /// Sends SIGTERM and returns the exit status and stderr.
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.0.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let mut stderr = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
        }
        let status = self.0.wait().unwrap();
        (status.code(), stderr)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads the two listener lines from the child's stdout.
fn listener_lines(child: &mut Child) -> (String, String) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let data = lines.next().expect("a first line").expect("utf-8");
    let control = lines.next().expect("a second line").expect("utf-8");
    (data, control)
}

#[test]
fn prints_both_listeners_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Started::spawn(
        command(dir.path(), &common::stack_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let (data, control) = listener_lines(&mut child.0);
    let data_url = data
        .strip_prefix("data listener on ")
        .expect(&data)
        .to_owned();
    let control_url = control
        .strip_prefix("control listener on ")
        .expect(&control)
        .to_owned();
    assert!(data_url.starts_with("http://127.0.0.1:"), "{data_url}");
    assert!(
        control_url.starts_with("http://127.0.0.1:"),
        "{control_url}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(common::signed_post(
        &control_url,
        &[
            ("Action", "DescribeLoadBalancers"),
            ("Version", "2015-12-01"),
        ],
        None,
    ));
    assert_eq!(answer.status, 200, "{answer:?}");

    let (code, _) = child.terminate();
    assert_eq!(code, Some(0), "SIGTERM stops it cleanly");
}

#[test]
fn a_stack_file_error_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(common::stack_path()).unwrap();
    let cases = [
        (
            original.replace(
                "actions = [{ forward = \"monolith\" }]",
                "actions = [{ forward = \"nobody\" }]",
            ),
            "rules[0].actions[0].forward",
        ),
        (
            format!(
                "{original}\n[[rules]]\npriority = 99\nconditions = [{{ field = \"path-pattern\", values = [\"/x\"] }}]\nactions = [{{ forward = \"users\" }}]\n"
            ),
            "rules[1].priority",
        ),
        (original.replace("port = 80", "port = 0"), "listener.port"),
        (
            original.replace("port = 80", "port = 70000"),
            "listener.port = 70000",
        ),
        (
            original.replace(
                "scheme = \"internet-facing\"",
                "scheme = \"internet-facing\"\ncolour = \"blue\"",
            ),
            "colour",
        ),
        (
            original.replace(
                "targets = [\"127.0.0.1:3001\"]",
                "targets = [\"127.0.0.1\"]",
            ),
            "target_groups[1].targets[0]",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let stack = dir.path().join(format!("stack-{i}.toml"));
        std::fs::write(&stack, text).unwrap();
        let output = run_failing(command(&dir.path().join(format!("state-{i}")), &stack));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{key}: {}",
            stderr_of(&output)
        );
        let stderr = stderr_of(&output);
        assert!(stderr.contains("local-alb: stack file"), "{stderr}");
        assert!(stderr.contains(key), "case {i} should name {key}: {stderr}");
    }
}

#[test]
fn a_corrupt_state_file_refuses_to_start_until_reset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.json"), "{ this is not json").unwrap();
    let output = run_failing(command(dir.path(), &common::stack_path()));
    assert_eq!(output.status.code(), Some(3));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&dir.path().join("state.json").display().to_string()),
        "{stderr}"
    );
    assert!(
        stderr.contains("corrupt") && stderr.contains("--reset"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state.json")).unwrap(),
        "{ this is not json",
        "the corrupt file is left for inspection"
    );

    let mut child = Started::spawn(
        command(dir.path(), &common::stack_path())
            .arg("--reset")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let (data, _) = listener_lines(&mut child.0);
    assert!(data.starts_with("data listener on "), "{data}");
    assert_eq!(child.terminate().0, Some(0));
}

#[test]
fn an_exposed_control_listener_needs_an_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BINARY);
    command
        .args(["--listen", "127.0.0.1:0", "--control-listen", "0.0.0.0:0"])
        .arg("--state-dir")
        .arg(dir.path());
    let output = run_failing(command);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("--allow-remote-control"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn help_explains_flags_credentials_and_exit_codes() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--stack",
        "--state-dir",
        "--reset",
        "--listen",
        "--control-listen",
        "EXIT CODES",
        "aws elbv2",
        "AKIAFICUSLOCAL000000",
    ] {
        assert!(help.contains(needle), "--help should mention {needle}");
    }
}

#[test]
fn data_plane_options_come_from_flags_or_local_alb_variables() {
    use clap::Parser;
    use local_alb::DataPlaneOptions;
    use local_alb::settings::{Cli, Settings};
    use std::time::Duration;

    let parse = |args: &[&str]| -> Settings {
        Cli::try_parse_from(std::iter::once("local-alb").chain(args.iter().copied()))
            .expect("valid command line")
            .into()
    };
    let defaults = parse(&[]).data_plane;
    // The variables may be set around the test run; only unset ones show defaults.
    if std::env::vars().all(|(name, _)| !name.starts_with("LOCAL_ALB_")) {
        assert_eq!(defaults, DataPlaneOptions::default());
        assert_eq!(defaults.target_timeout, Duration::from_secs(60));
        assert_eq!(defaults.deregistration_delay, Duration::from_secs(5));
        assert_eq!(defaults.head.idle_timeout, Duration::from_secs(60));
    }
    let set = parse(&[
        "--target-timeout",
        "0.5",
        "--deregistration-delay",
        " 300 ",
        "--client-idle-timeout",
        "4",
        "--worker-threads",
        "3",
    ])
    .data_plane;
    assert_eq!(set.target_timeout, Duration::from_millis(500));
    assert_eq!(set.deregistration_delay, Duration::from_secs(300));
    assert_eq!(set.head.idle_timeout, Duration::from_secs(4));
    assert_eq!(set.worker_threads, 3);

    // The variables reach the binary through clap: a bad one is a usage error
    // (exit 2) that says what was expected.
    let dir = tempfile::tempdir().unwrap();
    for (name, value, expected) in [
        (
            "LOCAL_ALB_TARGET_TIMEOUT_SECONDS",
            "soon",
            "a bare number is seconds",
        ),
        (
            "LOCAL_ALB_DEREGISTRATION_DELAY_SECONDS",
            "-1",
            "a bare number is seconds",
        ),
        (
            "LOCAL_ALB_WORKER_THREADS",
            "0",
            "a whole number of threads above 0",
        ),
        ("LOCAL_ALB_ACCESS_LOG_COMPRESSION", "10", "0..=9"),
    ] {
        let mut command = Command::new(BINARY);
        command
            .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(dir.path())
            .env(name, value);
        let output = run_failing(command);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("'{value}'")) && stderr.contains(expected),
            "{name}={value}: {stderr}"
        );
    }
}

#[test]
fn help_lists_the_local_alb_variables() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "LOCAL_ALB_TARGET_TIMEOUT_SECONDS",
        "LOCAL_ALB_DEREGISTRATION_DELAY_SECONDS",
        "LOCAL_ALB_CLIENT_IDLE_TIMEOUT_SECONDS",
        "LOCAL_ALB_WORKER_THREADS",
    ] {
        assert!(help.contains(needle), "--help should list {needle}: {help}");
    }
}

#[test]
fn works_anywhere_with_the_built_in_stack() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Started::spawn(
        Command::new(BINARY)
            .current_dir(dir.path())
            .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (data, _) = listener_lines(&mut child.0);
    assert!(data.starts_with("data listener on "), "{data}");
    let (code, stderr) = child.terminate();
    assert_eq!(code, Some(0));
    assert!(stderr.contains("built-in copy"), "{stderr}");
    assert!(dir.path().join(".ficus/local-alb/state.json").is_file());
}

#[test]
fn an_address_in_use_exits_1_before_touching_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let mut command = Command::new(BINARY);
    command
        .args(["--listen", "127.0.0.1:0", "--control-listen", &address])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--stack")
        .arg(common::stack_path());
    let output = run_failing(command);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&format!("cannot listen on {address} (control listener)")),
        "{stderr}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "the state directory is left alone"
    );
}

/// Starts `local-alb` on `state_dir` and waits until it prints its listeners.
fn start_on(state_dir: &Path, stack: &Path, extra: &[&str]) -> Started {
    start_with_control_url(state_dir, stack, extra).0
}

/// As [`start_on`]; also the control listener's URL.
fn start_with_control_url(state_dir: &Path, stack: &Path, extra: &[&str]) -> (Started, String) {
    let mut child = Started::spawn(
        command(state_dir, stack)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (data, control) = listener_lines(&mut child.0);
    assert!(data.starts_with("data listener on "), "{data}");
    let control_url = control
        .strip_prefix("control listener on ")
        .expect(&control)
        .to_owned();
    (child, control_url)
}

#[test]
fn a_second_instance_on_the_same_state_dir_exits_4_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let first = start_on(&state_dir, &common::stack_path(), &[]);
    let output = run_failing(command(&state_dir, &common::stack_path()));
    assert_eq!(output.status.code(), Some(4));
    let stderr = stderr_of(&output);
    for needle in [
        format!("local-alb: the state directory {}", state_dir.display()),
        format!("in use by another local-alb (PID {})", first.0.id()),
        "--state-dir".to_owned(),
    ] {
        assert!(stderr.contains(&needle), "missing {needle:?} in {stderr}");
    }
    // The first one is untouched and still stops cleanly.
    assert_eq!(first.terminate().0, Some(0));
    // Once it has stopped, the directory is free again.
    let next = start_on(&state_dir, &common::stack_path(), &[]);
    assert_eq!(next.terminate().0, Some(0));
}

#[test]
fn a_killed_instance_does_not_block_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start_on(dir.path(), &common::stack_path(), &[]);
    first.0.kill().unwrap(); // SIGKILL: no chance to clean up
    first.0.wait().unwrap();
    assert!(
        dir.path().join("local-alb.lock").is_file(),
        "the file stays"
    );
    let next = start_on(dir.path(), &common::stack_path(), &[]);
    assert_eq!(next.terminate().0, Some(0));
}

#[test]
fn an_edited_stack_file_is_warned_about_naming_the_differences_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let stack = common::write_stack(dir.path(), &[("web", &[3000]), ("old", &[3001])]);
    let (code, stderr) = start_on(&state_dir, &stack, &[]).terminate();
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("warning"), "{stderr}");

    // The same file again, after a change through the API: no warning (the
    // API changes the saved state, not the stack file).
    let (alb, control_url) = start_with_control_url(&state_dir, &stack, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let described = runtime.block_on(common::signed_post(
        &control_url,
        &[
            ("Action", "DescribeTargetGroups"),
            ("Version", "2015-12-01"),
            ("Names.member.1", "web"),
        ],
        None,
    ));
    let web = described.element("TargetGroupArn").expect("web's ARN");
    let registered = runtime.block_on(common::signed_post(
        &control_url,
        &[
            ("Action", "RegisterTargets"),
            ("Version", "2015-12-01"),
            ("TargetGroupArn", web),
            ("Targets.member.1.Id", "127.0.0.1"),
            ("Targets.member.1.Port", "3999"),
        ],
        None,
    ));
    assert_eq!(registered.status, 200, "{registered:?}");
    assert_eq!(alb.terminate().0, Some(0));
    let (_, stderr) = start_on(&state_dir, &stack, &[]).terminate();
    assert!(!stderr.contains("warning"), "{stderr}");

    // A target group added to the file, one removed: the saved state wins,
    // loudly.
    common::write_stack(dir.path(), &[("web", &[3000]), ("search", &[3002])]);
    let (code, stderr) = start_on(&state_dir, &stack, &[]).terminate();
    assert_eq!(code, Some(0));
    for needle in [
        " WARN ",
        "local-alb: warning: the stack file",
        "differs from the saved state",
        "target group 'search' is in the stack file but not in the saved state",
        "target group 'old' is in the saved state but not in the stack file",
        "restart with --reset",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }

    // --reset applies the file, and the warning stops.
    let (_, stderr) = start_on(&state_dir, &stack, &["--reset"]).terminate();
    assert!(!stderr.contains("warning"), "{stderr}");
    let (_, stderr) = start_on(&state_dir, &stack, &[]).terminate();
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// A field of `/proc/PID/limits`' "Max open files" line: 0 soft, 1 hard.
fn open_file_limit(pid: &str, field: usize) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    line["Max open files".len()..]
        .split_whitespace()
        .nth(field)
        .expect("soft and hard")
        .to_owned()
}

/// Started with a soft open-file limit of 1,024 under a higher hard one (as
/// `ulimit -Sn 1024` leaves a shell), it runs with the hard limit and logs
/// both; its listeners accept a queue of at least 1,024 connections (what
/// `ss` shows as a listener's Send-Q).
#[test]
fn it_raises_the_open_file_limit_and_listens_with_a_long_queue() {
    let hard = open_file_limit("self", 1);
    assert!(
        hard == "unlimited" || hard.parse::<u64>().expect("a number") > 1024,
        "this test needs a hard open-file limit above 1024, not {hard}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("bash");
    command
        .args(["-c", "ulimit -Sn 1024 && exec \"$0\" \"$@\"", BINARY])
        .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.path())
        .arg("--stack")
        .arg(common::stack_path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Started::spawn(&mut command);
    let (data, _) = listener_lines(&mut child.0);
    let pid = child.0.id().to_string();
    assert_eq!(open_file_limit(&pid, 0), hard, "the soft limit is raised");
    let port = data.rsplit(':').next().expect("a port");
    let listening = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let listing = String::from_utf8_lossy(&listening.stdout);
    let backlog: u32 = listing
        .split_whitespace()
        .nth(2)
        .and_then(|queue| queue.parse().ok())
        .unwrap_or_else(|| panic!("a listener line from ss: {listing:?}"));
    assert!(backlog >= 1024, "accept queue {backlog}: {listing}");
    let (code, stderr) = child.terminate();
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("soft_at_start=1024") && stderr.contains(&format!("hard={hard}")),
        "both limits are logged: {stderr}"
    );
}

/// The fault options' variables, removed around a test that sets its own.
const FAULT_VARIABLES: [&str; 5] = [
    "LOCAL_ALB_PROPAGATION",
    "LOCAL_ALB_NODES",
    "LOCAL_ALB_THROTTLE",
    "LOCAL_ALB_TRANSIENT_ERRORS",
    "LOCAL_ALB_LOST_ANSWERS",
];

/// `stack` with a `[faults]` section of `lines`, written as `name` in `dir`.
fn stack_with_faults(dir: &Path, name: &str, lines: &str) -> std::path::PathBuf {
    let stack = common::write_stack(dir, &[("web", &[3000])]);
    let text = std::fs::read_to_string(&stack).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}[faults]\n{lines}\n")).unwrap();
    path
}

/// A start that must be refused: its flags, its variable (name and value),
/// its stack file, and what its message says.
type Refusal<'a> = (
    &'a [&'a str],
    Option<(&'a str, &'a str)>,
    &'a Path,
    &'a [&'a str],
);

/// Wrong fault values, as a new user tries them on purpose: each start is
/// refused (exit 2) with the option's own check (a negative value reaches
/// it rather than clap's "unexpected argument"), naming what the value must
/// be, and the variable when the value came from one.
#[test]
fn wrong_fault_options_are_refused_naming_what_they_must_be() {
    let dir = tempfile::tempdir().unwrap();
    let plain = common::write_stack(dir.path(), &[("web", &[3000])]);
    let lost_only = stack_with_faults(dir.path(), "lost.toml", "lost_answers = 0.5");
    let cases: [Refusal; 13] = [
        (
            &["--throttle", "DescribeRules=abc"],
            None,
            &plain,
            &[
                "the throttle rate of 'DescribeRules' must be a number of calls per second above 0, such as DescribeRules=2: `abc` is not a number",
            ],
        ),
        (
            &["--throttle", "DescribeRules=5,DescribeRules=1"],
            None,
            &plain,
            &["'DescribeRules' is given twice (DescribeRules=5 and DescribeRules=1)"],
        ),
        (
            &["--transient-errors", "CreateRule=1,CreateRule=0.5"],
            None,
            &plain,
            &["'CreateRule' is given twice"],
        ),
        (
            &["--propagation", "-1s..2s"],
            None,
            &plain,
            &["the start of `-1s..2s`: `-1s` is negative: a delay is 0s or more"],
        ),
        (
            &["--nodes", "-3"],
            None,
            &plain,
            &["nodes must be a whole number from 1 to 64"],
        ),
        (
            &["--transient-errors", "-0.1"],
            None,
            &plain,
            &["`-0.1` is below 0: write a share from 0 to 1"],
        ),
        (
            &["--propagation", "0s..8h"],
            None,
            &plain,
            &["`0s..8h` goes up to 8h, above the maximum of 10m"],
        ),
        (
            &[],
            Some(("LOCAL_ALB_PROPAGATION", "9s..1s")),
            &plain,
            &[
                "invalid value '9s..1s' in the variable LOCAL_ALB_PROPAGATION (it sets --propagation): `9s..1s` ends before it starts",
            ],
        ),
        (
            &[],
            Some(("LOCAL_ALB_THROTTLE", "Foo=1")),
            &plain,
            &["LOCAL_ALB_THROTTLE names Foo, which this load balancer does not serve"],
        ),
        (
            &["--propagation", "0...8"],
            None,
            &plain,
            &[
                "`0...8` is not a range: write two durations joined by two dots, MIN..MAX, such as 0s..8s",
            ],
        ),
        (
            &["--propagation", "9s..1s"],
            Some(("LOCAL_ALB_PROPAGATION", "0s..1s")),
            &plain,
            &["invalid value '9s..1s' for '--propagation <MIN..MAX>'"],
        ),
        (
            &["--lost-answers", "0.5"],
            None,
            &plain,
            &[
                "--lost-answers needs transient errors: a lost answer is a transient error after the change was applied",
            ],
        ),
        (
            &[],
            None,
            &lost_only,
            &["lost_answers in the stack file's [faults] needs transient errors"],
        ),
    ];
    for (i, (args, variable, stack, needles)) in cases.into_iter().enumerate() {
        let mut command = command(&dir.path().join(format!("state-{i}")), stack);
        for name in FAULT_VARIABLES {
            command.env_remove(name);
        }
        command.args(args);
        if let Some((name, value)) = variable {
            command.env(name, value);
        }
        let output = run_failing(command);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{args:?} {variable:?}: missing {needle:?} in {stderr}"
            );
        }
    }
}

/// A flag or variable replaces the stack file's value as a whole: the
/// startup line says where each value came from and what it replaced, with
/// durations as the user writes them.
#[test]
fn the_startup_line_says_where_each_fault_came_from_and_what_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack_with_faults(
        dir.path(),
        "faults.toml",
        "throttle = \"ModifyRule=2,*=20\"\nnodes = 2",
    );
    let mut command = command(&dir.path().join("state"), &stack);
    for name in FAULT_VARIABLES {
        command.env_remove(name);
    }
    command
        .args(["--throttle", "DescribeRules=5", "--propagation", "0..1"])
        .env("LOCAL_ALB_TRANSIENT_ERRORS", "0.02")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Started::spawn(&mut command);
    listener_lines(&mut child.0);
    let (code, stderr) = child.terminate();
    assert_eq!(code, Some(0));
    let line = "fault injection is on: propagation 0s..1s from --propagation; \
                nodes 2 from the stack file's [faults]; \
                throttle DescribeRules=5 from --throttle (replaces the stack file's ModifyRule=2,*=20); \
                transient errors 0.02 from LOCAL_ALB_TRANSIENT_ERRORS; \
                lost answers 0.5 (default)";
    assert!(stderr.contains(line), "missing {line:?} in {stderr}");
}
