//! Splits a condition into tokens, each with its byte span for error carets.

use super::ConditionError;

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// An identifier: a field name or a function name.
    Ident,
    /// A string literal, escapes decoded.
    Str(String),
    Int(i64),
    Float(f64),
    True,
    False,
    Null,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `~`
    Match,
    /// `!~`
    NotMatch,
    /// `and` or `&&`
    And,
    /// `or` or `||`
    Or,
    /// `not` or `!`
    Not,
    In,
    Plus,
    Minus,
    Star,
    Slash,
    Eof,
}

impl Tok {
    /// Whether the token ends a value, so a `-` after it is subtraction, not a sign.
    fn ends_value(&self) -> bool {
        matches!(
            self,
            Tok::Ident
                | Tok::Str(_)
                | Tok::Int(_)
                | Tok::Float(_)
                | Tok::True
                | Tok::False
                | Tok::Null
                | Tok::RParen
                | Tok::RBracket
        )
    }
}

/// A token and where it is in the source.
#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(super) fn tokenize(src: &str) -> Result<Vec<Token>, ConditionError> {
    let mut lexer = Lexer {
        src,
        pos: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut chars = self.src[self.pos..].chars();
        chars.next();
        chars.next()
    }

    fn error(&self, at: usize, message: impl Into<String>) -> ConditionError {
        ConditionError::new(self.src, at, message)
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.tokens.push(Token {
            tok,
            start,
            end: self.pos,
        });
    }

    fn run(&mut self) -> Result<(), ConditionError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            if c.is_ascii_alphabetic() || c == '_' {
                self.identifier(start);
                continue;
            }
            let after_value = self
                .tokens
                .last()
                .is_some_and(|token| token.tok.ends_value());
            if c.is_ascii_digit()
                || (c == '-'
                    && !after_value
                    && self.peek_second().is_some_and(|d| d.is_ascii_digit()))
            {
                self.number(start)?;
                continue;
            }
            if c == '"' || c == '\'' {
                self.string(start, c)?;
                continue;
            }
            let next = self.peek_second();
            let (tok, len) = match (c, next) {
                ('(', _) => (Tok::LParen, 1),
                (')', _) => (Tok::RParen, 1),
                ('[', _) => (Tok::LBracket, 1),
                (']', _) => (Tok::RBracket, 1),
                (',', _) => (Tok::Comma, 1),
                ('.', _) => (Tok::Dot, 1),
                ('=', Some('=')) => (Tok::Eq, 2),
                ('!', Some('=')) => (Tok::Ne, 2),
                ('!', Some('~')) => (Tok::NotMatch, 2),
                ('!', _) => (Tok::Not, 1),
                ('<', Some('=')) => (Tok::Le, 2),
                ('<', _) => (Tok::Lt, 1),
                ('>', Some('=')) => (Tok::Ge, 2),
                ('>', _) => (Tok::Gt, 1),
                ('~', _) => (Tok::Match, 1),
                ('&', Some('&')) => (Tok::And, 2),
                ('+', _) => (Tok::Plus, 1),
                ('-', _) => (Tok::Minus, 1),
                ('*', _) => (Tok::Star, 1),
                ('/', _) => (Tok::Slash, 1),
                ('|', Some('|')) => (Tok::Or, 2),
                ('=', _) => return Err(self.error(start, "unexpected `=`: compare with `==`")),
                ('&', _) => return Err(self.error(start, "unexpected `&`: use `and` or `&&`")),
                ('|', _) => return Err(self.error(start, "unexpected `|`: use `or` or `||`")),
                (other, _) => {
                    return Err(self.error(start, format!("unexpected character `{other}`")));
                }
            };
            self.pos += len;
            self.push(tok, start);
        }
        self.push(Tok::Eof, self.pos);
        Ok(())
    }

    fn identifier(&mut self, start: usize) {
        let rest = &self.src[start..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.pos = start + len;
        let tok = match &rest[..len] {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "in" => Tok::In,
            "true" => Tok::True,
            "false" => Tok::False,
            "null" => Tok::Null,
            _ => Tok::Ident,
        };
        self.push(tok, start);
    }

    fn number(&mut self, start: usize) -> Result<(), ConditionError> {
        let bytes = self.src.as_bytes();
        let mut end = start;
        if bytes.get(end) == Some(&b'-') {
            end += 1;
        }
        let digits = |mut at: usize| {
            while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            at
        };
        end = digits(end);
        let mut float = false;
        // A fraction needs a digit after the dot, so `1.x` stays `1` `.` `x` (and fails later).
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end = digits(end + 1);
            float = true;
        }
        if matches!(bytes.get(end), Some(b'e' | b'E')) {
            let mut exponent = end + 1;
            if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
                exponent += 1;
            }
            if bytes.get(exponent).is_some_and(u8::is_ascii_digit) {
                end = digits(exponent);
                float = true;
            }
        }
        if bytes
            .get(end)
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        {
            return Err(self.error(end, "expected an operator after the number"));
        }
        let text = &self.src[start..end];
        self.pos = end;
        let tok = if float {
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Tok::Float(value),
                _ => return Err(self.error(start, format!("number `{text}` is out of range"))),
            }
        } else {
            match text.parse::<i64>() {
                Ok(value) => Tok::Int(value),
                Err(_) => {
                    return Err(
                        self.error(start, format!("integer `{text}` does not fit in 64 bits"))
                    );
                }
            }
        };
        self.push(tok, start);
        Ok(())
    }

    fn string(&mut self, start: usize, quote: char) -> Result<(), ConditionError> {
        let mut value = String::new();
        let mut chars = self.src[start + 1..].char_indices();
        let unterminated = || self.error(start, "unterminated string");
        loop {
            let Some((offset, c)) = chars.next() else {
                return Err(unterminated());
            };
            match c {
                c if c == quote => {
                    self.pos = start + 1 + offset + 1;
                    break;
                }
                '\\' => {
                    let Some((_, escaped)) = chars.next() else {
                        return Err(unterminated());
                    };
                    match escaped {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        '\'' => value.push('\''),
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        '0' => value.push('\0'),
                        'u' => {
                            let at = start + 1 + offset;
                            value.push(self.unicode_escape(&mut chars, at)?);
                        }
                        // Unknown escapes stay as written, so regex classes like `\d` and `\.`
                        // need no doubling.
                        other => {
                            value.push('\\');
                            value.push(other);
                        }
                    }
                }
                c => value.push(c),
            }
        }
        self.push(Tok::Str(value), start);
        Ok(())
    }

    /// Reads the `{hex}` of a `\u{hex}` escape that starts at byte `at`.
    fn unicode_escape(
        &self,
        chars: &mut std::str::CharIndices<'_>,
        at: usize,
    ) -> Result<char, ConditionError> {
        let invalid = || self.error(at, "invalid unicode escape: expected `\\u{` hex digits `}`");
        if chars.next().map(|(_, c)| c) != Some('{') {
            return Err(invalid());
        }
        let mut code: u32 = 0;
        let mut count = 0;
        loop {
            match chars.next().map(|(_, c)| c) {
                Some('}') if count > 0 => break,
                Some(c) if count < 6 => {
                    let digit = c.to_digit(16).ok_or_else(invalid)?;
                    code = code * 16 + digit;
                    count += 1;
                }
                _ => return Err(invalid()),
            }
        }
        char::from_u32(code).ok_or_else(|| {
            self.error(
                at,
                format!("invalid unicode escape: {code:#x} is not a character"),
            )
        })
    }
}
