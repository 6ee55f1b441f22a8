//! Criterion benchmarks of the topic queue: events per second between producers and
//! subscriptions, with acknowledgements, on a two-thread runtime.
//!
//! Run with `cargo bench --bench topic`. Each iteration moves `EVENTS` small events (a 40-byte raw
//! line each, in batches of `BATCH`) from one producer to every subscription worker, which
//! acknowledges each batch.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::topic::{SubscriptionSettings, Topic, TopicSettings};
use sluice_pipelines::{Batch, Event, EventMeta};

const EVENTS: usize = 1_000_000;
const BATCH: usize = 1024;

fn template() -> Vec<Event> {
    let line = Bytes::from_static(b"127.0.0.1 GET /index.html 200 1234 0.042");
    (0..BATCH)
        .map(|i| {
            Event::from_raw(
                line.clone(),
                EventMeta {
                    origin: Some(i as u64),
                    ..EventMeta::default()
                },
            )
        })
        .collect()
}

/// Moves `EVENTS` events through a topic with `subscriptions` subscriptions of `workers` workers.
async fn move_events(subscriptions: usize, workers: usize, settings: TopicSettings) -> u64 {
    let topic = Topic::in_memory("bench", settings);
    let mut readers = Vec::new();
    for s in 0..subscriptions {
        let sub = topic.subscribe(SubscriptionSettings::new(format!("s{s}")));
        for _ in 0..workers {
            let sub = sub.clone();
            readers.push(tokio::spawn(async move {
                let mut seen = 0u64;
                while let Some(delivery) = sub.next().await {
                    seen += black_box(delivery.events().len()) as u64;
                    delivery.ack();
                }
                seen
            }));
        }
    }
    let producer = topic.producer();
    let template = template();
    tokio::spawn(async move {
        for _ in 0..EVENTS / BATCH {
            producer.send(Batch::new(template.clone())).await;
        }
    });
    let mut total = 0;
    for reader in readers {
        total += reader.await.unwrap_or(0);
    }
    total
}

fn bench_topic(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let moved = (EVENTS / BATCH * BATCH) as u64;
    let mut group = c.benchmark_group("topic");
    group.sample_size(20);
    group.throughput(Throughput::Elements(moved));
    group.bench_function("1_producer_1_subscriber", |b| {
        b.iter(|| runtime.block_on(move_events(1, 1, TopicSettings::default())))
    });
    group.bench_function("1_producer_2_subscriptions", |b| {
        b.iter(|| runtime.block_on(move_events(2, 1, TopicSettings::default())))
    });
    group.bench_function("1_producer_4_competing_workers", |b| {
        b.iter(|| runtime.block_on(move_events(1, 4, TopicSettings::default())))
    });
    let small = TopicSettings {
        max_events: 8 * BATCH as u64,
        ..TopicSettings::default()
    };
    group.bench_function("1_producer_1_subscriber_backpressure", |b| {
        b.iter(|| runtime.block_on(move_events(1, 1, small.clone())))
    });
    group.finish();
}

criterion_group!(benches, bench_topic);
criterion_main!(benches);
