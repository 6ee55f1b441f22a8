//! HTTP bodies to events, for the `http_server` source's requests and the `http_poll` source's
//! answers: choosing the format from the Content-Type, and NDJSON / JSON / text decoding with
//! errors that name the bad line or array item (gzip bodies are decompressed first, by
//! [`sluice_sink::gunzip`]).
//!
//! Everything here is synchronous and pure, so the http_server handler can run it inline for
//! small bodies and on the blocking pool for large ones. JSON objects go through the shared fast path
//! ([`JsonDecoder::decode_object_shared`]): strings without escapes stay slices of the body
//! buffer. The decoder's key cache is per thread, so it is reused across requests without a lock.

use std::cell::RefCell;

use bytes::Bytes;
use sluice_pipelines::codec::json::{JsonDecodeError, JsonDecoder, encode_value};
use sluice_pipelines::{Event, EventMeta, FieldName, Fields, Value};

use crate::sources::lines::{is_blank, numbered_lines};

thread_local! {
    static DECODER: RefCell<JsonDecoder> = RefCell::new(JsonDecoder::new());
}

/// How bodies are decoded (the http_server source's `decoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// By Content-Type: NDJSON, JSON (object, array, or objects one per line) or text lines;
    /// without a Content-Type, by the first byte of the body. Other types get 415.
    #[default]
    Auto,
    /// One JSON object per line, whatever the Content-Type.
    Ndjson,
    /// A JSON array of objects, one object, or objects one per line.
    Json,
    /// Plain text: every non-blank line is a raw event (see `sources::lines::is_blank`).
    Text,
}

/// What a body with bad lines does to its good ones (the http_server source's `partial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partial {
    /// The whole body is refused (400) and nothing is kept: the client fixes and resends it.
    #[default]
    Reject,
    /// The good lines are kept; the answer is still 400, naming the first bad line and saying how
    /// many were accepted.
    AcceptValid,
}

/// How a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// A JSON array of objects, one object, or one object per line.
    Json,
    /// Every line that is not blank (empty or only ASCII whitespace) is a raw event, as sent.
    Text,
}

/// The format chosen for a request, before its body is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// This format.
    Format(Format),
    /// No Content-Type: JSON if the body starts with `{` or `[`, text otherwise.
    Sniff,
}

impl Choice {
    /// The format for `body`.
    pub fn resolve(self, body: &[u8]) -> Format {
        match self {
            Choice::Format(format) => format,
            Choice::Sniff => match first_non_space(body) {
                Some(b'{' | b'[') => Format::Json,
                _ => Format::Text,
            },
        }
    }
}

/// The Content-Types `auto` decoding accepts, for the 415 message.
pub const ACCEPTED_TYPES: &str = "application/x-ndjson, application/json or text/plain";

/// Picks the format from the `decoding` setting and the request's Content-Type.
///
/// # Errors
/// The media type, when `auto` decoding does not know it (the caller answers 415).
pub fn choose(decoding: Decoding, content_type: Option<&[u8]>) -> Result<Choice, String> {
    let format = match decoding {
        Decoding::Ndjson => Format::Ndjson,
        Decoding::Json => Format::Json,
        Decoding::Text => Format::Text,
        Decoding::Auto => {
            let Some(content_type) = content_type else {
                return Ok(Choice::Sniff);
            };
            let media = content_type
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let media = String::from_utf8_lossy(media).to_ascii_lowercase();
            match media.as_str() {
                "" => return Ok(Choice::Sniff),
                "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
                | "application/jsonlines"
                | "application/json-lines" => Format::Ndjson,
                "application/json" => Format::Json,
                media if media.starts_with("application/") && media.ends_with("+json") => {
                    Format::Json
                }
                "text/plain" => Format::Text,
                _ => return Err(media),
            }
        }
    };
    Ok(Choice::Format(format))
}

