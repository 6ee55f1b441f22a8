//! The nats sink against a real `nats-server -js` on a free port: JetStream acknowledgements,
//! the stream created with the subjects derived from the template, templated subjects, core NATS,
//! and the server down at start and killed mid-stream (same store dir) with nothing lost.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use sluice_sink::driver::{DriverConfig, Outcome};
use sluice_sink::sinks::NatsConfig;
use sluice_sink::{SinkConfig, SinkContext};

use crate::requests;
use crate::support::{Nats, Run, fast_retry};

async fn sink(config: NatsConfig) -> Box<dyn sluice_sink::Sink> {
    SinkConfig::Nats(config)
        .build(&SinkContext::default())
        .await
        .unwrap()
}

/// `request_id` → how many times the stream holds it.
fn ids(messages: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for (_, payload) in messages {
        let event: serde_json::Value = serde_json::from_str(payload).unwrap();
        *seen
            .entry(event["request_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn jetstream_creates_the_stream_and_acks_once_stored_on_templated_subjects() {
    let nats = Nats::start();
    let config = NatsConfig::jetstream(nats.url(), "web.{status}", "WEB");
    let mut run = Run::start(sink(config).await, fast_retry(DriverConfig::default()));
    for chunk in 0..3 {
        run.send(requests(chunk * 100..chunk * 100 + 100)).await;
    }
    let outcomes = run.finish().await;
    assert_eq!(outcomes, vec![Outcome::Delivered; 3]);

    // Acknowledged means stored: every event is in the stream, once, on its status's subject.
    let messages = nats.stream_messages("WEB").await;
    assert_eq!(messages.len(), 300);
    let seen = ids(&messages);
    assert_eq!(seen.len(), 300);
    assert!(seen.values().all(|&n| n == 1));
    for (subject, payload) in &messages {
        let event: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(subject, &format!("web.{}", event["status"]));
        assert!(!payload.ends_with('\n'), "one JSON object per message");
    }
    let jetstream = async_nats::jetstream::new(nats.client().await);
    let mut stream = jetstream.get_stream("WEB").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.subjects, ["web.*"]);
}

#[tokio::test]
async fn broker_down_at_start_and_killed_mid_stream_loses_nothing() {
    let mut nats = Nats::start();
    nats.kill();
    let config = NatsConfig::jetstream(nats.url(), "web.{status}", "WEB");
    let mut sink = sink(config).await;
    // Down at start: the healthcheck says so, the sink is built all the same.
    let error = tokio::time::timeout(Duration::from_secs(10), sink.healthcheck())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        error.to_string().contains("not connected to NATS"),
        "{error}"
    );
    let mut run = Run::start(sink, fast_retry(DriverConfig::default()));
    let chunks = 40;
    for chunk in 0..chunks {
        if chunk == 5 {
            nats.restart();
        }
        if chunk == 25 {
            nats.kill();
        }
        if chunk == 30 {
            nats.restart();
        }
        run.send(requests(chunk * 250..chunk * 250 + 250)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcomes = run.finish().await;
    assert_eq!(outcomes, vec![Outcome::Delivered; chunks as usize]);
    let seen = ids(&nats.stream_messages("WEB").await);
    assert_eq!(seen.len(), (chunks * 250) as usize, "every event stored");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!("duplicates after the broker's kill: {duplicates}");
}

#[tokio::test]
async fn core_nats_publishes_and_acks_on_flush() {
    let nats = Nats::start();
    let client = nats.client().await;
    let mut subscriber = client.subscribe("web.>").await.unwrap();
    client.flush().await.unwrap();
    let mut config = NatsConfig::jetstream(nats.url(), "web.{status}.{bot}", "UNUSED");
    config.jetstream = None;
    let mut run = Run::start(sink(config).await, fast_retry(DriverConfig::default()));
    run.send(requests(0..50)).await;
    assert_eq!(run.finish().await, vec![Outcome::Delivered]);
    let mut received = Vec::new();
    while received.len() < 50 {
        let message = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
            .await
            .unwrap()
            .unwrap();
        received.push(message.subject.to_string());
    }
    assert_eq!(received[0], "web.200.true");
    assert_eq!(received[1], "web.300.false");
}
