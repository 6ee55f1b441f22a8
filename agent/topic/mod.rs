//! The topic queue: named, buffered logs of events between sources, pipelines and sinks.
//!
//! # Model
//!
//! A [`Topic`] is an append-only log of batches, modelled on a Kafka partition. Each event gets
//! an [`Offset`]: the first event published is 0, the next 1, and so on. [`Producer`]s append whole
//! batches; a batch is stored once, behind an `Arc`, and shared by every reader — never copied per
//! subscriber.
//!
//! # Subscriptions and workers
//!
//! Readers read through a [`Subscription`]. Every subscription receives every event published
//! after it was created (publish/subscribe: an archive sink and a ClickHouse sink both read
//! `web.requests`). A subscription may have several workers — clones of the same
//! `Subscription` — that compete: each batch goes to exactly one of them (point-to-point).
//!
//! # Acknowledgement and redelivery
//!
//! [`Subscription::next`] hands out a [`Delivery`]: one whole batch. The worker calls
//! [`Delivery::ack`] once the batch is safely passed on (written to the store, published to the
//! next topic). Each subscription has a *committed* offset: the end of the contiguous prefix of
//! acknowledged batches; batches acknowledged out of order wait until the gap before them closes.
//! A delivery dropped without `ack` (its worker failed or panicked) goes back to the front of its
//! subscription's queue and is handed to the next worker that asks, and so does a delivery not
//! acknowledged within the subscription's `ack_timeout`; a late `ack` of such a delivery is
//! ignored. So delivery is at-least-once: a worker that is merely slow may see its batch processed
//! twice.
//!
//! A worker that passes events on to something slower to confirm — a pipeline, whose output is
//! safe only once its own subscribers acknowledged it, or whose windows hold events for a
//! minute — calls [`Delivery::hold`] instead: the batch is processed (never handed out again, and
//! its room in a memory topic is freed) but not acknowledged until [`Held::ack`]. The committed
//! offset stops before it until then. That is how acknowledgements chain end to end: a source's
//! safe offset means "delivered", however many topics and pipelines lie between it and the stores.
//!
//! # Capacity and back-pressure
//!
//! A topic holds at most `max_events` events and `max_bytes` bytes (estimated), counted from the
//! oldest batch some subscription still needs to the newest. Publishing into a full topic follows
//! its [`WhenFull`] policy: `block` (the default) makes [`Producer::send`] wait for room —
//! that is what makes a file source stop reading and an HTTP source answer 503 —, `drop_newest`
//! discards the incoming batch and `drop_oldest` discards the oldest retained one; each drop is
//! counted. A topic accepts any single batch when it is empty, so an oversized batch cannot wedge
//! its producer.
//!
//! Only *blocking* subscriptions (the default) hold producers back. A subscription declared
//! non-blocking instead loses its own oldest unread batches when the topic needs room, counted in
//! its `lost_events`, so one dead sink cannot stall the others. A topic without subscriptions keeps
//! its newest events (for inspection) and evicts the oldest as needed, counted in `evicted_unread`.
//!
//! # Safety for checkpoints
//!
//! [`Producer::safe_offset`] watches the offset before which every event is safe: acknowledged by
//! every blocking subscription (memory storage) or durably stored (disk storage). Sources map
//! their read positions to topic offsets and checkpoint only what is safe, which makes
//! source → memory topic → sink at-least-once across a crash.
//!
//! # Ending
//!
//! A topic closes when its last [`Producer`] is dropped. Once a subscription of a closed topic has
//! had every batch delivered and acknowledged, `next` returns `None` to its workers — how a
//! finite run (stdin, `follow = false` files) drains and exits. A topic that never had a producer
//! is not closed: its workers wait.
//!
//! # Taps
//!
//! [`Topic::tap`] watches what is published for inspection (the admin API's `/tap`): it gets each
//! new batch (the same `Arc`) through a small channel, best effort. It is not a subscription: it
//! holds nothing back, is never waited for, and misses batches when its reader is slow.
//!
//! # Locking
//!
//! Each topic has one mutex around its `state` machine, taken once per batch operation (never
//! per event); waiting uses [`tokio::sync::Notify`] and never holds the lock.

pub mod disk;
mod offset;
mod state;
mod storage;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_pipelines::{Batch, Event};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

