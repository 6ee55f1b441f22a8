//! Change detection: inotify (through `notify`) where it works, polling where it does not.
//!
//! The [`Watcher`] watches the base directory of every `include` pattern (recursively for
//! patterns that reach below it) and turns each event into a [`Wake`] on a bounded channel, which
//! the tailer's thread waits on, and rings a doorbell ([`tokio::sync::Notify`]) for a thread
//! that is waiting on its topic instead. Events only say *where* to look: a write to an open
//! file makes that file take a turn; a new file (or a write to a file not open) is looked at
//! alone; a removal of an open file makes it take a turn (where it finds itself deleted);
//! anything else (a rename, a removed directory) asks for a scan, which the source throttles. When the channel is full the handler sets an overflow
//! flag instead of queueing, and the source then scans and checks every file once: a burst of
//! events costs bounded memory and bounded work per wake-up.
//!
//! Directories that do not exist yet are watched once a scan finds them. If the watcher cannot be
//! created or a watch cannot be added (inotify limits), or it reports an error later, the source
//! falls back to polling every `poll_interval`; with a working watcher it still checks everything
//! once a second, as a safety net for file systems whose changes inotify does not see.
//!
//! A directory on a network file system (NFS, SMB/CIFS, Ceph, 9p, virtiofs, sshfs, …, found in
//! `/proc/self/mountinfo`) is not watched: inotify there reports only the changes made on this
//! machine, so the source polls instead, as it would with `watch = "poll"`.

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
        /// What changed.
        change: Change,
    },
    /// The watcher failed; poll from now on.
    Failed(String),
    /// Shutdown was signalled.
    Stop,
}

/// What a watcher event says changed at its paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Contents or metadata only.
    Data,
    /// A name was created.
    Created,
    /// A name was removed.
    Removed,
    /// Names changed otherwise (renamed), or the kind is unknown: worth a scan.
    Other,
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
    /// A watcher sending its events to `wake`, setting `overflow` when that is full, and
    /// ringing `doorbell` for each.
    ///
    /// # Errors
    /// The error of creating the watcher (no inotify instance available).
    pub fn new(
        wake: SyncSender<Wake>,
        overflow: Arc<AtomicBool>,
        doorbell: Arc<tokio::sync::Notify>,
    ) -> notify::Result<Self> {
        let handler = move |result: notify::Result<notify::Event>| {
            let message = match result {
                Ok(event) => {
                    if matches!(event.kind, EventKind::Access(_)) {
                        return;
                    }
                    if event.need_rescan() {
                        overflow.store(true, Ordering::Relaxed);
                    }
                    let change = match event.kind {
                        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Metadata(_)) => {
                            Change::Data
                        }
                        EventKind::Create(_) => Change::Created,
                        EventKind::Remove(_) => Change::Removed,
                        _ => Change::Other,
                    };
                    Wake::Changed {
                        paths: event.paths,
                        change,
                    }
                }
                Err(error) => Wake::Failed(error.to_string()),
            };
            if wake.try_send(message).is_err() {
                overflow.store(true, Ordering::Relaxed);
            }
            doorbell.notify_one();
        };
        Ok(Watcher {
            inner: notify::recommended_watcher(handler)?,
            watched: HashSet::new(),
        })
    }

    /// Watches each directory of `dirs` that exists and is not watched yet.
    ///
    /// # Errors
    /// The first error other than a missing directory (which is retried on the next call), or
    /// [`WatchError::NetworkFileSystem`] for a directory inotify cannot watch reliably.
    pub fn ensure(&mut self, dirs: &[(PathBuf, bool)]) -> Result<(), WatchError> {
        for (dir, recursive) in dirs {
            let Ok(dir) = std::fs::canonicalize(dir) else {
                continue;
            };
            if self.watched.contains(&dir) {
                continue;
            }
            if let Some(fs_type) = network_file_system(&dir) {
                return Err(WatchError::NetworkFileSystem { dir, fs_type });
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
                Err(error) => return Err(WatchError::Notify(error)),
            }
        }
        Ok(())
    }

    /// Forgets a watched directory that was removed, so [`Watcher::ensure`] watches it again
    /// when it comes back; returns whether `path` was one.
    pub fn removed(&mut self, path: &Path) -> bool {
        let watched = self.watched.remove(path);
        if watched {
            let _ = self.inner.unwatch(path);
        }
        watched
    }
}

/// Why a directory is not watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The watcher failed (inotify limits, permissions).
    #[error("{0}")]
    Notify(#[from] notify::Error),
    /// The directory is on a network file system, where inotify misses remote changes.
    #[error(
        "{} is on a network file system ({fs_type}), where inotify does not see changes made on other machines",
        dir.display()
    )]
    NetworkFileSystem {
        /// The directory.
        dir: PathBuf,
        /// Its file system type, as the mount table names it.
        fs_type: String,
    },
}

