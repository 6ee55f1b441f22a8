//! The `blackhole` sink: counts events and their bytes, then discards them.
//!
//! It is the end of benchmark pipelines (S1 `tail_to_null`, S4) and of pipelines under test, so
//! its hot path is two relaxed atomic adds per batch. The totals live in a [`BlackholeCounter`]
//! created with the config and shared by every sink built from it (and every clone of the
//! config), so a test or the benchmark runner can read them while the agent runs, and a sink
//! rebuilt after a restart keeps counting in the same place.
//!
//! Bytes are counted as the topic queue accounts them ([`Event::estimated_size`]: the raw line,
//! the fields and a fixed per-event overhead), not as any encoding would write them.
//!
//! With `print_interval`, the totals are logged at `info` when a write finds that the interval
//! has passed since the last report — checked on each write, so an idle blackhole stays silent
//! and needs no task of its own. The totals are always logged at `close`.
//!
//! ```toml
//! [sinks.null]
//! type = "blackhole"
//! input = "nginx.raw"
//! print_interval = "10s"   # optional; default: only at close
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sluice_pipelines::Event;

use crate::{BuildError, Sink, SinkContext, SinkFuture};

/// The config of the `blackhole` sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    /// How often to log the totals (`"10s"`); default: only at close.
    #[serde(default, deserialize_with = "crate::units::deserialize_opt_duration")]
    pub print_interval: Option<Duration>,
    /// The totals, shared by every sink built from this config.
    #[serde(skip)]
    counter: BlackholeCounter,
}

impl BlackholeConfig {
    /// The counter every sink built from this config (or a clone of it) adds to.
    pub fn counter(&self) -> BlackholeCounter {
        self.counter.clone()
    }

    /// Checks the config without touching anything outside the process.
    ///
    /// # Errors
    /// `print_interval` is zero.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.print_interval == Some(Duration::ZERO) {
            return Err(BuildError::at(
                "print_interval",
                "must be greater than zero (leave it out to log only at close)",
            ));
        }
        Ok(())
    }

    /// Builds the sink, counting into [`BlackholeConfig::counter`].
    pub fn build(&self, ctx: &SinkContext) -> BlackholeSink {
        BlackholeSink {
            name: ctx.name.clone(),
            counter: self.counter(),
            print_interval: self.print_interval,
            last_print: Instant::now(),
            printed: Totals::default(),
        }
    }
}

/// A cloneable handle on a blackhole's totals.
#[derive(Debug, Clone, Default)]
pub struct BlackholeCounter {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    events: AtomicU64,
    bytes: AtomicU64,
}

