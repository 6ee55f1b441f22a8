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

/// Waits for the JSON lines of `path` to number `n` (a minute at most) and returns them.
fn wait_for_rows(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let rows = || -> Vec<serde_json::Value> {
        crate::support::read_lines(path)
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    wait_until(Duration::from_secs(60), || rows().len() >= n);
    rows()
}

#[test]
fn jetstream_source_decodes_payloads_stamps_fields_and_acks_only_delivered_messages() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let jetstream = runtime.block_on(async {
        let jetstream = async_nats::jetstream::new(nats.client().await);
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: "WEB".into(),
                subjects: vec!["web.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        // Published before the consumer exists: `deliver_policy = "all"` reads them.
        for payload in [
            "{\"n\":1}\n{\"n\":2}\n",
            "[{\"n\":3},{\"n\":4}]",
            "a text line\nanother",
            "{\"n\": broken",
        ] {
            jetstream
                .publish("web.click", payload.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        jetstream
    });
    let out = dir.path().join("out.ndjson");
    std::fs::write(
        dir.path().join("sluice.toml"),
        format!(
            r#"
data_dir = "{dir}/data"

[sources.edges]
type = "nats"
topic = "events"
url = "{url}"
subject = "web.>"
jetstream = {{ stream = "WEB", durable = "central", ack_wait = "2s" }}
sequence_field = "seq"

[sinks.out]
type = "file"
input = "events"
path = "{out}"
batch = {{ timeout = "50ms" }}

[sinks.bad]
type = "file"
input = "dead_letter"
path = "{dir}/dead.ndjson"
batch = {{ timeout = "50ms" }}
"#,
            dir = dir.path().display(),
            url = nats.url(),
            out = out.display()
        ),
    )
    .unwrap();
    let agent = spawn(dir.path(), "sluice.toml");
    let rows = wait_for_rows(&out, 6);
    assert_eq!(rows.len(), 6, "{rows:?}");
    let numbers: Vec<i64> = rows.iter().filter_map(|row| row["n"].as_i64()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(rows[4]["message"], "a text line");
    assert_eq!(rows[5]["message"], "another");
    for row in &rows {
        assert_eq!(row["nats_subject"], "web.click");
        assert!(row["nats_timestamp"].as_str().unwrap().starts_with("20"));
    }
    assert_eq!(rows[0]["seq"], 1);
    assert_eq!(rows[5]["seq"], 3);
    let dead = wait_for_rows(&dir.path().join("dead.ndjson"), 1);
    assert_eq!(dead[0]["dead_letter"]["source"], "edges", "{dead:?}");

    // Delivered, so acknowledged: the durable has nothing pending or unacknowledged, and a
    // restart reads nothing again.
    let settled = wait_until(Duration::from_secs(10), || {
        runtime.block_on(async {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = jetstream
                .get_consumer_from_stream("central", "WEB")
                .await
                .unwrap();
            let info = consumer.info().await.unwrap();
            info.num_ack_pending == 0 && info.num_pending == 0
        })
    });
    assert!(settled, "every message acknowledged");
    assert!(terminate(agent).success());
    let agent = spawn(dir.path(), "sluice.toml");
    runtime.block_on(async {
        jetstream
            .publish("web.view", "{\"n\":5}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let rows = wait_for_rows(&out, 7);
    assert!(terminate(agent).success());
    assert_eq!(
        rows.len(),
        7,
        "only the new message after a restart: {rows:?}"
    );
    assert_eq!(rows[6]["n"], 5);
    assert_eq!(rows[6]["nats_subject"], "web.view");
}

#[test]
fn core_nats_source_shares_a_queue_group() {
    let nats = Nats::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let agents: Vec<Child> = dirs
        .iter()
        .map(|dir| {
            std::fs::write(
                dir.path().join("sluice.toml"),
                format!(
                    r#"
data_dir = "{dir}/data"

[sources.beacons]
type = "nats"
topic = "events"
url = "{url}"
subject = "beacons.*"
queue = "central"

[sinks.out]
type = "file"
input = "events"
path = "{dir}/out.ndjson"
batch = {{ timeout = "50ms" }}
"#,
                    dir = dir.path().display(),
                    url = nats.url()
                ),
            )
            .unwrap();
            spawn(dir.path(), "sluice.toml")
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(nats.client());
    // Core NATS keeps nothing for a subscriber that is not there yet: probe until both members
    // have received something.
    let both_listen = wait_until(Duration::from_secs(30), || {
        runtime.block_on(async {
            for _ in 0..10 {
                client
                    .publish("beacons.probe", "{\"probe\":true}".into())
                    .await
                    .unwrap();
            }
            client.flush().await.unwrap();
        });
        std::thread::sleep(Duration::from_millis(200));
        dirs.iter().all(|dir| {
            std::fs::read_to_string(dir.path().join("out.ndjson"))
                .is_ok_and(|text| text.contains("probe"))
        })
    });
    assert!(both_listen, "both members subscribed");
    runtime.block_on(async {
        for n in 0..1000 {
            client
                .publish("beacons.click", format!("{{\"n\":{n}}}").into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
    });
    let total = || -> Vec<Vec<i64>> {
        dirs.iter()
            .map(|dir| {
                crate::support::read_lines(&dir.path().join("out.ndjson"))
                    .iter()
                    .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                    .filter_map(|row| row["n"].as_i64())
                    .collect()
            })
            .collect()
    };
    assert!(wait_until(Duration::from_secs(30), || total()
        .iter()
        .map(Vec::len)
        .sum::<usize>()
        >= 1000));
    for agent in agents {
        assert!(terminate(agent).success());
    }
    let shares = total();
    let mut all: Vec<i64> = shares.concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..1000).collect::<Vec<_>>(),
        "each message to one member"
    );
    assert!(
        shares.iter().all(|share| !share.is_empty()),
        "both members got some"
    );
}

#[test]
fn bad_nats_configs_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        r#"[sources.edges]
type = "nats"
topic = "events"
url = "nats://127.0.0.1:4222"
subject = "web.>"
jetstream = { stream = "WEB.X", durable = "central" }

[sinks.out]
type = "nats"
input = "events"
url = "nats://127.0.0.1:4222"
subject = "web..{event}"
"#,
    )
    .unwrap();
    let mut command = sluice(dir.path());
    command.args(["validate", "-c", "bad.toml"]);
    let output = crate::support::run_with_timeout(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "bad.toml:6:15: sources.edges.jetstream.stream: \"WEB.X\" is not a stream name"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:12:1: sinks.out.subject: \"web..{event}\" is not a NATS subject: it has an empty token"),
        "{stderr}"
    );
}
