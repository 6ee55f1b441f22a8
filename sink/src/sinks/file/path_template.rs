//! `path` as a template: strftime specifiers expanded with each event's time, `{field}`s with
//! its (sanitized) values.

use super::*;

/// One piece of a path template.
#[derive(Debug, Clone)]
pub(super) enum Piece {
    /// Literal text with strftime specifiers, or `None` items when it has none.
    Time {
        text: String,
        items: Option<Vec<Item<'static>>>,
    },
    /// An event field, by path.
    Field(Vec<String>),
}

/// A parsed `path`.
#[derive(Debug, Clone)]
pub(super) struct PathTemplate {
    pub(super) template: String,
    pub(super) pieces: Vec<Piece>,
}

impl PathTemplate {
    pub(super) fn parse(template: &str) -> Result<Self, BuildError> {
        if template.is_empty() {
            return Err(BuildError::at("path", "must not be empty"));
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let (literal, after) = match rest.find(['{', '}']) {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            if !literal.is_empty() {
                pieces.push(Self::time_piece(template, literal)?);
            }
            rest = after;
            if rest.starts_with('}') {
                return Err(BuildError::at(
                    "path",
                    format!("{template:?} has a `}}` without `{{`; braces are reserved for fields"),
                ));
            }
            if let Some(inner) = rest.strip_prefix('{') {
                let Some(end) = inner.find('}') else {
                    return Err(BuildError::at(
                        "path",
                        format!("{template:?} has a `{{` without `}}`"),
                    ));
                };
                let name = &inner[..end];
                if name.is_empty()
                    || name.contains(['{', '/', '%'])
                    || name.split('.').any(str::is_empty)
                {
                    return Err(BuildError::at(
                        "path",
                        format!("{template:?} has an invalid field placeholder {{{name}}}"),
                    ));
                }
                pieces.push(Piece::Field(name.split('.').map(str::to_owned).collect()));
                rest = &inner[end + 1..];
            }
        }
        let parsed = PathTemplate {
            template: template.to_owned(),
            pieces,
        };
        let sample = parsed
            .render(
                DateTime::<Utc>::UNIX_EPOCH,
                &Event::default(),
                &mut String::new(),
            )
            .map_err(|_| parsed.format_error())?;
        let text = sample.to_string_lossy();
        let file_name = text
            .rsplit(['/', std::path::MAIN_SEPARATOR])
            .next()
            .unwrap_or_default();
        if matches!(file_name.trim(), "" | "." | "..") {
            return Err(BuildError::at(
                "path",
                format!("{template:?} expands to {text:?}, which names no file"),
            ));
        }
        Ok(parsed)
    }

    pub(super) fn time_piece(template: &str, literal: &str) -> Result<Piece, BuildError> {
        let items = if literal.contains('%') {
            let items = StrftimeItems::new(literal).parse_to_owned().map_err(|_| {
                BuildError::at(
                    "path",
                    format!(
                        "{template:?} has an invalid strftime specifier (write %% for a literal %)"
                    ),
                )
            })?;
            Some(items)
        } else {
            None
        };
        Ok(Piece::Time {
            text: literal.to_owned(),
            items,
        })
    }

    pub(super) fn has_fields(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Field(_)))
    }

    /// Whether the template has strftime specifiers (so paths follow the events' time).
    pub(super) fn has_time(&self) -> bool {
        self.pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Time { items: Some(_), .. }))
    }

    /// Whether a specifier shows fractions of a second (`%f`, `%.3f`…): then two events of the
    /// same second may still go to different files.
    pub(super) fn has_subseconds(&self) -> bool {
        use chrono::format::Fixed;
        self.pieces.iter().any(|piece| match piece {
            Piece::Time {
                items: Some(items), ..
            } => items.iter().any(|item| {
                matches!(
                    item,
                    Item::Fixed(
                        Fixed::Nanosecond
                            | Fixed::Nanosecond3
                            | Fixed::Nanosecond6
                            | Fixed::Nanosecond9
                            | Fixed::Internal(_)
                    )
                )
            }),
            _ => false,
        })
    }

    /// The directories before the first specifier or field of a templated path (`logs/` of
    /// `logs/%Y/{page}.log`), if any: created at build so an unusable place fails at startup.
    pub(super) fn fixed_dir(&self) -> Option<PathBuf> {
        if !self.has_fields() && !self.has_time() {
            return None;
        }
        let fixed = match self.pieces.first() {
            Some(Piece::Time { text, items: None }) => text.as_str(),
            Some(Piece::Time { text, .. }) => &text[..text.find('%').unwrap_or(0)],
            _ => "",
        };
        let dir = &fixed[..fixed
            .rfind(['/', std::path::MAIN_SEPARATOR])
            .map_or(0, |at| at + 1)];
        (!dir.is_empty()).then(|| PathBuf::from(dir))
    }

    /// The path for `now`, for a template without fields.
    pub(super) fn render_time(&self, now: DateTime<Utc>) -> Result<PathBuf, fmt::Error> {
        self.render(now, &Event::default(), &mut String::new())
    }

    /// The path for `now` and `event`; `scratch` is reused between calls.
    pub(super) fn render(
        &self,
        now: DateTime<Utc>,
        event: &Event,
        scratch: &mut String,
    ) -> Result<PathBuf, fmt::Error> {
        scratch.clear();
        for piece in &self.pieces {
            match piece {
                Piece::Time { text, items: None } => scratch.push_str(text),
                Piece::Time {
                    items: Some(items), ..
                } => write!(scratch, "{}", now.format_with_items(items.iter()))?,
                Piece::Field(path) => render_field(event, path, scratch),
            }
        }
        Ok(PathBuf::from(scratch.as_str()))
    }

    pub(super) fn format_error(&self) -> BuildError {
        BuildError::at("path", format!("{:?} cannot be formatted", self.template))
    }
}