/// The first bad part of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    /// The 1-based line (NDJSON, text) or array item (JSON array) at fault, if known.
    pub position: Option<Position>,
    /// What is wrong.
    pub message: String,
}

/// Where in a body an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A 1-based line.
    Line(usize),
    /// A 1-based item of a JSON array.
    Item(usize),
}

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(Position::Line(line)) => write!(f, "line {line}: {}", self.message),
            Some(Position::Item(item)) => write!(f, "item {item}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A decoded body.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The good events (none when a bad line rejected the body).
    pub events: Vec<Event>,
    /// Lines or items that could not be decoded (with `reject`, counting stops at the first).
    pub invalid: u64,
    /// The first bad line or item, if any.
    pub error: Option<BadInput>,
    /// With [`Partial::AcceptValid`]: every bad line or item (the whole body when it is one
    /// bad value) as a raw, stamped event with its error, for the dead-letter topic.
    pub rejected: Vec<(Event, String)>,
}

/// Fields stamped onto every event of a request: `(name, value)`, replacing any field of the
/// same name the client sent (the server's view of address, path and time is the trusted one).
pub type Stamp = Vec<(FieldName, Value)>;

/// Decodes `body` in `format`. With [`Partial::Reject`] decoding stops at the first bad line and
/// no events are returned.
pub fn decode(
    body: &Bytes,
    format: Format,
    partial: Partial,
    meta: EventMeta,
    stamp: &Stamp,
) -> Decoded {
    let mut out = Decoded::default();
    match format {
        Format::Ndjson => DECODER.with_borrow_mut(|decoder| {
            ndjson(decoder, body, partial, meta, stamp, &mut out);
        }),
        Format::Text => text(body, meta, stamp, &mut out),
        Format::Json => DECODER.with_borrow_mut(|decoder| {
            json(decoder, body, partial, meta, stamp, &mut out);
        }),
    }
    if partial == Partial::Reject && out.error.is_some() {
        out.events.clear();
    }
    if partial == Partial::AcceptValid && out.invalid > 0 && out.rejected.is_empty() {
        // One bad value for the whole body: keep it whole.
        let message = out
            .error
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        let event = stamped(Event::from_raw(body.clone(), meta), stamp);
        out.rejected.push((event, message));
    }
    out
}

/// Records one bad line or item: counted, the first one named in the answer, and its raw input
/// (made by `raw` only then) kept for the dead-letter topic when good input is kept. Returns
/// whether decoding stops here (`partial = "reject"`).
fn record_bad(
    out: &mut Decoded,
    partial: Partial,
    bad: BadInput,
    raw: impl FnOnce() -> Bytes,
    meta: EventMeta,
    stamp: &Stamp,
) -> bool {
    out.invalid += 1;
    if partial == Partial::AcceptValid {
        let event = stamped(Event::from_raw(raw(), meta), stamp);
        out.rejected.push((event, bad.to_string()));
    }
    if out.error.is_none() {
        out.error = Some(bad);
    }
    partial == Partial::Reject
}

