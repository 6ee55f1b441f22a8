//! The Prometheus text exposition format (version 0.0.4) of every counter of every component,
//! topic and subscription, for `GET /metrics`.

use std::fmt::Write as _;

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::metrics::{Metrics, Role};
use crate::topic::Topic;

/// One metric family being written: its samples follow its `HELP` and `TYPE` lines.
struct Family<'a> {
    out: &'a mut String,
    name: String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let name = format!("sluice_{name}");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(&self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (name, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
pub(super) fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Pipeline => "pipeline",
        Role::Sink => "sink",
    }
}

/// The fields of a counters struct, by name, from its serde form.
fn counter_fields(counters: &impl serde::Serialize) -> Vec<(String, u64)> {
    match serde_json::to_value(counters) {
        Ok(Json::Object(fields)) => fields
            .into_iter()
            .filter_map(|(name, value)| value.as_u64().map(|value| (name, value)))
            .collect(),
        _ => Vec::new(),
    }
}

/// A sample row: its labels, and the fields of its counters struct by name.
type CounterRow<'a> = (Vec<(&'a str, &'a str)>, Vec<(String, u64)>);

/// One counter family per field of a counters struct (`<prefix>_<field>_total`), with a sample
/// per row: its labels and the struct's fields, read once per row by [`counter_fields`]. Every
/// row holds the same struct, so its fields come in the same order.
fn counter_families(out: &mut String, prefix: &str, rows: &[CounterRow<'_>]) {
    let Some((_, first)) = rows.first() else {
        return;
    };
    for (index, (counter, _)) in first.iter().enumerate() {
        let mut family = Family::new(
            out,
            &format!("{prefix}_{counter}_total"),
            "counter",
            &format!("The {prefix}'s `{counter}` counter."),
        );
        for (labels, fields) in rows {
            family.sample(labels, fields[index].1);
        }
    }
}

/// Every metric in the Prometheus text exposition format (version 0.0.4).
pub fn prometheus_text(
    metrics: &Metrics,
    topics: &IndexMap<String, Topic>,
    uptime_seconds: f64,
) -> String {
    let mut out = String::new();
    Family::new(
        &mut out,
        "uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
    )
    .sample(&[], uptime_seconds);
    Family::new(&mut out, "build_info", "gauge", "The agent's version.")
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);

    let components = metrics.components();
    type Read = fn(&crate::metrics::ComponentMetrics) -> u64;
    let standard: [(&str, &str, Read); 5] = [
        (
            "component_events_in_total",
            "Events a pipeline or sink received.",
            |c| c.events_in.get(),
        ),
        (
            "component_events_out_total",
            "Events a source produced, a pipeline published or a sink delivered.",
            |c| c.events_out.get(),
        ),
        (
            "component_bytes_out_total",
            "Bytes passed on: line bytes read by sources, bytes sinks encoded for what their store accepted (before compression; 0 for blackhole).",
            |c| c.bytes_out.get(),
        ),
        (
            "component_errors_total",
            "Events that failed: rejected by a step, refused by a store, undecodable input.",
            |c| c.errors.get(),
        ),
        (
            "component_discarded_total",
            "Events discarded on purpose (filtered out, sampled away, deduplicated).",
            |c| c.discarded.get(),
        ),
    ];
    for (name, help, read) in standard {
        let mut family = Family::new(&mut out, name, "counter", help);
        for component in &components {
            let role = role_name(component.role);
            family.sample(
                &[("component", &component.name), ("role", role)],
                read(component),
            );
        }
    }
    let mut family = Family::new(
        &mut out,
        "component_counter_total",
        "counter",
        "A component's own counters (invalid_utf8, retries, rejected_requests, …) by name.",
    );
    for component in &components {
        let role = role_name(component.role);
        for (counter, value) in component.extra_counters() {
            family.sample(
                &[
                    ("component", &component.name),
                    ("role", role),
                    ("counter", counter),
                ],
                value,
            );
        }
    }

    type Lost = fn(&crate::metrics::Lost) -> u64;
    let lost: [(&str, &str, Lost); 2] = [
        (
            "component_lost_events_total",
            "Events (lines) lost for good, by reason (deleted_unread, max_open_files, max_deleted_bytes).",
            |lost| lost.events,
        ),
        (
            "component_lost_bytes_total",
            "Bytes lost for good, by reason.",
            |lost| lost.bytes,
        ),
    ];
    for (name, help, read) in lost {
        let mut family = Family::new(&mut out, name, "counter", help);
        for component in &components {
            let role = role_name(component.role);
            for (reason, lost) in component.lost.by_reason() {
                family.sample(
                    &[
                        ("component", &component.name),
                        ("role", role),
                        ("reason", reason),
                    ],
                    read(&lost),
                );
            }
        }
    }

    let stats: Vec<_> = topics.values().map(Topic::stats).collect();
    type Gauge = fn(&crate::topic::TopicStats) -> u64;
    let gauges: [(&str, &str, Gauge); 5] = [
        (
            "topic_retained_events",
            "Events held by the topic now.",
            |t| t.retained_events,
        ),
        (
            "topic_retained_bytes",
            "Estimated bytes held by the topic now.",
            |t| t.retained_bytes,
        ),
        ("topic_max_events", "The topic's capacity in events.", |t| {
            t.max_events
        }),
        ("topic_max_bytes", "The topic's capacity in bytes.", |t| {
            t.max_bytes
        }),
        (
            "topic_end_offset",
            "The offset the topic's next event will get.",
            |t| t.end_offset.0,
        ),
    ];
    for (name, help, read) in gauges {
        let mut family = Family::new(&mut out, name, "gauge", help);
        for topic in &stats {
            family.sample(&[("topic", &topic.name)], read(topic));
        }
    }
    let topic_rows: Vec<_> = stats
        .iter()
        .map(|topic| {
            (
                vec![("topic", topic.name.as_str())],
                counter_fields(&topic.counters),
            )
        })
        .collect();
    counter_families(&mut out, "topic", &topic_rows);

    // Disk topics: their files, and recovery (torn tails, quarantined records) and cache counters.
    let disk: Vec<_> = stats
        .iter()
        .filter_map(|topic| topic.disk.as_ref().map(|disk| (topic.name.as_str(), disk)))
        .collect();
    type DiskGauge = fn(&crate::topic::DiskStats) -> u64;
    let disk_gauges: [(&str, &str, DiskGauge); 2] = [
        (
            "topic_disk_bytes",
            "Bytes of a disk topic's segment files.",
            |d| d.disk_bytes,
        ),
        (
            "topic_disk_segments",
            "Segment files of a disk topic.",
            |d| d.segments as u64,
        ),
    ];
    for (name, help, read) in disk_gauges {
        if disk.is_empty() {
            break;
        }
        let mut family = Family::new(&mut out, name, "gauge", help);
        for (topic, stats) in &disk {
            family.sample(&[("topic", topic)], read(stats));
        }
    }
    let disk_rows: Vec<_> = disk
        .iter()
        .map(|(topic, stats)| (vec![("topic", *topic)], counter_fields(&stats.log)))
        .collect();
    counter_families(&mut out, "topic_disk", &disk_rows);

    type SubGauge = fn(&crate::topic::SubscriptionStats) -> u64;
    let sub_gauges: [(&str, &str, SubGauge); 3] = [
        (
            "subscription_lag_events",
            "Events published to the topic and not yet acknowledged by the subscription.",
            |s| s.lag_events,
        ),
        (
            "subscription_committed_offset",
            "Everything before this offset is acknowledged by the subscription.",
            |s| s.committed_offset.0,
        ),
        (
            "subscription_in_flight_batches",
            "Batches handed to the subscription's workers and not yet acknowledged.",
            |s| s.in_flight_batches as u64,
        ),
    ];
    for (name, help, read) in sub_gauges {
        let mut family = Family::new(&mut out, name, "gauge", help);
        for topic in &stats {
            for sub in &topic.subscriptions {
                family.sample(
                    &[("topic", &topic.name), ("subscription", &sub.name)],
                    read(sub),
                );
            }
        }
    }
    let subscription_rows: Vec<_> = stats
        .iter()
        .flat_map(|topic| {
            topic.subscriptions.iter().map(|sub| {
                let labels = vec![
                    ("topic", topic.name.as_str()),
                    ("subscription", sub.name.as_str()),
                ];
                (labels, counter_fields(&sub.counters))
            })
        })
        .collect();
    counter_families(&mut out, "subscription", &subscription_rows);
    out
}
