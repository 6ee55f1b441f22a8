//! The log: segments in a directory, reads through bounded caches, retention (recovery on open
//! is in [`super::recovery`]).
//!
//! See the module doc of [`super`] for the format and the guarantees; this file holds the
//! [`Log`] handle that the topic's storage drives (synchronously, under the topic's lock: no
//! call here waits for a write or an fsync, only reads of old batches touch the disk).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use sluice_pipelines::Batch;
use sluice_pipelines::codec::binary;

use super::super::offset::{Offset, OffsetRange};
use super::super::storage::Stored;
use super::offsets::OffsetStore;
use super::record::RecordHeader;
use super::recovery::{count_quarantine, quarantine, recover};
use super::segment::{self, SegmentInfo};
use super::writer::{Command, Pending, Writer};
use super::{FsyncPolicy, LogConfig};

/// The directory, under the log's, where corrupt data is moved.
pub const QUARANTINE_DIR: &str = "quarantine";

/// The directory, under the log's, of subscription offsets.
pub const OFFSETS_DIR: &str = "offsets";

/// Most segment files kept open for reading.
const OPEN_FILES: usize = 8;

/// Milliseconds since the Unix epoch, now.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Why a log could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O error on a path.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The writer thread is gone (it panicked or the log is closing).
    #[error("the disk topic's writer thread stopped")]
    WriterGone,
}

pub(super) fn io_error(
    operation: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> LogError + use<> {
    let path = path.to_owned();
    move |source| LogError::Io {
        operation,
        path,
        source,
    }
}

#[derive(Debug, Default)]
pub(super) struct AtomicCounters {
    pub corrupt_records: AtomicU64,
    pub quarantined_bytes: AtomicU64,
    pub torn_tails: AtomicU64,
    pub torn_bytes: AtomicU64,
    pub segments_rolled: AtomicU64,
    pub segments_deleted: AtomicU64,
    pub write_errors: AtomicU64,
    pub fsyncs: AtomicU64,
    pub unencodable_batches: AtomicU64,
    pub disk_reads: AtomicU64,
    pub cache_hits: AtomicU64,
}

/// A snapshot of a log's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogCounters {
    /// Invalid records found in the middle of a segment (each quarantines the rest of it).
    pub corrupt_records: u64,
    /// Bytes moved into `quarantine/`.
    pub quarantined_bytes: u64,
    /// Torn tails cut off the active segment on open.
    pub torn_tails: u64,
    /// Bytes those tails held.
    pub torn_bytes: u64,
    /// Segments closed because they reached their size or age.
    pub segments_rolled: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Failed writes, fsyncs and offset writes (each retried).
    pub write_errors: u64,
    /// fsyncs of segment data.
    pub fsyncs: u64,
    /// Batches that could not be encoded (nested too deep, too large): served from memory
    /// only, lost on restart.
    pub unencodable_batches: u64,
    /// Batches read back from segment files.
    pub disk_reads: u64,
    /// Batches served from the in-memory caches.
    pub cache_hits: u64,
}

/// State shared by the log handle and its writer thread.
pub(super) struct Shared {
    pub dir: PathBuf,
    pub segments: Mutex<BTreeMap<u64, SegmentInfo>>,
    /// The offset after the last record written to the active segment's file.
    pub written_end: AtomicU64,
    /// See [`Log::durable_end`].
    pub durable_end: AtomicU64,
    /// Estimated bytes of batches appended but not yet written.
    pub pending_bytes: AtomicU64,
    pub notifier: Mutex<Option<DurableNotifier>>,
    pub counters: AtomicCounters,
    /// Set to make the writer stop at once, writing nothing more (a simulated crash).
    pub abort: AtomicBool,
}

/// What a retention pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Whole segments deleted.
    pub deleted_segments: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// The events they held.
    pub deleted_events: u64,
    /// The part of the deleted offsets at or after the lowest offset still needed: lost to
    /// whoever needed them.
    pub lost: Option<OffsetRange>,
}

impl RetentionOutcome {
    fn add(&mut self, info: &SegmentInfo, lowest_needed: u64) {
        self.deleted_segments += 1;
        self.deleted_bytes += info.len;
        self.deleted_events += info.end - info.base;
        if info.end > lowest_needed {
            let start = info.base.max(lowest_needed);
            let lost = match self.lost {
                Some(range) => OffsetRange::new(range.start.min(Offset(start)), Offset(info.end)),
                None => OffsetRange::new(Offset(start), Offset(info.end)),
            };
            self.lost = Some(lost);
        }
    }
}

