//! `migrate verify` end to end: the real binary against small HTTP servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

/// `(status, content type, body)` for a method and path; status 0 closes the
/// connection without an answer.
type Handler = Arc<dyn Fn(&str, &str) -> (u16, &'static str, String) + Send + Sync>;

/// An HTTP/1.1 server on a free port that answers with `handler`; it lives
/// until the test process ends.
fn serve(
    handler: impl Fn(&str, &str) -> (u16, &'static str, String) + Send + Sync + 'static,
) -> String {
    let handler: Handler = Arc::new(handler);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || answer(stream, &handler));
        }
    });
    url
}

static ANSWERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn answer(stream: TcpStream, handler: &Handler) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut words = request_line.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, content_type, body) = handler(method, target);
        if status == 0 {
            // A handler's way to close the connection without answering.
            return;
        }
        // A Date-like header that differs on every answer, as real servers'
        // does: ignored by default, counted as suppressed.
        let mut response = format!(
            "HTTP/1.1 {status} X\r\ndate: {}\r\n",
            ANSWERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        if !content_type.is_empty() {
            response.push_str(&format!("content-type: {content_type}\r\n"));
        }
        if status != 204 {
            response.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        response.push_str("\r\n");
        if method != "HEAD" {
            response.push_str(&body);
        }
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

const JSON: &str = "application/json; charset=utf-8";

/// A tiny forum: users 1 to 3, 204 for other ids, 404 elsewhere.
fn forum(method: &str, target: &str) -> (u16, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return (405, "text/plain", "Method Not Allowed".into());
    }
    let target = target.split('?').next().unwrap_or_default();
    match target.strip_prefix("/api/users/").map(str::parse::<u32>) {
        Some(Ok(id @ 1..=3)) => (200, JSON, format!(r#"{{"id":{id},"name":"user {id}"}}"#)),
        Some(_) => (204, "", String::new()),
        None if target == "/api/users" => (200, JSON, r#"[{"id":1},{"id":2},{"id":3}]"#.into()),
        None => (404, "text/plain", "Not Found".into()),
    }
}

/// The forum, except that user 2's name is spelt differently.
fn drifted_forum(method: &str, target: &str) -> (u16, &'static str, String) {
    if target == "/api/users/2" {
        return (200, JSON, r#"{"id":2,"name":"User 2"}"#.into());
    }
    forum(method, target)
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A migrate.toml with the given `[monolith]` URL and routes tables.
    fn new(monolith: &str, routes: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[listener]\narn = \"arn:aws:elasticloadbalancing:us-east-1:000000000000:listener/app/ficus-alb/50dc6c495c0c9188/f2f7dc8efc522ab2\"\n\n[monolith]\nbase_url = \"{monolith}\"\n\n{routes}"
        );
        std::fs::write(dir.path().join("migrate.toml"), config).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn verify(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_migrate"))
            .arg("--config")
            .arg(self.path("migrate.toml"))
            .arg("verify")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run migrate")
    }
}

fn users_route(service_url: &str) -> String {
    format!(
        r#"[routes.users]
paths = ["/api/users*"]
target_group = "users"
service_url = "{service_url}"

[routes.users.verify]
requests = ["/api/users", "/api/users/{{id}}", "HEAD /api/users/{{id}}", "POST /api/users"]
values.id = ["1..=4", "01", "abc"]
"#
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that `migrate` exited with `code`; the message shows its output.
#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}{}",
        stdout(output),
        stderr(output)
    );
}

/// Asserts that `text` contains `needle`; the message shows `text`.
#[track_caller]
fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text}");
}

/// Asserts that `text` starts with `prefix`; the message shows `text`.
#[track_caller]
fn assert_starts_with(text: &str, prefix: &str) {
    assert!(text.starts_with(prefix), "{text}");
}

#[test]
fn matching_answers_exit_0_and_write_junit_and_json() {
    let (monolith, service) = (serve(forum), serve(forum));
    let project = Project::new(&monolith, &users_route(&service));
    let output = project.verify(&["users", "--junit", "parity.xml", "--json", "parity.json"]);
    assert_exit(&output, 0);
    assert_starts_with(
        &stdout(&output),
        &format!(
            "PASS parity users: candidate {service} against baseline {monolith}\n  14 requests: 14 matched"
        ),
    );
    let junit = std::fs::read_to_string(project.path("parity.xml")).unwrap();
    assert_contains(
        &junit,
        "<testsuite name=\"parity users\" tests=\"4\" failures=\"0\"",
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("parity.json")).unwrap())
            .unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["routes"][0]["matched"], 14);
}

#[test]
fn a_differing_field_exits_1_and_names_its_pointer() {
    let (monolith, service) = (serve(forum), serve(drifted_forum));
    let project = Project::new(&monolith, &users_route(&service));
    let output = project.verify(&["users", "--junit", "parity.xml"]);
    assert_exit(&output, 1);
    let report = stdout(&output);
    assert_contains(
        &report,
        "  FAIL GET /api/users/{id}  (6 requests: 5 matched, 1 differed, 0 failed)\n       body /name changed value: 1 request\n         GET /api/users/2: baseline \"user 2\" | candidate \"User 2\"\n",
    );
    let junit = std::fs::read_to_string(project.path("parity.xml")).unwrap();
    assert_contains(
        &junit,
        "<failure type=\"parity\" message=\"GET /api/users/2: body /name changed value: baseline &quot;user 2&quot; | candidate &quot;User 2&quot; (1 of 6 requests differed, 0 failed)\">body /name changed value: 1 request",
    );
}

#[test]
fn candidate_flags_override_the_configured_service_url() {
    let (monolith, good, drifted) = (serve(forum), serve(forum), serve(drifted_forum));
    let project = Project::new(&monolith, &users_route(&drifted));
    assert_exit(&project.verify(&["users", "--candidate", &good]), 0);
    assert_exit(
        &project.verify(&["users", "--candidate", &format!("users={good}")]),
        0,
    );
    let output = project.verify(&["users", "--candidate", "posts=http://127.0.0.1:1"]);
    assert_exit(&output, 2);
    assert_contains(
        &stderr(&output),
        "unknown route `posts`; known routes: users",
    );
}

#[test]
fn all_without_a_candidate_for_some_route_is_a_config_error() {
    let monolith = serve(forum);
    let routes = format!(
        "{}\n[routes.threads]\npaths = [\"/api/threads*\"]\ntarget_group = \"threads\"\n",
        users_route(&monolith)
    );
    let project = Project::new(&monolith, &routes);
    let output = project.verify(&["--all"]);
    assert_exit(&output, 2);
    assert_eq!(
        stderr(&output),
        "migrate: no candidate URL for route threads: set `[routes.threads] service_url` in migrate.toml, or pass `--candidate threads=URL` (or `--candidate URL` for every route)\n"
    );
    assert!(
        stdout(&output).is_empty(),
        "no request goes out before the config is complete"
    );
}

#[test]
fn usage_and_config_mistakes_exit_2() {
    let monolith = serve(forum);
    let project = Project::new(&monolith, &users_route(&monolith));
    let output = project.verify(&[]);
    assert_exit(&output, 2);
    assert_contains(&stderr(&output), "<ROUTE|--all>");
    assert_exit(&project.verify(&["users", "--all"]), 2);
    assert_exit(&project.verify(&["users", "--concurrency", "0"]), 2);
    assert_exit(&project.verify(&["nope"]), 2);

    let bad_pointer = Project::new(
        &monolith,
        &format!("{}ignore = [\"name\"]\n", users_route(&monolith)),
    );
    let output = bad_pointer.verify(&["users"]);
    assert_exit(&output, 2);
    assert_contains(
        &stderr(&output),
        "`routes.users.verify`: ignore: JSON Pointer \"name\" must be empty",
    );

    let output = project.verify(&["users", "--baseline", "localhost:3000"]);
    assert_exit(&output, 2);
    assert_eq!(
        stderr(&output),
        "migrate: the baseline URL \"localhost:3000\" must be http:// or https:// with a host, like http://127.0.0.1:3000\n"
    );

    // Unreadable logs exit 4, as in `migrate leaks` and `plan`.
    let output = project.verify(&["users", "--from-alb-log", "missing.log"]);
    assert_exit(&output, 4);
    assert_starts_with(
        &stderr(&output),
        "migrate: cannot read the access logs at missing.log: ",
    );
}

/// Progress is drawn on stderr while it is a terminal (here a pseudo-terminal
/// from util-linux's `script`), and never into a pipe or file.
#[test]
fn progress_shows_on_a_terminal_only() {
    let (monolith, service) = (serve(forum), serve(forum));
    let project = Project::new(&monolith, &users_route(&service));
    let command = format!(
        "{} --config {} verify users",
        env!("CARGO_BIN_EXE_migrate"),
        project.path("migrate.toml").display()
    );
    let on_terminal = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .current_dir(project.path(""))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1) from util-linux");
    assert_exit(&on_terminal, 0);
    let screen = stdout(&on_terminal);
    assert_contains(&screen, "migrate: verifying users [");
    assert_contains(&screen, "/14 pairs");
    assert_contains(&screen, "14 requests: 14 matched");

    let piped = project.verify(&["users"]);
    assert_exit(&piped, 0);
    assert!(!stderr(&piped).contains("verifying"), "{}", stderr(&piped));

    // Reading an access log (a million lines for an hour of a busy ALB) shows
    // its lines as they are read, on a terminal only too.
    let log = fixture("alb-access.log");
    let on_terminal = Command::new("script")
        .args(["--quiet", "--return", "--command"])
        .arg(format!("{command} --from-alb-log {log}"))
        .arg("/dev/null")
        .current_dir(project.path(""))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1) from util-linux");
    assert_exit(&on_terminal, 0);
    let screen = stdout(&on_terminal);
    assert_contains(&screen, "migrate: reading access logs for users: ");
    assert_contains(&screen, " lines, ");
    assert_contains(&screen, "5 requests: 5 matched");
    let piped = project.verify(&["users", "--from-alb-log", &log]);
    assert_exit(&piped, 0);
    assert!(!stderr(&piped).contains("reading"), "{}", stderr(&piped));
}

