//! Evaluation of a condition tree against one event.
//!
//! Values are looked at through [`View`], which borrows strings, arrays and maps from the event
//! (or the tree's literals) and copies only scalars, so evaluation allocates nothing except
//! where a function makes new text (`lower()` of a string with uppercase letters, `concat`,
//! `to_string` of a non-string) and the rare raw line that is not UTF-8.

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::{ArithOp, CmpOp, Expr, FieldPath, Func, Literal};
use crate::codec::json::{encode_value, format_timestamp};
use crate::event::{Event, Fields, Str, Value};

/// A borrowed look at a value during evaluation.
#[derive(Debug, Clone)]
pub(super) enum View<'a> {
    /// The path resolved to nothing.
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Timestamp(DateTime<Utc>),
    Array(&'a [Value]),
    Map(&'a Fields),
}

impl<'a> View<'a> {
    fn of(value: &'a Value) -> Self {
        match value {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Int(i) => View::Int(*i),
            Value::Float(x) => View::Float(*x),
            Value::String(s) => View::Str(Cow::Borrowed(s.as_str())),
            Value::Timestamp(ts) => View::Timestamp(*ts),
            Value::Array(items) => View::Array(items),
            Value::Map(map) => View::Map(map),
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            View::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The owned value, `None` when missing.
    fn into_value(self) -> Option<Value> {
        Some(match self {
            View::Missing => return None,
            View::Null => Value::Null,
            View::Bool(b) => Value::Bool(b),
            View::Int(i) => Value::Int(i),
            View::Float(x) => Value::Float(x),
            View::Str(Cow::Borrowed(s)) => Value::from(s),
            View::Str(Cow::Owned(s)) => Value::from(s),
            View::Timestamp(ts) => Value::Timestamp(ts),
            View::Array(items) => Value::Array(items.to_vec()),
            View::Map(map) => Value::Map(map.clone()),
        })
    }

    /// The text `to_string` gives: `None` for missing and null.
    fn text(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            View::Missing | View::Null => return None,
            View::Str(s) => Cow::Borrowed(&**s),
            View::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            View::Int(i) => Cow::Owned(i.to_string()),
            View::Float(x) => Cow::Owned(float_text(*x)),
            View::Timestamp(ts) => Cow::Owned(format_timestamp(ts)),
            View::Array(items) => Cow::Owned(json_text(&Value::Array(items.to_vec()))),
            View::Map(map) => Cow::Owned(json_text(&Value::Map((*map).clone()))),
        })
    }
}

/// A float as JSON writes it (`2.0`, `0.5`), or `NaN` / `inf` / `-inf`.
fn float_text(x: f64) -> String {
    if x.is_finite() {
        json_text(&Value::Float(x))
    } else {
        x.to_string()
    }
}

fn json_text(value: &Value) -> String {
    let mut out = Vec::new();
    encode_value(value, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl Literal {
    fn view(&self) -> View<'_> {
        match self {
            Literal::Null => View::Null,
            Literal::Bool(b) => View::Bool(*b),
            Literal::Int(i) => View::Int(*i),
            Literal::Float(x) => View::Float(*x),
            Literal::String(s) => View::Str(Cow::Borrowed(s)),
        }
    }
}

impl FieldPath {
    /// The value at the path, shared rather than copied; the raw line for `message`.
    fn value(&self, event: &Event) -> Option<Value> {
        if let Some(value) = event.fields().get_path(&self.segments) {
            return Some(value.clone());
        }
        // `get_path` found no `message` field, so the raw line stands in.
        if self.is_message {
            let raw = event.raw()?.clone();
            return Some(Value::String(
                Str::from_utf8(raw).unwrap_or_else(|raw| Str::from_utf8_lossy(raw).0),
            ));
        }
        None
    }

    fn resolve<'a>(&self, event: &'a Event) -> View<'a> {
        let Some((first, rest)) = self.segments.split_first() else {
            return View::Missing;
        };
        let Some(mut value) = event.fields().get_name(first) else {
            if self.is_message
                && let Some(raw) = event.raw()
            {
                return View::Str(match std::str::from_utf8(raw) {
                    Ok(text) => Cow::Borrowed(text),
                    Err(_) => Cow::Owned(String::from_utf8_lossy(raw).into_owned()),
                });
            }
            return View::Missing;
        };
        for segment in rest {
            value = match value {
                Value::Map(map) => match map.get_name(segment) {
                    Some(inner) => inner,
                    None => return View::Missing,
                },
                _ => return View::Missing,
            };
        }
        View::of(value)
    }
}

