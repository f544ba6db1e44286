//! The real `monolith` binary: start-up, logging, graceful stop, bad input.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use forum::gen_data::{Volume, write_dataset};
use forum::test_support::SpawnedServer;

const BINARY: &str = env!("CARGO_BIN_EXE_monolith");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .output()
        .expect("monolith runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn serves_then_stops_on_sigterm_with_exit_code_0() {
    let mut server = SpawnedServer::start(BINARY, &[]).unwrap();
    let response = server.send("GET", "/api/threads/2").unwrap();
    assert_eq!(
        response.text(),
        r#"{"id":2,"title":"Party at the candy kingdom tomorrow","createdBy":3}"#
    );
    let mut log_line = String::new();
    server.stdout.read_line(&mut log_line).unwrap();
    for field in [
        "method=GET",
        "url=/api/threads/2",
        "status=200",
        "duration_ms=",
    ] {
        assert!(
            log_line.contains(field),
            "{field} missing from {log_line:?}"
        );
    }
    server.signal("TERM").unwrap();
    let status = server.wait_for_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(server.address).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn sigint_stops_gracefully_too() {
    let mut server = SpawnedServer::start(BINARY, &["--log-format", "json"]).unwrap();
    server.send("GET", "/api/users?x=1").unwrap();
    let mut log_line = String::new();
    server.stdout.read_line(&mut log_line).unwrap();
    let log: serde_json::Value = serde_json::from_str(&log_line).unwrap();
    assert_eq!(
        (
            log["method"].as_str(),
            log["url"].as_str(),
            log["status"].as_u64()
        ),
        (Some("GET"), Some("/api/users?x=1"), Some(200))
    );
    assert!(log["duration_ms"].is_f64(), "{log_line}");
    server.signal("INT").unwrap();
    assert_eq!(
        server
            .wait_for_exit(Duration::from_secs(10))
            .unwrap()
            .code(),
        Some(0)
    );
}

/// The request log is handed to the writer in batches (forum/src/request_log.rs):
/// every request of a pipelined burst still gets its one line, in order, soon.
/// 600 lines are more than one batch's 32 KiB, so both hand-overs are used:
/// when the buffer is full, and a few milliseconds after the last line.
#[test]
fn every_request_of_a_burst_is_logged_once_in_order() {
    const REQUESTS: usize = 600;
    let server = SpawnedServer::start(BINARY, &[]).unwrap();
    let mut stream = TcpStream::connect(server.address).unwrap();
    let burst: String = (1..=REQUESTS)
        .map(|id| {
            let close = if id == REQUESTS {
                "Connection: close\r\n"
            } else {
                ""
            };
            format!("GET /api/users/{id} HTTP/1.1\r\nHost: test\r\n{close}\r\n")
        })
        .collect();
    stream.write_all(burst.as_bytes()).unwrap();
    let mut answers = Vec::new();
    stream.read_to_end(&mut answers).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answers)
            .matches("HTTP/1.1 ")
            .count(),
        REQUESTS
    );
    // Lines are read on a thread (from a copy of the pipe: nothing is
    // buffered past the startup lines) so that a missing one fails the test by
    // the deadline instead of blocking it; the thread ends with the server.
    assert!(server.stdout.buffer().is_empty());
    let pipe = server
        .stdout
        .get_ref()
        .as_fd()
        .try_clone_to_owned()
        .unwrap();
    let mut stdout = std::io::BufReader::new(std::fs::File::from(pipe));
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            if lines.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    for id in 1..=REQUESTS {
        let line = received
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no log line for request {id} within 10 s"));
        assert!(
            line.contains(&format!(" url=/api/users/{id} status=")),
            "line {id}: {line:?}"
        );
    }
}

