//! Tests of the topic queue: the async handles end to end, and a model-based property test of the
//! state machine under random publish / poll / ack / nack / time-out / crash sequences.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use sluice_pipelines::{Batch, Event, EventMeta};
use tokio::time::Instant;

use super::state::{DeliveryTicket, Poll, PublishOutcome, TopicState};
use super::*;

/// A batch of `n` events whose raw lines are the numbers `first..first + n`.
fn numbered(first: u64, n: u64) -> Batch {
    Batch::new(
        (first..first + n)
            .map(|i| Event::from_raw(Bytes::from(i.to_string()), EventMeta::default()))
            .collect(),
    )
}

fn numbers(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|event| {
            std::str::from_utf8(event.raw().expect("raw line"))
                .expect("utf8")
                .parse()
                .expect("number")
        })
        .collect()
}

fn settings(max_events: u64, max_bytes: u64, when_full: WhenFull) -> TopicSettings {
    TopicSettings {
        max_events,
        max_bytes,
        when_full,
    }
}

async fn drain(sub: &Subscription) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Some(delivery) = sub.next().await {
        seen.extend(numbers(delivery.events()));
        delivery.ack();
    }
    seen
}

#[tokio::test]
async fn every_subscription_receives_every_event() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let archive = topic.subscribe(SubscriptionSettings::new("archive"));
    let clickhouse = topic.subscribe(SubscriptionSettings::new("clickhouse"));
    let producer = topic.producer();
    let n = 10_000u64;
    let send = tokio::spawn(async move {
        for first in (0..n).step_by(100) {
            producer.send(numbered(first, 100)).await;
        }
    });
    let (a, b) = tokio::join!(drain(&archive), drain(&clickhouse));
    send.await.unwrap();
    let expected: Vec<u64> = (0..n).collect();
    assert_eq!(a, expected);
    assert_eq!(b, expected);
    let stats = topic.stats();
    assert_eq!(stats.counters.published_events, n);
    assert_eq!(stats.retained_events, 0, "acknowledged batches are trimmed");
    assert_eq!(stats.retained_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_one_subscription_split_events_disjointly() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("pipeline"));
    let producer = topic.producer();
    let n = 5_000u64;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let sub = sub.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(delivery) = sub.next().await {
                    seen.extend(numbers(delivery.events()));
                    // Hold the batch a moment, as real work would: the others take the next ones.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    delivery.ack();
                }
                seen
            })
        })
        .collect();
    for first in (0..n).step_by(50) {
        producer.send(numbered(first, 50)).await;
    }
    drop(producer);
    let mut all = Vec::new();
    let mut busy_workers = 0;
    for worker in workers {
        let got = worker.await.unwrap();
        if !got.is_empty() {
            busy_workers += 1;
        }
        all.extend(got);
    }
    assert!(busy_workers >= 2, "work should spread over workers");
    let total = all.len();
    let distinct: BTreeSet<u64> = all.into_iter().collect();
    assert_eq!(total as u64, n, "each event exactly once in total");
    assert_eq!(distinct, (0..n).collect());
}

#[tokio::test]
async fn dropped_delivery_is_redelivered() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("s"));
    let producer = topic.producer();
    producer.send(numbered(0, 3)).await;
    producer.send(numbered(3, 3)).await;
    drop(producer);

    let first = sub.next().await.unwrap();
    assert_eq!(numbers(first.events()), [0, 1, 2]);
    drop(first); // a worker failing mid-batch
    let again = sub.next().await.unwrap();
    assert_eq!(
        numbers(again.events()),
        [0, 1, 2],
        "the oldest batch comes back first"
    );
    again.ack();
    assert_eq!(drain(&sub).await, [3, 4, 5]);
    let stats = topic.stats();
    assert_eq!(stats.subscriptions[0].counters.redelivered_batches, 1);
    assert_eq!(stats.subscriptions[0].counters.acked_events, 6);
}

