//! Checkpoints: where to resume each file after a restart, and when a position becomes safe to
//! write down.
//!
//! # The file
//!
//! `<data_dir>/sources/<name>/checkpoints.json` holds one [`Checkpoint`] per known file content:
//! its fingerprint (checksum and length of the head), the offset up to which its lines are safe,
//! the device and inode it was last seen under (absent once the content has no inode of its own
//! any more: its file was deleted, or truncated in place after being copied), its last path (for
//! people; never used to match), whether it is gzip and read to its end, and when it was last
//! seen. It is replaced atomically: written to `checkpoints.json.tmp`, synced, renamed over the
//! old one, and the directory synced, so a crash at any point leaves either the old or the new
//! file, never a torn one.
//!
//! # Safety
//!
//! A read position is written down only once every line before it is safe. The tailer attaches
//! a [`Mark`] (a file's record and its resume offset) to the last batch of each read turn; the
//! source publishes the batch, learns its end offset in the topic, and queues the marks in
//! [`Acks`] under that offset. When the topic's [`safe_offset`](crate::topic::Producer::safe_offset)
//! reaches it (every blocking subscription acknowledged the batch, or a disk topic stored it),
//! the marks are released and their offsets become the records' safe offsets, which the next
//! checkpoint write persists.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sluice_sink::fs::sync_dir;

use super::fingerprint::Fingerprint;
use crate::topic::Offset;

/// The checkpoint file's format version.
pub const VERSION: u32 = 1;

/// What the checkpoint file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointFile {
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// One entry per known file content.
    pub files: Vec<Checkpoint>,
}

/// Where to resume one file content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Checksum and length of the file's head.
    pub fingerprint: Fingerprint,
    /// Every line before this byte offset is safe.
    pub offset: u64,
    /// The checksum of the bytes just before `offset`, when known: a copy must have them too.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::fingerprint::hex_option"
    )]
    pub tail: Option<u64>,
    /// The device it was last seen on, while it has an inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<u64>,
    /// The inode it was last seen under, while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// Why it has no inode of its own any more, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan: Option<Orphan>,
    /// Its last path (informative).
    pub path: String,
    /// Whether it is a gzip file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gzip: bool,
    /// Whether it was read to its end for good (gzip files).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
    /// When it was last seen, in seconds since the Unix epoch.
    pub seen: u64,
}

/// Why a file content no longer has an inode of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Orphan {
    /// Its file was truncated in place (copytruncate): a copy may carry the content on.
    Truncated,
    /// Its file was deleted: only a compressed copy may carry the content on.
    Deleted,
}

/// Why checkpoints could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is not a checkpoint file.
    #[error("{path}: not a checkpoint file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The checkpoint file of one source.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    temp: PathBuf,
    /// The bytes last written, to skip writes that change nothing.
    last: Option<Vec<u8>>,
}

impl CheckpointStore {
    /// The store of the source `name` under `data_dir`.
    pub fn new(data_dir: &Path, name: &str) -> Self {
        let dir = data_dir.join("sources").join(sanitize(name));
        CheckpointStore {
            path: dir.join("checkpoints.json"),
            temp: dir.join("checkpoints.json.tmp"),
            last: None,
        }
    }

    /// The checkpoint file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the checkpoints; none when the file does not exist.
    ///
    /// # Errors
    /// A [`CheckpointError`] when the file cannot be read or parsed.
    pub fn load(&mut self) -> Result<Vec<Checkpoint>, CheckpointError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let file: CheckpointFile =
            serde_json::from_slice(&bytes).map_err(|error| CheckpointError::Corrupt {
                path: self.path.clone(),
                message: error.to_string(),
            })?;
        if file.version != VERSION {
            return Err(CheckpointError::Corrupt {
                path: self.path.clone(),
                message: format!("version {} (expected {VERSION})", file.version),
            });
        }
        self.last = Some(bytes);
        Ok(file.files)
    }

    /// Replaces the checkpoint file with `files`, atomically and durably (see the module doc).
    /// Returns `false` when nothing changed since the last write, which is then skipped.
    ///
    /// # Errors
    /// A [`CheckpointError`] when a step fails; the previous file is then still in place.
    pub fn save(&mut self, files: Vec<Checkpoint>) -> Result<bool, CheckpointError> {
        let file = CheckpointFile {
            version: VERSION,
            files,
        };
        let mut bytes =
            serde_json::to_vec_pretty(&file).map_err(|error| CheckpointError::Corrupt {
                path: self.path.clone(),
                message: error.to_string(),
            })?;
        bytes.push(b'\n');
        if self.last.as_ref() == Some(&bytes) {
            return Ok(false);
        }
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { path, source }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut temp = File::create(&self.temp).map_err(io_error(&self.temp))?;
        temp.write_all(&bytes).map_err(io_error(&self.temp))?;
        temp.sync_all().map_err(io_error(&self.temp))?;
        drop(temp);
        fs::rename(&self.temp, &self.path).map_err(io_error(&self.path))?;
        sync_dir(dir).map_err(io_error(dir))?;
        self.last = Some(bytes);
        Ok(true)
    }
}

