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

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use flate2::Crc;
use flate2::write::DeflateEncoder;
use serde::Deserialize;
use sluice_pipelines::{Event, Value};

use crate::encoding::{Encoder, EncodingConfig, deserialize_encoding};
use crate::units::ByteSize;
use crate::{BuildError, Sink, SinkContext, SinkError, SinkFuture};

pub use crate::encoding::Compression;

/// The default `max_open_files`.
pub const DEFAULT_MAX_OPEN_FILES: usize = 16;
/// The field whose time expands the strftime specifiers of `path`.
pub const EVENT_TIME_FIELD: &str = "timestamp";

/// The config of the `file` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to write: a template of strftime specifiers (each event's `timestamp`, UTC; now
    /// for events without one) and `{field}`s.
    pub path: String,
    /// How events become lines; default `ndjson`.
    #[serde(default, deserialize_with = "deserialize_encoding")]
    pub encoding: EncodingConfig,
    /// Whether to gzip the file; default `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Keep what a file holds (default `true`); `false` empties each file the first time the
    /// sink opens it.
    #[serde(default = "default_append")]
    pub append: bool,
    /// Sync the data to disk before acknowledging each batch; default `false`.
    #[serde(default)]
    pub fsync: bool,
    /// Rotate a file once it holds this many bytes; default never.
    #[serde(default)]
    pub max_file_bytes: Option<ByteSize>,
    /// Rotate a file once it has been open this long; default never.
    #[serde(default, deserialize_with = "crate::units::deserialize_opt_duration")]
    pub rotate_interval: Option<Duration>,
    /// Most files open at once; default 16.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

fn default_append() -> bool {
    true
}

fn default_max_open_files() -> usize {
    DEFAULT_MAX_OPEN_FILES
}

impl FileConfig {
    /// A config writing `path` with every other key at its default.
    pub fn new(path: impl Into<String>) -> Self {
        FileConfig {
            path: path.into(),
            encoding: EncodingConfig::default(),
            compression: Compression::None,
            append: true,
            fsync: false,
            max_file_bytes: None,
            rotate_interval: None,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }

    /// Checks the path template and options without touching the file system.
    ///
    /// # Errors
    /// `path` is empty, has an invalid strftime specifier or field placeholder, or expands to a
    /// directory-like name (`logs/`, `.`); the encoding is invalid or `json_array`; a rotation
    /// limit or `max_open_files` is zero.
    pub fn validate(&self) -> Result<(), BuildError> {
        PathTemplate::parse(&self.path)?;
        self.encoding.validate()?;
        if !self.encoding.codec.is_line_based() {
            return Err(BuildError::at(
                "encoding",
                "json_array cannot be appended to a file; use ndjson",
            ));
        }
        if self.max_file_bytes.is_some_and(|size| size.bytes() == 0) {
            return Err(BuildError::at(
                "max_file_bytes",
                "must be greater than zero",
            ));
        }
        if self.rotate_interval == Some(Duration::ZERO) {
            return Err(BuildError::at(
                "rotate_interval",
                "must be greater than zero",
            ));
        }
        if self.max_open_files == 0 {
            return Err(BuildError::at("max_open_files", "must be at least 1"));
        }
        Ok(())
    }

    /// Builds the sink; a fixed path is opened (creating its directories), a templated one has
    /// its leading fixed directories created.
    ///
    /// # Errors
    /// A [`BuildError`] at `path` when the file cannot be opened or its directory created.
    pub async fn build(&self, ctx: &SinkContext) -> Result<FileSink, BuildError> {
        let _ = ctx;
        let template = PathTemplate::parse(&self.path)?;
        let encoder = self.encoding.encoder()?;
        let options = Options {
            gzip: self.compression == Compression::Gzip,
            fsync: self.fsync,
            truncate: !self.append,
            max_file_bytes: self.max_file_bytes.map(ByteSize::bytes),
            rotate_interval: self
                .rotate_interval
                .and_then(|interval| chrono::Duration::from_std(interval).ok()),
            max_open_files: self.max_open_files.max(1),
            single: !template.has_fields(),
        };
        let now = Utc::now();
        let mut io = FileIo::new(options);
        if let Some(fixed) = template.fixed_dir() {
            tokio::task::spawn_blocking(move || {
                fs::create_dir_all(&fixed).map_err(|error| {
                    BuildError::at(
                        "path",
                        format!("cannot create {}: {error}", fixed.display()),
                    )
                })
            })
            .await
            .map_err(|error| BuildError::new(format!("the directory task failed: {error}")))??;
        }
        if !template.has_fields() && !template.has_time() {
            let path = template
                .render_time(now)
                .map_err(|_| template.format_error())?;
            io = tokio::task::spawn_blocking(move || {
                io.open(&path, now)
                    .map_err(|error| BuildError::at("path", error.to_string()))?;
                Ok::<_, BuildError>(io)
            })
            .await
            .map_err(|error| BuildError::new(format!("the file open task failed: {error}")))??;
        }
        Ok(FileSink {
            template,
            encoder,
            options,
            clock: Utc::now,
            io: Some(io),
            memo: None,
        })
    }
}

/// One piece of a path template.
#[derive(Debug, Clone)]
enum Piece {
    /// Literal text with strftime specifiers, or `None` items when it has none.
    Time {
        text: String,
        items: Option<Vec<Item<'static>>>,
    },
    /// An event field, by path.
    Field(Vec<String>),
}

/// A parsed `path`.
#[derive(Debug, Clone)]
struct PathTemplate {
    template: String,
    pieces: Vec<Piece>,
}

impl PathTemplate {
    fn parse(template: &str) -> Result<Self, BuildError> {
        if template.is_empty() {
            return Err(BuildError::at("path", "must not be empty"));
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let (literal, after) = match rest.find(['{', '}']) {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            if !literal.is_empty() {
                pieces.push(Self::time_piece(template, literal)?);
            }
            rest = after;
            if rest.starts_with('}') {
                return Err(BuildError::at(
                    "path",
                    format!("{template:?} has a `}}` without `{{`; braces are reserved for fields"),
                ));
            }
            if let Some(inner) = rest.strip_prefix('{') {
                let Some(end) = inner.find('}') else {
                    return Err(BuildError::at(
                        "path",
                        format!("{template:?} has a `{{` without `}}`"),
                    ));
                };
                let name = &inner[..end];
                if name.is_empty()
                    || name.contains(['{', '/', '%'])
                    || name.split('.').any(str::is_empty)
                {
                    return Err(BuildError::at(
                        "path",
                        format!("{template:?} has an invalid field placeholder {{{name}}}"),
                    ));
                }
                pieces.push(Piece::Field(name.split('.').map(str::to_owned).collect()));
                rest = &inner[end + 1..];
            }
        }
        let parsed = PathTemplate {
            template: template.to_owned(),
            pieces,
        };
        let sample = parsed
            .render(
                DateTime::<Utc>::UNIX_EPOCH,
                &Event::default(),
                &mut String::new(),
            )
            .map_err(|_| parsed.format_error())?;
        let text = sample.to_string_lossy();
        let file_name = text
            .rsplit(['/', std::path::MAIN_SEPARATOR])
            .next()
            .unwrap_or_default();
        if matches!(file_name.trim(), "" | "." | "..") {
            return Err(BuildError::at(
                "path",
                format!("{template:?} expands to {text:?}, which names no file"),
            ));
        }
        Ok(parsed)
    }

    fn time_piece(template: &str, literal: &str) -> Result<Piece, BuildError> {
        let items = if literal.contains('%') {
            let items = StrftimeItems::new(literal).parse_to_owned().map_err(|_| {
                BuildError::at(
                    "path",
                    format!(
                        "{template:?} has an invalid strftime specifier (write %% for a literal %)"
                    ),
                )
            })?;
            Some(items)
        } else {
            None
        };
        Ok(Piece::Time {
            text: literal.to_owned(),
            items,
        })
    }

    fn has_fields(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Field(_)))
    }

