//! The [`Step`] contract: what every pipeline step implements.
//!
//! Steps are pure and synchronous. A pipeline worker owns one instance of each of its steps and
//! runs a batch through all of them in turn (steps are fused: no queue between them). A step
//! transforms the batch in place — parsing fills fields, filtering removes events, aggregation
//! consumes events and emits results later — which keeps the hot path free of per-step
//! allocation. Events a step cannot handle go to [`StepContext::reject`], which either keeps them
//! for the pipeline's dead-letter topic or counts and drops them, as the pipeline's `on_error`
//! says. Events a step sends elsewhere (the `route` step) go to [`StepContext::route`]; the agent
//! takes them with [`StepContext::take_routed`] and publishes them to their topics. Steps never
//! panic on event data.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::Event;

/// A pipeline step: a batch in, events out.
pub trait Step: Send {
    /// Transforms `events` in place. Events that fail go to `ctx.reject`.
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext);

    /// Called about once a second with the current time, so windowed steps can emit what is
    /// due. Emitted events are appended to `out`; they then pass through the following steps.
    fn tick(&mut self, now: DateTime<Utc>, out: &mut Vec<Event>, ctx: &mut StepContext) {
        let _ = (now, out, ctx);
    }

    /// Called once when the pipeline's input has ended or the agent shuts down: emit whatever is
    /// still held (open windows) into `out`.
    fn flush(&mut self, out: &mut Vec<Event>, ctx: &mut StepContext) {
        let _ = (out, ctx);
    }

    /// The oldest input batch (its [`StepContext::input_seq`]) whose events this step still
    /// holds without having emitted what it made of them — an open window's — or `None` when it
    /// holds nothing. The pipeline acknowledges an input batch only once no step holds it and
    /// what was made of it is delivered. Steps that keep no events keep the default.
    fn oldest_held_input(&self) -> Option<u64> {
        None
    }
}

/// What a pipeline does with events a step rejects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Keep them in the dead-letter topic (the default: nothing is lost silently).
    #[default]
    DeadLetter,
    /// Count and drop them.
    Drop,
}

/// An event a step rejected, with why and where.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The event as the failing step saw it.
    pub event: Event,
    /// The name of the step that failed (`parse`, or the step's `name` if it has one).
    pub step: Arc<str>,
    /// What went wrong.
    pub error: String,
}

/// Per-call context handed to steps: where rejected and routed events go, and counters.
#[derive(Debug, Default)]
pub struct StepContext {
    on_error: OnError,
    step: Arc<str>,
    dead_letters: Vec<DeadLetter>,
    /// With [`OnError::Drop`]: why each dropped event was rejected, and by which step.
    dropped: Vec<(Arc<str>, String)>,
    routed: Vec<(Arc<str>, Event)>,
    rejected: u64,
    dropped_by_policy: u64,
    input_seq: u64,
}

impl StepContext {
    /// A context that handles rejections as `on_error` says.
    pub fn new(on_error: OnError) -> Self {
        StepContext {
            on_error,
            step: Arc::from(""),
            ..Default::default()
        }
    }

    /// Sets the name recorded on dead letters of the step about to run.
    pub fn set_step(&mut self, name: &Arc<str>) {
        if !Arc::ptr_eq(&self.step, name) {
            self.step = name.clone();
        }
    }

    /// Sets the sequence number of the input batch about to be processed (increasing from one
    /// batch to the next), which steps that hold events record (see
    /// [`Step::oldest_held_input`]).
    pub fn set_input_seq(&mut self, seq: u64) {
        self.input_seq = seq;
    }

    /// The sequence number of the input batch being processed.
    pub fn input_seq(&self) -> u64 {
        self.input_seq
    }

    /// Rejects `event` because of `error`: kept as a dead letter or dropped, and counted.
    pub fn reject(&mut self, event: Event, error: impl Into<String>) {
        self.rejected += 1;
        match self.on_error {
            OnError::DeadLetter => self.dead_letters.push(DeadLetter {
                event,
                step: self.step.clone(),
                error: error.into(),
            }),
            OnError::Drop => self.dropped.push((self.step.clone(), error.into())),
        }
    }

    /// Takes the reasons of the events rejected and dropped (`on_error = "drop"`) so far: the
    /// step and the error of each, so the agent can say why even when nothing is kept.
    pub fn take_dropped(&mut self) -> Vec<(Arc<str>, String)> {
        std::mem::take(&mut self.dropped)
    }

    /// Counts events a step dropped on purpose (a filter that did not match is not an error, but
    /// operators want to see how many events each pipeline discards).
    pub fn count_dropped(&mut self, events: u64) {
        self.dropped_by_policy += events;
    }

    /// Hands `event` to the topic `topic` instead of the pipeline's output (the `route` step).
    /// The agent publishes routed events with the pipeline's results; they are neither rejected
    /// nor dropped, so no counter moves.
    pub fn route(&mut self, topic: &Arc<str>, event: Event) {
        self.routed.push((topic.clone(), event));
    }

    /// Takes the routed events gathered so far, in the order they were routed, each with its
    /// topic.
    pub fn take_routed(&mut self) -> Vec<(Arc<str>, Event)> {
        std::mem::take(&mut self.routed)
    }

    /// Takes the dead letters gathered so far.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }

    /// Rejected events since the last [`StepContext::take_counts`].
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Returns and resets the counters: (rejected, dropped on purpose).
    pub fn take_counts(&mut self) -> (u64, u64) {
        let counts = (self.rejected, self.dropped_by_policy);
        self.rejected = 0;
        self.dropped_by_policy = 0;
        counts
    }
}

/// Why a step (or any component) could not be built from its config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// The config key at fault, relative to the component (`pattern`, `fields.status`), if known.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl BuildError {
    /// An error about the config key `key`.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        BuildError {
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// An error about the component as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        BuildError {
            key: None,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_keeps_or_drops_as_configured() {
        let name: Arc<str> = Arc::from("parse");
        let mut keep = StepContext::new(OnError::DeadLetter);
        keep.set_step(&name);
        keep.reject(Event::default(), "bad");
        let letters = keep.take_dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(&*letters[0].step, "parse");
        assert_eq!(letters[0].error, "bad");
        assert_eq!(keep.take_counts(), (1, 0));

        let mut drop = StepContext::new(OnError::Drop);
        drop.set_step(&name);
        drop.reject(Event::default(), "bad");
        drop.count_dropped(3);
        assert!(drop.take_dead_letters().is_empty());
        assert_eq!(drop.take_dropped(), [(name.clone(), "bad".to_owned())]);
        assert!(drop.take_dropped().is_empty());
        assert_eq!(drop.take_counts(), (1, 3));
        assert_eq!(drop.take_counts(), (0, 0));
    }

    #[test]
    fn routed_events_are_taken_in_order() {
        let errors: Arc<str> = Arc::from("web.errors");
        let bots: Arc<str> = Arc::from("web.bots");
        let mut ctx = StepContext::new(OnError::DeadLetter);
        let mut first = Event::default();
        first.insert("n", 1i64);
        ctx.route(&errors, first.clone());
        ctx.route(&bots, Event::default());
        let routed = ctx.take_routed();
        assert_eq!(routed.len(), 2);
        assert_eq!(&*routed[0].0, "web.errors");
        assert_eq!(routed[0].1, first);
        assert!(
            Arc::ptr_eq(&routed[1].0, &bots),
            "the topic name is shared, not copied"
        );
        assert!(ctx.take_routed().is_empty());
        assert_eq!(ctx.take_counts(), (0, 0));
    }
}
