//! The event model: what flows through sources, topics, pipelines and sinks.
//!
//! An [`Event`] starts life as a raw line (a [`Bytes`] slice of the buffer the source read, not a
//! copy) and gains typed [`Fields`] when a `parse` step runs. Encoders show the raw line as the
//! `message` field. Events move in [`Batch`]es whose byte size is computed once, so the topic
//! queue can account memory without walking events again.

mod field;
mod value;

use bytes::Bytes;

pub use field::{FieldName, MAX_INTERNED, NameCache};
pub use value::{Fields, Str, Value};

/// The field name under which encoders show an event's raw line.
pub const MESSAGE: &str = "message";

/// Identifies the source that produced an event; an index into the topology's list of sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceId(pub u32);

/// Where an event came from, for acknowledgement and debugging.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// The source that read the event.
    pub source: SourceId,
    /// The position of the event in its source (a byte offset for files), if it has one.
    pub origin: Option<u64>,
}

/// One event: an optional raw line, typed fields, and metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    raw: Option<Bytes>,
    fields: Fields,
    meta: EventMeta,
}

/// Fixed overhead counted per event in byte accounting, on top of its payload.
const EVENT_OVERHEAD: usize = std::mem::size_of::<Event>();

impl Event {
    /// An event holding only a raw line.
    #[inline]
    pub fn from_raw(raw: Bytes, meta: EventMeta) -> Self {
        Event {
            raw: Some(raw),
            fields: Fields::new(),
            meta,
        }
    }

    /// An event holding only fields.
    pub fn from_fields(fields: Fields) -> Self {
        Event {
            raw: None,
            fields,
            meta: EventMeta::default(),
        }
    }

    /// The raw line, if the event still has one.
    #[inline]
    pub fn raw(&self) -> Option<&Bytes> {
        self.raw.as_ref()
    }

    /// Replaces the raw line.
    pub fn set_raw(&mut self, raw: Option<Bytes>) {
        self.raw = raw;
    }

    /// Removes and returns the raw line.
    pub fn take_raw(&mut self) -> Option<Bytes> {
        self.raw.take()
    }

    /// The typed fields.
    #[inline]
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The typed fields, mutable.
    #[inline]
    pub fn fields_mut(&mut self) -> &mut Fields {
        &mut self.fields
    }

    /// The metadata.
    #[inline]
    pub fn meta(&self) -> &EventMeta {
        &self.meta
    }

    /// The metadata, mutable.
    pub fn meta_mut(&mut self) -> &mut EventMeta {
        &mut self.meta
    }

    /// The value of a top-level field.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// The value at a path of names into nested maps (`["user", "id"]` for `user.id`).
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.fields.get(first.as_ref())?;
        for segment in rest {
            value = match value {
                Value::Map(map) => map.get(segment.as_ref())?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// Sets a top-level field.
    pub fn insert(&mut self, name: impl Into<FieldName>, value: impl Into<Value>) -> Option<Value> {
        self.fields.insert(name.into(), value.into())
    }

    /// Sets the value at a path, creating intermediate maps (and replacing non-map values on the
    /// way, as a JSON assignment would). An empty path does nothing.
    pub fn insert_path(&mut self, path: &[FieldName], value: Value) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut map = &mut self.fields;
        for segment in parents {
            if !matches!(map.get_name(segment), Some(Value::Map(_))) {
                map.insert(segment.clone(), Value::Map(Fields::new()));
            }
            map = match map.get_mut(segment.as_str()) {
                Some(Value::Map(inner)) => inner,
                // Just made sure it is a map.
                _ => return,
            };
        }
        map.insert(last.clone(), value);
    }

    /// Removes a top-level field.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.fields.remove(name)
    }

    /// An estimate of the memory the event holds, for queue byte accounting.
    #[inline]
    pub fn estimated_size(&self) -> usize {
        let raw = self.raw.as_ref().map_or(0, Bytes::len);
        let fields = if self.fields.is_empty() {
            0
        } else {
            self.fields.estimated_size()
        };
        EVENT_OVERHEAD + raw + fields
    }
}

