//! The `chaos` binary's usage errors (the scenarios themselves run in
//! `scripts/test-chaos`, against every real binary).

use std::process::Command;

fn chaos(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(args)
        .output()
        .expect("chaos runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_scenario_number_is_a_usage_error() {
    let (code, stderr) = chaos(&["--bounded", "--only", "10"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--only 10: scenarios are numbered 1 to 9"),
        "{stderr}"
    );
}

#[test]
fn missing_binaries_are_named_with_how_to_build_them() {
    let empty = tempfile::tempdir().expect("a temporary directory");
    let (code, stderr) = chaos(&["--bounded", "--bin-dir", &empty.path().to_string_lossy()]);
    assert_eq!(code, Some(2), "{stderr}");
    for binary in [
        "monolith",
        "users",
        "threads",
        "posts",
        "local-alb",
        "migrate",
    ] {
        assert!(stderr.contains(binary), "{binary} not named: {stderr}");
    }
    assert!(stderr.contains("cargo build"), "{stderr}");
}
