//! The real `posts` binary serves `/`, `/api` and its own routes only, and stops on SIGTERM.

use std::time::Duration;

use forum::test_support::SpawnedServer;

#[test]
fn serves_its_own_routes_only_and_stops_on_sigterm() {
    let mut server = SpawnedServer::start(env!("CARGO_BIN_EXE_posts"), &[]).unwrap();
    let answer = |method: &str, target: &str| {
        let response = server.send(method, target).unwrap();
        (
            response.status,
            response.header("content-type").map(str::to_owned),
        )
    };
    let json = Some("application/json; charset=utf-8".to_owned());
    let text = Some("text/plain; charset=utf-8".to_owned());
    assert_eq!(answer("GET", "/"), (200, text.clone()));
    assert_eq!(answer("GET", "/api/"), (200, text.clone()));
    for target in [
        "/api/posts",
        "/api/posts/in-thread/1",
        "/api/posts/by-user/99",
    ] {
        assert_eq!(answer("GET", target), (200, json.clone()), "{target}");
    }
    for target in [
        "/api/users",
        "/api/users/1",
        "/api/threads",
        "/api/threads/2",
    ] {
        assert_eq!(answer("GET", target), (404, text.clone()), "{target}");
        assert_eq!(answer("POST", target), (404, text.clone()), "{target}");
    }
    server.signal("TERM").unwrap();
    assert_eq!(
        server
            .wait_for_exit(Duration::from_secs(10))
            .unwrap()
            .code(),
        Some(0)
    );
}
