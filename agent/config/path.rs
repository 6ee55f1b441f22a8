//! Key paths: where in the config tree a problem is, as users write it.
//!
//! A [`KeyPath`] is a list of table keys and array indices. It renders the way TOML addresses
//! keys: `pipelines.app.steps[0].pattern`, with keys that are not bare TOML keys quoted
//! (`topics."nginx.raw".max_bytes`). The loader uses the same path to find the line and column
//! of the key in a file (see [`super::locate`]), so the path is the link between a deserialization
//! or validation error and its position.

use std::fmt;

/// The tables of named components (and topics) at the top level: a key path into one of them
/// belongs to the component two segments down.
pub(super) const SECTIONS: [&str; 4] = ["sources", "topics", "pipelines", "sinks"];

/// One step down the config tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Segment {
    /// A key of a table.
    Key(String),
    /// An index into an array.
    Index(usize),
}

/// A path from the root of the config to a key or array element.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct KeyPath(pub(super) Vec<Segment>);

impl KeyPath {
    /// The root of the config (the empty path).
    pub(super) fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by the table key `key`.
    pub(super) fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    /// This path extended by the array index `index`.
    pub(super) fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// This path extended by every segment of `other`.
    pub(super) fn join(&self, other: &KeyPath) -> Self {
        let mut path = self.clone();
        path.0.extend(other.0.iter().cloned());
        path
    }

    /// The segments.
    pub(super) fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the root.
    pub(super) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path of the component (or top-level key) this path lies in: `sinks.out` for
    /// `sinks.out.input`, `data_dir` for `data_dir`.
    pub(super) fn component(&self) -> KeyPath {
        let depth = match self.0.first() {
            Some(Segment::Key(section)) if SECTIONS.contains(&section.as_str()) => 2,
            _ => 1,
        };
        KeyPath(self.0.iter().take(depth).cloned().collect())
    }

    /// Converts the path `serde_path_to_error` tracked while deserializing.
    pub(super) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let mut segments = Vec::new();
        for segment in path {
            match segment {
                S::Seq { index } => segments.push(Segment::Index(*index)),
                S::Map { key } => segments.push(Segment::Key(key.clone())),
                S::Enum { variant } => segments.push(Segment::Key(variant.clone())),
                // A key that was not a string: nothing sensible to add below this point.
                S::Unknown => break,
            }
        }
        KeyPath(segments)
    }

    /// Parses a component-relative key as components write it in a `BuildError`: dotted keys
    /// with optional `[i]` indices (`types.status`, `fields[2].name`).
    pub(super) fn parse_relative(key: &str) -> Self {
        let mut segments = Vec::new();
        for part in key.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(at) => part.split_at(at),
                None => (part, ""),
            };
            if !name.is_empty() {
                segments.push(Segment::Key(name.to_owned()));
            }
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else {
                    break;
                };
                match stripped[..end].parse() {
                    Ok(index) => segments.push(Segment::Index(index)),
                    Err(_) => segments.push(Segment::Key(stripped[..end].to_owned())),
                }
                rest = &stripped[end + 1..];
            }
        }
        KeyPath(segments)
    }
}

/// Whether `key` can be written bare in TOML (otherwise it is quoted when shown).
fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(key) {
                        f.write_str(key)?;
                    } else {
                        f.write_str("\"")?;
                        for c in key.chars() {
                            match c {
                                '"' => f.write_str("\\\"")?,
                                '\\' => f.write_str("\\\\")?,
                                c => write!(f, "{c}")?,
                            }
                        }
                        f.write_str("\"")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A problem (error or warning) at a key path, before it is given a file position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    /// Where the problem is.
    pub(super) path: KeyPath,
    /// What is wrong and what was expected.
    pub(super) message: String,
}

impl Issue {
    /// A problem at `path`.
    pub(super) fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Issue {
            path,
            message: message.into(),
        }
    }
}
