//! The `kafka` source against a real Kafka-protocol broker (tansu on a free port): offsets
//! committed only after the sluice topic acknowledged, the Kafka fields, dead letters, `start_at`
//! and resuming at the group's commits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use sluice_pipelines::{SourceId, Value};
use sluice_store_support::Tansu;
use tokio::task::JoinHandle;

use super::KafkaConfig;
use crate::metrics::{ComponentMetrics, Metrics, Role};
use crate::shutdown::{self, ShutdownTrigger};
use crate::sources::{Source, SourceContext, SourceError};
use crate::topic::{Delivery, Subscription, SubscriptionSettings, Topic, TopicSettings};

struct Running {
    sub: Subscription,
    dead_letters: Subscription,
    metrics: Arc<ComponentMetrics>,
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<(), SourceError>>,
    _topics: (Topic, Topic),
}

fn start(config: &str) -> Running {
    let config: KafkaConfig = toml::from_str(config).unwrap();
    let source = config.build().unwrap();
    let topic = Topic::in_memory("web", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("test"));
    let dead_letter_topic = Topic::in_memory("dead_letter", TopicSettings::default());
    let dead_letters = dead_letter_topic.subscribe(SubscriptionSettings::new("test"));
    let (trigger, shutdown) = shutdown::channel();
    let metrics = Metrics::new().register("kafka", Role::Source);
    let ctx = SourceContext {
        name: "kafka".into(),
        id: SourceId(3),
        output: topic.producer(),
        shutdown,
        data_dir: std::env::temp_dir(),
        metrics: metrics.clone(),
        dead_letter: Some(dead_letter_topic.producer()),
    };
    Running {
        task: tokio::spawn(Box::new(source).run(ctx)),
        sub,
        dead_letters,
        metrics,
        trigger,
        _topics: (topic, dead_letter_topic),
    }
}

impl Running {
    /// Deliveries until they hold `events` events (30 s at most).
    async fn receive(&self, events: usize) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        let mut count = 0;
        while count < events {
            let delivery = tokio::time::timeout(Duration::from_secs(30), self.sub.next())
                .await
                .expect("events in time")
                .expect("the topic is open");
            count += delivery.events().len();
            deliveries.push(delivery);
        }
        deliveries
    }

    async fn assigned(&self) {
        let assigned = self.metrics.counter("assigned_partitions");
        let deadline = Instant::now() + Duration::from_secs(30);
        while assigned.get() == 0 {
            assert!(Instant::now() < deadline, "no partition assigned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

async fn produce(brokers: &str, topic: &str, messages: impl IntoIterator<Item = (String, String)>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for (key, payload) in messages {
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

/// The group's committed offsets of `partitions` partitions of `topic`, summed (uncommitted
/// partitions count 0).
fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            KafkaOffset::Offset(offset) => offset,
            _ => 0,
        })
        .sum()
}

async fn wait_committed(brokers: &str, group: &str, topic: &str, partitions: i32, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = committed(brokers, group, topic, partitions);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "committed {now}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_commits_only_what_the_topic_acknowledged() {
    let broker = Tansu::start();
    let brokers = broker.address();
    broker.create_topic("clicks", 2);
    let mut messages: Vec<(String, String)> = (0..100)
        .map(|n| {
            (
                format!("visitor-{}", n % 10),
                format!(r#"{{"n":{n},"page":"/p/{}"}}"#, n % 7),
            )
        })
        .collect();
    messages.push(("visitor-0".into(), "{not json".into()));
    produce(&brokers, "clicks", messages).await;

    let running = start(&format!(
        r#"
        brokers = ["{brokers}"]
        topics = ["clicks"]
        group_id = "central"
        start_at = "earliest"
        decoding = "json"
        commit_interval = "100ms"
        "#
    ));
    let deliveries = running.receive(100).await;
    let events: Vec<_> = deliveries
        .iter()
        .flat_map(|delivery| delivery.events().to_vec())
        .collect();
    assert_eq!(events.len(), 100);
    for event in &events {
        let n = event.get("n").and_then(Value::as_int).unwrap();
        assert_eq!(
            event.get("kafka_key").and_then(Value::as_str),
            Some(format!("visitor-{}", n % 10).as_str())
        );
        assert_eq!(
            event.get("kafka_topic").and_then(Value::as_str),
            Some("clicks")
        );
        let partition = event
            .get("kafka_partition")
            .and_then(Value::as_int)
            .unwrap();
        assert!((0..2).contains(&partition));
        assert!(event.get("kafka_offset").and_then(Value::as_int).is_some());
        assert!(matches!(
            event.get("kafka_timestamp"),
            Some(Value::Timestamp(_))
        ));
    }
    let dead = tokio::time::timeout(Duration::from_secs(10), running.dead_letters.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.events().len(), 1);
    assert_eq!(
        dead.events()[0].raw().map(|raw| &raw[..]),
        Some(&b"{not json"[..])
    );
    dead.ack();
    assert_eq!(running.metrics.counter("invalid_events").get(), 1);

    // Held, not acknowledged: nothing may be committed, however long it waits.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(committed(&brokers, "central", "clicks", 2), 0);
    for delivery in deliveries {
        delivery.ack();
    }
    wait_committed(&brokers, "central", "clicks", 2, 101).await;
    assert!(running.metrics.counter("commits").get() > 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_starts_at_latest_then_resumes_at_the_groups_commits() {
    let broker = Tansu::start();
    let brokers = broker.address();
    broker.create_topic("views", 1);
    let payloads = |range: std::ops::Range<i64>| {
        range
            .map(|n| (format!("k{n}"), format!(r#"{{"n":{n}}}"#)))
            .collect::<Vec<_>>()
    };
    produce(&brokers, "views", payloads(0..10)).await;
    let config = |start_at: &str| {
        format!(
            r#"
            brokers = ["{brokers}"]
            topics = ["views"]
            group_id = "fresh"
            start_at = "{start_at}"
            commit_interval = "100ms"
            # A restarted member waits for the group to let its predecessor go.
            librdkafka_options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
            "#
        )
    };
    let running = start(&config("latest"));
    running.assigned().await;
    // The group's position is fixed once it fetched the end; give it that moment.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    produce(&brokers, "views", payloads(10..20)).await;
    let deliveries = running.receive(10).await;
    let numbers: Vec<i64> = deliveries
        .iter()
        .flat_map(|delivery| delivery.events().iter())
        .map(|event| event.get("n").and_then(Value::as_int).unwrap())
        .collect();
    assert_eq!(
        numbers,
        (10..20).collect::<Vec<_>>(),
        "the backlog is skipped"
    );
    for delivery in deliveries {
        delivery.ack();
    }
    wait_committed(&brokers, "fresh", "views", 1, 20).await;
    running.stop().await;

    // A group with commits resumes there, whatever start_at says.
    produce(&brokers, "views", payloads(20..25)).await;
    let running = start(&config("earliest"));
    let deliveries = running.receive(5).await;
    let numbers: Vec<i64> = deliveries
        .iter()
        .flat_map(|delivery| delivery.events().iter())
        .map(|event| event.get("n").and_then(Value::as_int).unwrap())
        .collect();
    assert_eq!(numbers, (20..25).collect::<Vec<_>>());
    for delivery in deliveries {
        delivery.ack();
    }
    running.stop().await;
}
