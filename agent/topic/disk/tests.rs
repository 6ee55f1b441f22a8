//! Tests of the disk log against real files: appends and reads across segments and reopens,
//! recovery from torn tails and corrupt records, crashes under each fsync policy, offsets,
//! retention, lookups by time, and a model-based property test against a `Vec` of batches.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use sluice_pipelines::{Batch, Event, EventMeta, SourceId};

use super::log::now_ms;
use super::record::{self, HEADER_LEN};
use super::segment;
use super::*;
use crate::topic::offset::{Offset, OffsetRange};
use crate::topic::storage::Storage;

/// A batch of `events` events whose raw lines say which batch (`tag`) and event they are.
fn batch(tag: u64, events: usize) -> Arc<Batch> {
    Arc::new(Batch::new(
        (0..events)
            .map(|i| {
                let mut event = Event::from_raw(
                    Bytes::from(format!("batch {tag} event {i} {}", "x".repeat(i % 7))),
                    EventMeta {
                        source: SourceId(1),
                        origin: Some(tag * 1000 + i as u64),
                    },
                );
                if i % 3 == 0 {
                    event.insert("tag", tag as i64);
                }
                event
            })
            .collect(),
    ))
}

pub(super) fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_age: None,
        fsync: FsyncPolicy::Never,
        index_interval_bytes: 256,
        recent_cache_bytes: 0,
        read_cache_bytes: 0,
        offset_commit_interval: Duration::ZERO,
    }
}

/// Appends batches of the given sizes, returning their ranges and batches.
fn fill(log: &mut Log, sizes: impl IntoIterator<Item = usize>) -> Vec<(OffsetRange, Arc<Batch>)> {
    sizes
        .into_iter()
        .enumerate()
        .map(|(tag, events)| {
            let batch = batch(tag as u64, events);
            (log.append(batch.clone()), batch)
        })
        .collect()
}

fn assert_reads(log: &mut Log, expected: &[(OffsetRange, Arc<Batch>)]) {
    for (range, batch) in expected {
        let stored = log
            .read(range.start)
            .unwrap()
            .unwrap_or_else(|| panic!("batch at {range} missing"));
        assert_eq!(stored.range, *range);
        assert_eq!(*stored.batch, **batch, "batch at {range}");
    }
}

pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

/// The record headers of a segment file, with their positions.
fn records(path: &Path) -> Vec<(u64, record::RecordHeader)> {
    let bytes = fs::read(path).unwrap();
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let header = record::parse(&bytes[at..]).unwrap();
        out.push((at as u64, header));
        at += header.record_len() as usize;
    }
    out
}

#[test]
fn appends_read_back_from_disk_across_segments_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let written = fill(&mut log, (0..60).map(|i| 1 + i % 9));
    assert_eq!(log.end(), written.last().unwrap().0.end);
    log.flush().unwrap();
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    assert_reads(&mut log, &written);
    assert!(log.counters().disk_reads >= written.len() as u64);
    // A read in the middle of a batch gets the whole batch.
    let (range, _) = &written[10];
    let inside = log.read(range.start + 1).unwrap().unwrap();
    assert_eq!(inside.range, *range);
    assert!(log.read(log.end()).unwrap().is_none());
    log.close().unwrap();

    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.end(), written.last().unwrap().0.end);
    assert_eq!(log.start(), Offset(0));
    assert_eq!(log.counters().torn_tails, 0);
    assert_reads(&mut log, &written);
    let more = log.append(batch(99, 3));
    assert_eq!(more.start, written.last().unwrap().0.end, "offsets go on");
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.read(more.start).unwrap().unwrap().batch.len(), 3);
}

#[test]
fn fresh_reads_come_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            recent_cache_bytes: 1 << 20,
            ..config()
        },
    )
    .unwrap();
    let written = fill(&mut log, [5, 5, 5]);
    assert_reads(&mut log, &written);
    let counters = log.counters();
    assert_eq!(counters.disk_reads, 0);
    assert_eq!(counters.cache_hits, 3);
}