pub use disk::DiskStats;
pub use offset::{Offset, OffsetRange};
pub use state::{DEFAULT_ACK_TIMEOUT, SubscriptionCounters, TopicCounters};
pub use storage::{MemoryStorage, Storage, Stored};

use state::{DeliveryTicket, Poll, PublishOutcome, TopicState};

/// What publishing into a full topic does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The producer waits for room (back-pressure).
    #[default]
    Block,
    /// The incoming batch is discarded and counted.
    DropNewest,
    /// The oldest retained batch is discarded and counted.
    DropOldest,
}

/// Capacity and policy of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    /// Most events retained.
    pub max_events: u64,
    /// Most estimated bytes retained.
    pub max_bytes: u64,
    /// What publishing into a full topic does.
    pub when_full: WhenFull,
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            max_events: 20_000,
            max_bytes: 16 * 1024 * 1024,
            when_full: WhenFull::Block,
        }
    }
}

/// Where a subscription without a committed offset starts (`start_at`). A subscription that
/// committed before (a disk topic, after a restart) resumes where it was, whatever this says;
/// `sluice topics reset` rewinds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartAt {
    /// At the end: only what is published from now on (the default, as Kafka's `latest`).
    #[default]
    Latest,
    /// At the oldest event the topic still holds: a sink added later backfills.
    Earliest,
    /// At this offset (clamped to what the topic holds).
    Offset(Offset),
    /// At the first batch appended at or after this time (milliseconds since the Unix epoch).
    Time(i64),
}

/// Why a `start_at` value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartAtError {
    /// Digits that do not fit an offset.
    #[error("offset {text} is too large")]
    OffsetTooLarge {
        /// The value as written.
        text: String,
    },
    /// Neither a name, an offset nor a time.
    #[error(
        "expected `earliest`, `latest`, an offset or an RFC 3339 time such as \
         \"2026-12-01T00:00:00Z\", found {text:?}"
    )]
    Unknown {
        /// The value as written.
        text: String,
    },
}

impl StartAt {
    /// Parses `earliest`, `latest`, an offset (digits) or an RFC 3339 time.
    ///
    /// # Errors
    /// A [`StartAtError`] saying what was expected.
    pub fn parse(text: &str) -> Result<StartAt, StartAtError> {
        match text {
            "earliest" => Ok(StartAt::Earliest),
            "latest" => Ok(StartAt::Latest),
            _ if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) => text
                .parse()
                .map(|offset| StartAt::Offset(Offset(offset)))
                .map_err(|_| StartAtError::OffsetTooLarge {
                    text: text.to_owned(),
                }),
            _ => chrono::DateTime::parse_from_rfc3339(text)
                .map(|time| StartAt::Time(time.timestamp_millis()))
                .map_err(|_| StartAtError::Unknown {
                    text: text.to_owned(),
                }),
        }
    }
}

/// How a subscription behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionSettings {
    /// The subscriber's name (a pipeline or sink), for stats and logs.
    pub name: String,
    /// Whether this subscription holds producers back when the topic is full; a non-blocking one
    /// loses its oldest unread events instead.
    pub blocking: bool,
    /// How long a worker may hold a delivery before it goes to another worker; `None` waits
    /// forever.
    pub ack_timeout: Option<Duration>,
    /// Where it starts when it has no committed offset.
    pub start_at: StartAt,
}

impl SubscriptionSettings {
    /// A blocking subscription named `name` with the default ack timeout, starting at the end.
    pub fn new(name: impl Into<String>) -> Self {
        SubscriptionSettings {
            name: name.into(),
            blocking: true,
            ack_timeout: Some(DEFAULT_ACK_TIMEOUT),
            start_at: StartAt::Latest,
        }
    }
}

struct SubHandle {
    notify: Notify,
}

struct Shared {
    name: String,
    state: Mutex<TopicState>,
    /// Producers waiting for room.
    space: Notify,
    /// One per subscription, indexed like `state.subs`: workers waiting for batches.
    subs: Mutex<Vec<Arc<SubHandle>>>,
    safe_offset: watch::Sender<Offset>,
    /// Whether the storage keeps events durably (fixed when the topic is made).
    persistent: bool,
}

impl Shared {
    fn notify_all_subscriptions(&self) {
        for sub in self.subs.lock().iter() {
            sub.notify.notify_waiters();
        }
    }

