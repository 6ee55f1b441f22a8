//! The `stdin` source: the lines of standard input, until it ends.
//!
//! ```toml
//! [sources.in]
//! type = "stdin"
//! topic = "lines"
//! max_line_bytes = "1MiB"   # longer lines are cut and counted in `truncated_lines`
//! line_delimiter = "\n"     # one byte or a short string
//! ```
//!
//! Reading happens on a plain thread of its own, not on tokio's blocking pool: a read from a
//! terminal or an idle pipe can block forever, and a blocking-pool task would then hold up the
//! runtime's shutdown. The thread reads chunks straight into a
//! [`LineSplitter`] and hands finished batches to the source task
//! over a small channel; every read's lines are passed on at once, so interactive input is not
//! held back waiting for a full batch. At end of input the last line (even without a delimiter)
//! is sent and the source returns `Ok(())`. On shutdown the source returns at once; the thread
//! ends at its next read, or with the process.
//!
//! The core, [`read_stream`], takes any [`Read`], which is how it is tested on pipes and byte
//! slices.

use std::io::{self, Read};

use sluice_pipelines::BuildError;
use sluice_pipelines::units::ByteSize;
use tokio::sync::mpsc;

use super::lines::{
    BatchBuilder, DEFAULT_DELIMITER, DEFAULT_MAX_LINE_BYTES, LineEvents, LineFormat, LineSplitter,
    ReadyBatch, read_lines,
};
use super::{Source, SourceContext, SourceError, SourceFuture};

/// Config of the `stdin` source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// The longest line kept (default 1MiB); longer ones are cut and counted.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// What ends a line (default `"\n"`, which also strips a `\r` before it).
    #[serde(default = "default_line_delimiter")]
    pub line_delimiter: String,
}

impl Default for StdinConfig {
    fn default() -> Self {
        StdinConfig {
            max_line_bytes: default_max_line_bytes(),
            line_delimiter: default_line_delimiter(),
        }
    }
}

fn default_max_line_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_LINE_BYTES)
}

fn default_line_delimiter() -> String {
    DEFAULT_DELIMITER.to_owned()
}

impl StdinConfig {
    /// Checks the config.
    ///
    /// # Errors
    /// A [`BuildError`] at `line_delimiter` or `max_line_bytes`.
    pub fn validate(&self) -> Result<LineFormat, BuildError> {
        LineFormat::new(&self.line_delimiter, self.max_line_bytes.bytes()).map_err(BuildError::from)
    }

    /// Builds the source.
    ///
    /// # Errors
    /// A [`BuildError`] when the config is invalid (see [`StdinConfig::validate`]).
    pub fn build(&self) -> Result<StdinSource, BuildError> {
        Ok(StdinSource {
            format: self.validate()?,
        })
    }
}

/// The `stdin` source.
#[derive(Debug)]
pub struct StdinSource {
    format: LineFormat,
}

impl Source for StdinSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(read_stream(io::stdin(), self.format, ctx))
    }
}

/// What the reader thread sends: batches and their count of truncated lines, or the error that
/// ended the input.
type Message = io::Result<(Vec<ReadyBatch>, u64)>;

/// Reads `input` to its end on a thread of its own and publishes its lines.
///
/// # Errors
/// A [`SourceError`] when the thread cannot start or reading fails; lines read before the failure
/// are published first.
///
/// # Cancel safety
/// Dropping the future stops publishing; the reader thread ends at its next read.
pub async fn read_stream<R>(
    input: R,
    format: LineFormat,
    ctx: SourceContext,
) -> Result<(), SourceError>
where
    R: Read + Send + 'static,
{
    let truncated_lines = ctx.metrics.counter("truncated_lines");
    let (sender, mut receiver) = mpsc::channel::<Message>(2);
    let events = LineEvents::new(ctx.id);
    std::thread::Builder::new()
        .name(format!("sluice-{}", ctx.name))
        .spawn(move || read_blocking(input, &format, &events, &sender))
        .map_err(SourceError::StartThread)?;
    loop {
        let message = tokio::select! {
            message = receiver.recv() => message,
            () = ctx.shutdown.wait() => return Ok(()),
        };
        match message {
            // The thread ended after sending everything: the end of the input.
            None => return Ok(()),
            Some(Ok((batches, truncated))) => {
                truncated_lines.add(truncated);
                for ready in batches {
                    if !ctx.publish(ready.batch, ready.raw_bytes).await {
                        return Ok(());
                    }
                }
            }
            Some(Err(error)) => {
                ctx.metrics.errors.add(1);
                return Err(SourceError::Read(error));
            }
        }
    }
}

