//! `sluice topics`: list, read, rewind and check topics, in the manner of Kafka's console tools.
//!
//! - `list`: each topic's storage, size, offsets, append times and subscriptions (committed
//!   offset and lag), with what recovery found or will repair;
//! - `read TOPIC [--from earliest|latest|OFFSET|TIME] [-n N]`: events as NDJSON on stdout, like
//!   `kafka-console-consumer`, encoded as the `file` sink and `sluice tap` encode them;
//! - `reset TOPIC SUBSCRIPTION --to earliest|latest|OFFSET|TIME`: rewrites a subscription's
//!   committed offset, like `kafka-consumer-groups --reset-offsets`;
//! - `verify [TOPIC]`: checks every record of every segment; exit 1 on corruption.
//!
//! # Offline and online
//!
//! A disk topic named `N` lives in `<data_dir>/topics/N/` (see [`crate::topic::disk`]). When no
//! agent holds the `data_dir` (its lock, [`crate::data_dir`], is free) the command works on those
//! files directly and changes nothing but what `reset` is asked to change: it opens logs with
//! the read-only [`LogReader`], never with `Log::open`, which repairs. While an agent runs (the
//! lock is held) or when `--api` is given, `list` and `read` ask the agent's admin API instead,
//! which also knows its memory topics — except that `read` still reads a disk topic from its
//! files when the data_dir is known: they hold everything retention kept (the agent serves only
//! what a subscription still needs), and reading them is safe beside the writer. `reset` is refused then: a running agent keeps its
//! subscriptions' offsets in memory and would write over the file. `verify` always reads the
//! files, running agent or not — it writes nothing, and an append in progress at the end of
//! the active segment is reported as a torn tail, not as corruption.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value as Json;

use crate::api::NEXT_OFFSET_HEADER;
use crate::config;
use crate::data_dir::{self, DataDirError, DataDirLock};
use crate::topic::Offset;
use crate::topic::disk::LogError;
use crate::topic::disk::inspect::{self, Damage, LogReader, Quarantined, Verified};
use crate::topology::disk_topic_dir;

/// The directory under `data_dir` where disk topics live, one directory per topic (as
/// [`disk_topic_dir`] lays them out).
const TOPICS_DIR: &str = "topics";

/// The admin API address used when neither `--api` nor a config names one.
const DEFAULT_API: &str = "127.0.0.1:9598";

/// Events asked for per admin API request while reading online.
const PAGE_EVENTS: u64 = 1000;

/// Options of `sluice topics`: where the topics are, and what to do.
#[derive(clap::Args, Debug)]
pub struct TopicsArgs {
    /// The agent's config (repeat for several files): gives the data_dir and the admin API
    /// address.
    #[arg(short, long = "config", value_name = "FILE", global = true)]
    config: Vec<PathBuf>,
    /// The data_dir to work on (overrides the config's).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Ask the running agent's admin API at this address (overrides the config's); without it
    /// the API is asked only when an agent holds the data_dir.
    #[arg(long, value_name = "ADDRESS", global = true)]
    api: Option<String>,
    #[command(subcommand)]
    command: TopicsCommand,
}

/// What `sluice topics` does.
#[derive(clap::Subcommand, Debug)]
pub enum TopicsCommand {
    /// Each topic: storage, bytes on disk, segments, oldest and newest offset and append time,
    /// each subscription's committed offset and lag, and damage recovery found or will repair.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a topic's events as JSON lines, oldest first, from a position on.
    Read {
        /// The topic.
        topic: String,
        /// Where to start: `earliest`, `latest`, an offset, or an RFC 3339 time (the first
        /// batch appended at or after it; disk topics only).
        #[arg(long, value_name = "POSITION", default_value = "earliest", value_parser = Position::parse)]
        from: Position,
        /// Print at most this many events (default: all there are).
        #[arg(short = 'n', long = "max-events", value_name = "N")]
        max_events: Option<u64>,
    },
    /// Set a subscription's committed offset, where its pipeline or sink resumes on the next
    /// start. Only while no agent runs on the data_dir.
    Reset {
        /// The topic.
        topic: String,
        /// The subscription: the name of the pipeline or sink reading the topic.
        subscription: String,
        /// The new committed offset: `earliest`, `latest`, an offset, or an RFC 3339 time.
        #[arg(long, value_name = "POSITION", value_parser = Position::parse)]
        to: Position,
    },
    /// Check every record of every segment (framing, CRC32C, offsets, decoding) without
    /// changing anything; exit 1 if any is corrupt.
    Verify {
        /// Only this topic (default: every disk topic).
        topic: Option<String>,
    },
}

