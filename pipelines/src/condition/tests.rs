//! Tests of the condition language: examples of every construct and error, and property tests
//! (print/parse round trip, agreement with a reference evaluator, no panics on any input).

use std::cmp::Ordering;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::event::{EventMeta, Fields, Value};

fn cond(expression: &str) -> Condition {
    match Condition::parse(expression) {
        Ok(condition) => condition,
        Err(error) => panic!("`{expression}` should parse:\n{error}"),
    }
}

fn error(expression: &str) -> String {
    match Condition::parse(expression) {
        Ok(condition) => panic!("`{expression}` should not parse, got {condition}"),
        Err(error) => error.to_string(),
    }
}

fn ts(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// An event like the `parse` step makes from
/// `66.249.66.1 - - [01/Jan/2026:00:00:01 +0000] "GET /product/7 HTTP/1.1" 404 512 "-" "Googlebot/2.1 (+http://www.google.com/bot.html)" 0.250 req-1`.
fn nginx_event() -> Event {
    let raw = "66.249.66.1 - - [01/Jan/2026:00:00:01 +0000] \"GET /product/7 HTTP/1.1\" 404 512 \"-\" \
               \"Googlebot/2.1 (+http://www.google.com/bot.html)\" 0.250 req-1";
    let mut event = Event::from_raw(Bytes::from(raw), EventMeta::default());
    event.insert("ip", "66.249.66.1");
    event.insert("user", "-");
    event.insert("timestamp", ts("2026-01-01T00:00:01Z"));
    event.insert("method", "GET");
    event.insert("path", "/product/7");
    event.insert("status", 404i64);
    event.insert("bytes", 512i64);
    event.insert("agent", "Googlebot/2.1 (+http://www.google.com/bot.html)");
    event.insert("request_time", 0.25);
    event.insert("ok", false);
    event.insert("nothing", Value::Null);
    event.insert_path(
        &[FieldName::new("client"), FieldName::new("id")],
        Value::Int(7),
    );
    event.insert_path(
        &[FieldName::new("client"), FieldName::new("odd key")],
        Value::from("x y"),
    );
    event.insert("odd key", 1i64);
    event.insert(
        "tags",
        Value::Array(vec![Value::from("a"), Value::Int(3), Value::Bool(true)]),
    );
    event
}

fn holds(expression: &str) -> bool {
    cond(expression).matches(&nginx_event())
}

#[test]
fn comparisons_on_typed_fields() {
    assert!(holds("status >= 400"));
    assert!(!holds("status < 400"));
    assert!(holds("status == 404 and bytes != 0"));
    assert!(holds("status > 403 and status <= 404"));
    // Ints and floats compare numerically.
    assert!(holds("status == 404.0"));
    assert!(holds("status < 404.5"));
    assert!(holds("request_time > 0.1 and request_time < 1"));
    assert!(holds("request_time == 0.25"));
    // Strings compare lexicographically.
    assert!(holds("path > \"/product/10\""));
    assert!(holds("method < 'POST'"));
    assert!(holds("\"a\" < \"b\" and \"b\" > \"B\""));
    // Bools and nulls.
    assert!(holds("ok == false and ok < true"));
    assert!(holds("nothing == null"));
}

#[test]
fn missing_fields_and_mismatched_types_never_compare() {
    for op in ["==", "<", "<=", ">", ">="] {
        assert!(!holds(&format!("missing {op} 1")), "missing {op} 1");
        assert!(
            !holds(&format!("status {op} \"404\"")),
            "status {op} \"404\""
        );
        assert!(!holds(&format!("tags {op} tags")), "tags {op} tags");
    }
    assert!(holds("missing != 1"));
    assert!(holds("status != \"404\""));
    assert!(!holds("missing == null"), "a missing field is not null");
    assert!(holds("missing != null"));
    assert!(!holds("client.id.deeper == 7"));
    assert!(!holds("missing ~ \"x\""));
    assert!(holds("missing !~ \"x\""));
}

#[test]
fn nan_compares_with_nothing() {
    let mut event = Event::default();
    event.insert("x", f64::NAN);
    assert!(!cond("x == x").matches(&event));
    assert!(!cond("x < 1").matches(&event));
    assert!(cond("x != 1.5").matches(&event));
}

#[test]
fn large_ints_compare_exactly_with_floats() {
    let mut event = Event::default();
    // 2^53 + 1 rounds to 2^53 as an f64; the comparison must still see it as larger.
    event.insert("n", 9_007_199_254_740_993i64);
    assert!(cond("n > 9007199254740992.0").matches(&event));
    assert!(!cond("n == 9007199254740992.0").matches(&event));
    event.insert("n", i64::MAX);
    assert!(cond("n < 9223372036854775808.0").matches(&event));
    event.insert("n", i64::MIN);
    assert!(cond("n == -9223372036854775808.0").matches(&event));
    assert!(cond("n > -1e300").matches(&event));
}

#[test]
fn paths_nested_quoted_and_message() {
    assert!(holds("client.id == 7"));
    assert!(holds("client.\"odd key\" == \"x y\""));
    assert!(holds(".\"odd key\" == 1"));
    assert!(
        holds("\"odd key\".x != 1"),
        "a quoted head followed by a dot is a path"
    );
    assert!(holds(".status == 404"));
    // `message` is the raw line when there is no such field...
    assert!(holds(
        "message ~ \"^66\\.249\" and contains(message, \"GET /product/7\")"
    ));
    // ...and the field when there is one.
    let mut event = nginx_event();
    event.insert("message", "from the field");
    assert!(cond("message == \"from the field\"").matches(&event));
    // Raw lines that are not UTF-8 are read lossily.
    let event = Event::from_raw(Bytes::from_static(b"bad \xff byte"), EventMeta::default());
    assert!(cond("message == \"bad \u{fffd} byte\"").matches(&event));
    assert!(!cond("message == 1").matches(&Event::default()));
    assert!(!cond("exists(message)").matches(&Event::default()));
}

#[test]
fn boolean_operators_and_precedence() {
    assert!(holds("status == 404 and method == \"GET\""));
    assert!(holds("status == 200 or method == \"GET\""));
    assert!(holds("status == 200 || method == \"GET\" && bytes > 1"));
    assert!(!holds(
        "status == 200 or method == \"GET\" and bytes > 100000"
    ));
    assert!(holds("not status == 200"));
    assert!(holds("!(status == 200)"));
    assert!(holds("! ok"));
    assert!(!holds("ok"));
    assert!(holds("not not status == 404"));
    assert!(!holds("not (status == 404 or false)"));
    assert!(holds("true"));
    assert!(!holds("false"));
    // and binds tighter than or.
    assert!(holds("true or false and false"));
    assert!(!holds("(true or false) and false"));
    // A field in condition position holds only when it is `true`.
    assert!(!holds("status"));
    assert!(!holds("missing"));
}

#[test]
fn regex_matches() {
    assert!(holds("agent ~ \"(?i)googlebot\""));
    assert!(!holds("agent ~ \"googlebot\""));
    assert!(holds("agent !~ \"googlebot\""));
    assert!(holds("path ~ '^/product/\\d+$'"));
    assert!(
        holds(r#"path ~ "^/product/\\d+$""#),
        "a doubled backslash works too"
    );
    assert!(!holds("status ~ \"404\""), "regexes match strings only");
    assert!(holds("lower(agent) ~ \"bot\""));
    assert!(holds("not (agent ~ \"(?i)bot\") or status >= 400"));
}

#[test]
fn in_lists() {
    assert!(holds("status in [200, 404, 500]"));
    assert!(holds("status in [404.0]"));
    assert!(!holds("status in [\"404\"]"));
    assert!(holds("method in ['GET', \"HEAD\",]"));
    assert!(holds("method not in [\"POST\"]"));
    assert!(!holds("status not in [404]"));
    assert!(!holds("status in []"));
    assert!(!holds("missing in [null]"));
    assert!(holds("nothing in [1, null]"));
}

#[test]
fn functions() {
    assert!(holds(
        "exists(status) and exists(client.id) and exists(nothing)"
    ));
    assert!(!holds("exists(missing) or exists(client.missing)"));
    assert!(holds(
        "contains(agent, \"bot\") and not contains(agent, \"Bingbot\")"
    ));
    assert!(holds(
        "contains(tags, \"a\") and contains(tags, 3) and contains(tags, 3.0)"
    ));
    assert!(!holds("contains(tags, \"b\") or contains(status, \"4\")"));
    assert!(holds(
        "starts_with(path, \"/product/\") and ends_with(path, \"/7\")"
    ));
    assert!(!holds(
        "starts_with(path, \"/api\") or ends_with(status, \"4\")"
    ));
    assert!(holds("lower(method) == \"get\" and lower(path) == path"));
    assert!(
        !holds("lower(status) == \"404\""),
        "lower of a number is missing"
    );
    assert!(holds(
        "len(path) == 10 and len(tags) == 3 and len(client) == 2"
    ));
    assert!(holds("len(\"héllo\") == 5"), "len counts characters");
    assert!(!holds("len(status) == 3"));
    assert!(holds(
        "len(lower(agent)) > 10 and starts_with(lower(agent), \"googlebot\")"
    ));
    assert!(holds("contains(lower(agent), lower(\"BOT\"))"));
}

#[test]
fn timestamps_compare_with_timestamps_and_rfc3339_strings() {
    assert!(holds("timestamp >= \"2026-01-01T00:00:00Z\""));
    assert!(holds("timestamp < \"2026-01-01T01:00:02+01:00\""));
    assert!(holds("timestamp == \"2026-01-01T00:00:01.000Z\""));
    assert!(!holds("timestamp == \"yesterday\""));
    assert!(holds("timestamp != \"yesterday\""));
    let mut event = nginx_event();
    event.insert("later", ts("2026-01-02T00:00:00Z"));
    assert!(cond("timestamp < later").matches(&event));
    assert!(!cond("timestamp == 1").matches(&event));
}

#[test]
fn string_escapes() {
    let mut event = Event::default();
    event.insert("s", "it's \"quoted\"\n\t\\ é");
    assert!(cond(r#"s == 'it\'s "quoted"\n\t\\ \u{e9}'"#).matches(&event));
    assert!(cond(r#"s == "it's \"quoted\"\n\t\\ é""#).matches(&event));
    // Unknown escapes are kept as written.
    event.insert("s", "a\\d");
    assert!(cond(r#"s == "a\d""#).matches(&event));
}

#[test]
fn the_error_shows_the_expression_and_a_caret() {
    assert_eq!(
        error("status >= 400 and agnet ~~ \"bot\""),
        "expected a value, found `~`\nstatus >= 400 and agnet ~~ \"bot\"\n                         ^"
    );
    let err = Condition::parse("status >= 400 and agnet ~~ \"bot\"").unwrap_err();
    assert_eq!(err.column(), 26);
    assert_eq!(err.offset(), 25);
    assert_eq!(err.message(), "expected a value, found `~`");
}

#[test]
fn errors_point_at_the_problem() {
    let cases = [
        ("", "expected a value, found the end of the condition\n\n^"),
        (
            "status >=",
            "expected a value, found the end of the condition\nstatus >=\n         ^",
        ),
        (
            "statsu(x)",
            "unknown function `statsu`; expected one of exists, contains, starts_with, ends_with, lower, upper, len, concat, to_int, to_float, to_string\nstatsu(x)\n^",
        ),
        (
            "contains(agent)",
            "`contains` takes 2 arguments, found 1\ncontains(agent)\n^",
        ),
        (
            "exists(a, b)",
            "`exists` takes 1 argument, found 2\nexists(a, b)\n^",
        ),
        ("len()", "`len` takes 1 argument, found 0\nlen()\n^"),
        (
            "exists(\"a\")",
            "`exists` takes a field path, found a string\nexists(\"a\")\n       ^",
        ),
        (
            "agent ~ 5",
            "the pattern of `~` must be a string literal, found an int\nagent ~ 5\n        ^",
        ),
        (
            "agent !~ other",
            "the pattern of `!~` must be a string literal, found a field\nagent !~ other\n         ^",
        ),
        (
            "agent ~ \"(bot\"",
            "invalid regex: unclosed group\nagent ~ \"(bot\"\n        ^",
        ),
        (
            "5 ~ \"x\"",
            "`~` matches strings, found an int\n5 ~ \"x\"\n  ^",
        ),
        (
            "status == 1 2",
            "expected `and`, `or` or the end of the condition, found `2`\nstatus == 1 2\n            ^",
        ),
        (
            "a < b < c",
            "comparisons do not chain: found `<` after a comparison; use `and` or parentheses\na < b < c\n      ^",
        ),
        (
            "status >== 500",
            "unexpected `=`: compare with `==`\nstatus >== 500\n         ^",
        ),
        (
            "status = 1",
            "unexpected `=`: compare with `==`\nstatus = 1\n       ^",
        ),
        ("a & b", "unexpected `&`: use `and` or `&&`\na & b\n  ^"),
        ("a # b", "unexpected character `#`\na # b\n  ^"),
        (
            "path == \"/x",
            "unterminated string\npath == \"/x\n        ^",
        ),
        (
            "status and 5",
            "expected a condition, found an int\nstatus and 5\n           ^",
        ),
        (
            "lower(agent)",
            "expected a condition, found a string\nlower(agent)\n^",
        ),
        (
            "len(path) == \"3\"",
            "cannot compare an int with a string: the comparison would never hold\nlen(path) == \"3\"\n          ^",
        ),
        (
            "lower(1)",
            "`lower` takes strings, found an int\nlower(1)\n      ^",
        ),
        (
            "(status == 1",
            "expected `)`, found the end of the condition\n(status == 1\n            ^",
        ),
        ("a in [b]", "list items must be literals\na in [b]\n      ^"),
        (
            "a in [1 2]",
            "expected `,` or `]`, found `2`\na in [1 2]\n        ^",
        ),
        (
            "a.1 == 2",
            "expected a field name, found `1`\na.1 == 2\n  ^",
        ),
        (
            "n == 99999999999999999999",
            "integer `99999999999999999999` does not fit in 64 bits\nn == 99999999999999999999\n     ^",
        ),
        (
            "n == 1e999",
            "number `1e999` is out of range\nn == 1e999\n     ^",
        ),
        (
            "n == 12ab",
            "expected an operator after the number\nn == 12ab\n       ^",
        ),
        (
            "s == \"\\u{d800}\"",
            "invalid unicode escape: 0xd800 is not a character\ns == \"\\u{d800}\"\n      ^",
        ),
        (
            "s == \"\\u00e9\"",
            "invalid unicode escape: expected `\\u{` hex digits `}`\ns == \"\\u00e9\"\n      ^",
        ),
    ];
    for (expression, expected) in cases {
        assert_eq!(error(expression), expected, "for `{expression}`");
    }
}

#[test]
fn multi_line_errors_show_the_line_at_fault() {
    assert_eq!(
        error("status >= 400\n\tand agent ~ (1)"),
        "the pattern of `~` must be a string literal, found an int\n\tand agent ~ (1)\n\t            ^"
    );
    let err = Condition::parse("status >= 400\n\tand agent ~ (1)").unwrap_err();
    assert_eq!(err.column(), 14);
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}true{}", "(".repeat(200), ")".repeat(200));
    assert!(error(&deep).contains("nested more than 64 levels deep"));
    let nots = format!("{}true", "not ".repeat(200));
    assert!(error(&nots).contains("nested more than 64 levels deep"));
    let ok = format!("{}true{}", "(".repeat(30), ")".repeat(30));
    assert!(cond(&ok).matches(&Event::default()));
    // Long flat chains do not nest.
    let chain = vec!["status == 1"; 5000].join(" or ");
    assert!(!cond(&chain).matches(&nginx_event()));
}

#[test]
fn display_is_canonical() {
    let cases = [
        ("status>=400&&!(a||b)", "status >= 400 and not (a or b)"),
        ("(a and b) and c", "(a and b) and c"),
        ("a and (b or c) or d", "a and (b or c) or d"),
        ("not not x", "not not x"),
        ("(x)", "x"),
        ("m not in [1, 'a',]", "not m in [1, \"a\"]"),
        ("agent ~ '(?i)bot\\.'", "agent ~ \"(?i)bot\\\\.\""),
        (
            "x == 1e3 or y == -2.50 or z == null",
            "x == 1000.0 or y == -2.5 or z == null",
        ),
        (
            ".\"odd key\".\"and\".ok == 1",
            ".\"odd key\".\"and\".ok == 1",
        ),
        ("(a == 1) == true", "(a == 1) == true"),
        (
            "contains( lower(agent) ,\"x\" ) and len(p)>1",
            "contains(lower(agent), \"x\") and len(p) > 1",
        ),
    ];
    for (input, canonical) in cases {
        let condition = cond(input);
        assert_eq!(condition.to_string(), canonical, "for `{input}`");
        assert_eq!(cond(canonical), condition, "`{canonical}` must parse back");
    }
}

// ---- Property tests ----

/// Field names the generators use, so random conditions often hit random events' fields.
const NAMES: [&str; 6] = ["a", "b", "s", "message", "odd key", "and"];

fn arb_path() -> impl Strategy<Value = FieldPath> {
    prop_oneof![
        4 => prop::sample::select(NAMES.to_vec()).prop_map(|name| vec![name.to_owned()]),
        1 => (prop::sample::select(NAMES.to_vec()), prop::sample::select(NAMES.to_vec()))
            .prop_map(|(a, b)| vec![a.to_owned(), b.to_owned()]),
        1 => prop::collection::vec(".{0,6}", 1..3),
    ]
    .prop_map(|names| FieldPath::new(names.iter().map(|n| FieldName::new(n)).collect()))
}

/// Texts random strings and events share, including an RFC 3339 time.
const TEXTS: [&str; 7] = [
    "",
    "a",
    "B",
    "abc",
    "Googlebot",
    "2024-05-01T00:00:00Z",
    "x\"y\\z",
];

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(TEXTS.to_vec()).prop_map(str::to_owned),
        1 => ".{0,8}",
    ]
}

fn arb_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        prop_oneof![-3i64..4, any::<i64>()].prop_map(Literal::Int),
        prop_oneof![
            prop::sample::select(vec![-1.5, 0.0, 1.0, 2.5]),
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
        ]
        .prop_map(Literal::Float),
        arb_text().prop_map(|s| Literal::String(s.into())),
    ]
}

fn arb_string_literal() -> impl Strategy<Value = Expr> {
    arb_text().prop_map(|s| Expr::Literal(Literal::String(s.into())))
}

fn field() -> impl Strategy<Value = Expr> {
    arb_path().prop_map(Expr::Field)
}

fn boxed(expr: Expr) -> Box<Expr> {
    Box::new(expr)
}

/// A string-typed value: a field or `lower(...)` of one, or text made by a function.
fn arb_stringy() -> impl Strategy<Value = Expr> {
    prop_oneof![
        4 => field(),
        2 => field().prop_map(|f| Expr::Func(Func::Lower(boxed(f)))),
        1 => field().prop_map(|f| Expr::Func(Func::Upper(boxed(f)))),
        1 => field().prop_map(|f| Expr::Func(Func::ToString(boxed(f)))),
        1 => prop::collection::vec(prop_oneof![field(), arb_literal().prop_map(Expr::Literal)], 1..4)
            .prop_map(|items| Expr::Func(Func::Concat(items))),
    ]
}

/// A number-typed value: arithmetic over fields, numeric literals and conversions.
fn arb_arith() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        3 => field(),
        2 => (-3i64..4).prop_map(|i| Expr::Literal(Literal::Int(i))),
        1 => prop::sample::select(vec![i64::MAX, i64::MIN, -1])
            .prop_map(|i| Expr::Literal(Literal::Int(i))),
        1 => prop::sample::select(vec![-1.5, 0.0, 0.5, 2.0, 1e300])
            .prop_map(|x| Expr::Literal(Literal::Float(x))),
        1 => field().prop_map(|f| Expr::Func(Func::ToInt(boxed(f)))),
        1 => field().prop_map(|f| Expr::Func(Func::ToFloat(boxed(f)))),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        (
            inner.clone(),
            prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div]),
            inner,
        )
            .prop_map(|(a, op, b)| Expr::Arith(boxed(a), op, boxed(b)))
    })
}

