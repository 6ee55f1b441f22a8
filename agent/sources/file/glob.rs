//! Path patterns of `include` and `exclude`: `*`, `?` and `**`.
//!
//! A pattern is cut into path components. The leading components without wildcards form its
//! *base*, the directory that is listed (and watched); the rest are matched one component at a
//! time: `*` matches any run of characters within a name (also none, also a leading dot), `?`
//! exactly one character, and a component that is exactly `**` any number of directories (also
//! none). So `/var/log/**/*.log` finds `/var/log/a.log` and `/var/log/app/x/b.log`.
//!
//! Listing goes no deeper than the pattern allows, never follows a symbolic link to a directory
//! below a `**` (no loops), and stops at [`MAX_DEPTH`] levels below the base. Names that are not
//! UTF-8 are matched on their lossy text; that is enough for patterns, which are UTF-8 text.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// How many directory levels below a pattern's base are listed at most.
pub const MAX_DEPTH: usize = 32;

/// One compiled `include` or `exclude` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    base: PathBuf,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// A name matched exactly.
    Literal(OsString),
    /// A name with `*` / `?`.
    Wild(Vec<char>),
    /// `**`: any number of directories.
    AnyDirs,
}

impl Part {
    fn matches(&self, name: &std::ffi::OsStr) -> bool {
        match self {
            Part::Literal(literal) => literal == name,
            Part::Wild(pattern) => {
                let name: Vec<char> = name.to_string_lossy().chars().collect();
                wildcard_match(pattern, &name)
            }
            Part::AnyDirs => true,
        }
    }
}

impl PathPattern {
    /// Compiles `path`.
    ///
    /// # Errors
    /// A message when the pattern does not name a file (empty, or ending in `/`, `.` or `..`),
    /// or when `..` follows a wildcard.
    pub fn parse(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = path.to_string_lossy().into_owned();
        if text.is_empty() {
            return Err("an empty path names no file".into());
        }
        if text.ends_with('/')
            || !matches!(path.components().next_back(), Some(Component::Normal(_)))
        {
            return Err(format!("`{shown}` does not name a file"));
        }
        let mut base = PathBuf::new();
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(name) => {
                    let lossy = name.to_string_lossy();
                    let part = if lossy == "**" {
                        Part::AnyDirs
                    } else if lossy.contains(['*', '?']) {
                        Part::Wild(lossy.chars().collect())
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
                    return Err(format!("`{shown}`: `..` cannot follow a wildcard"));
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
        let names: Vec<&std::ffi::OsStr> = rest
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
            let refs: Vec<&std::ffi::OsStr> = names.iter().map(OsString::as_os_str).collect();
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
fn match_parts(parts: &[Part], names: &[&std::ffi::OsStr], prefix: bool) -> bool {
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

/// Whether `name` matches `pattern`: `*` any run of characters (also none), `?` exactly one,
/// anything else itself.
pub fn wildcard_match(pattern: &[char], name: &[char]) -> bool {
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

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(Path::new(text)).unwrap()
    }

    fn wild(pattern: &str, name: &str) -> bool {
        let pattern: Vec<char> = pattern.chars().collect();
        let name: Vec<char> = name.chars().collect();
        wildcard_match(&pattern, &name)
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
    fn name_only_excludes() {
        let p = pattern("*.gz");
        assert!(p.is_name_only());
        assert!(p.matches_name(Path::new("/var/log/a.log.2.gz")));
        assert!(!p.matches_name(Path::new("/var/log/a.log")));
    }
}
