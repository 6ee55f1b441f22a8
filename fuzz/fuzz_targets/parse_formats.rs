//! The `parse` step's `logfmt`, `csv`, `regex` and `json` formats on any line, with the step's
//! options (`target`, `drop_raw`, `timestamp_field`, `types`).
//!
//! Input: `[format choice, options, line...]`.
//!
//! Invariants: every event comes out parsed or rejected, and a rejected one unchanged; a parsed
//! event keeps its raw line unless `drop_raw`, and its fields are where `target` says; `csv` gives
//! exactly one field per named column; `regex` strings are pieces of the line; and `logfmt` and
//! `csv` round-trip: the parsed fields, written back in the format (quoted and escaped), parse to
//! the same fields.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::assert_valid_strings;
use sluice_pipelines::steps::parse::{Parse, ParseConfig, ParseFormat};
use sluice_pipelines::{Event, EventMeta, Fields, OnError, Step, StepContext, Value};

const DELIMITERS: [&str; 4] = [",", ";", "\t", "|"];

/// `(pattern, types)` of the regex format, from the tests and the README.
const PATTERNS: [(&str, &[(&str, &str)]); 3] = [
    (
        r"^(?P<ts>\S+) (?P<level>\w+) (?P<status>\d+) (?P<msg>.*)$",
        &[("status", "int")],
    ),
    (
        r#"^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<timestamp>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<request_time>\S+) (?P<request_id>\S+)$"#,
        &[
            ("status", "int"),
            ("bytes", "int"),
            ("request_time", "float"),
            ("timestamp", "timestamp|%d/%b/%Y:%H:%M:%S %z"),
        ],
    ),
    (
        r"(?P<key>[a-z]+)=(?P<num>-?[0-9.e]+)?(?:,(?P<flag>\w+))?",
        &[("num", "float"), ("flag", "bool")],
    ),
];

fn base(format: ParseFormat) -> ParseConfig {
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

/// Runs one raw line through a step built from `config`: the event out, or the rejection.
fn run(config: &ParseConfig, line: &[u8]) -> Result<Event, String> {
    thread_local! {
        /// Steps by config, built once: building compiles patterns.
        static STEPS: RefCell<HashMap<String, Parse>> = RefCell::new(HashMap::new());
    }
    let input = Event::from_raw(Bytes::copy_from_slice(line), EventMeta::default());
    let mut events = vec![input.clone()];
    let mut ctx = StepContext::new(OnError::DeadLetter);
    STEPS.with_borrow_mut(|steps| {
        steps
            .entry(format!("{config:?}"))
            .or_insert_with(|| config.build().expect("the config builds"))
            .process(&mut events, &mut ctx);
    });
    let mut letters = ctx.take_dead_letters();
    assert_eq!(events.len() + letters.len(), 1, "one event in, one out");
    match (events.pop(), letters.pop()) {
        (Some(event), None) => {
            if config.drop_raw {
                assert!(event.raw().is_none());
            } else {
                assert_eq!(event.raw(), input.raw());
            }
            Ok(event)
        }
        (_, Some(letter)) => {
            assert_eq!(letter.event, input, "a rejected event is unchanged");
            Err(letter.error)
        }
        (None, None) => unreachable!(),
    }
}

/// The parsed fields of `event`: at the top level, or under `target`.
fn parsed(config: &ParseConfig, event: &Event) -> Fields {
    match &config.target {
        None => event.fields().clone(),
        Some(target) => match event.get(target) {
            Some(Value::Map(fields)) => fields.clone(),
            other => panic!("expected the fields under `{target}`, found {other:?}"),
        },
    }
}

fn logfmt_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_logfmt(fields: &Fields) -> String {
    let mut out = Vec::new();
    for (name, value) in fields.iter() {
        match value {
            Value::Bool(true) => out.push(name.as_str().to_owned()),
            Value::String(text) => out.push(format!(
                "{}={}",
                name.as_str(),
                logfmt_quoted(text.as_str())
            )),
            other => panic!("logfmt gave {name:?} = {other:?}"),
        }
    }
    // A trailing space keeps a last bare key ending in `\n` from losing it to line-end trimming.
    out.join(" ") + " "
}

fn write_csv(fields: &Fields, delimiter: &str) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|(_, value)| match value {
            Value::String(text) => format!("\"{}\"", text.as_str().replace('"', "\"\"")),
            other => panic!("csv gave {other:?}"),
        })
        .collect();
    quoted.join(delimiter)
}

fuzz_target!(|data: &[u8]| {
    let [choice, options, line @ ..] = data else {
        return;
    };
    let mut config = match choice % 4 {
        0 => base(ParseFormat::Logfmt),
        1 => {
            let mut config = base(ParseFormat::Csv);
            let columns = 1 + usize::from(options & 3);
            config.columns = Some((0..columns).map(|i| format!("c{i}")).collect());
            config.delimiter = Some(DELIMITERS[usize::from((options >> 2) & 3)].to_owned());
            config
        }
        2 => {
            let (pattern, types) = PATTERNS[usize::from(choice / 4) % PATTERNS.len()];
            let mut config = base(ParseFormat::Regex);
            config.pattern = Some(pattern.to_owned());
            config.types = types
                .iter()
                .map(|(name, ty)| ((*name).to_owned(), (*ty).to_owned()))
                .collect();
            config
        }
        _ => base(ParseFormat::Json),
    };
    // Options that do not change what is parsed, only where it goes.
    config.drop_raw = options & 0x10 != 0;
    if options & 0x20 != 0 {
        config.target = Some("parsed".to_owned());
    }
    let plain = base(config.format);
    let result = run(&config, line);
    let Ok(event) = result else {
        return;
    };
    assert_valid_strings(event.fields());
    let fields = parsed(&config, &event);
    let text = String::from_utf8_lossy(line);
    match config.format {
        ParseFormat::Logfmt => {
            assert!(plain.target.is_none());
            let written = write_logfmt(&fields);
            let again = run(&plain, written.as_bytes())
                .unwrap_or_else(|error| panic!("{written:?} does not parse back: {error}"));
            assert_eq!(again.fields(), &fields, "written back as {written:?}");
        }
        ParseFormat::Csv => {
            let columns = config.columns.as_ref().map_or(0, Vec::len);
            assert_eq!(fields.len(), columns);
            let delimiter = config.delimiter.as_deref().unwrap_or(",");
            let written = write_csv(&fields, delimiter);
            let mut again_config = base(ParseFormat::Csv);
            again_config.columns = config.columns.clone();
            again_config.delimiter = config.delimiter.clone();
            let again = run(&again_config, written.as_bytes())
                .unwrap_or_else(|error| panic!("{written:?} does not parse back: {error}"));
            assert_eq!(again.fields(), &fields, "written back as {written:?}");
        }
        ParseFormat::Regex => {
            for (name, value) in fields.iter() {
                if let Value::String(part) = value {
                    assert!(text.contains(part.as_str()), "{name:?} = {part:?}");
                }
            }
        }
        _ => {}
    }
});
