//! Tests of the condition language.
