//! The topic's state machine: publishing, delivering, acknowledging and capacity, all
//! synchronous and deterministic.
//!
//! The async handles in `mod.rs` hold this behind one mutex per topic and only add waiting. Every
//! operation here works on whole batches, so the lock is taken once per batch, never per event.
//! Keeping the logic free of async and clocks (time is a parameter) lets the model-based tests
//! drive it through millions of random steps.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sluice_pipelines::Batch;
use tokio::time::Instant;

use super::offset::{Offset, OffsetRange};
use super::storage::{Storage, Stored};
use super::{StartAt, SubscriptionSettings, TopicSettings, WhenFull};

/// What happened to a published batch.
#[derive(Debug)]
pub(crate) enum PublishOutcome {
    /// Stored at these offsets.
    Stored(OffsetRange),
    /// Discarded by the `drop_newest` policy because the topic was full.
    DroppedNewest,
    /// No room, and the policy is to wait: the batch is given back.
    Full(Batch),
}

/// A batch handed to one worker of a subscription.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryTicket {
    pub range: OffsetRange,
    pub batch: Arc<Batch>,
    pub generation: u64,
}

/// The answer to a worker asking for its next batch.
#[derive(Debug)]
pub(crate) enum Poll {
    /// A batch to process.
    Ready(DeliveryTicket),
    /// Nothing now; ask again when notified, or at `deadline` when an in-flight delivery times out.
    Pending { deadline: Option<Instant> },
    /// Every producer is gone and everything was delivered and acknowledged.
    Ended,
}

#[derive(Debug)]
struct InFlight {
    end: Offset,
    generation: u64,
    deadline: Option<Instant>,
}

/// Counters of one subscription.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionCounters {
    /// Batches handed to workers, redeliveries included.
    pub delivered_batches: u64,
    /// Events acknowledged.
    pub acked_events: u64,
    /// Batches handed out again after a worker dropped them or timed out.
    pub redelivered_batches: u64,
    /// Events this subscription never got: evicted before it read them (a non-blocking one that
    /// fell behind; any under `drop_oldest`), deleted by a disk topic's age retention, or
    /// quarantined as corrupt.
    pub lost_events: u64,
}

pub(crate) struct SubState {
    pub settings: SubscriptionSettings,
    /// Everything before this offset is acknowledged (or was skipped): safe to forget.
    pub committed: Offset,
    /// Everything before this offset is acknowledged or *held* (processed by a worker that
    /// acknowledges later, see [`TopicState::hold`]): this subscription no longer needs the
    /// events themselves. `released >= committed`.
    pub released: Offset,
    /// The first offset never handed out.
    pub next: Offset,
    /// Batches (by first offset) to hand out again, oldest first.
    redeliver: VecDeque<Offset>,
    in_flight: HashMap<Offset, InFlight>,
    /// Acknowledged batches past `committed`: first offset to end offset.
    acked: BTreeMap<Offset, Offset>,
    /// Acknowledged or held batches past `released`: first offset to end offset.
    done: BTreeMap<Offset, Offset>,
    /// Held batches not yet acknowledged: first offset to (end offset, generation).
    held: HashMap<Offset, (Offset, u64)>,
    pub counters: SubscriptionCounters,
}

impl SubState {
    fn new(settings: SubscriptionSettings, at: Offset) -> Self {
        SubState {
            settings,
            committed: at,
            released: at,
            next: at,
            redeliver: VecDeque::new(),
            in_flight: HashMap::new(),
            acked: BTreeMap::new(),
            done: BTreeMap::new(),
            held: HashMap::new(),
            counters: SubscriptionCounters::default(),
        }
    }

    /// Moves `committed` over the acknowledged batches that now follow it, and `released` over
    /// the acknowledged or held ones.
    fn advance_committed(&mut self) {
        advance_prefix(&mut self.committed, &mut self.acked);
        self.released = self.released.max(self.committed);
        advance_prefix(&mut self.released, &mut self.done);
    }

    /// Whether this subscription still needs the events of the batch starting at `start`: it
    /// has not acknowledged it, nor (unless the storage keeps events until they are acknowledged)
    /// held it.
    fn needs(&self, start: Offset, persistent: bool) -> bool {
        if persistent {
            self.committed <= start && !self.acked.contains_key(&start)
        } else {
            self.released <= start && !self.done.contains_key(&start)
        }
    }

