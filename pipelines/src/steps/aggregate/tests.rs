//! Tests of the `aggregate` step: windows, time, lateness, bounds, and property tests of every
//! window kind against a brute-force computation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::step::{DeadLetter, OnError};

const SECOND: i64 = 1_000_000_000;

fn aggregate(toml_text: &str) -> Aggregate {
    let config: AggregateConfig = match toml::from_str(toml_text) {
        Ok(config) => config,
        Err(error) => panic!("bad config: {error}"),
    };
    match config.build() {
        Ok(step) => step,
        Err(error) => panic!("should build: {error:?}"),
    }
}

fn build_error(toml_text: &str) -> BuildError {
    toml::from_str::<AggregateConfig>(toml_text)
        .unwrap()
        .build()
        .unwrap_err()
}

fn at(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

fn event(path: &str, secs: i64, value: i64) -> Event {
    let mut event = Event::default();
    event.insert("timestamp", at(secs * SECOND));
    event.insert("path", path);
    event.insert("value", value);
    event
}

/// Runs batches through the step, then flushes: (outputs after each batch, flushed, dead letters).
fn run(
    step: &mut Aggregate,
    batches: Vec<Vec<Event>>,
) -> (Vec<Vec<Event>>, Vec<Event>, Vec<DeadLetter>) {
    let mut ctx = StepContext::new(OnError::DeadLetter);
    let mut per_batch = Vec::new();
    for mut batch in batches {
        step.process(&mut batch, &mut ctx);
        per_batch.push(batch);
    }
    let mut flushed = Vec::new();
    step.flush(&mut flushed, &mut ctx);
    (per_batch, flushed, ctx.take_dead_letters())
}

fn all_outputs(step: &mut Aggregate, batches: Vec<Vec<Event>>) -> (Vec<Event>, Vec<DeadLetter>) {
    let (per_batch, flushed, letters) = run(step, batches);
    (
        per_batch.into_iter().flatten().chain(flushed).collect(),
        letters,
    )
}

fn secs(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Timestamp(ts)) => ts.timestamp(),
        other => panic!("not a timestamp: {other:?}"),
    }
}

fn int(value: Option<&Value>) -> i64 {
    value
        .and_then(Value::as_int)
        .unwrap_or_else(|| panic!("not an int: {value:?}"))
}

#[test]
fn tumbling_windows_close_on_the_watermark() {
    let mut step = aggregate(
        "group_by = [\"path\"]\nwindow = \"1m\"\nfields = { hits = \"count()\", total = \"sum(value)\" }",
    );
    let (per_batch, flushed, letters) = run(
        &mut step,
        vec![
            vec![event("/a", 0, 1), event("/b", 10, 2), event("/a", 59, 3)],
            vec![event("/a", 60, 4)],
            vec![event("/a", 130, 5)],
        ],
    );
    assert!(letters.is_empty());
    assert!(per_batch[0].is_empty(), "the first minute is still open");
    let first: Vec<(i64, i64, &str, i64, i64)> = per_batch[1]
        .iter()
        .map(|e| {
            (
                secs(e.get("window_start")),
                secs(e.get("window_end")),
                e.get("path").and_then(Value::as_str).unwrap(),
                int(e.get("hits")),
                int(e.get("total")),
            )
        })
        .collect();
    assert_eq!(
        first,
        [(0, 60, "/a", 2, 4), (0, 60, "/b", 1, 2)],
        "groups in order of appearance"
    );
    assert_eq!(
        per_batch[2].len(),
        1,
        "the second minute closes when 130s arrives"
    );
    assert_eq!(int(per_batch[2][0].get("total")), 4);
    assert_eq!(flushed.len(), 1, "flush emits the open window");
    assert_eq!(secs(flushed[0].get("window_start")), 120);
    let names: Vec<&str> = flushed[0]
        .fields()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        ["window_start", "window_end", "path", "hits", "total"]
    );
}

