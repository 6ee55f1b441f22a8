//! Request handling: routing, authentication, reading the body within its limits, decoding,
//! publishing with bounded back-pressure, and the JSON answers.
//!
//! The ingest handler answers only once the topic has taken the batch (so a 200 means the events
//! are in the topic), or once it has given up: after `max_wait` on a full topic it answers 503
//! with `Retry-After`, having published nothing. A request is all or nothing: its events go into
//! the topic as one batch.
//!
//! Bodies count against a budget shared by every request (`max_in_flight_bytes`), taken before a
//! body is held and given back once its events are in the topic, so memory stays bounded however
//! many clients send at once; a request that finds the budget spent waits `max_wait`, then gets
//! 503 like one that finds the topic full.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    ALLOW, AUTHORIZATION, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, EXPECT,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use sluice_pipelines::{Batch, Event, EventMeta, SourceId, Str, Value};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::browser::{allow_origin, check_origin, pixel, preflight};
use super::config::{Partial, Settings};
use crate::metrics::{ComponentMetrics, Counter};
use crate::shutdown::Shutdown;
use crate::sources::body::{self as decode, ACCEPTED_TYPES, Choice, Decoded, Stamp};
use crate::sources::dead_letter_events;
use crate::topic::{Producer, Published};
use sluice_sink::gunzip::{GunzipError, gunzip_capped};

/// Bodies at least this large (on the wire) are decoded on the blocking pool, not inline.
const BLOCKING_BODY_BYTES: usize = 256 * 1024;
/// Gzip bodies at least this large are decompressed on the blocking pool: a small one can still
/// expand a thousandfold.
const BLOCKING_GZIP_BYTES: usize = 8 * 1024;
/// The most a refused request's unread body is read and thrown away before the answer, so the
/// client (still sending) sees the answer rather than a reset connection.
const DRAIN_BYTES: usize = 256 * 1024;
/// The longest such a drain may take.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Why a request was refused; each has its own counter, `rejected_requests_<reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 401: no or wrong bearer token.
    Unauthorized,
    /// 400: malformed body.
    BadRequest,
    /// 413: body too large, on the wire or decompressed.
    TooLarge,
    /// 415: unknown Content-Type or Content-Encoding.
    UnsupportedMediaType,
    /// 405: wrong method.
    MethodNotAllowed,
    /// 404: unknown path.
    NotFound,
    /// 408: body not received within `request_timeout`.
    Timeout,
    /// 503: the topic stayed full for `max_wait`.
    TopicFull,
    /// 503: the in-flight body budget stayed spent for `max_wait`.
    Busy,
    /// 503: the source is shutting down.
    ShuttingDown,
    /// 403: an `Origin` (or, for the pixel, `Referer`) that `cors` does not allow.
    ForbiddenOrigin,
}

impl Reason {
    const ALL: [Reason; 11] = [
        Reason::Unauthorized,
        Reason::BadRequest,
        Reason::TooLarge,
        Reason::UnsupportedMediaType,
        Reason::MethodNotAllowed,
        Reason::NotFound,
        Reason::Timeout,
        Reason::TopicFull,
        Reason::Busy,
        Reason::ShuttingDown,
        Reason::ForbiddenOrigin,
    ];

