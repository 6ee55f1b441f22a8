//! The `nats` source: messages of a JetStream durable pull consumer (acknowledged once their
//! events are safe), or of a core NATS subscription.
//!
//! ```toml
//! [sources.edges]
//! type = "nats"
//! topic = "web.raw"
//! url = "nats://127.0.0.1:4222"        # several servers: "nats://a:4222,nats://b:4222"
//! subject = "web.>"                    # wildcards allowed
//! jetstream = { stream = "WEB", durable = "central", deliver_policy = "all" }
//! # jetstream keys: ack_wait = "30s", max_ack_pending = 20000
//! # queue = "central"                  # core NATS only (no jetstream): a queue group
//! decoding = "auto"                    # payload: JSON if it starts with `{` or `[`, else text
//!                                      # lines; or "ndjson", "json", "text"
//! subject_field = "nats_subject"       # "" leaves a field out
//! sequence_field = "nats_stream_sequence"     # JetStream only
//! timestamp_field = "nats_timestamp"          # JetStream only: when the stream stored it
//! ```
//!
//! # JetStream
//! The source binds a durable pull consumer named `durable` on `stream` (created when missing,
//! with `subject` as its filter; the stream too is created when missing, taking `subject`), with
//! explicit acknowledgement. Several sluice instances with the same `durable` share its messages:
//! JetStream hands each message to one of them (competing consumers). `deliver_policy` says where
//! a *new* consumer starts — `all` (default: everything the stream holds), `new` (only what is
//! published from now on), `last` (the last message), `last_per_subject`; an existing consumer
//! resumes where its acknowledgements got to, whatever it says (as a Kafka consumer group does).
//!
//! A message is acknowledged to JetStream only once its events are **safe** in the source's
//! topic, as the `file` source checkpoints: for a memory topic, once every blocking subscription
//! acknowledged them — delivered to the stores, through every pipeline, and out of every
//! `aggregate` window —; for a disk topic, once stored. So a sluice that is SIGKILLed loses
//! nothing: its unacknowledged messages go to the other instances (or to it, restarted) once their
//! `ack_wait` runs out. While events wait (a window holds them, a store is down) the source tells
//! JetStream it is still working on their messages every third of `ack_wait`, so they are not
//! redelivered while this sluice lives. `max_ack_pending` bounds the messages a consumer has
//! unacknowledged across all instances; it must exceed what one window holds, or the consumer
//! stops delivering until the window closes. Messages whose events a `drop_newest` topic dropped
//! are acknowledged (the user chose losing them).
//!
//! # Core NATS
//! Without `jetstream` the source subscribes to `subject` (with `queue`, in that queue group:
//! each message goes to one member). Nothing is acknowledged and nothing is kept while sluice is
//! down or disconnected: NATS's at-most-once. A full topic holds the subscription back; the
//! client drops what overflows its buffer (counted by NATS as a slow consumer, and logged).
//!
//! # Payloads
//! Each message's payload is decoded like an `http_server` body (the shared decoder, `sources/body.rs`): NDJSON (one
//! event per line), JSON (an object, an array of objects, or objects one per line), or text
//! lines; `auto` picks JSON when the payload starts with `{` or `[`, text otherwise. A payload or
//! line that does not decode goes to the dead-letter topic with the reason (counted in
//! `invalid_events`); its message is acknowledged with the others. Every event gets the
//! message's subject, and from JetStream its stream sequence and the time the stream stored it,
//! replacing fields of those names.
//!
//! # Server down
//! The client connects in the background and reconnects by itself, at most a second apart; the
//! source binds its consumer again after an outage (`reconnects`), and logs and counts what fails
//! (`fetch_errors`). Counters: `messages`, `invalid_events`, `acked_messages`, `fetch_errors`,
//! `reconnects`; `/components` shows the connection and how many messages await their
//! acknowledgement.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, AckKind, stream};
use async_nats::{Client, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use sluice_pipelines::units::HumanDuration;
use sluice_pipelines::{Batch, BuildError, EventMeta, FieldName, Value};
use sluice_sink::sinks::nats::{check_stream_name, check_subject, connect, server_addrs};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::metrics::{ComponentMetrics, Counter};
use crate::sources::body::{Choice, Decoding, Format, Partial, Stamp, decode};
use crate::sources::{BATCH_EVENTS, Source, SourceContext, SourceError, SourceFuture};
use crate::topic::{Offset, Published};

/// The default `jetstream.ack_wait`.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// The default `jetstream.max_ack_pending`.
pub const DEFAULT_MAX_ACK_PENDING: i64 = 20_000;
/// How long a batch gathers messages after its first one.
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// The longest wait before binding the consumer again after a failure.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The config of the `nats` source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// The server(s): `nats://host:port`, comma-separated for several.
    pub url: String,
    /// The subject (filter) to read, wildcards allowed.
    pub subject: String,
    /// Read through a JetStream durable consumer; `None`: a core NATS subscription.
    #[serde(default)]
    pub jetstream: Option<JetStreamSourceConfig>,
    /// Core NATS only: the queue group to join.
    #[serde(default)]
    pub queue: Option<String>,
    /// How payloads are decoded; default `auto`.
    #[serde(default)]
    pub decoding: Decoding,
    /// The field for the message's subject (`""`: none).
    #[serde(default = "default_subject_field")]
    pub subject_field: String,
    /// The field for the JetStream stream sequence (`""`: none).
    #[serde(default = "default_sequence_field")]
    pub sequence_field: String,
    /// The field for the time JetStream stored the message (`""`: none).
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
}