    /// Whether the template has strftime specifiers (so paths follow the events' time).
    fn has_time(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Time { items: Some(_), .. }))
    }

    /// Whether a specifier shows fractions of a second (`%f`, `%.3f`…): then two events of the
    /// same second may still go to different files.
    fn has_subseconds(&self) -> bool {
        use chrono::format::Fixed;
        self.pieces.iter().any(|piece| match piece {
            Piece::Time {
                items: Some(items), ..
            } => items.iter().any(|item| {
                matches!(
                    item,
                    Item::Fixed(
                        Fixed::Nanosecond
                            | Fixed::Nanosecond3
                            | Fixed::Nanosecond6
                            | Fixed::Nanosecond9
                            | Fixed::Internal(_)
                    )
                )
            }),
            _ => false,
        })
    }

    /// The directories before the first specifier or field of a templated path (`logs/` of
    /// `logs/%Y/{page}.log`), if any: created at build so an unusable place fails at startup.
    fn fixed_dir(&self) -> Option<PathBuf> {
        if !self.has_fields() && !self.has_time() {
            return None;
        }
        let fixed = match self.pieces.first() {
            Some(Piece::Time { text, items: None }) => text.as_str(),
            Some(Piece::Time { text, .. }) => &text[..text.find('%').unwrap_or(0)],
            _ => "",
        };
        let dir = &fixed[..fixed
            .rfind(['/', std::path::MAIN_SEPARATOR])
            .map_or(0, |at| at + 1)];
        (!dir.is_empty()).then(|| PathBuf::from(dir))
    }

    /// The path for `now`, for a template without fields.
    fn render_time(&self, now: DateTime<Utc>) -> Result<PathBuf, fmt::Error> {
        self.render(now, &Event::default(), &mut String::new())
    }

    /// The path for `now` and `event`; `scratch` is reused between calls.
    fn render(
        &self,
        now: DateTime<Utc>,
        event: &Event,
        scratch: &mut String,
    ) -> Result<PathBuf, fmt::Error> {
        scratch.clear();
        for piece in &self.pieces {
            match piece {
                Piece::Time { text, items: None } => scratch.push_str(text),
                Piece::Time {
                    items: Some(items), ..
                } => write!(scratch, "{}", now.format_with_items(items.iter()))?,
                Piece::Field(path) => render_field(event, path, scratch),
            }
        }
        Ok(PathBuf::from(scratch.as_str()))
    }

    fn format_error(&self) -> BuildError {
        BuildError::at("path", format!("{:?} cannot be formatted", self.template))
    }
}

/// Appends an event's field value to a path, sanitized to stay one path component.
fn render_field(event: &Event, path: &[String], out: &mut String) {
    let start = out.len();
    let value = if path.len() == 1 && path[0] == sluice_pipelines::event::MESSAGE {
        event.get_path(path).cloned().or_else(|| {
            event
                .raw()
                .map(|raw| Value::from(String::from_utf8_lossy(raw).as_ref()))
        })
    } else {
        event.get_path(path).cloned()
    };
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => out.push_str(text.as_str()),
        Some(Value::Int(n)) => {
            let _ = write!(out, "{n}");
        }
        Some(Value::Float(f)) => {
            let _ = write!(out, "{f}");
        }
        Some(Value::Bool(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(Value::Timestamp(ts)) => {
            out.push_str(&sluice_pipelines::codec::json::format_timestamp(&ts));
        }
        Some(other @ (Value::Array(_) | Value::Map(_))) => {
            let mut json = Vec::new();
            sluice_pipelines::codec::json::encode_value(&other, &mut json);
            out.push_str(&String::from_utf8_lossy(&json));
        }
    }
    if out.len() == start {
        out.push('_');
        return;
    }
    let value: String = out[start..]
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            '/' | '\\' | '\0' => '_',
            c if c.is_control() => '_',
            '.' if i == 0 => '_',
            c => c,
        })
        .collect();
    out.truncate(start);
    out.push_str(&value);
}

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

/// A buffer kept after a huge batch is given back above this size.
const MAX_RETAINED_BUFFER: usize = 16 << 20;

/// An open file and when it was opened.
#[derive(Debug)]
struct Entry {
    file: OpenFile,
    opened_at: DateTime<Utc>,
    last_used: u64,
}

/// What moves to the blocking pool for a write: the encoded groups and the open files.
#[derive(Debug)]
struct FileIo {
    /// The batch, encoded per path.
    groups: Vec<(PathBuf, Vec<u8>)>,
    /// Cleared buffers for the next batch.
    spare: Vec<Vec<u8>>,
    files: HashMap<PathBuf, Entry>,
    /// Files this sink opened once already (for `append = false`).
    seen: HashSet<PathBuf>,
    tick: u64,
    options: Options,
    /// Encoded bytes (before gzip) appended by the last `write_groups`.
    written: u64,
}

impl FileIo {
    fn new(options: Options) -> Self {
        FileIo {
            groups: Vec::new(),
            spare: Vec::new(),
            files: HashMap::new(),
            seen: HashSet::new(),
            tick: 0,
            options,
            written: 0,
        }
    }

    fn recycle_groups(&mut self) {
        for (_, mut buffer) in self.groups.drain(..) {
            if buffer.capacity() <= MAX_RETAINED_BUFFER {
                buffer.clear();
                self.spare.push(buffer);
            }
        }
    }