    /// Gives up the batch at `range` (evicted from the topic): counts it as lost unless this
    /// subscription was done with it, and moves past it.
    fn skip(&mut self, range: OffsetRange) -> u64 {
        if self.committed >= range.end
            || self.acked.contains_key(&range.start)
            || self.held.contains_key(&range.start)
        {
            return 0;
        }
        self.in_flight.remove(&range.start);
        self.redeliver.retain(|start| *start != range.start);
        self.acked.insert(range.start, range.end);
        self.done.insert(range.start, range.end);
        self.next = self.next.max(range.end);
        self.advance_committed();
        range.len()
    }

    /// [`SubState::skip`], counting what this subscription had not had as lost.
    fn skip_lost(&mut self, range: OffsetRange) {
        self.counters.lost_events += self.skip(range);
    }

    pub fn in_flight_batches(&self) -> usize {
        self.in_flight.len()
    }

    pub fn held_batches(&self) -> usize {
        self.held.len()
    }
}

/// Where stored data resumes when a read at `asked` found `found` (a batch, or nothing) and the
/// offsets from `asked` are gone (a disk topic's quarantined data): the next batch's start, or the
/// end when nothing follows. `None` when `found` holds `asked`, or nothing is missing.
fn gap_end(storage: &mut dyn Storage, asked: Offset, found: Option<&Stored>) -> Option<Offset> {
    match found {
        Some(stored) if stored.range.start > asked => Some(stored.range.start),
        Some(_) => None,
        None => storage.missing(asked),
    }
}

/// Moves `prefix` over the batches of `ranges` (first offset to end offset) that now follow it,
/// removing them.
fn advance_prefix(prefix: &mut Offset, ranges: &mut BTreeMap<Offset, Offset>) {
    while let Some((&start, &end)) = ranges.first_key_value() {
        if start > *prefix {
            break;
        }
        ranges.remove(&start);
        *prefix = (*prefix).max(end);
    }
}

/// Counters of a topic as a whole.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TopicCounters {
    /// Events accepted into the topic.
    pub published_events: u64,
    /// Estimated bytes accepted.
    pub published_bytes: u64,
    /// Events refused by `drop_newest` while full.
    pub dropped_newest: u64,
    /// Events discarded by `drop_oldest` before every blocking subscription had them.
    pub dropped_oldest: u64,
    /// Events evicted to make room that no subscription was reading (a topic without
    /// subscriptions keeps its newest events, for inspection).
    pub evicted_unread: u64,
}

pub(crate) struct TopicState {
    pub settings: TopicSettings,
    pub storage: Box<dyn Storage>,
    pub subs: Vec<SubState>,
    pub producers: usize,
    /// Set when the last producer went away (and cleared if a new one comes): subscriptions end
    /// once they drained a closed topic. A topic that never had a producer is not closed, so a
    /// worker started before the producers exist waits instead of ending at once.
    pub closed: bool,
    pub counters: TopicCounters,
    next_generation: u64,
    /// Taps watching what is published (see [`super::Topic::tap`]).
    pub taps: Vec<tokio::sync::mpsc::Sender<Arc<Batch>>>,
    /// Whether the storage keeps events until they are acknowledged (disk): then held batches
    /// stay stored, so a restarted agent can deliver them again.
    persistent: bool,
}

impl TopicState {
    pub fn new(settings: TopicSettings, storage: Box<dyn Storage>) -> Self {
        let persistent = storage.durable_end().is_some();
        TopicState {
            persistent,
            settings,
            storage,
            subs: Vec::new(),
            producers: 0,
            closed: false,
            counters: TopicCounters::default(),
            next_generation: 0,
            taps: Vec::new(),
        }
    }

