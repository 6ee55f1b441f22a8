//! The connection pool shared by a sink's handles, and what it learns of the table: its columns,
//! their kinds, the staging table for `on_conflict`.

use super::*;

/// What handles of one sink share.
pub(super) struct Shared {
    pub(super) connect: tokio_postgres::Config,
    pub(super) schema_name: Option<String>,
    pub(super) table_name: String,
    pub(super) mapping: Option<BTreeMap<String, String>>,
    pub(super) on_conflict: Option<OnConflict>,
    pub(super) permits: Semaphore,
    pub(super) idle: Mutex<Vec<Connection>>,
    /// The columns, read once (and again after the table changed).
    pub(super) table: Mutex<Option<Arc<Table>>>,
}

/// A pooled connection.
pub(super) struct Connection {
    pub(super) client: Client,
    /// Whether this connection's staging table exists.
    pub(super) staged: bool,
}

/// The columns written and the statements that write them.
#[derive(Debug)]
pub(super) struct Table {
    pub(super) columns: Vec<Column>,
    pub(super) copy: String,
    pub(super) stage: Option<Stage>,
}

#[derive(Debug)]
pub(super) struct Stage {
    pub(super) create: String,
    pub(super) copy: String,
    pub(super) insert: String,
}

#[derive(Debug)]
pub(super) struct Column {
    pub(super) name: String,
    /// The field path; empty for the whole event.
    pub(super) field: Vec<String>,
    pub(super) kind: Kind,
}

/// The column types the sink can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
    pub(super) fn from_udt(name: &str) -> Option<Kind> {
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
    pub(super) async fn connection(&self) -> Result<Connection, SinkError> {
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

    pub(super) fn give_back(&self, connection: Connection) {
        if !connection.client.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }

    pub(super) fn cached_table(&self) -> Option<Arc<Table>> {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn forget_table(&self) {
        *self.table.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Reads the table's columns and prepares the statements.
    pub(super) async fn discover(&self, client: &Client) -> Result<Arc<Table>, SinkError> {
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

pub(super) fn field_path(field: &str) -> Vec<String> {
    if field == WHOLE_EVENT {
        Vec::new()
    } else {
        field.split('.').map(str::to_owned).collect()
    }
}
