//! Tests of config loading: interpolation, files and directories, layering, environment
//! overrides, every kind of error with its exact rendered line, warnings, defaults, and the
//! fixtures under `tests/fixtures/config/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use proptest::prelude::*;
use sluice_pipelines::{ComponentKind, OnError, StepConfig};
use sluice_sink::SinkConfig;

use crate::sources::SourceConfig;

use super::interpolate::interpolate;
use super::load::{SourceFile, load_files};
use super::path::KeyPath;
use super::validate::edit_distance;
use super::*;

/// Held for reading by tests that read the process environment, and for writing by the one test
/// that changes it.
static PROCESS_ENV: RwLock<()> = RwLock::new(());

/// A small valid config: stdin → `raw` → parse → `parsed` → console.
const BASE: &str = r#"[sources.in]
type = "stdin"
topic = "raw"

[pipelines.app]
input = "raw"
output = "parsed"
steps = [{ type = "parse", format = "json" }]

[sinks.out]
type = "console"
input = "parsed"
"#;

fn no_vars(_: &str) -> Option<String> {
    None
}

/// Loads `files` (name, text) with the given environment overrides and no `${VAR}` values.
fn load_texts(files: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    let files: Vec<SourceFile> = files
        .iter()
        .map(|(name, text)| SourceFile {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    load_files(&files, &env, &no_vars)
}

/// Loads one file named `pipeline.toml`.
fn load_one(text: &str) -> Result<Loaded, ConfigErrors> {
    load_texts(&[("pipeline.toml", text)], &[])
}

/// The rendered errors of a config that must not load.
fn errors(result: Result<Loaded, ConfigErrors>) -> Vec<String> {
    match result {
        Ok(loaded) => panic!("expected errors, got a config: {:?}", loaded.config),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// The rendered warnings of a config that must load.
fn warnings(result: Result<Loaded, ConfigErrors>) -> Vec<String> {
    match result {
        Ok(loaded) => loaded.warnings.iter().map(ToString::to_string).collect(),
        Err(errors) => panic!("expected a config, got errors:\n{errors}"),
    }
}

fn config(result: Result<Loaded, ConfigErrors>) -> Config {
    match result {
        Ok(loaded) => loaded.config,
        Err(errors) => panic!("expected a config, got errors:\n{errors}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// ---- interpolation ----

fn vars(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("db.local".to_owned()),
        "EMPTY" => Some(String::new()),
        "MULTI" => Some("a\nb".to_owned()),
        _ => None,
    }
}

#[test]
fn interpolation_replaces_variables_defaults_and_escapes() {
    let text = "url = \"${HOST}:${PORT:-5432}\"\nempty = \"${EMPTY:-fallback}|${EMPTY}\"\n\
                cost = \"$$5 ${NOPE:-}\"\nregex = '^a$'\n";
    let done = interpolate(text, &vars).unwrap();
    assert_eq!(
        done.text,
        "url = \"db.local:5432\"\nempty = \"fallback|\"\ncost = \"$5 \"\nregex = '^a$'\n"
    );
}

#[test]
fn interpolation_reports_every_problem_with_its_offset() {
    let text = "a = \"${MISSING}\"\nb = \"${bad name}\"\nc = \"${OPEN\"\nd = \"${MULTI}\"\n";
    let problems = interpolate(text, &vars).unwrap_err();
    let shown: Vec<(usize, &str)> = problems
        .iter()
        .map(|problem| (problem.offset, problem.message.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                5,
                "environment variable `MISSING` is not set; set it or give a default with \
                 `${MISSING:-default}`"
            ),
            (
                22,
                "invalid reference `${bad name}`: expected `${NAME}` or `${NAME:-default}` with \
                 a NAME of letters, digits and `_`"
            ),
            (
                40,
                "`${` is not closed by `}` on the same line; write `$${` for a literal `${`"
            ),
            (
                53,
                "environment variable `MULTI` contains a line break, which cannot be inserted \
                 into a config line"
            ),
        ]
    );
}

#[test]
fn interpolation_keeps_lines_and_maps_columns_back() {
    let text = "a = 1\nurl = \"${HOST}\" x\n$$ = 2\n";
    let done = interpolate(text, &vars).unwrap();
    assert_eq!(done.text.lines().count(), text.lines().count());
    // `x` after the 8-character value maps back to its place after the 7-character reference.
    let x_out = done.text.find(" x").unwrap() + 1;
    assert_eq!(done.original_offset(x_out), text.find(" x").unwrap() + 1);
    // Inside the inserted value: the start of the reference.
    let inside = done.text.find("db.local").unwrap() + 3;
    assert_eq!(done.original_offset(inside), text.find("${HOST}").unwrap());
    // After the `$$` escape.
    let after = done.text.rfind('=').unwrap();
    assert_eq!(done.original_offset(after), text.rfind('=').unwrap());
}

#[test]
fn missing_variable_is_reported_at_its_line_and_column() {
    let text = "[sources.in]\ntype = \"stdin\"\ntopic = \"${SLUICE_TEST_SURELY_UNSET_TOPIC}\"\n";
    assert_eq!(
        errors(load_one(text)),
        [
            "pipeline.toml:3:10: environment variable `SLUICE_TEST_SURELY_UNSET_TOPIC` is not set; \
          set it or give a default with `${SLUICE_TEST_SURELY_UNSET_TOPIC:-default}`"
        ]
    );
}

#[test]
fn errors_after_an_interpolated_value_keep_their_original_column() {
    let text = BASE.replace(
        "output = \"parsed\"",
        "output = \"${SLUICE_TEST_SURELY_UNSET_OUT:-parsed}\"\nworkers = 0",
    );
    let text = text.replace(
        "workers = 0",
        "x = \"${SLUICE_TEST_SURELY_UNSET_X:-1}\"; workers = 0",
    );
    // `;` is not TOML: the syntax error after the value points at its column in the file (39),
    // not in the interpolated text (8).
    assert_eq!(
        errors(load_one(&text)),
        ["pipeline.toml:8:39: unexpected key or value, expected newline, `#`"]
    );
}

// ---- files and layering ----

#[test]
fn directory_files_load_in_name_order_and_later_ones_override() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "10-base.toml", BASE);
    write(
        dir.path(),
        "20-tuning.toml",
        "[pipelines.app]\nworkers = 2\n[sinks.out]\nencoding = \"text\"\n",
    );
    write(dir.path(), "30-more.toml", "[pipelines.app]\nworkers = 3\n");
    // Not config: other extensions and hidden files.
    write(dir.path(), "notes.txt", "this is not toml");
    write(dir.path(), ".backup.toml", "this is not toml");
    let _env = PROCESS_ENV.read().unwrap();
    let loaded = load(&[dir.path().to_path_buf()]).unwrap();
    let app = &loaded.config.pipelines["app"];
    assert_eq!(app.subscription.workers, 3);
    assert_eq!(
        app.steps.len(),
        1,
        "a table override keeps the earlier keys"
    );
    assert_eq!(loaded.config.sinks["out"].config.kind(), "console");
}

#[test]
fn later_files_merge_tables_and_replace_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base.toml", BASE);
    let more = write(
        dir.path(),
        "override.toml",
        "shutdown_timeout = \"5s\"\n[pipelines.app]\nworkers = 4\nsteps = []\n\
         [sinks.archive]\ntype = \"blackhole\"\ninput = \"raw\"\n",
    );
    let _env = PROCESS_ENV.read().unwrap();
    let config = load(&[base, more]).unwrap().config;
    assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
    let app = &config.pipelines["app"];
    assert_eq!(app.subscription.workers, 4);
    assert_eq!(app.subscription.input, "raw");
    assert!(app.steps.is_empty());
    assert_eq!(config.sinks.keys().collect::<Vec<_>>(), ["out", "archive"]);
}

#[test]
fn unreadable_paths_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("conf.d");
    std::fs::create_dir(&empty).unwrap();
    let missing = dir.path().join("missing.toml");
    let shown = errors(load(&[empty.clone(), missing.clone()]));
    assert_eq!(shown.len(), 2);
    assert_eq!(
        shown[0],
        format!("{}: no `*.toml` files in this directory", empty.display())
    );
    assert!(
        shown[1].starts_with(&format!("{}: cannot read: ", missing.display())),
        "{}",
        shown[1]
    );
    assert_eq!(errors(load(&[])), ["no config files given"]);
}

#[test]
fn environment_overrides_keys_and_fills_numbers_from_strings() {
    let config = config(load_texts(
        &[("pipeline.toml", BASE)],
        &[
            ("SLUICE_DATA_DIR", "/var/lib/sluice"),
            ("SLUICE_TOPICS__RAW__MAX_EVENTS", "10"),
            ("SLUICE_PIPELINES__APP__WORKERS", "3"),
            ("SLUICE_SINKS__OUT__BLOCKING", "false"),
            ("SLUICE_SINKS__OUT__TARGET", "stderr"),
            ("SLUICE_API__ADDRESS", "127.0.0.1:9700"),
            // Not a config key: left to the command line.
            ("SLUICE_LOG", "debug"),
        ],
    ));
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/sluice"));
    assert_eq!(
        config.api.map(|api| api.address),
        Some(([127, 0, 0, 1], 9700).into())
    );
    assert_eq!(config.topics["raw"].settings.max_events, 10);
    assert_eq!(config.pipelines["app"].subscription.workers, 3);
    assert!(!config.sinks["out"].subscription.blocking);
}

#[test]
fn environment_errors_name_the_variable() {
    assert_eq!(
        errors(load_texts(
            &[("pipeline.toml", BASE)],
            &[
                ("SLUICE_PIPELINES__APP__WORKERS", "two"),
                ("SLUICE_SINKS__NEW__INPUT", "parsed"),
            ],
        )),
        [
            "pipelines.app.workers: expected a number of workers from 1 to 64, found string \
             \"two\" (from the environment variable `SLUICE_PIPELINES__APP__WORKERS`)"
                .to_owned(),
            format!(
                "sinks.new: missing key `type`, expected one of: {} (from the environment \
                 variable `SLUICE_SINKS__NEW__INPUT`)",
                SinkConfig::KINDS.join(", ")
            ),
        ]
    );
}

/// The rendered error, checked by its start and end: the middle lists the keys of a sink kind,
/// which grows as sinks do.
fn assert_unknown_key(shown: &str, start: &str, end: &str) {
    assert!(
        shown.starts_with(start) && shown.ends_with(end),
        "{shown}\ndoes not start with: {start}\nor does not end with: {end}"
    );
}

#[test]
fn environment_unknown_keys_name_the_variable() {
    let shown = errors(load_texts(
        &[("pipeline.toml", BASE)],
        &[("SLUICE_SINKS__OUT__COLOUR", "red")],
    ));
    assert_eq!(shown.len(), 1);
    assert_unknown_key(
        &shown[0],
        "sinks.out.colour: unknown key `colour`, expected ",
        " (from the environment variable `SLUICE_SINKS__OUT__COLOUR`)",
    );
}

#[test]
#[allow(
    unsafe_code,
    reason = "`std::env::set_var` is unsafe; the test holds `PROCESS_ENV` exclusively"
)]
fn process_environment_overrides_through_load() {
    const VAR: &str = "SLUICE_TOPICS__SLUICE_CONFIG_TEST_TOPIC__MAX_EVENTS";
    let _env = PROCESS_ENV.write().unwrap();
    let previous = std::env::var_os(VAR);
    // SAFETY: every test of this module that reads the environment holds `PROCESS_ENV`; this one
    // holds it exclusively while the variable is set.
    unsafe { std::env::set_var(VAR, "7") };
    let loaded = load_str("pipeline.toml", BASE);
    match previous {
        // SAFETY: as above.
        Some(value) => unsafe { std::env::set_var(VAR, value) },
        // SAFETY: as above.
        None => unsafe { std::env::remove_var(VAR) },
    }
    let loaded = loaded.unwrap();
    assert_eq!(
        loaded.config.topics["sluice_config_test_topic"]
            .settings
            .max_events,
        7
    );
    assert_eq!(
        loaded
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "topics.sluice_config_test_topic: topic `sluice_config_test_topic` is declared but \
          nothing reads or writes it (from the environment variable `SLUICE_TOPICS__SLUICE_CONFIG_TEST_TOPIC__MAX_EVENTS`)"
        ]
    );
}