    /// Publishes the safe offset if it moved forward. It never moves back: a value computed
    /// under the lock may arrive here after a newer one (a producer's publish racing a worker's
    /// ack), and must not overwrite it.
    fn update_safe_offset(&self, safe: Offset) {
        self.safe_offset.send_if_modified(|current| {
            if safe > *current {
                *current = safe;
                true
            } else {
                false
            }
        });
    }
}

/// A named topic. Cheap to clone: clones are handles to the same topic.
#[derive(Clone)]
pub struct Topic {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl Topic {
    /// A topic kept in memory.
    pub fn in_memory(name: impl Into<String>, settings: TopicSettings) -> Self {
        Self::with_storage(name, settings, Box::new(MemoryStorage::new()))
    }

    /// A topic over the given storage.
    pub fn with_storage(
        name: impl Into<String>,
        settings: TopicSettings,
        storage: Box<dyn Storage>,
    ) -> Self {
        let persistent = storage.durable_end().is_some();
        let state = TopicState::new(settings, storage);
        let (safe_offset, _) = watch::channel(state.safe_offset());
        let shared = Arc::new(Shared {
            name: name.into(),
            state: Mutex::new(state),
            space: Notify::new(),
            subs: Mutex::new(Vec::new()),
            safe_offset,
            persistent,
        });
        // A persistent storage says (from its writer thread) when more is durable: that moves
        // the safe offset sources wait for, and may free producers held back by its backlog.
        let weak = Arc::downgrade(&shared);
        shared
            .state
            .lock()
            .storage
            .set_durable_notifier(Box::new(move |durable| {
                // Without the topic's lock (see `Storage::set_durable_notifier`): for a
                // persistent storage the safe offset is the durable end.
                if let Some(shared) = weak.upgrade() {
                    shared.update_safe_offset(durable);
                    shared.space.notify_waiters();
                }
            }));
        Topic { shared }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A new producer. The topic stays open while any producer exists.
    pub fn producer(&self) -> Producer {
        {
            let mut state = self.shared.state.lock();
            state.producers += 1;
            state.closed = false;
        }
        Producer {
            shared: self.shared.clone(),
        }
    }

    /// A new subscription, starting at the end of the topic. Clone it to add workers.
    pub fn subscribe(&self, settings: SubscriptionSettings) -> Subscription {
        let mut subs = self.shared.subs.lock();
        let mut state = self.shared.state.lock();
        let index = state.subscribe(settings);
        let safe = state.safe_offset();
        drop(state);
        let handle = Arc::new(SubHandle {
            notify: Notify::new(),
        });
        subs.push(handle.clone());
        drop(subs);
        self.shared.update_safe_offset(safe);
        Subscription {
            shared: self.shared.clone(),
            index,
            handle,
        }
    }

    /// Watches the batches published from now on, for inspection (the admin API's tap): up to
    /// `buffer` batches wait for the reader; when it falls behind, batches are skipped for it.
    /// Unlike a subscription, a tap never holds producers back, is never waited for and needs no
    /// acknowledgement; it ends when the receiver is dropped.
    pub fn tap(&self, buffer: usize) -> tokio::sync::mpsc::Receiver<Arc<Batch>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(buffer.max(1));
        self.shared.state.lock().taps.push(sender);
        receiver
    }

    /// A topic kept in a disk log in `dir` (created if missing; recovered if it exists).
    ///
    /// # Errors
    /// When the directory cannot be created or read (see [`disk::Log::open`]).
    pub fn on_disk(
        name: impl Into<String>,
        settings: TopicSettings,
        dir: &std::path::Path,
        disk: disk::DiskSettings,
    ) -> Result<Self, disk::LogError> {
        let storage = disk::DiskStorage::open(dir, disk)?;
        Ok(Self::with_storage(name, settings, Box::new(storage)))
    }

    /// Whether the topic keeps its events durably (a disk topic).
    pub fn is_persistent(&self) -> bool {
        self.shared.persistent
    }

