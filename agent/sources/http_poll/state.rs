//! What the `http_poll` source remembers across restarts: the cursor and the validators
//! (`ETag`, `Last-Modified`) of the last answer whose items are safe, in
//! `<data_dir>/sources/<name>/cursor.json`, replaced atomically (write a temporary file, sync it,
//! rename it over the old one, sync the directory), so a crash leaves the old state or the new
//! one, never a torn file.

use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};

use sluice_pipelines::Value;

/// The name of the state file in the source's directory.
pub const STATE_FILE: &str = "cursor.json";

/// A cursor value as found in an item: a number or a string.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Cursor {
    /// An integer (ids, Unix times).
    Int(i64),
    /// A float.
    Float(f64),
    /// Text (RFC 3339 times compare correctly as text).
    Text(String),
}

impl Cursor {
    /// The cursor in an item's field, if the field holds a number or a string.
    pub fn from_value(value: &Value) -> Option<Cursor> {
        match value {
            Value::Int(int) => Some(Cursor::Int(*int)),
            Value::Float(float) if float.is_finite() => Some(Cursor::Float(*float)),
            Value::String(text) => Some(Cursor::Text(text.as_str().to_owned())),
            Value::Timestamp(time) => Some(Cursor::Text(
                sluice_pipelines::codec::json::format_timestamp(time),
            )),
            _ => None,
        }
    }

    /// Compares two cursors of the same kind (numbers with numbers, text with text); `None`
    /// for different kinds.
    pub fn compare(&self, other: &Cursor) -> Option<Ordering> {
        match (self, other) {
            (Cursor::Text(a), Cursor::Text(b)) => Some(a.cmp(b)),
            (Cursor::Text(_), _) | (_, Cursor::Text(_)) => None,
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()).map(|order| {
                // Equal as floats but not as integers (beyond 2^53): the integers decide.
                match (a, b, order) {
                    (Cursor::Int(a), Cursor::Int(b), _) => a.cmp(b),
                    _ => order,
                }
            }),
        }
    }

    fn as_f64(&self) -> f64 {
        match self {
            Cursor::Int(int) => *int as f64,
            Cursor::Float(float) => *float,
            Cursor::Text(_) => f64::NAN,
        }
    }

    /// The text sent as the query parameter.
    pub fn to_query(&self) -> String {
        match self {
            Cursor::Int(int) => int.to_string(),
            Cursor::Float(float) => float.to_string(),
            Cursor::Text(text) => text.clone(),
        }
    }

    /// Whichever of `current` and `candidate` is larger; a candidate of another kind than the
    /// current cursor is ignored.
    pub fn max(current: Option<Cursor>, candidate: Cursor) -> Cursor {
        match current {
            None => candidate,
            Some(current) => match current.compare(&candidate) {
                Some(Ordering::Less) => candidate,
                _ => current,
            },
        }
    }
}

/// The state of a poller.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollState {
    /// The largest cursor of the items fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// The `ETag` of the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The `Last-Modified` of the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StateError {
    /// The state file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The state file of the source named `name`.
pub fn state_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("sources").join(name).join(STATE_FILE)
}

/// Reads the state; `Ok(None)` when there is none yet.
///
/// # Errors
/// A [`StateError`] when the file exists but cannot be read or parsed.
pub fn load(path: &Path) -> Result<Option<PollState>, StateError> {
    let error = |message: String| StateError {
        path: path.to_owned(),
        message,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(e.to_string())),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| error(format!("not a valid state file: {e}")))
}

/// Replaces the state atomically (see the module doc). Blocking: call it off the runtime.
///
/// # Errors
/// A [`StateError`] when a step fails; the old state is then still in place.
pub fn save(path: &Path, state: &PollState) -> Result<(), StateError> {
    let error = |message: String| StateError {
        path: path.to_owned(),
        message,
    };
    let dir = path
        .parent()
        .ok_or_else(|| error("has no parent directory".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| error(format!("cannot create the directory: {e}")))?;
    let text = serde_json::to_vec_pretty(state).map_err(|e| error(e.to_string()))?;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary)
        .map_err(|e| error(format!("cannot create {}: {e}", temporary.display())))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|e| error(format!("cannot write {}: {e}", temporary.display())))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(|e| error(format!("cannot replace it: {e}")))?;
    // The rename is durable once the directory is.
    let _ = sluice_sink::fs::sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_compare_within_their_kind() {
        let max = |values: &[Cursor]| {
            values
                .iter()
                .cloned()
                .fold(None, |current, next| Some(Cursor::max(current, next)))
                .unwrap()
        };
        assert_eq!(
            max(&[Cursor::Int(3), Cursor::Int(10), Cursor::Int(7)]),
            Cursor::Int(10)
        );
        assert_eq!(
            max(&[Cursor::Int(3), Cursor::Float(3.5), Cursor::Int(2)]),
            Cursor::Float(3.5)
        );
        assert_eq!(
            max(&[
                Cursor::Text("2024-05-01T00:00:09Z".into()),
                Cursor::Text("2024-05-01T00:00:10Z".into()),
                Cursor::Int(99),
            ]),
            Cursor::Text("2024-05-01T00:00:10Z".into())
        );
        assert_eq!(
            max(&[Cursor::Int(i64::MAX - 1), Cursor::Int(i64::MAX)]),
            Cursor::Int(i64::MAX)
        );
        assert_eq!(Cursor::Float(1.5).to_query(), "1.5");
        assert_eq!(Cursor::Text("a b".into()).to_query(), "a b");
    }

    #[test]
    fn state_round_trips_and_replaces_atomically() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = state_path(dir.path(), "api");
        assert_eq!(load(&path).unwrap(), None);
        let state = PollState {
            cursor: Some(Cursor::Int(42)),
            etag: Some("\"v1\"".into()),
            last_modified: None,
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state.clone()));
        let newer = PollState {
            cursor: Some(Cursor::Text("2024".into())),
            ..state
        };
        save(&path, &newer).unwrap();
        assert_eq!(load(&path).unwrap(), Some(newer));
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::write(&path, "{not json").unwrap();
        let error = load(&path).unwrap_err();
        assert!(error.to_string().contains("cursor.json"), "{error}");
    }
}
