//! Tests of the `http_server` source with real HTTP clients (reqwest, and raw sockets for what
//! a polite client never does) against a real topic.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value as Json;
use sluice_pipelines::{Event, SourceId, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::metrics::{ComponentMetrics, Metrics, Role};
use crate::shutdown::{self, ShutdownTrigger};
use crate::sources::{Source, SourceContext, SourceError, dead_letter_parts};
use crate::topic::{Subscription, SubscriptionSettings, Topic, TopicSettings};

struct Harness {
    addr: SocketAddr,
    url: String,
    topic: Topic,
    sub: Subscription,
    metrics: Arc<ComponentMetrics>,
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<(), SourceError>>,
    client: reqwest::Client,
    /// What the server sent to the dead-letter topic.
    dead_letters: Subscription,
    _dead_letter_topic: Topic,
}

async fn start(extra: &str) -> Harness {
    start_with(extra, TopicSettings::default()).await
}

async fn start_with(extra: &str, topic_settings: TopicSettings) -> Harness {
    let config: HttpServerConfig =
        toml::from_str(&format!("address = \"127.0.0.1:0\"\n{extra}")).unwrap();
    let server = config.build().unwrap();
    let addr = server.local_addr().unwrap();
    let topic = Topic::in_memory("events", topic_settings);
    let sub = topic.subscribe(SubscriptionSettings::new("test"));
    let (trigger, shutdown) = shutdown::channel();
    let metrics = Metrics::new().register("web", Role::Source);
    let dead_letter_topic = Topic::in_memory("dead_letter", TopicSettings::default());
    let dead_letters = dead_letter_topic.subscribe(SubscriptionSettings::new("test"));
    let ctx = SourceContext {
        name: "web".into(),
        id: SourceId(3),
        output: topic.producer(),
        shutdown,
        data_dir: std::env::temp_dir(),
        metrics: metrics.clone(),
        dead_letter: Some(dead_letter_topic.producer()),
    };
    let task = tokio::spawn(Box::new(server).run(ctx));
    Harness {
        url: format!("http://{addr}{}", config.path),
        addr,
        topic,
        sub,
        metrics,
        trigger,
        task,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        dead_letters,
        _dead_letter_topic: dead_letter_topic,
    }
}

/// An HTTP answer, its body parsed as JSON.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Json,
}

impl Harness {
    async fn post(&self, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Answer {
        self.send(self.client.post(&self.url), content_type, body)
            .await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = request.body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        answer(request.send().await.unwrap()).await
    }

    fn counter(&self, name: &str) -> u64 {
        self.metrics
            .extra_counters()
            .into_iter()
            .find(|(counter, _)| *counter == name)
            .map_or(0, |(_, value)| value)
    }

    /// Takes `count` events from the topic, acknowledging them.
    async fn take(&self, count: usize) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < count {
            let delivery = tokio::time::timeout(Duration::from_secs(5), self.sub.next())
                .await
                .expect("events arrive")
                .unwrap();
            events.extend_from_slice(delivery.events());
            delivery.ack();
        }
        assert_eq!(events.len(), count);
        events
    }

    /// The next dead letters (one request's), acknowledged.
    async fn dead_letters(&self) -> Vec<Event> {
        let delivery = tokio::time::timeout(Duration::from_secs(5), self.dead_letters.next())
            .await
            .expect("dead letters arrive")
            .unwrap();
        let events = delivery.events().to_vec();
        delivery.ack();
        events
    }

