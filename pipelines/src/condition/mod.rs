//! The condition language: small boolean expressions over an event's fields.
//!
//! Used by `filter` (keep matching events) and by later steps that choose between outputs.
//! A condition is parsed, type-checked and compiled once, when the pipeline is built; evaluating
//! it per event walks a small tree whose field paths are already interned [`FieldName`]s and whose
//! regexes are already compiled, so the common cases (comparisons, regex matches on a field, `in`
//! lists) allocate nothing.
//!
//! # Syntax
//!
//! ```text
//! status >= 400 and not (agent ~ "(?i)bot" or path in ["/healthz", "/favicon.ico"])
//! exists(user.id) && lower(method) != "get"
//! ```
//!
//! - **Field paths**: `status`, `user.id` (nested maps). A segment that is not a plain identifier
//!   (`[A-Za-z_][A-Za-z0-9_]*`) or is a keyword is quoted: `user."odd key"`; a path that starts
//!   with a quoted segment is written with a leading dot: `."odd key".x` (a leading dot is allowed
//!   on any path: `.status` is `status`). `message` means the event's raw line when the event has
//!   no `message` field.
//! - **Literals**: integers (`404`, `-1`), floats (`0.5`, `1e3`), strings in double or single
//!   quotes with the escapes `\\ \" \' \n \r \t \0 \u{1F600}` (any other backslash is kept as is,
//!   so regex patterns such as `"\d+"` need no doubling), `true`, `false`, `null`.
//! - **Comparisons**: `== != < <= > >=`. They do not chain: `a < b < c` is an error.
//! - **Boolean operators**: `not` / `!` binds looser than comparisons (`not status == 200` is
//!   `not (status == 200)`), then `and` / `&&`, then `or` / `||`. Parentheses group.
//! - **Regex match**: `value ~ "pattern"` and `value !~ "pattern"`; the pattern must be a string
//!   literal, compiled once (Rust `regex` syntax, so `(?i)` makes it case-insensitive). A match
//!   finds the pattern anywhere in the value: anchor it with `^…$` to match the whole value.
//! - **Lists**: `value in [200, 204, "ok"]`, `value not in [...]`; items are literals.
//! - **Functions**: `exists(path)`, `contains(value, "x")`, `starts_with(value, "x")`,
//!   `ends_with(value, "x")`, `lower(value)`, `upper(value)`, `len(value)`,
//!   `concat(a, b, ...)`, `to_int(value)`, `to_float(value)`, `to_string(value)`. They compose:
//!   `lower(agent) ~ "bot"`, `len(path) > 100`.
//! - **Arithmetic**: `+ - * /` on numbers, binding tighter than comparisons (`*` and `/` tighter
//!   than `+` and `-`, all left-associative): `bytes / 1024 > 10`. A `-` right after a value is
//!   subtraction (`a-1` is `a - 1`); elsewhere, before a digit, it is a sign (`a * -1`).
//!
//! # Semantics
//!
//! Evaluation never fails and never panics: a condition either holds for an event or it does not.
//! - A comparison holds when both sides are comparable and the ordering matches. Comparable are:
//!   two numbers (an int and a float compare by exact numeric value; NaN compares with nothing),
//!   two strings (lexicographically, by bytes, which is code point order), two bools
//!   (`false < true`), two timestamps, a timestamp and a string holding an RFC 3339 time
//!   (`ts >= "2024-05-01T00:00:00Z"`), and two nulls (equal). Everything else — a missing field,
//!   mismatched types, arrays and maps — is not comparable: `==`, `<`, `<=`, `>`, `>=` are false
//!   and `!=` is true. So `missing != 1` holds and `missing == null` does not: test presence with
//!   `exists(...)`.
//! - `~` holds when the value is a string the pattern matches; `!~` is its negation (so it holds
//!   for a missing field or a number). To test numbers, compare them: `status >= 500`.
//! - `in` holds when the value equals (as `==` above) one of the items.
//! - `exists(path)` holds when the path resolves to any value, `null` included.
//! - `contains(s, x)` holds when `s` is a string containing the string `x`, or an array with an
//!   item equal to `x`; `starts_with` and `ends_with` hold on two strings.
//! - `lower(s)` / `upper(s)` are the lowercase / uppercase of a string (they only allocate when
//!   the case changes); `len(v)` is the number of characters of a string, or items of an array or
//!   map. On other values they are missing.
//! - `to_string(v)` is the text of a value: strings as they are, numbers and bools as JSON writes
//!   them, timestamps in RFC 3339, arrays and maps as JSON; `null` stays `null`; missing stays
//!   missing. `concat(a, b, ...)` joins the `to_string` of its arguments, and is missing if any
//!   of them is missing or `null`.
//! - `to_int(v)`: ints as they are, floats truncated toward zero (when in range), strings holding
//!   an int or a float (surrounding spaces ignored), bools as 1/0, timestamps as Unix seconds.
//!   `to_float(v)`: numbers, numeric strings, bools as 1.0/0.0, timestamps as Unix seconds with
//!   a fraction. Anything else, or a string that is not a number, is missing.
//! - Arithmetic on two ints gives an int (missing on overflow); with a float it gives a float;
//!   `/` always gives a float (missing when dividing by zero). A non-finite result, or an operand
//!   that is missing or not a number, makes the result missing.
//! - Where a condition is expected (the whole expression, operands of `and`, `or`, `not`), a
//!   field holds when it is the bool `true`.
//!
//! # Value expressions
//!
//! [`Expression`] is the same language used for a value instead of a truth: `remap`'s `set`
//! (`concat(method, " ", path)`, `bytes / 1024`, `status >= 500`) and `aggregate`'s function
//! arguments. Any node may be the whole expression; evaluating it gives the value, or nothing
//! when it is missing.
//!
//! # Errors
//!
//! Everything that can be checked before seeing events is an error at parse time, reported as a
//! [`ConditionError`] that renders the message, then the expression with a caret under the bad
//! column on the lines below: syntax
//! errors, unknown functions, wrong arity, a `~` pattern that is not a string literal or not a
//! valid regex, comparisons of literal types that can never compare (`len(path) == "a"`),
//! arithmetic on literals that are not numbers (`"a" + 1`), and a value where a condition is
//! expected (`status and 5`).

mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;

use regex::Regex;

use crate::event::{Event, FieldName, Value};

/// A parsed, type-checked condition, ready to evaluate against events.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    expr: Expr,
}

impl Condition {
    /// Parses and type-checks `expression`, compiling its regexes.
    ///
    /// # Errors
    /// A [`ConditionError`] pointing at the first problem: a syntax error, an unknown function,
    /// a wrong number of arguments, a bad `~` pattern, a type mismatch between literals.
    pub fn parse(expression: &str) -> Result<Condition, ConditionError> {
        parser::parse(expression).map(|expr| Condition { expr })
    }

    /// Whether the condition holds for `event`. Never fails: see the module doc for the rules.
    #[inline]
    pub fn matches(&self, event: &Event) -> bool {
        self.expr.test(event)
    }
}

impl std::str::FromStr for Condition {
    type Err = ConditionError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        Condition::parse(expression)
    }
}

/// A parsed, type-checked value expression (see the module doc), ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    expr: Expr,
}

impl Expression {
    /// Parses and type-checks `expression`, compiling its regexes.
    ///
    /// # Errors
    /// A [`ConditionError`] pointing at the first problem, as for [`Condition::parse`].
    pub fn parse(expression: &str) -> Result<Expression, ConditionError> {
        parser::parse_value(expression).map(|expr| Expression { expr })
    }

    /// The expression's value for `event`, or `None` when it is missing (a missing field, a
    /// failed conversion, a division by zero). Never fails otherwise. A field's value is
    /// shared, not copied (strings are reference-counted slices).
    pub fn evaluate(&self, event: &Event) -> Option<Value> {
        self.expr.value(event)
    }

    /// The field path, when the expression is just a path (`user.id`).
    pub fn field_path(&self) -> Option<&[FieldName]> {
        match &self.expr {
            Expr::Field(path) => Some(&path.segments),
            _ => None,
        }
    }

    /// The value, when the expression is just a literal (`0.95`, `"x"`).
    pub fn literal(&self) -> Option<Value> {
        match &self.expr {
            Expr::Literal(literal) => Some(literal.to_value()),
            _ => None,
        }
    }
}

impl std::str::FromStr for Expression {
    type Err = ConditionError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        Expression::parse(expression)
    }
}

