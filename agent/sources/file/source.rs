//! The running `file` source: the tailer on a thread of its own, publishing into the topic and
//! turning acknowledgements into checkpoints.
//!
//! [`FileSource::run`] moves a [`Tailer`] onto one blocking thread for the source's whole life:
//! file reads, fingerprints, scans and checkpoint writes are all blocking I/O, and one thread
//! that does only that needs no hop per read. The thread publishes each batch with
//! `Handle::block_on(producer.send(..))`, so a full topic stops the reading right there
//! (back-pressure: at most one slice of [`SLICE_BUDGET`] bytes is held outside the topic). It
//! waits for work on a bounded channel fed by the watcher, by shutdown, and by timeouts (poll
//! ticks, multiline timeouts, checkpoint writes).
//!
//! Back-pressure stops reading, never noticing: while a send waits for room in the topic, the
//! thread wakes for every watcher event (a doorbell the watcher rings) and every tick, and does
//! its housekeeping — new files are looked at and opened, scans run, the bounds on held files
//! are applied, safe positions are checkpointed — so a file created, rotated and deleted while
//! the source is held back is held open, and read when the topic has room again. A source that
//! had to wait is *held back* until it has caught up, and meanwhile reads its files oldest first
//! (see [`Tailer::read_slice`]).
//!
//! Safe positions come from the topic: each published batch's end offset and the marks of its
//! turn go into [`Acks`]; the thread releases the marks that
//! [`safe_offset`](crate::topic::Producer::safe_offset) has passed and writes the checkpoint file
//! at most every `checkpoint_interval`. On shutdown (or at the end of a `follow = false` run) it
//! stops reading, drops its producer so the topic can drain, waits until what it published is
//! safe — writing checkpoints as it goes — and writes a last checkpoint. If the topology gives up
//! waiting and drops the source's future, the thread writes what is safe so far and exits.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::task::Poll;
use std::time::{Duration, Instant};

use sluice_pipelines::Batch;
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};

use super::checkpoint::{Acks, CheckpointStore, Mark};
use super::config::{FileSettings, WatchMode};
use super::glob::PathPattern;
use super::tailer::{Tailer, Turn};
use super::watcher::{Change, Wake, WatchError, Watcher};
use crate::metrics::ComponentMetrics;
use crate::shutdown::Shutdown;
use crate::sources::lines::ReadyBatch;
use crate::sources::{Source, SourceContext, SourceError, SourceFuture};
use crate::topic::{Offset, Producer, Published};

/// Bytes read between two publishing rounds at most, across all files: the memory held outside
/// the topic, and the granularity of fairness between files.
pub const SLICE_BUDGET: u64 = 4 << 20;

/// How often everything is checked when a watcher works (a safety net), at least.
pub const WATCH_TICK: Duration = Duration::from_secs(1);

/// How often a source that has not yet saved any acknowledged progress looks whether it has.
const FIRST_CHECKPOINT_POLL: Duration = Duration::from_millis(50);

/// Least time between two scans asked for by watcher events.
pub const MIN_RESCAN_GAP: Duration = Duration::from_millis(20);

/// Wake-ups queued at most; beyond, the watcher sets an overflow flag instead.
pub const WAKE_QUEUE: usize = 1024;

/// How long a source waiting for room in its topic goes without housekeeping at most.
pub const HELD_TICK: Duration = Duration::from_millis(250);

/// Least time between two looks at the paths watcher events named: each look goes through
/// every record once, so a burst of new files is looked at in batches.
pub const DISCOVER_GAP: Duration = Duration::from_millis(40);

/// How soon a scan retries files that waited for a descriptor.
pub const STARVED_RESCAN: Duration = Duration::from_millis(200);

/// The `file` source.
#[derive(Debug)]
pub struct FileSource {
    settings: FileSettings,
}

impl FileSource {
    /// A source with validated settings.
    pub fn new(settings: FileSettings) -> Self {
        FileSource { settings }
    }

    /// Whether the source ends by itself (`follow = false`).
    pub fn is_finite(&self) -> bool {
        !self.settings.follow
    }
}

impl Source for FileSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(self.settings, ctx))
    }
}

/// Stops the thread at once when the source's future is dropped.
struct HardStop {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
    wake: SyncSender<Wake>,
}

impl Drop for HardStop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        let _ = self.wake.try_send(Wake::Stop);
    }
}

