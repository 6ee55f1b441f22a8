//! Sizes and durations as users write them in configs: `"512MiB"`, `"10d"`, `"250ms"`.
//!
//! Units are always explicit. Sizes take `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) and
//! `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024); a bare integer is bytes. Durations take `ms`, `s`,
//! `m`, `h`, `d` and `w`, combined as in `"1h30m"`; a bare integer is refused, because nobody
//! remembers whether it means seconds or milliseconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Why a size or duration did not parse; displays as the message users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// A size with a unit this parser does not know.
    #[error("unknown size unit `{unit}` in `{text}`; use B, KB, MB, GB, KiB, MiB or GiB")]
    UnknownSizeUnit {
        /// The unit as written.
        unit: String,
        /// The whole text.
        text: String,
    },
    /// Not a number followed by a unit.
    #[error("expected a size like \"512MiB\", found `{text}`")]
    NotASize {
        /// The text.
        text: String,
    },
    /// More bytes than fit in 64 bits.
    #[error("size `{text}` is too large")]
    SizeTooLarge {
        /// The text.
        text: String,
    },
    /// Not digits followed by units.
    #[error("expected a duration like \"10s\", \"5m\" or \"250ms\", found `{text}`")]
    NotADuration {
        /// The text.
        text: String,
    },
    /// A number of a duration without its unit.
    #[error("duration `{text}` needs a unit (ms, s, m, h, d or w)")]
    DurationWithoutUnit {
        /// The text.
        text: String,
    },
    /// A duration with a unit this parser does not know.
    #[error("unknown duration unit `{unit}` in `{text}`; use ms, s, m, h, d or w")]
    UnknownDurationUnit {
        /// The unit as written.
        unit: String,
        /// The whole text.
        text: String,
    },
}

/// A size in bytes, written with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Parses `"512MiB"`, `"1.5GB"`, `"4096"`.
///
/// # Errors
/// A [`UnitError`] saying what was expected.
pub fn parse_byte_size(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim();
    let multiplier: u64 = match unit {
        "" | "B" | "b" => 1,
        "KB" | "kB" | "kb" => 1000,
        "MB" | "mb" => 1000_u64.pow(2),
        "GB" | "gb" => 1000_u64.pow(3),
        "TB" | "tb" => 1000_u64.pow(4),
        "KiB" | "K" | "k" => 1024,
        "MiB" | "M" => 1024_u64.pow(2),
        "GiB" | "G" => 1024_u64.pow(3),
        "TiB" | "T" => 1024_u64.pow(4),
        other => {
            return Err(UnitError::UnknownSizeUnit {
                unit: other.to_owned(),
                text: text.to_owned(),
            });
        }
    };
    let not_a_size = || UnitError::NotASize {
        text: text.to_owned(),
    };
    if number.is_empty() {
        return Err(not_a_size());
    }
    let value: f64 = number.parse().map_err(|_| not_a_size())?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(UnitError::SizeTooLarge {
            text: text.to_owned(),
        });
    }
    Ok(bytes.round() as u64)
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration, written with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Parses `"250ms"`, `"10s"`, `"5m"`, `"1h30m"`, `"10d"`, `"2w"`.
///
/// # Errors
/// A [`UnitError`] saying what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let expected = || UnitError::NotADuration {
        text: text.to_owned(),
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(expected());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(expected());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| expected())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86_400)),
            "w" => Duration::from_secs(value.saturating_mul(7 * 86_400)),
            "" => {
                return Err(UnitError::DurationWithoutUnit {
                    text: text.to_owned(),
                });
            }
            other => {
                return Err(UnitError::UnknownDurationUnit {
                    unit: other.to_owned(),
                    text: text.to_owned(),
                });
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        if !millis.is_multiple_of(1000) {
            return write!(f, "{millis}ms");
        }
        let secs = self.0.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs.is_multiple_of(size) {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10s\", \"5m\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> Self {
        HumanDuration(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_byte_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_byte_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert_eq!(parse_byte_size("64 KiB"), Ok(65_536));
        assert!(
            parse_byte_size("12 parsecs")
                .unwrap_err()
                .to_string()
                .contains("unknown size unit")
        );
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("").is_err());
        assert!(parse_byte_size("99999999999TiB").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10d"), Ok(Duration::from_secs(864_000)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("10")
                .unwrap_err()
                .to_string()
                .contains("needs a unit")
        );
        assert!(
            parse_duration("5 fortnights")
                .unwrap_err()
                .to_string()
                .contains("unknown duration unit")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m5").is_err());
    }

    #[test]
    fn deserialize_from_toml() {
        #[derive(serde::Deserialize)]
        struct Limits {
            size: ByteSize,
            bytes: ByteSize,
            wait: HumanDuration,
        }
        let limits: Limits = toml::from_str("size = \"1KiB\"\nbytes = 7\nwait = \"2s\"").unwrap();
        assert_eq!(limits.size, ByteSize(1024));
        assert_eq!(limits.bytes, ByteSize(7));
        assert_eq!(limits.wait.get(), Duration::from_secs(2));
        let error = toml::from_str::<Limits>("size = -1\nbytes = 1\nwait = \"1s\"")
            .err()
            .unwrap();
        assert!(error.to_string().contains("negative"));
    }

    proptest! {
        #[test]
        fn sizes_round_trip_through_display(bytes in 0u64..(1 << 50)) {
            let shown = ByteSize(bytes).to_string();
            prop_assert_eq!(parse_byte_size(&shown), Ok(bytes));
        }

        #[test]
        fn durations_round_trip_through_display(millis in 0u64..(1 << 40)) {
            let duration = Duration::from_millis(millis);
            let shown = HumanDuration(duration).to_string();
            prop_assert_eq!(parse_duration(&shown), Ok(duration));
        }

        #[test]
        fn parsers_never_panic(text in ".{0,24}") {
            let _ = parse_byte_size(&text);
            let _ = parse_duration(&text);
        }
    }
}
