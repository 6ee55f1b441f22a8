//! Every pipeline step kind, registered in one closed enum.
//!
//! A step kind is a file in this folder with its config struct (serde, `deny_unknown_fields`)
//! and its runtime beside it, plus one line in [`StepConfig`].

use crate::component_kinds;
use crate::step::{BuildError, Step};

component_kinds! {
    /// The config of one pipeline step, selected by its `type`.
    pub enum StepConfig {}
}

impl StepConfig {
    /// Builds the step: compiles patterns, interns field names. Pure: no I/O.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key at fault when the config is invalid (a regex that does not
    /// compile, a type name that does not exist).
    pub fn build(&self) -> Result<Box<dyn Step>, BuildError> {
        match *self {}
    }
}
