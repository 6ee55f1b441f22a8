//! The `console` sink: writes events to stdout or stderr, one line each.
//!
//! Each [`Sink::write`] encodes the whole batch into one reused buffer, then writes it with one
//! `write_all` under the stream's lock (so lines from other writers cannot interleave inside the
//! batch) and flushes before acknowledging. The write runs on tokio's blocking pool, because a
//! terminal or a pipe can block for as long as its reader is slow.
//!
//! A closed stdout (`EPIPE`, as when piping into `head`) is a [`SinkError::Permanent`]: the reader
//! is gone and will not come back. Other I/O errors are transient.
//!
//! ```toml
//! [sinks.debug]
//! type = "console"
//! input = "web.requests"
//! target = "stdout"      # or "stderr"
//! encoding = "ndjson"    # or "json" (the same), "text", "csv" or a table (see `encoding`)
//! # plus the driver keys every sink has (batch, concurrency — always 1 here —, retry, healthcheck)
//! ```

use std::io::{self, Write};

use serde::Deserialize;
use sluice_pipelines::Event;

use crate::encoding::{Encoder, EncodingConfig, deserialize_encoding};
use crate::{BuildError, Sink, SinkError, SinkFuture, chunk_events};

/// The config of the `console` sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Which stream to write to; default `stdout`.
    #[serde(default)]
    pub target: Target,
    /// How events become lines; default `ndjson`.
    #[serde(default, deserialize_with = "deserialize_encoding")]
    pub encoding: EncodingConfig,
}

/// The standard stream the `console` sink writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Stdout => "stdout",
            Target::Stderr => "stderr",
        }
    }
}

impl ConsoleConfig {
    /// Checks the config; every combination of keys is valid.
    ///
    /// # Errors
    /// None today; the signature matches the other sinks.
    pub fn validate(&self) -> Result<(), BuildError> {
        self.encoding.validate()?;
        Ok(())
    }

    /// Builds the sink.
    ///
    /// # Errors
    /// The encoding options are invalid.
    pub fn build(&self) -> Result<ConsoleSink, BuildError> {
        Ok(ConsoleSink {
            target: self.target,
            encoder: self.encoding.encoder()?,
            buffer: Some(Vec::new()),
            written: 0,
        })
    }
}

/// The runtime of the `console` sink.
#[derive(Debug)]
pub struct ConsoleSink {
    target: Target,
    encoder: Encoder,
    /// The encode buffer, reused across writes; `None` only while a blocking write holds it (or
    /// after a cancelled write lost it, when a new one is made).
    buffer: Option<Vec<u8>>,
    /// Bytes of the last write.
    written: u64,
}

impl Sink for ConsoleSink {
    fn write<'a>(&'a mut self, events: &'a [Event]) -> SinkFuture<'a> {
        Box::pin(async move { self.write_slices(&[events]).await })
    }

    fn write_chunks<'a>(&'a mut self, chunks: &'a [&'a [Event]]) -> SinkFuture<'a> {
        Box::pin(self.write_slices(chunks))
    }

    fn bytes_written(&self) -> u64 {
        self.written
    }
}

impl ConsoleSink {
    async fn write_slices(&mut self, chunks: &[&[Event]]) -> Result<(), SinkError> {
        {
            if chunks.iter().all(|chunk| chunk.is_empty()) {
                self.written = 0;
                return Ok(());
            }
            let mut buffer = self.buffer.take().unwrap_or_default();
            buffer.clear();
            self.encoder.encode_batch(chunk_events(chunks), &mut buffer);
            let target = self.target;
            let (buffer, result) = tokio::task::spawn_blocking(move || {
                let result = match target {
                    Target::Stdout => write_flush(&mut io::stdout().lock(), &buffer),
                    Target::Stderr => write_flush(&mut io::stderr().lock(), &buffer),
                };
                (buffer, result.map_err(|error| classify(target, &error)))
            })
            .await
            .map_err(|error| SinkError::Transient(format!("console write task failed: {error}")))?;
            self.written = if result.is_ok() {
                buffer.len() as u64
            } else {
                0
            };
            self.buffer = Some(buffer);
            result
        }
    }
}

/// Writes `bytes` in one `write_all` and flushes.
fn write_flush(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// A closed reader will not come back; anything else may clear.
fn classify(target: Target, error: &io::Error) -> SinkError {
    let message = format!("cannot write to {}: {error}", target.name());
    if error.kind() == io::ErrorKind::BrokenPipe {
        SinkError::Permanent(message)
    } else {
        SinkError::Transient(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoding, encode_batch};
    use bytes::Bytes;
    use sluice_pipelines::EventMeta;

    /// A writer that fails like a pipe whose reader has exited.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Counts writes and flushes, to check a batch is one write plus one flush.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        writes: usize,
        flushes: usize,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn a_batch_is_one_write_and_one_flush() {
        let mut event = Event::default();
        event.insert("status", 200i64);
        let events = [
            event,
            Event::from_raw(Bytes::from_static(b"raw line"), EventMeta::default()),
        ];
        let mut buffer = Vec::new();
        encode_batch(&events, Encoding::Text, &mut buffer);
        let mut out = Recorder::default();
        write_flush(&mut out, &buffer).unwrap();
        assert_eq!(out.bytes, b"status=200\nraw line\n");
        assert_eq!((out.writes, out.flushes), (1, 1));
    }

    #[test]
    fn closed_stdout_is_permanent() {
        let error = write_flush(&mut ClosedPipe, b"x\n").unwrap_err();
        let error = classify(Target::Stdout, &error);
        assert!(!error.is_transient(), "{error:?}");
        assert!(
            error.to_string().starts_with("cannot write to stdout:"),
            "{error}"
        );

        let other = classify(Target::Stderr, &io::Error::from(io::ErrorKind::Interrupted));
        assert!(other.is_transient());
    }

    #[test]
    fn config_defaults_and_rejects_unknown_keys() {
        let config: ConsoleConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.target, Target::Stdout);
        assert_eq!(config.encoding, Encoding::Ndjson);
        let config: ConsoleConfig =
            serde_json::from_str(r#"{"target":"stderr","encoding":"text"}"#).unwrap();
        assert_eq!(
            (config.target, config.encoding),
            (Target::Stderr, Encoding::Text.into())
        );
        assert!(serde_json::from_str::<ConsoleConfig>(r#"{"colour":true}"#).is_err());
        assert!(serde_json::from_str::<ConsoleConfig>(r#"{"target":"file"}"#).is_err());
    }

    #[tokio::test]
    async fn writes_to_stderr_and_reuses_the_buffer() {
        let mut sink = ConsoleConfig {
            target: Target::Stderr,
            encoding: Encoding::Text.into(),
        }
        .build()
        .unwrap();
        let events = [Event::from_raw(
            Bytes::from_static(b"console sink test line"),
            EventMeta::default(),
        )];
        sink.write(&events).await.unwrap();
        let capacity = sink.buffer.as_ref().map(Vec::capacity).unwrap();
        assert!(capacity >= "console sink test line\n".len());
        sink.write(&[]).await.unwrap();
        sink.close().await.unwrap();
    }
}
