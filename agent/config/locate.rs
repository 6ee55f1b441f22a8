//! Positions of keys: resolving a [`KeyPath`] to the line and column where a file writes it.
//!
//! `serde`, the `config` crate and validation all speak in key paths; only the TOML parser knows
//! where each key is. [`SpanIndex`] keeps, for one file, a tree of every key with the position of
//! the key itself (for a table written as a `[header]`, the header's last key; for an array
//! element, the element). Positions are computed once, on the original text (before `${VAR}`
//! interpolation), so columns after an interpolated value on the same line are still right.

use std::collections::HashMap;
use std::fmt;

use toml::de::{DeTable, DeValue};

use super::interpolate::Interpolated;
use super::path::{KeyPath, Segment};

/// A 1-based line and column (in characters) in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, counted in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Turns byte offsets of a text into [`Position`]s.
#[derive(Debug, Clone)]
pub(super) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the lines of `text`.
    pub(super) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|at| at + 1));
        LineIndex { text, line_starts }
    }

    /// The position of byte `offset` (clamped to the text).
    pub(super) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        Position {
            line: line.max(1),
            column: column + 1,
        }
    }
}

/// Where every key of one file is.
#[derive(Debug, Clone, Default)]
pub(super) struct SpanIndex {
    root: Children,
}

#[derive(Debug, Clone)]
struct Node {
    /// Where the key (or array element) is written.
    position: Position,
    /// Byte offset of the same, to order keys as written.
    offset: usize,
    children: Children,
}

#[derive(Debug, Clone, Default)]
enum Children {
    #[default]
    Leaf,
    Table(HashMap<String, Node>),
    Array(Vec<Node>),
}

impl SpanIndex {
    /// Indexes `document`, parsed from `interpolated.text`; positions refer to `original`.
    pub(super) fn new(document: &DeTable<'_>, interpolated: &Interpolated, original: &str) -> Self {
        let lines = LineIndex::new(original);
        let mut map = |offset: usize| {
            let offset = interpolated.original_offset(offset);
            (lines.position(offset), offset)
        };
        SpanIndex {
            root: table_children(document, &mut map),
        }
    }

    /// Resolves `path` as far as this file has it: how many segments matched, and the position of
    /// the deepest one that did. `None` when not even the first segment is in the file.
    pub(super) fn locate(&self, path: &KeyPath) -> Option<(usize, Position, usize)> {
        let mut children = &self.root;
        let mut found = None;
        for (depth, segment) in path.segments().iter().enumerate() {
            let node = match (children, segment) {
                (Children::Table(table), Segment::Key(key)) => table.get(key),
                (Children::Array(items), Segment::Index(index)) => items.get(*index),
                _ => None,
            };
            let Some(node) = node else {
                break;
            };
            found = Some((depth + 1, node.position, node.offset));
            children = &node.children;
        }
        found
    }
}

fn table_children(
    table: &DeTable<'_>,
    map: &mut dyn FnMut(usize) -> (Position, usize),
) -> Children {
    let mut nodes = HashMap::with_capacity(table.len());
    for (key, value) in table {
        let (position, offset) = map(key.span().start);
        let children = value_children(value.get_ref(), map);
        nodes.insert(
            key.get_ref().to_string(),
            Node {
                position,
                offset,
                children,
            },
        );
    }
    Children::Table(nodes)
}

fn value_children(
    value: &DeValue<'_>,
    map: &mut dyn FnMut(usize) -> (Position, usize),
) -> Children {
    match value {
        DeValue::Table(table) => table_children(table, map),
        DeValue::Array(items) => Children::Array(
            items
                .iter()
                .map(|item| {
                    let (position, offset) = map(item.span().start);
                    Node {
                        position,
                        offset,
                        children: value_children(item.get_ref(), map),
                    }
                })
                .collect(),
        ),
        _ => Children::Leaf,
    }
}
