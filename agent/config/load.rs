//! Loading configs: placeholder replaced by the config loader.

use super::Config;

/// A loaded config and the warnings found while checking it.
#[derive(Debug)]
pub struct Loaded {
    /// The validated config.
    pub config: Config,
    /// Problems that do not stop the config from running.
    pub warnings: Vec<ConfigError>,
}

/// One problem in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Loads and validates config files.
///
/// # Errors
/// Every problem found.
pub fn load(paths: &[std::path::PathBuf]) -> Result<Loaded, ConfigErrors> {
    let _ = paths;
    Err(ConfigErrors(Vec::new()))
}

/// Loads and validates a config given as text.
///
/// # Errors
/// Every problem found.
pub fn load_str(name: &str, text: &str) -> Result<Loaded, ConfigErrors> {
    let _ = (name, text);
    Err(ConfigErrors(Vec::new()))
}
