//! The bundled examples run as documented.

use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{NGINX_PATTERN, read_lines, repo_root, run_ok, run_with_timeout, sluice};

#[test]
fn quickstart_writes_errors_and_bots_to_console_and_file_on_every_run() {
    // Run from a copy of the repository's examples so `./data` lands in a temp dir.
    let dir = TempDir::new().unwrap();
    let examples = dir.path().join("examples");
    std::fs::create_dir_all(examples.join("data")).unwrap();
    for file in ["quickstart.toml", "data/access.log"] {
        std::fs::copy(repo_root().join("examples").join(file), examples.join(file)).unwrap();
    }
    // The README's command, twice: the demo is repeatable (it ignores the saved position and
    // rewrites its output file), so the second run shows and writes exactly what the first did.
    for _ in 0..2 {
        quickstart_output_is_exact(dir.path(), run_ok(dir.path(), "examples/quickstart.toml"));
    }
}

fn quickstart_output_is_exact(dir: &std::path::Path, output: std::process::Output) {
    let examples = dir.join("examples");

    let log = std::fs::read_to_string(examples.join("data/access.log")).unwrap();
    let pattern = Regex::new(NGINX_PATTERN).unwrap();
    let bot = Regex::new("(?i)bot").unwrap();
    let expected: Vec<String> = log
        .lines()
        .filter_map(|line| pattern.captures(line))
        .filter(|caps| {
            caps["status"].parse::<i64>().unwrap() >= 400 || bot.is_match(&caps["agent"])
        })
        .map(|caps| caps["request_id"].to_owned())
        .collect();
    assert!(!expected.is_empty());

    let ids = |lines: Vec<String>| -> Vec<String> {
        lines
            .iter()
            .map(|line| {
                let event: Value = serde_json::from_str(line).unwrap();
                event["request_id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let console = String::from_utf8(output.stdout).unwrap();
    assert_eq!(ids(console.lines().map(str::to_owned).collect()), expected);
    let archived = read_lines(&dir.join("data/quickstart/interesting.ndjson"));
    assert_eq!(ids(archived), expected);
}

#[test]
fn every_example_with_tests_passes_sluice_test() {
    let mut ran = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        if !std::fs::read_to_string(&path)
            .unwrap()
            .contains("[[tests]]")
        {
            continue;
        }
        let mut command = sluice(&repo_root());
        command.arg("test").arg("-c").arg(&path);
        let output = run_with_timeout(command, Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}:\n{stdout}", path.display());
        assert!(stdout.contains("test result: ok."), "{stdout}");
        ran += 1;
    }
    assert!(ran >= 3, "the examples carry pipeline tests");
}

#[test]
fn a_failing_pipeline_test_exits_1_with_a_diff() {
    let dir = TempDir::new().unwrap();
    let config = std::fs::read_to_string(repo_root().join("examples/quickstart.toml"))
        .unwrap()
        .replace("expect_dead_letters = 1", "expect_dead_letters = 0");
    std::fs::write(dir.path().join("q.toml"), config).unwrap();
    let mut command = sluice(dir.path());
    command.args(["test", "-c", "q.toml"]);
    let output = run_with_timeout(command, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("test garbage lines go to the dead-letter topic ... FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected 0 dead letters, got 1"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed; 1 failed"), "{stdout}");
}

#[test]
fn what_a_clone_reads_points_only_at_what_a_clone_has() {
    // README, docs and examples are what a user of a fresh clone reads and runs: they may not
    // point outside the repository, and the design notes they cite are in it.
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "examples"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for outside in ["../shared", "shared/bench", "gen_logs.py"] {
            assert!(
                !text.contains(outside),
                "{} mentions {outside}",
                path.display()
            );
        }
    }
    assert!(root.join("docs/DESIGN.md").is_file());
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("(docs/DESIGN.md)"),
        "the README links the design notes"
    );
}

#[test]
fn every_example_config_passes_sluice_validate() {
    // Every `*.toml` under examples/, subfolders (the two-tier pairs) included: each must load
    // and validate as shipped, since users start from them.
    fn configs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                configs(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "toml") {
                out.push(path);
            }
        }
    }
    let mut found = Vec::new();
    configs(&repo_root().join("examples"), &mut found);
    assert!(
        found
            .iter()
            .any(|path| path.ends_with("two-tier/central-nats.toml")),
        "{found:?}"
    );
    for path in &found {
        let mut command = sluice(&repo_root());
        command.arg("validate").arg("-c").arg(path);
        let output = run_with_timeout(command, Duration::from_secs(60));
        assert!(
            output.status.success(),
            "{}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_two_tier_kafka_examples_validate() {
    for name in ["edge-kafka.toml", "central-kafka.toml"] {
        let path = repo_root().join("examples/two-tier").join(name);
        let mut command = sluice(&repo_root());
        command.arg("validate").arg("-c").arg(&path);
        let output = run_with_timeout(command, Duration::from_secs(60));
        assert!(
            output.status.success(),
            "{}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
