//! The `dedupe` step: drops events whose key was already seen recently.
//!
//! ```toml
//! steps = [{ type = "dedupe", group_by = ["event_id"], window = "10m", max_events = 100000 }]
//! ```
//!
//! An event is a duplicate when an earlier event had the same values in `group_by` (dotted paths)
//! and that key is still remembered: it was first seen less than `window` ago (processing time;
//! no `window` means no time limit), and it is among the `max_events` most recently seen keys
//! (default 100 000; least recently seen keys are forgotten first). A duplicate does not extend
//! its key's window, but it does count as recent use. Duplicates are dropped and counted with
//! [`StepContext::count_dropped`].
//!
//! Keys are remembered as 128-bit hashes of the field values (sluice's stable hash, two
//! independent 64-bit halves), not as the values, so memory per key is fixed (about 64 bytes)
//! and the chance that two different keys collide is negligible (about 10⁻²⁹ per pair). A missing
//! field is hashed as missing, distinct from `null`; an event with none of the fields is never a
//! duplicate (it passes unchanged), so events lacking the key are not all dropped as one.
//!
//! The state must see every event: pipelines with this step run one worker (see
//! [`StepConfig::requires_single_worker`](crate::StepConfig::requires_single_worker)).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::common::parse_path;
use crate::event::{Event, FieldName};
use crate::hash::{BuildPreHashed, StableHasher};
use crate::step::{BuildError, Step, StepContext};
use crate::units::HumanDuration;

/// Config of the `dedupe` step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// The fields whose values identify an event (dotted paths): `group_by`, as in `aggregate`
    /// and `sample` (`fields` is a deprecated alias).
    pub group_by: Vec<String>,
    /// How long after its first sighting a key is remembered; unlimited when absent.
    #[serde(default)]
    pub window: Option<HumanDuration>,
    /// How many keys are remembered at most.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
}

fn default_max_events() -> usize {
    100_000
}

/// Most keys a dedupe step may remember (64 bytes each: 640 MiB).
const MAX_EVENTS_LIMIT: usize = 10_000_000;

impl DedupeConfig {
    /// Interns the paths and sizes the cache.
    ///
    /// # Errors
    /// A [`BuildError`] at `group_by` when empty, at `group_by[<i>]` for a bad path, at `window` when
    /// zero, at `max_events` when 0 or above 10 000 000.
    pub fn build(&self) -> Result<Dedupe, BuildError> {
        if self.group_by.is_empty() {
            return Err(BuildError::at(
                "group_by",
                "`group_by` is empty: name the key fields",
            ));
        }
        let fields = self
            .group_by
            .iter()
            .enumerate()
            .map(|(i, path)| parse_path(&format!("group_by[{i}]"), path))
            .collect::<Result<Vec<_>, _>>()?;
        if self.window.is_some_and(|window| window.get().is_zero()) {
            return Err(BuildError::at("window", "`window` must be longer than 0"));
        }
        if self.max_events == 0 || self.max_events > MAX_EVENTS_LIMIT {
            return Err(BuildError::at(
                "max_events",
                format!("`max_events` must be between 1 and {MAX_EVENTS_LIMIT}"),
            ));
        }
        Ok(Dedupe {
            fields,
            window: self.window.map(HumanDuration::get),
            seen: Lru::new(self.max_events),
            clock: Box::new(Instant::now),
        })
    }
}

/// Where the step reads processing time; tests substitute their own.
type Clock = Box<dyn FnMut() -> Instant + Send>;

/// The `dedupe` step, built from a [`DedupeConfig`].
pub struct Dedupe {
    fields: Vec<Vec<FieldName>>,
    window: Option<Duration>,
    seen: Lru,
    clock: Clock,
}

