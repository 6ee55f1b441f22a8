//! The sink driver: batching, concurrency, retries and acknowledgement, shared by every sink.
//!
//! The driver knows nothing of topics. The agent spawns one [`Driver`] per sink and feeds it
//! *inputs* — an `Arc<Batch>` (a topic delivery's events, not copied) and an [`Acker`] the agent
//! built around that delivery — through the bounded [`DriverInput`].
//!
//! # Batching
//! Inputs are gathered into a request until it holds `batch.max_events` events or
//! `batch.max_bytes` bytes (as [`Event::estimated_size`] counts them), or until `batch.timeout`
//! has passed since its first event arrived. An input larger than the room left is split across
//! requests; a request is a list of slices of inputs, handed to [`Sink::write_chunks`] without
//! copying events.
//!
//! # Concurrency and back-pressure
//! Up to `concurrency` requests are in flight, each on its own sink handle ([`Sink::fork`]; a sink
//! that cannot fork runs one request at a time). With `concurrency = "adaptive"` the limit follows
//! latency and errors ([`concurrency`]). While every slot is busy and a full request waits, the
//! driver stops reading its input channel, so [`DriverInput::send`] waits and the agent stops
//! taking deliveries from the topic: the topic fills and pushes back on its producers. The events
//! the driver holds are bounded by the channel ([`INPUT_CAPACITY`] inputs), one request being
//! gathered, one waiting, and the requests in flight.
//!
//! # Retries
//! A [`SinkError::Unreachable`] failure (the store cannot be reached: connection refused, server
//! starting up) is retried soon: after a short backoff from `retry.initial` doubling up to
//! [`RECONNECT_MAX`] (or `retry.max` if shorter), with jitter — so rows flow again within about
//! a second of the store accepting connections, however long it was down. A
//! [`SinkError::Transient`] failure (the store answered but could not take the request: busy,
//! timed out) is retried with the same events after the longer exponential backoff
//! (`retry.initial` doubling up to `retry.max`), with jitter (each delay is drawn between half and
//! all of it); a [`SinkError::RetryAfter`] is retried after the delay the store asked for (at
//! least `retry.initial`, at most [`MAX_RETRY_AFTER`]). Retries go on forever — a store that is
//! down leaves the events in the topic — unless `retry.max_attempts` is set, after which the
//! events are rejected with the last error. A [`SinkError::Permanent`] failure is never retried
//! as is: the request is split in halves, and the halves again, until the bad events stand alone
//! — one bad row does not take the good ones of its request to the dead-letter topic. A single
//! event rejected for good is rejected. (With `b` bad events among `n`, that costs about
//! `2·b·log₂(n/b)` extra requests.)
//!
//! # A store that refuses the sink
//! A [`SinkError::Refused`] failure (a missing table or database, wrong credentials or URL, no
//! permission) cannot fix itself and splitting cannot help, but an operator can fix it: the
//! request is retried with the long backoff and its events wait, unacknowledged, as for an
//! outage. Once the driver's input has ended (a shutdown), or from the start in a finite run
//! ([`Driver::finite_run`]: every source ends by itself), nobody is going to wait for that fix:
//! after [`REFUSED_ATTEMPTS_WHEN_ENDED`] refused attempts in a row the driver stops, leaving everything it holds unacknowledged (read again on
//! the next start where the source keeps checkpoints), and [`Driver::run`] returns
//! [`DriverError::Refused`] with the store's message, so the run ends with an error instead of
//! hanging.
//!
//! # Logging a store's state
//! A failing store is logged once per change of state — reachable, unreachable, failing
//! requests, refusing the sink — not once per retry: a warning (an error for a refusal) when it
//! starts, and when requests succeed again one line with how many attempts failed and for how
//! long.
//!
//! # Acknowledgement
//! An input's [`Acker`] is called exactly once, after every event of it was confirmed by the store
//! ([`Outcome::Delivered`]) or some were rejected for good ([`Outcome::Rejected`], with the event
//! ranges and the store's error — the agent sends those events to the dead-letter topic and acks
//! the delivery). Acks are not ordered. An acker that is dropped without being called — the
//! driver task was aborted at the shutdown deadline, or a sink panicked — means neither: the
//! agent's delivery is then released unacknowledged and the topic delivers it again.
//!
//! # Shutdown
//! When every [`DriverInput`] is dropped, the driver sends what it has gathered at once, waits
//! for the requests in flight (retrying as usual), closes the sink and returns from
//! [`Driver::run`].
//!
//! # Healthcheck
//! With `healthcheck = true` (the default) [`Driver::run`] first calls [`Sink::healthcheck`]
//! (bounded by [`HEALTHCHECK_TIMEOUT`]), unless [`Driver::healthcheck`] was called already (the
//! agent's `--require-healthy` checks every sink before starting anything); a failure is logged as
//! an error — a refusal with the store's message and what to do — and the driver starts anyway:
//! its writes retry until the store is usable.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use sluice_pipelines::{Batch, Event};
//! use sluice_sink::driver::{Acker, Driver, DriverConfig, Outcome};
//! use sluice_sink::sinks::BlackholeConfig;
//! use sluice_sink::SinkContext;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let config = BlackholeConfig::default();
//! let sink = Box::new(config.build(&SinkContext::default()));
//! let (input, driver) = Driver::new("null", sink, DriverConfig::default());
//! let task = tokio::spawn(driver.run());
//!
//! let (tx, rx) = tokio::sync::oneshot::channel();
//! let batch = Arc::new(Batch::new(vec![Event::default(); 3]));
//! input
//!     .send(batch, Acker::new(move |outcome| { let _ = tx.send(outcome); }))
//!     .await
//!     .expect("the driver runs");
//! drop(input); // no more inputs: flush, close, return
//! task.await.unwrap().expect("the sink was not refused");
//! assert_eq!(rx.await.unwrap(), Outcome::Delivered);
//! assert_eq!(config.counter().events(), 3);
//! # });
//! ```
//!
//! [`Event::estimated_size`]: sluice_pipelines::Event::estimated_size

