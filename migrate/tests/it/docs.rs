//! The docs' code blocks run as written: every TOML block of
//! docs/migrate-toml.md loads, and the shell blocks of docs/existing-alb.md
//! run in order against the local ALB with a host-conditioned monolith rule.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The fenced blocks of `lang` in a doc of the repository, in order.
pub fn blocks(doc: &str, lang: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(doc))
        .unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_toml_block_of_migrate_toml_md_loads() {
    let toml = blocks("docs/migrate-toml.md", "toml");
    assert!(toml.len() >= 3, "{toml:?}");
    let dir = tempfile::tempdir().unwrap();
    for (index, block) in toml.iter().enumerate() {
        let path = dir.path().join(format!("block{index}.toml"));
        std::fs::write(&path, block).unwrap();
        // `history` loads and validates the settings and calls no AWS API.
        let run: Run = Command::new(MIGRATE)
            .arg("--config")
            .arg(&path)
            .arg("history")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
            .into();
        assert_eq!(run.code, 0, "block {index}:\n{block}\n{run}");
    }
}

#[test]
fn existing_alb_md_runs_as_written() {
    let sh = blocks("docs/existing-alb.md", "sh");
    assert!(sh.len() >= 4, "{sh:?}");
    let stack = LocalStack::start();
    let rt = runtime();
    let (elb, listener) = stack.elb_and_listener(&rt);
    monolith_rule_on_host(&rt, &elb, &listener, "api.shop.example");
    let dir = tempfile::tempdir().unwrap();
    let script = format!("set -euo pipefail\n{}", sh.join("\n"));
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run: Run = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("LB_NAME", "ficus-local")
        .env("LISTENER_PORT", "80")
        .env("LB_URL", &stack.data_url)
        .env("MONOLITH_PRIORITY", "99")
        .env("AWS_ACCESS_KEY_ID", LOCAL_KEY)
        .env("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &stack.control_url)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains(&format!("listener: {listener}")),
        "{run}"
    );
    assert!(run.stdout.contains("exists; nothing to create"), "{run}");
    assert!(
        run.stdout
            .contains("path-pattern /api/users* AND host-header api.shop.example"),
        "{run}"
    );
    assert!(run.stdout.contains("drift:    none"), "{run}");
}
