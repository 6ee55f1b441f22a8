//! What the file source holds open, and the bounds on it.
//!
//! The source opens every file `include` matches as soon as it is noticed, also while it is held
//! back by a full topic, and keeps a rotated or deleted file open until it has read it to its
//! end: an open descriptor keeps a deleted file's content readable, so a rotation that deletes a
//! file cannot take lines the source has not read yet. Two bounds keep that from exhausting the
//! machine:
//!
//! - **descriptors**: at most `max_open_files` files are open per source, and all file sources
//!   together keep [`reserve`] descriptors of the process limit free for checkpoints, sockets and
//!   sinks. At start the process raises its soft `RLIMIT_NOFILE` to the hard limit
//!   ([`raise_descriptor_limit`]). A file that cannot have a descriptor is *parked*: closed, and
//!   opened again from where it was when it changes or a descriptor becomes free, so every file
//!   is read under any limit, only with more opening.
//! - **deleted bytes**: the files that are deleted but still open keep their disk space
//!   allocated; past `max_deleted_bytes` in total, the oldest of them is let go.
//!
//! [`plan`] decides what to close when a bound is reached, in this order: files that are read to
//! their end and still reachable under their name (parked: nothing is lost), then files with
//! unread lines that are still reachable (parked: read on later, nothing is lost), and only then
//! deleted files, oldest first — the one case where deletion still takes lines. Such a loss is
//! logged as a warning naming the file and its unread bytes, counted in the source's losses
//! (`sluice_component_lost_events_total{reason="max_open_files"}` or `max_deleted_bytes`) and
//! shown in the run summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors kept free of file-source files at least, for checkpoints, sockets, sinks and the
/// runtime.
pub const MIN_RESERVE: usize = 64;

/// Descriptors every file source together may hold open now (see [`raise_descriptor_limit`]).
static OPEN_FILES: AtomicUsize = AtomicUsize::new(0);

/// The descriptors kept free of file-source files under a limit of `limit`: an eighth of it,
/// at least [`MIN_RESERVE`].
pub fn reserve(limit: usize) -> usize {
    (limit / 8).max(MIN_RESERVE)
}

/// The process's descriptor limit, after [`raise_descriptor_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now.
    pub now: u64,
}

impl DescriptorLimit {
    /// How many files all file sources together may hold open under this limit.
    pub fn files(&self) -> usize {
        let limit = usize::try_from(self.now).unwrap_or(usize::MAX);
        limit.saturating_sub(reserve(limit))
    }
}

/// Raises the soft limit on open descriptors to the hard limit (Unix), and returns both.
///
/// # Errors
/// The OS error of reading or setting the limit.
#[cfg(unix)]
pub fn raise_descriptor_limit() -> std::io::Result<DescriptorLimit> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let was = limit.current.unwrap_or(u64::MAX);
    // A hard limit of "unlimited" is not one the kernel accepts as a soft descriptor limit.
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(DescriptorLimit {
        was,
        now: current_descriptor_limit(),
    })
}

/// Raises nothing where there are no descriptor limits to raise.
///
/// # Errors
/// Never.
#[cfg(not(unix))]
pub fn raise_descriptor_limit() -> std::io::Result<DescriptorLimit> {
    Ok(DescriptorLimit {
        was: 1 << 20,
        now: 1 << 20,
    })
}

/// The soft descriptor limit now (`u64::MAX` when unlimited).
#[cfg(unix)]
fn current_descriptor_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// How many files all file sources together may hold open now.
pub fn process_file_budget() -> usize {
    #[cfg(unix)]
    let limit = usize::try_from(current_descriptor_limit()).unwrap_or(usize::MAX);
    #[cfg(not(unix))]
    let limit = 1 << 20;
    limit.saturating_sub(reserve(limit))
}

/// A source's count of open files, and its share of the process-wide count.
#[derive(Debug)]
pub struct Descriptors {
    open: Arc<AtomicUsize>,
    max_open: usize,
    process_budget: usize,
}

impl Descriptors {
    /// At most `max_open` files for this source, within what the process limit leaves.
    pub fn new(max_open: Option<usize>) -> Self {
        let process_budget = process_file_budget();
        Descriptors {
            open: Arc::new(AtomicUsize::new(0)),
            max_open: max_open
                .unwrap_or(process_budget)
                .clamp(1, process_budget.max(1)),
            process_budget,
        }
    }