fn arb_cmp_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ])
}

fn arb_pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        prop::sample::select(vec!["a", "^a", "(?i)b", "bot$", "^$", "\\d", "[\"\\\\]"])
            .prop_map(str::to_owned),
        arb_text().prop_map(|s| regex::escape(&s)),
    ]
    .prop_map(|source| Pattern(Regex::new(&source).unwrap()))
}

/// Conditions that pass the type checker, built directly as trees.
fn arb_condition() -> impl Strategy<Value = Expr> {
    let compare = prop_oneof![
        (
            field(),
            arb_cmp_op(),
            prop_oneof![arb_literal().prop_map(Expr::Literal), field()]
        ),
        (arb_literal().prop_map(Expr::Literal), arb_cmp_op(), field()),
        (
            arb_stringy(),
            arb_cmp_op(),
            prop_oneof![arb_string_literal(), field()]
        ),
        (
            field().prop_map(|f| Expr::Func(Func::Len(boxed(f)))),
            arb_cmp_op(),
            prop_oneof![
                (-1i64..12).prop_map(|i| Expr::Literal(Literal::Int(i))),
                field()
            ]
        ),
    ]
    .prop_map(|(lhs, op, rhs)| Expr::Compare(boxed(lhs), op, boxed(rhs)));
    let leaf = prop_oneof![
        4 => compare,
        2 => (arb_arith(), arb_cmp_op(), arb_arith())
            .prop_map(|(lhs, op, rhs)| Expr::Compare(boxed(lhs), op, boxed(rhs))),
        2 => (arb_stringy(), arb_pattern(), any::<bool>()).prop_map(|(value, pattern, negated)| {
            Expr::Match { value: boxed(value), pattern, negated }
        }),
        2 => (
            prop_oneof![arb_stringy(), field().prop_map(|f| Expr::Func(Func::Len(boxed(f))))],
            prop::collection::vec(arb_literal(), 0..4)
        )
            .prop_map(|(value, items)| Expr::In(boxed(value), items)),
        1 => arb_path().prop_map(|p| Expr::Func(Func::Exists(p))),
        1 => (field(), prop_oneof![arb_literal().prop_map(Expr::Literal), field()])
            .prop_map(|(a, b)| Expr::Func(Func::Contains(boxed(a), boxed(b)))),
        1 => (arb_stringy(), prop_oneof![arb_string_literal(), field()])
            .prop_map(|(a, b)| Expr::Func(Func::StartsWith(boxed(a), boxed(b)))),
        1 => (arb_stringy(), prop_oneof![arb_string_literal(), field()])
            .prop_map(|(a, b)| Expr::Func(Func::EndsWith(boxed(a), boxed(b)))),
        1 => field(),
        1 => any::<bool>().prop_map(|b| Expr::Literal(Literal::Bool(b))),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(boxed(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            (
                inner,
                prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne]),
                any::<bool>()
            )
                .prop_map(|(e, op, b)| Expr::Compare(
                    boxed(e),
                    op,
                    boxed(Expr::Literal(Literal::Bool(b)))
                )),
        ]
    })
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(Value::Int),
        prop::sample::select(vec![-1.5, 0.0, 1.0, 2.5, f64::NAN]).prop_map(Value::Float),
        arb_text().prop_map(Value::from),
        prop::sample::select(vec!["2024-05-01T00:00:00Z", "2023-01-01T12:00:00+02:00"])
            .prop_map(|t| Value::Timestamp(ts(t))),
    ]
}

