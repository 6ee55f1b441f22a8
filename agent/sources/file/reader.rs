//! One open file being read: the file, its read position and its line splitter.
//!
//! A [`FileReader`] does blocking I/O and is meant to be driven from a blocking thread (the
//! source moves it into `spawn_blocking` and back). It reads
//! [`READ_CHUNK`](crate::sources::lines::READ_CHUNK) chunks straight into its splitter's buffer
//! until a byte budget is used up or the file has no more data for now, so one call does a few
//! MiB of work for one thread hop.
//!
//! The reader knows nothing of path patterns, scheduling or other files; discovery, rotation and
//! checkpoints are built around it.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::config::ReadFrom;
use crate::sources::lines::{BatchBuilder, LineEvents, LineFormat, LineSplitter, read_lines};

/// What one [`FileReader::read`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes read from the file.
    pub read: u64,
    /// The file had no more data for now.
    pub eof: bool,
    /// The file had shrunk below the read position and was read again from its start.
    pub restarted: bool,
}

/// An open file, its read position and the splitter that cuts what was read into lines.
#[derive(Debug)]
pub struct FileReader {
    path: PathBuf,
    file: File,
    /// Where the next read starts: bytes of the file consumed so far.
    position: u64,
    splitter: LineSplitter,
    events: LineEvents,
    /// The last read found no more data: check for truncation before reading again.
    at_eof: bool,
}

impl FileReader {
    /// Opens `path` and positions the reader as `read_from` says.
    ///
    /// # Errors
    /// The error of opening or seeking the file.
    pub fn open(
        path: &Path,
        read_from: ReadFrom,
        format: &LineFormat,
        events: LineEvents,
    ) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let position = match read_from {
            ReadFrom::Beginning => 0,
            ReadFrom::End => file.seek(SeekFrom::End(0))?,
        };
        Ok(FileReader {
            path: path.to_path_buf(),
            file,
            position,
            splitter: LineSplitter::new(format, position),
            events,
            at_eof: false,
        })
    }

    /// The path the file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the next read starts.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes read but not yet emitted: the partial line held until its delimiter comes.
    pub fn pending_bytes(&self) -> usize {
        self.splitter.pending_bytes()
    }

    /// Reads chunks until about `budget` bytes were read or the file has no more data, adding
    /// every complete line to `out`. With `finish_at_eof` (a reader that does not follow the
    /// file), a final line without delimiter is added when the end is reached.
    ///
    /// Before reading again after an end of file, the file's size is checked: a file shorter
    /// than the read position was truncated in place (copytruncate), and is read again from 0;
    /// the partial line held from before is dropped.
    ///
    /// # Errors
    /// The error of reading, or of checking the size. Lines completed before it are in `out`.
    pub fn read(
        &mut self,
        budget: u64,
        out: &mut BatchBuilder,
        finish_at_eof: bool,
    ) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome::default();
        if self.at_eof {
            outcome.restarted = self.restart_if_truncated()?;
        }
        loop {
            let status = read_lines(
                &mut self.file,
                &mut self.splitter,
                &self.events,
                out,
                finish_at_eof,
            )?;
            let read = status.read as u64;
            self.position += read;
            outcome.read += read;
            self.at_eof = status.eof;
            if status.eof {
                outcome.eof = true;
                return Ok(outcome);
            }
            if outcome.read >= budget {
                return Ok(outcome);
            }
        }
    }

    fn restart_if_truncated(&mut self) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        if size >= self.position {
            return Ok(false);
        }
        tracing::warn!(
            path = %self.path.display(),
            position = self.position,
            size,
            dropped_partial_bytes = self.splitter.pending_bytes(),
            "File was truncated; reading it again from the start"
        );
        self.file.seek(SeekFrom::Start(0))?;
        self.position = 0;
        self.splitter.reset(0);
        Ok(true)
    }
}
