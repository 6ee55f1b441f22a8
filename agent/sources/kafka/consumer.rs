//! The `kafka` source's runtime: the consumer loop, batching and decoding, and the rebalance
//! callbacks that commit what is safe and forget what is not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use parking_lot::Mutex;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset as KafkaOffset, TopicPartitionList};
use sluice_pipelines::{Batch, EventMeta, Value};
use sluice_sink::kafka::{client_config, librdkafka_message};
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::{KafkaStartAt, Settings};
use super::offsets::{Commits, Offsets, Partition};
use crate::metrics::Counter;
use crate::sources::body::{Choice, Decoding, Format, Partial, Stamp, decode};
use crate::sources::throttle::Throttle;
use crate::sources::{BATCH_EVENTS, Source, SourceContext, SourceError, SourceFuture};
use crate::topic::{Offset, Published};

/// The most payload bytes gathered into one batch.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How long a stopping source waits for its last batches to become safe, to commit them.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// A `kafka` source, ready to run.
#[derive(Debug)]
pub struct Kafka {
    settings: Settings,
}

impl Kafka {
    pub(super) fn new(settings: Settings) -> Self {
        Kafka { settings }
    }
}

impl Source for Kafka {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(async move { run(self.settings, ctx).await })
    }
}

/// The source's counters.
struct Counters {
    messages: Arc<Counter>,
    invalid_events: Arc<Counter>,
    revoked_events: Arc<Counter>,
    assigned_partitions: Arc<Counter>,
    revoked_partitions: Arc<Counter>,
    commits: Arc<Counter>,
    commit_errors: Arc<Counter>,
    consumer_errors: Arc<Counter>,
}

/// What the consumer loop and the rebalance callbacks share.
struct Context {
    name: String,
    offsets: Arc<Mutex<Offsets>>,
    /// The sluice topic's safe offset.
    safe: watch::Receiver<Offset>,
    /// Assigned partitions, each with the assignment's generation.
    assigned: Mutex<HashMap<Partition, u64>>,
    generation: Mutex<u64>,
    counters: Counters,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let revoked: Vec<Partition> = list
            .elements()
            .iter()
            .map(|element| (element.topic().to_owned(), element.partition()))
            .collect();
        // Commit what is safe before the partitions go; forget the rest, which the next owner
        // reads again from here.
        let commits = {
            let mut offsets = self.offsets.lock();
            offsets.safe_until(*self.safe.borrow());
            let commits = offsets.take_ready();
            offsets.forget(&revoked);
            commits
        };
        commit(
            consumer,
            &commits,
            CommitMode::Sync,
            &self.counters,
            &self.name,
        );
        let mut assigned = self.assigned.lock();
        for partition in &revoked {
            assigned.remove(partition);
        }
        self.counters.revoked_partitions.add(revoked.len() as u64);
        tracing::info!(source = %self.name, partitions = revoked.len(), "Kafka partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let generation = {
                    let mut generation = self.generation.lock();
                    *generation += 1;
                    *generation
                };
                let mut assigned = self.assigned.lock();
                for element in list.elements() {
                    assigned.insert(
                        (element.topic().to_owned(), element.partition()),
                        generation,
                    );
                }
                self.counters.assigned_partitions.add(list.count() as u64);
                tracing::info!(source = %self.name, partitions = list.count(), "Kafka partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                self.counters.consumer_errors.add(1);
                tracing::warn!(source = %self.name, %error, "Kafka rebalance failed");
            }
        }
    }
}

/// Commits `commits` (the offset of the next message per partition).
fn commit<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    commits: &Commits,
    mode: CommitMode,
    counters: &Counters,
    name: &str,
) {
    if commits.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::with_capacity(commits.len());
    for ((topic, partition), offset) in commits {
        if list
            .add_partition_offset(topic, *partition, KafkaOffset::Offset(*offset))
            .is_err()
        {
            continue;
        }
    }
    match consumer.commit(&list, mode) {
        Ok(()) => counters.commits.add(1),
        Err(error) => {
            // Not fatal: the next commit carries later offsets; a lost one re-reads a little.
            counters.commit_errors.add(1);
            tracing::warn!(source = %name, %error, "Cannot commit Kafka offsets");
        }
    }
}

/// One message's place while its batch is gathered.
struct Gathered {
    /// Index into the batch's partitions.
    partition: usize,
    offset: i64,
    key: Option<Bytes>,
    timestamp: Option<i64>,
    payload: std::ops::Range<usize>,
}

/// A partition seen in a batch: which one, its assignment generation then, and the offset after
/// its last message.
struct BatchPartition {
    partition: Partition,
    generation: Option<u64>,
    next: i64,
}

/// Messages gathered into one batch: their payloads in one buffer.
#[derive(Default)]
struct GatheredBatch {
    payloads: BytesMut,
    messages: Vec<Gathered>,
    partitions: Vec<BatchPartition>,
}

