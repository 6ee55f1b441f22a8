//! A pipeline worker: one subscription worker running every step of the pipeline, fused.
//!
//! The worker takes a delivery from its input topic, runs the batch through its steps (each
//! worker owns its own instances), and publishes the result to the output topic, routed events
//! to their topics and rejected events to the dead-letter topic. Once a second it ticks the steps
//! so windows can close on time even when no events arrive.
//!
//! # Acknowledgements end to end
//!
//! An input batch is acknowledged only once everything made of it is safe further down: the
//! offsets it produced in the output and route topics are behind those topics' safe offsets
//! (acknowledged by every blocking subscriber — a sink's store, or the next pipeline's own
//! downstream — or stored by a disk topic). Dead letters count as delivered once their topic took
//! them. A batch a step still holds (events folded into an open window, see
//! [`Step::oldest_held_input`]) waits until the window closed and its result is safe. Meanwhile
//! the batch is *held* ([`Delivery::hold`]): it no longer takes room in a memory topic, so a
//! minute-long window does not stall the source, but the source's safe offset — and its
//! checkpoint — stays before it. A batch that produced nothing and is held by no step (filtered
//! out, rejected) is acknowledged at once.
//!
//! When the input ends the worker flushes its windows (unless a shutdown says not to), publishes,
//! drops its producers so the topics below can finish, and waits until what it made is safe
//! before acknowledging its last batches. A shutdown that times out aborts that wait: the
//! unacknowledged batches are read again from the source's checkpoint (or the disk topic) on the
//! next start.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sluice_pipelines::event::compact_events;
use sluice_pipelines::{Batch, DeadLetter, Event, Fields, OnError, Step, StepContext, Value};
use tokio::sync::watch;

use crate::metrics::ComponentMetrics;
use crate::shutdown::Shutdown;
use crate::topic::{Delivery, Held, Offset, Producer, Published, Subscription};

/// One step with the name its dead letters carry (`steps[0] (parse)`).
pub struct NamedStep {
    /// The name recorded on dead letters.
    pub name: Arc<str>,
    /// The step.
    pub step: Box<dyn Step>,
}

/// Everything one worker of a pipeline needs.
pub struct PipelineWorker {
    /// The pipeline's name.
    pub name: Arc<str>,
    /// Its subscription to the input topic (shared by its workers).
    pub input: Subscription,
    /// Its own step instances, in order.
    pub steps: Vec<NamedStep>,
    /// Where results go.
    pub output: Producer,
    /// Where rejected events go.
    pub dead_letter: Producer,
    /// The topics `route` steps send events to, by name.
    pub routes: HashMap<Arc<str>, Producer>,
    /// What to do with rejected events.
    pub on_error: OnError,
    /// Whether held windows are emitted when stopping because of a shutdown.
    pub flush_on_shutdown: bool,
    /// The pipeline's counters.
    pub metrics: Arc<ComponentMetrics>,
    /// The agent's shutdown signal.
    pub shutdown: Shutdown,
}

/// A batch is compacted when fewer than one event in this many survived the steps.
const COMPACT_BELOW: usize = 4;

/// How often steps are ticked.
const TICK: Duration = Duration::from_secs(1);

/// How often held batches are looked at while only a route topic's safe offset can free them.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// Where the worker's output went, by index: 0 is the output topic, then the route topics in
/// `route_names` order.
type Produced = Vec<(usize, Offset)>;

