//! Per-step throughput: `cargo bench -p sluice-pipelines --bench steps`.
//!
//! Each benchmark runs batches of 1000 events, as pipeline workers do, built from generated
//! nginx lines or NDJSON clickstream events (`sluice_pipelines::test_engine::sample`). Throughput is
//! reported in bytes of input lines, so criterion's MiB/s compare with the end-to-end targets;
//! events/s is MiB/s divided by the average line size printed at the start.
//!
//! `encode_json` measures the JSON encoder every sink's hot path runs (`codec::json`): the nginx
//! events parsed by the preset (strings, integers, a float and a timestamp each) encoded as NDJSON
//! into one reused buffer; throughput in bytes of JSON written.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_pipelines::codec::json::encode_event;
use sluice_pipelines::test_engine::sample;
use sluice_pipelines::{Event, EventMeta, OnError, Step, StepConfig, StepContext};

const BATCH: usize = 1000;

/// The lines as one buffer, and each line as a slice of it (newline included, as sources give
/// them).
struct Input {
    lines: Vec<Bytes>,
    bytes: u64,
}

impl Input {
    fn new(lines: &[String]) -> Self {
        let mut buffer = Vec::new();
        let mut ranges = Vec::with_capacity(lines.len());
        for line in lines {
            let start = buffer.len();
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
            ranges.push(start..buffer.len());
        }
        let buffer = Bytes::from(buffer);
        let bytes = buffer.len() as u64;
        Input {
            lines: ranges
                .into_iter()
                .map(|range| buffer.slice(range))
                .collect(),
            bytes,
        }
    }

    fn events(&self) -> Vec<Event> {
        self.lines
            .iter()
            .map(|line| Event::from_raw(line.clone(), EventMeta::default()))
            .collect()
    }
}

fn steps(toml_text: &str) -> Vec<Box<dyn Step>> {
    #[derive(serde::Deserialize)]
    struct Pipeline {
        steps: Vec<StepConfig>,
    }
    let pipeline: Pipeline = toml::from_str(toml_text).expect("valid bench pipeline");
    pipeline
        .steps
        .iter()
        .map(|config| config.build().expect("bench step builds"))
        .collect()
}

