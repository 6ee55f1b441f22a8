//! Tests of the `file` source against real files and a real topic.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_pipelines::{SourceId, Value};

use super::*;
use crate::metrics::{ComponentMetrics, Metrics, Role};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::sources::{Source, SourceContext, SourceError};
use crate::topic::{Subscription, SubscriptionSettings, Topic, TopicSettings};

/// A line as delivered: text and origin.
type Got = (String, u64);

fn quoted(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

fn config(paths: &[&Path], extra: &str) -> FileConfig {
    let include: Vec<String> = paths.iter().map(|path| quoted(path)).collect();
    let text = format!("include = [{}]\n{extra}", include.join(", "));
    toml::from_str(&text).unwrap()
}

fn context(topic: &Topic, shutdown: Shutdown) -> SourceContext {
    SourceContext {
        name: "files".into(),
        id: SourceId(7),
        output: topic.producer(),
        shutdown,
        data_dir: std::env::temp_dir(),
        metrics: Metrics::new().register("files", Role::Source),
    }
}

fn topic() -> (Topic, Subscription) {
    topic_with(TopicSettings::default())
}

fn topic_with(settings: TopicSettings) -> (Topic, Subscription) {
    let topic = Topic::in_memory("lines", settings);
    let sub = topic.subscribe(SubscriptionSettings::new("test"));
    (topic, sub)
}

fn got(delivery: &crate::topic::Delivery) -> Vec<Got> {
    delivery
        .events()
        .iter()
        .map(|event| {
            assert_eq!(event.meta().source, SourceId(7));
            (
                String::from_utf8_lossy(event.raw().unwrap()).into_owned(),
                event.meta().origin.unwrap(),
            )
        })
        .collect()
}

/// Runs a finite source to its end and returns every line delivered, and its metrics.
async fn run_to_end(config: &FileConfig) -> (Vec<Got>, std::sync::Arc<ComponentMetrics>) {
    let (topic, sub) = topic();
    let ctx = context(&topic, Shutdown::never());
    let metrics = ctx.metrics.clone();
    drop(topic);
    let source = Box::new(config.build().unwrap());
    assert!(source.is_finite());
    tokio::time::timeout(Duration::from_secs(20), source.run(ctx))
        .await
        .expect("a finite source ends")
        .unwrap();
    let mut lines = Vec::new();
    while let Some(delivery) = sub.next().await {
        lines.extend(got(&delivery));
        delivery.ack();
    }
    (lines, metrics)
}

/// Reads exactly `count` lines, failing after 10 seconds.
async fn take(sub: &Subscription, count: usize) -> Vec<Got> {
    let mut lines = Vec::new();
    while lines.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} lines came: {lines:?}", lines.len()))
            .expect("topic open");
        lines.extend(got(&delivery));
        delivery.ack();
    }
    assert_eq!(lines.len(), count, "more lines than expected: {lines:?}");
    lines
}

/// Asserts that nothing more is delivered for a while (several poll intervals).
async fn nothing_more(sub: &Subscription) {
    if let Ok(delivery) = tokio::time::timeout(Duration::from_millis(150), sub.next()).await {
        panic!("unexpected lines: {:?}", delivery.map(|d| got(&d)));
    }
}

/// A following source running in the background.
struct Running {
    sub: Subscription,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
    metrics: std::sync::Arc<ComponentMetrics>,
}

