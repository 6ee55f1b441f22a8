//! The kafka sink against a real Kafka-protocol broker (tansu, started on a free port): delivery
//! reports as acknowledgement, keys to partitions, headers, rejected events, and a broker that is
//! down at start or killed mid-stream.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use sluice_pipelines::{Event, Value};
use sluice_sink::driver::{DriverConfig, Outcome};
use sluice_sink::sinks::KafkaConfig;
use sluice_sink::{Sink, SinkContext, SinkError};

use crate::requests;
use crate::support::{Run, Tansu, fast_retry, free_port};

/// One message read back.
#[derive(Debug)]
struct Read {
    partition: i32,
    key: Option<String>,
    payload: serde_json::Value,
    headers: BTreeMap<String, String>,
}

/// Reads `partitions` partitions of `topic` from the beginning, without a consumer group, until
/// messages with `expected` distinct request ids came (or 30 s passed): retried requests may
/// have sent some twice.
fn read_topic(brokers: &str, topic: &str, partitions: i32, expected: usize) -> Vec<Read> {
    read_topic_for(
        brokers,
        topic,
        partitions,
        expected,
        Duration::from_secs(30),
    )
}

/// As [`read_topic`], waiting at most `wait`.
fn read_topic_for(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    wait: Duration,
) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    // A topic the producer's request created has the broker's default partition count.
    let partitions = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()
        .and_then(|metadata| {
            metadata
                .topics()
                .first()
                .map(|found| found.partitions().len() as i32)
        })
        .unwrap_or(partitions)
        .max(partitions);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut read = Vec::new();
    let deadline = Instant::now() + wait;
    let mut distinct = BTreeSet::new();
    while distinct.len() < expected && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(message) = message else {
            continue;
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        let value = String::from_utf8_lossy(header.value.unwrap_or_default());
                        (header.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let payload: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default()).unwrap();
        distinct.insert(
            payload["request_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        read.push(Read {
            partition: message.partition(),
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            payload,
            headers,
        });
    }
    read
}

fn sink_config(brokers: &str, extra: serde_json::Value) -> KafkaConfig {
    let mut value = json!({"brokers": [brokers], "topic": "requests"});
    for (key, item) in extra.as_object().unwrap() {
        value[key] = item.clone();
    }
    let config: KafkaConfig = serde_json::from_value(value).unwrap();
    config.validate().unwrap();
    config
}

fn sink(config: &KafkaConfig) -> Box<dyn Sink> {
    config
        .build(&SinkContext {
            name: "kafka".into(),
            ..SinkContext::default()
        })
        .unwrap()
}

