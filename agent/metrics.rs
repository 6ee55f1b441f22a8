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
            extra: Mutex::new(IndexMap::new()),
        }
    }

    /// A component-specific counter (`invalid_utf8`, `truncated_lines`, …), created on first use.
    /// Call it at build time and keep the `Arc`; it takes a lock.
    pub fn counter(&self, name: &'static str) -> Arc<Counter> {
        self.extra.lock().entry(name).or_default().clone()
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
}