mod attempt;
mod batcher;
pub mod concurrency;
pub mod config;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sluice_pipelines::{Batch, Event};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::{Sink, SinkError};

pub use concurrency::{Controller, Signal};
pub use config::{BatchConfig, Concurrency, DriverConfig, RetryConfig};

use self::attempt::*;
use self::batcher::*;

/// How many inputs wait in a driver's channel.
pub const INPUT_CAPACITY: usize = 4;
/// The longest `Retry-After` the driver honours; longer ones are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How long the start-up healthcheck may take.
pub const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts to reach a store that cannot be reached.
pub const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Refused attempts in a row, once nobody waits for a fix, after which a driver stops.
pub const REFUSED_ATTEMPTS_WHEN_ENDED: u32 = 3;

/// Why a driver stopped before delivering everything it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The store refused the sink as configured and nobody waits for a fix (the input ended, or
    /// the run is finite): nothing would ever be written. The message is the store's, with what
    /// to do.
    #[error(
        "the store refuses the sink as configured: {message}; its events stay unacknowledged \
         (read again on the next start where the source keeps checkpoints)"
    )]
    Refused {
        /// What the store said.
        message: String,
    },
    /// Every sink handle was lost to panicking requests (a bug).
    #[error("the sink has no usable handle left (a request panicked)")]
    NoHandle,
}

/// A failed healthcheck.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// The store answered with an error.
    #[error("{0}")]
    Failed(SinkError),
    /// No answer within [`HEALTHCHECK_TIMEOUT`].
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// What became of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The store confirmed every event.
    Delivered,
    /// The store rejected some events for good; the others were delivered.
    Rejected {
        /// The rejected ranges of the input's events, each with the store's error.
        rejections: Vec<Rejection>,
    },
}

/// Events of an input that the store rejected for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Their indices in the input batch.
    pub events: Range<usize>,
    /// What the store said (a [`SinkError::Permanent`], or the last transient error once
    /// `retry.max_attempts` ran out).
    pub error: SinkError,
}