    /// The retained batches holding the events from offset `from` on, oldest first, until they
    /// hold `max_events` events from `from` on (the first may start before `from`; an offset
    /// before the oldest retained event reads from that one). For inspection — `sluice topics
    /// read` against a running agent —: it moves no subscription and trims nothing. Runs under
    /// the topic's lock, reading a disk topic's batches from its files when not cached.
    pub fn read(&self, from: Offset, max_events: u64) -> Vec<Stored> {
        let mut state = self.shared.state.lock();
        let storage = &mut state.storage;
        let end = storage.end();
        let from = from.max(storage.start());
        let mut next = storage.get(from);
        if next.is_none() && from < end {
            // Memory storage finds batches by their first offset only: walk to the one holding
            // `from` (a memory topic holds few batches).
            let mut at = storage.start();
            next = loop {
                match storage.get(at) {
                    Some(stored) if stored.range.end <= from => at = stored.range.end,
                    found => break found,
                }
            };
        }
        let mut batches = Vec::new();
        let mut taken = 0;
        while let Some(stored) = next {
            if taken >= max_events {
                break;
            }
            taken += stored.range.end.0 - stored.range.start.0.max(from.0);
            let after = stored.range.end;
            batches.push(stored);
            next = if after < end {
                storage.get(after)
            } else {
                None
            };
        }
        batches
    }

    /// Runs the storage's housekeeping (a disk topic's retention); wakes producers and workers
    /// if it freed room or skipped deleted events.
    pub fn maintain(&self) {
        let changed = self.shared.state.lock().maintain();
        if changed {
            self.shared.space.notify_waiters();
            self.shared.notify_all_subscriptions();
        }
    }

    /// Waits until everything published is stored and every committed offset persisted (a
    /// disk topic; nothing to do for memory). Blocks the thread: call it at shutdown, off the
    /// runtime (`spawn_blocking`).
    ///
    /// # Errors
    /// What the disk log could not write.
    pub fn flush(&self) -> Result<(), disk::LogError> {
        let handle = self.shared.state.lock().storage.flush_handle();
        handle.map_or(Ok(()), |handle| handle.flush())
    }

    /// A snapshot of the topic's occupancy and counters.
    pub fn stats(&self) -> TopicStats {
        let state = self.shared.state.lock();
        let end = state.storage.end();
        TopicStats {
            name: self.shared.name.clone(),
            retained_events: state.storage.retained_events(),
            retained_bytes: state.storage.retained_bytes(),
            max_events: state.settings.max_events,
            max_bytes: state.settings.max_bytes,
            end_offset: end,
            safe_offset: state.safe_offset(),
            producers: state.producers,
            counters: state.counters,
            disk: state.storage.describe(),
            subscriptions: state
                .subs
                .iter()
                .map(|sub| SubscriptionStats {
                    name: sub.settings.name.clone(),
                    blocking: sub.settings.blocking,
                    committed_offset: sub.committed,
                    lag_events: end.0 - sub.committed.0,
                    in_flight_batches: sub.in_flight_batches(),
                    held_batches: sub.held_batches(),
                    counters: sub.counters,
                })
                .collect(),
        }
    }
}

/// A snapshot of a topic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicStats {
    /// The topic's name.
    pub name: String,
    /// Events retained now.
    pub retained_events: u64,
    /// Estimated bytes retained now.
    pub retained_bytes: u64,
    /// Capacity in events.
    pub max_events: u64,
    /// Capacity in bytes.
    pub max_bytes: u64,
    /// The offset the next event will get.
    pub end_offset: Offset,
    /// The offset before which every event is safe.
    pub safe_offset: Offset,
    /// Open producers.
    pub producers: usize,
    /// Topic-wide counters.
    pub counters: TopicCounters,
    /// For a disk topic: its files and recovery counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskStats>,
    /// One entry per subscription.
    pub subscriptions: Vec<SubscriptionStats>,
}

/// A snapshot of one subscription.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionStats {
    /// The subscriber's name.
    pub name: String,
    /// Whether it holds producers back.
    pub blocking: bool,
    /// Everything before this offset is acknowledged.
    pub committed_offset: Offset,
    /// Events published but not yet acknowledged.
    pub lag_events: u64,
    /// Batches handed out and not yet acknowledged.
    pub in_flight_batches: usize,
    /// Batches processed and waiting to be acknowledged (see [`Delivery::hold`]).
    pub held_batches: usize,
    /// Its counters.
    pub counters: SubscriptionCounters,
}

/// What became of a published batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Stored at these offsets.
    Stored(OffsetRange),
    /// Discarded (and counted) by the topic's `drop_newest` policy.
    Dropped,
}

