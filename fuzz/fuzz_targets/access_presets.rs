//! Every access log preset (`nginx_combined`, `nginx_combined_timed`, `apache_common`,
//! `apache_combined`) on any line, through the `parse` step as a pipeline runs it.
//!
//! Invariants: every event comes out parsed or rejected (never lost, never duplicated); a parsed
//! event has exactly the preset's fields in order, with `timestamp` a timestamp, `status` an int,
//! `bytes` an int or null, and every string field a piece of the line; a rejected event is
//! unchanged; `nginx_combined` and `apache_combined` (the same format) agree.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::assert_valid_strings;
use sluice_pipelines::steps::parse::{ParseConfig, ParseFormat, Preset};
use sluice_pipelines::{Event, EventMeta, Fields, OnError, Step, StepContext, Value};

const PRESETS: [(ParseFormat, Preset); 4] = [
    (ParseFormat::NginxCombined, Preset::NginxCombined),
    (ParseFormat::NginxCombinedTimed, Preset::NginxCombinedTimed),
    (ParseFormat::ApacheCommon, Preset::ApacheCommon),
    (ParseFormat::ApacheCombined, Preset::ApacheCombined),
];

fn config(format: ParseFormat) -> ParseConfig {
    ParseConfig {
        format,
        pattern: None,
        columns: None,
        delimiter: None,
        types: Default::default(),
        field: None,
        target: None,
        drop_raw: false,
        timestamp_field: None,
        timestamp_format: None,
    }
}

/// Runs one raw line through the step: the parsed fields, or the rejection.
fn parse(format: ParseFormat, line: &Bytes) -> Result<Fields, String> {
    let mut step = config(format).build().expect("a preset always builds");
    let input = Event::from_raw(line.clone(), EventMeta::default());
    let mut events = vec![input.clone()];
    let mut ctx = StepContext::new(OnError::DeadLetter);
    step.process(&mut events, &mut ctx);
    let mut letters = ctx.take_dead_letters();
    match (events.pop(), letters.pop()) {
        (Some(event), None) if events.is_empty() => {
            assert_eq!(event.raw(), Some(line), "the raw line is kept");
            Ok(event.fields().clone())
        }
        (None, Some(letter)) if letters.is_empty() => {
            assert_eq!(letter.event, input, "a rejected event is unchanged");
            assert!(!letter.error.is_empty());
            Err(letter.error)
        }
        (kept, rejected) => panic!("one event in, out: {kept:?} and {rejected:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let line = Bytes::copy_from_slice(data);
    // What the parser reads: the line without a trailing `\n` / `\r\n`, made valid UTF-8.
    let text = String::from_utf8_lossy(data);
    let mut results = Vec::new();
    for (format, preset) in PRESETS {
        let result = parse(format, &line);
        if let Ok(fields) = &result {
            assert_valid_strings(fields);
            let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(names, preset.field_names(), "{}", preset.name());
            for (name, value) in fields.iter() {
                match (name.as_str(), value) {
                    ("timestamp", Value::Timestamp(_)) => {}
                    ("status", Value::Int(_)) => {}
                    ("bytes", Value::Int(_) | Value::Null) => {}
                    ("request_time", Value::Float(_) | Value::Null) => {}
                    (_, Value::String(part)) => {
                        assert!(
                            text.contains(part.as_str()),
                            "{name} = {part:?} is not in the line"
                        )
                    }
                    (name, value) => panic!("{}: unexpected {name} = {value:?}", preset.name()),
                }
            }
        }
        results.push(result);
    }
    // The same format under two names: the same fields, or both rejected (the messages name
    // the preset).
    assert_eq!(
        results[0].as_ref().ok(),
        results[3].as_ref().ok(),
        "nginx_combined and apache_combined differ"
    );
});
