//! HTTP body decoding of the `http_server` source (`agent/sources/http_server/decode.rs`): the
//! Content-Type choice, capped gunzip, and NDJSON, JSON (arrays, objects, pretty objects) and
//! text bodies, with both `partial` settings.
//!
//! Input: `[flags, cap, body...]`. Flag bits: 0-1 the format (NDJSON, JSON, text, sniffed from
//! the body), 2 gzip the body first, 3 the Content-Type is the body's first line.
//!
//! Invariants:
//! - gunzip of any bytes never holds more than its cap; a body gzipped and gunzipped comes back
//!   whole, or is refused as too large exactly when it is larger than the cap;
//! - `invalid` counts the rejections: an error is named exactly when something was invalid,
//!   `accept_valid` keeps one dead letter per invalid line or item (or the whole body), `reject`
//!   keeps none, and keeps no events once something was invalid; both settings agree on the
//!   events of a clean body;
//! - NDJSON: every non-blank line is an event or invalid;
//! - text: the events are the body's lines (without `\r`), in order, as slices of it; only
//!   empty or whitespace-only lines may be left out;
//! - every event carries the stamp, and its fields re-encode to JSON that decodes equal.
#![no_main]

use std::io::Write;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::fuzzing::http_body::{
    Choice, Decoded, Decoding, Format, GunzipError, Partial, Stamp, choose, decode, gunzip_capped,
};
use sluice_fuzz::assert_valid_strings;
use sluice_pipelines::codec::json::{JsonDecoder, encode_value};
use sluice_pipelines::{EventMeta, FieldName, Str, Value};

fn stamp() -> Stamp {
    vec![(FieldName::new("path"), Value::String(Str::from("/in")))]
}

fn gunzip_checks(body: &[u8], cap: u64) {
    let mut reserved = 0usize;
    let mut reserve = |n: usize| {
        reserved += n;
        true
    };
    if let Ok(out) = gunzip_capped(body, cap, &mut reserve) {
        assert!(out.len() as u64 <= cap);
        assert_eq!(out.len(), reserved);
    }
    assert!(reserved as u64 <= cap);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).expect("writing to memory");
    let gz = encoder.finish().expect("writing to memory");
    match gunzip_capped(&gz, cap, &mut |_| true) {
        Ok(out) => assert_eq!(out, body),
        Err(error) => {
            assert_eq!(error, GunzipError::TooLarge { max: cap });
            assert!(body.len() as u64 > cap);
        }
    }
    assert!(matches!(
        gunzip_capped(&gz, u64::MAX, &mut |_| false),
        Err(GunzipError::NoBudget) | Ok(_)
    ));
}

/// The body's lines split at `\n`, one trailing `\r` removed: `(offset, line)`.
fn text_lines(body: &[u8]) -> Vec<(usize, &[u8])> {
    let mut lines = Vec::new();
    let mut start = 0;
    for line in body.split(|b| *b == b'\n') {
        let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        lines.push((start, trimmed));
        start += line.len() + 1;
    }
    lines
}

fn check(body: &Bytes, format: Format, kept: &Decoded, strict: &Decoded) {
    // Counting and naming rejections.
    assert_eq!(kept.invalid > 0, kept.error.is_some());
    assert_eq!(kept.rejected.len() as u64, kept.invalid);
    assert!(strict.rejected.is_empty());
    assert_eq!(strict.invalid > 0, strict.error.is_some());
    if strict.error.is_some() {
        assert!(strict.events.is_empty());
        assert_eq!(strict.invalid, 1, "`reject` stops at the first bad line");
    } else {
        assert_eq!(kept.invalid, 0);
        assert_eq!(strict.events.len(), kept.events.len());
    }
    let stamp = stamp();
    for (event, _) in &kept.rejected {
        assert_eq!(event.get("path"), Some(&stamp[0].1));
    }

    match format {
        Format::Ndjson => {
            let non_blank = body
                .split(|b| *b == b'\n')
                .filter(|line| !line.trim_ascii().is_empty())
                .count();
            assert_eq!(kept.events.len() + kept.invalid as usize, non_blank);
        }
        Format::Text => {
            let mut events = kept.events.iter().peekable();
            for (offset, line) in text_lines(body) {
                let raw = events.peek().and_then(|event| event.raw());
                match raw {
                    Some(raw) if raw.as_ptr() as usize == body.as_ptr() as usize + offset => {
                        assert_eq!(&raw[..], line);
                        events.next();
                    }
                    _ => assert!(
                        line.trim_ascii().is_empty(),
                        "the line at {offset} ({line:?}) is missing"
                    ),
                }
            }
            assert!(
                events.next().is_none(),
                "events that are no line of the body"
            );
            assert_eq!(kept.invalid, 0);
        }
        Format::Json => {}
    }

    let mut decoder = JsonDecoder::new();
    for event in &kept.events {
        assert_eq!(event.get("path"), Some(&stamp[0].1));
        assert_valid_strings(event.fields());
        if format != Format::Text {
            let mut encoded = Vec::new();
            encode_value(&Value::Map(event.fields().clone()), &mut encoded);
            let again = decoder.decode_object(&encoded);
            assert_eq!(again.as_ref(), Ok(event.fields()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, cap, rest @ ..] = data else {
        return;
    };
    let cap = u64::from(*cap) * 8;
    gunzip_checks(rest, cap);

    let (content_type, body) = if flags & 8 != 0 {
        match rest.iter().position(|b| *b == b'\n') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (Some(rest), &[][..]),
        }
    } else {
        (None, rest)
    };
    let body = if flags & 4 != 0 {
        // What a gzip request gives the decoder: the body, once decompressed.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(body).expect("writing to memory");
        let gz = encoder.finish().expect("writing to memory");
        Bytes::from(gunzip_capped(&gz, u64::MAX, &mut |_| true).expect("a valid gzip body"))
    } else {
        Bytes::copy_from_slice(body)
    };

    let choice = match flags & 3 {
        0 => Choice::Format(Format::Ndjson),
        1 => Choice::Format(Format::Json),
        2 => Choice::Format(Format::Text),
        _ => Choice::Sniff,
    };
    let choice = match content_type {
        Some(content_type) => match choose(Decoding::Auto, Some(content_type)) {
            Ok(choice) => choice,
            Err(media) => {
                assert!(!media.is_empty());
                choice
            }
        },
        None => choice,
    };
    let format = choice.resolve(&body);
    let kept = decode(
        &body,
        format,
        Partial::AcceptValid,
        EventMeta::default(),
        &stamp(),
    );
    let strict = decode(
        &body,
        format,
        Partial::Reject,
        EventMeta::default(),
        &stamp(),
    );
    check(&body, format, &kept, &strict);
});
