//! Recognising files: listing the patterns, telling a new file from a renamed, rotated,
//! truncated or rewritten one, and opening what is found (the rules in the parent module's doc,
//! "Recognising files").

use super::*;

impl Tailer {
    /// Lists the patterns and reconciles what is found with the records (see the module doc).
    pub fn scan(&mut self, now: Instant) {
        let initial = !self.scanned;
        self.scanned = true;
        self.previous_scan = self.last_scan.replace(now);
        let found = self.find();
        let unix_now = unix_seconds(SystemTime::now());
        let mut seen_keys = HashSet::new();
        let mut unknown = Vec::new();
        let by_key = self.records_by_key();
        for file in found {
            if !seen_keys.insert(file.key) {
                continue;
            }
            match by_key.get(&file.key).copied() {
                Some(id) => {
                    if !self.rescan_known(id, &file, unix_now, now) {
                        unknown.push(file);
                    }
                }
                None => unknown.push(file),
            }
        }
        for id in &self.open_ids {
            let Some(record) = self.records.get_mut(id) else {
                continue;
            };
            if let (Some(open), Some(key)) = (&mut record.open, record.key) {
                if seen_keys.contains(&key) {
                    open.unreachable_since = None;
                } else if open.unreachable_since.is_none() {
                    open.unreachable_since = Some(now);
                    open.active = true;
                }
            }
        }
        // Every open file, found or not (a deleted original of a copy is not found), is checked
        // for truncation before new files are considered: a copy can then take over the
        // original's content, and the heads compared with new files are current.
        let open: Vec<RecordId> = self.open_ids.iter().copied().collect();
        for id in open {
            self.check_rewritten(id, now);
        }
        let read_from = if initial && self.first_start {
            self.settings.read_from
        } else {
            ReadFrom::Beginning
        };
        let new_files = unknown.len();
        if !unknown.is_empty() {
            self.index = Some(self.head_index());
        }
        for file in unknown {
            self.consider_new(file, read_from, &seen_keys, (unix_now, now), false);
        }
        self.index = None;
        self.waiting.retain(|key, _| seen_keys.contains(key));
        self.forget(unix_now);
        tracing::debug!(source = %self.name, found = seen_keys.len(), new_files,
            records = self.records.len(), took = ?now.elapsed(), "Scanned");
    }

    /// The record of each inode: the open one where there is one (a closed record with the same
    /// inode is an older content), else the newest.
    pub(in crate::sources::file) fn records_by_key(&self) -> HashMap<FileKey, RecordId> {
        let mut by_key: HashMap<FileKey, (RecordId, bool)> = HashMap::new();
        for (id, record) in &self.records {
            let Some(key) = record.key else {
                continue;
            };
            let open = record.open.is_some();
            let keep_existing = by_key
                .get(&key)
                .is_some_and(|(_, existing_open)| *existing_open && !open);
            if !keep_existing {
                by_key.insert(key, (*id, open));
            }
        }
        by_key.into_iter().map(|(key, (id, _))| (key, id)).collect()
    }

    /// Every file matching `include` and not `exclude`, each path once.
    pub(in crate::sources::file) fn find(&mut self) -> Vec<Found> {
        let mut paths = Vec::new();
        let mut seen = HashSet::new();
        for pattern in &self.settings.include {
            for path in pattern.find() {
                if seen.insert(path.clone()) {
                    paths.push(path);
                }
            }
        }
        paths.retain(|path| !self.is_excluded(path));
        paths
            .into_iter()
            .filter_map(|path| {
                let metadata = std::fs::metadata(&path).ok()?;
                let key = FileKey::of(&metadata);
                Some(Found {
                    path,
                    metadata,
                    key,
                })
            })
            .collect()
    }

    /// Whether `exclude` rules `path` out.
    pub(in crate::sources::file) fn is_excluded(&self, path: &Path) -> bool {
        self.settings.exclude.iter().any(|pattern| {
            if pattern.is_name_only() {
                pattern.matches_name(path)
            } else {
                pattern.matches(path)
            }
        })
    }