/// The `jetstream` table of the `nats` source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStreamSourceConfig {
    /// The stream to read.
    pub stream: String,
    /// The durable consumer's name, shared by the instances that share the work.
    pub durable: String,
    /// Where a new consumer starts.
    #[serde(default)]
    pub deliver_policy: StartPolicy,
    /// How long JetStream waits for an acknowledgement (or a progress note) before redelivering.
    #[serde(default = "default_ack_wait")]
    pub ack_wait: HumanDuration,
    /// The most unacknowledged messages of the consumer.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: i64,
}

/// `deliver_policy`: where a new durable consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPolicy {
    /// Everything the stream holds.
    #[default]
    All,
    /// Only messages published from now on.
    New,
    /// The stream's last message, then new ones.
    Last,
    /// The last message of each subject, then new ones.
    LastPerSubject,
}

fn default_subject_field() -> String {
    "nats_subject".to_owned()
}
fn default_sequence_field() -> String {
    "nats_stream_sequence".to_owned()
}
fn default_timestamp_field() -> String {
    "nats_timestamp".to_owned()
}
fn default_ack_wait() -> HumanDuration {
    HumanDuration(DEFAULT_ACK_WAIT)
}
fn default_max_ack_pending() -> i64 {
    DEFAULT_MAX_ACK_PENDING
}

impl NatsSourceConfig {
    /// Checks the URL, subject, stream, durable and limits.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key.
    pub fn validate(&self) -> Result<(), BuildError> {
        server_addrs("url", &self.url)?;
        check_subject("subject", &self.subject, true)?;
        if let Some(jetstream) = &self.jetstream {
            check_stream_name("jetstream.stream", &jetstream.stream)?;
            check_stream_name("jetstream.durable", &jetstream.durable)?;
            if jetstream.ack_wait.get() < Duration::from_secs(1) {
                return Err(BuildError::at("jetstream.ack_wait", "must be at least 1s"));
            }
            if jetstream.max_ack_pending < 1 {
                return Err(BuildError::at(
                    "jetstream.max_ack_pending",
                    "must be at least 1",
                ));
            }
            if self.queue.is_some() {
                return Err(BuildError::at(
                    "queue",
                    "is for core NATS only: with `jetstream`, the instances sharing `durable` share the work",
                ));
            }
        }
        if let Some(queue) = &self.queue
            && (queue.is_empty() || queue.chars().any(|c| c.is_whitespace() || c == '.'))
        {
            return Err(BuildError::at(
                "queue",
                format!("{queue:?} is not a queue group name (no spaces or `.`)"),
            ));
        }
        Ok(())
    }

