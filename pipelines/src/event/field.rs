//! Interned field names.
//!
//! Events carry few, repeated field names (`ip`, `status`, `path`, …). Interning them means every
//! event shares one copy of each name, and comparing two interned names is a pointer comparison.
//! Interned names live for the rest of the process (they are leaked into `&'static str`), so
//! cloning and dropping one is a plain copy: no reference count is touched, which matters on the
//! hot path, where a parser clones a dozen names per event and an atomic increment costs more
//! than the rest of the copy.
//!
//! Names come from configs (interned once at build time) and from decoded input (JSON keys); the
//! latter is user-controlled, so the interner is bounded: it keeps at most [`MAX_INTERNED`] names
//! of at most [`MAX_INTERNED_LEN`] bytes (8 MiB in all). Other names are reference-counted
//! allocations owned by the events that carry them, which keeps memory bounded under garbage
//! input and only costs speed.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, RwLock};

/// How many distinct names the global interner keeps before it stops growing.
pub const MAX_INTERNED: usize = 64 * 1024;

/// Longest name the interner keeps, in bytes; longer names are allocated per use.
pub const MAX_INTERNED_LEN: usize = 128;

static INTERNER: LazyLock<RwLock<HashSet<&'static str>>> =
    LazyLock::new(|| RwLock::new(HashSet::with_capacity(256)));

/// The name of an event field: cheap to clone and compare.
#[derive(Clone)]
pub struct FieldName(Repr);

#[derive(Clone)]
enum Repr {
    /// One copy per process: copied, never counted or freed.
    Interned(&'static str),
    /// Past the interner's bounds.
    Owned(Arc<str>),
}

impl FieldName {
    /// Interns `name`, returning the shared name.
    pub fn new(name: &str) -> Self {
        if name.len() > MAX_INTERNED_LEN {
            return FieldName(Repr::Owned(Arc::from(name)));
        }
        if let Ok(set) = INTERNER.read()
            && let Some(existing) = set.get(name)
        {
            return FieldName(Repr::Interned(existing));
        }
        let Ok(mut set) = INTERNER.write() else {
            // A poisoned interner only means another thread panicked while inserting; a fresh
            // allocation is still a correct name.
            return FieldName(Repr::Owned(Arc::from(name)));
        };
        if let Some(existing) = set.get(name) {
            return FieldName(Repr::Interned(existing));
        }
        if set.len() >= MAX_INTERNED {
            return FieldName(Repr::Owned(Arc::from(name)));
        }
        // Bounded by MAX_INTERNED × MAX_INTERNED_LEN, and the interner would keep it forever
        // anyway: leaking makes clones free.
        let leaked: &'static str = Box::leak(Box::<str>::from(name));
        set.insert(leaked);
        FieldName(Repr::Interned(leaked))
    }

    /// The name as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Interned(name) => name,
            Repr::Owned(name) => name,
        }
    }
}