async fn run(settings: FileSettings, ctx: SourceContext) -> Result<(), SourceError> {
    let SourceContext {
        name,
        id,
        output,
        shutdown,
        data_dir,
        metrics,
        dead_letter: _,
    } = ctx;
    let (wake_tx, wake_rx) = sync_channel(WAKE_QUEUE);
    let stop = HardStop {
        flag: Arc::new(AtomicBool::new(false)),
        notify: Arc::new(Notify::new()),
        wake: wake_tx.clone(),
    };
    let waker = tokio::spawn({
        let shutdown = shutdown.clone();
        let wake = wake_tx.clone();
        async move {
            shutdown.wait().await;
            let _ = wake.try_send(Wake::Stop);
        }
    });
    let mut store = CheckpointStore::new(&data_dir, &name);
    let checkpoints = if settings.ignore_checkpoints {
        None
    } else {
        match store.load() {
            Ok(files) if files.is_empty() && !store.path().exists() => None,
            Ok(files) => Some(files),
            Err(error) => {
                metrics.errors.add(1);
                tracing::error!(
                    source = %name,
                    %error,
                    "Cannot read checkpoints; starting as if there were none"
                );
                None
            }
        }
    };
    let tailer = Tailer::new(settings.clone(), &name, id, &metrics, checkpoints);
    let shell = Shell {
        safe: output.safe_offset(),
        producer: Some(output),
        tailer,
        store,
        acks: Acks::new(),
        shutdown,
        hard_stop: stop.flag.clone(),
        hard_notify: stop.notify.clone(),
        wake_rx,
        wake_tx,
        overflow: Arc::new(AtomicBool::new(false)),
        handle: Handle::current(),
        metrics,
        follow: settings.follow,
        watch: settings.watch,
        poll_interval: settings.poll_interval,
        checkpoint_interval: settings.checkpoint_interval,
        watcher: None,
        last_checkpoint: Instant::now(),
        progress_saved: false,
        acked_since_save: false,
        include: settings.include.clone(),
        name,
        doorbell: Arc::new(Notify::new()),
        schedule: Schedule {
            next_tick: Instant::now(),
            rescan_at: None,
            last_scan: Instant::now(),
            last_discover: Instant::now(),
        },
        discover: Vec::new(),
        held_back: false,
    };
    let result = tokio::task::spawn_blocking(move || shell.run()).await;
    waker.abort();
    drop(stop);
    result.map_err(|error| SourceError::Thread {
        kind: "file",
        error,
    })?
}

/// The tailer's thread.
struct Shell {
    tailer: Tailer,
    store: CheckpointStore,
    acks: Acks,
    producer: Option<Producer>,
    safe: watch::Receiver<Offset>,
    shutdown: Shutdown,
    hard_stop: Arc<AtomicBool>,
    hard_notify: Arc<Notify>,
    wake_rx: Receiver<Wake>,
    wake_tx: SyncSender<Wake>,
    overflow: Arc<AtomicBool>,
    handle: Handle,
    metrics: Arc<ComponentMetrics>,
    follow: bool,
    watch: WatchMode,
    poll_interval: Duration,
    checkpoint_interval: Duration,
    watcher: Option<Watcher>,
    last_checkpoint: Instant,
    /// Whether a checkpoint with acknowledged progress was written yet. Until then the first
    /// acknowledgement is saved at once rather than a whole `checkpoint_interval` after the
    /// start: in a crash loop of runs shorter than the interval, each run still saves its
    /// progress instead of every restart re-reading an ever longer tail.
    progress_saved: bool,
    /// Whether acknowledgements moved a position since the last checkpoint write.
    acked_since_save: bool,
    /// The `include` patterns, named in warnings.
    include: Vec<PathPattern>,
    name: String,
    /// Rung by the watcher for every event, to wake a thread waiting for room in the topic.
    doorbell: Arc<Notify>,
    schedule: Schedule,
    /// Paths a watcher named that no open file has: looked at alone.
    discover: Vec<PathBuf>,
    /// Whether a send had to wait for room since the source last caught up.
    held_back: bool,
}

/// What the loop has to do besides reading.
struct Schedule {
    next_tick: Instant,
    rescan_at: Option<Instant>,
    last_scan: Instant,
    last_discover: Instant,
}

