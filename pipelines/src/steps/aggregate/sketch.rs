//! Percentiles: a DDSketch with 1% relative accuracy.
//!
//! DDSketch (Masson, Rim, Lee, "DDSketch: a fast and fully-mergeable quantile sketch with
//! relative-error guarantees", VLDB 2019) counts values in logarithmic buckets: bucket `i` holds
//! the values in `(γ^(i−1), γ^i]` with `γ = (1 + α)/(1 − α)`, and answers with `2γ^i/(γ + 1)`,
//! which is within a relative error `α` of every value in the bucket. So the `q`-quantile it
//! returns is within `α = 1%` of the true one — the value of rank `⌊q·(n − 1)⌋` (0-based) in
//! sorted order — as long as no bucket was collapsed. The answer is clamped to the exact minimum
//! and maximum, so `q = 0` and `q = 1` are exact.
//!
//! Negative values are kept in a mirrored store, values with magnitude below 10⁻⁹ count as zero.
//! Each store holds at most [`MAX_BINS`] contiguous buckets (a value range of about 10¹⁷); past
//! that the lowest buckets are folded into one, which only affects the accuracy of quantiles
//! that fall in the folded range. Merging two sketches adds their buckets: sessions merge
//! exactly.

/// The relative accuracy `α`.
pub(crate) const RELATIVE_ACCURACY: f64 = 0.01;

/// Most buckets per store.
pub(crate) const MAX_BINS: usize = 2048;

/// Magnitudes below this count as zero.
const MIN_INDEXABLE: f64 = 1e-9;

/// A mergeable quantile sketch (see the module doc).
#[derive(Clone, Debug)]
pub(crate) struct Sketch {
    positive: Store,
    negative: Store,
    zeros: u64,
    count: u64,
    min: f64,
    max: f64,
}

/// Contiguous bucket counts starting at bucket `offset`.
#[derive(Clone, Debug, Default)]
struct Store {
    offset: i32,
    bins: Vec<u64>,
}

/// `1 / ln γ`.
fn multiplier() -> f64 {
    let gamma = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
    1.0 / gamma.ln()
}

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// The bucket of a magnitude at least [`MIN_INDEXABLE`].
#[inline]
fn index(magnitude: f64) -> i32 {
    (magnitude.ln() * multiplier()).ceil() as i32
}

/// The value a bucket answers with.
fn value(index: i32) -> f64 {
    let gamma = gamma();
    2.0 * gamma.powi(index) / (gamma + 1.0)
}

impl Store {
    fn add(&mut self, index: i32, count: u64) {
        if self.bins.is_empty() {
            self.offset = index;
            self.bins.push(count);
            return;
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            if self.bins.len() + grow > MAX_BINS {
                // Would be too wide: the new value joins the lowest bucket.
                self.bins[0] += count;
                return;
            }
            self.bins.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        }
        let position = (index - self.offset) as usize;
        if position >= self.bins.len() {
            self.bins.resize(position + 1, 0);
        }
        self.bins[position] += count;
        if self.bins.len() > MAX_BINS {
            // Fold the lowest buckets so the highest ones keep full accuracy.
            let fold = self.bins.len() - MAX_BINS;
            let folded: u64 = self.bins.drain(..fold).sum();
            self.bins[0] += folded;
            self.offset += fold as i32;
        }
    }

