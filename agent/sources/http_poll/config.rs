//! The `http_poll` config, checked into [`Settings`] and built into an [`HttpPoll`].

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, Url};
use sluice_pipelines::units::{ByteSize, HumanDuration};
use sluice_pipelines::{BuildError, FieldName};
use sluice_sink::http::{Auth, header_map, parse_url};

use super::poller::HttpPoll;

/// Default `interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default `request_timeout` of one request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `retry.max_attempts` of one poll: the first request and three retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default `retry.initial`: the wait before the first retry, doubled for each next one.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Default `retry.max`.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);
/// Default `max_body_bytes` of an answer.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Default `cursor_param`.
pub const DEFAULT_CURSOR_PARAM: &str = "cursor";

/// Config of the `http_poll` source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPollConfig {
    /// What to fetch: an `http://` URL (`https://` with the `tls` feature).
    pub url: String,
    /// `get` (default) or `post`.
    #[serde(default)]
    pub method: PollMethod,
    /// The body of a POST (sent as `application/json` unless `headers` say otherwise).
    #[serde(default)]
    pub body: Option<String>,
    /// Extra request headers to send (name → value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Credentials: `{ strategy = "bearer", token = "…" }` or `{ strategy = "basic", user, password }`.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Time between polls (default 60s), counted from the start of the previous one.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Up to this much is added at random to every wait (default none), so many agents do not
    /// poll in step.
    #[serde(default)]
    pub jitter: Option<HumanDuration>,
    /// How long one request may take (default 10s; `timeout` is a deprecated alias).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// How answers are decoded (default `auto`: NDJSON if the Content-Type says so, else JSON).
    #[serde(default)]
    pub decoding: PollDecoding,
    /// A dotted path to the array of items inside a JSON object answer (`data.items`).
    #[serde(default)]
    pub items_path: Option<String>,
    /// A dotted path to a field of the items; its largest value is sent as `cursor_param` on
    /// the next request and persisted once the items are safe.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The query parameter carrying the cursor (default `cursor`).
    #[serde(default = "default_cursor_param")]
    pub cursor_param: String,
    /// How a failed request is retried within one poll (connection errors, timeouts, 408, 429
    /// and 5xx answers): the sinks' `retry` shape, with this source's defaults.
    #[serde(default)]
    pub retry: PollRetry,
    /// The largest answer read (default 64MiB); a larger one is an error.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: ByteSize,
}

/// `retry = { initial, max, max_attempts }` of the `http_poll` source: the keys of the sinks'
/// `retry`, with defaults that suit a poll (which the next poll replaces anyway). Replaces the
/// deprecated `retries` (one fewer than `max_attempts`), `retry_backoff` (`initial`) and
/// `max_retry_backoff` (`max`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRetry {
    /// The wait before the first retry (default 1s), doubled for each next one.
    #[serde(default = "default_retry_initial")]
    pub initial: HumanDuration,
    /// The longest wait between retries (default 30s), also the cap on a `Retry-After`.
    #[serde(default = "default_retry_max")]
    pub max: HumanDuration,
    /// Requests per poll, the first one included (default 4); at least 1.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for PollRetry {
    fn default() -> Self {
        PollRetry {
            initial: default_retry_initial(),
            max: default_retry_max(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// The request method of the `http_poll` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollMethod {
    /// GET.
    #[default]
    Get,
    /// POST, with `body`.
    Post,
}

/// How the `http_poll` source decodes answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollDecoding {
    /// NDJSON when the Content-Type is an NDJSON type, JSON otherwise.
    #[default]
    Auto,
    /// A JSON object (one event, or the array at `items_path`) or a JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

fn default_interval() -> HumanDuration {
    HumanDuration(DEFAULT_INTERVAL)
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_REQUEST_TIMEOUT)
}
fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_retry_initial() -> HumanDuration {
    HumanDuration(DEFAULT_RETRY_INITIAL)
}
fn default_retry_max() -> HumanDuration {
    HumanDuration(DEFAULT_RETRY_MAX)
}
fn default_max_body_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_BODY_BYTES)
}
fn default_cursor_param() -> String {
    DEFAULT_CURSOR_PARAM.to_owned()
}

