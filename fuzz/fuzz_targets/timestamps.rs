//! The `types` conversions of the `parse` step on any text, and the hand-written fast paths of
//! timestamp parsing checked against chrono, which they must agree with.
//!
//! Input: `[type choice, text...]`; with the choice 255, `[255, format, \n, text...]`: a strftime
//! format (and zone) of the user's own.
//!
//! Invariants: a conversion either gives a value of its type or rejects the event (never lost,
//! never a panic, even on overflowing numbers); `timestamp` (RFC 3339) gives exactly chrono's
//! `parse_from_rfc3339`, and `timestamp|%d/%b/%Y:%H:%M:%S %z` (the nginx time, which has its own
//! fast path) exactly chrono's `parse_from_str`; the nginx presets read their time the same way.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use sluice_pipelines::steps::parse::{Parse, ParseConfig, ParseFormat};
use sluice_pipelines::{Event, EventMeta, OnError, Step, StepContext, Value};

const CLF: &str = "%d/%b/%Y:%H:%M:%S %z";

const TYPES: [&str; 14] = [
    "timestamp",
    "timestamp|%d/%b/%Y:%H:%M:%S %z",
    "timestamp|rfc3339",
    "timestamp|unix",
    "timestamp|unix_ms",
    "timestamp|unix_us",
    "timestamp|unix_ns",
    "timestamp|%Y-%m-%d %H:%M:%S%.f",
    "timestamp|%Y-%m-%dT%H:%M:%S%Z",
    "timestamp|%d.%m.%Y",
    "int",
    "float",
    "bool",
    "string",
];

fn config(ty: &str) -> ParseConfig {
    ParseConfig {
        format: ParseFormat::Regex,
        pattern: Some(r"(?s)^(?P<t>.*)$".to_owned()),
        columns: None,
        delimiter: None,
        types: [("t".to_owned(), ty.to_owned())].into_iter().collect(),
        field: None,
        target: None,
        drop_raw: false,
        timestamp_field: None,
        timestamp_format: None,
    }
}

/// `text` as a raw line through `step`: the value of `t`, or `None` when rejected.
fn run(step: &mut Parse, text: &str) -> Option<Value> {
    let mut events = vec![Event::from_raw(
        Bytes::copy_from_slice(text.as_bytes()),
        EventMeta::default(),
    )];
    let mut ctx = StepContext::new(OnError::DeadLetter);
    step.process(&mut events, &mut ctx);
    let letters = ctx.take_dead_letters();
    assert_eq!(events.len() + letters.len(), 1, "one event in, one out");
    let event = events.pop()?;
    Some(event.get("t").expect("the group always matches").clone())
}

/// `text` converted to `ty` through a `regex` parse step: the value, or `None` when rejected.
fn convert(ty: &str, text: &str) -> Option<Value> {
    thread_local! {
        /// Steps by type, built once: building compiles the pattern.
        static STEPS: RefCell<HashMap<String, Parse>> = RefCell::new(HashMap::new());
    }
    STEPS.with_borrow_mut(|steps| {
        let step = steps
            .entry(ty.to_owned())
            .or_insert_with(|| config(ty).build().expect("the config builds"));
        run(step, text)
    })
}

fn timestamp(value: Option<Value>) -> Option<DateTime<Utc>> {
    match value {
        Some(Value::Timestamp(ts)) => Some(ts),
        None => None,
        Some(other) => panic!("a timestamp conversion gave {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [choice, rest @ ..] = data else {
        return;
    };
    // The step strips one trailing line end from raw lines; keep the text as chrono sees it.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if text.ends_with('\n') {
        return;
    }
    if *choice == 255 {
        // A format of the user's own (`types = { t = "timestamp|<format>[|<zone>]" }`): the
        // first line; the text to read is the rest. It may not build; it must not panic.
        let Some((format, text)) = text.split_once('\n') else {
            return;
        };
        if let Ok(mut step) = config(&format!("timestamp|{format}")).build() {
            let value = run(&mut step, text);
            assert!(
                matches!(value, None | Some(Value::Timestamp(_))),
                "{value:?}"
            );
        }
        return;
    }
    let ty = TYPES[usize::from(*choice) % TYPES.len()];
    let value = convert(ty, text);
    match (ty, &value) {
        (_, None) => {}
        ("int", Some(Value::Int(_) | Value::Null)) => {}
        ("float", Some(Value::Float(_) | Value::Null)) => {}
        ("bool", Some(Value::Bool(_))) => {}
        ("string", Some(Value::String(s))) => assert_eq!(s.as_str(), text),
        (ty, Some(Value::Timestamp(_))) if ty.starts_with("timestamp") => {}
        (ty, Some(other)) => panic!("{ty} gave {other:?}"),
    }

    // Both RFC 3339 spellings and the nginx time against chrono, whatever the choice byte.
    let chrono_rfc3339 = DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|ts| ts.with_timezone(&Utc));
    assert_eq!(
        timestamp(convert("timestamp", text)),
        chrono_rfc3339,
        "RFC 3339 {text:?}"
    );
    let chrono_clf = DateTime::parse_from_str(text, CLF)
        .ok()
        .map(|ts| ts.with_timezone(&Utc));
    assert_eq!(
        timestamp(convert(&format!("timestamp|{CLF}"), text)),
        chrono_clf,
        "nginx time {text:?}"
    );
});
