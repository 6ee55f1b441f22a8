//! The `postgres` sink: inserts events as rows of a PostgreSQL table with binary `COPY`.
//!
//! ```toml
//! [sinks.pg]
//! type = "postgres"
//! input = "web.requests"
//! url = "postgres://sluice@127.0.0.1:5432/analytics"   # no TLS: loopback and trusted networks
//! table = "requests"                 # or "schema.table"
//! columns = { ts = "timestamp", url = "path", raw = "." }   # optional; "." is the whole event
//! on_conflict = { columns = ["request_id"], action = "nothing" }   # optional: idempotent retries
//! pool_size = 2                      # default
//! # plus the driver keys every sink has (batch, concurrency, retry, healthcheck)
//! ```
//!
//! # Columns
//! Without `columns`, the table's columns are read from `information_schema.columns` (at the
//! first write or the healthcheck, not at build, so the sink starts while the server is down) and
//! matched to top-level fields by name; a column with a `DEFAULT` (serials, `now()`), an identity
//! or a generated column is left to the server, and a field without a column is ignored. A
//! missing or null field writes `NULL`. With `columns`, exactly those columns are written, each
//! from the named field (a dotted path into nested maps, `message` for the raw line, or `.` for the
//! whole event as JSON).
//!
//! Values are converted to the column's type: `text`/`varchar`/`char` (any value; maps and
//! arrays as JSON, timestamps as RFC 3339), `int2`/`int4`/`int8` (integers, integral floats,
//! numeric strings; out of range is an error), `float4`/`float8`, `bool` (also `"true"`/`"false"`,
//! 0/1), `timestamptz`/`timestamp` (timestamps, RFC 3339 strings, unix seconds; `timestamp` holds
//! the UTC wall time), `date`, `jsonb`/`json` (any value), `numeric` (integers, floats and
//! decimal strings such as `"-12.50"`, written exactly as given; `NaN`), `uuid` (strings with or
//! without hyphens) and `inet` (IPv4 or IPv6 addresses, optionally `/bits`: the `ip` of the access
//! log presets). Other types are not supported (binary COPY needs their exact wire format): map
//! those columns to `text`, or give them a default. A value that cannot be converted rejects its
//! row, which the driver sends to the dead-letter topic.
//!
//! # Writing
//! One binary `COPY table (columns) FROM STDIN` per request: measured fastest here (see the
//! crate's benchmark), and one round trip. With `on_conflict`, the rows are copied into a
//! temporary staging table (per connection, emptied at commit) and moved with
//! `INSERT … SELECT … ON CONFLICT (columns) DO NOTHING` in the same transaction, so a retried
//! request stores each row exactly once — the conflict columns need a unique index.
//!
//! # Connections
//! A pool of `pool_size` connections, opened on demand; a connection that failed or was closed
//! (the server restarted) is dropped and the next request opens a new one. TLS is not supported
//! (`NoTls`).
//!
//! # Errors
//! Integrity violations (SQLSTATE class 23) and data exceptions (22) are permanent: the rows are
//! bad, and the driver narrows the request down to them. A server that cannot be reached —
//! connection refused or lost, class 08, 57P01–57P03 (shutting down, starting up) — is
//! *unreachable*: retried within a second, so rows flow as soon as it accepts connections again.
//! Class 40 (serialization, deadlock), 53 (resources), 55, other 57, 58 and XX are transient. A
//! setup the server refuses — a missing table (42P01, or no columns visible to the user), a
//! missing database (3D000), a failed login (class 28), no permission (42501), a column of
//! `columns` the table lacks or of a type the sink cannot write, and other statement errors —
//! is *refused*, with the server's message and what to do: the events wait in the topic while
//! someone fixes it, and a finite run stops with an error (see the driver). A missing column
//! (42703) makes the sink read the columns again first (the table may have been altered).

mod config;
mod copy;
mod pool;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::SinkExt;
use serde::Deserialize;
use sluice_pipelines::codec::json;
use sluice_pipelines::event::MESSAGE;
use sluice_pipelines::{Event, Value};
use tokio::sync::Semaphore;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::{BuildError, Sink, SinkError, SinkFuture, chunk_events};

use self::config::*;
pub use self::config::{
    CONNECT_TIMEOUT, ConflictAction, DEFAULT_POOL_SIZE, OnConflict, PostgresConfig, WHOLE_EVENT,
};
use self::copy::*;
use self::pool::*;

/// The runtime of the `postgres` sink: a handle on the shared pool.
pub struct PostgresSink {
    shared: Arc<Shared>,
    buffer: BytesMut,
    /// Bytes of COPY data in the last committed write.
    written: u64,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("table", &self.shared.table_name)
            .finish_non_exhaustive()
    }
}