#[test]
fn the_read_cache_serves_repeated_disk_reads_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            read_cache_bytes: 1 << 20,
            ..config()
        },
    )
    .unwrap();
    let written = fill(&mut log, [4, 4]);
    log.flush().unwrap();
    assert_reads(&mut log, &written);
    assert_reads(&mut log, &written);
    assert_eq!(
        log.counters().disk_reads,
        2,
        "second pass from the read cache"
    );
    assert_eq!(log.counters().cache_hits, 2);
}

#[test]
fn a_missing_or_corrupt_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let written = fill(&mut log, (0..40).map(|i| 1 + i % 5));
    log.close().unwrap();
    let indexes: Vec<PathBuf> = segment_files(dir.path())
        .iter()
        .map(|path| path.with_extension("index"))
        .collect();
    fs::remove_file(&indexes[0]).unwrap();
    let mut bytes = fs::read(&indexes[1]).unwrap();
    assert!(!bytes.is_empty());
    bytes[0] ^= 0xff;
    fs::write(&indexes[1], &bytes).unwrap();

    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_reads(&mut log, &written);
    assert_eq!(log.counters().corrupt_records, 0);
    assert!(indexes[0].exists(), "rebuilt index written back");
    assert_ne!(fs::read(&indexes[1]).unwrap(), bytes);
}

#[test]
fn a_torn_tail_is_cut_off_and_counted() {
    for cut in [1usize, HEADER_LEN - 3, HEADER_LEN + 5] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config()).unwrap();
        let written = fill(&mut log, [3, 3, 3]);
        log.close().unwrap();
        let last = segment_files(dir.path()).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        let file = fs::OpenOptions::new().write(true).open(&last).unwrap();
        file.set_len(len - cut as u64).unwrap();
        drop(file);

        let mut log = Log::open(dir.path(), config()).unwrap();
        let counters = log.counters();
        assert_eq!(counters.torn_tails, 1, "cut {cut}");
        assert_eq!(counters.corrupt_records, 0);
        assert_eq!(log.end(), written[1].0.end, "the torn batch is gone");
        assert_reads(&mut log, &written[..2]);
        let again = log.append(batch(7, 2));
        assert_eq!(again.start, written[1].0.end);
        log.close().unwrap();
        let mut log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(log.counters().torn_tails, 0, "repaired for good");
        assert_eq!(log.read(again.start).unwrap().unwrap().batch.len(), 2);
    }
}

#[test]
fn garbage_or_zeros_after_the_last_record_are_a_torn_tail() {
    for tail in [
        vec![0u8; 100],
        vec![0xab; 7],
        vec![0x40, 0, 0, 0, 1, 2, 3, 4, 5],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config()).unwrap();
        let written = fill(&mut log, [3, 3]);
        log.close().unwrap();
        let last = segment_files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&last).unwrap();
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        fs::write(&last, bytes).unwrap();

        let mut log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(log.counters().torn_tails, 1, "tail {tail:?}");
        assert_eq!(log.counters().torn_bytes, tail.len() as u64);
        assert_eq!(fs::metadata(&last).unwrap().len(), len as u64);
        assert_reads(&mut log, &written);
    }
}

/// Flips a byte inside the payload of the record at `index` of a segment file.
pub(super) fn flip_record(path: &Path, index: usize) -> (u64, u64) {
    let (position, header) = records(path)[index];
    let mut bytes = fs::read(path).unwrap();
    bytes[(position + header.record_len() - 2) as usize] ^= 0x55;
    fs::write(path, &bytes).unwrap();
    (position, bytes.len() as u64 - position)
}

