//! The `aggregate` step: per-window, per-group summaries of the event stream.
//!
//! ```toml
//! steps = [{ type = "aggregate",
//!   group_by = ["path", "status"],
//!   window = { type = "tumbling", size = "1m" },        # or just window = "1m"
//!   allowed_lateness = "10s",
//!   fields = { hits = "count()", p95_ms = "p95(request_time)", visitors = "count_distinct(ip)" } }]
//! ```
//!
//! # Windows
//!
//! - `tumbling` (`size`): consecutive windows `[k·size, (k+1)·size)` aligned on the Unix epoch.
//! - `hopping` (`size`, `hop`): windows of `size` starting every `hop` (`hop ≤ size`, at most
//!   1000 windows per event); an event counts in every window that contains it.
//! - `session` (`gap`): per group, events closer than `gap` to each other form one session;
//!   the window is `[first event, last event + gap)`. A late-arriving event that bridges two
//!   sessions merges them.
//!
//! # Time
//!
//! With `time = "event"` (the default) an event's time is its `time_field` (`timestamp` by
//! default; a timestamp, or a string in RFC 3339). The **watermark** is the latest event time
//! seen minus `allowed_lateness` (default 0). A window closes — is emitted and forgotten — once
//! the watermark reaches its end. An event is **late** when every window it belongs to has
//! closed (for sessions: when its time is at or before the watermark, since it could belong to a
//! session already emitted); late events, and events without a usable time, are rejected with
//! [`StepContext::reject`] — counted, and kept in the dead-letter topic unless the pipeline drops
//! errors. Results therefore never depend on how the stream was cut into batches.
//!
//! With `time = "processing"` events are placed by the clock when their batch is processed and
//! windows close on the pipeline's tick once the clock passes their end; nothing is ever late.
//! With event time, ticks do nothing: windows close as event time advances, and at the end.
//!
//! [`Step::flush`] (end of input, shutdown) emits every open window.
//!
//! # Output
//!
//! One event per closed window and group: `window_start` and `window_end` (timestamps), the
//! `group_by` fields (a missing one is `null`), then the named results in the order the config
//! gives them. Windows are emitted in time order; groups in the order they first appeared.
//!
//! # Functions
//!
//! Missing and `null` values are skipped; numeric functions skip values that are not numbers.
//! - `count()`: events; `count(f)`: events where `f` has a non-null value.
//! - `sum(f)`: an int when every value was an int (summed exactly, a float if the sum leaves the
//!   64-bit range), else a float; `null` when there were no numbers.
//! - `min(f)`, `max(f)`: the extreme number, keeping its type; `avg(f)`: a float.
//! - `count_distinct(f)`: distinct values by type and content (`1` and `1.0` differ, as do `"1"`
//!   and `1`); exact up to 10 000 distinct values per group, then HyperLogLog with
//!   2¹⁴ registers: relative standard error 0.81% (module `hll`).
//! - `p50(f)`, `p90(f)`, `p95(f)`, `p99(f)`, `percentile(f, q)` with `0 ≤ q ≤ 1`: the value of
//!   rank `⌊q·(n−1)⌋`, within 1% relative error (DDSketch, module `sketch`); exact at `q = 0` and
//!   `q = 1`.
//! - `first(f)`, `last(f)`: the value from the earliest / latest event by event time (by arrival
//!   for ties and with processing time).
//! - `top_k(f, k)` (`k ≤ 1000`): the `k` most frequent values as `[{ value, count }, …]`, most
//!   frequent first; counts are exact up to `max(1000, 20k)` distinct values per group (capped at
//!   20 000), then Space-Saving estimates that overestimate by at most `n / capacity` (module
//!   `topk`).
//!
//! A function's argument is an [expression](crate::condition): `sum(bytes / 1024)` works.
//!
//! # Bounded state
//!
//! At most `max_groups` groups per window (default 100 000; for sessions, keys with an open
//! session). An event that would open one more is rejected with an error naming the window and
//! the limit. The state must see every event: pipelines with this step run one worker (see
//! [`StepConfig::requires_single_worker`](crate::StepConfig::requires_single_worker)).

