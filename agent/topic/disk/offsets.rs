//! Committed offsets of subscriptions, persisted atomically, one small file per subscription.
//!
//! `<dir>/offsets/<name>.offset` holds `b"SLOF"`, a version byte, the offset (u64 LE) and a
//! CRC32C of the 13 bytes before it. A commit writes `<name>.offset.tmp`, fsyncs it, renames it
//! over the old file and fsyncs the directory, so a crash leaves either the old or the new
//! offset, never a mix. Writing is throttled (at most one write per subscription per
//! `min_interval`, the rest on [`OffsetStore::flush`]) so that a commit per batch does not mean an
//! fsync per batch; what a crash can then lose is at most `min_interval` of commits, which are
//! redelivered (at-least-once).
//!
//! Names are escaped into file names: ASCII letters, digits, `-` and `_` stay, every other byte
//! becomes `%XX`. A file that is unreadable or fails its CRC is ignored (logged): the subscription
//! then starts where a new one would.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 4] = b"SLOF";
const VERSION: u8 = 1;
const FILE_LEN: usize = 4 + 1 + 8 + 4;
const SUFFIX: &str = ".offset";

/// Escapes a subscription name into a file name stem.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reverses [`escape`]; `None` for a stem it could not have produced.
pub fn unescape(stem: &str) -> Option<String> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn encode(offset: u64) -> [u8; FILE_LEN] {
    let mut out = [0u8; FILE_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4] = VERSION;
    out[5..13].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&out[..13]);
    out[13..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != FILE_LEN || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[13..].try_into().ok()?);
    if crc32c::crc32c(&bytes[..13]) != crc {
        return None;
    }
    Some(u64::from_le_bytes(bytes[5..13].try_into().ok()?))
}

/// Reads every valid offset file in `dir` without changing anything (no directory created,
/// no leftover `.tmp` removed); unreadable files are skipped. A missing `dir` holds none.
///
/// # Errors
/// I/O errors listing the directory.
pub fn read_all(dir: &Path) -> io::Result<HashMap<String, u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(error) => return Err(error),
    };
    let mut offsets = HashMap::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name
            .to_str()
            .and_then(|file_name| file_name.strip_suffix(SUFFIX))
            .and_then(unescape)
        else {
            continue;
        };
        if let Some(offset) = fs::read(entry.path()).ok().as_deref().and_then(decode) {
            offsets.insert(name, offset);
        }
    }
    Ok(offsets)
}

#[derive(Debug)]
struct Entry {
    offset: u64,
    /// The offset last written to disk.
    persisted: Option<u64>,
    last_write: Option<Instant>,
}

/// The committed offsets of one log's subscriptions.
#[derive(Debug)]
pub struct OffsetStore {
    dir: PathBuf,
    min_interval: Duration,
    sync: bool,
    entries: HashMap<String, Entry>,
}

