//! Acknowledgements end to end: a file source → a pipeline with an aggregate → a PostgreSQL sink
//! whose server is down. Whatever ends the first run — a shutdown that times out, or `kill -9` —
//! the source's checkpoint must not pass what the store has not confirmed, so a restart with the
//! server up delivers every row. Before acknowledgements were chained, the pipeline acknowledged
//! its input as soon as it published into the inner topic and the second run delivered nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::support::stores::Postgres;
use crate::support::{sluice, wait_until, wait_with_timeout, write_file};

const LINES: usize = 3_000;
const PAGES: [&str; 5] = ["/", "/cart", "/search", "/product", "/checkout"];

/// Writes `access.log` (one line every 200 ms of event time, over ten minutes) and returns the
/// expected hits per (minute, page).
fn write_log(dir: &Path) -> BTreeMap<(i64, String), i64> {
    let base = 1_767_225_600; // 2026-01-01T00:00:00Z
    let mut text = String::new();
    let mut expected = BTreeMap::new();
    for i in 0..LINES {
        let secs = base + (i as i64) / 5;
        let time = chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .format("%d/%b/%Y:%H:%M:%S +0000");
        let page = PAGES[i % PAGES.len()];
        text.push_str(&format!(
            "10.0.0.{} - - [{time}] \"GET {page} HTTP/1.1\" 200 512 \"-\" \"curl/8\" 0.010 req-{i}\n",
            i % 250
        ));
        *expected
            .entry((secs - secs.rem_euclid(60), page.to_owned()))
            .or_insert(0) += 1;
    }
    write_file(dir, "access.log", &text);
    expected
}

/// Where the topics between the source, the pipeline and the sink keep their events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Topics {
    Memory,
    Disk,
}

fn config(dir: &Path, url: &str, follow: bool, topics: Topics) -> String {
    let storage = match topics {
        Topics::Memory => "memory",
        Topics::Disk => "disk",
    };
    format!(
        r#"
data_dir = "{data}"
shutdown_timeout = "3s"

[sources.access]
type = "file"
include = ["{log}"]
read_from = "beginning"
follow = {follow}
topic = "raw"

[pipelines.per_minute]
input = "raw"
output = "stats"
steps = [
  {{ type = "parse", format = "nginx_combined_timed" }},
  {{ type = "filter", condition = "status < 400" }},
  {{ type = "aggregate", group_by = ["path"], window = "1m", fields = {{ hits = "count()" }} }},
]

[sinks.pg]
type = "postgres"
input = "stats"
url = "{url}"
table = "stats"
on_conflict = {{ columns = ["window_start", "path"], action = "nothing" }}
retry = {{ initial = "50ms", max = "200ms" }}

[topics.raw]
storage = "{storage}"

[topics.stats]
storage = "{storage}"
"#,
        data = dir.join("data").display(),
        log = dir.join("access.log").display(),
    )
}

async fn prepare() -> (Postgres, TempDir, BTreeMap<(i64, String), i64>) {
    let mut server = Postgres::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE stats (window_start timestamptz, window_end timestamptz, path text, \
             hits int8, PRIMARY KEY (window_start, path))",
        )
        .await
        .unwrap();
    drop(client);
    server.kill(); // the store is down during the first run
    let dir = TempDir::new().unwrap();
    let expected = write_log(dir.path());
    (server, dir, expected)
}

