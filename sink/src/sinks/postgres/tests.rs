//! Tests of the `postgres` sink that need no server: config checks and the binary COPY encoders.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn numeric(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    encode_numeric(text, &mut out).map(|()| out)
}

/// Reads the binary form back as PostgreSQL's `numeric_out` would print it.
fn numeric_text(bytes: &[u8]) -> String {
    let word = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
    let (count, weight, sign, scale) = (word(0), word(2) as i16, word(4), word(6));
    if sign == 0xC000 {
        return "NaN".to_owned();
    }
    let digits: Vec<u16> = (0..count as usize).map(|i| word(8 + 2 * i)).collect();
    let digit = |power: i32| -> u16 {
        // The base-10000 digit whose weight is `power`.
        let index = i32::from(weight) - power;
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    let top = i32::from(weight).max(0);
    let whole: String = (0..=top)
        .rev()
        .map(|p| format!("{:04}", digit(p)))
        .collect();
    let whole = whole.trim_start_matches('0');
    text.push_str(if whole.is_empty() { "0" } else { whole });
    if scale > 0 {
        let groups = (i32::from(scale) + 3) / 4;
        let fraction: String = (1..=groups).map(|p| format!("{:04}", digit(-p))).collect();
        text.push('.');
        text.push_str(&fraction[..scale as usize]);
    }
    text
}

#[test]
fn numerics_take_postgres_binary_form() {
    // 12.5: one digit before the point (weight 0) and 5000 after, scale 1.
    assert_eq!(
        numeric("12.5").unwrap(),
        [0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88]
    );
    assert_eq!(
        numeric("-0.001").unwrap(),
        [0, 1, 0xFF, 0xFF, 0x40, 0, 0, 3, 0, 10]
    );
    assert_eq!(numeric("0").unwrap(), [0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(numeric("NaN").unwrap(), [0, 0, 0, 0, 0xC0, 0, 0, 0]);
    for (text, shown) in [
        ("100000000", "100000000"),
        ("123456789.0123456789", "123456789.0123456789"),
        ("0.00010000", "0.00010000"),
        ("-0", "0"),
        ("+7", "7"),
        (".5", "0.5"),
        ("5.", "5"),
        ("007.250", "7.250"),
    ] {
        assert_eq!(numeric_text(&numeric(text).unwrap()), shown, "{text}");
    }
    for bad in ["", "-", ".", "1e5", "1.2.3", "12a", " 1", "inf", "--1"] {
        assert_eq!(numeric(bad), None, "{bad:?}");
    }
}

#[test]
fn uuids_and_inets_parse_strictly() {
    let uuid = parse_uuid("123e4567-e89b-12d3-a456-426614174000").unwrap();
    assert_eq!(uuid[0], 0x12);
    assert_eq!(uuid[15], 0x00);
    assert_eq!(parse_uuid("123E4567E89B12D3A456426614174000"), Some(uuid));
    for bad in [
        "123e4567-e89b-12d3-a456-42661417400",
        "123e4567e-89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-42661417400g",
        "",
    ] {
        assert_eq!(parse_uuid(bad), None, "{bad}");
    }
    let inet = |text: &str| {
        let mut out = Vec::new();
        encode_inet(text, &mut out).map(|()| out)
    };
    assert_eq!(inet("10.0.0.1").unwrap(), [2, 32, 0, 4, 10, 0, 0, 1]);
    assert_eq!(
        inet("192.168.0.0/16").unwrap(),
        [2, 16, 0, 4, 192, 168, 0, 0]
    );
    let v6 = inet("::1").unwrap();
    assert_eq!(&v6[..4], [3, 128, 0, 16]);
    assert_eq!(v6[19], 1);
    for bad in ["10.0.0.256", "10.0.0.1/33", "::1/129", "host", "-", ""] {
        assert_eq!(inet(bad), None, "{bad}");
    }
}

proptest! {
    #[test]
    fn numerics_read_back_as_written(
        negative in any::<bool>(),
        whole in "[0-9]{0,30}",
        fraction in proptest::option::of("[0-9]{0,30}"),
    ) {
        let text = format!(
            "{}{whole}{}",
            if negative { "-" } else { "" },
            fraction.as_ref().map(|f| format!(".{f}")).unwrap_or_default()
        );
        let Some(bytes) = numeric(&text) else {
            prop_assert!(whole.is_empty() && fraction.as_deref().unwrap_or("").is_empty());
            return Ok(());
        };
        let trimmed = whole.trim_start_matches('0');
        let mut expected = if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() };
        if let Some(fraction) = fraction.as_ref().filter(|f| !f.is_empty()) {
            expected = format!("{expected}.{fraction}");
        }
        let zero = expected.bytes().all(|b| b == b'0' || b == b'.');
        if negative && !zero {
            expected = format!("-{expected}");
        }
        prop_assert_eq!(numeric_text(&bytes), expected);
    }
}

#[test]
fn config_validation() {
    let config: PostgresConfig = serde_json::from_value(json!({
        "url": "postgres://sluice@127.0.0.1:5432/analytics",
        "table": "public.requests",
        "columns": {"ts": "timestamp", "raw": "."},
        "on_conflict": {"columns": ["request_id"], "action": "nothing"},
    }))
    .unwrap();
    config.validate().unwrap();
    let key = |value: serde_json::Value| {
        serde_json::from_value::<PostgresConfig>(value)
            .unwrap()
            .validate()
            .unwrap_err()
            .key
            .unwrap()
    };
    assert_eq!(key(json!({"url": "nope://", "table": "t"})), "url");
    assert_eq!(
        key(json!({"url": "postgres://h/db", "table": "a.b.c"})),
        "table"
    );
    assert_eq!(
        key(json!({"url": "postgres://h/db", "table": "t", "pool_size": 0})),
        "pool_size"
    );
    assert_eq!(
        key(json!({"url": "postgres://h/db", "table": "t", "on_conflict": {"columns": []}})),
        "on_conflict.columns"
    );
    assert!(serde_json::from_value::<PostgresConfig>(json!({
        "url": "postgres://h/db", "table": "t", "on_conflict": {"columns": ["a"], "action": "update"}
    }))
    .is_err());
}

#[test]
fn binary_copy_layout() {
    let columns = vec![
        Column {
            name: "n".into(),
            field: vec!["n".into()],
            kind: Kind::Int4,
        },
        Column {
            name: "s".into(),
            field: vec!["s".into()],
            kind: Kind::Text,
        },
        Column {
            name: "j".into(),
            field: vec![],
            kind: Kind::Jsonb,
        },
    ];
    let mut event = Event::default();
    event.insert("n", 7i64);
    let mut out = BytesMut::new();
    encode_copy(&columns, [&event].into_iter(), &mut out).unwrap();
    let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x03".to_vec();
    expected.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]);
    expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    expected.extend_from_slice(&[0, 0, 0, 8, 1]);
    expected.extend_from_slice(b"{\"n\":7}");
    expected.extend_from_slice(&[0xff, 0xff]);
    assert_eq!(&out[..], &expected[..]);

    event.insert("n", 1i64 << 40);
    let error = encode_copy(&columns, [&event].into_iter(), &mut BytesMut::new()).unwrap_err();
    assert!(!error.is_transient());
    assert!(error.to_string().contains("column \"n\""), "{error}");
}
