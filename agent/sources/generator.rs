//! The `generator` source: synthetic web logs for demos, tests and benchmarks.
//!
//! ```toml
//! [sources.demo]
//! type = "generator"
//! topic = "nginx.raw"
//! format = "nginx"                       # or "events"
//! seed = 1                               # same seed, same lines
//! count = 100000                         # optional: stop after this many (a finite source)
//! rate = 5000                            # optional: events per second
//! start_time = "2024-05-01T00:00:00Z"    # optional: the first timestamp (RFC 3339)
//! ```
//!
//! Lines have exactly the shape of the benchmark inputs `sluice generate` writes (both in the shape
//! of the `gen_logs.py` script: same field order, formats and value lists, and timestamps
//! advancing by `random() * 0.01` seconds per line), so a pipeline tested on the generator reads
//! the benchmark files the same way; with the same seed and start they are the same lines. The tables and the formatting
//! live in [`sluice_pipelines::synthetic`], shared with the pipelines crate's tests and benchmarks;
//! this file keeps the config, pacing and batching:
//! - `nginx`: nginx "combined" access lines followed by `$request_time` and a request id
//!   (`req-0000000001`), about 8% of them from bots.
//! - `events`: one compact JSON clickstream event per line (`ts`, `event_id`, `user_id`,
//!   `session_id`, `event`, `page`, `country`, `device`, `latency_ms`, and `amount`/`currency`
//!   for purchases, `query` for searches).
//!
//! The random sequence is splitmix64 seeded with `seed`, not Python's Mersenne Twister, so the
//! values differ from the script's; the output is deterministic for a seed.
//! Events are raw lines (no delimiter), like those of a file source, with the event's index as
//! their origin.
//!
//! Without `rate` the generator runs as fast as the topic accepts. With it, events are spread
//! evenly: about a hundredth of a second's worth at a time, each batch published when it is due,
//! with a sleep (never a spin) in between.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::DateTime;
use sluice_pipelines::synthetic::{SampleFormat, SampleLines};
use sluice_pipelines::{Batch, BuildError, Event, EventMeta, SourceId};
use tokio::time::Instant;

use super::{BATCH_EVENTS, Source, SourceContext, SourceError, SourceFuture};

/// The first timestamp when `start_time` is not set: 2024-05-01T00:00:00Z.
pub const DEFAULT_START: &str = "2024-05-01T00:00:00Z";

/// How many times a second a paced generator publishes, at most (unless batches are full).
const TICKS_PER_SECOND: f64 = 100.0;

/// Config of the `generator` source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// What to generate.
    pub format: GeneratorFormat,
    /// The random seed (default 1).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Stop after this many events; without it the generator runs until shutdown.
    #[serde(default)]
    pub count: Option<u64>,
    /// Events per second; without it, as fast as the topic accepts.
    #[serde(default)]
    pub rate: Option<f64>,
    /// The first timestamp, RFC 3339 (default 2024-05-01T00:00:00Z).
    #[serde(default)]
    pub start_time: Option<String>,
}

fn default_seed() -> u64 {
    1
}

/// The kinds of line the generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorFormat {
    /// nginx combined access lines with request time and id.
    Nginx,
    /// NDJSON clickstream events.
    Events,
}

impl GeneratorConfig {
    /// Checks the config.
    ///
    /// # Errors
    /// A [`BuildError`] at `rate` (not a positive number) or `start_time` (not RFC 3339).
    pub fn validate(&self) -> Result<Generator, BuildError> {
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(BuildError::at(
                "rate",
                format!("must be a positive number of events per second, found {rate}"),
            ));
        }
        let start_text = self.start_time.as_deref().unwrap_or(DEFAULT_START);
        let start = DateTime::parse_from_rfc3339(start_text).map_err(|error| {
            BuildError::at(
                "start_time",
                format!("expected an RFC 3339 time like \"{DEFAULT_START}\", found `{start_text}`: {error}"),
            )
        })?;
        Ok(Generator {
            format: self.format,
            seed: self.seed,
            count: self.count,
            rate: self.rate,
            start_micros: start.timestamp_micros(),
        })
    }

    /// Builds the source.
    ///
    /// # Errors
    /// A [`BuildError`] when the config is invalid (see [`GeneratorConfig::validate`]).
    pub fn build(&self) -> Result<Generator, BuildError> {
        self.validate()
    }
}

/// The `generator` source.
#[derive(Debug, Clone)]
pub struct Generator {
    format: GeneratorFormat,
    seed: u64,
    count: Option<u64>,
    rate: Option<f64>,
    /// Unix microseconds.
    start_micros: i64,
}

impl Generator {
    /// Whether the source ends by itself (a `count` is set).
    pub fn is_finite(&self) -> bool {
        self.count.is_some()
    }

