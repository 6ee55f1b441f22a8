//! Codecs: turning events into bytes and bytes into events.

pub mod binary;
pub mod json;
mod json_fast;
