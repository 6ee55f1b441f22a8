//! The tailer: which files exist, which content each one is, how far each was read, and whose
//! turn it is. Synchronous and single-threaded, so the model-based tests drive it step by step;
//! [`super::source`] runs it on a thread of its own and publishes what it reads.
//!
//! # Records
//!
//! A *record* is one file content: a head (the first `fingerprint_bytes` bytes, fewer while the
//! file is shorter), the inode it lives in (while it has one), the offset reading resumes at,
//! the offset known safe, and, while it is being read, an open [`FileReader`]. Records are
//! created when a file is first seen and carried through renames (the inode stays), and they
//! outlive their file for a while (24 hours after it was last seen), so a file that disappears
//! and comes back resumes where it was.
//!
//! # Recognising files ([`Tailer::scan`])
//!
//! Every scan lists the `include` patterns (minus `exclude`) and, for each file:
//! 1. *Known inode, open*: the same file, maybe under a new name (rename rotation). If it is now
//!    shorter than what was read, or its head changed, it was truncated or rewritten in place:
//!    its record becomes a *truncated orphan* (the old content, still resumable from its offset
//!    through a copy) and the inode gets a new record read from 0.
//! 2. *Known inode, closed*: reopened at its offset if its head still matches and it is not
//!    shorter than that; otherwise the record becomes a truncated orphan and the file is new.
//! 3. *Unknown inode* whose head matches an orphan: the copy that carries the orphan's content
//!    on (copytruncate's `access.log.1`, or a `.gz` made of a deleted or rotated file), read from
//!    the orphan's offset. A plain copy must be at least that long and may only continue a
//!    truncated orphan: a deleted file's content reappearing uncompressed under a new inode is
//!    more likely a new file with the same header than a copy. The one exception is a copy
//!    found by the first scan after its original's truncation was noticed, or within
//!    `rotate_wait` of it (counted from the start for a truncation found before a restart), that
//!    is *shorter* than the orphan's offset: logrotate
//!    fsyncs its copy before it truncates the original, and under load the lines written in
//!    between are read from the original. Such a copy holds nothing unread: the orphan's
//!    positions move back to its end and it goes on from there. The orphan keeps its identity
//!    and position whichever is noticed first, the truncation or the copy.
//! 4. *Unknown inode* whose whole head is the start of the head of a file being read under
//!    another inode: possibly a copy being made before the original is truncated. It waits
//!    (not read) until the original is truncated (then step 3 applies), or its content departs
//!    from the original's (a different file after all), or `rotate_wait` passes (the same
//!    content in two files: both are read). A gzip copy waits until its original is gone.
//! 5. Otherwise a new file, read from its beginning (or, found at the very first start with
//!    `read_from = "end"`, from its end).
//!
//! Empty files are left alone until they have bytes: an empty file has no identity yet.
//!
//! # Turns ([`Tailer::read_slice`])
//!
//! Open files take turns in a fixed order (oldest first), each reading up to its budget, until
//! the slice's byte budget is spent; the next slice starts after the last file served, so every
//! file is served however many there are and however busy one of them is. A file takes a turn
//! when it is *active*: a watcher event named it, a poll tick came, or its last turn did not
//! reach its end. A file created at a path whose previous file is still being finished waits for
//! it (logrotate: the old file is read to its end first). A source held back by its topic reads
//! oldest first instead (least recently modified first, each slice), so rotated files nearest to
//! deletion are read before the active one.
//!
//! # Closing
//!
//! At its end, a file that was deleted is closed at once (freeing its disk space); one renamed
//! to a name `include` does not match is closed once it has not grown for `rotate_wait`; a gzip
//! file is closed for good (`done`); with `follow = false` every file is. A closed file's last
//! line without delimiter and its held multiline event are emitted when it closes. At the bounds
//! on held files a file is *parked* (closed, opened again from `read` when it changes) or, when
//! deleted, let go: see [`super::holding`] and [`super::discovery`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sluice_pipelines::SourceId;

