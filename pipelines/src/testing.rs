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
//! [`sample`] generates realistic nginx lines and JSON clickstream events, deterministically from
//! a seed, for tests and benchmarks.

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
        "expected {} event(s), got {} (- expected, + actual):\n",
        expected.len(),
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
        } else if j < b.len()
            && (i == a.len() || lcs[i * width + j + 1] >= lcs[(i + 1) * width + j])
        {
            out.push(('+', b[j].as_str()));
            j += 1;
        } else {
            out.push(('-', a[i].as_str()));
            i += 1;
        }
    }
    out
}

pub mod sample {
    //! Deterministic sample data shaped like `shared/bench/gen_logs.py` writes it: nginx access
    //! lines with `$request_time $request_id`, and NDJSON clickstream events. Same seed, same
    //! output; not byte-identical to the Python generator.

    use chrono::DateTime;

    use crate::hash::mix64;

    const AGENTS: [&str; 5] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    ];
    const BOTS: [&str; 4] = [
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "curl/8.5.0",
        "kube-probe/1.29",
    ];
    const REFERERS: [&str; 5] = [
        "-",
        "https://www.google.com/",
        "https://shop.example.com/",
        "https://t.co/x1y2z3",
        "https://shop.example.com/search?q=shoes",
    ];
    const FIXED_PAGES: [&str; 14] = [
        "/",
        "/search",
        "/cart",
        "/checkout",
        "/login",
        "/signup",
        "/account",
        "/api/v1/items",
        "/api/v1/cart",
        "/api/v1/recommendations",
        "/healthz",
        "/static/app.js",
        "/static/app.css",
        "/favicon.ico",
    ];
    const STATUSES: [(i64, u32); 14] = [
        (200, 80),
        (304, 6),
        (301, 1),
        (302, 1),
        (404, 6),
        (400, 1),
        (401, 1),
        (403, 1),
        (500, 1),
        (502, 1),
        (503, 1),
        (204, 0),
        (201, 0),
        (418, 0),
    ];
    const EVENTS: [(&str, u32); 6] = [
        ("page_view", 50),
        ("click", 30),
        ("search", 8),
        ("add_to_cart", 7),
        ("purchase", 3),
        ("signup", 2),
    ];

    /// A small deterministic random source (splitmix64).
    #[derive(Debug, Clone)]
    pub struct Rng(u64);

    impl Rng {
        /// A generator seeded with `seed`.
        pub fn new(seed: u64) -> Self {
            Rng(seed)
        }

        /// The next 64 random bits.
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix64(self.0)
        }

        /// A float in `[0, 1)`.
        pub fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// An integer in `[low, high]`.
        pub fn range(&mut self, low: u64, high: u64) -> u64 {
            low + self.next_u64() % (high - low + 1)
        }

        /// One of `items`, uniformly; `T::default()` from an empty slice.
        pub fn pick<T: Copy + Default>(&mut self, items: &[T]) -> T {
            let index = self.next_u64() % (items.len().max(1) as u64);
            items.get(index as usize).copied().unwrap_or_default()
        }

        fn weighted<T: Copy + Default>(&mut self, items: &[(T, u32)]) -> T {
            let total: u32 = items.iter().map(|(_, weight)| weight).sum();
            if total == 0 {
                return T::default();
            }
            let mut roll = (self.next_u64() % u64::from(total)) as u32;
            for (item, weight) in items {
                if roll < *weight {
                    return *item;
                }
                roll -= weight;
            }
            T::default()
        }

        /// An exponentially distributed float with the given mean.
        pub fn exponential(&mut self, mean: f64) -> f64 {
            -mean * (1.0 - self.unit()).ln()
        }
    }

    /// A page, skewed towards the first ones as real traffic is.
    fn page(rng: &mut Rng) -> String {
        let count = FIXED_PAGES.len() + 399 + 8;
        let index = ((rng.unit().powi(3) * count as f64) as usize).min(count - 1);
        if index < FIXED_PAGES.len() {
            FIXED_PAGES[index].to_owned()
        } else if index < FIXED_PAGES.len() + 399 {
            format!("/product/{}", index - FIXED_PAGES.len() + 1)
        } else {
            let categories = [
                "shoes", "phones", "books", "garden", "toys", "laptops", "music", "food",
            ];
            format!(
                "/category/{}",
                categories[(index - FIXED_PAGES.len() - 399).min(7)]
            )
        }
    }

    /// `count` nginx lines (`combined` + `$request_time $request_id`, no newline), one every
    /// 0–10 ms from 2026-01-01T00:00:00Z.
    pub fn nginx_lines(seed: u64, count: usize) -> Vec<String> {
        nginx_lines_spaced(seed, count, 10)
    }

    /// Like [`nginx_lines`], one line every 0 to `max_step_ms` milliseconds.
    pub fn nginx_lines_spaced(seed: u64, count: usize, max_step_ms: u64) -> Vec<String> {
        let mut rng = Rng::new(seed);
        let mut millis: i64 = 1_767_225_600_000;
        let mut lines = Vec::with_capacity(count);
        for n in 1..=count {
            millis += rng.range(0, max_step_ms) as i64;
            let time = DateTime::from_timestamp_millis(millis).unwrap_or_default();
            let ip = format!(
                "{}.{}.{}.{}",
                rng.range(1, 223),
                rng.range(0, 255),
                rng.range(0, 255),
                rng.range(1, 254)
            );
            let agent = if rng.unit() < 0.08 {
                rng.pick(&BOTS)
            } else {
                rng.pick(&AGENTS)
            };
            let mut path = page(&mut rng);
            if path == "/search" {
                path.push_str("?q=");
                path.push_str(rng.pick(&["shoes", "red+dress", "usb-c", "gift", "laptop"]));
            }
            let status = rng.weighted(&STATUSES);
            let size = if matches!(status, 301 | 302 | 304) {
                0
            } else {
                rng.range(120, 90_000)
            };
            let user = if rng.unit() < 0.9 {
                "-".to_owned()
            } else {
                format!("u{}", rng.range(1, 50_000))
            };
            let method = rng.weighted(&[("GET", 17), ("POST", 2), ("PUT", 1)]);
            let request_time = rng.exponential(0.045);
            lines.push(format!(
                "{ip} - {user} [{}] \"{method} {path} HTTP/1.1\" {status} {size} \"{}\" \"{agent}\" {request_time:.3} req-{n:010}",
                time.format("%d/%b/%Y:%H:%M:%S +0000"),
                rng.pick(&REFERERS),
            ));
        }
        lines
    }

    /// `count` NDJSON clickstream events (no newline), one every 0–10 ms from
    /// 2026-01-01T00:00:00Z: `ts`, `event_id`, `user_id`, `session_id`, `event`, `page`,
    /// `country`, `device`, `latency_ms`, and `amount`/`currency` or `query` for some events.
    pub fn json_events(seed: u64, count: usize) -> Vec<String> {
        let mut rng = Rng::new(seed);
        let mut millis: i64 = 1_767_225_600_000;
        let mut lines = Vec::with_capacity(count);
        for n in 1..=count {
            millis += rng.range(0, 10) as i64;
            let time = DateTime::from_timestamp_millis(millis).unwrap_or_default();
            let event = rng.weighted(&EVENTS);
            let user = (rng.unit().powi(2) * 50_000.0) as u64;
            let mut line = format!(
                "{{\"ts\":\"{}\",\"event_id\":\"evt-{n:010}\",\"user_id\":\"u{user}\",\"session_id\":\"s{:06}\",\"event\":\"{event}\",\"page\":\"{}\",\"country\":\"{}\",\"device\":\"{}\",\"latency_ms\":{:.1}",
                time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                rng.range(1, 200_000),
                page(&mut rng),
                rng.pick(&["US", "DE", "CN", "IN", "BR", "FR", "JP", "GB"]),
                rng.pick(&["desktop", "mobile", "tablet"]),
                rng.exponential(80.0),
            );
            if event == "purchase" {
                let cents = rng.range(500, 50_000);
                let _ = std::fmt::Write::write_fmt(
                    &mut line,
                    format_args!(
                        ",\"amount\":{}.{:02},\"currency\":\"USD\"",
                        cents / 100,
                        cents % 100
                    ),
                );
            }
            if event == "search" {
                let query = rng.pick(&["shoes", "red dress", "usb-c cable", "gift", "laptop"]);
                let _ =
                    std::fmt::Write::write_fmt(&mut line, format_args!(",\"query\":\"{query}\""));
            }
            line.push('}');
            lines.push(line);
        }
        lines
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
            "expected 3 event(s), got 3 (- expected, + actual):\n\
             \x20 {\"a\":\"x\",\"n\":1}\n\
             - {\"a\":\"x\",\"n\":2}\n\
             \x20 {\"a\":\"x\",\"n\":3}\n\
             + {\"a\":\"x\",\"n\":4}\n"
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
