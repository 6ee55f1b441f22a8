//! Turns: which open file reads next and how much, and reading one file's turn (the rules in the
//! parent module's doc, "Turns").

use super::*;

impl Tailer {
    /// Gives active files turns, starting after the last one served, until `budget` bytes were
    /// read; returns what they produced and whether anything happened (bytes read, a file closed
    /// or truncated). With `oldest_first` (a source held back by its topic), turns go to the
    /// least recently modified files first, each time: rotated files before the active one, the
    /// files nearest to deletion first.
    pub fn read_slice(
        &mut self,
        now: Instant,
        budget: u64,
        oldest_first: bool,
    ) -> (Vec<Turn>, bool) {
        self.no_idle_room = false;
        let mut ids: Vec<RecordId> = self
            .open_records()
            .filter(|(_, _, open)| open.active || open.reader.deadline().is_some())
            .map(|(id, _, _)| id)
            .collect();
        let start = match self.cursor {
            _ if oldest_first => {
                ids.sort_by_cached_key(|id| {
                    let modified = self
                        .records
                        .get(id)
                        .and_then(|r| r.open.as_ref())
                        .map(|open| open.modified);
                    (modified, *id)
                });
                0
            }
            Some(cursor) => ids.partition_point(|id| *id <= cursor),
            None => 0,
        };
        let mut turns = Vec::new();
        let mut used = 0;
        let mut progressed = false;
        for &id in ids[start..].iter().chain(&ids[..start]) {
            let Some(open) = self.records.get(&id).and_then(|r| r.open.as_ref()) else {
                continue;
            };
            let due = open
                .reader
                .deadline()
                .is_some_and(|deadline| deadline <= now);
            if !open.active && !due {
                continue;
            }
            if let Some(first) = open.wait_for {
                let finishing = self
                    .records
                    .get(&first)
                    .and_then(|r| r.open.as_ref())
                    .is_some_and(|o| !o.at_eof);
                if finishing {
                    continue;
                }
            }
            let (turn, read, changed) = self.turn(id, now, TURN_BUDGET.min(budget - used));
            self.cursor = Some(id);
            progressed |= read > 0 || changed;
            used += read;
            if !turn.batches.is_empty() || turn.mark.is_some() {
                turns.push(turn);
            }
            if used >= budget {
                break;
            }
        }
        (turns, progressed)
    }

    /// One file's turn: returns what it produced, the bytes read, and whether its state changed
    /// (closed, truncated).
    pub(super) fn turn(&mut self, id: RecordId, now: Instant, budget: u64) -> (Turn, u64, bool) {
        let mut changed = false;
        if self.check_rewritten(id, now) {
            changed = true;
        }
        let follow = self.settings.follow;
        let rotate_wait = self.settings.rotate_wait;
        let Some(record) = self.records.get_mut(&id) else {
            return (empty_turn(), 0, changed);
        };
        let Some(open) = &mut record.open else {
            return (empty_turn(), 0, changed);
        };
        let mut available = None;
        if let Some(file) = open.reader.file() {
            match file.metadata() {
                Ok(metadata) => {
                    open.deleted = link_count(&metadata) == 0;
                    open.size = metadata.len();
                    open.modified = metadata.modified().unwrap_or(open.modified);
                    available = Some(metadata.len().saturating_sub(open.reader.position()));
                }
                Err(_) => available = Some(0),
            }
        }
        let result = open.reader.read(budget, available, now, &mut self.builder);
        open.reader.flush_if_due(now, &mut self.builder);
        let counts = open.reader.take_counts();
        self.counters.skipped_lines.add(counts.skipped);
        self.counters.invalid_utf8.add(counts.invalid_utf8);
        let mut read = 0;
        let mut close = None;
        match result {
            Ok(outcome) => {
                read = outcome.read;
                if outcome.read > 0 {
                    open.last_growth = now;
                }
                open.at_eof = outcome.eof;
                open.active = !outcome.eof;
                if outcome.eof {
                    let idle = now.saturating_duration_since(open.last_growth) >= rotate_wait;
                    let gone = open
                        .unreachable_since
                        .is_some_and(|since| now.saturating_duration_since(since) >= rotate_wait);
                    if open.reader.is_gzip() {
                        close = Some(Close::Done);
                    } else if !follow {
                        close = Some(Close::Finished);
                    } else if open.deleted {
                        close = Some(Close::Deleted);
                    } else if gone && idle {
                        close = Some(Close::Away);
                    }
                }
            }
            Err(error) => {
                self.counters.errors.errors.add(1);
                tracing::warn!(
                    source = %self.name,
                    path = %record.path.display(),
                    %error,
                    "Cannot read file; closing it, to retry when it changes"
                );
                record.failed_at_size = std::fs::metadata(&record.path).ok().map(|m| m.len());
                close = Some(Close::Failed);
            }
        }
        let mut batch_ends = Vec::new();
        if let Some(how) = close {
            changed = true;
            if let Some(mut open) = record.open.take() {
                self.open_ids.remove(&id);
                if how != Close::Failed {
                    open.reader.finish(&mut self.builder);
                    let counts = open.reader.take_counts();
                    self.counters.skipped_lines.add(counts.skipped);
                    self.counters.invalid_utf8.add(counts.invalid_utf8);
                }
                if open.reader.was_capped() {
                    self.counters.gzip_capped.add(1);
                    tracing::warn!(
                        source = %self.name,
                        path = %record.path.display(),
                        max_decompressed_bytes = self.settings.max_decompressed_bytes,
                        "Gzip file decompresses to more than the cap; the rest is not read"
                    );
                }
                record.read = open.reader.resume_offset();
                record.tail = tail_at(record.tail, record.read, &open.reader);
                batch_ends = open.reader.take_batch_ends();
                self.by_abs.remove(&open.abs);
                self.counters.files_closed.add(1);
                tracing::info!(
                    source = %self.name,
                    path = %record.path.display(),
                    reason = how.reason(),
                    "Closed file"
                );
            }
            match how {
                Close::Done => record.done = true,
                Close::Deleted => {
                    record.key = None;
                    record.orphan = Some(Orphan::Deleted);
                }
                Close::Finished | Close::Away | Close::Failed => {}
            }
        } else if let Some(open) = &mut record.open {
            record.read = open.reader.resume_offset();
            batch_ends = open.reader.take_batch_ends();
            record.tail = tail_at(record.tail, record.read, &open.reader);
        }
        let (batches, truncated) = self.builder.take();
        self.counters.truncated_lines.add(truncated);
        let mut ends = batch_ends.into_iter();
        let batches: Vec<(ReadyBatch, Mark)> = batches
            .into_iter()
            .map(|batch| {
                let offset = ends.next().unwrap_or(record.read);
                record.marked = offset;
                (batch, Mark { record: id, offset })
            })
            .collect();
        let mark = (record.read != record.marked || close == Some(Close::Done)).then(|| {
            record.marked = record.read;
            Mark {
                record: id,
                offset: record.read,
            }
        });
        (Turn { batches, mark }, read, changed)
    }
}