/// A position in a topic, as given to `--from` and `--to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// The oldest event there is.
    Earliest,
    /// The end: after the newest event.
    Latest,
    /// An offset.
    Offset(Offset),
    /// The first batch appended at or after this time (ms since the Unix epoch).
    Time(i64),
}

/// A position that is neither a name, an offset nor a time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected earliest, latest, an offset or an RFC 3339 time such as 2026-12-03T10:00:00Z, \
     found {text:?}"
)]
pub struct PositionError {
    /// The position as written.
    pub text: String,
}

impl Position {
    /// Parses `earliest`, `latest`, an offset or an RFC 3339 time.
    ///
    /// # Errors
    /// A [`PositionError`] showing the accepted forms.
    pub fn parse(text: &str) -> Result<Position, PositionError> {
        match text {
            "earliest" => return Ok(Position::Earliest),
            "latest" => return Ok(Position::Latest),
            _ => {}
        }
        if let Ok(offset) = text.parse::<u64>() {
            return Ok(Position::Offset(Offset(offset)));
        }
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| Position::Time(time.timestamp_millis()))
            .map_err(|_| PositionError {
                text: text.to_owned(),
            })
    }
}

/// Why a `sluice topics` command failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// Neither a data_dir nor an API address was given.
    #[error("say where the topics are: --data-dir DIR, -c CONFIG or --api ADDRESS")]
    NoTarget,
    /// The config is invalid (its errors were printed).
    #[error("the config is invalid")]
    BadConfig,
    /// The topic has no directory in the data_dir.
    #[error("no disk topic {topic:?} in {}{known}", dir.display())]
    NoSuchTopic {
        /// The topic asked for.
        topic: String,
        /// The topics directory.
        dir: PathBuf,
        /// `; the disk topics are: …`, or a hint when there are none.
        known: String,
    },
    /// The topic has no such subscription.
    #[error("topic {topic:?} has no subscription {subscription:?}; its subscriptions are: {known}")]
    NoSuchSubscription {
        /// The topic.
        topic: String,
        /// The subscription asked for.
        subscription: String,
        /// Those it has.
        known: String,
    },
    /// An offset past the end of the topic.
    #[error("offset {offset} is past the end of topic {topic:?}, which is {end}")]
    PastEnd {
        /// The topic.
        topic: String,
        /// The offset asked for.
        offset: Offset,
        /// The topic's end.
        end: Offset,
    },
    /// A command that needs the files was pointed at an agent.
    #[error("{command} works on the files of a data_dir: {reason}")]
    Offline {
        /// The subcommand.
        command: &'static str,
        /// Why it could not.
        reason: String,
    },
    /// `reset` while an agent holds the data_dir.
    #[error(
        "cannot reset while an agent runs on the data_dir: {0}; stop it first (a running agent \
         keeps its subscriptions' offsets in memory and would write over the reset)"
    )]
    AgentRunning(DataDirError),
    /// The data_dir lock could not be checked or taken.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// A log could not be read or written.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The admin API could not be reached or refused.
    #[error("{0}")]
    Api(String),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(io::Error),
}

impl TopicsError {
    /// The exit code: 2 for what was asked wrongly, 1 for what failed.
    fn exit_code(&self) -> u8 {
        match self {
            TopicsError::NoTarget | TopicsError::BadConfig => 2,
            _ => 1,
        }
    }
}