fn start(dir: &Path, config_name: &str) -> Child {
    sluice(dir)
        .args(["run", "-c", config_name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Gives the first run time to read every line (the windows hold them, or the output waits for
/// the store), then checks the source's checkpoint. With memory topics it must not have moved
/// past what the store confirmed: nothing. With disk topics it reaches the end of the file: every
/// line is stored in the first disk topic.
fn wait_for_everything_read(dir: &Path, topics: Topics) {
    let checkpoints = dir.join("data/sources/access/checkpoints.json");
    let offsets = || -> Vec<u64> {
        let mut offsets = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&checkpoints) {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            collect_offsets(&json, &mut offsets);
        }
        offsets
    };
    match topics {
        Topics::Memory => {
            std::thread::sleep(Duration::from_secs(3));
            let offsets = offsets();
            assert!(
                offsets.iter().all(|offset| *offset == 0),
                "a checkpoint moved while the store was down: {offsets:?}"
            );
        }
        Topics::Disk => {
            let size = std::fs::metadata(dir.join("access.log")).unwrap().len();
            assert!(
                wait_until(Duration::from_secs(30), || offsets().contains(&size)),
                "the checkpoint reaches the end of the file once the disk topic stored it: {:?}",
                offsets()
            );
        }
    }
}

fn collect_offsets(value: &serde_json::Value, offsets: &mut Vec<u64>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_u64()) {
                    ("offset", Some(offset)) => offsets.push(offset),
                    _ => collect_offsets(value, offsets),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_offsets(item, offsets);
            }
        }
        _ => {}
    }
}

/// The second run: the server is up, the source reads to the end and the run drains.
async fn rerun_and_check(
    server: &mut Postgres,
    dir: &Path,
    expected: &BTreeMap<(i64, String), i64>,
    topics: Topics,
) {
    server.restart();
    write_file(
        dir,
        "second.toml",
        &config(dir, &server.url(), false, topics),
    );
    let child = start(dir, "second.toml");
    let output =
        tokio::task::spawn_blocking(move || wait_with_timeout(child, Duration::from_secs(90)))
            .await
            .unwrap();
    assert!(
        output.status.success(),
        "second run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let client = server.client().await;
    let rows = client
        .query(
            "SELECT extract(epoch from window_start)::int8, path, hits FROM stats",
            &[],
        )
        .await
        .unwrap();
    let delivered: BTreeMap<(i64, String), i64> = rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect();
    let total: i64 = delivered.values().sum();
    assert_eq!(
        total, LINES as i64,
        "every line counted once in the delivered rows"
    );
    assert_eq!(&delivered, expected, "every row, with the right count");
}

async fn timed_out_shutdown_loses_no_row(topics: Topics) {
    let (mut server, dir, expected) = prepare().await;
    write_file(
        dir.path(),
        "first.toml",
        &config(dir.path(), &server.url(), true, topics),
    );
    let child = start(dir.path(), "first.toml");
    wait_for_everything_read(dir.path(), topics);
    // SIGTERM: the windows are flushed into the stats topic, the store stays down, and the
    // shutdown times out after 3 s.
    // SAFETY: kill(2) takes plain integers and touches no memory of this process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output =
        tokio::task::spawn_blocking(move || wait_with_timeout(child, Duration::from_secs(30)))
            .await
            .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("shutdown timed out"), "{stderr}");
    let says = match topics {
        Topics::Memory => "read again",
        Topics::Disk => "kept on disk and delivered to it on the next start",
    };
    assert!(
        stderr.contains(says),
        "the message says what happens to what was not delivered: {stderr}"
    );
    rerun_and_check(&mut server, dir.path(), &expected, topics).await;
}

async fn kill_loses_no_row(topics: Topics) {
    let (mut server, dir, expected) = prepare().await;
    write_file(
        dir.path(),
        "first.toml",
        &config(dir.path(), &server.url(), true, topics),
    );
    let mut child = start(dir.path(), "first.toml");
    wait_for_everything_read(dir.path(), topics);
    child.kill().unwrap();
    child.wait().unwrap();
    rerun_and_check(&mut server, dir.path(), &expected, topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_shutdown_with_the_store_down_loses_no_row() {
    timed_out_shutdown_loses_no_row(Topics::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_with_the_store_down_loses_no_row() {
    kill_loses_no_row(Topics::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_shutdown_with_the_store_down_loses_no_row_through_disk_topics() {
    timed_out_shutdown_loses_no_row(Topics::Disk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_with_the_store_down_loses_no_row_through_disk_topics() {
    kill_loses_no_row(Topics::Disk).await;
}
