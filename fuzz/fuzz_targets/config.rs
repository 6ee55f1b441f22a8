//! The TOML config loader (`agent/config/`) on any text: interpolation, the strict per-file
//! pass, layering, every component's config and graph validation.
//!
//! Invariants: loading never panics; it is deterministic; every error and warning renders, and
//! its position, when it has one, is a line and column of the text (line 1 to one past the
//! last, column from 1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::config::{ConfigError, load_str};

fn check_position(error: &ConfigError, text: &str) {
    let rendered = error.to_string();
    assert!(rendered.contains(error.message.lines().next().unwrap_or("")));
    if let Some(position) = error.position {
        let lines = text.split('\n').count();
        assert!(
            position.line >= 1 && position.line <= lines + 1,
            "{rendered}: line {} of {lines}",
            position.line
        );
        assert!(position.column >= 1, "{rendered}");
        assert_eq!(error.file.as_deref(), Some("fuzz.toml"), "{rendered}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = load_str("fuzz.toml", text);
    match &first {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                check_position(warning, text);
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a problem");
            for error in &errors.0 {
                check_position(error, text);
            }
        }
    }
    let second = load_str("fuzz.toml", text);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a.warnings, b.warnings),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("loading the same text twice gave different outcomes"),
    }
});