use super::checkpoint::{Checkpoint, Mark, Orphan, RecordId};
use super::config::{FileSettings, ReadFrom};
use super::fingerprint::{FileKey, Fingerprint, link_count, open_with_head, read_head, read_tail};
use super::holding::{Descriptors, Slot};
use super::reader::{FileReader, LineOptions};
use crate::metrics::{ComponentMetrics, Counter};
use crate::sources::lines::{BatchBuilder, LineEvents, ReadyBatch};

mod identify;
mod turn;

/// Bytes one file reads in one turn at most.
pub const TURN_BUDGET: u64 = 4 << 20;

/// How long a record whose file is no longer seen is kept.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How stale a record's `seen` time may get before a scan updates it, in seconds.
const SEEN_GRANULARITY: u64 = 600;

/// Most records kept; the least recently seen closed ones go first beyond it.
pub const MAX_RECORDS: usize = 20_000;

/// What one file's turn produced: batches to publish, each with the mark that becomes safe with
/// it, and a last mark when the resume offset moved without a batch (skipped lines, a file
/// closed).
#[derive(Debug)]
pub struct Turn {
    /// The batches in order, each with the resume offset just after its last line.
    pub batches: Vec<(ReadyBatch, Mark)>,
    /// The file's new resume offset, when it moved past the last batch's.
    pub mark: Option<Mark>,
}

/// The counters of a file source.
#[derive(Debug)]
pub(super) struct Counters {
    truncated_lines: Arc<Counter>,
    skipped_lines: Arc<Counter>,
    invalid_utf8: Arc<Counter>,
    files_opened: Arc<Counter>,
    files_closed: Arc<Counter>,
    truncations: Arc<Counter>,
    gzip_capped: Arc<Counter>,
    pub(super) files_parked: Arc<Counter>,
    pub(super) errors: Arc<ComponentMetrics>,
}

impl Counters {
    fn new(metrics: &Arc<ComponentMetrics>) -> Self {
        Counters {
            truncated_lines: metrics.counter("truncated_lines"),
            skipped_lines: metrics.counter("skipped_lines"),
            invalid_utf8: metrics.counter("invalid_utf8"),
            files_opened: metrics.counter("files_opened"),
            files_closed: metrics.counter("files_closed"),
            truncations: metrics.counter("truncations"),
            gzip_capped: metrics.counter("gzip_capped"),
            files_parked: metrics.counter("files_parked"),
            errors: metrics.clone(),
        }
    }
}

