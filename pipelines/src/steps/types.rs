//! Field type conversions shared by `parse` (`types`, `timestamp_format`) and `remap` (`coerce`).
//!
//! A type is written `string`, `int`, `float`, `bool`, `timestamp` (RFC 3339) or
//! `timestamp|<format>`, where the format is one of:
//! - a chrono strftime format such as `%d/%b/%Y:%H:%M:%S %z`. Zones: `%z` (`+0200`), `%:z`
//!   (`+02:00`) and `%#z` read numeric offsets; `%Z` at the very end of the format reads a zone
//!   *name*, of which only `UTC`, `GMT`, `UT` and `Z` are accepted (named zones such as `CET` are
//!   ambiguous abbreviations, so a time with one is rejected rather than guessed). A format with
//!   no zone reads UTC unless a zone follows it: `timestamp|<format>|<zone>` reads times without
//!   an offset in `<zone>` — an IANA name (`Europe/Berlin`, daylight saving applied; a time that
//!   occurs twice when clocks go back reads as the earlier one, a time skipped when they go
//!   forward is an error), a fixed offset (`+02:00`), `UTC` or `local` (the machine's zone, from
//!   `TZ` or `/etc/localtime`). Times that carry an offset keep it. A format without a time of
//!   day reads midnight.
//! - `rfc3339` (the same as plain `timestamp`);
//! - `unix`, `unix_ms`, `unix_us`, `unix_ns`: seconds (or milli-, micro-, nanoseconds) since
//!   1970-01-01 UTC, from an int, a float or a numeric string.
//!
//! The nginx/Apache time format `%d/%b/%Y:%H:%M:%S %z` has a hand-written fast path
//! ([`parse_clf_time`]) that answers only for input in the exact shape nginx writes and falls
//! back to chrono for anything else, so its results are chrono's.
//!
//! For `int` and `float`, `-` (what nginx writes for an absent number), the empty string and
//! JSON `null` become `null`. Other text that does not convert is an error the caller reports.

use chrono::format::{Fixed, Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::codec::json::{encode_value, format_timestamp};
use crate::event::{FieldName, Str, Value};

/// A conversion named in `types` or `coerce`.
#[derive(Debug, Clone)]
pub(crate) enum FieldType {
    String,
    Int,
    Float,
    Bool,
    Timestamp(TimestampFormat),
}

/// How a timestamp is written.
#[derive(Debug, Clone)]
pub(crate) enum TimestampFormat {
    Rfc3339,
    /// Units per second: 1 for `unix`, 1000 for `unix_ms`, …
    Unix {
        per_second: i64,
        name: &'static str,
    },
    Strftime(Strftime),
}

/// A strftime format, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Strftime {
    source: String,
    items: Vec<Item<'static>>,
    /// The format ends with `%Z` (removed from `items`): the rest of the text is a zone name.
    zone_name: bool,
    /// The format is exactly the nginx one, which has a fast path.
    clf: bool,
    /// The zone of times that carry no offset.
    zone: Zone,
}

/// The zone a strftime format reads times without an offset in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Zone {
    /// UTC (the default).
    Utc,
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
    /// An IANA zone, with its daylight saving rules.
    Named(chrono_tz::Tz),
    /// The machine's zone.
    Local,
}

impl Zone {
    /// Parses `UTC`, `local`, an offset such as `+02:00` / `-0530`, or an IANA zone name.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("utc") || text == "Z" {
            return Ok(Zone::Utc);
        }
        if text.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        if text.starts_with(['+', '-']) {
            let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
            let valid = digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit());
            // Only four digits are read: longer runs must not reach the arithmetic below.
            let (hours, minutes): (i32, i32) = match (digits.get(..2), digits.get(2..)) {
                (Some(h), Some(m)) if valid => (h.parse().unwrap_or(99), m.parse().unwrap_or(99)),
                _ => (99, 99),
            };
            let seconds = (hours * 60 + minutes) * 60 * if text.starts_with('-') { -1 } else { 1 };
            return (valid && hours < 24 && minutes < 60)
                .then(|| FixedOffset::east_opt(seconds))
                .flatten()
                .map(Zone::Fixed)
                .ok_or_else(|| format!("invalid UTC offset `{text}`; expected e.g. +02:00"));
        }
        text.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            format!(
                "unknown time zone `{text}`; expected an IANA name such as Europe/Berlin, an \
                 offset such as +02:00, UTC or local"
            )
        })
    }

    /// The UTC time of `local`, read in this zone: the earlier one when it occurs twice, `None`
    /// when it does not occur at all (skipped by a daylight saving change).
    fn to_utc(self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        fn earliest<Z: TimeZone>(zone: &Z, local: NaiveDateTime) -> Option<DateTime<Utc>> {
            let earliest = zone.from_local_datetime(&local).earliest()?;
            Some(earliest.with_timezone(&Utc))
        }
        match self {
            Zone::Utc => Some(local.and_utc()),
            Zone::Fixed(offset) => earliest(&offset, local),
            Zone::Named(zone) => earliest(&zone, local),
            Zone::Local => earliest(&Local, local),
        }
    }
}

