//! Why events were rejected, per component: counted by kind, logged rate-limited, and listed in
//! the run summary, so a run that rejects every line says so and says why.
//!
//! A rejection's *kind* is its reason with what varies from event to event left out: runs of
//! digits become `N` and text in backticks becomes `…`, so `nginx_combined: unexpected text
//! after the user agent at column 151` and `… at column 163` are one kind. The first rejection of
//! each kind is logged at WARN with its full reason and where the event went; after that at most
//! one line per kind every [`LOG_INTERVAL`], with the count since the last line. A component
//! keeps at most [`MAX_KINDS`] kinds; rarer ones are counted under [`OTHER_KIND`].
//!
//! Components record per batch ([`Rejections::record`] takes every reason of a batch under one
//! lock), and only for events that were rejected: the path of good events is untouched.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use indexmap::IndexMap;
use parking_lot::Mutex;
use tokio::time::Instant;

/// How often a kind that keeps being rejected is logged again, at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Most kinds kept per component.
pub const MAX_KINDS: usize = 32;

/// The kind that counts rejections once a component has [`MAX_KINDS`] kinds.
pub const OTHER_KIND: &str = "other reasons";

/// Longest kind kept, in bytes.
const MAX_KIND_BYTES: usize = 200;

/// Where a component's rejected events go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Into this dead-letter topic.
    Topic(String),
    /// Nowhere: counted and dropped, for the reason given (`on_error = "drop"`).
    Dropped(&'static str),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Topic(topic) => write!(f, "the dead-letter topic `{topic}`"),
            Destination::Dropped(why) => write!(f, "nowhere: dropped ({why})"),
        }
    }
}

/// One kind of rejection, as reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    /// The reason with its varying parts left out.
    pub kind: String,
    /// The first full reason of this kind.
    pub example: String,
    /// How many events were rejected for it.
    pub count: u64,
}

/// A kind whose log line is due: counted `before` when last logged (0: never), `total` now.
#[derive(Debug, PartialEq, Eq)]
struct Due {
    kind: String,
    example: String,
    before: u64,
    total: u64,
}

#[derive(Debug)]
struct State {
    example: String,
    count: u64,
    /// The count when it was last logged (0: never).
    logged: u64,
    logged_at: Option<Instant>,
}

/// The rejections of one component. See the module doc.
#[derive(Debug, Default)]
pub struct Rejections {
    destination: OnceLock<Destination>,
    kinds: Mutex<IndexMap<String, State>>,
}

impl Rejections {
    /// Says where this component's rejected events go (set once, when it is built).
    pub fn set_destination(&self, destination: Destination) {
        let _ = self.destination.set(destination);
    }

    /// Where this component's rejected events go, if it was said.
    pub fn destination(&self) -> Option<&Destination> {
        self.destination.get()
    }

    /// Counts one rejected event per reason and logs what is due. Each reason is `(place,
    /// error)`: `place` names where in the component it failed (a pipeline's step, `""` when the
    /// component is the place).
    pub fn record<'a>(
        &self,
        component: &str,
        reasons: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let due = self.count(reasons);
        if due.is_empty() {
            return;
        }
        let destination = self
            .destination()
            .map_or_else(|| "the dead-letter topic".to_owned(), ToString::to_string);
        for due in due {
            if due.before == 0 {
                tracing::warn!(component = %component, reason = %due.example, rejected = due.total,
                    to = %destination,
                    "Event rejected; the first of its kind is logged, then a count every minute");
            } else {
                tracing::warn!(component = %component, kind = %due.kind,
                    rejected = due.total - due.before, total = due.total, to = %destination,
                    "Events still rejected");
            }
        }
    }

    /// Counts the reasons and returns the kinds whose log line is due.
    fn count<'a>(&self, reasons: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Due> {
        let mut kinds = self.kinds.lock();
        let mut kind = String::new();
        for (place, error) in reasons {
            kind_of(place, error, &mut kind);
            if !kinds.contains_key(kind.as_str()) && kinds.len() >= MAX_KINDS {
                kind.clear();
                kind.push_str(OTHER_KIND);
            }
            match kinds.get_mut(kind.as_str()) {
                Some(state) => state.count += 1,
                None => {
                    let example = if place.is_empty() {
                        error.to_owned()
                    } else {
                        format!("{place}: {error}")
                    };
                    kinds.insert(
                        kind.clone(),
                        State {
                            example,
                            count: 1,
                            logged: 0,
                            logged_at: None,
                        },
                    );
                }
            }
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for (kind, state) in kinds.iter_mut() {
            let waited = state
                .logged_at
                .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL);
            if state.count > state.logged && waited {
                due.push(Due {
                    kind: kind.clone(),
                    example: state.example.clone(),
                    before: state.logged,
                    total: state.count,
                });
                state.logged = state.count;
                state.logged_at = Some(now);
            }
        }
        due
    }

    /// Every rejected event counted so far.
    pub fn total(&self) -> u64 {
        self.kinds.lock().values().map(|state| state.count).sum()
    }

    /// The `n` most frequent kinds, most frequent first (first seen first on ties).
    pub fn top(&self, n: usize) -> Vec<Kind> {
        let kinds = self.kinds.lock();
        let mut top: Vec<Kind> = kinds
            .iter()
            .map(|(kind, state)| Kind {
                kind: kind.clone(),
                example: state.example.clone(),
                count: state.count,
            })
            .collect();
        top.sort_by_key(|kind| std::cmp::Reverse(kind.count));
        top.truncate(n);
        top
    }
}