impl Running {
    fn start(config: &FileConfig) -> Self {
        let (topic, sub) = topic();
        let (trigger, shutdown) = shutdown::channel();
        let ctx = context(&topic, shutdown);
        let metrics = ctx.metrics.clone();
        let source = Box::new(config.build().unwrap());
        assert!(!source.is_finite());
        let task = tokio::spawn(source.run(ctx));
        Running {
            sub,
            trigger,
            task,
            metrics,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops promptly on shutdown")
            .unwrap()
            .unwrap();
    }
}

fn append(path: &Path, data: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    file.write_all(data).unwrap();
}

fn lines(texts: &[(&str, u64)]) -> Vec<Got> {
    texts
        .iter()
        .map(|(text, at)| ((*text).to_owned(), *at))
        .collect()
}

fn temp_file(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test]
async fn reads_exact_lines_and_the_last_one_without_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(
        &dir,
        "a.log",
        b"first\nsecond\n\n\xff invalid utf-8\nno newline",
    );
    let (lines, metrics) = run_to_end(&config(&[&path], "follow = false")).await;
    assert_eq!(
        lines,
        [
            ("first".into(), 0),
            ("second".into(), 6),
            (String::new(), 13),
            ("\u{fffd} invalid utf-8".into(), 14),
            ("no newline".into(), 30),
        ]
    );
    assert_eq!(metrics.events_out.get(), 5);
    assert_eq!(metrics.bytes_out.get(), 5 + 6 + 15 + 10);
}

#[tokio::test]
async fn invalid_utf8_is_kept_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "a.log", b"ok\n\xff\xfe\n");
    let (topic, sub) = topic();
    let source = Box::new(config(&[&path], "follow = false").build().unwrap());
    source
        .run(context(&topic, Shutdown::never()))
        .await
        .unwrap();
    drop(topic);
    let delivery = sub.next().await.unwrap();
    assert_eq!(&delivery.events()[1].raw().unwrap()[..], b"\xff\xfe");
}

#[tokio::test]
async fn crlf_and_custom_delimiters() {
    let dir = tempfile::tempdir().unwrap();
    let crlf = temp_file(&dir, "crlf.log", b"a\r\nb\r\n\r\nc\r\n");
    let (lines, _) = run_to_end(&config(&[&crlf], "follow = false")).await;
    assert_eq!(lines, self::lines(&[("a", 0), ("b", 3), ("", 6), ("c", 8)]));

    let custom = temp_file(&dir, "custom.log", b"one;;two\n;;three;;");
    let (lines, _) = run_to_end(&config(
        &[&custom],
        "follow = false\nline_delimiter = \";;\"",
    ))
    .await;
    assert_eq!(
        lines,
        self::lines(&[("one", 0), ("two\n", 5), ("three", 11)])
    );
}

#[tokio::test]
async fn long_lines_are_truncated_counted_and_the_next_line_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    data.extend_from_slice(b"short\n");
    data.extend(std::iter::repeat_n(b'x', 700_000));
    data.extend_from_slice(b"\nafter\n");
    let path = temp_file(&dir, "long.log", &data);
    let (lines, metrics) = run_to_end(&config(
        &[&path],
        "follow = false\nmax_line_bytes = \"1KiB\"",
    ))
    .await;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], ("short".into(), 0));
    assert_eq!(lines[1], ("x".repeat(1024), 6));
    assert_eq!(lines[2], ("after".into(), 700_007));
    assert_eq!(metrics.extra_counters(), [("truncated_lines", 1)]);
}

#[tokio::test]
async fn large_files_arrive_whole_and_in_order_under_back_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    let mut expected = Vec::new();
    let mut n = 0u64;
    // Over 10 MiB: many chunks, several read turns, lines straddling chunk boundaries.
    while data.len() < 10 << 20 {
        let line = format!("line {n} {}", "abcdefghij".repeat((n % 37) as usize));
        expected.push((line.clone(), data.len() as u64));
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
        n += 1;
    }
    let path = temp_file(&dir, "big.log", &data);
    // A topic far smaller than the file: the source must wait, not drop.
    let (topic, sub) = topic_with(TopicSettings {
        max_events: 3000,
        max_bytes: 1 << 20,
        ..TopicSettings::default()
    });
    let ctx = context(&topic, Shutdown::never());
    let metrics = ctx.metrics.clone();
    drop(topic);
    let source = Box::new(config(&[&path], "follow = false").build().unwrap());
    let task = tokio::spawn(source.run(ctx));
    let mut lines = Vec::new();
    while let Some(delivery) = sub.next().await {
        lines.extend(got(&delivery));
        delivery.ack();
    }
    task.await.unwrap().unwrap();
    assert_eq!(lines.len(), expected.len());
    assert!(lines == expected, "lines differ");
    assert_eq!(metrics.events_out.get(), expected.len() as u64);
}

