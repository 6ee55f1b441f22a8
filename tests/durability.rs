//! Disk topics under crashes, damage and large backlogs, through the real `sluice` binary.
//!
//! - Crash loops: a child `sluice` under continuous load — a file being appended to, or a client
//!   posting to an `http_server` — is `kill -9`ed at random moments (a fixed seed) and restarted,
//!   with disk topics between source, pipeline and sink. At the end nothing written to the file
//!   and nothing answered 2xx is missing from the sink; duplicates are counted, printed and
//!   bounded.
//! - Damage: bytes flipped in the middle of a segment and the tail of the last segment cut off.
//!   The agent starts anyway, quarantines and counts, and delivers everything else.
//! - Memory: a backlog ten times the cache is read through with the agent's RSS sampled.
//!
//! Run with `--nocapture` to see the figures.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{curl, free_port, sluice, wait_until, wait_with_timeout, write_file};

/// Kills per crash loop.
const KILLS: usize = 20;
/// Each run lives this long (ms, uniformly drawn) before its `kill -9`.
const LIFETIME_MS: std::ops::RangeInclusive<u64> = 100..=700;
/// The crash loops' seed: the same kill moments every run.
const SEED: u8 = 11;
/// How long a final run may take to deliver everything.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Running and killing the agent

/// Starts `sluice run -c <config>` in `dir`, its stderr appended to `<dir>/sluice.log` (every
/// run of a test in one file, shown when something fails).
fn spawn(dir: &Path, config: &str) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sluice.log"))
        .unwrap();
    sluice(dir)
        .args(["run", "-c", config])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn agent_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sluice.log")).unwrap_or_default()
}

/// Sends SIGTERM to `child` and waits (a minute at most) for it to drain and exit.
fn terminate(child: Child) -> ExitStatus {
    // SAFETY: signalling our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    wait_with_timeout(child, Duration::from_secs(60)).status
}

/// Starts the agent and `kill -9`s it `KILLS` times, each run living a random
/// [`LIFETIME_MS`]. A run that exits by itself (a crash loop, a refused start) fails the test.
/// `after_kill` runs after each kill, with the kill's number. Returns the lifetimes (ms).
fn kill_repeatedly(dir: &Path, config: &str, mut after_kill: impl FnMut(usize)) -> Vec<u64> {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[SEED; 32]);
    let mut lifetimes = Vec::new();
    for kill in 1..=KILLS {
        let mut child = spawn(dir, config);
        let lifetime = rng.random_range(LIFETIME_MS);
        lifetimes.push(lifetime);
        std::thread::sleep(Duration::from_millis(lifetime));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "run {kill} exited by itself ({status}):\n{}",
                agent_log(dir)
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        after_kill(kill);
    }
    lifetimes
}

