//! The `clickhouse` sink: inserts events through ClickHouse's HTTP interface as
//! `INSERT INTO db.table FORMAT JSONEachRow`, one object per event.
//!
//! ```toml
//! [sinks.clickhouse]
//! type = "clickhouse"
//! input = "web.stats"
//! url = "http://127.0.0.1:8123"  # default; `endpoint` is a deprecated alias
//! database = "default"           # default
//! table = "web_stats"
//! auth = { strategy = "basic", user = "default", password = "" }  # optional
//! # (top-level `user` and `password` are deprecated aliases of a basic `auth`)
//! compression = "gzip"           # default "none"
//! skip_unknown_fields = false    # default: a field without a column rejects the batch
//! encoding = { except_fields = ["agent"], timestamp_format = "rfc3339" }  # ndjson only
//! request_timeout = "60s"
//! # plus the driver keys every sink has (batch, concurrency, retry, healthcheck)
//! ```
//!
//! # Date-times
//! Timestamps are written as RFC 3339 in UTC (`"2024-05-01T12:00:00.25Z"`) and every insert sets
//! `date_time_input_format=best_effort`, which ClickHouse has had since 18.x (checked against
//! 18.16.1): its default `basic` parser takes only `YYYY-MM-DD hh:mm:ss` (and unix seconds) and
//! reads that text in the server's or the column's time zone, so a `Z` or an offset is the only
//! unambiguous form. `DateTime` keeps whole seconds (the fraction is dropped); 18.16 has no
//! `DateTime64`, newer servers keep the fraction in one. `timestamp_format = "unix"` writes
//! integer seconds instead (any version, any time zone, but a `String` column then gets digits);
//! a strftime pattern such as `"%Y-%m-%d %H:%M:%S"` is read in the server's time zone.
//!
//! # Idempotence
//! ClickHouse 18.16 has no `insert_deduplication_token` (it arrived in 22.x). It deduplicates
//! identical inserted blocks only for `Replicated*MergeTree` tables (`insert_deduplicate`, on by
//! default): a retry re-sends exactly the same rows in the same order, so for those tables a
//! retry after a lost answer is not stored twice, as long as the request stays under
//! `max_insert_block_size` rows (1,048,576). Plain `MergeTree` tables get at-least-once.
//!
//! # Errors
//! A server that cannot be reached is *unreachable* (retried within a second). Timeouts, 408/429
//! and 5xx are transient — except a 5xx whose ClickHouse error code says the data itself is bad
//! (cannot parse, unknown field, type mismatch, …): ClickHouse 18.16 answers those with 500, and
//! retrying them would wedge the sink, so they are permanent, with ClickHouse's error text. Other
//! 4xx are permanent. Error codes about the setup — an unknown table or database, an unknown
//! user, a wrong or missing password, access denied — are *refused*, with what to do: the events
//! wait in the topic until someone fixes it, and a finite run stops with an error (see the
//! driver).
//!
//! # Healthcheck
//! `EXISTS TABLE db.table` must answer `1`; `0` is a refusal (create the table).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use sluice_pipelines::Event;

use crate::encoding::{Compression, Encoding, EncodingConfig};
use crate::http::{
    Auth, BodyEncoder, client, error_body, is_retryable_status, parse_url, request_error,
    retry_after, with_auth,
};
use crate::units::HumanDuration;
use crate::{BuildError, Sink, SinkError, SinkFuture, chunk_events};

/// The config of the `clickhouse` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickhouseConfig {
    /// The HTTP interface (`url`); default `http://127.0.0.1:8123`.
    #[serde(default = "default_url")]
    pub url: String,
    /// The database; default `default`.
    #[serde(default = "default_database")]
    pub database: String,
    /// The table.
    pub table: String,
    /// Credentials (`auth`), if not the server's default user: basic, or a bearer token.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Whether to gzip the body; default `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Ignore fields without a column (`input_format_skip_unknown_fields`); default false.
    #[serde(default)]
    pub skip_unknown_fields: bool,
    /// Field selection and timestamp format; the codec must stay `ndjson`.
    #[serde(default, deserialize_with = "crate::encoding::deserialize_encoding")]
    pub encoding: EncodingConfig,
    /// How long one insert may take; default `"60s"`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
}

fn default_url() -> String {
    "http://127.0.0.1:8123".to_owned()
}

