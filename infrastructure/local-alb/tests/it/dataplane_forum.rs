//! The data plane in front of the real forum binaries (`monolith`, `users`),
//! built by this test with `cargo build -p monolith -p users`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common_dataplane::*;
use local_alb::model::{Priority, Target};

/// How long a forum server may take to log a request it answered.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// A forum server running as a child process; its stdout (the request log)
/// is collected line by line.
struct ForumServer {
    child: Child,
    address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl ForumServer {
    fn start(binary: &str) -> ForumServer {
        let path = target_dir().join("debug").join(binary);
        let mut child = Command::new(&path)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let address = loop {
            line.clear();
            let read = stdout.read_line(&mut line).expect("read server stdout");
            assert!(read > 0, "{binary} exited before listening");
            if let Some(address) = line.trim_end().split("listening on ").nth(1) {
                break address.parse().expect("listening address");
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                collected.lock().expect("log lock").push(line);
            }
        });
        ForumServer {
            child,
            address,
            log,
        }
    }

    fn target(&self) -> Target {
        Target {
            id: "127.0.0.1".to_owned(),
            port: self.address.port(),
        }
    }

    /// Log lines mentioning `path`.
    fn requests_for(&self, path: &str) -> usize {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|line| line.contains(path))
            .count()
    }
}

impl Drop for ForumServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

fn build_forum_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "monolith", "-p", "users"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p monolith -p users failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_rule_moves_traffic_between_the_real_monolith_and_users_service() {
    tokio::task::spawn_blocking(build_forum_binaries)
        .await
        .expect("build");
    let monolith = ForumServer::start("monolith");
    let users = ForumServer::start("users");
    let mut state = StateBuilder::new()
        .target_group("monolith", vec![monolith.target()], health_check(1, 1))
        .target_group("users", vec![users.target()], health_check(1, 1))
        .rule(
            Priority::Number(99),
            path_pattern(&["/api*"]),
            forward("monolith"),
        )
        .rule(
            Priority::Number(101),
            path_pattern(&["/api/users*"]),
            forward("users"),
        )
        .rule(Priority::Default, vec![], forward("monolith"))
        .build();
    let alb = RunningAlb::start(&state, quick_options()).await;
    let within = Duration::from_secs(5);
    wait_for_health(
        &alb.plane,
        "monolith",
        &monolith.target(),
        "healthy",
        within,
    )
    .await;
    wait_for_health(&alb.plane, "users", &users.target(), "healthy", within).await;
    let client = client();
    let fetch = |path: &'static str| {
        let (client, url) = (client.clone(), alb.url(path));
        async move {
            let response = client.get(url).send().await.expect("request");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        }
    };

    let before = fetch("/api/users/1").await;
    assert_eq!(before.0, 200);
    assert!(before.1.starts_with(r#"{"id":1,"#), "{}", before.1);
    assert_eq!(users.requests_for("/api/users/1"), 0);

    move_rule(&mut state, "/api/users*", 1);
    alb.plane.publish(&state);
    let after = fetch("/api/users/1").await;
    assert_eq!(after, before, "clients cannot tell who answered");
    // HEAD on a path the users service does not know (a longer word): 404
    // with no body, no Content-Type and no Content-Length, as the original.
    let head = client
        .head(alb.url("/api/usersx"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 404);
    for name in ["content-type", "content-length"] {
        assert_eq!(head.headers().get(name), None, "{name}: {head:?}");
    }
    assert_eq!(
        fetch("/api/threads/2").await.0,
        200,
        "threads stay on the monolith"
    );
    // The request log is written asynchronously: wait for its line.
    wait_until("users answered after the move", LOG_WAIT, || {
        users.requests_for("/api/users/1") >= 1
    })
    .await;
    assert_eq!(
        users.requests_for("/api/users/1"),
        1,
        "users answered after the move"
    );
    assert_eq!(
        monolith.requests_for("/api/users/1"),
        1,
        "only the first request"
    );

    move_rule(&mut state, "/api/users*", 101);
    alb.plane.publish(&state);
    assert_eq!(fetch("/api/users/1").await, before);
    wait_until("back on the monolith", LOG_WAIT, || {
        monolith.requests_for("/api/users/1") >= 2
    })
    .await;
    assert_eq!(
        monolith.requests_for("/api/users/1"),
        2,
        "back on the monolith"
    );
    alb.stop().await;
}