/// The batch given back when a send could not complete in time.
#[derive(Debug)]
pub struct SendTimeoutError(pub Batch);

impl std::fmt::Display for SendTimeoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic full: {} events not accepted in time",
            self.0.len()
        )
    }
}

impl std::error::Error for SendTimeoutError {}

/// Publishes batches into a topic. Cloning adds a producer; the topic ends when all are dropped.
pub struct Producer {
    shared: Arc<Shared>,
}

impl Producer {
    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.shared.name
    }

    /// Publishes `batch`, waiting for room under the `block` policy.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped while waiting, the batch was not published.
    pub async fn send(&self, batch: Batch) -> Published {
        let mut batch = batch;
        loop {
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_publish(batch) {
                Ok(published) => return published,
                Err(back) => batch = back,
            }
            notified.await;
        }
    }

    /// Publishes `batch` or gives it back if the topic is full under the `block` policy.
    ///
    /// # Errors
    /// The batch, when there is no room now.
    pub fn try_send(&self, batch: Batch) -> Result<Published, Batch> {
        self.try_publish(batch)
    }

    /// Publishes `batch`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`SendTimeoutError`] with the batch when no room came in time.
    pub async fn send_timeout(
        &self,
        batch: Batch,
        timeout: Duration,
    ) -> Result<Published, SendTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut batch = batch;
        loop {
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_publish(batch) {
                Ok(published) => return Ok(published),
                Err(back) => batch = back,
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return match self.try_publish(batch) {
                    Ok(published) => Ok(published),
                    Err(back) => Err(SendTimeoutError(back)),
                };
            }
        }
    }

    /// Publishes events as one batch; shorthand for `send(Batch::new(events))`.
    pub async fn send_events(&self, events: Vec<Event>) -> Published {
        self.send(Batch::new(events)).await
    }

    fn try_publish(&self, batch: Batch) -> Result<Published, Batch> {
        let mut state = self.shared.state.lock();
        let outcome = state.publish(batch);
        let safe = state.safe_offset();
        drop(state);
        match outcome {
            PublishOutcome::Stored(range) => {
                if !range.is_empty() {
                    self.shared.notify_all_subscriptions();
                }
                self.shared.update_safe_offset(safe);
                Ok(Published::Stored(range))
            }
            PublishOutcome::DroppedNewest => Ok(Published::Dropped),
            PublishOutcome::Full(batch) => Err(batch),
        }
    }

    /// Watches the offset before which every event of this topic is safe (see the module doc).
    pub fn safe_offset(&self) -> watch::Receiver<Offset> {
        self.shared.safe_offset.subscribe()
    }

    /// Whether the topic's storage keeps events durably (a disk topic): then its safe offset is
    /// the end of what is stored, whatever its subscribers did.
    pub fn is_persistent(&self) -> bool {
        self.shared.persistent
    }

    /// Waits until every event before `end` is safe: for a disk topic, stored (per its fsync
    /// policy); for a memory topic, acknowledged by every blocking subscription. Returns `false`
    /// if the topic went away first.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_safe(&self, end: Offset) -> bool {
        let mut safe = self.safe_offset();
        safe.wait_for(|safe| *safe >= end).await.is_ok()
    }
}

impl Clone for Producer {
    fn clone(&self) -> Self {
        self.shared.state.lock().producers += 1;
        Producer {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let remaining = {
            let mut state = self.shared.state.lock();
            state.producers -= 1;
            if state.producers == 0 {
                state.closed = true;
            }
            state.producers
        };
        if remaining == 0 {
            self.shared.notify_all_subscriptions();
        }
    }
}

/// A subscription to a topic. Clones are competing workers of the same subscription.
#[derive(Clone)]
pub struct Subscription {
    shared: Arc<Shared>,
    index: usize,
    handle: Arc<SubHandle>,
}

impl Subscription {
    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.shared.name
    }

