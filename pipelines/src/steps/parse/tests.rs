//! Tests of the `parse` step: every format, conversions, errors, and no-panic property tests.

use super::*;
use crate::event::EventMeta;
use crate::step::{DeadLetter, OnError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use proptest::prelude::*;

/// The regex for the lines `sluice generate --format nginx` (and `gen_logs.py`) writes.
pub(crate) const NGINX: &str = r#"^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<timestamp>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<request_time>\S+) (?P<request_id>\S+)$"#;

/// `parse` config for those lines, with every type the presets give.
pub(crate) fn nginx_config() -> String {
    format!(
        "format = \"regex\"\npattern = '{NGINX}'\n\
             types = {{ status = \"int\", bytes = \"int\", request_time = \"float\", \
             timestamp = \"timestamp|%d/%b/%Y:%H:%M:%S %z\" }}"
    )
}

/// Lines written by `gen_logs.py --format nginx` (a user, a bot, a POST, a 304, a 503).
pub(crate) const LINES: [&str; 6] = [
    r#"2.74.214.137 - u42924 [01/Jan/2026:00:00:00 +0000] "GET /favicon.ico HTTP/1.1" 200 67686 "https://t.co/x1y2z3" "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0" 0.051 req-0000000011"#,
    r#"193.8.117.22 - - [01/Jan/2026:00:00:00 +0000] "GET /product/95 HTTP/1.1" 200 49484 "https://shop.example.com/search?q=shoes" "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)" 0.037 req-0000000041"#,
    r#"107.183.194.246 - - [01/Jan/2026:00:00:00 +0000] "POST /cart HTTP/1.1" 200 86433 "https://www.google.com/" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36" 0.030 req-0000000010"#,
    r#"153.254.233.18 - - [01/Jan/2026:00:00:00 +0000] "GET /product/31 HTTP/1.1" 304 0 "https://shop.example.com/search?q=shoes" "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148" 0.059 req-0000000007"#,
    r#"35.213.235.159 - - [01/Jan/2026:00:00:00 +0000] "GET /product/163 HTTP/1.1" 503 87207 "https://shop.example.com/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15" 0.068 req-0000000072"#,
    r#"11.160.30.201 - - [01/Jan/2026:00:00:10 +0000] "GET /product/191 HTTP/1.1" 200 58770 "https://www.google.com/" "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148" 0.015 req-0000002000"#,
];

fn config(toml_text: &str) -> ParseConfig {
    toml::from_str(toml_text).unwrap()
}

fn step(toml_text: &str) -> Parse {
    match config(toml_text).build() {
        Ok(step) => step,
        Err(error) => panic!("config should build: {error:?}"),
    }
}

fn build_error(toml_text: &str) -> BuildError {
    config(toml_text).build().unwrap_err()
}

fn raw(line: &str) -> Event {
    Event::from_raw(
        Bytes::copy_from_slice(line.as_bytes()),
        EventMeta::default(),
    )
}

/// Runs `events` through `step`: what was kept, and the dead letters.
fn run(step: &mut Parse, events: Vec<Event>) -> (Vec<Event>, Vec<DeadLetter>) {
    let mut ctx = StepContext::new(OnError::DeadLetter);
    let mut events = events;
    step.process(&mut events, &mut ctx);
    let letters = ctx.take_dead_letters();
    assert_eq!(ctx.take_counts(), (letters.len() as u64, 0));
    (events, letters)
}

fn parse_one(step: &mut Parse, event: Event) -> Result<Event, String> {
    let (mut kept, mut letters) = run(step, vec![event]);
    match (kept.pop(), letters.pop()) {
        (Some(event), None) => Ok(event),
        (None, Some(letter)) => Err(letter.error),
        other => panic!("one event in, one out expected: {other:?}"),
    }
}

fn ts(text: &str) -> Value {
    Value::Timestamp(
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc),
    )
}

/// The event's top-level field names, in order.
fn names(event: &Event) -> Vec<&str> {
    event
        .fields()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect()
}

fn string(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap()
}

#[test]
fn nginx_lines_become_typed_fields() {
    let mut step = step(&nginx_config());
    let (events, letters) = run(&mut step, LINES.iter().map(|line| raw(line)).collect());
    assert!(letters.is_empty(), "{letters:?}");
    assert_eq!(events.len(), LINES.len());

    let first = &events[0];
    assert_eq!(
        names(first),
        [
            "ip",
            "user",
            "timestamp",
            "method",
            "path",
            "protocol",
            "status",
            "bytes",
            "referer",
            "agent",
            "request_time",
            "request_id"
        ]
    );
    assert_eq!(string(first.get("ip")), "2.74.214.137");
    assert_eq!(string(first.get("user")), "u42924");
    assert_eq!(first.get("timestamp"), Some(&ts("2026-01-01T00:00:00Z")));
    assert_eq!(string(first.get("method")), "GET");
    assert_eq!(string(first.get("path")), "/favicon.ico");
    assert_eq!(string(first.get("protocol")), "HTTP/1.1");
    assert_eq!(first.get("status"), Some(&Value::Int(200)));
    assert_eq!(first.get("bytes"), Some(&Value::Int(67686)));
    assert_eq!(string(first.get("referer")), "https://t.co/x1y2z3");
    assert!(string(first.get("agent")).ends_with("Firefox/125.0"));
    assert_eq!(first.get("request_time"), Some(&Value::Float(0.051)));
    assert_eq!(string(first.get("request_id")), "req-0000000011");
    assert!(first.raw().is_some(), "drop_raw is off by default");

    assert_eq!(string(events[2].get("method")), "POST");
    assert_eq!(events[3].get("bytes"), Some(&Value::Int(0)));
    assert_eq!(events[4].get("status"), Some(&Value::Int(503)));
    assert_eq!(
        events[5].get("timestamp"),
        Some(&ts("2026-01-01T00:00:10Z"))
    );
    assert!(string(events[1].get("agent")).contains("bingbot"));
}

