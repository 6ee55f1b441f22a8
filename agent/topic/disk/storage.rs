//! [`DiskStorage`]: the topic's [`Storage`] interface over a disk [`Log`].
//!
//! The topic sees a log of batches from a *trim point* to the end, as with memory storage:
//! `pop_front` moves the trim point past a batch every subscription is done with, but the bytes
//! stay on disk until retention deletes their segment (so a subscription can be rewound into
//! them). Everything is stored as soon as the writer wrote it, so [`Storage::durable_end`] is the
//! log's, and subscription offsets are persisted through the log.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_pipelines::Batch;

use super::LogConfig;
use super::log::{FlushHandle, Log, LogCounters, LogError, RetentionOutcome, now_ms};
use crate::topic::offset::{Offset, OffsetRange};
use crate::topic::storage::{Storage, Stored};

/// Settings of a disk topic's storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSettings {
    /// How the log writes, rolls and caches.
    pub log: LogConfig,
    /// Segments whose newest record is older than this are deleted.
    pub retention: Option<Duration>,
    /// Most bytes on disk; the oldest segments no subscription needs are deleted past it.
    pub max_bytes: u64,
    /// Most estimated bytes queued for the writer before producers are held back.
    pub max_pending_bytes: u64,
}

impl Default for DiskSettings {
    fn default() -> Self {
        DiskSettings {
            log: LogConfig::default(),
            retention: None,
            max_bytes: 1 << 30,
            max_pending_bytes: 64 << 20,
        }
    }
}

/// A snapshot of a disk topic's files, for `/topics` and `sluice topics list`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DiskStats {
    /// The topic's directory.
    pub dir: String,
    /// Bytes of segment files.
    pub disk_bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// The end of what is stored (per the fsync policy).
    pub durable_end: Offset,
    /// Recovery, quarantine and cache counters.
    pub log: LogCounters,
}

/// A topic's batches in a disk log.
#[derive(Debug)]
pub struct DiskStorage {
    log: Log,
    settings: DiskSettings,
    /// The topic's first retained offset: batches before it were trimmed.
    start: Offset,
    /// Estimated bytes from `start` to the end (approximated by the bytes on disk after a
    /// restart, when the batches are not in memory).
    bytes: u64,
    /// The last read that found nothing from an offset before the end (quarantined data up to
    /// the end): that offset, and the end then.
    gap_to_end: Option<(Offset, Offset)>,
}

impl DiskStorage {
    /// Opens (recovering) the log in `dir`.
    ///
    /// # Errors
    /// As [`Log::open`].
    pub fn open(dir: &Path, settings: DiskSettings) -> Result<DiskStorage, LogError> {
        let log = Log::open(dir, settings.log.clone())?;
        let start = log.start();
        let bytes = log.disk_bytes();
        Ok(DiskStorage {
            log,
            settings,
            start,
            bytes,
            gap_to_end: None,
        })
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The log, mutable (retention, reads by time, flushing).
    pub fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    /// Deletes the segments that retention lets go: by age, and by size as far as they lie
    /// before the trim point.
    pub fn apply_retention(&mut self) -> RetentionOutcome {
        let outcome = self.log.apply_retention(
            now_ms(),
            self.settings.retention,
            Some(self.settings.max_bytes),
            self.start,
        );
        if let Some(lost) = outcome.lost {
            // Age retention took batches the topic still held.
            self.start = self.start.max(lost.end);
        }
        outcome
    }

    /// Flushes and closes the log.
    ///
    /// # Errors
    /// As [`Log::close`].
    pub fn close(self) -> Result<(), LogError> {
        self.log.close()
    }

    fn read(&mut self, start: Offset) -> Option<Stored> {
        match self.log.read(start) {
            Ok(None) => {
                let end = self.log.end();
                if start < end {
                    self.gap_to_end = Some((start, end));
                }
                None
            }
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(dir = %self.log.dir().display(), offset = start.0, %error, "Could not read a disk topic");
                None
            }
        }
    }
}

impl Storage for DiskStorage {
    fn append(&mut self, batch: Arc<Batch>) -> OffsetRange {
        self.bytes += batch.byte_size() as u64;
        self.log.append(batch)
    }

    fn get(&mut self, start: Offset) -> Option<Stored> {
        if start < self.start {
            return None;
        }
        self.read(start)
    }

    fn missing(&mut self, start: Offset) -> Option<Offset> {
        let (gap_start, resume) = self.gap_to_end.take()?;
        if gap_start != start {
            return None;
        }
        if (gap_start..resume).contains(&self.start) {
            // Nothing is stored there: the trim point moves over it.
            self.start = resume;
        }
        Some(resume)
    }

    fn front_range(&mut self) -> Option<OffsetRange> {
        let start = self.start;
        self.read(start).map(|stored| stored.range)
    }

    fn pop_front(&mut self) -> Option<OffsetRange> {
        let start = self.start;
        let stored = self.read(start)?;
        self.start = stored.range.end;
        self.bytes = self.bytes.saturating_sub(stored.batch.byte_size() as u64);
        Some(stored.range)
    }

    fn start(&self) -> Offset {
        self.start
    }

    fn end(&self) -> Offset {
        self.log.end()
    }

    fn retained_events(&self) -> u64 {
        self.log.end().0 - self.start.0
    }

    fn retained_bytes(&self) -> u64 {
        if self.retained_events() == 0 {
            0
        } else {
            self.bytes
        }
    }

    fn durable_end(&self) -> Option<Offset> {
        Some(self.log.durable_end())
    }

    fn write_backlog_full(&self) -> bool {
        self.log.pending_bytes() > self.settings.max_pending_bytes
    }

    fn committed(&self, name: &str) -> Option<Offset> {
        self.log.committed(name)
    }

    fn commit(&mut self, name: &str, offset: Offset) {
        self.log.commit(name, offset);
    }

    fn set_durable_notifier(&mut self, notify: Box<dyn Fn(Offset) + Send + Sync>) {
        self.log.set_durable_notifier(Arc::from(notify));
    }

    fn offset_for_time(&mut self, time_ms: i64) -> Option<Offset> {
        match self.log.offset_for_time(time_ms) {
            Ok(offset) => Some(offset.unwrap_or_else(|| self.log.end())),
            Err(error) => {
                tracing::error!(dir = %self.log.dir().display(), %error, "Could not look up a time in a disk topic");
                None
            }
        }
    }

    fn maintain(&mut self) -> Option<OffsetRange> {
        let before = self.start;
        let outcome = self.apply_retention();
        if outcome.deleted_segments > 0 {
            tracing::info!(
                dir = %self.log.dir().display(),
                segments = outcome.deleted_segments,
                "Retention deleted old segments of a disk topic"
            );
        }
        (self.start > before).then(|| OffsetRange::new(before, self.start))
    }

    fn flush_handle(&self) -> Option<FlushHandle> {
        self.log.flush_handle()
    }

    fn describe(&self) -> Option<DiskStats> {
        Some(DiskStats {
            dir: self.log.dir().display().to_string(),
            disk_bytes: self.log.disk_bytes(),
            segments: self.log.segment_count(),
            durable_end: self.log.durable_end(),
            log: self.log.counters(),
        })
    }
}
