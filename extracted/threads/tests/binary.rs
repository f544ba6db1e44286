//! The real `threads` binary serves `/`, `/api` and its own routes only, and stops on SIGTERM.

#[test]
fn serves_its_own_routes_only_and_stops_on_sigterm() {
    forum::test_support::check_extracted_binary(
        env!("CARGO_BIN_EXE_threads"),
        &["/api/threads", "/api/threads/2"],
        &[
            "/api/users",
            "/api/users/1",
            "/api/posts",
            "/api/posts/in-thread/1",
            "/api/posts/by-user/1",
        ],
    );
}
