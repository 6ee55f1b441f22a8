//! Tests of the `file` sink: templates, rotation, gzip members and their mending, failed writes.

use super::*;
use crate::encoding::{Encoding, encode_batch};
use bytes::Bytes;
use proptest::prelude::*;
use sluice_pipelines::{EventMeta, Fields};
use std::io;
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
    let mut members = crate::gunzip::CappedGunzip::new(File::open(path).unwrap(), u64::MAX);
    let complete = match members.read_to_end(&mut out) {
        Ok(_) => true,
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => false,
        Err(error) => panic!("{}: {error}", path.display()),
    };
    (String::from_utf8(out).unwrap(), complete)
}

/// Decodes only the first gzip member.
#[expect(
    clippy::disallowed_types,
    reason = "a single-member decoder, to check what strict readers see"
)]
fn read_first_member(path: &Path) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(File::open(path).unwrap())
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
    assert!(serde_json::from_str::<FileConfig>(r#"{"path":"a","compression":"zstd"}"#).is_err());
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
