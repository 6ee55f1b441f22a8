//! Cutting byte streams into line events without copying the lines.
//!
//! Every line-oriented source (`file`, `stdin`) reads through the same three pieces:
//! - [`LineSplitter`] owns one growing [`BytesMut`]. A reader reads large chunks straight into
//!   its spare capacity ([`LineSplitter::read_from`]); lines are found with `memchr` (or
//!   `memmem` for a multi-byte delimiter) and cut off the front with `split_to` + `freeze`, so
//!   each line is a [`Bytes`] slice of the chunk it was read into: no copy and no allocation per
//!   line. Only the trailing partial line is ever moved, when the next chunk needs a fresh
//!   allocation.
//! - [`LineEvents`] turns a [`Line`] into an [`Event`], adding the optional path and offset fields.
//! - [`BatchBuilder`] groups events into batches of at most [`BATCH_EVENTS`] events, closing a
//!   batch early once it holds [`BATCH_BYTES`] raw bytes, so long lines cannot make a batch huge.
//!
//! # Line rules
//!
//! The stream is cut at every occurrence of the delimiter, searched left to right. With the
//! default delimiter `\n`, one trailing `\r` is removed from each line (CRLF files). A line whose
//! content is longer than `max_line_bytes` is cut to its first `max_line_bytes` bytes, flagged
//! [`Line::truncated`], and the rest of it is skipped up to the next delimiter, without ever
//! buffering more than `max_line_bytes` plus one chunk: an endless line cannot stall or exhaust
//! memory. The truncated prefix is emitted as soon as the line is known to be too long. A final
//! piece without a delimiter is held until more input comes, and emitted by
//! [`LineSplitter::finish`] at the end of the input. Bytes are never validated as UTF-8;
//! encoders deal with invalid text.
//!
//! # Blank lines
//!
//! One rule for every source that reads lines (`file`, `stdin`, and the `http_server` and
//! `http_poll` bodies): a line that is empty or holds only ASCII whitespace (space, `\t`, `\r`,
//! `\n`, form feed), once its delimiter and the trailing `\r` are removed, is not an event
//! ([`is_blank`]). The splitter still cuts such lines (offsets and multiline joining see them: a
//! blank line inside a stack trace stays part of it); [`BatchBuilder::push`] leaves them out. Any
//! other line is kept exactly as read, leading and trailing spaces included.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;
use sluice_pipelines::{Batch, BuildError, Event, EventMeta, FieldName, SourceId, Str, Value};

use super::BATCH_EVENTS;

/// How many bytes a reader asks for in one `read` call.
pub const READ_CHUNK: usize = 256 * 1024;

/// Raw bytes that close a batch: a batch is closed once it holds [`BATCH_EVENTS`] events or at
/// least this many bytes, whichever comes first.
pub const BATCH_BYTES: usize = 1 << 20;

/// Most bytes accepted as a line delimiter.
pub const MAX_DELIMITER_BYTES: usize = 16;

/// The default line delimiter.
pub const DEFAULT_DELIMITER: &str = "\n";

/// The default longest line, in bytes (1 MiB).
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;

/// Whether `line` is blank: empty or only ASCII whitespace. Blank lines are not events (see
/// the module doc); the first byte decides for nearly every real line.
#[inline]
pub fn is_blank(line: &[u8]) -> bool {
    match line.first() {
        None => true,
        Some(first) if !first.is_ascii_whitespace() => false,
        Some(_) => line.iter().all(u8::is_ascii_whitespace),
    }
}

/// The lines of a whole body already in memory (an NDJSON request or answer) as `(1-based
/// number, trimmed slice)`, skipping blank ones ([`is_blank`]): what the `http_server` and
/// `http_poll` sources decode NDJSON from, so a line number means the same in both.
pub fn numbered_lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    let mut number = 0;
    std::iter::from_fn(move || {
        while start < body.len() {
            let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |at| start + at);
            let line = &body[start..end];
            start = end + 1;
            number += 1;
            let line = line.trim_ascii();
            if !line.is_empty() {
                return Some((number, line));
            }
        }
        None
    })
}

/// How a byte stream is cut into lines: the delimiter and the longest line kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineFormat {
    delimiter: Box<[u8]>,
    max_line_bytes: usize,
}

/// Why a [`LineFormat`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct LineFormatError {
    /// The config key at fault: `line_delimiter` or `max_line_bytes`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl LineFormatError {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        LineFormatError {
            key,
            message: message.into(),
        }
    }
}