#[test]
fn a_flipped_byte_in_a_closed_segment_quarantines_the_rest_of_it_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let written = fill(&mut log, (0..40).map(|_| 4));
    log.close().unwrap();
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3);
    let in_first = records(&segments[0]);
    assert!(in_first.len() >= 3);
    let (position, moved) = flip_record(&segments[0], 1);

    let mut log = Log::open(dir.path(), config()).unwrap();
    // Open validates from the last index entry on; the bad record sits before it.
    assert_eq!(log.counters().corrupt_records, 0);
    let first_ok = &written[..1];
    assert_reads(&mut log, first_ok);
    let next_segment_start = records(&segments[1])[0].1.first_offset;
    let after_gap = log.read(written[1].0.start).unwrap().unwrap();
    assert_eq!(
        after_gap.range.start.0, next_segment_start,
        "skips to the next segment"
    );
    let counters = log.counters();
    assert_eq!(counters.corrupt_records, 1);
    assert_eq!(counters.quarantined_bytes, moved);
    let quarantined = dir.path().join(QUARANTINE_DIR).join(format!(
        "{}.from-{position}",
        segments[0].file_name().unwrap().to_str().unwrap()
    ));
    assert_eq!(fs::metadata(&quarantined).unwrap().len(), moved);
    assert_eq!(fs::metadata(&segments[0]).unwrap().len(), position);
    // Everything from the next segment on is intact.
    let rest: Vec<_> = written
        .iter()
        .filter(|(range, _)| range.start.0 >= next_segment_start)
        .cloned()
        .collect();
    assert_reads(&mut log, &rest);
    log.close().unwrap();
    // The repair is on disk: a reopen finds nothing more to do.
    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.counters(), LogCounters::default());
    assert_reads(&mut log, &rest);
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_last_segment_is_quarantined_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 1 << 20,
        ..config()
    };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    let written = fill(&mut log, (0..10).map(|_| 3));
    log.close().unwrap();
    let segment = segment_files(dir.path()).pop().unwrap();
    let (position, moved) = flip_record(&segment, 4);

    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    let counters = log.counters();
    assert_eq!(counters.corrupt_records, 1);
    assert_eq!(counters.quarantined_bytes, moved);
    assert_eq!(
        counters.torn_tails, 0,
        "data follows the bad record: not a torn tail"
    );
    assert_eq!(log.end(), written[3].0.end);
    assert_reads(&mut log, &written[..4]);
    assert_eq!(
        fs::read_dir(dir.path().join(QUARANTINE_DIR))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(fs::metadata(&segment).unwrap().len(), position);
    // The log goes on from the cut.
    let next = log.append(batch(50, 2));
    assert_eq!(next.start, written[3].0.end);
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.read(next.start).unwrap().unwrap().batch.len(), 2);
}

#[test]
fn a_corrupt_record_in_the_active_segment_found_by_a_read_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..config()
    };
    let mut log = Log::open(dir.path(), config).unwrap();
    let written = fill(&mut log, (0..10).map(|_| 3));
    log.flush().unwrap();
    let segment = segment_files(dir.path()).pop().unwrap();
    let (_, moved) = flip_record(&segment, 2);
    assert_reads(&mut log, &written[..2]);
    assert!(
        log.read(written[2].0.start).unwrap().is_none(),
        "nothing readable after it"
    );
    assert_eq!(log.counters().quarantined_bytes, moved);
    // Writing goes on in a new segment.
    let next = log.append(batch(77, 1));
    log.flush().unwrap();
    assert_eq!(log.read(next.start).unwrap().unwrap().range, next);
    assert_eq!(segment_files(dir.path()).len(), 2);
}

/// Waits (on the writer's notifications) until the durable end reaches the end.
fn wait_durable(log: &Log) {
    let (sender, receiver) = mpsc::channel();
    let sender = std::sync::Mutex::new(sender);
    log.set_durable_notifier(Arc::new(move |_| {
        let _ = sender.lock().unwrap().send(());
    }));
    while log.durable_end() < log.end() {
        receiver.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}

#[test]
fn reopening_after_a_crash_keeps_everything_durable_with_each_fsync_policy() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(100)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { fsync, ..config() };
        let mut log = Log::open(dir.path(), config.clone()).unwrap();
        let written = fill(&mut log, (0..30).map(|i| 1 + i % 4));
        wait_durable(&log);
        assert_eq!(log.written_end(), log.end());
        let durable = log.durable_end();
        log.commit("sink", written[10].0.end);
        // Not yet written when the crash comes, or written: either way never acknowledged.
        let unacked = fill(&mut log, [2, 2]);
        log.crash();

        let mut log = Log::open(dir.path(), config).unwrap();
        assert!(log.end() >= durable, "{fsync:?}");
        assert_eq!(log.counters().corrupt_records, 0);
        assert_reads(&mut log, &written);
        let kept = unacked
            .iter()
            .filter(|(range, _)| range.end <= log.end())
            .cloned()
            .collect::<Vec<_>>();
        assert_reads(&mut log, &kept);
        let committed = log.committed("sink");
        assert!(
            committed.is_none() || committed == Some(written[10].0.end),
            "{fsync:?}: {committed:?}"
        );
    }
}

