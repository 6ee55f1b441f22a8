//! The soak test of issue 14 ("rotation never costs a line"): a day of an operator's life
//! compressed into a minute or two per variant.
//!
//! A writer appends numbered lines to `logs/access.log` at [`RATE`] lines/s; the real Debian
//! `logrotate` rotates it every [`ROTATE_EVERY`], keeping 3, with `create`, `create` +
//! `compress`, `create` + `compress` + `delaycompress` and `copytruncate` + `compress` in turn;
//! sluice tails `logs/access.log*` into a real PostgreSQL (started by the test on a free port)
//! that is stopped for [`OUTAGE`] at a time; and the agent is restarted at random moments from
//! a fixed seed ([`SEED`]). Afterwards every line written is looked for in the table:
//!
//! - with a **disk topic** on the path, restarts are SIGTERM or SIGKILL, and no line is missing;
//! - with **memory topics**, restarts are SIGTERM (a SIGKILLed process reports nothing, and
//!   what held deleted files still had is then lost without a report: the README says so), and
//!   the lines missing are exactly as many as the agents reported lost (`deleted_unread`), with
//!   nothing lost while an agent ran (no bound on held files reached).
//!
//! Duplicates are counted and shown, never an error (delivery is at-least-once).
//!
//! The writer behaves like a server that reopens its log on a signal: logrotate's `postrotate`
//! asks it to reopen and waits until it did, so `compress` never compresses a file the writer
//! still appends to. Around a `copytruncate` rotation the writer holds still (`prerotate` asks
//! it to), because copytruncate loses what is written between its copy and its truncation by
//! design (see `logrotate(8)`) — that would be logrotate's loss, not sluice's. No rotation runs
//! from a stop until the next agent is up: a stopping agent no longer reads its files while it
//! waits for its sinks (up to `shutdown_timeout`, 5 s here, when PostgreSQL is down), and a
//! rotation then can delete lines nobody has read — with these styles in turn, a `compress`
//! rotation replaces the plain `access.log.1` of the rotation before it, 2 s after it was made.
//! The README's rotation section says what that costs.
//!
//! Each variant runs [`DEFAULT_SECS`] seconds (about 75 s with the final drain; the two run in
//! parallel), or `SLUICE_SOAK_SECS` seconds.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::stores::Postgres;
use crate::support::{sluice, write_file};

/// Lines written per second.
const RATE: u64 = 20_000;
/// How often logrotate runs.
const ROTATE_EVERY: Duration = Duration::from_secs(2);
/// How long PostgreSQL is down at a time.
const OUTAGE: Duration = Duration::from_secs(20);
/// When the first outage starts; one starts every `OUTAGE + OUTAGE_GAP` after.
const FIRST_OUTAGE: Duration = Duration::from_secs(8);
const OUTAGE_GAP: Duration = Duration::from_secs(15);
/// The seed of the restart schedule.
const SEED: u64 = 0x5eed_0014;
/// How long each variant writes, unless `SLUICE_SOAK_SECS` says otherwise.
const DEFAULT_SECS: u64 = 60;

/// The rotation styles, in turn.
const STYLES: [&[&str]; 4] = [
    &["create"],
    &["create", "compress"],
    &["create", "compress", "delaycompress"],
    &["copytruncate", "compress"],
];

fn soak_duration() -> Duration {
    let secs = std::env::var("SLUICE_SOAK_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    Duration::from_secs(secs)
}

/// xorshift64*: a fixed sequence for a fixed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Topics {
    Disk,
    Memory,
}

/// What happened when, with the next line number the writer was at: shown when the test fails,
/// to tell which rotation or stop a missing range belongs to.
#[derive(Clone)]
struct Timeline {
    started: Instant,
    written: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<String>>>,
}

