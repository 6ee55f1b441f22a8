//! The `nats` sink: publishes each event as one NATS message, to JetStream (acknowledged by the
//! stream) or to core NATS, on a subject templated from the event's fields.
//!
//! ```toml
//! [sinks.central]
//! type = "nats"
//! input = "web.requests"
//! url = "nats://127.0.0.1:4222"     # several servers: "nats://a:4222,nats://b:4222"
//! subject = "web.{event}"           # `{field}`s are replaced by each event's values
//! jetstream = { stream = "WEB" }    # omit for core NATS (fire and forget, acked on flush)
//! # jetstream = { stream = "WEB", subjects = ["web.>"] }   # the subjects of a created stream
//! encoding = "ndjson"               # the payload of each message: one JSON object (default),
//!                                   # or "text", "csv", or a table (see `encoding`)
//! request_timeout = "10s"           # how long JetStream may take to acknowledge a message
//! # plus the driver keys every sink has (batch, concurrency, retry, healthcheck)
//! ```
//!
//! # Subjects
//! `subject` is a NATS subject whose tokens may hold `{field}` placeholders (a field name, a
//! dotted path, or `message`): `web.{event}`, `logs.{host}.{status}`, `site-{site}.raw`. Each
//! placeholder takes the event's value (numbers as written in JSON, timestamps in RFC 3339),
//! made into part of one token: `.`, `*`, `>`, whitespace and control characters become `_`,
//! and a missing, null or empty value renders as `_`. So `web.{event}` with `event = "page
//! view"` publishes to `web.page_view`, and a value can never reach another subject hierarchy.
//!
//! # JetStream
//! With `jetstream`, each message is published to the stream and its acknowledgement (the
//! stream stored it, per the stream's replication) is awaited; the batch the driver hands the
//! sink is acknowledged — and so leaves sluice's topic — only once every message of it was
//! acknowledged by the stream. A publish that fails or times out (`request_timeout`) fails the
//! batch, which the driver retries whole: messages the stream did store before the failure are
//! stored again (at-least-once; consumers see duplicates, never gaps).
//!
//! The stream is looked up at the first write (and at the healthcheck) and created when it does
//! not exist, with `subjects` if given, else the subject derived from the template: every token
//! holding a placeholder becomes `*` (`web.{event}` → `web.*`, `{site}.logs` → `*.logs`), which
//! covers exactly the subjects the sink can publish to. A stream that exists is used as it is;
//! when its subjects do not cover the sink's, publishing finds no stream and the sink is refused
//! with a message saying so (the events wait in the topic).
//!
//! # Core NATS
//! Without `jetstream`, messages are published to core NATS and the batch is acknowledged once
//! the client flushed them to the server (the server answered the flush's PING): nothing confirms
//! that a subscriber received them, and nobody receives what is published while no subscriber
//! listens — NATS's at-most-once.
//!
//! # Broker down
//! The client connects in the background and reconnects by itself, forever, at most a second
//! apart. While it is not connected a write fails at once as *unreachable* — nothing is buffered
//! in the client —, so the driver retries within a second, its input stops, the events wait in
//! the topic (a disk topic keeps them across a restart of sluice too) and back-pressure reaches
//! the sources; once the server is back, delivery resumes by itself. The driver logs the outage
//! once and counts its retries (`sluice_component_retries_total`); the client logs each
//! disconnection and reconnection. The healthcheck says whether the server is reachable (waiting a
//! few seconds for the first connection), whether JetStream is enabled, and whether the stream
//! exists or could be created.

use std::fmt::Write as _;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{
    CreateStreamErrorKind, GetStreamErrorKind, PublishError, PublishErrorKind,
};
use async_nats::jetstream::{self, ErrorCode, stream};
use async_nats::{Client, ConnectOptions, ServerAddr};
use bytes::Bytes;
use futures_util::future::try_join_all;
use serde::Deserialize;
use sluice_pipelines::Event;
use tokio::sync::Mutex;

