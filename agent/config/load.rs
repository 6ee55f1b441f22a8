//! Loading: files → interpolation → strict per-file pass → layering → validation.
//!
//! 1. Each path is a file or a directory; a directory contributes its `*.toml` files (not
//!    hidden ones) in name order. Later files override earlier ones key by key; tables merge,
//!    arrays (such as `steps`) are replaced whole.
//! 2. `${VAR}` references are interpolated on the text (see [`super::interpolate`]).
//! 3. Each file is parsed with `toml` and read strictly on its own, so that syntax and type errors
//!    get the file, line and column of the key at fault.
//! 4. The files and `SLUICE_`-prefixed environment variables are layered with the `config` crate
//!    and the result is read again (now loosely typed, so environment strings fill numbers) into a
//!    draft, which [`super::validate`] turns into a [`Config`].
//!
//! Environment overrides: `SLUICE_<KEY>` with `__` between levels, such as `SLUICE_DATA_DIR`,
//! `SLUICE_SINKS__PG__URL` or `SLUICE_TOPICS__RAW__MAX_EVENTS`. Keys come lowercased, so they
//! reach only lowercase component names, and only variables under a known top-level key
//! (`data_dir`, `shutdown_timeout`, `api__address`, `sources__`, `topics__`, `pipelines__`,
//! `sinks__`) are taken: others (`SLUICE_LOG`) belong to the command line.
//!
//! Every problem is collected, positioned and reported as `FILE:LINE:COL: KEY.PATH: message`.
//! A problem only the layered pass sees (an environment value, or files that are fine alone but
//! not together) says so with "(from the environment or merged files)", or names the environment
//! variable it comes from.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use super::Config;
use super::interpolate::{Interpolated, interpolate};
use super::locate::{LineIndex, Position, SpanIndex};
use super::path::{Issue, KeyPath, SECTIONS, Segment};
use super::read::Reader;
use super::validate::{Draft, validate};
use crate::test_command::PipelineTest;

/// The prefix of environment overrides.
const ENV_PREFIX: &str = "SLUICE";

/// A loaded config and the warnings found while checking it.
#[derive(Debug)]
pub struct Loaded {
    /// The validated config.
    pub config: Config,
    /// Problems that do not stop the config from running, rendered like errors.
    pub warnings: Vec<ConfigError>,
    /// The pipeline tests (`[[tests]]`) of every file, in file order (`sluice test`).
    pub tests: Vec<PipelineTest>,
    /// Problems in `[[tests]]`, rendered like errors: they stop `sluice test`, not a run.
    pub test_errors: Vec<ConfigError>,
}