#[test]
fn an_unreachable_candidate_fails_every_request() {
    let monolith = serve(forum);
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let project = Project::new(&monolith, &users_route(&closed));
    let output = project.verify(&["users", "--timeout", "2s", "--junit", "parity.xml"]);
    // "Could not run" is not "differs": exit 5, JUnit <error>, no <failure>.
    assert_exit(&output, 5);
    assert_contains(
        &stdout(&output),
        "14 requests: 0 matched, 0 differed, 14 failed",
    );
    assert_contains(&stdout(&output), "candidate failed to answer");
    let junit = std::fs::read_to_string(project.path("parity.xml")).unwrap();
    assert_contains(
        &junit,
        "<error type=\"parity\" message=\"candidate failed to answer GET /api/users",
    );
    assert_contains(&junit, "errors=\"4\"");
    assert!(!junit.contains("<failure"), "{junit}");

    // A difference wins over requests without answers: exit 1.
    let half = serve(|method: &str, target: &str| {
        if target == "/api/users" {
            // Close without answering.
            return (0, "", String::new());
        }
        drifted_forum(method, target)
    });
    let project = Project::new(&monolith, &users_route(&half));
    assert_exit(&project.verify(&["users"]), 1);
}

#[test]
fn help_documents_the_exit_codes() {
    let output = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["verify", "--help"])
        .output()
        .unwrap();
    assert_exit(&output, 0);
    // Wherever clap wraps the lines.
    let help = stdout(&output)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_contains(&help, "1 the candidate answered differently");
    assert_contains(&help, "5 the check could not run");
    assert_contains(&help, "4 the access logs of --from-alb-log could not be");
    assert_contains(
        &help,
        "the logs of --from-alb-log hold no request for the routes' paths",
    );
}