#[tokio::test(start_paused = true)]
async fn unacknowledged_delivery_is_redelivered_after_the_timeout() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let mut settings = SubscriptionSettings::new("s");
    settings.ack_timeout = Some(Duration::from_secs(30));
    let sub = topic.subscribe(settings);
    let producer = topic.producer();
    producer.send(numbered(0, 2)).await;

    let stuck = sub.next().await.unwrap();
    let started = Instant::now();
    let second = sub.next().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(numbers(second.events()), [0, 1]);
    // The stuck worker's late acknowledgement is ignored; the redelivery's counts.
    stuck.ack();
    assert_eq!(topic.stats().subscriptions[0].committed_offset, Offset(0));
    second.ack();
    assert_eq!(topic.stats().subscriptions[0].committed_offset, Offset(2));
}

#[tokio::test]
async fn out_of_order_acks_commit_only_the_contiguous_prefix() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("s"));
    let producer = topic.producer();
    for first in [0, 10, 20] {
        producer.send(numbered(first, 10)).await;
    }
    let safe = producer.safe_offset();
    let a = sub.next().await.unwrap();
    let b = sub.next().await.unwrap();
    let c = sub.next().await.unwrap();
    c.ack();
    assert_eq!(*safe.borrow(), Offset(0));
    b.ack();
    assert_eq!(*safe.borrow(), Offset(0));
    assert_eq!(topic.stats().retained_events, 30);
    a.ack();
    assert_eq!(*safe.borrow(), Offset(30));
    assert_eq!(topic.stats().retained_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_keeps_memory_within_capacity_while_a_slow_consumer_drains() {
    let max_bytes = 20_000;
    let topic = Topic::in_memory("t", settings(1_000_000, max_bytes, WhenFull::Block));
    let sub = topic.subscribe(SubscriptionSettings::new("slow"));
    let producer = topic.producer();
    let n = 5_000u64;
    let watcher_topic = topic.clone();
    let consumer = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut peak = 0;
        while let Some(delivery) = sub.next().await {
            peak = peak.max(watcher_topic.stats().retained_bytes);
            tokio::time::sleep(Duration::from_micros(200)).await;
            seen.extend(numbers(delivery.events()));
            delivery.ack();
        }
        (seen, peak)
    });
    let mut blocked_sends = 0;
    for first in (0..n).step_by(20) {
        let batch = numbered(first, 20);
        let batch = match producer.try_send(batch) {
            Ok(_) => continue,
            Err(batch) => batch,
        };
        blocked_sends += 1;
        producer.send(batch).await;
        assert!(topic.stats().retained_bytes <= max_bytes);
    }
    drop(producer);
    let (seen, peak) = consumer.await.unwrap();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "nothing lost under block");
    assert!(blocked_sends > 0, "the producer must have been held back");
    assert!(peak <= max_bytes, "peak {peak} over capacity {max_bytes}");
    assert_eq!(topic.stats().counters.dropped_newest, 0);
}

#[tokio::test]
async fn drop_newest_drops_and_counts_incoming_batches() {
    let topic = Topic::in_memory("t", settings(10, u64::MAX, WhenFull::DropNewest));
    let sub = topic.subscribe(SubscriptionSettings::new("s"));
    let producer = topic.producer();
    assert!(matches!(
        producer.send(numbered(0, 6)).await,
        Published::Stored(_)
    ));
    assert_eq!(producer.send(numbered(6, 6)).await, Published::Dropped);
    assert!(matches!(
        producer.send(numbered(12, 4)).await,
        Published::Stored(_)
    ));
    drop(producer);
    assert_eq!(drain(&sub).await, [0, 1, 2, 3, 4, 5, 12, 13, 14, 15]);
    assert_eq!(topic.stats().counters.dropped_newest, 6);
}

#[tokio::test]
async fn drop_oldest_discards_and_counts_retained_batches() {
    let topic = Topic::in_memory("t", settings(10, u64::MAX, WhenFull::DropOldest));
    let sub = topic.subscribe(SubscriptionSettings::new("s"));
    let producer = topic.producer();
    producer.send(numbered(0, 4)).await;
    producer.send(numbered(4, 4)).await;
    producer.send(numbered(8, 4)).await; // evicts 0..4
    producer.send(numbered(12, 4)).await; // evicts 4..8
    drop(producer);
    assert_eq!(drain(&sub).await, [8, 9, 10, 11, 12, 13, 14, 15]);
    let stats = topic.stats();
    assert_eq!(stats.counters.dropped_oldest, 8);
    assert_eq!(
        stats.subscriptions[0].counters.lost_events, 8,
        "counted per subscription"
    );
    assert_eq!(stats.counters.published_events, 16);
}

