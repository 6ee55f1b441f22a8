//! CORS for web pages on other origins: `cors = { allowed_origins, allowed_headers, max_age,
//! allow_credentials }`.
//!
//! Pages send analytics events to a collector on another origin three ways: `sendBeacon` (a
//! `text/plain` POST without a preflight), `fetch` with `application/json` (a preflight
//! `OPTIONS` first, and the page may read the answer only with `Access-Control-Allow-Origin`) and
//! an image (`GET` on the pixel path, no preflight). With `cors` set:
//!
//! - a preflight from an allowed origin gets 204 with `Access-Control-Allow-Origin`, `-Methods`,
//!   `-Headers` (`allowed_headers`, default `content-type`), `-Max-Age` (`max_age`, default 1h)
//!   and, with `allow_credentials`, `-Credentials: true`; a preflight from any other origin gets
//!   403 and no CORS headers, so the browser never sends the request;
//! - a request whose `Origin` is allowed is served and its answer carries
//!   `Access-Control-Allow-Origin` and `Vary: Origin`; a request whose `Origin` header is present
//!   and not allowed gets 403 and nothing is kept (a beacon is not preflighted, so this is what
//!   stops a page on another origin from posting);
//! - the pixel is an image load, for which browsers send no `Origin`: there the origin of the
//!   `Referer` is checked instead. A request with neither header (a server-side client, a mail
//!   reader, a browser told to send no referrer) is accepted: it is not a page of another origin.
//!
//! Origins are matched exactly (scheme, host and port, as browsers write them: `https://shop.
//! example`, `http://127.0.0.1:8080`); `"*"` allows every origin and is answered with `*`, which
//! browsers refuse together with credentials, so `"*"` with `allow_credentials` is a config
//! error. Without `cors`, no origin is checked and no CORS header is sent.

use std::time::Duration;

use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ORIGIN, REFERER, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use sluice_pipelines::BuildError;
use sluice_pipelines::units::HumanDuration;

/// The `cors` table of the `http_server` source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to send events (`"https://shop.example"`), or `["*"]` for any.
    pub allowed_origins: Vec<String>,
    /// Request headers a page may send beyond the CORS-safelisted ones (default
    /// `["content-type"]`; add `authorization` when pages send a token).
    #[serde(default = "default_allowed_headers")]
    pub allowed_headers: Vec<String>,
    /// How long browsers may cache a preflight answer (default 1h).
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
    /// Whether pages may send cookies and credentials (default false).
    #[serde(default)]
    pub allow_credentials: bool,
}

fn default_allowed_headers() -> Vec<String> {
    vec!["content-type".to_owned()]
}

fn default_max_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

/// A checked `cors` table.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `"*"` was given.
    any: bool,
    /// The allowed origins, lower-case, as browsers write them.
    origins: Vec<String>,
    allow_headers: HeaderValue,
    max_age: HeaderValue,
    credentials: bool,
}

/// What the request's origin says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No origin to check: served without CORS headers.
    Absent,
    /// Allowed: served, and the answer carries this `Access-Control-Allow-Origin`.
    Allowed(HeaderValue),
    /// Not allowed: 403, naming the origin.
    Refused(String),
}