    /// Writes every group not in `skip`; returns the result and the paths written.
    fn write_groups(
        &mut self,
        now: DateTime<Utc>,
        skip: HashSet<PathBuf>,
    ) -> (Result<(), SinkError>, HashSet<PathBuf>) {
        let mut written = skip;
        self.written = 0;
        let groups = std::mem::take(&mut self.groups);
        if self.options.single && !groups.is_empty() {
            let stale: Vec<PathBuf> = self
                .files
                .keys()
                .filter(|path| !groups.iter().any(|(current, _)| current == *path))
                .cloned()
                .collect();
            for path in stale {
                if let Some(entry) = self.files.remove(&path)
                    && let Err(error) = entry.file.finish(self.options.fsync)
                {
                    // Its batches are acknowledged already; failing the new batch would not help.
                    tracing::warn!(path = %path.display(), %error, "Failed to finish the previous file.");
                }
            }
        }
        let mut result = Ok(());
        for (path, data) in &groups {
            if written.contains(path) {
                continue;
            }
            match self.write_one(path, data, now) {
                Ok(()) => {
                    self.written += data.len() as u64;
                    written.insert(path.clone());
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        self.groups = groups;
        (result, written)
    }

    /// Appends `data` to the file at `path`, rotating and opening as needed.
    fn write_one(&mut self, path: &Path, data: &[u8], now: DateTime<Utc>) -> Result<(), SinkError> {
        if let Some(entry) = self.files.get(path) {
            let full = self
                .options
                .max_file_bytes
                .is_some_and(|max| entry.file.acked_len >= max);
            let old = self
                .options
                .rotate_interval
                .is_some_and(|interval| now.signed_duration_since(entry.opened_at) >= interval);
            if full || old {
                if let Some(entry) = self.files.remove(path) {
                    let finished = entry.file.finish(self.options.fsync);
                    if let Err(error) = finished {
                        tracing::warn!(path = %path.display(), %error, "Failed to finish a file before rotating it.");
                    }
                }
                rotate(path, now).map_err(|error| io_error("cannot rotate", path, &error))?;
            }
        }
        if !self.files.contains_key(path) {
            self.open(path, now)
                .map_err(|error| SinkError::Transient(error.to_string()))?;
        }
        self.tick += 1;
        let tick = self.tick;
        let fsync = self.options.fsync;
        let Some(entry) = self.files.get_mut(path) else {
            return Err(SinkError::Transient(format!(
                "{} was not opened",
                path.display()
            )));
        };
        entry.last_used = tick;
        if let Err(error) = entry.file.append(data, fsync) {
            entry.file.rollback();
            // Dropping ends a gzip member at the last acknowledged batch.
            self.files.remove(path);
            return Err(io_error("cannot write", path, &error));
        }
        Ok(())
    }

    /// Opens `path` (closing the least recently used file if too many are open), rotating an
    /// existing file that is already over `max_file_bytes`.
    fn open(&mut self, path: &Path, now: DateTime<Utc>) -> io::Result<()> {
        while self.files.len() >= self.options.max_open_files {
            let Some(oldest) = self
                .files
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(path, _)| path.clone())
            else {
                break;
            };
            if let Some(entry) = self.files.remove(&oldest)
                && let Err(error) = entry.file.finish(self.options.fsync)
            {
                tracing::warn!(path = %oldest.display(), %error, "Failed to finish a file closed to make room.");
            }
        }
        let truncate = self.options.truncate && !self.seen.contains(path);
        if !truncate && self.options.gzip {
            // End a member a crash left unfinished, before the file is rotated away or appended
            // to (the one place this happens: every open comes through here).
            if let Ok(mut existing) = OpenOptions::new().read(true).append(true).open(path) {
                let len = existing.metadata()?.len();
                if len > 0 {
                    finish_crashed_member(&mut existing, path, len)?;
                }
            }
        }
        if !truncate
            && let Some(max) = self.options.max_file_bytes
            && fs::metadata(path).is_ok_and(|meta| meta.len() >= max)
        {
            rotate(path, now)?;
        }
        let file = OpenFile::open(
            path.to_owned(),
            self.options.gzip,
            truncate,
            self.options.fsync,
        )?;
        self.seen.insert(path.to_owned());
        self.tick += 1;
        self.files.insert(
            path.to_owned(),
            Entry {
                file,
                opened_at: now,
                last_used: self.tick,
            },
        );
        Ok(())
    }

    fn close_all(&mut self) -> Result<(), SinkError> {
        let mut result = Ok(());
        for (path, entry) in self.files.drain() {
            if let Err(error) = entry.file.finish(self.options.fsync) {
                result = Err(io_error("cannot close", &path, &error));
            }
        }
        result
    }
}

/// Renames the file at `path` to its rotated name; a missing file needs nothing.
fn rotate(path: &Path, now: DateTime<Utc>) -> io::Result<()> {
    if !path.try_exists()? {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, rest) = match name.find('.') {
        Some(0) | None => (name.as_str(), ""),
        Some(at) => name.split_at(at),
    };
    let stamp = now.format("%Y%m%dT%H%M%S%.3fZ");
    let mut suffix = 0u32;
    loop {
        let candidate = if suffix == 0 {
            format!("{stem}.{stamp}{rest}")
        } else {
            format!("{stem}.{stamp}-{suffix}{rest}")
        };
        let target = path.with_file_name(candidate);
        if !target.try_exists()? {
            return fs::rename(path, target);
        }
        suffix += 1;
    }
}

fn io_error(what: &str, path: &Path, error: &io::Error) -> SinkError {
    SinkError::Transient(format!("{what} {}: {error}", path.display()))
}

/// The 10-byte header of every gzip member: deflate, no flags, no mtime, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final deflate block with fixed codes; ends a stream at a byte-aligned point.
const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// The gzip member being written to an open file.
struct GzipMember {
    /// Compresses into a buffer that is written to the file whole, once per batch.
    encoder: DeflateEncoder<Vec<u8>>,
    /// CRC-32 and size of the acknowledged uncompressed bytes.
    crc: Crc,
    /// Whether the header is in the file (the first batch carries it).
    started: bool,
}

impl GzipMember {
    fn new() -> Self {
        GzipMember {
            encoder: DeflateEncoder::new(GZIP_HEADER.to_vec(), flate2::Compression::default()),
            crc: Crc::new(),
            started: false,
        }
    }

    /// The bytes that end the member after the last acknowledged batch.
    fn terminator(&self) -> [u8; 10] {
        member_terminator(&self.crc)
    }
}

/// The bytes that end a member at a sync-flush point: the final empty block, CRC-32 and size of
/// the uncompressed data `crc` has seen.
fn member_terminator(crc: &Crc) -> [u8; 10] {
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

/// An open file and how much of it is acknowledged.
#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    file: File,
    /// The file's length after the last acknowledged write.
    acked_len: u64,
    /// The member being written, for gzip; `None` for plain files and once a member is ended.
    gzip: Option<GzipMember>,
}

impl OpenFile {
    /// Opens `path` for appending, creating it and its directories.
    fn open(path: PathBuf, gzip: bool, truncate: bool, fsync: bool) -> io::Result<OpenFile> {
        Self::open_inner(&path, gzip, truncate, fsync)
            .map(|(file, acked_len)| OpenFile {
                path: path.clone(),
                file,
                acked_len,
                gzip: gzip.then(GzipMember::new),
            })
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot open {}: {error}", path.display()),
                )
            })
    }

    fn open_inner(path: &Path, gzip: bool, truncate: bool, fsync: bool) -> io::Result<(File, u64)> {
        let parent = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty());
        if let Some(parent) = parent {
            fs::create_dir_all(parent)?;
        }
        let created = fsync && !path.try_exists()?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        if truncate {
            file.set_len(0)?;
        }
        let mut len = file.metadata()?.len();
        if !gzip && len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                len += 1;
            }
        }
        if created {
            sync_dir(parent.unwrap_or(Path::new(".")))?;
        }
        Ok((file, len))
    }

    /// Appends `data` (compressed, for gzip) with one `write_all`, then syncs if asked.
    fn append(&mut self, data: &[u8], fsync: bool) -> io::Result<()> {
        let OpenFile {
            file,
            acked_len,
            gzip,
            ..
        } = self;
        match gzip {
            None => {
                file.write_all(data)?;
                if fsync {
                    file.sync_data()?;
                }
                *acked_len += data.len() as u64;
            }
            Some(member) => {
                member.encoder.write_all(data)?;
                // A sync flush: the output so far decodes to every byte written.
                member.encoder.flush()?;
                let compressed = member.encoder.get_mut();
                file.write_all(compressed)?;
                if fsync {
                    file.sync_data()?;
                }
                *acked_len += compressed.len() as u64;
                compressed.clear();
                member.crc.update(data);
                member.started = true;
            }
        }
        Ok(())
    }

    /// Cuts whatever a failed write left after the last acknowledged batch.
    fn rollback(&mut self) {
        if let Err(error) = self.file.set_len(self.acked_len) {
            tracing::warn!(
                path = %self.path.display(),
                %error,
                "Failed to cut a partly written batch from the file."
            );
            // The tail is unknown, so ending a gzip member after it could not make it valid.
            self.gzip = None;
        }
    }

    /// Ends the gzip member at the last acknowledged batch, if one is open.
    fn end_member(&mut self) -> io::Result<()> {
        if let Some(member) = &self.gzip
            && member.started
        {
            let tail = member.terminator();
            if let Err(error) = self.file.write_all(&tail) {
                self.rollback();
                return Err(error);
            }
            self.acked_len += tail.len() as u64;
        }
        self.gzip = None;
        Ok(())
    }

    /// Ends the gzip member, flushes and (with `fsync`) syncs.
    fn finish(mut self, fsync: bool) -> io::Result<()> {
        self.end_member()?;
        self.file.flush()?;
        if fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

impl Drop for OpenFile {
    /// Dropped without `finish` (a failed write, a cancelled task): still end the gzip member, so
    /// the file stays valid and the next member appended to it readable.
    fn drop(&mut self) {
        if let Err(error) = self.end_member() {
            tracing::warn!(
                path = %self.path.display(),
                %error,
                "Failed to end the gzip member; the file's later members will not decode."
            );
        }
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
fn finish_crashed_member(file: &mut File, path: &Path, len: u64) -> io::Result<u64> {
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
    if io::copy(
        &mut flate2::read::MultiGzDecoder::new(&mut *file),
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
fn last_member_start(file: &mut File, len: u64) -> io::Result<Option<u64>> {
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
enum Mended {
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
fn mend_member<F: Read + Seek>(file: &mut F, start: u64, len: u64) -> io::Result<Mended> {
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

/// Makes a new directory entry durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened for syncing here; the file's own sync has to do.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoding, encode_batch};
    use bytes::Bytes;
    use flate2::read::{GzDecoder, MultiGzDecoder};
    use proptest::prelude::*;
    use sluice_pipelines::{EventMeta, Fields};
    use std::sync::atomic::{AtomicI64, Ordering};

    fn raw(line: &str) -> Event {
        Event::from_raw(
            Bytes::copy_from_slice(line.as_bytes()),
            EventMeta::default(),
        )
    }

    fn lines(prefix: &str, range: std::ops::Range<usize>) -> Vec<Event> {
        range.map(|i| raw(&format!("{prefix} line {i}"))).collect()
    }

    fn config(path: &Path) -> FileConfig {
        FileConfig::new(path.to_string_lossy().into_owned())
    }

    fn gzip_config(path: &Path) -> FileConfig {
        FileConfig {
            compression: Compression::Gzip,
            ..config(path)
        }
    }

    async fn build(config: &FileConfig) -> FileSink {
        config.validate().unwrap();
        config.build(&SinkContext::default()).await.unwrap()
    }

    fn expected_ndjson(events: &[Event]) -> String {
        let mut out = Vec::new();
        encode_batch(events, Encoding::Ndjson, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Decodes every gzip member; `complete` is false when the last member is unfinished.
    fn read_gzip(path: &Path) -> (String, bool) {
        let mut out = Vec::new();
        let complete = match MultiGzDecoder::new(File::open(path).unwrap()).read_to_end(&mut out) {
            Ok(_) => true,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => false,
            Err(error) => panic!("{}: {error}", path.display()),
        };
        (String::from_utf8(out).unwrap(), complete)
    }

    /// Decodes only the first gzip member.
    fn read_first_member(path: &Path) -> String {
        let mut out = String::new();
        GzDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[tokio::test]
    async fn ndjson_batches_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut sink = build(&config(&path)).await;
        let mut typed = Event::default();
        typed.insert("status", 404i64);
        typed.insert("path", "/a \"b\"\nc");
        let first = vec![raw("GET / HTTP/1.1"), typed];
        let second = lines("second", 0..3);
        sink.write(&first).await.unwrap();
        // Acknowledged means readable, before close.
        assert_eq!(fs::read_to_string(&path).unwrap(), expected_ndjson(&first));
        sink.write(&second).await.unwrap();
        sink.write(&[]).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"message\":\"GET / HTTP/1.1\"}\n\
             {\"status\":404,\"path\":\"/a \\\"b\\\"\\nc\"}\n\
             {\"message\":\"second line 0\"}\n\
             {\"message\":\"second line 1\"}\n\
             {\"message\":\"second line 2\"}\n"
        );
    }

    #[tokio::test]
    async fn text_encoding_writes_raw_lines_and_logfmt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut sink = build(&FileConfig {
            encoding: Encoding::Text.into(),
            ..config(&path)
        })
        .await;
        let mut typed = Event::default();
        typed.insert("ip", "10.0.0.1");
        typed.insert("agent", "curl/8 (x)");
        let mut both = raw("127.0.0.1 - - \"GET /\" 200");
        both.insert("status", 200i64);
        sink.write(&[both, typed]).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "127.0.0.1 - - \"GET /\" 200\nip=10.0.0.1 agent=\"curl/8 (x)\"\n"
        );
    }

    #[tokio::test]
    async fn append_keeps_and_truncate_empties_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        fs::write(&path, "old\n").unwrap();
        let text = |append| FileConfig {
            encoding: Encoding::Text.into(),
            append,
            ..config(&path)
        };

        let mut sink = build(&text(true)).await;
        sink.write(&[raw("new")]).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\nnew\n");

        let mut sink = build(&text(false)).await;
        assert_eq!(fs::read_to_string(&path).unwrap(), "", "emptied when built");
        sink.write(&[raw("a")]).await.unwrap();
        sink.write(&[raw("b")]).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\nb\n");
    }

    /// A crash of another writer can leave a last line without `\n`; it must not swallow ours.
    #[tokio::test]
    async fn torn_last_line_is_terminated_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        fs::write(&path, "whole\ntorn").unwrap();
        let mut sink = build(&FileConfig {
            encoding: Encoding::Text.into(),
            ..config(&path)
        })
        .await;
        sink.write(&[raw("next")]).await.unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "whole\ntorn\nnext\n");
    }

    #[tokio::test]
    async fn gzip_is_readable_before_and_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson.gz");
        let mut sink = build(&gzip_config(&path)).await;
        let first = lines("first", 0..100);
        let second = lines("second", 0..50);

        sink.write(&first).await.unwrap();
        let (text, complete) = read_gzip(&path);
        assert_eq!(text, expected_ndjson(&first));
        assert!(!complete, "the member is still open");

        sink.write(&second).await.unwrap();
        let (text, _) = read_gzip(&path);
        assert_eq!(text, expected_ndjson(&first) + &expected_ndjson(&second));

        sink.close().await.unwrap();
        let (text, complete) = read_gzip(&path);
        assert!(complete, "close ends the member");
        assert_eq!(text, expected_ndjson(&first) + &expected_ndjson(&second));
        // Compressed, not stored.
        assert!(fs::metadata(&path).unwrap().len() < text.len() as u64 / 3);
    }

    #[tokio::test]
    async fn gzip_append_after_restart_adds_a_member() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson.gz");
        let first = lines("first", 0..10);
        let second = lines("second", 0..10);

        let mut sink = build(&gzip_config(&path)).await;
        sink.write(&first).await.unwrap();
        sink.close().await.unwrap();
        let mut sink = build(&gzip_config(&path)).await;
        sink.write(&second).await.unwrap();
        sink.close().await.unwrap();

        let (text, complete) = read_gzip(&path);
        assert!(complete);
        assert_eq!(text, expected_ndjson(&first) + &expected_ndjson(&second));
        assert_eq!(read_first_member(&path), expected_ndjson(&first));
    }

    /// The real tool must agree: `gzip -t` checks headers, CRCs and sizes of every member.
    #[tokio::test]
    async fn gzip_tool_accepts_the_file() {
        let status = std::process::Command::new("gzip")
            .arg("--version")
            .output()
            .expect("these tests need the gzip tool (apt-get install -y gzip)");
        assert!(status.status.success());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson.gz");
        for round in 0..2 {
            let mut sink = build(&gzip_config(&path)).await;
            sink.write(&lines(&format!("round {round}"), 0..20))
                .await
                .unwrap();
            sink.write(&lines("more", 0..5)).await.unwrap();
            sink.close().await.unwrap();
        }
        gzip_tool_accepts(&path);
        let zcat = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(zcat.stdout).unwrap().lines().count(), 50);
    }

    /// A sink dropped without `close` (a cancelled task, a panic) still ends its member, so the
    /// member appended by the next sink decodes.
    #[tokio::test]
    async fn gzip_dropped_without_close_stays_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson.gz");
        let first = lines("first", 0..10);
        let second = lines("second", 0..10);
        let mut sink = build(&gzip_config(&path)).await;
        sink.write(&first).await.unwrap();
        drop(sink);
        let mut sink = build(&gzip_config(&path)).await;
        sink.write(&second).await.unwrap();
        sink.close().await.unwrap();
        let (text, complete) = read_gzip(&path);
        assert!(complete);
        assert_eq!(text, expected_ndjson(&first) + &expected_ndjson(&second));
    }

    /// `gzip -t` on `path` passes.
    fn gzip_tool_accepts(path: &Path) {
        let test = std::process::Command::new("gzip")
            .arg("-t")
            .arg(path)
            .output()
            .expect("these tests need the gzip tool (apt-get install -y gzip)");
        assert!(test.status.success(), "{test:?}");
    }

    /// A `kill -9` leaves the last member unfinished, perhaps with part of a batch after it: the
    /// next sink ends the member at its last whole batch before appending, so every acknowledged
    /// line decodes, nothing unacknowledged does, and strict tools accept the file.
    #[tokio::test]
    async fn gzip_member_left_unfinished_by_a_crash_is_ended_on_reopen() {
        for torn_bytes in [0usize, 1, 7, 300] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out.ndjson.gz");
            let first = lines("first", 0..200);
            let more = lines("more", 0..50);
            let second = lines("second", 0..10);
            let mut sink = build(&gzip_config(&path)).await;
            sink.write(&first).await.unwrap();
            sink.write(&more).await.unwrap();
            // The crash: no Drop, so no terminator; then part of a batch that was being written.
            std::mem::forget(sink);
            let (_, complete) = read_gzip(&path);
            assert!(!complete);
            let mut torn = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            torn.write_all(expected_ndjson(&lines("torn", 0..100)).as_bytes())
                .unwrap();
            let torn = torn.finish().unwrap();
            let mut file = OpenOptions::new().append(true).open(&path).unwrap();
            file.write_all(&torn[..torn_bytes.min(torn.len())]).unwrap();
            drop(file);

            let mut sink = build(&gzip_config(&path)).await;
            sink.write(&second).await.unwrap();
            sink.close().await.unwrap();
            let (text, complete) = read_gzip(&path);
            assert!(complete, "torn {torn_bytes}");
            assert_eq!(
                text,
                expected_ndjson(&first) + &expected_ndjson(&more) + &expected_ndjson(&second),
                "torn {torn_bytes}"
            );
            gzip_tool_accepts(&path);
        }
    }

    /// A crashed file over `max_file_bytes` is mended before it is rotated away.
    #[tokio::test]
    async fn a_crashed_gzip_file_is_mended_before_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson.gz");
        let first = lines("first", 0..100);
        let config = FileConfig {
            max_file_bytes: Some(ByteSize(100)),
            ..gzip_config(&path)
        };
        let mut sink = build(&config).await;
        sink.write(&first).await.unwrap();
        std::mem::forget(sink);
        let mut sink = build(&config).await;
        sink.write(&lines("second", 0..10)).await.unwrap();
        sink.close().await.unwrap();
        let rotated: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|p| *p != path)
            .collect();
        assert_eq!(rotated.len(), 1, "{rotated:?}");
        assert_eq!(read_gzip(&rotated[0]), (expected_ndjson(&first), true));
        gzip_tool_accepts(&rotated[0]);
    }

    /// A crash in the very first write of a member leaves no whole batch: the member is dropped.
    /// A file that is not this sink's and does not decode is moved aside, never overwritten.
    #[tokio::test]
    async fn gzip_files_that_cannot_be_mended_are_cut_or_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson.gz");
        let kept = lines("kept", 0..5);
        let mut sink = build(&gzip_config(&path)).await;
        sink.write(&kept).await.unwrap();
        sink.close().await.unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&GZIP_HEADER).unwrap();
        file.write_all(&[0x12, 0x34]).unwrap();
        drop(file);
        let second = lines("second", 0..5);
        let mut sink = build(&gzip_config(&path)).await;
        sink.write(&second).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(
            read_gzip(&path),
            (expected_ndjson(&kept) + &expected_ndjson(&second), true)
        );
        gzip_tool_accepts(&path);

        let foreign = dir.path().join("foreign.gz");
        fs::write(&foreign, b"\x1f\x8b\x08\x08not really gzip at all").unwrap();
        let mut sink = build(&gzip_config(&foreign)).await;
        sink.write(&second).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(read_gzip(&foreign), (expected_ndjson(&second), true));
        let aside: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("foreign.gz.damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            fs::read(dir.path().join(&aside[0])).unwrap(),
            b"\x1f\x8b\x08\x08not really gzip at all"
        );
    }

    #[test]
    fn mending_finds_the_last_whole_batch() {
        let mend = |bytes: &[u8]| {
            let mut cursor = io::Cursor::new(bytes.to_vec());
            mend_member(&mut cursor, 0, bytes.len() as u64).unwrap()
        };
        assert_eq!(mend(&GZIP_HEADER), Mended::NoBatch);
        assert_eq!(mend(&[]), Mended::NoBatch);
        let mut member = GZIP_HEADER.to_vec();
        member.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        // A sync point with no line before it is not a batch end.
        assert_eq!(mend(&member), Mended::Damaged);

        // Batches written as the sink writes them, then a torn one: the member ends after the
        // last whole batch, whose sync marker may straddle the pieces the search reads.
        let mut encoder = DeflateEncoder::new(GZIP_HEADER.to_vec(), flate2::Compression::fast());
        let mut plain = Vec::new();
        for batch in 0..40 {
            let lines: String = (0..200)
                .map(|i| format!("batch {batch} line {i}\n"))
                .collect();
            encoder.write_all(lines.as_bytes()).unwrap();
            encoder.flush().unwrap();
            plain.extend_from_slice(lines.as_bytes());
        }
        let mut member = encoder.get_ref().clone();
        let whole = member.len() as u64;
        member.extend_from_slice(&[0x55; 100]);
        let Mended::Ended { keep, terminator } = mend(&member) else {
            panic!("not mended");
        };
        assert_eq!(keep, whole);
        let mut crc = Crc::new();
        crc.update(&plain);
        assert_eq!(terminator, member_terminator(&crc));
    }

    /// A write that fails midway leaves bytes after the last acknowledged batch; they must be cut
    /// and the member ended there, so the retry and later members decode.
    #[tokio::test]
    async fn failed_write_is_rolled_back() {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out");
            let config = if gzip {
                gzip_config(&path)
            } else {
                config(&path)
            };
            let mut sink = build(&config).await;
            let acked = lines("acked", 0..20);
            let retried = lines("retried", 0..20);
            sink.write(&acked).await.unwrap();

            // What a write cut short by a full disk leaves: part of a batch.
            let io = sink.io.as_mut().unwrap();
            let open = &mut io.files.get_mut(&path).unwrap().file;
            let mut junk = Vec::new();
            encode_batch(&retried, Encoding::Ndjson, &mut junk);
            if let Some(member) = open.gzip.as_mut() {
                member.encoder.write_all(&junk).unwrap();
                member.encoder.flush().unwrap();
                junk = member.encoder.get_ref().clone();
            }
            open.file.write_all(&junk[..junk.len() / 2]).unwrap();
            // What `write_one` does on the error.
            open.rollback();
            io.files.remove(&path);

            sink.write(&retried).await.unwrap();
            sink.close().await.unwrap();
            let text = if gzip {
                let (text, complete) = read_gzip(&path);
                assert!(complete);
                text
            } else {
                fs::read_to_string(&path).unwrap()
            };
            assert_eq!(
                text,
                expected_ndjson(&acked) + &expected_ndjson(&retried),
                "gzip {gzip}"
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn full_disk_is_transient_with_path_and_os_error() {
        let path = Path::new("/dev/full");
        if !path.exists() {
            return;
        }
        let mut sink = build(&config(path)).await;
        let error = sink.write(&[raw("x")]).await.unwrap_err();
        assert!(error.is_transient());
        let message = error.to_string();
        assert!(message.contains("/dev/full"), "{message}");
        assert!(message.contains("os error 28"), "{message}");
    }

    #[tokio::test]
    async fn open_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, "a file, not a directory").unwrap();
        let path = blocker.join("out.log");
        let error = config(&path)
            .build(&SinkContext::default())
            .await
            .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("path"));
        assert!(
            error.message.contains(&*path.to_string_lossy()),
            "{}",
            error.message
        );
        assert!(error.message.contains("os error"), "{}", error.message);
    }

    static FAKE_NOW: AtomicI64 = AtomicI64::new(0);

    fn fake_clock() -> DateTime<Utc> {
        DateTime::from_timestamp(FAKE_NOW.load(Ordering::SeqCst), 0).unwrap()
    }

    /// Crossing midnight ends the day's file and opens the next in a new dated directory; an open
    /// error on the new path is transient and names it.
    #[tokio::test]
    async fn dated_path_rotates_at_midnight() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("%Y-%m-%d/requests.ndjson.gz");
        let mut sink = build(&gzip_config(&template)).await;
        sink.clock = fake_clock;
        let day1 = dir.path().join("2024-05-01/requests.ndjson.gz");
        let day2 = dir.path().join("2024-05-02/requests.ndjson.gz");
        let before = lines("before midnight", 0..5);
        let after = lines("after midnight", 0..5);

        FAKE_NOW.store(1_714_607_999, Ordering::SeqCst); // 2024-05-01T23:59:59Z
        sink.write(&before).await.unwrap();
        FAKE_NOW.store(1_714_608_000, Ordering::SeqCst); // 2024-05-02T00:00:00Z
        sink.write(&after).await.unwrap();

        // Rotation ended day 1's member; day 2's is open.
        assert_eq!(read_gzip(&day1), (expected_ndjson(&before), true));
        assert_eq!(read_gzip(&day2), (expected_ndjson(&after), false));
        sink.close().await.unwrap();
        assert_eq!(read_gzip(&day2), (expected_ndjson(&after), true));

        // Day 3's directory cannot be created: a transient error naming the path.
        fs::write(dir.path().join("2024-05-03"), "in the way").unwrap();
        FAKE_NOW.store(1_714_694_400, Ordering::SeqCst); // 2024-05-03T00:00:00Z
        let error = sink.write(&after).await.unwrap_err();
        assert!(error.is_transient());
        assert!(error.to_string().contains("2024-05-03"), "{error}");
        assert!(error.to_string().contains("os error"), "{error}");
    }

    #[test]
    fn validate_rejects_paths_naming_no_file() {
        let check = |path: &str| {
            FileConfig {
                path: path.to_owned(),
                ..config(Path::new("x"))
            }
            .validate()
        };
        assert!(check("out.log").is_ok());
        assert!(check("logs/%Y/%m/%d/out-%H.log.gz").is_ok());
        assert!(check("100%%.log").is_ok());
        for bad in ["", "logs/", "logs/%Y/", "%Y/.", "..", " "] {
            let error = check(bad).unwrap_err();
            assert_eq!(error.key.as_deref(), Some("path"), "{bad:?}");
        }
        let error = check("out-%Q.log").unwrap_err();
        assert!(
            error.message.contains("invalid strftime specifier"),
            "{}",
            error.message
        );
        let error = check("logs/%Y/").unwrap_err();
        assert_eq!(
            error.message,
            "\"logs/%Y/\" expands to \"logs/1970/\", which names no file"
        );
    }

    #[test]
    fn config_defaults_and_rejects_unknown_keys() {
        let config: FileConfig = serde_json::from_str(r#"{"path":"out.ndjson"}"#).unwrap();
        assert_eq!(config.encoding, Encoding::Ndjson);
        assert_eq!(config.compression, Compression::None);
        assert!(config.append);
        assert!(!config.fsync);
        assert!(serde_json::from_str::<FileConfig>(r#"{"path":"a","gzip":true}"#).is_err());
        assert!(
            serde_json::from_str::<FileConfig>(r#"{"path":"a","compression":"zstd"}"#).is_err()
        );
        assert!(serde_json::from_str::<FileConfig>("{}").is_err());
    }

    #[tokio::test]
    async fn fsync_writes_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/dir/out.ndjson.gz");
        let mut sink = build(&FileConfig {
            fsync: true,
            ..gzip_config(&path)
        })
        .await;
        sink.write(&lines("synced", 0..3)).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(
            read_gzip(&path),
            (expected_ndjson(&lines("synced", 0..3)), true)
        );
    }

    fn page(page: &str, n: i64) -> Event {
        let mut event = Event::default();
        event.insert("page", page);
        event.insert("n", n);
        event
    }

    fn files_under(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(next) = stack.pop() {
            for entry in fs::read_dir(next).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    found.push(
                        path.strip_prefix(dir)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        found.sort();
        found
    }

    /// Regression (issue 10, item 8): `%Y-%m-%d` used the wall clock, so a backfill of January
    /// landed in today's folder. Each event's `timestamp` picks its file now; events without one
    /// use the current time.
    #[tokio::test]
    async fn backfilled_events_land_in_the_folders_of_their_own_time() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("archive/%Y-%m-%d/requests.ndjson.gz");
        let mut sink = build(&gzip_config(&template)).await;
        // Building made the fixed directory only: no file for today before any event says so.
        assert!(dir.path().join("archive").is_dir());
        assert!(files_under(dir.path()).is_empty());
        sink.clock = || DateTime::from_timestamp(1_714_564_800, 0).unwrap(); // 2024-05-01T12:00Z
        let at = |n: i64, time: Value| {
            let mut event = page("home", n);
            event.insert("timestamp", time);
            event
        };
        let jan = |text: &str| Value::Timestamp(text.parse().unwrap());
        let first = vec![
            at(1, jan("2024-01-14T23:59:59Z")),
            at(2, jan("2024-01-15T00:00:00Z")),
            // An RFC 3339 string counts, in UTC: 00:30 at +01:00 is still the 14th.
            at(3, Value::from("2024-01-15T00:30:00+01:00")),
            page("home", 4), // no time: today
            at(5, Value::from("not a time")),
        ];
        sink.write(&first).await.unwrap();
        let second = vec![at(6, jan("2024-01-15T08:00:00Z"))];
        sink.write(&second).await.unwrap();
        let day = |name: &str| {
            dir.path()
                .join(format!("archive/{name}/requests.ndjson.gz"))
        };
        // The second batch had nothing for the 14th or today: those files are finished.
        assert_eq!(
            read_gzip(&day("2024-01-14")),
            (expected_ndjson(&[first[0].clone(), first[2].clone()]), true)
        );
        assert_eq!(
            read_gzip(&day("2024-05-01")),
            (expected_ndjson(&[first[3].clone(), first[4].clone()]), true)
        );
        assert_eq!(
            read_gzip(&day("2024-01-15")),
            (
                expected_ndjson(&[first[1].clone(), second[0].clone()]),
                false
            )
        );
        // A late event for the 14th appends a member to its file.
        let late = vec![at(7, jan("2024-01-14T12:00:00Z"))];
        sink.write(&late).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(
            read_gzip(&day("2024-01-14")).0,
            expected_ndjson(&[first[0].clone(), first[2].clone(), late[0].clone()])
        );
        assert_eq!(files_under(dir.path()).len(), 3);

        // With fields too.
        let template = dir.path().join("by-page/%Y-%m/{page}.ndjson");
        let mut sink = build(&config(&template)).await;
        sink.write(&[at(8, jan("2024-01-31T23:00:00Z"))])
            .await
            .unwrap();
        sink.close().await.unwrap();
        assert!(dir.path().join("by-page/2024-01/home.ndjson").is_file());

        // A fixed directory that cannot be created fails the build, naming it.
        fs::write(dir.path().join("blocked"), "in the way").unwrap();
        let error = FileConfig::new(
            dir.path()
                .join("blocked/%Y/out.log")
                .to_string_lossy()
                .into_owned(),
        )
        .build(&SinkContext::default())
        .await
        .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("path"));
        assert!(error.message.contains("blocked"), "{}", error.message);
    }

    /// A batch is split by the rendered path, and field values cannot climb out of the directory.
    #[tokio::test]
    async fn field_templates_split_batches_and_sanitize_values() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("out/%Y/{page}.ndjson");
        let mut sink = build(&config(&template)).await;
        sink.clock = || DateTime::from_timestamp(1_714_564_800, 0).unwrap();
        let mut nested = page("x", 9);
        nested.remove("page");
        let events = [
            page("home", 1),
            page("../../etc/passwd", 2),
            page("home", 3),
            page("..", 4),
            page("a/b\\c\u{0}", 5),
            page(".hidden", 6),
            page("", 7),
            nested,
        ];
        sink.write(&events).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(
            files_under(dir.path()),
            [
                "out/2024/_..ndjson",
                "out/2024/_._.._etc_passwd.ndjson",
                "out/2024/_.ndjson",
                "out/2024/_hidden.ndjson",
                "out/2024/a_b_c_.ndjson",
                "out/2024/home.ndjson",
            ]
        );
        let home = fs::read_to_string(dir.path().join("out/2024/home.ndjson")).unwrap();
        assert_eq!(
            home,
            "{\"page\":\"home\",\"n\":1}\n{\"page\":\"home\",\"n\":3}\n"
        );
        let missing = fs::read_to_string(dir.path().join("out/2024/_.ndjson")).unwrap();
        assert_eq!(
            missing.lines().count(),
            2,
            "empty and missing values share `_`"
        );
        assert!(PathTemplate::parse("a/{}.log").is_err());
        assert!(PathTemplate::parse("a/{page.log").is_err());
        assert!(PathTemplate::parse("a/page}.log").is_err());
    }

    #[tokio::test]
    async fn rotates_by_size_and_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("req.ndjson.gz");
        let mut sink = build(&FileConfig {
            max_file_bytes: Some(ByteSize(100)),
            ..gzip_config(&path)
        })
        .await;
        let mut written = Vec::new();
        for round in 0..10 {
            FAKE_NOW.store(1_714_564_800 + round, Ordering::SeqCst);
            sink.clock = fake_clock;
            let batch = lines(&format!("round {round}"), 0..20);
            sink.write(&batch).await.unwrap();
            written.extend(batch);
        }
        sink.close().await.unwrap();
        let names = files_under(dir.path());
        assert!(names.len() >= 3, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n == "req.ndjson.gz" || n.starts_with("req.20240501T1200")),
            "{names:?}"
        );
        // Every rotated file is complete gzip, and together they hold every line once, in order.
        let mut all = String::new();
        let mut rotated: Vec<&String> = names.iter().filter(|n| *n != "req.ndjson.gz").collect();
        rotated.sort();
        for name in rotated
            .into_iter()
            .chain(std::iter::once(&"req.ndjson.gz".to_owned()))
        {
            let (text, complete) = read_gzip(&dir.path().join(name));
            assert!(complete, "{name}");
            all.push_str(&text);
        }
        assert_eq!(all, expected_ndjson(&written));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aged.log");
        let mut sink = build(&FileConfig {
            rotate_interval: Some(Duration::from_secs(3600)),
            ..config(&path)
        })
        .await;
        sink.clock = fake_clock;
        // The file was opened at build, with the real clock.
        let base = Utc::now().timestamp() + 5;
        for (offset, line) in [(0, "a"), (3000, "b"), (3610, "c"), (7000, "d"), (7300, "e")] {
            FAKE_NOW.store(base + offset, Ordering::SeqCst);
            sink.write(&lines(line, 0..1)).await.unwrap();
        }
        sink.close().await.unwrap();
        let names = files_under(dir.path());
        // Rotated before "c" (open 3610 s) and before "e" (open since "c", 3690 s).
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"message\":\"e line 0\"}\n"
        );
    }

    #[tokio::test]
    async fn open_files_are_bounded_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("{page}.ndjson.gz");
        let mut sink = build(&FileConfig {
            max_open_files: 2,
            ..gzip_config(&template)
        })
        .await;
        for (n, name) in ["a", "b", "a", "c", "b", "a"].into_iter().enumerate() {
            sink.write(&[page(name, n as i64)]).await.unwrap();
            assert!(sink.io.as_ref().unwrap().files.len() <= 2);
        }
        // "b" was least recently used when "c" opened, then "a" when "b" came back.
        let open: std::collections::BTreeSet<String> = sink
            .io
            .as_ref()
            .unwrap()
            .files
            .keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            open.into_iter().collect::<Vec<_>>(),
            ["a.ndjson.gz", "b.ndjson.gz"]
        );
        sink.close().await.unwrap();
        // Files closed and reopened hold several members, all valid.
        let (text, complete) = read_gzip(&dir.path().join("a.ndjson.gz"));
        assert!(complete);
        assert_eq!(text.lines().count(), 3);
    }

    /// A batch over two files where the second fails: the retry of the same request must not
    /// write the first file again.
    #[tokio::test]
    async fn retry_after_a_partial_multi_file_write_does_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("{page}/out.ndjson");
        let mut sink = build(&config(&template)).await;
        fs::write(
            dir.path().join("blocked"),
            "a file where a directory should be",
        )
        .unwrap();
        let events = [page("ok", 1), page("blocked", 2), page("ok", 3)];
        let chunks: [&[Event]; 1] = [&events];
        let error = sink.write_chunks(&chunks).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        fs::remove_file(dir.path().join("blocked")).unwrap();
        sink.write_chunks(&chunks).await.unwrap();
        sink.close().await.unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("ok/out.ndjson"))
                .unwrap()
                .lines()
                .count(),
            2
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("blocked/out.ndjson"))
                .unwrap()
                .lines()
                .count(),
            1
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let text = prop_oneof![".{0,12}", "[\"\\\\\n\r\t =a\u{0}\u{7f}\u{2028}é😀]{0,8}"];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            text.prop_map(Value::from),
            (0i64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(secs, nanos)| {
                Value::Timestamp(DateTime::from_timestamp(secs, nanos).unwrap())
            }),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((".{0,6}", inner), 0..4)
                    .prop_map(|pairs| Value::Map(pairs.into_iter().collect())),
            ]
        })
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let name = prop_oneof![".{0,8}", "[\"\n =]{1,3}", Just("message".to_owned())];
        (
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            prop::collection::vec((name, arb_value()), 0..6),
        )
            .prop_map(|(raw, pairs)| {
                let mut event = Event::from_fields(pairs.into_iter().collect::<Fields>());
                event.set_raw(raw.map(Bytes::from));
                event
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// No event can break NDJSON framing: every line read back is one JSON object with the
        /// event's fields (and `message` for its raw line).
        #[test]
        fn ndjson_lines_frame_every_event(
            batches in prop::collection::vec(prop::collection::vec(arb_event(), 0..8), 1..4),
            gzip in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out.ndjson");
            let config = if gzip { gzip_config(&path) } else { config(&path) };
            runtime.block_on(async {
                let mut sink = build(&config).await;
                for batch in &batches {
                    sink.write(batch).await.unwrap();
                }
                sink.close().await.unwrap();
            });
            let text = if gzip { read_gzip(&path).0 } else { fs::read_to_string(&path).unwrap() };
            let events: Vec<&Event> = batches.iter().flatten().collect();
            let lines: Vec<&str> = text.split_terminator('\n').collect();
            prop_assert_eq!(lines.len(), events.len());
            prop_assert!(text.is_empty() || text.ends_with('\n'));
            for (line, event) in lines.iter().zip(events) {
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
                // A field named `message` wins over the raw line: the key is written once.
                let shadowed = event.raw().is_some() && event.get("message").is_some();
                let expected = event.fields().len() + usize::from(event.raw().is_some())
                    - usize::from(shadowed);
                prop_assert_eq!(object.len(), expected, "{}", line);
            }
        }
    }
}
