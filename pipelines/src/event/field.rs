//! Interned field names.
//!
//! Events carry few, repeated field names (`ip`, `status`, `path`, …). Interning them means every
//! event shares one allocation per name, clones are a reference-count bump, and comparing two
//! interned names is usually a pointer comparison. Names come from configs (interned once at build
//! time) and from decoded input (JSON keys); the latter is user-controlled, so the interner is
//! bounded: past [`MAX_INTERNED`] distinct names, new names are allocated without being interned,
//! which keeps memory bounded under garbage input and only costs speed.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, RwLock};

/// How many distinct names the global interner keeps before it stops growing.
pub const MAX_INTERNED: usize = 64 * 1024;

static INTERNER: LazyLock<RwLock<HashSet<Arc<str>>>> =
    LazyLock::new(|| RwLock::new(HashSet::with_capacity(256)));

/// The name of an event field: cheap to clone and compare.
#[derive(Clone)]
pub struct FieldName(Arc<str>);

impl FieldName {
    /// Interns `name`, returning the shared name.
    pub fn new(name: &str) -> Self {
        if let Ok(set) = INTERNER.read()
            && let Some(existing) = set.get(name)
        {
            return FieldName(existing.clone());
        }
        let Ok(mut set) = INTERNER.write() else {
            // A poisoned interner only means another thread panicked while inserting; a fresh
            // allocation is still a correct name.
            return FieldName(Arc::from(name));
        };
        if let Some(existing) = set.get(name) {
            return FieldName(existing.clone());
        }
        let arc: Arc<str> = Arc::from(name);
        if set.len() < MAX_INTERNED {
            set.insert(arc.clone());
        }
        FieldName(arc)
    }

    /// The name as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for FieldName {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Eq for FieldName {}

impl PartialEq<str> for FieldName {
    #[inline]
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for FieldName {
    #[inline]
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Hash for FieldName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl PartialOrd for FieldName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FieldName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl Borrow<str> for FieldName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for FieldName {
    fn as_ref(&self) -> &str {
        &self.0
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
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl serde::Serialize for FieldName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
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
#[derive(Default, Debug)]
pub struct NameCache {
    by_position: Vec<FieldName>,
}

impl NameCache {
    /// Most key positions a cache remembers; deeper keys go to the global interner.
    const MAX_POSITIONS: usize = 256;

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
        } else if position == self.by_position.len() && position < Self::MAX_POSITIONS {
            self.by_position.push(name.clone());
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_share_one_allocation() {
        let a = FieldName::new("status");
        let b = FieldName::new(&String::from("status"));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, b);
        assert_eq!(a, "status");
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
        assert!(Arc::ptr_eq(&first.0, &again.0));
        let other = cache.get(0, "event");
        assert_eq!(other, "event");
        assert_eq!(cache.get(5, "deep"), "deep");
    }
}