/// The nginx `$time_local` / Apache `%t` format.
pub(crate) const CLF_FORMAT: &str = "%d/%b/%Y:%H:%M:%S %z";

impl FieldType {
    /// Parses a type name such as `int` or `timestamp|%Y-%m-%d`.
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        Ok(match spec {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "timestamp" => FieldType::Timestamp(TimestampFormat::Rfc3339),
            other => {
                let Some(("timestamp", format)) = other.split_once('|') else {
                    return Err(format!(
                        "unknown type `{other}`; expected string, int, float, bool, timestamp or \
                         timestamp|<format>"
                    ));
                };
                if format.is_empty() {
                    return Err("empty timestamp format after `timestamp|`".to_owned());
                }
                FieldType::Timestamp(TimestampFormat::parse(format)?)
            }
        })
    }

    /// What the type is, for error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            FieldType::String => "string".to_owned(),
            FieldType::Int => "int".to_owned(),
            FieldType::Float => "float".to_owned(),
            FieldType::Bool => "bool".to_owned(),
            FieldType::Timestamp(format) => format.describe(),
        }
    }

    /// Whether converting to this type leaves strings as they are.
    pub(crate) fn is_string(&self) -> bool {
        matches!(self, FieldType::String)
    }

    /// Converts text; `whole` is the string `text` is a slice of, for zero-copy strings.
    pub(crate) fn convert_str(&self, text: &str, whole: &Str) -> Option<Value> {
        Some(match self {
            FieldType::String => Value::String(whole.slice_ref(text)),
            FieldType::Int | FieldType::Float if text == "-" || text.is_empty() => Value::Null,
            FieldType::Int => Value::Int(text.parse().ok()?),
            FieldType::Float => Value::Float(parse_float(text)?),
            FieldType::Bool => Value::Bool(match text {
                "1" => true,
                "0" => false,
                _ if text.eq_ignore_ascii_case("true") => true,
                _ if text.eq_ignore_ascii_case("false") => false,
                _ => return None,
            }),
            FieldType::Timestamp(format) => Value::Timestamp(format.parse_str(text)?),
        })
    }

    /// Converts a value, giving it back when it does not convert.
    pub(crate) fn convert_value(&self, value: Value) -> Result<Value, Value> {
        const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;
        match (self, value) {
            (_, Value::Null) => Ok(Value::Null),
            (_, Value::String(text)) => self
                .convert_str(text.as_str(), &text)
                .ok_or(Value::String(text)),
            (FieldType::String, Value::Int(i)) => Ok(Value::from(i.to_string())),
            (FieldType::String, Value::Float(x)) => Ok(Value::from(x.to_string())),
            (FieldType::String, Value::Bool(b)) => Ok(Value::from(b.to_string())),
            (FieldType::String, Value::Timestamp(ts)) => Ok(Value::from(format_timestamp(&ts))),
            (FieldType::Int, Value::Int(i)) => Ok(Value::Int(i)),
            (FieldType::Int, Value::Float(x)) if x.fract() == 0.0 && x.abs() < I64_LIMIT => {
                Ok(Value::Int(x as i64))
            }
            (FieldType::Float, Value::Int(i)) => Ok(Value::Float(i as f64)),
            (FieldType::Float, Value::Float(x)) => Ok(Value::Float(x)),
            (FieldType::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
            (FieldType::Bool, Value::Int(i @ (0 | 1))) => Ok(Value::Bool(i == 1)),
            (FieldType::Timestamp(_), Value::Timestamp(ts)) => Ok(Value::Timestamp(ts)),
            (FieldType::Timestamp(TimestampFormat::Unix { per_second, .. }), Value::Int(i)) => {
                from_units(i, *per_second)
                    .map(Value::Timestamp)
                    .ok_or(Value::Int(i))
            }
            (FieldType::Timestamp(TimestampFormat::Unix { per_second, .. }), Value::Float(x)) => {
                from_float_units(x, *per_second)
                    .map(Value::Timestamp)
                    .ok_or(Value::Float(x))
            }
            (_, other) => Err(other),
        }
    }
}

