//! `${VAR}` interpolation of config text, before it is parsed.
//!
//! - `${NAME}` is replaced by the value of the environment variable `NAME`; it is an error when
//!   `NAME` is not set.
//! - `${NAME:-default}` is replaced by the value of `NAME`, or by `default` when `NAME` is unset
//!   or empty.
//! - `$$` is a literal `$`; any other `$` is kept as it is (so regexes ending in `$` need no
//!   escaping).
//!
//! Values are inserted as they are, without TOML quoting or escaping, so write references inside
//! quoted strings (`url = "${PG_URL}"`): a value with a `"` or `\` in it then needs care, and an
//! unquoted reference can inject arbitrary TOML. Interpolation runs over the whole text, comments
//! included. It never changes line numbers: a `${` must be closed on its line, and a value
//! containing a line break is refused. Positions after a replacement on the same line are mapped
//! back to the original text by [`Interpolated::original_offset`].

/// Config text after interpolation, with what is needed to map positions back.
#[derive(Debug, Clone)]
pub(super) struct Interpolated {
    /// The interpolated text.
    pub(super) text: String,
    /// Every replacement made, in order.
    replacements: Vec<Replacement>,
}

/// One `${…}` or `$$` replaced: its byte ranges in the output and the original text.
#[derive(Debug, Clone, Copy)]
struct Replacement {
    out_start: usize,
    out_end: usize,
    original_start: usize,
    original_end: usize,
}

impl Interpolated {
    /// The byte offset in the original text that `offset` in the interpolated text comes from.
    /// An offset inside an inserted value maps to the start of its `${`.
    pub(super) fn original_offset(&self, offset: usize) -> usize {
        let after = self
            .replacements
            .partition_point(|replacement| replacement.out_start <= offset);
        let Some(replacement) = after.checked_sub(1).and_then(|i| self.replacements.get(i)) else {
            return offset;
        };
        if offset < replacement.out_end {
            replacement.original_start
        } else {
            offset - replacement.out_end + replacement.original_end
        }
    }
}

/// A reference that could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InterpolationError {
    /// Byte offset of the `$` in the original text.
    pub(super) offset: usize,
    /// What is wrong.
    pub(super) message: String,
}

/// Interpolates `text`, looking variables up with `lookup`.
///
/// # Errors
/// Every reference that is malformed, names an unset variable without a default, or whose value
/// contains a line break.
pub(super) fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, Vec<InterpolationError>> {
    let mut out = String::with_capacity(text.len());
    let mut replacements = Vec::new();
    let mut errors = Vec::new();
    let bytes = text.as_bytes();
    // Start of the text not yet copied to `out`.
    let mut copied = 0;
    let mut i = 0;
    while let Some(found) = memchr::memchr(b'$', &bytes[i..]) {
        let dollar = i + found;
        match bytes.get(dollar + 1) {
            Some(b'$') => {
                out.push_str(&text[copied..dollar]);
                let out_start = out.len();
                out.push('$');
                replacements.push(Replacement {
                    out_start,
                    out_end: out.len(),
                    original_start: dollar,
                    original_end: dollar + 2,
                });
                copied = dollar + 2;
                i = dollar + 2;
            }
            Some(b'{') => {
                let body_start = dollar + 2;
                let line_end = memchr::memchr2(b'\n', b'\r', &bytes[body_start..])
                    .map_or(text.len(), |at| body_start + at);
                let Some(close) = memchr::memchr(b'}', &bytes[body_start..line_end]) else {
                    errors.push(InterpolationError {
                        offset: dollar,
                        message: "`${` is not closed by `}` on the same line; write `$${` for a \
                                  literal `${`"
                            .to_owned(),
                    });
                    i = body_start;
                    continue;
                };
                let body_end = body_start + close;
                let reference = &text[dollar..=body_end];
                let body = &text[body_start..body_end];
                let (name, default) = match body.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (body, None),
                };
                i = body_end + 1;
                if !is_variable_name(name) {
                    errors.push(InterpolationError {
                        offset: dollar,
                        message: format!(
                            "invalid reference `{reference}`: expected `${{NAME}}` or \
                             `${{NAME:-default}}` with a NAME of letters, digits and `_`"
                        ),
                    });
                    continue;
                }
                let value = match (lookup(name), default) {
                    (Some(value), Some(default)) if value.is_empty() => default.to_owned(),
                    (Some(value), _) => value,
                    (None, Some(default)) => default.to_owned(),
                    (None, None) => {
                        errors.push(InterpolationError {
                            offset: dollar,
                            message: format!(
                                "environment variable `{name}` is not set; set it or give a \
                                 default with `${{{name}:-default}}`"
                            ),
                        });
                        continue;
                    }
                };
                if value.contains(['\n', '\r']) {
                    errors.push(InterpolationError {
                        offset: dollar,
                        message: format!(
                            "environment variable `{name}` contains a line break, which cannot be \
                             inserted into a config line"
                        ),
                    });
                    continue;
                }
                out.push_str(&text[copied..dollar]);
                let out_start = out.len();
                out.push_str(&value);
                replacements.push(Replacement {
                    out_start,
                    out_end: out.len(),
                    original_start: dollar,
                    original_end: i,
                });
                copied = i;
            }
            _ => i = dollar + 1,
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.push_str(&text[copied..]);
    Ok(Interpolated {
        text: out,
        replacements,
    })
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
