//! Which Kafka offsets may be committed: published batches wait here, keyed by the sluice topic
//! offset they end at, until the topic's safe offset passes them.
//!
//! Pure bookkeeping (no client), shared by the consumer loop and its rebalance callbacks behind
//! one lock.

use std::collections::{BTreeMap, VecDeque};

use crate::topic::Offset;

/// A Kafka partition: topic name and partition number.
pub(crate) type Partition = (String, i32);

/// The offsets to commit, per partition: the offset of the next message to read.
pub(crate) type Commits = BTreeMap<Partition, i64>;

/// Published batches not yet safe, and safe offsets not yet committed.
#[derive(Debug, Default)]
pub(crate) struct Offsets {
    /// Per published batch, in publish order: the topic offset it ends at and, per partition,
    /// the offset after its last message.
    pending: VecDeque<(Offset, Vec<(Partition, i64)>)>,
    /// Safe, not yet committed.
    ready: Commits,
}

impl Offsets {
    /// Remembers a batch published up to topic offset `end` holding messages up to `next - 1`
    /// of each partition.
    pub(crate) fn published(&mut self, end: Offset, next: Vec<(Partition, i64)>) {
        if !next.is_empty() {
            self.pending.push_back((end, next));
        }
    }

    /// Offsets that need no wait (messages that made no event, or a `drop_newest` topic that
    /// dropped them): ready at once, unless an earlier batch of the same partition still waits —
    /// then they ride along with the newest pending batch.
    pub(crate) fn done(&mut self, next: Vec<(Partition, i64)>) {
        for (partition, offset) in next {
            let waiting = self
                .pending
                .iter_mut()
                .rev()
                .find(|(_, batch)| batch.iter().any(|(p, _)| *p == partition));
            match waiting {
                Some((_, batch)) => {
                    for (p, o) in batch.iter_mut() {
                        if *p == partition {
                            *o = (*o).max(offset);
                        }
                    }
                }
                None => {
                    let entry = self.ready.entry(partition).or_insert(offset);
                    *entry = (*entry).max(offset);
                }
            }
        }
    }

    /// Moves every batch that ends at or before `safe` to the ready offsets.
    pub(crate) fn safe_until(&mut self, safe: Offset) {
        while let Some((end, _)) = self.pending.front() {
            if *end > safe {
                break;
            }
            let Some((_, batch)) = self.pending.pop_front() else {
                break;
            };
            for (partition, offset) in batch {
                let entry = self.ready.entry(partition).or_insert(offset);
                *entry = (*entry).max(offset);
            }
        }
    }

    /// Takes the ready offsets, to commit.
    pub(crate) fn take_ready(&mut self) -> Commits {
        std::mem::take(&mut self.ready)
    }

    /// Forgets everything of `partitions` (revoked): their in-flight messages are read again by
    /// their next owner, so nothing of them may be committed here later.
    pub(crate) fn forget(&mut self, partitions: &[Partition]) {
        for (_, batch) in &mut self.pending {
            batch.retain(|(partition, _)| !partitions.contains(partition));
        }
        self.pending.retain(|(_, batch)| !batch.is_empty());
        self.ready
            .retain(|partition, _| !partitions.contains(partition));
    }

    /// Whether batches still wait to be safe.
    pub(crate) fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("web".to_owned(), n)
    }

    #[test]
    fn commits_follow_the_safe_offset_in_order() {
        let mut offsets = Offsets::default();
        offsets.published(Offset(100), vec![(p(0), 50), (p(1), 20)]);
        offsets.published(Offset(200), vec![(p(0), 90)]);
        offsets.safe_until(Offset(99));
        assert!(
            offsets.take_ready().is_empty(),
            "nothing is safe before its end"
        );
        offsets.safe_until(Offset(150));
        assert_eq!(
            offsets.take_ready(),
            Commits::from([(p(0), 50), (p(1), 20)])
        );
        assert!(offsets.waiting());
        offsets.safe_until(Offset(200));
        assert_eq!(offsets.take_ready(), Commits::from([(p(0), 90)]));
        assert!(!offsets.waiting());
    }

    #[test]
    fn revoked_partitions_are_never_committed_later() {
        let mut offsets = Offsets::default();
        offsets.published(Offset(10), vec![(p(0), 5), (p(1), 5)]);
        offsets.published(Offset(20), vec![(p(1), 9)]);
        offsets.safe_until(Offset(10));
        offsets.forget(&[p(1)]);
        assert_eq!(offsets.take_ready(), Commits::from([(p(0), 5)]));
        assert!(!offsets.waiting(), "the batch of partition 1 alone is gone");
        offsets.safe_until(Offset(20));
        assert!(offsets.take_ready().is_empty());
    }

    #[test]
    fn messages_without_events_wait_behind_earlier_ones() {
        let mut offsets = Offsets::default();
        offsets.published(Offset(10), vec![(p(0), 5)]);
        offsets.done(vec![(p(0), 7), (p(1), 3)]);
        assert_eq!(
            offsets.take_ready(),
            Commits::from([(p(1), 3)]),
            "partition 0 must not pass its unsafe batch"
        );
        offsets.safe_until(Offset(10));
        assert_eq!(offsets.take_ready(), Commits::from([(p(0), 7)]));
    }
}