#[test]
fn a_dash_writes_a_report_to_stdout_and_output_json_prints_json() {
    let (monolith, service) = (serve(forum), serve(drifted_forum));
    let project = Project::new(&monolith, &users_route(&service));
    let output = project.verify(&["users", "--json", "-"]);
    assert_exit(&output, 1);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", stdout(&output)));
    assert_eq!(json["routes"][0]["differed"], 1);
    assert!(!project.path("-").exists(), "no file named -");
    // The text report moves to stderr.
    assert_contains(&stderr(&output), "FAIL parity users");

    let output = project.verify(&["users", "--junit", "-"]);
    assert_exit(&output, 1);
    assert_starts_with(&stdout(&output), "<?xml version=\"1.0\"");
    assert!(!project.path("-").exists(), "no file named -");

    let output = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("--config")
        .arg(project.path("migrate.toml"))
        .args(["verify", "users", "--output", "json"])
        .output()
        .unwrap();
    assert_exit(&output, 1);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", stdout(&output)));
    assert_eq!(json["passed"], false);

    let output = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("--config")
        .arg(project.path("migrate.toml"))
        .args(["--output", "json", "verify", "nope"])
        .output()
        .unwrap();
    assert_exit(&output, 2);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", stdout(&output)));
    assert_eq!(json["exit_code"], 2);
    assert_contains(json["error"].as_str().unwrap(), "unknown route `nope`");

    let output = project.verify(&["users", "--json", "-", "--junit", "-"]);
    assert_exit(&output, 2);
    assert_contains(&stderr(&output), "both ask for stdout");
}