#[tokio::test]
async fn a_dead_non_blocking_subscriber_does_not_stall_the_others() {
    let topic = Topic::in_memory("t", settings(100, u64::MAX, WhenFull::Block));
    let live = topic.subscribe(SubscriptionSettings::new("live"));
    let mut dead_settings = SubscriptionSettings::new("dead");
    dead_settings.blocking = false;
    let dead = topic.subscribe(dead_settings);
    let producer = topic.producer();
    let n = 1_000u64;
    let reader = tokio::spawn(async move { drain(&live).await });
    for first in (0..n).step_by(10) {
        // Would wait forever if the dead subscriber held the topic.
        tokio::time::timeout(Duration::from_secs(5), producer.send(numbered(first, 10)))
            .await
            .expect("producer must not block on a non-blocking subscriber");
    }
    drop(producer);
    assert_eq!(reader.await.unwrap(), (0..n).collect::<Vec<_>>());
    let stats = topic.stats();
    assert!(stats.retained_events <= 100);
    let dead_stats = &stats.subscriptions[1];
    // It never read: it keeps only the newest (up to capacity) and lost the rest.
    assert_eq!(dead_stats.counters.lost_events + stats.retained_events, n);
    assert_eq!(stats.subscriptions[0].counters.lost_events, 0);
    assert_eq!(stats.counters.dropped_oldest, 0);
    // What it still has is the newest events, in order.
    let kept = drain(&dead).await;
    assert_eq!(kept, ((n - kept.len() as u64)..n).collect::<Vec<_>>());
}

#[tokio::test]
async fn safe_offset_follows_blocking_subscriptions_only() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let blocking = topic.subscribe(SubscriptionSettings::new("b"));
    let mut lax = SubscriptionSettings::new("lax");
    lax.blocking = false;
    let _lax = topic.subscribe(lax);
    let producer = topic.producer();
    let safe = producer.safe_offset();
    producer.send(numbered(0, 5)).await;
    assert_eq!(*safe.borrow(), Offset(0));
    blocking.next().await.unwrap().ack();
    assert_eq!(
        *safe.borrow(),
        Offset(5),
        "the non-blocking subscription does not hold it"
    );
}

#[tokio::test]
async fn a_topic_without_subscriptions_keeps_its_newest_events() {
    let topic = Topic::in_memory("dead_letter", settings(10, u64::MAX, WhenFull::Block));
    let producer = topic.producer();
    for first in (0..50).step_by(5) {
        tokio::time::timeout(Duration::from_secs(1), producer.send(numbered(first, 5)))
            .await
            .expect("never blocks without subscribers");
    }
    let stats = topic.stats();
    assert_eq!(stats.retained_events, 10);
    assert_eq!(stats.counters.evicted_unread, 40);
    assert_eq!(*producer.safe_offset().borrow(), Offset(50));
}

#[tokio::test]
async fn an_oversized_batch_is_accepted_into_an_empty_topic() {
    let topic = Topic::in_memory("t", settings(5, 100, WhenFull::Block));
    let sub = topic.subscribe(SubscriptionSettings::new("s"));
    let producer = topic.producer();
    tokio::time::timeout(Duration::from_secs(1), producer.send(numbered(0, 50)))
        .await
        .expect("an empty topic takes any batch");
    assert!(
        producer.try_send(numbered(50, 1)).is_err(),
        "then it is full"
    );
    sub.next().await.unwrap().ack();
    assert!(producer.try_send(numbered(50, 1)).is_ok());
}