fn default_database() -> String {
    "default".to_owned()
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

impl ClickhouseConfig {
    /// A config for `table` at `url` with every other key at its default.
    pub fn new(url: impl Into<String>, table: impl Into<String>) -> Self {
        ClickhouseConfig {
            url: url.into(),
            database: default_database(),
            table: table.into(),
            auth: None,
            compression: Compression::None,
            skip_unknown_fields: false,
            encoding: EncodingConfig::default(),
            request_timeout: default_request_timeout(),
        }
    }

    /// Checks the URL, names and encoding.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.urls().map(drop)?;
        self.encoding.validate()?;
        if self.encoding.codec != Encoding::Ndjson {
            return Err(BuildError::at(
                "encoding.codec",
                "clickhouse inserts JSONEachRow; only ndjson applies",
            ));
        }
        if self.request_timeout.get().is_zero() {
            return Err(BuildError::at(
                "request_timeout",
                "must be greater than zero",
            ));
        }
        Ok(())
    }

    /// The insert and healthcheck URLs.
    fn urls(&self) -> Result<(Url, Url), BuildError> {
        for (key, name) in [("database", &self.database), ("table", &self.table)] {
            if name.is_empty() {
                return Err(BuildError::at(key, "must not be empty"));
            }
        }
        let table = format!(
            "{}.{}",
            quote_ident(&self.database),
            quote_ident(&self.table)
        );
        let mut insert = parse_url("url", &self.url)?;
        insert
            .query_pairs_mut()
            .append_pair("query", &format!("INSERT INTO {table} FORMAT JSONEachRow"))
            .append_pair("date_time_input_format", "best_effort");
        if self.skip_unknown_fields {
            insert
                .query_pairs_mut()
                .append_pair("input_format_skip_unknown_fields", "1");
        }
        // The query goes in the body: ClickHouse refuses a POST without a length, and an empty
        // body is sent without one.
        let exists = parse_url("url", &self.url)?;
        Ok((insert, exists))
    }

    /// Builds the sink and its client.
    ///
    /// # Errors
    /// As for [`ClickhouseConfig::validate`], or the client cannot be built.
    pub fn build(&self) -> Result<ClickhouseSink, BuildError> {
        let (insert, exists) = self.urls()?;
        Ok(ClickhouseSink {
            client: client(self.request_timeout.get(), HeaderMap::new())?,
            insert,
            exists,
            auth: self.auth.clone(),
            body: BodyEncoder::new(
                self.encoding.encoder()?,
                self.compression == Compression::Gzip,
            ),
        })
    }
}

/// A ClickHouse identifier in backquotes.
fn quote_ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('`');
    for c in name.chars() {
        if c == '`' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('`');
    quoted
}

/// The runtime of the `clickhouse` sink.
#[derive(Debug)]
pub struct ClickhouseSink {
    client: reqwest::Client,
    insert: Url,
    exists: Url,
    auth: Option<Auth>,
    body: BodyEncoder,
}

impl Sink for ClickhouseSink {
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
        Box::pin(async move { self.insert(&[events]).await })
    }

    fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
        Box::pin(self.insert(chunks))
    }

    fn healthcheck(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            let table = self
                .insert
                .query_pairs()
                .find(|(key, _)| key == "query")
                .map(|(_, query)| {
                    query
                        .trim_start_matches("INSERT INTO ")
                        .trim_end_matches(" FORMAT JSONEachRow")
                        .to_owned()
                })
                .unwrap_or_default();
            let answer = self
                .post(
                    self.exists.clone(),
                    Bytes::from(format!("EXISTS TABLE {table}")),
                    false,
                )
                .await?;
            if answer.trim() == "1" {
                Ok(())
            } else {
                Err(SinkError::Refused(format!(
                    "ClickHouse: the table {table} does not exist (EXISTS TABLE answered {:?}); \
                     create it, or fix `database` and `table`",
                    answer.trim()
                )))
            }
        })
    }

    fn fork(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(ClickhouseSink {
            client: self.client.clone(),
            insert: self.insert.clone(),
            exists: self.exists.clone(),
            auth: self.auth.clone(),
            body: self.body.fork(),
        }))
    }

    fn bytes_written(&self) -> u64 {
        self.body.written()
    }
}

impl ClickhouseSink {
    async fn insert(&mut self, chunks: &[&[Event]]) -> Result<(), SinkError> {
        let encoded = self.body.encode(|encoder, buffer| {
            for event in chunk_events(chunks) {
                encoder.encode_record(event, buffer);
            }
        });
        if encoded == 0 {
            return Ok(());
        }
        let body = self.body.take();
        self.post(self.insert.clone(), body, self.body.gzip())
            .await?;
        self.body.accepted(encoded);
        Ok(())
    }