fn first_non_space(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn stamped(mut event: Event, stamp: &Stamp) -> Event {
    let fields = std::mem::take(event.fields_mut());
    *event.fields_mut() = stamp_fields(fields, stamp);
    event
}

/// `fields` with the stamp added, in a map of exactly the size needed: letting the decoder's
/// exactly-sized map grow would double it, and the events sit in the topic with that slack.
fn stamp_fields(fields: Fields, stamp: &Stamp) -> Fields {
    if stamp.is_empty() {
        return fields;
    }
    let mut sized = Fields::with_capacity(fields.len() + stamp.len());
    for (name, value) in fields {
        sized.push_unchecked(name, value);
    }
    for (name, value) in stamp {
        sized.insert(name.clone(), value.clone());
    }
    sized
}

fn fields_event(fields: Fields, meta: EventMeta, stamp: &Stamp) -> Event {
    let mut event = Event::from_fields(stamp_fields(fields, stamp));
    *event.meta_mut() = meta;
    event
}

fn ndjson(
    decoder: &mut JsonDecoder,
    body: &Bytes,
    partial: Partial,
    meta: EventMeta,
    stamp: &Stamp,
    out: &mut Decoded,
) {
    for (number, line) in numbered_lines(body) {
        match decoder.decode_object_shared(&body.slice_ref(line)) {
            Ok(fields) => out.events.push(fields_event(fields, meta, stamp)),
            Err(error) => {
                let bad = BadInput {
                    position: Some(Position::Line(number)),
                    message: error.to_string(),
                };
                if record_bad(out, partial, bad, || body.slice_ref(line), meta, stamp) {
                    return;
                }
            }
        }
    }
}

fn text(body: &Bytes, meta: EventMeta, stamp: &Stamp, out: &mut Decoded) {
    let mut start = 0;
    while start < body.len() {
        let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |at| start + at);
        let mut line = &body[start..end];
        start = end + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if is_blank(line) {
            continue;
        }
        let event = Event::from_raw(body.slice_ref(line), meta);
        out.events.push(if stamp.is_empty() {
            event
        } else {
            stamped(event, stamp)
        });
    }
}

fn json(
    decoder: &mut JsonDecoder,
    body: &Bytes,
    partial: Partial,
    meta: EventMeta,
    stamp: &Stamp,
    out: &mut Decoded,
) {
    match first_non_space(body) {
        None => {}
        Some(b'[') => array(decoder, body, partial, meta, stamp, out),
        Some(b'{') => {
            // Objects one per line, or one object over many lines (pretty-printed). Lines are
            // tried first: that is the fast path, and a bad line is named exactly.
            ndjson(decoder, body, partial, meta, stamp, out);
            let first_line_incomplete = matches!(
                &out.error,
                Some(BadInput { position: Some(Position::Line(_)), message })
                    if message.contains("EOF while parsing")
            ) && out.events.is_empty();
            if first_line_incomplete {
                *out = Decoded::default();
                match decoder.decode_object_shared(body) {
                    Ok(fields) => out.events.push(fields_event(fields, meta, stamp)),
                    Err(error) => {
                        out.invalid = 1;
                        out.error = Some(whole_body_error(body, &error));
                    }
                }
            }
        }
        Some(_) => {
            out.invalid = 1;
            out.error = Some(BadInput {
                position: Some(Position::Line(1)),
                message: "expected a JSON object or an array of objects".to_owned(),
            });
        }
    }
}

fn array(
    decoder: &mut JsonDecoder,
    body: &Bytes,
    partial: Partial,
    meta: EventMeta,
    stamp: &Stamp,
    out: &mut Decoded,
) {
    let items = match decoder.decode_value(body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            out.invalid = 1;
            out.error = Some(BadInput {
                position: None,
                message: "expected a JSON array of objects".to_owned(),
            });
            return;
        }
        Err(error) => {
            out.invalid = 1;
            out.error = Some(whole_body_error(body, &error));
            return;
        }
    };
    objects(items, partial, meta, stamp, out);
}

/// Events from the items of a JSON array: objects become events, anything else is bad input
/// named by its 1-based item number (kept raw, as JSON, for the dead-letter topic when
/// `partial` keeps good input).
pub fn objects(
    items: Vec<Value>,
    partial: Partial,
    meta: EventMeta,
    stamp: &Stamp,
    out: &mut Decoded,
) {
    out.events.reserve(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Value::Map(fields) => out.events.push(fields_event(fields, meta, stamp)),
            other => {
                let bad = BadInput {
                    position: Some(Position::Item(index + 1)),
                    message: format!("expected a JSON object, found {}", other.json_kind()),
                };
                let raw = || {
                    let mut raw = Vec::new();
                    encode_value(&other, &mut raw);
                    Bytes::from(raw)
                };
                if record_bad(out, partial, bad, raw, meta, stamp) {
                    return;
                }
            }
        }
    }
}

