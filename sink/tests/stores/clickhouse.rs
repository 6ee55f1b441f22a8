//! The clickhouse sink against a real ClickHouse (Debian's clickhouse-server, 18.16).

use std::time::Duration;

use serde_json::Value as Json;
use sluice_sink::Sink;
use sluice_sink::driver::{DriverConfig, Outcome};
use sluice_sink::encoding::Compression;
use sluice_sink::sinks::ClickhouseConfig;

use crate::support::{Clickhouse, Run, fast_retry};
use crate::{request, requests};

const TABLE: &str = "CREATE TABLE {name} (request_id String, timestamp DateTime, path String, \
    status Int32, bytes Int64, request_time Float64, bot UInt8, referer Nullable(String)) \
    ENGINE = MergeTree ORDER BY (timestamp, request_id)";

async fn create(server: &Clickhouse, name: &str) {
    server.query(&TABLE.replace("{name}", name)).await;
}

fn rows(text: &str) -> Vec<Json> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_rows_land_value_by_value() {
    let server = Clickhouse::start();
    for (name, compression) in [("plain", Compression::None), ("gzipped", Compression::Gzip)] {
        create(&server, name).await;
        let mut config = ClickhouseConfig::new(server.endpoint(), name);
        config.compression = compression;
        let mut sink = config.build().unwrap();
        sink.healthcheck().await.unwrap();
        let mut run = Run::start(Box::new(sink), fast_retry(DriverConfig::default()));
        for n in 0..5 {
            run.send(requests(n * 200..n * 200 + 200)).await;
        }
        let outcomes = run.finish().await;
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Delivered),
            "{outcomes:?}"
        );
        let text = server
            .query(&format!(
                "SELECT request_id, toUnixTimestamp(timestamp) AS ts, toString(timestamp) AS ts_text, \
                 path, status, bytes, request_time, bot, referer FROM {name} ORDER BY request_id FORMAT JSONEachRow"
            ))
            .await;
        let rows = rows(&text);
        assert_eq!(rows.len(), 1000, "{name}");
        for (n, row) in rows.iter().enumerate() {
            let n = n as i64;
            let event = request(n);
            assert_eq!(row["request_id"], format!("req-{n:08}"));
            // DateTime keeps whole seconds of the UTC instant, whatever the server's zone.
            assert_eq!(row["ts"], Json::from(1_714_564_800 + n));
            assert_eq!(row["path"], event.get("path").unwrap().as_str().unwrap());
            assert_eq!(row["status"], Json::from(200 + (n % 5) * 100));
            // 18.16 quotes 64-bit integers in JSON output.
            assert_eq!(
                row["bytes"].to_string().trim_matches('"'),
                (n * 1000).to_string()
            );
            assert_eq!(row["request_time"].as_f64().unwrap(), n as f64 / 8.0);
            assert_eq!(row["bot"], Json::from(u8::from(n % 3 == 0)));
            assert_eq!(row["referer"], Json::Null);
        }
        let zone = server.query("SELECT timezone()").await;
        if zone.trim() == "Etc/UTC" || zone.trim() == "UTC" {
            assert_eq!(rows[0]["ts_text"], "2024-05-01 12:00:00");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_rejects_unknown_fields_permanently_unless_skipped() {
    let server = Clickhouse::start();
    create(&server, "strict").await;
    let mut extra = request(1);
    extra.insert("unexpected", "x");
    let sink = ClickhouseConfig::new(server.endpoint(), "strict")
        .build()
        .unwrap();
    let mut run = Run::start(Box::new(sink), fast_retry(DriverConfig::default()));
    run.send(requests(10..12)).await;
    run.send(vec![extra.clone()]).await;
    let outcomes = run.finish().await;
    assert_eq!(
        outcomes[0],
        Outcome::Delivered,
        "the good input is isolated from the bad one"
    );
    let Outcome::Rejected { rejections } = &outcomes[1] else {
        panic!("not rejected: {outcomes:?}");
    };
    let message = rejections[0].error.to_string();
    assert!(
        message.contains("Unknown field") && message.contains("unexpected"),
        "{message}"
    );
    assert!(!rejections[0].error.is_transient());
    assert_eq!(server.query("SELECT count() FROM strict").await.trim(), "2");

    let mut config = ClickhouseConfig::new(server.endpoint(), "strict");
    config.skip_unknown_fields = true;
    let mut sink = config.build().unwrap();
    sink.write(&[extra]).await.unwrap();
    assert_eq!(server.query("SELECT count() FROM strict").await.trim(), "3");

    let mut missing = ClickhouseConfig::new(server.endpoint(), "nope")
        .build()
        .unwrap();
    let error = missing.healthcheck().await.unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(
        matches!(error, sluice_sink::SinkError::Refused(_)),
        "{error:?}"
    );
    let error = missing.write(&requests(0..1)).await.unwrap_err();
    assert!(
        matches!(error, sluice_sink::SinkError::Refused(_))
            && error.message().contains("create the table, or fix `table`"),
        "unknown table is a config error, with what to do: {error}"
    );
}

/// Down at start, killed mid-stream, restarted: every event lands at least once; duplicates are
/// counted and reported (plain MergeTree has no insert deduplication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_survives_being_down_and_killed() {
    let mut server = Clickhouse::start();
    create(&server, "faults").await;
    server.kill();

    let config = ClickhouseConfig::new(server.endpoint(), "faults");
    let mut driver = fast_retry(DriverConfig::default());
    driver.batch.max_events = 100;
    driver.healthcheck = true;
    let mut run = Run::start(Box::new(config.build().unwrap()), driver);
    let total: i64 = 6000;
    let mut sent = 0;
    // The store is down: sends go on until back-pressure stops them.
    while sent < 1000 {
        let send = run.send(requests(sent..sent + 100));
        if tokio::time::timeout(Duration::from_secs(2), send)
            .await
            .is_err()
        {
            break;
        }
        sent += 100;
    }
    assert!(
        sent < 1000,
        "back-pressure held the input while ClickHouse was down (sent {sent})"
    );
    // The timed-out send was cancelled before it was taken: send it again.
    server.restart();
    while sent < total {
        run.send(requests(sent..sent + 100)).await;
        sent += 100;
        if sent == 3000 {
            server.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.restart();
        }
    }
    let outcomes = run.finish().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let count: i64 = server
        .query("SELECT count() FROM faults")
        .await
        .trim()
        .parse()
        .unwrap();
    let distinct: i64 = server
        .query("SELECT uniqExact(request_id) FROM faults")
        .await
        .trim()
        .parse()
        .unwrap();
    assert_eq!(distinct, total, "every event landed");
    println!(
        "clickhouse fault test: {total} events, {count} rows, {} duplicates",
        count - total
    );
}
