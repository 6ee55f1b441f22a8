//! Segments: the files a log is cut into, named by the offset of their first record.
//!
//! `00000000000000012345.log` holds records whose offsets start at 12345, back to back;
//! `00000000000000012345.index` is its sparse index. Only the last segment (the *active* one) is
//! appended to; the others are immutable until retention deletes them whole. This module knows
//! the names, the per-segment metadata, how to scan a segment (validating every record) and how
//! to read one record with `pread`.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::index::{Index, IndexEntry};
use super::record::{self, FRAME_LEN, HEADER_LEN, RecordError, RecordHeader};

/// Digits in a segment's file name: every `u64` fits, and names sort like offsets.
const NAME_DIGITS: usize = 20;

/// The path of the segment starting at `base`.
pub fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:0NAME_DIGITS$}.log"))
}

/// The path of the index of the segment starting at `base`.
pub fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:0NAME_DIGITS$}.index"))
}

/// The base offset in a segment or index file name, and whether it is a segment (`.log`).
pub fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (stem, is_log) = if let Some(stem) = name.strip_suffix(".log") {
        (stem, true)
    } else {
        (name.strip_suffix(".index")?, false)
    };
    if stem.len() != NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, is_log))
}

/// What the log knows of one segment. Shared by the writer (which grows the active one) and the
/// readers, under the log's segment lock.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The offset of its first record.
    pub base: u64,
    /// Valid bytes: records end here.
    pub len: u64,
    /// The offset after its last record (`base` when empty).
    pub end: u64,
    /// Append time of its first record.
    pub first_time_ms: Option<i64>,
    /// Append time of its last record.
    pub last_time_ms: Option<i64>,
    /// Its sparse index.
    pub index: Index,
}

impl SegmentInfo {
    /// An empty segment starting at `base`.
    pub fn new(base: u64) -> Self {
        SegmentInfo {
            base,
            len: 0,
            end: base,
            first_time_ms: None,
            last_time_ms: None,
            index: Index::new(),
        }
    }

    /// Takes a record appended at `position` into account.
    pub fn note_record(&mut self, header: &RecordHeader, position: u64, interval: u64) {
        self.index.maybe_add(
            IndexEntry {
                offset: header.first_offset,
                position,
                time_ms: header.time_ms,
            },
            interval,
        );
        self.len = position + header.record_len();
        self.end = header.end_offset();
        self.first_time_ms.get_or_insert(header.time_ms);
        self.last_time_ms = Some(header.time_ms);
    }
}

/// A record that failed validation during a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// Where it starts.
    pub position: u64,
    /// What was wrong.
    pub problem: Problem,
    /// Whether it reaches the end of the file: a torn write when in the active segment.
    pub reaches_end: bool,
}

/// What was wrong with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Its frame or body is invalid.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A valid record, but not at the offset the previous one ends at.
    #[error("record at offset {found}, expected {expected}")]
    Discontinuous {
        /// The offset expected.
        expected: u64,
        /// The offset found.
        found: u64,
    },
}

/// Validates segment `base` from the last entry of its `index` on (the whole file when the index
/// is empty, or when it points at something that is not the record it promised): the segment's
/// info and its first bad record, if any.
///
/// # Errors
/// The error of reading the file.
pub fn scan_indexed(
    file: &File,
    base: u64,
    index: Index,
    file_len: u64,
    interval: u64,
) -> io::Result<(SegmentInfo, Option<BadRecord>)> {
    let mut info = SegmentInfo::new(base);
    let mut resume = 0;
    if let (Some(first), Some(last_entry)) = (index.entries().first(), index.last()) {
        info.first_time_ms = Some(first.time_ms);
        info.len = last_entry.position;
        info.end = last_entry.offset;
        resume = last_entry.position;
        info.index = index;
    }
    let mut bad = scan(file, &mut info, resume, file_len, interval)?;
    if resume > 0 && bad.is_some_and(|bad| bad.position == resume) {
        // The index pointed at something that is not the record it promised: distrust it.
        info = SegmentInfo::new(base);
        bad = scan(file, &mut info, 0, file_len, interval)?;
    }
    Ok((info, bad))
}

