//! The `sluice` command line.
//!
//! Exit codes scripts can rely on:
//! - `0`: success — the config is valid, or a run drained or shut down cleanly;
//! - `1`: a run failed — a component stopped with an error (such as a sink whose store refuses
//!   it, a missing table, in a finite run), the shutdown timed out with events in flight, or
//!   `--require-healthy` found a sink's store unusable —, a pipeline test failed, `tap` could
//!   not reach the agent or the topic, or `topics` failed (`verify` found corruption, `reset`
//!   was refused while an agent runs);
//! - `2`: the command line or the config is invalid (nothing was started).
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use indexmap::IndexMap;
use sluice::api::AdminApi;
use sluice::config::{self, Loaded};
use sluice::data_dir::DataDirLock;
use sluice::sources::SourceConfig;
use sluice::topic::Topic;
use sluice::topology::{RunOutcome, Topology, status};
use sluice_pipelines::synthetic::{SampleFormat, SampleLimit, SampleLines, write_sample};
use sluice_pipelines::units::HumanDuration;

/// sluice: collect logs and events, queue them in topics, run pipelines, ship them to stores.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    /// Log filter (`info`, `debug`, `sluice=trace`); overrides the SLUICE_LOG environment variable.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipelines of a config until every source is finished or SIGINT/SIGTERM arrives.
    ///
    /// Finite sources (stdin, a generator with a count, files with `follow = false`) end by
    /// themselves; when all have, sluice drains every topic and sink and exits 0. On SIGINT or
    /// SIGTERM it stops the sources and drains for up to `shutdown_timeout`; a second signal exits
    /// at once. While stderr is a terminal a status line shows events/s and topic depths.
    Run {
        /// Config files or directories of `*.toml` files, merged in order.
        #[arg(short, long = "config", value_name = "FILE", required = true, num_args = 1..)]
        config: Vec<PathBuf>,
        /// How often to log a status summary when stderr is not a terminal.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        status_interval: HumanDuration,
        /// No live status line or periodic summaries.
        #[arg(long, short)]
        quiet: bool,
        /// Check every sink's store before starting anything (the table exists, the credentials
        /// work, the server answers) and exit 1 with the reasons if one fails. Without it a
        /// failed check is logged and the run starts anyway, its writes retrying.
        #[arg(long)]
        require_healthy: bool,
    },
    /// Check a config and exit: 0 when valid, 2 with every error (file:line:col: key: message).
    Validate {
        /// Config files or directories of `*.toml` files, merged in order.
        #[arg(short, long = "config", value_name = "FILE", required = true, num_args = 1..)]
        config: Vec<PathBuf>,
    },
    /// Run the `[[tests]]` of a config against its pipelines: exit 0 when all pass (or the config
    /// has none: it says so), 1 otherwise (each failure prints a diff of the events), 2 when the
    /// config is invalid.
    Test {
        /// Config files or directories of `*.toml` files, merged in order.
        #[arg(short, long = "config", value_name = "FILE", required = true, num_args = 1..)]
        config: Vec<PathBuf>,
    },
    /// Print the next events published to a topic of a running agent, as JSON lines, through its
    /// admin API (`[api]` in its config). Best effort: a tap never slows the pipeline and skips
    /// what it cannot keep up with. Exits 1 when the agent cannot be reached or has no such topic.
    Tap {
        /// The topic to watch.
        topic: String,
        /// The address of the agent's admin API.
        #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:9598")]
        api: String,
        /// How many events to print at most.
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
        /// How long to wait for them.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        timeout: HumanDuration,
    },
    /// List, read, rewind and check topics (like Kafka's console tools): `list`, `read`, `reset`,
    /// `verify`. Works on the files of a data_dir when no agent runs on it, and through the
    /// running agent's admin API (`list`, `read`) when one does.
    Topics(sluice::topics_cli::TopicsArgs),
    /// Print the graph of sources, topics, pipelines and sinks in Graphviz DOT
    /// (`sluice graph -c app.toml | dot -Tsvg > graph.svg`).
    Graph {
        /// Config files or directories of `*.toml` files, merged in order.
        #[arg(short, long = "config", value_name = "FILE", required = true, num_args = 1..)]
        config: Vec<PathBuf>,
    },
    /// Write synthetic web logs to a file or stdout: the `generator` source's nginx access lines
    /// or NDJSON clickstream events, one per line. The same seed, start and limit always give the
    /// same bytes; the benchmark runner makes its inputs with it.
    Generate {
        /// `nginx` (combined, then request time and id) or `events` (NDJSON clickstream).
        #[arg(long, value_enum)]
        format: GenerateFormat,
        /// Stop once this much is written (`256MiB`, `1GB`, bytes); the last line is whole.
        #[arg(long, value_name = "SIZE", value_parser = parse_size,
              required_unless_present = "lines", conflicts_with = "lines")]
        bytes: Option<u64>,
        /// Stop after this many lines.
        #[arg(long, value_name = "N")]
        lines: Option<u64>,
        /// The random seed, as the generator source's `seed`.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The first timestamp (RFC 3339), as the generator source's `start_time`.
        #[arg(long, value_name = "TIME", default_value = sluice::sources::generator::DEFAULT_START)]
        start_time: String,
        /// Where to write (default: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// What `sluice generate` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum GenerateFormat {
    /// nginx `combined` access lines followed by `$request_time` and a request id.
    Nginx,
    /// NDJSON clickstream events.
    Events,
}

