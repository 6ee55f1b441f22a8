//! `sluice topics` end to end: the real binary on the data_dir a real run left, and against a
//! running agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{curl, free_port, run_ok, run_with_timeout, sluice, wait_until, write_file};

const MINUTE: Duration = Duration::from_secs(60);

fn topics(dir: &Path, args: &[&str]) -> Output {
    let mut command = sluice(dir);
    command.arg("topics").args(args);
    run_with_timeout(command, MINUTE)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `n` of each event printed: a field of a parsed event, or in the JSON of a raw line.
fn numbers(stdout: &[u8]) -> Vec<i64> {
    text(stdout)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            match event["n"].as_i64() {
                Some(n) => n,
                None => {
                    let raw: Value = serde_json::from_str(event["message"].as_str().unwrap())
                        .unwrap_or_else(|_| panic!("no n in {line}"));
                    raw["n"].as_i64().unwrap()
                }
            }
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

/// The `n` of lines `line N` that a file sink wrote (`{"message":"line N"}`) or `read` printed.
fn line_numbers(ndjson: &[u8]) -> Vec<u64> {
    text(ndjson)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            let message = event["message"].as_str().unwrap();
            message.strip_prefix("line ").unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn topics_list_read_reset_and_verify_work_offline_on_the_data_dir_of_a_real_run() {
    let dir = TempDir::new().unwrap();
    let lines: String = (0..20_000).map(|n| format!("line {n}\n")).collect();
    write_file(dir.path(), "app.log", &lines);
    write_file(
        dir.path(),
        "agent.toml",
        r#"data_dir = "data"

[sources.app]
type = "file"
include = ["app.log"]
follow = false
topic = "raw"

[topics.raw]
storage = "disk"
segment_bytes = "64KiB"

[sinks.out]
type = "file"
input = "raw"
path = "out.ndjson"
"#,
    );
    run_ok(dir.path(), "agent.toml");
    let delivered = || line_numbers(&std::fs::read(dir.path().join("out.ndjson")).unwrap());
    assert_eq!(delivered(), (0..20_000).collect::<Vec<_>>());

    let list = topics(dir.path(), &["-c", "agent.toml", "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    assert!(
        listed.contains("raw (disk): offsets 0..20000, "),
        "{listed}"
    );
    assert!(listed.contains(" segments, appended 20"), "{listed}");
    assert!(
        listed.contains("  subscription out: committed 20000, lag 0\n"),
        "{listed}"
    );
    let json = topics(dir.path(), &["list", "--data-dir", "data", "--json"]);
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    let raw = json
        .as_array()
        .unwrap()
        .iter()
        .find(|topic| topic["name"] == "raw")
        .unwrap();
    assert!(raw["segments"].as_u64().unwrap() > 2, "{raw}");
    assert_eq!(raw["subscriptions"][0]["name"], "out");

    let read = topics(
        dir.path(),
        &[
            "-c",
            "agent.toml",
            "read",
            "raw",
            "--from",
            "4242",
            "-n",
            "4",
        ],
    );
    assert!(read.status.success(), "{}", text(&read.stderr));
    assert_eq!(line_numbers(&read.stdout), [4242, 4243, 4244, 4245]);
    let all = topics(dir.path(), &["--data-dir", "data", "read", "raw"]);
    assert_eq!(line_numbers(&all.stdout), (0..20_000).collect::<Vec<_>>());
    let since = topics(
        dir.path(),
        &[
            "--data-dir",
            "data",
            "read",
            "raw",
            "--from",
            "2000-01-01T00:00:00Z",
            "-n",
            "1",
        ],
    );
    assert_eq!(line_numbers(&since.stdout), [0]);
    let future = topics(
        dir.path(),
        &[
            "--data-dir",
            "data",
            "read",
            "raw",
            "--from",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(future.status.success());
    assert!(future.stdout.is_empty());

    // Rewind the sink: the next run delivers from there again.
    let reset = topics(
        dir.path(),
        &["-c", "agent.toml", "reset", "raw", "out", "--to", "15000"],
    );
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert_eq!(
        text(&reset.stdout),
        "raw out: committed offset 20000 -> 15000 (5000 events to read on the next start)\n"
    );
    let listed = text(&topics(dir.path(), &["--data-dir", "data", "list"]).stdout);
    assert!(
        listed.contains("  subscription out: committed 15000, lag 5000\n"),
        "{listed}"
    );
    run_ok(dir.path(), "agent.toml");
    let again = delivered();
    let replayed = &again[20_000..];
    assert!(
        replayed.ends_with(&(15_000..20_000).collect::<Vec<_>>()),
        "replayed {}..{} ({} lines)",
        replayed[0],
        replayed[replayed.len() - 1],
        replayed.len()
    );
    assert!(
        replayed.len() < 6000,
        "at most the batch holding 15000 again: {}",
        replayed.len()
    );

    let verify = topics(dir.path(), &["-c", "agent.toml", "verify", "raw"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    let verified = text(&verify.stdout);
    assert!(verified.starts_with("raw: OK: "), "{verified}");
    assert!(verified.contains(" records, 20000 events, "), "{verified}");

    // A flipped byte in the middle of the first segment: verify finds it and changes nothing.
    let data = dir.path().join("data");
    let segment = data.join("topics/raw/00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x08;
    std::fs::write(&segment, &bytes).unwrap();
    let before = snapshot(&data);
    let verify = topics(dir.path(), &["--data-dir", "data", "verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify.stderr));
    let verified = text(&verify.stdout);
    assert!(verified.contains("raw: CORRUPT: "), "{verified}");
    assert!(
        verified.contains("corrupt record in segment 0 at byte "),
        "{verified}"
    );
    assert!(
        verified.contains("quarantined on the next start"),
        "{verified}"
    );
    assert_eq!(snapshot(&data), before, "verify changed a file");

    // Mistakes: no target, a bad position, an unknown topic or subscription.
    let nowhere = topics(dir.path(), &["list"]);
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(
        text(&nowhere.stderr)
            .contains("say where the topics are: --data-dir DIR, -c CONFIG or --api ADDRESS")
    );
    let bad = topics(
        dir.path(),
        &["--data-dir", "data", "read", "raw", "--from", "soon"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("expected earliest, latest, an offset or an RFC 3339 time"));
    let missing = topics(dir.path(), &["--data-dir", "data", "read", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("no disk topic \"nope\""),
        "{}",
        text(&missing.stderr)
    );
    assert!(
        text(&missing.stderr).contains("the disk topics are: "),
        "{}",
        text(&missing.stderr)
    );
    let unknown = topics(
        dir.path(),
        &["--data-dir", "data", "reset", "raw", "outt", "--to", "0"],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr)
            .contains("topic \"raw\" has no subscription \"outt\"; its subscriptions are: out"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn topics_list_and_read_go_through_the_api_of_a_running_agent_and_reset_is_refused() {
    let dir = TempDir::new().unwrap();
    let api_port = free_port();
    let dead_port = free_port();
    let lines: String = (0..30).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    write_file(dir.path(), "events.log", &lines);
    // The sinks' store is down: the memory topic `raw` retains what `down` did not
    // acknowledge, the disk topic `parsed` stores what the pipeline made.
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

[sinks.down]
type = "http"
input = "raw"
url = "http://127.0.0.1:{dead_port}/"

[pipelines.parse]
input = "raw"
output = "parsed"
steps = [{{ type = "parse", format = "json" }}]

[topics.parsed]
storage = "disk"

[sinks.down_too]
type = "http"
input = "parsed"
url = "http://127.0.0.1:{dead_port}/"
"#
        ),
    );
    let config = config.to_str().unwrap();
    let mut agent = sluice(dir.path())
        .args(["run", "-q", "-c", config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{api_port}");
    let published = wait_until(MINUTE, || {
        let (code, body) = curl(&[&format!("{api}/topics")]);
        code == 200
            && serde_json::from_str::<Value>(&body).is_ok_and(|topics| {
                let find = |name: &str| {
                    topics
                        .as_array()
                        .and_then(|all| all.iter().find(|topic| topic["name"] == name))
                        .cloned()
                        .unwrap_or_default()
                };
                // `raw` got all 30 lines, `parsed` stored all 30 events.
                find("raw")["end_offset"] == 30 && find("parsed")["disk"]["durable_end"] == 30
            })
    });
    assert!(published, "the agent never stored the 30 events");

    // -c gives the data_dir, held by the agent: list and read ask its admin API.
    let list = topics(dir.path(), &["-c", config, "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    assert!(listed.contains("raw (memory): offsets 0..30\n"), "{listed}");
    assert!(
        listed.contains("  subscription down: committed 0, lag 30\n"),
        "{listed}"
    );
    assert!(
        listed.contains("parsed (disk): offsets 0..30, "),
        "{listed}"
    );
    assert!(listed.contains(" in 1 segment, appended 20"), "{listed}");
    assert!(
        listed.contains("  subscription down_too: committed 0, lag 30\n"),
        "{listed}"
    );
    let read = topics(
        dir.path(),
        &["-c", config, "read", "raw", "--from", "10", "-n", "5"],
    );
    assert!(read.status.success(), "{}", text(&read.stderr));
    assert_eq!(numbers(&read.stdout), [10, 11, 12, 13, 14]);
    let read = topics(
        dir.path(),
        &["--api", &format!("127.0.0.1:{api_port}"), "read", "parsed"],
    );
    assert_eq!(numbers(&read.stdout), (0..30).collect::<Vec<_>>());
    // A time is looked up in the disk topic's files, then read through the agent.
    let since = topics(
        dir.path(),
        &[
            "-c",
            config,
            "read",
            "parsed",
            "--from",
            "2000-01-01T00:00:00Z",
            "-n",
            "2",
        ],
    );
    assert!(since.status.success(), "{}", text(&since.stderr));
    assert_eq!(numbers(&since.stdout), [0, 1]);
    let missing = topics(dir.path(), &["-c", config, "read", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("no topic \"nope\"; the topics are: "),
        "{}",
        text(&missing.stderr)
    );

    let reset = topics(
        dir.path(),
        &[
            "-c", config, "reset", "parsed", "down_too", "--to", "latest",
        ],
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

    // verify only reads: it runs beside the agent.
    let verify = topics(dir.path(), &["-c", config, "verify", "parsed"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    assert!(
        text(&verify.stdout).starts_with("parsed: OK: "),
        "{}",
        text(&verify.stdout)
    );

    agent.kill().unwrap();
    agent.wait().unwrap();
}
