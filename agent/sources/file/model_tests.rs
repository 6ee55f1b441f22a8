//! Model-based test of the tailer: random sequences of writes, rename rotations, copytruncate
//! rotations, truncations, deletions, reads and restarts on real files, checked against a model
//! of which lines exist (in the style of Vector's `file_source` model tests).
//!
//! Every line written carries a unique number. The property: every line is read exactly once,
//! except lines the tailer never had a chance to see (a file deleted or emptied before any read
//! while it held them), which may be missing but are never read twice. Restarts resume from
//! `checkpoints()` with every mark acknowledged, so they must not duplicate anything either.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sluice_pipelines::SourceId;

use super::config::FileConfig;
use super::tailer::Tailer;
use crate::metrics::{ComponentMetrics, Metrics, Role};

#[derive(Clone, Debug)]
enum Op {
    /// Append this many lines to `access.log` (creating it if needed).
    Write(usize),
    /// logrotate `create`: drop `.2`, `.1` → `.2`, `access.log` → `.1`, new empty `access.log`.
    Rotate,
    /// logrotate `copytruncate`: drop `.2`, `.1` → `.2`, copy `access.log` to `.1`, empty it.
    CopyTruncate,
    /// logrotate `copytruncate` as it really runs under load: drop `.2`, `.1` → `.2`, copy
    /// `access.log` to `.1`, then — while logrotate fsyncs the copy — this many more lines are
    /// appended to `access.log`, the tailer may read in that gap (`during`), and only then is
    /// `access.log` emptied. Lines written in the gap are in no file afterwards: they may be
    /// missing unless the tailer read them in the gap, and then the copy, shorter than what was
    /// read, must not be read again.
    CopyTruncateUnderLoad { gap: usize, during: Gap },
    /// Empty `access.log` in place, no copy.
    Truncate,
    /// Delete `access.log`.
    Delete,
    /// The tailer scans and reads until nothing is left.
    Read,
    /// Read, then stop the tailer and start a new one from its checkpoints.
    Restart,
}

/// What the tailer does between logrotate's copy and its truncation.
#[derive(Clone, Copy, Debug)]
enum Gap {
    /// Nothing: it notices the truncation and the copy together, later.
    Idle,
    /// A scan and a read (a poll tick): it sees the copy before the truncation.
    Read,
    /// A read without a scan (a watcher event for `access.log` alone): it reads past the copy's
    /// end, notices the truncation first and finds the copy afterwards.
    ReadWithoutScan,
}

fn gap() -> impl Strategy<Value = Gap> {
    prop_oneof![Just(Gap::Idle), Just(Gap::Read), Just(Gap::ReadWithoutScan)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..30).prop_map(Op::Write),
        2 => Just(Op::Rotate),
        2 => Just(Op::CopyTruncate),
        2 => (1usize..10, gap()).prop_map(|(gap, during)| Op::CopyTruncateUnderLoad { gap, during }),
        1 => Just(Op::Truncate),
        1 => Just(Op::Delete),
        5 => Just(Op::Read),
        1 => Just(Op::Restart),
    ]
}

/// One file's content in the model.
#[derive(Clone, Debug, Default)]
struct ModelFile {
    lines: Vec<u64>,
    /// A read happened while it held lines: the tailer has it open.
    opened: bool,
}

struct Harness {
    dir: PathBuf,
    config: FileConfig,
    metrics: Arc<ComponentMetrics>,
    tailer: Tailer,
    clock: Instant,
    /// File name → content.
    files: HashMap<&'static str, ModelFile>,
    next_line: u64,
    /// Lines that may be missing.
    may_miss: HashSet<u64>,
    /// How often each line was read.
    read: HashMap<u64, u32>,
}

const LIVE: &str = "access.log";
const ONE: &str = "access.log.1";
const TWO: &str = "access.log.2";

