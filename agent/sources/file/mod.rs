//! The `file` source: reads lines from files, from the beginning or the end, and follows what is
//! appended.
//!
//! ```toml
//! [sources.nginx]
//! type = "file"
//! include = ["/var/log/nginx/access.log", "/var/log/app/*.log"]
//! topic = "nginx.raw"
//! read_from = "beginning"      # or "end"; applies to files found at startup
//! follow = true                # false: stop at the end of every file (a finite source)
//! poll_interval = "250ms"      # how often idle files are checked for growth
//! max_line_bytes = "1MiB"      # longer lines are cut and counted in `truncated_lines`
//! line_delimiter = "\n"        # one byte or a short string
//! add_path_field = "file"      # optional: the path as a field
//! add_offset_field = "offset"  # optional: the line's byte offset as a field
//! ```
//!
//! The code is split along what will change next:
//! - [`reader`]: a [`FileReader`] is one open file, its read position and its
//!   [`LineSplitter`](super::lines::LineSplitter). It reads big chunks with blocking
//!   `std::fs::File::read` calls and knows nothing of paths, globs or scheduling. It notices a
//!   file shrinking below its position (copytruncate) and starts again from 0.
//! - [`source`]: [`FileSource`] discovers files from the `include` patterns and schedules their
//!   readers: each file in turn reads up to a few MiB inside one `tokio::task::spawn_blocking`
//!   call (one thread hop per several MiB, not per chunk), then its batches are published; idle
//!   files are checked again every `poll_interval`.
//! - [`config`]: the config and its validation.
//!
//! Not yet handled (a later version adds fingerprints, checkpoints, `**` globs and inotify):
//! renamed or deleted files are read to their end but the new file at the same path is not
//! picked up while the old one stays open, and read positions are not kept across restarts.

pub mod config;
pub mod reader;
pub mod source;
#[cfg(test)]
mod tests;

pub use config::{FileConfig, Include, ReadFrom};
pub use reader::{FileReader, ReadOutcome};
pub use source::FileSource;
