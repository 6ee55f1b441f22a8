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

/// The default `pool_size`.
pub const DEFAULT_POOL_SIZE: usize = 2;
/// How long connecting may take, unless the URL says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The field mapping that stands for the whole event.
pub const WHOLE_EVENT: &str = ".";

/// The config of the `postgres` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The connection URL (`postgres://user:password@host:port/db`).
    pub url: String,
    /// The table, optionally `schema.table`.
    pub table: String,
    /// Column → field; default: the table's columns matched to fields by name.
    #[serde(default)]
    pub columns: Option<BTreeMap<String, String>>,
    /// Skip rows whose key exists already.
    #[serde(default)]
    pub on_conflict: Option<OnConflict>,
    /// Most connections; default 2.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    DEFAULT_POOL_SIZE
}

/// `on_conflict = { columns = [...], action = "nothing" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnConflict {
    /// The columns of a unique index.
    pub columns: Vec<String>,
    /// What to do: only `nothing` (keep the stored row).
    #[serde(default)]
    pub action: ConflictAction,
}

/// What to do with a row whose key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictAction {
    /// Keep the stored row (`ON CONFLICT DO NOTHING`).
    #[default]
    Nothing,
}

impl PostgresConfig {
    /// A config for `table` at `url` with every other key at its default.
    pub fn new(url: impl Into<String>, table: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            table: table.into(),
            columns: None,
            on_conflict: None,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }

    fn connect_config(&self) -> Result<tokio_postgres::Config, BuildError> {
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|error| BuildError::at("url", format!("is not a PostgreSQL URL: {error}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(config)
    }

    /// Checks the URL and names without connecting.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.connect_config()?;
        split_table(&self.table)?;
        if self.columns.as_ref().is_some_and(BTreeMap::is_empty) {
            return Err(BuildError::at("columns", "must name at least one column"));
        }
        if let Some(conflict) = &self.on_conflict
            && conflict.columns.is_empty()
        {
            return Err(BuildError::at(
                "on_conflict.columns",
                "must name the key columns",
            ));
        }
        if self.pool_size == 0 {
            return Err(BuildError::at("pool_size", "must be at least 1"));
        }
        Ok(())
    }

    /// Builds the sink. Connects nothing: connections open at the first write or healthcheck, so
    /// the sink starts while the server is down.
    ///
    /// # Errors
    /// As for [`PostgresConfig::validate`].
    pub async fn build(&self) -> Result<PostgresSink, BuildError> {
        self.validate()?;
        let (schema, table) = split_table(&self.table)?;
        Ok(PostgresSink {
            shared: Arc::new(Shared {
                connect: self.connect_config()?,
                schema_name: schema,
                table_name: table,
                mapping: self.columns.clone(),
                on_conflict: self.on_conflict.clone(),
                permits: Semaphore::new(self.pool_size),
                idle: Mutex::new(Vec::new()),
                table: Mutex::new(None),
            }),
            buffer: BytesMut::new(),
            written: 0,
        })
    }
}

/// `schema.table` or `table`.
fn split_table(name: &str) -> Result<(Option<String>, String), BuildError> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [table] if !table.is_empty() => Ok((None, (*table).to_owned())),
        [schema, table] if !schema.is_empty() && !table.is_empty() => {
            Ok((Some((*schema).to_owned()), (*table).to_owned()))
        }
        _ => Err(BuildError::at(
            "table",
            format!("{name:?} is not `table` or `schema.table`"),
        )),
    }
}

/// A PostgreSQL identifier in double quotes.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What handles of one sink share.
struct Shared {
    connect: tokio_postgres::Config,
    schema_name: Option<String>,
    table_name: String,
    mapping: Option<BTreeMap<String, String>>,
    on_conflict: Option<OnConflict>,
    permits: Semaphore,
    idle: Mutex<Vec<Connection>>,
    /// The columns, read once (and again after the table changed).
    table: Mutex<Option<Arc<Table>>>,
}

/// A pooled connection.
struct Connection {
    client: Client,
    /// Whether this connection's staging table exists.
    staged: bool,
}