impl PartialEq for FieldName {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // The interner holds one copy per text: same text, same pointer.
            (Repr::Interned(a), Repr::Interned(b)) => {
                a.len() == b.len() && std::ptr::eq(a.as_ptr(), b.as_ptr())
            }
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for FieldName {}

impl PartialEq<str> for FieldName {
    #[inline]
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FieldName {
    #[inline]
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for FieldName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for FieldName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FieldName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Borrow<str> for FieldName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for FieldName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for FieldName {
    fn from(name: &str) -> Self {
        FieldName::new(name)
    }
}

impl From<String> for FieldName {
    fn from(name: String) -> Self {
        FieldName::new(&name)
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for FieldName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for FieldName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(FieldName::new(&name))
    }
}

/// A small cache in front of the global interner for decoders that see the same keys in the same
/// positions over and over (JSON objects from one producer). Lookup by position is a string
/// comparison, with no hashing and no lock.
///
/// For the first [`NameCache::TOP_POSITIONS`] keys of top-level objects it also remembers whether
/// the names cached at positions `0..=p` are all different. A decoder that looks up an object's
/// keys in order from position 0 leaves exactly that object's keys in those positions, so it
/// learns, without comparing, that a key is not a repeat of an earlier one — which lets it append
/// fields without the duplicate check that otherwise costs a comparison per pair of keys.
#[derive(Default, Debug)]
pub struct NameCache {
    by_position: Vec<FieldName>,
    /// For top-level positions: are the names at `0..=p` pairwise different?
    distinct: Vec<Distinct>,
    /// How many keys the last top-level object had.
    top_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Distinct {
    Unknown,
    Yes,
    No,
}

impl NameCache {
    /// Most key positions a cache remembers; deeper keys go to the global interner.
    const MAX_POSITIONS: usize = 256;

    /// Top-level positions whose distinctness is tracked ([`NameCache::get_top`]); nested
    /// objects use positions from here on.
    pub const TOP_POSITIONS: usize = 64;

    /// Returns the interned name for `key` seen at `position` in its object.
    #[inline]
    pub fn get(&mut self, position: usize, key: &str) -> FieldName {
        if let Some(cached) = self.by_position.get(position)
            && cached.as_str() == key
        {
            return cached.clone();
        }
        let name = FieldName::new(key);
        if position < self.by_position.len() {
            self.by_position[position] = name.clone();
            // Entries after a changed one may now repeat it.
            for state in self.distinct.iter_mut().skip(position) {
                *state = Distinct::Unknown;
            }
        } else if position == self.by_position.len() && position < Self::MAX_POSITIONS {
            self.by_position.push(name.clone());
        }
        name
    }

    /// Like [`NameCache::get`] for the key at `position` of a top-level object whose keys are
    /// looked up in order from 0; also says whether the key is known to differ from every
    /// earlier key of the object (`false` when unknown or repeated).
    #[inline]
    pub fn get_top(&mut self, position: usize, key: &str) -> (FieldName, bool) {
        let name = self.get(position, key);
        if position >= Self::TOP_POSITIONS || position >= self.by_position.len() {
            return (name, false);
        }
        while self.distinct.len() <= position {
            self.distinct.push(Distinct::Unknown);
        }
        if self.distinct[position] == Distinct::Unknown {
            let earlier = if position == 0 {
                Distinct::Yes
            } else {
                self.distinct[position - 1]
            };
            self.distinct[position] = match earlier {
                Distinct::Yes
                    if !self.by_position[..position]
                        .iter()
                        .any(|other| *other == self.by_position[position]) =>
                {
                    Distinct::Yes
                }
                Distinct::Unknown => Distinct::Unknown,
                _ => Distinct::No,
            };
        }
        (name, self.distinct[position] == Distinct::Yes)
    }

    /// How many keys the last top-level object had, as a capacity hint for the next.
    pub fn top_len_hint(&self) -> usize {
        self.top_len
    }

    /// Records how many keys a top-level object had.
    pub fn set_top_len_hint(&mut self, len: usize) {
        self.top_len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_share_one_allocation() {
        let a = FieldName::new("status");
        let b = FieldName::new(&String::from("status"));
        assert!(std::ptr::eq(a.as_str().as_ptr(), b.as_str().as_ptr()));
        assert!(matches!(a.0, Repr::Interned(_)));
        assert_eq!(a, b);
        assert_eq!(a, "status");
    }

    #[test]
    fn long_names_are_not_interned_but_compare_equal() {
        let long = "x".repeat(MAX_INTERNED_LEN + 1);
        let a = FieldName::new(&long);
        let b = FieldName::new(&long);
        assert!(matches!(a.0, Repr::Owned(_)));
        assert_eq!(a, b);
        assert_ne!(a, FieldName::new("x"));
        assert_eq!(a.as_str(), long);
        let owned = FieldName(Repr::Owned(Arc::from("status")));
        assert_eq!(
            owned,
            FieldName::new("status"),
            "owned and interned compare by text"
        );
        assert_eq!(FieldName::new("status"), owned);
    }

    #[test]
    fn different_names_differ() {
        assert_ne!(FieldName::new("a"), FieldName::new("b"));
        assert!(FieldName::new("a") < FieldName::new("b"));
    }

    #[test]
    fn name_cache_returns_equal_names_by_position() {
        let mut cache = NameCache::default();
        let first = cache.get(0, "ts");
        let again = cache.get(0, "ts");
        assert!(std::ptr::eq(
            first.as_str().as_ptr(),
            again.as_str().as_ptr()
        ));
        let other = cache.get(0, "event");
        assert_eq!(other, "event");
        assert_eq!(cache.get(5, "deep"), "deep");
    }

    #[test]
    fn name_cache_knows_when_top_level_keys_are_distinct() {
        let mut cache = NameCache::default();
        let keys = |cache: &mut NameCache, keys: &[&str]| -> Vec<bool> {
            keys.iter()
                .enumerate()
                .map(|(i, key)| cache.get_top(i, key).1)
                .collect()
        };
        assert_eq!(keys(&mut cache, &["a", "b", "c"]), [true, true, true]);
        assert_eq!(keys(&mut cache, &["a", "b", "c"]), [true, true, true]);
        assert_eq!(keys(&mut cache, &["a", "b", "a"]), [true, true, false]);
        assert_eq!(keys(&mut cache, &["a", "a", "c"]), [true, false, false]);
        assert_eq!(
            keys(&mut cache, &["x", "b", "c", "d"]),
            [true, true, true, true]
        );
        assert_eq!(keys(&mut cache, &["b", "b"]), [true, false]);
    }
}