    fn merge(&mut self, other: &Store) {
        for (i, &count) in other.bins.iter().enumerate() {
            if count > 0 {
                self.add(other.offset + i as i32, count);
            }
        }
    }
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            positive: Store::default(),
            negative: Store::default(),
            zeros: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Sketch {
    /// Adds a value; NaN and infinities are ignored.
    #[inline]
    pub(crate) fn insert(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if x > MIN_INDEXABLE {
            self.positive.add(index(x), 1);
        } else if x < -MIN_INDEXABLE {
            self.negative.add(index(-x), 1);
        } else {
            self.zeros += 1;
        }
        self.count += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    pub(crate) fn merge(&mut self, other: &Sketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zeros += other.zeros;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The `q`-quantile (`0 ≤ q ≤ 1`), `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        if rank == 0 {
            return Some(self.min);
        }
        if rank >= self.count - 1 {
            return Some(self.max);
        }
        let mut seen = 0u64;
        // Ascending values: most negative first.
        for (i, &count) in self.negative.bins.iter().enumerate().rev() {
            seen += count;
            if seen > rank {
                let estimate = -value(self.negative.offset + i as i32);
                return Some(estimate.clamp(self.min, self.max));
            }
        }
        seen += self.zeros;
        if seen > rank {
            return Some(0.0_f64.clamp(self.min, self.max));
        }
        for (i, &count) in self.positive.bins.iter().enumerate() {
            seen += count;
            if seen > rank {
                let estimate = value(self.positive.offset + i as i32);
                return Some(estimate.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(f64::total_cmp);
        values[(q * (values.len() - 1) as f64).floor() as usize]
    }

    fn within(estimate: f64, truth: f64) -> bool {
        (estimate - truth).abs() <= RELATIVE_ACCURACY * truth.abs() * (1.0 + 1e-9) + 1e-12
    }

    #[test]
    fn quantiles_of_known_values() {
        let mut sketch = Sketch::default();
        assert_eq!(sketch.quantile(0.5), None);
        for i in 1..=1000 {
            sketch.insert(f64::from(i));
        }
        assert_eq!(sketch.quantile(0.0), Some(1.0));
        assert_eq!(sketch.quantile(1.0), Some(1000.0));
        for (q, truth) in [(0.5, 500.0), (0.9, 900.0), (0.95, 950.0), (0.99, 990.0)] {
            let estimate = sketch.quantile(q).unwrap();
            assert!(within(estimate, truth), "q {q}: {estimate} vs {truth}");
        }
        let mut mixed = Sketch::default();
        for x in [-5.0, -1.0, 0.0, 0.0, 2.0, f64::NAN, f64::INFINITY] {
            mixed.insert(x);
        }
        assert_eq!(mixed.quantile(0.0), Some(-5.0));
        assert!(within(mixed.quantile(0.25).unwrap(), -1.0));
        assert_eq!(mixed.quantile(0.5), Some(0.0));
        assert_eq!(mixed.quantile(1.0), Some(2.0));
    }

    /// What the README says of p95 on small groups.
    #[test]
    fn p95_of_small_groups() {
        let p95 = |values: &[f64]| {
            let mut sketch = Sketch::default();
            for &x in values {
                sketch.insert(x);
            }
            sketch.quantile(0.95).unwrap()
        };
        // One event: that value, exactly. Two: the smaller one (rank ⌊0.95⌋ = 0), exactly.
        assert_eq!(p95(&[0.123]), 0.123);
        assert_eq!(p95(&[0.5, 0.123]), 0.123);
        // Twenty: the second largest (rank ⌊0.95·19⌋ = 18), within 1%.
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert!(within(p95(&twenty), 19.0), "{}", p95(&twenty));
    }

    #[test]
    fn wide_ranges_fold_the_lowest_buckets() {
        let mut sketch = Sketch::default();
        for exponent in -9..=300 {
            sketch.insert(10f64.powi(exponent));
        }
        assert!(sketch.positive.bins.len() <= MAX_BINS);
        // High quantiles keep their accuracy.
        let truth = 10f64.powi(300);
        assert!(within(sketch.quantile(1.0).unwrap(), truth));
        let p99 = sketch.quantile(0.99).unwrap();
        assert!(within(p99, 10f64.powi(296)), "{p99}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn quantiles_within_the_relative_accuracy(
            values in prop::collection::vec(prop_oneof![1e-3f64..1e3, -1e3f64..-1e-3, Just(0.0), (1u32..100_000).prop_map(f64::from)], 1..2000),
            split in 0usize..2000,
            q in prop_oneof![0.0f64..=1.0, prop::sample::select(vec![0.5, 0.9, 0.95, 0.99])],
        ) {
            // Built in two halves and merged, as sessions are.
            let split = split.min(values.len());
            let (mut a, mut b) = (Sketch::default(), Sketch::default());
            for &x in &values[..split] { a.insert(x); }
            for &x in &values[split..] { b.insert(x); }
            a.merge(&b);
            let mut sorted = values.clone();
            let truth = exact(&mut sorted, q);
            let estimate = a.quantile(q).unwrap();
            prop_assert!(within(estimate, truth), "q {}: {} vs {}", q, estimate, truth);
        }
    }
}
