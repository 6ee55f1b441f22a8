//! The `kafka` source: a member of a Kafka consumer group, committing offsets only for what
//! sluice has safely taken.
//!
//! ```toml
//! [sources.from_edges]
//! type = "kafka"
//! topic = "web.events"                 # the sluice topic its events go to
//! brokers = ["127.0.0.1:9092"]
//! topics = ["web-view", "web-click"]   # or topic_pattern = "^web-.*"
//! group_id = "central"
//! start_at = "earliest"                # earliest | latest (default): a new group's start
//! decoding = "auto"                    # auto | json | ndjson | text, per message
//! commit_interval = "1s"
//! # fields added to every event ("" leaves one out):
//! topic_field = "kafka_topic"
//! partition_field = "kafka_partition"
//! offset_field = "kafka_offset"
//! key_field = "kafka_key"
//! timestamp_field = "kafka_timestamp"
//! librdkafka_options = { "session.timeout.ms" = "10000" }
//! ```
//!
//! # Offsets follow acknowledgements
//!
//! Messages are read in batches of up to [`BATCH_EVENTS`](super::BATCH_EVENTS), decoded (with
//! the `http_server` source's decoder: a JSON object, NDJSON lines, a JSON array, or text lines
//! per message) and published to the sluice topic. Each published batch is remembered with the
//! topic offset it ends at and, per Kafka partition, the offset after its last message. Only once
//! the topic's [safe offset](crate::topic::Producer::safe_offset) passes that end — every
//! blocking subscriber acknowledged it (a memory topic: delivered end to end, windows included)
//! or it was stored (a disk topic) — are those Kafka offsets committed (every `commit_interval`,
//! on a rebalance and at shutdown). A crash or `kill -9` therefore re-reads from the last
//! committed offset: at-least-once, never a gap. Messages that cannot be decoded go to the
//! dead-letter topic with the error, their raw payload and the Kafka fields, and are committed.
//!
//! # Rebalances
//!
//! When partitions are revoked (another member joined, or this one is leaving), what is safe of
//! them is committed synchronously before they go, and everything of theirs still in flight here
//! is forgotten: its offsets are never committed by this member, so the partition's new owner
//! reads it again from the last commit. Messages of a revoked partition read but not yet
//! published are dropped (counted in `revoked_events`) for the same reason. Nothing is skipped;
//! what was in flight may arrive twice (once from each member). A window of an `aggregate` that
//! held such events still emits its result here, and the new owner counts them again: see the
//! README on running several central instances.
//!
//! # Failures
//!
//! librdkafka reconnects by itself; consumer errors (a broker down, a coordinator moving) are
//! counted in `consumer_errors` and logged at most every 10 seconds, and never stop the source.
//! While the sluice topic is full the source stops reading (back-pressure); past librdkafka's
//! `max.poll.interval.ms` (5 minutes by default) the group considers it gone and moves its
//! partitions, which it gets back (or others) on its next read.
//!
//! Counters: `messages`, `invalid_events`, `revoked_events`, `assigned_partitions`,
//! `revoked_partitions`, `commits`, `commit_errors`, `consumer_errors`; `events_out`,
//! `bytes_out` (payload bytes), `errors`.

mod config;
#[cfg(feature = "kafka")]
mod consumer;
#[cfg(feature = "kafka")]
mod offsets;
#[cfg(test)]
#[cfg(feature = "kafka")]
mod tests;

pub use config::{KafkaConfig, KafkaStartAt, Settings};
#[cfg(feature = "kafka")]
pub use consumer::Kafka;
