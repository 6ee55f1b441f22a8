//! The `parse` step: turns a raw line (or a string field) into typed fields.
//!
//! ```toml
//! steps = [
//!   { type = "parse", format = "nginx_combined_timed" },
//!   { type = "parse", format = "regex",
//!     pattern = '^(?P<ts>\S+) (?P<level>\w+) (?P<status>\d+) (?P<msg>.*)$',
//!     types = { status = "int" }, timestamp_field = "ts", timestamp_format = "rfc3339" },
//!   { type = "parse", format = "csv", columns = ["ts", "user", "amount"], delimiter = ";" },
//! ]
//! ```
//!
//! Formats:
//! - `json`: the line is one JSON object whose fields are merged into the event. One
//!   [`JsonDecoder`] per step instance keeps its key cache warm across events.
//! - `regex`: the named groups of `pattern` become string fields. The line is turned into a
//!   [`Str`] once and every capture is a slice of it, so a regex parse copies no text and
//!   allocates only the event's field vector. A group that did not take part in the match is left
//!   out.
//! - `logfmt`: `key=value key2="quoted \"value\"" flag` pairs separated by spaces; values are
//!   strings (`types` converts them), a bare key is the bool `true`, the last of repeated keys
//!   wins. Quoted values decode `\"`, `\\`, `\n`, `\r`, `\t` (other escapes are kept as written).
//! - `csv`: one record per line, split by `delimiter` (one ASCII character, default `,`) into
//!   the names in `columns` (required; an empty name skips its column). Quoting follows RFC 4180:
//!   a field starting with `"` runs to the closing `"`, with `""` for a quote inside, and must be
//!   followed by the delimiter or the end of the line. A `"` inside an unquoted field is kept as
//!   text. A record with more or fewer fields than `columns` is rejected.
//! - `nginx_combined`, `nginx_combined_timed`, `apache_common`, `apache_combined`: the standard
//!   access log formats, read by hand-written byte parsers (see [`access`]) into `ip`, `user`,
//!   `timestamp` (a timestamp), `method`, `path`, `protocol`, `status` (int), `bytes` (int,
//!   `null` for `-`), `referer`, `agent`, and for `nginx_combined_timed` `request_time` (float)
//!   and `request_id`.
//!
//! Options:
//! - `types` converts fields after parsing: `string`, `int`, `float`, `bool` (`true`/`false` in
//!   any case, `1`/`0`), `timestamp` (RFC 3339) or `timestamp|<format>` (see *Timestamp formats*
//!   below). For `int` and `float`, `-`, the empty string and JSON `null` become `null`. A value
//!   that does not convert rejects the event. With `regex` and `csv`, each type must name a group
//!   or a column.
//! - **Event time**: the event time is, by convention, the top-level `timestamp` field (the
//!   presets write it; `aggregate` reads it by default). `timestamp_field` names the parsed field
//!   that holds it (a dotted path among the parsed fields); that field is converted with
//!   `timestamp_format` (`rfc3339` by default, or any format `types` accepts after
//!   `timestamp|`) and moved to the top-level `timestamp`. An event without that field, or with
//!   one that does not convert, is rejected.
//! - `field` parses that string field (a dotted path) instead of the raw line; `target` (a dotted
//!   path) puts the parsed fields in a map there instead of at the top level, merging into a map
//!   already there and replacing any other value; `drop_raw` removes the raw line once parsed.
//!
//! # Timestamp formats
//!
//! - `rfc3339` (what plain `timestamp` means): `2026-01-01T00:00:00.003Z`, `…+02:00`.
//! - `unix`, `unix_ms`, `unix_us`, `unix_ns`: time since 1970-01-01 UTC in seconds (or milli-,
//!   micro-, nanoseconds), from an int, a float or a numeric string.
//! - A chrono strftime format such as `%d/%b/%Y:%H:%M:%S %z`. Time zones: `%z` (`+0200`), `%:z`
//!   (`+02:00`) and `%#z` read numeric offsets; `%Z` at the very end of the format reads a zone
//!   name, of which only `UTC`, `GMT`, `UT` and `Z` are accepted (abbreviations such as `CET` are
//!   ambiguous, so such times are rejected rather than guessed). A format without a zone reads
//!   UTC; one without a time of day reads midnight. The nginx format above has a hand-written
//!   fast path that gives chrono's results.
//!
//! A trailing `\n` or `\r\n` on the raw line is not part of the line. Raw lines that are not
//! UTF-8 are read with invalid sequences replaced by U+FFFD. An event that cannot be parsed (no
//! raw line or field, no match, invalid JSON, a failed conversion) goes unchanged to
//! [`StepContext::reject`] with the reason; parsing never panics on input.

