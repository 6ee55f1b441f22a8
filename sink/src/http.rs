//! What every HTTP client in sluice shares: the `http` and `clickhouse` sinks and the agent's
//! `http_poll` source.
//!
//! One home for the client builder ([`client`]), the `url` check ([`parse_url`]), the `headers`
//! map ([`header_map`]), credentials ([`Auth`]), the mapping of a failed request or answer to a
//! [`SinkError`] ([`request_error`], [`is_retryable_status`], [`error_body`]) and `Retry-After`
//! in both its forms, seconds and HTTP date ([`retry_after`], [`parse_retry_after`]). Keeping
//! them here means a source does not reach into a sink for its types, and the three clients
//! agree on what a key means and how an answer is read.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::Deserialize;

use crate::encoding::Encoder;
use crate::{BuildError, SinkError};

/// How much of an error answer's body goes into an error.
pub const MAX_ERROR_BODY: usize = 500;
/// The longest a connection may take to open, whatever the request timeout.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Credentials sent with every request (`auth`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        #[serde(default)]
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
}

impl Auth {
    /// `request` with these credentials.
    pub fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Bearer { token } => request.bearer_auth(token),
        }
    }
}

/// `request` with `auth`, when there is one.
pub fn with_auth(request: RequestBuilder, auth: Option<&Auth>) -> RequestBuilder {
    match auth {
        Some(auth) => auth.apply(request),
        None => request,
    }
}

/// Parses an `http://` (or, with the `tls` feature, `https://`) URL written at `key`.
///
/// # Errors
/// A [`BuildError`] at `key` when the text is not a URL or its scheme is not supported.
pub fn parse_url(key: &str, text: &str) -> Result<Url, BuildError> {
    let url = Url::parse(text)
        .map_err(|error| BuildError::at(key, format!("{text:?} is not a URL: {error}")))?;
    match url.scheme() {
        "http" => Ok(url),
        "https" if cfg!(feature = "tls") => Ok(url),
        "https" => Err(BuildError::at(
            key,
            "https needs sluice built with the `tls` feature",
        )),
        other => Err(BuildError::at(
            key,
            format!("unsupported scheme {other:?}; use http or https"),
        )),
    }
}

