//! A compact binary encoding of batches, for disk topics.
//!
//! JSON would cost a text rendering of every field and a parse on the way back; this format
//! writes each value once with a one-byte tag and LEB128 lengths, and decodes raw lines and
//! strings as zero-copy slices of the input [`Bytes`].
//!
//! # Layout (version 1)
//!
//! ```text
//! batch   := version:u8  names_at:u32le  events:varint  event*  names
//! event   := flags:u8  source:varint  [origin:varint]  [raw:bytes]  [fields]
//!            flags: 0x01 raw present, 0x02 origin present, 0x04 fields present
//! fields  := count:varint  (name:varint  value)*          name = index into `names`
//! names   := count:varint  (len:varint utf8)*             at byte `names_at` of the batch
//! value   := 0 null | 1 false | 2 true | 3 int:zigzag-varint | 4 float:f64le
//!          | 5 string:bytes | 6 timestamp:(secs:zigzag-varint nanos:varint)
//!          | 7 array:(count:varint value*) | 8 map:fields
//! bytes   := len:varint  byte*
//! ```
//!
//! Field names are written once per batch in a table at the end (its position is patched into
//! the header), so events of the same shape cost a small index per field, and decoding interns
//! each name once per batch.
//!
//! # Untrusted input
//!
//! [`decode`] validates everything: lengths against the bytes left, UTF-8 of strings and names,
//! timestamps, nesting depth ([`MAX_DEPTH`]) and trailing bytes. It returns a [`DecodeError`]
//! and never panics, whatever the input; counts never drive an allocation larger than the input.

use bytes::Bytes;
use chrono::DateTime;

use crate::event::{Batch, Event, EventMeta, FieldName, Fields, SourceId, Str, Value};

/// The format version written as the first byte of every encoded batch.
pub const FORMAT_VERSION: u8 = 1;

/// Deepest nesting of arrays and maps encoded and decoded (the JSON decoder's limit is lower,
/// so any event it produced fits).
pub const MAX_DEPTH: usize = 128;

const FLAG_RAW: u8 = 0x01;
const FLAG_ORIGIN: u8 = 0x02;
const FLAG_FIELDS: u8 = 0x04;

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STRING: u8 = 5;
const TAG_TIMESTAMP: u8 = 6;
const TAG_ARRAY: u8 = 7;
const TAG_MAP: u8 = 8;

/// Bytes of the fixed header: the version and the position of the name table.
const HEADER_LEN: usize = 5;

/// Why a batch could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A value nests arrays or maps deeper than [`MAX_DEPTH`].
    #[error("value nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The encoded batch would exceed 4 GiB (the name table's position is 32-bit).
    #[error("encoded batch larger than 4 GiB ({size} bytes)")]
    TooLarge {
        /// Bytes encoded so far.
        size: usize,
    },
}

/// Why bytes could not be decoded into a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside the named item.
    #[error("truncated batch: input ended in {what} at byte {at}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where the input ended.
        at: usize,
    },
    /// The first byte is not a version this build reads.
    #[error("unsupported batch format version {found} (this build reads {FORMAT_VERSION})")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// A byte or number that cannot appear there.
    #[error("invalid {what} at byte {at}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Where.
        at: usize,
    },
    /// A value nests deeper than [`MAX_DEPTH`].
    #[error("value nested deeper than {MAX_DEPTH} levels at byte {at}")]
    TooDeep {
        /// Where.
        at: usize,
    },
    /// Bytes left over after the last event or the name table.
    #[error("{count} unexpected bytes after the batch")]
    Trailing {
        /// How many.
        count: usize,
    },
}

/// Appends `batch` to `out` in the binary format.
///
/// # Errors
/// [`EncodeError`] when a value nests deeper than [`MAX_DEPTH`] or the batch exceeds 4 GiB;
/// `out` is then left as it was.
pub fn encode(batch: &Batch, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_events(batch.events(), out)
}

/// Appends `events` to `out` as one batch in the binary format (see [`encode`]).
///
/// # Errors
/// As [`encode`].
pub fn encode_events(events: &[Event], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let base = out.len();
    let mut encoder = Encoder {
        out,
        names: Vec::new(),
        hints: Vec::new(),
    };
    let result = encoder.batch(base, events);
    if result.is_err() {
        out.truncate(base);
    }
    result
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    /// The batch's name table, in order of first use.
    names: Vec<FieldName>,
    /// For top-level field positions: the table index last seen there, so that events of one
    /// shape find their names without a search.
    hints: Vec<u32>,
}

