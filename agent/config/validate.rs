//! Validation: from what was read ([`Draft`]) to a [`Config`] that can be built. Pure: no I/O.
//!
//! Checks, each reported at the key path at fault:
//! - names of components and topics are non-empty and use only `[A-Za-z0-9_.-]`;
//! - every `input` is produced: by a source (`topic`), a pipeline (`output` or `dead_letter`),
//!   or the sinks (whose permanently failed events go to [`DEFAULT_DEAD_LETTER_TOPIC`]);
//!   otherwise an error with a "did you mean" suggestion, or a warning when the topic is declared
//!   `external = true`;
//! - declared topics that nothing reads or writes: a warning;
//! - pipelines do not form a cycle through their output or dead-letter topics;
//! - numeric ranges (`workers` 1..=64, `max_events` ≥ 1, `max_bytes` ≥ 1KiB, durations > 0),
//!   `storage = "disk"` (not available yet) and `retention` (disk only);
//! - every step builds ([`StepConfig::build`]), every source and sink validates.
//!
//! A draft with reading errors is validated too, as far as it goes, so that one run reports as
//! much as possible; only a draft without any problem becomes a [`Config`]. The final topics map
//! holds every topic the graph uses: the declared ones with their settings, then the implied
//! ones with [`TopicDef::default`].

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use sluice_pipelines::units::ByteSize;
use sluice_pipelines::{BuildError, OnError, StepConfig};
use sluice_sink::SinkConfig;
use sluice_sink::driver::DriverConfig;

use super::path::{Issue, KeyPath};
use super::{
    ApiConfig, Config, DEFAULT_DEAD_LETTER_TOPIC, DEFAULT_WORKERS, DISK_ONLY_TOPIC_KEYS, FsyncMode,
    PipelineDef, SinkDef, SourceDef, StorageKind, SubscriptionDef, TopicDef,
};
use crate::sources::SourceConfig;
use crate::topic::StartAt;

/// The default `data_dir`.
pub(super) const DEFAULT_DATA_DIR: &str = "./data";
/// The default `shutdown_timeout`.
pub(super) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `ack_timeout`.
pub(super) const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The most `workers` a subscription may have.
pub(super) const MAX_WORKERS: i64 = 64;
/// The smallest `max_bytes` of a topic.
pub(super) const MIN_TOPIC_BYTES: u64 = 1024;
/// The smallest `segment_bytes` a disk topic takes.
pub(super) const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

/// A config as read, before validation: what could not be read is `None` (and was reported).
#[derive(Debug, Default)]
pub(super) struct Draft {
    /// `data_dir`.
    pub(super) data_dir: Option<PathBuf>,
    /// `shutdown_timeout`.
    pub(super) shutdown_timeout: Option<Duration>,
    /// Sources by name.
    pub(super) sources: IndexMap<String, SourceDraft>,
    /// Declared topics by name; `None` when the settings did not read.
    pub(super) topics: IndexMap<String, Option<TopicDef>>,
    /// Pipelines by name.
    pub(super) pipelines: IndexMap<String, PipelineDraft>,
    /// Sinks by name.
    pub(super) sinks: IndexMap<String, SinkDraft>,
    /// `[api]`, when present and valid.
    pub(super) api: Option<ApiConfig>,
    /// Whether reading reported problems (then no [`Config`] is made).
    pub(super) incomplete: bool,
}

/// A source as read.
#[derive(Debug, Default)]
pub(super) struct SourceDraft {
    /// `topic`.
    pub(super) topic: Option<String>,
    /// The kind-specific config.
    pub(super) config: Option<SourceConfig>,
}

/// The subscription keys of a pipeline or sink as read.
#[derive(Debug, Default)]
pub(super) struct SubscriptionDraft {
    /// `input`.
    pub(super) input: Option<String>,
    /// `workers`.
    pub(super) workers: Option<i64>,
    /// `blocking`.
    pub(super) blocking: Option<bool>,
    /// `ack_timeout`.
    pub(super) ack_timeout: Option<Duration>,
    /// `start_at`.
    pub(super) start_at: Option<StartAt>,
}