#[test]
fn a_later_file_only_checked_after_merging_says_so() {
    let shown = errors(load_texts(
        &[
            ("base.toml", BASE),
            ("colour.toml", "[sinks.out]\ncolour = \"red\"\n"),
        ],
        &[],
    ));
    assert_eq!(shown.len(), 1);
    assert_unknown_key(
        &shown[0],
        "colour.toml:2:1: sinks.out.colour: unknown key `colour`, expected ",
        " (from the environment or merged files)",
    );
}

#[test]
fn partial_overrides_are_still_checked_for_what_they_contain() {
    assert_eq!(
        errors(load_texts(
            &[
                ("base.toml", BASE),
                (
                    "tuning.toml",
                    "[pipelines.app]\nworkers = \"two\"\n[sinks.out]\nbogus = 1\nblocking = 1\n"
                ),
            ],
            &[],
        )),
        [
            "tuning.toml:2:1: pipelines.app.workers: expected a number of workers from 1 to 64, \
             found string \"two\"",
            "tuning.toml:5:1: sinks.out.blocking: expected true or false, found integer 1",
        ]
    );
}

// ---- errors, each with its exact line ----

#[test]
fn syntax_errors_point_at_the_problem() {
    assert_eq!(
        errors(load_one("[sources.in]\ntype = stdin\n")),
        ["pipeline.toml:2:8: string values must be quoted, expected literal string"]
    );
}

