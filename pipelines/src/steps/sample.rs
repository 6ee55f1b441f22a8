//! The `sample` step: keeps about one event in `rate`.
//!
//! ```toml
//! steps = [{ type = "sample", rate = 10, group_by = ["session_id"], seed = 7 }]
//! ```
//!
//! - Without `group_by`, each event is kept with probability 1/`rate`, decided by a pseudo-random
//!   sequence seeded with `seed`: the same input in the same order keeps the same events.
//! - With `group_by` (field paths), the decision is a hash of those fields' values with the seed, so
//!   every event of a session (or user, or trace) is kept or dropped together, on every worker
//!   and across restarts and upgrades (the hash is sluice's own, not std's). A missing key field
//!   hashes as missing; an event with none of the key fields is sampled at random, as without
//!   `group_by`, so events lacking the key are not all kept or all dropped at once.
//!
//! Dropped events are counted with [`StepContext::count_dropped`].

use crate::event::{Event, FieldName};
use crate::hash::{StableHasher, mix64};
use crate::step::{BuildError, Step, StepContext};

use super::common::parse_path;

/// Config of the `sample` step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Keep one event in `rate` (1 keeps everything).
    pub rate: u64,
    /// Fields whose values decide together (dotted paths): `group_by`, as in `aggregate` and
    /// `dedupe` (`key` is a deprecated alias).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Seed of the decisions (default 0): two steps with the same seed and `group_by` keep the
    /// same groups.
    #[serde(default)]
    pub seed: u64,
}

impl SampleConfig {
    /// Checks the rate and interns the key paths.
    ///
    /// # Errors
    /// A [`BuildError`] at `rate` when it is 0, at `group_by[<i>]` for a bad path.
    pub fn build(&self) -> Result<Sample, BuildError> {
        if self.rate == 0 {
            return Err(BuildError::at(
                "rate",
                "`rate` must be at least 1 (keep one event in `rate`)",
            ));
        }
        let key = self
            .group_by
            .iter()
            .enumerate()
            .map(|(i, path)| parse_path(&format!("group_by[{i}]"), path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sample {
            rate: self.rate,
            key,
            seed: self.seed,
            counter: 0,
        })
    }
}

/// The `sample` step, built from a [`SampleConfig`].
#[derive(Debug)]
pub struct Sample {
    rate: u64,
    key: Vec<Vec<FieldName>>,
    seed: u64,
    /// Position in the pseudo-random sequence of unkeyed decisions.
    counter: u64,
}

impl Sample {
    fn keep(&mut self, event: &Event) -> bool {
        if !self.key.is_empty() {
            let mut hasher = StableHasher::new(self.seed);
            let mut found = false;
            for path in &self.key {
                match event.fields().get_path(path) {
                    Some(value) => {
                        found = true;
                        hasher.write_u64(1);
                        hasher.write_value(value);
                    }
                    None => hasher.write_u64(0),
                }
            }
            if found {
                return hasher.finish().is_multiple_of(self.rate);
            }
        }
        self.counter = self.counter.wrapping_add(1);
        mix64(self.seed ^ mix64(self.counter)).is_multiple_of(self.rate)
    }
}

impl Step for Sample {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        if self.rate == 1 {
            return;
        }
        let before = events.len();
        events.retain(|event| self.keep(event));
        let dropped = before - events.len();
        if dropped > 0 {
            ctx.count_dropped(dropped as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;
    use crate::step::OnError;

    fn sample(toml_text: &str) -> Sample {
        toml::from_str::<SampleConfig>(toml_text)
            .unwrap()
            .build()
            .unwrap()
    }

    fn sessions(count: usize, per_session: usize) -> Vec<Event> {
        (0..count * per_session)
            .map(|i| {
                let mut event = Event::default();
                event.insert("session_id", format!("s{}", i % count));
                event.insert("n", i as i64);
                event
            })
            .collect()
    }

    fn kept(step: &mut Sample, events: Vec<Event>) -> (Vec<Event>, u64) {
        let mut ctx = StepContext::new(OnError::DeadLetter);
        let mut events = events;
        step.process(&mut events, &mut ctx);
        (events, ctx.take_counts().1)
    }

    #[test]
    fn unkeyed_keeps_about_one_in_rate_deterministically() {
        let events = sessions(10_000, 1);
        let (a, dropped) = kept(&mut sample("rate = 10\nseed = 3"), events.clone());
        assert!((850..1150).contains(&a.len()), "{}", a.len());
        assert_eq!(a.len() as u64 + dropped, 10_000);
        let (b, _) = kept(&mut sample("rate = 10\nseed = 3"), events.clone());
        assert_eq!(a, b, "same seed, same events");
        let (c, _) = kept(&mut sample("rate = 10\nseed = 4"), events.clone());
        assert_ne!(a, c);
        let (all, dropped) = kept(&mut sample("rate = 1"), events);
        assert_eq!((all.len(), dropped), (10_000, 0));
    }

    #[test]
    fn keyed_keeps_whole_sessions() {
        let mut step = sample("rate = 4\ngroup_by = [\"session_id\"]\nseed = 9");
        let (first, _) = kept(&mut step, sessions(2000, 5));
        let mut per_session = std::collections::HashMap::new();
        for event in &first {
            let session = event
                .get("session_id")
                .and_then(Value::as_str)
                .unwrap()
                .to_owned();
            *per_session.entry(session).or_insert(0) += 1;
        }
        assert!(
            per_session.values().all(|&n| n == 5),
            "a session is kept whole"
        );
        assert!(
            (400..600).contains(&per_session.len()),
            "{}",
            per_session.len()
        );
        // Batch boundaries and workers do not matter: a fresh step decides the same.
        let mut other = sample("rate = 4\ngroup_by = [\"session_id\"]\nseed = 9");
        let (second, _) = kept(&mut other, sessions(2000, 5).into_iter().rev().collect());
        assert_eq!(second.len(), first.len());
        // Events without the key are sampled one by one.
        let mut missing = Vec::new();
        for i in 0..4000 {
            let mut event = Event::default();
            event.insert("n", Value::Int(i));
            missing.push(event);
        }
        let (some, _) = kept(&mut step, missing);
        assert!((800..1200).contains(&some.len()), "{}", some.len());
    }

    #[test]
    fn config_errors() {
        let error = toml::from_str::<SampleConfig>("rate = 0")
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("rate"));
        let error = toml::from_str::<SampleConfig>("rate = 2\ngroup_by = [\"a.\"]")
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("group_by[0]"));
        assert!(toml::from_str::<SampleConfig>("rate = -1").is_err());
    }
}
