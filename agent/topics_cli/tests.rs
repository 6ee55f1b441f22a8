//! Tests of `sluice topics` on real disk logs in a temporary data_dir: list, read from every
//! kind of position, reset (and its refusal while the data_dir is held), and verify finding a
//! corrupted byte without changing a file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use sluice_pipelines::{Batch, Event};

use super::*;
use crate::topic::disk::{FsyncPolicy, Log, LogConfig};

fn config() -> LogConfig {
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

/// A batch of `events` events numbered from `first`, each `{"n": N, "pad": "…"}`.
fn batch(first: u64, events: u64) -> Arc<Batch> {
    Arc::new(Batch::new(
        (first..first + events)
            .map(|n| {
                let mut event = Event::default();
                event.insert("n", n as i64);
                event.insert("pad", "x".repeat(40));
                event
            })
            .collect(),
    ))
}

/// Appends batches of these sizes to the log of `topic` under `data_dir`; the events are
/// numbered by their offsets. Returns the log, still open.
fn write_topic(data_dir: &Path, topic: &str, sizes: &[u64]) -> Log {
    let mut log = Log::open(&disk_topic_dir(data_dir, topic), config()).unwrap();
    for &size in sizes {
        let first = log.end().0;
        log.append(batch(first, size));
    }
    log.flush().unwrap();
    log
}

/// The `n` of each NDJSON line.
fn numbers(ndjson: &[u8]) -> Vec<u64> {
    String::from_utf8(ndjson.to_vec())
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Json>(line).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn read(data_dir: &Path, topic: &str, from: Position, max: Option<u64>) -> Vec<u64> {
    let mut out = Vec::new();
    let written = read_offline(data_dir, topic, from, max, &mut out).unwrap();
    let numbers = numbers(&out);
    assert_eq!(written, numbers.len() as u64);
    numbers
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn positions_parse_from_names_offsets_and_times() {
    assert_eq!(Position::parse("earliest"), Ok(Position::Earliest));
    assert_eq!(Position::parse("latest"), Ok(Position::Latest));
    assert_eq!(Position::parse("42"), Ok(Position::Offset(Offset(42))));
    assert_eq!(
        Position::parse("2026-12-03T10:00:00.5+01:00"),
        Ok(Position::Time(1_796_288_400_500))
    );
    let error = Position::parse("yesterday").unwrap_err().to_string();
    assert!(
        error.contains("expected earliest, latest, an offset or an RFC 3339 time"),
        "{error}"
    );
}

#[test]
fn list_shows_offsets_sizes_times_subscriptions_and_lag() {
    let data = tempfile::tempdir().unwrap();
    let mut log = write_topic(data.path(), "web.requests", &[2, 3, 5, 10, 10, 10]);
    log.commit("pg", Offset(5));
    log.commit("archive", Offset(40));
    log.close().unwrap();
    write_topic(data.path(), "app.bad", &[]).close().unwrap();

    let listings = list_offline(data.path()).unwrap();
    let names: Vec<&str> = listings.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["app.bad", "web.requests"]);
    let empty = &listings[0];
    assert_eq!(
        (empty.start_offset, empty.end_offset),
        (Offset(0), Offset(0))
    );
    assert!(empty.subscriptions.is_empty());
    assert_eq!(empty.oldest_append, None);

    let web = &listings[1];
    assert_eq!(web.storage, "disk");
    assert_eq!((web.start_offset, web.end_offset), (Offset(0), Offset(40)));
    let dir = disk_topic_dir(data.path(), "web.requests");
    let segments = segment_files(&dir);
    assert!(segments.len() > 1, "small segments roll");
    assert_eq!(web.segments, Some(segments.len()));
    let on_disk: u64 = segments
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(web.disk_bytes, Some(on_disk));
    let oldest = chrono::DateTime::parse_from_rfc3339(web.oldest_append.as_deref().unwrap());
    let newest = chrono::DateTime::parse_from_rfc3339(web.newest_append.as_deref().unwrap());
    assert!(oldest.unwrap() <= newest.unwrap());
    assert_eq!(
        web.subscriptions,
        [
            SubscriptionListing {
                name: "archive".into(),
                committed_offset: Offset(40),
                lag_events: 0
            },
            SubscriptionListing {
                name: "pg".into(),
                committed_offset: Offset(5),
                lag_events: 35
            },
        ]
    );
    assert_eq!(web.quarantined, Some(Quarantined::default()));
    assert!(web.damage.is_empty());

    let text = render_list(&listings);
    assert!(text.contains("app.bad (disk): offsets 0..0"), "{text}");
    assert!(
        text.contains("web.requests (disk): offsets 0..40, "),
        "{text}"
    );
    assert!(
        text.contains("  subscription pg: committed 5, lag 35\n"),
        "{text}"
    );
    assert!(!text.contains("quarantine"), "nothing quarantined: {text}");
}

#[test]
fn list_reports_quarantined_files_and_a_torn_tail_without_repairing() {
    let data = tempfile::tempdir().unwrap();
    write_topic(data.path(), "raw", &[4, 4, 4]).close().unwrap();
    let dir = disk_topic_dir(data.path(), "raw");
    let quarantine = dir.join("quarantine");
    fs::create_dir_all(&quarantine).unwrap();
    fs::write(
        quarantine.join("00000000000000000000.log.from-10"),
        [7u8; 300],
    )
    .unwrap();
    let last = segment_files(&dir).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0x20, 0, 0, 0, 1, 2]);
    fs::write(&last, &bytes).unwrap();
    let before = snapshot(data.path());

    let listings = list_offline(data.path()).unwrap();
    let raw = &listings[0];
    assert_eq!(raw.end_offset, Offset(12));
    assert_eq!(
        raw.quarantined,
        Some(Quarantined {
            files: 1,
            bytes: 300
        })
    );
    assert_eq!(raw.damage.len(), 1);
    assert!(raw.damage[0].torn_tail);
    assert_eq!(raw.damage[0].bytes, 6);
    let text = render_list(&listings);
    assert!(
        text.contains("quarantine: 1 files, 300 bytes moved aside"),
        "{text}"
    );
    assert!(text.contains("torn tail in segment"), "{text}");
    assert!(
        text.contains("(6 bytes from there, cut off on the next start)"),
        "{text}"
    );
    assert_eq!(snapshot(data.path()), before, "list changes nothing");
}