/// A pipeline as read.
#[derive(Debug, Default)]
pub(super) struct PipelineDraft {
    /// `input`, `workers`, `blocking`, `ack_timeout`.
    pub(super) subscription: SubscriptionDraft,
    /// `output`.
    pub(super) output: Option<String>,
    /// `dead_letter`.
    pub(super) dead_letter: Option<String>,
    /// `on_error`.
    pub(super) on_error: Option<OnError>,
    /// `flush_on_shutdown`.
    pub(super) flush_on_shutdown: Option<bool>,
    /// `steps`; a step that did not read is `None`.
    pub(super) steps: Option<Vec<Option<StepConfig>>>,
}

impl PipelineDraft {
    fn dead_letter(&self) -> &str {
        self.dead_letter
            .as_deref()
            .unwrap_or(DEFAULT_DEAD_LETTER_TOPIC)
    }

    /// The topics its `route` steps send events to.
    fn routed_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        for step in self.steps.iter().flatten().flatten() {
            for topic in step.output_topics() {
                if !topics.contains(&topic) {
                    topics.push(topic);
                }
            }
        }
        topics
    }

    /// Every topic it writes: output, dead letters, routes.
    fn written_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.output.iter().cloned().collect();
        topics.push(self.dead_letter().to_owned());
        topics.extend(self.routed_topics());
        topics
    }
}

/// A sink as read.
#[derive(Debug, Default)]
pub(super) struct SinkDraft {
    /// `input`, `workers`, `blocking`, `ack_timeout`.
    pub(super) subscription: SubscriptionDraft,
    /// `batch`, `concurrency`, `retry`, `healthcheck`, when any is set.
    pub(super) driver: Option<DriverConfig>,
    /// The kind-specific config.
    pub(super) config: Option<SinkConfig>,
}

/// The outcome of validation.
#[derive(Debug)]
pub(super) struct Validation {
    /// The config, when there was no error at all.
    pub(super) config: Option<Config>,
    /// Problems that stop the config from running.
    pub(super) errors: Vec<Issue>,
    /// Problems that do not.
    pub(super) warnings: Vec<Issue>,
}

/// Who produces a topic, for messages and the "is it produced" check.
#[derive(Default)]
struct Usage {
    /// Topics written by a source, a pipeline or the sinks.
    produced: HashSet<String>,
    /// Topics read by a pipeline or sink.
    consumed: HashSet<String>,
    /// Every topic referenced, in order of first reference.
    referenced: Vec<String>,
    /// Topics that receive rejected events (a pipeline's `dead_letter`, and the default one
    /// that sources and sinks use): on disk unless they say otherwise.
    dead_letters: HashSet<String>,
}

impl Usage {
    fn reference(&mut self, topic: &str) {
        if !self.referenced.iter().any(|known| known == topic) {
            self.referenced.push(topic.to_owned());
        }
    }
}

/// Validates `draft`.
pub(super) fn validate(draft: Draft) -> Validation {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let root = KeyPath::root();

    if let Some(timeout) = draft.shutdown_timeout
        && timeout.is_zero()
    {
        errors.push(Issue::new(
            root.key("shutdown_timeout"),
            "must be longer than 0s",
        ));
    }

    check_names(&draft, &mut errors);
    let usage = usage(&draft);
    check_inputs(&draft, &usage, &mut errors, &mut warnings);
    check_declared_topics(&draft, &usage, &mut errors, &mut warnings);
    check_start_at(&draft, &usage, &mut errors);
    check_cycles(&draft, &mut errors);
    check_components(&draft, &mut errors);

    if draft.sources.is_empty() {
        errors.push(Issue::new(
            root.clone(),
            "nothing to run: the config has no sources (`[sources.<name>]`)",
        ));
    } else if draft.pipelines.is_empty() && draft.sinks.is_empty() {
        errors.push(Issue::new(
            root.clone(),
            "nothing to run: the config has no pipelines or sinks",
        ));
    }

    let config = if errors.is_empty() && !draft.incomplete {
        build(draft, &usage)
    } else {
        None
    };
    Validation {
        config,
        errors,
        warnings,
    }
}