#[test]
fn a_passing_run_counts_suppressions_on_one_line_and_lists_them_with_v() {
    let (monolith, service) = (serve(forum), serve(forum));
    let project = Project::new(&monolith, &users_route(&service));
    let output = project.verify(&["users"]);
    assert_exit(&output, 0);
    let report = stdout(&output);
    assert_contains(&report, " differences suppressed (ignored header: ");
    assert!(!report.contains("suppressed (ignored header)"), "{report}");
    let output = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("--config")
        .arg(project.path("migrate.toml"))
        .args(["verify", "users", "-v"])
        .output()
        .unwrap();
    assert_exit(&output, 0);
    assert_contains(
        &stdout(&output),
        "suppressed (ignored header): header date changed value: ",
    );
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("parity/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn an_alb_access_log_is_replayed_with_every_skipped_line_reported() {
    let monolith = serve(forum);
    let service = serve(|method: &str, target: &str| {
        if target.starts_with("/api/users/3") {
            return (200, JSON, r#"{"id":3,"name":"User 3"}"#.into());
        }
        forum(method, target)
    });
    let project = Project::new(&monolith, &users_route(&service));
    let output = project.verify(&["users", "--from-alb-log", &fixture("alb-access.log")]);
    assert_exit(&output, 1);
    let report = stdout(&output);
    assert_contains(&report, "  5 requests: 4 matched, 1 differed, 0 failed");
    assert_contains(
        &report,
        "         GET /api/users/3?utm_source=mail: baseline \"user 3\" | candidate \"User 3\"\n",
    );
    assert_contains(&report, "alb-access.log: 5 requests, 5 lines skipped\n");
    // Skipped lines are shown whole (up to parity::SKIPPED_LINE_CHARS).
    let log = std::fs::read_to_string(fixture("alb-access.log")).unwrap();
    let post = log.lines().find(|line| line.contains("\"POST ")).unwrap();
    assert!(post.len() > 300);
    assert_contains(
        &report,
        &format!(
            ":{}: {post}\n",
            1 + log.lines().position(|line| line == post).unwrap()
        ),
    );
    for reason in [
        "skipped 1: POST is not replayed without --allow-unsafe",
        "skipped 1: not an ALB access log line (unknown connection type)",
        "skipped 1: too few fields for an ALB access log line",
        "skipped 1: path outside the route's patterns",
        "skipped 1: no request recorded (the ALB could not parse it)",
    ] {
        assert!(report.contains(reason), "{reason} missing in\n{report}");
    }

    let output = project.verify(&[
        "users",
        "--from-alb-log",
        &fixture("alb-access.log"),
        "--allow-unsafe",
    ]);
    assert_contains(&stdout(&output), "  6 requests: ");

    // A directory in AWS's layout: its gzip logs are read (through the same
    // reader as `leaks`), AWS's test file beside them is not.
    let account = project.path("logs/prod/AWSLogs/123456789012");
    let day = account.join("elasticloadbalancing/us-east-1/2026/12/01");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(
        account.join("ELBAccessLogTestFile"),
        "Enable AccessLog for ELB: test\n",
    )
    .unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(log.as_bytes()).unwrap();
    let name = "123456789012_elasticloadbalancing_us-east-1_app.ficus-alb.50dc6c495c0c9188_20261201T1005Z_10.0.0.1_a.log.gz";
    std::fs::write(day.join(name), gzip.finish().unwrap()).unwrap();
    let output = project.verify(&["users", "--from-alb-log", "logs"]);
    assert_exit(&output, 1);
    let report = stdout(&output);
    assert_contains(&report, "  5 requests: 4 matched, 1 differed, 0 failed");
    assert_contains(&report, &format!("{name}: 5 requests, 5 lines skipped\n"));
}

#[test]
fn a_corpus_from_the_command_line_replaces_the_configured_requests() {
    let (monolith, service) = (serve(forum), serve(drifted_forum));
    let project = Project::new(&monolith, &users_route(&service));
    std::fs::write(
        project.path("corpus.txt"),
        "# users only\nGET /api/users/1\n/api/users/3\nGET /api/threads/1\n",
    )
    .unwrap();
    let output = project.verify(&[
        "users",
        "--corpus",
        &project.path("corpus.txt").display().to_string(),
    ]);
    assert_exit(&output, 0);
    let report = stdout(&output);
    assert_contains(&report, "  2 requests: 2 matched");
    assert_contains(&report, "skipped 1: path outside the route's patterns");
}

#[test]
fn routes_skipped_under_all_are_skipped_junit_cases_that_say_why() {
    let (monolith, service) = (serve(forum), serve(forum));
    let routes = format!(
        "{}\n[routes.threads]\npaths = [\"/api/threads*\"]\ntarget_group = \"threads\"\nservice_url = \"{service}\"\n",
        users_route(&service)
    );
    let project = Project::new(&monolith, &routes);
    std::fs::write(project.path("corpus.txt"), "/api/users/1\n").unwrap();
    let output = project.verify(&["--all", "--corpus", "corpus.txt", "--junit", "parity.xml"]);
    assert_exit(&output, 0);
    assert_contains(&stdout(&output), "PASS: 1 route verified, 1 skipped\n");
    let junit = std::fs::read_to_string(project.path("parity.xml")).unwrap();
    assert_contains(
        &junit,
        "<testcase classname=\"parity.threads\" name=\"threads\">\n      <skipped message=\"no request in the given files matches its paths [&quot;/api/threads*&quot;]\"/>",
    );
    assert_contains(&junit, "skipped=\"1\"");
}

fn settings_of(project: &Project) -> migrate::settings::Settings {
    migrate::settings::Settings::load(&migrate::settings::Overrides {
        config: Some(project.path("migrate.toml")),
        ..Default::default()
    })
    .expect("valid settings")
}

#[tokio::test]
async fn the_parity_gate_passes_matching_services_and_names_the_first_differences() {
    let (monolith, good, drifted) = (serve(forum), serve(forum), serve(drifted_forum));
    let passing = Project::new(&monolith, &users_route(&good));
    let gate = migrate::verify::parity_gate(&settings_of(&passing), "users").await;
    assert_eq!(gate.unwrap(), None);

    let failing = Project::new(&monolith, &users_route(&drifted));
    let summary = migrate::verify::parity_gate(&settings_of(&failing), "users")
        .await
        .unwrap()
        .expect("the gate fails");
    assert_eq!(
        summary,
        format!(
            "1 of 13 requests differed and 0 failed ({drifted} against {monolith})\nGET /api/users/{{id}}: body /name changed value (1 request), e.g. GET /api/users/2: baseline \"user 2\" | candidate \"User 2\""
        )
    );
}

#[tokio::test]
async fn the_parity_gate_without_a_service_url_is_a_config_error() {
    let monolith = serve(forum);
    let project = Project::new(
        &monolith,
        "[routes.users]\npaths = [\"/api/users*\"]\ntarget_group = \"users\"\n",
    );
    let error = migrate::verify::parity_gate(&settings_of(&project), "users")
        .await
        .unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "the parity gate needs the service's URL: set `[routes.users] service_url` in migrate.toml, or pass `--skip-parity`"
    );
    let error = migrate::verify::parity_gate(&settings_of(&project), "nope")
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").starts_with("unknown route `nope`"),
        "{error:#}"
    );
}