/// Runs `pipeline` over `input` batch by batch; `prepare` runs first (untimed) on each batch.
fn bench(c: &mut Criterion, name: &str, input: &Input, prepare: &str, pipeline: &str) {
    let mut prepare = if prepare.is_empty() {
        Vec::new()
    } else {
        steps(prepare)
    };
    let mut group = c.benchmark_group("steps");
    group.throughput(Throughput::Bytes(input.bytes));
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                let mut ctx = StepContext::new(OnError::Drop);
                let mut events = input.events();
                for step in &mut prepare {
                    step.process(&mut events, &mut ctx);
                }
                let mut batches = Vec::with_capacity(events.len() / BATCH + 1);
                let mut rest = events.into_iter().peekable();
                while rest.peek().is_some() {
                    batches.push(rest.by_ref().take(BATCH).collect::<Vec<Event>>());
                }
                // Fresh steps each run: windowed state must start empty (the same events again
                // would all be late).
                (steps(pipeline), batches)
            },
            |(mut steps, batches)| {
                let mut ctx = StepContext::new(OnError::Drop);
                for mut batch in batches {
                    for step in &mut steps {
                        step.process(&mut batch, &mut ctx);
                    }
                    black_box(batch);
                }
                let mut out = Vec::new();
                for step in &mut steps {
                    step.flush(&mut out, &mut ctx);
                }
                black_box(out);
                steps
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

const NGINX_REGEX: &str = r#"^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<timestamp>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<request_time>\S+) (?P<request_id>\S+)$"#;

fn regex_parse() -> String {
    format!(
        "{{ type = \"parse\", format = \"regex\", pattern = '{NGINX_REGEX}', types = {{ status = \"int\", bytes = \"int\", request_time = \"float\", timestamp = \"timestamp|%d/%b/%Y:%H:%M:%S %z\" }} }}"
    )
}

const FILTER: &str = r#"{ type = "filter", condition = 'status >= 400 or agent ~ "(?i)bot"' }"#;
const PRESET: &str = r#"{ type = "parse", format = "nginx_combined_timed" }"#;
const JSON: &str = r#"{ type = "parse", format = "json" }"#;
const AGGREGATE_JSON: &str = r#"{ type = "aggregate", group_by = ["event", "page"], time_field = "ts", window = "1m", fields = { n = "count()" } }"#;
const AGGREGATE_NGINX: &str = r#"{ type = "aggregate", group_by = ["path", "status"], window = "1m", fields = { hits = "count()", p95 = "p95(request_time)", visitors = "count_distinct(ip)" } }"#;
const REMAP: &str = r#"{ type = "remap", set = { route = 'concat(method, " ", path)', kb = 'bytes / 1024' }, rename = { agent = "user_agent" }, remove = ["referer", "protocol"], coerce = { status = "string" } }"#;

fn all(c: &mut Criterion) {
    let nginx = Input::new(&sample::nginx_lines(7, 20_000));
    let events = Input::new(&sample::json_events(7, 20_000));
    eprintln!(
        "average line: nginx {} bytes, json {} bytes",
        nginx.bytes / nginx.lines.len() as u64,
        events.bytes / events.lines.len() as u64
    );
    let wrap = |steps: &[&str]| format!("steps = [{}]", steps.join(", "));
    let regex = regex_parse();

    bench(c, "parse_json", &events, "", &wrap(&[JSON]));
    bench(c, "parse_regex", &nginx, "", &wrap(&[&regex]));
    bench(
        c,
        "parse_nginx_combined_timed",
        &nginx,
        "",
        &wrap(&[PRESET]),
    );
    bench(
        c,
        "parse_regex+filter (S2 regex)",
        &nginx,
        "",
        &wrap(&[&regex, FILTER]),
    );
    bench(
        c,
        "parse_nginx_combined_timed+filter (S2 preset)",
        &nginx,
        "",
        &wrap(&[PRESET, FILTER]),
    );
    bench(c, "filter", &nginx, &wrap(&[PRESET]), &wrap(&[FILTER]));
    bench(c, "remap", &nginx, &wrap(&[PRESET]), &wrap(&[REMAP]));
    bench(
        c,
        "aggregate_nginx",
        &nginx,
        &wrap(&[PRESET]),
        &wrap(&[AGGREGATE_NGINX]),
    );
    bench(
        c,
        "parse_json+aggregate (S3)",
        &events,
        "",
        &wrap(&[JSON, AGGREGATE_JSON]),
    );
    bench(
        c,
        "aggregate_json",
        &events,
        &wrap(&[JSON]),
        &wrap(&[AGGREGATE_JSON]),
    );
    bench(
        c,
        "user_agent",
        &nginx,
        &wrap(&[PRESET]),
        &wrap(&[USER_AGENT]),
    );
    match geoip_database() {
        Ok((_dir, database)) => {
            let geoip = format!(
                "{{ type = \"geoip\", field = \"ip\", database = {:?} }}",
                database.display().to_string()
            );
            bench(c, "geoip", &nginx, &wrap(&[PRESET]), &wrap(&[&geoip]));
        }
        Err(why) => eprintln!("geoip skipped: {why}"),
    }
    encode_json(c, &nginx, &wrap(&[PRESET]));
}

/// Encodes the events `prepare` makes of `input` as NDJSON, batch by batch, into one buffer.
fn encode_json(c: &mut Criterion, input: &Input, prepare: &str) {
    let mut ctx = StepContext::new(OnError::Drop);
    let mut events = input.events();
    for step in &mut steps(prepare) {
        step.process(&mut events, &mut ctx);
    }
    let mut out = Vec::new();
    for event in &events {
        encode_event(event, &mut out);
        out.push(b'\n');
    }
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("encode_json", |b| {
        b.iter(|| {
            for batch in events.chunks(BATCH) {
                out.clear();
                for event in batch {
                    encode_event(event, &mut out);
                    out.push(b'\n');
                }
                black_box(&out);
            }
        })
    });
    group.finish();
}

const USER_AGENT: &str = r#"{ type = "user_agent", field = "agent" }"#;

/// A City database covering every public IPv4 /16 (four cities in turn), built with the PyPI
/// package `mmdb-writer` (`pip install mmdb-writer`).
fn geoip_database() -> Result<(tempfile::TempDir, std::path::PathBuf), String> {
    const SCRIPT: &str = r#"
import sys
from mmdb_writer import MMDBWriter, MmdbF64
from netaddr import IPSet, IPNetwork
w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoIP2-City',
               languages=['en'], description='sluice bench')
cities = [('GB', 'London', 51.5, -0.1), ('DE', 'Berlin', 52.5, 13.4),
          ('FR', 'Paris', 48.8, 2.3), ('US', 'Boston', 42.3, -71.0)]
nets = [[] for _ in cities]
for a in range(1, 224):
    for b in range(256):
        nets[(a * 256 + b) % len(cities)].append(IPNetwork('%d.%d.0.0/16' % (a, b)))
for (code, city, lat, lon), networks in zip(cities, nets):
    w.insert_network(IPSet(networks), {'country': {'iso_code': code},
                                       'city': {'names': {'en': city}},
                                       'location': {'latitude': MmdbF64(lat),
                                                    'longitude': MmdbF64(lon)}})
w.to_db_file(sys.argv[1])
"#;
    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
    let database = dir.path().join("bench.mmdb");
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&database)
        .output()
        .map_err(|error| format!("python3: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the database needs `pip install mmdb-writer`: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok((dir, database))
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = all
}
criterion_main!(benches);
