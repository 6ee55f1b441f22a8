//! Configuration: the typed form of a sluice TOML config, and how it is loaded and checked.
//!
//! Loading goes raw TOML → validated [`Config`] → (in [`crate::topology`]) a running graph:
//! - [`load()`] reads the files (directories contribute their `*.toml` files in name order),
//!   interpolates `${VAR}` from the environment, checks each file strictly with positions, layers
//!   them and `SLUICE_`-prefixed environment overrides with the `config` crate, deserializes every
//!   component through its registry, and validates the graph. Errors are collected, not stopped at
//!   the first, and each names the file, line, column and key.
//! - Validation does no I/O; building (in the topology) does not re-validate.
//!
//! Errors and warnings render as `FILE:LINE:COL: KEY.PATH: message`, for example:
//!
//! ```text
//! pipeline.toml:9:1: sinks.out.input: topic `web.reqests` is not produced by any source or pipeline (did you mean `web.requests`?)
//! ```
//!
//! Modules, in the order loading uses them: `load` (files, passes, rendering), `interpolate`
//! (`${VAR}`), `locate` (key path → line and column), `read` (a config tree → a draft, every
//! problem collected; `tree` adapts `toml::Value` and `config::Value` to it; `deprecated`
//! rewrites renamed keys to today's names, each a warning), `path` (key paths), `validate`
//! (draft → [`Config`]).

mod deprecated;
mod interpolate;
mod load;
mod locate;
mod path;
mod read;
#[cfg(test)]
mod tests;
mod tree;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use sluice_pipelines::units::{ByteSize, HumanDuration};
use sluice_pipelines::{OnError, StepConfig};
use sluice_sink::SinkConfig;
use sluice_sink::driver::DriverConfig;

use crate::sources::SourceConfig;
use crate::topic::disk::{DiskSettings, FsyncPolicy, LogConfig};
use crate::topic::{StartAt, TopicSettings, WhenFull};

pub use load::{ConfigError, ConfigErrors, Loaded, load, load_str};
pub use locate::Position;

/// The name of the topic that receives rejected events when a pipeline names no other.
pub const DEFAULT_DEAD_LETTER_TOPIC: &str = "dead_letter";

/// A validated configuration, ready to build.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where checkpoints and disk topics live (`data_dir`, default `./data`).
    pub data_dir: PathBuf,
    /// How long a shutdown may take to drain in-flight events (`shutdown_timeout`, default 30s).
    pub shutdown_timeout: Duration,
    /// Sources by name.
    pub sources: IndexMap<String, SourceDef>,
    /// Every topic the graph uses, by name: the declared ones with their settings, and the
    /// implied ones with defaults.
    pub topics: IndexMap<String, TopicConfig>,
    /// Pipelines by name.
    pub pipelines: IndexMap<String, PipelineDef>,
    /// Sinks by name.
    pub sinks: IndexMap<String, SinkDef>,
    /// The admin API (`[api]`), when enabled.
    pub api: Option<ApiConfig>,
}

/// The admin API's settings, as written under `[api]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where it listens (`address = "127.0.0.1:9598"`); keep it off public interfaces: it has
    /// no authentication.
    #[serde(
        default = "default_api_address",
        deserialize_with = "deserialize_socket_address"
    )]
    pub address: std::net::SocketAddr,
}

/// An `ip:port` address, with an error that shows the expected form.
fn deserialize_socket_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::net::SocketAddr, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an IP address and port such as \"127.0.0.1:9598\", found {text:?}"
        ))
    })
}

fn default_api_address() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9598))
}

/// A source and the topic it publishes to.
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// The topic its events go to (`topic`).
    pub topic: String,
    /// Its kind-specific config.
    pub config: SourceConfig,
}

/// Where a topic keeps its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// In memory: fast; a crash loses what subscriptions had not acknowledged.
    #[default]
    Memory,
    /// On disk, under `data_dir/topics/<name>/`: survives crashes and restarts.
    Disk,
}

/// When a disk topic fsyncs what it wrote (`fsync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// After every group of writes, before they count as stored.
    Always,
    /// Every `fsync_interval` (default 100ms).
    #[default]
    Interval,
    /// Never: the kernel writes back on its own schedule.
    Never,
}