/// Every topic each component uses, and who writes and reads them.
fn usage(draft: &Draft) -> Usage {
    let mut usage = Usage::default();
    for source in draft.sources.values() {
        if let Some(topic) = &source.topic {
            usage.produced.insert(topic.clone());
            usage.reference(topic);
        }
    }
    for pipeline in draft.pipelines.values() {
        if let Some(input) = &pipeline.subscription.input {
            usage.consumed.insert(input.clone());
            usage.reference(input);
        }
        if let Some(output) = &pipeline.output {
            usage.produced.insert(output.clone());
            usage.reference(output);
        }
        usage.produced.insert(pipeline.dead_letter().to_owned());
        usage.dead_letters.insert(pipeline.dead_letter().to_owned());
        usage.reference(pipeline.dead_letter());
        for topic in pipeline.routed_topics() {
            usage.produced.insert(topic.clone());
            usage.reference(&topic);
        }
    }
    for sink in draft.sinks.values() {
        if let Some(input) = &sink.subscription.input {
            usage.consumed.insert(input.clone());
            usage.reference(input);
        }
    }
    if !draft.sinks.is_empty() {
        // Sinks send the events a store rejects for good to the default dead-letter topic.
        usage.produced.insert(DEFAULT_DEAD_LETTER_TOPIC.to_owned());
    }
    // Sources send what they cannot decode there too, whenever it exists.
    usage
        .dead_letters
        .insert(DEFAULT_DEAD_LETTER_TOPIC.to_owned());
    usage
}

/// A name as users may write it: `[A-Za-z0-9_.-]+`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn name_error(path: KeyPath, what: &str, name: &str) -> Issue {
    if name.is_empty() {
        Issue::new(path, format!("{what} name must not be empty"))
    } else {
        Issue::new(
            path,
            format!("invalid {what} name `{name}`: use only letters, digits, `_`, `.` and `-`"),
        )
    }
}

fn check_names(draft: &Draft, errors: &mut Vec<Issue>) {
    let root = KeyPath::root();
    let sections = [
        (
            "sources",
            "source",
            draft.sources.keys().collect::<Vec<_>>(),
        ),
        ("topics", "topic", draft.topics.keys().collect()),
        ("pipelines", "pipeline", draft.pipelines.keys().collect()),
        ("sinks", "sink", draft.sinks.keys().collect()),
    ];
    for (section, what, names) in sections {
        for name in names {
            if !is_valid_name(name) {
                errors.push(name_error(root.key(section).key(name), what, name));
            }
        }
    }
    let mut topic_refs: Vec<(KeyPath, &str)> = Vec::new();
    for (name, source) in &draft.sources {
        if let Some(topic) = &source.topic {
            topic_refs.push((root.key("sources").key(name).key("topic"), topic));
        }
    }
    for (name, pipeline) in &draft.pipelines {
        let path = root.key("pipelines").key(name);
        for (key, topic) in [
            ("input", &pipeline.subscription.input),
            ("output", &pipeline.output),
            ("dead_letter", &pipeline.dead_letter),
        ] {
            if let Some(topic) = topic {
                topic_refs.push((path.key(key), topic));
            }
        }
    }
    for (name, sink) in &draft.sinks {
        if let Some(topic) = &sink.subscription.input {
            topic_refs.push((root.key("sinks").key(name).key("input"), topic));
        }
    }
    for (path, topic) in topic_refs {
        if !is_valid_name(topic) {
            errors.push(name_error(path, "topic", topic));
        }
    }
}

fn check_inputs(draft: &Draft, usage: &Usage, errors: &mut Vec<Issue>, warnings: &mut Vec<Issue>) {
    let root = KeyPath::root();
    let inputs = draft
        .pipelines
        .iter()
        .map(|(name, pipeline)| (root.key("pipelines").key(name), &pipeline.subscription))
        .chain(
            draft
                .sinks
                .iter()
                .map(|(name, sink)| (root.key("sinks").key(name), &sink.subscription)),
        );
    let mut candidates: Vec<&String> = usage.produced.iter().collect();
    candidates.sort();
    for (path, subscription) in inputs {
        let Some(input) = &subscription.input else {
            continue;
        };
        if usage.produced.contains(input) || !is_valid_name(input) {
            continue;
        }
        let path = path.key("input");
        let external = matches!(draft.topics.get(input), Some(Some(topic)) if topic.external);
        if external {
            warnings.push(Issue::new(
                path,
                format!(
                    "topic `{input}` is not produced by any source or pipeline; it is declared \
                     `external`, so something outside this config must feed it"
                ),
            ));
            continue;
        }
        let mut message = format!("topic `{input}` is not produced by any source or pipeline");
        if let Some(suggestion) = closest(input, candidates.iter().map(|s| s.as_str())) {
            let _ = write!(message, " (did you mean `{suggestion}`?)");
        }
        errors.push(Issue::new(path, message));
    }
}

