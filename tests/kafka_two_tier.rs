//! Two tiers through Kafka, end to end with real processes: two edge agents (file → parse →
//! kafka sink) and two central aggregators in one consumer group (kafka source → aggregate →
//! file sink), against a real broker (tansu) on a free port. Every event is counted, none by
//! both aggregators while the group is stable; when one aggregator is `kill -9`ed mid-stream the
//! other takes over its partitions and nothing is lost (the recounted events are reported).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice_store_support::Tansu;
use tempfile::TempDir;

use crate::support::{sluice, wait_until, write_file};

/// Events per (edge, bucket) group.
const PER_GROUP: u64 = 100;

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(dir: &Path, name: &str, config: &str) -> Agent {
        let config = write_file(dir, &format!("{name}.toml"), config);
        let log = dir.join(format!("{name}.stderr"));
        let child = sluice(dir)
            .env("SLUICE_LOG", "info")
            .args(["run", "-q", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assignments(&self) -> usize {
        self.log().matches("Kafka partitions assigned").count()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn edge_config(dir: &Path, edge: &str, brokers: &str) -> String {
    let dir = dir.display();
    format!(
        r#"
        data_dir = "{dir}/data-edge-{edge}"

        [sources.lines]
        type = "file"
        include = ["{dir}/edge-{edge}.log"]
        topic = "lines"
        read_from = "beginning"
        poll_interval = "50ms"

        [pipelines.parse]
        input = "lines"
        output = "events"
        steps = [{{ type = "parse", format = "json", drop_raw = true }}]

        [sinks.kafka]
        type = "kafka"
        input = "events"
        brokers = ["{brokers}"]
        topic = "clicks"
        key_field = "bucket"
        batch = {{ timeout = "50ms" }}
        "#
    )
}

fn central_config(dir: &Path, name: &str, brokers: &str) -> String {
    let dir = dir.display();
    format!(
        r#"
        data_dir = "{dir}/data-{name}"

        [sources.edges]
        type = "kafka"
        topic = "clicks.raw"
        brokers = ["{brokers}"]
        topics = ["clicks"]
        group_id = "central"
        start_at = "earliest"
        decoding = "json"
        commit_interval = "200ms"
        librdkafka_options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

        [pipelines.count]
        input = "clicks.raw"
        output = "counts"
        steps = [{{ type = "aggregate", group_by = ["edge", "bucket"], window = "1s", time = "processing", fields = {{ hits = "count()" }} }}]

        [sinks.out]
        type = "file"
        input = "counts"
        path = "{dir}/counts-{name}.ndjson"
        batch = {{ timeout = "50ms" }}
        "#
    )
}

/// Appends events `range` of `edge` (bucket = n / PER_GROUP) to its log.
fn append(dir: &Path, edge: &str, range: std::ops::Range<u64>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("edge-{edge}.log")))
        .unwrap();
    let mut text = String::new();
    for n in range {
        text.push_str(&format!(
            "{{\"edge\":\"{edge}\",\"n\":{n},\"bucket\":{}}}\n",
            n / PER_GROUP
        ));
    }
    file.write_all(text.as_bytes()).unwrap();
}

/// Hits per (edge, bucket), summed over both aggregators' outputs.
fn counts(dir: &Path) -> BTreeMap<(String, i64), u64> {
    let mut counts = BTreeMap::new();
    for name in ["central-1", "central-2"] {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("counts-{name}.ndjson"))) else {
            continue;
        };
        for line in text.lines() {
            let Ok(row) = serde_json::from_str::<Value>(line) else {
                continue; // a line being written
            };
            let key = (
                row["edge"].as_str().unwrap_or_default().to_owned(),
                row["bucket"].as_i64().unwrap_or(-1),
            );
            *counts.entry(key).or_insert(0) += row["hits"].as_u64().unwrap_or(0);
        }
    }
    counts
}

