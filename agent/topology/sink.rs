//! A sink in the topology: its subscription feeding the shared sink driver.
//!
//! The driver (`sluice_sink::driver`) batches, retries and limits concurrency; this module only
//! connects it to the topic. Each delivery goes to the driver as its `Arc<Batch>` (no copy) with
//! an acker that acknowledges the delivery once the store confirmed every event — or, for events
//! the store rejected for good, once they were published to the dead-letter topic with the store's
//! error. While a store is down the driver keeps retrying and stops taking input, so deliveries
//! wait in the topic and back-pressure reaches the sources; nothing is dropped. An acker dropped
//! unused (the driver was aborted at the shutdown deadline) releases its delivery
//! unacknowledged, so the events are read again.
//!
//! A store that refuses the sink as configured (a missing table, wrong credentials) holds the
//! events the same way while someone can fix it; when nobody will — a finite run, or a shutdown —
//! the driver stops and [`SinkRunner::run`] returns its error, which ends the run with exit 1.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sluice_pipelines::{Batch, Event, Fields, Value};
use sluice_sink::SinkError;
use sluice_sink::driver::{
    Acker, Driver, DriverError, DriverInput, DriverStats, Outcome, Rejection,
};

use crate::metrics::{ComponentMetrics, Counter};
use crate::topic::{Delivery, Producer, Subscription};

/// Everything a sink needs to run.
pub struct SinkRunner {
    /// The sink's name.
    pub name: Arc<str>,
    /// Its subscription; `workers` tasks take deliveries from it.
    pub input: Subscription,
    /// How many tasks feed the driver.
    pub workers: usize,
    /// The driver that owns the sink instance.
    pub driver: Driver,
    /// The driver's input.
    pub driver_input: DriverInput,
    /// Where permanently rejected events go; `None` when the sink reads that very topic (a
    /// rejected dead letter is counted and dropped rather than looped).
    pub dead_letter: Option<Producer>,
    /// The sink's counters.
    pub metrics: Arc<ComponentMetrics>,
}

impl SinkRunner {
    /// Runs until the input topic ends and the driver has flushed and closed the sink.
    ///
    /// # Errors
    /// A [`SinkRunError`] when the store refused the sink and nobody waits for a fix, or the
    /// driver failed: the deliveries not yet acknowledged stay unacknowledged.
    pub async fn run(self) -> Result<(), SinkRunError> {
        let stats = StatsCopier::new(self.driver.stats(), &self.metrics);
        let copier = {
            let stats = stats.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(STATS_INTERVAL);
                loop {
                    ticker.tick().await;
                    stats.copy();
                }
            })
        };
        let driver = tokio::spawn(self.driver.run());
        let mut feeders = Vec::with_capacity(self.workers.max(1));
        for _ in 0..self.workers.max(1) {
            let feeder = Feeder {
                name: self.name.clone(),
                input: self.input.clone(),
                driver: Some(self.driver_input.clone()),
                dead_letter: self.dead_letter.clone(),
                metrics: self.metrics.clone(),
            };
            feeders.push(tokio::spawn(feeder.run()));
        }
        drop(self.driver_input);
        // The driver ends once the feeders dropped their inputs and everything was written — or
        // early, when the store refuses the sink: then the feeders would wait for a topic that
        // cannot end, and are stopped.
        let result = match driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(SinkRunError::Driver(error)),
            Err(error) => {
                tracing::error!(sink = %self.name, %error, "Sink driver stopped");
                Err(SinkRunError::Stopped(error))
            }
        };
        if result.is_err() {
            self.metrics.errors.add(1);
            for feeder in &feeders {
                feeder.abort();
            }
        }
        for feeder in feeders {
            if let Err(error) = feeder.await
                && !error.is_cancelled()
            {
                tracing::error!(sink = %self.name, %error, "Sink feeder stopped");
            }
        }
        copier.abort();
        let _ = copier.await;
        stats.copy();
        result
    }
}

/// Why a sink stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SinkRunError {
    /// The driver gave up: the store refused the sink.
    #[error(transparent)]
    Driver(DriverError),
    /// The driver's task failed (it panicked or was cancelled).
    #[error("the sink driver stopped: {0}")]
    Stopped(tokio::task::JoinError),
}

/// How often the driver's counts are copied into the sink's metrics while it runs.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Copies the driver's counts (encoded bytes, requests, retries) into the sink's counters, so
/// `/metrics` shows them while the sink runs, at most [`STATS_INTERVAL`] late.
#[derive(Clone)]
struct StatsCopier {
    stats: DriverStats,
    metrics: Arc<ComponentMetrics>,
    requests: Arc<Counter>,
    retries: Arc<Counter>,
}

impl StatsCopier {
    fn new(stats: DriverStats, metrics: &Arc<ComponentMetrics>) -> Self {
        StatsCopier {
            stats,
            metrics: metrics.clone(),
            requests: metrics.counter("requests"),
            retries: metrics.counter("retries"),
        }
    }

