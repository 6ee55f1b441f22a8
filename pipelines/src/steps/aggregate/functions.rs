//! Aggregate functions: parsing `count()`, `p95(request_time)`, … and their accumulators.
//!
//! A function's argument is an [expression](crate::condition) — usually a field path, read
//! without copying; `sum(bytes / 1024)` works too. Functions over the same argument that can
//! share state do (`p50(x)` and `p99(x)` read one sketch). Every accumulator can merge with
//! another of its kind, which session windows need when an event bridges two sessions.

use crate::condition::Expression;
use crate::event::{Event, FieldName, Fields, Str, Value};
use crate::hash::hash_value;

use super::hll::Distinct;
use super::sketch::Sketch;
use super::topk::TopK;

/// Seed of the hashes `count_distinct` and `top_k` keep.
const VALUE_SEED: u64 = 0x00d1_571c_7000;

/// Largest `k` of `top_k`.
pub(crate) const MAX_TOP_K: usize = 1000;

/// What a function computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Function {
    /// `count()`: events in the group.
    Count,
    /// `count(f)`: events where `f` has a value other than null.
    CountOf,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
    /// `p50` … `p99`, `percentile(f, q)`.
    Percentile(f64),
    First,
    Last,
    TopK(usize),
}

/// The state a function reads; functions with equal stats share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatKind {
    Count,
    CountOf,
    Sum,
    Min,
    Max,
    Avg,
    Distinct,
    Sketch,
    First,
    Last,
    /// With its Space-Saving capacity.
    TopK(usize),
}

impl Function {
    pub(crate) fn stat(self) -> StatKind {
        match self {
            Function::Count => StatKind::Count,
            Function::CountOf => StatKind::CountOf,
            Function::Sum => StatKind::Sum,
            Function::Min => StatKind::Min,
            Function::Max => StatKind::Max,
            Function::Avg => StatKind::Avg,
            Function::CountDistinct => StatKind::Distinct,
            Function::Percentile(_) => StatKind::Sketch,
            Function::First => StatKind::First,
            Function::Last => StatKind::Last,
            Function::TopK(k) => StatKind::TopK(top_k_capacity(k)),
        }
    }
}

/// Counters a `top_k(f, k)` keeps: exact up to this many distinct values.
pub(crate) fn top_k_capacity(k: usize) -> usize {
    (k * 20).clamp(1000, 20_000)
}

/// A function's argument, with the path fast path.
#[derive(Debug, Clone)]
pub(crate) struct Arg {
    /// Set when the argument is a plain path (other than `message`): read in place.
    path: Option<Vec<FieldName>>,
    expression: Expression,
}

impl Arg {
    pub(crate) fn new(expression: Expression) -> Self {
        let path = expression
            .field_path()
            .filter(|path| !matches!(path, [only] if only == crate::event::MESSAGE))
            .map(<[FieldName]>::to_vec);
        Arg { path, expression }
    }

    /// The canonical text, to recognize equal arguments.
    pub(crate) fn key(&self) -> String {
        self.expression.to_string()
    }

    /// Calls `f` with the argument's value for `event`, `None` when missing.
    #[inline]
    pub(crate) fn with<R>(&self, event: &Event, f: impl FnOnce(Option<&Value>) -> R) -> R {
        match &self.path {
            Some(path) => f(event.fields().get_path(path)),
            None => {
                let value = self.expression.evaluate(event);
                f(value.as_ref())
            }
        }
    }
}