    /// Adds a subscription that starts at the end of the topic (it sees what is published from
    /// now on). Returns its index.
    pub fn subscribe(&mut self, settings: SubscriptionSettings) -> usize {
        let (start, end) = (self.storage.start(), self.storage.end());
        // A persistent storage resumes a subscription where an earlier run committed it; a new
        // one starts where `start_at` says.
        let at = match self.storage.committed(&settings.name) {
            Some(committed) => committed,
            None => match settings.start_at {
                StartAt::Latest => end,
                StartAt::Earliest => start,
                StartAt::Offset(offset) => offset,
                StartAt::Time(time_ms) => self.storage.offset_for_time(time_ms).unwrap_or(end),
            },
        }
        .clamp(start, end);
        if self.persistent {
            // Persist the starting point at once: a crash before the first acknowledgement must
            // not make the next run start at the end and skip what was published meanwhile.
            self.storage.commit(&settings.name, at);
        }
        self.subs.push(SubState::new(settings, at));
        self.subs.len() - 1
    }

    /// Runs the storage's housekeeping (retention of disk topics). Subscriptions that had not
    /// acknowledged what it deleted lose it: they move past it and count it in `lost_events`.
    /// Returns whether anything changed (producers waiting for room should look again).
    pub fn maintain(&mut self) -> bool {
        let Some(dropped) = self.storage.maintain() else {
            return false;
        };
        self.skip_gap_for_all(dropped.end);
        true
    }

    /// Moves every subscription still before `to` (the storage's start after retention) past
    /// the missing offsets, counting them as lost.
    fn skip_gap_for_all(&mut self, to: Offset) {
        let persistent = self.persistent;
        for sub in &mut self.subs {
            if sub.committed < to {
                sub.skip_lost(OffsetRange::new(sub.committed, to));
                if persistent {
                    self.storage.commit(&sub.settings.name, sub.committed);
                }
            }
        }
    }

