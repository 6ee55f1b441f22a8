//! Encodings shared by the sinks that write text or JSON: `console`, `file`, `http`, and the
//! row format of `clickhouse`.
//!
//! An encoding is written either as a name (`encoding = "ndjson"`) or as a table with options:
//!
//! ```toml
//! encoding = { codec = "csv", columns = ["timestamp", "path", "status"], timestamp_format = "unix" }
//! encoding = { codec = "ndjson", except_fields = ["agent"], timestamp_format = "%Y-%m-%d %H:%M:%S" }
//! ```
//!
//! Codecs:
//! - [`Encoding::Ndjson`] (`"ndjson"`, also `"json"`): one JSON object per line, the raw line
//!   first as `message`, then the fields. JSON escapes every control character, so no event can
//!   break the line framing.
//! - [`Encoding::JsonArray`] (`"json_array"`): the batch as one JSON array of those objects — for
//!   HTTP endpoints that want one document per request; not for appending to files.
//! - [`Encoding::Csv`] (`"csv"`): one line per event with the values of `columns` (required; a
//!   column is a field name, a dotted path into nested maps, or `message` for the raw line), RFC
//!   4180 quoting (a value holding `,`, `"`, CR or LF is quoted, `"` doubled), no header line.
//!   Missing and null values are empty; arrays and maps are written as JSON.
//! - [`Encoding::Text`] (`"text"`): the raw line as it was read when the event still has one;
//!   otherwise the fields as logfmt `key=value` pairs in order. A key or value that is empty or
//!   holds a space, a control character, `"` or `=` is written as a quoted, JSON-escaped string,
//!   so fields cannot break the framing either; nested arrays and maps are written as (quoted)
//!   JSON. Raw lines are written byte for byte: they come from line splitting and hold no `\n`.
//!
//! Options:
//! - `only_fields` / `except_fields`: top-level field names to keep / to drop (`message` names the
//!   raw line); not for CSV, whose `columns` already choose.
//! - `timestamp_format`: how timestamp values are written, at any depth: `"rfc3339"` (default,
//!   `2024-05-01T12:00:00.123Z`, as many fraction digits as needed), `"unix"` (integer seconds),
//!   `"unix_ms"` (integer milliseconds; both JSON numbers), or a strftime pattern written as a
//!   string (`"%Y-%m-%d %H:%M:%S"`), always in UTC.
//!
//! Encoding appends to a buffer the caller owns and reuses across batches, so encoding a batch
//! allocates nothing per event on the default path. [`gzip`] compresses a whole request body for
//! the sinks whose protocol allows it (HTTP `Content-Encoding: gzip`).

use std::fmt;
use std::io::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};
use sluice_pipelines::codec::json;
use sluice_pipelines::event::MESSAGE;
use sluice_pipelines::{BuildError, Event, Value};

/// How a sink turns events into bytes (the codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON object per line (`"ndjson"`, also accepted as `"json"`).
    #[default]
    #[serde(alias = "json")]
    Ndjson,
    /// One JSON array per batch (`"json_array"`).
    JsonArray,
    /// Comma-separated values of the configured `columns` (`"csv"`).
    Csv,
    /// The raw line, or logfmt `key=value` pairs when the event has no raw line (`"text"`).
    Text,
}

impl Encoding {
    /// The HTTP `Content-Type` of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::JsonArray => "application/json",
            Encoding::Csv => "text/csv",
            Encoding::Text => "text/plain; charset=utf-8",
        }
    }

    /// Whether every event is one `\n`-terminated line, so batches can be appended to a file.
    pub fn is_line_based(self) -> bool {
        !matches!(self, Encoding::JsonArray)
    }
}

/// How timestamp values are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TimestampFormat {
    /// RFC 3339 in UTC with as many fraction digits as needed (`"rfc3339"`).
    #[default]
    Rfc3339,
    /// Integer seconds since the Unix epoch (`"unix"`).
    Unix,
    /// Integer milliseconds since the Unix epoch (`"unix_ms"`).
    UnixMs,
    /// A strftime pattern, in UTC (`"%Y-%m-%d %H:%M:%S"`).
    Strftime(String),
}

impl<'de> Deserialize<'de> for TimestampFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.as_str() {
            "rfc3339" => TimestampFormat::Rfc3339,
            "unix" => TimestampFormat::Unix,
            "unix_ms" => TimestampFormat::UnixMs,
            _ if text.contains('%') => TimestampFormat::Strftime(text),
            _ => {
                return Err(de::Error::custom(format!(
                    "expected \"rfc3339\", \"unix\", \"unix_ms\" or a strftime pattern such as \"%Y-%m-%d %H:%M:%S\", found {text:?}"
                )));
            }
        })
    }
}

