//! Path patterns of `include` and `exclude`: `*`, `?`, `[…]`, `{a,b}` and `**`.
//!
//! A pattern is cut into path components. The leading components without wildcards form its
//! *base*, the directory that is listed (and watched); the rest are matched one component at a
//! time, each by a [`globset`] matcher: `*` matches any run of characters within a name (also
//! none, also a leading dot), `?` exactly one character, `[0-9]` / `[!a]` one character of (not
//! of) a class, `{a,b}` either alternative, and a component that is exactly `**` any number of
//! directories (also none). So `/var/log/**/*.{log,txt}` finds `/var/log/a.log` and
//! `/var/log/app/x/b.txt`. `\` escapes a special character.
//!
//! The walk is ours, not globset's: listing goes no deeper than the pattern allows, never follows
//! a symbolic link to a directory below a `**` (no loops), and stops at [`MAX_DEPTH`] levels
//! below the base. Names are matched on their bytes, so names that are not UTF-8 match too.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// How many directory levels below a pattern's base are listed at most.
pub const MAX_DEPTH: usize = 32;

/// Why a path pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is empty.
    #[error("an empty path names no file")]
    Empty,
    /// The pattern ends in `/`, `.` or `..`.
    #[error("`{pattern}` does not name a file")]
    NotAFile {
        /// The pattern as written.
        pattern: String,
    },
    /// `..` after a wildcard component.
    #[error("`{pattern}`: `..` cannot follow a wildcard")]
    ParentAfterWildcard {
        /// The pattern as written.
        pattern: String,
    },
    /// A component is not a valid glob (an unclosed `[` or `{`, say).
    #[error("`{pattern}`: {message}")]
    Invalid {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One compiled `include` or `exclude` pattern.
#[derive(Clone, Debug)]
pub struct PathPattern {
    text: String,
    base: PathBuf,
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    /// A name matched exactly.
    Literal(OsString),
    /// A name with wildcards.
    Wild(GlobMatcher),
    /// `**`: any number of directories.
    AnyDirs,
}

/// The characters that make a component a glob rather than a literal name.
const GLOB_CHARS: [char; 4] = ['*', '?', '[', '{'];

impl Part {
    /// A wildcard component. `**` inside a name means what `*` does there (globset accepts
    /// `**` only as a whole component).
    fn wild(component: &str) -> Result<Part, globset::Error> {
        let mut component = component.to_owned();
        while component.contains("**") {
            component = component.replace("**", "*");
        }
        let glob = GlobBuilder::new(&component)
            .literal_separator(true)
            .build()?;
        Ok(Part::Wild(glob.compile_matcher()))
    }

    fn matches(&self, name: &OsStr) -> bool {
        match self {
            Part::Literal(literal) => literal == name,
            Part::Wild(matcher) => matcher.is_match(name),
            Part::AnyDirs => true,
        }
    }
}

impl PathPattern {
    /// Compiles `path`.
    ///
    /// # Errors
    /// A [`PatternError`] when the pattern does not name a file (empty, or ending in `/`, `.` or
    /// `..`), when `..` follows a wildcard, or when a component is not a valid glob.
    pub fn parse(path: &Path) -> Result<Self, PatternError> {
        let text = path.to_string_lossy().into_owned();
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.ends_with('/')
            || !matches!(path.components().next_back(), Some(Component::Normal(_)))
        {
            return Err(PatternError::NotAFile { pattern: text });
        }
        let mut base = PathBuf::new();
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(name) => {
                    let lossy = name.to_string_lossy();
                    let part = if lossy == "**" {
                        Part::AnyDirs
                    } else if lossy.contains(GLOB_CHARS) {
                        Part::wild(&lossy).map_err(|error| PatternError::Invalid {
                            pattern: text.clone(),
                            message: error.kind().to_string(),
                        })?
                    } else {
                        Part::Literal(name.to_os_string())
                    };
                    if parts.is_empty() && matches!(part, Part::Literal(_)) {
                        base.push(name);
                    } else {
                        parts.push(part);
                    }
                }
                Component::ParentDir if !parts.is_empty() => {
                    return Err(PatternError::ParentAfterWildcard { pattern: text });
                }
                other => base.push(other.as_os_str()),
            }
        }
        if parts.is_empty() {
            // A plain path: its last component is matched, its directory listed.
            let name = base
                .file_name()
                .map(|name| name.to_os_string())
                .unwrap_or_default();
            base.pop();
            parts.push(Part::Literal(name));
        }
        Ok(PathPattern { text, base, parts })
    }

    /// The pattern as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The directory the pattern lists (and a watcher watches): `.` for a pattern without a
    /// directory.
    pub fn base(&self) -> &Path {
        if self.base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.base
        }
    }

    /// Whether the pattern can match below more than one level of its base (`**` or wildcards
    /// in directory names): a watcher then watches the base recursively.
    pub fn is_recursive(&self) -> bool {
        self.parts.len() > 1
    }

    /// Whether the pattern has no wildcard at all.
    pub fn is_plain(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Literal(_)])
    }

    /// Whether `path` matches. A path is compared component by component with the pattern's
    /// base and then its parts, so it must be written the same way (both absolute, or both
    /// relative to the same directory).
    pub fn matches(&self, path: &Path) -> bool {
        let Ok(rest) = path.strip_prefix(&self.base) else {
            return false;
        };
        let names: Vec<&OsStr> = rest
            .components()
            .filter_map(|component| match component {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        match_parts(&self.parts, &names, false)
    }

    /// Whether the pattern matches the file name of `path` alone: for `exclude` entries without
    /// a directory (`*.gz`).
    pub fn matches_name(&self, path: &Path) -> bool {
        match path.file_name() {
            Some(name) => matches!(self.parts.as_slice(), [part] if part.matches(name)),
            None => false,
        }
    }

    /// Whether the pattern is a bare file-name pattern (no directory written).
    pub fn is_name_only(&self) -> bool {
        !self.text.contains('/')
    }

    /// Every regular file (symbolic links followed) that matches now, sorted by path. Errors
    /// listing a directory (missing, no permission) are skipped: the file may come later.
    pub fn find(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        if let [Part::Literal(name)] = self.parts.as_slice() {
            let path = self.base.join(name);
            if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                found.push(path);
            }
            return found;
        }
        let mut names = Vec::new();
        self.walk(&self.base.clone(), &mut names, &mut found);
        found.sort();
        found
    }

    /// Lists `dir` (written as the paths it yields should start; empty for `.`).
    fn walk(&self, dir: &Path, names: &mut Vec<OsString>, found: &mut Vec<PathBuf>) {
        if names.len() > MAX_DEPTH {
            return;
        }
        let listed = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Ok(entries) = std::fs::read_dir(listed) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let path = dir.join(&name);
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            names.push(name);
            let refs: Vec<&OsStr> = names.iter().map(OsString::as_os_str).collect();
            let (is_dir, is_file) = if file_type.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(meta) => (
                        meta.is_dir() && !self.under_any_dirs(refs.len()),
                        meta.is_file(),
                    ),
                    Err(_) => (false, false),
                }
            } else {
                (file_type.is_dir(), file_type.is_file())
            };
            if is_file && match_parts(&self.parts, &refs, false) {
                found.push(path.clone());
            }
            if is_dir && match_parts(&self.parts, &refs, true) {
                self.walk(&path, names, found);
            }
            names.pop();
        }
    }

    /// Whether the directory at `depth` (1 = a child of the base) is matched by a `**`.
    fn under_any_dirs(&self, depth: usize) -> bool {
        self.parts
            .iter()
            .take(depth)
            .any(|part| matches!(part, Part::AnyDirs))
    }
}

