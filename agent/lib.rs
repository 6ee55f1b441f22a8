//! sluice: a log-collection and streaming pipeline agent.
//!
//! The agent crate owns everything that runs: the command line, config loading and validation,
//! the topology that wires sources, topics, pipelines and sinks together, the topic queue itself,
//! and the sources. Steps live in `sluice-pipelines`, sinks in `sluice-sink`.
// The agent has no unsafe code. Its tests need one kind: changing the process environment
// (`std::env::set_var`), allowed on that test alone.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod api;
pub mod config;
pub mod data_dir;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod metrics;
pub mod rejections;
pub mod shutdown;
pub mod sources;
pub mod test_command;
pub mod topic;
pub mod topics_cli;
pub mod topology;
