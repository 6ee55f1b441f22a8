//! Change detection: inotify (through `notify`) where it works, polling where it does not.
//!
//! The [`Watcher`] watches the base directory of every `include` pattern (recursively for
//! patterns that reach below it) and turns each event into a [`Wake`] on a bounded channel, which
//! the tailer's thread waits on. Events only say *where* to look: a write to an open file makes
//! that file take a turn; anything else (a new name, a removal, a rename, an unknown path) asks
//! for a scan, which the source throttles. When the channel is full the handler sets an overflow
//! flag instead of queueing, and the source then scans and checks every file once: a burst of
//! events costs bounded memory and bounded work per wake-up.
//!
//! Directories that do not exist yet are watched once a scan finds them. If the watcher cannot be
//! created or a watch cannot be added (inotify limits), or it reports an error later, the source
//! falls back to polling every `poll_interval`; with a working watcher it still checks everything
//! once a second, as a safety net for file systems whose changes inotify does not see.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;

use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};

/// Something for the tailer's thread to look at.
#[derive(Debug)]
pub enum Wake {
    /// Files or directories changed.
    Changed {
        /// The absolute paths named by the event.
        paths: Vec<PathBuf>,
        /// Whether names changed (created, removed, renamed) rather than only contents.
        structural: bool,
    },
    /// The watcher failed; poll from now on.
    Failed(String),
    /// Shutdown was signalled.
    Stop,
}

/// A running inotify watcher and the directories it watches.
pub struct Watcher {
    inner: notify::RecommendedWatcher,
    watched: HashSet<PathBuf>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("watched", &self.watched)
            .finish()
    }
}

impl Watcher {
    /// A watcher sending its events to `wake`, setting `overflow` when that is full.
    ///
    /// # Errors
    /// The error of creating the watcher (no inotify instance available).
    pub fn new(wake: SyncSender<Wake>, overflow: Arc<AtomicBool>) -> notify::Result<Self> {
        let handler = move |result: notify::Result<notify::Event>| {
            let message = match result {
                Ok(event) => {
                    if matches!(event.kind, EventKind::Access(_)) {
                        return;
                    }
                    if event.need_rescan() {
                        overflow.store(true, Ordering::Relaxed);
                    }
                    let structural = !matches!(
                        event.kind,
                        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Metadata(_))
                    );
                    Wake::Changed {
                        paths: event.paths,
                        structural,
                    }
                }
                Err(error) => Wake::Failed(error.to_string()),
            };
            if wake.try_send(message).is_err() {
                overflow.store(true, Ordering::Relaxed);
            }
        };
        Ok(Watcher {
            inner: notify::recommended_watcher(handler)?,
            watched: HashSet::new(),
        })
    }

    /// Watches each directory of `dirs` that exists and is not watched yet.
    ///
    /// # Errors
    /// The first error other than a missing directory (which is retried on the next call).
    pub fn ensure(&mut self, dirs: &[(PathBuf, bool)]) -> notify::Result<()> {
        for (dir, recursive) in dirs {
            let Ok(dir) = std::fs::canonicalize(dir) else {
                continue;
            };
            if self.watched.contains(&dir) {
                continue;
            }
            let mode = if *recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match self.inner.watch(&dir, mode) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(error) if matches!(error.kind, notify::ErrorKind::PathNotFound) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Forgets a watched directory that was removed, so [`Watcher::ensure`] watches it again
    /// when it comes back.
    pub fn removed(&mut self, path: &Path) {
        if self.watched.remove(path) {
            let _ = self.inner.unwatch(path);
        }
    }
}
