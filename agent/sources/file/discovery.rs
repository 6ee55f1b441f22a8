//! The tailer's cheap paths: looking at just the files a watcher named instead of listing every
//! pattern, keeping what is open within the bounds of [`super::holding`], and accounting for
//! what a stop leaves unread in deleted files.
//!
//! # Discovery by event
//!
//! A full [`Tailer::scan`] lists every `include` pattern and checks every open file; it runs once
//! a second (the watcher's safety tick), after renames and removals of unknown paths, and after
//! a watcher overflow. A file created, or a parked file written to, only costs a look at its own
//! path ([`Tailer::discover`]): mapped back from the watcher's absolute path onto the pattern
//! it matches, checked against `exclude`, and recognised as a scan would (a known inode resumes,
//! an unknown one is a new file); one whose head is related to an open file's (a copy, maybe of
//! a file truncated since) is left to a full scan, which checks for truncation first. So at 1,000 new files a second each new
//! file costs one `stat`, one `open` and one head read, not a listing of its directory.
//!
//! # Bounds
//!
//! Before a file is opened, `Tailer::make_room` checks the descriptor bounds and, at them,
//! closes a batch of files as [`holding::plan`] says (parking before letting go). After every
//! full scan [`Tailer::enforce_bounds`] looks at every open file (deleted yet? how big?) and
//! applies both bounds. A file let go with unread bytes is a loss: logged as a warning with its
//! path, unread bytes and lines, and counted in the source's losses under the bound's name.
//!
//! # Stops
//!
//! A file deleted while open can only be read while it is open: what a stopping source has not
//! read of it is gone when the process exits. [`Tailer::account_unread_deleted`] counts it,
//! per file, in lines and bytes (reason `deleted_unread`), so a stop never drops lines silently.
//! Before that, a stop with a disk topic reads the files it holds into the topic
//! ([`Tailer::unread_files`], see [`super::source`]), so only what it had no time or room for
//! is lost.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::checkpoint::{Orphan, RecordId};
use super::config::ReadFrom;
use super::fingerprint::{FileKey, could_be_copy_of, fnv1a, link_count, read_at};
use super::holding::{self, Held, Release};
use super::tailer::{Found, Record, Tailer, same_tail};

/// Held files the admin API lists at most.
pub const MAX_LISTED: usize = 100;

/// Bytes of a head that [`HeadIndex`] keys on (the least `fingerprint_bytes` allows).
pub const INDEX_PREFIX: usize = 16;

/// The records by the first [`INDEX_PREFIX`] bytes of their head, built once per batch of new
/// files (a scan's, or a batch looked at alone): with thousands of deleted files' records kept
/// and thousands of files open, a new file is compared only with those that start like it.
/// Records with a shorter head (or none: loaded from checkpoints) are always candidates.
#[derive(Debug, Default)]
pub struct HeadIndex {
    closed: HashMap<[u8; INDEX_PREFIX], Vec<RecordId>>,
    closed_others: Vec<RecordId>,
    open: HashMap<[u8; INDEX_PREFIX], Vec<RecordId>>,
    open_others: Vec<RecordId>,
    open_by_path: HashMap<PathBuf, RecordId>,
}

impl HeadIndex {
    /// The closed records a file with this head may carry on, or `None` when the head is too
    /// short to tell (every record is then a candidate).
    pub fn closed<'a>(
        &'a self,
        head: &[u8],
    ) -> Option<impl Iterator<Item = &'a RecordId> + use<'a>> {
        let prefix: [u8; INDEX_PREFIX] = head.get(..INDEX_PREFIX)?.try_into().ok()?;
        Some(
            self.closed
                .get(&prefix)
                .into_iter()
                .flatten()
                .chain(&self.closed_others),
        )
    }

    /// The open records whose head may be related to this one, or `None` when it is too short.
    pub fn open<'a>(&'a self, head: &[u8]) -> Option<impl Iterator<Item = &'a RecordId> + use<'a>> {
        let prefix: [u8; INDEX_PREFIX] = head.get(..INDEX_PREFIX)?.try_into().ok()?;
        Some(
            self.open
                .get(&prefix)
                .into_iter()
                .flatten()
                .chain(&self.open_others),
        )
    }

    /// The open record at `path` when the index was built, if any.
    pub fn open_at(&self, path: &Path) -> Option<RecordId> {
        self.open_by_path.get(path).copied()
    }
}