impl Shell {
    fn run(mut self) -> Result<(), SourceError> {
        let now = Instant::now();
        self.tailer.scan(now);
        self.tailer.enforce_bounds(now);
        self.metrics.set_state(self.tailer.held_state());
        if self.follow && self.watch == WatchMode::Auto {
            self.start_watcher();
        }
        if self.tailer.open_files() == 0 {
            let missing = self.missing_dirs();
            if missing.is_empty() {
                tracing::warn!(source = %self.name, include = %self.include_text(), "No file to read yet");
            } else {
                tracing::warn!(source = %self.name, include = %self.include_text(),
                    missing_directories = %missing, "No file to read yet: a directory in include does not exist");
            }
        }
        self.schedule = Schedule {
            next_tick: now + self.tick(),
            rescan_at: None,
            last_scan: now,
            last_discover: now,
        };
        loop {
            if self.stopping() {
                break;
            }
            let now = Instant::now();
            let starved = self.housekeeping(now);
            let (turns, progressed) = self.tailer.read_slice(now, SLICE_BUDGET, self.held_back);
            let mut turns = turns.into_iter();
            while let Some(turn) = turns.next() {
                if !self.publish(turn) {
                    for rest in turns {
                        self.unpublished(rest.batches);
                    }
                    return self.finish();
                }
            }
            self.release_safe();
            self.checkpoint_if_due(false);
            if !self.follow && !starved && (self.tailer.all_done() || !progressed) {
                break;
            }
            if progressed {
                continue;
            }
            // Caught up: nothing left to read.
            self.held_back = false;
            let deadline = self.next_housekeeping().min(
                self.tailer
                    .next_deadline()
                    .unwrap_or(self.schedule.next_tick),
            );
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.wake_rx.recv_timeout(timeout) {
                Ok(wake) => self.on_wake(wake),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
        self.finish()
    }

    /// Everything besides reading: watcher events, ticks, looking at new files, scans and the
    /// bounds on held files. Returns whether files wait for a descriptor.
    fn housekeeping(&mut self, now: Instant) -> bool {
        let mut handled = 0;
        while handled < WAKE_QUEUE {
            let Ok(wake) = self.wake_rx.try_recv() else {
                break;
            };
            self.on_wake(wake);
            handled += 1;
        }
        if self.overflow.swap(false, Ordering::Relaxed) {
            self.tailer.activate_all();
            self.schedule.rescan_at = Some(now);
        }
        if self.follow && now >= self.schedule.next_tick {
            self.tailer.activate_all();
            self.schedule.rescan_at = Some(now);
            self.schedule.next_tick = now + self.tick();
            self.metrics.set_state(self.tailer.held_state());
        }
        if !self.discover.is_empty() && now >= self.schedule.last_discover + DISCOVER_GAP {
            self.schedule.last_discover = now;
            let paths = std::mem::take(&mut self.discover);
            if self.tailer.discover(&paths, now) {
                self.rescan_soon(now);
            }
        }
        let starved = self.tailer.is_starved();
        if starved {
            let at = now + STARVED_RESCAN;
            self.schedule.rescan_at = Some(self.schedule.rescan_at.map_or(at, |t| t.min(at)));
        }
        if (self.follow || starved) && self.schedule.rescan_at.is_some_and(|at| at <= now) {
            self.tailer.scan(now);
            self.tailer.enforce_bounds(now);
            if let Some(watcher) = &mut self.watcher
                && let Err(error) = watcher.ensure(&self.tailer.watch_dirs())
            {
                self.stop_watching(&error);
            }
            self.schedule.rescan_at = None;
            self.schedule.last_scan = now;
        }
        starved
    }

    /// When housekeeping is due next (a tick, a scan, a checkpoint write).
    fn next_housekeeping(&self) -> Instant {
        let mut deadline = self.schedule.next_tick;
        if let Some(at) = self.schedule.rescan_at {
            deadline = deadline.min(at);
        }
        if !self.discover.is_empty() {
            deadline = deadline.min(self.schedule.last_discover + DISCOVER_GAP);
        }
        if !self.acks.is_empty() {
            deadline = deadline.min(if self.progress_saved {
                self.last_checkpoint + self.checkpoint_interval
            } else {
                // Look for the first acknowledgement soon, to save it at once.
                Instant::now() + FIRST_CHECKPOINT_POLL
            });
        }
        deadline
    }

    /// Asks for a full scan, no sooner than [`MIN_RESCAN_GAP`] after the last one.
    fn rescan_soon(&mut self, now: Instant) {
        let at = now.max(self.schedule.last_scan + MIN_RESCAN_GAP);
        self.schedule.rescan_at = Some(self.schedule.rescan_at.map_or(at, |t| t.min(at)));
    }

    /// The `include` patterns, for messages.
    fn include_text(&self) -> String {
        let patterns: Vec<&str> = self.include.iter().map(PathPattern::text).collect();
        patterns.join(", ")
    }

    /// The base directories of `include` that do not exist, for messages (empty when all do).
    fn missing_dirs(&self) -> String {
        let missing: Vec<String> = self
            .include
            .iter()
            .map(PathPattern::base)
            .filter(|base| !base.is_dir())
            .map(|base| base.display().to_string())
            .collect();
        missing.join(", ")
    }

    fn tick(&self) -> Duration {
        if self.watcher.is_some() {
            WATCH_TICK.max(self.poll_interval)
        } else {
            self.poll_interval
        }
    }

    fn stopping(&self) -> bool {
        self.shutdown.is_triggered() || self.hard_stop.load(Ordering::SeqCst)
    }

    fn start_watcher(&mut self) {
        let started = Watcher::new(
            self.wake_tx.clone(),
            self.overflow.clone(),
            self.doorbell.clone(),
        )
        .map_err(WatchError::from)
        .and_then(|mut watcher| {
            watcher.ensure(&self.tailer.watch_dirs())?;
            Ok(watcher)
        });
        match started {
            Ok(watcher) => self.watcher = Some(watcher),
            Err(error) => self.stop_watching(&error),
        }
    }

    /// Polls from now on: quietly for a network file system, as a failure otherwise.
    fn stop_watching(&mut self, error: &WatchError) {
        match error {
            WatchError::NetworkFileSystem { .. } => {
                self.watcher = None;
                tracing::info!(
                    source = %self.name,
                    reason = %error,
                    poll_interval = ?self.poll_interval,
                    "Polling for changes instead of watching"
                );
            }
            WatchError::Notify(error) => self.fall_back_to_polling(&error.to_string()),
        }
    }

    fn fall_back_to_polling(&mut self, error: &str) {
        self.watcher = None;
        self.metrics.errors.add(1);
        tracing::warn!(
            source = %self.name,
            %error,
            poll_interval = ?self.poll_interval,
            "File watcher unavailable; polling instead"
        );
    }

    fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Changed { paths, change } => {
                let unknown = self.tailer.activate_paths(&paths);
                match change {
                    // A new file (maybe at the name of a deleted one still open), or a write to
                    // one not open (parked, or not seen yet): look at it alone.
                    Change::Created => self.discover.extend(paths),
                    Change::Data => {
                        if unknown {
                            self.discover.extend(paths);
                        }
                    }
                    // An open file removed takes a turn, in which it finds itself deleted; a
                    // file not open needs nothing; a watched directory removed, a scan.
                    Change::Removed | Change::Other => {
                        let mut was_dir = false;
                        if let Some(watcher) = &mut self.watcher {
                            for path in &paths {
                                was_dir |= watcher.removed(path);
                            }
                        }
                        if change == Change::Other
                            || (unknown && (was_dir || self.watcher.is_none()))
                        {
                            self.rescan_soon(Instant::now());
                        }
                    }
                }
            }
            Wake::Failed(error) => {
                if self.watcher.is_some() {
                    self.fall_back_to_polling(&error);
                    self.schedule.next_tick = Instant::now();
                }
            }
            Wake::Stop => {}
        }
    }

