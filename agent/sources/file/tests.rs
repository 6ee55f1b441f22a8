//! Tests of the `file` source against real files, a real topic and real checkpoints.

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_pipelines::{SourceId, Value};

use super::checkpoint::CheckpointFile;
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

fn context(topic: &Topic, shutdown: Shutdown, data_dir: &Path) -> SourceContext {
    SourceContext {
        name: "files".into(),
        id: SourceId(7),
        output: topic.producer(),
        shutdown,
        data_dir: data_dir.to_path_buf(),
        metrics: Metrics::new().register("files", Role::Source),
        dead_letter: None,
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
                String::from_utf8(event.raw().unwrap().to_vec()).expect("valid UTF-8 events"),
                event.meta().origin.unwrap(),
            )
        })
        .collect()
}

fn counter(metrics: &ComponentMetrics, name: &str) -> u64 {
    metrics
        .extra_counters()
        .into_iter()
        .find(|(counter, _)| *counter == name)
        .map_or(0, |(_, value)| value)
}

/// Runs a finite source to its end and returns every line delivered, and its metrics.
async fn run_to_end(config: &FileConfig, data_dir: &Path) -> (Vec<Got>, Arc<ComponentMetrics>) {
    let (topic, sub) = topic();
    let ctx = context(&topic, Shutdown::never(), data_dir);
    let metrics = ctx.metrics.clone();
    drop(topic);
    let source = Box::new(config.build().unwrap());
    assert!(source.is_finite());
    let task = tokio::spawn(source.run(ctx));
    let mut lines = Vec::new();
    while let Some(delivery) = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a finite source ends")
    {
        lines.extend(got(&delivery));
        delivery.ack();
    }
    task.await.unwrap().unwrap();
    (lines, metrics)
}

/// Reads exactly `count` lines, failing after 20 seconds.
async fn take(sub: &Subscription, count: usize) -> Vec<Got> {
    let mut lines = Vec::new();
    while lines.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(20), sub.next())
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
    if let Ok(delivery) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        panic!("unexpected lines: {:?}", delivery.map(|d| got(&d)));
    }
}

/// A following source running in the background.
struct Running {
    sub: Subscription,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
    metrics: Arc<ComponentMetrics>,
}