impl Tailer {
    /// Looks at just these paths (absolute, as a watcher names them: created, or written to
    /// while not open): each one `include` matches and `exclude` does not is recognised and
    /// opened as a scan would. Returns whether a full scan is needed (a directory appeared).
    pub fn discover(&mut self, paths: &[PathBuf], now: Instant) -> bool {
        let bases: Vec<Option<PathBuf>> = self
            .settings
            .include
            .iter()
            .map(|pattern| std::fs::canonicalize(pattern.base()).ok())
            .collect();
        let by_key = self.records_by_key();
        let mut seen_keys: HashSet<FileKey> = HashSet::new();
        self.index = Some(self.head_index());
        let unix_now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut looked_at = HashSet::new();
        let mut full_scan = false;
        for abs in paths {
            if !looked_at.insert(abs) {
                continue;
            }
            let Some((path, metadata)) = self.include_path(abs, &bases, &mut full_scan) else {
                continue;
            };
            let key = FileKey::of(&metadata);
            let file = Found {
                path,
                metadata,
                key,
            };
            let known = by_key.get(&key).copied();
            if let Some(id) = known
                && self.rescan_known(id, &file, unix_now, now)
            {
                continue;
            }
            if known.is_none() && !seen_keys.insert(key) {
                // Two names of one new inode in one batch: the first one did it.
                continue;
            }
            full_scan |=
                self.consider_new(file, ReadFrom::Beginning, &seen_keys, (unix_now, now), true);
        }
        self.index = None;
        full_scan
    }

    /// The record whose content a new file (`handle`, with `head` and `size`) carries on, if
    /// any: one not being read and whose inode was not found by this scan, with the same head
    /// (or, for a plain file, the start of it);
    /// for a plain file also as long, and with the same bytes before the record's offset (or,
    /// where those are unknown, only a truncated orphan) — or, for a truncated orphan whose
    /// truncation was noticed since the previous scan or less than `rotate_wait` ago, shorter
    /// than its offset (a copy finished before reading went past its end). The most recently
    /// seen match wins.
    pub(super) fn find_orphan(
        &self,
        handle: &File,
        head: &[u8],
        (size, gzip): (u64, bool),
        seen_keys: &HashSet<FileKey>,
        alone: bool,
        now: Instant,
    ) -> Option<RecordId> {
        let rotate_wait = self.settings.rotate_wait;
        // Thousands of records of deleted files may be kept: the head is compared directly
        // where it is known (it stops at the first byte that differs), and hashed once per
        // length where only a checkpoint's fingerprint is.
        let mut hashes: HashMap<u32, Option<u64>> = HashMap::new();
        let mut same_head = |record: &Record| {
            if record.head.is_empty() {
                let len = record.fingerprint.len;
                let hash = *hashes
                    .entry(len)
                    .or_insert_with(|| head.get(..len as usize).map(fnv1a));
                hash == Some(record.fingerprint.checksum)
            } else {
                head.starts_with(&record.head)
            }
        };
        let indexed = self.index.as_ref().and_then(|index| index.closed(head));
        let candidates: Box<dyn Iterator<Item = (&RecordId, &Record)>> = match indexed {
            Some(ids) => {
                Box::new(ids.filter_map(|id| self.records.get(id).map(|record| (id, record))))
            }
            None => Box::new(self.records.iter()),
        };
        candidates
            .filter(|(_, record)| {
                record.open.is_none()
                    && record.fingerprint.len > 0
                    && (same_head(record)
                        // A copy made while the file was shorter than `fingerprint_bytes`, of
                        // an original whose head grew since.
                        || (!gzip && could_be_copy_of(head, &record.head)))
                    // Looked at alone, only contents without an inode of their own (a scan sees
                    // which inodes are gone).
                    && record
                        .key
                        .is_none_or(|key| !alone && !seen_keys.contains(&key))
                    && (gzip
                        || if size >= record.read {
                            same_tail(record, handle)
                        } else {
                            record.orphan == Some(Orphan::Truncated)
                                && record.truncated_at.is_some_and(|at| {
                                    self.previous_scan.is_none_or(|scan| at >= scan)
                                        || now.saturating_duration_since(at) <= rotate_wait
                                })
                        })
            })
            .max_by_key(|(id, record)| (record.seen, **id))
            .map(|(id, _)| *id)
    }

