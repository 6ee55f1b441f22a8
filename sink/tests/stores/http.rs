//! The http sink against a real local axum server that answers 500, 429 with Retry-After, 400
//! and slowly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use sluice_sink::Sink;
use sluice_sink::SinkError;
use sluice_sink::driver::{DriverConfig, DriverError, Outcome};
use sluice_sink::encoding::{Compression, Encoding};
use sluice_sink::http::Auth;
use sluice_sink::sinks::HttpConfig;

use crate::requests;
use crate::support::{Run, fast_retry};

#[derive(Default)]
struct Seen {
    /// (route, headers, body) of every request.
    requests: Vec<(String, HeaderMap, Vec<u8>)>,
}

type Shared = Arc<Mutex<Seen>>;

async fn handle(
    State(seen): State<Shared>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let attempt = {
        let mut seen = seen.lock().unwrap();
        seen.requests.push((route.clone(), headers, body.to_vec()));
        seen.requests.iter().filter(|(r, _, _)| *r == route).count()
    };
    match (route.as_str(), attempt) {
        ("ok", _) => StatusCode::OK.into_response(),
        ("flaky", 1 | 2) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "database is warming up").into_response()
        }
        ("throttle", 1) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        ("bad", _) => (
            StatusCode::BAD_REQUEST,
            format!("invalid payload: {}", "x".repeat(1000)),
        )
            .into_response(),
        ("gone", _) => (StatusCode::NOT_FOUND, "no such endpoint").into_response(),
        ("slow", 1) => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::OK.into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