/// Parses a function spec: `count()`, `sum(bytes)`, `percentile(request_time, 0.99)`,
/// `top_k(path, 10)`.
///
/// # Errors
/// A message naming what is wrong: the syntax, an unknown function, the number or kind of
/// arguments, a bad expression (with a caret).
pub(crate) fn parse(spec: &str) -> Result<(Function, Option<Arg>), String> {
    let text = spec.trim();
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..name_end];
    let Some(inner) = text[name_end..]
        .trim_start()
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
    else {
        return Err(format!(
            "`{spec}` is not a function call such as `count()` or `sum(bytes)`"
        ));
    };
    let args = split_args(inner)?;
    let expressions = args
        .iter()
        .map(|arg| Expression::parse(arg).map_err(|error| format!("in `{spec}`: {error}")))
        .collect::<Result<Vec<_>, _>>()?;
    let found = expressions.len();
    let arity = |expected: usize| -> Result<(), String> {
        if found == expected {
            Ok(())
        } else {
            let plural = if expected == 1 { "" } else { "s" };
            Err(format!(
                "`{name}` takes {expected} argument{plural}, found {found}"
            ))
        }
    };
    let mut expressions = expressions.into_iter();
    let mut first = || expressions.next().map(Arg::new);
    let function = match name {
        "count" if args.is_empty() => return Ok((Function::Count, None)),
        "count" => {
            arity(1)?;
            Function::CountOf
        }
        "sum" => {
            arity(1)?;
            Function::Sum
        }
        "min" => {
            arity(1)?;
            Function::Min
        }
        "max" => {
            arity(1)?;
            Function::Max
        }
        "avg" => {
            arity(1)?;
            Function::Avg
        }
        "count_distinct" => {
            arity(1)?;
            Function::CountDistinct
        }
        "first" => {
            arity(1)?;
            Function::First
        }
        "last" => {
            arity(1)?;
            Function::Last
        }
        "p50" | "p90" | "p95" | "p99" => {
            arity(1)?;
            let percent: f64 = name[1..].parse().unwrap_or(50.0);
            Function::Percentile(percent / 100.0)
        }
        "percentile" => {
            arity(2)?;
            let arg = first();
            let q = expressions
                .next()
                .and_then(|q| q.literal())
                .and_then(|q| q.as_f64())
                .filter(|q| (0.0..=1.0).contains(q))
                .ok_or_else(|| {
                    format!(
                        "the second argument of `percentile` is the quantile, a number from 0 to \
                         1 (0.99 for the 99th percentile), found `{}`",
                        args[1].trim()
                    )
                })?;
            return Ok((Function::Percentile(q), arg));
        }
        "top_k" => {
            arity(2)?;
            let arg = first();
            let k = expressions
                .next()
                .and_then(|k| k.literal())
                .and_then(|k| k.as_int())
                .and_then(|k| usize::try_from(k).ok())
                .filter(|k| (1..=MAX_TOP_K).contains(k))
                .ok_or_else(|| {
                    format!(
                        "the second argument of `top_k` is how many values to keep, an integer \
                         from 1 to {MAX_TOP_K}, found `{}`",
                        args[1].trim()
                    )
                })?;
            return Ok((Function::TopK(k), arg));
        }
        _ => {
            return Err(format!(
                "unknown function `{name}`; expected count, sum, min, max, avg, count_distinct, \
                 p50, p90, p95, p99, percentile, first, last or top_k"
            ));
        }
    };
    Ok((function, first()))
}

/// Splits the inside of a call at top-level commas (outside quotes, parentheses, brackets).
fn split_args(inner: &str) -> Result<Vec<&str>, String> {
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                args.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    args.push(&inner[start..]);
    if args.iter().any(|arg| arg.trim().is_empty()) {
        return Err(format!("empty argument in `({inner})`"));
    }
    Ok(args)
}

/// A number as min/max keep it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(value: &Value) -> Option<Num> {
        match value {
            Value::Int(i) => Some(Num::Int(*i)),
            Value::Float(x) if !x.is_nan() => Some(Num::Float(*x)),
            _ => None,
        }
    }

    fn less(self, other: Num) -> bool {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a < b,
            (a, b) => a.as_f64() < b.as_f64(),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(x) => x,
        }
    }

    fn value(self) -> Value {
        match self {
            Num::Int(i) => Value::Int(i),
            Num::Float(x) => Value::Float(x),
        }
    }
}

/// A value with the event time and arrival order it came with, for `first` and `last`.
#[derive(Debug, Clone)]
pub(crate) struct Stamped {
    time: i64,
    seq: u64,
    value: Value,
}