    /// The open records whose head may start like `head` or `head` like theirs: from the index
    /// while one is built, else all.
    fn open_candidates<'a>(
        &'a self,
        head: &[u8],
    ) -> Box<dyn Iterator<Item = (RecordId, &'a Record)> + 'a> {
        let indexed = self.index.as_ref().and_then(|index| index.open(head));
        match indexed {
            Some(ids) => Box::new(ids.filter_map(|id| {
                let record = self.records.get(id)?;
                record.open.is_some().then_some((*id, record))
            })),
            None => Box::new(self.open_records().map(|(id, record, _)| (id, record))),
        }
    }

    /// Whether a file with this head starts like an open plain file, or that one like it.
    pub(super) fn is_related_to_open(&self, head: &[u8]) -> bool {
        self.open_candidates(head).any(|(_, record)| {
            !record.gzip
                && (could_be_copy_of(head, &record.head) || could_be_copy_of(&record.head, head))
        })
    }

    /// Whether a file with this head (under `key`) may be a copy of a file being read.
    pub(super) fn is_possible_copy(&self, head: &[u8], key: FileKey) -> bool {
        self.open_candidates(head).any(|(_, record)| {
            record.key != Some(key) && !record.gzip && could_be_copy_of(head, &record.head)
        })
    }

    /// The records by the start of their head (see [`HeadIndex`]).
    pub(super) fn head_index(&self) -> HeadIndex {
        let mut index = HeadIndex::default();
        for (id, record) in &self.records {
            let prefix: Option<[u8; INDEX_PREFIX]> = record
                .head
                .get(..INDEX_PREFIX)
                .and_then(|prefix| prefix.try_into().ok());
            if record.open.is_some() {
                index.open_by_path.insert(record.path.clone(), *id);
                match prefix {
                    Some(prefix) => index.open.entry(prefix).or_default().push(*id),
                    None => index.open_others.push(*id),
                }
            } else if record.fingerprint.len > 0 {
                match prefix {
                    Some(prefix) => index.closed.entry(prefix).or_default().push(*id),
                    None => index.closed_others.push(*id),
                }
            }
        }
        index
    }

    /// The path of `abs` as `include` writes it, with its metadata, if a pattern matches it and
    /// `exclude` does not; sets `full_scan` for a directory below a pattern's base.
    fn include_path(
        &self,
        abs: &Path,
        bases: &[Option<PathBuf>],
        full_scan: &mut bool,
    ) -> Option<(PathBuf, std::fs::Metadata)> {
        for (pattern, base) in self.settings.include.iter().zip(bases) {
            let Some(rest) = base.as_deref().and_then(|base| abs.strip_prefix(base).ok()) else {
                continue;
            };
            let path = if pattern.base() == Path::new(".") {
                rest.to_path_buf()
            } else {
                pattern.base().join(rest)
            };
            let metadata = std::fs::metadata(&path).ok()?;
            if metadata.is_dir() {
                *full_scan |= pattern.is_recursive();
                return None;
            }
            if metadata.is_file() && pattern.matches(&path) && !self.is_excluded(&path) {
                return Some((path, metadata));
            }
        }
        None
    }

    /// Makes room for one more open file if the descriptor bounds are reached, closing a batch
    /// of files as [`holding::plan`] says: for a new file (`for_new`) any file, losing a deleted
    /// one's unread lines as the last resort; to open a parked file again, only idle ones.
    /// Returns whether there is room now.
    pub(super) fn make_room(&mut self, for_new: bool, now: Instant) -> bool {
        if self.descriptors.has_room() {
            return true;
        }
        if !for_new && self.no_idle_room {
            return false;
        }
        let open = self.descriptors.open();
        // A batch at a time: planning looks at every open file.
        let batch = (self.descriptors.max_open() / 16).max(1);
        let held = self.held_files();
        let releases = holding::plan(&held, open, u64::MAX, batch, for_new);
        self.no_idle_room = releases.is_empty();
        for release in releases {
            self.release(release, now);
        }
        self.descriptors.has_room()
    }

    /// Brings every open file's state up to date (deleted? how big?) and applies both bounds.
    pub fn enforce_bounds(&mut self, now: Instant) {
        for id in &self.open_ids {
            let Some(open) = self.records.get_mut(id).and_then(|r| r.open.as_mut()) else {
                continue;
            };
            if let Some(metadata) = open.reader.file().and_then(|file| file.metadata().ok()) {
                open.deleted = link_count(&metadata) == 0;
                open.size = metadata.len();
                open.modified = metadata.modified().unwrap_or(open.modified);
            }
        }
        let held = self.held_files();
        let releases = holding::plan(
            &held,
            self.descriptors.max_open(),
            self.settings.max_deleted_bytes,
            0,
            true,
        );
        for release in releases {
            self.release(release, now);
        }
    }

    /// Every open file as the bounds see it.
    fn held_files(&self) -> Vec<Held<RecordId>> {
        self.open_records()
            .map(|(id, _, open)| {
                let at_risk = open.deleted || open.unreachable_since.is_some();
                let unread = if open.reader.is_gzip() {
                    u64::from(!open.at_eof)
                } else if at_risk {
                    // A partial last line counts too: nothing will complete it.
                    open.size.saturating_sub(open.reader.resume_offset())
                } else {
                    open.size.saturating_sub(open.reader.position())
                };
                Held {
                    id,
                    deleted: open.deleted,
                    unreachable: open.unreachable_since.is_some(),
                    unread,
                    size: open.size,
                    age: (open.modified, id.0),
                }
            })
            .collect()
    }

    /// Closes a file as `release` says, counting what is lost.
    fn release(&mut self, release: Release<RecordId>, _now: Instant) {
        let (id, reason) = match release {
            Release::Park(id) => (id, None),
            Release::LetGo { id, reason } => (id, Some(reason)),
        };
        let delimiter = self.settings.format.delimiter().to_vec();
        let Some(record) = self.records.get_mut(&id) else {
            return;
        };
        let Some(open) = record.open.take() else {
            return;
        };
        self.open_ids.remove(&id);
        self.by_abs.remove(&open.abs);
        record.read = open.reader.resume_offset();
        if !open.deleted && open.unreachable_since.is_none() {
            record.parked = true;
            self.counters.files_parked.add(1);
            return;
        }
        if open.deleted {
            record.key = None;
            record.orphan = Some(Orphan::Deleted);
        }
        let Some(reason) = reason else {
            return;
        };
        let (lines, bytes) = open
            .reader
            .file()
            .map_or((0, 0), |file| count_lines(file, record.read, &delimiter));
        if bytes == 0 {
            return;
        }
        self.counters.errors.lost.add(reason, lines, bytes);
        tracing::warn!(
            source = %self.name,
            path = %record.path.display(),
            deleted = open.deleted,
            unread_bytes = bytes,
            unread_lines = lines,
            bound = reason,
            "Letting go of a file with unread lines: a bound on held files is reached; they are lost"
        );
    }

    /// Notes lines read from `record` that a stopping source did not publish: lost with the
    /// process if its file is deleted (see [`Tailer::account_unread_deleted`]), read again
    /// after a restart otherwise.
    pub fn unpublished(&mut self, record: RecordId, lines: u64, bytes: u64) {
        let entry = self.unpublished.entry(record).or_default();
        entry.0 += lines;
        entry.1 += bytes;
    }

    /// Counts, logs and returns what deleted files hold that a stopping source has not
    /// published: the rest of each one still open, and what was read from it (or from one
    /// already closed) but not published. Nothing can read it any more (`deleted_unread`) —
    /// unless a compressed copy of it is still there (logrotate's `compress` deletes the file it
    /// compressed at once): the next run reads on from the checkpoint inside the `.gz`, so that
    /// is not lost. Returns the lines and bytes.
    pub fn account_unread_deleted(&mut self) -> (u64, u64) {
        let delimiter = self.settings.format.delimiter().to_vec();
        let max_decompressed = self.settings.max_decompressed_bytes;
        let mut unread = Vec::new();
        for (id, record) in &self.records {
            let (mut lines, mut bytes) = (0, 0);
            let mut deleted = record.orphan == Some(Orphan::Deleted);
            if let Some(file) = record.open.as_ref().and_then(|open| open.reader.file()) {
                deleted = file
                    .metadata()
                    .is_ok_and(|metadata| link_count(&metadata) == 0);
                if deleted {
                    let (resume, gzip) = record.open.as_ref().map_or((0, false), |open| {
                        (open.reader.resume_offset(), open.reader.is_gzip())
                    });
                    (lines, bytes) = if gzip {
                        // Offsets in a gzip file are into its decompressed stream.
                        count_gzip_lines(file, resume, &delimiter, max_decompressed)
                    } else {
                        count_lines(file, resume, &delimiter)
                    };
                }
            }
            if !deleted {
                continue;
            }
            if let Some((unpublished_lines, unpublished_bytes)) = self.unpublished.get(id) {
                lines += unpublished_lines;
                bytes += unpublished_bytes;
            }
            if lines > 0 {
                unread.push((*id, lines, bytes));
            }
        }
        if unread.is_empty() {
            return (0, 0);
        }
        let compressed = self.compressed_heads();
        let mut total = (0, 0);
        for (id, lines, bytes) in unread {
            let Some(record) = self.records.get(&id) else {
                continue;
            };
            if compressed
                .iter()
                .any(|(_, head)| record.fingerprint.matches(head))
            {
                tracing::info!(
                    source = %self.name,
                    path = %record.path.display(),
                    unread_lines = lines,
                    "Stopping with unread lines in a deleted file whose compressed copy is still there; the next run reads them from it"
                );
                continue;
            }
            total.0 += lines;
            total.1 += bytes;
            self.counters
                .errors
                .lost
                .add("deleted_unread", lines, bytes);
            tracing::warn!(
                source = %self.name,
                path = %record.path.display(),
                unread_bytes = bytes,
                unread_lines = lines,
                "Stopping with unread lines in a deleted file; they are lost"
            );
        }
        total
    }

    /// The decompressed heads of the gzip files `include` matches that are not open.
    fn compressed_heads(&mut self) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let open: HashSet<super::fingerprint::FileKey> = self
            .open_records()
            .filter_map(|(_, record, _)| record.key)
            .collect();
        let max = self.settings.fingerprint_bytes;
        self.find()
            .into_iter()
            .filter(|found| !open.contains(&found.key))
            .filter_map(|found| {
                let file = File::open(&found.path).ok()?;
                let magic = super::fingerprint::read_head(&file, 2).ok()?;
                if !super::fingerprint::is_gzip(&magic) {
                    return None;
                }
                let head = super::fingerprint::read_gzip_head(&found.path, max).ok()?;
                Some((found.path, head))
            })
            .collect()
    }

    /// The open files with bytes not read yet, and how many bytes that is: what a stop with a
    /// disk topic reads into it (see [`super::source`]).
    pub fn unread_files(&mut self) -> (BTreeSet<RecordId>, u64) {
        let mut unread_files = BTreeSet::new();
        let mut total = 0;
        for id in &self.open_ids {
            let Some(open) = self.records.get_mut(id).and_then(|r| r.open.as_mut()) else {
                continue;
            };
            let unread = if open.reader.is_gzip() {
                u64::from(!open.at_eof)
            } else {
                let size = open
                    .reader
                    .file()
                    .and_then(|file| file.metadata().ok())
                    .map_or(open.size, |metadata| metadata.len());
                size.saturating_sub(open.reader.position())
            };
            if unread > 0 {
                open.active = true;
                open.at_eof = false;
                unread_files.insert(*id);
                total += unread;
            }
        }
        (unread_files, total)
    }

    /// Whether `id`'s file was read to its end (or closed) since it was last active.
    pub fn is_drained(&self, id: RecordId) -> bool {
        self.records
            .get(&id)
            .and_then(|record| record.open.as_ref())
            .is_none_or(|open| open.at_eof)
    }

    /// What the source holds, for the admin API: counts against the bounds, and the open files
    /// that are deleted, renamed away or not read to their end, with why each is held.
    pub fn held_state(&self) -> serde_json::Value {
        let mut deleted_bytes = 0;
        let mut held = Vec::new();
        let mut parked = 0;
        for record in self.records.values() {
            parked += usize::from(record.parked);
            let Some(open) = &record.open else {
                continue;
            };
            let unread = open.size.saturating_sub(open.reader.position());
            let why = if open.deleted {
                deleted_bytes += open.size;
                "deleted: held open until read to its end"
            } else if open.unreachable_since.is_some() {
                "renamed out of include: held open until idle for rotate_wait"
            } else if unread > 0 {
                "not read to its end"
            } else {
                continue;
            };
            if held.len() < MAX_LISTED {
                held.push(serde_json::json!({
                    "path": record.path.display().to_string(),
                    "why": why,
                    "unread_bytes": unread,
                }));
            }
        }
        serde_json::json!({
            "open_files": self.descriptors.open(),
            "max_open_files": self.descriptors.max_open(),
            "parked_files": parked,
            "deleted_bytes": deleted_bytes,
            "max_deleted_bytes": self.settings.max_deleted_bytes,
            "held": held,
        })
    }

    /// Whether some parked file has unread bytes, or a new file waits for a descriptor: worth
    /// a scan once descriptors are free.
    pub fn is_starved(&mut self) -> bool {
        std::mem::take(&mut self.starved)
    }
}

