//! The config of the `file` source and its validation into [`FileSettings`].

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sluice_pipelines::BuildError;
use sluice_pipelines::FieldName;
use sluice_pipelines::units::{ByteSize, HumanDuration};

use super::source::FileSource;
use crate::sources::lines::{DEFAULT_DELIMITER, DEFAULT_MAX_LINE_BYTES, LineFormat};

/// Config of the `file` source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The files to read: plain paths, or paths with `*` / `?` wildcards in the file name.
    pub include: Vec<PathBuf>,
    /// Where to start in files found at startup (default `beginning`).
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Keep reading what is appended (default `true`); `false` stops at the end of every file.
    #[serde(default = "default_follow")]
    pub follow: bool,
    /// How often idle files are checked for growth and patterns for new files (default 250ms).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// The longest line kept (default 1MiB); longer ones are cut and counted.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// What ends a line (default `"\n"`, which also strips a `\r` before it).
    #[serde(default = "default_line_delimiter")]
    pub line_delimiter: String,
    /// Name of a field to hold the file's path, if any.
    #[serde(default)]
    pub add_path_field: Option<String>,
    /// Name of a field to hold the line's byte offset in its file, if any.
    #[serde(default)]
    pub add_offset_field: Option<String>,
}

/// Where reading starts in a file found at startup. Files that appear later are always read from
/// their beginning, since everything in them is new.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From the first byte.
    #[default]
    Beginning,
    /// From the current end: only lines written from now on.
    End,
}

fn default_follow() -> bool {
    true
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(250))
}

fn default_max_line_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_LINE_BYTES)
}

fn default_line_delimiter() -> String {
    DEFAULT_DELIMITER.to_owned()
}

/// One `include` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Include {
    /// A plain path.
    Path(PathBuf),
    /// Every file in `dir` whose name matches `pattern` (`*` any run of characters, `?` one).
    Glob {
        /// The directory searched.
        dir: PathBuf,
        /// The file-name pattern.
        pattern: String,
    },
}

impl Include {
    /// Checks one `include` entry.
    ///
    /// # Errors
    /// A message when the path has no file name, uses `**`, or has wildcards outside its file
    /// name.
    pub fn parse(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = path.to_string_lossy();
        if text.contains("**") {
            return Err(format!(
                "`{shown}`: `**` is not supported yet; use `*` in the file name"
            ));
        }
        let Some(Component::Normal(name)) = path.components().next_back() else {
            return Err(format!("`{shown}` does not name a file"));
        };
        let dir = path.parent().unwrap_or_else(|| Path::new(""));
        if has_wildcard(&dir.to_string_lossy()) {
            return Err(format!(
                "`{shown}`: wildcards are only supported in the file name, not in directories"
            ));
        }
        let name = name.to_string_lossy();
        if !has_wildcard(&name) {
            return Ok(Include::Path(path.to_path_buf()));
        }
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        Ok(Include::Glob {
            dir,
            pattern: name.into_owned(),
        })
    }
}

fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?'])
}

/// A validated [`FileConfig`].
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// What to read.
    pub include: Vec<Include>,
    /// Where to start in files found at startup.
    pub read_from: ReadFrom,
    /// Whether to follow appends.
    pub follow: bool,
    /// How often idle files are checked.
    pub poll_interval: Duration,
    /// How lines are cut.
    pub format: LineFormat,
    /// The path field, if any.
    pub path_field: Option<FieldName>,
    /// The offset field, if any.
    pub offset_field: Option<FieldName>,
}