use crate::encoding::{Encoder, EncodingConfig, deserialize_encoding};
use crate::sinks::file::append_field_value;
use crate::units::HumanDuration;
use crate::{BuildError, Sink, SinkContext, SinkError, SinkFuture, chunk_events};

/// The default `request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts to reach the server.
pub const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// How long the healthcheck waits for the first connection.
const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// The config of the `nats` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// The server(s): `nats://host:port`, comma-separated for several.
    pub url: String,
    /// The subject template (`web.{event}`).
    pub subject: String,
    /// Publish to JetStream, into this stream; `None`: core NATS.
    #[serde(default)]
    pub jetstream: Option<JetStreamSinkConfig>,
    /// How events become message payloads; default `ndjson` (one JSON object per message).
    #[serde(default, deserialize_with = "deserialize_encoding")]
    pub encoding: EncodingConfig,
    /// How long a JetStream acknowledgement (or a core flush) may take; default `"10s"`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
}

/// The `jetstream` table of the `nats` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStreamSinkConfig {
    /// The stream's name; created when missing.
    pub stream: String,
    /// The subjects of the stream when the sink creates it; default: derived from `subject`.
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_REQUEST_TIMEOUT)
}

impl NatsConfig {
    /// A JetStream config publishing to `subject` in `stream` at `url`, every other key at its
    /// default.
    pub fn jetstream(url: impl Into<String>, subject: impl Into<String>, stream: &str) -> Self {
        NatsConfig {
            url: url.into(),
            subject: subject.into(),
            jetstream: Some(JetStreamSinkConfig {
                stream: stream.to_owned(),
                subjects: None,
            }),
            encoding: EncodingConfig::default(),
            request_timeout: default_request_timeout(),
        }
    }

    /// Checks the URL, the subject template, the stream and the encoding.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key.
    pub fn validate(&self) -> Result<(), BuildError> {
        server_addrs("url", &self.url)?;
        let template = SubjectTemplate::parse(&self.subject)?;
        if let Some(jetstream) = &self.jetstream {
            check_stream_name("jetstream.stream", &jetstream.stream)?;
            if let Some(subjects) = &jetstream.subjects {
                if subjects.is_empty() {
                    return Err(BuildError::at(
                        "jetstream.subjects",
                        "must list at least one subject (or be left out)",
                    ));
                }
                for (index, subject) in subjects.iter().enumerate() {
                    check_subject(&format!("jetstream.subjects[{index}]"), subject, true)?;
                }
                if !subjects
                    .iter()
                    .any(|subject| subject_covers(subject, &template.stream_subject()))
                {
                    return Err(BuildError::at(
                        "jetstream.subjects",
                        format!(
                            "none of {subjects:?} covers the subjects `{}` publishes to ({})",
                            self.subject,
                            template.stream_subject()
                        ),
                    ));
                }
            }
        }
        self.encoding.validate()?;
        if self.request_timeout.get().is_zero() {
            return Err(BuildError::at(
                "request_timeout",
                "must be greater than zero",
            ));
        }
        Ok(())
    }

    /// Builds the sink; the client connects in the background (a server that is down is not an
    /// error: writes retry until it is up).
    ///
    /// # Errors
    /// As for [`NatsConfig::validate`].
    pub async fn build(&self, ctx: &SinkContext) -> Result<NatsSink, BuildError> {
        self.validate()?;
        let template = SubjectTemplate::parse(&self.subject)?;
        let client = connect(
            &self.url,
            &format!("sluice sink {}", ctx.name),
            self.request_timeout.get(),
        )
        .await?;
        let jetstream = self.jetstream.as_ref().map(|config| {
            let context = jetstream::ContextBuilder::new()
                .timeout(self.request_timeout.get())
                .ack_timeout(self.request_timeout.get())
                .backpressure_on_inflight(true)
                .build(client.clone());
            Arc::new(JetStreamTarget {
                context,
                stream: config.stream.clone(),
                subjects: config
                    .subjects
                    .clone()
                    .unwrap_or_else(|| vec![template.stream_subject()]),
                ready: Mutex::new(false),
            })
        });
        Ok(NatsSink {
            client,
            url: self.url.clone(),
            jetstream,
            template: Arc::new(template),
            encoder: self.encoding.encoder()?,
            request_timeout: self.request_timeout.get(),
            payload: Vec::new(),
            subject: String::new(),
            written: 0,
        })
    }
}