/// An encoding and its options, as written in a sink's config (`encoding`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    /// The codec; default `ndjson`.
    #[serde(default)]
    pub codec: Encoding,
    /// The columns of `csv`: field names, dotted paths, or `message`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Top-level fields to keep; default all.
    #[serde(default)]
    pub only_fields: Option<Vec<String>>,
    /// Top-level fields to drop; default none.
    #[serde(default)]
    pub except_fields: Vec<String>,
    /// How timestamps are written; default `rfc3339`.
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
}

impl From<Encoding> for EncodingConfig {
    fn from(codec: Encoding) -> Self {
        EncodingConfig {
            codec,
            ..EncodingConfig::default()
        }
    }
}

impl PartialEq<Encoding> for EncodingConfig {
    fn eq(&self, other: &Encoding) -> bool {
        self.codec == *other
            && self.columns.is_empty()
            && self.only_fields.is_none()
            && self.except_fields.is_empty()
            && self.timestamp_format == TimestampFormat::Rfc3339
    }
}

/// Accepts a codec name or a table.
pub fn deserialize_encoding<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<EncodingConfig, D::Error> {
    struct EncodingVisitor;
    impl<'de> Visitor<'de> for EncodingVisitor {
        type Value = EncodingConfig;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an encoding name (\"ndjson\", \"json_array\", \"csv\", \"text\") or a table with `codec`")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<EncodingConfig, E> {
            Encoding::deserialize(de::value::StrDeserializer::<E>::new(v)).map(EncodingConfig::from)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EncodingConfig, A::Error> {
            EncodingConfig::deserialize(MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_any(EncodingVisitor)
}

impl EncodingConfig {
    /// Checks the options; keys are named `encoding.<key>`.
    ///
    /// # Errors
    /// CSV without `columns`, `columns` or field lists with another codec where they mean
    /// nothing, both `only_fields` and `except_fields`, an invalid strftime pattern.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.encoder().map(drop)
    }

    /// Compiles the options into an [`Encoder`].
    ///
    /// # Errors
    /// As for [`EncodingConfig::validate`].
    pub fn encoder(&self) -> Result<Encoder, BuildError> {
        if self.codec == Encoding::Csv {
            if self.columns.is_empty() {
                return Err(BuildError::at(
                    "encoding.columns",
                    "csv needs the list of columns to write",
                ));
            }
            if self.only_fields.is_some() || !self.except_fields.is_empty() {
                return Err(BuildError::at(
                    "encoding.only_fields",
                    "csv writes its `columns`; only_fields and except_fields do not apply",
                ));
            }
        } else if !self.columns.is_empty() {
            return Err(BuildError::at(
                "encoding.columns",
                "columns are for the csv codec only",
            ));
        }
        if self.only_fields.is_some() && !self.except_fields.is_empty() {
            return Err(BuildError::at(
                "encoding.except_fields",
                "use either only_fields or except_fields, not both",
            ));
        }
        let strftime = match &self.timestamp_format {
            TimestampFormat::Strftime(pattern) => {
                Some(StrftimeItems::new(pattern).parse_to_owned().map_err(|_| {
                    BuildError::at(
                        "encoding.timestamp_format",
                        format!("{pattern:?} has an invalid strftime specifier"),
                    )
                })?)
            }
            _ => None,
        };
        Ok(Encoder {
            codec: self.codec,
            columns: self
                .columns
                .iter()
                .map(|column| column.split('.').map(str::to_owned).collect())
                .collect(),
            only: self.only_fields.clone(),
            except: self.except_fields.clone(),
            timestamps: self.timestamp_format.clone(),
            strftime,
        })
    }
}

/// A compiled [`EncodingConfig`].
#[derive(Debug, Clone)]
pub struct Encoder {
    codec: Encoding,
    columns: Vec<Vec<String>>,
    only: Option<Vec<String>>,
    except: Vec<String>,
    timestamps: TimestampFormat,
    strftime: Option<Vec<Item<'static>>>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new(Encoding::Ndjson)
    }
}

impl Encoder {
    /// An encoder for a codec without options (CSV then writes no columns).
    pub fn new(codec: Encoding) -> Self {
        Encoder {
            codec,
            columns: Vec::new(),
            only: None,
            except: Vec::new(),
            timestamps: TimestampFormat::Rfc3339,
            strftime: None,
        }
    }

    /// The codec.
    pub fn codec(&self) -> Encoding {
        self.codec
    }

    /// Appends the whole batch, framed (a JSON array's brackets and commas, or one line per
    /// event).
    pub fn encode_batch<'a>(&self, events: impl IntoIterator<Item = &'a Event>, out: &mut Vec<u8>) {
        match self.codec {
            Encoding::JsonArray => {
                out.push(b'[');
                for (i, event) in events.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.encode_json(event, out);
                }
                out.push(b']');
            }
            _ => {
                for event in events {
                    self.encode_record(event, out);
                }
            }
        }
    }

    /// Appends one event: a `\n`-terminated line for the line codecs, a bare object for
    /// `json_array` (the caller frames it).
    pub fn encode_record(&self, event: &Event, out: &mut Vec<u8>) {
        match self.codec {
            Encoding::Ndjson => {
                self.encode_json(event, out);
                out.push(b'\n');
            }
            Encoding::JsonArray => self.encode_json(event, out),
            Encoding::Csv => {
                self.encode_csv(event, out);
                out.push(b'\n');
            }
            Encoding::Text => {
                self.encode_text(event, out);
                out.push(b'\n');
            }
        }
    }

    fn plain(&self) -> bool {
        self.only.is_none() && self.except.is_empty() && self.timestamps == TimestampFormat::Rfc3339
    }

    fn keep(&self, name: &str) -> bool {
        match &self.only {
            Some(only) => only.iter().any(|n| n == name),
            None => !self.except.iter().any(|n| n == name),
        }
    }

    /// One event as a JSON object (no newline).
    pub fn encode_json(&self, event: &Event, out: &mut Vec<u8>) {
        if self.plain() {
            json::encode_event(event, out);
            return;
        }
        out.push(b'{');
        let mut first = true;
        if let Some(raw) = event.raw()
            && event.fields().get(MESSAGE).is_none()
            && self.keep(MESSAGE)
        {
            json::write_string(MESSAGE, out);
            out.push(b':');
            write_lossy_string(raw, out);
            first = false;
        }
        for (name, value) in event.fields() {
            if !self.keep(name.as_str()) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            json::write_string(name.as_str(), out);
            out.push(b':');
            self.encode_json_value(value, out);
        }
        out.push(b'}');
    }

    /// One value as JSON, with timestamps in the configured format.
    pub fn encode_json_value(&self, value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Timestamp(ts) => match &self.timestamps {
                TimestampFormat::Unix => write_int(ts.timestamp(), out),
                TimestampFormat::UnixMs => write_int(ts.timestamp_millis(), out),
                TimestampFormat::Rfc3339 => json::encode_value(value, out),
                TimestampFormat::Strftime(_) => {
                    let start = out.len();
                    self.write_strftime(ts, out);
                    let text = out.split_off(start);
                    json::write_string(&String::from_utf8_lossy(&text), out);
                }
            },
            Value::Array(items) if self.timestamps != TimestampFormat::Rfc3339 => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.encode_json_value(item, out);
                }
                out.push(b']');
            }
            Value::Map(map) if self.timestamps != TimestampFormat::Rfc3339 => {
                out.push(b'{');
                for (i, (name, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json::write_string(name.as_str(), out);
                    out.push(b':');
                    self.encode_json_value(item, out);
                }
                out.push(b'}');
            }
            _ => json::encode_value(value, out),
        }
    }

    /// A timestamp as plain text in the configured format.
    pub fn write_timestamp(&self, ts: &DateTime<Utc>, out: &mut Vec<u8>) {
        match &self.timestamps {
            TimestampFormat::Rfc3339 => json::write_timestamp(ts, out),
            TimestampFormat::Unix => write_int(ts.timestamp(), out),
            TimestampFormat::UnixMs => write_int(ts.timestamp_millis(), out),
            TimestampFormat::Strftime(_) => self.write_strftime(ts, out),
        }
    }

    fn write_strftime(&self, ts: &DateTime<Utc>, out: &mut Vec<u8>) {
        if let Some(items) = &self.strftime {
            // Writing into a Vec cannot fail; a pattern chrono cannot render was refused when
            // it was compiled.
            let _ = write!(out, "{}", ts.format_with_items(items.iter()));
        }
    }

    fn encode_csv(&self, event: &Event, out: &mut Vec<u8>) {
        for (i, path) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let start = out.len();
            if path.len() == 1
                && path[0] == MESSAGE
                && event.get(MESSAGE).is_none()
                && let Some(raw) = event.raw()
            {
                out.extend_from_slice(String::from_utf8_lossy(raw).as_bytes());
            } else {
                match event.get_path(path) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(text)) => out.extend_from_slice(text.as_bytes()),
                    Some(Value::Timestamp(ts)) => self.write_timestamp(ts, out),
                    Some(Value::Float(f)) if !f.is_finite() => {}
                    Some(value) => self.encode_json_value(value, out),
                }
            }
            quote_csv_field(out, start);
        }
    }

    /// The text encoding (no newline): the raw line if the event has one, else logfmt fields.
    pub fn encode_text(&self, event: &Event, out: &mut Vec<u8>) {
        if let Some(raw) = event.raw()
            && self.keep(MESSAGE)
        {
            out.extend_from_slice(raw);
            return;
        }
        let mut first = true;
        for (name, value) in event.fields() {
            if !self.keep(name.as_str()) {
                continue;
            }
            if !first {
                out.push(b' ');
            }
            first = false;
            write_logfmt_str(name.as_str(), out);
            out.push(b'=');
            self.write_logfmt_value(value, out);
        }
    }

    fn write_logfmt_value(&self, value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::String(text) => write_logfmt_str(text.as_str(), out),
            Value::Timestamp(ts) => {
                let start = out.len();
                self.write_timestamp(ts, out);
                if needs_quoting(&out[start..]) {
                    let text = out.split_off(start);
                    json::write_string(&String::from_utf8_lossy(&text), out);
                }
            }
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                json::encode_value(value, out);
            }
            Value::Array(_) | Value::Map(_) => {
                let start = out.len();
                self.encode_json_value(value, out);
                if needs_quoting(&out[start..]) {
                    // Rare (nested values in a text sink), so the copy is acceptable here.
                    let plain = out.split_off(start);
                    json::write_string(&String::from_utf8_lossy(&plain), out);
                }
            }
        }
    }
}

