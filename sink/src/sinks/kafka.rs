//! The `kafka` sink: produces each event as one Kafka message, acknowledged by Kafka's delivery
//! reports.
//!
//! ```toml
//! [sinks.to_kafka]
//! type = "kafka"
//! input = "web.events"
//! brokers = ["127.0.0.1:9092"]
//! topic = "web-{event}"           # `{field}` (a path: `{user.country}`) from each event
//! key_field = "visitor_id"        # one visitor's events in one partition, in order
//! headers = { "x-host" = "host" } # header name = field
//! encoding = "ndjson"             # one JSON object per message (default); "text" or "csv"
//! compression = "lz4"             # none (default) | gzip | snappy | lz4
//! acks = "all"                    # all (default) | "1" | "0"
//! idempotent = true               # librdkafka's idempotent producer (default; needs acks = "all")
//! delivery_timeout = "30s"        # message.timeout.ms: how long librdkafka retries one message
//! librdkafka_options = { "linger.ms" = "5" }
//! # plus the driver keys every sink has (batch, concurrency, retry, healthcheck)
//! ```
//!
//! # Acknowledgement
//! A request's events are all handed to librdkafka first, then the sink waits for every
//! delivery report: [`Sink::write`](crate::Sink::write) returns `Ok` only once Kafka confirmed each message (with
//! `acks = "all"`, once every in-sync replica has it), so the driver acknowledges the topic's
//! batch only then. Before anything is produced every event's topic is rendered, so an event the
//! topic template cannot name is rejected (to the dead-letter topic) without sending the others
//! twice.
//!
//! # Failures
//! librdkafka retries a message itself, across broker restarts and leader changes, for up to
//! `delivery_timeout`. A message it gives up on fails the request: timeouts and lost brokers are
//! *unreachable* (the driver retries within a second, logging the outage once), other broker
//! errors transient; a message too large is permanent (split off, to the dead-letter topic); a
//! topic that does not exist (and that the brokers do not create) or that the sink may not write
//! refuses the sink. A retried request sends again what Kafka had already confirmed of it: at
//! least once, never lost. The idempotent producer keeps librdkafka's own retries free of
//! duplicates and in order per partition. A producer librdkafka declares fatally broken is
//! replaced by a new one on the next request.
//!
//! # Partitions
//! Messages with a key go to the partition librdkafka's `murmur2_random` partitioner picks (the
//! Java client's, so other producers put the same key in the same partition); messages without
//! one (`key_field` unset, or the field missing) are spread.
//!
//! # Healthcheck
//! Fetches the cluster's metadata; brokers that cannot be reached fail it as unreachable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use sluice_pipelines::{Event, Value};

use crate::encoding::{Encoding, EncodingConfig, deserialize_encoding};
use crate::kafka::{FEATURE_MISSING, validate_brokers, validate_options};
use crate::units::HumanDuration;
use crate::{BuildError, SinkContext};

/// The default `delivery_timeout`.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

/// librdkafka options the sink sets from its own keys.
const OWNED_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("enable.idempotence", "idempotent"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("message.timeout.ms", "delivery_timeout"),
    ("delivery.timeout.ms", "delivery_timeout"),
];

/// The config of the `kafka` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The topic, a template: `{field}` is replaced by the event's field (a dotted path).
    pub topic: String,
    /// The field whose value is the message key, if any (a dotted path).
    #[serde(default)]
    pub key_field: Option<String>,
    /// Message headers: header name → field (a dotted path).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How an event becomes a message; default `ndjson` (one JSON object, no newline).
    #[serde(default, deserialize_with = "deserialize_encoding")]
    pub encoding: EncodingConfig,
    /// Compression of message batches on the wire; default `none`.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Which replicas must have a message before Kafka confirms it; default `all`.
    #[serde(default)]
    pub acks: Acks,
    /// librdkafka's idempotent producer (no duplicates or reordering from its own retries);
    /// default `true`.
    #[serde(default = "default_true")]
    pub idempotent: bool,
    /// How long librdkafka keeps retrying one message before the request fails; default `30s`.
    #[serde(default = "default_delivery_timeout")]
    pub delivery_timeout: HumanDuration,
    /// Further librdkafka producer options, passed through.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}

fn default_delivery_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_DELIVERY_TIMEOUT)
}