fn request_ids(read: &[Read]) -> BTreeSet<String> {
    read.iter()
        .map(|read| read.payload["request_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_delivers_keyed_messages_with_headers_and_acks_after_the_reports() {
    let broker = Tansu::start();
    broker.create_topic("web-view", 3);
    broker.create_topic("web-click", 3);
    let config = sink_config(
        &broker.address(),
        json!({
            "topic": "web-{event}",
            "key_field": "visitor_id",
            "headers": {"x-path": "path", "x-status": "status"},
            "compression": "lz4",
            "librdkafka_options": {"linger.ms": "2"},
        }),
    );
    let mut healthy = sink(&config);
    healthy.healthcheck().await.unwrap();

    let mut run = Run::start(sink(&config), fast_retry(DriverConfig::default()));
    for chunk in 0..4 {
        let mut batch = requests(chunk * 250..chunk * 250 + 250);
        for event in &mut batch {
            let n = event.get("bytes").unwrap().as_int().unwrap() / 1000;
            event.insert("event", if n % 2 == 0 { "view" } else { "click" });
            event.insert("visitor_id", format!("visitor-{}", n % 10));
        }
        run.send(batch).await;
    }
    let outcomes = run.finish().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );

    let views = read_topic(&broker.address(), "web-view", 3, 500);
    let clicks = read_topic(&broker.address(), "web-click", 3, 500);
    // Nothing failed, so nothing was sent twice.
    assert_eq!((views.len(), clicks.len()), (500, 500));
    for (topic, read) in [("view", &views), ("click", &clicks)] {
        let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
        let mut last_of: BTreeMap<String, i64> = BTreeMap::new();
        for message in read.iter() {
            assert_eq!(message.payload["event"], topic);
            let key = message.key.clone().expect("a key");
            assert_eq!(message.payload["visitor_id"], key.as_str());
            // One visitor, one partition, in order.
            let partition = *partition_of.entry(key.clone()).or_insert(message.partition);
            assert_eq!(partition, message.partition, "{key} moved partitions");
            let n = message.payload["bytes"].as_i64().unwrap();
            assert!(
                last_of.get(&key).is_none_or(|last| *last < n),
                "{key} out of order"
            );
            last_of.insert(key, n);
            assert_eq!(
                message.headers.get("x-path").map(String::as_str),
                message.payload["path"].as_str()
            );
            assert_eq!(
                message.headers["x-status"],
                message.payload["status"].to_string()
            );
        }
        let used: BTreeSet<i32> = partition_of.values().copied().collect();
        assert!(
            used.len() > 1,
            "ten keys spread over the partitions: {used:?}"
        );
    }
    assert_eq!(request_ids(&views).len() + request_ids(&clicks).len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_rejects_only_the_events_it_cannot_send() {
    let broker = Tansu::start();
    broker.create_topic("web-view", 1);
    let config = sink_config(
        &broker.address(),
        json!({
            "topic": "web-{event}",
            "librdkafka_options": {"message.max.bytes": "2000"},
        }),
    );
    let mut run = Run::start(sink(&config), fast_retry(DriverConfig::default()));
    let mut batch = requests(0..20);
    for event in &mut batch {
        event.insert("event", "view");
    }
    batch[3].remove("event");
    batch[7].insert("padding", "x".repeat(5000));
    run.send(batch).await;
    let outcomes = run.finish().await;
    let Outcome::Rejected { rejections } = &outcomes[0] else {
        panic!("expected rejections: {outcomes:?}");
    };
    let rejected: Vec<usize> = rejections
        .iter()
        .flat_map(|rejection| rejection.events.clone())
        .collect();
    assert_eq!(rejected, [3, 7], "{rejections:?}");
    assert!(
        rejections[0].error.message().contains("`event` is missing"),
        "{rejections:?}"
    );
    // The oversized message fails when handed to librdkafka, after the ones before it in its
    // request: those are sent again when the driver splits the request (at least once).
    let read = read_topic(&broker.address(), "web-view", 1, 18);
    let expected: BTreeSet<String> = (0..20)
        .filter(|n| ![3, 7].contains(n))
        .map(|n| format!("req-{n:08}"))
        .collect();
    assert_eq!(request_ids(&read), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_down_at_start_then_up_delivers_everything() {
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let config = sink_config(&brokers, json!({"delivery_timeout": "1s"}));
    let error = sink(&config).healthcheck().await.unwrap_err();
    assert!(matches!(error, SinkError::Unreachable(_)), "{error:?}");

    let mut run = Run::start(sink(&config), fast_retry(DriverConfig::default()));
    for chunk in 0..4 {
        run.send(requests(chunk * 100..chunk * 100 + 100)).await;
    }
    // Deliveries time out and are retried meanwhile: nothing is acknowledged.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let broker = Tansu::on_port(port);
    broker.create_topic("requests", 1);
    let outcomes = run.finish().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let read = read_topic(&brokers, "requests", 1, 400);
    assert_eq!(request_ids(&read).len(), 400, "every event arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_killed_mid_stream_loses_nothing_unconfirmed() {
    let mut broker = Tansu::start();
    broker.create_topic("requests", 1);
    let config = sink_config(&broker.address(), json!({"delivery_timeout": "1s"}));
    let mut run = Run::start(sink(&config), fast_retry(DriverConfig::default()));
    run.send(requests(0..300)).await;
    // The first part confirmed and read before the broker dies.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let read = read_topic(&broker.address(), "requests", 1, 300);
        if read.len() >= 300 || Instant::now() > deadline {
            break read;
        }
    };
    assert_eq!(request_ids(&before).len(), 300);

    broker.kill();
    run.send(requests(300..600)).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // tansu keeps its log in memory: the restarted broker is empty, so what sluice had not had
    // confirmed must arrive there, all of it.
    broker.restart();
    broker.create_topic("requests", 1);
    let outcomes = run.finish().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let after = read_topic(&broker.address(), "requests", 1, 300);
    let expected: BTreeSet<String> = requests(300..600)
        .iter()
        .map(|event: &Event| match event.get("request_id") {
            Some(Value::String(id)) => id.as_str().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    let arrived = request_ids(&after);
    assert!(
        expected.is_subset(&arrived),
        "lost: {:?}",
        expected.difference(&arrived).collect::<Vec<_>>()
    );
}
