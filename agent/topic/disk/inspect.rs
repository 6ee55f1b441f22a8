//! Read-only access to a disk log, for `sluice topics`: list, read and verify without changing a
//! byte.
//!
//! [`Log::open`](super::Log::open) repairs what it finds (cuts a torn tail, quarantines corrupt
//! records, rewrites indexes) and starts a writer thread: right for the agent, wrong for a tool
//! an operator points at a directory to see what is there — possibly while an agent appends to
//! it. [`LogReader`] and [`verify`] only open files for reading. They report what `Log::open`
//! would repair as [`Damage`] and leave the repair to the agent's next start.
//!
//! Reading while an agent appends is safe: records are only ever appended, so a reader sees a
//! prefix of the log, and a record still being written at the end of the active segment looks
//! like a torn tail (reported with `torn_tail`, never as corruption).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_pipelines::codec::binary;

use super::index::Index;
use super::log::{LogError, OFFSETS_DIR, QUARANTINE_DIR};
use super::offsets::{self, OffsetStore};
use super::segment::{self, BadRecord, SegmentInfo};
use crate::topic::offset::{Offset, OffsetRange};
use crate::topic::storage::Stored;

/// Bytes between the index entries a reader's scan adds to an index it rebuilds in memory (the
/// log's default), so its reads seek as fast as the agent's.
const INDEX_INTERVAL_BYTES: u64 = 64 << 10;

/// A record that is not valid, found without repairing it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// The first offset of the segment it is in (its file name).
    pub segment: u64,
    /// Its byte position in the segment.
    pub position: u64,
    /// Bytes from it to the end of the segment file: what the agent cuts off or quarantines.
    pub bytes: u64,
    /// What is wrong with it.
    pub problem: String,
    /// Whether it is a torn tail: invalid bytes reaching the end of the last segment, as a
    /// crash leaves them (or a write still in progress, when an agent is running). The agent
    /// cuts them off on its next start; nothing acknowledged is in them.
    pub torn_tail: bool,
}

