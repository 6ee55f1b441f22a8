//! A pipeline worker: one subscription worker running every step of the pipeline, fused.
//!
//! The worker takes a delivery from its input topic, runs the batch through its steps (each
//! worker owns its own instances), publishes the result to the output topic and the rejected
//! events to the dead-letter topic, and only then acknowledges the delivery — so an input batch is
//! never acknowledged before its output was accepted. Once a second it ticks the steps so windows
//! can close on time even when no events arrive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sluice_pipelines::event::compact_events;
use sluice_pipelines::{Batch, DeadLetter, Event, Fields, OnError, Step, StepContext, Value};

use crate::metrics::ComponentMetrics;
use crate::shutdown::Shutdown;
use crate::topic::{Producer, Subscription};

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

impl PipelineWorker {
    /// Runs until the input topic ends.
    pub async fn run(mut self) {
        let mut ctx = StepContext::new(self.on_error);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                delivery = self.input.next() => {
                    let Some(delivery) = delivery else { break };
                    let mut events = delivery.events().to_vec();
                    let received = events.len();
                    self.metrics.events_in.add(received as u64);
                    run_steps(&mut self.steps, 0, &mut events, &mut ctx);
                    // Few survivors would pin the whole buffers they were parsed from while
                    // they wait in the next topic: copy them out.
                    if !events.is_empty() && events.len() * COMPACT_BELOW <= received {
                        compact_events(&mut events);
                    }
                    self.publish(events, &mut ctx).await;
                    delivery.ack();
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
                    self.publish(emitted, &mut ctx).await;
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
            self.publish(emitted, &mut ctx).await;
        }
    }

    /// Publishes results and dead letters, and updates counters.
    async fn publish(&mut self, events: Vec<Event>, ctx: &mut StepContext) {
        let (rejected, discarded) = ctx.take_counts();
        self.metrics.errors.add(rejected);
        self.metrics.discarded.add(discarded);
        let dead_letters = ctx.take_dead_letters();
        let routed = ctx.take_routed();
        if !events.is_empty() {
            self.metrics.events_out.add(events.len() as u64);
            self.output.send(Batch::new(events)).await;
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
                match self.routes.get(&topic) {
                    Some(producer) => {
                        producer.send(Batch::new(events)).await;
                    }
                    None => {
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
            self.dead_letter.send(Batch::new(events)).await;
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
