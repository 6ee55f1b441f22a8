//! The condition language (`pipelines/src/condition/`) on any text: parsing, printing and
//! evaluating against a few events.
//!
//! Invariants:
//! - a parse error points inside the expression and renders with its caret;
//! - a parsed condition prints in a canonical form that parses back to the same condition (as
//!   its `Display` doc promises), and the same for value expressions;
//! - `not (c)` parses whenever `c` does and holds exactly when `c` does not;
//! - a condition holds exactly when the same text as a value expression evaluates to `true`.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_pipelines::codec::json::JsonDecoder;
use sluice_pipelines::{Condition, Event, EventMeta, Expression, Value};

/// Events with the shapes conditions meet: parsed access logs, nested maps, arrays, nulls, odd
/// keys, a raw line, a timestamp, and nothing at all.
fn events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let objects = [
            r#"{"status": 503, "method": "GET", "path": "/healthz", "agent": "Googlebot/2.1", "bytes": 1024, "request_time": 0.25, "user": {"id": 7, "name": "Zoë", "tags": ["a", "b"]}, "ok": true, "none": null, "odd key": "x", "and": 1}"#,
            r#"{"status": "404", "bytes": -1.5e3, "path": "", "user": [], "n": 9223372036854775807, "m": -9223372036854775808, "ts": "2024-05-01T00:00:00Z", "message": "a message field"}"#,
            r#"{}"#,
        ];
        let mut decoder = JsonDecoder::new();
        let mut events: Vec<Event> = objects
            .iter()
            .map(|text| {
                let fields = decoder.decode_object(text.as_bytes()).expect("valid JSON");
                Event::from_fields(fields)
            })
            .collect();
        let mut raw = Event::from_raw(
            Bytes::from_static(b"GET /index.html 200 \xff bot"),
            EventMeta::default(),
        );
        raw.insert(
            "ts",
            Value::Timestamp(
                chrono::DateTime::from_timestamp(1_714_521_600, 5).expect("a valid time"),
            ),
        );
        raw.insert("nan", Value::Float(f64::NAN));
        events.push(raw);
        events
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Condition::parse(text) {
        Err(error) => {
            assert!(error.offset() <= text.len());
            assert!(error.column() >= 1);
            let shown = error.to_string();
            assert!(shown.contains('^') && shown.contains(error.message()));
        }
        Ok(condition) => {
            let printed = condition.to_string();
            let again = Condition::parse(&printed)
                .unwrap_or_else(|error| panic!("{text:?} printed as {printed:?}: {error}"));
            assert_eq!(again, condition, "{text:?} printed as {printed:?}");
            let negated = Condition::parse(&format!("not ({text})"))
                .unwrap_or_else(|error| panic!("not ({text:?}) does not parse: {error}"));
            let expression = Expression::parse(text).unwrap_or_else(|error| {
                panic!("{text:?} is a condition, not an expression: {error}")
            });
            for event in events() {
                let holds = condition.matches(event);
                assert_eq!(again.matches(event), holds);
                assert_eq!(negated.matches(event), !holds, "{text:?} on {event:?}");
                let value = expression.evaluate(event);
                assert_eq!(
                    value == Some(Value::Bool(true)),
                    holds,
                    "{text:?} gave {value:?}"
                );
            }
        }
    }
    if let Ok(expression) = Expression::parse(text) {
        let printed = expression.to_string();
        let again = Expression::parse(&printed)
            .unwrap_or_else(|error| panic!("{text:?} printed as {printed:?}: {error}"));
        assert_eq!(again, expression, "{text:?} printed as {printed:?}");
        for event in events() {
            let _ = expression.evaluate(event);
            let _ = expression.field_path();
            let _ = expression.literal();
        }
    }
});
