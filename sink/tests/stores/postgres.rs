//! The postgres sink against a real PostgreSQL 15 started from its binaries.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_pipelines::{Event, Value};
use sluice_sink::driver::{DriverConfig, Outcome};
use sluice_sink::sinks::PostgresConfig;
use sluice_sink::sinks::postgres::OnConflict;
use sluice_sink::{Sink, SinkError};

use crate::support::{Postgres, Run, fast_retry};
use crate::{request, requests};

const TABLE: &str = "CREATE TABLE requests (
    id bigserial PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    timestamp timestamptz,
    path varchar(100),
    status int2,
    bytes int8,
    request_time float8,
    ratio float4,
    bot bool,
    day date,
    small int4 CHECK (small < 1000),
    referer text,
    inserted_at timestamptz DEFAULT now()
)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_land_value_by_value() {
    let server = Postgres::start();
    let client = server.client().await;
    client.batch_execute(TABLE).await.unwrap();
    client
        .batch_execute("CREATE TABLE mapped (ts timestamptz, url text, doc jsonb, tags jsonb, raw json, line text)")
        .await
        .unwrap();

    // Columns matched by name; defaults (id, inserted_at) left to the server.
    let mut sink = PostgresConfig::new(server.url(), "requests")
        .build()
        .await
        .unwrap();
    sink.healthcheck().await.unwrap();
    let mut run = Run::start(Box::new(sink), fast_retry(DriverConfig::default()));
    for n in 0..4 {
        let mut batch = requests(n * 250..n * 250 + 250);
        for event in &mut batch {
            let i = event.get("bytes").unwrap().as_int().unwrap() / 1000;
            event.insert("ratio", i as f64 / 4.0);
            event.insert("day", "2024-05-01");
            event.insert("small", i % 1000);
            event.insert("unknown_field", "ignored");
        }
        run.send(batch).await;
    }
    let outcomes = run.finish().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let rows = client
        .query(
            "SELECT request_id, timestamp, path, status, bytes, request_time, ratio, bot, day::text, small, referer, \
             inserted_at IS NOT NULL FROM requests ORDER BY request_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1000);
    for (n, row) in rows.iter().enumerate() {
        let n = n as i64;
        let expected_ts = DateTime::<Utc>::from_timestamp(1_714_564_800 + n, 250_000_000).unwrap();
        assert_eq!(row.get::<_, String>(0), format!("req-{n:08}"));
        assert_eq!(
            row.get::<_, std::time::SystemTime>(1),
            std::time::SystemTime::from(expected_ts)
        );
        assert_eq!(row.get::<_, String>(2), format!("/page/{}", n % 7));
        assert_eq!(row.get::<_, i16>(3), (200 + (n % 5) * 100) as i16);
        assert_eq!(row.get::<_, i64>(4), n * 1000);
        assert_eq!(row.get::<_, f64>(5), n as f64 / 8.0);
        assert_eq!(row.get::<_, f32>(6), n as f32 / 4.0);
        assert_eq!(row.get::<_, bool>(7), n % 3 == 0);
        assert_eq!(row.get::<_, String>(8), "2024-05-01");
        assert_eq!(row.get::<_, i32>(9), (n % 1000) as i32);
        assert_eq!(row.get::<_, Option<String>>(10), None);
        assert!(row.get::<_, bool>(11));
    }

    // An explicit mapping: whole event as jsonb, a nested value as jsonb, the raw line.
    let mut columns = BTreeMap::new();
    for (column, field) in [
        ("ts", "timestamp"),
        ("url", "path"),
        ("doc", "."),
        ("tags", "meta.tags"),
        ("raw", "meta"),
        ("line", "message"),
    ] {
        columns.insert(column.to_owned(), field.to_owned());
    }
    let mut config = PostgresConfig::new(server.url(), "public.mapped");
    config.columns = Some(columns);
    let mut sink = config.build().await.unwrap();
    let mut event = Event::from_raw(bytes::Bytes::from_static(b"GET / 200"), Default::default());
    event.insert("timestamp", "2024-05-01T14:00:00+02:00");
    event.insert("path", "/");
    let mut meta = sluice_pipelines::Fields::new();
    meta.insert(
        "tags".into(),
        Value::Array(vec![Value::from("a"), Value::Int(1)]),
    );
    event.insert("meta", Value::Map(meta));
    sink.write(&[event]).await.unwrap();
    let row = client
        .query_one("SELECT extract(epoch from ts)::int8, url, doc::text, tags::text, raw::text, line FROM mapped", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1_714_564_800);
    assert_eq!(row.get::<_, String>(1), "/");
    assert_eq!(
        row.get::<_, String>(2),
        r#"{"meta": {"tags": ["a", 1]}, "path": "/", "message": "GET / 200", "timestamp": "2024-05-01T14:00:00+02:00"}"#
    );
    assert_eq!(row.get::<_, String>(3), r#"["a", 1]"#);
    assert_eq!(row.get::<_, String>(4), r#"{"tags":["a",1]}"#);
    assert_eq!(row.get::<_, String>(5), "GET / 200");

    // numeric (exact, with the scale given, typmods applied by the server), uuid and inet.
    client
        .batch_execute(
            "CREATE TABLE typed (n int4, amount numeric, price numeric(10,2), id uuid, ip inet)",
        )
        .await
        .unwrap();
    let mut sink = PostgresConfig::new(server.url(), "typed")
        .build()
        .await
        .unwrap();
    let rows: [(Value, Value, &str, &str); 4] = [
        (
            Value::from("123456789.0123456789"),
            Value::from("19.999"),
            "123e4567-e89b-12d3-a456-426614174000",
            "10.1.2.3",
        ),
        (
            Value::Int(-42),
            Value::Float(0.5),
            "00000000000000000000000000000001",
            "2001:db8::1",
        ),
        (
            Value::Float(0.1),
            Value::from("-0.001"),
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "192.168.0.0/16",
        ),
        (Value::from("NaN"), Value::Int(7), "", ""),
    ];
    let events: Vec<Event> = rows
        .iter()
        .enumerate()
        .map(|(n, (amount, price, id, ip))| {
            let mut event = Event::default();
            event.insert("n", n as i64);
            event.insert("amount", amount.clone());
            event.insert("price", price.clone());
            if !id.is_empty() {
                event.insert("id", *id);
                event.insert("ip", *ip);
            }
            event
        })
        .collect();
    sink.write(&events).await.unwrap();
    let got: Vec<[Option<String>; 4]> = client
        .query(
            "SELECT amount::text, price::text, id::text, ip::text FROM typed ORDER BY n",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| [row.get(0), row.get(1), row.get(2), row.get(3)])
        .collect();
    // `inet::text` shows the prefix length; PostgreSQL rounds -0.001 to 0.00, without a sign.
    let some = |text: &str| Some(text.to_owned());
    assert_eq!(
        got,
        [
            [
                some("123456789.0123456789"),
                some("20.00"),
                some("123e4567-e89b-12d3-a456-426614174000"),
                some("10.1.2.3/32"),
            ],
            [
                some("-42"),
                some("0.50"),
                some("00000000-0000-0000-0000-000000000001"),
                some("2001:db8::1/128"),
            ],
            [
                some("0.1"),
                some("0.00"),
                some("ffffffff-ffff-ffff-ffff-ffffffffffff"),
                some("192.168.0.0/16"),
            ],
            [some("NaN"), some("7.00"), None, None],
        ]
    );
    // A value the column cannot take rejects its row with a message naming both.
    let mut bad = Event::default();
    bad.insert("id", "not-a-uuid");
    let error = sink.write(&[bad]).await.unwrap_err().to_string();
    assert!(
        error.contains("\"id\"") && error.contains("not-a-uuid"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rejects_bad_rows_with_the_server_message() {
    let server = Postgres::start();
    let client = server.client().await;
    client.batch_execute(TABLE).await.unwrap();
    let sink = PostgresConfig::new(server.url(), "requests")
        .build()
        .await
        .unwrap();
    let mut run = Run::start(Box::new(sink), fast_retry(DriverConfig::default()));
    run.send(requests(0..10)).await;
    let mut bad = request(10);
    bad.insert("small", 5000i64);
    run.send(vec![request(11), bad]).await;
    let mut wrong_type = request(12);
    wrong_type.insert("status", "two hundred");
    run.send(vec![wrong_type]).await;
    run.send(requests(20..25)).await;
    let outcomes = run.finish().await;
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert_eq!(outcomes[3], Outcome::Delivered);
    let Outcome::Rejected { rejections } = &outcomes[1] else {
        panic!("{outcomes:?}")
    };
    let message = rejections[0].error.to_string();
    assert!(
        message.contains("violates check constraint") && message.contains("23514"),
        "{message}"
    );
    assert_eq!(rejections.len(), 1);
    assert_eq!(
        rejections[0].events,
        1..2,
        "only the bad row; request 11 lands"
    );
    let Outcome::Rejected { rejections } = &outcomes[2] else {
        panic!("{outcomes:?}")
    };
    assert!(
        rejections[0].error.to_string().contains("\"status\""),
        "{:?}",
        rejections[0].error
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 16, "10 + request 11 + 5");
}

/// Down at start, killed mid-stream, restarted: with `on_conflict` every event is stored exactly
/// once; without it at least once (duplicates counted and printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_being_down_and_killed() {
    let mut server = Postgres::start();
    let client = server.client().await;
    client.batch_execute(TABLE).await.unwrap();
    client
        .batch_execute("CREATE TABLE loose (request_id text, status int4)")
        .await
        .unwrap();
    drop(client);
    server.kill();

    let mut idempotent = PostgresConfig::new(server.url(), "requests");
    idempotent.on_conflict = Some(OnConflict {
        columns: vec!["request_id".into()],
        action: Default::default(),
    });
    let loose = PostgresConfig::new(server.url(), "loose");
    let mut a = Run::start(Box::new(idempotent.build().await.unwrap()), {
        let mut driver = fast_retry(DriverConfig::default());
        driver.batch.max_events = 100;
        driver
    });
    let mut b = Run::start(
        Box::new(loose.build().await.unwrap()),
        fast_retry(DriverConfig::default()),
    );
    let total: i64 = 5000;
    let mut sent = 0;
    while sent < total {
        if sent == 500 {
            server.restart();
        }
        if sent == 2500 {
            server.kill();
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.restart();
        }
        let events = requests(sent..sent + 100);
        if sent < 500 {
            // Down at start: the driver must hold these until the server is up.
            let _ = tokio::time::timeout(Duration::from_millis(100), a.send(events.clone())).await;
        } else {
            a.send(events.clone()).await;
        }
        b.send(events).await;
        sent += 100;
    }
    // Resend whatever timed out while the server was down: idempotent anyway.
    a.send(requests(0..500)).await;
    let outcomes = a.finish().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let outcomes = b.finish().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT request_id) FROM requests",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (total, total),
        "exactly once with on_conflict"
    );
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT request_id) FROM loose",
            &[],
        )
        .await
        .unwrap();
    let (count, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(distinct, total, "at least once without on_conflict");
    println!(
        "postgres fault test: {total} events; on_conflict: 0 duplicates; plain: {} duplicates",
        count - total
    );
}

/// Issue 10, item 4: what cannot fix itself — a missing table or database, an unknown role, no
/// permission — is a refusal with the server's message and what to do, at the healthcheck and at
/// a write; a server that is down is merely unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusals_say_what_to_fix() {
    let mut server = Postgres::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE requests (request_id text, status int4); \
             CREATE ROLE reader LOGIN; GRANT SELECT ON requests TO reader; \
             CREATE ROLE stranger LOGIN;",
        )
        .await
        .unwrap();
    let refusal = |url: String, table: &'static str, fix: &'static str| async move {
        let mut sink = PostgresConfig::new(url, table).build().await.unwrap();
        for error in [
            sink.healthcheck().await.unwrap_err(),
            sink.write(&requests(0..1)).await.unwrap_err(),
        ] {
            assert!(matches!(error, SinkError::Refused(_)), "{error:?}");
            assert!(error.message().contains(fix), "{error}");
        }
    };
    let url = server.url();
    refusal(url.clone(), "missing", "create the table, or fix `table`").await;
    let no_db = format!("postgres://postgres@127.0.0.1:{}/analytics", server.port);
    refusal(no_db, "requests", "create the database").await;
    let nobody = url.replace("postgres@", "nobody@");
    refusal(nobody, "requests", "fix the user or password in `url`").await;
    // No privilege at all: the table is invisible to the role.
    let stranger = url.replace("postgres@", "stranger@");
    refusal(stranger, "requests", "grant the user SELECT and INSERT").await;
    // SELECT but no INSERT: the COPY is denied.
    let reader = url.replace("postgres@", "reader@");
    let mut sink = PostgresConfig::new(reader, "requests")
        .build()
        .await
        .unwrap();
    sink.healthcheck().await.unwrap();
    let error = sink.write(&requests(0..1)).await.unwrap_err();
    assert!(matches!(error, SinkError::Refused(_)), "{error:?}");
    assert!(
        error.message().contains("(42501)") && error.message().contains("grant the user"),
        "{error}"
    );

    server.kill();
    let mut sink = PostgresConfig::new(url, "requests").build().await.unwrap();
    let error = sink.healthcheck().await.unwrap_err();
    assert!(matches!(error, SinkError::Unreachable(_)), "{error:?}");
}