impl From<LineFormatError> for BuildError {
    fn from(error: LineFormatError) -> Self {
        BuildError::at(error.key, error.message)
    }
}

impl LineFormat {
    /// Checks a delimiter and a line limit as written in a config.
    ///
    /// # Errors
    /// A [`LineFormatError`] when the delimiter is empty or longer than [`MAX_DELIMITER_BYTES`]
    /// (`line_delimiter`), or the limit is zero or does not fit in memory (`max_line_bytes`).
    pub fn new(delimiter: &str, max_line_bytes: u64) -> Result<Self, LineFormatError> {
        if delimiter.is_empty() {
            return Err(LineFormatError::new(
                "line_delimiter",
                "the line delimiter cannot be empty",
            ));
        }
        if delimiter.len() > MAX_DELIMITER_BYTES {
            return Err(LineFormatError::new(
                "line_delimiter",
                format!(
                    "the line delimiter is {} bytes long; at most {MAX_DELIMITER_BYTES} are allowed",
                    delimiter.len()
                ),
            ));
        }
        if max_line_bytes == 0 {
            return Err(LineFormatError::new(
                "max_line_bytes",
                "must be at least 1 byte",
            ));
        }
        let max_line_bytes = usize::try_from(max_line_bytes)
            .ok()
            .filter(|max| *max <= isize::MAX as usize / 2)
            .ok_or_else(|| {
                LineFormatError::new("max_line_bytes", "is larger than this machine can hold")
            })?;
        Ok(LineFormat {
            delimiter: delimiter.as_bytes().into(),
            max_line_bytes,
        })
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        &self.delimiter
    }

    /// The longest line kept, in bytes.
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }
}

/// One line cut from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The line, without its delimiter (and without the `\r` of a CRLF line).
    pub bytes: Bytes,
    /// The byte offset of the line's first byte in the stream.
    pub offset: u64,
    /// Whether the line was longer than the limit and cut.
    pub truncated: bool,
}

/// Cuts a byte stream, fed in chunks of any size, into [`Line`]s. See the module doc for the
/// rules.
#[derive(Debug)]
pub struct LineSplitter {
    delimiter: Box<[u8]>,
    /// Present for delimiters longer than one byte.
    finder: Option<memmem::Finder<'static>>,
    strip_cr: bool,
    max_line_bytes: usize,
    /// Unconsumed input: the start of the current line, or (while discarding) the tail that may
    /// still hold the beginning of a delimiter.
    buf: BytesMut,
    /// The stream offset of `buf[0]`.
    buf_offset: u64,
    /// How much of `buf` is known to hold no complete delimiter.
    scanned: usize,
    /// A truncated prefix of the current line was emitted; skip to the next delimiter.
    discarding: bool,
    /// While discarding: the stream offset where the line being skipped began.
    discard_start: u64,
}

impl LineSplitter {
    /// A splitter for `format` whose first byte is at stream offset `offset`.
    pub fn new(format: &LineFormat, offset: u64) -> Self {
        let delimiter = format.delimiter.clone();
        let finder = (delimiter.len() > 1).then(|| memmem::Finder::new(&delimiter).into_owned());
        LineSplitter {
            strip_cr: &*delimiter == b"\n",
            delimiter,
            finder,
            max_line_bytes: format.max_line_bytes,
            buf: BytesMut::new(),
            buf_offset: offset,
            scanned: 0,
            discarding: false,
            discard_start: offset,
        }
    }

