//! Distinct counting: exact up to a threshold, then HyperLogLog.
//!
//! [`Distinct`] keeps the 64-bit hashes of the values it saw in a set while there are at most
//! [`EXACT_LIMIT`] of them: the count is then exact (two different values share a 64-bit hash
//! with probability about n²/2⁶⁵, below 10⁻¹¹ at the limit). Past the limit it moves every hash
//! into a [`HyperLogLog`] with 2¹⁴ registers (16 KiB), whose relative standard error is
//! 1.04/√2¹⁴ ≈ 0.81%.
//!
//! The estimate is Otmar Ertl's improved estimator ("New cardinality estimation algorithms for
//! HyperLogLog sketches", 2017): it works from the histogram of register values and is unbiased
//! over the whole range, from a few thousand to billions, without the empirical bias tables of
//! HyperLogLog++ or the switch to linear counting of the original paper.

use std::collections::HashSet;

use crate::hash::BuildPreHashed;

/// Register index bits.
const P: u32 = 14;
/// Number of registers.
const M: usize = 1 << P;
/// Hash bits left after the index.
const Q: u32 = 64 - P;

/// Distinct values counted exactly before switching to HyperLogLog.
pub(crate) const EXACT_LIMIT: usize = 10_000;

/// The relative standard error of the HyperLogLog estimate, 1.04/√m.
#[cfg(test)]
pub(crate) const HLL_STANDARD_ERROR: f64 = 0.008_125;

/// A HyperLogLog sketch with 2¹⁴ one-byte registers.
#[derive(Clone, Debug)]
pub(crate) struct HyperLogLog {
    registers: Box<[u8; M]>,
}

impl HyperLogLog {
    pub(crate) fn new() -> Self {
        HyperLogLog {
            registers: Box::new([0; M]),
        }
    }

    /// Adds a (well-mixed) 64-bit hash.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) {
        let index = (hash >> Q) as usize;
        let rest = hash << P;
        // 1 + leading zeros of the Q remaining bits, at most Q + 1.
        let rank = if rest == 0 {
            Q + 1
        } else {
            rest.leading_zeros() + 1
        };
        let register = &mut self.registers[index];
        *register = (*register).max(rank as u8);
    }

    /// Register-wise maximum: the sketch of the union.
    pub(crate) fn merge(&mut self, other: &HyperLogLog) {
        for (mine, theirs) in self.registers.iter_mut().zip(other.registers.iter()) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// The estimated number of distinct hashes.
    pub(crate) fn estimate(&self) -> f64 {
        let mut histogram = [0u32; Q as usize + 2];
        for &register in self.registers.iter() {
            histogram[usize::from(register).min(Q as usize + 1)] += 1;
        }
        let m = M as f64;
        let mut z = m * tau(1.0 - f64::from(histogram[Q as usize + 1]) / m);
        for k in (1..=Q as usize).rev() {
            z = 0.5 * (z + f64::from(histogram[k]));
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        let alpha_infinity = 1.0 / (2.0 * std::f64::consts::LN_2);
        alpha_infinity * m * m / z
    }
}

/// Ertl's σ(x) = x + Σ_{k≥1} x^(2^k) 2^(k−1).
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

/// Ertl's τ(x) = (1 − x − Σ_{k≥1} (1 − x^(2^−k))² 2^−k) / 3.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

/// A distinct count: exact set of hashes, then HyperLogLog.
#[derive(Clone, Debug)]
pub(crate) enum Distinct {
    Exact(HashSet<u64, BuildPreHashed>),
    Sketch(HyperLogLog),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(HashSet::default())
    }
}

impl Distinct {
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) {
        match self {
            Distinct::Exact(set) => {
                if set.insert(hash) && set.len() > EXACT_LIMIT {
                    self.make_sketch();
                }
            }
            Distinct::Sketch(sketch) => sketch.insert(hash),
        }
    }

    fn make_sketch(&mut self) {
        if let Distinct::Exact(set) = self {
            let mut sketch = HyperLogLog::new();
            for &hash in set.iter() {
                sketch.insert(hash);
            }
            *self = Distinct::Sketch(sketch);
        }
    }

    pub(crate) fn merge(&mut self, other: &Distinct) {
        match other {
            Distinct::Exact(theirs) => {
                for &hash in theirs {
                    self.insert(hash);
                }
            }
            Distinct::Sketch(theirs) => {
                self.make_sketch();
                if let Distinct::Sketch(mine) = self {
                    mine.merge(theirs);
                }
            }
        }
    }

    /// The count: exact, or the rounded HyperLogLog estimate.
    pub(crate) fn count(&self) -> i64 {
        match self {
            Distinct::Exact(set) => set.len() as i64,
            Distinct::Sketch(sketch) => sketch.estimate().round() as i64,
        }
    }

    /// Whether the count is exact.
    #[cfg(test)]
    pub(crate) fn is_exact(&self) -> bool {
        matches!(self, Distinct::Exact(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix64;
    use proptest::prelude::*;

    #[test]
    fn exact_below_the_limit_then_estimated() {
        let mut distinct = Distinct::default();
        for i in 0..EXACT_LIMIT as u64 {
            distinct.insert(mix64(i));
            distinct.insert(mix64(i));
        }
        assert!(distinct.is_exact());
        assert_eq!(distinct.count(), EXACT_LIMIT as i64);
        distinct.insert(mix64(u64::MAX));
        assert!(!distinct.is_exact());
        let estimate = distinct.count() as f64;
        let n = EXACT_LIMIT as f64 + 1.0;
        assert!(
            (estimate - n).abs() / n < 3.0 * HLL_STANDARD_ERROR,
            "{estimate}"
        );
    }

    #[test]
    fn empty_and_tiny_sketches() {
        let sketch = HyperLogLog::new();
        assert_eq!(sketch.estimate(), 0.0);
        let mut sketch = HyperLogLog::new();
        for i in 0..100 {
            sketch.insert(mix64(i));
        }
        assert!(
            (sketch.estimate() - 100.0).abs() < 3.0,
            "{}",
            sketch.estimate()
        );
    }

    #[test]
    fn merging_is_the_union() {
        let (mut a, mut b) = (Distinct::default(), Distinct::default());
        for i in 0..30_000u64 {
            a.insert(mix64(i));
        }
        for i in 20_000..50_000u64 {
            b.insert(mix64(i));
        }
        let mut small = Distinct::default();
        small.insert(mix64(7));
        small.insert(mix64(1_000_000));
        a.merge(&b);
        a.merge(&small);
        let n = 50_001.0;
        assert!(
            (a.count() as f64 - n).abs() / n < 3.0 * HLL_STANDARD_ERROR,
            "{}",
            a.count()
        );
        let mut exact = Distinct::default();
        exact.merge(&small);
        assert_eq!(exact.count(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Within three standard errors (a 99.7% bound) over the range where the estimator
        /// changes regimes, with independent random hash streams.
        #[test]
        fn estimates_within_three_standard_errors(n in 10_001u64..400_000, seed in any::<u64>()) {
            let mut distinct = Distinct::default();
            for i in 0..n {
                distinct.insert(mix64(seed ^ mix64(i)));
            }
            let error = (distinct.count() as f64 - n as f64).abs() / n as f64;
            prop_assert!(error < 3.0 * HLL_STANDARD_ERROR, "n = {}, estimate = {}, error = {}", n, distinct.count(), error);
        }
    }
}