fn arb_event() -> impl Strategy<Value = Event> {
    let value = arb_scalar().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(NAMES.to_vec()), inner), 0..3)
                .prop_map(|pairs| Value::Map(pairs.into_iter().collect())),
        ]
    });
    (
        prop::collection::vec((prop::sample::select(NAMES.to_vec()), value), 0..6),
        prop::option::of(prop_oneof![
            arb_text().prop_map(Bytes::from),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from),
        ]),
    )
        .prop_map(|(pairs, raw)| {
            let mut event = Event::from_fields(pairs.into_iter().collect::<Fields>());
            event.set_raw(raw);
            event
        })
}

/// The reference: the module doc's rules, written plainly over owned values.
mod reference {
    use super::*;

    pub fn test(expr: &Expr, event: &Event) -> bool {
        match expr {
            Expr::Or(items) => items.iter().any(|e| test(e, event)),
            Expr::And(items) => items.iter().all(|e| test(e, event)),
            Expr::Not(e) => !test(e, event),
            _ => value(expr, event) == Some(Value::Bool(true)),
        }
    }

    fn value(expr: &Expr, event: &Event) -> Option<Value> {
        Some(match expr {
            Expr::Literal(Literal::Null) => Value::Null,
            Expr::Literal(Literal::Bool(b)) => Value::Bool(*b),
            Expr::Literal(Literal::Int(i)) => Value::Int(*i),
            Expr::Literal(Literal::Float(x)) => Value::Float(*x),
            Expr::Literal(Literal::String(s)) => Value::from(&**s),
            Expr::Field(path) => {
                let names: Vec<&str> = path.segments.iter().map(FieldName::as_str).collect();
                match event.get_path(&names) {
                    Some(v) => v.clone(),
                    None if names == ["message"] => {
                        Value::from(String::from_utf8_lossy(event.raw()?).into_owned())
                    }
                    None => return None,
                }
            }
            Expr::Func(Func::Lower(e)) => Value::from(value(e, event)?.as_str()?.to_lowercase()),
            Expr::Func(Func::Upper(e)) => Value::from(value(e, event)?.as_str()?.to_uppercase()),
            Expr::Func(Func::ToString(e)) => match value(e, event)? {
                Value::Null => Value::Null,
                other => Value::from(text(&other)),
            },
            Expr::Func(Func::Concat(items)) => {
                let mut joined = String::new();
                for item in items {
                    match value(item, event)? {
                        Value::Null => return None,
                        other => joined.push_str(&text(&other)),
                    }
                }
                Value::from(joined)
            }
            Expr::Func(Func::ToInt(e)) => Value::Int(match value(e, event)? {
                Value::Int(i) => i,
                Value::Float(x) => whole(x)?,
                Value::String(s) => match s.trim().parse::<i64>() {
                    Ok(i) => i,
                    Err(_) => whole(s.trim().parse::<f64>().ok()?)?,
                },
                Value::Bool(b) => i64::from(b),
                Value::Timestamp(ts) => ts.timestamp(),
                _ => return None,
            }),
            Expr::Func(Func::ToFloat(e)) => Value::Float(match value(e, event)? {
                Value::Int(i) => i as f64,
                Value::Float(x) => x,
                Value::String(s) => {
                    Some(s.trim().parse::<f64>().ok()?).filter(|x| x.is_finite())?
                }
                Value::Bool(b) => f64::from(u8::from(b)),
                Value::Timestamp(ts) => ts.timestamp_nanos_opt()? as f64 / 1e9,
                _ => return None,
            }),
            Expr::Arith(a, op, b) => {
                let (a, b) = (value(a, event)?, value(b, event)?);
                if let (Value::Int(a), Value::Int(b), false) = (&a, &b, *op == ArithOp::Div) {
                    let (a, b) = (i128::from(*a), i128::from(*b));
                    let wide = match op {
                        ArithOp::Add => a + b,
                        ArithOp::Sub => a - b,
                        _ => a * b,
                    };
                    return i64::try_from(wide).ok().map(Value::Int);
                }
                let (x, y) = (a.as_f64()?, b.as_f64()?);
                let result = match op {
                    ArithOp::Add => x + y,
                    ArithOp::Sub => x - y,
                    ArithOp::Mul => x * y,
                    ArithOp::Div => {
                        if y == 0.0 {
                            return None;
                        }
                        x / y
                    }
                };
                if !result.is_finite() {
                    return None;
                }
                Value::Float(result)
            }
            Expr::Func(Func::Len(e)) => Value::Int(match value(e, event)? {
                Value::String(s) => s.chars().count() as i64,
                Value::Array(items) => items.len() as i64,
                Value::Map(map) => map.len() as i64,
                _ => return None,
            }),
            Expr::Func(Func::Exists(path)) => {
                Value::Bool(value(&Expr::Field(path.clone()), event).is_some())
            }
            Expr::Func(Func::Contains(a, b)) => {
                let (a, b) = (value(a, event), value(b, event));
                Value::Bool(match (&a, &b) {
                    (Some(Value::String(a)), Some(Value::String(b))) => a.contains(b.as_str()),
                    (Some(Value::Array(items)), _) => items
                        .iter()
                        .any(|item| order(&Some(item.clone()), &b) == Some(Ordering::Equal)),
                    _ => false,
                })
            }
            Expr::Func(Func::StartsWith(a, b)) => Value::Bool(
                matches!((value(a, event), value(b, event)), (Some(Value::String(a)), Some(Value::String(b))) if a.starts_with(b.as_str())),
            ),
            Expr::Func(Func::EndsWith(a, b)) => Value::Bool(
                matches!((value(a, event), value(b, event)), (Some(Value::String(a)), Some(Value::String(b))) if a.ends_with(b.as_str())),
            ),
            Expr::Compare(a, op, b) => {
                let ordering = order(&value(a, event), &value(b, event));
                Value::Bool(match op {
                    CmpOp::Eq => ordering == Some(Ordering::Equal),
                    CmpOp::Ne => ordering != Some(Ordering::Equal),
                    CmpOp::Lt => ordering == Some(Ordering::Less),
                    CmpOp::Le => ordering.is_some_and(Ordering::is_le),
                    CmpOp::Gt => ordering == Some(Ordering::Greater),
                    CmpOp::Ge => ordering.is_some_and(Ordering::is_ge),
                })
            }
            Expr::Match {
                value: e,
                pattern,
                negated,
            } => {
                let matched = match value(e, event) {
                    Some(Value::String(s)) => pattern.0.is_match(&s),
                    _ => false,
                };
                Value::Bool(matched != *negated)
            }
            Expr::In(e, items) => {
                let v = value(e, event);
                Value::Bool(items.iter().any(|item| {
                    order(&v, &value(&Expr::Literal(item.clone()), event)) == Some(Ordering::Equal)
                }))
            }
            Expr::Not(_) | Expr::And(_) | Expr::Or(_) => Value::Bool(test(expr, event)),
        })
    }

