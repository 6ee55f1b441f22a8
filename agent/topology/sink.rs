//! A sink worker: one subscription worker driving one sink instance.
//!
//! Each delivery is written with [`Sink::write`] and acknowledged only when the write returned
//! `Ok`. Transient failures are retried with exponential backoff and jitter, forever — while a
//! store is down, events wait in the topic and back-pressure reaches the sources, nothing is
//! dropped — until the agent's shutdown deadline aborts the worker (the unacknowledged batch is
//! then read again after a restart, where the source checkpoints). Permanent failures send the
//! batch to the dead-letter topic with the store's error, then acknowledge it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sluice_pipelines::{Batch, Event, Fields, Value};
use sluice_sink::{Sink, SinkError};

use crate::metrics::ComponentMetrics;
use crate::topic::{Producer, Subscription};

/// First retry delay after a transient failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Everything one worker of a sink needs.
pub struct SinkWorker {
    /// The sink's name.
    pub name: Arc<str>,
    /// Its subscription (shared by its workers).
    pub input: Subscription,
    /// Its own sink instance.
    pub sink: Box<dyn Sink>,
    /// Where permanently rejected events go; `None` when the sink reads that very topic (a
    /// rejected dead letter is counted and dropped rather than looped).
    pub dead_letter: Option<Producer>,
    /// The sink's counters.
    pub metrics: Arc<ComponentMetrics>,
}

impl SinkWorker {
    /// Runs until the input topic ends, then closes the sink.
    pub async fn run(mut self) {
        while let Some(delivery) = self.input.next().await {
            let events = delivery.events();
            self.metrics.events_in.add(events.len() as u64);
            match write_with_retry(&self.name, self.sink.as_mut(), events, &self.metrics).await {
                Ok(()) => self.metrics.events_out.add(events.len() as u64),
                Err(error) => {
                    self.metrics.errors.add(events.len() as u64);
                    match &self.dead_letter {
                        Some(dead_letter) => {
                            tracing::error!(sink = %self.name, %error, events = events.len(),
                                "Store rejected a batch; it goes to the dead-letter topic");
                            let rejected = events
                                .iter()
                                .map(|event| rejected_event(&self.name, event.clone(), &error))
                                .collect();
                            dead_letter.send(Batch::new(rejected)).await;
                        }
                        None => {
                            tracing::error!(sink = %self.name, %error, events = events.len(),
                                "Store rejected a batch read from the dead-letter topic; dropped");
                        }
                    }
                }
            }
            delivery.ack();
        }
        if let Err(error) = self.sink.close().await {
            tracing::error!(sink = %self.name, %error, "Closing the sink failed");
            self.metrics.errors.add(1);
        }
    }
}

/// Writes `events`, retrying transient failures with backoff until they succeed.
///
/// # Errors
/// The first permanent failure.
async fn write_with_retry(
    name: &str,
    sink: &mut dyn Sink,
    events: &[Event],
    metrics: &ComponentMetrics,
) -> Result<(), SinkError> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt: u64 = 0;
    loop {
        match sink.write(events).await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!(sink = name, attempts = attempt + 1, "Store accepted the batch after retrying");
                }
                return Ok(());
            }
            Err(error) if error.is_transient() => {
                attempt += 1;
                metrics.counter("retries").add(1);
                // The store may say how long to wait (HTTP Retry-After).
                let wait = error.retry_after().unwrap_or(backoff).max(backoff.mul_f64(jitter_factor()));
                // Log the first failure and then every tenth, so a long outage stays readable.
                if attempt == 1 || attempt % 10 == 0 {
                    tracing::warn!(sink = name, %error, attempt, retry_in = ?wait, "Write failed; retrying");
                }
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(permanent) => return Err(permanent),
        }
    }
}

/// A factor in [0.5, 1.0) that spreads retries of many workers apart. The sub-second clock is
/// random enough for that and needs no generator state.
fn jitter_factor() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    0.5 + f64::from(nanos % 1000) / 2000.0
}

/// A permanently rejected event, marked with the sink and the store's error.
fn rejected_event(sink: &str, mut event: Event, error: &SinkError) -> Event {
    let mut info = Fields::with_capacity(3);
    info.insert("sink".into(), Value::from(sink));
    info.insert("error".into(), Value::from(error.to_string()));
    info.insert("at".into(), Value::Timestamp(Utc::now()));
    event.insert("dead_letter", Value::Map(info));
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, Role};
    use sluice_sink::SinkFuture;

    /// A sink that fails transiently `failures` times, then records what it got.
    struct Flaky {
        failures: usize,
        permanent: bool,
        written: Arc<parking_lot::Mutex<Vec<usize>>>,
    }

    impl Sink for Flaky {
        fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
            Box::pin(async move {
                if self.permanent {
                    return Err(SinkError::Permanent("bad row".into()));
                }
                if self.failures > 0 {
                    self.failures -= 1;
                    return Err(SinkError::Transient("connection refused".into()));
                }
                self.written.lock().push(events.len());
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_the_store_accepts() {
        let metrics = Metrics::new().register("s", Role::Sink);
        let written = Arc::default();
        let mut sink = Flaky {
            failures: 5,
            permanent: false,
            written: Arc::clone(&written),
        };
        let events = vec![Event::default(); 3];
        write_with_retry("s", &mut sink, &events, &metrics).await.unwrap();
        assert_eq!(*written.lock(), [3]);
        assert_eq!(metrics.counter("retries").get(), 5);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let metrics = Metrics::new().register("s", Role::Sink);
        let mut sink = Flaky {
            failures: 0,
            permanent: true,
            written: Arc::default(),
        };
        let error = write_with_retry("s", &mut sink, &[Event::default()], &metrics)
            .await
            .unwrap_err();
        assert_eq!(error, SinkError::Permanent("bad row".into()));
        assert_eq!(metrics.counter("retries").get(), 0);
        let marked = rejected_event("pg", Event::default(), &error);
        assert_eq!(
            marked.get_path(&["dead_letter", "error"]).and_then(Value::as_str),
            Some("bad row")
        );
    }
}