/// Prints the canonical form, which parses back to the same expression.
impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.expr, f)
    }
}

/// Prints the canonical form: keywords spelled out (`and`, `or`, `not`), strings in double
/// quotes, only the parentheses that are needed. It parses back to the same condition.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.expr, f)
    }
}

/// Why an expression is not a valid condition. `Display` shows the message, then the line of the
/// expression at fault and a caret under the bad column, each on a line of its own:
///
/// ```text
/// unexpected `=`: compare with `==`
/// status >== 500
///          ^
/// ```
///
/// The expression starts its own line, so the caret stays under the bad column whatever is
/// printed before the message (a config error's `file:line:col: key: ` prefix) as long as the
/// lines after the first are indented alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionError {
    expression: String,
    offset: usize,
    message: String,
}

impl ConditionError {
    pub(crate) fn new(expression: &str, offset: usize, message: impl Into<String>) -> Self {
        // Offsets come from the lexer and are on character boundaries; clamp defensively.
        let mut offset = offset.min(expression.len());
        while !expression.is_char_boundary(offset) {
            offset -= 1;
        }
        ConditionError {
            expression: expression.to_owned(),
            offset,
            message: message.into(),
        }
    }

    /// What is wrong, without the expression and caret.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The byte offset in the expression where the problem is.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The 1-based column (in characters, within its line) where the problem is.
    pub fn column(&self) -> usize {
        let line_start = self.line_start();
        self.expression[line_start..self.offset].chars().count() + 1
    }

    fn line_start(&self) -> usize {
        self.expression[..self.offset]
            .rfind('\n')
            .map_or(0, |newline| newline + 1)
    }
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = self.line_start();
        let end = self.expression[self.offset..]
            .find('\n')
            .map_or(self.expression.len(), |newline| self.offset + newline);
        writeln!(f, "{}", self.message)?;
        writeln!(f, "{}", &self.expression[start..end])?;
        // Keep tabs so the caret lines up under tab-indented expressions.
        for c in self.expression[start..self.offset].chars() {
            f.write_str(if c == '\t' { "\t" } else { " " })?;
        }
        f.write_str("^")
    }
}

impl std::error::Error for ConditionError {}

/// A node of the condition tree.
#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Literal(Literal),
    Field(FieldPath),
    Func(Func),
    Compare(Box<Expr>, CmpOp, Box<Expr>),
    Match {
        value: Box<Expr>,
        pattern: Pattern,
        negated: bool,
    },
    In(Box<Expr>, Vec<Literal>),
    Arith(Box<Expr>, ArithOp, Box<Expr>),
    Not(Box<Expr>),
    /// Two or more operands; `a and (b and c)` keeps its nesting so it prints back the same.
    And(Vec<Expr>),
    /// Two or more operands.
    Or(Vec<Expr>),
}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(Box<str>),
}

impl Literal {
    fn to_value(&self) -> Value {
        match self {
            Literal::Null => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Float(x) => Value::Float(*x),
            Literal::String(s) => Value::from(&**s),
        }
    }
}

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }

    /// Binding strength, between comparisons (4) and operands (7).
    fn precedence(self) -> u8 {
        match self {
            ArithOp::Add | ArithOp::Sub => 5,
            ArithOp::Mul | ArithOp::Div => 6,
        }
    }
}

/// A path of interned names into an event's fields.
#[derive(Clone, Debug, PartialEq)]
struct FieldPath {
    segments: Vec<FieldName>,
    /// The path is just `message`: falls back to the raw line.
    is_message: bool,
}

impl FieldPath {
    fn new(segments: Vec<FieldName>) -> Self {
        let is_message = matches!(segments.as_slice(), [only] if only == crate::event::MESSAGE);
        FieldPath {
            segments,
            is_message,
        }
    }
}

/// A built-in function call, arguments checked at parse time.
#[derive(Clone, Debug, PartialEq)]
enum Func {
    Exists(FieldPath),
    Contains(Box<Expr>, Box<Expr>),
    StartsWith(Box<Expr>, Box<Expr>),
    EndsWith(Box<Expr>, Box<Expr>),
    Lower(Box<Expr>),
    Upper(Box<Expr>),
    Len(Box<Expr>),
    Concat(Vec<Expr>),
    ToInt(Box<Expr>),
    ToFloat(Box<Expr>),
    ToString(Box<Expr>),
}

