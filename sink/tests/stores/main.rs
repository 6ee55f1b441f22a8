//! Store tests: every sink against a real server (PostgreSQL, ClickHouse, a local axum HTTP
//! server, files), through the driver, including faults (store down at start, killed mid-stream)
//! and, as ignored tests, the benchmarks:
//! `cargo test --release -p sluice-sink --test stores -- --ignored --nocapture --test-threads=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bench;
mod clickhouse;
mod http;
mod postgres;
mod support;

use chrono::{DateTime, Utc};
use sluice_pipelines::Event;

/// A web request event with every value type the stores care about.
pub fn request(n: i64) -> Event {
    let ts: DateTime<Utc> = DateTime::from_timestamp(1_714_564_800 + n, 250_000_000).unwrap();
    let mut event = Event::default();
    event.insert("request_id", format!("req-{n:08}"));
    event.insert("timestamp", ts);
    event.insert("path", format!("/page/{}", n % 7));
    event.insert("status", 200 + (n % 5) * 100);
    event.insert("bytes", n * 1000);
    event.insert("request_time", n as f64 / 8.0);
    event.insert("bot", n % 3 == 0);
    event
}

/// Requests `range`.
pub fn requests(range: std::ops::Range<i64>) -> Vec<Event> {
    range.map(request).collect()
}
