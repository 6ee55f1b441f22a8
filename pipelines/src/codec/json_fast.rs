//! A fast path for decoding the JSON objects of NDJSON lines.
//!
//! serde_json is general: it walks the input through visitor calls and checks strings one
//! piece at a time; most of an NDJSON pipeline's time went there. This parser reads one object
//! straight into [`Fields`]: strings are scanned eight bytes at a time (SWAR) for a quote, a
//! backslash or a control character and, when they have no escapes, become slices of the input
//! (no copy); numbers are parsed from their text with the standard library (correctly rounded,
//! as serde_json's `float_roundtrip` is); keys go through the decoder's [`NameCache`].
//!
//! It is only a fast path. It accepts a subset of valid JSON and, for it, must build exactly
//! what serde_json would (property tests hold it to that). Anything else — invalid input, nesting
//! at the depth limit, integers serde_json reads as floats (`-0`, beyond 64 bits), numbers out of
//! range, lone surrogates — makes it give up with `None`, and the caller decodes the input with
//! serde_json, which also produces the error messages.

use bytes::Bytes;

use crate::event::{Fields, NameCache, Str, Value};

/// How deep objects and arrays may nest; deeper input is rejected instead of exhausting the stack.
/// Shared with the serde_json path (`codec::json` re-exports it), which owns the error for it.
pub const MAX_DEPTH: usize = 64;

/// Decodes `source` as one JSON object, or `None` when serde_json should decide (see the module
/// doc).
pub(super) fn decode_object(source: &Bytes, names: &mut NameCache) -> Option<Fields> {
    let text = std::str::from_utf8(source).ok()?;
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        source,
        names,
    };
    parser.whitespace();
    if parser.peek() != Some(b'{') {
        return None;
    }
    let fields = parser.object(0)?;
    parser.whitespace();
    (parser.pos == parser.bytes.len()).then_some(fields)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    source: &'a Bytes,
    names: &'a mut NameCache,
}

/// A string as found in the input.
struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

