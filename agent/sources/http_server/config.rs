//! The `http_server` config: raw keys as written, checked into [`Settings`] without I/O, then
//! built (socket bound, TLS files read) into an [`HttpServer`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderName;
use sluice_pipelines::units::{ByteSize, HumanDuration};
use sluice_pipelines::{BuildError, FieldName};

use super::client_ip::TrustedProxies;
use super::cors::{Cors, CorsConfig};
pub use crate::sources::body::{Decoding, Partial};

use super::server::HttpServer;

/// Default `path`.
pub const DEFAULT_PATH: &str = "/";
/// Default `health_path`.
pub const DEFAULT_HEALTH_PATH: &str = "/health";
/// Default `max_body_bytes`: 10 MiB on the wire.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default `max_decompressed_bytes`: 64 MiB once gunzipped.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;
/// Default `max_in_flight_bytes`: 256 MiB of bodies held at once by all requests.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 256 * 1024 * 1024;
/// Default `max_header_bytes`: 16 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `request_timeout`: the time a client has to send a body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `header_timeout`: the time a client has to send headers once a request has begun.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `idle_timeout`: how long a kept-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `max_wait`: how long a request waits for room in a full topic before a 503.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);
/// Default `retry_after`, sent with every 503.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Default `remote_addr_field`.
pub const DEFAULT_REMOTE_ADDR_FIELD: &str = "remote_addr";
/// Default `path_field`.
pub const DEFAULT_PATH_FIELD: &str = "path";
/// Default `received_at_field`.
pub const DEFAULT_RECEIVED_AT_FIELD: &str = "received_at";

/// The smallest header limit hyper works with.
const MIN_HEADER_BYTES: u64 = 1024;
/// The largest single acquisition of the in-flight budget (a tokio semaphore counts in `u32`).
const MAX_REQUEST_BYTES: u64 = u32::MAX as u64;

/// Config of the `http_server` source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Where to listen: `IP:port`, such as `"0.0.0.0:8080"`.
    pub address: String,
    /// The path events are POSTed (or PUT) to (default `"/"`).
    #[serde(default = "default_path")]
    pub path: String,
    /// A path answering `GET` with 200 while the source runs (default `"/health"`).
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// How bodies are decoded (default `auto`: by Content-Type).
    #[serde(default)]
    pub decoding: Decoding,
    /// What a body with bad lines does to its good ones (default `reject`).
    #[serde(default)]
    pub partial: Partial,
    /// The largest body on the wire (default 10MiB); larger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: ByteSize,
    /// The largest body once gunzipped (default 64MiB); larger ones get 413.
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: ByteSize,
    /// Bodies held at once by all requests together (default 256MiB); past it requests wait
    /// `max_wait`, then get 503.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: ByteSize,
    /// The largest request head, request line and headers (default 16KiB); larger ones get 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Connections served at once (default 1024); more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The time a client has to send a body once its headers are in (default 30s); then 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// The time a client has to send a request's headers once its first byte arrived (default
    /// 10s); then the connection is closed (slowloris defence).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// How long a connection may sit without a request (default 60s).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// How long a request waits for room in a full topic before 503 (default 1s).
    #[serde(default = "default_max_wait")]
    pub max_wait: HumanDuration,
    /// The `Retry-After` of a 503, rounded up to whole seconds (default 1s).
    #[serde(default = "default_retry_after")]
    pub retry_after: HumanDuration,
    /// Bearer tokens, any of which is accepted (usually `"${VAR}"`); none: no authentication.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// TLS with a certificate chain and key in PEM files (needs the `tls` feature).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Names of request headers copied into every event, under their name in snake_case
    /// (`user-agent` → `user_agent`); `headers` is a deprecated alias (elsewhere `headers` is a
    /// map of headers to send).
    #[serde(default)]
    pub copy_headers: Vec<String>,
    /// The field for the client's IP address (default `remote_addr`; `""`: none).
    #[serde(default = "default_remote_addr_field")]
    pub remote_addr_field: String,
    /// The field for the request path (default `path`; `""`: none).
    #[serde(default = "default_path_field")]
    pub path_field: String,
    /// The field for the time the request was received (default `received_at`; `""`: none).
    #[serde(default = "default_received_at_field")]
    pub received_at_field: String,
    /// Pages on other origins allowed to send events (see `cors.rs`); none: no origin checks
    /// and no CORS headers.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// A path answering `GET` with a 1×1 GIF, each request an event of its query parameters
    /// (see `pixel.rs`); none: no pixel.
    #[serde(default)]
    pub pixel_path: Option<String>,
    /// Proxies whose `X-Forwarded-For`/`Forwarded` headers name the client (addresses or CIDR
    /// networks; see `client_ip.rs`); none by default.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// TLS files of the `http_server` source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