impl CorsConfig {
    /// Checks the table (keys are named under `cors.`).
    ///
    /// # Errors
    /// A [`BuildError`] at `cors.allowed_origins` when empty, at `cors.allowed_origins[<i>]` for
    /// something that is not an origin, at `cors.allowed_headers[<i>]` for a bad header name, at
    /// `cors.allow_credentials` together with `"*"`.
    pub fn validate(&self) -> Result<Cors, BuildError> {
        if self.allowed_origins.is_empty() {
            return Err(BuildError::at(
                "cors.allowed_origins",
                "is empty: name the origins of the pages that send events, or \"*\"",
            ));
        }
        let mut any = false;
        let mut origins = Vec::with_capacity(self.allowed_origins.len());
        for (index, origin) in self.allowed_origins.iter().enumerate() {
            if origin == "*" {
                any = true;
                continue;
            }
            origins.push(normalize_origin(origin).ok_or_else(|| {
                BuildError::at(
                    format!("cors.allowed_origins[{index}]"),
                    format!(
                        "`{origin}` is not an origin: expected scheme, host and optional port \
                         without a path, like \"https://shop.example\" or \
                         \"http://127.0.0.1:8080\", or \"*\""
                    ),
                )
            })?);
        }
        if any && self.allow_credentials {
            return Err(BuildError::at(
                "cors.allow_credentials",
                "cannot be true with allowed_origins = [\"*\"]: browsers refuse credentials \
                 with a wildcard origin; list the origins",
            ));
        }
        let mut names = Vec::with_capacity(self.allowed_headers.len());
        for (index, name) in self.allowed_headers.iter().enumerate() {
            let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                BuildError::at(
                    format!("cors.allowed_headers[{index}]"),
                    format!("`{name}` is not a valid header name"),
                )
            })?;
            names.push(header.as_str().to_owned());
        }
        let allow_headers = HeaderValue::from_str(&names.join(", "))
            .map_err(|_| BuildError::at("cors.allowed_headers", "is not a valid header list"))?;
        let max_age = HeaderValue::from(self.max_age.get().as_secs());
        Ok(Cors {
            any,
            origins,
            allow_headers,
            max_age,
            credentials: self.allow_credentials,
        })
    }
}

/// `scheme://host[:port]` in lower case without a trailing slash, or `None` when `text` is not
/// an origin.
fn normalize_origin(text: &str) -> Option<String> {
    let lower = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    let valid_scheme = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let valid_rest = !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && HeaderValue::from_str(&lower).is_ok();
    (valid_scheme && valid_rest).then_some(lower)
}

/// The origin of a `Referer` URL (`https://shop.example/cart?x` → `https://shop.example`).
fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    normalize_origin(&format!("{scheme}://{authority}"))
}

impl Cors {
    fn allows(&self, origin: &str) -> bool {
        self.any || normalize_origin(origin).is_some_and(|origin| self.origins.contains(&origin))
    }

    fn allowed_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// Checks the `Origin` header of a POST or preflight.
    pub fn check(&self, headers: &HeaderMap) -> OriginCheck {
        let Some(origin) = headers.get(ORIGIN) else {
            return OriginCheck::Absent;
        };
        match origin.to_str() {
            Ok(text) if self.allows(text) => OriginCheck::Allowed(self.allowed_value(origin)),
            Ok(text) => OriginCheck::Refused(text.to_owned()),
            Err(_) => OriginCheck::Refused(String::from_utf8_lossy(origin.as_bytes()).into()),
        }
    }

    /// Checks a pixel request: its `Origin`, else the origin of its `Referer`.
    pub fn check_pixel(&self, headers: &HeaderMap) -> OriginCheck {
        if headers.contains_key(ORIGIN) {
            return self.check(headers);
        }
        let Some(referer) = headers.get(REFERER) else {
            return OriginCheck::Absent;
        };
        let origin = referer.to_str().ok().and_then(origin_of_url);
        match origin {
            Some(origin) if self.allows(&origin) => {
                let value = HeaderValue::from_str(&origin)
                    .unwrap_or_else(|_| HeaderValue::from_static("null"));
                OriginCheck::Allowed(self.allowed_value(&value))
            }
            Some(origin) => OriginCheck::Refused(origin),
            None => OriginCheck::Refused(String::from_utf8_lossy(referer.as_bytes()).into()),
        }
    }

