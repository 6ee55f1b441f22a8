//! sluice-pipelines: the event model, codecs, the [`Step`] trait and every pipeline step.
//!
//! This crate is the bottom of sluice's dependency graph: sinks and the agent build on it, it
//! knows nothing of them. Everything here is synchronous and pure — steps take a batch and give
//! events back, with no I/O and no async — so it can be tested and benchmarked in isolation and
//! fused into one task per pipeline worker.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codec;
pub mod condition;
pub mod event;
pub(crate) mod hash;
pub mod registry;
pub mod step;
pub mod steps;
pub mod synthetic;
pub mod test_engine;
pub mod units;

pub use condition::{Condition, ConditionError, Expression};
pub use event::{Batch, Event, EventMeta, FieldName, Fields, SourceId, Str, Value};
pub use registry::ComponentKind;
pub use step::{BuildError, DeadLetter, OnError, Step, StepContext};
pub use steps::StepConfig;