    /// A line maker at the start of this generator's sequence.
    pub fn lines(&self) -> LineMaker {
        LineMaker::new(self.format, self.seed, self.start_micros)
    }
}

impl Source for Generator {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(async move { self.generate(ctx).await })
    }
}

impl Generator {
    async fn generate(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let mut maker = self.lines();
        let mut emitted: u64 = 0;
        let started = Instant::now();
        loop {
            if ctx.shutdown.is_triggered() {
                return Ok(());
            }
            let remaining = self
                .count
                .map_or(u64::MAX, |count| count - emitted.min(count));
            if remaining == 0 {
                return Ok(());
            }
            let mut size = remaining.min(BATCH_EVENTS as u64);
            if let Some(rate) = self.rate {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                if due <= emitted {
                    let step = (rate / TICKS_PER_SECOND)
                        .ceil()
                        .clamp(1.0, BATCH_EVENTS as f64);
                    let step = (step as u64).min(remaining);
                    let at = started + Duration::from_secs_f64((emitted + step) as f64 / rate);
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => continue,
                        () = ctx.shutdown.wait() => return Ok(()),
                    }
                }
                size = size.min(due - emitted);
            }
            // `size` is at most BATCH_EVENTS.
            let (batch, raw_bytes) = maker.batch(size as usize, ctx.id);
            if !ctx.publish(batch, raw_bytes).await {
                return Ok(());
            }
            emitted += size;
            // Publishing into a topic with room never waits; let other tasks run.
            tokio::task::coop::consume_budget().await;
        }
    }
}

/// Writes the lines of one generator, in sequence, into shared buffers.
#[derive(Debug)]
pub struct LineMaker {
    lines: SampleLines,
    buf: BytesMut,
}

impl LineMaker {
    /// A maker at the start of the sequence for `seed`, first timestamp up to 10 ms after
    /// `start_micros` (unix microseconds).
    pub fn new(format: GeneratorFormat, seed: u64, start_micros: i64) -> Self {
        let format = match format {
            GeneratorFormat::Nginx => SampleFormat::Nginx,
            GeneratorFormat::Events => SampleFormat::Events,
        };
        LineMaker {
            lines: SampleLines::new(format, seed, start_micros),
            buf: BytesMut::new(),
        }
    }

