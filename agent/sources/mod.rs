//! Sources: where events enter sluice. Every source kind is registered in [`SourceConfig`].
//!
//! A source runs as one task. It reads its input, cuts it into events, and publishes batches of
//! about [`BATCH_EVENTS`] events to its topic through [`SourceContext::output`], which waits when
//! the topic is full (back-pressure reaches the reader that way). A finite source (stdin at its
//! end, a generator with a count, files with `follow = false`) returns `Ok(())` when done; every
//! source returns soon after [`SourceContext::shutdown`] fires. Checkpointing sources map their read
//! positions to topic offsets and persist only what [`crate::topic::Producer::safe_offset`] says is
//! safe.
//!
//! Kinds: [`file`](mod@file) (tails files), [`stdin`] (reads standard input), [`generator`]
//! (synthetic nginx and clickstream lines), [`http_server`] (events POSTed over HTTP),
//! [`http_poll`] (events fetched from an HTTP API), [`kafka`] (a Kafka consumer group), [`nats`]
//! (JetStream or core NATS messages). The line-oriented ones share [`lines`]: zero-copy line
//! splitting and batching; the HTTP and broker ones share `body`: NDJSON / JSON body decoding.

pub(crate) mod body;
pub mod file;
pub mod generator;
pub mod http_poll;
pub mod http_server;
pub mod kafka;
pub mod lines;
pub mod nats;
pub mod stdin;
pub mod throttle;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use sluice_pipelines::{Batch, BuildError, Event, Fields, SourceId, Value, component_kinds};

use crate::metrics::ComponentMetrics;
use crate::shutdown::Shutdown;
use crate::topic::Producer;

pub use file::FileConfig;
pub use generator::GeneratorConfig;
pub use http_poll::HttpPollConfig;
pub use http_server::HttpServerConfig;
pub use kafka::KafkaConfig;
pub use nats::NatsSourceConfig;
pub use stdin::StdinConfig;

/// How many events a source aims to put in one batch.
pub const BATCH_EVENTS: usize = 1024;

/// The future a running source is.
pub type SourceFuture = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;

/// A running source.
pub trait Source: Send {
    /// Runs the source until its input ends or shutdown is signalled.
    ///
    /// # Errors
    /// A [`SourceError`] when the source cannot go on (its input vanished for good). Transient
    /// problems are logged, counted and retried by the source itself.
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture;
}

/// Why a source stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Its input could not be read (stdin).
    #[error("cannot read input: {0}")]
    Read(std::io::Error),
    /// Its reader thread could not be started.
    #[error("cannot start the reader thread: {0}")]
    StartThread(std::io::Error),
    /// Its worker thread failed (it panicked or was cancelled).
    #[error("{kind} source thread failed: {error}")]
    Thread {
        /// The source's kind.
        kind: &'static str,
        /// What the runtime said.
        error: tokio::task::JoinError,
    },
    /// The listening socket it was given could not be used.
    #[error("cannot use the listening socket: {0}")]
    Listen(std::io::Error),
    /// Its saved state could not be read, and starting without it is not safe.
    #[error("cannot read the state: {0}")]
    State(tokio::task::JoinError),
    /// Its broker client could not be set up (a config the client refused, a subscription).
    #[error("{0}")]
    Broker(String),
    /// NATS could not be used as configured (a `nats` source): the URL, or a subscription the
    /// server refused.
    #[error("cannot use NATS at {url}: {message}")]
    Nats {
        /// The configured `url`.
        url: String,
        /// What failed.
        message: String,
    },
}

/// What a running source gets from the topology.
pub struct SourceContext {
    /// The source's name in the config.
    pub name: String,
    /// The id stamped into the metadata of its events.
    pub id: SourceId,
    /// Where its events go.
    pub output: Producer,
    /// Fires when the agent shuts down.
    pub shutdown: Shutdown,
    /// The agent's data directory (checkpoints live under `<data_dir>/sources/<name>/`).
    pub data_dir: PathBuf,
    /// The source's counters: `events_out`, `bytes_out`, `errors`, and its own.
    pub metrics: Arc<ComponentMetrics>,
    /// The dead-letter topic, for input the source received but cannot make an event of (`None`
    /// when the config has no dead-letter topic: nothing could read it, so rejects are only
    /// counted).
    pub dead_letter: Option<Producer>,
}

impl SourceContext {
    /// Publishes `batch` (carrying `raw_bytes` bytes of input), waiting while the topic is full,
    /// and counts it in `events_out` and `bytes_out`. Returns `false`, without publishing, when
    /// shutdown fires while it waits: the caller stops.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call published nothing.
    pub async fn publish(&self, batch: Batch, raw_bytes: u64) -> bool {
        let events = batch.len() as u64;
        tokio::select! {
            biased;
            _ = self.output.send(batch) => {}
            () = self.shutdown.wait() => return false,
        }
        self.metrics.events_out.add(events);
        self.metrics.bytes_out.add(raw_bytes);
        true
    }

    /// Keeps input the source could not make an event of in the dead-letter topic: each
    /// `(event, error)` becomes the event (usually the raw input) with a `dead_letter` map naming
    /// the source, the error and the time. The caller counts them; their reasons are recorded by
    /// kind and logged, rate-limited ([`crate::rejections`]). Returns `false`, without
    /// sending, when shutdown fires while the topic is full.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call sent nothing.
    pub async fn dead_letter(&self, rejected: Vec<(Event, String)>) -> bool {
        self.metrics.rejections.record(
            &self.name,
            rejected.iter().map(|(_, error)| ("", error.as_str())),
        );
        let Some(topic) = &self.dead_letter else {
            return true;
        };
        if rejected.is_empty() {
            return true;
        }
        let events = dead_letter_events(&self.name, rejected);
        tokio::select! {
            biased;
            _ = topic.send(Batch::new(events)) => true,
            () = self.shutdown.wait() => false,
        }
    }
}

