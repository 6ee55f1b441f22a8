//! Every sink kind, registered in one closed enum.
//!
//! A sink kind is a file (or folder) here with its config struct (serde, `deny_unknown_fields`)
//! and its runtime beside it, plus one line in [`SinkConfig`] and one arm in each `match` below.

use sluice_pipelines::component_kinds;

use crate::{BuildError, Sink, SinkContext};

component_kinds! {
    /// The config of one sink, selected by its `type`. The agent-level keys every sink has
    /// (`input`, …) are read by the agent before this.
    pub enum SinkConfig {}
}

impl SinkConfig {
    /// Checks the config without touching anything outside the process.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault.
    pub fn validate(&self) -> Result<(), BuildError> {
        match *self {}
    }

    /// Builds the sink: opens files, connects clients.
    ///
    /// # Errors
    /// A [`BuildError`] when the sink cannot start (a directory that cannot be created).
    pub async fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, BuildError> {
        let _ = ctx;
        match *self {}
    }
}