#[test]
fn unknown_keys_point_at_their_own_line() {
    let text = format!("log_level = \"debug\"\n{BASE}");
    let text = text.replace("output = \"parsed\"", "output = \"parsed\"\nworker = 2");
    let text = text.replace("topic = \"raw\"", "topic = \"raw\"\nmax_line = 10");
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:1:1: log_level: unknown key `log_level`, expected one of `data_dir`, \
             `shutdown_timeout`, `api`, `sources`, `topics`, `pipelines`, `sinks`, `tests`",
            "pipeline.toml:5:1: sources.in.max_line: unknown key `max_line`, expected \
             `max_line_bytes` or `line_delimiter`",
            "pipeline.toml:10:1: pipelines.app.worker: unknown key `worker`, expected one of \
             `input`, `output`, `workers`, `blocking`, `ack_timeout`, `start_at`, `dead_letter`, `on_error`, \
             `flush_on_shutdown`, `steps`",
        ]
    );
}

#[test]
fn unknown_keys_in_steps_point_at_the_key() {
    let text = BASE.replace(
        "steps = [{ type = \"parse\", format = \"json\" }]",
        "steps = [\n  { type = \"parse\", format = \"json\" },\n  { type = \"filter\", condition = \"true\",\n    negate = true },\n]",
    );
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:11:5: pipelines.app.steps[1].negate: unknown key `negate`, expected \
          `condition`"
        ]
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    let text = BASE
        .replace(
            "output = \"parsed\"",
            "output = \"parsed\"\nworkers = \"two\"\nblocking = \"no\"",
        )
        .replace("input = \"parsed\"", "input = 5");
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:8:1: pipelines.app.workers: expected a number of workers from 1 to 64, \
             found string \"two\"",
            "pipeline.toml:9:1: pipelines.app.blocking: expected true or false, found string \"no\"",
            "pipeline.toml:14:1: sinks.out.input: expected a topic name (a string), found integer 5",
        ]
    );
}

