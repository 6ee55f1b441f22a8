//! Discovery and scheduling of the files a `file` source reads.
//!
//! [`FileSource::run`] keeps a list of [`FileReader`]s. Each round gives every file one turn: its
//! reader moves into `spawn_blocking`, reads up to [`READ_BUDGET`] bytes, and comes back with
//! its batches, which are then published (waiting while the topic is full: that is where
//! back-pressure stops the reading). A file that had more data makes the next round start at
//! once; when every file is idle the source sleeps `poll_interval`, then checks them again and
//! looks for new files matching `include`. With `follow = false` every file is read to its end
//! once and the source returns.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::time::Instant;

use super::config::{FileSettings, Include, ReadFrom, matches_pattern};
use super::reader::{FileReader, ReadOutcome};
use crate::sources::lines::{BatchBuilder, LineEvents};
use crate::sources::{Source, SourceContext, SourceError, SourceFuture};

/// Bytes one file reads in one turn (one trip to a blocking thread).
pub const READ_BUDGET: u64 = 4 << 20;

/// The `file` source.
#[derive(Debug)]
pub struct FileSource {
    settings: FileSettings,
}

impl FileSource {
    /// A source with validated settings.
    pub fn new(settings: FileSettings) -> Self {
        FileSource { settings }
    }

    /// Whether the source ends by itself (`follow = false`).
    pub fn is_finite(&self) -> bool {
        !self.settings.follow
    }
}

impl Source for FileSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(async move { Scheduler::new(self.settings, &ctx).run(&ctx).await })
    }
}

/// The files being read and the ones already seen.
struct Scheduler {
    settings: FileSettings,
    include: Arc<[Include]>,
    readers: Vec<FileReader>,
    /// Paths opened once; never opened again (rotation handling comes later).
    known: HashSet<PathBuf>,
    /// Paths that failed to open, warned about once.
    warned: HashSet<PathBuf>,
    truncated_lines: Arc<crate::metrics::Counter>,
}

impl Scheduler {
    fn new(settings: FileSettings, ctx: &SourceContext) -> Self {
        Scheduler {
            include: settings.include.clone().into(),
            settings,
            readers: Vec::new(),
            known: HashSet::new(),
            warned: HashSet::new(),
            truncated_lines: ctx.metrics.counter("truncated_lines"),
        }
    }

    async fn run(mut self, ctx: &SourceContext) -> Result<(), SourceError> {
        let follow = self.settings.follow;
        self.discover(self.settings.read_from, ctx).await?;
        if self.readers.is_empty() {
            tracing::warn!(
                source = %ctx.name,
                include = ?self.settings.include,
                "No file to read yet"
            );
        }
        let mut last_scan = Instant::now();
        loop {
            if ctx.shutdown.is_triggered() {
                return Ok(());
            }
            // Checked on every round, so a file that is never idle does not hide new ones.
            if follow && last_scan.elapsed() >= self.settings.poll_interval {
                self.discover(ReadFrom::Beginning, ctx).await?;
                last_scan = Instant::now();
            }
            let Some(progressed) = self.round(ctx).await? else {
                return Ok(());
            };
            if !follow && self.readers.is_empty() {
                return Ok(());
            }
            if !progressed {
                tokio::select! {
                    () = tokio::time::sleep(self.settings.poll_interval) => {}
                    () = ctx.shutdown.wait() => return Ok(()),
                }
            }
        }
    }

    /// Gives every file one turn. Returns whether any file still had data when its turn ended,
    /// or `None` when shutdown stopped publishing.
    async fn round(&mut self, ctx: &SourceContext) -> Result<Option<bool>, SourceError> {
        let finish_at_eof = !self.settings.follow;
        let mut progressed = false;
        for mut reader in std::mem::take(&mut self.readers) {
            let (reader_back, mut out, result) = tokio::task::spawn_blocking(move || {
                let mut out = BatchBuilder::new();
                let result = reader.read(READ_BUDGET, &mut out, finish_at_eof);
                (reader, out, result)
            })
            .await
            .map_err(|error| SourceError::new(format!("file reader task failed: {error}")))?;
            reader = reader_back;
            let (batches, truncated) = out.take();
            self.truncated_lines.add(truncated);
            for ready in batches {
                if !ctx.publish(ready.batch, ready.raw_bytes).await {
                    return Ok(None);
                }
            }
            match result {
                Ok(ReadOutcome { eof: true, .. }) if finish_at_eof => {}
                Ok(outcome) => {
                    progressed |= !outcome.eof;
                    self.readers.push(reader);
                }
                Err(error) => {
                    ctx.metrics.errors.add(1);
                    tracing::error!(
                        source = %ctx.name,
                        path = %reader.path().display(),
                        %error,
                        "Cannot read file; it is no longer read"
                    );
                }
            }
        }
        Ok(Some(progressed))
    }

    /// Opens the files matching `include` that were not opened before.
    async fn discover(
        &mut self,
        read_from: ReadFrom,
        ctx: &SourceContext,
    ) -> Result<(), SourceError> {
        let include = self.include.clone();
        let known = std::mem::take(&mut self.known);
        let warned = std::mem::take(&mut self.warned);
        let settings = self.settings.clone();
        let id = ctx.id;
        let name = ctx.name.clone();
        let (readers, known, warned) = tokio::task::spawn_blocking(move || {
            let mut known = known;
            let mut warned = warned;
            let mut readers = Vec::new();
            for path in find_files(&include) {
                if known.contains(&path) {
                    continue;
                }
                let mut events = LineEvents::new(id);
                if let Some(field) = &settings.path_field {
                    events = events.with_path(field.clone(), &path.to_string_lossy());
                }
                if let Some(field) = &settings.offset_field {
                    events = events.with_offset(field.clone());
                }
                match FileReader::open(&path, read_from, &settings.format, events) {
                    Ok(reader) => {
                        tracing::info!(
                            source = %name,
                            path = %path.display(),
                            position = reader.position(),
                            "Reading file"
                        );
                        readers.push(reader);
                        warned.remove(&path);
                        known.insert(path);
                    }
                    // Deleted between listing and opening: nothing to say.
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        if warned.insert(path.clone()) {
                            tracing::warn!(
                                source = %name,
                                path = %path.display(),
                                %error,
                                "Cannot open file; will retry"
                            );
                        }
                    }
                }
            }
            (readers, known, warned)
        })
        .await
        .map_err(|error| SourceError::new(format!("file discovery task failed: {error}")))?;
        self.readers.extend(readers);
        self.known = known;
        self.warned = warned;
        Ok(())
    }
}

/// Every regular file the `include` entries name now, in entry order (matches of one pattern
/// sorted by name), each once.
pub fn find_files(include: &[Include]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for entry in include {
        match entry {
            Include::Path(path) => {
                if is_file(path) && seen.insert(path.clone()) {
                    found.push(path.clone());
                }
            }
            Include::Glob { dir, pattern } => {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut matched: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .filter(|entry| matches_pattern(pattern, &entry.file_name().to_string_lossy()))
                    .map(|entry| entry.path())
                    .filter(|path| is_file(path))
                    .collect();
                matched.sort();
                for path in matched {
                    if seen.insert(path.clone()) {
                        found.push(path);
                    }
                }
            }
        }
    }
    found
}

fn is_file(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file())
}
