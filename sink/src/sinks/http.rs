//! The `http` sink: POSTs (or PUTs) each request's events as one body to a URL.
//!
//! ```toml
//! [sinks.collector]
//! type = "http"
//! input = "web.requests"
//! url = "http://127.0.0.1:9000/ingest"   # `uri` is a deprecated alias
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
//! events, which go to the dead-letter topic — with the status and the first [`MAX_ERROR_BODY`](crate::http::MAX_ERROR_BODY)
//! bytes of the body in the error. Any other answer (401, 403, 404, 405…) is *refused*: the
//! endpoint refuses the sink as configured, the events wait in the topic until the URI or the
//! credentials are fixed, and a finite run stops with an error (see the driver).
//!
//! # Healthcheck
//! A `HEAD` request to `url` with the configured headers and credentials (no data is sent):
//! 401, 403 and 404 are refusals, named with what to check; a connection that cannot be made is
//! a failure; any other answer (2xx, 405…) passes. An endpoint that answers `HEAD` with 404 while
//! it takes POSTs needs `healthcheck = false`.
//!
//! `https://` URIs need sluice built with the `tls` feature (rustls).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use sluice_pipelines::Event;

use crate::encoding::{Compression, EncodingConfig, deserialize_encoding};
use crate::http::{
    Auth, BodyEncoder, check_response, client, error_body, header_map, is_retryable_status,
    parse_url, refusal, request_error, with_auth,
};
use crate::units::HumanDuration;
use crate::{BuildError, Sink, SinkError, SinkFuture, chunk_events};
/// The default `request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The config of the `http` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to send (`url`).
    pub url: String,
    /// `post` (default) or `put`.
    #[serde(default)]
    pub method: HttpMethod,
    /// Extra headers to send (`headers`, name → value).
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

impl HttpConfig {
    /// A config sending to `url` with every other key at its default.
    pub fn new(url: impl Into<String>) -> Self {
        HttpConfig {
            url: url.into(),
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
        parse_url("url", &self.url)?;
        header_map(&self.headers)?;
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
        let mut headers = header_map(&self.headers)?;
        let encoder = self.encoding.encoder()?;
        let content_type = HeaderValue::from_static(encoder.codec().content_type());
        headers.insert(CONTENT_TYPE, content_type);
        if self.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(HttpSink {
            client: client(self.request_timeout.get(), HeaderMap::new())?,
            url: parse_url("url", &self.url)?,
            method: match self.method {
                HttpMethod::Post => Method::POST,
                HttpMethod::Put => Method::PUT,
            },
            headers,
            auth: self.auth.clone(),
            body: BodyEncoder::new(encoder, self.compression == Compression::Gzip),
        })
    }
}

/// The runtime of the `http` sink.
#[derive(Debug)]
pub struct HttpSink {
    client: reqwest::Client,
    url: Url,
    method: Method,
    headers: HeaderMap,
    auth: Option<Auth>,
    body: BodyEncoder,
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
            let request = self
                .client
                .head(self.url.clone())
                .headers(self.headers.clone());
            let request = with_auth(request, self.auth.as_ref());
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
                    self.url
                )));
            }
            Ok(())
        })
    }

    fn fork(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(HttpSink {
            client: self.client.clone(),
            url: self.url.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            body: self.body.fork(),
        }))
    }

    fn bytes_written(&self) -> u64 {
        self.body.written()
    }
}

impl HttpSink {
    async fn send(&mut self, chunks: &[&[Event]]) -> Result<(), SinkError> {
        let encoded = self.body.encode(|encoder, buffer| {
            encoder.encode_batch(chunk_events(chunks), buffer);
        });
        let body = self.body.take();
        let request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .body(body);
        let request = with_auth(request, self.auth.as_ref());
        let response = request.send().await.map_err(request_error)?;
        check_response(response, is_retryable_status).await?;
        self.body.accepted(encoded);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_parses_and_validates() {
        let config: HttpConfig = serde_json::from_value(json!({
            "url": "http://127.0.0.1:9/in",
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
        assert_eq!(key(json!({"url": "not a url"})), "url");
        assert_eq!(key(json!({"url": "ftp://x/"})), "url");
        assert_eq!(
            key(json!({"url": "http://x/", "headers": {"bad name": "v"}})),
            "headers.bad name"
        );
        assert!(
            serde_json::from_value::<HttpConfig>(
                json!({"url": "http://x/", "auth": {"strategy": "digest"}})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<HttpConfig>(json!({"url": "http://x/", "gzip": true}))
                .is_err()
        );
    }
}