mod functions;
mod hll;
mod sketch;
#[cfg(test)]
mod tests;
mod topk;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};

use self::functions::{Acc, Arg, Function, StatKind};
use super::common::{OrderedMap, join, parse_path};
use crate::event::{Event, FieldName, Fields, Value};
use crate::hash::{BuildPreHashed, StableHasher, values_equal};
use crate::step::{BuildError, Step, StepContext};
use crate::units::{HumanDuration, parse_duration};

/// Config of the `aggregate` step.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Fields (dotted paths) whose values define a group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// The windows: `"1m"` (tumbling) or a table with `type`.
    pub window: WindowConfig,
    /// Event time (the default) or processing time.
    #[serde(default)]
    pub time: TimeMode,
    /// The field with the event time; `timestamp` by default.
    #[serde(default)]
    pub time_field: Option<String>,
    /// How far behind the latest event time events may arrive; 0 by default.
    #[serde(default)]
    pub allowed_lateness: Option<HumanDuration>,
    /// Most groups per window.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
    /// The results: a name to a function call such as `count()` or `p95(request_time)`.
    pub fields: OrderedMap<String>,
}

fn default_max_groups() -> usize {
    100_000
}

/// Which clock places events in windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeMode {
    /// The event's own time (`time_field`).
    #[default]
    Event,
    /// The time the event is processed.
    Processing,
}

/// The kind of windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowConfig {
    /// Back-to-back windows of `size`.
    Tumbling {
        /// Window length.
        size: HumanDuration,
    },
    /// Windows of `size` starting every `hop`.
    Hopping {
        /// Window length.
        size: HumanDuration,
        /// Time between window starts.
        hop: HumanDuration,
    },
    /// Per-group sessions ending `gap` after their last event.
    Session {
        /// The inactivity that ends a session.
        gap: HumanDuration,
    },
}

/// The table form of [`WindowConfig`].
#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum WindowTable {
    Tumbling {
        size: HumanDuration,
    },
    Hopping {
        size: HumanDuration,
        hop: HumanDuration,
    },
    Session {
        gap: HumanDuration,
    },
}

impl<'de> serde::Deserialize<'de> for WindowConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WindowVisitor;
        impl<'de> serde::de::Visitor<'de> for WindowVisitor {
            type Value = WindowConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"1m\" (tumbling windows) or a table such as \
                     { type = \"hopping\", size = \"5m\", hop = \"1m\" }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WindowConfig, E> {
                parse_duration(v)
                    .map(|size| WindowConfig::Tumbling {
                        size: HumanDuration(size),
                    })
                    .map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<WindowConfig, A::Error> {
                let table: WindowTable = serde::Deserialize::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(match table {
                    WindowTable::Tumbling { size } => WindowConfig::Tumbling { size },
                    WindowTable::Hopping { size, hop } => WindowConfig::Hopping { size, hop },
                    WindowTable::Session { gap } => WindowConfig::Session { gap },
                })
            }
        }
        deserializer.deserialize_any(WindowVisitor)
    }
}

/// Most windows one event may fall in (`size / hop`).
const MAX_WINDOWS_PER_EVENT: i64 = 1000;

/// Nanoseconds of a duration, if it fits.
fn nanos(key: &str, duration: HumanDuration) -> Result<i64, BuildError> {
    let nanos = i64::try_from(duration.get().as_nanos()).unwrap_or(i64::MAX);
    if nanos <= 0 {
        return Err(BuildError::at(
            key,
            format!("`{key}` must be longer than 0"),
        ));
    }
    if nanos > 100 * 365 * 86_400 * 1_000_000_000 {
        return Err(BuildError::at(
            key,
            format!("`{key}` must be at most 100 years"),
        ));
    }
    Ok(nanos)
}