pub mod access;
mod csv;
mod logfmt;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;

use bytes::Bytes;
use regex::{CaptureLocations, Regex};

use super::common::{join, parse_path};
use super::types::{FieldType, TimestampFormat, conversion_error, convert_fields};
use crate::codec::json::JsonDecoder;
use crate::event::{Event, FieldName, Fields, Str, Value};
use crate::step::{BuildError, Step, StepContext};

pub use access::Preset;

/// The field that holds the event time.
pub const TIMESTAMP: &str = "timestamp";

/// Config of the `parse` step.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    /// How the input is written.
    pub format: ParseFormat,
    /// The regex for `format = "regex"`, with named groups `(?P<name>...)`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The column names for `format = "csv"`, in order; an empty name skips its column.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// The separator for `format = "csv"`: one ASCII character, `,` by default.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Conversions of parsed fields, by field name: `int`, `float`, `bool`, `string`,
    /// `timestamp` or `timestamp|<format>`.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Parse this string field (a dotted path) instead of the raw line.
    #[serde(default)]
    pub field: Option<String>,
    /// Put the parsed fields under this dotted path instead of the top level.
    #[serde(default)]
    pub target: Option<String>,
    /// Remove the raw line after a successful parse.
    #[serde(default)]
    pub drop_raw: bool,
    /// The parsed field (a dotted path) holding the event time, moved to `timestamp`.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// How `timestamp_field` is written: `rfc3339` (the default), `unix`, `unix_ms`, `unix_us`,
    /// `unix_ns` or a strftime format.
    #[serde(default)]
    pub timestamp_format: Option<String>,
}

/// The input formats the `parse` step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseFormat {
    /// One JSON object per line.
    Json,
    /// A regex with named groups.
    Regex,
    /// `key=value` pairs.
    Logfmt,
    /// Comma- (or `delimiter`-) separated values with a `columns` list.
    Csv,
    /// nginx's `combined` log format.
    NginxCombined,
    /// nginx `combined` followed by `$request_time $request_id`.
    NginxCombinedTimed,
    /// Apache's common log format.
    ApacheCommon,
    /// Apache's combined log format.
    ApacheCombined,
}