#[tokio::test]
async fn read_from_end_skips_existing_lines_and_follows_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "a.log", b"old 1\nold 2\n");
    let running = Running::start(&config(
        &[&path],
        "read_from = \"end\"\npoll_interval = \"10ms\"",
    ));
    nothing_more(&running.sub).await;
    append(&path, b"new 1\nnew 2\n");
    assert_eq!(
        take(&running.sub, 2).await,
        self::lines(&[("new 1", 12), ("new 2", 18)])
    );
    running.stop().await;
}

#[tokio::test]
async fn appends_are_picked_up_and_partial_lines_held_until_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "a.log", b"one\ntw");
    let running = Running::start(&config(&[&path], "poll_interval = \"10ms\""));
    assert_eq!(take(&running.sub, 1).await, self::lines(&[("one", 0)]));
    // `tw` has no newline yet: it waits.
    nothing_more(&running.sub).await;
    append(&path, b"o\nthree\n");
    assert_eq!(
        take(&running.sub, 2).await,
        self::lines(&[("two", 4), ("three", 8)])
    );
    for round in 0..3 {
        append(&path, format!("more {round}\n").as_bytes());
        assert_eq!(take(&running.sub, 1).await[0].0, format!("more {round}"));
    }
    nothing_more(&running.sub).await;
    assert_eq!(running.metrics.events_out.get(), 6);
    running.stop().await;
}

#[tokio::test]
async fn a_truncated_file_is_read_again_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "a.log", b"a long first line\nsecond line\n");
    let running = Running::start(&config(&[&path], "poll_interval = \"10ms\""));
    assert_eq!(take(&running.sub, 2).await.len(), 2);
    // copytruncate: same file, emptied, then written again.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(0).unwrap();
    drop(file);
    append(&path, b"fresh\n");
    assert_eq!(take(&running.sub, 1).await, self::lines(&[("fresh", 0)]));
    append(&path, b"next\n");
    assert_eq!(take(&running.sub, 1).await, self::lines(&[("next", 6)]));
    running.stop().await;
}

#[tokio::test]
async fn path_and_offset_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "a.log", b"x\nyy\n");
    let (topic, sub) = topic();
    let config = config(
        &[&path],
        "follow = false\nadd_path_field = \"file\"\nadd_offset_field = \"offset\"",
    );
    Box::new(config.build().unwrap())
        .run(context(&topic, Shutdown::never()))
        .await
        .unwrap();
    drop(topic);
    let delivery = sub.next().await.unwrap();
    let second = &delivery.events()[1];
    assert_eq!(
        second.get("file").and_then(Value::as_str),
        Some(path.to_str().unwrap())
    );
    assert_eq!(second.get("offset"), Some(&Value::Int(2)));
}

#[tokio::test]
async fn globs_pick_matching_files_and_new_ones_from_their_beginning() {
    let dir = tempfile::tempdir().unwrap();
    temp_file(&dir, "b.log", b"b1\n");
    temp_file(&dir, "a.log", b"a1\n");
    temp_file(&dir, "a.txt", b"not me\n");
    let pattern = dir.path().join("*.log");
    let running = Running::start(&config(
        &[&pattern],
        "read_from = \"end\"\npoll_interval = \"10ms\"",
    ));
    nothing_more(&running.sub).await;
    // Found at startup: read from the end. Created later: read from the beginning.
    append(&dir.path().join("a.log"), b"a2\n");
    temp_file(&dir, "c.log", b"c1\nc2\n");
    temp_file(&dir, "c.txt", b"ignored\n");
    let mut lines: Vec<String> = take(&running.sub, 3)
        .await
        .into_iter()
        .map(|(line, _)| line)
        .collect();
    lines.sort();
    assert_eq!(lines, ["a2", "c1", "c2"]);
    nothing_more(&running.sub).await;
    running.stop().await;
}

