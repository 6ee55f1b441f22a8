//! The `file` source: tails files through rename and copytruncate rotation, deletion and
//! restarts, without losing or duplicating lines, and resumes from checkpoints.
//!
//! ```toml
//! [sources.nginx]
//! type = "file"
//! include = ["/var/log/nginx/access.log*", "/var/log/app/**/*.log"]
//! exclude = ["*.tmp"]          # paths, or bare file-name patterns
//! topic = "nginx.raw"
//! read_from = "beginning"      # or "end": files without checkpoint at the first start
//! follow = true                # false: read every file to its end once (a finite source)
//! watch = "auto"               # inotify + 1s safety poll; polls if it fails or on NFS etc.; or "poll"
//! poll_interval = "250ms"      # how often everything is checked when polling
//! fingerprint_bytes = "1KiB"   # leading bytes that identify a file
//! checkpoint_interval = "1s"   # how often safe positions are written at most
//! ignore_checkpoints = false   # true: start as if no checkpoint existed (still writes them)
//! ignore_older = "7d"          # optional: skip files not modified for this long
//! rotate_wait = "5s"           # a file renamed away is closed once idle this long
//! max_line_bytes = "1MiB"      # longer lines are cut (or dropped) and counted
//! long_lines = "truncate"      # or "skip"
//! line_delimiter = "\n"        # one byte or a short string
//! max_decompressed_bytes = "16GiB"  # cap on what one .gz file may decompress to
//! max_open_files = 10000       # default: the descriptor limit minus a reserve
//! max_deleted_bytes = "1GiB"   # disk space deleted-but-unread files may keep allocated
//! multiline = { start_pattern = '^\d{4}-', timeout = "1s" }  # or continuation_pattern
//! path_field = "file"          # optional fields; `add_path_field` is accepted too
//! host_field = "host"
//! offset_field = "offset"      # `add_offset_field` is accepted too
//! ```
//!
//! Counters besides `events_out` / `bytes_out` / `errors`: `truncated_lines`, `skipped_lines`,
//! `invalid_utf8` (lines kept with U+FFFD in place of invalid bytes), `files_opened`,
//! `files_closed`, `files_parked` (closed for want of a descriptor), `truncations`,
//! `gzip_capped`; lost lines by reason (see [`holding`] and [`discovery`]).
//!
//! # Layout
//! - [`glob`]: `include` / `exclude` patterns with `*`, `?` and `**`, and listing them.
//! - [`fingerprint`]: file identity — head bytes, their checksum, device and inode.
//! - [`reader`]: one open file (plain, or gzip through a capped decoder) cut into events, with
//!   [`multiline`] joining, the `long_lines` rule and the UTF-8 check.
//! - [`tailer`]: the synchronous core — which content each file is (rename, copytruncate,
//!   deletion, restarts), fair turns, closing; its module doc has the rules.
//! - [`checkpoint`]: the checkpoint file and the queue of positions waiting to become safe.
//! - [`watcher`]: inotify with polling fallback.
//! - [`discovery`]: looking at just the paths a watcher named, the bounds applied to the
//!   tailer, and what a stop cannot read.
//! - [`holding`]: the descriptor limit and the bounds on held files, and what to close at them.
//! - [`source`]: the tailer on its own thread, publishing with back-pressure, checkpointing.
//! - [`config`]: the config and its validation.
//!
//! # Checkpoints and duplicates
//!
//! Checkpoints live in `<data_dir>/sources/<name>/checkpoints.json`: per file content its
//! fingerprint and the offset up to which its lines are safe, i.e. acknowledged by every blocking
//! subscription of a memory topic (or stored by a disk topic). A position never reaches the file
//! before its lines are safe, so a crash never loses a line. The file is replaced atomically
//! (temp file, fsync, rename, directory fsync) at most every `checkpoint_interval` (1 s by
//! default), whenever something changed, and once more at shutdown after the topic drained.
//!
//! After a clean shutdown a restart resumes exactly where reading stopped: no duplicates. After a
//! crash (SIGKILL, power loss) the lines that became safe since the last write are read again:
//! at most what was acknowledged in the last `checkpoint_interval`, plus what was in flight in
//! the topic and its sinks (they were never acknowledged, so they are re-sent by design: this is
//! at-least-once). At 50,000 lines/s and the default 1 s, expect at most about 50,000 duplicated
//! lines after a `kill -9`, and none lost. A shorter interval trades fsyncs for fewer duplicates.
//!
//! # Rotation
//!
//! Rename rotation (logrotate's default) keeps the inode: the old file is read to its end under
//! its new name (or, renamed outside `include`, until it has been idle for `rotate_wait`) while
//! the new file at the old path waits for it, then is read from its start. copytruncate is
//! detected by the file getting shorter than the read position or its head changing; the lines
//! written after the last read but before the truncation are then read from the copy
//! (`access.log.1`) from the position reached, provided `include` matches the copy, whether the
//! copy is noticed before or after the truncation. A copy shorter than the position reached
//! (logrotate fsyncs the copy before truncating; what was written meanwhile was read from the
//! original) is not read again. Compressed
//! rotated files (`access.log.2.gz`) are recognised by the fingerprint of their decompressed
//! head, so a `.gz` of a file already read is not read again, and others are read once and
//! checkpointed as done. A deleted file is read to its end and closed at once, freeing its space.

pub mod checkpoint;
pub mod config;
pub mod discovery;
pub mod fingerprint;
pub mod glob;
pub mod holding;
pub mod multiline;
pub mod reader;
pub mod source;
pub mod tailer;
pub mod watcher;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use config::{FileConfig, LongLines, MultilineConfig, ReadFrom, WatchMode};
pub use reader::{FileReader, ReadOutcome};
pub use source::FileSource;
pub use tailer::Tailer;
