//! Offsets: the position of an event in its topic.

use std::fmt;
use std::ops::Add;

/// The position of an event in a topic: the first event published gets 0, the next 1, and so on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Offset(pub u64);

impl Add<u64> for Offset {
    type Output = Offset;
    fn add(self, events: u64) -> Offset {
        Offset(self.0 + events)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A half-open range of offsets, `start..end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct OffsetRange {
    /// The first offset in the range.
    pub start: Offset,
    /// One past the last offset in the range.
    pub end: Offset,
}

impl OffsetRange {
    /// The range `start..end`.
    pub fn new(start: Offset, end: Offset) -> Self {
        OffsetRange { start, end }
    }

    /// How many offsets the range covers.
    pub fn len(&self) -> u64 {
        self.end.0 - self.start.0
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}
