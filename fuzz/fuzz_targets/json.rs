//! The JSON codec (`pipelines/src/codec/`): decoding any bytes, the fast object parser against
//! serde_json's path, and encoding back.
//!
//! Invariants:
//! - `decode_object_shared` (the fast parser, falling back to serde_json) and `decode_object`
//!   (serde_json only) agree on every input: the same fields, or the same error;
//! - a decoded value re-encodes to JSON that decodes to an equal value (objects and any value);
//! - an event whose raw line is any bytes encodes to JSON whose `message` is that line (invalid
//!   UTF-8 replaced).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{assert_valid_strings, assert_valid_value};
use sluice_pipelines::codec::json::{JsonDecoder, encode_event, encode_value};
use sluice_pipelines::{Event, EventMeta, Value};

fuzz_target!(|data: &[u8]| {
    let mut decoder = JsonDecoder::new();
    let input = Bytes::copy_from_slice(data);
    let shared = decoder.decode_object_shared(&input);
    let plain = decoder.decode_object(data);
    assert_eq!(shared, plain, "the fast and the serde_json paths differ");

    if let Ok(fields) = &plain {
        assert_valid_strings(fields);
        let mut encoded = Vec::new();
        encode_value(&Value::Map(fields.clone()), &mut encoded);
        let again = decoder.decode_object(&encoded);
        assert_eq!(
            again.as_ref(),
            Ok(fields),
            "re-encoded as {:?}",
            String::from_utf8_lossy(&encoded)
        );
        let again_shared = decoder.decode_object_shared(&Bytes::from(encoded));
        assert_eq!(again_shared.as_ref(), Ok(fields));
    }

    if let Ok(value) = decoder.decode_value(data) {
        assert_valid_value(&value);
        let mut encoded = Vec::new();
        encode_value(&value, &mut encoded);
        let again = decoder.decode_value(&encoded);
        assert_eq!(
            again.as_ref(),
            Ok(&value),
            "re-encoded as {:?}",
            String::from_utf8_lossy(&encoded)
        );
    }

    let event = Event::from_raw(input, EventMeta::default());
    let mut encoded = Vec::new();
    encode_event(&event, &mut encoded);
    let decoded = decoder
        .decode_object(&encoded)
        .expect("an encoded event is a JSON object");
    let message = decoded.get("message").and_then(Value::as_str);
    assert_eq!(message, Some(&*String::from_utf8_lossy(data)));
});
