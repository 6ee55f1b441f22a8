//! The driver's config keys, shared by every sink: `batch`, `concurrency`, `retry`,
//! `healthcheck`.
//!
//! ```toml
//! batch = { max_events = 1000, max_bytes = "1MiB", timeout = "1s" }
//! concurrency = 4            # or "adaptive"
//! retry = { initial = "100ms", max = "30s" }   # max_attempts = 10 to give up; default never
//!                                              # (a store that cannot be reached: at most 1s)
//! healthcheck = true
//! ```
//!
//! Every sink config carries these four keys (serde cannot flatten them into a config that denies
//! unknown keys), and hands them to [`DriverConfig`] through its `driver()` method.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::BuildError;
use crate::units::{ByteSize, HumanDuration};

/// The default `batch.max_events`.
pub const DEFAULT_MAX_EVENTS: usize = 1000;
/// The default `batch.max_bytes`: 1 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// The default `batch.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default fixed `concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The most requests `concurrency = "adaptive"` lets in flight (and the largest fixed value).
pub const MAX_CONCURRENCY: usize = 64;
/// The default `retry.initial`.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(100);
/// The default `retry.max`.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);

/// Everything the driver needs from a sink's config: the four keys every sink has, read by the
/// agent's config loader beside `input` (the sink kinds' own configs do not carry them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    /// When a request is full (`batch`).
    #[serde(default)]
    pub batch: BatchConfig,
    /// How many requests may be in flight (`concurrency`).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// How transient failures are retried (`retry`).
    #[serde(default)]
    pub retry: RetryConfig,
    /// Whether to check the store at start-up (`healthcheck`, default true).
    #[serde(default = "default_healthcheck")]
    pub healthcheck: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            batch: BatchConfig::default(),
            concurrency: Concurrency::default(),
            retry: RetryConfig::default(),
            healthcheck: true,
        }
    }
}

impl DriverConfig {
    /// Checks the values without touching anything outside the process.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key (`batch.max_events`, `concurrency`, `retry.max`, …).
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.batch.max_events == 0 {
            return Err(BuildError::at("batch.max_events", "must be at least 1"));
        }
        if self.batch.max_bytes.bytes() == 0 {
            return Err(BuildError::at("batch.max_bytes", "must be at least 1 byte"));
        }
        if let Concurrency::Fixed(n) = self.concurrency
            && !(1..=MAX_CONCURRENCY).contains(&n)
        {
            return Err(BuildError::at(
                "concurrency",
                format!("must be between 1 and {MAX_CONCURRENCY}, or \"adaptive\"; found {n}"),
            ));
        }
        if self.retry.initial.get().is_zero() {
            return Err(BuildError::at("retry.initial", "must be greater than zero"));
        }
        if self.retry.max.get() < self.retry.initial.get() {
            return Err(BuildError::at(
                "retry.max",
                format!(
                    "must not be shorter than retry.initial ({})",
                    self.retry.initial
                ),
            ));
        }
        if self.retry.max_attempts == Some(0) {
            return Err(BuildError::at(
                "retry.max_attempts",
                "must be at least 1 (leave it out to retry forever)",
            ));
        }
        Ok(())
    }
}

/// When the driver sends a request: whichever limit is reached first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one request; default 1000.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes in one request, as the topic queue estimates events ([`Event::estimated_size`]);
    /// a single larger event goes alone. Default `"1MiB"`.
    ///
    /// [`Event::estimated_size`]: sluice_pipelines::Event::estimated_size
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Longest time the first event of a request waits for more; default `"1s"`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_max_events() -> usize {
    DEFAULT_MAX_EVENTS
}

fn default_max_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_BYTES)
}

fn default_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_TIMEOUT)
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: DEFAULT_MAX_EVENTS,
            max_bytes: default_max_bytes(),
            timeout: default_timeout(),
        }
    }
}