impl Damage {
    fn new(base: u64, bad: &BadRecord, file_len: u64, last: bool) -> Damage {
        Damage {
            segment: base,
            position: bad.position,
            bytes: file_len - bad.position,
            problem: bad.problem.to_string(),
            torn_tail: last && bad.reaches_end,
        }
    }
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LogError + use<> {
    let path = path.to_owned();
    move |source| LogError::Io {
        operation,
        path,
        source,
    }
}

/// One segment as found: what its valid records cover, and its file's length.
#[derive(Debug)]
struct SegmentView {
    info: SegmentInfo,
    file_len: u64,
}

/// The segment files of `dir`, by base offset, oldest first.
fn segment_bases(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        if let Some((base, true)) = entry.file_name().to_str().and_then(segment::parse_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// A disk log opened for reading only: nothing in its directory is created, repaired or moved.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    segments: BTreeMap<u64, SegmentView>,
    damage: Vec<Damage>,
}

impl LogReader {
    /// Opens the log in `dir` (which must exist), checking each segment from its last index
    /// entry to its end as the agent does on start — not every record: see [`verify`].
    ///
    /// # Errors
    /// [`LogError::Io`] when the directory or a segment cannot be read.
    pub fn open(dir: &Path) -> Result<LogReader, LogError> {
        let bases = segment_bases(dir)?;
        let mut segments = BTreeMap::new();
        let mut damage = Vec::new();
        let mut previous_end: Option<u64> = None;
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let path = segment::log_path(dir, base);
            let file = File::open(&path).map_err(io_error("open", &path))?;
            let file_len = file.metadata().map_err(io_error("stat", &path))?.len();
            if previous_end.is_some_and(|end| base < end) {
                damage.push(Damage {
                    segment: base,
                    position: 0,
                    bytes: file_len,
                    problem: format!(
                        "segment overlaps the one before it (which ends at offset {})",
                        previous_end.unwrap_or_default()
                    ),
                    torn_tail: false,
                });
                continue;
            }
            let index = Index::load(&segment::index_path(dir, base), file_len)
                .map_err(io_error("read index of", &path))?;
            let (info, bad) =
                segment::scan_indexed(&file, base, index, file_len, INDEX_INTERVAL_BYTES)
                    .map_err(io_error("scan", &path))?;
            if let Some(bad) = bad {
                damage.push(Damage::new(base, &bad, file_len, last));
            }
            previous_end = Some(info.end);
            segments.insert(base, SegmentView { info, file_len });
        }
        Ok(LogReader {
            dir: dir.to_owned(),
            segments,
            damage,
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first offset on disk (equal to [`LogReader::end`] when empty).
    pub fn start(&self) -> Offset {
        self.segments
            .values()
            .find(|view| view.info.len > 0)
            .map_or_else(|| self.end(), |view| Offset(view.info.base))
    }

    /// The offset after the last valid record.
    pub fn end(&self) -> Offset {
        Offset(
            self.segments
                .values()
                .next_back()
                .map_or(0, |view| view.info.end),
        )
    }

    /// Bytes of all segment files (invalid bytes included).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|view| view.file_len).sum()
    }

    /// How many segment files hold valid records or are the last one.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// When the oldest record on disk was appended (ms since the Unix epoch).
    pub fn first_time_ms(&self) -> Option<i64> {
        self.segments
            .values()
            .find_map(|view| view.info.first_time_ms)
    }

    /// When the newest record was appended (ms since the Unix epoch).
    pub fn last_time_ms(&self) -> Option<i64> {
        self.segments
            .values()
            .rev()
            .find_map(|view| view.info.last_time_ms)
    }

    /// The invalid records found on open (the agent repairs them on its next start).
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// The batch holding `offset` or, if `offset` lies before the log or in a gap, the first
    /// batch after it. `None` at or past the end.
    ///
    /// # Errors
    /// [`LogError::Io`] when a segment cannot be read, or (`InvalidData`) when the record is
    /// corrupt: the reader reports it rather than skipping it.
    pub fn read(&self, offset: Offset) -> Result<Option<Stored>, LogError> {
        let from = self
            .segments
            .range(..=offset.0)
            .next_back()
            .map_or(0, |(base, _)| *base);
        let candidates = self
            .segments
            .range(from..)
            .map(|(_, view)| &view.info)
            .filter(|info| info.len > 0 && info.end > offset.0);
        for info in candidates {
            let path = segment::log_path(&self.dir, info.base);
            let file = File::open(&path).map_err(io_error("open", &path))?;
            let (mut position, mut expected) = info
                .index
                .floor_offset(offset.0)
                .map_or((0, info.base), |entry| (entry.position, entry.offset));
            while position < info.len {
                let header = segment::read_header(&file, position, info.len)
                    .map_err(|error| read_error(&path, position, error))?;
                if header.first_offset != expected {
                    return Err(corrupt(
                        &path,
                        position,
                        format!(
                            "record at offset {}, expected {expected}",
                            header.first_offset
                        ),
                    ));
                }
                if header.end_offset() > offset.0 {
                    let (read, payload) = segment::read_record(&file, position, info.len, &header)
                        .map_err(|error| read_error(&path, position, error))?;
                    let batch = binary::decode(&payload)
                        .map_err(|error| corrupt(&path, position, error.to_string()))?;
                    if batch.len() != read.events as usize {
                        return Err(corrupt(
                            &path,
                            position,
                            format!("{} events decoded, {} recorded", batch.len(), read.events),
                        ));
                    }
                    return Ok(Some(Stored {
                        range: OffsetRange::new(
                            Offset(read.first_offset),
                            Offset(read.end_offset()),
                        ),
                        batch: Arc::new(batch),
                    }));
                }
                position += header.record_len();
                expected = header.end_offset();
            }
        }
        Ok(None)
    }

    /// The first offset of the first batch appended at or after `time_ms` (ms since the epoch);
    /// `None` when every batch is older.
    ///
    /// # Errors
    /// [`LogError::Io`] when a segment cannot be read.
    pub fn offset_for_time(&self, time_ms: i64) -> Result<Option<Offset>, LogError> {
        let candidates = self
            .segments
            .values()
            .map(|view| &view.info)
            .filter(|info| info.len > 0 && info.last_time_ms.is_some_and(|t| t >= time_ms));
        for info in candidates {
            let path = segment::log_path(&self.dir, info.base);
            let file = File::open(&path).map_err(io_error("open", &path))?;
            let mut position = info.index.floor_time(time_ms).map_or(0, |e| e.position);
            while position < info.len {
                let header = segment::read_header(&file, position, info.len)
                    .map_err(|error| read_error(&path, position, error))?;
                if header.time_ms >= time_ms {
                    return Ok(Some(Offset(header.first_offset)));
                }
                position += header.record_len();
            }
        }
        Ok(None)
    }
}

/// A read error: a record that is not valid is reported as corrupt, with its position.
fn read_error(path: &Path, position: u64, error: io::Error) -> LogError {
    if error.kind() == io::ErrorKind::InvalidData {
        corrupt(path, position, error.to_string())
    } else {
        io_error("read", path)(error)
    }
}

fn corrupt(path: &Path, position: u64, problem: String) -> LogError {
    LogError::Io {
        operation: "read",
        path: path.to_owned(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt record at byte {position}: {problem}"),
        ),
    }
}

/// The committed offsets of the log's subscriptions, by name, as persisted (not clamped to the
/// log). Unreadable offset files are left out, as the agent ignores them.
///
/// # Errors
/// [`LogError::Io`] when the offsets directory cannot be listed.
pub fn committed_offsets(dir: &Path) -> Result<BTreeMap<String, Offset>, LogError> {
    let offsets_dir = dir.join(OFFSETS_DIR);
    let read = offsets::read_all(&offsets_dir).map_err(io_error("list", &offsets_dir))?;
    Ok(read
        .into_iter()
        .map(|(name, offset)| (name, Offset(offset)))
        .collect())
}

/// Persists `offset` as subscription `name`'s committed offset, atomically and fsynced, as the
/// agent does. Only while no agent has the log open: a running agent keeps its offsets in
/// memory and would write over it.
///
/// # Errors
/// [`LogError::Io`] when the file cannot be written.
pub fn set_committed(dir: &Path, name: &str, offset: Offset) -> Result<(), LogError> {
    let offsets_dir = dir.join(OFFSETS_DIR);
    let mut store = OffsetStore::open(&offsets_dir, Duration::ZERO, true)
        .map_err(io_error("open offsets in", dir))?;
    store
        .commit(name, offset.0, Instant::now())
        .map_err(io_error("write offset in", &offsets_dir))
}

/// What recovery moved aside into `quarantine/` over the log's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    /// Files in `quarantine/`.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What is in the log's `quarantine/` directory.
///
/// # Errors
/// [`LogError::Io`] when it exists but cannot be listed.
pub fn quarantined(dir: &Path) -> Result<Quarantined, LogError> {
    let path = dir.join(QUARANTINE_DIR);
    let entries = match fs::read_dir(&path) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(Quarantined::default());
        }
        Err(error) => return Err(io_error("list", &path)(error)),
    };
    let mut found = Quarantined::default();
    for entry in entries {
        let entry = entry.map_err(io_error("list", &path))?;
        if let Ok(metadata) = entry.metadata()
            && metadata.is_file()
        {
            found.files += 1;
            found.bytes += metadata.len();
        }
    }
    Ok(found)
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// Segment files checked.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Valid records (batches).
    pub records: u64,
    /// Events in them.
    pub events: u64,
    /// Every invalid record (at most one per segment: what follows it cannot be framed).
    pub damage: Vec<Damage>,
}

impl Verified {
    /// Whether something other than a torn tail was found.
    pub fn corrupt(&self) -> bool {
        self.damage.iter().any(|damage| !damage.torn_tail)
    }
}

/// Checks every record of every segment in `dir`: its framing, its CRC32C, that its offsets
/// follow the record before it, and that its batch decodes. Opens files for reading only.
///
/// # Errors
/// [`LogError::Io`] when a file cannot be read.
pub fn verify(dir: &Path) -> Result<Verified, LogError> {
    let bases = segment_bases(dir)?;
    let mut verified = Verified::default();
    let mut previous_end: Option<u64> = None;
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let path = segment::log_path(dir, base);
        let file = File::open(&path).map_err(io_error("open", &path))?;
        let file_len = file.metadata().map_err(io_error("stat", &path))?.len();
        verified.segments += 1;
        verified.bytes += file_len;
        if let Some(end) = previous_end.filter(|end| base < *end) {
            verified.damage.push(Damage {
                segment: base,
                position: 0,
                bytes: file_len,
                problem: format!("segment overlaps the one before it (which ends at offset {end})"),
                torn_tail: false,
            });
            continue;
        }
        let mut info = SegmentInfo::new(base);
        let bad = segment::scan(&file, &mut info, 0, file_len, INDEX_INTERVAL_BYTES)
            .map_err(io_error("scan", &path))?;
        // The scan checked the framing, CRCs and offsets of the valid prefix; decode each of its
        // batches too (a second pass: the scan keeps no payloads, and the page cache serves it).
        let mut undecodable = false;
        let mut position = 0;
        while position < info.len {
            let header =
                segment::read_header(&file, position, info.len).map_err(io_error("read", &path))?;
            let decoded = segment::read_record(&file, position, info.len, &header)
                .map_err(io_error("read", &path))
                .map(|(_, payload)| binary::decode(&payload));
            match decoded? {
                Ok(batch) if batch.len() == header.events as usize => {}
                Ok(batch) => {
                    verified.damage.push(Damage {
                        segment: base,
                        position,
                        bytes: file_len - position,
                        problem: format!(
                            "{} events decoded, {} recorded",
                            batch.len(),
                            header.events
                        ),
                        torn_tail: false,
                    });
                    undecodable = true;
                    break;
                }
                Err(error) => {
                    verified.damage.push(Damage {
                        segment: base,
                        position,
                        bytes: file_len - position,
                        problem: format!("batch does not decode: {error}"),
                        torn_tail: false,
                    });
                    undecodable = true;
                    break;
                }
            }
            verified.records += 1;
            verified.events += u64::from(header.events);
            position += header.record_len();
        }
        if let Some(bad) = bad.filter(|_| !undecodable) {
            verified
                .damage
                .push(Damage::new(base, &bad, file_len, last));
        }
        previous_end = Some(info.end);
    }
    Ok(verified)
}
