//! Tests of topics over disk storage: where new subscriptions start (`start_at`), resuming
//! after a restart, and what gaps (quarantined data) and retention do to subscriptions.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use sluice_pipelines::{Batch, Event, EventMeta, SourceId};

use super::tests::{config as small_segments, flip_record, segment_files};
use super::*;
use crate::topic::{
    Offset, StartAt, Subscription, SubscriptionSettings, Topic, TopicSettings, WhenFull,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A batch of `events` numbered events starting at `first`.
fn numbered(first: u64, events: u64) -> Batch {
    Batch::new(
        (first..first + events)
            .map(|n| {
                Event::from_raw(
                    Bytes::from(format!("event {n}")),
                    EventMeta {
                        source: SourceId(1),
                        origin: None,
                    },
                )
            })
            .collect(),
    )
}

/// A disk topic whose capacity is the disk size bound, as the config makes it.
fn open(dir: &Path, disk: DiskSettings) -> Topic {
    let max_bytes = disk.max_bytes;
    open_with_capacity(dir, disk, max_bytes)
}

fn open_with_capacity(dir: &Path, disk: DiskSettings, max_bytes: u64) -> Topic {
    let settings = TopicSettings {
        max_events: u64::MAX,
        max_bytes,
        when_full: WhenFull::Block,
    };
    Topic::on_disk("t", settings, dir, disk).unwrap()
}

fn disk_settings() -> DiskSettings {
    DiskSettings {
        log: small_segments(),
        ..DiskSettings::default()
    }
}

fn subscription(name: &str, start_at: StartAt) -> SubscriptionSettings {
    SubscriptionSettings {
        start_at,
        ..SubscriptionSettings::new(name)
    }
}

/// Publishes `batches` batches of 3 events numbered from `first / 3`, returning the next number.
async fn publish(topic: &Topic, first: u64, batches: u64) -> u64 {
    let producer = topic.producer();
    for n in 0..batches {
        producer.send(numbered(first + n * 3, 3)).await;
    }
    first + batches * 3
}

/// Takes everything the subscription has until the topic ends, acknowledging it; returns the
/// event numbers.
async fn drain(sub: &Subscription) -> Vec<u64> {
    let mut numbers = Vec::new();
    while let Some(delivery) = sub.next().await {
        for event in delivery.events() {
            let raw = std::str::from_utf8(event.raw().unwrap()).unwrap();
            numbers.push(raw.trim_start_matches("event ").parse().unwrap());
        }
        delivery.ack();
    }
    numbers
}

/// The first offset the subscription is handed.
async fn first_offset(sub: &Subscription) -> Offset {
    let delivery = sub.next().await.expect("a delivery");
    let start = delivery.range().start;
    delivery.nack();
    start
}

#[test]
fn start_at_picks_where_a_new_subscription_begins_and_a_committed_one_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let middle_time = runtime.block_on(async {
        let topic = open(dir.path(), disk_settings());
        let reader = topic.subscribe(SubscriptionSettings::new("reader"));
        let next = publish(&topic, 0, 5).await;
        // Times are taken when the writer writes, in milliseconds: make the second half
        // strictly later.
        topic.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let middle_time = chrono::Utc::now().timestamp_millis();
        tokio::time::sleep(Duration::from_millis(5)).await;
        publish(&topic, next, 5).await;
        // The reader acknowledges the first four batches: it commits offset 12.
        for _ in 0..4 {
            reader.next().await.unwrap().ack();
        }
        topic.flush().unwrap();
        middle_time
    });

    runtime.block_on(async {
        let topic = open(dir.path(), disk_settings());
        let earliest = topic.subscribe(subscription("earliest", StartAt::Earliest));
        let latest = topic.subscribe(subscription("latest", StartAt::Latest));
        let at_offset = topic.subscribe(subscription("offset", StartAt::Offset(Offset(21))));
        let at_time = topic.subscribe(subscription("time", StartAt::Time(middle_time)));
        let resumed = topic.subscribe(subscription("reader", StartAt::Earliest));
        assert_eq!(first_offset(&earliest).await, Offset(0));
        assert_eq!(first_offset(&at_offset).await, Offset(21));
        assert_eq!(first_offset(&at_time).await, Offset(15));
        assert_eq!(first_offset(&resumed).await, Offset(12), "committed wins");
        publish(&topic, 30, 1).await;
        assert_eq!(first_offset(&latest).await, Offset(30));
    });
}

#[test]
fn a_new_subscription_persists_its_start_so_a_restart_before_its_first_ack_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let topic = open(dir.path(), disk_settings());
        let _sink = topic.subscribe(SubscriptionSettings::new("sink"));
        publish(&topic, 0, 5).await;
        // Stopped before the sink acknowledged anything.
        topic.flush().unwrap();
    });
    runtime.block_on(async {
        let topic = open(dir.path(), disk_settings());
        // The default start is the end, but this subscription already started at 0.
        let sink = topic.subscribe(SubscriptionSettings::new("sink"));
        assert_eq!(first_offset(&sink).await, Offset(0));
    });
}