#[test]
fn a_route_without_a_request_set_gets_its_path_patterns() {
    let (monolith, service) = (serve(forum), serve(forum));
    let project = Project::new(
        &monolith,
        &format!(
            "[routes.users]\npaths = [\"/api/users*\"]\ntarget_group = \"users\"\nservice_url = \"{service}\"\n"
        ),
    );
    let output = project.verify(&["users"]);
    assert_exit(&output, 0);
    assert_contains(
        &stdout(&output),
        "  input the route's paths (no `[routes.users.verify]` requests configured): 1 request",
    );
}

#[test]
fn a_second_baseline_and_a_baseline_override_are_used() {
    let (monolith, other, service) = (serve(forum), serve(forum), serve(forum));
    let project = Project::new("http://127.0.0.1:1", &users_route(&service));
    let output = project.verify(&["users", "--baseline", &monolith, "--baseline-2", &other]);
    assert_exit(&output, 0);
    assert_starts_with(
        &stdout(&output),
        &format!(
            "PASS parity users: candidate {service} against baseline {monolith} (second baseline {other})\n"
        ),
    );
}

/// Renders GitHub-flavoured Markdown to HTML as GitHub's step summary does
/// (tables, strikethrough, autolinks).
fn render_gfm(markdown: &str) -> String {
    let mut options = comrak::Options::default();
    options.extension.table = true;
    options.extension.strikethrough = true;
    options.extension.autolink = true;
    comrak::markdown_to_html(markdown, &options)
}

