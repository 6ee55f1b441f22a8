//! The two config trees the reader walks: `toml::Value` and `config::Value`.
//!
//! Each file is read strictly from its own `toml::Value` (exact TOML types, errors located in
//! that file), and the layered result from the `config` crate is read from a `config::Value`
//! (which coerces loosely, so `SLUICE_TOPICS__RAW__MAX_EVENTS=10` fills an integer). [`Tree`] is
//! the little the reader needs from either, so both passes run the same code and agree on every
//! key path and message.

use serde::de::DeserializeOwned;
use sluice_pipelines::registry::{ComponentKind, KindError};

use super::path::{KeyPath, Segment};

/// Why a component's kind-specific config did not deserialize.
pub(super) enum KindFailure {
    /// The `type` names no registered kind.
    Unknown,
    /// A key inside the component is wrong: its path relative to the component, and the message.
    Field(KeyPath, String),
}

/// A config value tree the reader can walk and deserialize from.
pub(super) trait Tree: Sized {
    /// The entries of a table (sorted by key), or the value back when it is not a table.
    ///
    /// # Errors
    /// The value itself when it is not a table.
    fn into_entries(self) -> Result<Vec<(String, Self)>, Self>;
    /// A table of `entries`.
    fn from_entries(entries: Vec<(String, Self)>) -> Self;
    /// The items of an array, or the value back when it is not an array.
    ///
    /// # Errors
    /// The value itself when it is not an array.
    fn into_items(self) -> Result<Vec<Self>, Self>;
    /// The string, when the value is one.
    fn as_str(&self) -> Option<&str>;
    /// The integer, when the value is one (or, in the layered tree, a string that reads as one).
    fn as_integer(&self) -> Option<i64>;
    /// A string value.
    fn from_string(text: &str) -> Self;
    /// An integer value.
    fn from_integer(number: i64) -> Self;
    /// The value as an error message shows it: `string "two"`, `integer 5`, `a table`.
    fn describe(&self) -> String;
    /// Deserializes the value as a `V`.
    ///
    /// # Errors
    /// The message of the deserializer.
    fn deserialize<V: DeserializeOwned>(self) -> Result<V, String>;
    /// Deserializes the value as a `V`, reporting the path of the key at fault.
    ///
    /// # Errors
    /// The path (relative to this value) and message of the first problem.
    fn deserialize_tracked<V: DeserializeOwned>(self) -> Result<V, (KeyPath, String)>;
    /// Deserializes the value (a table without `type`) as the `kind` of `K`.
    ///
    /// # Errors
    /// As [`ComponentKind::deserialize_kind`], with the path and message made readable.
    fn deserialize_kind<K: ComponentKind>(self, kind: &str) -> Result<K, KindFailure>;
}

impl Tree for toml::Value {
    fn into_entries(self) -> Result<Vec<(String, Self)>, Self> {
        match self {
            toml::Value::Table(table) => {
                let mut entries: Vec<_> = table.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(entries)
            }
            other => Err(other),
        }
    }

    fn from_entries(entries: Vec<(String, Self)>) -> Self {
        toml::Value::Table(entries.into_iter().collect())
    }

    fn into_items(self) -> Result<Vec<Self>, Self> {
        match self {
            toml::Value::Array(items) => Ok(items),
            other => Err(other),
        }
    }

    fn as_str(&self) -> Option<&str> {
        toml::Value::as_str(self)
    }

    fn as_integer(&self) -> Option<i64> {
        toml::Value::as_integer(self)
    }

    fn from_string(text: &str) -> Self {
        toml::Value::String(text.to_owned())
    }

    fn from_integer(number: i64) -> Self {
        toml::Value::Integer(number)
    }

    fn describe(&self) -> String {
        match self {
            toml::Value::String(text) => format!("string {text:?}"),
            toml::Value::Integer(number) => format!("integer {number}"),
            toml::Value::Float(number) => format!("float {number}"),
            toml::Value::Boolean(flag) => format!("boolean {flag}"),
            toml::Value::Datetime(datetime) => format!("datetime {datetime}"),
            toml::Value::Array(_) => "an array".to_owned(),
            toml::Value::Table(_) => "a table".to_owned(),
        }
    }

    fn deserialize<V: DeserializeOwned>(self) -> Result<V, String> {
        V::deserialize(self).map_err(|error| humanize(error.message()))
    }

    fn deserialize_tracked<V: DeserializeOwned>(self) -> Result<V, (KeyPath, String)> {
        serde_path_to_error::deserialize(self).map_err(|error| {
            field_error(KeyPath::from_serde(error.path()), error.inner().message())
        })
    }

    fn deserialize_kind<K: ComponentKind>(self, kind: &str) -> Result<K, KindFailure> {
        K::deserialize_kind(kind, self).map_err(|error| match error {
            KindError::UnknownKind => KindFailure::Unknown,
            KindError::Field(error) => {
                let (path, message) =
                    field_error(KeyPath::from_serde(error.path()), error.inner().message());
                KindFailure::Field(path, message)
            }
        })
    }
}