#[test]
fn read_prints_ndjson_from_each_kind_of_position() {
    let data = tempfile::tempdir().unwrap();
    let mut log = write_topic(data.path(), "raw", &[3, 4, 5, 6, 7, 8]);
    // A clock tick between two appends, so a time separates them.
    let before_last = chrono::Utc::now().timestamp_millis();
    while chrono::Utc::now().timestamp_millis() <= before_last {
        std::hint::spin_loop();
    }
    log.append(batch(log.end().0, 2));
    log.close().unwrap();
    let all: Vec<u64> = (0..35).collect();

    assert_eq!(read(data.path(), "raw", Position::Earliest, None), all);
    assert_eq!(
        read(data.path(), "raw", Position::Earliest, Some(5)),
        all[..5]
    );
    // From the middle of a batch: its earlier events are skipped.
    assert_eq!(
        read(data.path(), "raw", Position::Offset(Offset(9)), Some(4)),
        [9, 10, 11, 12]
    );
    assert_eq!(
        read(data.path(), "raw", Position::Offset(Offset(30)), None),
        all[30..]
    );
    assert!(read(data.path(), "raw", Position::Latest, None).is_empty());
    assert!(read(data.path(), "raw", Position::Offset(Offset(500)), None).is_empty());
    assert_eq!(read(data.path(), "raw", Position::Time(0), Some(2)), [0, 1]);
    assert_eq!(
        read(data.path(), "raw", Position::Time(before_last + 1), None),
        [33, 34],
        "the batch appended after the time"
    );
    assert!(read(data.path(), "raw", Position::Time(i64::MAX), None).is_empty());

    let mut out = Vec::new();
    let error = read_offline(data.path(), "nope", Position::Earliest, None, &mut out).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "no disk topic \"nope\" in {}; the disk topics are: raw",
            data.path().join("topics").display()
        )
    );
}

#[test]
fn reset_rewrites_the_committed_offset_the_agent_resumes_at() {
    let data = tempfile::tempdir().unwrap();
    let mut log = write_topic(data.path(), "raw", &[5, 5, 5, 5]);
    log.commit("pg", Offset(15));
    log.close().unwrap();

    let reset = reset_offline(data.path(), "raw", "pg", Position::Earliest).unwrap();
    assert_eq!(
        (reset.previous, reset.offset, reset.end),
        (Offset(15), Offset(0), Offset(20))
    );
    assert_eq!(
        reset.describe(),
        "raw pg: committed offset 15 -> 0 (20 events to read on the next start)"
    );
    let log = Log::open(&disk_topic_dir(data.path(), "raw"), config()).unwrap();
    assert_eq!(
        log.committed("pg"),
        Some(Offset(0)),
        "what the agent resumes at"
    );
    log.close().unwrap();

    let reset = reset_offline(data.path(), "raw", "pg", Position::Offset(Offset(12))).unwrap();
    assert_eq!(reset.offset, Offset(12));
    let reset = reset_offline(data.path(), "raw", "pg", Position::Latest).unwrap();
    assert_eq!((reset.previous, reset.offset), (Offset(12), Offset(20)));

    let past = reset_offline(data.path(), "raw", "pg", Position::Offset(Offset(21))).unwrap_err();
    assert_eq!(
        past.to_string(),
        "offset 21 is past the end of topic \"raw\", which is 20"
    );
    let unknown = reset_offline(data.path(), "raw", "pgg", Position::Earliest).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "topic \"raw\" has no subscription \"pgg\"; its subscriptions are: pg"
    );

    let agent = crate::data_dir::DataDirLock::acquire(data.path()).unwrap();
    let before = snapshot(&disk_topic_dir(data.path(), "raw"));
    let refused = reset_offline(data.path(), "raw", "pg", Position::Earliest).unwrap_err();
    let message = refused.to_string();
    assert!(
        message.starts_with("cannot reset while an agent runs on the data_dir"),
        "{message}"
    );
    assert!(
        message.contains(&format!("(pid {})", std::process::id())),
        "{message}"
    );
    assert!(message.contains("stop it first"), "{message}");
    assert_eq!(snapshot(&disk_topic_dir(data.path(), "raw")), before);
    drop(agent);
}

