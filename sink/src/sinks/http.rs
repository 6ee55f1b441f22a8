//! The `http` sink: POSTs (or PUTs) each request's events as one body to a URL.
//!
//! ```toml
//! [sinks.collector]
//! type = "http"
//! input = "web.requests"
//! uri = "http://127.0.0.1:9000/ingest"
//! method = "post"               # or "put"
//! headers = { "X-Source" = "sluice" }
//! auth = { strategy = "bearer", token = "${COLLECTOR_TOKEN}" }   # or basic: user, password
//! encoding = "ndjson"           # json_array, csv, text, or a table (see `encoding`)
//! compression = "gzip"          # default "none"; sets Content-Encoding: gzip
//! request_timeout = "60s"
//! # plus the driver keys every sink has (batch, concurrency, retry, healthcheck)
//! ```
//!
//! # Retries
//! A 2xx answer acknowledges the request. A connection that cannot be made is *unreachable*
//! (retried within a second); 408, 429, 500, 502, 503 and 504 and timeouts are transient; a
//! `Retry-After` header (seconds or an HTTP date) on them is honoured. 400, 413 and 422 are
//! permanent — the endpoint rejects what was sent: the driver narrows the request down to the bad
//! events, which go to the dead-letter topic — with the status and the first [`MAX_ERROR_BODY`]
//! bytes of the body in the error. Any other answer (401, 403, 404, 405…) is *refused*: the
//! endpoint refuses the sink as configured, the events wait in the topic until the URI or the
//! credentials are fixed, and a finite run stops with an error (see the driver).
//!
//! # Healthcheck
//! A `HEAD` request to `uri` with the configured headers and credentials (no data is sent):
//! 401, 403 and 404 are refusals, named with what to check; a connection that cannot be made is
//! a failure; any other answer (2xx, 405…) passes. An endpoint that answers `HEAD` with 404 while
//! it takes POSTs needs `healthcheck = false`.
//!
//! `https://` URIs need sluice built with the `tls` feature (rustls).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use sluice_pipelines::Event;

use crate::encoding::{Compression, Encoder, EncodingConfig, deserialize_encoding, gzip};
use crate::units::HumanDuration;
use crate::{BuildError, Sink, SinkError, SinkFuture, chunk_events};

/// How much of an error answer's body goes into the error.
pub const MAX_ERROR_BODY: usize = 500;
/// The default `request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The config of the `http` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to send.
    pub uri: String,
    /// `post` (default) or `put`.
    #[serde(default)]
    pub method: HttpMethod,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Credentials, if any.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// How events become the body; default `ndjson`.
    #[serde(default, deserialize_with = "deserialize_encoding")]
    pub encoding: EncodingConfig,
    /// Whether to gzip the body; default `none`.
    #[serde(default)]
    pub compression: Compression,
    /// How long one request may take; default `"60s"`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_REQUEST_TIMEOUT)
}

/// The HTTP method of the `http` sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpMethod {
    /// POST.
    #[default]
    Post,
    /// PUT.
    Put,
}

/// Credentials sent with every request.
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

impl HttpConfig {
    /// A config sending to `uri` with every other key at its default.
    pub fn new(uri: impl Into<String>) -> Self {
        HttpConfig {
            uri: uri.into(),
            method: HttpMethod::Post,
            headers: BTreeMap::new(),
            auth: None,
            encoding: EncodingConfig::default(),
            compression: Compression::None,
            request_timeout: default_request_timeout(),
        }
    }

    /// Checks the URI, headers and encoding.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key.
    pub fn validate(&self) -> Result<(), BuildError> {
        parse_uri("uri", &self.uri)?;
        headers(&self.headers)?;
        self.encoding.validate()?;
        if self.request_timeout.get().is_zero() {
            return Err(BuildError::at(
                "request_timeout",
                "must be greater than zero",
            ));
        }
        Ok(())
    }

    /// Builds the sink and its client.
    ///
    /// # Errors
    /// As for [`HttpConfig::validate`], or the client cannot be built.
    pub fn build(&self) -> Result<HttpSink, BuildError> {
        let mut headers = headers(&self.headers)?;
        let encoder = self.encoding.encoder()?;
        let content_type = HeaderValue::from_static(encoder.codec().content_type());
        headers.insert(CONTENT_TYPE, content_type);
        if self.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(HttpSink {
            client: client(self.request_timeout.get())?,
            uri: parse_uri("uri", &self.uri)?,
            method: match self.method {
                HttpMethod::Post => Method::POST,
                HttpMethod::Put => Method::PUT,
            },
            headers,
            auth: self.auth.clone(),
            encoder,
            gzip: self.compression == Compression::Gzip,
            buffer: Vec::new(),
            written: 0,
        })
    }
}

/// Parses an `http://` (or, with the `tls` feature, `https://`) URL.
pub(crate) fn parse_uri(key: &str, uri: &str) -> Result<Url, BuildError> {
    let url = Url::parse(uri)
        .map_err(|error| BuildError::at(key, format!("{uri:?} is not a URL: {error}")))?;
    match url.scheme() {
        "http" => Ok(url),
        "https" if cfg!(feature = "tls") => Ok(url),
        "https" => Err(BuildError::at(
            key,
            "https needs sluice built with the `tls` feature",
        )),
        other => Err(BuildError::at(
            key,
            format!("unsupported scheme {other:?}; use http"),
        )),
    }
}