/// The columns written and the statements that write them.
#[derive(Debug)]
struct Table {
    columns: Vec<Column>,
    copy: String,
    stage: Option<Stage>,
}

#[derive(Debug)]
struct Stage {
    create: String,
    copy: String,
    insert: String,
}

#[derive(Debug)]
struct Column {
    name: String,
    /// The field path; empty for the whole event.
    field: Vec<String>,
    kind: Kind,
}

/// The column types the sink can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Timestamp,
    Date,
    Jsonb,
    Json,
    Numeric,
    Uuid,
    Inet,
}

impl Kind {
    fn from_udt(name: &str) -> Option<Kind> {
        Some(match name {
            "text" | "varchar" | "bpchar" | "name" | "citext" => Kind::Text,
            "int2" => Kind::Int2,
            "int4" => Kind::Int4,
            "int8" => Kind::Int8,
            "float4" => Kind::Float4,
            "float8" => Kind::Float8,
            "bool" => Kind::Bool,
            "timestamptz" | "timestamp" => Kind::Timestamp,
            "date" => Kind::Date,
            "jsonb" => Kind::Jsonb,
            "json" => Kind::Json,
            "numeric" => Kind::Numeric,
            "uuid" => Kind::Uuid,
            "inet" => Kind::Inet,
            _ => return None,
        })
    }
}

impl Shared {
    async fn connection(&self) -> Result<Connection, SinkError> {
        loop {
            let reused = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match reused {
                Some(connection) if !connection.client.is_closed() => return Ok(connection),
                Some(_) => continue,
                None => break,
            }
        }
        let (client, connection) =
            self.connect
                .connect(NoTls)
                .await
                .map_err(|error| match error.as_db_error() {
                    // The server answered: a login it refuses, a database it does not have.
                    Some(_) => classify(&error),
                    None => {
                        SinkError::Unreachable(format!("cannot connect to PostgreSQL: {error}"))
                    }
                })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "A PostgreSQL connection ended.");
            }
        });
        Ok(Connection {
            client,
            staged: false,
        })
    }

    fn give_back(&self, connection: Connection) {
        if !connection.client.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }

    fn cached_table(&self) -> Option<Arc<Table>> {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn forget_table(&self) {
        *self.table.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Reads the table's columns and prepares the statements.
    async fn discover(&self, client: &Client) -> Result<Arc<Table>, SinkError> {
        if let Some(table) = self.cached_table() {
            return Ok(table);
        }
        let rows = client
            .query(
                "SELECT column_name::text, udt_name::text, column_default IS NOT NULL \
                    OR is_identity = 'YES' OR is_generated <> 'NEVER' \
                 FROM information_schema.columns \
                 WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2 \
                 ORDER BY ordinal_position",
                &[&self.schema_name, &self.table_name],
            )
            .await
            .map_err(|error| classify(&error))?;
        let qualified = match &self.schema_name {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&self.table_name)),
            None => quote_ident(&self.table_name),
        };
        if rows.is_empty() {
            return Err(SinkError::Refused(format!(
                "PostgreSQL: table {qualified} does not exist, or the user of `url` cannot see \
                 its columns; create the table, or fix `table`, or grant the user SELECT and \
                 INSERT on it"
            )));
        }
        let mut found = BTreeMap::new();
        let mut order = Vec::new();
        for row in &rows {
            let name: String = row.get(0);
            let udt: String = row.get(1);
            let defaulted: bool = row.get(2);
            order.push(name.clone());
            found.insert(name, (udt, defaulted));
        }
        let mut columns = Vec::new();
        let mut unsupported = Vec::new();
        match &self.mapping {
            Some(mapping) => {
                for (name, field) in mapping {
                    let Some((udt, _)) = found.get(name) else {
                        return Err(SinkError::Refused(format!(
                            "PostgreSQL: table {qualified} has no column {name:?} (from \
                             `columns`); add the column, or fix `columns`"
                        )));
                    };
                    match Kind::from_udt(udt) {
                        Some(kind) => columns.push(Column {
                            name: name.clone(),
                            field: field_path(field),
                            kind,
                        }),
                        None => unsupported.push(format!("{name} ({udt})")),
                    }
                }
            }
            None => {
                for name in &order {
                    let Some((udt, defaulted)) = found.get(name) else {
                        continue;
                    };
                    if *defaulted {
                        continue;
                    }
                    match Kind::from_udt(udt) {
                        Some(kind) => columns.push(Column {
                            name: name.clone(),
                            field: vec![name.clone()],
                            kind,
                        }),
                        None => unsupported.push(format!("{name} ({udt})")),
                    }
                }
            }
        }
        if !unsupported.is_empty() {
            return Err(SinkError::Refused(format!(
                "table {qualified} has columns of types the sink cannot write: {}; map them to text or float8, give them a default, or leave them out of `columns`",
                unsupported.join(", ")
            )));
        }
        if columns.is_empty() {
            return Err(SinkError::Refused(format!(
                "no column of {qualified} to write: every column has a default; name the \
                 columns to write in `columns`"
            )));
        }
        let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        let list = names.join(", ");
        let stage = self.on_conflict.as_ref().map(|conflict| {
            let stage = quote_ident(&format!("sluice_stage_{}", self.table_name));
            let keys: Vec<String> = conflict.columns.iter().map(|c| quote_ident(c)).collect();
            Stage {
                create: format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS SELECT {list} FROM {qualified} WITH NO DATA"
                ),
                copy: format!("COPY {stage} ({list}) FROM STDIN (FORMAT binary)"),
                insert: format!(
                    "INSERT INTO {qualified} ({list}) SELECT {list} FROM {stage} ON CONFLICT ({}) DO NOTHING",
                    keys.join(", ")
                ),
            }
        });
        let table = Arc::new(Table {
            copy: format!("COPY {qualified} ({list}) FROM STDIN (FORMAT binary)"),
            columns,
            stage,
        });
        *self.table.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&table));
        Ok(table)
    }
}