impl Running {
    fn start(config: &FileConfig, data_dir: &Path) -> Self {
        let (topic, sub) = topic();
        let (trigger, shutdown) = shutdown::channel();
        let ctx = context(&topic, shutdown, data_dir);
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

    /// Shuts the source down, acknowledging what is still delivered, and returns those lines.
    async fn stop(self) -> Vec<Got> {
        self.trigger.trigger();
        let mut rest = Vec::new();
        let drain = async {
            while let Some(delivery) = self.sub.next().await {
                rest.extend(got(&delivery));
                delivery.ack();
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("stops promptly on shutdown")
            .unwrap()
            .unwrap();
        rest
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

fn texts(got: &[Got]) -> Vec<String> {
    got.iter().map(|(text, _)| text.clone()).collect()
}

fn sorted(got: &[Got]) -> Vec<String> {
    let mut texts = texts(got);
    texts.sort();
    texts
}

fn temp_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|n| format!("{prefix} {n}\n")).collect()
}

fn checkpoints(data_dir: &Path) -> CheckpointFile {
    let path = data_dir.join("sources/files/checkpoints.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn checkpoint_offset(data_dir: &Path, path: &Path) -> Option<u64> {
    let wanted = path.to_string_lossy();
    checkpoints(data_dir)
        .files
        .iter()
        .find(|c| c.path == wanted && c.orphan.is_none())
        .map(|c| c.offset)
}

/// Whether this process holds `path` open (Linux).
fn holds_open(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    let wanted = path.to_string_lossy().into_owned();
    entries.filter_map(Result::ok).any(|entry| {
        std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with(&wanted))
    })
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
async fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

const FAST: &str = "poll_interval = \"10ms\"\ncheckpoint_interval = \"10ms\"";

#[tokio::test]
async fn reads_exact_lines_and_the_last_one_without_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"first\nsecond\n\n \t\nno newline");
    let (lines, metrics) = run_to_end(&config(&[&path], "follow = false"), dir.path()).await;
    // Blank and whitespace-only lines are not events (the one rule of `sources::lines`).
    assert_eq!(
        lines,
        [
            ("first".into(), 0),
            ("second".into(), 6),
            ("no newline".into(), 17),
        ]
    );
    assert_eq!(metrics.events_out.get(), 3);
    assert_eq!(metrics.bytes_out.get(), 5 + 6 + 10);
}

#[tokio::test]
async fn invalid_utf8_is_kept_lossily_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(
        dir.path(),
        "a.log",
        b"ok\n\xff\xfe bad\nfine \xc3\xa9\n\xc3\n",
    );
    let (lines, metrics) = run_to_end(&config(&[&path], "follow = false"), dir.path()).await;
    assert_eq!(
        texts(&lines),
        ["ok", "\u{fffd}\u{fffd} bad", "fine é", "\u{fffd}"]
    );
    assert_eq!(counter(&metrics, "invalid_utf8"), 2);
}

#[tokio::test]
async fn crlf_and_custom_delimiters() {
    let dir = tempfile::tempdir().unwrap();
    let crlf = temp_file(dir.path(), "crlf.log", b"a\r\nb\r\n\r\nc\r\n");
    let (lines, _) = run_to_end(&config(&[&crlf], "follow = false"), dir.path()).await;
    // The empty CRLF line is blank: not an event.
    assert_eq!(lines, self::lines(&[("a", 0), ("b", 3), ("c", 8)]));

    let custom = temp_file(dir.path(), "custom.log", b"one;;two\n;;three;;");
    let (lines, _) = run_to_end(
        &config(&[&custom], "follow = false\nline_delimiter = \";;\""),
        dir.path(),
    )
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
    let path = temp_file(dir.path(), "long.log", &data);
    let (lines, metrics) = run_to_end(
        &config(&[&path], "follow = false\nmax_line_bytes = \"1KiB\""),
        dir.path(),
    )
    .await;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], ("short".into(), 0));
    assert_eq!(lines[1], ("x".repeat(1024), 6));
    assert_eq!(lines[2], ("after".into(), 700_007));
    assert_eq!(counter(&metrics, "truncated_lines"), 1);
}

/// A 10 MiB line, written while the source follows the file: it is cut to `max_line_bytes`
/// (or skipped), and the lines after it arrive.
#[tokio::test]
async fn a_10_mib_line_never_stops_the_rest_of_the_file() {
    for (mode, expected_first) in [("truncate", Some(1 << 20)), ("skip", None)] {
        let dir = tempfile::tempdir().unwrap();
        let path = temp_file(dir.path(), "huge.log", b"before\n");
        let running = Running::start(
            &config(&[&path], &format!("{FAST}\nlong_lines = \"{mode}\"")),
            dir.path(),
        );
        assert_eq!(texts(&take(&running.sub, 1).await), ["before"]);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        let chunk = vec![b'y'; 1 << 20];
        for _ in 0..10 {
            file.write_all(&chunk).unwrap();
        }
        file.write_all(b"\nafter 1\nafter 2\n").unwrap();
        let expected = usize::from(expected_first.is_some()) + 2;
        let got = take(&running.sub, expected).await;
        if let Some(len) = expected_first {
            assert_eq!(got[0].0.len(), len);
            assert_eq!(got[0].1, 7);
            assert_eq!(counter(&running.metrics, "truncated_lines"), 1);
        } else {
            assert_eq!(counter(&running.metrics, "skipped_lines"), 1);
        }
        assert_eq!(
            texts(&got[got.len() - 2..]),
            ["after 1", "after 2"],
            "{mode}"
        );
        assert_eq!(got[got.len() - 2].1, 7 + (10 << 20) + 1);
        running.stop().await;
    }
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
    let path = temp_file(dir.path(), "big.log", &data);
    // A topic far smaller than the file: the source must wait, not drop.
    let (topic, sub) = topic_with(TopicSettings {
        max_events: 3000,
        max_bytes: 1 << 20,
        ..TopicSettings::default()
    });
    let ctx = context(&topic, Shutdown::never(), dir.path());
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
    // The finite run checkpointed the whole file.
    assert_eq!(
        checkpoint_offset(dir.path(), &path),
        Some(data.len() as u64)
    );
}

