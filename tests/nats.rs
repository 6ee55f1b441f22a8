//! Two tiers over NATS JetStream, with real `sluice` processes and a real `nats-server -js` on a
//! free port: two edge agents (file source → nats sink) and two central aggregators sharing one
//! durable consumer (nats source → aggregate count per id → file sink). Mid-stream one aggregator
//! is SIGKILLed (the other takes over its unacknowledged messages) and the broker is SIGKILLed
//! and restarted on the same store dir. Every event must be counted, none lost; events counted
//! twice (by the killed aggregator's store before its acknowledgements reached JetStream, then
//! again by the other) are counted and reported.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::stores::Nats;
use crate::support::{sluice, wait_until, wait_with_timeout};

/// Lines each edge writes.
const LINES: usize = 6_000;

fn spawn(dir: &Path, config: &str) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sluice.log"))
        .unwrap();
    sluice(dir)
        .args(["run", "-q", "-c", config])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn terminate(child: Child) -> ExitStatus {
    // SAFETY: signalling our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    wait_with_timeout(child, Duration::from_secs(60)).status
}

fn edge_config(dir: &Path, url: &str) -> String {
    format!(
        r#"
data_dir = "{dir}/data"

[sources.access]
type = "file"
topic = "raw"
include = ["{dir}/access.log"]
read_from = "beginning"
checkpoint_interval = "200ms"

[pipelines.parse]
input = "raw"
output = "events"
steps = [{{ type = "parse", format = "json", drop_raw = true }}]

[sinks.central]
type = "nats"
input = "events"
url = "{url}"
subject = "web.{{page}}"
jetstream = {{ stream = "WEB" }}
batch = {{ max_events = 500, timeout = "100ms" }}
retry = {{ initial = "50ms", max = "500ms" }}
"#,
        dir = dir.display()
    )
}

fn central_config(dir: &Path, url: &str) -> String {
    format!(
        r#"
data_dir = "{dir}/data"

[sources.edges]
type = "nats"
topic = "events"
url = "{url}"
subject = "web.>"
jetstream = {{ stream = "WEB", durable = "central", ack_wait = "2s" }}

[pipelines.count]
input = "events"
output = "counts"
steps = [
  {{ type = "aggregate", group_by = ["id"], window = "500ms", time = "processing", fields = {{ n = "count()" }} }},
]

[sinks.store]
type = "file"
input = "counts"
path = "{dir}/counts.ndjson"
batch = {{ timeout = "100ms" }}
"#,
        dir = dir.display()
    )
}

/// `id` → times counted, from the count rows of a store file (a line cut short by a kill was
/// never acknowledged, so its events were counted again elsewhere: skipped).
fn counted(path: &Path, into: &mut BTreeMap<String, i64>) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut rows = 0;
    for line in text.lines() {
        let Ok(row) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(id), Some(n)) = (row["id"].as_str(), row["n"].as_i64()) else {
            continue;
        };
        *into.entry(id.to_owned()).or_insert(0) += n;
        rows += 1;
    }
    rows
}

fn counts(dirs: &[&Path]) -> BTreeMap<String, i64> {
    let mut all = BTreeMap::new();
    for dir in dirs {
        counted(&dir.join("counts.ndjson"), &mut all);
    }
    all
}

#[test]
fn two_edges_two_aggregators_one_durable_survive_an_aggregator_kill_and_a_broker_restart() {
    let mut nats = Nats::start();
    let url = nats.url();
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = root.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let (edge1, edge2, central1, central2) =
        (dir("edge1"), dir("edge2"), dir("central1"), dir("central2"));
    for (path, config) in [
        (&edge1, edge_config(&edge1, &url)),
        (&edge2, edge_config(&edge2, &url)),
        (&central1, central_config(&central1, &url)),
        (&central2, central_config(&central2, &url)),
    ] {
        std::fs::write(path.join("sluice.toml"), config).unwrap();
    }
    let mut aggregator1 = Some(spawn(&central1, "sluice.toml"));
    let aggregator2 = spawn(&central2, "sluice.toml");
    let edges = [spawn(&edge1, "sluice.toml"), spawn(&edge2, "sluice.toml")];

    // Both edges write their lines over about four seconds; mid-way the first aggregator is
    // killed, then the broker, which comes back on the same store dir.
    let mut files: Vec<_> = [&edge1, &edge2]
        .iter()
        .map(|dir| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("access.log"))
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    let mut expected = Vec::with_capacity(2 * LINES);
    let chunk = 200;
    for start in (0..LINES).step_by(chunk) {
        for (edge, file) in files.iter_mut().enumerate() {
            let mut text = String::new();
            for n in start..start + chunk {
                let id = format!("e{edge}-{n:06}");
                text.push_str(&format!(
                    r#"{{"id":"{id}","page":"p{}","edge":{edge}}}"#,
                    n % 5
                ));
                text.push('\n');
                expected.push(id);
            }
            file.write_all(text.as_bytes()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(130));
        let step = start / chunk;
        if step == 10 {
            let mut killed = aggregator1.take().unwrap();
            killed.kill().unwrap();
            killed.wait().unwrap();
        }
        if step == 15 {
            nats.kill();
        }
        if step == 20 {
            nats.restart();
        }
    }
    let written = started.elapsed();

    let complete = wait_until(Duration::from_secs(60), || {
        let all = counts(&[&central1, &central2]);
        expected.iter().all(|id| all.contains_key(id))
    });
    let all = counts(&[&central1, &central2]);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !all.contains_key(*id))
        .collect();
    for edge in edges {
        assert!(terminate(edge).success());
    }
    assert!(terminate(aggregator2).success());
    let log = |dir: &Path| std::fs::read_to_string(dir.join("sluice.log")).unwrap_or_default();
    assert!(
        complete && missing.is_empty(),
        "{} of {} events never counted (first: {:?})\nedge1:\n{}\ncentral2:\n{}",
        missing.len(),
        expected.len(),
        missing.first(),
        log(&edge1),
        log(&central2)
    );

    let mut by_killed = BTreeMap::new();
    let rows_killed = counted(&central1.join("counts.ndjson"), &mut by_killed);
    let mut by_survivor = BTreeMap::new();
    counted(&central2.join("counts.ndjson"), &mut by_survivor);
    let all = counts(&[&central1, &central2]);
    let duplicates: i64 = all.values().map(|n| n - 1).sum();
    let counted_by_both = by_killed
        .keys()
        .filter(|id| by_survivor.contains_key(*id))
        .count();
    println!(
        "{} events written in {written:?}: all counted; {} by the killed aggregator ({rows_killed} rows), {} by the other; {duplicates} counted twice ({counted_by_both} by both aggregators)",
        expected.len(),
        by_killed.len(),
        by_survivor.len()
    );
    assert_eq!(all.len(), expected.len(), "nothing but the written ids");
    assert!(!by_killed.is_empty(), "the aggregators shared the work");
    // Duplicates come only from the two kills: rows the killed aggregator stored but had not
    // yet acknowledged, and messages the broker's kill caught between store and acknowledgement
    // (the edges publish a batch again, an aggregator counts a message again). A few seconds of
    // traffic at most, never a copy of the stream.
    assert!(
        duplicates < (expected.len() / 4) as i64,
        "{duplicates} duplicates: more than the kills can have had in flight"
    );
}
