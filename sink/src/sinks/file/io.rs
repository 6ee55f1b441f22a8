//! The blocking side: open files, appending a batch, rotation, and cutting a failed write back
//! to the last acknowledged length.

use super::*;
use std::io;

/// A buffer kept after a huge batch is given back above this size.
pub(super) const MAX_RETAINED_BUFFER: usize = 16 << 20;

/// An open file and when it was opened.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) file: OpenFile,
    pub(super) opened_at: DateTime<Utc>,
    pub(super) last_used: u64,
}

/// What moves to the blocking pool for a write: the encoded groups and the open files.
#[derive(Debug)]
pub(super) struct FileIo {
    /// The batch, encoded per path.
    pub(super) groups: Vec<(PathBuf, Vec<u8>)>,
    /// Cleared buffers for the next batch.
    pub(super) spare: Vec<Vec<u8>>,
    pub(super) files: HashMap<PathBuf, Entry>,
    /// Files this sink opened once already (for `append = false`).
    pub(super) seen: HashSet<PathBuf>,
    pub(super) tick: u64,
    pub(super) options: Options,
    /// Encoded bytes (before gzip) appended by the last `write_groups`.
    pub(super) written: u64,
}

impl FileIo {
    pub(super) fn new(options: Options) -> Self {
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

    pub(super) fn recycle_groups(&mut self) {
        for (_, mut buffer) in self.groups.drain(..) {
            if buffer.capacity() <= MAX_RETAINED_BUFFER {
                buffer.clear();
                self.spare.push(buffer);
            }
        }
    }

    /// Writes every group not in `skip`; returns the result and the paths written.
    pub(super) fn write_groups(
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
    pub(super) fn write_one(
        &mut self,
        path: &Path,
        data: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), SinkError> {
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
    pub(super) fn open(&mut self, path: &Path, now: DateTime<Utc>) -> io::Result<()> {
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

    pub(super) fn close_all(&mut self) -> Result<(), SinkError> {
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
pub(super) fn rotate(path: &Path, now: DateTime<Utc>) -> io::Result<()> {
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

pub(super) fn io_error(what: &str, path: &Path, error: &io::Error) -> SinkError {
    SinkError::Transient(format!("{what} {}: {error}", path.display()))
}

/// An open file and how much of it is acknowledged.
#[derive(Debug)]
pub(super) struct OpenFile {
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// The file's length after the last acknowledged write.
    pub(super) acked_len: u64,
    /// The member being written, for gzip; `None` for plain files and once a member is ended.
    pub(super) gzip: Option<GzipMember>,
}

impl OpenFile {
    /// Opens `path` for appending, creating it and its directories.
    pub(super) fn open(
        path: PathBuf,
        gzip: bool,
        truncate: bool,
        fsync: bool,
    ) -> io::Result<OpenFile> {
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

    pub(super) fn open_inner(
        path: &Path,
        gzip: bool,
        truncate: bool,
        fsync: bool,
    ) -> io::Result<(File, u64)> {
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
    pub(super) fn append(&mut self, data: &[u8], fsync: bool) -> io::Result<()> {
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
    pub(super) fn rollback(&mut self) {
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
    pub(super) fn end_member(&mut self) -> io::Result<()> {
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
    pub(super) fn finish(mut self, fsync: bool) -> io::Result<()> {
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
