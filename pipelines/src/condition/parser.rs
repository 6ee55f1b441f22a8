//! Recursive-descent parser and type checker: tokens to an [`Expr`] tree.
//!
//! Grammar, loosest first:
//!
//! ```text
//! or      := and (("or" | "||") and)*
//! and     := not (("and" | "&&") not)*
//! not     := ("not" | "!") not | compare
//! compare := sum [ cmp_op sum | ("~" | "!~") string | ["not"] "in" list ]
//! sum     := product (("+" | "-") product)*
//! product := operand (("*" | "/") operand)*
//! operand := literal | path | func "(" [or ("," or)*] ")" | "(" or ")"
//! path    := ["."] segment ("." segment)*        segment := identifier | string
//! ```
//!
//! Each parsed node carries a static type, so mistakes visible without events (a value where a
//! condition is expected, `len(x) == "a"`, `5 ~ "x"`) are reported at load with a caret.

use regex::Regex;

use super::lexer::{Tok, Token, tokenize};
use super::{ArithOp, CmpOp, ConditionError, Expr, FieldPath, Func, Literal, Pattern};
use crate::event::FieldName;

/// How deeply parentheses, `not` and function calls may nest: deep enough for any real condition,
/// shallow enough that parsing, printing and evaluating cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The static type of a node, as far as it is known before seeing events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    /// Holds or not: comparisons, matches, boolean operators, predicates.
    Bool,
    Int,
    Float,
    String,
    Null,
    /// The result of arithmetic on a field: an int or a float.
    Number,
    /// A field: anything, known only per event.
    Any,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Bool => "a bool",
            Ty::Int => "an int",
            Ty::Float => "a float",
            Ty::String => "a string",
            Ty::Null => "null",
            Ty::Number => "a number",
            Ty::Any => "a field",
        }
    }

    /// Whether values of these types can ever compare (see the module doc).
    fn comparable(self, other: Ty) -> bool {
        let numeric = |ty| matches!(ty, Ty::Int | Ty::Float | Ty::Number);
        self == Ty::Any
            || other == Ty::Any
            || self == Ty::Null
            || other == Ty::Null
            || self == other
            || (numeric(self) && numeric(other))
    }

    /// Whether a value of this type may be a string.
    fn maybe_string(self) -> bool {
        matches!(self, Ty::String | Ty::Any)
    }

    /// Whether a value of this type may be a number.
    fn maybe_number(self) -> bool {
        matches!(self, Ty::Int | Ty::Float | Ty::Number | Ty::Any)
    }
}

/// A parsed node with its static type and where it starts, for error carets.
struct Node {
    expr: Expr,
    ty: Ty,
    at: usize,
}

/// Parses and type-checks a whole condition.
pub(super) fn parse(src: &str) -> Result<Expr, ConditionError> {
    parse_node(src, true)
}

/// Parses and type-checks a value expression: any node may be the whole.
pub(super) fn parse_value(src: &str) -> Result<Expr, ConditionError> {
    parse_node(src, false)
}

