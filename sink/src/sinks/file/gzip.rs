//! Gzip members written by hand, so a member can be ended at any acknowledged point, and mended
//! after a crash left it unfinished.

use super::*;
use std::io;

/// The 10-byte header of every gzip member: deflate, no flags, no mtime, unknown OS.
pub(super) const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final deflate block with fixed codes; ends a stream at a byte-aligned point.
pub(super) const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// The gzip member being written to an open file.
pub(super) struct GzipMember {
    /// Compresses into a buffer that is written to the file whole, once per batch.
    pub(super) encoder: DeflateEncoder<Vec<u8>>,
    /// CRC-32 and size of the acknowledged uncompressed bytes.
    pub(super) crc: Crc,
    /// Whether the header is in the file (the first batch carries it).
    pub(super) started: bool,
}

impl GzipMember {
    pub(super) fn new() -> Self {
        GzipMember {
            encoder: DeflateEncoder::new(GZIP_HEADER.to_vec(), flate2::Compression::default()),
            crc: Crc::new(),
            started: false,
        }
    }

    /// The bytes that end the member after the last acknowledged batch.
    pub(super) fn terminator(&self) -> [u8; 10] {
        member_terminator(&self.crc)
    }
}

/// The bytes that end a member at a sync-flush point: the final empty block, CRC-32 and size of
/// the uncompressed data `crc` has seen.
pub(super) fn member_terminator(crc: &Crc) -> [u8; 10] {
    let mut tail = [0u8; 10];
    tail[..2].copy_from_slice(&DEFLATE_END);
    tail[2..6].copy_from_slice(&crc.sum().to_le_bytes());
    tail[6..].copy_from_slice(&crc.amount().to_le_bytes());
    tail
}

impl fmt::Debug for GzipMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GzipMember")
            .field("bytes", &self.crc.amount())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// After a crash (`kill -9`, power loss) the last gzip member of `file` may be unfinished: its
/// acknowledged batches are there, each ending at a sync-flush point, perhaps followed by part of
/// a batch that was never acknowledged. Appending a member after that would leave the new data
/// unreadable to strict decoders, so this ends the member at its last whole batch — cutting the
/// unacknowledged tail and writing the terminator (CRC and size) — and returns the new length.
///
/// A file that decodes completely is left as it is. A damaged file that cannot be mended that way
/// (not written by this sink, or corrupt inside) is moved aside to `<name>.damaged-<unix ms>`,
/// with an error logged, and a new file is started: no data is overwritten.
pub(super) fn finish_crashed_member(file: &mut File, path: &Path, len: u64) -> io::Result<u64> {
    // Every member this sink ends closes with a sync flush, the final empty block, CRC and size.
    const CLEAN_END: [u8; 6] = [0x00, 0x00, 0xff, 0xff, 0x03, 0x00];
    if len >= 14 {
        let mut tail = [0u8; 14];
        file.seek(SeekFrom::Start(len - 14))?;
        file.read_exact(&mut tail)?;
        if tail[..6] == CLEAN_END {
            return Ok(len);
        }
    }
    file.seek(SeekFrom::Start(0))?;
    // Decoded into nothing: only whether the file decodes matters, so no cap is needed.
    if io::copy(
        &mut crate::gunzip::CappedGunzip::new(&mut *file, u64::MAX),
        &mut io::sink(),
    )
    .is_ok()
    {
        return Ok(len);
    }
    let mended = match last_member_start(file, len)? {
        Some(start) => match mend_member(file, start, len)? {
            Mended::Ended { keep, terminator } => Some((start + keep, Some(terminator))),
            // Nothing of it was acknowledged: drop it.
            Mended::NoBatch => Some((start, None)),
            Mended::Damaged => None,
        },
        None => None,
    };
    match mended {
        Some((keep, terminator)) => {
            file.set_len(keep)?;
            let mut mended_len = keep;
            if let Some(terminator) = terminator {
                file.write_all(&terminator)?;
                mended_len += terminator.len() as u64;
            }
            file.sync_data()?;
            tracing::warn!(
                path = %path.display(),
                length_before = len,
                length_after = mended_len,
                "Ended the gzip member a crash left unfinished, cutting what was never acknowledged"
            );
            Ok(mended_len)
        }
        None => {
            let aside = path.with_file_name(format!(
                "{}.damaged-{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                Utc::now().timestamp_millis()
            ));
            fs::rename(path, &aside)?;
            tracing::error!(
                path = %path.display(),
                moved_to = %aside.display(),
                "The gzip file is damaged and cannot be appended to; moved it aside and started a new one"
            );
            *file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(0)
        }
    }
}

