//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use sluice_pipelines::{Fields, Value};

/// Checks that every string in `fields`, at any depth, is valid UTF-8.
///
/// `Str::as_str` skips the UTF-8 check (the one `unsafe` block of the event model), trusting that
/// every `Str` was built from checked text; this catches a slice or a decoder that breaks that
/// promise, which no sanitizer would see.
pub fn assert_valid_strings(fields: &Fields) {
    for (name, value) in fields.iter() {
        assert!(std::str::from_utf8(name.as_str().as_bytes()).is_ok());
        assert_valid_value(value);
    }
}

/// [`assert_valid_strings`] for one value.
pub fn assert_valid_value(value: &Value) {
    match value {
        Value::String(text) => assert!(
            std::str::from_utf8(text.as_bytes()).is_ok(),
            "a Str holds invalid UTF-8: {:?}",
            text.as_bytes()
        ),
        Value::Array(items) => items.iter().for_each(assert_valid_value),
        Value::Map(fields) => assert_valid_strings(fields),
        _ => {}
    }
}
