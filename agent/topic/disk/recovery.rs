//! Recovery on open: every segment of a log directory validated, a torn tail cut off the last
//! segment, corrupt records and overlapping segments moved to `quarantine/`, stale indexes
//! removed or rewritten (the module doc of [`super`] says what is guaranteed).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use super::LogConfig;
use super::index::Index;
use super::log::{AtomicCounters, LogError, QUARANTINE_DIR, io_error, remove_if_exists};
use super::segment::{self, SegmentInfo};

pub(super) fn count_quarantine(counters: &AtomicCounters, bytes: u64) {
    counters.corrupt_records.fetch_add(1, Ordering::Relaxed);
    counters
        .quarantined_bytes
        .fetch_add(bytes, Ordering::Relaxed);
}

/// Moves bytes `from..len` of segment `base` into `quarantine/` and cuts the segment there.
/// Returns the bytes moved.
pub(super) fn quarantine(dir: &Path, base: u64, from: u64, len: u64) -> Result<u64, LogError> {
    let quarantine_dir = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&quarantine_dir).map_err(io_error("create", &quarantine_dir))?;
    let path = segment::log_path(dir, base);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_error("open", &path))?;
    let file_len = file.metadata().map_err(io_error("stat", &path))?.len();
    let end = file_len.max(len);
    let name = format!(
        "{}.from-{from}",
        path.file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("segment")
    );
    let target = quarantine_dir.join(name);
    let mut moved = Vec::new();
    file.seek(SeekFrom::Start(from))
        .map_err(io_error("seek", &path))?;
    Read::by_ref(&mut file)
        .take(end - from)
        .read_to_end(&mut moved)
        .map_err(io_error("read", &path))?;
    let mut out = File::create(&target).map_err(io_error("create", &target))?;
    out.write_all(&moved).map_err(io_error("write", &target))?;
    out.sync_all().map_err(io_error("sync", &target))?;
    file.set_len(from).map_err(io_error("truncate", &path))?;
    file.sync_all().map_err(io_error("sync", &path))?;
    Ok(moved.len() as u64)
}

/// Opens every segment in `dir`, validating and repairing as the module doc says.
pub(super) fn recover(
    dir: &Path,
    config: &LogConfig,
    counters: &AtomicCounters,
) -> Result<BTreeMap<u64, SegmentInfo>, LogError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        if let Some((base, is_log)) = name.to_str().and_then(segment::parse_name) {
            if is_log {
                logs.push(base);
            } else {
                indexes.push(base);
            }
        }
    }
    logs.sort_unstable();
    for base in indexes {
        if logs.binary_search(&base).is_err() {
            // Its segment was deleted and the crash came before the index went too.
            remove_if_exists(&segment::index_path(dir, base));
        }
    }
    let interval = config.index_interval_bytes;
    let mut segments = BTreeMap::new();
    let mut previous_end: Option<u64> = None;
    for (i, &base) in logs.iter().enumerate() {
        let last = i + 1 == logs.len();
        let path = segment::log_path(dir, base);
        if previous_end.is_some_and(|end| base < end) {
            // Overlaps the segment before: cannot be placed in the log.
            let len = fs::metadata(&path).map_or(0, |m| m.len());
            let moved = quarantine(dir, base, 0, len)?;
            count_quarantine(counters, moved);
            tracing::error!(dir = %dir.display(), segment = base, "A segment overlaps the one before it; moved to quarantine");
            remove_if_exists(&path);
            remove_if_exists(&segment::index_path(dir, base));
            continue;
        }
        let file = File::open(&path).map_err(io_error("open", &path))?;
        let file_len = file.metadata().map_err(io_error("stat", &path))?.len();
        let index = Index::load(&segment::index_path(dir, base), file_len)
            .map_err(io_error("read index of", &path))?;
        let (mut info, bad) = segment::scan_indexed(&file, base, index, file_len, interval)
            .map_err(io_error("scan", &path))?;
        if let Some(bad) = bad {
            if last && bad.reaches_end {
                let cut = file_len - bad.position;
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|file| {
                        file.set_len(bad.position)?;
                        file.sync_all()
                    })
                    .map_err(io_error("truncate", &path))?;
                counters.torn_tails.fetch_add(1, Ordering::Relaxed);
                counters.torn_bytes.fetch_add(cut, Ordering::Relaxed);
                tracing::warn!(dir = %dir.display(), segment = base, position = bad.position, bytes = cut, problem = %bad.problem, "Cut a torn write off the end of a disk topic");
            } else {
                let moved = quarantine(dir, base, bad.position, file_len)?;
                count_quarantine(counters, moved);
                tracing::error!(dir = %dir.display(), segment = base, position = bad.position, bytes = moved, problem = %bad.problem, "Corrupt record in a disk topic: the rest of its segment was moved to quarantine and is skipped");
            }
            info.index.truncate_at(bad.position);
        }
        if info.len == 0 && !last {
            remove_if_exists(&path);
            remove_if_exists(&segment::index_path(dir, base));
            continue;
        }
        if !last {
            // Closed segments keep their index file in step with what was recovered.
            let index_path = segment::index_path(dir, base);
            let bytes = info.index.encode_all();
            if fs::read(&index_path).ok().as_deref() != Some(&bytes[..]) {
                let _ = fs::write(&index_path, &bytes);
            }
        }
        previous_end = Some(info.end);
        segments.insert(base, info);
    }
    if segments.is_empty() {
        let base = previous_end.unwrap_or(0);
        segments.insert(base, SegmentInfo::new(base));
    }
    Ok(segments)
}