impl Encoder<'_> {
    fn batch(&mut self, base: usize, events: &[Event]) -> Result<(), EncodeError> {
        self.out.push(FORMAT_VERSION);
        self.out.extend_from_slice(&[0; 4]);
        put_varint(self.out, events.len() as u64);
        for event in events {
            self.event(event)?;
        }
        let names_at = self.out.len() - base;
        let names_at = u32::try_from(names_at).map_err(|_| EncodeError::TooLarge {
            size: self.out.len() - base,
        })?;
        self.out[base + 1..base + HEADER_LEN].copy_from_slice(&names_at.to_le_bytes());
        put_varint(self.out, self.names.len() as u64);
        for name in &self.names {
            put_bytes(self.out, name.as_str().as_bytes());
        }
        Ok(())
    }

    fn event(&mut self, event: &Event) -> Result<(), EncodeError> {
        let meta = event.meta();
        let raw = event.raw();
        let fields = event.fields();
        let mut flags = 0;
        if raw.is_some() {
            flags |= FLAG_RAW;
        }
        if meta.origin.is_some() {
            flags |= FLAG_ORIGIN;
        }
        if !fields.is_empty() {
            flags |= FLAG_FIELDS;
        }
        self.out.push(flags);
        put_varint(self.out, u64::from(meta.source.0));
        if let Some(origin) = meta.origin {
            put_varint(self.out, origin);
        }
        if let Some(raw) = raw {
            put_bytes(self.out, raw);
        }
        if !fields.is_empty() {
            self.fields(fields, 0)?;
        }
        Ok(())
    }

    fn fields(&mut self, fields: &Fields, depth: usize) -> Result<(), EncodeError> {
        put_varint(self.out, fields.len() as u64);
        for (position, (name, value)) in fields.iter().enumerate() {
            let index = self.name_index(name, (depth == 0).then_some(position));
            put_varint(self.out, u64::from(index));
            self.value(value, depth)?;
        }
        Ok(())
    }

    fn name_index(&mut self, name: &FieldName, position: Option<usize>) -> u32 {
        if let Some(position) = position
            && let Some(&hint) = self.hints.get(position)
            && self.names.get(hint as usize) == Some(name)
        {
            return hint;
        }
        let index = match self.names.iter().position(|known| known == name) {
            Some(index) => index as u32,
            None => {
                self.names.push(name.clone());
                (self.names.len() - 1) as u32
            }
        };
        if let Some(position) = position {
            if position < self.hints.len() {
                self.hints[position] = index;
            } else if position == self.hints.len() {
                self.hints.push(index);
            }
        }
        index
    }

    fn value(&mut self, value: &Value, depth: usize) -> Result<(), EncodeError> {
        match value {
            Value::Null => self.out.push(TAG_NULL),
            Value::Bool(false) => self.out.push(TAG_FALSE),
            Value::Bool(true) => self.out.push(TAG_TRUE),
            Value::Int(int) => {
                self.out.push(TAG_INT);
                put_varint(self.out, zigzag(*int));
            }
            Value::Float(float) => {
                self.out.push(TAG_FLOAT);
                self.out.extend_from_slice(&float.to_le_bytes());
            }
            Value::String(text) => {
                self.out.push(TAG_STRING);
                put_bytes(self.out, text.as_bytes());
            }
            Value::Timestamp(time) => {
                self.out.push(TAG_TIMESTAMP);
                put_varint(self.out, zigzag(time.timestamp()));
                put_varint(self.out, u64::from(time.timestamp_subsec_nanos()));
            }
            Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    return Err(EncodeError::TooDeep);
                }
                self.out.push(TAG_ARRAY);
                put_varint(self.out, items.len() as u64);
                for item in items {
                    self.value(item, depth + 1)?;
                }
            }
            Value::Map(map) => {
                if depth >= MAX_DEPTH {
                    return Err(EncodeError::TooDeep);
                }
                self.out.push(TAG_MAP);
                self.fields(map, depth + 1)?;
            }
        }
        Ok(())
    }
}