/// One file content (see the module doc).
#[derive(Debug)]
pub(super) struct Record {
    pub(super) key: Option<FileKey>,
    pub(super) orphan: Option<Orphan>,
    /// The head, once the file was opened in this process (empty for records only loaded from
    /// checkpoints: their fingerprint stands in).
    pub(super) head: Vec<u8>,
    pub(super) fingerprint: Fingerprint,
    pub(super) path: PathBuf,
    /// Where reading resumes: everything before was emitted.
    pub(super) read: u64,
    /// The resume offset last attached to a batch.
    marked: u64,
    /// Everything before it is safe.
    safe: u64,
    /// The checksum of the bytes before `read` (offset, checksum), when known.
    tail: Option<(u64, u64)>,
    /// The checksum of the bytes before `safe`, when known.
    safe_tail: Option<u64>,
    pub(super) gzip: bool,
    done: bool,
    /// When its file was last seen, in seconds since the Unix epoch.
    pub(super) seen: u64,
    pub(super) open: Option<OpenFile>,
    /// Closed for want of a descriptor while still at its name: opened again from `read` when
    /// it changes or a descriptor becomes free.
    pub(super) parked: bool,
    /// The size of a file that failed to read: it is not retried until its size changes.
    failed_at_size: Option<u64>,
    /// When its file was found truncated or rewritten in place (a truncated orphan), in this
    /// process: until the next scan, and for `rotate_wait` after it, a copy shorter than `read`
    /// still carries it on.
    pub(super) truncated_at: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct OpenFile {
    pub(super) reader: FileReader,
    /// The absolute path, to match watcher events.
    pub(super) abs: PathBuf,
    pub(super) active: bool,
    pub(super) at_eof: bool,
    last_growth: Instant,
    pub(super) unreachable_since: Option<Instant>,
    pub(super) deleted: bool,
    /// A file still being finished at this one's path; this one waits for it.
    wait_for: Option<RecordId>,
    /// Its share of the descriptor counts.
    pub(super) _slot: Slot,
    /// Its size and modification time when last looked at.
    pub(super) size: u64,
    pub(super) modified: SystemTime,
}

/// A file seen but not read yet: possibly a copy of a file being read.
#[derive(Debug)]
struct Waiting {
    since: Instant,
}

/// A file found by a scan.
pub(super) struct Found {
    pub(super) path: PathBuf,
    pub(super) metadata: std::fs::Metadata,
    pub(super) key: FileKey,
}

/// The tailer (see the module doc).
pub struct Tailer {
    pub(super) settings: FileSettings,
    options: LineOptions,
    source: SourceId,
    host: Option<String>,
    pub(super) records: BTreeMap<RecordId, Record>,
    next_id: u64,
    waiting: HashMap<FileKey, Waiting>,
    pub(super) by_abs: HashMap<PathBuf, RecordId>,
    /// The last record served; the next slice starts after it.
    cursor: Option<RecordId>,
    /// Whether `read_from` applies to files found by the next scan.
    first_start: bool,
    scanned: bool,
    /// When the scan before the current one ran: a truncation noticed since is one whose copy
    /// the current scan is the first to look for.
    pub(super) previous_scan: Option<Instant>,
    /// When the current (or last) scan ran.
    last_scan: Option<Instant>,
    builder: BatchBuilder,
    pub(super) counters: Counters,
    warned: HashSet<PathBuf>,
    pub(super) name: String,
    /// How many files may be open, and how many are.
    pub(super) descriptors: Descriptors,
    /// Whether a file could not be opened for want of a descriptor (a scan soon retries it).
    pub(super) starved: bool,
    /// Lines and bytes read but not published, per record, because the source is stopping.
    pub(super) unpublished: HashMap<RecordId, (u64, u64)>,
    /// The records with an open file: what every turn and check goes through, however many
    /// records of deleted files are kept.
    pub(super) open_ids: BTreeSet<RecordId>,
    /// Whether making room found no idle file to close since the last read (not worth looking
    /// again for every parked file of a scan).
    pub(super) no_idle_room: bool,
    /// The records by the start of their head, while a batch of new files is looked at.
    pub(super) index: Option<super::discovery::HeadIndex>,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer")
            .field("name", &self.name)
            .field("records", &self.records.len())
            .finish()
    }
}

impl Tailer {
    /// A tailer for `settings`, resuming from `checkpoints` (none for a first start), whose
    /// events carry `source` and count into `metrics`.
    pub fn new(
        settings: FileSettings,
        name: &str,
        source: SourceId,
        metrics: &Arc<ComponentMetrics>,
        checkpoints: Option<Vec<Checkpoint>>,
    ) -> Self {
        let host = settings
            .host_field
            .as_ref()
            .map(|_| gethostname::gethostname().to_string_lossy().into_owned());
        let options = LineOptions {
            format: settings.format.clone(),
            long_lines: settings.long_lines,
            multiline: settings.multiline.clone(),
        };
        let first_start = checkpoints.is_none();
        let started = Instant::now();
        let descriptors = Descriptors::new(settings.max_open_files);
        let mut tailer = Tailer {
            descriptors,
            starved: false,
            unpublished: HashMap::new(),
            open_ids: BTreeSet::new(),
            no_idle_room: false,
            index: None,
            settings,
            options,
            source,
            host,
            records: BTreeMap::new(),
            next_id: 0,
            waiting: HashMap::new(),
            by_abs: HashMap::new(),
            cursor: None,
            first_start,
            scanned: false,
            previous_scan: None,
            last_scan: None,
            builder: BatchBuilder::new(),
            counters: Counters::new(metrics),
            warned: HashSet::new(),
            name: name.to_owned(),
        };
        for checkpoint in checkpoints.unwrap_or_default() {
            if checkpoint.fingerprint.len == 0 {
                continue;
            }
            let key = match (checkpoint.dev, checkpoint.inode) {
                (Some(dev), Some(ino)) if checkpoint.orphan.is_none() => Some(FileKey { dev, ino }),
                _ => None,
            };
            let id = tailer.new_id();
            tailer.records.insert(
                id,
                Record {
                    key,
                    orphan: checkpoint
                        .orphan
                        .or(key.is_none().then_some(Orphan::Deleted)),
                    head: Vec::new(),
                    fingerprint: checkpoint.fingerprint,
                    path: PathBuf::from(checkpoint.path),
                    read: checkpoint.offset,
                    marked: checkpoint.offset,
                    safe: checkpoint.offset,
                    tail: checkpoint.tail.map(|tail| (checkpoint.offset, tail)),
                    safe_tail: checkpoint.tail,
                    gzip: checkpoint.gzip,
                    done: checkpoint.done,
                    seen: checkpoint.seen,
                    open: None,
                    failed_at_size: None,
                    parked: false,
                    // A truncation found before a restart counts from the start: its copy, if
                    // found now, was made before the restart.
                    truncated_at: (checkpoint.orphan == Some(Orphan::Truncated)).then_some(started),
                },
            );
        }
        tailer
    }

