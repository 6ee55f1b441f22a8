//! JSON encoding and decoding of events.
//!
//! Encoding writes straight into a caller-owned buffer (no `serde_json::Value` in between), with
//! the raw line first as `message`, then the fields in order. Timestamps are RFC 3339 in UTC.
//!
//! Decoding builds [`Fields`] directly from serde_json's streaming parser, interning keys through
//! a [`NameCache`] so that the repeated keys of NDJSON cost a string comparison, not a lock.
//! [`JsonDecoder::decode_object_shared`] also shares the input's text: a string without escapes
//! becomes a slice of the input [`Str`] instead of a copy, which saves an allocation per string;
//! and it first tries a specialized object parser (module `json_fast`), falling back to
//! serde_json for whatever that parser is not sure of — and for every error message.

use std::fmt;

use bytes::Bytes;
use std::io::Write as _;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::event::{Event, FieldName, Fields, MESSAGE, NameCache, Str, Value};

/// Appends `event` as one JSON object (no newline) to `out`. A field named `message` wins over
/// the raw line, so the key is never written twice.
pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    if let Some(raw) = event.raw()
        && event.fields().get(MESSAGE).is_none()
    {
        write_key(MESSAGE, out);
        write_lossy_string(raw, out);
        first = false;
    }
    for (name, value) in event.fields() {
        if !first {
            out.push(b',');
        }
        first = false;
        write_key(name.as_str(), out);
        encode_value(value, out);
    }
    out.push(b'}');
}

