//! The polling loop: fetch (with validators, cursor, retries), decode, publish, and persist the
//! state once the topic says the items are safe.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use sluice_pipelines::codec::json::JsonDecoder;
use sluice_pipelines::{Batch, BuildError, Event, EventMeta, Value};
use sluice_sink::http::{client, is_retryable_status, retry_after, with_auth};
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::{PollDecoding, Settings};
use super::state::{self, Cursor, PollState};
use crate::metrics::Counter;
use crate::sources::body::{self, Choice, Decoding, Format, Partial, Stamp};
use crate::sources::throttle::Throttle;
use crate::sources::{BATCH_EVENTS, Source, SourceContext, SourceError, SourceFuture};
use crate::topic::{Offset, Published};

/// Decoded items: the events, and what could not become one (raw input and the reason).
type Decoded = (Vec<Event>, Vec<(Event, String)>);

/// How long a stopping poller waits for its last items to become safe, so their cursor is kept.
const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// How much of an error answer's body goes into the log.
const ERROR_BODY_BYTES: usize = 200;

/// The `http_poll` source.
#[derive(Debug)]
pub struct HttpPoll {
    settings: Arc<Settings>,
    client: reqwest::Client,
}

impl HttpPoll {
    /// A poller with its HTTP client.
    ///
    /// # Errors
    /// A [`BuildError`] when the client cannot be built.
    pub fn new(settings: Settings) -> Result<Self, BuildError> {
        let client = client(settings.request_timeout, settings.headers.clone())?;
        Ok(HttpPoll {
            settings: Arc::new(settings),
            client,
        })
    }
}

impl Source for HttpPoll {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(async move { Poller::new(*self, ctx).run().await })
    }
}

/// Why a fetch failed.
#[derive(Debug)]
struct FetchError {
    message: String,
    /// Worth retrying within this poll.
    retryable: bool,
    /// What the server asked for.
    retry_after: Option<Duration>,
}

impl FetchError {
    fn request(error: reqwest::Error) -> Self {
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        FetchError {
            message: format!("{kind}: {error}"),
            retryable: true,
            retry_after: None,
        }
    }
}

/// A fresh answer.
struct Answer {
    body: Bytes,
    etag: Option<String>,
    last_modified: Option<String>,
    ndjson: bool,
}

struct Counters {
    polls: Arc<Counter>,
    poll_errors: Arc<Counter>,
    retries: Arc<Counter>,
    not_modified: Arc<Counter>,
    invalid_events: Arc<Counter>,
    dropped_events: Arc<Counter>,
    state_errors: Arc<Counter>,
}

struct Poller {
    settings: Arc<Settings>,
    client: reqwest::Client,
    ctx: SourceContext,
    counters: Counters,
    /// The state after the last poll: what the next request sends.
    state: PollState,
    /// States to persist once the topic's safe offset reaches their end offset, oldest first.
    pending: VecDeque<(Offset, PollState)>,
    safe: watch::Receiver<Offset>,
    decoder: JsonDecoder,
    rng: SmallRng,
    log: Throttle,
    /// Where the host and path of the URL are shown in logs (never the query: it may hold keys).
    target: String,
}

impl Poller {
    fn new(source: HttpPoll, ctx: SourceContext) -> Self {
        let metrics = &ctx.metrics;
        let counters = Counters {
            polls: metrics.counter("polls"),
            poll_errors: metrics.counter("poll_errors"),
            retries: metrics.counter("retries"),
            not_modified: metrics.counter("not_modified"),
            invalid_events: metrics.counter("invalid_events"),
            dropped_events: metrics.counter("dropped_events"),
            state_errors: metrics.counter("state_errors"),
        };
        let url = &source.settings.url;
        let target = format!("{}{}", url.host_str().unwrap_or_default(), url.path());
        // Spread pollers of the same config apart without an OS entropy source.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
            ^ u64::from(ctx.id.0).rotate_left(32);
        Poller {
            safe: ctx.output.safe_offset(),
            settings: source.settings,
            client: source.client,
            counters,
            state: PollState::default(),
            pending: VecDeque::new(),
            decoder: JsonDecoder::new(),
            rng: SmallRng::seed_from_u64(seed),
            log: Throttle::default(),
            target,
            ctx,
        }
    }