    /// Reconciles a found file with the record of its inode. Returns `false` when the record
    /// turned out to be an older content and the file is to be treated as unknown.
    pub(in crate::sources::file) fn rescan_known(
        &mut self,
        id: RecordId,
        file: &Found,
        unix_now: u64,
        now: Instant,
    ) -> bool {
        let fingerprint_bytes = self.settings.fingerprint_bytes;
        let Some(record) = self.records.get_mut(&id) else {
            return false;
        };
        // Coarse, so an idle source does not rewrite its checkpoints every second.
        if unix_now >= record.seen + SEEN_GRANULARITY {
            record.seen = unix_now;
        }
        if record.open.is_some() {
            if record.path != file.path {
                tracing::info!(
                    source = %self.name,
                    from = %record.path.display(),
                    to = %file.path.display(),
                    "File renamed; still reading it"
                );
                record.path = file.path.clone();
                if let Some(open) = &mut record.open {
                    let abs = absolute(&file.path);
                    self.by_abs.remove(&open.abs);
                    self.by_abs.insert(abs.clone(), id);
                    open.abs = abs;
                }
            }
            return true;
        }
        if record.done {
            record.path = file.path.clone();
            return true;
        }
        if record.failed_at_size == Some(file.metadata.len()) {
            return true;
        }
        let parked = record.parked;
        if parked {
            // Opened again when it changed, once a descriptor is free.
            record.path = file.path.clone();
            if file.metadata.len() == record.read {
                return true;
            }
        }
        if record.fingerprint.len == 0 {
            // Nothing was ever read from it: no evidence that this is the same content (the
            // inode may have been reused).
            self.records.remove(&id);
            return false;
        }
        let gzip = record.gzip;
        // A parked file makes room only by parking idle ones; one found again (a restart) may
        // park busy ones too.
        if !self.make_room(!parked, now) {
            self.starved = true;
            return true;
        }
        // A closed record: its file came back (or this is a restart). Same content?
        let opened = open_with_head(&file.path, fingerprint_bytes, gzip);
        let Some(record) = self.records.get_mut(&id) else {
            return false;
        };
        match opened {
            Ok((handle, head, gzip))
                if record.fingerprint.matches(&head)
                    && (gzip
                        || (file.metadata.len() >= record.read
                            && (record.tail.is_none() || same_tail(record, &handle)))) =>
            {
                record.path = file.path.clone();
                record.head = head;
                record.fingerprint = Fingerprint::of(&record.head);
                record.gzip = gzip;
                self.open_record(id, handle, now);
                true
            }
            Ok(_) => {
                // The inode holds something else now.
                record.key = None;
                record.orphan = Some(Orphan::Truncated);
                record.truncated_at = Some(now);
                false
            }
            Err(error) => {
                self.warn_once(&file.path, &error);
                true
            }
        }
    }