#[test]
fn missing_and_unknown_types_list_the_kinds() {
    let text = BASE
        .replace("type = \"stdin\"\n", "")
        .replace("type = \"console\"", "type = \"consol\"");
    assert_eq!(
        errors(load_one(&text)),
        [
            format!(
                "pipeline.toml:1:10: sources.in: missing key `type`, expected one of: {}",
                SourceConfig::KINDS.join(", ")
            ),
            format!(
                "pipeline.toml:10:1: sinks.out.type: unknown sink type `consol`, expected one of: \
                 {}",
                SinkConfig::KINDS.join(", ")
            ),
        ]
    );
    let text = BASE.replace(
        "{ type = \"parse\", format = \"json\" }",
        "{ format = \"json\" }",
    );
    assert_eq!(
        errors(load_one(&text)),
        [format!(
            "pipeline.toml:8:10: pipelines.app.steps[0]: missing key `type`, expected one of: {}",
            StepConfig::KINDS.join(", ")
        )]
    );
}

#[test]
fn missing_keys_point_at_the_component() {
    let text = BASE
        .replace("output = \"parsed\"\n", "")
        .replace("input = \"parsed\"\n", "");
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:5:12: pipelines.app: missing key `output`: the topic the pipeline \
             writes to",
            "pipeline.toml:9:8: sinks.out: missing key `input`: the topic the sink reads",
        ]
    );
    let text = BASE.replace("format = \"json\"", "pattern = \"x\"");
    assert_eq!(
        errors(load_one(&text)),
        ["pipeline.toml:8:10: pipelines.app.steps[0]: missing key `format`"]
    );
}

#[test]
fn bad_units_are_explained() {
    let text = format!(
        "{BASE}\n[topics.\"raw\"]\nmax_bytes = \"12 parsecs\"\n\n[topics.parsed]\nretention = 10\n"
    );
    let text = text.replace(
        "output = \"parsed\"",
        "output = \"parsed\"\nack_timeout = \"5 fortnights\"",
    );
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:8:1: pipelines.app.ack_timeout: unknown duration unit `fortnights` in \
             `5 fortnights`; use ms, s, m, h, d or w",
            "pipeline.toml:16:1: topics.raw.max_bytes: unknown size unit `parsecs` in `12 \
             parsecs`; use B, KB, MB, GB, KiB, MiB or GiB",
            "pipeline.toml:19:1: topics.parsed.retention: invalid type: integer `10`, expected a \
             duration such as \"10s\", \"5m\" or \"250ms\"",
        ]
    );
}

#[test]
fn unproduced_inputs_suggest_a_near_name() {
    let text = BASE.replace("input = \"parsed\"", "input = \"prased\"");
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:12:1: sinks.out.input: topic `prased` is not produced by any source or \
          pipeline (did you mean `parsed`?)"
        ]
    );
    let text = BASE.replace("input = \"parsed\"", "input = \"elsewhere\"");
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:12:1: sinks.out.input: topic `elsewhere` is not produced by any source \
          or pipeline"
        ]
    );
}

#[test]
fn external_topics_turn_the_input_error_into_a_warning() {
    let text = format!(
        "{}\n[topics.\"web.requests\"]\nexternal = true\n",
        BASE.replace("input = \"parsed\"", "input = \"web.requests\"")
    );
    assert_eq!(
        warnings(load_one(&text)),
        [
            "pipeline.toml:12:1: sinks.out.input: topic `web.requests` is not produced by any \
          source or pipeline; it is declared `external`, so something outside this config must \
          feed it"
        ]
    );
}

#[test]
fn cycles_are_named() {
    let text = format!(
        "{BASE}\n[pipelines.back]\ninput = \"parsed\"\noutput = \"raw\"\nsteps = []\n\n\
         [pipelines.self]\ninput = \"loop\"\noutput = \"loop\"\nsteps = []\n"
    );
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:6:1: pipelines.app.input: pipelines form a cycle: app -> back -> app",
            "pipeline.toml:20:1: pipelines.self.input: pipelines form a cycle: self -> self",
        ]
    );
}

#[test]
fn dead_letter_loops_are_cycles_too() {
    let text = BASE.replace(
        "output = \"parsed\"",
        "output = \"parsed\"\ndead_letter = \"raw\"",
    );
    assert_eq!(
        errors(load_one(&text)),
        ["pipeline.toml:6:1: pipelines.app.input: pipelines form a cycle: app -> app"]
    );
}