impl Sink for PostgresSink {
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
        Box::pin(async move { self.insert(&[events]).await })
    }

    fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
        Box::pin(self.insert(chunks))
    }

    fn healthcheck(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            let _permit = self.shared.permits.acquire().await.map_err(closed)?;
            let connection = self.shared.connection().await?;
            let result = self.shared.discover(&connection.client).await.map(drop);
            self.shared.give_back(connection);
            result
        })
    }

    fn fork(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(PostgresSink {
            shared: Arc::clone(&self.shared),
            buffer: BytesMut::new(),
            written: 0,
        }))
    }

    fn bytes_written(&self) -> u64 {
        self.written
    }
}

fn closed(_: tokio::sync::AcquireError) -> SinkError {
    SinkError::Transient("the connection pool is closed".into())
}

impl PostgresSink {
    async fn insert(&mut self, chunks: &[&[Event]]) -> Result<(), SinkError> {
        self.written = 0;
        if chunks.iter().all(|chunk| chunk.is_empty()) {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let _permit = shared.permits.acquire().await.map_err(closed)?;
        let mut connection = shared.connection().await?;
        let result = self.insert_on(&mut connection, chunks).await;
        if let Err(error) = &result
            && error.is_transient()
        {
            // The connection may be broken; a fresh one costs little next to a retry.
            return result;
        }
        self.shared.give_back(connection);
        result
    }

    async fn insert_on(
        &mut self,
        connection: &mut Connection,
        chunks: &[&[Event]],
    ) -> Result<(), SinkError> {
        let table = self.shared.discover(&connection.client).await?;
        self.buffer.clear();
        encode_copy(&table.columns, chunk_events(chunks), &mut self.buffer)?;
        let data = self.buffer.split().freeze();
        let sent = data.len() as u64;
        let result = match &table.stage {
            None => {
                let sink = connection
                    .client
                    .copy_in::<_, Bytes>(&table.copy)
                    .await
                    .map_err(|error| classify(&error))?;
                send_copy(sink, data).await
            }
            Some(stage) => {
                if !connection.staged {
                    connection
                        .client
                        .batch_execute(&stage.create)
                        .await
                        .map_err(|error| classify(&error))?;
                    connection.staged = true;
                }
                let transaction = connection
                    .client
                    .transaction()
                    .await
                    .map_err(|error| classify(&error))?;
                let sink = transaction
                    .copy_in::<_, Bytes>(&stage.copy)
                    .await
                    .map_err(|error| classify(&error))?;
                send_copy(sink, data).await?;
                transaction
                    .batch_execute(&stage.insert)
                    .await
                    .map_err(|error| classify(&error))?;
                transaction.commit().await.map_err(|error| classify(&error))
            }
        };
        if result
            .as_ref()
            .err()
            .is_some_and(|e| e.message().contains("(42P01)") || e.message().contains("(42703)"))
        {
            self.shared.forget_table();
            connection.staged = false;
        }
        if result.is_ok() {
            self.written = sent;
        }
        result
    }
}

async fn send_copy(sink: tokio_postgres::CopyInSink<Bytes>, data: Bytes) -> Result<(), SinkError> {
    futures_util::pin_mut!(sink);
    sink.send(data).await.map_err(|error| classify(&error))?;
    sink.finish()
        .await
        .map(drop)
        .map_err(|error| classify(&error))
}

/// Unreachable, transient, permanent or refused, by SQLSTATE; errors without one are connection
/// errors.
fn classify(error: &tokio_postgres::Error) -> SinkError {
    let Some(db) = error.as_db_error() else {
        return SinkError::Unreachable(format!("PostgreSQL connection error: {error}"));
    };
    let code = db.code().code();
    let message = match db.detail() {
        Some(detail) => format!("PostgreSQL: {} ({code}): {detail}", db.message()),
        None => format!("PostgreSQL: {} ({code})", db.message()),
    };
    let class = &code[..code.len().min(2)];
    let state = db.code();
    if class == "08"
        || *state == SqlState::ADMIN_SHUTDOWN
        || *state == SqlState::CRASH_SHUTDOWN
        || *state == SqlState::CANNOT_CONNECT_NOW
    {
        SinkError::Unreachable(message)
    } else if matches!(class, "40" | "53" | "55" | "57" | "58" | "XX")
        || *state == SqlState::UNDEFINED_COLUMN
    {
        // A missing column after the columns were read: the table was altered; read it again.
        SinkError::Transient(message)
    } else if matches!(class, "22" | "23") {
        // Data exceptions and integrity violations: some rows are bad.
        SinkError::Permanent(message)
    } else {
        // A missing table or database, a refused login, no rights, a statement the server
        // rejects: every request would fail the same way until someone fixes it.
        let hint = match class {
            "28" => Some("fix the user or password in `url`, or the server's pg_hba.conf"),
            "3D" => Some("create the database, or fix the database name in `url`"),
            _ if *state == SqlState::UNDEFINED_TABLE => {
                Some("create the table, or fix `table` (and the schema in it)")
            }
            _ if *state == SqlState::INSUFFICIENT_PRIVILEGE => {
                Some("grant the user of `url` INSERT (and SELECT) on the table")
            }
            _ => None,
        };
        SinkError::Refused(match hint {
            Some(hint) => format!("{message}; {hint}"),
            None => message,
        })
    }
}
