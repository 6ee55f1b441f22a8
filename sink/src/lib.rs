//! sluice-sink: the [`Sink`] trait, the machinery shared by all sinks, and every sink.
//!
//! A sink receives batches that the agent read from a topic subscription and writes them to a
//! store. It knows nothing of topics. The agent hands every delivery to a [`driver::Driver`]
//! together with an [`driver::Acker`]; the driver batches deliveries into requests
//! (`max_events`, `max_bytes`, `timeout`), runs up to `concurrency` of them at once through
//! [`Sink::write_chunks`], retries transient failures with backoff and calls each acker only once
//! the store has confirmed every event of its delivery — or permanently rejected some, which the
//! agent then sends to the dead-letter topic. So a sink must return `Ok` only once the store has
//! confirmed (the bytes are written to the file, the server answered 2xx), and its failures say
//! whether retrying can help — soon ([`SinkError::Unreachable`]: the store cannot be reached) or
//! later ([`SinkError::Transient`], [`SinkError::RetryAfter`]) —, whether the events themselves are
//! bad ([`SinkError::Permanent`]), or whether the store refuses the sink as configured
//! ([`SinkError::Refused`]: only a fix of the store or the config helps).
//!
//! Modules: [`driver`] (batching, concurrency, retries, acknowledgement), [`encoding`] (NDJSON,
//! JSON array, CSV, text; field selection; timestamp formats; gzip), [`http`] (the HTTP client
//! code the `http` and `clickhouse` sinks and the agent's `http_poll` source share), [`gunzip`]
//! (the one capped gzip decoder, shared with the agent's sources), [`fs`] (file-system helpers
//! shared with the agent), [`kafka`] (Kafka client settings the `kafka` sink and the agent's
//! `kafka` source share), [`sinks`] (every sink kind and the closed [`SinkConfig`] enum),
//! [`units`] (sizes and durations in configs).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod driver;
pub mod encoding;
pub mod fs;
pub mod gunzip;
pub mod http;
pub mod kafka;
pub mod sinks;
pub mod units;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use sluice_pipelines::Event;

pub use sinks::SinkConfig;
pub use sluice_pipelines::BuildError;

/// The future a sink method returns; boxed so sinks can live behind `dyn Sink`.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A destination for events.
///
/// Requests run one at a time per instance (`&mut self`); a sink that can have several requests
/// in flight (a shared HTTP client, a connection pool) says so by returning handles from
/// [`Sink::fork`], and the driver runs one request per handle.
pub trait Sink: Send {
    /// Writes `events` to the store, returning only once the store has confirmed them.
    ///
    /// # Errors
    /// [`SinkError::Transient`] (or [`SinkError::RetryAfter`]) when retrying the same events later
    /// may succeed (connection lost, server busy); [`SinkError::Permanent`] when it cannot (the
    /// store rejects these events).
    ///
    /// # Cancel safety
    /// Not cancel safe: if the future is dropped, some of the events may have been written.
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a>;

    /// Writes the events of several slices, in order, as one request: what the driver calls, so
    /// that a request made of several topic deliveries needs no copy. The default copies the
    /// slices into one `Vec` when there is more than one and calls [`Sink::write`]; sinks that
    /// encode event by event override it.
    ///
    /// # Errors
    /// As for [`Sink::write`].
    ///
    /// # Cancel safety
    /// As for [`Sink::write`].
    fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
        match chunks {
            [] => Box::pin(async { Ok(()) }),
            [one] => self.write(one),
            many => Box::pin(async move {
                let events = many.concat();
                self.write(&events).await
            }),
        }
    }

    /// The bytes the last successful write encoded for the store (NDJSON, CSV, COPY data, …;
    /// before any compression); 0 when the sink writes nothing (`blackhole`). The driver reads
    /// it after each write that returned `Ok` and counts it in
    /// [`driver::DriverStats::bytes_written`], which the agent reports as the sink's
    /// `bytes_out`.
    fn bytes_written(&self) -> u64 {
        0
    }

    /// Checks that the store is reachable and usable (the table exists, the credentials work).
    /// The driver calls it once at start-up unless `healthcheck = false`; a failure is logged
    /// (loudly, with what to do, for a [`SinkError::Refused`]) and the sink starts anyway, unless
    /// the agent runs with `--require-healthy`. The default succeeds.
    ///
    /// # Errors
    /// What is wrong, as a [`SinkError`].
    fn healthcheck(&mut self) -> SinkFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// Another handle on the same store for a concurrent request, sharing the client or pool;
    /// `None` (the default) when requests must run one at a time (a file, a terminal).
    fn fork(&self) -> Option<Box<dyn Sink>> {
        None
    }

    /// Flushes and closes whatever the sink holds open. Called once, after the last `write`.
    ///
    /// # Errors
    /// As for [`Sink::write`].
    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// Every event of `chunks`, in order.
pub fn chunk_events<'a>(chunks: &'a [&'a [Event]]) -> impl Iterator<Item = &'a Event> + 'a {
    chunks.iter().flat_map(|chunk| chunk.iter())
}

/// Why a write failed, and whether retrying can help.
///
/// Non-exhaustive: match with a wildcard, or use [`SinkError::is_transient`] and
/// [`SinkError::retry_after`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Retrying the same events later may succeed (the server is busy, a request timed out).
    #[error("{0} (will retry)")]
    Transient(String),
    /// The store cannot be reached (connection refused or reset, server starting up or shutting
    /// down): retried soon and often, with a short capped backoff, so rows flow again within a
    /// second of the store accepting connections.
    #[error("{0} (will retry)")]
    Unreachable(String),
    /// Retrying may succeed, but not before `after`: the store said so (HTTP `Retry-After`).
    #[error("{message} (will retry in {after:?})")]
    RetryAfter {
        /// What the store answered.
        message: String,
        /// How long the store asked to wait.
        after: Duration,
    },
    /// The store rejects these events (bad data); retrying cannot help. The driver splits the
    /// request to find the bad events, so the good ones still land.
    #[error("{0}")]
    Permanent(String),
    /// The store refuses every request as the sink is configured (a missing table or database,
    /// wrong credentials or URL, no permission): it cannot fix itself and splitting cannot help,
    /// but someone can fix the store or the config. The driver keeps the events (they wait in the
    /// topic), retries with the long backoff and says so loudly; once its input has ended (a
    /// finite run, or a shutdown) it stops with an error instead of waiting for a fix. The message
    /// says what to do.
    #[error("{0}")]
    Refused(String),
}

impl SinkError {
    /// Whether retrying can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SinkError::Transient(_) | SinkError::Unreachable(_) | SinkError::RetryAfter { .. }
        )
    }

    /// How long the store asked to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::RetryAfter { after, .. } => Some(*after),
            _ => None,
        }
    }

    /// The error text without the retry note.
    pub fn message(&self) -> &str {
        match self {
            SinkError::Transient(message)
            | SinkError::Unreachable(message)
            | SinkError::Permanent(message)
            | SinkError::Refused(message)
            | SinkError::RetryAfter { message, .. } => message,
        }
    }
}

/// What a sink may need from the agent when it is built.
#[derive(Debug, Clone, Default)]
pub struct SinkContext {
    /// The sink's name in the config (`sinks.<name>`).
    pub name: String,
    /// The agent's data directory.
    pub data_dir: PathBuf,
}