#[test]
fn ranges_and_storage_are_checked() {
    let text = format!(
        "shutdown_timeout = \"0s\"\n{}\n[topics.raw]\nmax_events = 0\nmax_bytes = \"512B\"\n\
         retention = \"1d\"\nfsync = \"always\"\n\n[topics.parsed]\nstorage = \"disk\"\n\
         segment_bytes = \"1KiB\"\nfsync = \"never\"\nfsync_interval = \"1s\"\nretention = \"0s\"\n",
        BASE.replace(
            "output = \"parsed\"",
            "output = \"parsed\"\nworkers = 0\nack_timeout = \"0s\""
        )
        .replace("input = \"parsed\"", "input = \"parsed\"\nworkers = 65")
    );
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:1:1: shutdown_timeout: must be longer than 0s",
            "pipeline.toml:9:1: pipelines.app.workers: expected a number of workers from 1 to \
             64, found 0",
            "pipeline.toml:10:1: pipelines.app.ack_timeout: must be longer than 0s",
            "pipeline.toml:16:1: sinks.out.workers: expected a number of workers from 1 to 64, \
             found 65",
            "pipeline.toml:19:1: topics.raw.max_events: must be at least 1",
            "pipeline.toml:20:1: topics.raw.max_bytes: must be at least 1KiB, found 512B",
            "pipeline.toml:21:1: topics.raw.retention: `retention` applies only to disk topics \
             (storage = \"disk\")",
            "pipeline.toml:22:1: topics.raw.fsync: `fsync` applies only to disk topics \
             (storage = \"disk\")",
            "pipeline.toml:26:1: topics.parsed.segment_bytes: must be at least 64KiB, found 1KiB",
            "pipeline.toml:28:1: topics.parsed.fsync_interval: applies only with fsync = \
             \"interval\"",
            "pipeline.toml:29:1: topics.parsed.retention: must be longer than 0s",
        ]
    );
}

#[test]
fn component_checks_are_reported_at_their_key() {
    let text = BASE
        .replace(
            "steps = [{ type = \"parse\", format = \"json\" }]",
            "steps = [\n  { type = \"parse\", format = \"json\" },\n  { type = \"parse\", format = \"regex\",\n    pattern = '(?P<level>\\w+' },\n]",
        )
        .replace("type = \"console\"", "type = \"blackhole\"\nprint_interval = \"0s\"")
        .replace("topic = \"raw\"", "topic = \"raw\"\nline_delimiter = \"\"");
    let shown = errors(load_one(&text));
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert!(
        shown[0].starts_with("pipeline.toml:4:1: sources.in.line_delimiter: "),
        "{}",
        shown[0]
    );
    assert!(
        shown[1].starts_with("pipeline.toml:12:5: pipelines.app.steps[1].pattern: "),
        "{}",
        shown[1]
    );
    assert_eq!(
        shown[2],
        "pipeline.toml:17:1: sinks.out.print_interval: must be greater than zero (leave it out to \
         log only at close)"
    );
}

#[test]
fn names_are_checked() {
    let text = BASE
        .replace("[sources.in]", "[sources.\"in put\"]")
        .replace("topic = \"raw\"", "topic = \"raw data\"")
        .replace("input = \"raw\"", "input = \"raw data\"");
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:1:10: sources.\"in put\": invalid source name `in put`: use only \
             letters, digits, `_`, `.` and `-`",
            "pipeline.toml:3:1: sources.\"in put\".topic: invalid topic name `raw data`: use only \
             letters, digits, `_`, `.` and `-`",
            "pipeline.toml:6:1: pipelines.app.input: invalid topic name `raw data`: use only \
             letters, digits, `_`, `.` and `-`",
        ]
    );
}

#[test]
fn a_config_needs_sources_and_somewhere_to_send_them() {
    assert_eq!(
        errors(load_one("data_dir = \"/tmp\"\n")),
        ["nothing to run: the config has no sources (`[sources.<name>]`)"]
    );
    assert_eq!(
        errors(load_one(
            "[sources.in]\ntype = \"stdin\"\ntopic = \"raw\"\n"
        )),
        ["nothing to run: the config has no pipelines or sinks"]
    );
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let text = format!(
        "{}\n[topics.raw]\nmax_bytes = \"1 parsec\"\n",
        BASE.replace(
            "output = \"parsed\"",
            "output = \"parsed\"\nworkers = \"many\""
        )
        .replace(
            "input = \"parsed\"",
            "input = \"nowhere\"\ncolour = \"red\""
        )
    );
    let shown = errors(load_one(&text));
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert!(
        shown[0].starts_with("pipeline.toml:8:1: pipelines.app.workers: "),
        "{shown:#?}"
    );
    assert!(shown[1].starts_with("pipeline.toml:13:1: sinks.out.input: topic `nowhere`"));
    assert!(shown[2].starts_with("pipeline.toml:14:1: sinks.out.colour: unknown key"));
    assert!(shown[3].starts_with("pipeline.toml:17:1: topics.raw.max_bytes: unknown size unit"));
}

#[test]
fn errors_render_one_per_line() {
    let errors = ConfigErrors(vec![
        ConfigError {
            file: Some("a.toml".to_owned()),
            position: Some(Position { line: 3, column: 7 }),
            key: Some("sinks.out.input".to_owned()),
            message: "bad".to_owned(),
        },
        ConfigError {
            file: None,
            position: None,
            key: None,
            message: "nothing to run".to_owned(),
        },
    ]);
    assert_eq!(
        errors.to_string(),
        "a.toml:3:7: sinks.out.input: bad\nnothing to run"
    );
}

// ---- warnings, defaults, implied topics ----

#[test]
fn unused_declared_topics_are_warnings() {
    let text = format!("{BASE}\n[topics.\"nginx.raw\"]\nmax_events = 10\n");
    assert_eq!(
        warnings(load_one(&text)),
        [
            "pipeline.toml:14:9: topics.\"nginx.raw\": topic `nginx.raw` is declared but nothing \
          reads or writes it"
        ]
    );
}