/// Copies the text of `events` (raw lines and string values) into one new buffer shared by the
/// batch, so the events stop pinning the (much larger) buffers they were sliced from.
///
/// Parsers hand out zero-copy slices of the chunk a source read. When a filter keeps a few events
/// of a batch, those few would keep the whole chunk alive while they wait in a topic — memory the
/// topic's byte accounting cannot see. A pipeline calls this when it kept a small share of its
/// input, at the cost of copying only what it kept.
pub fn compact_events(events: &mut [Event]) {
    fn copy_value(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::String(text) => out.extend_from_slice(text.as_bytes()),
            Value::Array(items) => items.iter().for_each(|item| copy_value(item, out)),
            Value::Map(map) => map.iter().for_each(|(_, item)| copy_value(item, out)),
            _ => {}
        }
    }
    fn reslice_value(value: &mut Value, buffer: &Bytes, at: &mut usize) {
        match value {
            Value::String(text) => {
                let end = *at + text.len();
                let slice = buffer.slice(*at..end);
                *at = end;
                // The bytes were copied from a valid string.
                if let Ok(copied) = Str::from_utf8(slice) {
                    *text = copied;
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .for_each(|item| reslice_value(item, buffer, at)),
            Value::Map(map) => map
                .iter_mut()
                .for_each(|(_, item)| reslice_value(item, buffer, at)),
            _ => {}
        }
    }
    let mut text = Vec::new();
    for event in events.iter() {
        if let Some(raw) = &event.raw {
            text.extend_from_slice(raw);
        }
        for (_, value) in event.fields.iter() {
            copy_value(value, &mut text);
        }
    }
    let buffer = Bytes::from(text);
    let mut at = 0;
    for event in events.iter_mut() {
        if let Some(raw) = &mut event.raw {
            let end = at + raw.len();
            *raw = buffer.slice(at..end);
            at = end;
        }
        for (_, value) in event.fields.iter_mut() {
            reslice_value(value, &buffer, &mut at);
        }
    }
}

/// A batch of events with its byte size computed once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    events: Vec<Event>,
    byte_size: usize,
}

impl Batch {
    /// A batch of `events`, computing their byte size.
    pub fn new(events: Vec<Event>) -> Self {
        let byte_size = events.iter().map(Event::estimated_size).sum();
        Batch { events, byte_size }
    }

    /// The events.
    #[inline]
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Takes the events out.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// Number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The estimated bytes the events hold.
    #[inline]
    pub fn byte_size(&self) -> usize {
        self.byte_size
    }
}

impl From<Vec<Event>> for Batch {
    fn from(events: Vec<Event>) -> Self {
        Batch::new(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_read_and_write() {
        let mut event = Event::default();
        let path = [FieldName::new("user"), FieldName::new("id")];
        event.insert_path(&path, Value::Int(7));
        assert_eq!(event.get_path(&["user", "id"]), Some(&Value::Int(7)));
        assert_eq!(event.get_path(&["user", "missing"]), None);
        assert_eq!(event.get_path(&["user", "id", "deeper"]), None);
        // A scalar in the way is replaced by a map.
        event.insert("plain", 1i64);
        event.insert_path(
            &[FieldName::new("plain"), FieldName::new("x")],
            Value::Bool(true),
        );
        assert_eq!(event.get_path(&["plain", "x"]), Some(&Value::Bool(true)));
    }

    #[test]
    fn compaction_copies_text_out_of_the_source_buffer() {
        let chunk = Bytes::from_static(b"GET /a 200\nGET /b 500\n");
        let line = chunk.slice(11..21);
        let mut event = Event::from_raw(line.clone(), EventMeta::default());
        let text = Str::from_utf8(line).unwrap();
        event.insert("path", Value::String(text.slice_ref(&text.as_str()[4..6])));
        let mut nested = Fields::new();
        nested.insert(
            "tags".into(),
            Value::Array(vec![Value::from("x"), Value::Int(1)]),
        );
        event.insert("meta", Value::Map(nested));
        let before = event.clone();
        let mut events = vec![event];
        compact_events(&mut events);
        assert_eq!(events[0], before, "same content");
        let chunk_range = chunk.as_ptr_range();
        let raw_ptr = events[0].raw().unwrap().as_ptr();
        assert!(
            !chunk_range.contains(&raw_ptr),
            "raw line no longer points into the chunk"
        );
        let path_ptr = events[0]
            .get("path")
            .and_then(Value::as_str)
            .unwrap()
            .as_ptr();
        assert!(
            !chunk_range.contains(&path_ptr),
            "fields no longer point into the chunk"
        );
    }

    #[test]
    fn batch_byte_size_counts_raw_and_fields() {
        let small = Event::from_raw(Bytes::from_static(b"abc"), EventMeta::default());
        let mut big = Event::from_raw(Bytes::from(vec![b'x'; 1000]), EventMeta::default());
        big.insert("path", "/index.html");
        let batch = Batch::new(vec![small.clone(), big.clone()]);
        assert_eq!(
            batch.byte_size(),
            small.estimated_size() + big.estimated_size()
        );
        assert!(big.estimated_size() > 1000 + "/index.html".len());
        assert_eq!(batch.len(), 2);
    }
}
