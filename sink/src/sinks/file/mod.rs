//! The `file` sink: appends events as lines to files, optionally gzip-compressed, with paths
//! templated by time and event fields, rotated by size or age.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! input = "web.requests"
//! path = "./data/archive/%Y-%m-%d/{page}.ndjson.gz"   # strftime (event time, UTC) and {field}s
//! encoding = "ndjson"      # default; "text", or a table (see `encoding`); not "json_array"
//! compression = "gzip"     # default "none"
//! append = true            # default; false empties each file the first time the sink opens it
//! fsync = false            # default; true syncs the data to disk before acknowledging
//! max_file_bytes = "512MiB"  # optional: rotate a file once it holds this much
//! rotate_interval = "1h"   # optional: rotate a file once it has been open this long
//! max_open_files = 16      # default; the least recently used file is closed beyond it
//! # plus the driver keys every sink has (batch, concurrency — always 1 here —, retry, healthcheck)
//! ```
//!
//! # Acknowledgement
//! [`Sink::write`] returns `Ok` only once the batch's bytes were handed to the OS with one
//! `write_all` per file (and, with `fsync = true`, after `sync_data`), so a crash of sluice loses
//! nothing it acknowledged; with `fsync = false` a crash of the machine can. For gzip the batch is
//! compressed and sync-flushed before that write, so `zcat` of the file at any moment yields every
//! acknowledged line (and then complains that the last member is unfinished).
//!
//! # Paths
//! `path` is a template: strftime specifiers (`%Y-%m-%d`, `%H`; `%%` for a literal `%`) are
//! expanded with each event's time in UTC — its `timestamp` field, a timestamp or an RFC 3339
//! string, as the access-log presets and JSON events carry it; the current time for an event
//! without one —, so a backfill of January lands in January's files, not today's. `{field}` (a
//! field name, a dotted path, or `message`) is expanded with each event's value. A batch is split
//! by rendered path. A field value is
//! sanitized so it cannot leave the directory the template puts it in: `/`, `\`, NUL and control
//! characters become `_`, and so does a leading `.`; a missing, null or empty value renders as
//! `_`. `{` and `}` are reserved for fields. When an expansion changes — at midnight for a daily
//! path — the new file is opened, its parent directories created. A template without fields
//! keeps only the files of the latest batch open (the day's file is finished once a batch has
//! none of its events: late events reopen it and append a new gzip member); with fields, files
//! not written for a while are closed least-recently-used first once more than `max_open_files`
//! are open. A fixed path is opened when the sink is built, and a templated one has its leading
//! fixed directories created then, so a path that cannot be created fails at startup.
//!
//! # Rotation
//! Before a write, a file that holds `max_file_bytes` or more (counted on disk, so compressed for
//! gzip), or has been open for `rotate_interval`, is finished and renamed with the UTC time
//! inserted before its first dot (`requests.ndjson.gz` → `requests.20240501T120000.000Z.ndjson.gz`,
//! with `-1`, `-2`… if that name exists), and writing goes on in a new file at the path. A file
//! can thus exceed `max_file_bytes` by one batch. An existing file over the size at open is
//! rotated first too.
//!
//! # Gzip members
//! Every open starts a new gzip member, so appending to an existing `.gz` after a restart gives a
//! valid multi-member file (which `zcat` and `MultiGzDecoder` read as one). The member is written
//! by hand — a 10-byte header, a raw deflate stream and a CRC-32/size trailer — because that lets
//! the sink end a member at any acknowledged point: after a sync flush the deflate stream is
//! byte-aligned, so an empty final block (`03 00`) plus the trailer of the acknowledged bytes
//! closes it validly. That is what happens at `close`, at rotation and eviction, when the sink is
//! dropped, and after a failed write, so the file stays a valid gzip stream even when a write
//! fails midway. A `kill -9` or power loss leaves the last member unfinished, perhaps with part of
//! an unacknowledged batch after it; before appending, the next open finds the last sync-flush
//! point up to which the member decodes to whole lines, cuts the file there and writes the
//! terminator, so every acknowledged line stays readable and the new member decodes too. A `.gz`
//! that does not decode and cannot be mended that way (not written by sluice) is moved aside to
//! `<name>.damaged-<unix ms>` rather than appended to.
//!
//! # Errors
//! A failed write cuts the file back to its length after the last acknowledged batch (so a retry
//! neither duplicates nor leaves a torn line), closes it, and returns [`SinkError::Transient`]
//! naming the path and the OS error: a full disk may clear. When a batch spans several files and
//! one fails, the files already written are remembered, and the retry of the same request (the
//! driver retries with the very same event slices) skips them, so nothing is written twice. When
//! a plain file is opened whose last line has no `\n` (a crash mid-write by another program or an
//! older sluice), a `\n` is added first so the torn line cannot swallow the next one.
//!
//! The blocking file I/O runs on tokio's blocking pool; the encode buffers move there and back
//! with the open files, so they are reused across writes.