#[test]
fn late_events_are_rejected_with_the_reason() {
    let mut step =
        aggregate("window = \"1m\"\nallowed_lateness = \"30s\"\nfields = { hits = \"count()\" }");
    let (outputs, letters) = all_outputs(
        &mut step,
        vec![vec![
            event("/", 100, 0),
            event("/", 65, 0),
            event("/", 59, 0),
            event("/", 90, 0),
            event("/", 29, 0),
        ]],
    );
    // Watermark 70s: the minute [0, 60) closed, [60, 120) is open.
    assert_eq!(letters.len(), 2);
    assert!(
        letters[0].error.starts_with(
            "late event: its time 1970-01-01T00:00:59Z is behind the watermark 1970-01-01T00:01:10Z"
        ),
        "{}",
        letters[0].error
    );
    assert_eq!(secs(letters[1].event.get("timestamp")), 29);
    let counts: Vec<(i64, i64)> = outputs
        .iter()
        .map(|e| (secs(e.get("window_start")), int(e.get("hits"))))
        .collect();
    assert_eq!(counts, [(60, 3)]);
}

#[test]
fn events_without_a_usable_time_are_rejected() {
    let mut step =
        aggregate("window = \"1m\"\ntime_field = \"ts\"\nfields = { hits = \"count()\" }");
    let mut string_time = Event::default();
    string_time.insert("ts", "2026-01-01T00:00:30.5+01:00");
    let mut bad = Event::default();
    bad.insert("ts", "yesterday");
    let mut number = Event::default();
    number.insert("ts", 5i64);
    let (outputs, letters) = all_outputs(
        &mut step,
        vec![vec![string_time, bad, number, Event::default()]],
    );
    assert_eq!(outputs.len(), 1);
    assert_eq!(secs(outputs[0].get("window_start")), 1_767_222_000);
    let errors: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    assert_eq!(
        errors,
        [
            "field `ts` is not an RFC 3339 time: \"yesterday\"",
            "field `ts` for the event time is int, not a timestamp",
            "no field `ts` for the event time",
        ]
    );
}

#[test]
fn hopping_windows_count_each_event_in_every_window() {
    let mut step = aggregate(
        "window = { type = \"hopping\", size = \"3m\", hop = \"1m\" }\nfields = { hits = \"count()\" }",
    );
    let (outputs, _) = all_outputs(
        &mut step,
        vec![vec![event("/", 150, 0), event("/", 200, 0)]],
    );
    let counts: Vec<(i64, i64)> = outputs
        .iter()
        .map(|e| (secs(e.get("window_start")), int(e.get("hits"))))
        .collect();
    assert_eq!(counts, [(0, 1), (60, 2), (120, 2), (180, 1)]);
}

#[test]
fn sessions_merge_and_close() {
    let mut step = aggregate(
        "group_by = [\"path\"]\nwindow = { type = \"session\", gap = \"10s\" }\nallowed_lateness = \"30s\"\n\
         fields = { n = \"count()\", first = \"first(value)\", last = \"last(value)\" }",
    );
    let (outputs, letters) = all_outputs(
        &mut step,
        vec![
            vec![event("/a", 0, 1), event("/a", 25, 2), event("/b", 5, 3)],
            // 12 joins neither (0+10 < 12 - no: 12 - 0 > 10), 15 bridges 12 and 25 → [12, 25].
            vec![event("/a", 12, 4), event("/a", 15, 5)],
            vec![event("/a", 100, 6)],
        ],
    );
    assert!(letters.is_empty());
    let sessions: BTreeSet<(i64, i64, String, i64, i64, i64)> = outputs
        .iter()
        .map(|e| {
            (
                secs(e.get("window_start")),
                secs(e.get("window_end")),
                e.get("path").and_then(Value::as_str).unwrap().to_owned(),
                int(e.get("n")),
                int(e.get("first")),
                int(e.get("last")),
            )
        })
        .collect();
    let expected: BTreeSet<(i64, i64, String, i64, i64, i64)> = [
        (0, 10, "/a".to_owned(), 1, 1, 1),
        (5, 15, "/b".to_owned(), 1, 3, 3),
        (12, 35, "/a".to_owned(), 3, 4, 2),
        (100, 110, "/a".to_owned(), 1, 6, 6),
    ]
    .into_iter()
    .collect();
    assert_eq!(sessions, expected);
}

