//! The `logfmt` format: `key=value key2="quoted value" flag`.
//!
//! Pairs are separated by spaces (and tabs). A key is a non-empty run of bytes other than space,
//! tab, `=` and `"`. `key=value` gives the string `value` (up to the next space; may be empty),
//! `key="…"` the quoted text with `\"`, `\\`, `\n`, `\r`, `\t` decoded (other escapes are kept as
//! written), and a bare `key` the bool `true`. The last of repeated keys wins. Unquoted values
//! and quoted values without escapes are zero-copy slices of the line.

use memchr::memchr2;

use crate::event::{FieldName, Fields, Str, Value};

/// Parses one logfmt line.
///
/// # Errors
/// An empty key, an unterminated quote, or text right after a closing quote, with the column.
pub(super) fn parse(line: &Str) -> Result<Fields, String> {
    let text = line.as_str();
    let bytes = text.as_bytes();
    let mut fields = Fields::with_capacity(8);
    let mut pos = 0;
    let slice = |start: usize, end: usize| {
        // Boundaries are at ASCII bytes, so on characters.
        text.get(start..end)
            .map_or_else(Str::new, |part| line.slice_ref(part))
    };
    loop {
        while matches!(bytes.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        if pos >= bytes.len() {
            break;
        }
        let key_start = pos;
        while let Some(&byte) = bytes.get(pos) {
            if matches!(byte, b' ' | b'\t' | b'=' | b'"') {
                break;
            }
            pos += 1;
        }
        if pos == key_start {
            return Err(format!("logfmt: expected a key at column {}", pos + 1));
        }
        let key = FieldName::new(text.get(key_start..pos).unwrap_or_default());
        let value = match bytes.get(pos) {
            Some(b'=') => {
                pos += 1;
                if bytes.get(pos) == Some(&b'"') {
                    let (value, end) = quoted(line, pos)?;
                    pos = end;
                    if !matches!(bytes.get(pos), None | Some(b' ' | b'\t')) {
                        return Err(format!(
                            "logfmt: expected a space after the quoted value at column {}",
                            pos + 1
                        ));
                    }
                    Value::String(value)
                } else {
                    let start = pos;
                    while !matches!(bytes.get(pos), None | Some(b' ' | b'\t')) {
                        pos += 1;
                    }
                    Value::String(slice(start, pos))
                }
            }
            Some(b'"') => {
                return Err(format!(
                    "logfmt: unexpected `\"` in a key at column {}",
                    pos + 1
                ));
            }
            _ => Value::Bool(true),
        };
        fields.insert(key, value);
    }
    Ok(fields)
}

/// The quoted value starting at `open` (a `"`), and the position after its closing quote.
fn quoted(line: &Str, open: usize) -> Result<(Str, usize), String> {
    let text = line.as_str();
    let bytes = text.as_bytes();
    let start = open + 1;
    let mut at = start;
    let mut escaped = false;
    let end = loop {
        let rest = bytes.get(at..).unwrap_or_default();
        match memchr2(b'"', b'\\', rest) {
            Some(i) if rest[i] == b'"' => break at + i,
            Some(i) => {
                escaped = true;
                at += i + 2;
            }
            None => {
                return Err(format!(
                    "logfmt: the quoted value at column {} has no closing quote",
                    open + 1
                ));
            }
        }
    };
    let raw = text.get(start..end).unwrap_or_default();
    let value = if escaped {
        Str::from(unescape(raw))
    } else {
        line.slice_ref(raw)
    };
    Ok((value, end + 1))
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(line: &str) -> Result<Vec<(String, Value)>, String> {
        parse(&Str::from(line)).map(|fields| {
            fields
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect()
        })
    }

    #[test]
    fn pairs_quotes_and_flags() {
        let parsed = fields(
            r#"level=info msg="user \"bob\" logged in" dur=12ms  empty= flag path=/a=b tab="a\tb\q""#,
        )
        .unwrap();
        let expected: Vec<(String, Value)> = vec![
            ("level".into(), Value::from("info")),
            ("msg".into(), Value::from("user \"bob\" logged in")),
            ("dur".into(), Value::from("12ms")),
            ("empty".into(), Value::from("")),
            ("flag".into(), Value::Bool(true)),
            ("path".into(), Value::from("/a=b")),
            ("tab".into(), Value::from("a\tb\\q")),
        ];
        assert_eq!(parsed, expected);
        assert_eq!(
            fields("a=1 a=2").unwrap(),
            vec![("a".to_owned(), Value::from("2"))],
            "the last repeated key wins"
        );
        assert_eq!(fields("   ").unwrap(), vec![]);
    }

    #[test]
    fn unquoted_values_are_slices() {
        let line = Str::from("k=value q=\"quoted\"");
        let parsed = parse(&line).unwrap();
        let range = line.as_bytes().as_ptr_range();
        for name in ["k", "q"] {
            let Some(Value::String(text)) = parsed.get(name) else {
                panic!("{name}");
            };
            assert!(range.contains(&text.as_bytes().as_ptr()), "{name}");
        }
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            fields("a=1 =2"),
            Err("logfmt: expected a key at column 5".to_owned())
        );
        assert_eq!(
            fields("a=\"open"),
            Err("logfmt: the quoted value at column 3 has no closing quote".to_owned())
        );
        assert_eq!(
            fields("a=\"x\"y"),
            Err("logfmt: expected a space after the quoted value at column 6".to_owned())
        );
        assert_eq!(
            fields("a\"b=1"),
            Err("logfmt: unexpected `\"` in a key at column 2".to_owned())
        );
        assert_eq!(
            fields("a=\"x\\"),
            Err("logfmt: the quoted value at column 3 has no closing quote".to_owned())
        );
    }

    proptest! {
        #[test]
        fn never_panics(text in "[a-z =\"\\\\\té]{0,40}") {
            let _ = parse(&Str::from(text.as_str()));
        }

        #[test]
        fn written_pairs_read_back(pairs in prop::collection::vec(("[a-z_]{1,6}", "[ -~é]{0,12}"), 0..6)) {
            let mut line = String::new();
            let mut expected: Vec<(String, String)> = Vec::new();
            for (key, value) in &pairs {
                let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
                line.push_str(&format!("{key}=\"{escaped}\" "));
                expected.retain(|(k, _)| k != key);
                expected.push((key.clone(), value.clone()));
            }
            let parsed = parse(&Str::from(line.as_str())).unwrap();
            // Repeated keys keep their first position with the last value.
            for (key, value) in expected {
                prop_assert_eq!(parsed.get(&key), Some(&Value::from(value.as_str())));
            }
        }
    }
}