#[tokio::test]
async fn a_missing_file_is_waited_for_when_following() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let (lines, _) = run_to_end(&config(&[&path], "follow = false")).await;
    assert!(lines.is_empty());

    let running = Running::start(&config(&[&path], "poll_interval = \"10ms\""));
    nothing_more(&running.sub).await;
    append(&path, b"hello\n");
    assert_eq!(take(&running.sub, 1).await, self::lines(&[("hello", 0)]));
    running.stop().await;
}

#[tokio::test]
async fn shutdown_stops_a_source_blocked_on_a_full_topic() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..100_000)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    let path = temp_file(&dir, "a.log", &data);
    let (topic, sub) = topic_with(TopicSettings {
        max_events: 2000,
        ..TopicSettings::default()
    });
    let (trigger, shutdown) = shutdown::channel();
    let source = Box::new(
        config(&[&path], "poll_interval = \"10ms\"")
            .build()
            .unwrap(),
    );
    let task = tokio::spawn(source.run(context(&topic, shutdown)));
    // Take one batch and leave the rest: the topic fills and the source waits on it.
    let first = sub.next().await.unwrap();
    assert_eq!(got(&first)[0], ("0".into(), 0));
    first.ack();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished());
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
}

#[test]
fn the_reader_restarts_after_truncation_and_reads_from_the_end() {
    use crate::sources::lines::{BatchBuilder, LineEvents, LineFormat};
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "a.log", b"0123456789\n");
    let format = LineFormat::new("\n", 100).unwrap();
    let mut reader =
        FileReader::open(&path, ReadFrom::End, &format, LineEvents::new(SourceId(1))).unwrap();
    assert_eq!(reader.position(), 11);
    let mut out = BatchBuilder::new();
    let outcome = reader.read(1 << 20, &mut out, false).unwrap();
    assert_eq!(
        outcome,
        ReadOutcome {
            read: 0,
            eof: true,
            restarted: false
        }
    );
    append(&path, b"ab");
    let outcome = reader.read(1 << 20, &mut out, false).unwrap();
    assert_eq!((outcome.read, outcome.eof), (2, true));
    assert_eq!(reader.pending_bytes(), 2);
    std::fs::write(&path, b"new\n").unwrap();
    let outcome = reader.read(1 << 20, &mut out, false).unwrap();
    assert_eq!(
        outcome,
        ReadOutcome {
            read: 4,
            eof: true,
            restarted: true
        }
    );
    assert_eq!(reader.path(), path);
    let (batches, _) = out.take();
    let events = batches[0].batch.events();
    assert_eq!(events.len(), 1);
    assert_eq!(&events[0].raw().unwrap()[..], b"new");
    assert_eq!(events[0].meta().origin, Some(0));
}

#[test]
fn find_files_lists_plain_paths_and_sorted_glob_matches_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = temp_file(&dir, "b.log", b"");
    let a = temp_file(&dir, "a.log", b"");
    std::fs::create_dir(dir.path().join("d.log")).unwrap();
    let include = [
        Include::Path(b.clone()),
        Include::Glob {
            dir: dir.path().to_path_buf(),
            pattern: "*.log".into(),
        },
        Include::Path(dir.path().join("missing.log")),
    ];
    assert_eq!(source::find_files(&include), [b, a]);
}

/// Throughput measurements on a real file, in release mode:
///
/// ```sh
/// python3 shared/bench/gen_logs.py --format nginx --mb 256 --out /tmp/access.log
/// SLUICE_BENCH_FILE=/tmp/access.log cargo test --release -p sluice --lib sources::file::tests::bench \
///     -- --ignored --nocapture --test-threads 1
/// ```
mod bench {
    use std::time::Instant;

    use bytes::BytesMut;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::sources::lines::{BatchBuilder, LineEvents, LineFormat, READ_CHUNK};