/// Called once with the [`Outcome`] of an input; built by the agent around its topic delivery.
pub struct Acker(Box<dyn FnOnce(Outcome) + Send>);

impl Acker {
    /// An acker that calls `ack`.
    pub fn new(ack: impl FnOnce(Outcome) + Send + 'static) -> Self {
        Acker(Box::new(ack))
    }

    /// Reports the outcome.
    pub fn ack(self, outcome: Outcome) {
        (self.0)(outcome);
    }
}

impl fmt::Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acker")
    }
}

/// The driver has stopped; the input is given back.
#[derive(Debug, thiserror::Error)]
#[error("the sink driver has stopped")]
pub struct InputClosed(pub Arc<Batch>, pub Acker);

/// The sending side of a driver: cloneable, bounded.
#[derive(Debug, Clone)]
pub struct DriverInput {
    tx: mpsc::Sender<Input>,
}

impl DriverInput {
    /// Hands an input to the driver, waiting while the driver is full (back-pressure).
    ///
    /// # Errors
    /// [`InputClosed`], with the input, when the driver has stopped.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before completing, the input was not taken (and its
    /// acker is dropped with it).
    pub async fn send(&self, batch: Arc<Batch>, acker: Acker) -> Result<(), InputClosed> {
        self.tx
            .send(Input { batch, acker })
            .await
            .map_err(|mpsc::error::SendError(input)| InputClosed(input.batch, input.acker))
    }
}

#[derive(Debug)]
struct Input {
    batch: Arc<Batch>,
    acker: Acker,
}

/// Counters of a running driver, readable from anywhere.
#[derive(Debug, Clone, Default)]
pub struct DriverStats(Arc<StatsInner>);

#[derive(Debug, Default)]
struct StatsInner {
    attempts: AtomicU64,
    retries: AtomicU64,
    delivered: AtomicU64,
    rejected: AtomicU64,
    bytes_written: AtomicU64,
    limit: AtomicUsize,
    in_flight: AtomicUsize,
}

impl DriverStats {
    /// Requests sent to the store, retries included.
    pub fn attempts(&self) -> u64 {
        self.0.attempts.load(Ordering::Relaxed)
    }
    /// Retries after transient failures.
    pub fn retries(&self) -> u64 {
        self.0.retries.load(Ordering::Relaxed)
    }
    /// Events the store confirmed.
    pub fn delivered(&self) -> u64 {
        self.0.delivered.load(Ordering::Relaxed)
    }
    /// Events the store rejected for good.
    pub fn rejected(&self) -> u64 {
        self.0.rejected.load(Ordering::Relaxed)
    }
    /// Encoded bytes the store accepted, as the sink reports them ([`Sink::bytes_written`]).
    pub fn bytes_written(&self) -> u64 {
        self.0.bytes_written.load(Ordering::Relaxed)
    }
    /// The current concurrency limit.
    pub fn limit(&self) -> usize {
        self.0.limit.load(Ordering::Relaxed)
    }
    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Relaxed)
    }
}

/// Runs one sink: see the [module docs](self).
pub struct Driver {
    name: Arc<str>,
    sink: Box<dyn Sink>,
    config: DriverConfig,
    rx: mpsc::Receiver<Input>,
    stats: DriverStats,
    /// Whether [`Driver::healthcheck`] ran already.
    checked: bool,
    /// Whether the run is finite, so a refused sink stops without waiting for its input to end.
    finite: bool,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for `sink` (named `name` in logs) and the input that feeds it. Nothing runs until
    /// [`Driver::run`] is polled (spawn it).
    pub fn new(
        name: impl Into<Arc<str>>,
        sink: Box<dyn Sink>,
        config: DriverConfig,
    ) -> (DriverInput, Driver) {
        let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
        let driver = Driver {
            name: name.into(),
            sink,
            config,
            rx,
            stats: DriverStats::default(),
            checked: false,
            finite: false,
        };
        (DriverInput { tx }, driver)
    }