/// Where the next sequential read continues.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    base: u64,
    position: u64,
    offset: u64,
}

/// A segmented, append-only log of batches in one directory.
pub struct Log {
    shared: Arc<Shared>,
    config: LogConfig,
    sender: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    end: u64,
    /// Recently appended batches, oldest first; holds every batch not yet written.
    recent: VecDeque<Stored>,
    recent_bytes: usize,
    /// Batches read from disk, by first offset, evicted oldest-read first.
    read_cache: BTreeMap<u64, Stored>,
    read_order: VecDeque<u64>,
    read_cache_bytes: usize,
    files: Vec<(u64, Arc<File>)>,
    cursor: Option<Cursor>,
    committed: HashMap<String, u64>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .field("end", &self.end)
            .finish()
    }
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it: a torn tail of the active segment is
    /// cut off, a corrupt record elsewhere quarantines the rest of its segment, a missing or
    /// damaged index is rebuilt. Starts the writer thread.
    ///
    /// # Errors
    /// [`LogError::Io`] when the directory or a segment cannot be read or repaired.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, LogError> {
        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        let counters = AtomicCounters::default();
        let segments = recover(dir, &config, &counters)?;
        let end = segments.values().next_back().map_or(0, |info| info.end);
        let offsets = OffsetStore::open(
            &dir.join(OFFSETS_DIR),
            config.offset_commit_interval,
            config.fsync != FsyncPolicy::Never,
        )
        .map_err(io_error("open offsets in", dir))?;
        let committed = offsets.all();
        let active = segments
            .values()
            .next_back()
            .cloned()
            .unwrap_or_else(|| SegmentInfo::new(end));
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            segments: Mutex::new(segments),
            written_end: AtomicU64::new(end),
            durable_end: AtomicU64::new(end),
            pending_bytes: AtomicU64::new(0),
            notifier: Mutex::new(None),
            counters,
            abort: AtomicBool::new(false),
        });
        shared
            .segments
            .lock()
            .entry(active.base)
            .or_insert_with(|| active.clone());
        let writer = Writer::new(shared.clone(), config.clone(), &active, offsets)
            .map_err(io_error("open active segment in", dir))?;
        let (sender, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("sluice-disk-log".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error("start the writer thread for", dir))?;
        Ok(Log {
            shared,
            config,
            sender: Some(sender),
            writer: Some(writer),
            end,
            recent: VecDeque::new(),
            recent_bytes: 0,
            read_cache: BTreeMap::new(),
            read_order: VecDeque::new(),
            read_cache_bytes: 0,
            files: Vec::new(),
            cursor: None,
            committed,
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends `batch` (non-empty), returning its offsets. Never waits: the batch is queued for
    /// the writer thread and kept in the recent cache until written.
    pub fn append(&mut self, batch: Arc<Batch>) -> OffsetRange {
        let range = OffsetRange::new(Offset(self.end), Offset(self.end + batch.len() as u64));
        if range.is_empty() {
            return range;
        }
        self.end = range.end.0;
        let bytes = batch.byte_size();
        self.shared
            .pending_bytes
            .fetch_add(bytes as u64, Ordering::AcqRel);
        let pending = Pending {
            first_offset: range.start.0,
            batch: batch.clone(),
        };
        if let Some(sender) = &self.sender
            && sender.send(Command::Append(pending)).is_err()
        {
            tracing::error!(dir = %self.shared.dir.display(), "The disk topic's writer thread stopped; batches stay in memory only");
        }
        self.recent.push_back(Stored { range, batch });
        self.recent_bytes += bytes;
        self.evict_recent();
        range
    }

    fn evict_recent(&mut self) {
        let written = self.shared.written_end.load(Ordering::Acquire);
        while self.recent_bytes > self.config.recent_cache_bytes {
            match self.recent.front() {
                Some(front) if front.range.end.0 <= written => {
                    self.recent_bytes -= front.batch.byte_size();
                    self.recent.pop_front();
                }
                _ => break,
            }
        }
    }

    /// The first offset on disk (equal to [`Log::end`] when empty).
    pub fn start(&self) -> Offset {
        let segments = self.shared.segments.lock();
        Offset(
            segments
                .values()
                .find(|info| info.len > 0)
                .map_or(self.end, |info| info.base),
        )
    }

    /// The offset the next appended event gets.
    pub fn end(&self) -> Offset {
        Offset(self.end)
    }

    /// The end of what is stored: with `fsync = always`, what is fsynced (survives a power
    /// failure); with `interval` and `never`, what is written to the segment file (survives a
    /// crash of the process, not of the machine).
    pub fn durable_end(&self) -> Offset {
        Offset(self.shared.durable_end.load(Ordering::Acquire))
    }

    /// The end of what is written to the segment file.
    pub fn written_end(&self) -> Offset {
        Offset(self.shared.written_end.load(Ordering::Acquire))
    }

    /// Estimated bytes of batches appended and not yet written: a producer should wait while
    /// this is above the configured bound.
    pub fn pending_bytes(&self) -> u64 {
        self.shared.pending_bytes.load(Ordering::Acquire)
    }

    /// Registers `notify`, called from the writer thread each time [`Log::durable_end`] moves.
    pub fn set_durable_notifier(&self, notify: DurableNotifier) {
        *self.shared.notifier.lock() = Some(notify);
    }

    /// Bytes of all segments.
    pub fn disk_bytes(&self) -> u64 {
        self.shared
            .segments
            .lock()
            .values()
            .map(|info| info.len)
            .sum()
    }

    /// How many segments the log has.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.lock().len()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> LogCounters {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LogCounters {
            corrupt_records: get(&c.corrupt_records),
            quarantined_bytes: get(&c.quarantined_bytes),
            torn_tails: get(&c.torn_tails),
            torn_bytes: get(&c.torn_bytes),
            segments_rolled: get(&c.segments_rolled),
            segments_deleted: get(&c.segments_deleted),
            write_errors: get(&c.write_errors),
            fsyncs: get(&c.fsyncs),
            unencodable_batches: get(&c.unencodable_batches),
            disk_reads: get(&c.disk_reads),
            cache_hits: get(&c.cache_hits),
        }
    }

    /// The committed offset of subscription `name`, clamped to the log's range.
    pub fn committed(&self, name: &str) -> Option<Offset> {
        let offset = *self.committed.get(name)?;
        Some(Offset(offset.clamp(self.start().0, self.end)))
    }

    /// Records subscription `name`'s committed offset; the writer persists it after the data
    /// before it (throttled: at most one write per subscription per `offset_commit_interval`).
    pub fn commit(&mut self, name: &str, offset: Offset) {
        if self.committed.get(name) == Some(&offset.0) {
            return;
        }
        self.committed.insert(name.to_owned(), offset.0);
        if let Some(sender) = &self.sender {
            let _ = sender.send(Command::Commit {
                name: name.to_owned(),
                offset: offset.0,
            });
        }
    }

    /// Waits until everything appended so far is written and fsynced and every committed
    /// offset is persisted. Blocks the calling thread: for shutdown and tests, not the
    /// runtime's hot path.
    ///
    /// # Errors
    /// The writer's I/O error, or [`LogError::WriterGone`].
    pub fn flush(&self) -> Result<(), LogError> {
        self.flush_handle().ok_or(LogError::WriterGone)?.flush()
    }

    /// A handle that flushes this log from another thread without borrowing it (the topic
    /// flushes at shutdown without holding its lock, which the writer's notifier takes).
    pub fn flush_handle(&self) -> Option<FlushHandle> {
        Some(FlushHandle {
            sender: self.sender.clone()?,
            dir: self.shared.dir.clone(),
        })
    }

    /// Makes the writer close the active segment and start a new one; waits for it.
    fn roll_active(&self) -> Result<(), LogError> {
        let Some(sender) = &self.sender else {
            return Err(LogError::WriterGone);
        };
        let (reply, answer) = mpsc::sync_channel(1);
        sender
            .send(Command::Roll(reply))
            .map_err(|_| LogError::WriterGone)?;
        answer.recv().map_err(|_| LogError::WriterGone)
    }

    /// Flushes and stops the writer thread.
    ///
    /// # Errors
    /// As [`Log::flush`].
    pub fn close(mut self) -> Result<(), LogError> {
        let result = self.flush();
        self.stop_writer();
        result
    }

    fn stop_writer(&mut self) {
        self.sender = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(dir = %self.shared.dir.display(), "The disk topic's writer thread panicked");
        }
    }

    /// Simulates a crash of the process: the writer stops at once, writing nothing more, and
    /// no offset is flushed. What was written stays in the files (as after a `kill -9`).
    #[cfg(test)]
    pub(super) fn crash(mut self) {
        self.shared.abort.store(true, Ordering::Release);
        self.stop_writer();
    }

    /// The batch holding `offset`, or, if `offset` lies in a gap left by quarantined data, the
    /// first batch after it. `None` at or past the end. Reads from the caches, else from disk.
    ///
    /// # Errors
    /// [`LogError::Io`] when a segment cannot be read (a corrupt record is not an error: it is
    /// quarantined and skipped).
    pub fn read(&mut self, offset: Offset) -> Result<Option<Stored>, LogError> {
        let offset = offset.0;
        if offset >= self.end {
            return Ok(None);
        }
        self.evict_recent();
        if let Some(stored) = find_recent(&self.recent, offset) {
            self.shared
                .counters
                .cache_hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Some(stored));
        }
        if let Some((_, stored)) = self.read_cache.range(..=offset).next_back()
            && stored.range.end.0 > offset
        {
            self.shared
                .counters
                .cache_hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Some(stored.clone()));
        }
        // Each pass either reads the batch or quarantines a bad record (which removes it).
        for _ in 0..64 {
            let Some(found) = self.locate(offset)? else {
                // Past what is on disk: the batch is in the recent cache (a gap lies before it).
                return Ok(self
                    .recent
                    .iter()
                    .find(|stored| stored.range.start.0 >= offset)
                    .cloned());
            };
            match found {
                Located::Record {
                    base,
                    position,
                    limit,
                    header,
                } => match self.read_record(base, position, limit, &header)? {
                    Some(stored) => return Ok(Some(stored)),
                    None => self.corrupt(base, position, header.first_offset)?,
                },
                Located::Bad {
                    base,
                    position,
                    expected,
                } => self.corrupt(base, position, expected)?,
            }
        }
        Ok(None)
    }

    fn file(&mut self, base: u64) -> Result<Arc<File>, LogError> {
        if let Some(at) = self.files.iter().position(|(b, _)| *b == base) {
            let entry = self.files.remove(at);
            let file = entry.1.clone();
            self.files.push(entry);
            return Ok(file);
        }
        let path = segment::log_path(&self.shared.dir, base);
        let file = Arc::new(File::open(&path).map_err(io_error("open", &path))?);
        if self.files.len() >= OPEN_FILES {
            self.files.remove(0);
        }
        self.files.push((base, file.clone()));
        Ok(file)
    }

    /// Finds the record holding `offset` (or the first after a gap) on disk.
    fn locate(&mut self, offset: u64) -> Result<Option<Located>, LogError> {
        let plan: Vec<(u64, u64, u64, u64)> = {
            let segments = self.shared.segments.lock();
            let from = segments
                .range(..=offset)
                .next_back()
                .map_or(0, |(base, _)| *base);
            segments
                .range(from..)
                .filter(|(_, info)| info.len > 0 && info.end > offset)
                .take(2)
                .map(|(base, info)| {
                    let mut position = 0;
                    let mut expected = info.base;
                    if let Some(entry) = info.index.floor_offset(offset) {
                        position = entry.position;
                        expected = entry.offset;
                    }
                    if let Some(cursor) = self.cursor
                        && cursor.base == *base
                        && cursor.offset <= offset
                        && cursor.position >= position
                    {
                        position = cursor.position;
                        expected = cursor.offset;
                    }
                    (*base, position, info.len, expected)
                })
                .collect()
        };
        for (base, mut position, limit, mut expected) in plan {
            let file = self.file(base)?;
            while position < limit {
                let header = match segment::read_header(&file, position, limit) {
                    Ok(header) => header,
                    Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                        return Ok(Some(Located::Bad {
                            base,
                            position,
                            expected,
                        }));
                    }
                    Err(error) => {
                        return Err(LogError::Io {
                            operation: "read",
                            path: segment::log_path(&self.shared.dir, base),
                            source: error,
                        });
                    }
                };
                if header.first_offset != expected {
                    return Ok(Some(Located::Bad {
                        base,
                        position,
                        expected,
                    }));
                }
                if header.end_offset() > offset {
                    return Ok(Some(Located::Record {
                        base,
                        position,
                        limit,
                        header,
                    }));
                }
                position += header.record_len();
                expected = header.end_offset();
            }
        }
        Ok(None)
    }

    /// Reads and decodes a located record; `None` when it turns out corrupt.
    fn read_record(
        &mut self,
        base: u64,
        position: u64,
        limit: u64,
        header: &RecordHeader,
    ) -> Result<Option<Stored>, LogError> {
        let file = self.file(base)?;
        let payload = match segment::read_record(&file, position, limit, header) {
            Ok((read, payload)) if read == *header => payload,
            Ok(_) => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => return Ok(None),
            Err(error) => {
                return Err(LogError::Io {
                    operation: "read",
                    path: segment::log_path(&self.shared.dir, base),
                    source: error,
                });
            }
        };
        let batch = match binary::decode(&payload) {
            Ok(batch) if batch.len() == header.events as usize => batch,
            Ok(_) => return Ok(None),
            Err(error) => {
                tracing::error!(dir = %self.shared.dir.display(), segment = base, position, %error, "A record's checksum matches but its batch does not decode");
                return Ok(None);
            }
        };
        self.shared
            .counters
            .disk_reads
            .fetch_add(1, Ordering::Relaxed);
        self.cursor = Some(Cursor {
            base,
            position: position + header.record_len(),
            offset: header.end_offset(),
        });
        let stored = Stored {
            range: OffsetRange::new(Offset(header.first_offset), Offset(header.end_offset())),
            batch: Arc::new(batch),
        };
        self.cache_read(&stored);
        Ok(Some(stored))
    }

    fn cache_read(&mut self, stored: &Stored) {
        let bytes = stored.batch.byte_size();
        if bytes > self.config.read_cache_bytes {
            return;
        }
        if self
            .read_cache
            .insert(stored.range.start.0, stored.clone())
            .is_none()
        {
            self.read_order.push_back(stored.range.start.0);
            self.read_cache_bytes += bytes;
        }
        while self.read_cache_bytes > self.config.read_cache_bytes {
            let Some(oldest) = self.read_order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.read_cache.remove(&oldest) {
                self.read_cache_bytes -= evicted.batch.byte_size();
            }
        }
    }

    /// Handles a bad record found while reading: the rest of its segment, from it, is
    /// quarantined (the active segment is rolled first, so the writer no longer appends to it).
    fn corrupt(&mut self, base: u64, position: u64, expected: u64) -> Result<(), LogError> {
        self.cursor = None;
        let active = self
            .shared
            .segments
            .lock()
            .keys()
            .next_back()
            .is_some_and(|last| *last == base);
        if active {
            // The writer appends to the active segment: close it first, then repair it like any
            // closed one.
            self.roll_active()?;
        }
        let moved = {
            let mut segments = self.shared.segments.lock();
            let Some(info) = segments.get_mut(&base) else {
                return Ok(());
            };
            let moved = quarantine(&self.shared.dir, base, position, info.len)?;
            info.len = position;
            info.end = expected;
            info.index.truncate_at(position);
            moved
        };
        self.files.retain(|(b, _)| *b != base);
        count_quarantine(&self.shared.counters, moved);
        tracing::error!(dir = %self.shared.dir.display(), segment = base, position, bytes = moved, "Corrupt record in a disk topic: the rest of its segment was moved to quarantine and is skipped");
        Ok(())
    }

    /// The first offset of the first batch appended at or after `time_ms` (ms since the epoch).
    ///
    /// # Errors
    /// [`LogError::Io`] when a segment cannot be read.
    pub fn offset_for_time(&mut self, time_ms: i64) -> Result<Option<Offset>, LogError> {
        let candidates: Vec<(u64, u64, u64)> = {
            let segments = self.shared.segments.lock();
            segments
                .values()
                .filter(|info| info.len > 0 && info.last_time_ms.is_some_and(|t| t >= time_ms))
                .map(|info| {
                    let position = info.index.floor_time(time_ms).map_or(0, |e| e.position);
                    (info.base, position, info.len)
                })
                .collect()
        };
        for (base, mut position, limit) in candidates {
            let file = self.file(base)?;
            while position < limit {
                let Ok(header) = segment::read_header(&file, position, limit) else {
                    break;
                };
                if header.time_ms >= time_ms {
                    return Ok(Some(Offset(header.first_offset)));
                }
                position += header.record_len();
            }
        }
        // Not yet written: the recent cache has no times, so answer with the written end.
        let written = self.written_end();
        Ok((written.0 < self.end).then_some(written))
    }

    fn delete_segment(&mut self, base: u64) -> Option<SegmentInfo> {
        let info = self.shared.segments.lock().remove(&base)?;
        self.files.retain(|(b, _)| *b != base);
        if self.cursor.is_some_and(|cursor| cursor.base == base) {
            self.cursor = None;
        }
        remove_if_exists(&segment::log_path(&self.shared.dir, base));
        remove_if_exists(&segment::index_path(&self.shared.dir, base));
        self.shared
            .counters
            .segments_deleted
            .fetch_add(1, Ordering::Relaxed);
        Some(info)
    }

    /// The closed segments (never the active one), oldest first.
    fn closed_segments(&self) -> Vec<SegmentInfo> {
        let segments = self.shared.segments.lock();
        let count = segments.len();
        segments
            .values()
            .take(count.saturating_sub(1))
            .cloned()
            .collect()
    }

    /// Deletes the closed segments that lie entirely before `offset`. Idempotent.
    pub fn delete_before(&mut self, offset: Offset) -> RetentionOutcome {
        let mut outcome = RetentionOutcome::default();
        for info in self.closed_segments() {
            if info.end > offset.0 {
                break;
            }
            if let Some(info) = self.delete_segment(info.base) {
                outcome.add(&info, offset.0);
            }
        }
        outcome
    }

    /// Applies retention: deletes closed segments whose newest record is older than
    /// `retention` (even if a subscription still needs them: `lost` says what it lost), then,
    /// while the log holds more than `max_bytes`, the oldest closed segments that lie entirely
    /// before `lowest_needed`. Returns what was deleted; the log may still be over `max_bytes`
    /// if the rest is needed (the topic then blocks or drops, as its policy says).
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        retention: Option<std::time::Duration>,
        max_bytes: Option<u64>,
        lowest_needed: Offset,
    ) -> RetentionOutcome {
        let mut outcome = RetentionOutcome::default();
        if let Some(retention) = retention {
            let horizon =
                now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            for info in self.closed_segments() {
                if info.last_time_ms.is_none_or(|t| t >= horizon) {
                    break;
                }
                if let Some(info) = self.delete_segment(info.base) {
                    outcome.add(&info, lowest_needed.0);
                }
            }
        }
        if let Some(max_bytes) = max_bytes {
            let mut total = self.disk_bytes();
            for info in self.closed_segments() {
                if total <= max_bytes || info.end > lowest_needed.0 {
                    break;
                }
                if let Some(info) = self.delete_segment(info.base) {
                    total -= info.len;
                    outcome.add(&info, lowest_needed.0);
                }
            }
        }
        outcome
    }

    /// Deletes the oldest closed segment whatever needs it (`when_full = "drop_oldest"`).
    pub fn drop_oldest_segment(&mut self, lowest_needed: Offset) -> RetentionOutcome {
        let mut outcome = RetentionOutcome::default();
        if let Some(info) = self.closed_segments().first()
            && let Some(info) = self.delete_segment(info.base)
        {
            outcome.add(&info, lowest_needed.0);
        }
        outcome
    }
}