fn default_path() -> String {
    DEFAULT_PATH.to_owned()
}
fn default_health_path() -> String {
    DEFAULT_HEALTH_PATH.to_owned()
}
fn default_max_body_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_BODY_BYTES)
}
fn default_max_decompressed_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_DECOMPRESSED_BYTES)
}
fn default_max_in_flight_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_IN_FLIGHT_BYTES)
}
fn default_max_header_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_HEADER_BYTES)
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_REQUEST_TIMEOUT)
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_HEADER_TIMEOUT)
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_IDLE_TIMEOUT)
}
fn default_max_wait() -> HumanDuration {
    HumanDuration(DEFAULT_MAX_WAIT)
}
fn default_retry_after() -> HumanDuration {
    HumanDuration(DEFAULT_RETRY_AFTER)
}
fn default_remote_addr_field() -> String {
    DEFAULT_REMOTE_ADDR_FIELD.to_owned()
}
fn default_path_field() -> String {
    DEFAULT_PATH_FIELD.to_owned()
}
fn default_received_at_field() -> String {
    DEFAULT_RECEIVED_AT_FIELD.to_owned()
}

impl HttpServerConfig {
    /// A config listening on `address` with every other key at its default.
    pub fn new(address: impl Into<String>) -> Self {
        HttpServerConfig {
            address: address.into(),
            path: default_path(),
            health_path: default_health_path(),
            decoding: Decoding::default(),
            partial: Partial::default(),
            max_body_bytes: default_max_body_bytes(),
            max_decompressed_bytes: default_max_decompressed_bytes(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            max_header_bytes: default_max_header_bytes(),
            max_connections: default_max_connections(),
            request_timeout: default_request_timeout(),
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            max_wait: default_max_wait(),
            retry_after: default_retry_after(),
            tokens: Vec::new(),
            tls: None,
            copy_headers: Vec::new(),
            remote_addr_field: default_remote_addr_field(),
            path_field: default_path_field(),
            received_at_field: default_received_at_field(),
            cors: None,
            pixel_path: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// Checks the config without touching the network or the files.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault.
    pub fn validate(&self) -> Result<Settings, BuildError> {
        let address: SocketAddr = self.address.parse().map_err(|_| {
            BuildError::at(
                "address",
                format!(
                    "expected an IP address and port like \"0.0.0.0:8080\", found `{}`",
                    self.address
                ),
            )
        })?;
        check_path("path", &self.path)?;
        check_path("health_path", &self.health_path)?;
        if self.health_path == self.path {
            return Err(BuildError::at(
                "health_path",
                format!("must differ from `path` (both are `{}`)", self.path),
            ));
        }
        if let Some(pixel_path) = &self.pixel_path {
            check_path("pixel_path", pixel_path)?;
            if *pixel_path == self.path || *pixel_path == self.health_path {
                return Err(BuildError::at(
                    "pixel_path",
                    format!("must differ from `path` and `health_path` (`{pixel_path}`)"),
                ));
            }
        }
        let cors = self.cors.as_ref().map(CorsConfig::validate).transpose()?;
        let trusted_proxies = TrustedProxies::parse(&self.trusted_proxies)?;
        let positive = |key: &str, size: ByteSize| {
            if size.bytes() == 0 {
                Err(BuildError::at(key, "must be greater than zero"))
            } else if size.bytes() > MAX_REQUEST_BYTES {
                Err(BuildError::at(key, "must be at most 4GiB"))
            } else {
                Ok(size.bytes())
            }
        };
        let max_body_bytes = positive("max_body_bytes", self.max_body_bytes)?;
        let max_decompressed_bytes =
            positive("max_decompressed_bytes", self.max_decompressed_bytes)?;
        let max_in_flight_bytes = self.max_in_flight_bytes.bytes();
        let largest = max_body_bytes.max(max_decompressed_bytes);
        if max_in_flight_bytes < largest {
            return Err(BuildError::at(
                "max_in_flight_bytes",
                format!(
                    "must be at least max_body_bytes and max_decompressed_bytes ({}), or the \
                     largest allowed request could never be served",
                    ByteSize(largest)
                ),
            ));
        }
        let max_header_bytes = self.max_header_bytes.bytes();
        if max_header_bytes < MIN_HEADER_BYTES {
            return Err(BuildError::at(
                "max_header_bytes",
                format!("must be at least {}", ByteSize(MIN_HEADER_BYTES)),
            ));
        }
        if self.max_connections == 0 {
            return Err(BuildError::at(
                "max_connections",
                "must be greater than zero",
            ));
        }
        for (key, duration) in [
            ("request_timeout", self.request_timeout),
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("max_wait", self.max_wait),
        ] {
            if duration.get().is_zero() {
                return Err(BuildError::at(key, "must be greater than zero"));
            }
        }
        let mut tokens = Vec::with_capacity(self.tokens.len());
        for (index, token) in self.tokens.iter().enumerate() {
            // Never echo a token: the message may end up in logs.
            if token.is_empty() {
                return Err(BuildError::at(
                    format!("tokens[{index}]"),
                    "is empty (an unset variable?)",
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(BuildError::at(
                    format!("tokens[{index}]"),
                    "must be printable ASCII without spaces",
                ));
            }
            tokens.push(token.as_bytes().to_vec());
        }
        if self.tls.is_some() && !cfg!(feature = "tls") {
            return Err(BuildError::at(
                "tls",
                "needs sluice built with the `tls` feature",
            ));
        }
        let mut headers = Vec::with_capacity(self.copy_headers.len());
        for (index, name) in self.copy_headers.iter().enumerate() {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                BuildError::at(
                    format!("copy_headers[{index}]"),
                    format!("`{name}` is not a valid header name"),
                )
            })?;
            let field = FieldName::new(&header.as_str().replace('-', "_"));
            headers.push((header, field));
        }
        let field = |name: &str| (!name.is_empty()).then(|| FieldName::new(name));
        let retry_after_secs = self.retry_after.get().as_secs_f64().ceil().max(1.0) as u64;
        Ok(Settings {
            address,
            path: self.path.clone(),
            health_path: self.health_path.clone(),
            decoding: self.decoding,
            partial: self.partial,
            max_body_bytes,
            max_decompressed_bytes,
            max_in_flight_bytes,
            max_header_bytes,
            max_connections: self.max_connections,
            request_timeout: self.request_timeout.get(),
            header_timeout: self.header_timeout.get(),
            idle_timeout: self.idle_timeout.get(),
            max_wait: self.max_wait.get(),
            retry_after_secs,
            tokens,
            tls: self.tls.clone(),
            headers,
            remote_addr_field: field(&self.remote_addr_field),
            path_field: field(&self.path_field),
            received_at_field: field(&self.received_at_field),
            cors,
            pixel_path: self.pixel_path.clone(),
            trusted_proxies,
        })
    }

    /// Builds the source: binds the socket (so a port in use fails the start, naming this
    /// source) and reads the TLS files.
    ///
    /// # Errors
    /// As for [`HttpServerConfig::validate`]; the address cannot be bound; the TLS files cannot
    /// be read or do not hold a certificate and a matching key.
    pub fn build(&self) -> Result<HttpServer, BuildError> {
        HttpServer::bind(Arc::new(self.validate()?))
    }
}

fn check_path(key: &str, path: &str) -> Result<(), BuildError> {
    if !path.starts_with('/') || path.contains(['?', '#', '*', '{', '}']) {
        return Err(BuildError::at(
            key,
            format!("expected a plain path starting with `/`, found `{path}`"),
        ));
    }
    Ok(())
}

/// A checked `http_server` config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub address: SocketAddr,
    /// The ingest path.
    pub path: String,
    /// The health path.
    pub health_path: String,
    /// How bodies are decoded.
    pub decoding: Decoding,
    /// What a bad line does to the good ones.
    pub partial: Partial,
    /// Most body bytes on the wire.
    pub max_body_bytes: u64,
    /// Most body bytes once gunzipped.
    pub max_decompressed_bytes: u64,
    /// Most body bytes held by all requests together.
    pub max_in_flight_bytes: u64,
    /// Most bytes of a request head.
    pub max_header_bytes: u64,
    /// Most connections served at once.
    pub max_connections: usize,
    /// The time to send a body.
    pub request_timeout: Duration,
    /// The time to send headers.
    pub header_timeout: Duration,
    /// The time a connection may sit idle.
    pub idle_timeout: Duration,
    /// The time to wait for a full topic.
    pub max_wait: Duration,
    /// `Retry-After` of a 503, in seconds.
    pub retry_after_secs: u64,
    /// Accepted bearer tokens; empty: no authentication.
    pub tokens: Vec<Vec<u8>>,
    /// TLS files, if any.
    pub tls: Option<TlsConfig>,
    /// Headers copied into events, with their field names.
    pub headers: Vec<(HeaderName, FieldName)>,
    /// The field for the client's address, if any.
    pub remote_addr_field: Option<FieldName>,
    /// The field for the path, if any.
    pub path_field: Option<FieldName>,
    /// The field for the receive time, if any.
    pub received_at_field: Option<FieldName>,
    /// Origin checks and CORS answers, if configured.
    pub cors: Option<Cors>,
    /// The pixel path, if any.
    pub pixel_path: Option<String>,
    /// Proxies believed about the client's address.
    pub trusted_proxies: TrustedProxies,
}
