//! The admin API (`[api]`): what a running agent is doing, over HTTP, for operators and their
//! monitoring.
//!
//! - `GET /health`: `200 {"status":"ok", …}` while running, `503 {"status":"draining"}` once
//!   shutdown has started (so a load balancer stops sending to an `http_server` source first);
//! - `GET /metrics`: every counter of every component and every topic and subscription depth, in
//!   the Prometheus text format;
//! - `GET /topics`: each topic's depth, capacity, offsets, counters and subscriptions (lag,
//!   committed offset, batches in flight) as JSON;
//! - `GET /components`: each source, pipeline and sink with its counters, as JSON;
//! - `GET /topics/<topic>/read?from=earliest&n=100`: up to `n` (at most 10,000) retained events
//!   of a topic from `from` (`earliest`, `latest` or an offset) on, as NDJSON, with the offset
//!   to read on from in the `sluice-next-offset` header. Reading moves no subscription.
//!   `sluice topics read` calls it;
//! - `GET /tap/<topic>?limit=10&timeout=5s`: the next events published to a topic, as NDJSON
//!   (at most `limit`, waiting at most `timeout`). A tap is best effort and never slows the
//!   pipeline: it skips what it cannot keep up with (see [`Topic::tap`]). `sluice tap` calls it.
//!
//! It reads the same atomics and topic snapshots as the status line: serving it costs the hot
//! path nothing. It has no authentication, so the default address is loopback.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use indexmap::IndexMap;
use serde_json::{Value as Json, json};
use sluice_pipelines::codec::json::encode_event;
use sluice_pipelines::units::parse_duration;

use crate::metrics::{Metrics, Role};
use crate::shutdown::Shutdown;
use crate::topic::{Offset, Topic};

/// What the handlers read.
struct ApiState {
    metrics: Arc<Metrics>,
    topics: IndexMap<String, Topic>,
    shutdown: Shutdown,
    started: Instant,
}

/// The admin API, bound and ready to serve.
pub struct AdminApi {
    listener: std::net::TcpListener,
}

impl AdminApi {
    /// Binds `address`, so a port in use fails at start-up rather than later.
    ///
    /// # Errors
    /// The bind error, naming the address.
    pub fn bind(address: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(address).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot listen on {address} for the admin API: {error}"),
            )
        })?;
        listener.set_nonblocking(true)?;
        Ok(AdminApi { listener })
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// The OS error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the future is dropped (the agent aborts it when the run ends). Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// An error of the listening socket.
    pub async fn serve(
        self,
        metrics: Arc<Metrics>,
        topics: IndexMap<String, Topic>,
        shutdown: Shutdown,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let state = Arc::new(ApiState {
            metrics,
            topics,
            shutdown,
            started: Instant::now(),
        });
        axum::serve(listener, router(state)).await
    }
}

fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/topics", get(topics))
        .route("/topics/{topic}/read", get(read_topic))
        .route("/components", get(components))
        .route("/tap/{topic}", get(tap))
        .fallback(|| async {
            json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": "not found; try /health, /metrics, /topics, /components or /tap/<topic>"}),
            )
        })
        .with_state(state)
}

/// `value` as a JSON response.
fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let uptime = state.started.elapsed().as_secs_f64();
    if state.shutdown.is_triggered() {
        let body = json!({"status": "draining", "uptime_seconds": uptime});
        json_response(StatusCode::SERVICE_UNAVAILABLE, &body)
    } else {
        let body = json!({
            "status": "ok",
            "uptime_seconds": uptime,
            "version": env!("CARGO_PKG_VERSION"),
        });
        json_response(StatusCode::OK, &body)
    }
}

async fn topics(State(state): State<Arc<ApiState>>) -> Response {
    let stats: Vec<_> = state.topics.values().map(Topic::stats).collect();
    json_response(StatusCode::OK, &stats)
}

/// The 404 answer for a topic that does not exist, naming those that do.
fn no_such_topic(state: &ApiState, name: &str) -> Response {
    let known: Vec<&str> = state.topics.keys().map(String::as_str).collect();
    let message = format!("no topic {name:?}; the topics are: {}", known.join(", "));
    json_response(StatusCode::NOT_FOUND, &json!({ "error": message }))
}

