//! What a running agent tells its operator: a live status line on a terminal, periodic summary
//! log lines otherwise, and a final summary: totals, each component's counters, the most frequent
//! reasons events were rejected and where those events are, and topics that did not pass on
//! every event.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::metrics::{Metrics, Role};
use crate::rejections::Destination;
use crate::topic::Topic;

/// Totals read from the counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Events produced by all sources.
    pub events_in: u64,
    /// Bytes read by all sources.
    pub bytes_in: u64,
    /// Events written by all sinks, summed: an event that two sinks wrote counts twice.
    pub events_out: u64,
    /// Events rejected anywhere.
    pub errors: u64,
    /// Events lost for good anywhere (a deleted file's unread lines, …).
    pub lost: u64,
}

impl Totals {
    /// Reads the totals now.
    pub fn read(metrics: &Metrics) -> Self {
        let mut totals = Totals::default();
        for component in metrics.components() {
            match component.role {
                Role::Source => {
                    totals.events_in += component.events_out.get();
                    totals.bytes_in += component.bytes_out.get();
                }
                Role::Sink => totals.events_out += component.events_out.get(),
                Role::Pipeline => {}
            }
            totals.errors += component.errors.get();
            totals.lost += component.lost.events();
        }
        totals
    }
}

/// One line describing rates since the previous sample and every topic's depth.
pub fn status_line(
    now: Totals,
    before: Totals,
    elapsed: Duration,
    topics: &IndexMap<String, Topic>,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
    let mut line = format!(
        "in {:>9}/s ({:>7.1} MiB/s)  out {:>9}/s  total in {} out {}",
        human_count(rate(now.events_in, before.events_in)),
        rate(now.bytes_in, before.bytes_in) / (1024.0 * 1024.0),
        human_count(rate(now.events_out, before.events_out)),
        now.events_in,
        now.events_out,
    );
    if now.errors > 0 {
        line.push_str(&format!("  errors {}", now.errors));
    }
    if now.lost > 0 {
        line.push_str(&format!("  LOST {}", now.lost));
    }
    for (name, topic) in topics {
        let stats = topic.stats();
        if stats.subscriptions.is_empty() && stats.retained_events == 0 {
            continue;
        }
        let fill = stats.retained_bytes as f64 / stats.max_bytes.max(1) as f64;
        line.push_str(&format!(
            "  [{name} {} {:.0}%]",
            stats.retained_events,
            (fill * 100.0).min(100.0)
        ));
    }
    line
}

fn human_count(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// Reports status until the task is aborted: a redrawn line on `stderr` if it is a terminal,
/// otherwise an info log every `interval`.
pub async fn report(
    metrics: Arc<Metrics>,
    topics: IndexMap<String, Topic>,
    terminal: bool,
    interval: Duration,
) {
    let period = if terminal {
        Duration::from_secs(1)
    } else {
        interval
    };
    let mut before = Totals::read(&metrics);
    let mut at = Instant::now();
    let mut ticker = tokio::time::interval(period);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = Totals::read(&metrics);
        let line = status_line(now, before, at.elapsed(), &topics);
        if terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        } else {
            tracing::info!(status = %line, "Running");
        }
        before = now;
        at = Instant::now();
    }
}