    /// Builds the source (it connects when it runs).
    ///
    /// # Errors
    /// As for [`NatsSourceConfig::validate`].
    pub fn build(&self) -> Result<NatsSource, BuildError> {
        self.validate()?;
        Ok(NatsSource {
            config: self.clone(),
        })
    }
}

/// The runtime of the `nats` source.
#[derive(Debug)]
pub struct NatsSource {
    config: NatsSourceConfig,
}

impl Source for NatsSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(async move {
            let client = connect(
                &self.config.url,
                &format!("sluice source {}", ctx.name),
                Duration::from_secs(10),
            )
            .await
            .map_err(|error| SourceError::Nats {
                url: self.config.url.clone(),
                message: error.message,
            })?;
            let runner = Runner::new(self.config, ctx, client);
            runner.run().await
        })
    }
}

/// The source's counters.
struct Counters {
    messages: Arc<Counter>,
    invalid_events: Arc<Counter>,
    acked_messages: Arc<Counter>,
    fetch_errors: Arc<Counter>,
    reconnects: Arc<Counter>,
}

/// A batch's messages waiting for their events to be safe.
struct PendingAcks {
    /// The topic offset before which the batch's events lie.
    end: Offset,
    ackers: Vec<Acker>,
}

struct Runner {
    config: NatsSourceConfig,
    ctx: SourceContext,
    client: Client,
    counters: Arc<Counters>,
    fields: Fields,
}

/// The field names to stamp, `None` where turned off.
struct Fields {
    subject: Option<FieldName>,
    sequence: Option<FieldName>,
    timestamp: Option<FieldName>,
}

fn field(name: &str) -> Option<FieldName> {
    (!name.is_empty()).then(|| FieldName::from(name))
}

impl Runner {
    fn new(config: NatsSourceConfig, ctx: SourceContext, client: Client) -> Runner {
        let counters = Arc::new(Counters {
            messages: ctx.metrics.counter("messages"),
            invalid_events: ctx.metrics.counter("invalid_events"),
            acked_messages: ctx.metrics.counter("acked_messages"),
            fetch_errors: ctx.metrics.counter("fetch_errors"),
            reconnects: ctx.metrics.counter("reconnects"),
        });
        let fields = Fields {
            subject: field(&config.subject_field),
            sequence: field(&config.sequence_field),
            timestamp: field(&config.timestamp_field),
        };
        Runner {
            config,
            ctx,
            client,
            counters,
            fields,
        }
    }

    async fn run(self) -> Result<(), SourceError> {
        match self.config.jetstream.clone() {
            Some(jetstream) => self.run_jetstream(jetstream).await,
            None => self.run_core().await,
        }
    }

    /// Core NATS: a (queue) subscription, batched into the topic.
    async fn run_core(self) -> Result<(), SourceError> {
        let subscribed = match &self.config.queue {
            Some(queue) => {
                self.client
                    .queue_subscribe(self.config.subject.clone(), queue.clone())
                    .await
            }
            None => self.client.subscribe(self.config.subject.clone()).await,
        };
        let mut subscriber = subscribed.map_err(|error| SourceError::Nats {
            url: self.config.url.clone(),
            message: format!("cannot subscribe to {}: {error}", self.config.subject),
        })?;
        loop {
            let Some(messages) = self.gather(&mut subscriber, Some).await else {
                return Ok(());
            };
            let (batch, raw_bytes) = self.decode(messages.iter().map(|m| (m, None))).await;
            if !self.ctx.publish(batch, raw_bytes).await {
                return Ok(());
            }
        }
    }