/// A response being written when SIGTERM arrives is still delivered in full.
#[test]
fn in_flight_response_completes_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write_dataset(
        &mut file,
        Volume {
            users: 100,
            threads: 100,
            posts: 100_000,
            seed: 3,
        },
    )
    .unwrap();
    file.flush().unwrap();
    drop(file);
    let mut server = SpawnedServer::start(BINARY, &["--data", path.to_str().unwrap()]).unwrap();
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .write_all(b"GET /api/posts HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut start = vec![0; 1024];
    stream.read_exact(&mut start).unwrap();
    server.signal("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.is_running().unwrap(),
        "exited with the response still in flight"
    );
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let raw = [start, rest].concat();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let length: usize = head
        .split("content-length: ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        length > 5_000_000,
        "body of {length} bytes is too small to be in flight"
    );
    assert_eq!(raw.len() - end - 4, length, "whole body delivered");
    assert_eq!(
        server
            .wait_for_exit(Duration::from_secs(10))
            .unwrap()
            .code(),
        Some(0)
    );
}

#[test]
fn data_file_is_served_as_is_with_dangling_references_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = r#"{"users":[{"id":7,"username":"u","name":"N","bio":"b","extra":1.50}],"threads":[],"posts":[{"thread":1,"text":"t","user":7}]}"#;
    let path = write_file(dir.path(), "db.json", data);
    let server = SpawnedServer::start(BINARY, &["--data", &path]).unwrap();
    let warnings: Vec<&String> = server
        .startup_log
        .iter()
        .filter(|line| line.contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", server.startup_log);
    assert!(
        warnings[0].contains("posts[0].thread = 1: no thread has this id"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        server.send("GET", "/api/users").unwrap().text(),
        r#"[{"id":7,"username":"u","name":"N","bio":"b","extra":1.5}]"#
    );
    assert_eq!(
        server.send("GET", "/api/posts/in-thread/1").unwrap().text(),
        r#"[{"thread":1,"text":"t","user":7}]"#
    );
}

#[test]
fn bad_json_exits_2_naming_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "bad.json", "{\"users\": [\n  {\"id\": 1,,}\n]}");
    let output = run(&["--data", &path], &[]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!("monolith: data file {path}: ")),
        "{message}"
    );
    assert!(message.contains("line 2 column 12"), "{message}");
}

#[test]
fn duplicate_id_exits_2_naming_both_records() {
    let dir = tempfile::tempdir().unwrap();
    let user = r#"{"id":1,"username":"u","name":"n","bio":"b"}"#;
    let path = write_file(
        dir.path(),
        "dup.json",
        &format!(r#"{{"users":[{user},{user}],"threads":[],"posts":[]}}"#),
    );
    let output = run(&[], &[("DATA", path.as_str())]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(&format!(
            "{path}: users[1].id: duplicate id 1, already used by users[0]"
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn wrong_type_and_missing_file_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "types.json",
        r#"{"users":[],"threads":[{"id":1,"title":"t","createdBy":"4"}],"posts":[]}"#,
    );
    let output = run(&["--data", &path], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("threads[0].createdBy: expected an integer"),
        "{}",
        stderr(&output)
    );
    let output = run(&["--data", "/nonexistent/db.json"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/nonexistent/db.json: cannot read it"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_settings_exit_2_and_busy_port_exits_1() {
    let output = run(&[], &[("PORT", "abc")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("monolith: invalid settings: ")
            && stderr(&output).contains("`port`"),
        "{}",
        stderr(&output)
    );
    let output = run(&["--port", "seventy"], &[]);
    assert_eq!(output.status.code(), Some(2));

    let server = SpawnedServer::start(BINARY, &[]).unwrap();
    let port = server.address.port().to_string();
    let output = run(&["--host", "127.0.0.1", "--port", &port], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("monolith: cannot listen on 127.0.0.1:{port}")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_describes_every_setting() {
    let output = run(&["--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "Usage: monolith",
        "--host",
        "--port",
        "--data",
        "--config",
        "--shutdown-timeout",
        "Exit codes",
    ] {
        assert!(help.contains(expected), "{expected} missing from help");
    }
}