fn field_path(field: &str) -> Vec<String> {
    if field == WHOLE_EVENT {
        Vec::new()
    } else {
        field.split('.').map(str::to_owned).collect()
    }
}

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

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_SECS: i64 = 946_684_800;

/// Appends the binary COPY stream of `events` to `out`.
fn encode_copy<'a>(
    columns: &[Column],
    events: impl Iterator<Item = &'a Event>,
    out: &mut BytesMut,
) -> Result<(), SinkError> {
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_i32(0);
    out.put_i32(0);
    let count = i16::try_from(columns.len())
        .map_err(|_| SinkError::Permanent("too many columns".into()))?;
    let mut scratch = Vec::new();
    for event in events {
        out.put_i16(count);
        for column in columns {
            encode_cell(column, event, out, &mut scratch)?;
        }
    }
    out.put_i16(-1);
    Ok(())
}

fn lookup<'a>(
    event: &'a Event,
    path: &[String],
    owned: &'a mut Option<Value>,
) -> Option<&'a Value> {
    if path.len() == 1
        && path[0] == MESSAGE
        && event.get(MESSAGE).is_none()
        && let Some(raw) = event.raw()
    {
        *owned = Some(Value::from(String::from_utf8_lossy(raw).as_ref()));
        return owned.as_ref();
    }
    event.get_path(path)
}

