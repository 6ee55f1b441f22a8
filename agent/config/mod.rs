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
use crate::topic::{TopicSettings, WhenFull};

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
    pub topics: IndexMap<String, TopicDef>,
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
    /// On disk, under `data_dir`.
    Disk,
}

/// A topic's settings, as written under `[topics."name"]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDef {
    /// `memory` (default) or `disk`.
    #[serde(default)]
    pub storage: StorageKind,
    /// Most events held (default 20000).
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Most bytes held (default 16MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// `block` (default), `drop_newest` or `drop_oldest`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// For disk topics: how long events are kept after every subscription acknowledged them.
    #[serde(default)]
    pub retention: Option<HumanDuration>,
    /// Whether something outside this config feeds the topic (silences the "nothing produces
    /// this topic" check, which becomes a warning).
    #[serde(default)]
    pub external: bool,
}

fn default_max_events() -> u64 {
    TopicSettings::default().max_events
}

fn default_max_bytes() -> ByteSize {
    ByteSize(TopicSettings::default().max_bytes)
}

impl Default for TopicDef {
    fn default() -> Self {
        TopicDef {
            storage: StorageKind::Memory,
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            when_full: WhenFull::Block,
            retention: None,
            external: false,
        }
    }
}

impl TopicDef {
    /// The queue settings of this topic.
    pub fn settings(&self) -> TopicSettings {
        TopicSettings {
            max_events: self.max_events,
            max_bytes: self.max_bytes.bytes(),
            when_full: self.when_full,
        }
    }
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