    /// Asserts nothing more is in the topic.
    async fn nothing_more(&self) {
        let next = tokio::time::timeout(Duration::from_millis(100), self.sub.next()).await;
        assert!(next.is_err(), "unexpected events in the topic");
    }

    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops promptly")
            .unwrap()
            .unwrap();
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
    Answer {
        status,
        headers,
        json,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn ndjson(ids: std::ops::Range<usize>) -> String {
    ids.map(|id| format!("{{\"id\":{id},\"event\":\"click\"}}\n"))
        .collect()
}

fn ids(events: &[Event]) -> Vec<i64> {
    events
        .iter()
        .map(|event| event.get("id").and_then(Value::as_int).unwrap())
        .collect()
}

#[tokio::test]
async fn every_body_format_becomes_stamped_events() {
    let h = start("copy_headers = [\"user-agent\", \"x-tenant\"]").await;
    let before = chrono::Utc::now();

    let a = h
        .send(
            h.client
                .post(&h.url)
                .header("user-agent", "beacon/1.0")
                .header("x-tenant", "shop"),
            Some("application/x-ndjson"),
            ndjson(0..3),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json, serde_json::json!({"accepted": 3}));
    assert_eq!(a.headers["content-type"], "application/json");
    let events = h.take(3).await;
    assert_eq!(ids(&events), [0, 1, 2]);
    let event = &events[0];
    assert_eq!(event.get("event").unwrap().as_str(), Some("click"));
    assert_eq!(
        event.get("remote_addr").unwrap().as_str(),
        Some("127.0.0.1")
    );
    assert_eq!(event.get("path").unwrap().as_str(), Some("/"));
    assert_eq!(
        event.get("user_agent").unwrap().as_str(),
        Some("beacon/1.0")
    );
    assert_eq!(event.get("x_tenant").unwrap().as_str(), Some("shop"));
    let Some(Value::Timestamp(received)) = event.get("received_at") else {
        panic!("no received_at: {event:?}")
    };
    assert!(*received >= before && *received <= chrono::Utc::now());
    assert_eq!(event.meta().source, SourceId(3));
    assert!(event.raw().is_none(), "JSON events are fields");

    let array = h
        .post(Some("application/json"), r#"[{"id":10},{"id":11}]"#)
        .await;
    assert_eq!(array.json, serde_json::json!({"accepted": 2}));
    assert_eq!(ids(&h.take(2).await), [10, 11]);

    let object = h
        .post(
            Some("application/json; charset=utf-8"),
            "{\n  \"id\": 12\n}\n",
        )
        .await;
    assert_eq!(object.json, serde_json::json!({"accepted": 1}));
    assert_eq!(ids(&h.take(1).await), [12]);

    let text = h
        .post(Some("text/plain"), "first line\r\nsecond line\n\n")
        .await;
    assert_eq!(text.json, serde_json::json!({"accepted": 2}));
    let lines = h.take(2).await;
    assert_eq!(lines[1].raw().unwrap().as_ref(), b"second line");
    assert_eq!(lines[1].get("path").unwrap().as_str(), Some("/"));

    // No Content-Type: the first byte decides.
    let sniffed = h.post(None, ndjson(20..22)).await;
    assert_eq!(sniffed.json, serde_json::json!({"accepted": 2}));
    assert_eq!(ids(&h.take(2).await), [20, 21]);

    let empty = h.post(Some("application/x-ndjson"), "").await;
    assert_eq!(empty.json, serde_json::json!({"accepted": 0}));
    h.nothing_more().await;
    assert_eq!(h.metrics.events_out.get(), 10);
    assert_eq!(h.counter("requests"), 6);
    assert_eq!(h.counter("rejected_requests"), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_bad_line_gets_400_naming_it_and_partial_decides_the_rest() {
    let body = format!("{}{{\"id\": oops}}\n{}", ndjson(0..2), ndjson(3..5));
    let h = start("").await;
    let a = h.post(Some("application/x-ndjson"), body.clone()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json["line"], 3);
    assert_eq!(a.json["accepted"], 0);
    let error = a.json["error"].as_str().unwrap();
    assert!(
        error.starts_with("line 3: invalid JSON at column 8"),
        "{error}"
    );
    h.nothing_more().await;
    assert_eq!(h.counter("rejected_requests_bad_request"), 1);
    assert_eq!(h.counter("invalid_events"), 1);
    // The operator sees the reason too (logged, and in the run summary).
    let reasons = h.metrics.rejections.top(5);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0]
            .kind
            .starts_with("line N: invalid JSON at column N")
            && reasons[0].count == 1,
        "{reasons:?}"
    );
    let dead = tokio::time::timeout(Duration::from_millis(100), h.dead_letters.next()).await;
    assert!(
        dead.is_err(),
        "a rejected body is the client's to resend, not a dead letter"
    );
    h.stop().await;

    let h = start("partial = \"accept_valid\"").await;
    let a = h.post(Some("application/x-ndjson"), body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json["line"], 3);
    assert_eq!(a.json["accepted"], 4);
    assert_eq!(ids(&h.take(4).await), [0, 1, 3, 4]);
    let letter_of = |event: &Event| {
        assert_eq!(event.get("path").and_then(Value::as_str), Some("/"));
        assert_eq!(event.meta().source, SourceId(3));
        dead_letter_parts(event)
    };
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(h.metrics.rejections.total(), 1);
    let (raw, error, source) = letter_of(&dead[0]);
    assert_eq!((raw.as_str(), source.as_str()), (r#"{"id": oops}"#, "web"));
    assert!(error.starts_with("line 3: invalid JSON"), "{error}");
    let item = h
        .post(Some("application/json"), r#"[{"id":7}, "nope", {"id":8}]"#)
        .await;
    assert_eq!(item.status, StatusCode::BAD_REQUEST);
    assert_eq!(item.json["item"], 2);
    assert_eq!(item.json["accepted"], 2);
    assert_eq!(ids(&h.take(2).await), [7, 8]);
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let (raw, error, _) = letter_of(&dead[0]);
    assert_eq!(raw, r#""nope""#);
    assert_eq!(error, "item 2: expected a JSON object, found a string");
    assert_eq!(h.metrics.events_out.get(), 6);
    assert_eq!(h.metrics.errors.get(), 2);
    h.stop().await;
}

#[tokio::test]
async fn gzip_bodies_are_decompressed_and_bombs_get_413() {
    let h = start("max_decompressed_bytes = \"1MiB\"").await;
    let body = ndjson(0..1000);
    let a = h
        .send(
            h.client.post(&h.url).header("content-encoding", "gzip"),
            Some("application/x-ndjson"),
            gzip(body.as_bytes()),
        )
        .await;
    assert_eq!(a.json, serde_json::json!({"accepted": 1000}));
    assert_eq!(ids(&h.take(1000).await), (0..1000).collect::<Vec<_>>());
    assert_eq!(h.metrics.bytes_out.get(), body.len() as u64);

    // 64 MiB of zeros in about 64 KiB.
    let bomb = gzip(&vec![b'0'; 64 << 20]);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let started = Instant::now();
    let a = h
        .send(
            h.client.post(&h.url).header("content-encoding", "gzip"),
            Some("text/plain"),
            bomb,
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        a.json["error"].as_str().unwrap().contains("decompressed"),
        "{}",
        a.json
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        h.counter("rejected_requests_too_large"),
        1,
        "{:?}",
        h.metrics.extra_counters()
    );

    let corrupt = h
        .send(
            h.client.post(&h.url).header("content-encoding", "gzip"),
            Some("text/plain"),
            b"certainly not gzip".to_vec(),
        )
        .await;
    assert_eq!(corrupt.status, StatusCode::BAD_REQUEST);
    let brotli = h
        .send(
            h.client.post(&h.url).header("content-encoding", "br"),
            Some("text/plain"),
            "x",
        )
        .await;
    assert_eq!(brotli.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    h.nothing_more().await;
    h.stop().await;
}

#[tokio::test]
async fn the_in_flight_budget_is_returned_after_every_request() {
    let h = start("max_body_bytes = \"64KiB\"\nmax_decompressed_bytes = \"64KiB\"\nmax_in_flight_bytes = \"64KiB\"\nmax_wait = \"200ms\"").await;
    // Requests one after another, each close to the whole budget: a leak would starve later ones.
    for round in 0..20 {
        let body = ndjson(round * 500..round * 500 + 500);
        assert!(body.len() < 64 * 1024);
        let a = if round % 2 == 0 {
            h.post(Some("application/x-ndjson"), body).await
        } else {
            h.send(
                h.client.post(&h.url).header("content-encoding", "gzip"),
                Some("application/x-ndjson"),
                gzip(body.as_bytes()),
            )
            .await
        };
        assert_eq!(a.status, StatusCode::OK, "round {round}: {}", a.json);
        h.take(500).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn bearer_tokens_are_checked_without_saying_what_was_wrong() {
    let h = start("tokens = [\"first-token\", \"second-token\"]").await;
    let body = ndjson(0..1);
    let mut refusals = Vec::new();
    for authorization in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer first-toke"),
        Some("Basic Zmlyc3QtdG9rZW4="),
        Some("Bearer "),
        Some("first-token"),
    ] {
        let mut request = h.client.post(&h.url);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let a = h
            .send(request, Some("application/x-ndjson"), body.clone())
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(a.headers["www-authenticate"], "Bearer realm=\"sluice\"");
        refusals.push(a.json);
    }
    // Every refusal reads the same.
    assert!(refusals.iter().all(|json| *json == refusals[0]));
    assert_eq!(refusals[0], serde_json::json!({"error": "unauthorized"}));
    for token in ["first-token", "second-token"] {
        let a = h
            .send(
                h.client.post(&h.url).bearer_auth(token),
                Some("application/x-ndjson"),
                body.clone(),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let lower = h
        .send(
            h.client
                .post(&h.url)
                .header("authorization", "bearer second-token"),
            Some("application/x-ndjson"),
            body,
        )
        .await;
    assert_eq!(lower.status, StatusCode::OK);
    h.take(3).await;
    // Health needs no token.
    let health = answer(
        h.client
            .get(format!("http://{}/health", h.addr))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json, serde_json::json!({"status": "ok"}));
    assert_eq!(h.counter("rejected_requests_unauthorized"), 6);
    h.stop().await;
}

#[tokio::test]
async fn wrong_methods_paths_and_types_get_their_codes() {
    let h = start("path = \"/ingest\"").await;
    let get = answer(h.client.get(&h.url).send().await.unwrap()).await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers["allow"], "POST, PUT");
    assert!(
        get.json["error"]
            .as_str()
            .unwrap()
            .contains("use POST, PUT")
    );
    let delete = answer(
        h.client
            .delete(format!("http://{}/health", h.addr))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(delete.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(delete.headers["allow"], "GET, HEAD");
    let elsewhere = h
        .send(
            h.client.post(format!("http://{}/other", h.addr)),
            None,
            "{}",
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    assert!(
        elsewhere.json["error"]
            .as_str()
            .unwrap()
            .contains("POST /ingest")
    );
    let xml = h.post(Some("application/xml"), "<a/>").await;
    assert_eq!(xml.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        xml.json["error"]
            .as_str()
            .unwrap()
            .contains("application/xml")
    );
    let put = h
        .send(
            h.client.put(&h.url),
            Some("application/x-ndjson"),
            ndjson(0..1),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    h.take(1).await;
    assert_eq!(h.counter("rejected_requests_method_not_allowed"), 2);
    assert_eq!(h.counter("rejected_requests_not_found"), 1);
    assert_eq!(h.counter("rejected_requests_unsupported_media_type"), 1);
    h.stop().await;
}

/// Writes `request` on a fresh connection and reads the answer until the server closes it or
/// `timeout` passes. Returns the text read and whether the server closed the connection.
async fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_until_closed(&mut stream, timeout).await
}

async fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(read)) => got.extend_from_slice(&buffer[..read]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

#[tokio::test]
async fn bodies_and_headers_past_their_limits_are_refused() {
    let h = start("max_body_bytes = \"1KiB\"\nmax_header_bytes = \"2KiB\"").await;
    let big = ndjson(0..100);
    assert!(big.len() > 1024 && big.len() < 4096);
    let a = h.post(Some("application/x-ndjson"), big.clone()).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        a.json["error"].as_str().unwrap().contains("1024"),
        "{}",
        a.json
    );

    // Chunked, without a length: refused once the limit is passed.
    let mut request = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for chunk in big.as_bytes().chunks(300) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (text, _) = raw_exchange(h.addr, &request, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    let long = "x".repeat(3000);
    let a = answer(
        h.client
            .post(&h.url)
            .header("x-long", long)
            .body(ndjson(0..1))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Within the limits all is well.
    let fine = h.post(Some("application/x-ndjson"), ndjson(0..5)).await;
    assert_eq!(fine.status, StatusCode::OK);
    h.take(5).await;
    assert_eq!(h.counter("rejected_requests_too_large"), 2);
    assert!(h.counter("connection_errors") >= 1);
    h.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let h = start("request_timeout = \"300ms\"").await;
    let started = Instant::now();
    let (text, closed) = raw_exchange(
        h.addr,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nonly a part",
        Duration::from_secs(3),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(closed);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2));
    h.nothing_more().await;
    assert_eq!(h.counter("rejected_requests_timeout"), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_client_dribbling_its_headers_is_dropped_after_header_timeout() {
    let h = start("header_timeout = \"500ms\"\nidle_timeout = \"10s\"").await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let started = Instant::now();
    let head = b"POST / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => panic!("no answer expected to an unfinished head"),
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the server dropped the slow client");
    assert!(
        closed_after >= Duration::from_millis(500) && closed_after < Duration::from_millis(1500),
        "{closed_after:?}"
    );
    assert_eq!(h.counter("connections_slow_closed"), 1);
    assert_eq!(h.counter("connections_idle_closed"), 0);
    // The server still serves others.
    let a = h.post(Some("application/x-ndjson"), ndjson(0..1)).await;
    assert_eq!(a.status, StatusCode::OK);
    h.take(1).await;
    h.stop().await;
}

#[tokio::test]
async fn idle_connections_outlive_header_timeout_but_not_idle_timeout() {
    let h = start("header_timeout = \"200ms\"\nidle_timeout = \"800ms\"").await;
    let request = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n{}",
        ndjson(0..1).len(),
        ndjson(0..1)
    );
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    // Idle for longer than header_timeout: still open, and serves a request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = [0u8; 1024];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    // Kept alive, then closed once idle for idle_timeout.
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(closed);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_millis(1600),
        "{elapsed:?}"
    );
    assert_eq!(h.counter("connections_idle_closed"), 1);
    assert_eq!(h.counter("connections_slow_closed"), 0);
    h.take(1).await;
    h.stop().await;
}

#[tokio::test]
async fn connections_past_max_connections_wait_for_a_free_one() {
    let h = start("max_connections = 2").await;
    let one = TcpStream::connect(h.addr).await.unwrap();
    let _two = TcpStream::connect(h.addr).await.unwrap();
    let fresh = || {
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    let refused = fresh()
        .post(&h.url)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(0..1))
        .send()
        .await;
    assert!(refused.unwrap_err().is_timeout());
    assert!(h.counter("connection_limit_reached") >= 1);
    drop(one);
    let served = fresh()
        .post(&h.url)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(1..2))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    // The timed-out request may have been read before its client gave up: at least one event.
    let delivery = tokio::time::timeout(Duration::from_secs(2), h.sub.next())
        .await
        .unwrap()
        .unwrap();
    assert!(!delivery.events().is_empty());
    delivery.ack();
    h.stop().await;
}

/// The topic fills while nobody acknowledges: the server answers 503 with Retry-After within
/// `max_wait`, memory stays within the topic's limits, and once a consumer acknowledges, every
/// event that got a 200 arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_topic_gets_503_with_retry_after_and_nothing_2xx_is_lost() {
    const MAX_EVENTS: u64 = 1000;
    let h = Arc::new(
        start_with(
            "max_wait = \"200ms\"\nretry_after = \"2s\"",
            TopicSettings {
                max_events: MAX_EVENTS,
                max_bytes: 64 * 1024 * 1024,
                ..TopicSettings::default()
            },
        )
        .await,
    );
    // Eight clients, 40 batches of 100 each; nobody reads the topic.
    let mut clients = Vec::new();
    for client in 0..8usize {
        let h = h.clone();
        clients.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = Vec::new();
            for batch in 0..5usize {
                let first = (client * 5 + batch) * 100;
                let started = Instant::now();
                let a = h
                    .post(Some("application/x-ndjson"), ndjson(first..first + 100))
                    .await;
                match a.status {
                    StatusCode::OK => accepted.push(first),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert_eq!(a.headers["retry-after"], "2");
                        assert!(a.json["error"].as_str().unwrap().contains("is full"));
                        // Answered within max_wait (and some slack), not held forever.
                        assert!(started.elapsed() < Duration::from_secs(2));
                        refused.push(first);
                    }
                    other => panic!("unexpected {other}: {}", a.json),
                }
                let stats = h.topic.stats();
                assert!(stats.retained_events <= MAX_EVENTS, "{stats:?}");
            }
            (accepted, refused)
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for client in clients {
        let (ok, no) = client.await.unwrap();
        accepted.extend(ok);
        refused.extend(no);
    }
    assert_eq!(accepted.len(), (MAX_EVENTS / 100) as usize, "{accepted:?}");
    assert_eq!(refused.len(), 40 - accepted.len());
    assert_eq!(h.topic.stats().retained_events, MAX_EVENTS);
    assert_eq!(
        h.counter("rejected_requests_topic_full"),
        refused.len() as u64
    );

    // The consumer starts acknowledging; clients retry what was refused until it is taken.
    let consumer = {
        let h = h.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 4000 {
                let delivery = tokio::time::timeout(Duration::from_secs(10), h.sub.next())
                    .await
                    .expect("events keep arriving")
                    .unwrap();
                got.extend(ids(delivery.events()));
                delivery.ack();
            }
            got
        })
    };
    for first in &refused {
        loop {
            let a = h
                .post(Some("application/x-ndjson"), ndjson(*first..first + 100))
                .await;
            if a.status == StatusCode::OK {
                break;
            }
            assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    let got = consumer.await.unwrap();
    assert_eq!(got.len(), 4000);
    let unique: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), 4000, "duplicates");
    assert_eq!(unique, (0..4000).collect());
    let h = Arc::into_inner(h).unwrap();
    h.nothing_more().await;
    h.stop().await;
}

#[tokio::test]
async fn shutdown_answers_a_waiting_request_and_stops_the_server() {
    let h = start_with(
        "max_wait = \"30s\"",
        TopicSettings {
            max_events: 10,
            ..TopicSettings::default()
        },
    )
    .await;
    let a = h.post(Some("application/x-ndjson"), ndjson(0..10)).await;
    assert_eq!(a.status, StatusCode::OK);
    // This one waits for room that never comes, until shutdown.
    let waiting = {
        let client = h.client.clone();
        let url = h.url.clone();
        tokio::spawn(async move {
            answer(
                client
                    .post(url)
                    .header("content-type", "application/x-ndjson")
                    .body(ndjson(10..20))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    let addr = h.addr;
    let started = Instant::now();
    h.stop().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let a = waiting.await.unwrap();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.headers.contains_key("retry-after"));
    // The port is closed.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[test]
fn bad_configs_name_their_key() {
    let key = |text: &str| {
        let config: HttpServerConfig =
            toml::from_str(&format!("address = \"127.0.0.1:0\"\n{text}")).unwrap();
        config.validate().unwrap_err().key.unwrap()
    };
    assert_eq!(
        toml::from_str::<HttpServerConfig>("address = \"localhost\"")
            .unwrap()
            .validate()
            .unwrap_err()
            .key
            .unwrap(),
        "address"
    );
    assert_eq!(key("path = \"events\""), "path");
    assert_eq!(key("health_path = \"/\""), "health_path");
    assert_eq!(key("max_body_bytes = 0"), "max_body_bytes");
    assert_eq!(
        key("max_in_flight_bytes = \"1MiB\"\nmax_decompressed_bytes = \"2MiB\""),
        "max_in_flight_bytes"
    );
    assert_eq!(key("max_header_bytes = 100"), "max_header_bytes");
    assert_eq!(key("max_connections = 0"), "max_connections");
    assert_eq!(key("max_wait = \"0s\""), "max_wait");
    assert_eq!(key("tokens = [\"ok\", \"\"]"), "tokens[1]");
    assert_eq!(key("tokens = [\"has space\"]"), "tokens[0]");
    assert_eq!(key("copy_headers = [\"bad header\"]"), "copy_headers[0]");
    if !cfg!(feature = "tls") {
        assert_eq!(
            key("tls = { cert_file = \"c.pem\", key_file = \"k.pem\" }"),
            "tls"
        );
    }
    assert!(toml::from_str::<HttpServerConfig>("address = \"127.0.0.1:0\"\nbogus = 1").is_err());
    let defaults: HttpServerConfig = toml::from_str("address = \"0.0.0.0:8080\"").unwrap();
    assert_eq!(defaults, HttpServerConfig::new("0.0.0.0:8080"));
    let settings = defaults.validate().unwrap();
    assert_eq!(settings.max_wait, Duration::from_secs(1));
    assert_eq!(settings.retry_after_secs, 1);
    // Binding a port in use names the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = HttpServerConfig::new(taken.local_addr().unwrap().to_string());
    let error = config.build().unwrap_err();
    assert_eq!(error.key.as_deref(), Some("address"));
    assert!(error.message.contains("cannot listen"), "{}", error.message);
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = |name: &str| dir.path().join(name);
    // A CA, and a server certificate for localhost signed by it (webpki refuses a self-signed
    // certificate as a server's).
    let script = r#"set -e
        ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        openssl req -x509 $ec -days 1 -subj "/CN=sluice test CA" -keyout ca.key -out ca.pem
        openssl req $ec -subj /CN=localhost -keyout key.pem -out leaf.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
            -extfile leaf.ext -out cert.pem"#;
    let output = std::process::Command::new("sh")
        .current_dir(dir.path())
        .args(["-c", script])
        .output()
        .expect("sh and openssl are installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (cert, key) = (path("cert.pem"), path("key.pem"));
    let h = start(&format!(
        "tls = {{ cert_file = {:?}, key_file = {:?} }}",
        cert.display().to_string(),
        key.display().to_string()
    ))
    .await;
    let pem = std::fs::read(path("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/", h.addr.port());
    let a = answer(
        client
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body(ndjson(0..2))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(ids(&h.take(2).await), [0, 1]);
    // Plain HTTP on the TLS port is not served.
    let plain = h
        .client
        .post(format!("http://127.0.0.1:{}/", h.addr.port()))
        .body("{}")
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(plain.is_err());
    h.stop().await;
}

// Browsers: CORS, beacons, the pixel, and the client address behind proxies.

const CORS: &str = "cors = { allowed_origins = [\"https://shop.example\"], max_age = \"10m\" }";

#[tokio::test]
async fn preflights_from_allowed_origins_are_answered_and_others_refused() {
    let h = start(CORS).await;
    let preflight = |origin: &'static str| {
        h.client
            .request(reqwest::Method::OPTIONS, &h.url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
    };
    let allowed = answer(preflight("https://shop.example").send().await.unwrap()).await;
    assert_eq!(allowed.status, StatusCode::NO_CONTENT);
    let headers = &allowed.headers;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(headers["access-control-allow-methods"], "POST, PUT");
    assert_eq!(headers["access-control-allow-headers"], "content-type");
    assert_eq!(headers["access-control-max-age"], "600");
    assert!(
        headers
            .get_all("vary")
            .iter()
            .any(|value| value == "origin")
    );
    assert!(headers.get("access-control-allow-credentials").is_none());

    let refused = answer(preflight("https://evil.example").send().await.unwrap()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.headers.get("access-control-allow-origin").is_none());
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap()
            .contains("https://evil.example"),
        "{}",
        refused.json
    );
    assert_eq!(h.counter("rejected_requests_forbidden_origin"), 1);
    h.nothing_more().await;
    h.stop().await;
}

#[tokio::test]
async fn without_cors_there_are_no_preflights_and_no_origin_checks() {
    let h = start("").await;
    let options = answer(
        h.client
            .request(reqwest::Method::OPTIONS, &h.url)
            .header("origin", "https://shop.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(options.status, StatusCode::METHOD_NOT_ALLOWED);
    let posted = h
        .send(
            h.client
                .post(&h.url)
                .header("origin", "https://any.example"),
            Some("application/json"),
            r#"{"id":1}"#,
        )
        .await;
    assert_eq!(posted.status, StatusCode::OK);
    assert!(posted.headers.get("access-control-allow-origin").is_none());
    assert_eq!(ids(&h.take(1).await), [1]);
    h.stop().await;
}

#[tokio::test]
async fn posts_from_origins_not_allowed_keep_nothing_and_allowed_ones_may_read_the_answer() {
    let h = start(CORS).await;
    let refused = h
        .send(
            h.client
                .post(&h.url)
                .header("origin", "https://evil.example"),
            Some("application/json"),
            r#"{"id":1}"#,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.headers.get("access-control-allow-origin").is_none());
    h.nothing_more().await;

    let allowed = h
        .send(
            h.client
                .post(&h.url)
                .header("origin", "https://shop.example"),
            Some("application/json"),
            r#"{"id":2}"#,
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert!(
        allowed
            .headers
            .get_all("vary")
            .iter()
            .any(|v| v == "origin")
    );
    assert_eq!(ids(&h.take(1).await), [2]);

    // Errors carry the CORS headers too, so the page can read why.
    let bad = h
        .send(
            h.client
                .post(&h.url)
                .header("origin", "https://shop.example"),
            Some("application/json"),
            "{not json",
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.headers["access-control-allow-origin"],
        "https://shop.example"
    );
    h.stop().await;
}

#[tokio::test]
async fn beacons_sent_as_text_plain_are_decoded_as_configured() {
    let h = start(&format!("decoding = \"json\"\n{CORS}")).await;
    // What navigator.sendBeacon(url, JSON.stringify(...)) sends.
    let beacon = h
        .send(
            h.client
                .post(&h.url)
                .header("origin", "https://shop.example"),
            Some("text/plain;charset=UTF-8"),
            r#"{"id":7,"event":"view"}"#,
        )
        .await;
    assert_eq!(beacon.status, StatusCode::OK, "{}", beacon.json);
    let events = h.take(1).await;
    assert_eq!(ids(&events), [7]);
    assert_eq!(events[0].get("event").and_then(Value::as_str), Some("view"));
    h.stop().await;
}

#[tokio::test]
async fn pixel_requests_become_events_of_their_query_answered_with_a_gif() {
    let h = start(&format!(
        "pixel_path = \"/p.gif\"\ncopy_headers = [\"user-agent\"]\n{CORS}"
    ))
    .await;
    let pixel = format!("http://{}/p.gif", h.addr);
    let response = h
        .client
        .get(format!(
            "{pixel}?e=view&page=%2Fhome%3Fx%3D1&tag=a&tag=b&q=red+shoes"
        ))
        .header("user-agent", "Mozilla/5.0 test")
        .header("referer", "https://shop.example/home?x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        pixel::TRANSPARENT_GIF
    );
    let events = h.take(1).await;
    let event = &events[0];
    let text = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
    assert_eq!(text("e").as_deref(), Some("view"));
    assert_eq!(text("page").as_deref(), Some("/home?x=1"));
    assert_eq!(text("q").as_deref(), Some("red shoes"));
    assert_eq!(
        event.get("tag"),
        Some(&Value::Array(vec![Value::from("a"), Value::from("b")]))
    );
    assert_eq!(text("path").as_deref(), Some("/p.gif"));
    assert_eq!(text("remote_addr").as_deref(), Some("127.0.0.1"));
    assert_eq!(text("user_agent").as_deref(), Some("Mozilla/5.0 test"));
    assert!(matches!(
        event.get("received_at"),
        Some(Value::Timestamp(_))
    ));

    // No Referer and no Origin (a mail reader, a server): accepted.
    let bare = h
        .client
        .get(format!("{pixel}?e=open"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::OK);
    assert_eq!(
        h.take(1).await[0].get("e").and_then(Value::as_str),
        Some("open")
    );

    // A page on another origin: refused, nothing kept.
    let foreign = h
        .client
        .get(format!("{pixel}?e=view"))
        .header("referer", "https://evil.example/")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    h.nothing_more().await;

    // The pixel takes GET and HEAD only.
    let post = h.client.post(&pixel).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    h.stop().await;
}

#[tokio::test]
async fn pixel_requests_follow_the_token_and_back_pressure_rules() {
    let h = start_with(
        "pixel_path = \"/p.gif\"\ntokens = [\"secret\"]\nmax_wait = \"100ms\"",
        TopicSettings {
            max_events: 1,
            ..TopicSettings::default()
        },
    )
    .await;
    let pixel = format!("http://{}/p.gif?e=view", h.addr);
    let anonymous = h.client.get(&pixel).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let with_token = |client: &reqwest::Client| client.get(&pixel).bearer_auth("secret");
    assert_eq!(
        with_token(&h.client).send().await.unwrap().status(),
        StatusCode::OK
    );
    // The topic holds one event: the next pixel waits max_wait, then 503 with Retry-After.
    let full = with_token(&h.client).send().await.unwrap();
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(full.headers().contains_key("retry-after"));
    assert_eq!(h.take(1).await.len(), 1);
    h.nothing_more().await;
    h.stop().await;
}

#[tokio::test]
async fn the_client_address_comes_from_trusted_proxies_only() {
    let chain = "6.6.6.6, 198.51.100.7";
    let direct = start("").await;
    let spoofed = direct
        .send(
            direct
                .client
                .post(&direct.url)
                .header("x-forwarded-for", chain),
            Some("application/json"),
            r#"{"id":1}"#,
        )
        .await;
    assert_eq!(spoofed.status, StatusCode::OK);
    let events = direct.take(1).await;
    assert_eq!(
        events[0].get("remote_addr").and_then(Value::as_str),
        Some("127.0.0.1"),
        "a header from a peer that is not trusted is ignored"
    );
    direct.stop().await;

    let proxied = start("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]").await;
    let forwarded = proxied
        .send(
            proxied
                .client
                .post(&proxied.url)
                .header("x-forwarded-for", format!("{chain}, 10.2.3.4")),
            Some("application/json"),
            r#"{"id":2}"#,
        )
        .await;
    assert_eq!(forwarded.status, StatusCode::OK);
    let events = proxied.take(1).await;
    assert_eq!(
        events[0].get("remote_addr").and_then(Value::as_str),
        Some("198.51.100.7")
    );
    proxied.stop().await;
}

#[test]
fn browser_keys_are_checked_with_their_names() {
    for (extra, key) in [
        ("pixel_path = \"p.gif\"", "pixel_path"),
        ("pixel_path = \"/\"", "pixel_path"),
        ("trusted_proxies = [\"proxy\"]", "trusted_proxies[0]"),
        ("cors = { allowed_origins = [] }", "cors.allowed_origins"),
    ] {
        let config: HttpServerConfig =
            toml::from_str(&format!("address = \"127.0.0.1:0\"\n{extra}")).unwrap();
        let error = config.validate().unwrap_err();
        assert_eq!(error.key.as_deref(), Some(key), "{extra}");
    }
}
