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
    assert_eq!(
        stdout, "Config OK: 1 source, 2 topics, 0 pipelines, 1 sink\n",
        "{stderr}"
    );
}

#[test]
fn a_bad_condition_has_its_caret_under_the_bad_column() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{VALID}\n[pipelines.p]\ninput = \"raw\"\noutput = \"kept\"\n\
         steps = [{{ type = \"filter\", condition = 'status >== 500' }}]\n"
    );
    let (code, _, stderr) = validate(&dir, "caret.toml", &text);
    assert_eq!(code, 2);
    let line = line_of(&text, ">==");
    let col = text
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("condition")
        .unwrap()
        + 1;
    // The message first, then the expression and the caret on lines of their own, indented
    // alike: the caret is under the second `=`, whatever the prefix of the first line.
    let expected = format!(
        "error: caret.toml:{line}:{col}: pipelines.p.steps[0].condition: unexpected `=`: \
         compare with `==`\n    status >== 500\n             ^\n"
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let column = |text: &str, needle: &str| text.find(needle).unwrap();
    assert_eq!(column(lines[2], "^"), column(lines[1], ">==") + 2);
}

#[test]
fn messages_count_in_words_and_articles_agree() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{VALID}\n[pipelines.p]\ninput = \"raw\"\noutput = \"counted\"\nworkers = 2\n\
         steps = [{{ type = \"aggregate\", window = \"1m\", fields = {{ n = \"count()\" }} }}]\n"
    );
    let (code, _, stderr) = validate(&dir, "workers.toml", &text);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("pipelines.p.workers: a pipeline with an `aggregate` step runs 1 worker"),
        "{stderr}"
    );
    let (code, stdout, stderr) = validate(
        &dir,
        "two.toml",
        &format!(
            "{VALID}\n[pipelines.p]\ninput = \"raw\"\noutput = \"kept\"\nsteps = []\n\n[sinks.kept]\ntype = \"console\"\ninput = \"kept\"\n"
        ),
    );
    assert_eq!(code, 0, "{stderr}");
    // The topics: raw, kept and dead_letter (always there).
    assert_eq!(
        stdout,
        "Config OK: 1 source, 3 topics, 1 pipeline, 2 sinks\n"
    );
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
        if let Some((from, _)) = line.trim().split_once(" -> ")
            && from.starts_with("\"topic:")
        {
            let producer = format!("-> {from}");
            assert!(dot.contains(&producer), "{from} has no producer in\n{dot}");
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

/// Runs `sluice generate ARGS` in `dir` and returns its exit code, stdout and stderr.
fn generate(dir: &TempDir, args: &[&str]) -> (i32, Vec<u8>, String) {
    let mut command = sluice(dir.path());
    command.arg("generate").args(args);
    let output = run_with_timeout(command, Duration::from_secs(60));
    (
        output.status.code().unwrap_or(-1),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn generate_writes_the_same_bytes_every_time() {
    let dir = TempDir::new().unwrap();
    for (format, pattern) in [
        ("nginx", crate::support::NGINX_PATTERN),
        (
            "events",
            r#"^\{"ts":"2024-05-01T\d\d:\d\d:\d\d\.\d{3}Z","event_id":"evt-\d{10}",.*\}$"#,
        ),
    ] {
        // By size: whole lines, at least the size asked for and less than one line more.
        let (code, _, stderr) = generate(&dir, &["--format", format, "--bytes", "3MiB", "-o", "a"]);
        assert_eq!(code, 0, "{stderr}");
        let a = std::fs::read(dir.path().join("a")).unwrap();
        assert!(
            a.len() >= 3 << 20 && a.len() < (3 << 20) + 2000,
            "{}",
            a.len()
        );
        assert!(a.ends_with(b"\n"));
        let text = std::str::from_utf8(&a).unwrap();
        let lines = text.lines().count();
        assert_eq!(
            stderr,
            format!("Wrote {lines} lines, {} bytes, to a\n", a.len())
        );
        let pattern = regex::Regex::new(pattern).unwrap();
        assert!(text.lines().all(|line| pattern.is_match(line)), "{format}");
        // Deterministic: the same bytes again, and a prefix of the same run by lines on stdout.
        let (code, _, _) = generate(&dir, &["--format", format, "--bytes", "3MiB", "-o", "b"]);
        assert_eq!(code, 0);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), a);
        let (code, head, _) = generate(&dir, &["--format", format, "--lines", "1000"]);
        assert_eq!(code, 0);
        assert_eq!(head.iter().filter(|&&b| b == b'\n').count(), 1000);
        assert_eq!(&a[..head.len()], &head[..]);
        // Another seed, other lines.
        let (_, other, _) = generate(
            &dir,
            &["--format", format, "--lines", "1000", "--seed", "2"],
        );
        assert_ne!(other, head);
    }
    // A bad start time or no limit is a usage error.
    let (code, _, stderr) = generate(
        &dir,
        &[
            "--format",
            "nginx",
            "--lines",
            "1",
            "--start-time",
            "yesterday",
        ],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("--start-time"), "{stderr}");
    assert_eq!(generate(&dir, &["--format", "nginx"]).0, 2);
    assert_eq!(
        generate(
            &dir,
            &["--format", "nginx", "--lines", "1", "-o", "no/such/dir/x"]
        )
        .0,
        1
    );
}

#[test]
fn sluice_test_says_when_there_is_nothing_to_test_and_exits_0() {
    let dir = TempDir::new().unwrap();
    write_file(dir.path(), "plain.toml", VALID);
    let mut command = sluice(dir.path());
    command.args(["test", "-c", "plain.toml"]);
    let output = run_with_timeout(command, Duration::from_secs(30));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "no [[tests]] in plain.toml: nothing to test (the config is valid)\n"
    );
    assert_eq!(output.status.code(), Some(0));
    // An invalid config is still 2, tests or not.
    write_file(dir.path(), "bad.toml", &format!("{VALID}\ncolour = 1\n"));
    let mut command = sluice(dir.path());
    command.args(["test", "-c", "bad.toml"]);
    assert_eq!(
        run_with_timeout(command, Duration::from_secs(30))
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn sluice_test_shows_expected_before_actual() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{VALID}\n[pipelines.p]\ninput = \"raw\"\noutput = \"kept\"\n\
         steps = [{{ type = \"parse\", format = \"json\", drop_raw = true }}]\n\n\
         [sinks.kept]\ntype = \"console\"\ninput = \"kept\"\n\n\
         [[tests]]\nname = \"status\"\npipeline = \"p\"\n\
         lines = ['{{\"status\": 200}}', '{{\"status\": 503}}']\n\
         expect = [{{ status = 200 }}, {{ status = 500 }}]\n"
    );
    write_file(dir.path(), "t.toml", &text);
    let mut command = sluice(dir.path());
    command.args(["test", "-c", "t.toml"]);
    let output = run_with_timeout(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "running 1 test from t.toml\n\
         test status ... FAILED\n    \
         output events differ: expected 2 events, got 2 (- expected, + actual):\n      \
         {\"status\":200}\n    \
         - {\"status\":500}\n    \
         + {\"status\":503}\n\
         \n\
         test result: FAILED. 0 passed; 1 failed\n"
    );
}
