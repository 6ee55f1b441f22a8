//! The `http_poll` config, checked into [`Settings`] and built into an [`HttpPoll`].

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, Url};
use sluice_pipelines::units::{ByteSize, HumanDuration};
use sluice_pipelines::{BuildError, FieldName};
use sluice_sink::sinks::http::Auth;

use super::poller::HttpPoll;

/// Default `interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default `timeout` of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `retries` of a failed poll.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default `retry_backoff`: the wait before the first retry, doubled for each next one.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Default `max_retry_backoff`.
pub const DEFAULT_MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);
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
    /// Extra request headers.
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
    /// How long one request may take (default 10s).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
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
    /// Retries of a failed request within one poll (default 3): connection errors, timeouts,
    /// 408, 429 and 5xx answers.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The wait before the first retry (default 1s), doubled for each next one.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff: HumanDuration,
    /// The longest wait between retries (default 30s), also the cap on a `Retry-After`.
    #[serde(default = "default_max_retry_backoff")]
    pub max_retry_backoff: HumanDuration,
    /// The largest answer read (default 64MiB); a larger one is an error.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: ByteSize,
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
fn default_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_TIMEOUT)
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}
fn default_retry_backoff() -> HumanDuration {
    HumanDuration(DEFAULT_RETRY_BACKOFF)
}
fn default_max_retry_backoff() -> HumanDuration {
    HumanDuration(DEFAULT_MAX_RETRY_BACKOFF)
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
    pub timeout: Duration,
    /// Answer decoding.
    pub decoding: PollDecoding,
    /// Path to the items array.
    pub items_path: Vec<FieldName>,
    /// Path to the cursor field.
    pub cursor: Option<Vec<FieldName>>,
    /// The cursor's query parameter.
    pub cursor_param: String,
    /// Retries per poll.
    pub retries: u32,
    /// First retry wait.
    pub retry_backoff: Duration,
    /// Longest retry wait.
    pub max_retry_backoff: Duration,
    /// Largest answer.
    pub max_body_bytes: u64,
}

/// Parses an `http://` (or, with the `tls` feature, `https://`) URL.
fn parse_url(text: &str) -> Result<Url, BuildError> {
    let url = Url::parse(text)
        .map_err(|error| BuildError::at("url", format!("`{text}` is not a URL: {error}")))?;
    match url.scheme() {
        "http" => Ok(url),
        "https" if cfg!(feature = "tls") => Ok(url),
        "https" => Err(BuildError::at(
            "url",
            "https needs sluice built with the `tls` feature",
        )),
        other => Err(BuildError::at(
            "url",
            format!("unsupported scheme `{other}`; use http or https"),
        )),
    }
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
            timeout: default_timeout(),
            decoding: PollDecoding::Auto,
            items_path: None,
            cursor: None,
            cursor_param: default_cursor_param(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
            max_retry_backoff: default_max_retry_backoff(),
            max_body_bytes: default_max_body_bytes(),
        }
    }

    /// Checks the config.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault.
    pub fn validate(&self) -> Result<Settings, BuildError> {
        let url = parse_url(&self.url)?;
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
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::at(&key, "is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| BuildError::at(&key, "is not a valid header value"))?;
            headers.insert(name, value);
        }
        for (key, duration) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("retry_backoff", self.retry_backoff),
        ] {
            if duration.get().is_zero() {
                return Err(BuildError::at(key, "must be greater than zero"));
            }
        }
        if self.max_retry_backoff < self.retry_backoff {
            return Err(BuildError::at(
                "max_retry_backoff",
                format!("must be at least retry_backoff ({})", self.retry_backoff),
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
            timeout: self.timeout.get(),
            decoding: self.decoding,
            items_path,
            cursor,
            cursor_param: self.cursor_param.clone(),
            retries: self.retries,
            retry_backoff: self.retry_backoff.get(),
            max_retry_backoff: self.max_retry_backoff.get(),
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