/// 401 unless the bearer token is `right`, for any method.
async fn locked(headers: HeaderMap) -> StatusCode {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some("Bearer right") => StatusCode::NO_CONTENT,
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn serve() -> (String, Shared) {
    let seen = Shared::default();
    let app = Router::new()
        .route("/locked", any(locked))
        .route("/{route}", post(handle))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn bodies(seen: &Shared, route: &str) -> Vec<Vec<u8>> {
    seen.lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(r, _, _)| r == route)
        .map(|(_, _, b)| b.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sends_encoded_gzipped_authenticated_batches() {
    let (base, seen) = serve().await;
    let mut config = HttpConfig::new(format!("{base}/ok"));
    config.compression = Compression::Gzip;
    config.encoding = Encoding::JsonArray.into();
    config.auth = Some(Auth::Bearer {
        token: "s3cret".into(),
    });
    config.headers.insert("X-Source".into(), "sluice".into());
    let mut sink = config.build().unwrap();
    sink.write(&requests(0..3)).await.unwrap();
    let seen_now = seen.lock().unwrap();
    let (_, headers, body) = &seen_now.requests[0];
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(headers["x-source"], "sluice");
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["content-type"], "application/json");
    let mut text = String::new();
    let mut decoder = sluice_sink::gunzip::CappedGunzip::new(&body[..], u64::MAX);
    std::io::Read::read_to_string(&mut decoder, &mut text).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 3);
    assert_eq!(parsed[2]["request_id"], "req-00000002");
    assert_eq!(parsed[0]["timestamp"], "2024-05-01T12:00:00.250Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_codes_map_to_retries_and_rejections() {
    let (base, seen) = serve().await;
    // 500 twice, then accepted: retried.
    let sink = HttpConfig::new(format!("{base}/flaky")).build().unwrap();
    let mut run = Run::start(Box::new(sink), fast_retry(DriverConfig::default()));
    run.send(requests(0..5)).await;
    assert_eq!(run.finish().await, [Outcome::Delivered]);
    assert_eq!(bodies(&seen, "flaky").len(), 3);

    // 429 with Retry-After: 1 is honoured (the driver's own backoff would be 50 ms).
    let sink = HttpConfig::new(format!("{base}/throttle")).build().unwrap();
    let started = Instant::now();
    let mut run = Run::start(Box::new(sink), fast_retry(DriverConfig::default()));
    run.send(requests(0..5)).await;
    assert_eq!(run.finish().await, [Outcome::Delivered]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(bodies(&seen, "throttle").len(), 2);

    // 400: permanent, never retried, with the start of the body.
    let sink = HttpConfig::new(format!("{base}/bad")).build().unwrap();
    let mut run = Run::start(Box::new(sink), fast_retry(DriverConfig::default()));
    run.send(requests(0..5)).await;
    let outcomes = run.finish().await;
    let Outcome::Rejected { rejections } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    let message = rejections[0].error.to_string();
    assert!(
        message.starts_with("400 Bad Request: invalid payload: xxx"),
        "{message}"
    );
    assert!(
        message.len() < 600,
        "body cut to 500 bytes: {}",
        message.len()
    );
    // 400 says the data is bad: the request is split until each event stands alone (this
    // endpoint rejects everything, so every event is rejected, after 2·5 − 1 requests).
    let rejected: usize = rejections.iter().map(|r| r.events.len()).sum();
    assert_eq!(rejected, 5);
    assert_eq!(bodies(&seen, "bad").len(), 9);

    // 404 says the endpoint is wrong: refused, never split; the events are held (not sent to
    // the dead-letter topic) until the input ends, then the driver stops with what to check.
    let sink = HttpConfig::new(format!("{base}/gone")).build().unwrap();
    let mut run = Run::start(Box::new(sink), fast_retry(DriverConfig::default()));
    run.send(requests(0..5)).await;
    let (outcomes, result) = run.stop().await;
    assert!(
        outcomes.is_empty(),
        "held, never acknowledged: {outcomes:?}"
    );
    let Err(DriverError::Refused { message }) = result else {
        panic!("{result:?}")
    };
    assert!(
        message.contains("404 Not Found: no such endpoint; check `url`"),
        "{message}"
    );
    let attempts = bodies(&seen, "gone").len();
    assert!((3..=4).contains(&attempts), "{attempts} attempts");

    // Slower than the request timeout: a transient timeout, retried.
    let mut config = HttpConfig::new(format!("{base}/slow"));
    config.request_timeout = sluice_sink::units::HumanDuration(Duration::from_millis(500));
    let mut sink = config.build().unwrap();
    let error = sink.write(&requests(0..1)).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    sink.write(&requests(0..1)).await.unwrap();

    // Nothing listening: unreachable (retried within a second), and so says the healthcheck.
    let port = crate::support::free_port();
    let mut sink = HttpConfig::new(format!("http://127.0.0.1:{port}/x"))
        .build()
        .unwrap();
    let error = sink.write(&requests(0..1)).await.unwrap_err();
    assert!(matches!(error, SinkError::Unreachable(_)), "{error:?}");
    let error = sink.healthcheck().await.unwrap_err();
    assert!(matches!(error, SinkError::Unreachable(_)), "{error:?}");
}

/// Issue 10, item 4: the healthcheck (a HEAD, no data) reports an endpoint that does not exist
/// (404) or refuses the credentials (401, 403) as a refusal naming what to check; an endpoint
/// that only takes POSTs (405 to HEAD) passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_healthcheck_names_wrong_uris_and_credentials() {
    let (base, _seen) = serve().await;
    HttpConfig::new(format!("{base}/ok"))
        .build()
        .unwrap()
        .healthcheck()
        .await
        .unwrap();
    let error = HttpConfig::new(format!("{base}/no/such/endpoint"))
        .build()
        .unwrap()
        .healthcheck()
        .await
        .unwrap_err();
    assert!(matches!(error, SinkError::Refused(_)), "{error:?}");
    assert!(
        error.message().starts_with("404 Not Found") && error.message().ends_with("check `url`"),
        "{error}"
    );
    let locked = |token: &str| {
        let mut config = HttpConfig::new(format!("{base}/locked"));
        config.auth = Some(Auth::Bearer {
            token: token.into(),
        });
        config.build().unwrap()
    };
    let error = locked("wrong").healthcheck().await.unwrap_err();
    assert!(matches!(error, SinkError::Refused(_)), "{error:?}");
    assert!(
        error.message().starts_with("401 Unauthorized")
            && error.message().contains("check `auth` and `headers`"),
        "{error}"
    );
    locked("right").healthcheck().await.unwrap();
}