#[test]
fn processing_time_closes_on_tick() {
    let now = Arc::new(Mutex::new(at(1_000 * SECOND)));
    let clock = {
        let now = now.clone();
        Box::new(move || *now.lock().unwrap())
    };
    let mut step = aggregate("window = \"10s\"\ntime = \"processing\"\ngroup_by = [\"path\"]\nfields = { n = \"count()\" }")
        .with_clock(clock);
    let mut ctx = StepContext::new(OnError::DeadLetter);
    let mut batch = vec![event("/a", 0, 0), event("/a", 99_999, 0)];
    step.process(&mut batch, &mut ctx);
    assert!(batch.is_empty());
    let mut out = Vec::new();
    step.tick(at(1_009 * SECOND), &mut out, &mut ctx);
    assert!(out.is_empty());
    step.tick(at(1_010 * SECOND), &mut out, &mut ctx);
    assert_eq!(out.len(), 1);
    assert_eq!(int(out[0].get("n")), 2, "event times do not matter");
    assert_eq!(secs(out[0].get("window_start")), 1_000);
    *now.lock().unwrap() = at(1_020 * SECOND);
    let mut batch = vec![event("/b", 0, 0)];
    step.process(&mut batch, &mut ctx);
    let mut out = Vec::new();
    step.flush(&mut out, &mut ctx);
    assert_eq!(out.len(), 1);
    assert!(ctx.take_dead_letters().is_empty());
}

#[test]
fn max_groups_bounds_each_window() {
    let mut step = aggregate(
        "group_by = [\"path\"]\nwindow = \"1m\"\nmax_groups = 2\nfields = { n = \"count()\" }",
    );
    let (outputs, letters) = all_outputs(
        &mut step,
        vec![vec![
            event("/a", 0, 0),
            event("/b", 1, 0),
            event("/c", 2, 0),
            event("/a", 3, 0),
            event("/d", 61, 0),
        ]],
    );
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].error,
        "the window [1970-01-01T00:00:00Z, 1970-01-01T00:01:00Z) already holds max_groups = 2 groups; \
         this event would open another (raise max_groups or group by fewer fields)"
    );
    assert_eq!(letters[0].event.get("path"), Some(&Value::from("/c")));
    assert_eq!(outputs.len(), 3, "a new window has room again");

    let mut sessions = aggregate(
        "group_by = [\"path\"]\nwindow = { type = \"session\", gap = \"5s\" }\nmax_groups = 1\nfields = { n = \"count()\" }",
    );
    let (outputs, letters) = all_outputs(
        &mut sessions,
        vec![
            vec![event("/a", 0, 0), event("/b", 1, 0)],
            vec![event("/b", 30, 0), event("/c", 40, 0)],
        ],
    );
    // The /a session [0s, 5s) is open until an event moves the watermark past 5s: /b at 30s
    // does, but only once it is counted, so it meets a full table too.
    assert_eq!(letters.len(), 2, "{letters:?}");
    let paths: Vec<&str> = outputs
        .iter()
        .map(|e| e.get("path").and_then(Value::as_str).unwrap())
        .collect();
    assert_eq!(paths, ["/a", "/c"]);
}