impl PipelineWorker {
    /// Runs until the input topic ends, then waits until what it made is safe.
    pub async fn run(mut self) {
        let mut ctx = StepContext::new(self.on_error);
        let route_names: Vec<Arc<str>> = self.routes.keys().cloned().collect();
        let mut watched = vec![self.output.safe_offset()];
        for name in &route_names {
            if let Some(producer) = self.routes.get(name) {
                watched.push(producer.safe_offset());
            }
        }
        let mut acks = PendingAcks::new(watched);
        let mut output_safe = self.output.safe_offset();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                delivery = self.input.next() => {
                    let Some(delivery) = delivery else { break };
                    let seq = acks.next_seq();
                    ctx.set_input_seq(seq);
                    let mut events = delivery.events().to_vec();
                    let received = events.len();
                    self.metrics.events_in.add(received as u64);
                    run_steps(&mut self.steps, 0, &mut events, &mut ctx);
                    // Few survivors would pin the whole buffers they were parsed from while
                    // they wait in the next topic: copy them out.
                    if !events.is_empty() && events.len() * COMPACT_BELOW <= received {
                        compact_events(&mut events);
                    }
                    let produced = self.publish(events, &mut ctx, &route_names).await;
                    let oldest_held = oldest_held_input(&self.steps);
                    acks.add(seq, delivery, produced, oldest_held);
                    acks.settle(oldest_held);
                }
                _ = ticker.tick() => {
                    let now = Utc::now();
                    let mut emitted = Vec::new();
                    for index in 0..self.steps.len() {
                        let step = &mut self.steps[index];
                        ctx.set_step(&step.name);
                        let mut out = Vec::new();
                        step.step.tick(now, &mut out, &mut ctx);
                        if !out.is_empty() {
                            run_steps(&mut self.steps, index + 1, &mut out, &mut ctx);
                            emitted.append(&mut out);
                        }
                    }
                    self.publish(emitted, &mut ctx, &route_names).await;
                    acks.settle(oldest_held_input(&self.steps));
                }
                changed = output_safe.changed(), if acks.waiting() => {
                    if changed.is_err() {
                        // The output topic is gone; nothing more will become safe there.
                        output_safe = self.output.safe_offset();
                    }
                    acks.settle(oldest_held_input(&self.steps));
                }
                () = tokio::time::sleep(SETTLE_POLL), if acks.waiting_on_routes() => {
                    acks.settle(oldest_held_input(&self.steps));
                }
            }
        }
        if self.flush_on_shutdown || !self.shutdown.is_triggered() {
            let mut emitted = Vec::new();
            for index in 0..self.steps.len() {
                let step = &mut self.steps[index];
                ctx.set_step(&step.name);
                let mut out = Vec::new();
                step.step.flush(&mut out, &mut ctx);
                if !out.is_empty() {
                    run_steps(&mut self.steps, index + 1, &mut out, &mut ctx);
                    emitted.append(&mut out);
                }
            }
            self.publish(emitted, &mut ctx, &route_names).await;
        }
        // Windows not flushed (a shutdown with flush_on_shutdown = false) keep holding their
        // input batches: those stay unacknowledged and are read again on the next start.
        let still_held = oldest_held_input(&self.steps);
        // Let the topics below finish (a pipeline further down flushes its windows only when its
        // input ends), then wait for what this worker made to be delivered.
        drop(self);
        acks.finish(still_held).await;
    }

    /// Publishes results, routed events and dead letters, and updates counters. Returns where
    /// the results and routed events went.
    async fn publish(
        &mut self,
        events: Vec<Event>,
        ctx: &mut StepContext,
        route_names: &[Arc<str>],
    ) -> Produced {
        let mut produced = Produced::new();
        let (rejected, discarded) = ctx.take_counts();
        self.metrics.errors.add(rejected);
        self.metrics.discarded.add(discarded);
        let dead_letters = ctx.take_dead_letters();
        let routed = ctx.take_routed();
        if !events.is_empty() {
            self.metrics.events_out.add(events.len() as u64);
            if let Published::Stored(range) = self.output.send(Batch::new(events)).await {
                produced.push((0, range.end));
            }
        }
        if !routed.is_empty() {
            self.metrics.events_out.add(routed.len() as u64);
            // One batch per topic, keeping each topic's events in order.
            let mut by_topic: Vec<(Arc<str>, Vec<Event>)> = Vec::new();
            for (topic, event) in routed {
                match by_topic.iter_mut().find(|(name, _)| *name == topic) {
                    Some((_, events)) => events.push(event),
                    None => by_topic.push((topic, vec![event])),
                }
            }
            for (topic, events) in by_topic {
                let index = route_names.iter().position(|name| *name == topic);
                match (self.routes.get(&topic), index) {
                    (Some(producer), Some(index)) => {
                        if let Published::Stored(range) = producer.send(Batch::new(events)).await {
                            produced.push((index + 1, range.end));
                        }
                    }
                    _ => {
                        // Validation wires every route topic; this would be a bug, so keep the
                        // events as dead letters rather than lose them.
                        tracing::error!(pipeline = %self.name, %topic, "Route to an unknown topic");
                        for event in events {
                            ctx.reject(event, format!("route to unknown topic `{topic}`"));
                        }
                    }
                }
            }
        }
        let dead_letters = if dead_letters.is_empty() {
            ctx.take_dead_letters()
        } else {
            let mut all = dead_letters;
            all.extend(ctx.take_dead_letters());
            all
        };
        let dropped = ctx.take_dropped();
        if !dropped.is_empty() {
            let reasons = dropped
                .iter()
                .map(|(step, error)| (&**step, error.as_str()));
            self.metrics.rejections.record(&self.name, reasons);
        }
        if !dead_letters.is_empty() {
            let reasons = dead_letters
                .iter()
                .map(|letter| (&*letter.step, letter.error.as_str()));
            self.metrics.rejections.record(&self.name, reasons);
            let events = dead_letters
                .into_iter()
                .map(|letter| dead_letter_event(&self.name, letter))
                .collect();
            // Dead letters count as delivered once their topic took them.
            self.dead_letter.send(Batch::new(events)).await;
        }
        produced
    }
}

