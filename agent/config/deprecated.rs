//! Deprecated key names: older spellings still read, rewritten to today's keys, each use a
//! warning.
//!
//! The same thing has one name in every component (`url`, `request_timeout`, `retry`, `auth`,
//! `group_by`), and a key means one thing (`headers` is always a map of headers to *send*). Keys
//! that were renamed for that keep working: the reader rewrites a component's table before its
//! kind deserializes it, so the component's config type knows only today's names, and the loader
//! reports each old key as a warning at its file, line and key (or at the environment variable
//! that set it). An old key beside its replacement is an error, since the two could disagree.
//!
//! | component | old key | today |
//! |---|---|---|
//! | `http` sink | `uri` | `url` |
//! | `clickhouse` sink | `endpoint` | `url` |
//! | `clickhouse` sink | `user`, `password` | `auth = { strategy = "basic", user, password }` |
//! | `http_poll` source | `timeout` | `request_timeout` |
//! | `http_poll` source | `retries` | `retry.max_attempts` (one more: it counts the first request) |
//! | `http_poll` source | `retry_backoff`, `max_retry_backoff` | `retry.initial`, `retry.max` |
//! | `http_server` source | `headers` (names to copy) | `copy_headers` |
//! | `dedupe` step | `fields` | `group_by` |
//! | `sample` step | `key` | `group_by` |

use super::path::{Issue, KeyPath};
use super::tree::Tree;

/// A key renamed in place.
struct Rename {
    /// `source`, `sink` or `step`.
    family: &'static str,
    /// The component's `type`.
    kind: &'static str,
    old: &'static str,
    new: &'static str,
}

/// Every key renamed in place.
const RENAMES: [Rename; 6] = [
    Rename {
        family: "sink",
        kind: "http",
        old: "uri",
        new: "url",
    },
    Rename {
        family: "sink",
        kind: "clickhouse",
        old: "endpoint",
        new: "url",
    },
    Rename {
        family: "source",
        kind: "http_poll",
        old: "timeout",
        new: "request_timeout",
    },
    Rename {
        family: "source",
        kind: "http_server",
        old: "headers",
        new: "copy_headers",
    },
    Rename {
        family: "step",
        kind: "dedupe",
        old: "fields",
        new: "group_by",
    },
    Rename {
        family: "step",
        kind: "sample",
        old: "key",
        new: "group_by",
    },
];

/// A top-level key moved into a table.
struct Move {
    /// `source`, `sink` or `step`.
    family: &'static str,
    /// The component's `type`.
    kind: &'static str,
    old: &'static str,
    /// The table it moves into.
    table: &'static str,
    /// Its key in the table.
    key: &'static str,
    /// Whether the value counts one more (`retries` → `max_attempts`).
    plus_one: bool,
    /// Entries of the table when the old keys make it (`strategy = "basic"`); when there are
    /// some, a table written beside the old key is a conflict (credentials are one whole).
    new_table: &'static [(&'static str, &'static str)],
    /// How the warning shows the replacement.
    shown: &'static str,
}

/// Every key moved into a table.
const MOVES: [Move; 5] = [
    Move {
        family: "source",
        kind: "http_poll",
        old: "retries",
        table: "retry",
        key: "max_attempts",
        plus_one: true,
        new_table: &[],
        shown: "`retry.max_attempts`, which counts the first request too (`retries = 2` is \
                `retry = { max_attempts = 3 }`)",
    },
    Move {
        family: "source",
        kind: "http_poll",
        old: "retry_backoff",
        table: "retry",
        key: "initial",
        plus_one: false,
        new_table: &[],
        shown: "`retry.initial`",
    },
    Move {
        family: "source",
        kind: "http_poll",
        old: "max_retry_backoff",
        table: "retry",
        key: "max",
        plus_one: false,
        new_table: &[],
        shown: "`retry.max`",
    },
    Move {
        family: "sink",
        kind: "clickhouse",
        old: "user",
        table: "auth",
        key: "user",
        plus_one: false,
        new_table: &[("strategy", "basic")],
        shown: "`auth = { strategy = \"basic\", user = …, password = … }`",
    },
    Move {
        family: "sink",
        kind: "clickhouse",
        old: "password",
        table: "auth",
        key: "password",
        plus_one: false,
        new_table: &[("strategy", "basic")],
        shown: "`auth = { strategy = \"basic\", user = …, password = … }`",
    },
];

