//! The admin API (`[api]`): what a running agent is doing, over HTTP, for operators and their
//! monitoring.
//!
//! - `GET /health`: `200 {"status":"ok", …}` while running, `503 {"status":"draining"}` once
//!   shutdown has started (so a load balancer stops sending to an `http_server` source first);
//! - `GET /metrics`: every counter of every component and every topic and subscription depth, in
//!   the Prometheus text format;
//! - `GET /topics`: each topic's depth, capacity, offsets, counters and subscriptions (lag,
//!   committed offset, batches in flight) as JSON;
//! - `GET /components`: each source, pipeline and sink with its counters, what it lost and why
//!   (`lost`), and its own `state` (a file source: the files it holds open and why), as JSON;
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

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::topic::{Offset, Topic};

mod prometheus;
#[cfg(test)]
mod tests;

pub use prometheus::prometheus_text;

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
                "lost": component.lost.by_reason().into_iter()
                    .map(|(reason, lost)| (reason.to_owned(), json!({"lines": lost.events, "bytes": lost.bytes})))
                    .collect::<serde_json::Map<String, Json>>(),
                "state": component.state(),
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
