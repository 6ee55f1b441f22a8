//! The config of the `file` source and its validation into [`FileSettings`].

use std::path::PathBuf;
use std::time::Duration;

use sluice_pipelines::BuildError;
use sluice_pipelines::FieldName;
use sluice_pipelines::units::{ByteSize, HumanDuration};

use super::glob::PathPattern;
use super::multiline::{MultilineSettings, Rule};
use super::source::FileSource;
use crate::sources::lines::{DEFAULT_DELIMITER, DEFAULT_MAX_LINE_BYTES, LineFormat};

/// Config of the `file` source. See the [module doc](super) for the keys and their defaults.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The files to read: paths with `*`, `?` and `**` wildcards.
    pub include: Vec<PathBuf>,
    /// Files not to read even if `include` matches them: patterns like `include`, or bare
    /// file-name patterns (`*.gz`) matched against the name alone.
    #[serde(default)]
    pub exclude: Vec<PathBuf>,
    /// Where to start in files found at startup without a checkpoint (default `beginning`).
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Keep reading what is appended (default `true`); `false` stops at the end of every file.
    #[serde(default = "default_follow")]
    pub follow: bool,
    /// How changes are noticed (default `auto`: inotify, falling back to polling).
    #[serde(default)]
    pub watch: WatchMode,
    /// How often files and patterns are checked when polling (default 250ms).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// How many leading bytes identify a file (default 1KiB).
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: ByteSize,
    /// How often safe read positions are written to the checkpoint file at most (default 1s).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// Start every file as `read_from` says, as if no checkpoint existed (default `false`).
    /// Checkpoints are still written.
    #[serde(default)]
    pub ignore_checkpoints: bool,
    /// Files not modified for this long are not read (default: no limit).
    #[serde(default)]
    pub ignore_older: Option<HumanDuration>,
    /// How long a file renamed away from `include` is still read after its last growth before it
    /// is closed (default 5s). A deleted file is closed as soon as it is read to its end.
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait: HumanDuration,
    /// The longest line kept (default 1MiB).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// What happens to longer lines (default `truncate`).
    #[serde(default)]
    pub long_lines: LongLines,
    /// What ends a line (default `"\n"`, which also strips a `\r` before it).
    #[serde(default = "default_line_delimiter")]
    pub line_delimiter: String,
    /// Joining the lines of one event, if set.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// The most bytes read out of one gzip file (default 16GiB): a cap on decompression.
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: ByteSize,
    /// The most files held open at once (default: what the process's descriptor limit leaves
    /// after a reserve). Beyond it idle files are closed and opened again when they change.
    #[serde(default)]
    pub max_open_files: Option<usize>,
    /// The most bytes that files deleted while still unread may keep allocated on disk (default
    /// 1GiB); beyond it the oldest such file is let go and its unread lines counted as lost.
    #[serde(default = "default_max_deleted_bytes")]
    pub max_deleted_bytes: ByteSize,
    /// Name of a field to hold the file's path, if any (`add_path_field` is accepted too).
    #[serde(default, alias = "add_path_field")]
    pub path_field: Option<String>,
    /// Name of a field to hold the host name, if any.
    #[serde(default)]
    pub host_field: Option<String>,
    /// Name of a field to hold the line's byte offset in its file, if any (`add_offset_field`
    /// is accepted too).
    #[serde(default, alias = "add_offset_field")]
    pub offset_field: Option<String>,
}

/// Where reading starts in a file found at startup that has no checkpoint. Files that appear
/// later are always read from their beginning, since everything in them is new.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From the first byte.
    #[default]
    Beginning,
    /// From the current end: only lines written from now on.
    End,
}

/// How changes to files and directories are noticed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchMode {
    /// inotify (or the platform's equivalent) with a slow safety poll; polling alone when the
    /// watcher cannot be set up or fails.
    #[default]
    Auto,
    /// Polling every `poll_interval` only (network file systems, where inotify sees nothing).
    Poll,
}

/// What happens to lines longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongLines {
    /// Keep the first `max_line_bytes` (counted in `truncated_lines`).
    #[default]
    Truncate,
    /// Drop the line (counted in `skipped_lines`).
    Skip,
}

