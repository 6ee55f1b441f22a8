//! Reading a config tree into a [`Draft`]: every key checked, every problem collected.
//!
//! The reader goes key by key rather than deserializing the whole config at once, because serde
//! stops at the first error: here a bad `workers` does not hide a bad `ack_timeout` or an unknown
//! key in another component, and what could be read is kept so that validation can still check
//! the graph. Components are read in two parts: the agent-level keys (`topic` of sources,
//! `input`, `workers`, `blocking`, `ack_timeout` of sinks and pipelines, and the rest of a
//! pipeline) are read here, and the remaining keys go, without `type`, to the kind's registry
//! ([`ComponentKind::deserialize_kind`]), which reports the path of the key at fault.
//!
//! The same reader runs on each file alone (strictly, for positions) and on the layered tree. In
//! a file after the first, a component that an earlier file defines is a *partial override*: keys
//! it leaves out are not missing, and without a `type` its kind-specific keys are not checked
//! until the layered pass.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use sluice_pipelines::units::parse_duration;
use sluice_pipelines::{ComponentKind, OnError, StepConfig};
use sluice_sink::SinkConfig;
use sluice_sink::driver::DriverConfig;

use super::deprecated;
use super::path::{Issue, KeyPath};
use super::tree::{KindFailure, Tree};
use super::validate::{Draft, PipelineDraft, SinkDraft, SourceDraft, SubscriptionDraft};
use super::{ApiConfig, TopicDef};
use crate::sources::SourceConfig;
use crate::test_command::PipelineTest;
use crate::topic::{Offset, StartAt};

/// Every key allowed at the top level.
const TOP_LEVEL_KEYS: [&str; 8] = [
    "data_dir",
    "shutdown_timeout",
    "api",
    "sources",
    "topics",
    "pipelines",
    "sinks",
    "tests",
];

/// Every key of a pipeline.
const PIPELINE_KEYS: [&str; 10] = [
    "input",
    "output",
    "workers",
    "blocking",
    "ack_timeout",
    "start_at",
    "dead_letter",
    "on_error",
    "flush_on_shutdown",
    "steps",
];

/// Reads config trees, collecting problems.
pub(super) struct Reader<'a> {
    /// Components (`sinks.out`) that earlier files define; empty for the layered pass.
    earlier: &'a HashSet<KeyPath>,
    /// Every problem found so far.
    pub(super) issues: Vec<Issue>,
    /// Every component (`sinks.out`, `topics."a.b"`) read so far.
    pub(super) seen: Vec<KeyPath>,
    /// Deprecated keys read (and rewritten to today's), at their path: warnings.
    pub(super) deprecated: Vec<Issue>,
    /// The pipeline tests (`[[tests]]`) that read.
    pub(super) tests: Vec<PipelineTest>,
    /// Problems in `[[tests]]`: errors for `sluice test` only (a run ignores the tests).
    pub(super) test_issues: Vec<Issue>,
}

impl<'a> Reader<'a> {
    /// A reader for which the components in `earlier` are defined by earlier files.
    pub(super) fn new(earlier: &'a HashSet<KeyPath>) -> Self {
        Reader {
            earlier,
            issues: Vec::new(),
            seen: Vec::new(),
            deprecated: Vec::new(),
            tests: Vec::new(),
            test_issues: Vec::new(),
        }
    }

    fn issue(&mut self, path: KeyPath, message: impl Into<String>) {
        self.issues.push(Issue::new(path, message));
    }