/// `rejected` input of source `source` as dead-letter events: each event with a `dead_letter`
/// map of `source`, `error` and `at` (now).
pub fn dead_letter_events(source: &str, rejected: Vec<(Event, String)>) -> Vec<Event> {
    let at = Value::Timestamp(chrono::Utc::now());
    rejected
        .into_iter()
        .map(|(mut event, error)| {
            let mut info = Fields::with_capacity(3);
            info.insert("source".into(), Value::from(source));
            info.insert("error".into(), Value::from(error));
            info.insert("at".into(), at.clone());
            event.insert("dead_letter", Value::Map(info));
            event
        })
        .collect()
}

/// A source's dead letter as `(raw input, error, source name)`, for tests.
#[cfg(test)]
pub(crate) fn dead_letter_parts(event: &Event) -> (String, String, String) {
    let info = |key: &str| {
        event
            .get_path(&["dead_letter", key])
            .and_then(Value::as_str)
            .expect("a dead-letter field")
            .to_owned()
    };
    let raw = event.raw().expect("the raw input");
    (
        String::from_utf8_lossy(raw).into_owned(),
        info("error"),
        info("source"),
    )
}

component_kinds! {
    /// The config of one source, selected by its `type`. The agent-level key every source has
    /// (`topic`) is read by the config loader before this.
    pub enum SourceConfig {
        /// Lines of files, followed as they grow.
        File(FileConfig) = "file",
        /// Lines of standard input.
        Stdin(StdinConfig) = "stdin",
        /// Synthetic nginx access lines or clickstream events.
        Generator(GeneratorConfig) = "generator",
        /// Events POSTed over HTTP.
        HttpServer(HttpServerConfig) = "http_server",
        /// Events fetched from an HTTP API on an interval.
        HttpPoll(HttpPollConfig) = "http_poll",
        /// Messages of Kafka topics, read in a consumer group.
        Kafka(KafkaConfig) = "kafka",
        /// Messages of a JetStream durable consumer or a core NATS subscription.
        Nats(NatsSourceConfig) = "nats",
    }
}

impl SourceConfig {
    /// Checks the config without touching anything outside the process.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault.
    pub fn validate(&self) -> Result<(), BuildError> {
        match self {
            SourceConfig::File(config) => config.validate().map(drop),
            SourceConfig::Stdin(config) => config.validate().map(drop),
            SourceConfig::Generator(config) => config.validate().map(drop),
            SourceConfig::HttpServer(config) => config.validate().map(drop),
            SourceConfig::HttpPoll(config) => config.validate().map(drop),
            SourceConfig::Kafka(config) => config.validate().map(drop),
            SourceConfig::Nats(config) => config.validate(),
        }
    }

    /// Builds the source.
    ///
    /// # Errors
    /// A [`BuildError`] when the source cannot start.
    pub fn build(&self) -> Result<Box<dyn Source>, BuildError> {
        Ok(match self {
            SourceConfig::File(config) => Box::new(config.build()?),
            SourceConfig::Stdin(config) => Box::new(config.build()?),
            SourceConfig::Generator(config) => Box::new(config.build()?),
            SourceConfig::HttpServer(config) => Box::new(config.build()?),
            SourceConfig::HttpPoll(config) => Box::new(config.build()?),
            #[cfg(feature = "kafka")]
            SourceConfig::Kafka(config) => Box::new(config.build()?),
            #[cfg(not(feature = "kafka"))]
            SourceConfig::Kafka(config) => config.build()?,
            SourceConfig::Nats(config) => Box::new(config.build()?),
        })
    }

    /// What looks wrong in the file system for this source, as `key: message` (relative to the
    /// source): today, `include` patterns of a `file` source whose directory does not exist,
    /// which match nothing until it appears — usually a typo. Reads the file system; for
    /// `sluice validate`, not for validation proper.
    pub fn path_warnings(&self) -> Vec<String> {
        match self {
            SourceConfig::File(config) => config
                .missing_include_dirs()
                .into_iter()
                .map(|(index, pattern, base)| {
                    format!(
                        "include[{index}]: the directory `{}` of `{pattern}` does not exist; \
                         the pattern matches nothing until it appears",
                        base.display()
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Where the input this source cannot make an event of goes, when not to the dead-letter
    /// topic: `http_server` with `partial = "reject"` refuses the whole body instead.
    pub fn refuses_bad_input(&self) -> Option<&'static str> {
        match self {
            SourceConfig::HttpServer(config) if config.partial == http_server::Partial::Reject => {
                Some("the request was refused with 400 naming the bad line; partial = \"reject\"")
            }
            _ => None,
        }
    }

    /// Whether the source ends by itself (and so a run with only finite sources exits).
    pub fn is_finite(&self) -> bool {
        match self {
            SourceConfig::File(config) => !config.follow,
            SourceConfig::Stdin(_) => true,
            SourceConfig::Generator(config) => config.count.is_some(),
            SourceConfig::HttpServer(_)
            | SourceConfig::HttpPoll(_)
            | SourceConfig::Kafka(_)
            | SourceConfig::Nats(_) => false,
        }
    }
}