#[test]
fn captures_are_slices_of_the_raw_line() {
    let mut step = step(&nginx_config());
    let event = parse_one(&mut step, raw(LINES[0])).unwrap();
    let line = event.raw().unwrap().as_ptr_range();
    for name in ["ip", "path", "agent", "request_id"] {
        let Some(Value::String(text)) = event.get(name) else {
            panic!("{name} should be a string");
        };
        assert!(
            line.contains(&text.as_bytes().as_ptr()),
            "`{name}` must point into the raw line, not be a copy"
        );
    }
}

#[test]
fn dash_is_null_for_numbers() {
    let mut step = step(
        "format = \"regex\"\npattern = '^(?P<bytes>\\S+) (?P<request_time>\\S+) (?P<user>\\S+)$'\n\
             types = { bytes = \"int\", request_time = \"float\", user = \"string\" }",
    );
    let event = parse_one(&mut step, raw("- - -")).unwrap();
    assert_eq!(event.get("bytes"), Some(&Value::Null));
    assert_eq!(event.get("request_time"), Some(&Value::Null));
    assert_eq!(
        event.get("user"),
        Some(&Value::from("-")),
        "strings keep `-`"
    );
    let event = parse_one(&mut step, raw("12 1.5 bob")).unwrap();
    assert_eq!(event.get("bytes"), Some(&Value::Int(12)));
    assert_eq!(event.get("request_time"), Some(&Value::Float(1.5)));
}

#[test]
fn a_value_that_does_not_convert_rejects_the_event_unchanged() {
    let mut step = step(
        "format = \"regex\"\npattern = '^(?P<path>\\S+) (?P<status>\\S+)$'\ntypes = { status = \"int\" }",
    );
    let event = raw("/x abc");
    let (kept, letters) = run(&mut step, vec![event.clone()]);
    assert!(kept.is_empty());
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].error,
        "field `status`: cannot convert \"abc\" to int"
    );
    assert_eq!(
        letters[0].event, event,
        "the dead letter is the event as it came"
    );
}

#[test]
fn unmatched_optional_groups_are_absent() {
    let mut step = step("format = \"regex\"\npattern = '^(?P<a>\\w+)(?: (?P<b>\\w+))?$'");
    let event = parse_one(&mut step, raw("x")).unwrap();
    assert_eq!(event.fields().len(), 1);
    assert_eq!(event.get("a"), Some(&Value::from("x")));
    assert_eq!(event.get("b"), None);
    let event = parse_one(&mut step, raw("x y")).unwrap();
    assert_eq!(event.get("b"), Some(&Value::from("y")));
}

#[test]
fn lines_that_cannot_be_parsed_are_rejected_with_a_reason() {
    let mut regex = step(&nginx_config());
    assert_eq!(
        parse_one(&mut regex, raw("not an access log line")),
        Err("the line does not match the pattern".to_owned())
    );
    assert_eq!(
        parse_one(&mut regex, Event::default()),
        Err("no raw line to parse".to_owned())
    );
    let bad_time = LINES[0].replace("01/Jan/2026", "01/Foo/2026");
    assert_eq!(
        parse_one(&mut regex, raw(&bad_time)),
        Err(
            "field `timestamp`: cannot convert \"01/Foo/2026:00:00:00 +0000\" to timestamp \
                 with format `%d/%b/%Y:%H:%M:%S %z`"
                .to_owned()
        )
    );

    let mut json = step("format = \"json\"");
    assert_eq!(
        parse_one(&mut json, raw("{\"a\":")),
        Err("invalid JSON at column 5: EOF while parsing a value".to_owned())
    );
    assert_eq!(
        parse_one(&mut json, raw("[1, 2]")),
        Err("expected a JSON object, found an array".to_owned())
    );
    assert_eq!(
        parse_one(&mut json, raw("plain text")),
        Err("invalid JSON at column 1: expected value".to_owned())
    );
    assert_eq!(
        parse_one(&mut json, Event::default()),
        Err("no raw line to parse".to_owned())
    );
}

#[test]
fn rejected_events_leave_the_batch_in_order() {
    let mut step = step(&nginx_config());
    let events = vec![
        raw(LINES[0]),
        raw("garbage"),
        raw(LINES[1]),
        raw("more garbage"),
        raw(LINES[2]),
    ];
    let (kept, letters) = run(&mut step, events);
    let ids: Vec<&str> = kept.iter().map(|e| string(e.get("request_id"))).collect();
    assert_eq!(ids, ["req-0000000011", "req-0000000041", "req-0000000010"]);
    let bad: Vec<&[u8]> = letters
        .iter()
        .map(|l| &l.event.raw().unwrap()[..])
        .collect();
    assert_eq!(bad, [&b"garbage"[..], b"more garbage"]);
    // The step reuses its buffers: a second batch works the same.
    let (kept, letters) = run(&mut step, vec![raw("x"), raw(LINES[3])]);
    assert_eq!((kept.len(), letters.len()), (1, 1));
}

#[test]
fn trailing_newlines_and_invalid_utf8() {
    let mut step = step("format = \"regex\"\npattern = '^(?P<a>\\S+) (?P<b>.*)$'");
    let event = parse_one(&mut step, raw("x y\r\n")).unwrap();
    assert_eq!(event.get("b"), Some(&Value::from("y")));
    let event = parse_one(&mut step, raw("x y\n")).unwrap();
    assert_eq!(event.get("b"), Some(&Value::from("y")));
    let bytes = Bytes::from_static(b"x \xffz");
    let event = parse_one(&mut step, Event::from_raw(bytes, EventMeta::default())).unwrap();
    assert_eq!(event.get("b"), Some(&Value::from("\u{fffd}z")));
}

