//! Config pieces several steps share: field paths, tables that keep their order.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::event::FieldName;
use crate::step::BuildError;

/// Splits a dotted path (`user.id`) into interned names.
///
/// # Errors
/// A [`BuildError`] at `key` when a segment is empty (`a..b`, `.a`, ``).
pub(crate) fn parse_path(key: &str, path: &str) -> Result<Vec<FieldName>, BuildError> {
    if path.split('.').any(str::is_empty) {
        return Err(BuildError::at(
            key,
            format!("`{path}` is not a field path: expected names separated by single dots"),
        ));
    }
    Ok(path.split('.').map(FieldName::new).collect())
}

/// A dotted path for messages.
pub(crate) fn join(path: &[FieldName]) -> String {
    let names: Vec<&str> = path.iter().map(FieldName::as_str).collect();
    names.join(".")
}

/// A table read as a list of pairs, in the order the deserializer gives them, so outputs can
/// follow the user's order where the config loader keeps it (the `toml` crate keeps document
/// order only with its `preserve_order` feature; otherwise keys come sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4).min(64));
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    pairs.push((key, value));
                }
                Ok(OrderedMap(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor(PhantomData))
    }
}

/// This host's name, read once per process: `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else
/// `localhost`.
pub(crate) fn hostname() -> &'static str {
    static HOSTNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .or_else(|| {
                std::env::var("HOSTNAME")
                    .ok()
                    .filter(|name| !name.is_empty())
            })
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_maps_keep_the_deserializer_order() {
        #[derive(serde::Deserialize)]
        struct Config {
            fields: OrderedMap<String>,
        }
        let config: Config =
            toml::from_str("fields = { z = \"1\", a = \"2\", m = \"3\" }").unwrap();
        let mut pairs: Vec<(&str, &str)> =
            config.fields.iter().map(|(k, v)| (k, v.as_str())).collect();
        pairs.sort();
        assert_eq!(pairs, [("a", "2"), ("m", "3"), ("z", "1")]);
        assert!(toml::from_str::<Config>("fields = 3").is_err());
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
        assert_eq!(hostname(), hostname());
    }
}