    async fn run(mut self) -> Result<(), SourceError> {
        let path = state::state_path(&self.ctx.data_dir, &self.ctx.name);
        match tokio::task::spawn_blocking(move || state::load(&path)).await {
            Ok(Ok(Some(state))) => self.state = state,
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                // Starting over re-reads items (duplicates) but loses nothing; stopping would.
                self.counters.state_errors.add(1);
                tracing::error!(source = %self.ctx.name, %error, "Cannot read the poll state; starting without a cursor");
            }
            Err(error) => return Err(SourceError::State(error)),
        }
        let mut topic_alive = true;
        let mut next = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = self.ctx.shutdown.wait() => break,
                () = tokio::time::sleep_until(next) => {
                    let started = Instant::now();
                    if !self.poll().await {
                        break;
                    }
                    next = started + self.settings.interval + self.jitter();
                    self.persist_safe().await;
                }
                changed = self.safe.changed(), if topic_alive && !self.pending.is_empty() => {
                    topic_alive = changed.is_ok();
                    self.persist_safe().await;
                }
            }
        }
        // Events already in the topic may be acknowledged in a moment: keep their cursor then.
        let deadline = Instant::now() + FLUSH_WAIT;
        while topic_alive && !self.pending.is_empty() {
            tokio::select! {
                changed = self.safe.changed() => {
                    topic_alive = changed.is_ok();
                    self.persist_safe().await;
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        Ok(())
    }

    fn jitter(&mut self) -> Duration {
        let most = self.settings.jitter.as_millis() as u64;
        if most == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.rng.random_range(0..=most))
    }

    /// One poll with its retries. Returns `false` when shutdown interrupted it.
    async fn poll(&mut self) -> bool {
        self.counters.polls.add(1);
        let mut backoff = self.settings.retry_initial;
        let mut attempt = 0;
        loop {
            let fetched = tokio::select! {
                biased;
                () = self.ctx.shutdown.wait() => return false,
                fetched = self.fetch() => fetched,
            };
            let error = match fetched {
                Ok(Some(answer)) => return self.ingest(answer).await,
                Ok(None) => {
                    self.counters.not_modified.add(1);
                    return true;
                }
                Err(error) => error,
            };
            self.counters.poll_errors.add(1);
            self.ctx.metrics.errors.add(1);
            let retry = error.retryable && attempt + 1 < self.settings.max_attempts;
            if let Some(left_out) = self.log.hit() {
                tracing::warn!(
                    source = %self.ctx.name,
                    target = %self.target,
                    error = %error.message,
                    attempt = attempt + 1,
                    will_retry = retry,
                    left_out,
                    "Poll failed"
                );
            }
            if !retry {
                return true;
            }
            attempt += 1;
            self.counters.retries.add(1);
            let wait = error
                .retry_after
                .map_or(backoff, |asked| asked.min(self.settings.retry_max));
            backoff = (backoff * 2).min(self.settings.retry_max);
            tokio::select! {
                biased;
                () = self.ctx.shutdown.wait() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One request. `Ok(None)`: not modified.
    async fn fetch(&self) -> Result<Option<Answer>, FetchError> {
        let settings = &self.settings;
        let mut url = settings.url.clone();
        if settings.cursor.is_some()
            && let Some(cursor) = &self.state.cursor
        {
            let param = settings.cursor_param.as_str();
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(name, _)| name != param)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .append_pair(param, &cursor.to_query());
        }
        let mut request = self.client.request(settings.method.clone(), url);
        if let Some(body) = &settings.body {
            request = request.body(body.clone());
        }
        request = with_auth(request, settings.auth.as_ref());
        if let Some(etag) = &self.state.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(last_modified) = &self.state.last_modified {
            request = request.header(IF_MODIFIED_SINCE, last_modified);
        }
        let mut response = request.send().await.map_err(FetchError::request)?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            // Every 5xx, not only the sinks' retryable ones: a poll that fails is retried
            // within the poll or tried again at the next, so a retry costs little.
            let retryable = status.is_server_error() || is_retryable_status(status);
            let mut snippet = Vec::new();
            while snippet.len() < ERROR_BODY_BYTES
                && let Ok(Some(chunk)) = response.chunk().await
            {
                snippet.extend_from_slice(&chunk);
            }
            snippet.truncate(ERROR_BODY_BYTES);
            return Err(FetchError {
                message: format!(
                    "answer {status}: {}",
                    String::from_utf8_lossy(&snippet).trim()
                ),
                retryable,
                retry_after,
            });
        }
        let etag = header(ETAG);
        let last_modified = header(LAST_MODIFIED);
        let ndjson = match settings.decoding {
            PollDecoding::Ndjson => true,
            PollDecoding::Json => false,
            // The media types the http_server source reads as NDJSON.
            PollDecoding::Auto => matches!(
                body::choose(
                    Decoding::Auto,
                    header(CONTENT_TYPE).as_deref().map(str::as_bytes)
                ),
                Ok(Choice::Format(Format::Ndjson))
            ),
        };
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(FetchError::request)? {
            if (body.len() + chunk.len()) as u64 > settings.max_body_bytes {
                return Err(FetchError {
                    message: format!(
                        "answer larger than max_body_bytes ({} bytes)",
                        settings.max_body_bytes
                    ),
                    retryable: false,
                    retry_after: None,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(Answer {
            body: body.freeze(),
            etag,
            last_modified,
            ndjson,
        }))
    }

    /// Decodes and publishes an answer, then records the state it leads to. Returns `false` when
    /// shutdown interrupted publishing (the state is then not advanced: the items come again).
    async fn ingest(&mut self, answer: Answer) -> bool {
        let meta = self.meta();
        let items = if answer.ndjson {
            self.ndjson(&answer.body)
        } else {
            self.json(&answer.body)
        };
        let (events, rejected) = match items {
            Ok(items) => items,
            Err(message) => {
                self.counters.poll_errors.add(1);
                self.ctx.metrics.errors.add(1);
                if let Some(left_out) = self.log.hit() {
                    tracing::warn!(source = %self.ctx.name, target = %self.target, error = %message, left_out, "Cannot decode the answer");
                }
                return true;
            }
        };
        if !rejected.is_empty() {
            let invalid = rejected.len() as u64;
            self.counters.invalid_events.add(invalid);
            self.ctx.metrics.errors.add(invalid);
            // `dead_letter` logs the reasons, by kind and rate-limited.
            if !self.ctx.dead_letter(rejected).await {
                return false;
            }
        }
        let mut cursor = self.state.cursor.clone();
        if let Some(path) = &self.settings.cursor {
            for event in &events {
                if let Some(found) = event.fields().get_path(path).and_then(Cursor::from_value) {
                    cursor = Some(Cursor::max(cursor, found));
                }
            }
        }
        let mut end = None;
        let mut events = events;
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(BATCH_EVENTS));
            let mut batch = std::mem::replace(&mut events, rest);
            for event in &mut batch {
                *event.meta_mut() = meta;
            }
            let count = batch.len() as u64;
            let published = tokio::select! {
                biased;
                () = self.ctx.shutdown.wait() => return false,
                published = self.ctx.output.send(Batch::new(batch)) => published,
            };
            match published {
                Published::Stored(range) => {
                    end = Some(range.end);
                    self.ctx.metrics.events_out.add(count);
                }
                Published::Dropped => self.counters.dropped_events.add(count),
            }
        }
        self.ctx.metrics.bytes_out.add(answer.body.len() as u64);
        let next = PollState {
            cursor,
            etag: answer.etag,
            last_modified: answer.last_modified,
        };
        self.state = next.clone();
        // A state is safe only when everything before it is: it waits behind older ones. An
        // answer without events replaces the newest waiting state instead of queueing (so a
        // stalled topic does not grow the queue poll after poll).
        match (end, self.pending.back_mut()) {
            (None, Some(back)) => back.1 = next,
            (None, None) => self.save(next).await,
            (Some(end), _) => self.pending.push_back((end, next)),
        }
        true
    }

    /// The metadata of this source's events.
    fn meta(&self) -> EventMeta {
        EventMeta {
            source: self.ctx.id,
            origin: None,
        }
    }

    /// The objects of an NDJSON answer, and the lines that are not objects (raw, with the
    /// reason).
    fn ndjson(&mut self, body: &Bytes) -> Result<Decoded, String> {
        let decoded = body::decode(
            body,
            Format::Ndjson,
            Partial::AcceptValid,
            self.meta(),
            &Stamp::new(),
        );
        Ok((decoded.events, decoded.rejected))
    }

    /// The objects of a JSON answer (one object, or the array at `items_path`), and the array
    /// items that are not objects (as raw JSON, with the reason).
    fn json(&mut self, body: &Bytes) -> Result<Decoded, String> {
        let value = self
            .decoder
            .decode_value(body)
            .map_err(|error| format!("the answer is not JSON: {error}"))?;
        let path = &self.settings.items_path;
        let items = if path.is_empty() {
            value
        } else {
            let found = match &value {
                Value::Map(fields) => fields.get_path(path).cloned(),
                _ => None,
            };
            let shown = || {
                path.iter()
                    .map(|name| name.as_str())
                    .collect::<Vec<_>>()
                    .join(".")
            };
            match found {
                Some(items @ Value::Array(_)) => items,
                Some(other) => {
                    return Err(format!(
                        "items_path `{}` holds {}, not an array",
                        shown(),
                        other.json_kind()
                    ));
                }
                None => return Err(format!("items_path `{}` is not in the answer", shown())),
            }
        };
        match items {
            Value::Array(items) => {
                let mut decoded = body::Decoded::default();
                body::objects(
                    items,
                    Partial::AcceptValid,
                    self.meta(),
                    &Stamp::new(),
                    &mut decoded,
                );
                Ok((decoded.events, decoded.rejected))
            }
            Value::Map(fields) => Ok((vec![Event::from_fields(fields)], Vec::new())),
            other => Err(format!(
                "expected a JSON object or array, found {}",
                other.json_kind()
            )),
        }
    }

    /// Persists the newest pending state whose items are all safe.
    async fn persist_safe(&mut self) {
        let safe = *self.safe.borrow_and_update();
        let mut latest = None;
        while let Some((end, _)) = self.pending.front()
            && *end <= safe
        {
            latest = self.pending.pop_front().map(|(_, state)| state);
        }
        if let Some(state) = latest {
            self.save(state).await;
        }
    }

    async fn save(&mut self, state: PollState) {
        let path = state::state_path(&self.ctx.data_dir, &self.ctx.name);
        let saved = tokio::task::spawn_blocking(move || state::save(&path, &state)).await;
        let error = match saved {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        self.counters.state_errors.add(1);
        if let Some(left_out) = self.log.hit() {
            tracing::warn!(source = %self.ctx.name, %error, left_out, "Cannot save the poll state");
        }
    }
}