impl Tree for config::Value {
    fn into_entries(self) -> Result<Vec<(String, Self)>, Self> {
        match self.kind {
            config::ValueKind::Table(table) => {
                let mut entries: Vec<_> = table.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(entries)
            }
            _ => Err(self),
        }
    }

    fn from_entries(entries: Vec<(String, Self)>) -> Self {
        let table: config::Map<String, config::Value> = entries.into_iter().collect();
        config::Value::new(None, config::ValueKind::Table(table))
    }

    fn into_items(self) -> Result<Vec<Self>, Self> {
        match self.kind {
            config::ValueKind::Array(items) => Ok(items),
            _ => Err(self),
        }
    }

    fn as_str(&self) -> Option<&str> {
        match &self.kind {
            config::ValueKind::String(text) => Some(text),
            _ => None,
        }
    }

    fn as_integer(&self) -> Option<i64> {
        match &self.kind {
            config::ValueKind::I64(number) => Some(*number),
            config::ValueKind::U64(number) => i64::try_from(*number).ok(),
            config::ValueKind::I128(number) => i64::try_from(*number).ok(),
            config::ValueKind::U128(number) => i64::try_from(*number).ok(),
            // An environment override is a string.
            config::ValueKind::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    }

    fn from_string(text: &str) -> Self {
        config::Value::new(None, config::ValueKind::String(text.to_owned()))
    }

    fn from_integer(number: i64) -> Self {
        config::Value::new(None, config::ValueKind::I64(number))
    }

    fn describe(&self) -> String {
        use config::ValueKind as K;
        match &self.kind {
            K::Nil => "nothing".to_owned(),
            K::String(text) => format!("string {text:?}"),
            K::I64(number) => format!("integer {number}"),
            K::I128(number) => format!("integer {number}"),
            K::U64(number) => format!("integer {number}"),
            K::U128(number) => format!("integer {number}"),
            K::Float(number) => format!("float {number}"),
            K::Boolean(flag) => format!("boolean {flag}"),
            K::Array(_) => "an array".to_owned(),
            K::Table(_) => "a table".to_owned(),
        }
    }

    fn deserialize<V: DeserializeOwned>(self) -> Result<V, String> {
        V::deserialize(self).map_err(|error| humanize(&config_message(&error)))
    }

    fn deserialize_tracked<V: DeserializeOwned>(self) -> Result<V, (KeyPath, String)> {
        serde_path_to_error::deserialize(self).map_err(|error| {
            field_error(
                KeyPath::from_serde(error.path()),
                &config_message(error.inner()),
            )
        })
    }

    fn deserialize_kind<K: ComponentKind>(self, kind: &str) -> Result<K, KindFailure> {
        K::deserialize_kind(kind, self).map_err(|error| match error {
            KindError::UnknownKind => KindFailure::Unknown,
            KindError::Field(error) => {
                let (path, message) = field_error(
                    KeyPath::from_serde(error.path()),
                    &config_message(error.inner()),
                );
                KindFailure::Field(path, message)
            }
        })
    }
}

/// The message of a `config` error without the key and origin it appends (we report those
/// ourselves), in the words serde uses.
fn config_message(error: &config::ConfigError) -> String {
    match error {
        config::ConfigError::NotFound(key) => format!("missing field `{key}`"),
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}"),
        config::ConfigError::At { error, .. } => config_message(error),
        other => other.to_string(),
    }
}

/// Makes a deserializer's error point at the key at fault and read in config words.
///
/// A missing key stays at the path of its table, which is where it is missing; an unknown key
/// gets its own path, which points at its line.
fn field_error(mut path: KeyPath, message: &str) -> (KeyPath, String) {
    let unknown = message.strip_prefix("unknown field `").and_then(|rest| {
        let end = rest
            .find("`, ")
            .or_else(|| rest.strip_suffix('`').map(str::len))?;
        rest.get(..end)
    });
    // serde_path_to_error already ends the path with the unknown key when it could read it.
    let last = path.segments().last();
    if let Some(key) = unknown
        && last != Some(&Segment::Key(key.to_owned()))
    {
        path = path.key(key);
    }
    (path, humanize(message))
}

/// Rewords serde's messages for config users: keys, not fields; values, not variants; "an
/// integer", not `usize`.
pub(super) fn humanize(message: &str) -> String {
    let mut message = message
        .replacen("unknown field `", "unknown key `", 1)
        .replacen("missing field `", "missing key `", 1)
        .replacen("unknown variant `", "unknown value `", 1)
        .replacen(", there are no fields", ", this component takes no keys", 1);
    if let Some(at) = message.rfind(", expected ") {
        let expected = &message[at + ", expected ".len()..];
        let plain = match expected {
            "usize" | "u64" | "u32" | "u16" | "u8" => Some("a non-negative integer"),
            "isize" | "i64" | "i32" | "i16" | "i8" => Some("an integer"),
            "f64" | "f32" => Some("a number"),
            _ => None,
        };
        if let Some(plain) = plain {
            message.truncate(at + ", expected ".len());
            message.push_str(plain);
        }
    }
    message
}