    /// Publishes `batch`, making room as the capacity policy says.
    pub fn publish(&mut self, batch: Batch) -> PublishOutcome {
        if batch.is_empty() {
            let end = self.storage.end();
            return PublishOutcome::Stored(OffsetRange::new(end, end));
        }
        let events = batch.len() as u64;
        let bytes = batch.byte_size() as u64;
        if self.storage.write_backlog_full() {
            // The storage's writer is behind: wait for it like for room.
            return PublishOutcome::Full(batch);
        }
        loop {
            if self.fits(events, bytes) {
                break;
            }
            let Some(front_range) = self.storage.front_range() else {
                break;
            };
            if self.held_by_blocking(front_range.start) {
                match self.settings.when_full {
                    WhenFull::Block => return PublishOutcome::Full(batch),
                    WhenFull::DropNewest => {
                        self.counters.dropped_newest += events;
                        return PublishOutcome::DroppedNewest;
                    }
                    WhenFull::DropOldest => {
                        self.counters.dropped_oldest += front_range.len();
                        self.evict_front();
                    }
                }
            } else {
                self.evict_front();
            }
        }
        let batch = Arc::new(batch);
        if !self.taps.is_empty() {
            // Best effort: a tap that cannot keep up misses batches; one whose reader left goes.
            self.taps.retain(|tap| {
                !matches!(
                    tap.try_send(batch.clone()),
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_))
                )
            });
        }
        let range = self.storage.append(batch);
        self.counters.published_events += events;
        self.counters.published_bytes += bytes;
        PublishOutcome::Stored(range)
    }

    /// Whether `events`/`bytes` more fit. An empty topic takes any batch, so one batch larger
    /// than the capacity cannot wedge its producer.
    fn fits(&self, events: u64, bytes: u64) -> bool {
        let retained_events = self.storage.retained_events();
        retained_events == 0
            || (retained_events + events <= self.settings.max_events
                && self.storage.retained_bytes() + bytes <= self.settings.max_bytes)
    }

    /// Whether a blocking subscription has not yet acknowledged the batch starting at `start`.
    fn held_by_blocking(&self, start: Offset) -> bool {
        let persistent = self.persistent;
        self.subs
            .iter()
            .any(|sub| sub.settings.blocking && sub.needs(start, persistent))
    }

    /// Removes the oldest batch; every subscription that still needed it loses it.
    fn evict_front(&mut self) {
        let Some(range) = self.storage.pop_front() else {
            return;
        };
        let mut anyone_needed_it = false;
        let persistent = self.persistent;
        for sub in &mut self.subs {
            if sub.needs(range.start, persistent) {
                anyone_needed_it = true;
                // Each subscription counts what it lost: a non-blocking one that fell behind, a
                // blocking one under `drop_oldest` (also counted once in the topic's
                // `dropped_oldest`).
                sub.skip_lost(range);
                if persistent {
                    self.storage.commit(&sub.settings.name, sub.committed);
                }
            }
        }
        if !anyone_needed_it {
            self.counters.evicted_unread += range.len();
        }
    }

    /// Hands the next batch to a worker of subscription `sub`.
    pub fn poll(&mut self, sub_index: usize, now: Instant) -> Poll {
        let storage_end = self.storage.end();
        let storage_start = self.storage.start();
        let closed = self.closed;
        let Some(sub) = self.subs.get_mut(sub_index) else {
            return Poll::Ended;
        };

        // Deliveries past their deadline go back to the queue, oldest first.
        let mut expired: Vec<Offset> = sub
            .in_flight
            .iter()
            .filter(|(_, flight)| flight.deadline.is_some_and(|d| d <= now))
            .map(|(start, _)| *start)
            .collect();
        if !expired.is_empty() {
            expired.sort_unstable();
            for start in expired.iter().rev() {
                sub.in_flight.remove(start);
                sub.redeliver.push_front(*start);
            }
        }

        let mut found = None;
        let mut redelivery = false;
        let mut skipped = false;
        while let Some(candidate) = sub.redeliver.pop_front() {
            if candidate < sub.committed {
                continue;
            }
            // Its data may have been quarantined since it was delivered: what is missing is lost.
            let stored = self.storage.get(candidate);
            if let Some(resume) = gap_end(self.storage.as_mut(), candidate, stored.as_ref()) {
                sub.skip_lost(OffsetRange::new(candidate, resume));
                skipped = true;
            } else if stored.is_some() {
                found = stored;
                redelivery = true;
                break;
            }
        }
        if found.is_none() && sub.next < storage_end {
            sub.next = sub.next.max(storage_start);
            found = self.storage.get(sub.next);
            // A gap left by quarantined data (a disk topic), before the next batch or up to the
            // end: skip it, counted as lost, so the committed offset can move on past it.
            if let Some(resume) = gap_end(self.storage.as_mut(), sub.next, found.as_ref()) {
                sub.skip_lost(OffsetRange::new(sub.next, resume));
                skipped = true;
            }
        }
        if skipped && self.persistent {
            self.storage.commit(&sub.settings.name, sub.committed);
        }

        match found {
            Some(stored) => {
                let generation = self.next_generation;
                self.next_generation += 1;
                let deadline = sub.settings.ack_timeout.map(|timeout| now + timeout);
                sub.in_flight.insert(
                    stored.range.start,
                    InFlight {
                        end: stored.range.end,
                        generation,
                        deadline,
                    },
                );
                sub.next = sub.next.max(stored.range.end);
                sub.counters.delivered_batches += 1;
                if redelivery {
                    sub.counters.redelivered_batches += 1;
                }
                Poll::Ready(DeliveryTicket {
                    range: stored.range,
                    batch: stored.batch,
                    generation,
                })
            }
            None if closed && sub.in_flight.is_empty() && sub.redeliver.is_empty() => Poll::Ended,
            None => Poll::Pending {
                deadline: sub.in_flight.values().filter_map(|f| f.deadline).min(),
            },
        }
    }

    /// Whether subscription `sub_index` has nothing left to hand out: every producer is gone and
    /// every batch was delivered (some may still be in flight, and come back if released).
    pub fn drained(&self, sub_index: usize) -> bool {
        self.subs.get(sub_index).is_none_or(|sub| {
            self.closed && sub.next >= self.storage.end() && sub.redeliver.is_empty()
        })
    }

    /// Acknowledges a delivery. Returns whether producers waiting for room should look again: the
    /// subscription's committed offset moved, so batches may be trimmed now or evictable (from
    /// non-blocking subscriptions) on the next try. A stale ticket (the delivery timed out and
    /// went to another worker, or was evicted) is ignored.
    #[cfg(test)]
    pub fn ack(&mut self, sub_index: usize, ticket: &DeliveryTicket) -> bool {
        self.ack_range(sub_index, ticket.range, ticket.generation)
    }

    /// [`TopicState::ack`] of the delivery of `range` with `generation`, in flight or held.
    pub fn ack_range(&mut self, sub_index: usize, range: OffsetRange, generation: u64) -> bool {
        let Some(sub) = self.subs.get_mut(sub_index) else {
            return false;
        };
        let start = range.start;
        let end = match sub.in_flight.get(&start) {
            Some(flight) if flight.generation == generation => {
                let end = flight.end;
                sub.in_flight.remove(&start);
                sub.done.insert(start, end);
                end
            }
            _ => match sub.held.get(&start) {
                Some(&(end, held_generation)) if held_generation == generation => {
                    sub.held.remove(&start);
                    end
                }
                _ => return false,
            },
        };
        sub.acked.insert(start, end);
        sub.counters.acked_events += range.len();
        let before = (sub.committed, sub.released);
        sub.advance_committed();
        let moved = (sub.committed, sub.released) != before;
        if sub.committed != before.0 && self.persistent {
            self.storage.commit(&sub.settings.name, sub.committed);
        }
        self.trim();
        moved
    }

    /// Marks a delivery as processed but not yet acknowledged: the worker passed its events on
    /// and acknowledges later, once what it made of them is safe further down (a pipeline waiting
    /// for its output to be delivered, or for a window to close). A held batch is never handed
    /// out again and, unless the storage persists, no longer takes room in the topic; the
    /// subscription's committed offset — and so the safe offset sources checkpoint by — stays
    /// before it until [`TopicState::ack`]. Returns whether producers waiting for room should
    /// look again. A stale ticket is ignored.
    pub fn hold(&mut self, sub_index: usize, ticket: &DeliveryTicket) -> bool {
        let Some(sub) = self.subs.get_mut(sub_index) else {
            return false;
        };
        let start = ticket.range.start;
        let end = match sub.in_flight.get(&start) {
            Some(flight) if flight.generation == ticket.generation => flight.end,
            _ => return false,
        };
        sub.in_flight.remove(&start);
        sub.held.insert(start, (end, ticket.generation));
        sub.done.insert(start, end);
        let before = sub.released;
        sub.advance_committed();
        let moved = sub.released != before;
        self.trim();
        moved
    }

    /// Gives a delivery back unprocessed: it goes to the front of the subscription's queue.
    /// Returns whether anything changed.
    pub fn nack(&mut self, sub_index: usize, ticket: &DeliveryTicket) -> bool {
        let Some(sub) = self.subs.get_mut(sub_index) else {
            return false;
        };
        match sub.in_flight.get(&ticket.range.start) {
            Some(flight) if flight.generation == ticket.generation => {
                sub.in_flight.remove(&ticket.range.start);
                // Keep the queue ordered so the oldest batch goes out first.
                let position = sub
                    .redeliver
                    .iter()
                    .position(|start| *start > ticket.range.start)
                    .unwrap_or(sub.redeliver.len());
                sub.redeliver.insert(position, ticket.range.start);
                true
            }
            _ => false,
        }
    }

    /// Drops the batches every subscription is done with. A topic without subscriptions keeps
    /// its batches until it needs room.
    fn trim(&mut self) {
        let persistent = self.persistent;
        let Some(min_needed) = self
            .subs
            .iter()
            .map(|sub| {
                if persistent {
                    sub.committed
                } else {
                    sub.released
                }
            })
            .min()
        else {
            return;
        };
        while let Some(front) = self.storage.front_range() {
            if front.end > min_needed {
                break;
            }
            self.storage.pop_front();
        }
    }

    /// The offset before which every event is safe: durably stored, or acknowledged by every
    /// blocking subscription. Sources checkpoint up to it.
    pub fn safe_offset(&self) -> Offset {
        if let Some(durable) = self.storage.durable_end() {
            return durable;
        }
        self.subs
            .iter()
            .filter(|sub| sub.settings.blocking)
            .map(|sub| sub.committed)
            .min()
            .unwrap_or_else(|| self.storage.end())
    }
}

/// The default time a worker may hold a delivery before it is handed to another worker.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(300);