fn check_declared_topics(
    draft: &Draft,
    usage: &Usage,
    errors: &mut Vec<Issue>,
    warnings: &mut Vec<Issue>,
) {
    let root = KeyPath::root();
    for (name, topic) in &draft.topics {
        let path = root.key("topics").key(name);
        if !usage.produced.contains(name)
            && !usage.consumed.contains(name)
            && !topic_is_external(topic)
        {
            warnings.push(Issue::new(
                path.clone(),
                format!("topic `{name}` is declared but nothing reads or writes it"),
            ));
        }
        let Some(topic) = topic else {
            continue;
        };
        check_topic(topic, usage.dead_letters.contains(name), &path, errors);
    }
}

/// Checks one declared topic's settings against its storage.
fn check_topic(topic: &TopicDef, dead_letter: bool, path: &KeyPath, errors: &mut Vec<Issue>) {
    if topic.max_events.is_some_and(|max| max < 1) {
        errors.push(Issue::new(path.key("max_events"), "must be at least 1"));
    }
    if let Some(max_bytes) = topic.max_bytes
        && max_bytes.bytes() < MIN_TOPIC_BYTES
    {
        errors.push(Issue::new(
            path.key("max_bytes"),
            format!(
                "must be at least {}, found {max_bytes}",
                ByteSize(MIN_TOPIC_BYTES)
            ),
        ));
    }
    match topic.storage_kind(dead_letter) {
        StorageKind::Memory => {
            let set = [
                topic.retention.is_some(),
                topic.segment_bytes.is_some(),
                topic.segment_age.is_some(),
                topic.fsync.is_some(),
                topic.fsync_interval.is_some(),
                topic.cache_bytes.is_some(),
            ];
            for (key, _) in DISK_ONLY_TOPIC_KEYS.iter().zip(set).filter(|(_, set)| *set) {
                errors.push(Issue::new(
                    path.key(key),
                    format!("`{key}` applies only to disk topics (storage = \"disk\")"),
                ));
            }
        }
        StorageKind::Disk => {
            if let Some(segment_bytes) = topic.segment_bytes
                && segment_bytes.bytes() < MIN_SEGMENT_BYTES
            {
                errors.push(Issue::new(
                    path.key("segment_bytes"),
                    format!(
                        "must be at least {}, found {segment_bytes}",
                        ByteSize(MIN_SEGMENT_BYTES)
                    ),
                ));
            }
            for (key, duration) in [
                ("retention", topic.retention),
                ("segment_age", topic.segment_age),
                ("fsync_interval", topic.fsync_interval),
            ] {
                if duration.is_some_and(|duration| duration.get().is_zero()) {
                    errors.push(Issue::new(path.key(key), "must be longer than 0s"));
                }
            }
            if topic.fsync_interval.is_some()
                && topic
                    .fsync
                    .is_some_and(|fsync| fsync != FsyncMode::Interval)
            {
                errors.push(Issue::new(
                    path.key("fsync_interval"),
                    "applies only with fsync = \"interval\"",
                ));
            }
        }
    }
}

/// `start_at` only means something for a disk topic: a memory topic starts empty.
fn check_start_at(draft: &Draft, usage: &Usage, errors: &mut Vec<Issue>) {
    let root = KeyPath::root();
    let readers = draft
        .pipelines
        .iter()
        .map(|(name, pipeline)| (root.key("pipelines").key(name), &pipeline.subscription))
        .chain(
            draft
                .sinks
                .iter()
                .map(|(name, sink)| (root.key("sinks").key(name), &sink.subscription)),
        );
    for (path, subscription) in readers {
        let (Some(_), Some(input)) = (subscription.start_at, &subscription.input) else {
            continue;
        };
        let dead_letter = usage.dead_letters.contains(input);
        let storage = match draft.topics.get(input) {
            Some(Some(topic)) => topic.storage_kind(dead_letter),
            Some(None) => continue,
            None => TopicDef::default().storage_kind(dead_letter),
        };
        if storage == StorageKind::Memory {
            errors.push(Issue::new(
                path.key("start_at"),
                format!(
                    "`start_at` applies only to inputs from disk topics; topic `{input}` is kept \
                     in memory, which starts empty at every run (set storage = \"disk\" under \
                     [topics.\"{input}\"])"
                ),
            ));
        }
    }
}