    /// The most files this source holds open.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// How many files this source holds open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether one more file may be opened now.
    pub fn has_room(&self) -> bool {
        self.open() < self.max_open && OPEN_FILES.load(Ordering::Relaxed) < self.process_budget
    }

    /// A slot for one open file, given back when dropped.
    pub fn slot(&self) -> Slot {
        self.open.fetch_add(1, Ordering::Relaxed);
        OPEN_FILES.fetch_add(1, Ordering::Relaxed);
        Slot {
            open: self.open.clone(),
        }
    }
}

/// One open file's share of the descriptor counts; dropping it gives it back.
#[derive(Debug)]
pub struct Slot {
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        OPEN_FILES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open file as [`plan`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held<Id> {
    /// Which file.
    pub id: Id,
    /// Deleted (no name left): closing it loses what is unread.
    pub deleted: bool,
    /// Renamed out of `include` or otherwise not findable again by a scan: closing it may lose
    /// what is unread, so it is treated like a deleted file.
    pub unreachable: bool,
    /// Bytes not read yet.
    pub unread: u64,
    /// Bytes the file keeps allocated (its size).
    pub size: u64,
    /// Orders files by age: smaller is older (modification time, then discovery).
    pub age: (std::time::SystemTime, u64),
}

/// What to do with an open file to stay within the bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release<Id> {
    /// Close it; it is opened again from its position when it changes or room frees up.
    Park(Id),
    /// Close it for good, losing its unread bytes; `reason` names the bound.
    LetGo {
        /// Which file.
        id: Id,
        /// `max_open_files` or `max_deleted_bytes`.
        reason: &'static str,
    },
}

/// What to close so that `files` keep at most `max_deleted_bytes` in deleted files and leave
/// room for `wanted` more open files under `max_open` (see the module doc for the order). With
/// `may_lose` false, only idle files still reachable under their name are closed for room (to
/// open a parked file again without closing one that has lines to read).
pub fn plan<Id: Copy>(
    files: &[Held<Id>],
    max_open: usize,
    max_deleted_bytes: u64,
    wanted: usize,
    may_lose: bool,
) -> Vec<Release<Id>> {
    let mut releases = Vec::new();
    let mut closed = vec![false; files.len()];
    let at_risk = |file: &Held<Id>| file.deleted || file.unreachable;
    // Deleted files, oldest first; those read to their end cost nothing to close.
    let mut deleted: Vec<usize> = (0..files.len()).filter(|&i| files[i].deleted).collect();
    deleted.sort_by_key(|&i| (files[i].unread > 0, files[i].age));
    let mut deleted_bytes: u64 = deleted.iter().map(|&i| files[i].size).sum();
    for &i in &deleted {
        if deleted_bytes <= max_deleted_bytes {
            break;
        }
        deleted_bytes -= files[i].size;
        closed[i] = true;
        releases.push(if files[i].unread == 0 {
            Release::Park(files[i].id)
        } else {
            Release::LetGo {
                id: files[i].id,
                reason: "max_deleted_bytes",
            }
        });
    }
    let mut open = closed.iter().filter(|closed| !**closed).count();
    let target = max_open.saturating_sub(wanted);
    if open <= target {
        return releases;
    }
    // Reachable files: idle ones first (least recently changed first), then those with unread
    // bytes (the youngest first: the oldest are nearest to being rotated away).
    let mut reachable: Vec<usize> = (0..files.len())
        .filter(|&i| !closed[i] && !at_risk(&files[i]))
        .collect();
    reachable.sort_by_key(|&i| {
        let file = &files[i];
        if file.unread == 0 {
            (0, file.age.0, file.age.1)
        } else {
            (1, std::time::UNIX_EPOCH, u64::MAX - file.age.1)
        }
    });
    for i in reachable {
        if open <= target || (!may_lose && files[i].unread > 0) {
            break;
        }
        closed[i] = true;
        open -= 1;
        releases.push(Release::Park(files[i].id));
    }
    if open <= target || !may_lose {
        return releases;
    }
    let mut risky: Vec<usize> = (0..files.len())
        .filter(|&i| !closed[i] && at_risk(&files[i]))
        .collect();
    risky.sort_by_key(|&i| (files[i].unread > 0, files[i].age));
    for i in risky {
        if open <= target {
            break;
        }
        open -= 1;
        releases.push(if files[i].unread == 0 {
            Release::Park(files[i].id)
        } else {
            Release::LetGo {
                id: files[i].id,
                reason: "max_open_files",
            }
        });
    }
    releases
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn file(id: u32, deleted: bool, unread: u64, size: u64, age: u64) -> Held<u32> {
        Held {
            id,
            deleted,
            unreachable: false,
            unread,
            size,
            age: (UNIX_EPOCH + Duration::from_secs(age), u64::from(id)),
        }
    }

    #[test]
    fn within_both_bounds_nothing_is_closed() {
        let files = [file(1, true, 10, 100, 1), file(2, false, 5, 50, 2)];
        assert!(plan(&files, 2, 100, 0, true).is_empty());
    }

    #[test]
    fn past_max_deleted_bytes_the_oldest_deleted_file_goes_first() {
        let files = [
            file(1, true, 10, 400, 30),
            file(2, true, 10, 400, 10),
            file(3, true, 10, 400, 20),
            file(4, false, 10, 4000, 0),
        ];
        assert_eq!(
            plan(&files, 10, 900, 0, true),
            [Release::LetGo {
                id: 2,
                reason: "max_deleted_bytes"
            }]
        );
        assert_eq!(
            plan(&files, 10, 300, 0, true),
            [
                Release::LetGo {
                    id: 2,
                    reason: "max_deleted_bytes"
                },
                Release::LetGo {
                    id: 3,
                    reason: "max_deleted_bytes"
                },
                Release::LetGo {
                    id: 1,
                    reason: "max_deleted_bytes"
                },
            ]
        );
    }

    #[test]
    fn a_deleted_file_read_to_its_end_is_closed_before_one_with_unread_bytes() {
        let files = [file(1, true, 10, 400, 10), file(2, true, 0, 400, 20)];
        assert_eq!(plan(&files, 10, 500, 0, true), [Release::Park(2)]);
    }

    #[test]
    fn for_room_idle_reachable_files_are_parked_first_then_busy_ones_then_deleted_ones() {
        let files = [
            file(1, true, 10, 100, 1),
            file(2, false, 10, 100, 2),
            file(3, false, 0, 100, 5),
            file(4, false, 0, 100, 3),
        ];
        assert_eq!(plan(&files, 4, u64::MAX, 1, true), [Release::Park(4)]);
        assert_eq!(
            plan(&files, 4, u64::MAX, 2, true),
            [Release::Park(4), Release::Park(3)]
        );
        assert_eq!(
            plan(&files, 4, u64::MAX, 3, true),
            [Release::Park(4), Release::Park(3), Release::Park(2)]
        );
        assert_eq!(
            plan(&files, 4, u64::MAX, 4, true),
            [
                Release::Park(4),
                Release::Park(3),
                Release::Park(2),
                Release::LetGo {
                    id: 1,
                    reason: "max_open_files"
                }
            ]
        );
    }

    #[test]
    fn without_leave_to_lose_only_parking_makes_room() {
        let files = [file(1, true, 10, 100, 1), file(2, false, 0, 100, 2)];
        assert_eq!(plan(&files, 2, u64::MAX, 2, false), [Release::Park(2)]);
    }

    #[test]
    fn a_file_renamed_out_of_reach_counts_as_at_risk() {
        let mut away = file(1, false, 10, 100, 1);
        away.unreachable = true;
        let files = [away, file(2, false, 10, 100, 2)];
        assert_eq!(plan(&files, 2, u64::MAX, 1, true), [Release::Park(2)]);
    }

    #[test]
    fn over_max_open_without_new_files_parks_down_to_the_bound() {
        let files = [
            file(1, false, 0, 1, 1),
            file(2, false, 0, 1, 2),
            file(3, false, 0, 1, 3),
        ];
        assert_eq!(
            plan(&files, 1, u64::MAX, 0, true),
            [Release::Park(1), Release::Park(2)]
        );
    }

    #[test]
    fn slots_count_open_files_until_dropped() {
        let descriptors = Descriptors::new(Some(2));
        assert_eq!(descriptors.max_open(), 2);
        let first = descriptors.slot();
        assert!(descriptors.has_room());
        let second = descriptors.slot();
        assert_eq!(descriptors.open(), 2);
        assert!(!descriptors.has_room());
        drop(first);
        assert!(descriptors.has_room());
        drop(second);
        assert_eq!(descriptors.open(), 0);
    }

    #[test]
    fn the_reserve_is_an_eighth_of_the_limit_and_at_least_the_minimum() {
        assert_eq!(reserve(1024), 128);
        assert_eq!(reserve(100), MIN_RESERVE);
        let limit = DescriptorLimit {
            was: 1024,
            now: 4096,
        };
        assert_eq!(limit.files(), 4096 - 512);
    }
}