#[test]
fn defaults_are_filled_and_implied_topics_added() {
    let text = format!("{BASE}\n[topics.parsed]\nmax_events = 5\nwhen_full = \"drop_oldest\"\n");
    let config = config(load_one(&text));
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    let app = &config.pipelines["app"];
    assert_eq!(
        app.subscription,
        SubscriptionDef {
            input: "raw".to_owned(),
            workers: 1,
            blocking: true,
            ack_timeout: Some(Duration::from_secs(300)),
            start_at: crate::topic::StartAt::Latest,
        }
    );
    assert_eq!(app.output, "parsed");
    assert_eq!(app.dead_letter, DEFAULT_DEAD_LETTER_TOPIC);
    assert_eq!(app.on_error, OnError::DeadLetter);
    assert!(app.flush_on_shutdown);
    assert_eq!(config.sources["in"].topic, "raw");
    // Declared first, then implied in order of reference.
    assert_eq!(
        config.topics.keys().collect::<Vec<_>>(),
        ["parsed", "raw", DEFAULT_DEAD_LETTER_TOPIC]
    );
    assert_eq!(config.topics["parsed"].settings.max_events, 5);
    assert_eq!(config.topics["raw"], TopicConfig::default());
}

#[test]
fn pipeline_keys_are_read() {
    let text = BASE.replace(
        "output = \"parsed\"",
        "output = \"parsed\"\nworkers = 2\nblocking = false\nack_timeout = \"1m\"\n\
         dead_letter = \"app.bad\"\non_error = \"drop\"\nflush_on_shutdown = false",
    );
    let config = config(load_one(&text));
    let app = &config.pipelines["app"];
    assert_eq!(app.subscription.workers, 2);
    assert!(!app.subscription.blocking);
    assert_eq!(app.subscription.ack_timeout, Some(Duration::from_secs(60)));
    assert_eq!(app.dead_letter, "app.bad");
    assert_eq!(app.on_error, OnError::Drop);
    assert!(!app.flush_on_shutdown);
    assert!(config.topics.contains_key("app.bad"));
    // Sinks send what stores reject for good to the default dead-letter topic.
    assert!(config.topics.contains_key(DEFAULT_DEAD_LETTER_TOPIC));
}

#[test]
fn dead_letter_topics_count_as_produced() {
    let text = format!(
        "{}\n[sinks.bad]\ntype = \"console\"\ninput = \"app.bad\"\n",
        BASE.replace(
            "output = \"parsed\"",
            "output = \"parsed\"\ndead_letter = \"app.bad\""
        )
    );
    assert!(warnings(load_one(&text)).is_empty());
}

#[test]
fn components_keep_the_order_they_are_written_in() {
    let text = "[sources.zeta]\ntype = \"stdin\"\ntopic = \"raw\"\n\
                [sources.alpha]\ntype = \"generator\"\nformat = \"nginx\"\ntopic = \"raw\"\n\
                [sinks.zz]\ntype = \"blackhole\"\ninput = \"raw\"\n\
                [sinks.aa]\ntype = \"blackhole\"\ninput = \"raw\"\n";
    let config = config(load_one(text));
    assert_eq!(config.sources.keys().collect::<Vec<_>>(), ["zeta", "alpha"]);
    assert_eq!(config.sinks.keys().collect::<Vec<_>>(), ["zz", "aa"]);
}

// ---- pieces ----

#[test]
fn key_paths_render_like_toml() {
    let path = KeyPath::root()
        .key("topics")
        .key("nginx.raw")
        .key("max_bytes");
    assert_eq!(path.to_string(), "topics.\"nginx.raw\".max_bytes");
    let path = KeyPath::root()
        .key("pipelines")
        .key("app")
        .key("steps")
        .index(0)
        .join(&KeyPath::parse_relative("types.status"));
    assert_eq!(path.to_string(), "pipelines.app.steps[0].types.status");
    assert_eq!(
        KeyPath::parse_relative("fields[2].name").to_string(),
        "fields[2].name"
    );
}