    /// Says the run is finite (every source ends by itself): nobody waits for a refusing store to
    /// be fixed, so the driver stops after [`REFUSED_ATTEMPTS_WHEN_ENDED`] refusals in a row
    /// without waiting for its input to end — which, with the topic full behind a refusing
    /// sink, it never would.
    pub fn finite_run(&mut self) {
        self.finite = true;
    }

    /// Whether `healthcheck` is on in the sink's config.
    pub fn healthcheck_enabled(&self) -> bool {
        self.config.healthcheck
    }

    /// Checks the store now (bounded by [`HEALTHCHECK_TIMEOUT`]) and logs the result as
    /// [`Driver::run`] would; `run` then does not check again.
    ///
    /// # Errors
    /// What the healthcheck found, as a [`HealthError`].
    pub async fn healthcheck(&mut self) -> Result<(), HealthError> {
        self.checked = true;
        let result = match tokio::time::timeout(HEALTHCHECK_TIMEOUT, self.sink.healthcheck()).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(HealthError::Failed(error)),
            Err(_) => Err(HealthError::TimedOut(HEALTHCHECK_TIMEOUT)),
        };
        let name = &self.name;
        match &result {
            Ok(()) => tracing::debug!(sink = %name, "Healthcheck passed."),
            Err(HealthError::Failed(error @ SinkError::Refused(_))) => tracing::error!(
                sink = %name,
                error = %error.message(),
                "Healthcheck failed: the store refuses this sink as configured and will until \
                 the store or the config is fixed. Events wait in the topic meanwhile; a finite \
                 run stops with an error."
            ),
            Err(HealthError::Failed(error)) => tracing::error!(
                sink = %name,
                error = %error.message(),
                "Healthcheck failed; starting anyway, writes will retry."
            ),
            Err(HealthError::TimedOut(timeout)) => tracing::error!(
                sink = %name,
                timeout = ?timeout,
                "Healthcheck timed out; starting anyway, writes will retry."
            ),
        }
        result
    }

    /// The driver's counters.
    pub fn stats(&self) -> DriverStats {
        self.stats.clone()
    }

    /// Runs until every [`DriverInput`] is dropped and everything received is acknowledged, then
    /// closes the sink.
    ///
    /// # Errors
    /// [`DriverError::Refused`] when the store refused the sink and nobody waits for a fix (see
    /// the [module docs](self)): the inputs not yet acknowledged are dropped unacknowledged and
    /// the sink is closed.
    ///
    /// # Cancel safety
    /// Dropping the future (aborting its task) drops the ackers of unfinished inputs without
    /// calling them: their deliveries go back to the topic.
    pub async fn run(mut self) -> Result<(), DriverError> {
        if self.config.healthcheck && !self.checked {
            // Logged inside; the driver starts either way.
            let _ = self.healthcheck().await;
        }
        let Driver {
            name,
            sink,
            config,
            rx,
            stats,
            checked: _,
            finite,
        } = self;
        let handles = Handles::new(sink);
        let controller = Arc::new(Mutex::new(Controller::new(
            config.concurrency,
            Instant::now(),
        )));
        let mut state = State {
            shared: Arc::new(Shared {
                name,
                retry: config.retry.clone(),
                controller,
                stats,
                give_up_when_refused: tokio::sync::watch::channel(finite).0,
                health: Mutex::new(Health::new()),
            }),
            batcher: Batcher::new(&config.batch),
            ready: VecDeque::new(),
            inputs: HashMap::new(),
            next_id: 0,
            handles,
            in_flight: JoinSet::new(),
            running: HashMap::new(),
            refused: None,
        };
        let result = state.run(rx).await;
        // A refusal leaves requests in flight: stop them, and release what they held.
        state.in_flight.abort_all();
        while state.in_flight.join_next().await.is_some() {}
        state.inputs.clear();
        state.handles.close(&state.shared.name).await;
        result
    }
}