#[tokio::test]
async fn read_from_end_skips_existing_lines_and_follows_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"old 1\nold 2\n");
    let running = Running::start(
        &config(&[&path], &format!("read_from = \"end\"\n{FAST}")),
        dir.path(),
    );
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
    let path = temp_file(dir.path(), "a.log", b"one\ntw");
    let running = Running::start(&config(&[&path], FAST), dir.path());
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
async fn inotify_sees_appends_long_before_the_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"one\n");
    let running = Running::start(&config(&[&path], "poll_interval = \"30s\""), dir.path());
    assert_eq!(texts(&take(&running.sub, 1).await), ["one"]);
    let started = std::time::Instant::now();
    append(&path, b"two\n");
    assert_eq!(texts(&take(&running.sub, 1).await), ["two"]);
    // A new file in the watched directory is found as fast.
    let other = dir.path().join("b.log");
    let running_glob = Running::start(
        &config(
            &[&dir.path().join("*.log")],
            "poll_interval = \"30s\"\nread_from = \"end\"",
        ),
        &dir.path().join("state2"),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&other, b"new file\n");
    assert_eq!(texts(&take(&running_glob.sub, 1).await), ["new file"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    running.stop().await;
    running_glob.stop().await;
}

#[tokio::test]
async fn polling_mode_follows_files_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"one\n");
    let running = Running::start(
        &config(&[&path], &format!("watch = \"poll\"\n{FAST}")),
        dir.path(),
    );
    assert_eq!(texts(&take(&running.sub, 1).await), ["one"]);
    append(&path, b"two\n");
    assert_eq!(texts(&take(&running.sub, 1).await), ["two"]);
    running.stop().await;
}

#[tokio::test]
async fn a_truncated_file_is_read_again_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"a long first line\nsecond line\n");
    let running = Running::start(&config(&[&path], FAST), dir.path());
    assert_eq!(take(&running.sub, 2).await.len(), 2);
    // Truncated in place (no copy kept), then written again.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(0).unwrap();
    drop(file);
    append(&path, b"fresh\n");
    assert_eq!(take(&running.sub, 1).await, self::lines(&[("fresh", 0)]));
    append(&path, b"next\n");
    assert_eq!(take(&running.sub, 1).await, self::lines(&[("next", 6)]));
    assert_eq!(counter(&running.metrics, "truncations"), 1);
    running.stop().await;
}

/// copytruncate with the copy matched by `include`: the lines written after the last read but
/// before the truncation are read from the copy, and nothing is read twice.
#[tokio::test]
async fn copytruncate_reads_the_unread_tail_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "access.log", numbered("a", 0..100).as_bytes());
    let pattern = dir.path().join("access.log*");
    let running = Running::start(&config(&[&pattern], FAST), dir.path());
    assert_eq!(take(&running.sub, 100).await.len(), 100);
    // Written, then copied and truncated before the source could read them.
    let mut content = std::fs::read(&path).unwrap();
    content.extend_from_slice(numbered("a", 100..150).as_bytes());
    std::fs::write(dir.path().join("access.log.1"), &content).unwrap();
    std::fs::write(&path, b"").unwrap();
    append(&path, numbered("b", 0..20).as_bytes());
    let got = take(&running.sub, 70).await;
    let mut expected: Vec<String> = (100..150).map(|n| format!("a {n}")).collect();
    expected.extend((0..20).map(|n| format!("b {n}")));
    expected.sort();
    assert_eq!(sorted(&got), expected);
    nothing_more(&running.sub).await;
    running.stop().await;
}