impl Timeline {
    fn new() -> Self {
        Timeline {
            started: Instant::now(),
            written: Arc::new(AtomicU64::new(0)),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn note(&self, what: impl std::fmt::Display) {
        let line = format!(
            "{:7.2}s seq {:>9}: {what}",
            self.started.elapsed().as_secs_f64(),
            self.written.load(Ordering::SeqCst)
        );
        self.events.lock().unwrap().push(line);
    }

    fn text(&self) -> String {
        self.events.lock().unwrap().join("\n")
    }
}

/// The files through which logrotate's scripts and the writer talk.
#[derive(Clone)]
struct Flags {
    /// Created by `postrotate`: reopen `access.log`, then delete it.
    reopen: PathBuf,
    /// Created by `prerotate` before a copytruncate: hold still, say so with `held`.
    hold: PathBuf,
    held: PathBuf,
}

impl Flags {
    fn new(dir: &Path) -> Self {
        Flags {
            reopen: dir.join("reopen"),
            hold: dir.join("hold"),
            held: dir.join("held"),
        }
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Writes lines at [`RATE`] until `stop`; returns how many.
fn start_writer(
    logs: PathBuf,
    flags: Flags,
    stop: Arc<AtomicBool>,
    timeline: Timeline,
) -> JoinHandle<u64> {
    thread::spawn(move || {
        let path = logs.join("access.log");
        let mut file = append(&path);
        let started = Instant::now();
        let mut next = 0u64;
        let mut text = String::new();
        while !stop.load(Ordering::SeqCst) {
            if flags.hold.exists() {
                File::create(&flags.held).unwrap();
                while flags.hold.exists() && !stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(2));
                }
                let _ = fs::remove_file(&flags.held);
            }
            if flags.reopen.exists() {
                file = append(&path);
                let _ = fs::remove_file(&flags.reopen);
            }
            let due = (started.elapsed().as_micros() as u64 * RATE / 1_000_000).max(next);
            text.clear();
            for seq in next..due {
                text.push_str(&format!(
                    "seq {seq:010} 203.0.113.{} GET /soak/{} HTTP/1.1 200 {}\n",
                    seq % 251,
                    seq % 977,
                    seq % 40_000
                ));
            }
            file.write_all(text.as_bytes()).unwrap();
            next = due;
            timeline.written.store(next, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(5));
        }
        next
    })
}

/// Writes the logrotate config of each style; returns their paths.
fn logrotate_configs(dir: &Path, logs: &Path, flags: &Flags) -> Vec<PathBuf> {
    let wait = |flag: &Path, until_gone: bool| {
        let test = if until_gone { "-e" } else { "! -e" };
        format!(
            "i=0; while [ {test} {} ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done",
            flag.display()
        )
    };
    STYLES
        .iter()
        .enumerate()
        .map(|(index, options)| {
            let mut text = format!(
                "{} {{\n    rotate 3\n    missingok\n",
                logs.join("access.log").display()
            );
            for option in *options {
                text.push_str(&format!("    {option}\n"));
            }
            if options.contains(&"copytruncate") {
                text.push_str(&format!(
                    "    prerotate\n        touch {}; {}\n    endscript\n",
                    flags.hold.display(),
                    wait(&flags.held, false)
                ));
            }
            text.push_str(&format!(
                "    postrotate\n        rm -f {}; touch {}; {}\n    endscript\n}}\n",
                flags.hold.display(),
                flags.reopen.display(),
                wait(&flags.reopen, true)
            ));
            let path = dir.join(format!("logrotate-{index}.conf"));
            fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// Runs logrotate every [`ROTATE_EVERY`] with the styles in turn while `running`, and not while
/// `paused`; returns how many rotations ran.
fn start_rotator(
    dir: PathBuf,
    configs: Vec<PathBuf>,
    running: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    timeline: Timeline,
) -> JoinHandle<usize> {
    thread::spawn(move || {
        let program = if Path::new("/usr/sbin/logrotate").exists() {
            "/usr/sbin/logrotate"
        } else {
            "logrotate"
        };
        let mut rotations = 0;
        while running.load(Ordering::SeqCst) {
            thread::sleep(ROTATE_EVERY);
            while paused.load(Ordering::SeqCst) && running.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
            let config = &configs[rotations % configs.len()];
            timeline.note(format_args!(
                "logrotate {:?}",
                STYLES[rotations % STYLES.len()]
            ));
            let output = std::process::Command::new(program)
                .arg("-f")
                .arg("-s")
                .arg(dir.join("logrotate.state"))
                .arg(config)
                .output()
                .expect("logrotate must be installed (Debian: apt-get install -y logrotate)");
            assert!(
                output.status.success(),
                "logrotate failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            rotations += 1;
        }
        rotations
    })
}

/// A running agent and the thread collecting its stderr.
struct Agent {
    child: Child,
    stderr: JoinHandle<String>,
}

fn start_agent(dir: &Path) -> Agent {
    let mut child = sluice(dir)
        .env(
            "SLUICE_LOG",
            "warn,sluice::topology::status=info,sluice::sources::file::source=info",
        )
        .args(["run", "--quiet", "-c", "soak.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice");
    let mut pipe = child.stderr.take().unwrap();
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    Agent { child, stderr }
}

impl Agent {
    /// Stops it with `signal`; returns its stderr.
    fn stop(mut self, signal: libc::c_int) -> String {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let started = Instant::now();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("sluice did not stop within 60 s");
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.stderr.join().unwrap()
    }
}

/// Keeps PostgreSQL up, but down for [`OUTAGE`] at a time, until `running` is false; then up.
fn start_outages(
    mut server: Postgres,
    running: Arc<AtomicBool>,
    timeline: Timeline,
) -> JoinHandle<Postgres> {
    thread::spawn(move || {
        let started = Instant::now();
        let mut next_outage = FIRST_OUTAGE;
        let sleep_while_running = |until: Duration| {
            while started.elapsed() < until && running.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
            }
        };
        while running.load(Ordering::SeqCst) {
            sleep_while_running(next_outage);
            if !running.load(Ordering::SeqCst) {
                break;
            }
            timeline.note("PostgreSQL down");
            server.kill();
            sleep_while_running(next_outage + OUTAGE);
            server.restart();
            timeline.note("PostgreSQL up");
            next_outage += OUTAGE + OUTAGE_GAP;
        }
        server
    })
}

/// What each agent reported lost: (lines in deleted files at a stop, lines let go while
/// running).
fn reported(stderr: &str) -> (u64, u64) {
    let lines_of = |line: &str| -> u64 {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix("unread_lines="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let at_stop = stderr
        .lines()
        .filter(|line| line.contains("Stopping with unread lines in a deleted file"))
        .map(lines_of)
        .sum();
    let running = stderr
        .lines()
        .filter(|line| line.contains("Letting go of a file with unread lines"))
        .map(lines_of)
        .sum();
    (at_stop, running)
}

async fn delivered(server: &Postgres) -> HashMap<u64, u32> {
    let client = server.client().await;
    let rows = client
        .query("SELECT substr(message, 5, 10)::int8 FROM lines", &[])
        .await
        .unwrap();
    let mut counts = HashMap::new();
    for row in rows {
        *counts.entry(row.get::<_, i64>(0) as u64).or_insert(0) += 1;
    }
    counts
}

async fn distinct_delivered(server: &Postgres) -> u64 {
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT count(DISTINCT substr(message, 5, 10)) FROM lines",
            &[],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) as u64
}

fn soak(topics: Topics) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = Postgres::start();
    runtime.block_on(async {
        server
            .client()
            .await
            .batch_execute("CREATE TABLE lines (message text)")
            .await
            .unwrap();
    });
    let dir = TempDir::new().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let topic = match topics {
        Topics::Disk => "[topics.raw]\nstorage = \"disk\"\n",
        Topics::Memory => "",
    };
    write_file(
        dir.path(),
        "soak.toml",
        &format!(
            r#"data_dir = "state"
shutdown_timeout = "5s"

[sources.access]
type = "file"
include = ["logs/access.log*"]
topic = "raw"

{topic}
[sinks.pg]
type = "postgres"
input = "raw"
url = "{}"
table = "lines"
"#,
            server.url()
        ),
    );
    let flags = Flags::new(dir.path());
    let configs = logrotate_configs(dir.path(), &logs, &flags);
    let timeline = Timeline::new();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = start_writer(logs.clone(), flags, stop_writer.clone(), timeline.clone());
    let running = Arc::new(AtomicBool::new(true));
    let rotation_paused = Arc::new(AtomicBool::new(false));
    let rotator = start_rotator(
        dir.path().to_path_buf(),
        configs,
        running.clone(),
        rotation_paused.clone(),
        timeline.clone(),
    );
    let mut agent = start_agent(dir.path());
    let outages = start_outages(server, running.clone(), timeline.clone());

    let mut rng = Rng(SEED);
    let mut stderrs = Vec::new();
    let mut kills = 0;
    let duration = soak_duration();
    let started = Instant::now();
    loop {
        let next = started.elapsed() + Duration::from_millis(rng.between(3_000, 10_000));
        if next >= duration {
            break;
        }
        thread::sleep(next.saturating_sub(started.elapsed()));
        let signal = match topics {
            Topics::Disk if rng.next().is_multiple_of(2) => libc::SIGKILL,
            _ => libc::SIGTERM,
        };
        kills += usize::from(signal == libc::SIGKILL);
        rotation_paused.store(true, Ordering::SeqCst);
        timeline.note(if signal == libc::SIGKILL {
            "SIGKILL"
        } else {
            "SIGTERM"
        });
        stderrs.push(agent.stop(signal));
        timeline.note("stopped; starting again");
        agent = start_agent(dir.path());
        // Give it time to open what is there before rotations go on.
        thread::sleep(Duration::from_millis(300));
        rotation_paused.store(false, Ordering::SeqCst);
    }
    thread::sleep(duration.saturating_sub(started.elapsed()));
    stop_writer.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    running.store(false, Ordering::SeqCst);
    let rotations = rotator.join().unwrap();
    let server = outages.join().unwrap();

    // Let the last agent deliver what it can: until every line arrived, or nothing more did
    // for 20 s.
    let mut last = (0, Instant::now());
    loop {
        let now = runtime.block_on(distinct_delivered(&server));
        if now >= written || last.1.elapsed() > Duration::from_secs(20) {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
        thread::sleep(Duration::from_millis(500));
    }
    stderrs.push(agent.stop(libc::SIGTERM));
    let counts = runtime.block_on(delivered(&server));
    let missing: Vec<u64> = (0..written)
        .filter(|seq| !counts.contains_key(seq))
        .collect();
    let twice: u64 = counts.values().map(|count| u64::from(*count - 1)).sum();
    let (lost_at_stops, lost_running) = stderrs
        .iter()
        .map(|stderr| reported(stderr))
        .fold((0, 0), |sum, run| (sum.0 + run.0, sum.1 + run.1));
    let ranges = missing_ranges(&missing);
    let summary = format!(
        "{topics:?}: {written} lines written, {} restarts ({kills} SIGKILL), {rotations} \
         rotations; {} missing {ranges:?}, {twice} duplicates; reported lost: {lost_at_stops} at \
         stops, {lost_running} while running",
        stderrs.len() - 1,
        missing.len()
    );
    eprintln!("{summary}");
    let logs_of_runs = format!(
        "{}\n\ntimeline:\n{}",
        stderrs.join("\n----- next run -----\n"),
        timeline.text()
    );
    assert!(written >= duration.as_secs() * RATE * 9 / 10, "{summary}");
    assert_eq!(lost_running, 0, "{summary}\n{logs_of_runs}");
    match topics {
        Topics::Disk => assert!(
            missing.is_empty() && lost_at_stops == 0,
            "{summary}\n{logs_of_runs}"
        ),
        Topics::Memory => assert_eq!(
            missing.len() as u64,
            lost_at_stops,
            "{summary}\n{logs_of_runs}"
        ),
    }
}

/// The missing sequence numbers as ranges, the first few.
fn missing_ranges(missing: &[u64]) -> Vec<std::ops::Range<u64>> {
    let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
    for &seq in missing {
        match ranges.last_mut() {
            Some(range) if range.end == seq => range.end += 1,
            _ => ranges.push(seq..seq + 1),
        }
    }
    ranges.truncate(10);
    ranges
}

#[test]
fn soak_with_a_disk_topic_loses_no_line() {
    soak(Topics::Disk);
}

#[test]
fn soak_with_memory_topics_loses_only_what_it_reports() {
    soak(Topics::Memory);
}