/// A topic's settings, as written under `[topics."name"]`. Every key is optional; the defaults
/// depend on the storage (see [`TopicDef::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDef {
    /// `memory` or `disk` (default `memory`; `disk` for dead-letter topics).
    #[serde(default)]
    pub storage: Option<StorageKind>,
    /// Most events held (memory default 20000; disk default unbounded).
    #[serde(default)]
    pub max_events: Option<u64>,
    /// Most bytes held (memory default 16MiB; disk default 1GiB, dead letters 256MiB).
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// `block` (default), `drop_newest` or `drop_oldest` (default for dead letters).
    #[serde(default)]
    pub when_full: Option<WhenFull>,
    /// Disk topics: segments whose newest event is older than this are deleted, read or not
    /// (default: none; dead letters 7d).
    #[serde(default)]
    pub retention: Option<HumanDuration>,
    /// Disk topics: a segment file is closed once it holds this many bytes (default 64MiB).
    #[serde(default)]
    pub segment_bytes: Option<ByteSize>,
    /// Disk topics: a segment file is closed once its first event is this old (default 1d).
    #[serde(default)]
    pub segment_age: Option<HumanDuration>,
    /// Disk topics: `always`, `interval` (default) or `never`.
    #[serde(default)]
    pub fsync: Option<FsyncMode>,
    /// Disk topics with `fsync = "interval"`: how often (default 100ms).
    #[serde(default)]
    pub fsync_interval: Option<HumanDuration>,
    /// Disk topics: memory for events read back from disk by lagging subscriptions, and as much
    /// again for the newest events (default 16MiB each).
    #[serde(default)]
    pub cache_bytes: Option<ByteSize>,
    /// Whether something outside this config feeds the topic (silences the "nothing produces
    /// this topic" check, which becomes a warning).
    #[serde(default)]
    pub external: bool,
}

/// The keys of [`TopicDef`] that only disk topics take.
pub const DISK_ONLY_TOPIC_KEYS: [&str; 6] = [
    "retention",
    "segment_bytes",
    "segment_age",
    "fsync",
    "fsync_interval",
    "cache_bytes",
];

/// Default `max_bytes` of a disk topic.
pub const DEFAULT_DISK_MAX_BYTES: u64 = 1 << 30;
/// Default `max_bytes` of a dead-letter topic (on disk).
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 256 << 20;
/// Default `retention` of a dead-letter topic.
pub const DEFAULT_DEAD_LETTER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl TopicDef {
    /// The storage this topic gets: as set, else disk for a dead-letter topic (so rejected
    /// events are never evicted unseen) and memory for the rest.
    pub fn storage_kind(&self, dead_letter: bool) -> StorageKind {
        self.storage.unwrap_or(if dead_letter {
            StorageKind::Disk
        } else {
            StorageKind::Memory
        })
    }

    /// The settings with every default filled in. `dead_letter` says whether pipelines or sinks
    /// send rejected events to this topic.
    pub fn resolve(&self, dead_letter: bool) -> TopicConfig {
        let memory = TopicSettings::default();
        match self.storage_kind(dead_letter) {
            StorageKind::Memory => TopicConfig {
                settings: TopicSettings {
                    max_events: self.max_events.unwrap_or(memory.max_events),
                    max_bytes: self.max_bytes.map_or(memory.max_bytes, ByteSize::bytes),
                    when_full: self.when_full.unwrap_or_default(),
                },
                storage: TopicStorage::Memory,
            },
            StorageKind::Disk => {
                let default_log = LogConfig::default();
                let cache = self
                    .cache_bytes
                    .map(|bytes| usize::try_from(bytes.bytes()).unwrap_or(usize::MAX));
                let max_bytes = self.max_bytes.map_or(
                    if dead_letter {
                        DEFAULT_DEAD_LETTER_MAX_BYTES
                    } else {
                        DEFAULT_DISK_MAX_BYTES
                    },
                    ByteSize::bytes,
                );
                let log = LogConfig {
                    segment_bytes: self
                        .segment_bytes
                        .map_or(default_log.segment_bytes, ByteSize::bytes),
                    segment_age: self
                        .segment_age
                        .map(HumanDuration::get)
                        .or(default_log.segment_age),
                    fsync: match self.fsync.unwrap_or_default() {
                        FsyncMode::Always => FsyncPolicy::Always,
                        FsyncMode::Never => FsyncPolicy::Never,
                        FsyncMode::Interval => self
                            .fsync_interval
                            .map_or(FsyncPolicy::default(), |interval| {
                                FsyncPolicy::Interval(interval.get())
                            }),
                    },
                    recent_cache_bytes: cache.unwrap_or(default_log.recent_cache_bytes),
                    read_cache_bytes: cache.unwrap_or(default_log.read_cache_bytes),
                    ..default_log
                };
                TopicConfig {
                    settings: TopicSettings {
                        max_events: self.max_events.unwrap_or(u64::MAX),
                        max_bytes,
                        when_full: self.when_full.unwrap_or(if dead_letter {
                            WhenFull::DropOldest
                        } else {
                            WhenFull::Block
                        }),
                    },
                    storage: TopicStorage::Disk(DiskSettings {
                        log,
                        retention: self.retention.map(HumanDuration::get).or(if dead_letter {
                            Some(DEFAULT_DEAD_LETTER_RETENTION)
                        } else {
                            None
                        }),
                        max_bytes,
                        ..DiskSettings::default()
                    }),
                }
            }
        }
    }
}

