//! The `remap` step: reshapes events — computed fields, renames, removals, types, host and
//! ingest time.
//!
//! ```toml
//! steps = [{ type = "remap",
//!   coerce = { status = "int", request_time = "float" },
//!   set = { route = 'concat(method, " ", path)', kb = 'bytes / 1024', env = '"prod"', version = 3 },
//!   rename = { agent = "user_agent" },
//!   remove = ["referer"],
//!   keep = ["ip", "route", "status", "kb", "user_agent", "env", "version", "host", "ingested_at"],
//!   add_host = "host",
//!   add_ingest_time = "ingested_at" }]
//! ```
//!
//! The operations run in this fixed order, each on the result of the previous one:
//! 1. `coerce`: converts fields (dotted paths) to types, as `parse`'s `types` does (`int`,
//!    `float`, `bool`, `string`, `timestamp`, `timestamp|<format>`). A missing field is left
//!    missing. A value that does not convert rejects the event, unchanged.
//! 2. `set`: assigns fields (dotted paths, creating parent maps). A TOML string is an
//!    [expression](crate::condition) — so a literal string is written quoted inside it,
//!    `'"prod"'` — and a TOML number or bool is that literal. Every expression is evaluated on
//!    the event as it is before any assignment (so `{ a = 'b', b = 'a' }` swaps). An expression
//!    without a value (a missing field, `to_int("x")`, a division by zero) sets `null`.
//! 3. `rename`: moves fields (`from = "to"`, dotted paths); all sources are taken out first, so
//!    renames do not chain. A missing source does nothing. Renaming `message` when the event has
//!    no `message` field moves the raw line into the target field.
//! 4. `remove`: deletes fields (dotted paths); `message` with no `message` field removes the raw
//!    line.
//! 5. `keep`: keeps only these top-level fields; the raw line is kept only if `message` is
//!    listed.
//! 6. `add_host`: sets that field to this host's name, read once per process from
//!    `/proc/sys/kernel/hostname` (then `$HOSTNAME`, then `localhost`).
//! 7. `add_ingest_time`: sets that field to the current time, read once per batch.
//!
//! Expressions are parsed and field names interned when the step is built; `set` reuses one
//! scratch vector across events.

use std::collections::BTreeMap;
use std::fmt;

use chrono::Utc;

use super::common::{OrderedMap, hostname, join, parse_path};
use super::types::{FieldType, conversion_error};
use crate::condition::Expression;
use crate::event::{Event, FieldName, MESSAGE, Str, Value};
use crate::step::{BuildError, Step, StepContext};

/// Config of the `remap` step.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    /// Fields to set: a dotted path to an expression (a TOML string) or a literal (a TOML
    /// number or bool).
    #[serde(default)]
    pub set: OrderedMap<SetValue>,
    /// Fields to move: dotted path to dotted path.
    #[serde(default)]
    pub rename: OrderedMap<String>,
    /// Fields to delete (dotted paths).
    #[serde(default)]
    pub remove: Vec<String>,
    /// The only top-level fields to keep.
    #[serde(default)]
    pub keep: Option<Vec<String>>,
    /// Type conversions, as `parse`'s `types`.
    #[serde(default)]
    pub coerce: BTreeMap<String, String>,
    /// Set this field to the host name.
    #[serde(default)]
    pub add_host: Option<String>,
    /// Set this field to the time the batch was processed.
    #[serde(default)]
    pub add_ingest_time: Option<String>,
}

/// A value in `set`: an expression, or a literal written as a TOML number or bool.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    /// An expression in the condition language.
    Expression(String),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A bool literal.
    Bool(bool),
}