#[test]
fn edit_distance_counts_edits() {
    assert_eq!(edit_distance("web.reqests", "web.requests"), 1);
    assert_eq!(edit_distance("prased", "parsed"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}

// ---- fixtures ----

/// Every `tests/fixtures/config/<case>.toml` fails to load with exactly the errors in
/// `<case>.expected` (one per line).
#[test]
fn config_error_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "fixtures missing in {}", dir.display());
    let lookup = |name: &str| -> Option<String> {
        HashMap::from([("SLUICE_FIXTURE_HOST", "localhost")])
            .get(name)
            .map(|value| (*value).to_owned())
    };
    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&case).unwrap();
        let expected = std::fs::read_to_string(case.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{name} has no .expected file"));
        let files = [SourceFile {
            name: name.clone(),
            text,
        }];
        let shown = match load_files(&files, &[], &lookup) {
            Ok(_) => "(loaded without errors)".to_owned(),
            Err(errors) => errors.to_string(),
        };
        if shown.trim_end() != expected.trim_end() {
            failures.push(format!(
                "{name}:\n  expected: {}\n  got:      {shown}",
                expected.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

proptest! {
    #[test]
    fn interpolation_never_panics(text in "\\PC{0,64}") {
        let _ = interpolate(&text, &vars);
    }

    #[test]
    fn interpolation_keeps_the_line_count(text in "(\\PC|\n|\\$|\\{|\\}){0,64}") {
        prop_assume!(!text.contains("${"));
        let done = interpolate(&text, &vars).unwrap();
        prop_assert_eq!(done.text.lines().count(), text.lines().count());
        prop_assert_eq!(done.text.matches('\n').count(), text.matches('\n').count());
    }

    #[test]
    fn interpolation_with_references_keeps_lines(
        lines in proptest::collection::vec("[a-z =\"]{0,8}(\\$\\{HOST\\}|\\$\\{X:-d\\}|\\$\\$)?[a-z ]{0,4}", 0..8),
    ) {
        let text = lines.join("\n");
        let done = interpolate(&text, &vars).unwrap();
        prop_assert_eq!(done.text.matches('\n').count(), text.matches('\n').count());
    }
}

#[test]
fn sink_driver_keys_are_read_with_their_paths() {
    let text = format!(
        "{BASE}\n[sinks.tuned]\ntype = \"console\"\ninput = \"parsed\"\n\
         batch = {{ max_events = 50, timeout = \"200ms\" }}\nconcurrency = \"adaptive\"\n\
         retry = {{ initial = \"1s\", max = \"10s\", max_attempts = 5 }}\nhealthcheck = false\n"
    );
    let config = config(load_one(&text));
    let driver = &config.sinks["tuned"].driver;
    assert_eq!(driver.batch.max_events, 50);
    assert_eq!(driver.batch.timeout.get(), Duration::from_millis(200));
    assert_eq!(
        driver.concurrency,
        sluice_sink::driver::Concurrency::Adaptive
    );
    assert_eq!(driver.retry.max_attempts, Some(5));
    assert!(!driver.healthcheck);
    assert_eq!(
        config.sinks["tuned"].subscription.ack_timeout, None,
        "sinks retry in their driver"
    );

    let text = format!(
        "{BASE}\n[sinks.bad]\ntype = \"console\"\ninput = \"parsed\"\n\
         batch = {{ max_events = 0 }}\nretry = {{ initial = \"1s\", tries = 3 }}\n"
    );
    let errors = errors(load_one(&text));
    let batch_line = text.lines().position(|l| l.starts_with("batch")).unwrap() + 1;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("sinks.bad.retry.tries") && e.contains("unknown key `tries`")),
        "{errors:?}"
    );
    // A value that deserializes but is out of range is checked after reading.
    let text = text.replace("retry = { initial = \"1s\", tries = 3 }\n", "");
    let errors = super::tests::errors(load_one(&text));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("pipeline.toml:{batch_line}:"))
                && e.contains("sinks.bad.batch.max_events: must be at least 1")),
        "{errors:?}"
    );
}

// ---- deprecated keys ----

/// Every renamed key, written the old way: stdin → `raw` → dedupe, sample → `out` → http and
/// clickhouse sinks, plus http_poll and http_server sources.
const OLD_KEYS: &str = r#"[sources.poll]
type = "http_poll"
topic = "raw"
url = "http://127.0.0.1:9/"
timeout = "3s"
retries = 2
retry_backoff = "20ms"
max_retry_backoff = "50ms"

[sources.beacons]
type = "http_server"
topic = "raw"
address = "127.0.0.1:0"
headers = ["user-agent"]

[pipelines.app]
input = "raw"
output = "out"
steps = [
  { type = "dedupe", fields = ["id"] },
  { type = "sample", rate = 2, key = ["session"] },
]

[sinks.web]
type = "http"
input = "out"
uri = "http://127.0.0.1:9/in"

[sinks.ch]
type = "clickhouse"
input = "out"
endpoint = "http://127.0.0.1:8123"
table = "t"
user = "ann"
password = "pw"
"#;

/// [`OLD_KEYS`] with today's keys.
const NEW_KEYS: &str = r#"[sources.poll]
type = "http_poll"
topic = "raw"
url = "http://127.0.0.1:9/"
request_timeout = "3s"
retry = { max_attempts = 3, initial = "20ms", max = "50ms" }

[sources.beacons]
type = "http_server"
topic = "raw"
address = "127.0.0.1:0"
copy_headers = ["user-agent"]

[pipelines.app]
input = "raw"
output = "out"
steps = [
  { type = "dedupe", group_by = ["id"] },
  { type = "sample", rate = 2, group_by = ["session"] },
]

[sinks.web]
type = "http"
input = "out"
url = "http://127.0.0.1:9/in"

[sinks.ch]
type = "clickhouse"
input = "out"
url = "http://127.0.0.1:8123"
table = "t"
auth = { strategy = "basic", user = "ann", password = "pw" }
"#;