    /// Adds the headers of an answer to an allowed origin.
    pub fn decorate(&self, headers: &mut HeaderMap, allowed: HeaderValue) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.append(VARY, HeaderValue::from_static("origin"));
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Adds the headers of a preflight answer to an allowed origin; `methods` lists what the
    /// path takes.
    pub fn decorate_preflight(
        &self,
        headers: &mut HeaderMap,
        allowed: HeaderValue,
        methods: &'static str,
    ) {
        self.decorate(headers, allowed);
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
        headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        headers.append(
            VARY,
            HeaderValue::from_static(
                "access-control-request-method, access-control-request-headers",
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(text: &str) -> Result<Cors, BuildError> {
        let config: CorsConfig = toml::from_str(text).unwrap();
        config.validate()
    }

    fn with(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn exact_origins_are_allowed_and_others_refused() {
        let cors = cors("allowed_origins = [\"https://Shop.example/\", \"http://127.0.0.1:8080\"]")
            .unwrap();
        assert_eq!(
            cors.check(&with(ORIGIN, "https://shop.example")),
            OriginCheck::Allowed(HeaderValue::from_static("https://shop.example"))
        );
        assert!(matches!(
            cors.check(&with(ORIGIN, "http://127.0.0.1:8080")),
            OriginCheck::Allowed(_)
        ));
        for other in [
            "https://shop.example.evil",
            "http://shop.example",
            "http://127.0.0.1:8081",
            "null",
        ] {
            assert_eq!(
                cors.check(&with(ORIGIN, other)),
                OriginCheck::Refused(other.to_owned()),
                "{other}"
            );
        }
        assert_eq!(cors.check(&HeaderMap::new()), OriginCheck::Absent);
    }

    #[test]
    fn a_wildcard_answers_star_and_refuses_credentials() {
        let any = cors("allowed_origins = [\"*\"]").unwrap();
        assert_eq!(
            any.check(&with(ORIGIN, "https://anywhere.example")),
            OriginCheck::Allowed(HeaderValue::from_static("*"))
        );
        let error = cors("allowed_origins = [\"*\"]\nallow_credentials = true").unwrap_err();
        assert_eq!(error.key.as_deref(), Some("cors.allow_credentials"));
    }

    #[test]
    fn pixels_are_checked_by_the_referer_when_there_is_no_origin() {
        let cors = cors("allowed_origins = [\"https://shop.example\"]").unwrap();
        assert!(matches!(
            cors.check_pixel(&with(REFERER, "https://shop.example/cart?item=3")),
            OriginCheck::Allowed(_)
        ));
        assert_eq!(
            cors.check_pixel(&with(REFERER, "https://evil.example/page")),
            OriginCheck::Refused("https://evil.example".to_owned())
        );
        assert_eq!(cors.check_pixel(&HeaderMap::new()), OriginCheck::Absent);
        assert!(matches!(
            cors.check_pixel(&with(ORIGIN, "https://evil.example")),
            OriginCheck::Refused(_)
        ));
    }

    #[test]
    fn preflight_answers_carry_methods_headers_and_max_age() {
        let cors = cors(
            "allowed_origins = [\"https://shop.example\"]\nallowed_headers = [\"Content-Type\", \
             \"authorization\"]\nmax_age = \"10m\"\nallow_credentials = true",
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        cors.decorate_preflight(
            &mut headers,
            HeaderValue::from_static("https://shop.example"),
            "POST, PUT",
        );
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_METHODS], "POST, PUT");
        assert_eq!(
            headers[ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, authorization"
        );
        assert_eq!(headers[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert!(headers.get_all(VARY).iter().any(|value| value == "origin"));
    }

    #[test]
    fn bad_tables_name_the_key() {
        for (text, key) in [
            ("allowed_origins = []", "cors.allowed_origins"),
            (
                "allowed_origins = [\"shop.example\"]",
                "cors.allowed_origins[0]",
            ),
            (
                "allowed_origins = [\"*\", \"https://a.example/path\"]",
                "cors.allowed_origins[1]",
            ),
            (
                "allowed_origins = [\"*\"]\nallowed_headers = [\"bad header\"]",
                "cors.allowed_headers[0]",
            ),
        ] {
            assert_eq!(cors(text).unwrap_err().key.as_deref(), Some(key), "{text}");
        }
    }
}