impl<'de> serde::Deserialize<'de> for SetValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SetVisitor;
        impl serde::de::Visitor<'_> for SetVisitor {
            type Value = SetValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an expression (a string), a number or a bool")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SetValue, E> {
                Ok(SetValue::Expression(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SetValue, E> {
                Ok(SetValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SetValue, E> {
                i64::try_from(v)
                    .map(SetValue::Int)
                    .map_err(|_| E::custom("integer does not fit in 64 bits"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<SetValue, E> {
                Ok(SetValue::Float(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<SetValue, E> {
                Ok(SetValue::Bool(v))
            }
        }
        deserializer.deserialize_any(SetVisitor)
    }
}

impl RemapConfig {
    /// Parses the expressions and types and interns the paths.
    ///
    /// # Errors
    /// A [`BuildError`] at the key at fault: `set.<path>` (a bad expression, with a caret),
    /// `coerce.<path>` (an unknown type), `rename.<path>`, `remove[<i>]`, `keep[<i>]` (a dotted
    /// name), `add_host`, `add_ingest_time` (a bad path), or the whole step when it does nothing.
    pub fn build(&self) -> Result<Remap, BuildError> {
        let mut coerce = Vec::with_capacity(self.coerce.len());
        for (path, spec) in &self.coerce {
            let key = format!("coerce.{path}");
            let ty = FieldType::parse(spec).map_err(|message| BuildError::at(&key, message))?;
            coerce.push((parse_path(&key, path)?, ty));
        }
        let mut set = Vec::with_capacity(self.set.0.len());
        for (path, value) in self.set.iter() {
            let key = format!("set.{path}");
            let source = match value {
                SetValue::Expression(text) => Source::Expression(
                    Expression::parse(text)
                        .map_err(|error| BuildError::at(&key, error.to_string()))?,
                ),
                SetValue::Int(i) => Source::Literal(Value::Int(*i)),
                SetValue::Float(x) => Source::Literal(Value::Float(*x)),
                SetValue::Bool(b) => Source::Literal(Value::Bool(*b)),
            };
            set.push((parse_path(&key, path)?, source));
        }
        let mut rename = Vec::with_capacity(self.rename.0.len());
        for (from, to) in self.rename.iter() {
            let key = format!("rename.{from}");
            rename.push((parse_path(&key, from)?, parse_path(&key, to)?));
        }
        let remove = self
            .remove
            .iter()
            .enumerate()
            .map(|(i, path)| parse_path(&format!("remove[{i}]"), path))
            .collect::<Result<Vec<_>, _>>()?;
        let keep = match &self.keep {
            None => None,
            Some(names) => {
                let mut keep = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    if name.is_empty() || name.contains('.') {
                        return Err(BuildError::at(
                            format!("keep[{i}]"),
                            format!("`keep` takes top-level field names, found `{name}`"),
                        ));
                    }
                    keep.push(FieldName::new(name));
                }
                Some(keep)
            }
        };
        let add_host = self
            .add_host
            .as_deref()
            .map(|path| parse_path("add_host", path))
            .transpose()?;
        let add_ingest_time = self
            .add_ingest_time
            .as_deref()
            .map(|path| parse_path("add_ingest_time", path))
            .transpose()?;
        if coerce.is_empty()
            && set.is_empty()
            && rename.is_empty()
            && remove.is_empty()
            && keep.is_none()
            && add_host.is_none()
            && add_ingest_time.is_none()
        {
            return Err(BuildError::new(
                "remap does nothing: give at least one of set, rename, remove, keep, coerce, \
                 add_host, add_ingest_time",
            ));
        }
        Ok(Remap {
            coerce,
            set,
            rename,
            remove,
            keep,
            host: add_host.map(|path| (path, Value::String(Str::from(hostname())))),
            add_ingest_time,
            message: FieldName::new(MESSAGE),
            values: Vec::new(),
            converted: Vec::new(),
            moved: Vec::new(),
            input: Vec::new(),
        })
    }
}

/// Where a `set` value comes from.
#[derive(Debug)]
enum Source {
    Expression(Expression),
    Literal(Value),
}

/// The `remap` step, built from a [`RemapConfig`].
#[derive(Debug)]
pub struct Remap {
    coerce: Vec<(Vec<FieldName>, FieldType)>,
    set: Vec<(Vec<FieldName>, Source)>,
    rename: Vec<(Vec<FieldName>, Vec<FieldName>)>,
    remove: Vec<Vec<FieldName>>,
    keep: Option<Vec<FieldName>>,
    host: Option<(Vec<FieldName>, Value)>,
    add_ingest_time: Option<Vec<FieldName>>,
    message: FieldName,
    /// Scratch space reused across events.
    values: Vec<Value>,
    converted: Vec<Value>,
    moved: Vec<Option<Value>>,
    input: Vec<Event>,
}

impl Step for Remap {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        let now = self
            .add_ingest_time
            .is_some()
            .then(|| Value::Timestamp(Utc::now()));
        let mut input = std::mem::take(&mut self.input);
        std::mem::swap(events, &mut input);
        events.reserve(input.len());
        for mut event in input.drain(..) {
            match self.remap(&mut event, now.as_ref()) {
                Ok(()) => events.push(event),
                Err(error) => ctx.reject(event, error),
            }
        }
        self.input = input;
    }
}

impl Remap {
    fn remap(&mut self, event: &mut Event, now: Option<&Value>) -> Result<(), String> {
        if !self.coerce.is_empty() {
            self.coerce(event)?;
        }
        if !self.set.is_empty() {
            self.values.clear();
            for (_, source) in &self.set {
                self.values.push(match source {
                    Source::Expression(expression) => {
                        expression.evaluate(event).unwrap_or(Value::Null)
                    }
                    Source::Literal(value) => value.clone(),
                });
            }
            for ((path, _), value) in self.set.iter().zip(self.values.drain(..)) {
                set_path(event, path, value);
            }
        }
        if !self.rename.is_empty() {
            self.moved.clear();
            for (from, _) in &self.rename {
                let value = take_path(event, from, &self.message);
                self.moved.push(value);
            }
            for ((_, to), value) in self.rename.iter().zip(self.moved.drain(..)) {
                if let Some(value) = value {
                    set_path(event, to, value);
                }
            }
        }
        for path in &self.remove {
            take_path(event, path, &self.message);
        }
        if let Some(keep) = &self.keep {
            event
                .fields_mut()
                .retain(|name, _| keep.iter().any(|kept| kept == name));
            if !keep.contains(&self.message) {
                event.set_raw(None);
            }
        }
        if let Some((path, host)) = &self.host {
            set_path(event, path, host.clone());
        }
        if let (Some(path), Some(now)) = (&self.add_ingest_time, now) {
            set_path(event, path, now.clone());
        }
        Ok(())
    }

    /// Converts every `coerce` field, or changes nothing and says which one failed.
    fn coerce(&mut self, event: &mut Event) -> Result<(), String> {
        self.converted.clear();
        for (path, ty) in &self.coerce {
            let Some(value) = event.fields().get_path(path) else {
                continue;
            };
            match ty.convert_value(value.clone()) {
                Ok(converted) => self.converted.push(converted),
                Err(value) => return Err(conversion_error(&join(path), ty, &value)),
            }
        }
        let mut converted = self.converted.drain(..);
        for (path, _) in &self.coerce {
            if let Some(slot) = event.fields_mut().get_path_mut(path)
                && let Some(value) = converted.next()
            {
                *slot = value;
            }
        }
        Ok(())
    }
}

/// Sets a path, in place when the field exists (keeping its position).
fn set_path(event: &mut Event, path: &[FieldName], value: Value) {
    if let Some(slot) = event.fields_mut().get_path_mut(path) {
        *slot = value;
    } else {
        event.insert_path(path, value);
    }
}

/// Removes a path; `message` without a `message` field takes the raw line.
fn take_path(event: &mut Event, path: &[FieldName], message: &FieldName) -> Option<Value> {
    if let Some(value) = event.fields_mut().remove_path(path) {
        return Some(value);
    }
    if matches!(path, [only] if only == message) {
        let raw = event.take_raw()?;
        return Some(Value::String(
            Str::from_utf8(raw).unwrap_or_else(|raw| Str::from_utf8_lossy(raw).0),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventMeta;
    use crate::step::OnError;
    use bytes::Bytes;

    fn remap(toml_text: &str) -> Remap {
        let config: RemapConfig = toml::from_str(toml_text).unwrap();
        match config.build() {
            Ok(step) => step,
            Err(error) => panic!("should build: {error:?}"),
        }
    }

    fn build_error(toml_text: &str) -> BuildError {
        toml::from_str::<RemapConfig>(toml_text)
            .unwrap()
            .build()
            .unwrap_err()
    }

    fn request() -> Event {
        let mut event = Event::from_raw(Bytes::from_static(b"GET /a 200"), EventMeta::default());
        event.insert("method", "GET");
        event.insert("path", "/a");
        event.insert("status", "200");
        event.insert("bytes", 2048i64);
        event.insert("agent", "curl");
        event
    }

    fn run(step: &mut Remap, events: Vec<Event>) -> (Vec<Event>, StepContext) {
        let mut ctx = StepContext::new(OnError::DeadLetter);
        let mut events = events;
        step.process(&mut events, &mut ctx);
        (events, ctx)
    }

    fn one(step: &mut Remap, event: Event) -> Event {
        let (mut events, _) = run(step, vec![event]);
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn names(event: &Event) -> Vec<&str> {
        event.fields().iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn set_evaluates_on_the_incoming_event() {
        let mut step = remap(
            "set = { route = 'concat(method, \" \", path)', kb = 'bytes / 1024', env = '\"prod\"', \
             version = 3, ratio = 0.5, on = true, method = 'path', path = 'method', \
             \"user.id\" = 'to_int(\"7\")', gone = 'missing' }",
        );
        let event = one(&mut step, request());
        assert_eq!(event.get("route"), Some(&Value::from("GET /a")));
        assert_eq!(event.get("kb"), Some(&Value::Float(2.0)));
        assert_eq!(event.get("env"), Some(&Value::from("prod")));
        assert_eq!(event.get("version"), Some(&Value::Int(3)));
        assert_eq!(event.get("ratio"), Some(&Value::Float(0.5)));
        assert_eq!(event.get("on"), Some(&Value::Bool(true)));
        assert_eq!(event.get("method"), Some(&Value::from("/a")), "swapped");
        assert_eq!(event.get("path"), Some(&Value::from("GET")), "swapped");
        assert_eq!(event.get_path(&["user", "id"]), Some(&Value::Int(7)));
        assert_eq!(event.get("gone"), Some(&Value::Null), "no value sets null");
        assert_eq!(
            names(&event)[..5],
            ["method", "path", "status", "bytes", "agent"]
        );
    }

    #[test]
    fn coerce_converts_or_rejects_unchanged() {
        let mut step = remap("coerce = { status = \"int\", bytes = \"string\", absent = \"int\" }");
        let event = one(&mut step, request());
        assert_eq!(event.get("status"), Some(&Value::Int(200)));
        assert_eq!(event.get("bytes"), Some(&Value::from("2048")));

        let mut bad = request();
        bad.insert("status", "OK");
        let (kept, mut ctx) = run(&mut step, vec![bad.clone()]);
        assert!(kept.is_empty());
        let letters = ctx.take_dead_letters();
        assert_eq!(
            letters[0].error,
            "field `status`: cannot convert \"OK\" to int"
        );
        assert_eq!(letters[0].event, bad, "nothing was half-converted");
    }

    #[test]
    fn rename_remove_keep() {
        let mut step = remap(
            "rename = { agent = \"user_agent\", path = \"http.path\", message = \"line\", nope = \"x\" }\n\
             remove = [\"bytes\"]",
        );
        let event = one(&mut step, request());
        let mut fields = names(&event);
        fields.sort_unstable();
        assert_eq!(fields, ["http", "line", "method", "status", "user_agent"]);
        assert_eq!(event.get_path(&["http", "path"]), Some(&Value::from("/a")));
        assert_eq!(event.get("line"), Some(&Value::from("GET /a 200")));
        assert!(event.raw().is_none(), "the raw line moved");

        let mut step = remap("rename = { a = \"b\", b = \"a\" }");
        let mut event = Event::default();
        event.insert("a", 1i64);
        event.insert("b", 2i64);
        let event = one(&mut step, event);
        assert_eq!(
            (event.get("a"), event.get("b")),
            (Some(&Value::Int(2)), Some(&Value::Int(1)))
        );

        let mut step = remap("keep = [\"path\", \"status\"]");
        let event = one(&mut step, request());
        assert_eq!(names(&event), ["path", "status"]);
        assert!(
            event.raw().is_none(),
            "keep drops the raw line unless `message` is kept"
        );
        let mut step = remap("keep = [\"message\"]\nremove = [\"nothing\"]");
        let event = one(&mut step, request());
        assert!(event.fields().is_empty());
        assert!(event.raw().is_some());
        let mut step = remap("remove = [\"message\"]");
        assert!(one(&mut step, request()).raw().is_none());
    }

    #[test]
    fn host_and_ingest_time() {
        let mut step = remap("add_host = \"meta.host\"\nadd_ingest_time = \"ingested_at\"");
        let before = Utc::now();
        let (events, _) = run(&mut step, vec![request(), request()]);
        let host = events[0]
            .get_path(&["meta", "host"])
            .and_then(Value::as_str)
            .unwrap();
        assert_eq!(host, hostname());
        let Some(Value::Timestamp(at)) = events[0].get("ingested_at") else {
            panic!("no ingest time");
        };
        assert!(*at >= before && *at <= Utc::now());
        assert_eq!(
            events[0].get("ingested_at"),
            events[1].get("ingested_at"),
            "one time per batch"
        );
    }

    #[test]
    fn build_errors_name_the_key() {
        let error = build_error("set = { x = 'a +' }");
        assert_eq!(error.key.as_deref(), Some("set.x"));
        assert_eq!(
            error.message,
            "expected a value, found the end of the condition\na +\n   ^"
        );
        assert_eq!(
            build_error("coerce = { x = \"integer\" }").key.as_deref(),
            Some("coerce.x")
        );
        assert_eq!(
            build_error("rename = { x = \"a..b\" }").key.as_deref(),
            Some("rename.x")
        );
        assert_eq!(
            build_error("remove = [\"ok\", \"\"]").key.as_deref(),
            Some("remove[1]")
        );
        assert_eq!(
            build_error("keep = [\"a.b\"]").key.as_deref(),
            Some("keep[0]")
        );
        assert_eq!(
            build_error("add_host = \"\"").key.as_deref(),
            Some("add_host")
        );
        assert!(build_error("").message.starts_with("remap does nothing"));
        assert!(toml::from_str::<RemapConfig>("sett = {}").is_err());
        assert!(toml::from_str::<RemapConfig>("set = { a = [1] }").is_err());
    }
}