/// The `headers` map (name → value) as request headers.
///
/// # Errors
/// A [`BuildError`] at `headers.<name>` for a name or value HTTP does not allow.
pub fn header_map(config: &BTreeMap<String, String>) -> Result<HeaderMap, BuildError> {
    let mut headers = HeaderMap::new();
    for (name, value) in config {
        let key = format!("headers.{name}");
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| BuildError::at(&key, "is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| BuildError::at(&key, "is not a valid header value"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// A client with the request timeout `timeout`, a connect timeout of at most
/// [`MAX_CONNECT_TIMEOUT`], and `default_headers` on every request.
///
/// # Errors
/// A [`BuildError`] when the client cannot be built (no TLS backend, for example).
pub fn client(
    timeout: Duration,
    default_headers: HeaderMap,
) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .default_headers(default_headers)
        .build()
        .map_err(|error| BuildError::new(format!("cannot build the HTTP client: {error}")))
}

/// A request that got no answer: a connection that cannot be made is
/// [`SinkError::Unreachable`]; a timeout or a broken connection [`SinkError::Transient`].
pub fn request_error(error: reqwest::Error) -> SinkError {
    let message = format!("request failed: {}", error_chain(&error));
    if error.is_connect() {
        SinkError::Unreachable(message)
    } else {
        SinkError::Transient(message)
    }
}

/// An error and its sources, joined with `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The statuses worth retrying the same request for: 408, 429, 500, 502, 503, 504.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The first [`MAX_ERROR_BODY`] bytes of a body, as text, trimmed.
pub fn error_body(body: &[u8]) -> String {
    let cut = &body[..body.len().min(MAX_ERROR_BODY)];
    String::from_utf8_lossy(cut).trim().to_owned()
}

/// The wait an answer's `Retry-After` header asks for, when it has a readable one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after)
}

/// `Retry-After` as seconds (`"120"`) or as an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`;
/// a date in the past is no wait at all).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The bodies of an HTTP sink: its encoder, whether bodies are gzipped, the buffer it encodes
/// into, and the size of the last body the server accepted (the sink's `bytes_written`).
#[derive(Debug)]
pub struct BodyEncoder {
    encoder: Encoder,
    gzip: bool,
    buffer: Vec<u8>,
    /// Encoded bytes of the last body the server accepted.
    written: u64,
}

impl BodyEncoder {
    /// Bodies encoded by `encoder`, gzipped when `gzip`.
    pub fn new(encoder: Encoder, gzip: bool) -> Self {
        BodyEncoder {
            encoder,
            gzip,
            buffer: Vec::new(),
            written: 0,
        }
    }

    /// The same settings with a buffer of its own, for a forked sink.
    pub fn fork(&self) -> Self {
        BodyEncoder::new(self.encoder.clone(), self.gzip)
    }

    /// Whether bodies are gzipped.
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// Encoded bytes of the last body the server accepted.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Encodes the next body with `write` (into the emptied buffer) and returns its encoded size;
    /// nothing counts as written until [`BodyEncoder::accepted`].
    pub fn encode(&mut self, write: impl FnOnce(&Encoder, &mut Vec<u8>)) -> u64 {
        self.buffer.clear();
        self.written = 0;
        write(&self.encoder, &mut self.buffer);
        self.buffer.len() as u64
    }

    /// The encoded body: gzipped, or the buffer itself handed over whole (the client owns the
    /// body; the next one starts a new buffer of the same capacity).
    pub fn take(&mut self) -> Bytes {
        if self.gzip {
            let mut compressed = Vec::with_capacity(self.buffer.len() / 4);
            crate::encoding::gzip(&self.buffer, &mut compressed);
            Bytes::from(compressed)
        } else {
            let capacity = self.buffer.len();
            Bytes::from(std::mem::replace(
                &mut self.buffer,
                Vec::with_capacity(capacity),
            ))
        }
    }

    /// The server accepted the body of `encoded` bytes.
    pub fn accepted(&mut self, encoded: u64) {
        self.written = encoded;
    }
}

/// A refusal's message with what to check in the config.
pub fn refusal(status: StatusCode, message: String) -> String {
    let hint = match status.as_u16() {
        401 | 403 => "check `auth` and `headers`",
        404 => "check `url`",
        _ => "check `url` and `method`",
    };
    format!("{message}; {hint}")
}

/// `Ok` for 2xx (the body read to the end); otherwise the answer as a [`SinkError`], with the
/// status and the start of the body: a `retryable` status is transient (a `RetryAfter` when the
/// answer asks for a wait), 400, 413 and 422 are permanent (the events are bad), any other
/// status is a refusal of the client as configured.
///
/// # Errors
/// The [`SinkError`] the answer maps to, or [`request_error`] when the body cannot be read.
pub async fn check_response(
    response: reqwest::Response,
    retryable: fn(StatusCode) -> bool,
) -> Result<(), SinkError> {
    let status = response.status();
    if status.is_success() {
        // Read the body to the end so the connection goes back to the pool.
        return response.bytes().await.map(drop).map_err(request_error);
    }
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.unwrap_or_default();
    let message = format!("{status}: {}", error_body(&body));
    Err(if retryable(status) {
        match retry_after {
            Some(after) => SinkError::RetryAfter { message, after },
            None => SinkError::Transient(message),
        }
    } else if matches!(status.as_u16(), 400 | 413 | 422) {
        // The endpoint rejects what was sent: find the bad events.
        SinkError::Permanent(message)
    } else {
        // 401, 403, 404, 405…: the endpoint refuses any request as configured.
        SinkError::Refused(refusal(status, message))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = parse_retry_after(&later).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn urls_and_headers_name_their_key() {
        assert_eq!(
            parse_url("url", "not a url").unwrap_err().key.unwrap(),
            "url"
        );
        assert_eq!(
            parse_url("url", "ftp://x/").unwrap_err().key.unwrap(),
            "url"
        );
        assert!(parse_url("url", "http://x/").is_ok());
        let bad: BTreeMap<String, String> = [("bad name".to_owned(), "v".to_owned())].into();
        assert_eq!(
            header_map(&bad).unwrap_err().key.unwrap(),
            "headers.bad name"
        );
        let good: BTreeMap<String, String> = [("X-Team".to_owned(), "growth".to_owned())].into();
        assert_eq!(header_map(&good).unwrap()["x-team"], "growth");
    }
}