#[test]
fn group_keys_nested_missing_and_typed() {
    let mut step = aggregate(
        "group_by = [\"user.country\", \"status\"]\nwindow = \"1m\"\nfields = { n = \"count()\", \"stats.kb\" = \"sum(bytes / 1024)\", top = \"top_k(path, 2)\", p = \"p50(value)\", d = \"count_distinct(path)\" }",
    );
    let make = |country: Option<&str>, status: Value, path: &str| {
        let mut event = event(path, 1, 4);
        if let Some(country) = country {
            event.insert_path(
                &[FieldName::new("user"), FieldName::new("country")],
                Value::from(country),
            );
        }
        event.insert("status", status);
        event.insert("bytes", 2048i64);
        event
    };
    let (outputs, letters) = all_outputs(
        &mut step,
        vec![vec![
            make(Some("DE"), Value::Int(200), "/x"),
            make(Some("DE"), Value::Int(200), "/y"),
            make(Some("DE"), Value::Int(200), "/x"),
            make(Some("DE"), Value::Float(200.0), "/x"),
            make(None, Value::Int(200), "/x"),
            make(None, Value::Null, "/x"),
        ]],
    );
    assert!(letters.is_empty());
    assert_eq!(outputs.len(), 4, "200 and 200.0 differ; missing is null");
    let first = &outputs[0];
    assert_eq!(
        first.get_path(&["user", "country"]),
        Some(&Value::from("DE"))
    );
    assert_eq!(int(first.get("n")), 3);
    assert_eq!(first.get_path(&["stats", "kb"]), Some(&Value::Float(6.0)));
    assert_eq!(first.get("p"), Some(&Value::Float(4.0)));
    assert_eq!(int(first.get("d")), 2);
    let top = crate::test_engine::canonical_json(&Event::from_fields(
        [("top", first.get("top").cloned().unwrap())]
            .into_iter()
            .collect(),
    ));
    assert_eq!(
        top,
        r#"{"top":[{"count":2,"value":"/x"},{"count":1,"value":"/y"}]}"#
    );
    assert_eq!(
        outputs[2].get_path(&["user", "country"]),
        Some(&Value::Null)
    );
}

#[test]
fn group_strings_do_not_pin_input_buffers() {
    let mut step =
        aggregate("group_by = [\"path\"]\nwindow = \"1m\"\nfields = { last = \"last(path)\" }");
    let line = crate::event::Str::from("/shared/buffer");
    let mut input = Event::default();
    input.insert("timestamp", at(0));
    input.insert("path", Value::String(line.slice_ref(line.as_str())));
    let (outputs, _) = all_outputs(&mut step, vec![vec![input]]);
    let range = line.as_bytes().as_ptr_range();
    for name in ["path", "last"] {
        let Some(Value::String(text)) = outputs[0].get(name) else {
            panic!("{name}")
        };
        assert!(
            !range.contains(&text.as_bytes().as_ptr()),
            "{name} must be copied"
        );
    }
}

#[test]
fn config_errors_name_the_key() {
    let cases: [(&str, &str); 11] = [
        ("window = \"1m\"\nfields = {}", "fields"),
        ("window = \"1m\"\nfields = { n = \"count\" }", "fields.n"),
        (
            "window = \"1m\"\nfields = { window_start = \"count()\" }",
            "fields.window_start",
        ),
        (
            "window = \"1m\"\ngroup_by = [\"a\"]\nfields = { a = \"count()\" }",
            "fields.a",
        ),
        (
            "window = \"1m\"\ngroup_by = [\"a\", \"a\"]\nfields = { n = \"count()\" }",
            "group_by[1]",
        ),
        (
            "window = \"0s\"\nfields = { n = \"count()\" }",
            "window.size",
        ),
        (
            "window = { type = \"hopping\", size = \"1m\", hop = \"2m\" }\nfields = { n = \"count()\" }",
            "window.hop",
        ),
        (
            "window = { type = \"hopping\", size = \"1h\", hop = \"1s\" }\nfields = { n = \"count()\" }",
            "window.hop",
        ),
        (
            "window = { type = \"session\", gap = \"0s\" }\nfields = { n = \"count()\" }",
            "window.gap",
        ),
        (
            "window = \"1m\"\ntime = \"processing\"\ntime_field = \"ts\"\nfields = { n = \"count()\" }",
            "time_field",
        ),
        (
            "window = \"1m\"\nmax_groups = 0\nfields = { n = \"count()\" }",
            "max_groups",
        ),
    ];
    for (toml_text, key) in cases {
        assert_eq!(
            build_error(toml_text).key.as_deref(),
            Some(key),
            "{toml_text}"
        );
    }
    for bad in [
        "window = { type = \"tumbling\", size = \"1m\", hop = \"1m\" }\nfields = { n = \"count()\" }",
        "window = { type = \"sliding\", size = \"1m\" }\nfields = { n = \"count()\" }",
        "window = 5\nfields = { n = \"count()\" }",
        "window = \"1m\"\nfields = { n = \"count()\" }\ngroups = []",
    ] {
        assert!(toml::from_str::<AggregateConfig>(bad).is_err(), "{bad}");
    }
}

