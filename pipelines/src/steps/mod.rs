//! Every pipeline step kind, registered in one closed enum.
//!
//! A step kind is a file (or a folder, when it grows) in this folder with its config struct
//! (serde, `deny_unknown_fields`) and its runtime beside it, plus one line in [`StepConfig`].
//! [`common`] holds config pieces several steps share; `types` the field conversions of
//! `parse`'s `types` and `remap`'s `coerce`.

pub mod aggregate;
pub mod common;
pub mod dedupe;
pub mod filter;
pub mod geoip;
pub mod parse;
pub mod remap;
pub mod route;
pub mod sample;
pub(crate) mod types;
pub mod user_agent;

pub use aggregate::{Aggregate, AggregateConfig};
pub use dedupe::{Dedupe, DedupeConfig};
pub use filter::{Filter, FilterConfig};
pub use geoip::{GeoIp, GeoIpConfig};
pub use parse::{Parse, ParseConfig, ParseFormat};
pub use remap::{Remap, RemapConfig};
pub use route::{Route, RouteConfig};
pub use sample::{Sample, SampleConfig};
pub use user_agent::{UserAgent, UserAgentConfig};

use crate::component_kinds;
use crate::step::{BuildError, Step};

component_kinds! {
    /// The config of one pipeline step, selected by its `type`.
    pub enum StepConfig {
        /// Parse raw lines (or a string field): JSON, regex, logfmt, CSV, access log presets.
        Parse(ParseConfig) = "parse",
        /// Keep the events that match a condition.
        Filter(FilterConfig) = "filter",
        /// Set, rename, remove, keep and convert fields; add the host or ingest time.
        Remap(RemapConfig) = "remap",
        /// Send events to other topics by condition.
        Route(RouteConfig) = "route",
        /// Keep one event in N, optionally whole sessions.
        Sample(SampleConfig) = "sample",
        /// Drop events whose key was seen recently.
        Dedupe(DedupeConfig) = "dedupe",
        /// Summarize events per window and group.
        Aggregate(AggregateConfig) = "aggregate",
        /// Browser, OS and device from a user-agent string.
        UserAgent(UserAgentConfig) = "user_agent",
        /// Country, city and coordinates of an IP address from a MaxMind DB file.
        GeoIp(GeoIpConfig) = "geoip",
    }
}

impl StepConfig {
    /// Builds the step: compiles patterns, interns field names. No I/O, except that `geoip`
    /// opens its database.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault when the config is invalid (a regex that does not
    /// compile, a type name that does not exist).
    pub fn build(&self) -> Result<Box<dyn Step>, BuildError> {
        Ok(match self {
            StepConfig::Parse(config) => Box::new(config.build()?),
            StepConfig::Filter(config) => Box::new(config.build()?),
            StepConfig::Remap(config) => Box::new(config.build()?),
            StepConfig::Route(config) => Box::new(config.build()?),
            StepConfig::Sample(config) => Box::new(config.build()?),
            StepConfig::Dedupe(config) => Box::new(config.build()?),
            StepConfig::Aggregate(config) => Box::new(config.build()?),
            StepConfig::UserAgent(config) => Box::new(config.build()?),
            StepConfig::GeoIp(config) => Box::new(config.build()?),
        })
    }

    /// The topics this step sends events to besides the pipeline's output: `route`'s topics
    /// (distinct, in order), empty for every other step. The agent creates and wires them.
    pub fn output_topics(&self) -> Vec<String> {
        match self {
            StepConfig::Route(config) => config.topics(),
            _ => Vec::new(),
        }
    }

