//! Every sink kind, registered in one closed enum.
//!
//! A sink kind is a file (or folder) here with its config struct (serde, `deny_unknown_fields`)
//! and its runtime beside it, plus one line in [`SinkConfig`] and one arm in each `match` below.
//! The keys every sink has — `input` and the subscription keys, and the driver keys `batch`,
//! `concurrency`, `retry`, `healthcheck` ([`DriverConfig`](crate::driver::DriverConfig)) — are read
//! by the agent's config loader, not by the kinds.

pub mod blackhole;
pub mod clickhouse;
pub mod console;
pub mod file;
pub mod http;
pub mod kafka;
pub mod nats;
pub mod postgres;

use sluice_pipelines::component_kinds;

use crate::{BuildError, Sink, SinkContext};

pub use blackhole::{BlackholeConfig, BlackholeCounter, BlackholeSink};
pub use clickhouse::{ClickhouseConfig, ClickhouseSink};
pub use console::{ConsoleConfig, ConsoleSink};
pub use file::{FileConfig, FileSink};
pub use http::{HttpConfig, HttpSink};
pub use kafka::KafkaConfig;
pub use nats::{NatsConfig, NatsSink};
pub use postgres::{PostgresConfig, PostgresSink};

component_kinds! {
    /// The config of one sink, selected by its `type`. The agent-level keys every sink has
    /// (`input`, …) are read by the agent before this.
    pub enum SinkConfig {
        /// Counts and discards events.
        Blackhole(BlackholeConfig) = "blackhole",
        /// Inserts rows into ClickHouse over HTTP (JSONEachRow).
        Clickhouse(ClickhouseConfig) = "clickhouse",
        /// Writes lines to stdout or stderr.
        Console(ConsoleConfig) = "console",
        /// Appends lines to (templated, rotated, optionally gzipped) files.
        File(FileConfig) = "file",
        /// POSTs or PUTs batches to an HTTP endpoint.
        Http(HttpConfig) = "http",
        /// Produces events to Kafka topics, acknowledged by delivery reports.
        Kafka(KafkaConfig) = "kafka",
        /// Publishes each event as a NATS message, to JetStream (acknowledged) or core NATS.
        Nats(NatsConfig) = "nats",
        /// Inserts rows into a PostgreSQL table (binary COPY).
        Postgres(PostgresConfig) = "postgres",
    }
}

impl SinkConfig {
    /// Checks the config without touching anything outside the process.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault.
    pub fn validate(&self) -> Result<(), BuildError> {
        match self {
            SinkConfig::Blackhole(config) => config.validate(),
            SinkConfig::Clickhouse(config) => config.validate(),
            SinkConfig::Console(config) => config.validate(),
            SinkConfig::File(config) => config.validate(),
            SinkConfig::Http(config) => config.validate(),
            SinkConfig::Kafka(config) => config.validate(),
            SinkConfig::Nats(config) => config.validate(),
            SinkConfig::Postgres(config) => config.validate(),
        }
    }

    /// Builds the sink: opens files, connects clients.
    ///
    /// # Errors
    /// A [`BuildError`] when the sink cannot start (a directory that cannot be created).
    pub async fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(match self {
            SinkConfig::Blackhole(config) => Box::new(config.build(ctx)),
            SinkConfig::Clickhouse(config) => Box::new(config.build()?),
            SinkConfig::Console(config) => Box::new(config.build()?),
            SinkConfig::File(config) => Box::new(config.build(ctx).await?),
            SinkConfig::Http(config) => Box::new(config.build()?),
            SinkConfig::Kafka(config) => config.build(ctx)?,
            SinkConfig::Nats(config) => Box::new(config.build(ctx).await?),
            SinkConfig::Postgres(config) => Box::new(config.build().await?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;
    use sluice_pipelines::registry::{ComponentKind, KindError};
    use sluice_pipelines::{Event, EventMeta};

    #[test]
    fn every_kind_is_registered() {
        assert_eq!(
            SinkConfig::KINDS,
            [
                "blackhole",
                "clickhouse",
                "console",
                "file",
                "http",
                "kafka",
                "nats",
                "postgres"
            ]
        );
        let parsed: SinkConfig =
            serde_json::from_value(json!({"type": "console", "encoding": "text"})).unwrap();
        assert_eq!(parsed.kind(), "console");
        parsed.validate().unwrap();
    }

    #[test]
    fn field_errors_carry_the_key_path() {
        let Err(KindError::Field(error)) =
            SinkConfig::deserialize_kind("blackhole", json!({"print_interval": "soon"}))
        else {
            panic!("expected a field error");
        };
        assert_eq!(error.path().to_string(), "print_interval");
        assert!(
            error.to_string().contains("expected a duration like"),
            "{error}"
        );
        assert!(matches!(
            SinkConfig::deserialize_kind("file", json!({"path": "a", "rotate": true})),
            Err(KindError::Field(_))
        ));
        assert!(matches!(
            SinkConfig::deserialize_kind("s3", json!({})),
            Err(KindError::UnknownKind)
        ));
    }

    #[test]
    fn validate_dispatches_to_the_kind() {
        let config = SinkConfig::deserialize_kind("file", json!({"path": "logs/"}))
            .ok()
            .unwrap();
        assert_eq!(config.validate().unwrap_err().key.as_deref(), Some("path"));
        let config = SinkConfig::deserialize_kind("blackhole", json!({"print_interval": "0ms"}))
            .ok()
            .unwrap();
        assert_eq!(
            config.validate().unwrap_err().key.as_deref(),
            Some("print_interval")
        );
    }

    #[tokio::test]
    async fn builds_every_kind_behind_dyn_sink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("built.log");
        let configs = [
            json!({"type": "blackhole"}),
            json!({"type": "console", "target": "stderr"}),
            json!({"type": "file", "path": path, "encoding": "text"}),
        ];
        let events = [Event::from_raw(
            Bytes::from_static(b"built line"),
            EventMeta::default(),
        )];
        for config in configs {
            let config: SinkConfig = serde_json::from_value(config).unwrap();
            config.validate().unwrap();
            let mut sink = config.build(&SinkContext::default()).await.unwrap();
            sink.write(&events).await.unwrap();
            sink.close().await.unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "built line\n");
    }
}
