//! Typed field values and the ordered field map.
//!
//! Strings are [`Str`]: UTF-8 text in a [`Bytes`] buffer, so a parser can hand out slices of the
//! raw line without copying. Maps keep insertion order (users see JSON keys in the order their
//! events had them) in a flat vector: events have few fields, and a linear scan over interned
//! names beats hashing at that size.

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::FieldName;

/// UTF-8 text stored in a shared [`Bytes`] buffer; cloning and slicing never copy the text.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Str(Bytes);

impl Str {
    /// An empty string.
    pub const fn new() -> Self {
        Str(Bytes::new())
    }

    /// Wraps `bytes` if they are valid UTF-8, giving them back otherwise.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, Bytes> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Str(bytes)),
            Err(_) => Err(bytes),
        }
    }

    /// Wraps `bytes`, replacing invalid UTF-8 sequences with U+FFFD. Returns whether anything was
    /// replaced, so callers can count invalid input.
    pub fn from_utf8_lossy(bytes: Bytes) -> (Self, bool) {
        match std::str::from_utf8(&bytes) {
            Ok(_) => (Str(bytes), false),
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                (Str(Bytes::from(text)), true)
            }
        }
    }

    /// A string from static text, without copying.
    pub const fn from_static(text: &'static str) -> Self {
        Str(Bytes::from_static(text.as_bytes()))
    }

    /// Slices `self` to the sub-string `part`, which must point into `self` (as slices returned by
    /// `as_str` methods and regex captures do). Shares the buffer instead of copying.
    ///
    /// # Panics
    /// Panics if `part` is not within `self`; callers only pass slices of `self.as_str()`.
    pub fn slice_ref(&self, part: &str) -> Self {
        if part.is_empty() {
            return Str::new();
        }
        Str(self.0.slice_ref(part.as_bytes()))
    }

    /// `part` as a slice of `buffer`, sharing it, when `part` lies within `buffer`; `None`
    /// otherwise. `part` being a `&str` is what makes the slice valid UTF-8.
    #[inline]
    pub fn shared_slice(buffer: &Bytes, part: &str) -> Option<Self> {
        if part.is_empty() {
            return Some(Str::new());
        }
        let range = buffer.as_ptr_range();
        let start = part.as_ptr();
        let inside = range.contains(&start) && start as usize + part.len() <= range.end as usize;
        inside.then(|| Str(buffer.slice_ref(part.as_bytes())))
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks or guarantees UTF-8, and `slice_ref` only takes
        // sub-slices of a `&str`, which are on character boundaries.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Str {
    fn from(text: &str) -> Self {
        Str(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<String> for Str {
    fn from(text: String) -> Self {
        Str(Bytes::from(text))
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed field value.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// No value (JSON `null`).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// UTF-8 text.
    String(Str),
    /// A point in time, UTC, nanosecond precision.
    Timestamp(DateTime<Utc>),
    /// An ordered list.
    Array(Vec<Value>),
    /// A nested map.
    Map(Fields),
}

impl Value {
    /// The name of this value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Timestamp(_) => "timestamp",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    /// The JSON name of this value's type, with its article, for messages about JSON input:
    /// `"a number"`, `"an object"`, `"null"` (a timestamp is a string in JSON).
    pub fn json_kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::String(_) | Value::Timestamp(_) => "a string",
            Value::Array(_) => "an array",
            Value::Map(_) => "an object",
        }
    }

    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The integer, if this is an int.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as a float, if this is an int or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The boolean, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The nested map, if this is a map.
    pub fn as_map(&self) -> Option<&Fields> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// An estimate of the memory this value holds, for queue byte accounting.
    pub fn estimated_size(&self) -> usize {
        const BASE: usize = std::mem::size_of::<Value>();
        match self {
            Value::String(s) => BASE + s.len(),
            Value::Array(items) => BASE + items.iter().map(Value::estimated_size).sum::<usize>(),
            Value::Map(map) => BASE + map.estimated_size(),
            _ => BASE,
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(Str::from(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(Str::from(v))
    }
}
impl From<Str> for Value {
    fn from(v: Str) -> Self {
        Value::String(v)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Self {
        Value::Timestamp(v)
    }
}

/// An insertion-ordered map from field names to values, with unique names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    entries: Vec<(FieldName, Value)>,
}

impl Fields {
    /// An empty map.
    pub const fn new() -> Self {
        Fields {
            entries: Vec::new(),
        }
    }

    /// An empty map with room for `capacity` fields.
    pub fn with_capacity(capacity: usize) -> Self {
        Fields {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Number of fields.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no fields.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `name`, if present.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, value)| value)
    }

    /// The value of the interned `name`, if present (compares pointers first).
    #[inline]
    pub fn get_name(&self, name: &FieldName) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// A mutable reference to the value of `name`, if present.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, value)| value)
    }

    /// Sets `name` to `value`, replacing and returning any previous value (keeping its position).
    pub fn insert(&mut self, name: FieldName, value: Value) -> Option<Value> {
        if let Some((_, slot)) = self.entries.iter_mut().find(|(key, _)| *key == name) {
            return Some(std::mem::replace(slot, value));
        }
        self.entries.push((name, value));
        None
    }

    /// Appends a field without checking for an existing one of the same name. Callers must know
    /// the name is new (a parser filling a fresh map from distinct capture names).
    #[inline]
    pub fn push_unchecked(&mut self, name: FieldName, value: Value) {
        self.entries.push((name, value));
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let position = self
            .entries
            .iter()
            .position(|(key, _)| key.as_str() == name)?;
        Some(self.entries.remove(position).1)
    }

    /// The value at a path of interned names into nested maps (`[user, id]` for `user.id`).
    /// An empty path finds nothing.
    #[inline]
    pub fn get_path(&self, path: &[FieldName]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.get_name(first)?;
        for segment in rest {
            value = match value {
                Value::Map(map) => map.get_name(segment)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// A mutable reference to the value at a path, if present.
    pub fn get_path_mut(&mut self, path: &[FieldName]) -> Option<&mut Value> {
        let (last, parents) = path.split_last()?;
        let mut map = self;
        for segment in parents {
            map = match map.get_name_mut(segment)? {
                Value::Map(inner) => inner,
                _ => return None,
            };
        }
        map.get_name_mut(last)
    }

    /// Removes the value at a path, returning it. Parent maps stay, even when left empty.
    pub fn remove_path(&mut self, path: &[FieldName]) -> Option<Value> {
        let (last, parents) = path.split_last()?;
        let mut map = self;
        for segment in parents {
            map = match map.get_name_mut(segment)? {
                Value::Map(inner) => inner,
                _ => return None,
            };
        }
        let position = map.entries.iter().position(|(key, _)| key == last)?;
        Some(map.entries.remove(position).1)
    }

    /// A mutable reference to the value of the interned `name`, if present.
    #[inline]
    pub fn get_name_mut(&mut self, name: &FieldName) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&FieldName, &mut Value) -> bool) {
        self.entries.retain_mut(|(key, value)| keep(key, value));
    }

    /// The fields in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&FieldName, &Value)> {
        self.entries.iter().map(|(key, value)| (key, value))
    }

    /// The fields in order, values mutable.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&FieldName, &mut Value)> {
        self.entries.iter_mut().map(|(key, value)| (&*key, value))
    }

    /// Removes every field.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// An estimate of the memory the fields hold.
    pub fn estimated_size(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, value)| std::mem::size_of::<FieldName>() + value.estimated_size())
            .sum()
    }
}