impl ParseConfig {
    /// Compiles the pattern, checks the types and interns the field names.
    ///
    /// # Errors
    /// A [`BuildError`] at `pattern` (missing, not a valid regex, without named groups, or given
    /// with another format), at `columns` / `delimiter` (missing or invalid for `csv`, or given
    /// with another format), at `types.<field>` (unknown type, bad timestamp format, no such
    /// group or column), at `field` / `target` / `timestamp_field` (an empty path segment), or at
    /// `timestamp_format` (invalid, or given without `timestamp_field`).
    pub fn build(&self) -> Result<Parse, BuildError> {
        let mut types = Vec::with_capacity(self.types.len());
        for (name, spec) in &self.types {
            let ty = FieldType::parse(spec)
                .map_err(|message| BuildError::at(format!("types.{name}"), message))?;
            types.push((FieldName::new(name), ty));
        }
        let only_for = |key: &str, format: &str| {
            BuildError::at(
                key,
                format!("`{key}` is only used with format = \"{format}\""),
            )
        };
        if self.pattern.is_some() && self.format != ParseFormat::Regex {
            return Err(only_for("pattern", "regex"));
        }
        if self.format != ParseFormat::Csv {
            if self.columns.is_some() {
                return Err(only_for("columns", "csv"));
            }
            if self.delimiter.is_some() {
                return Err(only_for("delimiter", "csv"));
            }
        }
        let (format, types) = match self.format {
            ParseFormat::Json => (Format::Json(JsonDecoder::new()), types),
            ParseFormat::Regex => {
                let Some(pattern) = &self.pattern else {
                    return Err(BuildError::at(
                        "pattern",
                        "format = \"regex\" needs a `pattern`",
                    ));
                };
                // Captures are converted as they are read: no pass afterwards.
                (
                    Format::Regex(Box::new(RegexParser::new(pattern, types)?)),
                    Vec::new(),
                )
            }
            ParseFormat::Logfmt => (Format::Logfmt, types),
            ParseFormat::Csv => {
                let parser =
                    csv::CsvParser::new(self.columns.as_deref(), self.delimiter.as_deref())?;
                for (name, _) in &types {
                    if !parser.has_column(name) {
                        return Err(BuildError::at(
                            format!("types.{name}"),
                            format!("`columns` has no column named `{name}`"),
                        ));
                    }
                }
                (Format::Csv(parser), types)
            }
            ParseFormat::NginxCombined => (preset(Preset::NginxCombined), types),
            ParseFormat::NginxCombinedTimed => (preset(Preset::NginxCombinedTimed), types),
            ParseFormat::ApacheCommon => (preset(Preset::ApacheCommon), types),
            ParseFormat::ApacheCombined => (preset(Preset::ApacheCombined), types),
        };
        let event_time = match (&self.timestamp_field, &self.timestamp_format) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(BuildError::at(
                    "timestamp_format",
                    "`timestamp_format` needs `timestamp_field` (the field it reads)",
                ));
            }
            (Some(path), format) => {
                let format = match format {
                    None => TimestampFormat::Rfc3339,
                    Some(format) => TimestampFormat::parse(format)
                        .map_err(|message| BuildError::at("timestamp_format", message))?,
                };
                Some(EventTime {
                    path: parse_path("timestamp_field", path)?,
                    ty: FieldType::Timestamp(format),
                })
            }
        };
        let target = match &self.target {
            Some(path) => parse_path("target", path)?,
            None => Vec::new(),
        };
        let in_place = event_time.as_ref().is_some_and(|time| {
            target.is_empty() && matches!(time.path.as_slice(), [only] if only == TIMESTAMP)
        });
        Ok(Parse {
            format,
            types,
            event_time,
            event_time_in_place: in_place,
            timestamp: FieldName::new(TIMESTAMP),
            field: self
                .field
                .as_deref()
                .map(|path| parse_path("field", path))
                .transpose()?,
            target,
            drop_raw: self.drop_raw,
            input: Vec::new(),
        })
    }
}

fn preset(preset: Preset) -> Format {
    Format::Access(Box::new(access::AccessParser::new(preset)))
}

/// The `parse` step, built from a [`ParseConfig`].
#[derive(Debug)]
pub struct Parse {
    format: Format,
    /// Conversions applied after parsing (every format but `regex`, which converts captures).
    types: Vec<(FieldName, FieldType)>,
    event_time: Option<EventTime>,
    /// The event time is the top-level `timestamp` already: convert it where it is.
    event_time_in_place: bool,
    timestamp: FieldName,
    field: Option<Vec<FieldName>>,
    target: Vec<FieldName>,
    drop_raw: bool,
    /// The previous batch's vector, reused to move events through without allocating.
    input: Vec<Event>,
}

#[derive(Debug)]
struct EventTime {
    path: Vec<FieldName>,
    ty: FieldType,
}