    /// POSTs `body` to `url`; the answer's body on 2xx.
    async fn post(&self, url: Url, body: Bytes, gzipped: bool) -> Result<String, SinkError> {
        let mut request = self
            .client
            .post(url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )
            .body(body);
        if gzipped {
            request = request.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        request = with_auth(request, self.auth.as_ref());
        let response = request.send().await.map_err(request_error)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.map_err(request_error)?;
        if status.is_success() {
            return Ok(String::from_utf8_lossy(&body).into_owned());
        }
        let text = error_body(&body);
        let message = format!("ClickHouse answered {status}: {text}");
        Err(classify(status, &text, message, retry_after))
    }
}

/// ClickHouse error codes that say the data is wrong, whatever the status.
const DATA_ERRORS: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    16,  // NO_SUCH_COLUMN_IN_TABLE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    47,  // UNKNOWN_IDENTIFIER
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
];

/// Error codes about the setup (database, user, password, rights), not the data: every request
/// would fail the same way, so they are refused whole rather than split.
const SETUP_ERRORS: [u32; 8] = [
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    81,  // UNKNOWN_DATABASE
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

/// The `Code: N` of a ClickHouse error text.
fn error_code(text: &str) -> Option<u32> {
    let rest = text.split("Code: ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn classify(
    status: StatusCode,
    text: &str,
    message: String,
    retry_after: Option<Duration>,
) -> SinkError {
    let code = error_code(text);
    let data_error = code.is_some_and(|code| DATA_ERRORS.contains(&code));
    if let Some(code) = code.filter(|code| SETUP_ERRORS.contains(code)) {
        let hint = match code {
            60 => "create the table, or fix `table`",
            81 => "create the database, or fix `database`",
            192..=194 | 516 => "fix `auth` (user and password)",
            497 => "grant the `auth` user INSERT on the table",
            _ => "fix the sink's config",
        };
        SinkError::Refused(format!("{message}; {hint}"))
    } else if is_retryable_status(status) && !data_error {
        match retry_after {
            Some(after) => SinkError::RetryAfter { message, after },
            None => SinkError::Transient(message),
        }
    } else {
        SinkError::Permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_quote_names_and_carry_settings() {
        let mut config = ClickhouseConfig::new("http://127.0.0.1:8123", "web`stats");
        config.database = "logs".into();
        config.skip_unknown_fields = true;
        let (insert, exists) = config.urls().unwrap();
        let pairs: Vec<(String, String)> = insert.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                (
                    "query".into(),
                    "INSERT INTO `logs`.`web\\`stats` FORMAT JSONEachRow".into()
                ),
                ("date_time_input_format".into(), "best_effort".into()),
                ("input_format_skip_unknown_fields".into(), "1".into()),
            ]
        );
        assert_eq!(exists.query(), None);
    }

    #[test]
    fn validation_and_defaults() {
        let config: ClickhouseConfig = serde_json::from_value(json!({"table": "t"})).unwrap();
        config.validate().unwrap();
        assert_eq!(config.url, "http://127.0.0.1:8123");
        let key = |value: serde_json::Value| {
            serde_json::from_value::<ClickhouseConfig>(value)
                .unwrap()
                .validate()
                .unwrap_err()
                .key
                .unwrap()
        };
        assert_eq!(key(json!({"table": ""})), "table");
        assert_eq!(key(json!({"table": "t", "url": "localhost:8123"})), "url");
        assert_eq!(
            key(json!({"table": "t", "encoding": "csv"})),
            "encoding.columns"
        );
        assert_eq!(
            key(json!({"table": "t", "encoding": "text"})),
            "encoding.codec"
        );
        assert!(
            serde_json::from_value::<ClickhouseConfig>(json!({"table": "t", "format": "x"}))
                .is_err()
        );
    }

    #[test]
    fn data_errors_are_permanent_even_as_500() {
        let text = "Code: 117, e.displayText() = DB::Exception: Unknown field found while parsing JSONEachRow format: zz";
        let error = classify(StatusCode::INTERNAL_SERVER_ERROR, text, text.into(), None);
        assert!(!error.is_transient());
        let busy = "Code: 252, e.displayText() = DB::Exception: Too many parts";
        assert!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, busy, busy.into(), None).is_transient()
        );
        assert!(!classify(StatusCode::BAD_REQUEST, "", String::new(), None).is_transient());
        assert_eq!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                "",
                String::new(),
                Some(Duration::from_secs(3))
            )
            .retry_after(),
            Some(Duration::from_secs(3))
        );
    }
}