/// What request tasks share with the driver.
struct Shared {
    name: Arc<str>,
    retry: RetryConfig,
    controller: Arc<Mutex<Controller>>,
    stats: DriverStats,
    /// Set once nobody waits for a refusing store to be fixed (the input has ended, or the run
    /// is finite): refused requests stop the driver.
    give_up_when_refused: tokio::sync::watch::Sender<bool>,
    /// The store's state as the requests see it, for logging its changes.
    health: Mutex<Health>,
}

/// What the last attempts said about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// Requests succeed.
    Healthy,
    /// The store cannot be reached.
    Unreachable,
    /// The store answers but fails requests (busy, timing out).
    Failing,
    /// The store refuses the sink as configured.
    Refused,
}

impl Condition {
    fn of(error: &SinkError) -> Option<Condition> {
        match error {
            SinkError::Unreachable(_) => Some(Condition::Unreachable),
            SinkError::Refused(_) => Some(Condition::Refused),
            error if error.is_transient() => Some(Condition::Failing),
            _ => None,
        }
    }
}

/// The store's condition, since when, and how many attempts failed in it.
#[derive(Debug)]
struct Health {
    condition: Condition,
    since: Instant,
    failed: u64,
}

impl Health {
    fn new() -> Self {
        Health {
            condition: Condition::Healthy,
            since: Instant::now(),
            failed: 0,
        }
    }
}

impl Shared {
    fn controller(&self) -> std::sync::MutexGuard<'_, Controller> {
        // A panic while holding this lock cannot leave the counts torn in a harmful way.
        self.controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a failed attempt, logging when the store's condition changes.
    fn failed(&self, error: &SinkError) {
        let Some(condition) = Condition::of(error) else {
            return;
        };
        let mut health = self.health();
        if health.condition != condition {
            let failed_before = health.failed;
            let name = &self.name;
            let error = error.message();
            match condition {
                Condition::Unreachable => tracing::warn!(
                    sink = %name,
                    %error,
                    failed_before,
                    "Store cannot be reached; retrying at least every second until it can."
                ),
                Condition::Failing => tracing::warn!(
                    sink = %name,
                    %error,
                    failed_before,
                    "Store is failing requests; retrying with backoff."
                ),
                Condition::Refused => tracing::error!(
                    sink = %name,
                    %error,
                    failed_before,
                    "Store refuses this sink as configured; its events wait in the topic until \
                     the store or the config is fixed."
                ),
                Condition::Healthy => {}
            }
            if health.condition == Condition::Healthy {
                health.since = Instant::now();
                health.failed = 0;
            }
            health.condition = condition;
        }
        health.failed += 1;
    }

    /// Notes a successful attempt, logging the recovery of a store that was failing.
    fn succeeded(&self) {
        let mut health = self.health();
        if health.condition != Condition::Healthy {
            tracing::info!(
                sink = %self.name,
                failed_attempts = health.failed,
                after = ?health.since.elapsed(),
                "Store accepts requests again."
            );
            *health = Health::new();
        }
    }

    fn publish_limits(&self) {
        let controller = self.controller();
        let stats = &self.stats.0;
        stats.limit.store(controller.limit(), Ordering::Relaxed);
        stats
            .in_flight
            .store(controller.in_flight(), Ordering::Relaxed);
    }
}

/// The driver's loop state.
struct State {
    shared: Arc<Shared>,
    batcher: Batcher,
    /// Requests ready to send, waiting for a slot.
    ready: VecDeque<Request>,
    /// Inputs not yet acknowledged, by id.
    inputs: HashMap<u64, Tracked>,
    next_id: u64,
    handles: Handles,
    in_flight: JoinSet<Finished>,
    /// The inputs each running task holds parts of, to release them if the task panics.
    running: HashMap<tokio::task::Id, Vec<u64>>,
    /// A refusal after the input ended: the driver stops.
    refused: Option<SinkError>,
}

/// An input being delivered.
struct Tracked {
    acker: Acker,
    /// Parts of it not yet finished.
    parts_left: usize,
    rejections: Vec<Rejection>,
}