#[tokio::test(start_paused = true)]
async fn send_timeout_gives_the_batch_back() {
    let topic = Topic::in_memory("t", settings(5, u64::MAX, WhenFull::Block));
    let _sub = topic.subscribe(SubscriptionSettings::new("s"));
    let producer = topic.producer();
    producer.send(numbered(0, 5)).await;
    let error = producer
        .send_timeout(numbered(5, 3), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(error.0.len(), 3);
}

#[tokio::test]
async fn subscription_ends_only_after_in_flight_deliveries_settle() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("s"));
    let producer = topic.producer();
    producer.send(numbered(0, 1)).await;
    drop(producer);
    let held = sub.next().await.unwrap();
    let other = sub.clone();
    let waiter = tokio::spawn(async move {
        other.next().await.map(|delivery| {
            let got = numbers(delivery.events());
            delivery.ack();
            got
        })
    });
    tokio::task::yield_now().await;
    assert!(
        !waiter.is_finished(),
        "must wait: the held batch may come back"
    );
    drop(held); // the holder fails: the batch goes to the waiting worker
    assert_eq!(waiter.await.unwrap(), Some(vec![0]));
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn drained_fires_once_everything_is_handed_out_even_if_unacknowledged() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("s"));
    let producer = topic.producer();
    producer.send(numbered(0, 2)).await;
    let held = sub.next().await.unwrap();
    let waiter = {
        let sub = sub.clone();
        tokio::spawn(async move { sub.drained().await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "a producer still exists");
    drop(producer);
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("drained once the producer is gone")
        .unwrap();
    held.ack();
    assert!(sub.next().await.is_none());
}

// ---------------------------------------------------------------------------------------------
// Model-based property test of the state machine.

#[derive(Debug, Clone)]
enum Op {
    Publish { events: u64 },
    Poll { sub: usize },
    Ack { pick: usize },
    Nack { pick: usize },
    Hold { pick: usize },
    AckHeld { pick: usize },
    Advance { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..8).prop_map(|events| Op::Publish { events }),
        4 => (0usize..3).prop_map(|sub| Op::Poll { sub }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Nack { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Hold { pick }),
        2 => any::<usize>().prop_map(|pick| Op::AckHeld { pick }),
        1 => (1u64..20).prop_map(|secs| Op::Advance { secs }),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    when_full: WhenFull,
    max_events: u64,
    blocking: [bool; 3],
    ops: Vec<Op>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![
            Just(WhenFull::Block),
            Just(WhenFull::DropNewest),
            Just(WhenFull::DropOldest)
        ],
        5u64..40,
        any::<[bool; 3]>(),
        prop::collection::vec(op(), 1..200),
    )
        .prop_map(|(when_full, max_events, blocking, ops)| Scenario {
            when_full,
            max_events,
            blocking,
            ops,
        })
}

fn first_number(batch: &Batch) -> u64 {
    numbers(batch.events())[0]
}

fn run_scenario(scenario: Scenario) -> Result<(), TestCaseError> {
    let settings = settings(scenario.max_events, u64::MAX, scenario.when_full);
    let mut state = TopicState::new(settings, Box::new(MemoryStorage::new()));
    state.producers = 1;
    for (i, blocking) in scenario.blocking.iter().enumerate() {
        state.subscribe(SubscriptionSettings {
            name: format!("s{i}"),
            blocking: *blocking,
            ack_timeout: Some(Duration::from_secs(10)),
            start_at: StartAt::Latest,
        });
    }
    let base = Instant::now();
    let mut now = base;
    let mut next_event = 0u64;
    // Batches the topic stored: first event number to length.
    let mut stored: HashMap<u64, u64> = HashMap::new();
    let mut attempted = 0u64;
    let mut outstanding: Vec<(usize, DeliveryTicket)> = Vec::new();
    // Processed batches waiting for their acknowledgement: subscription, first event number,
    // offsets and generation.
    let mut held: Vec<(usize, u64, OffsetRange, u64)> = Vec::new();
    // Per subscription: first event numbers of acknowledged batches, in ack order.
    let mut acked: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut committed = vec![Offset(0); 3];

    let check_invariants =
        |state: &mut TopicState, committed: &mut Vec<Offset>| -> Result<(), TestCaseError> {
            let retained = state.storage.retained_events();
            let end = state.storage.end();
            let single_batch = state
                .storage
                .front_range()
                .is_some_and(|front| front.end == end);
            prop_assert!(
                retained <= scenario.max_events || single_batch,
                "retained {retained} over capacity {}",
                scenario.max_events
            );
            for (i, sub) in state.subs.iter().enumerate() {
                prop_assert!(
                    sub.committed >= committed[i],
                    "committed offsets never go back"
                );
                prop_assert!(sub.released >= sub.committed);
                committed[i] = sub.committed;
            }
            let blocking_committed = state
                .subs
                .iter()
                .filter(|sub| sub.settings.blocking)
                .map(|sub| sub.committed)
                .min();
            if let Some(blocking_committed) = blocking_committed {
                prop_assert!(
                    state.safe_offset() <= blocking_committed,
                    "nothing held or unacknowledged is safe"
                );
            }
            Ok(())
        };

    for op in scenario.ops {
        match op {
            Op::Publish { events } => {
                attempted += events;
                match state.publish(numbered(next_event, events)) {
                    PublishOutcome::Stored(range) => {
                        prop_assert_eq!(range.len(), events);
                        stored.insert(next_event, events);
                    }
                    PublishOutcome::DroppedNewest => {
                        prop_assert_eq!(scenario.when_full, WhenFull::DropNewest);
                    }
                    PublishOutcome::Full(batch) => {
                        prop_assert_eq!(scenario.when_full, WhenFull::Block);
                        prop_assert_eq!(batch.len() as u64, events);
                        attempted -= events; // the producer keeps it and would retry
                        continue;
                    }
                }
                next_event += events;
            }
            Op::Poll { sub } => {
                if let Poll::Ready(ticket) = state.poll(sub, now) {
                    let first = first_number(&ticket.batch);
                    prop_assert!(stored.contains_key(&first));
                    prop_assert!(
                        !held.iter().any(|h| h.0 == sub && h.1 == first),
                        "a held batch is never handed out again"
                    );
                    outstanding.push((sub, ticket));
                }
            }
            Op::Ack { pick } if !outstanding.is_empty() => {
                let (sub, ticket) = outstanding.remove(pick % outstanding.len());
                let before = state.subs[sub].counters.acked_events;
                state.ack(sub, &ticket);
                if state.subs[sub].counters.acked_events > before {
                    acked[sub].push(first_number(&ticket.batch));
                }
            }
            Op::Nack { pick } if !outstanding.is_empty() => {
                let (sub, ticket) = outstanding.remove(pick % outstanding.len());
                state.nack(sub, &ticket);
            }
            Op::Hold { pick } if !outstanding.is_empty() => {
                let (sub, ticket) = outstanding.remove(pick % outstanding.len());
                let committed_before = state.subs[sub].committed;
                let held_before = state.subs[sub].held_batches();
                state.hold(sub, &ticket);
                prop_assert_eq!(
                    state.subs[sub].committed,
                    committed_before,
                    "holding commits nothing"
                );
                // A stale ticket (timed out and handed to another worker) is not held.
                if state.subs[sub].held_batches() > held_before {
                    held.push((
                        sub,
                        first_number(&ticket.batch),
                        ticket.range,
                        ticket.generation,
                    ));
                }
            }
            Op::AckHeld { pick } if !held.is_empty() => {
                let (sub, first, range, generation) = held.remove(pick % held.len());
                let before = state.subs[sub].counters.acked_events;
                state.ack_range(sub, range, generation);
                if state.subs[sub].counters.acked_events > before {
                    acked[sub].push(first);
                }
            }
            Op::Advance { secs } => now += Duration::from_secs(secs),
            Op::Ack { .. } | Op::Nack { .. } | Op::Hold { .. } | Op::AckHeld { .. } => {}
        }
        check_invariants(&mut state, &mut committed)?;
    }

    // Crash every outstanding worker, close the topic, and drain each subscription.
    for (sub, ticket) in outstanding.drain(..) {
        state.nack(sub, &ticket);
    }
    // Held batches were processed: their workers acknowledge them once their output is safe.
    for (sub, first, range, generation) in held.drain(..) {
        let before = state.subs[sub].counters.acked_events;
        state.ack_range(sub, range, generation);
        if state.subs[sub].counters.acked_events > before {
            acked[sub].push(first);
        }
    }
    state.producers = 0;
    state.closed = true;
    for (sub, acked) in acked.iter_mut().enumerate() {
        loop {
            match state.poll(sub, now) {
                Poll::Ready(ticket) => {
                    let before = state.subs[sub].counters.acked_events;
                    state.ack(sub, &ticket);
                    prop_assert!(state.subs[sub].counters.acked_events > before);
                    acked.push(first_number(&ticket.batch));
                }
                Poll::Ended => break,
                Poll::Pending { .. } => {
                    // Only timed-out deliveries can still be pending; move time past them.
                    now += Duration::from_secs(3600);
                }
            }
        }
    }

    let stored_events: u64 = stored.values().sum();
    let counters = state.counters;
    prop_assert_eq!(counters.published_events, stored_events);
    prop_assert_eq!(attempted, stored_events + counters.dropped_newest);
    for (i, sub) in state.subs.iter().enumerate() {
        let mut distinct = acked[i].clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(
            distinct.len(),
            acked[i].len(),
            "sub {} acked a batch twice",
            i
        );
        let acked_events: u64 = acked[i].iter().map(|first| stored[first]).sum();
        prop_assert_eq!(acked_events, sub.counters.acked_events);
        let missing = stored_events - acked_events;
        if sub.settings.blocking {
            // A blocking subscription only misses what drop_oldest discarded, and counts it.
            prop_assert_eq!(missing, sub.counters.lost_events);
            prop_assert!(missing <= counters.dropped_oldest);
            if scenario.when_full != WhenFull::DropOldest {
                prop_assert_eq!(
                    missing,
                    0,
                    "sub {} lost events under {:?}",
                    i,
                    scenario.when_full
                );
            }
        } else {
            prop_assert!(
                missing <= sub.counters.lost_events,
                "non-blocking sub {} missed {} but counted {}",
                i,
                missing,
                sub.counters.lost_events
            );
        }
        prop_assert_eq!(sub.committed, state.storage.end());
    }
    if state.subs.iter().all(|sub| sub.settings.blocking) && scenario.when_full == WhenFull::Block {
        prop_assert_eq!(counters.dropped_oldest, 0);
    }
    prop_assert_eq!(
        state.storage.retained_events(),
        0,
        "all acknowledged: nothing retained"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn queue_state_machine_keeps_its_invariants(scenario in scenario()) {
        run_scenario(scenario)?;
    }
}

#[test]
fn deliveries_share_the_stored_batch() {
    let mut state = TopicState::new(TopicSettings::default(), Box::new(MemoryStorage::new()));
    state.producers = 1;
    let a = state.subscribe(SubscriptionSettings::new("a"));
    let b = state.subscribe(SubscriptionSettings::new("b"));
    state.publish(numbered(0, 3));
    let (Poll::Ready(ta), Poll::Ready(tb)) =
        (state.poll(a, Instant::now()), state.poll(b, Instant::now()))
    else {
        panic!("both subscriptions get the batch");
    };
    assert!(
        Arc::ptr_eq(&ta.batch, &tb.batch),
        "one copy shared by subscribers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscriptions_under_back_pressure_do_not_stall() {
    let topic = Topic::in_memory("t", settings(1_000, u64::MAX, WhenFull::Block));
    let a = topic.subscribe(SubscriptionSettings::new("a"));
    let b = topic.subscribe(SubscriptionSettings::new("b"));
    let producer = topic.producer();
    let n = 200_000u64;
    let send = tokio::spawn(async move {
        for first in (0..n).step_by(100) {
            producer.send(numbered(first, 100)).await;
        }
    });
    let (x, y) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(
            tokio::spawn(async move { drain(&a).await.len() }),
            tokio::spawn(async move { drain(&b).await.len() })
        )
    })
    .await
    .expect("no stall");
    send.await.unwrap();
    assert_eq!((x.unwrap(), y.unwrap()), (n as usize, n as usize));
}

/// Regression: workers spawned before the producer existed saw a topic with no producers as
/// finished and returned at once; their subscription then never acknowledged anything and the
/// producer blocked forever once the topic filled (the criterion bench hung this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_started_before_the_producer_wait_for_it() {
    for _ in 0..3 {
        let topic = Topic::in_memory("t", TopicSettings::default());
        let mut readers = Vec::new();
        for s in 0..2 {
            let sub = topic.subscribe(SubscriptionSettings::new(format!("s{s}")));
            readers.push(tokio::spawn(async move {
                let mut seen = 0u64;
                while let Some(delivery) = sub.next().await {
                    seen += delivery.events().len() as u64;
                    delivery.ack();
                }
                seen
            }));
        }
        let producer = topic.producer();
        let template = numbered(0, 1024).into_events();
        tokio::spawn(async move {
            for _ in 0..976 {
                producer.send(Batch::new(template.clone())).await;
            }
        });
        for reader in readers {
            let seen = tokio::time::timeout(Duration::from_secs(10), reader)
                .await
                .expect("no stall")
                .unwrap();
            assert_eq!(seen, 976 * 1024);
        }
    }
}