    /// Decides what a file with an unknown inode is (steps 3 to 5 of the module doc).
    /// Looked at `alone` (not in a scan), a file whose head is related to an open file's (one
    /// starts with the other: a copy, maybe of a file truncated since) is left to a full scan,
    /// which checks the open files for truncation first; returns whether it was.
    pub(in crate::sources::file) fn consider_new(
        &mut self,
        file: Found,
        read_from: ReadFrom,
        seen_keys: &HashSet<FileKey>,
        (unix_now, now): (u64, Instant),
        alone: bool,
    ) -> bool {
        let size = file.metadata.len();
        if size == 0 {
            return false;
        }
        if let Some(max_age) = self.settings.ignore_older {
            let old = file
                .metadata
                .modified()
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .is_some_and(|age| age > max_age);
            if old {
                return false;
            }
        }
        if !self.make_room(true, now) {
            self.starved = true;
            return false;
        }
        let (handle, head, gzip) =
            match open_with_head(&file.path, self.settings.fingerprint_bytes, None) {
                Ok(opened) => opened,
                Err(error) => {
                    self.warn_once(&file.path, &error);
                    return false;
                }
            };
        self.warned.remove(&file.path);
        if alone && self.is_related_to_open(&head) {
            return true;
        }
        if let Some(id) = self.find_orphan(&handle, &head, (size, gzip), seen_keys, alone, now) {
            self.waiting.remove(&file.key);
            let Some(record) = self.records.get_mut(&id) else {
                return false;
            };
            if !gzip && size < record.read {
                // A copy made before reading got past its end (logrotate fsyncs the copy before
                // it truncates the original, and the lines written meanwhile were read from the
                // original): everything in it was read. It goes on from its end.
                tracing::info!(
                    source = %self.name,
                    path = %file.path.display(),
                    was = %record.path.display(),
                    offset = record.read,
                    size,
                    "Found the rotated copy of a file; everything in it was read already"
                );
                clamp_read(record, size, &handle);
            } else {
                tracing::info!(
                    source = %self.name,
                    path = %file.path.display(),
                    was = %record.path.display(),
                    offset = record.read,
                    "Found the rotated copy of a file; reading it on from where that one was"
                );
            }
            record.key = Some(file.key);
            record.orphan = None;
            record.truncated_at = None;
            record.path = file.path;
            record.seen = unix_now;
            record.gzip = gzip;
            record.head = head;
            record.fingerprint = Fingerprint::of(&record.head);
            if !record.done {
                self.open_record(id, handle, now);
            }
            return false;
        }
        if self.settings.follow && self.is_possible_copy(&head, file.key) {
            let waiting = self.waiting.entry(file.key).or_insert_with(|| {
                tracing::info!(
                    source = %self.name,
                    path = %file.path.display(),
                    "New file starts like one being read; holding it back as a possible copy"
                );
                Waiting { since: now }
            });
            if gzip || now.saturating_duration_since(waiting.since) < self.settings.rotate_wait {
                return false;
            }
        }
        self.waiting.remove(&file.key);
        let start = match read_from {
            ReadFrom::Beginning => 0,
            ReadFrom::End if gzip => u64::MAX,
            ReadFrom::End => size,
        };
        let id = self.new_id();
        // A file still being finished at this path goes first.
        let wait_for = match self.index.as_ref() {
            Some(index) => index
                .open_at(&file.path)
                .filter(|id| self.records.get(id).is_some_and(|r| r.open.is_some())),
            None => self
                .open_records()
                .find(|(_, r, _)| r.path == file.path)
                .map(|(id, _, _)| id),
        };
        self.records.insert(
            id,
            Record {
                key: Some(file.key),
                orphan: None,
                fingerprint: Fingerprint::of(&head),
                head,
                path: file.path,
                read: if start == u64::MAX { 0 } else { start },
                marked: if start == u64::MAX { 0 } else { start },
                safe: if start == u64::MAX { 0 } else { start },
                tail: None,
                safe_tail: None,
                gzip,
                done: start == u64::MAX,
                seen: unix_now,
                open: None,
                failed_at_size: None,
                parked: false,
                truncated_at: None,
            },
        );
        if start != u64::MAX {
            self.open_record(id, handle, now);
            if let Some(open) = self.records.get_mut(&id).and_then(|r| r.open.as_mut()) {
                open.wait_for = wait_for;
            }
            // The file it waits for was renamed or deleted, maybe after more was written to it:
            // it takes a turn to find its end before this one is read.
            if let Some(first) = wait_for.and_then(|first| self.records.get_mut(&first))
                && let Some(open) = &mut first.open
            {
                open.active = true;
                open.at_eof = false;
            }
        }
        false
    }

