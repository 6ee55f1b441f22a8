//! Joining the lines of one event (a stack trace) into one line.
//!
//! Two ways to say where an event starts, as the `multiline` table of the file source:
//! - `start_pattern`: a line matching it starts a new event; other lines continue the current
//!   one (`'^\d{4}-\d{2}-\d{2}'` for timestamped logs).
//! - `continuation_pattern`: a line matching it continues the current event; other lines start
//!   a new one (`'^\s'` for indented stack frames).
//!
//! The lines of an event are joined with `\n`. An event is emitted when the next one starts, or
//! when no line came for `timeout` (the last event of a file that stopped growing), or when its
//! file ends. An event longer than `max_line_bytes` is cut there, flagged truncated, and its
//! further lines dropped (still counted as its part). The patterns run on raw bytes, so invalid
//! UTF-8 cannot stop them.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use regex::bytes::Regex;

use crate::sources::lines::Line;

/// How events are told apart.
#[derive(Clone, Debug)]
pub enum Rule {
    /// A matching line starts an event.
    Start(Regex),
    /// A matching line continues the current event.
    Continuation(Regex),
}

/// Settings of [`Multiline`].
#[derive(Clone, Debug)]
pub struct MultilineSettings {
    /// Where events start.
    pub rule: Rule,
    /// How long a held event waits for a continuation line.
    pub timeout: Duration,
}

/// The event being gathered.
#[derive(Debug)]
struct Held {
    first: Bytes,
    /// Set once a second line was added: the joined text.
    joined: Option<BytesMut>,
    offset: u64,
    truncated: bool,
    last_line_at: Instant,
}

impl Held {
    fn len(&self) -> usize {
        self.joined.as_ref().map_or(self.first.len(), BytesMut::len)
    }

    fn into_line(self) -> Line {
        Line {
            bytes: self.joined.map_or(self.first, BytesMut::freeze),
            offset: self.offset,
            truncated: self.truncated,
        }
    }
}

/// Gathers the lines of one file into events.
#[derive(Debug)]
pub struct Multiline {
    settings: MultilineSettings,
    max_bytes: usize,
    held: Option<Held>,
}

impl Multiline {
    /// An empty gatherer; events longer than `max_bytes` are cut.
    pub fn new(settings: MultilineSettings, max_bytes: usize) -> Self {
        Multiline {
            settings,
            max_bytes,
            held: None,
        }
    }

    /// Adds `line`, read at `now`; returns the event it completed, if any.
    pub fn push(&mut self, line: Line, now: Instant) -> Option<Line> {
        let continues = match &self.settings.rule {
            Rule::Start(pattern) => !pattern.is_match(&line.bytes),
            Rule::Continuation(pattern) => pattern.is_match(&line.bytes),
        };
        match &mut self.held {
            Some(held) if continues => {
                held.last_line_at = now;
                held.truncated |= line.truncated;
                if held.len() >= self.max_bytes {
                    held.truncated = true;
                    return None;
                }
                let joined = held.joined.get_or_insert_with(|| {
                    let mut joined =
                        BytesMut::with_capacity(held.first.len() + line.bytes.len() + 1);
                    joined.extend_from_slice(&held.first);
                    joined
                });
                joined.extend_from_slice(b"\n");
                let room = self.max_bytes.saturating_sub(joined.len());
                if line.bytes.len() > room {
                    joined.extend_from_slice(&line.bytes[..room]);
                    held.truncated = true;
                } else {
                    joined.extend_from_slice(&line.bytes);
                }
                None
            }
            _ => {
                let done = self.held.take().map(Held::into_line);
                self.held = Some(Held {
                    first: line.bytes,
                    joined: None,
                    offset: line.offset,
                    truncated: line.truncated,
                    last_line_at: now,
                });
                done
            }
        }
    }

    /// Takes the held event.
    pub fn flush(&mut self) -> Option<Line> {
        self.held.take().map(Held::into_line)
    }

    /// Takes the held event if no line came for the timeout.
    pub fn flush_if_due(&mut self, now: Instant) -> Option<Line> {
        match &self.held {
            Some(held)
                if now.saturating_duration_since(held.last_line_at) >= self.settings.timeout =>
            {
                self.flush()
            }
            _ => None,
        }
    }

    /// When the held event times out, if one is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.held
            .as_ref()
            .map(|held| held.last_line_at + self.settings.timeout)
    }

    /// The offset of the held event's first line: reading must start there again after a
    /// restart, since the event was not emitted.
    pub fn held_offset(&self) -> Option<u64> {
        self.held.as_ref().map(|held| held.offset)
    }

    /// Drops the held event (its file was truncated: the copy, if any, is read again).
    pub fn clear(&mut self) {
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, offset: u64) -> Line {
        Line {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            offset,
            truncated: false,
        }
    }

    fn run(rule: Rule, max: usize, lines: &[&str]) -> Vec<(String, u64, bool)> {
        let now = Instant::now();
        let mut multiline = Multiline::new(
            MultilineSettings {
                rule,
                timeout: Duration::from_secs(1),
            },
            max,
        );
        let mut out = Vec::new();
        let mut offset = 0;
        for text in lines {
            out.extend(multiline.push(line(text, offset), now));
            offset += text.len() as u64 + 1;
        }
        out.extend(multiline.flush());
        out.into_iter()
            .map(|l| {
                (
                    String::from_utf8(l.bytes.to_vec()).unwrap(),
                    l.offset,
                    l.truncated,
                )
            })
            .collect()
    }

    #[test]
    fn start_pattern_groups_following_lines() {
        let rule = Rule::Start(Regex::new(r"^\d").unwrap());
        let got = run(
            rule,
            100,
            &["orphan", "1 error", "  at a", "  at b", "2 ok"],
        );
        assert_eq!(
            got,
            [
                ("orphan".into(), 0, false),
                ("1 error\n  at a\n  at b".into(), 7, false),
                ("2 ok".into(), 29, false)
            ]
        );
    }

    #[test]
    fn continuation_pattern_and_cut_events() {
        let rule = Rule::Continuation(Regex::new(r"^\s").unwrap());
        let got = run(rule, 12, &["Exception", " at a.b", " at c.d", "next"]);
        assert_eq!(
            got,
            [
                ("Exception\n a".into(), 0, true),
                ("next".into(), 26, false)
            ]
        );
    }

    #[test]
    fn held_events_time_out() {
        let start = Instant::now();
        let mut multiline = Multiline::new(
            MultilineSettings {
                rule: Rule::Start(Regex::new("^S").unwrap()),
                timeout: Duration::from_millis(100),
            },
            100,
        );
        assert!(multiline.push(line("S one", 10), start).is_none());
        assert_eq!(multiline.held_offset(), Some(10));
        assert_eq!(
            multiline.deadline(),
            Some(start + Duration::from_millis(100))
        );
        assert!(
            multiline
                .flush_if_due(start + Duration::from_millis(50))
                .is_none()
        );
        let done = multiline
            .flush_if_due(start + Duration::from_millis(100))
            .unwrap();
        assert_eq!(&done.bytes[..], b"S one");
        assert_eq!(multiline.held_offset(), None);
    }
}
