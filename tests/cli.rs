//! The command line: `validate`, `graph`, `--help` and exit codes.

use std::time::Duration;

use tempfile::TempDir;

use crate::support::{repo_root, run_with_timeout, sluice, write_file};

fn validate(dir: &TempDir, name: &str, text: &str) -> (i32, String, String) {
    write_file(dir.path(), name, text);
    let mut command = sluice(dir.path());
    command.args(["validate", "-c", name]);
    let output = run_with_timeout(command, Duration::from_secs(30));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
        .unwrap_or_else(|| panic!("{needle} not in config"))
}

const VALID: &str = r#"
[sources.in]
type = "stdin"
topic = "raw"

[sinks.out]
type = "console"
input = "raw"
"#;

#[test]
fn validate_accepts_a_valid_config() {
    let dir = TempDir::new().unwrap();
    let (code, stdout, stderr) = validate(&dir, "ok.toml", VALID);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("Config OK: 1 sources"), "{stdout}");
}

#[test]
fn validate_reports_a_toml_syntax_error_with_its_position() {
    let dir = TempDir::new().unwrap();
    let (code, _, stderr) = validate(&dir, "broken.toml", "[sources.in]\ntype = \"stdin\nx = 1\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("broken.toml:2:"), "{stderr}");
}

#[test]
fn validate_names_an_unknown_key_with_its_line() {
    let dir = TempDir::new().unwrap();
    let text =
        format!("{VALID}\n[sinks.other]\ntype = \"console\"\ninput = \"raw\"\ncolour = \"red\"\n");
    let (code, _, stderr) = validate(&dir, "unknown.toml", &text);
    assert_eq!(code, 2);
    let line = line_of(&text, "colour");
    assert!(
        stderr.contains(&format!("unknown.toml:{line}:1: sinks.other.colour")),
        "{stderr}"
    );
    assert!(stderr.contains("unknown key `colour`"), "{stderr}");
}

#[test]
fn validate_names_a_wrong_type_with_its_line() {
    let dir = TempDir::new().unwrap();
    let text = VALID.replace("input = \"raw\"", "input = \"raw\"\nworkers = \"two\"");
    let (code, _, stderr) = validate(&dir, "type.toml", &text);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("type.toml:{}:", line_of(&text, "workers"))),
        "{stderr}"
    );
    assert!(stderr.contains("sinks.out.workers"), "{stderr}");
}

#[test]
fn validate_rejects_a_pipeline_reading_a_topic_nothing_writes() {
    let dir = TempDir::new().unwrap();
    let text = format!("{VALID}\n[pipelines.p]\ninput = \"rwa\"\noutput = \"clean\"\nsteps = []\n");
    let (code, _, stderr) = validate(&dir, "orphan.toml", &text);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("orphan.toml:{}:", line_of(&text, "rwa"))),
        "{stderr}"
    );
    assert!(stderr.contains("pipelines.p.input"), "{stderr}");
    assert!(stderr.contains("did you mean `raw`"), "{stderr}");
}

#[test]
fn validate_rejects_a_cycle() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{VALID}\n[pipelines.a]\ninput = \"raw\"\noutput = \"b_in\"\nsteps = []\n\n\
         [pipelines.b]\ninput = \"b_in\"\noutput = \"raw\"\nsteps = []\n"
    );
    let (code, _, stderr) = validate(&dir, "cycle.toml", &text);
    assert_eq!(code, 2);
    assert!(stderr.contains("cycle"), "{stderr}");
    assert!(
        stderr.contains("a -> b -> a") || stderr.contains("b -> a -> b"),
        "{stderr}"
    );
    assert!(stderr.contains("cycle.toml:"), "{stderr}");
}

#[test]
fn validate_rejects_an_invalid_regex_at_its_key() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{VALID}\n[pipelines.p]\ninput = \"raw\"\noutput = \"parsed\"\n\
         steps = [{{ type = \"parse\", format = \"regex\", pattern = '(?P<x>[a-' }}]\n"
    );
    let (code, _, stderr) = validate(&dir, "regex.toml", &text);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("regex.toml:{}:", line_of(&text, "pattern"))),
        "{stderr}"
    );
    assert!(stderr.contains("pipelines.p.steps[0].pattern"), "{stderr}");
}