#[test]
fn deprecated_keys_load_as_todays_with_a_warning_each() {
    let _env = PROCESS_ENV.read();
    let old = load_one(OLD_KEYS).unwrap();
    let new = load_one(NEW_KEYS).unwrap();
    assert!(new.warnings.is_empty(), "{:?}", new.warnings);
    // The same config, key for key.
    assert_eq!(format!("{:?}", old.config), format!("{:?}", new.config));
    let rendered: Vec<String> = old.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "pipeline.toml:5:1: sources.poll.timeout: deprecated key `timeout`: use \
             `request_timeout`, which means the same",
            "pipeline.toml:6:1: sources.poll.retries: deprecated key `retries`: use \
             `retry.max_attempts`, which counts the first request too (`retries = 2` is \
             `retry = { max_attempts = 3 }`)",
            "pipeline.toml:7:1: sources.poll.retry_backoff: deprecated key `retry_backoff`: use \
             `retry.initial`",
            "pipeline.toml:8:1: sources.poll.max_retry_backoff: deprecated key \
             `max_retry_backoff`: use `retry.max`",
            "pipeline.toml:14:1: sources.beacons.headers: deprecated key `headers`: use \
             `copy_headers`, which means the same",
            "pipeline.toml:20:22: pipelines.app.steps[0].fields: deprecated key `fields`: use \
             `group_by`, which means the same",
            "pipeline.toml:21:32: pipelines.app.steps[1].key: deprecated key `key`: use \
             `group_by`, which means the same",
            "pipeline.toml:27:1: sinks.web.uri: deprecated key `uri`: use `url`, which means \
             the same",
            "pipeline.toml:32:1: sinks.ch.endpoint: deprecated key `endpoint`: use `url`, which \
             means the same",
            "pipeline.toml:34:1: sinks.ch.user: deprecated key `user`: use `auth = { strategy = \
             \"basic\", user = …, password = … }`",
            "pipeline.toml:35:1: sinks.ch.password: deprecated key `password`: use `auth = { \
             strategy = \"basic\", user = …, password = … }`",
        ]
    );
}

#[test]
fn a_deprecated_key_set_by_the_environment_names_the_variable() {
    let _env = PROCESS_ENV.read();
    let text = format!(
        "{BASE}\n[sinks.web]\ntype = \"http\"\ninput = \"parsed\"\nurl = \"http://127.0.0.1:9/\"\n"
    );
    // The environment's `uri` meets the file's `url`: both set, an error at the old key.
    assert_eq!(
        errors(load_texts(
            &[("pipeline.toml", &text)],
            &[("SLUICE_SINKS__WEB__URI", "http://127.0.0.1:8/")]
        )),
        [
            "sinks.web.uri: `uri` is the deprecated name of `url`, which is set too; keep only \
          `url` (from the environment variable `SLUICE_SINKS__WEB__URI`)"
        ]
    );
    let without_url = text.replace("url = \"http://127.0.0.1:9/\"\n", "uri = \"x\"\n");
    let loaded = load_texts(
        &[("pipeline.toml", &without_url)],
        &[("SLUICE_SINKS__WEB__URI", "http://127.0.0.1:8/")],
    )
    .unwrap();
    assert_eq!(
        loaded
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "sinks.web.uri: deprecated key `uri`: use `url`, which means the same (from the \
          environment variable `SLUICE_SINKS__WEB__URI`)"
        ]
    );
    match &loaded.config.sinks["web"].config {
        SinkConfig::Http(http) => assert_eq!(http.url, "http://127.0.0.1:8/"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_deprecated_key_beside_its_replacement_is_an_error_at_its_line() {
    let _env = PROCESS_ENV.read();
    let text = format!(
        "{BASE}\n[sinks.web]\ntype = \"http\"\ninput = \"parsed\"\nuri = \"http://a/\"\n\
         url = \"http://b/\"\n"
    );
    assert_eq!(
        errors(load_one(&text)),
        [
            "pipeline.toml:17:1: sinks.web.uri: `uri` is the deprecated name of `url`, which is set \
          too; keep only `url`"
        ]
    );
}

// ---- pipeline tests ([[tests]]) ----

#[test]
fn pipeline_tests_are_read_per_file_with_variables_and_positions() {
    let _env = PROCESS_ENV.read();
    let first = format!(
        "{BASE}\n[[tests]]\nname = \"${{TEST_NAME}}\"\npipeline = \"app\"\nlines = ['{{}}']\n"
    );
    let second = "[[tests]]\nname = \"second\"\npipeline = \"app\"\n";
    let files = [
        SourceFile {
            name: "a.toml".to_owned(),
            text: first.clone(),
        },
        SourceFile {
            name: "b.toml".to_owned(),
            text: second.to_owned(),
        },
    ];
    let lookup = |name: &str| (name == "TEST_NAME").then(|| "from the environment".to_owned());
    let loaded = load_files(&files, &[], &lookup).unwrap();
    // Both files' tests, in file order (not layered: the second does not replace the first).
    let names: Vec<&str> = loaded.tests.iter().map(|test| test.name.as_str()).collect();
    assert_eq!(names, ["from the environment", "second"]);
    assert!(loaded.test_errors.is_empty());

    // A bad test is an error for `sluice test` at its file, line and key; the run is unaffected.
    let bad = format!(
        "{BASE}\n[[tests]]\nname = \"t\"\npipeline = \"app\"\nexpect_dead_letters = \"x\"\n"
    );
    let loaded = load_one(&bad).unwrap();
    assert!(loaded.tests.is_empty());
    assert_eq!(
        loaded
            .test_errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "pipeline.toml:17:1: tests[0].expect_dead_letters: invalid type: string \"x\", \
          expected a non-negative integer"
        ]
    );
}