impl OffsetStore {
    /// Loads the offsets in `dir` (created if missing). With `sync` false, files are still
    /// replaced atomically but not fsynced (the `never` fsync policy).
    ///
    /// # Errors
    /// I/O errors creating or listing the directory.
    pub fn open(dir: &Path, min_interval: Duration, sync: bool) -> io::Result<OffsetStore> {
        fs::create_dir_all(dir)?;
        let mut entries = HashMap::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if file_name.ends_with(".tmp") {
                // A commit interrupted before its rename: the old file is still whole.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(name) = file_name.strip_suffix(SUFFIX).and_then(unescape) else {
                continue;
            };
            match fs::read(entry.path()).ok().as_deref().and_then(decode) {
                Some(offset) => {
                    entries.insert(
                        name,
                        Entry {
                            offset,
                            persisted: Some(offset),
                            last_write: None,
                        },
                    );
                }
                None => tracing::warn!(
                    path = %entry.path().display(),
                    "Ignoring an unreadable subscription offset; the subscription starts anew"
                ),
            }
        }
        Ok(OffsetStore {
            dir: dir.to_owned(),
            min_interval,
            sync,
            entries,
        })
    }

    /// Every subscription's committed offset.
    pub fn all(&self) -> HashMap<String, u64> {
        self.entries
            .iter()
            .map(|(name, entry)| (name.clone(), entry.offset))
            .collect()
    }

    /// The committed offset of `name`.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<u64> {
        self.entries.get(name).map(|entry| entry.offset)
    }

    /// Records a commit; writes it now unless `name` was written less than `min_interval` ago
    /// (then [`OffsetStore::flush_due`] or [`OffsetStore::flush`] writes it).
    ///
    /// # Errors
    /// I/O errors writing the file; the commit is kept and written again later.
    pub fn commit(&mut self, name: &str, offset: u64, now: Instant) -> io::Result<()> {
        let entry = self.entries.entry(name.to_owned()).or_insert(Entry {
            offset,
            persisted: None,
            last_write: None,
        });
        entry.offset = offset;
        let due = entry
            .last_write
            .is_none_or(|last| now.duration_since(last) >= self.min_interval);
        if due {
            self.write(name, now)?;
        }
        Ok(())
    }

    /// Whether a commit of `name` now would be written at once (not throttled).
    pub fn is_due(&self, name: &str, now: Instant) -> bool {
        self.entries.get(name).is_none_or(|entry| {
            entry
                .last_write
                .is_none_or(|last| now.duration_since(last) >= self.min_interval)
        })
    }

    /// Whether some commit waits for its throttle; when the earliest is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|entry| entry.persisted != Some(entry.offset))
            .map(|entry| {
                entry
                    .last_write
                    .map_or_else(Instant::now, |at| at + self.min_interval)
            })
            .min()
    }

    /// Writes the commits whose throttle has passed.
    ///
    /// # Errors
    /// The first I/O error; the others are still attempted.
    pub fn flush_due(&mut self, now: Instant) -> io::Result<()> {
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                entry.persisted != Some(entry.offset)
                    && entry
                        .last_write
                        .is_none_or(|last| now.duration_since(last) >= self.min_interval)
            })
            .map(|(name, _)| name.clone())
            .collect();
        self.write_all(due, now)
    }

    /// Writes every commit not yet on disk.
    ///
    /// # Errors
    /// The first I/O error; the others are still attempted.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        let dirty: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.persisted != Some(entry.offset))
            .map(|(name, _)| name.clone())
            .collect();
        self.write_all(dirty, now)
    }

    fn write_all(&mut self, names: Vec<String>, now: Instant) -> io::Result<()> {
        let mut first_error = None;
        for name in names {
            if let Err(error) = self.write(&name, now) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn write(&mut self, name: &str, now: Instant) -> io::Result<()> {
        let Some(entry) = self.entries.get_mut(name) else {
            return Ok(());
        };
        let offset = entry.offset;
        // Set before trying, so a failing write is retried after the throttle, not in a loop.
        entry.last_write = Some(now);
        let path = self.dir.join(format!("{}{SUFFIX}", escape(name)));
        let temp = self.dir.join(format!("{}{SUFFIX}.tmp", escape(name)));
        {
            let mut file = File::create(&temp)?;
            file.write_all(&encode(offset))?;
            if self.sync {
                file.sync_all()?;
            }
        }
        fs::rename(&temp, &path)?;
        if self.sync {
            sluice_sink::fs::sync_dir(&self.dir)?;
        }
        if let Some(entry) = self.entries.get_mut(name) {
            entry.persisted = Some(offset);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_and_unescape() {
        for name in ["sink.pg", "a/b", "plain_name-1", "héllo", "%", ""] {
            let stem = escape(name);
            assert!(
                stem.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_%".contains(&b))
            );
            assert_eq!(unescape(&stem).as_deref(), Some(name));
        }
        assert_eq!(unescape("%zz"), None);
    }

    #[test]
    fn commits_survive_reopen_and_are_throttled() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut store = OffsetStore::open(dir.path(), Duration::from_secs(1), true).unwrap();
        store.commit("sink.pg", 10, t0).unwrap();
        store
            .commit("sink.pg", 20, t0 + Duration::from_millis(10))
            .unwrap();
        assert_eq!(store.get("sink.pg"), Some(20));
        let reopened = OffsetStore::open(dir.path(), Duration::from_secs(1), true).unwrap();
        assert_eq!(reopened.get("sink.pg"), Some(10), "second commit throttled");
        assert!(store.next_due().is_some());
        store.flush_due(t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(
            OffsetStore::open(dir.path(), Duration::from_secs(1), true)
                .unwrap()
                .get("sink.pg"),
            Some(10),
            "not due yet"
        );
        store.flush_due(t0 + Duration::from_secs(1)).unwrap();
        assert!(store.next_due().is_none());
        let reopened = OffsetStore::open(dir.path(), Duration::from_secs(1), true).unwrap();
        assert_eq!(reopened.all(), HashMap::from([("sink.pg".to_owned(), 20)]));
    }

    /// Regression: the default throttle was 1 s, so an agent killed less than a second after
    /// each start (a crash loop, tests/durability.rs) persisted only the first commit of each
    /// run and processed an ever longer backlog again every time: 1.6 million duplicates for
    /// 464,000 lines over 20 kills. By default a crash now loses at most the commits of one
    /// fsync interval.
    #[test]
    fn by_default_a_crash_loses_at_most_an_fsync_interval_of_commits() {
        let interval = crate::topic::disk::LogConfig::default().offset_commit_interval;
        let crate::topic::disk::FsyncPolicy::Interval(fsync) =
            crate::topic::disk::FsyncPolicy::default()
        else {
            panic!("the default fsync policy is an interval");
        };
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut store = OffsetStore::open(dir.path(), interval, true).unwrap();
        store.commit("sink.pg", 10, t0).unwrap();
        store
            .commit("sink.pg", 20, t0 + Duration::from_millis(1))
            .unwrap();
        store.flush_due(t0 + fsync).unwrap();
        let reopened = OffsetStore::open(dir.path(), interval, true).unwrap();
        assert_eq!(reopened.get("sink.pg"), Some(20));
    }

    #[test]
    fn corrupt_and_temporary_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path(), Duration::ZERO, false).unwrap();
        store.commit("a", 5, Instant::now()).unwrap();
        store.commit("b", 7, Instant::now()).unwrap();
        let path = dir.path().join("b.offset");
        let mut bytes = fs::read(&path).unwrap();
        bytes[6] ^= 1;
        fs::write(&path, bytes).unwrap();
        fs::write(dir.path().join("a.offset.tmp"), b"half").unwrap();
        let reopened = OffsetStore::open(dir.path(), Duration::ZERO, false).unwrap();
        assert_eq!(reopened.all(), HashMap::from([("a".to_owned(), 5)]));
        assert!(!dir.path().join("a.offset.tmp").exists());
    }
}
