//! Hand-written parsers for the nginx and Apache access log presets.
//!
//! | preset                 | line                                                             |
//! |------------------------|------------------------------------------------------------------|
//! | `apache_common`        | `ip ident user [time] "request" status bytes`                    |
//! | `apache_combined`      | `apache_common` + ` "referer" "agent"`                           |
//! | `nginx_combined`       | the same line as `apache_combined`                               |
//! | `nginx_combined_timed` | `nginx_combined` + ` request_time request_id` (nginx `$request_time $request_id`) |
//!
//! Fields, in this order: `ip`, `user`, `timestamp`, `method`, `path`, `protocol`, `status`,
//! `bytes`, then `referer`, `agent` (combined) and `request_time`, `request_id` (timed). The
//! `ident` field (`%l`, always `-` in practice) is read and left out.
//!
//! The grammar, exactly (the property tests check it against the equivalent regex):
//! - Fields are separated by one space. `ip`, `ident`, `user`, `status`, `bytes`,
//!   `request_time` and `request_id` are non-empty runs of bytes other than space.
//! - `[time]` runs to the first `]`; the time is `%d/%b/%Y:%H:%M:%S %z` (see
//!   the fast path of `types::parse_clf_time`) and becomes a timestamp.
//! - Quoted fields (`"request"`, `"referer"`, `"agent"`) run to the first `"` that is not escaped
//!   by a backslash. Their text is kept as written, escapes included (nginx writes a quote as
//!   `\x22`, Apache as `\"`): decoding would cost a copy per field, and nothing is lost.
//! - The request is `method path protocol`: method and path are non-empty and without spaces,
//!   the protocol is the non-empty rest (so `"-"`, what nginx logs for a connection that sent no
//!   request, does not parse and the line is rejected: a line without those fields is not an
//!   access log line as these presets define it).
//! - `status` is decimal digits, an int. `bytes` is decimal digits or `-` (Apache's `%b` for no
//!   body), an int or `null`. `request_time` is a float, or `null` for `-`.
//! - The line ends right after the last field: anything more, or anything missing, rejects it.
//!
//! Every string field is a zero-copy slice of the line ([`Str::slice_ref`]); the only allocation
//! is the event's field vector.

use memchr::{memchr, memchr2};

use crate::event::{FieldName, Fields, Str, Value};
use crate::steps::types::{CLF_FORMAT, FieldType, TimestampFormat, parse_float};

/// The access log presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// nginx `combined`.
    NginxCombined,
    /// nginx `combined` + `$request_time $request_id`.
    NginxCombinedTimed,
    /// Apache common log format.
    ApacheCommon,
    /// Apache combined log format.
    ApacheCombined,
}

impl Preset {
    /// The `format` name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::NginxCombined => "nginx_combined",
            Preset::NginxCombinedTimed => "nginx_combined_timed",
            Preset::ApacheCommon => "apache_common",
            Preset::ApacheCombined => "apache_combined",
        }
    }

    fn combined(self) -> bool {
        self != Preset::ApacheCommon
    }

    fn timed(self) -> bool {
        self == Preset::NginxCombinedTimed
    }

    /// The names of the fields the preset produces, in order.
    pub fn field_names(self) -> &'static [&'static str] {
        const ALL: [&str; 12] = [
            "ip",
            "user",
            "timestamp",
            "method",
            "path",
            "protocol",
            "status",
            "bytes",
            "referer",
            "agent",
            "request_time",
            "request_id",
        ];
        match self {
            Preset::ApacheCommon => &ALL[..8],
            Preset::NginxCombined | Preset::ApacheCombined => &ALL[..10],
            Preset::NginxCombinedTimed => &ALL,
        }
    }
}

/// A preset's parser with its field names interned.
#[derive(Debug)]
pub struct AccessParser {
    preset: Preset,
    names: [FieldName; 12],
    /// The chrono fallback for times not in the exact nginx shape.
    time: TimestampFormat,
}

impl AccessParser {
    /// The parser for `preset`.
    pub fn new(preset: Preset) -> Self {
        let all = Preset::NginxCombinedTimed.field_names();
        let names = std::array::from_fn(|i| FieldName::new(all[i]));
        let time = match FieldType::parse(&format!("timestamp|{CLF_FORMAT}")) {
            Ok(FieldType::Timestamp(format)) => format,
            // The constant format always parses.
            _ => TimestampFormat::Rfc3339,
        };
        AccessParser {
            preset,
            names,
            time,
        }
    }

