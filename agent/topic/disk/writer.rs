//! The writer thread: encodes appended batches into records and writes them with group commit.
//!
//! The topic appends under its lock and must never wait for a disk, so [`super::Log::append`]
//! only queues the batch on a channel. This thread takes everything queued (a *group*), encodes
//! it into one buffer, writes it with one `pwrite` (splitting only where a segment rolls), then
//! applies the fsync policy once for the group and publishes the new written and durable ends.
//! Subscription offsets are persisted here too, after the data they refer to was written and,
//! unless the policy is `never`, fsynced: data → fsync → offsets.
//!
//! A write error (disk full, I/O error) is logged and counted; the partial write is cut off and
//! the same group retried after a pause, so nothing queued is dropped while the disk recovers.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use sluice_pipelines::Batch;
use sluice_pipelines::codec::binary;

use super::log::{Shared, now_ms};
use super::offsets::OffsetStore;
use super::record::{self, RecordHeader};
use super::segment::{self, SegmentInfo};
use super::{FsyncPolicy, LogConfig};
use crate::topic::offset::Offset;

/// A batch queued for writing, with the offsets it was given.
pub(super) struct Pending {
    pub first_offset: u64,
    pub batch: Arc<Batch>,
}

/// What the log asks of its writer.
pub(super) enum Command {
    /// Write a batch.
    Append(Pending),
    /// Persist a subscription's committed offset (throttled).
    Commit { name: String, offset: u64 },
    /// Write and fsync everything queued before, persist every offset, then answer.
    Flush(std::sync::mpsc::SyncSender<io::Result<()>>),
    /// Close the active segment (if it holds anything) and start a new one, then answer.
    Roll(std::sync::mpsc::SyncSender<()>),
}

/// Pause before retrying a group whose write failed.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Most bytes encoded before a group is written.
const MAX_GROUP_BYTES: usize = 8 << 20;

pub(super) struct Writer {
    shared: Arc<Shared>,
    config: LogConfig,
    file: File,
    index_file: File,
    index_len: u64,
    base: u64,
    /// Bytes of the active segment written.
    len: u64,
    /// The offset after the last record written.
    end: u64,
    first_time_ms: Option<i64>,
    last_time_ms: i64,
    buffer: Vec<u8>,
    notes: Vec<(RecordHeader, u64)>,
    unsynced: bool,
    last_sync: Instant,
    offsets: OffsetStore,
}