/// logrotate's default: rename, create a new file; the old file is finished, the new one read,
/// and the old one closed once idle for `rotate_wait` when `include` does not match it.
#[tokio::test]
async fn rename_rotation_finishes_the_old_file_then_reads_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "app.log", numbered("old", 0..10).as_bytes());
    let running = Running::start(
        &config(&[&path], &format!("{FAST}\nrotate_wait = \"200ms\"")),
        dir.path(),
    );
    assert_eq!(take(&running.sub, 10).await.len(), 10);
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    // The writer still had the old file open: these land in the renamed file.
    append(&rotated, numbered("old", 10..15).as_bytes());
    append(&path, numbered("new", 0..5).as_bytes());
    let got = take(&running.sub, 10).await;
    // The old file's lines come first.
    assert_eq!(
        texts(&got),
        (10..15)
            .map(|n| format!("old {n}"))
            .chain((0..5).map(|n| format!("new {n}")))
            .collect::<Vec<_>>()
    );
    assert!(
        wait_for(Duration::from_secs(5), || !holds_open(&rotated)).await,
        "the rotated file is closed after rotate_wait"
    );
    nothing_more(&running.sub).await;
    running.stop().await;
}

#[tokio::test]
async fn deleted_and_recreated_files_are_closed_and_read_anew() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"same first line\nold 1\n");
    let running = Running::start(&config(&[&path], FAST), dir.path());
    assert_eq!(
        texts(&take(&running.sub, 2).await),
        ["same first line", "old 1"]
    );
    append(&path, b"old 2\n");
    std::fs::remove_file(&path).unwrap();
    // Read to its end and closed, so its space is freed.
    assert_eq!(texts(&take(&running.sub, 1).await), ["old 2"]);
    assert!(
        wait_for(Duration::from_secs(5), || !holds_open(&path)).await,
        "the deleted file is closed"
    );
    // Same name, same first line: a new file all the same.
    std::fs::write(&path, b"same first line\nnew 1\n").unwrap();
    assert_eq!(
        take(&running.sub, 2).await,
        self::lines(&[("same first line", 0), ("new 1", 16)])
    );
    nothing_more(&running.sub).await;
    running.stop().await;
}

#[tokio::test]
async fn a_file_that_disappears_and_returns_resumes_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", numbered("line", 0..5).as_bytes());
    let running = Running::start(
        &config(&[&path], &format!("{FAST}\nrotate_wait = \"50ms\"")),
        dir.path(),
    );
    assert_eq!(take(&running.sub, 5).await.len(), 5);
    let away = dir.path().join("away");
    std::fs::rename(&path, &away).unwrap();
    assert!(wait_for(Duration::from_secs(5), || !holds_open(&away)).await);
    append(&away, numbered("line", 5..7).as_bytes());
    std::fs::rename(&away, &path).unwrap();
    assert_eq!(texts(&take(&running.sub, 2).await), ["line 5", "line 6"]);
    nothing_more(&running.sub).await;
    running.stop().await;
}

#[tokio::test]
async fn two_files_with_the_same_first_line_are_both_read() {
    let dir = tempfile::tempdir().unwrap();
    let header = "timestamp,level,message\n";
    temp_file(dir.path(), "a.csv", format!("{header}a,1\n").as_bytes());
    temp_file(dir.path(), "b.csv", format!("{header}b,1\n").as_bytes());
    // Exactly the same content too: two files all the same.
    temp_file(dir.path(), "c.csv", format!("{header}a,1\n").as_bytes());
    let pattern = dir.path().join("*.csv");
    let (lines, _) = run_to_end(&config(&[&pattern], "follow = false"), dir.path()).await;
    assert_eq!(lines.len(), 6);

    // Following: a file created later with the same head waits a moment, then is read.
    let dir = tempfile::tempdir().unwrap();
    temp_file(dir.path(), "a.csv", format!("{header}a,1\n").as_bytes());
    let pattern = dir.path().join("*.csv");
    let running = Running::start(
        &config(&[&pattern], &format!("{FAST}\nrotate_wait = \"100ms\"")),
        dir.path(),
    );
    assert_eq!(take(&running.sub, 2).await.len(), 2);
    temp_file(dir.path(), "b.csv", header.as_bytes());
    temp_file(dir.path(), "c.csv", format!("{header}c,1\n").as_bytes());
    let got = take(&running.sub, 3).await;
    assert_eq!(sorted(&got), ["c,1", header.trim_end(), header.trim_end()]);
    append(&dir.path().join("b.csv"), b"b,2\n");
    assert_eq!(texts(&take(&running.sub, 1).await), ["b,2"]);
    nothing_more(&running.sub).await;
    running.stop().await;
}