impl GatheredBatch {
    fn take(&mut self, context: &Context, message: &BorrowedMessage<'_>) {
        let index = match self.partitions.iter().position(|seen| {
            seen.partition.1 == message.partition() && seen.partition.0 == message.topic()
        }) {
            Some(index) => index,
            None => {
                let partition = (message.topic().to_owned(), message.partition());
                let generation = context.assigned.lock().get(&partition).copied();
                self.partitions.push(BatchPartition {
                    partition,
                    generation,
                    next: 0,
                });
                self.partitions.len() - 1
            }
        };
        self.partitions[index].next = message.offset() + 1;
        let start = self.payloads.len();
        self.payloads
            .extend_from_slice(message.payload().unwrap_or_default());
        self.messages.push(Gathered {
            partition: index,
            offset: message.offset(),
            key: message.key().map(Bytes::copy_from_slice),
            timestamp: message.timestamp().to_millis(),
            payload: start..self.payloads.len(),
        });
    }
}

async fn run(settings: Settings, ctx: SourceContext) -> Result<(), SourceError> {
    let counters = Counters {
        messages: ctx.metrics.counter("messages"),
        invalid_events: ctx.metrics.counter("invalid_events"),
        revoked_events: ctx.metrics.counter("revoked_events"),
        assigned_partitions: ctx.metrics.counter("assigned_partitions"),
        revoked_partitions: ctx.metrics.counter("revoked_partitions"),
        commits: ctx.metrics.counter("commits"),
        commit_errors: ctx.metrics.counter("commit_errors"),
        consumer_errors: ctx.metrics.counter("consumer_errors"),
    };
    let offsets = Arc::new(Mutex::new(Offsets::default()));
    let context = Context {
        name: ctx.name.clone(),
        offsets: offsets.clone(),
        safe: ctx.output.safe_offset(),
        assigned: Mutex::new(HashMap::new()),
        generation: Mutex::new(0),
        counters,
    };
    let start_at = match settings.start_at {
        KafkaStartAt::Earliest => "earliest",
        KafkaStartAt::Latest => "latest",
    };
    let defaults = [
        ("group.id", settings.group_id.as_str()),
        ("auto.offset.reset", start_at),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("client.id", "sluice"),
    ];
    let consumer: StreamConsumer<Context> =
        client_config(&settings.brokers, &defaults, &settings.librdkafka_options)
            .create_with_context(context)
            .map_err(|error| {
                SourceError::Broker(format!(
                    "librdkafka refused the consumer config: {}",
                    librdkafka_message(&error)
                ))
            })?;
    let topics: Vec<&str> = settings.subscription.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|error| SourceError::Broker(format!("cannot subscribe to {topics:?}: {error}")))?;

    let mut safe = ctx.output.safe_offset();
    let mut topic_alive = true;
    let mut commit_tick = tokio::time::interval(settings.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut errors_log = Throttle::default();
    let reader = Reader::new(&settings);
    loop {
        tokio::select! {
            biased;
            () = ctx.shutdown.wait() => break,
            changed = safe.changed(), if topic_alive => {
                topic_alive = changed.is_ok();
                offsets.lock().safe_until(*safe.borrow_and_update());
            }
            _ = commit_tick.tick() => {
                let commits = offsets.lock().take_ready();
                let context = consumer.context();
                commit(&consumer, &commits, CommitMode::Async, &context.counters, &ctx.name);
            }
            received = consumer.recv() => match received {
                Ok(first) => {
                    if !reader.read_batch(&consumer, first, &ctx, &offsets).await {
                        break;
                    }
                }
                Err(error) => {
                    consumer.context().counters.consumer_errors.add(1);
                    if let Some(left_out) = errors_log.hit() {
                        tracing::warn!(source = %ctx.name, %error, left_out, "Kafka consumer error");
                    }
                }
            },
        }
    }
    // Commit what becomes safe of what was published, for a moment; the rest is read again.
    let deadline = Instant::now() + FLUSH_WAIT;
    while topic_alive && offsets.lock().waiting() {
        tokio::select! {
            changed = safe.changed() => {
                topic_alive = changed.is_ok();
                offsets.lock().safe_until(*safe.borrow_and_update());
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    let commits = {
        let mut offsets = offsets.lock();
        offsets.safe_until(*safe.borrow());
        offsets.take_ready()
    };
    let name = ctx.name.clone();
    // Committing and leaving the group (which hands the partitions to the others at once)
    // block: not on a runtime thread.
    let _ = tokio::task::spawn_blocking(move || {
        let context = consumer.context();
        commit(
            &consumer,
            &commits,
            CommitMode::Sync,
            &context.counters,
            &name,
        );
        consumer.unsubscribe();
        drop(consumer);
    })
    .await;
    Ok(())
}

/// Turns gathered messages into events.
struct Reader {
    choice: Option<Format>,
    fields: super::config::MessageFields,
}

impl Reader {
    fn new(settings: &Settings) -> Self {
        let choice = match settings.decoding {
            Decoding::Auto => None,
            Decoding::Json => Some(Format::Json),
            Decoding::Ndjson => Some(Format::Ndjson),
            Decoding::Text => Some(Format::Text),
        };
        Reader {
            choice,
            fields: settings.fields.clone(),
        }
    }

    /// Gathers the messages ready after `first` into a batch, decodes and publishes it and
    /// remembers its offsets. Returns `false` when shutdown interrupted publishing.
    async fn read_batch(
        &self,
        consumer: &StreamConsumer<Context>,
        first: BorrowedMessage<'_>,
        ctx: &SourceContext,
        offsets: &Mutex<Offsets>,
    ) -> bool {
        let context = consumer.context();
        let mut batch = GatheredBatch::default();
        batch.take(context, &first);
        drop(first);
        while batch.messages.len() < BATCH_EVENTS && batch.payloads.len() < BATCH_BYTES {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => batch.take(context, &message),
                Some(Err(_)) | None => break,
            }
        }
        let GatheredBatch {
            payloads,
            messages: gathered,
            partitions,
        } = batch;
        context.counters.messages.add(gathered.len() as u64);
        // A rebalance in between may have revoked some partitions: their messages are the next
        // owner's now (read again from the last commit), so they are neither published nor
        // committed here.
        let current: Vec<bool> = {
            let assigned = context.assigned.lock();
            partitions
                .iter()
                .map(|seen| {
                    seen.generation.is_some()
                        && assigned.get(&seen.partition).copied() == seen.generation
                })
                .collect()
        };
        let payloads = payloads.freeze();
        let mut events = Vec::with_capacity(gathered.len());
        let mut rejected = Vec::new();
        let mut revoked = 0u64;
        let mut raw_bytes = 0u64;
        for message in &gathered {
            if !current[message.partition] {
                revoked += 1;
                continue;
            }
            let body = payloads.slice(message.payload.clone());
            raw_bytes += body.len() as u64;
            let stamp = self.stamp(&partitions[message.partition].partition, message);
            let format = self.choice.unwrap_or_else(|| Choice::Sniff.resolve(&body));
            let meta = EventMeta {
                source: ctx.id,
                origin: u64::try_from(message.offset).ok(),
            };
            let decoded = decode(&body, format, Partial::AcceptValid, meta, &stamp);
            events.extend(decoded.events);
            rejected.extend(decoded.rejected);
        }
        context.counters.revoked_events.add(revoked);
        let next: Vec<(Partition, i64)> = partitions
            .into_iter()
            .zip(&current)
            .filter(|(_, current)| **current)
            .map(|(seen, _)| (seen.partition, seen.next))
            .collect();
        if !rejected.is_empty() {
            context.counters.invalid_events.add(rejected.len() as u64);
            ctx.metrics.errors.add(rejected.len() as u64);
            if !ctx.dead_letter(rejected).await {
                return false;
            }
        }
        if events.is_empty() {
            offsets.lock().done(next);
            return true;
        }
        let count = events.len() as u64;
        let published = tokio::select! {
            biased;
            published = ctx.output.send(Batch::new(events)) => published,
            () = ctx.shutdown.wait() => return false,
        };
        ctx.metrics.events_out.add(count);
        ctx.metrics.bytes_out.add(raw_bytes);
        match published {
            Published::Stored(range) => offsets.lock().published(range.end, next),
            // A `drop_newest` topic: the user chose losing events over waiting.
            Published::Dropped => offsets.lock().done(next),
        }
        true
    }

    /// The Kafka fields of `message`.
    fn stamp(&self, partition: &Partition, message: &Gathered) -> Stamp {
        let mut stamp = Stamp::with_capacity(5);
        if let Some(name) = &self.fields.topic {
            stamp.push((name.clone(), Value::from(partition.0.as_str())));
        }
        if let Some(name) = &self.fields.partition {
            stamp.push((name.clone(), Value::Int(i64::from(partition.1))));
        }
        if let Some(name) = &self.fields.offset {
            stamp.push((name.clone(), Value::Int(message.offset)));
        }
        if let (Some(name), Some(key)) = (&self.fields.key, &message.key) {
            let (text, _) = sluice_pipelines::event::Str::from_utf8_lossy(key.clone());
            stamp.push((name.clone(), Value::String(text)));
        }
        if let (Some(name), Some(millis)) = (&self.fields.timestamp, message.timestamp)
            && let Some(at) = chrono::DateTime::from_timestamp_millis(millis)
        {
            stamp.push((name.clone(), Value::Timestamp(at)));
        }
        stamp
    }
}