/// Whether every group of buckets `0..buckets` of both edges has at least `PER_GROUP` hits.
fn complete(counts: &BTreeMap<(String, i64), u64>, buckets: i64) -> bool {
    ["a", "b"].iter().all(|edge| {
        (0..buckets).all(|bucket| {
            counts
                .get(&((*edge).to_owned(), bucket))
                .is_some_and(|hits| *hits >= PER_GROUP)
        })
    })
}

#[test]
fn kafka_two_tiers_count_every_event_once_and_survive_an_aggregator_kill() {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    let broker = Tansu::start();
    broker.create_topic("clicks", 4);
    let brokers = broker.address();

    let mut central_1 = Agent::start(
        dir,
        "central-1",
        &central_config(dir, "central-1", &brokers),
    );
    assert!(
        wait_until(Duration::from_secs(30), || central_1.assignments() >= 1),
        "central-1 joined no group:\n{}",
        central_1.log()
    );
    let central_2 = Agent::start(
        dir,
        "central-2",
        &central_config(dir, "central-2", &brokers),
    );
    assert!(
        wait_until(Duration::from_secs(30), || central_2.assignments() >= 1),
        "central-2 got no partitions:\n{}",
        central_2.log()
    );

    // A stable group: every event is counted by exactly one aggregator.
    let first_half = 2000;
    for edge in ["a", "b"] {
        append(dir, edge, 0..first_half);
    }
    let edges = ["a", "b"].map(|edge| {
        Agent::start(
            dir,
            &format!("edge-{edge}"),
            &edge_config(dir, edge, &brokers),
        )
    });
    let buckets = (first_half / PER_GROUP) as i64;
    assert!(
        wait_until(Duration::from_secs(60), || complete(&counts(dir), buckets)),
        "not every event was counted: {:?}\nedge:\n{}\ncentral-1:\n{}\ncentral-2:\n{}",
        counts(dir),
        edges[0].log(),
        central_1.log(),
        central_2.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let stable = counts(dir);
    assert_eq!(stable.len(), 2 * buckets as usize, "{stable:?}");
    assert!(
        stable.values().all(|hits| *hits == PER_GROUP),
        "counted twice: {:?}",
        stable
            .iter()
            .filter(|(_, hits)| **hits != PER_GROUP)
            .collect::<Vec<_>>()
    );
    let split: Vec<bool> = ["central-1", "central-2"]
        .iter()
        .map(|name| dir.join(format!("counts-{name}.ndjson")).exists())
        .collect();
    assert_eq!(split, [true, true], "both aggregators did part of the work");

    // Mid-stream, one aggregator dies; the other takes over its partitions. The edges keep
    // writing before and after the kill, so the dead aggregator had windows open.
    let total = 5000;
    let chunk = 500;
    let central_1_out = dir.join("counts-central-1.ndjson");
    let before = std::fs::metadata(&central_1_out).map_or(0, |meta| meta.len());
    let mut next = first_half;
    while next < total {
        for edge in ["a", "b"] {
            append(dir, edge, next..next + chunk);
        }
        next += chunk;
        if next == first_half + 2 * chunk {
            assert!(wait_until(Duration::from_secs(30), || {
                std::fs::metadata(&central_1_out).map_or(0, |meta| meta.len()) > before
            }));
            central_1.kill();
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let buckets = (total / PER_GROUP) as i64;
    assert!(
        wait_until(Duration::from_secs(90), || complete(&counts(dir), buckets)),
        "events lost after the kill: {:?}\n{}",
        counts(dir)
            .iter()
            .filter(|(_, hits)| **hits < PER_GROUP)
            .collect::<Vec<_>>(),
        central_2.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let after = counts(dir);
    let counted: u64 = after.values().sum();
    let duplicates = counted - 2 * total;
    eprintln!(
        "kafka two tiers: {} events, {counted} counted after the kill: {duplicates} counted twice \
         (in flight on the killed aggregator)",
        2 * total
    );
    assert!(after.values().all(|hits| *hits >= PER_GROUP));
}