/// The lines (a partial last one included) and bytes of `file` from `from` to its end.
fn count_lines(file: &File, from: u64, delimiter: &[u8]) -> (u64, u64) {
    let mut buffer = vec![0; 64 << 10];
    let mut at = from;
    let mut lines = 0;
    // The bytes not yet searched through (a delimiter may straddle two reads), from `start`.
    let mut carry: Vec<u8> = Vec::new();
    let mut start = from;
    // Where the last delimiter ended.
    let mut last = from;
    loop {
        let read = match read_at(file, &mut buffer, at) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        at += read as u64;
        carry.extend_from_slice(&buffer[..read]);
        for found in memchr::memmem::find_iter(&carry, delimiter) {
            lines += 1;
            last = start + (found + delimiter.len()) as u64;
        }
        let after_last = usize::try_from(at - last).unwrap_or(usize::MAX);
        let keep = delimiter.len().saturating_sub(1).min(after_last);
        let dropped = carry.len() - keep;
        carry.drain(..dropped);
        start += dropped as u64;
    }
    (lines + u64::from(at > last), at - from)
}

/// Lines and bytes of the decompressed stream of the gzip `file` after its first `from` bytes,
/// up to `max` decompressed bytes in all (the cap reading has too).
fn count_gzip_lines(file: &File, from: u64, delimiter: &[u8], max: u64) -> (u64, u64) {
    /// Reads `file` from an offset of its own, leaving the descriptor's position alone.
    struct At<'a> {
        file: &'a File,
        at: u64,
    }
    impl std::io::Read for At<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let read = read_at(self.file, buf, self.at)?;
            self.at += read as u64;
            Ok(read)
        }
    }
    let mut stream =
        sluice_sink::gunzip::CappedGunzip::new(std::io::BufReader::new(At { file, at: 0 }), max);
    let mut buffer = vec![0; 64 << 10];
    let (mut position, mut lines, mut bytes) = (0u64, 0u64, 0u64);
    let mut carry: Vec<u8> = Vec::new();
    let mut partial = false;
    loop {
        let read = match std::io::Read::read(&mut stream, &mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk_start = position;
        position += read as u64;
        if position <= from {
            continue;
        }
        let skip = usize::try_from(from.saturating_sub(chunk_start)).unwrap_or(read);
        let rest = &buffer[skip..read];
        bytes += rest.len() as u64;
        carry.extend_from_slice(rest);
        let mut end = 0;
        for found in memchr::memmem::find_iter(&carry, delimiter) {
            lines += 1;
            end = found + delimiter.len();
        }
        partial = carry.len() > end;
        let keep = delimiter.len().saturating_sub(1).min(carry.len() - end);
        carry.drain(..carry.len() - keep);
    }
    (lines + u64::from(partial), bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        temp.write_all(bytes).unwrap();
        let file = File::open(temp.path()).unwrap();
        (temp, file)
    }

    #[test]
    fn gzip_lines_are_counted_from_an_offset_in_the_decompressed_stream() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"one\ntwo\nthree").unwrap();
        let (_temp, file) = file_with(&encoder.finish().unwrap());
        assert_eq!(count_gzip_lines(&file, 4, b"\n", u64::MAX), (2, 9));
        assert_eq!(count_gzip_lines(&file, 8, b"\n", u64::MAX), (1, 5));
        assert_eq!(count_gzip_lines(&file, 13, b"\n", u64::MAX), (0, 0));
        assert_eq!(count_gzip_lines(&file, 0, b"\n", 8), (2, 8));
    }

    #[test]
    fn lines_are_counted_from_an_offset_with_a_partial_last_line() {
        let (_temp, file) = file_with(b"one\ntwo\nthree\nfour");
        assert_eq!(count_lines(&file, 0, b"\n"), (4, 18));
        assert_eq!(count_lines(&file, 4, b"\n"), (3, 14));
        assert_eq!(count_lines(&file, 14, b"\n"), (1, 4));
        assert_eq!(count_lines(&file, 18, b"\n"), (0, 0));
        let (_temp, file) = file_with(b"a\nb\n");
        assert_eq!(count_lines(&file, 0, b"\n"), (2, 4));
    }

    #[test]
    fn long_files_and_delimiters_across_chunks_are_counted_once() {
        let mut text = Vec::new();
        for line in 0..30_000 {
            text.extend_from_slice(format!("line {line}\r\n").as_bytes());
        }
        let (_temp, file) = file_with(&text);
        assert_eq!(count_lines(&file, 0, b"\r\n"), (30_000, text.len() as u64));
        assert_eq!(count_lines(&file, 0, b"\n"), (30_000, text.len() as u64));
    }
}