/// Where the last member written by this sink (with its fixed header) starts in the first `len`
/// bytes of `file`, searching backwards a chunk at a time.
pub(super) fn last_member_start(file: &mut File, len: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 1 << 20;
    let overlap = GZIP_HEADER.len() as u64 - 1;
    let mut buffer = Vec::new();
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let read_end = (end + overlap).min(len);
        buffer.resize((read_end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buffer)?;
        if let Some(at) = buffer
            .windows(GZIP_HEADER.len())
            .rposition(|window| window == GZIP_HEADER)
        {
            return Ok(Some(start + at as u64));
        }
        end = start;
    }
    Ok(None)
}

/// How an unfinished member can be ended.
#[derive(Debug, PartialEq)]
pub(super) enum Mended {
    /// Keep its first `keep` bytes (header included), then write `terminator`.
    Ended { keep: u64, terminator: [u8; 10] },
    /// It holds no whole batch.
    NoBatch,
    /// No sync-flush point decodes to whole lines.
    Damaged,
}

/// Finds the last sync-flush point of the member at `start..len` in `file` up to which its
/// deflate data decodes to whole lines, and the terminator that ends the member there. Reads
/// the file in pieces: memory stays small however large the member is.
#[expect(
    clippy::disallowed_types,
    reason = "raw deflate of the sink's own member, decoded in chunks into a CRC: nothing is held"
)]
pub(super) fn mend_member<F: Read + Seek>(
    file: &mut F,
    start: u64,
    len: u64,
) -> io::Result<Mended> {
    const SYNC: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
    /// Sync points tried, from the last: a torn batch is cut at the first one.
    const ATTEMPTS: usize = 16;
    let body_start = start + GZIP_HEADER.len() as u64;
    if body_start >= len {
        return Ok(Mended::NoBatch);
    }
    // The ends (relative to `body_start`) of the last sync markers.
    let mut points = std::collections::VecDeque::with_capacity(ATTEMPTS);
    let mut chunk = vec![0u8; 1 << 16];
    let mut carried: Vec<u8> = Vec::new();
    let mut offset = 0u64; // where `carried` starts, relative to `body_start`
    file.seek(SeekFrom::Start(body_start))?;
    let mut body = (&mut *file).take(len - body_start);
    loop {
        let read = body.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        carried.extend_from_slice(&chunk[..read]);
        for (at, window) in carried.windows(SYNC.len()).enumerate() {
            if window == SYNC {
                if points.len() == ATTEMPTS {
                    points.pop_front();
                }
                points.push_back(offset + (at + SYNC.len()) as u64);
            }
        }
        let keep = (SYNC.len() - 1).min(carried.len());
        offset += (carried.len() - keep) as u64;
        carried.drain(..carried.len() - keep);
    }
    if points.is_empty() {
        return Ok(Mended::NoBatch);
    }
    for &end in points.iter().rev() {
        file.seek(SeekFrom::Start(body_start))?;
        let deflate = (&mut *file).take(end).chain(&DEFLATE_END[..]);
        let mut decoder = flate2::read::DeflateDecoder::new(io::BufReader::new(deflate));
        let mut crc = Crc::new();
        let mut last = None;
        let decoded = loop {
            match decoder.read(&mut chunk) {
                Ok(0) => break true,
                Ok(read) => {
                    crc.update(&chunk[..read]);
                    last = Some(chunk[read - 1]);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        if decoded && last == Some(b'\n') {
            return Ok(Mended::Ended {
                keep: GZIP_HEADER.len() as u64 + end,
                terminator: member_terminator(&crc),
            });
        }
    }
    Ok(Mended::Damaged)
}