/// A checked `http_poll` config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL, without the cursor.
    pub url: Url,
    /// The method.
    pub method: Method,
    /// The POST body.
    pub body: Option<String>,
    /// Every request's headers.
    pub headers: HeaderMap,
    /// Credentials.
    pub auth: Option<Auth>,
    /// Time between polls.
    pub interval: Duration,
    /// Most random extra wait.
    pub jitter: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Answer decoding.
    pub decoding: PollDecoding,
    /// Path to the items array.
    pub items_path: Vec<FieldName>,
    /// Path to the cursor field.
    pub cursor: Option<Vec<FieldName>>,
    /// The cursor's query parameter.
    pub cursor_param: String,
    /// Requests per poll, the first included.
    pub max_attempts: u32,
    /// First retry wait.
    pub retry_initial: Duration,
    /// Longest retry wait.
    pub retry_max: Duration,
    /// Largest answer.
    pub max_body_bytes: u64,
}

fn dotted(key: &str, path: &str) -> Result<Vec<FieldName>, BuildError> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(BuildError::at(
            key,
            format!("expected a dotted field path like \"data.items\", found `{path}`"),
        ));
    }
    Ok(path.split('.').map(FieldName::new).collect())
}

impl HttpPollConfig {
    /// A config polling `url` with every other key at its default.
    pub fn new(url: impl Into<String>) -> Self {
        HttpPollConfig {
            url: url.into(),
            method: PollMethod::Get,
            body: None,
            headers: BTreeMap::new(),
            auth: None,
            interval: default_interval(),
            jitter: None,
            request_timeout: default_request_timeout(),
            decoding: PollDecoding::Auto,
            items_path: None,
            cursor: None,
            cursor_param: default_cursor_param(),
            retry: PollRetry::default(),
            max_body_bytes: default_max_body_bytes(),
        }
    }

    /// Checks the config.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault.
    pub fn validate(&self) -> Result<Settings, BuildError> {
        let url = parse_url("url", &self.url)?;
        let method = match self.method {
            PollMethod::Get => {
                if self.body.is_some() {
                    return Err(BuildError::at("body", "a body needs method = \"post\""));
                }
                Method::GET
            }
            PollMethod::Post => Method::POST,
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
        );
        if self.body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        headers.extend(header_map(&self.headers)?);
        for (key, duration) in [
            ("interval", self.interval),
            ("request_timeout", self.request_timeout),
            ("retry.initial", self.retry.initial),
        ] {
            if duration.get().is_zero() {
                return Err(BuildError::at(key, "must be greater than zero"));
            }
        }
        if self.retry.max < self.retry.initial {
            return Err(BuildError::at(
                "retry.max",
                format!("must be at least retry.initial ({})", self.retry.initial),
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(BuildError::at(
                "retry.max_attempts",
                "must be at least 1 (the first request)",
            ));
        }
        let items_path = match &self.items_path {
            Some(path) => dotted("items_path", path)?,
            None => Vec::new(),
        };
        if !items_path.is_empty() && self.decoding == PollDecoding::Ndjson {
            return Err(BuildError::at(
                "items_path",
                "applies to JSON answers, not to decoding = \"ndjson\"",
            ));
        }
        let cursor = self
            .cursor
            .as_deref()
            .map(|path| dotted("cursor", path))
            .transpose()?;
        if cursor.is_some() && self.cursor_param.is_empty() {
            return Err(BuildError::at("cursor_param", "must not be empty"));
        }
        if self.max_body_bytes.bytes() == 0 {
            return Err(BuildError::at(
                "max_body_bytes",
                "must be greater than zero",
            ));
        }
        Ok(Settings {
            url,
            method,
            body: self.body.clone(),
            headers,
            auth: self.auth.clone(),
            interval: self.interval.get(),
            jitter: self.jitter.map_or(Duration::ZERO, HumanDuration::get),
            request_timeout: self.request_timeout.get(),
            decoding: self.decoding,
            items_path,
            cursor,
            cursor_param: self.cursor_param.clone(),
            max_attempts: self.retry.max_attempts,
            retry_initial: self.retry.initial.get(),
            retry_max: self.retry.max.get(),
            max_body_bytes: self.max_body_bytes.bytes(),
        })
    }

    /// Builds the source and its HTTP client.
    ///
    /// # Errors
    /// As for [`HttpPollConfig::validate`], or the client cannot be built.
    pub fn build(&self) -> Result<HttpPoll, BuildError> {
        HttpPoll::new(self.validate()?)
    }
}