/// The running state of one stat in one group.
#[derive(Debug, Clone)]
pub(crate) enum Acc {
    Count(u64),
    Sum {
        ints: i128,
        floats: f64,
        has_float: bool,
        any: bool,
    },
    Min(Option<Num>),
    Max(Option<Num>),
    Avg {
        sum: f64,
        count: u64,
    },
    Distinct(Distinct),
    Sketch(Box<Sketch>),
    First(Option<Stamped>),
    Last(Option<Stamped>),
    TopK(Box<TopK>),
}

impl Acc {
    pub(crate) fn new(kind: StatKind) -> Acc {
        match kind {
            StatKind::Count | StatKind::CountOf => Acc::Count(0),
            StatKind::Sum => Acc::Sum {
                ints: 0,
                floats: 0.0,
                has_float: false,
                any: false,
            },
            StatKind::Min => Acc::Min(None),
            StatKind::Max => Acc::Max(None),
            StatKind::Avg => Acc::Avg { sum: 0.0, count: 0 },
            StatKind::Distinct => Acc::Distinct(Distinct::default()),
            StatKind::Sketch => Acc::Sketch(Box::default()),
            StatKind::First => Acc::First(None),
            StatKind::Last => Acc::Last(None),
            StatKind::TopK(capacity) => Acc::TopK(Box::new(TopK::new(capacity))),
        }
    }

    /// Adds one event's value (`None` when the argument is missing; `count()` takes `None`).
    #[inline]
    pub(crate) fn update(&mut self, kind: StatKind, value: Option<&Value>, time: i64, seq: u64) {
        if kind == StatKind::Count {
            if let Acc::Count(n) = self {
                *n += 1;
            }
            return;
        }
        let Some(value) = value.filter(|value| !matches!(value, Value::Null)) else {
            return;
        };
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                ints,
                floats,
                has_float,
                any,
            } => match value {
                Value::Int(i) => {
                    *ints += i128::from(*i);
                    *any = true;
                }
                Value::Float(x) if x.is_finite() => {
                    *floats += x;
                    *has_float = true;
                    *any = true;
                }
                _ => {}
            },
            Acc::Min(current) => {
                if let Some(n) = Num::of(value)
                    && current.is_none_or(|current| n.less(current))
                {
                    *current = Some(n);
                }
            }
            Acc::Max(current) => {
                if let Some(n) = Num::of(value)
                    && current.is_none_or(|current| current.less(n))
                {
                    *current = Some(n);
                }
            }
            Acc::Avg { sum, count } => {
                if let Some(x) = value.as_f64().filter(|x| x.is_finite()) {
                    *sum += x;
                    *count += 1;
                }
            }
            Acc::Distinct(distinct) => distinct.insert(hash_value(VALUE_SEED, value)),
            Acc::Sketch(sketch) => {
                if let Some(x) = value.as_f64() {
                    sketch.insert(x);
                }
            }
            Acc::First(current) => {
                if current
                    .as_ref()
                    .is_none_or(|current| (time, seq) < (current.time, current.seq))
                {
                    *current = Some(Stamped {
                        time,
                        seq,
                        value: owned(value),
                    });
                }
            }
            Acc::Last(current) => {
                if current
                    .as_ref()
                    .is_none_or(|current| (time, seq) > (current.time, current.seq))
                {
                    *current = Some(Stamped {
                        time,
                        seq,
                        value: owned(value),
                    });
                }
            }
            Acc::TopK(top) => top.add(hash_value(VALUE_SEED, value), 1, || owned(value)),
        }
    }

    /// Folds `other` (the same kind of stat) into `self`.
    pub(crate) fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (
                Acc::Sum {
                    ints,
                    floats,
                    has_float,
                    any,
                },
                Acc::Sum {
                    ints: other_ints,
                    floats: other_floats,
                    has_float: other_has_float,
                    any: other_any,
                },
            ) => {
                *ints += other_ints;
                *floats += other_floats;
                *has_float |= other_has_float;
                *any |= other_any;
            }
            (Acc::Min(a), Acc::Min(Some(b))) if a.is_none_or(|a| b.less(a)) => *a = Some(b),
            (Acc::Max(a), Acc::Max(Some(b))) if a.is_none_or(|a| a.less(b)) => *a = Some(b),
            (Acc::Avg { sum, count }, Acc::Avg { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.merge(&b),
            (Acc::Sketch(a), Acc::Sketch(b)) => a.merge(&b),
            (Acc::First(a), Acc::First(Some(b)))
                if a.as_ref().is_none_or(|a| (b.time, b.seq) < (a.time, a.seq)) =>
            {
                *a = Some(b);
            }
            (Acc::Last(a), Acc::Last(Some(b)))
                if a.as_ref().is_none_or(|a| (b.time, b.seq) > (a.time, a.seq)) =>
            {
                *a = Some(b);
            }
            (Acc::TopK(a), Acc::TopK(b)) => a.merge(&b),
            // Empty `other`, or kinds that never meet (stats are positional).
            _ => {}
        }
    }

    /// The result of `function` over this stat.
    pub(crate) fn finish(&self, function: Function) -> Value {
        match (self, function) {
            (Acc::Count(n), _) => Value::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
            (Acc::Sum { any: false, .. }, _) => Value::Null,
            (
                Acc::Sum {
                    ints,
                    floats,
                    has_float,
                    ..
                },
                _,
            ) => {
                if *has_float {
                    Value::Float(*ints as f64 + floats)
                } else {
                    i64::try_from(*ints).map_or(Value::Float(*ints as f64), Value::Int)
                }
            }
            (Acc::Min(n) | Acc::Max(n), _) => n.map_or(Value::Null, Num::value),
            (Acc::Avg { count: 0, .. }, _) => Value::Null,
            (Acc::Avg { sum, count }, _) => Value::Float(sum / *count as f64),
            (Acc::Distinct(distinct), _) => Value::Int(distinct.count()),
            (Acc::Sketch(sketch), Function::Percentile(q)) => {
                sketch.quantile(q).map_or(Value::Null, Value::Float)
            }
            (Acc::Sketch(_), _) => Value::Null,
            (Acc::First(stamped) | Acc::Last(stamped), _) => stamped
                .as_ref()
                .map_or(Value::Null, |stamped| stamped.value.clone()),
            (Acc::TopK(top), Function::TopK(k)) => Value::Array(
                top.top(k)
                    .into_iter()
                    .map(|(value, count)| {
                        let mut entry = Fields::with_capacity(2);
                        entry.push_unchecked(FieldName::new("value"), value.clone());
                        entry.push_unchecked(
                            FieldName::new("count"),
                            Value::Int(i64::try_from(count).unwrap_or(i64::MAX)),
                        );
                        Value::Map(entry)
                    })
                    .collect(),
            ),
            (Acc::TopK(_), _) => Value::Null,
        }
    }
}