/// What rewriting a component's keys found.
#[derive(Default)]
pub(super) struct Upgraded {
    /// One warning per old key used, at its path.
    pub(super) warnings: Vec<Issue>,
    /// Old keys written beside their replacement, at the old key's path.
    pub(super) errors: Vec<Issue>,
}

/// Rewrites the deprecated keys of a `family` component of type `kind` (its table at `path`,
/// `entries` without `type`) to today's keys.
pub(super) fn upgrade<T: Tree>(
    family: &str,
    kind: &str,
    entries: &mut Vec<(String, T)>,
    path: &KeyPath,
) -> Upgraded {
    let mut found = Upgraded::default();
    let has = |entries: &[(String, T)], key: &str| entries.iter().any(|(name, _)| name == key);
    for rename in RENAMES
        .iter()
        .filter(|rename| rename.family == family && rename.kind == kind)
    {
        let Some(at) = entries.iter().position(|(name, _)| name == rename.old) else {
            continue;
        };
        let old_path = path.key(rename.old);
        if has(entries, rename.new) {
            found.errors.push(Issue::new(
                old_path,
                format!(
                    "`{}` is the deprecated name of `{}`, which is set too; keep only `{}`",
                    rename.old, rename.new, rename.new
                ),
            ));
            continue;
        }
        entries[at].0 = rename.new.to_owned();
        found.warnings.push(Issue::new(
            old_path,
            format!(
                "deprecated key `{}`: use `{}`, which means the same",
                rename.old, rename.new
            ),
        ));
    }
    // Tables the old keys made here, which later old keys fill in.
    let mut made: Vec<&str> = Vec::new();
    for moved in MOVES
        .iter()
        .filter(|moved| moved.family == family && moved.kind == kind)
    {
        let Some(at) = entries.iter().position(|(name, _)| name == moved.old) else {
            continue;
        };
        let old_path = path.key(moved.old);
        let (_, mut value) = entries.remove(at);
        if moved.plus_one {
            match value.as_integer() {
                Some(number) if number >= 0 => value = T::from_integer(number.saturating_add(1)),
                _ => {
                    found.errors.push(Issue::new(
                        old_path,
                        format!(
                            "expected a non-negative integer, found {}",
                            value.describe()
                        ),
                    ));
                    continue;
                }
            }
        }
        let table_at = entries.iter().position(|(name, _)| name == moved.table);
        let mut table = match table_at.map(|at| entries.remove(at).1) {
            None => {
                made.push(moved.table);
                moved
                    .new_table
                    .iter()
                    .map(|(key, text)| ((*key).to_owned(), T::from_string(text)))
                    .collect()
            }
            Some(written) => match written.into_entries() {
                Ok(table) if moved.new_table.is_empty() || made.contains(&moved.table) => table,
                // A table written beside the old key, or a `retry` that is not a table: the
                // component's own deserialization reports what is wrong with it.
                other => {
                    let written = other.map_or_else(|value| value, T::from_entries);
                    found.errors.push(Issue::new(
                        old_path,
                        format!(
                            "deprecated key `{}` beside `{}`: use only {}",
                            moved.old, moved.table, moved.shown
                        ),
                    ));
                    entries.push((moved.table.to_owned(), written));
                    continue;
                }
            },
        };
        if has(&table, moved.key) {
            found.errors.push(Issue::new(
                old_path,
                format!(
                    "`{}` is the deprecated form of `{}.{}`, which is set too; keep only `{}.{}`",
                    moved.old, moved.table, moved.key, moved.table, moved.key
                ),
            ));
        } else {
            table.push((moved.key.to_owned(), value));
            found.warnings.push(Issue::new(
                old_path,
                format!("deprecated key `{}`: use {}", moved.old, moved.shown),
            ));
        }
        entries.push((moved.table.to_owned(), T::from_entries(table)));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgraded(family: &str, kind: &str, text: &str) -> (toml::Value, Vec<String>, Vec<String>) {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut entries: Vec<(String, toml::Value)> = table.into_iter().collect();
        let path = KeyPath::root().key("sinks").key("out");
        let found = upgrade(family, kind, &mut entries, &path);
        let show = |issues: Vec<Issue>| {
            issues
                .into_iter()
                .map(|issue| format!("{}: {}", issue.path, issue.message))
                .collect()
        };
        (
            toml::Value::from_entries(entries),
            show(found.warnings),
            show(found.errors),
        )
    }

    #[test]
    fn a_renamed_key_is_moved_with_a_warning() {
        let (table, warnings, errors) = upgraded("sink", "http", "uri = \"http://x/\"");
        assert_eq!(
            table,
            toml::from_str::<toml::Value>("url = \"http://x/\"").unwrap()
        );
        assert_eq!(
            warnings,
            ["sinks.out.uri: deprecated key `uri`: use `url`, which means the same"]
        );
        assert!(errors.is_empty());
        // Another kind's key of the same name is left alone.
        let (table, warnings, _) = upgraded("sink", "file", "uri = \"x\"");
        assert_eq!(table, toml::from_str::<toml::Value>("uri = \"x\"").unwrap());
        assert!(warnings.is_empty());
    }

    #[test]
    fn an_old_key_beside_its_replacement_is_an_error() {
        let (_, warnings, errors) =
            upgraded("sink", "http", "uri = \"http://a/\"\nurl = \"http://b/\"");
        assert!(warnings.is_empty());
        assert_eq!(
            errors,
            [
                "sinks.out.uri: `uri` is the deprecated name of `url`, which is set too; keep only `url`"
            ]
        );
        let (_, _, errors) = upgraded(
            "source",
            "http_poll",
            "retries = 1\nretry = { max_attempts = 5 }",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        let (_, _, errors) = upgraded(
            "sink",
            "clickhouse",
            "user = \"ann\"\nauth = { strategy = \"bearer\", token = \"t\" }",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn retry_keys_move_into_the_retry_table() {
        let (table, warnings, errors) = upgraded(
            "source",
            "http_poll",
            "retries = 2\nretry_backoff = \"20ms\"\nmax_retry_backoff = \"50ms\"",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(warnings.len(), 3);
        assert_eq!(
            table,
            toml::from_str::<toml::Value>(
                "retry = { max_attempts = 3, initial = \"20ms\", max = \"50ms\" }"
            )
            .unwrap()
        );
        // Merged into a `retry` table written beside them.
        let (table, _, errors) = upgraded(
            "source",
            "http_poll",
            "retries = 0\nretry = { max = \"1s\" }",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            table,
            toml::from_str::<toml::Value>("retry = { max_attempts = 1, max = \"1s\" }").unwrap()
        );
        let (_, _, errors) = upgraded("source", "http_poll", "retries = \"many\"");
        assert_eq!(
            errors,
            ["sinks.out.retries: expected a non-negative integer, found string \"many\""]
        );
    }

    #[test]
    fn credentials_become_basic_auth() {
        let (table, warnings, errors) =
            upgraded("sink", "clickhouse", "user = \"ann\"\npassword = \"pw\"");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(warnings.len(), 2);
        assert_eq!(
            table,
            toml::from_str::<toml::Value>(
                "auth = { strategy = \"basic\", user = \"ann\", password = \"pw\" }"
            )
            .unwrap()
        );
    }
}