/// The type of the network file system `path` is on, if it is on one (Linux; elsewhere `None`).
pub fn network_file_system(path: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let fs_type = mount_fs_type(&table, path)?;
    is_network_fs(fs_type).then(|| fs_type.to_owned())
}

/// The file system type of the mount holding `path` (an absolute, canonical path): the entry of
/// `mountinfo` (the format of `/proc/self/mountinfo`) with the longest mount point above it.
fn mount_fs_type<'a>(mountinfo: &'a str, path: &Path) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional…] - fs-type source super-options
        let mut fields = line.split(' ');
        let Some(mount_point) = fields.nth(4) else {
            continue;
        };
        let Some(fs_type) = fields.skip_while(|field| *field != "-").nth(1) else {
            continue;
        };
        let mount_point = unescape_mount_point(mount_point);
        let depth = Path::new(&mount_point).components().count();
        if path.starts_with(&mount_point) && best.is_none_or(|(deepest, _)| depth >= deepest) {
            best = Some((depth, fs_type));
        }
    }
    best.map(|(_, fs_type)| fs_type)
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mount points.
fn unescape_mount_point(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|digits| {
            bytes[i] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether changes on a file system of this type can come from other machines, unseen by inotify.
fn is_network_fs(fs_type: &str) -> bool {
    const NETWORK: [&str; 16] = [
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "ceph",
        "glusterfs",
        "afs",
        "9p",
        "virtiofs",
        "lustre",
        "gpfs",
        "beegfs",
        "ocfs2",
        "gfs2",
    ];
    const NETWORK_FUSE: [&str; 8] = [
        "sshfs",
        "s3fs",
        "gcsfuse",
        "rclone",
        "juicefs",
        "glusterfs",
        "cephfs",
        "davfs",
    ];
    NETWORK.contains(&fs_type)
        || fs_type
            .strip_prefix("fuse.")
            .is_some_and(|name| NETWORK_FUSE.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw
40 22 0:35 / /mnt/logs rw,relatime shared:20 - nfs4 files:/export/logs rw,vers=4.2
41 40 0:36 / /mnt/logs/local rw,relatime - tmpfs tmpfs rw
42 22 0:37 / /srv/shared\\040logs rw - cifs //nas/logs rw
43 22 0:38 / /home/me/remote rw,nosuid - fuse.sshfs me@host:/var/log rw
44 22 0:39 / /run/user rw - fuse.portal portal rw
45 22 0:40 / /mnt/logsx rw - ext4 /dev/sdb1 rw
";

    #[test]
    fn the_deepest_mount_above_a_path_decides_its_type() {
        let kind = |path: &str| mount_fs_type(MOUNTINFO, Path::new(path));
        assert_eq!(kind("/var/log/nginx"), Some("ext4"));
        assert_eq!(kind("/mnt/logs"), Some("nfs4"));
        assert_eq!(kind("/mnt/logs/app/2026"), Some("nfs4"));
        assert_eq!(kind("/mnt/logs/local/x"), Some("tmpfs"));
        assert_eq!(
            kind("/mnt/logsx/a"),
            Some("ext4"),
            "a longer name is not below"
        );
        assert_eq!(kind("/srv/shared logs/a"), Some("cifs"), "escaped spaces");
        assert_eq!(kind("/home/me/remote/app"), Some("fuse.sshfs"));
        assert_eq!(mount_fs_type("garbage\n\n1 2 3\n", Path::new("/a")), None);
    }

    #[test]
    fn network_file_systems_are_recognised() {
        for fs_type in [
            "nfs",
            "nfs4",
            "cifs",
            "smb3",
            "ceph",
            "9p",
            "virtiofs",
            "fuse.sshfs",
        ] {
            assert!(is_network_fs(fs_type), "{fs_type}");
        }
        for fs_type in [
            "ext4",
            "xfs",
            "btrfs",
            "tmpfs",
            "overlay",
            "fuse.portal",
            "zfs",
        ] {
            assert!(!is_network_fs(fs_type), "{fs_type}");
        }
        assert_eq!(unescape_mount_point("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape_mount_point("/odd\\9x\\04"), "/odd\\9x\\04");
    }

    #[test]
    fn a_local_temporary_directory_is_watched() {
        let dir = tempfile::TempDir::new().unwrap();
        let dir = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(network_file_system(&dir), None);
        if std::path::Path::new("/proc/self/mountinfo").exists() {
            let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert!(
                mount_fs_type(&table, &dir).is_some(),
                "some mount holds {dir:?}"
            );
        }
    }
}