    /// Forgets everything held and starts again at stream offset `offset` (a truncated file).
    pub fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.buf_offset = offset;
        self.scanned = 0;
        self.discarding = false;
    }

    /// Bytes held that are not yet part of an emitted line.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The stream offset just past the input fed so far.
    pub fn end_offset(&self) -> u64 {
        self.buf_offset + self.buf.len() as u64
    }

    /// Where reading must start again to lose nothing that was not yet emitted: the start of
    /// the held partial line, or of the over-long line being skipped (whose truncated prefix is
    /// then emitted again, rather than its tail emitted as a line of its own).
    pub fn resume_offset(&self) -> u64 {
        if self.discarding {
            self.discard_start
        } else {
            self.buf_offset
        }
    }

    /// Gives back the buffer's memory when nothing is held, so an idle reader keeps no chunk
    /// allocated (hundreds of idle files would otherwise hold a chunk each).
    pub fn release_memory(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
            self.scanned = 0;
        }
    }

    /// Reads once from `input`, up to `max` bytes, straight into the buffer. Retries on
    /// [`io::ErrorKind::Interrupted`].
    ///
    /// # Errors
    /// The reader's error; the buffer is then unchanged.
    pub fn read_from<R: Read + ?Sized>(&mut self, input: &mut R, max: usize) -> io::Result<usize> {
        let len = self.buf.len();
        // `Read` wants initialised memory; zeroing a chunk costs far less than reading it.
        self.buf.resize(len + max, 0);
        loop {
            match input.read(&mut self.buf[len..]) {
                Ok(read) => {
                    self.buf.truncate(len + read);
                    return Ok(read);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.buf.truncate(len);
                    return Err(error);
                }
            }
        }
    }

    /// Appends `data` (a copy; readers use [`LineSplitter::read_from`] instead).
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn find(&self, haystack: &[u8]) -> Option<usize> {
        match &self.finder {
            Some(finder) => finder.find(haystack),
            None => memchr::memchr(self.delimiter[0], haystack),
        }
    }

    /// The next complete line, or `None` when the input so far holds no more.
    pub fn next_line(&mut self) -> Option<Line> {
        let delimiter_len = self.delimiter.len();
        loop {
            // A delimiter may straddle the end of what was scanned before.
            let from = self.scanned.saturating_sub(delimiter_len - 1);
            if let Some(found) = self.find(&self.buf[from..]) {
                let end = from + found;
                let consumed = end + delimiter_len;
                self.scanned = 0;
                if self.discarding {
                    self.buf.advance(consumed);
                    self.buf_offset += consumed as u64;
                    self.discarding = false;
                    continue;
                }
                let offset = self.buf_offset;
                let mut bytes = self.buf.split_to(consumed).freeze();
                self.buf_offset += consumed as u64;
                bytes.truncate(end);
                return Some(self.line(bytes, offset));
            }
            self.scanned = self.buf.len();
            if self.discarding {
                // Only the last bytes can still begin a delimiter.
                let skip = self.buf.len().saturating_sub(delimiter_len - 1);
                self.buf.advance(skip);
                self.buf_offset += skip as u64;
                self.scanned = self.buf.len();
                return None;
            }
            // The content is certainly too long once even a delimiter starting in the last
            // bytes (and a `\r` before it) would leave more than the limit.
            let undecided = delimiter_len - 1 + usize::from(self.strip_cr);
            if self.buf.len() > self.max_line_bytes + undecided {
                let offset = self.buf_offset;
                let bytes = self.buf.split_to(self.max_line_bytes).freeze();
                self.buf_offset += self.max_line_bytes as u64;
                self.scanned = self.buf.len();
                self.discarding = true;
                self.discard_start = offset;
                return Some(Line {
                    bytes,
                    offset,
                    truncated: true,
                });
            }
            return None;
        }
    }

    /// Like [`LineSplitter::next_line`], but at the end of the input: once no complete line is
    /// left, the held partial line is returned as the last one. Call until it returns `None`.
    pub fn finish(&mut self) -> Option<Line> {
        if let Some(line) = self.next_line() {
            return Some(line);
        }
        let held = self.buf.len();
        if self.discarding {
            self.buf.clear();
            self.buf_offset += held as u64;
            self.scanned = 0;
            self.discarding = false;
            return None;
        }
        if held == 0 {
            return None;
        }
        let offset = self.buf_offset;
        let bytes = self.buf.split().freeze();
        self.buf_offset += held as u64;
        self.scanned = 0;
        Some(self.line(bytes, offset))
    }

    fn line(&self, mut bytes: Bytes, offset: u64) -> Line {
        if self.strip_cr && bytes.last() == Some(&b'\r') {
            bytes.truncate(bytes.len() - 1);
        }
        let truncated = bytes.len() > self.max_line_bytes;
        if truncated {
            bytes.truncate(self.max_line_bytes);
        }
        Line {
            bytes,
            offset,
            truncated,
        }
    }
}

/// Turns lines into events: the raw line, the source id, the offset as origin, and the optional
/// path and offset fields. Built once per reader.
#[derive(Clone, Debug)]
pub struct LineEvents {
    source: SourceId,
    path: Option<(FieldName, Value)>,
    host: Option<(FieldName, Value)>,
    offset_field: Option<FieldName>,
}

impl LineEvents {
    /// Events of `source` with no extra fields.
    pub fn new(source: SourceId) -> Self {
        LineEvents {
            source,
            path: None,
            host: None,
            offset_field: None,
        }
    }