impl FileConfig {
    /// Checks the config without touching the file system.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault.
    pub fn validate(&self) -> Result<FileSettings, BuildError> {
        if self.include.is_empty() {
            return Err(BuildError::at("include", "needs at least one path"));
        }
        let include = self
            .include
            .iter()
            .enumerate()
            .map(|(index, path)| {
                Include::parse(path)
                    .map_err(|message| BuildError::at(format!("include[{index}]"), message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let poll_interval = self.poll_interval.get();
        if poll_interval < Duration::from_millis(1) {
            return Err(BuildError::at("poll_interval", "must be at least 1ms"));
        }
        let format = LineFormat::new(&self.line_delimiter, self.max_line_bytes.bytes())
            .map_err(BuildError::from)?;
        let path_field = field_name("add_path_field", self.add_path_field.as_deref())?;
        let offset_field = field_name("add_offset_field", self.add_offset_field.as_deref())?;
        if path_field.is_some() && path_field == offset_field {
            return Err(BuildError::at(
                "add_offset_field",
                "must differ from `add_path_field`",
            ));
        }
        Ok(FileSettings {
            include,
            read_from: self.read_from,
            follow: self.follow,
            poll_interval,
            format,
            path_field,
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

fn field_name(key: &str, name: Option<&str>) -> Result<Option<FieldName>, BuildError> {
    match name {
        None => Ok(None),
        Some("") => Err(BuildError::at(key, "a field name cannot be empty")),
        Some(name) => Ok(Some(FieldName::new(name))),
    }
}

/// Whether the file name `name` matches `pattern`: `*` matches any run of characters (also none),
/// `?` exactly one, anything else itself.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults() {
        let config = config("include = [\"/var/log/a.log\"]");
        assert_eq!(config.read_from, ReadFrom::Beginning);
        assert!(config.follow);
        assert_eq!(config.poll_interval.get(), Duration::from_millis(250));
        assert_eq!(config.max_line_bytes, ByteSize(1 << 20));
        assert_eq!(config.line_delimiter, "\n");
        let settings = config.validate().unwrap();
        assert_eq!(settings.include, [Include::Path("/var/log/a.log".into())]);
        assert_eq!(settings.format.max_line_bytes(), 1 << 20);
        assert!(settings.path_field.is_none() && settings.offset_field.is_none());
    }

    #[test]
    fn every_key_is_read_and_unknown_keys_refused() {
        let config = config(
            "include = [\"/logs/*.log\"]\nread_from = \"end\"\nfollow = false\n\
             poll_interval = \"1s\"\nmax_line_bytes = \"4KiB\"\nline_delimiter = \"\\r\\n\"\n\
             add_path_field = \"file\"\nadd_offset_field = \"offset\"",
        );
        let settings = config.validate().unwrap();
        assert_eq!(
            settings.include,
            [Include::Glob {
                dir: "/logs".into(),
                pattern: "*.log".into()
            }]
        );
        assert_eq!(settings.read_from, ReadFrom::End);
        assert!(!settings.follow);
        assert_eq!(settings.poll_interval, Duration::from_secs(1));
        assert_eq!(settings.format.delimiter(), b"\r\n");
        assert_eq!(settings.format.max_line_bytes(), 4096);
        assert_eq!(settings.path_field.unwrap().as_str(), "file");
        assert_eq!(settings.offset_field.unwrap().as_str(), "offset");

        let error = toml::from_str::<FileConfig>("include = [\"a\"]\nfolow = true").unwrap_err();
        assert!(error.to_string().contains("folow"), "{error}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |text: &str| config(text).validate().unwrap_err().key.unwrap();
        assert_eq!(key("include = []"), "include");
        assert_eq!(key("include = [\"/a/**/x.log\"]"), "include[0]");
        assert_eq!(key("include = [\"a\", \"/logs/*/x.log\"]"), "include[1]");
        assert_eq!(key("include = [\"/\"]"), "include[0]");
        assert_eq!(
            key("include = [\"a\"]\npoll_interval = \"0s\""),
            "poll_interval"
        );
        assert_eq!(
            key("include = [\"a\"]\nmax_line_bytes = 0"),
            "max_line_bytes"
        );
        assert_eq!(
            key("include = [\"a\"]\nline_delimiter = \"\""),
            "line_delimiter"
        );
        assert_eq!(
            key("include = [\"a\"]\nadd_path_field = \"\""),
            "add_path_field"
        );
        assert_eq!(
            key("include = [\"a\"]\nadd_path_field = \"f\"\nadd_offset_field = \"f\""),
            "add_offset_field"
        );
    }

    #[test]
    fn relative_globs_search_the_current_directory() {
        assert_eq!(
            Include::parse(Path::new("app-?.log")).unwrap(),
            Include::Glob {
                dir: ".".into(),
                pattern: "app-?.log".into()
            }
        );
    }

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(matches_pattern("*.log", "access.log"));
        assert!(matches_pattern("*.log", ".log"));
        assert!(!matches_pattern("*.log", "access.log.1"));
        assert!(matches_pattern("access.log*", "access.log.1"));
        assert!(matches_pattern("a*b*c", "aXXbYbZc"));
        assert!(!matches_pattern("a*b*c", "aXXbYbZ"));
        assert!(matches_pattern("app-?.log", "app-1.log"));
        assert!(!matches_pattern("app-?.log", "app-10.log"));
        assert!(matches_pattern("*", ""));
        assert!(!matches_pattern("x", ""));
        assert!(matches_pattern("exact", "exact"));
    }
}