/// Opens the active segment (creating it if needed) for writing.
pub(super) fn open_active(shared: &Shared, info: &SegmentInfo) -> io::Result<(File, File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(segment::log_path(&shared.dir, info.base))?;
    let index_path = segment::index_path(&shared.dir, info.base);
    // The index is rewritten from memory: it may have been rebuilt or cut during recovery.
    let index_bytes = info.index.encode_all();
    std::fs::write(&index_path, &index_bytes)?;
    let index_file = OpenOptions::new().write(true).open(&index_path)?;
    Ok((file, index_file, index_bytes.len() as u64))
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        config: LogConfig,
        active: &SegmentInfo,
        offsets: OffsetStore,
    ) -> io::Result<Writer> {
        let (file, index_file, index_len) = open_active(&shared, active)?;
        if config.fsync != FsyncPolicy::Never {
            // A new segment's name must survive a power failure as its data will.
            sluice_sink::fs::sync_dir(&shared.dir)?;
        }
        Ok(Writer {
            shared,
            config,
            file,
            index_file,
            index_len,
            base: active.base,
            len: active.len,
            end: active.end,
            first_time_ms: active.first_time_ms,
            last_time_ms: active.last_time_ms.unwrap_or(i64::MIN),
            buffer: Vec::new(),
            notes: Vec::new(),
            unsynced: false,
            last_sync: Instant::now(),
            offsets,
        })
    }

    /// Runs until the log is dropped (its sender closes) or aborted.
    pub(super) fn run(mut self, commands: Receiver<Command>) {
        let mut group: Vec<Pending> = Vec::new();
        loop {
            if self.shared.abort.load(Ordering::Acquire) {
                return;
            }
            let command = match self.next_deadline() {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match commands.recv_timeout(wait) {
                        Ok(command) => Some(command),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match commands.recv() {
                    Ok(command) => Some(command),
                    Err(_) => break,
                },
            };
            let mut command = command;
            let mut bytes = 0;
            // Group commit: take whatever else is queued, up to a bound.
            while let Some(Command::Append(pending)) = command {
                bytes += pending.batch.byte_size();
                group.push(pending);
                if bytes >= MAX_GROUP_BYTES {
                    command = None;
                    break;
                }
                command = commands.try_recv().ok();
            }
            if !group.is_empty() {
                self.write_group(&mut group);
            }
            if self.shared.abort.load(Ordering::Acquire) {
                return;
            }
            match command {
                Some(Command::Commit { name, offset }) => {
                    if let Err(error) = self.commit(&name, offset) {
                        self.offset_error(&error);
                    }
                }
                Some(Command::Flush(reply)) => {
                    let result = self.flush();
                    let _ = reply.send(result);
                }
                Some(Command::Roll(reply)) => {
                    if self.len > 0 {
                        self.roll_retrying();
                    }
                    let _ = reply.send(());
                }
                Some(Command::Append(_)) | None => {}
            }
            self.timers();
        }
        if let Err(error) = self.flush() {
            tracing::error!(dir = %self.shared.dir.display(), %error, "Could not flush a disk topic on close");
        }
    }

    /// When the next timed action (an interval fsync, a throttled offset write) is due.
    fn next_deadline(&self) -> Option<Instant> {
        let sync = match self.config.fsync {
            FsyncPolicy::Interval(interval) if self.unsynced => Some(self.last_sync + interval),
            _ => None,
        };
        let offsets = self.offsets.next_due();
        match (sync, offsets) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn timers(&mut self) {
        if let FsyncPolicy::Interval(interval) = self.config.fsync
            && self.unsynced
            && self.last_sync.elapsed() >= interval
            && let Err(error) = self.sync()
        {
            self.write_error("fsync", &error);
        }
        if self
            .offsets
            .next_due()
            .is_some_and(|due| due <= Instant::now())
        {
            let result = self
                .sync_for_offsets()
                .and_then(|()| self.offsets.flush_due(Instant::now()));
            if let Err(error) = result {
                self.offset_error(&error);
            }
        }
    }

    fn commit(&mut self, name: &str, offset: u64) -> io::Result<()> {
        let now = Instant::now();
        // Only a commit written now needs the data before it on disk first; a throttled one is
        // written (after a sync) when its time comes. Syncing on every commit would make
        // `interval` cost an fsync per acknowledged batch.
        if self.offsets.is_due(name, now) {
            self.sync_for_offsets()?;
        }
        self.offsets.commit(name, offset, now)
    }

    /// Data before offsets: fsync what was written unless the policy never fsyncs.
    fn sync_for_offsets(&mut self) -> io::Result<()> {
        if self.unsynced && self.config.fsync != FsyncPolicy::Never {
            self.sync()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.sync()?;
        }
        self.offsets.flush(Instant::now())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn write_error(&self, what: &'static str, error: &io::Error) {
        self.shared
            .counters
            .write_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(dir = %self.shared.dir.display(), operation = what, %error, "Disk topic write failed; retrying");
    }

    fn offset_error(&self, error: &io::Error) {
        self.shared
            .counters
            .write_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(dir = %self.shared.dir.display(), %error, "Could not persist a subscription offset; retrying");
    }

    /// Encodes and writes a group, rolling segments as needed, then applies the fsync policy.
    fn write_group(&mut self, group: &mut Vec<Pending>) {
        let mut pending_bytes = 0u64;
        for pending in group.drain(..) {
            pending_bytes += pending.batch.byte_size() as u64;
            if self.should_roll() {
                self.write_buffer_retrying();
                self.roll_retrying();
            }
            let at = record::start(&mut self.buffer);
            if let Err(error) = binary::encode(&pending.batch, &mut self.buffer) {
                self.buffer.truncate(at);
                self.skip_unstorable(&pending, &error.to_string());
                continue;
            }
            let time_ms = now_ms().max(self.last_time_ms);
            let events = u32::try_from(pending.batch.len()).unwrap_or(u32::MAX);
            match record::finish(&mut self.buffer, at, pending.first_offset, events, time_ms) {
                Some(header) => {
                    self.last_time_ms = time_ms;
                    self.first_time_ms.get_or_insert(time_ms);
                    self.notes.push((header, self.len + at as u64));
                }
                None => self.skip_unstorable(&pending, "batch larger than a record can hold"),
            }
            if self.buffer.len() >= MAX_GROUP_BYTES {
                self.write_buffer_retrying();
            }
        }
        self.write_buffer_retrying();
        self.shared
            .pending_bytes
            .fetch_sub(pending_bytes, Ordering::AcqRel);
        if self.config.fsync == FsyncPolicy::Always
            && self.unsynced
            && let Err(error) = self.sync()
        {
            // Not durable yet: the end stays where it was and the next group fsyncs again.
            self.write_error("fsync", &error);
            return;
        }
        if let FsyncPolicy::Interval(interval) = self.config.fsync
            && self.unsynced
            && self.last_sync.elapsed() >= interval
            && let Err(error) = self.sync()
        {
            self.write_error("fsync", &error);
        }
        self.publish_durable();
    }

    /// Leaves out a batch that cannot be stored. Its offsets become a gap: the segment is closed
    /// and the next one starts after them, so offsets stay contiguous within every segment.
    fn skip_unstorable(&mut self, pending: &Pending, reason: &str) {
        self.write_buffer_retrying();
        self.end = pending.first_offset + pending.batch.len() as u64;
        self.roll_retrying();
        self.shared.written_end.store(self.end, Ordering::Release);
        self.shared
            .counters
            .unencodable_batches
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            dir = %self.shared.dir.display(),
            first_offset = pending.first_offset,
            events = pending.batch.len(),
            reason,
            "A batch cannot be stored on disk; it is served from memory until evicted"
        );
    }

    /// Moves the durable end: with `always` to what is fsynced, otherwise to what is written.
    fn publish_durable(&self) {
        let durable = if self.config.fsync == FsyncPolicy::Always && self.unsynced {
            return;
        } else {
            self.end
        };
        let before = self.shared.durable_end.fetch_max(durable, Ordering::AcqRel);
        if durable > before {
            let notifier = self.shared.notifier.lock().clone();
            if let Some(notify) = notifier {
                notify(Offset(durable));
            }
        }
    }

    fn should_roll(&self) -> bool {
        let size = self.len + self.buffer.len() as u64;
        if size == 0 {
            return false;
        }
        if size >= self.config.segment_bytes {
            return true;
        }
        match (self.config.segment_age, self.first_time_ms) {
            (Some(age), Some(first)) => {
                now_ms().saturating_sub(first) >= i64::try_from(age.as_millis()).unwrap_or(i64::MAX)
            }
            _ => false,
        }
    }

    fn write_buffer_retrying(&mut self) {
        while let Err(error) = self.write_buffer() {
            self.write_error("write", &error);
            // Cut off whatever part was written; the whole buffer is written again.
            let _ = self.file.set_len(self.len);
            if self.shared.abort.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Writes the buffer at the end of the active segment, then its index entries, then tells
    /// the readers.
    fn write_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.buffer, self.len)?;
        self.unsynced = true;
        let mut index_bytes = Vec::new();
        let interval = self.config.index_interval_bytes;
        {
            let mut segments = self.shared.segments.lock();
            if let Some(info) = segments.get_mut(&self.base) {
                for (header, position) in &self.notes {
                    let before = info.index.entries().len();
                    info.note_record(header, *position, interval);
                    if info.index.entries().len() > before
                        && let Some(entry) = info.index.last()
                    {
                        entry.encode(&mut index_bytes);
                    }
                }
            }
        }
        if let Some((header, _)) = self.notes.last() {
            self.end = header.end_offset();
        }
        self.len += self.buffer.len() as u64;
        self.buffer.clear();
        self.notes.clear();
        self.shared.written_end.store(self.end, Ordering::Release);
        if !index_bytes.is_empty() {
            // The index is an accelerator, rebuilt from the segment if this fails.
            if self
                .index_file
                .write_all_at(&index_bytes, self.index_len)
                .is_ok()
            {
                self.index_len += index_bytes.len() as u64;
            }
        }
        Ok(())
    }

    fn roll_retrying(&mut self) {
        while let Err(error) = self.roll() {
            self.write_error("roll", &error);
            if self.shared.abort.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Closes the active segment (fsynced unless the policy never fsyncs) and starts a new one
    /// at the current end.
    fn roll(&mut self) -> io::Result<()> {
        if self.config.fsync != FsyncPolicy::Never && self.unsynced {
            self.sync()?;
            let _ = self.index_file.sync_data();
        }
        let info = SegmentInfo::new(self.end);
        let (file, index_file, index_len) = open_active(&self.shared, &info)?;
        if self.config.fsync != FsyncPolicy::Never {
            // The new file's name must survive a crash too.
            sluice_sink::fs::sync_dir(&self.shared.dir)?;
        }
        self.shared.segments.lock().insert(info.base, info);
        self.file = file;
        self.index_file = index_file;
        self.index_len = index_len;
        self.base = self.end;
        self.len = 0;
        self.first_time_ms = None;
        self.shared
            .counters
            .segments_rolled
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