    fn bench_file() -> PathBuf {
        std::env::var_os("SLUICE_BENCH_FILE")
            .map(PathBuf::from)
            .expect("set SLUICE_BENCH_FILE to a big log file")
    }

    fn report(what: &str, bytes: u64, events: u64, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{what}: {:.0} MiB/s, {:.2} M events/s ({bytes} bytes, {events} events, {seconds:.3}s)",
            bytes as f64 / seconds / (1 << 20) as f64,
            events as f64 / seconds / 1e6,
        );
    }

    #[test]
    #[ignore = "measurement; needs SLUICE_BENCH_FILE"]
    fn bench_reader_alone() {
        let path = bench_file();
        let format = LineFormat::new("\n", 1 << 20).unwrap();
        for _ in 0..3 {
            let started = Instant::now();
            let mut reader = FileReader::open(
                &path,
                ReadFrom::Beginning,
                &format,
                LineEvents::new(SourceId(1)),
            )
            .unwrap();
            let mut out = BatchBuilder::new();
            let (mut bytes, mut events) = (0, 0);
            loop {
                let outcome = reader.read(source::READ_BUDGET, &mut out, true).unwrap();
                let (batches, _) = out.take();
                for ready in batches {
                    bytes += ready.raw_bytes;
                    events += ready.batch.len() as u64;
                }
                if outcome.eof {
                    break;
                }
            }
            report(
                "reader alone (read + split + events + batches)",
                bytes,
                events,
                started,
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement; needs SLUICE_BENCH_FILE"]
    async fn bench_source_to_topic_to_consumer() {
        let path = bench_file();
        for _ in 0..3 {
            let (topic, sub) = topic();
            let ctx = context(&topic, Shutdown::never());
            let metrics = ctx.metrics.clone();
            drop(topic);
            let started = Instant::now();
            let consumer = tokio::spawn(async move {
                let mut events = 0u64;
                while let Some(delivery) = sub.next().await {
                    events += delivery.events().len() as u64;
                    delivery.ack();
                }
                events
            });
            let source = Box::new(config(&[&path], "follow = false").build().unwrap());
            source.run(ctx).await.unwrap();
            let events = consumer.await.unwrap();
            assert_eq!(events, metrics.events_out.get());
            report(
                "file -> topic -> acking consumer",
                metrics.bytes_out.get(),
                events,
                started,
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement; needs SLUICE_BENCH_FILE"]
    async fn bench_raw_reads_tokio_fs_against_spawn_blocking() {
        let path = bench_file();
        for _ in 0..2 {
            let started = Instant::now();
            let mut file = tokio::fs::File::open(&path).await.unwrap();
            let (mut bytes, mut lines) = (0u64, 0u64);
            loop {
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                let read = file.read_buf(&mut buf).await.unwrap();
                if read == 0 {
                    break;
                }
                bytes += read as u64;
                lines += memchr::memchr_iter(b'\n', &buf).count() as u64;
            }
            report("tokio::fs::File, 256 KiB read_buf", bytes, lines, started);

            let started = Instant::now();
            let mut file = Some(std::fs::File::open(&path).unwrap());
            let (mut bytes, mut lines) = (0u64, 0u64);
            loop {
                let mut taken = file.take().unwrap();
                let (back, read, counted) = tokio::task::spawn_blocking(move || {
                    let (mut read, mut counted) = (0u64, 0u64);
                    while read < source::READ_BUDGET {
                        let mut buf = vec![0; READ_CHUNK];
                        let n = std::io::Read::read(&mut taken, &mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        read += n as u64;
                        counted += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                    }
                    (taken, read, counted)
                })
                .await
                .unwrap();
                file = Some(back);
                if read == 0 {
                    break;
                }
                bytes += read;
                lines += counted;
            }
            report(
                "std::fs::File in spawn_blocking, 4 MiB per call",
                bytes,
                lines,
                started,
            );
        }
    }
}
