//! End-to-end tests: the real `sluice` binary and the real topology against real files, pipes and
//! sockets. One test binary (modules below) keeps linking time down.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

mod acknowledgements;
mod browser;
mod cli;
mod disk_topics;
mod durability;
mod examples;
mod file_held;
mod file_tailing;
mod http_sources;
#[cfg(feature = "kafka")]
mod kafka_two_tier;
mod nats;
mod run;
mod soak;
mod stores;
mod topics;
mod topology;