/// Writes the kind of `error` (at `place`) into `out`: digit runs as `N`, backticked text as
/// `…`, at most [`MAX_KIND_BYTES`].
fn kind_of(place: &str, error: &str, out: &mut String) {
    out.clear();
    if !place.is_empty() {
        out.push_str(place);
        out.push_str(": ");
    }
    let mut in_backticks = false;
    let mut in_digits = false;
    for c in error.chars() {
        if out.len() >= MAX_KIND_BYTES {
            out.push('…');
            return;
        }
        if in_backticks {
            if c == '`' {
                in_backticks = false;
                out.push_str("…`");
            }
            continue;
        }
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
                in_digits = true;
            }
            continue;
        }
        in_digits = false;
        out.push(c);
        if c == '`' {
            in_backticks = true;
        }
    }
    if in_backticks {
        out.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(place: &str, error: &str) -> String {
        let mut out = String::new();
        kind_of(place, error, &mut out);
        out
    }

    #[test]
    fn kinds_leave_out_numbers_and_quoted_values() {
        assert_eq!(
            kind(
                "steps[0] (parse)",
                "nginx_combined: unexpected text after the user agent at column 151"
            ),
            "steps[0] (parse): nginx_combined: unexpected text after the user agent at column N"
        );
        assert_eq!(
            kind("", "the status `abc` at column 12 is not a whole number"),
            "the status `…` at column N is not a whole number"
        );
        assert_eq!(kind("", "cut `short"), "cut `…");
        assert!(kind("", &"x".repeat(1000)).len() <= MAX_KIND_BYTES + '…'.len_utf8());
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_are_counted_by_kind_and_ranked() {
        let rejections = Rejections::default();
        rejections.set_destination(Destination::Topic("bad".into()));
        rejections.record("p", [("parse", "column 1"), ("parse", "column 2")]);
        rejections.record("p", [("filter", "boom"), ("parse", "column 30")]);
        assert_eq!(rejections.total(), 4);
        let top = rejections.top(5);
        assert_eq!(top.len(), 2);
        assert_eq!(
            (top[0].kind.as_str(), top[0].count, top[0].example.as_str()),
            ("parse: column N", 3, "parse: column 1")
        );
        assert_eq!((top[1].kind.as_str(), top[1].count), ("filter: boom", 1));
        assert_eq!(rejections.top(1).len(), 1);
        assert_eq!(
            rejections.destination().unwrap().to_string(),
            "the dead-letter topic `bad`"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_of_a_kind_is_logged_then_a_count_once_a_minute() {
        let rejections = Rejections::default();
        let logged = |due: Vec<Due>| -> Vec<(String, u64, u64)> {
            due.into_iter()
                .map(|due| (due.kind, due.before, due.total))
                .collect()
        };
        assert_eq!(
            logged(rejections.count([("", "bad 1"), ("", "bad 2")])),
            [("bad N".to_owned(), 0, 2)]
        );
        assert!(rejections.count([("", "bad 3")]).is_empty());
        // A new kind is logged at once, whatever the other kinds do.
        assert_eq!(
            logged(rejections.count([("", "worse")])),
            [("worse".to_owned(), 0, 1)]
        );
        tokio::time::advance(LOG_INTERVAL - Duration::from_millis(1)).await;
        assert!(rejections.count([("", "bad 4")]).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            logged(rejections.count([("", "bad 5")])),
            [("bad N".to_owned(), 2, 5)]
        );
        // Nothing new for a kind: nothing logged, however long ago it was.
        tokio::time::advance(LOG_INTERVAL * 3).await;
        assert_eq!(
            logged(rejections.count([("", "bad 6")])),
            [("bad N".to_owned(), 5, 6)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_are_capped() {
        let rejections = Rejections::default();
        let errors: Vec<String> = (0..MAX_KINDS + 5)
            .map(|i| format!("reason {}", "x".repeat(i)))
            .collect();
        rejections.record("p", errors.iter().map(|error| ("", error.as_str())));
        let top = rejections.top(usize::MAX);
        assert_eq!(top.len(), MAX_KINDS + 1);
        assert_eq!(top.iter().find(|k| k.kind == OTHER_KIND).unwrap().count, 5);
        assert_eq!(rejections.total(), (MAX_KINDS + 5) as u64);
    }
}