/// One problem in a config: where, at which key, and what is wrong.
///
/// Displays as `FILE:LINE:COL: KEY.PATH: message`, leaving out what is not known (a problem
/// of the whole config has neither file nor key). The lines of a multi-line message after the
/// first are indented by four spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigError {
    /// The file, as given (a directory's files are shown joined to it).
    pub file: Option<String>,
    /// The line and column in the file.
    pub position: Option<Position>,
    /// The key path, as in `pipelines.app.steps[0].pattern` or `topics."nginx.raw".max_bytes`.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            f.write_str(file)?;
            if let Some(position) = self.position {
                write!(f, ":{position}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        // A multi-line message (a caret under a regex) is indented under its first line, so each
        // error still starts a line of its own with its position.
        for (i, line) in self.message.lines().enumerate() {
            if i > 0 {
                f.write_str("\n    ")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config, in file and line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads and validates config files and directories of `*.toml` files, merged in order, with
/// `${VAR}` interpolation and `SLUICE_*` environment overrides.
///
/// # Errors
/// Every problem found: unreadable files, interpolation, syntax, unknown or mistyped keys,
/// invalid components and graph problems.
pub fn load(paths: &[PathBuf]) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let files = read_files(paths, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    load_files(&files, &process_env(), &|name| std::env::var(name).ok())
}

/// Loads and validates one config given as text, shown in messages as `name`, with the same
/// interpolation and environment overrides as [`load`].
///
/// # Errors
/// As [`load`].
pub fn load_str(name: &str, text: &str) -> Result<Loaded, ConfigErrors> {
    let files = [SourceFile {
        name: name.to_owned(),
        text: text.to_owned(),
    }];
    load_files(&files, &process_env(), &|name| std::env::var(name).ok())
}

/// A config file's name and text.
#[derive(Debug, Clone)]
pub(super) struct SourceFile {
    /// The name shown in messages.
    pub(super) name: String,
    /// Its text.
    pub(super) text: String,
}

/// Reads every file of `paths`, reporting those that cannot be read.
fn read_files(paths: &[PathBuf], errors: &mut Vec<ConfigError>) -> Vec<SourceFile> {
    let problem = |path: &Path, message: String| ConfigError {
        file: Some(path.display().to_string()),
        position: None,
        key: None,
        message,
    };
    if paths.is_empty() {
        errors.push(ConfigError {
            file: None,
            position: None,
            key: None,
            message: "no config files given".to_owned(),
        });
    }
    let mut files = Vec::new();
    for path in paths {
        let listing = match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => std::fs::read_dir(path),
            Ok(_) => {
                match std::fs::read_to_string(path) {
                    Ok(text) => files.push(SourceFile {
                        name: path.display().to_string(),
                        text,
                    }),
                    Err(error) => errors.push(problem(path, format!("cannot read: {error}"))),
                }
                continue;
            }
            Err(error) => {
                errors.push(problem(path, format!("cannot read: {error}")));
                continue;
            }
        };
        let mut found: Vec<PathBuf> = match listing {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|file| {
                    let name = file
                        .file_name()
                        .and_then(|name| name.to_str())
                        .unwrap_or("");
                    name.ends_with(".toml") && !name.starts_with('.') && file.is_file()
                })
                .collect(),
            Err(error) => {
                errors.push(problem(path, format!("cannot list the directory: {error}")));
                continue;
            }
        };
        found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        if found.is_empty() {
            errors.push(problem(
                path,
                "no `*.toml` files in this directory".to_owned(),
            ));
        }
        for file in found {
            match std::fs::read_to_string(&file) {
                Ok(text) => files.push(SourceFile {
                    name: file.display().to_string(),
                    text,
                }),
                Err(error) => errors.push(problem(&file, format!("cannot read: {error}"))),
            }
        }
    }
    files
}

/// The process environment (variables that are valid Unicode).
fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// The key path an environment variable overrides, if it is an override at all.
pub(super) fn override_path(name: &str) -> Option<KeyPath> {
    let lowered = name.to_lowercase();
    let rest = lowered.strip_prefix(&format!("{}_", ENV_PREFIX.to_lowercase()))?;
    let known = rest == "data_dir"
        || rest == "shutdown_timeout"
        || rest == "api__address"
        || SECTIONS
            .iter()
            .any(|section| rest.starts_with(&format!("{section}__")));
    if !known {
        return None;
    }
    let segments = rest
        .split("__")
        .map(|segment| Segment::Key(segment.to_owned()))
        .collect();
    Some(KeyPath(segments))
}

/// A file after interpolation and parsing.
struct ParsedFile {
    interpolated: Interpolated,
    index: SpanIndex,
}

/// A problem with what is known of its place; sorted and rendered at the end.
struct Located {
    file: Option<usize>,
    position: Option<Position>,
    key: Option<KeyPath>,
    message: String,
}

/// Loads `files` with the environment `env` (variable, value; only overrides are used) and the
/// interpolation lookup `lookup`.
pub(super) fn load_files(
    files: &[SourceFile],
    env: &[(String, String)],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let mut loader = Loader {
        files,
        parsed: Vec::new(),
        env_paths: env
            .iter()
            .filter_map(|(name, _)| Some((override_path(name)?, name.clone())))
            .collect(),
        env: env
            .iter()
            .filter(|(name, _)| override_path(name).is_some())
            .cloned()
            .collect(),
        errors: Vec::new(),
        deprecated: Vec::new(),
        tests: Vec::new(),
        test_errors: Vec::new(),
    };
    if files.is_empty() {
        loader.errors.push(Located {
            file: None,
            position: None,
            key: None,
            message: "no config files given".to_owned(),
        });
        return Err(loader.finish_errors());
    }

    let strict_components = loader.strict_pass(lookup);
    if loader.parsed.len() < files.len() {
        // A file that does not parse cannot be layered; its errors say why.
        return Err(loader.finish_errors());
    }

    let Some(mut draft) = loader.merged_pass(&strict_components) else {
        return Err(loader.finish_errors());
    };
    loader.order_as_written(&mut draft);
    let validation = validate(draft);
    for issue in validation.errors {
        let located = loader.place(issue, false);
        loader.errors.push(located);
    }
    let mut warnings = std::mem::take(&mut loader.deprecated);
    warnings.extend(
        validation
            .warnings
            .into_iter()
            .map(|issue| loader.place(issue, false)),
    );
    match validation.config {
        Some(config) if loader.errors.is_empty() => {
            let test_errors = std::mem::take(&mut loader.test_errors);
            Ok(Loaded {
                config,
                warnings: loader.render(warnings),
                tests: std::mem::take(&mut loader.tests),
                test_errors: loader.render(test_errors),
            })
        }
        _ => Err(loader.finish_errors()),
    }
}

struct Loader<'a> {
    files: &'a [SourceFile],
    /// The files that parsed, in order (all of them once past the strict pass).
    parsed: Vec<ParsedFile>,
    /// The key paths the environment overrides, with the variable's name.
    env_paths: HashMap<KeyPath, String>,
    /// The environment variables that override config keys (name, value).
    env: Vec<(String, String)>,
    errors: Vec<Located>,
    /// Deprecated keys the layered config uses, placed where they are written: warnings.
    deprecated: Vec<Located>,
    /// Every file's `[[tests]]`, concatenated in file order (tests are not layered).
    tests: Vec<PipelineTest>,
    /// Problems in `[[tests]]`, with their positions.
    test_errors: Vec<Located>,
}

impl Loader<'_> {
    /// Interpolates, parses and reads each file on its own. Returns the components (or top-level
    /// keys) in which it found problems.
    fn strict_pass(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> HashSet<KeyPath> {
        let mut earlier: HashSet<KeyPath> = HashSet::new();
        let mut with_problems = HashSet::new();
        for (file, source) in self.files.iter().enumerate() {
            let lines = LineIndex::new(&source.text);
            let interpolated = match interpolate(&source.text, lookup) {
                Ok(interpolated) => interpolated,
                Err(problems) => {
                    for problem in problems {
                        self.errors.push(Located {
                            file: Some(file),
                            position: Some(lines.position(problem.offset)),
                            key: None,
                            message: problem.message,
                        });
                    }
                    continue;
                }
            };
            let syntax_error = |error: toml::de::Error| Located {
                file: Some(file),
                position: error
                    .span()
                    .map(|span| lines.position(interpolated.original_offset(span.start))),
                key: None,
                message: error.message().to_owned(),
            };
            let table = match toml::from_str::<toml::Table>(&interpolated.text) {
                Ok(table) => table,
                Err(error) => {
                    self.errors.push(syntax_error(error));
                    continue;
                }
            };
            let index = match toml::de::DeTable::parse(&interpolated.text) {
                Ok(document) => SpanIndex::new(document.get_ref(), &interpolated, &source.text),
                Err(error) => {
                    self.errors.push(syntax_error(error));
                    continue;
                }
            };
            let mut reader = Reader::new(&earlier);
            reader.read(toml::Value::Table(table));
            for issue in reader.issues {
                with_problems.insert(issue.path.component());
                let position = index.locate(&issue.path).map(|(_, position, _)| position);
                self.errors.push(Located {
                    file: Some(file),
                    position,
                    key: (!issue.path.is_root()).then_some(issue.path),
                    message: issue.message,
                });
            }
            // Tests are read from each file as written (interpolated, with positions) and
            // concatenated: they are not layered like components.
            self.tests.append(&mut reader.tests);
            for issue in reader.test_issues {
                let position = index.locate(&issue.path).map(|(_, position, _)| position);
                self.test_errors.push(Located {
                    file: Some(file),
                    position,
                    key: Some(issue.path),
                    message: issue.message,
                });
            }
            earlier.extend(reader.seen);
            self.parsed.push(ParsedFile {
                interpolated,
                index,
            });
        }
        with_problems
    }

    /// Layers the files and the environment and reads the result. `None` when layering failed.
    fn merged_pass(&mut self, strict_components: &HashSet<KeyPath>) -> Option<Draft> {
        let mut builder = config::Config::builder();
        for file in &self.parsed {
            builder = builder.add_source(config::File::from_str(
                &file.interpolated.text,
                config::FileFormat::Toml,
            ));
        }
        let overrides: config::Map<String, String> = self.env.iter().cloned().collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(overrides)),
        );
        let root = builder
            .build()
            .and_then(config::Config::try_deserialize::<config::Value>);
        let root = match root {
            Ok(root) => root,
            Err(error) => {
                // With errors already reported, a failed layering adds nothing.
                if self.errors.is_empty() {
                    self.errors.push(Located {
                        file: None,
                        position: None,
                        key: None,
                        message: format!("cannot merge the config files: {error}"),
                    });
                }
                return None;
            }
        };
        let no_earlier = HashSet::new();
        let mut reader = Reader::new(&no_earlier);
        let draft = reader.read(root);
        // Each file's own pass rewrote its deprecated keys too, but only here is every key
        // known (a partial override's kind comes from an earlier file); placing finds the file
        // and line that write the old key, or the environment variable that set it.
        for issue in std::mem::take(&mut reader.deprecated) {
            let located = self.place(issue, false);
            self.deprecated.push(located);
        }
        for issue in reader.issues {
            // The strict pass already explained problems in this component, with positions.
            if !strict_components.contains(&issue.path.component()) {
                let located = self.place(issue, true);
                self.errors.push(located);
            }
        }
        Some(draft)
    }

    /// Orders components and topics as the files first write them (the layered tree does not
    /// keep an order); those only the environment adds come last, by name.
    fn order_as_written(&self, draft: &mut Draft) {
        let written = |section: &str, name: &str| {
            let path = KeyPath::root().key(section).key(name);
            self.parsed
                .iter()
                .enumerate()
                .find_map(|(file, parsed)| match parsed.index.locate(&path) {
                    Some((2, _, offset)) => Some((file, offset)),
                    _ => None,
                })
                .unwrap_or((usize::MAX, 0))
        };
        draft
            .sources
            .sort_by(|a, _, b, _| (written("sources", a), a).cmp(&(written("sources", b), b)));
        draft
            .topics
            .sort_by(|a, _, b, _| (written("topics", a), a).cmp(&(written("topics", b), b)));
        draft
            .pipelines
            .sort_by(|a, _, b, _| (written("pipelines", a), a).cmp(&(written("pipelines", b), b)));
        draft
            .sinks
            .sort_by(|a, _, b, _| (written("sinks", a), a).cmp(&(written("sinks", b), b)));
    }

    /// Gives a problem of the layered config its place: the environment variable that set it,
    /// or the latest file that writes the key (or its nearest parent).
    fn place(&self, issue: Issue, merged: bool) -> Located {
        let Issue { path, mut message } = issue;
        let key = (!path.is_root()).then(|| path.clone());
        let mut best: Option<(usize, usize, Position)> = None;
        for (file, parsed) in self.parsed.iter().enumerate().rev() {
            if let Some((depth, position, _)) = parsed.index.locate(&path)
                && best.is_none_or(|(best_depth, _, _)| depth > best_depth)
            {
                best = Some((depth, file, position));
            }
        }
        let component = path.component();
        let from_env = self.env_paths.get(&path).or_else(|| {
            // A component no file writes, made by the environment alone.
            let in_files = best.is_some_and(|(depth, _, _)| depth >= component.segments().len());
            if in_files || path.is_root() {
                return None;
            }
            self.env_paths
                .iter()
                .filter(|(env_path, _)| env_path.segments().starts_with(component.segments()))
                .map(|(_, name)| name)
                .min()
        });
        if let Some(variable) = from_env {
            let _ = write!(message, " (from the environment variable `{variable}`)");
            return Located {
                file: None,
                position: None,
                key,
                message,
            };
        }
        if merged {
            message.push_str(" (from the environment or merged files)");
        }
        Located {
            file: best.map(|(_, file, _)| file),
            position: best.map(|(_, _, position)| position),
            key,
            message,
        }
    }

    fn finish_errors(&mut self) -> ConfigErrors {
        let errors = std::mem::take(&mut self.errors);
        ConfigErrors(self.render(errors))
    }

    /// Sorts problems by file and position (those without come last, in the order found),
    /// drops repeats and renders them.
    fn render(&self, mut problems: Vec<Located>) -> Vec<ConfigError> {
        problems.sort_by_key(|problem| {
            (
                problem.file.unwrap_or(usize::MAX),
                problem
                    .position
                    .map_or((usize::MAX, usize::MAX), |position| {
                        (position.line, position.column)
                    }),
            )
        });
        let mut seen = HashSet::new();
        problems
            .into_iter()
            .map(|problem| ConfigError {
                file: problem
                    .file
                    .and_then(|file| self.files.get(file))
                    .map(|file| file.name.clone()),
                position: problem.position,
                key: problem.key.map(|key| key.to_string()),
                message: problem.message,
            })
            .filter(|error| seen.insert(error.clone()))
            .collect()
    }
}