/// Compression of the `kafka` sink's message batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    /// None.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
}

#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
impl KafkaCompression {
    fn librdkafka_name(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
        }
    }
}

/// How many replicas must have a message before Kafka confirms it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Acks {
    /// Every in-sync replica.
    #[default]
    #[serde(rename = "all")]
    All,
    /// The partition leader only.
    #[serde(rename = "1")]
    Leader,
    /// None: Kafka confirms nothing, so the sink acknowledges once the message is sent.
    #[serde(rename = "0")]
    None,
}

#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
impl Acks {
    fn librdkafka_value(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

/// One piece of a topic template.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
enum TopicPiece {
    /// Literal text.
    Text(String),
    /// An event field, by path.
    Field(Vec<String>),
}

/// A parsed `topic`.
#[derive(Debug, Clone, PartialEq)]
struct TopicTemplate {
    pieces: Vec<TopicPiece>,
}

/// Whether `c` may appear in a Kafka topic name.
fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
impl TopicTemplate {
    fn parse(template: &str) -> Result<Self, BuildError> {
        let bad = |message: String| BuildError::at("topic", message);
        if template.is_empty() {
            return Err(bad("must not be empty".into()));
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let (literal, after) = rest.split_at(rest.find(['{', '}']).unwrap_or(rest.len()));
            if let Some(c) = literal.chars().find(|&c| !is_topic_char(c)) {
                return Err(bad(format!(
                    "{template:?} has {c:?}: topic names hold only ASCII letters, digits, `.`, \
                     `_` and `-` (and `{{field}}` templates)"
                )));
            }
            if !literal.is_empty() {
                pieces.push(TopicPiece::Text(literal.to_owned()));
            }
            rest = after;
            if rest.starts_with('}') {
                return Err(bad(format!("{template:?} has a `}}` without `{{`")));
            }
            if let Some(inner) = rest.strip_prefix('{') {
                let Some(end) = inner.find('}') else {
                    return Err(bad(format!("{template:?} has a `{{` without `}}`")));
                };
                let path = parse_field_path(&inner[..end])
                    .map_err(|message| bad(format!("{template:?}: {message}")))?;
                pieces.push(TopicPiece::Field(path));
                rest = &inner[end + 1..];
            }
        }
        if let [TopicPiece::Text(text)] = pieces.as_slice()
            && text.len() > MAX_TOPIC_LEN
        {
            return Err(bad(format!(
                "is {} characters long; Kafka allows {MAX_TOPIC_LEN}",
                text.len()
            )));
        }
        Ok(TopicTemplate { pieces })
    }

    /// The topic when it has no fields.
    fn fixed(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [TopicPiece::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// Renders the topic of `event` into `out`: field values with characters a topic name
    /// cannot hold replaced by `_`.
    ///
    /// # Errors
    /// What is wrong, when a field is missing or empty, or the name too long.
    fn render(&self, event: &Event, out: &mut String) -> Result<(), String> {
        out.clear();
        for piece in &self.pieces {
            match piece {
                TopicPiece::Text(text) => out.push_str(text),
                TopicPiece::Field(path) => {
                    let start = out.len();
                    match event.get_path(path) {
                        Some(value) => write_scalar(value, out),
                        None => {
                            return Err(format!(
                                "the topic template's field `{}` is missing",
                                path.join(".")
                            ));
                        }
                    }
                    if out.len() == start {
                        return Err(format!(
                            "the topic template's field `{}` is empty",
                            path.join(".")
                        ));
                    }
                    let sanitized: String = out[start..]
                        .chars()
                        .map(|c| if is_topic_char(c) { c } else { '_' })
                        .collect();
                    out.truncate(start);
                    out.push_str(&sanitized);
                }
            }
        }
        if out.len() > MAX_TOPIC_LEN {
            return Err(format!(
                "the topic {:?}… is {} characters long; Kafka allows {MAX_TOPIC_LEN}",
                &out[..40],
                out.len()
            ));
        }
        Ok(())
    }
}

fn parse_field_path(name: &str) -> Result<Vec<String>, String> {
    if name.is_empty() || name.split('.').any(str::is_empty) || name.contains('{') {
        return Err(format!(
            "`{{{name}}}` is not a field path such as `{{event}}`"
        ));
    }
    Ok(name.split('.').map(str::to_owned).collect())
}

/// Appends a scalar value as text; maps and arrays as JSON; null as nothing.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
fn write_scalar(value: &Value, out: &mut String) {
    match value {
        Value::Null => {}
        Value::String(text) => out.push_str(text.as_str()),
        Value::Bool(flag) => {
            let _ = write!(out, "{flag}");
        }
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Timestamp(at) => {
            out.push_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        Value::Array(_) | Value::Map(_) => {
            let mut bytes = Vec::new();
            sluice_pipelines::codec::json::encode_value(value, &mut bytes);
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
}

impl KafkaConfig {
    /// Checks every key; librdkafka itself checks `librdkafka_options`. Without the `kafka`
    /// feature, says so.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key.
    pub fn validate(&self) -> Result<(), BuildError> {
        validate_brokers("brokers", &self.brokers)?;
        TopicTemplate::parse(&self.topic)?;
        if let Some(field) = &self.key_field {
            parse_field_path(field).map_err(|message| BuildError::at("key_field", message))?;
        }
        for (name, field) in &self.headers {
            if name.is_empty() {
                return Err(BuildError::at("headers", "a header name must not be empty"));
            }
            parse_field_path(field)
                .map_err(|message| BuildError::at(format!("headers.{name}"), message))?;
        }
        self.encoding.validate()?;
        if self.encoding.codec == Encoding::JsonArray {
            return Err(BuildError::at(
                "encoding",
                "a message holds one event: use \"ndjson\" (one JSON object), \"text\" or \"csv\"",
            ));
        }
        if self.idempotent && self.acks != Acks::All {
            return Err(BuildError::at(
                "idempotent",
                "the idempotent producer needs acks = \"all\"; set idempotent = false to use \
                 other acks",
            ));
        }
        if self.delivery_timeout.get() < Duration::from_millis(1) {
            return Err(BuildError::at("delivery_timeout", "must be at least 1ms"));
        }
        validate_options(&self.librdkafka_options, OWNED_OPTIONS)?;
        if !crate::kafka::ENABLED {
            return Err(BuildError::at("type", FEATURE_MISSING));
        }
        Ok(())
    }

    /// Builds the sink and its producer (which connects in the background).
    ///
    /// # Errors
    /// As for [`KafkaConfig::validate`], or librdkafka refuses the config.
    pub fn build(&self, ctx: &SinkContext) -> Result<Box<dyn crate::Sink>, BuildError> {
        self.validate()?;
        #[cfg(feature = "kafka")]
        {
            Ok(Box::new(runtime::KafkaSink::new(self, ctx)?))
        }
        #[cfg(not(feature = "kafka"))]
        {
            let _ = ctx;
            Err(BuildError::at("type", FEATURE_MISSING))
        }
    }
}

#[cfg(feature = "kafka")]
pub use runtime::KafkaSink;

#[cfg(feature = "kafka")]
mod runtime {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

    use super::*;
    use crate::encoding::Encoder;
    use crate::kafka::{client_config, librdkafka_message};
    use crate::{Sink, SinkError, SinkFuture, chunk_events};

    /// What every handle of one sink shares.
    struct Shared {
        config: rdkafka::ClientConfig,
        topic: TopicTemplate,
        key: Option<Vec<String>>,
        headers: Vec<(String, Vec<String>)>,
        encoder: Encoder,
        name: String,
        /// The producer; replaced when librdkafka declares it fatally broken, or after messages
        /// timed out (`renew`).
        producer: parking_lot::Mutex<FutureProducer>,
        /// Set when a request's messages timed out: the next request starts a new producer.
        /// librdkafka's idempotent producer keeps sequence numbers per partition, and a broker
        /// that lost its state (restarted without it) may never accept them again; a new
        /// producer gets a new producer id. Rare (once per `delivery_timeout` of an outage).
        renew: AtomicBool,
    }

    /// The runtime of the `kafka` sink. Forks share one producer (librdkafka batches their
    /// messages together).
    pub struct KafkaSink {
        shared: Arc<Shared>,
        topic: String,
        payload: Vec<u8>,
        key: String,
        written: u64,
    }

    impl std::fmt::Debug for KafkaSink {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("KafkaSink")
                .field("name", &self.shared.name)
                .finish_non_exhaustive()
        }
    }

    impl KafkaSink {
        pub(super) fn new(config: &KafkaConfig, ctx: &SinkContext) -> Result<Self, BuildError> {
            let timeout_ms = config.delivery_timeout.get().as_millis().max(1).to_string();
            let defaults = [
                ("acks", config.acks.librdkafka_value()),
                (
                    "enable.idempotence",
                    if config.idempotent { "true" } else { "false" },
                ),
                ("compression.type", config.compression.librdkafka_name()),
                ("message.timeout.ms", timeout_ms.as_str()),
                ("partitioner", "murmur2_random"),
                ("linger.ms", "5"),
                ("client.id", "sluice"),
            ];
            let client = client_config(&config.brokers, &defaults, &config.librdkafka_options);
            let producer = create(&client)?;
            let encoder = config.encoding.encoder()?;
            Ok(KafkaSink {
                shared: Arc::new(Shared {
                    config: client,
                    topic: TopicTemplate::parse(&config.topic)?,
                    key: config.key_field.as_deref().map(split_path),
                    headers: config
                        .headers
                        .iter()
                        .map(|(name, field)| (name.clone(), split_path(field)))
                        .collect(),
                    encoder,
                    name: ctx.name.clone(),
                    producer: parking_lot::Mutex::new(producer),
                    renew: AtomicBool::new(false),
                }),
                topic: String::new(),
                payload: Vec::new(),
                key: String::new(),
                written: 0,
            })
        }

        /// The producer to use, replaced first if librdkafka declared it fatally broken or
        /// messages timed out.
        fn producer(&self) -> Result<FutureProducer, SinkError> {
            let mut producer = self.shared.producer.lock();
            let fatal = producer.client().fatal_error();
            if let Some((code, message)) = &fatal {
                tracing::warn!(sink = %self.shared.name, ?code, %message, "The Kafka producer failed fatally; starting a new one");
            }
            if fatal.is_some() || self.shared.renew.swap(false, Ordering::Relaxed) {
                let fresh = create(&self.shared.config)
                    .map_err(|error| SinkError::Transient(error.message))?;
                let old = std::mem::replace(&mut *producer, fresh);
                // Dropping a producer purges and waits for it briefly: not on a runtime thread.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Ok(producer.clone())
        }

        async fn send(&mut self, chunks: &[&[Event]]) -> Result<(), SinkError> {
            self.written = 0;
            // Every topic first: an event the template cannot name fails the request before
            // anything is produced, so the driver's split sends nothing twice.
            if self.shared.topic.fixed().is_none() {
                for event in chunk_events(chunks) {
                    self.shared
                        .topic
                        .render(event, &mut self.topic)
                        .map_err(SinkError::Permanent)?;
                }
            }
            let producer = self.producer()?;
            let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
            let mut first_error: Option<SinkError> = None;
            let mut encoded = 0u64;
            for event in chunk_events(chunks) {
                let topic = match self.shared.topic.fixed() {
                    Some(topic) => topic,
                    None => {
                        self.shared
                            .topic
                            .render(event, &mut self.topic)
                            .map_err(SinkError::Permanent)?;
                        self.topic.as_str()
                    }
                };
                self.payload.clear();
                self.shared.encoder.encode_record(event, &mut self.payload);
                if self.payload.last() == Some(&b'\n') {
                    self.payload.pop();
                }
                encoded += self.payload.len() as u64;
                let has_key = match &self.shared.key {
                    Some(path) => {
                        self.key.clear();
                        event.get_path(path).is_some_and(|value| {
                            write_scalar(value, &mut self.key);
                            true
                        })
                    }
                    None => false,
                };
                let headers = headers(&self.shared.headers, event);
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(topic).payload(self.payload.as_slice());
                if has_key {
                    record = record.key(self.key.as_bytes());
                }
                if let Some(headers) = headers {
                    record = record.headers(headers);
                }
                loop {
                    match producer.send_result(record) {
                        Ok(delivery) => {
                            pending.push_back(delivery);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            // librdkafka's queue is full: wait for the oldest message to be
                            // confirmed (or a moment, if none of ours is queued).
                            match pending.pop_front() {
                                Some(delivery) => {
                                    if let Err(error) = outcome(delivery.await) {
                                        first_error.get_or_insert(error);
                                    }
                                }
                                None => tokio::time::sleep(Duration::from_millis(5)).await,
                            }
                        }
                        Err((error, _)) => {
                            first_error.get_or_insert(classify(&error));
                            break;
                        }
                    }
                }
                if first_error.is_some() {
                    break;
                }
            }
            // Every message handed over must be waited for, even after an error: a request is
            // acknowledged only once all of it is confirmed.
            for delivery in pending {
                if let Err(error) = outcome(delivery.await) {
                    first_error.get_or_insert(error);
                }
            }
            match first_error {
                Some(error) => {
                    if matches!(error, SinkError::Unreachable(_)) {
                        self.shared.renew.store(true, Ordering::Relaxed);
                    }
                    Err(error)
                }
                None => {
                    self.written = encoded;
                    Ok(())
                }
            }
        }
    }

    fn create(config: &rdkafka::ClientConfig) -> Result<FutureProducer, BuildError> {
        config.create().map_err(|error| {
            BuildError::at(
                "librdkafka_options",
                format!(
                    "librdkafka refused the producer config: {}",
                    librdkafka_message(&error)
                ),
            )
        })
    }

    fn split_path(path: &str) -> Vec<String> {
        path.split('.').map(str::to_owned).collect()
    }

    /// The configured headers present on `event`.
    fn headers(wanted: &[(String, Vec<String>)], event: &Event) -> Option<OwnedHeaders> {
        if wanted.is_empty() {
            return None;
        }
        let mut headers = OwnedHeaders::new_with_capacity(wanted.len());
        let mut value = String::new();
        for (name, path) in wanted {
            let Some(field) = event.get_path(path) else {
                continue;
            };
            value.clear();
            write_scalar(field, &mut value);
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        Some(headers)
    }

    /// A delivery report as the request's outcome (`Err(_)` outside: the producer went away).
    fn outcome<Canceled>(
        report: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, Canceled>,
    ) -> Result<(), SinkError> {
        match report {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, _))) => Err(classify(&error)),
            Err(_) => Err(SinkError::Transient(
                "the Kafka producer was closed before confirming".into(),
            )),
        }
    }

    /// What a librdkafka error means for the request.
    fn classify(error: &KafkaError) -> SinkError {
        let message = format!("Kafka: {error}");
        match error.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::OperationTimedOut,
            ) => SinkError::Unreachable(message),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord,
            ) => SinkError::Permanent(message),
            Some(
                RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed,
            ) => SinkError::Refused(format!(
                "{message}: create the topic (or let the brokers create it), or give the \
                 sink's principal the right to write it"
            )),
            _ => SinkError::Transient(message),
        }
    }

    impl Sink for KafkaSink {
        fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
            Box::pin(async move { self.send(&[events]).await })
        }

        fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
            Box::pin(self.send(chunks))
        }

        fn bytes_written(&self) -> u64 {
            self.written
        }

        fn healthcheck(&mut self) -> SinkFuture<'_> {
            Box::pin(async move {
                let producer = self.producer()?;
                let fetched = tokio::task::spawn_blocking(move || {
                    producer
                        .client()
                        .fetch_metadata(None, Duration::from_secs(5))
                        .map(|metadata| metadata.brokers().len())
                })
                .await
                .map_err(|error| SinkError::Transient(error.to_string()))?;
                match fetched {
                    Ok(_) => Ok(()),
                    Err(error) => Err(SinkError::Unreachable(format!(
                        "cannot fetch the cluster's metadata from the brokers: {error}"
                    ))),
                }
            })
        }

