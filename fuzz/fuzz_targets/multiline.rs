//! The multiline joiner (`agent/sources/file/multiline.rs`) on the lines of any input, cut by the
//! line splitter with the same limit, as the file source does.
//!
//! Input: `[rule and pattern choice, max_line_bytes - 1, data...]`.
//!
//! Invariants: the events are the groups a plain reference forms (a line starts an event when
//! nothing is held or the rule says so), in order, each at its first line's offset; an event's
//! text is its lines joined with `\n`, cut at the limit; it is flagged truncated exactly when a
//! line of it was or the joined text was longer than the limit; and no line is lost.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use regex::bytes::Regex;
use sluice::sources::file::multiline::{Multiline, MultilineSettings, Rule};
use sluice::sources::lines::{Line, LineFormat, LineSplitter};

const PATTERNS: [&str; 6] = [
    r"^\S",
    r"^\s",
    r"^\d{4}-\d{2}-\d{2}",
    r"^(at |\.\.\. |Caused by)",
    r"^$",
    r"\\$",
];

/// The patterns, compiled once (compiling one per input would be most of the time spent).
fn patterns() -> &'static [Regex] {
    static COMPILED: OnceLock<Vec<Regex>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        PATTERNS
            .iter()
            .map(|pattern| Regex::new(pattern).expect("the patterns are valid"))
            .collect()
    })
}

fuzz_target!(|input: &[u8]| {
    let [choice, max, data @ ..] = input else {
        return;
    };
    let pattern = &patterns()[usize::from(*choice >> 1) % PATTERNS.len()];
    let start_rule = choice & 1 == 0;
    let rule = if start_rule {
        Rule::Start(pattern.clone())
    } else {
        Rule::Continuation(pattern.clone())
    };
    let max = 1 + usize::from(*max % 96);
    let format = LineFormat::new("\n", max as u64).expect("a valid format");
    let mut splitter = LineSplitter::new(&format, 0);
    splitter.extend(data);
    let mut lines: Vec<Line> = Vec::new();
    while let Some(line) = splitter.finish() {
        lines.push(line);
    }

    let now = Instant::now();
    let mut multiline = Multiline::new(
        MultilineSettings {
            rule,
            timeout: Duration::from_secs(1),
        },
        max,
    );
    let mut events = Vec::new();
    for line in &lines {
        events.extend(multiline.push(line.clone(), now));
        assert!(multiline.flush_if_due(now).is_none());
        assert_eq!(multiline.deadline(), Some(now + Duration::from_secs(1)));
    }
    let held = multiline.held_offset();
    assert_eq!(held.is_some(), !lines.is_empty());
    events.extend(multiline.flush());
    assert!(multiline.flush().is_none() && multiline.held_offset().is_none());

    // The reference: group the lines, then join and cut each group.
    let mut groups: Vec<Vec<&Line>> = Vec::new();
    for line in &lines {
        let matches = pattern.is_match(&line.bytes);
        let continues = if start_rule { !matches } else { matches };
        match groups.last_mut() {
            Some(group) if continues => group.push(line),
            _ => groups.push(vec![line]),
        }
    }
    assert_eq!(events.len(), groups.len(), "events lost or split");
    for (event, group) in events.iter().zip(&groups) {
        let joined: Vec<u8> = group
            .iter()
            .map(|line| &line.bytes[..])
            .collect::<Vec<_>>()
            .join(&b'\n');
        let cut = &joined[..joined.len().min(max)];
        assert_eq!(event.offset, group[0].offset);
        assert_eq!(&event.bytes[..], cut, "{group:?}");
        let truncated = group.iter().any(|line| line.truncated) || joined.len() > max;
        assert_eq!(event.truncated, truncated, "{group:?}");
    }
});