fn topic_is_external(topic: &Option<TopicDef>) -> bool {
    topic.as_ref().is_some_and(|topic| topic.external)
}

/// Reports every cycle among pipelines, following output and dead-letter topics.
fn check_cycles(draft: &Draft, errors: &mut Vec<Issue>) {
    let names: Vec<&String> = draft.pipelines.keys().collect();
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, pipeline) in draft.pipelines.values().enumerate() {
        if let Some(input) = &pipeline.subscription.input {
            readers.entry(input.as_str()).or_default().push(index);
        }
    }
    let sink_inputs: HashSet<&str> = draft
        .sinks
        .values()
        .filter_map(|sink| sink.subscription.input.as_deref())
        .collect();
    let edges: Vec<Vec<usize>> = draft
        .pipelines
        .values()
        .map(|pipeline| {
            let mut next: Vec<usize> = Vec::new();
            let mut written = pipeline.written_topics();
            // A sink reading what this pipeline writes sends the events its store rejects to the
            // default dead-letter topic: a pipeline reading that topic is downstream of this one
            // (and a loop through it would never drain).
            if written
                .iter()
                .any(|topic| sink_inputs.contains(topic.as_str()))
            {
                written.push(DEFAULT_DEAD_LETTER_TOPIC.to_owned());
            }
            for topic in &written {
                for &reader in readers
                    .get(topic.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    if !next.contains(&reader) {
                        next.push(reader);
                    }
                }
            }
            next
        })
        .collect();

    // Depth-first search; a back edge closes a cycle, reported once per set of pipelines.
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Active,
        Done,
    }
    let mut state = vec![State::New; names.len()];
    let mut reported: HashSet<Vec<usize>> = HashSet::new();
    for start in 0..names.len() {
        if state[start] != State::New {
            continue;
        }
        // The path from `start`, each with the index of its next edge to follow.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = State::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let Some(&target) = edges[node].get(*next) else {
                state[node] = State::Done;
                stack.pop();
                continue;
            };
            *next += 1;
            match state[target] {
                State::New => {
                    state[target] = State::Active;
                    stack.push((target, 0));
                }
                State::Active => {
                    let from = stack.iter().position(|&(n, _)| n == target).unwrap_or(0);
                    let cycle: Vec<usize> = stack[from..].iter().map(|&(n, _)| n).collect();
                    let mut key = cycle.clone();
                    key.sort_unstable();
                    if reported.insert(key) {
                        let shown: Vec<&str> = cycle
                            .iter()
                            .chain(std::iter::once(&target))
                            .map(|&n| names[n].as_str())
                            .collect();
                        errors.push(Issue::new(
                            KeyPath::root()
                                .key("pipelines")
                                .key(names[target])
                                .key("input"),
                            format!("pipelines form a cycle: {}", shown.join(" -> ")),
                        ));
                    }
                }
                State::Done => {}
            }
        }
    }
}

/// Ranges of subscriptions, and each component's own checks.
fn check_components(draft: &Draft, errors: &mut Vec<Issue>) {
    let root = KeyPath::root();
    for (name, source) in &draft.sources {
        if let Some(config) = &source.config
            && let Err(error) = config.validate()
        {
            errors.push(build_issue(&root.key("sources").key(name), error));
        }
    }
    for (name, pipeline) in &draft.pipelines {
        let path = root.key("pipelines").key(name);
        check_subscription(&path, &pipeline.subscription, errors);
        if pipeline
            .subscription
            .workers
            .is_some_and(|workers| workers > 1)
            && let Some(step) = pipeline
                .steps
                .iter()
                .flatten()
                .flatten()
                .find(|step| step.requires_single_worker())
        {
            errors.push(Issue::new(path.key("workers"), {
                let kind = sluice_pipelines::ComponentKind::kind(step);
                let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                format!(
                    "a pipeline with {article} `{kind}` step runs 1 worker: its state must \
                         see every event (parse in a pipeline of its own with more workers, then \
                         aggregate)"
                )
            }));
        }
        for (index, step) in pipeline.steps.iter().flatten().enumerate() {
            if let Some(step) = step
                && let Err(error) = step.build()
            {
                errors.push(build_issue(&path.key("steps").index(index), error));
            }
        }
    }
    for (name, sink) in &draft.sinks {
        let path = root.key("sinks").key(name);
        check_subscription(&path, &sink.subscription, errors);
        if let Some(driver) = &sink.driver
            && let Err(error) = driver.validate()
        {
            errors.push(build_issue(&path, error));
        }
        if let Some(config) = &sink.config
            && let Err(error) = config.validate()
        {
            errors.push(build_issue(&path, error));
        }
    }
}