    /// Brings each counter up to the driver's count (only this copier adds to them, one copy
    /// at a time).
    fn copy(&self) {
        let catch_up = |counter: &Counter, now: u64| counter.add(now.saturating_sub(counter.get()));
        catch_up(&self.metrics.bytes_out, self.stats.bytes_written());
        catch_up(&self.requests, self.stats.attempts());
        catch_up(&self.retries, self.stats.retries());
    }
}

struct Feeder {
    name: Arc<str>,
    input: Subscription,
    driver: Option<DriverInput>,
    dead_letter: Option<Producer>,
    metrics: Arc<ComponentMetrics>,
}

impl Feeder {
    async fn run(mut self) {
        loop {
            let delivery = tokio::select! {
                delivery = self.input.next() => delivery,
                // Everything was handed out: let the driver flush now rather than wait for its
                // batch timeout (the topic cannot end while the driver holds unacknowledged
                // deliveries).
                () = self.input.drained(), if self.driver.is_some() => {
                    self.driver = None;
                    continue;
                }
            };
            let Some(delivery) = delivery else { break };
            let Some(input) = self.driver.clone() else {
                // A delivery came back after the driver's input closed (its acker was dropped:
                // the driver stopped, which it reports itself): leave it unacknowledged for the
                // next start.
                tracing::debug!(sink = %self.name, "A delivery came back after the sink closed its input");
                break;
            };
            let batch = delivery.batch().clone();
            self.metrics.events_in.add(batch.len() as u64);
            let acker = self.acker(delivery);
            if input.send(batch, acker).await.is_err() {
                // The driver stopped (it panicked): the delivery inside the acker is released
                // unacknowledged and will be read again.
                tracing::error!(sink = %self.name, "Sink driver is gone; stopping its input");
                break;
            }
        }
    }

    fn acker(&self, delivery: Delivery) -> Acker {
        let name = self.name.clone();
        let metrics = self.metrics.clone();
        let dead_letter = self.dead_letter.clone();
        Acker::new(move |outcome| match outcome {
            Outcome::Delivered => {
                metrics.events_out.add(delivery.events().len() as u64);
                delivery.ack();
            }
            Outcome::Rejected { rejections } => {
                let events = delivery.events();
                let rejected: u64 = rejections.iter().map(|r| r.events.len() as u64).sum();
                metrics
                    .events_out
                    .add((events.len() as u64).saturating_sub(rejected));
                metrics.errors.add(rejected);
                // Logged by kind, rate-limited, with where the events go.
                metrics.rejections.record(
                    &name,
                    rejections.iter().flat_map(|rejection| {
                        std::iter::repeat_n(("", rejection.error.message()), rejection.events.len())
                    }),
                );
                let letters = rejected_events(&name, events, &rejections);
                match dead_letter {
                    Some(dead_letter) => {
                        // The acker runs on the driver's task: publish (which may wait for room)
                        // on a task of its own, and acknowledge once the dead letters are in.
                        tokio::spawn(async move {
                            dead_letter.send(Batch::new(letters)).await;
                            delivery.ack();
                        });
                    }
                    None => delivery.ack(),
                }
            }
        })
    }
}

/// The rejected events of a delivery, each marked with the sink and the store's error.
fn rejected_events(sink: &str, events: &[Event], rejections: &[Rejection]) -> Vec<Event> {
    let at = Utc::now();
    let mut letters = Vec::new();
    for rejection in rejections {
        let Some(slice) = events.get(rejection.events.clone()) else {
            continue;
        };
        for event in slice {
            letters.push(rejected_event(sink, event.clone(), &rejection.error, at));
        }
    }
    letters
}

fn rejected_event(
    sink: &str,
    mut event: Event,
    error: &SinkError,
    at: chrono::DateTime<Utc>,
) -> Event {
    let mut info = Fields::with_capacity(3);
    info.insert("sink".into(), Value::from(sink));
    info.insert("error".into(), Value::from(error.message()));
    info.insert("at".into(), Value::Timestamp(at));
    event.insert("dead_letter", Value::Map(info));
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_ranges_become_marked_dead_letters() {
        let events: Vec<Event> = (0..5i64)
            .map(|n| {
                let mut event = Event::default();
                event.insert("n", n);
                event
            })
            .collect();
        let rejections = vec![
            Rejection {
                events: 1..3,
                error: SinkError::Permanent("duplicate key".into()),
            },
            Rejection {
                events: 4..9, // out of range: ignored, never a panic
                error: SinkError::Permanent("bad".into()),
            },
        ];
        let letters = rejected_events("pg", &events, &rejections);
        let numbers: Vec<i64> = letters
            .iter()
            .map(|e| e.get("n").and_then(Value::as_int).unwrap())
            .collect();
        assert_eq!(numbers, [1, 2]);
        assert_eq!(
            letters[0]
                .get_path(&["dead_letter", "error"])
                .and_then(Value::as_str),
            Some("duplicate key")
        );
        assert_eq!(
            letters[0]
                .get_path(&["dead_letter", "sink"])
                .and_then(Value::as_str),
            Some("pg")
        );
    }
}
