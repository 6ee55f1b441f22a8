//! The tracking pixel: `pixel_path = "/p.gif"`.
//!
//! Each `GET` (or `HEAD`) on the pixel path becomes one event whose fields are the query
//! parameters — percent-decoded, `+` as a space, a key given several times as an array of its
//! values in order, a key without `=` as an empty string — plus the fields every request of the
//! source gets (client address, path, receive time, copied headers). It is answered with a 1×1
//! transparent GIF and `Cache-Control: no-store`, so every view is a request. The source's rules
//! for POSTs hold here too: bearer tokens, the origin check of `cors` (by `Referer`, see
//! [`super::cors`]), and back-pressure — a topic that stays full for `max_wait` answers 503 with
//! `Retry-After`, and a 200 means the event is in the topic.

use bytes::Bytes;
use sluice_pipelines::{Event, EventMeta, FieldName, Fields, Str, Value};

/// The smallest transparent GIF: 1×1, one transparent colour (43 bytes).
pub const TRANSPARENT_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, // "GIF89a"
    0x01, 0x00, 0x01, 0x00, // 1×1
    0x80, 0x00, 0x00, // global colour table of 2, background 0
    0x00, 0x00, 0x00, 0xff, 0xff, 0xff, // black, white
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, // graphic control: colour 0 transparent
    0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, // image descriptor
    0x02, 0x02, 0x44, 0x01, 0x00, // LZW data
    0x3b, // trailer
];

/// The fields of a pixel request's query string (see the module doc).
pub fn query_fields(query: &str) -> Fields {
    let mut fields = Fields::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = Value::String(Str::from(value.as_ref()));
        match fields.get_mut(&key) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = std::mem::take(existing);
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                fields.insert(FieldName::new(&key), value);
            }
        }
    }
    fields
}

/// The event of a pixel request, before the source's stamp.
pub fn pixel_event(query: &str, meta: EventMeta) -> Event {
    let mut event = Event::from_fields(query_fields(query));
    *event.meta_mut() = meta;
    event
}

/// The GIF as a shared buffer.
pub fn gif() -> Bytes {
    Bytes::from_static(TRANSPARENT_GIF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(fields: &Fields, name: &str) -> Option<String> {
        fields.get(name).and_then(Value::as_str).map(str::to_owned)
    }

    #[test]
    fn parameters_are_decoded_and_repeated_keys_become_arrays() {
        let fields = query_fields(
            "e=view&page=%2Fhome%3Fa%3D1&q=red+shoes&tag=a&tag=b&tag=c&flag&caf%C3%A9=%E2%9C%93",
        );
        assert_eq!(text(&fields, "e").as_deref(), Some("view"));
        assert_eq!(text(&fields, "page").as_deref(), Some("/home?a=1"));
        assert_eq!(text(&fields, "q").as_deref(), Some("red shoes"));
        assert_eq!(text(&fields, "flag").as_deref(), Some(""));
        assert_eq!(text(&fields, "café").as_deref(), Some("✓"));
        assert_eq!(
            fields.get("tag"),
            Some(&Value::Array(vec![
                Value::from("a"),
                Value::from("b"),
                Value::from("c")
            ]))
        );
        assert!(query_fields("").is_empty());
    }

    #[test]
    fn the_gif_is_a_1x1_gif() {
        assert_eq!(&TRANSPARENT_GIF[..6], b"GIF89a");
        assert_eq!(&TRANSPARENT_GIF[6..10], &[1, 0, 1, 0]);
        assert_eq!(TRANSPARENT_GIF.last(), Some(&0x3b));
    }

    proptest::proptest! {
        /// Any query string decodes without panicking, into at most one field per `&` part.
        #[test]
        fn arbitrary_queries_never_panic(query in "\\PC{0,200}") {
            let fields = query_fields(&query);
            proptest::prop_assert!(fields.len() <= query.split('&').count());
        }
    }
}