    fn new_id(&mut self) -> RecordId {
        self.next_id += 1;
        RecordId(self.next_id)
    }

    /// The directories to watch: each `include` pattern's base, and whether recursively.
    pub fn watch_dirs(&self) -> Vec<(PathBuf, bool)> {
        self.settings
            .include
            .iter()
            .map(|pattern| (pattern.base().to_path_buf(), pattern.is_recursive()))
            .collect()
    }

    /// How many files are open.
    pub fn open_files(&self) -> usize {
        self.open_ids.len()
    }

    /// The records with an open file.
    pub(super) fn open_records(&self) -> impl Iterator<Item = (RecordId, &Record, &OpenFile)> {
        self.open_ids.iter().filter_map(|id| {
            let record = self.records.get(id)?;
            Some((*id, record, record.open.as_ref()?))
        })
    }

    /// Whether every file is read and closed (the end of a `follow = false` run).
    pub fn all_done(&self) -> bool {
        self.scanned && self.open_files() == 0
    }

    /// Marks every open file active (a poll tick).
    pub fn activate_all(&mut self) {
        for id in &self.open_ids {
            if let Some(open) = self.records.get_mut(id).and_then(|r| r.open.as_mut()) {
                open.active = true;
            }
        }
    }

    /// Marks the open files at these absolute paths active; returns whether some path is not an
    /// open file's (a new file or directory: worth a scan).
    pub fn activate_paths(&mut self, paths: &[PathBuf]) -> bool {
        let mut unknown = false;
        for path in paths {
            match self.by_abs.get(path) {
                Some(id) => {
                    if let Some(open) = self.records.get_mut(id).and_then(|r| r.open.as_mut()) {
                        open.active = true;
                    }
                }
                None => unknown = true,
            }
        }
        unknown
    }