impl IntoIterator for Fields {
    type Item = (FieldName, Value);
    type IntoIter = std::vec::IntoIter<(FieldName, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a FieldName, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (FieldName, Value)>,
        fn(&'a (FieldName, Value)) -> (&'a FieldName, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(key, value)| (key, value))
    }
}

impl<K: Into<FieldName>, V: Into<Value>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = Fields::new();
        for (key, value) in iter {
            fields.insert(key.into(), value.into());
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_slices_share_the_buffer() {
        let line = Str::from("GET /index.html HTTP/1.1");
        let path = line.slice_ref(&line.as_str()[4..15]);
        assert_eq!(path, "/index.html");
        assert_eq!(
            path.as_bytes().as_ptr(),
            line.as_bytes()[4..].as_ptr(),
            "slice must not copy"
        );
    }

    #[test]
    fn lossy_conversion_reports_replacement() {
        let (text, replaced) = Str::from_utf8_lossy(Bytes::from_static(b"ok\xffok"));
        assert!(replaced);
        assert_eq!(text, "ok\u{fffd}ok");
        let (text, replaced) = Str::from_utf8_lossy(Bytes::from_static(b"fine"));
        assert!(!replaced);
        assert_eq!(text, "fine");
        assert!(Str::from_utf8(Bytes::from_static(b"\xc3")).is_err());
    }

    #[test]
    fn fields_keep_order_and_replace_in_place() {
        let mut fields = Fields::new();
        fields.insert("b".into(), Value::Int(1));
        fields.insert("a".into(), Value::Int(2));
        assert_eq!(
            fields.insert("b".into(), Value::Int(3)),
            Some(Value::Int(1))
        );
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(fields.get("b"), Some(&Value::Int(3)));
        assert_eq!(fields.remove("b"), Some(Value::Int(3)));
        assert_eq!(fields.len(), 1);
        assert_eq!(fields.get("missing"), None);
    }

    #[test]
    fn value_accessors_match_kinds() {
        assert_eq!(Value::Int(4).as_f64(), Some(4.0));
        assert_eq!(Value::from("x").as_str(), Some("x"));
        assert_eq!(Value::Null.kind(), "null");
        assert_eq!(Value::Bool(true).as_int(), None);
    }
}
