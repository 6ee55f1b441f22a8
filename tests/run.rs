//! `sluice run` end to end: the real binary on real files, pipes and signals, checking output
//! lines exactly against an independent computation in the test.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    NGINX_PATTERN, curl, free_port, read_lines, run_ok, sluice, wait_until, wait_with_timeout,
    write_file,
};

const MINUTE: Duration = Duration::from_secs(60);

/// The pipeline of the tests: parse nginx lines, keep errors and bots.
fn parse_and_filter_steps() -> String {
    format!(
        "steps = [\n  {{ type = \"parse\", format = \"regex\", drop_raw = true, pattern = '{NGINX_PATTERN}', \
         types = {{ status = \"int\", bytes = \"int\", request_time = \"float\" }} }},\n  \
         {{ type = \"filter\", condition = 'status >= 400 or agent ~ \"(?i)bot\"' }},\n]\n"
    )
}

/// What the pipeline above must keep from `lines`, computed independently with the regex crate:
/// (request ids kept, lines that do not parse).
fn expected_from(lines: &[String]) -> (Vec<String>, Vec<String>) {
    let pattern = Regex::new(NGINX_PATTERN).unwrap();
    let bot = Regex::new("(?i)bot").unwrap();
    let mut kept = Vec::new();
    let mut unparsed = Vec::new();
    for line in lines {
        match pattern.captures(line) {
            Some(caps) => {
                let status: i64 = caps["status"].parse().unwrap();
                if status >= 400 || bot.is_match(&caps["agent"]) {
                    kept.push(caps["request_id"].to_owned());
                }
            }
            None => unparsed.push(line.clone()),
        }
    }
    (kept, unparsed)
}

fn sample_lines() -> Vec<String> {
    let text =
        std::fs::read_to_string(crate::support::repo_root().join("examples/data/access.log"))
            .unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Garbage a real log can contain: it must end in the dead-letter topic, not vanish.
    lines.insert(7, "this is not an access log line".to_owned());
    lines.insert(150, "\u{1}\u{2} binary junk ]]]".to_owned());
    lines
}