#[inline]
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Decodes one batch from `input`, which must hold exactly one encoded batch. Raw lines and
/// strings are slices of `input` (no copy).
///
/// # Errors
/// [`DecodeError`] for anything but a well-formed batch of a known version; never panics.
pub fn decode(input: &Bytes) -> Result<Batch, DecodeError> {
    let Some(&version) = input.first() else {
        return Err(DecodeError::Truncated {
            what: "version",
            at: 0,
        });
    };
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version { found: version });
    }
    let Some(header) = input.get(1..HEADER_LEN) else {
        return Err(DecodeError::Truncated {
            what: "header",
            at: input.len(),
        });
    };
    let mut names_at = [0u8; 4];
    names_at.copy_from_slice(header);
    let names_at = u32::from_le_bytes(names_at) as usize;
    if names_at < HEADER_LEN || names_at > input.len() {
        return Err(DecodeError::Invalid {
            what: "name table position",
            at: 1,
        });
    }
    let mut names_reader = Reader {
        input,
        at: names_at,
        end: input.len(),
    };
    let names = names_reader.names()?;
    if names_reader.at != input.len() {
        return Err(DecodeError::Trailing {
            count: input.len() - names_reader.at,
        });
    }
    let mut reader = Reader {
        input,
        at: HEADER_LEN,
        end: names_at,
    };
    let count = reader.varint("event count")?;
    // Every event takes at least two bytes: no count can make us allocate past the input.
    let mut events = Vec::with_capacity((count as usize).min(reader.remaining() / 2));
    for _ in 0..count {
        events.push(reader.event(&names)?);
    }
    if reader.at != names_at {
        return Err(DecodeError::Trailing {
            count: names_at - reader.at,
        });
    }
    Ok(Batch::new(events))
}

struct Reader<'a> {
    input: &'a Bytes,
    at: usize,
    /// Where this reader's region ends (the name table for events, the input's end for names).
    end: usize,
}