/// A topic's final settings: capacity and where it keeps its events.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// Capacity and what a full topic does.
    pub settings: TopicSettings,
    /// Memory or disk, with the disk log's settings.
    pub storage: TopicStorage,
}

impl TopicConfig {
    /// Whether the topic is kept on disk.
    pub fn is_disk(&self) -> bool {
        matches!(self.storage, TopicStorage::Disk(_))
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicDef::default().resolve(false)
    }
}

/// Where a topic keeps its events, with the settings of that storage.
#[derive(Debug, Clone, PartialEq)]
pub enum TopicStorage {
    /// In memory.
    Memory,
    /// In a disk log under `<data_dir>/topics/<name>/`.
    Disk(DiskSettings),
}

/// How a pipeline or sink reads its input topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionDef {
    /// The input topic (`input`).
    pub input: String,
    /// Competing workers of the subscription (`workers`, default 1).
    pub workers: usize,
    /// Whether the subscription holds producers back when the topic is full (`blocking`,
    /// default true); a non-blocking one loses its oldest unread events instead.
    pub blocking: bool,
    /// How long a worker may hold a batch before it goes to another (`ack_timeout`; default 5m
    /// for pipelines, none for sinks, whose driver retries a failing store itself).
    pub ack_timeout: Option<Duration>,
    /// Where a new subscription starts in a disk topic (`start_at`, default `latest`).
    pub start_at: StartAt,
}

/// A pipeline: an input topic, fused steps, an output topic.
#[derive(Debug, Clone)]
pub struct PipelineDef {
    /// How it reads its input.
    pub subscription: SubscriptionDef,
    /// Where its output goes (`output`).
    pub output: String,
    /// Where rejected events go (`dead_letter`, default `dead_letter`).
    pub dead_letter: String,
    /// What to do with rejected events (`on_error`: `dead_letter` (default) or `drop`).
    pub on_error: OnError,
    /// Whether open windows are emitted when the pipeline stops (`flush_on_shutdown`, default
    /// true).
    pub flush_on_shutdown: bool,
    /// The steps, in order (`steps`).
    pub steps: Vec<StepConfig>,
}

/// A sink and the topic it reads.
#[derive(Debug, Clone)]
pub struct SinkDef {
    /// How it reads its input.
    pub subscription: SubscriptionDef,
    /// Batching, concurrency, retries and healthcheck (`batch`, `concurrency`, `retry`,
    /// `healthcheck`).
    pub driver: DriverConfig,
    /// Its kind-specific config.
    pub config: SinkConfig,
}

/// The default `workers` of a subscription.
pub const DEFAULT_WORKERS: usize = 1;
