//! The admin API against a real listener and the Prometheus text of real counters.

use super::prometheus::escape_label;
use super::*;
use crate::metrics::Role;
use crate::topic::{SubscriptionSettings, TopicSettings};
use sluice_pipelines::{Batch, Event};

#[tokio::test]
async fn metrics_name_every_component_topic_and_subscription() {
    let metrics = Metrics::new();
    let source = metrics.register("nginx \"edge\"", Role::Source);
    source.events_out.add(3);
    source.counter("invalid_utf8").add(2);
    let sink = metrics.register("pg", Role::Sink);
    sink.errors.add(1);
    let topic = Topic::in_memory("raw", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("pg"));
    let producer = topic.producer();
    producer
        .send(Batch::new(vec![Event::default(), Event::default()]))
        .await;
    let mut topics = IndexMap::new();
    topics.insert("raw".to_owned(), topic);

    let text = prometheus_text(&metrics, &topics, 1.5);
    for line in [
        "# TYPE sluice_component_events_out_total counter",
        r#"sluice_component_events_out_total{component="nginx \"edge\"",role="source"} 3"#,
        r#"sluice_component_errors_total{component="pg",role="sink"} 1"#,
        r#"sluice_component_counter_total{component="nginx \"edge\"",role="source",counter="invalid_utf8"} 2"#,
        r#"sluice_topic_retained_events{topic="raw"} 2"#,
        r#"sluice_topic_end_offset{topic="raw"} 2"#,
        r#"sluice_topic_published_events_total{topic="raw"} 2"#,
        r#"sluice_topic_dropped_newest_total{topic="raw"} 0"#,
        r#"sluice_subscription_lag_events{topic="raw",subscription="pg"} 2"#,
        r#"sluice_subscription_acked_events_total{topic="raw",subscription="pg"} 0"#,
        "sluice_uptime_seconds 1.5",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    // Every sample belongs to a family declared just before it.
    let mut declared = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared.insert(rest.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(declared.contains(name), "undeclared {name}");
        }
    }

    let delivery = sub.next().await.unwrap();
    delivery.ack();
    let text = prometheus_text(&metrics, &topics, 2.0);
    assert!(
        text.contains(r#"sluice_subscription_lag_events{topic="raw",subscription="pg"} 0"#),
        "{text}"
    );
    drop(producer);
}

#[tokio::test]
async fn disk_topics_report_their_files_and_recovery_counters() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::on_disk(
        "archive",
        TopicSettings::default(),
        dir.path(),
        crate::topic::disk::DiskSettings::default(),
    )
    .unwrap();
    let producer = topic.producer();
    producer
        .send(Batch::new(vec![Event::default(), Event::default()]))
        .await;
    topic.flush().unwrap();
    let memory = Topic::in_memory("raw", TopicSettings::default());
    let mut topics = IndexMap::new();
    topics.insert("archive".to_owned(), topic);
    topics.insert("raw".to_owned(), memory);
    let text = prometheus_text(&Metrics::new(), &topics, 1.0);
    let disk_bytes = text
        .lines()
        .find_map(|line| line.strip_prefix(r#"sluice_topic_disk_bytes{topic="archive"} "#))
        .unwrap_or_else(|| panic!("no disk bytes:\n{text}"));
    assert!(disk_bytes.parse::<u64>().unwrap() > 0);
    for line in [
        r#"sluice_topic_disk_segments{topic="archive"} 1"#,
        r#"sluice_topic_disk_corrupt_records_total{topic="archive"} 0"#,
        r#"sluice_topic_disk_torn_tails_total{topic="archive"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    assert!(!text.contains(r#"sluice_topic_disk_bytes{topic="raw"}"#));
    drop(producer);
}

#[tokio::test]
async fn serves_health_topics_components_and_draining() {
    let metrics = Arc::new(Metrics::new());
    metrics.register("gen", Role::Source).events_out.add(5);
    let topic = Topic::in_memory("raw", TopicSettings::default());
    let _sub = topic.subscribe(SubscriptionSettings::new("out"));
    let mut topics = IndexMap::new();
    topics.insert("raw".to_owned(), topic);
    let (trigger, shutdown) = crate::shutdown::channel();
    let api = AdminApi::bind(([127, 0, 0, 1], 0).into()).unwrap();
    let base = format!("http://{}", api.local_addr().unwrap());
    let server = tokio::spawn(api.serve(metrics, topics, shutdown));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let health = get("/health").await.unwrap();
    assert_eq!(health.status(), 200);
    let body: Json = serde_json::from_slice(&health.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], "ok");

    let topics: Json =
        serde_json::from_slice(&get("/topics").await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(topics[0]["name"], "raw");
    assert_eq!(topics[0]["subscriptions"][0]["name"], "out");
    assert_eq!(topics[0]["max_events"], 20000);

    let components: Json =
        serde_json::from_slice(&get("/components").await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(components[0]["name"], "gen");
    assert_eq!(components[0]["role"], "source");
    assert_eq!(components[0]["events_out"], 5);

    let metrics = get("/metrics").await.unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = metrics.text().await.unwrap();
    assert!(text.contains(r#"sluice_component_events_out_total{component="gen",role="source"} 5"#));

    assert_eq!(get("/nope").await.unwrap().status(), 404);

    trigger.trigger();
    let draining = get("/health").await.unwrap();
    assert_eq!(draining.status(), 503);
    let body: Json = serde_json::from_slice(&draining.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], "draining");
    server.abort();
}

#[test]
fn tap_options_have_defaults_and_bounds() {
    assert_eq!(tap_options(None), Ok((10, Duration::from_secs(5))));
    assert_eq!(
        tap_options(Some("limit=3&timeout=250ms")),
        Ok((3, Duration::from_millis(250)))
    );
    for (query, expected) in [
        ("limit=0", "limit must be a number from 1 to 10000"),
        ("limit=many", "limit must be a number"),
        ("timeout=2h", "timeout must be a duration up to 60s"),
        ("timeout=", "timeout must be a duration"),
        ("follow=1", "unknown parameter \"follow\""),
    ] {
        let error = tap_options(Some(query)).unwrap_err();
        assert!(error.contains(expected), "{query}: {error}");
    }
}

#[tokio::test]
async fn tap_returns_the_next_events_of_a_topic() {
    let topic = Topic::in_memory("web.raw", TopicSettings::default());
    let producer = topic.producer();
    let mut topics = IndexMap::new();
    topics.insert("web.raw".to_owned(), topic);
    let (_trigger, shutdown) = crate::shutdown::channel();
    let api = AdminApi::bind(([127, 0, 0, 1], 0).into()).unwrap();
    let address = api.local_addr().unwrap().to_string();
    let server = tokio::spawn(api.serve(Arc::new(Metrics::new()), topics, shutdown));

    // Events published while the tap waits: it takes the first three.
    let publisher = tokio::spawn(async move {
        for round in 0..1000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut event = Event::default();
            event.insert("n", round as i64);
            producer.send(Batch::new(vec![event.clone(), event])).await;
        }
    });
    let lines = tap_remote(&address, "web.raw", 3, Duration::from_secs(5))
        .await
        .unwrap();
    let lines: Vec<Json> = String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["n"], lines[1]["n"]);
    assert_eq!(
        lines[2]["n"].as_i64(),
        lines[0]["n"].as_i64().map(|n| n + 1)
    );
    publisher.abort();
    let _ = publisher.await;

    // Nothing published: an empty answer after the timeout.
    let nothing = tap_remote(&address, "web.raw", 3, Duration::from_millis(100));
    assert_eq!(nothing.await.unwrap(), b"");
    let missing = tap_remote(&address, "nope", 3, Duration::from_millis(100)).await;
    assert_eq!(
        missing.unwrap_err(),
        "404 Not Found: no topic \"nope\"; the topics are: web.raw"
    );
    let unreachable = tap_remote("127.0.0.1:1", "web.raw", 1, Duration::from_millis(100)).await;
    assert!(
        unreachable
            .unwrap_err()
            .contains("cannot reach the admin API at 127.0.0.1:1")
    );
    server.abort();
}

#[tokio::test]
async fn read_returns_retained_events_from_an_offset_without_consuming_them() {
    let topic = Topic::in_memory("raw", TopicSettings::default());
    let producer = topic.producer();
    let sub = topic.subscribe(SubscriptionSettings::new("out"));
    for first in [0, 3, 6, 9] {
        let events = (first..first + 3)
            .map(|n| {
                let mut event = Event::default();
                event.insert("n", n);
                event
            })
            .collect();
        producer.send(Batch::new(events)).await;
    }
    // The oldest batch is acknowledged and trimmed: offsets 3.. are retained.
    sub.next().await.unwrap().ack();
    let mut topics = IndexMap::new();
    topics.insert("raw".to_owned(), topic.clone());
    let (_trigger, shutdown) = crate::shutdown::channel();
    let api = AdminApi::bind(([127, 0, 0, 1], 0).into()).unwrap();
    let base = format!("http://{}", api.local_addr().unwrap());
    let server = tokio::spawn(api.serve(Arc::new(Metrics::new()), topics, shutdown));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let read = |query: &str| {
        let request = client.get(format!("{base}/topics/raw/read?{query}")).send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            let next = response
                .headers()
                .get(NEXT_OFFSET_HEADER)
                .map(|value| value.to_str().unwrap().to_owned());
            let body = response.text().await.unwrap();
            let numbers: Vec<i64> = body
                .lines()
                .filter_map(|line| serde_json::from_str::<Json>(line).ok())
                .filter_map(|event| event["n"].as_i64())
                .collect();
            (status, numbers, next, body)
        }
    };

    let (status, numbers, next, _) = read("from=earliest&n=5").await;
    assert_eq!(status, 200);
    assert_eq!(numbers, [3, 4, 5, 6, 7]);
    assert_eq!(next.as_deref(), Some("8"));
    let (_, numbers, next, _) = read("from=7&n=100").await;
    assert_eq!(numbers, [7, 8, 9, 10, 11], "from inside a batch");
    assert_eq!(next.as_deref(), Some("12"));
    let (_, numbers, _, _) = read("from=1").await;
    assert_eq!(
        numbers,
        [3, 4, 5, 6, 7, 8, 9, 10, 11],
        "trimmed offsets read from the oldest"
    );
    let (_, numbers, next, _) = read("from=latest").await;
    assert!(numbers.is_empty());
    assert_eq!(next.as_deref(), Some("12"));
    let (status, _, _, body) = read("n=0").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("n must be a number from 1 to 10000"),
        "{body}"
    );
    let (status, _, _, body) = read("from=yesterday").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("from must be earliest, latest or an offset"),
        "{body}"
    );
    let missing = client
        .get(format!("{base}/topics/nope/read"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Reading consumed nothing: the subscription still gets the next batch.
    assert_eq!(topic.stats().subscriptions[0].lag_events, 9);
    assert_eq!(sub.next().await.unwrap().range().start.0, 3);
    let topics: Json = serde_json::from_slice(
        &client
            .get(format!("{base}/topics"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(topics[0]["disk"], Json::Null, "a memory topic");
    server.abort();
    drop(producer);
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let error = AdminApi::bind(address).err().unwrap().to_string();
    assert!(
        error.contains(&format!("cannot listen on {address} for the admin API")),
        "{error}"
    );
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}
