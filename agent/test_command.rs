//! `sluice test`: pipeline tests written in the config, next to the pipelines they test.
//!
//! ```toml
//! [[tests]]
//! name = "server errors are kept, health checks are not"
//! pipeline = "interesting"
//! lines = [
//!   '1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] "GET /cart HTTP/1.1" 502 0 "-" "curl/8" 0.1 req-1',
//!   '1.2.3.4 - - [01/Jan/2026:00:00:01 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe" 0.0 req-2',
//! ]
//! expect = [{ path = "/cart", status = 502 }]       # only these keys are compared
//! expect_dead_letters = 0
//! ```
//!
//! A test feeds raw `lines` and/or structured `events` to one pipeline's steps — built and run
//! exactly as a pipeline worker runs them, then flushed, so open windows are emitted — and checks
//! what comes out: `expect` (the output events, in order), `expect_routed` (events sent to other
//! topics by `route`, per topic) and `expect_dead_letters` (how many events were rejected).
//! Expected events list the fields to check: an actual event matches when it has those fields
//! with those values (other fields are ignored), and `expect_exact = true` compares whole events.
//! Failures print a line diff of the events as canonical JSON.
//!
//! The tests are read by the config loader ([`crate::config::Loaded::tests`]), from each file as
//! written: `${VAR}` is interpolated and a problem names its file, line and key, as for the rest
//! of the config.

use std::fmt::Write as _;
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use sluice_pipelines::test_engine::{TestOutcome, canonical_json, diff_lines, run_to_end};
use sluice_pipelines::{Event, EventMeta, Fields, Value};

use crate::config::Config;

/// One `[[tests]]` entry.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineTest {
    /// What the test checks, shown in the report.
    pub name: String,
    /// The pipeline whose steps run.
    pub pipeline: String,
    /// Raw input lines, as a source would read them.
    #[serde(default)]
    pub lines: Vec<String>,
    /// Structured input events (after the raw lines).
    #[serde(default)]
    pub events: Vec<toml::Table>,
    /// The expected output events, in order.
    #[serde(default)]
    pub expect: Option<Vec<toml::Table>>,
    /// The expected routed events, per topic.
    #[serde(default)]
    pub expect_routed: Option<IndexMap<String, Vec<toml::Table>>>,
    /// How many events the steps reject.
    #[serde(default)]
    pub expect_dead_letters: Option<usize>,
    /// Compare whole events instead of only the listed fields.
    #[serde(default)]
    pub expect_exact: bool,
}

/// The result of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// `None` when it passed; what differed otherwise.
    pub failure: Option<String>,
}

/// Runs every test against the pipelines of `config`.
pub fn run_tests(config: &Config, tests: &[PipelineTest]) -> Vec<TestResult> {
    tests
        .iter()
        .map(|test| TestResult {
            name: test.name.clone(),
            failure: run_one(config, test).err(),
        })
        .collect()
}

fn run_one(config: &Config, test: &PipelineTest) -> Result<(), String> {
    let Some(pipeline) = config.pipelines.get(&test.pipeline) else {
        let known: Vec<&str> = config.pipelines.keys().map(String::as_str).collect();
        return Err(format!(
            "no pipeline `{}` (the config has: {})",
            test.pipeline,
            known.join(", ")
        ));
    };
    let mut inputs: Vec<Event> = test
        .lines
        .iter()
        .map(|line| Event::from_raw(Bytes::from(line.clone()), EventMeta::default()))
        .collect();
    for table in &test.events {
        inputs.push(Event::from_fields(table_to_fields(table)));
    }
    let outcome = run_to_end(&pipeline.steps, inputs, pipeline.on_error).map_err(|error| {
        format!(
            "{}: {}",
            error.key.unwrap_or_else(|| "steps".to_owned()),
            error.message
        )
    })?;
    check(test, &outcome)
}

fn check(test: &PipelineTest, outcome: &TestOutcome) -> Result<(), String> {
    let mut problems = String::new();
    if let Some(expected) = &test.expect
        && let Some(diff) = compare(expected, &outcome.outputs, test.expect_exact)
    {
        let _ = writeln!(problems, "output events differ: {diff}");
    }
    if let Some(routes) = &test.expect_routed {
        for (topic, expected) in routes {
            let actual: Vec<Event> = outcome
                .routed
                .iter()
                .filter(|(name, _)| &**name == topic)
                .map(|(_, event)| event.clone())
                .collect();
            if let Some(diff) = compare(expected, &actual, test.expect_exact) {
                let _ = writeln!(problems, "events routed to `{topic}` differ: {diff}");
            }
        }
    }
    if let Some(expected) = test.expect_dead_letters
        && expected != outcome.dead_letters.len()
    {
        let _ = writeln!(
            problems,
            "expected {expected} dead letters, got {}",
            outcome.dead_letters.len()
        );
        for letter in outcome.dead_letters.iter().take(5) {
            let _ = writeln!(
                problems,
                "  {}: {} — {}",
                letter.step,
                letter.error,
                canonical_json(&letter.event)
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.trim_end().to_owned())
    }
}

/// Compares expected tables with actual events; `None` when they match.
fn compare(expected: &[toml::Table], actual: &[Event], exact: bool) -> Option<String> {
    let expected_lines: Vec<String> = expected
        .iter()
        .map(|table| canonical_json(&Event::from_fields(table_to_fields(table))))
        .collect();
    let actual_lines: Vec<String> = actual
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let shown = match (exact, expected.get(index)) {
                // Show only the fields the expectation names, so the diff stays readable.
                (false, Some(table)) => project(event, table),
                _ => event.clone(),
            };
            canonical_json(&shown)
        })
        .collect();
    diff_lines(&expected_lines, &actual_lines)
}