/// Starts the agent for the last time, waits until `done` says the sink has everything, then
/// stops it with SIGTERM, which must succeed.
fn drain(dir: &Path, config: &str, mut done: impl FnMut() -> bool) {
    let child = spawn(dir, config);
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DRAIN_TIMEOUT,
            "the last run did not deliver everything within {DRAIN_TIMEOUT:?}:\n{}",
            agent_log(dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = terminate(child);
    assert!(status.success(), "{status}:\n{}", agent_log(dir));
}

// ---------------------------------------------------------------------------------------------
// What the sink wrote

/// The numbers a file sink wrote (an event's `n`, or the number in its raw `line <n> …`), with
/// how often each came.
#[derive(Debug, Default)]
struct Delivered {
    counts: BTreeMap<u64, u32>,
    /// Lines that are not whole JSON objects: a batch cut short by a kill (never acknowledged,
    /// so delivered again in full).
    torn_lines: usize,
}

impl Delivered {
    fn read(path: &Path) -> Delivered {
        let mut delivered = Delivered::default();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            match serde_json::from_str::<Value>(line).ok().and_then(|event| {
                event["n"].as_u64().or_else(|| {
                    let message = event["message"].as_str()?;
                    message
                        .strip_prefix("line ")?
                        .split(' ')
                        .next()?
                        .parse()
                        .ok()
                })
            }) {
                Some(n) => *delivered.counts.entry(n).or_insert(0) += 1,
                None => delivered.torn_lines += 1,
            }
        }
        delivered
    }

    fn has(&self, n: u64) -> bool {
        self.counts.contains_key(&n)
    }

    /// Deliveries beyond the first of each number.
    fn duplicates(&self) -> u64 {
        self.counts
            .values()
            .map(|&count| u64::from(count) - 1)
            .sum()
    }

    /// The numbers in `expected` that are missing (at most ten, for the message).
    fn missing(&self, expected: impl IntoIterator<Item = u64>) -> (usize, Vec<u64>) {
        let missing: Vec<u64> = expected.into_iter().filter(|n| !self.has(*n)).collect();
        (missing.len(), missing.into_iter().take(10).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// 1. file → disk topic → pipeline → disk topic → file sink, kill -9 twenty times

/// Lines per second the writer aims at.
const LINES_PER_SECOND: u64 = 15_000;

/// Appends `line <n> <padding>` lines to `path` at about [`LINES_PER_SECOND`] until stopped;
/// returns how many it wrote (numbered from 0).
struct LineWriter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl LineWriter {
    fn start(path: PathBuf) -> LineWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                let padding = "x".repeat(80);
                let started = Instant::now();
                let mut written = 0;
                while !stop.load(Ordering::Relaxed) {
                    let due = started.elapsed().as_millis() as u64 * LINES_PER_SECOND / 1000;
                    let mut chunk = String::new();
                    for n in written..due {
                        chunk.push_str(&format!("line {n} {padding}\n"));
                    }
                    file.write_all(chunk.as_bytes()).unwrap();
                    written = written.max(due);
                    std::thread::sleep(Duration::from_millis(5));
                }
                written
            }
        });
        LineWriter { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// `file` (followed) → disk topic `raw` → a pipeline keeping the line's number → disk topic
/// `numbers` → a file sink, both topics with `fsync`.
fn file_pipeline_config(dir: &Path, fsync: &str) -> String {
    let rest = format!(
        r#"
[topics.numbers]
storage = "disk"
fsync = "{fsync}"

[pipelines.parse]
input = "raw"
output = "numbers"
steps = [
  {{ type = "parse", format = "regex", pattern = '^line (?P<n>\d+) ', types = {{ n = "int" }}, drop_raw = true }},
]

[sinks.out]
type = "file"
input = "numbers"
path = "{}"
"#,
        dir.join("out.ndjson").display(),
    );
    backlog_config(dir, true, &format!(r#"fsync = "{fsync}""#), &rest)
}

/// The crash loop of the file path with `fsync`; checks that every line arrived and that
/// duplicates stay within a few seconds of traffic per kill.
fn file_crash_loop(fsync: &str) {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    write_file(dir, "agent.toml", &file_pipeline_config(dir, fsync));
    let out = dir.join("out.ndjson");
    let writer = LineWriter::start(dir.join("app.log"));
    let started = Instant::now();
    let mut progress = Vec::new();
    // The sink's output size after each kill (cheap: parsing it would hold the loop up).
    let lifetimes = kill_repeatedly(dir, "agent.toml", |_| {
        progress.push(std::fs::metadata(&out).map_or(0, |meta| meta.len() >> 10));
    });
    let written = writer.stop();
    let load_seconds = started.elapsed().as_secs_f64();
    drain(dir, "agent.toml", || {
        Delivered::read(&out).counts.len() as u64 >= written
    });

    let delivered = Delivered::read(&out);
    let (missing, examples) = delivered.missing(0..written);
    let duplicates = delivered.duplicates();
    println!(
        "file crash loop, fsync = {fsync}: {written} lines written in {load_seconds:.1}s \
         ({:.0}/s) across {KILLS} kills after {lifetimes:?} ms; KiB in the sink after each \
         kill: {progress:?}; after draining: {} distinct, {missing} missing, {duplicates} duplicates \
         ({:.2} per line written, {} per kill), {} torn lines",
        written as f64 / load_seconds,
        delivered.counts.len(),
        duplicates as f64 / written as f64,
        duplicates / KILLS as u64,
        delivered.torn_lines,
    );
    assert_eq!(missing, 0, "lines lost, e.g. {examples:?}");
    assert!(
        delivered.counts.keys().all(|n| *n < written),
        "the sink has lines nobody wrote"
    );
    // A kill costs re-reading from the source's last checkpoint (at most 100 ms old here) and
    // processing again from each subscription's last persisted offset (at most 100 ms old),
    // plus the batches in flight (a sink's batch waits up to a second to fill): bounded by three
    // seconds of traffic per kill.
    let bound = KILLS as u64 * 3 * LINES_PER_SECOND;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than three seconds of traffic per kill ({bound})"
    );
    assert!(
        progress.iter().any(|kib| *kib > 0),
        "nothing was delivered before the last run: the kills came before any work"
    );
}

#[test]
fn a_file_pipeline_killed_twenty_times_loses_no_line() {
    file_crash_loop("interval");
}

#[test]
fn a_file_pipeline_killed_twenty_times_loses_no_line_with_fsync_always() {
    file_crash_loop("always");
}

// ---------------------------------------------------------------------------------------------
// 2. http_server → disk topic → file sink, kill -9 twenty times

/// Events per POST.
const EVENTS_PER_POST: u64 = 100;

/// What the client's POSTs got.
#[derive(Debug, Default)]
struct Posts {
    /// The first numbers of the batches answered 2xx.
    accepted: Vec<u64>,
    /// The first numbers of the batches that got another answer or none.
    failed: Vec<u64>,
}

/// POSTs `body` to `127.0.0.1:port` and returns the answer's status code, if one came.
fn post(port: u16, body: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

/// Posts numbered batches to `port` until stopped (a few milliseconds apart while nothing
/// listens).
fn post_until(port: u16, stop: &AtomicBool, posted: &AtomicU64) -> Posts {
    let mut posts = Posts::default();
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        let body: String = (next..next + EVENTS_PER_POST)
            .map(|n| format!("{{\"n\":{n},\"pad\":\"{:0>60}\"}}\n", n))
            .collect();
        match post(port, &body) {
            Some(200..=299) => posts.accepted.push(next),
            _ => {
                posts.failed.push(next);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        next += EVENTS_PER_POST;
        posted.store(next, Ordering::Relaxed);
    }
    posts
}

#[test]
fn an_http_server_killed_twenty_times_loses_no_accepted_event() {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    let port = free_port();
    write_file(
        dir,
        "agent.toml",
        &format!(
            r#"
data_dir = "{data}"

[topics.events]
storage = "disk"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
topic = "events"

[sinks.out]
type = "file"
input = "events"
path = "{out}"
"#,
            data = dir.join("data").display(),
            out = dir.join("out.ndjson").display(),
        ),
    );
    let out = dir.join("out.ndjson");
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let client = std::thread::spawn({
        let (stop, posted) = (stop.clone(), posted.clone());
        move || post_until(port, &stop, &posted)
    });
    let started = Instant::now();
    let _lifetimes = kill_repeatedly(dir, "agent.toml", |_| {});
    stop.store(true, Ordering::Relaxed);
    let load_seconds = started.elapsed().as_secs_f64();
    let posts = client.join().unwrap();
    let accepted: Vec<u64> = posts
        .accepted
        .iter()
        .flat_map(|first| *first..first + EVENTS_PER_POST)
        .collect();
    drain(dir, "agent.toml", || {
        let delivered = Delivered::read(&out);
        accepted.iter().all(|n| delivered.has(*n))
    });

    let delivered = Delivered::read(&out);
    let (missing, examples) = delivered.missing(accepted.iter().copied());
    let failed_but_delivered = posts
        .failed
        .iter()
        .filter(|first| delivered.has(**first))
        .count();
    println!(
        "http crash loop: {} posts of {EVENTS_PER_POST} events in {load_seconds:.1}s across \
         {KILLS} kills, {} answered 2xx, {} failed ({failed_but_delivered} of those delivered \
         anyway); {missing} accepted events missing, {} duplicates, {} torn lines",
        posts.accepted.len() + posts.failed.len(),
        posts.accepted.len(),
        posts.failed.len(),
        delivered.duplicates(),
        delivered.torn_lines,
    );
    assert!(
        posts.accepted.len() >= KILLS,
        "too few posts were accepted for the test to mean anything: {posts:?}"
    );
    assert_eq!(missing, 0, "accepted events lost, e.g. {examples:?}");
    assert!(
        delivered
            .counts
            .keys()
            .all(|n| *n < posted.load(Ordering::Relaxed)),
        "the sink has events nobody posted"
    );
    // A POST is stored once; only the sink's subscription delivers again after a kill, from its
    // offset persisted at most 100 ms before, plus the batches it had read (a batch waits up to
    // a second to fill): bounded by three seconds of accepted traffic per kill.
    let per_second = accepted.len() as f64 / load_seconds;
    let bound = (KILLS as f64 * 3.0 * per_second) as u64;
    assert!(
        delivered.duplicates() <= bound,
        "{} duplicates, more than three seconds of traffic per kill ({bound})",
        delivered.duplicates(),
    );
}

// ---------------------------------------------------------------------------------------------
// Reading a disk topic's files, as the tests damage them

/// The segment files (`*.log`) of the disk topic in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    segments.sort();
    segments
}

/// A record's place in its segment and the offsets it holds.
#[derive(Clone, Copy, Debug)]
struct RecordSpan {
    position: u64,
    len: u64,
    first_offset: u64,
    events: u64,
}

/// The records of a segment file, read by their framing (agent/topic/disk/record.rs:
/// `len:u32le crc:u32le version:u8 first_offset:u64le events:u32le …`, `len` counting from the
/// version byte).
fn records(segment: &Path) -> Vec<RecordSpan> {
    let bytes = std::fs::read(segment).unwrap();
    let mut records = Vec::new();
    let mut position = 0;
    while position + 21 <= bytes.len() {
        let field = |at: usize, width: usize| {
            let mut value = [0u8; 8];
            value[..width].copy_from_slice(&bytes[position + at..position + at + width]);
            u64::from_le_bytes(value)
        };
        let len = 8 + field(0, 4);
        records.push(RecordSpan {
            position: position as u64,
            len,
            first_offset: field(9, 8),
            events: field(17, 4),
        });
        position += len as usize;
    }
    assert_eq!(
        position,
        bytes.len(),
        "{} ends in a whole record",
        segment.display()
    );
    records
}

/// The first offset a segment holds, from its name.
fn segment_start(segment: &Path) -> u64 {
    segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Writes `count` numbered lines of about `line_bytes` to `path` (numbered from 0).
fn write_numbered_lines(path: &Path, count: u64, line_bytes: usize) {
    let mut file = std::io::BufWriter::new(File::create(path).unwrap());
    for n in 0..count {
        let head = format!("line {n} ");
        writeln!(
            file,
            "{head}{:x<1$}",
            "",
            line_bytes.saturating_sub(head.len() + 1)
        )
        .unwrap();
    }
    file.flush().unwrap();
}

/// The `GET /topics` entry of `topic` from the agent's API on `port`.
fn topic_stats(port: u16, topic: &str) -> Option<Value> {
    let (status, body) = curl(&[&format!("http://127.0.0.1:{port}/topics")]);
    if status != 200 {
        return None;
    }
    let topics: Value = serde_json::from_str(&body).ok()?;
    topics
        .as_array()?
        .iter()
        .find(|entry| entry["name"] == topic)
        .cloned()
}

/// Whether subscription `name` of a topic (as [`topic_stats`] gives it) acknowledged up to the
/// topic's end.
fn caught_up(stats: &Value, name: &str) -> bool {
    stats["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|sub| sub["name"] == name && sub["committed_offset"] == stats["end_offset"])
}

/// A config with a file source (`follow`) filling the disk topic `raw` with `topic_settings`;
/// `rest` is appended (a sink, `[api]`). The source checkpoints every 100 ms: a run killed
/// before its first checkpoint (1 s by default) re-reads everything since the last one, so
/// runs shorter than the interval would re-read an ever longer tail.
fn backlog_config(dir: &Path, follow: bool, topic_settings: &str, rest: &str) -> String {
    format!(
        r#"
data_dir = "{data}"

[topics.raw]
storage = "disk"
{topic_settings}

[sources.app]
type = "file"
include = ["{log}"]
read_from = "beginning"
follow = {follow}
topic = "raw"
checkpoint_interval = "100ms"
{rest}
"#,
        data = dir.join("data").display(),
        log = dir.join("app.log").display(),
    )
}

/// The sink of the runs that fill a topic (a config needs one); the next run reads the topic with
/// a new subscription from its earliest event.
const FILL_SINK: &str = r#"
[sinks.fill]
type = "blackhole"
input = "raw"
"#;

// ---------------------------------------------------------------------------------------------
// 3. Damage: a corrupt record in the middle, a torn tail at the end

#[test]
fn a_damaged_disk_topic_is_quarantined_counted_and_the_rest_delivered() {
    const LINES: u64 = 30_000;
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    let topic_settings = r#"segment_bytes = "64KiB""#;
    // Short lines, so that a segment holds a few records (batches of up to 1024 lines).
    write_numbered_lines(&dir.join("app.log"), LINES, 16);
    // First run: the file goes into the topic, read by a sink that is gone in the second run.
    write_file(
        dir,
        "fill.toml",
        &backlog_config(dir, false, topic_settings, FILL_SINK),
    );
    crate::support::run_ok(dir, "fill.toml");

    let topic_dir = dir.join("data/topics/raw");
    let segments = segments(&topic_dir);
    assert!(segments.len() >= 3, "too few segments: {segments:?}");
    // Flip bytes in the middle of a record in the middle of a middle segment: that record and
    // the rest of its segment are quarantined.
    let victim = &segments[segments.len() / 2];
    let victim_records = records(victim);
    let hit = victim_records[victim_records.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let middle = (hit.position + hit.len / 2) as usize;
    for byte in &mut bytes[middle..middle + 4] {
        *byte ^= 0xA5;
    }
    std::fs::write(victim, &bytes).unwrap();
    let next_start = segment_start(&segments[segments.len() / 2 + 1]);
    let quarantined = hit.first_offset..next_start;
    let quarantined_bytes = bytes.len() as u64 - hit.position;
    // Cut the last record of the last segment short: a torn tail.
    let last = segments.last().unwrap();
    let last_record = *records(last).last().unwrap();
    assert_eq!(last_record.first_offset + last_record.events, LINES);
    let file = OpenOptions::new().write(true).open(last).unwrap();
    file.set_len(last_record.position + last_record.len - 7)
        .unwrap();
    drop(file);
    let torn = last_record.first_offset..LINES;

    // Second run: a sink reads the topic from its earliest event.
    let port = free_port();
    let out = dir.join("out.ndjson");
    let rest = format!(
        r#"
[api]
address = "127.0.0.1:{port}"

[sinks.out]
type = "file"
input = "raw"
start_at = "earliest"
path = "{}"
"#,
        out.display()
    );
    write_file(
        dir,
        "read.toml",
        &backlog_config(dir, true, topic_settings, &rest),
    );
    let child = spawn(dir, "read.toml");
    let mut stats = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            stats = topic_stats(port, "raw");
            stats.as_ref().is_some_and(|stats| caught_up(stats, "out"))
        }),
        "the sink did not catch up: {stats:?}\n{}",
        agent_log(dir)
    );
    let stats = stats.unwrap();
    let status = terminate(child);
    assert!(status.success(), "{status}:\n{}", agent_log(dir));

    let delivered = Delivered::read(&out);
    let expected: Vec<u64> = (0..LINES)
        .filter(|n| !quarantined.contains(n) && !torn.contains(n))
        .collect();
    let counters = &stats["disk"]["log"];
    let lost = stats["subscriptions"][0]["counters"]["lost_events"].clone();
    println!(
        "damage: {} segments; quarantined offsets {quarantined:?} ({quarantined_bytes} bytes), \
         torn tail {torn:?} ({} bytes); delivered {} of {LINES}; counters {counters}, \
         lost_events {lost}",
        segments.len(),
        last_record.len - 7,
        delivered.counts.len(),
    );
    let (missing, examples) = delivered.missing(expected.iter().copied());
    assert_eq!(
        missing, 0,
        "undamaged events not delivered, e.g. {examples:?}"
    );
    assert_eq!(
        delivered.counts.len(),
        expected.len(),
        "nothing from the damaged ranges is delivered"
    );
    assert_eq!(delivered.duplicates(), 0);
    assert_eq!(counters["corrupt_records"], 1, "{counters}");
    assert_eq!(
        counters["quarantined_bytes"], quarantined_bytes,
        "{counters}"
    );
    assert_eq!(counters["torn_tails"], 1, "{counters}");
    assert_eq!(counters["torn_bytes"], last_record.len - 7, "{counters}");
    assert_eq!(stats["subscriptions"][0]["name"], "out");
    assert_eq!(lost, quarantined.end - quarantined.start, "lost_events");
    let quarantine: Vec<_> = std::fs::read_dir(topic_dir.join("quarantine"))
        .unwrap()
        .collect();
    assert_eq!(
        quarantine.len(),
        1,
        "one file in quarantine/: {quarantine:?}"
    );
    let log = agent_log(dir).to_lowercase();
    assert!(
        log.contains("quarantin"),
        "the log says what was quarantined:\n{log}"
    );
    assert!(
        log.contains("torn"),
        "the log says a torn tail was cut:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Memory: a backlog ten times the cache

/// The `cache_bytes` of the RSS test (each of the two caches).
const CACHE_MIB: u64 = 4;
/// The most the writer's queue holds before producers wait (`DiskSettings::max_pending_bytes`).
const WRITER_QUEUE_MIB: u64 = 64;
/// The agent's own memory with this config, whatever the topic holds: measured with the debug
/// binary the tests run, 21 MiB idle and 30-33 MiB with events flowing through an empty topic
/// (tokio's threads, the file source's read buffers, the sink's batches); rounded up.
const BASELINE_MIB: u64 = 40;

/// The resident set of process `pid`, in KiB (`VmRSS`), while it runs.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples `child`'s RSS every 10 ms until `done` (asked every 250 ms) holds or the child
/// exits; returns the peak in MiB.
fn peak_rss_mib(child: &mut Child, mut done: impl FnMut() -> bool) -> f64 {
    let mut peak = 0;
    let mut last_check = Instant::now();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if let Some(rss) = rss_kib(child.id()) {
            peak = peak.max(rss);
        }
        if last_check.elapsed() > Duration::from_millis(250) {
            if done() {
                break;
            }
            last_check = Instant::now();
        }
        assert!(started.elapsed() < DRAIN_TIMEOUT, "the run took too long");
        std::thread::sleep(Duration::from_millis(10));
    }
    peak as f64 / 1024.0
}

#[test]
fn reading_a_backlog_ten_times_the_cache_keeps_rss_bounded() {
    const LINES: u64 = 500_000;
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    let topic_settings = format!(r#"cache_bytes = "{CACHE_MIB}MiB""#);
    write_numbered_lines(&dir.join("app.log"), LINES, 200);
    let bound = (BASELINE_MIB + 2 * CACHE_MIB + WRITER_QUEUE_MIB) as f64;

    // First run: ~100 MiB into the topic (read as it comes by a sink the second run drops).
    write_file(
        dir,
        "fill.toml",
        &backlog_config(dir, false, &topic_settings, FILL_SINK),
    );
    let mut child = spawn(dir, "fill.toml");
    let write_peak = peak_rss_mib(&mut child, || false);
    assert!(child.wait().unwrap().success(), "{}", agent_log(dir));
    let disk_bytes: u64 = segments(&dir.join("data/topics/raw"))
        .iter()
        .map(|segment| segment.metadata().unwrap().len())
        .sum();
    let backlog_mib = disk_bytes as f64 / (1 << 20) as f64;
    assert!(
        backlog_mib >= (10 * 2 * CACHE_MIB) as f64,
        "the backlog ({backlog_mib:.0} MiB) is not ten times both caches"
    );

    // Second run: a sink reads all of it from the start.
    let port = free_port();
    let rest = format!(
        r#"
[api]
address = "127.0.0.1:{port}"

[sinks.out]
type = "blackhole"
input = "raw"
start_at = "earliest"
"#
    );
    write_file(
        dir,
        "read.toml",
        &backlog_config(dir, true, &topic_settings, &rest),
    );
    let mut child = spawn(dir, "read.toml");
    let mut stats = None;
    let read_peak = peak_rss_mib(&mut child, || {
        stats = topic_stats(port, "raw");
        stats.as_ref().is_some_and(|stats| caught_up(stats, "out"))
    });
    let stats = stats.expect("the API answered");
    assert!(
        caught_up(&stats, "out"),
        "the sink read everything: {stats}"
    );
    assert_eq!(stats["end_offset"], LINES);
    let status = terminate(child);
    assert!(status.success(), "{status}:\n{}", agent_log(dir));
    println!(
        "rss: backlog {backlog_mib:.0} MiB on disk, caches 2 × {CACHE_MIB} MiB; peak RSS \
         {write_peak:.1} MiB while writing it, {read_peak:.1} MiB while reading it through \
         (bound {bound} MiB = {BASELINE_MIB} baseline + caches + {WRITER_QUEUE_MIB} writer \
         queue); disk reads {}, cache hits {}",
        stats["disk"]["log"]["disk_reads"], stats["disk"]["log"]["cache_hits"],
    );
    assert!(
        read_peak <= bound,
        "RSS {read_peak:.1} MiB while reading, bound {bound} MiB"
    );
    assert!(
        write_peak <= bound,
        "RSS {write_peak:.1} MiB while writing, bound {bound} MiB"
    );
}
