//! The `aggregate` step's config: keys, windows, and building the step.

use super::*;

/// Config of the `aggregate` step.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Fields (dotted paths) whose values define a group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// The windows: `"1m"` (tumbling) or a table with `type`.
    pub window: WindowConfig,
    /// Event time (the default) or processing time.
    #[serde(default)]
    pub time: TimeMode,
    /// The field with the event time; `timestamp` by default.
    #[serde(default)]
    pub time_field: Option<String>,
    /// How far behind the latest event time events may arrive; 0 by default.
    #[serde(default)]
    pub allowed_lateness: Option<HumanDuration>,
    /// Most groups per window.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
    /// The results: a name to a function call such as `count()` or `p95(request_time)`.
    pub fields: OrderedMap<String>,
}

pub(super) fn default_max_groups() -> usize {
    100_000
}

/// Which clock places events in windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeMode {
    /// The event's own time (`time_field`).
    #[default]
    Event,
    /// The time the event is processed.
    Processing,
}

/// The kind of windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowConfig {
    /// Back-to-back windows of `size`.
    Tumbling {
        /// Window length.
        size: HumanDuration,
    },
    /// Windows of `size` starting every `hop`.
    Hopping {
        /// Window length.
        size: HumanDuration,
        /// Time between window starts.
        hop: HumanDuration,
    },
    /// Per-group sessions ending `gap` after their last event.
    Session {
        /// The inactivity that ends a session.
        gap: HumanDuration,
    },
}

/// The table form of [`WindowConfig`].
#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum WindowTable {
    Tumbling {
        size: HumanDuration,
    },
    Hopping {
        size: HumanDuration,
        hop: HumanDuration,
    },
    Session {
        gap: HumanDuration,
    },
}

impl<'de> serde::Deserialize<'de> for WindowConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WindowVisitor;
        impl<'de> serde::de::Visitor<'de> for WindowVisitor {
            type Value = WindowConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"1m\" (tumbling windows) or a table such as \
                     { type = \"hopping\", size = \"5m\", hop = \"1m\" }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WindowConfig, E> {
                parse_duration(v)
                    .map(|size| WindowConfig::Tumbling {
                        size: HumanDuration(size),
                    })
                    .map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<WindowConfig, A::Error> {
                let table: WindowTable = serde::Deserialize::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(match table {
                    WindowTable::Tumbling { size } => WindowConfig::Tumbling { size },
                    WindowTable::Hopping { size, hop } => WindowConfig::Hopping { size, hop },
                    WindowTable::Session { gap } => WindowConfig::Session { gap },
                })
            }
        }
        deserializer.deserialize_any(WindowVisitor)
    }
}

/// Most windows one event may fall in (`size / hop`).
pub(super) const MAX_WINDOWS_PER_EVENT: i64 = 1000;

/// Nanoseconds of a duration, if it fits.
pub(super) fn nanos(key: &str, duration: HumanDuration) -> Result<i64, BuildError> {
    let nanos = i64::try_from(duration.get().as_nanos()).unwrap_or(i64::MAX);
    if nanos <= 0 {
        return Err(BuildError::at(
            key,
            format!("`{key}` must be longer than 0"),
        ));
    }
    if nanos > 100 * 365 * 86_400 * 1_000_000_000 {
        return Err(BuildError::at(
            key,
            format!("`{key}` must be at most 100 years"),
        ));
    }
    Ok(nanos)
}

