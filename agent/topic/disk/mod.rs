//! Disk topics: a segmented, append-only log of batches in one directory.
//!
//! This is the storage under `storage = "disk"` topics ([`DiskStorage`] implements the topic's
//! [`Storage`](super::Storage) interface over a [`Log`]). It is modelled on a Kafka partition
//! and laid out like `zowens/commitlog`: one file per concept.
//!
//! # Files
//!
//! ```text
//! <dir>/00000000000000000000.log     segment: records back to back (record.rs)
//! <dir>/00000000000000000000.index   its sparse offset index (index.rs)
//! <dir>/00000000000000524288.log     the next segment, named by its first offset
//! <dir>/offsets/<subscription>.offset  committed offsets (offsets.rs)
//! <dir>/quarantine/<segment>.from-<position>  corrupt bytes moved aside on recovery
//! ```
//!
//! # Records
//!
//! One record per batch: `len:u32 crc32c:u32 version:u8 first_offset:u64 events:u32
//! time_ms:i64 payload`, the payload being the batch in the binary codec
//! (`sluice_pipelines::codec::binary`, zero-copy on read). Offsets are contiguous within a
//! segment; a segment starts at the offset its name says. Segments roll when they reach
//! `segment_bytes` (default 64 MiB) or, at the next append, when their first record is older than
//! `segment_age`. Every `index_interval_bytes` a record gets an index entry (offset, position,
//! time), so a read seeks to the entry before it and scans at most that many bytes; lookups by
//! time work the same way over append times (kept non-decreasing per log).
//!
//! # Writing
//!
//! [`Log::append`] never blocks: it gives the batch its offsets, keeps it in the *recent cache*
//! and queues it for the writer thread (writer.rs), which encodes whatever is queued into one
//! buffer and writes it with one `pwrite` (group commit), then applies the fsync policy once per
//! group. The writer publishes two ends, both atomics:
//!
//! - `written_end`: what is in the segment file (the kernel's page cache).
//! - [`Log::durable_end`]: what the topic may call safe — a source checkpoints, an HTTP source
//!   answers 2xx, a pipeline acknowledges its input up to it. A callback registered with
//!   [`Log::set_durable_notifier`] runs on the writer thread whenever it moves.
//!
//! | `fsync` | `durable_end` is | process crash (`kill -9`, OOM) loses | power failure / kernel crash loses |
//! |---|---|---|---|
//! | `always` | the end of what is fsynced (one fsync per group) | nothing acknowledged | nothing acknowledged |
//! | `interval` (default, 100 ms) | the end of what is written | nothing acknowledged | up to the last interval of acknowledged writes |
//! | `never` | the end of what is written | nothing acknowledged | whatever the kernel had not written back (often ~30 s) |
//!
//! A process crash loses only what was still queued for the writer, which was never
//! acknowledged; the sources send it again. Closing segments (roll) and persisting offsets
//! fsync too, except under `never`. Write order is data → fsync → offsets: a committed offset
//! is persisted only after the data before it was fsynced, so after any crash a subscription
//! resumes at or before what it really processed (at-least-once), never after data that is gone.
//!
//! # Reading and memory
//!
//! Fresh batches come from the recent cache (bounded by `recent_cache_bytes`, but never evicting
//! what is not yet written), so a subscriber that keeps up never touches the disk. Older ones are
//! read back with `pread` and decoded, and kept in a read cache bounded by `read_cache_bytes`
//! (subscriptions reading the same backlog share it). Memory is therefore bounded by these two
//! settings, the writer's queue ([`Log::pending_bytes`], which the topic bounds by pushing back),
//! and ~24 bytes of index per `index_interval_bytes` of disk — not by the size of the backlog.
//!
//! # Recovery
//!
//! [`Log::open`] validates every segment from its last index entry to its end (the whole segment
//! when the index is missing or wrong; the index is then rebuilt) and:
//!
//! - cuts a *torn tail* off the last segment: an invalid record that reaches the end of the file
//!   (a write cut short, or whose last pages never reached the disk). Counted in `torn_tails` /
//!   `torn_bytes` and logged as a warning — this is what a crash normally leaves.
//! - *quarantines* from the first invalid record to the end of its segment anywhere else (a bad
//!   CRC or length followed by more data, an offset out of sequence): the bytes are moved to
//!   `quarantine/`, the segment is cut there and the log goes on with the next segment, leaving
//!   a gap in the offsets that readers skip. Counted in `corrupt_records` /
//!   `quarantined_bytes` and logged as an error. A bad record met later while reading (data that
//!   rotted on disk) is handled the same way.
//!
//! Neither stops the topic or makes it refuse to start: no crash loop, no silent stop, no need to
//! delete the directory. (The code: recovery.rs, called by [`Log::open`].)
//!
//! # Retention
//!
//! Only whole closed segments are deleted, never the active one: [`Log::delete_before`] (segments
//! every subscription is past), [`Log::apply_retention`] (by age of their newest record, and by
//! total size down to `max_bytes` as far as no needed segment is touched) and
//! [`Log::drop_oldest_segment`]. Deleting a segment removes its `.log` then its `.index`; an
//! index left alone by a crash is removed on the next open, and deleting twice is harmless.
//!
//! # Subscription offsets
//!
//! [`Log::commit`] records a subscription's committed offset; the writer persists it atomically
//! and throttled (offsets.rs). [`Log::committed`] gives it back after a restart, clamped to what
//! the log still holds.
//!
//! # Inspection
//!
//! [`inspect`] reads a log without repairing anything (what `sluice topics` lists, reads and
//! verifies, even while an agent appends to it) and rewrites a subscription's committed offset
//! while no agent has the log open.

mod index;
pub mod inspect;
mod log;
mod offsets;
mod record;
mod recovery;
mod segment;
mod storage;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topic_tests;
mod writer;

use std::time::Duration;

pub use log::{
    FlushHandle, Log, LogCounters, LogError, OFFSETS_DIR, QUARANTINE_DIR, RetentionOutcome,
};
pub use storage::{DiskSettings, DiskStats, DiskStorage};

/// When the log fsyncs what it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every group of appends, before they count as durable.
    Always,
    /// At most this long after a write.
    Interval(Duration),
    /// Never (the kernel writes back on its own schedule); closing segments and persisting
    /// offsets do not fsync either.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_millis(100))
    }
}

/// How a log writes, rolls, indexes and caches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is closed once it holds this many bytes.
    pub segment_bytes: u64,
    /// A segment is closed, at the next append, once its first record is this old.
    pub segment_age: Option<Duration>,
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Bytes of segment between two index entries.
    pub index_interval_bytes: u64,
    /// Estimated bytes of recently appended batches kept in memory.
    pub recent_cache_bytes: usize,
    /// Estimated bytes of batches read from disk kept in memory.
    pub read_cache_bytes: usize,
    /// Least time between two writes of one subscription's offset: what a crash makes a
    /// subscription process again is at most this much of its acknowledgements (plus what was
    /// in flight). Default 100 ms, the default fsync interval: a restart loop whose runs live
    /// less than this interval would otherwise persist only the first commit of each run and
    /// process an ever longer backlog again every time.
    pub offset_commit_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            segment_age: Some(Duration::from_secs(24 * 3600)),
            fsync: FsyncPolicy::default(),
            index_interval_bytes: 64 << 10,
            recent_cache_bytes: 16 << 20,
            read_cache_bytes: 16 << 20,
            offset_commit_interval: Duration::from_millis(100),
        }
    }
}