    /// Parses one line into fields.
    ///
    /// # Errors
    /// Says which part of the line is missing or malformed, and at which column.
    pub fn parse(&self, line: &Str) -> Result<Fields, String> {
        let text = line.as_str();
        let mut cursor = Cursor {
            bytes: text.as_bytes(),
            pos: 0,
            preset: self.preset,
        };
        let count = self.preset.field_names().len();
        let mut fields = Fields::with_capacity(count);
        let string = |range: std::ops::Range<usize>| {
            // Ranges split the line at ASCII bytes, so they are on character boundaries.
            Value::String(
                text.get(range)
                    .map_or_else(Str::new, |part| line.slice_ref(part)),
            )
        };
        let n = &self.names;

        let ip = cursor.word("the client address")?;
        cursor.word("the ident field")?;
        let user = cursor.word("the user")?;
        fields.push_unchecked(n[0].clone(), string(ip));
        fields.push_unchecked(n[1].clone(), string(user));

        let time = cursor.bracketed()?;
        let time_text = text.get(time.clone()).unwrap_or("");
        let Some(ts) = crate::steps::types::parse_clf_time(time_text)
            .or_else(|| self.time.parse_str(time_text))
        else {
            return Err(format!(
                "{}: the time `{time_text}` is not like 01/Jan/2026:00:00:00 +0000",
                self.preset.name()
            ));
        };
        fields.push_unchecked(n[2].clone(), Value::Timestamp(ts));

        let request_start = cursor.pos + 1;
        let request = cursor.quoted("the quoted request")?;
        let bytes = cursor.bytes;
        let method_end = short_find(b' ', &bytes[request.clone()])
            .map(|i| request.start + i)
            .filter(|&end| end > request.start);
        let path_end = method_end.and_then(|method_end| {
            short_find(b' ', &bytes[method_end + 1..request.end])
                .map(|i| method_end + 1 + i)
                .filter(|&end| end > method_end + 1 && end + 1 < request.end)
        });
        let (Some(method_end), Some(path_end)) = (method_end, path_end) else {
            return Err(format!(
                "{}: the request at column {} is not `method path protocol`",
                self.preset.name(),
                request_start
            ));
        };
        fields.push_unchecked(n[3].clone(), string(request.start..method_end));
        fields.push_unchecked(n[4].clone(), string(method_end + 1..path_end));
        fields.push_unchecked(n[5].clone(), string(path_end + 1..request.end));

        let status = cursor.word("the status")?;
        fields.push_unchecked(n[6].clone(), Value::Int(cursor.int(status, "status")?));

        let last = !self.preset.combined();
        let size = if last {
            cursor.rest("the response size")?
        } else {
            cursor.word("the response size")?
        };
        let size = if &bytes[size.clone()] == b"-" {
            Value::Null
        } else {
            Value::Int(cursor.int(size, "response size")?)
        };
        fields.push_unchecked(n[7].clone(), size);

        if self.preset.combined() {
            let referer = cursor.quoted("the quoted referer")?;
            fields.push_unchecked(n[8].clone(), string(referer));
            let agent = cursor.quoted_last("the quoted user agent", !self.preset.timed())?;
            fields.push_unchecked(n[9].clone(), string(agent));
        }
        if self.preset.timed() {
            let time = cursor.word("the request time")?;
            let value = match &bytes[time.clone()] {
                b"-" => Value::Null,
                digits => match std::str::from_utf8(digits).ok().and_then(parse_float) {
                    Some(seconds) => Value::Float(seconds),
                    None => {
                        return Err(format!(
                            "{}: the request time at column {} is not a number",
                            self.preset.name(),
                            time.start + 1
                        ));
                    }
                },
            };
            fields.push_unchecked(n[10].clone(), value);
            let id = cursor.rest("the request id")?;
            fields.push_unchecked(n[11].clone(), string(id));
        }
        Ok(fields)
    }
}

/// The first `needle` in `haystack`: a plain loop over the first bytes, where words end (IPs,
/// status codes, sizes are short and SIMD setup would cost more than it saves), then memchr.
#[inline]
fn short_find(needle: u8, haystack: &[u8]) -> Option<usize> {
    const SHORT: usize = 24;
    let head = &haystack[..haystack.len().min(SHORT)];
    if let Some(found) = head.iter().position(|&byte| byte == needle) {
        return Some(found);
    }
    if haystack.len() <= SHORT {
        return None;
    }
    memchr(needle, &haystack[SHORT..]).map(|found| found + SHORT)
}