// ---- Property tests against a brute-force computation -----------------------------------

/// What the tests compute per window and group.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    count: i64,
    sum: i64,
    min: i64,
    max: i64,
    avg: f64,
    distinct: i64,
    first: i64,
    last: i64,
    p90: f64,
}

const FIELDS: &str = "fields = { n = \"count()\", s = \"sum(value)\", lo = \"min(value)\", hi = \"max(value)\", \
    mean = \"avg(value)\", d = \"count_distinct(value)\", first = \"first(value)\", last = \"last(value)\", \
    p90 = \"p90(value)\" }";

/// `(time, arrival, value)` of the events of one window and group → the summary.
fn summarize(mut items: Vec<(i64, usize, i64)>) -> Summary {
    items.sort();
    let values: Vec<i64> = items.iter().map(|(_, _, v)| *v).collect();
    let mut sorted = values.clone();
    sorted.sort_unstable();
    let sum: i64 = values.iter().sum();
    Summary {
        count: values.len() as i64,
        sum,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        avg: sum as f64 / values.len() as f64,
        distinct: sorted.iter().collect::<BTreeSet<_>>().len() as i64,
        first: values[0],
        last: values[values.len() - 1],
        p90: sorted[(0.9 * (sorted.len() - 1) as f64).floor() as usize] as f64,
    }
}

/// `(window start, window end, path)` in seconds.
type WindowKey = (i64, i64, String);
/// `(time, arrival, value)` of one event.
type Item = (i64, usize, i64);
type Results = BTreeMap<WindowKey, Summary>;

fn results_of(outputs: &[Event]) -> Results {
    outputs
        .iter()
        .map(|e| {
            let key = (
                e.get("window_start").map(|v| secs(Some(v))).unwrap(),
                e.get("window_end").map(|v| secs(Some(v))).unwrap(),
                e.get("path").and_then(Value::as_str).unwrap().to_owned(),
            );
            let summary = Summary {
                count: int(e.get("n")),
                sum: int(e.get("s")),
                min: int(e.get("lo")),
                max: int(e.get("hi")),
                avg: e.get("mean").and_then(Value::as_f64).unwrap(),
                distinct: int(e.get("d")),
                first: int(e.get("first")),
                last: int(e.get("last")),
                p90: e.get("p90").and_then(Value::as_f64).unwrap(),
            };
            (key, summary)
        })
        .collect()
}