/// Parses a finite float. Short decimals (`0.051`) take an exact fast path: an integer of at most
/// 15 digits divided by a power of ten is correctly rounded, as `str::parse` is.
#[inline]
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.len() <= 16 {
        let mut mantissa: u64 = 0;
        let mut digits = 0;
        let mut fraction = None;
        let mut simple = true;
        for (i, &byte) in bytes.iter().enumerate() {
            match byte {
                b'0'..=b'9' => {
                    mantissa = mantissa * 10 + u64::from(byte - b'0');
                    digits += 1;
                }
                b'.' if fraction.is_none() && i > 0 && i + 1 < bytes.len() => {
                    fraction = Some(bytes.len() - i - 1);
                }
                _ => {
                    simple = false;
                    break;
                }
            }
        }
        if simple && digits <= 15 {
            let scale = POW10[fraction.unwrap_or(0)];
            return Some(mantissa as f64 / scale);
        }
    }
    let number: f64 = text.parse().ok()?;
    number.is_finite().then_some(number)
}

impl TimestampFormat {
    /// Parses a format: `rfc3339`, `unix`, `unix_ms`, `unix_us`, `unix_ns` or a strftime format,
    /// the latter optionally followed by `|<zone>` (see [`Zone::parse`]).
    pub(crate) fn parse(format: &str) -> Result<Self, String> {
        let (format, zone) = match format.rsplit_once('|') {
            Some((format, zone)) => (format, Some(Zone::parse(zone)?)),
            None => (format, None),
        };
        let unix = |per_second, name| TimestampFormat::Unix { per_second, name };
        let fixed = match format {
            "rfc3339" => TimestampFormat::Rfc3339,
            "unix" => unix(1, "unix"),
            "unix_ms" => unix(1_000, "unix_ms"),
            "unix_us" => unix(1_000_000, "unix_us"),
            "unix_ns" => unix(1_000_000_000, "unix_ns"),
            strftime => {
                let zone = zone.unwrap_or(Zone::Utc);
                return Ok(TimestampFormat::Strftime(Strftime::parse(strftime, zone)?));
            }
        };
        match zone {
            None => Ok(fixed),
            Some(_) => Err(format!(
                "a time zone only applies to strftime formats: `{format}` times are absolute"
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            TimestampFormat::Rfc3339 => "timestamp (RFC 3339)".to_owned(),
            TimestampFormat::Unix { name, .. } => format!("timestamp ({name})"),
            TimestampFormat::Strftime(format) => {
                let zone = match format.zone {
                    Zone::Utc => String::new(),
                    Zone::Fixed(offset) => format!(" at {offset}"),
                    Zone::Named(zone) => format!(" in {}", zone.name()),
                    Zone::Local => " in local time".to_owned(),
                };
                format!("timestamp with format `{}`{zone}", format.source)
            }
        }
    }

    /// Parses a timestamp written this way, or `None`.
    pub(crate) fn parse_str(&self, text: &str) -> Option<DateTime<Utc>> {
        match self {
            TimestampFormat::Rfc3339 => parse_rfc3339(text),
            TimestampFormat::Unix { per_second, .. } => {
                if let Ok(units) = text.parse::<i64>() {
                    from_units(units, *per_second)
                } else {
                    from_float_units(parse_float(text)?, *per_second)
                }
            }
            TimestampFormat::Strftime(format) => format.parse_str(text),
        }
    }
}

fn from_units(units: i64, per_second: i64) -> Option<DateTime<Utc>> {
    let secs = units.div_euclid(per_second);
    let nanos = units.rem_euclid(per_second) * (1_000_000_000 / per_second);
    DateTime::from_timestamp(secs, u32::try_from(nanos).ok()?)
}

fn from_float_units(units: f64, per_second: i64) -> Option<DateTime<Utc>> {
    let secs = units / per_second as f64;
    // Beyond ±2^53 seconds no float is a sensible time; chrono's range is far smaller anyway.
    if !secs.is_finite() || secs.abs() > 9.0e15 {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0);
    DateTime::from_timestamp(whole as i64, nanos as u32)
}

impl Strftime {
    fn parse(format: &str, zone: Zone) -> Result<Self, String> {
        let invalid = |reason: &str| format!("invalid timestamp format `{format}`: {reason}");
        let mut items = StrftimeItems::new(format)
            .parse_to_owned()
            .map_err(|error| invalid(&error.to_string()))?;
        let is_name = |item: &Item<'_>| matches!(item, Item::Fixed(Fixed::TimezoneName));
        let zone_name = items.last().is_some_and(is_name);
        if zone_name {
            items.pop();
        }
        if items.iter().any(is_name) {
            return Err(invalid("`%Z` (a zone name) is only supported at the end"));
        }
        Ok(Strftime {
            source: format.to_owned(),
            items,
            zone_name,
            clf: format == CLF_FORMAT,
            zone,
        })
    }

    fn parse_str(&self, text: &str) -> Option<DateTime<Utc>> {
        if self.clf
            && let Some(ts) = parse_clf_time(text)
        {
            return Some(ts);
        }
        let mut parsed = Parsed::new();
        if self.zone_name {
            let rest =
                chrono::format::parse_and_remainder(&mut parsed, text, self.items.iter()).ok()?;
            if !matches!(rest.trim_start(), "UTC" | "GMT" | "UT" | "Z") {
                return None;
            }
            parsed.set_offset(0).ok()?;
        } else {
            chrono::format::parse(&mut parsed, text, self.items.iter()).ok()?;
        }
        let date_time = |offset: i32| {
            parsed
                .to_naive_datetime_with_offset(offset)
                .ok()
                .or_else(|| {
                    parsed
                        .to_naive_date()
                        .ok()
                        .map(|date| date.and_time(NaiveTime::MIN))
                })
        };
        match parsed.offset() {
            Some(offset) => {
                let zone = FixedOffset::east_opt(offset)?;
                date_time(offset)?
                    .and_local_timezone(zone)
                    .single()
                    .map(|ts| ts.with_timezone(&Utc))
            }
            None => self.zone.to_utc(date_time(0)?),
        }
    }
}

/// Parses an RFC 3339 time, with a fast path for the common shape
/// `2026-01-01T00:00:00.003Z` / `…+02:00` (up to nine fraction digits) and chrono for the rest.
#[inline]
pub(crate) fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    fast_rfc3339(text).or_else(|| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|ts| ts.with_timezone(&Utc))
    })
}