/// The `multiline` table: exactly one of the two patterns.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this regex starts a new event.
    #[serde(default)]
    pub start_pattern: Option<String>,
    /// A line matching this regex continues the current event.
    #[serde(default)]
    pub continuation_pattern: Option<String>,
    /// How long the last event waits for more lines (default 1s).
    #[serde(default = "default_multiline_timeout")]
    pub timeout: HumanDuration,
}

fn default_follow() -> bool {
    true
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(250))
}

fn default_fingerprint_bytes() -> ByteSize {
    ByteSize(1024)
}

fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_rotate_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

fn default_max_line_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_LINE_BYTES)
}

fn default_line_delimiter() -> String {
    DEFAULT_DELIMITER.to_owned()
}

fn default_multiline_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_max_deleted_bytes() -> ByteSize {
    ByteSize(1 << 30)
}

fn default_max_decompressed_bytes() -> ByteSize {
    ByteSize(16 << 30)
}

/// Fewest bytes a fingerprint may cover: fewer would make unrelated files look alike.
pub const MIN_FINGERPRINT_BYTES: u64 = 16;
/// Most bytes a fingerprint may cover (it is read on every open and kept in memory).
pub const MAX_FINGERPRINT_BYTES: u64 = 64 << 10;

/// A validated [`FileConfig`].
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// What to read.
    pub include: Vec<PathPattern>,
    /// What not to read.
    pub exclude: Vec<PathPattern>,
    /// Where to start in files found at startup without a checkpoint.
    pub read_from: ReadFrom,
    /// Whether to follow appends.
    pub follow: bool,
    /// How changes are noticed.
    pub watch: WatchMode,
    /// How often files are checked when polling.
    pub poll_interval: Duration,
    /// Bytes of a file's head that identify it.
    pub fingerprint_bytes: usize,
    /// Least time between two checkpoint writes.
    pub checkpoint_interval: Duration,
    /// Whether existing checkpoints are ignored.
    pub ignore_checkpoints: bool,
    /// Files older than this are not read.
    pub ignore_older: Option<Duration>,
    /// How long a file renamed away is still read after its last growth.
    pub rotate_wait: Duration,
    /// How lines are cut.
    pub format: LineFormat,
    /// What happens to over-long lines.
    pub long_lines: LongLines,
    /// Multiline joining, if any.
    pub multiline: Option<MultilineSettings>,
    /// The cap on bytes decompressed from one gzip file.
    pub max_decompressed_bytes: u64,
    /// The most files held open, if set.
    pub max_open_files: Option<usize>,
    /// The most bytes deleted files may keep allocated.
    pub max_deleted_bytes: u64,
    /// The path field, if any.
    pub path_field: Option<FieldName>,
    /// The host field, if any.
    pub host_field: Option<FieldName>,
    /// The offset field, if any.
    pub offset_field: Option<FieldName>,
}

impl FileConfig {
    /// The `include` patterns whose base directory does not exist now, as `(index, pattern as
    /// written, base directory)`. Patterns that do not parse are left to
    /// [`FileConfig::validate`].
    pub fn missing_include_dirs(&self) -> Vec<(usize, String, PathBuf)> {
        self.include
            .iter()
            .enumerate()
            .filter_map(|(index, path)| {
                let pattern = PathPattern::parse(path).ok()?;
                let base = pattern.base();
                (!base.is_dir()).then(|| (index, pattern.text().to_owned(), base.to_path_buf()))
            })
            .collect()
    }