/// Clears the status line before other output follows.
pub fn clear_line() {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[2K");
    let _ = stderr.flush();
}

/// Logs what every component did, at the end of a run.
pub fn log_summary(metrics: &Metrics, topics: &IndexMap<String, Topic>, elapsed: Duration) {
    let totals = Totals::read(metrics);
    let secs = elapsed.as_secs_f64().max(1e-3);
    // Every subscription gets every event, so `events_out` (the sum over sinks) counts an event
    // once per sink that wrote it: 35 events read by 2 sinks are 70 out.
    let sinks = metrics
        .components()
        .iter()
        .filter(|component| component.role == Role::Sink)
        .count();
    tracing::info!(
        events_in = totals.events_in,
        events_out = totals.events_out,
        sinks,
        mib_in = format!("{:.1}", totals.bytes_in as f64 / 1048576.0),
        seconds = format!("{secs:.2}"),
        events_per_sec = (totals.events_in as f64 / secs) as u64,
        events_lost = totals.lost,
        "Run finished (events_out counts each event once per sink that wrote it)"
    );
    for component in metrics.components() {
        let extra = component.extra_counters();
        tracing::info!(
            component = %component.name,
            role = ?component.role,
            events_in = component.events_in.get(),
            events_out = component.events_out.get(),
            errors = component.errors.get(),
            discarded = component.discarded.get(),
            extra = ?extra,
            "Component summary"
        );
    }
    for component in metrics.components() {
        let lost = component.lost.by_reason();
        if lost.is_empty() {
            continue;
        }
        let reasons: Vec<String> = lost
            .iter()
            .map(|(reason, lost)| format!("{} lines ({} bytes) {reason}", lost.events, lost.bytes))
            .collect();
        tracing::warn!(
            component = %component.name,
            role = ?component.role,
            lines_read = component.events_out.get(),
            lines_lost = component.lost.events(),
            reasons = %reasons.join("; "),
            "Lines were lost"
        );
    }
    for component in metrics.components() {
        if component.role == Role::Source && component.events_out.get() == 0 {
            tracing::warn!(component = %component.name, "Source read nothing in this run");
        }
    }
    for component in metrics.components() {
        let top = component.rejections.top(TOP_REASONS);
        if top.is_empty() {
            continue;
        }
        let reasons: Vec<String> = top
            .iter()
            .map(|kind| format!("{} × {}", kind.count, kind.kind))
            .collect();
        tracing::warn!(
            component = %component.name,
            role = ?component.role,
            rejected = component.rejections.total(),
            top_reasons = %reasons.join("; "),
            kept_in = %kept_in(component.rejections.destination(), topics),
            "Events were rejected"
        );
    }
    for (name, topic) in topics {
        let stats = topic.stats();
        let c = stats.counters;
        let lost: u64 = stats
            .subscriptions
            .iter()
            .map(|sub| sub.counters.lost_events)
            .sum();
        if c.dropped_newest + c.dropped_oldest + lost > 0 || stats.retained_events > 0 {
            tracing::warn!(topic = %name, published = c.published_events,
                dropped_newest = c.dropped_newest, dropped_oldest = c.dropped_oldest,
                lost_by_subscriptions = lost, retained = stats.retained_events,
                "Topic did not pass on every event");
        }
    }
}

/// How many kinds of rejection the summary names per component.
pub const TOP_REASONS: usize = 3;

/// Where rejected events are, in words, for the summary: the dead-letter topic, and whether
/// anything reads it.
pub fn kept_in(destination: Option<&Destination>, topics: &IndexMap<String, Topic>) -> String {
    let Some(destination) = destination else {
        return "the dead-letter topic".to_owned();
    };
    let Destination::Topic(name) = destination else {
        return destination.to_string();
    };
    let readers: Vec<String> = topics
        .get(name)
        .map(|topic| {
            topic
                .stats()
                .subscriptions
                .into_iter()
                .map(|sub| sub.name)
                .collect()
        })
        .unwrap_or_default();
    if readers.is_empty() {
        format!(
            "{destination}, which nothing reads: a memory topic's events are lost when the agent \
             exits (add a sink with input = \"{name}\" to keep them)"
        )
    } else {
        format!("{destination}, read by {}", readers.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::{SubscriptionSettings, TopicSettings};

    #[test]
    fn status_line_shows_rates_and_depths() {
        let metrics = Metrics::new();
        let source = metrics.register("gen", Role::Source);
        let sink = metrics.register("out", Role::Sink);
        let before = Totals::read(&metrics);
        source.events_out.add(2_000_000);
        source.bytes_out.add(200 * 1024 * 1024);
        sink.events_out.add(1500);
        let now = Totals::read(&metrics);
        let mut topics = IndexMap::new();
        let topic = Topic::in_memory("raw", TopicSettings::default());
        let _sub = topic.subscribe(SubscriptionSettings::new("out"));
        topics.insert("raw".to_owned(), topic);
        let line = status_line(now, before, Duration::from_secs(2), &topics);
        assert!(line.contains("in     1.00M/s"), "{line}");
        assert!(line.contains("100.0 MiB/s"), "{line}");
        assert!(line.contains("out       750/s"), "{line}");
        assert!(line.contains("[raw 0 0%]"), "{line}");
        assert!(!line.contains("LOST"), "{line}");
        source.lost.add("deleted_unread", 12, 1200);
        let line = status_line(
            Totals::read(&metrics),
            before,
            Duration::from_secs(2),
            &topics,
        );
        assert!(line.contains("LOST 12"), "{line}");
    }

    #[test]
    fn the_summary_says_where_rejected_events_are() {
        let mut topics = IndexMap::new();
        topics.insert(
            "dead_letter".to_owned(),
            Topic::in_memory("dead_letter", TopicSettings::default()),
        );
        topics.insert(
            "bad".to_owned(),
            Topic::in_memory("bad", TopicSettings::default()),
        );
        let _sub = topics["bad"].subscribe(SubscriptionSettings::new("archive"));
        let unread = kept_in(Some(&Destination::Topic("dead_letter".into())), &topics);
        assert!(
            unread.starts_with("the dead-letter topic `dead_letter`, which nothing reads")
                && unread.contains("lost when the agent exits"),
            "{unread}"
        );
        assert_eq!(
            kept_in(Some(&Destination::Topic("bad".into())), &topics),
            "the dead-letter topic `bad`, read by archive"
        );
        assert_eq!(
            kept_in(Some(&Destination::Dropped("on_error = \"drop\"")), &topics),
            "nowhere: dropped (on_error = \"drop\")"
        );
    }
}