/// Where the command works.
#[derive(Debug)]
enum Target {
    /// On the files of a data_dir no agent holds.
    Offline { data_dir: PathBuf },
    /// Through an agent's admin API; its data_dir too when known (for times and disk details).
    Online {
        api: String,
        data_dir: Option<PathBuf>,
        /// Why the API is asked: the lock's holder, for messages.
        holder: Option<String>,
    },
}

/// Runs `sluice topics`, printing to stdout and errors to stderr; returns the exit code.
pub fn run(args: TopicsArgs) -> ExitCode {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = execute(args, &mut out);
    let _ = out.flush();
    match result {
        Ok(code) => code,
        Err(TopicsError::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => {
            // `| head`: the reader has what it wanted.
            ExitCode::SUCCESS
        }
        Err(TopicsError::BadConfig) => ExitCode::from(2),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn execute(args: TopicsArgs, out: &mut impl Write) -> Result<ExitCode, TopicsError> {
    let (data_dir, api) = locate(&args)?;
    let explicit_api = args.api.is_some();
    let target = choose_target(data_dir, api, explicit_api)?;
    match args.command {
        TopicsCommand::List { json } => {
            let listings = match &target {
                Target::Offline { data_dir } => list_offline(data_dir)?,
                Target::Online { api, data_dir, .. } => list_online(api, data_dir.as_deref())?,
            };
            if json {
                let text = serde_json::to_string_pretty(&listings)
                    .map_err(|error| TopicsError::Output(io::Error::other(error)))?;
                writeln!(out, "{text}").map_err(TopicsError::Output)?;
            } else {
                out.write_all(render_list(&listings).as_bytes())
                    .map_err(TopicsError::Output)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Read {
            topic,
            from,
            max_events,
        } => {
            match &target {
                Target::Offline { data_dir } => {
                    read_offline(data_dir, &topic, from, max_events, out)?;
                }
                Target::Online { api, data_dir, .. } => {
                    read_online(api, data_dir.as_deref(), &topic, from, max_events, out)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Reset {
            topic,
            subscription,
            to,
        } => {
            let data_dir = match target {
                Target::Offline { data_dir } => data_dir,
                Target::Online {
                    holder: Some(holder),
                    data_dir: Some(data_dir),
                    ..
                } => {
                    return Err(TopicsError::AgentRunning(DataDirError::InUse {
                        lock: data_dir.join(data_dir::LOCK_FILE),
                        dir: data_dir,
                        holder,
                    }));
                }
                Target::Online { .. } => {
                    return Err(TopicsError::Offline {
                        command: "reset",
                        reason: "stop the agent and give --data-dir or -c, without --api".into(),
                    });
                }
            };
            let reset = reset_offline(&data_dir, &topic, &subscription, to)?;
            writeln!(out, "{}", reset.describe()).map_err(TopicsError::Output)?;
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Verify { topic } => {
            let data_dir = match target {
                Target::Offline { data_dir }
                | Target::Online {
                    data_dir: Some(data_dir),
                    ..
                } => data_dir,
                Target::Online { data_dir: None, .. } => {
                    return Err(TopicsError::Offline {
                        command: "verify",
                        reason: "it reads the segment files; give --data-dir or -c".into(),
                    });
                }
            };
            let results = verify_offline(&data_dir, topic.as_deref())?;
            out.write_all(render_verify(&data_dir, &results).as_bytes())
                .map_err(TopicsError::Output)?;
            let corrupt = results.iter().any(|(_, verified)| verified.corrupt());
            Ok(if corrupt {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The data_dir and API address the options and config give.
fn locate(args: &TopicsArgs) -> Result<(Option<PathBuf>, Option<String>), TopicsError> {
    let mut data_dir = None;
    let mut api = None;
    if !args.config.is_empty() {
        match config::load(&args.config) {
            Ok(loaded) => {
                data_dir = Some(loaded.config.data_dir.clone());
                api = loaded.config.api.map(|api| api.address.to_string());
            }
            Err(errors) => {
                for error in &errors.0 {
                    eprintln!("error: {error}");
                }
                return Err(TopicsError::BadConfig);
            }
        }
    }
    if let Some(dir) = &args.data_dir {
        data_dir = Some(dir.clone());
    }
    if let Some(address) = &args.api {
        api = Some(address.clone());
    }
    if data_dir.is_none() && api.is_none() {
        return Err(TopicsError::NoTarget);
    }
    Ok((data_dir, api))
}

/// Offline when no agent holds the data_dir and no `--api` was given; online otherwise.
fn choose_target(
    data_dir: Option<PathBuf>,
    api: Option<String>,
    explicit_api: bool,
) -> Result<Target, TopicsError> {
    let holder = match &data_dir {
        Some(dir) => data_dir::holder(dir)?,
        None => None,
    };
    match (data_dir, holder) {
        (Some(data_dir), None) if !explicit_api => Ok(Target::Offline { data_dir }),
        (data_dir, holder) => Ok(Target::Online {
            api: api.unwrap_or_else(|| DEFAULT_API.to_owned()),
            data_dir,
            holder,
        }),
    }
}

/// The disk topics under `data_dir`, sorted by name.
fn disk_topics(data_dir: &Path) -> Result<Vec<String>, TopicsError> {
    let dir = data_dir.join(TOPICS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TopicsError::Log(LogError::Io {
                operation: "list",
                path: dir,
                source,
            }));
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// The directory of an existing disk topic, or an error naming those there are.
fn existing_topic_dir(data_dir: &Path, topic: &str) -> Result<PathBuf, TopicsError> {
    let dir = disk_topic_dir(data_dir, topic);
    if dir.is_dir() {
        return Ok(dir);
    }
    let known = disk_topics(data_dir)?;
    let known = if known.is_empty() {
        " (there are none: memory topics exist only while an agent runs)".to_owned()
    } else {
        format!("; the disk topics are: {}", known.join(", "))
    };
    Err(TopicsError::NoSuchTopic {
        topic: topic.to_owned(),
        dir: data_dir.join(TOPICS_DIR),
        known,
    })
}

/// What `list` shows of one topic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicListing {
    /// The topic's name.
    pub name: String,
    /// `disk` or `memory`.
    pub storage: String,
    /// The oldest offset held (on disk, or retained in memory).
    pub start_offset: Offset,
    /// The offset the next event gets.
    pub end_offset: Offset,
    /// Bytes of its segment files (disk topics whose files were read).
    pub disk_bytes: Option<u64>,
    /// Its segment files.
    pub segments: Option<usize>,
    /// When the oldest record on disk was appended (RFC 3339).
    pub oldest_append: Option<String>,
    /// When the newest record was appended (RFC 3339).
    pub newest_append: Option<String>,
    /// Its subscriptions.
    pub subscriptions: Vec<SubscriptionListing>,
    /// What recovery moved into `quarantine/` so far (from the files).
    pub quarantined: Option<Quarantined>,
    /// What the running agent's recovery did (from its counters).
    pub recovered: Option<Recovered>,
    /// Invalid records the agent repairs on its next start.
    pub damage: Vec<Damage>,
}

/// What a running agent's recovery did to a disk topic since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recovered {
    /// Torn tails cut off.
    pub torn_tails: u64,
    /// Bytes those tails held.
    pub torn_bytes: u64,
    /// Corrupt records found (each quarantined the rest of its segment).
    pub corrupt_records: u64,
    /// Bytes moved into `quarantine/`.
    pub quarantined_bytes: u64,
}

/// What `list` shows of one subscription.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionListing {
    /// The pipeline or sink reading the topic.
    pub name: String,
    /// Where it resumes: everything before is acknowledged.
    pub committed_offset: Offset,
    /// Events from its committed offset to the end.
    pub lag_events: u64,
}

fn time_text(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Fills the disk details of `listing` from the topic's files (read-only).
fn describe_disk(dir: &Path, listing: &mut TopicListing) -> Result<LogReader, TopicsError> {
    let reader = LogReader::open(dir)?;
    listing.disk_bytes = Some(reader.disk_bytes());
    listing.segments = Some(reader.segment_count());
    listing.oldest_append = reader.first_time_ms().and_then(time_text);
    listing.newest_append = reader.last_time_ms().and_then(time_text);
    listing.quarantined = Some(inspect::quarantined(dir)?);
    listing.damage = reader.damage().to_vec();
    Ok(reader)
}

/// `list` on the files of a data_dir.
///
/// # Errors
/// When a topic's files cannot be read.
pub fn list_offline(data_dir: &Path) -> Result<Vec<TopicListing>, TopicsError> {
    let mut listings = Vec::new();
    for name in disk_topics(data_dir)? {
        let dir = disk_topic_dir(data_dir, &name);
        let mut listing = TopicListing {
            name,
            storage: "disk".to_owned(),
            start_offset: Offset(0),
            end_offset: Offset(0),
            disk_bytes: None,
            segments: None,
            oldest_append: None,
            newest_append: None,
            subscriptions: Vec::new(),
            quarantined: None,
            recovered: None,
            damage: Vec::new(),
        };
        let reader = describe_disk(&dir, &mut listing)?;
        let (start, end) = (reader.start(), reader.end());
        listing.start_offset = start;
        listing.end_offset = end;
        listing.subscriptions = inspect::committed_offsets(&dir)?
            .into_iter()
            .map(|(name, committed)| {
                // As the agent does on start: an offset outside the log is clamped into it.
                let committed = committed.clamp(start, end);
                SubscriptionListing {
                    name,
                    committed_offset: committed,
                    lag_events: end.0 - committed.0,
                }
            })
            .collect();
        listings.push(listing);
    }
    Ok(listings)
}

/// A blocking HTTP GET of the admin API; the body, and the response's `sluice-next-offset`.
fn api_get(api: &str, path_and_query: &str) -> Result<(Vec<u8>, Option<u64>), TopicsError> {
    let url = format!("http://{api}{path_and_query}");
    let fetch = async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| error.to_string())?;
        let response = client.get(&url).send().await.map_err(|error| {
            format!(
                "cannot reach the agent's admin API at {api} (is `[api]` in its config? give \
                 --api ADDRESS): {error}"
            )
        })?;
        let status = response.status();
        let next = response
            .headers()
            .get(NEXT_OFFSET_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("reading the answer of {url}: {error}"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Json>(&body)
                .ok()
                .and_then(|answer| answer["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(format!("{status}: {message}"));
        }
        Ok((body.to_vec(), next))
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())
        .and_then(|runtime| runtime.block_on(fetch))
        .map_err(TopicsError::Api)
}

/// `list` through the admin API; the oldest offset and append times of disk topics from their
/// files when the data_dir is known.
fn list_online(api: &str, data_dir: Option<&Path>) -> Result<Vec<TopicListing>, TopicsError> {
    let (body, _) = api_get(api, "/topics")?;
    let topics: Vec<Json> = serde_json::from_slice(&body)
        .map_err(|error| TopicsError::Api(format!("unexpected answer from {api}: {error}")))?;
    let mut listings = Vec::new();
    for topic in topics {
        let number = |value: &Json| value.as_u64().unwrap_or_default();
        let end = Offset(number(&topic["end_offset"]));
        let retained = number(&topic["retained_events"]);
        let disk = &topic["disk"];
        let subscriptions = topic["subscriptions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|sub| SubscriptionListing {
                name: sub["name"].as_str().unwrap_or_default().to_owned(),
                committed_offset: Offset(number(&sub["committed_offset"])),
                lag_events: number(&sub["lag_events"]),
            })
            .collect();
        let mut listing = TopicListing {
            name: topic["name"].as_str().unwrap_or_default().to_owned(),
            storage: if disk.is_object() { "disk" } else { "memory" }.to_owned(),
            start_offset: Offset(end.0.saturating_sub(retained)),
            end_offset: end,
            disk_bytes: disk["disk_bytes"].as_u64(),
            segments: disk["segments"].as_u64().map(|n| n as usize),
            oldest_append: None,
            newest_append: None,
            subscriptions,
            quarantined: None,
            recovered: serde_json::from_value(disk["log"].clone()).ok(),
            damage: Vec::new(),
        };
        if disk.is_object()
            && let Some(data_dir) = data_dir
        {
            let dir = disk_topic_dir(data_dir, &listing.name);
            if dir.is_dir() {
                // The agent's numbers are fresher; the files add what it does not report.
                let reader = LogReader::open(&dir)?;
                listing.start_offset = reader.start();
                listing.oldest_append = reader.first_time_ms().and_then(time_text);
                listing.newest_append = reader.last_time_ms().and_then(time_text);
                listing.quarantined = Some(inspect::quarantined(&dir)?);
                // An append in progress at the end looks torn: not damage while it runs.
                listing.damage = reader
                    .damage()
                    .iter()
                    .filter(|damage| !damage.torn_tail)
                    .cloned()
                    .collect();
            }
        }
        listings.push(listing);
    }
    Ok(listings)
}

/// Where `position` is in the log, for reading or resetting.
fn resolve(reader: &LogReader, position: Position) -> Result<Offset, TopicsError> {
    Ok(match position {
        Position::Earliest => reader.start(),
        Position::Latest => reader.end(),
        Position::Offset(offset) => offset,
        Position::Time(ms) => reader.offset_for_time(ms)?.unwrap_or_else(|| reader.end()),
    })
}

/// `read` on the files of a data_dir: writes the events as NDJSON to `out`, returning how many.
///
/// # Errors
/// When the topic does not exist, its files cannot be read or hold a corrupt record (the events
/// before it are written), or `out` fails.
pub fn read_offline(
    data_dir: &Path,
    topic: &str,
    from: Position,
    max_events: Option<u64>,
    out: &mut impl Write,
) -> Result<u64, TopicsError> {
    let dir = existing_topic_dir(data_dir, topic)?;
    let reader = LogReader::open(&dir)?;
    let mut offset = resolve(&reader, from)?;
    let limit = max_events.unwrap_or(u64::MAX);
    let mut written = 0;
    let mut line = Vec::new();
    while written < limit {
        let Some(stored) = reader.read(offset)? else {
            break;
        };
        let first = stored.range.start.max(offset);
        let skip = (first.0 - stored.range.start.0) as usize;
        for event in stored.batch.events().iter().skip(skip) {
            if written == limit {
                break;
            }
            line.clear();
            sluice_pipelines::codec::json::encode_event(event, &mut line);
            line.push(b'\n');
            out.write_all(&line).map_err(TopicsError::Output)?;
            written += 1;
        }
        offset = stored.range.end;
    }
    Ok(written)
}

/// Whether the agent at `api` keeps `topic` on disk.
fn is_disk_topic(api: &str, topic: &str) -> Result<bool, TopicsError> {
    let (body, _) = api_get(api, "/topics")?;
    let topics: Vec<Json> = serde_json::from_slice(&body)
        .map_err(|error| TopicsError::Api(format!("unexpected answer from {api}: {error}")))?;
    Ok(topics
        .iter()
        .any(|found| found["name"] == topic && found["disk"].is_object()))
}

/// `read` against a running agent: a disk topic from its files when the data_dir is known,
/// anything else through the admin API, a page at a time.
fn read_online(
    api: &str,
    data_dir: Option<&Path>,
    topic: &str,
    from: Position,
    max_events: Option<u64>,
    out: &mut impl Write,
) -> Result<u64, TopicsError> {
    // The files hold everything retention kept, where the agent serves only what some
    // subscription still needs; and reading them takes no lock in the agent.
    if let Some(data_dir) = data_dir
        && disk_topic_dir(data_dir, topic).is_dir()
        && is_disk_topic(api, topic)?
    {
        return read_offline(data_dir, topic, from, max_events, out);
    }
    let mut from = match from {
        Position::Earliest => "earliest".to_owned(),
        Position::Latest => "latest".to_owned(),
        Position::Offset(offset) => offset.to_string(),
        Position::Time(ms) => {
            // Only the files know when batches were appended.
            let dir = data_dir
                .map(|data_dir| disk_topic_dir(data_dir, topic))
                .filter(|dir| dir.is_dir())
                .ok_or_else(|| TopicsError::Offline {
                    command: "read --from TIME",
                    reason: format!(
                        "only a disk topic's files know append times; give --data-dir or -c \
                         for disk topic {topic:?}, or read from an offset"
                    ),
                })?;
            let reader = LogReader::open(&dir)?;
            resolve(&reader, Position::Time(ms))?.to_string()
        }
    };
    let limit = max_events.unwrap_or(u64::MAX);
    let mut written = 0;
    while written < limit {
        let page = (limit - written).min(PAGE_EVENTS);
        let (body, next) = api_get(api, &format!("/topics/{topic}/read?from={from}&n={page}"))?;
        out.write_all(&body).map_err(TopicsError::Output)?;
        let lines = body.iter().filter(|byte| **byte == b'\n').count() as u64;
        written += lines;
        match next {
            Some(next) if lines == page => from = next.to_string(),
            _ => break,
        }
    }
    Ok(written)
}

/// What `reset` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    /// The topic.
    pub topic: String,
    /// The subscription.
    pub subscription: String,
    /// Its committed offset before.
    pub previous: Offset,
    /// Its committed offset now.
    pub offset: Offset,
    /// The topic's end: `offset` to here is what it reads on its next start.
    pub end: Offset,
}

impl Reset {
    /// One line saying what changed.
    pub fn describe(&self) -> String {
        format!(
            "{} {}: committed offset {} -> {} ({} events to read on the next start)",
            self.topic,
            self.subscription,
            self.previous,
            self.offset,
            self.end.0 - self.offset.0
        )
    }
}

/// `reset` on the files of a data_dir, holding its lock meanwhile so that no agent starts in the
/// middle. An offset before the oldest on disk means the oldest.
///
/// # Errors
/// [`TopicsError::AgentRunning`] while an agent holds the data_dir; when the topic or
/// subscription does not exist, the offset is past the end, or the files cannot be read or
/// written.
pub fn reset_offline(
    data_dir: &Path,
    topic: &str,
    subscription: &str,
    to: Position,
) -> Result<Reset, TopicsError> {
    let dir = existing_topic_dir(data_dir, topic)?;
    let _lock = DataDirLock::acquire(data_dir).map_err(|error| match error {
        in_use @ DataDirError::InUse { .. } => TopicsError::AgentRunning(in_use),
        other => TopicsError::DataDir(other),
    })?;
    let reader = LogReader::open(&dir)?;
    let committed: BTreeMap<String, Offset> = inspect::committed_offsets(&dir)?;
    let Some(previous) = committed.get(subscription).copied() else {
        let known: Vec<&str> = committed.keys().map(String::as_str).collect();
        return Err(TopicsError::NoSuchSubscription {
            topic: topic.to_owned(),
            subscription: subscription.to_owned(),
            known: if known.is_empty() {
                "none yet".to_owned()
            } else {
                known.join(", ")
            },
        });
    };
    let (start, end) = (reader.start(), reader.end());
    let offset = resolve(&reader, to)?;
    if offset > end {
        return Err(TopicsError::PastEnd {
            topic: topic.to_owned(),
            offset,
            end,
        });
    }
    let offset = offset.max(start);
    inspect::set_committed(&dir, subscription, offset)?;
    Ok(Reset {
        topic: topic.to_owned(),
        subscription: subscription.to_owned(),
        previous: previous.clamp(start, end),
        offset,
        end,
    })
}

/// `verify` on the files of a data_dir: every topic, or only `topic`.
///
/// # Errors
/// When the topic does not exist or a file cannot be read.
pub fn verify_offline(
    data_dir: &Path,
    topic: Option<&str>,
) -> Result<Vec<(String, Verified)>, TopicsError> {
    let names = match topic {
        Some(topic) => {
            existing_topic_dir(data_dir, topic)?;
            vec![topic.to_owned()]
        }
        None => disk_topics(data_dir)?,
    };
    names
        .into_iter()
        .map(|name| {
            let verified = inspect::verify(&disk_topic_dir(data_dir, &name))?;
            Ok((name, verified))
        })
        .collect()
}

mod render;
#[cfg(test)]
mod tests;

pub use render::{render_list, render_verify};
