//! Tests of the `http_poll` source against a real local HTTP server (axum) started by each test.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use sluice_pipelines::{Event, SourceId, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::*;
use crate::metrics::{ComponentMetrics, Metrics, Role};
use crate::shutdown::{self, ShutdownTrigger};
use crate::sources::{Source, SourceContext, SourceError, dead_letter_parts};
use crate::topic::{Delivery, Subscription, SubscriptionSettings, Topic, TopicSettings};

/// A request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    headers: HeaderMap,
    body: String,
}

impl Seen {
    fn query(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&format!("http://test{}", self.uri)).ok()?;
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// What the test server answers: status, headers, body, and a delay before answering.
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(body: impl Into<String>) -> Self {
        Reply {
            status: StatusCode::OK,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    fn status(status: StatusCode, body: &str) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

type Responder = Box<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

struct Api {
    seen: Mutex<Vec<Seen>>,
    respond: Responder,
}

async fn handle(State(api): State<Arc<Api>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let index = {
        let mut log = api.seen.lock();
        log.push(seen.clone());
        log.len() - 1
    };
    let reply = (api.respond)(&seen, index);
    tokio::time::sleep(reply.delay).await;
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A test API on `listener`; returns its request log.
fn serve_on(
    listener: tokio::net::TcpListener,
    respond: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> Arc<Api> {
    let api = Arc::new(Api {
        seen: Mutex::new(Vec::new()),
        respond: Box::new(respond),
    });
    let router = axum::Router::new().fallback(handle).with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    api
}

async fn serve(
    respond: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Api>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (base, serve_on(listener, respond))
}

impl Api {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    async fn wait_for_requests(&self, count: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.seen.lock().len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} requests",
                self.seen.lock().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.seen()
    }
}

struct Polling {
    sub: Subscription,
    metrics: Arc<ComponentMetrics>,
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<(), SourceError>>,
    /// What the source sent to its dead-letter topic.
    dead_letters: Subscription,
    _topic: Topic,
    _dead_letter_topic: Topic,
}

fn start(config: &str, data_dir: &std::path::Path) -> Polling {
    let config: HttpPollConfig = toml::from_str(config).unwrap();
    let source = config.build().unwrap();
    let topic = Topic::in_memory("api", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("test"));
    let (trigger, shutdown) = shutdown::channel();
    let metrics = Metrics::new().register("api", Role::Source);
    let dead_letter_topic = Topic::in_memory("dead_letter", TopicSettings::default());
    let dead_letters = dead_letter_topic.subscribe(SubscriptionSettings::new("test"));
    let ctx = SourceContext {
        name: "api".into(),
        id: SourceId(4),
        output: topic.producer(),
        shutdown,
        data_dir: data_dir.to_owned(),
        metrics: metrics.clone(),
        dead_letter: Some(dead_letter_topic.producer()),
    };
    Polling {
        task: tokio::spawn(Box::new(source).run(ctx)),
        sub,
        metrics,
        trigger,
        dead_letters,
        _topic: topic,
        _dead_letter_topic: dead_letter_topic,
    }
}

impl Polling {
    /// The next dead letter, acknowledged: its raw input, error and source.
    async fn dead_letter(&self) -> (String, String, String) {
        let delivery = tokio::time::timeout(Duration::from_secs(10), self.dead_letters.next())
            .await
            .expect("a dead letter arrives")
            .unwrap();
        assert_eq!(delivery.events().len(), 1);
        let event = &delivery.events()[0];
        assert_eq!(event.meta().source, SourceId(4));
        let letter = dead_letter_parts(event);
        delivery.ack();
        letter
    }

    /// The next `count` events, delivered but not acknowledged.
    async fn deliveries(&self, count: usize) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        let mut got = 0;
        while got < count {
            let delivery = tokio::time::timeout(Duration::from_secs(10), self.sub.next())
                .await
                .expect("events arrive")
                .unwrap();
            got += delivery.events().len();
            deliveries.push(delivery);
        }
        assert_eq!(got, count);
        deliveries
    }

    async fn take(&self, count: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for delivery in self.deliveries(count).await {
            events.extend_from_slice(delivery.events());
            delivery.ack();
        }
        events
    }

    async fn nothing_more(&self) {
        let next = tokio::time::timeout(Duration::from_millis(150), self.sub.next()).await;
        assert!(next.is_err(), "unexpected events");
    }

    /// Waits until the counter `name` reaches `at_least`.
    async fn wait_for(&self, name: &str, at_least: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.counter(name) < at_least {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed at {}",
                self.counter(name)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.metrics
            .extra_counters()
            .into_iter()
            .find(|(counter, _)| *counter == name)
            .map_or(0, |(_, value)| value)
    }

    async fn stop(self) {
        assert!(!self.task.is_finished(), "the source stopped by itself");
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops promptly")
            .unwrap()
            .unwrap();
    }
}

fn ids(events: &[Event]) -> Vec<i64> {
    events
        .iter()
        .map(|event| event.get("id").and_then(Value::as_int).unwrap())
        .collect()
}

#[tokio::test]
async fn json_arrays_objects_and_nested_items_become_events() {
    let (base, _api) = serve(|seen, _| match seen.uri.as_str() {
        "/array" => Reply::json(r#"[{"id":1,"kind":"a"},{"id":2},3]"#),
        "/object" => Reply::json(r#"{"id":10,"nested":{"x":true}}"#),
        "/nested" => Reply::json(r#"{"meta":{},"data":{"items":[{"id":20},{"id":21}]}}"#),
        "/scalar" => Reply::json("42"),
        _ => Reply::status(StatusCode::NOT_FOUND, "no"),
    })
    .await;
    let dir = TempDir::new().unwrap();

    let polling = start(&format!("url = \"{base}/array\""), dir.path());
    let events = polling.take(2).await;
    assert_eq!(ids(&events), [1, 2]);
    assert_eq!(events[0].get("kind").unwrap().as_str(), Some("a"));
    assert_eq!(events[0].meta().source, SourceId(4));
    assert_eq!(polling.counter("invalid_events"), 1);
    assert_eq!(
        polling.dead_letter().await,
        (
            "3".into(),
            "item 3: expected a JSON object, found a number".into(),
            "api".into()
        )
    );
    polling.nothing_more().await;
    polling.stop().await;

    let polling = start(&format!("url = \"{base}/object\""), dir.path());
    assert_eq!(ids(&polling.take(1).await), [10]);
    polling.stop().await;

    let polling = start(
        &format!("url = \"{base}/nested\"\nitems_path = \"data.items\""),
        dir.path(),
    );
    assert_eq!(ids(&polling.take(2).await), [20, 21]);
    polling.stop().await;

    // Wrong shapes are errors of the poll, not of the agent.
    for (path, items_path) in [("/scalar", ""), ("/object", "items_path = \"data.items\"")] {
        let polling = start(&format!("url = \"{base}{path}\"\n{items_path}"), dir.path());
        polling.wait_for("poll_errors", 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(polling.counter("poll_errors"), 1, "{path}");
        polling.nothing_more().await;
        polling.stop().await;
    }
}

#[tokio::test]
async fn ndjson_answers_are_read_line_by_line() {
    let (base, _api) = serve(|_, _| Reply {
        status: StatusCode::OK,
        headers: vec![("content-type", "application/x-ndjson".into())],
        body: "{\"id\":1}\n\n{\"id\":2}\nnot json\n{\"id\":3}".into(),
        delay: Duration::ZERO,
    })
    .await;
    let dir = TempDir::new().unwrap();
    let polling = start(&format!("url = \"{base}/\""), dir.path());
    assert_eq!(ids(&polling.take(3).await), [1, 2, 3]);
    assert_eq!(polling.counter("invalid_events"), 1);
    let (raw, error, source) = polling.dead_letter().await;
    assert_eq!((raw.as_str(), source.as_str()), ("not json", "api"));
    assert!(error.starts_with("line 4: "), "{error}");
    polling.stop().await;
}

#[tokio::test]
async fn unchanged_answers_are_skipped_with_etag_and_last_modified() {
    const MODIFIED: &str = "Wed, 01 May 2024 00:00:00 GMT";
    let (base, api) = serve(|seen, _| {
        let etag_matches = seen.header("if-none-match") == Some("\"v1\"");
        let not_modified = seen.header("if-modified-since") == Some(MODIFIED);
        if seen.uri.starts_with("/etag") && etag_matches
            || seen.uri.starts_with("/date") && not_modified
        {
            return Reply::status(StatusCode::NOT_MODIFIED, "");
        }
        let reply = Reply::json(r#"[{"id":1}]"#);
        if seen.uri.starts_with("/etag") {
            reply.with("etag", "\"v1\"")
        } else {
            reply.with("last-modified", MODIFIED)
        }
    })
    .await;
    for path in ["/etag", "/date"] {
        let dir = TempDir::new().unwrap();
        let polling = start(
            &format!("url = \"{base}{path}\"\ninterval = \"50ms\""),
            dir.path(),
        );
        assert_eq!(ids(&polling.take(1).await), [1]);
        let before = api.seen().len();
        api.wait_for_requests(before + 4).await;
        polling.nothing_more().await;
        assert!(polling.counter("not_modified") >= 3, "{path}");
        polling.stop().await;
    }
    let seen = api.seen();
    assert!(
        seen.iter()
            .any(|s| s.header("if-none-match") == Some("\"v1\""))
    );
    assert!(
        seen.iter()
            .any(|s| s.header("if-modified-since") == Some(MODIFIED))
    );
    // The validators are saved with the state: a restart does not fetch the same answer again.
    let dir = TempDir::new().unwrap();
    let polling = start(&format!("url = \"{base}/etag\""), dir.path());
    polling.take(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    polling.stop().await;
    let polling = start(&format!("url = \"{base}/etag\""), dir.path());
    polling.wait_for("not_modified", 1).await;
    polling.nothing_more().await;
    polling.stop().await;
}

#[tokio::test]
async fn the_cursor_fetches_new_items_and_is_saved_only_once_they_are_safe() {
    let items = Arc::new(Mutex::new((1..=5).collect::<Vec<i64>>()));
    let (base, api) = {
        let items = items.clone();
        serve(move |seen, _| {
            let since: i64 = seen.query("since").map_or(0, |text| text.parse().unwrap());
            let newer: Vec<String> = items
                .lock()
                .iter()
                .filter(|id| **id > since)
                .map(|id| format!("{{\"id\":{id},\"page\":\"/p{id}\"}}"))
                .collect();
            Reply::json(format!("{{\"items\":[{}]}}", newer.join(",")))
        })
        .await
    };
    let dir = TempDir::new().unwrap();
    let config = format!(
        "url = \"{base}/events?limit=100&since=0\"\ninterval = \"50ms\"\nitems_path = \"items\"\n\
         cursor = \"id\"\ncursor_param = \"since\""
    );
    let state_file = dir.path().join("sources/api/cursor.json");
    let polling = start(&config, dir.path());
    let first = polling.deliveries(5).await;
    let got: Vec<Event> = first.iter().flat_map(|d| d.events().to_vec()).collect();
    assert_eq!(ids(&got), [1, 2, 3, 4, 5]);
    // The next requests carry the cursor at once, and the other parameters stay.
    let seen = api.wait_for_requests(3).await;
    assert_eq!(seen[0].query("since").as_deref(), Some("0"));
    assert_eq!(seen[2].query("since").as_deref(), Some("5"));
    assert_eq!(seen[2].query("limit").as_deref(), Some("100"));
    // Not acknowledged, so not safe: nothing saved.
    assert!(!state_file.exists());

    items.lock().extend([6, 7, 8]);
    let second = polling.deliveries(3).await;
    let got: Vec<Event> = second.iter().flat_map(|d| d.events().to_vec()).collect();
    assert_eq!(ids(&got), [6, 7, 8]);
    assert!(!state_file.exists());
    // The first answer's items become safe: its cursor (5) is saved, not the later one.
    for delivery in first {
        delivery.ack();
    }
    let saved = || {
        state::load(&state_file)
            .unwrap()
            .and_then(|state| state.cursor)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while saved() != Some(Cursor::Int(5)) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", saved());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for delivery in second {
        delivery.ack();
    }
    while saved() != Some(Cursor::Int(8)) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", saved());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    polling.nothing_more().await;
    polling.stop().await;

    // A restart resumes from the saved cursor.
    let before = api.seen().len();
    items.lock().push(9);
    let polling = start(&config, dir.path());
    assert_eq!(ids(&polling.take(1).await), [9]);
    assert_eq!(api.seen()[before].query("since").as_deref(), Some("8"));
    polling.stop().await;
}

#[tokio::test]
async fn a_failing_server_is_retried_and_the_source_recovers() {
    let (base, api) = serve(|_, index| match index {
        // Too slow for the timeout.
        0 => Reply {
            delay: Duration::from_secs(2),
            ..Reply::json(r#"[{"id":0}]"#)
        },
        1 => Reply::status(StatusCode::SERVICE_UNAVAILABLE, "maintenance").with("retry-after", "0"),
        2..=4 => Reply::status(StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        _ => Reply::json(r#"[{"id":1},{"id":2}]"#),
    })
    .await;
    let dir = TempDir::new().unwrap();
    let polling = start(
        &format!(
            "url = \"{base}/\"\ninterval = \"100ms\"\nrequest_timeout = \"300ms\"\n\
             retry = {{ max_attempts = 3, initial = \"20ms\", max = \"50ms\" }}"
        ),
        dir.path(),
    );
    assert_eq!(ids(&polling.take(2).await), [1, 2]);
    assert_eq!(polling.counter("poll_errors"), 5);
    assert!(polling.counter("retries") >= 3);
    assert_eq!(polling.metrics.errors.get(), 5);
    let seen = api.seen();
    assert!(seen.len() >= 6);
    polling.stop().await;

    // A 404 is not retried within the poll.
    let (base, api) = serve(|_, _| Reply::status(StatusCode::NOT_FOUND, "gone")).await;
    let polling = start(
        &format!("url = \"{base}/\"\ninterval = \"1h\"\nretry = {{ initial = \"10ms\" }}"),
        dir.path(),
    );
    polling.wait_for("poll_errors", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.seen().len(), 1);
    assert_eq!(polling.counter("retries"), 0);
    assert_eq!(polling.counter("poll_errors"), 1);
    polling.stop().await;
}

#[tokio::test]
async fn a_server_that_is_down_is_polled_until_it_comes_back() {
    // Reserve a port, then free it: nothing listens there at first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new().unwrap();
    let polling = start(
        &format!(
            "url = \"http://127.0.0.1:{port}/\"\ninterval = \"100ms\"\n\
             retry = {{ max_attempts = 2, initial = \"20ms\" }}"
        ),
        dir.path(),
    );
    polling.wait_for("poll_errors", 4).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let _api = serve_on(listener, |_, _| Reply::json(r#"[{"id":7}]"#));
    assert_eq!(ids(&polling.take(1).await), [7]);
    polling.stop().await;
}

#[tokio::test]
async fn post_bodies_headers_and_credentials_are_sent() {
    let (base, api) = serve(|_, _| Reply::json("[]")).await;
    let dir = TempDir::new().unwrap();
    let polling = start(
        &format!(
            "url = \"{base}/search\"\nmethod = \"post\"\nbody = '{{\"query\":\"paid\"}}'\n\
             headers = {{ \"X-Team\" = \"growth\" }}\n\
             auth = {{ strategy = \"bearer\", token = \"s3cret\" }}\ninterval = \"1h\""
        ),
        dir.path(),
    );
    let seen = api.wait_for_requests(1).await;
    polling.stop().await;
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/search");
    assert_eq!(request.body, r#"{"query":"paid"}"#);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-team"), Some("growth"));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    assert!(request.header("user-agent").unwrap().starts_with("sluice/"));

    let polling = start(
        &format!(
            "url = \"{base}/basic\"\ninterval = \"1h\"\n\
             auth = {{ strategy = \"basic\", user = \"ann\", password = \"pw\" }}"
        ),
        dir.path(),
    );
    let seen = api.wait_for_requests(2).await;
    polling.stop().await;
    assert_eq!(seen[1].method, "GET");
    // base64("ann:pw")
    assert_eq!(seen[1].header("authorization"), Some("Basic YW5uOnB3"));
}

#[test]
fn bad_configs_name_their_key() {
    let key = |text: &str| {
        toml::from_str::<HttpPollConfig>(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .key
            .unwrap()
    };
    assert_eq!(key("url = \"not a url\""), "url");
    assert_eq!(key("url = \"ftp://x/\""), "url");
    assert_eq!(key("url = \"http://x/\"\nbody = \"{}\""), "body");
    assert_eq!(key("url = \"http://x/\"\ninterval = \"0s\""), "interval");
    assert_eq!(
        key("url = \"http://x/\"\nitems_path = \"a..b\""),
        "items_path"
    );
    assert_eq!(
        key("url = \"http://x/\"\nitems_path = \"a\"\ndecoding = \"ndjson\""),
        "items_path"
    );
    assert_eq!(key("url = \"http://x/\"\ncursor = \"\""), "cursor");
    assert_eq!(
        key("url = \"http://x/\"\nheaders = { \"bad name\" = \"v\" }"),
        "headers.bad name"
    );
    assert_eq!(
        key("url = \"http://x/\"\nretry = { initial = \"10s\", max = \"1s\" }"),
        "retry.max"
    );
    assert_eq!(
        key("url = \"http://x/\"\nretry = { max_attempts = 0 }"),
        "retry.max_attempts"
    );
    if !cfg!(feature = "tls") {
        assert_eq!(key("url = \"https://x/\""), "url");
    }
    assert!(toml::from_str::<HttpPollConfig>("url = \"http://x/\"\nbogus = 1").is_err());
    let defaults: HttpPollConfig = toml::from_str("url = \"http://x/\"").unwrap();
    assert_eq!(defaults, HttpPollConfig::new("http://x/"));
    let settings = defaults.validate().unwrap();
    assert_eq!(settings.interval, Duration::from_secs(60));
    assert_eq!(settings.jitter, Duration::ZERO);
}