    /// Reads a whole config.
    pub(super) fn read<T: Tree>(&mut self, root: T) -> Draft {
        let mut draft = Draft::default();
        let entries = match root.into_entries() {
            Ok(entries) => entries,
            Err(other) => {
                self.issue(
                    KeyPath::root(),
                    format!(
                        "expected a table of config keys, found {}",
                        other.describe()
                    ),
                );
                return draft;
            }
        };
        for (key, value) in entries {
            let path = KeyPath::root().key(&key);
            match key.as_str() {
                "data_dir" => {
                    draft.data_dir = self
                        .string(value, &path, "a directory path (a string)")
                        .map(PathBuf::from);
                }
                "shutdown_timeout" => draft.shutdown_timeout = self.duration(value, &path),
                "api" => match value.deserialize_tracked::<ApiConfig>() {
                    Ok(api) => draft.api = Some(api),
                    Err((key, message)) => {
                        let message = if key.is_root() && message.starts_with("invalid type") {
                            format!("expected a table of admin API settings, {message}")
                        } else {
                            message
                        };
                        self.issue(path.join(&key), message);
                    }
                },
                "sources" => {
                    for (name, value) in self.section(value, &path, "sources") {
                        let path = path.key(&name);
                        let source = self.source(value, &path);
                        draft.sources.insert(name, source);
                    }
                }
                "topics" => {
                    for (name, value) in self.section(value, &path, "topics") {
                        let path = path.key(&name);
                        let topic = self.topic(value, &path);
                        draft.topics.insert(name, topic);
                    }
                }
                "pipelines" => {
                    for (name, value) in self.section(value, &path, "pipelines") {
                        let path = path.key(&name);
                        let pipeline = self.pipeline(value, &path);
                        draft.pipelines.insert(name, pipeline);
                    }
                }
                "sinks" => {
                    for (name, value) in self.section(value, &path, "sinks") {
                        let path = path.key(&name);
                        let sink = self.sink(value, &path);
                        draft.sinks.insert(name, sink);
                    }
                }
                // Pipeline tests (`[[tests]]`) are for `sluice test`; a run ignores them.
                "tests" => self.tests(value, &path),
                other => self.issue(
                    path,
                    format!(
                        "unknown key `{other}`, expected one of {}",
                        quoted(&TOP_LEVEL_KEYS)
                    ),
                ),
            }
        }
        draft.incomplete = !self.issues.is_empty();
        draft
    }

    /// The named entries of a section (`[sources]`), each one noted as seen.
    fn section<T: Tree>(&mut self, value: T, path: &KeyPath, what: &str) -> Vec<(String, T)> {
        match value.into_entries() {
            Ok(entries) => {
                self.seen
                    .extend(entries.iter().map(|(name, _)| path.key(name)));
                entries
            }
            Err(other) => {
                self.issue(
                    path.clone(),
                    format!(
                        "expected a table of {what} by name (`[{what}.<name>]`), found {}",
                        other.describe()
                    ),
                );
                Vec::new()
            }
        }
    }