    pub(super) fn open_record(&mut self, id: RecordId, handle: File, now: Instant) {
        let Some(record) = self.records.get_mut(&id) else {
            return;
        };
        let mut events = LineEvents::new(self.source);
        if let Some(field) = &self.settings.path_field {
            events = events.with_path(field.clone(), &record.path.to_string_lossy());
        }
        if let (Some(field), Some(host)) = (&self.settings.host_field, &self.host) {
            events = events.with_host(field.clone(), host);
        }
        if let Some(field) = &self.settings.offset_field {
            events = events.with_offset(field.clone());
        }
        let reader = if record.gzip {
            FileReader::gzip(
                handle,
                record.read,
                self.settings.max_decompressed_bytes,
                &self.options,
                events,
            )
        } else {
            FileReader::plain(handle, record.read, &self.options, events)
        };
        let reader = match reader {
            Ok(reader) => reader,
            Err(error) => {
                record.failed_at_size = std::fs::metadata(&record.path).ok().map(|m| m.len());
                let path = record.path.clone();
                self.warn_once(&path, &error);
                return;
            }
        };
        let (size, modified) = reader_stat(&reader);
        let abs = absolute(&record.path);
        tracing::info!(
            source = %self.name,
            path = %record.path.display(),
            offset = record.read,
            gzip = record.gzip,
            "Reading file"
        );
        self.by_abs.insert(abs.clone(), id);
        self.open_ids.insert(id);
        record.open = Some(OpenFile {
            reader,
            abs,
            active: true,
            at_eof: false,
            last_growth: now,
            unreachable_since: None,
            deleted: false,
            wait_for: None,
            _slot: self.descriptors.slot(),
            size,
            modified,
        });
        record.failed_at_size = None;
        record.parked = false;
        self.counters.files_opened.add(1);
    }

    /// Checks an open plain file for truncation or rewriting in place; on either, its record
    /// becomes a truncated orphan and the inode starts a new record at 0. Returns whether it did.
    pub(super) fn check_rewritten(&mut self, id: RecordId, now: Instant) -> bool {
        let fingerprint_bytes = self.settings.fingerprint_bytes;
        let Some(record) = self.records.get_mut(&id) else {
            return false;
        };
        let Some(open) = &mut record.open else {
            return false;
        };
        let Some(file) = open.reader.file() else {
            return false;
        };
        let Ok(metadata) = file.metadata() else {
            return false;
        };
        let size = metadata.len();
        let rewritten = if size < open.reader.position() || size < record.head.len() as u64 {
            true
        } else {
            match read_head(file, record.head.len()) {
                Ok(start) => start != record.head,
                Err(_) => false,
            }
        };
        if !rewritten {
            if record.head.len() < fingerprint_bytes
                && size > record.head.len() as u64
                && let Ok(head) = read_head(file, fingerprint_bytes)
                && head.starts_with(&record.head)
            {
                record.head = head;
                record.fingerprint = Fingerprint::of(&record.head);
            }
            return false;
        }
        let Some(open) = record.open.take() else {
            return false;
        };
        self.open_ids.remove(&id);
        tracing::warn!(
            source = %self.name,
            path = %record.path.display(),
            offset = record.read,
            size,
            "File was truncated or rewritten in place; reading it again from the start"
        );
        self.counters.truncations.add(1);
        let key = record.key.take();
        record.orphan = Some(Orphan::Truncated);
        record.truncated_at = Some(now);
        let path = record.path.clone();
        let seen = record.seen;
        self.by_abs.remove(&open.abs);
        let Some(handle) = open.reader.into_file() else {
            return true;
        };
        let head = read_head(&handle, fingerprint_bytes).unwrap_or_default();
        let new_id = self.new_id();
        self.records.insert(
            new_id,
            Record {
                key,
                orphan: None,
                fingerprint: Fingerprint::of(&head),
                head,
                path,
                read: 0,
                marked: 0,
                safe: 0,
                tail: None,
                safe_tail: None,
                gzip: false,
                done: false,
                seen,
                open: None,
                failed_at_size: None,
                parked: false,
                truncated_at: None,
            },
        );
        self.open_record(new_id, handle, now);
        true
    }
}
