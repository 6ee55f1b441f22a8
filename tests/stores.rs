//! The real binary shipping into real stores: a PostgreSQL and a ClickHouse server started on free
//! ports, down when sluice starts and up later, with every row checked against an NDJSON archive
//! of the same events written by a second subscription.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::stores::{Clickhouse, Postgres};
use crate::support::{read_lines, sluice, wait_with_timeout, write_file};

const EVENTS: usize = 20_000;

/// A config: generated nginx lines → parse → `sink` and an NDJSON archive of the same events.
fn config(sink: &str) -> String {
    format!(
        r#"
[sources.gen]
type = "generator"
format = "nginx"
count = {EVENTS}
seed = 11
topic = "raw"

[pipelines.parse]
input = "raw"
output = "requests"
steps = [
  {{ type = "parse", format = "nginx_combined_timed", drop_raw = true }},
  {{ type = "remap", keep = ["request_id", "timestamp", "path", "status", "bytes", "request_time"] }},
]

[sinks.archive]
type = "file"
input = "requests"
path = "archive.ndjson"

{sink}
"#
    )
}

/// Runs `sluice run -c <config>` in `dir`; two seconds in (the store was down until then),
/// calls `meanwhile`; then waits for the run to finish, asserts it exited 0 and returns its
/// stderr.
async fn run_while(dir: &TempDir, config: &str, meanwhile: impl FnOnce()) -> String {
    let child = sluice(dir.path())
        .args(["run", "-c", config])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    meanwhile();
    let output =
        tokio::task::spawn_blocking(move || wait_with_timeout(child, Duration::from_secs(120)))
            .await
            .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

fn archive(dir: &TempDir) -> HashMap<String, Value> {
    read_lines(&dir.path().join("archive.ndjson"))
        .iter()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            (event["request_id"].as_str().unwrap().to_owned(), event)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_start_receives_every_event_exactly_once() {
    let mut server = Postgres::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE requests (request_id text PRIMARY KEY, timestamp timestamptz, \
             path text, status int4, bytes int8, request_time float8)",
        )
        .await
        .unwrap();
    drop(client);
    server.kill(); // the store is down when sluice starts

    let dir = TempDir::new().unwrap();
    let sink = format!(
        r#"[sinks.pg]
type = "postgres"
input = "requests"
url = "{}"
table = "requests"
on_conflict = {{ columns = ["request_id"], action = "nothing" }}
retry = {{ initial = "50ms", max = "500ms" }}
"#,
        server.url()
    );
    write_file(dir.path(), "pg.toml", &config(&sink));
    let stderr = run_while(&dir, "pg.toml", || server.restart()).await;
    // A down store is logged once per change of state, not once per retry (there were dozens).
    let down = stderr.matches("Store cannot be reached").count();
    assert!((1..=2).contains(&down), "{down} times:\n{stderr}");
    assert!(!stderr.contains("retrying."), "{stderr}");

    let expected = archive(&dir);
    assert_eq!(expected.len(), EVENTS);
    let client = server.client().await;
    let rows = client
        .query(
            "SELECT request_id, path, status, bytes, request_time, \
             to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM requests",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), EVENTS, "every event exactly once");
    for row in rows {
        let id: String = row.get(0);
        let event = &expected[&id];
        assert_eq!(
            row.get::<_, String>(1),
            event["path"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(
            i64::from(row.get::<_, i32>(2)),
            event["status"].as_i64().unwrap(),
            "{id}"
        );
        assert_eq!(Some(row.get::<_, i64>(3)), event["bytes"].as_i64(), "{id}");
        let took: f64 = row.get(4);
        assert!(
            (took - event["request_time"].as_f64().unwrap()).abs() < 1e-9,
            "{id}"
        );
        assert_eq!(
            row.get::<_, String>(5),
            event["timestamp"].as_str().unwrap(),
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_at_start_receives_every_event() {
    let mut server = Clickhouse::start();
    server
        .query(
            "CREATE TABLE requests (request_id String, timestamp DateTime, path String, \
             status Int32, bytes Int64, request_time Float64) \
             ENGINE = MergeTree ORDER BY (timestamp, request_id)",
        )
        .await;
    server.kill(); // down when sluice starts

    let dir = TempDir::new().unwrap();
    let sink = format!(
        r#"[sinks.ch]
type = "clickhouse"
input = "requests"
endpoint = "{}"
table = "requests"
retry = {{ initial = "50ms", max = "500ms" }}
"#,
        server.endpoint()
    );
    write_file(dir.path(), "ch.toml", &config(&sink));
    let stderr = run_while(&dir, "ch.toml", || server.restart()).await;
    // `endpoint` is the deprecated name of `url`: it still works, with a warning at its line.
    assert!(
        stderr.contains(
            "warning: ch.toml:25:1: sinks.ch.endpoint: deprecated key `endpoint`: use `url`"
        ),
        "{stderr}"
    );

    let expected = archive(&dir);
    let answer = server
        .query(
            "SELECT request_id, path, status, bytes, request_time, \
             formatDateTime(timestamp, '%Y-%m-%dT%H:%M:%SZ', 'UTC') AS ts FROM requests FORMAT JSONEachRow",
        )
        .await;
    let rows: Vec<Value> = answer
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Without a unique key ClickHouse keeps retried duplicates: at least once, each row correct.
    assert!(rows.len() >= EVENTS, "{} rows", rows.len());
    let mut seen = std::collections::HashSet::new();
    for row in &rows {
        let id = row["request_id"].as_str().unwrap();
        seen.insert(id.to_owned());
        let event = &expected[id];
        assert_eq!(row["path"], event["path"], "{id}");
        assert_eq!(row["status"].as_i64(), event["status"].as_i64(), "{id}");
        // JSONEachRow quotes 64-bit integers.
        let bytes: i64 = row["bytes"]
            .as_str()
            .map_or_else(|| row["bytes"].as_i64().unwrap(), |s| s.parse().unwrap());
        assert_eq!(Some(bytes), event["bytes"].as_i64(), "{id}");
        assert_eq!(
            row["request_time"].as_f64(),
            event["request_time"].as_f64(),
            "{id}"
        );
        assert_eq!(row["ts"], event["timestamp"], "{id}");
    }
    assert_eq!(seen.len(), EVENTS, "every event arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_postgres_rejects_land_in_the_dead_letter_topic_with_the_error() {
    let server = Postgres::start();
    let client = server.client().await;
    // Server errors are refused by a CHECK constraint: the store rejects those rows for good.
    client
        .batch_execute(
            "CREATE TABLE requests (request_id text PRIMARY KEY, timestamp timestamptz, \
             path text, status int4 CHECK (status < 500), bytes int8, request_time float8)",
        )
        .await
        .unwrap();
    let dir = TempDir::new().unwrap();
    let sink = format!(
        r#"[sinks.pg]
type = "postgres"
input = "requests"
url = "{}"
table = "requests"

[sinks.rejected]
type = "file"
input = "dead_letter"
path = "rejected.ndjson"
"#,
        server.url()
    );
    write_file(dir.path(), "dl.toml", &config(&sink));
    run_while(&dir, "dl.toml", || ()).await;

    let expected = archive(&dir);
    let server_errors: std::collections::BTreeSet<String> = expected
        .values()
        .filter(|event| event["status"].as_i64().unwrap() >= 500)
        .map(|event| event["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(server_errors.len() > 100, "the generator makes some 5xx");
    let rejected: Vec<Value> = read_lines(&dir.path().join("rejected.ndjson"))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let rejected_ids: std::collections::BTreeSet<String> = rejected
        .iter()
        .map(|event| event["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        rejected_ids, server_errors,
        "exactly the rows the store refused"
    );
    for event in &rejected {
        assert_eq!(event["dead_letter"]["sink"], "pg");
        let error = event["dead_letter"]["error"].as_str().unwrap();
        assert!(error.contains("violates check constraint"), "{error}");
    }
    let stored: i64 = client
        .query_one("SELECT count(*) FROM requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored as usize,
        EVENTS - server_errors.len(),
        "the good rows all landed"
    );
}

/// A finite run: `app.log` (read once) straight into the table `table` of `server`.
fn finite_config(server: &Postgres, table: &str) -> String {
    format!(
        r#"data_dir = "state"
[sources.log]
type = "file"
include = ["app.log"]
follow = false
topic = "raw"

[sinks.pg]
type = "postgres"
input = "raw"
url = "{}"
table = "{table}"
columns = {{ line = "message" }}
"#,
        server.url()
    )
}

/// Runs `sluice run <args>` in `dir` (within a minute); returns the exit code, stderr and how
/// long it took.
fn run_sluice(dir: &TempDir, args: &[&str]) -> (Option<i32>, String, Duration) {
    let started = std::time::Instant::now();
    let mut command = sluice(dir.path());
    command.arg("run").args(args);
    let output = crate::support::run_with_timeout(command, Duration::from_secs(60));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

/// Regression (issue 10, item 4): a PostgreSQL sink whose table does not exist retried forever,
/// so a `follow = false` run never ended. Now the run ends with exit 1 and the store's message
/// with what to do, well within the shutdown timeout — and since nothing was acknowledged, the
/// next run, once the table exists, delivers every line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_missing_table_ends_a_finite_run_with_exit_1_and_loses_nothing() {
    let server = Postgres::start();
    let dir = TempDir::new().unwrap();
    let lines: String = (0..5000).map(|n| format!("line {n:05}\n")).collect();
    write_file(dir.path(), "app.log", &lines);
    write_file(dir.path(), "pg.toml", &finite_config(&server, "lines"));

    let (code, stderr, took) = run_sluice(&dir, &["-c", "pg.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        stderr.contains("error: sinks.pg: the store refuses the sink as configured")
            && stderr.contains("does not exist")
            && stderr.contains("create the table, or fix `table`"),
        "{stderr}"
    );

    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE lines (line text)")
        .await
        .unwrap();
    let (code, stderr, _) = run_sluice(&dir, &["-c", "pg.toml", "--require-healthy"]);
    assert_eq!(code, Some(0), "{stderr}");
    let rows = client
        .query("SELECT line FROM lines ORDER BY line", &[])
        .await
        .unwrap();
    let stored: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let expected: Vec<String> = lines.lines().map(str::to_owned).collect();
    assert_eq!(stored, expected, "every line, once");
}

/// Issue 10, item 4: `--require-healthy` checks every sink before anything starts and exits 1
/// with the reason: a missing table, a server that is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_healthy_exits_1_at_start_with_the_reason() {
    let mut server = Postgres::start();
    let dir = TempDir::new().unwrap();
    write_file(dir.path(), "app.log", "one\ntwo\n");
    write_file(dir.path(), "pg.toml", &finite_config(&server, "nowhere"));

    let (code, stderr, took) = run_sluice(&dir, &["-c", "pg.toml", "--require-healthy"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        stderr.contains(
            "error: sinks.pg: healthcheck failed: PostgreSQL: table \"nowhere\" does not exist"
        ) && stderr.contains("create the table")
            && stderr.contains("nothing was started"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("state/sources").exists(),
        "nothing read, nothing checkpointed (only the data_dir's lock is taken)"
    );

    server.kill();
    let (code, stderr, _) = run_sluice(&dir, &["-c", "pg.toml", "--require-healthy"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error: sinks.pg: healthcheck failed: cannot connect to PostgreSQL"),
        "{stderr}"
    );
}

/// Regression (issue 10, item 8): the file sink's `%Y-%m-%d` used the wall clock, so a backfill
/// of January landed in today's folder. Through the real binary: nginx lines of 14 and 15
/// January 2026 (one at 23:30 -01:00, which is the 15th in UTC) land in those days' folders.
#[test]
fn backfilled_access_log_lands_in_the_folders_of_its_own_days() {
    let dir = TempDir::new().unwrap();
    let line = |time: &str, n: u32| {
        format!("10.0.0.{n} - - [{time}] \"GET /page/{n} HTTP/1.1\" 200 512 \"-\" \"curl/8.0\"\n")
    };
    let log = [
        line("14/Jan/2026:09:00:00 +0000", 1),
        line("14/Jan/2026:23:59:59 +0000", 2),
        line("15/Jan/2026:00:00:00 +0000", 3),
        line("14/Jan/2026:23:30:00 -0100", 4),
    ]
    .concat();
    write_file(dir.path(), "access.log", &log);
    write_file(
        dir.path(),
        "backfill.toml",
        r#"data_dir = "state"
[sources.access]
type = "file"
include = ["access.log"]
follow = false
topic = "raw"

[pipelines.parse]
input = "raw"
output = "requests"
steps = [{ type = "parse", format = "nginx_combined", drop_raw = true }]

[sinks.archive]
type = "file"
input = "requests"
path = "archive/%Y-%m-%d/requests.ndjson"
"#,
    );
    crate::support::run_ok(dir.path(), "backfill.toml");
    let ips = |day: &str| -> Vec<String> {
        read_lines(&dir.path().join(format!("archive/{day}/requests.ndjson")))
            .iter()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["ip"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ips("2026-01-14"), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(ips("2026-01-15"), ["10.0.0.3", "10.0.0.4"]);
    let days: Vec<String> = std::fs::read_dir(dir.path().join("archive"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(days.len(), 2, "nothing in today's folder: {days:?}");
}