#[test]
fn a_file_is_parsed_filtered_and_written_exactly() {
    let dir = TempDir::new().unwrap();
    let lines = sample_lines();
    write_file(dir.path(), "access.log", &(lines.join("\n") + "\n"));
    let config = format!(
        r#"data_dir = "state"
[sources.access]
type = "file"
include = ["access.log"]
follow = false
topic = "raw"

[pipelines.interesting]
input = "raw"
output = "kept"
dead_letter = "bad"
{steps}
[sinks.out]
type = "file"
input = "kept"
path = "out/kept.ndjson"

[sinks.rejects]
type = "file"
input = "bad"
path = "out/bad.ndjson"
"#,
        steps = parse_and_filter_steps()
    );
    write_file(dir.path(), "run.toml", &config);
    run_ok(dir.path(), "run.toml");

    let (expected_ids, expected_unparsed) = expected_from(&lines);
    assert!(
        expected_ids.len() > 20,
        "the sample must exercise the filter"
    );
    let kept: Vec<Value> = read_lines(&dir.path().join("out/kept.ndjson"))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ids: Vec<String> = kept
        .iter()
        .map(|event| event["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, expected_ids, "exactly the matching lines, in order");
    for event in &kept {
        assert!(event["status"].is_i64(), "status typed as int: {event}");
        assert!(
            event["request_time"].is_f64(),
            "request_time typed as float: {event}"
        );
        assert!(
            event.get("message").is_none(),
            "drop_raw removes the raw line"
        );
    }
    let bad: Vec<Value> = read_lines(&dir.path().join("out/bad.ndjson"))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let bad_lines: Vec<&str> = bad.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(bad_lines, expected_unparsed);
    for event in &bad {
        assert_eq!(event["dead_letter"]["pipeline"], "interesting");
        assert_eq!(event["dead_letter"]["step"], "steps[0] (parse)");
        assert!(event["dead_letter"]["error"].as_str().unwrap().len() > 5);
    }
}

#[test]
fn stdin_events_reach_the_console_exactly() {
    let dir = TempDir::new().unwrap();
    write_file(
        dir.path(),
        "stdin.toml",
        r#"
[sources.in]
type = "stdin"
topic = "lines"

[pipelines.json]
input = "lines"
output = "events"
steps = [{ type = "parse", format = "json", drop_raw = true }, { type = "filter", condition = 'n >= 100' }]

[sinks.screen]
type = "console"
input = "events"
encoding = "json"
"#,
    );
    let mut child = sluice(dir.path())
        .args(["run", "-c", "stdin.toml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for n in 0..500 {
            writeln!(stdin, "{{\"n\":{n},\"text\":\"line \\\"{n}\\\"\"}}").unwrap();
        }
    }
    let output = wait_with_timeout(child, MINUTE);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let expected: String = (100..500)
        .map(|n| format!("{{\"n\":{n},\"text\":\"line \\\"{n}\\\"\"}}\n"))
        .collect();
    assert_eq!(stdout, expected);
}

#[test]
fn a_generator_with_a_count_fills_two_subscriptions_and_exits() {
    let dir = TempDir::new().unwrap();
    write_file(
        dir.path(),
        "gen.toml",
        r#"
[sources.gen]
type = "generator"
format = "nginx"
count = 25000
seed = 7
topic = "raw"

[sinks.a]
type = "file"
input = "raw"
path = "out/a.log"
encoding = "text"

[sinks.b]
type = "file"
input = "raw"
path = "out/b.log"
encoding = "text"
"#,
    );
    let mut command = sluice(dir.path());
    command.args(["run", "--log", "info", "-c", "gen.toml"]);
    let output = wait_with_timeout(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        MINUTE,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let a = read_lines(&dir.path().join("out/a.log"));
    let b = read_lines(&dir.path().join("out/b.log"));
    assert_eq!(a.len(), 25000);
    assert_eq!(
        a, b,
        "publish/subscribe: both sinks get every event, in order"
    );
    let pattern = Regex::new(NGINX_PATTERN).unwrap();
    assert!(a.iter().all(|line| pattern.is_match(line)));
    let ids: BTreeSet<&str> = a.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(ids.len(), 25000, "request ids are unique");
    // The summary says why 25000 events make 50000 out: each of the 2 sinks wrote them all.
    let summary = stderr
        .lines()
        .find(|line| line.contains("Run finished"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    assert!(
        summary.contains(
            "Run finished (events_out counts each event once per sink that wrote it) \
             events_in=25000 events_out=50000 sinks=2 "
        ),
        "{summary}"
    );
    // `sluice generate` writes the same lines as the generator source with the same seed.
    let mut command = sluice(dir.path());
    command.args([
        "generate", "--format", "nginx", "--seed", "7", "--lines", "25000",
    ]);
    let generated = crate::support::run_with_timeout(command, MINUTE);
    assert!(generated.status.success());
    assert_eq!(
        String::from_utf8(generated.stdout).unwrap(),
        a.join("\n") + "\n"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_stops_a_following_run_after_draining() {
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("live.log");
    std::fs::write(&log, "").unwrap();
    let api_port = free_port();
    write_file(
        dir.path(),
        "follow.toml",
        &format!(
            r#"
data_dir = "state"
[api]
address = "127.0.0.1:{api_port}"

[sources.live]
type = "file"
include = ["live.log"]
follow = true
poll_interval = "50ms"
topic = "raw"

[sinks.out]
type = "file"
input = "raw"
path = "out/copy.log"
encoding = "text"
"#
        ),
    );
    let child = sluice(dir.path())
        .args(["run", "-c", "follow.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let copy = dir.path().join("out/copy.log");
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut written = Vec::new();
    for round in 0..5 {
        for i in 0..200 {
            let line = format!("round {round} line {i}");
            writeln!(file, "{line}").unwrap();
            written.push(line);
        }
        let expected = written.len();
        assert!(
            wait_until(Duration::from_secs(20), || read_lines(&copy).len()
                == expected),
            "appended lines must arrive while following"
        );
    }
    // The admin API reports what the run did.
    let api = format!("http://127.0.0.1:{api_port}");
    let (code, health) = curl(&[&format!("{api}/health")]);
    assert_eq!(code, 200, "{health}");
    assert!(health.contains(r#""status":"ok""#), "{health}");
    // The sink counts and acknowledges just after its write: poll until the counters caught up.
    let expected = [
        r#"sluice_component_events_out_total{component="live",role="source"} 1000"#,
        r#"sluice_component_events_out_total{component="out",role="sink"} 1000"#,
        r#"sluice_subscription_lag_events{topic="raw",subscription="out"} 0"#,
    ];
    let mut metrics = String::new();
    let reported = wait_until(Duration::from_secs(10), || {
        let (code, text) = curl(&[&format!("{api}/metrics")]);
        metrics = text;
        code == 200
            && expected
                .iter()
                .all(|line| metrics.lines().any(|l| l == *line))
    });
    assert!(reported, "expected {expected:?} in\n{metrics}");
    // `sluice tap` shows lines appended while it waits.
    let tap = sluice(dir.path())
        .args([
            "tap",
            "raw",
            "--api",
            &format!("127.0.0.1:{api_port}"),
            "-n",
            "3",
        ])
        .args(["--timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tapped = std::thread::spawn(move || wait_with_timeout(tap, MINUTE));
    let mut appended = 0;
    while !tapped.is_finished() && appended < 2000 {
        std::thread::sleep(Duration::from_millis(20));
        let line = format!("tapped line {appended}");
        writeln!(file, "{line}").unwrap();
        written.push(line);
        appended += 1;
    }
    let output = tapped.join().unwrap();
    assert!(output.status.success(), "{output:?}");
    let shown: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(shown.len(), 3);
    assert!(
        shown.iter().all(|line| line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("tapped line "))),
        "{shown:?}"
    );
    let (_, topics) = curl(&[&format!("{api}/topics")]);
    let topics: Value = serde_json::from_str(&topics).unwrap();
    assert_eq!(topics[0]["name"], "raw");
    assert!(topics[0]["counters"]["published_events"].as_u64() >= Some(1000));
    let expected = written.len();
    assert!(wait_until(Duration::from_secs(20), || read_lines(&copy)
        .len()
        == expected));
    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let output = wait_with_timeout(child, MINUTE);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(read_lines(&copy), written);
}

#[test]
fn per_minute_counts_match_an_independent_computation() {
    use std::collections::BTreeMap;
    // 30 000 generated lines cover several minutes of traffic.
    let dir = TempDir::new().unwrap();
    let lines: Vec<String> = {
        write_file(
            dir.path(),
            "gen.toml",
            r#"
[sources.gen]
type = "generator"
format = "nginx"
count = 30000
seed = 5
topic = "raw"

[sinks.out]
type = "file"
input = "raw"
path = "access.log"
encoding = "text"
"#,
        );
        run_ok(dir.path(), "gen.toml");
        read_lines(&dir.path().join("access.log"))
    };
    assert_eq!(lines.len(), 30_000);
    write_file(
        dir.path(),
        "agg.toml",
        r#"
[sources.access]
type = "file"
include = ["access.log"]
follow = false
topic = "raw"

[pipelines.requests]
input = "raw"
output = "requests"
workers = 2
steps = [
  { type = "parse", format = "nginx_combined_timed", drop_raw = true },
  { type = "filter", condition = 'not (agent ~ "(?i)bot")' },
]

[pipelines.per_minute]
input = "requests"
output = "stats"
steps = [{ type = "aggregate", window = "1m", group_by = ["path", "status"], allowed_lateness = "1m",
           fields = { hits = "count()", bytes = "sum(bytes)", visitors = "count_distinct(ip)" } }]

[sinks.out]
type = "file"
input = "stats"
path = "stats.ndjson"
"#,
    );
    run_ok(dir.path(), "agg.toml");

    // The same computation, independently: regex, chrono, maps.
    let pattern = Regex::new(NGINX_PATTERN).unwrap();
    let bot = Regex::new("(?i)bot").unwrap();
    type Key = (String, String, i64); // minute, path, status
    let mut expected: BTreeMap<Key, (u64, i64, BTreeSet<String>)> = BTreeMap::new();
    for line in &lines {
        let caps = pattern.captures(line).expect("generated lines parse");
        if bot.is_match(&caps["agent"]) {
            continue;
        }
        let at =
            chrono::DateTime::parse_from_str(&caps["timestamp"], "%d/%b/%Y:%H:%M:%S %z").unwrap();
        let minute = at
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:00Z")
            .to_string();
        let entry = expected
            .entry((
                minute,
                caps["path"].to_owned(),
                caps["status"].parse().unwrap(),
            ))
            .or_default();
        entry.0 += 1;
        entry.1 += caps["bytes"].parse::<i64>().unwrap();
        entry.2.insert(caps["ip"].to_owned());
    }
    let mut actual: BTreeMap<Key, (u64, i64, u64)> = BTreeMap::new();
    for line in read_lines(&dir.path().join("stats.ndjson")) {
        let row: Value = serde_json::from_str(&line).unwrap();
        let key = (
            row["window_start"].as_str().unwrap().to_owned(),
            row["path"].as_str().unwrap().to_owned(),
            row["status"].as_i64().unwrap(),
        );
        let value = (
            row["hits"].as_u64().unwrap(),
            row["bytes"].as_i64().unwrap(),
            row["visitors"].as_u64().unwrap(),
        );
        assert!(
            actual.insert(key, value).is_none(),
            "one row per window and group: {line}"
        );
    }
    let expected: BTreeMap<Key, (u64, i64, u64)> = expected
        .into_iter()
        .map(|(key, (hits, bytes, ips))| (key, (hits, bytes, ips.len() as u64)))
        .collect();
    assert!(
        expected.keys().map(|k| &k.0).collect::<BTreeSet<_>>().len() >= 3,
        "several minutes"
    );
    assert_eq!(actual, expected);
}

/// Two agents on one data_dir would overwrite each other's checkpoints: the second refuses to
/// start, naming the directory and the first agent's pid, even with memory topics only.
#[test]
fn a_second_agent_on_the_same_data_dir_refuses_to_start() {
    let dir = TempDir::new().unwrap();
    write_file(dir.path(), "app.log", "one\n");
    write_file(
        dir.path(),
        "tail.toml",
        &format!(
            "data_dir = \"data\"\n[sources.app]\ntype = \"file\"\ninclude = [\"{}\"]\ntopic = \"raw\"\n\
             [sinks.out]\ntype = \"blackhole\"\ninput = \"raw\"\n",
            dir.path().join("app.log").display()
        ),
    );
    let mut first = sluice(dir.path())
        .args(["run", "-c", "tail.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || dir
        .path()
        .join("data/sluice.lock")
        .exists()));
    std::thread::sleep(Duration::from_millis(300));
    let mut second = sluice(dir.path());
    second.args(["run", "-c", "tail.toml"]);
    let output = crate::support::run_with_timeout(second, Duration::from_secs(20));
    first.kill().unwrap();
    first.wait().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another sluice")
            && stderr.contains(&format!("(pid {})", first.id())),
        "{stderr}"
    );
    // The lock goes with the process, even after kill -9: a new agent starts.
    let mut third = sluice(dir.path())
        .args(["run", "-c", "tail.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(third.try_wait().unwrap().is_none(), "the third agent runs");
    third.kill().unwrap();
    third.wait().unwrap();
}

#[cfg(unix)]
#[test]
fn the_http_server_logs_its_address_plainly() {
    let dir = TempDir::new().unwrap();
    let port = free_port();
    write_file(
        dir.path(),
        "http.toml",
        &format!(
            r#"
[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
topic = "raw"

[sinks.null]
type = "blackhole"
input = "raw"
"#
        ),
    );
    let child = sluice(dir.path())
        .args(["run", "--log", "info", "-c", "http.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/health");
    let up = wait_until(Duration::from_secs(20), || curl(&[&health]).0 == 200);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let output = wait_with_timeout(child, MINUTE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(up && output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.contains("Listening for events"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.ends_with(&format!(
            "Listening for events source=web address=127.0.0.1:{port} path=/"
        )),
        "{line}"
    );
}

/// Regression (issue 10): `format = "nginx_combined"` on `nginx_combined_timed` lines rejected
/// every line while the run exited 0 and logged no reason. Now the first rejection of its kind
/// is logged once with its reason, and the summary names the reason, the count and where the
/// rejected events are.
#[test]
fn rejected_events_are_explained_in_the_summary() {
    let dir = TempDir::new().unwrap();
    let lines = sample_lines();
    let timed = lines.len() - 2;
    write_file(dir.path(), "access.log", &(lines.join("\n") + "\n"));
    write_file(
        dir.path(),
        "wrong_preset.toml",
        r#"data_dir = "state"
[sources.access]
type = "file"
include = ["access.log"]
follow = false
topic = "raw"

[pipelines.requests]
input = "raw"
output = "parsed"
steps = [{ type = "parse", format = "nginx_combined" }]

[sinks.out]
type = "blackhole"
input = "parsed"
"#,
    );
    let output = run_ok(dir.path(), "wrong_preset.toml");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("Event rejected"))
        .collect();
    // One line per kind (the timed lines, the garbage lines of the sample), not per event.
    assert!(
        (1..5).contains(&first.len()) && first[0].contains("nginx_combined: "),
        "{stderr}"
    );
    let summary = stderr
        .lines()
        .find(|line| line.contains("Events were rejected"))
        .unwrap_or_else(|| panic!("no summary of rejections in\n{stderr}"));
    assert!(summary.contains("component=requests"), "{summary}");
    assert!(
        summary.contains(&format!("rejected={}", lines.len())),
        "{summary}"
    );
    let top = format!("{timed} × steps[0] (parse): nginx_combined: unexpected text after");
    assert!(summary.contains(&top), "{top} not in {summary}");
    assert!(
        summary.contains("the dead-letter topic `dead_letter`, which nothing reads")
            && summary.contains("lost when the agent exits"),
        "{summary}"
    );
}

/// Regression (issue 10): a typo in an include path exited 0 with only "No file to read yet".
/// The warning names the pattern and the missing directory, and the run says it read nothing.
#[test]
fn a_typo_in_an_include_path_is_named_and_the_run_says_it_read_nothing() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    write_file(dir.path(), "logs/access.log", "GET /\n");
    write_file(
        dir.path(),
        "typo.toml",
        r#"data_dir = "state"
[sources.access]
type = "file"
include = ["lgos/*.log"]
follow = false
topic = "raw"

[sinks.out]
type = "blackhole"
input = "raw"
"#,
    );
    let output = run_ok(dir.path(), "typo.toml");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let named = stderr.lines().any(|line| {
        line.contains("No file to read yet")
            && line.contains("include=lgos/*.log")
            && line.contains("missing_directories=lgos")
    });
    assert!(named, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("Read nothing: no file matched include")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("Source read nothing in this run")
                && line.contains("component=access")),
        "{stderr}"
    );
}

/// Every metric family's help against what it counts (issue 10: `bytes_out` said "encoded bytes
/// written by sinks" and was always 0 for them). A run that reads, parses, filters, rejects and
/// writes; every family the help says this run moves must be non-zero for the components it
/// names, and a family this test does not know fails it, so new metrics get checked too.
#[test]
fn every_metric_counts_what_its_help_says() {
    let dir = TempDir::new().unwrap();
    let api_port = free_port();
    let lines = sample_lines();
    write_file(dir.path(), "access.log", &(lines.join("\n") + "\n"));
    write_file(
        dir.path(),
        "metrics.toml",
        &format!(
            r#"data_dir = "state"
[api]
address = "127.0.0.1:{api_port}"

[sources.access]
type = "file"
include = ["access.log"]
topic = "raw"

[pipelines.interesting]
input = "raw"
output = "kept"
{steps}
[sinks.out]
type = "file"
input = "kept"
path = "out.ndjson"
"#,
            steps = parse_and_filter_steps()
        ),
    );
    let (kept, unparsed) = expected_from(&lines);
    let child = sluice(dir.path())
        .args(["run", "-c", "metrics.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{api_port}");
    let sample = |metrics: &str, name: &str, labels: &str| -> Option<u64> {
        let prefix = format!("sluice_{name}{{{labels}}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.parse().ok())
    };
    let out = r#"component="out",role="sink""#;
    let mut metrics = String::new();
    // Sink counts reach /metrics within a second of the write.
    let settled = wait_until(MINUTE, || {
        metrics = curl(&[&format!("{api}/metrics")]).1;
        sample(&metrics, "component_events_out_total", out) == Some(kept.len() as u64)
            && sample(&metrics, "component_bytes_out_total", out).unwrap_or(0) > 0
            && sample(
                &metrics,
                "component_counter_total",
                r#"component="out",role="sink",counter="requests""#,
            )
            .unwrap_or(0)
                > 0
    });
    let mut child = child;
    child.kill().unwrap();
    let _ = child.wait();
    assert!(settled, "{metrics}");

    let source = r#"component="access",role="source""#;
    let pipeline = r#"component="interesting",role="pipeline""#;
    let written = std::fs::metadata(dir.path().join("out.ndjson"))
        .unwrap()
        .len();
    let read = std::fs::metadata(dir.path().join("access.log"))
        .unwrap()
        .len();
    let family = |name: &str, labels: &str| {
        sample(&metrics, name, labels).unwrap_or_else(|| panic!("{name}{{{labels}}} in\n{metrics}"))
    };
    // "Events a pipeline or sink received."
    assert_eq!(
        family("component_events_in_total", pipeline),
        lines.len() as u64
    );
    assert_eq!(family("component_events_in_total", out), kept.len() as u64);
    // "Events a source produced, a pipeline published or a sink delivered."
    assert_eq!(
        family("component_events_out_total", source),
        lines.len() as u64
    );
    assert_eq!(
        family("component_events_out_total", pipeline),
        kept.len() as u64
    );
    // "Bytes passed on (raw bytes read by sources, encoded bytes written by sinks)": the lines
    // without their newlines, and exactly the bytes in the output file.
    assert_eq!(
        family("component_bytes_out_total", source),
        read - lines.len() as u64
    );
    assert_eq!(family("component_bytes_out_total", out), written);
    // "Events that failed: rejected by a step, …"
    assert_eq!(
        family("component_errors_total", pipeline),
        unparsed.len() as u64
    );
    // "Events discarded on purpose (filtered out, …)."
    assert_eq!(
        family("component_discarded_total", pipeline),
        (lines.len() - unparsed.len() - kept.len()) as u64
    );
    // A component's own counters.
    assert_eq!(
        family(
            "component_counter_total",
            r#"component="access",role="source",counter="files_opened""#
        ),
        1
    );
    // Topic gauges and counters.
    assert_eq!(
        family("topic_end_offset", r#"topic="raw""#),
        lines.len() as u64
    );
    assert!(family("topic_max_events", r#"topic="raw""#) > 0);
    assert!(family("topic_max_bytes", r#"topic="raw""#) > 0);
    assert_eq!(
        family("topic_published_events_total", r#"topic="raw""#),
        lines.len() as u64
    );
    assert_eq!(
        family(
            "subscription_committed_offset",
            r#"topic="raw",subscription="interesting""#
        ),
        lines.len() as u64
    );

    // Disk topics (the dead-letter topic is one by default): its files hold the rejected lines.
    assert!(!unparsed.is_empty());
    assert!(family("topic_disk_bytes", r#"topic="dead_letter""#) > 0);
    assert_eq!(family("topic_disk_segments", r#"topic="dead_letter""#), 1);
    assert!(sample(&metrics, "topic_disk_bytes", r#"topic="raw""#).is_none());

    // Nothing was lost: the loss families are there, without a sample.
    for family in ["component_lost_events_total", "component_lost_bytes_total"] {
        assert!(metrics.contains(&format!("# TYPE sluice_{family} counter")));
        assert!(
            !metrics
                .lines()
                .any(|line| line.starts_with(&format!("sluice_{family}{{"))),
            "{family}: nothing lost"
        );
    }

    // Every family is one this test knows: a new one must be added above, with its check.
    let known = [
        "uptime_seconds",
        "build_info",
        "component_events_in_total",
        "component_events_out_total",
        "component_bytes_out_total",
        "component_errors_total",
        "component_discarded_total",
        "component_counter_total",
        "component_lost_events_total",
        "component_lost_bytes_total",
        "topic_retained_events",
        "topic_retained_bytes",
        "topic_max_events",
        "topic_max_bytes",
        "topic_end_offset",
        "topic_disk_bytes",
        "topic_disk_segments",
        "subscription_lag_events",
        "subscription_committed_offset",
        "subscription_in_flight_batches",
    ];
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# HELP sluice_") else {
            continue;
        };
        let name = rest.split(' ').next().unwrap();
        let counters_struct = name.starts_with("topic_") && name.ends_with("_total")
            || name.starts_with("subscription_") && name.ends_with("_total");
        assert!(
            known.contains(&name) || counters_struct,
            "metric sluice_{name} has no check in this test: {line}"
        );
    }
}