#[tokio::test]
async fn a_file_shorter_than_the_fingerprint_is_read_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "tiny.log", b"x\n");
    let running = Running::start(&config(&[&path], FAST), data.path());
    assert_eq!(texts(&take(&running.sub, 1).await), ["x"]);
    append(&path, b"y\n");
    assert_eq!(texts(&take(&running.sub, 1).await), ["y"]);
    running.stop().await;
    let saved = checkpoints(data.path());
    assert_eq!(saved.files.len(), 1);
    assert_eq!(saved.files[0].offset, 4);
    assert_eq!(saved.files[0].fingerprint.len, 4);
    append(&path, b"z\n");
    let running = Running::start(&config(&[&path], FAST), data.path());
    assert_eq!(take(&running.sub, 1).await, self::lines(&[("z", 4)]));
    nothing_more(&running.sub).await;
    running.stop().await;
}

#[tokio::test]
async fn checkpoints_resume_exactly_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let a = temp_file(dir.path(), "a.log", numbered("a", 0..1000).as_bytes());
    let b = temp_file(dir.path(), "b.log", numbered("b", 0..10).as_bytes());
    let pattern = dir.path().join("*.log");
    let settings = format!("{FAST}\nread_from = \"end\"");
    // First start with `read_from = "end"`: nothing old is read.
    let running = Running::start(&config(&[&pattern], &settings), data.path());
    nothing_more(&running.sub).await;
    append(&a, numbered("a", 1000..1005).as_bytes());
    assert_eq!(take(&running.sub, 5).await.len(), 5);
    assert!(running.stop().await.is_empty());
    // Written while stopped: a partial line, more lines, a new file.
    append(&a, numbered("a", 1005..1010).as_bytes());
    append(&a, b"a partial");
    append(&b, numbered("b", 10..12).as_bytes());
    let c = temp_file(dir.path(), "c.log", numbered("c", 0..3).as_bytes());
    let running = Running::start(&config(&[&pattern], &settings), data.path());
    let got = take(&running.sub, 10).await;
    let mut expected: Vec<String> = (1005..1010)
        .map(|n| format!("a {n}"))
        .chain((10..12).map(|n| format!("b {n}")))
        .chain((0..3).map(|n| format!("c {n}")))
        .collect();
    expected.sort();
    assert_eq!(sorted(&got), expected, "no duplicates, nothing missing");
    nothing_more(&running.sub).await;
    assert!(running.stop().await.is_empty());
    // The partial line is completed later and resumed from its start.
    append(&a, b" line\n");
    let running = Running::start(&config(&[&pattern], &settings), data.path());
    assert_eq!(texts(&take(&running.sub, 1).await), ["a partial line"]);
    nothing_more(&running.sub).await;
    running.stop().await;
    assert_eq!(
        checkpoint_offset(data.path(), &c),
        Some(std::fs::metadata(&c).unwrap().len())
    );
}