    /// Publishes a turn's batches, then queues its mark. Returns `false` when stopping
    /// interrupted it (the rest is not published; it is read again after a restart).
    fn publish(&mut self, turn: Turn) -> bool {
        let mut batches = turn.batches.into_iter();
        while let Some((ready, mark)) = batches.next() {
            let events = ready.batch.len() as u64;
            let (raw_bytes, record) = (ready.raw_bytes, mark.record);
            let Some(producer) = self.producer.take() else {
                return false;
            };
            let published = self.send(&producer, ready.batch);
            self.producer = Some(producer);
            match published {
                Some(Published::Stored(range)) => self.acks.published(range.end),
                Some(Published::Dropped) => {}
                None => {
                    self.tailer.unpublished(record, events, raw_bytes);
                    self.unpublished(batches);
                    return false;
                }
            }
            self.acks.push(mark);
            self.metrics.events_out.add(events);
            self.metrics.bytes_out.add(ready.raw_bytes);
        }
        if let Some(mark) = turn.mark {
            self.acks.push(mark);
        }
        true
    }

    /// Tells the tailer what was read but will not be published (stopping).
    fn unpublished(&mut self, batches: impl IntoIterator<Item = (ReadyBatch, Mark)>) {
        for (ready, mark) in batches {
            self.tailer
                .unpublished(mark.record, ready.batch.len() as u64, ready.raw_bytes);
        }
    }

