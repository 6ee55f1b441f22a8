//! Store tests: every sink against a real server (PostgreSQL, ClickHouse, a local axum HTTP
//! server, files), through the driver, including faults (store down at start, killed mid-stream).
//! The throughput figures come from `cargo bench -p sluice-sink --bench stores`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod clickhouse;
mod http;
#[cfg(feature = "kafka")]
mod kafka;
mod nats;
mod postgres;

use sluice_store_support as support;

use support::{request, requests};