/// The server addresses of `url` (comma-separated).
///
/// # Errors
/// A [`BuildError`] at `key` naming the address that does not parse.
pub fn server_addrs(key: &str, url: &str) -> Result<Vec<ServerAddr>, BuildError> {
    let addrs: Vec<&str> = url.split(',').map(str::trim).collect();
    if addrs.iter().any(|addr| addr.is_empty()) {
        return Err(BuildError::at(
            key,
            format!("{url:?} is not a list of NATS servers like \"nats://127.0.0.1:4222\""),
        ));
    }
    addrs
        .into_iter()
        .map(|addr| {
            addr.parse::<ServerAddr>().map_err(|error| {
                BuildError::at(
                    key,
                    format!(
                        "{addr:?} is not a NATS server URL like \"nats://127.0.0.1:4222\": {error}"
                    ),
                )
            })
        })
        .collect()
}

/// A client connecting to `url` in the background, reconnecting forever at most
/// [`RECONNECT_MAX`] apart, logging each change of connection.
///
/// # Errors
/// A [`BuildError`] at `url` when it does not parse.
pub async fn connect(
    url: &str,
    name: &str,
    request_timeout: Duration,
) -> Result<Client, BuildError> {
    let addrs = server_addrs("url", url)?;
    let logged_name: Arc<str> = Arc::from(name);
    let logged_url: Arc<str> = Arc::from(url);
    ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(request_timeout))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(100 * attempts.min(10) as u64).min(RECONNECT_MAX)
        })
        .event_callback(move |event| {
            let name = logged_name.clone();
            let url = logged_url.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(client = %name, %url, "Connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(client = %name, %url, "Disconnected from NATS; reconnecting");
                    }
                    async_nats::Event::Closed => {
                        tracing::debug!(client = %name, %url, "Closed the NATS connection");
                    }
                    other => tracing::warn!(client = %name, %url, event = %other, "NATS client event"),
                }
            }
        })
        .connect(addrs)
        .await
        .map_err(|error| BuildError::at("url", format!("cannot use {url}: {error}")))
}

/// Checks a JetStream stream name: not empty, no spaces, `.`, `*`, `>`, `/` or `\`.
///
/// # Errors
/// A [`BuildError`] at `key`.
pub fn check_stream_name(key: &str, name: &str) -> Result<(), BuildError> {
    if name.is_empty()
        || name.chars().any(|c| {
            matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control()
        })
    {
        return Err(BuildError::at(
            key,
            format!(
                "{name:?} is not a stream name (letters, digits, `-` and `_`; no `.`, `*`, `>`, `/` or spaces)"
            ),
        ));
    }
    Ok(())
}