/// A subscription that does not acknowledge: the checkpoint must not move past what it holds.
#[tokio::test]
async fn checkpoints_advance_only_up_to_the_safe_offset() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"one\ntwo\n");
    let (topic, sub) = topic();
    let (trigger, shutdown) = shutdown::channel();
    let source = Box::new(config(&[&path], FAST).build().unwrap());
    let task = tokio::spawn(source.run(context(&topic, shutdown, data.path())));
    let first = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.events().len(), 2);
    // Held, not acknowledged: checkpoints are written, at 0.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(checkpoint_offset(data.path(), &path), Some(0));
    append(&path, b"three\n");
    let second = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(checkpoint_offset(data.path(), &path), Some(0));
    // Acknowledged out of order: the second batch alone is not safe either.
    second.ack();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(checkpoint_offset(data.path(), &path), Some(0));
    first.ack();
    let safe_all = wait_for(Duration::from_secs(5), || {
        checkpoint_offset(data.path(), &path) == Some(14)
    })
    .await;
    assert!(safe_all, "{:?}", checkpoints(data.path()));
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The first checkpoint is written as soon as something is safe, not a whole
/// `checkpoint_interval` after the start: in a crash loop of runs shorter than the interval, each
/// run must still save its progress (else every restart re-reads an ever longer tail).
#[tokio::test]
async fn the_first_checkpoint_is_written_once_something_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"one\ntwo\n");
    let (topic, sub) = topic();
    let (trigger, shutdown) = shutdown::channel();
    let settings = "poll_interval = \"10ms\"\ncheckpoint_interval = \"1h\"";
    let source = Box::new(config(&[&path], settings).build().unwrap());
    let task = tokio::spawn(source.run(context(&topic, shutdown, data.path())));
    let delivery = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    delivery.ack();
    let file = data.path().join("sources/files/checkpoints.json");
    let saved = wait_for(Duration::from_secs(5), || {
        file.exists() && checkpoint_offset(data.path(), &path) == Some(8)
    })
    .await;
    assert!(saved, "no checkpoint at 8 within 5 s (interval 1h)");
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Shutdown with a full topic: reading stops at once; the source ends once what it published
/// is acknowledged, and the checkpoint covers exactly that.
#[tokio::test]
async fn shutdown_stops_a_source_blocked_on_a_full_topic() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..100_000)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    let path = temp_file(dir.path(), "a.log", &data);
    let (topic, sub) = topic_with(TopicSettings {
        max_events: 2000,
        ..TopicSettings::default()
    });
    let (trigger, shutdown) = shutdown::channel();
    let source = Box::new(config(&[&path], FAST).build().unwrap());
    let task = tokio::spawn(source.run(context(&topic, shutdown, dir.path())));
    drop(topic);
    let first = sub.next().await.unwrap();
    assert_eq!(got(&first)[0], ("0".into(), 0));
    let mut delivered = got(&first).len();
    first.ack();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished());
    trigger.trigger();
    while let Some(delivery) = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("the topic ends once the source stopped")
    {
        delivered += delivery.events().len();
        delivery.ack();
    }
    assert!(delivered < 100_000, "reading stopped");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    let offset = checkpoint_offset(dir.path(), &path).unwrap();
    let lines_before = data[..offset as usize]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    assert_eq!(
        lines_before, delivered,
        "checkpoint = what was acknowledged"
    );
}

#[tokio::test]
async fn path_host_and_offset_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"x\nyy\n");
    let (topic, sub) = topic();
    let config = config(
        &[&path],
        "follow = false\nadd_path_field = \"file\"\noffset_field = \"offset\"\nhost_field = \"host\"",
    );
    let task = tokio::spawn(Box::new(config.build().unwrap()).run(context(
        &topic,
        Shutdown::never(),
        dir.path(),
    )));
    drop(topic);
    let delivery = sub.next().await.unwrap();
    let second = &delivery.events()[1];
    assert_eq!(
        second.get("file").and_then(Value::as_str),
        Some(path.to_str().unwrap())
    );
    assert_eq!(second.get("offset"), Some(&Value::Int(2)));
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert_eq!(
        second.get("host").and_then(Value::as_str),
        Some(host.as_str())
    );
    delivery.ack();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn globs_with_double_stars_excludes_and_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("logs");
    std::fs::create_dir_all(root.join("app/x")).unwrap();
    temp_file(&root, "b.log", b"b1\n");
    temp_file(&root, "app/a.log", b"a1\n");
    temp_file(&root, "app/a.txt", b"not me\n");
    temp_file(&root, "app/x/skip.log", b"excluded\n");
    let pattern = root.join("**/*.log");
    let running = Running::start(
        &config(
            &[&pattern],
            &format!("read_from = \"end\"\nexclude = [\"skip*\"]\n{FAST}"),
        ),
        dir.path(),
    );
    nothing_more(&running.sub).await;
    // Found at startup: read from the end. Created later, in new directories too: from the
    // beginning.
    append(&root.join("app/a.log"), b"a2\n");
    std::fs::create_dir_all(root.join("new/deep")).unwrap();
    temp_file(&root, "new/deep/c.log", b"c1\nc2\n");
    temp_file(&root, "new/deep/c.txt", b"ignored\n");
    temp_file(&root, "new/skip.log", b"excluded\n");
    let got = take(&running.sub, 3).await;
    assert_eq!(sorted(&got), ["a2", "c1", "c2"]);
    nothing_more(&running.sub).await;
    running.stop().await;
}

