//! The `postgres` sink's config: the keys, their defaults and checks.

use super::*;

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

pub(super) fn default_pool_size() -> usize {
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

    pub(super) fn connect_config(&self) -> Result<tokio_postgres::Config, BuildError> {
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
pub(super) fn split_table(name: &str) -> Result<(Option<String>, String), BuildError> {
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
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
