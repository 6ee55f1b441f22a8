//! A stable, fast 64-bit hash of field values, for the steps that key state by values: `sample`
//! (keep or drop a whole session), `dedupe` (seen keys), `aggregate` (group keys, distinct
//! counts, HyperLogLog).
//!
//! Why not `std::hash`: `DefaultHasher` is SipHash, slower than needed per event, and its output is
//! not promised to stay the same across Rust releases — `sample` with a seed must keep or drop the
//! same sessions after an upgrade. The mixing is wyhash's: each 8-byte word is folded in with a
//! 64×64→128-bit multiply, which spreads every input bit over the whole state. That quality
//! matters for HyperLogLog, whose error bound assumes uniformly distributed hashes.
//!
//! Values hash by type and content, consistently with [`values_equal`]: an int and a float are
//! different keys (`1` is not `1.0`), `-0.0` is `0.0`, and every NaN is the same key. Strings hash
//! their bytes, so hashing borrows and never allocates.

use crate::event::{Fields, Value};

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// A streaming hasher with a seed. Equal byte sequences written in equal pieces give equal
/// hashes; each `write` is length-delimited, so `("ab", "c")` and `("a", "bc")` differ.
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
}

impl StableHasher {
    /// A hasher seeded with `seed`; different seeds give independent hash functions.
    #[inline]
    pub fn new(seed: u64) -> Self {
        StableHasher {
            state: mum(seed ^ P0, P1),
        }
    }

    /// Mixes `bytes` into the state.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        let mut state = self.state;
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            state = mum(state ^ u64::from_le_bytes(word), P1);
        }
        let tail = chunks.remainder();
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        // The length closes the write, so adjacent writes cannot run into each other.
        self.state = mum(
            state ^ u64::from_le_bytes(word) ^ P2,
            P3 ^ (bytes.len() as u64),
        );
    }

    /// Mixes one 64-bit word into the state.
    #[inline]
    pub fn write_u64(&mut self, word: u64) {
        self.state = mum(self.state ^ word ^ P2, P1);
    }

    /// The hash of everything written.
    #[inline]
    pub fn finish(&self) -> u64 {
        mum(self.state ^ P3, P0)
    }

    /// Mixes a value in, by type and content (see the module doc).
    pub fn write_value(&mut self, value: &Value) {
        match value {
            Value::Null => self.write_u64(0),
            Value::Bool(b) => self.write_u64(1 | (u64::from(*b) << 8)),
            Value::Int(i) => {
                self.write_u64(2);
                self.write_u64(*i as u64);
            }
            Value::Float(x) => {
                self.write_u64(3);
                self.write_u64(float_bits(*x));
            }
            Value::String(s) => {
                self.write_u64(4);
                self.write(s.as_bytes());
            }
            Value::Timestamp(ts) => {
                self.write_u64(5);
                self.write_u64(ts.timestamp() as u64);
                self.write_u64(u64::from(ts.timestamp_subsec_nanos()));
            }
            Value::Array(items) => {
                self.write_u64(6 | ((items.len() as u64) << 8));
                for item in items {
                    self.write_value(item);
                }
            }
            Value::Map(map) => self.write_map(map),
        }
    }

    fn write_map(&mut self, map: &Fields) {
        self.write_u64(7 | ((map.len() as u64) << 8));
        for (name, item) in map {
            self.write(name.as_str().as_bytes());
            self.write_value(item);
        }
    }
}

/// The bits a float hashes by: one zero, one NaN.
fn float_bits(x: f64) -> u64 {
    if x.is_nan() {
        f64::NAN.to_bits()
    } else if x == 0.0 {
        0
    } else {
        x.to_bits()
    }
}

/// The hash of one value with `seed`.
pub fn hash_value(seed: u64, value: &Value) -> u64 {
    let mut hasher = StableHasher::new(seed);
    hasher.write_value(value);
    hasher.finish()
}

/// Key equality consistent with [`StableHasher::write_value`]: like `==`, except that NaN
/// equals NaN (so a NaN key finds its group again) and `-0.0` equals `0.0`.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => float_bits(*x) == float_bits(*y),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| values_equal(x, y))
        }
        (Value::Map(xs), Value::Map(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys.iter())
                    .all(|((kx, x), (ky, y))| kx == ky && values_equal(x, y))
        }
        _ => a == b,
    }
}

/// A `Hasher` for keys that are already hashes (`u64` group hashes, `u128` dedupe keys): it
/// passes their low 64 bits through instead of hashing them again.
#[derive(Default, Clone, Copy, Debug)]
pub struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

/// Builds [`PreHashed`] hashers for `HashMap`s keyed by hashes.
pub type BuildPreHashed = std::hash::BuildHasherDefault<PreHashed>;

/// Finalizes a 64-bit integer into a well-mixed one (splitmix64's finalizer): a cheap
/// pseudo-random sequence from a counter.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Str;

    #[test]
    fn equal_values_hash_equal_and_types_differ() {
        let a = Value::String(Str::from("GET /index.html"));
        let b = Value::String(Str::from(String::from("GET /index.html")));
        assert_eq!(hash_value(1, &a), hash_value(1, &b));
        assert_ne!(hash_value(1, &a), hash_value(2, &a), "seeds differ");
        assert_ne!(
            hash_value(0, &Value::Int(1)),
            hash_value(0, &Value::Float(1.0))
        );
        assert_eq!(
            hash_value(0, &Value::Float(-0.0)),
            hash_value(0, &Value::Float(0.0))
        );
        assert_eq!(
            hash_value(0, &Value::Float(f64::NAN)),
            hash_value(0, &Value::Float(-f64::NAN))
        );
        assert!(values_equal(
            &Value::Float(f64::NAN),
            &Value::Float(f64::NAN)
        ));
        assert!(!values_equal(&Value::Int(1), &Value::Float(1.0)));
    }

    #[test]
    fn writes_are_delimited() {
        let mut ab_c = StableHasher::new(0);
        ab_c.write(b"ab");
        ab_c.write(b"c");
        let mut a_bc = StableHasher::new(0);
        a_bc.write(b"a");
        a_bc.write(b"bc");
        assert_ne!(ab_c.finish(), a_bc.finish());
        // Pinned: `sample` decisions and dedupe keys must not change between sluice versions.
        let mut pinned = StableHasher::new(7);
        pinned.write(b"session-42");
        assert_eq!(pinned.finish(), 12_643_866_899_653_560_600);
    }

    #[test]
    fn low_bits_are_uniform() {
        // Sequential keys must spread evenly over buckets (HyperLogLog and sampling rely on it).
        let mut buckets = [0u32; 16];
        for i in 0..16_000 {
            let hash = hash_value(0, &Value::from(format!("u{i}")));
            buckets[(hash & 15) as usize] += 1;
        }
        for count in buckets {
            assert!((850..1150).contains(&count), "{buckets:?}");
        }
    }
}