/// Checks a NATS subject: `.`-separated non-empty tokens without whitespace; with `wildcards`,
/// `*` and `>` as whole tokens (`>` only last).
///
/// # Errors
/// A [`BuildError`] at `key` saying what is wrong.
pub fn check_subject(key: &str, subject: &str, wildcards: bool) -> Result<(), BuildError> {
    let bad = |why: &str| BuildError::at(key, format!("{subject:?} is not a NATS subject: {why}"));
    if subject.is_empty() {
        return Err(bad("it is empty"));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(bad("it has an empty token (`..`, or a `.` at an end)"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace"));
        }
        match *token {
            "*" | ">" if !wildcards => {
                return Err(bad("wildcards (`*`, `>`) cannot be published to"));
            }
            ">" if index + 1 != tokens.len() => return Err(bad("`>` must be the last token")),
            "*" | ">" => {}
            _ if token.contains(['*', '>']) => {
                return Err(bad("`*` and `>` must be whole tokens"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the subject filter `filter` (with wildcards) matches every subject `subject` (itself
/// possibly with `*`/`>`) matches.
pub fn subject_covers(filter: &str, subject: &str) -> bool {
    let mut filter = filter.split('.');
    let mut subject = subject.split('.');
    loop {
        match (filter.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(f), Some(s)) if f == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A piece of a subject template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Literal text (may include `.` between tokens).
    Text(String),
    /// An event field, by path.
    Field(Vec<String>),
}

/// A parsed `subject`: literal text and `{field}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    template: String,
    pieces: Vec<Piece>,
}

impl SubjectTemplate {
    /// Parses `template`.
    ///
    /// # Errors
    /// A [`BuildError`] at `subject`: unbalanced braces, an empty or invalid placeholder, or a
    /// subject NATS would refuse (empty tokens, whitespace, wildcards).
    pub fn parse(template: &str) -> Result<SubjectTemplate, BuildError> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let at = rest.find(['{', '}']).unwrap_or(rest.len());
            if at > 0 {
                pieces.push(Piece::Text(rest[..at].to_owned()));
            }
            rest = &rest[at..];
            if rest.starts_with('}') {
                return Err(BuildError::at(
                    "subject",
                    format!("{template:?} has a `}}` without `{{`; braces are reserved for fields"),
                ));
            }
            if let Some(inner) = rest.strip_prefix('{') {
                let Some(end) = inner.find('}') else {
                    return Err(BuildError::at(
                        "subject",
                        format!("{template:?} has a `{{` without `}}`"),
                    ));
                };
                let name = &inner[..end];
                if name.is_empty()
                    || name.contains(['{', '*', '>'])
                    || name.chars().any(char::is_whitespace)
                    || name.split('.').any(str::is_empty)
                {
                    return Err(BuildError::at(
                        "subject",
                        format!("{template:?} has an invalid field placeholder {{{name}}}"),
                    ));
                }
                pieces.push(Piece::Field(name.split('.').map(str::to_owned).collect()));
                rest = &inner[end + 1..];
            }
        }
        let parsed = SubjectTemplate {
            template: template.to_owned(),
            pieces,
        };
        // Every placeholder renders as at least one character, so checking the subject with
        // `x` for each is checking every subject the template can produce.
        let sample = parsed.render_with(|_, out| out.push('x'));
        check_subject("subject", &sample, false).map_err(|error| {
            BuildError::at(
                "subject",
                error
                    .message
                    .replacen(&format!("{sample:?}"), &format!("{template:?}"), 1),
            )
        })?;
        Ok(parsed)
    }

    /// Whether the subject depends on the event.
    pub fn has_fields(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Field(_)))
    }

    /// The subject `event` goes to.
    pub fn render(&self, event: &Event, out: &mut String) {
        out.clear();
        out.push_str(&self.render_with(|path, out| render_token(event, path, out)));
    }

    fn render_with(&self, mut field: impl FnMut(&[String], &mut String)) -> String {
        let mut out = String::with_capacity(self.template.len() + 16);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(path) => field(path, &mut out),
            }
        }
        out
    }

    /// The subject a stream needs to take every subject this template renders: each token with a
    /// placeholder replaced by `*`.
    pub fn stream_subject(&self) -> String {
        const MARK: char = '\u{1}';
        self.render_with(|_, out| out.push(MARK))
            .split('.')
            .map(|token| if token.contains(MARK) { "*" } else { token })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Appends a field's value as part of one subject token.
fn render_token(event: &Event, path: &[String], out: &mut String) {
    let start = out.len();
    append_field_value(event, path, out);
    if out.len() == start {
        out.push('_');
        return;
    }
    if out[start..]
        .chars()
        .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
    {
        let token: String = out[start..]
            .chars()
            .map(|c| match c {
                '.' | '*' | '>' => '_',
                c if c.is_whitespace() || c.is_control() => '_',
                c => c,
            })
            .collect();
        out.truncate(start);
        out.push_str(&token);
    }
}

/// The JetStream side of a sink, shared by its forks.
#[derive(Debug)]
struct JetStreamTarget {
    context: jetstream::Context,
    stream: String,
    subjects: Vec<String>,
    /// Whether the stream was found or created since the last time publishing found none.
    ready: Mutex<bool>,
}

impl JetStreamTarget {
    /// Looks the stream up, creating it when missing (once per sink and after a publish found
    /// no stream).
    async fn ensure_stream(&self) -> Result<(), SinkError> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        match self.context.get_stream(&self.stream).await {
            Ok(_) => {}
            Err(error)
                if matches!(error.kind(), GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                let config = stream::Config {
                    name: self.stream.clone(),
                    subjects: self.subjects.clone(),
                    ..Default::default()
                };
                match self.context.create_stream(config).await {
                    Ok(_) => {
                        tracing::info!(stream = %self.stream, subjects = ?self.subjects, "Created the JetStream stream");
                    }
                    Err(error) if error.kind() == CreateStreamErrorKind::TimedOut => {
                        return Err(SinkError::Unreachable(format!(
                            "creating stream {}: {error}",
                            self.stream
                        )));
                    }
                    Err(error) if error.kind() == CreateStreamErrorKind::JetStreamUnavailable => {
                        return Err(SinkError::Refused(format!(
                            "JetStream is not enabled on the NATS server (start it with `-js`), so stream {} cannot be created: {error}",
                            self.stream
                        )));
                    }
                    Err(error) => {
                        return Err(SinkError::Refused(format!(
                            "cannot create stream {} with subjects {:?}: {error}; create it by hand or fix `jetstream`",
                            self.stream, self.subjects
                        )));
                    }
                }
            }
            Err(error) if error.kind() == GetStreamErrorKind::Request => {
                return Err(SinkError::Unreachable(format!(
                    "looking up stream {}: {error}",
                    self.stream
                )));
            }
            Err(error) => {
                return Err(SinkError::Transient(format!(
                    "looking up stream {}: {error}",
                    self.stream
                )));
            }
        }
        *ready = true;
        Ok(())
    }

    async fn forget_stream(&self) {
        *self.ready.lock().await = false;
    }
}

/// The runtime of the `nats` sink.
#[derive(Debug)]
pub struct NatsSink {
    client: Client,
    url: String,
    jetstream: Option<Arc<JetStreamTarget>>,
    template: Arc<SubjectTemplate>,
    encoder: Encoder,
    request_timeout: Duration,
    payload: Vec<u8>,
    subject: String,
    /// Payload bytes of the last request the server accepted.
    written: u64,
}

impl Sink for NatsSink {
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
        Box::pin(async move { self.send(&[events]).await })
    }

    fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
        Box::pin(self.send(chunks))
    }

    fn healthcheck(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
            while self.client.connection_state() != State::Connected {
                if tokio::time::Instant::now() >= deadline {
                    return Err(self.unreachable());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match &self.jetstream {
                Some(target) => target.ensure_stream().await,
                None => Ok(()),
            }
        })
    }

    fn fork(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(NatsSink {
            client: self.client.clone(),
            url: self.url.clone(),
            jetstream: self.jetstream.clone(),
            template: self.template.clone(),
            encoder: self.encoder.clone(),
            request_timeout: self.request_timeout,
            payload: Vec::new(),
            subject: String::new(),
            written: 0,
        }))
    }

    fn bytes_written(&self) -> u64 {
        self.written
    }

    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            // Core NATS: whatever a failed write left in the client's buffer goes out now.
            let _ = tokio::time::timeout(self.request_timeout, self.client.flush()).await;
            Ok(())
        })
    }
}