/// A source name as a directory name: anything but ASCII letters, digits, `-`, `_` and `.`
/// becomes `_` (names come from the config and must not leave `data_dir`).
fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// A record (one file content) of the tailer, by a number that is never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(pub u64);

/// A resume offset of one record, attached to a published batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The record.
    pub record: RecordId,
    /// Every line of it before this offset is in the batch or earlier ones.
    pub offset: u64,
}

/// Marks waiting for their batches to become safe, in publishing order.
#[derive(Debug, Default)]
pub struct Acks {
    pending: VecDeque<(Offset, Mark)>,
    /// The end offset of the last batch published.
    last_end: Offset,
}

impl Acks {
    /// No pending marks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that a batch was published up to `end` (exclusive).
    pub fn published(&mut self, end: Offset) {
        self.last_end = self.last_end.max(end);
    }

    /// Queues `mark`: safe once everything published so far is.
    pub fn push(&mut self, mark: Mark) {
        match self.pending.back_mut() {
            // A later mark of the same record supersedes one waiting for the same offset.
            Some((end, last)) if *end == self.last_end && last.record == mark.record => {
                *last = mark;
            }
            _ => self.pending.push_back((self.last_end, mark)),
        }
    }

    /// Takes the marks whose batches are all before `safe`.
    pub fn release(&mut self, safe: Offset) -> impl Iterator<Item = Mark> + '_ {
        let count = self
            .pending
            .iter()
            .take_while(|(end, _)| *end <= safe)
            .count();
        self.pending.drain(..count).map(|(_, mark)| mark)
    }

    /// How many marks wait.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no mark waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The end offset of everything published so far.
    pub fn last_end(&self) -> Offset {
        self.last_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(offset: u64) -> Checkpoint {
        Checkpoint {
            fingerprint: Fingerprint::of(b"head"),
            offset,
            tail: Some(7),
            dev: Some(1),
            inode: Some(2),
            orphan: None,
            path: "/var/log/a.log".into(),
            gzip: false,
            done: false,
            seen: 1_700_000_000,
        }
    }

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::new(dir.path(), "web/../logs");
        assert!(store.path().starts_with(dir.path().join("sources")));
        assert!(store.path().to_string_lossy().contains("web_.._logs"));
        assert!(store.load().unwrap().is_empty());
        assert!(store.save(vec![checkpoint(10)]).unwrap());
        assert!(
            !store.save(vec![checkpoint(10)]).unwrap(),
            "unchanged: skipped"
        );
        assert!(store.save(vec![checkpoint(20)]).unwrap());
        assert!(!store.temp.exists());
        let mut again = CheckpointStore::new(dir.path(), "web/../logs");
        assert_eq!(again.load().unwrap(), [checkpoint(20)]);
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.contains("\"offset\": 20"), "{text}");
        fs::write(store.path(), b"{ not json").unwrap();
        assert!(matches!(again.load(), Err(CheckpointError::Corrupt { .. })));
    }

    #[test]
    fn marks_are_released_in_order_once_safe() {
        let mut acks = Acks::new();
        let mark = |record, offset| Mark {
            record: RecordId(record),
            offset,
        };
        acks.published(Offset(10));
        acks.push(mark(1, 100));
        acks.published(Offset(20));
        acks.push(mark(2, 50));
        acks.push(mark(2, 60));
        assert_eq!(acks.len(), 2, "same record, same batch: superseded");
        assert!(acks.release(Offset(9)).next().is_none());
        assert_eq!(acks.release(Offset(15)).collect::<Vec<_>>(), [mark(1, 100)]);
        assert_eq!(acks.release(Offset(20)).collect::<Vec<_>>(), [mark(2, 60)]);
        assert!(acks.is_empty());
        assert_eq!(acks.last_end(), Offset(20));
    }
}
