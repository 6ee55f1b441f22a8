//! Unit-bearing config values: durations written as `"500ms"`, `"10s"`, `"5m"`, `"2h"`, `"1d"`.
//!
//! Config keys carry their unit in the value (STYLE.md § Names), so a duration is a string with
//! one integer and one unit, nothing looser: `"1.5s"`, `"10"` or `"10 s"` are rejected with a
//! message saying what is expected rather than guessed at.

use std::time::Duration;

use serde::Deserialize;

/// What every duration error says is expected.
const EXPECTED: &str = "expected an integer followed by ms, s, m, h or d (e.g. \"10s\")";

/// Parses a duration such as `"500ms"`, `"10s"`, `"5m"`, `"2h"` or `"1d"`.
///
/// # Errors
/// A message naming the input and the expected form when it is not one non-negative integer
/// followed by one of `ms`, `s`, `m`, `h`, `d`, or when it does not fit in a [`Duration`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!("invalid duration {text:?}: {EXPECTED}"));
    }
    let seconds_per_unit: u64 = match unit {
        "ms" => {
            let millis: u64 = number
                .parse()
                .map_err(|_| format!("duration {text:?} is too large"))?;
            return Ok(Duration::from_millis(millis));
        }
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(format!("invalid duration {text:?}: {EXPECTED}")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds_per_unit))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Deserializes an optional duration string with [`parse_duration`], for
/// `#[serde(default, deserialize_with = "…")]` on an `Option<Duration>` config key.
///
/// # Errors
/// The deserializer's error carrying [`parse_duration`]'s message, so the config loader reports
/// it at the key's path.
pub fn deserialize_opt_duration<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn rejects_loose_forms() {
        for bad in [
            "", "10", "s", "1.5s", "10 s", " 10s", "10S", "-1s", "10sec", "1m1s", "ms",
        ] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains(EXPECTED), "{bad:?}: {error}");
        }
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err("duration \"99999999999999999999s\" is too large".to_owned())
        );
        assert!(parse_duration("999999999999999999d").is_err());
        assert_eq!(
            parse_duration("18446744073709551615ms"),
            Ok(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn deserializes_with_a_message() {
        #[derive(Debug, Deserialize)]
        struct Config {
            #[serde(default, deserialize_with = "deserialize_opt_duration")]
            every: Option<Duration>,
        }
        let config: Config = serde_json::from_str(r#"{"every":"2m"}"#).unwrap();
        assert_eq!(config.every, Some(Duration::from_secs(120)));
        let config: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(config.every, None);
        let error = serde_json::from_str::<Config>(r#"{"every":"2 minutes"}"#).unwrap_err();
        assert!(error.to_string().contains(EXPECTED), "{error}");
    }
}