    /// JetStream: a durable pull consumer, bound again after every failure.
    async fn run_jetstream(self, config: JetStreamSourceConfig) -> Result<(), SourceError> {
        let context = jetstream::new(self.client.clone());
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        let acks = tokio::spawn(acknowledge(
            pending_rx,
            self.ctx.output.safe_offset(),
            config.ack_wait.get(),
            self.counters.clone(),
            self.ctx.metrics.clone(),
            self.client.clone(),
        ));
        let mut failures = 0u32;
        let mut bound_before = false;
        loop {
            let consumer = tokio::select! {
                biased;
                () = self.ctx.shutdown.wait() => break,
                consumer = self.bind(&context, &config) => consumer,
            };
            let mut messages = match consumer {
                Ok(consumer) => match consumer
                    .stream()
                    .max_messages_per_batch(BATCH_EVENTS)
                    .heartbeat(Duration::from_secs(5))
                    .messages()
                    .await
                {
                    Ok(messages) => messages,
                    Err(error) => {
                        self.fetch_failed(&mut failures, &error.to_string()).await;
                        continue;
                    }
                },
                Err(error) => {
                    self.fetch_failed(&mut failures, &error).await;
                    continue;
                }
            };
            if bound_before {
                self.counters.reconnects.add(1);
            }
            if failures > 0 {
                tracing::info!(source = %self.ctx.name, failures, "Bound the JetStream consumer again");
            }
            bound_before = true;
            failures = 0;
            let mut error = None;
            loop {
                let gathered = self
                    .gather(&mut messages, |item| match item {
                        Ok(message) => Some(message),
                        Err(failed) => {
                            error = Some(failed.to_string());
                            None
                        }
                    })
                    .await;
                let Some(batch) = gathered else {
                    break;
                };
                if !batch.is_empty() && !self.forward(batch, &pending_tx).await {
                    break;
                }
                if let Some(error) = error.take() {
                    self.fetch_failed(&mut failures, &error).await;
                    break;
                }
                if self.ctx.shutdown.is_triggered() {
                    break;
                }
            }
            if self.ctx.shutdown.is_triggered() {
                break;
            }
        }
        // The topic drains once its producers are gone (windows flush, sinks write), and the
        // last acknowledgements go out meanwhile: drop the producers, then wait for them (the
        // agent's `shutdown_timeout` bounds the wait).
        drop(pending_tx);
        let Runner { ctx, .. } = self;
        drop(ctx);
        let _ = acks.await;
        Ok(())
    }

