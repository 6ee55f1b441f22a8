//! Where a topic keeps its batches: the [`Storage`] interface and the in-memory implementation.
//!
//! Storage is a log of batches with contiguous offsets: appending gives the batch the next
//! offsets, reading looks a batch up by its first offset, and the topic trims from the front once
//! every subscription is past a batch (or evicts when full). Subscriptions, acknowledgements and
//! capacity policy live in the topic, not here, so a disk-backed storage only has to implement
//! this log.

use std::collections::VecDeque;
use std::sync::Arc;

use sluice_pipelines::Batch;

use super::disk::{DiskStats, FlushHandle};
use super::offset::{Offset, OffsetRange};

/// A batch in storage, with the offsets its events occupy.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The offsets of the batch's events.
    pub range: OffsetRange,
    /// The events, shared with every delivery of them.
    pub batch: Arc<Batch>,
}

/// A log of batches with contiguous offsets.
///
/// Reads take `&mut self` and return owned [`Stored`]s (an `Arc` clone) so that a storage can
/// read from disk and cache on a miss; the topic calls everything under its lock, so nothing
/// here may wait for a write or an fsync.
pub trait Storage: Send + 'static {
    /// Appends `batch` (non-empty) at the end, returning the offsets it was given.
    fn append(&mut self, batch: Arc<Batch>) -> OffsetRange;

    /// The batch whose first offset is `start`, if it is still retained. A disk storage whose
    /// log has a gap at `start` (quarantined data) returns the first batch after the gap.
    fn get(&mut self, start: Offset) -> Option<Stored>;

    /// After [`Storage::get`] returned `None` for `start` before the end: the offset where stored
    /// data resumes, when everything from `start` up to it is gone (a disk topic whose data up
    /// to its end was quarantined). `None` otherwise (memory storage never has such gaps).
    fn missing(&mut self, _start: Offset) -> Option<Offset> {
        None
    }

    /// The offsets of the oldest retained batch.
    fn front_range(&mut self) -> Option<OffsetRange>;

    /// Removes the oldest retained batch, returning its offsets.
    fn pop_front(&mut self) -> Option<OffsetRange>;

    /// The first retained offset (equal to [`Storage::end`] when empty).
    fn start(&self) -> Offset;

    /// The offset the next appended event will get.
    fn end(&self) -> Offset;

    /// Events retained.
    fn retained_events(&self) -> u64;

    /// Estimated bytes retained.
    fn retained_bytes(&self) -> u64;

    /// For storage that persists: the end of what is durably stored. `None` for memory storage,
    /// whose events are safe only once acknowledged.
    fn durable_end(&self) -> Option<Offset> {
        None
    }

    /// Whether appends are queued faster than they are written, beyond the storage's bound: the
    /// topic should hold producers back (as when full) until the durable notifier fires.
    fn write_backlog_full(&self) -> bool {
        false
    }

    /// The committed offset persisted for subscription `name` by an earlier run, if any.
    fn committed(&self, _name: &str) -> Option<Offset> {
        None
    }

    /// Records subscription `name`'s committed offset, to be persisted (memory storage: no-op).
    fn commit(&mut self, _name: &str, _offset: Offset) {}

    /// Registers a callback run (from another thread) with the new [`Storage::durable_end`]
    /// whenever it moves. It must not take the topic's lock: the topic may hold it while
    /// waiting for that thread (a read that repairs the active segment).
    fn set_durable_notifier(&mut self, _notify: Box<dyn Fn(Offset) + Send + Sync>) {}

    /// The first offset of the first batch appended at or after `time_ms` (milliseconds since
    /// the Unix epoch); [`Storage::end`] when none was. Memory storage keeps no times: `None`.
    fn offset_for_time(&mut self, _time_ms: i64) -> Option<Offset> {
        None
    }

    /// Housekeeping run every few seconds: a disk storage deletes the segments its retention
    /// lets go. Returns the offsets it dropped that the topic still held (age retention does not
    /// wait for subscriptions), which the topic accounts as lost.
    fn maintain(&mut self) -> Option<OffsetRange> {
        None
    }

    /// For a storage that writes in the background: a handle that waits until everything
    /// appended so far is stored and every committed offset persisted. Used without the topic's
    /// lock (the writer may need it to report progress).
    fn flush_handle(&self) -> Option<FlushHandle> {
        None
    }

    /// Facts about the storage for `/topics` and `sluice topics list` (disk: bytes, segments,
    /// recovery counters). `None` for memory storage.
    fn describe(&self) -> Option<DiskStats> {
        None
    }
}

/// Batches kept in memory, in a ring of shared pointers.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    batches: VecDeque<Stored>,
    start: Offset,
    end: Offset,
    bytes: u64,
}

impl MemoryStorage {
    /// An empty storage whose first offset will be 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemoryStorage {
    fn append(&mut self, batch: Arc<Batch>) -> OffsetRange {
        let range = OffsetRange::new(self.end, self.end + batch.len() as u64);
        self.bytes += batch.byte_size() as u64;
        self.end = range.end;
        self.batches.push_back(Stored { range, batch });
        range
    }

    #[inline]
    fn get(&mut self, start: Offset) -> Option<Stored> {
        let index = self
            .batches
            .binary_search_by(|stored| stored.range.start.cmp(&start))
            .ok()?;
        self.batches.get(index).cloned()
    }

    #[inline]
    fn front_range(&mut self) -> Option<OffsetRange> {
        self.batches.front().map(|stored| stored.range)
    }

    fn pop_front(&mut self) -> Option<OffsetRange> {
        let stored = self.batches.pop_front()?;
        self.bytes -= stored.batch.byte_size() as u64;
        self.start = stored.range.end;
        Some(stored.range)
    }

    fn start(&self) -> Offset {
        self.start
    }

    fn end(&self) -> Offset {
        self.end
    }

    fn retained_events(&self) -> u64 {
        self.end.0 - self.start.0
    }

    fn retained_bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_pipelines::{Event, EventMeta};

    fn batch(n: usize) -> Arc<Batch> {
        Arc::new(Batch::new(
            (0..n)
                .map(|_| Event::from_raw(Bytes::from_static(b"line"), EventMeta::default()))
                .collect(),
        ))
    }

    #[test]
    fn offsets_are_contiguous_and_lookups_find_batches() {
        let mut storage = MemoryStorage::new();
        assert_eq!(
            storage.append(batch(3)),
            OffsetRange::new(Offset(0), Offset(3))
        );
        assert_eq!(
            storage.append(batch(2)),
            OffsetRange::new(Offset(3), Offset(5))
        );
        assert_eq!(storage.get(Offset(3)).map(|s| s.batch.len()), Some(2));
        assert!(
            storage.get(Offset(1)).is_none(),
            "only batch starts are addressable"
        );
        assert_eq!(storage.retained_events(), 5);
        let bytes = storage.retained_bytes();
        let first_bytes = storage.get(Offset(0)).unwrap().batch.byte_size() as u64;
        assert_eq!(storage.front_range().map(|r| r.end), Some(Offset(3)));
        let popped = storage.pop_front().unwrap();
        assert_eq!(popped.end, Offset(3));
        assert_eq!(storage.start(), Offset(3));
        assert_eq!(storage.retained_events(), 2);
        assert_eq!(storage.retained_bytes(), bytes - first_bytes);
        storage.pop_front();
        assert_eq!(storage.start(), storage.end());
        assert_eq!(storage.retained_bytes(), 0);
    }
}