mod config;
mod gzip;
mod io;
mod path_template;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use flate2::Crc;
use flate2::write::DeflateEncoder;
use serde::Deserialize;
use sluice_pipelines::{Event, Value};

use crate::encoding::{Encoder, EncodingConfig, deserialize_encoding};
use crate::fs::sync_dir;
use crate::units::ByteSize;
use crate::{BuildError, Sink, SinkContext, SinkError, SinkFuture};

pub use crate::encoding::Compression;

pub use self::config::{DEFAULT_MAX_OPEN_FILES, EVENT_TIME_FIELD, FileConfig};
use self::gzip::*;
use self::io::*;
pub(crate) use self::path_template::append_field_value;
use self::path_template::*;

/// The file options the blocking side needs.
#[derive(Debug, Clone, Copy)]
struct Options {
    gzip: bool,
    fsync: bool,
    truncate: bool,
    max_file_bytes: Option<u64>,
    rotate_interval: Option<chrono::Duration>,
    max_open_files: usize,
    /// The template has no fields: only the files of the latest batch stay open (one, unless a
    /// batch spans midnight for a daily path), the others finished as soon as a batch has none
    /// of their events.
    single: bool,
}

/// The files a failed multi-file request already wrote, to skip them on its retry.
#[derive(Debug)]
struct RetryMemo {
    /// The request's event slices (address, length): the driver retries the same slices.
    chunks: Vec<(usize, usize)>,
    /// The paths already written for it.
    written: HashSet<PathBuf>,
}

/// The runtime of the `file` sink.
#[derive(Debug)]
pub struct FileSink {
    template: PathTemplate,
    encoder: Encoder,
    options: Options,
    /// The time that expands the path; replaced in tests to cross midnight.
    clock: fn() -> DateTime<Utc>,
    /// The buffers and open files; `None` only while a blocking task holds them, or after a
    /// cancelled write lost them (then the next write starts afresh).
    io: Option<FileIo>,
    memo: Option<RetryMemo>,
}

impl FileSink {
    fn take_io(&mut self) -> FileIo {
        self.io.take().unwrap_or_else(|| {
            tracing::warn!(
                path = %self.template.template,
                "A cancelled write left the files closed; reopening them."
            );
            FileIo::new(self.options)
        })
    }