/// The reader thread: reads until the end of `input`, an error, or the receiver is gone.
fn read_blocking<R: Read>(
    mut input: R,
    format: &LineFormat,
    events: &LineEvents,
    sender: &mpsc::Sender<Message>,
) {
    let mut splitter = LineSplitter::new(format, 0);
    let mut out = BatchBuilder::new();
    loop {
        let result = read_lines(&mut input, &mut splitter, events, &mut out, true);
        let (batches, truncated) = out.take();
        if (!batches.is_empty() || truncated > 0)
            && sender.blocking_send(Ok((batches, truncated))).is_err()
        {
            return;
        }
        match result {
            Ok(status) if status.eof => return,
            Ok(_) => {}
            Err(error) => {
                let _ = sender.blocking_send(Err(error));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use sluice_pipelines::SourceId;

    use super::*;
    use crate::metrics::{Metrics, Role};
    use crate::shutdown::{self, Shutdown};
    use crate::topic::{Subscription, SubscriptionSettings, Topic, TopicSettings};

    fn context(topic: &Topic, shutdown: Shutdown) -> SourceContext {
        SourceContext {
            name: "in".into(),
            id: SourceId(2),
            output: topic.producer(),
            shutdown,
            data_dir: std::env::temp_dir(),
            metrics: Metrics::new().register("in", Role::Source),
            dead_letter: None,
        }
    }

    fn format(delimiter: &str, max: u64) -> LineFormat {
        LineFormat::new(delimiter, max).unwrap()
    }

    /// Reads `count` events, acknowledging them: (line, origin).
    async fn take(sub: &Subscription, count: usize) -> Vec<(String, u64)> {
        let mut lines = Vec::new();
        while lines.len() < count {
            let delivery = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("events in time")
                .expect("topic open");
            for event in delivery.events() {
                assert_eq!(event.meta().source, SourceId(2));
                lines.push((
                    String::from_utf8_lossy(event.raw().unwrap()).into_owned(),
                    event.meta().origin.unwrap(),
                ));
            }
            delivery.ack();
        }
        lines
    }

    async fn drain(sub: &Subscription) -> Vec<(String, u64)> {
        let mut lines = Vec::new();
        while let Some(delivery) = sub.next().await {
            for event in delivery.events() {
                lines.push((
                    String::from_utf8_lossy(event.raw().unwrap()).into_owned(),
                    event.meta().origin.unwrap(),
                ));
            }
            delivery.ack();
        }
        lines
    }

    #[tokio::test]
    async fn a_byte_slice_is_read_to_its_end_with_the_last_line() {
        let topic = Topic::in_memory("lines", TopicSettings::default());
        let sub = topic.subscribe(SubscriptionSettings::new("test"));
        let ctx = context(&topic, Shutdown::never());
        let metrics = ctx.metrics.clone();
        let input: &'static [u8] = b"one\r\ntwo\n\nthis line is too long\nlast";
        read_stream(input, format("\n", 8), ctx).await.unwrap();
        let lines = drain(&sub).await;
        assert_eq!(
            lines,
            [
                ("one".into(), 0),
                ("two".into(), 5),
                ("this lin".into(), 10),
                ("last".into(), 32)
            ]
        );
        // The blank line is not an event.
        assert_eq!(metrics.events_out.get(), 4);
        assert_eq!(metrics.bytes_out.get(), 3 + 3 + 8 + 4);
        assert_eq!(metrics.extra_counters(), [("truncated_lines", 1)]);
    }

    #[tokio::test]
    async fn a_custom_delimiter_splits_a_child_process_pipe() {
        let topic = Topic::in_memory("lines", TopicSettings::default());
        let sub = topic.subscribe(SubscriptionSettings::new("test"));
        let mut child = Command::new("sh")
            .args(["-c", "printf 'a||b||'; printf 'c||d'"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        read_stream(
            stdout,
            format("||", 100),
            context(&topic, Shutdown::never()),
        )
        .await
        .unwrap();
        child.wait().unwrap();
        let lines: Vec<String> = drain(&sub).await.into_iter().map(|(l, _)| l).collect();
        assert_eq!(lines, ["a", "b", "c", "d"]);
    }

    #[tokio::test]
    async fn lines_arrive_before_the_input_ends_and_many_lines_are_all_kept() {
        let topic = Topic::in_memory("lines", TopicSettings::default());
        let sub = topic.subscribe(SubscriptionSettings::new("test"));
        let (reader, mut writer) = UnixStream::pair().unwrap();
        let source = tokio::spawn(read_stream(
            reader,
            format("\n", 1 << 20),
            context(&topic, Shutdown::never()),
        ));
        writer.write_all(b"first\nsecond\npartial").unwrap();
        // Delivered while the writer is still open: nothing waits for a full batch.
        assert_eq!(
            take(&sub, 2).await,
            [("first".into(), 0), ("second".into(), 6)]
        );
        let writer_thread = std::thread::spawn(move || {
            writer.write_all(b" line\n").unwrap();
            for n in 0..50_000 {
                writeln!(writer, "line {n}").unwrap();
            }
            // Dropping the writer is the end of the input.
        });
        let rest = take(&sub, 50_001).await;
        writer_thread.join().unwrap();
        assert_eq!(rest[0], ("partial line".into(), 13));
        for (n, (line, _)) in rest[1..].iter().enumerate() {
            assert_eq!(line, &format!("line {n}"));
        }
        source.await.unwrap().unwrap();
        assert!(drain(&sub).await.is_empty());
    }

    #[tokio::test]
    async fn shutdown_stops_a_source_whose_input_never_ends() {
        let topic = Topic::in_memory("lines", TopicSettings::default());
        let _sub = topic.subscribe(SubscriptionSettings::new("test"));
        let (trigger, shutdown) = shutdown::channel();
        let (reader, _writer) = UnixStream::pair().unwrap();
        let source = tokio::spawn(read_stream(
            reader,
            format("\n", 100),
            context(&topic, shutdown),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!source.is_finished());
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), source)
            .await
            .expect("stops promptly")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn config_defaults_and_errors() {
        let config: StdinConfig = toml::from_str("").unwrap();
        assert_eq!(config, StdinConfig::default());
        assert_eq!(config.validate().unwrap(), format("\n", 1 << 20));
        let config: StdinConfig =
            toml::from_str("line_delimiter = \"\"\nmax_line_bytes = \"1KiB\"").unwrap();
        assert_eq!(
            config.validate().unwrap_err().key.as_deref(),
            Some("line_delimiter")
        );
        assert!(toml::from_str::<StdinConfig>("delimiter = \";\"").is_err());
    }
}