#[test]
fn the_summary_renders_as_a_table_per_route_with_the_first_difference() {
    let (monolith, service) = (serve(forum), serve(drifted_forum));
    let project = Project::new(&monolith, &users_route(&service));
    std::fs::write(project.path("summary.md"), "earlier step\n\n").unwrap();
    let output = project.verify(&["users", "--summary", "summary.md"]);
    assert_exit(&output, 1);
    let markdown = std::fs::read_to_string(project.path("summary.md")).unwrap();
    assert_starts_with(&markdown, "earlier step\n\n## Parity: FAIL in users");
    let html = render_gfm(&markdown);
    for needle in [
        "<table>",
        "<th>endpoint</th>",
        "<th align=\"right\">suppressed</th>",
        "<td><strong>FAIL</strong> <code>GET /api/users/{id}</code></td>",
        "<td align=\"right\">6</td>",
        "<code>GET /api/users/2: body /name changed value: baseline &quot;user 2&quot; | candidate &quot;User 2&quot;</code>",
    ] {
        assert!(
            html.contains(needle),
            "{needle} not in\n{html}\nfrom\n{markdown}"
        );
    }
}

/// A forum server binary built beside `migrate` (`cargo build --workspace`
/// first, as scripts/test does), on a free port.
fn start_server(name: &str) -> forum::test_support::SpawnedServer {
    let binary = Path::new(env!("CARGO_BIN_EXE_migrate"))
        .parent()
        .unwrap()
        .join(name);
    assert!(
        binary.is_file(),
        "{} is not built; run `cargo build --workspace` (scripts/test does) before `cargo test -p migrate`",
        binary.display()
    );
    forum::test_support::SpawnedServer::start(&binary, &[]).expect("the server starts")
}

