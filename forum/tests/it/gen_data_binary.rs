//! The `gen-data` binary writes a file every server can load.

use std::process::Command;

use forum::Dataset;

const BINARY: &str = env!("CARGO_BIN_EXE_gen-data");

#[test]
fn writes_a_loadable_file_of_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("db.json");
    let status = Command::new(BINARY)
        .args([
            "--users",
            "30",
            "--threads",
            "12",
            "--posts",
            "500",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let data = Dataset::from_file(&out).unwrap();
    assert_eq!(
        (data.user_count(), data.thread_count(), data.post_count()),
        (30, 12, 500)
    );
}

#[test]
fn bad_usage_and_unwritable_output_fail() {
    let output = Command::new(BINARY)
        .args(["--posts", "many", "--out", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = Command::new(BINARY)
        .args(["--out", "/nonexistent/dir/db.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .starts_with("gen-data: cannot write /nonexistent/dir/db.json")
    );
}