/// The fast path of [`parse_rfc3339`]: `None` for anything outside the strict common shape.
fn fast_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut value = 0;
        for &byte in b.get(range)? {
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(byte - b'0');
        }
        Some(value)
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let mut pos = 19;
    let mut nanos = 0u32;
    if b[pos] == b'.' {
        let start = pos + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let count = end - start;
        if count == 0 || count > 9 {
            return None;
        }
        nanos = digits(start..end)? * 10u32.pow(9 - count as u32);
        pos = end;
    }
    let offset: i64 = match &b[pos..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (digits(pos + 1..pos + 3)?, digits(pos + 4..pos + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours) * 3600 + i64::from(minutes) * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    if month == 0
        || month > 12
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset;
    DateTime::from_timestamp(secs, nanos)
}

/// Parses `01/Jan/2026:00:00:00 +0000` exactly as nginx writes it. Returns `None` for anything
/// else, including shapes chrono would still accept (other spacing, lowercase months, a leap
/// second), so callers fall back to chrono and get its answer.
#[inline]
pub(crate) fn parse_clf_time(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
    {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut value = 0;
        for &byte in b.get(range)? {
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(byte - b'0');
        }
        Some(value)
    };
    let day = digits(0..2)?;
    let month = match &b[3..6] {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    let year = digits(7..11)?;
    let (hour, minute, second) = (digits(12..14)?, digits(15..17)?, digits(18..20)?);
    let sign: i64 = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (offset_hours, offset_minutes) = (digits(22..24)?, digits(24..26)?);
    if year < 1000
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
        || offset_hours > 23
        || offset_minutes > 59
    {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let offset = sign * (i64::from(offset_hours) * 3600 + i64::from(offset_minutes) * 60);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset;
    DateTime::from_timestamp(secs, 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `field `status`: cannot convert "abc" to int`, with long values cut short.
pub(crate) fn conversion_error(name: &str, ty: &FieldType, value: &Value) -> String {
    format!(
        "field `{name}`: cannot convert {} to {}",
        shown(value),
        ty.describe()
    )
}

/// A value as JSON for an error message, cut after 100 bytes.
pub(crate) fn shown(value: &Value) -> String {
    const MAX_SHOWN: usize = 100;
    let mut shown = Vec::new();
    encode_value(value, &mut shown);
    let mut shown = String::from_utf8_lossy(&shown).into_owned();
    if shown.len() > MAX_SHOWN {
        let mut cut = MAX_SHOWN;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    shown
}

/// Converts the fields named in `types` in place.
pub(crate) fn convert_fields(
    fields: &mut crate::event::Fields,
    types: &[(FieldName, FieldType)],
) -> Result<(), String> {
    for (name, ty) in types {
        if let Some(slot) = fields.get_mut(name.as_str()) {
            let value = std::mem::take(slot);
            match ty.convert_value(value) {
                Ok(converted) => *slot = converted,
                Err(value) => {
                    let error = conversion_error(name.as_str(), ty, &value);
                    *slot = value;
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_clf(text: &str) -> Option<DateTime<Utc>> {
        let Ok(FieldType::Timestamp(TimestampFormat::Strftime(mut format))) =
            FieldType::parse(&format!("timestamp|{CLF_FORMAT}"))
        else {
            panic!("the CLF format parses");
        };
        format.clf = false;
        format.parse_str(text)
    }

    fn ts(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn clf_fast_path_reads_nginx_times() {
        assert_eq!(
            parse_clf_time("01/Jan/2026:00:00:00 +0000"),
            Some(ts("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_clf_time("29/Feb/2024:23:59:59 -0130"),
            Some(ts("2024-03-01T01:29:59Z"))
        );
        assert_eq!(
            parse_clf_time("10/Oct/2000:13:55:36 -0700"),
            Some(ts("2000-10-10T20:55:36Z"))
        );
        // Not the fast shape: the fast path declines, chrono decides.
        for text in [
            "29/Feb/2025:00:00:00 +0000",
            "01/jan/2026:00:00:00 +0000",
            "01/Jan/2026:00:00:60 +0000",
            "01/Jan/2026:00:00:00  +0000",
            "1/Jan/2026:00:00:00 +0000",
            "01/Jan/2026:00:00:00 +00:00",
        ] {
            assert_eq!(parse_clf_time(text), None, "{text}");
        }
    }

    /// The timestamp format of a type spec such as `timestamp|%Y`.
    fn timestamp_type(spec: &str) -> TimestampFormat {
        match FieldType::parse(spec).unwrap() {
            FieldType::Timestamp(format) => format,
            _ => panic!("not a timestamp"),
        }
    }

    #[test]
    fn strftime_zones() {
        let named = timestamp_type("timestamp|%Y-%m-%d %H:%M:%S %Z");
        assert_eq!(
            named.parse_str("2026-01-01 10:00:00 UTC"),
            Some(ts("2026-01-01T10:00:00Z"))
        );
        assert_eq!(
            named.parse_str("2026-01-01 10:00:00 GMT"),
            Some(ts("2026-01-01T10:00:00Z"))
        );
        assert_eq!(named.parse_str("2026-01-01 10:00:00 CET"), None);
        let colon = timestamp_type("timestamp|%Y-%m-%dT%H:%M:%S%:z");
        assert_eq!(
            colon.parse_str("2026-01-01T10:00:00+02:00"),
            Some(ts("2026-01-01T08:00:00Z"))
        );
        let unix = timestamp_type("timestamp|unix");
        assert_eq!(
            unix.parse_str("1767225600"),
            Some(ts("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            unix.parse_str("1767225600.25"),
            Some(ts("2026-01-01T00:00:00.25Z"))
        );
        let millis = timestamp_type("timestamp|unix_ms");
        assert_eq!(
            millis.parse_str("1767225600123"),
            Some(ts("2026-01-01T00:00:00.123Z"))
        );
        assert_eq!(
            FieldType::parse("timestamp|unix_ms")
                .unwrap()
                .convert_value(Value::Int(-1)),
            Ok(Value::Timestamp(ts("1969-12-31T23:59:59.999Z")))
        );
        assert!(
            FieldType::parse("timestamp|%Z %Y")
                .unwrap_err()
                .contains("only supported at the end")
        );
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/timestamps.rs`): an offset zone with more than four
    /// digits (`+j2::0992::09990`, `+00999999999`) was refused only after its digits had been
    /// multiplied into seconds, which overflowed `i32` (a panic in debug builds, and config
    /// validation runs this on whatever the user wrote). Now only four digits are ever read.
    #[test]
    fn offset_zones_with_too_many_digits_are_refused_without_overflow() {
        for spec in [
            "timestamp|%Y-%m-d|+j2::0992::09990",
            "timestamp|%Y|+00999999999",
            "timestamp|%Y|-99999:99999",
        ] {
            let error = FieldType::parse(spec).unwrap_err();
            assert!(error.contains("invalid UTC offset"), "{spec}: {error}");
        }
    }

    #[test]
    fn named_zones_and_offsets_read_times_without_an_offset() {
        let berlin = timestamp_type("timestamp|%Y-%m-%d %H:%M:%S|Europe/Berlin");
        assert_eq!(
            berlin.parse_str("2026-01-15 10:00:00"),
            Some(ts("2026-01-15T09:00:00Z"))
        );
        assert_eq!(
            berlin.parse_str("2026-07-15 10:00:00"),
            Some(ts("2026-07-15T08:00:00Z"))
        );
        // Clocks go back at 03:00 CEST on 2026-10-25: 02:30 happens twice, the first is CEST.
        assert_eq!(
            berlin.parse_str("2026-10-25 02:30:00"),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        // Clocks go forward at 02:00 CET on 2026-03-29: 02:30 never happens.
        assert_eq!(berlin.parse_str("2026-03-29 02:30:00"), None);
        let date_only = timestamp_type("timestamp|%Y-%m-%d|America/New_York");
        assert_eq!(
            date_only.parse_str("2026-01-15"),
            Some(ts("2026-01-15T05:00:00Z"))
        );
        let with_offset = timestamp_type("timestamp|%Y-%m-%d %H:%M:%S %z|Europe/Berlin");
        assert_eq!(
            with_offset.parse_str("2026-01-15 10:00:00 +0000"),
            Some(ts("2026-01-15T10:00:00Z")),
            "an offset in the text wins over the configured zone"
        );
        let india = timestamp_type("timestamp|%Y-%m-%d %H:%M:%S|+05:30");
        assert_eq!(
            india.parse_str("2026-01-15 10:00:00"),
            Some(ts("2026-01-15T04:30:00Z"))
        );
        let west = timestamp_type("timestamp|%Y-%m-%d %H:%M:%S|-0800");
        assert_eq!(
            west.parse_str("2026-01-15 10:00:00"),
            Some(ts("2026-01-15T18:00:00Z"))
        );
        let utc = timestamp_type("timestamp|%Y-%m-%d %H:%M:%S|UTC");
        assert_eq!(
            utc.parse_str("2026-01-15 10:00:00"),
            Some(ts("2026-01-15T10:00:00Z"))
        );
        assert!(matches!(Zone::parse("local"), Ok(Zone::Local)));
        for (spec, expected) in [
            (
                "timestamp|%Y|Mars/Olympus",
                "unknown time zone `Mars/Olympus`",
            ),
            ("timestamp|%Y|+25:00", "invalid UTC offset `+25:00`"),
            ("timestamp|%Y|+2", "invalid UTC offset `+2`"),
            (
                "timestamp|rfc3339|Europe/Berlin",
                "only applies to strftime formats",
            ),
            ("timestamp|unix_ms|UTC", "only applies to strftime formats"),
        ] {
            let error = FieldType::parse(spec).unwrap_err();
            assert!(error.contains(expected), "{spec}: {error}");
        }
    }

    #[test]
    fn float_fast_path_matches_std() {
        for text in [
            "0.051",
            "0.1",
            "0.3",
            "123.456",
            "1",
            "0",
            "999999999999999",
            "9007199254740993",
            "1e3",
            ".5",
            "5.",
            "-1.5",
            "+2",
            "0.000000000000001",
            "1.2.3",
            "",
        ] {
            let expected = text.parse::<f64>().ok().filter(|x| x.is_finite());
            assert_eq!(parse_float(text), expected, "{text}");
        }
    }

    proptest! {
        #[test]
        fn named_zones_give_back_the_local_time_they_read(
            secs in 0i64..4_102_444_800,
            zone in prop::sample::select(vec![
                "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
                "Pacific/Chatham", "America/Sao_Paulo",
            ]),
        ) {
            let local = DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
            let text = local.format("%Y-%m-%d %H:%M:%S").to_string();
            let format = TimestampFormat::parse(&format!("%Y-%m-%d %H:%M:%S|{zone}")).unwrap();
            let tz: chrono_tz::Tz = zone.parse().unwrap();
            match format.parse_str(&text) {
                Some(utc) => {
                    prop_assert_eq!(utc.with_timezone(&tz).naive_local(), local);
                    // A local time that happens twice reads as the earlier instant.
                    let candidates = tz.from_local_datetime(&local);
                    prop_assert_eq!(Some(utc), candidates.earliest().map(|t| t.with_timezone(&Utc)));
                }
                None => prop_assert!(tz.from_local_datetime(&local).earliest().is_none()),
            }
        }

        #[test]
        fn clf_fast_path_agrees_with_chrono(
            day in 0u32..33, month in prop::sample::select(vec!["Jan", "Feb", "Apr", "Dec", "jan", "Foo"]),
            year in prop::sample::select(vec![999u32, 1000, 1900, 2000, 2024, 2025, 2100, 9999]),
            hour in 0u32..26, minute in 0u32..62, second in 0u32..62,
            sign in prop::sample::select(vec!['+', '-', ' ']), oh in 0u32..26, om in 0u32..62,
        ) {
            let text = format!("{day:02}/{month}/{year:04}:{hour:02}:{minute:02}:{second:02} {sign}{oh:02}{om:02}");
            if let Some(fast) = parse_clf_time(&text) {
                prop_assert_eq!(Some(fast), chrono_clf(&text), "{}", text);
            }
        }

        #[test]
        fn rfc3339_fast_path_agrees_with_chrono(
            year in prop::sample::select(vec![0u32, 1, 999, 1970, 2000, 2024, 2025, 2100, 9999]),
            month in 0u32..14, day in 0u32..33, hour in 0u32..25, minute in 0u32..61, second in 0u32..62,
            fraction in prop::sample::select(vec!["", ".", ".0", ".003", ".123456789", ".1234567891", ".5x"]),
            zone in prop::sample::select(vec!["Z", "z", "+00:00", "-07:30", "+23:59", "+24:00", "+0100", "", " Z"]),
            separator in prop::sample::select(vec!['T', 't', ' ']),
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}{fraction}{zone}");
            let chrono = DateTime::parse_from_rfc3339(&text).ok().map(|ts| ts.with_timezone(&Utc));
            if let Some(fast) = fast_rfc3339(&text) {
                prop_assert_eq!(Some(fast), chrono, "{}", text);
            }
            prop_assert_eq!(parse_rfc3339(&text), chrono, "{}", text);
        }

        #[test]
        fn float_fast_path_agrees_with_std(int in 0u64..10_000_000, frac in 0u32..8) {
            let digits = int.to_string();
            let text = if (frac as usize) < digits.len() && frac > 0 {
                format!("{}.{}", &digits[..digits.len() - frac as usize], &digits[digits.len() - frac as usize..])
            } else {
                digits
            };
            prop_assert_eq!(parse_float(&text), text.parse::<f64>().ok(), "{}", text);
        }

        #[test]
        fn timestamp_parsers_never_panic(text in ".{0,40}") {
            for spec in ["timestamp", "timestamp|unix", "timestamp|unix_ns", "timestamp|%Y-%m-%d %Z", "timestamp|%d/%b/%Y:%H:%M:%S %z"] {
                let ty = FieldType::parse(spec).unwrap();
                let _ = ty.convert_str(&text, &Str::from(text.as_str()));
            }
        }
    }
}