/// A callback run on the writer thread with the new durable end whenever it moves.
pub type DurableNotifier = Arc<dyn Fn(Offset) + Send + Sync>;

/// Flushes a [`Log`] from elsewhere: see [`Log::flush_handle`].
#[derive(Debug)]
pub struct FlushHandle {
    sender: mpsc::Sender<Command>,
    dir: PathBuf,
}

impl FlushHandle {
    /// As [`Log::flush`].
    ///
    /// # Errors
    /// As [`Log::flush`].
    pub fn flush(&self) -> Result<(), LogError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.sender
            .send(Command::Flush(reply))
            .map_err(|_| LogError::WriterGone)?;
        answer
            .recv()
            .map_err(|_| LogError::WriterGone)?
            .map_err(io_error("flush", &self.dir))
    }
}

impl Drop for Log {
    /// Lets the writer finish what is queued (and fsync it, unless the policy is `never`), then
    /// joins it.
    fn drop(&mut self) {
        self.stop_writer();
    }
}

enum Located {
    Record {
        base: u64,
        position: u64,
        limit: u64,
        header: RecordHeader,
    },
    Bad {
        base: u64,
        position: u64,
        expected: u64,
    },
}

fn find_recent(recent: &VecDeque<Stored>, offset: u64) -> Option<Stored> {
    let index = recent.partition_point(|stored| stored.range.end.0 <= offset);
    let stored = recent.get(index)?;
    (stored.range.start.0 <= offset).then(|| stored.clone())
}

pub(super) fn remove_if_exists(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "Could not delete a disk topic file");
        }
    }
}