#[tokio::test]
async fn a_tap_sees_new_batches_without_holding_anything_back() {
    let topic = Topic::in_memory("t", settings(10, 1 << 20, WhenFull::Block));
    let sub = topic.subscribe(SubscriptionSettings::new("sink"));
    let producer = topic.producer();
    producer.send(numbered(0, 5)).await;
    let mut tap = topic.tap(2);
    producer.send(numbered(5, 5)).await;
    let tapped = tap.recv().await.unwrap();
    assert_eq!(numbers(tapped.events()), (5..10).collect::<Vec<_>>());
    // Shared with the topic, not copied.
    let delivered = sub.next().await.unwrap();
    assert_eq!(numbers(delivered.events()), (0..5).collect::<Vec<_>>());
    delivered.ack();
    let delivered = sub.next().await.unwrap();
    assert!(Arc::ptr_eq(delivered.batch(), &tapped));
    delivered.ack();

    // A tap nobody reads: the topic goes on, the tap skips what does not fit its buffer.
    for first in (10..60).step_by(5) {
        producer.send(numbered(first, 5)).await;
        let delivery = sub.next().await.unwrap();
        delivery.ack();
    }
    let mut seen = Vec::new();
    while let Ok(batch) = tap.try_recv() {
        seen.extend(numbers(batch.events()));
    }
    assert_eq!(
        seen,
        (10..20).collect::<Vec<_>>(),
        "the first 2 batches, then skipped"
    );
    assert_eq!(topic.stats().subscriptions[0].counters.acked_events, 60);

    // A tap whose reader left is forgotten at the next publish.
    drop(tap);
    producer.send(numbered(60, 1)).await;
    assert!(topic.shared.state.lock().taps.is_empty());
    drop(producer);
    assert_eq!(drain(&sub).await, [60]);
}