/// A position in the line being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    preset: Preset,
}

impl Cursor<'_> {
    fn expected(&self, what: &str) -> String {
        if self.pos >= self.bytes.len() {
            format!(
                "{}: expected {what}, found the end of the line",
                self.preset.name()
            )
        } else {
            format!(
                "{}: expected {what} at column {}",
                self.preset.name(),
                self.pos + 1
            )
        }
    }

    /// A non-empty run of non-space bytes followed by a space (consumed).
    #[inline]
    fn word(&mut self, what: &str) -> Result<std::ops::Range<usize>, String> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        match short_find(b' ', rest) {
            Some(len) if len > 0 => {
                let range = self.pos..self.pos + len;
                self.pos += len + 1;
                Ok(range)
            }
            None if !rest.is_empty() => Err(format!(
                "{}: expected a space after {what}, found the end of the line",
                self.preset.name()
            )),
            _ => Err(self.expected(what)),
        }
    }

    /// The non-empty, space-free rest of the line.
    fn rest(&mut self, what: &str) -> Result<std::ops::Range<usize>, String> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Err(self.expected(what));
        }
        if let Some(space) = memchr(b' ', rest) {
            self.pos += space;
            return Err(if space == 0 {
                self.expected(what)
            } else {
                format!(
                    "{}: unexpected text after {what} at column {}",
                    self.preset.name(),
                    self.pos + 1
                )
            });
        }
        let range = self.pos..self.bytes.len();
        self.pos = self.bytes.len();
        Ok(range)
    }

    /// `[text]` followed by a space; the range of the text.
    fn bracketed(&mut self) -> Result<std::ops::Range<usize>, String> {
        if self.bytes.get(self.pos) != Some(&b'[') {
            return Err(self.expected("`[` before the time"));
        }
        let start = self.pos + 1;
        let rest = self.bytes.get(start..).unwrap_or_default();
        match memchr(b']', rest) {
            Some(len) if len > 0 && rest.get(len + 1) == Some(&b' ') => {
                self.pos = start + len + 2;
                Ok(start..start + len)
            }
            _ => Err(self.expected("the time in brackets")),
        }
    }

    /// `"text"` followed by a space; the range of the text, escapes kept.
    fn quoted(&mut self, what: &str) -> Result<std::ops::Range<usize>, String> {
        self.quoted_last(what, false)
    }

    /// `"text"` followed by the end of the line when `last`, by a space otherwise.
    fn quoted_last(&mut self, what: &str, last: bool) -> Result<std::ops::Range<usize>, String> {
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(self.expected(what));
        }
        let start = self.pos + 1;
        let mut at = start;
        let end = loop {
            let rest = self.bytes.get(at..).unwrap_or_default();
            match memchr2(b'"', b'\\', rest) {
                Some(i) if rest[i] == b'"' => break at + i,
                // A backslash escapes the next byte, whatever it is.
                Some(i) => at += i + 2,
                None => {
                    return Err(format!(
                        "{}: {what} at column {} has no closing quote",
                        self.preset.name(),
                        self.pos + 1
                    ));
                }
            }
        };
        let after = end + 1;
        let fits = if last {
            after == self.bytes.len()
        } else {
            self.bytes.get(after) == Some(&b' ')
        };
        if !fits {
            self.pos = after;
            return Err(if last && after < self.bytes.len() {
                format!(
                    "{}: unexpected text after {what} at column {}",
                    self.preset.name(),
                    after + 1
                )
            } else {
                self.expected(&format!("a space after {what}"))
            });
        }
        self.pos = after + usize::from(!last);
        Ok(start..end)
    }

    /// The digits in `range` as an int.
    #[inline]
    fn int(&self, range: std::ops::Range<usize>, what: &str) -> Result<i64, String> {
        let digits = &self.bytes[range.clone()];
        if digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) {
            return Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')));
        }
        let text = String::from_utf8_lossy(digits);
        if digits.iter().all(u8::is_ascii_digit)
            && let Ok(value) = text.parse()
        {
            return Ok(value);
        }
        Err(format!(
            "{}: the {what} `{text}` at column {} is not a whole number",
            self.preset.name(),
            range.start + 1
        ))
    }
}