/// Equal, with percentiles within the sketch's relative accuracy.
fn same(actual: &Results, expected: &Results) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        actual.len(),
        expected.len(),
        "windows differ:\nactual   {:?}\nexpected {:?}",
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, want) in expected {
        let got = actual
            .get(key)
            .ok_or_else(|| TestCaseError::fail(format!("missing {key:?}")))?;
        prop_assert!(
            (got.p90 - want.p90).abs() <= sketch::RELATIVE_ACCURACY * want.p90.abs() * 1.000_001,
            "p90 of {:?}: {} vs {}",
            key,
            got.p90,
            want.p90
        );
        prop_assert!((got.avg - want.avg).abs() <= 1e-9 * want.avg.abs().max(1.0));
        let (mut got, mut want) = (got.clone(), want.clone());
        (got.p90, want.p90, got.avg, want.avg) = (0.0, 0.0, 0.0, 0.0);
        prop_assert_eq!(got, want, "at {:?}", key);
    }
    Ok(())
}

/// Random events: `(time in seconds, path, value)`, times roughly increasing with jitter so
/// that some are late.
fn arb_stream() -> impl Strategy<Value = Vec<(i64, u8, i64)>> {
    prop::collection::vec((0i64..40, -30i64..8, 0u8..3, 1i64..50), 0..120).prop_map(|steps| {
        let mut clock = 0;
        steps
            .into_iter()
            .map(|(advance, jitter, path, value)| {
                clock += advance / 8;
                ((clock + jitter).max(0), path, value)
            })
            .collect()
    })
}

fn events_of(stream: &[(i64, u8, i64)]) -> Vec<Event> {
    stream
        .iter()
        .map(|&(t, path, value)| event(&format!("/{path}"), t, value))
        .collect()
}

/// Cuts `events` into batches at the given sizes (the rest is the last batch).
fn batches(events: Vec<Event>, cuts: &[usize]) -> Vec<Vec<Event>> {
    let mut rest = events.into_iter();
    let mut out: Vec<Vec<Event>> = cuts
        .iter()
        .map(|&n| rest.by_ref().take(n).collect())
        .collect();
    out.push(rest.collect());
    out
}

/// The brute force for tumbling and hopping windows: every event in every window containing
/// it that the watermark (before the event) has not passed.
fn brute_fixed(stream: &[(i64, u8, i64)], size: i64, hop: i64, lateness: i64) -> (Results, usize) {
    let mut groups: BTreeMap<WindowKey, Vec<Item>> = BTreeMap::new();
    let mut max: Option<i64> = None;
    let mut late = 0;
    for (arrival, &(t, path, value)) in stream.iter().enumerate() {
        let watermark = max.map(|m| m - lateness);
        let mut open = Vec::new();
        let mut start = (t / hop) * hop;
        while start > t - size {
            if watermark.is_none_or(|w| start + size > w) {
                open.push(start);
            }
            start -= hop;
        }
        if open.is_empty() {
            late += 1;
        } else {
            for start in open {
                groups
                    .entry((start, start + size, format!("/{path}")))
                    .or_default()
                    .push((t, arrival, value));
            }
        }
        max = Some(max.map_or(t, |m| m.max(t)));
    }
    (
        groups
            .into_iter()
            .map(|(key, items)| (key, summarize(items)))
            .collect(),
        late,
    )
}

/// The brute force for sessions: accepted events (time after the watermark), per path sorted by
/// time, split where consecutive times are more than `gap` apart.
fn brute_sessions(stream: &[(i64, u8, i64)], gap: i64, lateness: i64) -> (Results, usize) {
    let mut per_path: BTreeMap<String, Vec<(i64, usize, i64)>> = BTreeMap::new();
    let mut max: Option<i64> = None;
    let mut late = 0;
    for (arrival, &(t, path, value)) in stream.iter().enumerate() {
        if max.is_some_and(|m| t <= m - lateness) {
            late += 1;
        } else {
            per_path
                .entry(format!("/{path}"))
                .or_default()
                .push((t, arrival, value));
        }
        max = Some(max.map_or(t, |m| m.max(t)));
    }
    let mut results = Results::new();
    for (path, mut items) in per_path {
        items.sort();
        let mut session: Vec<(i64, usize, i64)> = Vec::new();
        for item in items {
            if let Some(&(previous, _, _)) = session.last()
                && item.0 - previous > gap
            {
                let (start, last) = (session[0].0, session[session.len() - 1].0);
                results.insert(
                    (start, last + gap, path.clone()),
                    summarize(std::mem::take(&mut session)),
                );
            }
            session.push(item);
        }
        if !session.is_empty() {
            let (start, last) = (session[0].0, session[session.len() - 1].0);
            results.insert((start, last + gap, path.clone()), summarize(session));
        }
    }
    (results, late)
}

