//! `sluice topics` end to end: the real binary on a data_dir of disk topics (written here with
//! the library's disk log, as an agent writes them) and against a running agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sluice::topic::Offset;
use sluice::topic::disk::{FsyncPolicy, Log, LogConfig};
use sluice_pipelines::{Batch, Event};
use tempfile::TempDir;

use crate::support::{curl, free_port, run_with_timeout, sluice, wait_until, write_file};

const MINUTE: Duration = Duration::from_secs(60);

/// Writes a disk topic of `events` events numbered by offset (`{"n": offset}`), in batches of
/// five and segments of ~1 KiB, with subscription `pg` committed at `committed`.
fn disk_topic(data_dir: &Path, name: &str, events: u64, committed: u64) {
    let config = LogConfig {
        segment_bytes: 1024,
        fsync: FsyncPolicy::Never,
        index_interval_bytes: 256,
        offset_commit_interval: Duration::ZERO,
        ..LogConfig::default()
    };
    let mut log = Log::open(&data_dir.join("topics").join(name), config).unwrap();
    for first in (0..events).step_by(5) {
        let batch = (first..first + 5)
            .map(|n| {
                let mut event = Event::default();
                event.insert("n", n as i64);
                event.insert("path", format!("/page/{n}"));
                event
            })
            .collect();
        log.append(Arc::new(Batch::new(batch)));
    }
    log.commit("pg", Offset(committed));
    log.close().unwrap();
}