impl Reader<'_> {
    #[inline]
    fn remaining(&self) -> usize {
        self.end - self.at
    }

    #[inline]
    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        if self.at >= self.end {
            return Err(DecodeError::Truncated { what, at: self.at });
        }
        let byte = self.input[self.at];
        self.at += 1;
        Ok(byte)
    }

    #[inline]
    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let start = self.at;
            let byte = self.byte(what)?;
            if shift == 63 && byte > 1 {
                return Err(DecodeError::Invalid { what, at: start });
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::Invalid { what, at: start });
            }
        }
    }

    #[inline]
    fn len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.at;
        let len = self.varint(what)?;
        if len > self.remaining() as u64 {
            return Err(DecodeError::Truncated { what, at });
        }
        Ok(len as usize)
    }

    #[inline]
    fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.len(what)?;
        let slice = self.input.slice(self.at..self.at + len);
        self.at += len;
        Ok(slice)
    }

    fn str(&mut self, what: &'static str) -> Result<Str, DecodeError> {
        let at = self.at;
        Str::from_utf8(self.bytes(what)?).map_err(|_| DecodeError::Invalid { what, at })
    }

    fn names(&mut self) -> Result<Vec<FieldName>, DecodeError> {
        let count = self.varint("name count")?;
        let mut names = Vec::with_capacity((count as usize).min(self.remaining()));
        for _ in 0..count {
            let len = self.len("field name")?;
            let at = self.at;
            let text = std::str::from_utf8(&self.input[at..at + len]).map_err(|_| {
                DecodeError::Invalid {
                    what: "field name",
                    at,
                }
            })?;
            names.push(FieldName::new(text));
            self.at += len;
        }
        Ok(names)
    }

    fn event(&mut self, names: &[FieldName]) -> Result<Event, DecodeError> {
        let at = self.at;
        let flags = self.byte("event flags")?;
        if flags & !(FLAG_RAW | FLAG_ORIGIN | FLAG_FIELDS) != 0 {
            return Err(DecodeError::Invalid {
                what: "event flags",
                at,
            });
        }
        let source_at = self.at;
        let source =
            u32::try_from(self.varint("source id")?).map_err(|_| DecodeError::Invalid {
                what: "source id",
                at: source_at,
            })?;
        let origin = if flags & FLAG_ORIGIN != 0 {
            Some(self.varint("origin")?)
        } else {
            None
        };
        let raw = if flags & FLAG_RAW != 0 {
            Some(self.bytes("raw line")?)
        } else {
            None
        };
        let meta = EventMeta {
            source: SourceId(source),
            origin,
        };
        let mut event = match raw {
            Some(raw) => Event::from_raw(raw, meta),
            None => {
                let mut event = Event::default();
                *event.meta_mut() = meta;
                event
            }
        };
        if flags & FLAG_FIELDS != 0 {
            *event.fields_mut() = self.fields(names, 0)?;
        }
        Ok(event)
    }

    fn fields(&mut self, names: &[FieldName], depth: usize) -> Result<Fields, DecodeError> {
        let count = self.varint("field count")?;
        // A field takes at least two bytes (name index and tag).
        let mut fields = Fields::with_capacity((count as usize).min(self.remaining() / 2));
        for _ in 0..count {
            let at = self.at;
            let index = self.varint("field name index")?;
            let name = usize::try_from(index)
                .ok()
                .and_then(|index| names.get(index))
                .ok_or(DecodeError::Invalid {
                    what: "field name index",
                    at,
                })?;
            let value = self.value(names, depth)?;
            // Names are unique in a map: an encoder never writes one twice, and keeping the
            // invariant on hostile input keeps lookups meaningful.
            if fields.insert(name.clone(), value).is_some() {
                return Err(DecodeError::Invalid {
                    what: "duplicate field name",
                    at,
                });
            }
        }
        Ok(fields)
    }

    fn value(&mut self, names: &[FieldName], depth: usize) -> Result<Value, DecodeError> {
        let at = self.at;
        let tag = self.byte("value tag")?;
        Ok(match tag {
            TAG_NULL => Value::Null,
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => Value::Int(unzigzag(self.varint("int")?)),
            TAG_FLOAT => {
                if self.remaining() < 8 {
                    return Err(DecodeError::Truncated {
                        what: "float",
                        at: self.at,
                    });
                }
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&self.input[self.at..self.at + 8]);
                self.at += 8;
                Value::Float(f64::from_le_bytes(raw))
            }
            TAG_STRING => Value::String(self.str("string")?),
            TAG_TIMESTAMP => {
                let secs = unzigzag(self.varint("timestamp seconds")?);
                let nanos = self.varint("timestamp nanoseconds")?;
                let time = u32::try_from(nanos)
                    .ok()
                    .and_then(|nanos| DateTime::from_timestamp(secs, nanos))
                    .ok_or(DecodeError::Invalid {
                        what: "timestamp",
                        at,
                    })?;
                Value::Timestamp(time)
            }
            TAG_ARRAY => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep { at });
                }
                let count = self.varint("array length")?;
                let mut items = Vec::with_capacity((count as usize).min(self.remaining()));
                for _ in 0..count {
                    items.push(self.value(names, depth + 1)?);
                }
                Value::Array(items)
            }
            TAG_MAP => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep { at });
                }
                Value::Map(self.fields(names, depth + 1)?)
            }
            _ => {
                return Err(DecodeError::Invalid {
                    what: "value tag",
                    at,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    fn round_trip(events: Vec<Event>) -> Batch {
        let batch = Batch::new(events);
        let mut out = Vec::new();
        encode(&batch, &mut out).unwrap();
        let decoded = decode(&Bytes::from(out)).unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(decoded.byte_size(), batch.byte_size());
        decoded
    }

    #[test]
    fn raw_lines_round_trip_as_slices_of_the_input() {
        let events: Vec<Event> = (0..3)
            .map(|i| {
                Event::from_raw(
                    Bytes::from(format!("line {i}")),
                    EventMeta {
                        source: SourceId(7),
                        origin: Some(i * 100),
                    },
                )
            })
            .collect();
        let mut out = Vec::new();
        encode_events(&events, &mut out).unwrap();
        // version + names_at + count + 3 × (flags, source, origin ≤ 2 bytes, len, 6 bytes) + names
        assert!(out.len() <= 5 + 1 + 3 * 11 + 1, "{} bytes", out.len());
        let input = Bytes::from(out);
        let batch = decode(&input).unwrap();
        assert_eq!(batch.events(), &events[..]);
        let range = input.as_ptr_range();
        for event in batch.events() {
            assert!(range.contains(&event.raw().unwrap().as_ptr()), "zero-copy");
        }
    }

    #[test]
    fn every_value_kind_round_trips() {
        let time = DateTime::from_timestamp(-86_400 * 365, 123_456_789).unwrap();
        let mut nested = Fields::new();
        nested.insert("inner".into(), Value::Array(vec![Value::Null, 1i64.into()]));
        let mut event = Event::from_raw(Bytes::from_static(b"raw"), EventMeta::default());
        event.insert("null", Value::Null);
        event.insert("yes", true);
        event.insert("no", false);
        event.insert("min", i64::MIN);
        event.insert("max", i64::MAX);
        event.insert("float", -1.5e300);
        event.insert("text", "héllo");
        event.insert("empty", "");
        event.insert("time", time);
        event.insert("now", Utc::now());
        event.insert("map", Value::Map(nested));
        let mut fields_only = Event::from_fields(event.fields().clone());
        fields_only.meta_mut().source = SourceId(u32::MAX);
        fields_only.meta_mut().origin = Some(u64::MAX);
        round_trip(vec![event, fields_only, Event::default()]);
    }

    #[test]
    fn field_names_are_written_once_per_batch() {
        let events: Vec<Event> = (0..100)
            .map(|i| {
                let mut event = Event::default();
                event.insert("a_rather_long_field_name", i as i64);
                event.insert("another_long_field_name", i as i64);
                event
            })
            .collect();
        let mut out = Vec::new();
        encode_events(&events, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("a_rather_long_field_name").count(), 1);
        round_trip(events);
    }

    #[test]
    fn nan_keeps_its_bits() {
        let mut event = Event::default();
        event.insert("nan", f64::NAN);
        let mut out = Vec::new();
        encode_events(&[event], &mut out).unwrap();
        let batch = decode(&Bytes::from(out)).unwrap();
        let Some(Value::Float(back)) = batch.events()[0].get("nan") else {
            panic!("not a float");
        };
        assert_eq!(back.to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn too_deep_values_are_refused_both_ways() {
        let mut value = Value::Null;
        for _ in 0..=MAX_DEPTH {
            value = Value::Array(vec![value]);
        }
        let mut event = Event::default();
        event.insert("deep", value);
        let mut out = vec![42];
        assert_eq!(encode_events(&[event], &mut out), Err(EncodeError::TooDeep));
        assert_eq!(out, [42], "output left as it was");

        // Hand-made: an event whose field is nested MAX_DEPTH + 1 arrays deep.
        let mut body = vec![FORMAT_VERSION, 0, 0, 0, 0, 1, FLAG_FIELDS, 0, 1, 0];
        body.extend(std::iter::repeat_n([TAG_ARRAY, 1], MAX_DEPTH + 1).flatten());
        body.push(TAG_NULL);
        let names_at = body.len() as u32;
        body[1..5].copy_from_slice(&names_at.to_le_bytes());
        body.extend_from_slice(&[1, 1, b'x']);
        assert!(matches!(
            decode(&Bytes::from(body)),
            Err(DecodeError::TooDeep { .. })
        ));
    }

    #[test]
    fn malformed_input_gives_errors() {
        assert!(matches!(
            decode(&Bytes::new()),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            decode(&Bytes::from_static(&[9, 0, 0, 0, 0])),
            Err(DecodeError::Version { found: 9 })
        );
        let mut event = Event::from_raw(Bytes::from_static(b"hello"), EventMeta::default());
        event.insert("k", "v");
        let mut out = Vec::new();
        encode_events(&[event], &mut out).unwrap();
        for cut in 0..out.len() {
            assert!(
                decode(&Bytes::copy_from_slice(&out[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = out.clone();
        trailing.push(0);
        assert!(matches!(
            decode(&Bytes::from(trailing)),
            Err(DecodeError::Trailing { count: 1 })
        ));
        // A huge event count with nothing behind it must not allocate or panic.
        let huge = [FORMAT_VERSION, 15, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0];
        assert!(decode(&Bytes::copy_from_slice(&huge)).is_err());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".{0,12}".prop_map(Value::from),
            (-10_000_000_000i64..10_000_000_000, 0u32..1_000_000_000)
                .prop_map(|(s, n)| { Value::Timestamp(DateTime::from_timestamp(s, n).unwrap()) }),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                    .prop_map(|pairs| Value::Map(pairs.into_iter().collect())),
            ]
        })
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            prop::collection::vec(("[a-e_]{1,4}", arb_value()), 0..6),
            any::<u32>(),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(raw, pairs, source, origin)| {
                let mut event = Event::from_fields(pairs.into_iter().collect());
                event.set_raw(raw.map(Bytes::from));
                *event.meta_mut() = EventMeta {
                    source: SourceId(source),
                    origin,
                };
                event
            })
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            rng_seed: RngSeed::Fixed(0x5eed_b1a7),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_batches_round_trip(events in prop::collection::vec(arb_event(), 0..8)) {
            let batch = Batch::new(events);
            let mut out = Vec::new();
            encode(&batch, &mut out).unwrap();
            let decoded = decode(&Bytes::from(out)).unwrap();
            prop_assert_eq!(decoded, batch);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..96)) {
            let _ = decode(&Bytes::from(input));
        }

        /// Valid batches with bytes flipped: the nastier fuzz input, since most of it parses.
        #[test]
        fn corrupted_batches_never_panic(
            events in prop::collection::vec(arb_event(), 1..4),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut out = Vec::new();
            encode_events(&events, &mut out).unwrap();
            for (index, byte) in flips {
                let at = index.index(out.len());
                out[at] ^= byte | 1;
            }
            let _ = decode(&Bytes::from(out));
        }
    }
}
