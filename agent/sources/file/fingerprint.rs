//! File identity: the first bytes of a file (its *head*), a checksum of them (its
//! [`Fingerprint`]), and its device and inode ([`FileKey`]).
//!
//! A path says nothing about identity: logrotate renames `access.log` to `access.log.1` and
//! creates a new `access.log`; copytruncate copies the content to a new file and empties the
//! old one in place. The tailer therefore identifies content by its head (up to
//! `fingerprint_bytes`, 1 KiB by default), keeps the head itself in memory to compare files
//! exactly, and persists only its checksum and length. The inode is the tie-breaker between
//! files with the same head: a file whose head equals that of a file being read, under another
//! inode, is a copy only if the original was truncated or deleted meanwhile (see the tailer).
//!
//! A file shorter than `fingerprint_bytes` has a shorter head; the head grows as the file does,
//! and a fingerprint records how many bytes it covers, so a checkpointed fingerprint is compared
//! with the same number of bytes of a file found later. An empty file has no identity yet and is
//! looked at again once it has bytes.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sluice_sink::gunzip::CappedGunzip;

/// Device and inode of a file: what stays the same across a rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    /// The device.
    pub dev: u64,
    /// The inode.
    pub ino: u64,
}

impl FileKey {
    /// The key of the file `metadata` describes.
    #[cfg(unix)]
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }

    /// The key of the file `metadata` describes (no inodes here: the modification time stands
    /// in, which is weaker).
    #[cfg(not(unix))]
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        let nanos = metadata
            .created()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos() as u64);
        FileKey { dev: 0, ino: nanos }
    }
}

/// How many hard links a file has; 0 once it is deleted while still open.
#[cfg(unix)]
pub fn link_count(metadata: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    metadata.nlink()
}

/// How many hard links a file has (always 1 where that cannot be known).
#[cfg(not(unix))]
pub fn link_count(_metadata: &std::fs::Metadata) -> u64 {
    1
}

/// A checksum of a file's first `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// The 64-bit FNV-1a checksum of the bytes, as 16 hex digits.
    #[serde(with = "hex")]
    pub checksum: u64,
    /// How many bytes it covers.
    pub len: u32,
}

impl Fingerprint {
    /// The fingerprint of `head`.
    pub fn of(head: &[u8]) -> Self {
        Fingerprint {
            checksum: fnv1a(head),
            len: u32::try_from(head.len()).unwrap_or(u32::MAX),
        }
    }

    /// Whether `head` starts with the bytes this fingerprint was taken of.
    pub fn matches(&self, head: &[u8]) -> bool {
        let len = self.len as usize;
        head.len() >= len && fnv1a(&head[..len]) == self.checksum
    }
}

/// 64-bit FNV-1a: stable across versions and platforms (it is persisted), and fast enough for
/// at most a few KiB per file.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Whether a copy of `original` could start with `head`: `head` is no longer than `original`'s
/// head and equal to its start.
pub fn could_be_copy_of(head: &[u8], original: &[u8]) -> bool {
    !head.is_empty() && head.len() <= original.len() && original.starts_with(head)
}

/// Reads up to `max` bytes from the start of `file` (without moving a shared position: it uses
/// positioned reads where available).
///
/// # Errors
/// The read error.
pub fn read_head(file: &File, max: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0; max];
    let mut filled = 0;
    while filled < max {
        match read_at(file, &mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// Bytes before a resume offset that a checksum covers, to tell whether another file holds the
/// same content up to that offset.
pub const TAIL_BYTES: u64 = 64;

/// The checksum of the (up to [`TAIL_BYTES`]) bytes of `file` just before `end`: with the head,
/// what says that another file is the same content up to `end`. `None` when the file is shorter.
///
/// # Errors
/// The read error.
pub fn read_tail(file: &File, end: u64) -> io::Result<Option<u64>> {
    let len = end.min(TAIL_BYTES) as usize;
    let mut tail = vec![0; len];
    let mut filled = 0;
    while filled < len {
        match read_at(file, &mut tail[filled..], end - len as u64 + filled as u64) {
            Ok(0) => return Ok(None),
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Some(fnv1a(&tail)))
}

/// Reads into `buf` from byte `offset` of `file`, without moving a shared position where the
/// platform allows.
///
/// # Errors
/// The read error.
#[cfg(unix)]
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

/// Reads into `buf` from byte `offset` of `file`.
///
/// # Errors
/// The read error.
#[cfg(not(unix))]
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// Opens `path` and reads its head: the first `max` bytes, decompressed for gzip. `gzip` says
/// what the file is known to be; `None` tells by its magic number.
///
/// # Errors
/// The error of opening or reading it.
pub fn open_with_head(
    path: &Path,
    max: usize,
    gzip: impl Into<Option<bool>>,
) -> std::io::Result<(File, Vec<u8>, bool)> {
    let handle = File::open(path)?;
    let raw = read_head(&handle, max)?;
    let gzip = gzip.into().unwrap_or_else(|| is_gzip(&raw));
    let head = if gzip {
        read_gzip_head(path, max)?
    } else {
        raw
    };
    Ok((handle, head, gzip))
}

/// Whether the bytes start with the gzip magic number.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// The head of a gzip file: its first `max` *decompressed* bytes, so a compressed rotated file
/// is recognised as the file it was compressed from. A stream that ends early gives what it had.
///
/// # Errors
/// The error of opening or reading the file; a corrupt stream gives the bytes decoded before it.
pub fn read_gzip_head(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut decoder = CappedGunzip::new(io::BufReader::new(file), max as u64);
    let mut head = vec![0; max];
    let mut filled = 0;
    while filled < max {
        match decoder.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if filled > 0 => break,
            Err(error) => return Err(error),
        }
    }
    head.truncate(filled);
    Ok(head)
}

pub(crate) mod hex_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.serialize_str(&format!("{value:016x}")),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| u64::from_str_radix(&text, 16).map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_compare_the_bytes_they_cover() {
        let short = Fingerprint::of(b"hello\n");
        assert_eq!(short.len, 6);
        assert!(short.matches(b"hello\nworld\n"));
        assert!(!short.matches(b"hello"));
        assert!(!short.matches(b"hellO\nworld\n"));
        assert_eq!(Fingerprint::of(b"").len, 0);
        // Known FNV-1a value: stable on disk.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn copies_start_with_the_original() {
        assert!(could_be_copy_of(b"head\n", b"head\nmore\n"));
        assert!(could_be_copy_of(b"head\nmore\n", b"head\nmore\n"));
        assert!(!could_be_copy_of(b"head\nmore\nand more", b"head\nmore\n"));
        assert!(!could_be_copy_of(b"head\nother", b"head\nmore\n"));
        assert!(!could_be_copy_of(b"", b"x"));
    }

    #[test]
    fn fingerprints_round_trip_as_json() {
        let fingerprint = Fingerprint::of(b"abc");
        let text = serde_json::to_string(&fingerprint).unwrap();
        assert!(text.contains("\"checksum\":\""), "{text}");
        assert_eq!(
            serde_json::from_str::<Fingerprint>(&text).unwrap(),
            fingerprint
        );
    }
}