/// Issue 14, item 5: after an outage of 20 s, with the default retry settings (whose backoff
/// for failed requests grows to 30 s), the first row lands within 2 s of the server accepting
/// connections again: an unreachable store is retried at least every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_flow_within_two_seconds_of_the_server_coming_back() {
    let mut server = Postgres::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE requests (request_id text, status int4)")
        .await
        .unwrap();
    drop(client);
    server.kill();
    let sink = PostgresConfig::new(server.url(), "requests")
        .build()
        .await
        .unwrap();
    let mut run = Run::start(Box::new(sink), DriverConfig::default());
    run.send(requests(0..100)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;

    // Watch for the first moment the server takes a connection and answers a query.
    let url = server.url();
    let accepting = tokio::spawn(async move {
        loop {
            if let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            {
                tokio::spawn(connection);
                if client.simple_query("SELECT 1").await.is_ok() {
                    return (std::time::Instant::now(), client);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let (accepted_at, client) = accepting.await.unwrap();
    let deadline = accepted_at + Duration::from_secs(10);
    let landed_at = loop {
        let rows: i64 = client
            .query_one("SELECT count(*) FROM requests", &[])
            .await
            .unwrap()
            .get(0);
        if rows > 0 {
            break std::time::Instant::now();
        }
        assert!(std::time::Instant::now() < deadline, "no row within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let waited = landed_at - accepted_at;
    assert!(
        waited <= Duration::from_secs(2),
        "the first row came {waited:?} after the server accepted connections"
    );
    assert_eq!(run.finish().await, [Outcome::Delivered]);
    drop(server);
}

/// One row of every column kind the binary COPY encoder writes, as the event gives it.
#[derive(Debug, Clone)]
struct KindsRow {
    small: i16,
    int: i32,
    big: i64,
    single: f32,
    double: f64,
    flag: bool,
    at_micros: i64,
    day: chrono::NaiveDate,
    decimal: String,
    uuid: String,
    address: String,
    text: String,
    doc: serde_json::Value,
}

fn kinds_row() -> impl proptest::strategy::Strategy<Value = KindsRow> {
    use proptest::prelude::*;
    let finite = |f: &f64| f.is_finite();
    // Years 1 to 9999: what `%Y-%m-%d` writes without a sign.
    let day = (-730_119i64..2_921_939).prop_map(|days| {
        chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + chrono::Duration::days(days)
    });
    let decimal = (
        prop::bool::ANY,
        "[0-9]{0,24}",
        prop::option::of("[0-9]{0,20}"),
    )
        .prop_filter_map("a number needs a digit", |(negative, whole, fraction)| {
            let fraction = fraction
                .map(|digits| format!(".{digits}"))
                .unwrap_or_default();
            let text = format!("{}{whole}{fraction}", if negative { "-" } else { "" });
            text.bytes().any(|b| b.is_ascii_digit()).then_some(text)
        });
    let uuid = (any::<u128>(), prop::bool::ANY).prop_map(|(bits, hyphens)| {
        let hex = format!("{bits:032x}");
        if hyphens {
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        } else {
            hex
        }
    });
    let address = prop_oneof![
        (any::<u32>(), prop::option::of(0u8..=32)).prop_map(|(bits, prefix)| {
            let ip = std::net::Ipv4Addr::from(bits);
            prefix.map_or_else(|| ip.to_string(), |prefix| format!("{ip}/{prefix}"))
        }),
        (any::<u128>(), prop::option::of(0u8..=128)).prop_map(|(bits, prefix)| {
            let ip = std::net::Ipv6Addr::from(bits);
            prefix.map_or_else(|| ip.to_string(), |prefix| format!("{ip}/{prefix}"))
        }),
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", finite)
            .prop_map(serde_json::Value::from),
        "[^\u{0}]{0,8}".prop_map(serde_json::Value::from),
    ];
    let doc = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    });
    (
        (
            any::<i16>(),
            any::<i32>(),
            any::<i64>(),
            any::<f32>().prop_filter("finite", |f| f.is_finite()),
            any::<f64>().prop_filter("finite", finite),
            any::<bool>(),
            // 1900 to 2200, in microseconds: what timestamptz holds exactly.
            -2_208_988_800_000_000i64..7_258_118_400_000_000,
        ),
        (day, decimal, uuid, address, "[^\u{0}]{0,40}", doc),
    )
        .prop_map(
            |(
                (small, int, big, single, double, flag, at_micros),
                (day, decimal, uuid, address, text, doc),
            )| KindsRow {
                small,
                int,
                big,
                single,
                double,
                flag,
                at_micros,
                day,
                decimal,
                uuid,
                address,
                text,
                doc,
            },
        )
}

impl KindsRow {
    fn event(&self, seq: i64) -> Event {
        let mut event = Event::default();
        event.insert("seq", seq);
        event.insert("i2", i64::from(self.small));
        event.insert("i4", i64::from(self.int));
        event.insert("i8", self.big);
        event.insert("f4", f64::from(self.single));
        event.insert("f8", self.double);
        event.insert("flag", self.flag);
        event.insert(
            "at",
            Value::Timestamp(DateTime::from_timestamp_micros(self.at_micros).unwrap()),
        );
        event.insert("day", self.day.format("%Y-%m-%d").to_string());
        event.insert("num", self.decimal.as_str());
        event.insert("id", self.uuid.as_str());
        event.insert("ip", self.address.as_str());
        event.insert("label", self.text.as_str());
        let doc = sluice_pipelines::codec::json::JsonDecoder::new()
            .decode_value(self.doc.to_string().as_bytes())
            .unwrap();
        event.insert("doc", doc);
        event
    }
}

/// The binary COPY encoders against the server's own parsers: every value the sink writes reads
/// back as what PostgreSQL makes of the same value written as text (a JSON `null` field is SQL
/// NULL, as every null field is).
#[test]
fn postgres_binary_copy_round_trips_every_column_kind() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = Postgres::start();
    let client = runtime.block_on(server.client());
    runtime
        .block_on(client.batch_execute(
            "CREATE TABLE kinds (seq int8 PRIMARY KEY, i2 int2, i4 int4, i8 int8, f4 float4, \
             f8 float8, flag bool, at timestamptz, day date, num numeric, id uuid, ip inet, \
             label text, doc jsonb)",
        ))
        .unwrap();
    let sink = runtime
        .block_on(PostgresConfig::new(server.url(), "kinds").build())
        .unwrap();
    let sink = tokio::sync::Mutex::new(sink);
    // A few cases of a few rows: each case is a real COPY and a query per row.
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let rows = proptest::collection::vec(kinds_row(), 1..6);
    let result = runner.run(&rows, |rows| {
        runtime.block_on(async {
            client.batch_execute("TRUNCATE kinds").await.unwrap();
            let events: Vec<Event> = (0..).zip(&rows).map(|(seq, row)| row.event(seq)).collect();
            sink.lock()
                .await
                .write(&events)
                .await
                .map_err(|error| TestCaseError::fail(format!("{error}")))?;
            for (seq, row) in (0i64..).zip(&rows) {
                let got = client
                    .query_one(
                        "SELECT i2, i4, i8, f4, f8, flag, at, day::text, \
                         num::text = ($2::text::numeric)::text, id = $3::text::uuid, \
                         ip = $4::text::inet, label, \
                         (doc IS NULL AND $5::text = 'null') OR doc = $5::text::jsonb \
                         FROM kinds WHERE seq = $1",
                        &[
                            &seq,
                            &row.decimal,
                            &row.uuid,
                            &row.address,
                            &row.doc.to_string(),
                        ],
                    )
                    .await
                    .unwrap();
                let at = std::time::SystemTime::from(
                    DateTime::from_timestamp_micros(row.at_micros).unwrap(),
                );
                proptest::prop_assert_eq!(got.get::<_, i16>(0), row.small);
                proptest::prop_assert_eq!(got.get::<_, i32>(1), row.int);
                proptest::prop_assert_eq!(got.get::<_, i64>(2), row.big);
                proptest::prop_assert_eq!(got.get::<_, f32>(3).to_bits(), row.single.to_bits());
                proptest::prop_assert_eq!(got.get::<_, f64>(4).to_bits(), row.double.to_bits());
                proptest::prop_assert_eq!(got.get::<_, bool>(5), row.flag);
                proptest::prop_assert_eq!(got.get::<_, std::time::SystemTime>(6), at);
                proptest::prop_assert_eq!(
                    got.get::<_, String>(7),
                    row.day.format("%Y-%m-%d").to_string()
                );
                proptest::prop_assert!(got.get::<_, bool>(8), "numeric {}", row.decimal);
                proptest::prop_assert!(got.get::<_, bool>(9), "uuid {}", row.uuid);
                proptest::prop_assert!(got.get::<_, bool>(10), "inet {}", row.address);
                proptest::prop_assert_eq!(got.get::<_, String>(11), row.text.clone());
                proptest::prop_assert!(got.get::<_, bool>(12), "jsonb {}", row.doc);
            }
            Ok::<(), TestCaseError>(())
        })
    });
    drop(server);
    result.unwrap();
}
