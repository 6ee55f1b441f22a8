//! File-system helpers shared by the file sink and the agent (checkpoints, poll state, disk
//! topics).

use std::io;
use std::path::Path;

/// Makes the entries of `dir` durable: a file created or renamed into it survives a crash once
/// this returns.
///
/// # Errors
/// The error of opening or syncing the directory.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Directories cannot be opened for syncing here; the file's own sync has to do.
///
/// # Errors
/// None.
#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