/// A bad candidate outside the product binaries: forwards each request to
/// `upstream` and answers with its body passed through `rewrite`.
pub(crate) fn rewriting_proxy(
    upstream: std::net::SocketAddr,
    rewrite: fn(String) -> String,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || proxy_one(client, upstream, rewrite));
        }
    });
    url
}

/// Every `bio` rewritten.
pub(crate) fn rewrite_bio(body: String) -> String {
    body.replace("\"bio\":\"", "\"bio\":\"(rewritten) ")
}

/// Every JSON list in reverse order.
fn reverse_lists(body: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(mut items)) => {
            items.reverse();
            serde_json::Value::Array(items).to_string()
        }
        _ => body,
    }
}

/// One request per connection (the answer says `connection: close`).
fn proxy_one(mut client: TcpStream, upstream: std::net::SocketAddr, rewrite: fn(String) -> String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let request: String = head
        .trim_end()
        .lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .map(|line| format!("{line}\r\n"))
        .collect();
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = server.write_all(format!("{request}connection: close\r\n\r\n").as_bytes());
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    let Some(split) = answer.windows(4).position(|window| window == b"\r\n\r\n") else {
        return;
    };
    let body = rewrite(String::from_utf8_lossy(&answer[split + 4..]).into_owned());
    let mut lines: Vec<String> = String::from_utf8_lossy(&answer[..split])
        .lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_owned)
        .collect();
    if !body.is_empty() {
        for line in &mut lines {
            if line.to_ascii_lowercase().starts_with("content-length:") {
                *line = format!("content-length: {}", body.len());
            }
        }
    }
    lines.push("connection: close".into());
    let _ = client.write_all(format!("{}\r\n\r\n{body}", lines.join("\r\n")).as_bytes());
}

fn repository_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrate.toml")
}

fn migrate_verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("--config")
        .arg(repository_config())
        .arg("verify")
        .args(args)
        .output()
        .expect("run migrate")
}