#[tokio::test]
async fn a_held_batch_frees_its_room_but_stays_unsafe_until_acknowledged() {
    let topic = Topic::in_memory("t", settings(4, u64::MAX, WhenFull::Block));
    let sub = topic.subscribe(SubscriptionSettings::new("pipeline"));
    let producer = topic.producer();
    let safe = producer.safe_offset();
    producer.send(numbered(0, 4)).await;
    assert!(
        producer.try_send(numbered(4, 1)).is_err(),
        "the topic is full"
    );
    let held = sub.next().await.unwrap().hold();
    assert_eq!(held.range(), OffsetRange::new(Offset(0), Offset(4)));
    assert_eq!(topic.stats().subscriptions[0].held_batches, 1);
    assert!(
        producer.try_send(numbered(4, 4)).is_ok(),
        "a held batch no longer takes room"
    );
    assert_eq!(*safe.borrow(), Offset(0), "held is not safe");
    assert_eq!(topic.stats().subscriptions[0].committed_offset, Offset(0));
    // The next batch is acknowledged first: the committed offset waits for the held one.
    sub.next().await.unwrap().ack();
    assert_eq!(*safe.borrow(), Offset(0));
    held.ack();
    assert_eq!(*safe.borrow(), Offset(8));
    assert_eq!(topic.stats().subscriptions[0].held_batches, 0);
}

#[tokio::test]
async fn a_subscription_ends_with_batches_still_held() {
    let topic = Topic::in_memory("t", TopicSettings::default());
    let sub = topic.subscribe(SubscriptionSettings::new("pipeline"));
    let producer = topic.producer();
    producer.send(numbered(0, 3)).await;
    drop(producer);
    let held = sub.next().await.unwrap().hold();
    assert!(
        sub.next().await.is_none(),
        "held batches do not keep the subscription open"
    );
    held.ack();
    assert_eq!(topic.stats().safe_offset, Offset(3));
}
