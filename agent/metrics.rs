//! Counters of every component, read by the status line, summaries and the admin API.
//!
//! Counters are plain atomics registered when a component is built; hot paths add per batch,
//! never per event, and never take a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indexmap::IndexMap;
use parking_lot::Mutex;

use crate::rejections::Rejections;

/// What role a component plays, for grouping in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A source.
    Source,
    /// A pipeline.
    Pipeline,
    /// A sink.
    Sink,
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters of one component.
#[derive(Debug)]
pub struct ComponentMetrics {
    /// The component's name in the config.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Events received (pipelines, sinks).
    pub events_in: Counter,
    /// Events passed on: produced by a source, published by a pipeline, written by a sink.
    pub events_out: Counter,
    /// Bytes passed on: raw line bytes for sources, for sinks the bytes encoded for what the
    /// store accepted (before compression; copied from the sink driver every second).
    pub bytes_out: Counter,
    /// Events that failed (rejected by a step, refused by a store).
    pub errors: Counter,
    /// Events discarded on purpose (filtered out).
    pub discarded: Counter,
    /// Why events were rejected, by kind, and where they went.
    pub rejections: Rejections,
    /// Lines (or events) that are gone without having been passed on, by reason.
    pub lost: Losses,
    /// What the component shows of its own state in the admin API (the file source: the files
    /// it holds open and why), replaced now and then by the component.
    state: Mutex<Option<serde_json::Value>>,
    extra: Mutex<IndexMap<&'static str, Arc<Counter>>>,
}

impl ComponentMetrics {
    fn new(name: &str, role: Role) -> Self {
        ComponentMetrics {
            name: name.to_owned(),
            role,
            events_in: Counter::default(),
            events_out: Counter::default(),
            bytes_out: Counter::default(),
            errors: Counter::default(),
            discarded: Counter::default(),
            rejections: Rejections::default(),
            lost: Losses::default(),
            state: Mutex::new(None),
            extra: Mutex::new(IndexMap::new()),
        }
    }

    /// A component-specific counter (`invalid_utf8`, `truncated_lines`, …), created on first use.
    /// Call it at build time and keep the `Arc`; it takes a lock.
    pub fn counter(&self, name: &'static str) -> Arc<Counter> {
        self.extra.lock().entry(name).or_default().clone()
    }

    /// Replaces what the admin API shows of the component's own state.
    pub fn set_state(&self, state: serde_json::Value) {
        *self.state.lock() = Some(state);
    }

    /// What the component last said of its own state, if anything.
    pub fn state(&self) -> Option<serde_json::Value> {
        self.state.lock().clone()
    }

    /// The component-specific counters and their values.
    pub fn extra_counters(&self) -> Vec<(&'static str, u64)> {
        self.extra
            .lock()
            .iter()
            .map(|(name, counter)| (*name, counter.get()))
            .collect()
    }
}

/// What a component lost for good, by reason (`deleted_unread`, `max_open_files`, …): events
/// (lines) and bytes that were neither passed on nor kept anywhere. Losses are rare, so one lock
/// is fine; a reason's totals only grow.
#[derive(Debug, Default)]
pub struct Losses {
    by_reason: Mutex<IndexMap<&'static str, Lost>>,
}

/// Events and bytes lost for one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Events (lines) lost.
    pub events: u64,
    /// Bytes lost.
    pub bytes: u64,
}

impl Losses {
    /// Counts `events` and `bytes` lost for `reason`.
    pub fn add(&self, reason: &'static str, events: u64, bytes: u64) {
        let mut by_reason = self.by_reason.lock();
        let lost = by_reason.entry(reason).or_default();
        lost.events += events;
        lost.bytes += bytes;
    }

    /// Every reason with what was lost for it, in the order the reasons first occurred.
    pub fn by_reason(&self) -> Vec<(&'static str, Lost)> {
        self.by_reason
            .lock()
            .iter()
            .map(|(reason, lost)| (*reason, *lost))
            .collect()
    }

    /// Events lost for any reason.
    pub fn events(&self) -> u64 {
        self.by_reason.lock().values().map(|lost| lost.events).sum()
    }
}

/// Every component's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    components: Mutex<Vec<Arc<ComponentMetrics>>>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a component and returns its counters.
    pub fn register(&self, name: &str, role: Role) -> Arc<ComponentMetrics> {
        let metrics = Arc::new(ComponentMetrics::new(name, role));
        self.components.lock().push(metrics.clone());
        metrics
    }

    /// Every registered component.
    pub fn components(&self) -> Vec<Arc<ComponentMetrics>> {
        self.components.lock().clone()
    }

    /// The counters of the component named `name` with role `role`.
    pub fn get(&self, name: &str, role: Role) -> Option<Arc<ComponentMetrics>> {
        self.components
            .lock()
            .iter()
            .find(|c| c.name == name && c.role == role)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_accumulate_and_are_found_by_name() {
        let metrics = Metrics::new();
        let source = metrics.register("nginx", Role::Source);
        source.events_out.add(3);
        source.events_out.add(4);
        let invalid = source.counter("invalid_utf8");
        invalid.add(1);
        assert!(Arc::ptr_eq(&invalid, &source.counter("invalid_utf8")));
        let found = metrics.get("nginx", Role::Source).unwrap();
        assert_eq!(found.events_out.get(), 7);
        assert_eq!(found.extra_counters(), [("invalid_utf8", 1)]);
        assert!(metrics.get("nginx", Role::Sink).is_none());
    }

    #[test]
    fn losses_add_up_per_reason() {
        let losses = Losses::default();
        losses.add("deleted_unread", 3, 300);
        losses.add("max_open_files", 1, 10);
        losses.add("deleted_unread", 2, 20);
        assert_eq!(
            losses.by_reason(),
            [
                (
                    "deleted_unread",
                    Lost {
                        events: 5,
                        bytes: 320
                    }
                ),
                (
                    "max_open_files",
                    Lost {
                        events: 1,
                        bytes: 10
                    }
                ),
            ]
        );
        assert_eq!(losses.events(), 6);
    }
}