impl Expr {
    /// The node's value as an owned value, `None` when missing.
    pub(super) fn value(&self, event: &Event) -> Option<Value> {
        match self {
            Expr::Field(path) => path.value(event),
            Expr::Literal(literal) => Some(literal.to_value()),
            other => other.eval(event).into_value(),
        }
    }

    /// Whether the node holds, where a condition is expected.
    pub(super) fn test(&self, event: &Event) -> bool {
        match self {
            Expr::Or(items) => items.iter().any(|item| item.test(event)),
            Expr::And(items) => items.iter().all(|item| item.test(event)),
            Expr::Not(inner) => !inner.test(event),
            Expr::Compare(lhs, op, rhs) => op.holds(compare(&lhs.eval(event), &rhs.eval(event))),
            Expr::Match {
                value,
                pattern,
                negated,
            } => {
                let matched = match value.eval(event) {
                    View::Str(text) => pattern.0.is_match(&text),
                    _ => false,
                };
                matched != *negated
            }
            Expr::In(value, items) => {
                let value = value.eval(event);
                items
                    .iter()
                    .any(|item| compare(&value, &item.view()) == Some(Ordering::Equal))
            }
            Expr::Func(Func::Exists(path)) => !matches!(path.resolve(event), View::Missing),
            Expr::Func(Func::Contains(haystack, needle)) => {
                match (haystack.eval(event), needle.eval(event)) {
                    (View::Str(haystack), View::Str(needle)) => haystack.contains(&*needle),
                    (View::Array(items), needle) => items
                        .iter()
                        .any(|item| compare(&View::of(item), &needle) == Some(Ordering::Equal)),
                    _ => false,
                }
            }
            Expr::Func(Func::StartsWith(text, prefix)) => {
                both_str(&text.eval(event), &prefix.eval(event), |a, b| {
                    a.starts_with(b)
                })
            }
            Expr::Func(Func::EndsWith(text, suffix)) => {
                both_str(&text.eval(event), &suffix.eval(event), |a, b| {
                    a.ends_with(b)
                })
            }
            Expr::Literal(_)
            | Expr::Field(_)
            | Expr::Arith(..)
            | Expr::Func(
                Func::Lower(_)
                | Func::Upper(_)
                | Func::Len(_)
                | Func::Concat(_)
                | Func::ToInt(_)
                | Func::ToFloat(_)
                | Func::ToString(_),
            ) => matches!(self.eval(event), View::Bool(true)),
        }
    }

    /// The node's value.
    fn eval<'a>(&'a self, event: &'a Event) -> View<'a> {
        match self {
            Expr::Literal(literal) => literal.view(),
            Expr::Field(path) => path.resolve(event),
            Expr::Func(Func::Lower(inner)) => match inner.eval(event) {
                View::Str(text) if text.chars().any(char::is_uppercase) => {
                    View::Str(Cow::Owned(text.to_lowercase()))
                }
                text @ View::Str(_) => text,
                _ => View::Missing,
            },
            Expr::Func(Func::Upper(inner)) => match inner.eval(event) {
                View::Str(text) if text.chars().any(char::is_lowercase) => {
                    View::Str(Cow::Owned(text.to_uppercase()))
                }
                text @ View::Str(_) => text,
                _ => View::Missing,
            },
            Expr::Func(Func::ToString(inner)) => match inner.eval(event) {
                View::Null => View::Null,
                View::Str(text) => View::Str(text),
                other => match other.text() {
                    Some(text) => View::Str(Cow::Owned(text.into_owned())),
                    None => View::Missing,
                },
            },
            Expr::Func(Func::Concat(items)) => {
                let mut joined = String::new();
                for item in items {
                    match item.eval(event).text() {
                        Some(text) => joined.push_str(&text),
                        None => return View::Missing,
                    }
                }
                View::Str(Cow::Owned(joined))
            }
            Expr::Func(Func::ToInt(inner)) => {
                to_int(&inner.eval(event)).map_or(View::Missing, View::Int)
            }
            Expr::Func(Func::ToFloat(inner)) => {
                to_float(&inner.eval(event)).map_or(View::Missing, View::Float)
            }
            Expr::Arith(lhs, op, rhs) => arith(*op, &lhs.eval(event), &rhs.eval(event)),
            Expr::Func(Func::Len(inner)) => {
                let len = match inner.eval(event) {
                    View::Str(text) => text.chars().count(),
                    View::Array(items) => items.len(),
                    View::Map(map) => map.len(),
                    _ => return View::Missing,
                };
                i64::try_from(len).map_or(View::Missing, View::Int)
            }
            _ => View::Bool(self.test(event)),
        }
    }
}