/// A slice of one input.
#[derive(Debug, Clone)]
struct Part {
    input: u64,
    batch: Arc<Batch>,
    range: Range<usize>,
}

impl Part {
    fn events(&self) -> &[Event] {
        self.batch
            .events()
            .get(self.range.clone())
            .unwrap_or_default()
    }
}

/// What one request carries.
#[derive(Debug)]
struct Request {
    parts: Vec<Part>,
    /// Whether this is a half of a rejected request (bisection in progress: logged once).
    bisected: bool,
}

impl Request {
    fn events(&self) -> usize {
        self.parts.iter().map(|part| part.range.len()).sum()
    }

    /// Splits the request into two halves by event count. Returns the halves and the input whose
    /// part was cut in two (it now has one more part to wait for), if one was.
    fn split(self) -> (Request, Request, Option<u64>) {
        let half = self.events() / 2;
        let mut left = Vec::new();
        let mut right = Vec::new();
        let mut taken = 0;
        let mut cut = None;
        for part in self.parts {
            let len = part.range.len();
            if taken >= half {
                right.push(part);
            } else if taken + len <= half {
                taken += len;
                left.push(part);
            } else {
                let at = part.range.start + (half - taken);
                taken = half;
                cut = Some(part.input);
                left.push(Part {
                    input: part.input,
                    batch: part.batch.clone(),
                    range: part.range.start..at,
                });
                right.push(Part {
                    input: part.input,
                    batch: part.batch,
                    range: at..part.range.end,
                });
            }
        }
        let half = |parts| Request {
            parts,
            bisected: true,
        };
        (half(left), half(right), cut)
    }
}

/// A request task's result.
struct Finished {
    handle: Box<dyn Sink>,
    request: Request,
    result: Result<(), Failure>,
}

/// Why a request did not succeed.
enum Failure {
    /// The store rejected it for good (bad data): worth bisecting.
    Rejected(SinkError),
    /// `retry.max_attempts` ran out on transient errors: the store, not the data, is at fault.
    GaveUp(SinkError),
    /// The store refused the sink as configured and nobody waits for a fix: the driver stops.
    Refused(SinkError),
}

