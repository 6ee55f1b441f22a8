//! One open file being read: its input (plain, or gzip through a capped decoder), its read
//! position, its line splitter and what turns lines into events.
//!
//! A [`FileReader`] does blocking I/O and is driven by the tailer's thread. It reads
//! [`READ_CHUNK`] chunks straight into its splitter's buffer, at most as many bytes as the caller
//! says the file has beyond the position (so a file that grew by a few bytes costs a read of a
//! few bytes, not a 256 KiB allocation), until a byte budget is used up or the data ends.
//!
//! Each line then goes through, in order: the `long_lines` rule (a truncated line is kept or
//! dropped and counted), multiline joining, and the UTF-8 check (invalid sequences become
//! U+FFFD and the line is counted in `invalid_utf8`), before it becomes an event in the caller's
//! [`BatchBuilder`].
//!
//! The reader knows nothing of paths, identity, rotation or checkpoints; it reports where reading
//! must start again to lose nothing ([`FileReader::resume_offset`]), which the tailer turns into
//! checkpoints.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::time::Instant;

use bytes::Bytes;
use sluice_sink::gunzip::CappedGunzip;

use super::config::LongLines;
use super::multiline::{Multiline, MultilineSettings};
use crate::sources::lines::{BatchBuilder, LineEvents, LineFormat, LineSplitter, READ_CHUNK};

/// What one [`FileReader::read`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes read from the input (decompressed bytes for gzip).
    pub read: u64,
    /// The input had no more data for now.
    pub eof: bool,
}

/// Lines a reader dropped or changed, taken with [`FileReader::take_counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCounts {
    /// Over-long lines dropped (`long_lines = "skip"`).
    pub skipped: u64,
    /// Lines with invalid UTF-8, kept with U+FFFD in place of the bad bytes.
    pub invalid_utf8: u64,
}

/// How a reader turns lines into events.
#[derive(Clone, Debug)]
pub struct LineOptions {
    /// How the stream is cut.
    pub format: LineFormat,
    /// What happens to over-long lines.
    pub long_lines: LongLines,
    /// Multiline joining, if any.
    pub multiline: Option<MultilineSettings>,
}

enum Input {
    Plain(File),
    Gzip(Box<CappedGunzip<BufReader<File>>>),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Plain(file) => f.debug_tuple("Plain").field(file).finish(),
            Input::Gzip(_) => f.write_str("Gzip"),
        }
    }
}

/// An open file, its read position, and what cuts it into events.
#[derive(Debug)]
pub struct FileReader {
    input: Input,
    /// Bytes of the input consumed so far: where the next read starts.
    position: u64,
    splitter: LineSplitter,
    multiline: Option<Multiline>,
    events: LineEvents,
    long_lines: LongLines,
    counts: LineCounts,
    /// The resume offset when each batch closed, in order: where the batch ends.
    batch_ends: Vec<u64>,
}

impl FileReader {
    /// A reader of the plain file `file`, starting at byte `position`.
    ///
    /// # Errors
    /// The error of seeking.
    pub fn plain(
        mut file: File,
        position: u64,
        options: &LineOptions,
        events: LineEvents,
    ) -> io::Result<Self> {
        file.seek(SeekFrom::Start(position))?;
        Ok(Self::new(Input::Plain(file), position, options, events))
    }

    /// A reader of the gzip file `file`, decompressing at most `cap` bytes, starting at
    /// decompressed byte `position` (the bytes before it are decompressed and dropped).
    ///
    /// # Errors
    /// The error of reading or decompressing up to `position`.
    pub fn gzip(
        file: File,
        position: u64,
        cap: u64,
        options: &LineOptions,
        events: LineEvents,
    ) -> io::Result<Self> {
        let mut decoder = CappedGunzip::new(BufReader::with_capacity(64 << 10, file), cap);
        let skipped = io::copy(&mut (&mut decoder).take(position), &mut io::sink())?;
        Ok(Self::new(
            Input::Gzip(Box::new(decoder)),
            skipped,
            options,
            events,
        ))
    }

    fn new(input: Input, position: u64, options: &LineOptions, events: LineEvents) -> Self {
        FileReader {
            input,
            position,
            splitter: LineSplitter::new(&options.format, position),
            multiline: options
                .multiline
                .clone()
                .map(|settings| Multiline::new(settings, options.format.max_line_bytes())),
            events,
            long_lines: options.long_lines,
            counts: LineCounts::default(),
            batch_ends: Vec::new(),
        }
    }

    /// The open file, for a plain file (gzip files are never checked for growth).
    pub fn file(&self) -> Option<&File> {
        match &self.input {
            Input::Plain(file) => Some(file),
            Input::Gzip(_) => None,
        }
    }

