//! The one gzip decoder for input sluice does not control: a reader that stops at a cap.
//!
//! A few hundred bytes of gzip can expand to gigabytes, so every decompression of a user's file
//! or a client's body goes through [`CappedGunzip`] (a [`Read`] that ends after `max` bytes of
//! output and remembers whether more was there) or [`gunzip_capped`] (a whole body into memory,
//! asking a budget for every piece). The file source, its fingerprints of rotated `.gz` files and
//! the http_server source use them; `clippy.toml` bans flate2's raw decoders everywhere else.
//! Multi-member streams (concatenated gzip files, as `cat a.gz b.gz` and the file sink write)
//! are read as one.

use std::io::{self, Read};

/// A gzip reader (one or more members) that ends after `max` decompressed bytes.
///
/// Reading past the cap returns 0 (end of data), never an error, so a capped stream reads like
/// a shorter one; [`CappedGunzip::was_capped`] tells the two apart.
pub struct CappedGunzip<R> {
    #[expect(
        clippy::disallowed_types,
        reason = "the capped reader is the one place a raw decoder is allowed"
    )]
    decoder: flate2::read::MultiGzDecoder<R>,
    remaining: u64,
    capped: bool,
}

impl<R: Read> CappedGunzip<R> {
    /// A reader of the gzip stream `input`, ending after `max` decompressed bytes.
    #[expect(
        clippy::disallowed_types,
        reason = "the capped reader is the one place a raw decoder is allowed"
    )]
    pub fn new(input: R, max: u64) -> Self {
        CappedGunzip {
            decoder: flate2::read::MultiGzDecoder::new(input),
            remaining: max,
            capped: false,
        }
    }

    /// Whether the cap cut the stream short: more output was there after `max` bytes.
    pub fn was_capped(&self) -> bool {
        self.capped
    }
}

impl<R> std::fmt::Debug for CappedGunzip<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CappedGunzip")
            .field("remaining", &self.remaining)
            .field("capped", &self.capped)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Read for CappedGunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // Only a real cut if more was there.
            let mut probe = [0u8; 1];
            if !self.capped && self.decoder.read(&mut probe)? > 0 {
                self.capped = true;
            }
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.decoder.read(&mut buf[..max])?;
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Why a gzip body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GunzipError {
    /// The body grows past the limit once decompressed (a gzip bomb, or a limit too low).
    #[error("body is larger than {max} bytes once decompressed")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The body is not gzip, or is cut short.
    #[error("body is not valid gzip: {message}")]
    Corrupt {
        /// What the decoder said.
        message: String,
    },
    /// The caller's memory budget has no room for the decompressed body.
    #[error("no memory budget left for the decompressed body")]
    NoBudget,
}

/// Decompresses `input` (one or more gzip members), never holding more than `max` bytes of
/// output. `reserve` is asked for every piece of output before it is kept and may refuse.
///
/// # Errors
/// [`GunzipError`]: too large, not gzip, or `reserve` refused.
pub fn gunzip_capped(
    input: &[u8],
    max: u64,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Result<Vec<u8>, GunzipError> {
    const CHUNK: usize = 32 * 1024;
    // One byte past the cap is enough to know the body is too large.
    let mut decoder = CappedGunzip::new(input, max.saturating_add(1));
    // Typical ratios for logs are 5-10x; start near it, never past the cap.
    let guess = (input.len() as u64).saturating_mul(6).min(max) as usize;
    let mut out = Vec::with_capacity(guess);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let read = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(GunzipError::Corrupt {
                    message: error.to_string(),
                });
            }
        };
        if (out.len() + read) as u64 > max {
            return Err(GunzipError::TooLarge { max });
        }
        if !reserve(read) {
            return Err(GunzipError::NoBudget);
        }
        out.extend_from_slice(&chunk[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_stream_at_the_cap_is_whole_and_one_byte_more_is_capped() {
        let wire = gzip(b"0123456789");
        let mut out = Vec::new();
        let mut exact = CappedGunzip::new(&wire[..], 10);
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0123456789");
        assert!(!exact.was_capped());

        out.clear();
        let mut short = CappedGunzip::new(&wire[..], 9);
        short.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"012345678");
        assert!(short.was_capped());
    }

    #[test]
    fn members_read_as_one_stream() {
        let mut wire = gzip(b"first\n");
        wire.extend(gzip(b"second\n"));
        let mut out = Vec::new();
        CappedGunzip::new(&wire[..], 1 << 20)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"first\nsecond\n");
    }

    #[test]
    fn gunzip_capped_refuses_bombs_bad_input_and_an_empty_budget() {
        let bomb = gzip(&vec![b'a'; 1 << 20]);
        assert_eq!(
            gunzip_capped(&bomb, 1000, &mut |_| true),
            Err(GunzipError::TooLarge { max: 1000 })
        );
        assert!(matches!(
            gunzip_capped(b"not gzip", 1000, &mut |_| true),
            Err(GunzipError::Corrupt { .. })
        ));
        assert_eq!(
            gunzip_capped(&gzip(b"x"), 1000, &mut |_| false),
            Err(GunzipError::NoBudget)
        );
        assert_eq!(
            gunzip_capped(&bomb, 1 << 20, &mut |_| true).unwrap().len(),
            1 << 20
        );
    }
}