fn check_subscription(path: &KeyPath, subscription: &SubscriptionDraft, errors: &mut Vec<Issue>) {
    if let Some(workers) = subscription.workers
        && !(1..=MAX_WORKERS).contains(&workers)
    {
        errors.push(Issue::new(
            path.key("workers"),
            format!("expected a number of workers from 1 to {MAX_WORKERS}, found {workers}"),
        ));
    }
    if subscription
        .ack_timeout
        .is_some_and(|timeout| timeout.is_zero())
    {
        errors.push(Issue::new(
            path.key("ack_timeout"),
            "must be longer than 0s",
        ));
    }
}

/// A component's [`BuildError`] at its key, relative to the component at `path`.
fn build_issue(path: &KeyPath, error: BuildError) -> Issue {
    let path = match &error.key {
        Some(key) => path.join(&KeyPath::parse_relative(key)),
        None => path.clone(),
    };
    Issue::new(path, error.message)
}

/// The candidate closest to `name` within an edit distance of 2, if any.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|&(distance, _)| distance <= 2)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, in characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The config of a draft without problems. `None` if anything is missing after all.
fn build(draft: Draft, usage: &Usage) -> Option<Config> {
    let mut sources = IndexMap::new();
    for (name, source) in draft.sources {
        sources.insert(
            name,
            SourceDef {
                topic: source.topic?,
                config: source.config?,
            },
        );
    }
    let mut pipelines = IndexMap::new();
    for (name, pipeline) in draft.pipelines {
        let dead_letter = pipeline.dead_letter().to_owned();
        let mut steps = Vec::new();
        for step in pipeline.steps.unwrap_or_default() {
            steps.push(step?);
        }
        pipelines.insert(
            name,
            PipelineDef {
                subscription: subscription(pipeline.subscription, Some(DEFAULT_ACK_TIMEOUT))?,
                output: pipeline.output?,
                dead_letter,
                on_error: pipeline.on_error.unwrap_or_default(),
                flush_on_shutdown: pipeline.flush_on_shutdown.unwrap_or(true),
                steps,
            },
        );
    }
    let mut sinks = IndexMap::new();
    for (name, sink) in draft.sinks {
        sinks.insert(
            name,
            SinkDef {
                subscription: subscription(sink.subscription, None)?,
                driver: sink.driver.unwrap_or_default(),
                config: sink.config?,
            },
        );
    }
    let mut topics = IndexMap::new();
    for (name, topic) in draft.topics {
        let topic = topic?.resolve(usage.dead_letters.contains(&name));
        topics.insert(name, topic);
    }
    for name in &usage.referenced {
        if !topics.contains_key(name) {
            let topic = TopicDef::default().resolve(usage.dead_letters.contains(name));
            topics.insert(name.clone(), topic);
        }
    }
    if !sinks.is_empty() && !topics.contains_key(DEFAULT_DEAD_LETTER_TOPIC) {
        topics.insert(
            DEFAULT_DEAD_LETTER_TOPIC.to_owned(),
            TopicDef::default().resolve(true),
        );
    }
    Some(Config {
        data_dir: draft
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        shutdown_timeout: draft.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        sources,
        topics,
        pipelines,
        sinks,
        api: draft.api,
    })
}

/// The final subscription; `default_ack_timeout` applies when the config sets none (pipelines
/// hand stuck batches to another worker after 5 minutes; sinks retry inside their driver, so a
/// redelivery would only duplicate what the driver is still retrying).
fn subscription(
    draft: SubscriptionDraft,
    default_ack_timeout: Option<Duration>,
) -> Option<SubscriptionDef> {
    Some(SubscriptionDef {
        input: draft.input?,
        workers: match draft.workers {
            Some(workers) => usize::try_from(workers).ok()?,
            None => DEFAULT_WORKERS,
        },
        blocking: draft.blocking.unwrap_or(true),
        ack_timeout: draft.ack_timeout.or(default_ack_timeout),
        start_at: draft.start_at.unwrap_or_default(),
    })
}