fn parse_duration(text: &str) -> Result<HumanDuration, sluice_pipelines::units::UnitError> {
    sluice_pipelines::units::parse_duration(text).map(HumanDuration)
}

fn parse_size(text: &str) -> Result<u64, sluice_pipelines::units::UnitError> {
    sluice_pipelines::units::parse_byte_size(text)
}

fn main() -> ExitCode {
    // With `tls`, rustls has two crypto backends built in: aws-lc-rs (ours) and ring (which the
    // NATS client needs for itself). Clients that take the process default (the NATS client for
    // `tls://` servers) would then find none and fail, so name ours once, first.
    #[cfg(feature = "tls")]
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log.as_deref());
    match cli.command {
        Command::Validate { config } => match load(&config) {
            Some(loaded) => {
                let c = &loaded.config;
                for (name, source) in &c.sources {
                    for warning in source.config.path_warnings() {
                        eprintln!("warning: sources.{name}.{warning}");
                    }
                }
                let count = |n: usize, one, many| format!("{n} {}", plural(n as u64, one, many));
                println!(
                    "Config OK: {}, {}, {}, {}",
                    count(c.sources.len(), "source", "sources"),
                    count(c.topics.len(), "topic", "topics"),
                    count(c.pipelines.len(), "pipeline", "pipelines"),
                    count(c.sinks.len(), "sink", "sinks")
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
        Command::Test { config } => {
            let Some(loaded) = load(&config) else {
                return ExitCode::from(2);
            };
            if !loaded.test_errors.is_empty() {
                for error in &loaded.test_errors {
                    eprintln!("error: {error}");
                }
                return ExitCode::from(2);
            }
            let tests = &loaded.tests;
            if tests.is_empty() {
                // Like `cargo test` with no tests: the config is valid and nothing failed.
                println!(
                    "no [[tests]] in {}: nothing to test (the config is valid)",
                    config
                        .iter()
                        .map(|path| path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return ExitCode::SUCCESS;
            }
            let results = sluice::test_command::run_tests(&loaded.config, tests);
            let source = config.first().cloned().unwrap_or_default();
            let (report, passed) = sluice::test_command::render(&results, &source);
            print!("{report}");
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Tap {
            topic,
            api,
            limit,
            timeout,
        } => {
            let fetched = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())
                .and_then(|runtime| {
                    runtime.block_on(sluice::api::tap_remote(&api, &topic, limit, timeout.get()))
                });
            match fetched {
                Ok(lines) => {
                    use std::io::Write as _;
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout.write_all(&lines);
                    let _ = stdout.flush();
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Topics(args) => sluice::topics_cli::run(args),
        Command::Graph { config } => match load(&config) {
            Some(loaded) => {
                print!("{}", sluice::graph::to_dot(&loaded.config));
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
        Command::Generate {
            format,
            bytes,
            lines,
            seed,
            start_time,
            output,
        } => {
            let limit = match (bytes, lines) {
                (_, Some(lines)) => SampleLimit::Lines(lines),
                (bytes, None) => SampleLimit::Bytes(bytes.unwrap_or_default()),
            };
            generate(format, limit, seed, &start_time, output.as_deref())
        }
        Command::Run {
            config,
            status_interval,
            quiet,
            require_healthy,
        } => {
            let Some(loaded) = load(&config) else {
                return ExitCode::from(2);
            };
            match run(loaded, status_interval.get(), quiet, require_healthy) {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `sluice generate`: 0 when written (or stdout's reader left early, as `| head` does), 1 on a
/// write error, 2 for a bad start time.
fn generate(
    format: GenerateFormat,
    limit: SampleLimit,
    seed: u64,
    start_time: &str,
    output: Option<&std::path::Path>,
) -> ExitCode {
    let start = match chrono::DateTime::parse_from_rfc3339(start_time) {
        Ok(start) => start.timestamp_micros(),
        Err(error) => {
            eprintln!(
                "error: --start-time: expected an RFC 3339 time like \"{}\", found `{start_time}`: {error}",
                sluice::sources::generator::DEFAULT_START
            );
            return ExitCode::from(2);
        }
    };
    let format = match format {
        GenerateFormat::Nginx => SampleFormat::Nginx,
        GenerateFormat::Events => SampleFormat::Events,
    };
    let mut lines = SampleLines::new(format, seed, start);
    let written = match output {
        Some(path) => std::fs::File::create(path)
            .and_then(|mut file| write_sample(&mut lines, limit, &mut file))
            .map_err(|error| format!("{}: {error}", path.display())),
        None => match write_sample(&mut lines, limit, &mut std::io::stdout().lock()) {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                return ExitCode::SUCCESS;
            }
            written => written.map_err(|error| format!("stdout: {error}")),
        },
    };
    match written {
        Ok(written) => {
            if let Some(path) = output {
                eprintln!(
                    "Wrote {} {}, {} bytes, to {}",
                    written.lines,
                    plural(written.lines, "line", "lines"),
                    written.bytes,
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// `one` for 1, `many` otherwise.
fn plural(count: impl Into<u64>, one: &'static str, many: &'static str) -> &'static str {
    if count.into() == 1 { one } else { many }
}

/// Loads and validates, printing warnings and errors. `None` when invalid.
fn load(paths: &[PathBuf]) -> Option<Loaded> {
    match config::load(paths) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            Some(loaded)
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            eprintln!(
                "{} error{} in the config; nothing was started",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            None
        }
    }
}

fn init_logging(filter: Option<&str>) {
    let filter = filter
        .map(str::to_owned)
        .or_else(|| std::env::var("SLUICE_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(
    loaded: Loaded,
    status_interval: Duration,
    quiet: bool,
    require_healthy: bool,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-worker")
        .build()
        .context("starting the async runtime")?;
    // One agent per data_dir: held until the process exits.
    let _data_dir = DataDirLock::acquire(&loaded.config.data_dir)?;
    // File sources hold a descriptor per file they read: as many as the hard limit allows.
    match sluice::sources::file::holding::raise_descriptor_limit() {
        Ok(limit) => tracing::info!(
            was = limit.was,
            now = limit.now,
            files = limit.files(),
            "Open file limit raised to the hard limit; file sources may hold this many files open"
        ),
        Err(error) => tracing::warn!(%error, "Cannot raise the open file limit"),
    }
    runtime.block_on(async move {
        let started = Instant::now();
        let api = match &loaded.config.api {
            Some(api) => Some(AdminApi::bind(api.address)?),
            None => None,
        };
        let mut topology = Topology::build(&loaded.config)
            .await
            .context("building the topology")?;
        if require_healthy {
            let unhealthy = topology.check_sinks().await;
            if !unhealthy.is_empty() {
                for (sink, reason) in &unhealthy {
                    eprintln!("error: {sink}: healthcheck failed: {reason}");
                }
                eprintln!("--require-healthy: nothing was started");
                return Ok(ExitCode::from(1));
            }
        }
        let topics = topology.topics().clone();
        let metrics = topology.metrics().clone();
        let mut running = topology.start();
        let api = match api {
            Some(api) => {
                let address = api.local_addr()?;
                tracing::info!(%address, "Admin API listening");
                if !address.ip().is_loopback() {
                    tracing::warn!(%address, "The admin API has no authentication and listens beyond this machine: anyone who reaches it can read counters and tap topics");
                }
                let serving = api.serve(metrics.clone(), topics.clone(), running.shutdown_signal());
                Some(tokio::spawn(async move {
                    if let Err(error) = serving.await {
                        tracing::error!(%error, "The admin API stopped");
                    }
                }))
            }
            None => None,
        };
        tracing::info!(
            sources = loaded.config.sources.len(),
            pipelines = loaded.config.pipelines.len(),
            sinks = loaded.config.sinks.len(),
            "Started"
        );
        let terminal = std::io::stderr().is_terminal();
        let reporter = (!quiet).then(|| {
            tokio::spawn(status::report(
                metrics.clone(),
                topics.clone(),
                terminal,
                status_interval,
            ))
        });
        let outcome = running.wait(shutdown_signal()).await;
        if let Some(api) = api {
            api.abort();
        }
        if let Some(reporter) = reporter {
            reporter.abort();
            if terminal {
                status::clear_line();
            }
        }
        status::log_summary(&metrics, &topics, started.elapsed());
        let failed = !running.failures().is_empty();
        Ok(match outcome {
            RunOutcome::Drained | RunOutcome::ShutDown if !failed => ExitCode::SUCCESS,
            RunOutcome::Drained | RunOutcome::ShutDown => {
                for (component, error) in running.failures() {
                    eprintln!("error: {component}: {error}");
                }
                ExitCode::from(1)
            }
            RunOutcome::TimedOut(pending) => {
                for (component, error) in running.failures() {
                    eprintln!("error: {component}: {error}");
                }
                eprintln!(
                    "error: shutdown timed out with events in flight in: {}",
                    pending.join(", ")
                );
                for line in undelivered(&loaded.config, &topics) {
                    eprintln!("  {line}");
                }
                ExitCode::from(1)
            }
        })
    })
}

/// What a timed-out shutdown leaves undelivered, per source: the events it published that are
/// not yet safe (acknowledged all the way to the stores, or stored by a disk topic), and what
/// becomes of them.
fn undelivered(config: &sluice::config::Config, topics: &IndexMap<String, Topic>) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, def) in &config.sources {
        let Some(topic) = topics.get(&def.topic) else {
            continue;
        };
        let stats = topic.stats();
        let waiting = stats.end_offset.0.saturating_sub(stats.safe_offset.0);
        if waiting == 0 {
            continue;
        }
        let fate = match &def.config {
            SourceConfig::File(_) => {
                "are read again from the source's checkpoint on the next start".to_owned()
            }
            SourceConfig::HttpPoll(_) => {
                "are fetched again on the next start (the saved cursor stays before them)"
                    .to_owned()
            }
            other => format!(
                "are lost: a `{}` source cannot read them again",
                sluice_pipelines::ComponentKind::kind(other)
            ),
        };
        lines.push(format!(
            "sources.{name}: {waiting} events published to `{}` (offsets {}..{}) are not yet \
             delivered and {fate}",
            def.topic, stats.safe_offset.0, stats.end_offset.0
        ));
    }
    // Disk topics keep what their subscriptions had not acknowledged: nothing is lost there.
    for (name, topic) in topics {
        let stats = topic.stats();
        if stats.disk.is_none() {
            continue;
        }
        for sub in stats.subscriptions.iter().filter(|sub| sub.lag_events > 0) {
            lines.push(format!(
                "topics.{name}: {} events (offsets {}..{}) not yet acknowledged by `{}` are kept \
                 on disk and delivered to it on the next start",
                sub.lag_events, sub.committed_offset.0, stats.end_offset.0, sub.name
            ));
        }
    }
    lines
}

/// Completes on the first SIGINT or SIGTERM; a second one exits the process at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("Second signal: exiting without draining");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