/// A deep copy whose strings own their bytes: state kept for a whole window must not pin the
/// source's read buffers that event strings are slices of.
pub(crate) fn owned(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(Str::from(text.as_str())),
        Value::Array(items) => Value::Array(items.iter().map(owned).collect()),
        Value::Map(map) => Value::Map(
            map.iter()
                .map(|(name, item)| (name.clone(), owned(item)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let ok = |spec: &str| parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(ok("count()").0, Function::Count);
        assert!(ok(" count ( ) ").1.is_none());
        assert_eq!(ok("count(user)").0, Function::CountOf);
        assert_eq!(ok("p95(request_time)").0, Function::Percentile(0.95));
        assert_eq!(ok("p50(x)").0, Function::Percentile(0.5));
        assert_eq!(ok("percentile(x, 0.999)").0, Function::Percentile(0.999));
        assert_eq!(ok("top_k(path, 5)").0, Function::TopK(5));
        assert_eq!(ok("sum(bytes / 1024)").1.unwrap().key(), "bytes / 1024");
        assert_eq!(
            ok("count_distinct(concat(ip, \",\", agent))").0,
            Function::CountDistinct
        );
        assert_eq!(
            ok("max(\"odd, key\".x)").1.unwrap().key(),
            ".\"odd, key\".x"
        );

        let error = |spec: &str| parse(spec).unwrap_err();
        assert_eq!(
            error("count"),
            "`count` is not a function call such as `count()` or `sum(bytes)`"
        );
        assert!(error("median(x)").starts_with("unknown function `median`"));
        assert_eq!(error("sum()"), "`sum` takes 1 argument, found 0");
        assert_eq!(error("sum(a, b)"), "`sum` takes 1 argument, found 2");
        assert_eq!(error("sum(a,)"), "empty argument in `(a,)`");
        assert!(error("percentile(x, 99)").contains("a number from 0 to 1"));
        assert!(error("percentile(x, y)").contains("a number from 0 to 1"));
        assert!(error("top_k(x, 0)").contains("an integer from 1 to 1000"));
        assert!(error("top_k(x, 1.5)").contains("an integer from 1 to 1000"));
        assert_eq!(
            error("sum(a +)"),
            "in `sum(a +)`: expected a value, found the end of the condition\na +\n   ^"
        );
    }

    #[test]
    fn accumulators_finish() {
        let run = |spec: &str, values: &[Value]| {
            let (function, _) = parse(spec).unwrap();
            let kind = function.stat();
            let mut acc = Acc::new(kind);
            for (i, value) in values.iter().enumerate() {
                acc.update(kind, Some(value), 100 - i as i64, i as u64);
            }
            acc.finish(function)
        };
        let values = [
            Value::Int(3),
            Value::Null,
            Value::Float(1.5),
            Value::from("x"),
            Value::Int(-2),
        ];
        assert_eq!(run("count()", &values), Value::Int(5));
        assert_eq!(run("count(x)", &values), Value::Int(4));
        assert_eq!(run("sum(x)", &values), Value::Float(2.5));
        assert_eq!(
            run(
                "sum(x)",
                &[Value::Int(i64::MAX), Value::Int(1), Value::Int(-1)]
            ),
            Value::Int(i64::MAX)
        );
        assert_eq!(run("sum(x)", &[Value::from("a")]), Value::Null);
        assert_eq!(run("min(x)", &values), Value::Int(-2));
        assert_eq!(run("max(x)", &values), Value::Int(3));
        assert_eq!(
            run("max(x)", &[Value::Float(f64::NAN), Value::Float(0.5)]),
            Value::Float(0.5)
        );
        assert_eq!(run("avg(x)", &values), Value::Float(2.5 / 3.0));
        assert_eq!(run("avg(x)", &[]), Value::Null);
        assert_eq!(
            run(
                "count_distinct(x)",
                &[Value::Int(1), Value::Int(1), Value::Float(1.0), Value::Null]
            ),
            Value::Int(2)
        );
        // Times descend with arrival here: first is the last to arrive.
        assert_eq!(run("first(x)", &values), Value::Int(-2));
        assert_eq!(run("last(x)", &values), Value::Int(3));
        assert_eq!(run("p50(x)", &[]), Value::Null);
        assert_eq!(run("p99(x)", &[Value::Int(7)]), Value::Float(7.0));
        let top = run(
            "top_k(x, 1)",
            &[Value::from("a"), Value::from("b"), Value::from("b")],
        );
        assert_eq!(
            top,
            Value::Array(vec![Value::Map(
                [("value", Value::from("b")), ("count", Value::Int(2))]
                    .into_iter()
                    .collect()
            )])
        );
    }

    proptest::proptest! {
        #[test]
        fn spec_parsing_never_panics(spec in "[a-z_0-9]{0,12}\\(?[a-z0-9, .\"()\\[\\]+*/-]{0,20}\\)?") {
            let _ = parse(&spec);
        }
    }

    #[test]
    fn owned_copies_do_not_share_buffers() {
        let line = Str::from("shared buffer");
        let slice = Value::String(line.slice_ref(&line.as_str()[..6]));
        let Value::String(copy) = owned(&slice) else {
            panic!("a string stays a string");
        };
        assert_eq!(copy, "shared");
        assert!(
            !line
                .as_bytes()
                .as_ptr_range()
                .contains(&copy.as_bytes().as_ptr())
        );
    }
}
