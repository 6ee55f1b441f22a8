//! The HTTP sources end to end: the real `sluice` binary with an `http_server` source fed by
//! `curl`, and `http_poll` sources polling a real local HTTP API started by the test, both
//! writing through a file sink whose lines are checked exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    curl, free_port, read_lines, sluice, wait_until, wait_with_timeout, write_file,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Starts `command` (a `sluice run` with an http_server on `port` with the default health path)
/// and waits until it answers.
fn start_server(command: &mut Command, port: u16) -> Child {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/health");
    assert!(
        wait_until(Duration::from_secs(20), || curl(&[&health]).0 == 200),
        "the server did not come up"
    );
    child
}

/// Stops `child` with SIGTERM and checks that it drained and exited cleanly.
fn stop(child: Child) {
    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let output = wait_with_timeout(child, MINUTE);
    assert!(
        output.status.success(),
        "sluice failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn json_lines(path: &Path) -> Vec<Value> {
    read_lines(path)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn events(ids: std::ops::Range<u32>) -> String {
    ids.map(|id| {
        format!("{{\"id\":{id},\"event\":\"page_view\",\"page\":\"/product/{id}\",\"latency_ms\":12.5}}\n")
    })
    .collect()
}

#[test]
fn curl_posts_reach_the_file_sink_and_refusals_keep_nothing() {
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    write_file(
        dir.path(),
        "http.toml",
        &format!(
            r#"data_dir = "state"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
path = "/events"
topic = "raw"
tokens = ["${{INGEST_TOKEN}}", "second-token"]
headers = ["user-agent"]

[sinks.out]
type = "file"
input = "raw"
path = "out.ndjson"
"#
        ),
    );
    let child = start_server(
        sluice(dir.path())
            .args(["run", "-c", "http.toml"])
            .env("INGEST_TOKEN", "first-token"),
        port,
    );
    let auth = "Authorization: Bearer first-token";
    let ndjson = "Content-Type: application/x-ndjson";

    write_file(dir.path(), "batch.ndjson", &events(0..100));
    let batch = dir.path().join("batch.ndjson");
    let at_batch = format!("@{}", batch.display());
    let (code, body) = curl(&["-H", auth, "-H", ndjson, "--data-binary", &at_batch, &url]);
    assert_eq!((code, body.as_str()), (200, r#"{"accepted":100}"#));

    let gz = dir.path().join("batch.ndjson.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(events(100..200).as_bytes()).unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    let at_gz = format!("@{}", gz.display());
    let (code, body) = curl(&[
        "-H",
        "Authorization: Bearer second-token",
        "-H",
        ndjson,
        "-H",
        "Content-Encoding: gzip",
        "--data-binary",
        &at_gz,
        &url,
    ]);
    assert_eq!((code, body.as_str()), (200, r#"{"accepted":100}"#));

    let array = r#"[{"id":200},{"id":201}]"#;
    let (code, body) = curl(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        array,
        &url,
    ]);
    assert_eq!((code, body.as_str()), (200, r#"{"accepted":2}"#));

    // A bad batch: refused whole, naming its bad line.
    let bad = format!("{}{{\"id\":301,\n{}", events(300..301), events(302..303));
    let (code, body) = curl(&["-H", auth, "-H", ndjson, "--data-binary", &bad, &url]);
    assert_eq!(code, 400, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["line"], 2);
    assert_eq!(answer["accepted"], 0);
    assert!(answer["error"].as_str().unwrap().starts_with("line 2: "));

    // Authentication failures, all alike.
    let good = events(400..401);
    for header in [
        "X-Nothing: 1",
        "Authorization: Bearer nope",
        "Authorization: Basic Zm9v",
    ] {
        let (code, body) = curl(&["-H", header, "-H", ndjson, "--data-binary", &good, &url]);
        assert_eq!((code, body.as_str()), (401, r#"{"error":"unauthorized"}"#));
    }
    let (code, _) = curl(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/xml",
        "-d",
        "<a/>",
        &url,
    ]);
    assert_eq!(code, 415);
    let (code, _) = curl(&[&url]);
    assert_eq!(code, 405);

    let out = dir.path().join("out.ndjson");
    assert!(wait_until(Duration::from_secs(20), || read_lines(&out)
        .len()
        >= 202));
    stop(child);
    let lines = json_lines(&out);
    let ids: Vec<u64> = lines
        .iter()
        .map(|line| line["id"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..202).collect();
    assert_eq!(ids, expected, "every accepted event once, nothing refused");
    for line in &lines {
        assert!(
            line["user_agent"].as_str().unwrap().starts_with("curl/"),
            "{line}"
        );
        assert_eq!(line["remote_addr"], "127.0.0.1");
        assert_eq!(line["path"], "/events");
        assert!(
            line["received_at"].as_str().unwrap().ends_with('Z'),
            "{line}"
        );
    }
    assert_eq!(lines[5]["page"], "/product/5");
    assert_eq!(lines[5]["latency_ms"], 12.5);
}

#[test]
fn bad_lines_of_accepted_bodies_land_in_the_dead_letter_topic() {
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    write_file(
        dir.path(),
        "partial.toml",
        &format!(
            r#"data_dir = "state"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
topic = "raw"
partial = "accept_valid"

[sinks.out]
type = "file"
input = "raw"
path = "out.ndjson"

[sinks.dead]
type = "file"
input = "dead_letter"
path = "dead.ndjson"
"#
        ),
    );
    let child = start_server(sluice(dir.path()).args(["run", "-c", "partial.toml"]), port);
    let body = format!("{}not json at all\n{}", events(0..2), events(2..3));
    let (code, answer) = curl(&[
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        &body,
        &url,
    ]);
    assert_eq!(code, 400, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (answer["line"].as_u64(), answer["accepted"].as_u64()),
        (Some(3), Some(3))
    );

    let (out, dead) = (
        dir.path().join("out.ndjson"),
        dir.path().join("dead.ndjson"),
    );
    assert!(wait_until(Duration::from_secs(20), || {
        read_lines(&out).len() >= 3 && !read_lines(&dead).is_empty()
    }));
    stop(child);
    let ids: Vec<u64> = json_lines(&out)
        .iter()
        .map(|line| line["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [0, 1, 2]);
    let dead = json_lines(&dead);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["message"], "not json at all");
    assert_eq!(dead[0]["remote_addr"], "127.0.0.1");
    assert_eq!(dead[0]["dead_letter"]["source"], "web");
    let error = dead[0]["dead_letter"]["error"].as_str().unwrap();
    assert!(error.starts_with("line 3: "), "{error}");
}

/// The test API: what it has served, and the items of its cursor endpoint.
#[derive(Default)]
struct Api {
    /// Every request: path and query.
    seen: Mutex<Vec<String>>,
    cursor_items: Mutex<Vec<u64>>,
    flaky_calls: Mutex<u32>,
}

async fn api(State(api): State<Arc<Api>>, request: Request) -> Response {
    let uri = request.uri().to_string();
    api.seen.lock().push(uri.clone());
    let path = request.uri().path().to_owned();
    let query: BTreeMap<String, String> = reqwest::Url::parse(&format!("http://x{uri}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let etag = |tag: &str| {
        request
            .headers()
            .get("if-none-match")
            .is_some_and(|v| v == tag)
    };
    let reply = |status: u16, content_type: &str, etag: Option<&str>, body: String| {
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
        response
            .headers_mut()
            .insert("content-type", content_type.parse().unwrap());
        if let Some(tag) = etag {
            response.headers_mut().insert("etag", tag.parse().unwrap());
        }
        response
    };
    match path.as_str() {
        "/json" if etag("\"j1\"") => reply(304, "application/json", None, String::new()),
        "/json" => reply(
            200,
            "application/json",
            Some("\"j1\""),
            r#"{"data":{"items":[{"kind":"json","id":1},{"kind":"json","id":2}]}}"#.into(),
        ),
        "/ndjson" if etag("\"n1\"") => reply(304, "application/x-ndjson", None, String::new()),
        "/ndjson" => reply(
            200,
            "application/x-ndjson",
            Some("\"n1\""),
            (1..=3)
                .map(|id| format!("{{\"kind\":\"ndjson\",\"id\":{id}}}\n"))
                .collect(),
        ),
        "/cursor" => {
            let since: u64 = query.get("since").map_or(0, |s| s.parse().unwrap());
            let items: Vec<String> = api
                .cursor_items
                .lock()
                .iter()
                .filter(|id| **id > since)
                .map(|id| format!("{{\"kind\":\"cursor\",\"id\":{id}}}"))
                .collect();
            reply(
                200,
                "application/json",
                None,
                format!("[{}]", items.join(",")),
            )
        }
        "/flaky" => {
            let calls = {
                let mut calls = api.flaky_calls.lock();
                *calls += 1;
                *calls
            };
            if calls <= 3 {
                reply(500, "text/plain", None, "down for maintenance".into())
            } else if etag("\"f1\"") {
                reply(304, "application/json", None, String::new())
            } else {
                reply(
                    200,
                    "application/json",
                    Some("\"f1\""),
                    r#"[{"kind":"flaky","id":1}]"#.into(),
                )
            }
        }
        _ => reply(404, "text/plain", None, "no".into()),
    }
}

fn count_kinds(path: &Path) -> BTreeMap<String, Vec<u64>> {
    let mut kinds: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in json_lines(path) {
        kinds
            .entry(line["kind"].as_str().unwrap().to_owned())
            .or_default()
            .push(line["id"].as_u64().unwrap());
    }
    kinds
}

#[test]
fn http_poll_reads_json_ndjson_etags_cursors_and_survives_failures() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let state = Arc::new(Api::default());
    state.cursor_items.lock().extend(1..=5);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new().fallback(api).with_state(state.clone());
    runtime.spawn(async move { axum::serve(listener, router).await });

    let dir = TempDir::new().unwrap();
    let source = |name: &str, extra: &str| {
        format!(
            "[sources.{name}]\ntype = \"http_poll\"\ntopic = \"raw\"\ninterval = \"200ms\"\n\
             retry = {{ max_attempts = 2, initial = \"50ms\" }}\n{extra}\n\n"
        )
    };
    let config = [
        "data_dir = \"state\"\n\n".to_owned(),
        source(
            "json_api",
            &format!("url = \"{base}/json\"\nitems_path = \"data.items\""),
        ),
        source("ndjson_api", &format!("url = \"{base}/ndjson\"")),
        source(
            "cursor_api",
            &format!("url = \"{base}/cursor\"\ncursor = \"id\"\ncursor_param = \"since\""),
        ),
        source("flaky_api", &format!("url = \"{base}/flaky\"")),
        "[sinks.out]\ntype = \"file\"\ninput = \"raw\"\npath = \"out.ndjson\"\n".to_owned(),
    ]
    .concat();
    write_file(dir.path(), "poll.toml", &config);
    let out = dir.path().join("out.ndjson");
    let spawn = || {
        sluice(dir.path())
            .args(["run", "-c", "poll.toml"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = spawn();
    assert!(
        wait_until(Duration::from_secs(20), || read_lines(&out).len() >= 11),
        "got {:?}",
        read_lines(&out)
    );
    state.cursor_items.lock().extend(6..=8);
    assert!(wait_until(Duration::from_secs(20), || read_lines(&out)
        .len()
        >= 14));
    // Several more polls: unchanged answers (ETag) and the cursor add nothing.
    let seen_before = state.seen.lock().len();
    assert!(wait_until(Duration::from_secs(20), || state
        .seen
        .lock()
        .len()
        >= seen_before + 12));
    stop(child);
    let kinds = count_kinds(&out);
    assert_eq!(kinds["json"], [1, 2]);
    assert_eq!(kinds["ndjson"], [1, 2, 3]);
    assert_eq!(kinds["cursor"], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(kinds["flaky"], [1]);
    assert!(*state.flaky_calls.lock() > 3);
    {
        let seen = state.seen.lock();
        assert!(seen.iter().any(|uri| uri == "/cursor?since=8"), "{seen:?}");
    }
    let saved: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("state/sources/cursor_api/cursor.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["cursor"], 8);

    // A restart resumes: the cursor and validators were saved, so nothing comes twice.
    let seen_before = state.seen.lock().len();
    state.cursor_items.lock().push(9);
    let child = spawn();
    assert!(wait_until(Duration::from_secs(20), || read_lines(&out)
        .len()
        >= 15));
    assert!(wait_until(Duration::from_secs(20), || state
        .seen
        .lock()
        .len()
        >= seen_before + 12));
    stop(child);
    let kinds = count_kinds(&out);
    assert_eq!(kinds["json"], [1, 2]);
    assert_eq!(kinds["ndjson"], [1, 2, 3]);
    assert_eq!(kinds["cursor"], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(kinds["flaky"], [1]);
    let seen = state.seen.lock();
    let first_cursor_request = seen[seen_before..]
        .iter()
        .find(|uri| uri.starts_with("/cursor"))
        .unwrap();
    assert_eq!(first_cursor_request, "/cursor?since=8");
}
