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

mod config;
mod functions;
mod hll;
mod sketch;
mod state;
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

pub use self::config::{AggregateConfig, TimeMode, WindowConfig};
use self::state::*;

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
        match self.spec.window {
            WindowKind::Fixed { size, hop } => {
                self.insert_fixed(event, time, watermark, seq, (size, hop))
            }
            WindowKind::Session { gap } => self.insert_session(event, time, watermark, seq, gap),
        }
    }

    /// Puts the event into every tumbling or hopping window of `size` every `hop` that holds
    /// `time` and is still open.
    fn insert_fixed(
        &mut self,
        event: &Event,
        time: i64,
        watermark: Option<i64>,
        seq: u64,
        (size, hop): (i64, i64),
    ) -> Result<(), String> {
        // The state always matches the window kind (both set at build).
        let State::Fixed(windows) = &mut self.state else {
            return Err("internal: window state mismatch".to_owned());
        };
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
        Ok(())
    }

    /// Puts the event into its group's session that `time` touches (merging the sessions it
    /// joins), or opens a new one.
    fn insert_session(
        &mut self,
        event: &Event,
        time: i64,
        watermark: Option<i64>,
        seq: u64,
        gap: i64,
    ) -> Result<(), String> {
        // The state always matches the window kind (both set at build).
        let State::Sessions(sessions) = &mut self.state else {
            return Err("internal: window state mismatch".to_owned());
        };
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
        let touches = |session: &Session| session.start <= end && time <= session.last + gap;
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