    /// Adds the field `name` holding `path` to every event.
    pub fn with_path(mut self, name: FieldName, path: &str) -> Self {
        self.path = Some((name, Value::String(Str::from(path))));
        self
    }

    /// Adds the field `name` holding `host` to every event.
    pub fn with_host(mut self, name: FieldName, host: &str) -> Self {
        self.host = Some((name, Value::String(Str::from(host))));
        self
    }

    /// Adds the field `name` holding the line's byte offset to every event.
    pub fn with_offset(mut self, name: FieldName) -> Self {
        self.offset_field = Some(name);
        self
    }

    /// The event for `line`.
    #[inline]
    pub fn event(&self, line: Line) -> Event {
        let meta = EventMeta {
            source: self.source,
            origin: Some(line.offset),
        };
        let mut event = Event::from_raw(line.bytes, meta);
        if let Some((name, value)) = &self.path {
            event.insert(name.clone(), value.clone());
        }
        if let Some((name, value)) = &self.host {
            event.insert(name.clone(), value.clone());
        }
        if let Some(name) = &self.offset_field {
            // Offsets past i64::MAX (8 EiB) do not occur.
            event.insert(name.clone(), Value::Int(line.offset as i64));
        }
        event
    }
}

/// A batch ready to publish, with the raw bytes it carries (for `bytes_out`).
#[derive(Debug)]
pub struct ReadyBatch {
    /// The batch.
    pub batch: Batch,
    /// The raw line bytes in it.
    pub raw_bytes: u64,
}

/// Groups events into batches of at most [`BATCH_EVENTS`] events, closing a batch early once it
/// holds [`BATCH_BYTES`] raw bytes, and counts truncated lines.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    current: Vec<Event>,
    current_bytes: usize,
    ready: Vec<ReadyBatch>,
    truncated: u64,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the event for `line`, unless the line is blank ([`is_blank`]).
    #[inline]
    pub fn push(&mut self, events: &LineEvents, line: Line) {
        if is_blank(&line.bytes) {
            return;
        }
        self.truncated += u64::from(line.truncated);
        self.current_bytes += line.bytes.len();
        if self.current.capacity() == 0 {
            self.current.reserve_exact(BATCH_EVENTS);
        }
        self.current.push(events.event(line));
        if self.current.len() >= BATCH_EVENTS || self.current_bytes >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Closes the batch being filled, if it has events.
    pub fn flush(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.current);
        self.ready.push(ReadyBatch {
            batch: Batch::new(events),
            raw_bytes: self.current_bytes as u64,
        });
        self.current_bytes = 0;
    }

    /// How many batches are closed and waiting to be taken.
    pub fn closed_batches(&self) -> usize {
        self.ready.len()
    }

    /// Raw bytes in closed batches and the one being filled.
    pub fn buffered_bytes(&self) -> usize {
        self.current_bytes
            + self
                .ready
                .iter()
                .map(|b| b.raw_bytes as usize)
                .sum::<usize>()
    }

    /// Closes the current batch and takes every batch and the count of truncated lines.
    pub fn take(&mut self) -> (Vec<ReadyBatch>, u64) {
        self.flush();
        (
            std::mem::take(&mut self.ready),
            std::mem::take(&mut self.truncated),
        )
    }
}

/// What one [`read_lines`] call saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadStatus {
    /// Bytes read from the input.
    pub read: usize,
    /// Whether the input had nothing more (a `read` returned 0).
    pub eof: bool,
}