    /// Publishes a batch of JetStream messages and queues their acknowledgement. Returns `false`
    /// at shutdown (the messages stay unacknowledged and are redelivered).
    async fn forward(
        &self,
        messages: Vec<jetstream::Message>,
        pending: &mpsc::UnboundedSender<PendingAcks>,
    ) -> bool {
        let mut ackers = Vec::with_capacity(messages.len());
        let mut parts = Vec::with_capacity(messages.len());
        for message in messages {
            let info = message.info().ok().map(|info| {
                let nanos = info.published.unix_timestamp_nanos();
                (
                    info.stream_sequence,
                    chrono::DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(0)),
                )
            });
            let (message, acker) = message.split();
            ackers.push(acker);
            parts.push((message, info));
        }
        let (batch, raw_bytes) = self
            .decode(parts.iter().map(|(message, info)| (message, *info)))
            .await;
        let events = batch.len() as u64;
        let published = tokio::select! {
            biased;
            published = self.ctx.output.send(batch) => published,
            () = self.ctx.shutdown.wait() => return false,
        };
        self.ctx.metrics.events_out.add(events);
        self.ctx.metrics.bytes_out.add(raw_bytes);
        let end = match published {
            Published::Stored(range) => range.end,
            // Dropped by a `drop_newest` topic: nothing to wait for.
            Published::Dropped => Offset(0),
        };
        let _ = pending.send(PendingAcks { end, ackers });
        true
    }

    /// The stream (created when missing) and the durable consumer (created when missing).
    async fn bind(
        &self,
        context: &jetstream::Context,
        config: &JetStreamSourceConfig,
    ) -> Result<PullConsumer, String> {
        let stream = context
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![self.config.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|error| format!("stream {}: {error}", config.stream))?;
        stream
            .get_or_create_consumer(
                &config.durable,
                pull::Config {
                    durable_name: Some(config.durable.clone()),
                    filter_subject: self.config.subject.clone(),
                    deliver_policy: match config.deliver_policy {
                        StartPolicy::All => DeliverPolicy::All,
                        StartPolicy::New => DeliverPolicy::New,
                        StartPolicy::Last => DeliverPolicy::Last,
                        StartPolicy::LastPerSubject => DeliverPolicy::LastPerSubject,
                    },
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait.get(),
                    max_ack_pending: config.max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| {
                format!(
                    "consumer {} on stream {}: {error}",
                    config.durable, config.stream
                )
            })
    }

    /// Logs (the first failure of a run of them, then every tenth) and waits before retrying.
    async fn fetch_failed(&self, failures: &mut u32, error: &str) {
        self.counters.fetch_errors.add(1);
        self.ctx.metrics.errors.add(1);
        if (*failures).is_multiple_of(10) {
            tracing::warn!(source = %self.ctx.name, %error, failures = *failures + 1, "Cannot read from JetStream; retrying");
        }
        *failures += 1;
        let wait = Duration::from_millis(100 * u64::from((*failures).min(10))).min(RETRY_MAX);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.ctx.shutdown.wait() => {}
        }
    }

    /// Up to [`BATCH_EVENTS`] messages: waits for the first, then takes what comes within
    /// [`BATCH_WAIT`], stopping early at an item `take` refuses (an error, which `take` keeps).
    /// `None` when shutdown fires before the first item or the stream has ended.
    async fn gather<S, T, M>(
        &self,
        stream: &mut S,
        mut take: impl FnMut(T) -> Option<M>,
    ) -> Option<Vec<M>>
    where
        S: futures_util::Stream<Item = T> + Unpin,
    {
        let mut out = Vec::new();
        let first = tokio::select! {
            biased;
            () = self.ctx.shutdown.wait() => return None,
            item = stream.next() => item?,
        };
        match take(first) {
            Some(message) => out.push(message),
            None => return Some(out),
        }
        let deadline = Instant::now() + BATCH_WAIT;
        while out.len() < BATCH_EVENTS {
            let item = tokio::select! {
                biased;
                () = self.ctx.shutdown.wait() => break,
                () = tokio::time::sleep_until(deadline) => break,
                item = stream.next() => item,
            };
            let Some(item) = item else { break };
            match take(item) {
                Some(message) => out.push(message),
                None => break,
            }
        }
        Some(out)
    }

    /// Decodes the messages into one batch (bad input to the dead-letter topic); returns the
    /// batch and the payload bytes.
    async fn decode<'a>(
        &self,
        messages: impl Iterator<Item = (&'a Message, Option<(u64, chrono::DateTime<chrono::Utc>)>)>,
    ) -> (Batch, u64) {
        let meta = EventMeta {
            source: self.ctx.id,
            origin: None,
        };
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        let mut raw_bytes = 0;
        let mut count = 0;
        for (message, info) in messages {
            count += 1;
            raw_bytes += message.payload.len() as u64;
            let mut stamp: Stamp = Vec::with_capacity(3);
            if let Some(name) = &self.fields.subject {
                stamp.push((name.clone(), Value::from(message.subject.as_str())));
            }
            if let Some((sequence, published)) = info {
                if let Some(name) = &self.fields.sequence {
                    stamp.push((
                        name.clone(),
                        Value::Int(i64::try_from(sequence).unwrap_or(i64::MAX)),
                    ));
                }
                if let Some(name) = &self.fields.timestamp {
                    stamp.push((name.clone(), Value::Timestamp(published)));
                }
            }
            let payload: &Bytes = &message.payload;
            let format = match self.config.decoding {
                Decoding::Auto => Choice::Sniff.resolve(payload),
                Decoding::Ndjson => Format::Ndjson,
                Decoding::Json => Format::Json,
                Decoding::Text => Format::Text,
            };
            let decoded = decode(payload, format, Partial::AcceptValid, meta, &stamp);
            self.counters.invalid_events.add(decoded.invalid);
            events.extend(decoded.events);
            rejected.extend(decoded.rejected);
        }
        self.counters.messages.add(count);
        if !rejected.is_empty() {
            self.ctx.dead_letter(rejected).await;
        }
        (Batch::new(events), raw_bytes)
    }
}