impl BlackholeCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events discarded so far.
    pub fn events(&self) -> u64 {
        self.inner.events.load(Ordering::Relaxed)
    }

    /// Bytes of the events discarded so far, as [`Event::estimated_size`] counts them.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    fn add(&self, events: u64, bytes: u64) {
        self.inner.events.fetch_add(events, Ordering::Relaxed);
        self.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn totals(&self) -> Totals {
        Totals {
            events: self.events(),
            bytes: self.bytes(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    events: u64,
    bytes: u64,
}

/// The runtime of the `blackhole` sink.
#[derive(Debug)]
pub struct BlackholeSink {
    name: String,
    counter: BlackholeCounter,
    print_interval: Option<Duration>,
    last_print: Instant,
    /// The totals at the last report, for the rates since then.
    printed: Totals,
}

impl BlackholeSink {
    /// The counter this sink adds to.
    pub fn counter(&self) -> BlackholeCounter {
        self.counter.clone()
    }

    /// Whether a report is due at `now` ([`BlackholeSink::report`] starts the next interval).
    fn report_due(&self, now: Instant) -> bool {
        self.print_interval
            .is_some_and(|interval| now.saturating_duration_since(self.last_print) >= interval)
    }

    fn report(&mut self, now: Instant, message: &'static str) {
        let totals = self.counter.totals();
        let seconds = now.saturating_duration_since(self.last_print).as_secs_f64();
        let (events_per_sec, bytes_per_sec) = if seconds > 0.0 {
            (
                (totals.events - self.printed.events) as f64 / seconds,
                (totals.bytes - self.printed.bytes) as f64 / seconds,
            )
        } else {
            (0.0, 0.0)
        };
        tracing::info!(
            sink = %self.name,
            events = totals.events,
            bytes = totals.bytes,
            events_per_sec = events_per_sec.round(),
            bytes_per_sec = bytes_per_sec.round(),
            "{message}"
        );
        self.last_print = now;
        self.printed = totals;
    }
}

impl Sink for BlackholeSink {
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
        let bytes: usize = events.iter().map(Event::estimated_size).sum();
        self.counter.add(events.len() as u64, bytes as u64);
        if self.print_interval.is_some() {
            let now = Instant::now();
            if self.report_due(now) {
                self.report(now, "Blackhole totals.");
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
        for chunk in chunks {
            // `write` is synchronous inside; its future is ready at once.
            drop(self.write(chunk));
        }
        Box::pin(async { Ok(()) })
    }

    fn close(&mut self) -> SinkFuture<'_> {
        self.report(Instant::now(), "Blackhole closed.");
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_pipelines::EventMeta;

    fn raw(line: &'static str) -> Event {
        Event::from_raw(Bytes::from_static(line.as_bytes()), EventMeta::default())
    }

    #[tokio::test]
    async fn counts_events_and_bytes_across_clones() {
        let config: BlackholeConfig = serde_json::from_str("{}").unwrap();
        let counter = config.counter();
        let mut sink = config.clone().build(&SinkContext::default());
        let events = [raw("a"), raw("bcd")];
        let expected_bytes: usize = events.iter().map(Event::estimated_size).sum();

        sink.write(&events).await.unwrap();
        sink.write(&[]).await.unwrap();
        assert_eq!(counter.events(), 2);
        assert_eq!(counter.bytes(), expected_bytes as u64);
        assert!(expected_bytes > 4, "bytes include the lines");

        // A second sink from the same config (a restart) keeps counting in the same place.
        let mut again = config.build(&SinkContext::default());
        again.write(&events[..1]).await.unwrap();
        again.close().await.unwrap();
        assert_eq!(counter.events(), 3);
        assert_eq!(sink.counter().events(), 3);

        // A separately parsed config has its own counter.
        let other: BlackholeConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(other.counter().events(), 0);
    }

    #[test]
    fn reports_when_the_interval_has_passed() {
        let config: BlackholeConfig = serde_json::from_str(r#"{"print_interval":"10s"}"#).unwrap();
        assert_eq!(config.print_interval, Some(Duration::from_secs(10)));
        let mut sink = config.build(&SinkContext::default());
        let start = sink.last_print;
        assert!(!sink.report_due(start + Duration::from_secs(9)));
        assert!(sink.report_due(start + Duration::from_secs(10)));
        sink.counter.add(5, 50);
        sink.report(start + Duration::from_secs(10), "Blackhole totals.");
        assert_eq!(
            sink.printed,
            Totals {
                events: 5,
                bytes: 50
            }
        );
        assert!(!sink.report_due(start + Duration::from_secs(19)));
        assert!(sink.report_due(start + Duration::from_secs(21)));

        let quiet = BlackholeConfig::default().build(&SinkContext::default());
        assert!(!quiet.report_due(start + Duration::from_secs(3600)));
    }

    #[test]
    fn config_errors() {
        let zero: BlackholeConfig = serde_json::from_str(r#"{"print_interval":"0s"}"#).unwrap();
        assert_eq!(
            zero.validate().unwrap_err().key.as_deref(),
            Some("print_interval")
        );
        assert!(serde_json::from_str::<BlackholeConfig>(r#"{"print_interval":"10"}"#).is_err());
        assert!(serde_json::from_str::<BlackholeConfig>(r#"{"counter":1}"#).is_err());
        assert!(BlackholeConfig::default().validate().is_ok());
    }
}