impl AggregateConfig {
    /// Parses the functions, checks the windows and names, and interns the paths.
    ///
    /// # Errors
    /// A [`BuildError`] at the key at fault: `fields` (empty), `fields.<name>` (a bad function,
    /// or a name used twice or clashing with `window_start`, `window_end` or a `group_by` field),
    /// `group_by[<i>]`, `window.size` / `window.hop` / `window.gap` (zero, too long, a hop longer
    /// than the size or more than 1000 windows per event), `time_field` / `allowed_lateness`
    /// (given with processing time), `max_groups` (0).
    pub fn build(&self) -> Result<Aggregate, BuildError> {
        if self.fields.is_empty() {
            return Err(BuildError::at(
                "fields",
                "`fields` is empty: name at least one result, such as hits = \"count()\"",
            ));
        }
        let group_by = self
            .group_by
            .iter()
            .enumerate()
            .map(|(i, path)| parse_path(&format!("group_by[{i}]"), path))
            .collect::<Result<Vec<_>, _>>()?;
        let mut taken: Vec<Vec<FieldName>> = vec![
            vec![FieldName::new(WINDOW_START)],
            vec![FieldName::new(WINDOW_END)],
        ];
        for (i, path) in group_by.iter().enumerate() {
            if taken.contains(path) {
                return Err(BuildError::at(
                    format!("group_by[{i}]"),
                    format!(
                        "`{}` is named twice or clashes with the window fields",
                        join(path)
                    ),
                ));
            }
            taken.push(path.clone());
        }

        let mut stats: Vec<Stat> = Vec::new();
        let mut outputs = Vec::with_capacity(self.fields.0.len());
        for (name, spec) in self.fields.iter() {
            let key = format!("fields.{name}");
            let path = parse_path(&key, name)?;
            if taken.contains(&path) {
                return Err(BuildError::at(
                    &key,
                    format!(
                        "the result `{name}` would overwrite `window_start`, `window_end`, a \
                         `group_by` field or another result"
                    ),
                ));
            }
            taken.push(path.clone());
            let (function, arg) =
                functions::parse(spec).map_err(|message| BuildError::at(&key, message))?;
            let kind = function.stat();
            let arg_key = arg.as_ref().map(Arg::key);
            let stat = match stats
                .iter()
                .position(|stat| stat.kind == kind && stat.arg_key == arg_key)
            {
                Some(index) => index,
                None => {
                    stats.push(Stat { kind, arg, arg_key });
                    stats.len() - 1
                }
            };
            outputs.push(Output {
                path,
                stat,
                function,
            });
        }

        let window = match self.window {
            WindowConfig::Tumbling { size } => {
                let size = nanos("window.size", size)?;
                WindowKind::Fixed { size, hop: size }
            }
            WindowConfig::Hopping { size, hop } => {
                let (size, hop) = (nanos("window.size", size)?, nanos("window.hop", hop)?);
                if hop > size {
                    return Err(BuildError::at(
                        "window.hop",
                        "`hop` must not be longer than `size` (windows would leave gaps)",
                    ));
                }
                if (size as u64).div_ceil(hop as u64) > MAX_WINDOWS_PER_EVENT as u64 {
                    return Err(BuildError::at(
                        "window.hop",
                        format!(
                            "`size / hop` is above {MAX_WINDOWS_PER_EVENT}: each event would \
                             update that many windows"
                        ),
                    ));
                }
                WindowKind::Fixed { size, hop }
            }
            WindowConfig::Session { gap } => WindowKind::Session {
                gap: nanos("window.gap", gap)?,
            },
        };
        let time = match self.time {
            TimeMode::Event => TimeSource::Event {
                field: parse_path(
                    "time_field",
                    self.time_field
                        .as_deref()
                        .unwrap_or(super::parse::TIMESTAMP),
                )?,
                lateness: match self.allowed_lateness {
                    Some(lateness) => i64::try_from(lateness.get().as_nanos()).map_err(|_| {
                        BuildError::at("allowed_lateness", "`allowed_lateness` is too long")
                    })?,
                    None => 0,
                },
            },
            TimeMode::Processing => {
                for (key, given) in [
                    ("time_field", self.time_field.is_some()),
                    ("allowed_lateness", self.allowed_lateness.is_some()),
                ] {
                    if given {
                        return Err(BuildError::at(
                            key,
                            format!("`{key}` is only used with time = \"event\""),
                        ));
                    }
                }
                TimeSource::Processing
            }
        };
        if self.max_groups == 0 {
            return Err(BuildError::at(
                "max_groups",
                "`max_groups` must be at least 1",
            ));
        }
        let flat = group_by
            .iter()
            .chain(outputs.iter().map(|output| &output.path))
            .all(|path| path.len() == 1);
        let state = match window {
            WindowKind::Fixed { .. } => State::Fixed(BTreeMap::new()),
            WindowKind::Session { .. } => State::Sessions(Sessions::default()),
        };
        Ok(Aggregate {
            spec: Spec {
                group_by,
                window,
                time,
                max_groups: self.max_groups,
                stats,
                outputs,
                flat,
                window_start: FieldName::new(WINDOW_START),
                window_end: FieldName::new(WINDOW_END),
            },
            state,
            max_time: None,
            seq: 0,
            input_seq: 0,
            held_inputs: InputHolds::default(),
            clock: Box::new(Utc::now),
            starts: Vec::new(),
            input: Vec::new(),
        })
    }
}