fn encode_cell(
    column: &Column,
    event: &Event,
    out: &mut BytesMut,
    scratch: &mut Vec<u8>,
) -> Result<(), SinkError> {
    let bad = |value: &Value| {
        SinkError::Permanent(format!(
            "column {:?} ({:?}) cannot take the {} value {}",
            column.name,
            column.kind,
            value.kind(),
            {
                let mut text = Vec::new();
                json::encode_value(value, &mut text);
                String::from_utf8_lossy(&text[..text.len().min(100)]).into_owned()
            }
        ))
    };
    if column.field.is_empty() {
        scratch.clear();
        json::encode_event(event, scratch);
        return put_json(column.kind, scratch, out, &Value::Null, bad);
    }
    let mut owned = None;
    let value = match lookup(event, &column.field, &mut owned) {
        None | Some(Value::Null) => {
            out.put_i32(-1);
            return Ok(());
        }
        Some(value) => value,
    };
    match column.kind {
        Kind::Text => {
            scratch.clear();
            match value {
                Value::String(text) => scratch.extend_from_slice(text.as_bytes()),
                Value::Timestamp(ts) => {
                    scratch.extend_from_slice(json::format_timestamp(ts).as_bytes())
                }
                other => json::encode_value(other, scratch),
            }
            put_bytes(scratch, out)
        }
        Kind::Int2 | Kind::Int4 | Kind::Int8 => {
            let n = match value {
                Value::Int(n) => *n,
                Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => *f as i64,
                Value::String(text) => text.trim().parse().map_err(|_| bad(value))?,
                _ => return Err(bad(value)),
            };
            match column.kind {
                Kind::Int2 => {
                    out.put_i32(2);
                    out.put_i16(i16::try_from(n).map_err(|_| bad(value))?);
                }
                Kind::Int4 => {
                    out.put_i32(4);
                    out.put_i32(i32::try_from(n).map_err(|_| bad(value))?);
                }
                _ => {
                    out.put_i32(8);
                    out.put_i64(n);
                }
            }
            Ok(())
        }
        Kind::Float4 | Kind::Float8 => {
            let f = match value {
                Value::Int(n) => *n as f64,
                Value::Float(f) => *f,
                Value::String(text) => text.trim().parse().map_err(|_| bad(value))?,
                _ => return Err(bad(value)),
            };
            if column.kind == Kind::Float4 {
                out.put_i32(4);
                out.put_f32(f as f32);
            } else {
                out.put_i32(8);
                out.put_f64(f);
            }
            Ok(())
        }
        Kind::Bool => {
            let b = match value {
                Value::Bool(b) => *b,
                Value::Int(0) => false,
                Value::Int(1) => true,
                Value::String(text) if text.as_str() == "true" => true,
                Value::String(text) if text.as_str() == "false" => false,
                _ => return Err(bad(value)),
            };
            out.put_i32(1);
            out.put_u8(u8::from(b));
            Ok(())
        }
        Kind::Timestamp => {
            let ts = to_timestamp(value).ok_or_else(|| bad(value))?;
            out.put_i32(8);
            out.put_i64(ts.timestamp_micros() - PG_EPOCH_SECS * 1_000_000);
            Ok(())
        }
        Kind::Date => {
            let date = match value {
                Value::String(text) => NaiveDate::parse_from_str(text.as_str(), "%Y-%m-%d")
                    .ok()
                    .or_else(|| to_timestamp(value).map(|ts| ts.date_naive())),
                other => to_timestamp(other).map(|ts| ts.date_naive()),
            }
            .ok_or_else(|| bad(value))?;
            let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).ok_or_else(|| bad(value))?;
            let days = i32::try_from(date.signed_duration_since(epoch).num_days())
                .map_err(|_| bad(value))?;
            out.put_i32(4);
            out.put_i32(days);
            Ok(())
        }
        Kind::Jsonb | Kind::Json => {
            scratch.clear();
            json::encode_value(value, scratch);
            put_json(column.kind, scratch, out, value, bad)
        }
        Kind::Numeric => {
            let text = match value {
                Value::Int(n) => n.to_string(),
                Value::Float(f) if f.is_nan() => "NaN".to_owned(),
                Value::Float(f) if f.is_finite() => f.to_string(),
                Value::String(text) => text.as_str().trim().to_owned(),
                _ => return Err(bad(value)),
            };
            scratch.clear();
            encode_numeric(&text, scratch).ok_or_else(|| bad(value))?;
            put_bytes(scratch, out)
        }
        Kind::Uuid => {
            let Value::String(text) = value else {
                return Err(bad(value));
            };
            let uuid = parse_uuid(text.as_str()).ok_or_else(|| bad(value))?;
            put_bytes(&uuid, out)
        }
        Kind::Inet => {
            let Value::String(text) = value else {
                return Err(bad(value));
            };
            scratch.clear();
            encode_inet(text.as_str(), scratch).ok_or_else(|| bad(value))?;
            put_bytes(scratch, out)
        }
    }
}