    /// Runs `task` on the blocking pool with `io`, then keeps `io` for the next call.
    async fn run_blocking<T: Send + 'static>(
        &mut self,
        mut io: FileIo,
        task: impl FnOnce(&mut FileIo) -> T + Send + 'static,
    ) -> Result<T, SinkError> {
        let (io, result) = tokio::task::spawn_blocking(move || {
            let result = task(&mut io);
            (io, result)
        })
        .await
        .map_err(|error| SinkError::Transient(format!("the file write task failed: {error}")))?;
        self.io = Some(io);
        Ok(result)
    }

    /// Encodes `chunks` into one buffer per rendered path, in `io.groups`.
    fn encode(
        &self,
        io: &mut FileIo,
        chunks: &[&[Event]],
        now: DateTime<Utc>,
    ) -> Result<(), SinkError> {
        io.recycle_groups();
        let format_error = || {
            SinkError::Permanent(format!(
                "cannot format the path {:?}",
                self.template.template
            ))
        };
        if !self.template.has_fields() && !self.template.has_time() {
            let path = self.template.render_time(now).map_err(|_| format_error())?;
            let mut buffer = io.spare.pop().unwrap_or_default();
            for event in crate::chunk_events(chunks) {
                self.encoder.encode_record(event, &mut buffer);
            }
            io.groups.push((path, buffer));
            return Ok(());
        }
        let mut index: HashMap<PathBuf, usize> = HashMap::new();
        let mut scratch = String::new();
        // Without fields the path depends on the time alone: events of the same second (the
        // common case in logs) reuse the last rendering instead of formatting it again.
        let by_second = !self.template.has_fields() && !self.template.has_subseconds();
        let mut last: Option<(i64, usize)> = None;
        for event in crate::chunk_events(chunks) {
            let time = event_time(event).unwrap_or(now);
            let slot = match last {
                Some((second, slot)) if by_second && second == time.timestamp() => slot,
                _ => {
                    let path = self
                        .template
                        .render(time, event, &mut scratch)
                        .map_err(|_| format_error())?;
                    match index.get(&path) {
                        Some(&slot) => slot,
                        None => {
                            let buffer = io.spare.pop().unwrap_or_default();
                            io.groups.push((path.clone(), buffer));
                            index.insert(path, io.groups.len() - 1);
                            io.groups.len() - 1
                        }
                    }
                }
            };
            last = Some((time.timestamp(), slot));
            if let Some((_, buffer)) = io.groups.get_mut(slot) {
                self.encoder.encode_record(event, buffer);
            }
        }
        Ok(())
    }
}

/// The time that expands an event's path: its `timestamp` field, as a timestamp or an RFC 3339
/// string; `None` when it has none (the caller uses the current time).
fn event_time(event: &Event) -> Option<DateTime<Utc>> {
    match event.get(EVENT_TIME_FIELD)? {
        Value::Timestamp(time) => Some(*time),
        Value::String(text) => DateTime::parse_from_rfc3339(text.as_str().trim())
            .ok()
            .map(|time| time.with_timezone(&Utc)),
        _ => None,
    }
}

fn chunk_key(chunks: &[&[Event]]) -> Vec<(usize, usize)> {
    chunks
        .iter()
        .map(|chunk| (chunk.as_ptr() as usize, chunk.len()))
        .collect()
}

impl Sink for FileSink {
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
        Box::pin(async move { self.write_slices(&[events]).await })
    }

    fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
        Box::pin(self.write_slices(chunks))
    }

    fn bytes_written(&self) -> u64 {
        self.io.as_ref().map_or(0, |io| io.written)
    }

    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            let io = self.take_io();
            self.run_blocking(io, |io| io.close_all()).await?
        })
    }
}

impl FileSink {
    async fn write_slices(&mut self, chunks: &[&[Event]]) -> Result<(), SinkError> {
        if chunks.iter().all(|chunk| chunk.is_empty()) {
            return Ok(());
        }
        let key = chunk_key(chunks);
        let skip = match self.memo.take() {
            Some(memo) if memo.chunks == key => memo.written,
            _ => HashSet::new(),
        };
        let now = (self.clock)();
        let mut io = self.take_io();
        if let Err(error) = self.encode(&mut io, chunks, now) {
            self.io = Some(io);
            return Err(error);
        }
        let (result, written) = self
            .run_blocking(io, move |io| io.write_groups(now, skip))
            .await?;
        if result.is_err() && !written.is_empty() {
            self.memo = Some(RetryMemo {
                chunks: key,
                written,
            });
        }
        result
    }
}
