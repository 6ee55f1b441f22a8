//! Running steps to completion outside the agent: the engine of `sluice test` and of golden tests.
//!
//! [`run_to_end`] builds a pipeline's steps, runs the inputs through them exactly as a pipeline
//! worker does (steps fused, a step's output fed to the next, routed events and dead letters set
//! aside), then flushes every step in order — so windows still open at the end of the input are
//! emitted and pass through the steps after them, as on a finite run of the agent. It is pure: no
//! topics, no clock besides what the steps read themselves, no I/O.
//!
//! [`diff_events`] compares expected and actual events as canonical JSON lines (keys sorted at
//! every level, the raw line shown as `message`, timestamps as RFC 3339 strings) and renders the
//! difference as a line diff: `-` for an expected line that is missing, `+` for an actual line
//! that was not expected.
//!
//! [`sample`] collects realistic nginx lines and JSON clickstream events from
//! [`crate::synthetic`], deterministically from a seed, for tests and benchmarks.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::codec::json::encode_value;
use crate::event::{Event, FieldName, Fields, MESSAGE, Value};
use crate::registry::ComponentKind;
use crate::step::{BuildError, DeadLetter, OnError, Step, StepContext};
use crate::steps::StepConfig;

/// What came out of a pipeline run.
#[derive(Debug, Default)]
pub struct TestOutcome {
    /// Events that reached the end of the pipeline (its output topic), in order: results of the
    /// input batches first, then what the flush emitted.
    pub outputs: Vec<Event>,
    /// Events handed to other topics by `route`, with their topic, in order.
    pub routed: Vec<(Arc<str>, Event)>,
    /// Rejected events (empty when `on_error = "drop"`).
    pub dead_letters: Vec<DeadLetter>,
    /// How many events were rejected, kept or not.
    pub rejected: u64,
    /// How many events steps dropped on purpose (filter, sample, dedupe).
    pub dropped: u64,
}

/// One built step with the name its dead letters carry.
struct Named {
    name: Arc<str>,
    step: Box<dyn Step>,
}

/// Builds `steps` and runs `inputs` through them as one batch, then flushes.
///
/// Step names on dead letters are `steps[<index>] (<type>)`, as the agent names them.
///
/// # Errors
/// The first step that does not build, with its key prefixed by `steps[<index>]`.
pub fn run_to_end(
    steps: &[StepConfig],
    inputs: Vec<Event>,
    on_error: OnError,
) -> Result<TestOutcome, BuildError> {
    run_batches(steps, vec![inputs], on_error)
}

/// Like [`run_to_end`], with the inputs cut into the given batches (one event per batch shows
/// what batch boundaries change: nothing, for every step of this crate).
///
/// # Errors
/// The first step that does not build, with its key prefixed by `steps[<index>]`.
pub fn run_batches(
    steps: &[StepConfig],
    batches: Vec<Vec<Event>>,
    on_error: OnError,
) -> Result<TestOutcome, BuildError> {
    let mut built = Vec::with_capacity(steps.len());
    for (index, config) in steps.iter().enumerate() {
        let step = config.build().map_err(|error| BuildError {
            key: Some(match error.key {
                Some(key) => format!("steps[{index}].{key}"),
                None => format!("steps[{index}]"),
            }),
            message: error.message,
        })?;
        built.push(Named {
            name: Arc::from(format!("steps[{index}] ({})", config.kind())),
            step,
        });
    }
    let mut ctx = StepContext::new(on_error);
    let mut outcome = TestOutcome::default();
    for mut events in batches {
        run_from(&mut built, 0, &mut events, &mut ctx);
        outcome.outputs.append(&mut events);
    }
    for index in 0..built.len() {
        let step = &mut built[index];
        ctx.set_step(&step.name);
        let mut out = Vec::new();
        step.step.flush(&mut out, &mut ctx);
        run_from(&mut built, index + 1, &mut out, &mut ctx);
        outcome.outputs.append(&mut out);
    }
    outcome.routed = ctx.take_routed();
    outcome.dead_letters = ctx.take_dead_letters();
    (outcome.rejected, outcome.dropped) = ctx.take_counts();
    Ok(outcome)
}

fn run_from(steps: &mut [Named], from: usize, events: &mut Vec<Event>, ctx: &mut StepContext) {
    for step in steps.iter_mut().skip(from) {
        if events.is_empty() {
            break;
        }
        ctx.set_step(&step.name);
        step.step.process(events, ctx);
    }
}