    /// Whether the step keeps state that must see every event of the pipeline (`dedupe`,
    /// `aggregate`), so the pipeline must run a single worker: with competing workers each
    /// would see only part of the stream.
    pub fn requires_single_worker(&self) -> bool {
        matches!(self, StepConfig::Dedupe(_) | StepConfig::Aggregate(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventMeta, Value};
    use crate::registry::{ComponentKind, KindError};
    use crate::step::{OnError, StepContext};
    use bytes::Bytes;

    fn steps(toml_text: &str) -> Vec<Box<dyn Step>> {
        #[derive(serde::Deserialize)]
        struct Pipeline {
            steps: Vec<StepConfig>,
        }
        let pipeline: Pipeline = toml::from_str(toml_text).unwrap();
        pipeline
            .steps
            .iter()
            .map(|config| config.build().unwrap())
            .collect()
    }

    fn nginx_pipeline() -> String {
        format!(
            "steps = [\n  {{ type = \"parse\", format = \"regex\", pattern = '{}', \
             types = {{ status = \"int\", bytes = \"int\", request_time = \"float\" }} }},\n  \
             {{ type = \"filter\", condition = 'status >= 400 or agent ~ \"(?i)bot\"' }},\n]",
            parse::tests::NGINX
        )
    }

    #[test]
    fn kinds_are_registered() {
        assert_eq!(
            StepConfig::KINDS,
            [
                "parse",
                "filter",
                "remap",
                "route",
                "sample",
                "dedupe",
                "aggregate",
                "user_agent",
                "geoip"
            ]
        );
        let table: toml::Table = toml::from_str("condition = 'true'").unwrap();
        let config = StepConfig::deserialize_kind("filter", toml::Value::Table(table)).unwrap();
        assert_eq!(config.kind(), "filter");
        let table: toml::Table = toml::from_str("format = \"regex\"\npattern = 1").unwrap();
        let Err(KindError::Field(error)) =
            StepConfig::deserialize_kind("parse", toml::Value::Table(table))
        else {
            panic!("expected a field error");
        };
        assert_eq!(error.path().to_string(), "pattern");
        let config: StepConfig =
            toml::from_str("type = \"filter\"\ncondition = 'status ='").unwrap();
        let Err(error) = config.build() else {
            panic!("a bad condition must not build");
        };
        assert_eq!(error.key.as_deref(), Some("condition"));
    }

    /// The S2 benchmark's pipeline on real lines: the filter keeps exactly the errors and bots.
    #[test]
    fn parse_then_filter_keeps_errors_and_bots() {
        let mut steps = steps(&nginx_pipeline());
        let mut events: Vec<Event> = parse::tests::LINES
            .iter()
            .chain(&["not a log line"])
            .map(|line| Event::from_raw(Bytes::from_static(line.as_bytes()), EventMeta::default()))
            .collect();
        let mut ctx = StepContext::new(OnError::DeadLetter);
        for step in &mut steps {
            step.process(&mut events, &mut ctx);
        }
        let ids: Vec<&str> = events
            .iter()
            .map(|e| e.get("request_id").and_then(Value::as_str).unwrap())
            .collect();
        // LINES[1] is bingbot, LINES[4] a 503; the others are 2xx/3xx browsers.
        assert_eq!(ids, ["req-0000000041", "req-0000000072"]);
        assert_eq!(ctx.take_counts(), (1, 4));
    }

    /// The end-to-end check: generated nginx lines through parse (preset) → filter →
    /// aggregate (1-minute tumbling windows by path and status) give exactly what an independent
    /// computation over the same lines gives — counts and distinct visitors exactly, p95 within
    /// the sketch's 1%.
    #[test]
    fn nginx_lines_through_parse_filter_aggregate_match_an_independent_count() {
        use std::collections::{BTreeMap, BTreeSet};

        let lines = crate::test_engine::sample::nginx_lines_spaced(2026, 20_000, 100);
        let steps: Vec<StepConfig> = {
            #[derive(serde::Deserialize)]
            struct Pipeline {
                steps: Vec<StepConfig>,
            }
            toml::from_str::<Pipeline>(
                "steps = [\n\
                 { type = \"parse\", format = \"nginx_combined_timed\" },\n\
                 { type = \"filter\", condition = 'not (agent ~ \"(?i)bot\")' },\n\
                 { type = \"aggregate\", group_by = [\"path\", \"status\"], window = { type = \"tumbling\", size = \"1m\" },\n\
                   fields = { hits = \"count()\", p95_ms = \"p95(request_time)\", visitors = \"count_distinct(ip)\" } },\n]",
            )
            .unwrap()
            .steps
        };
        let batches: Vec<Vec<Event>> = lines
            .chunks(1000)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|line| {
                        Event::from_raw(Bytes::from(format!("{line}\n")), EventMeta::default())
                    })
                    .collect()
            })
            .collect();
        let outcome =
            crate::test_engine::run_batches(&steps, batches, OnError::DeadLetter).unwrap();
        assert!(
            outcome.dead_letters.is_empty(),
            "{:?}",
            outcome.dead_letters.first()
        );

        // Independently: split the lines by hand, minute buckets from the text of the time.
        type Key = (String, String, i64);
        let mut expected: BTreeMap<Key, (i64, Vec<f64>, BTreeSet<String>)> = BTreeMap::new();
        let mut bots = 0;
        for line in &lines {
            let (head, rest) = line.split_once(" [").unwrap();
            let ip = head.split(' ').next().unwrap().to_owned();
            let (time, rest) = rest.split_once("] \"").unwrap();
            let minute = time[..17].to_owned(); // 01/Jan/2026:00:07
            let (request, rest) = rest.split_once("\" ").unwrap();
            let path = request.split(' ').nth(1).unwrap().to_owned();
            let status: i64 = rest.split(' ').next().unwrap().parse().unwrap();
            let quoted: Vec<&str> = rest.split('"').collect();
            let agent = quoted[3];
            if agent.to_lowercase().contains("bot") {
                bots += 1;
                continue;
            }
            let request_time: f64 = quoted[4]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let entry = expected.entry((minute, path, status)).or_default();
            entry.0 += 1;
            entry.1.push(request_time);
            entry.2.insert(ip);
        }
        assert!(bots > 0, "the filter has work to do");

        let mut actual: BTreeMap<Key, (i64, f64, i64)> = BTreeMap::new();
        for event in &outcome.outputs {
            let Some(Value::Timestamp(start)) = event.get("window_start") else {
                panic!("no window_start in {event:?}");
            };
            let minute = start.format("%d/%b/%Y:%H:%M").to_string();
            let key = (
                minute,
                event
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_owned(),
                event.get("status").and_then(Value::as_int).unwrap(),
            );
            let value = (
                event.get("hits").and_then(Value::as_int).unwrap(),
                event.get("p95_ms").and_then(Value::as_f64).unwrap(),
                event.get("visitors").and_then(Value::as_int).unwrap(),
            );
            assert!(
                actual.insert(key, value).is_none(),
                "one event per window and group"
            );
        }
        assert!(
            actual.keys().map(|k| &k.0).collect::<BTreeSet<_>>().len() >= 15,
            "many minutes"
        );
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (key, (hits, mut times, ips)) in expected {
            let (got_hits, got_p95, got_visitors) = actual[&key];
            assert_eq!(got_hits, hits, "{key:?}");
            assert_eq!(got_visitors, ips.len() as i64, "{key:?}");
            times.sort_by(f64::total_cmp);
            let p95 = times[(0.95 * (times.len() - 1) as f64).floor() as usize];
            assert!(
                (got_p95 - p95).abs() <= 0.01 * p95 * 1.000_001,
                "{key:?}: {got_p95} vs {p95}"
            );
        }
    }
}