/// Appends an event's field value to a path, sanitized to stay one path component.
pub(super) fn render_field(event: &Event, path: &[String], out: &mut String) {
    let start = out.len();
    append_field_value(event, path, out);
    if out.len() == start {
        out.push('_');
        return;
    }
    let value: String = out[start..]
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            '/' | '\\' | '\0' => '_',
            c if c.is_control() => '_',
            '.' if i == 0 => '_',
            c => c,
        })
        .collect();
    out.truncate(start);
    out.push_str(&value);
}

/// Appends the text of an event's field (by path; `message` falls back to the raw line) to
/// `out`, unsanitized: strings as they are, numbers and booleans as written in JSON,
/// timestamps in RFC 3339, arrays and maps as JSON; nothing for a missing or null field. The
/// templates of the `file` sink's paths and the `nats` sink's subjects share it, each
/// sanitizing the result its own way.
pub(crate) fn append_field_value(event: &Event, path: &[String], out: &mut String) {
    let value = if path.len() == 1 && path[0] == sluice_pipelines::event::MESSAGE {
        event.get_path(path).cloned().or_else(|| {
            event
                .raw()
                .map(|raw| Value::from(String::from_utf8_lossy(raw).as_ref()))
        })
    } else {
        event.get_path(path).cloned()
    };
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => out.push_str(text.as_str()),
        Some(Value::Int(n)) => {
            let _ = write!(out, "{n}");
        }
        Some(Value::Float(f)) => {
            let _ = write!(out, "{f}");
        }
        Some(Value::Bool(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(Value::Timestamp(ts)) => {
            out.push_str(&sluice_pipelines::codec::json::format_timestamp(&ts));
        }
        Some(other @ (Value::Array(_) | Value::Map(_))) => {
            let mut json = Vec::new();
            sluice_pipelines::codec::json::encode_value(&other, &mut json);
            out.push_str(&String::from_utf8_lossy(&json));
        }
    }
}