    /// The counter name.
    pub fn counter(self) -> &'static str {
        match self {
            Reason::Unauthorized => "rejected_requests_unauthorized",
            Reason::BadRequest => "rejected_requests_bad_request",
            Reason::TooLarge => "rejected_requests_too_large",
            Reason::UnsupportedMediaType => "rejected_requests_unsupported_media_type",
            Reason::MethodNotAllowed => "rejected_requests_method_not_allowed",
            Reason::NotFound => "rejected_requests_not_found",
            Reason::Timeout => "rejected_requests_timeout",
            Reason::TopicFull => "rejected_requests_topic_full",
            Reason::Busy => "rejected_requests_busy",
            Reason::ShuttingDown => "rejected_requests_shutting_down",
            Reason::ForbiddenOrigin => "rejected_requests_forbidden_origin",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Reason::Unauthorized => StatusCode::UNAUTHORIZED,
            Reason::BadRequest => StatusCode::BAD_REQUEST,
            Reason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reason::NotFound => StatusCode::NOT_FOUND,
            Reason::Timeout => StatusCode::REQUEST_TIMEOUT,
            Reason::ForbiddenOrigin => StatusCode::FORBIDDEN,
            Reason::TopicFull | Reason::Busy | Reason::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// The source's counters, registered once at start.
pub struct Counters {
    /// The component's standard counters.
    pub component: Arc<ComponentMetrics>,
    /// Every HTTP request received.
    pub requests: Arc<Counter>,
    /// Every refused request (the sum of the per-reason counters).
    pub rejected: Arc<Counter>,
    reasons: Vec<Arc<Counter>>,
    /// Lines or items that could not be decoded.
    pub invalid_events: Arc<Counter>,
    /// Events accepted but discarded by a `drop_newest` topic.
    pub dropped_events: Arc<Counter>,
    /// Bad lines not kept because the dead-letter topic stayed full.
    pub dead_letters_dropped: Arc<Counter>,
    /// Connections accepted.
    pub connections: Arc<Counter>,
    /// Times the accept loop waited because `max_connections` were open.
    pub connection_limit_reached: Arc<Counter>,
    /// Connections closed for sitting idle past `idle_timeout`.
    pub connections_idle_closed: Arc<Counter>,
    /// Connections closed for not sending headers within `header_timeout` (slow clients).
    pub connections_slow_closed: Arc<Counter>,
    /// Connections closed because a request outlived every timeout.
    pub connections_stuck_closed: Arc<Counter>,
    /// Connections that failed: malformed HTTP, headers too large (431), TLS handshakes.
    pub connection_errors: Arc<Counter>,
}

impl Counters {
    /// Registers the counters on `component`.
    pub fn new(component: Arc<ComponentMetrics>) -> Self {
        Counters {
            requests: component.counter("requests"),
            rejected: component.counter("rejected_requests"),
            reasons: Reason::ALL
                .iter()
                .map(|reason| component.counter(reason.counter()))
                .collect(),
            invalid_events: component.counter("invalid_events"),
            dropped_events: component.counter("dropped_events"),
            dead_letters_dropped: component.counter("dead_letters_dropped"),
            connections: component.counter("connections"),
            connection_limit_reached: component.counter("connection_limit_reached"),
            connections_idle_closed: component.counter("connections_idle_closed"),
            connections_slow_closed: component.counter("connections_slow_closed"),
            connections_stuck_closed: component.counter("connections_stuck_closed"),
            connection_errors: component.counter("connection_errors"),
            component,
        }
    }

    fn reject(&self, reason: Reason) {
        self.rejected.add(1);
        if let Some(index) = Reason::ALL.iter().position(|r| *r == reason)
            && let Some(counter) = self.reasons.get(index)
        {
            counter.add(1);
        }
    }
}

/// What every request handler shares.
pub struct Shared {
    /// The checked config.
    pub settings: Arc<Settings>,
    /// Where events go.
    pub output: Producer,
    /// The agent's shutdown signal.
    pub shutdown: Shutdown,
    /// Stamped into event metadata.
    pub source: SourceId,
    /// Counters.
    pub counters: Counters,
    /// Bytes of bodies held by requests; see the module doc.
    pub budget: Arc<Semaphore>,
    /// The value of the path field.
    pub path_value: Value,
    /// The source's name, for dead letters.
    pub name: String,
    /// The dead-letter topic, for the bad lines of `accept_valid` bodies.
    pub dead_letter: Option<Producer>,
}

/// What the connection tells its requests.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The address of the connection's peer (the client, or a proxy in front of it).
    pub peer: IpAddr,
    /// The peer's address as a field value, made once per connection.
    pub peer_value: Value,
}

/// The router: the ingest path (with CORS preflights), the pixel path if any, the health path,
/// and JSON answers for everything else.
pub fn router(shared: Arc<Shared>) -> Router {
    let path = shared.settings.path.clone();
    let health = shared.settings.health_path.clone();
    let mut router = Router::new()
        .route(&path, post(ingest).put(ingest).options(preflight))
        .route(&health, get(health_check));
    if let Some(pixel_path) = &shared.settings.pixel_path {
        router = router.route(pixel_path, get(pixel).options(preflight));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

/// The client's address as a field value, when the source records it: the peer, or with
/// `trusted_proxies` the address their forwarding headers name.
pub(super) fn client_address(shared: &Shared, parts: &axum::http::request::Parts) -> Option<Value> {
    shared.settings.remote_addr_field.as_ref()?;
    let info = parts.extensions.get::<ConnInfo>()?;
    let proxies = &shared.settings.trusted_proxies;
    if !proxies.trusts(info.peer) {
        return Some(info.peer_value.clone());
    }
    let client = proxies.client(info.peer, &parts.headers);
    Some(Value::String(Str::from(client.to_string())))
}

/// A refused request: its status comes from the reason.
pub(super) struct Rejection {
    reason: Reason,
    message: String,
    /// The bad line or item, for 400.
    position: Option<decode::Position>,
    /// Events kept despite the error (`accept_valid`).
    accepted: Option<usize>,
    /// Whether the connection must close after the answer (the body is left half read).
    close: bool,
}

impl Rejection {
    pub(super) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
            position: None,
            accepted: None,
            close: false,
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let text = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl Shared {
    /// Counts `rejection` and builds its answer.
    pub(super) fn refuse(&self, rejection: Rejection) -> Response {
        self.counters.reject(rejection.reason);
        let mut body = serde_json::json!({ "error": rejection.message });
        if let Some(position) = rejection.position {
            match position {
                decode::Position::Line(line) => body["line"] = line.into(),
                decode::Position::Item(item) => body["item"] = item.into(),
            }
        }
        if let Some(accepted) = rejection.accepted {
            body["accepted"] = accepted.into();
        }
        let mut response = json_response(rejection.reason.status(), &body);
        let headers = response.headers_mut();
        match rejection.reason {
            Reason::Unauthorized => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sluice\""),
                );
            }
            Reason::TopicFull | Reason::Busy | Reason::ShuttingDown => {
                headers.insert(RETRY_AFTER, self.settings.retry_after_secs.into());
            }
            _ => {}
        }
        response
    }

    /// Whether the request carries one of the tokens (always, when none is configured). Every
    /// token is compared, in constant time, whatever the outcome.
    pub(super) fn authorized(&self, headers: &HeaderMap) -> bool {
        let tokens = &self.settings.tokens;
        if tokens.is_empty() {
            return true;
        }
        let presented = headers
            .get(AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .and_then(|value| {
                let (scheme, rest) = value.split_at_checked(7)?;
                scheme
                    .eq_ignore_ascii_case(b"bearer ")
                    .then(|| rest.trim_ascii())
            })
            .unwrap_or_default();
        let mut matched = subtle::Choice::from(0);
        for token in tokens {
            matched |= presented.ct_eq(token.as_slice());
        }
        !presented.is_empty() && bool::from(matched)
    }
}

/// `POST`/`PUT` on the ingest path.
async fn ingest(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let remote = client_address(&shared, &parts);
    let expects_continue = parts.headers.contains_key(EXPECT);
    let (outcome, allowed) = match check_origin(&shared, &parts.headers, false) {
        Ok(allowed) => (
            receive(&shared, &parts.headers, remote, body).await,
            allowed,
        ),
        Err(rejection) => (Err((rejection, Some(body))), None),
    };
    let mut response = match outcome {
        Ok(accepted) => json_response(StatusCode::OK, &serde_json::json!({ "accepted": accepted })),
        Err((rejection, unread)) => {
            let mut close = rejection.close;
            if let Some(body) = unread {
                // A client that asked to be told before sending its body is told now; one that is
                // already sending has its body read (a little) so it hears the answer.
                close = expects_continue || !drain(body).await;
            }
            let mut response = shared.refuse(rejection);
            if close {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    // An allowed page may read every answer, errors included (it retries on 503).
    allow_origin(&shared, &mut response, allowed);
    response
}

/// A refusal, with the body when it was not read to its end.
pub(super) type Refused = (Rejection, Option<Body>);

/// What the request's headers say about its body.
struct BodyPlan {
    /// How the body is decoded.
    choice: Choice,
    /// Whether it is gzip-compressed.
    gzip: bool,
    /// Its Content-Length, when declared.
    declared: Option<u64>,
}

/// A body read in full, with what decoding it needs.
struct Received {
    /// The body as it came over the wire.
    wire: Bytes,
    /// Whether it is gzip-compressed.
    gzip: bool,
    /// How it is decoded.
    choice: Choice,
    /// The metadata of its events.
    meta: EventMeta,
    /// The fields every event of it gets.
    stamp: Stamp,
}

/// Reads, decodes and publishes one request. Returns the number of events accepted.
async fn receive(
    shared: &Shared,
    headers: &HeaderMap,
    remote: Option<Value>,
    body: Body,
) -> Result<usize, Refused> {
    let plan = match check_headers(shared, headers) {
        Ok(plan) => plan,
        Err(rejection) => return Err((rejection, Some(body))),
    };
    let received_at = chrono::Utc::now();
    let (wire, permit) = read_body(shared, body, plan.declared).await?;
    let received = Received {
        wire,
        gzip: plan.gzip,
        choice: plan.choice,
        meta: EventMeta {
            source: shared.source,
            origin: None,
        },
        stamp: stamp(
            &shared.settings,
            headers,
            remote,
            &shared.path_value,
            received_at,
        ),
    };
    let (decoded, raw_bytes, permit) = decode_body(shared, received, permit).await?;
    deliver(shared, decoded, raw_bytes, permit).await
}

/// Checks what the headers allow before the body is read: credentials, Content-Type,
/// Content-Encoding and a declared length within `max_body_bytes`.
fn check_headers(shared: &Shared, headers: &HeaderMap) -> Result<BodyPlan, Rejection> {
    let settings = &shared.settings;
    if !shared.authorized(headers) {
        return Err(Rejection::new(Reason::Unauthorized, "unauthorized"));
    }
    let choice = decode::choose(
        settings.decoding,
        headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes),
    )
    .map_err(|media| {
        let message = format!("unsupported Content-Type `{media}`; send {ACCEPTED_TYPES}");
        Rejection::new(Reason::UnsupportedMediaType, message)
    })?;
    let gzip = match headers.get(CONTENT_ENCODING).map(HeaderValue::as_bytes) {
        None => false,
        Some(value) => match value.trim_ascii().to_ascii_lowercase().as_slice() {
            b"" | b"identity" => false,
            b"gzip" | b"x-gzip" => true,
            other => {
                let message = format!(
                    "unsupported Content-Encoding `{}`; send gzip or nothing",
                    String::from_utf8_lossy(other)
                );
                return Err(Rejection::new(Reason::UnsupportedMediaType, message));
            }
        },
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if let Some(length) = declared
        && length > settings.max_body_bytes
    {
        let message = format!(
            "body of {length} bytes is larger than the limit of {} bytes",
            settings.max_body_bytes
        );
        return Err(Rejection::new(Reason::TooLarge, message));
    }
    Ok(BodyPlan {
        choice,
        gzip,
        declared,
    })
}

/// Decompresses and decodes a body: inline when small, on the blocking pool when large. Returns
/// the decoded body, its decompressed size and the budget permit (grown by the decompressed
/// bytes).
async fn decode_body(
    shared: &Shared,
    received: Received,
    mut permit: OwnedSemaphorePermit,
) -> Result<(Decoded, u64, OwnedSemaphorePermit), Refused> {
    let blocking = if received.gzip {
        received.wire.len() >= BLOCKING_GZIP_BYTES
    } else {
        received.wire.len() >= BLOCKING_BODY_BYTES
    };
    if !blocking {
        let (decoded, raw_bytes) = prepare(&shared.settings, &shared.budget, &mut permit, received)
            .map_err(|rejection| (rejection, None))?;
        return Ok((decoded, raw_bytes, permit));
    }
    let settings = shared.settings.clone();
    let budget = shared.budget.clone();
    let task = tokio::task::spawn_blocking(move || {
        let result = prepare(&settings, &budget, &mut permit, received);
        (result, permit)
    });
    let (result, permit) = task.await.map_err(|error| {
        (
            Rejection::new(
                Reason::BadRequest,
                format!("decoding the body failed: {error}"),
            ),
            None,
        )
    })?;
    let (decoded, raw_bytes) = result.map_err(|rejection| (rejection, None))?;
    Ok((decoded, raw_bytes, permit))
}

/// Publishes the good events of a decoded body and keeps its bad lines as the settings say; the
/// answer names the first bad line. The budget `permit` is given back once the events are in
/// the topic.
async fn deliver(
    shared: &Shared,
    decoded: Decoded,
    raw_bytes: u64,
    permit: OwnedSemaphorePermit,
) -> Result<usize, Refused> {
    let Decoded {
        events,
        invalid,
        error,
        rejected,
    } = decoded;
    shared.counters.invalid_events.add(invalid);
    shared.counters.component.errors.add(invalid);
    if let Some(bad) = &error
        && shared.settings.partial == Partial::Reject
    {
        let reason = bad.to_string();
        shared
            .counters
            .component
            .rejections
            .record(&shared.name, [("", reason.as_str())]);
        return Err((
            Rejection {
                reason: Reason::BadRequest,
                message: bad.to_string(),
                position: bad.position,
                accepted: Some(0),
                close: false,
            },
            None,
        ));
    }
    let accepted = events.len();
    if accepted > 0 {
        publish(shared, Batch::new(events), raw_bytes).await?;
    }
    drop(permit);
    if !rejected.is_empty() {
        keep_dead_letters(shared, rejected).await;
    }
    match error {
        Some(bad) => Err((
            Rejection {
                reason: Reason::BadRequest,
                message: bad.to_string(),
                position: bad.position,
                accepted: Some(accepted),
                close: false,
            },
            None,
        )),
        None => Ok(accepted),
    }
}

/// The fields every event of this request gets.
pub(super) fn stamp(
    settings: &Settings,
    headers: &HeaderMap,
    remote: Option<Value>,
    path: &Value,
    received_at: chrono::DateTime<chrono::Utc>,
) -> Stamp {
    let mut stamp = Vec::with_capacity(3 + settings.headers.len());
    if let (Some(name), Some(remote)) = (&settings.remote_addr_field, remote) {
        stamp.push((name.clone(), remote));
    }
    if let Some(name) = &settings.path_field {
        stamp.push((name.clone(), path.clone()));
    }
    if let Some(name) = &settings.received_at_field {
        stamp.push((name.clone(), Value::Timestamp(received_at)));
    }
    for (header, field) in &settings.headers {
        if let Some(value) = headers.get(header) {
            let (text, _) = Str::from_utf8_lossy(Bytes::copy_from_slice(value.as_bytes()));
            stamp.push((field.clone(), Value::String(text)));
        }
    }
    stamp
}

/// Reads the body within the size limit, `request_timeout` and the in-flight budget.
async fn read_body(
    shared: &Shared,
    mut body: Body,
    declared: Option<u64>,
) -> Result<(Bytes, OwnedSemaphorePermit), Refused> {
    let settings = &shared.settings;
    let started = Instant::now();
    let deadline = started + settings.request_timeout;
    let budget_deadline = started + settings.max_wait;
    let max = settings.max_body_bytes;
    // With a declared length the whole body is reserved at once; without, chunk by chunk.
    let mut permit = match acquire(shared, declared.unwrap_or(0), budget_deadline).await {
        Ok(permit) => permit,
        Err(reason) => return Err((busy(reason), Some(body))),
    };
    let mut reserved = declared.unwrap_or(0);
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    let mut total: u64 = 0;
    loop {
        let frame = tokio::select! {
            biased;
            () = shared.shutdown.wait() => {
                return Err((busy(Reason::ShuttingDown), Some(body)));
            }
            frame = tokio::time::timeout_at(deadline, body.frame()) => frame,
        };
        let data = match frame {
            Err(_) => {
                let message = format!(
                    "the body was not received within request_timeout ({:?})",
                    settings.request_timeout
                );
                let mut rejection = Rejection::new(Reason::Timeout, message);
                rejection.close = true;
                return Err((rejection, None));
            }
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                let message = format!("cannot read the body: {error}");
                return Err((Rejection::new(Reason::BadRequest, message), None));
            }
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => data,
                // Trailers carry no events.
                Err(_) => continue,
            },
        };
        total += data.len() as u64;
        if total > max {
            let message = format!("body is larger than the limit of {max} bytes");
            return Err((Rejection::new(Reason::TooLarge, message), Some(body)));
        }
        if total > reserved {
            let more = total - reserved;
            match acquire(shared, more, budget_deadline).await {
                Ok(extra) => permit.merge(extra),
                Err(reason) => return Err((busy(reason), Some(body))),
            }
            reserved = total;
        }
        // The common one-chunk body is kept as it came, without a copy.
        match first.take() {
            None if buffer.is_empty() => first = Some(data),
            None => buffer.extend_from_slice(&data),
            Some(previous) => {
                buffer.reserve(
                    declared.map_or(previous.len() + data.len(), |length| length as usize),
                );
                buffer.extend_from_slice(&previous);
                buffer.extend_from_slice(&data);
            }
        }
    }
    let bytes = first.unwrap_or_else(|| buffer.freeze());
    // A declared length larger than the body: give the difference back.
    if reserved > total {
        let surplus = (reserved - total) as usize;
        if let Some(extra) = permit.split(surplus) {
            drop(extra);
        }
    }
    Ok((bytes, permit))
}

fn busy(reason: Reason) -> Rejection {
    let message = match reason {
        Reason::ShuttingDown => "the server is shutting down; retry later",
        _ => "too many request bodies in flight; retry later",
    };
    Rejection::new(reason, message)
}

/// Takes `bytes` from the in-flight budget, waiting until `deadline`.
async fn acquire(
    shared: &Shared,
    bytes: u64,
    deadline: Instant,
) -> Result<OwnedSemaphorePermit, Reason> {
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    if let Ok(permit) = shared.budget.clone().try_acquire_many_owned(bytes) {
        return Ok(permit);
    }
    tokio::select! {
        biased;
        () = shared.shutdown.wait() => Err(Reason::ShuttingDown),
        permit = tokio::time::timeout_at(deadline, shared.budget.clone().acquire_many_owned(bytes)) => {
            match permit {
                Ok(Ok(permit)) => Ok(permit),
                _ => Err(Reason::Busy),
            }
        }
    }
}

/// Decompresses (within the limit and budget) and decodes a body. Returns the decoded body and
/// its decompressed size.
fn prepare(
    settings: &Settings,
    budget: &Arc<Semaphore>,
    permit: &mut OwnedSemaphorePermit,
    received: Received,
) -> Result<(Decoded, u64), Rejection> {
    let Received {
        wire,
        gzip,
        choice,
        meta,
        stamp,
    } = received;
    let body = if gzip {
        let mut reserve = |bytes: usize| {
            let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
            match budget.clone().try_acquire_many_owned(bytes) {
                Ok(extra) => {
                    permit.merge(extra);
                    true
                }
                Err(_) => false,
            }
        };
        let plain = gunzip_capped(&wire, settings.max_decompressed_bytes, &mut reserve).map_err(
            |error| {
                let reason = match error {
                    GunzipError::TooLarge { .. } => Reason::TooLarge,
                    GunzipError::Corrupt { .. } => Reason::BadRequest,
                    GunzipError::NoBudget => Reason::Busy,
                };
                Rejection::new(reason, error.to_string())
            },
        )?;
        // The compressed body is no longer held.
        let wire_len = wire.len();
        drop(wire);
        if let Some(returned) = permit.split(wire_len) {
            drop(returned);
        }
        Bytes::from(plain)
    } else {
        wire
    };
    let format = choice.resolve(&body);
    let decoded = decode::decode(&body, format, settings.partial, meta, &stamp);
    Ok((decoded, body.len() as u64))
}

/// Sends the bad lines of an `accept_valid` body to the dead-letter topic, waiting at most
/// `max_wait` for room (the client is waiting for its answer); what finds no room is counted in
/// `dead_letters_dropped` and logged.
async fn keep_dead_letters(shared: &Shared, rejected: Vec<(Event, String)>) {
    shared.counters.component.rejections.record(
        &shared.name,
        rejected.iter().map(|(_, error)| ("", error.as_str())),
    );
    let Some(topic) = &shared.dead_letter else {
        return;
    };
    let count = rejected.len() as u64;
    let events = dead_letter_events(&shared.name, rejected);
    let sent = tokio::select! {
        biased;
        () = shared.shutdown.wait() => false,
        sent = topic.send_timeout(Batch::new(events), shared.settings.max_wait) => sent.is_ok(),
    };
    if !sent {
        shared.counters.dead_letters_dropped.add(count);
        tracing::warn!(source = %shared.name, count, "The dead-letter topic is full: bad lines of a request were not kept");
    }
}

/// Publishes the batch, waiting at most `max_wait` for room.
pub(super) async fn publish(shared: &Shared, batch: Batch, raw_bytes: u64) -> Result<(), Refused> {
    let events = batch.len() as u64;
    let published = tokio::select! {
        biased;
        () = shared.shutdown.wait() => return Err((busy(Reason::ShuttingDown), None)),
        published = shared.output.send_timeout(batch, shared.settings.max_wait) => published,
    };
    match published {
        Ok(Published::Stored(range)) => {
            shared.counters.component.events_out.add(events);
            shared.counters.component.bytes_out.add(raw_bytes);
            // A disk topic: answer 2xx only once the events are stored (per its fsync policy),
            // so nothing the client was told is kept can be lost to a crash.
            if shared.output.is_persistent() && !shared.output.wait_safe(range.end).await {
                let message = format!("topic `{}` closed before storing", shared.output.topic());
                return Err((Rejection::new(Reason::TopicFull, message), None));
            }
            Ok(())
        }
        Ok(Published::Dropped) => {
            // The topic's `drop_newest` policy: the user chose losing events over holding
            // clients back; the topic counts them too.
            shared.counters.dropped_events.add(events);
            Ok(())
        }
        Err(_) => {
            let message = format!("topic `{}` is full; retry later", shared.output.topic());
            Err((Rejection::new(Reason::TopicFull, message), None))
        }
    }
}

/// Reads and discards up to [`DRAIN_BYTES`] of an unread body. Returns whether it ended.
async fn drain(mut body: Body) -> bool {
    let deadline = Instant::now() + DRAIN_TIME;
    let mut left = DRAIN_BYTES;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, Bytes::len);
                if size >= left {
                    return false;
                }
                left -= size;
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// `GET` on the health path.
async fn health_check(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_triggered() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "shutting_down" }),
        );
    }
    json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

async fn method_not_allowed(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let get_only =
        path == shared.settings.health_path || shared.settings.pixel_path.as_deref() == Some(path);
    let allowed = if get_only { "GET, HEAD" } else { "POST, PUT" };
    let message = format!(
        "method {} is not allowed on {}; use {allowed}",
        parts.method,
        parts.uri.path()
    );
    let drained = parts.method == Method::GET || parts.method == Method::HEAD || drain(body).await;
    let mut response = shared.refuse(Rejection::new(Reason::MethodNotAllowed, message));
    let headers = response.headers_mut();
    headers.insert(ALLOW, HeaderValue::from_static(allowed));
    if !drained {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn not_found(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let message = format!(
        "no such path {}; send events to {} {}",
        parts.uri.path(),
        Method::POST,
        shared.settings.path
    );
    let drained = parts.method == Method::GET || parts.method == Method::HEAD || drain(body).await;
    let mut response = shared.refuse(Rejection::new(Reason::NotFound, message));
    if !drained {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The path field's value, built once.
pub fn path_value(settings: &Settings) -> Value {
    Value::String(Str::from(settings.path.as_str()))
}
