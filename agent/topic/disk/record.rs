//! Record framing: one record per batch, with a length, a CRC32C and a format version.
//!
//! ```text
//! record := len:u32le  crc:u32le  body
//! body   := version:u8  first_offset:u64le  events:u32le  time_ms:i64le  payload
//! ```
//!
//! `len` is the length of `body`; `crc` is the CRC32C (Castagnoli) of `body`. The payload is a
//! batch in the binary encoding (`sluice_pipelines::codec::binary`). A record is written with one
//! `write` together with the others of its group, so a crash can leave a *torn* record at the end
//! of the active segment: a header or body cut short, or a full-length body whose bytes did not all
//! reach the disk (the CRC tells).

/// The version byte of the record body.
pub const RECORD_VERSION: u8 = 1;

/// Bytes before the body: length and CRC.
pub const FRAME_LEN: usize = 8;

/// Bytes of the body before the payload.
pub const BODY_HEADER_LEN: usize = 1 + 8 + 4 + 8;

/// Bytes of a record before its payload.
pub const HEADER_LEN: usize = FRAME_LEN + BODY_HEADER_LEN;

/// Largest body accepted when reading; anything larger is corruption (a batch is capped far
/// below this by the topic's sizes).
pub const MAX_BODY_LEN: usize = 1 << 30;

/// What a record says about itself, without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// The offset of the batch's first event.
    pub first_offset: u64,
    /// How many events the batch holds (at least one).
    pub events: u32,
    /// When the batch was appended, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Length of the body (version, offsets, time and payload).
    pub body_len: u32,
}

impl RecordHeader {
    /// The offset after the batch's last event.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + u64::from(self.events)
    }

    /// Bytes the whole record takes in the segment.
    pub fn record_len(&self) -> u64 {
        FRAME_LEN as u64 + u64::from(self.body_len)
    }

    /// Bytes of the payload.
    #[cfg(test)]
    pub fn payload_len(&self) -> usize {
        self.body_len as usize - BODY_HEADER_LEN
    }
}

/// Starts a record at the end of `out`, reserving its header; append the payload after it, then
/// call [`finish`] with the returned position.
pub fn start(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.resize(at + HEADER_LEN, 0);
    at
}

/// Fills the header of the record started at `at` (its payload runs to the end of `out`).
/// Returns the header, or `None` if the body is larger than [`MAX_BODY_LEN`] (the caller then
/// drops the record: `out` is truncated back to `at`).
pub fn finish(
    out: &mut Vec<u8>,
    at: usize,
    first_offset: u64,
    events: u32,
    time_ms: i64,
) -> Option<RecordHeader> {
    let body_len = out.len() - at - FRAME_LEN;
    if body_len > MAX_BODY_LEN {
        out.truncate(at);
        return None;
    }
    let body_start = at + FRAME_LEN;
    out[body_start] = RECORD_VERSION;
    out[body_start + 1..body_start + 9].copy_from_slice(&first_offset.to_le_bytes());
    out[body_start + 9..body_start + 13].copy_from_slice(&events.to_le_bytes());
    out[body_start + 13..body_start + 21].copy_from_slice(&time_ms.to_le_bytes());
    let crc = crc32c::crc32c(&out[body_start..]);
    out[at..at + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    Some(RecordHeader {
        first_offset,
        events,
        time_ms,
        body_len: body_len as u32,
    })
}

/// Why bytes are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The input ends before the record does (a torn write when at the end of a segment).
    #[error("record cut short: {needed} bytes needed, {available} available")]
    Incomplete {
        /// Bytes the record needs from its start.
        needed: u64,
        /// Bytes there are.
        available: u64,
    },
    /// A length that no record has (zero, too short for the header, or beyond the maximum).
    #[error("invalid record length {len}")]
    BadLength {
        /// The length read.
        len: u32,
    },
    /// The body does not match its checksum.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC in the frame.
        stored: u32,
        /// The CRC of the body read.
        computed: u32,
    },
    /// A version byte this build does not read.
    #[error("unsupported record version {found}")]
    Version {
        /// The version found.
        found: u8,
    },
    /// A batch of no events.
    #[error("record of zero events")]
    Empty,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Reads the frame at the start of `bytes` (at least [`FRAME_LEN`] of them): the body length
/// and the stored CRC.
///
/// # Errors
/// [`RecordError::Incomplete`] if `bytes` is shorter than a frame, [`RecordError::BadLength`] for
/// a length no record has.
pub fn parse_frame(bytes: &[u8]) -> Result<(u32, u32), RecordError> {
    if bytes.len() < FRAME_LEN {
        return Err(RecordError::Incomplete {
            needed: FRAME_LEN as u64,
            available: bytes.len() as u64,
        });
    }
    let len = u32_at(bytes, 0);
    if (len as usize) < BODY_HEADER_LEN + 1 || len as usize > MAX_BODY_LEN {
        return Err(RecordError::BadLength { len });
    }
    Ok((len, u32_at(bytes, 4)))
}

/// Checks a whole record: `bytes` starts with the frame and holds at least the body.
/// Returns the header; the payload is `bytes[HEADER_LEN..header.record_len()]`.
///
/// # Errors
/// [`RecordError`] when the record is incomplete or invalid.
pub fn parse(bytes: &[u8]) -> Result<RecordHeader, RecordError> {
    let (body_len, stored) = parse_frame(bytes)?;
    let needed = FRAME_LEN as u64 + u64::from(body_len);
    if (bytes.len() as u64) < needed {
        return Err(RecordError::Incomplete {
            needed,
            available: bytes.len() as u64,
        });
    }
    let body = &bytes[FRAME_LEN..needed as usize];
    let computed = crc32c::crc32c(body);
    if computed != stored {
        return Err(RecordError::Checksum { stored, computed });
    }
    parse_body_header(body, body_len)
}

/// Reads the body header (after the CRC was checked).
fn parse_body_header(body: &[u8], body_len: u32) -> Result<RecordHeader, RecordError> {
    if body[0] != RECORD_VERSION {
        return Err(RecordError::Version { found: body[0] });
    }
    let events = u32_at(body, 9);
    if events == 0 {
        return Err(RecordError::Empty);
    }
    Ok(RecordHeader {
        first_offset: u64_at(body, 1),
        events,
        time_ms: u64_at(body, 13) as i64,
        body_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let at = start(&mut out);
        out.extend_from_slice(payload);
        finish(&mut out, at, 42, 3, 1_700_000_000_000).unwrap();
        out
    }

    #[test]
    fn records_round_trip() {
        let bytes = record(b"payload");
        let header = parse(&bytes).unwrap();
        assert_eq!(header.first_offset, 42);
        assert_eq!(header.events, 3);
        assert_eq!(header.end_offset(), 45);
        assert_eq!(header.time_ms, 1_700_000_000_000);
        assert_eq!(header.record_len(), bytes.len() as u64);
        assert_eq!(&bytes[HEADER_LEN..], b"payload");
        assert_eq!(header.payload_len(), 7);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = record(b"some payload bytes");
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                assert!(parse(&bad).is_err(), "flip of bit {bit} at {at} undetected");
            }
        }
    }

    #[test]
    fn cut_records_are_incomplete_and_zeros_are_bad_lengths() {
        let bytes = record(b"payload");
        for cut in 0..bytes.len() {
            assert!(matches!(
                parse(&bytes[..cut]),
                Err(RecordError::Incomplete { .. })
            ));
        }
        assert_eq!(
            parse(&[0; 64]),
            Err(RecordError::BadLength { len: 0 }),
            "preallocated zeros"
        );
    }
}