#[test]
fn json_objects_merge_into_the_event() {
    let mut step = step("format = \"json\"");
    let line = r#"{"ts":"2026-01-01T00:00:00.003Z","event_id":"evt-0000000001","user_id":"u7794","event":"page_view","page":"/","latency_ms":69.9,"nested":{"a":[1,null]}}"#;
    let mut event = raw(line);
    event.insert("page", "replaced");
    event.insert("kept", 1i64);
    let event = parse_one(&mut step, event).unwrap();
    assert_eq!(
        names(&event),
        [
            "page",
            "kept",
            "ts",
            "event_id",
            "user_id",
            "event",
            "latency_ms",
            "nested"
        ]
    );
    assert_eq!(event.get("page"), Some(&Value::from("/")));
    assert_eq!(event.get("latency_ms"), Some(&Value::Float(69.9)));
    assert_eq!(
        event.get_path(&["nested", "a"]),
        Some(&Value::Array(vec![Value::Int(1), Value::Null]))
    );
    assert_eq!(
        event.get("ts"),
        Some(&Value::from("2026-01-01T00:00:00.003Z")),
        "no types: strings stay"
    );
}

#[test]
fn json_fields_convert_by_type() {
    let mut step = step(
        "format = \"json\"\ntypes = { ts = \"timestamp\", n = \"int\", whole = \"int\", f = \"float\", \
             flag = \"bool\", one = \"bool\", s = \"string\", absent = \"int\", nothing = \"float\" }",
    );
    let line = r#"{"ts":"2026-01-01T01:00:00+01:00","n":"42","whole":3.0,"f":2,"flag":"TRUE","one":1,"s":12.5,"nothing":null}"#;
    let event = parse_one(&mut step, raw(line)).unwrap();
    assert_eq!(event.get("ts"), Some(&ts("2026-01-01T00:00:00Z")));
    assert_eq!(event.get("n"), Some(&Value::Int(42)));
    assert_eq!(event.get("whole"), Some(&Value::Int(3)));
    assert_eq!(event.get("f"), Some(&Value::Float(2.0)));
    assert_eq!(event.get("flag"), Some(&Value::Bool(true)));
    assert_eq!(event.get("one"), Some(&Value::Bool(true)));
    assert_eq!(event.get("s"), Some(&Value::from("12.5")));
    assert_eq!(event.get("nothing"), Some(&Value::Null));
    assert_eq!(event.get("absent"), None);

    for (line, error) in [
        (r#"{"n":1.5}"#, "field `n`: cannot convert 1.5 to int"),
        (r#"{"n":true}"#, "field `n`: cannot convert true to int"),
        (
            r#"{"f":"fast"}"#,
            "field `f`: cannot convert \"fast\" to float",
        ),
        (
            r#"{"f":"NaN"}"#,
            "field `f`: cannot convert \"NaN\" to float",
        ),
        (
            r#"{"flag":"yes"}"#,
            "field `flag`: cannot convert \"yes\" to bool",
        ),
        (r#"{"one":2}"#, "field `one`: cannot convert 2 to bool"),
        (r#"{"s":[1]}"#, "field `s`: cannot convert [1] to string"),
        (
            r#"{"ts":"01/Jan/2026"}"#,
            "field `ts`: cannot convert \"01/Jan/2026\" to timestamp (RFC 3339)",
        ),
    ] {
        let event = raw(line);
        let (kept, letters) = run(&mut step, vec![event.clone()]);
        assert!(kept.is_empty(), "{line}");
        assert_eq!(letters[0].error, error, "{line}");
        assert_eq!(letters[0].event, event);
    }
}

#[test]
fn long_values_are_cut_in_error_messages() {
    let mut step = step("format = \"json\"\ntypes = { n = \"int\" }");
    let long = "é".repeat(200);
    let error = parse_one(&mut step, raw(&format!("{{\"n\":\"{long}\"}}"))).unwrap_err();
    assert!(
        error.starts_with("field `n`: cannot convert \"éé"),
        "{error}"
    );
    assert!(error.ends_with("… to int"), "{error}");
    assert!(error.len() < 150, "{error}");
}

#[test]
fn timestamp_formats() {
    let mut step = step(
        "format = \"regex\"\npattern = '^(?P<zoned>[^|]*)\\|(?P<naive>[^|]*)\\|(?P<date>[^|]*)\\|(?P<epoch>[^|]*)$'\n\
             types = { zoned = \"timestamp|%d/%b/%Y:%H:%M:%S %z\", naive = \"timestamp|%Y-%m-%d %H:%M:%S%.f\", \
             date = \"timestamp|%Y-%m-%d\", epoch = \"timestamp|%s\" }",
    );
    let event = parse_one(
        &mut step,
        raw("01/Jan/2026:02:30:00 +0200|2026-01-01 00:30:00.5|2026-01-02|1767225600"),
    )
    .unwrap();
    assert_eq!(event.get("zoned"), Some(&ts("2026-01-01T00:30:00Z")));
    assert_eq!(
        event.get("naive"),
        Some(&ts("2026-01-01T00:30:00.5Z")),
        "no zone: UTC"
    );
    assert_eq!(
        event.get("date"),
        Some(&ts("2026-01-02T00:00:00Z")),
        "no time: midnight"
    );
    assert_eq!(event.get("epoch"), Some(&ts("2026-01-01T00:00:00Z")));
}

#[test]
fn bools_and_strings_from_captures() {
    let mut step = step(
        "format = \"regex\"\npattern = '^(?P<ok>\\S+) (?P<s>\\S+)$'\ntypes = { ok = \"bool\", s = \"string\" }",
    );
    for (text, expected) in [("true", true), ("False", false), ("1", true), ("0", false)] {
        let event = parse_one(&mut step, raw(&format!("{text} x"))).unwrap();
        assert_eq!(event.get("ok"), Some(&Value::Bool(expected)), "{text}");
    }
    assert_eq!(
        parse_one(&mut step, raw("maybe x")),
        Err("field `ok`: cannot convert \"maybe\" to bool".to_owned())
    );
}

#[test]
fn field_target_and_drop_raw() {
    let mut step = step(
        "format = \"json\"\nfield = \"envelope.payload\"\ntarget = \"parsed.inner\"\ndrop_raw = true",
    );
    let mut event = raw("the raw line");
    event.insert_path(
        &[FieldName::new("envelope"), FieldName::new("payload")],
        Value::from(r#"{"a":1,"b":"x"}"#),
    );
    event.insert_path(
        &[FieldName::new("parsed"), FieldName::new("before")],
        Value::Int(0),
    );
    let event = parse_one(&mut step, event).unwrap();
    assert_eq!(event.raw(), None, "drop_raw removes the raw line");
    assert_eq!(
        event.get_path(&["parsed", "inner", "a"]),
        Some(&Value::Int(1))
    );
    assert_eq!(
        event.get_path(&["parsed", "inner", "b"]),
        Some(&Value::from("x"))
    );
    assert_eq!(event.get_path(&["parsed", "before"]), Some(&Value::Int(0)));
    assert!(
        event.get_path(&["envelope", "payload"]).is_some(),
        "the source field stays"
    );
    assert_eq!(event.get("a"), None);

    let mut no_field = raw("x");
    no_field.insert("envelope", 1i64);
    assert_eq!(
        parse_one(&mut step, no_field),
        Err("no field `envelope.payload` to parse".to_owned())
    );
    let mut not_string = Event::default();
    not_string.insert_path(
        &[FieldName::new("envelope"), FieldName::new("payload")],
        Value::Int(5),
    );
    assert_eq!(
        parse_one(&mut step, not_string),
        Err("field `envelope.payload` is an int, not a string".to_owned())
    );
}

#[test]
fn regex_on_a_field_into_a_target() {
    let mut step = step(
        "format = \"regex\"\nfield = \"msg\"\ntarget = \"http\"\npattern = '^(?P<method>\\S+) (?P<status>\\d+)$'\n\
             types = { status = \"int\" }",
    );
    let mut event = Event::default();
    event.insert("msg", "GET 404");
    event.insert("http", "a scalar is replaced");
    let event = parse_one(&mut step, event).unwrap();
    assert_eq!(
        event.get_path(&["http", "method"]),
        Some(&Value::from("GET"))
    );
    assert_eq!(event.get_path(&["http", "status"]), Some(&Value::Int(404)));
    assert!(event.raw().is_none());

    let mut event = Event::default();
    event.insert("msg", "nope");
    assert_eq!(
        parse_one(&mut step, event),
        Err("field `msg` does not match the pattern".to_owned())
    );
    // Merging into an existing map keeps its other keys.
    let mut event = Event::default();
    event.insert("msg", "PUT 201");
    event.insert_path(
        &[FieldName::new("http"), FieldName::new("host")],
        Value::from("h"),
    );
    let event = parse_one(&mut step, event).unwrap();
    assert_eq!(event.get_path(&["http", "host"]), Some(&Value::from("h")));
    assert_eq!(event.get_path(&["http", "status"]), Some(&Value::Int(201)));
}

#[test]
fn regex_fields_replace_existing_ones() {
    let mut step = step("format = \"regex\"\npattern = '^(?P<a>\\S+)$'");
    let mut event = raw("new");
    event.insert("b", 1i64);
    event.insert("a", "old");
    let event = parse_one(&mut step, event).unwrap();
    assert_eq!(event.fields().len(), 2);
    assert_eq!(event.get("a"), Some(&Value::from("new")));
}

#[test]
fn build_errors_name_the_key() {
    let cases: [(&str, &str, &str); 10] = [
        (
            "format = \"regex\"",
            "pattern",
            "format = \"regex\" needs a `pattern`",
        ),
        (
            "format = \"json\"\npattern = 'x'",
            "pattern",
            "`pattern` is only used with format = \"regex\"",
        ),
        (
            "format = \"regex\"\npattern = '^\\S+ \\d+$'",
            "pattern",
            "the pattern has no named groups such as `(?P<status>\\d+)`, so it would add no fields",
        ),
        (
            "format = \"regex\"\npattern = '(?P<a>x)'\ntypes = { a = \"integer\" }",
            "types.a",
            "unknown type `integer`; expected string, int, float, bool, timestamp or timestamp|<format>",
        ),
        (
            "format = \"json\"\ntypes = { t = \"timestamp|\" }",
            "types.t",
            "empty timestamp format after `timestamp|`",
        ),
        (
            "format = \"regex\"\npattern = '(?P<a>x)'\ntypes = { b = \"int\" }",
            "types.b",
            "the pattern has no group named `b`",
        ),
        (
            "format = \"json\"\ntarget = \"a..b\"",
            "target",
            "`a..b` is not a field path: expected names separated by single dots",
        ),
        (
            "format = \"json\"\nfield = \"\"",
            "field",
            "`` is not a field path: expected names separated by single dots",
        ),
        (
            "format = \"json\"\ntypes = { t = \"time\" }",
            "types.t",
            "unknown type `time`; expected string, int, float, bool, timestamp or timestamp|<format>",
        ),
        (
            "format = \"json\"\ntypes = { t = \"stamp|%Y\" }",
            "types.t",
            "unknown type `stamp|%Y`; expected string, int, float, bool, timestamp or timestamp|<format>",
        ),
    ];
    for (toml_text, key, message) in cases {
        let error = build_error(toml_text);
        assert_eq!(error.key.as_deref(), Some(key), "{toml_text}");
        assert_eq!(error.message, message, "{toml_text}");
    }

    let error = build_error("format = \"json\"\ntypes = { t = \"timestamp|%Y-%Q\" }");
    assert_eq!(error.key.as_deref(), Some("types.t"));
    assert!(
        error
            .message
            .starts_with("invalid timestamp format `%Y-%Q`: "),
        "{}",
        error.message
    );

    let error = build_error("format = \"regex\"\npattern = '(?P<a>x'");
    assert_eq!(error.key.as_deref(), Some("pattern"));
    assert!(
        error
            .message
            .starts_with("invalid regex: regex parse error:"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("unclosed group"),
        "{}",
        error.message
    );
}

#[test]
fn config_rejects_unknown_keys_and_formats() {
    let error = toml::from_str::<ParseConfig>("format = \"json\"\npatern = 'x'").unwrap_err();
    assert!(
        error.message().contains("unknown field `patern`"),
        "{error}"
    );
    let error = toml::from_str::<ParseConfig>("format = \"xml\"").unwrap_err();
    assert!(error.message().contains("unknown variant `xml`"), "{error}");
    assert!(
        toml::from_str::<ParseConfig>("pattern = 'x'").is_err(),
        "format is required"
    );
}

proptest! {
    #[test]
    fn regex_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), line in 0..LINES.len(), cut in 0usize..400) {
        let mut step = step(&nginx_config());
        // Arbitrary bytes, and real lines damaged at a random place.
        let mut damaged = LINES[line].as_bytes().to_vec();
        let at = cut.min(damaged.len());
        damaged.splice(at..at, bytes.iter().copied());
        let events: Vec<Event> = [bytes, damaged]
            .into_iter()
            .map(|b| Event::from_raw(Bytes::from(b), EventMeta::default()))
            .collect();
        let (kept, letters) = run(&mut step, events);
        prop_assert_eq!(kept.len() + letters.len(), 2);
    }

    #[test]
    fn json_parsing_never_panics(text in "[{}\\[\\]\",:a-c0-9.eE+\\- ]{0,40}|.{0,40}") {
        let mut step = step(
            "format = \"json\"\ntypes = { a = \"int\", b = \"timestamp|%d/%b/%Y\", c = \"bool\" }",
        );
        let (kept, letters) = run(&mut step, vec![raw(&text)]);
        prop_assert_eq!(kept.len() + letters.len(), 1);
    }

    #[test]
    fn typed_regex_captures_never_panic(text in ".{0,30}") {
        let mut step = step(
            "format = \"regex\"\npattern = '^(?P<a>[^|]*)\\|?(?P<b>[^|]*)\\|?(?P<c>.*)$'\n\
             types = { a = \"int\", b = \"float\", c = \"timestamp|%Y-%m-%d %H:%M\" }",
        );
        let (kept, letters) = run(&mut step, vec![raw(&text)]);
        prop_assert_eq!(kept.len() + letters.len(), 1);
    }
}

// ---- presets -------------------------------------------------------------------------------

/// The presets' grammar as regexes (see `access`): the reference the byte parsers must agree
/// with, field by field. Quoted fields and request tokens allow backslash escapes.
fn preset_regex(preset: Preset) -> String {
    const TOKEN: &str = r#"(?:[^ "\\]|\\.)+"#;
    const QUOTED: &str = r#"(?:[^"\\]|\\.)*"#;
    let mut pattern = format!(
        r#"(?s)^(?P<ip>[^ ]+) [^ ]+ (?P<user>[^ ]+) \[(?P<timestamp>[^\]]+)\] "(?P<method>{TOKEN}) (?P<path>{TOKEN}) (?P<protocol>(?:[^"\\]|\\.)+)" (?P<status>[0-9]+) (?P<bytes>[0-9]+|-)"#
    );
    if preset != Preset::ApacheCommon {
        pattern.push_str(&format!(
            r#" "(?P<referer>{QUOTED})" "(?P<agent>{QUOTED})""#
        ));
    }
    if preset == Preset::NginxCombinedTimed {
        pattern.push_str(" (?P<request_time>[^ ]+) (?P<request_id>[^ ]+)");
    }
    pattern.push('$');
    pattern
}

fn regex_step_for(preset: Preset) -> Parse {
    let mut types = String::from(
        "status = \"int\", bytes = \"int\", timestamp = \"timestamp|%d/%b/%Y:%H:%M:%S %z\"",
    );
    if preset == Preset::NginxCombinedTimed {
        types.push_str(", request_time = \"float\"");
    }
    step(&format!(
        "format = \"regex\"\npattern = '{}'\ntypes = {{ {types} }}",
        preset_regex(preset)
    ))
}

fn preset_step(preset: Preset) -> Parse {
    step(&format!("format = \"{}\"", preset.name()))
}

const PRESETS: [Preset; 4] = [
    Preset::NginxCombined,
    Preset::NginxCombinedTimed,
    Preset::ApacheCommon,
    Preset::ApacheCombined,
];

/// A timed line cut down to what `preset` reads.
fn cut_to(preset: Preset, timed_line: &str) -> String {
    match preset {
        Preset::NginxCombinedTimed => timed_line.to_owned(),
        Preset::NginxCombined | Preset::ApacheCombined => {
            let end = timed_line.rfind("\" ").unwrap() + 1;
            timed_line[..end].to_owned()
        }
        Preset::ApacheCommon => {
            let referer = timed_line.find("\" \"").unwrap();
            // Back to the space after `bytes`: the referer's opening quote is 2 bytes after it.
            let bytes_end = timed_line[..referer].rfind(" \"").unwrap();
            timed_line[..bytes_end].to_owned()
        }
    }
}

/// Parses `line` with both parsers: both must accept with equal fields, or both reject.
fn agree(
    preset: Preset,
    preset_step: &mut Parse,
    regex_step: &mut Parse,
    line: &str,
) -> Result<Option<Event>, String> {
    let by_preset = parse_one(preset_step, raw(line));
    let by_regex = parse_one(regex_step, raw(line));
    match (by_preset, by_regex) {
        (Ok(a), Ok(b)) => {
            if a.fields() != b.fields() {
                return Err(format!(
                    "{}: fields differ on {line:?}:\npreset {:?}\nregex  {:?}",
                    preset.name(),
                    a.fields(),
                    b.fields()
                ));
            }
            Ok(Some(a))
        }
        (Err(_), Err(_)) => Ok(None),
        (a, b) => Err(format!(
            "{}: disagree on {line:?}:\npreset {a:?}\nregex  {b:?}",
            preset.name()
        )),
    }
}

#[test]
fn presets_agree_with_the_regex_on_generated_lines() {
    let lines = crate::test_engine::sample::nginx_lines(11, 4000);
    for preset in PRESETS {
        let (mut fast, mut reference) = (preset_step(preset), regex_step_for(preset));
        for line in &lines {
            let line = cut_to(preset, line);
            let parsed = agree(preset, &mut fast, &mut reference, &line).unwrap();
            assert!(parsed.is_some(), "{}: {line}", preset.name());
        }
    }
    // And the timed preset against the plain regex of the S2 benchmark (`\S`, no escapes).
    let mut fast = preset_step(Preset::NginxCombinedTimed);
    let mut plain = step(&nginx_config());
    for line in &lines {
        let a = parse_one(&mut fast, raw(line)).unwrap();
        let b = parse_one(&mut plain, raw(line)).unwrap();
        assert_eq!(a.fields(), b.fields(), "{line}");
    }
}

#[test]
fn preset_fields_are_typed_slices_of_the_line() {
    let mut step = preset_step(Preset::NginxCombinedTimed);
    let event = parse_one(&mut step, raw(LINES[0])).unwrap();
    assert_eq!(names(&event), Preset::NginxCombinedTimed.field_names());
    assert_eq!(event.get("timestamp"), Some(&ts("2026-01-01T00:00:00Z")));
    assert_eq!(event.get("status"), Some(&Value::Int(200)));
    assert_eq!(event.get("bytes"), Some(&Value::Int(67686)));
    assert_eq!(event.get("request_time"), Some(&Value::Float(0.051)));
    let line = event.raw().unwrap().as_ptr_range();
    for name in [
        "ip",
        "user",
        "method",
        "path",
        "protocol",
        "referer",
        "agent",
        "request_id",
    ] {
        let Some(Value::String(text)) = event.get(name) else {
            panic!("{name} should be a string");
        };
        assert!(
            line.contains(&text.as_bytes().as_ptr()),
            "`{name}` must not be a copy"
        );
    }
}

#[test]
fn preset_edge_cases() {
    let mut combined = preset_step(Preset::ApacheCombined);
    // Escaped quotes stay as written; IPv6; `-` for user, bytes and referer.
    let line = r#"2001:db8::7 - - [10/Oct/2000:13:55:36 -0700] "GET /a\"b HTTP/1.0" 200 - "-" "Mozilla \"quoted\" \\ agent""#;
    let event = parse_one(&mut combined, raw(line)).unwrap();
    assert_eq!(string(event.get("ip")), "2001:db8::7");
    assert_eq!(string(event.get("user")), "-");
    assert_eq!(event.get("timestamp"), Some(&ts("2000-10-10T20:55:36Z")));
    assert_eq!(string(event.get("path")), r#"/a\"b"#);
    assert_eq!(event.get("bytes"), Some(&Value::Null), "`-` bytes are null");
    assert_eq!(string(event.get("referer")), "-");
    assert_eq!(string(event.get("agent")), r#"Mozilla \"quoted\" \\ agent"#);
    // Protocols may hold spaces; the trailing newline is not part of the line.
    let event = parse_one(
        &mut combined,
        raw("::1 - bob [01/Jan/2026:00:00:00 +0000] \"PRI * HTTP/2.0 x\" 400 0 \"\" \"\"\r\n"),
    )
    .unwrap();
    assert_eq!(string(event.get("protocol")), "HTTP/2.0 x");
    assert_eq!(string(event.get("agent")), "");

    let mut timed = preset_step(Preset::NginxCombinedTimed);
    let dash_time = LINES[0].replace("0.051", "-");
    assert_eq!(
        parse_one(&mut timed, raw(&dash_time))
            .unwrap()
            .get("request_time"),
        Some(&Value::Null)
    );

    let base = LINES[0];
    let cases: Vec<(String, &str)> = vec![
        (
            String::new(),
            "nginx_combined_timed: expected the client address, found the end of the line",
        ),
        (
            "1.2.3.4".to_owned(),
            "nginx_combined_timed: expected a space after the client address, found the end of the line",
        ),
        (
            base.replace("[01/Jan/2026:00:00:00 +0000]", "01/Jan/2026:00:00:00"),
            "nginx_combined_timed: expected `[` before the time at column 23",
        ),
        (
            base.replace("01/Jan/2026", "01/Foo/2026"),
            "nginx_combined_timed: the time `01/Foo/2026:00:00:00 +0000` is not like 01/Jan/2026:00:00:00 +0000",
        ),
        (
            base.replace("\"GET /favicon.ico HTTP/1.1\"", "\"-\""),
            "nginx_combined_timed: the request at column 52 is not `method path protocol`",
        ),
        (
            base.replace("\"GET /favicon.ico HTTP/1.1\"", "\"GET /favicon.ico\""),
            "nginx_combined_timed: the request at column 52 is not `method path protocol`",
        ),
        (
            base.replace(" 200 ", " 2x0 "),
            "nginx_combined_timed: the status `2x0` at column 80 is not a whole number",
        ),
        (
            base.replace(" 67686 ", " - - "),
            "nginx_combined_timed: expected the quoted referer at column 86",
        ),
        (
            base.replace(" 0.051 req-0000000011", ""),
            "nginx_combined_timed: expected a space after the quoted user agent, found the end of the line",
        ),
        (
            base.replace(" req-0000000011", " req-1 extra"),
            "nginx_combined_timed: unexpected text after the request id at column 196",
        ),
        (
            base.replace("0.051", "fast"),
            "nginx_combined_timed: the request time at column 185 is not a number",
        ),
        (
            base.replace("Firefox/125.0\"", "Firefox/125.0"),
            "nginx_combined_timed: the quoted user agent at column 112 has no closing quote",
        ),
    ];
    for (line, error) in cases {
        assert_eq!(
            parse_one(&mut timed, raw(&line)),
            Err(error.to_owned()),
            "{line}"
        );
    }
    let mut plain = preset_step(Preset::NginxCombined);
    assert_eq!(
        parse_one(&mut plain, raw(LINES[0])),
        Err("nginx_combined: unexpected text after the quoted user agent at column 184".to_owned()),
        "extra fields are not silently ignored"
    );
    let mut common = preset_step(Preset::ApacheCommon);
    let event = parse_one(&mut common, raw(r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#)).unwrap();
    assert_eq!(names(&event), Preset::ApacheCommon.field_names());
    assert_eq!(string(event.get("user")), "frank");
    assert_eq!(event.get("bytes"), Some(&Value::Int(2326)));
}

#[test]
fn presets_with_types_target_and_event_time() {
    let mut step = step(
        "format = \"nginx_combined_timed\"\ntypes = { status = \"string\" }\ntarget = \"http\"\ndrop_raw = true",
    );
    let event = parse_one(&mut step, raw(LINES[0])).unwrap();
    assert_eq!(
        event.get_path(&["http", "status"]),
        Some(&Value::from("200"))
    );
    assert!(event.raw().is_none());
}

#[test]
fn event_time_moves_to_timestamp() {
    let mut parser = step(
        "format = \"logfmt\"\ntimestamp_field = \"ts\"\ntimestamp_format = \"%Y-%m-%d %H:%M:%S %Z\"",
    );
    let event = parse_one(&mut parser, raw("a=1 ts=\"2026-01-01 10:00:00 UTC\" b=2")).unwrap();
    assert_eq!(names(&event), ["a", "b", "timestamp"]);
    assert_eq!(event.get("timestamp"), Some(&ts("2026-01-01T10:00:00Z")));
    assert_eq!(
        parse_one(&mut parser, raw("a=1")),
        Err("no field `ts` for the event time".to_owned())
    );
    assert_eq!(
        parse_one(&mut parser, raw("ts=yesterday")),
        Err("field `ts`: cannot convert \"yesterday\" to timestamp with format `%Y-%m-%d %H:%M:%S %Z`".to_owned())
    );

    // Local times of a named zone, daylight saving applied.
    let mut parser = step(
        "format = \"logfmt\"\ntimestamp_field = \"ts\"\ntimestamp_format = \"%Y-%m-%d %H:%M:%S|Europe/Paris\"",
    );
    let event = parse_one(&mut parser, raw("ts=\"2026-07-01 10:00:00\"")).unwrap();
    assert_eq!(event.get("timestamp"), Some(&ts("2026-07-01T08:00:00Z")));
    assert_eq!(
        parse_one(&mut parser, raw("ts=\"2026-03-29 02:30:00\"")),
        Err("field `ts`: cannot convert \"2026-03-29 02:30:00\" to timestamp with format `%Y-%m-%d %H:%M:%S` in Europe/Paris".to_owned())
    );

    // JSON epoch numbers, nested, into a target: the event time is still top-level.
    let mut parser = step(
        "format = \"json\"\ntimestamp_field = \"meta.t\"\ntimestamp_format = \"unix_ms\"\ntarget = \"doc\"",
    );
    let event = parse_one(&mut parser, raw(r#"{"meta":{"t":1767225600500,"k":1}}"#)).unwrap();
    assert_eq!(event.get("timestamp"), Some(&ts("2026-01-01T00:00:00.5Z")));
    assert_eq!(event.get_path(&["doc", "meta", "k"]), Some(&Value::Int(1)));
    assert_eq!(
        event.get_path(&["doc", "meta", "t"]),
        None,
        "moved, not copied"
    );
    assert_eq!(
        parse_one(&mut parser, raw(r#"{"meta":{"t":null}}"#)),
        Err("field `meta.t` for the event time is null".to_owned())
    );

    // Already called `timestamp`: converted where it is, order kept.
    let mut parser = step("format = \"json\"\ntimestamp_field = \"timestamp\"");
    let event = parse_one(
        &mut parser,
        raw(r#"{"timestamp":"2026-01-01T01:00:00+01:00","x":1}"#),
    )
    .unwrap();
    assert_eq!(names(&event), ["timestamp", "x"]);
    assert_eq!(event.get("timestamp"), Some(&ts("2026-01-01T00:00:00Z")));
}

#[test]
fn csv_and_logfmt_through_the_step() {
    let mut parser = step(
        "format = \"csv\"\ncolumns = [\"ts\", \"user\", \"amount\"]\ndelimiter = \";\"\ntypes = { amount = \"float\" }\ntimestamp_field = \"ts\"\ntimestamp_format = \"unix\"",
    );
    let event = parse_one(&mut parser, raw("1767225600;\"bob; jr\";12.5")).unwrap();
    assert_eq!(names(&event), ["user", "amount", "timestamp"]);
    assert_eq!(string(event.get("user")), "bob; jr");
    assert_eq!(event.get("amount"), Some(&Value::Float(12.5)));
    assert_eq!(event.get("amount"), Some(&Value::Float(12.5)));
    let event = parse_one(&mut parser, raw("1767225600;bob;")).unwrap();
    assert_eq!(
        event.get("amount"),
        Some(&Value::Null),
        "empty numbers are null"
    );
    assert_eq!(
        parse_one(&mut parser, raw("1;2")),
        Err("csv: expected 3 fields, found 2".to_owned())
    );

    let mut parser = step("format = \"logfmt\"\ntypes = { status = \"int\", ok = \"bool\" }");
    let event = parse_one(&mut parser, raw("status=404 ok path=/x")).unwrap();
    assert_eq!(event.get("status"), Some(&Value::Int(404)));
    assert_eq!(event.get("ok"), Some(&Value::Bool(true)));
}

#[test]
fn format_specific_keys_are_checked() {
    let cases: [(&str, &str, &str); 6] = [
        (
            "format = \"json\"\ncolumns = [\"a\"]",
            "columns",
            "`columns` is only used with format = \"csv\"",
        ),
        (
            "format = \"logfmt\"\ndelimiter = \";\"",
            "delimiter",
            "`delimiter` is only used with format = \"csv\"",
        ),
        (
            "format = \"nginx_combined\"\npattern = 'x'",
            "pattern",
            "`pattern` is only used with format = \"regex\"",
        ),
        (
            "format = \"csv\"",
            "columns",
            "format = \"csv\" needs `columns`, the field names of the columns in order",
        ),
        (
            "format = \"csv\"\ncolumns = [\"a\"]\ntypes = { b = \"int\" }",
            "types.b",
            "`columns` has no column named `b`",
        ),
        (
            "format = \"json\"\ntimestamp_format = \"unix\"",
            "timestamp_format",
            "`timestamp_format` needs `timestamp_field` (the field it reads)",
        ),
    ];
    for (toml_text, key, message) in cases {
        let error = build_error(toml_text);
        assert_eq!(error.key.as_deref(), Some(key), "{toml_text}");
        assert_eq!(error.message, message, "{toml_text}");
    }
    let error =
        build_error("format = \"json\"\ntimestamp_field = \"ts\"\ntimestamp_format = \"%Q\"");
    assert_eq!(error.key.as_deref(), Some("timestamp_format"));
}

/// Text escaped as Apache writes it inside quotes: `\` and `"` get a backslash.
fn escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

prop_compose! {
    fn arb_time()(secs in 0i64..4_102_444_800, offset_minutes in -900i32..900) -> String {
        let offset = chrono::FixedOffset::east_opt(offset_minutes * 60).unwrap();
        DateTime::from_timestamp(secs, 0).unwrap().with_timezone(&offset).format("%d/%b/%Y:%H:%M:%S %z").to_string()
    }
}

fn arb_token() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._:-]{1,12}",
        Just("-".to_owned()),
        prop::sample::select(vec![
            "::1",
            "2001:db8::ff00:42:8329",
            "fe80::1%eth0",
            "[::1]"
        ])
        .prop_map(str::to_owned),
        "[!-~é]{1,10}",
    ]
}

prop_compose! {
    fn arb_access_line()(
        ip in arb_token(), ident in arb_token(), user in arb_token(), time in arb_time(),
        method in prop_oneof!["[A-Z]{1,7}", "[!-~]{1,4}"],
        path in "[!-~é]{1,16}", protocol in prop_oneof![Just("HTTP/1.1".to_owned()), "[ -~]{1,12}"],
        status in "[0-9]{1,4}", bytes in prop_oneof![Just("-".to_owned()), "[0-9]{1,6}"],
        referer in "[ -~é]{0,20}", agent in "[ -~é\t]{0,40}",
        request_time in prop_oneof!["[0-9]{1,2}\\.[0-9]{3}", Just("-".to_owned()), "[!-~]{1,5}"],
        request_id in "[!-~]{1,12}",
    ) -> String {
        format!(
            "{ip} {ident} {user} [{time}] \"{} {} {}\" {status} {bytes} \"{}\" \"{}\" {request_time} {request_id}",
            escaped(&method), escaped(&path), escaped(&protocol), escaped(&referer), escaped(&agent)
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn presets_agree_with_the_regex_on_random_fields(line in arb_access_line(), damage in prop::option::of((0usize..300, "[ \"\\\\\\[\\]a0-]{0,3}"))) {
        let mut line = line;
        if let Some((at, insert)) = damage {
            let mut at = at.min(line.len());
            while !line.is_char_boundary(at) {
                at -= 1;
            }
            line.insert_str(at, &insert);
        }
        for preset in PRESETS {
            let cut = cut_to_or_whole(preset, &line);
            let (mut fast, mut reference) = (preset_step(preset), regex_step_for(preset));
            agree(preset, &mut fast, &mut reference, &cut).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn presets_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), line in 0..LINES.len(), cut in 0usize..400) {
        let mut damaged = LINES[line].as_bytes().to_vec();
        let at = cut.min(damaged.len());
        damaged.splice(at..at, bytes.iter().copied());
        for preset in PRESETS {
            let mut step = preset_step(preset);
            let events: Vec<Event> = [bytes.clone(), damaged.clone()]
                .into_iter()
                .map(|b| Event::from_raw(Bytes::from(b), EventMeta::default()))
                .collect();
            let (kept, letters) = run(&mut step, events);
            prop_assert_eq!(kept.len() + letters.len(), 2);
        }
    }

    #[test]
    fn text_formats_never_panic(bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'"'), Just(b','), Just(b'='), Just(b' '), Just(b'\\')], 0..120)) {
        for config in [
            "format = \"logfmt\"\ntypes = { a = \"int\", b = \"timestamp|unix\" }\ntimestamp_field = \"t\"",
            "format = \"csv\"\ncolumns = [\"a\", \"b\", \"\"]\ntypes = { a = \"float\" }",
            "format = \"csv\"\ncolumns = [\"a\"]\ndelimiter = \" \"",
        ] {
            let mut step = step(config);
            let (kept, letters) = run(&mut step, vec![Event::from_raw(Bytes::from(bytes.clone()), EventMeta::default())]);
            prop_assert_eq!(kept.len() + letters.len(), 1);
        }
    }
}

/// [`cut_to`] for lines that may be damaged: the whole line when the markers are gone.
fn cut_to_or_whole(preset: Preset, line: &str) -> String {
    std::panic::catch_unwind(|| cut_to(preset, line)).unwrap_or_else(|_| line.to_owned())
}