    /// The next line, without a newline.
    pub fn next_line(&mut self) -> Bytes {
        // One allocation for many lines: each line is a slice of a shared 64 KiB buffer.
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(64 * 1024);
        }
        self.lines.write_next(&mut self.buf);
        self.buf.split().freeze()
    }

    /// A batch of the next `size` lines as events of `source`, and their raw bytes.
    pub fn batch(&mut self, size: usize, source: SourceId) -> (Batch, u64) {
        let mut events = Vec::with_capacity(size);
        let mut raw_bytes = 0;
        for _ in 0..size {
            let origin = Some(self.lines.written());
            let line = self.next_line();
            raw_bytes += line.len() as u64;
            events.push(Event::from_raw(line, EventMeta { source, origin }));
        }
        (Batch::new(events), raw_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use sluice_pipelines::synthetic::{AGENTS, BOTS, COUNTRIES, QUERIES, REFERERS};
    use sluice_pipelines::{OnError, StepConfig, StepContext, Value};

    use super::*;
    use crate::metrics::{Metrics, Role};
    use crate::shutdown::{self, Shutdown};
    use crate::topic::{Subscription, SubscriptionSettings, Topic, TopicSettings};

    /// The nginx lines of `gen_logs.py`, written independently of the generator.
    const NGINX: &str = r#"^(?P<ip>(?:\d{1,3}\.){3}\d{1,3}) - (?P<user>-|u\d+) \[(?P<timestamp>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "(?P<method>GET|POST|PUT) (?P<path>/\S*) HTTP/1\.1" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]+)" (?P<request_time>\d+\.\d{3}) (?P<request_id>req-\d{10})$"#;

    fn generator(text: &str) -> Generator {
        toml::from_str::<GeneratorConfig>(text)
            .unwrap()
            .build()
            .unwrap()
    }

    fn lines(generator: &Generator, count: usize) -> Vec<String> {
        let mut maker = generator.lines();
        (0..count)
            .map(|_| String::from_utf8(maker.next_line().to_vec()).unwrap())
            .collect()
    }

    fn parse(config: &str, lines: &[String]) -> Vec<Event> {
        let config: StepConfig = toml::from_str(config).unwrap();
        let mut step = config.build().unwrap();
        let mut events: Vec<Event> = lines
            .iter()
            .map(|line| Event::from_raw(Bytes::from(line.clone()), EventMeta::default()))
            .collect();
        let mut ctx = StepContext::new(OnError::DeadLetter);
        step.process(&mut events, &mut ctx);
        let letters = ctx.take_dead_letters();
        assert!(letters.is_empty(), "unparsed: {letters:?}");
        events
    }

    fn context(topic: &Topic, shutdown: Shutdown) -> SourceContext {
        SourceContext {
            name: "gen".into(),
            id: SourceId(5),
            output: topic.producer(),
            shutdown,
            data_dir: std::env::temp_dir(),
            metrics: Metrics::new().register("gen", Role::Source),
            dead_letter: None,
        }
    }

    async fn drain(sub: &Subscription) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(delivery) = sub.next().await {
            events.extend_from_slice(delivery.events());
            delivery.ack();
        }
        events
    }

    #[test]
    fn same_seed_same_lines_other_seed_other_lines() {
        for format in ["nginx", "events"] {
            let one = lines(&generator(&format!("format = \"{format}\"\nseed = 3")), 500);
            let again = lines(&generator(&format!("format = \"{format}\"\nseed = 3")), 500);
            let other = lines(&generator(&format!("format = \"{format}\"\nseed = 4")), 500);
            assert_eq!(one, again);
            assert_ne!(one, other);
            // Different in content, not only in ids.
            assert!(one.iter().zip(&other).filter(|(a, b)| a != b).count() > 450);
        }
    }

    #[test]
    fn nginx_lines_have_the_gen_logs_shape() {
        let generator = generator("format = \"nginx\"");
        let lines = lines(&generator, 5000);
        assert!(
            lines[0].contains(" [01/May/2024:00:00:00 +0000] "),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with(" req-0000000001"), "{}", lines[0]);
        assert!(lines[4999].ends_with(" req-0000005000"));
        let config = format!(
            "type = \"parse\"\nformat = \"regex\"\npattern = '{NGINX}'\n\
             types = {{ status = \"int\", bytes = \"int\", request_time = \"float\", \
             timestamp = \"timestamp|%d/%b/%Y:%H:%M:%S %z\" }}"
        );
        let events = parse(&config, &lines);
        let field = |event: &Event, name: &str| event.get(name).cloned().unwrap();
        let mut bots = 0;
        let mut statuses = HashSet::new();
        let mut methods = HashSet::new();
        let mut last_time = None;
        for event in &events {
            let Value::Int(status) = field(event, "status") else {
                panic!()
            };
            let Value::Int(bytes) = field(event, "bytes") else {
                panic!()
            };
            statuses.insert(status);
            if [301, 302, 304].contains(&status) {
                assert_eq!(bytes, 0);
            } else {
                assert!((120..=90_000).contains(&bytes));
            }
            let agent = field(event, "agent");
            let agent = agent.as_str().unwrap();
            assert!(AGENTS.contains(&agent) || BOTS.contains(&agent), "{agent}");
            bots += usize::from(BOTS.contains(&agent));
            let referer = field(event, "referer");
            assert!(REFERERS.contains(&referer.as_str().unwrap()));
            methods.insert(field(event, "method").as_str().unwrap().to_owned());
            let Value::Timestamp(time) = field(event, "timestamp") else {
                panic!()
            };
            assert!(last_time.is_none_or(|last| last <= time));
            last_time = Some(time);
        }
        // About 8% bots, every status and method of the lists shows up.
        assert!((250..550).contains(&bots), "{bots} bots");
        assert_eq!(statuses.len(), 11);
        assert_eq!(methods.len(), 3);
        // 5000 lines at 5ms apart on average: about 25 seconds.
        let span = last_time.unwrap().timestamp() - 1_714_521_600;
        assert!((20..30).contains(&span), "{span}");
        assert!(lines.iter().any(|line| line.contains(" /search?q=")));
    }

    #[test]
    fn events_are_json_with_the_gen_logs_keys_in_order() {
        let generator = generator("format = \"events\"\nstart_time = \"2025-01-02T03:04:05Z\"");
        let lines = lines(&generator, 3000);
        let events = parse("type = \"parse\"\nformat = \"json\"", &lines);
        let mut kinds = HashSet::new();
        for (line, event) in lines.iter().zip(&events) {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value.is_object());
            let names: Vec<&str> = event
                .fields()
                .iter()
                .map(|(name, _)| name.as_str())
                .collect();
            let kind = event
                .get("event")
                .and_then(Value::as_str)
                .unwrap()
                .to_owned();
            let mut expected = vec![
                "ts",
                "event_id",
                "user_id",
                "session_id",
                "event",
                "page",
                "country",
                "device",
                "latency_ms",
            ];
            match kind.as_str() {
                "purchase" => {
                    expected.extend(["amount", "currency"]);
                    let amount = value["amount"].as_f64().unwrap();
                    assert!((5.0..=500.0).contains(&amount));
                    // Python's repr of round(x, 2): no trailing zero after the first decimal.
                    let text = line
                        .split("\"amount\":")
                        .nth(1)
                        .unwrap()
                        .split(',')
                        .next()
                        .unwrap();
                    assert!(!text.ends_with('0') || text.ends_with(".0"), "{text}");
                }
                "search" => {
                    expected.push("query");
                    assert!(QUERIES.contains(&value["query"].as_str().unwrap()));
                }
                _ => {}
            }
            assert_eq!(names, expected, "{line}");
            kinds.insert(kind);
            let ts = value["ts"].as_str().unwrap();
            assert!(
                ts.starts_with("2025-01-02T03:0") && ts.ends_with('Z') && ts.len() == 24,
                "{ts}"
            );
            assert!(value["session_id"].as_str().unwrap().len() >= 7);
            assert!(value["latency_ms"].is_f64());
            assert!(COUNTRIES.contains(&value["country"].as_str().unwrap()));
        }
        assert_eq!(kinds.len(), 6);
        assert!(
            lines[0].starts_with("{\"ts\":\"2025-01-02T03:04:05."),
            "{}",
            lines[0]
        );
        assert!(lines[2].contains("\"event_id\":\"evt-0000000003\""));
    }

    #[test]
    fn bad_configs_name_their_key() {
        let key = |text: &str| {
            toml::from_str::<GeneratorConfig>(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .key
                .unwrap()
        };
        assert_eq!(key("format = \"nginx\"\nrate = 0.0"), "rate");
        assert_eq!(key("format = \"nginx\"\nrate = -5.0"), "rate");
        assert_eq!(
            key("format = \"nginx\"\nstart_time = \"yesterday\""),
            "start_time"
        );
        assert!(toml::from_str::<GeneratorConfig>("format = \"csv\"").is_err());
        assert!(toml::from_str::<GeneratorConfig>("format = \"nginx\"\ncont = 1").is_err());
        let config: GeneratorConfig = toml::from_str("format = \"events\"").unwrap();
        assert_eq!((config.seed, config.count, config.rate), (1, None, None));
        assert!(!config.build().unwrap().is_finite());
    }

    #[tokio::test]
    async fn count_is_honoured_exactly() {
        let topic = Topic::in_memory("gen", TopicSettings::default());
        let sub = topic.subscribe(SubscriptionSettings::new("test"));
        let source = generator("format = \"nginx\"\ncount = 2500\nseed = 9");
        assert!(source.is_finite());
        let expected = lines(&source, 2500);
        let ctx = context(&topic, Shutdown::never());
        let metrics = ctx.metrics.clone();
        Box::new(source).run(ctx).await.unwrap();
        let events = drain(&sub).await;
        let got: Vec<String> = events
            .iter()
            .map(|event| String::from_utf8(event.raw().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(got, expected);
        assert_eq!(
            events[7].meta(),
            &EventMeta {
                source: SourceId(5),
                origin: Some(7)
            }
        );
        assert_eq!(metrics.events_out.get(), 2500);
        let bytes: usize = expected.iter().map(String::len).sum();
        assert_eq!(metrics.bytes_out.get(), bytes as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_spreads_events_evenly() {
        let topic = Topic::in_memory("gen", TopicSettings::default());
        let sub = topic.subscribe(SubscriptionSettings::new("test"));
        let source = generator("format = \"events\"\ncount = 300\nrate = 200.0");
        let started = Instant::now();
        let task = tokio::spawn(Box::new(source).run(context(&topic, Shutdown::never())));
        let mut received = 0;
        let mut largest = 0;
        while let Some(delivery) = sub.next().await {
            received += delivery.events().len();
            largest = largest.max(delivery.events().len());
            // Never ahead of the rate.
            let allowed = (started.elapsed().as_secs_f64() * 200.0).floor() as usize;
            assert!(
                received <= allowed.max(1),
                "{received} events after {:?}",
                started.elapsed()
            );
            delivery.ack();
        }
        task.await.unwrap().unwrap();
        assert_eq!(received, 300);
        assert!(largest <= 4, "batches of {largest}: not smooth");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1490) && elapsed <= Duration::from_millis(1600),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn an_endless_generator_stops_on_shutdown() {
        let topic = Topic::in_memory(
            "gen",
            TopicSettings {
                max_events: 5000,
                ..TopicSettings::default()
            },
        );
        let sub = topic.subscribe(SubscriptionSettings::new("test"));
        let (trigger, shutdown) = shutdown::channel();
        let task =
            tokio::spawn(Box::new(generator("format = \"nginx\"")).run(context(&topic, shutdown)));
        let mut received = 0;
        while received < 20_000 {
            let delivery = sub.next().await.unwrap();
            received += delivery.events().len();
            delivery.ack();
        }
        // The topic is full now and the generator waits on it: shutdown must still stop it.
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops promptly")
            .unwrap()
            .unwrap();
    }
}