impl NatsSink {
    fn unreachable(&self) -> SinkError {
        SinkError::Unreachable(format!("not connected to NATS at {}", self.url))
    }

    /// One event's message: its subject in `self.subject`, its payload returned.
    fn message(&mut self, event: &Event) -> Bytes {
        self.payload.clear();
        self.encoder.encode_record(event, &mut self.payload);
        if self.payload.last() == Some(&b'\n') {
            self.payload.pop();
        }
        self.template.render(event, &mut self.subject);
        Bytes::copy_from_slice(&self.payload)
    }

    async fn send(&mut self, chunks: &[&[Event]]) -> Result<(), SinkError> {
        self.written = 0;
        // Not connected: fail at once instead of queueing messages in the client, so the
        // events wait in the topic and the driver retries within a second.
        if self.client.connection_state() != State::Connected {
            return Err(self.unreachable());
        }
        let mut bytes = 0u64;
        match self.jetstream.clone() {
            Some(target) => {
                target.ensure_stream().await?;
                let mut acks = Vec::with_capacity(chunks.iter().map(|chunk| chunk.len()).sum());
                for event in chunk_events(chunks) {
                    let payload = self.message(event);
                    bytes += payload.len() as u64;
                    let ack = target
                        .context
                        .publish(self.subject.clone(), payload)
                        .await
                        .map_err(|error| self.publish_error(&target.stream, error))?;
                    acks.push(ack);
                }
                if let Err(error) =
                    try_join_all(acks.into_iter().map(IntoFuture::into_future)).await
                {
                    if error.kind() == PublishErrorKind::StreamNotFound {
                        target.forget_stream().await;
                    }
                    return Err(self.publish_error(&target.stream, error));
                }
            }
            None => {
                for event in chunk_events(chunks) {
                    let payload = self.message(event);
                    bytes += payload.len() as u64;
                    self.client
                        .publish(self.subject.clone(), payload)
                        .await
                        .map_err(|error| {
                            SinkError::Unreachable(format!("publishing to {}: {error}", self.url))
                        })?;
                }
                match tokio::time::timeout(self.request_timeout, self.client.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        return Err(SinkError::Unreachable(format!(
                            "flushing to {}: {error}",
                            self.url
                        )));
                    }
                    Err(_) => {
                        return Err(SinkError::Transient(format!(
                            "flushing to {} took longer than {:?}",
                            self.url, self.request_timeout
                        )));
                    }
                }
            }
        }
        self.written = bytes;
        Ok(())
    }

    fn publish_error(&self, stream: &str, error: PublishError) -> SinkError {
        let mut message = String::new();
        let _ = write!(
            message,
            "publishing to stream {stream} at {}: {error}",
            self.url
        );
        match error.kind() {
            PublishErrorKind::StreamNotFound => {
                // Also what a restarting server answers for a moment: the stream is looked up
                // (and created) again before the retry.
                let _ = write!(
                    message,
                    " (no stream takes subject {}: check that stream {stream} exists and its subjects cover `{}`)",
                    self.subject, self.template.template
                );
                SinkError::Transient(message)
            }
            PublishErrorKind::MaxPayloadExceeded => SinkError::Permanent(message),
            PublishErrorKind::BrokenPipe => SinkError::Unreachable(message),
            _ if self.client.connection_state() != State::Connected => {
                SinkError::Unreachable(message)
            }
            _ => SinkError::Transient(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(fields: serde_json::Value) -> Event {
        let mut event = Event::default();
        for (name, value) in fields.as_object().unwrap() {
            let _ = match value {
                serde_json::Value::String(text) => event.insert(name.as_str(), text.as_str()),
                serde_json::Value::Number(n) => event.insert(name.as_str(), n.as_i64().unwrap()),
                _ => unreachable!(),
            };
        }
        event
    }

    #[test]
    fn subjects_take_sanitized_field_values_as_one_token() {
        let template = SubjectTemplate::parse("web.{event}.{page}").unwrap();
        let mut out = String::new();
        template.render(&event(json!({"event": "click", "page": "home"})), &mut out);
        assert_eq!(out, "web.click.home");
        template.render(
            &event(json!({"event": "page view", "page": "a.b>*\tc"})),
            &mut out,
        );
        assert_eq!(out, "web.page_view.a_b___c");
        template.render(&event(json!({"event": ""})), &mut out);
        assert_eq!(out, "web._._");
        let template = SubjectTemplate::parse("status-{status}.{user.id}").unwrap();
        let mut nested = event(json!({"status": 404}));
        nested.insert("user", sluice_pipelines::Value::Map(Default::default()));
        template.render(&nested, &mut out);
        assert_eq!(out, "status-404._");
    }

    #[test]
    fn stream_subjects_are_derived_token_by_token() {
        let derived = |template: &str| SubjectTemplate::parse(template).unwrap().stream_subject();
        assert_eq!(derived("web.{event}"), "web.*");
        assert_eq!(derived("web.events"), "web.events");
        assert_eq!(derived("{site}.logs.{level}"), "*.logs.*");
        assert_eq!(derived("logs.site-{site}.raw"), "logs.*.raw");
        assert!(subject_covers("web.>", "web.*"));
        assert!(subject_covers("web.*", "web.*"));
        assert!(subject_covers(">", "a.b"));
        assert!(!subject_covers("web.*", "web.*.x"));
        assert!(!subject_covers("web.*", "web.>"));
        assert!(!subject_covers("api.>", "web.*"));
    }

    #[test]
    fn bad_subjects_and_configs_name_the_key() {
        for bad in [
            "",
            "web..x",
            ".web",
            "web.",
            "web.*",
            "web.>",
            "web x",
            "web.{",
            "web.}",
            "web.{}",
            "web.{a..b}",
            "web.{a b}",
        ] {
            let error = SubjectTemplate::parse(bad).unwrap_err();
            assert_eq!(error.key.as_deref(), Some("subject"), "{bad:?}");
        }
        let key = |value: serde_json::Value| {
            serde_json::from_value::<NatsConfig>(value)
                .unwrap()
                .validate()
                .unwrap_err()
                .key
                .unwrap()
        };
        let base = |extra: serde_json::Value| {
            let mut config = json!({"url": "nats://127.0.0.1:4222", "subject": "web.{event}"});
            config
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            config
        };
        assert_eq!(key(base(json!({"url": "http://x:1"}))), "url");
        assert_eq!(key(base(json!({"url": "nats://a:1,"}))), "url");
        assert_eq!(
            key(base(json!({"jetstream": {"stream": "WEB.X"}}))),
            "jetstream.stream"
        );
        assert_eq!(
            key(base(
                json!({"jetstream": {"stream": "WEB", "subjects": ["api.>"]}})
            )),
            "jetstream.subjects"
        );
        assert_eq!(
            key(base(
                json!({"jetstream": {"stream": "WEB", "subjects": ["web..x"]}})
            )),
            "jetstream.subjects[0]"
        );
        assert_eq!(
            key(base(json!({"request_timeout": "0s"}))),
            "request_timeout"
        );
        serde_json::from_value::<NatsConfig>(base(
            json!({"jetstream": {"stream": "WEB", "subjects": ["web.>"]}, "url": "nats://a:1, nats://b:2"}),
        ))
        .unwrap()
        .validate()
        .unwrap();
        assert!(
            serde_json::from_value::<NatsConfig>(base(json!({"jetstream": {"name": "WEB"}})))
                .is_err()
        );
    }
}