/// The output field with the start of the window.
pub const WINDOW_START: &str = "window_start";
/// The output field with the end of the window.
pub const WINDOW_END: &str = "window_end";

/// Where processing time comes from; tests substitute their own.
type Clock = Box<dyn FnMut() -> DateTime<Utc> + Send>;

/// The `aggregate` step, built from an [`AggregateConfig`].
pub struct Aggregate {
    spec: Spec,
    state: State,
    /// The latest event time seen (event time only).
    max_time: Option<i64>,
    /// Arrival counter, to order `first`/`last` ties.
    seq: u64,
    /// The input batch being processed (see [`Step::oldest_held_input`]).
    input_seq: u64,
    /// The first input batch of every open window or session.
    held_inputs: InputHolds,
    clock: Clock,
    /// Scratch: the windows an event goes to, with its group there if it exists.
    starts: Vec<(i64, Option<u32>)>,
    input: Vec<Event>,
}

impl fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregate")
            .field("group_by", &self.spec.group_by)
            .field("window", &self.spec.window)
            .field("max_time", &self.max_time)
            .finish_non_exhaustive()
    }
}

/// What the config fixed at build time.
struct Spec {
    group_by: Vec<Vec<FieldName>>,
    window: WindowKind,
    time: TimeSource,
    max_groups: usize,
    stats: Vec<Stat>,
    outputs: Vec<Output>,
    /// Every output path is one name, all distinct: fields are pushed without lookups.
    flat: bool,
    window_start: FieldName,
    window_end: FieldName,
}

#[derive(Debug, Clone, Copy)]
enum WindowKind {
    /// Tumbling windows have `hop == size`.
    Fixed {
        size: i64,
        hop: i64,
    },
    Session {
        gap: i64,
    },
}

enum TimeSource {
    Event {
        field: Vec<FieldName>,
        lateness: i64,
    },
    Processing,
}

/// One piece of state per group, shared by the functions that read it.
struct Stat {
    kind: StatKind,
    arg: Option<Arg>,
    arg_key: Option<String>,
}

/// One named result.
struct Output {
    path: Vec<FieldName>,
    stat: usize,
    function: Function,
}

/// The input batches open windows hold, as a multiset of each window's first input batch: the
/// pipeline acknowledges an input batch only once no window holds it.
#[derive(Default)]
struct InputHolds(BTreeMap<u64, usize>);

impl InputHolds {
    fn add(&mut self, seq: u64) {
        *self.0.entry(seq).or_default() += 1;
    }

    fn remove(&mut self, seq: u64) {
        if let Some(count) = self.0.get_mut(&seq) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&seq);
            }
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.0.keys().next().copied()
    }
}

/// One tumbling or hopping window: its groups and the first input batch folded into it.
struct Window {
    groups: Groups<Vec<Acc>>,
    first_input: u64,
}

enum State {
    /// Tumbling and hopping windows by start time.
    Fixed(BTreeMap<i64, Window>),
    Sessions(Sessions),
}