fn topics(dir: &Path, args: &[&str]) -> Output {
    let mut command = sluice(dir);
    command.arg("topics").args(args);
    run_with_timeout(command, MINUTE)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn numbers(stdout: &[u8]) -> Vec<i64> {
    text(stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn topics_list_read_reset_and_verify_work_offline_on_a_data_dir() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    disk_topic(&data, "web.requests", 100, 60);
    disk_topic(&data, "app.bad", 10, 10);

    let list = topics(dir.path(), &["--data-dir", "data", "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    assert!(
        listed.contains("app.bad (disk): offsets 0..10, "),
        "{listed}"
    );
    assert!(
        listed.contains("web.requests (disk): offsets 0..100, "),
        "{listed}"
    );
    assert!(
        listed.contains("  subscription pg: committed 60, lag 40\n"),
        "{listed}"
    );
    let json = topics(dir.path(), &["list", "--data-dir", "data", "--json"]);
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json[1]["name"], "web.requests");
    assert!(json[1]["segments"].as_u64().unwrap() > 1);
    assert_eq!(json[1]["subscriptions"][0]["lag_events"], 40);

    let read = topics(
        dir.path(),
        &[
            "--data-dir",
            "data",
            "read",
            "web.requests",
            "--from",
            "42",
            "-n",
            "4",
        ],
    );
    assert!(read.status.success(), "{}", text(&read.stderr));
    assert_eq!(numbers(&read.stdout), [42, 43, 44, 45]);
    let first: Value = serde_json::from_str(text(&read.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["path"], "/page/42");
    let all = topics(dir.path(), &["--data-dir", "data", "read", "web.requests"]);
    assert_eq!(numbers(&all.stdout), (0..100).collect::<Vec<_>>());
    let future = topics(
        dir.path(),
        &[
            "--data-dir",
            "data",
            "read",
            "web.requests",
            "--from",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(future.status.success());
    assert!(future.stdout.is_empty());

    let reset = topics(
        dir.path(),
        &[
            "--data-dir",
            "data",
            "reset",
            "web.requests",
            "pg",
            "--to",
            "earliest",
        ],
    );
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert_eq!(
        text(&reset.stdout),
        "web.requests pg: committed offset 60 -> 0 (100 events to read on the next start)\n"
    );
    let listed = text(&topics(dir.path(), &["--data-dir", "data", "list"]).stdout);
    assert!(
        listed.contains("  subscription pg: committed 0, lag 100\n"),
        "{listed}"
    );

    let verify = topics(dir.path(), &["--data-dir", "data", "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    let verified = text(&verify.stdout);
    assert!(
        verified.contains("app.bad: OK: 2 records, 10 events"),
        "{verified}"
    );
    assert!(
        verified.contains("web.requests: OK: 20 records, 100 events"),
        "{verified}"
    );

    // A flipped byte in the middle of the first segment: verify finds it and changes nothing.
    let segment = data.join("topics/web.requests/00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x08;
    std::fs::write(&segment, &bytes).unwrap();
    let before = snapshot(&data);
    let verify = topics(dir.path(), &["--data-dir", "data", "verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify.stderr));
    let verified = text(&verify.stdout);
    assert!(verified.contains("web.requests: CORRUPT: "), "{verified}");
    assert!(
        verified.contains("corrupt record in segment 0 at byte "),
        "{verified}"
    );
    assert!(verified.contains("app.bad: OK"), "{verified}");
    let only = topics(dir.path(), &["--data-dir", "data", "verify", "app.bad"]);
    assert_eq!(only.status.code(), Some(0));
    assert!(!text(&only.stdout).contains("web.requests"));
    assert_eq!(snapshot(&data), before, "verify changed a file");

    // Mistakes: no target, a bad position, an unknown topic.
    let nowhere = topics(dir.path(), &["list"]);
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(
        text(&nowhere.stderr)
            .contains("say where the topics are: --data-dir DIR, -c CONFIG or --api ADDRESS")
    );
    let bad = topics(
        dir.path(),
        &[
            "--data-dir",
            "data",
            "read",
            "web.requests",
            "--from",
            "soon",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("expected earliest, latest, an offset or an RFC 3339 time"));
    let missing = topics(dir.path(), &["--data-dir", "data", "read", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("no disk topic \"nope\"")
            && text(&missing.stderr).contains("the disk topics are: app.bad, web.requests"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn topics_list_and_read_go_through_the_api_of_a_running_agent_and_reset_is_refused() {
    let dir = TempDir::new().unwrap();
    let api_port = free_port();
    let dead_port = free_port();
    let lines: String = (0..30).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    write_file(dir.path(), "events.log", &lines);
    // The sink's store is down: its events stay retained in the memory topic.
    let config = write_file(
        dir.path(),
        "agent.toml",
        &format!(
            r#"data_dir = "data"

[api]
address = "127.0.0.1:{api_port}"

[sources.events]
type = "file"
include = ["events.log"]
follow = true
poll_interval = "50ms"
topic = "raw"

[pipelines.parse]
input = "raw"
output = "parsed"
steps = [{{ type = "parse", format = "json" }}]

[sinks.down]
type = "http"
input = "parsed"
uri = "http://127.0.0.1:{dead_port}/"
"#
        ),
    );
    let config = config.to_str().unwrap();
    let mut agent = sluice(dir.path())
        .args(["run", "-q", "-c", config])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{api_port}");
    let retained = wait_until(MINUTE, || {
        let (code, body) = curl(&[&format!("{api}/topics")]);
        code == 200
            && serde_json::from_str::<Value>(&body).is_ok_and(|topics| {
                topics
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|topic| topic["name"] == "parsed" && topic["end_offset"] == 30)
            })
    });
    assert!(retained, "the agent never published the 30 events");

    // -c gives the data_dir, held by the agent: list and read ask its admin API.
    let list = topics(dir.path(), &["-c", config, "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    assert!(
        listed.contains("parsed (memory): offsets 0..30\n"),
        "{listed}"
    );
    assert!(
        listed.contains("  subscription down: committed 0, lag 30\n"),
        "{listed}"
    );
    let read = topics(
        dir.path(),
        &["-c", config, "read", "parsed", "--from", "10", "-n", "5"],
    );
    assert!(read.status.success(), "{}", text(&read.stderr));
    assert_eq!(numbers(&read.stdout), [10, 11, 12, 13, 14]);
    let read = topics(
        dir.path(),
        &["--api", &format!("127.0.0.1:{api_port}"), "read", "parsed"],
    );
    assert_eq!(numbers(&read.stdout), (0..30).collect::<Vec<_>>());
    let missing = topics(dir.path(), &["-c", config, "read", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("no topic \"nope\"; the topics are: "),
        "{}",
        text(&missing.stderr)
    );

    let reset = topics(
        dir.path(),
        &["-c", config, "reset", "parsed", "down", "--to", "latest"],
    );
    assert_eq!(reset.status.code(), Some(1));
    let refused = text(&reset.stderr);
    assert!(
        refused.contains("cannot reset while an agent runs on the data_dir"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("(pid {})", agent.id())),
        "{refused}"
    );
    assert!(refused.contains("stop it first"), "{refused}");

    // verify only reads: it runs beside the agent (which has no disk topics here).
    let verify = topics(dir.path(), &["-c", config, "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    assert!(text(&verify.stdout).starts_with("no disk topics in data/topics"));

    agent.kill().unwrap();
    agent.wait().unwrap();
}