    /// The text of a value for `to_string` and `concat`.
    fn text(value: &Value) -> String {
        match value {
            Value::String(s) => s.as_str().to_owned(),
            Value::Float(x) if !x.is_finite() => x.to_string(),
            Value::Timestamp(ts) => ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            other => {
                let mut out = Vec::new();
                crate::codec::json::encode_value(other, &mut out);
                String::from_utf8(out).unwrap()
            }
        }
    }

    /// The integer part of a float, when it fits an i64.
    fn whole(x: f64) -> Option<i64> {
        let t = x.trunc();
        (-9.223_372_036_854_776e18..9.223_372_036_854_776e18)
            .contains(&t)
            .then_some(t as i64)
    }

    fn order(a: &Option<Value>, b: &Option<Value>) -> Option<Ordering> {
        let time = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        match (a.as_ref()?, b.as_ref()?) {
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
            (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
            (Value::Timestamp(a), Value::String(b)) => Some(a.cmp(&time(b)?)),
            (Value::String(a), Value::Timestamp(b)) => Some(time(a)?.cmp(b)),
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            // Through i128 and exact float comparisons: independent of the evaluator's method.
            (a, b) => {
                let (x, y) = (a.as_f64()?, b.as_f64()?);
                match (a, b) {
                    (Value::Int(i), _) if y.is_finite() && y.abs() < 1e30 => {
                        compare_wide(i128::from(*i), y)
                    }
                    (_, Value::Int(i)) if x.is_finite() && x.abs() < 1e30 => {
                        compare_wide(i128::from(*i), x).map(Ordering::reverse)
                    }
                    _ => x.partial_cmp(&y),
                }
            }
        }
    }

    /// Compares an integer with a float by scaling the float's fraction away.
    fn compare_wide(i: i128, x: f64) -> Option<Ordering> {
        let floor = x.floor();
        let whole = floor as i128;
        Some(match i.cmp(&whole) {
            Ordering::Equal if x > floor => Ordering::Less,
            other => other,
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_gives_the_same_tree(expr in arb_condition()) {
        let condition = Condition { expr };
        let printed = condition.to_string();
        let reparsed = Condition::parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("`{printed}` does not parse:\n{e}")))?;
        prop_assert_eq!(&reparsed, &condition, "printed as `{}`", printed);
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    #[test]
    fn evaluation_agrees_with_the_reference(expr in arb_condition(), events in prop::collection::vec(arb_event(), 1..8)) {
        let condition = Condition { expr };
        for event in &events {
            prop_assert_eq!(
                condition.matches(event),
                reference::test(&condition.expr, event),
                "condition `{}` on {:?}", condition, event
            );
        }
    }

    #[test]
    fn ints_and_floats_compare_like_the_reference(
        int in prop_oneof![-5i64..5, any::<i64>()],
        float in prop_oneof![prop::sample::select(vec![-2.5, -0.5, 0.0, 0.5, 3.0, 4.75]), any::<f64>()],
        op in arb_cmp_op(),
    ) {
        let mut event = Event::default();
        event.insert("a", int);
        event.insert("b", float);
        for expr in [
            Expr::Compare(boxed(Expr::Field(FieldPath::new(vec![FieldName::new("a")]))), op, boxed(Expr::Field(FieldPath::new(vec![FieldName::new("b")])))),
            Expr::Compare(boxed(Expr::Field(FieldPath::new(vec![FieldName::new("b")]))), op, boxed(Expr::Field(FieldPath::new(vec![FieldName::new("a")])))),
        ] {
            prop_assert_eq!(expr.test(&event), reference::test(&expr, &event), "{} with a = {}, b = {}", expr, int, float);
        }
    }

    #[test]
    fn expressions_never_panic(input in ".{0,40}", tokens in prop::collection::vec(prop::sample::select(vec![
        "a", "1", "-2", "0.5", "\"s\"", "+", "-", "*", "/", "(", ")", ",", "concat(", "to_int(", "to_float(",
        "to_string(", "upper(", "lower(", "len(", "==", "and", "not", "null", "true", "1e308",
    ]), 0..16)) {
        for text in [input, tokens.join(" ")] {
            if let Ok(expression) = Expression::parse(&text) {
                let _ = expression.evaluate(&nginx_event());
                prop_assert_eq!(Expression::parse(&expression.to_string()).ok(), Some(expression));
            }
        }
    }

    #[test]
    fn parsing_any_string_never_panics(input in ".{0,60}") {
        if let Ok(condition) = Condition::parse(&input) {
            let _ = condition.matches(&nginx_event());
            prop_assert_eq!(Condition::parse(&condition.to_string()).ok(), Some(condition));
        }
    }

    #[test]
    fn parsing_token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(vec![
        "status", "a.b", ".\"k\"", "\"s\"", "'t'", "1", "-2", "3.5", "1e3", "true", "null", "(", ")",
        "[", "]", ",", ".", "==", "!=", "<", ">=", "~", "!~", "!", "not", "and", "or", "&&", "||",
        "in", "exists(", "lower(", "len(", "contains(", "\"(\"", "\\", "\"\\u{", "é",
    ]), 0..24)) {
        let input = tokens.join(" ");
        if let Ok(condition) = Condition::parse(&input) {
            let _ = condition.matches(&nginx_event());
            prop_assert_eq!(Condition::parse(&condition.to_string()).ok(), Some(condition));
        } else if let Err(error) = Condition::parse(&input) {
            // The caret must be inside the expression (or just past its end).
            prop_assert!(error.offset() <= input.len());
        }
    }
}

fn value_of(expression: &str) -> Option<Value> {
    match Expression::parse(expression) {
        Ok(expr) => expr.evaluate(&nginx_event()),
        Err(error) => panic!("`{expression}` should parse:\n{error}"),
    }
}

#[test]
fn arithmetic() {
    assert!(holds("bytes / 1024 > 0.4 and bytes / 1024 < 0.6"));
    assert!(holds(
        "status + 1 == 405 and status - 4 == 400 and status * 2 == 808"
    ));
    assert!(holds("status-4 == 400"), "a `-` after a value subtracts");
    assert!(holds("status - -1 == 405 and status * -1 == -404"));
    assert!(holds(
        "1 + 2 * 3 == 7 and (1 + 2) * 3 == 9 and 10 - 4 - 3 == 3"
    ));
    assert!(holds("request_time * 1000 == 250.0"));
    assert_eq!(
        value_of("7 / 2"),
        Some(Value::Float(3.5)),
        "`/` gives a float"
    );
    assert_eq!(value_of("status / 0"), None, "division by zero is missing");
    assert_eq!(
        value_of("9223372036854775807 + 1"),
        None,
        "overflow is missing"
    );
    assert_eq!(value_of("missing + 1"), None);
    assert_eq!(value_of("agent + 1"), None, "a string is not a number");
    assert_eq!(value_of("1e308 * 10"), None, "infinity is missing");
    assert_eq!(value_of("status + 0.5"), Some(Value::Float(404.5)));
    assert!(holds("not (missing + 1 == 1)"));
    for (input, canonical) in [
        ("a-1", "a - 1"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("(a + b) * c", "(a + b) * c"),
        ("a + b * c", "a + b * c"),
        ("a / (b * c) >= -1", "a / (b * c) >= -1"),
        ("x in [-1, 2]", "x in [-1, 2]"),
    ] {
        let expression = Expression::parse(input).unwrap();
        assert_eq!(expression.to_string(), canonical, "for `{input}`");
        assert_eq!(Expression::parse(canonical).unwrap(), expression);
    }
}

#[test]
fn value_functions() {
    assert_eq!(value_of("upper(method)"), Some(Value::from("GET")));
    assert_eq!(
        value_of("upper(agent)"),
        Some(Value::from(
            "GOOGLEBOT/2.1 (+HTTP://WWW.GOOGLE.COM/BOT.HTML)"
        ))
    );
    assert_eq!(
        value_of("concat(method, \" \", path, \" \", status, \" \", request_time, \" \", ok)"),
        Some(Value::from("GET /product/7 404 0.25 false"))
    );
    assert_eq!(value_of("concat(method, missing)"), None);
    assert_eq!(
        value_of("concat(method, nothing)"),
        None,
        "null makes concat missing"
    );
    assert_eq!(value_of("to_string(status)"), Some(Value::from("404")));
    assert_eq!(value_of("to_string(2.0)"), Some(Value::from("2.0")));
    assert_eq!(value_of("to_string(nothing)"), Some(Value::Null));
    assert_eq!(
        value_of("to_string(timestamp)"),
        Some(Value::from("2026-01-01T00:00:01Z"))
    );
    assert_eq!(
        value_of("to_string(tags)"),
        Some(Value::from("[\"a\",3,true]"))
    );
    assert_eq!(
        value_of("to_string(client)"),
        Some(Value::from("{\"id\":7,\"odd key\":\"x y\"}"))
    );
    assert_eq!(value_of("to_int(\" 42 \")"), Some(Value::Int(42)));
    assert_eq!(value_of("to_int(\"4.9\")"), Some(Value::Int(4)));
    assert_eq!(value_of("to_int(-4.9)"), Some(Value::Int(-4)));
    assert_eq!(value_of("to_int(1e300)"), None);
    assert_eq!(value_of("to_int(\"x\")"), None);
    assert_eq!(value_of("to_int(true)"), Some(Value::Int(1)));
    assert_eq!(
        value_of("to_int(timestamp)"),
        Some(Value::Int(1_767_225_601))
    );
    assert_eq!(value_of("to_float(\"0.5\")"), Some(Value::Float(0.5)));
    assert_eq!(value_of("to_float(status)"), Some(Value::Float(404.0)));
    assert_eq!(value_of("to_float(\"NaN\")"), None);
    assert_eq!(value_of("to_float(tags)"), None);
    // Paths are shared values, literals are values, and the raw line stands in for `message`.
    assert_eq!(value_of("client.id"), Some(Value::Int(7)));
    assert_eq!(value_of("nothing"), Some(Value::Null));
    assert_eq!(value_of("\"lit\""), Some(Value::from("lit")));
    assert!(
        value_of("message")
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("66.249.66.1 - -")
    );
    assert_eq!(value_of("status >= 400"), Some(Value::Bool(true)));
    assert_eq!(value_of("missing"), None);
    let path = Expression::parse("client.\"odd key\"").unwrap();
    assert_eq!(
        path.field_path()
            .map(|p| p.iter().map(FieldName::as_str).collect::<Vec<_>>()),
        Some(vec!["client", "odd key"])
    );
    assert_eq!(
        Expression::parse("0.95").unwrap().literal(),
        Some(Value::Float(0.95))
    );
    assert_eq!(Expression::parse("a + 1").unwrap().literal(), None);
    // As conditions, value functions hold only when they are `true`.
    assert!(holds(
        "upper(method) == \"GET\" and to_int(\"404\") == status"
    ));
}

#[test]
fn expression_errors() {
    let expr_error = |input: &str| Expression::parse(input).unwrap_err().to_string();
    assert_eq!(
        expr_error("\"a\" + 1"),
        "`+` takes numbers, found a string\n\"a\" + 1\n^"
    );
    assert_eq!(
        expr_error("1 * true"),
        "`*` takes numbers, found a bool\n1 * true\n    ^"
    );
    assert_eq!(
        expr_error("a +"),
        "expected a value, found the end of the condition\na +\n   ^"
    );
    assert_eq!(
        expr_error("a b"),
        "expected an operator or the end of the expression, found `b`\na b\n  ^"
    );
    assert_eq!(
        expr_error("concat()"),
        "`concat` takes at least 1 argument, found 0\nconcat()\n^"
    );
    assert_eq!(
        expr_error("upper(1)"),
        "`upper` takes strings, found an int\nupper(1)\n      ^"
    );
    assert_eq!(
        error("status + 1"),
        "expected a condition, found a number\nstatus + 1\n^"
    );
    assert_eq!(
        error("a / 2 == \"x\""),
        "cannot compare a float with a string: the comparison would never hold\na / 2 == \"x\"\n      ^"
    );
    let long = vec!["1"; 70].join(" + ");
    assert!(expr_error(&long).contains("more than 64 terms in one arithmetic chain"));
}