#[test]
fn verify_finds_a_corrupted_byte_in_the_middle_of_a_segment_and_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    write_topic(data.path(), "good", &[3; 30]).close().unwrap();
    write_topic(data.path(), "bad", &[3; 30]).close().unwrap();
    let dir = disk_topic_dir(data.path(), "bad");
    let segments = segment_files(&dir);
    assert!(segments.len() >= 3);
    let middle = &segments[1];
    let mut bytes = fs::read(middle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(middle, &bytes).unwrap();
    let before = snapshot(data.path());

    let results = verify_offline(data.path(), None).unwrap();
    assert_eq!(snapshot(data.path()), before, "verify changes nothing");
    let names: Vec<&str> = results.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["bad", "good"]);
    let (_, bad) = &results[0];
    let (_, good) = &results[1];
    assert!(!good.corrupt());
    assert_eq!((good.records, good.events), (30, 90));
    assert!(bad.corrupt());
    assert_eq!(bad.damage.len(), 1);
    let damage = &bad.damage[0];
    let base: u64 = middle
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(damage.segment, base);
    assert!(
        damage.position <= at as u64,
        "found at or before the flipped byte"
    );
    assert_eq!(damage.bytes, bytes.len() as u64 - damage.position);
    assert!(!damage.torn_tail);
    assert!(
        bad.records < 30 && bad.records > 0,
        "the records around it are counted"
    );

    let text = render_verify(data.path(), &results);
    assert!(text.starts_with("bad: CORRUPT: "), "{text}");
    assert!(
        text.contains(&format!(
            "corrupt record in segment {base} at byte {}",
            damage.position
        )),
        "{text}"
    );
    assert!(text.contains("quarantined on the next start"), "{text}");
    assert!(text.contains("good: OK: 30 records, 90 events"), "{text}");

    // Reading stops at the corrupt record with an error naming it; what came before is out.
    let mut out = Vec::new();
    let error = read_offline(data.path(), "bad", Position::Earliest, None, &mut out).unwrap_err();
    assert!(
        error.to_string().contains("corrupt record at byte"),
        "{error}"
    );
    assert!(!numbers(&out).is_empty());
    assert_eq!(snapshot(data.path()), before, "read changes nothing");

    let only_good = verify_offline(data.path(), Some("good")).unwrap();
    assert_eq!(only_good.len(), 1);
}

#[test]
fn verify_reports_a_torn_tail_but_not_as_corruption() {
    let data = tempfile::tempdir().unwrap();
    write_topic(data.path(), "raw", &[3; 10]).close().unwrap();
    let last = segment_files(&disk_topic_dir(data.path(), "raw"))
        .pop()
        .unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let len = bytes.len();
    bytes.truncate(len - 5);
    fs::write(&last, &bytes).unwrap();
    let results = verify_offline(data.path(), None).unwrap();
    let (_, verified) = &results[0];
    assert!(!verified.corrupt());
    assert_eq!(verified.damage.len(), 1);
    assert!(verified.damage[0].torn_tail);
    let text = render_verify(data.path(), &results);
    assert!(text.starts_with("raw: OK: "), "{text}");
    assert!(text.contains("torn tail in segment"), "{text}");
}

#[test]
fn list_text_shows_a_running_agents_recovery_counters() {
    let listing = TopicListing {
        name: "raw".into(),
        storage: "disk".into(),
        start_offset: Offset(10),
        end_offset: Offset(90),
        disk_bytes: Some(3 << 20),
        segments: Some(1),
        oldest_append: None,
        newest_append: None,
        subscriptions: Vec::new(),
        quarantined: None,
        recovered: Some(Recovered {
            torn_tails: 1,
            torn_bytes: 120,
            corrupt_records: 2,
            quarantined_bytes: 4096,
        }),
        damage: Vec::new(),
    };
    assert_eq!(
        render_list(&[listing]),
        "raw (disk): offsets 10..90, 3.0 MiB in 1 segment\n  no subscriptions\n  recovery since \
         the agent started: 1 torn tails cut (120 bytes), 2 corrupt records quarantined (4.0 KiB)\n"
    );
}