        fn fork(&self) -> Option<Box<dyn Sink>> {
            Some(Box::new(KafkaSink {
                shared: self.shared.clone(),
                topic: String::new(),
                payload: Vec::new(),
                key: String::new(),
                written: 0,
            }))
        }

        fn close(&mut self) -> SinkFuture<'_> {
            Box::pin(async move {
                let producer = self.shared.producer.lock().clone();
                let flushed =
                    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
                        .await;
                match flushed {
                    Ok(Ok(())) | Err(_) => Ok(()),
                    Ok(Err(error)) => Err(classify(&error)),
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;
    use sluice_pipelines::{EventMeta, Fields};

    fn config(value: serde_json::Value) -> KafkaConfig {
        serde_json::from_value(value).unwrap()
    }

    fn key(value: serde_json::Value) -> String {
        config(value).validate().unwrap_err().key.unwrap()
    }

    #[test]
    fn config_parses_with_defaults() {
        let parsed = config(json!({"brokers": ["127.0.0.1:9092"], "topic": "web"}));
        assert_eq!(parsed.acks, Acks::All);
        assert!(parsed.idempotent);
        assert_eq!(parsed.compression, KafkaCompression::None);
        assert_eq!(parsed.delivery_timeout.get(), DEFAULT_DELIVERY_TIMEOUT);
        if crate::kafka::ENABLED {
            parsed.validate().unwrap();
        }
        let full = config(json!({
            "brokers": ["a:1", "b:2"], "topic": "web-{event}", "key_field": "visitor.id",
            "headers": {"x-host": "host"}, "encoding": "text", "compression": "lz4",
            "acks": "1", "idempotent": false, "delivery_timeout": "5s",
            "librdkafka_options": {"linger.ms": "20"},
        }));
        assert_eq!(full.acks, Acks::Leader);
        if crate::kafka::ENABLED {
            full.validate().unwrap();
        }
    }

    #[test]
    fn bad_keys_are_named() {
        let base = |extra: serde_json::Value| {
            let mut value = json!({"brokers": ["127.0.0.1:9092"], "topic": "web"});
            for (k, v) in extra.as_object().unwrap() {
                value[k] = v.clone();
            }
            value
        };
        assert_eq!(key(base(json!({"brokers": []}))), "brokers");
        assert_eq!(key(base(json!({"brokers": ["nohost"]}))), "brokers[0]");
        assert_eq!(key(base(json!({"topic": "web events"}))), "topic");
        assert_eq!(key(base(json!({"topic": "web-{event"}))), "topic");
        assert_eq!(key(base(json!({"topic": "web-{}"}))), "topic");
        assert_eq!(key(base(json!({"key_field": "a..b"}))), "key_field");
        assert_eq!(key(base(json!({"headers": {"h": ""}}))), "headers.h");
        assert_eq!(key(base(json!({"encoding": "json_array"}))), "encoding");
        assert_eq!(key(base(json!({"acks": "1"}))), "idempotent");
        assert_eq!(
            key(base(json!({"librdkafka_options": {"acks": "1"}}))),
            "librdkafka_options.\"acks\""
        );
        assert!(
            serde_json::from_value::<KafkaConfig>(base(json!({"acks": "2"}))).is_err(),
            "acks is all, 1 or 0"
        );
        assert!(
            serde_json::from_value::<KafkaConfig>(base(json!({"compression": "zstd"}))).is_err()
        );
    }

    fn event(fields: serde_json::Value) -> Event {
        let mut event = Event::from_raw(Bytes::from_static(b"raw"), EventMeta::default());
        let mut map = Fields::default();
        for (name, value) in fields.as_object().unwrap() {
            let value = match value {
                serde_json::Value::String(text) => Value::from(text.as_str()),
                serde_json::Value::Number(n) => Value::Int(n.as_i64().unwrap()),
                other => panic!("{other}"),
            };
            map.insert(name.as_str().into(), value);
        }
        *event.fields_mut() = map;
        event
    }

    #[test]
    fn topic_templates_render_sanitized_fields() {
        let template = TopicTemplate::parse("web-{event}.{site.id}").unwrap();
        assert_eq!(template.fixed(), None);
        let mut out = String::new();
        let mut page_view = event(json!({"event": "page view/é"}));
        page_view.insert_path(&["site".into(), "id".into()], Value::Int(7));
        template.render(&page_view, &mut out).unwrap();
        assert_eq!(out, "web-page_view__.7");
        let missing = template
            .render(&event(json!({"event": "x"})), &mut out)
            .unwrap_err();
        assert!(missing.contains("`site.id` is missing"), "{missing}");
        let empty = TopicTemplate::parse("{event}").unwrap();
        let error = empty
            .render(&event(json!({"event": ""})), &mut out)
            .unwrap_err();
        assert!(error.contains("empty"), "{error}");
        assert_eq!(TopicTemplate::parse("web").unwrap().fixed(), Some("web"));
        let long = "x".repeat(250);
        assert_eq!(
            TopicTemplate::parse(&long).unwrap_err().key.as_deref(),
            Some("topic")
        );
    }
}