#[tokio::test]
async fn a_glob_that_matches_nothing_yet_matches_later() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("later/*/app-*.log");
    let (lines, _) = run_to_end(&config(&[&pattern], "follow = false"), dir.path()).await;
    assert!(lines.is_empty());

    let running = Running::start(&config(&[&pattern], FAST), dir.path());
    nothing_more(&running.sub).await;
    std::fs::create_dir_all(dir.path().join("later/web")).unwrap();
    append(&dir.path().join("later/web/app-1.log"), b"hello\n");
    assert_eq!(take(&running.sub, 1).await, self::lines(&[("hello", 0)]));
    running.stop().await;
}

#[tokio::test]
async fn five_hundred_files_at_once_are_all_read_fairly() {
    let dir = tempfile::tempdir().unwrap();
    for file in 0..500 {
        temp_file(
            dir.path(),
            &format!("f{file:03}.log"),
            numbered(&format!("f{file:03}"), 0..20).as_bytes(),
        );
    }
    let pattern = dir.path().join("*.log");
    let running = Running::start(&config(&[&pattern], FAST), dir.path());
    let got = take(&running.sub, 500 * 20).await;
    let unique: HashSet<&String> = got.iter().map(|(text, _)| text).collect();
    assert_eq!(unique.len(), 10_000);
    // Every file is open and its lines arrived in order.
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (text, offset) in &got {
        let file = &text[..4];
        if let Some(previous) = last.insert(file, *offset) {
            assert!(previous < *offset, "{file} out of order");
        }
    }
    assert_eq!(counter(&running.metrics, "files_opened"), 500);
    // An append to the last file is read at once, however many others there are.
    append(&dir.path().join("f499.log"), b"late\n");
    assert_eq!(texts(&take(&running.sub, 1).await), ["late"]);
    running.stop().await;
}

#[tokio::test]
async fn gzip_files_are_read_once_and_checkpointed_as_done() {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let gzip = |name: &str, text: &str| {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        temp_file(dir.path(), name, &encoder.finish().unwrap())
    };
    let archive = gzip("access.log.2.gz", &numbered("old", 0..1000));
    let live = temp_file(dir.path(), "access.log", numbered("live", 0..3).as_bytes());
    let pattern = dir.path().join("access.log*");
    let running = Running::start(&config(&[&pattern], FAST), data.path());
    let got = take(&running.sub, 1003).await;
    assert_eq!(
        got.iter().filter(|(t, _)| t.starts_with("old")).count(),
        1000
    );
    // The live file rotated and compressed: its `.gz` is the same content, not read again.
    let content = std::fs::read_to_string(&live).unwrap();
    std::fs::remove_file(&live).unwrap();
    gzip("access.log.1.gz", &content);
    nothing_more(&running.sub).await;
    running.stop().await;
    let saved = checkpoints(data.path());
    let done: Vec<&str> = saved
        .files
        .iter()
        .filter(|c| c.gzip && c.done)
        .map(|c| c.path.as_str())
        .collect();
    assert!(done.contains(&archive.to_str().unwrap()), "{saved:?}");
    // Restarted: nothing read again.
    let running = Running::start(&config(&[&pattern], FAST), data.path());
    nothing_more(&running.sub).await;
    running.stop().await;
}

/// A gzip file that decompresses to more than `max_decompressed_bytes` is cut there, counted,
/// and still checkpointed as done (a decompression bomb costs bounded work).
#[tokio::test]
async fn gzip_decompression_is_capped() {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    let dir = tempfile::tempdir().unwrap();
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder
        .write_all(numbered("line", 0..1000).as_bytes())
        .unwrap();
    let path = temp_file(dir.path(), "bomb.log.gz", &encoder.finish().unwrap());
    let (lines, metrics) = run_to_end(
        &config(&[&path], "follow = false\nmax_decompressed_bytes = \"70B\""),
        dir.path(),
    )
    .await;
    // 70 bytes: ten 7-byte lines.
    assert_eq!(
        texts(&lines),
        (0..10).map(|n| format!("line {n}")).collect::<Vec<_>>()
    );
    assert_eq!(counter(&metrics, "gzip_capped"), 1);
    let saved = checkpoints(dir.path());
    assert!(saved.files[0].done, "{saved:?}");
}