    /// The entries of a component's table.
    fn component_table<T: Tree>(
        &mut self,
        value: T,
        path: &KeyPath,
        what: &str,
    ) -> Option<Vec<(String, T)>> {
        match value.into_entries() {
            Ok(entries) => Some(entries),
            Err(other) => {
                self.issue(
                    path.clone(),
                    format!(
                        "expected a table of {what} settings, found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    fn source<T: Tree>(&mut self, value: T, path: &KeyPath) -> SourceDraft {
        let mut draft = SourceDraft::default();
        let Some(mut entries) = self.component_table(value, path, "source") else {
            return draft;
        };
        let partial = self.earlier.contains(path);
        let kind = take(&mut entries, "type");
        match take(&mut entries, "topic") {
            Some(value) => draft.topic = self.topic_name(value, &path.key("topic")),
            None if !partial => self.issue(
                path.clone(),
                "missing key `topic`: the topic the source publishes to",
            ),
            None => {}
        }
        draft.config = self.kind::<SourceConfig, T>("source", kind, entries, path, partial);
        draft
    }

    fn sink<T: Tree>(&mut self, value: T, path: &KeyPath) -> SinkDraft {
        let mut draft = SinkDraft::default();
        let Some(entries) = self.component_table(value, path, "sink") else {
            return draft;
        };
        let partial = self.earlier.contains(path);
        let has_input = entries.iter().any(|(key, _)| key == "input");
        let mut kind = None;
        let mut rest = Vec::new();
        let mut driver = Vec::new();
        for (key, value) in entries {
            match key.as_str() {
                "type" => kind = Some(value),
                "input" | "workers" | "blocking" | "ack_timeout" | "start_at" => {
                    self.subscription_key(&key, value, &path.key(&key), &mut draft.subscription);
                }
                "batch" | "concurrency" | "retry" | "healthcheck" => driver.push((key, value)),
                _ => rest.push((key, value)),
            }
        }
        if !driver.is_empty() {
            match T::from_entries(driver).deserialize_tracked::<DriverConfig>() {
                Ok(config) => draft.driver = Some(config),
                Err((key, message)) => self.issue(path.join(&key), message),
            }
        }
        if !has_input && !partial {
            self.issue(
                path.clone(),
                "missing key `input`: the topic the sink reads",
            );
        }
        draft.config = self.kind::<SinkConfig, T>("sink", kind, rest, path, partial);
        draft
    }

    fn pipeline<T: Tree>(&mut self, value: T, path: &KeyPath) -> PipelineDraft {
        let mut draft = PipelineDraft::default();
        let Some(entries) = self.component_table(value, path, "pipeline") else {
            return draft;
        };
        let partial = self.earlier.contains(path);
        if !partial {
            for (key, what) in [
                ("input", "the topic the pipeline reads"),
                ("output", "the topic the pipeline writes to"),
            ] {
                if !entries.iter().any(|(name, _)| name == key) {
                    self.issue(path.clone(), format!("missing key `{key}`: {what}"));
                }
            }
        }
        for (key, value) in entries {
            let key_path = path.key(&key);
            match key.as_str() {
                "input" | "workers" | "blocking" | "ack_timeout" | "start_at" => {
                    self.subscription_key(&key, value, &key_path, &mut draft.subscription);
                }
                "output" => draft.output = self.topic_name(value, &key_path),
                "dead_letter" => draft.dead_letter = self.topic_name(value, &key_path),
                "on_error" => {
                    draft.on_error =
                        self.typed::<OnError, T>(value, &key_path, "`dead_letter` or `drop`");
                }
                "flush_on_shutdown" => {
                    draft.flush_on_shutdown =
                        self.typed::<bool, T>(value, &key_path, "true or false");
                }
                "steps" => draft.steps = Some(self.steps(value, &key_path)),
                other => self.issue(
                    key_path,
                    format!(
                        "unknown key `{other}`, expected one of {}",
                        quoted(&PIPELINE_KEYS)
                    ),
                ),
            }
        }
        draft
    }

    /// Reads `input`, `workers`, `blocking` or `ack_timeout` of a pipeline or sink.
    fn subscription_key<T: Tree>(
        &mut self,
        key: &str,
        value: T,
        path: &KeyPath,
        draft: &mut SubscriptionDraft,
    ) {
        match key {
            "input" => draft.input = self.topic_name(value, path),
            "workers" => {
                draft.workers =
                    self.typed::<i64, T>(value, path, "a number of workers from 1 to 64");
            }
            "blocking" => draft.blocking = self.typed::<bool, T>(value, path, "true or false"),
            "start_at" => draft.start_at = self.start_at(value, path),
            _ => draft.ack_timeout = self.duration(value, path),
        }
    }

    /// Reads `[[tests]]`: an array of tables, each a [`PipelineTest`].
    fn tests<T: Tree>(&mut self, value: T, path: &KeyPath) {
        let items = match value.into_items() {
            Ok(items) => items,
            Err(other) => {
                self.test_issues.push(Issue::new(
                    path.clone(),
                    format!(
                        "expected an array of tests (`[[tests]]`), found {}",
                        other.describe()
                    ),
                ));
                return;
            }
        };
        for (index, item) in items.into_iter().enumerate() {
            match item.deserialize_tracked::<PipelineTest>() {
                Ok(test) => self.tests.push(test),
                Err((key, message)) => self
                    .test_issues
                    .push(Issue::new(path.index(index).join(&key), message)),
            }
        }
    }

    /// Reads a pipeline's `steps`: an array of tables, each with a `type`.
    fn steps<T: Tree>(&mut self, value: T, path: &KeyPath) -> Vec<Option<StepConfig>> {
        let items = match value.into_items() {
            Ok(items) => items,
            Err(other) => {
                self.issue(
                    path.clone(),
                    format!(
                        "expected an array of steps (`[{{ type = \"…\", … }}]`), found {}",
                        other.describe()
                    ),
                );
                return Vec::new();
            }
        };
        let mut steps = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let path = path.index(index);
            let Some(mut entries) = self.component_table(item, &path, "step") else {
                steps.push(None);
                continue;
            };
            let kind = take(&mut entries, "type");
            steps.push(self.kind::<StepConfig, T>("step", kind, entries, &path, false));
        }
        steps
    }

    /// Reads the kind-specific part of a component: its `type` and the keys left.
    fn kind<K: ComponentKind, T: Tree>(
        &mut self,
        what: &str,
        kind: Option<T>,
        rest: Vec<(String, T)>,
        path: &KeyPath,
        partial: bool,
    ) -> Option<K> {
        let kind = match kind {
            // A partial override leaves the kind to an earlier file; the layered pass checks it.
            None if partial => return None,
            None => {
                self.issue(
                    path.clone(),
                    format!("missing key `type`, {}", expected_kind::<K>(what)),
                );
                return None;
            }
            Some(kind) => kind,
        };
        let Some(name) = kind.as_str() else {
            self.issue(
                path.key("type"),
                format!("{}, found {}", expected_kind::<K>(what), kind.describe()),
            );
            return None;
        };
        let name = name.to_owned();
        let mut rest = rest;
        let upgraded = deprecated::upgrade(what, &name, &mut rest, path);
        self.deprecated.extend(upgraded.warnings);
        if !upgraded.errors.is_empty() {
            self.issues.extend(upgraded.errors);
            return None;
        }
        match T::from_entries(rest).deserialize_kind::<K>(&name) {
            Ok(config) => Some(config),
            Err(KindFailure::Unknown) => {
                self.issue(
                    path.key("type"),
                    format!("unknown {what} type `{name}`, {}", expected_kind::<K>(what)),
                );
                None
            }
            Err(KindFailure::Field(key, message)) => {
                // Keys a partial override leaves out come from an earlier file.
                if !(partial && message.starts_with("missing key")) {
                    self.issue(path.join(&key), message);
                }
                None
            }
        }
    }

    /// Reads a topic's settings.
    fn topic<T: Tree>(&mut self, value: T, path: &KeyPath) -> Option<TopicDef> {
        match value.deserialize_tracked::<TopicDef>() {
            Ok(topic) => Some(topic),
            Err((key, message)) => {
                let message = if key.is_root() && message.starts_with("invalid type") {
                    format!("expected a table of topic settings, {message}")
                } else {
                    message
                };
                self.issue(path.join(&key), message);
                None
            }
        }
    }

    /// Reads `start_at`: `earliest`, `latest`, an offset or an RFC 3339 time.
    fn start_at<T: Tree>(&mut self, value: T, path: &KeyPath) -> Option<StartAt> {
        let parsed = if let Some(text) = value.as_str() {
            StartAt::parse(text).map_err(|error| error.to_string())
        } else {
            let found = value.describe();
            value
                .deserialize_tracked::<u64>()
                .map(|offset| StartAt::Offset(Offset(offset)))
                .map_err(|_| {
                    format!(
                        "expected `earliest`, `latest`, an offset or an RFC 3339 time, found {found}"
                    )
                })
        };
        match parsed {
            Ok(start_at) => Some(start_at),
            Err(message) => {
                self.issue(path.clone(), message);
                None
            }
        }
    }

    /// Reads a topic name.
    fn topic_name<T: Tree>(&mut self, value: T, path: &KeyPath) -> Option<String> {
        self.string(value, path, "a topic name (a string)")
    }

    /// Reads a string, strictly: `config` would turn a number into one.
    fn string<T: Tree>(&mut self, value: T, path: &KeyPath, expected: &str) -> Option<String> {
        match value.as_str() {
            Some(text) => Some(text.to_owned()),
            None => {
                self.issue(
                    path.clone(),
                    format!("expected {expected}, found {}", value.describe()),
                );
                None
            }
        }
    }

    /// Reads a duration such as `"10s"`.
    fn duration<T: Tree>(&mut self, value: T, path: &KeyPath) -> Option<Duration> {
        let parsed = match value.as_str() {
            Some(text) => parse_duration(text).map_err(|error| error.to_string()),
            None => Err(format!(
                "expected a duration like \"10s\", \"5m\" or \"250ms\", found {}",
                value.describe()
            )),
        };
        parsed
            .map_err(|message| self.issue(path.clone(), message))
            .ok()
    }

    /// Reads a plain value, saying what was expected when it does not fit.
    fn typed<V: DeserializeOwned, T: Tree>(
        &mut self,
        value: T,
        path: &KeyPath,
        expected: &str,
    ) -> Option<V> {
        let found = value.describe();
        match value.deserialize::<V>() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                self.issue(path.clone(), format!("expected {expected}, found {found}"));
                None
            }
        }
    }
}

/// Removes `key` from `entries` and returns its value.
fn take<T>(entries: &mut Vec<(String, T)>, key: &str) -> Option<T> {
    let at = entries.iter().position(|(name, _)| name == key)?;
    Some(entries.remove(at).1)
}

/// `` `a`, `b`, `c` ``.
fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `expected one of: file, stdin`, or why nothing can be expected.
fn expected_kind<K: ComponentKind>(what: &str) -> String {
    if K::KINDS.is_empty() {
        format!("but this build has no {what} kinds")
    } else {
        format!("expected one of: {}", K::KINDS.join(", "))
    }
}