    /// Takes the open plain file back.
    pub fn into_file(self) -> Option<File> {
        match self.input {
            Input::Plain(file) => Some(file),
            Input::Gzip(_) => None,
        }
    }

    /// Whether this reads a gzip file.
    pub fn is_gzip(&self) -> bool {
        matches!(self.input, Input::Gzip(_))
    }

    /// Whether the gzip decompression cap cut the file short.
    pub fn was_capped(&self) -> bool {
        match &self.input {
            Input::Gzip(decoder) => decoder.was_capped(),
            Input::Plain(_) => false,
        }
    }

    /// Bytes of the input consumed so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Where reading must start again to lose nothing not yet emitted: the first line of a held
    /// multiline event, the held partial line, or the over-long line being skipped.
    pub fn resume_offset(&self) -> u64 {
        let split = self.splitter.resume_offset();
        match self.multiline.as_ref().and_then(Multiline::held_offset) {
            Some(held) => held.min(split),
            None => split,
        }
    }

    /// Bytes read but not yet emitted as a line.
    pub fn pending_bytes(&self) -> usize {
        self.splitter.pending_bytes()
    }

    /// When a held multiline event times out, if one is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.multiline.as_ref().and_then(Multiline::deadline)
    }

    /// Takes the resume offsets at which the batches closed in `out` since the last call ended:
    /// the *n*-th batch taken from `out` holds every line before the *n*-th offset (and the
    /// batch still open when `out` is taken ends at [`FileReader::resume_offset`]).
    pub fn take_batch_ends(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.batch_ends)
    }

    /// Takes the counts of dropped and changed lines.
    pub fn take_counts(&mut self) -> LineCounts {
        std::mem::take(&mut self.counts)
    }

    /// Reads until about `budget` bytes were read or the input has no more data, adding every
    /// complete line to `out`. `available` is how many bytes the file has past the position, if
    /// known (plain files): no more is asked for, and reaching it is the end for now.
    ///
    /// # Errors
    /// The error of reading. Lines completed before it are in `out`.
    pub fn read(
        &mut self,
        budget: u64,
        available: Option<u64>,
        now: Instant,
        out: &mut BatchBuilder,
    ) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome::default();
        loop {
            let left = available.map(|available| available.saturating_sub(outcome.read));
            if left == Some(0) {
                outcome.eof = true;
                break;
            }
            let max = left.map_or(READ_CHUNK, |left| {
                usize::try_from(left).unwrap_or(READ_CHUNK).min(READ_CHUNK)
            });
            let read = match &mut self.input {
                Input::Plain(file) => self.splitter.read_from(file, max)?,
                Input::Gzip(decoder) => self.splitter.read_from(decoder.as_mut(), max)?,
            };
            self.position += read as u64;
            outcome.read += read as u64;
            while let Some(line) = self.splitter.next_line() {
                self.emit(line, now, out);
            }
            if read == 0 {
                outcome.eof = true;
                break;
            }
            if outcome.read >= budget {
                break;
            }
        }
        if outcome.eof && self.splitter.pending_bytes() == 0 {
            self.splitter.release_memory();
        }
        Ok(outcome)
    }

    /// Emits everything held: the last line without delimiter and the held multiline event.
    /// For a file that ended for good (deleted, renamed away, gzip, `follow = false`).
    pub fn finish(&mut self, out: &mut BatchBuilder) {
        let now = Instant::now();
        while let Some(line) = self.splitter.finish() {
            self.emit(line, now, out);
        }
        if let Some(line) = self.multiline.as_mut().and_then(Multiline::flush) {
            self.push(line, out);
        }
    }

    /// Emits the held multiline event if it timed out; returns whether it did.
    pub fn flush_if_due(&mut self, now: Instant, out: &mut BatchBuilder) -> bool {
        match self.multiline.as_mut().and_then(|m| m.flush_if_due(now)) {
            Some(line) => {
                self.push(line, out);
                true
            }
            None => false,
        }
    }

    fn emit(&mut self, line: crate::sources::lines::Line, now: Instant, out: &mut BatchBuilder) {
        if line.truncated && self.long_lines == LongLines::Skip {
            self.counts.skipped += 1;
            return;
        }
        let line = match &mut self.multiline {
            Some(multiline) => match multiline.push(line, now) {
                Some(done) => done,
                None => return,
            },
            None => line,
        };
        self.push(line, out);
    }

    #[inline]
    fn push(&mut self, mut line: crate::sources::lines::Line, out: &mut BatchBuilder) {
        if std::str::from_utf8(&line.bytes).is_err() {
            self.counts.invalid_utf8 += 1;
            line.bytes = Bytes::from(String::from_utf8_lossy(&line.bytes).into_owned());
        }
        let closed = out.closed_batches();
        out.push(&self.events, line);
        if out.closed_batches() > closed {
            self.batch_ends.push(self.resume_offset());
        }
    }
}