impl Func {
    fn name(&self) -> &'static str {
        match self {
            Func::Exists(_) => "exists",
            Func::Contains(..) => "contains",
            Func::StartsWith(..) => "starts_with",
            Func::EndsWith(..) => "ends_with",
            Func::Lower(_) => "lower",
            Func::Upper(_) => "upper",
            Func::Len(_) => "len",
            Func::Concat(_) => "concat",
            Func::ToInt(_) => "to_int",
            Func::ToFloat(_) => "to_float",
            Func::ToString(_) => "to_string",
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A compiled regex; two patterns are equal when their source is.
#[derive(Clone, Debug)]
struct Pattern(Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Words that cannot be bare path segments.
const KEYWORDS: [&str; 7] = ["and", "or", "not", "in", "true", "false", "null"];

/// Binding strength, loosest first, for printing only the parentheses that are needed.
fn precedence(expr: &Expr) -> u8 {
    match expr {
        Expr::Or(_) => 1,
        Expr::And(_) => 2,
        Expr::Not(_) => 3,
        Expr::Compare(..) | Expr::Match { .. } | Expr::In(..) => 4,
        Expr::Arith(_, op, _) => op.precedence(),
        Expr::Literal(_) | Expr::Field(_) | Expr::Func(_) => 7,
    }
}

/// Writes `expr`, in parentheses when it binds looser than `min`.
fn write_operand(f: &mut fmt::Formatter<'_>, expr: &Expr, min: u8) -> fmt::Result {
    if precedence(expr) < min {
        write!(f, "({expr})")
    } else {
        write!(f, "{expr}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(literal) => write!(f, "{literal}"),
            Expr::Field(path) => write!(f, "{path}"),
            Expr::Func(func) => {
                write!(f, "{}(", func.name())?;
                match func {
                    Func::Exists(path) => write!(f, "{path}")?,
                    Func::Contains(a, b) | Func::StartsWith(a, b) | Func::EndsWith(a, b) => {
                        write!(f, "{a}, {b}")?
                    }
                    Func::Lower(a)
                    | Func::Upper(a)
                    | Func::Len(a)
                    | Func::ToInt(a)
                    | Func::ToFloat(a)
                    | Func::ToString(a) => write!(f, "{a}")?,
                    Func::Concat(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write!(f, "{item}")?;
                        }
                    }
                }
                f.write_str(")")
            }
            Expr::Compare(lhs, op, rhs) => {
                write_operand(f, lhs, 5)?;
                write!(f, " {} ", op.symbol())?;
                write_operand(f, rhs, 5)
            }
            Expr::Match {
                value,
                pattern,
                negated,
            } => {
                write_operand(f, value, 5)?;
                f.write_str(if *negated { " !~ " } else { " ~ " })?;
                write_string(f, pattern.0.as_str())
            }
            Expr::In(value, items) => {
                write_operand(f, value, 5)?;
                f.write_str(" in [")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Expr::Arith(lhs, op, rhs) => {
                let own = op.precedence();
                // Left-associative: a right operand of the same strength keeps its parentheses.
                write_operand(f, lhs, own)?;
                write!(f, " {} ", op.symbol())?;
                write_operand(f, rhs, own + 1)
            }
            Expr::Not(inner) => {
                f.write_str("not ")?;
                write_operand(f, inner, 3)
            }
            Expr::And(items) => write_joined(f, items, " and ", 3),
            Expr::Or(items) => write_joined(f, items, " or ", 2),
        }
    }
}

fn write_joined(f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str, min: u8) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write_operand(f, item, min)?;
    }
    Ok(())
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            // Debug keeps a `.0` or an exponent, so the literal reads back as a float.
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::String(s) => write_string(f, s),
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            let name = segment.as_str();
            let bare = is_identifier(name) && !KEYWORDS.contains(&name);
            if i > 0 || !bare {
                f.write_str(".")?;
            }
            if bare {
                f.write_str(name)?;
            } else {
                write_string(f, name)?;
            }
        }
        Ok(())
    }
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Writes `text` as a double-quoted literal the lexer reads back to the same text.
fn write_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\0' => f.write_str("\\0")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}