/// Appends `value` as JSON to `out`.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) => write_float(*f, out),
        Value::String(s) => write_string(s.as_str(), out),
        Value::Timestamp(ts) => {
            out.push(b'"');
            write_timestamp(ts, out);
            out.push(b'"');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_value(item, out);
            }
            out.push(b']');
        }
        Value::Map(map) => {
            out.push(b'{');
            for (i, (name, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_key(name.as_str(), out);
                encode_value(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Formats a timestamp as RFC 3339 UTC with as many fractional digits as it needs
/// (`2024-05-01T12:00:00.123Z`).
pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Appends `value` as JSON: the shortest digits that read back as the same float, written out
/// in full (never an exponent) and always with a decimal point, so it reads back as a float;
/// `null` for NaN and the infinities, which JSON cannot hold. Written in place: no allocation.
fn write_float(value: f64, out: &mut Vec<u8>) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let start = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{value}");
    if !out[start..].contains(&b'.') {
        out.extend_from_slice(b".0");
    }
}

/// Appends the last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut Vec<u8>, value: u32, width: u32) {
    for power in (0..width).rev() {
        out.push(b'0' + (value / 10u32.pow(power) % 10) as u8);
    }
}

/// Appends `ts` exactly as [`format_timestamp`] writes it, without allocating: RFC 3339 UTC
/// with 0, 3, 6 or 9 fractional digits, as many as it needs.
pub fn write_timestamp(ts: &DateTime<Utc>, out: &mut Vec<u8>) {
    let year = ts.year();
    let nanos = ts.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Years chrono writes with a sign, and leap seconds: rare, left to chrono.
        out.extend_from_slice(format_timestamp(ts).as_bytes());
        return;
    }
    push_digits(out, year as u32, 4);
    out.push(b'-');
    push_digits(out, ts.month(), 2);
    out.push(b'-');
    push_digits(out, ts.day(), 2);
    out.push(b'T');
    push_digits(out, ts.hour(), 2);
    out.push(b':');
    push_digits(out, ts.minute(), 2);
    out.push(b':');
    push_digits(out, ts.second(), 2);
    if nanos != 0 {
        let (fraction, width) = if nanos.is_multiple_of(1_000_000) {
            (nanos / 1_000_000, 3)
        } else if nanos.is_multiple_of(1_000) {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        out.push(b'.');
        push_digits(out, fraction, width);
    }
    out.push(b'Z');
}

fn write_key(key: &str, out: &mut Vec<u8>) {
    write_string(key, out);
    out.push(b':');
}

fn write_lossy_string(bytes: &[u8], out: &mut Vec<u8>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => write_string(text, out),
        Err(_) => write_string(&String::from_utf8_lossy(bytes), out),
    }
}

/// Which bytes need escaping in a JSON string.
static ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Appends `text` as a quoted JSON string.
pub fn write_string(text: &str, out: &mut Vec<u8>) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if !ESCAPE[byte as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            other => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(other >> 4) as usize]);
                out.push(HEX[(other & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Why a JSON input could not be decoded into fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonDecodeError {
    /// The input is not valid JSON; `column` is 1-based.
    #[error("invalid JSON at column {column}: {message}")]
    Syntax {
        /// Where the parser stopped.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The input is valid JSON but not an object.
    #[error("expected a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

pub use super::json_fast::MAX_DEPTH;

/// Decodes JSON objects into [`Fields`], reusing interned keys between calls.
#[derive(Default, Debug)]
pub struct JsonDecoder {
    names: NameCache,
}

impl JsonDecoder {
    /// A decoder with an empty key cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one JSON object.
    ///
    /// # Errors
    /// Fails on invalid JSON, on JSON that is not an object, and on nesting deeper than
    /// [`MAX_DEPTH`].
    pub fn decode_object(&mut self, input: &[u8]) -> Result<Fields, JsonDecodeError> {
        match self.decode_value(input)? {
            Value::Map(fields) => Ok(fields),
            other => Err(JsonDecodeError::NotAnObject {
                found: other.json_kind(),
            }),
        }
    }

    /// Decodes one JSON object whose strings without escapes are slices of `input` (sharing its
    /// buffer) rather than copies.
    ///
    /// # Errors
    /// As [`JsonDecoder::decode_object`].
    pub fn decode_object_shared(&mut self, input: &Bytes) -> Result<Fields, JsonDecodeError> {
        if let Some(fields) = super::json_fast::decode_object(input, &mut self.names) {
            return Ok(fields);
        }
        match self.decode(input, Some(input))? {
            Value::Map(fields) => Ok(fields),
            other => Err(JsonDecodeError::NotAnObject {
                found: other.json_kind(),
            }),
        }
    }

    /// Decodes one JSON value of any type.
    ///
    /// # Errors
    /// Fails on invalid JSON and on nesting deeper than [`MAX_DEPTH`].
    pub fn decode_value(&mut self, input: &[u8]) -> Result<Value, JsonDecodeError> {
        self.decode(input, None)
    }

    fn decode(&mut self, input: &[u8], source: Option<&Bytes>) -> Result<Value, JsonDecodeError> {
        // One UTF-8 check of the whole input lets serde_json skip its check of every string.
        match std::str::from_utf8(input) {
            Ok(text) => self.run(serde_json::Deserializer::from_str(text), source),
            Err(_) => self.run(serde_json::Deserializer::from_slice(input), source),
        }
    }

    fn run<'de, R: serde_json::de::Read<'de>>(
        &mut self,
        mut deserializer: serde_json::Deserializer<R>,
        source: Option<&Bytes>,
    ) -> Result<Value, JsonDecodeError> {
        let mut too_deep = false;
        let seed = ValueSeed {
            names: &mut self.names,
            depth: 0,
            too_deep: &mut too_deep,
            source,
        };
        let result = seed
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value));
        match result {
            Ok(value) => Ok(value),
            Err(_) if too_deep => Err(JsonDecodeError::TooDeep),
            Err(error) => Err(JsonDecodeError::Syntax {
                column: error.column(),
                message: strip_position(&error.to_string()),
            }),
        }
    }
}

/// serde_json appends " at line L column C"; the column is reported separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

struct ValueSeed<'a> {
    names: &'a mut NameCache,
    depth: usize,
    too_deep: &'a mut bool,
    /// The input, when borrowed strings may be shared with it.
    source: Option<&'a Bytes>,
}

impl ValueSeed<'_> {
    /// `text` as a slice of the source when it lies inside it, else a copy.
    fn string(&self, text: &str) -> Value {
        Value::String(
            self.source
                .and_then(|source| Str::shared_slice(source, text))
                .unwrap_or_else(|| Str::from(text)),
        )
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(v as f64),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(Str::from(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value, E> {
        Ok(self.string(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(Str::from(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            *self.too_deep = true;
            return Err(de::Error::custom("nested too deep"));
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(ValueSeed {
            names: self.names,
            depth: self.depth + 1,
            too_deep: self.too_deep,
            source: self.source,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            *self.too_deep = true;
            return Err(de::Error::custom("nested too deep"));
        }
        let top = self.depth == 0;
        // Top-level objects from one producer have the same size: start with the last one's.
        let guess = if top { self.names.top_len_hint() } else { 0 };
        let mut fields = Fields::with_capacity(map.size_hint().unwrap_or(guess.max(4)).min(64));
        let mut position = 0;
        // Nested objects use their own positions; only the top level benefits from the cache
        // position scheme, so nested keys are offset to avoid thrashing top-level slots.
        let base = if top { 0 } else { NameCache::TOP_POSITIONS };
        while let Some((key, distinct)) = map.next_key_seed(KeySeed {
            names: self.names,
            position: base + position,
            top,
        })? {
            let value = map.next_value_seed(ValueSeed {
                names: self.names,
                depth: self.depth + 1,
                too_deep: self.too_deep,
                source: self.source,
            })?;
            if distinct {
                // The name cache vouches that no earlier key of this object is the same.
                fields.push_unchecked(key, value);
            } else {
                // Duplicate keys: the last one wins, as in most JSON parsers.
                fields.insert(key, value);
            }
            position += 1;
        }
        if top {
            self.names.set_top_len_hint(fields.len());
        }
        Ok(Value::Map(fields))
    }
}

struct KeySeed<'a> {
    names: &'a mut NameCache,
    position: usize,
    /// A key of the top-level object: the cache can tell whether it is a repeat.
    top: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (FieldName, bool);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<(FieldName, bool), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = (FieldName, bool);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<(FieldName, bool), E> {
        Ok(if self.top {
            self.names.get_top(self.position, v)
        } else {
            (self.names.get(self.position, v), false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventMeta;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn encode(event: &Event) -> String {
        let mut out = Vec::new();
        encode_event(event, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn raw_line_is_encoded_as_message_first() {
        let mut event = Event::from_raw(
            Bytes::from_static(b"a \"quoted\"\tline"),
            EventMeta::default(),
        );
        event.insert("status", 404i64);
        event.insert("ratio", 0.5);
        event.insert("whole", 2.0);
        assert_eq!(
            encode(&event),
            r#"{"message":"a \"quoted\"\tline","status":404,"ratio":0.5,"whole":2.0}"#
        );
    }

    #[test]
    fn a_message_field_wins_over_the_raw_line() {
        let mut event = Event::from_raw(
            Bytes::from_static(b"{\"message\":\"hi\"}"),
            EventMeta::default(),
        );
        event.insert("message", "hi");
        assert_eq!(encode(&event), r#"{"message":"hi"}"#);
    }

    #[test]
    fn control_characters_and_invalid_utf8_are_escaped() {
        let event = Event::from_raw(Bytes::from_static(b"\x01\xff"), EventMeta::default());
        assert_eq!(encode(&event), "{\"message\":\"\\u0001\u{fffd}\"}");
    }

    #[test]
    fn numbers_encode_exactly_and_floats_keep_a_decimal_point() {
        let mut event = Event::default();
        event.insert("min", i64::MIN);
        event.insert("max", i64::MAX);
        event.insert("zero", 0i64);
        event.insert("whole", 2.0f64);
        event.insert("frac", -0.125f64);
        event.insert("tiny", 1e-7f64);
        assert_eq!(
            encode(&event),
            r#"{"min":-9223372036854775808,"max":9223372036854775807,"zero":0,"whole":2.0,"frac":-0.125,"tiny":0.0000001}"#
        );
    }

    proptest::proptest! {
        /// The in-place writers give exactly what the allocating formatters did.
        #[test]
        fn floats_and_timestamps_write_as_their_formatters_did(
            float in proptest::num::f64::ANY,
            seconds in -62_135_596_800i64..253_402_300_799,
            nanos in proptest::prop_oneof![
                proptest::strategy::Just(0u32),
                (0u32..1000).prop_map(|ms| ms * 1_000_000),
                (0u32..1_000_000).prop_map(|us| us * 1_000),
                0u32..1_000_000_000,
            ],
        ) {
            let mut out = Vec::new();
            write_float(float, &mut out);
            let expected = if float.is_finite() {
                let text = format!("{float}");
                if text.contains(['.', 'e', 'E']) { text } else { format!("{text}.0") }
            } else {
                "null".to_owned()
            };
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
            let ts = DateTime::from_timestamp(seconds, nanos).unwrap();
            let mut out = Vec::new();
            write_timestamp(&ts, &mut out);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), format_timestamp(&ts));
        }
    }

    #[test]
    fn timestamps_encode_as_rfc3339() {
        let ts = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut event = Event::default();
        event.insert("ts", ts);
        event.insert("nan", f64::NAN);
        assert_eq!(
            encode(&event),
            r#"{"ts":"2024-05-01T12:00:00.123Z","nan":null}"#
        );
    }

    #[test]
    fn decodes_nested_objects_in_order() {
        let mut decoder = JsonDecoder::new();
        let fields = decoder
            .decode_object(br#"{"b":1,"a":{"x":[true,null,"s",1.5]},"big":18446744073709551615}"#)
            .unwrap();
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["b", "a", "big"]);
        let inner = fields.get("a").unwrap().as_map().unwrap();
        assert_eq!(
            inner.get("x"),
            Some(&Value::Array(vec![
                Value::Bool(true),
                Value::Null,
                Value::from("s"),
                Value::Float(1.5)
            ]))
        );
        assert_eq!(
            fields.get("big"),
            Some(&Value::Float(18446744073709551615.0))
        );
    }

    #[test]
    fn shared_decoding_slices_plain_strings_and_copies_escaped_ones() {
        let input = Bytes::from_static(
            br#"{"plain":"abc","escaped":"a\"b","nested":{"k":["x"]},"empty":""}"#,
        );
        let fields = JsonDecoder::new().decode_object_shared(&input).unwrap();
        let range = input.as_ptr_range();
        let inside = |value: &Value| match value {
            Value::String(text) => range.contains(&text.as_bytes().as_ptr()),
            other => panic!("not a string: {other:?}"),
        };
        assert!(inside(fields.get("plain").unwrap()));
        assert_eq!(fields.get("escaped"), Some(&Value::from("a\"b")));
        assert!(
            !inside(fields.get("escaped").unwrap()),
            "decoded escapes are a copy"
        );
        let nested = fields.get("nested").unwrap().as_map().unwrap();
        let Some(Value::Array(items)) = nested.get("k") else {
            panic!("no array");
        };
        assert!(inside(&items[0]));
        assert_eq!(fields.get("empty"), Some(&Value::from("")));
    }

    #[test]
    fn decode_errors_are_descriptive() {
        let mut decoder = JsonDecoder::new();
        assert_eq!(
            decoder.decode_object(b"[1]"),
            Err(JsonDecodeError::NotAnObject { found: "an array" })
        );
        let err = decoder.decode_object(b"{\"a\":").unwrap_err();
        assert!(
            matches!(err, JsonDecodeError::Syntax { column: 5, .. }),
            "{err:?}"
        );
        assert!(decoder.decode_object(b"{} trailing").is_err());
        let deep = "[".repeat(MAX_DEPTH + 5) + &"]".repeat(MAX_DEPTH + 5);
        assert_eq!(
            decoder.decode_value(deep.as_bytes()),
            Err(JsonDecodeError::TooDeep)
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-1e12f64..1e12).prop_map(Value::Float),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                    .prop_map(|pairs| Value::Map(pairs.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(pairs in prop::collection::vec(("[a-z_]{1,8}", arb_value()), 0..6)) {
            let fields: Fields = pairs.into_iter().collect();
            let event = Event::from_fields(fields.clone());
            let text = encode(&event);
            let decoded = JsonDecoder::new().decode_object(text.as_bytes()).unwrap();
            prop_assert_eq!(&decoded, &fields);
            let shared = JsonDecoder::new().decode_object_shared(&Bytes::from(text)).unwrap();
            prop_assert_eq!(shared, fields);
        }

        /// One decoder over many objects whose keys repeat, move and nest: its name cache's
        /// shortcut around duplicate checks must keep keys unique (the last value wins).
        #[test]
        fn repeated_keys_stay_unique_across_objects(objects in prop::collection::vec(
            prop::collection::vec((prop::sample::select(vec!["a", "b", "c", "d"]), 0i64..5, any::<bool>()), 0..7),
            1..12,
        )) {
            let mut decoder = JsonDecoder::new();
            for object in objects {
                let mut text = String::from("{");
                let mut expected = Fields::new();
                for (i, (key, value, nested)) in object.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    if *nested {
                        text.push_str(&format!("\"{key}\":{{\"{key}\":{value},\"a\":{value}}}"));
                        let inner: Fields = [(*key, Value::Int(*value)), ("a", Value::Int(*value))].into_iter().collect();
                        expected.insert(FieldName::new(key), Value::Map(inner));
                    } else {
                        text.push_str(&format!("\"{key}\":{value}"));
                        expected.insert(FieldName::new(key), Value::Int(*value));
                    }
                }
                text.push('}');
                let decoded = decoder.decode_object_shared(&Bytes::from(text.clone())).unwrap();
                prop_assert_eq!(&decoded, &expected, "{}", text);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(input in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = JsonDecoder::new().decode_value(&input);
        }

        #[test]
        fn encoding_any_string_yields_valid_json(text in ".*") {
            let mut out = Vec::new();
            write_string(&text, &mut out);
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, text);
        }
    }
}