/// Whether `names` match `parts` whole, or (with `prefix`) could be the leading directories of
/// a match.
fn match_parts(parts: &[Part], names: &[&OsStr], prefix: bool) -> bool {
    match (parts.first(), names.first()) {
        (_, None) => prefix || parts.iter().all(|part| matches!(part, Part::AnyDirs)),
        (None, Some(_)) => false,
        (Some(Part::AnyDirs), Some(_)) => {
            // `**` absorbs nothing, or one more name.
            match_parts(&parts[1..], names, prefix) || match_parts(parts, &names[1..], prefix)
        }
        (Some(part), Some(name)) => {
            part.matches(name) && match_parts(&parts[1..], &names[1..], prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(Path::new(text)).unwrap()
    }

    fn wild(pattern: &str, name: &str) -> bool {
        Part::wild(pattern).unwrap().matches(OsStr::new(name))
    }

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(wild("*.log", "access.log"));
        assert!(wild("*.log", ".log"));
        assert!(!wild("*.log", "access.log.1"));
        assert!(wild("access.log*", "access.log.1"));
        assert!(wild("a*b*c", "aXXbYbZc"));
        assert!(!wild("a*b*c", "aXXbYbZ"));
        assert!(wild("app-?.log", "app-1.log"));
        assert!(!wild("app-?.log", "app-10.log"));
        assert!(wild("*", ""));
        assert!(!wild("x", ""));
        assert!(wild("exact", "exact"));
    }

    #[test]
    fn bases_and_parts() {
        let p = pattern("/var/log/nginx/*.log");
        assert_eq!(p.base(), Path::new("/var/log/nginx"));
        assert!(!p.is_recursive());
        assert!(p.matches(Path::new("/var/log/nginx/access.log")));
        assert!(!p.matches(Path::new("/var/log/nginx/sub/access.log")));
        let p = pattern("access.log");
        assert_eq!(p.base(), Path::new("."));
        assert!(p.is_plain());
        let p = pattern("/var/**/*.log");
        assert!(p.is_recursive());
        assert!(p.matches(Path::new("/var/a.log")));
        assert!(p.matches(Path::new("/var/x/y/a.log")));
        assert!(!p.matches(Path::new("/var/x/y/a.txt")));
        assert!(!p.matches(Path::new("/usr/a.log")));
        let p = pattern("/srv/*/logs/*.log");
        assert_eq!(p.base(), Path::new("/srv"));
        assert!(p.matches(Path::new("/srv/app/logs/a.log")));
        assert!(!p.matches(Path::new("/srv/app/x/logs/a.log")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PathPattern::parse(Path::new("")).is_err());
        assert!(PathPattern::parse(Path::new("/var/log/")).is_err());
        assert!(PathPattern::parse(Path::new("/var/*/../a.log")).is_err());
        assert!(PathPattern::parse(Path::new("/var/log/..")).is_err());
    }

    #[test]
    fn find_lists_recursively_only_as_deep_as_needed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in [
            "a.log",
            "b.txt",
            "x/c.log",
            "x/y/d.log",
            "x/y/e.txt",
            "z/f.log",
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        std::fs::create_dir(root.join("dir.log")).unwrap();
        let names = |pattern: &PathPattern| -> Vec<String> {
            pattern
                .find()
                .iter()
                .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let all = PathPattern::parse(&root.join("**/*.log")).unwrap();
        assert_eq!(names(&all), ["a.log", "x/c.log", "x/y/d.log", "z/f.log"]);
        let one_level = PathPattern::parse(&root.join("*/*.log")).unwrap();
        assert_eq!(names(&one_level), ["x/c.log", "z/f.log"]);
        let plain = PathPattern::parse(&root.join("x/c.log")).unwrap();
        assert_eq!(names(&plain), ["x/c.log"]);
        let missing = PathPattern::parse(&root.join("nope/**/*.log")).unwrap();
        assert!(names(&missing).is_empty());
    }

    #[test]
    fn classes_and_alternatives_match_within_a_name() {
        assert!(wild("app-[0-9].log", "app-7.log"));
        assert!(!wild("app-[0-9].log", "app-x.log"));
        assert!(wild("app-[!0-9].log", "app-x.log"));
        assert!(wild("*.{log,txt}", "a.txt"));
        assert!(wild("*.{log,txt}", "a.log"));
        assert!(!wild("*.{log,txt}", "a.gz"));
        assert!(wild(r"\*.log", "*.log"));
        assert!(!wild(r"\*.log", "a.log"));
        // `**` inside a name is `*`, as before globset.
        assert!(wild("a**b", "aXXb"));
        let p = pattern("/srv/{api,web}/*.log");
        assert_eq!(p.base(), Path::new("/srv"));
        assert!(p.matches(Path::new("/srv/api/a.log")));
        assert!(!p.matches(Path::new("/srv/db/a.log")));
    }

    #[test]
    fn names_that_are_not_utf8_match_on_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let p = pattern("/var/log/*.log");
        assert!(p.matches(Path::new(OsStr::from_bytes(b"/var/log/\xff.log"))));
    }

    #[test]
    fn bad_globs_are_refused_with_the_pattern() {
        let error = PathPattern::parse(Path::new("/var/log/app-[0-9.log")).unwrap_err();
        assert!(matches!(error, PatternError::Invalid { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with("`/var/log/app-[0-9.log`: "),
            "{error}"
        );
        assert_eq!(
            PathPattern::parse(Path::new("")).unwrap_err(),
            PatternError::Empty
        );
    }

    #[test]
    fn name_only_excludes() {
        let p = pattern("*.gz");
        assert!(p.is_name_only());
        assert!(p.matches_name(Path::new("/var/log/a.log.2.gz")));
        assert!(!p.matches_name(Path::new("/var/log/a.log")));
    }
}