/// The oldest input batch any step still holds.
fn oldest_held_input(steps: &[NamedStep]) -> Option<u64> {
    steps
        .iter()
        .filter_map(|step| step.step.oldest_held_input())
        .min()
}

/// An input batch processed but not yet acknowledged.
struct Pending {
    seq: u64,
    held: Held,
    /// The offsets that must be safe before it is acknowledged; `None` while a step holds it.
    needs: Option<Produced>,
}

/// The input batches a worker holds until what it made of them is safe (see the module doc).
struct PendingAcks {
    /// The safe offsets of the output topic (index 0) and the route topics.
    safe: Vec<watch::Receiver<Offset>>,
    /// The end of what was published to each of them.
    published: Vec<Offset>,
    pending: VecDeque<Pending>,
    next_seq: u64,
}

impl PendingAcks {
    fn new(safe: Vec<watch::Receiver<Offset>>) -> Self {
        let published = vec![Offset(0); safe.len()];
        PendingAcks {
            safe,
            published,
            pending: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// The sequence number of the next input batch.
    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Takes in a processed input batch: acknowledged at once when it produced nothing and no step
    /// holds it, held otherwise.
    fn add(&mut self, seq: u64, delivery: Delivery, produced: Produced, oldest_held: Option<u64>) {
        for &(index, end) in &produced {
            if let Some(published) = self.published.get_mut(index) {
                *published = (*published).max(end);
            }
        }
        let held_by_step = oldest_held.is_some_and(|oldest| oldest <= seq);
        if !held_by_step && produced.is_empty() {
            delivery.ack();
            return;
        }
        self.pending.push_back(Pending {
            seq,
            held: delivery.hold(),
            needs: (!held_by_step).then_some(produced),
        });
    }

    /// Whether the oldest held batch waits only for a safe offset to move.
    fn waiting(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|pending| pending.needs.is_some())
    }

    /// Whether the oldest held batch waits for a route topic, whose safe offset is polled.
    fn waiting_on_routes(&self) -> bool {
        self.pending.front().is_some_and(|pending| {
            pending
                .needs
                .as_ref()
                .is_some_and(|needs| needs.iter().any(|&(index, _)| index > 0))
        })
    }

    /// Frees the batches no step holds any more (they wait for everything published so far,
    /// which includes what their windows produced) and acknowledges, oldest first, those whose
    /// output is safe. It stops at the first batch still waiting: the input topic commits only a
    /// contiguous prefix anyway, so acknowledging past it would gain nothing, and the work per
    /// call stays proportional to what it acknowledges. Batches at or past the oldest one a step
    /// holds are all held (a window opened before them is still open), so they are not visited.
    fn settle(&mut self, oldest_held: Option<u64>) {
        let safe: Vec<Offset> = self
            .safe
            .iter()
            .map(|receiver| *receiver.borrow())
            .collect();
        while let Some(pending) = self.pending.front_mut() {
            if oldest_held.is_some_and(|oldest| oldest <= pending.seq) {
                break;
            }
            let needs = pending.needs.get_or_insert_with(|| {
                self.published
                    .iter()
                    .enumerate()
                    .filter(|(_, end)| end.0 > 0)
                    .map(|(index, end)| (index, *end))
                    .collect()
            });
            let delivered = needs
                .iter()
                .all(|&(index, end)| safe.get(index).is_some_and(|safe| *safe >= end));
            if !delivered {
                break;
            }
            if let Some(pending) = self.pending.pop_front() {
                pending.held.ack();
            }
        }
    }

    /// After the input ended: waits until every batch no step holds is acknowledged. Batches
    /// from `still_held` on (windows not flushed at a shutdown) stay unacknowledged. Gives up
    /// when a topic it waits for is gone.
    async fn finish(mut self, still_held: Option<u64>) {
        loop {
            self.settle(still_held);
            if !self.waiting() {
                break;
            }
            let gone = self
                .safe
                .iter()
                .any(|receiver| receiver.has_changed().is_err());
            if gone {
                break;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }
}

/// Runs `events` through `steps[from..]`.
pub fn run_steps(
    steps: &mut [NamedStep],
    from: usize,
    events: &mut Vec<Event>,
    ctx: &mut StepContext,
) {
    for step in steps.iter_mut().skip(from) {
        if events.is_empty() {
            break;
        }
        ctx.set_step(&step.name);
        step.step.process(events, ctx);
    }
}

/// The event kept in the dead-letter topic: the rejected event with a `dead_letter` map saying
/// which pipeline and step rejected it, why, and when.
pub fn dead_letter_event(pipeline: &str, letter: DeadLetter) -> Event {
    let DeadLetter {
        mut event,
        step,
        error,
    } = letter;
    let mut info = Fields::with_capacity(4);
    info.insert("pipeline".into(), Value::from(pipeline));
    info.insert("step".into(), Value::from(&*step));
    info.insert("error".into(), Value::from(error));
    info.insert("at".into(), Value::Timestamp(Utc::now()));
    event.insert("dead_letter", Value::Map(info));
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_pipelines::EventMeta;

    use crate::topic::{SubscriptionSettings, Topic, TopicSettings};

    fn lines(n: usize) -> Batch {
        Batch::new(
            (0..n)
                .map(|_| Event::from_raw(Bytes::from_static(b"line"), EventMeta::default()))
                .collect(),
        )
    }

    /// A source's topic read by a pipeline whose output topic a sink reads.
    struct Chain {
        pipeline: Subscription,
        source: Producer,
        source_safe: watch::Receiver<Offset>,
        sink: Subscription,
        results: Producer,
        acks: PendingAcks,
    }

    fn chain() -> Chain {
        let input = Topic::in_memory("in", TopicSettings::default());
        let pipeline = input.subscribe(SubscriptionSettings::new("pipeline"));
        let source = input.producer();
        let output = Topic::in_memory("out", TopicSettings::default());
        let sink = output.subscribe(SubscriptionSettings::new("sink"));
        let results = output.producer();
        Chain {
            pipeline,
            source_safe: source.safe_offset(),
            source,
            sink,
            acks: PendingAcks::new(vec![results.safe_offset()]),
            results,
        }
    }

    #[tokio::test]
    async fn an_input_batch_is_acknowledged_only_once_its_output_is_delivered() {
        let Chain {
            pipeline,
            source,
            source_safe,
            sink,
            results,
            mut acks,
        } = chain();

        // Batch 1 produces output; batch 2 is filtered out entirely.
        source.send(lines(3)).await;
        source.send(lines(2)).await;
        let first = pipeline.next().await.unwrap();
        let Published::Stored(range) = results.send(lines(1)).await else {
            panic!("stored")
        };
        let seq = acks.next_seq();
        acks.add(seq, first, vec![(0, range.end)], None);
        let second = pipeline.next().await.unwrap();
        let seq = acks.next_seq();
        acks.add(seq, second, Vec::new(), None);
        acks.settle(None);
        assert_eq!(
            *source_safe.borrow(),
            Offset(0),
            "the output is not delivered yet; the filtered batch waits behind it"
        );
        sink.next().await.unwrap().ack();
        acks.settle(None);
        assert_eq!(
            *source_safe.borrow(),
            Offset(5),
            "delivered: both acknowledged"
        );
    }

    #[tokio::test]
    async fn a_batch_held_by_a_window_waits_for_the_window_and_its_result() {
        let Chain {
            pipeline,
            source,
            source_safe,
            sink,
            results,
            mut acks,
        } = chain();

        source.send(lines(4)).await;
        let folded = pipeline.next().await.unwrap();
        let seq = acks.next_seq();
        // Its events went into an open window: nothing produced yet, the step holds `seq`.
        acks.add(seq, folded, Vec::new(), Some(seq));
        acks.settle(Some(seq));
        assert_eq!(*source_safe.borrow(), Offset(0), "held by the window");
        // The window closes and its result is published, not yet delivered.
        let Published::Stored(range) = results.send(lines(1)).await else {
            panic!("stored")
        };
        acks.published[0] = range.end;
        acks.settle(None);
        assert_eq!(
            *source_safe.borrow(),
            Offset(0),
            "the result is not delivered"
        );
        sink.next().await.unwrap().ack();
        acks.settle(None);
        assert_eq!(*source_safe.borrow(), Offset(4));
    }

    #[test]
    fn dead_letters_keep_the_event_and_say_why() {
        let event = Event::from_raw(Bytes::from_static(b"garbage"), EventMeta::default());
        let letter = DeadLetter {
            event,
            step: Arc::from("steps[0] (parse)"),
            error: "no match".into(),
        };
        let kept = dead_letter_event("app", letter);
        assert_eq!(kept.raw().map(|raw| &raw[..]), Some(&b"garbage"[..]));
        assert_eq!(
            kept.get_path(&["dead_letter", "error"])
                .and_then(Value::as_str),
            Some("no match")
        );
        assert_eq!(
            kept.get_path(&["dead_letter", "step"])
                .and_then(Value::as_str),
            Some("steps[0] (parse)")
        );
        assert_eq!(
            kept.get_path(&["dead_letter", "pipeline"])
                .and_then(Value::as_str),
            Some("app")
        );
    }
}