/// How many requests a sink may have in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// At most this many (`concurrency = 4`).
    Fixed(usize),
    /// Found by the driver from latency and errors, between 1 and [`MAX_CONCURRENCY`]
    /// (`concurrency = "adaptive"`).
    Adaptive,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency::Fixed(DEFAULT_CONCURRENCY)
    }
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConcurrencyVisitor;
        impl Visitor<'_> for ConcurrencyVisitor {
            type Value = Concurrency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of requests such as 4, or \"adaptive\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Concurrency, E> {
                usize::try_from(v)
                    .map(Concurrency::Fixed)
                    .map_err(|_| E::custom("concurrency is too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Concurrency, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("concurrency cannot be negative"))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Concurrency, E> {
                match v {
                    "adaptive" => Ok(Concurrency::Adaptive),
                    other => Err(E::custom(format!(
                        "expected a number of requests or \"adaptive\", found {other:?}"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(ConcurrencyVisitor)
    }
}

/// How transient failures are retried: exponential backoff with jitter, from `initial` doubling
/// up to `max`, forever unless `max_attempts` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The first delay; default `"100ms"`.
    #[serde(default = "default_initial")]
    pub initial: HumanDuration,
    /// The longest delay; default `"30s"`. A store that cannot be reached at all is retried at
    /// least every [`RECONNECT_MAX`](super::RECONNECT_MAX).
    #[serde(default = "default_max")]
    pub max: HumanDuration,
    /// Attempts (the first included) after which the events are rejected with the last error;
    /// default: retry forever (events wait in the topic while the store is down).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

fn default_initial() -> HumanDuration {
    HumanDuration(DEFAULT_RETRY_INITIAL)
}

fn default_max() -> HumanDuration {
    HumanDuration(DEFAULT_RETRY_MAX)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: default_initial(),
            max: default_max(),
            max_attempts: None,
        }
    }
}

impl RetryConfig {
    /// The delay before retry number `retry` (1 for the first retry) of a store that cannot be
    /// reached, before jitter: as [`RetryConfig::backoff`], but capped at
    /// [`RECONNECT_MAX`](super::RECONNECT_MAX) (or `max` if shorter), so a store that comes back
    /// is written to within about a second.
    pub fn reconnect(&self, retry: u32) -> Duration {
        self.backoff(retry).min(super::RECONNECT_MAX)
    }

    /// The delay before retry number `retry` (1 for the first retry), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial
            .get()
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max.get())
    }
}

/// `healthcheck` defaults to on.
pub fn default_healthcheck() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_parsing() {
        let keys: DriverConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(keys.batch, BatchConfig::default());
        assert_eq!(keys.concurrency, Concurrency::Fixed(4));
        assert!(keys.healthcheck);
        let keys: DriverConfig = serde_json::from_value(json!({
            "batch": {"max_events": 10, "max_bytes": "2KiB", "timeout": "250ms"},
            "concurrency": "adaptive",
            "retry": {"initial": "1s", "max": "1m", "max_attempts": 3},
            "healthcheck": false,
        }))
        .unwrap();
        assert_eq!(keys.batch.max_events, 10);
        assert_eq!(keys.batch.max_bytes, ByteSize(2048));
        assert_eq!(keys.batch.timeout.get(), Duration::from_millis(250));
        assert_eq!(keys.concurrency, Concurrency::Adaptive);
        assert_eq!(keys.retry.max_attempts, Some(3));
        assert!(!keys.healthcheck);
        assert!(serde_json::from_value::<DriverConfig>(json!({"concurrency": "lots"})).is_err());
        assert!(serde_json::from_value::<DriverConfig>(json!({"concurrency": -1})).is_err());
        assert!(serde_json::from_value::<DriverConfig>(json!({"batch": {"size": 1}})).is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let key = |config: DriverConfig| config.validate().unwrap_err().key.unwrap();
        let mut config = DriverConfig::default();
        config.validate().unwrap();
        config.batch.max_events = 0;
        assert_eq!(key(config.clone()), "batch.max_events");
        config = DriverConfig {
            concurrency: Concurrency::Fixed(65),
            ..DriverConfig::default()
        };
        assert_eq!(key(config), "concurrency");
        config = DriverConfig::default();
        config.retry.max = HumanDuration(Duration::from_millis(10));
        assert_eq!(key(config), "retry.max");
        config = DriverConfig::default();
        config.retry.max_attempts = Some(0);
        assert_eq!(key(config), "retry.max_attempts");
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let retry = RetryConfig::default();
        let delays: Vec<u128> = (1..=12).map(|n| retry.backoff(n).as_millis()).collect();
        assert_eq!(
            delays,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(retry.backoff(1000), Duration::from_secs(30));
        let reconnect: Vec<u128> = (1..=6).map(|n| retry.reconnect(n).as_millis()).collect();
        assert_eq!(reconnect, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry.reconnect(1000), Duration::from_secs(1));
    }
}