#[derive(Debug)]
enum Format {
    Json(JsonDecoder),
    Regex(Box<RegexParser>),
    Logfmt,
    Csv(csv::CsvParser),
    Access(Box<access::AccessParser>),
}

/// What the step reads: the raw line or a string field.
enum Input {
    Raw(Bytes),
    Field(Str),
}

impl Input {
    fn into_str(self) -> Str {
        match self {
            Input::Raw(bytes) => {
                Str::from_utf8(bytes).unwrap_or_else(|bytes| Str::from_utf8_lossy(bytes).0)
            }
            Input::Field(text) => text,
        }
    }
}

impl Step for Parse {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        let mut input = std::mem::take(&mut self.input);
        std::mem::swap(events, &mut input);
        events.reserve(input.len());
        for mut event in input.drain(..) {
            match self.parse_event(&mut event) {
                Ok(()) => events.push(event),
                Err(error) => ctx.reject(event, error),
            }
        }
        self.input = input;
    }
}

impl Parse {
    /// Parses one event in place, or leaves it unchanged and says why not.
    fn parse_event(&mut self, event: &mut Event) -> Result<(), String> {
        let input = match &self.field {
            None => match event.raw() {
                Some(raw) => Input::Raw(trim_line_end(raw)),
                None => return Err("no raw line to parse".to_owned()),
            },
            Some(path) => match event.fields().get_path(path) {
                Some(Value::String(text)) => Input::Field(text.clone()),
                Some(other) => {
                    return Err(format!(
                        "field `{}` is {} {}, not a string",
                        join(path),
                        article(other.kind()),
                        other.kind()
                    ));
                }
                None => return Err(format!("no field `{}` to parse", join(path))),
            },
        };
        // Parsed into a map of their own first, so an event that fails half-way stays unchanged.
        let mut parsed = match &mut self.format {
            Format::Json(decoder) => {
                // Strings without escapes share the input's buffer instead of being copied.
                let decoded = match input {
                    Input::Raw(bytes) => decoder.decode_object_shared(&bytes),
                    Input::Field(text) => decoder.decode_object_shared(&text.into_bytes()),
                };
                decoded.map_err(|error| error.to_string())?
            }
            Format::Regex(parser) => {
                let line = input.into_str();
                parser.parse(&line)?.ok_or_else(|| match &self.field {
                    None => "the line does not match the pattern".to_owned(),
                    Some(path) => format!("field `{}` does not match the pattern", join(path)),
                })?
            }
            Format::Logfmt => logfmt::parse(&input.into_str())?,
            Format::Csv(parser) => parser.parse(&input.into_str())?,
            Format::Access(parser) => parser.parse(&input.into_str())?,
        };
        if !self.types.is_empty() {
            convert_fields(&mut parsed, &self.types)?;
        }
        let event_time = match &self.event_time {
            None => None,
            Some(time) => Some(self.read_event_time(time, &mut parsed)?),
        };
        let Some(dest) = map_at(event.fields_mut(), &self.target) else {
            return Err(format!("cannot put fields under `{}`", join(&self.target)));
        };
        if dest.is_empty() {
            *dest = parsed;
        } else {
            for (name, value) in parsed {
                dest.insert(name, value);
            }
        }
        if let Some(ts) = event_time {
            event.insert(self.timestamp.clone(), Value::Timestamp(ts));
        }
        if self.drop_raw {
            event.set_raw(None);
        }
        Ok(())
    }

