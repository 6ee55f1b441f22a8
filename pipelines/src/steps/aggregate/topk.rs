//! `top_k`: the most frequent values, exact while few, Space-Saving beyond.
//!
//! A [`TopK`] counts up to `capacity` distinct values exactly. When a new value arrives with every
//! counter taken, it takes over the counter with the smallest count `min` and starts at `min + 1`
//! (Metwally, Agrawal, El Abbadi, "Efficient computation of frequent and top-k elements in data
//! streams", 2005): every reported count then overestimates the true one by at most `min`, which
//! is at most `n / capacity` for `n` counted values, and any value more frequent than that is
//! guaranteed to be tracked. The counters sit in an indexed min-heap, so each value costs
//! O(log capacity).
//!
//! Values are identified by their 64-bit hash (see [`crate::hash`]); the value itself is kept, as
//! an owned copy, for the output.

use std::collections::HashMap;

use crate::event::Value;
use crate::hash::BuildPreHashed;

/// A bounded frequency count.
#[derive(Clone, Debug)]
pub(crate) struct TopK {
    capacity: usize,
    counters: Vec<Counter>,
    /// Counter indices ordered as a min-heap on count.
    heap: Vec<u32>,
    /// For each counter, its position in `heap`.
    position: Vec<u32>,
    index: HashMap<u64, u32, BuildPreHashed>,
    /// Whether a counter was ever taken over (counts are then estimates).
    approximate: bool,
}

#[derive(Clone, Debug)]
struct Counter {
    hash: u64,
    value: Value,
    count: u64,
}

impl TopK {
    pub(crate) fn new(capacity: usize) -> Self {
        TopK {
            capacity: capacity.max(1),
            counters: Vec::new(),
            heap: Vec::new(),
            position: Vec::new(),
            index: HashMap::default(),
            approximate: false,
        }
    }

    /// Counts `value` (hashed as `hash`) `count` times; `make` gives the owned copy when the
    /// value is new.
    pub(crate) fn add(&mut self, hash: u64, count: u64, make: impl FnOnce() -> Value) {
        if let Some(&counter) = self.index.get(&hash) {
            self.counters[counter as usize].count += count;
            self.sift_down(self.position[counter as usize] as usize);
            return;
        }
        if self.counters.len() < self.capacity {
            let counter = self.counters.len() as u32;
            self.counters.push(Counter {
                hash,
                value: make(),
                count,
            });
            self.position.push(self.heap.len() as u32);
            self.heap.push(counter);
            self.index.insert(hash, counter);
            self.sift_up(self.heap.len() - 1);
            return;
        }
        // Take over the smallest counter.
        self.approximate = true;
        let counter = self.heap[0];
        let slot = &mut self.counters[counter as usize];
        self.index.remove(&slot.hash);
        slot.hash = hash;
        slot.value = make();
        slot.count += count;
        self.index.insert(hash, counter);
        self.sift_down(0);
    }

    /// The smallest count a value missing from a full summary may have had.
    fn floor(&self) -> u64 {
        if self.approximate {
            self.heap
                .first()
                .map_or(0, |&counter| self.counters[counter as usize].count)
        } else {
            0
        }
    }

    /// Combines another summary into this one (when sessions merge), keeping the Space-Saving
    /// guarantees: a value missing from one side gets that side's floor added (it may have been
    /// counted there up to the floor), then the `capacity` largest counts stay.
    pub(crate) fn merge(&mut self, other: &TopK) {
        let (mine, theirs) = (self.floor(), other.floor());
        let mut combined: Vec<Counter> =
            Vec::with_capacity(self.counters.len() + other.counters.len());
        for counter in self.counters.drain(..) {
            let extra = match other.index.get(&counter.hash) {
                Some(&at) => other.counters[at as usize].count,
                None => theirs,
            };
            combined.push(Counter {
                count: counter.count + extra,
                ..counter
            });
        }
        for counter in &other.counters {
            if !self.index.contains_key(&counter.hash) {
                combined.push(Counter {
                    hash: counter.hash,
                    value: counter.value.clone(),
                    count: counter.count + mine,
                });
            }
        }
        self.approximate |= other.approximate;
        if combined.len() > self.capacity {
            combined.sort_by_key(|counter| std::cmp::Reverse(counter.count));
            combined.truncate(self.capacity);
            self.approximate = true;
        }
        self.counters = combined;
        self.index.clear();
        self.heap.clear();
        self.position.clear();
        for (i, counter) in self.counters.iter().enumerate() {
            self.index.insert(counter.hash, i as u32);
            self.heap.push(i as u32);
            self.position.push(i as u32);
        }
        for at in (0..self.heap.len() / 2).rev() {
            self.sift_down(at);
        }
    }