impl AggregateConfig {
    /// Parses the functions, checks the windows and names, and interns the paths.
    ///
    /// # Errors
    /// A [`BuildError`] at the key at fault: `fields` (empty), `fields.<name>` (a bad function,
    /// or a name used twice or clashing with `window_start`, `window_end` or a `group_by` field),
    /// `group_by[<i>]`, `window.size` / `window.hop` / `window.gap` (zero, too long, a hop longer
    /// than the size or more than 1000 windows per event), `time_field` / `allowed_lateness`
    /// (given with processing time), `max_groups` (0).
    pub fn build(&self) -> Result<Aggregate, BuildError> {
        if self.fields.is_empty() {
            return Err(BuildError::at(
                "fields",
                "`fields` is empty: name at least one result, such as hits = \"count()\"",
            ));
        }
        let group_by = self
            .group_by
            .iter()
            .enumerate()
            .map(|(i, path)| parse_path(&format!("group_by[{i}]"), path))
            .collect::<Result<Vec<_>, _>>()?;
        let mut taken: Vec<Vec<FieldName>> = vec![
            vec![FieldName::new(WINDOW_START)],
            vec![FieldName::new(WINDOW_END)],
        ];
        for (i, path) in group_by.iter().enumerate() {
            if taken.contains(path) {
                return Err(BuildError::at(
                    format!("group_by[{i}]"),
                    format!(
                        "`{}` is named twice or clashes with the window fields",
                        join(path)
                    ),
                ));
            }
            taken.push(path.clone());
        }

        let mut stats: Vec<Stat> = Vec::new();
        let mut outputs = Vec::with_capacity(self.fields.0.len());
        for (name, spec) in self.fields.iter() {
            let key = format!("fields.{name}");
            let path = parse_path(&key, name)?;
            if taken.contains(&path) {
                return Err(BuildError::at(
                    &key,
                    format!(
                        "the result `{name}` would overwrite `window_start`, `window_end`, a \
                         `group_by` field or another result"
                    ),
                ));
            }
            taken.push(path.clone());
            let (function, arg) =
                functions::parse(spec).map_err(|message| BuildError::at(&key, message))?;
            let kind = function.stat();
            let arg_key = arg.as_ref().map(Arg::key);
            let stat = match stats
                .iter()
                .position(|stat| stat.kind == kind && stat.arg_key == arg_key)
            {
                Some(index) => index,
                None => {
                    stats.push(Stat { kind, arg, arg_key });
                    stats.len() - 1
                }
            };
            outputs.push(Output {
                path,
                stat,
                function,
            });
        }

        let window = match self.window {
            WindowConfig::Tumbling { size } => {
                let size = nanos("window.size", size)?;
                WindowKind::Fixed { size, hop: size }
            }
            WindowConfig::Hopping { size, hop } => {
                let (size, hop) = (nanos("window.size", size)?, nanos("window.hop", hop)?);
                if hop > size {
                    return Err(BuildError::at(
                        "window.hop",
                        "`hop` must not be longer than `size` (windows would leave gaps)",
                    ));
                }
                if (size as u64).div_ceil(hop as u64) > MAX_WINDOWS_PER_EVENT as u64 {
                    return Err(BuildError::at(
                        "window.hop",
                        format!(
                            "`size / hop` is above {MAX_WINDOWS_PER_EVENT}: each event would \
                             update that many windows"
                        ),
                    ));
                }
                WindowKind::Fixed { size, hop }
            }
            WindowConfig::Session { gap } => WindowKind::Session {
                gap: nanos("window.gap", gap)?,
            },
        };
        let time = match self.time {
            TimeMode::Event => TimeSource::Event {
                field: parse_path(
                    "time_field",
                    self.time_field
                        .as_deref()
                        .unwrap_or(crate::steps::parse::TIMESTAMP),
                )?,
                lateness: match self.allowed_lateness {
                    Some(lateness) => i64::try_from(lateness.get().as_nanos()).map_err(|_| {
                        BuildError::at("allowed_lateness", "`allowed_lateness` is too long")
                    })?,
                    None => 0,
                },
            },
            TimeMode::Processing => {
                for (key, given) in [
                    ("time_field", self.time_field.is_some()),
                    ("allowed_lateness", self.allowed_lateness.is_some()),
                ] {
                    if given {
                        return Err(BuildError::at(
                            key,
                            format!("`{key}` is only used with time = \"event\""),
                        ));
                    }
                }
                TimeSource::Processing
            }
        };
        if self.max_groups == 0 {
            return Err(BuildError::at(
                "max_groups",
                "`max_groups` must be at least 1",
            ));
        }
        let flat = group_by
            .iter()
            .chain(outputs.iter().map(|output| &output.path))
            .all(|path| path.len() == 1);
        let state = match window {
            WindowKind::Fixed { .. } => State::Fixed(BTreeMap::new()),
            WindowKind::Session { .. } => State::Sessions(Sessions::default()),
        };
        Ok(Aggregate {
            spec: Spec {
                group_by,
                window,
                time,
                max_groups: self.max_groups,
                stats,
                outputs,
                flat,
                window_start: FieldName::new(WINDOW_START),
                window_end: FieldName::new(WINDOW_END),
            },
            state,
            max_time: None,
            seq: 0,
            input_seq: 0,
            held_inputs: InputHolds::default(),
            clock: Box::new(Utc::now),
            starts: Vec::new(),
            input: Vec::new(),
        })
    }
}
