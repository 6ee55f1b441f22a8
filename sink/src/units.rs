//! Units in sink configs: the one size and duration format of every sluice config
//! ([`sluice_pipelines::units`]), plus serde helpers for plain `std` types.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
pub use sluice_pipelines::units::{ByteSize, HumanDuration, parse_byte_size, parse_duration};

/// Deserializes an optional duration string (`"10s"`) into `Option<Duration>`.
///
/// # Errors
/// The value is not a duration string.
pub fn deserialize_opt_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Ok(Option::<HumanDuration>::deserialize(deserializer)?.map(HumanDuration::get))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Config {
        #[serde(default, deserialize_with = "deserialize_opt_duration")]
        every: Option<Duration>,
    }

    #[test]
    fn optional_durations_deserialize() {
        let config: Config = serde_json::from_str(r#"{"every":"1m30s"}"#).unwrap();
        assert_eq!(config.every, Some(Duration::from_secs(90)));
        let config: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(config.every, None);
        assert!(serde_json::from_str::<Config>(r#"{"every":"90"}"#).is_err());
    }
}
