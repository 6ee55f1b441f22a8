//! The `file` sink's config: the keys, their defaults and checks, and building the sink.

use super::*;

/// The default `max_open_files`.
pub const DEFAULT_MAX_OPEN_FILES: usize = 16;
/// The field whose time expands the strftime specifiers of `path`.
pub const EVENT_TIME_FIELD: &str = "timestamp";

/// The config of the `file` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to write: a template of strftime specifiers (each event's `timestamp`, UTC; now
    /// for events without one) and `{field}`s.
    pub path: String,
    /// How events become lines; default `ndjson`.
    #[serde(default, deserialize_with = "deserialize_encoding")]
    pub encoding: EncodingConfig,
    /// Whether to gzip the file; default `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Keep what a file holds (default `true`); `false` empties each file the first time the
    /// sink opens it.
    #[serde(default = "default_append")]
    pub append: bool,
    /// Sync the data to disk before acknowledging each batch; default `false`.
    #[serde(default)]
    pub fsync: bool,
    /// Rotate a file once it holds this many bytes; default never.
    #[serde(default)]
    pub max_file_bytes: Option<ByteSize>,
    /// Rotate a file once it has been open this long; default never.
    #[serde(default, deserialize_with = "crate::units::deserialize_opt_duration")]
    pub rotate_interval: Option<Duration>,
    /// Most files open at once; default 16.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

pub(super) fn default_append() -> bool {
    true
}

pub(super) fn default_max_open_files() -> usize {
    DEFAULT_MAX_OPEN_FILES
}

impl FileConfig {
    /// A config writing `path` with every other key at its default.
    pub fn new(path: impl Into<String>) -> Self {
        FileConfig {
            path: path.into(),
            encoding: EncodingConfig::default(),
            compression: Compression::None,
            append: true,
            fsync: false,
            max_file_bytes: None,
            rotate_interval: None,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }

    /// Checks the path template and options without touching the file system.
    ///
    /// # Errors
    /// `path` is empty, has an invalid strftime specifier or field placeholder, or expands to a
    /// directory-like name (`logs/`, `.`); the encoding is invalid or `json_array`; a rotation
    /// limit or `max_open_files` is zero.
    pub fn validate(&self) -> Result<(), BuildError> {
        PathTemplate::parse(&self.path)?;
        self.encoding.validate()?;
        if !self.encoding.codec.is_line_based() {
            return Err(BuildError::at(
                "encoding",
                "json_array cannot be appended to a file; use ndjson",
            ));
        }
        if self.max_file_bytes.is_some_and(|size| size.bytes() == 0) {
            return Err(BuildError::at(
                "max_file_bytes",
                "must be greater than zero",
            ));
        }
        if self.rotate_interval == Some(Duration::ZERO) {
            return Err(BuildError::at(
                "rotate_interval",
                "must be greater than zero",
            ));
        }
        if self.max_open_files == 0 {
            return Err(BuildError::at("max_open_files", "must be at least 1"));
        }
        Ok(())
    }

    /// Builds the sink; a fixed path is opened (creating its directories), a templated one has
    /// its leading fixed directories created.
    ///
    /// # Errors
    /// A [`BuildError`] at `path` when the file cannot be opened or its directory created.
    pub async fn build(&self, ctx: &SinkContext) -> Result<FileSink, BuildError> {
        let _ = ctx;
        let template = PathTemplate::parse(&self.path)?;
        let encoder = self.encoding.encoder()?;
        let options = Options {
            gzip: self.compression == Compression::Gzip,
            fsync: self.fsync,
            truncate: !self.append,
            max_file_bytes: self.max_file_bytes.map(ByteSize::bytes),
            rotate_interval: self
                .rotate_interval
                .and_then(|interval| chrono::Duration::from_std(interval).ok()),
            max_open_files: self.max_open_files.max(1),
            single: !template.has_fields(),
        };
        let now = Utc::now();
        let mut io = FileIo::new(options);
        if let Some(fixed) = template.fixed_dir() {
            tokio::task::spawn_blocking(move || {
                fs::create_dir_all(&fixed).map_err(|error| {
                    BuildError::at(
                        "path",
                        format!("cannot create {}: {error}", fixed.display()),
                    )
                })
            })
            .await
            .map_err(|error| BuildError::new(format!("the directory task failed: {error}")))??;
        }
        if !template.has_fields() && !template.has_time() {
            let path = template
                .render_time(now)
                .map_err(|_| template.format_error())?;
            io = tokio::task::spawn_blocking(move || {
                io.open(&path, now)
                    .map_err(|error| BuildError::at("path", error.to_string()))?;
                Ok::<_, BuildError>(io)
            })
            .await
            .map_err(|error| BuildError::new(format!("the file open task failed: {error}")))??;
        }
        Ok(FileSink {
            template,
            encoder,
            options,
            clock: Utc::now,
            io: Some(io),
            memo: None,
        })
    }
}
