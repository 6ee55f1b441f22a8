//! Synthetic web logs: nginx access lines and NDJSON clickstream events, deterministic for a seed,
//! in the shape of the `gen_logs.py` script the benchmark scenarios were first written against.
//!
//! One implementation serves the agent's `generator` source (demos), `sluice generate` (the input
//! files of the end-to-end benchmarks, see [`write_sample`]) and the tests and benchmarks of this
//! crate ([`crate::test_engine::sample`]), so a pipeline tested on one reads the others the same way.
//! The value lists, weights, field order and formats are the script's:
//! - [`SampleFormat::Nginx`]: nginx "combined" access lines followed by `$request_time` and a
//!   request id (`req-0000000001`), about 8% of them from bots.
//! - [`SampleFormat::Events`]: one compact JSON clickstream event per line (`ts`, `event_id`,
//!   `user_id`, `session_id`, `event`, `page`, `country`, `device`, `latency_ms`, and
//!   `amount`/`currency` for purchases, `query` for searches).
//!
//! Each line comes `0..max_step` after the previous one (10 ms by default, as the script's
//! `t += random() * 0.01`), the first one step after the start.
//!
//! [`SampleLines`] is built for the generator's hot path: `write_next` appends one line (no
//! newline) to the caller's buffer and allocates nothing of its own. Values are drawn at the
//! precision they are printed at (whole microseconds of time, milliseconds of request time,
//! tenths of latency, cents) and written as integers, and the text of the current second is
//! formatted once per second. The random sequence is splitmix64, not Python's Mersenne Twister,
//! so the values differ from the script's; the same seed, start and step give the same bytes.

use std::io::{self, Write};

use bytes::BytesMut;
use chrono::{DateTime, Datelike, Timelike};

use crate::hash::mix64;

/// Browser user agents.
pub const AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
];
/// Bot and probe user agents (8% of nginx lines).
pub const BOTS: [&str; 4] = [
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "kube-probe/1.29",
];
/// Referers of nginx lines.
pub const REFERERS: [&str; 5] = [
    "-",
    "https://www.google.com/",
    "https://shop.example.com/",
    "https://t.co/x1y2z3",
    "https://shop.example.com/search?q=shoes",
];
/// The `?q=` of nginx requests for `/search`, URL-encoded.
pub const SEARCH_PARAMS: [&str; 5] = ["shoes", "red+dress", "usb-c", "gift", "laptop"];
/// The `query` of `search` events.
pub const QUERIES: [&str; 5] = ["shoes", "red dress", "usb-c cable", "gift", "laptop"];
/// Countries of events.
pub const COUNTRIES: [&str; 8] = ["US", "DE", "CN", "IN", "BR", "FR", "JP", "GB"];
/// Devices of events.
pub const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
/// Request methods and their weights: `["GET"] * 17 + ["POST"] * 2 + ["PUT"]`.
pub const METHODS: [(&str, u32); 3] = [("GET", 17), ("POST", 2), ("PUT", 1)];
/// Response statuses and their weights:
/// `[200] * 80 + [304] * 6 + [301, 302] + [404] * 6 + [400, 401, 403] + [500, 502, 503]`.
pub const STATUSES: [(u32, u32); 11] = [
    (200, 80),
    (304, 6),
    (301, 1),
    (302, 1),
    (404, 6),
    (400, 1),
    (401, 1),
    (403, 1),
    (500, 1),
    (502, 1),
    (503, 1),
];
/// Event kinds and their weights: `["page_view"] * 50 + ["click"] * 30 + ["search"] * 8 +
/// ["add_to_cart"] * 7 + ["purchase"] * 3 + ["signup"] * 2`.
pub const EVENTS: [(&str, u32); 6] = [
    ("page_view", 50),
    ("click", 30),
    ("search", 8),
    ("add_to_cart", 7),
    ("purchase", 3),
    ("signup", 2),
];
/// The first pages of the page list; `/product/1` to `/product/{PRODUCTS}` and the
/// [`CATEGORIES`] pages follow. Pages are picked skewed towards the start of the list.
pub const FIXED_PAGES: [&str; 14] = [
    "/",
    "/search",
    "/cart",
    "/checkout",
    "/login",
    "/signup",
    "/account",
    "/api/v1/items",
    "/api/v1/cart",
    "/api/v1/recommendations",
    "/healthz",
    "/static/app.js",
    "/static/app.css",
    "/favicon.ico",
];
/// How many `/product/{n}` pages the page list has.
pub const PRODUCTS: u64 = 399;
/// The `/category/{name}` pages, last in the page list.
pub const CATEGORIES: [&str; 8] = [
    "shoes", "phones", "books", "garden", "toys", "laptops", "music", "food",
];

