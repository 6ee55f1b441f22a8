//! sluice-sink: the [`Sink`] trait, the machinery shared by all sinks, and every sink.
//!
//! A sink receives batches that the agent read from a topic subscription and writes them to a
//! store. It knows nothing of topics: the agent calls [`Sink::write`] with a delivery's events and
//! acknowledges the delivery only when `write` returned `Ok` — so a sink must return `Ok` only once
//! the store has confirmed (the bytes are written to the file, the server answered 2xx). Failures
//! say whether retrying can help ([`SinkError::Transient`]) or not ([`SinkError::Permanent`]); the
//! agent retries the former with backoff and sends the latter's events to the dead-letter topic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod sinks;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use sluice_pipelines::Event;

pub use sinks::SinkConfig;
pub use sluice_pipelines::BuildError;

/// The future a sink method returns; boxed so sinks can live behind `dyn Sink`.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A destination for events.
pub trait Sink: Send {
    /// Writes `events` to the store, returning only once the store has confirmed them.
    ///
    /// # Errors
    /// [`SinkError::Transient`] when retrying the same events later may succeed (connection lost,
    /// server busy); [`SinkError::Permanent`] when it cannot (the store rejects these events).
    ///
    /// # Cancel safety
    /// Not cancel safe: if the future is dropped, some of the events may have been written.
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a>;

    /// Flushes and closes whatever the sink holds open. Called once, after the last `write`.
    ///
    /// # Errors
    /// As for [`Sink::write`].
    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// Why a write failed, and whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Retrying the same events later may succeed.
    #[error("{0} (will retry)")]
    Transient(String),
    /// The store rejects these events; retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

impl SinkError {
    /// Whether retrying can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
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