fn headers(config: &BTreeMap<String, String>) -> Result<HeaderMap, BuildError> {
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

/// A client with the request timeout and no proxy lookup.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|error| BuildError::new(format!("cannot build the HTTP client: {error}")))
}

/// The runtime of the `http` sink.
#[derive(Debug)]
pub struct HttpSink {
    client: reqwest::Client,
    uri: Url,
    method: Method,
    headers: HeaderMap,
    auth: Option<Auth>,
    encoder: Encoder,
    gzip: bool,
    buffer: Vec<u8>,
    /// Bytes of the last body the server accepted.
    written: u64,
}

impl Sink for HttpSink {
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
        Box::pin(async move { self.send(&[events]).await })
    }

    fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
        Box::pin(self.send(chunks))
    }

    fn healthcheck(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            let mut request = self
                .client
                .head(self.uri.clone())
                .headers(self.headers.clone());
            request = match &self.auth {
                Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
                Some(Auth::Bearer { token }) => request.bearer_auth(token),
                None => request,
            };
            let response = request.send().await.map_err(request_error)?;
            let status = response.status();
            if matches!(status.as_u16(), 401 | 403 | 404) {
                let body = response.bytes().await.unwrap_or_default();
                let message = format!("{status}: {}", error_body(&body));
                return Err(SinkError::Refused(refusal(status, message)));
            }
            if status.is_server_error() {
                return Err(SinkError::Transient(format!(
                    "HEAD {} answered {status}",
                    self.uri
                )));
            }
            Ok(())
        })
    }

    fn fork(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(HttpSink {
            client: self.client.clone(),
            uri: self.uri.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            encoder: self.encoder.clone(),
            gzip: self.gzip,
            buffer: Vec::new(),
            written: 0,
        }))
    }

    fn bytes_written(&self) -> u64 {
        self.written
    }
}

impl HttpSink {
    async fn send(&mut self, chunks: &[&[Event]]) -> Result<(), SinkError> {
        self.buffer.clear();
        self.encoder
            .encode_batch(chunk_events(chunks), &mut self.buffer);
        let encoded = self.buffer.len() as u64;
        let body = if self.gzip {
            let mut compressed = Vec::with_capacity(self.buffer.len() / 4);
            gzip(&self.buffer, &mut compressed);
            compressed
        } else {
            // The body is handed to the client; the next request starts a new buffer.
            let capacity = self.buffer.len();
            std::mem::replace(&mut self.buffer, Vec::with_capacity(capacity))
        };
        let mut request = self
            .client
            .request(self.method.clone(), self.uri.clone())
            .headers(self.headers.clone())
            .body(Bytes::from(body));
        request = match &self.auth {
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
            Some(Auth::Bearer { token }) => request.bearer_auth(token),
            None => request,
        };
        self.written = 0;
        let response = request.send().await.map_err(request_error)?;
        check_response(response, is_retryable_status).await?;
        self.written = encoded;
        Ok(())
    }
}

/// Connection errors are unreachable; timeouts and the like transient.
pub(crate) fn request_error(error: reqwest::Error) -> SinkError {
    let message = format!("request failed: {}", error_chain(&error));
    if error.is_connect() {
        SinkError::Unreachable(message)
    } else {
        SinkError::Transient(message)
    }
}

/// A refusal's message with what to check.
fn refusal(status: StatusCode, message: String) -> String {
    let hint = match status.as_u16() {
        401 | 403 => "check `auth` and `headers`",
        404 => "check `uri`",
        _ => "check `uri` and `method`",
    };
    format!("{message}; {hint}")
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// 408, 429, 500, 502, 503, 504.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// `Ok` for 2xx; otherwise a transient (with `Retry-After`) or permanent error with the body.
pub(crate) async fn check_response(
    response: reqwest::Response,
    retryable: fn(StatusCode) -> bool,
) -> Result<(), SinkError> {
    let status = response.status();
    if status.is_success() {
        // Read the body to the end so the connection goes back to the pool.
        return response.bytes().await.map(drop).map_err(request_error);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after);
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

/// The first [`MAX_ERROR_BODY`] bytes of a body, as text, trimmed.
pub(crate) fn error_body(body: &[u8]) -> String {
    let cut = &body[..body.len().min(MAX_ERROR_BODY)];
    String::from_utf8_lossy(cut).trim().to_owned()
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_parses_and_validates() {
        let config: HttpConfig = serde_json::from_value(json!({
            "uri": "http://127.0.0.1:9/in",
            "method": "put",
            "headers": {"X-Source": "sluice"},
            "auth": {"strategy": "basic", "user": "u", "password": "p"},
            "encoding": {"codec": "json_array"},
            "compression": "gzip",
        }))
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.method, HttpMethod::Put);
        let key = |value: serde_json::Value| {
            serde_json::from_value::<HttpConfig>(value)
                .unwrap()
                .validate()
                .unwrap_err()
                .key
                .unwrap()
        };
        assert_eq!(key(json!({"uri": "not a url"})), "uri");
        assert_eq!(key(json!({"uri": "ftp://x/"})), "uri");
        assert_eq!(
            key(json!({"uri": "http://x/", "headers": {"bad name": "v"}})),
            "headers.bad name"
        );
        assert!(
            serde_json::from_value::<HttpConfig>(
                json!({"uri": "http://x/", "auth": {"strategy": "digest"}})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<HttpConfig>(json!({"uri": "http://x/", "gzip": true}))
                .is_err()
        );
    }

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
}