    /// The earliest time a held multiline event times out, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open_records()
            .filter_map(|(_, _, open)| open.reader.deadline())
            .min()
    }

    /// Records that `mark`'s lines are safe.
    pub fn acknowledge(&mut self, mark: Mark) {
        let Some(record) = self.records.get_mut(&mark.record) else {
            return;
        };
        // A mark past `read` is from before the content went on in a shorter copy (see
        // `clamp_read`): in that copy, everything up to its end is what is safe.
        let offset = mark.offset.min(record.read);
        if offset < record.safe {
            return;
        }
        record.safe = offset;
        record.safe_tail = match (record.tail, &record.open) {
            (Some((at, tail)), _) if at == offset => Some(tail),
            (_, Some(open)) => open
                .reader
                .file()
                .and_then(|file| read_tail(file, offset).ok().flatten()),
            _ => None,
        };
    }

    /// What to write to the checkpoint file now.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.records
            .values()
            // A record with an empty head has nothing read and nothing to identify it by.
            .filter(|record| record.fingerprint.len > 0)
            .map(|record| Checkpoint {
                fingerprint: record.fingerprint,
                offset: record.safe,
                tail: record.safe_tail,
                dev: record.key.map(|key| key.dev),
                inode: record.key.map(|key| key.ino),
                orphan: record.orphan,
                path: record.path.to_string_lossy().into_owned(),
                gzip: record.gzip,
                done: record.done && record.safe >= record.read,
                seen: record.seen,
            })
            .collect()
    }

    /// Drops records not seen for [`FORGET_AFTER`], and the least recently seen beyond
    /// [`MAX_RECORDS`].
    fn forget(&mut self, unix_now: u64) {
        let limit = unix_now.saturating_sub(FORGET_AFTER.as_secs());
        self.records
            .retain(|_, record| record.open.is_some() || record.seen >= limit);
        if self.records.len() > MAX_RECORDS {
            let mut closed: Vec<(u64, RecordId)> = self
                .records
                .iter()
                .filter(|(_, record)| record.open.is_none())
                .map(|(id, record)| (record.seen, *id))
                .collect();
            closed.sort();
            let excess = self.records.len() - MAX_RECORDS;
            for (_, id) in closed.into_iter().take(excess) {
                self.records.remove(&id);
            }
        }
    }

    fn warn_once(&mut self, path: &Path, error: &std::io::Error) {
        // Gone between being listed (or named by an event) and opened: nothing to read.
        if error.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        if self.warned.insert(path.to_path_buf()) {
            self.counters.errors.errors.add(1);
            tracing::warn!(
                source = %self.name,
                path = %path.display(),
                %error,
                "Cannot open file; will retry"
            );
        }
    }
}

/// Why a file is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// A gzip file read to its end.
    Done,
    /// The end of a file read with `follow = false`.
    Finished,
    /// Deleted and read to its end.
    Deleted,
    /// Renamed away from `include` and idle for `rotate_wait`.
    Away,
    /// Reading failed.
    Failed,
}

impl Close {
    fn reason(self) -> &'static str {
        match self {
            Close::Done => "gzip file read",
            Close::Finished => "end of file",
            Close::Deleted => "deleted",
            Close::Away => "renamed away and idle",
            Close::Failed => "read error",
        }
    }
}

/// The size and modification time of a reader's plain file (zero and now for gzip files, whose
/// content does not change).
fn reader_stat(reader: &FileReader) -> (u64, SystemTime) {
    reader
        .file()
        .and_then(|file| file.metadata().ok())
        .map_or((0, SystemTime::now()), |metadata| {
            (
                metadata.len(),
                metadata.modified().unwrap_or_else(|_| SystemTime::now()),
            )
        })
}

fn empty_turn() -> Turn {
    Turn {
        batches: Vec::new(),
        mark: None,
    }
}

/// Moves `record`'s positions back to `size`, the end of the shorter copy (`handle`) its content
/// goes on in: the lines between were read from the original, which no longer has them.
fn clamp_read(record: &mut Record, size: u64, handle: &File) {
    let tail = read_tail(handle, size).ok().flatten();
    record.read = size;
    record.marked = size;
    record.tail = tail.map(|tail| (size, tail));
    if record.safe >= size {
        record.safe = size;
        record.safe_tail = tail;
    }
}

/// Whether `handle` has the same bytes before `record.read` as the record's content had.
pub(super) fn same_tail(record: &Record, handle: &File) -> bool {
    match record.tail {
        Some((at, tail)) if at == record.read => read_tail(handle, at).ok().flatten() == Some(tail),
        // Unknown: only a file truncated in place leaves its content to a copy that often.
        _ => record.orphan == Some(Orphan::Truncated),
    }
}

/// The checksum of the bytes before `read` (kept from `current` when it is for that offset),
/// read from the open plain file.
fn tail_at(current: Option<(u64, u64)>, read: u64, reader: &FileReader) -> Option<(u64, u64)> {
    if current.is_some_and(|(at, _)| at == read) {
        return current;
    }
    reader
        .file()
        .and_then(|file| read_tail(file, read).ok().flatten())
        .map(|tail| (read, tail))
}

/// The absolute path of `path` with its directory's symbolic links resolved, as a watcher
/// reports it.
fn absolute(path: &Path) -> PathBuf {
    let name = path.file_name();
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(dir), name) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