/// Quotes the CSV field written at `out[start..]` if it needs it.
fn quote_csv_field(out: &mut Vec<u8>, start: usize) {
    let field = &out[start..];
    if !field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        return;
    }
    let field = out.split_off(start);
    out.reserve(field.len() + 2);
    out.push(b'"');
    for &byte in &field {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    out.push(b'"');
}

fn write_int(value: i64, out: &mut Vec<u8>) {
    json::encode_value(&Value::Int(value), out);
}

fn write_lossy_string(bytes: &[u8], out: &mut Vec<u8>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => json::write_string(text, out),
        Err(_) => json::write_string(&String::from_utf8_lossy(bytes), out),
    }
}

/// Appends every event of `events` to `out` as one `\n`-terminated line in `encoding`, without
/// options (kept for callers that need no [`Encoder`]).
///
/// `out` is not cleared first, so callers can add a prefix or clear it themselves.
pub fn encode_batch(events: &[Event], encoding: Encoding, out: &mut Vec<u8>) {
    Encoder::new(encoding).encode_batch(events, out);
}

/// Appends `event` in the text encoding (no newline): its raw line if it has one, else its fields
/// as logfmt `key=value` pairs separated by spaces.
pub fn encode_text(event: &Event, out: &mut Vec<u8>) {
    Encoder::new(Encoding::Text).encode_text(event, out);
}