    /// Sends `batch`; while it waits for room, does the housekeeping (see the module doc).
    /// Returns `None` when stopping interrupted it.
    fn send(&mut self, producer: &Producer, batch: Batch) -> Option<Published> {
        let handle = self.handle.clone();
        let mut send = std::pin::pin!(producer.send(batch));
        // Most sends find room at once.
        if let Poll::Ready(published) = handle.block_on(std::future::poll_fn(|cx| {
            Poll::Ready(send.as_mut().poll(cx))
        })) {
            return Some(published);
        }
        self.held_back = true;
        loop {
            let deadline = self.next_housekeeping().min(Instant::now() + HELD_TICK);
            let (shutdown, hard_notify, hard_stop, doorbell) = (
                &self.shutdown,
                &self.hard_notify,
                &self.hard_stop,
                &self.doorbell,
            );
            let outcome = handle.block_on(async {
                let stopped = hard_notify.notified();
                tokio::pin!(stopped);
                stopped.as_mut().enable();
                if hard_stop.load(Ordering::SeqCst) {
                    return Some(None);
                }
                tokio::select! {
                    biased;
                    published = &mut send => Some(Some(published)),
                    () = shutdown.wait() => Some(None),
                    () = stopped => Some(None),
                    () = doorbell.notified() => None,
                    () = tokio::time::sleep_until(deadline.into()) => None,
                }
            });
            if let Some(published) = outcome {
                return published;
            }
            self.housekeeping(Instant::now());
            self.release_safe();
            self.checkpoint_if_due(false);
        }
    }

    /// Applies the marks the topic's safe offset has passed.
    fn release_safe(&mut self) {
        let safe = *self.safe.borrow();
        for mark in self.acks.release(safe) {
            self.tailer.acknowledge(mark);
            self.acked_since_save = true;
        }
    }

    /// Writes the checkpoint file if `checkpoint_interval` passed since the last write (or
    /// `force`); a write that would change nothing is skipped.
    fn checkpoint_if_due(&mut self, force: bool) {
        let first_progress = !self.progress_saved && self.acked_since_save;
        if !force && !first_progress && self.last_checkpoint.elapsed() < self.checkpoint_interval {
            return;
        }
        self.progress_saved |= self.acked_since_save;
        self.acked_since_save = false;
        self.last_checkpoint = Instant::now();
        if let Err(error) = self.store.save(self.tailer.checkpoints()) {
            self.metrics.errors.add(1);
            tracing::error!(source = %self.name, %error, "Cannot write checkpoints");
        }
    }

    /// Stops reading, lets the topic drain, waits until what was published is safe (or the
    /// future is dropped), and writes the last checkpoint.
    fn finish(mut self) -> Result<(), SourceError> {
        if !self.follow && !self.stopping() && self.metrics.counter("files_opened").get() == 0 {
            tracing::warn!(source = %self.name, include = %self.include_text(),
                missing_directories = %self.missing_dirs(),
                "Read nothing: no file matched include (follow = false, so the source is done)");
        }
        // Nothing more is read: what deleted files still hold is lost with the process.
        self.tailer.account_unread_deleted();
        self.metrics.set_state(self.tailer.held_state());
        self.producer = None;
        self.watcher = None;
        loop {
            self.release_safe();
            if self.acks.is_empty() || self.hard_stop.load(Ordering::SeqCst) {
                break;
            }
            if self.safe.has_changed().is_err() {
                // The topic is gone altogether: nothing will become safe any more.
                self.release_safe();
                break;
            }
            self.checkpoint_if_due(false);
            std::thread::sleep(Duration::from_millis(5));
        }
        self.checkpoint_if_due(true);
        Ok(())
    }
}