#[test]
fn durable_end_follows_the_policy_and_the_notifier_fires() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            fsync: FsyncPolicy::Always,
            ..config()
        },
    )
    .unwrap();
    assert_eq!(log.durable_end(), Offset(0));
    fill(&mut log, [3, 4]);
    wait_durable(&log);
    assert_eq!(log.durable_end(), Offset(7));
    assert!(log.counters().fsyncs >= 1);
}

#[test]
fn committed_offsets_survive_reopen_and_are_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let written = fill(&mut log, (0..30).map(|_| 5));
    log.commit("pg", written[3].0.end);
    log.commit("archive/2", Offset(1_000_000));
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.committed("pg"), Some(written[3].0.end));
    assert_eq!(
        log.committed("archive/2"),
        Some(log.end()),
        "clamped to the end"
    );
    assert_eq!(log.committed("unknown"), None);
    let deleted = log.delete_before(written[20].0.start);
    assert!(deleted.deleted_segments > 0);
    assert_eq!(
        log.committed("pg"),
        Some(log.start()),
        "clamped to the start"
    );
}

#[test]
fn retention_deletes_whole_closed_segments_by_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let written = fill(&mut log, (0..60).map(|_| 5));
    log.flush().unwrap();
    let segments = log.segment_count();
    let total = log.disk_bytes();
    assert!(segments >= 5);

    // By size, but nothing before the lowest offset needed: nothing goes.
    let outcome = log.apply_retention(now_ms(), None, Some(total / 2), Offset(0));
    assert_eq!(outcome, RetentionOutcome::default());
    // Needed from the middle on: the oldest segments go until the size fits.
    let needed = written[40].0.start;
    let outcome = log.apply_retention(now_ms(), None, Some(total / 2), needed);
    assert!(outcome.deleted_segments > 0);
    assert_eq!(outcome.lost, None);
    assert!(log.disk_bytes() <= total / 2 || log.start() > Offset(0));
    assert_eq!(segment_files(dir.path()).len(), log.segment_count());
    assert_eq!(log.counters().segments_deleted, outcome.deleted_segments);
    let start = log.start();
    assert!(log.read(Offset(0)).unwrap().unwrap().range.start >= start);

    // Deleting is idempotent.
    let again = log.delete_before(start);
    assert_eq!(again, RetentionOutcome::default());

    // By age: a day later, every closed segment is past a one-hour retention; what the
    // subscription still needed is reported lost. The active segment stays.
    let outcome = log.apply_retention(
        now_ms() + 24 * 3600 * 1000,
        Some(Duration::from_secs(3600)),
        None,
        needed,
    );
    assert!(outcome.deleted_segments > 0);
    let lost = outcome.lost.unwrap();
    assert_eq!(lost.start, needed);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(lost.end, log.start());
    assert_eq!(segment_files(dir.path()).len(), 1);
    log.close().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.end(), written.last().unwrap().0.end);
}

#[test]
fn a_leftover_index_without_its_segment_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    fill(&mut log, (0..20).map(|_| 5));
    log.close().unwrap();
    let first = segment_files(dir.path()).remove(0);
    fs::remove_file(&first).unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert!(!first.with_extension("index").exists());
    assert!(log.start() > Offset(0));
}