impl State {
    async fn run(&mut self, mut rx: mpsc::Receiver<Input>) -> Result<(), DriverError> {
        let mut closed = false;
        loop {
            if let Some(error) = self.refused.take() {
                tracing::error!(
                    sink = %self.shared.name,
                    error = %error.message(),
                    "The store refuses this sink and no fix is awaited (finite run or shutdown); \
                     stopping. Its events stay unacknowledged."
                );
                return Err(DriverError::Refused {
                    message: error.message().to_owned(),
                });
            }
            self.dispatch();
            if closed && self.ready.is_empty() && self.in_flight.is_empty() {
                return Ok(());
            }
            if self.in_flight.is_empty() && !self.handles.can_take() {
                // A panicking request took the only handle of a sink that cannot fork.
                tracing::error!(
                    sink = %self.shared.name,
                    "The sink has no usable handle left; stopping. Unacknowledged inputs go back to the topic."
                );
                return Err(DriverError::NoHandle);
            }
            // Read inputs only while no full request waits for a slot: that is back-pressure.
            let accepting = !closed && self.ready.is_empty();
            let deadline = self.batcher.deadline;
            tokio::select! {
                biased;
                Some(joined) = self.in_flight.join_next_with_id() => self.finished(joined),
                input = rx.recv(), if accepting => match input {
                    Some(input) => self.accept(input),
                    None => {
                        closed = true;
                        self.shared.give_up_when_refused.send_replace(true);
                        self.batcher.flush(&mut self.ready);
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.batcher.flush(&mut self.ready);
                }
            }
        }
    }

    fn accept(&mut self, input: Input) {
        if input.batch.is_empty() {
            input.acker.ack(Outcome::Delivered);
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let parts = self.batcher.push(id, &input.batch, &mut self.ready);
        self.inputs.insert(
            id,
            Tracked {
                acker: input.acker,
                parts_left: parts,
                rejections: Vec::new(),
            },
        );
    }

    /// Starts ready requests while there are slots and handles.
    fn dispatch(&mut self) {
        while !self.ready.is_empty() && self.shared.controller().has_room() {
            let Some(handle) = self.handles.take() else {
                break;
            };
            let Some(request) = self.ready.pop_front() else {
                self.handles.put(handle);
                break;
            };
            self.shared.controller().started();
            self.shared.publish_limits();
            let inputs = request.parts.iter().map(|part| part.input).collect();
            let shared = Arc::clone(&self.shared);
            let task = self.in_flight.spawn(execute(shared, handle, request));
            self.running.insert(task.id(), inputs);
        }
    }

    fn finished(&mut self, joined: Result<(tokio::task::Id, Finished), tokio::task::JoinError>) {
        self.shared.controller().finished();
        self.shared.publish_limits();
        let finished = match joined {
            Ok((id, finished)) => {
                self.running.remove(&id);
                finished
            }
            Err(error) => {
                // The handle and request died with the task. Dropping the ackers of its inputs
                // hands those deliveries back to the topic (their other parts may still be
                // written: at-least-once).
                tracing::error!(sink = %self.shared.name, %error, "A sink request task failed.");
                for input in self.running.remove(&error.id()).unwrap_or_default() {
                    self.inputs.remove(&input);
                }
                return;
            }
        };
        self.handles.put(finished.handle);
        let request = finished.request;
        match finished.result {
            Ok(()) => {
                for part in request.parts {
                    self.shared
                        .stats
                        .0
                        .delivered
                        .fetch_add(part.range.len() as u64, Ordering::Relaxed);
                    self.part_done(&part, None);
                }
            }
            Err(Failure::Rejected(error)) if request.events() > 1 => {
                // One bad event fails a whole request (a COPY, an HTTP 400): bisect until the bad
                // events stand alone, so the good ones still reach the store.
                if !request.bisected {
                    tracing::warn!(
                        sink = %self.shared.name,
                        %error,
                        events = request.events(),
                        "Store rejected a request; splitting it to find the bad events."
                    );
                }
                let (left, right, cut) = request.split();
                if let Some(input) = cut
                    && let Some(tracked) = self.inputs.get_mut(&input)
                {
                    tracked.parts_left += 1;
                }
                self.ready.push_front(right);
                self.ready.push_front(left);
            }
            Err(Failure::Refused(error)) => {
                // The request's inputs stay unacknowledged; `run` stops at the top of its loop.
                for input in request.parts.iter().map(|part| part.input) {
                    self.inputs.remove(&input);
                }
                self.refused = Some(error);
            }
            Err(Failure::Rejected(error) | Failure::GaveUp(error)) => {
                let events: usize = request.parts.iter().map(|p| p.range.len()).sum();
                // The agent logs once per delivery; bisection can reject many single events.
                tracing::debug!(
                    sink = %self.shared.name,
                    %error,
                    events,
                    "Store rejected events."
                );
                for part in request.parts {
                    self.shared
                        .stats
                        .0
                        .rejected
                        .fetch_add(part.range.len() as u64, Ordering::Relaxed);
                    self.part_done(&part, Some(error.clone()));
                }
            }
        }
    }

    fn part_done(&mut self, part: &Part, error: Option<SinkError>) {
        let Some(tracked) = self.inputs.get_mut(&part.input) else {
            return;
        };
        if let Some(error) = error {
            tracked.rejections.push(Rejection {
                events: part.range.clone(),
                error,
            });
        }
        tracked.parts_left = tracked.parts_left.saturating_sub(1);
        if tracked.parts_left == 0
            && let Some(tracked) = self.inputs.remove(&part.input)
        {
            let outcome = if tracked.rejections.is_empty() {
                Outcome::Delivered
            } else {
                let mut rejections = tracked.rejections;
                rejections.sort_by_key(|r| r.events.start);
                Outcome::Rejected { rejections }
            };
            tracked.acker.ack(outcome);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