fn write_logfmt_str(text: &str, out: &mut Vec<u8>) {
    if needs_quoting(text.as_bytes()) {
        json::write_string(text, out);
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Whether a logfmt key or value must be quoted (as go-logfmt decides, plus DEL).
fn needs_quoting(text: &[u8]) -> bool {
    text.is_empty()
        || text
            .iter()
            .any(|&byte| byte <= b' ' || byte == b'"' || byte == b'=' || byte == 0x7f)
}

/// Whether and how a request body or file is compressed (`compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain.
    #[default]
    None,
    /// Gzip at flate2's default level.
    Gzip,
}

/// Appends `data` gzip-compressed (one member, flate2's default level) to `out`.
pub fn gzip(data: &[u8], out: &mut Vec<u8>) {
    let mut encoder =
        flate2::write::GzEncoder::new(std::mem::take(out), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    *out = encoder.finish().unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::{DateTime, Utc};
    use sluice_pipelines::{EventMeta, Fields};

    fn text(event: &Event) -> String {
        let mut out = Vec::new();
        encode_text(event, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_prefers_the_raw_line() {
        let mut event =
            Event::from_raw(Bytes::from_static(b"GET / \"x\" 200"), EventMeta::default());
        event.insert("status", 200i64);
        assert_eq!(text(&event), "GET / \"x\" 200");
    }

    #[test]
    fn text_writes_fields_as_logfmt_in_order() {
        let ts: DateTime<Utc> = "2024-05-01T12:00:00.5Z".parse().unwrap();
        let mut event = Event::default();
        event.insert("path", "/index.html");
        event.insert("status", 404i64);
        event.insert("ratio", 0.25);
        event.insert("ok", false);
        event.insert("gone", Value::Null);
        event.insert("agent", "Mozilla/5.0 (X11)");
        event.insert("quote", "say \"hi\"");
        event.insert("eq", "a=b");
        event.insert("empty", "");
        event.insert("multi", "line1\nline2");
        event.insert("ts", ts);
        event.insert("café", "naïve");
        assert_eq!(
            text(&event),
            "path=/index.html status=404 ratio=0.25 ok=false gone=null \
             agent=\"Mozilla/5.0 (X11)\" quote=\"say \\\"hi\\\"\" eq=\"a=b\" empty=\"\" \
             multi=\"line1\\nline2\" ts=2024-05-01T12:00:00.500Z café=naïve"
        );
    }

    #[test]
    fn text_quotes_odd_keys_and_nested_values() {
        let mut event = Event::default();
        event.insert("a key", 1i64);
        event.insert("ids", Value::Array(vec![Value::Int(1), Value::Int(2)]));
        let inner: Fields = [("k", "v w")].into_iter().collect();
        event.insert("user", Value::Map(inner));
        assert_eq!(
            text(&event),
            r#""a key"=1 ids=[1,2] user="{\"k\":\"v w\"}""#
        );
    }

    #[test]
    fn batch_terminates_every_line() {
        let raw = Event::from_raw(Bytes::from_static(b"plain line"), EventMeta::default());
        let mut fields = Event::default();
        fields.insert("n", 1i64);
        let empty = Event::default();
        let batch = [raw, fields, empty];

        let mut out = b"prefix:".to_vec();
        encode_batch(&batch, Encoding::Text, &mut out);
        assert_eq!(out, b"prefix:plain line\nn=1\n\n");

        out.clear();
        encode_batch(&batch, Encoding::Ndjson, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"message\":\"plain line\"}\n{\"n\":1}\n{}\n"
        );
    }

    #[test]
    fn encoding_names() {
        let parse = |name: &str| serde_json::from_value::<Encoding>(serde_json::json!(name));
        assert_eq!(parse("ndjson").unwrap(), Encoding::Ndjson);
        assert_eq!(parse("json").unwrap(), Encoding::Ndjson);
        assert_eq!(parse("text").unwrap(), Encoding::Text);
        assert!(parse("logfmt").is_err());
        assert_eq!(Encoding::default(), Encoding::Ndjson);
    }

    fn encoder(config: serde_json::Value) -> Encoder {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(deserialize_with = "deserialize_encoding")]
            encoding: EncodingConfig,
        }
        let holder: Holder =
            serde_json::from_value(serde_json::json!({ "encoding": config })).unwrap();
        holder.encoding.encoder().unwrap()
    }

    fn sample() -> Event {
        let ts: DateTime<Utc> = "2024-05-01T12:00:00.25Z".parse().unwrap();
        let mut event = Event::default();
        event.insert("ts", ts);
        event.insert("path", "/a,b \"q\"");
        event.insert("status", 404i64);
        event.insert("agent", "curl");
        let inner: Fields = [("at", Value::Timestamp(ts))].into_iter().collect();
        event.insert("nested", Value::Map(inner));
        event
    }

    fn encode(encoder: &Encoder, events: &[Event]) -> String {
        let mut out = Vec::new();
        encoder.encode_batch(events, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn field_selection_and_timestamp_formats() {
        let events = [sample()];
        let only = encoder(serde_json::json!({"codec": "ndjson", "only_fields": ["status", "ts"]}));
        assert_eq!(
            encode(&only, &events),
            "{\"ts\":\"2024-05-01T12:00:00.250Z\",\"status\":404}\n"
        );
        let except = encoder(serde_json::json!({
            "codec": "ndjson", "except_fields": ["path", "agent"], "timestamp_format": "unix"
        }));
        assert_eq!(
            encode(&except, &events),
            "{\"ts\":1714564800,\"status\":404,\"nested\":{\"at\":1714564800}}\n"
        );
        let ms = encoder(
            serde_json::json!({"codec": "json", "only_fields": ["ts"], "timestamp_format": "unix_ms"}),
        );
        assert_eq!(encode(&ms, &events), "{\"ts\":1714564800250}\n");
        let strf = encoder(serde_json::json!({
            "codec": "ndjson", "only_fields": ["ts"], "timestamp_format": "%Y-%m-%d %H:%M:%S"
        }));
        assert_eq!(encode(&strf, &events), "{\"ts\":\"2024-05-01 12:00:00\"}\n");
        // The raw line is the `message` field for selection.
        let raw = Event::from_raw(Bytes::from_static(b"GET /"), EventMeta::default());
        let no_message =
            encoder(serde_json::json!({"codec": "ndjson", "except_fields": ["message"]}));
        assert_eq!(encode(&no_message, std::slice::from_ref(&raw)), "{}\n");
        let text = encoder(
            serde_json::json!({"codec": "text", "except_fields": ["message", "nested", "path"]}),
        );
        let mut with_fields = raw;
        with_fields.insert("status", 200i64);
        assert_eq!(encode(&text, &[with_fields]), "status=200\n");
    }

    #[test]
    fn json_array_frames_the_batch() {
        let array = encoder(serde_json::json!("json_array"));
        let mut a = Event::default();
        a.insert("n", 1i64);
        let mut b = Event::default();
        b.insert("n", 2i64);
        assert_eq!(encode(&array, &[a, b]), "[{\"n\":1},{\"n\":2}]");
        assert_eq!(encode(&array, &[]), "[]");
        let parsed: serde_json::Value = serde_json::from_str(&encode(&array, &[sample()])).unwrap();
        assert_eq!(parsed[0]["status"], 404);
    }

    #[test]
    fn csv_quotes_and_orders_columns() {
        let csv = encoder(serde_json::json!({
            "codec": "csv",
            "columns": ["ts", "path", "status", "missing", "nested.at", "message", "nested"],
            "timestamp_format": "unix"
        }));
        assert_eq!(
            encode(&csv, &[sample()]),
            "1714564800,\"/a,b \"\"q\"\"\",404,,1714564800,,\"{\"\"at\"\":1714564800}\"\n"
        );
        let raw = Event::from_raw(
            Bytes::from_static(b"line, with comma"),
            EventMeta::default(),
        );
        let csv = encoder(serde_json::json!({"codec": "csv", "columns": ["message"]}));
        assert_eq!(encode(&csv, &[raw]), "\"line, with comma\"\n");
        let mut multi = Event::default();
        multi.insert("message", "a\nb");
        assert_eq!(encode(&csv, &[multi]), "\"a\nb\"\n");
    }

    #[test]
    fn invalid_options_name_their_key() {
        let check = |config: serde_json::Value| {
            let config: EncodingConfig = serde_json::from_value(config).unwrap();
            config.validate().unwrap_err().key.unwrap()
        };
        assert_eq!(
            check(serde_json::json!({"codec": "csv"})),
            "encoding.columns"
        );
        assert_eq!(
            check(serde_json::json!({"codec": "ndjson", "columns": ["a"]})),
            "encoding.columns"
        );
        assert_eq!(
            check(serde_json::json!({"only_fields": ["a"], "except_fields": ["b"]})),
            "encoding.except_fields"
        );
        assert_eq!(
            check(serde_json::json!({"timestamp_format": "%Q"})),
            "encoding.timestamp_format"
        );
        assert!(
            serde_json::from_value::<EncodingConfig>(
                serde_json::json!({"timestamp_format": "iso"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<EncodingConfig>(serde_json::json!({"codec": "xml"})).is_err()
        );
        assert!(
            serde_json::from_value::<EncodingConfig>(serde_json::json!({"fields": []})).is_err()
        );
    }

    #[test]
    fn gzip_round_trips() {
        let mut out = Vec::new();
        gzip(b"hello\n", &mut out);
        let mut text = String::new();
        let mut decoder = crate::gunzip::CappedGunzip::new(&out[..], u64::MAX);
        std::io::Read::read_to_string(&mut decoder, &mut text).unwrap();
        assert_eq!(text, "hello\n");
    }
}