#[test]
fn lookups_by_time_find_the_first_batch_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    fill(&mut log, (0..40).map(|_| 3));
    log.flush().unwrap();
    let headers: Vec<record::RecordHeader> = segment_files(dir.path())
        .iter()
        .flat_map(|path| records(path))
        .map(|(_, header)| header)
        .collect();
    assert_eq!(log.offset_for_time(0).unwrap(), Some(Offset(0)));
    for header in &headers {
        let first_at_time = headers
            .iter()
            .find(|other| other.time_ms >= header.time_ms)
            .unwrap();
        assert_eq!(
            log.offset_for_time(header.time_ms).unwrap(),
            Some(Offset(first_at_time.first_offset))
        );
    }
    let last = headers.last().unwrap();
    assert_eq!(log.offset_for_time(last.time_ms + 1).unwrap(), None);
}

#[test]
fn disk_storage_serves_a_topic_and_keeps_its_batches_across_reopen() {
    use crate::topic::{SubscriptionSettings, Topic, TopicSettings};

    let dir = tempfile::tempdir().unwrap();
    let settings = DiskSettings {
        log: config(),
        ..DiskSettings::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let storage = DiskStorage::open(dir.path(), settings.clone()).unwrap();
        let topic = Topic::with_storage("t", TopicSettings::default(), Box::new(storage));
        let sub = topic.subscribe(SubscriptionSettings::new("sink"));
        let producer = topic.producer();
        for tag in 0..20 {
            producer.send((*batch(tag, 3)).clone()).await;
        }
        drop(producer);
        let mut seen = 0;
        while let Some(delivery) = sub.next().await {
            assert_eq!(delivery.events(), batch(seen / 3, 3).events());
            seen += delivery.events().len() as u64;
            delivery.ack();
        }
        assert_eq!(seen, 60);
        assert_eq!(topic.stats().retained_events, 0, "trimmed");
    });

    let mut storage = DiskStorage::open(dir.path(), settings).unwrap();
    assert_eq!(storage.end(), Offset(60));
    let stored = storage.get(Offset(30)).unwrap();
    assert_eq!(*stored.batch, *batch(10, 3));
    assert_eq!(
        storage.front_range(),
        Some(OffsetRange::new(Offset(0), Offset(3)))
    );
    assert_eq!(
        storage.pop_front(),
        Some(OffsetRange::new(Offset(0), Offset(3)))
    );
    assert_eq!(storage.start(), Offset(3));
    assert_eq!(storage.retained_events(), 57);
    assert!(storage.durable_end().is_some());
    storage.commit("sink", Offset(30));
    storage.close().unwrap();
    let storage = DiskStorage::open(dir.path(), DiskSettings::default()).unwrap();
    assert_eq!(storage.committed("sink"), Some(Offset(30)));
}

/// One step of the model-based test.
#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    Read(prop::sample::Index),
    Reopen,
    Crash,
    /// Cut this many bytes off the last segment (while closed).
    CutTail(u16),
    /// Flip a byte in the last record of the last segment (while closed): a torn write.
    TearLast,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..12).prop_map(Op::Append),
        4 => any::<prop::sample::Index>().prop_map(Op::Read),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (1u16..200).prop_map(Op::CutTail),
        1 => Just(Op::TearLast),
    ]
}