/// The most events one read request returns.
const READ_MAX_EVENTS: u64 = 10_000;

/// Where a read request starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadFrom {
    Earliest,
    Latest,
    Offset(Offset),
}

/// `from` and `n` of a read request's query string.
fn read_options(query: Option<&str>) -> Result<(ReadFrom, u64), String> {
    let mut from = ReadFrom::Earliest;
    let mut n = 100;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "from" => {
                from = match value {
                    "earliest" => ReadFrom::Earliest,
                    "latest" => ReadFrom::Latest,
                    offset => ReadFrom::Offset(Offset(offset.parse().map_err(|_| {
                        format!("from must be earliest, latest or an offset, found {value:?}")
                    })?)),
                };
            }
            "n" => {
                n = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=READ_MAX_EVENTS).contains(n))
                    .ok_or_else(|| {
                        format!("n must be a number from 1 to {READ_MAX_EVENTS}, found {value:?}")
                    })?;
            }
            other => {
                return Err(format!("unknown parameter {other:?}; expected from or n"));
            }
        }
    }
    Ok((from, n))
}

/// The header of a read answer holding the offset after the last event returned.
pub const NEXT_OFFSET_HEADER: &str = "sluice-next-offset";

async fn read_topic(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Response {
    let Some(topic) = state.topics.get(&name).cloned() else {
        return no_such_topic(&state, &name);
    };
    let (from, n) = match read_options(uri.query()) {
        Ok(options) => options,
        Err(message) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }));
        }
    };
    // A disk topic's batches may come from its files: off the async workers.
    let read = tokio::task::spawn_blocking(move || {
        let from = match from {
            ReadFrom::Earliest => Offset(0),
            ReadFrom::Latest => topic.stats().end_offset,
            ReadFrom::Offset(offset) => offset,
        };
        let mut body = Vec::new();
        let mut next = from;
        let mut taken = 0;
        for stored in topic.read(from, n) {
            let first = stored.range.start.max(from);
            let skip = (first.0 - stored.range.start.0) as usize;
            for (offset, event) in (first.0..).zip(stored.batch.events().iter().skip(skip)) {
                if taken == n {
                    break;
                }
                encode_event(event, &mut body);
                body.push(b'\n');
                taken += 1;
                next = Offset(offset + 1);
            }
        }
        (body, next)
    })
    .await;
    match read {
        Ok((body, next)) => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
                (
                    header::HeaderName::from_static(NEXT_OFFSET_HEADER),
                    next.to_string(),
                ),
            ],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn components(State(state): State<Arc<ApiState>>) -> Response {
    let components: Vec<Json> = state
        .metrics
        .components()
        .iter()
        .map(|component| {
            let extra: serde_json::Map<String, Json> = component
                .extra_counters()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), json!(value)))
                .collect();
            json!({
                "name": component.name,
                "role": component.role,
                "events_in": component.events_in.get(),
                "events_out": component.events_out.get(),
                "bytes_out": component.bytes_out.get(),
                "errors": component.errors.get(),
                "discarded": component.discarded.get(),
                "counters": extra,
            })
        })
        .collect();
    json_response(StatusCode::OK, &components)
}

/// The most events one tap request returns, and the longest it waits.
const TAP_MAX_EVENTS: usize = 10_000;
const TAP_MAX_WAIT: Duration = Duration::from_secs(60);

/// `limit` and `timeout` of a tap request's query string.
fn tap_options(query: Option<&str>) -> Result<(usize, Duration), String> {
    let mut limit = 10;
    let mut timeout = Duration::from_secs(5);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=TAP_MAX_EVENTS).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "limit must be a number from 1 to {TAP_MAX_EVENTS}, found {value:?}"
                        )
                    })?;
            }
            "timeout" => {
                timeout = parse_duration(value)
                    .ok()
                    .filter(|wait| *wait <= TAP_MAX_WAIT)
                    .ok_or_else(|| {
                        format!("timeout must be a duration up to 60s such as 5s, found {value:?}")
                    })?;
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; expected limit or timeout"
                ));
            }
        }
    }
    Ok((limit, timeout))
}