/// An event as one canonical JSON line: keys sorted at every level, the raw line as `message`
/// (unless a `message` field exists).
pub fn canonical_json(event: &Event) -> String {
    let mut fields: Vec<(FieldName, Value)> = event
        .fields()
        .iter()
        .map(|(name, value)| (name.clone(), sorted(value)))
        .collect();
    if let Some(raw) = event.raw()
        && event.get(MESSAGE).is_none()
    {
        let text = String::from_utf8_lossy(raw).into_owned();
        fields.push((FieldName::new(MESSAGE), Value::from(text)));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    encode_value(&Value::Map(fields.into_iter().collect()), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Map(map) => {
            let mut entries: Vec<(FieldName, Value)> = map
                .iter()
                .map(|(name, item)| (name.clone(), sorted(item)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut fields = Fields::with_capacity(entries.len());
            for (name, item) in entries {
                fields.push_unchecked(name, item);
            }
            Value::Map(fields)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Compares events as canonical JSON lines; `None` when they are the same, in the same order,
/// otherwise a readable line diff (`  ` same, `- ` expected only, `+ ` actual only), headed by
/// the counts.
pub fn diff_events(expected: &[Event], actual: &[Event]) -> Option<String> {
    let expected: Vec<String> = expected.iter().map(canonical_json).collect();
    let actual: Vec<String> = actual.iter().map(canonical_json).collect();
    diff_lines(&expected, &actual)
}

/// The line diff of [`diff_events`], for lines already rendered.
pub fn diff_lines(expected: &[String], actual: &[String]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut out = format!(
        "expected {} event{}, got {} (- expected, + actual):\n",
        expected.len(),
        if expected.len() == 1 { "" } else { "s" },
        actual.len()
    );
    for (mark, line) in line_diff(expected, actual) {
        let _ = writeln!(out, "{mark} {line}");
    }
    Some(out)
}

/// A longest-common-subsequence diff; beyond a size where the table would be large, lines are
/// compared position by position.
fn line_diff<'a>(a: &'a [String], b: &'a [String]) -> Vec<(char, &'a str)> {
    const MAX_CELLS: usize = 4_000_000;
    let mut out = Vec::new();
    if (a.len() + 1).saturating_mul(b.len() + 1) > MAX_CELLS {
        for i in 0..a.len().max(b.len()) {
            match (a.get(i), b.get(i)) {
                (Some(x), Some(y)) if x == y => out.push((' ', x.as_str())),
                (x, y) => {
                    if let Some(x) = x {
                        out.push(('-', x.as_str()));
                    }
                    if let Some(y) = y {
                        out.push(('+', y.as_str()));
                    }
                }
            }
        }
        return out;
    }
    // lcs[i][j]: the LCS length of a[i..] and b[j..].
    let width = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push((' ', a[i].as_str()));
            i += 1;
            j += 1;
        } else if i < a.len()
            && (j == b.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
        {
            // Expected lines first, as the `- expected, + actual` header reads.
            out.push(('-', a[i].as_str()));
            i += 1;
        } else {
            out.push(('+', b[j].as_str()));
            j += 1;
        }
    }
    out
}

pub mod sample {
    //! Sample lines for tests and benchmarks, collected from [`crate::synthetic`]'s writer: nginx
    //! access lines and NDJSON clickstream events from 2026-01-01T00:00:00Z, the same for a seed.

    use bytes::BytesMut;

    use crate::synthetic::{SampleFormat, SampleLines};

    /// 2026-01-01T00:00:00Z in unix microseconds.
    const START_MICROS: i64 = 1_767_225_600_000_000;

    fn collect(mut lines: SampleLines, count: usize) -> Vec<String> {
        let mut out = BytesMut::new();
        (0..count)
            .map(|_| {
                lines.write_next(&mut out);
                String::from_utf8_lossy(&out.split()).into_owned()
            })
            .collect()
    }

    /// `count` nginx lines (`combined` + `$request_time $request_id`, no newline), one every
    /// 0–10 ms.
    pub fn nginx_lines(seed: u64, count: usize) -> Vec<String> {
        nginx_lines_spaced(seed, count, 10)
    }

    /// Like [`nginx_lines`], one line every 0 to `max_step_ms` milliseconds.
    pub fn nginx_lines_spaced(seed: u64, count: usize, max_step_ms: u64) -> Vec<String> {
        let lines = SampleLines::new(SampleFormat::Nginx, seed, START_MICROS)
            .with_max_step(max_step_ms.saturating_mul(1000));
        collect(lines, count)
    }

    /// `count` NDJSON clickstream events (no newline), one every 0–10 ms: `ts`, `event_id`,
    /// `user_id`, `session_id`, `event`, `page`, `country`, `device`, `latency_ms`, and
    /// `amount`/`currency` or `query` for some events.
    pub fn json_events(seed: u64, count: usize) -> Vec<String> {
        collect(
            SampleLines::new(SampleFormat::Events, seed, START_MICROS),
            count,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventMeta;
    use bytes::Bytes;

    fn steps(toml_text: &str) -> Vec<StepConfig> {
        #[derive(serde::Deserialize)]
        struct Pipeline {
            steps: Vec<StepConfig>,
        }
        toml::from_str::<Pipeline>(toml_text).unwrap().steps
    }

    fn raw(line: &str) -> Event {
        Event::from_raw(Bytes::from(line.to_owned()), EventMeta::default())
    }

    #[test]
    fn runs_parse_and_filter_and_keeps_dead_letters() {
        let steps = steps(
            "steps = [{ type = \"parse\", format = \"logfmt\", types = { n = \"int\" } },\n\
             { type = \"filter\", condition = 'n > 1' }]",
        );
        let outcome = run_to_end(
            &steps,
            vec![raw("n=1"), raw("n=2"), raw("n=x"), raw("n=3")],
            OnError::DeadLetter,
        )
        .unwrap();
        let ns: Vec<i64> = outcome
            .outputs
            .iter()
            .map(|e| e.get("n").and_then(Value::as_int).unwrap())
            .collect();
        assert_eq!(ns, [2, 3]);
        assert_eq!(outcome.dead_letters.len(), 1);
        assert_eq!(&*outcome.dead_letters[0].step, "steps[0] (parse)");
        assert_eq!((outcome.rejected, outcome.dropped), (1, 1));

        let dropped = run_to_end(&steps, vec![raw("n=x")], OnError::Drop).unwrap();
        assert!(dropped.dead_letters.is_empty());
        assert_eq!(dropped.rejected, 1);
    }

    #[test]
    fn build_errors_name_the_step() {
        let steps = steps(
            "steps = [{ type = \"filter\", condition = 'true' }, { type = \"filter\", condition = 'a ==' }]",
        );
        let error = run_to_end(&steps, Vec::new(), OnError::Drop).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("steps[1].condition"));
    }

    #[test]
    fn diffs_show_missing_and_unexpected_lines() {
        let event = |n: i64| {
            let mut event = Event::default();
            event.insert("n", n);
            event.insert("a", "x");
            event
        };
        assert_eq!(diff_events(&[event(1)], &[event(1)]), None);
        let diff = diff_events(
            &[event(1), event(2), event(3)],
            &[event(1), event(3), event(4)],
        )
        .unwrap();
        assert_eq!(
            diff,
            "expected 3 events, got 3 (- expected, + actual):\n\
             \x20 {\"a\":\"x\",\"n\":1}\n\
             - {\"a\":\"x\",\"n\":2}\n\
             \x20 {\"a\":\"x\",\"n\":3}\n\
             + {\"a\":\"x\",\"n\":4}\n"
        );
        // A changed event: what was expected first, then what came.
        assert_eq!(
            diff_events(&[event(1), event(2)], &[event(1), event(5)]).unwrap(),
            "expected 2 events, got 2 (- expected, + actual):\n\
             \x20 {\"a\":\"x\",\"n\":1}\n\
             - {\"a\":\"x\",\"n\":2}\n\
             + {\"a\":\"x\",\"n\":5}\n"
        );
        assert_eq!(
            diff_events(&[event(2)], &[]).unwrap(),
            "expected 1 event, got 0 (- expected, + actual):\n- {\"a\":\"x\",\"n\":2}\n"
        );
        // Key order does not matter; types do.
        let mut reordered = Event::default();
        reordered.insert("a", "x");
        reordered.insert("n", 1i64);
        assert_eq!(diff_events(&[event(1)], &[reordered]), None);
        let mut float = Event::default();
        float.insert("n", 1.0);
        float.insert("a", "x");
        assert!(diff_events(&[event(1)], &[float]).is_some());
        // The raw line shows as `message`.
        assert_eq!(canonical_json(&raw("hi")), "{\"message\":\"hi\"}");
    }

    #[test]
    fn samples_are_deterministic_and_parse() {
        assert_eq!(sample::nginx_lines(3, 50), sample::nginx_lines(3, 50));
        assert_ne!(sample::nginx_lines(3, 50), sample::nginx_lines(4, 50));
        let steps = steps(
            "steps = [{ type = \"parse\", format = \"nginx_combined_timed\" }, { type = \"parse\", format = \"json\", field = \"request_id\", target = \"x\" }]",
        );
        let lines = sample::nginx_lines(1, 500);
        let outcome = run_to_end(
            &steps[..1],
            lines.iter().map(|l| raw(l)).collect(),
            OnError::DeadLetter,
        )
        .unwrap();
        assert_eq!(
            outcome.outputs.len(),
            500,
            "{:?}",
            outcome.dead_letters.first()
        );
        let json = run_to_end(
            &[StepConfig::Parse(
                toml::from_str("format = \"json\"").unwrap(),
            )],
            sample::json_events(1, 500).iter().map(|l| raw(l)).collect(),
            OnError::DeadLetter,
        )
        .unwrap();
        assert_eq!(json.outputs.len(), 500, "{:?}", json.dead_letters.first());
        assert!(steps.len() == 2);
    }
}