/// Open sessions: per group, its sessions sorted by start; and all of them by end, to close.
#[derive(Default)]
struct Sessions {
    groups: Groups<Vec<Session>>,
    /// `(end, group slot, session serial)` of every open session.
    by_end: BTreeSet<(i64, u32, u64)>,
    next_serial: u64,
}

struct Session {
    serial: u64,
    /// The first input batch folded into the session.
    first_input: u64,
    start: i64,
    /// The latest event time in the session; it ends at `last + gap`.
    last: i64,
    accs: Vec<Acc>,
}

const NO_SLOT: u32 = u32::MAX;

/// Groups keyed by the hash of their key values, with the values kept to tell collisions apart.
/// Slots keep insertion order (emission order) and are reused after removal (sessions).
struct Groups<T> {
    index: HashMap<u64, u32, BuildPreHashed>,
    slots: Vec<Option<Group<T>>>,
    free: Vec<u32>,
    live: usize,
}

struct Group<T> {
    hash: u64,
    key: Vec<Value>,
    /// The next group with the same hash.
    next: u32,
    data: T,
}

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Groups {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Groups<T> {
    /// The slot of the group with this hash whose key `matches`.
    #[inline]
    fn find(&self, hash: u64, mut matches: impl FnMut(&[Value]) -> bool) -> Option<u32> {
        let mut at = *self.index.get(&hash)?;
        while at != NO_SLOT {
            let group = self.slots.get(at as usize)?.as_ref()?;
            if matches(&group.key) {
                return Some(at);
            }
            at = group.next;
        }
        None
    }

    fn insert(&mut self, hash: u64, key: Vec<Value>, data: T) -> u32 {
        let next = self.index.get(&hash).copied().unwrap_or(NO_SLOT);
        let group = Group {
            hash,
            key,
            next,
            data,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(group);
                slot
            }
            None => {
                self.slots.push(Some(group));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, slot);
        self.live += 1;
        slot
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Group<T>> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    fn get(&self, slot: u32) -> Option<&Group<T>> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Removes a group, unlinking it from its hash chain.
    fn remove(&mut self, slot: u32) -> Option<Group<T>> {
        let group = self.slots.get_mut(slot as usize)?.take()?;
        let head = self.index.get(&group.hash).copied();
        if head == Some(slot) {
            if group.next == NO_SLOT {
                self.index.remove(&group.hash);
            } else {
                self.index.insert(group.hash, group.next);
            }
        } else {
            let mut at = head.unwrap_or(NO_SLOT);
            while at != NO_SLOT {
                let Some(Some(previous)) = self.slots.get_mut(at as usize) else {
                    break;
                };
                if previous.next == slot {
                    previous.next = group.next;
                    break;
                }
                at = previous.next;
            }
        }
        self.free.push(slot);
        self.live -= 1;
        Some(group)
    }

    fn into_groups(self) -> impl Iterator<Item = Group<T>> {
        self.slots.into_iter().flatten()
    }
}

impl Spec {
    /// The hash of the event's group key; a missing field counts as `null`.
    #[inline]
    fn key_hash(&self, event: &Event) -> u64 {
        let mut hasher = StableHasher::new(0x0062_09b7);
        for path in &self.group_by {
            hasher.write_value(event.fields().get_path(path).unwrap_or(&Value::Null));
        }
        hasher.finish()
    }

    #[inline]
    fn key_matches(&self, event: &Event, key: &[Value]) -> bool {
        self.group_by.iter().zip(key).all(|(path, stored)| {
            values_equal(
                event.fields().get_path(path).unwrap_or(&Value::Null),
                stored,
            )
        })
    }

    fn owned_key(&self, event: &Event) -> Vec<Value> {
        self.group_by
            .iter()
            .map(|path| {
                event
                    .fields()
                    .get_path(path)
                    .map_or(Value::Null, functions::owned)
            })
            .collect()
    }

    fn new_accs(&self) -> Vec<Acc> {
        self.stats.iter().map(|stat| Acc::new(stat.kind)).collect()
    }

    #[inline]
    fn update(&self, accs: &mut [Acc], event: &Event, time: i64, seq: u64) {
        for (stat, acc) in self.stats.iter().zip(accs) {
            match &stat.arg {
                None => acc.update(stat.kind, None, time, seq),
                Some(arg) => arg.with(event, |value| acc.update(stat.kind, value, time, seq)),
            }
        }
    }

    /// The event's time in nanoseconds, or why it has none.
    fn event_time(&self, event: &Event, field: &[FieldName]) -> Result<i64, String> {
        let ts = match event.fields().get_path(field) {
            Some(Value::Timestamp(ts)) => *ts,
            Some(Value::String(text)) => super::types::parse_rfc3339(text).ok_or_else(|| {
                format!(
                    "field `{}` is not an RFC 3339 time: {}",
                    join(field),
                    super::types::shown(&Value::String(text.clone()))
                )
            })?,
            Some(other) => {
                return Err(format!(
                    "field `{}` for the event time is {}, not a timestamp",
                    join(field),
                    other.kind()
                ));
            }
            None => return Err(format!("no field `{}` for the event time", join(field))),
        };
        ts.timestamp_nanos_opt().ok_or_else(|| {
            format!(
                "the event time {} is outside the years 1677 to 2262",
                crate::codec::json::format_timestamp(&ts)
            )
        })
    }

    /// One result event.
    fn output(&self, start: i64, end: i64, key: &[Value], accs: &[Acc]) -> Event {
        let mut fields = Fields::with_capacity(2 + key.len() + self.outputs.len());
        fields.push_unchecked(
            self.window_start.clone(),
            Value::Timestamp(DateTime::from_timestamp_nanos(start)),
        );
        fields.push_unchecked(
            self.window_end.clone(),
            Value::Timestamp(DateTime::from_timestamp_nanos(end)),
        );
        let mut event = Event::from_fields(fields);
        let results = self.outputs.iter().map(|output| {
            let value = accs
                .get(output.stat)
                .map_or(Value::Null, |acc| acc.finish(output.function));
            (&output.path, value)
        });
        let groups = self.group_by.iter().zip(key.iter().cloned());
        for (path, value) in groups.chain(results) {
            match path.as_slice() {
                [name] if self.flat => event.fields_mut().push_unchecked(name.clone(), value),
                _ => event.insert_path(path, value),
            }
        }
        event
    }
}

fn time_text(nanos: i64) -> String {
    crate::codec::json::format_timestamp(&DateTime::from_timestamp_nanos(nanos))
}

impl Aggregate {
    fn watermark(&self) -> Option<i64> {
        match self.spec.time {
            TimeSource::Event { lateness, .. } => {
                self.max_time.map(|max| max.saturating_sub(lateness))
            }
            TimeSource::Processing => None,
        }
    }

    /// Adds one event to its windows, or says why it cannot be.
    fn add(&mut self, event: &Event, now: Option<i64>) -> Result<(), String> {
        let time = match (&self.spec.time, now) {
            (TimeSource::Event { field, .. }, _) => self.spec.event_time(event, field)?,
            (TimeSource::Processing, Some(now)) => now,
            (TimeSource::Processing, None) => return Err("no processing time".to_owned()),
        };
        let watermark = self.watermark();
        self.seq += 1;
        let seq = self.seq;
        let added = self.insert(event, time, watermark, seq);
        // Every valid time moves event time on, even when the event could not be added (a late
        // event's time is behind the watermark, so it moves nothing).
        if let TimeSource::Event { .. } = self.spec.time {
            self.max_time = Some(self.max_time.map_or(time, |max| max.max(time)));
        }
        added
    }

    /// Puts the event at `time` into its windows, or says why it cannot be.
    fn insert(
        &mut self,
        event: &Event,
        time: i64,
        watermark: Option<i64>,
        seq: u64,
    ) -> Result<(), String> {
        match (&mut self.state, self.spec.window) {
            (State::Fixed(windows), WindowKind::Fixed { size, hop }) => {
                let spec = &self.spec;
                let starts = &mut self.starts;
                starts.clear();
                let first = time
                    .checked_sub(size)
                    .map(|earliest| earliest.div_euclid(hop) + 1)
                    .ok_or("the event time is out of range")?;
                let last = time.div_euclid(hop);
                for k in first..=last {
                    let start = k.checked_mul(hop).ok_or("the event time is out of range")?;
                    if start.checked_add(size).is_none() {
                        return Err("the event time is out of range".to_owned());
                    }
                    if watermark.is_some_and(|watermark| start + size <= watermark) {
                        continue;
                    }
                    starts.push((start, None));
                }
                if starts.is_empty() {
                    return Err(format!(
                        "late event: its time {} is behind the watermark {} and its window has \
                         closed (raise allowed_lateness to accept it)",
                        time_text(time),
                        time_text(watermark.unwrap_or(i64::MIN))
                    ));
                }
                let hash = spec.key_hash(event);
                for (start, slot) in starts.iter_mut() {
                    if let Some(Window { groups, .. }) = windows.get(start) {
                        *slot = groups.find(hash, |key| spec.key_matches(event, key));
                        if slot.is_none() && groups.live >= spec.max_groups {
                            return Err(format!(
                                "the window [{}, {}) already holds max_groups = {} groups; this \
                                 event would open another (raise max_groups or group by fewer \
                                 fields)",
                                time_text(*start),
                                time_text(*start + size),
                                spec.max_groups
                            ));
                        }
                    }
                }
                for &(start, slot) in starts.iter() {
                    let input_seq = self.input_seq;
                    let held_inputs = &mut self.held_inputs;
                    let Window { groups, .. } = windows.entry(start).or_insert_with(|| {
                        held_inputs.add(input_seq);
                        Window {
                            groups: Groups::default(),
                            first_input: input_seq,
                        }
                    });
                    let slot = match slot {
                        Some(slot) => slot,
                        None => groups.insert(hash, spec.owned_key(event), spec.new_accs()),
                    };
                    if let Some(group) = groups.get_mut(slot) {
                        spec.update(&mut group.data, event, time, seq);
                    }
                }
            }
            (State::Sessions(sessions), WindowKind::Session { gap }) => {
                let spec = &self.spec;
                if let Some(watermark) = watermark
                    && time <= watermark
                {
                    return Err(format!(
                        "late event: its time {} is at or behind the watermark {}, so its session \
                         may have closed (raise allowed_lateness to accept it)",
                        time_text(time),
                        time_text(watermark)
                    ));
                }
                let end = time
                    .checked_add(gap)
                    .ok_or("the event time is out of range")?;
                let hash = spec.key_hash(event);
                let slot = match sessions
                    .groups
                    .find(hash, |key| spec.key_matches(event, key))
                {
                    Some(slot) => slot,
                    None => {
                        if sessions.groups.live >= spec.max_groups {
                            return Err(format!(
                                "max_groups = {} groups already have open sessions; this event \
                                 would open another (raise max_groups or group by fewer fields)",
                                spec.max_groups
                            ));
                        }
                        sessions
                            .groups
                            .insert(hash, spec.owned_key(event), Vec::new())
                    }
                };
                let Some(group) = sessions.groups.get_mut(slot) else {
                    return Err("internal: lost a session group".to_owned());
                };
                let list = &mut group.data;
                // A session touches the event when its span [start, last + gap] meets
                // [time, time + gap]. Open sessions never touch each other, so the event joins
                // at most a run of neighbours, which it merges.
                let touches =
                    |session: &Session| session.start <= end && time <= session.last + gap;
                match list.iter().position(touches) {
                    None => {
                        let serial = sessions.next_serial;
                        sessions.next_serial += 1;
                        let mut accs = spec.new_accs();
                        spec.update(&mut accs, event, time, seq);
                        sessions.by_end.insert((end, slot, serial));
                        self.held_inputs.add(self.input_seq);
                        let at = list.partition_point(|other| other.start <= time);
                        list.insert(
                            at,
                            Session {
                                serial,
                                first_input: self.input_seq,
                                start: time,
                                last: time,
                                accs,
                            },
                        );
                    }
                    Some(first) => {
                        let old = &list[first];
                        sessions.by_end.remove(&(old.last + gap, slot, old.serial));
                        while list.get(first + 1).is_some_and(&touches) {
                            let other = list.remove(first + 1);
                            sessions
                                .by_end
                                .remove(&(other.last + gap, slot, other.serial));
                            let session = &mut list[first];
                            // The merged session is held by the older of the two first inputs.
                            self.held_inputs
                                .remove(session.first_input.max(other.first_input));
                            session.first_input = session.first_input.min(other.first_input);
                            session.last = session.last.max(other.last);
                            for (acc, theirs) in session.accs.iter_mut().zip(other.accs) {
                                acc.merge(theirs);
                            }
                        }
                        let session = &mut list[first];
                        session.start = session.start.min(time);
                        session.last = session.last.max(time);
                        spec.update(&mut session.accs, event, time, seq);
                        sessions
                            .by_end
                            .insert((session.last + gap, slot, session.serial));
                    }
                }
            }
            // The state always matches the window kind (both set at build).
            _ => return Err("internal: window state mismatch".to_owned()),
        }
        Ok(())
    }

    /// Emits, in time order, every window whose end is at or before `bound`.
    fn emit_until(&mut self, bound: i64, out: &mut Vec<Event>) {
        let spec = &self.spec;
        match (&mut self.state, spec.window) {
            (State::Fixed(windows), WindowKind::Fixed { size, .. }) => {
                while let Some(entry) = windows.first_entry() {
                    let start = *entry.key();
                    if start.saturating_add(size) > bound {
                        break;
                    }
                    let Window {
                        groups,
                        first_input,
                    } = entry.remove();
                    self.held_inputs.remove(first_input);
                    out.reserve(groups.live);
                    for group in groups.into_groups() {
                        out.push(spec.output(start, start + size, &group.key, &group.data));
                    }
                }
            }
            (State::Sessions(sessions), WindowKind::Session { gap }) => {
                while let Some(&(end, slot, serial)) = sessions.by_end.first() {
                    if end > bound {
                        break;
                    }
                    sessions.by_end.pop_first();
                    let Some(group) = sessions.groups.get_mut(slot) else {
                        continue;
                    };
                    let Some(at) = group.data.iter().position(|s| s.serial == serial) else {
                        continue;
                    };
                    let session = group.data.remove(at);
                    self.held_inputs.remove(session.first_input);
                    let empty = group.data.is_empty();
                    if let Some(group) = sessions.groups.get(slot) {
                        out.push(spec.output(
                            session.start,
                            session.last + gap,
                            &group.key,
                            &session.accs,
                        ));
                    }
                    if empty {
                        sessions.groups.remove(slot);
                    }
                }
            }
            _ => {}
        }
    }

    #[cfg(test)]
    fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl Step for Aggregate {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        self.input_seq = ctx.input_seq();
        let now = match self.spec.time {
            TimeSource::Processing => (self.clock)().timestamp_nanos_opt(),
            TimeSource::Event { .. } => None,
        };
        let mut input = std::mem::take(&mut self.input);
        std::mem::swap(events, &mut input);
        for event in input.drain(..) {
            if let Err(error) = self.add(&event, now) {
                ctx.reject(event, error);
            }
            // Close what the watermark passed right away, so the state an event meets (and its
            // `max_groups` room) does not depend on where batches were cut.
            if let Some(watermark) = self.watermark() {
                self.emit_until(watermark, events);
            }
        }
        self.input = input;
        if let Some(now) = now {
            self.emit_until(now, events);
        }
    }

    fn tick(&mut self, now: DateTime<Utc>, out: &mut Vec<Event>, _ctx: &mut StepContext) {
        if let TimeSource::Processing = self.spec.time
            && let Some(now) = now.timestamp_nanos_opt()
        {
            self.emit_until(now, out);
        }
    }

    fn flush(&mut self, out: &mut Vec<Event>, _ctx: &mut StepContext) {
        self.emit_until(i64::MAX, out);
    }

    fn oldest_held_input(&self) -> Option<u64> {
        self.held_inputs.oldest()
    }
}