/// 2^63, exactly representable: floats at or beyond it do not fit an i64.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

fn float_to_int(x: f64) -> Option<i64> {
    let whole = x.trunc();
    // In range, the cast is exact.
    (-I64_LIMIT..I64_LIMIT)
        .contains(&whole)
        .then_some(whole as i64)
}

fn to_int(view: &View<'_>) -> Option<i64> {
    match view {
        View::Int(i) => Some(*i),
        View::Float(x) => float_to_int(*x),
        View::Str(text) => {
            let text = text.trim();
            text.parse::<i64>()
                .ok()
                .or_else(|| text.parse::<f64>().ok().and_then(float_to_int))
        }
        View::Bool(b) => Some(i64::from(*b)),
        View::Timestamp(ts) => Some(ts.timestamp()),
        _ => None,
    }
}

fn to_float(view: &View<'_>) -> Option<f64> {
    match view {
        View::Int(i) => Some(*i as f64),
        View::Float(x) => Some(*x),
        View::Str(text) => text.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        View::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        View::Timestamp(ts) => {
            Some(ts.timestamp() as f64 + f64::from(ts.timestamp_subsec_nanos()) / 1e9)
        }
        _ => None,
    }
}

fn arith<'a>(op: ArithOp, lhs: &View<'_>, rhs: &View<'_>) -> View<'a> {
    if let (View::Int(a), View::Int(b), false) = (lhs, rhs, op == ArithOp::Div) {
        let result = match op {
            ArithOp::Add => a.checked_add(*b),
            ArithOp::Sub => a.checked_sub(*b),
            _ => a.checked_mul(*b),
        };
        return result.map_or(View::Missing, View::Int);
    }
    let number = |view: &View<'_>| match view {
        View::Int(i) => Some(*i as f64),
        View::Float(x) => Some(*x),
        _ => None,
    };
    let (Some(a), Some(b)) = (number(lhs), number(rhs)) else {
        return View::Missing;
    };
    let result = match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div if b == 0.0 => return View::Missing,
        ArithOp::Div => a / b,
    };
    if result.is_finite() {
        View::Float(result)
    } else {
        View::Missing
    }
}

fn both_str(a: &View<'_>, b: &View<'_>, test: fn(&str, &str) -> bool) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) => test(a, b),
        _ => false,
    }
}

impl CmpOp {
    fn holds(self, ordering: Option<Ordering>) -> bool {
        use Ordering::{Equal, Greater, Less};
        match self {
            CmpOp::Eq => ordering == Some(Equal),
            CmpOp::Ne => ordering != Some(Equal),
            CmpOp::Lt => ordering == Some(Less),
            CmpOp::Le => matches!(ordering, Some(Less | Equal)),
            CmpOp::Gt => ordering == Some(Greater),
            CmpOp::Ge => matches!(ordering, Some(Greater | Equal)),
        }
    }
}

/// How `a` orders against `b`, or `None` when they do not compare (see the module doc).
fn compare(a: &View<'_>, b: &View<'_>) -> Option<Ordering> {
    match (a, b) {
        (View::Int(a), View::Int(b)) => Some(a.cmp(b)),
        (View::Float(a), View::Float(b)) => a.partial_cmp(b),
        (View::Int(a), View::Float(b)) => compare_int_float(*a, *b),
        (View::Float(a), View::Int(b)) => compare_int_float(*b, *a).map(Ordering::reverse),
        (View::Str(a), View::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (View::Bool(a), View::Bool(b)) => Some(a.cmp(b)),
        (View::Null, View::Null) => Some(Ordering::Equal),
        (View::Timestamp(a), View::Timestamp(b)) => Some(a.cmp(b)),
        (View::Timestamp(a), View::Str(b)) => parse_rfc3339(b).map(|b| a.cmp(&b)),
        (View::Str(a), View::Timestamp(b)) => parse_rfc3339(a).map(|a| a.cmp(b)),
        _ => None,
    }
}

/// Exact comparison of an int with a float (converting the int to f64 would round above 2^53).
fn compare_int_float(int: i64, float: f64) -> Option<Ordering> {
    // 2^63, exactly representable.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if float.is_nan() {
        return None;
    }
    if float >= LIMIT {
        return Some(Ordering::Less);
    }
    if float < -LIMIT {
        return Some(Ordering::Greater);
    }
    let whole = float.trunc();
    // In range, so the cast is exact.
    let ordering = int.cmp(&(whole as i64));
    Some(ordering.then_with(|| {
        if float > whole {
            Ordering::Less
        } else if float < whole {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|ts| ts.with_timezone(&Utc))
}