impl fmt::Debug for Dedupe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedupe")
            .field("fields", &self.fields)
            .field("window", &self.window)
            .field("remembered", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl Dedupe {
    /// The event's key, or `None` when it has none of the fields.
    fn key(&self, event: &Event) -> Option<u128> {
        let mut low = StableHasher::new(0x5eed_0001);
        let mut high = StableHasher::new(0x5eed_0002);
        let mut found = false;
        for path in &self.fields {
            match event.fields().get_path(path) {
                Some(value) => {
                    found = true;
                    for hasher in [&mut low, &mut high] {
                        hasher.write_u64(1);
                        hasher.write_value(value);
                    }
                }
                None => {
                    low.write_u64(0);
                    high.write_u64(0);
                }
            }
        }
        found.then(|| u128::from(low.finish()) | (u128::from(high.finish()) << 64))
    }

    #[cfg(test)]
    fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl Step for Dedupe {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        let now = (self.clock)();
        let before = events.len();
        events.retain(|event| {
            let Some(key) = self.key(event) else {
                return true;
            };
            match self.seen.get(key) {
                Some(slot) => {
                    let fresh = self.window.is_none_or(|window| {
                        now.saturating_duration_since(self.seen.first_seen(slot)) < window
                    });
                    if fresh {
                        self.seen.touch(slot, None);
                        false
                    } else {
                        // Forgotten by time: this event starts the key's window again.
                        self.seen.touch(slot, Some(now));
                        true
                    }
                }
                None => {
                    self.seen.insert(key, now);
                    true
                }
            }
        });
        let dropped = before - events.len();
        if dropped > 0 {
            ctx.count_dropped(dropped as u64);
        }
    }
}

/// Sentinel for "no slot" in the recency list.
const NONE: u32 = u32::MAX;

/// A bounded set of keys in recency order: a hash map to slots of a doubly linked list.
struct Lru {
    index: HashMap<u128, u32, BuildPreHashed>,
    slots: Vec<Slot>,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
    capacity: usize,
}

struct Slot {
    key: u128,
    first_seen: Instant,
    prev: u32,
    next: u32,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Lru {
            index: HashMap::with_capacity_and_hasher(
                capacity.min(1 << 16),
                BuildPreHashed::default(),
            ),
            slots: Vec::with_capacity(capacity.min(1 << 16)),
            head: NONE,
            tail: NONE,
            capacity,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn get(&self, key: u128) -> Option<u32> {
        self.index.get(&key).copied()
    }

    fn first_seen(&self, slot: u32) -> Instant {
        self.slots[slot as usize].first_seen
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let entry = &self.slots[slot as usize];
            (entry.prev, entry.next)
        };
        match prev {
            NONE => self.head = next,
            prev => self.slots[prev as usize].next = next,
        }
        match next {
            NONE => self.tail = prev,
            next => self.slots[next as usize].prev = prev,
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        {
            let entry = &mut self.slots[slot as usize];
            entry.prev = NONE;
            entry.next = old_head;
        }
        match old_head {
            NONE => self.tail = slot,
            head => self.slots[head as usize].prev = slot,
        }
        self.head = slot;
    }

    /// Marks `slot` most recently used, restarting its window when `restart` is given.
    fn touch(&mut self, slot: u32, restart: Option<Instant>) {
        if let Some(now) = restart {
            self.slots[slot as usize].first_seen = now;
        }
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    fn insert(&mut self, key: u128, now: Instant) {
        let slot = if self.index.len() >= self.capacity && self.tail != NONE {
            let slot = self.tail;
            self.unlink(slot);
            let old = self.slots[slot as usize].key;
            self.index.remove(&old);
            let entry = &mut self.slots[slot as usize];
            entry.key = key;
            entry.first_seen = now;
            slot
        } else {
            // Capacity is at most 10 million, well below the sentinel.
            let slot = self.slots.len() as u32;
            self.slots.push(Slot {
                key,
                first_seen: now,
                prev: NONE,
                next: NONE,
            });
            slot
        };
        self.index.insert(key, slot);
        self.push_front(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::OnError;
    use std::sync::{Arc, Mutex};

    fn dedupe(toml_text: &str) -> Dedupe {
        toml::from_str::<DedupeConfig>(toml_text)
            .unwrap()
            .build()
            .unwrap()
    }

    fn event(id: &str) -> Event {
        let mut event = Event::default();
        event.insert("id", id);
        event
    }

    fn ids(step: &mut Dedupe, ids: &[&str]) -> (Vec<String>, u64) {
        let mut events: Vec<Event> = ids.iter().map(|id| event(id)).collect();
        let mut ctx = StepContext::new(OnError::DeadLetter);
        step.process(&mut events, &mut ctx);
        let kept = events
            .iter()
            .map(|e| {
                e.get("id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect();
        (kept, ctx.take_counts().1)
    }

    #[test]
    fn drops_repeats_across_batches() {
        let mut step = dedupe("group_by = [\"id\"]");
        assert_eq!(
            ids(&mut step, &["a", "b", "a", "c", "b"]),
            (vec!["a".into(), "b".into(), "c".into()], 2)
        );
        assert_eq!(ids(&mut step, &["c", "d"]), (vec!["d".into()], 1));
        let mut no_key = Event::default();
        no_key.insert("other", 1i64);
        let mut events = vec![no_key.clone(), no_key];
        step.process(&mut events, &mut StepContext::new(OnError::Drop));
        assert_eq!(events.len(), 2, "events without the key pass");
    }

    #[test]
    fn capacity_forgets_the_least_recently_seen() {
        let mut step = dedupe("group_by = [\"id\"]\nmax_events = 2");
        ids(&mut step, &["a", "b"]);
        // `a` is used again, so `b` is the least recent when `c` arrives.
        assert_eq!(ids(&mut step, &["a", "c"]).0, ["c"]);
        assert_eq!(ids(&mut step, &["b"]).0, ["b"], "b was forgotten");
        // Now `a` is the least recent: `b` evicted it, `c` is still remembered.
        assert_eq!(ids(&mut step, &["c"]).0, Vec::<String>::new());
        assert_eq!(ids(&mut step, &["a"]).0, ["a"]);
    }

    #[test]
    fn window_is_from_the_first_sighting() {
        let start = Instant::now();
        let now = Arc::new(Mutex::new(start));
        let clock = {
            let now = now.clone();
            Box::new(move || *now.lock().unwrap())
        };
        let mut step = dedupe("group_by = [\"id\"]\nwindow = \"10s\"").with_clock(clock);
        assert_eq!(ids(&mut step, &["a"]).0, ["a"]);
        *now.lock().unwrap() = start + Duration::from_secs(9);
        assert_eq!(ids(&mut step, &["a"]).0, Vec::<String>::new());
        *now.lock().unwrap() = start + Duration::from_secs(10);
        assert_eq!(
            ids(&mut step, &["a", "a"]).0,
            ["a"],
            "expired: kept once, window restarts"
        );
        *now.lock().unwrap() = start + Duration::from_secs(19);
        assert_eq!(ids(&mut step, &["a"]).0, Vec::<String>::new());
    }

    #[test]
    fn multi_field_keys_and_missing_fields() {
        let mut step = dedupe("group_by = [\"a\", \"b\"]");
        let make = |a: Option<i64>, b: Option<crate::event::Value>| {
            let mut event = Event::default();
            if let Some(a) = a {
                event.insert("a", a);
            }
            if let Some(b) = b {
                event.insert("b", b);
            }
            event
        };
        let mut events = vec![
            make(Some(1), None),
            make(Some(1), Some(crate::event::Value::Null)),
            make(Some(1), None),
            make(Some(1), Some(crate::event::Value::Int(2))),
            make(Some(1), Some(crate::event::Value::Int(2))),
        ];
        step.process(&mut events, &mut StepContext::new(OnError::Drop));
        assert_eq!(events.len(), 3, "missing differs from null; repeats go");
    }

    #[test]
    fn config_errors() {
        let error = |text: &str| {
            toml::from_str::<DedupeConfig>(text)
                .unwrap()
                .build()
                .unwrap_err()
        };
        assert_eq!(error("group_by = []").key.as_deref(), Some("group_by"));
        assert_eq!(
            error("group_by = [\"a\"]\nmax_events = 0").key.as_deref(),
            Some("max_events")
        );
        assert_eq!(
            error("group_by = [\"a\"]\nwindow = \"0s\"").key.as_deref(),
            Some("window")
        );
        assert!(toml::from_str::<DedupeConfig>("group_by = [\"a\"]\nwindow = 5").is_err());
    }

    #[test]
    fn lru_stays_consistent_under_churn() {
        let mut lru = Lru::new(8);
        let now = Instant::now();
        for i in 0..1000u128 {
            let key = (i * 7919) % 23;
            match lru.get(key) {
                Some(slot) => lru.touch(slot, None),
                None => lru.insert(key, now),
            }
            assert!(lru.len() <= 8);
            // Walk the list both ways: it holds exactly the indexed keys.
            let mut forward = Vec::new();
            let mut at = lru.head;
            while at != NONE {
                forward.push(lru.slots[at as usize].key);
                at = lru.slots[at as usize].next;
            }
            assert_eq!(forward.len(), lru.len());
            assert_eq!(forward[0], key, "the last key used is at the front");
            for key in &forward {
                assert!(lru.index.contains_key(key));
            }
        }
    }
}