#[test]
fn a_quarantined_gap_is_skipped_and_counted_and_the_committed_offset_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let topic = open(dir.path(), disk_settings());
        let _sub = topic.subscribe(SubscriptionSettings::new("sink"));
        publish(&topic, 0, 40).await;
        topic.flush().unwrap();
    });
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3, "{segments:?}");
    // Damage the second record of the first (closed) segment: it and the rest of that
    // segment are quarantined when read, leaving a gap.
    flip_record(&segments[0], 1);

    runtime.block_on(async {
        let topic = open(dir.path(), disk_settings());
        let sub = topic.subscribe(SubscriptionSettings::new("sink"));
        drop(topic.producer());
        let numbers = drain(&sub).await;
        let stats = topic.stats();
        let lost = stats.subscriptions[0].counters.lost_events;
        assert!(lost >= 3, "at least the damaged batch: {lost}");
        assert_eq!(numbers.len() as u64 + lost, 120);
        assert_eq!(&numbers[..3], &[0, 1, 2], "the batch before the damage");
        assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(*numbers.last().unwrap(), 119);
        assert_eq!(stats.subscriptions[0].committed_offset, Offset(120));
        assert_eq!(stats.disk.unwrap().log.corrupt_records, 1);
    });
}

#[test]
fn age_retention_moves_a_lagging_subscription_past_deleted_segments() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let topic = open(dir.path(), disk_settings());
        let _lagging = topic.subscribe(SubscriptionSettings::new("lagging"));
        publish(&topic, 0, 40).await;
        topic.flush().unwrap();
    });
    let retained = DiskSettings {
        retention: Some(Duration::from_millis(1)),
        ..disk_settings()
    };
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let topic = open(dir.path(), retained);
        let lagging = topic.subscribe(SubscriptionSettings::new("lagging"));
        topic.maintain();
        drop(topic.producer());
        let numbers = drain(&lagging).await;
        let stats = topic.stats();
        let lost = stats.subscriptions[0].counters.lost_events;
        assert!(lost > 0, "closed segments are past the retention");
        assert_eq!(numbers.len() as u64 + lost, 120);
        assert_eq!(
            numbers.first(),
            Some(&lost),
            "it goes on after what was deleted"
        );
        assert_eq!(
            stats.disk.unwrap().segments,
            1,
            "only the active segment stays"
        );
    });
}

#[test]
fn size_retention_deletes_only_what_every_subscription_is_past() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let bounded = DiskSettings {
        max_bytes: 2048,
        ..disk_settings()
    };
    runtime.block_on(async {
        // Retention alone: the topic's own capacity does not hold the producer back here.
        let topic = open_with_capacity(dir.path(), bounded, u64::MAX);
        let slow = topic.subscribe(SubscriptionSettings::new("slow"));
        let fast = topic.subscribe(SubscriptionSettings::new("fast"));
        publish(&topic, 0, 40).await;
        topic.flush().unwrap();
        let segments_before = topic.stats().disk.unwrap().segments;
        assert!(segments_before >= 3, "{segments_before}");
        assert_eq!(drain(&fast).await.len(), 120);
        topic.maintain();
        assert_eq!(
            topic.stats().disk.unwrap().segments,
            segments_before,
            "the slow subscription still needs every segment"
        );
        assert_eq!(drain(&slow).await.len(), 120, "nothing lost");
        topic.maintain();
        let disk = topic.stats().disk.unwrap();
        assert!(disk.segments < segments_before);
        assert!(disk.disk_bytes <= 2048 + small_segments().segment_bytes);
    });
}

#[test]
fn a_disk_topic_over_its_size_holds_producers_back_until_subscriptions_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let topic = open(
            dir.path(),
            DiskSettings {
                max_bytes: 2048,
                ..disk_settings()
            },
        );
        let sub = topic.subscribe(SubscriptionSettings::new("sink"));
        let producer = topic.producer();
        let mut sent = 0;
        while producer.try_send(numbered(sent * 3, 3)).is_ok() {
            sent += 1;
            assert!(sent < 1000, "never full");
        }
        let delivery = sub.next().await.unwrap();
        delivery.ack();
        assert!(
            producer.try_send(numbered(sent * 3, 3)).is_ok(),
            "room again"
        );
    });
}

#[test]
fn a_corrupt_record_in_the_active_segment_found_while_producers_publish_is_skipped() {
    // Repairing the active segment makes the reader wait for the writer thread (to roll it)
    // while holding the topic's lock; the writer must never need that lock to report progress.
    let dir = tempfile::tempdir().unwrap();
    let settings = DiskSettings {
        log: LogConfig {
            segment_bytes: 1 << 20,
            ..small_segments()
        },
        ..DiskSettings::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let topic = open(dir.path(), settings);
        let sub = topic.subscribe(SubscriptionSettings::new("sink"));
        // The topic stays open (a producer exists) until the second half is published.
        let second_half = topic.producer();
        publish(&topic, 0, 20).await;
        topic.flush().unwrap();
        let segments = segment_files(dir.path());
        assert_eq!(segments.len(), 1, "one active segment");
        flip_record(&segments[0], 5);

        let producer = tokio::spawn(async move {
            for n in 0..300 {
                second_half.send(numbered(60 + n * 3, 3)).await;
            }
        });
        let numbers = tokio::time::timeout(Duration::from_secs(60), drain(&sub))
            .await
            .expect("no deadlock between the reader and the writer");
        producer.await.unwrap();
        let stats = topic.stats();
        let lost = stats.subscriptions[0].counters.lost_events;
        assert_eq!(stats.disk.unwrap().log.corrupt_records, 1);
        assert!(lost >= 3);
        assert_eq!(numbers.len() as u64 + lost, 960);
        assert_eq!(&numbers[..15], &(0..15).collect::<Vec<_>>()[..]);
        // Whatever the writer had put in the active segment before the read found the damage
        // is quarantined with it (possibly everything); what came after is all delivered.
        let after = &numbers[15..];
        assert_eq!(
            after,
            &(960 - after.len() as u64..960).collect::<Vec<_>>()[..]
        );
    });
}