/// Scans `file` from `position` (where a record whose first offset is `info.end` starts) to
/// `file_len`, checking every record and adding it to `info`. Stops at the first bad record and
/// returns it; `info.len` is then where the valid records end.
///
/// # Errors
/// I/O errors reading the file.
pub fn scan(
    file: &File,
    info: &mut SegmentInfo,
    position: u64,
    file_len: u64,
    interval: u64,
) -> io::Result<Option<BadRecord>> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(position))?;
    let mut at = position;
    let mut buffer = Vec::new();
    while at < file_len {
        let available = file_len - at;
        let bad = |problem: Problem, reaches_end: bool| BadRecord {
            position: at,
            problem,
            reaches_end,
        };
        if available < FRAME_LEN as u64 {
            return Ok(Some(bad(
                RecordError::Incomplete {
                    needed: FRAME_LEN as u64,
                    available,
                }
                .into(),
                true,
            )));
        }
        buffer.resize(FRAME_LEN, 0);
        reader.read_exact(&mut buffer)?;
        let body_len = match record::parse_frame(&buffer) {
            Ok((body_len, _)) => body_len,
            Err(error) => {
                // Zeros to the end are a preallocated or half-written tail.
                let rest_is_zero = rest_is_zero(&mut reader, available - FRAME_LEN as u64)?
                    && buffer.iter().all(|b| *b == 0);
                return Ok(Some(bad(error.into(), rest_is_zero)));
            }
        };
        let record_len = FRAME_LEN as u64 + u64::from(body_len);
        if record_len > available {
            return Ok(Some(bad(
                RecordError::Incomplete {
                    needed: record_len,
                    available,
                }
                .into(),
                true,
            )));
        }
        buffer.resize(record_len as usize, 0);
        reader.read_exact(&mut buffer[FRAME_LEN..])?;
        let reaches_end = at + record_len == file_len;
        let header = match record::parse(&buffer) {
            Ok(header) => header,
            Err(error) => return Ok(Some(bad(error.into(), reaches_end))),
        };
        if header.first_offset != info.end {
            let problem = Problem::Discontinuous {
                expected: info.end,
                found: header.first_offset,
            };
            return Ok(Some(bad(problem, reaches_end)));
        }
        info.note_record(&header, at, interval);
        at += record_len;
    }
    Ok(None)
}

fn rest_is_zero(reader: &mut impl Read, len: u64) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let mut left = len;
    while left > 0 {
        let n = chunk.len().min(left as usize);
        reader.read_exact(&mut chunk[..n])?;
        if chunk[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        left -= n as u64;
    }
    Ok(true)
}

/// Reads the header of the record at `position`, checking only its frame's length against
/// `limit` (the segment's valid length).
///
/// # Errors
/// I/O errors; a record that cannot be there is an `InvalidData` error.
pub fn read_header(file: &File, position: u64, limit: u64) -> io::Result<RecordHeader> {
    let mut header = [0u8; HEADER_LEN];
    if position + HEADER_LEN as u64 > limit {
        return Err(invalid(RecordError::Incomplete {
            needed: HEADER_LEN as u64,
            available: limit.saturating_sub(position),
        }));
    }
    file.read_exact_at(&mut header, position)?;
    let (body_len, _) = record::parse_frame(&header).map_err(invalid)?;
    let header = RecordHeader {
        first_offset: u64::from_le_bytes(header[9..17].try_into().map_err(invalid)?),
        events: u32::from_le_bytes(header[17..21].try_into().map_err(invalid)?),
        time_ms: i64::from_le_bytes(header[21..29].try_into().map_err(invalid)?),
        body_len,
    };
    if position + header.record_len() > limit || header.events == 0 {
        return Err(invalid(RecordError::BadLength { len: body_len }));
    }
    Ok(header)
}

/// Reads and checks the whole record at `position`, returning its header and payload.
///
/// # Errors
/// I/O errors; `InvalidData` wrapping a [`RecordError`] when the record is bad.
pub fn read_record(
    file: &File,
    position: u64,
    limit: u64,
    expected: &RecordHeader,
) -> io::Result<(RecordHeader, Bytes)> {
    let mut bytes = BytesMut::zeroed(expected.record_len() as usize);
    if position + expected.record_len() > limit {
        return Err(invalid(RecordError::BadLength {
            len: expected.body_len,
        }));
    }
    file.read_exact_at(&mut bytes, position)?;
    let header = record::parse(&bytes).map_err(invalid)?;
    let bytes = bytes.freeze();
    Ok((header, bytes.slice(HEADER_LEN..)))
}

fn invalid(error: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_offsets_and_parse_back() {
        let dir = Path::new("/x");
        let path = log_path(dir, 12345);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000012345.log");
        assert_eq!(parse_name(name), Some((12345, true)));
        assert_eq!(
            parse_name("00000000000000012345.index"),
            Some((12345, false))
        );
        assert_eq!(parse_name("12345.log"), None);
        assert_eq!(parse_name("0000000000000001234x.log"), None);
        assert!(log_path(dir, 9) < log_path(dir, 10));
    }
}
