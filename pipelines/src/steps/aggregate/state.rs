//! The state of open windows: groups in slots by key hash, sessions, and the input batches
//! windows hold unacknowledged.

use super::*;

/// The input batches open windows hold, as a multiset of each window's first input batch: the
/// pipeline acknowledges an input batch only once no window holds it.
#[derive(Default)]
pub(super) struct InputHolds(pub(super) BTreeMap<u64, usize>);

impl InputHolds {
    pub(super) fn add(&mut self, seq: u64) {
        *self.0.entry(seq).or_default() += 1;
    }

    pub(super) fn remove(&mut self, seq: u64) {
        if let Some(count) = self.0.get_mut(&seq) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&seq);
            }
        }
    }

    pub(super) fn oldest(&self) -> Option<u64> {
        self.0.keys().next().copied()
    }
}

/// One tumbling or hopping window: its groups and the first input batch folded into it.
pub(super) struct Window {
    pub(super) groups: Groups<Vec<Acc>>,
    pub(super) first_input: u64,
}

pub(super) enum State {
    /// Tumbling and hopping windows by start time.
    Fixed(BTreeMap<i64, Window>),
    Sessions(Sessions),
}

/// Open sessions: per group, its sessions sorted by start; and all of them by end, to close.
#[derive(Default)]
pub(super) struct Sessions {
    pub(super) groups: Groups<Vec<Session>>,
    /// `(end, group slot, session serial)` of every open session.
    pub(super) by_end: BTreeSet<(i64, u32, u64)>,
    pub(super) next_serial: u64,
}

pub(super) struct Session {
    pub(super) serial: u64,
    /// The first input batch folded into the session.
    pub(super) first_input: u64,
    pub(super) start: i64,
    /// The latest event time in the session; it ends at `last + gap`.
    pub(super) last: i64,
    pub(super) accs: Vec<Acc>,
}

pub(super) const NO_SLOT: u32 = u32::MAX;

/// Groups keyed by the hash of their key values, with the values kept to tell collisions apart.
/// Slots keep insertion order (emission order) and are reused after removal (sessions).
pub(super) struct Groups<T> {
    pub(super) index: HashMap<u64, u32, BuildPreHashed>,
    pub(super) slots: Vec<Option<Group<T>>>,
    pub(super) free: Vec<u32>,
    pub(super) live: usize,
}

pub(super) struct Group<T> {
    pub(super) hash: u64,
    pub(super) key: Vec<Value>,
    /// The next group with the same hash.
    pub(super) next: u32,
    pub(super) data: T,
}

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Groups {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Groups<T> {
    /// The slot of the group with this hash whose key `matches`.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut matches: impl FnMut(&[Value]) -> bool) -> Option<u32> {
        let mut at = *self.index.get(&hash)?;
        while at != NO_SLOT {
            let group = self.slots.get(at as usize)?.as_ref()?;
            if matches(&group.key) {
                return Some(at);
            }
            at = group.next;
        }
        None
    }

    pub(super) fn insert(&mut self, hash: u64, key: Vec<Value>, data: T) -> u32 {
        let next = self.index.get(&hash).copied().unwrap_or(NO_SLOT);
        let group = Group {
            hash,
            key,
            next,
            data,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(group);
                slot
            }
            None => {
                self.slots.push(Some(group));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, slot);
        self.live += 1;
        slot
    }

    pub(super) fn get_mut(&mut self, slot: u32) -> Option<&mut Group<T>> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    pub(super) fn get(&self, slot: u32) -> Option<&Group<T>> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Removes a group, unlinking it from its hash chain.
    pub(super) fn remove(&mut self, slot: u32) -> Option<Group<T>> {
        let group = self.slots.get_mut(slot as usize)?.take()?;
        let head = self.index.get(&group.hash).copied();
        if head == Some(slot) {
            if group.next == NO_SLOT {
                self.index.remove(&group.hash);
            } else {
                self.index.insert(group.hash, group.next);
            }
        } else {
            let mut at = head.unwrap_or(NO_SLOT);
            while at != NO_SLOT {
                let Some(Some(previous)) = self.slots.get_mut(at as usize) else {
                    break;
                };
                if previous.next == slot {
                    previous.next = group.next;
                    break;
                }
                at = previous.next;
            }
        }
        self.free.push(slot);
        self.live -= 1;
        Some(group)
    }

    pub(super) fn into_groups(self) -> impl Iterator<Item = Group<T>> {
        self.slots.into_iter().flatten()
    }
}
