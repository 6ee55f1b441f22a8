//! Entry points for the fuzz targets in `fuzz/` (not a stable API: hidden from the docs).
//!
//! The fuzz targets are a crate of their own and can only call public items. This module makes
//! the few private pieces they exercise reachable, unchanged: HTTP body decoding (the formats of
//! the `http_server` and `http_poll` sources, and the capped gunzip). Everything else they fuzz is
//! public already.

/// HTTP body decoding, as the `http_server` and `http_poll` sources do it.
pub mod http_body {
    pub use crate::sources::body::{
        BadInput, Choice, Decoded, Format, Position, Stamp, choose, decode,
    };
    pub use crate::sources::http_server::{Decoding, Partial};
    pub use sluice_sink::gunzip::{GunzipError, gunzip_capped};
}