    /// Waits for the next batch for this worker. Returns `None` once the topic has no producers
    /// left and every batch was delivered and acknowledged.
    ///
    /// # Cancel safety
    /// Cancel safe: a batch is only taken when the future completes.
    pub async fn next(&self) -> Option<Delivery> {
        loop {
            let notified = self.handle.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let poll = self.shared.state.lock().poll(self.index, Instant::now());
            match poll {
                Poll::Ready(ticket) => {
                    return Some(Delivery {
                        shared: self.shared.clone(),
                        sub: self.index,
                        handle: self.handle.clone(),
                        ticket,
                        settled: false,
                    });
                }
                Poll::Ended => return None,
                Poll::Pending {
                    deadline: Some(deadline),
                } => {
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
                Poll::Pending { deadline: None } => notified.await,
            }
        }
    }
}

impl Subscription {
    /// Waits until every producer is gone and every batch was handed out, even if some are still
    /// being processed. A worker that gathers deliveries before acknowledging them (a sink
    /// batching for its store) uses this to flush at once instead of waiting for a timer.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn drained(&self) {
        loop {
            let notified = self.handle.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.state.lock().drained(self.index) {
                return;
            }
            notified.await;
        }
    }
}

/// One batch handed to one worker. Acknowledge it with [`Delivery::ack`]; dropping it without
/// acknowledging hands the batch to another worker.
pub struct Delivery {
    shared: Arc<Shared>,
    sub: usize,
    handle: Arc<SubHandle>,
    ticket: DeliveryTicket,
    settled: bool,
}

impl Delivery {
    /// The delivered batch.
    pub fn batch(&self) -> &Arc<Batch> {
        &self.ticket.batch
    }

    /// The delivered events.
    pub fn events(&self) -> &[Event] {
        self.ticket.batch.events()
    }

    /// The offsets of the delivered events.
    pub fn range(&self) -> OffsetRange {
        self.ticket.range
    }

    /// Acknowledges the batch: it is safely passed on.
    pub fn ack(mut self) {
        self.settled = true;
        acknowledge(
            &self.shared,
            &self.handle,
            self.sub,
            self.ticket.range,
            self.ticket.generation,
        );
    }

    /// Marks the batch as processed, to be acknowledged later with [`Held::ack`]: the worker has
    /// passed its events on and waits until what it made of them is safe further down (a
    /// pipeline waiting for its output to be delivered, or for the window its events were folded
    /// into to close and be delivered). A held batch is never handed out again; unless the
    /// topic's storage persists it, it no longer takes room in the topic, but the subscription's
    /// committed offset — and so the offset sources checkpoint by — stays before it until it is
    /// acknowledged. Dropping the [`Held`] without acknowledging leaves it unacknowledged for
    /// the rest of the run (a restart reads it again from the source or the disk topic).
    pub fn hold(mut self) -> Held {
        self.settled = true;
        let moved = self.shared.state.lock().hold(self.sub, &self.ticket);
        if moved {
            self.shared.space.notify_waiters();
        }
        Held {
            shared: self.shared.clone(),
            sub: self.sub,
            handle: self.handle.clone(),
            range: self.ticket.range,
            generation: self.ticket.generation,
        }
    }

    /// Gives the batch back unprocessed, for another worker (or this one) to take.
    pub fn nack(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        if self.shared.state.lock().nack(self.sub, &self.ticket) {
            self.handle.notify.notify_waiters();
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.release();
    }
}

/// A processed batch waiting to be acknowledged (see [`Delivery::hold`]). It keeps only the
/// batch's offsets, not its events.
pub struct Held {
    shared: Arc<Shared>,
    sub: usize,
    handle: Arc<SubHandle>,
    range: OffsetRange,
    generation: u64,
}

impl Held {
    /// The offsets of the held events.
    pub fn range(&self) -> OffsetRange {
        self.range
    }

    /// Acknowledges the batch: everything made of it is safely passed on.
    pub fn ack(self) {
        acknowledge(
            &self.shared,
            &self.handle,
            self.sub,
            self.range,
            self.generation,
        );
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("topic", &self.shared.name)
            .field("range", &self.range)
            .finish()
    }
}

/// Acknowledges the delivery of `range` to subscription `sub` and wakes whoever that lets go on.
fn acknowledge(
    shared: &Shared,
    handle: &SubHandle,
    sub: usize,
    range: OffsetRange,
    generation: u64,
) {
    let mut state = shared.state.lock();
    let moved = state.ack_range(sub, range, generation);
    let safe = state.safe_offset();
    let ended = state.closed;
    drop(state);
    shared.update_safe_offset(safe);
    if moved {
        shared.space.notify_waiters();
    }
    if ended {
        // Other workers may be waiting only for this delivery to finish.
        handle.notify.notify_waiters();
    }
}