    /// Checks the config without touching the file system.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault.
    pub fn validate(&self) -> Result<FileSettings, BuildError> {
        if self.include.is_empty() {
            return Err(BuildError::at("include", "needs at least one path"));
        }
        let patterns = |key: &str, paths: &[PathBuf]| {
            paths
                .iter()
                .enumerate()
                .map(|(index, path)| {
                    PathPattern::parse(path).map_err(|error| {
                        BuildError::at(format!("{key}[{index}]"), error.to_string())
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let include = patterns("include", &self.include)?;
        let exclude = patterns("exclude", &self.exclude)?;
        let poll_interval = self.poll_interval.get();
        if poll_interval < Duration::from_millis(1) {
            return Err(BuildError::at("poll_interval", "must be at least 1ms"));
        }
        let fingerprint_bytes = self.fingerprint_bytes.bytes();
        if !(MIN_FINGERPRINT_BYTES..=MAX_FINGERPRINT_BYTES).contains(&fingerprint_bytes) {
            return Err(BuildError::at(
                "fingerprint_bytes",
                format!(
                    "must be between {MIN_FINGERPRINT_BYTES} bytes and {} KiB",
                    MAX_FINGERPRINT_BYTES >> 10
                ),
            ));
        }
        let format = LineFormat::new(&self.line_delimiter, self.max_line_bytes.bytes())
            .map_err(BuildError::from)?;
        let multiline = self
            .multiline
            .as_ref()
            .map(MultilineConfig::validate)
            .transpose()?;
        if self.max_decompressed_bytes.bytes() == 0 {
            return Err(BuildError::at(
                "max_decompressed_bytes",
                "must be at least 1 byte",
            ));
        }
        if self.max_open_files == Some(0) {
            return Err(BuildError::at("max_open_files", "must be at least 1"));
        }
        let path_field = field_name("path_field", self.path_field.as_deref())?;
        let host_field = field_name("host_field", self.host_field.as_deref())?;
        let offset_field = field_name("offset_field", self.offset_field.as_deref())?;
        let named = [
            ("path_field", &path_field),
            ("host_field", &host_field),
            ("offset_field", &offset_field),
        ];
        for (index, (key, name)) in named.iter().enumerate() {
            if name.is_some() && named[..index].iter().any(|(_, other)| *other == *name) {
                return Err(BuildError::at(
                    *key,
                    "must differ from the other field names",
                ));
            }
        }
        Ok(FileSettings {
            include,
            exclude,
            read_from: self.read_from,
            follow: self.follow,
            watch: self.watch,
            poll_interval,
            fingerprint_bytes: fingerprint_bytes as usize,
            checkpoint_interval: self.checkpoint_interval.get(),
            ignore_checkpoints: self.ignore_checkpoints,
            ignore_older: self.ignore_older.map(HumanDuration::get),
            rotate_wait: self.rotate_wait.get(),
            format,
            long_lines: self.long_lines,
            multiline,
            max_decompressed_bytes: self.max_decompressed_bytes.bytes(),
            max_open_files: self.max_open_files,
            max_deleted_bytes: self.max_deleted_bytes.bytes(),
            path_field,
            host_field,
            offset_field,
        })
    }

    /// Builds the source. Files are opened when it runs, not here.
    ///
    /// # Errors
    /// A [`BuildError`] when the config is invalid (see [`FileConfig::validate`]).
    pub fn build(&self) -> Result<FileSource, BuildError> {
        Ok(FileSource::new(self.validate()?))
    }
}

impl MultilineConfig {
    fn validate(&self) -> Result<MultilineSettings, BuildError> {
        let compile = |key: &str, pattern: &str| {
            regex::bytes::Regex::new(pattern).map_err(|error| {
                BuildError::at(
                    format!("multiline.{key}"),
                    format!("invalid regex: {error}"),
                )
            })
        };
        let rule = match (&self.start_pattern, &self.continuation_pattern) {
            (Some(start), None) => Rule::Start(compile("start_pattern", start)?),
            (None, Some(continuation)) => {
                Rule::Continuation(compile("continuation_pattern", continuation)?)
            }
            _ => {
                return Err(BuildError::at(
                    "multiline",
                    "needs exactly one of `start_pattern` and `continuation_pattern`",
                ));
            }
        };
        Ok(MultilineSettings {
            rule,
            timeout: self.timeout.get(),
        })
    }
}

fn field_name(key: &str, name: Option<&str>) -> Result<Option<FieldName>, BuildError> {
    match name {
        None => Ok(None),
        Some("") => Err(BuildError::at(key, "a field name cannot be empty")),
        Some(name) => Ok(Some(FieldName::new(name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    fn error(text: &str) -> (Option<String>, String) {
        let error = parse(text).validate().unwrap_err();
        (error.key, error.message)
    }

    #[test]
    fn defaults() {
        let settings = parse("include = [\"/var/log/*.log\"]").validate().unwrap();
        assert_eq!(settings.read_from, ReadFrom::Beginning);
        assert!(settings.follow);
        assert_eq!(settings.watch, WatchMode::Auto);
        assert_eq!(settings.poll_interval, Duration::from_millis(250));
        assert_eq!(settings.fingerprint_bytes, 1024);
        assert_eq!(settings.checkpoint_interval, Duration::from_secs(1));
        assert_eq!(settings.rotate_wait, Duration::from_secs(5));
        assert!(!settings.ignore_checkpoints);
        assert_eq!(settings.ignore_older, None);
        assert_eq!(settings.long_lines, LongLines::Truncate);
        assert_eq!(settings.format.max_line_bytes(), 1 << 20);
        assert!(settings.multiline.is_none());
        assert!(settings.path_field.is_none() && settings.host_field.is_none());
    }

    #[test]
    fn every_key() {
        let settings = parse(
            r#"
            include = ["/var/log/**/*.log"]
            exclude = ["*.gz"]
            read_from = "end"
            follow = false
            watch = "poll"
            poll_interval = "1s"
            fingerprint_bytes = "4KiB"
            checkpoint_interval = "5s"
            ignore_checkpoints = true
            ignore_older = "1d"
            rotate_wait = "30s"
            max_line_bytes = "64KiB"
            long_lines = "skip"
            line_delimiter = "\r\n"
            multiline = { start_pattern = '^\d', timeout = "2s" }
            max_decompressed_bytes = "1GiB"
            path_field = "file"
            host_field = "host"
            offset_field = "offset"
            "#,
        )
        .validate()
        .unwrap();
        assert_eq!(settings.fingerprint_bytes, 4096);
        assert_eq!(settings.ignore_older, Some(Duration::from_secs(86_400)));
        assert_eq!(settings.long_lines, LongLines::Skip);
        assert_eq!(settings.multiline.unwrap().timeout, Duration::from_secs(2));
        assert_eq!(settings.exclude.len(), 1);
        assert_eq!(settings.host_field.unwrap().as_str(), "host");
    }

    #[test]
    fn old_field_keys_still_work() {
        let settings =
            parse("include = [\"a.log\"]\nadd_path_field = \"file\"\nadd_offset_field = \"at\"")
                .validate()
                .unwrap();
        assert_eq!(settings.path_field.unwrap().as_str(), "file");
        assert_eq!(settings.offset_field.unwrap().as_str(), "at");
    }

    #[test]
    fn errors_name_their_key() {
        assert_eq!(error("include = []").0.as_deref(), Some("include"));
        assert_eq!(
            error("include = [\"/var/log/\"]").0.as_deref(),
            Some("include[0]")
        );
        assert_eq!(
            error("include = [\"a\"]\nexclude = [\"x/*/../y\"]")
                .0
                .as_deref(),
            Some("exclude[0]")
        );
        assert_eq!(
            error("include = [\"a\"]\nfingerprint_bytes = 4")
                .0
                .as_deref(),
            Some("fingerprint_bytes")
        );
        assert_eq!(
            error("include = [\"a\"]\nmultiline = { timeout = \"1s\" }")
                .0
                .as_deref(),
            Some("multiline")
        );
        assert_eq!(
            error("include = [\"a\"]\nmultiline = { start_pattern = \"(\" }")
                .0
                .as_deref(),
            Some("multiline.start_pattern")
        );
        assert_eq!(
            error("include = [\"a\"]\npath_field = \"f\"\noffset_field = \"f\"")
                .0
                .as_deref(),
            Some("offset_field")
        );
        assert_eq!(
            error("include = [\"a\"]\npoll_interval = \"0s\"")
                .0
                .as_deref(),
            Some("poll_interval")
        );
        assert!(toml::from_str::<FileConfig>("include = [\"a\"]\nwatch = \"inotify\"").is_err());
    }
}