impl Parser<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// The object at `pos` (a `{`), whose values are at `depth + 1`.
    fn object(&mut self, depth: usize) -> Option<Fields> {
        self.pos += 1;
        let top = depth == 0;
        let guess = if top { self.names.top_len_hint() } else { 0 };
        let mut fields = Fields::with_capacity(guess.clamp(4, 64));
        self.whitespace();
        if self.eat(b'}').is_some() {
            if top {
                self.names.set_top_len_hint(0);
            }
            return Some(fields);
        }
        let base = if top { 0 } else { NameCache::TOP_POSITIONS };
        let mut position = 0;
        loop {
            self.whitespace();
            if self.peek() != Some(b'"') {
                return None;
            }
            let span = self.string_span()?;
            let (name, distinct) = {
                let raw = self.text.get(span.start..span.end)?;
                let unescaped;
                let key = if span.escaped {
                    unescaped = unescape(raw)?;
                    unescaped.as_str()
                } else {
                    raw
                };
                if top {
                    self.names.get_top(position, key)
                } else {
                    (self.names.get(base + position, key), false)
                }
            };
            self.whitespace();
            self.eat(b':')?;
            self.whitespace();
            let value = self.value(depth + 1)?;
            if distinct {
                fields.push_unchecked(name, value);
            } else {
                fields.insert(name, value);
            }
            position += 1;
            self.whitespace();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        if top {
            self.names.set_top_len_hint(fields.len());
        }
        Some(fields)
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        match self.peek()? {
            b'"' => {
                let span = self.string_span()?;
                let raw = self.text.get(span.start..span.end)?;
                Some(Value::String(if span.escaped {
                    Str::from(unescape(raw)?)
                } else {
                    Str::shared_slice(self.source, raw)?
                }))
            }
            b'{' if depth < MAX_DEPTH => self.object(depth).map(Value::Map),
            b'[' if depth < MAX_DEPTH => self.array(depth),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut items = Vec::new();
        self.whitespace();
        if self.eat(b']').is_some() {
            return Some(Value::Array(items));
        }
        loop {
            self.whitespace();
            items.push(self.value(depth + 1)?);
            self.whitespace();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Option<Value> {
        if self.bytes.get(self.pos..self.pos + word.len())? == word {
            self.pos += word.len();
            Some(value)
        } else {
            None
        }
    }

    /// The string at `pos` (a `"`); `pos` moves past its closing quote. `None` for a raw
    /// control character or a missing closing quote.
    #[inline]
    fn string_span(&mut self) -> Option<Span> {
        let bytes = self.bytes;
        let start = self.pos + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            // Eight bytes at a time while they are there, then one by one.
            if let Some(chunk) = bytes.get(at..at + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let found = stops(u64::from_le_bytes(word));
                if found == 0 {
                    at += 8;
                    continue;
                }
                at += (found.trailing_zeros() / 8) as usize;
            } else {
                while bytes.get(at).is_some_and(|&byte| !is_stop(byte)) {
                    at += 1;
                }
            }
            match bytes.get(at)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    // Skip the backslash and the byte it escapes; `unescape` checks the escape.
                    at += 2;
                }
                // A raw control character.
                _ => return None,
            }
        }
        self.pos = at + 1;
        Some(Span {
            start,
            end: at,
            escaped,
        })
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        let bytes = self.bytes;
        let mut i = start;
        let negative = bytes.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let digits = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        match bytes.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i + 1),
            _ => return None,
        }
        let mut float = false;
        if bytes.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
            float = true;
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            i = end;
            float = true;
        }
        let text = self.text.get(start..i)?;
        self.pos = i;
        if float {
            let value: f64 = text.parse().ok()?;
            return value.is_finite().then_some(Value::Float(value));
        }
        if negative {
            // serde_json reads `-0` and integers below i64::MIN as floats: leave those to it.
            let value: i64 = text.parse().ok()?;
            return (value != 0).then_some(Value::Int(value));
        }
        let value: u64 = text.parse().ok()?;
        Some(match i64::try_from(value) {
            Ok(value) => Value::Int(value),
            Err(_) => Value::Float(value as f64),
        })
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` (little-endian) that ends a run of plain string bytes: a
/// quote, a backslash or a control character. Bits above the lowest one may be spurious (borrows
/// of the subtraction trick), the lowest one is exact.
#[inline]
fn stops(word: u64) -> u64 {
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | quote | backslash) & HIGHS
}

#[inline]
fn is_stop(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// The text of a JSON string with escapes; `None` for an invalid escape or a lone surrogate.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(slash) = rest.find('\\') {
        out.push_str(&rest[..slash]);
        let bytes = rest.as_bytes();
        let (decoded, used) = match bytes.get(slash + 1)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let high = hex4(rest.get(slash + 2..slash + 6)?)?;
                match high {
                    0xD800..=0xDBFF => {
                        if rest.get(slash + 6..slash + 8)? != "\\u" {
                            return None;
                        }
                        let low = hex4(rest.get(slash + 8..slash + 12)?)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                        (char::from_u32(code)?, 12)
                    }
                    0xDC00..=0xDFFF => return None,
                    code => (char::from_u32(code)?, 6),
                }
            }
            _ => return None,
        };
        out.push(decoded);
        rest = rest.get(slash + used..)?;
    }
    out.push_str(rest);
    Some(out)
}

fn hex4(text: &str) -> Option<u32> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::JsonDecoder;
    use proptest::prelude::*;

    fn fast(text: &str) -> Option<Fields> {
        decode_object(&Bytes::from(text.to_owned()), &mut NameCache::default())
    }

    /// Same values, with floats compared by bits (`-0.0` is not `0.0` here).
    fn identical(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
            (Value::Array(xs), Value::Array(ys)) => {
                xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| identical(x, y))
            }
            (Value::Map(xs), Value::Map(ys)) => {
                xs.len() == ys.len()
                    && xs
                        .iter()
                        .zip(ys.iter())
                        .all(|((kx, x), (ky, y))| kx == ky && identical(x, y))
            }
            _ => a == b,
        }
    }

    /// The fast path agrees with serde_json whenever it answers.
    fn check(text: &str) -> Result<(), TestCaseError> {
        if let Some(fields) = fast(text) {
            let reference = JsonDecoder::new().decode_value(text.as_bytes());
            let Ok(reference) = reference else {
                return Err(TestCaseError::fail(format!(
                    "fast path accepted what serde_json rejects: {text:?} ({reference:?})"
                )));
            };
            prop_assert!(
                identical(&Value::Map(fields.clone()), &reference),
                "{:?}\nfast  {:?}\nserde {:?}",
                text,
                fields,
                reference
            );
        }
        Ok(())
    }

    #[test]
    fn stops_find_the_first_special_byte() {
        for (text, expected) in [
            (*b"abcdefgh", None),
            (*b"abc\"efgh", Some(3)),
            (*b"\\bcdefgh", Some(0)),
            (*b"abcdefg\x1f", Some(7)),
            (*b"ab\xc3\xa9de\"\\", Some(6)),
            (*b"\"\"\"\"\"\"\"\"", Some(0)),
        ] {
            let found = stops(u64::from_le_bytes(text));
            let first = (found != 0).then(|| (found.trailing_zeros() / 8) as usize);
            assert_eq!(first, expected, "{text:?}");
        }
    }

    #[test]
    fn reads_common_objects() {
        let fields = fast(
            r#" {"s":"plain","e":"a\"b\\c\/\n\u00e9\ud83d\ude00","n":-12,"u":18446744073709551615,"f":1.5e3,"z":0,"t":true,"x":null,"a":[1,[],{}],"o":{"k":"v"}} "#,
        )
        .unwrap();
        assert_eq!(fields.get("e"), Some(&Value::from("a\"b\\c/\né😀")));
        assert_eq!(fields.get("n"), Some(&Value::Int(-12)));
        assert_eq!(fields.get("u"), Some(&Value::Float(18446744073709551615.0)));
        assert_eq!(fields.get("f"), Some(&Value::Float(1500.0)));
        assert_eq!(fields.len(), 10);
        for text in [
            r#"{"a":1} x"#,
            r#"{"a":01}"#,
            r#"{"a":-0}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\q"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"[1]"#,
            r#"{"a":tru}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":1."#,
        ] {
            assert!(fast(text).is_none(), "{text}");
            check(text).unwrap();
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
        assert!(
            fast(&deep).is_none(),
            "the depth limit is serde_json's to report"
        );
        let fine = format!("{{\"a\":{}1{}}}", "[".repeat(60), "]".repeat(60));
        check(&fine).unwrap();
        assert!(fast(&fine).is_some());
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(serde_json::Value::from),
            "\\PC{0,12}|[\"\\\\\u{1}-\u{1f}é😀/]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::vec(("[a-d\"\\\\é]{0,3}", inner), 0..5)
                    .prop_map(|pairs| { serde_json::Value::Object(pairs.into_iter().collect()) }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn agrees_with_serde_json_on_valid_objects(
            pairs in prop::collection::vec(("[a-e]{1,3}|\\PC{0,4}", arb_json()), 0..8),
            spaced in any::<bool>(),
        ) {
            let mut text = String::from("{");
            for (i, (key, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                if spaced {
                    text.push_str(" \n\t");
                }
                text.push_str(&serde_json::to_string(key).unwrap());
                text.push(':');
                if spaced {
                    text.push(' ');
                }
                text.push_str(&serde_json::to_string(value).unwrap());
            }
            text.push('}');
            prop_assert!(fast(&text).is_some(), "{}", text);
            check(&text)?;
        }

        #[test]
        fn agrees_with_serde_json_on_damaged_input(
            base in prop::collection::vec(("[a-c]{1,2}", arb_json()), 1..4),
            at in 0usize..200,
            insert in "[\\[\\]{}\",:\\\\0-9eE.+-]{0,3}|\\\\u[0-9a-fA-F]{0,4}|\\PC{0,2}",
            cut in 0usize..200,
        ) {
            let object: serde_json::Map<String, serde_json::Value> = base.into_iter().collect();
            let mut text = serde_json::to_string(&object).unwrap();
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, &insert);
            let mut cut = cut.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            check(&text[..cut])?;
            check(&text)?;
        }

        #[test]
        fn stops_agree_with_a_byte_loop(word in any::<[u8; 8]>()) {
            let found = stops(u64::from_le_bytes(word));
            let first = (found != 0).then(|| (found.trailing_zeros() / 8) as usize);
            prop_assert_eq!(first, word.iter().position(|&b| is_stop(b)));
        }

        #[test]
        fn numbers_agree_with_serde_json(number in "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?") {
            check(&format!("{{\"n\":{number}}}"))?;
        }
    }
}