#[test]
fn a_recording_of_the_monolith_verifies_the_users_service_without_the_monolith() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("users.recording.json");
    let recording_arg = recording.display().to_string();
    let mut monolith = start_server("monolith");
    let users = start_server("users");
    let monolith_url = format!("http://{}", monolith.address);

    let output = migrate_verify(&[
        "users",
        "--baseline",
        &monolith_url,
        "--record",
        &recording_arg,
    ]);
    assert_exit(&output, 0);
    assert_contains(&stdout(&output), "recorded users: ");
    let first = std::fs::read_to_string(&recording).unwrap();
    assert_contains(
        &first,
        "\"format\": \"ficus parity recording\",\n  \"version\": 1,",
    );
    assert!(
        !first.contains("\"date\""),
        "no time of the recording in it"
    );
    // Stable: recording the same baseline again gives the same bytes.
    assert_exit(
        &migrate_verify(&[
            "users",
            "--baseline",
            &monolith_url,
            "--record",
            &recording_arg,
        ]),
        0,
    );
    assert_eq!(std::fs::read_to_string(&recording).unwrap(), first);
    // `--output json`: JSON on stdout for a recording too.
    let output = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("--config")
        .arg(repository_config())
        .args([
            "--output",
            "json",
            "verify",
            "users",
            "--baseline",
            &monolith_url,
        ])
        .args(["--record", &recording_arg])
        .output()
        .unwrap();
    assert_exit(&output, 0);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", stdout(&output)));
    assert_eq!(json["recorded"], true);
    assert_eq!(json["routes"][0]["route"], "users");

    monolith.signal("TERM").unwrap();
    monolith
        .wait_for_exit(std::time::Duration::from_secs(10))
        .unwrap();

    let users_url = format!("http://{}", users.address);
    let output = migrate_verify(&[
        "users",
        "--recorded",
        &recording_arg,
        "--candidate",
        &users_url,
    ]);
    assert_exit(&output, 0);
    assert_starts_with(
        &stdout(&output),
        &format!(
            "PASS parity users: candidate {users_url} against baseline recording {recording_arg}\n"
        ),
    );

    let rewriting = rewriting_proxy(users.address, rewrite_bio);
    let junit = dir.path().join("bio.xml");
    let output = migrate_verify(&[
        "users",
        "--recorded",
        &recording_arg,
        "--candidate",
        &rewriting,
        "--junit",
        &junit.display().to_string(),
    ]);
    assert_exit(&output, 1);
    let bio_report = stdout(&output);
    assert_contains(&bio_report, "body /*/bio changed value");
    assert_contains(&bio_report, "body /bio changed value");
    // The JUnit message alone names the request, the pointer and both values.
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert_contains(
        &junit,
        "message=\"GET /api/users: body /0/bio changed value: baseline &quot;",
    );
    assert_contains(&junit, " | candidate &quot;(rewritten) ");

    // Every list reversed: one `order` finding per list endpoint, and a
    // report no longer than the one for the `bio` rewrite.
    let reversing = rewriting_proxy(users.address, reverse_lists);
    let output = migrate_verify(&[
        "users",
        "--recorded",
        &recording_arg,
        "--candidate",
        &reversing,
    ]);
    assert_exit(&output, 1);
    let order_report = stdout(&output);
    assert_contains(&order_report, "       body order: 1 request\n");
    assert!(!order_report.contains("changed value"), "{order_report}");
    assert!(
        order_report.lines().count() <= bio_report.lines().count(),
        "{order_report}\nlonger than\n{bio_report}"
    );

    // A request of the route's set that is not in the recording is reported.
    let mut edited: serde_json::Value = serde_json::from_str(&first).unwrap();
    let requests = edited["routes"]["users"]["requests"]
        .as_array_mut()
        .unwrap();
    let dropped = requests.remove(0)["request"].as_str().unwrap().to_owned();
    std::fs::write(&recording, edited.to_string()).unwrap();
    let output = migrate_verify(&[
        "users",
        "--recorded",
        &recording_arg,
        "--candidate",
        &users_url,
    ]);
    assert_exit(&output, 5);
    assert_contains(
        &stdout(&output),
        &format!(
            "{dropped}: not in the recording {recording_arg}; re-record it: `migrate verify users --record {recording_arg}`"
        ),
    );

    // A recording by another version is refused with how to re-record.
    edited["version"] = 0.into();
    std::fs::write(&recording, edited.to_string()).unwrap();
    let output = migrate_verify(&[
        "users",
        "--recorded",
        &recording_arg,
        "--candidate",
        &users_url,
    ]);
    assert_exit(&output, 2);
    assert_contains(
        &stderr(&output),
        "was recorded by an older ficus (recording version 0; this migrate reads version 1); re-record it against the baseline: `migrate verify --all --record ",
    );
    // A route that is not in the recording is a usage error too.
    std::fs::write(&recording, &first).unwrap();
    let output = migrate_verify(&[
        "threads",
        "--recorded",
        &recording_arg,
        "--candidate",
        &users_url,
    ]);
    assert_exit(&output, 2);
    assert_contains(
        &stderr(&output),
        &format!(
            "route `threads` is not in the recording {recording_arg}; record it: `migrate verify threads --record {recording_arg}`"
        ),
    );
}