/// The fields of `event` named in `table` (nested tables select nested fields).
fn project(event: &Event, table: &toml::Table) -> Event {
    Event::from_fields(project_fields(event.fields(), event.raw(), table))
}

fn project_fields(fields: &Fields, raw: Option<&Bytes>, table: &toml::Table) -> Fields {
    let mut projected = Fields::new();
    for (key, wanted) in table {
        let value = match (fields.get(key), wanted) {
            (Some(Value::Map(inner)), toml::Value::Table(sub)) => {
                Some(Value::Map(project_fields(inner, None, sub)))
            }
            (Some(value), _) => Some(value.clone()),
            (None, _) if key == sluice_pipelines::event::MESSAGE => {
                raw.map(|raw| Value::from(String::from_utf8_lossy(raw).into_owned()))
            }
            (None, _) => None,
        };
        if let Some(value) = value {
            projected.insert(key.as_str().into(), value);
        }
    }
    projected
}

/// Converts a TOML table to event fields (TOML datetimes become timestamps).
pub fn table_to_fields(table: &toml::Table) -> Fields {
    let mut fields = Fields::with_capacity(table.len());
    for (key, value) in table {
        fields.insert(key.as_str().into(), toml_to_value(value));
    }
    fields
}

fn toml_to_value(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::from(text.as_str()),
        toml::Value::Integer(int) => Value::Int(*int),
        toml::Value::Float(float) => Value::Float(*float),
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(datetime) => DateTime::parse_from_rfc3339(&datetime.to_string())
            .map(|ts| Value::Timestamp(ts.with_timezone(&Utc)))
            .unwrap_or_else(|_| Value::from(datetime.to_string())),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_value).collect()),
        toml::Value::Table(table) => Value::Map(table_to_fields(table)),
    }
}

/// Renders results like `cargo test`, returning the text and whether all passed.
pub fn render(results: &[TestResult], source: &Path) -> (String, bool) {
    let mut text = String::new();
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let _ = writeln!(
        text,
        "running {} test{} from {}",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        source.display()
    );
    for result in results {
        match &result.failure {
            None => {
                let _ = writeln!(text, "test {} ... ok", result.name);
            }
            Some(failure) => {
                let _ = writeln!(text, "test {} ... FAILED", result.name);
                for line in failure.lines() {
                    let _ = writeln!(text, "    {line}");
                }
            }
        }
    }
    let _ = writeln!(
        text,
        "\ntest result: {}. {} passed; {} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        results.len() - failed,
        failed
    );
    (text, failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = r#"
[sources.in]
type = "stdin"
topic = "raw"

[pipelines.p]
input = "raw"
output = "out"
steps = [
  { type = "parse", format = "json", drop_raw = true },
  { type = "filter", condition = 'status >= 500' },
]

[pipelines.q]
input = "raw"
output = "out"
steps = [{ type = "filter", condition = 'status >= 500' }]

[sinks.out]
type = "console"
input = "out"
"#;

    fn run(tests: &str) -> Vec<TestResult> {
        let text = format!("{CONFIG}\n{tests}");
        let loaded = load_str("t.toml", &text).unwrap();
        assert!(loaded.test_errors.is_empty(), "{:?}", loaded.test_errors);
        run_tests(&loaded.config, &loaded.tests)
    }

    #[test]
    fn a_passing_test_passes_on_listed_fields() {
        let results = run(r#"
[[tests]]
name = "keeps 5xx"
pipeline = "p"
lines = ['{"status": 200, "path": "/"}', '{"status": 503, "path": "/cart"}', 'not json']
expect = [{ path = "/cart" }]
expect_dead_letters = 1

[[tests]]
name = "structured events"
pipeline = "q"
events = [{ status = 200 }, { status = 500, path = "/x", at = 2026-01-01T00:00:00Z }]
expect = [{ status = 500, at = 2026-01-01T00:00:00Z }]
"#);
        assert_eq!(results[0].failure, None);
        assert_eq!(results[1].failure, None);
    }

    #[test]
    fn a_failing_test_shows_a_diff() {
        let results = run(r#"
[[tests]]
name = "wrong"
pipeline = "p"
lines = ['{"status": 503, "path": "/cart"}']
expect = [{ path = "/checkout" }]
expect_dead_letters = 2
"#);
        let failure = results[0].failure.as_deref().unwrap();
        assert!(failure.contains(r#"- {"path":"/checkout"}"#), "{failure}");
        assert!(failure.contains(r#"+ {"path":"/cart"}"#), "{failure}");
        assert!(
            failure.contains("expected 2 dead letters, got 0"),
            "{failure}"
        );
    }

    #[test]
    fn exact_comparison_sees_extra_fields_and_unknown_pipelines_fail() {
        let results = run(r#"
[[tests]]
name = "exact"
pipeline = "p"
lines = ['{"status": 503, "path": "/cart"}']
expect = [{ path = "/cart" }]
expect_exact = true

[[tests]]
name = "missing pipeline"
pipeline = "nope"
"#);
        assert!(
            results[0]
                .failure
                .as_deref()
                .unwrap()
                .contains("\"status\":503")
        );
        assert!(
            results[1]
                .failure
                .as_deref()
                .unwrap()
                .contains("no pipeline `nope`")
        );
        let (text, ok) = render(&results, Path::new("t.toml"));
        assert!(!ok);
        assert!(text.contains("test exact ... FAILED"), "{text}");
        assert!(text.contains("0 passed; 2 failed"), "{text}");
    }
}