#[tokio::test]
async fn multiline_events_join_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(
        dir.path(),
        "app.log",
        b"2024-01-01 ok\n2024-01-01 boom\n  at a\n  at b\n2024-01-02 last\n  at c\n",
    );
    let (lines, _) = run_to_end(
        &config(
            &[&path],
            "follow = false\nmultiline = { start_pattern = '^\\d{4}-' }",
        ),
        dir.path(),
    )
    .await;
    assert_eq!(
        lines,
        self::lines(&[
            ("2024-01-01 ok", 0),
            ("2024-01-01 boom\n  at a\n  at b", 14),
            ("2024-01-02 last\n  at c", 44),
        ])
    );

    // Following: the last event is emitted once no continuation came for the timeout.
    let data = tempfile::tempdir().unwrap();
    let running = Running::start(
        &config(
            &[&path],
            &format!(
                "{FAST}\nmultiline = {{ continuation_pattern = '^\\s', timeout = \"100ms\" }}"
            ),
        ),
        data.path(),
    );
    let got = take(&running.sub, 3).await;
    assert_eq!(got[2], ("2024-01-02 last\n  at c".into(), 44));
    // Until then its start is the resume point: the checkpoint did not pass it early.
    append(&path, b"Exception\n\tat x\n");
    assert_eq!(texts(&take(&running.sub, 1).await), ["Exception\n\tat x"]);
    running.stop().await;
}

#[tokio::test]
async fn ignore_older_and_ignore_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let old = temp_file(dir.path(), "old.log", b"stale\n");
    let file = std::fs::File::options().write(true).open(&old).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    drop(file);
    let fresh = temp_file(dir.path(), "fresh.log", b"fresh\n");
    let pattern = dir.path().join("*.log");
    let (lines, _) = run_to_end(
        &config(&[&pattern], "follow = false\nignore_older = \"1h\""),
        data.path(),
    )
    .await;
    assert_eq!(texts(&lines), ["fresh"]);
    // Checkpointed: a second run reads nothing, unless told to ignore checkpoints.
    let (lines, _) = run_to_end(&config(&[&fresh], "follow = false"), data.path()).await;
    assert!(lines.is_empty());
    let (lines, _) = run_to_end(
        &config(&[&fresh], "follow = false\nignore_checkpoints = true"),
        data.path(),
    )
    .await;
    assert_eq!(texts(&lines), ["fresh"]);
}

#[test]
fn the_reader_cuts_lines_and_reports_where_to_resume() {
    use crate::sources::lines::{BatchBuilder, LineEvents, LineFormat};
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(dir.path(), "a.log", b"0123456789\nab");
    let options = reader::LineOptions {
        format: LineFormat::new("\n", 100).unwrap(),
        long_lines: LongLines::Truncate,
        multiline: None,
    };
    let file = std::fs::File::open(&path).unwrap();
    let mut reader = FileReader::plain(file, 0, &options, LineEvents::new(SourceId(1))).unwrap();
    let mut out = BatchBuilder::new();
    let now = std::time::Instant::now();
    let outcome = reader.read(1 << 20, Some(13), now, &mut out).unwrap();
    assert_eq!(
        outcome,
        ReadOutcome {
            read: 13,
            eof: true
        }
    );
    assert_eq!(reader.position(), 13);
    assert_eq!(reader.resume_offset(), 11, "the partial line is read again");
    assert_eq!(reader.pending_bytes(), 2);
    reader.finish(&mut out);
    assert_eq!(reader.resume_offset(), 13);
    let (batches, _) = out.take();
    let events = batches[0].batch.events();
    assert_eq!(events.len(), 2);
    assert_eq!(&events[1].raw().unwrap()[..], b"ab");
    assert_eq!(events[1].meta().origin, Some(11));
}
