//! The topology in process: wiring, competing workers, back-pressure and draining.

use std::time::Duration;

use sluice::config::load_str;
use sluice::metrics::Role;
use sluice::topology::{RunOutcome, Topology};
use tempfile::TempDir;

use crate::support::read_lines;

async fn run_to_end(config: &str) -> (RunOutcome, std::sync::Arc<sluice::metrics::Metrics>) {
    let loaded = load_str("test.toml", config).unwrap_or_else(|errors| panic!("{errors}"));
    let topology = Topology::build(&loaded.config).await.unwrap();
    let metrics = topology.metrics().clone();
    let mut running = topology.start();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        running.wait(std::future::pending()),
    )
    .await
    .expect("a finite run drains by itself");
    assert!(running.failures().is_empty(), "{:?}", running.failures());
    (outcome, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_pipeline_workers_pass_each_event_once() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.log");
    let config = format!(
        r#"
[sources.gen]
type = "generator"
format = "nginx"
count = 50000
topic = "raw"

[topics.raw]
max_events = 4096

[pipelines.copy]
input = "raw"
output = "copied"
workers = 4
steps = [{{ type = "filter", condition = 'exists(message)' }}]

[sinks.out]
type = "file"
input = "copied"
path = "{}"
encoding = "text"
"#,
        out.display()
    );
    let (outcome, metrics) = run_to_end(&config).await;
    assert_eq!(outcome, RunOutcome::Drained);
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 50_000);
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        50_000,
        "each event exactly once across 4 workers"
    );
    let pipeline = metrics.get("copy", Role::Pipeline).unwrap();
    assert_eq!(pipeline.events_in.get(), 50_000);
    assert_eq!(pipeline.events_out.get(), 50_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_an_infinite_source_and_drains() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.log");
    let config = format!(
        r#"
[sources.gen]
type = "generator"
format = "events"
rate = 20000
topic = "raw"

[sinks.out]
type = "file"
input = "raw"
path = "{}"
encoding = "text"
"#,
        out.display()
    );
    let loaded = load_str("test.toml", &config).unwrap();
    let topology = Topology::build(&loaded.config).await.unwrap();
    let metrics = topology.metrics().clone();
    let mut running = topology.start();
    let outcome = running
        .wait(tokio::time::sleep(Duration::from_millis(500)))
        .await;
    assert_eq!(outcome, RunOutcome::ShutDown);
    let produced = metrics.get("gen", Role::Source).unwrap().events_out.get();
    let written = metrics.get("out", Role::Sink).unwrap().events_out.get();
    assert!(produced > 1000, "the generator ran: {produced}");
    assert_eq!(
        written, produced,
        "everything produced was written before exiting"
    );
    assert_eq!(read_lines(&out).len() as u64, produced);
}
