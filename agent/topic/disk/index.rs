//! The sparse offset index of a segment: where some records start, for fast seeks.
//!
//! One entry every `interval` bytes of segment (and always one for the first record) maps a
//! record's first offset and append time to its byte position. A lookup finds the last entry at
//! or before the wanted offset (or time) and scans forward from there, reading at most
//! `interval` bytes plus one record. Kept in memory (24 bytes an entry: 24 KiB for a 64 MiB
//! segment at the default 64 KiB interval) and appended to `<base>.index` beside the segment.
//!
//! The index file is only an accelerator. Each entry carries its own CRC32C; loading keeps the
//! valid prefix, and the log re-scans the segment from the last kept entry, adding what is
//! missing — so a missing, cut or corrupt index is rebuilt from the segment, never trusted
//! blindly.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Bytes of one entry in the index file: offset, position, time, CRC32C of those 24 bytes.
pub const ENTRY_LEN: usize = 28;

/// One index entry: the record starting at `position` has first offset `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The first offset of the record.
    pub offset: u64,
    /// Its byte position in the segment.
    pub position: u64,
    /// Its append time, in ms since the epoch.
    pub time_ms: i64,
}

impl IndexEntry {
    /// Appends the entry's on-disk form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<IndexEntry> {
        let field = |at: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(raw)
        };
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&bytes[24..28]);
        (crc32c::crc32c(&bytes[..24]) == u32::from_le_bytes(crc)).then(|| IndexEntry {
            offset: field(0),
            position: field(8),
            time_ms: field(16) as i64,
        })
    }
}

/// The in-memory index of one segment.
#[derive(Clone, Debug, Default)]
pub struct Index {
    entries: Vec<IndexEntry>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index::default()
    }

    /// Loads the valid prefix of an index file: entries whose CRC matches, with offsets,
    /// positions and times increasing, and positions below `segment_len`. A missing file gives
    /// an empty index.
    ///
    /// # Errors
    /// I/O errors other than the file not existing.
    pub fn load(path: &Path, segment_len: u64) -> io::Result<Index> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Index::new()),
            Err(error) => return Err(error),
        }
        let mut index = Index::new();
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            let Some(entry) = IndexEntry::decode(chunk) else {
                break;
            };
            let ordered = index.entries.last().is_none_or(|last| {
                entry.offset > last.offset
                    && entry.position > last.position
                    && entry.time_ms >= last.time_ms
            });
            if !ordered || entry.position >= segment_len {
                break;
            }
            index.entries.push(entry);
        }
        Ok(index)
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The last entry.
    pub fn last(&self) -> Option<&IndexEntry> {
        self.entries.last()
    }

    /// Records the record at `entry.position` if it is the first or at least `interval` bytes
    /// past the last entry. Returns the entry when it was added.
    pub fn maybe_add(&mut self, entry: IndexEntry, interval: u64) -> Option<IndexEntry> {
        let due = self
            .entries
            .last()
            .is_none_or(|last| entry.position >= last.position + interval.max(1));
        if due {
            self.entries.push(entry);
            Some(entry)
        } else {
            None
        }
    }

    /// Forgets the entries at or past `position` (the segment was cut there).
    pub fn truncate_at(&mut self, position: u64) {
        self.entries.retain(|entry| entry.position < position);
    }

    /// The last entry whose offset is at or before `offset`.
    pub fn floor_offset(&self, offset: u64) -> Option<&IndexEntry> {
        let after = self.entries.partition_point(|entry| entry.offset <= offset);
        after.checked_sub(1).map(|i| &self.entries[i])
    }

    /// The last entry appended strictly before `time_ms` (a scan from there finds the first
    /// record at or after it).
    pub fn floor_time(&self, time_ms: i64) -> Option<&IndexEntry> {
        let after = self
            .entries
            .partition_point(|entry| entry.time_ms < time_ms);
        after.checked_sub(1).map(|i| &self.entries[i])
    }

    /// The on-disk form of all entries.
    pub fn encode_all(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for entry in &self.entries {
            entry.encode(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, position: u64, time_ms: i64) -> IndexEntry {
        IndexEntry {
            offset,
            position,
            time_ms,
        }
    }

    #[test]
    fn sparse_entries_and_floor_lookups() {
        let mut index = Index::new();
        assert!(index.maybe_add(entry(0, 0, 10), 100).is_some());
        assert!(index.maybe_add(entry(5, 50, 20), 100).is_none());
        assert!(index.maybe_add(entry(9, 120, 30), 100).is_some());
        assert!(index.maybe_add(entry(20, 230, 40), 100).is_some());
        assert_eq!(index.floor_offset(0).unwrap().position, 0);
        assert_eq!(index.floor_offset(8).unwrap().position, 0);
        assert_eq!(index.floor_offset(9).unwrap().position, 120);
        assert_eq!(index.floor_offset(1000).unwrap().position, 230);
        assert!(index.floor_time(10).is_none(), "scan from the start");
        assert_eq!(index.floor_time(30).unwrap().offset, 0);
        assert_eq!(index.floor_time(31).unwrap().offset, 9);
        index.truncate_at(120);
        assert_eq!(index.entries().len(), 1);
    }

    #[test]
    fn loading_keeps_the_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = Index::new();
        for i in 0..4u64 {
            index.maybe_add(entry(i * 10, i * 100, i as i64), 1);
        }
        let mut bytes = index.encode_all();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Index::load(&path, 1000).unwrap().entries(), index.entries());
        assert_eq!(
            Index::load(&path, 250).unwrap().entries().len(),
            3,
            "positions past the segment's end are dropped"
        );
        bytes[ENTRY_LEN * 2 + 3] ^= 0xff;
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Index::load(&path, 1000).unwrap().entries().len(), 2);
        assert!(
            Index::load(&dir.path().join("missing.index"), 1000)
                .unwrap()
                .entries()
                .is_empty()
        );
    }
}