/// Writes the binary form of a decimal (`-12.50`, `3`, `.5`, `NaN`) as PostgreSQL's `numeric`
/// receives it: digit count, weight of the first base-10000 digit, sign, display scale, digits.
/// `None` for anything else (exponents included).
fn encode_numeric(text: &str, out: &mut Vec<u8>) -> Option<()> {
    const NEGATIVE: u16 = 0x4000;
    const NAN: u16 = 0xC000;
    if text.eq_ignore_ascii_case("nan") {
        for part in [0u16, 0, NAN, 0] {
            out.extend_from_slice(&part.to_be_bytes());
        }
        return Some(());
    }
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let scale = u16::try_from(fraction.len()).ok().filter(|s| *s <= 16383)?;
    let whole = whole.trim_start_matches('0');
    // Base-10000 digits: the whole part grouped from the right, the fraction from the left.
    let mut padded = "0".repeat((4 - whole.len() % 4) % 4);
    padded.push_str(whole);
    let whole_groups = padded.len() / 4;
    padded.push_str(fraction);
    padded.push_str(&"0".repeat((4 - fraction.len() % 4) % 4));
    let mut digits: Vec<i16> = padded
        .as_bytes()
        .chunks(4)
        .map(|group| group.iter().fold(0i16, |n, b| n * 10 + i16::from(b - b'0')))
        .collect();
    let mut weight = i16::try_from(whole_groups).ok()? - 1;
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= i16::try_from(leading).ok()?;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let sign = if negative && !digits.is_empty() {
        NEGATIVE
    } else {
        0
    };
    out.extend_from_slice(&i16::try_from(digits.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&scale.to_be_bytes());
    for digit in digits {
        out.extend_from_slice(&digit.to_be_bytes());
    }
    Some(())
}

/// The 16 bytes of a UUID written as 32 hex digits, with or without the usual hyphens.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    let hyphens = text.len() - hex.len();
    if hex.len() != 32 || !(hyphens == 0 || (hyphens == 4 && is_canonical_uuid(text))) {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (byte, pair) in uuid.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(uuid)
}

/// Whether the hyphens of `text` sit where they do in `8-4-4-4-12`.
fn is_canonical_uuid(text: &str) -> bool {
    text.len() == 36
        && [8, 13, 18, 23]
            .iter()
            .all(|at| text.as_bytes()[*at] == b'-')
}

/// Writes an `inet` (`10.0.0.1`, `::1`, `192.168.0.0/16`) in PostgreSQL's binary form: family,
/// prefix bits, is-cidr flag, address length, address.
fn encode_inet(text: &str, out: &mut Vec<u8>) -> Option<()> {
    /// PostgreSQL's own family numbers (not the OS's `AF_*`).
    const FAMILY_V4: u8 = 2;
    const FAMILY_V6: u8 = 3;
    let (address, bits) = match text.trim().split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u8>().ok()?)),
        None => (text.trim(), None),
    };
    match address.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let bits = bits.unwrap_or(32);
            (bits <= 32).then_some(())?;
            out.extend_from_slice(&[FAMILY_V4, bits, 0, 4]);
            out.extend_from_slice(&v4.octets());
        }
        std::net::IpAddr::V6(v6) => {
            let bits = bits.unwrap_or(128);
            (bits <= 128).then_some(())?;
            out.extend_from_slice(&[FAMILY_V6, bits, 0, 16]);
            out.extend_from_slice(&v6.octets());
        }
    }
    Some(())
}

fn put_json(
    kind: Kind,
    text: &[u8],
    out: &mut BytesMut,
    value: &Value,
    bad: impl Fn(&Value) -> SinkError,
) -> Result<(), SinkError> {
    match kind {
        Kind::Jsonb => {
            let len = i32::try_from(text.len() + 1).map_err(|_| bad(value))?;
            out.put_i32(len);
            out.put_u8(1);
            out.put_slice(text);
            Ok(())
        }
        Kind::Json | Kind::Text => put_bytes(text, out),
        _ => Err(bad(value)),
    }
}