fn window_config(kind: &str, a: i64, b: i64) -> String {
    match kind {
        "tumbling" => format!("window = {{ type = \"tumbling\", size = \"{a}s\" }}"),
        "hopping" => format!("window = {{ type = \"hopping\", size = \"{a}s\", hop = \"{b}s\" }}"),
        _ => format!("window = {{ type = \"session\", gap = \"{a}s\" }}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn fixed_windows_match_brute_force(
        stream in arb_stream(),
        size in 1i64..12,
        hop_divisor in 1i64..4,
        lateness in 0i64..10,
        hopping in any::<bool>(),
        cuts in prop::collection::vec(0usize..20, 0..6),
    ) {
        let hop = if hopping { (size / hop_divisor).max(1) } else { size };
        let kind = if hopping { "hopping" } else { "tumbling" };
        let mut step = aggregate(&format!(
            "group_by = [\"path\"]\n{}\nallowed_lateness = \"{lateness}s\"\n{FIELDS}",
            window_config(kind, size, hop)
        ));
        let (outputs, letters) = all_outputs(&mut step, batches(events_of(&stream), &cuts));
        let (expected, late) = brute_fixed(&stream, size, hop, lateness);
        prop_assert_eq!(letters.len(), late);
        prop_assert!(letters.iter().all(|l| l.error.starts_with("late event")));
        same(&results_of(&outputs), &expected)?;
        // Emitted in time order.
        let starts: Vec<i64> = outputs.iter().map(|e| secs(e.get("window_start"))).collect();
        prop_assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{:?}", starts);
    }

    #[test]
    fn sessions_match_brute_force(
        stream in arb_stream(),
        gap in 1i64..10,
        lateness in 0i64..12,
        cuts in prop::collection::vec(0usize..20, 0..6),
    ) {
        let mut step = aggregate(&format!(
            "group_by = [\"path\"]\n{}\nallowed_lateness = \"{lateness}s\"\n{FIELDS}",
            window_config("session", gap, 0)
        ));
        let (outputs, letters) = all_outputs(&mut step, batches(events_of(&stream), &cuts));
        let (expected, late) = brute_sessions(&stream, gap, lateness);
        prop_assert_eq!(letters.len(), late);
        same(&results_of(&outputs), &expected)?;
    }

    #[test]
    fn batch_boundaries_do_not_change_results(stream in arb_stream(), cuts in prop::collection::vec(0usize..10, 0..12)) {
        let config = format!("group_by = [\"path\"]\nwindow = \"5s\"\nallowed_lateness = \"3s\"\n{FIELDS}");
        let (whole, whole_letters) = all_outputs(&mut aggregate(&config), vec![events_of(&stream)]);
        let (cut, cut_letters) = all_outputs(&mut aggregate(&config), batches(events_of(&stream), &cuts));
        prop_assert_eq!(whole, cut);
        prop_assert_eq!(whole_letters.len(), cut_letters.len());
    }

    #[test]
    fn aggregating_never_panics(values in prop::collection::vec(prop_oneof![
        Just(Value::Null), any::<i64>().prop_map(Value::Int), any::<f64>().prop_map(Value::Float),
        ".{0,4}".prop_map(Value::from), Just(Value::Array(vec![Value::Int(1)])),
    ], 0..40), times in prop::collection::vec(prop_oneof![any::<i64>(), 0i64..100], 0..40)) {
        let mut step = aggregate(
            "group_by = [\"v\"]\nwindow = { type = \"hopping\", size = \"3s\", hop = \"1s\" }\nallowed_lateness = \"1s\"\n\
             fields = { a = \"sum(v)\", b = \"avg(v)\", c = \"min(v)\", d = \"p99(v)\", e = \"count_distinct(v)\", f = \"top_k(v, 3)\", g = \"sum(v * 2)\", h = \"first(v)\" }",
        );
        let mut sessions = aggregate(
            "group_by = [\"v\"]\nwindow = { type = \"session\", gap = \"2s\" }\nfields = { a = \"sum(v)\", f = \"top_k(v, 3)\", d = \"p50(v)\" }",
        );
        let events: Vec<Event> = values.iter().zip(&times).map(|(v, t)| {
            let mut event = Event::default();
            event.insert("v", v.clone());
            event.insert("timestamp", DateTime::from_timestamp_nanos(*t));
            event
        }).collect();
        let (outputs, letters) = all_outputs(&mut step, vec![events.clone()]);
        prop_assert!(outputs.len() + letters.len() >= events.len().min(1) || events.is_empty());
        let _ = all_outputs(&mut sessions, vec![events]);
    }
}

/// Feeds `batch` as input batch `seq` and returns the oldest input the step then holds.
fn feed(
    step: &mut Aggregate,
    ctx: &mut StepContext,
    seq: u64,
    mut batch: Vec<Event>,
) -> Option<u64> {
    ctx.set_input_seq(seq);
    step.process(&mut batch, ctx);
    step.oldest_held_input()
}

#[test]
fn tumbling_windows_hold_their_first_input_batch_until_they_close() {
    let mut step = aggregate(
        r#"group_by = ["path"]
           window = "1m"
           fields = { hits = "count()" }"#,
    );
    let mut ctx = StepContext::new(OnError::DeadLetter);
    assert_eq!(step.oldest_held_input(), None);
    assert_eq!(
        feed(&mut step, &mut ctx, 1, vec![event("/a", 10, 1)]),
        Some(1)
    );
    assert_eq!(
        feed(&mut step, &mut ctx, 2, vec![event("/b", 20, 1)]),
        Some(1)
    );
    // Batch 3 opens the next window, which closes the first one (no lateness).
    assert_eq!(
        feed(&mut step, &mut ctx, 3, vec![event("/a", 70, 1)]),
        Some(3)
    );
    // A batch whose events all go nowhere (late) is held by nothing new.
    assert_eq!(
        feed(&mut step, &mut ctx, 4, vec![event("/a", 5, 1)]),
        Some(3)
    );
    let mut out = Vec::new();
    step.flush(&mut out, &mut ctx);
    assert_eq!(
        step.oldest_held_input(),
        None,
        "flushed windows hold nothing"
    );
}

#[test]
fn merged_sessions_are_held_by_the_older_first_input() {
    let mut step = aggregate(
        r#"group_by = ["path"]
           window = { type = "session", gap = "30s" }
           allowed_lateness = "60s"
           fields = { hits = "count()" }"#,
    );
    let mut ctx = StepContext::new(OnError::DeadLetter);
    assert_eq!(
        feed(&mut step, &mut ctx, 1, vec![event("/a", 0, 1)]),
        Some(1)
    );
    // A second session of the same path, then an event that bridges the two.
    assert_eq!(
        feed(&mut step, &mut ctx, 2, vec![event("/a", 50, 1)]),
        Some(1)
    );
    assert_eq!(
        feed(&mut step, &mut ctx, 3, vec![event("/a", 25, 1)]),
        Some(1)
    );
    // Event time moves far on: the merged session closes, only the new one holds.
    assert_eq!(
        feed(&mut step, &mut ctx, 4, vec![event("/b", 500, 1)]),
        Some(4)
    );
    let mut out = Vec::new();
    step.flush(&mut out, &mut ctx);
    assert_eq!(step.oldest_held_input(), None);
}