#[test]
fn validate_reports_every_error_not_just_the_first() {
    let dir = TempDir::new().unwrap();
    let text = r#"
[sources.in]
type = "stdin"
topic = "raw"
bogus = 1

[sinks.out]
type = "console"
input = "nowhere"
"#;
    let (code, _, stderr) = validate(&dir, "many.toml", text);
    assert_eq!(code, 2);
    assert!(stderr.contains("sources.in.bogus"), "{stderr}");
    assert!(stderr.contains("sinks.out.input"), "{stderr}");
}

#[test]
fn validate_accepts_every_bundled_example() {
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let mut command = sluice(&repo_root());
            command.arg("validate").arg("-c").arg(&path);
            let output = run_with_timeout(command, Duration::from_secs(30));
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn graph_prints_every_component_in_dot() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{VALID}\n[pipelines.p]\ninput = \"raw\"\noutput = \"kept\"\nsteps = [{{ type = \"filter\", condition = 'status >= 400' }}]\n"
    );
    write_file(dir.path(), "g.toml", &text);
    let mut command = sluice(dir.path());
    command.args(["graph", "-c", "g.toml"]);
    let output = run_with_timeout(command, Duration::from_secs(30));
    assert!(output.status.success());
    let dot = String::from_utf8(output.stdout).unwrap();
    assert!(dot.starts_with("digraph sluice {"), "{dot}");
    for edge in [
        "\"source:in\" -> \"topic:raw\"",
        "\"topic:raw\" -> \"pipeline:p\"",
        "\"pipeline:p\" -> \"topic:kept\"",
        "\"pipeline:p\" -> \"topic:dead_letter\" [style=dashed",
        "\"topic:raw\" -> \"sink:out\"",
    ] {
        assert!(dot.contains(edge), "missing {edge} in\n{dot}");
    }
}

/// Regression: `graph` drew no edge for the topics a `route` step sends to, so
/// `examples/web_analytics.toml` showed `web.errors` with no producer.
#[test]
fn graph_draws_the_topics_route_steps_send_to() {
    let dir = TempDir::new().unwrap();
    let mut command = sluice(dir.path());
    let example = repo_root().join("examples/web_analytics.toml");
    command.args(["graph", "-c"]).arg(&example);
    let output = run_with_timeout(command, Duration::from_secs(30));
    assert!(output.status.success(), "{output:?}");
    let dot = String::from_utf8(output.stdout).unwrap();
    let edge = "\"pipeline:requests\" -> \"topic:web.errors\" [label=\"routed\"];";
    assert!(dot.contains(edge), "missing {edge} in\n{dot}");
    // Every topic a sink or pipeline reads has a producer.
    for line in dot.lines() {
        if let Some((from, _)) = line.trim().split_once(" -> ") {
            if from.starts_with("\"topic:") {
                let producer = format!("-> {from}");
                assert!(dot.contains(&producer), "{from} has no producer in\n{dot}");
            }
        }
    }
}

/// Regression (issue 10): a typo in an include path passed `validate` silently.
#[test]
fn validate_warns_when_an_include_directory_does_not_exist() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let text = "[sources.web]\ntype = \"file\"\ninclude = [\"logs/*.log\", \"lgos/*.log\"]\ntopic = \"raw\"\n\n[sinks.out]\ntype = \"blackhole\"\ninput = \"raw\"\n";
    let (code, stdout, stderr) = validate(&dir, "typo.toml", text);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("Config OK"), "{stdout}");
    assert_eq!(
        stderr.trim(),
        "warning: sources.web.include[1]: the directory `lgos` of `lgos/*.log` does not exist; \
         the pattern matches nothing until it appears"
    );
}

#[test]
fn help_explains_each_command_and_bad_usage_exits_2() {
    let dir = TempDir::new().unwrap();
    let mut command = sluice(dir.path());
    command.arg("--help");
    let output = run_with_timeout(command, Duration::from_secs(30));
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in ["run", "validate", "graph"] {
        assert!(help.contains(word), "{help}");
    }
    let mut command = sluice(dir.path());
    command.args(["run", "--help"]);
    let output = run_with_timeout(command, Duration::from_secs(30));
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("SIGTERM"), "{help}");

    let mut command = sluice(dir.path());
    command.arg("frobnicate");
    assert_eq!(
        run_with_timeout(command, Duration::from_secs(30))
            .status
            .code(),
        Some(2)
    );
    let mut command = sluice(dir.path());
    command.args(["validate", "-c", "missing.toml"]);
    let output = run_with_timeout(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml"));
}
