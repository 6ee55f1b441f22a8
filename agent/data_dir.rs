//! The agent's claim on its `data_dir`: one running agent per directory.
//!
//! Checkpoints, cursors and (disk) topics in a `data_dir` belong to one agent at a time: two
//! agents writing the same checkpoint file or topic segments would corrupt each other's
//! positions. [`DataDirLock::acquire`] takes an exclusive advisory lock (`flock`) on
//! `<data_dir>/sluice.lock` for the whole run, memory-only configs included; the operating system
//! releases it when the process exits, however it exits, so a `kill -9` never leaves a stale lock
//! behind. The file also records the holder's process id for the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "sluice.lock";

/// Why the data directory could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process holds the lock.
    #[error(
        "data_dir {} is in use by another sluice{holder}: give each agent its own data_dir \
         (its lock is {})",
        dir.display(),
        lock.display()
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// ` (pid N)` when the holder wrote its pid, else empty.
        holder: String,
    },
    /// The directory or its lock file cannot be created or locked.
    #[error("cannot use data_dir {}: {source}", dir.display())]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Holds the lock on a data directory until dropped (or the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates `dir` if needed and claims it for this process.
    ///
    /// # Errors
    /// [`DataDirError::InUse`] when another process holds it, [`DataDirError::Io`] when it cannot
    /// be created or locked.
    pub fn acquire(dir: &Path) -> Result<Self, DataDirError> {
        let io = |source| DataDirError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(DataDirError::InUse {
                    dir: dir.to_owned(),
                    lock,
                    holder: pid_of(&mut file),
                });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Whether a running agent holds `dir`, checked without claiming it for longer than the check
/// and without creating anything: `Some(holder)` (` (pid N)` when the holder wrote its pid, else
/// empty) if one does, `None` if none does or the directory or lock file does not exist.
///
/// # Errors
/// [`DataDirError::Io`] when the lock file exists but cannot be opened or locked.
pub fn holder(dir: &Path) -> Result<Option<String>, DataDirError> {
    let io = |source| DataDirError::Io {
        dir: dir.to_owned(),
        source,
    };
    let mut file = match File::open(dir.join(LOCK_FILE)) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io(error)),
    };
    match file.try_lock() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => Ok(Some(pid_of(&mut file))),
        Err(TryLockError::Error(source)) => Err(io(source)),
    }
}

/// ` (pid N)` from a lock file's contents, or empty.
fn pid_of(file: &mut File) -> String {
    let mut pid = String::new();
    let _ = file.read_to_string(&mut pid);
    let pid = pid.trim();
    if pid.is_empty() {
        String::new()
    } else {
        format!(" (pid {pid})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_until_the_first_is_released() {
        let dir = tempfile::TempDir::new().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).unwrap();
        let error = DataDirLock::acquire(&data).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("in use by another sluice"), "{message}");
        assert!(
            message.contains(&format!("(pid {})", std::process::id())),
            "{message}"
        );
        drop(first);
        DataDirLock::acquire(&data).expect("free again once released");
    }

    #[test]
    fn holder_sees_a_claim_without_taking_it_or_creating_anything() {
        let dir = tempfile::TempDir::new().unwrap();
        let data = dir.path().join("data");
        assert_eq!(holder(&data).unwrap(), None);
        assert!(!data.exists(), "a check creates nothing");
        let claim = DataDirLock::acquire(&data).unwrap();
        assert_eq!(
            holder(&data).unwrap(),
            Some(format!(" (pid {})", std::process::id()))
        );
        drop(claim);
        assert_eq!(holder(&data).unwrap(), None);
        DataDirLock::acquire(&data).expect("the check released what it took");
    }
}