/// The default largest gap between two lines: 10 ms.
pub const DEFAULT_MAX_STEP_MICROS: u64 = 10_000;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const PAGES: u64 = FIXED_PAGES.len() as u64 + PRODUCTS + CATEGORIES.len() as u64;

/// splitmix64: small, fast, and good enough for synthetic data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A float in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// An integer in `[0, n)` (0 when `n` is 0), by multiply-shift rather than a division.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An integer in `[low, high]`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let index = self.below(items.len() as u64) as usize;
        items.get(index).copied().unwrap_or_default()
    }

    fn weighted<T: Copy + Default>(&mut self, items: &[(T, u32)]) -> T {
        let total: u32 = items.iter().map(|(_, weight)| weight).sum();
        let mut draw = self.below(u64::from(total)) as u32;
        for &(item, weight) in items {
            if draw < weight {
                return item;
            }
            draw -= weight;
        }
        T::default()
    }

    /// `-ln(1 - random()) * mean`, as Python's `expovariate(1 / mean)`.
    fn exponential(&mut self, mean: f64) -> f64 {
        -(1.0 - self.unit()).ln() * mean
    }

    /// `gen_logs.py`'s skewed pick of a page: `min(int(random() ** 3 * len), len - 1)`.
    fn page(&mut self) -> Page {
        let index = ((self.unit().powi(3) * PAGES as f64) as u64).min(PAGES - 1);
        let fixed = FIXED_PAGES.len() as u64;
        if index < fixed {
            Page::Fixed(FIXED_PAGES.get(index as usize).copied().unwrap_or("/"))
        } else if index < fixed + PRODUCTS {
            Page::Product(index - fixed + 1)
        } else {
            let category = (index - fixed - PRODUCTS) as usize;
            Page::Category(CATEGORIES.get(category).copied().unwrap_or_default())
        }
    }
}

