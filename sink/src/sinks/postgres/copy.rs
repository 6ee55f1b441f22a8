//! Binary `COPY` encoding: one row per event, each column's value in PostgreSQL's binary format.

use super::*;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
pub(super) const PG_EPOCH_SECS: i64 = 946_684_800;

/// Appends the binary COPY stream of `events` to `out`.
pub(super) fn encode_copy<'a>(
    columns: &[Column],
    events: impl Iterator<Item = &'a Event>,
    out: &mut BytesMut,
) -> Result<(), SinkError> {
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_i32(0);
    out.put_i32(0);
    let count = i16::try_from(columns.len())
        .map_err(|_| SinkError::Permanent("too many columns".into()))?;
    let mut scratch = Vec::new();
    for event in events {
        out.put_i16(count);
        for column in columns {
            encode_cell(column, event, out, &mut scratch)?;
        }
    }
    out.put_i16(-1);
    Ok(())
}

pub(super) fn lookup<'a>(
    event: &'a Event,
    path: &[String],
    owned: &'a mut Option<Value>,
) -> Option<&'a Value> {
    if path.len() == 1
        && path[0] == MESSAGE
        && event.get(MESSAGE).is_none()
        && let Some(raw) = event.raw()
    {
        *owned = Some(Value::from(String::from_utf8_lossy(raw).as_ref()));
        return owned.as_ref();
    }
    event.get_path(path)
}

pub(super) fn encode_cell(
    column: &Column,
    event: &Event,
    out: &mut BytesMut,
    scratch: &mut Vec<u8>,
) -> Result<(), SinkError> {
    let bad = |value: &Value| {
        SinkError::Permanent(format!(
            "column {:?} ({:?}) cannot take the {} value {}",
            column.name,
            column.kind,
            value.kind(),
            {
                let mut text = Vec::new();
                json::encode_value(value, &mut text);
                String::from_utf8_lossy(&text[..text.len().min(100)]).into_owned()
            }
        ))
    };
    if column.field.is_empty() {
        scratch.clear();
        json::encode_event(event, scratch);
        return put_json(column.kind, scratch, out, &Value::Null, bad);
    }
    let mut owned = None;
    let value = match lookup(event, &column.field, &mut owned) {
        None | Some(Value::Null) => {
            out.put_i32(-1);
            return Ok(());
        }
        Some(value) => value,
    };
    match column.kind {
        Kind::Text => {
            scratch.clear();
            match value {
                Value::String(text) => scratch.extend_from_slice(text.as_bytes()),
                Value::Timestamp(ts) => json::write_timestamp(ts, scratch),
                other => json::encode_value(other, scratch),
            }
            put_bytes(scratch, out)
        }
        Kind::Int2 | Kind::Int4 | Kind::Int8 => {
            let n = match value {
                Value::Int(n) => *n,
                Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => *f as i64,
                Value::String(text) => text.trim().parse().map_err(|_| bad(value))?,
                _ => return Err(bad(value)),
            };
            match column.kind {
                Kind::Int2 => {
                    out.put_i32(2);
                    out.put_i16(i16::try_from(n).map_err(|_| bad(value))?);
                }
                Kind::Int4 => {
                    out.put_i32(4);
                    out.put_i32(i32::try_from(n).map_err(|_| bad(value))?);
                }
                _ => {
                    out.put_i32(8);
                    out.put_i64(n);
                }
            }
            Ok(())
        }
        Kind::Float4 | Kind::Float8 => {
            let f = match value {
                Value::Int(n) => *n as f64,
                Value::Float(f) => *f,
                Value::String(text) => text.trim().parse().map_err(|_| bad(value))?,
                _ => return Err(bad(value)),
            };
            if column.kind == Kind::Float4 {
                out.put_i32(4);
                out.put_f32(f as f32);
            } else {
                out.put_i32(8);
                out.put_f64(f);
            }
            Ok(())
        }
        Kind::Bool => {
            let b = match value {
                Value::Bool(b) => *b,
                Value::Int(0) => false,
                Value::Int(1) => true,
                Value::String(text) if text.as_str() == "true" => true,
                Value::String(text) if text.as_str() == "false" => false,
                _ => return Err(bad(value)),
            };
            out.put_i32(1);
            out.put_u8(u8::from(b));
            Ok(())
        }
        Kind::Timestamp => {
            let ts = to_timestamp(value).ok_or_else(|| bad(value))?;
            out.put_i32(8);
            out.put_i64(ts.timestamp_micros() - PG_EPOCH_SECS * 1_000_000);
            Ok(())
        }
        Kind::Date => {
            let date = match value {
                Value::String(text) => NaiveDate::parse_from_str(text.as_str(), "%Y-%m-%d")
                    .ok()
                    .or_else(|| to_timestamp(value).map(|ts| ts.date_naive())),
                other => to_timestamp(other).map(|ts| ts.date_naive()),
            }
            .ok_or_else(|| bad(value))?;
            let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).ok_or_else(|| bad(value))?;
            let days = i32::try_from(date.signed_duration_since(epoch).num_days())
                .map_err(|_| bad(value))?;
            out.put_i32(4);
            out.put_i32(days);
            Ok(())
        }
        Kind::Jsonb | Kind::Json => {
            scratch.clear();
            json::encode_value(value, scratch);
            put_json(column.kind, scratch, out, value, bad)
        }
        Kind::Numeric => {
            let text = match value {
                Value::Int(n) => n.to_string(),
                Value::Float(f) if f.is_nan() => "NaN".to_owned(),
                Value::Float(f) if f.is_finite() => f.to_string(),
                Value::String(text) => text.as_str().trim().to_owned(),
                _ => return Err(bad(value)),
            };
            scratch.clear();
            encode_numeric(&text, scratch).ok_or_else(|| bad(value))?;
            put_bytes(scratch, out)
        }
        Kind::Uuid => {
            let Value::String(text) = value else {
                return Err(bad(value));
            };
            let uuid = parse_uuid(text.as_str()).ok_or_else(|| bad(value))?;
            put_bytes(&uuid, out)
        }
        Kind::Inet => {
            let Value::String(text) = value else {
                return Err(bad(value));
            };
            scratch.clear();
            encode_inet(text.as_str(), scratch).ok_or_else(|| bad(value))?;
            put_bytes(scratch, out)
        }
    }
}