/// Reads one chunk of up to [`READ_CHUNK`] bytes from `input` and adds every complete line to
/// `out`. At end of input (a read of 0 bytes) with `finish_at_eof`, the held partial line is
/// added too.
///
/// # Errors
/// The reader's error; lines already complete stay in `splitter`.
pub fn read_lines<R: Read + ?Sized>(
    input: &mut R,
    splitter: &mut LineSplitter,
    events: &LineEvents,
    out: &mut BatchBuilder,
    finish_at_eof: bool,
) -> io::Result<ReadStatus> {
    let read = splitter.read_from(input, READ_CHUNK)?;
    let eof = read == 0;
    if eof && finish_at_eof {
        while let Some(line) = splitter.finish() {
            out.push(events, line);
        }
    } else {
        while let Some(line) = splitter.next_line() {
            out.push(events, line);
        }
    }
    Ok(ReadStatus { read, eof })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn format(delimiter: &str, max: u64) -> LineFormat {
        LineFormat::new(delimiter, max).unwrap()
    }

    fn split_all(format: &LineFormat, chunks: &[&[u8]]) -> Vec<Line> {
        let mut splitter = LineSplitter::new(format, 0);
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.extend(chunk);
            while let Some(line) = splitter.next_line() {
                lines.push(line);
            }
        }
        while let Some(line) = splitter.finish() {
            lines.push(line);
        }
        lines
    }

    fn texts(lines: &[Line]) -> Vec<&[u8]> {
        lines.iter().map(|line| &line.bytes[..]).collect()
    }

    /// The rules of the module doc, written as plainly as possible: (line, offset, truncated).
    fn reference(input: &[u8], delimiter: &[u8], max: usize) -> Vec<(Vec<u8>, u64, bool)> {
        let strip_cr = delimiter == b"\n";
        let mut lines = Vec::new();
        let mut start = 0;
        while start < input.len() {
            let rest = &input[start..];
            let found = rest
                .windows(delimiter.len())
                .position(|window| window == delimiter);
            let (mut content, consumed) = match found {
                Some(at) => (&rest[..at], at + delimiter.len()),
                None => (rest, rest.len()),
            };
            if strip_cr && content.last() == Some(&b'\r') {
                content = &content[..content.len() - 1];
            }
            let truncated = content.len() > max;
            lines.push((
                content[..content.len().min(max)].to_vec(),
                start as u64,
                truncated,
            ));
            start += consumed;
        }
        lines
    }

    #[test]
    fn lines_are_slices_of_the_read_buffer() {
        let mut splitter = LineSplitter::new(&format("\n", 100), 0);
        let mut input: &[u8] = b"one\ntwo\nthr";
        splitter.read_from(&mut input, READ_CHUNK).unwrap();
        let one = splitter.next_line().unwrap();
        let two = splitter.next_line().unwrap();
        assert_eq!((&one.bytes[..], one.offset), (&b"one"[..], 0));
        assert_eq!((&two.bytes[..], two.offset), (&b"two"[..], 4));
        // Both point into the same allocation, one after the other.
        assert_eq!(one.bytes.as_ptr() as usize + 4, two.bytes.as_ptr() as usize);
        assert_eq!(splitter.next_line(), None);
        assert_eq!(splitter.pending_bytes(), 3);
        let last = splitter.finish().unwrap();
        assert_eq!((&last.bytes[..], last.offset), (&b"thr"[..], 8));
        assert_eq!(splitter.finish(), None);
        assert_eq!(splitter.end_offset(), 11);
    }

    #[test]
    fn crlf_is_stripped_only_with_the_newline_delimiter() {
        let lines = split_all(&format("\n", 100), &[b"a\r\nb\r\n\r\nc\r"]);
        assert_eq!(texts(&lines), [&b"a"[..], b"b", b"", b"c"]);
        let lines = split_all(&format(";", 100), &[b"a\r;b\r"]);
        assert_eq!(texts(&lines), [&b"a\r"[..], b"b\r"]);
        let lines = split_all(&format("\r\n", 100), &[b"a\r", b"\nb\n\r\nc"]);
        assert_eq!(texts(&lines), [&b"a"[..], b"b\n", b"c"]);
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let lines = split_all(&format("\n", 4), &[b"abcdefghij", b"klm\nok\nabcd\r\nxyz"]);
        assert_eq!(texts(&lines), [&b"abcd"[..], b"ok", b"abcd", b"xyz"]);
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.offset, l.truncated))
                .collect::<Vec<_>>(),
            [(0, true), (14, false), (17, false), (23, false)]
        );
    }

    #[test]
    fn an_endless_line_never_holds_more_than_the_limit_and_a_chunk() {
        let mut splitter = LineSplitter::new(&format("\n", 1000), 0);
        let mut emitted = Vec::new();
        for _ in 0..100 {
            splitter.extend(&[b'x'; 4096]);
            while let Some(line) = splitter.next_line() {
                emitted.push(line);
            }
            assert!(splitter.pending_bytes() <= 1000 + 4096);
        }
        splitter.extend(b"\nnext\n");
        while let Some(line) = splitter.next_line() {
            emitted.push(line);
        }
        assert_eq!(emitted.len(), 2);
        assert!(emitted[0].truncated && emitted[0].bytes.len() == 1000);
        assert_eq!(
            (&emitted[1].bytes[..], emitted[1].offset),
            (&b"next"[..], 409_601)
        );
    }

    #[test]
    fn formats_are_checked() {
        assert_eq!(LineFormat::new("", 10).unwrap_err().key, "line_delimiter");
        assert_eq!(
            LineFormat::new(&"x".repeat(17), 10).unwrap_err().key,
            "line_delimiter"
        );
        assert_eq!(LineFormat::new("\n", 0).unwrap_err().key, "max_line_bytes");
        assert!(LineFormat::new("\r\n", 1).is_ok());
    }

    #[test]
    fn batches_close_at_the_event_and_byte_limits() {
        let events = LineEvents::new(SourceId(1));
        let mut builder = BatchBuilder::new();
        for offset in 0..(BATCH_EVENTS as u64 + 5) {
            builder.push(
                &events,
                Line {
                    bytes: Bytes::from_static(b"x"),
                    offset,
                    truncated: offset == 3,
                },
            );
        }
        let big = Bytes::from(vec![b'y'; BATCH_BYTES / 2]);
        for offset in 0..3 {
            builder.push(
                &events,
                Line {
                    bytes: big.clone(),
                    offset,
                    truncated: false,
                },
            );
        }
        let (batches, truncated) = builder.take();
        let sizes: Vec<usize> = batches.iter().map(|b| b.batch.len()).collect();
        // The line that reaches the byte limit closes its batch.
        assert_eq!(sizes, [BATCH_EVENTS, 7, 1]);
        assert_eq!(batches[1].raw_bytes, 5 + BATCH_BYTES as u64);
        assert_eq!(truncated, 1);
        assert_eq!(batches[0].batch.events()[7].meta().origin, Some(7));
    }

    /// Regression: whitespace-only lines were events here but skipped by the HTTP decoders.
    #[test]
    fn blank_and_whitespace_only_lines_are_not_events() {
        let format = format("\n", 100);
        let mut splitter = LineSplitter::new(&format, 0);
        let events = LineEvents::new(SourceId(1));
        let mut builder = BatchBuilder::new();
        let mut input: &[u8] = b"a\n\n\t\t\n \r\n  b \n\x0c\nc";
        loop {
            let status =
                read_lines(&mut input, &mut splitter, &events, &mut builder, true).unwrap();
            if status.eof {
                break;
            }
        }
        let (batches, _) = builder.take();
        let raws: Vec<Vec<u8>> = batches
            .iter()
            .flat_map(|ready| ready.batch.events().iter())
            .map(|event| event.raw().unwrap().to_vec())
            .collect();
        assert_eq!(raws, [&b"a"[..], b"  b ", b"c"]);
        assert!(is_blank(b"") && is_blank(b" \t\r") && !is_blank(b" x") && !is_blank(b"\x0b"));
    }

    fn delimiters() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("\n"), Just(";"), Just("\r\n"), Just("||"), Just("aba")]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn splitting_matches_the_reference_for_any_chunking(
            delimiter in delimiters(),
            max in 1usize..24,
            input in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n'), Just(b'\r'), Just(b';'),
                            Just(b'|'), any::<u8>()],
                0..400,
            ),
            cuts in proptest::collection::vec(0usize..64, 0..40),
        ) {
            let format = format(delimiter, max as u64);
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut rest = &input[..];
            for cut in cuts {
                let (chunk, tail) = rest.split_at(cut.min(rest.len()));
                chunks.push(chunk);
                rest = tail;
            }
            chunks.push(rest);
            let lines = split_all(&format, &chunks);
            let got: Vec<(Vec<u8>, u64, bool)> = lines
                .into_iter()
                .map(|line| (line.bytes.to_vec(), line.offset, line.truncated))
                .collect();
            prop_assert_eq!(got, reference(&input, delimiter.as_bytes(), max));
        }

        #[test]
        fn reading_from_a_reader_matches_the_reference(
            input in proptest::collection::vec(
                prop_oneof![Just(b'x'), Just(b'\n'), Just(b'\r')], 0..2000),
            max in 1usize..300,
            read_size in 1usize..700,
        ) {
            let format = format("\n", max as u64);
            let mut splitter = LineSplitter::new(&format, 0);
            let mut input_reader = &input[..];
            let mut got = Vec::new();
            loop {
                let read = splitter.read_from(&mut input_reader, read_size).unwrap();
                let next = if read == 0 { LineSplitter::finish } else { LineSplitter::next_line };
                while let Some(line) = next(&mut splitter) {
                    got.push((line.bytes.to_vec(), line.offset, line.truncated));
                }
                prop_assert!(splitter.pending_bytes() <= max + 1);
                if read == 0 {
                    break;
                }
            }
            prop_assert_eq!(got, reference(&input, b"\n", max));
        }
    }
}