fn put_bytes(bytes: &[u8], out: &mut BytesMut) -> Result<(), SinkError> {
    let len = i32::try_from(bytes.len())
        .map_err(|_| SinkError::Permanent("a value is larger than 2 GiB".into()))?;
    out.put_i32(len);
    out.put_slice(bytes);
    Ok(())
}

fn to_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Timestamp(ts) => Some(*ts),
        Value::String(text) => DateTime::parse_from_rfc3339(text.as_str())
            .ok()
            .map(|ts| ts.with_timezone(&Utc)),
        Value::Int(secs) => DateTime::from_timestamp(*secs, 0),
        Value::Float(secs) => DateTime::from_timestamp_micros((secs * 1e6) as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn numeric(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        encode_numeric(text, &mut out).map(|()| out)
    }

    /// Reads the binary form back as PostgreSQL's `numeric_out` would print it.
    fn numeric_text(bytes: &[u8]) -> String {
        let word = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let (count, weight, sign, scale) = (word(0), word(2) as i16, word(4), word(6));
        if sign == 0xC000 {
            return "NaN".to_owned();
        }
        let digits: Vec<u16> = (0..count as usize).map(|i| word(8 + 2 * i)).collect();
        let digit = |power: i32| -> u16 {
            // The base-10000 digit whose weight is `power`.
            let index = i32::from(weight) - power;
            usize::try_from(index)
                .ok()
                .and_then(|i| digits.get(i).copied())
                .unwrap_or(0)
        };
        let mut text = String::new();
        if sign == 0x4000 {
            text.push('-');
        }
        let top = i32::from(weight).max(0);
        let whole: String = (0..=top)
            .rev()
            .map(|p| format!("{:04}", digit(p)))
            .collect();
        let whole = whole.trim_start_matches('0');
        text.push_str(if whole.is_empty() { "0" } else { whole });
        if scale > 0 {
            let groups = (i32::from(scale) + 3) / 4;
            let fraction: String = (1..=groups).map(|p| format!("{:04}", digit(-p))).collect();
            text.push('.');
            text.push_str(&fraction[..scale as usize]);
        }
        text
    }

    #[test]
    fn numerics_take_postgres_binary_form() {
        // 12.5: one digit before the point (weight 0) and 5000 after, scale 1.
        assert_eq!(
            numeric("12.5").unwrap(),
            [0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88]
        );
        assert_eq!(
            numeric("-0.001").unwrap(),
            [0, 1, 0xFF, 0xFF, 0x40, 0, 0, 3, 0, 10]
        );
        assert_eq!(numeric("0").unwrap(), [0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(numeric("NaN").unwrap(), [0, 0, 0, 0, 0xC0, 0, 0, 0]);
        for (text, shown) in [
            ("100000000", "100000000"),
            ("123456789.0123456789", "123456789.0123456789"),
            ("0.00010000", "0.00010000"),
            ("-0", "0"),
            ("+7", "7"),
            (".5", "0.5"),
            ("5.", "5"),
            ("007.250", "7.250"),
        ] {
            assert_eq!(numeric_text(&numeric(text).unwrap()), shown, "{text}");
        }
        for bad in ["", "-", ".", "1e5", "1.2.3", "12a", " 1", "inf", "--1"] {
            assert_eq!(numeric(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn uuids_and_inets_parse_strictly() {
        let uuid = parse_uuid("123e4567-e89b-12d3-a456-426614174000").unwrap();
        assert_eq!(uuid[0], 0x12);
        assert_eq!(uuid[15], 0x00);
        assert_eq!(parse_uuid("123E4567E89B12D3A456426614174000"), Some(uuid));
        for bad in [
            "123e4567-e89b-12d3-a456-42661417400",
            "123e4567e-89b-12d3-a456-426614174000",
            "123e4567-e89b-12d3-a456-42661417400g",
            "",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
        let inet = |text: &str| {
            let mut out = Vec::new();
            encode_inet(text, &mut out).map(|()| out)
        };
        assert_eq!(inet("10.0.0.1").unwrap(), [2, 32, 0, 4, 10, 0, 0, 1]);
        assert_eq!(
            inet("192.168.0.0/16").unwrap(),
            [2, 16, 0, 4, 192, 168, 0, 0]
        );
        let v6 = inet("::1").unwrap();
        assert_eq!(&v6[..4], [3, 128, 0, 16]);
        assert_eq!(v6[19], 1);
        for bad in ["10.0.0.256", "10.0.0.1/33", "::1/129", "host", "-", ""] {
            assert_eq!(inet(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn numerics_read_back_as_written(
            negative in any::<bool>(),
            whole in "[0-9]{0,30}",
            fraction in proptest::option::of("[0-9]{0,30}"),
        ) {
            let text = format!(
                "{}{whole}{}",
                if negative { "-" } else { "" },
                fraction.as_ref().map(|f| format!(".{f}")).unwrap_or_default()
            );
            let Some(bytes) = numeric(&text) else {
                prop_assert!(whole.is_empty() && fraction.as_deref().unwrap_or("").is_empty());
                return Ok(());
            };
            let trimmed = whole.trim_start_matches('0');
            let mut expected = if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() };
            if let Some(fraction) = fraction.as_ref().filter(|f| !f.is_empty()) {
                expected = format!("{expected}.{fraction}");
            }
            let zero = expected.bytes().all(|b| b == b'0' || b == b'.');
            if negative && !zero {
                expected = format!("-{expected}");
            }
            prop_assert_eq!(numeric_text(&bytes), expected);
        }
    }

    #[test]
    fn config_validation() {
        let config: PostgresConfig = serde_json::from_value(json!({
            "url": "postgres://sluice@127.0.0.1:5432/analytics",
            "table": "public.requests",
            "columns": {"ts": "timestamp", "raw": "."},
            "on_conflict": {"columns": ["request_id"], "action": "nothing"},
        }))
        .unwrap();
        config.validate().unwrap();
        let key = |value: serde_json::Value| {
            serde_json::from_value::<PostgresConfig>(value)
                .unwrap()
                .validate()
                .unwrap_err()
                .key
                .unwrap()
        };
        assert_eq!(key(json!({"url": "nope://", "table": "t"})), "url");
        assert_eq!(
            key(json!({"url": "postgres://h/db", "table": "a.b.c"})),
            "table"
        );
        assert_eq!(
            key(json!({"url": "postgres://h/db", "table": "t", "pool_size": 0})),
            "pool_size"
        );
        assert_eq!(
            key(json!({"url": "postgres://h/db", "table": "t", "on_conflict": {"columns": []}})),
            "on_conflict.columns"
        );
        assert!(serde_json::from_value::<PostgresConfig>(json!({
            "url": "postgres://h/db", "table": "t", "on_conflict": {"columns": ["a"], "action": "update"}
        }))
        .is_err());
    }

    #[test]
    fn binary_copy_layout() {
        let columns = vec![
            Column {
                name: "n".into(),
                field: vec!["n".into()],
                kind: Kind::Int4,
            },
            Column {
                name: "s".into(),
                field: vec!["s".into()],
                kind: Kind::Text,
            },
            Column {
                name: "j".into(),
                field: vec![],
                kind: Kind::Jsonb,
            },
        ];
        let mut event = Event::default();
        event.insert("n", 7i64);
        let mut out = BytesMut::new();
        encode_copy(&columns, [&event].into_iter(), &mut out).unwrap();
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x03".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 8, 1]);
        expected.extend_from_slice(b"{\"n\":7}");
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(&out[..], &expected[..]);

        event.insert("n", 1i64 << 40);
        let error = encode_copy(&columns, [&event].into_iter(), &mut BytesMut::new()).unwrap_err();
        assert!(!error.is_transient());
        assert!(error.to_string().contains("column \"n\""), "{error}");
    }
}