/// A page of the page list, written without building its text.
#[derive(Debug, Clone, Copy)]
enum Page {
    Fixed(&'static str),
    Product(u64),
    Category(&'static str),
}

impl Page {
    fn write(self, out: &mut BytesMut) {
        match self {
            Page::Fixed(path) => out.extend_from_slice(path.as_bytes()),
            Page::Product(n) => {
                out.extend_from_slice(b"/product/");
                put_uint(out, n, 1);
            }
            Page::Category(name) => {
                out.extend_from_slice(b"/category/");
                out.extend_from_slice(name.as_bytes());
            }
        }
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits (at most 20).
fn put_uint(out: &mut BytesMut, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.extend_from_slice(&digits[start..]);
}

/// Appends `units / 10^decimals` with exactly `decimals` decimals, like `{:.N}`.
fn put_fixed(out: &mut BytesMut, units: u64, decimals: u32) {
    let scale = 10u64.pow(decimals);
    put_uint(out, units / scale, 1);
    out.extend_from_slice(b".");
    put_uint(out, units % scale, decimals as usize);
}

/// Appends a number of cents as Python prints `round(x, 2)`: `12.34`, `12.5`, `12.0`.
fn put_cents(out: &mut BytesMut, cents: u64) {
    if cents.is_multiple_of(10) {
        put_fixed(out, cents / 10, 1);
    } else {
        put_fixed(out, cents, 2);
    }
}

/// How a clock shows a second.
#[derive(Debug, Clone, Copy)]
enum TimeStyle {
    /// nginx `$time_local` without the zone: `01/May/2024:00:00:00`.
    Nginx,
    /// ISO 8601 without fraction or zone: `2024-05-01T00:00:00`.
    Iso,
}

/// The time of the last line, in whole microseconds, and the text of its second.
#[derive(Debug)]
struct Clock {
    micros: i64,
    max_step: u64,
    style: TimeStyle,
    /// The second `text` shows, once there is one.
    second: Option<i64>,
    text: BytesMut,
}

impl Clock {
    fn new(start_micros: i64, style: TimeStyle) -> Self {
        Clock {
            micros: start_micros,
            max_step: DEFAULT_MAX_STEP_MICROS,
            style,
            second: None,
            text: BytesMut::with_capacity(32),
        }
    }

    /// Moves on by `0..max_step` µs and returns the microseconds within the new second.
    fn advance(&mut self, rng: &mut Rng) -> u64 {
        let step = rng.below(self.max_step);
        self.micros = self.micros.saturating_add_unsigned(step);
        let second = self.micros.div_euclid(1_000_000);
        if self.second != Some(second) {
            self.format(second);
        }
        self.micros.rem_euclid(1_000_000).unsigned_abs()
    }

    fn format(&mut self, second: i64) {
        let time = DateTime::from_timestamp(second, 0).unwrap_or_default();
        let year = u64::try_from(time.year()).unwrap_or_default();
        let text = &mut self.text;
        text.clear();
        match self.style {
            TimeStyle::Nginx => {
                put_uint(text, time.day().into(), 2);
                text.extend_from_slice(b"/");
                let month = MONTHS.get(time.month0() as usize).copied();
                text.extend_from_slice(month.unwrap_or_default().as_bytes());
                text.extend_from_slice(b"/");
                put_uint(text, year, 1);
                text.extend_from_slice(b":");
            }
            TimeStyle::Iso => {
                put_uint(text, year, 4);
                text.extend_from_slice(b"-");
                put_uint(text, time.month().into(), 2);
                text.extend_from_slice(b"-");
                put_uint(text, time.day().into(), 2);
                text.extend_from_slice(b"T");
            }
        }
        put_uint(text, time.hour().into(), 2);
        text.extend_from_slice(b":");
        put_uint(text, time.minute().into(), 2);
        text.extend_from_slice(b":");
        put_uint(text, time.second().into(), 2);
        self.second = Some(second);
    }
}

/// What a [`SampleLines`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// nginx access lines: `combined` followed by `$request_time` (seconds, 3 decimals) and a
    /// request id counting from `req-0000000001`.
    Nginx,
    /// NDJSON clickstream events, compact, keys in `gen_logs.py`'s order, event ids counting from
    /// `evt-0000000001`.
    Events,
}

/// Writes sample lines of one [`SampleFormat`], one at a time, into the caller's buffer.
///
/// ```
/// # use sluice_pipelines::synthetic::{SampleFormat, SampleLines};
/// let start = 1_714_521_600_000_000; // 2024-05-01T00:00:00Z
/// let mut out = bytes::BytesMut::new();
/// SampleLines::new(SampleFormat::Nginx, 1, start).write_next(&mut out);
/// let line = std::str::from_utf8(&out).unwrap_or_default();
/// assert!(line.contains(" [01/May/2024:00:00:00 +0000] \""));
/// assert!(line.ends_with(" req-0000000001"));
///
/// out.clear();
/// SampleLines::new(SampleFormat::Events, 1, start).write_next(&mut out);
/// assert!(out.starts_with(b"{\"ts\":\"2024-05-01T00:00:00."));
/// ```
#[derive(Debug)]
pub struct SampleLines {
    format: SampleFormat,
    rng: Rng,
    clock: Clock,
    written: u64,
}

impl SampleLines {
    /// Lines of `format` for `seed`, the first one up to 10 ms after `start_micros` (unix
    /// microseconds).
    pub fn new(format: SampleFormat, seed: u64, start_micros: i64) -> Self {
        let style = match format {
            SampleFormat::Nginx => TimeStyle::Nginx,
            SampleFormat::Events => TimeStyle::Iso,
        };
        SampleLines {
            format,
            rng: Rng(seed),
            clock: Clock::new(start_micros, style),
            written: 0,
        }
    }

    /// Spaces lines `0..max_step_micros` apart instead of up to 10 ms (at least 1 µs).
    #[must_use]
    pub fn with_max_step(mut self, max_step_micros: u64) -> Self {
        self.clock.max_step = max_step_micros.max(1);
        self
    }

    /// How many lines have been written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the next line, without a newline, to `out`.
    pub fn write_next(&mut self, out: &mut BytesMut) {
        match self.format {
            SampleFormat::Nginx => self.write_nginx(out),
            SampleFormat::Events => self.write_event(out),
        }
    }

    fn write_nginx(&mut self, out: &mut BytesMut) {
        let rng = &mut self.rng;
        self.clock.advance(rng);
        self.written += 1;
        put_uint(out, rng.between(1, 223), 1);
        for (low, high) in [(0, 255), (0, 255), (1, 254)] {
            out.extend_from_slice(b".");
            put_uint(out, rng.between(low, high), 1);
        }
        if rng.unit() < 0.9 {
            out.extend_from_slice(b" - - [");
        } else {
            out.extend_from_slice(b" - u");
            put_uint(out, rng.between(1, 50_000), 1);
            out.extend_from_slice(b" [");
        }
        out.extend_from_slice(&self.clock.text);
        out.extend_from_slice(b" +0000] \"");
        out.extend_from_slice(rng.weighted(&METHODS).as_bytes());
        out.extend_from_slice(b" ");
        let page = rng.page();
        page.write(out);
        if matches!(page, Page::Fixed("/search")) {
            out.extend_from_slice(b"?q=");
            out.extend_from_slice(rng.pick(&SEARCH_PARAMS).as_bytes());
        }
        out.extend_from_slice(b" HTTP/1.1\" ");
        let status = rng.weighted(&STATUSES);
        put_uint(out, status.into(), 3);
        out.extend_from_slice(b" ");
        let size = if matches!(status, 304 | 301 | 302) {
            0
        } else {
            rng.between(120, 90_000)
        };
        put_uint(out, size, 1);
        out.extend_from_slice(b" \"");
        out.extend_from_slice(rng.pick(&REFERERS).as_bytes());
        out.extend_from_slice(b"\" \"");
        let agent = if rng.unit() < 0.08 {
            rng.pick(&BOTS)
        } else {
            rng.pick(&AGENTS)
        };
        out.extend_from_slice(agent.as_bytes());
        out.extend_from_slice(b"\" ");
        let request_millis = (rng.exponential(0.045) * 1e3).round() as u64;
        put_fixed(out, request_millis, 3);
        out.extend_from_slice(b" req-");
        put_uint(out, self.written, 10);
    }

    fn write_event(&mut self, out: &mut BytesMut) {
        let rng = &mut self.rng;
        let micros = self.clock.advance(rng);
        self.written += 1;
        out.extend_from_slice(b"{\"ts\":\"");
        out.extend_from_slice(&self.clock.text);
        out.extend_from_slice(b".");
        put_uint(out, micros / 1000, 3);
        out.extend_from_slice(b"Z\",\"event_id\":\"evt-");
        put_uint(out, self.written, 10);
        out.extend_from_slice(b"\",\"user_id\":\"u");
        put_uint(out, (rng.unit().powi(2) * 50_000.0) as u64, 1);
        out.extend_from_slice(b"\",\"session_id\":\"s");
        put_uint(out, rng.between(1, 200_000), 6);
        out.extend_from_slice(b"\",\"event\":\"");
        let event = rng.weighted(&EVENTS);
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(b"\",\"page\":\"");
        rng.page().write(out);
        out.extend_from_slice(b"\",\"country\":\"");
        out.extend_from_slice(rng.pick(&COUNTRIES).as_bytes());
        out.extend_from_slice(b"\",\"device\":\"");
        out.extend_from_slice(rng.pick(&DEVICES).as_bytes());
        out.extend_from_slice(b"\",\"latency_ms\":");
        put_fixed(out, (rng.exponential(80.0) * 10.0).round() as u64, 1);
        match event {
            "purchase" => {
                out.extend_from_slice(b",\"amount\":");
                put_cents(out, ((5.0 + 495.0 * rng.unit()) * 100.0).round() as u64);
                out.extend_from_slice(b",\"currency\":\"USD\"");
            }
            "search" => {
                out.extend_from_slice(b",\"query\":\"");
                out.extend_from_slice(rng.pick(&QUERIES).as_bytes());
                out.extend_from_slice(b"\"");
            }
            _ => {}
        }
        out.extend_from_slice(b"}");
    }
}

/// When [`write_sample`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleLimit {
    /// Once at least this many bytes are written: the line that reaches it is written whole, so
    /// the output is a little longer (as `gen_logs.py --mb` does).
    Bytes(u64),
    /// After this many lines.
    Lines(u64),
}

/// What [`write_sample`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleWritten {
    /// Lines written, each ended by `\n`.
    pub lines: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
}

/// Writes lines from `lines`, each followed by `\n`, to `out` until `limit` is reached, in
/// chunks of about 1 MiB (so `out` needs no buffering of its own). The same
/// [`SampleLines`] and limit always give the same bytes.
///
/// # Errors
/// The first error of `out`; what was written before it stays written.
pub fn write_sample(
    lines: &mut SampleLines,
    limit: SampleLimit,
    out: &mut impl Write,
) -> io::Result<SampleWritten> {
    const CHUNK: usize = 1 << 20;
    let mut written = SampleWritten::default();
    let mut chunk = BytesMut::with_capacity(CHUNK + 4096);
    let done = |written: &SampleWritten| match limit {
        SampleLimit::Bytes(bytes) => written.bytes >= bytes,
        SampleLimit::Lines(count) => written.lines >= count,
    };
    while !done(&written) {
        let before = chunk.len();
        lines.write_next(&mut chunk);
        chunk.extend_from_slice(b"\n");
        written.lines += 1;
        written.bytes += (chunk.len() - before) as u64;
        if chunk.len() >= CHUNK {
            out.write_all(&chunk)?;
            chunk.clear();
        }
    }
    out.write_all(&chunk)?;
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        write(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn numbers_print_as_the_script_prints_them() {
        assert_eq!(text(|out| put_uint(out, 0, 1)), "0");
        assert_eq!(text(|out| put_uint(out, 42, 6)), "000042");
        assert_eq!(text(|out| put_uint(out, 1234567, 3)), "1234567");
        assert_eq!(
            text(|out| put_uint(out, u64::MAX, 30)),
            u64::MAX.to_string()
        );
        assert_eq!(text(|out| put_fixed(out, 51, 3)), "0.051");
        assert_eq!(text(|out| put_fixed(out, 12_345, 3)), "12.345");
        assert_eq!(text(|out| put_fixed(out, 600, 1)), "60.0");
        // round(x, 2) as Python prints it: no trailing zero after the first decimal.
        for (cents, expected) in [
            (1234, "12.34"),
            (1250, "12.5"),
            (1200, "12.0"),
            (1205, "12.05"),
        ] {
            assert_eq!(text(|out| put_cents(out, cents)), expected);
        }
    }

    #[test]
    fn the_second_text_follows_the_clock_across_days() {
        // 2024-12-31T23:59:59.999 with steps of at most 2 ms: the year turns within a few lines.
        let start = 1_735_689_599_999_000;
        let mut nginx = SampleLines::new(SampleFormat::Nginx, 5, start).with_max_step(2000);
        let mut events = SampleLines::new(SampleFormat::Events, 5, start).with_max_step(2000);
        let lines: Vec<String> = (0..5).map(|_| text(|out| nginx.write_next(out))).collect();
        let json: Vec<String> = (0..5).map(|_| text(|out| events.write_next(out))).collect();
        assert!(
            lines[4].contains(" [01/Jan/2025:00:00:00 +0000] "),
            "{}",
            lines[4]
        );
        assert!(
            json[4].starts_with("{\"ts\":\"2025-01-01T00:00:00.00"),
            "{}",
            json[4]
        );
        for line in &lines {
            assert!(line.contains("/Dec/2024:23:59:59 ") || line.contains("/Jan/2025:00:00:00 "));
        }
        assert_eq!((nginx.written(), events.written()), (5, 5));
    }

    #[test]
    fn same_seed_same_bytes() {
        let run = |seed| {
            let mut lines = SampleLines::new(SampleFormat::Nginx, seed, 0);
            let mut events = SampleLines::new(SampleFormat::Events, seed, 0);
            let mut out = BytesMut::new();
            for _ in 0..200 {
                lines.write_next(&mut out);
                events.write_next(&mut out);
            }
            out
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn write_sample_stops_at_its_limit_with_whole_lines() {
        let sample = |limit| {
            let mut out = Vec::new();
            let mut lines = SampleLines::new(SampleFormat::Events, 2, 0);
            let written = write_sample(&mut lines, limit, &mut out).unwrap();
            assert_eq!(written.bytes, out.len() as u64);
            assert_eq!(lines.written(), written.lines);
            (written, out)
        };
        let (by_lines, lines_out) = sample(SampleLimit::Lines(3000));
        assert_eq!(by_lines.lines, 3000);
        assert_eq!(lines_out.iter().filter(|&&b| b == b'\n').count(), 3000);
        assert!(lines_out.ends_with(b"}\n"));
        // More than one chunk, ending on the line that crossed the limit.
        let limit = (1 << 20) + 12_345;
        let (by_bytes, bytes_out) = sample(SampleLimit::Bytes(limit));
        assert!(by_bytes.bytes >= limit);
        let last = bytes_out[..bytes_out.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap();
        assert!((last as u64) < limit, "one line past the limit, not more");
        // The same bytes as the first lines of a longer run.
        assert_eq!(&bytes_out[..lines_out.len()], &lines_out[..]);
        assert_eq!(sample(SampleLimit::Bytes(limit)).1, bytes_out);
        assert_eq!(sample(SampleLimit::Lines(0)).1, b"");
    }

    #[test]
    fn picks_cover_every_value_and_respect_weights() {
        let mut rng = Rng(9);
        let mut statuses = std::collections::BTreeMap::new();
        let mut pages = [0u32; 3];
        for _ in 0..100_000 {
            *statuses.entry(rng.weighted(&STATUSES)).or_insert(0u32) += 1;
            pages[match rng.page() {
                Page::Fixed(_) => 0,
                Page::Product(n) => {
                    assert!((1..=PRODUCTS).contains(&n));
                    1
                }
                Page::Category(name) => {
                    assert!(CATEGORIES.contains(&name));
                    2
                }
            }] += 1;
            assert!((1..=3).contains(&rng.between(1, 3)));
        }
        assert_eq!(statuses.len(), STATUSES.len());
        // 80 in 100 are 200s.
        assert!((79_000..81_000).contains(&statuses[&200]), "{statuses:?}");
        assert!(pages.iter().all(|&n| n > 0), "{pages:?}");
    }
}