async fn tap(State(state): State<Arc<ApiState>>, Path(name): Path<String>, uri: Uri) -> Response {
    let Some(topic) = state.topics.get(&name) else {
        return no_such_topic(&state, &name);
    };
    let (limit, timeout) = match tap_options(uri.query()) {
        Ok(options) => options,
        Err(message) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }));
        }
    };
    let mut batches = topic.tap(64);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = Vec::new();
    let mut taken = 0;
    while taken < limit {
        let batch = tokio::select! {
            batch = tokio::time::timeout_at(deadline, batches.recv()) => batch,
            () = state.shutdown.wait() => break,
        };
        let Ok(Some(batch)) = batch else {
            break;
        };
        for event in batch.events().iter().take(limit - taken) {
            encode_event(event, &mut body);
            body.push(b'\n');
            taken += 1;
        }
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let text = prometheus_text(
        &state.metrics,
        &state.topics,
        state.started.elapsed().as_secs_f64(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Fetches up to `limit` events published to `topic` within `timeout` from the admin API at
/// `api` (`host:port`), as NDJSON: what `sluice tap` prints.
///
/// # Errors
/// A message saying what failed: the agent unreachable, or its answer (no such topic).
pub async fn tap_remote(
    api: &str,
    topic: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let url = format!(
        "http://{api}/tap/{topic}?limit={limit}&timeout={}ms",
        timeout.as_millis()
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout + Duration::from_secs(10))
        .build()
        .map_err(|error| error.to_string())?;
    let response = client.get(&url).send().await.map_err(|error| {
        format!("cannot reach the admin API at {api} (is `[api]` in the agent's config?): {error}")
    })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| format!("reading the answer of {url}: {error}"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<Json>(&body)
            .ok()
            .and_then(|answer| answer["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(format!("{status}: {message}"));
    }
    Ok(body.to_vec())
}

/// One metric family being written: its samples follow its `HELP` and `TYPE` lines.
struct Family<'a> {
    out: &'a mut String,
    name: String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let name = format!("sluice_{name}");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(&self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (name, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Pipeline => "pipeline",
        Role::Sink => "sink",
    }
}

/// The fields of a counters struct, by name, from its serde form.
fn counter_fields(counters: &impl serde::Serialize) -> Vec<(String, u64)> {
    match serde_json::to_value(counters) {
        Ok(Json::Object(fields)) => fields
            .into_iter()
            .filter_map(|(name, value)| value.as_u64().map(|value| (name, value)))
            .collect(),
        _ => Vec::new(),
    }
}

/// A sample row: its labels, and the fields of its counters struct by name.
type CounterRow<'a> = (Vec<(&'a str, &'a str)>, Vec<(String, u64)>);

/// One counter family per field of a counters struct (`<prefix>_<field>_total`), with a sample
/// per row: its labels and the struct's fields, read once per row by [`counter_fields`]. Every
/// row holds the same struct, so its fields come in the same order.
fn counter_families(out: &mut String, prefix: &str, rows: &[CounterRow<'_>]) {
    let Some((_, first)) = rows.first() else {
        return;
    };
    for (index, (counter, _)) in first.iter().enumerate() {
        let mut family = Family::new(
            out,
            &format!("{prefix}_{counter}_total"),
            "counter",
            &format!("The {prefix}'s `{counter}` counter."),
        );
        for (labels, fields) in rows {
            family.sample(labels, fields[index].1);
        }
    }
}

/// Every metric in the Prometheus text exposition format (version 0.0.4).
pub fn prometheus_text(
    metrics: &Metrics,
    topics: &IndexMap<String, Topic>,
    uptime_seconds: f64,
) -> String {
    let mut out = String::new();
    Family::new(
        &mut out,
        "uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
    )
    .sample(&[], uptime_seconds);
    Family::new(&mut out, "build_info", "gauge", "The agent's version.")
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);

    let components = metrics.components();
    type Read = fn(&crate::metrics::ComponentMetrics) -> u64;
    let standard: [(&str, &str, Read); 5] = [
        (
            "component_events_in_total",
            "Events a pipeline or sink received.",
            |c| c.events_in.get(),
        ),
        (
            "component_events_out_total",
            "Events a source produced, a pipeline published or a sink delivered.",
            |c| c.events_out.get(),
        ),
        (
            "component_bytes_out_total",
            "Bytes passed on: line bytes read by sources, bytes sinks encoded for what their store accepted (before compression; 0 for blackhole).",
            |c| c.bytes_out.get(),
        ),
        (
            "component_errors_total",
            "Events that failed: rejected by a step, refused by a store, undecodable input.",
            |c| c.errors.get(),
        ),
        (
            "component_discarded_total",
            "Events discarded on purpose (filtered out, sampled away, deduplicated).",
            |c| c.discarded.get(),
        ),
    ];
    for (name, help, read) in standard {
        let mut family = Family::new(&mut out, name, "counter", help);
        for component in &components {
            let role = role_name(component.role);
            family.sample(
                &[("component", &component.name), ("role", role)],
                read(component),
            );
        }
    }
    let mut family = Family::new(
        &mut out,
        "component_counter_total",
        "counter",
        "A component's own counters (invalid_utf8, retries, rejected_requests, …) by name.",
    );
    for component in &components {
        let role = role_name(component.role);
        for (counter, value) in component.extra_counters() {
            family.sample(
                &[
                    ("component", &component.name),
                    ("role", role),
                    ("counter", counter),
                ],
                value,
            );
        }
    }

    let stats: Vec<_> = topics.values().map(Topic::stats).collect();
    type Gauge = fn(&crate::topic::TopicStats) -> u64;
    let gauges: [(&str, &str, Gauge); 5] = [
        (
            "topic_retained_events",
            "Events held by the topic now.",
            |t| t.retained_events,
        ),
        (
            "topic_retained_bytes",
            "Estimated bytes held by the topic now.",
            |t| t.retained_bytes,
        ),
        ("topic_max_events", "The topic's capacity in events.", |t| {
            t.max_events
        }),
        ("topic_max_bytes", "The topic's capacity in bytes.", |t| {
            t.max_bytes
        }),
        (
            "topic_end_offset",
            "The offset the topic's next event will get.",
            |t| t.end_offset.0,
        ),
    ];
    for (name, help, read) in gauges {
        let mut family = Family::new(&mut out, name, "gauge", help);
        for topic in &stats {
            family.sample(&[("topic", &topic.name)], read(topic));
        }
    }
    let topic_rows: Vec<_> = stats
        .iter()
        .map(|topic| {
            (
                vec![("topic", topic.name.as_str())],
                counter_fields(&topic.counters),
            )
        })
        .collect();
    counter_families(&mut out, "topic", &topic_rows);

    // Disk topics: their files, and recovery (torn tails, quarantined records) and cache counters.
    let disk: Vec<_> = stats
        .iter()
        .filter_map(|topic| topic.disk.as_ref().map(|disk| (topic.name.as_str(), disk)))
        .collect();
    type DiskGauge = fn(&crate::topic::DiskStats) -> u64;
    let disk_gauges: [(&str, &str, DiskGauge); 2] = [
        (
            "topic_disk_bytes",
            "Bytes of a disk topic's segment files.",
            |d| d.disk_bytes,
        ),
        (
            "topic_disk_segments",
            "Segment files of a disk topic.",
            |d| d.segments as u64,
        ),
    ];
    for (name, help, read) in disk_gauges {
        if disk.is_empty() {
            break;
        }
        let mut family = Family::new(&mut out, name, "gauge", help);
        for (topic, stats) in &disk {
            family.sample(&[("topic", topic)], read(stats));
        }
    }
    let disk_rows: Vec<_> = disk
        .iter()
        .map(|(topic, stats)| (vec![("topic", *topic)], counter_fields(&stats.log)))
        .collect();
    counter_families(&mut out, "topic_disk", &disk_rows);

    type SubGauge = fn(&crate::topic::SubscriptionStats) -> u64;
    let sub_gauges: [(&str, &str, SubGauge); 3] = [
        (
            "subscription_lag_events",
            "Events published to the topic and not yet acknowledged by the subscription.",
            |s| s.lag_events,
        ),
        (
            "subscription_committed_offset",
            "Everything before this offset is acknowledged by the subscription.",
            |s| s.committed_offset.0,
        ),
        (
            "subscription_in_flight_batches",
            "Batches handed to the subscription's workers and not yet acknowledged.",
            |s| s.in_flight_batches as u64,
        ),
    ];
    for (name, help, read) in sub_gauges {
        let mut family = Family::new(&mut out, name, "gauge", help);
        for topic in &stats {
            for sub in &topic.subscriptions {
                family.sample(
                    &[("topic", &topic.name), ("subscription", &sub.name)],
                    read(sub),
                );
            }
        }
    }
    let subscription_rows: Vec<_> = stats
        .iter()
        .flat_map(|topic| {
            topic.subscriptions.iter().map(|sub| {
                let labels = vec![
                    ("topic", topic.name.as_str()),
                    ("subscription", sub.name.as_str()),
                ];
                (labels, counter_fields(&sub.counters))
            })
        })
        .collect();
    counter_families(&mut out, "subscription", &subscription_rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::{SubscriptionSettings, TopicSettings};
    use sluice_pipelines::{Batch, Event};

    #[tokio::test]
    async fn metrics_name_every_component_topic_and_subscription() {
        let metrics = Metrics::new();
        let source = metrics.register("nginx \"edge\"", Role::Source);
        source.events_out.add(3);
        source.counter("invalid_utf8").add(2);
        let sink = metrics.register("pg", Role::Sink);
        sink.errors.add(1);
        let topic = Topic::in_memory("raw", TopicSettings::default());
        let sub = topic.subscribe(SubscriptionSettings::new("pg"));
        let producer = topic.producer();
        producer
            .send(Batch::new(vec![Event::default(), Event::default()]))
            .await;
        let mut topics = IndexMap::new();
        topics.insert("raw".to_owned(), topic);

        let text = prometheus_text(&metrics, &topics, 1.5);
        for line in [
            "# TYPE sluice_component_events_out_total counter",
            r#"sluice_component_events_out_total{component="nginx \"edge\"",role="source"} 3"#,
            r#"sluice_component_errors_total{component="pg",role="sink"} 1"#,
            r#"sluice_component_counter_total{component="nginx \"edge\"",role="source",counter="invalid_utf8"} 2"#,
            r#"sluice_topic_retained_events{topic="raw"} 2"#,
            r#"sluice_topic_end_offset{topic="raw"} 2"#,
            r#"sluice_topic_published_events_total{topic="raw"} 2"#,
            r#"sluice_topic_dropped_newest_total{topic="raw"} 0"#,
            r#"sluice_subscription_lag_events{topic="raw",subscription="pg"} 2"#,
            r#"sluice_subscription_acked_events_total{topic="raw",subscription="pg"} 0"#,
            "sluice_uptime_seconds 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        // Every sample belongs to a family declared just before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "undeclared {name}");
            }
        }

        let delivery = sub.next().await.unwrap();
        delivery.ack();
        let text = prometheus_text(&metrics, &topics, 2.0);
        assert!(
            text.contains(r#"sluice_subscription_lag_events{topic="raw",subscription="pg"} 0"#),
            "{text}"
        );
        drop(producer);
    }

    #[tokio::test]
    async fn disk_topics_report_their_files_and_recovery_counters() {
        let dir = tempfile::tempdir().unwrap();
        let topic = Topic::on_disk(
            "archive",
            TopicSettings::default(),
            dir.path(),
            crate::topic::disk::DiskSettings::default(),
        )
        .unwrap();
        let producer = topic.producer();
        producer
            .send(Batch::new(vec![Event::default(), Event::default()]))
            .await;
        topic.flush().unwrap();
        let memory = Topic::in_memory("raw", TopicSettings::default());
        let mut topics = IndexMap::new();
        topics.insert("archive".to_owned(), topic);
        topics.insert("raw".to_owned(), memory);
        let text = prometheus_text(&Metrics::new(), &topics, 1.0);
        let disk_bytes = text
            .lines()
            .find_map(|line| line.strip_prefix(r#"sluice_topic_disk_bytes{topic="archive"} "#))
            .unwrap_or_else(|| panic!("no disk bytes:\n{text}"));
        assert!(disk_bytes.parse::<u64>().unwrap() > 0);
        for line in [
            r#"sluice_topic_disk_segments{topic="archive"} 1"#,
            r#"sluice_topic_disk_corrupt_records_total{topic="archive"} 0"#,
            r#"sluice_topic_disk_torn_tails_total{topic="archive"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(!text.contains(r#"sluice_topic_disk_bytes{topic="raw"}"#));
        drop(producer);
    }

    #[tokio::test]
    async fn serves_health_topics_components_and_draining() {
        let metrics = Arc::new(Metrics::new());
        metrics.register("gen", Role::Source).events_out.add(5);
        let topic = Topic::in_memory("raw", TopicSettings::default());
        let _sub = topic.subscribe(SubscriptionSettings::new("out"));
        let mut topics = IndexMap::new();
        topics.insert("raw".to_owned(), topic);
        let (trigger, shutdown) = crate::shutdown::channel();
        let api = AdminApi::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let base = format!("http://{}", api.local_addr().unwrap());
        let server = tokio::spawn(api.serve(metrics, topics, shutdown));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let get = |path: &str| client.get(format!("{base}{path}")).send();

        let health = get("/health").await.unwrap();
        assert_eq!(health.status(), 200);
        let body: Json = serde_json::from_slice(&health.bytes().await.unwrap()).unwrap();
        assert_eq!(body["status"], "ok");

        let topics: Json =
            serde_json::from_slice(&get("/topics").await.unwrap().bytes().await.unwrap()).unwrap();
        assert_eq!(topics[0]["name"], "raw");
        assert_eq!(topics[0]["subscriptions"][0]["name"], "out");
        assert_eq!(topics[0]["max_events"], 20000);

        let components: Json =
            serde_json::from_slice(&get("/components").await.unwrap().bytes().await.unwrap())
                .unwrap();
        assert_eq!(components[0]["name"], "gen");
        assert_eq!(components[0]["role"], "source");
        assert_eq!(components[0]["events_out"], 5);

        let metrics = get("/metrics").await.unwrap();
        assert_eq!(
            metrics.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = metrics.text().await.unwrap();
        assert!(
            text.contains(r#"sluice_component_events_out_total{component="gen",role="source"} 5"#)
        );

        assert_eq!(get("/nope").await.unwrap().status(), 404);

        trigger.trigger();
        let draining = get("/health").await.unwrap();
        assert_eq!(draining.status(), 503);
        let body: Json = serde_json::from_slice(&draining.bytes().await.unwrap()).unwrap();
        assert_eq!(body["status"], "draining");
        server.abort();
    }

    #[test]
    fn tap_options_have_defaults_and_bounds() {
        assert_eq!(tap_options(None), Ok((10, Duration::from_secs(5))));
        assert_eq!(
            tap_options(Some("limit=3&timeout=250ms")),
            Ok((3, Duration::from_millis(250)))
        );
        for (query, expected) in [
            ("limit=0", "limit must be a number from 1 to 10000"),
            ("limit=many", "limit must be a number"),
            ("timeout=2h", "timeout must be a duration up to 60s"),
            ("timeout=", "timeout must be a duration"),
            ("follow=1", "unknown parameter \"follow\""),
        ] {
            let error = tap_options(Some(query)).unwrap_err();
            assert!(error.contains(expected), "{query}: {error}");
        }
    }

    #[tokio::test]
    async fn tap_returns_the_next_events_of_a_topic() {
        let topic = Topic::in_memory("web.raw", TopicSettings::default());
        let producer = topic.producer();
        let mut topics = IndexMap::new();
        topics.insert("web.raw".to_owned(), topic);
        let (_trigger, shutdown) = crate::shutdown::channel();
        let api = AdminApi::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let address = api.local_addr().unwrap().to_string();
        let server = tokio::spawn(api.serve(Arc::new(Metrics::new()), topics, shutdown));

        // Events published while the tap waits: it takes the first three.
        let publisher = tokio::spawn(async move {
            for round in 0..1000 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut event = Event::default();
                event.insert("n", round as i64);
                producer.send(Batch::new(vec![event.clone(), event])).await;
            }
        });
        let lines = tap_remote(&address, "web.raw", 3, Duration::from_secs(5))
            .await
            .unwrap();
        let lines: Vec<Json> = String::from_utf8(lines)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["n"], lines[1]["n"]);
        assert_eq!(
            lines[2]["n"].as_i64(),
            lines[0]["n"].as_i64().map(|n| n + 1)
        );
        publisher.abort();
        let _ = publisher.await;

        // Nothing published: an empty answer after the timeout.
        let nothing = tap_remote(&address, "web.raw", 3, Duration::from_millis(100));
        assert_eq!(nothing.await.unwrap(), b"");
        let missing = tap_remote(&address, "nope", 3, Duration::from_millis(100)).await;
        assert_eq!(
            missing.unwrap_err(),
            "404 Not Found: no topic \"nope\"; the topics are: web.raw"
        );
        let unreachable = tap_remote("127.0.0.1:1", "web.raw", 1, Duration::from_millis(100)).await;
        assert!(
            unreachable
                .unwrap_err()
                .contains("cannot reach the admin API at 127.0.0.1:1")
        );
        server.abort();
    }

    #[tokio::test]
    async fn read_returns_retained_events_from_an_offset_without_consuming_them() {
        let topic = Topic::in_memory("raw", TopicSettings::default());
        let producer = topic.producer();
        let sub = topic.subscribe(SubscriptionSettings::new("out"));
        for first in [0, 3, 6, 9] {
            let events = (first..first + 3)
                .map(|n| {
                    let mut event = Event::default();
                    event.insert("n", n);
                    event
                })
                .collect();
            producer.send(Batch::new(events)).await;
        }
        // The oldest batch is acknowledged and trimmed: offsets 3.. are retained.
        sub.next().await.unwrap().ack();
        let mut topics = IndexMap::new();
        topics.insert("raw".to_owned(), topic.clone());
        let (_trigger, shutdown) = crate::shutdown::channel();
        let api = AdminApi::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let base = format!("http://{}", api.local_addr().unwrap());
        let server = tokio::spawn(api.serve(Arc::new(Metrics::new()), topics, shutdown));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let read = |query: &str| {
            let request = client.get(format!("{base}/topics/raw/read?{query}")).send();
            async move {
                let response = request.await.unwrap();
                let status = response.status().as_u16();
                let next = response
                    .headers()
                    .get(NEXT_OFFSET_HEADER)
                    .map(|value| value.to_str().unwrap().to_owned());
                let body = response.text().await.unwrap();
                let numbers: Vec<i64> = body
                    .lines()
                    .filter_map(|line| serde_json::from_str::<Json>(line).ok())
                    .filter_map(|event| event["n"].as_i64())
                    .collect();
                (status, numbers, next, body)
            }
        };

        let (status, numbers, next, _) = read("from=earliest&n=5").await;
        assert_eq!(status, 200);
        assert_eq!(numbers, [3, 4, 5, 6, 7]);
        assert_eq!(next.as_deref(), Some("8"));
        let (_, numbers, next, _) = read("from=7&n=100").await;
        assert_eq!(numbers, [7, 8, 9, 10, 11], "from inside a batch");
        assert_eq!(next.as_deref(), Some("12"));
        let (_, numbers, _, _) = read("from=1").await;
        assert_eq!(
            numbers,
            [3, 4, 5, 6, 7, 8, 9, 10, 11],
            "trimmed offsets read from the oldest"
        );
        let (_, numbers, next, _) = read("from=latest").await;
        assert!(numbers.is_empty());
        assert_eq!(next.as_deref(), Some("12"));
        let (status, _, _, body) = read("n=0").await;
        assert_eq!(status, 400);
        assert!(
            body.contains("n must be a number from 1 to 10000"),
            "{body}"
        );
        let (status, _, _, body) = read("from=yesterday").await;
        assert_eq!(status, 400);
        assert!(
            body.contains("from must be earliest, latest or an offset"),
            "{body}"
        );
        let missing = client
            .get(format!("{base}/topics/nope/read"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);

        // Reading consumed nothing: the subscription still gets the next batch.
        assert_eq!(topic.stats().subscriptions[0].lag_events, 9);
        assert_eq!(sub.next().await.unwrap().range().start.0, 3);
        let topics: Json = serde_json::from_slice(
            &client
                .get(format!("{base}/topics"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(topics[0]["disk"], Json::Null, "a memory topic");
        server.abort();
        drop(producer);
    }

    #[test]
    fn a_port_in_use_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = AdminApi::bind(address).err().unwrap().to_string();
        assert!(
            error.contains(&format!("cannot listen on {address} for the admin API")),
            "{error}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
