//! Disk topics through the real binary: a sink added later backfills from what a disk topic
//! retained (`start_at = "earliest"`), a `latest` one sees only new events, and a subscription
//! that committed resumes where it was across runs.

use std::path::Path;

use tempfile::TempDir;

use crate::support::{read_lines, run_ok, write_file};

fn append_lines(path: &Path, from: usize, to: usize) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for n in from..to {
        writeln!(file, "line {n}").unwrap();
    }
}

/// The line numbers a file sink wrote, in order.
fn numbers(path: &Path) -> Vec<usize> {
    if !path.exists() {
        return Vec::new();
    }
    read_lines(path)
        .iter()
        .map(|line| {
            let at = line.find("line ").expect("a numbered line") + 5;
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap()
        })
        .collect()
}

fn config(dir: &Path, late_sinks: bool) -> String {
    let mut text = format!(
        r#"data_dir = "{dir}/data"
shutdown_timeout = "10s"

[sources.app]
type = "file"
include = ["{dir}/app.log"]
follow = false
topic = "raw"

[topics.raw]
storage = "disk"
segment_bytes = "64KiB"

[sinks.first]
type = "file"
input = "raw"
path = "{dir}/first.ndjson"
"#,
        dir = dir.display()
    );
    if late_sinks {
        text.push_str(&format!(
            r#"
[sinks.backfill]
type = "file"
input = "raw"
start_at = "earliest"
path = "{dir}/backfill.ndjson"

[sinks.recent]
type = "file"
input = "raw"
start_at = "latest"
path = "{dir}/recent.ndjson"
"#,
            dir = dir.display()
        ));
    }
    text
}

#[test]
fn a_sink_added_later_backfills_from_a_disk_topic_and_every_subscription_resumes() {
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("app.log");
    append_lines(&log, 0, 2_000);
    write_file(dir.path(), "one.toml", &config(dir.path(), false));
    run_ok(dir.path(), "one.toml");
    assert_eq!(
        numbers(&dir.path().join("first.ndjson")),
        (0..2_000).collect::<Vec<_>>()
    );
    let stored: u64 = std::fs::read_dir(dir.path().join("data/topics/raw"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert!(
        stored > 2_000 * 6,
        "the events are in the topic's segments: {stored} bytes"
    );

    // Nothing new in the file: the source reads nothing (its checkpoint), `first` resumes at
    // its committed offset (nothing again), `backfill` reads everything the topic retained.
    write_file(dir.path(), "two.toml", &config(dir.path(), true));
    run_ok(dir.path(), "two.toml");
    assert_eq!(numbers(&dir.path().join("first.ndjson")).len(), 2_000);
    assert_eq!(
        numbers(&dir.path().join("backfill.ndjson")),
        (0..2_000).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&dir.path().join("recent.ndjson")),
        Vec::<usize>::new()
    );

    // New lines reach every subscription once, `backfill` included (it committed now).
    append_lines(&log, 2_000, 2_100);
    run_ok(dir.path(), "two.toml");
    assert_eq!(
        numbers(&dir.path().join("first.ndjson")),
        (0..2_100).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&dir.path().join("backfill.ndjson")),
        (0..2_100).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&dir.path().join("recent.ndjson")),
        (2_000..2_100).collect::<Vec<_>>()
    );
}

#[test]
fn start_at_on_a_memory_topic_is_a_config_error_naming_the_key() {
    let dir = TempDir::new().unwrap();
    let text = config(dir.path(), true).replace("storage = \"disk\"", "storage = \"memory\"");
    let text = text.replace("segment_bytes = \"64KiB\"\n", "");
    write_file(dir.path(), "bad.toml", &text);
    let output = crate::support::sluice(dir.path())
        .args(["validate", "-c", "bad.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml:21:1: sinks.backfill.start_at: `start_at` applies only to inputs from disk topics"),
        "{stderr}"
    );
}