/// Checks that the log holds exactly a prefix of `model` and trims the model to it.
fn sync_model(log: &mut Log, model: &mut Vec<(OffsetRange, Arc<Batch>)>, at_least: Offset) {
    let end = log.end();
    assert!(
        end >= at_least,
        "lost durable data: end {end}, durable {at_least}"
    );
    model.retain(|(range, _)| range.end <= end);
    assert_eq!(model.last().map_or(Offset(0), |(range, _)| range.end), end);
    assert_reads(log, model);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: RngSeed::Fixed(0xd15c_1065),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_behaves_like_a_vec_of_batches(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 300,
            recent_cache_bytes: 4096,
            read_cache_bytes: 4096,
            ..config()
        };
        let mut log = Log::open(dir.path(), config.clone()).unwrap();
        let mut model: Vec<(OffsetRange, Arc<Batch>)> = Vec::new();
        let mut tag = 0;
        for op in ops {
            match op {
                Op::Append(events) => {
                    tag += 1;
                    let batch = batch(tag, events);
                    let range = log.append(batch.clone());
                    let expected_start = model.last().map_or(Offset(0), |(r, _)| r.end);
                    prop_assert_eq!(range.start, expected_start);
                    model.push((range, batch));
                }
                Op::Read(index) => {
                    if !model.is_empty() {
                        let (range, batch) = &model[index.index(model.len())];
                        let stored = log.read(range.start).unwrap().unwrap();
                        prop_assert_eq!(stored.range, *range);
                        prop_assert_eq!(&*stored.batch, &**batch);
                    }
                }
                Op::Reopen => {
                    log.close().unwrap();
                    log = Log::open(dir.path(), config.clone()).unwrap();
                    let end = model.last().map_or(Offset(0), |(r, _)| r.end);
                    sync_model(&mut log, &mut model, end);
                }
                Op::Crash => {
                    let durable = log.durable_end();
                    log.crash();
                    log = Log::open(dir.path(), config.clone()).unwrap();
                    sync_model(&mut log, &mut model, durable);
                }
                Op::CutTail(bytes) => {
                    log.close().unwrap();
                    if let Some(last) = segment_files(dir.path()).pop() {
                        let len = fs::metadata(&last).unwrap().len();
                        let file = fs::OpenOptions::new().write(true).open(&last).unwrap();
                        file.set_len(len.saturating_sub(u64::from(bytes))).unwrap();
                    }
                    log = Log::open(dir.path(), config.clone()).unwrap();
                    prop_assert_eq!(log.counters().corrupt_records, 0);
                    sync_model(&mut log, &mut model, Offset(0));
                }
                Op::TearLast => {
                    log.close().unwrap();
                    let last = segment_files(dir.path()).pop().unwrap();
                    let records = records(&last);
                    if let Some((position, header)) = records.last() {
                        let mut bytes = fs::read(&last).unwrap();
                        bytes[(position + header.record_len() / 2) as usize] ^= 0x10;
                        fs::write(&last, bytes).unwrap();
                    }
                    log = Log::open(dir.path(), config.clone()).unwrap();
                    prop_assert_eq!(log.counters().torn_tails, u64::from(!records.is_empty()));
                    prop_assert_eq!(log.counters().corrupt_records, 0);
                    sync_model(&mut log, &mut model, Offset(0));
                }
            }
        }
        let end = model.last().map_or(Offset(0), |(r, _)| r.end);
        log.close().unwrap();
        let mut log = Log::open(dir.path(), config).unwrap();
        sync_model(&mut log, &mut model, end);
    }
}

#[test]
fn segment_names_in_the_directory_match_their_first_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    fill(&mut log, (0..30).map(|_| 4));
    log.close().unwrap();
    for path in segment_files(dir.path()) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let (base, is_log) = segment::parse_name(name).unwrap();
        assert!(is_log);
        if let Some((_, first)) = records(&path).first() {
            assert_eq!(first.first_offset, base);
        }
    }
}

#[test]
fn a_batch_that_cannot_be_encoded_leaves_a_gap_not_a_corrupt_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let before = fill(&mut log, [3]);
    let mut deep = sluice_pipelines::Value::Null;
    for _ in 0..=sluice_pipelines::codec::binary::MAX_DEPTH {
        deep = sluice_pipelines::Value::Array(vec![deep]);
    }
    let mut event = Event::default();
    event.insert("deep", deep);
    let skipped = log.append(Arc::new(Batch::new(vec![event])));
    let after = log.append(batch(5, 2));
    wait_durable(&log);
    assert_eq!(
        log.durable_end(),
        after.end,
        "the gap does not hold the durable end back"
    );
    assert_eq!(log.counters().unencodable_batches, 1);
    log.close().unwrap();

    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(
        log.counters(),
        LogCounters::default(),
        "no corruption found"
    );
    assert_reads(&mut log, &before);
    assert_eq!(log.read(skipped.start).unwrap().unwrap().range, after);
    assert_eq!(log.end(), after.end);
}
