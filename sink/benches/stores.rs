//! Store benchmarks: events/s into a real ClickHouse and PostgreSQL (started on free ports, as in
//! the store tests) and MiB/s of the file sink with and without gzip, through the driver.
//!
//! `cargo bench -p sluice-sink --bench stores` (needs clickhouse-server and PostgreSQL's binaries).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice_store_support as support;

use std::time::{Duration, Instant};

use sluice_pipelines::Event;
use sluice_sink::SinkContext;
use sluice_sink::driver::{DriverConfig, Outcome};
use sluice_sink::encoding::Compression;
use sluice_sink::sinks::{ClickhouseConfig, FileConfig, PostgresConfig};

use support::{Clickhouse, Postgres, Run, requests};

const EVENTS: i64 = 500_000;
const INPUT: i64 = 1000;

fn inputs() -> Vec<Vec<Event>> {
    (0..EVENTS / INPUT)
        .map(|n| requests(n * INPUT..n * INPUT + INPUT))
        .collect()
}

async fn drive(
    sink: Box<dyn sluice_sink::Sink>,
    mut config: DriverConfig,
    inputs: Vec<Vec<Event>>,
) -> Duration {
    config.batch.max_events = 10_000;
    config.batch.max_bytes = sluice_sink::units::ByteSize(64 << 20);
    let started = Instant::now();
    let mut run = Run::start(sink, config);
    for input in inputs {
        run.send(input).await;
    }
    let outcomes = run.finish().await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Delivered));
    started.elapsed()
}

async fn bench_clickhouse() {
    let server = Clickhouse::start();
    server
        .query("CREATE TABLE bench (request_id String, timestamp DateTime, path String, status Int32, \
                bytes Int64, request_time Float64, bot UInt8) ENGINE = MergeTree ORDER BY timestamp")
        .await;
    for compression in [Compression::None, Compression::Gzip] {
        server.query("TRUNCATE TABLE bench").await;
        let mut config = ClickhouseConfig::new(server.endpoint(), "bench");
        config.compression = compression;
        let elapsed = drive(
            Box::new(config.build().unwrap()),
            DriverConfig::default(),
            inputs(),
        )
        .await;
        let rows: i64 = server
            .query("SELECT count() FROM bench")
            .await
            .trim()
            .parse()
            .unwrap();
        assert_eq!(rows, EVENTS);
        println!(
            "BENCH clickhouse {compression:?}: {EVENTS} events in {elapsed:?} = {:.0} events/s",
            EVENTS as f64 / elapsed.as_secs_f64()
        );
    }
}

async fn bench_postgres() {
    let server = Postgres::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE bench (request_id text PRIMARY KEY, timestamp timestamptz, path text, \
                        status int4, bytes int8, request_time float8, bot bool)",
        )
        .await
        .unwrap();
    for on_conflict in [false, true] {
        client.batch_execute("TRUNCATE bench").await.unwrap();
        let mut config = PostgresConfig::new(server.url(), "bench");
        if on_conflict {
            config.on_conflict = Some(sluice_sink::sinks::postgres::OnConflict {
                columns: vec!["request_id".into()],
                action: Default::default(),
            });
        }
        let elapsed = drive(
            Box::new(config.build().await.unwrap()),
            DriverConfig::default(),
            inputs(),
        )
        .await;
        let rows: i64 = client
            .query_one("SELECT count(*) FROM bench", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, EVENTS);
        println!(
            "BENCH postgres COPY binary (on_conflict {on_conflict}): {EVENTS} events in {elapsed:?} = {:.0} events/s",
            EVENTS as f64 / elapsed.as_secs_f64()
        );
    }
    // Multi-row INSERT with parameters, for comparison (1000 rows x 7 params per statement).
    client.batch_execute("TRUNCATE bench").await.unwrap();
    let started = Instant::now();
    for input in inputs() {
        let mut sql = String::from("INSERT INTO bench VALUES ");
        let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
        for (i, event) in input.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let b = i * 7;
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            ));
            let ts = match event.get("timestamp") {
                Some(sluice_pipelines::Value::Timestamp(ts)) => std::time::SystemTime::from(*ts),
                _ => unreachable!(),
            };
            params.push(Box::new(
                event
                    .get("request_id")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ));
            params.push(Box::new(ts));
            params.push(Box::new(
                event.get("path").unwrap().as_str().unwrap().to_owned(),
            ));
            params.push(Box::new(
                event.get("status").unwrap().as_int().unwrap() as i32
            ));
            params.push(Box::new(event.get("bytes").unwrap().as_int().unwrap()));
            params.push(Box::new(
                event.get("request_time").unwrap().as_f64().unwrap(),
            ));
            params.push(Box::new(event.get("bot").unwrap().as_bool().unwrap()));
        }
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        client.execute(&sql, &refs).await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "BENCH postgres multi-row INSERT (1 connection, 1000 rows/statement): {EVENTS} events in {elapsed:?} = {:.0} events/s",
        EVENTS as f64 / elapsed.as_secs_f64()
    );
}

async fn bench_file_gzip() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [Compression::None, Compression::Gzip] {
        let path = dir.path().join(format!("bench-{compression:?}.ndjson"));
        let mut config = FileConfig::new(path.to_string_lossy());
        config.compression = compression;
        let inputs = inputs();
        let mut encoded = Vec::new();
        sluice_sink::encoding::encode_batch(
            &inputs[0],
            sluice_sink::encoding::Encoding::Ndjson,
            &mut encoded,
        );
        let mib = encoded.len() as f64 * inputs.len() as f64 / (1 << 20) as f64;
        let sink = config.build(&SinkContext::default()).await.unwrap();
        let elapsed = drive(Box::new(sink), DriverConfig::default(), inputs).await;
        let on_disk = std::fs::metadata(&path).unwrap().len() as f64 / (1 << 20) as f64;
        println!(
            "BENCH file {compression:?}: {mib:.1} MiB of NDJSON in {elapsed:?} = {:.1} MiB/s, {:.0} events/s ({on_disk:.1} MiB on disk)",
            mib / elapsed.as_secs_f64(),
            EVENTS as f64 / elapsed.as_secs_f64()
        );
    }
}

fn main() {
    // `cargo bench` passes flags such as `--bench`; a filter word picks benchmarks by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if wanted("clickhouse") {
        runtime.block_on(bench_clickhouse());
    }
    if wanted("postgres") {
        runtime.block_on(bench_postgres());
    }
    if wanted("file") {
        runtime.block_on(bench_file_gzip());
    }
}