impl Harness {
    fn new(dir: &Path, fingerprint_bytes: usize) -> Self {
        let text = format!(
            "include = [{}]\nfingerprint_bytes = {fingerprint_bytes}\nrotate_wait = \"5s\"",
            toml::Value::String(dir.join("access.log*").to_string_lossy().into_owned())
        );
        let config: FileConfig = toml::from_str(&text).unwrap();
        let metrics = Metrics::new().register("model", Role::Source);
        let tailer = Tailer::new(
            config.validate().unwrap(),
            "model",
            SourceId(1),
            &metrics,
            None,
        );
        Harness {
            dir: dir.to_path_buf(),
            config,
            metrics,
            tailer,
            clock: Instant::now(),
            files: HashMap::new(),
            next_line: 0,
            may_miss: HashSet::new(),
            read: HashMap::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `name` is about to disappear: lines never seen by the tailer may be missing.
    fn lose(&mut self, name: &str) {
        if let Some(file) = self.files.remove(name)
            && !file.opened
        {
            self.may_miss.extend(file.lines);
        }
    }

    fn shift_old(&mut self) {
        self.lose(TWO);
        let _ = std::fs::remove_file(self.path(TWO));
        if let Some(one) = self.files.remove(ONE) {
            std::fs::rename(self.path(ONE), self.path(TWO)).unwrap();
            self.files.insert(TWO, one);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(count) => {
                self.write(*count);
            }
            Op::Rotate => {
                self.shift_old();
                if let Some(live) = self.files.remove(LIVE) {
                    std::fs::rename(self.path(LIVE), self.path(ONE)).unwrap();
                    self.files.insert(ONE, live);
                    std::fs::write(self.path(LIVE), b"").unwrap();
                    self.files.insert(LIVE, ModelFile::default());
                }
            }
            Op::CopyTruncate => {
                self.shift_old();
                if let Some(live) = self.files.get_mut(LIVE) {
                    let copy = ModelFile {
                        lines: std::mem::take(&mut live.lines),
                        opened: false,
                    };
                    std::fs::copy(self.path(LIVE), self.path(ONE)).unwrap();
                    let handle = std::fs::OpenOptions::new()
                        .write(true)
                        .open(self.path(LIVE))
                        .unwrap();
                    handle.set_len(0).unwrap();
                    self.files.insert(ONE, copy);
                }
            }
            Op::CopyTruncateUnderLoad { gap, during } => {
                self.shift_old();
                let Some(live) = self.files.get(LIVE) else {
                    return;
                };
                // A tailer that never saw `access.log` finds it and its copy together, identical
                // but for the gap: it cannot tell which is the copy, and reads both.
                let during = if live.opened { *during } else { Gap::Idle };
                let copy = ModelFile {
                    lines: live.lines.clone(),
                    opened: false,
                };
                std::fs::copy(self.path(LIVE), self.path(ONE)).unwrap();
                self.files.insert(ONE, copy);
                let first_gap_line = self.next_line;
                self.write(*gap);
                match during {
                    Gap::Idle => self.may_miss.extend(first_gap_line..self.next_line),
                    Gap::Read => self.read_all(true),
                    Gap::ReadWithoutScan => self.read_all(false),
                }
                if let Some(copy) = self.files.get_mut(ONE) {
                    // Seen, perhaps, but held back as a possible copy: not open.
                    copy.opened = false;
                }
                if let Some(live) = self.files.get_mut(LIVE) {
                    live.lines.clear();
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.path(LIVE))
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            Op::Truncate => {
                if let Some(live) = self.files.get_mut(LIVE) {
                    self.may_miss.extend(live.lines.drain(..));
                    let handle = std::fs::OpenOptions::new()
                        .write(true)
                        .open(self.path(LIVE))
                        .unwrap();
                    handle.set_len(0).unwrap();
                }
            }
            Op::Delete => {
                self.lose(LIVE);
                let _ = std::fs::remove_file(self.path(LIVE));
            }
            Op::Read => self.read_all(true),
            Op::Restart => {
                self.read_all(true);
                self.restart();
            }
        }
    }

    /// Stops the tailer and starts a new one from its checkpoints (every mark acknowledged, as
    /// after a clean stop).
    fn restart(&mut self) {
        let checkpoints = self.tailer.checkpoints();
        let settings = self.config.validate().unwrap();
        self.tailer = Tailer::new(
            settings,
            "model",
            SourceId(1),
            &self.metrics,
            Some(checkpoints),
        );
        for file in self.files.values_mut() {
            file.opened = false;
        }
    }

    /// Appends `count` numbered lines to `access.log` (creating it if needed).
    fn write(&mut self, count: usize) {
        let mut text = String::new();
        let file = self.files.entry(LIVE).or_default();
        for _ in 0..count {
            let n = self.next_line;
            self.next_line += 1;
            text.push_str(&format!("line {n:08} {}\n", "x".repeat((n % 13) as usize)));
            file.lines.push(n);
        }
        let mut handle = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(LIVE))
            .unwrap();
        handle.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until nothing is left, after a scan if `scan` (a poll tick; without, what a watcher
    /// event for the open files alone does).
    fn read_all(&mut self, scan: bool) {
        self.clock += Duration::from_secs(1);
        let now = self.clock;
        if scan {
            self.tailer.scan(now);
        }
        self.tailer.activate_all();
        for _ in 0..10_000 {
            let (turns, progressed) = self.tailer.read_slice(now, 1 << 20, false);
            for turn in turns {
                for (ready, mark) in turn.batches {
                    self.tailer.acknowledge(mark);
                    for event in ready.batch.events() {
                        let text = std::str::from_utf8(event.raw().unwrap()).unwrap();
                        let n: u64 = text[5..13].parse().unwrap_or_else(|_| panic!("{text:?}"));
                        *self.read.entry(n).or_default() += 1;
                    }
                }
                if let Some(mark) = turn.mark {
                    self.tailer.acknowledge(mark);
                }
            }
            if !progressed {
                break;
            }
        }
        // Without a scan only the files already open were read.
        if scan {
            for file in self.files.values_mut() {
                if !file.lines.is_empty() {
                    file.opened = true;
                }
            }
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for (line, times) in &self.read {
            prop_assert!(*times == 1, "line {line} read {times} times");
        }
        for line in 0..self.next_line {
            if !self.may_miss.contains(&line) {
                prop_assert!(self.read.contains_key(&line), "line {line} missing");
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_tailer_reads_every_line_once_through_rotations_and_restarts(
        fingerprint_bytes in prop_oneof![Just(16usize), Just(64), Just(1024)],
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut harness = Harness::new(dir.path(), fingerprint_bytes);
        for op in &ops {
            harness.apply(op);
        }
        harness.apply(&Op::Read);
        harness.check()?;
    }
}

/// Runs `ops` on a fresh harness and checks every line was read once.
fn run_ops(fingerprint_bytes: usize, ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = Harness::new(dir.path(), fingerprint_bytes);
    for op in ops {
        harness.apply(op);
    }
    harness.apply(&Op::Read);
    harness.check().unwrap();
}

/// A case proptest found before copytruncate under load joined the operations (which changed
/// what its saved seed generates): a restart, then a copytruncate, a deletion and a rotation.
#[test]
fn restart_then_copytruncate_delete_and_rotate() {
    run_ops(
        16,
        &[
            Op::Write(1),
            Op::Restart,
            Op::CopyTruncate,
            Op::Delete,
            Op::Rotate,
        ],
    );
}

/// Regression (issue 10): with real logrotate under load, lines written while logrotate fsyncs
/// the copy are read from `access.log` before it is truncated, so the copy is shorter than the
/// position reached. The tailer noticed the truncation first (a watcher event for `access.log`),
/// gave up the position of the old content, and then read the copy, found afterwards, from
/// offset 0: every line of it twice.
#[test]
fn copytruncate_copy_found_after_the_truncation_is_not_read_again() {
    run_ops(
        64,
        &[
            Op::Write(20),
            Op::Read,
            Op::Write(10),
            Op::CopyTruncateUnderLoad {
                gap: 5,
                during: Gap::ReadWithoutScan,
            },
            Op::Write(3),
            Op::Read,
            Op::Write(4),
            Op::Read,
        ],
    );
}

/// The other order: the copy is seen (and held back as a possible copy) before the truncation,
/// and reading went past the copy's end in between.
#[test]
fn copytruncate_copy_seen_before_the_truncation_is_not_read_again() {
    run_ops(
        64,
        &[
            Op::Write(20),
            Op::Read,
            Op::Write(10),
            Op::CopyTruncateUnderLoad {
                gap: 5,
                during: Gap::Read,
            },
            Op::Write(3),
            Op::Read,
            Op::Write(4),
            Op::Read,
        ],
    );
}

/// A short copy of a file that was shorter than `fingerprint_bytes` when copied: the original's
/// head grew past the copy's end before the truncation, and the copy is still recognised by the
/// start of it.
#[test]
fn copytruncate_short_copy_of_a_file_shorter_than_the_fingerprint_is_not_read_again() {
    run_ops(
        1024,
        &[
            Op::Write(1),
            Op::Read,
            Op::CopyTruncateUnderLoad {
                gap: 1,
                during: Gap::Read,
            },
        ],
    );
}

/// The truncation noticed (the copy, shorter than the position reached, not looked at yet), then
/// a restart: the copy found by the new tailer's first scan is not read again either.
#[test]
fn copytruncate_copy_found_after_a_restart_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = Harness::new(dir.path(), 64);
    harness.apply(&Op::Write(20));
    harness.apply(&Op::Read);
    harness.apply(&Op::Write(10));
    harness.apply(&Op::CopyTruncateUnderLoad {
        gap: 5,
        during: Gap::ReadWithoutScan,
    });
    // A watcher event for `access.log`: the truncation is noticed, no scan yet.
    harness.read_all(false);
    harness.restart();
    harness.apply(&Op::Write(3));
    harness.apply(&Op::Read);
    harness.check().unwrap();
}

/// Both orders when reading had not got past the copy's end: the unread lines come from the
/// copy, once.
#[test]
fn copytruncate_copy_not_shorter_than_the_position_continues_in_either_order() {
    for during in [Gap::Idle, Gap::Read, Gap::ReadWithoutScan] {
        run_ops(
            64,
            &[
                Op::Write(20),
                Op::Read,
                Op::Write(10),
                Op::CopyTruncateUnderLoad { gap: 0, during },
                Op::Write(3),
                Op::Read,
            ],
        );
    }
}