fn parse_node(src: &str, condition: bool) -> Result<Expr, ConditionError> {
    let tokens = tokenize(src)?;
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
    };
    let node = parser.or()?;
    if condition {
        parser.expect_condition(&node)?;
    }
    let next = parser.peek();
    if next.tok != Tok::Eof {
        let message = if matches!(
            next.tok,
            Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge
        ) {
            format!(
                "comparisons do not chain: found `{}` after a comparison; use `and` or parentheses",
                parser.text(next)
            )
        } else {
            format!(
                "expected {}, found {}",
                if condition {
                    "`and`, `or` or the end of the condition"
                } else {
                    "an operator or the end of the expression"
                },
                parser.describe(next)
            )
        };
        return Err(parser.error(next.start, message));
    }
    Ok(node.expr)
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // `tokenize` always ends with `Eof`, and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.tokens[(self.pos + ahead).min(self.tokens.len() - 1)].tok
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if &self.peek().tok == tok {
            self.advance();
            true
        } else {
            false
        }
    }

    fn text(&self, token: &Token) -> &str {
        &self.src[token.start..token.end]
    }

    fn describe(&self, token: &Token) -> String {
        match token.tok {
            Tok::Eof => "the end of the condition".to_owned(),
            Tok::Str(_) => format!("the string {}", self.text(token)),
            _ => format!("`{}`", self.text(token)),
        }
    }

    fn error(&self, at: usize, message: impl Into<String>) -> ConditionError {
        ConditionError::new(self.src, at, message)
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<Token, ConditionError> {
        if &self.peek().tok == tok {
            Ok(self.advance())
        } else {
            let next = self.peek();
            Err(self.error(
                next.start,
                format!("expected {what}, found {}", self.describe(next)),
            ))
        }
    }

    fn expect_condition(&self, node: &Node) -> Result<(), ConditionError> {
        match node.ty {
            Ty::Bool | Ty::Any => Ok(()),
            other => Err(self.error(
                node.at,
                format!("expected a condition, found {}", other.describe()),
            )),
        }
    }

    fn or(&mut self) -> Result<Node, ConditionError> {
        self.chain(&Tok::Or, Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Node, ConditionError> {
        self.chain(&Tok::And, Self::not, Expr::And)
    }

    /// Parses `operand (sep operand)*` into one n-ary node, iteratively: long chains of `or`
    /// cannot deepen the stack.
    fn chain(
        &mut self,
        sep: &Tok,
        operand: fn(&mut Self) -> Result<Node, ConditionError>,
        build: fn(Vec<Expr>) -> Expr,
    ) -> Result<Node, ConditionError> {
        let first = operand(self)?;
        if &self.peek().tok != sep {
            return Ok(first);
        }
        self.expect_condition(&first)?;
        let at = first.at;
        let mut items = vec![first.expr];
        while self.eat(sep) {
            let next = operand(self)?;
            self.expect_condition(&next)?;
            items.push(next.expr);
        }
        Ok(Node {
            expr: build(items),
            ty: Ty::Bool,
            at,
        })
    }

    fn not(&mut self) -> Result<Node, ConditionError> {
        let start = self.peek().start;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(
                start,
                format!("condition nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let node = if self.eat(&Tok::Not) {
            let inner = self.not()?;
            self.expect_condition(&inner)?;
            Node {
                expr: Expr::Not(Box::new(inner.expr)),
                ty: Ty::Bool,
                at: start,
            }
        } else {
            self.compare()?
        };
        self.depth -= 1;
        Ok(node)
    }

    fn compare(&mut self) -> Result<Node, ConditionError> {
        let lhs = self.sum()?;
        let op_token = self.peek().clone();
        let op = match op_token.tok {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Match | Tok::NotMatch => {
                self.advance();
                return self.regex_match(lhs, &op_token);
            }
            Tok::In => {
                self.advance();
                return self.list(lhs, false);
            }
            Tok::Not if *self.peek_at(1) == Tok::In => {
                self.advance();
                self.advance();
                return self.list(lhs, true);
            }
            _ => return Ok(lhs),
        };
        self.advance();
        let rhs = self.sum()?;
        if !lhs.ty.comparable(rhs.ty) {
            return Err(self.error(
                op_token.start,
                format!(
                    "cannot compare {} with {}: the comparison would never hold",
                    lhs.ty.describe(),
                    rhs.ty.describe()
                ),
            ));
        }
        Ok(Node {
            at: lhs.at,
            expr: Expr::Compare(Box::new(lhs.expr), op, Box::new(rhs.expr)),
            ty: Ty::Bool,
        })
    }

    fn sum(&mut self) -> Result<Node, ConditionError> {
        self.arith(Self::product, |tok| match tok {
            Tok::Plus => Some(ArithOp::Add),
            Tok::Minus => Some(ArithOp::Sub),
            _ => None,
        })
    }

    fn product(&mut self) -> Result<Node, ConditionError> {
        self.arith(Self::operand, |tok| match tok {
            Tok::Star => Some(ArithOp::Mul),
            Tok::Slash => Some(ArithOp::Div),
            _ => None,
        })
    }

    /// `operand (op operand)*`, left-associative, type-checked.
    fn arith(
        &mut self,
        operand: fn(&mut Self) -> Result<Node, ConditionError>,
        op_of: fn(&Tok) -> Option<ArithOp>,
    ) -> Result<Node, ConditionError> {
        let mut lhs = operand(self)?;
        let mut terms = 1;
        while let Some(op) = op_of(&self.peek().tok) {
            let op_token = self.advance();
            terms += 1;
            if terms > MAX_DEPTH {
                return Err(self.error(
                    op_token.start,
                    format!("more than {MAX_DEPTH} terms in one arithmetic chain"),
                ));
            }
            let rhs = operand(self)?;
            for side in [&lhs, &rhs] {
                if !side.ty.maybe_number() {
                    return Err(self.error(
                        side.at,
                        format!(
                            "`{}` takes numbers, found {}",
                            op.symbol(),
                            side.ty.describe()
                        ),
                    ));
                }
            }
            let ty = match (op, lhs.ty, rhs.ty) {
                (ArithOp::Div, _, _) => Ty::Float,
                (_, Ty::Int, Ty::Int) => Ty::Int,
                (_, Ty::Float, Ty::Int | Ty::Float) | (_, Ty::Int, Ty::Float) => Ty::Float,
                _ => Ty::Number,
            };
            lhs = Node {
                at: lhs.at,
                expr: Expr::Arith(Box::new(lhs.expr), op, Box::new(rhs.expr)),
                ty,
            };
        }
        Ok(lhs)
    }

    fn regex_match(&mut self, value: Node, op: &Token) -> Result<Node, ConditionError> {
        if !value.ty.maybe_string() {
            return Err(self.error(
                op.start,
                format!(
                    "`{}` matches strings, found {}",
                    self.text(op),
                    value.ty.describe()
                ),
            ));
        }
        let pattern = self.operand()?;
        let Expr::Literal(Literal::String(source)) = pattern.expr else {
            return Err(self.error(
                pattern.at,
                format!(
                    "the pattern of `{}` must be a string literal, found {}",
                    self.text(op),
                    pattern.ty.describe()
                ),
            ));
        };
        let regex = Regex::new(&source).map_err(|error| {
            self.error(
                pattern.at,
                format!("invalid regex: {}", regex_reason(&error)),
            )
        })?;
        Ok(Node {
            at: value.at,
            expr: Expr::Match {
                value: Box::new(value.expr),
                pattern: Pattern(regex),
                negated: op.tok == Tok::NotMatch,
            },
            ty: Ty::Bool,
        })
    }

    fn list(&mut self, value: Node, negated: bool) -> Result<Node, ConditionError> {
        self.expect(&Tok::LBracket, "`[` to start a list")?;
        let mut items = Vec::new();
        while self.peek().tok != Tok::RBracket {
            let item = self.operand()?;
            let Expr::Literal(literal) = item.expr else {
                return Err(self.error(item.at, "list items must be literals"));
            };
            items.push(literal);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RBracket, "`,` or `]`")?;
        let expr = Expr::In(Box::new(value.expr), items);
        Ok(Node {
            at: value.at,
            expr: if negated {
                Expr::Not(Box::new(expr))
            } else {
                expr
            },
            ty: Ty::Bool,
        })
    }

    fn operand(&mut self) -> Result<Node, ConditionError> {
        let token = self.peek().clone();
        let literal = |literal, ty| Node {
            expr: Expr::Literal(literal),
            ty,
            at: token.start,
        };
        match &token.tok {
            Tok::LParen => {
                self.advance();
                let mut inner = self.or()?;
                self.expect(&Tok::RParen, "`)`")?;
                inner.at = token.start;
                Ok(inner)
            }
            Tok::Ident if *self.peek_at(1) == Tok::LParen => self.call(),
            Tok::Ident | Tok::Dot => self.path(),
            Tok::Str(_) if *self.peek_at(1) == Tok::Dot => self.path(),
            Tok::Str(text) => {
                self.advance();
                Ok(literal(Literal::String(text.as_str().into()), Ty::String))
            }
            Tok::Int(value) => {
                self.advance();
                Ok(literal(Literal::Int(*value), Ty::Int))
            }
            Tok::Float(value) => {
                self.advance();
                Ok(literal(Literal::Float(*value), Ty::Float))
            }
            Tok::True | Tok::False => {
                self.advance();
                Ok(literal(Literal::Bool(token.tok == Tok::True), Ty::Bool))
            }
            Tok::Null => {
                self.advance();
                Ok(literal(Literal::Null, Ty::Null))
            }
            _ => Err(self.error(
                token.start,
                format!("expected a value, found {}", self.describe(&token)),
            )),
        }
    }

    /// `["."] segment ("." segment)*`, each segment an identifier or a quoted string.
    fn path(&mut self) -> Result<Node, ConditionError> {
        let at = self.peek().start;
        let leading_dot = self.eat(&Tok::Dot);
        let mut segments = Vec::new();
        loop {
            let token = self.peek().clone();
            let segment = match &token.tok {
                Tok::Ident => FieldName::new(self.text(&token)),
                Tok::Str(text)
                    if leading_dot || !segments.is_empty() || *self.peek_at(1) == Tok::Dot =>
                {
                    FieldName::new(text)
                }
                _ => {
                    return Err(self.error(
                        token.start,
                        format!("expected a field name, found {}", self.describe(&token)),
                    ));
                }
            };
            self.advance();
            segments.push(segment);
            if !self.eat(&Tok::Dot) {
                break;
            }
        }
        Ok(Node {
            expr: Expr::Field(FieldPath::new(segments)),
            ty: Ty::Any,
            at,
        })
    }

    fn call(&mut self) -> Result<Node, ConditionError> {
        let name_token = self.advance();
        let name = self.text(&name_token).to_owned();
        let at = name_token.start;
        self.expect(&Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        while self.peek().tok != Tok::RParen {
            args.push(self.or()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        let close = self.expect(&Tok::RParen, "`,` or `)`")?;
        let arity = |expected: usize| -> Result<(), ConditionError> {
            if args.len() == expected {
                Ok(())
            } else {
                let plural = if expected == 1 { "" } else { "s" };
                Err(self.error(
                    at,
                    format!(
                        "`{name}` takes {expected} argument{plural}, found {}",
                        args.len()
                    ),
                ))
            }
        };
        let (func, ty) = match name.as_str() {
            "exists" => {
                arity(1)?;
                let mut args = args.into_iter();
                match args.next() {
                    Some(Node {
                        expr: Expr::Field(path),
                        ..
                    }) => (Func::Exists(path), Ty::Bool),
                    Some(other) => {
                        return Err(self.error(
                            other.at,
                            format!("`exists` takes a field path, found {}", other.ty.describe()),
                        ));
                    }
                    None => return Err(self.error(close.start, "`exists` takes a field path")),
                }
            }
            "contains" | "starts_with" | "ends_with" => {
                arity(2)?;
                let mut args = args.into_iter();
                let (Some(haystack), Some(needle)) = (args.next(), args.next()) else {
                    return Err(self.error(close.start, format!("`{name}` takes 2 arguments")));
                };
                // `contains` also looks into arrays, which only fields can hold.
                let array_ok = name == "contains" && haystack.ty == Ty::Any;
                self.expect_string(&name, &haystack)?;
                if !array_ok {
                    self.expect_string(&name, &needle)?;
                }
                let (a, b) = (Box::new(haystack.expr), Box::new(needle.expr));
                let func = match name.as_str() {
                    "contains" => Func::Contains(a, b),
                    "starts_with" => Func::StartsWith(a, b),
                    _ => Func::EndsWith(a, b),
                };
                (func, Ty::Bool)
            }
            "lower" | "upper" | "len" | "to_int" | "to_float" | "to_string" => {
                arity(1)?;
                let Some(arg) = args.into_iter().next() else {
                    return Err(self.error(close.start, format!("`{name}` takes 1 argument")));
                };
                let inner = Box::new(arg.expr);
                match name.as_str() {
                    "lower" | "upper" => {
                        if !arg.ty.maybe_string() {
                            return Err(self.error(
                                arg.at,
                                format!("`{name}` takes strings, found {}", arg.ty.describe()),
                            ));
                        }
                        if name == "lower" {
                            (Func::Lower(inner), Ty::String)
                        } else {
                            (Func::Upper(inner), Ty::String)
                        }
                    }
                    "to_int" => (Func::ToInt(inner), Ty::Int),
                    "to_float" => (Func::ToFloat(inner), Ty::Float),
                    "to_string" => (Func::ToString(inner), Ty::String),
                    _ => {
                        if !arg.ty.maybe_string() {
                            return Err(self.error(
                                arg.at,
                                format!(
                                    "`len` takes a string, array or map, found {}",
                                    arg.ty.describe()
                                ),
                            ));
                        }
                        (Func::Len(inner), Ty::Int)
                    }
                }
            }
            "concat" => {
                if args.is_empty() {
                    return Err(self.error(at, "`concat` takes at least 1 argument, found 0"));
                }
                (
                    Func::Concat(args.into_iter().map(|arg| arg.expr).collect()),
                    Ty::String,
                )
            }
            _ => {
                return Err(self.error(
                    at,
                    format!(
                        "unknown function `{name}`; expected one of exists, contains, \
                         starts_with, ends_with, lower, upper, len, concat, to_int, to_float, \
                         to_string"
                    ),
                ));
            }
        };
        Ok(Node {
            expr: Expr::Func(func),
            ty,
            at,
        })
    }

    fn expect_string(&self, function: &str, arg: &Node) -> Result<(), ConditionError> {
        if arg.ty.maybe_string() {
            Ok(())
        } else {
            Err(self.error(
                arg.at,
                format!("`{function}` takes strings, found {}", arg.ty.describe()),
            ))
        }
    }
}

/// The one-line reason of a regex error (its `Display` repeats the pattern over several lines).
pub(crate) fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .map_or_else(|| text.trim().replace('\n', " "), str::to_owned)
}