/// Writes the binary form of a decimal (`-12.50`, `3`, `.5`, `NaN`) as PostgreSQL's `numeric`
/// receives it: digit count, weight of the first base-10000 digit, sign, display scale, digits.
/// `None` for anything else (exponents included).
pub(super) fn encode_numeric(text: &str, out: &mut Vec<u8>) -> Option<()> {
    const NEGATIVE: u16 = 0x4000;
    const NAN: u16 = 0xC000;
    if text.eq_ignore_ascii_case("nan") {
        for part in [0u16, 0, NAN, 0] {
            out.extend_from_slice(&part.to_be_bytes());
        }
        return Some(());
    }
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let scale = u16::try_from(fraction.len()).ok().filter(|s| *s <= 16383)?;
    let whole = whole.trim_start_matches('0');
    // Base-10000 digits: the whole part grouped from the right, the fraction from the left.
    let mut padded = "0".repeat((4 - whole.len() % 4) % 4);
    padded.push_str(whole);
    let whole_groups = padded.len() / 4;
    padded.push_str(fraction);
    padded.push_str(&"0".repeat((4 - fraction.len() % 4) % 4));
    let mut digits: Vec<i16> = padded
        .as_bytes()
        .chunks(4)
        .map(|group| group.iter().fold(0i16, |n, b| n * 10 + i16::from(b - b'0')))
        .collect();
    let mut weight = i16::try_from(whole_groups).ok()? - 1;
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= i16::try_from(leading).ok()?;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let sign = if negative && !digits.is_empty() {
        NEGATIVE
    } else {
        0
    };
    out.extend_from_slice(&i16::try_from(digits.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&scale.to_be_bytes());
    for digit in digits {
        out.extend_from_slice(&digit.to_be_bytes());
    }
    Some(())
}

/// The 16 bytes of a UUID written as 32 hex digits, with or without the usual hyphens.
pub(super) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    let hyphens = text.len() - hex.len();
    if hex.len() != 32 || !(hyphens == 0 || (hyphens == 4 && is_canonical_uuid(text))) {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (byte, pair) in uuid.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(uuid)
}

/// Whether the hyphens of `text` sit where they do in `8-4-4-4-12`.
pub(super) fn is_canonical_uuid(text: &str) -> bool {
    text.len() == 36
        && [8, 13, 18, 23]
            .iter()
            .all(|at| text.as_bytes()[*at] == b'-')
}

/// Writes an `inet` (`10.0.0.1`, `::1`, `192.168.0.0/16`) in PostgreSQL's binary form: family,
/// prefix bits, is-cidr flag, address length, address.
pub(super) fn encode_inet(text: &str, out: &mut Vec<u8>) -> Option<()> {
    /// PostgreSQL's own family numbers (not the OS's `AF_*`).
    const FAMILY_V4: u8 = 2;
    const FAMILY_V6: u8 = 3;
    let (address, bits) = match text.trim().split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u8>().ok()?)),
        None => (text.trim(), None),
    };
    match address.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let bits = bits.unwrap_or(32);
            (bits <= 32).then_some(())?;
            out.extend_from_slice(&[FAMILY_V4, bits, 0, 4]);
            out.extend_from_slice(&v4.octets());
        }
        std::net::IpAddr::V6(v6) => {
            let bits = bits.unwrap_or(128);
            (bits <= 128).then_some(())?;
            out.extend_from_slice(&[FAMILY_V6, bits, 0, 16]);
            out.extend_from_slice(&v6.octets());
        }
    }
    Some(())
}

pub(super) fn put_json(
    kind: Kind,
    text: &[u8],
    out: &mut BytesMut,
    value: &Value,
    bad: impl Fn(&Value) -> SinkError,
) -> Result<(), SinkError> {
    match kind {
        Kind::Jsonb => {
            let len = i32::try_from(text.len() + 1).map_err(|_| bad(value))?;
            out.put_i32(len);
            out.put_u8(1);
            out.put_slice(text);
            Ok(())
        }
        Kind::Json | Kind::Text => put_bytes(text, out),
        _ => Err(bad(value)),
    }
}

pub(super) fn put_bytes(bytes: &[u8], out: &mut BytesMut) -> Result<(), SinkError> {
    let len = i32::try_from(bytes.len())
        .map_err(|_| SinkError::Permanent("a value is larger than 2 GiB".into()))?;
    out.put_i32(len);
    out.put_slice(bytes);
    Ok(())
}

pub(super) fn to_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Timestamp(ts) => Some(*ts),
        Value::String(text) => DateTime::parse_from_rfc3339(text.as_str())
            .ok()
            .map(|ts| ts.with_timezone(&Utc)),
        Value::Int(secs) => DateTime::from_timestamp(*secs, 0),
        Value::Float(secs) => DateTime::from_timestamp_micros((secs * 1e6) as i64),
        _ => None,
    }
}