/// Acknowledges each batch's messages once the topic's safe offset passed its end, in order,
/// and tells JetStream the others are in progress every third of `ack_wait`. Ends when the
/// source is gone and everything was acknowledged, or the topic is gone.
async fn acknowledge(
    mut incoming: mpsc::UnboundedReceiver<PendingAcks>,
    mut safe: watch::Receiver<Offset>,
    ack_wait: Duration,
    counters: Arc<Counters>,
    metrics: Arc<ComponentMetrics>,
    client: Client,
) {
    let mut pending: VecDeque<PendingAcks> = VecDeque::new();
    let mut unacknowledged = 0usize;
    let mut open = true;
    let mut progress = tokio::time::interval(ack_wait / 3);
    progress.tick().await;
    loop {
        let safe_now = *safe.borrow_and_update();
        while pending.front().is_some_and(|batch| batch.end <= safe_now) {
            if let Some(batch) = pending.pop_front() {
                for acker in &batch.ackers {
                    // Lost acks mean redelivery (duplicates), never loss.
                    let _ = acker.ack().await;
                }
                counters.acked_messages.add(batch.ackers.len() as u64);
                unacknowledged -= batch.ackers.len();
            }
        }
        metrics.set_state(serde_json::json!({
            "connection": format!("{:?}", client.connection_state()).to_lowercase(),
            "unacknowledged_messages": unacknowledged,
        }));
        if !open && pending.is_empty() {
            break;
        }
        tokio::select! {
            received = incoming.recv(), if open => match received {
                Some(batch) => {
                    unacknowledged += batch.ackers.len();
                    pending.push_back(batch);
                }
                None => open = false,
            },
            changed = safe.changed() => if changed.is_err() {
                break;
            },
            _ = progress.tick() => {
                for batch in &pending {
                    for acker in &batch.ackers {
                        let _ = acker.ack_with(AckKind::Progress).await;
                    }
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(value: serde_json::Value) -> String {
        serde_json::from_value::<NatsSourceConfig>(value)
            .unwrap()
            .validate()
            .unwrap_err()
            .key
            .unwrap()
    }

    #[test]
    fn config_parses_and_bad_keys_are_named() {
        let config: NatsSourceConfig = serde_json::from_value(json!({
            "url": "nats://127.0.0.1:4222",
            "subject": "web.>",
            "jetstream": {"stream": "WEB", "durable": "central", "deliver_policy": "new", "ack_wait": "10s"},
        }))
        .unwrap();
        config.validate().unwrap();
        let jetstream = config.jetstream.unwrap();
        assert_eq!(jetstream.deliver_policy, StartPolicy::New);
        assert_eq!(jetstream.max_ack_pending, DEFAULT_MAX_ACK_PENDING);
        assert_eq!(config.subject_field, "nats_subject");
        let js = |extra: serde_json::Value| {
            let mut jetstream = json!({"stream": "WEB", "durable": "central"});
            jetstream
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"url": "nats://127.0.0.1:4222", "subject": "web.>", "jetstream": jetstream})
        };
        assert_eq!(key(json!({"url": "http://x", "subject": "a"})), "url");
        assert_eq!(
            key(json!({"url": "nats://x:1", "subject": "a.>.b"})),
            "subject"
        );
        assert_eq!(key(js(json!({"stream": "W.B"}))), "jetstream.stream");
        assert_eq!(key(js(json!({"durable": "a b"}))), "jetstream.durable");
        assert_eq!(key(js(json!({"ack_wait": "10ms"}))), "jetstream.ack_wait");
        assert_eq!(
            key(js(json!({"max_ack_pending": 0}))),
            "jetstream.max_ack_pending"
        );
        let mut queued = js(json!({}));
        queued["queue"] = json!("central");
        assert_eq!(key(queued), "queue");
        assert_eq!(
            key(json!({"url": "nats://x:1", "subject": "a", "queue": "a.b"})),
            "queue"
        );
        assert!(
            serde_json::from_value::<NatsSourceConfig>(js(json!({"deliver_policy": "oldest"})))
                .is_err()
        );
    }
}