/// An error in a body decoded as one JSON value, with the line serde_json places it on.
fn whole_body_error(body: &[u8], error: &JsonDecodeError) -> BadInput {
    let line = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Err(located) if located.line() > 0 => Some(located.line()),
        _ => None,
    };
    BadInput {
        position: line.map(Position::Line),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_pipelines::Str;
    use sluice_sink::gunzip::{GunzipError, gunzip_capped};

    fn stamp() -> Stamp {
        vec![(FieldName::new("path"), Value::String(Str::from("/in")))]
    }

    fn run(body: &str, format: Format, partial: Partial) -> Decoded {
        decode(
            &Bytes::copy_from_slice(body.as_bytes()),
            format,
            partial,
            EventMeta::default(),
            &stamp(),
        )
    }

    fn error(decoded: &Decoded) -> String {
        decoded.error.as_ref().map(ToString::to_string).unwrap()
    }

    #[test]
    fn content_types_pick_formats() {
        let auto = |ct: Option<&str>| choose(Decoding::Auto, ct.map(str::as_bytes));
        assert_eq!(
            auto(Some("application/x-ndjson")),
            Ok(Choice::Format(Format::Ndjson))
        );
        assert_eq!(
            auto(Some("Application/JSON; charset=utf-8")),
            Ok(Choice::Format(Format::Json))
        );
        assert_eq!(
            auto(Some("application/vnd.api+json")),
            Ok(Choice::Format(Format::Json))
        );
        assert_eq!(auto(Some("text/plain")), Ok(Choice::Format(Format::Text)));
        assert_eq!(auto(None), Ok(Choice::Sniff));
        assert_eq!(auto(Some("application/xml")), Err("application/xml".into()));
        // A forced format ignores the header.
        assert_eq!(
            choose(Decoding::Text, Some(b"application/xml")),
            Ok(Choice::Format(Format::Text))
        );
        assert_eq!(Choice::Sniff.resolve(b"  [1]"), Format::Json);
        assert_eq!(Choice::Sniff.resolve(b"hello"), Format::Text);
    }

    #[test]
    fn ndjson_lines_become_stamped_events_and_blank_lines_are_skipped() {
        let decoded = run(
            "{\"a\":1}\r\n\n  \n{\"a\":2,\"path\":\"/spoofed\"}",
            Format::Ndjson,
            Partial::Reject,
        );
        assert!(decoded.error.is_none());
        assert_eq!(decoded.events.len(), 2);
        assert_eq!(decoded.events[1].get("a"), Some(&Value::Int(2)));
        // The server's path wins over the client's.
        assert_eq!(decoded.events[1].get("path").unwrap().as_str(), Some("/in"));
    }

    #[test]
    fn a_bad_line_is_named_and_partial_decides_what_is_kept() {
        let body = "{\"a\":1}\n{\"a\":2}\n{\"a\":\n{\"a\":4}\n[5]\n";
        let rejected = run(body, Format::Ndjson, Partial::Reject);
        assert!(rejected.events.is_empty());
        assert_eq!(rejected.invalid, 1);
        assert!(
            error(&rejected).starts_with("line 3: "),
            "{}",
            error(&rejected)
        );
        let kept = run(body, Format::Ndjson, Partial::AcceptValid);
        assert_eq!(kept.events.len(), 3);
        assert_eq!(kept.invalid, 2);
        assert!(error(&kept).starts_with("line 3: "));
    }

    #[test]
    fn json_takes_arrays_single_objects_and_pretty_objects() {
        let array = run("[{\"a\":1},{\"a\":2}]", Format::Json, Partial::Reject);
        assert_eq!(array.events.len(), 2);
        let one = run("{\"a\":1}", Format::Json, Partial::Reject);
        assert_eq!(one.events.len(), 1);
        let pretty = run(
            "{\n  \"a\": 1,\n  \"b\": [1, 2]\n}\n",
            Format::Json,
            Partial::Reject,
        );
        assert!(pretty.error.is_none(), "{:?}", pretty.error);
        assert_eq!(pretty.events.len(), 1);
        assert_eq!(pretty.events[0].get("a"), Some(&Value::Int(1)));
        let lines = run("{\"a\":1}\n{\"a\":2}\n", Format::Json, Partial::Reject);
        assert_eq!(lines.events.len(), 2);
        let broken = run(
            "{\n  \"a\": 1,\n  \"b\": oops\n}\n",
            Format::Json,
            Partial::Reject,
        );
        assert!(error(&broken).starts_with("line 3: "), "{}", error(&broken));
        let item = run(
            "[{\"a\":1}, 7, {\"a\":3}]",
            Format::Json,
            Partial::AcceptValid,
        );
        assert_eq!(item.events.len(), 2);
        assert_eq!(
            error(&item),
            "item 2: expected a JSON object, found a number"
        );
        let scalar = run("42", Format::Json, Partial::AcceptValid);
        assert!(scalar.events.is_empty());
        assert!(scalar.error.is_some());
        assert!(run("  ", Format::Json, Partial::Reject).events.is_empty());
    }

    #[test]
    fn text_lines_are_raw_events() {
        let decoded = run("one\r\ntwo\n\nthree", Format::Text, Partial::Reject);
        let raws: Vec<&[u8]> = decoded
            .events
            .iter()
            .map(|event| event.raw().unwrap().as_ref())
            .collect();
        assert_eq!(raws, [&b"one"[..], b"two", b"three"]);
        assert_eq!(decoded.events[0].get("path").unwrap().as_str(), Some("/in"));
    }

    /// Regression (a CI run of the fuzz property below): a body of two tabs was one event in
    /// `text` but nothing in NDJSON. Whitespace-only lines are blank in every format.
    #[test]
    fn whitespace_only_lines_are_blank_in_every_format() {
        for format in [Format::Text, Format::Ndjson, Format::Json] {
            let decoded = run("\t\t", format, Partial::AcceptValid);
            assert!(decoded.events.is_empty(), "{format:?}");
            assert_eq!(decoded.invalid, 0, "{format:?}");
        }
        let decoded = run(" a \r\n \t\r\n\x0c\nb", Format::Text, Partial::Reject);
        let raws: Vec<&[u8]> = decoded
            .events
            .iter()
            .map(|event| event.raw().unwrap().as_ref())
            .collect();
        // Other lines are kept as sent, spaces included.
        assert_eq!(raws, [&b" a "[..], b"b"]);
    }

    #[test]
    fn gunzip_is_capped_and_checks_its_input() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b'a'; 1 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 5000);
        let mut reserved = 0;
        let mut reserve = |n: usize| {
            reserved += n;
            true
        };
        assert_eq!(
            gunzip_capped(&bomb, 1000, &mut reserve),
            Err(GunzipError::TooLarge { max: 1000 })
        );
        assert!(reserved <= 1000);
        let whole = gunzip_capped(&bomb, 1 << 20, &mut |_| true).unwrap();
        assert_eq!(whole.len(), 1 << 20);
        assert!(matches!(
            gunzip_capped(&bomb, 1 << 20, &mut |_| false),
            Err(GunzipError::NoBudget)
        ));
        assert!(matches!(
            gunzip_capped(b"not gzip", 100, &mut |_| true),
            Err(GunzipError::Corrupt { .. })
        ));
        assert!(matches!(
            gunzip_capped(&bomb[..bomb.len() / 2], 1 << 20, &mut |_| true),
            Err(GunzipError::Corrupt { .. })
        ));
    }

    /// Fuzz-style properties over bodies clients control: any bytes in any format never panic,
    /// and every non-blank line is either an event or counted as invalid.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn any_format() -> impl Strategy<Value = Format> {
            prop_oneof![Just(Format::Ndjson), Just(Format::Json), Just(Format::Text)]
        }

        fn non_blank_lines(body: &[u8]) -> usize {
            body.split(|b| *b == b'\n')
                .filter(|line| !line.trim_ascii().is_empty())
                .count()
        }

        /// A body of valid objects and garbage lines; the flags say which lines are good.
        fn mixed_ndjson() -> impl Strategy<Value = (String, Vec<bool>)> {
            let good = (any::<u32>(), "[a-z]{0,8}")
                .prop_map(|(n, s)| (format!(r#"{{"n":{n},"s":"{s}"}}"#), true));
            let bad = prop_oneof![
                Just("{".to_owned()),
                Just(r#"{"n":}"#.to_owned()),
                Just("[1,2]".to_owned()),
                Just("plain words".to_owned()),
                Just(r#"{"a":1} trailing"#.to_owned()),
            ]
            .prop_map(|line| (line, false));
            prop::collection::vec(prop_oneof![3 => good, 1 => bad], 0..40).prop_map(|lines| {
                let body = lines
                    .iter()
                    .map(|(line, _)| line.as_str())
                    .collect::<Vec<_>>();
                (body.join("\n"), lines.iter().map(|(_, ok)| *ok).collect())
            })
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic_and_every_line_is_accounted_for(
                body in prop::collection::vec(any::<u8>(), 0..512),
                format in any_format(),
            ) {
                let body = Bytes::from(body);
                let kept = decode(&body, format, Partial::AcceptValid, EventMeta::default(), &stamp());
                if format != Format::Json {
                    prop_assert_eq!(kept.events.len() + kept.invalid as usize, non_blank_lines(&body));
                }
                prop_assert_eq!(kept.invalid > 0, kept.error.is_some());
                prop_assert_eq!(kept.rejected.len() as u64, kept.invalid);
                let rejected = decode(&body, format, Partial::Reject, EventMeta::default(), &stamp());
                prop_assert!(rejected.rejected.is_empty());
                if rejected.error.is_some() {
                    prop_assert!(rejected.events.is_empty());
                } else {
                    prop_assert_eq!(rejected.invalid, 0);
                    prop_assert_eq!(rejected.events.len(), kept.events.len());
                }
            }

            #[test]
            fn ndjson_keeps_exactly_the_good_lines_and_names_the_first_bad_one(
                (body, good) in mixed_ndjson(),
            ) {
                let decoded = run(&body, Format::Ndjson, Partial::AcceptValid);
                prop_assert_eq!(decoded.events.len(), good.iter().filter(|ok| **ok).count());
                prop_assert_eq!(decoded.invalid as usize, good.iter().filter(|ok| !**ok).count());
                let first_bad = good.iter().position(|ok| !*ok).map(|at| Position::Line(at + 1));
                prop_assert_eq!(decoded.error.and_then(|error| error.position), first_bad);
                for event in &decoded.events {
                    prop_assert!(event.get("n").is_some());
                    prop_assert_eq!(event.get("path").unwrap().as_str(), Some("/in"));
                }
            }

            #[test]
            fn gunzip_never_panics_and_round_trips_within_its_cap(
                data in prop::collection::vec(any::<u8>(), 0..4096),
                garbage in prop::collection::vec(any::<u8>(), 0..256),
                cap in 0u64..8192,
            ) {
                use std::io::Write;
                let _ = gunzip_capped(&garbage, cap, &mut |_| true);
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&data).unwrap();
                let gz = encoder.finish().unwrap();
                match gunzip_capped(&gz, cap, &mut |_| true) {
                    Ok(out) => prop_assert_eq!(out, data),
                    Err(error) => {
                        prop_assert!(data.len() as u64 > cap);
                        prop_assert_eq!(error, GunzipError::TooLarge { max: cap });
                    }
                }
            }
        }
    }
}