    /// The `k` most frequent values with their counts, most frequent first; ties in the order of
    /// the values' JSON text.
    pub(crate) fn top(&self, k: usize) -> Vec<(&Value, u64)> {
        let mut all: Vec<(&Value, u64, String)> = self
            .counters
            .iter()
            .map(|counter| (&counter.value, counter.count, sort_text(&counter.value)))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.2.cmp(&b.2)));
        all.into_iter()
            .take(k)
            .map(|(value, count, _)| (value, count))
            .collect()
    }

    /// Whether the counts are exact.
    #[cfg(test)]
    pub(crate) fn is_exact(&self) -> bool {
        !self.approximate
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a] as usize] = a as u32;
        self.position[self.heap[b] as usize] = b as u32;
    }

    fn count_at(&self, heap_position: usize) -> u64 {
        self.counters[self.heap[heap_position] as usize].count
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.count_at(parent) <= self.count_at(at) {
                break;
            }
            self.swap(parent, at);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut smallest = at;
            if left < self.heap.len() && self.count_at(left) < self.count_at(smallest) {
                smallest = left;
            }
            if right < self.heap.len() && self.count_at(right) < self.count_at(smallest) {
                smallest = right;
            }
            if smallest == at {
                return;
            }
            self.swap(at, smallest);
            at = smallest;
        }
    }
}

/// The text ties are broken by.
fn sort_text(value: &Value) -> String {
    let mut out = Vec::new();
    crate::codec::json::encode_value(value, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_value;
    use proptest::prelude::*;

    fn add(top: &mut TopK, value: &str) {
        let value = Value::from(value);
        top.add(hash_value(0, &value), 1, || value.clone());
    }

    fn shown(top: &TopK, k: usize) -> Vec<(String, u64)> {
        top.top(k)
            .into_iter()
            .map(|(v, n)| (v.as_str().unwrap().to_owned(), n))
            .collect()
    }

    #[test]
    fn exact_counts_while_few() {
        let mut top = TopK::new(100);
        for value in ["/a", "/b", "/a", "/c", "/b", "/a", "/d"] {
            add(&mut top, value);
        }
        assert!(top.is_exact());
        assert_eq!(
            shown(&top, 3),
            [
                ("/a".to_owned(), 3),
                ("/b".to_owned(), 2),
                ("/c".to_owned(), 1)
            ],
            "ties by value"
        );
        assert_eq!(shown(&top, 10).len(), 4);
    }

    #[test]
    fn space_saving_keeps_heavy_hitters() {
        let mut top = TopK::new(10);
        for i in 0..10_000 {
            add(&mut top, if i % 3 == 0 { "heavy" } else { "" });
            add(&mut top, &format!("noise-{i}"));
        }
        assert!(!top.is_exact());
        let best = shown(&top, 2);
        assert_eq!(best[0].0, "");
        assert_eq!(best[1].0, "heavy");
        // Overestimates by at most n / capacity.
        let n = 20_000;
        assert!(best[1].1 >= 3334 && best[1].1 <= 3334 + n / 10);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Against exact counts: exact while distinct values fit; within n/capacity beyond, and
        /// never under the true count of a tracked value.
        #[test]
        fn counts_bound_the_truth(values in prop::collection::vec(0u32..60, 0..600), capacity in 1usize..80, split in 0usize..600) {
            let mut truth: HashMap<u32, u64> = HashMap::new();
            for v in &values { *truth.entry(*v).or_default() += 1; }
            let split = split.min(values.len());
            let (mut a, mut b) = (TopK::new(capacity), TopK::new(capacity));
            for v in &values[..split] { add(&mut a, &v.to_string()); }
            for v in &values[split..] { add(&mut b, &v.to_string()); }
            a.merge(&b);
            let n = values.len() as u64;
            for (value, count) in shown(&a, capacity) {
                let real = truth[&value.parse::<u32>().unwrap()];
                prop_assert!(count >= real, "{} counted {} < {}", value, count, real);
                if a.is_exact() {
                    prop_assert_eq!(count, real);
                } else {
                    prop_assert!(count <= real + 2 * n / capacity as u64 + 1, "{} counted {}, real {}", value, count, real);
                }
            }
            if truth.len() <= capacity && a.is_exact() {
                prop_assert_eq!(shown(&a, capacity).len(), truth.len());
            }
        }
    }
}