    /// Converts the event-time field in `parsed`; removes it unless it stays where it is.
    fn read_event_time(
        &self,
        time: &EventTime,
        parsed: &mut Fields,
    ) -> Result<chrono::DateTime<chrono::Utc>, String> {
        let missing = || format!("no field `{}` for the event time", join(&time.path));
        let slot = parsed.get_path_mut(&time.path).ok_or_else(missing)?;
        let value = std::mem::take(slot);
        let ts = match time.ty.convert_value(value) {
            Ok(Value::Timestamp(ts)) => ts,
            Ok(other) | Err(other) => {
                let error = if other == Value::Null {
                    format!("field `{}` for the event time is null", join(&time.path))
                } else {
                    conversion_error(&join(&time.path), &time.ty, &other)
                };
                *slot = other;
                return Err(error);
            }
        };
        if self.event_time_in_place {
            *slot = Value::Timestamp(ts);
        } else {
            parsed.remove_path(&time.path);
        }
        Ok(ts)
    }
}

/// The map at `path` below `fields`, created (replacing non-map values) where missing.
fn map_at<'a>(mut fields: &'a mut Fields, path: &[FieldName]) -> Option<&'a mut Fields> {
    for segment in path {
        if !matches!(fields.get_name(segment), Some(Value::Map(_))) {
            fields.insert(segment.clone(), Value::Map(Fields::new()));
        }
        fields = match fields.get_mut(segment.as_str()) {
            Some(Value::Map(inner)) => inner,
            _ => return None,
        };
    }
    Some(fields)
}

fn trim_line_end(raw: &Bytes) -> Bytes {
    let mut end = raw.len();
    if raw.ends_with(b"\n") {
        end -= 1;
        if raw[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    raw.slice(..end)
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'i']) {
        "an"
    } else {
        "a"
    }
}

/// A compiled pattern with its reusable capture slots.
#[derive(Debug)]
struct RegexParser {
    regex: Regex,
    locations: CaptureLocations,
    groups: Vec<Group>,
}

/// A named group of the pattern and how to convert its text.
#[derive(Debug)]
struct Group {
    index: usize,
    name: FieldName,
    ty: Option<FieldType>,
}

impl RegexParser {
    fn new(pattern: &str, types: Vec<(FieldName, FieldType)>) -> Result<Self, BuildError> {
        let regex = Regex::new(pattern)
            .map_err(|error| BuildError::at("pattern", format!("invalid regex: {error}")))?;
        let mut groups: Vec<Group> = regex
            .capture_names()
            .enumerate()
            .filter_map(|(index, name)| {
                name.map(|name| Group {
                    index,
                    name: FieldName::new(name),
                    ty: None,
                })
            })
            .collect();
        if groups.is_empty() {
            return Err(BuildError::at(
                "pattern",
                "the pattern has no named groups such as `(?P<status>\\d+)`, so it would add no fields",
            ));
        }
        for (name, ty) in types {
            let Some(group) = groups.iter_mut().find(|group| group.name == name) else {
                return Err(BuildError::at(
                    format!("types.{name}"),
                    format!("the pattern has no group named `{name}`"),
                ));
            };
            // Strings are what captures already are.
            group.ty = (!ty.is_string()).then_some(ty);
        }
        Ok(RegexParser {
            locations: regex.capture_locations(),
            regex,
            groups,
        })
    }

    /// The fields of the groups in `line`, `None` when it does not match, or a conversion error.
    fn parse(&mut self, line: &Str) -> Result<Option<Fields>, String> {
        let text = line.as_str();
        if self
            .regex
            .captures_read(&mut self.locations, text)
            .is_none()
        {
            return Ok(None);
        }
        let mut fields = Fields::with_capacity(self.groups.len());
        for group in &self.groups {
            let Some(part) = self
                .locations
                .get(group.index)
                .and_then(|(start, end)| text.get(start..end))
            else {
                continue;
            };
            let value = match &group.ty {
                None => Value::String(line.slice_ref(part)),
                Some(ty) => ty.convert_str(part, line).ok_or_else(|| {
                    conversion_error(
                        group.name.as_str(),
                        ty,
                        &Value::String(line.slice_ref(part)),
                    )
                })?,
            };
            // Group names are distinct (the regex crate refuses duplicates).
            fields.push_unchecked(group.name.clone(), value);
        }
        Ok(Some(fields))
    }
}
